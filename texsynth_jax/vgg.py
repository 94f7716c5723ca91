"""VGG feature extraction as a pure function of (params, image).

`params` is a plain dict in Flax layout: `params["conv1_1"]["kernel"]` is HWIO float32 and
`params["conv1_1"]["bias"]` is [O]. Layer names follow the VGG papers; a `convB_I` feature is taken
after its ReLU (caffe's in-place ReLU, as Gatys et al. used it), a `poolB` feature after the pooling.
"""

import dataclasses
import functools
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
from jax import lax

# (block, number of convs, output channels) per block.
_BLOCKS = {
    "vgg16": ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)),
    "vgg19": ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512)),
}


def layer_names(arch: str) -> tuple[str, ...]:
    """Every feature layer of `arch` in forward order: conv1_1, conv1_2, pool1, ..., pool5."""
    names = []
    for block, convs, _ in _BLOCKS[arch]:
        names += [f"conv{block}_{i}" for i in range(1, convs + 1)] + [f"pool{block}"]
    return tuple(names)


def conv_shapes(arch: str) -> dict[str, tuple[int, int, int, int]]:
    """HWIO kernel shape of every conv layer of `arch`."""
    shapes, cin = {}, 3
    for block, convs, cout in _BLOCKS[arch]:
        for i in range(1, convs + 1):
            shapes[f"conv{block}_{i}"] = (3, 3, cin, cout)
            cin = cout
    return shapes


ARCHS = tuple(_BLOCKS)


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """What a set of weights is and the input convention it was trained with.

    Hashable, so it can be a static argument of `jax.jit`. The network sees
    `(image[..., order] * scale - mean) / std`, with `image` RGB in [0, 1].
    """

    arch: str = "vgg19"
    channel_order: str = "BGR"  # "RGB" or "BGR"
    scale: float = 255.0
    mean: tuple[float, float, float] = (103.939, 116.779, 123.68)  # in the network's channel order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self):
        if self.arch not in _BLOCKS:
            raise ValueError(f"unknown architecture {self.arch!r}; use one of {ARCHS}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', not {self.channel_order!r}")


# The two conventions that VGG checkpoints come in.
CAFFE = dict(channel_order="BGR", scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))
TORCHVISION = dict(channel_order="RGB", scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def preprocess(image: jax.Array, spec: NetworkSpec) -> jax.Array:
    """RGB in [0, 1] -> the network's input convention: image [..., H, W, 3] -> [..., H, W, 3], channels
    in `spec.channel_order`, `(x * spec.scale - spec.mean) / spec.std`."""
    if spec.channel_order == "BGR":
        image = image[..., ::-1]
    shape = (1,) * (image.ndim - 1) + (3,)  # explicit broadcast (rank promotion may be off)
    mean = jnp.asarray(spec.mean, image.dtype).reshape(shape)
    std = jnp.asarray(spec.std, image.dtype).reshape(shape)
    return (image * spec.scale - mean) / std


def lax_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3 'SAME' convolution of one image (zeros past the border): x [H, W, Cin], kernel HWIO
    [3, 3, Cin, Cout] -> [H, W, Cout]."""
    y = lax.conv_general_dilated(
        x[None], kernel, window_strides=(1, 1), padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y[0]


PADDINGS = ("zero", "reflect", "circular")
_PAD_MODES = {"zero": "constant", "reflect": "reflect", "circular": "wrap"}  # jnp.pad's names

# remat=True cuts a block into bands of at least BAND_ROWS rows of its input, at most MAX_BANDS of
# them: measured at 512 px (XLA's account of one step), 4 bands left 1.05x the memory of 8, 16 the same.
BAND_ROWS = 32
MAX_BANDS = 8


def _conv_rows(conv, x, kernel, padding: str, top: bool, bottom: bool) -> jax.Array:
    """A 3x3 convolution of x that sees `padding` past the left and right border, and past the top
    (bottom) border where `top` (`bottom`) says x reaches it; elsewhere x's own first (last) row is
    a halo row, read but not output. Padding by one pixel and keeping the interior of the SAME output
    equals a VALID convolution of the padded input, and works with every strategy of conv.py."""
    if padding == "zero" and top and bottom:
        return conv(x, kernel)
    x = jnp.pad(x, ((int(top), int(bottom)), (1, 1), (0, 0)), mode=_PAD_MODES[padding])
    return conv(x, kernel)[1:-1, 1:-1]


def padded(conv: Callable[[jax.Array, jax.Array], jax.Array], padding: str):
    """`conv` ((x [H, W, Cin], kernel HWIO) -> [H, W, Cout], zeros past the border) with `padding` there instead.

    "reflect" mirrors the image at its edge (torch's padding_mode="reflect"); "circular" wraps it
    around, so the image is a torus.
    """
    if padding not in _PAD_MODES:
        raise ValueError(f"padding={padding!r} is unknown; use one of {PADDINGS}")
    if padding == "zero":
        return conv
    return functools.partial(_conv_rows, conv, padding=padding, top=True, bottom=True)


def pool(x: jax.Array, mode: str) -> jax.Array:
    """2x2 stride-2 pooling ("avg" or "max"): [H, W, C] -> [H // 2, W // 2, C]; odd trailing rows and
    columns are dropped, as in caffe/torch."""
    # Four strided slices, not a reshaped reduction: XLA:CPU's library fusion of the reduction
    # materialises the ReLU's zeros as full-size maps (9% of a step's memory at 512 px), and under jit
    # it got the gradient of the maximum wrong (inf; tests/test_remat.py).
    h, w, _ = x.shape
    x = x[: h // 2 * 2, : w // 2 * 2]
    corners = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
    if mode == "avg":
        return ((corners[0] + corners[1]) + (corners[2] + corners[3])) * 0.25
    return jnp.maximum(jnp.maximum(corners[0], corners[1]), jnp.maximum(corners[2], corners[3]))


def needed_layers(arch: str, layers) -> tuple[str, ...]:
    """The forward path up to the deepest of `layers` (the pass stops there)."""
    names = layer_names(arch)
    return names[: max(names.index(l) for l in layers) + 1]


def _run_layers(x, params, names, keep, conv, pooling, padding, dtype, first=0, top=True, bottom=True):
    """Layers `names` on x; returns {name: (map, row of the map's first row)} for the names in `keep`.

    x holds rows first.. of its map; `top`/`bottom`: whether it reaches the map's border there
    (padding), else its edge rows are halo rows, which each convolution consumes.
    """
    out = {}
    for name in names:
        if name.startswith("conv"):
            kernel = params[name]["kernel"].astype(dtype)
            bias = params[name]["bias"].astype(dtype).reshape(1, 1, -1)
            x = jax.nn.relu(_conv_rows(conv, x, kernel, padding, top, bottom) + bias)
            first += 0 if top else 1
        else:
            x, first = pool(x, pooling), first // 2  # first is even: bands start on even rows
        if name in keep:
            out[name] = (x, first)
    return out


def _after(x: jax.Array, dep: jax.Array) -> jax.Array:
    """x, computed only once `dep` is: x + 0 * (an element of dep), exact while dep is finite.

    XLA:CPU drops optimisation barriers before its CSE and scheduling (cpu_compiler.cc), so
    jax.checkpoint's recomputation merges back into the forward pass there; a data dependency is
    what keeps a recomputation apart and in order."""
    return x + 0 * dep.reshape(-1)[0].astype(x.dtype)


def _cuts(height: int, bands: int, step: int) -> list[int]:
    """Row boundaries of at most `bands` bands of `height` rows, on multiples of `step`."""
    return sorted({round(i * height / bands / step) * step for i in range(bands)} | {height})


def _banded_block(x, params, names, keep, conv, pooling, padding, dtype, cuts):
    """One VGG block, band of rows by band of rows, recomputed band by band in the backward pass.

    The maps of a block are local: the rows [a, b) of its outputs need the rows [a - k, b + k) of
    its input (k convolutions), with the padding applied only at the real border. So each band
    reads its rows with a halo, keeps only its own rows of each output, and writes them into the
    full output; the backward pass runs the same bands again from the block's input, each giving
    its rows of the input's gradient (the halos' parts summed). Only the block's input is kept for
    the backward pass and no full-size map of the block's interior ever exists: the Gram of a layer
    is a sum over positions, so this is the same loss and gradient (Galerne et al.'s ultra-high-
    resolution Gram optimisation computes it band by band too). Bands run in order (`_after`).
    `cuts`: the bands' first rows and the height (`_cuts`).
    """
    height, halo = x.shape[0], sum(n.startswith("conv") for n in names)
    scale = lambda name: 2 if name.startswith("pool") else 1  # a pool ends its block
    wrap = halo if padding == "circular" else 0  # a torus: bands read wrapped rows, no border

    def rows(i):  # the input rows band i reads, in the (wrapped) input
        a, b = cuts[i], cuts[i + 1]
        return (a, b + 2 * halo) if wrap else (max(a - halo, 0), min(b + halo, height))

    def band(xs, params, i):
        a, b = cuts[i], cuts[i + 1]
        lo, hi = rows(i)
        maps = _run_layers(xs, params, names, keep, conv, pooling, padding, dtype, lo - wrap,
                           top=not wrap and lo == 0, bottom=not wrap and hi == height)
        return {n: m[a // scale(n) - first: b // scale(n) - first] for n, (m, first) in maps.items()}

    def forward(x, params):
        x = jnp.pad(x, ((wrap, wrap), (0, 0), (0, 0)), mode="wrap") if wrap else x
        out, last = {}, None
        for i in range(len(cuts) - 1):
            lo, hi = rows(i)
            xs = x[lo:hi] if last is None else _after(x[lo:hi], last)
            pieces = band(xs, params, i)
            for n, piece in pieces.items():  # written in place: no second copy of a full map
                if n not in out:
                    out[n] = jnp.zeros((height // scale(n), *piece.shape[1:]), piece.dtype)
                out[n] = lax.dynamic_update_slice(out[n], piece, (cuts[i] // scale(n), 0, 0))
            last = pieces[names[-1]]
        return out

    def backward(saved, cts):
        x, params = saved
        x = jnp.pad(x, ((wrap, wrap), (0, 0), (0, 0)), mode="wrap") if wrap else x
        grad_x, grad_params, last = jnp.zeros_like(x), jax.tree.map(jnp.zeros_like, params), cts[names[-1]]
        for i in range(len(cuts) - 1):
            a, b = cuts[i], cuts[i + 1]
            lo, hi = rows(i)
            _, vjp = jax.vjp(functools.partial(band, i=i), _after(x[lo:hi], last), params)
            grad_xs, grad_p = vjp({n: ct[a // scale(n): b // scale(n)] for n, ct in cts.items()})
            start = (lo, 0, 0)
            grad_x = lax.dynamic_update_slice(grad_x, lax.dynamic_slice(grad_x, start, grad_xs.shape) + grad_xs, start)
            grad_params = jax.tree.map(jnp.add, grad_params, grad_p)
            last = grad_xs
        if wrap:  # the wrapped rows are copies of rows at the other end
            core = grad_x[wrap: wrap + height]
            for j in (*range(wrap), *range(wrap + height, height + 2 * wrap)):
                core = core.at[(j - wrap) % height].add(grad_x[j])
            grad_x = core
        return grad_x, grad_params

    block = jax.custom_vjp(forward)
    block.defvjp(lambda x, params: (forward(x, params), (x, params)), backward)
    return block(x, params)


def extract_features(
    params: Mapping,
    image: jax.Array,
    spec: NetworkSpec,
    layers,
    pooling: str = "avg",
    conv: Callable[[jax.Array, jax.Array], jax.Array] = lax_conv,
    dtype=jnp.float32,
    remat: bool = False,
    padding: str = "zero",
    bands: int | None = None,
) -> dict[str, jax.Array]:
    """VGG features of one image.

    Args:
      params: conv weights keyed by layer name (`params[name]["kernel"]` HWIO, `["bias"]` [O]).
      image: float32 [H, W, 3], RGB in [0, 1].
      spec: the weights' architecture and input convention.
      layers: names of the layers to return.
      pooling: "avg" (Gatys et al.) or "max" (the network as trained).
      conv: the 3x3 convolution to use, (x [H, W, Cin], kernel HWIO) -> [H, W, Cout].
      dtype: compute dtype of the convolutions (float32, or bfloat16 for the fast mode).
      remat: compute each block in bands of rows and recompute them band by band in the backward
        pass (`_banded_block`): the same values, no full-size map of a block's interior, for one
        more forward pass. A block of one band runs as it is.
      padding: what every convolution sees beyond the border: "zero" (VGG as trained), "reflect"
        (mirrored) or "circular" (wrapped around: the image is a torus; pooling sees no border when
        the size is a multiple of the deepest layer's downsampling).
      bands: with remat, the number of bands of every block; None: a band of at least BAND_ROWS
        rows of the block's input, at most MAX_BANDS bands.

    Returns:
      {name: [H_l, W_l, C_l]} for each name in `layers`, in `dtype`.
    """
    if padding not in _PAD_MODES:
        raise ValueError(f"padding={padding!r} is unknown; use one of {PADDINGS}")
    wanted = set(layers)
    x = preprocess(image, spec).astype(dtype)
    features = {}
    for names in _blocks_of(needed_layers(spec.arch, layers)):
        keep = wanted.intersection(names) | {names[-1]}  # the block's features and its output
        block_params = {n: params[n] for n in names if n.startswith("conv")}
        cuts = _cuts(x.shape[0], bands or max(1, min(MAX_BANDS, x.shape[0] // BAND_ROWS)),
                     2 if names[-1].startswith("pool") else 1)
        if remat and len(cuts) > 2:
            out = _banded_block(x, block_params, names, keep, conv, pooling, padding, dtype, cuts)
        else:
            out = {n: m for n, (m, _) in _run_layers(x, block_params, names, keep, conv, pooling, padding,
                                                      dtype).items()}
        x = out[names[-1]]
        features.update((n, out[n]) for n in names if n in wanted)
    return features


def _blocks_of(names):
    """Split a forward path into VGG blocks, each ending at its pool."""
    blocks, current = [], []
    for name in names:
        current.append(name)
        if name.startswith("pool"):
            blocks.append(tuple(current))
            current = []
    return blocks + [tuple(current)] if current else blocks


def downsampling(arch: str, layer: str) -> int:
    """How many times `layer`'s feature map is smaller than the image on each side (a power of 2; 1 for
    block 1's convolutions)."""
    names = layer_names(arch)
    return 2 ** sum(1 for n in names[: names.index(layer) + 1] if n.startswith("pool"))
