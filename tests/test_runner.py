"""The job loop's promises about the user's files and the job's checks: an output never replaces an input,
--overwrite replaces only the product's own files, a folder input skips the product's outputs, every
source is checked before the first iteration, and a run that made nothing says so."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from texsynth_jax import RunOptions, SynthesisConfig, checkpoint, jobs, outputs, progress, records, run_job, runner

CONFIG = SynthesisConfig(size=(32, 32), layers=("conv1_1", "pool1"), layer_weights=(1.0, 1.0), iterations=2,
                         coarse_iterations=())
OPTIONS = dict(mesh="none", log_every=100, judge=False)


def photo(path, seed=0, size=40):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return str(path)


def quiet(line):
    pass


def contents(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_an_output_never_replaces_an_input(tmp_path, weights_path):
    """The user's photo a_seed0.png beside a.png, the folder as input and output, --overwrite: refused
    before anything is written (it was replaced, then used as the next source)."""
    photo(tmp_path / "a.png", 0)
    photo(tmp_path / "a_seed0.png", 1)
    before = contents(tmp_path)
    work = jobs.read_sources(str(tmp_path), [0])
    assert [os.path.basename(p) for p, _ in work] == ["a.png", "a_seed0.png"]
    with pytest.raises(ValueError, match="would replace the input .*a_seed0.png; choose another --output_dir"):
        run_job(work, weights_path, CONFIG, RunOptions(output_dir=str(tmp_path), overwrite=True, **OPTIONS), log=quiet)
    assert contents(tmp_path) == before


def test_overwrite_replaces_only_the_products_own_files(tmp_path, weights_path):
    """A user's file that has an output's name is not the product's: --overwrite refuses to replace it."""
    src = photo(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_sheet.png").write_bytes(b"the user's own picture")
    with pytest.raises(ValueError, match="a_sheet.png exists and was not written by texsynth_jax"):
        run_job([(src, [0])], weights_path, CONFIG, RunOptions(output_dir=str(out), overwrite=True, **OPTIONS),
                log=quiet)
    assert (out / "a_sheet.png").read_bytes() == b"the user's own picture"
    assert sorted(os.listdir(out)) == ["a_sheet.png"]


def test_a_folder_input_skips_the_products_outputs_run_after_run(tmp_path, weights_path):
    """Outputs written into the input folder are not sources of the next run (1, then 2, then 7 sources
    before): by the folder's list of the product's files, and by the records of older runs."""
    photo(tmp_path / "a.png")
    options = RunOptions(output_dir=str(tmp_path), save_every=1, **OPTIONS)
    run_job(jobs.read_sources(str(tmp_path), [0]), weights_path, CONFIG, options, log=quiet)
    assert "a_seed0.png" in os.listdir(tmp_path) and "a_seed0_iter1.png" in os.listdir(tmp_path)
    assert jobs.read_sources(str(tmp_path), [0]) == [(str(tmp_path / "a.png"), [0])]
    report = run_job(jobs.read_sources(str(tmp_path), [0]), weights_path, CONFIG,
                     RunOptions(output_dir=str(tmp_path), overwrite=True, save_every=1, **OPTIONS), log=quiet)
    assert [r.status for r in report.results] == ["complete"]
    # A record alone (a run from before the list existed) also marks its outputs as the product's.
    os.unlink(tmp_path / outputs.MANIFEST.format(process=0))
    assert {"a_seed0.png", "a_sheet.png", "a_run.json"} <= outputs.product_files(str(tmp_path))
    assert [os.path.basename(p) for p, _ in jobs.read_sources(str(tmp_path), [0])] == ["a.png", "a_seed0_iter1.png"]


def test_run_job_checks_its_work_before_writing(tmp_path, weights_path):
    a, b = tmp_path / "x" / "a.png", tmp_path / "y" / "a.png"
    a.parent.mkdir(), b.parent.mkdir()
    photo(a), photo(b)
    out = tmp_path / "out"
    for work, words in [([(str(a), [0]), (str(b), [1])], "two images named a.*"),
                        ([(str(a), [-1])], "seeds of .* are \\[-1\\]"),
                        ([(str(a), [0, 0])], "repeat a seed"),
                        ([(str(a), [True])], "seeds of"),
                        ([(str(a), [])], "non-empty list")]:
        with pytest.raises(ValueError, match=words):
            run_job(work, weights_path, CONFIG, RunOptions(output_dir=str(out), **OPTIONS), log=quiet)
    assert not out.exists()


def test_snapshot_counts_are_refused_before_their_names_are_built():
    config = SynthesisConfig(size=(32, 32), iterations=10**6, coarse_iterations=())
    with pytest.raises(ValueError, match="writes 3000000 snapshot images.*--save_every of at least 31"):
        records.check_snapshots(config, RunOptions(save_every=1), seeds=3)
    records.check_snapshots(config, RunOptions(save_every=31), seeds=3)
    with pytest.raises(ValueError):
        records.check_snapshots(config, RunOptions(save_every=30), seeds=3)


def test_a_damaged_checkpoint_of_a_later_source_stops_the_job_before_the_first(tmp_path, weights_path):
    a, b = photo(tmp_path / "a.png", 0), photo(tmp_path / "b.png", 1)
    out = tmp_path / "out"
    options = RunOptions(output_dir=str(out), checkpoint_every=1, **OPTIONS)
    run_job([(b, [0])], weights_path, CONFIG, options, log=quiet, should_stop=lambda: True)
    assert (out / "b_ckpt.npz").exists()
    (out / "b_ckpt.npz").write_bytes((out / "b_ckpt.npz").read_bytes()[:100])
    before = contents(out)
    with pytest.raises(checkpoint.CheckpointError, match="b_ckpt.npz is unreadable"):
        run_job([(a, [0]), (b, [0])], weights_path, CONFIG,
                RunOptions(output_dir=str(out), checkpoint_every=1, resume=True, **OPTIONS), log=quiet)
    assert contents(out) == before  # nothing of a.png was synthesised or written


def test_a_run_whose_loss_does_not_fall_is_stalled():
    one = [0, 5]
    assert runner._stalled([np.array([1.0, 2.0])] * 5, one)
    assert runner._stalled([np.zeros(2)] * 5, one)  # a weight that underflows: zero from the start
    assert not runner._stalled([np.array([1.0, 2.0])] * 4 + [np.array([1.0, 1.0])], one)  # one seed fell
    assert not runner._stalled([np.ones(2)] * 4, [0, 4])  # too few iterations to tell
    # Coarse to fine: each scale's loss starts anew (larger at a larger size); a fall within any scale counts,
    # a rise across scales does not, and a loss is never compared with another scale's.
    climbs = [np.array([v]) for v in (8.0, 7.0, 12.0, 17.0, 12.0)]
    assert not runner._stalled(climbs, [0, 2, 3, 5])
    assert runner._stalled([np.array([v]) for v in (8.0, 8.0, 12.0, 17.0, 17.0)], [0, 2, 3, 5])
    assert runner._stalled([np.array([v]) for v in (8.0, 9.0, 1.0, 1.0, 1.0)], [0, 2, 5])  # 9 -> 1 is no fall


def test_the_eta_counts_the_scales_to_come_and_labels_the_loss():
    class Stream:
        text = ""

        def write(self, s):
            self.text += s

        def flush(self):
            pass

        def isatty(self):
            return False

    stream = Stream()
    scales = [(100, (64, 64)), (160, (128, 128)), (180, (256, 256))]
    tracker = progress.Progress(180, [0], log_every=50, stream=stream, scales=scales, then="+ judge")
    tracker.begin()
    tracker._rate, tracker.first_step_s, tracker.step = 10.0, 1.0, 50  # 10 it/s at 64x64
    # 50 left at 64 px, 60 at 4x the pixels, 20 at 16x: (50 + 240 + 320) / 10 s.
    assert tracker.remaining_s() == pytest.approx(61.0)
    assert tracker.eta() == "ETA 1m01s + judge"
    tracker.step = 120
    assert tracker.scale_of(120) == 1 and tracker.scale_of(100) == 0 and tracker.scale_of(161) == 2
    assert "iteration 120/180 [scale 2/3, 128x128]" in tracker.line(np.array([0.5]), 0.0)
    one = progress.Progress(10, [0], log_every=5, stream=stream)
    one.first_step_s = 1.0
    assert "[scale" not in one.line(np.array([0.5]), 0.0)


def test_a_stop_during_the_judge_keeps_the_images_and_says_so(tmp_path, weights_path):
    src = photo(tmp_path / "a.png")
    out = tmp_path / "out"
    stops = {"judging": False}
    from texsynth_jax import evaluate

    real = evaluate.judge

    def judge(*args, should_stop, **kwargs):  # the stop arrives while the judge runs
        stops["judging"] = True
        return real(*args, should_stop=should_stop, **kwargs)

    evaluate.judge = judge
    try:
        report = run_job([(src, [0])], weights_path, CONFIG, RunOptions(output_dir=str(out), mesh="none", log_every=100),
                         log=quiet, should_stop=lambda: stops["judging"])
    finally:
        evaluate.judge = real
    assert report.interrupted and report.results[0].status == "interrupted"
    record = json.loads((out / "a_run.json").read_text())
    assert record["status"] == "complete" and record["judge"] == {"stopped": True}
    assert (out / "a_seed0.png").exists()


def test_sizes_the_judge_cannot_take_are_refused_before_the_first_iteration(tmp_path, weights_path):
    """--size=24 (fine for pool1) and a 28 px source failed only after the images were written."""
    src, small = photo(tmp_path / "a.png"), photo(tmp_path / "b.png", size=28)
    out = tmp_path / "out"
    config = SynthesisConfig(size=(24, 24), layers=("conv1_1", "pool1"), layer_weights=(1.0, 1.0), iterations=2,
                             coarse_iterations=())
    for work, size_config in [([(src, [0])], config), ([(src, [0]), (small, [0])], CONFIG)]:
        with pytest.raises(ValueError, match="too small for the judge.*--judge=false"):
            run_job(work, weights_path, size_config, RunOptions(output_dir=str(out), mesh="none"), log=quiet)
        assert not out.exists()


def test_a_run_that_made_nothing_ends_stalled_not_complete(tmp_path, weights_path):
    """A loss with nothing to match (here a registered term that is zero everywhere; before, gram:1e-300)
    left the starting grey noise and called it "complete"."""
    from texsynth_jax import terms

    terms.register("nothing", lambda features, source, layers, size: {},
                   lambda features, image, stats, layer_weights, key: 0.0 * image.sum(), replace=True)
    config = SynthesisConfig(size=(32, 32), layers=("conv1_1",), layer_weights=(1.0,), loss=("nothing:1",),
                             iterations=runner.STALL_MIN_ITERATIONS, coarse_iterations=())
    report = run_job([(photo(tmp_path / "a.png"), [0])], weights_path, config,
                     RunOptions(output_dir=str(tmp_path / "out"), **OPTIONS), log=quiet)
    assert [r.status for r in report.results] == ["stalled"] and not report.interrupted
    assert json.loads((tmp_path / "out" / "a_run.json").read_text())["status"] == "stalled"
