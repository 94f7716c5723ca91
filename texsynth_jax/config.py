"""SynthesisConfig: every setting of a synthesis, in one frozen (hashable, jit-static) dataclass."""

import dataclasses
import math
import typing

from texsynth_jax import terms, vgg

POOLINGS = ("avg", "max")
PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("optax", "lbfgs")
CONV_STRATEGIES = ("auto", "lax", "matmul", "shifted", "winograd", "winograd4")
PROJECTIONS = ("fixed", "fresh")
INITS = ("normal", "uniform")
UPSAMPLING = ("nearest", "linear", "cubic", "lanczos3")


def setting(default, help: str, choices: tuple | None = None):
    """A dataclass field with the help text (and choices) of its command-line flag: run.py defines one
    flag per field by walking the fields, so a new setting cannot be left out of the CLI."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass(frozen=True)
class SynthesisConfig:
    """How to synthesise.

    Attributes:
      size: output (height, width) in pixels.
      layers: VGG layers whose Gram matrices are matched (Gatys et al.: conv1_1, pool1..pool4).
      layer_weights: one non-negative weight per layer.
      pooling: "avg" (Gatys et al.) or "max".
      iterations: L-BFGS iterations.
      history: L-BFGS memory (the paper's scipy run used 20).
      init: the starting noise around mid-grey: "normal" (Gatys: almost flat grey) or "uniform".
      init_scale: its spread in [0, 1] pixel units: the std (normal) or the half-width (uniform:
        0.5 covers [0, 1], as PyTorch implementations that bound pixels with L-BFGS-B start).
      precision: "fp32", or "bf16" features with float32 Gram matrices and loss (faster on
        hardware with bf16 matrix units).
      remat: recompute each VGG block's activations in the backward pass instead of keeping
        them: less peak memory for large outputs, at the cost of one more forward pass.
      conv: convolution strategy: "lax" (XLA's convolution), "matmul" (nine shifted matrix
        products), or "auto" (the fastest for the backend).
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
        size relative to the output. Empty: one scale, as in the paper.
      upsample: how each scale's result is enlarged to start the next (jax.image methods).
    """

    size: tuple[int, int] = setting((256, 256), "Output size: one int N for NxN, or H,W.")
    layers: tuple[str, ...] = setting(("conv1_1", "pool1", "pool2", "pool3", "pool4"),
                                      "VGG layers whose Gram matrices are matched (Gatys et al.: "
                                      "conv1_1,pool1,pool2,pool3,pool4).")
    layer_weights: tuple[float, ...] = setting((1.0, 1.0, 1.0, 1.0, 1.0),
                                               "One weight per layer, comma separated. When --layers is given "
                                               "without --layer_weights, every layer weighs 1.")
    pooling: str = setting("avg", "Pooling in VGG: avg (Gatys et al.) or max.", POOLINGS)
    iterations: int = setting(500, "L-BFGS iterations.")
    history: int = setting(20, "L-BFGS memory (pairs kept).")
    init: str = setting("normal", "Starting noise around mid-grey: normal (Gatys: almost flat grey) or uniform.",
                        INITS)
    init_scale: float = setting(0.01, "Spread of the starting noise in [0, 1] pixel units: the std (normal) or "
                                "the half-width (uniform; 0.5 covers [0, 1]).")
    precision: str = setting("fp32", "fp32, or bf16 features (float32 Grams and loss): faster where the "
                             "hardware has bf16 matrix units.", PRECISIONS)
    remat: bool = setting(False, "Recompute each VGG block in the backward pass instead of keeping its "
                          "activations (less memory, one more forward pass).")
    conv: str = setting("auto", "Convolution strategy; auto picks the fastest for the backend.", CONV_STRATEGIES)
    optimizer: str = setting("lbfgs", "L-BFGS implementation: lbfgs (texsynth_jax's, the measured default) or "
                             "optax (optax.lbfgs with a backtracking line search); see bench/README.md.",
                             OPTIMIZERS)
    loss: tuple[str, ...] = setting(("gram:1",), "Loss terms as name:weight, comma separated: gram (Gatys et al.), "
                                    f"swd, hist, spectrum (see README). Known: {', '.join(terms.names())}.")
    projections: str = setting("fixed", "Random directions of the swd term: fixed per seed, or fresh every "
                               "iteration.", PROJECTIONS)
    padding: str = setting("reflect", "What every VGG convolution sees beyond the image border: zero, reflect "
                           "(mirrored) or circular (wrapped). Default reflect, by bench/borders.py: borders as good "
                           "as zero's, and a tileable output's targets without zero padding's dark-edge features.",
                           vgg.PADDINGS)
    tileable: bool = setting(False, "Synthesise a seamless tile: the output wraps around at its borders "
                             "(circular padding), and a 2x2 repeat is written beside it. The size must be a "
                             "multiple of the deepest layer's downsampling (16 for pool4).")
    coarse_iterations: tuple[int, ...] = setting((), "Coarse-to-fine: iterations at each coarser scale, coarsest "
                                                 "first, each half the size of the next (e.g. 100,50 runs size/4 "
                                                 "then size/2 before --iterations at --size). Empty: one scale "
                                                 "(the paper).")
    upsample: str = setting("cubic", "How each coarse scale's result is enlarged to start the next.", UPSAMPLING)

    def __post_init__(self):
        check_finite(self)
        parse_loss(self.loss)
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} is unknown; use one of {INITS}")
        if not 0 <= self.init_scale <= (0.5 if self.init == "uniform" else math.inf):
            raise ValueError(f"init_scale={self.init_scale} is out of range; give a spread >= 0 (at most 0.5, the "
                             "whole [0, 1], for uniform)")
        if self.projections not in PROJECTIONS:
            raise ValueError(f"projections={self.projections!r} is unknown; use one of {PROJECTIONS}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size={self.size} must be two positive ints (height, width)")
        if not self.layers:
            raise ValueError("layers is empty; name at least one VGG layer, e.g. conv1_1")
        if len(self.layer_weights) != len(self.layers):
            raise ValueError(
                f"{len(self.layer_weights)} layer_weights for {len(self.layers)} layers; give one weight per layer")
        if any(w < 0 for w in self.layer_weights):
            raise ValueError(f"layer_weights={self.layer_weights} has a negative weight; weights must be >= 0")
        if not any(w > 0 for w in self.layer_weights):
            raise ValueError("every layer weight is 0; give at least one layer a positive weight")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers={self.layers} names a layer twice; name each layer once")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r} is unknown; use one of {POOLINGS}")
        if self.iterations < 1:
            raise ValueError(f"iterations={self.iterations} must be at least 1; give a positive count")
        if self.history < 1:
            raise ValueError(f"history={self.history} must be at least 1; keep at least one L-BFGS pair (20 is usual)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is unknown; use one of {PRECISIONS}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is unknown; use one of {OPTIMIZERS}")
        if self.conv not in CONV_STRATEGIES:
            raise ValueError(f"conv={self.conv!r} is unknown; use one of {CONV_STRATEGIES}")
        if self.padding not in vgg.PADDINGS:
            raise ValueError(f"padding={self.padding!r} is unknown; use one of {vgg.PADDINGS}")
        if any(n < 1 for n in self.coarse_iterations):
            raise ValueError(f"coarse_iterations={format_value(self.coarse_iterations)} has a count below 1; give "
                             "each coarser scale at least one iteration, or leave it empty for one scale")
        if len(set(self.scale_sizes)) < len(self.scale_sizes):
            raise ValueError(f"size {self.size[0]}x{self.size[1]} is too small for {len(self.coarse_iterations)} "
                             "coarser scales (two would have the same size); give fewer coarse_iterations")
        if self.upsample not in UPSAMPLING:
            raise ValueError(f"upsample={self.upsample!r} is unknown; use one of {UPSAMPLING}")
        if self.tileable:
            check_tileable(self.size, self.layers)

    @property
    def scale_sizes(self) -> list[tuple[int, int]]:
        """Output (height, width) of every scale, coarsest first; the last is `size`. Each halves the next,
        rounded (tileable: to a multiple of the deepest downsampling, which circular pooling needs)."""
        multiple = deepest_downsampling(self.layers) if self.tileable else 1
        side = lambda s, halvings: max(multiple, round(s / 2**halvings / multiple) * multiple)
        n = len(self.coarse_iterations)
        return [(side(self.size[0], n - k), side(self.size[1], n - k)) for k in range(n)] + [tuple(self.size)]

    @property
    def scale_iterations(self) -> list[int]:
        """Iterations of every scale, coarsest first."""
        return [*self.coarse_iterations, self.iterations]

    @property
    def total_iterations(self) -> int:
        """Iterations over all scales: what a run's progress, file names and record count to."""
        return sum(self.scale_iterations)

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
                       f"the coarsest scale ({len(self.coarse_iterations)} halvings of {self.size[0]}x{self.size[1]})")


def parse_loss(items) -> dict[str, float]:
    """{term: weight} of "name:weight" items; ValueError naming the fix for anything else."""
    weights = {}
    for item in items:
        name, _, weight = item.partition(":")
        name = name.strip()
        if name not in terms.names():
            raise ValueError(f"loss term {name!r} is unknown; use name:weight items of {', '.join(terms.names())} "
                             "(e.g. gram:1,swd:1)")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"loss weight {item!r} is not a finite number >= 0; write name:weight like {name}:1")
        if name in weights:
            raise ValueError(f"loss names {name!r} twice; give each term once")
        weights[name] = value
    if not any(w > 0 for w in weights.values()):
        raise ValueError("loss has no term with a positive weight; give one, e.g. gram:1")
    return weights


def check_finite(settings) -> None:
    """Raise ValueError if a float setting of the dataclass `settings` (or an element of a tuple
    setting) is NaN or infinite: it would poison the synthesis and the JSON run record."""
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"{field.name}={format_value(value)} is not finite; give finite numbers like "
                             f"{format_value(field.default)}")


def format_value(value) -> str:
    """A setting as text (a flag's default): tuples as comma lists, floats without trailing zeros."""
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_size(text: str) -> tuple[int, int]:
    """`N` for NxN or `H,W`."""
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ValueError(f"--size={text} is not a size; give one positive int (256) or H,W (256,384)")
    return parts


def parse_value(field: dataclasses.Field, value):
    """A field's value from its flag: tuple fields from comma-separated text, others as they are."""
    if typing.get_origin(field.type) is not tuple:
        return value
    if field.name == "size":
        return parse_size(value)
    kind = typing.get_args(field.type)[0]
    if not value.strip() and not field.default:  # an empty list where empty is allowed (coarse_iterations)
        return ()
    try:
        return tuple(kind(p) for p in value.split(","))
    except ValueError:
        raise ValueError(f"--{field.name}={value} is not a list of numbers; give one per layer, like "
                         f"{format_value(field.default)}") from None


def check_tileable(size, layers) -> None:
    """Raise ValueError unless every pooling of an output of `size` sees whole windows down to the
    deepest of `layers`: a window across the border would break the torus."""
    deepest, factor = deepest_layer(layers), deepest_downsampling(layers)
    for side in size:
        if side % factor:
            fix = -(-side // factor) * factor
            raise ValueError(f"size {side} is not a multiple of {factor} ({deepest}); use {fix} for --tileable")


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
