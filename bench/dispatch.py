"""Iterations per dispatch: one jitted step per host call against a lax.scan of k steps in one program.

    python bench/dispatch.py                       # 64 and 128 px, batch 1 and 4, k = 1 and 5
    python bench/dispatch.py --sizes 64 --batches 1 --repeats 2
    python bench/dispatch.py --smoke               # seconds: 32 px, batch 1, k = 2, one round

The engine's `steps_per_dispatch` (engine.STEPS_PER_DISPATCH, per backend) follows this table. Both
variants run the same iterations on the same engine settings, interleaved in one process (k steps
of one, then k of the other, --repeats times) so load falls on both alike; the figure is seconds per
iteration, medians, with nothing fetched between dispatches. Run it on each backend (a GPU or TPU
host too) and set the default there to the faster.
"""

import argparse
import os
import statistics
import time

import jax
import numpy as np

from common import (SMOKE_SIZE, add_smoke_arg, add_weights_arg, cpu_flags, cpu_model, load_average, load_weights,
                    network)
from texsynth_jax import Engine, SynthesisConfig, defaults, image_io


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=4)
    add_weights_arg(parser)
    add_smoke_arg(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.batches, args.k, args.repeats = str(SMOKE_SIZE), "1", 2, 1
    params, spec = load_weights(args.weights)
    source, _ = image_io.load_image(defaults.DEFAULT_TEXTURE)
    print(f"{cpu_model()} ({cpu_flags()}), {os.cpu_count()} cores, backend {jax.default_backend()}, "
          f"jax {jax.__version__}, load average {load_average()}\n")
    print(f"| size | batch | s / iteration, 1 per dispatch | s / iteration, scan of {args.k} | scan / single | "
          "compile s (single, scan) |")
    print("|---|---|---|---|---|---|")
    for size in [int(s) for s in args.sizes.split(",")]:
        for batch in [int(b) for b in args.batches.split(",")]:
            config = SynthesisConfig(size=(size, size), iterations=100_000, coarse_iterations=(), **network(args))
            keys = jax.random.split(jax.random.key(0), batch)
            runs, compile_s = {}, {}
            for k in (1, args.k):
                engine = Engine(params, spec, config, batch, steps_per_dispatch=k)
                targets = engine.targets(source)
                state = engine.init(keys, targets)
                t0 = time.perf_counter()
                state, losses = engine.run(state, targets, k)
                jax.block_until_ready(losses)
                compile_s[k] = time.perf_counter() - t0
                runs[k] = [engine, targets, state, []]
            for _ in range(args.repeats):
                for k in (1, args.k):
                    engine, targets, state, times = runs[k]
                    done = int(np.max(jax.device_get(state.step)))
                    t0 = time.perf_counter()
                    state, losses = engine.run(state, targets, done + args.k)
                    jax.block_until_ready(losses)
                    times.append((time.perf_counter() - t0) / args.k)
                    runs[k][2] = state
            single, scan = (statistics.median(runs[k][3]) for k in (1, args.k))
            print(f"| {size} | {batch} | {single:.3f} | {scan:.3f} | {scan / single:.2f} | "
                  f"{compile_s[1]:.1f}, {compile_s[args.k]:.1f} |", flush=True)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
