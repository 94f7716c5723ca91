"""Guided synthesis (spatial control, Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style
Transfer"): a map of the output, one flat colour per region, says whose statistics each part matches.

    labels, colours = guide.read_map(map_image)                   # int labels [h, w], one colour per region
    masks = guide.masks(labels, len(colours), config.size)        # float32 [R, H, W], one-hot
    targets = engine.guided_targets([engine.targets(grass), engine.targets(stones)], masks)
    images, _ = engine.synthesize(keys, targets)                  # the same engine, any map of this size

Masks are arguments of the compiled programs, not constants: one program serves every map of one size and
region count. They reach a layer k poolings deep as the share of each feature position's 2^k x 2^k pixel
block inside each region (`layer_masks`: the paper's simple downsampling of the guidance channels). A position
on a boundary belongs to both regions by those shares, so the regions' statistics meet over one block of the
deepest layer, a transition rather than a seam. A region's statistics at a layer are mask-weighted means
over its positions (its Gram is sum t f f^T / sum t), and the loss is the mean of the regions' losses, so a
small region weighs as much as a large one; at a layer where a region covers less than one position (a
coarse scale), its loss there is scaled down by that fraction.
"""

import re

import numpy as np

import jax.numpy as jnp

from texsynth_jax import vgg

MAX_REGIONS = 16  # more colours than this is an antialiased or photographic map, not a guide
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def hex_colour(colour) -> str:
    """'rrggbb' of an (r, g, b) of 0-255 ints."""
    return "".join(f"{int(c):02x}" for c in colour)


def parse_regions(items) -> list[tuple[tuple[int, int, int], str, float | None]]:
    """[(colour (r, g, b), path, source_scale or None)] of "RRGGBB:path[:source_scale]" items; ValueError (one
    line, naming the fix) for anything else, or a colour given twice."""
    out, example = [], "4a7a2c:grass.png or 4a7a2c:grass.png:0.5"
    for item in items:
        colour, _, rest = item.partition(":")
        match = _HEX.match(colour.strip())
        if not match or not rest.strip():
            raise ValueError(f"region item {item!r} is not RRGGBB:path; give items like {example}")
        path, scale = rest, None
        head, _, tail = rest.rpartition(":")
        if head and _float(tail) is not None:
            path, scale = head, _float(tail)
            if not 0 < scale <= 8:
                raise ValueError(f"region source_scale {scale:g} of {path} is outside (0, 8]; give a factor like "
                                 f"{match.group(1)}:{path}:0.5")
        rgb = tuple(int(match.group(1)[i:i + 2], 16) for i in (0, 2, 4))
        if rgb in [c for c, _, _ in out]:
            raise ValueError(f"region colour {hex_colour(rgb)} is given twice; give each colour of the map one source")
        out.append((rgb, path.strip(), scale))
    return out


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_map(image, what: str = "guide map") -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """(labels int32 [H, W], colours): each distinct colour of an RGB image (float in [0, 1] or uint8) a region,
    numbered in the order of `colours` (sorted, so the numbering does not depend on the areas). ValueError
    (one line) for more than MAX_REGIONS colours."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    values, labels = np.unique(packed, return_inverse=True)
    if len(values) > MAX_REGIONS:
        raise ValueError(f"{what} has {len(values)} colours, more than {MAX_REGIONS} regions; paint it in flat colours "
                         "(antialiasing off) and save it as PNG, not JPEG")
    colours = [((v >> 16) & 255, (v >> 8) & 255, v & 255) for v in values.tolist()]
    return labels.reshape(packed.shape).astype(np.int32), colours


def masks(labels: np.ndarray, count: int, size) -> np.ndarray:
    """float32 [count, *size]: one-hot masks of `labels` resized to `size` by nearest neighbour (no new
    colours, no blur: a map of any size serves any output)."""
    return (nearest(labels, size)[None] == np.arange(count)[:, None, None]).astype(np.float32)


def nearest(image: np.ndarray, size) -> np.ndarray:
    """image [h, w, ...] resized to `size` by nearest neighbour (each output pixel the input pixel at its centre)."""
    h, w = image.shape[:2]
    rows = np.minimum((np.arange(size[0]) + 0.5) * h / size[0], h - 1).astype(int)
    cols = np.minimum((np.arange(size[1]) + 0.5) * w / size[1], w - 1).astype(int)
    return image[rows][:, cols]


def _area_matrix(n_in: int, n_out: int, span: float) -> np.ndarray:
    """[n_out, n_in]: output i the mean of input cells [i * span, (i + 1) * span), partial cells by their share."""
    edges = np.arange(n_out + 1) * span
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = np.arange(n_in)[None]
    overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0, None)
    return (overlap / span).astype(np.float32)


def resize_masks(masks, size) -> jnp.ndarray:
    """Masks [..., H, W] resized to `size` by area (each output pixel the share of its footprint in the region):
    a coarse scale's guide. Itself at its own size."""
    h, w = masks.shape[-2:]
    if (h, w) == tuple(size):
        return jnp.asarray(masks, jnp.float32)
    a, b = _area_matrix(h, size[0], h / size[0]), _area_matrix(w, size[1], w / size[1])
    return jnp.einsum("ih,...hw,jw->...ij", a, jnp.asarray(masks, jnp.float32), b)


def layer_masks(masks, layers, arch: str) -> dict:
    """{layer: [..., H // f, W // f]} of masks [..., H, W] at the image size: each feature position's share of
    its f x f pixel block in the region (f = vgg.downsampling of the layer; 1: the masks themselves)."""
    h, w = masks.shape[-2:]
    out = {}
    for layer in layers:
        f = vgg.downsampling(arch, layer)
        if f == 1:
            out[layer] = jnp.asarray(masks, jnp.float32)
        else:
            a, b = _area_matrix(h, h // f, f), _area_matrix(w, w // f, f)
            out[layer] = jnp.einsum("ih,...hw,jw->...ij", a, jnp.asarray(masks, jnp.float32), b)
    return out


def check_masks(masks, count: int, size, layers, arch: str, names=None) -> np.ndarray:
    """float32 [count, *size] masks of a guided run's output, or ValueError (one line, naming the fix): no
    regions, masks of another shape, outside [0, 1], or a region covering less than one position of the deepest
    layer (nothing there could match its statistics). names: how messages call the regions (default region 0, 1,
    ...)."""
    if count == 0:
        raise ValueError("no region targets; pass one engine's targets(source) per region of the masks")
    m = np.asarray(masks, np.float32)
    if m.shape != (count, *size):
        raise ValueError(f"guide masks have shape {m.shape}, not (regions, height, width) = ({count}, {size[0]}, "
                         f"{size[1]}); pass one mask per region at the output size (guide.masks)")
    if not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1:
        raise ValueError("guide masks have values outside [0, 1]; pass shares of each pixel in each region")
    deepest = max(layers, key=lambda l: vgg.downsampling(arch, l))
    f = vgg.downsampling(arch, deepest)
    for r, mass in enumerate(np.asarray(jnp.sum(layer_masks(m, [deepest], arch)[deepest], axis=(-2, -1)))):
        if mass < 1:
            name = names[r] if names else f"region {r}"
            raise ValueError(f"{name} covers {mass:.2f} positions of {deepest} ({f}x{f} px each) at {size[0]}x{size[1]}, "
                             f"less than one; enlarge it in the map, or give a larger --size or shallower --layers")
    return m


def assign(colours, regions, source_colours=None) -> list[tuple[str, object]]:
    """Where each colour of a map takes its statistics: ("region", index into `regions`) for a colour --region
    names, ("part", index into `source_colours`) for one the source guide has, ("input", None) otherwise.

    Args:
      colours: the map's (r, g, b) colours (read_map).
      regions: [(colour, path, scale)] of --region (SynthesisConfig.region_sources).
      source_colours: the source guide's colours, or None without one.

    Raises ValueError (one line) for a --region colour the map does not have, or, with a source guide, a map
    colour that neither a --region nor the source guide names (it would have no source).
    """
    region_colours = [c for c, _, _ in regions]
    missing = [c for c in region_colours if c not in colours]
    if missing:
        raise ValueError(f"region colour {hex_colour(missing[0])} is not in the guide map (its colours: "
                         f"{', '.join(map(hex_colour, colours))}); give a colour of the map")
    out = []
    for colour in colours:
        if colour in region_colours:
            out.append(("region", region_colours.index(colour)))
        elif source_colours is not None and colour in source_colours:
            out.append(("part", source_colours.index(colour)))
        elif source_colours is not None:
            raise ValueError(f"guide colour {hex_colour(colour)} names no source: the source guide does not have it "
                             f"and no --region gives it one; paint it in the source guide, or add "
                             f"--region={hex_colour(colour)}:photo.png")
        else:
            out.append(("input", None))
    return out
