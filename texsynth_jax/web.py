"""The web page: synthesis with the mouse, on this machine (`texsynth serve`, the optional `web` extra).

    pip install ".[web]" && texsynth serve          # prints http://127.0.0.1:7860; runs go into out/<time>-<photo>/

Built on Gradio, the ML ecosystem's convention for a model's local page, because it already has what this
page needs and a hand-written one would rebuild: a drop box, an image editor with a brush (the fill mask is
painted there), a queue that runs one job at a time and shows each waiting visitor their place, generator
handlers that stream the coarse scales' pictures as they land, and downloads. It is an extra: the library
and the command line never import it.

Every run is `run_job` into a folder of its own under the output folder, with the files the command line
writes (images, 2x2 repeats, sheet, run record), and the record carries the equivalent `texsynth` command:
the page and the CLI make the same images for the same settings and seeds, and the page's gallery reads
runs of either kind from the folder. Nothing is written outside it (uploads included).
"""

import dataclasses
import glob
import json
import os
import queue
import re
import shutil
import threading
import time

import numpy as np

from texsynth_jax import config as config_lib, guide, image_io, progress, storage
from texsynth_jax.config import PAPER_MODE, RunOptions, SynthesisConfig
from texsynth_jax.runner import run_job

# The page's loss choices (docs/quality.md#loss-terms): the paper's Gram loss, and the measured additions.
LOSSES = {"Gram (Gatys et al.)": ("gram:1",), "Gram + spectrum": ("gram:1", "spectrum:0.3"),
          "Gram + sliced Wasserstein": ("gram:1", "swd:0.5")}
MODES = ("coarse to fine", "paper")
# The guide map's brush colours (fixed: a stroke's soft edge snaps to the nearest), and the unpainted parts' colour.
MAP_COLOURS = {"red": (230, 25, 75), "green": (60, 180, 75), "blue": (67, 99, 216)}
UNPAINTED = (255, 255, 255)
UPLOADS = ".uploads"  # Gradio's own copies of what the browser sent, inside the output folder


class PageError(ValueError):
    """A problem with what was given on the page: one line naming it and the fix, shown on the page."""


@dataclasses.dataclass(frozen=True)
class PageSettings:
    """What the page's controls choose; everything else comes from the base config (`texsynth serve`'s flags)."""

    size: int = 256
    seeds: int = 2
    tileable: bool = False
    loss: str = next(iter(LOSSES))
    mode: str = MODES[0]
    iterations: int = 0  # at the last scale; 0: the mode's own (the base config's, or the paper's)
    extend: bool = False  # a fill: the image centred on a canvas of `size` (else the canvas is the image)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the page accepts before it decodes anything."""

    max_upload_mb: float = 20.0
    max_side: int = 4096  # of an uploaded photo
    max_size: int = 1024  # of an output
    max_seeds: int = 8


def synthesis_config(base: SynthesisConfig, settings: PageSettings, fill_size=None, blends=(),
                     fill: str = "", mask: str = "", guide: str = "", regions=()) -> SynthesisConfig:
    """The config of a page run: `base` with the page's controls applied; paper mode takes PAPER_MODE's values
    first, as `texsynth --paper` does for the flags not given. blends: [(photo, weight)] mixed into the
    photo's statistics. A fill run's canvas is its image's own size."""
    values = dict(PAPER_MODE) if settings.mode == "paper" else {}
    values.update(size=fill_size or (settings.size, settings.size), tileable=settings.tileable,
                  loss=LOSSES[settings.loss], blend=tuple(f"{path}:{weight:g}" for path, weight in blends),
                  fill=fill, mask=mask, guide=guide, region=tuple(regions))
    if settings.iterations:
        values["iterations"] = settings.iterations
    return dataclasses.replace(base, **values)


def command(config: SynthesisConfig, source: str, seeds: int, output_dir: str, weights: str = "") -> list[str]:
    """The `texsynth` command that makes the same images: every setting that differs from the defaults."""
    default = SynthesisConfig()
    args = ["texsynth", f"--input={source}", f"--seeds={seeds}"]
    for field in dataclasses.fields(SynthesisConfig):
        value = getattr(config, field.name)
        if value == getattr(default, field.name):
            continue
        if isinstance(value, bool):
            args.append(f"--{'' if value else 'no'}{field.name}")
        else:  # a square size as one number, as people write it
            square = field.name == "size" and value[0] == value[1]
            args.append(f"--{field.name}={value[0] if square else config_lib.format_value(value)}")
    return args + ([f"--weights={weights}"] if weights else []) + [f"--output_dir={output_dir}"]


def check_upload(path: str, limits: Limits, what: str) -> tuple[int, int]:
    """(height, width) of an uploaded image from its header, after the size checks; PageError otherwise."""
    megabytes = os.path.getsize(path) / 2**20
    if megabytes > limits.max_upload_mb:
        raise PageError(f"the {what} is {megabytes:.1f} MB, more than the page takes ({limits.max_upload_mb:g} MB); "
                        "give a smaller file")
    try:
        height, width = image_io.check_image(path, what, "the page")
    except ValueError as e:
        raise PageError(str(e).replace(path, os.path.basename(path))) from None
    if max(height, width) > limits.max_side:
        raise PageError(f"the {what} is {width}x{height} pixels, more than the page takes ({limits.max_side} on a "
                        "side); shrink it first")
    return height, width


def mask_from_layers(layers, shape) -> np.ndarray:
    """The fill mask, uint8 [H, W] (255: make anew), from the image editor's painted layers: every pixel that
    any stroke covers. shape: the image's (height, width)."""
    mask = np.zeros(shape, bool)
    for layer in layers or ():
        layer = np.asarray(layer)
        if layer.ndim == 3 and layer.shape[:2] == tuple(shape):
            mask |= (layer[..., 3] if layer.shape[2] == 4 else layer.max(axis=2)) > 0
    return mask.astype(np.uint8) * 255


def map_from_layers(layers, shape) -> np.ndarray | None:
    """The guide map, uint8 [H, W, 3] of flat colours, from the map editor's painted layers (the last on top):
    each painted pixel takes the nearest of MAP_COLOURS (a soft stroke edge is no region of its own), the rest
    UNPAINTED; None when nothing is painted. shape: the canvas's (height, width)."""
    palette = np.array(list(MAP_COLOURS.values()), np.float32)
    out, painted = np.zeros((*shape, 3), np.uint8), np.zeros(shape, bool)
    out[:] = UNPAINTED
    for layer in layers or ():
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[:2] != tuple(shape) or layer.shape[2] != 4:
            continue
        stroke = layer[..., 3] > 0
        nearest = np.argmin(((layer[..., None, :3].astype(np.float32) - palette) ** 2).sum(-1), axis=-1)
        out[stroke] = palette[nearest[stroke]].astype(np.uint8)
        painted |= stroke
    return out if painted.any() else None


def run_folder(output_dir: str, name: str) -> str:
    """A new folder for one page run: `<output_dir>/<YYYYmmdd-HHMMSS>-<name>` (a suffix if taken)."""
    base = os.path.join(output_dir, time.strftime("%Y%m%d-%H%M%S") + "-" + (re.sub(r"[^\w.-]", "_", name) or "run"))
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}"
    os.makedirs(path)
    return path


def earlier_runs(output_dir: str, limit: int = 24) -> list[tuple[str, str]]:
    """[(image, caption)] of the runs in `output_dir` (the page's and the CLI's: any `*_run.json` record up to
    two folders down), newest first: each finished record's first image."""
    records = []
    for depth in ("*_run.json", "*/*_run.json", "*/*/*_run.json"):
        records += [p for p in _glob(output_dir, depth) if not p.startswith(os.path.join(output_dir, UPLOADS))]
    shown = []
    for path in sorted(records, key=os.path.getmtime, reverse=True):
        try:
            with open(path) as f:
                record = json.load(f)
            first = os.path.join(os.path.dirname(path), record["outputs"]["images"][0])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue  # a record of another shape, or images not written (a diverged run)
        if os.path.isfile(first):
            size = "x".join(map(str, record["config"]["size"]))
            shown.append((first, f"{os.path.basename(os.path.dirname(path))}: {size}, "
                                 f"{len(record['seeds'])} seed(s), {record['status']}"))
        if len(shown) == limit:
            break
    return shown


def _glob(folder: str, pattern: str) -> list[str]:
    return glob.glob(os.path.join(glob.escape(folder), pattern))


def judge_text(record: dict) -> str:
    """The judge's figures of a run record, as a line for the page."""
    judge = record.get("judge")
    if not judge or judge.get("stopped"):
        return "No judge figures (stopped before the judge)." if judge else ""
    diversity = judge.get("diversity")
    text = (f"Judge: distance to the source **{judge['distance_mean']:.4g}** (lower is closer), diversity "
            f"**{'n/a (one seed)' if diversity is None else f'{diversity:.4g}'}** (higher: the seeds differ more), "
            f"copied fraction **{judge['copy_fraction_max']:.3f}** (0: nothing copied).")
    if judge.get("made_distance") is not None:
        text += f" The made pixels' distance: **{judge['made_distance']:.4g}**."
    if judge.get("region_distances"):
        names = {guide.hex_colour(rgb): name for name, rgb in MAP_COLOURS.items()}
        names[guide.hex_colour(UNPAINTED)] = "unpainted"
        text += " Each region's distance to its own photo: " + ", ".join(
            f"{names.get(colour, colour)} " + ("n/a" if d is None else f"**{d:.4g}**")
            for colour, d in judge["region_distances"].items()) + "."
    return text


class Studio:
    """The page's engine room: runs one synthesis at a time (Gradio's queue keeps the others waiting) into
    `output_dir`, streaming what it reaches; `stop` ends a visitor's run, keeping what it has."""

    def __init__(self, output_dir: str, base: SynthesisConfig = SynthesisConfig(), weights: str = "",
                 limits: Limits = Limits()):
        self.output_dir, self.base, self.weights, self.limits = os.path.abspath(output_dir), base, weights, limits
        self.compiled = set()  # (config, seeds) run before in this process: their programs are cached
        self.stops = {}  # visitor -> threading.Event of their run

    def stop(self, visitor: str = "") -> str:
        event = self.stops.get(visitor)
        if event is None:
            return "Nothing is running."
        event.set()
        return "Stopping after this iteration; the images reached so far will be saved."

    def prepare(self, photo: str | None, settings: PageSettings, blends=(), fill_image=None, fill_layers=None,
                map_layers=None, region_photos=None):
        """Check what was given and write the run's inputs into a new run folder: (work, config, folder,
        command). blends: [(photo or None, weight)], the photos to mix in; map_layers: the guide map editor's layers; region_photos: {MAP_COLOURS name: photo} (a
        colour without one takes the photo). PageError (one line) before anything is written."""
        limits = self.limits
        if not 1 <= settings.seeds <= limits.max_seeds:
            raise PageError(f"seeds {settings.seeds} is not in 1..{limits.max_seeds}; choose fewer")
        if not 32 <= settings.size <= limits.max_size:
            raise PageError(f"size {settings.size} is not in 32..{limits.max_size}; choose another size")
        if photo:
            check_upload(photo, limits, "photo")
        blends = [(path, weight) for path, weight in blends if path]
        for path, _ in blends:
            check_upload(path, limits, "photo to blend")
        if sum(weight for _, weight in blends) >= 1:
            raise PageError(f"the blend weights add up to {sum(w for _, w in blends):g}; keep them under 1 (the "
                            "first photo keeps the rest)")
        fill = fill_image is not None
        painted = [np.shape(layer)[:2] for layer in fill_layers or ()
                   if np.ndim(layer) == 3 and mask_from_layers([layer], np.shape(layer)[:2]).any()]
        if painted and not fill:
            raise PageError("the fill strokes have no image under them; upload the image to fill first, then paint "
                            "(or clear its canvas)")
        if fill:
            fill_image = np.asarray(fill_image)
            if any(shape != fill_image.shape[:2] for shape in painted):
                raise PageError("the fill strokes were painted before the image showed; clear its canvas and paint "
                                "again once the image is there")
            if max(fill_image.shape[:2]) > limits.max_size:
                raise PageError(f"the image to fill is {fill_image.shape[1]}x{fill_image.shape[0]}, more than "
                                f"{limits.max_size} on a side; shrink it first")
            mask = mask_from_layers(fill_layers, fill_image.shape[:2])
            height, width = fill_image.shape[:2]
            if settings.extend and settings.size < max(height, width):
                raise PageError(f"the size {settings.size} is smaller than the image to fill ({width}x{height}); "
                                "choose a larger size to extend it, or untick extend")
            if not (mask.any() or settings.extend or settings.tileable):
                raise PageError("nothing is painted on the image to fill; paint over the parts to make anew (or "
                                "tick extend, or tileable to make the image wrap)")
        elif not photo:
            raise PageError("no photo; drop a texture photo on the page first")
        regions = {name: path for name, path in (region_photos or {}).items() if path}
        for name, path in regions.items():
            check_upload(path, limits, f"{name} region's photo")
        shape = next((np.asarray(x).shape[:2] for x in map_layers or () if np.asarray(x).ndim == 3), None)
        guide_map = map_from_layers(map_layers, shape) if shape else None
        if regions and guide_map is None:
            raise PageError("a region has a photo but nothing is painted on the map; paint its colour on the map")
        if guide_map is not None and fill:
            raise PageError("a map and a fill together are not supported; clear one of them")
        name = os.path.splitext(os.path.basename(photo))[0] if photo else "fill"
        # A config that cannot run (a tileable size that pool4 cannot take, ...) fails here, before the folder.
        fill_size = fill_image.shape[:2] if fill and not settings.extend else None
        synthesis_config(self.base, settings, fill_size)
        folder = run_folder(self.output_dir, name)
        inputs = {}
        if photo:
            inputs["photo"] = os.path.join(folder, os.path.basename(photo))
            _copy(photo, inputs["photo"])
        blended = []
        for number, (path, weight) in enumerate(blends, 1):
            blended.append((os.path.join(folder, f"blend{number}_" + os.path.basename(path)), weight))
            _copy(path, blended[-1][0])
        if fill:
            inputs["fill"] = os.path.join(folder, "fill.png")
            image_io.save_png(inputs["fill"], fill_image[..., :3].astype(np.uint8))
            if mask.any():
                inputs["mask"] = os.path.join(folder, "fill_mask.png")
                image_io.save_png(inputs["mask"], np.repeat(mask[..., None], 3, axis=2))
        region_items = []
        if guide_map is not None:
            inputs["guide"] = os.path.join(folder, "map.png")
            image_io.save_png(inputs["guide"], guide_map)
            for name, path in regions.items():
                copy = os.path.join(folder, f"{name}_" + os.path.basename(path))
                _copy(path, copy)
                region_items.append(f"{guide.hex_colour(MAP_COLOURS[name])}:{copy}")
        config = synthesis_config(self.base, settings, fill_size, blended, inputs.get("fill", ""),
                                  inputs.get("mask", ""), inputs.get("guide", ""), region_items)
        source = inputs.get("photo") or inputs["fill"]
        work = [(source, list(range(settings.seeds)))]
        return work, config, folder, command(config, source, settings.seeds, folder, self.weights)

    def run(self, settings: PageSettings, photo=None, blends=(), fill_image=None, fill_layers=None,
            visitor: str = "", map_layers=None, region_photos=None):
        """Yield dicts as the run goes: {"status", "previews"} while it runs, then {"status", "images",
        "judge", "files", "command", "folder"} (or {"status"} alone when it could not start)."""
        try:
            work, config, folder, args = self.prepare(photo, settings, blends, fill_image, fill_layers,
                                                      map_layers, region_photos)
        except (ValueError, OSError) as e:
            yield {"status": f"**Error:** {e}"}
            return
        events, stop, outcome = queue.Queue(), threading.Event(), {}
        self.stops[visitor] = stop
        options = RunOptions(output_dir=folder, log_every=5)
        shape = _shape(config, settings.seeds)

        def work_thread():
            try:
                outcome["report"] = run_job(work, self.weights or None, config, options, log=events.put,
                                            should_stop=stop.is_set, on_progress=events.put,
                                            record_extra={"command": args, "page": True})
            except (ValueError, OSError) as e:
                outcome["error"] = str(e)
            except Exception as e:  # the page shows every failure as a line, never a traceback
                outcome["error"] = f"{type(e).__name__}: {e}"

        thread = threading.Thread(target=work_thread, daemon=True)
        thread.start()
        status = ("Compiling the programs for this size and seed count (the first run of this shape; later "
                  "ones reuse them)..." if shape not in self.compiled else "Starting...")
        previews, said = [], []
        try:
            while thread.is_alive() or not events.empty():
                changed, deadline = False, time.monotonic() + 0.5  # at most two page updates a second
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        event = events.get(timeout=left)
                    except queue.Empty:
                        break
                    changed = True
                    if isinstance(event, str):
                        said.append(event)
                    elif event["event"] == "scale":
                        previews += [(path, f"scale {event['scale'] + 1}, seed {seed}")
                                     for seed, path in enumerate(event["files"])]
                    else:
                        status = _step_text(event)
                if changed:
                    yield {"status": status, "previews": list(previews)}
            thread.join()
        finally:
            self.stops.pop(visitor, None)
            stop.set()  # a closed page stops its run
        if "error" in outcome:
            if not _glob(folder, "*_run.json"):  # only the copies of this run's inputs: nothing half there
                shutil.rmtree(folder, ignore_errors=True)
            yield {"status": f"**Error:** {outcome['error']}"}
            return
        self.compiled.add(shape)
        yield self.results(outcome["report"], folder, args, said)

    def results(self, report, folder: str, args: list[str], said: list[str]) -> dict:
        result = report.results[0]
        with open(result.record_path) as f:
            record = json.load(f)
        names = record["outputs"]
        shown = names.get("tiled") or names.get("images") or []
        images = [(os.path.join(folder, name), f"seed {seed}" + (" (2x2 repeat)" if names.get("tiled") else ""))
                  for seed, name in zip(record["seeds"], shown)]
        files = [os.path.join(folder, n) for n in (names.get("images") or []) + (names.get("tiled") or [])]
        files.append(result.record_path)
        verdict = {"complete": "Done", "interrupted": "Stopped; the images reached are saved",
                   "stalled": "The loss did not fall: these are the starting noise",
                   "diverged": "The loss became NaN: no images"}.get(result.status, result.status)
        took = record.get("timings_s", {}).get("total")
        status = f"**{verdict}**" + (f" in {progress.format_duration(took)}" if took else "") + f": `{folder}`"
        hints = [line for line in said if line.startswith("input:")]
        return {"status": status + ("\n\n" + "\n".join(hints) if hints else ""), "images": images,
                "judge": judge_text(record), "files": files, "command": " ".join(args), "folder": folder}


def _shape(config: SynthesisConfig, seeds: int) -> tuple:
    """What a run's compiled programs depend on: the settings, less the names of the page's files (their
    count stays: a map's regions, the blended photos)."""
    files = {"fill": bool, "mask": bool, "guide": bool, "blend": len, "region": len}
    return tuple(files.get(f.name, lambda v: v)(getattr(config, f.name))
                 for f in dataclasses.fields(config)) + (seeds,)


def _step_text(event: dict) -> str:
    text = f"Iteration {event['step']}/{event['iterations']}"
    if event["scales"] > 1:
        text += f", scale {event['scale'] + 1}/{event['scales']}"
    if event["loss"] is not None:
        text += ", loss " + " ".join(f"{loss:.3g}" for loss in event["loss"])
    if event["remaining_s"] is not None:
        text += f", about {progress.format_duration(event['remaining_s'])} left"
    return text


def _copy(source: str, target: str) -> None:
    with open(source, "rb") as f, storage.writer(target) as out:
        shutil.copyfileobj(f, out)


def build_page(studio: Studio):
    """The Gradio page (gr.Blocks) over `studio`; `serve` launches it."""
    import gradio as gr

    defaults, limits = PageSettings(), studio.limits
    with gr.Blocks(title="texsynth") as page:
        gr.Markdown("# texsynth\nDrop a texture photo, choose, press **Synthesize**: new images of the same "
                    "texture, one per seed (Gatys et al. 2015, coarse to fine).")
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.File(label=f"Texture photo (PNG or JPEG, up to {limits.max_upload_mb:g} MB)",
                                file_types=["image"], elem_id="photo")
                preview = gr.Image(label="Photo", interactive=False, height=200, elem_id="preview")
                size = gr.Slider(64, limits.max_size, value=defaults.size, step=16, label="Size (pixels)",
                                 elem_id="size")
                seeds = gr.Slider(1, limits.max_seeds, value=defaults.seeds, step=1, label="Seeds", elem_id="seeds")
                tileable = gr.Checkbox(value=defaults.tileable, label="Tileable (seamless, shown as a 2x2 repeat)",
                                       elem_id="tileable")
                loss = gr.Dropdown(list(LOSSES), value=defaults.loss, label="Loss", elem_id="loss")
                mode = gr.Radio(list(MODES), value=defaults.mode, label="Mode (paper: one scale, 2000 iterations)",
                                elem_id="mode")
                iterations = gr.Number(value=0, precision=0, minimum=0, label="Iterations at full size (0: the "
                                       "mode's own)", elem_id="iterations")
                with gr.Accordion("Blend in other photos", open=False):
                    blending = []
                    for number in (1, 2):
                        blending += [gr.File(label=f"Photo {number + 1}", file_types=["image"],
                                             elem_id=f"blend{number}"),
                                     gr.Slider(0.05, 0.9, value=0.3, step=0.05, label="Its weight (the first "
                                               "photo keeps the rest)", elem_id=f"blend{number}_weight")]
                with gr.Accordion("Fill holes in your own image", open=False):
                    gr.Markdown("Upload the image, paint over what to make anew; the rest stays exactly as it "
                                "is. Or extend it to the size above, or tick tileable to make it wrap. The "
                                "texture comes from the photo above, or from the image itself.")
                    fill = gr.ImageEditor(label="Image to fill (paint the holes)", type="numpy",
                                          image_mode="RGBA", elem_id="fill", layers=False,
                                          brush=gr.Brush(colors=["#ff00ff"], default_size=24))
                    extend = gr.Checkbox(value=False, label="Extend it to the size above (centred)", elem_id="extend")
                with gr.Accordion("Paint a map of regions", open=False):
                    gr.Markdown("Paint where each photo goes; each colour takes the photo given for it, the "
                                "unpainted parts the photo above.")
                    paint = gr.ImageEditor(label="Map of the output", type="numpy", image_mode="RGBA",
                                           elem_id="map", layers=False, sources=(), canvas_size=(512, 512),
                                           brush=gr.Brush(colors=["#%02x%02x%02x" % c for c in MAP_COLOURS.values()],
                                                          color_mode="fixed", default_size=48))
                    region_files = [gr.File(label=f"Photo for {name}", file_types=["image"], elem_id=f"region_{name}")
                                    for name in MAP_COLOURS]
                with gr.Row():
                    go = gr.Button("Synthesize", variant="primary", elem_id="go")
                    halt = gr.Button("Stop", elem_id="stop")
            with gr.Column(scale=2):
                status = gr.Markdown("Ready.", elem_id="status")
                previews = gr.Gallery(label="Coarse scales, as they finish", columns=4, height=220,
                                      elem_id="previews")
                images = gr.Gallery(label="Results", columns=2, height=480, elem_id="results")
                judge = gr.Markdown(elem_id="judge")
                files = gr.File(label="Downloads (PNGs and the run record)", file_count="multiple",
                                interactive=False, elem_id="downloads")
                cli = gr.Textbox(label="The same run from the command line", interactive=False, elem_id="command")
                history = gr.Gallery(value=lambda: earlier_runs(studio.output_dir), label="Earlier runs in "
                                     f"{studio.output_dir}", columns=6, rows=1, height=200, object_fit="cover",
                                     allow_preview=False, elem_id="history")

        def show(path):
            if not path:
                return None, "Ready."
            try:
                height, width = check_upload(path, limits, "photo")
            except PageError as e:
                return None, f"**Error:** {e}"
            return path, f"Photo {width}x{height}: ready."

        photo.change(show, photo, [preview, status], queue=False)

        def synthesize(photo, size, seeds, tileable, loss, mode, iterations, blend1, weight1, blend2, weight2, fill,
                       extend, paint, red, green, blue, request: gr.Request):  # region photos: MAP_COLOURS' order
            settings = PageSettings(int(size), int(seeds), bool(tileable), loss, mode, int(iterations or 0),
                                    bool(extend))
            blends = [(blend1, float(weight1)), (blend2, float(weight2))]
            background = fill.get("background") if isinstance(fill, dict) else None
            layers = fill.get("layers") if isinstance(fill, dict) else None
            strokes = paint.get("layers") if isinstance(paint, dict) else None
            for update in studio.run(settings, photo, blends, background, layers, request.session_hash or "",
                                     strokes, dict(zip(MAP_COLOURS, (red, green, blue)))):
                yield (update["status"], update.get("previews", gr.skip()), update.get("images", gr.skip()),
                       update.get("judge", gr.skip()), update.get("files", gr.skip()),
                       update.get("command", gr.skip()),
                       earlier_runs(studio.output_dir) if "folder" in update else gr.skip())

        go.click(synthesize, [photo, size, seeds, tileable, loss, mode, iterations, *blending, fill, extend, paint,
                              *region_files],
                 [status, previews, images, judge, files, cli, history], concurrency_limit=1,
                 concurrency_id="device")
        def stop(request: gr.Request):
            return studio.stop(request.session_hash or "")

        halt.click(stop, None, status, queue=False)
    return page


def serve(studio: Studio, host: str = "127.0.0.1", port: int = 7860, say=print) -> None:
    """Serve the page until Ctrl-C. Uploads are kept under the output folder (Gradio's temp folder is moved
    there), and only the output folder is served."""
    os.environ["GRADIO_TEMP_DIR"] = os.path.join(studio.output_dir, UPLOADS)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    page = build_page(studio)
    page.queue(default_concurrency_limit=1)
    say(f"texsynth page: http://{'[' + host + ']' if ':' in host else host}:{port} (Ctrl-C to stop); runs go into "
        f"{studio.output_dir}")
    page.launch(server_name=host, server_port=port, max_file_size=f"{studio.limits.max_upload_mb:g}mb",
                allowed_paths=[studio.output_dir], quiet=True, footer_links=[])
