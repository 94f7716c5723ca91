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
    """RGB in [0, 1] -> the network's input convention. image: [..., H, W, 3]."""
    if spec.channel_order == "BGR":
        image = image[..., ::-1]
    shape = (1,) * (image.ndim - 1) + (3,)  # explicit broadcast (rank promotion may be off)
    mean = jnp.asarray(spec.mean, image.dtype).reshape(shape)
    std = jnp.asarray(spec.std, image.dtype).reshape(shape)
    return (image * spec.scale - mean) / std


def lax_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3 'SAME' convolution of one image. x: [H, W, Cin], kernel: HWIO."""
    y = lax.conv_general_dilated(
        x[None], kernel, window_strides=(1, 1), padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y[0]


PADDINGS = ("zero", "reflect", "circular")
_PAD_MODES = {"reflect": "reflect", "circular": "wrap"}  # jnp.pad's names


def padded(conv: Callable[[jax.Array, jax.Array], jax.Array], padding: str):
    """`conv` (a 3x3 'SAME' convolution with zeros at the border) with `padding` at the border instead.

    "reflect" mirrors the image at its edge (torch's padding_mode="reflect"); "circular" wraps it
    around, so the image is a torus. Padding by one pixel and keeping the interior of the SAME output
    equals a VALID convolution of the padded input, and works with every strategy of conv.py.
    """
    if padding == "zero":
        return conv
    if padding not in _PAD_MODES:
        raise ValueError(f"padding={padding!r} is unknown; use one of {PADDINGS}")

    def conv_padded(x, kernel):
        x = jnp.pad(x, ((1, 1), (1, 1), (0, 0)), mode=_PAD_MODES[padding])
        return conv(x, kernel)[1:-1, 1:-1]

    return conv_padded


def pool(x: jax.Array, mode: str) -> jax.Array:
    """2x2 stride-2 pooling of [H, W, C]; odd trailing rows/columns are dropped, as in caffe/torch."""
    h, w, c = x.shape
    x = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
    return x.mean(axis=(1, 3)) if mode == "avg" else x.max(axis=(1, 3))


def needed_layers(arch: str, layers) -> tuple[str, ...]:
    """The forward path up to the deepest of `layers` (the pass stops there)."""
    names = layer_names(arch)
    return names[: max(names.index(l) for l in layers) + 1]


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
      remat: keep only each block's input for the backward pass and recompute the block's
        activations there (`jax.checkpoint`): less peak memory for one more forward pass.
      padding: what every convolution sees beyond the border: "zero" (VGG as trained), "reflect"
        (mirrored) or "circular" (wrapped around: the image is a torus; pooling sees no border when
        the size is a multiple of the deepest layer's downsampling).

    Returns:
      {name: [H_l, W_l, C_l]} for each name in `layers`, in `dtype`.
    """
    wanted = set(layers)
    conv = padded(conv, padding)

    def run_block(x, block_params, names):
        out = {}
        for name in names:
            if name.startswith("conv"):
                kernel = block_params[name]["kernel"].astype(dtype)
                bias = block_params[name]["bias"].astype(dtype).reshape(1, 1, -1)
                x = jax.nn.relu(conv(x, kernel) + bias)
            else:
                x = pool(x, pooling)
            if name in wanted:
                out[name] = x
        return x, out

    x = preprocess(image, spec).astype(dtype)
    features = {}
    for names in _blocks_of(needed_layers(spec.arch, layers)):
        block = functools.partial(run_block, names=names)
        if remat:
            block = jax.checkpoint(block)
        x, out = block(x, {n: params[n] for n in names if n.startswith("conv")})
        features.update(out)
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
    """How many times `layer`'s feature map is smaller than the image on each side."""
    names = layer_names(arch)
    return 2 ** sum(1 for n in names[: names.index(layer) + 1] if n.startswith("pool"))
