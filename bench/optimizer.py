"""optax.lbfgs (backtracking line search) against texsynth_jax's own L-BFGS, on the real problem.

    python bench/optimizer.py                       # 256 px, VGG-16, 4 seeds, 300 iterations (~35 min on 2 cores)
    python bench/optimizer.py --size 64 --iterations 30 --seeds 2     # a short look
    python bench/optimizer.py --smoke               # seconds: 32 px, 1 seed, 3 iterations

Both start from the same noise (same keys) on the same targets, and run interleaved in one process,
`--chunk` iterations of one, then of the other, so that load on the machine falls on both alike.
Prints, per optimiser: seconds per iteration (median of chunks), loss evaluations per iteration,
the final loss per seed, and the iteration at which each reaches the other's final loss.
"""

import argparse
import json
import os
import statistics
import time

import jax
import numpy as np

from common import (SMOKE_SIZE, add_smoke_arg, add_weights_arg, cpu_flags, cpu_model, load_average, load_weights,
                    network)
from texsynth_jax import Engine, SynthesisConfig, defaults, image_io, synthesis


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--input", default=defaults.DEFAULT_TEXTURE)
    add_weights_arg(parser)
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    add_smoke_arg(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.seeds, args.iterations, args.chunk = SMOKE_SIZE, 1, 3, 1

    params, spec = load_weights(args.weights)
    source, _ = image_io.load_image(args.input)
    names = ("optax", "lbfgs")
    engines, states, losses, seconds, evals = {}, {}, {}, {}, {}
    keys = jax.random.split(jax.random.key(0), args.seeds)
    for name in names:
        config = SynthesisConfig(size=(args.size, args.size), iterations=args.iterations, optimizer=name,
                                 coarse_iterations=(), **network(args))
        engine = Engine(params, spec, config, args.seeds)
        targets = engine.targets(source)
        engines[name] = (engine, targets)
        states[name] = jax.block_until_ready(engine.init(keys, targets))
        losses[name], seconds[name], evals[name] = [], [], []
        t0 = time.perf_counter()  # compile + one iteration, untimed in the table
        states[name], loss = engine.step(states[name], targets)
        losses[name].append(np.asarray(loss))
        print(f"{name}: compile + first iteration {time.perf_counter() - t0:.1f}s", flush=True)

    done = 1
    while done < args.iterations:
        n = min(args.chunk, args.iterations - done)
        for name in names:
            engine, targets = engines[name]
            before = float(np.mean(np.asarray(synthesis.evaluations(states[name], engine.config))))
            t0 = time.perf_counter()
            chunk = []
            for _ in range(n):
                states[name], loss = engine.step(states[name], targets)
                chunk.append(loss)
            chunk = jax.device_get(chunk)
            seconds[name].append((time.perf_counter() - t0) / n)
            losses[name] += [np.asarray(l) for l in chunk]
            after = np.asarray(synthesis.evaluations(states[name], engine.config))
            evals[name].append((after.mean() - before) / n)
        done += n
        print(f"iteration {done}: " + "  ".join(
            f"{name} {np.mean(losses[name][-1]):.4g} ({seconds[name][-1]:.2f}s/it, {evals[name][-1]:.2f} evals/it)"
            for name in names), flush=True)

    curves = {name: np.stack(losses[name], axis=1) for name in names}  # [seeds, iterations]
    total_evals = {name: np.asarray(synthesis.evaluations(states[name], engines[name][0].config))
                   for name in names}
    print(f"\n{cpu_model()} ({cpu_flags()}), {os.cpu_count()} cores, load average "
          f"{load_average()}; jax {jax.__version__}, backend {jax.default_backend()}")
    print(f"{args.size} px, {args.seeds} seeds, {args.iterations} iterations, interleaved in chunks of {args.chunk}\n")
    print("| optimiser | s / iteration (median) | evaluations / iteration | final loss per seed | "
          "final loss mean | iterations to reach the other's final loss (per seed) |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for name in names:
        other = curves[names[1 - names.index(name)]][:, -1]
        reach = [int(np.argmax(c <= o)) + 1 if np.any(c <= o) else None for c, o in zip(curves[name], other)]
        rows[name] = {"s_per_iteration": statistics.median(seconds[name]),
                      "evals_per_iteration": float((total_evals[name].mean() - 1) / args.iterations),
                      "final_loss": curves[name][:, -1].tolist(), "reach_other": reach}
        r = rows[name]
        print(f"| {name} | {r['s_per_iteration']:.3f} | {r['evals_per_iteration']:.2f} | "
              f"{' '.join(f'{x:.4g}' for x in r['final_loss'])} | {np.mean(r['final_loss']):.4g} | "
              f"{', '.join('-' if x is None else str(x) for x in reach)} |")
    ratio = rows["optax"]["s_per_iteration"] / rows["lbfgs"]["s_per_iteration"]
    loss_ratio = np.mean(rows["optax"]["final_loss"]) / np.mean(rows["lbfgs"]["final_loss"])
    print(f"\noptax / lbfgs: time per iteration {ratio:.3f}, mean final loss {loss_ratio:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "curves": {k: v.tolist() for k, v in curves.items()},
                       "cpu": cpu_model(), "load": os.getloadavg()}, f)


if __name__ == "__main__":
    main()
