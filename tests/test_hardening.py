"""Hostile and unlucky inputs: memory a run cannot have, non-finite numbers, damaged or foreign
checkpoints and records, and two runs writing into one folder. Each is refused with one line, and a
refusal before synthesis leaves the disk as it was."""

import errno
import fcntl
import json
import os
import shutil
import struct
import tracemalloc
import zlib

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from test_run import in_process, listing
from texsynth_jax import engine as engine_lib
from texsynth_jax import (Engine, RunOptions, SynthesisConfig, budget, checkpoint, image_io, jobs, load_weights,
                          outputs, records, run_job, storage, synthesis, weights)

SHALLOW = ["--layers=conv1_1,pool1", "--size=32", "--coarse_iterations=", "--iterations=2", "--mesh=none",
           "--log_every=100"]
CONFIG = SynthesisConfig(size=(32, 32), layers=("conv1_1", "pool1"), layer_weights=(1.0, 1.0), iterations=2,
                         coarse_iterations=())


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def blank_png(path, width, height, pixels=True):
    """A valid 1-bit black PNG of any size in a few KB, streamed row by row; without `pixels`, only
    the header and an empty image stream (enough for anything that reads no pixels)."""
    stream = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    data = b"".join(stream.compress(row) for _ in range(height if pixels else 0)) + stream.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return str(path)


def source(path, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    return str(path)


def refused(args, words, tmp_path, weights_path, capsys):
    """Run run.py in this process; assert exit 2, one `error:` line containing `words`, and no write."""
    out = tmp_path / "out"
    before = listing(tmp_path)
    code, stderr = in_process([f"--weights={weights_path}", f"--output_dir={out}", *args], capsys)
    last = stderr.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error:") and "Traceback" not in stderr, stderr
    for word in words:
        assert word in last, last
    assert listing(tmp_path) == before
    return last


# 1. Resources.

def test_a_huge_image_in_a_small_file_is_refused_before_decoding(tmp_path, weights_path, capsys):
    path = blank_png(tmp_path / "huge.png", 10000, 10000)
    assert os.path.getsize(path) < 50_000
    assert image_io.check_image(path) == (10000, 10000)  # a valid image: only its size is the problem
    line = refused([*SHALLOW, f"--input={path}"], ["10000x10000", "GiB", "px fit"], tmp_path, weights_path, capsys)
    assert "give a smaller image" in line


def test_a_decompression_bomb_is_one_line(tmp_path, weights_path, capsys):
    path = blank_png(tmp_path / "bomb.png", 30000, 30000, pixels=False)
    with pytest.raises(image_io.ImageError, match="decompression bombs"):
        image_io.load_image(path)
    refused([*SHALLOW, f"--input={path}"], ["decompression bombs", "smaller image"], tmp_path, weights_path, capsys)


def test_an_output_too_large_is_refused_with_what_fits(tmp_path, weights_path, capsys):
    line = refused(["--size=100000", "--iterations=1", "--mesh=none"], ["100000x100000", "px"], tmp_path,
                   weights_path, capsys)
    assert "fit at most about" in line and "--size" in line


def test_two_billion_seeds_are_refused_without_building_them(tmp_path, weights_path, capsys):
    tracemalloc.start()
    with pytest.raises(jobs.JobError, match="65536"):
        jobs.parse_seeds("2000000000")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20  # a list of two billion ints would be 16 GB
    refused([*SHALLOW, "--seeds=2000000000"], ["--seeds=2000000000"], tmp_path, weights_path, capsys)
    listed = tmp_path / "job.txt"  # a list file of many counts is capped as it is read
    listed.write_text("a.png 65536\n" * 17)
    with pytest.raises(jobs.JobError, match="pairs"):
        jobs.read_sources(str(listed), [0])


def test_the_memory_check_says_what_fits_and_that_it_fits():
    args = dict(config=CONFIG, arch="vgg16", host_limit=2 << 30)
    sources = [("a.png", (256, 256))]
    with pytest.raises(budget.BudgetError) as error:
        budget.check(sources, (512, 512), 64, **args)
    message = str(error.value)
    assert "64 seed(s) at 512x512" in message and "of memory here" in message
    seeds = int(message.split("at most ")[1].split(" seed")[0])
    budget.check(sources, (512, 512), seeds, **args)  # what it says fits, fits
    with pytest.raises(budget.BudgetError):
        budget.check(sources, (512, 512), seeds + 1, **args)
    # A device that reports its memory is judged on its own; the host then holds only the decoding.
    with pytest.raises(budget.BudgetError, match="of gpu device 0"):
        budget.check(sources, (512, 512), 64, **{**args, "host_limit": 64 << 30}, device_limit=1 << 30,
                     device_name="gpu device 0")
    budget.check(sources, (512, 512), 64, **{**args, "host_limit": 64 << 30}, device_limit=None)


def _xla_targets_bytes(params, spec, config):
    return engine_lib.memory_bytes(jax.jit(synthesis.compute_targets, static_argnums=(2, 3)).lower(
        params, jax.ShapeDtypeStruct((*config.size, 3), jnp.float32), spec, config))


@pytest.mark.parametrize("size,batch,remat,pyramid", [(64, 1, False, 0), (128, 1, False, 0), (64, 2, False, 0),
                                                      (128, 1, True, 0), (128, 2, True, 0), (128, 1, True, 1)])
def test_the_memory_model_matches_xla(size, batch, remat, pyramid, weights_path):
    """The per-pixel constants of budget.py against XLA's account of the compiled programs, with the
    default settings, with remat and with --pyramid: never below it (a refusal must not be needed to avoid running
    out), and not far above (a run that fits must not be refused)."""
    params, spec, _ = load_weights(weights_path)
    config = SynthesisConfig(size=(size, size), remat=remat, coarse_iterations=(), pyramid=pyramid)  # one scale
    engine = Engine(params, spec, config, batch)
    xla = engine.step_memory_bytes()
    if (size, batch, remat, pyramid) == (64, 1, False, 0):  # the analysis-only compile accounts as the real one does
        assert xla == engine_lib.memory_bytes(engine.lower(programs=("step",))["step"], compiler_options={})
    model = budget.step_bytes(config, spec.arch, config.size, batch, jax.default_backend())
    assert xla <= model <= 1.2 * xla, (model, xla)
    if batch == 1:
        xla = _xla_targets_bytes(params, spec, config)
        model = budget.targets_bytes(config, spec.arch, config.size, jax.default_backend())
        assert xla <= model <= 1.2 * xla, (model, xla)


def test_on_a_device_with_memory_of_its_own_xla_account_decides(tmp_path, weights_path, monkeypatch):
    """Where JAX reports the device's memory (a GPU or TPU), the job compiles the finest scale's programs for the
    analysis and refuses, in one line, one that does not fit by XLA's account; on the host's memory it does not."""
    params, spec, _ = load_weights(weights_path)
    engine = Engine(params, spec, CONFIG, 1)
    need = max(engine_lib.memory_bytes(lowered) for lowered in engine.lower(programs=("targets", "init", "step")).values())
    with pytest.raises(budget.BudgetError, match=r"^1 seed\(s\) at 32x32 need .* by XLA's account, more than the .* of "
                                                 r"tpu device 0; use a smaller --size"):
        budget.check_programs(engine, need - 1, "tpu device 0")
    lines = []
    budget.check_programs(engine, need, "tpu device 0", lines.append)
    assert len(lines) == 1 and lines[0].startswith("memory: XLA's account of the "), lines
    # run_job asks it with the device's limit: none on XLA:CPU, a refusal before anything is written where the
    # device reports less than the programs need (here the model is told it fits: the model alone would pass).
    monkeypatch.setattr(budget, "device_memory_bytes", lambda device: need - 1)
    monkeypatch.setattr(budget, "check", lambda *args, **kwargs: None)
    out = tmp_path / "out"
    with pytest.raises(budget.BudgetError, match="by XLA's account"):
        run_job([(source(tmp_path / "a.png"), [0])], weights_path, CONFIG, RunOptions(output_dir=str(out), mesh="none"),
                log=lambda line: None)
    assert not out.exists()


# 2. Numbers.

@pytest.mark.parametrize("flag", ["--init_scale=nan", "--layer_weights=inf,1", "--layer_weights=1,-inf"])
def test_non_finite_settings_are_refused(flag, tmp_path, weights_path, capsys):
    refused([*SHALLOW, flag], ["is not finite"], tmp_path, weights_path, capsys)


def test_a_float_image_with_nan_pixels_is_refused(tmp_path, weights_path, capsys):
    pixels = np.random.default_rng(0).uniform(size=(40, 40)).astype(np.float32)
    pixels[5, 7] = np.nan
    path = str(tmp_path / "float.tif")
    Image.fromarray(pixels, mode="F").save(path)
    with pytest.raises(image_io.ImageError, match="NaN or infinite"):
        image_io.load_image(path)
    out = tmp_path / "out"
    code, stderr = in_process([*SHALLOW, f"--input={path}", f"--weights={weights_path}", f"--output_dir={out}"],
                              capsys)
    last = stderr.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error:") and "NaN or infinite" in last, stderr
    assert listing(out) == []  # refused as the source was read: not even the lock is left


def test_a_loss_that_turns_non_finite_stops_the_source(tmp_path, weights_path, capsys, monkeypatch):
    step = engine_lib.step_batch  # the batched step program an engine on one device runs

    def poisoned(state, *args):  # iteration 2 of 3 returns NaN, as an overflow would
        state, losses = step(state, *args)
        return state, jnp.where(state.step == 2, jnp.nan, losses)

    monkeypatch.setattr(engine_lib, "step_batch", poisoned)
    out = tmp_path / "out"
    code, stderr = in_process([*SHALLOW, "--iterations=3", f"--input={source(tmp_path / 'a.png')}",
                               f"--weights={weights_path}", f"--output_dir={out}"], capsys)
    assert code == 3, stderr
    assert "NaN or infinite at iteration 2" in stderr and "Traceback" not in stderr
    assert not [n for n in os.listdir(out) if n.endswith(".png")]
    record = json.loads((out / "a_run.json").read_text(), parse_constant=lambda c: pytest.fail(c))  # strict JSON
    assert record["status"] == "diverged" and record["diverged_at"] == 2 and record["outputs"]["images"] is None
    assert record["loss_history"]["0"][1] is None
    with pytest.raises(ValueError):  # the record writer refuses NaN rather than writing invalid JSON
        outputs.save_record(str(tmp_path / "x.json"), {"a": float("nan")})


# 3. Checkpoints.

@pytest.fixture(scope="module")
def interrupted_once(tmp_path_factory, weights_path):
    """A folder holding a source a.png and out/, the checkpoint of a run stopped after its first iteration."""
    folder = tmp_path_factory.mktemp("interrupted")
    path = source(folder / "a.png")
    out = folder / "out"
    report = run_job([(path, [0])], weights_path, CONFIG, RunOptions(output_dir=str(out), checkpoint_every=1,
                                                                       mesh="none"),
                     log=lambda line: None, should_stop=lambda: True)
    assert report.interrupted and (out / "a_ckpt.npz").is_file()
    return folder


@pytest.fixture()
def interrupted(interrupted_once, tmp_path):
    """(source, output folder) of the interrupted run, copied into this test's own tmp_path to damage or resume
    (the checkpoint's fingerprint holds the source's pixels, not its path)."""
    shutil.copy(interrupted_once / "a.png", tmp_path / "a.png")
    shutil.copytree(interrupted_once / "out", tmp_path / "out")
    return str(tmp_path / "a.png"), tmp_path / "out"


def test_a_checkpoint_of_other_weights_is_refused(interrupted, tmp_path, weights_path):
    path, out = interrupted
    params, spec, meta = load_weights(weights_path)
    params["conv1_1"]["kernel"][0, 0, 0, 0] += 1e-3  # same architecture, one weight slightly off
    other = str(tmp_path / "other.h5")
    weights.save_weights(other, params, spec, meta["source_name"], meta["source_sha256"])
    with pytest.raises(checkpoint.CheckpointError, match="belongs to another run"):
        run_job([(path, [0])], other, CONFIG, RunOptions(output_dir=str(out), resume=True, mesh="none"),
                log=lambda line: None)


def damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[:len(data) // 2]
    elif how == "bit-flipped":
        data[len(data) // 3] ^= 0x10
    else:
        data = b""
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "empty"])
def test_a_damaged_checkpoint_is_one_line(how, interrupted, weights_path, capsys):
    small = interrupted[1].parent / "small.npz"
    checkpoint.save(str(small), {"a": np.arange(4096, dtype=np.float32)}, {"iteration": 1})
    damage(small, how)
    with pytest.raises(checkpoint.CheckpointError, match="unreadable"):
        checkpoint.load(str(small), {"a": jax.ShapeDtypeStruct((4096,), jnp.float32)})
    path, out = interrupted
    ckpt = out / "a_ckpt.npz"
    damage(ckpt, how)
    code, stderr = in_process([*SHALLOW, f"--input={path}", f"--weights={weights_path}", f"--output_dir={out}",
                               "--resume", "--checkpoint_every=1"], capsys)
    last = stderr.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in stderr, stderr
    assert last.startswith(f"error: checkpoint {ckpt} is unreadable") and "--overwrite" in last, last


# 4. --resume over finished runs.

def test_resume_skips_only_a_finished_run_of_the_same_request(tmp_path, weights_path, capsys):
    path = source(tmp_path / "a.png")
    out = tmp_path / "out"
    base = [*SHALLOW, f"--input={path}", f"--weights={weights_path}", f"--output_dir={out}", "--seeds=1"]
    assert in_process(base, capsys)[0] == 0
    code, stderr = in_process([*base, "--resume"], capsys)
    assert code == 0 and "already done" in stderr
    record = out / "a_run.json"
    for change, what in [(["--seeds=2"], "seeds"), (["--iterations=3"], "settings")]:
        before = listing(tmp_path)
        code, stderr = in_process([*base, *change, "--resume"], capsys)
        last = stderr.strip().splitlines()[-1]
        assert code == 2 and str(record) in last and f"other {what}" in last and "--overwrite" in last, last
        assert listing(tmp_path) == before
    source(path, seed=1)  # the same name, other pixels
    code, stderr = in_process([*base, "--resume"], capsys)
    assert code == 2 and "other input" in stderr.strip().splitlines()[-1]
    code, stderr = in_process([*base, "--resume", "--overwrite"], capsys)  # redone, not skipped
    assert code == 0 and "already done" not in stderr
    assert json.loads(record.read_text())["input"]["sha256"] == weights.file_sha256(path)


# 5. One writer per folder.

def test_a_folder_being_written_is_refused(tmp_path, weights_path, capsys):
    path = source(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".texsynth_p0.lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another run, writing there
        refused([*SHALLOW, f"--input={path}"], ["another run is writing there", str(out)], tmp_path, weights_path,
                capsys)
        # Each host of a multi-host job takes its own lock, so process 1 is not held up by process 0.
        report = run_job([(path, [0, 1])], weights_path, CONFIG, RunOptions(output_dir=str(out), mesh="none"),
                         process=1, processes=2, log=lambda line: None)
        assert [r.status for r in report.results] == ["complete"] and (out / "a_seed1.png").is_file()
    code, stderr = in_process([*SHALLOW, f"--input={path}", f"--weights={weights_path}", f"--output_dir={out}"],
                              capsys)
    assert code == 0, stderr
    assert not lock.exists()  # released and removed at the end of the run


# 6. Converted weights edited by hand, given to --weights.

@pytest.mark.parametrize("edit,words", [
    (lambda f: f.create_dataset("extra", data=np.zeros(3, np.float32)), ["unexpected layer extra"]),
    (lambda f: f.attrs.create("mean", np.array([0.5, 0.5])), ["bad metadata", "3 channels"]),
    (lambda f: f.attrs.create("scale", h5py.Empty("f4")), ["bad metadata"])], ids=["extra", "mean2", "null"])
def test_edited_weights_are_one_line(edit, words, tmp_path, weights_path, capsys):
    path = str(tmp_path / "edited.h5")
    shutil.copy(weights_path, path)
    with h5py.File(path, "a") as f:
        edit(f)
    refused([*SHALLOW, f"--input={source(tmp_path / 'a.png')}"], [path, *words], tmp_path, path, capsys)


# 7. A full disk, every name a run writes, and the leftovers of a killed save.

def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(tmp_path, weights_path, capsys,
                                                                                   monkeypatch):
    out = tmp_path / "out"
    ckpt = out / "a_ckpt.npz"
    savez, kept = np.savez, []  # kept: the checkpoint on disk when each save began

    def full_disk(file, **arrays):  # the first checkpoint fits; the second fills the disk part way through
        kept.append(ckpt.read_bytes() if ckpt.exists() else None)
        if len(kept) == 1:
            return savez(file, **arrays)
        file.write(b"PK\x03\x04" + bytes(1000))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.np, "savez", full_disk)
    code, stderr = in_process([*SHALLOW, "--iterations=3", "--checkpoint_every=1",
                               f"--input={source(tmp_path / 'a.png')}", f"--weights={weights_path}",
                               f"--output_dir={out}"], capsys)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in stderr and len(kept) == 2, stderr
    assert errors == [f"error: cannot write {ckpt} ({os.strerror(errno.ENOSPC)}); free some space or choose another "
                      "--output_dir"], stderr
    # The last checkpoint, whole; no temp file (beside it, the list of the files the run may write).
    assert sorted(os.listdir(out)) == [".texsynth-files-p0.txt", "a_ckpt.npz"] and ckpt.read_bytes() == kept[1]


def test_snapshots_are_in_the_overwrite_check(tmp_path, weights_path, capsys):
    assert records.snapshot_steps(10, 4, 1) == [4, 8]
    assert records.snapshot_steps(10, 4, 3) == [1, 2, 4, 5, 6, 8, 9]  # what a dispatch of 3 can end on
    path = source(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    snapshot = out / "a_seed0_iter2.png"
    snapshot.write_bytes(b"an earlier run's snapshot")
    args = [*SHALLOW, "--iterations=3", f"--input={path}"]
    refused([*args, "--save_every=2"], [f"{snapshot} already exists", "--overwrite"], tmp_path, weights_path, capsys)
    code, stderr = in_process([*args, f"--weights={weights_path}", f"--output_dir={out}"], capsys)
    assert code == 0 and snapshot.read_bytes() == b"an earlier run's snapshot", stderr  # not a name it writes


def test_temp_files_name_their_target(tmp_path):
    with storage.atomic_path(str(tmp_path / "a_seed0.png")) as tmp:
        assert storage.temp_target(os.path.basename(tmp)) == "a_seed0.png"
        with open(tmp, "wb") as f:
            f.write(b"png")
    assert os.listdir(tmp_path) == ["a_seed0.png"]
    for name in ("a_seed0.png", ".tmp-.png", ".tmp-a-0123abcz.png", ".tmp-a_0123abcd.png", ".tmp-0123abcd.png"):
        assert storage.temp_target(name) is None, name


def test_a_run_removes_the_temp_files_of_its_killed_saves_only(interrupted, weights_path, capsys):
    path, out = interrupted
    ours = [".tmp-a_seed0-0123abcd.png", ".tmp-a_ckpt-89abcdef.npz", ".tmp-a_run-deadbeef.json",
            ".tmp-a_sheet-00000000.png"]
    others = [".tmp-b_seed0-0123abcd.png", ".tmp-a_seed7-0123abcd.png", ".tmp-a_seed0-notatag.png",
              ".tmp-0123abcd.png", "a_seed0.png.tmp-", "notes.txt"]
    for name in ours + others:
        (out / name).write_bytes(b"partial " + name.encode())
    code, stderr = in_process([*SHALLOW, f"--input={path}", f"--weights={weights_path}", f"--output_dir={out}",
                               "--resume", "--checkpoint_every=1"], capsys)
    assert code == 0 and "removed 4 temp file(s)" in stderr, stderr
    assert not [name for name in ours if (out / name).exists()]
    assert all((out / name).read_bytes() == b"partial " + name.encode() for name in others)
    assert json.loads((out / "a_run.json").read_text())["status"] == "complete"
