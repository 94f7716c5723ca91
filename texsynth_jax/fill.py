"""Work on the user's own image: fill a hole, extend a photo past its borders, make it tile.

The output is a canvas that holds the user's photo: its kept pixels are fixed and only the others (the hole,
the canvas beyond the photo, a band along the borders) are synthesised, coarse to fine. The loss sees the
composite `keep * photo + (1 - keep) * synthesised`, whole: the features next to the hole see the photo
around it and a seam would be a feature the source lacks, so the new pixels continue its structures. (The
loss of the made pixels alone, a guided region, left a visible edge: its border's features were free;
docs/fill.md.) The canvas and its mask travel with the targets ({FILL: {"image", "keep"}}), so every photo and
mask of one size runs the same compiled programs. A kept pixel has no gradient, so L-BFGS never moves its latent;
`paste` still writes the photo's own pixels into the outputs, so they are bit-identical after saving.
"""

import numpy as np

import jax
import jax.numpy as jnp

from texsynth_jax import guide

# The key under which targets carry the canvas: {"image": float32 [H, W, 3], "keep": float32 [H, W, 1]}.
FILL = "fill"

PLACES = ("center", "top-left", "top", "top-right", "left", "right", "bottom-left", "bottom", "bottom-right")

# A kept pixel's latent: the logit of its value, off 0 and 1 where the sigmoid has no inverse.
_EPS = 1e-4

# How far (the std of a Gaussian, in pixels) an enlarged scale carries the photo's detail into the made pixels:
# the border's gradient over the rest's, 2 seeds at 256 px, irregular holes (docs/fill.md): pebbles 1.75/1.47
# without, 1.23/1.15 at 1, 1.49/1.28 at 2; veins 1.67/1.72, 1.28/1.23, 1.45/1.46.
DETAIL_SIGMA = 1.0


def mask_from_image(mask, size) -> np.ndarray:
    """bool [*size]: True where `mask` (float RGB [h, w, 3] in [0, 1], any size, resized to `size` by nearest
    neighbour) is white or light (mean > 0.5): the pixels to make."""
    return guide.nearest(np.asarray(mask, np.float32).mean(axis=-1), size) > 0.5


def mask_from_alpha(alpha) -> np.ndarray:
    """bool [h, w]: True where an alpha channel (uint8) is mostly transparent (< 128): the pixels to make."""
    return np.asarray(alpha) < 128


def offset(photo_size, canvas_size, place: str) -> tuple[int, int]:
    """(top, left) of a photo of `photo_size` placed on a canvas of `canvas_size` as `place` (PLACES) says."""
    if place not in PLACES:
        raise ValueError(f"--place={place!r} is unknown; use one of {', '.join(PLACES)}")
    (h, w), (ch, cw) = photo_size, canvas_size
    if h > ch or w > cw:
        raise ValueError(f"the canvas {ch}x{cw} (--size) is smaller than the photo {h}x{w}; give --size of at least "
                         f"{max(h, ch)},{max(w, cw)}")
    row = 0 if place.startswith("top") else ch - h if place.startswith("bottom") else (ch - h) // 2
    col = 0 if place.endswith("left") else cw - w if place.endswith("right") else (cw - w) // 2
    return row, col


def canvas(photo, make, size, place: str = "center", band: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The output's canvas: (known float32 [*size, 3], keep float32 [*size]).

    Args:
      photo: float32 [h, w, 3] in [0, 1], the user's image.
      make: bool [h, w], True where the photo's pixels are to be made anew (a hole), or None for none.
      size: the canvas (output) size, at least the photo's.
      place: where the photo lies on a larger canvas (PLACES).
      band: pixels along each canvas border made anew as well (a photo made tileable): 0 for none.
    """
    photo = np.asarray(photo, np.float32)
    top, left = offset(photo.shape[:2], size, place)
    known = np.zeros((*size, 3), np.float32)
    keep = np.zeros(size, np.float32)
    known[top:top + photo.shape[0], left:left + photo.shape[1]] = photo
    keep[top:top + photo.shape[0], left:left + photo.shape[1]] = 1.0 if make is None else ~np.asarray(make)
    if band:
        keep[:band], keep[-band:], keep[:, :band], keep[:, -band:] = 0, 0, 0, 0
    return known, keep


def check_canvas(known, keep, size) -> None:
    """Raise ValueError (one line) unless `known` is [*size, 3] and `keep` [*size]: a canvas for an output of `size`."""
    if np.shape(keep) != tuple(size) or np.shape(known) != (*size, 3):
        raise ValueError(f"a canvas {np.shape(known)} and mask {np.shape(keep)} for an output of {tuple(size)}; pass "
                         "them at the output's size (fill.canvas)")


def band_pixels(size, band: float) -> int:
    """A border band's width in pixels: `band` (a share of the shorter side) of a canvas of `size`, at least 1."""
    return max(1, round(band * min(size)))


def entry(known, keep, size) -> dict:
    """The canvas at one scale's `size`: keep resized by area, the photo by the area of its kept pixels
    alone (so the unknown pixels never bleed into a coarse scale's border); {"image", "keep"}."""
    known, keep = jnp.asarray(known, jnp.float32), jnp.asarray(keep, jnp.float32)
    small_keep = guide.resize_masks(keep, size)
    weighted = guide.resize_masks(jnp.moveaxis(known * keep[..., None], -1, 0), size)
    image = jnp.where(small_keep[..., None] > 0, jnp.moveaxis(weighted, 0, -1)
                      / jnp.maximum(small_keep[..., None], 1e-12), 0.0)
    return {"image": jnp.clip(image, 0.0, 1.0), "keep": small_keep[..., None]}


def compose(image: jax.Array, targets) -> jax.Array:
    """The image the loss sees: the canvas's kept pixels over `image` (itself without a canvas)."""
    if FILL not in targets:
        return image
    known, keep = targets[FILL]["image"], targets[FILL]["keep"]
    return keep * known + (1.0 - keep) * image


def _blur(x: jax.Array, sigma: float) -> jax.Array:
    """[H, W, C] blurred by a Gaussian of `sigma` pixels (separable, zero beyond the border)."""
    radius = max(1, int(3 * sigma))
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    k = jnp.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    rows = jax.vmap(lambda col: jnp.convolve(col, k, mode="same"), in_axes=1, out_axes=1)
    cols = jax.vmap(lambda row: jnp.convolve(row, k, mode="same"), in_axes=0, out_axes=0)
    return jax.vmap(lambda c: cols(rows(c)), in_axes=-1, out_axes=-1)(x)


def carry_detail(image: jax.Array, targets, sigma: float | None = None) -> jax.Array:
    """`image` (a coarse scale enlarged) with the kept pixels' lost detail (photo less image) carried a pixel or
    two into the made ones: a blur of it, normalised by the blurred kept share and faded where that is small."""
    sigma = DETAIL_SIGMA if sigma is None else sigma
    if sigma <= 0:
        return image
    known, keep = targets[FILL]["image"], targets[FILL]["keep"]
    near = _blur(keep, sigma)
    spread = _blur(keep * (known - image), sigma) / jnp.maximum(near, 1e-3)
    return jnp.clip(image + (1.0 - keep) * spread * jnp.minimum(2.0 * near, 1.0), 0.0, 1.0)


def pin(latent: jax.Array, targets, enlarged: bool = False) -> jax.Array:
    """A latent whose image is the composite, how each scale starts: the kept pixels at their values, and after
    an enlargement (`enlarged`) their lost detail carried into the made pixels next to them (carry_detail).
    Without it the enlarged coarse result meets the sharp photo in a step that the texture loss, which sees it at
    a few positions only, barely removes: the border showed (docs/fill.md)."""
    if FILL not in targets:
        return latent
    image = jax.nn.sigmoid(latent)
    if enlarged:
        image = carry_detail(image, targets)
    image = compose(image, targets)
    changed = (targets[FILL]["keep"] > 0) | enlarged
    return jnp.where(changed, jax.scipy.special.logit(jnp.clip(image, _EPS, 1 - _EPS)), latent)


def paste(images, known, keep) -> np.ndarray:
    """Outputs [B, H, W, 3] with the photo's own values at every kept pixel (keep [H, W] == 1), exactly."""
    return np.where(np.asarray(keep)[None, ..., None] >= 1, np.asarray(known)[None], np.asarray(images))
