"""Which loss makes the best textures? The built-in judge's figures per texture and loss, at equal time.

    python bench/losses.py --size 128 --seeds 2 --budget 80 --out bench/results/losses

Each loss setting (the paper's Gram loss, the new terms, their combinations, and the paper with more
starting noise) gets the same wall-clock time: the time the Gram loss takes for `--budget`
iterations. Per-iteration costs are measured first, side by side on one texture, and each setting
then runs `budget * cost(gram) / cost(setting)` iterations, so the comparison does not depend on
what else loads the machine during the long runs. Every output is judged by
`texsynth_jax.evaluate` (AlexNet, a network no loss term uses): distance to the source (lower is
better), diversity between seeds (higher is better), copied fraction (0 is good). Prints a markdown
table and writes `results.json` and one gallery PNG per texture (source, then seed 0 of each
setting) under --out. The texture photos are for benchmarks only; nothing copies them elsewhere.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from common import add_source_args, cpu_model, load_average, load_inputs  # noqa: E402

# (label, SynthesisConfig overrides). The first is the reference the budget is counted in.
SETTINGS = [
    ("gram (paper)", dict(loss=("gram:1",))),
    ("gram init 0.25", dict(loss=("gram:1",), init_scale=0.25)),
    ("swd", dict(loss=("swd:1",))),
    ("swd fresh", dict(loss=("swd:1",), projections="fresh")),
    ("swd+spectrum", dict(loss=("swd:1", "spectrum:2"))),
    ("gram+swd+spectrum", dict(loss=("gram:1", "swd:0.1", "spectrum:0.3"))),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=80, help="Gram iterations whose time every setting gets")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per setting")
    parser.add_argument("--settings", default="", help="comma-separated labels to run (default: all)")
    parser.add_argument("--out", default="/tmp/texsynth_losses")
    add_source_args(parser)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import texsynth_jax as ts
    from texsynth_jax import evaluate, image_io

    params, spec, paths = load_inputs(args)
    judge_params = evaluate.load_judge()
    settings = [s for s in SETTINGS if not args.settings or s[0] in args.settings.split(",")]
    size = (args.size, args.size)

    def source_of(path):
        image = image_io.load_image(path)[0]
        return np.asarray(jax.image.resize(jnp.asarray(image), (*size, 3), "linear")).clip(0, 1)

    engines = {label: ts.Engine(params, spec, ts.SynthesisConfig(size=size, **over), args.seeds)
               for label, over in settings}
    keys = jax.random.split(jax.random.key(0), args.seeds)

    # Cost per iteration, measured side by side: rounds of 3 iterations per setting in turn, the
    # fastest round of each (compile and first steps excluded), so a load spike does not bias one setting.
    source = source_of(paths[0])
    states, cost = {}, {label: float("inf") for label in engines}
    for label, engine in engines.items():
        targets = engine.targets(source)
        states[label] = (jax.block_until_ready(engine.run(engine.init(keys, targets), targets, 2)[0]), targets)
    for round_ in range(args.rounds):
        for label, engine in engines.items():
            state, targets = states[label]
            start = time.perf_counter()
            state = jax.block_until_ready(engine.run(state, targets, 2 + 3 * (round_ + 1))[0])
            cost[label] = min(cost[label], (time.perf_counter() - start) / 3)
            states[label] = (state, targets)
    del states
    reference = cost[settings[0][0]]
    iterations = {label: max(1, round(args.budget * reference / c)) for label, c in cost.items()}

    os.makedirs(args.out, exist_ok=True)
    print(f"# CPU: {cpu_model()}; load average {load_average()} before the runs; "
          f"{args.size} px, {args.seeds} seeds, each setting the time of {args.budget} Gram iterations", flush=True)
    for label, _ in settings:
        print(f"#   {label}: {cost[label] * 1000:.0f} ms/iteration -> {iterations[label]} iterations")
    results = {}
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        source = source_of(path)
        gallery, results[name] = [source], {}
        for label, engine in engines.items():
            start = time.perf_counter()
            targets = engine.targets(source)
            state, _ = engine.run(engine.init(keys, targets), targets, iterations[label])
            images = np.asarray(engine.images(state))
            seconds = time.perf_counter() - start
            verdict = evaluate.judge(judge_params, source, list(images))
            results[name][label] = {"distance": verdict["distance_mean"], "diversity": verdict["diversity"],
                                    "copy": verdict["copy_fraction_max"], "seconds": seconds,
                                    "iterations": iterations[label]}
            gallery.append(images[0])
            print(f"#   {name} {label}: distance {verdict['distance_mean']:.4g} diversity "
                  f"{verdict['diversity']} copy {verdict['copy_fraction_max']:.3f} ({seconds:.0f} s)", flush=True)
        image_io.save_png(os.path.join(args.out, f"{name}.png"), image_io.contact_sheet(gallery[0], gallery[1:], args.size))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"cpu": cpu_model(), "size": args.size, "seeds": args.seeds, "budget": args.budget,
                   "iterations": iterations, "ms_per_iteration": {k: v * 1000 for k, v in cost.items()},
                   "results": results}, f, indent=1)
    print_table(results, [label for label, _ in settings])


def print_table(results, labels):
    """Distance per texture and setting (ratio to the paper's in brackets), then the summary rows."""
    ref = labels[0]
    print("\n| texture | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for name, row in results.items():
        cells = [f"{row[l]['distance']:.3g}" + ("" if l == ref else f" ({row[l]['distance'] / row[ref]['distance']:.2f}x)")
                 for l in labels]
        print(f"| {name} | " + " | ".join(cells) + " |")
    ratios = {l: np.exp(np.mean([np.log(r[l]["distance"] / r[ref]["distance"]) for r in results.values()])) for l in labels}
    wins = {l: sum(r[l]["distance"] < r[ref]["distance"] for r in results.values()) for l in labels}
    diversity = {l: np.mean([r[l]["diversity"] for r in results.values()]) for l in labels}
    copy = {l: max(r[l]["copy"] for r in results.values()) for l in labels}
    print("| distance / paper (geometric mean) | " + " | ".join(f"{ratios[l]:.2f}x" for l in labels) + " |")
    print(f"| textures better than the paper (of {len(results)}) | " + " | ".join(str(wins[l]) for l in labels) + " |")
    print("| diversity (mean LPIPS between seeds) | " + " | ".join(f"{diversity[l]:.3f}" for l in labels) + " |")
    print("| copied fraction (max) | " + " | ".join(f"{copy[l]:.3f}" for l in labels) + " |")


if __name__ == "__main__":
    main()
