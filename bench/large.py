"""Large outputs: memory and time of one L-BFGS step for one seed against the output size, with and without
--remat, a linear model of both, and the largest square output that fits a device.

    python bench/large.py                          # 256 ... 2048 px, about 25 minutes on 2 idle cores
    python bench/large.py --sizes 128,256 --steps 3   # a quick look
    python bench/large.py > bench/results/large.md
    python bench/large.py --smoke                  # seconds: 32 and 48 px, in this process

Every (size, remat) runs alone in a fresh subprocess: the converted VGG-16 (bench/common.py's
weights_path), the default settings at one scale (reflect padding, Gram loss at conv1_1, pool1..pool4, history 20),
target Grams of the shipped 256 px gravel photo, then `--steps` iterations of one seed through
texsynth_jax.Engine. Columns:
  XLA MiB: XLA's account of the compiled step (Engine.step_memory_bytes: arguments + outputs +
    temporaries - donated buffers), the device memory the step needs.
  peak RSS MiB: the subprocess's peak resident memory (ru_maxrss) over all of it: the interpreter,
    JAX and the weights, compiling, the targets, the start and the steps.
  s/it: seconds per iteration, the mean of the iterations after the first (which compiles).
The models are least-squares fits over the sizes run: memory = a + b * pixels (XLA's account, and
RSS), time = c * pixels. The largest square output is the side where the XLA fit reaches 90% of a
device's memory, rounded down to a multiple of 16 (pool4); it is XLA:CPU's account, and another
backend's buffer assignment differs.
"""

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

from common import SMOKE_NETWORK, SMOKE_SIZE, add_smoke_arg, add_weights_arg, cpu_model, load_average, weights_path

DEVICES_GIB = (16, 80, 141)
USABLE = 0.9


def measure(size: int, remat: bool, steps: int, weights: str, network: dict | None = None) -> dict:
    """One seed at size x size: XLA's account, peak RSS and seconds per iteration (run in this process)."""
    import jax

    from texsynth_jax import Engine, SynthesisConfig, defaults, load_image, load_weights

    params, spec, _ = load_weights(weights)
    config = SynthesisConfig(size=(size, size), remat=remat, coarse_iterations=(), **(network or {}))
    engine = Engine(params, spec, config, batch_size=1)
    targets = engine.targets(load_image(defaults.DEFAULT_TEXTURE)[0])
    state = engine.init(engine.keys([0]), targets)
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        state, loss = engine.step(state, targets)
        loss = float(jax.device_get(loss)[0])
        seconds.append(time.perf_counter() - start)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"size": size, "remat": remat, "xla": engine.step_memory_bytes(), "rss": rss,
            "s_per_it": sum(seconds[1:]) / len(seconds[1:]), "first_s": seconds[0], "loss": loss}


def run_alone(size: int, remat: bool, steps: int, weights: str) -> dict:
    """`measure` in a fresh subprocess, so that every peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, "--child", f"{size},{int(remat)},{steps}", "--weights", weights],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"error: {size} px, remat={remat} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["load"] = os.getloadavg()[0]
    return row


def fit_line(xs, ys) -> tuple[float, float]:
    """Least-squares (a, b) of y = a + b x."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def fit_through_origin(xs, ys) -> float:
    """Least-squares c of y = c x."""
    return sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)


def largest_side(a: float, b: float, gib: float) -> int:
    """The largest square side (a multiple of 16) whose a + b * side^2 fits USABLE of `gib`."""
    room = USABLE * gib * 2**30 - a
    return int(math.sqrt(room / b)) // 16 * 16 if room > 0 else 0


def report(rows, steps):
    mib = lambda n: f"{n / 2**20:.0f}"
    by = {(r["size"], r["remat"]): r for r in rows}
    sizes = sorted({r["size"] for r in rows})
    print("| size | pixels | XLA MiB | XLA MiB, remat | remat / plain | peak RSS MiB | peak RSS MiB, remat "
          "| s/it | s/it, remat | remat / plain | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in sizes:
        p, r = by[s, False], by[s, True]
        print(f"| {s} | {s * s} | {mib(p['xla'])} | {mib(r['xla'])} | {r['xla'] / p['xla']:.2f} | {mib(p['rss'])} | "
              f"{mib(r['rss'])} | {p['s_per_it']:.1f} | {r['s_per_it']:.1f} | {r['s_per_it'] / p['s_per_it']:.2f} | "
              f"{p['load']:.1f}, {r['load']:.1f} |")
    print(f"\n(s/it: the mean of {steps - 1} iteration(s) after the first, which compiles; load: the 1-minute "
          "load average after each run, plain then remat.)")
    print("\n### Linear model (least squares over the sizes above; pixels = side^2)\n")
    print("| | memory (XLA) | memory (peak RSS) | time |")
    print("|---|---|---|---|")
    fits = {}
    for remat in (False, True):
        got = [by[s, remat] for s in sizes]
        pixels = [s * s for s in sizes]
        a, b = fit_line(pixels, [r["xla"] for r in got])
        ra, rb = fit_line(pixels, [r["rss"] for r in got])
        c = fit_through_origin(pixels, [r["s_per_it"] for r in got])
        fits[remat] = a, b
        print(f"| {'remat' if remat else 'plain'} | {a / 2**20:.0f} MiB + {b:.0f} B x pixels | "
              f"{ra / 2**20:.0f} MiB + {rb:.0f} B x pixels | {c * 1e6:.1f} s per megapixel |")
    print("\nBytes per pixel between consecutive sizes (XLA's account), against the fitted slope:\n")
    for remat in (False, True):
        got = [by[s, remat] for s in sizes]
        steps_b = [(q["xla"] - p["xla"]) / (q["size"] ** 2 - p["size"] ** 2) for p, q in zip(got, got[1:])]
        worse = steps_b and steps_b[-1] > 1.1 * fits[remat][1]
        print(f"- {'remat' if remat else 'plain'}: {', '.join(f'{x:.0f}' for x in steps_b)} (fit {fits[remat][1]:.0f}): "
              f"memory grows {'faster than' if worse else 'no worse than'} linearly in the pixels")
    print(f"\n### Largest square output of one seed ({USABLE:.0%} of the device's memory, XLA fit)\n")
    print("| device memory | plain | remat |")
    print("|---|---|---|")
    for gib in DEVICES_GIB:
        print(f"| {gib} GiB | {largest_side(*fits[False], gib)} px | {largest_side(*fits[True], gib)} px |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,1024,1536,2048", help="output sides in px")
    parser.add_argument("--steps", type=int, default=2, help="iterations per run, the first one compiling (>= 2)")
    add_weights_arg(parser)
    add_smoke_arg(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    weights = weights_path(args.weights)  # converted once, before the subprocesses
    if args.child:
        size, remat, steps = (int(v) for v in args.child.split(","))
        print(json.dumps(measure(size, bool(remat), steps, weights)))
        return
    if args.smoke:  # in this process: the peak RSS is then the largest so far, not each run's own
        args.sizes, args.steps = f"{SMOKE_SIZE},{SMOKE_SIZE + 16}", 2
    if args.steps < 2:
        sys.exit("error: --steps must be at least 2 (the first one compiles); use --steps=2")
    sizes = [int(s) for s in args.sizes.split(",")]
    if len(sizes) < 2:
        sys.exit("error: the linear model needs at least 2 sizes; pass --sizes=256,512")
    import jax

    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores), {platform.platform()}, jax {jax.__version__}, "
          f"backend {jax.default_backend()}; load average at the start {load_average()}\n")
    started = time.time()
    rows = []
    for size in sizes:
        for remat in (False, True):
            if args.smoke:
                row = measure(size, remat, args.steps, weights, SMOKE_NETWORK)
                rows.append({**row, "load": os.getloadavg()[0]})
            else:
                rows.append(run_alone(size, remat, args.steps, weights))
            print(f"<!-- {size} px remat={remat}: {json.dumps(rows[-1])} -->", file=sys.stderr, flush=True)
    report(rows, args.steps)
    print(f"\n{(time.time() - started) / 60:.0f} min in all; load average at the end {load_average()}.")


if __name__ == "__main__":
    main()
