"""texsynth_jax.weights: the converted-weights file round-trips and refuses what it cannot use."""

import h5py
import numpy as np
import pytest

from texsynth_jax import vgg, weights


def random_params(arch: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {name: {"kernel": rng.normal(size=shape).astype(np.float32),
                   "bias": rng.normal(size=shape[-1:]).astype(np.float32)}
            for name, shape in vgg.conv_shapes(arch).items()}


def test_round_trip_keeps_params_spec_and_source(tmp_path):
    params, spec = random_params("vgg16"), vgg.NetworkSpec(arch="vgg16", **vgg.TORCHVISION)
    path = str(tmp_path / "sub" / "w.h5")
    weights.save_weights(path, params, spec, "src.pth", "ab" * 32)
    loaded, loaded_spec, meta = weights.load_weights(path)
    assert loaded_spec == spec
    assert meta["source_name"] == "src.pth" and meta["source_sha256"] == "ab" * 32
    for name in params:
        np.testing.assert_array_equal(loaded[name]["kernel"], params[name]["kernel"])
        np.testing.assert_array_equal(loaded[name]["bias"], params[name]["bias"])
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["w.h5"]  # no temp file left


def test_misshapen_params_are_not_written(tmp_path):
    params = random_params("vgg16")
    params["conv2_1"]["kernel"] = params["conv2_1"]["kernel"][:, :, :32]
    with pytest.raises(weights.WeightsError, match="conv2_1 kernel has shape"):
        weights.save_weights(str(tmp_path / "w.h5"), params, vgg.NetworkSpec(arch="vgg16"), "s", "0")
    assert list(tmp_path.iterdir()) == []


def test_missing_file_and_wrong_version_say_how_to_fix(tmp_path):
    with pytest.raises(weights.WeightsError, match="weights_convert"):
        weights.load_weights(str(tmp_path / "absent.h5"))
    path = str(tmp_path / "w.h5")
    weights.save_weights(path, random_params("vgg16"), vgg.NetworkSpec(arch="vgg16"), "s", "0")
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(weights.WeightsError, match="format version 99"):
        weights.load_weights(path)
