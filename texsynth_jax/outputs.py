"""A run's files in its output folder: names, the pre-flight checks, and atomic writes.

For an input `gravel.png` and seeds 0 and 1, a run writes:
  gravel_seed0.png, gravel_seed1.png     one image per seed
  gravel_sheet.png                       contact sheet: the source beside every seed
  gravel_run.json                        the record: settings, weights and hash, losses, timings, versions
  gravel_loss.png                        loss curves (only when matplotlib is installed)
  gravel_seed0_iter0050.png ...          intermediate images (--save_every)
  gravel_seed0_tiled.png ...             a 2x2 repeat of each image (--tileable; the sheet shows these)
  gravel_seed0_64x64.png ...             each coarser scale's result as it finishes (--coarse_iterations)
Every file is written to a temp file in the same folder (`.tmp-<name>-<tag><ext>`, image_io.atomic_path)
and renamed, so none is ever half written; the next run removes the temp files a killed save left.
"""

import contextlib
import json
import os
import platform
import sys
import tempfile

import numpy as np

from texsynth_jax import image_io
from texsynth_jax._version import __version__


class OutputError(ValueError):
    """The output folder cannot be used; the message names the problem and the fix."""


def seed_name(stem: str, seed: int, step: int | None = None, iterations: int = 0) -> str:
    """`<stem>_seed<N>.png`, or `<stem>_seed<N>_iter<K>.png` with K zero-padded to sort in order."""
    if step is None:
        return f"{stem}_seed{seed}.png"
    return f"{stem}_seed{seed}_iter{step:0{len(str(iterations))}d}.png"


def final_names(stem: str, seeds, tileable: bool = False, coarse_sizes=()) -> dict[str, list | str]:
    """Every output name of a source; "scales": per coarse scale (coarse-to-fine), its images by size."""
    return {"images": [seed_name(stem, s) for s in seeds], "sheet": f"{stem}_sheet.png",
            "record": f"{stem}_run.json", "loss_plot": f"{stem}_loss.png",
            "tiled": [f"{stem}_seed{s}_tiled.png" for s in seeds] if tileable else [],
            "scales": [[f"{stem}_seed{s}_{h}x{w}.png" for s in seeds] for h, w in coarse_sizes]}


def repeat(images, times: int = 2) -> np.ndarray:
    """Each image repeated `times` x `times`, to show that a tileable output has no seam.

    images: [B, H, W, 3] -> [B, times*H, times*W, 3].
    """
    return np.tile(np.asarray(images), (1, times, times, 1))


def check_output_dir(path: str, names, overwrite: bool) -> None:
    """Raise OutputError unless `path` is (or can become) a writable folder and, unless `overwrite`,
    none of `names` exists in it. Creates nothing: a failed check leaves the disk as it was."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"--output_dir={path} is a file, not a folder; choose another --output_dir")
    existing = path
    while not os.path.exists(existing):  # the nearest existing ancestor is where a mkdir would start
        parent = os.path.dirname(os.path.abspath(existing))
        if parent == os.path.abspath(existing):
            break
        existing = parent
    if not os.path.isdir(existing):
        raise OutputError(f"--output_dir={path} cannot be created ({existing} is not a folder); "
                          "choose another --output_dir")
    try:  # os.access says yes to root even on a read-only mount, so try a real file
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise OutputError(f"--output_dir={path} is not writable ({e.strerror or e}); "
                          "choose another --output_dir") from None
    if not overwrite and os.path.isdir(path):
        taken = [n for n in names if os.path.exists(os.path.join(path, n))]
        if taken:
            raise OutputError(f"{os.path.join(path, taken[0])} already exists; pass --overwrite or choose "
                              "another --output_dir")


def remove_stale_temps(folder: str, names) -> int:
    """Delete the temp files that killed saves of `names` left in `folder`, and no other file
    (image_io.temp_target tells a temp file's target); returns how many. Call it holding the folder
    (runner's lock), so that no live save's temp file is among them."""
    names, removed = set(names), 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and image_io.temp_target(entry.name) in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def save_images(folder: str, names, images) -> None:
    """images: float [B, H, W, 3] in [0, 1], one per name."""
    for name, image in zip(names, np.asarray(images)):
        image_io.save_png(os.path.join(folder, name), image)


def save_sheet(path: str, source, images) -> None:
    image_io.save_png(path, image_io.contact_sheet(source, list(np.asarray(images))))


def save_record(path: str, record: dict) -> None:
    """The record as strict JSON (a NaN or infinity fails here rather than writing invalid JSON), atomically."""
    text = json.dumps(record, indent=1, allow_nan=False) + "\n"
    with image_io.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def save_loss_plot(path: str, losses, seeds) -> bool:
    """Loss per iteration, one curve per seed, log-scale y. Returns False when matplotlib is missing.

    losses: [B, iterations done].
    """
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # no display needed; harmless if a backend was already chosen
    import matplotlib.pyplot as plt

    losses = np.asarray(losses, np.float64)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        steps = np.arange(1, losses.shape[1] + 1)
        for seed, curve in zip(seeds, losses):
            ax.plot(steps, np.where(curve > 0, curve, np.nan), label=f"seed {seed}", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("L-BFGS iteration")
        ax.set_ylabel("texture loss")
        ax.grid(True, which="both", alpha=0.3)
        if len(seeds) <= 10:
            ax.legend()
        fig.tight_layout()
        with image_io.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return True


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict:
    """Library versions and the machine, for the run record."""
    import jax
    import jaxlib

    info = {"texsynth_jax": __version__, "python": sys.version.split()[0], "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "numpy": np.__version__, "platform": platform.platform(), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()]}
    for name in ("flax", "optax", "h5py", "PIL"):
        with contextlib.suppress(Exception):
            info[name if name != "PIL" else "pillow"] = __import__(name).__version__
    return info
