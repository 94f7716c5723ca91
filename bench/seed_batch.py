"""A seed alone against the same seed inside a batch of seeds: how far apart their images drift.

    python bench/seed_batch.py --size 64 --iterations 500 --report 1,10,20,50,100,200,500
    python bench/seed_batch.py --size 64 --coarse_iterations 100,60 --iterations 20 --report 100,160,180

`--seeds=2` and `--seeds=0,1,2` start seed 2 from the same noise (bit for bit), but XLA compiles the
batch of 1 and the batch of 3 as different programs, whose float rounding differs in the backward pass
(~1e-7 of the gradient); L-BFGS amplifies that from iteration to iteration. This prints, at each
reported iteration (counted over all scales), the largest and mean difference of the two images of
the seed in 0-255 units (float, before rounding to 8 bits), and whether they are bit-identical.
"""

import argparse

import jax
import numpy as np

from common import SMOKE_SIZE, add_smoke_arg, add_weights_arg, load_average, load_weights, machine, network
from texsynth_jax import SynthesisConfig, defaults, image_io, make_engine


def images_at(engine, seeds, row, source, steps):
    """{step: float32 [H, W, 3] of batch row `row`} at every step of `steps`."""
    seen = {}

    def on_step(state, step, losses):
        if step in steps:
            seen[step] = np.asarray(jax.device_get(engine.images(state)))[row]

    engine.synthesize(engine.keys(seeds), engine.targets(source), on_step)
    return seen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--coarse_iterations", default="")
    parser.add_argument("--report", default="1,10,20,50,100,200")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--batch", default="0,1,2", help="the batch the seed is also run in")
    add_weights_arg(parser)
    add_smoke_arg(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.iterations, args.coarse_iterations, args.report = SMOKE_SIZE, 2, "", "1,2"
    params, spec = load_weights(args.weights)
    source, _ = image_io.load_image(defaults.DEFAULT_TEXTURE)
    source = np.asarray(jax.image.resize(source, (2 * args.size, 2 * args.size, 3), "linear")).clip(0, 1)
    coarse = tuple(int(n) for n in args.coarse_iterations.split(",") if n)
    config = SynthesisConfig(size=(args.size, args.size), iterations=args.iterations, coarse_iterations=coarse,
                             **network(args))
    steps = {int(n) for n in args.report.split(",")}
    batch = [int(s) for s in args.batch.split(",")]
    alone = images_at(make_engine(params, spec, config, 1), [args.seed], 0, source, steps)
    inside = images_at(make_engine(params, spec, config, len(batch)), batch, batch.index(args.seed), source, steps)
    print(f"{machine()}, backend {jax.default_backend()}, jax {jax.__version__}, load average {load_average()}; seed {args.seed} "
          f"alone vs in seeds {args.batch}, {args.size} px, scales {config.scale_sizes}, iterations "
          f"{config.scale_iterations}\n")
    print("| iteration | max difference (0-255) | mean difference (0-255) | bit-identical |\n|---|---|---|---|")
    for step in sorted(alone):
        d = np.abs(alone[step] - inside[step]) * 255
        print(f"| {step} | {d.max():.3g} | {d.mean():.3g} | {'yes' if d.max() == 0 else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
