"""--guide: a map of the output says which source each region matches (guide.py). The masked statistics against
dense references, a one-colour map bit for bit the unguided run, one compiled program for any map, two photos in
two regions by the judge through coarse to fine and on a torus, and the command line's regions, source guide,
record and one-line errors."""

import json

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from PIL import Image

from texsynth_jax import Engine, SynthesisConfig, evaluate, guide, load_weights, losses, terms
from texsynth_jax.coarse_to_fine import CoarseToFine
from test_blend import stripes, warm
from test_coarse_to_fine import SHALLOW, gravel
from test_engine import counted_compiles
from test_run import assert_refused, in_process


@pytest.fixture(scope="module")
def vgg(weights_path):
    params, spec, _ = load_weights(weights_path)
    return params, spec


def halves(size, wrap=False):
    """Labels of a map in two regions: left and right halves, or (wrap) a vertical band across the left and
    right borders around a middle one, which only a torus joins into one region."""
    labels = np.zeros((size, size), np.int32)
    if wrap:
        labels[:, size // 4: 3 * size // 4] = 1
    else:
        labels[:, size // 2:] = 1
    return labels


def test_masked_statistics_equal_dense_references():
    rng = np.random.default_rng(0)
    features = jnp.asarray(rng.normal(size=(6, 5, 4)), jnp.float32)
    mask = rng.uniform(size=(6, 5)).astype(np.float32)
    f = np.asarray(features, np.float64).reshape(-1, 4)
    t = mask.reshape(-1).astype(np.float64)
    np.testing.assert_allclose(losses.masked_gram(features, jnp.asarray(mask)), (f * t[:, None]).T @ f / t.sum(),
                               rtol=1e-5)
    # A 0/1 mask: the sliced distance of the positions inside, as sliced_wasserstein of those alone computes it.
    inside = mask > 0.4
    source = jnp.asarray(rng.normal(size=(7, 4)), jnp.float32)
    directions = terms.random_directions(jax.random.key(1), 4)
    alone = losses.sliced_wasserstein(features[inside][:, None, :], source, directions)
    masked = losses.masked_sliced_wasserstein(features, jnp.asarray(inside, jnp.float32), source, directions)
    np.testing.assert_allclose(masked, alone, rtol=1e-5)
    # A region's vectors: rows of positions inside it only, as many as the layer has positions.
    stats = terms.get("swd").masked_stats({"l": features}, None, ["l"], None, {"l": jnp.asarray(inside, jnp.float32)})
    rows = {tuple(r) for r in np.asarray(features)[inside]}
    assert stats["l"]["vectors"].shape == (30, 4) and all(tuple(r) in rows for r in np.asarray(stats["l"]["vectors"]))
    # Masks reach a layer as each position's share of its pixel block.
    blocks = guide.layer_masks(jnp.asarray(mask), ["pool1"], "vgg16")["pool1"]
    np.testing.assert_allclose(blocks, mask[:6, :4].reshape(3, 2, 2, 2).mean(axis=(1, 3)), rtol=1e-6)


def test_one_colour_is_the_unguided_run_and_one_program_serves_every_map(vgg):
    params, spec = vgg
    config = SynthesisConfig(size=(32, 32), coarse_iterations=(), iterations=3, **SHALLOW)
    keys = jax.random.split(jax.random.key(0), 2)
    with counted_compiles() as compiles:
        engine = Engine(params, spec, config, 2)
        a, b = engine.targets(gravel(48)), engine.targets(stripes(40))
        plain, _ = engine.synthesize(keys, a)
        one, _ = engine.synthesize(keys, engine.guided_targets([a], np.ones((1, 32, 32), np.float32)))
        step_before = compiles["step"]
        for labels in (halves(32), halves(32, wrap=True)):
            engine.synthesize(keys, engine.guided_targets([a, b], guide.masks(labels, 2, (32, 32))))
    np.testing.assert_array_equal(plain, one)
    assert compiles["step"] == step_before + 1, compiles  # both two-region maps: one program
    with pytest.raises(ValueError, match="region 1 covers 0.50 positions of pool2"):
        engine.guided_targets([a, b], guide.masks(np.pad(np.ones((2, 4), np.int32), ((0, 30), (0, 28))), 2, (32, 32)))


@pytest.mark.parametrize("tileable", [False, True])
def test_two_photos_in_two_regions_each_near_its_own(vgg, tileable):
    """Coarse to fine (the map at every scale): each region's judge distance to its own photo at most a third of
    its distance to the other photo; on a torus, with a region that wraps around the border, at most half (the
    wrapped gravel band measured 0.58 against 1.33, a seamless tile by eye)."""
    params, spec = vgg
    size = 96
    config = SynthesisConfig(size=(size, size), coarse_iterations=(40,), iterations=40, tileable=tileable, **SHALLOW)
    engine = CoarseToFine(params, spec, config, 2)
    photos = gravel(64), warm(64)
    masks = guide.masks(halves(size, wrap=tileable), 2, (size, size))
    targets = engine.guided_targets([engine.targets(p) for p in photos], masks)
    assert [t[terms.GUIDE]["pool2"].shape for t in targets] == [(2, 12, 12), (2, 24, 24)]
    images, _ = engine.synthesize(jax.random.split(jax.random.key(0), 2), targets)
    judge = evaluate.load_judge()
    images = list(np.asarray(images))
    for r, (own, other) in enumerate((photos, photos[::-1])):
        if tileable and r == 0:  # the band across the border: judged on the image rolled to join it
            near = np.mean(evaluate.region_distances(judge, own, [np.roll(x, size // 2, 1) for x in images],
                                                     np.roll(masks[r], size // 2, 1)))
            far = np.mean(evaluate.region_distances(judge, other, [np.roll(x, size // 2, 1) for x in images],
                                                    np.roll(masks[r], size // 2, 1)))
        else:
            near = np.mean(evaluate.region_distances(judge, own, images, masks[r]))
            far = np.mean(evaluate.region_distances(judge, other, images, masks[r]))
        assert near <= far / (2 if tileable else 3), (r, near, far)


def write_map(path, labels, colours):
    Image.fromarray(np.asarray(colours, np.uint8)[labels]).save(path)


def test_cli_regions_source_guide_record_and_errors(tmp_path, weights_path, capsys):
    """A map of two colours: one from a --region photo, one from the part of the input that the source guide
    paints in it; the record holds the files and each region's judge distance. Every bad input: one line, exit
    2, nothing written."""
    green, grey, red = (74, 122, 44), (128, 128, 128), (200, 30, 30)
    photo, other = tmp_path / "two.png", tmp_path / "warm.png"
    both = np.concatenate([gravel(48), stripes(48)], axis=1)  # gravel left, stripes right
    Image.fromarray((both * 255).astype(np.uint8)).save(photo)
    Image.fromarray((warm(48) * 255).astype(np.uint8)).save(other)
    write_map(tmp_path / "map.png", halves(40), [green, grey])
    write_map(tmp_path / "source_map.png", np.concatenate([np.zeros((48, 48), int), np.ones((48, 48), int)], 1),
              [grey, red])
    args = [f"--weights={weights_path}", "--seeds=2", "--size=32", "--iterations=3", "--coarse_iterations=",
            "--layers=conv1_1,pool1,pool2", f"--input={photo}", f"--guide={tmp_path / 'map.png'}"]
    code, stderr = in_process([*args, f"--region=4a7a2c:{other}", f"--source_guide={tmp_path / 'source_map.png'}",
                               f"--output_dir={tmp_path / 'out'}"], capsys)
    assert code == 0, stderr
    record = json.loads((tmp_path / "out" / "two_run.json").read_text())
    assert record["guide"]["regions"][0]["colour"] == "4a7a2c" and record["guide"]["source_guide"]["sha256"]
    assert set(record["judge"]["region_distances"]) == {"4a7a2c", "808080"}
    assert "judge: each region's distance to its own source: 4a7a2c " in stderr, stderr
    write_map(tmp_path / "many.png", np.arange(40 * 40).reshape(40, 40) % 20, [(i, 0, 0) for i in range(20)])
    write_map(tmp_path / "dot.png", np.pad(np.ones((2, 2), int), ((0, 38), (0, 38))), [green, grey])
    bad = {"region colour ff0000 is not in the guide map": [f"--region=ff0000:{other}"],
           "guide colour 4a7a2c .*names no source": [f"--source_guide={tmp_path / 'source_map.png'}"],
           "guide map .*many.png has 20 colours": [f"--guide={tmp_path / 'many.png'}"],
           "guide colour 808080 of .*dot.png covers 0.25 positions of pool2": [f"--guide={tmp_path / 'dot.png'}"],
           "guide map .*none.png not found": [f"--guide={tmp_path / 'none.png'}"],
           "region image .*none.png not found": [f"--region=808080:{tmp_path / 'none.png'}"],
           "--source_guide is given without --guide": ["--guide=", f"--source_guide={tmp_path / 'map.png'}"]}
    assert_refused(args, bad, tmp_path / "x", capsys)
    # --region repeated: both count (a repeated plain flag would keep the last alone).
    code, stderr = in_process([*args, f"--region=4a7a2c:{other}", f"--region=808080:{photo}", "--judge=false",
                               f"--output_dir={tmp_path / 'twice'}"], capsys)
    assert code == 0, stderr
    regions = json.loads((tmp_path / "twice" / "two_run.json").read_text())["guide"]["regions"]
    assert [r["colour"] for r in regions] == ["4a7a2c", "808080"]
