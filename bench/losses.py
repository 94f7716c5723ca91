"""Which loss makes the best textures? The built-in judge's figures per texture and setting, at equal time.

    python bench/losses.py --size 256 --seeds 4 --budget 40 --out /tmp/texsynth_losses \
        --settings "gram (paper),gram c2f,gram+spectrum c2f"
    python bench/losses.py --smoke     # seconds: 32 px, the paper and "gram c2f" (1 coarse iteration)

Each setting (a loss, with or without coarse-to-fine scales) gets the same wall-clock time: that of
`--budget` iterations of the paper's setting (Gram loss, zero padding, one scale). Per-iteration costs
of every setting at every scale are measured first, side by side on one texture; a single-scale
setting then runs `budget * cost(paper) / cost(setting)` iterations, and a coarse-to-fine one runs its
fixed coarse iterations and gives the rest of the time to the last scale. So the comparison does not
depend on what else loads the machine during the long runs. Every output is judged by
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

import numpy as np

from common import (SMOKE_SIZE, add_source_args, cpu_model, load_average, load_inputs, network, smoke_out,
                    texture_source)

PAPER = dict(loss=("gram:1",), padding="zero", coarse_iterations=())
C2F = dict(coarse_iterations=(100, 60))  # the default scales: 100 iterations at size/4, 60 at size/2
ONE_SCALE = dict(coarse_iterations=())
# (label, SynthesisConfig overrides). The first is the reference the budget is counted in.
SETTINGS = [
    ("gram (paper)", PAPER),
    ("gram init 0.25", dict(PAPER, init_scale=0.25)),
    ("gram uniform", dict(PAPER, init="uniform", init_scale=0.5)),
    ("swd", dict(ONE_SCALE, loss=("swd:1",))),
    ("swd fresh", dict(ONE_SCALE, loss=("swd:1",), projections="fresh")),
    ("swd+spectrum", dict(ONE_SCALE, loss=("swd:1", "spectrum:2"))),
    ("gram+swd+spectrum", dict(ONE_SCALE, loss=("gram:1", "swd:0.1", "spectrum:0.3"))),
    ("gram c2f", dict(C2F, loss=("gram:1",))),
    ("gram+spectrum c2f", dict(C2F, loss=("gram:1", "spectrum:0.3"))),
    ("gram+hist c2f", dict(C2F, loss=("gram:1", "hist:0.1"))),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=80, help="paper iterations whose time every setting gets")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per setting")
    parser.add_argument("--settings", default="", help="comma-separated labels to run (default: all)")
    parser.add_argument("--out", default="/tmp/texsynth_losses")
    add_source_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.seeds, args.budget, args.rounds, args.settings = SMOKE_SIZE, 2, 3, 1, "gram (paper),gram c2f"
    smoke_out(args)

    import jax
    import texsynth_jax as ts
    from texsynth_jax import evaluate, image_io

    params, spec, paths = load_inputs(args)
    judge_params = evaluate.load_judge()
    chosen = args.settings.split(",") if args.settings else [label for label, _ in SETTINGS]
    settings = [s for s in SETTINGS if s[0] in chosen]
    if settings[0][0] != SETTINGS[0][0]:
        sys.exit(f"error: --settings must include {SETTINGS[0][0]!r}, the reference of the budget")
    size = (args.size, args.size)
    if args.smoke:  # one coarse scale of one iteration: 32 px has no room for two
        settings = [(label, {**over, "coarse_iterations": (1,)} if over.get("coarse_iterations") else over)
                    for label, over in settings]
    runs = {label: ts.CoarseToFine(params, spec, ts.SynthesisConfig(size=size, **over, **network(args)), args.seeds)
            for label, over in settings}
    keys = jax.random.split(jax.random.key(0), args.seeds)

    # Cost per iteration of every scale, measured side by side: rounds of 3 iterations per engine in
    # turn, the fastest round of each (compile and first steps excluded), so a load spike biases none.
    source = texture_source(paths[0], size)
    engines = [(label, k, e) for label, run in runs.items() for k, e in enumerate(run.engines)]
    states, cost = {}, {}
    for label, k, engine in engines:
        targets = runs[label].targets(source)[k]
        states[label, k] = (jax.block_until_ready(engine.run(engine.init(keys, targets), targets, 2)[0]), targets)
        cost[label, k] = float("inf")
    for round_ in range(args.rounds):
        for label, k, engine in engines:
            state, targets = states[label, k]
            start = time.perf_counter()
            state = jax.block_until_ready(engine.run(state, targets, 2 + 3 * (round_ + 1))[0])
            cost[label, k] = min(cost[label, k], (time.perf_counter() - start) / 3)
            states[label, k] = (state, targets)
    del states
    budget_s = args.budget * cost[settings[0][0], 0]
    schedule = {}  # label -> iterations per scale
    for label, run in runs.items():
        coarse = list(run.config.coarse_iterations)
        rest = budget_s - sum(n * cost[label, k] for k, n in enumerate(coarse))
        schedule[label] = coarse + [max(1, round(rest / cost[label, len(coarse)]))]
        if rest < cost[label, len(coarse)]:
            print(f"# warning: {label}'s coarse scales alone take the whole budget; raise --budget", flush=True)

    os.makedirs(args.out, exist_ok=True)
    print(f"# CPU: {cpu_model()}; load average {load_average()} before the runs; "
          f"{args.size} px, {args.seeds} seeds, each setting the time of {args.budget} paper iterations "
          f"({budget_s:.0f} s)", flush=True)
    for label, run in runs.items():
        costs = ", ".join(f"{cost[label, k] * 1000:.0f}" for k in range(len(run.engines)))
        print(f"#   {label}: {costs} ms/iteration per scale -> {schedule[label]} iterations")
    results = {}
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        source = texture_source(path, size)
        gallery, results[name] = [source], {}
        for label, run in runs.items():
            start = time.perf_counter()
            targets = run.targets(source)
            state = run.init(keys, targets)
            for k, (engine, n) in enumerate(zip(run.engines, schedule[label])):
                state = state if k == 0 else engine.restart(state, targets[k])
                state, _ = engine.run(state, targets[k], n)
            images = np.asarray(run.images(state))
            seconds = time.perf_counter() - start
            verdict = evaluate.judge(judge_params, source, list(images))
            results[name][label] = {"distance": verdict["distance_mean"], "diversity": verdict["diversity"],
                                    "copy": verdict["copy_fraction_max"], "seconds": seconds,
                                    "iterations": schedule[label]}
            gallery.append(images[0])
            print(f"#   {name} {label}: distance {verdict['distance_mean']:.4g} diversity "
                  f"{verdict['diversity']} copy {verdict['copy_fraction_max']:.3f} ({seconds:.0f} s)", flush=True)
        image_io.save_png(os.path.join(args.out, f"{name}.png"), image_io.contact_sheet(gallery[0], gallery[1:], args.size))
        with open(os.path.join(args.out, "results.json"), "w") as f:  # after each texture: a long run keeps its part
            json.dump({"cpu": cpu_model(), "size": args.size, "seeds": args.seeds, "budget": args.budget,
                       "iterations": schedule, "ms_per_iteration": {f"{l} scale {k}": v * 1000 for (l, k), v in cost.items()},
                       "results": results}, f, indent=1)
    print(f"\n# load average {load_average()} after the runs")
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
