"""Coarse-to-fine synthesis: the scale schedule, periodic resizing, one compile per scale for a whole job,
resume at any scale, and a run at 4x the source's size with each scale's result of the right shape."""

import json

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from PIL import Image

from texsynth_jax import Engine, RunOptions, SynthesisConfig, coarse_to_fine, load_weights, run_job, synthesis
from texsynth_jax.coarse_to_fine import CoarseToFine
from texsynth_jax.config import parse_value
from test_engine import counted_compiles
from test_run import in_process

# 4 of VGG-16's 13 convolutions (half the compilation of the default's), and 4x downsampling: small sizes.
SHALLOW = dict(layers=("conv1_1", "pool1", "pool2"), layer_weights=(1.0, 1.0, 1.0))


def gravel(size):
    """The shipped CC0 photo at `size`: a real texture."""
    image = Image.open("texsynth_jax/data/default_texture.png").convert("RGB").resize((size, size), Image.LANCZOS)
    return np.asarray(image, np.float32) / 255.0


def test_scale_sizes_and_iterations():
    config = SynthesisConfig(size=(256, 192), coarse_iterations=(30, 20), iterations=10)
    assert config.scale_sizes == [(64, 48), (128, 96), (256, 192)]
    assert config.scale_iterations == [30, 20, 10]
    assert SynthesisConfig(size=(100, 100), coarse_iterations=()).scale_sizes == [(100, 100)]  # the paper: one scale
    # Tileable: every scale a multiple of the deepest downsampling (16 for pool4), so it stays a torus.
    tile = SynthesisConfig(size=(272, 272), coarse_iterations=(5,), tileable=True)
    assert all(s % 16 == 0 for size in tile.scale_sizes for s in size), tile.scale_sizes
    assert [c.size for c in coarse_to_fine.scale_configs(config)] == config.scale_sizes
    assert coarse_to_fine.source_sizes((512, 400), config) == [(128, 100), (256, 200), (512, 400)]


@pytest.mark.parametrize("kwargs, words", [
    (dict(coarse_iterations=(10, 0)), "at least one iteration"),
    (dict(size=(32, 32), coarse_iterations=(1, 1), tileable=True, coarse_min_view=0), "too small for 2 coarser scales"),
    (dict(upsample="sinc"), "upsample='sinc' is unknown"),
])
def test_bad_schedules_are_refused(kwargs, words):
    with pytest.raises(ValueError, match=words):
        SynthesisConfig(**kwargs)


def test_the_coarsest_scale_must_reach_the_deepest_layer():
    config = SynthesisConfig(size=(256, 256), coarse_iterations=(5, 5, 5, 5), coarse_min_view=0)  # 16 px: pool4 ...
    config.check_network("vgg16")
    with pytest.raises(ValueError, match="128x128 shrinks to 8x8 .* too small for pool4; use fewer --coarse_iterations"):
        coarse_to_fine.check_source((128, 128), config, "vgg16", "input image x.png")  # ... but an 8 px source
    with pytest.raises(ValueError, match="an Engine runs one scale"):
        Engine({}, None, config, 1)


def test_coarse_scales_the_deepest_layer_barely_sees_are_left_out(vgg, weights_path, tmp_path, capsys):
    """coarse_min_view drops the coarsest scales where the deepest layer has fewer positions than it
    asks, with their iterations: the scales a run makes and logs, and one Engine when none is left."""
    three = SynthesisConfig(size=(128, 128), coarse_min_view=3)  # pool4 at 32 px: 2x2 positions
    assert three.scale_sizes == [(64, 64), (128, 128)] and three.scale_iterations == [60, 150]
    every = SynthesisConfig(size=(128, 128))  # the default, 0: every scale
    assert every.scale_sizes == [(32, 32), (64, 64), (128, 128)] and every.total_iterations == 310
    view = lambda size: SynthesisConfig(size=size, coarse_min_view=3).scale_sizes
    assert view((192, 192)) == [(48, 48), (96, 96), (192, 192)]  # 3 positions: kept
    assert view((192, 160)) == [(96, 80), (192, 160)]  # 40 px: 2 positions
    shallow = SynthesisConfig(size=(32, 32), coarse_iterations=(4, 3), coarse_min_view=4, **SHALLOW)  # pool2: 4x
    assert shallow.scale_sizes == [(16, 16), (32, 32)] and shallow.scale_iterations == [3, 150]
    params, spec = vgg
    assert isinstance(coarse_to_fine.make_engine(params, spec, SynthesisConfig(size=(48, 48), coarse_min_view=3), 1),
                      Engine)
    with pytest.raises(ValueError, match="coarse_min_view=-1 is negative"):
        SynthesisConfig(coarse_min_view=-1)
    args = [f"--weights={weights_path}", f"--output_dir={tmp_path / 'out'}", "--seeds=1", "--size=64",
            "--iterations=1", "--coarse_iterations=3,2", "--layers=conv1_1,pool1,pool2", "--judge=false",
            "--coarse_min_view=5"]  # 16 px: 4 positions of pool2, left out
    code, stderr = in_process(args, capsys)
    assert code == 0 and "iterations 2 at 32x32, 1 at 64x64" in stderr, stderr


def test_empty_flag_means_one_scale():
    field = {f.name: f for f in SynthesisConfig.__dataclass_fields__.values()}["coarse_iterations"]
    assert parse_value(field, "") == () and parse_value(field, "20,10") == (20, 10)


@pytest.mark.parametrize("method", ["linear", "cubic", "lanczos3"])
def test_periodic_resize_is_the_resize_of_the_repeated_image(method):
    """A tileable scale enlarged periodically equals the middle of the enlarged 3x3 repeat: no seam."""
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(16, 12, 3)), jnp.float32)
    tiled = synthesis.resize(jnp.tile(x, (3, 3, 1)), (96, 72), method)[32:64, 24:48]
    periodic = synthesis.resize(x, (32, 24), method, periodic=True)
    np.testing.assert_allclose(periodic, tiled, atol=1e-5)
    plain = synthesis.resize(x, (32, 24), method)
    assert np.abs(np.asarray(plain - tiled))[0].max() > 1e-2  # the non-periodic one differs at the border


@pytest.fixture(scope="module")
def vgg(weights_path):
    params, spec, _ = load_weights(weights_path)
    return params, spec


def test_a_texture_larger_than_its_source_runs_every_scale_once_compiled(vgg):
    """A 32 px photo to a 64 px texture over scales of 16, 32 and 64 px: each scale's result has its
    size, and every program compiles once per scale for two sources."""
    params, spec = vgg
    config = SynthesisConfig(size=(64, 64), coarse_iterations=(5, 3), iterations=2, **SHALLOW)
    ctf = CoarseToFine(params, spec, config, batch_size=2)
    keys = jax.random.split(jax.random.key(0), 2)
    with counted_compiles() as compiles:
        for source in (gravel(32), gravel(32)[::-1]):
            shapes, steps = [], []
            on_scale = lambda state, k: shapes.append((k, ctf.images(state).shape))
            on_step = lambda state, step, losses: steps.append((ctf.scale_of(state), step, len(losses))) and None
            images, losses = ctf.synthesize(keys, ctf.targets(source), on_step, on_scale=on_scale)
            assert images.shape == (2, 64, 64, 3) and losses.shape == (2, 10)
            assert shapes == [(0, (2, 16, 16, 3)), (1, (2, 32, 32, 3)), (2, (2, 64, 64, 3))]
            # One on_step for every scale: steps counted over all scales, and every loss of the call so far.
            assert steps == [(0, i, i) for i in range(1, 6)] + [(1, i, i) for i in range(6, 9)] + [
                (2, i, i) for i in (9, 10)]
            assert np.all(np.isfinite(losses))
    for program in ("step", "init_state", "restart"):
        assert compiles[program] == (1 if program == "init_state" else 2 if program == "restart" else 3), compiles


def test_a_job_resumes_at_a_coarse_scale_and_at_the_last(tmp_path, weights_path):
    """Stopped in the middle of the first scale and again in the last, a job resumes each time from its
    checkpoint (a state of that scale's size) and ends with the images of an uninterrupted run."""
    path = tmp_path / "g.png"
    Image.fromarray((gravel(32) * 255).astype(np.uint8)).save(path)
    config = SynthesisConfig(size=(32, 32), coarse_iterations=(4, 3), iterations=3, coarse_min_view=0, **SHALLOW)
    quiet = lambda line: None
    straight = tmp_path / "straight"
    run_job([(str(path), [0, 1])], weights_path, config, RunOptions(output_dir=str(straight), judge=False), log=quiet)
    out = tmp_path / "out"
    options = RunOptions(output_dir=str(out), checkpoint_every=1, judge=False)
    for stop_after, scale in ((2, 0), (8, 2)):  # dispatches of one iteration: stop at iterations 2 and 8
        calls = []
        report = run_job([(str(path), [0, 1])], weights_path, config, options, log=quiet,
                         should_stop=lambda: calls.append(1) or len(calls) >= stop_after - (2 if scale else 0))
        assert report.interrupted
        with np.load(out / "g_ckpt.npz") as ckpt:
            record = json.loads(str(ckpt["record"]))
        assert record["scale"] == scale, record["iteration"]
        options = RunOptions(output_dir=str(out), checkpoint_every=1, judge=False, resume=True)
    report = run_job([(str(path), [0, 1])], weights_path, config, options, log=quiet)
    assert [r.status for r in report.results] == ["complete"]
    for name in ("g_seed0.png", "g_seed1.png", "g_seed0_8x8.png", "g_seed1_16x16.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(out / name)), np.asarray(Image.open(straight / name)))
    record = json.loads((out / "g_run.json").read_text())
    assert [s["size"] for s in record["scales"]] == [[8, 8], [16, 16], [32, 32]]
    assert [s["iterations"] for s in record["scales"]] == [4, 3, 3]
    assert [s["padding"] for s in record["scales"]] == ["circular", "reflect", "reflect"]  # coarsest_padding=auto
    assert record["outputs"]["scales"] == [["g_seed0_8x8.png", "g_seed1_8x8.png"],
                                           ["g_seed0_16x16.png", "g_seed1_16x16.png"]]
    assert len(record["loss_history"]["0"]) == 10


def test_cli_writes_each_scale_and_explains_a_small_source(tmp_path, weights_path, capsys):
    out = tmp_path / "out"
    args = [f"--weights={weights_path}", f"--output_dir={out}", "--seeds=1", "--size=64", "--iterations=1",
            "--coarse_iterations=2", "--layers=conv1_1,pool1,pool2", "--judge=false"]
    code, stderr = in_process(args, capsys)
    assert code == 0, stderr
    assert "iterations 2 at 32x32, 1 at 64x64" in stderr and "scale 1/2 (32x32) done at iteration 2" in stderr
    assert Image.open(out / "default_texture_seed0_32x32.png").size == (32, 32)
    assert Image.open(out / "default_texture_seed0.png").size == (64, 64)
    small = tmp_path / "small.png"
    Image.fromarray((gravel(24) * 255).astype(np.uint8)).save(small)
    code, stderr = in_process([*args, f"--input={small}", "--coarse_iterations=2,2,2", "--coarse_min_view=0"], capsys)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and stderr.endswith(errors[0] + "\n"), stderr
    assert "shrinks to 3x3 at the coarsest of 4 scales, too small for pool2" in stderr, stderr
