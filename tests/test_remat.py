"""--remat: VGG blocks computed and recomputed in bands of rows give the same features, loss and gradient
as the plain network, with a lower peak of memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from texsynth_jax import SynthesisConfig, compute_targets, texture_loss, vgg
from texsynth_jax.losses import gram_matrix
from test_synthesis import SPECS, random_params

LAYERS = ("conv1_1", "pool1", "pool2", "pool3", "pool4")


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)


def narrow_params(arch: str, width: int = 8) -> dict:
    """He-initialised weights of `arch` with at most `width` channels a layer: the same layers, bands and
    halos as the real network, compiled and run in a fraction of the time."""
    rng, params, cin = np.random.default_rng(0), {}, 3
    for name, (kh, kw, _, cout) in vgg.conv_shapes(arch).items():
        cout = min(cout, width)
        params[name] = {"kernel": (rng.normal(size=(kh, kw, cin, cout)) * np.sqrt(2.0 / (kh * kw * cin))
                                   ).astype(np.float32),
                        "bias": (rng.normal(size=(cout,)) * 0.1).astype(np.float32)}
        cin = cout
    return params


def test_loss_and_gradient_equal_the_plain_network():
    """The real path (config.remat, default bands): at 64 rows the first block runs in 2 bands of 32."""
    params, spec = random_params("vgg16"), SPECS["vgg16"]
    rng = np.random.default_rng(0)
    source, image = (jnp.asarray(rng.random((64, 80, 3), dtype=np.float32)) for _ in range(2))
    results = {}
    for remat in (False, True):
        config = SynthesisConfig(size=(64, 80), layers=("conv1_1", "pool1"), layer_weights=(1.0, 2.0), remat=remat,
                                 coarse_iterations=())
        targets = compute_targets(params, source, spec, config)
        loss = jax.jit(jax.value_and_grad(texture_loss), static_argnums=(3, 4))
        results[remat] = targets, *loss(image, targets, params, spec, config)
    (plain_targets, plain_loss, plain_grad), (targets, loss, grad) = results[False], results[True]
    for name in ("conv1_1", "pool1"):
        assert _rel(targets["gram"][name], plain_targets["gram"][name]) < 1e-5, name
    assert abs(float(loss) / float(plain_loss) - 1) < 1e-5
    assert _rel(grad, plain_grad) < 1e-5 and _rel(grad, 0) > 0


@pytest.mark.parametrize("padding, pooling, size, bands, layers", [
    # Odd sizes (pools drop a row), a torus, max pooling (whose gradient XLA:CPU got wrong under jit in
    # the plain network: inf, before pool() took maxima of slices).
    ("circular", "max", (50, 37), 2, LAYERS),
    # More bands than rows: bands of 2 rows, thinner than the halo of 2.
    ("zero", "avg", (20, 12), 8, ("conv1_1", "conv1_2", "pool1", "pool2")),
])
def test_every_band_layout_equals_the_plain_network(padding, pooling, size, bands, layers):
    params, spec = narrow_params("vgg16"), SPECS["vgg16"]
    image = jnp.asarray(np.random.default_rng(1).random((*size, 3), dtype=np.float32))
    weights = np.random.default_rng(2).random(len(layers))

    def loss(image, remat):
        features = vgg.extract_features(params, image, spec, layers, pooling, padding=padding, remat=remat,
                                        bands=bands)
        return sum(w * jnp.sum(gram_matrix(features[n])) for w, n in zip(weights, layers)), features

    grad = jax.jit(jax.grad(loss, has_aux=True), static_argnums=1)
    (plain, plain_features), (banded, features) = grad(image, False), grad(image, True)
    for name in layers:
        assert features[name].shape == plain_features[name].shape, name
        assert _rel(features[name], plain_features[name]) < 1e-5, name
    assert _rel(banded, plain) < 1e-5 and _rel(banded, 0) > 0


def test_remat_lowers_the_peak_memory():
    """XLA's account of the gradient program of the first block at 256 px: bands keep no full-size map
    of the block's interior for the backward pass (measured: 0.3x of the temporaries). A recomputation
    that XLA merged back into the forward pass, as it does with jax.checkpoint on CPU, gives 1.0x."""
    params, spec = random_params("vgg16"), SPECS["vgg16"]
    layers = ("conv1_1", "pool1")
    image = jax.ShapeDtypeStruct((256, 256, 3), jnp.float32)

    def temp_bytes(remat):
        def loss(image):
            features = vgg.extract_features(params, image, spec, layers, padding="reflect", remat=remat)
            return sum(jnp.sum(gram_matrix(features[n])) for n in layers)
        return jax.jit(jax.grad(loss)).lower(image).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(True) < 0.5 * temp_bytes(False)


def test_vmap_over_seeds_equals_one_seed_at_a_time():
    params, spec = narrow_params("vgg16"), SPECS["vgg16"]
    images = jnp.asarray(np.random.default_rng(3).random((2, 64, 48, 3), dtype=np.float32))

    def grad(image):
        def loss(x):
            return jnp.sum(vgg.extract_features(params, x, spec, ("pool1",), padding="reflect", remat=True)["pool1"] ** 2)
        return jax.grad(loss)(image)

    batched = jax.jit(jax.vmap(grad))(images)
    for image, expected in zip(images, batched):
        assert _rel(expected, jax.jit(grad)(image)) < 1e-6
