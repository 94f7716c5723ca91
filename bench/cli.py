"""The host's share of a CLI iteration: run.py against the bare engine, per iteration, in fresh processes.

    python bench/cli.py --size 256 --short 5 --long 35 --rounds 2

Times whole processes, as a user sees them: `python run.py` (one seed, nothing logged, saved or judged
in between: --log_every and --save_every past the end, --judge=false) and a minimal script that loads
the same weights and runs `Engine.run` with no callback. Each runs `--short` and `--long` iterations;
(t[long] - t[short]) / (long - short) is the cost of one iteration with start-up, compilation and the
final writes cancelled out. Rounds interleave the four runs; the fastest of each is kept. The gap
between the two columns is what the CLI adds per iteration (progress, stop checks, the callback).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import ROOT, load_average, machine, weights_path  # noqa: E402

ENGINE = """
import sys, jax, numpy as np
import texsynth_jax as ts
from texsynth_jax import image_io
params, spec, _ = ts.load_weights(sys.argv[1])
config = ts.SynthesisConfig(size=(int(sys.argv[3]), int(sys.argv[3])), iterations=int(sys.argv[4]))
engine = ts.Engine(params, spec, config, 1)
targets = engine.targets(image_io.load_image(sys.argv[2])[0])
state, _ = engine.run(engine.init(jax.random.split(jax.random.key(0), 1), targets), targets, config.iterations)
image_io.save_png(sys.argv[5], np.asarray(engine.images(state))[0])
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--short", type=int, default=5)
    parser.add_argument("--long", type=int, default=35)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()

    from texsynth_jax.defaults import DEFAULT_TEXTURE

    weights = weights_path(args.weights)
    out = tempfile.mkdtemp(prefix="texsynth_cli_")

    def cli(n):
        return [sys.executable, os.path.join(ROOT, "run.py"), f"--input={DEFAULT_TEXTURE}", f"--weights={weights}",
                f"--size={args.size}", "--seeds=1", f"--iterations={n}", "--coarse_iterations=", "--judge=false",
                f"--log_every={n + 1}", "--save_every=0", "--checkpoint_every=0", "--mesh=none", "--overwrite",
                f"--output_dir={out}"]

    def engine(n):
        return [sys.executable, "-c", ENGINE, weights, DEFAULT_TEXTURE, str(args.size), str(n),
                os.path.join(out, "engine.png")]

    best = {}
    env = dict(os.environ, PYTHONPATH=ROOT)
    for _ in range(args.rounds):
        for kind, command in (("run.py", cli), ("engine", engine)):
            for n in (args.short, args.long):
                start = time.perf_counter()
                subprocess.run(command(n), check=True, capture_output=True, env=env, cwd=ROOT)
                best[kind, n] = min(best.get((kind, n), float("inf")), time.perf_counter() - start)
    print(f"{machine()}; load average {load_average()}; {args.size} px, 1 seed, default settings, one scale")
    print("| | whole process, short (s) | whole process, long (s) | per iteration (ms) |")
    print("|---|---|---|---|")
    per = {}
    for kind in ("run.py", "engine"):
        per[kind] = (best[kind, args.long] - best[kind, args.short]) / (args.long - args.short)
        print(f"| {kind} | {best[kind, args.short]:.1f} ({args.short} it) | {best[kind, args.long]:.1f} "
              f"({args.long} it) | {per[kind] * 1000:.0f} |")
    print(f"\nrun.py / engine per iteration: {per['run.py'] / per['engine']:.3f}")


if __name__ == "__main__":
    main()
