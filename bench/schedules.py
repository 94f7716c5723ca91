"""Time to quality: coarse-to-fine schedules against the single-scale run of the paper.

    python bench/schedules.py --size 256 --seeds 2 --reference 300
    python bench/schedules.py --size 1024 --seeds 1 --reference 100 --names pebbles.png \
        --schedules "200,100/30;200,100,40/10"
    python bench/schedules.py --smoke          # seconds: 32 px, 3 iterations against "1/1"

For every texture: the single-scale run (`--reference` iterations, the quality to reach), then each
schedule ("coarse_iterations/iterations": "100,60/60" runs 100 iterations at size/4, 60 at size/2
and 60 at size). Each run is a fresh CoarseToFine, so its wall-clock time includes compiling its
programs, as a user's run does; "first picture" is when the coarsest scale's images exist. The
reference is also judged after a third of its iterations, its picture at about a third of its time.
Quality is the built-in judge's (texsynth_jax.evaluate: AlexNet, which no loss uses): distance to the
source (lower is better), diversity between seeds, copied fraction; and the paper's Gram loss of the
final images at full resolution against the source's (`full loss`). The texture photos are for
benchmarks only: the gallery PNGs under --out hold them and stay out of the repository.
"""

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from common import SMOKE_SIZE, add_source_args, load_average, load_inputs, machine, network, smoke_out, texture_source

DEFAULT_SCHEDULES = "100,60/60;200,100/40;300,100/30"


def parse_schedule(text: str) -> tuple[tuple[int, ...], int]:
    coarse, _, fine = text.partition("/")
    return tuple(int(n) for n in coarse.split(",") if n), int(fine)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--reference", type=int, default=300, help="iterations of the single-scale run")
    parser.add_argument("--schedules", default=DEFAULT_SCHEDULES, help="coarse_iterations/iterations, ';'-separated")
    parser.add_argument("--upsample", default="cubic")
    parser.add_argument("--out", default="/tmp/texsynth_schedules")
    add_source_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.seeds, args.reference, args.schedules = SMOKE_SIZE, 1, 3, "1/1"
    smoke_out(args)

    import jax
    import texsynth_jax as ts
    from texsynth_jax import evaluate

    params, spec, paths = load_inputs(args)
    judge_params = evaluate.load_judge()
    size = (args.size, args.size)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    runs = [("single", (), args.reference)] + [(s, *parse_schedule(s)) for s in args.schedules.split(";")]
    paper = ts.SynthesisConfig(size=size, iterations=1, coarse_iterations=(), **network(args))
    full_loss = jax.jit(jax.vmap(lambda image, targets: ts.texture_loss(image, targets, params, spec, paper),
                                 in_axes=(0, None)))
    os.makedirs(args.out, exist_ok=True)
    print(f"{machine()}; {args.size} px, {args.seeds} seed(s), reference {args.reference} iterations", flush=True)
    rows, results = [], []
    for path in paths:
        name = os.path.basename(path)
        source = texture_source(path)
        reference_targets = ts.CoarseToFine(params, spec, paper, 1).targets(source)[0]
        gallery, reference_s = [source], None
        for label, coarse, fine in runs:
            config = dataclasses.replace(paper, coarse_iterations=coarse, iterations=fine, upsample=args.upsample)
            t0 = time.perf_counter()
            ctf = ts.CoarseToFine(params, spec, config, args.seeds)
            targets = ctf.targets(source)
            state, marks, third = ctf.init(keys, targets), {}, {}
            if label == "single":  # its picture after a third of the iterations, then on to the end
                state, _ = ctf.engines[0].run(state, targets[0], args.reference // 3)
                third["images"] = np.asarray(ctf.images(state))
                third["s"] = time.perf_counter() - t0

            def on_scale(state, scale):
                jax.block_until_ready(state.latent)
                marks[scale] = time.perf_counter() - t0

            state, _ = ctf.run(state, targets, on_scale=on_scale)
            images = ctf.images(state)
            images = np.asarray(images)
            seconds = time.perf_counter() - t0
            reference_s = reference_s or seconds
            judged = [(label, seconds, marks[0], images)]
            if third:
                judged.append((f"single at {args.reference // 3}", third["s"], marks[0], third["images"]))
            for row_label, s, first, ims in judged:
                j = evaluate.judge(judge_params, source, list(ims))
                loss = float(np.mean(full_loss(ims, reference_targets)))
                row = dict(texture=name, setting=row_label, seconds=s, first_picture_s=first,
                           time_ratio=s / reference_s, full_loss=loss, distance=j["distance_mean"],
                           diversity=j["diversity"], copy=j["copy_fraction_max"], load=load_average())
                results.append(row)
                rows.append(f"| {name} | {row_label} | {s:.0f} | {first:.0f} | {s / reference_s:.2f} | {loss:.3g} | "
                            f"{j['distance_mean']:.4f} | {_maybe(j['diversity'])} | {j['copy_fraction_max']:.2f} |")
                print(rows[-1], flush=True)
            gallery.append(images[0])
        _save_gallery(os.path.join(args.out, name), gallery)
    print(f"\n{machine()}; load average {load_average()}")
    print("| texture | setting | wall s | first picture s | time / single | full loss | distance | diversity | copied |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    _summary(results, args.reference)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


def _maybe(x):
    return "n/a" if x is None else f"{x:.3f}"


def _summary(results, reference):
    """Per setting, over textures: geometric means of time and of distance relative to the single run."""
    by = {}
    for r in results:
        by.setdefault(r["texture"], {})[r["setting"]] = r
    settings = list(dict.fromkeys(r["setting"] for r in results))
    print("\n| setting | time / single (geo mean) | distance / single (geo mean) | textures at least as good |")
    print("|---|---|---|---|")
    for s in settings:
        pairs = [(t[s], t["single"]) for t in by.values() if s in t]
        time_ratio = np.exp(np.mean([np.log(a["seconds"] / b["seconds"]) for a, b in pairs]))
        distance = np.exp(np.mean([np.log(a["distance"] / b["distance"]) for a, b in pairs]))
        good = sum(a["distance"] <= b["distance"] for a, b in pairs)
        print(f"| {s} | {time_ratio:.2f} | {distance:.2f} | {good}/{len(pairs)} |")


def _save_gallery(path, images):
    """Source (repeated to the output's size when smaller), then seed 0 of every run, in a row."""
    from PIL import Image

    h, w = images[1].shape[:2]
    source = np.tile(images[0], (-(-h // images[0].shape[0]), -(-w // images[0].shape[1]), 1))[:h, :w]
    row = np.concatenate([source, *images[1:]], axis=1)
    Image.fromarray((np.clip(row, 0, 1) * 255).round().astype(np.uint8)).save(path)


if __name__ == "__main__":
    main()
