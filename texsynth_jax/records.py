"""What a job knows of each source's files: their names, which of them a run may write, the fingerprint a
checkpoint must match to be continued, whether a finished run can be skipped, and the JSON run record.

Pure functions of the plan and the settings, apart from reading an earlier record (`finished`); the
runner decides when to write.
"""

import dataclasses
import functools
import hashlib
import json
import os
from typing import NamedTuple

import numpy as np

from texsynth_jax import coarse_to_fine, engine, fill, guide, image_io, jobs, outputs, storage, weights
from texsynth_jax.config import RunOptions, SynthesisConfig, scaled_size

# A run writes at most this many snapshot images (--save_every) per source: beyond it the arithmetic of
# the counts is refused before the list of names is built.
MAX_SNAPSHOTS = 100_000


class SourcePlan(NamedTuple):
    """One source of a job as this host runs it."""

    path: str
    seeds: list
    size: tuple  # (height, width) from the header
    names: dict  # output file names (outputs.final_names, with this host's record, sheet and checkpoint)
    config: SynthesisConfig | None = None  # the job's, with the item's settings (jobs.item_config)
    stem: str | None = None  # of the output names (jobs.output_stem)
    item: jobs.WorkItem | None = None  # its work item, with this host's seeds, when the job keeps a manifest


def plan_sources(work, config: SynthesisConfig, arch: str, process: int, processes: int) -> list[SourcePlan]:
    """Check every source's header and size against its item's settings (no pixels decoded) and name its
    outputs."""
    plan, checked = [], set()  # a guide or canvas is checked once per settings, not per source
    suffix = f"_p{process}" if processes > 1 else ""  # each host writes its own record and sheet
    for work_item in work:
        path, seeds = work_item[0], work_item[1]
        item_config = jobs.item_config(work_item, config)
        where = f"{jobs.where(work_item)}: " if item_config is not config else ""
        try:
            if item_config is not config:
                item_config.check_network(arch)
            size = image_io.check_image(path)
            coarse_to_fine.check_source(size, item_config, arch, f"input image {path}")
            if item_config.palette:
                image_io.check_image(item_config.palette, "palette image", "--colors")
            for blend_path, _, scale in item_config.blend_sources:
                coarse_to_fine.check_source(image_io.check_image(blend_path, "blend image", "--blend"),
                                            dataclasses.replace(item_config, source_scale=scale), arch,
                                            f"blend image {blend_path}")
            if (item_config.guide or item_config.region or item_config.source_guide) and \
                    item_config not in checked:
                check_guide(item_config, arch)
                checked.add(item_config)
            if ("content", item_config) not in checked:
                check_content(item_config, arch)
                checked.add(("content", item_config))
            own = is_fill_image(path, item_config)
            if (item_config, own) not in checked:
                check_fill(item_config, own)
                checked.add((item_config, own))
        except ValueError as e:
            if not where:
                raise
            raise type(e)(f"{where}{e}") from None  # which line of the work file
        stem = jobs.output_stem(work_item)
        names = outputs.final_names(stem, seeds, item_config.tileable, item_config.scale_sizes[:-1])
        for key in ("sheet", "record", "loss_plot"):
            root, ext = os.path.splitext(names[key])
            names[key] = root + suffix + ext
        names["checkpoint"] = f"{stem}_ckpt{suffix}.npz"
        item = work_item if isinstance(work_item, jobs.WorkItem) else None
        plan.append(SourcePlan(path, seeds, size, names, item_config, stem, item))
    return plan


def check_snapshots(config: SynthesisConfig, options: RunOptions, seeds: int) -> None:
    """Raise ValueError if --save_every asks for more snapshot images than a run should write, before
    their names are listed (300,000,000 iterations saved every one would fill memory with names)."""
    if not options.save_every:
        return
    count = -(-config.total_iterations // options.save_every) * seeds
    if count > MAX_SNAPSHOTS:
        least = -(-config.total_iterations // max(MAX_SNAPSHOTS // seeds, 1))
        raise ValueError(f"--save_every={options.save_every} with {config.total_iterations} iterations and {seeds} "
                         f"seed(s) writes {count} snapshot images, more than {MAX_SNAPSHOTS}; give --save_every of at "
                         f"least {least}, or 0 for none")


def snapshot_steps(iterations: int, save_every: int, steps_per_dispatch: int) -> list[int]:
    """The iterations whose images a run may save (--save_every): the dispatches that end within
    steps_per_dispatch of a multiple of save_every, as the runner saves them, from any resume point."""
    if not save_every:
        return []
    return sorted({k for m in range(0, iterations, save_every)
                   for k in range(max(m, 1), min(m + steps_per_dispatch, iterations))})


def output_files(src: SourcePlan, config: SynthesisConfig, options: RunOptions, steps_per_dispatch: int) -> list[str]:
    """Every file name a run of `src` may write (or remove): images, their 2x2 repeats (tileable), each
    coarse scale's images, sheet, record, loss plot, snapshots and checkpoint. The overwrite check, the
    folder's list of the product's files and the clean-up of stale temp files all go by this list."""
    total = config.total_iterations
    snapshots = [outputs.seed_name(src.stem or jobs.stem(src.path), seed, step, total)
                 for step in snapshot_steps(total, options.save_every, steps_per_dispatch)
                 for seed in src.seeds]
    return [*src.names["images"], *src.names["tiled"], *(n for scale in src.names["scales"] for n in scale),
            src.names["sheet"], src.names["record"], src.names["loss_plot"], *snapshots, src.names["checkpoint"]]


def read_map(path: str, what: str, flag: str):
    """(labels, colours) of a guide map file (guide.read_map); ImageError or ValueError, one line."""
    image_io.check_image(path, what, flag)
    return guide.read_map(image_io.load_image(path)[0], f"{what} {path}")


def check_guide(config: SynthesisConfig, arch: str) -> None:
    """A guided run's maps and region photos, before anything runs: readable, every colour with a source,
    every region photo large enough, every region of the map large enough for the deepest layer."""
    if not config.guide:
        given = "--region" if config.region else "--source_guide"
        raise ValueError(f"{given} is given without --guide; give the output's map, like --guide=map.png")
    labels, colours = read_map(config.guide, "guide map", "--guide")
    source_colours = read_map(config.source_guide, "source guide", "--source_guide")[1] if config.source_guide else None
    guide.assign(colours, config.region_sources, source_colours)
    for _, path, scale in config.region_sources:
        coarse_to_fine.check_source(image_io.check_image(path, "region image", "--region"),
                                    dataclasses.replace(config, source_scale=scale), arch, f"region image {path}")
    guide.check_masks(guide.masks(labels, len(colours), config.size), len(colours), config.size, config.layers, arch,
                      [f"guide colour {guide.hex_colour(c)} of {config.guide}" for c in colours])


def check_fill(config: SynthesisConfig, own: bool) -> None:
    """A --fill run's image, mask and canvas, before anything runs (`own`: its source is the --fill image, whose
    kept pixels give the statistics): readable, something to make, something kept to learn from, a canvas that
    holds the image."""
    if not config.fill:
        given = next((f for f, on in (("--mask", config.mask), ("--place", config.place != "center")) if on), None)
        if given:
            raise ValueError(f"{given} is given without --fill; name the image to work on, like --fill=photo.png")
        return
    if config.palette:
        raise ValueError(f"--colors={config.colors} with --fill: the kept pixels hold the image's own colours; leave "
                         "--colors out (or give --colors=source)")
    size = image_io.check_image(config.fill, "fill image", "--fill")
    fill.offset(size, config.size, config.place)
    if config.mask:
        image_io.check_image(config.mask, "mask image", "--mask")
    make = make_mask(config, size)
    what = f"mask {config.mask}" if config.mask else f"the alpha channel of {config.fill}"
    larger = tuple(config.size) != tuple(size)
    if (make is None or not make.any()) and not larger and not config.tileable:
        raise ValueError(
            (f"{what} is all black (keep): " if make is not None else f"fill image {config.fill} has no mask and no "
             "transparent pixels: ") + "nothing to make; paint white where to make it (--mask=mask.png), give a "
            f"--size larger than {size[0]},{size[1]} to extend it, or --tileable to make it tile")
    if own and make is not None and make.all():
        raise ValueError(f"{what} is all white (make): no kept pixels to take the statistics from; give a source "
                         "with --input=texture.png, or keep part of the image")


def check_content(config: SynthesisConfig, arch: str) -> None:
    """A --content run's photo, before anything runs: readable, and at a weight above 0 it and every scale of the
    output large enough for the deepest layer and the content layer (engine.check_content)."""
    if config.content:
        size = image_io.check_image(config.content, "content image", "--content")
        if config.content_weight:  # at 0 the photo plays no part
            engine.check_content(size, config, arch, f"content image {config.content}")


def content_record(config: SynthesisConfig) -> dict | None:
    """A --content run's photo with its sha256, the weight, layer and start; None without."""
    if not config.content:
        return None
    return {"image": {"path": storage.absolute(config.content), "sha256": weights.file_sha256(config.content)},
            "weight": config.content_weight, "layer": config.content_layer, "start": config.content_start}


def is_fill_image(path: str, config: SynthesisConfig) -> bool:
    """Whether the source `path` is the --fill image itself: then its kept pixels alone give the statistics."""
    return bool(config.fill) and storage.absolute(path) == storage.absolute(config.fill)


def make_mask(config: SynthesisConfig, size) -> np.ndarray | None:
    """bool [*size]: the --fill image's pixels to make, from --mask or its alpha channel; None for none."""
    if config.mask:
        return fill.mask_from_image(image_io.load_image(config.mask)[0], size)
    alpha = image_io.load_alpha(config.fill)
    return None if alpha is None else fill.mask_from_alpha(alpha)


def fill_record(config: SynthesisConfig) -> dict | None:
    """The files of a --fill run (image, mask) with their sha256, and where the image lies; None without."""
    if not config.fill:
        return None
    file = lambda path: {"path": storage.absolute(path), "sha256": weights.file_sha256(path)}
    return {"image": file(config.fill), **({"mask": file(config.mask)} if config.mask else {}),
            "place": config.place, **({"band": config.band} if config.tileable else {})}


def guide_record(config: SynthesisConfig) -> dict | None:
    """The files of a guided run (maps, region photos) with their sha256, as the record holds them; None unguided."""
    if not config.guide:
        return None
    file = lambda path: {"path": storage.absolute(path), "sha256": weights.file_sha256(path)}
    return {"map": file(config.guide), **({"source_guide": file(config.source_guide)} if config.source_guide else {}),
            "regions": [{"colour": guide.hex_colour(colour), **file(path), "source_scale": scale}
                        for colour, path, scale in config.region_sources]}


def _shas(tree) -> list[str]:
    """Every "sha256" in a record's part, in order: what makes two runs' files the same."""
    if isinstance(tree, dict):
        return [v for k, v in sorted(tree.items()) if k == "sha256"] + [s for k, v in sorted(tree.items())
                                                                          for s in _shas(v)]
    return [s for v in tree for s in _shas(v)] if isinstance(tree, list) else []


def target_files(config: SynthesisConfig) -> list[str]:
    """The files besides the input whose content the targets depend on: blended sources, guide maps, region
    photos, a --fill image and its mask, a --content photo."""
    return [*(path for path, _, _ in config.blend_sources),
            *([config.guide] if config.guide else []), *([config.source_guide] if config.source_guide else []),
            *(path for _, path, _ in config.region_sources),
            *([config.fill] if config.fill else []), *([config.mask] if config.mask else []),
            *([config.content] if config.content else [])]


def fingerprint(config: SynthesisConfig, seeds, image, weights_sha256: str, meta: dict) -> str:
    """What a checkpoint must match to be continued: settings, seeds, source pixels, the content of every
    other file the targets come from, and the converted weights (their file's content and their convention)."""
    others = [weights.file_sha256(path) for path in target_files(config)]  # none: as before they were counted
    text = json.dumps([dataclasses.asdict(config), list(seeds), weights_sha256,
                       {k: meta.get(k) for k in ("arch", "channel_order", "scale", "mean", "std")}, *([others] if others else [])],
                      sort_keys=True)
    return hashlib.sha256(text.encode() + np.ascontiguousarray(image).tobytes()).hexdigest()


def finished(output_dir: str, src: SourcePlan, config: SynthesisConfig, weights_sha256: str, overwrite: bool) -> bool:
    """Whether this source and host's record in the output folder is a finished run of this very request
    (settings, seeds, input file, weights file). A finished run of another request is refused, as
    skipping it would leave its outputs in place of the ones asked for, unless `overwrite` redoes it."""
    path = storage.join(output_dir, src.names["record"])
    try:
        record = json.loads(storage.read_bytes(path))
    except (OSError, ValueError):
        return False
    field = lambda *keys: functools.reduce(lambda d, k: d.get(k) if isinstance(d, dict) else None, keys, record)
    if field("status") != "complete":
        return False
    differs = [what for what, same in (
        ("settings", field("config") == json.loads(json.dumps(dataclasses.asdict(config)))),
        ("seeds", field("seeds") == list(src.seeds)),
        ("input", field("input", "sha256") == weights.file_sha256(src.path) and [
            b.get("sha256") for b in field("blend") or []] == [weights.file_sha256(p) for p, _, _ in config.blend_sources]
         and field("colors", "sha256") == (weights.file_sha256(config.palette) if config.palette else None)
         and _shas(field("guide")) == _shas(guide_record(config))
         and _shas(field("fill")) == _shas(fill_record(config))
         and _shas(field("content")) == _shas(content_record(config))),
        ("weights", field("weights", "file_sha256") == weights_sha256)) if not same]
    if not differs:
        return True
    if overwrite:
        return False
    raise outputs.OutputError(f"{path} records a finished run with other {' and '.join(differs)}; pass --overwrite "
                              "to redo it, or choose another --output_dir")


def make_record(*, status: str, step: int, config: SynthesisConfig, options: RunOptions, src: SourcePlan, image,
                notes, names: dict, losses, timings: dict, meta: dict, weights_path: str, weights_sha256: str,
                extra: dict) -> dict:
    """The JSON record of one source's run: what was run and what came out.

    losses: [B][iterations done] per seed; image: the decoded source [H, W, 3]."""
    def finite(x):
        return float(x) if np.isfinite(x) else None

    seeds = src.seeds
    return {
        "status": status, "iterations_done": step, **extra,
        "config": dataclasses.asdict(config), "options": dataclasses.asdict(options),
        "seeds": seeds,
        "input": {"path": storage.absolute(src.path), "sha256": weights.file_sha256(src.path),
                  "size": list(image.shape[:2]), "conversions": notes},
        "weights": {"path": storage.absolute(weights_path), "file_sha256": weights_sha256,
                    "arch": meta.get("arch"), "source_name": meta.get("source_name"),
                    "source_sha256": meta.get("source_sha256")},
        "outputs": names,
        **({"blend": [{"path": storage.absolute(path), "sha256": weights.file_sha256(path), "weight": weight,
                       "source_scale": scale} for path, weight, scale in config.blend_sources],
            "main_weight": config.main_weight} if config.blend else {}),
        **({"colors": {"path": storage.absolute(config.palette), "sha256": weights.file_sha256(config.palette)}}
           if config.palette else {}),
        **({"guide": guide_record(config)} if config.guide else {}),
        **({"fill": fill_record(config)} if config.fill else {}),
        **({"content": content_record(config)} if config.content else {}),
        "start": dict(zip(("init", "init_scale"), config.start)),  # what init=auto chose for this size
        # what each scale ran: coarsest_padding=auto's choice is the coarsest's padding
        "scales": [{"size": list(c.size), "iterations": c.iterations, "padding": c.padding,
                    "source_size": list(source_size)}
                   for c, source_size in zip(
                       coarse_to_fine.scale_configs(config),
                       coarse_to_fine.source_sizes(scaled_size(image.shape[:2], config.source_scale), config))],
        "final_loss": {str(s): finite(l[-1]) if len(l) else None for s, l in zip(seeds, losses)},
        "loss_history": {str(s): [finite(x) for x in l] for s, l in zip(seeds, losses)},
        "timings_s": timings, "versions": outputs.versions(),
    }
