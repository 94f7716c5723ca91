"""--source_scale: the source resized before its statistics are taken (every scale's targets, the judge's
reference, the memory check, work-file items), and the lines that tell a user their source is far too
large for the output or the outputs far from it."""

import dataclasses
import json

import numpy as np
import jax
import pytest

from texsynth_jax import Engine, SynthesisConfig, coarse_to_fine, jobs, load_weights
from texsynth_jax.engine import program_config
from test_coarse_to_fine import SHALLOW, gravel
from test_run import in_process


@pytest.fixture(scope="module")
def vgg(weights_path):
    params, spec, _ = load_weights(weights_path)
    return params, spec


def by_hand(source, size):
    """The documented resize (antialiased cubic, clipped), written out here."""
    return np.clip(np.asarray(jax.image.resize(source, (*size, 3), "cubic", antialias=True)), 0, 1)


def test_source_scale_resizes_the_source_before_its_statistics(vgg):
    """Targets at source_scale s are the targets of the source resized by s, at every scale; the compiled
    programs are those of scale 1 (one program for any scale)."""
    params, spec = vgg
    source = gravel(96)
    single = SynthesisConfig(size=(32, 32), coarse_iterations=(), **SHALLOW)
    half = SynthesisConfig(size=(32, 32), coarse_iterations=(), source_scale=0.5, **SHALLOW)
    assert program_config(half) == program_config(single)
    expected = Engine(params, spec, single, 1).targets(by_hand(source, (48, 48)))
    got = Engine(params, spec, half, 1).targets(source)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got, expected)
    plain = Engine(params, spec, single, 1).targets(source)
    differs = lambda a, b: not np.allclose(a, b, rtol=1e-2)
    assert any(jax.tree.leaves(jax.tree.map(differs, plain, got)))  # the setting changed the statistics
    # Coarse to fine: the scaled source, then shrunk like the output (48 -> 24 px at the 16 px scale), each
    # scale's statistics with that scale's padding (the coarsest a torus: --coarsest_padding).
    ctf_config = SynthesisConfig(size=(32, 32), coarse_iterations=(2,), source_scale=0.5, **SHALLOW)
    ctf = coarse_to_fine.CoarseToFine(params, spec, ctf_config, 1)
    coarse, fine = ctf.targets(source)
    scaled = by_hand(source, (48, 48))
    for got, size, padding in ((coarse, (24, 24), "circular"), (fine, (48, 48), "reflect")):
        at_scale = dataclasses.replace(single, padding=padding)
        want = Engine(params, spec, at_scale, 1).targets(by_hand(scaled, size) if size != (48, 48) else scaled)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got, want)


def test_a_source_too_small_after_scaling_is_refused_in_one_line(vgg):
    params, spec = vgg
    config = SynthesisConfig(size=(32, 32), coarse_iterations=(), source_scale=0.25, **SHALLOW)
    with pytest.raises(ValueError, match=r"source image \(12x12 at source_scale 0.25\) 3x3 is too small for pool2"):
        Engine(params, spec, config, 1).targets(gravel(12))
    with pytest.raises(ValueError, match="source_scale=0 is out of range; give a factor in"):
        SynthesisConfig(source_scale=0)
    with pytest.raises(ValueError, match="source_scale=9 is out of range"):
        SynthesisConfig(source_scale=9)


def test_cli_says_when_the_source_is_far_larger_than_the_output(tmp_path, weights_path, capsys):
    """The shipped 256 px photo for a 32 px output: one line names the ratio and the flag to try, and the
    judge says its outputs (one iteration: noise) are far from the source; with the flag the first line is
    gone and the record holds the scale."""
    args = [f"--weights={weights_path}", "--seeds=2", "--size=32", "--iterations=1", "--coarse_iterations=",
            "--layers=conv1_1,pool1,pool2"]
    code, stderr = in_process([*args, f"--output_dir={tmp_path / 'a'}"], capsys)
    assert code == 0, stderr
    assert "256x256 is 8x the output's 32x32: texture elements keep their size in source pixels" in stderr, stderr
    assert "try --source_scale=0.25" in stderr
    far = [line for line in stderr.splitlines() if "far from the source" in line]
    assert len(far) == 1 and "--source_scale=0.25" in far[0], stderr
    code, stderr = in_process([*args, f"--output_dir={tmp_path / 'b'}", "--source_scale=0.125", "--judge=false"],
                              capsys)
    assert code == 0 and "texture elements keep their size" not in stderr, stderr
    record = json.loads((tmp_path / "b" / "default_texture_run.json").read_text())
    assert record["config"]["source_scale"] == 0.125


def test_a_work_item_has_a_source_scale_of_its_own(tmp_path):
    work = tmp_path / "work.jsonl"
    work.write_text('{"source": "%s", "source_scale": 0.5}\n' % gravel_path(tmp_path))
    config = SynthesisConfig(size=(32, 32), coarse_iterations=(), **SHALLOW)
    (item,) = jobs.read_sources(str(work), [0], config)
    assert jobs.item_config(item, config).source_scale == 0.5


def gravel_path(tmp_path):
    from PIL import Image

    path = tmp_path / "g.png"
    Image.fromarray((gravel(64) * 255).astype(np.uint8)).save(path)
    return path
