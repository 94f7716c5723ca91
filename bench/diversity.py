"""Why are the paper mode's seeds less diverse than a PyTorch implementation's? Starting noise against optimiser.

    python bench/diversity.py --size 128 --seeds 3 --iterations 150 --names pebbles.png,lace.png,veins.png
    python bench/diversity.py --smoke      # seconds: 32 px, 2 iterations, ours and PyTorch from uniform noise

Every setting runs the paper's Gram loss (zero padding, single scale, as PyTorch pads) for the same
number of iterations from the same seeds, and the built-in judge scores the outputs: diversity (mean
LPIPS between every pair of seeds; higher is more varied), distance to the source (lower is better).
The settings separate the two suspects, the start and the optimisation:

- texsynth_jax's L-BFGS on a sigmoid latent, from normal noise of std 0.01 around grey (the paper's
  almost flat start, the old default), from uniform noise over [0, 1], and from uniform noise over
  [0.25, 0.75];
- PyTorch with scipy's L-BFGS-B (history 20, pixels bounded to [0, 1], tolerances 0), the usual
  PyTorch implementation of the paper, from uniform noise over [0, 1] and from the same almost flat
  start.

The texture photos are for benchmarks only; the gallery PNGs under --out hold them and stay out of
the repository.
"""

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from common import (SMOKE_SIZE, add_source_args, load_average, load_inputs, machine, network, smoke_out,
                    texture_source)

# (label, framework, init, init_scale)
SETTINGS = [
    ("ours, normal 0.01", "jax", "normal", 0.01),
    ("ours, uniform [0, 1]", "jax", "uniform", 0.5),
    ("ours, uniform [0.25, 0.75]", "jax", "uniform", 0.25),
    ("torch L-BFGS-B, uniform [0, 1]", "torch", "uniform", 0.5),
    ("torch L-BFGS-B, normal 0.01", "torch", "normal", 0.01),
]


def torch_synthesize(model, source, seeds, size, checkpoints, init, scale):
    """The PyTorch implementation of the paper: each seed alone through scipy's L-BFGS-B, pixels in [0, 1].

    Returns {n: (images [len(seeds), H, W, 3], seconds)} for each n in `checkpoints` (iterations done,
    ascending): the iterates after n iterations, and the time all seeds took to get there."""
    import scipy.optimize
    import torch

    checkpoints = sorted(checkpoints)
    model.set_targets(torch.from_numpy(np.ascontiguousarray(source.transpose(2, 0, 1))))
    shape = (1, 3, *size)
    images = {n: [] for n in checkpoints}
    seconds = dict.fromkeys(checkpoints, 0.0)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        start = (0.5 + scale * (rng.uniform(-1, 1, shape) if init == "uniform" else rng.standard_normal(shape)))
        start = np.clip(start, 0, 1).astype(np.float64).ravel()
        done, began = [0], time.perf_counter()

        def value_and_grad(x):
            loss, grad = model.loss_and_grad(torch.from_numpy(x.reshape(shape).astype(np.float32)))
            return float(loss), grad.numpy().astype(np.float64).ravel()

        def snapshot(x):  # after each iteration
            done[0] += 1
            if done[0] in images:
                seconds[done[0]] += time.perf_counter() - began
                images[done[0]].append(x.reshape(shape)[0].transpose(1, 2, 0).astype(np.float32))

        scipy.optimize.minimize(value_and_grad, start, jac=True, method="L-BFGS-B", bounds=[(0, 1)] * start.size,
                                callback=snapshot, options=dict(maxiter=checkpoints[-1], maxcor=20, ftol=0, gtol=0,
                                                                maxfun=10 * checkpoints[-1]))
        if done[0] < checkpoints[-1]:
            raise RuntimeError(f"L-BFGS-B stopped after {done[0]} of {checkpoints[-1]} iterations")
    return {n: (np.stack(images[n]), seconds[n]) for n in checkpoints}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--settings", default="", help="';'-separated labels to run (default: all)")
    parser.add_argument("--out", default="/tmp/texsynth_diversity")
    add_source_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.seeds, args.iterations = SMOKE_SIZE, 2, 2
        args.settings = "ours, uniform [0, 1];torch L-BFGS-B, uniform [0, 1]"
    smoke_out(args)

    import jax
    import torch
    import texsynth_jax as ts
    from texsynth_jax import evaluate, image_io
    from torch_baseline import TorchGatys

    torch.set_num_threads(os.cpu_count())
    params, spec, paths = load_inputs(args)
    judge_params = evaluate.load_judge()
    size = (args.size, args.size)
    settings = [s for s in SETTINGS if not args.settings or s[0] in args.settings.split(";")]
    base = ts.SynthesisConfig(size=size, iterations=args.iterations, padding="zero", coarse_iterations=(),
                              **network(args))
    model = TorchGatys(params, spec, base.layers, base.layer_weights)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    os.makedirs(args.out, exist_ok=True)
    print(f"{machine()}; load average {load_average()}; {args.size} px, {args.seeds} seeds, "
          f"{args.iterations} iterations, Gram loss, zero padding", flush=True)
    results = []
    for path in paths:
        name = os.path.basename(path)
        source = texture_source(path, size)
        gallery = [source]
        for label, framework, init, scale in settings:
            start = time.perf_counter()
            if framework == "jax":
                config = dataclasses.replace(base, init=init, init_scale=scale)
                engine = ts.Engine(params, spec, config, args.seeds)
                images, _ = engine.synthesize(keys, engine.targets(source))
                images = np.asarray(images)
            else:
                images, _ = torch_synthesize(model, source, range(args.seeds), size, [args.iterations], init,
                                             scale)[args.iterations]
            seconds = time.perf_counter() - start
            verdict = evaluate.judge(judge_params, source, list(images))
            results.append(dict(texture=name, setting=label, diversity=verdict["diversity"],
                                distance=verdict["distance_mean"], copy=verdict["copy_fraction_max"], seconds=seconds))
            print(f"| {name} | {label} | {verdict['diversity']:.3f} | {verdict['distance_mean']:.4f} | "
                  f"{verdict['copy_fraction_max']:.2f} | {seconds:.0f} |", flush=True)
            gallery += list(images[:2])
        image_io.save_png(os.path.join(args.out, name), image_io.contact_sheet(gallery[0], gallery[1:], args.size))
    print(f"\n{machine()}; load average {load_average()}")
    print("| setting | diversity (mean over textures) | distance (geometric mean) | diversity / torch uniform |")
    print("|---|---|---|---|")
    labels = list(dict.fromkeys(r["setting"] for r in results))
    mean = {l: np.mean([r["diversity"] for r in results if r["setting"] == l]) for l in labels}
    reference = mean.get("torch L-BFGS-B, uniform [0, 1]")
    for l in labels:
        distance = np.exp(np.mean([np.log(r["distance"]) for r in results if r["setting"] == l]))
        ratio = f"{mean[l] / reference:.2f}" if reference else "n/a"
        print(f"| {l} | {mean[l]:.3f} | {distance:.4f} | {ratio} |")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
