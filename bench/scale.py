"""Scale-out figures: throughput against device count and batch, peak memory against output size.

    python bench/scale.py                  # 8 virtual CPU devices, real VGG-16 weights
    python bench/scale.py --quick
    python bench/scale.py --smoke          # seconds: 32 px, the devices this process has (2 in the test)

Throughput is seed-iterations per second of the sharded step (seeds split over a mesh of the
first N devices). On a CPU the "devices" are virtual and share the same cores, so the figure
shows the overhead of sharding, not a speed-up; on a GPU/TPU host each device is real.
Peak memory is XLA's own account of one compiled step (arguments + outputs + temporaries, minus
aliased donations), per device, with and without per-block rematerialisation, for one seed.
"""

import argparse
import os
import platform
import time

import jax
import numpy as np

from common import SMOKE_SIZE, add_smoke_arg, add_weights_arg, cpu_model, load_weights, network
from texsynth_jax import Engine, SynthesisConfig, parallel


def throughput(params, spec, size, devices, batch, steps, network):
    config = SynthesisConfig(size=(size, size), coarse_iterations=(), **network)
    source = np.random.default_rng(0).uniform(size=(size, size, 3)).astype(np.float32)
    engine = Engine(params, spec, config, batch, parallel.make_mesh(parallel.SEEDS, jax.devices()[:devices]))
    targets = engine.targets(source)
    state = engine.init(jax.random.split(jax.random.key(0), batch), targets)
    t0 = time.perf_counter()
    state, loss = engine.step(state, targets)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        state, loss = engine.step(state, targets)
    jax.block_until_ready(loss)
    return batch * steps / (time.perf_counter() - t0), compile_s


def peak_bytes(params, spec, size, remat, network, strips=1):
    """Per-device bytes of one compiled step for one seed, the image split into `strips`."""
    config = SynthesisConfig(size=(size, size), remat=remat, coarse_iterations=(), **network)
    mesh = parallel.make_mesh(parallel.SPACE, jax.devices()[:strips]) if strips > 1 else None
    return Engine(params, spec, config, 1, mesh).step_memory_bytes()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few steps")
    parser.add_argument("--devices", type=int, default=8, help="virtual CPU devices (on a CPU host)")
    add_weights_arg(parser)
    add_smoke_arg(parser)
    args = parser.parse_args(argv)
    try:
        jax.config.update("jax_num_cpu_devices", args.devices)
    except RuntimeError:  # JAX already started in this process (a smoke run beside others): use its devices
        pass
    params, spec = load_weights(args.weights)
    size, steps = (32, 2) if args.quick else (64, 4)
    counts = [n for n in (1, 2, 4, 8) if n <= len(jax.devices())]
    if args.smoke:
        size, steps, counts = SMOKE_SIZE, 1, counts[:2]
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores), {platform.platform()}, jax {jax.__version__}, "
          f"backend {jax.default_backend()}, {len(jax.devices())} devices, {spec.arch}")
    print(f"\n### Throughput, {size} px, seed-iterations/s (higher is better)\n")
    print("| devices | batch | seed-it/s | vs 1 device | compile s |")
    print("|---|---|---|---|---|")
    for batch in (counts[-1],) if args.smoke else (8,) if args.quick else (8, 16):
        base = None
        for devices in counts:
            rate, compile_s = throughput(params, spec, size, devices, batch, steps, network(args))
            base = base or rate
            print(f"| {devices} | {batch} | {rate:.2f} | {rate / base:.2f}x | {compile_s:.1f} |", flush=True)

    sizes = (SMOKE_SIZE, 2 * SMOKE_SIZE) if args.smoke else (64, 128) if args.quick else (128, 256, 512, 1024)
    strips = counts[-1]
    print("\n### Peak memory of one step, one seed (XLA memory analysis)\n")
    print(f"| size | no remat MiB | remat MiB | remat / no remat | {strips} strips, per device MiB |")
    print("|---|---|---|---|---|")
    fits = {}
    for s in sizes:
        plain, remat = (peak_bytes(params, spec, s, r, network(args)) for r in (False, True))
        split = peak_bytes(params, spec, s, False, network(args), strips=strips)
        fits[s] = (plain, remat)
        print(f"| {s} | {plain / 2**20:.0f} | {remat / 2**20:.0f} | {remat / plain:.2f} | "
              f"{split / 2**20:.0f} |", flush=True)
    # Peak memory grows with pixels; fit bytes = a + b * pixels on the largest two sizes.
    (s1, (p1, r1)), (s2, (p2, r2)) = sorted(fits.items())[-2:]
    print("\n### Largest square output per device (one seed, linear fit in pixels)\n")
    print("| device memory | no remat | remat |")
    print("|---|---|---|")
    for gib in (16, 32, 80, 141):
        row = []
        for q1, q2 in ((p1, p2), (r1, r2)):
            b = (q2 - q1) / (s2 * s2 - s1 * s1)
            a = q1 - b * s1 * s1
            row.append(int(np.sqrt(max(gib * 2**30 * 0.9 - a, 0) / b)) // 16 * 16)
        print(f"| {gib} GiB | {row[0]} px | {row[1]} px |")
    print("\n(90% of device memory usable; spatial strips over N devices divide the image part by N.)")


if __name__ == "__main__":
    main()
