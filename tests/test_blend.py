"""--blend: several sources' statistics mixed by weight (terms.blend_targets, each term's own blend), one
compiled program for any weights, the command line's weights 1 and 0 bit for bit a single source's run, and
a sweep of weights that moves the outputs from one photo to the other by the judge."""

import json

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from PIL import Image

from texsynth_jax import Engine, SynthesisConfig, evaluate, load_weights, synthesis, terms
from test_coarse_to_fine import SHALLOW, gravel
from test_engine import counted_compiles
from test_run import in_process


@pytest.fixture(scope="module")
def vgg(weights_path):
    params, spec, _ = load_weights(weights_path)
    return params, spec


def stripes(size, colours=((0.85, 0.2, 0.15), (0.1, 0.2, 0.7)), period=9.0):
    """Soft diagonal stripes of two colours: a texture unlike gravel in colour and structure."""
    y, x = np.mgrid[:size, :size]
    t = (0.5 + 0.5 * np.sin(2 * np.pi * (x + y) / period))[..., None]
    return (t * np.array(colours[0]) + (1 - t) * np.array(colours[1])).astype(np.float32)


def warm(size):
    """The shipped photo's corner enlarged (stones twice as large) and tinted warm: a second photo."""
    with Image.open("texsynth_jax/data/default_texture.png") as img:
        corner = img.convert("RGB").crop((0, 0, 96, 96)).resize((size, size), Image.LANCZOS)
    return np.asarray(corner, np.float32) / 255 * np.array([1.0, 0.6, 0.35], np.float32)


def cool(size):
    """The shipped photo shrunk (stones half as large), tiled 2x2, as a blue negative: a third photo."""
    with Image.open("texsynth_jax/data/default_texture.png") as img:
        small = np.asarray(img.convert("RGB").resize((size // 2, size // 2), Image.LANCZOS), np.float32) / 255
    return (1 - np.tile(small, (2, 2, 1))) * np.array([0.4, 0.7, 1.0], np.float32)


def all_terms(**kwargs):
    return SynthesisConfig(size=(32, 32), coarse_iterations=(), loss=("gram:1", "swd:1", "hist:1", "spectrum:1"),
                           **SHALLOW, **kwargs)


def test_each_term_blends_as_it_documents(vgg):
    params, spec = vgg
    engine = Engine(params, spec, all_terms(), 1)
    a, b = engine.targets(gravel(32)), engine.targets(stripes(40))
    half = terms.blend_targets([a, b], [0.25, 0.75])
    # Grams: the weighted sum (the second moments of the mixture), each layer.
    for layer in a["gram"]:
        np.testing.assert_allclose(half["gram"][layer], 0.25 * a["gram"][layer] + 0.75 * b["gram"][layer], rtol=1e-6)
    # swd / hist: a sample of the mixture with the first source's shapes: a quarter of its rows from a, evenly
    # spaced, the rest from b.
    for name in ("swd", "hist"):
        for layer, stats in a[name].items():
            rows = stats["vectors"].shape[0]
            mixed = np.asarray(half[name][layer]["vectors"])
            assert mixed.shape == stats["vectors"].shape
            n_a = round(0.25 * rows)
            np.testing.assert_array_equal(mixed[:n_a], np.asarray(stats["vectors"])[
                ((np.arange(n_a) + 0.5) * rows / n_a).astype(int)])
            source_rows = {tuple(r) for r in np.asarray(b[name][layer]["vectors"])}
            assert all(tuple(r) in source_rows for r in mixed[n_a:][:50])
    # spectrum: the power spectra mixed, the heavier source's phases.
    power = 0.25 * np.abs(a["spectrum"]) ** 2 + 0.75 * np.abs(b["spectrum"]) ** 2
    np.testing.assert_allclose(np.abs(half["spectrum"]) ** 2, power, rtol=1e-4, atol=1e-6 * power.max())
    phase = lambda f: np.angle(np.asarray(f))[np.abs(np.asarray(b["spectrum"])) > 1e-3]
    np.testing.assert_allclose(phase(half["spectrum"]), phase(b["spectrum"]), atol=1e-4)
    # A source blended with itself is itself: exactly for Grams and the spectrum's modulus, as a distribution
    # (the same loss) for the sampled terms; weight 1 on one source is its targets unchanged.
    same = terms.blend_targets([a, a], [0.5, 0.5])
    jax.tree.map(np.testing.assert_array_equal, same["gram"], a["gram"])
    np.testing.assert_allclose(np.abs(same["spectrum"]), np.abs(a["spectrum"]), rtol=1e-5)
    image = jnp.asarray(stripes(32, period=5.0))
    key = jax.random.key(0)
    np.testing.assert_allclose(synthesis.texture_loss(image, same, params, spec, all_terms(), key),
                               synthesis.texture_loss(image, a, params, spec, all_terms(), key), rtol=0.02)
    assert terms.blend_targets([a, b], [1.0, 0.0]) is a and terms.blend_targets([a, b], [0, 1]) is b
    with pytest.raises(ValueError, match="give one non-negative weight per source, summing to 1"):
        terms.blend_targets([a, b], [0.5, 0.6])


def test_one_program_serves_every_blend(vgg):
    """Weights are a change of targets: runs of three blends compile the step once."""
    params, spec = vgg
    config = SynthesisConfig(size=(32, 32), coarse_iterations=(), iterations=2, **SHALLOW)
    keys = jax.random.split(jax.random.key(0), 2)
    with counted_compiles() as compiles:
        engine = Engine(params, spec, config, 2)
        a, b = engine.targets(gravel(48)), engine.targets(stripes(40))
        for w in (0.2, 0.5, 0.9):
            engine.synthesize(keys, engine.blend_targets([a, b], [1 - w, w]))
    assert compiles["step"] == 1 and compiles["init_state"] == 1, compiles


def test_cli_blend_weights_one_and_zero_are_a_single_source_run(tmp_path, weights_path, capsys):
    """--blend=b:0 is the main source's run and --blend=b:1 is b's, bit for bit in the PNGs; the record
    holds the blend and the judge's distance to each source; bad blends are one line and exit 2."""
    photo, other = tmp_path / "gravel.png", tmp_path / "stripes.png"
    Image.fromarray((gravel(48) * 255).astype(np.uint8)).save(photo)
    Image.fromarray((stripes(48) * 255).astype(np.uint8)).save(other)
    args = [f"--weights={weights_path}", "--seeds=2", "--size=32", "--iterations=3", "--coarse_iterations=",
            "--layers=conv1_1,pool1,pool2"]
    pixels = lambda folder, stem: [np.asarray(Image.open(tmp_path / folder / f"{stem}_seed{s}.png")) for s in (0, 1)]
    runs = {"main": [f"--input={photo}", "--judge=false"], "other": [f"--input={other}", "--judge=false"],
            "zero": [f"--input={photo}", f"--blend={other}:0", "--judge=false"],
            "one": [f"--input={photo}", f"--blend={other}:1"]}
    for name, extra in runs.items():
        code, stderr = in_process([*args, *extra, f"--output_dir={tmp_path / name}"], capsys)
        assert code == 0, stderr
    for a, b in zip(pixels("zero", "gravel"), pixels("main", "gravel")):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(pixels("one", "gravel"), pixels("other", "stripes")):
        np.testing.assert_array_equal(a, b)
    record = json.loads((tmp_path / "one" / "gravel_run.json").read_text())
    assert record["main_weight"] == 0 and record["blend"][0]["weight"] == 1 and record["blend"][0]["sha256"]
    to_other = record["judge"]["blend_distances"][str(other)]
    assert to_other < record["judge"]["distance_mean"]  # b's outputs are nearer b
    for blend, words in ((f"{other}:0.6,{photo}:0.5", "blend weights sum to 1.1, past 1"),
                         (f"{other}:-0.2", "blend weight -0.2 of"),
                         (f"{tmp_path / 'none.png'}:0.3", "blend image .*none.png not found")):
        code, stderr = in_process([*args, f"--input={photo}", f"--blend={blend}", f"--output_dir={tmp_path / 'x'}"],
                                  capsys)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1, stderr
        assert __import__("re").search(words, errors[0]), errors[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("other", [warm, cool])
def test_a_sweep_of_weights_moves_the_outputs_from_one_source_to_the_other(vgg, other):
    """Five weights from the gravel photo to another photo: the judge's distance to gravel rises and to the
    other falls at every step (two seeds a weight, one compiled program). (Against a drawn texture, such as
    stripes(), 40 iterations leave the pure stripes further from their source than a 3:1 blend is.)"""
    params, spec = vgg
    config = SynthesisConfig(size=(48, 48), coarse_iterations=(), iterations=25, **SHALLOW)
    engine = Engine(params, spec, config, 2)
    a_image, b_image = gravel(64), other(64)
    a, b = engine.targets(a_image), engine.targets(b_image)
    judge = evaluate.load_judge()
    keys = jax.random.split(jax.random.key(1), 2)
    to_a, to_b = [], []
    for w in np.linspace(0, 1, 5):
        images, _ = engine.synthesize(keys, engine.blend_targets([a, b], [1 - w, w]))
        images = list(np.asarray(images))
        to_a.append(np.mean(evaluate.distances(judge, a_image, images)))
        to_b.append(np.mean(evaluate.distances(judge, b_image, images)))
    assert np.all(np.diff(to_a) > 0) and np.all(np.diff(to_b) < 0), (to_a, to_b)


def test_a_checkpoint_fingerprint_covers_the_blended_files(tmp_path):
    """A checkpoint continues only the run that wrote it: the fingerprint changes with a blended photo's content
    (and is computed from the input's pixels alone otherwise, the same before the run and during it)."""
    from texsynth_jax import records

    other = tmp_path / "b.png"
    Image.fromarray((stripes(32) * 255).astype(np.uint8)).save(other)
    config = SynthesisConfig(size=(32, 32), coarse_iterations=(), blend=(f"{other}:0.3",))
    image = gravel(32)
    first = records.fingerprint(config, [0], image, "w", {})
    assert records.fingerprint(config, [0], image, "w", {}) == first
    Image.fromarray((stripes(32, period=5.0) * 255).astype(np.uint8)).save(other)
    assert records.fingerprint(config, [0], image, "w", {}) != first
    plain = SynthesisConfig(size=(32, 32), coarse_iterations=())
    assert records.fingerprint(plain, [0], image, "w", {}) != records.fingerprint(plain, [0], image * 0.5, "w", {})
