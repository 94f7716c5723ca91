"""The default settings against the paper run to convergence, on photos held out from tuning (issue 28).

    python bench/versus_paper.py --sizes 128,256 --seeds 4 --split checking
    python bench/versus_paper.py --sizes 128 --split held_out --skip_torch
    python bench/versus_paper.py --smoke     # seconds: 32 px, 2 seeds, 2 paper iterations, one photo

For each photo and size, three sets of seeds, each scored by the built-in judge (distance to the source, lower is
better; diversity between the seeds, higher is more varied; the fraction of each output copied from the source):
- "default": SynthesisConfig's defaults (coarse to fine), what `texsynth --size=N` runs;
- "paper": the paper mode (one scale, Gram loss, zero padding, grey start) run to --iterations (300);
- "torch": the reference, a PyTorch implementation of the paper through scipy's L-BFGS-B (pixels bounded to
  [0, 1], from uniform noise, each seed alone; bench/torch_baseline.py), also to --iterations.
Wall-clock seconds leave out texsynth_jax's compilation (a warm-up run first: it is paid once per job). The photo
is shrunk to the output size, so a texture element covers the same share of every output. Prints one row per
set with its ratios to the reference, then per size the geometric means over the photos. The photos are read,
never copied (bench/common.py: the split).
"""

import argparse
import os
import time

import numpy as np

from common import (SMOKE_SIZE, add_weights_arg, add_smoke_arg, load_average, load_weights, machine, network,
                    smoke_texture, split_paths, texture_source, TEXTURES)
from diversity import torch_synthesize


def timed_default(engine, source, keys):
    """(images, seconds) of the default settings, the batch of seeds together, compiled before the clock."""
    import jax

    targets = engine.targets(source)
    jax.block_until_ready(engine.synthesize(keys, targets)[0])  # compiles every scale's programs
    began = time.perf_counter()
    images = np.asarray(engine.synthesize(keys, engine.targets(source))[0])
    return images, time.perf_counter() - began


def timed_paper(engine, source, keys, iterations):
    """(images, seconds) of the paper mode after `iterations`, compiled before the clock."""
    import jax

    targets = engine.targets(source)
    jax.block_until_ready(engine.run(engine.init(keys, targets), targets, 2)[0])
    began = time.perf_counter()
    targets = engine.targets(source)  # timed, as in timed_default
    state, _ = engine.run(engine.init(keys, targets), targets, iterations)
    images = np.asarray(engine.images(state))[:len(keys)]
    return images, time.perf_counter() - began


def geomean(values) -> float:
    return float(np.exp(np.mean(np.log(values))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="128,256,512", help="comma-separated output sides")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=300, help="the paper's and the reference's iterations")
    parser.add_argument("--split", default="checking", choices=("tuning", "checking", "held_out"))
    parser.add_argument("--textures", default=TEXTURES, help="folder of the benchmark photos")
    parser.add_argument("--skip_torch", action="store_true", help="no PyTorch reference: ratios to our paper mode")
    add_weights_arg(parser)
    add_smoke_arg(parser)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    paths = split_paths(args.split, args.textures) if not args.smoke else [smoke_texture()]
    if args.smoke:
        sizes, args.seeds, args.iterations = [SMOKE_SIZE], 2, 2

    import jax
    import texsynth_jax as ts
    from texsynth_jax import evaluate
    from texsynth_jax.config import PAPER_MODE

    params, spec = load_weights(args.weights)
    judge_params = evaluate.load_judge()
    keys = jax.random.split(jax.random.key(0), args.seeds)
    reference = "paper" if args.skip_torch else "torch"
    print(f"{machine()}; load average {load_average()}; split {args.split}, {args.seeds} seeds, paper and "
          f"reference {args.iterations} iterations", flush=True)
    print("\n| photo | size | set | seconds | distance | diversity | copied | distance / ref | diversity / ref "
          "| time / ref |\n|---|---|---|---|---|---|---|---|---|---|")
    ratios = {}  # (size, set) -> [(distance, diversity, time) ratios per photo]
    for size in sizes:
        smoke = network(args)
        # With --smoke one coarse scale of one iteration: 32 px has no room for two.
        schedule = dict(coarse_iterations=(1,), iterations=1) if args.smoke else {}
        default = ts.SynthesisConfig(size=(size, size), **schedule, **smoke)
        paper = ts.SynthesisConfig(**{**PAPER_MODE, **smoke, "size": (size, size), "iterations": args.iterations})
        engines = {"default": ts.make_engine(params, spec, default, args.seeds),
                   "paper": ts.Engine(params, spec, paper, args.seeds)}
        model = None
        if not args.skip_torch:
            from torch_baseline import TorchGatys

            model = TorchGatys(params, spec, paper.layers, paper.layer_weights)
        for path in paths:
            name, source = os.path.basename(path), texture_source(path, (size, size))
            runs = {"default": timed_default(engines["default"], source, keys),
                    "paper": timed_paper(engines["paper"], source, keys, args.iterations)}
            if model is not None:
                runs["torch"] = torch_synthesize(model, source, range(args.seeds), (size, size), [args.iterations],
                                                 "uniform", 0.5)[args.iterations]
            scores = {label: evaluate.judge(judge_params, source, list(images)) for label, (images, _) in runs.items()}
            ref, ref_seconds = scores[reference], runs[reference][1]
            for label, verdict in scores.items():
                seconds = runs[label][1]
                r = (verdict["distance_mean"] / ref["distance_mean"], verdict["diversity"] / ref["diversity"],
                     seconds / ref_seconds)
                ratios.setdefault((size, label), []).append(r)
                print(f"| {name} | {size} | {label} | {seconds:.1f} | {verdict['distance_mean']:.4f} | "
                      f"{verdict['diversity']:.3f} | {max(verdict['copy_fraction']):.2f} | {r[0]:.2f}x | {r[1]:.2f}x | "
                      f"{r[2]:.2f}x |", flush=True)
    print(f"\nGeometric means over {len(paths)} photo(s), against {reference} at {args.iterations} iterations "
          f"({machine()}; load average {load_average()}):\n")
    print("| size | set | distance / ref | diversity / ref | time / ref |\n|---|---|---|---|---|")
    for (size, label), rows in ratios.items():
        print(f"| {size} | {label} | " + " | ".join(f"{geomean(column):.2f}x" for column in zip(*rows)) + " |")


if __name__ == "__main__":
    main()
