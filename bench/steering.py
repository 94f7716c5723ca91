"""Steering, measured by the judge on the benchmark photos (issue 26): blends, the source's scale, guides.

    python bench/steering.py --size 128 --seeds 2 --out /tmp/texsynth_steering
    python bench/steering.py --only blend --pairs pebbles.png:lettuce.png
    python bench/steering.py --smoke     # seconds: 32 px, one pair and one photo made from the shipped photo

- blend: for each pair A:B, the default settings on blends of A's and B's statistics at 5 weights of B
  (0, 0.25, 0.5, 0.75, 1; Engine.blend_targets, one compiled program for all), the judge's distance of the
  seeds to A and to B at each: a blend works when the distance to A rises and to B falls along the sweep.
  Writes <out>/blend_<A>_<B>.png, seed 0 at each weight in a row.
- scale: for each photo (a 512 px copy), --source_scale 1, 0.5 and 0.25 at --size: the judge's distance to
  the resized source, and <out>/scale_<photo>.png, seed 0 at each factor.
- guide: for each pair A:B, a map with a diagonal path of B through A (path_map) at --size: the judge's distance
  of each region to its own photo and to the other (evaluate.region_distances); a guide works when each region
  is far nearer its own. Writes <out>/guide_<A>_<B>.png: the map, then seed 0 of each.
- colors: for each pair A:P, A's structure with P's colours three ways: the default run then colors.transfer
  (what --colors does), the paper's way (Gatys et al. 2017: synthesis from A's luminance alone, then the
  transfer), and no transfer but a colour-histogram loss term (gram on A, a sliced Wasserstein distance of the
  pixels' RGB to P's, weight 1 and 10): the colour histogram distance to P (colors.histogram_distance) and the
  judge's distance of the rank-equalised luminance to A's (the structure). Writes <out>/colors_<A>_<P>.png.
The photos are read, never copied (bench/common.py).
"""

import argparse
import dataclasses
import os

import numpy as np

from common import SMOKE_SIZE, TEXTURES, add_smoke_arg, add_weights_arg, load_average, load_weights, machine, network

PAIRS = "pebbles.png:lettuce.png,bark.png:water.png,veins.png:ink.png"
LARGE = "lettuce_512.png,bark_512.png,veins_512.png"
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
SCALES = (1.0, 0.5, 0.25)
COLOUR_PAIRS = "lettuce.png:water.png,bark.png:ink.png,veins.png:pebbles.png"


def row(images) -> np.ndarray:
    """Seed 0 of each setting side by side, 4 px of white between, as uint8."""
    h = images[0].shape[0]
    gap = np.ones((h, 4, 3), np.float32)
    parts = [part for image in images for part in (image, gap)][:-1]
    return (np.clip(np.concatenate(parts, axis=1), 0, 1) * 255).round().astype(np.uint8)


def save(path: str, image: np.ndarray) -> None:
    from PIL import Image

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(image).save(path)


def blend_sweep(engine, judge, a, b, keys) -> tuple[list, list, list]:
    """(distances to A, to B, seed-0 images) at each of WEIGHTS."""
    from texsynth_jax import evaluate

    targets = [engine.targets(a), engine.targets(b)]
    to_a, to_b, firsts = [], [], []
    for w in WEIGHTS:
        images = list(np.asarray(engine.synthesize(keys, engine.blend_targets(targets, [1 - w, w]))[0]))
        to_a.append(float(np.mean(evaluate.distances(judge, a, images))))
        to_b.append(float(np.mean(evaluate.distances(judge, b, images))))
        firsts.append(images[0])
    return to_a, to_b, firsts


def path_map(size: int) -> np.ndarray:
    """Labels [size, size] of a guide: 1 on a diagonal path 36% of the side wide, 0 around it."""
    y, x = np.mgrid[:size, :size]
    return (np.abs(y - 0.7 * x - 0.15 * size) < 0.18 * size).astype(np.int32)


def guided(engine, judge, a, b, keys, size) -> tuple[list, list]:
    """([(distance to own, to other)] of the path's surroundings (A) and of the path (B), seed images)."""
    from texsynth_jax import evaluate, guide

    masks = guide.masks(path_map(size), 2, (size, size))
    images = engine.synthesize(keys, engine.guided_targets([engine.targets(a), engine.targets(b)], masks))[0]
    images = list(np.asarray(images))
    mean = lambda figures: float(np.mean([f for f in figures if f is not None] or [np.nan]))  # None: too thin
    figures = [(mean(evaluate.region_distances(judge, own, images, mask)),
                mean(evaluate.region_distances(judge, other, images, mask)))
               for own, other, mask in ((a, b, masks[0]), (b, a, masks[1]))]
    return figures, images


def equalised_luminance(image) -> np.ndarray:
    """Luma as ranks in [0, 1], grey RGB: the structure of the luminance whatever its tones."""
    from texsynth_jax import colors

    luma = colors.luminance(image)[..., 0]
    ranks = np.argsort(np.argsort(luma.ravel(), kind="stable")).reshape(luma.shape) / (luma.size - 1)
    return np.repeat(ranks[..., None], 3, -1).astype(np.float32)


def register_rgb_term():
    """A colour-histogram loss term "rgb": the sliced Wasserstein distance of the image's RGB pixels to the
    source's (here: the palette's), 16 fixed directions."""
    import jax
    import jax.numpy as jnp
    from texsynth_jax import losses, terms

    directions = terms.random_directions(jax.random.key(7), 16)[:3]  # [3, 16], not unit: rescaled below
    directions = directions / jnp.linalg.norm(directions, axis=0, keepdims=True)

    def stats(features, source, layers, size):
        return source.reshape(-1, 3)

    def loss(features, image, pixels, layer_weights, key):
        return losses.sliced_wasserstein(image, pixels, directions)

    terms.register("rgb", stats, loss, replace=True)


def colour_ways(params, spec, config, judge, a, palette, keys, term_weights=(1, 10)
                ) -> list[tuple[str, float, float, np.ndarray]]:
    """[(way, colour distance to the palette, structure distance to A, seed-0 image)] of each way; the colour term
    at each of `term_weights` (each its own compiled programs)."""
    import dataclasses as dc
    import texsynth_jax as ts
    from texsynth_jax import colors, evaluate

    def figures(way, images):
        images = [np.asarray(x) for x in images]
        colour = float(np.mean([colors.histogram_distance(x, palette) for x in images]))
        structure = float(np.mean(evaluate.distances(judge, equalised_luminance(a), [equalised_luminance(x)
                                                                                      for x in images])))
        return way, colour, structure, images[0]

    engine = ts.make_engine(params, spec, config, len(keys))
    plain = np.asarray(engine.synthesize(keys, engine.targets(a))[0])
    out = [figures("as synthesised", plain),
           figures("then transfer (--colors)", [colors.transfer(x, palette) for x in plain])]
    grey = np.repeat(colors.luminance(a), 3, -1).astype(np.float32)
    luminance_only = np.asarray(engine.synthesize(keys, engine.targets(grey))[0])
    out.append(figures("luminance only, then transfer", [colors.transfer(x, palette) for x in luminance_only]))
    register_rgb_term()
    for weight in term_weights:
        with_term = dc.replace(config, loss=("gram:1", f"rgb:{weight}"))
        term_engine = ts.make_engine(params, spec, with_term, len(keys))
        targets = term_engine.targets(a)
        palette_targets = term_engine.targets(palette)
        mixed = ([palette_colours(t, p) for t, p in zip(targets, palette_targets)]
                 if isinstance(targets, list) else palette_colours(targets, palette_targets))
        out.append(figures(f"colour term rgb:{weight}", term_engine.synthesize(keys, mixed)[0]))
    return out


def palette_colours(targets, palette_targets):
    """`targets` with the palette's "rgb" statistics, at every --pyramid level too."""
    from texsynth_jax import terms

    levels = zip(targets.get(terms.PYRAMID, ()), palette_targets.get(terms.PYRAMID, ()))
    return {**targets, "rgb": palette_targets["rgb"],
            **({terms.PYRAMID: [palette_colours(t, p) for t, p in levels]} if terms.PYRAMID in targets else {})}


def photo_pairs(text: str, args, size: int, other_in_smoke):
    """(name A, name B, A, B) of each "A:B" pair of `text`, both photos at twice `size`; in a smoke run one pair of
    the shipped photo, B made another texture by `other_in_smoke`."""
    from common import smoke_texture, texture_source

    pairs = [(smoke_texture(), smoke_texture())] if args.smoke else [p.split(":") for p in text.split(",")]
    for a_name, b_name in pairs:
        a = texture_source(os.path.join(args.textures, a_name), (2 * size, 2 * size))
        b = texture_source(os.path.join(args.textures, b_name), (2 * size, 2 * size))
        yield a_name, b_name, a, (np.ascontiguousarray(other_in_smoke(b)) if args.smoke else b)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--only", default="blend,scale,guide,colors", help="which of blend,scale,guide,colors to run")
    parser.add_argument("--palettes", default=COLOUR_PAIRS, help="comma-separated A:P pairs for the colour rows")
    parser.add_argument("--pairs", default=PAIRS, help="comma-separated A:B photo pairs for the blend sweeps")
    parser.add_argument("--large", default=LARGE, help="comma-separated photos for the scale rows")
    parser.add_argument("--textures", default=TEXTURES, help="folder of the benchmark photos")
    parser.add_argument("--out", default="/tmp/texsynth_steering", help="folder for the pictures")
    add_weights_arg(parser)
    add_smoke_arg(parser)
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))

    import jax
    import texsynth_jax as ts
    from texsynth_jax import evaluate
    from common import smoke_texture, texture_source
    import tempfile

    size = SMOKE_SIZE if args.smoke else args.size
    schedule = dict(coarse_iterations=(1,), iterations=1) if args.smoke else {}
    if args.smoke:
        args.out = tempfile.mkdtemp(prefix="texsynth_smoke_out_")
    params, spec = load_weights(args.weights)
    judge = evaluate.load_judge()
    keys = jax.random.split(jax.random.key(0), args.seeds)
    config = ts.SynthesisConfig(size=(size, size), **schedule, **network(args))
    engine = ts.make_engine(params, spec, config, args.seeds)
    print(f"{machine()}; load average {load_average()}; {size} px, {args.seeds} seeds, the default settings")
    if "blend" in parts:
        print("\n| pair A:B | weight of B | distance to A | distance to B |\n|---|---|---|---|")
        pairs = [p.split(":") for p in args.pairs.split(",")]
        if args.smoke:
            gravel = smoke_texture()
            pairs = [(gravel, gravel)]
        for a_name, b_name in pairs:
            a = texture_source(os.path.join(args.textures, a_name), (2 * size, 2 * size))
            b = texture_source(os.path.join(args.textures, b_name), (2 * size, 2 * size))
            if args.smoke:
                b = b[::-1, :, ::-1].copy()  # another texture of the same photo
            to_a, to_b, firsts = blend_sweep(engine, judge, a, b, keys)
            for w, da, db in zip(WEIGHTS, to_a, to_b):
                print(f"| {os.path.basename(a_name)}:{os.path.basename(b_name)} | {w:g} | {da:.4f} | {db:.4f} |",
                      flush=True)
            monotone = bool(np.all(np.diff(to_a) > 0) and np.all(np.diff(to_b) < 0))
            print(f"| (monotone: {'yes' if monotone else 'NO'}) | | | |")
            stem = lambda n: os.path.splitext(os.path.basename(n))[0]
            save(os.path.join(args.out, f"blend_{stem(a_name)}_{stem(b_name)}.png"), row(firsts))
    if "scale" in parts:
        print("\n| photo | --source_scale | distance to the resized source |\n|---|---|---|")
        photos = [smoke_texture(4 * size)] if args.smoke else [os.path.join(args.textures, n)
                                                                for n in args.large.split(",")]
        for path in photos:
            source = texture_source(path)
            firsts = []
            for scale in SCALES:
                scaled = dataclasses.replace(config, source_scale=scale)
                scaled_engine = ts.make_engine(params, spec, scaled, args.seeds)
                images = list(np.asarray(scaled_engine.synthesize(keys, scaled_engine.targets(source))[0]))
                reference = np.asarray(ts.synthesis.scale_source(source, scale))
                distance = float(np.mean(evaluate.distances(judge, reference, images)))
                print(f"| {os.path.basename(path)} | {scale:g} | {distance:.4f} |", flush=True)
                firsts.append(images[0])
            save(os.path.join(args.out, f"scale_{os.path.splitext(os.path.basename(path))[0]}.png"), row(firsts))
    if "guide" in parts:
        print("\n| pair A:B | region | distance to own photo | to the other | ratio |\n|---|---|---|---|---|")
        for a_name, b_name, a, b in photo_pairs(args.pairs, args, size, lambda b: b[::-1, :, ::-1]):
            figures, images = guided(engine, judge, a, b, keys, size)
            names = [os.path.basename(a_name), os.path.basename(b_name)]
            for what, name, (own, other) in zip(("around the path", "the path"), names, figures):
                print(f"| {names[0]}:{names[1]} | {what} ({name}) | {own:.4f} | {other:.4f} | {own / other:.2f} |",
                      flush=True)
            stem = lambda n: os.path.splitext(os.path.basename(n))[0]
            shown = np.repeat(path_map(size)[..., None], 3, axis=2).astype(np.float32) * 0.5 + 0.25
            save(os.path.join(args.out, f"guide_{stem(a_name)}_{stem(b_name)}.png"), row([shown, *images]))
    if "colors" in parts:
        print("\n| structure A : palette P | way | colour distance to P | luminance structure distance to A |\n"
              "|---|---|---|---|")
        for a_name, p_name, a, palette in photo_pairs(args.palettes, args, size, lambda p: p[..., ::-1]):
            rows = colour_ways(params, spec, config, judge, a, palette, keys, (1,) if args.smoke else (1, 10))
            for way, colour, structure, _ in rows:
                print(f"| {os.path.basename(a_name)} : {os.path.basename(p_name)} | {way} | {colour:.4f} | "
                      f"{structure:.4f} |", flush=True)
            stem = lambda n: os.path.splitext(os.path.basename(n))[0]
            save(os.path.join(args.out, f"colors_{stem(a_name)}_{stem(p_name)}.png"), row([r[3] for r in rows]))
    print(f"\npictures in {args.out}; load average {load_average()}")


if __name__ == "__main__":
    main()
