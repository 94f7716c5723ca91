"""Seeds per second per host for the default run, and what a TPU slice would give, estimated from FLOPs.

    python bench/throughput.py                    # 256 px, batches 1, 4 and 8 (about 10 minutes on 2 cores)
    python bench/throughput.py --smoke            # seconds: 32 px, two shallow layers, batch 1

Measured: for each scale of the default schedule (at 256 px: 100 iterations at 64 px, 60 at 128, 60 at 256; 20
there until 2026-12-06) the median time of one `Engine.step` of the whole batch after warm-up iterations; a seed's
run costs sum(iterations x step time) / batch, so seeds per second = batch / sum(iterations x step time). The
judge and the image files are left out (seconds per source, not per seed).

Estimated, not measured: the FLOPs of one loss-and-gradient evaluation at each scale (XLA's cost analysis
of the compiled program), times the evaluations per iteration measured, summed over the schedule, are the
FLOPs of one seed's run; each TPU chip's published
peak (bfloat16 matrix units: the rate at which TPUs run float32 convolutions at default precision) at an
assumed 30% utilisation gives seeds per second per chip. No TPU has run this program: the column says so.
"""

import argparse
import os
import platform
import statistics
import time

import numpy as np

from common import SMOKE_NETWORK, SMOKE_SIZE, add_smoke_arg, add_weights_arg, cpu_model, load_average, weights_path

# Published peak bf16 dense TFLOP/s per chip (Google Cloud TPU documentation, 2024-2025).
TPU_PEAK_TFLOPS = {"v4": 275, "v5e": 197, "v5p": 459, "v6e (Trillium)": 918}
UTILISATION = 0.3  # assumed: convolution networks of this size reach 30-50% of peak on TPUs


def measure(params, spec, config, batch: int, repeats: int, warmup: int) -> list[dict]:
    """Per scale of `config`'s schedule: size, iterations, median step seconds, loss evaluations per seed and
    iteration (line-search trials included), and XLA's FLOPs of one evaluation (loss and gradient, one seed)."""
    import dataclasses

    import jax

    from texsynth_jax import engine as engine_lib, synthesis

    rows = []
    iterations = (*config.coarse_iterations, config.iterations)
    for size, its in zip(config.scale_sizes, iterations):
        one = dataclasses.replace(config, size=size, coarse_iterations=(), iterations=its)
        e = engine_lib.Engine(params, spec, one, batch)
        source = np.random.default_rng(0).uniform(size=(*size, 3)).astype(np.float32)
        targets = e.targets(source)
        state = e.init(e.keys(list(range(batch))), targets)
        # The step's own cost analysis would count its line-search loop once whether it runs or not: count
        # one evaluation's FLOPs instead, times the evaluations the steps made.
        value_and_grad = jax.jit(jax.value_and_grad(synthesis.texture_loss), static_argnums=(3, 4))
        image = jax.ShapeDtypeStruct((*size, 3), np.float32)
        cost = value_and_grad.lower(image, targets, e.params, spec,
                                    engine_lib.program_config(one)).compile().cost_analysis()
        flops = (cost[0] if isinstance(cost, list) else cost).get("flops", float("nan"))
        for _ in range(warmup):
            state, loss = e.step(state, targets)
        jax.block_until_ready(loss)
        evals0, times = np.asarray(jax.device_get(synthesis.evaluations(state, one))), []  # the state is donated
        for _ in range(repeats):
            t0 = time.perf_counter()
            state, loss = e.step(state, targets)
            jax.block_until_ready(loss)
            times.append(time.perf_counter() - t0)
        evals = float(np.mean(np.asarray(jax.device_get(synthesis.evaluations(state, one))) - evals0)) / repeats
        rows.append({"size": size[0], "iterations": its, "step_s": statistics.median(times), "evals": evals,
                     "flops": flops})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="output side in px (the default schedule's scales)")
    parser.add_argument("--batches", default="1,4,8", help="seeds per batch, comma separated")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per scale")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per scale first")
    add_weights_arg(parser)
    add_smoke_arg(parser)
    args = parser.parse_args(argv)
    settings = {}  # the defaults: the recommended schedule and network
    if args.smoke:
        args.size, args.batches, args.repeats, args.warmup = SMOKE_SIZE, "1", 1, 1
        settings = dict(coarse_iterations=(2,), iterations=1, **SMOKE_NETWORK)

    import jax

    from texsynth_jax import SynthesisConfig, load_weights

    params, spec, _ = load_weights(weights_path(args.weights))
    config = SynthesisConfig(size=(args.size, args.size), **settings)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores), {platform.platform()}, jax {jax.__version__}, backend "
          f"{jax.default_backend()}; load average at the start {load_average()}\n")
    schedule = ", ".join(f"{n} at {s[0]} px" for s, n in zip(config.scale_sizes,
                                                              (*config.coarse_iterations, config.iterations)))
    print(f"### Seeds per second per host, default run at {args.size} px ({schedule}; judge and files left out)\n")
    print("| seeds per batch | step s at each scale | s per seed | seeds/s (this host) | GFLOP per seed's run |")
    print("|---|---|---|---|---|")
    flops_per_seed = None
    for batch in (int(b) for b in args.batches.split(",")):
        rows = measure(params, spec, config, batch, args.repeats, args.warmup)
        seconds = sum(r["iterations"] * r["step_s"] for r in rows)
        flops_per_seed = sum(r["iterations"] * r["evals"] * r["flops"] for r in rows)
        steps = ", ".join(f"{r['step_s']:.2f}" for r in rows)
        print(f"| {batch} | {steps} | {seconds / batch:.1f} | {batch / seconds:.4f} | {flops_per_seed / 1e9:.0f} |",
              flush=True)
    print(f"\n(load average at the end {load_average()})")
    print(f"\n### Estimated, not measured: seeds per second per TPU chip ({UTILISATION:.0%} of the published bf16 peak, "
          f"{flops_per_seed / 1e9:.0f} GFLOP per seed from XLA's cost analysis)\n")
    print("| chip | peak TFLOP/s | seeds/s per chip (estimate) | a 256-chip slice, seeds/hour (estimate) |")
    print("|---|---|---|---|")
    for chip, peak in TPU_PEAK_TFLOPS.items():
        rate = peak * 1e12 * UTILISATION / flops_per_seed
        print(f"| {chip} | {peak} | {rate:.1f} | {rate * 256 * 3600:,.0f} |")


if __name__ == "__main__":
    main()
