"""A run's files in its output folder: names, the pre-flight checks, and atomic writes.

For an input `gravel.png` and seeds 0 and 1, a run writes:
  gravel_seed0.png, gravel_seed1.png     one image per seed
  gravel_sheet.png                       contact sheet: the source beside every seed
  gravel_run.json                        the record: settings, weights and hash, losses, timings, versions
  gravel_loss.png                        loss curves (only when matplotlib is installed)
  gravel_seed0_iter0050.png ...          intermediate images (--save_every)
  gravel_seed0_tiled.png ...             a 2x2 repeat of each image (--tileable; the sheet shows these)
  gravel_seed0_64x64.png ...             each coarser scale's result as it finishes (--coarse_iterations)
Every file is written to a temp file in the same folder (`.tmp-<name>-<tag><ext>`, storage.atomic_path)
and renamed, so none is ever half written; the next run removes the temp files a killed save left.

Before it writes anything, a job lists every name it may write in the folder's `.texsynth-files-p<process>.txt`
(`claim`). That list, with the names earlier run records give, is what the product owns there
(`product_files`): `--overwrite` replaces only those, and a folder used as input skips them.
"""

import contextlib
import json
import os
import platform
import secrets
import sys
import tempfile

import numpy as np

from texsynth_jax import image_io, storage
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
    """Raise OutputError unless `path` is (or can become) a writable folder and none of `names` exists in
    it, or, with `overwrite`, none that the product did not write (`product_files`). Creates nothing: a
    failed check leaves the disk as it was (a URL's folder: a probe object is written and removed)."""
    if storage.is_url(path):
        return _check_bucket(path, names, overwrite)
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
    if os.path.isdir(path):
        _check_names(path, [n for n in names if os.path.lexists(os.path.join(path, n))], overwrite)


def _check_bucket(path: str, names, overwrite: bool) -> None:
    """check_output_dir for a URL: the store is reached and written (one probe object, removed), then the
    names checked against one listing of the folder."""
    probe = storage.join(path, f".texsynth-probe-{secrets.token_hex(4)}")
    try:
        storage.write_bytes(probe, b"")
        storage.remove(probe)
        present = set(storage.listdir(path))
    except storage.StorageError:
        raise
    except Exception as e:  # OSError from write_bytes; the client's own errors from listing and removing
        raise OutputError(f"--output_dir={path} cannot be written ({getattr(e, 'strerror', None) or e}); "
                          "check the bucket's name and your access to it, or choose another --output_dir") from None
    _check_names(path, [n for n in names if n in present], overwrite)


def _check_names(path: str, taken, overwrite: bool) -> None:
    """Refuse outputs `taken` in the folder `path`, unless `overwrite` and the product wrote each of them."""
    if taken and not overwrite:
        raise OutputError(f"{storage.join(path, taken[0])} already exists; pass --overwrite or choose "
                          "another --output_dir")
    owned = product_files(path) if taken else set()
    foreign = [n for n in taken if n not in owned]
    if foreign:
        raise OutputError(f"{storage.join(path, foreign[0])} exists and was not written by texsynth_jax, so "
                          "--overwrite leaves it alone; move it or choose another --output_dir")


def check_inputs_kept(inputs, output_dir: str, names) -> None:
    """Raise OutputError if writing `names` into `output_dir` would replace one of the `inputs` (paths):
    an output named like the user's own file beside it, or a source of a later step of the job."""
    def key(path):
        return path.rstrip("/") if storage.is_url(path) else os.path.normcase(os.path.realpath(path))

    outputs = {key(storage.join(output_dir, n)): n for n in names}
    for path in inputs:
        if key(path) in outputs:
            raise OutputError(f"the output {outputs[key(path)]} would replace the input {path}; choose another "
                              "--output_dir, or rename the input")


MANIFEST = ".texsynth-files-p{process}.txt"


def claim(folder: str, process: int, names) -> None:
    """Add `names` to this process's list of the files the product writes in `folder` (atomically),
    before any of them is written: a kill halfway still leaves them known as the product's."""
    path = storage.join(folder, MANIFEST.format(process=process))
    known = _read_lines(path)
    new = sorted(set(names) - known)
    if not new and storage.exists(path):
        return
    storage.write_bytes(path, "".join(name + "\n" for name in sorted(known | set(new))).encode())


def product_files(folder: str) -> set[str]:
    """The names in `folder` that texsynth_jax wrote or claimed: every process's list (`claim`), and the
    outputs and the record itself named by any run record there (runs from before the lists existed)."""
    names = set()
    with contextlib.suppress(OSError):
        for name in storage.listdir(folder):
            if name.startswith(".texsynth-files-p") and name.endswith(".txt"):
                names |= _read_lines(storage.join(folder, name))
            elif name.endswith("_run.json") and storage.isfile(storage.join(folder, name)):
                names |= _record_names(storage.join(folder, name))
    return names


def _read_lines(path: str) -> set[str]:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return {line for line in storage.read_bytes(path).decode().splitlines() if line.strip()}
    return set()


def _record_names(path: str) -> set[str]:
    """The file names a run record lists as its outputs, with the record's own; none if it is not ours."""
    try:
        record = json.loads(storage.read_bytes(path))
    except (OSError, ValueError):
        return set()
    listed = record.get("outputs") if isinstance(record, dict) else None
    if not isinstance(listed, dict) or "versions" not in record:
        return set()
    names = {storage.basename(path)}
    for value in listed.values():
        for item in value if isinstance(value, list) else [value]:
            for name in item if isinstance(item, list) else [item]:
                if isinstance(name, str):
                    names.add(name)
    return names


class FolderLock:
    """One writer per output folder and host: an exclusive flock on `.texsynth_p<process>.lock` in it,
    held while the job writes, refused at once (one line) if another run holds it. Hosts of a
    multi-host job write their own files, so each takes its own. The OS releases a flock when its
    process dies; the file is removed on a normal release. Where there is no flock (Windows), the job
    goes on unguarded and says so."""

    def __init__(self, folder: str, process: int, log):
        self.folder, self.log, self.fd = folder, log, None
        self.path = storage.join(folder, f".texsynth_p{process}.lock")

    def __enter__(self):
        if storage.is_url(self.folder):  # an object store has no locks; each host's files are its own
            self.log(f"{self.folder} is in an object store, which has no file locks; make sure no other run "
                     "writes there")
            return self
        try:
            import fcntl  # POSIX only: imported here so that the library imports everywhere
        except ImportError:
            self.log(f"cannot lock {self.path} (no fcntl here); make sure no other run writes there")
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(f"--output_dir={self.folder}: another run is writing there (it holds "
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


def remove_stale_temps(folder: str, names) -> int:
    """Delete the temp files that killed saves of `names` left in `folder`, and no other file
    (storage.temp_target tells a temp file's target); returns how many. Call it holding the folder
    (runner's lock), so that no live save's temp file is among them."""
    names, removed = set(names), 0
    if storage.is_url(folder):  # an upload is whole or absent: no temp files there
        return 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and storage.temp_target(entry.name) in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def save_images(folder: str, names, images) -> None:
    """images: float [B, H, W, 3] in [0, 1], one per name."""
    for name, image in zip(names, np.asarray(images)):
        image_io.save_png(storage.join(folder, name), image)


def save_sheet(path: str, source, images) -> None:
    image_io.save_png(path, image_io.contact_sheet(source, list(np.asarray(images))))


def save_record(path: str, record: dict) -> None:
    """The record as strict JSON (a NaN or infinity fails here rather than writing invalid JSON), atomically."""
    storage.write_bytes(path, (json.dumps(record, indent=1, allow_nan=False) + "\n").encode())


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
        with storage.writer(path) as f:
            fig.savefig(f, format="png")
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
