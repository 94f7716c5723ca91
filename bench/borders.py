"""Border effects per padding mode: statistics of an output's border band against its interior.

    python bench/borders.py --size 128 --iterations 120 --seeds 1 --out bench/results/borders
    python bench/borders.py --names water.png,veins.png,pebbles.png --modes tileable,tileable_reflect
    python bench/borders.py --smoke        # seconds: 32 px, 1 iteration, zero and tileable, into a temp folder

For each texture of --textures (resized to --size), synthesise --seeds seeds once per mode: zero and
reflect (config.padding), tileable (circular padding of the output; the source's statistics with zero
padding) and tileable_reflect (the same with the source's statistics from reflect padding). Each output is split into a band (the outer --band px) and the interior, and compared:
  mean, std        mean over RGB of |band - interior| of the per-channel mean and std, in [0, 1] units
  conv1_1, pool1   ||G_band - G_interior||_F / ||G_interior||_F of VGG features (Gram / positions)
  to source        the same Gram distance between the output's interior and the whole source (quality)
Features for the measurement are computed without any padding (VALID convolutions), so the yardstick
is the same for every mode. The "source" row measures the photos themselves: a band of a natural
image differs from its interior this much by chance. Values are means over textures and seeds.
Writes per texture source | 2x2 repeat per mode as a PNG, to look at the borders and seams, and the
table as borders.md. The texture photos are for benchmarks only; nothing here copies them elsewhere.
"""

import argparse
import os
import sys
import time

import numpy as np

from common import (ROOT, SMOKE_SIZE, add_source_args, load_average, load_inputs, machine, network, smoke_out,
                    texture_source)

MODES = {"zero": dict(padding="zero"), "reflect": dict(padding="reflect"),
         "tileable": dict(padding="zero", tileable=True), "tileable_reflect": dict(padding="reflect", tileable=True)}
LAYERS = ("conv1_1", "pool1")


def band_mask(h: int, w: int, band: int) -> np.ndarray:
    """True on the outer `band` px of an h x w grid."""
    mask = np.ones((h, w), bool)
    mask[band:h - band, band:w - band] = False
    return mask


def gram(features: np.ndarray) -> np.ndarray:
    """[N, C] -> Gram / N."""
    return features.T @ features / len(features)


def gram_distance(a: np.ndarray, b: np.ndarray) -> float:
    ga, gb = gram(a), gram(b)
    return float(np.linalg.norm(ga - gb) / np.linalg.norm(gb))


def border_stats(image: np.ndarray, features: dict, band: int) -> dict:
    """Band-vs-interior differences of one image [H, W, 3] and its VALID features {layer: [h, w, C]}."""
    h, w, _ = image.shape
    mask = band_mask(h, w, band)
    inner, outer = image[~mask], image[mask]
    stats = {"mean": float(np.mean(np.abs(outer.mean(0) - inner.mean(0)))),
             "std": float(np.mean(np.abs(outer.std(0) - inner.std(0))))}
    for layer, f in features.items():
        # Feature position i of a VALID map sits at image pixel i * stride + offset; the band in
        # feature positions is the image band scaled down (at least one position).
        stride = h // f.shape[0] if layer.startswith("pool") else 1
        offset = (h - f.shape[0] * stride) // 2
        b = max(1, (band - offset) // stride)
        fmask = band_mask(f.shape[0], f.shape[1], b)
        stats[layer] = gram_distance(f[fmask], f[~fmask])
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="first key: jax.random.key(seed) split --seeds ways")
    parser.add_argument("--band", type=int, default=8)
    parser.add_argument("--modes", default="zero,reflect,tileable", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "borders"))
    add_source_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.iterations, args.seeds, args.band, args.modes = SMOKE_SIZE, 1, 1, 4, "zero,tileable"
    smoke_out(args)

    import jax
    import jax.numpy as jnp
    from PIL import Image

    import texsynth_jax as ts
    from texsynth_jax import vgg

    params, spec, paths = load_inputs(args)
    os.makedirs(args.out, exist_ok=True)
    size = (args.size, args.size)
    modes = args.modes.split(",")
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    valid = lambda x, k: vgg.lax_conv(x, k)[1:-1, 1:-1]  # no padding: the same yardstick for every mode
    measure = jax.jit(lambda image: vgg.extract_features(params, image, spec, LAYERS, "avg", valid))
    base = dict(size=size, iterations=args.iterations, coarse_iterations=(), **network(args))
    engines = {m: ts.Engine(params, spec, ts.SynthesisConfig(**base, **MODES[m]), args.seeds) for m in modes}

    rows = {m: [] for m in ["source", *modes]}
    t0 = time.perf_counter()
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        source = texture_source(path, size)
        source_features = {k: np.asarray(v) for k, v in measure(jnp.asarray(source)).items()}
        flat = lambda f: {k: v.reshape(-1, v.shape[-1]) for k, v in f.items()}
        rows["source"].append(border_stats(source, source_features, args.band))
        tiles = [np.ones((2 * args.size, 2 * args.size, 3), np.float32)]
        tiles[0][:args.size, :args.size] = source  # at the outputs' scale, top left
        for mode in modes:
            engine = engines[mode]
            images, losses = engine.synthesize(keys, engine.targets(jnp.asarray(source)))
            images = np.asarray(jax.device_get(images))
            for image in images:
                features = {k: np.asarray(v) for k, v in measure(jnp.asarray(image)).items()}
                stats = border_stats(image, features, args.band)
                b = args.band
                for layer in LAYERS:  # the interior (away from any border effect) against the source
                    f = features[layer]
                    inner = f[b // 2:-(b // 2), b // 2:-(b // 2)] if layer.startswith("pool") else f[b:-b, b:-b]
                    stats[f"{layer} to source"] = gram_distance(inner.reshape(-1, f.shape[-1]),
                                                                flat(source_features)[layer])
                rows[mode].append(stats)
            tiles.append(np.tile(images[0], (2, 2, 1)))
            print(f"# {stem} {mode}: final loss {float(np.asarray(losses)[:, -1].mean()):.4g}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        gap = np.ones((2 * args.size, 4, 3), np.float32)
        strip = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
        Image.fromarray((np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
            os.path.join(args.out, f"{stem}_{args.size}_{'_'.join(modes)}.png"))

    columns = ["mean", "std", *LAYERS, *(f"{l} to source" for l in LAYERS)]
    lines = [f"{machine()}; load average {load_average()}; "
             f"{len(paths)} textures at {args.size} px, {args.seeds} seed(s) from key {args.seed}, "
             f"{args.iterations} iterations, "
             f"band {args.band} px; {time.perf_counter() - t0:.0f} s",
             "", "| mode | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for mode, stats in rows.items():
        cells = [f"{np.mean([s[c] for s in stats]):.4f}" if c in stats[0] else "-" for c in columns]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    command = "python bench/borders.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with open(os.path.join(args.out, "borders.md"), "w") as f:
        f.write(f"    {command}\n\n{text}\n")


if __name__ == "__main__":
    main()
