"""Seamless tiles of every texture: `--tileable` outputs, their seams measured, and a gallery of 2x2 repeats.

    python bench/tiles.py --size 256 --out /tmp/texsynth_tiles
    python bench/tiles.py --smoke          # seconds: 32 px, one iteration per scale

For every photo, one seed through the default settings (coarse to fine, 100 iterations at size/4,
60 at size/2, 60 at size; 20 until 2026-12-06) with `tileable=True` (and with `--compare`, the same run
without it, whose wrap-around is an ordinary seam). Prints, per texture, the
seam ratio of each output (evaluate.seam_ratio: the difference across the wrap-around over that
between neighbouring rows and columns inside; about 1 is seamless), the 99th percentile of the same
ratio over the lines inside (what the texture's own edges reach), and the judge's distance to the
source. Writes each tileable output's 2x2 repeat, and `gallery.png`: the repeats of every texture at
half scale, outputs only (no photo): docs/tiles.jpg (bench/figures.py).
"""

import argparse
import os
import time

import numpy as np

from common import SMOKE_SIZE, add_source_args, load_average, load_inputs, machine, network, smoke_out, texture_source


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--coarse_iterations", default="100,60")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--columns", type=int, default=4, help="repeats per row of the gallery")
    parser.add_argument("--compare", action="store_true", help="also run each texture without --tileable")
    parser.add_argument("--out", default="/tmp/texsynth_tiles")
    add_source_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.coarse_iterations, args.iterations = SMOKE_SIZE, "1", 1
    smoke_out(args)

    import jax
    from PIL import Image
    import texsynth_jax as ts
    from texsynth_jax import evaluate, image_io, outputs

    params, spec, paths = load_inputs(args)
    judge_params = evaluate.load_judge()
    keys = jax.random.split(jax.random.key(0), 1)
    coarse = tuple(int(n) for n in args.coarse_iterations.split(",") if n)
    runs = {tileable: ts.CoarseToFine(params, spec, ts.SynthesisConfig(
        size=(args.size, args.size), coarse_iterations=coarse, iterations=args.iterations, tileable=tileable,
        **network(args)), 1)
        for tileable in ((True, False) if args.compare else (True,))}
    os.makedirs(args.out, exist_ok=True)
    print(f"{machine()}; load average {load_average()}; {args.size} px, 1 seed, coarse {coarse} then "
          f"{args.iterations}", flush=True)
    print("| texture | tileable seam (rows, columns) | inside: 99th percentile (rows, columns) | plain seam (rows, "
          "columns) | tileable distance | plain distance | tileable s |")
    print("|---|---|---|---|---|---|---|")
    tiles = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        source = texture_source(path)
        row = {}
        for tileable, run in runs.items():
            start = time.perf_counter()
            image = np.asarray(run.synthesize(keys, run.targets(source))[0])[0]
            row[tileable] = (image, evaluate.seam_ratio(image), time.perf_counter() - start,
                             evaluate.judge(judge_params, source, [image])["distance_mean"])
        image, seam, seconds, distance = row[True]
        plain = row.get(False, (None, (np.nan, np.nan), None, np.nan))
        inside = [np.percentile(evaluate.line_ratios(image, axis)[:-1], 99) for axis in (0, 1)]
        print(f"| {name} | {seam[0]:.2f}, {seam[1]:.2f} | {inside[0]:.2f}, {inside[1]:.2f} | "
              f"{plain[1][0]:.2f}, {plain[1][1]:.2f} | {distance:.3f} | "
              f"{plain[3]:.3f} | {seconds:.0f} |", flush=True)
        repeat = outputs.repeat(image[None])[0]
        image_io.save_png(os.path.join(args.out, f"{name}_tiled.png"), repeat)
        tiles.append(np.asarray(Image.fromarray(image_io.to_uint8(repeat)).resize((args.size, args.size),
                                                                                  Image.LANCZOS)))
    gap = 4
    rows = -(-len(tiles) // args.columns)
    sheet = np.full((rows * (args.size + gap) - gap, args.columns * (args.size + gap) - gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, args.columns)
        sheet[r * (args.size + gap):r * (args.size + gap) + args.size,
              c * (args.size + gap):c * (args.size + gap) + args.size] = tile
    image_io.save_png(os.path.join(args.out, "gallery.png"), sheet)
    print(f"\n{machine()}; load average {load_average()}; gallery: {os.path.join(args.out, 'gallery.png')} "
          f"({', '.join(os.path.splitext(os.path.basename(p))[0] for p in paths)})")


if __name__ == "__main__":
    main()
