"""Your own image (issue 27), measured on the benchmark photos: holes filled, photos extended, photos made tileable.

    python bench/fill.py --size 256 --seeds 2 --out /tmp/texsynth_fill
    python bench/fill.py --only tile --photos pebbles.png,veins.png
    python bench/fill.py --size 128 --sigmas 1,0.5,0 --only holes --photos gravel,pebbles.png
    python bench/fill.py --smoke     # seconds: 32 px, the shipped photo
    python bench/fill.py --write_mask mask.png --size 256    # the irregular hole, for --mask

- holes: each photo (at --size) with a square hole (a quarter of the side) and an irregular one (an ellipse and a
  disc), filled from its kept pixels (the default settings, fill.py). Per seed, the border's gradient over the
  rest's (evaluate.border_ratio; about 1: the border does not show) beside the photo's own on the same mask, and
  the judge's distance of the made pixels to the photo (evaluate.region_distances). With --sigmas: at each of
  those stds of the detail carried across the border at each enlargement (fill.carry_detail; 0: none).
- extend: each photo at half --size in the centre of a --size canvas. The judge's distance of the made pixels
  (the canvas less the photo) to the photo, beside the same pixels of a plain synthesis of --size from it.
- tile: each photo made tileable (--tileable) at each band width (--bands, shares of the side): the wrap-around
  seam (evaluate.seam_ratio, rows and columns) against the range of the photo's own interior lines
  (evaluate.line_ratios), the made pixels' judge distance, and the share of the photo kept.
Writes <out>/<part>_<photo>.png (the input with its hole black, then seed 0 of each setting). The photos are read,
never copied (bench/common.py).
"""

import argparse
import os

import numpy as np

from common import (SMOKE_SIZE, TEXTURES, add_smoke_arg, add_weights_arg, load_average, load_weights, machine,
                    network, save_row)

PHOTOS = "pebbles.png,lettuce.png,veins.png,bark.png,water.png"
BANDS = "0.0625,0.125,0.25"


def masks(size: int) -> dict:
    """{name: bool [size, size]} of the holes: a centred square a quarter of the side, and an ellipse with a
    disc (irregular)."""
    y, x = np.mgrid[:size, :size] / size
    square = (np.abs(y - 0.5) < 0.125) & (np.abs(x - 0.5) < 0.125)
    irregular = ((y - 0.47) ** 2 / 0.195 ** 2 + (x - 0.51) ** 2 / 0.117 ** 2 < 1) | ((y - 0.625) ** 2 + (x - 0.39) ** 2
                                                                                      < 0.098 ** 2)
    return {"square": square, "irregular": irregular}


def filled(engine, photo, make, size, keys, place="center", band=0):
    """The seeds' outputs of `photo` on a canvas of `size` with `make` made anew, and the canvas's keep mask."""
    from texsynth_jax import fill

    known, keep = fill.canvas(photo, make, size, place, band)
    source = engine.targets(photo, mask=None if make is None else (~make).astype(np.float32))
    images = engine.synthesize(keys, engine.fill_targets(source, known, keep))[0]
    return fill.paste(np.asarray(images), known, keep), keep


def made_distance(judge, photo, images, made) -> float | None:
    from texsynth_jax import evaluate

    figures = [d for d in evaluate.region_distances(judge, photo, images, made) if d is not None]
    return float(np.mean(figures)) if figures else None


def fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--only", default="holes,extend,tile", help="which of holes,extend,tile to run")
    parser.add_argument("--photos", default=PHOTOS, help="comma-separated benchmark photos")
    parser.add_argument("--bands", default=BANDS, help="comma-separated band widths of the tile rows")
    parser.add_argument("--sigmas", default="",
                        help="comma-separated values of fill.DETAIL_SIGMA to run the holes with (0: no detail carried); "
                             "default: its own")
    parser.add_argument("--textures", default=TEXTURES, help="folder of the benchmark photos")
    parser.add_argument("--out", default="/tmp/texsynth_fill", help="folder for the pictures")
    parser.add_argument("--write_mask", default="", help="only write the irregular hole at --size as a mask PNG "
                                                         "(white: make) to this path, and exit")
    add_weights_arg(parser)
    add_smoke_arg(parser)
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    if args.write_mask:
        from PIL import Image

        Image.fromarray(masks(args.size)["irregular"].astype(np.uint8) * 255).save(args.write_mask)
        return

    import dataclasses
    import tempfile
    import jax
    import texsynth_jax as ts
    from texsynth_jax import evaluate, fill
    from common import smoke_texture, texture_source

    size = SMOKE_SIZE if args.smoke else args.size
    schedule = dict(coarse_iterations=(1,), iterations=1) if args.smoke else {}
    if args.smoke:
        args.out = tempfile.mkdtemp(prefix="texsynth_smoke_out_")
    # "gravel": the shipped photo (the one the README's pictures show).
    paths = [smoke_texture()] if args.smoke else [smoke_texture(256) if n == "gravel" else os.path.join(args.textures, n)
                                                  for n in args.photos.split(",")]
    params, spec = load_weights(args.weights)
    judge = evaluate.load_judge()
    keys = jax.random.split(jax.random.key(0), args.seeds)
    config = ts.SynthesisConfig(size=(size, size), **schedule, **network(args))
    engine = ts.make_engine(params, spec, config, args.seeds)
    name = lambda path: os.path.splitext(os.path.basename(path))[0]
    print(f"{machine()}; load average {load_average()}; {size} px, {args.seeds} seeds, the default settings")

    if "holes" in parts:
        default = fill.DETAIL_SIGMA
        sigmas = [float(v) for v in args.sigmas.split(",")] if args.sigmas else [default]
        print("\n| photo | hole | detail sigma | border ratio per seed | the photo's own | made distance | "
              "the photo's own |\n|---|---|---|---|---|---|---|")
        for path in paths:
            photo = texture_source(path, (size, size))
            row = []
            for hole, make in masks(size).items():
                row.append(np.where(make[..., None], 0.0, photo))
                for sigma in sigmas:
                    fill.DETAIL_SIGMA = sigma
                    jax.clear_caches()  # the constant is baked into the compiled restart
                    images, keep = filled(engine, photo, make, (size, size), keys)
                    ratios = ", ".join(fmt(evaluate.border_ratio(x, make)) for x in images)
                    print(f"| {name(path)} | {hole} | {sigma:g} | {ratios} | {fmt(evaluate.border_ratio(photo, make))} "
                          f"| {fmt(made_distance(judge, photo, images, make))} "
                          f"| {fmt(made_distance(judge, photo, [photo], make))} |", flush=True)
                    row.append(images[0])
                fill.DETAIL_SIGMA = default
            save_row(os.path.join(args.out, f"holes_{name(path)}.png"), row)
        jax.clear_caches()

    if "extend" in parts:
        print("\n| photo | photo size | canvas | made distance, extended | the same pixels, plain synthesis |\n"
              "|---|---|---|---|---|")
        for path in paths:
            photo = texture_source(path, (size // 2, size // 2))
            images, keep = filled(engine, photo, None, (size, size), keys)
            plain = np.asarray(engine.synthesize(keys, engine.targets(photo))[0])
            made = keep < 1
            print(f"| {name(path)} | {size // 2} | {size} | {fmt(made_distance(judge, photo, images, made))} | "
                  f"{fmt(made_distance(judge, photo, plain, made))} |", flush=True)
            save_row(os.path.join(args.out, f"extend_{name(path)}.png"), [photo, images[0], plain[0]])

    if "tile" in parts:
        tile_engine = ts.make_engine(params, spec, dataclasses.replace(config, tileable=True), args.seeds)
        print("\n| photo | band | kept | seam ratio per seed (rows, columns) | the photo's interior lines | "
              "made distance |\n|---|---|---|---|---|---|")
        for path in paths:
            photo = texture_source(path, (size, size))
            lines = np.concatenate([evaluate.line_ratios(photo, a)[:-1] for a in (0, 1)])
            row = [photo]
            for band in (float(b) for b in args.bands.split(",")):
                images, keep = filled(tile_engine, photo, None, (size, size), keys, band=fill.band_pixels(
                    (size, size), band))
                seams = ", ".join("%.2f/%.2f" % evaluate.seam_ratio(x) for x in images)
                print(f"| {name(path)} | {band:g} | {keep.mean():.2f} | {seams} | {lines.min():.2f}-{lines.max():.2f} | "
                      f"{fmt(made_distance(judge, photo, images, keep < 1))} |", flush=True)
                row.append(images[0])
            save_row(os.path.join(args.out, f"tile_{name(path)}.png"), row)


if __name__ == "__main__":
    main()
