"""Does the fast mode make the same textures? fp32 vs a fast mode (default bf16), per texture.

    python bench/quality.py --textures /work/shared/textures --size 128 --iterations 300 --out /tmp/quality
    python bench/quality.py --smoke        # seconds: 32 px, 2 iterations

For each texture (resized to --size), synthesise from the same seed once in fp32 and once in the
fast mode, then evaluate both final images with the fp32 loss (fp32 targets, fp32 features), so
the comparison does not depend on the fast mode's own rounding. Prints fp32 loss, fast loss and
their ratio per texture, and writes source | fp32 | fast side by side as a PNG per texture, to
look at. The texture photos are for benchmarks only; nothing here copies them anywhere else.
"""

import argparse
import dataclasses
import os
import time

import numpy as np

from common import SMOKE_SIZE, add_source_args, cpu_flags, cpu_model, load_inputs, network, smoke_out, texture_source


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast-precision", default="bf16")
    parser.add_argument("--fast-conv", default="auto")
    parser.add_argument("--out", default="/tmp/texsynth_quality")
    add_source_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.iterations = SMOKE_SIZE, 2
    smoke_out(args)

    import jax
    import jax.numpy as jnp
    import texsynth_jax as ts

    params, spec, paths = load_inputs(args)
    os.makedirs(args.out, exist_ok=True)
    size = (args.size, args.size)
    fp32 = ts.SynthesisConfig(size=size, iterations=args.iterations, precision="fp32", conv="auto",
                              coarse_iterations=(), **network(args))
    fast = dataclasses.replace(fp32, precision=args.fast_precision, conv=args.fast_conv)
    engines = {"fp32": ts.Engine(params, spec, fp32, 1), "fast": ts.Engine(params, spec, fast, 1)}
    evaluate = jax.jit(ts.texture_loss, static_argnums=(3, 4))
    print(f"# CPU: {cpu_model()} ({cpu_flags()}); {args.size} px, {args.iterations} L-BFGS iterations, "
          f"seed {args.seed}; fast mode = {args.fast_precision}/{args.fast_conv}", flush=True)
    print("| texture | fp32 loss | fast loss (evaluated in fp32) | fast / fp32 | fp32 s | fast s |")
    print("|---|---|---|---|---|---|", flush=True)
    from PIL import Image
    keys = jax.random.split(jax.random.key(args.seed), 1)
    for path in paths:
        source = jnp.asarray(texture_source(path, size))
        targets = engines["fp32"].targets(source)
        results = {}
        for name, engine in engines.items():
            t0 = time.perf_counter()
            images, _ = engine.synthesize(keys, engine.targets(source))
            images = jax.block_until_ready(images)
            seconds = time.perf_counter() - t0
            loss = float(evaluate(images[0], targets, engines["fp32"].params, spec, fp32))
            results[name] = (images[0], loss, seconds)
        (img32, l32, s32), (imgf, lf, sf) = results["fp32"], results["fast"]
        stem = os.path.splitext(os.path.basename(path))[0]
        strip = np.concatenate([np.asarray(source), np.asarray(img32), np.asarray(imgf)], axis=1)
        Image.fromarray((np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
            os.path.join(args.out, f"{stem}_{args.size}_src_fp32_fast.png"))
        print(f"| {stem} | {l32:.4g} | {lf:.4g} | {lf / l32:.3f} | {s32:.0f} | {sf:.0f} |", flush=True)


if __name__ == "__main__":
    main()
