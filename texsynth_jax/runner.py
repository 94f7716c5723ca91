"""A synthesis job from Python: sources and seeds in, images, contact sheets and run records out.

    report = runner.run_job(jobs.read_sources("textures/", [0, 1]), "models/vgg16_lpips.h5",
                            SynthesisConfig(size=(256, 256)),
                            RunOptions(output_dir="out/job", checkpoint_every=50, resume=True))

`run_job` is the loop around the numerical core: the checks that write nothing when they fail (every
source's header, size, judge and checkpoint, the output folder, memory), one engine for the whole job
(weights placed and programs compiled once), then each source decoded in its turn and run with
progress, snapshots, checkpoints, Ctrl-C, the judge and the record. Work items with settings of their own
(jobs.WorkItem, a `.jsonl` work file) run in groups of one config, an engine per group, and each item
finished adds a line to the results manifest (results.py). Names, the fingerprint and the
record are records.py's; the folder's files and lock outputs.py's; memory budget.py's. Every problem
found before synthesis is a ValueError with a one-line message naming the fix, raised before anything
is written.
"""

import sys
import time
from typing import Callable, NamedTuple

import jax
import numpy as np

from texsynth_jax import (budget, checkpoint, coarse_to_fine, colors, fill, guide, image_io, jobs, outputs, parallel,
                          progress, records, storage, synthesis)
from texsynth_jax import results as manifest
from texsynth_jax import engine as engine_lib, weights
from texsynth_jax.config import RunOptions, SynthesisConfig, scaled_size
from texsynth_jax.interrupts import StopFlag
from texsynth_jax.records import SourcePlan

# A run whose loss fell by less than this fraction within every scale, for every seed, made nothing (a
# weight that underflows, saturated pixels): it ends "stalled", not "complete".
STALL_FRACTION = 0.01
STALL_MIN_ITERATIONS = 5  # fewer iterations are too few to tell


class SourceResult(NamedTuple):
    path: str
    seeds: list
    # "complete"; "interrupted" (Ctrl-C, should_stop); "preempted" (SIGTERM: checkpointed, to --resume);
    # "diverged" (a non-finite loss); "stalled" (the loss did not fall: nothing was made); "skipped" (already
    # done, --resume)
    status: str
    record_path: str | None


class JobReport(NamedTuple):
    results: list  # SourceResult per source of this host, in order
    interrupted: bool  # Ctrl-C, SIGTERM or should_stop: the job stopped early (what was reached is saved)
    preempted: bool = False  # by SIGTERM: every source in flight left a checkpoint (exit EXIT_PREEMPTED)


class _Job(NamedTuple):
    """What every source of a job shares."""

    engine: coarse_to_fine.CoarseToFine
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
    process: int
    on_progress: Callable  # (dict) -> None

    def out(self, name: str) -> str:
        """The path of an output file `name` in the job's folder."""
        return storage.join(self.options.output_dir, name)


def run_job(work, weights_path: str | None, config: SynthesisConfig, options: RunOptions = RunOptions(), *,
            process: int | None = None, processes: int | None = None, log: Callable[[str], None] | None = None,
            record_extra: dict | None = None, steps_per_dispatch: int | None = None,
            should_stop: Callable[[], bool] | None = None, merge_timeout: float | None = None,
            on_progress: Callable[[dict], None] | None = None) -> JobReport:
    """Synthesise every (source, seeds) of `work` that falls to this host, writing into options.output_dir.

    Args:
      work: [(image path, [seed, ...])], e.g. from `jobs.read_sources`; or jobs.WorkItems, each with its own
        output name and settings (a `.jsonl` work file): then every host keeps a results manifest
        (results.py), which process 0 merges at the end, and --resume skips an item by it and its files.
      weights_path: a converted weights file (`weights_convert`); None: the default weights
        (`weights.default_weights_path`).
      config, options: what to synthesise, and how to run and write it.
      process, processes: this host's index and the host count (default: jax's).
      log: where summary lines go (default: stderr); progress lines go there too on process 0.
      record_extra: more entries for every run record (the CLI adds the command and its flags).
      steps_per_dispatch: iterations per host dispatch (default: per backend, engine.STEPS_PER_DISPATCH).
      should_stop: asked after every dispatch and during the judge; True stops the job there as a
        Ctrl-C does (saving what was reached, and a checkpoint when checkpoint_every is set): a time
        budget, a preemption notice.
      merge_timeout: with a manifest and several hosts, how long process 0 waits at the end for the
        others to finish before it merges what is there (default: as long as its own share took, at least
        300 s: the shares are dealt evenly).
      on_progress: called on this host with a dict after every dispatch, {"event": "step", "source", "step",
        "iterations", "scale", "scales", "loss": the seeds' last fetched losses or None, "remaining_s": None
        until a rate is known}, and as each coarse scale's images are saved, {"event": "scale", "source",
        "scale", "files"}: a page or a notebook showing the run (the web page's).

    Returns:
      a JobReport. Raises ValueError (one line, naming the fix) before anything is written when the
      job cannot run, and checkpoint.CheckpointError if a checkpoint cannot be continued.
    """
    t0 = time.perf_counter()
    process = jax.process_index() if process is None else process
    processes = jax.process_count() if processes is None else processes
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    say = log if process == 0 else (lambda line: None)  # summary lines from process 0 only
    should_stop = should_stop or (lambda: False)

    # 1. Everything that can fail is checked before anything is decoded, compiled or written.
    jobs.check_work(work)
    itemised = any(isinstance(item, jobs.WorkItem) for item in work)  # a manifest is kept
    if itemised:  # every item then has its line in the manifest
        work = [item if isinstance(item, jobs.WorkItem) else jobs.WorkItem(*item) for item in work]

    def finish(report: JobReport) -> JobReport:
        """The manifests' end: each host says it is done (or stopped); process 0 merges them."""
        if itemised:
            timeout = merge_timeout if merge_timeout is not None else max(300.0, time.perf_counter() - t0)
            manifest.finish(options.output_dir, work, process, processes, stopped=report.interrupted,
                            timeout=timeout, say=say, should_stop=should_stop)
        return report

    share = jobs.host_jobs(work, process, processes)
    weights_path = weights_path or weights.default_weights_path(say)
    params, spec, meta = weights.load_weights(weights_path)
    weights_sha256 = weights.file_sha256(weights_path)
    config.check_network(spec.arch)
    plan = records.plan_sources(share, config, spec.arch, process, processes)
    if not plan:
        return finish(JobReport([], False))
    for group in _groups(plan).values():
        records.check_snapshots(group[0].config, options, max(len(src.seeds) for src in group))
    from texsynth_jax import evaluate  # here, so `python -m texsynth_jax.evaluate` runs it fresh

    mesh = parallel.choose_mesh(options.mesh)
    spd = engine_lib.dispatch_steps(steps_per_dispatch)
    files = lambda sources: [name for src in sources for name in records.output_files(src, src.config, options, spd)]
    # No output may replace an input: the user's file beside the outputs, or a later source of this job.
    outputs.check_inputs_kept([item[0] for item in work], options.output_dir, files(plan))
    if itemised:  # nor a manifest the work file
        outputs.check_inputs_kept({item.file for item in work if item.file}, options.output_dir,
                                  manifest.file_names(process))

    def done(src: SourcePlan, lines: dict) -> bool:
        """--resume: a finished run of this very request; a work item also by its manifest line and files."""
        finished = records.finished(options.output_dir, src, src.config, weights_sha256, options.overwrite)
        return finished and (src.item is None or manifest.complete(lines.get(src.stem), src, options.output_dir))

    def check_folder() -> list[SourcePlan]:
        """The sources to run, after the checks on the output folder's contents (no writes)."""
        lines = manifest.host_lines(options.output_dir, process) if itemised and options.resume else {}
        todo = [src for src in plan if not (options.resume and done(src, lines))]
        if not options.resume and not options.overwrite:  # first, for its hint: --resume
            stale = [storage.join(options.output_dir, src.names["checkpoint"]) for src in todo]
            stale = [path for path in stale if storage.exists(path)]
            if stale:
                raise checkpoint.CheckpointError(f"{stale[0]} is a checkpoint of an unfinished run; pass --resume "
                                                 "to continue it or --overwrite to start over")
        outputs.check_output_dir(options.output_dir, files(todo), options.overwrite or options.resume)
        return todo

    todo = check_folder()
    if not todo:
        return finish(JobReport(_skipped(plan, todo, options.output_dir, say), False))
    for group in _groups(todo).values():  # one engine at a time: each group's memory alone
        budget.check_job([(src.path, src.size, src.seeds) for src in group], group[0].config, spec.arch, mesh,
                         options.judge)
    if options.judge:  # a size the judge cannot take fails here, not after the images are written
        for src in plan:
            try:
                evaluate.check_judgeable(src.size, src.config.size)
            except ValueError as e:
                raise ValueError(f"input image {src.path}: {e}") from None
    # An engine per config (one for a job without per-item settings), sharing the weights placed once;
    # building one compiles nothing yet, and each is dropped when its group is done.
    engines, placed, by_config = {}, params, _groups(plan)
    del params  # the engines hold them on the device(s)

    def engine_for(group_config) -> coarse_to_fine.CoarseToFine:
        nonlocal placed
        if group_config not in engines:
            batch = max(len(src.seeds) for src in by_config[group_config])
            engines[group_config] = coarse_to_fine.CoarseToFine(placed, spec, group_config, batch, mesh, spd)
            placed = engines[group_config].engines[0].params
        return engines[group_config]

    device = budget.device_of(mesh)
    for group_config in _groups(todo):  # all now: an engine checks its settings against the mesh
        budget.check_programs(engine_for(group_config), budget.device_memory_bytes(device),
                              f"{device.platform} device {device.id}", say)
    job = _Job(engine_for(todo[0].config), evaluate.load_judge() if options.judge else None, meta, weights_path,
               weights_sha256, options, record_extra or {}, log, say, t0, should_stop, process,
               on_progress or (lambda event: None))
    if options.resume:  # every checkpoint of the job is read before the first source runs
        for src in todo:
            _resume_point(job._replace(engine=engine_for(src.config)), src, image_io.load_image(src.path)[0])
    storage.makedirs(options.output_dir)
    with outputs.FolderLock(options.output_dir, process, log):
        todo = check_folder()  # again, now that no other run can write there: one may have, meanwhile
        ours = files(plan) + (manifest.file_names(process) if itemised else [])
        removed = outputs.remove_stale_temps(options.output_dir, ours)  # a killed save's, ours only
        if removed:
            log(f"removed {removed} temp file(s) left in {options.output_dir} by a killed save")
        results = _skipped(plan, todo, options.output_dir, say)
        if itemised and options.resume:
            _say_rerun(todo, options.output_dir, process, say)
        where = f"{jax.default_backend()}, {len(jax.local_devices())} device(s)"
        if processes > 1:
            where += f" per host, {processes} hosts"
        groups = _groups(todo)
        schedule = progress.format_schedule(*groups) if len(groups) == 1 else f"{len(groups)} kinds of settings"
        say(f"{len(todo)} source(s), {schedule}, {spec.arch}, {where}, "
            f"mesh {'none' if mesh is None else mesh.axis_names[0]}")

        # 2. One group of sources with one config at a time, and in it one source at a time, decoded when its
        # turn comes.
        for number, (group_config, group) in enumerate(groups.items(), 1):
            job = job._replace(engine=engine_for(group_config))
            del engines[group_config]  # the job holds it alone: the last group's engine is freed
            if len(groups) > 1:
                say(f"settings {number}/{len(groups)}: {group_config.size[0]}x{group_config.size[1]}"
                    f"{', tileable' if group_config.tileable else ''}, loss {','.join(group_config.loss)}, "
                    f"{progress.format_schedule(group_config)}: {len(group)} source(s)")
            for src in group:
                t1 = time.perf_counter()
                result = _run_source(job, src)
                results.append(result)
                if src.item is not None and result.status in ("complete", "stalled", "diverged"):
                    manifest.save(options.output_dir, process, manifest.entry(
                        src, result.status, result.record_path, time.perf_counter() - t1, process))
                if result.status in ("interrupted", "preempted"):
                    return finish(JobReport(results, True, result.status == "preempted"))
    failed = [r for r in results if r.status in ("diverged", "stalled")]
    say(f"done in {progress.format_duration(time.perf_counter() - t0)}: {len(todo) - len(failed)} source(s) in "
        f"{options.output_dir}" + (f"; {len(failed)} made nothing (diverged or stalled)" if failed else ""))
    return finish(JobReport(results, False))


def _groups(sources) -> dict:
    """{config: [source, ...]} in the order each config first appears: one engine serves each group."""
    groups = {}
    for src in sources:
        groups.setdefault(src.config, []).append(src)
    return groups


def _say_rerun(todo, output_dir: str, process: int, say) -> None:
    """Which items run again though their manifest line says complete: a file it lists is gone."""
    lines = manifest.host_lines(output_dir, process)
    for src in todo:
        line = lines.get(src.stem)
        if manifest.matches(line, src) and line.get("status") == "complete":
            gone = manifest.missing(line, output_dir)
            if gone:
                say(f"{jobs.where(src.item)}: {src.stem}: {manifest.HOST_FILE.format(process=process)} says "
                    f"complete, but {gone[0]} is missing: running it again (--resume)")


def _skipped(plan, todo, output_dir: str, say) -> list[SourceResult]:
    results = []
    for src in plan:
        if src not in todo:
            what = src.path if src.item is None else f"{jobs.where(src.item)}: {src.stem}"
            say(f"{what}: already done in {output_dir}, skipped (--resume)")
            results.append(SourceResult(src.path, src.seeds, "skipped", storage.join(output_dir, src.names["record"])))
    return results


class _Canvas(NamedTuple):
    """A --fill run's canvas (fill.canvas), which pixels of its image are made anew (None: none), and whether the
    source is that image (its kept pixels then give the statistics)."""

    known: np.ndarray  # float32 [*size, 3]
    keep: np.ndarray  # float32 [*size]: 1 kept, 0 made
    make: np.ndarray | None  # bool [h, w] of the --fill image
    own: bool


def _canvas(job: _Job, path: str, image) -> _Canvas | None:
    """The canvas of a --fill run whose source is `path` (decoded: `image`, reused when it is the --fill image)."""
    config = job.engine.config
    if not config.fill:
        return None
    own = records.is_fill_image(path, config)
    photo = image if own else _load(job, config.fill, "fill")
    make = records.make_mask(config, photo.shape[:2])
    band = fill.band_pixels(config.size, config.band) if config.tileable else 0
    return _Canvas(*fill.canvas(photo, make, config.size, config.place, band), make, own)


def _targets(job: _Job, image, canvas: _Canvas | None):
    """A source's targets, blended with those of config.blend's sources (each decoded in turn, at its own
    source_scale) by their weights, guided by config.guide's map, holding the canvas of a --fill run (the
    statistics of the --fill image's kept pixels where it is the source) and a --content photo (at a weight above
    0); of every image's luminance alone when the colours come from elsewhere (config.colors: a palette, the
    content photo's)."""
    engine = job.engine
    config = engine.config
    # With a palette (or --colors=content) the colours come from it: the structure is synthesised from luminance.
    statistics = colors.grey if _luminance_only(config) else lambda x: x
    image = statistics(image)
    own = canvas is not None and canvas.own and canvas.make is not None
    targets = engine.targets(image, mask=(~canvas.make).astype(np.float32) if own else None)
    if config.blend:
        every = [targets, *(engine.targets(statistics(_load(job, path, "blend")), scale)
                            for path, _, scale in config.blend_sources)]
        targets = engine.blend_targets(every, [config.main_weight, *(w for _, w, _ in config.blend_sources)])
    if config.guide:
        targets = _guided(job, image, targets, statistics)
    if canvas is not None:
        targets = engine.fill_targets(targets, canvas.known, canvas.keep)
    if config.content and config.content_weight:
        targets = engine.content_targets(targets, statistics(_load(job, config.content, "content")),
                                         config.content_weight)
    return targets


def _luminance_only(config) -> bool:
    """Whether the outputs' colours come from a palette or the content photo: then only luminance is synthesised."""
    return bool(config.palette) or config.colors == "content"


def _content_photo(job: _Job):
    """The --content photo at the output's size, float32 [*size, 3]."""
    photo, _ = image_io.load_image(job.engine.config.content)
    return np.asarray(synthesis.resize_source(photo, job.engine.config.size))


def _load(job: _Job, path: str, role: str):
    image, notes = image_io.load_image(path)
    for note in notes:
        job.say(f"{role}: {path}: {note}")
    return image


def _guided(job: _Job, image, main, statistics):
    """Targets of a guided run: each colour of config.guide matched to its source (guide.assign): a --region
    photo (as `statistics` sees it), the part of the input the source guide paints in that colour, or the input
    (`main`, blended)."""
    engine, config = job.engine, job.engine.config
    labels, colours = guide.read_map(_load(job, config.guide, "guide"), f"guide map {config.guide}")
    source_masks = source_colours = None
    if config.source_guide:
        source_labels, source_colours = guide.read_map(_load(job, config.source_guide, "source guide"))
        source_masks = guide.masks(source_labels, len(source_colours), image.shape[:2])
    regions = config.region_sources
    every = []
    for kind, index in guide.assign(colours, regions, source_colours):
        if kind == "region":
            other = statistics(_load(job, regions[index][1], "region"))
            every.append(engine.targets(other, regions[index][2]))
        else:
            every.append(main if kind == "input" else engine.targets(image, mask=source_masks[index]))
    names = [f"guide colour {guide.hex_colour(c)} of {config.guide}" for c in colours]
    return engine.guided_targets(every, guide.masks(labels, len(colours), config.size), names)


def _resume_point(job: _Job, src: SourcePlan, image):
    """(host state, record) of `src`'s checkpoint when it continues this very run, None when there is
    none; CheckpointError (one line) when it is unreadable or another run's."""
    engine = job.engine
    path = job.out(src.names["checkpoint"])
    if not storage.exists(path):
        return None
    # The state's shape is its scale's: a checkpoint records which (0 before coarse-to-fine).
    scale_of = lambda record: engine.engines[min(int(record.get("scale", 0)), len(engine.engines) - 1)]
    host_state, record = checkpoint.load(path, lambda record: scale_of(record).state_shape)
    if record.get("fingerprint") != records.fingerprint(engine.config, src.seeds, image, job.weights_sha256,
                                                        job.meta):
        raise checkpoint.CheckpointError(
            f"checkpoint {path} belongs to another run (other settings, seeds, input or weights); "
            "run without --resume and with --overwrite to start over")
    return scale_of(record).place(host_state), record


def _stalled(history, offsets) -> bool:
    """Whether no seed's loss fell by STALL_FRACTION within any scale (history: [iterations][B]; offsets:
    iterations before each scale, the total last). Each scale's loss starts anew at its size, so a loss is
    only compared with one of its own scale."""
    if len(history) < STALL_MIN_ITERATIONS:
        return False
    losses = np.asarray(history, np.float64)
    spans = [(a, min(b, len(losses))) for a, b in zip(offsets[:-1], offsets[1:]) if min(b, len(losses)) - a >= 2]
    return not any(np.any(losses[b - 1] < losses[a] * (1 - STALL_FRACTION)) for a, b in spans)


class _Hooks:
    """One source's side of the engine loop: progress, the finite-loss check, snapshots, checkpoints, the
    stop flag (on_step) and each coarse scale's images (on_scale)."""

    def __init__(self, job: _Job, src: SourcePlan, tracker: progress.Progress, stop: StopFlag, stamp: str,
                 first: int, t1: float):
        self.job, self.src, self.tracker, self.stop, self.stamp, self.first, self.t1 = (
            job, src, tracker, stop, stamp, first, t1)
        self.checked = 0  # iterations whose losses are known finite
        self.diverged_at = None  # the first iteration whose loss is not
        self.scale_done = {}  # scale -> seconds from the start of this source, as each coarse scale's images land

    def finite(self) -> bool:
        history = self.tracker.history()
        bad = next((i for i in range(self.checked, len(history)) if not np.all(np.isfinite(history[i]))), None)
        self.checked = len(history)
        if bad is not None and self.diverged_at is None:
            self.diverged_at = bad + 1
        return self.diverged_at is None

    def on_step(self, state, step, losses) -> bool:
        engine, options, src, tracker = self.job.engine, self.job.options, self.src, self.tracker
        total, spd = engine.iterations, engine.steps_per_dispatch
        tracker.update(step, losses[-(step - tracker.step):])
        latest = tracker.latest()
        self.job.on_progress({"event": "step", "source": src.path, "step": step, "iterations": total,
                              "scale": tracker.scale_of(step), "scales": len(engine.engines),
                              "loss": None if latest is None else latest.tolist(),
                              "remaining_s": tracker.remaining_s()})
        every = lambda k: k and step % k < spd and step < total
        snapshot = every(options.save_every)
        self.stop.requested = self.stop.requested or self.job.should_stop()
        # Ctrl-C keeps a checkpoint when the run keeps them; a preemption always does: it is how the run goes on.
        keep = every(options.checkpoint_every) or (self.stop.requested and (options.checkpoint_every or
                                                                              self.stop.preempted))
        # A NaN or infinite loss never recovers and must not be saved: check where the losses come to the
        # host anyway (the first and the logged iterations) and before anything is written.
        shown = step % options.log_every < spd or step <= self.first + spd
        if (shown or snapshot or keep) and not self.finite():
            return True
        if snapshot:
            names = [outputs.seed_name(src.stem or jobs.stem(src.path), s, step, total) for s in src.seeds]
            outputs.save_images(options.output_dir, names, jax.device_get(engine.images(state))[:len(src.seeds)])
        if keep:
            path = self.job.out(src.names["checkpoint"])
            checkpoint.save(path, state, {"iteration": step, "scale": engine.scale_of(state), "fingerprint": self.stamp,
                                          "losses": [l.tolist() for l in tracker.history()]})
            tracker.say(f"checkpoint: iteration {step}/{total} -> {path}")
        return self.stop.requested

    def on_scale(self, state, scale) -> None:
        engine, src = self.job.engine, self.src
        if scale == len(engine.engines) - 1 or not self.finite():
            return
        names = src.names["scales"][scale]
        outputs.save_images(self.job.options.output_dir, names, jax.device_get(engine.images(state))[:len(src.seeds)])
        self.scale_done[scale] = time.perf_counter() - self.t1
        self.job.on_progress({"event": "scale", "source": src.path, "scale": scale,
                              "files": [self.job.out(name) for name in names]})
        h, w = engine.engines[scale].config.size
        self.tracker.say(f"scale {scale + 1}/{len(engine.engines)} ({h}x{w}) done at iteration "
                         f"{engine.offsets[scale + 1]}: {self.job.out(names[0])}"
                         + (" ..." if len(src.seeds) > 1 else "") + "; the next scale's loss starts anew at its size")


def _run_source(job: _Job, src: SourcePlan) -> SourceResult:
    engine, config, options = job.engine, job.engine.config, job.options
    image, notes = image_io.load_image(src.path)
    for note in notes:
        job.say(f"input: {src.path}: {note}")
    hint = scale_hint(image.shape[:2], config)
    if hint:
        job.say(f"input: {src.path}: {hint}")
    job.say(f"synthesising {len(src.seeds)} x {config.size[0]}x{config.size[1]} from {src.path} "
            f"({image.shape[0]}x{image.shape[1]}), {progress.format_schedule(config)}")
    t1 = time.perf_counter()
    total = engine.iterations
    tracker = progress.Progress(total, src.seeds, options.log_every, scales=list(zip(engine.offsets[1:],
                                                                                      config.scale_sizes)),
                                then="+ judge" if job.judge is not None else "",
                                stream=None if job.say is job.log else progress.SILENT)
    outputs.claim(options.output_dir, job.process, records.output_files(src, config, options,
                                                                             engine.steps_per_dispatch))
    with StopFlag(tracker.say) as stop:
        canvas = _canvas(job, src.path, image)
        targets = _targets(job, image, canvas)
        targets = jax.block_until_ready(targets)
        t_targets = time.perf_counter() - t1
        state, done_before = None, []
        resumed = _resume_point(job, src, image) if options.resume else None
        if resumed is not None:
            state, record = resumed
            done_before = [np.asarray(l, np.float32) for l in record["losses"]]
            job.log(f"resuming from {job.out(src.names['checkpoint'])} at iteration {record['iteration']}")
        if state is None:
            state = engine.init(engine.keys(src.seeds), targets)
        tracker.begin(len(done_before), done_before)
        hooks = _Hooks(job, src, tracker, stop, records.fingerprint(config, src.seeds, image, job.weights_sha256,
                                                                   job.meta), len(done_before), t1)
        try:
            state, _ = engine.run(state, targets, hooks.on_step, hooks.on_scale)
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once; the donated state is gone
            tracker.finish()
            job.log("stopped at once by a second Ctrl-C; no images saved for " + src.path +
                    (" (the last checkpoint is kept; continue with --resume)" if options.checkpoint_every else ""))
            return SourceResult(src.path, src.seeds, "interrupted", None)
        stop.shield()
        tracker.finish()
        t2 = time.perf_counter()
        if not hooks.finite():
            status = "diverged"
        elif tracker.step < total:
            status = "preempted" if stop.preempted else "interrupted"
        else:
            status = "stalled" if _stalled(tracker.history(), engine.offsets) else "complete"
        timings = {"setup": t1 - job.t0, "targets": t_targets, "first_iteration_with_compile": tracker.first_step_s,
                   "synthesis": t2 - t1, "iterations_per_s": tracker.rate(),
                   "scales_done": {str(k): s for k, s in sorted(hooks.scale_done.items())}}
        record, images = _write_images(job, src, state, status, image, notes, tracker, timings, canvas)
        if job.judge is not None and status in ("complete", "stalled"):
            _judge(job, record, np.asarray(synthesis.scale_source(image, config.source_scale)), images,
                   lambda: stop.requested or job.should_stop(), canvas)
        if status == "diverged":
            record["diverged_at"] = hooks.diverged_at
        outputs.save_record(job.out(src.names["record"]), record)  # last: its presence means the files are there
        if status in ("complete", "stalled"):
            storage.remove(job.out(src.names["checkpoint"]))  # the outputs now hold everything it did
    _say_outcome(job, src, status, tracker.step, hooks.diverged_at)
    if status == "complete" and record.get("judge", {}).get("stopped"):
        status = "preempted" if stop.preempted else "interrupted"
    return SourceResult(src.path, src.seeds, status, job.out(src.names["record"]))


def _write_images(job: _Job, src: SourcePlan, state, status: str, image, notes, tracker, timings, canvas):
    """Each image file of `src` atomically (none for a diverged run: its images are no result), with the
    canvas's kept pixels exactly as they were (a --fill run), and the run record to save after them:
    (record, the images or None)."""
    engine, config, options = job.engine, job.engine.config, job.options
    losses = [list(l) for l in zip(*tracker.history())]
    names = dict(src.names)
    names["scales"] = names["scales"][: engine.scale_of(state)]  # the coarse scales finished (now or before a resume)
    images = None
    if status == "diverged":  # only the record, to show where it went wrong
        names.update(images=None, tiled=None, sheet=None, loss_plot=None, scales=None)
    else:
        images = np.asarray(jax.device_get(engine.images(state)))[:len(src.seeds)]
        images = colors.finish(images, config, image, _content_photo(job) if config.colors == "content" else None)
        if canvas is not None:
            images = fill.paste(images, canvas.known, canvas.keep)
        outputs.save_images(options.output_dir, names["images"], images)
        shown = images
        if config.tileable:  # the 2x2 repeat shows the (absent) seam, on its own and in the sheet
            shown = outputs.repeat(images)
            outputs.save_images(options.output_dir, names["tiled"], shown)
        outputs.save_sheet(job.out(names["sheet"]), image, shown)
        if not outputs.save_loss_plot(job.out(names["loss_plot"]), losses, src.seeds):
            names["loss_plot"] = None
    timings["total"] = time.perf_counter() - job.t0
    record = records.make_record(status=status, step=tracker.step, config=config, options=options, src=src,
                                 image=image, notes=notes, names=names, losses=losses, timings=timings,
                                 meta=job.meta, weights_path=job.weights_path, weights_sha256=job.weights_sha256,
                                 extra=job.record_extra)
    return record, images


def _say_outcome(job: _Job, src: SourcePlan, status: str, step: int, diverged_at: int | None) -> None:
    if status == "diverged":
        job.log(f"{src.path}: the loss is NaN or infinite at iteration {diverged_at}; stopped this source "
                f"without saving its images (record: {job.out(src.names['record'])}); check --layer_weights, "
                "--init_scale and the weights file")
    elif status == "stalled":
        job.log(f"{src.path}: the loss did not fall by {STALL_FRACTION:.0%} in {step} iterations, so the "
                f"images are the starting noise (record: {job.out(src.names['record'])}); check --loss weights, "
                "--init_scale and --layer_weights")
    elif status == "interrupted":
        job.log(f"interrupted at iteration {step}/{job.engine.iterations}; saved the images reached so far "
                f"in {job.options.output_dir}" + (" (continue with --resume)" if job.options.checkpoint_every else ""))
    elif status == "preempted":
        job.log(f"preempted (SIGTERM) at iteration {step}/{job.engine.iterations}; checkpoint "
                f"{job.out(src.names['checkpoint'])} and the images reached so far saved; run the same command "
                "with --resume to continue")
    else:
        job.say(f"{src.path}: {job.out(src.names['sheet'])}, {job.out(src.names['record'])}")


# A source this many times the output's size (per side, after source_scale) holds elements too large for it.
TOO_LARGE = 4
# Judge distances above this are far from the source: finished runs of the benchmark photos score 0.03-0.3,
# the source blurred by 2 px 1.1 (docs/quality.md, the judge).
FAR = 0.5


def suggested_scale(scaled, config: SynthesisConfig) -> str:
    """The source_scale that makes a source (`scaled`: its size at config.source_scale) twice the output's
    size (per side), as text for a flag."""
    ratio = min(a / b for a, b in zip(scaled, config.size))
    return f"{min(1.0, 2 * config.source_scale / ratio):.2g}"


def scale_hint(source_size, config: SynthesisConfig) -> str | None:
    """One line when the source, after source_scale, is TOO_LARGE times the output or more, else None."""
    scaled = scaled_size(source_size, config.source_scale)
    ratio = min(a / b for a, b in zip(scaled, config.size))
    if ratio < TOO_LARGE:
        return None
    return (f"{scaled[0]}x{scaled[1]} is {ratio:.3g}x the output's {config.size[0]}x{config.size[1]}: texture elements "
            f"keep their size in source pixels, so the output holds few of them; for more, smaller ones try "
            f"--source_scale={suggested_scale(scaled, config)}")


def _region_distances(job: _Job, image, images, should_stop) -> dict:
    """{colour: the judge's mean distance of that region of the outputs to its own source}: a --region photo
    (at its source_scale) or the input (also for a part of it that a source guide names); None where the
    region is too thin for the judge."""
    from texsynth_jax import evaluate

    config = job.engine.config
    labels, colours = guide.read_map(image_io.load_image(config.guide)[0])
    masks = guide.masks(labels, len(colours), config.size)
    by_colour = {colour: (path, scale) for colour, path, scale in config.region_sources}
    out = {}
    for colour, mask in zip(colours, masks):
        if should_stop():
            raise evaluate.Stopped("stopped while judging")
        source = image
        if colour in by_colour:
            path, scale = by_colour[colour]
            source = np.asarray(synthesis.scale_source(image_io.load_image(path)[0], scale))
        figures = [d for d in evaluate.region_distances(job.judge, source, images, mask) if d is not None]
        out[guide.hex_colour(colour)] = float(np.mean(figures)) if figures else None
    return out


def _judge(job: _Job, record: dict, image, images, should_stop, canvas: _Canvas | None = None) -> None:
    """The judge's figures into `record` (and a line); a stop during it leaves {"stopped": true}."""
    from texsynth_jax import evaluate

    t3 = time.perf_counter()
    try:
        record["judge"] = evaluate.judge(job.judge, image, list(images), should_stop=should_stop)
        if job.engine.config.blend:  # the outputs against each blended source too, each at its own scale
            record["judge"]["blend_distances"] = {}
            for path, _, scale in job.engine.config.blend_sources:
                if should_stop():
                    raise evaluate.Stopped("stopped while judging")
                other = np.asarray(synthesis.scale_source(image_io.load_image(path)[0], scale))
                record["judge"]["blend_distances"][path] = float(np.mean(evaluate.distances(job.judge, other, images)))
        if job.engine.config.guide:
            record["judge"]["region_distances"] = _region_distances(job, image, images, should_stop)
        if canvas is not None:  # the made pixels alone against the source, and how much their border shows
            made = canvas.keep < 1
            figures = [d for d in evaluate.region_distances(job.judge, image, images, made) if d is not None]
            record["judge"]["made_distance"] = float(np.mean(figures)) if figures else None
            record["judge"]["border_ratios"] = [evaluate.border_ratio(x, made) for x in images]
        if job.engine.config.content:  # how much of the photo's layout the outputs keep
            photo = _content_photo(job)
            record["judge"]["content_similarity"] = [evaluate.layout_similarity(x, photo) for x in images]
    except evaluate.Stopped:
        record["judge"] = {"stopped": True}
        job.log("judge stopped (Ctrl-C); the images are saved, the record has no judge figures")
        return
    record["timings_s"]["judge"] = time.perf_counter() - t3
    diversity = record["judge"]["diversity"]
    job.say(f"judge: distance to the source {record['judge']['distance_mean']:.4g}, diversity "
            f"{'n/a (one seed)' if diversity is None else f'{diversity:.4g}'}, copied fraction "
            f"{record['judge']['copy_fraction_max']:.3f}"
            + (" (the kept pixels are the photo's own)" if canvas else ""))
    config = job.engine.config
    if canvas is not None:
        made, ratios = record["judge"]["made_distance"], [r for r in record["judge"]["border_ratios"] if r is not None]
        shown = "n/a (too thin)" if made is None else f"{made:.4g}"
        if ratios:
            shown += (f", their border's gradient over the rest's {np.mean(ratios):.3g} (about 1: the border does "
                      "not show)")
        job.say(f"judge: the made pixels' distance to the source {shown}")
    if config.content:
        job.say(f"judge: the outputs' layout against the content photo's: correlation "
                f"{np.mean(record['judge']['content_similarity']):.3g} (1: the photo's own, 0: none of it)")
    if config.guide:
        job.say("judge: each region's distance to its own source: " + ", ".join(
            f"{colour} {'n/a (too thin)' if d is None else f'{d:.4g}'}"
            for colour, d in record["judge"]["region_distances"].items()))
    # A blend, a palette, a guide's other regions or a content photo's layout are meant to differ from the source.
    if record["judge"]["distance_mean"] > FAR and not (config.blend or config.palette or config.guide
                                                       or config.content):
        scale = suggested_scale(image.shape[:2], config)  # `image`: the source at config.source_scale
        job.say(f"judge: distance {record['judge']['distance_mean']:.3g} is far from the source (finished runs score "
                "0.03-0.3, a blurred copy of the source 1.1): "
                + (f"if the texture's elements look too large or too few, try --source_scale={scale}; "
                   if float(scale) < config.source_scale else "")
                + "if they look unfinished, more --iterations or --coarse_iterations")
