"""Border padding modes (zero, reflect, circular) and tileable synthesis."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from texsynth_jax import SynthesisConfig, conv, engine, evaluate, image_io, synthesize, vgg
from test_run import in_process
from test_synthesis import SPECS, random_params

MODES = vgg.PADDINGS
NUMPY_MODES = {"zero": "constant", "reflect": "reflect", "circular": "wrap"}
TORCH_MODES = {"zero": "constant", "reflect": "reflect", "circular": "circular"}
LAYERS = ("conv1_1", "pool1", "pool2", "pool3", "pool4")
TOL = {"lax": 1e-5, "matmul": 1e-5, "shifted": 1e-5, "winograd": 1e-5, "winograd4": 5e-5}
TEXTURE = os.path.join(os.path.dirname(vgg.__file__), "data", "default_texture.png")
# One jitted extractor for the module: the torch comparison and the shift test share its compilations.
EXTRACT = jax.jit(vgg.extract_features, static_argnames=("spec", "layers", "padding"))


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)


def numpy_conv(x, kernel, mode):
    """3x3 convolution of x [H, W, Cin] padded by one pixel in `mode`: a sum over the nine taps."""
    h, w, _ = x.shape
    padded = np.pad(np.asarray(x, np.float64), ((1, 1), (1, 1), (0, 0)), mode=NUMPY_MODES[mode])
    return sum(padded[dy:dy + h, dx:dx + w] @ np.asarray(kernel, np.float64)[dy, dx]
               for dy in range(3) for dx in range(3))


def torch_features(params, spec, image, layers, mode):
    """VGG features written independently in PyTorch, with torch's own padding modes."""
    x = torch.tensor(np.asarray(vgg.preprocess(jnp.asarray(image), spec))).permute(2, 0, 1)[None]
    out = {}
    for name in vgg.needed_layers(spec.arch, layers):
        if name.startswith("conv"):
            w = torch.from_numpy(params[name]["kernel"]).permute(3, 2, 0, 1)
            x = F.relu(F.conv2d(F.pad(x, (1, 1, 1, 1), mode=TORCH_MODES[mode]), w,
                                torch.from_numpy(params[name]["bias"])))
        else:
            x = F.avg_pool2d(x, 2)
        out[name] = x[0].permute(1, 2, 0).numpy()
    return {n: out[n] for n in layers}


@pytest.mark.parametrize("mode", MODES)
def test_features_match_torch_everywhere(mode):
    """Every mode against torch's F.pad, through VGG-19 (the deeper network; test_synthesis compares both
    networks with zero padding)."""
    params, spec = random_params("vgg19"), SPECS["vgg19"]
    image = np.random.default_rng(0).random((32, 48, 3), dtype=np.float32)
    got = EXTRACT(params, jnp.asarray(image), spec=spec, layers=LAYERS, padding=mode)
    expected = torch_features(params, spec, image, LAYERS, mode)
    for name in LAYERS:
        assert got[name].shape == expected[name].shape, name
        assert _rel(got[name], expected[name]) < 1e-4, (name, mode)


def test_zero_padding_is_lax_same():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((7, 9, 3)), jnp.float32)
    kernel = jnp.asarray(np.random.default_rng(2).standard_normal((3, 3, 3, 5)), jnp.float32)
    same = jax.lax.conv_general_dilated(x[None], kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
    np.testing.assert_allclose(vgg.padded(vgg.lax_conv, "zero")(x, kernel), same, rtol=1e-6)
    assert _rel(same, numpy_conv(x, kernel, "zero")) < 1e-5


# Every strategy in one mode (circular: the tileable one) and one strategy (lax, the CPU default) in every
# mode, at odd sizes; plus the smallest image reflect padding can mirror. test_conv compares every strategy
# with lax.conv at more shapes and in bf16.
CASES = ([(s, "circular", (7, 9, 3, 5)) for s in sorted(conv.STRATEGIES)]
         + [("lax", m, (7, 9, 3, 5)) for m in MODES if m != "circular"] + [("winograd", "reflect", (2, 3, 3, 2))])


@pytest.mark.parametrize("strategy, mode, shape", CASES)
def test_every_strategy_matches_numpy_in_each_mode(strategy, mode, shape):
    h, w, cin, cout = shape
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((h, w, cin)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin), jnp.float32)
    got = jax.jit(vgg.padded(conv.STRATEGIES[strategy], mode))(x, kernel)
    assert got.shape == (h, w, cout)
    assert _rel(got, numpy_conv(x, kernel, mode)) < TOL[strategy]


def test_unknown_padding_names_the_choices():
    with pytest.raises(ValueError, match="use one of"):
        vgg.padded(vgg.lax_conv, "mirror")
    with pytest.raises(ValueError, match="padding='mirror' is unknown"):
        SynthesisConfig(padding="mirror")


@pytest.mark.parametrize("shift", [(16, -32), (-3, 5)])
def test_circular_features_of_a_shifted_image_are_shifted(shift):
    """A torus has no position: rolling the image rolls every feature map (by shift / downsampling,
    for the layers whose downsampling divides the shift)."""
    params, spec = random_params("vgg19"), SPECS["vgg19"]
    image = jnp.asarray(np.random.default_rng(4).random((32, 48, 3), dtype=np.float32))
    extract = EXTRACT
    plain = extract(params, image, spec=spec, layers=LAYERS, padding="circular")
    rolled = extract(params, jnp.roll(image, shift, axis=(0, 1)), spec=spec, layers=LAYERS, padding="circular")
    checked = 0
    for name in LAYERS:
        factor = vgg.downsampling("vgg19", name)
        if shift[0] % factor or shift[1] % factor:
            continue
        expected = np.roll(np.asarray(plain[name]), (shift[0] // factor, shift[1] // factor), axis=(0, 1))
        assert _rel(rolled[name], expected) < 1e-5, name
        checked += 1
    assert checked == (len(LAYERS) if shift == (16, -32) else 1)
    zero = extract(params, jnp.roll(image, shift, axis=(0, 1)), spec=spec, layers=("conv1_1",), padding="zero")
    assert _rel(zero["conv1_1"], np.roll(np.asarray(plain["conv1_1"]), shift, axis=(0, 1))) > 1e-2


@pytest.mark.parametrize("size", [(250, 256), (256, 40)])
def test_tileable_size_must_be_a_multiple_of_the_downsampling(size):
    with pytest.raises(ValueError, match=r"is not a multiple of 16 \(pool4\); use (256|48) for --tileable"):
        SynthesisConfig(size=size, tileable=True)
    SynthesisConfig(size=(48, 40), layers=("conv1_1", "pool1", "pool2", "pool3"),
                    layer_weights=(1.0,) * 4, tileable=True)  # pool3: multiples of 8


def seam_ratios(image: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Difference across the wrap-around / mean difference between adjacent interior rows (columns),
    for rows and columns, of pixels and of conv1_1 features of the 2x2 repeat (the seam in its middle).

    image: [B, H, W, 3]; features: [B, 2H, 2W, C]. Returns [B, 4].
    """
    def ratio(x, axis, seam):
        step = np.abs(np.diff(x, axis=axis)).mean(axis=tuple(a for a in range(1, x.ndim) if a != axis))
        return step[:, seam] / np.delete(step, seam, axis=1).mean(axis=1)

    h, w = image.shape[1:3]
    pixels = np.array([evaluate.seam_ratio(x) for x in image])  # the wrap-around of each image itself
    inner = features[:, 2:-2, 2:-2]  # away from the repeat's own (zero-padded) border
    return np.concatenate([pixels, np.stack([ratio(inner, 1, h - 3), ratio(inner, 2, w - 3)], axis=1)], axis=1)


@pytest.fixture(scope="module")
def texture_path(tmp_path_factory):
    """A real texture written as the test's own PNG: the shipped CC0 gravel photo, a 32 px crop
    enlarged to 64 px, so that neighbouring pixels are alike and a seam between unrelated rows shows."""
    path = tmp_path_factory.mktemp("texture") / "gravel.png"
    Image.open(TEXTURE).convert("RGB").crop((0, 0, 32, 32)).resize((64, 64), Image.BICUBIC).save(path)
    return str(path)


def test_tileable_seam_is_like_the_interior(weights_path, texture_path):
    from texsynth_jax import load_weights

    params, spec, _ = load_weights(weights_path)
    source = jnp.asarray(image_io.load_image(texture_path)[0])
    keys = jax.random.split(jax.random.key(0), 1)  # one seed: the run is the test's cost (the measures are four)
    ratios = {}
    for tileable in (True, False):  # to pool2, a third of the default network's cost: circular padding is the
        # same at every layer (test_circular_features_of_a_shifted_image_are_shifted holds all of them to it)
        config = SynthesisConfig(size=(64, 64), iterations=30, tileable=tileable, coarse_iterations=(),
                                 layers=("conv1_1", "pool1", "pool2"), layer_weights=(1.0, 1.0, 1.0))
        images, _ = synthesize(keys, engine.Engine(params, spec, config, 1).targets(source),
                               params, spec, config)
        images = np.asarray(images)
        repeat = np.tile(images, (1, 2, 2, 1))
        features = np.stack([np.asarray(vgg.extract_features(params, jnp.asarray(r), spec, ("conv1_1",))["conv1_1"])
                             for r in repeat])
        ratios[tileable] = seam_ratios(images, features)
    # Per measure (pixel rows, pixel columns, feature rows, feature columns), measured with this key and two
    # others: tileable 0.75 ... 1.38, not tileable 2.0 ... 3.6 (with zero padding).
    assert np.all(ratios[True] < 1.4) and 0.6 < ratios[True].mean() < 1.25, ratios
    assert np.all(ratios[False] > 1.4) and ratios[False].mean() > 1.5 * ratios[True].mean(), ratios


def test_cli_writes_the_tiled_repeat(tmp_path, weights_path, texture_path, capsys):
    out = tmp_path / "out"
    flagfile = tmp_path / "tile.cfg"
    flagfile.write_text(f"--input={texture_path}\n--weights={weights_path}\n--output_dir={out}\n--size=32\n"
                        "--coarse_iterations=\n--iterations=2\n--seeds=0,1\n--mesh=none\n--tileable\n")
    code, stderr = in_process([f"--flagfile={flagfile}"], capsys)
    assert code == 0, stderr
    tiles = []
    for seed in (0, 1):
        single = np.asarray(Image.open(out / f"gravel_seed{seed}.png"))
        tiles.append(np.asarray(Image.open(out / f"gravel_seed{seed}_tiled.png")))
        assert single.shape == (32, 32, 3)
        np.testing.assert_array_equal(tiles[-1], np.tile(single, (2, 2, 1)))
    sheet = image_io.contact_sheet(image_io.load_image(texture_path)[0], [t / 255.0 for t in tiles])
    np.testing.assert_array_equal(np.asarray(Image.open(out / "gravel_sheet.png")), sheet)  # shows the repeats
    for seed in (0, 1):  # the overwrite check knows the tiled names too
        os.unlink(out / f"gravel_seed{seed}.png")
    code, stderr = in_process([f"--flagfile={flagfile}"], capsys)
    assert code == 2 and "gravel_seed0_tiled.png already exists" in stderr, stderr

    code, stderr = in_process([f"--flagfile={flagfile}", "--size=40", f"--output_dir={tmp_path / 'new'}"], capsys)
    assert code == 2, stderr
    assert stderr.strip() == "error: size 40 is not a multiple of 16 (pool4); use 48 for --tileable"
    assert not (tmp_path / "new").exists()
