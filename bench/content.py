"""A texture carried onto a photo (--content, issue 27): against PyTorch's Gatys et al. (2016), and the settings.

    python bench/content.py --only torch --size 128 --iterations 100
    python bench/content.py --only settings --size 128 --content_weights 0.03,0.1,0.3,1 --starts content,noise
    python bench/content.py --smoke     # seconds: 32 px, the shipped photo

The content photos are scikit-image's (pip install scikit-image: chelsea the cat, the astronaut, coffee), each
cropped to a square at --size; the textures are benchmark photos (bench/common.py), read, never copied.

- torch: one scale, zero padding (as PyTorch's convolutions pad), the photo as the start (no noise), the default
  layers and conv4_2, at each weight of --content_weights; texsynth_jax's L-BFGS against scipy's L-BFGS-B on
  bench/torch_baseline.py's PyTorch losses (box bounds [0, 1], as Gatys et al.'s code), --iterations each.
  Both results are scored by the PyTorch losses: the texture loss and the content error (mean square feature error
  at the content layer over the photo's mean square feature), ours over PyTorch's (1.00x: as low).
- settings: the default schedule (or each of --schedules) from the photo and from noise at each weight of
  --content_weights, per seed: the judge's distance of the output to the texture (its look) and evaluate.layout_similarity to the photo
  (its layout: 1 the photo's own, 0 none), and the seconds.
Writes <out>/<texture>_<photo>.png (the photo, then seed 0 of each setting).
"""

import argparse
import os
import time

import numpy as np

from common import (SMOKE_SIZE, TEXTURES, add_smoke_arg, add_weights_arg, load_average, load_weights, machine,
                    network, save_row)

TEXTURES_USED = "ink.png,zigzag.png,pebbles.png"  # of the tuning split (bench/common.py)
PHOTOS = "chelsea,astronaut,coffee"


def photo(name: str, size: int):
    """A scikit-image sample photo, centre-cropped to a square and resized (Lanczos): float32 [size, size, 3]."""
    import skimage.data
    from PIL import Image

    image = getattr(skimage.data, name)()
    h, w = image.shape[:2]
    side = min(h, w)
    image = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    image = Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image.convert("RGB"), np.float32) / 255.0


def torch_transfer(model, content, iterations: int):
    """scipy's L-BFGS-B on the PyTorch losses from the photo, pixels in [0, 1]: (image [H, W, 3], seconds)."""
    import scipy.optimize
    import torch

    shape = (1, 3, *content.shape[:2])
    start = np.clip(content.transpose(2, 0, 1)[None], 1e-3, 1 - 1e-3).astype(np.float64).ravel()

    def value_and_grad(x):
        loss, grad = model.loss_and_grad(torch.from_numpy(x.reshape(shape).astype(np.float32)))
        return float(loss), grad.numpy().astype(np.float64).ravel()

    began = time.perf_counter()
    result = scipy.optimize.minimize(value_and_grad, start, jac=True, method="L-BFGS-B", bounds=[(0, 1)] * start.size,
                                     options=dict(maxiter=iterations, maxcor=20, ftol=0, gtol=0,
                                                  maxfun=10 * iterations))
    if result.nit < iterations:
        raise RuntimeError(f"L-BFGS-B stopped after {result.nit} of {iterations} iterations")
    return result.x.reshape(shape)[0].transpose(1, 2, 0).astype(np.float32), time.perf_counter() - began


def scores(model, image) -> tuple[float, float]:
    """(texture loss, content error) of one image [H, W, 3] by the PyTorch losses."""
    import torch

    with torch.no_grad():
        feats = model.features(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None])
        return float(model.texture_loss(feats)), float(model.content_error(feats)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=100, help="of each torch comparison run")
    parser.add_argument("--only", default="torch,settings", help="which of torch,settings to run")
    parser.add_argument("--content_weights", default="0.1,1", help="comma-separated content weights")
    parser.add_argument("--starts", default="content,noise", help="comma-separated starts of the settings rows")
    parser.add_argument("--schedules", default="", help="settings: ';'-separated coarse_iterations/iterations to run "
                        "(e.g. '100,60/20;100/20;/100'; default: the default schedule)")
    parser.add_argument("--textures", default=TEXTURES, help="folder of the benchmark photos")
    parser.add_argument("--names", default=TEXTURES_USED, help="comma-separated texture photos")
    parser.add_argument("--photos", default=PHOTOS, help="comma-separated scikit-image sample photos (content)")
    parser.add_argument("--out", default="/tmp/texsynth_content", help="folder for the pictures")
    add_weights_arg(parser)
    add_smoke_arg(parser)
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))

    import dataclasses
    import tempfile
    import jax
    import torch
    import texsynth_jax as ts
    from texsynth_jax import evaluate
    from common import smoke_texture, texture_source
    from torch_baseline import TorchGatys

    torch.set_num_threads(os.cpu_count())
    size = SMOKE_SIZE if args.smoke else args.size
    if args.smoke:
        args.out, args.iterations, args.seeds = tempfile.mkdtemp(prefix="texsynth_smoke_out_"), 2, 1
        args.photos, args.content_weights = args.photos.split(",")[0], "1"
    paths = [smoke_texture()] if args.smoke else [os.path.join(args.textures, n) for n in args.names.split(",")]
    weights = [float(w) for w in args.content_weights.split(",")]
    params, spec = load_weights(args.weights)
    judge = evaluate.load_judge()
    keys = jax.random.split(jax.random.key(0), args.seeds)
    name = lambda path: os.path.splitext(os.path.basename(path))[0]
    print(f"{machine()}; load average {load_average()}; {size} px")

    if "torch" in parts:
        config = ts.SynthesisConfig(size=(size, size), coarse_iterations=(), iterations=args.iterations,
                                    padding="zero", init_scale=0.0, **network(args))
        engine = ts.Engine(params, spec, config, 1)
        model = TorchGatys(params, spec, config.layers, config.layer_weights, content_layer=config.content_layer)
        print(f"\nOne scale, {args.iterations} iterations from the photo, zero padding; scored by the PyTorch losses\n")
        print("| texture | photo | weight | texture loss ours / torch | content error ours / torch | seconds ours, "
              "torch |\n|---|---|---|---|---|---|")
        for path in paths:
            source = texture_source(path, (size, size))
            model.set_targets(torch.from_numpy(np.ascontiguousarray(source.transpose(2, 0, 1))))
            for content_name in args.photos.split(","):
                content = photo(content_name, size)
                for weight in weights:
                    model.set_content(torch.from_numpy(np.ascontiguousarray(content.transpose(2, 0, 1))), weight)
                    targets = engine.content_targets(engine.targets(source), content, weight)
                    began = time.perf_counter()
                    ours = np.asarray(engine.synthesize(keys[:1], targets)[0][0])
                    ours_seconds = time.perf_counter() - began
                    theirs, theirs_seconds = torch_transfer(model, content, args.iterations)
                    (t_ours, c_ours), (t_theirs, c_theirs) = scores(model, ours), scores(model, theirs)
                    print(f"| {name(path)} | {content_name} | {weight:g} | {t_ours:.4g} / {t_theirs:.4g} = "
                          f"{t_ours / t_theirs:.2f}x | {c_ours:.4g} / {c_theirs:.4g} = {c_ours / c_theirs:.2f}x | "
                          f"{ours_seconds:.0f}, {theirs_seconds:.0f} |", flush=True)

    if "settings" in parts:
        schedules = {"": dict(coarse_iterations=(1,), iterations=1) if args.smoke else {}}
        if args.schedules:
            schedules = {text: dict(coarse_iterations=tuple(int(n) for n in text.split("/")[0].split(",") if n),
                                    iterations=int(text.split("/")[1])) for text in args.schedules.split(";")}
        engines = {}
        for text, schedule in schedules.items():
            base = ts.SynthesisConfig(size=(size, size), **schedule, **network(args))
            for start in args.starts.split(","):
                label = f"{start} {text}".strip()
                engines[label] = ts.make_engine(params, spec, dataclasses.replace(base, content_start=start),
                                                args.seeds)
        print(f"\nThe default schedule, {args.seeds} seeds: per seed the judge's distance to the texture and the "
              "layout's correlation with the photo\n")
        print("| texture | photo | start | weight | distance to the texture | layout similarity | seconds |\n"
              "|---|---|---|---|---|---|---|")
        for path in paths:
            source = texture_source(path, (size, size))
            for content_name in args.photos.split(","):
                content = photo(content_name, size)
                row = [content]
                for start, engine in engines.items():  # start: its label, with the schedule when given
                    targets = engine.targets(source)
                    for weight in weights:
                        began = time.perf_counter()
                        made = engine.synthesize(keys, engine.content_targets(targets, content, weight))
                        images = np.asarray(made[0])
                        seconds = time.perf_counter() - began
                        distance = evaluate.judge(judge, source, list(images))["distance_mean"]
                        layout = [evaluate.layout_similarity(x, content) for x in images]
                        print(f"| {name(path)} | {content_name} | {start} | {weight:g} | {distance:.3f} | "
                              + ", ".join(f"{v:.2f}" for v in layout) + f" | {seconds:.0f} |", flush=True)
                        row.append(images[0])
                save_row(os.path.join(args.out, f"{name(path)}_{content_name}.png"), row)
    print(f"\n{machine()}; load average {load_average()}")


if __name__ == "__main__":
    main()
