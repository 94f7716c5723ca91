"""The pictures in README.md and docs/: which run makes each, and how its outputs become the picture.

    python bench/figures.py --list                 # every picture with the commands that made it
    python bench/figures.py losses --runs /tmp/texsynth_losses --rows zigzag,lace,veins,bark --out docs/losses.jpg
    python bench/figures.py tiles --runs /tmp/texsynth_tiles --out docs/tiles.jpg
    python bench/figures.py large --runs /tmp/texsynth_schedules --texture pebbles --out docs/large_1024.jpg
    python bench/figures.py --smoke                # seconds: every composer on small made-up runs

The runs take minutes to hours (each command's page in docs/ gives its time); this script only lays out
what they wrote. The benchmark photos stay out of the repository, so the pictures made from them show
synthesised outputs only: the composers drop the source column of the benchmarks' galleries.
"""

import argparse
import os
import sys
import tempfile

import numpy as np
from PIL import Image

GAP = 4  # px of white between tiles, as image_io.contact_sheet and the benchmarks' galleries leave

# picture -> (what it shows, the commands that make it). "texsynth" is the installed command line (run.py); the
# first two pictures were made before --paper existed, by the settings it sets but a start of std 0.01.
FIGURES = {
    "docs/example.png": (
        "contact sheet of the shipped gravel photo and 4 seeds, 128 px, paper mode, 200 iterations",
        ["texsynth --paper --init_scale=0.01 --size=128 --seeds=4 --iterations=200 --output_dir=out/docs128",
         "cp out/docs128/default_texture_sheet.png docs/example.png"]),
    "docs/tileable.png": (
        "the gravel photo and 2x2 repeats of two tileable seeds, 128 px, paper mode, 100 iterations",
        ["texsynth --paper --init_scale=0.01 --size=128 --seeds=2 --iterations=100 --tileable "
         "--output_dir=out/tileable",
         "cp out/tileable/default_texture_sheet.png docs/tileable.png"]),
    "docs/fill_hole.png": (
        "the shipped gravel photo with an irregular hole, and the hole filled (256 px, the default settings)",
        ["python bench/fill.py --write_mask out/mask.png --size 256",
         "texsynth --fill=texsynth_jax/data/default_texture.png --mask=out/mask.png --seeds=1 --output_dir=out/hole",
         "python bench/figures.py fill --runs out/hole --out docs/fill_hole.png"]),
    "docs/fill_extend.png": (
        "the shipped gravel photo (256 px) extended to 256x512 px, the photo on the left",
        ["texsynth --fill=texsynth_jax/data/default_texture.png --size=256,512 --place=left --seeds=1 "
         "--output_dir=out/extend",
         "python bench/figures.py fill --runs out/extend --out docs/fill_extend.png"]),
    "docs/fill_tile.png": (
        "2x2 repeats of the shipped gravel photo as it is and made tileable (a band of 1/16 of the side made anew)",
        ["texsynth --fill=texsynth_jax/data/default_texture.png --tileable --seeds=1 --output_dir=out/tile",
         "python bench/figures.py fill --runs out/tile --out docs/fill_tile.png"]),
    "docs/content.jpg": (
        "scikit-image's cat (CC0), the shipped gravel photo, the gravel carried onto the cat (the defaults), and the "
        "same in the cat's colours",
        ["python -c \"import skimage.data, PIL.Image; "
         "PIL.Image.fromarray(skimage.data.chelsea()).save('out/cat.png')\"",
         "texsynth --content=out/cat.png --seeds=1 --output_dir=out/cat",
         "texsynth --content=out/cat.png --colors=content --seeds=1 --output_dir=out/cat_colours",
         "python bench/figures.py content --runs out/cat,out/cat_colours --out docs/content.jpg"]),
    "docs/versus_paper_128.jpg": (
        "128 px, two seeds each of the PyTorch reference run to 300 iterations and of --iterations=150 "
        "--init_scale=0.1, on the checking photos water, lace, bark, veins (docs/quality.md, against the converged "
        "paper)",
        ["python bench/versus_paper.py --split checking --sizes 128 --seeds 4 --sets torch --cache /tmp/vp_cache "
         "--out /tmp/vp_ref",
         "python bench/versus_paper.py --split checking --sizes 128 --seeds 4 --sets paper --iterations 1 --against "
         "bench/results/versus_paper_checking_128.md --against bench/results/versus_paper_128.md --out /tmp/vp_ours "
         "--candidate \"n0.1/150=init_scale=0.1;iterations=150\"",
         "python bench/figures.py versus --runs /tmp/vp_ref:1,/tmp/vp_ours:1 --rows water,lace,bark,veins --tile 128 "
         "--out docs/versus_paper_128.jpg"]),
    "docs/versus_paper_256.jpg": (
        "256 px, two seeds each of the PyTorch reference run to 300 iterations and of the default settings (as of "
        "2026-12-07, session 23: the ten layers, --pyramid=1, the uniform start above 128 px, the coarsest scale a "
        "torus up to 256 px), on the checking photos water, lace, bark, veins (README; docs/quality.md, against the "
        "converged paper)",
        ["python bench/versus_paper.py --split checking --names water.png,lace.png,bark.png,veins.png --sizes 256 "
         "--seeds 2 --sets torch,default --cache /tmp/vp_cache --out /tmp/vp256",
         "python bench/figures.py versus --runs /tmp/vp256:2,/tmp/vp256:1 --rows water,lace,bark,veins --tile 256 "
         "--out docs/versus_paper_256.jpg"]),
    "docs/losses.jpg": (
        "seed 0 of the paper mode, coarse to fine, and coarse to fine + spectrum at equal time (docs/quality.md)",
        ['python bench/losses.py --size 256 --seeds 4 --budget 40 --out /tmp/texsynth_losses --settings '
         '"gram (paper),gram c2f,gram+spectrum c2f" --names zigzag.png,lace.png,pebbles.png,bark.png,veins.png',
         "python bench/figures.py losses --runs /tmp/texsynth_losses --rows zigzag,lace,veins,bark "
         "--out docs/losses.jpg"]),
    "docs/losses_2.jpg": (
        "the same for water, ink and lettuce",
        ['python bench/losses.py --size 256 --seeds 4 --budget 40 --out /tmp/texsynth_losses --settings '
         '"gram (paper),gram c2f,gram+spectrum c2f" --names water.png,ink.png,lettuce.png',
         "python bench/figures.py losses --runs /tmp/texsynth_losses --rows water,ink,lettuce "
         "--out docs/losses_2.jpg"]),
    "docs/tiles.jpg": (
        "2x2 repeats of every photo's 256 px tileable output (docs/borders.md)",
        ["python bench/tiles.py --size 256 --out /tmp/texsynth_tiles",
         "python bench/figures.py tiles --runs /tmp/texsynth_tiles --out docs/tiles.jpg"]),
    "docs/large_1024.jpg": (
        "1024 px from the 256 px pebbles photo: single scale, coarse to fine, a 1:1 crop (docs/scale.md)",
        ['python bench/schedules.py --size 1024 --seeds 1 --reference 30 --names pebbles.png '
         '--schedules "120,60/9" --out /tmp/texsynth_schedules',
         "python bench/figures.py large --runs /tmp/texsynth_schedules --texture pebbles --out docs/large_1024.jpg"]),
}


def columns(sheet: np.ndarray, tile: int, count: int, skip: int = 1) -> list[np.ndarray]:
    """`count` tiles of a row of `tile`-px squares with GAP between them, after the first `skip` (the source)."""
    return [sheet[:tile, (skip + i) * (tile + GAP):(skip + i) * (tile + GAP) + tile] for i in range(count)]


def grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Equal tiles in rows and columns, GAP px of white between them."""
    h, w = rows[0][0].shape[:2]
    n = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + GAP) - GAP, n * (w + GAP) - GAP, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            out[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = tile
    return out


def read(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def losses_figure(runs: str, rows: list[str], tile: int) -> np.ndarray:
    """bench/losses.py's galleries (<runs>/<texture>.png: source, then seed 0 of each setting): the settings'
    columns only, one row per texture."""
    sheets = [read(os.path.join(runs, f"{name}.png")) for name in rows]
    count = (sheets[0].shape[1] + GAP) // (tile + GAP) - 1
    return grid([columns(sheet, tile, count) for sheet in sheets])


def large_figure(runs: str, texture: str, side: int, crop: tuple[int, int]) -> np.ndarray:
    """bench/schedules.py's gallery (<runs>/<texture>.png: the source tiled, then seed 0 of the single-scale run
    and of one schedule, no gaps): both outputs shrunk to `side` px, and a `side` px crop of the schedule's at
    full resolution from (`crop` row, column)."""
    sheet = read(os.path.join(runs, f"{texture}.png"))
    size = sheet.shape[0]
    single, schedule = sheet[:, size:2 * size], sheet[:, 2 * size:3 * size]
    shrink = lambda a: np.asarray(Image.fromarray(a).resize((side, side), Image.Resampling.LANCZOS))
    y, x = crop
    return grid([[shrink(single), shrink(schedule), schedule[y:y + side, x:x + side]]])


def fill_figure(run: str) -> np.ndarray:
    """Before and after of a --fill run's folder (its record says how): the image with its made pixels black (a
    hole), on a white canvas of the output's size (extended), or repeated 2x2 (tileable); then seed 0 the same."""
    import json

    record = next(json.load(open(os.path.join(run, f))) for f in sorted(os.listdir(run)) if f.endswith("_run.json"))
    before = read(record["fill"]["image"]["path"])
    if "mask" in record["fill"]:
        from texsynth_jax import fill

        make = fill.mask_from_image(read(record["fill"]["mask"]["path"]) / 255.0, before.shape[:2])
        before = np.where(make[..., None], 0, before).astype(np.uint8)
    after = read(os.path.join(run, record["outputs"]["images"][0]))
    if record["config"]["tileable"]:
        return grid([[np.tile(before, (2, 2, 1)), read(os.path.join(run, record["outputs"]["tiled"][0]))]])
    if after.shape != before.shape:
        from texsynth_jax import fill

        top, left = fill.offset(before.shape[:2], after.shape[:2], record["fill"]["place"])
        canvas = np.full_like(after, 255)
        canvas[top:top + before.shape[0], left:left + before.shape[1]] = before
        before = canvas
    return grid([[before, after]])


def versus_figure(runs: list[str], rows: list[str], tile: int, seeds: int) -> np.ndarray:
    """bench/versus_paper.py's pictures (<folder>/<photo>_<tile>.png: the source, then one row of seeds per set),
    each run given as FOLDER:ROW (ROW 1 is the first set): per photo one row, the first `seeds` seeds of each run
    side by side; the source row is never used."""
    cells = []
    for name in rows:
        row = []
        for run in runs:
            folder, _, index = run.rpartition(":")
            sheet = read(os.path.join(folder, f"{name}_{tile}.png"))
            top = int(index) * (tile + GAP)
            row += columns(sheet[top:top + tile], tile, seeds, skip=0)
        cells.append(row)
    return grid(cells)


def content_figure(runs: list[str]) -> np.ndarray:
    """Before and after of --content runs' folders in a row, each at the photo's height with GAP px between: the
    photo, the texture source, then seed 0 of each run."""
    import json

    records = [next(json.load(open(os.path.join(run, f))) for f in sorted(os.listdir(run)) if f.endswith("_run.json"))
               for run in runs]
    images = [read(records[0]["content"]["image"]["path"]), read(records[0]["input"]["path"]),
              *(read(os.path.join(run, record["outputs"]["images"][0])) for run, record in zip(runs, records))]
    height = images[0].shape[0]
    fit = lambda a: np.asarray(Image.fromarray(a).resize((round(a.shape[1] * height / a.shape[0]), height),
                                                         Image.Resampling.LANCZOS))
    gap = np.full((height, GAP, 3), 255, np.uint8)
    return np.concatenate([p for a in images for p in (fit(a), gap)][:-1], axis=1)


def save(path: str, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(image).save(path, quality=90) if path.endswith(".jpg") else Image.fromarray(image).save(path)
    print(f"{path}: {image.shape[1]}x{image.shape[0]}")


def smoke() -> None:
    """Every composer on made-up runs of 32 px tiles, laid out as the benchmarks lay out theirs."""
    from texsynth_jax import image_io

    rng = np.random.default_rng(0)
    noise = lambda n: rng.random((n, n, 3)).astype(np.float32)
    runs, out, tile = tempfile.mkdtemp(prefix="texsynth_figures_"), tempfile.mkdtemp(prefix="texsynth_figures_"), 32
    for name in ("zigzag", "lace"):  # bench/losses.py: contact_sheet(source, [seed 0 of 3 settings], size)
        image_io.save_png(os.path.join(runs, f"{name}.png"), image_io.contact_sheet(noise(tile), [noise(tile)] * 3, tile))
    figure = losses_figure(runs, ["zigzag", "lace"], tile)
    assert figure.shape == (2 * tile + GAP, 3 * tile + 2 * GAP, 3), figure.shape
    save(os.path.join(out, "losses.jpg"), figure)
    # bench/schedules.py: the source tiled to the output size, then seed 0 of each run, no gaps
    image_io.save_png(os.path.join(runs, "pebbles.png"), np.concatenate([noise(4 * tile)] * 3, axis=1))
    figure = large_figure(runs, "pebbles", tile, (0, 0))
    assert figure.shape == (tile, 3 * tile + 2 * GAP, 3), figure.shape
    save(os.path.join(out, "large.jpg"), figure)
    image_io.save_png(os.path.join(runs, "gallery.png"), grid([[image_io.to_uint8(noise(tile))] * 4] * 2))
    save(os.path.join(out, "tiles.jpg"), read(os.path.join(runs, "gallery.png")))
    # a --fill run's folder: the record names the image and mask; a hole, then the same image extended
    import json

    image_io.save_png(os.path.join(runs, "photo.png"), noise(tile))
    image_io.save_png(os.path.join(runs, "mask.png"), np.pad(np.ones((8, 8, 3)), ((12, 12), (12, 12), (0, 0))))
    for size, mask in ((tile, True), (2 * tile, False)):
        image_io.save_png(os.path.join(runs, "photo_seed0.png"), noise(size))
        fill = {"image": {"path": os.path.join(runs, "photo.png")}, "place": "center",
                **({"mask": {"path": os.path.join(runs, "mask.png")}} if mask else {})}
        with open(os.path.join(runs, "photo_run.json"), "w") as f:
            json.dump({"fill": fill, "config": {"tileable": False}, "outputs": {"images": ["photo_seed0.png"]}}, f)
        figure = fill_figure(runs)
        assert figure.shape == (size, 2 * size + GAP, 3) and (figure[12:20, 12:20] == 0).all() == mask, figure.shape
    save(os.path.join(out, "fill.png"), figure)
    # --content runs' folders: the record names the photo and the source
    image_io.save_png(os.path.join(runs, "cat.png"), noise(tile))
    image_io.save_png(os.path.join(runs, "photo_seed0.png"), noise(tile))
    with open(os.path.join(runs, "photo_run.json"), "w") as f:
        json.dump({"content": {"image": {"path": os.path.join(runs, "cat.png")}},
                   "input": {"path": os.path.join(runs, "photo.png")}, "outputs": {"images": ["photo_seed0.png"]}}, f)
    # bench/versus_paper.py's --out pictures: the source row, then one row of seeds per set
    image_io.save_png(os.path.join(runs, "lace_32.png"), grid([[image_io.to_uint8(noise(tile))] * 4] * 3))
    figure = versus_figure([f"{runs}:1", f"{runs}:2"], ["lace"], tile, 2)
    assert figure.shape == (tile, 4 * tile + 3 * GAP, 3), figure.shape
    save(os.path.join(out, "versus.jpg"), figure)
    figure = content_figure([runs, runs])
    assert figure.shape == (tile, 4 * tile + 3 * GAP, 3), figure.shape
    save(os.path.join(out, "content.png"), figure)
    for path, (_, commands) in FIGURES.items():
        assert commands and os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(__file__)), path)), path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("figure", nargs="?", choices=("losses", "tiles", "large", "fill", "content", "versus"))
    parser.add_argument("--runs", help="the folder the benchmark wrote (its --out); content: comma-separated runs; "
                        "versus: comma-separated FOLDER:ROW")
    parser.add_argument("--out", help="the picture to write (.jpg or .png)")
    parser.add_argument("--rows", default="zigzag,lace,veins,bark", help="losses, versus: textures, one row each")
    parser.add_argument("--tile", type=int, default=256, help="losses, versus: the benchmark's --size")
    parser.add_argument("--seeds", type=int, default=2, help="versus: seeds of each run per photo")
    parser.add_argument("--texture", default="pebbles", help="large: the gallery's texture")
    parser.add_argument("--side", type=int, default=448, help="large: side of each panel")
    parser.add_argument("--crop", default="0,0", help="large: row,column of the full-resolution crop")
    parser.add_argument("--list", action="store_true", help="print every picture with its commands")
    parser.add_argument("--smoke", action="store_true", help="every composer on small made-up runs")
    args = parser.parse_args(argv)
    if args.list or not (args.figure or args.smoke):
        for path, (what, commands) in FIGURES.items():
            print(f"{path}: {what}\n" + "".join(f"    {c}\n" for c in commands))
        return
    if args.smoke:
        smoke()
        return
    if not (args.runs and args.out):
        sys.exit(f"error: {args.figure} needs --runs and --out; see python bench/figures.py --list")
    if args.figure == "losses":
        figure = losses_figure(args.runs, args.rows.split(","), args.tile)
    elif args.figure == "tiles":
        figure = read(os.path.join(args.runs, "gallery.png"))
    elif args.figure == "fill":
        figure = fill_figure(args.runs)
    elif args.figure == "content":
        figure = content_figure(args.runs.split(","))
    elif args.figure == "versus":
        figure = versus_figure(args.runs.split(","), args.rows.split(","), args.tile, args.seeds)
    else:
        figure = large_figure(args.runs, args.texture, args.side, tuple(int(v) for v in args.crop.split(",")))
    save(args.out, figure)


if __name__ == "__main__":
    main()
