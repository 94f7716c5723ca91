"""A synthesis job from Python: sources and seeds in, images, contact sheets and run records out.

    report = runner.run_job(jobs.read_sources("textures/", [0, 1]), "models/vgg16_lpips.h5",
                            SynthesisConfig(size=(256, 256), iterations=300),
                            RunOptions(output_dir="out/job", checkpoint_every=50, resume=True))

`run_job` owns everything around the numerical core: this host's share of the (source, seed) pairs,
output names, the checks that write nothing when they fail, one `Engine` (weights placed and programs
compiled once for the whole job), sources decoded one at a time, progress, snapshots, checkpoints and
`resume` bound to a fingerprint, the JSON run record, and Ctrl-C (the first stops after the iteration in
flight and saves what it reached; a second stops at once). Every problem found before synthesis is a
ValueError with a one-line message naming the fix, raised before anything is written.
"""

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import signal
import sys
import threading
import time
from typing import Callable, NamedTuple

import jax
import numpy as np

from texsynth_jax import budget, checkpoint, coarse_to_fine, image_io, jobs, outputs, parallel, progress, vgg, weights
from texsynth_jax.coarse_to_fine import CoarseToFine
from texsynth_jax.config import SynthesisConfig, check_fields, setting
from texsynth_jax.engine import STEPS_PER_DISPATCH

MESHES = ("auto", "seeds", "space", "none")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a job runs and where it writes; nothing here changes the images."""

    output_dir: str = setting("out", "Folder for the images, contact sheet, JSON record and loss plot; created "
                              "if missing.")
    log_every: int = setting(50, "Log a progress line every N iterations.")
    save_every: int = setting(0, "Save intermediate images every N iterations (0: off).")
    checkpoint_every: int = setting(0, "Checkpoint every K iterations (0: off), atomically, into --output_dir; "
                                    "rerun the same command with --resume to continue after a crash or preemption.")
    resume: bool = setting(False, "Continue from the checkpoints in --output_dir and skip sources already done.")
    overwrite: bool = setting(False, "Replace outputs of an earlier run in --output_dir instead of refusing.")
    mesh: str = setting("auto", "How this host's devices share the work: seeds (split the batch of seeds), space "
                        "(split each image into strips, for outputs too big for one device), none (one device); "
                        "auto: seeds when there are several devices.", MESHES)
    judge: bool = setting(True, "Judge every finished source's outputs with the built-in judge (texsynth_jax.evaluate: "
                          "distance to the source, diversity, copied fraction) and write the figures into the record.")

    def __post_init__(self):
        check_fields(self)
        if self.log_every < 1:
            raise ValueError(f"--log_every={self.log_every} must be at least 1; give a count like 50")
        if self.save_every < 0:
            raise ValueError(f"--save_every={self.save_every} is negative; give 0 (off) or a count like 100")
        if self.checkpoint_every < 0:
            raise ValueError(f"--checkpoint_every={self.checkpoint_every} is negative; give 0 (off) or a count like 50")
        if self.mesh not in MESHES:
            raise ValueError(f"--mesh={self.mesh!r} is unknown; use one of {MESHES}")


class SourceResult(NamedTuple):
    path: str
    seeds: list
    status: str  # "complete", "interrupted", "diverged" (non-finite loss) or "skipped" (done, --resume)
    record_path: str | None


class JobReport(NamedTuple):
    results: list  # SourceResult per source of this host, in order
    interrupted: bool  # Ctrl-C: the job stopped early (what was reached is saved)


class _Source(NamedTuple):
    path: str
    seeds: list
    size: tuple  # (height, width) from the header
    names: dict  # output file names


def choose_mesh(kind: str, config: SynthesisConfig, arch: str, devices=None):
    """The device mesh for `kind` (RunOptions.mesh) over this host's devices; None: one device."""
    devices = jax.local_devices() if devices is None else list(devices)
    kind = kind if kind != "auto" else ("seeds" if len(devices) > 1 else "none")
    if kind == "none":
        return None
    mesh = parallel.make_mesh(parallel.SEEDS if kind == "seeds" else parallel.SPACE, devices)
    if kind == "space":
        parallel.check_spatial(mesh, config.size, max(vgg.downsampling(arch, l) for l in config.layers))
    return mesh


def _plan(work, arch, config, options, process, processes) -> list[_Source]:
    """Check every source's header and size (no pixels decoded) and name its outputs."""
    plan = []
    suffix = f"_p{process}" if processes > 1 else ""  # each host writes its own record and sheet
    for path, seeds in work:
        size = image_io.check_image(path)
        coarse_to_fine.check_source(size, config, arch, f"input image {path}")
        stem = jobs.stem(path)
        names = outputs.final_names(stem, seeds, config.tileable, config.scale_sizes[:-1])
        for key in ("sheet", "record", "loss_plot"):
            root, ext = os.path.splitext(names[key])
            names[key] = root + suffix + ext
        names["checkpoint"] = f"{stem}_ckpt{suffix}.npz"
        plan.append(_Source(path, seeds, size, names))
    return plan


def _finished(output_dir: str, src: _Source, config: SynthesisConfig, weights_sha256: str, overwrite: bool) -> bool:
    """Whether this source and host's record in the output folder is a finished run of this very request
    (settings, seeds, input file, weights file). A finished run of another request is refused, as
    skipping it would leave its outputs in place of the ones asked for, unless `overwrite` redoes it."""
    path = os.path.join(output_dir, src.names["record"])
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return False
    field = lambda *keys: functools.reduce(lambda d, k: d.get(k) if isinstance(d, dict) else None, keys, record)
    if field("status") != "complete":
        return False
    differs = [what for what, same in (
        ("settings", field("config") == json.loads(json.dumps(dataclasses.asdict(config)))),
        ("seeds", field("seeds") == list(src.seeds)),
        ("input", field("input", "sha256") == weights.file_sha256(src.path)),
        ("weights", field("weights", "file_sha256") == weights_sha256)) if not same]
    if not differs:
        return True
    if overwrite:
        return False
    raise outputs.OutputError(f"{path} records a finished run with other {' and '.join(differs)}; pass --overwrite "
                              "to redo it, or choose another --output_dir")


def _snapshot_steps(iterations: int, save_every: int, steps_per_dispatch: int) -> list[int]:
    """The iterations whose images a run may save (--save_every): the dispatches that end within
    steps_per_dispatch of a multiple of save_every, as _run_source saves them, from any resume point."""
    if not save_every:
        return []
    return sorted({k for m in range(0, iterations, save_every)
                   for k in range(max(m, 1), min(m + steps_per_dispatch, iterations))})


def _output_files(src: _Source, config: SynthesisConfig, options: RunOptions, steps_per_dispatch: int) -> list[str]:
    """Every file name a run of `src` may write (or remove): images, their 2x2 repeats (tileable), each
    coarse scale's images, sheet, record, loss plot, snapshots and checkpoint. The overwrite check and the
    clean-up of stale temp files both go by this list."""
    total = config.total_iterations
    snapshots = [outputs.seed_name(jobs.stem(src.path), seed, step, total)
                 for step in _snapshot_steps(total, options.save_every, steps_per_dispatch)
                 for seed in src.seeds]
    return [*src.names["images"], *src.names["tiled"], *(n for scale in src.names["scales"] for n in scale),
            src.names["sheet"], src.names["record"], src.names["loss_plot"], *snapshots, src.names["checkpoint"]]


class _StopFlag:
    """SIGINT while a job runs: the first Ctrl-C asks to stop after the iteration in flight (a
    KeyboardInterrupt raised wherever the signal lands can be swallowed, e.g. in a finalizer); a
    second stops at once. Installed only in the main thread, and the caller's handler is restored."""

    def __init__(self, say):
        self.requested, self._say, self._previous = False, say, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self._say("Ctrl-C: stopping after this iteration (Ctrl-C again to stop at once)")

    def shield(self):
        """Saving takes a moment; Ctrl-C must not cut it short."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def fingerprint(config, seeds, image, weights_sha256: str, meta: dict) -> str:
    """What a checkpoint must match to be continued: settings, seeds, source pixels, and the converted
    weights (their file's content and their convention)."""
    text = json.dumps([dataclasses.asdict(config), list(seeds), weights_sha256,
                       {k: meta.get(k) for k in ("arch", "channel_order", "scale", "mean", "std")}],
                      sort_keys=True)
    return hashlib.sha256(text.encode() + np.ascontiguousarray(image).tobytes()).hexdigest()


def run_job(work, weights_path: str, config: SynthesisConfig, options: RunOptions = RunOptions(), *,
            process: int | None = None, processes: int | None = None, log: Callable[[str], None] | None = None,
            record_extra: dict | None = None, steps_per_dispatch: int | None = None,
            should_stop: Callable[[], bool] | None = None) -> JobReport:
    """Synthesise every (source, seeds) of `work` that falls to this host, writing into options.output_dir.

    Args:
      work: [(image path, [seed, ...])], e.g. from `jobs.read_sources`.
      weights_path: a converted weights file (`weights_convert`).
      config, options: what to synthesise, and how to run and write it.
      process, processes: this host's index and the host count (default: jax's).
      log: where summary lines go (default: stderr); progress lines go there too on process 0.
      record_extra: more entries for every run record (run.py adds the command and its flags).
      steps_per_dispatch: iterations per host dispatch (default: per backend, engine.STEPS_PER_DISPATCH).
      should_stop: asked after every dispatch; True stops the job there as a Ctrl-C does (saving what
        was reached, and a checkpoint when checkpoint_every is set): a time budget, a preemption notice.

    Returns:
      a JobReport. Raises ValueError (one line, naming the fix) before anything is written when the
      job cannot run, and checkpoint.CheckpointError if a checkpoint cannot be continued.
    """
    t0 = time.perf_counter()
    process = jax.process_index() if process is None else process
    processes = jax.process_count() if processes is None else processes
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    say = log if process == 0 else (lambda line: None)  # summary lines from process 0 only

    # 1. Everything that can fail is checked before anything is decoded, compiled or written.
    share = jobs.host_jobs(work, process, processes)
    params, spec, meta = weights.load_weights(weights_path)
    weights_sha256 = weights.file_sha256(weights_path)
    config.check_network(spec.arch)
    plan = _plan(share, spec.arch, config, options, process, processes)
    mesh = choose_mesh(options.mesh, config, spec.arch)
    spd = steps_per_dispatch or STEPS_PER_DISPATCH.get(jax.default_backend(), 1)  # as the Engine will take it
    files = lambda sources: [name for src in sources for name in _output_files(src, config, options, spd)]

    def check_folder() -> list[_Source]:
        """The sources to run, after the checks on the output folder's contents (no writes)."""
        todo = [src for src in plan if not (options.resume and _finished(options.output_dir, src, config,
                                                                         weights_sha256, options.overwrite))]
        if not options.resume and not options.overwrite:  # first, for its hint: --resume
            stale = [os.path.join(options.output_dir, src.names["checkpoint"]) for src in todo]
            stale = [path for path in stale if os.path.exists(path)]
            if stale:
                raise checkpoint.CheckpointError(f"{stale[0]} is a checkpoint of an unfinished run; pass --resume "
                                                 "to continue it or --overwrite to start over")
        outputs.check_output_dir(options.output_dir, files(todo), options.overwrite or options.resume)
        return todo

    todo = check_folder()
    if not todo:
        return JobReport(_skipped(plan, todo, options.output_dir, say), False)
    check_memory(todo, config, spec.arch, mesh)
    engine = CoarseToFine(params, spec, config, max(len(src.seeds) for src in todo), mesh, steps_per_dispatch)
    del params  # the engine holds them on the device(s)
    os.makedirs(options.output_dir, exist_ok=True)
    with _FolderLock(options.output_dir, process, log):
        todo = check_folder()  # again, now that no other run can write there: one may have, meanwhile
        removed = outputs.remove_stale_temps(options.output_dir, files(plan))  # a killed save's, ours only
        if removed:
            log(f"removed {removed} temp file(s) left in {options.output_dir} by a killed save")
        results = _skipped(plan, todo, options.output_dir, say)
        where = f"{jax.default_backend()}, {len(jax.local_devices())} device(s)"
        if processes > 1:
            where += f" per host, {processes} hosts"
        say(f"{len(todo)} source(s), {_schedule(config)}, {spec.arch}, {where}, "
            f"mesh {'none' if mesh is None else mesh.axis_names[0]}")
        from texsynth_jax import evaluate  # here, so `python -m texsynth_jax.evaluate` runs it fresh

        judge = evaluate.load_judge() if options.judge else None
        context = _Context(engine, judge, meta, weights_path, weights_sha256, options, record_extra or {},
                           log, say, t0, should_stop or (lambda: False))

        # 2. One source at a time, decoded when its turn comes.
        for src in todo:
            result = _run_source(context, src)
            results.append(result)
            if result.status == "interrupted":
                return JobReport(results, True)
    diverged = sum(r.status == "diverged" for r in results)
    say(f"done in {progress.format_duration(time.perf_counter() - t0)}: {len(todo) - diverged} source(s) in "
        f"{options.output_dir}" + (f"; {diverged} stopped on a non-finite loss" if diverged else ""))
    return JobReport(results, False)


def _skipped(plan, todo, output_dir: str, say) -> list[SourceResult]:
    results = []
    for src in plan:
        if src not in todo:
            say(f"{src.path}: already done in {output_dir}, skipped (--resume)")
            results.append(SourceResult(src.path, src.seeds, "skipped", os.path.join(output_dir, src.names["record"])))
    return results


def check_memory(todo, config: SynthesisConfig, arch: str, mesh) -> None:
    """budget.check for this host's sources on its devices (ValueError, one line, if they cannot fit)."""
    device = jax.local_devices()[0] if mesh is None else mesh.devices.flat[0]
    budget.check([(src.path, src.size) for src in todo], config.size, max(len(src.seeds) for src in todo), config,
                 arch, devices=1 if mesh is None else mesh.devices.size,
                 split="none" if mesh is None else mesh.axis_names[0], backend=jax.default_backend(),
                 device_limit=budget.device_memory_bytes(device), device_name=f"{device.platform} device {device.id}")


class _FolderLock:
    """One writer per output folder and host: an exclusive flock on `.texsynth_p<process>.lock` in it,
    held while the job writes, refused at once (one line) if another run holds it. Hosts of a
    multi-host job write their own files, so each takes its own. The OS releases a flock when its
    process dies; the file is removed on a normal release."""

    def __init__(self, folder: str, process: int, log):
        self.folder, self.log, self.fd = folder, log, None
        self.path = os.path.join(folder, f".texsynth_p{process}.lock")

    def __enter__(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise outputs.OutputError(f"--output_dir={self.folder}: another run is writing there (it holds "
                                          f"{self.path}); wait for it to end or choose another --output_dir") from None
            except OSError as e:  # a file system without locks: go on, unguarded
                os.close(fd)
                self.log(f"cannot lock {self.path} ({e.strerror or e}); make sure no other run writes there")
                return self
            # A run that was ending may have removed the file after we opened it: the lock must be the
            # path's current file, or another run could lock a new one beside ours.
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    self.fd = fd
                    return self
            os.close(fd)

    def __exit__(self, *exc):
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still held, so no run can lock the file being removed
            os.close(self.fd)


def _schedule(config: SynthesisConfig) -> str:
    """"300 iterations at 256x256", or every scale's: "100 at 64x64, 50 at 128x128, 50 at 256x256"."""
    scales = [f"{n} at {h}x{w}" for n, (h, w) in zip(config.scale_iterations, config.scale_sizes)]
    return scales[0].replace(" at", " iterations at") if len(scales) == 1 else "iterations " + ", ".join(scales)


class _Context(NamedTuple):
    engine: CoarseToFine
    judge: object  # evaluate.JudgeParams, or None when options.judge is off
    meta: dict
    weights_path: str
    weights_sha256: str
    options: RunOptions
    record_extra: dict
    log: Callable
    say: Callable
    t0: float
    should_stop: Callable


def _run_source(ctx: _Context, src: _Source) -> SourceResult:
    engine, config, options = ctx.engine, ctx.engine.config, ctx.options
    out = lambda name: os.path.join(options.output_dir, name)
    image, notes = image_io.load_image(src.path)
    for note in notes:
        ctx.say(f"input: {src.path}: {note}")
    ctx.say(f"synthesising {len(src.seeds)} x {config.size[0]}x{config.size[1]} from {src.path} "
            f"({image.shape[0]}x{image.shape[1]}), {_schedule(config)}")
    t1 = time.perf_counter()
    total = engine.iterations
    tracker = progress.Progress(total, src.seeds, options.log_every,
                                stream=None if ctx.say is ctx.log else progress.SILENT)
    stamp = fingerprint(config, src.seeds, image, ctx.weights_sha256, ctx.meta)
    path = out(src.names["checkpoint"])
    n = len(src.seeds)
    stem = jobs.stem(src.path)

    with _StopFlag(tracker.say) as stop:
        targets = jax.block_until_ready(engine.targets(image))
        t_targets = time.perf_counter() - t1
        state, done_before = None, []
        if options.resume and os.path.exists(path):
            # The state's shape is its scale's: a checkpoint records which (0 before coarse-to-fine).
            scale_of = lambda record: engine.engines[min(int(record.get("scale", 0)), len(engine.engines) - 1)]
            host_state, record = checkpoint.load(path, lambda record: scale_of(record).state_shape)
            if record.get("fingerprint") != stamp:
                raise checkpoint.CheckpointError(
                    f"checkpoint {path} belongs to another run (other settings, seeds, input or weights); "
                    "run without --resume and with --overwrite to start over")
            state = scale_of(record).place(host_state)
            done_before = [np.asarray(l, np.float32) for l in record["losses"]]
            ctx.log(f"resuming from {path} at iteration {record['iteration']}")
        if state is None:
            state = engine.init(engine.keys(src.seeds), targets)
        tracker.begin(len(done_before), done_before)
        first = len(done_before)

        def save_checkpoint(state, scale, step):
            checkpoint.save(path, state, {"iteration": step, "scale": scale, "fingerprint": stamp,
                                          "losses": [l.tolist() for l in tracker.history()]})
            tracker.say(f"checkpoint: iteration {step}/{total} -> {path}")

        checked, diverged_at = [0], []  # iterations whose losses are known finite; the first that is not

        def finite() -> bool:
            history = tracker.history()
            bad = next((i for i in range(checked[0], len(history)) if not np.all(np.isfinite(history[i]))), None)
            checked[0] = len(history)
            if bad is not None:
                diverged_at.append(bad + 1)
            return not diverged_at

        def on_step(state, scale, step, losses):
            tracker.update(step, losses[-(step - tracker.step):])
            every = lambda k: k and step % k < engine.steps_per_dispatch and step < total
            snapshot = every(options.save_every)
            stop.requested = stop.requested or ctx.should_stop()
            keep = every(options.checkpoint_every) or (stop.requested and options.checkpoint_every)
            # A NaN or infinite loss never recovers and must not be saved: check where the losses come to
            # the host anyway (the first and the logged iterations) and before anything is written.
            shown = step % options.log_every < engine.steps_per_dispatch or step <= first + engine.steps_per_dispatch
            if (shown or snapshot or keep) and not finite():
                return True
            if snapshot:
                outputs.save_images(options.output_dir, [outputs.seed_name(stem, s, step, total)
                                                         for s in src.seeds], jax.device_get(engine.images(state))[:n])
            if keep:
                save_checkpoint(state, scale, step)
            return stop.requested

        scale_done = {}  # scale -> seconds from the start of this source, as each coarse scale's images land

        def on_scale(state, scale):
            if scale == len(engine.engines) - 1 or not finite():
                return
            outputs.save_images(options.output_dir, src.names["scales"][scale], jax.device_get(engine.images(state))[:n])
            scale_done[scale] = time.perf_counter() - t1
            h, w = engine.engines[scale].config.size
            tracker.say(f"scale {scale + 1}/{len(engine.engines)} ({h}x{w}) done at iteration "
                        f"{engine.offsets[scale + 1]}: {out(src.names['scales'][scale][0])}"
                        + (" ..." if n > 1 else ""))

        try:
            state, _ = engine.run(state, targets, on_step, on_scale)
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once; the donated state is gone
            tracker.finish()
            ctx.log("stopped at once by a second Ctrl-C; no images saved for " + src.path +
                    (" (the last checkpoint is kept; continue with --resume)" if options.checkpoint_every else ""))
            return SourceResult(src.path, src.seeds, "interrupted", None)
        stop.shield()
        tracker.finish()
        t2 = time.perf_counter()
        status = "diverged" if not finite() else "complete" if tracker.step >= total else "interrupted"
        losses = [list(l) for l in zip(*tracker.history())]
        timings = {"setup": t1 - ctx.t0, "targets": t_targets, "first_iteration_with_compile": tracker.first_step_s,
                   "synthesis": t2 - t1, "iterations_per_s": tracker.rate(),
                   "scales_done": {str(k): s for k, s in sorted(scale_done.items())}}

        # 3. Each file atomically; the record last, so its presence means the run's files are there.
        names = dict(src.names)
        names["scales"] = names["scales"][: engine.scale_of(state)]  # the coarse scales finished (now or before a resume)
        if status == "diverged":  # its images are no result: only the record, to show where it went wrong
            names.update(images=None, tiled=None, sheet=None, loss_plot=None, scales=None)
        else:
            images = np.asarray(jax.device_get(engine.images(state)))[:n]
            outputs.save_images(options.output_dir, names["images"], images)
            shown = images
            if config.tileable:  # the 2x2 repeat shows the (absent) seam, on its own and in the sheet
                shown = outputs.repeat(images)
                outputs.save_images(options.output_dir, names["tiled"], shown)
            outputs.save_sheet(out(names["sheet"]), image, shown)
            if not outputs.save_loss_plot(out(names["loss_plot"]), losses, src.seeds):
                names["loss_plot"] = None
        timings["total"] = time.perf_counter() - ctx.t0
        record = _record(ctx, status, src, image, notes, names, losses, timings, tracker.step)
        if ctx.judge is not None and status != "diverged":
            t3 = time.perf_counter()
            from texsynth_jax import evaluate

            record["judge"] = evaluate.judge(ctx.judge, image, list(images))
            record["timings_s"]["judge"] = time.perf_counter() - t3
            ctx.say(f"judge: distance to the source {record['judge']['distance_mean']:.4g}, diversity "
                    f"{_maybe(record['judge']['diversity'])}, copied fraction {record['judge']['copy_fraction_max']:.3f}")
        if status == "diverged":
            record["diverged_at"] = diverged_at[0]
        outputs.save_record(out(src.names["record"]), record)
        if status == "complete" and os.path.exists(path):
            os.unlink(path)  # the outputs now hold everything it did
    if status == "diverged":
        ctx.log(f"{src.path}: the loss is NaN or infinite at iteration {diverged_at[0]}; stopped this source "
                f"without saving its images (record: {out(src.names['record'])}); check --layer_weights, "
                "--init_scale and the weights file")
        return SourceResult(src.path, src.seeds, status, out(src.names["record"]))
    if status == "interrupted":
        ctx.log(f"interrupted at iteration {tracker.step}/{total}; saved the images reached so far "
                f"in {options.output_dir}" + (" (continue with --resume)" if options.checkpoint_every else ""))
    else:
        ctx.say(f"{src.path}: {out(names['sheet'])}, {out(names['record'])}")
    return SourceResult(src.path, src.seeds, status, out(names["record"]))


def _maybe(x) -> str:
    return "n/a (one seed)" if x is None else f"{x:.4g}"


def _record(ctx: _Context, status, src, image, notes, names, losses, timings, step) -> dict:
    """The JSON record of one source's run: what was run and what came out."""
    def finite(x):
        return float(x) if np.isfinite(x) else None

    input_sha = weights.file_sha256(src.path)
    seeds, meta = src.seeds, ctx.meta
    return {
        "status": status, "iterations_done": step, **ctx.record_extra,
        "config": dataclasses.asdict(ctx.engine.config), "options": dataclasses.asdict(ctx.options),
        "seeds": seeds,
        "input": {"path": os.path.abspath(src.path), "sha256": input_sha, "size": list(image.shape[:2]),
                  "conversions": notes},
        "weights": {"path": os.path.abspath(ctx.weights_path), "file_sha256": ctx.weights_sha256,
                    "arch": meta.get("arch"), "source_name": meta.get("source_name"),
                    "source_sha256": meta.get("source_sha256")},
        "outputs": names,
        "scales": [{"size": list(size), "iterations": iterations, "source_size": list(source_size)}
                   for size, iterations, source_size in zip(ctx.engine.config.scale_sizes,
                                                            ctx.engine.config.scale_iterations,
                                                            coarse_to_fine.source_sizes(image.shape[:2],
                                                                                        ctx.engine.config))],
        "final_loss": {str(s): finite(l[-1]) if len(l) else None for s, l in zip(seeds, losses)},
        "loss_history": {str(s): [finite(x) for x in l] for s, l in zip(seeds, losses)},
        "timings_s": timings, "versions": outputs.versions(),
    }

