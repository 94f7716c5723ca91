"""The paper mode against a PyTorch implementation of the paper, iteration by iteration and second by second.

    python bench/convergence.py --size 256 --seeds 2 --checkpoints 100,200,300 --names pebbles.png,lettuce.png
    python bench/convergence.py --smoke    # seconds: 32 px, checkpoints at 1 and 2 iterations

Both optimise the paper's Gram loss (zero padding, one scale) from their usual starts: texsynth_jax's
L-BFGS on a sigmoid latent from normal noise of std 0.01 around grey, PyTorch through scipy's L-BFGS-B
(history 20, pixels bounded to [0, 1]) from uniform noise over [0, 1], each seed alone. At every
checkpoint the built-in judge scores the iterates: distance to the source (lower is better) and
diversity between seeds (higher is more varied), beside the wall-clock time both took to get there
(texsynth_jax's compilation excluded: it is paid once per job). Prints a markdown table and, per
texture, the distance ratio ours / PyTorch at equal iterations and at equal time (ours at the last
checkpoint it reached within PyTorch's time for its last). The photos are for benchmarks only.
"""

import argparse
import os
import time

import numpy as np

from common import SMOKE_SIZE, add_source_args, load_average, load_inputs, machine, network, texture_source
from diversity import torch_synthesize


def ours(engine, source, keys, checkpoints):
    """{n: (images, seconds)} of texsynth_jax's paper mode, the batch of seeds together."""
    import jax

    targets = engine.targets(source)
    jax.block_until_ready(engine.run(engine.init(keys, targets), targets, 2)[0])  # compile, not timed
    state, began, out = engine.init(keys, targets), time.perf_counter(), {}
    for n in sorted(checkpoints):
        state, _ = engine.run(state, targets, n)
        images = np.asarray(engine.images(state))[:len(keys)]
        out[n] = (images, time.perf_counter() - began)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--checkpoints", default="50,100,150", help="comma-separated iteration counts")
    parser.add_argument("--skip_torch", action="store_true", help="texsynth_jax's paper mode alone (no ratios)")
    add_source_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.seeds, args.checkpoints = SMOKE_SIZE, 2, "1,2"

    import jax
    import torch
    import texsynth_jax as ts
    from texsynth_jax import evaluate
    from torch_baseline import TorchGatys

    torch.set_num_threads(os.cpu_count())
    params, spec, paths = load_inputs(args)
    judge_params = evaluate.load_judge()
    size = (args.size, args.size)
    checkpoints = sorted(int(n) for n in args.checkpoints.split(","))
    config = ts.SynthesisConfig(size=size, iterations=checkpoints[-1], padding="zero", coarse_iterations=(),
                                **network(args))
    engine = ts.Engine(params, spec, config, args.seeds)
    model = TorchGatys(params, spec, config.layers, config.layer_weights)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    print(f"{machine()}; load average {load_average()}; {args.size} px, {args.seeds} seeds, Gram loss, zero padding",
          flush=True)
    print("\n| texture | implementation | iterations | seconds | distance | diversity |\n|---|---|---|---|---|---|")
    summary = []
    for path in paths:
        name = os.path.basename(path)
        source = texture_source(path, size)
        runs = {"texsynth_jax, normal 0.01": ours(engine, source, keys, checkpoints)}
        if not args.skip_torch:
            runs["torch L-BFGS-B, uniform [0, 1]"] = torch_synthesize(model, source, range(args.seeds), size,
                                                                      checkpoints, "uniform", 0.5)
        distance = {}
        for label, snapshots in runs.items():
            for n, (images, seconds) in snapshots.items():
                verdict = evaluate.judge(judge_params, source, list(images))
                distance[label, n] = (verdict["distance_mean"], seconds)
                print(f"| {name} | {label} | {n} | {seconds:.0f} | {verdict['distance_mean']:.4f} | "
                      f"{verdict['diversity']:.3f} |", flush=True)
        if args.skip_torch:
            continue
        (a, b), last = runs, checkpoints[-1]
        in_time = [n for n in checkpoints if distance[a, n][1] <= distance[b, last][1]]
        equal_time = (f"{distance[a, in_time[-1]][0] / distance[b, last][0]:.2f}x (ours at {in_time[-1]})"
                      if in_time else "n/a (ours reached no checkpoint in that time)")
        summary.append(f"| {name} | " + " | ".join(f"{distance[a, n][0] / distance[b, n][0]:.2f}x" for n in checkpoints)
                       + f" | {equal_time} | {distance[a, last][1] / distance[b, last][1]:.2f}x |")
    print(f"\n{machine()}; load average {load_average()}")
    if args.skip_torch:
        return
    print("\n| texture | " + " | ".join(f"distance ours / torch at {n}" for n in checkpoints)
          + f" | at torch's time for {checkpoints[-1]} | time ours / torch for {checkpoints[-1]} |")
    print("|---|" + "---|" * (len(checkpoints) + 2))
    print("\n".join(summary))


if __name__ == "__main__":
    main()
