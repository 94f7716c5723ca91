"""The default settings against the paper run to convergence, on photos held out from tuning (issue 28).

    python bench/versus_paper.py --sizes 128,256 --seeds 4 --split checking
    python bench/versus_paper.py --sizes 128 --split held_out --skip_torch
    python bench/versus_paper.py --split tuning --sizes 128 --sets default,torch --cache /tmp/vp_cache \
        --candidate "last60=iterations=60" --candidate "single=coarse_iterations=;iterations=100"
    python bench/versus_paper.py --smoke     # seconds: 32 px, 2 seeds, 2 paper iterations, one photo

For each photo and size, three sets of seeds, each scored by the built-in judge (distance to the source, lower is
better; diversity between the seeds, higher is more varied; the fraction of each output copied from the source)
and by how much of the source's layout the seeds keep (`layout`: 1 for the source itself, about 0 for a texture
that ignores it; the judge's distance rewards some of it, docs/quality.md):
- "default": SynthesisConfig's defaults (coarse to fine), what `texsynth --size=N` runs;
- "paper": the paper mode (one scale, Gram loss, zero padding, grey start) run to --iterations (300);
- "torch": the reference, a PyTorch implementation of the paper through scipy's L-BFGS-B (pixels bounded to
  [0, 1], from uniform noise, each seed alone; bench/torch_baseline.py), also to --iterations;
- "moved": no synthesis, the source's own pixels circularly shifted (a shift per seed, 1/8 to 7/8 of the side, the
  same every run): the texture exactly, laid out anew, with two wrap seams. What an output with a layout of its own
  can hope for; at 128 px it is no nearer than the reference (docs/quality.md). Its copied figure is that of a copy;
- each --candidate NAME=SETTINGS: the default with SETTINGS ("field=value;field=value", SynthesisConfig's
  fields as the flags spell them) changed, to tune on the tuning photos.
--cache keeps the reference's images and seconds per photo, size, seeds and iterations (they do not change with
our settings; the machine that timed them is printed); --against FILE instead takes the reference's rows from the
output of an earlier run (its "torch" rows of as many --seeds, e.g. bench/results/), so our sets can be rerun against it
alone. --out writes a picture per photo and size: the source, then a row of seeds per set; --names runs some photos of
the split.
Wall-clock seconds leave out texsynth_jax's compilation (a warm-up run first: it is paid once per job). The photo
is shrunk to the output size, so a texture element covers the same share of every output (above 256 px from its
512 px copy where shared/textures has one). Prints one row per set with its ratios to the reference, then per
size the geometric means over the photos. The photos are read, never copied (bench/common.py: the split).
"""

import argparse
import dataclasses
import os
import re
import sys
import time

import numpy as np

from common import (SMOKE_SIZE, add_weights_arg, add_smoke_arg, load_average, load_weights, machine, network,
                    smoke_texture, split_paths, texture_source, TEXTURES)
from diversity import torch_synthesize

SETS = ("default", "paper", "torch", "moved")


def timed_default(engine, source, keys):
    """(images, seconds) of coarse-to-fine settings, the batch of seeds together, compiled before the clock:
    the first time an engine is used, each scale runs a dispatch and a step (its programs compile on first use;
    they do not depend on the iteration count)."""
    import jax
    from texsynth_jax import colors

    if not getattr(engine, "warm", False):
        targets = engine.targets(source)
        scales, per_scale = (engine.engines, targets) if hasattr(engine, "engines") else ([engine], [targets])
        state = engine.init(keys, targets)
        for k, (scale, scale_targets) in enumerate(zip(scales, per_scale)):
            state = scale.restart(state, scale_targets) if k else state
            state, _ = scale.run(state, scale_targets, scale.steps_per_dispatch + 1)
        jax.block_until_ready(engine.images(state))
        engine.warm = True
    began = time.perf_counter()
    images = np.asarray(engine.synthesize(keys, engine.targets(source))[0])
    if engine.config.colors == "content":
        sys.exit("error: colors=content needs a --content photo, which this benchmark has none of")
    images = colors.finish(images, engine.config, source)  # the job layer's colour step, timed with the rest
    return images, time.perf_counter() - began


def timed_paper(engine, source, keys, iterations):
    """(images, seconds) of the paper mode after `iterations`, compiled before the clock."""
    import jax

    targets = engine.targets(source)
    jax.block_until_ready(engine.run(engine.init(keys, targets), targets, 2)[0])
    began = time.perf_counter()
    targets = engine.targets(source)  # timed, as in timed_default
    state, _ = engine.run(engine.init(keys, targets), targets, iterations)
    images = np.asarray(engine.images(state))[:len(keys)]
    return images, time.perf_counter() - began


def cached_reference(cache, name, size, seeds, iterations, compute):
    """(images, seconds) of the PyTorch reference: from `cache` (a folder, or None for no cache) when it holds
    this photo, size, seed count and iteration count, else computed by `compute()` and stored there."""
    path = cache and os.path.join(cache, f"{os.path.splitext(name)[0]}_{size}px_{seeds}seeds_{iterations}its.npz")
    if path and os.path.isfile(path):
        with np.load(path) as stored:
            print(f"({name} {size} px: the reference from {path}, timed on {stored['machine']})", flush=True)
            return stored["images"], float(stored["seconds"])
    images, seconds = compute()
    if path:
        os.makedirs(cache, exist_ok=True)
        temporary = path + ".partial.npz"
        np.savez(temporary, images=np.asarray(images), seconds=seconds, machine=machine())
        os.replace(temporary, path)
    return images, seconds


# How many seeds an earlier run's rows are of: its own "N seeds" line (printed above its table) or command's
# --seeds, the last before the row within the row's section.
SEED_COUNTS = (re.compile(r"--seeds[ =](\d+)"), re.compile(r"\b(\d+) seeds\b"))


def reference_rows(paths) -> dict:
    """{(photo, size, seeds): (distance, diversity, seconds)} of the "torch" rows in earlier outputs of this script;
    seeds None where the section never says (`reference_row` takes those for any count)."""
    rows = {}
    for path in paths:
        seeds = None
        with open(path) as f:
            for line in f:
                if line.startswith("#"):  # a new section: its own runs
                    seeds = None
                    continue
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if line.startswith("|") and len(cells) in (10, 11) and cells[2] == "torch":  # 10: before layout
                    rows[(cells[0], int(cells[1]), seeds)] = (float(cells[4]), float(cells[5]), float(cells[3]))
                    continue
                for match in (m for pattern in SEED_COUNTS for m in pattern.finditer(line)):
                    seeds = int(match.group(1))
    if not rows:
        sys.exit(f"error: --against {', '.join(paths)} holds no torch rows; give the output of a run with the "
                 "reference")
    return rows


def reference_row(rows, name, size, seeds):
    """The reference of a photo and size for this many seeds: a row of that many (another count's diversity is
    not comparable: 2 seeds are one pair), else one whose count was never given; None if neither."""
    return rows.get((name, size, seeds), rows.get((name, size, None)))


def parse_candidate(text: str) -> tuple[str, dict]:
    """"NAME=field=value;field=value" -> (NAME, {field: value text}); exits with one line if malformed."""
    name, _, settings = text.partition("=")
    pairs = [item.partition("=") for item in settings.split(";") if item.strip()]
    if not name or name in SETS or not pairs or any(not eq for _, eq, _ in pairs):
        sys.exit(f"error: --candidate {text!r} is not NAME=field=value;field=value with a new NAME, like "
                 "'last60=iterations=60'")
    return name, {key.strip(): value.strip() for key, _, value in pairs}


def with_settings(config, settings: dict):
    """`config` with {field: value text} changed, the text read as the field's flag is."""
    from texsynth_jax.config import parse_value

    fields = {f.name: f for f in dataclasses.fields(config)}
    unknown = next((key for key in settings if key not in fields), None)
    if unknown:
        sys.exit(f"error: --candidate names {unknown!r}, which is no SynthesisConfig field; use one like iterations")
    return dataclasses.replace(config, **{key: parse_value(fields[key], value) for key, value in settings.items()})


def save_sheet(path, source, rows) -> None:
    """The source (tiled to the outputs' size) above one row of seeds per set, 4 px of white between."""
    from PIL import Image

    h, w = rows[0][0].shape[:2]
    tiled = np.tile(source, (-(-h // source.shape[0]), -(-w // source.shape[1]), 1))[:h, :w]
    cells = [[tiled], *[list(images) for images in rows]]
    columns = max(len(r) for r in cells)
    sheet = np.ones((len(cells) * (h + 4) - 4, columns * (w + 4) - 4, 3), np.float32)
    for r, row in enumerate(cells):
        for c, image in enumerate(row):
            sheet[r * (h + 4):r * (h + 4) + h, c * (w + 4):c * (w + 4) + w] = image
    Image.fromarray((np.clip(sheet, 0, 1) * 255).round().astype(np.uint8)).save(path)


def detailed_copy(path: str, size: int) -> str:
    """The photo to shrink to a `size` px source: its 512 px copy (NAME_512.png beside it, shared/textures) for
    outputs over 256 px where there is one, whose detail enlarging the 256 px photo cannot make; else `path`."""
    larger = path[:-len(".png")] + "_512.png"
    return larger if size > 256 and path.endswith(".png") and os.path.isfile(larger) else path


def moved(source, count: int) -> np.ndarray:
    """`count` copies of `source` [H, W, C], each circularly shifted by its own offset between 1/8 and 7/8 of each
    side (so no copy keeps the source's layout), the same offsets every run."""
    h, w = source.shape[:2]
    rng = np.random.default_rng(0)
    shifts = [(int(rng.integers(h // 8, h - h // 8)), int(rng.integers(w // 8, w - w // 8))) for _ in range(count)]
    return np.stack([np.roll(source, shift, (0, 1)) for shift in shifts])


def layout(source, images) -> float:
    """The seeds' mean evaluate.layout_similarity to the source: the correlation of 32 px luminance maps, which a
    border-anchored synthesis raises (its seeds grow the source's elements where the source has them)."""
    from texsynth_jax import evaluate

    return float(np.mean([evaluate.layout_similarity(image, source) for image in images]))


def times(ratio: float) -> str:
    """A ratio as the tables print it; "-" where there is none (the moved set takes no time)."""
    return "-" if np.isnan(ratio) else f"{ratio:.2f}x"


def geomean(values) -> float:
    return float(np.exp(np.mean(np.log(values))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="128,256,512", help="comma-separated output sides")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=300, help="the paper's and the reference's iterations")
    parser.add_argument("--split", default="checking", choices=("tuning", "checking", "held_out"))
    parser.add_argument("--textures", default=TEXTURES, help="folder of the benchmark photos")
    parser.add_argument("--names", default="", help="comma-separated file names: these photos of the split only")
    parser.add_argument("--skip_torch", action="store_true", help="no PyTorch reference: ratios to our paper mode")
    parser.add_argument("--sets", default=",".join(SETS), help=f"which of {','.join(SETS)} to run (the reference "
                        "always: the ratios need it)")
    parser.add_argument("--candidate", action="append", default=[], help="NAME=field=value;field=value: the default "
                        "with these settings changed (repeatable)")
    parser.add_argument("--cache", default=None, help="folder keeping the PyTorch reference's results between runs")
    parser.add_argument("--against", action="append", default=[], help="output of an earlier run: its torch rows of "
                        "as many --seeds are the reference (photos without one are skipped); no PyTorch run here "
                        "(repeatable)")
    parser.add_argument("--out", default=None, help="folder for a picture per photo and size (source, then seeds)")
    add_weights_arg(parser)
    add_smoke_arg(parser)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    candidates = dict(parse_candidate(c) for c in args.candidate)
    reference = "paper" if args.skip_torch and not args.against else "torch"
    against = reference_rows(args.against) if args.against else None
    chosen = {s for s in args.sets.split(",") if s} | ({reference} if against is None else set())
    if against is not None and "torch" in chosen:
        sys.exit("error: --against and --sets=torch both give the reference; leave torch out of --sets")
    if not chosen <= set(SETS):
        sys.exit(f"error: --sets={args.sets} names an unknown set; use some of {','.join(SETS)}")
    paths = split_paths(args.split, args.textures) if not args.smoke else [smoke_texture()]
    if args.names:
        names = args.names.split(",")
        unknown = sorted(set(names) - {os.path.basename(p) for p in paths})
        if unknown:
            sys.exit(f"error: --names {','.join(unknown)} is not in the {args.split} split; name some of "
                     f"{','.join(os.path.basename(p) for p in paths)}")
        paths = [p for p in paths if os.path.basename(p) in names]
    if args.smoke:
        sizes, args.seeds, args.iterations = [SMOKE_SIZE], 2, 2

    import jax
    import texsynth_jax as ts
    from texsynth_jax import evaluate
    from texsynth_jax.config import PAPER_MODE

    params, spec = load_weights(args.weights)
    judge_params = evaluate.load_judge()
    keys = jax.random.split(jax.random.key(0), args.seeds)
    print(f"{machine()}; load average {load_average()}; split {args.split}, {args.seeds} seeds, paper and "
          f"reference {args.iterations} iterations", flush=True)
    print("\n| photo | size | set | seconds | distance | diversity | copied | distance / ref | diversity / ref "
          "| time / ref | layout |\n|---|---|---|---|---|---|---|---|---|---|---|")
    ratios = {}  # (size, set) -> [(distance, diversity, time) ratios per photo]
    for size in sizes:
        smoke = network(args)
        # With --smoke one coarse scale of one iteration: 32 px has no room for two.
        schedule = dict(coarse_iterations=(1,), iterations=1) if args.smoke else {}
        default = ts.SynthesisConfig(size=(size, size), **schedule, **smoke)
        paper = ts.SynthesisConfig(**{**PAPER_MODE, **smoke, "size": (size, size), "iterations": args.iterations})
        engines = {label: ts.make_engine(params, spec, with_settings(default, settings), args.seeds)
                   for label, settings in [("default", {})] * ("default" in chosen) + list(candidates.items())}
        if "paper" in chosen:
            engines["paper"] = ts.Engine(params, spec, paper, args.seeds)
        model = None
        if "torch" in chosen:  # (not with --against)
            from torch_baseline import TorchGatys

            model = TorchGatys(params, spec, paper.layers, paper.layer_weights)
        for path in paths:
            name = os.path.basename(path)
            if against is not None and reference_row(against, name, size, args.seeds) is None:
                print(f"({name} {size} px: no reference row of {args.seeds} seeds in --against, skipped)", flush=True)
                continue
            source = texture_source(detailed_copy(path, size), (size, size))
            runs = {label: timed_paper(engine, source, keys, args.iterations) if label == "paper"
                    else timed_default(engine, source, keys) for label, engine in engines.items()}
            if model is not None:
                runs["torch"] = cached_reference(
                    args.cache, name, size, args.seeds, args.iterations,
                    lambda: torch_synthesize(model, source, range(args.seeds), (size, size), [args.iterations],
                                             "uniform", 0.5)[args.iterations])
            if "moved" in chosen:
                runs["moved"] = moved(source, args.seeds), float("nan")  # nothing made: no time
            if args.out:
                os.makedirs(args.out, exist_ok=True)
                save_sheet(os.path.join(args.out, f"{os.path.splitext(name)[0]}_{size}.png"), source,
                           [images for images, _ in runs.values()])
            scores = {label: evaluate.judge(judge_params, source, list(images)) for label, (images, _) in runs.items()}
            if against is None:
                ref, ref_seconds = scores[reference], runs[reference][1]
            else:
                distance, diversity, ref_seconds = reference_row(against, name, size, args.seeds)
                ref = {"distance_mean": distance, "diversity": diversity}
            for label, verdict in scores.items():
                seconds = runs[label][1]
                r = (verdict["distance_mean"] / ref["distance_mean"], verdict["diversity"] / ref["diversity"],
                     seconds / ref_seconds)
                ratios.setdefault((size, label), []).append(r)
                print(f"| {name} | {size} | {label} | {'-' if np.isnan(seconds) else f'{seconds:.1f}'} | "
                      f"{verdict['distance_mean']:.4f} | {verdict['diversity']:.3f} | "
                      f"{max(verdict['copy_fraction']):.2f} | {times(r[0])} | {times(r[1])} | {times(r[2])} | "
                      f"{layout(source, runs[label][0]):+.2f} |", flush=True)
    photos = max((len(rows) for rows in ratios.values()), default=0)
    print(f"\nGeometric means over {photos} photo(s), against {reference} at {args.iterations} iterations "
          f"({machine()}; load average {load_average()}):\n")
    print("| size | set | distance / ref | diversity / ref | time / ref |\n|---|---|---|---|---|")
    for (size, label), rows in ratios.items():
        print(f"| {size} | {label} | " + " | ".join(times(geomean(column)) for column in zip(*rows)) + " |")


if __name__ == "__main__":
    main()
