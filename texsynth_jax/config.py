"""SynthesisConfig: every setting of a synthesis, in one frozen (hashable, jit-static) dataclass.

Construction checks everything that can be checked without the network: `check_fields` holds every
field to its annotation and normalises what a user naturally writes (`size=64`, `loss="gram:1,swd:0.1"`,
lists) into tuples, then `__post_init__` refuses values that cannot work (weights float32 cannot
carry, a starting noise that saturates the image, counts beyond any use). Each error is one line
naming the setting and a valid value.
"""

import dataclasses
import math
import numbers
import typing

from texsynth_jax import content as content_lib
from texsynth_jax import fill as fill_lib
from texsynth_jax import guide, optimizers, terms, vgg

POOLINGS = ("avg", "max")
PRECISIONS = ("fp32", "bf16")
CONV_STRATEGIES = ("auto", "lax", "matmul", "shifted", "winograd", "winograd4")
PROJECTIONS = ("fixed", "fresh")
INITS = ("auto", "normal", "uniform")
UPSAMPLING = ("nearest", "linear", "cubic", "lanczos3")
MESHES = ("auto", "seeds", "space", "none")

# Bounds of what can work. Weights (a loss weight, a layer weight, and their product): L-BFGS is blind to
# the loss's scale (gram:1e-13 ... gram:1e10 gave the same run at 48 px), until float32 breaks: its
# first step and its curvature need the squares of the gradient, which flush to 0 below ~1e-38. gram:1e-15
# returned the grey start untouched at 48 px; gram:1e20 ended 4x worse and 1e30 did not move. Gradient
# RMS at weight 1 and 64 px: gram 6e-5, spectrum 4e-6, swd and hist 0.03; it shrinks with the pixel count
# (gram 1.7e-5 at 128 px) and 15-60x over 20 iterations (spectrum further, but only as it reaches ~0). So
# 1e-8 keeps a margin of 25x or more at 4096 px, and 1e8 (PyTorch tutorials weigh style 1e6) stays far
# from overflow.
MIN_WEIGHT, MAX_WEIGHT = 1e-8, 1e8
# init_scale, in [0, 1] pixel units: uniform's 0.5 covers [0, 1]. A normal start beyond 0.5 puts pixels in
# the sigmoid's flat tails, where they stay (64 px, 30 iterations, pixels within 0.01 of 0 or 1 at the start
# / end, loss at the end): 0.01-0.25: none, 2e-4 to 4e-4; 0.5: 2% / 2%, 2.4e-3; 1: 26% / 31%, 0.035;
# 25 (someone thinking in 0-255): 96% / 99.7%, 32, the grey noise barely changed.
MAX_INIT_SCALE = {"auto": 0.5, "normal": 0.5, "uniform": 0.5}
# Counts. history: L-BFGS keeps 2 image-sized float32 arrays per pair and seed (1000 pairs at 256 px: 1.5 GB
# a seed), and pairs beyond ~100 bring nothing (64 px, 200 iterations: loss 3.3e-5, 3.2e-5, 2.9e-5, 2.85e-5
# with 5, 20, 100, 400 pairs), so 1000 is beyond any use; what does fit in memory, budget.py checks. Total iterations: a run keeps a loss
# per iteration and seed (host lists, the JSON record), L-BFGS settles within thousands, and 1,000,000 is
# hours even on a GPU.
MAX_HISTORY = 1000
# source_scale enlarges at most 8x: beyond it the statistics are of interpolation, not of the photo.
MAX_SOURCE_SCALE = 8.0
MAX_ITERATIONS = 1_000_000
# --iterations=0 (the default): the last scale's iterations by the output's size (SynthesisConfig.last_iterations).
ITERATIONS, SMALL_ITERATIONS, SMALL_PIXELS = 60, 150, 128 * 128
# --init=auto (the default): the start by the output's size, as the iterations: the paper's almost flat grey (normal,
# std init_scale) up to SMALL_PIXELS, uniform noise of half-width UNIFORM_SCALE above. At 256 px on the six photos never
# tuned on, against the paper run to convergence, the uniform start's seeds are 0.996x as diverse (grey: 0.964x;
# more on five photos, as much on water) at 0.66x the distance (0.65x); at 128 px it gained nothing (water 0.94x
# against 1.03x, lace and bark as grey's; bench/results/versus_paper_checking_*.md).
INIT_SCALE, UNIFORM_SCALE = 0.01, 0.4
# --coarsest_padding=auto (the default): the coarsest scale of an output up to TORUS_PIXELS is a torus (circular
# padding, the source's statistics wrapped alike). It lays the texture out from noise alike everywhere, where nothing
# but the border tells one place from another, so with a border every seed copies the source's border layout; the
# finer scales keep --padding and give the output source-like borders. Measured against the paper run to convergence
# (bench/results/versus_paper_*.md): at 128 px on the tuning photos 0.67x its distance / 1.01x its diversity (every
# coarse scale a torus: 0.77x / 1.02x; none: 0.54x / 0.83x), on the six never tuned on 0.87x / 1.02x (none: 0.81x /
# 0.94x); at 256 px on the six 0.69x / 1.02x (none: 0.66x / 0.996x; on ink, a tuning photo, every seed had the
# source's plume in the source's corner).
TORUS_PIXELS = 256 * 256
COARSEST_PADDINGS = ("auto", *vgg.PADDINGS)
# The default layers: the paper's (conv1_1, pool1..pool4) and the first convolutions of blocks 1-4, each weighing 1.
# On the six photos never tuned on, against the paper run to convergence: 0.65x its judge distance at 256 px (the
# paper's layers 0.73x), 0.81x at 128 px (0.91x), diversity 0.97x and 0.94x (0.99x, 0.95x), ~1.1x the time per
# iteration (bench/results/versus_paper_checking_*.md).
LAYERS = ("conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2", "conv3_1", "pool3", "conv4_1", "pool4")
MAX_PYRAMID = 4  # halvings: a fifth would leave the deepest layer 2x2 positions only on outputs of 512 px or more
# A content photo's layout needs its content layer to see this many positions along the shorter side at every scale
# (content_min_view): at 64 px, gravel onto scikit-image's cat, the default schedule's 16 px scale (conv4_2 2x2) lost
# it (evaluate.layout_similarity 0.27 at weight 1), without that scale 0.61, and on 128 px outputs, whose coarsest
# scale leaves conv4_2 4x4, 0.6-0.9 (docs/content.md).
CONTENT_MIN_VIEW = 4

def setting(default, help: str, choices: tuple | None = None, example: str | None = None, repeatable: bool = False):
    """A dataclass field with the help text (and choices) of its command-line flag: cli.py defines one
    flag per field by walking the fields, so a new setting cannot be left out of the CLI. `example`: a
    valid value as flag text, for error messages (default: the default). `repeatable`: a tuple field whose
    flag may be given several times, each adding items."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "example": example,
                                                        "repeatable": repeatable})


@dataclasses.dataclass(frozen=True)
class SynthesisConfig:
    """How to synthesise.

    Attributes:
      size: output (height, width) in pixels.
      layers: VGG layers whose Gram matrices are matched. Gatys et al.: conv1_1, pool1..pool4; the default
        adds the first convolutions of blocks 1-4 (nearer the source on photos never tuned on, docs/quality.md).
      layer_weights: one non-negative weight per layer.
      pooling: "avg" (Gatys et al.) or "max".
      iterations: L-BFGS iterations at `size`, after the coarser scales; 0: by the size (`last_iterations`).
      history: L-BFGS memory (the paper's scipy run used 20).
      init: the starting noise around mid-grey: "normal" (Gatys: almost flat grey), "uniform", or "auto": by the
        output's size (`start`), normal up to 128x128 pixels, uniform of half-width UNIFORM_SCALE above.
      init_scale: its spread in [0, 1] pixel units: the std (normal, and auto's small outputs) or the
        half-width (uniform: 0.5 covers [0, 1], as PyTorch implementations that bound pixels with L-BFGS-B start).
      precision: "fp32", or "bf16" features with float32 Gram matrices and loss (faster on
        hardware with bf16 matrix units).
      remat: recompute each VGG block's activations in the backward pass instead of keeping
        them: less peak memory for large outputs, at the cost of one more forward pass.
      conv: convolution strategy (conv.py): "lax" (XLA's convolution), "matmul", "shifted",
        "winograd", "winograd4", or "auto": the one measured fastest on the backend (conv.DEFAULTS),
        "lax" where not measured.
      optimizer: "lbfgs" (texsynth_jax's L-BFGS) or "optax" (optax.lbfgs); see optimizers.py.
      loss: the loss terms and their weights as "name:weight" items (terms.py): ("gram:1",) is the
        paper; e.g. ("gram:1", "swd:1", "spectrum:0.1").
      projections: random directions of the swd term: "fixed" per seed for the whole run, or
        "fresh" every iteration.
      padding: what VGG's convolutions see beyond the border: "zero", "reflect" or "circular".
      tileable: synthesise a torus (circular padding in every convolution of the output), so the
        output repeats without a seam; the source's statistics still use `padding`.
      coarse_iterations: coarse-to-fine: iterations at each coarser scale, coarsest first; each
        scale is half the size of the next (the last one is `size`, run for `iterations`), and its
        targets come from the source shrunk by the same factor, so texture elements keep their
        size relative to the output. Default (100, 60): the coarse scales measured by
        bench/schedules.py, the last scale's (`last_iterations`) by bench/versus_paper.py against the paper run to
        convergence (docs/quality.md, "Against the converged paper"); empty: one scale, as in the paper.
      upsample: how each scale's result is enlarged to start the next (jax.image methods).
      source_scale: the source is resized by this factor before its statistics are taken
        (synthesis.scale_source), so its texture elements come out that much smaller (< 1) or larger.
      blend: further sources mixed into the main one's statistics, "path:weight[:source_scale]" items
        (parse_blend); the main source keeps 1 less their weights (main_weight). Read by the job layer
        (runner); from Python, mix targets with Engine.blend_targets.
      colors: "" (as synthesised), "source" or a palette image's path: the final images' colours are
        moved onto that image's distribution (colors.transfer), their structure kept; with a palette the
        sources' statistics are of their luminance (colors.grey). Read by the job layer (runner); from
        Python, synthesise from colors.grey(source) and call colors.transfer on the images. "content": each
        pixel keeps the --content photo's chrominance (colors.keep_colors), from luminance statistics too.
      content, content_weight, content_layer, content_start: a photo whose layout the output keeps (Gatys et al.
        2016, content.py): its features at content_layer, weighed by content_weight (0: the texture alone),
        starting from it ("content") or from noise. The job layer reads the photo; from Python, pass it to
        Engine.content_targets (the weight travels in the targets, the layer and start are the program's).
      coarsest_padding: what the coarsest scale's convolutions see beyond the border, the output's and the source's
        (the other scales': `padding`; one scale: `padding`); "auto" (`coarsest_scale_padding`): circular for outputs
        up to 256x256 pixels whose layout nothing else gives (no fill, weighed content, guide or tileable), else
        `padding`.
      coarse_min_view: the coarse scales run are those of coarse_iterations at which the deepest layer
        has at least this many positions along the shorter side (`scale_sizes`); the coarser ones are
        left out with their iterations, so small outputs run fewer scales.
      pyramid: at every scale the loss also matches the output halved (2x2 means), quartered, ... up to this
        many times, each against the source shrunk alike (`pyramid_sizes`; Snelgrove 2017). The shrunk
        copies' statistics travel in the targets (synthesis.compute_targets, under terms.PYRAMID).
    """

    size: tuple[int, int] = setting((256, 256), "Output size: one int N for NxN, or H,W.", example="256 or 256,384")
    layers: tuple[str, ...] = setting(LAYERS, "VGG layers whose Gram matrices are matched (Gatys et al.: "
                                      "conv1_1,pool1,pool2,pool3,pool4; the default adds conv1_2, conv2_1, "
                                      "conv2_2, conv3_1 and conv4_1: nearer the source, docs/quality.md).")
    layer_weights: tuple[float, ...] = setting((1.0,) * len(LAYERS),
                                               "One weight per layer, comma separated. When --layers is given "
                                               "without --layer_weights, every layer weighs 1.",
                                               example="1,1,1,1,1,1,1,1,1,1 (one per layer)")
    pooling: str = setting("avg", "Pooling in VGG: avg (Gatys et al.) or max.", POOLINGS)
    iterations: int = setting(0, "L-BFGS iterations at --size (after the coarser scales of --coarse_iterations); "
                              f"0: by the size, {SMALL_ITERATIONS} up to {SMALL_PIXELS:,} pixels (128x128), where "
                              f"they are cheap, {ITERATIONS} above: measured against the paper run to convergence "
                              "(bench/versus_paper.py, docs/quality.md).")
    history: int = setting(20, "L-BFGS memory (pairs kept).")
    init: str = setting("auto", "Starting noise around mid-grey: normal (Gatys: almost flat grey), uniform, or auto: "
                        f"by the size, normal up to {SMALL_PIXELS:,} pixels (128x128), uniform of half-width "
                        f"{UNIFORM_SCALE:g} above, where its seeds came out more diverse against the paper run to "
                        "convergence (docs/quality.md).", INITS)
    init_scale: float = setting(INIT_SCALE, "Spread of the starting noise in [0, 1] pixel units: the std (normal, and "
                                "auto up to 128x128) or the half-width (uniform; 0.5 covers [0, 1]).")
    precision: str = setting("fp32", "fp32, or bf16 features (float32 Grams and loss): faster where the "
                             "hardware has bf16 matrix units.", PRECISIONS)
    remat: bool = setting(False, "Recompute each VGG block in the backward pass instead of keeping its "
                          "activations (less memory, one more forward pass).")
    conv: str = setting("auto", "Convolution strategy; auto: the one measured fastest on the backend "
                        "(conv.DEFAULTS; cpu: lax), lax where not measured (gpu, tpu so far).", CONV_STRATEGIES)
    optimizer: str = setting("lbfgs", "L-BFGS implementation: lbfgs (texsynth_jax's, the measured default) or "
                             "optax (optax.lbfgs with a backtracking line search); see bench/README.md.",
                             optimizers.NAMES)
    loss: tuple[str, ...] = setting(("gram:1",), "Loss terms as name:weight, comma separated: gram (Gatys et al.), "
                                    f"swd, hist, spectrum (see README). Known: {', '.join(terms.names())}.",
                                    example="gram:1 or gram:1,swd:0.1")
    projections: str = setting("fixed", "Random directions of the swd term: fixed per seed, or fresh every "
                               "iteration.", PROJECTIONS)
    padding: str = setting("reflect", "What every VGG convolution sees beyond the image border: zero, reflect "
                           "(mirrored) or circular (wrapped). Default reflect, by bench/borders.py: borders as good "
                           "as zero's, and a tileable output's targets without zero padding's dark-edge features.",
                           vgg.PADDINGS)
    tileable: bool = setting(False, "Synthesise a seamless tile: the output wraps around at its borders "
                             "(circular padding), and a 2x2 repeat is written beside it. The size must be a "
                             "multiple of the deepest layer's downsampling (16 for pool4).")
    coarse_iterations: tuple[int, ...] = setting((100, 60), "Coarse-to-fine: iterations at each coarser scale, "
                                                 "coarsest first, each half the size of the next (100,60 runs size/4 "
                                                 "then size/2 before --iterations at --size; chosen by "
                                                 "bench/schedules.py). Empty: one scale (the paper).",
                                                 example="100,60 (or empty for one scale)")
    upsample: str = setting("cubic", "How each coarse scale's result is enlarged to start the next.", UPSAMPLING)
    source_scale: float = setting(1.0, "Resize the source by this factor before its statistics are taken: texture "
                                  "elements keep their size in source pixels, so 0.25 makes a 1024 px photo's "
                                  "leaves a quarter as large in the output, and four times as many.",
                                  example="0.5")
    blend: tuple[str, ...] = setting((), "Further sources whose statistics are mixed into the main source's, as "
                                     "path:weight or path:weight:source_scale items; the main source keeps the rest "
                                     "of the weight (b.png:0.3,c.png:0.2 leaves it 0.5).",
                                     example="b.png:0.3,c.png:0.2")
    colors: str = setting("", "Colours of the outputs, moved onto them after synthesis (colors.transfer): a palette "
                          "image's whole colour distribution (the structure then synthesised from the sources' "
                          "luminance), 'source' for the source's exact channel histograms (outputs that drifted in "
                          "colour), or 'content' for each pixel's colour of the --content photo (colors.keep_colors). "
                          "Empty: as synthesised.", example="palette.png or source")
    guide: str = setting("", "Guided synthesis: a map of the output (any size, resized to --size by nearest "
                         "neighbour), one flat colour per region; each region matches its own source's statistics "
                         "(--region, --source_guide; colours without one take --input). Empty: no guide.",
                         example="map.png")
    region: tuple[str, ...] = setting((), "A guide colour's source, RRGGBB:path or RRGGBB:path:source_scale.",
                                      example="4a7a2c:grass.png", repeatable=True)
    source_guide: str = setting("", "A map of --input in the colours of --guide: a colour found in it takes its "
                                "statistics from that part of the input photo.", example="input_map.png")
    fill: str = setting("", "Work on your own image: its kept pixels stay exactly as they are and the rest is "
                        "synthesised to continue them: holes (--mask, or the image's transparent pixels), a --size "
                        "larger than it (extended past its borders, placed by --place), a band along its borders "
                        "(with --tileable: it then wraps). Statistics from its kept pixels unless --input names "
                        "another source. --size defaults to the image's. Empty: synthesis from noise.",
                        example="photo.png")
    mask: str = setting("", "The pixels of --fill to make anew: white make, black keep (any size: resized to the "
                        "image's by nearest neighbour). Empty: the image's transparent pixels, if any.",
                        example="mask.png")
    place: str = setting("center", "Where --fill's image lies on a larger --size canvas.", fill_lib.PLACES)
    band: float = setting(0.0625, "With --fill and --tileable: the width re-synthesised along each border so the "
                          "image wraps, as a share of the shorter side (measured: docs/fill.md).")
    content: str = setting("", "Carry the texture onto this photo's layout (Gatys et al. 2016): the output keeps its "
                           "features at --content_layer while matching --input's texture. --size defaults to the "
                           "photo's. Empty: no content.", example="photo.png")
    content_weight: float = setting(1.0, "With --content: how strongly the photo's layout holds against the texture "
                                    "(0: not at all, the texture alone; measured: docs/content.md).")
    content_layer: str = setting("conv4_2", "With --content: the VGG layer whose features the output keeps (Gatys "
                                 "et al. 2016: conv4_2; shallower keeps more of the photo's detail).")
    content_start: str = setting("content", "With --content: start from the photo (with each seed's noise) or from "
                                 "noise.", content_lib.STARTS)
    coarsest_padding: str = setting("auto", "What the coarsest scale's convolutions see beyond the border, the "
                                    "output's and the source's (the finer scales': --padding); auto: circular up to "
                                    "256x256 pixels when no --fill, --content, --guide or --tileable gives the layout, "
                                    "else --padding. A torus has no border to copy the source's layout from, so the "
                                    "seeds differ more (docs/quality.md).", COARSEST_PADDINGS)
    coarse_min_view: int = setting(0, "Coarse scales at which the deepest layer would see fewer than this many "
                                   "positions along the shorter side are left out, coarsest first, with their "
                                   "iterations (e.g. 3: at 128 px no 32 px scale, where pool4 sees 2x2). 0, the "
                                   "default, keeps every scale: on the tuning photos at 128 px the 32 px scale "
                                   "helps (bench/versus_paper.py, docs/quality.md).")
    pyramid: int = setting(1, "Also match the loss terms on the output halved, quartered, ... (this many halvings, "
                           "2x2 means) against the source shrunk alike, at every scale, each halving only where the "
                           "deepest layer still sees 2x2 positions (Snelgrove 2017: multi-scale Grams). 1: nearer the "
                           "source than 0, the Grams of the image alone (at 256 px 0.73x the converged paper's "
                           "distance against 0.78x), in ~1.1x the time (docs/quality.md). With --guide the halved "
                           "output keeps the regions, halved. A part of a photo (--fill's kept pixels, "
                           "--source_guide) has no halved statistics: they would see past its mask.")

    def __post_init__(self):
        check_fields(self)
        loss_weights = parse_loss(self.loss)
        if min(self.size) < 1:
            raise ValueError(f"size={format_value(self.size)} has a side below 1; give a positive size like 256,256")
        if not self.layers:
            raise ValueError("layers is empty; name at least one VGG layer, e.g. conv1_1,pool1,pool2,pool3,pool4")
        unknown = next((l for l in self.layers if l not in vgg.layer_names("vgg19")), None)
        if unknown is not None:  # vgg19 names every layer of vgg16; check_network checks the arch's own
            raise ValueError(f"unknown layer {unknown!r} in layers={format_value(self.layers)}; use VGG names like "
                             "conv1_1,pool1,pool2,pool3,pool4")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers={format_value(self.layers)} names a layer twice; name each layer once, like "
                             "conv1_1,pool1,pool2,pool3,pool4")
        ones = format_value((1.0,) * len(self.layers))  # a valid layer_weights for these layers
        if len(self.layer_weights) != len(self.layers):
            raise ValueError(f"{len(self.layer_weights)} layer_weights for {len(self.layers)} layers; give one "
                             f"weight per layer, like {ones}")
        if any(w < 0 for w in self.layer_weights):
            raise ValueError(f"layer_weights={format_value(self.layer_weights)} has a negative weight; weights must "
                             f"be >= 0, like {ones}")
        if not any(w > 0 for w in self.layer_weights):
            raise ValueError(f"every layer weight is 0; give at least one layer a positive weight, like {ones}")
        for w in self.layer_weights:
            check_weight(w, f"layer_weights={format_value(self.layer_weights)}", ones)
        check_scale_of_weights(self.layer_weights, loss_weights)
        if self.iterations < 0:
            raise ValueError(f"iterations={self.iterations} is negative; give a count like 60, or 0 to choose by size")
        if any(n < 1 for n in self.coarse_iterations):
            raise ValueError(f"coarse_iterations={format_value(self.coarse_iterations)} has a count below 1; give "
                             "each coarser scale at least one iteration, like 100,60, or leave it empty for one scale")
        if self.total_iterations > MAX_ITERATIONS:
            raise ValueError(
                f"{self.total_iterations} iterations over all scales (iterations={self.iterations}, coarse_iterations="
                f"{format_value(self.coarse_iterations)}) exceed {MAX_ITERATIONS:,}: a run keeps a loss per iteration "
                "and seed, and L-BFGS settles within thousands; give fewer, like iterations=20, coarse_iterations=100,60")
        if not 1 <= self.history <= MAX_HISTORY:
            raise ValueError(f"history={self.history} is not in 1..{MAX_HISTORY}: L-BFGS keeps that many pairs of "
                             "image-sized arrays per seed, and more than ~100 bring nothing; give one like 20")
        if self.init_scale < 0 or self.init_scale > MAX_INIT_SCALE[self.init]:
            raise ValueError(
                f"init_scale={self.init_scale:g} is out of range for init={self.init}: it is a spread in [0, 1] pixel "
                f"units (not 0-255), at most {MAX_INIT_SCALE[self.init]:g} "
                + ("(the whole [0, 1])" if self.init == "uniform" else "(beyond it the sigmoid saturates the start)")
                + "; give one like 0.01")
        if self.init == "auto" and self.init_scale != INIT_SCALE and self.start[0] == "uniform":
            raise ValueError(f"init_scale={self.init_scale:g} goes unused: init=auto starts a {self.size[0]}x"
                             f"{self.size[1]} output from uniform noise of half-width {UNIFORM_SCALE:g}; give "
                             "init=normal or init=uniform with it")
        if not 0 < self.source_scale <= MAX_SOURCE_SCALE:
            raise ValueError(f"source_scale={self.source_scale:g} is out of range; give a factor in (0, "
                             f"{MAX_SOURCE_SCALE:g}] like 0.5 (half the size: smaller texture elements)")
        parse_blend(self.blend)
        guide.parse_regions(self.region)
        if self.place not in fill_lib.PLACES:
            raise ValueError(f"place={self.place!r} is unknown; use one of {', '.join(fill_lib.PLACES)}")
        if not 0 < self.band < 0.5:
            raise ValueError(f"band={self.band:g} is not a share in (0, 0.5) of the image's shorter side; give one "
                             "like 0.0625")
        if self.content_layer not in vgg.layer_names("vgg19"):
            raise ValueError(f"content_layer={self.content_layer!r} is unknown; use a VGG layer name like conv4_2")
        if self.content_weight < 0:
            raise ValueError(f"content_weight={self.content_weight:g} is negative; give a weight >= 0 like 1 (0: the "
                             "texture alone)")
        if self.content_weight:
            check_weight(self.content_weight, f"content_weight={self.content_weight:g}", "1")
        if self.colors == "content" and not self.content:
            raise ValueError("colors=content keeps the colours of --content's photo, and no --content is given; "
                             "give --content=photo.png, or colors=source or a palette image")
        if self.coarse_min_view < 0:
            raise ValueError(f"coarse_min_view={self.coarse_min_view} is negative; give a count of positions like 4, "
                             "or 0 to keep every coarse scale")
        if not 0 <= self.pyramid <= MAX_PYRAMID:
            raise ValueError(f"pyramid={self.pyramid} is not in 0..{MAX_PYRAMID}; give a count of halvings like 1, or "
                             "0 for none")
        if len(set(self.scale_sizes)) < len(self.scale_sizes):
            raise ValueError(f"size {self.size[0]}x{self.size[1]} is too small for {len(self.scale_sizes) - 1} "
                             "coarser scales (two would have the same size); give fewer coarse_iterations, or "
                             "coarse_iterations= (empty) for one scale")
        if self.tileable:
            check_tileable(self.size, self.layers)

    @property
    def scale_sizes(self) -> list[tuple[int, int]]:
        """Output (height, width) of every scale, coarsest first; the last is `size`. Each halves the next,
        rounded (tileable: to a multiple of the deepest downsampling, which circular pooling needs)."""
        return self._scales[0]

    @property
    def scale_iterations(self) -> list[int]:
        """Iterations of every scale, coarsest first."""
        return self._scales[1]

    @property
    def _scales(self) -> tuple[list[tuple[int, int]], list[int]]:
        """(sizes, iterations) of the scales run: coarse_iterations' scales, less the coarsest ones at which
        the deepest layer sees fewer than coarse_min_view positions, then `size`."""
        factor = deepest_downsampling(self.layers)
        multiple = factor if self.tileable else 1
        side = lambda s, halvings: max(multiple, round(s / 2**halvings / multiple) * multiple)
        n = len(self.coarse_iterations)
        coarse = [((side(self.size[0], n - k), side(self.size[1], n - k)), iterations)
                  for k, iterations in enumerate(self.coarse_iterations)]
        kept = [(size, iterations) for size, iterations in coarse if min(size) // factor >= self.coarse_min_view]
        return [size for size, _ in kept] + [tuple(self.size)], [n for _, n in kept] + [self.last_iterations]

    @property
    def last_iterations(self) -> int:
        """Iterations at `size`: `iterations`, or where 0, by the size: small outputs' last scale runs longer,
        where it is cheap and its coarse scales see least (at 128 px 150 iterations came 0.90x the converged
        paper's distance against 60's 1.02x; at 256 px 60 came 0.73x: docs/quality.md)."""
        if self.iterations:
            return self.iterations
        return SMALL_ITERATIONS if self._small else ITERATIONS

    @property
    def _small(self) -> bool:
        """Whether the output has at most SMALL_PIXELS pixels: the size rule of `last_iterations` and `start`."""
        return self.size[0] * self.size[1] <= SMALL_PIXELS

    @property
    def coarsest_scale_padding(self) -> str:
        """The coarsest scale's padding where there are several: `coarsest_padding`, or where "auto", circular for
        outputs up to TORUS_PIXELS whose layout is the synthesis's own to choose, else `padding`."""
        if self.coarsest_padding != "auto":
            return self.coarsest_padding
        free = not (self.fill or (self.content and self.content_weight) or self.guide or self.tileable)
        torus = self.size[0] * self.size[1] <= TORUS_PIXELS
        return "circular" if torus and free else self.padding

    @property
    def start(self) -> tuple[str, float]:
        """(init, init_scale) of the starting noise: as given, or where init is "auto", by the size as
        `last_iterations`: small outputs the paper's grey (normal, init_scale), larger ones uniform of half-width
        UNIFORM_SCALE (at 256 px its seeds 0.996x as diverse as the converged paper's, grey's 0.964x:
        docs/quality.md)."""
        if self.init != "auto":
            return self.init, self.init_scale
        if self._small:
            return "normal", self.init_scale
        return "uniform", UNIFORM_SCALE

    def pyramid_sizes(self, size=None) -> list[tuple[int, int]]:
        """(height, width) of the shrunk copies of an output of `size` (default: `size`) whose statistics
        `pyramid` also matches, each half the one before (rounded down), while the deepest layer sees 2x2
        positions; tileable, only exact halvings to a multiple of it (circular pooling needs whole windows)."""
        factor = deepest_downsampling(self.layers)
        sizes, (h, w) = [], tuple(self.size if size is None else size)
        for _ in range(self.pyramid):
            if self.tileable and (h % 2 or w % 2 or (h // 2) % factor or (w // 2) % factor):
                break
            h, w = h // 2, w // 2
            if min(h, w) < 2 * factor:
                break
            sizes.append((h, w))
        return sizes

    @property
    def total_iterations(self) -> int:
        """Iterations over all scales: what a run's progress, file names and record count to."""
        return sum(self.scale_iterations)

    @property
    def blend_sources(self) -> list[tuple[str, float, float]]:
        """[(path, weight, source_scale)] of `blend`, a source's scale the config's where it gives none."""
        return [(path, weight, self.source_scale if scale is None else scale)
                for path, weight, scale in parse_blend(self.blend)]

    @property
    def palette(self) -> str | None:
        """The palette image's path of `colors`, or None ("" or "source")."""
        return None if self.colors in ("", "source", "content") else self.colors

    @property
    def region_sources(self) -> list[tuple[tuple[int, int, int], str, float]]:
        """[(colour, path, source_scale)] of `region`, a source's scale the config's where it gives none."""
        return [(colour, path, self.source_scale if scale is None else scale)
                for colour, path, scale in guide.parse_regions(self.region)]

    @property
    def main_weight(self) -> float:
        """The main source's share of a blend: 1 less the blended sources' weights."""
        return max(0.0, 1.0 - sum(weight for _, weight, _ in parse_blend(self.blend)))

    @property
    def content_min_view(self) -> int:
        """The coarse_min_view at which every scale's content layer sees CONTENT_MIN_VIEW positions along its
        shorter side (the command line's default with --content): in positions of the deepest layer."""
        ratio = vgg.downsampling("vgg19", self.content_layer) / deepest_downsampling(self.layers)
        return max(self.coarse_min_view, math.ceil(CONTENT_MIN_VIEW * ratio))

    @property
    def loss_weights(self) -> dict[str, float]:
        """{term: weight} from `loss` ("gram:1" items; a bare name weighs 1)."""
        return parse_loss(self.loss)

    def check_network(self, arch: str) -> None:
        """Raise ValueError unless every layer exists in `arch` and the output is big enough for it."""
        names = vgg.layer_names(arch)
        for layer in self.layers:
            if layer not in names:
                raise ValueError(f"unknown layer {layer!r} for {arch}; use names like conv1_1, pool1 ... ({', '.join(names)})")
        for size in self.scale_sizes:
            check_size(size, arch, self.layers, "size" if size == tuple(self.size) else
                       f"the coarsest scale ({len(self.scale_sizes) - 1} halvings of {self.size[0]}x{self.size[1]})")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a job runs and where it writes; nothing here changes the images."""

    output_dir: str = setting("out", "Folder for the images, contact sheet, JSON record and loss plot; created "
                              "if missing. A URL (gs://bucket/folder, with the cloud extra) writes into a bucket.")
    log_every: int = setting(50, "Log a progress line every N iterations.")
    save_every: int = setting(0, "Save intermediate images every N iterations (0: off).")
    checkpoint_every: int = setting(0, "Checkpoint every K iterations (0: off), atomically, into --output_dir; "
                                    "rerun the same command with --resume to continue after a crash or preemption.")
    resume: bool = setting(False, "Continue from the checkpoints in --output_dir and skip sources already done.")
    overwrite: bool = setting(False, "Replace outputs of an earlier run in --output_dir instead of refusing.")
    mesh: str = setting("auto", "How this host's devices share the work: seeds (split the batch of seeds), space "
                        "(split each image into strips, for outputs too big for one device), none (one device); "
                        "auto: seeds when there are several devices.", MESHES)
    judge: bool = setting(True, "Judge every finished source's outputs with the built-in judge (texsynth_jax.evaluate: "
                          "distance to the source, diversity, copied fraction) and write the figures into the record.")

    def __post_init__(self):
        check_fields(self)
        if not self.output_dir.strip():
            raise ValueError("--output_dir is empty; name the folder for the outputs, e.g. --output_dir=out")
        if self.log_every < 1:
            raise ValueError(f"--log_every={self.log_every} must be at least 1; give a count like 50")
        if self.save_every < 0:
            raise ValueError(f"--save_every={self.save_every} is negative; give 0 (off) or a count like 100")
        if self.checkpoint_every < 0:
            raise ValueError(f"--checkpoint_every={self.checkpoint_every} is negative; give 0 (off) or a count like 50")
        if self.mesh not in MESHES:
            raise ValueError(f"--mesh={self.mesh!r} is unknown; use one of {MESHES}")


def parse_blend(items) -> list[tuple[str, float, float | None]]:
    """[(path, weight, source_scale or None)] of "path:weight[:source_scale]" items, split at their last colons
    (a URL keeps its own); ValueError naming the fix for anything else."""
    out, example = [], "b.png:0.3 or b.png:0.3:0.5"
    for item in items:
        fields = item.rsplit(":", 2)
        numbers = []
        while len(fields) > 1 and len(numbers) < 2 and _number(fields[-1]) is not None:
            numbers.insert(0, _number(fields.pop()))
        path = ":".join(fields).strip()
        if not path or not numbers:
            raise ValueError(f"blend item {item!r} is not path:weight; give items like {example}")
        weight, scale = numbers[0], numbers[1] if len(numbers) > 1 else None
        if not 0 <= weight <= 1:
            raise ValueError(f"blend weight {weight:g} of {path} is outside 0..1; give a share like {path}:0.3")
        if scale is not None and not 0 < scale <= MAX_SOURCE_SCALE:
            raise ValueError(f"blend source_scale {scale:g} of {path} is outside (0, {MAX_SOURCE_SCALE:g}]; give a "
                             f"factor like {path}:{weight:g}:0.5")
        out.append((path, weight, scale))
    total = sum(weight for _, weight, _ in out)
    if total > 1 + 1e-9:
        raise ValueError(f"blend weights sum to {total:g}, past 1 (the main source keeps 1 less their sum); give "
                         "smaller ones, like b.png:0.3,c.png:0.2")
    return out


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_loss(items) -> dict[str, float]:
    """{term: weight} of "name:weight" items (a bare name weighs 1), terms looked up in the registry (terms.names()) at
    call time (so registered terms count); ValueError naming the fix for anything else."""
    weights, known = {}, ", ".join(terms.names())
    for item in items:
        name, _, weight = item.partition(":")
        name = name.strip()
        if name not in terms.names():
            raise ValueError(f"loss term {name!r} is unknown; use name:weight items of {known} (e.g. gram:1,swd:0.1), "
                             "or register it first (terms.register; --imports on the command line)")
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"loss weight {item!r} is not a finite number >= 0; write name:weight like {name}:1")
        check_weight(value, f"loss weight {item!r}", f"{name}:1")
        if name in weights:
            raise ValueError(f"loss names {name!r} twice; give each term once, like gram:1,swd:0.1")
        weights[name] = value
    if not any(w > 0 for w in weights.values()):
        raise ValueError("loss has no term with a positive weight; give one, e.g. gram:1")
    return weights


def check_weight(weight: float, what: str, example: str) -> None:
    """Raise ValueError if a positive weight is outside [MIN_WEIGHT, MAX_WEIGHT]: float32 cannot carry
    the weighted loss and its gradient there (0 is fine: the term or layer is off)."""
    if weight and not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise ValueError(f"{what}: {weight:g} is {'too small' if weight < MIN_WEIGHT else 'too large'} for float32 "
                         f"arithmetic (the loss or its gradient {'underflows to 0' if weight < MIN_WEIGHT else 'overflows'}"
                         f"); give a weight in {MIN_WEIGHT:g}..{MAX_WEIGHT:g} (or 0 for off), like {example}")


def check_scale_of_weights(layer_weights, loss_weights) -> None:
    """Raise ValueError if a layer's weight times a term's weight (what the loss applies to that layer's
    distance) leaves [MIN_WEIGHT, MAX_WEIGHT], though each is inside."""
    for term, w in loss_weights.items():
        for lw in layer_weights:
            if w and lw and not MIN_WEIGHT <= w * lw <= MAX_WEIGHT:
                raise ValueError(f"loss weight {term}:{w:g} times layer weight {lw:g} is {w * lw:g}, outside "
                                 f"{MIN_WEIGHT:g}..{MAX_WEIGHT:g} where float32 carries the loss; bring the weights "
                                 "nearer 1, like gram:1 and layer_weights=1,1,1,1,1")


def check_fields(settings) -> None:
    """Hold every field of the frozen dataclass `settings` to its type annotation, normalising in place;
    call it first in `__post_init__`.

    bool: True or False only (not "false", not 0). int: integers (not bools, not 2.0). float: finite
    ints or floats, stored as float. str: text, one of the field's `choices` if it has any.
    tuple[T, ...] / tuple[T, T]: a tuple or list of T, comma-separated text ("gram:1,swd:0.1",
    "100,60"; empty text is the empty tuple), or one T (for tuple[T, T], repeated: size=64 is
    (64, 64)). Other annotations are left alone.

    Raises:
      ValueError: one line naming the field, what is wrong, and a valid value.
    """
    hints = typing.get_type_hints(type(settings))
    for field in dataclasses.fields(settings):
        value = _convert(field, hints[field.name], getattr(settings, field.name), field.name)
        object.__setattr__(settings, field.name, value)


def parse_value(field: dataclasses.Field, value):
    """A field's value from its flag: text converted to the field's type (tuple fields from
    comma-separated text, `size` by parse_size); values absl already typed (bool, int, float flags)
    pass as they are, for construction to check. ValueError naming `--field` and a valid value."""
    if not isinstance(value, str) or field.type is str:
        return value
    if field.name == "size":
        return parse_size(value)
    return _convert(field, field.type, value, f"--{field.name}")


def parse_size(text: str) -> tuple[int, int]:
    """`N` for NxN or `H,W`; ValueError naming --size otherwise."""
    fix = "give one positive int like 256, or H,W like 256,384"
    try:
        size = _convert(None, tuple[int, int], text, "--size")
    except ValueError:
        raise ValueError(f"--size={text} is not a size; {fix}") from None
    if min(size) < 1:
        raise ValueError(f"--size={text} has a side below 1; {fix}")
    return size


def format_value(value) -> str:
    """A setting as text (a flag's default): tuples as comma lists, floats without trailing zeros."""
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


_KINDS = {bool: "a bool", int: "a whole number", float: "a finite number", str: "text"}


def _convert(field, kind, value, label: str):
    """`value` as `kind` (see check_fields); `label` names it in errors (`size`, or `--size` for a flag)."""
    if typing.get_origin(kind) is tuple:
        return _convert_tuple(field, kind, value, label)
    if kind not in _KINDS:
        return value
    parsed = _from_text(kind, value.strip()) if isinstance(value, str) and label.startswith("--") else value
    problem = f"is not {_KINDS[kind]}" if parsed is _UNPARSED else _problem(kind, parsed)
    if problem:
        raise ValueError(f"{_shown(label, value)} {problem}; give {_KINDS[kind]} like {_example(field, kind, label)}")
    value = kind(parsed)
    choices = field.metadata.get("choices") if field is not None else None
    if choices and value not in choices:
        raise ValueError(f"{_shown(label, value)} is unknown; use one of {', '.join(choices)}")
    return value


def _convert_tuple(field, kind, value, label: str):
    args = typing.get_args(kind)
    element, length = args[0], (None if args[-1] is Ellipsis else len(args))
    example = _example(field, kind, label)
    what = f"comma-separated {'items' if element is str else _KINDS[element].removeprefix('a ') + 's'}"
    fail = lambda problem: ValueError(f"{_shown(label, value)} {problem}; give {what} like {example}")
    if isinstance(value, str):
        items = [p.strip() for p in value.split(",")] if value.strip() else []
        if "" in items:
            raise fail("has an empty item")
        parsed = [_from_text(element, p) for p in items]
        bad = next((p for p, v in zip(items, parsed) if v is _UNPARSED), None)
        if bad is not None:
            raise fail(f"has {bad!r}, which is not {_KINDS[element]}")
        items = parsed
    elif isinstance(value, (tuple, list)):
        items = list(value)
    elif _problem(element, value) is None:
        items = [value]  # size=64 is (64, 64) (below); coarse_iterations=100 is (100,)
    else:
        raise fail(f"is not a tuple of {_KINDS[element].removeprefix('a ')}s")
    for item in items:
        problem = _problem(element, item)
        if problem:
            raise fail(f"has {item!r}, which {problem}")
    if length is not None and len(items) == 1:
        items = items * length  # "64" and [64] are (64, 64), as size=64 is
    if length is not None and len(items) != length:
        raise fail(f"has {len(items)} values, not {length}")
    return tuple(element(item) for item in items)


def _problem(kind, value) -> str | None:
    """What is wrong with `value` as a `kind`, or None."""
    if kind is bool:
        return None if isinstance(value, bool) else "is not a bool"
    if kind is int:
        return None if isinstance(value, numbers.Integral) and not isinstance(value, bool) else "is not a whole number"
    if kind is float:
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return "is not a number"
        return None if math.isfinite(value) else "is not finite"
    if kind is str:
        return None if isinstance(value, str) else "is not text"
    return None


_UNPARSED = object()


def _from_text(kind, text: str):
    """A flag's text as `kind`, or _UNPARSED if it is not one."""
    try:
        if kind is bool:
            return {"true": True, "1": True, "false": False, "0": False}.get(text.lower(), _UNPARSED)
        return kind(text)
    except ValueError:
        return _UNPARSED


def _example(field, kind, label: str) -> str:
    """A valid value of the field, as flag text or (bools) as Python writes it."""
    if kind is bool:
        return "true or false" if label.startswith("--") else "True or False"
    if field is not None and field.metadata.get("example"):
        return field.metadata["example"]
    return format_value(field.default) if field is not None else "256,256"


def _shown(label: str, value) -> str:
    """`--flag=text` as typed on the command line, `name='value'` (repr) from Python."""
    return f"{label}={value}" if label.startswith("--") else f"{label}={value!r}"


def check_tileable(size, layers) -> None:
    """Raise ValueError unless every pooling of an output of `size` sees whole windows down to the
    deepest of `layers`: a window across the border would break the torus."""
    deepest, factor = deepest_layer(layers), deepest_downsampling(layers)
    for side in size:
        if side % factor:
            fix = -(-side // factor) * factor
            raise ValueError(f"size {side} is not a multiple of {factor} ({deepest}); use {fix} for --tileable")


def scaled_size(size, scale: float) -> tuple[int, int]:
    """A source's (height, width) after `source_scale`: each side times `scale`, rounded, at least 1."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def scaled_source(size, scale: float, what: str) -> tuple[tuple[int, int], str]:
    """(size after source_scale, how messages name it): a source of `size` called `what`, resized by `scale`."""
    if scale == 1:
        return tuple(size), what
    return scaled_size(size, scale), f"{what} ({size[0]}x{size[1]} at source_scale {scale:g})"


def deepest_layer(layers) -> str | None:
    """The most downsampled of `layers` (the same in every VGG; vgg19 names every layer of vgg16, and a
    name it lacks is reported by check_network), or None if none is known."""
    known = [l for l in layers if l in vgg.layer_names("vgg19")]
    return max(known, key=lambda l: vgg.downsampling("vgg19", l), default=None)


def deepest_downsampling(layers) -> int:
    """How many times the deepest of `layers` is smaller than the image per side (1 if none is known)."""
    deepest = deepest_layer(layers)
    return 1 if deepest is None else vgg.downsampling("vgg19", deepest)


def check_size(size, arch: str, layers, what: str) -> None:
    """Raise ValueError if an image of `size` leaves no pixel at the deepest of `layers`."""
    deepest = max(layers, key=lambda l: vgg.downsampling(arch, l))
    factor = vgg.downsampling(arch, deepest)
    if min(size) < factor:
        raise ValueError(
            f"{what} {size[0]}x{size[1]} is too small for {deepest}, which needs at least {factor}x{factor} px; "
            "use a larger size or shallower layers")


# The faithful paper mode (texsynth --paper): Gatys et al. (2015) as their own code ran it
# (leongatys/DeepTextures). The recommended defaults depart from it in scales and padding.
# Not reproducible here: their VGG-19 was "normalised" (filters rescaled to mean activation 1; the
# usual vgg19-d01eb7cb.pth is the plain caffe VGG-19), and scipy's L-BFGS-B kept each pixel in the
# source's [min, max], where this project optimises a latent whose sigmoid is the image.
PAPER_MODE = {
    "coarse_iterations": (),  # one scale
    # scipy's L-BFGS-B ran maxiter=2000 with tolerances 0; this project's paper comparisons
    # (bench/convergence.py, README) ran 300, where the judge distance is still falling: --iterations=300.
    "iterations": 2000,
    "history": 20,  # L-BFGS-B's memory in their code
    "loss": ("gram:1",),  # Gram matrices only
    "layers": ("conv1_1", "pool1", "pool2", "pool3", "pool4"),  # features after ReLU, no conv5/pool5
    "layer_weights": (1.0, 1.0, 1.0, 1.0, 1.0),  # equal (1e9 each in their notebook: a scale, not a shape)
    "pooling": "avg",  # every max pool of VGG-19 replaced by 2x2 average pooling
    "padding": "zero",  # caffe's VGG pads every convolution with zeros
    "init": "normal",  # Gaussian noise of std 1 in 0-255 units: 1/255 in [0, 1] units, almost flat grey
    "init_scale": 1 / 255,
    "tileable": False,
    "pyramid": 0,  # the Grams of the image itself only
}
