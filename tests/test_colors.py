"""--colors: the outputs' colours moved onto a palette image's distribution (or the source's exactly), their
structure kept: histogram distances, the judge on luminance, the exact channel histograms of
--colors=source, and a palette that cannot be read refused in one line."""

import json

import numpy as np
import pytest
from PIL import Image

from texsynth_jax import Engine, SynthesisConfig, colors, evaluate, load_weights
from test_blend import cool, warm
from test_coarse_to_fine import gravel
from test_run import in_process


def equalised_luminance(image) -> np.ndarray:
    """Luma as ranks in [0, 1], grey RGB: the structure of the luminance whatever its tones."""
    luma = colors.luminance(image)[..., 0]
    ranks = np.argsort(np.argsort(luma.ravel(), kind="stable")).reshape(luma.shape) / (luma.size - 1)
    return np.repeat(ranks[..., None], 3, -1).astype(np.float32)


def test_match_channels_and_the_distance_against_direct_computation():
    rng = np.random.default_rng(0)
    values, reference = rng.uniform(size=(500, 3)), rng.normal(size=(2000, 3))
    matched = colors.match_channels(values, reference)
    for c in range(3):  # the values' order, the reference's quantiles
        np.testing.assert_array_equal(np.argsort(matched[:, c]), np.argsort(values[:, c], kind="stable"))
        np.testing.assert_allclose(np.sort(matched[:, c]),
                                   np.sort(reference[:, c])[((np.arange(500) + 0.5) * 4).astype(int)])
    image = rng.uniform(size=(20, 30, 3))
    assert colors.histogram_distance(image, image[::-1, ::-1]) == 0  # colours, not arrangement
    assert abs(colors.histogram_distance(image, image + 0.1) - 0.1 * np.mean(np.abs(
        np.random.default_rng(1234).standard_normal((3, 64)).sum(0) /
        np.linalg.norm(np.random.default_rng(1234).standard_normal((3, 64)), axis=0)))) < 1e-6


def test_transfer_takes_the_palette_and_keeps_the_structure():
    """On the shipped photo (real structure): colour distance to the palette (a blue negative of it; the
    command-line test takes a warm one) at most a fifth of the distance to the photo's own colours, and the
    luminance's structure unchanged by the judge."""
    image, palette = gravel(96), cool(80)
    out = colors.transfer(image, palette)
    assert out.shape == image.shape and out.dtype == np.float32
    assert colors.histogram_distance(out, palette) <= colors.histogram_distance(out, image) / 5
    judge = evaluate.load_judge()
    ratio = evaluate.distances(judge, equalised_luminance(image), [equalised_luminance(out)])[0]
    assert ratio < 0.05, ratio  # the same structure (an unrelated texture scores ~1)


def test_finish_applies_each_colors_setting_as_its_function(tmp_path):
    """colors.finish (the job layer's and bench/'s colour step) against the functions each setting names."""
    images, source, content = np.stack([gravel(32), warm(32)]), cool(48), gravel(32)[::-1]
    Image.fromarray((cool(40) * 255).round().astype(np.uint8)).save(tmp_path / "palette.png")
    palette = read_png(tmp_path / "palette.png")
    config = lambda colours: SynthesisConfig(colors=colours, content="c.png" if colours == "content" else "")
    np.testing.assert_array_equal(colors.finish(images, config(""), source), images)
    for colours, expected in (("source", [colors.transfer(x, source) for x in images]),
                              (str(tmp_path / "palette.png"), [colors.transfer(x, palette) for x in images]),
                              ("content", [colors.keep_colors(x, content) for x in images])):
        np.testing.assert_array_equal(colors.finish(images, config(colours), source, content), np.stack(expected))
    with pytest.raises(ValueError, match="content="):
        colors.finish(images, config("content"), source)


def test_cli_colors_from_a_palette_and_from_the_source(tmp_path, weights_path, capsys):
    photo, palette = tmp_path / "gravel.png", tmp_path / "palette.png"
    Image.fromarray((warm(64) * 255).round().astype(np.uint8)).save(photo)  # a coloured photo (its luminance
    Image.fromarray((cool(64) * 255).round().astype(np.uint8)).save(palette)  # is not itself), a blue palette
    args = [f"--weights={weights_path}", f"--input={photo}", "--seeds=2", "--size=32", "--iterations=6",
            "--coarse_iterations=", "--layers=conv1_1,pool1,pool2", "--judge=false"]
    read = lambda folder, s: np.asarray(Image.open(tmp_path / folder / f"gravel_seed{s}.png"), np.float32) / 255
    for name, extra in (("plain", []), ("palette", [f"--colors={palette}"]), ("source", ["--colors=source"])):
        code, stderr = in_process([*args, *extra, f"--output_dir={tmp_path / name}"], capsys)
        assert code == 0, stderr
    source, colours = read_png(photo), read_png(palette)
    judge = evaluate.load_judge()
    for s in (0, 1):
        plain, coloured, kept = read("plain", s), read("palette", s), read("source", s)
        assert colors.histogram_distance(coloured, colours) <= colors.histogram_distance(coloured, source) / 5
        lum = lambda x: evaluate.distances(judge, equalised_luminance(source), [equalised_luminance(x)])[0]
        assert lum(coloured) <= 1.2 * lum(plain), (lum(coloured), lum(plain))
        # --colors=source: every channel has the source's histogram (64x64 source, 32x32 output: its quantiles).
        quantiles = np.sort(source.reshape(-1, 3), axis=0)[((np.arange(32 * 32) + 0.5) * 4).astype(int)]
        np.testing.assert_allclose(np.sort(kept.reshape(-1, 3), axis=0), quantiles, atol=0.5 / 255)
        assert not np.allclose(np.sort(plain.reshape(-1, 3), axis=0), quantiles, atol=0.5 / 255)
    # With a palette the structure comes from the photo's luminance alone, then the transfer: as from Python.
    params, spec, _ = load_weights(weights_path)
    config = SynthesisConfig(size=(32, 32), iterations=6, coarse_iterations=(), layers=("conv1_1", "pool1", "pool2"),
                             layer_weights=(1.0, 1.0, 1.0))
    engine = Engine(params, spec, config, 2)
    keys = engine.keys([0, 1])
    from_grey, _ = engine.synthesize(keys, engine.targets(colors.grey(source)))
    from_colour, _ = engine.synthesize(keys, engine.targets(source))
    for s in (0, 1):
        # The transfer ranks pixels, so float noise moves a few of them by a level or two: compared on average.
        gap = lambda images: np.mean(np.abs(read("palette", s) - colors.transfer(np.asarray(images[s]), colours)))
        assert gap(from_grey) < 1 / 255 and gap(from_colour) > 4 * gap(from_grey), (gap(from_grey), gap(from_colour))
    record = json.loads((tmp_path / "palette" / "gravel_run.json").read_text())
    assert record["config"]["colors"] == str(palette) and record["colors"]["sha256"]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    code, stderr = in_process([*args, f"--colors={tmp_path / 'bad.png'}", f"--output_dir={tmp_path / 'x'}"], capsys)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "palette image" in errors[0] and "cannot be read" in errors[0], stderr
    assert not (tmp_path / "x").exists()


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
