"""Reading PyTorch `.pth` state dicts without PyTorch.

Both formats `torch.save` writes (see torch/serialization.py):

* legacy (torch < 1.6, and `_use_new_zipfile_serialization=False`): five things back to back in one
  file: pickle(MAGIC_NUMBER), pickle(PROTOCOL_VERSION), pickle(sys_info), pickle(the object, with
  storages replaced by persistent ids), pickle(sorted storage keys), then per key an int64 element
  count and the storage's raw bytes.
* zip (torch >= 1.6): an uncompressed zip with `<prefix>/data.pkl` (the object, storages as
  persistent ids), `<prefix>/data/<key>` (each storage's raw bytes) and `<prefix>/byteorder`.

Tensors are pickled as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` (older
files: `_rebuild_tensor`, or a `torch.FloatTensor` rebuilt by `__setstate__`). The unpickler maps
exactly those names to the stand-ins below, so nothing from the file is ever executed, and tensor
data is only read from disk when asked for, and then only the bytes the tensor spans: the 400 MB
classifier of a VGG is never loaded, and a storage that declares more than it holds is refused.
"""

import os
import pickle
import zipfile
from typing import Callable

import numpy as np

from weights_convert import safe_pickle
from weights_convert.errors import ConversionError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# Storage class name -> numpy dtype; bfloat16 has no numpy dtype and is widened from its bit pattern.
_STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "b1",
}


class StorageType(safe_pickle.Sealed):
    """Stand-in for `torch.FloatStorage` & co.: only carries the element type. Sealed: a pickle
    cannot set its dtype."""

    __slots__ = ("name", "bfloat16", "dtype")

    def __init__(self, name: str):
        self.name = name
        self.bfloat16 = _STORAGE_DTYPES[name] == "bf16"
        self.dtype = np.dtype("u2" if self.bfloat16 else _STORAGE_DTYPES[name])

    def __repr__(self):
        return f"torch.{self.name}"


class Storage:
    """One flat storage of `numel` elements; byte ranges are fetched by `fetch` when a tensor is read."""

    def __init__(self, path: str, key: str, storage_type: StorageType, numel: int):
        self.path, self.key, self.type, self.numel = path, key, storage_type, numel
        self.fetch: Callable[[int, int], bytes] | None = None  # (start, nbytes), set once indexed
        self.byteorder = "<"

    @property
    def nbytes(self) -> int:
        return self.numel * self.type.dtype.itemsize

    def read(self, start: int, count: int) -> np.ndarray:
        """Elements [start, start + count) as a 1-D native-endian array (float32 for bfloat16).

        Only those bytes are read, so a storage far larger than its tensors costs no memory.
        """
        itemsize = self.type.dtype.itemsize
        raw = self.fetch(start * itemsize, count * itemsize)
        if len(raw) != count * itemsize:
            raise ConversionError(f"{self.path}: storage {self.key} holds fewer than the {self.nbytes} bytes "
                                  f"it declares; the file is truncated or corrupt, download it again")
        data = np.frombuffer(raw, self.type.dtype.newbyteorder(self.byteorder)).astype(self.type.dtype)
        if self.type.bfloat16:
            data = (data.astype(np.uint32) << 16).view(np.float32)
        return data


class StorageView:
    """A slice of a root storage (legacy files only; torch wrote these for storage views)."""

    def __init__(self, root: Storage, offset: int, numel: int):
        self.root, self.offset, self.numel = root, offset, numel
        self.path, self.key, self.type = root.path, root.key, root.type

    def read(self, start: int, count: int) -> np.ndarray:
        if self.offset < 0 or self.offset + self.numel > self.root.numel:
            raise ConversionError(f"{self.path}: a storage view reaches past the end of storage {self.key}; "
                                  f"the file is corrupt, download it again")
        return self.root.read(self.offset + start, count)


class Tensor:
    """Stand-in for a pickled tensor: where its elements are, read only by `numpy()`.

    Also the stand-in for the pre-0.2 `torch.FloatTensor` classes, which pickle rebuilt as
    `FloatTensor()` followed by `__setstate__((storage, offset, size, stride))`. Both ways in go
    through `__setstate__`, so every tensor record is checked in one place.
    """

    def __init__(self, *record):
        self.storage = None  # FloatTensor() is empty until __setstate__ fills it; _tensors skips it if never
        if record:
            self.__setstate__(record)

    def __setstate__(self, state):
        """state: (storage, offset, size, stride), checked before it is kept."""
        if not (isinstance(state, tuple) and len(state) == 4):
            raise pickle.UnpicklingError("tensor state is not (storage, offset, size, stride)")
        storage, offset, shape, stride = state
        counts = lambda v: isinstance(v, (tuple, list)) and all(type(n) is int and n >= 0 for n in v)
        if not isinstance(storage, (Storage, StorageView)):
            raise pickle.UnpicklingError("tensor without a storage")
        if not (type(offset) is int and offset >= 0 and counts(shape) and counts(stride)
                and len(shape) == len(stride)):  # a float or negative one would fail deep in numpy
            raise pickle.UnpicklingError("tensor with a malformed offset, size or stride")
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32) if self.storage.type.bfloat16 else self.storage.type.dtype

    def numpy(self) -> np.ndarray:
        """A contiguous copy of the tensor's elements, honouring storage offset and strides."""
        if 0 in self.shape:
            return np.zeros(self.shape, self.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
        if last >= self.storage.numel:
            raise ConversionError(f"{self.storage.path}: a tensor reaches past the end of storage "
                                  f"{self.storage.key}; the file is corrupt, download it again")
        base = self.storage.read(self.offset, last + 1 - self.offset)  # only the elements it spans
        strides = [s * base.itemsize for s in self.stride]
        view = np.lib.stride_tricks.as_strided(base, self.shape, strides, writeable=False)
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Stand-in for `torch._utils._rebuild_tensor(_v2)`; the ignored args are grad flags and hooks."""
    return Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    """Stand-in for `torch._utils._rebuild_parameter(_with_state)`: a Parameter is its tensor."""
    return data


def _torch_globals() -> dict:
    """Everything a pickled state dict may name, mapped to the stand-ins."""
    import collections

    allowed = {("collections", "OrderedDict"): collections.OrderedDict}
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
        allowed[("torch._utils", name)] = _rebuild_tensor
    for name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
        allowed[("torch._utils", name)] = _rebuild_parameter
    for module in ("torch", "torch.cuda"):  # pre-1.0 files name the GPU classes for GPU tensors
        for name in _STORAGE_DTYPES:
            allowed[(module, name)] = StorageType(name)
            allowed[(module, name.replace("Storage", "Tensor"))] = Tensor
    return allowed


def _text(value) -> str:
    """A pickled name as str; anything but str/bytes is refused (str() of a crafted object can recurse)."""
    if not isinstance(value, (str, bytes)):
        raise pickle.UnpicklingError(f"a {type(value).__name__} where a name was expected")
    return value.decode("ascii") if isinstance(value, bytes) else value


class _StorageTable:
    """persistent_load for both formats: one Storage per key, created as the pickle names them."""

    def __init__(self, path: str):
        self.path, self.storages = path, {}

    def __call__(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"unexpected persistent id of type {type(pid).__name__}")
        kind = _text(pid[0])
        if kind == "module":
            raise ConversionError(f"{self.path}: holds a pickled nn.Module, not a state dict; save "
                                  f"`model.state_dict()` with torch.save and convert that file")
        if kind != "storage" or len(pid) not in (5, 6):
            raise pickle.UnpicklingError(f"unexpected persistent id kind {kind[:40]!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, StorageType) or type(numel) is not int or numel < 0:
            raise pickle.UnpicklingError("malformed storage id (its type or size)")
        key = _text(key)
        storage = self.storages.setdefault(key, Storage(self.path, key, storage_type, numel))
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        _view_key, offset, view_numel = view
        if not all(type(n) is int and n >= 0 for n in (offset, view_numel)):
            raise pickle.UnpicklingError("malformed storage view")
        return StorageView(storage, offset, view_numel)


def _unpickle(path: str, file, table: _StorageTable):
    unpickler = safe_pickle.RestrictedUnpickler(file, _torch_globals(), persistent_load=table)
    return safe_pickle.guarded_load(path, unpickler)


def _tensors(path: str, obj) -> dict[str, Tensor]:
    """The state dict's tensors, looking inside a {"state_dict": ...} or {"model": ...} wrapper."""
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    items = obj.items() if isinstance(obj, dict) else ()
    tensors = {k: v for k, v in items if isinstance(k, str)
               and isinstance(v, Tensor) and isinstance(v.storage, (Storage, StorageView))}
    if not tensors:
        raise ConversionError(f"{path}: holds no state dict of tensors; pass a VGG state dict saved "
                              f"with torch.save(model.state_dict(), ...)")
    return tensors


def _read_at(path: str, offset: int) -> Callable[[int, int], bytes]:
    def fetch(start, nbytes):
        with open(path, "rb") as f:
            f.seek(offset + start)
            return f.read(nbytes)
    return fetch


def read_legacy(path: str, f) -> dict[str, Tensor]:
    """Read a legacy-format file whose MAGIC_NUMBER the caller has already consumed from `f`.

    Returns:
      {state dict key: Tensor}, data not yet read.
    """
    simple = lambda: safe_pickle.guarded_load(path, safe_pickle.RestrictedUnpickler(f, {}))
    if simple() != PROTOCOL_VERSION:
        raise ConversionError(f"{path}: unknown PyTorch legacy protocol version; re-save it with a "
                              f"current torch.save")
    sys_info = simple()
    byteorder = "<" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else ">"
    table = _StorageTable(path)
    obj = _unpickle(path, f, table)
    keys = simple()
    if not isinstance(keys, list) or not all(isinstance(k, (str, bytes)) for k in keys):
        raise ConversionError(f"{path}: corrupt storage list; download the file again")
    # Index the raw section: [int64 numel][numel * itemsize bytes] per key, in `keys` order.
    size, pos = os.fstat(f.fileno()).st_size, f.tell()
    for key in map(_text, keys):
        storage = table.storages.get(key)
        f.seek(pos)
        header = f.read(8)
        if storage is None or len(header) < 8:
            raise ConversionError(f"{path}: truncated or corrupt storage section; download the file again")
        numel = int.from_bytes(header, "little" if byteorder == "<" else "big", signed=True)
        nbytes = numel * storage.type.dtype.itemsize
        if numel != storage.numel or pos + 8 + nbytes > size:
            raise ConversionError(f"{path}: storage {key} is truncated or corrupt; download the file again")
        storage.fetch, storage.byteorder = _read_at(path, pos + 8), byteorder
        pos += 8 + nbytes
    if any(storage.fetch is None for storage in table.storages.values()):
        raise ConversionError(f"{path}: a tensor's storage is missing from the file; download it again")
    return _tensors(path, obj)


_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # torch stores; deflated is a re-zipped copy
_ZIP_FLAGS_REFUSED = 0x1 | 0x20 | 0x40  # encrypted, compressed patch data, strong encryption


def _open_zip(path: str) -> zipfile.ZipFile:
    """The archive, after checking every member's flags and method from the central directory, so
    that no member read later can stop on a password or an unknown compression."""
    zf = zipfile.ZipFile(path)
    for info in zf.infolist():
        if info.flag_bits & _ZIP_FLAGS_REFUSED or info.compress_type not in _ZIP_METHODS:
            zf.close()
            refused = info.flag_bits & _ZIP_FLAGS_REFUSED
            what = (f"is encrypted or patch data (flag bits {info.flag_bits:#x})" if refused
                    else f"uses compression method {info.compress_type}")
            raise ConversionError(f"{path}: zip member {info.filename[:80]!r} {what}, which torch.save never "
                                  f"writes; pass the checkpoint as torch.save wrote it")
    return zf


def read_zip(path: str) -> dict[str, Tensor]:
    """Read a zip-format (torch >= 1.6) file.

    Returns:
      {state dict key: Tensor}, data not yet read.
    """
    try:
        with _open_zip(path) as zf:
            names = set(zf.namelist())
            pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ConversionError(f"{path}: a zip file but not a PyTorch checkpoint (no data.pkl); "
                                      f"pass a .pth saved with torch.save")
            prefix = pickles[0][: -len("data.pkl")]
            order = b"little"
            if prefix + "byteorder" in names:
                with zf.open(prefix + "byteorder") as f:
                    order = f.read(16).strip()  # bounded: a member's declared size can be anything
            table = _StorageTable(path)
            with zf.open(pickles[0]) as f:
                obj = _unpickle(path, f, table)
            sizes = {info.filename: info.file_size for info in zf.infolist()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        raise ConversionError(f"{path}: truncated or corrupt zip archive ({e}); download the file again") from None
    for key, storage in table.storages.items():
        name = f"{prefix}data/{key}"
        if name not in names:
            raise ConversionError(f"{path}: storage {key} is missing from the archive; download the file again")
        # torch writes exactly numel * itemsize bytes; anything else (a zip bomb, a truncated member) is
        # refused here, before a byte is inflated.
        if sizes[name] != storage.nbytes:
            raise ConversionError(f"{path}: {name} declares {sizes[name]} bytes but its storage holds "
                                  f"{storage.nbytes}; the file is corrupt or crafted, download it again")
        storage.fetch, storage.byteorder = _zip_member(path, name), "<" if order == b"little" else ">"
    return _tensors(path, obj)


def _zip_member(path: str, name: str) -> Callable[[int, int], bytes]:
    def fetch(start, nbytes):
        try:
            with _open_zip(path) as zf, zf.open(name) as f:
                f.seek(start)  # inflates and discards in bounded chunks if the member is compressed
                return f.read(nbytes)  # never more than the tensor spans
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise ConversionError(f"{path}: cannot read {name} ({e}); download the file again") from None
    return fetch


def read(path: str) -> dict[str, Tensor]:
    """Read a .pth state dict in either format, choosing by the file's first bytes.

    Returns:
      {state dict key: Tensor}; `Tensor.numpy()` reads one tensor's data.
    """
    with open(path, "rb") as f:
        if f.read(4) in (b"PK\x03\x04", b"PK\x05\x06"):
            return read_zip(path)
        f.seek(0)
        magic = safe_pickle.guarded_load(path, safe_pickle.RestrictedUnpickler(f, {}))
        if type(magic) is not int or magic != MAGIC_NUMBER:
            raise ConversionError(f"{path}: not a PyTorch checkpoint (no magic number); pass a .pth "
                                  f"saved with torch.save")
        return read_legacy(path, f)
