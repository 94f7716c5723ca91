"""Every convolution strategy equals lax.conv, in value and through jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from texsynth_jax import config, conv

SHAPES = [(7, 9, 3, 5), (8, 8, 16, 32), (1, 1, 3, 2)]  # odd sizes, Cin = 3, one pixel
# Relative to the largest output: fp32 within float rounding (Winograd F(4x4) amplifies it by
# its transform constants), bf16 within a few bf16 ulps.
TOL = {
    jnp.float32: {"matmul": 1e-5, "shifted": 1e-5, "winograd": 1e-5, "winograd4": 5e-5},
    jnp.bfloat16: {"matmul": 3e-2, "shifted": 3e-2, "winograd": 4e-2, "winograd4": 8e-2},
}


def _inputs(h, w, cin, cout, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((h, w, cin)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin), jnp.float32)
    return x, kernel


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)


def test_strategies_are_known_to_config():
    assert set(conv.STRATEGIES) | {"auto"} == set(config.CONV_STRATEGIES)
    for backend, name in conv.DEFAULTS.items():
        assert name in conv.STRATEGIES, backend


# float32 at every shape; bf16 where its rounding adds up, over 16 input channels (the sizes and the one
# pixel are the same code in either dtype).
CASES = [(shape, jnp.float32) for shape in SHAPES] + [(SHAPES[1], jnp.bfloat16)]


@pytest.mark.parametrize("shape, dtype", CASES, ids=["odd", "16ch", "pixel", "16ch-bf16"])
@pytest.mark.parametrize("strategy", ["matmul", "shifted", "winograd", "winograd4"])
def test_matches_lax_conv(strategy, shape, dtype):
    x, kernel = _inputs(*shape)
    # The reference always in float32 on the same (rounded) inputs.
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    expected = conv.lax_conv(x.astype(jnp.float32), kernel.astype(jnp.float32))
    got = jax.jit(conv.STRATEGIES[strategy])(x, kernel)
    assert got.shape == expected.shape and got.dtype == dtype
    assert _rel(got, expected) < TOL[dtype][strategy]


@pytest.mark.parametrize("shape", [(7, 9, 3, 5)])
@pytest.mark.parametrize("strategy", ["matmul", "shifted", "winograd", "winograd4"])
def test_gradients_match_lax_conv(strategy, shape):
    x, kernel = _inputs(*shape, seed=1)
    weights = jnp.asarray(np.random.default_rng(2).standard_normal(shape[:2] + shape[3:]), jnp.float32)

    def loss(f):
        # A nonlinear scalar of the output (relu, square), as in the texture loss.
        return lambda x, k: jnp.sum(jnp.square(jax.nn.relu(f(x, k))) * weights)

    expected = jax.grad(loss(conv.lax_conv), argnums=(0, 1))(x, kernel)
    got = jax.jit(jax.grad(loss(conv.STRATEGIES[strategy]), argnums=(0, 1)))(x, kernel)
    tol = TOL[jnp.float32][strategy] * 2
    for g, e in zip(got, expected):
        assert _rel(g, e) < tol


@pytest.mark.parametrize("strategy", ["matmul", "shifted", "winograd", "winograd4"])
def test_vmap_equals_per_image(strategy):
    x, kernel = _inputs(9, 7, 4, 6)
    batch = jnp.stack([x, 2.0 * x, -x])
    f = conv.STRATEGIES[strategy]
    got = jax.jit(jax.vmap(f, in_axes=(0, None)))(batch, kernel)
    for i in range(3):
        np.testing.assert_allclose(got[i], f(batch[i], kernel), rtol=1e-5, atol=1e-5)


def test_select():
    assert conv.select("lax") is conv.lax_conv and conv.select("matmul") is conv.matmul_conv
    assert conv.name("auto", "cpu") == conv.DEFAULTS["cpu"] == "lax"  # measured: bench/README.md
    assert conv.select("auto") is conv.lax_conv  # lax wherever measured and wherever not: no choice to make
    for backend in ("cuda", "rocm", "tpu"):  # not measured yet: XLA's own convolution, and said so
        assert backend not in conv.DEFAULTS and conv.name("auto", backend) == conv.UNMEASURED == "lax"


def test_auto_chooses_per_platform_inside_the_program(monkeypatch):
    """With a measured entry that differs by platform, "auto" lowers to each platform's own strategy from
    this one machine: the choice is in the program, not read from this process's backend."""
    monkeypatch.setitem(conv.DEFAULTS, "tpu", "matmul")
    x, kernel = jnp.zeros((8, 8, 4)), jnp.zeros((3, 3, 4, 8))
    traced = jax.jit(conv.select("auto")).trace(x, kernel)
    for platform, strategy in (("cpu", "lax"), ("tpu", "matmul"), ("cuda", "lax")):
        text = traced.lower(lowering_platforms=(platform,)).as_text()
        assert ("stablehlo.convolution" in text) == (strategy == "lax"), (platform, text)
        assert ("stablehlo.dot_general" in text) == (strategy == "matmul"), (platform, text)


def test_winograd_refuses_other_kernels():
    with pytest.raises(ValueError, match="3x3"):
        conv.winograd_conv(jnp.zeros((4, 4, 1)), jnp.zeros((5, 5, 1, 1)))
