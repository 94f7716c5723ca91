"""Colour distributions: carry one image's colours onto another's structure (`--colors`).

    out = colors.transfer(image, palette)     # image's structure, palette's colour distribution
    out = colors.transfer(image, source)      # --colors=source: the source's colours exactly, per channel

`transfer` is the iterative distribution transfer of Pitie, Kokaram & Dahyot (2005): the pixels of both
images as point clouds in RGB, each turn rotated to a random orthonormal basis and matched along each axis
by sorting (1-D optimal transport), so the whole 3-D colour distribution moves onto the palette's, not only
the three channel histograms; a last exact match per channel (`match_channels`) makes the output's channel
histograms the palette's to the pixel. Each pixel's colour is moved by a map of colours alone, so where the
synthesis put edges, cells and shading stays where it is. Plain numpy on the host: it runs once, after
synthesis, on images of at most a few million pixels.
"""

import numpy as np

from texsynth_jax import image_io

TURNS = 12  # random rotations: the sliced distance to the palette settles within ~10 (tests/test_colors.py)


def match_channels(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[N, C] values whose every column has exactly the sorted values of `reference`'s column ([M, C]),
    resampled at the same quantiles, in the order of `values`' ranks (ties broken by position)."""
    out = np.empty_like(values, dtype=np.float64)
    n, m = values.shape[0], reference.shape[0]
    quantiles = np.sort(reference, axis=0)[((np.arange(n) + 0.5) * m / n).astype(np.int64)]
    order = np.argsort(values, axis=0, kind="stable")
    np.put_along_axis(out, order, quantiles, axis=0)
    return out


def transfer(image, palette, turns: int = TURNS, seed: int = 0) -> np.ndarray:
    """`image`'s structure with `palette`'s colour distribution.

    Args:
      image: float [H, W, 3] in [0, 1], the synthesised texture.
      palette: float [h, w, 3] in [0, 1], any size: the colours to take.
      turns: random rotations of the iterative distribution transfer.
      seed: of the rotations (a fixed default: the same inputs give the same output).

    Returns:
      float32 [H, W, 3] in [0, 1].
    """
    image = np.asarray(image, np.float64)
    target = np.asarray(palette, np.float64).reshape(-1, 3)
    points = image.reshape(-1, 3).copy()
    rng = np.random.default_rng(seed)
    for _ in range(turns):
        basis, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        moved = match_channels(points @ basis, target @ basis)
        points = moved @ basis.T
    points = match_channels(points, target)
    return np.clip(points, 0.0, 1.0).reshape(image.shape).astype(np.float32)


def histogram_distance(a, b, directions: int = 64) -> float:
    """Sliced Wasserstein-1 distance between the RGB pixel distributions of two images (any sizes): the
    mean over fixed directions of the mean absolute difference of their sorted projections. 0 for the same
    colours in any arrangement; in [0, 1] pixel units."""
    rng = np.random.default_rng(1234)
    d = rng.standard_normal((3, directions))
    d /= np.linalg.norm(d, axis=0, keepdims=True)
    pa, pb = (np.asarray(x, np.float64).reshape(-1, 3) @ d for x in (a, b))
    qa, qb = (_quantiles(p, 4096) for p in (pa, pb))
    return float(np.mean(np.abs(qa - qb)))


def _quantiles(values: np.ndarray, n: int) -> np.ndarray:
    """np.quantile(values, (arange(n) + 0.5) / n, axis=0) (its linear interpolation), from one sort per column:
    np.quantile with thousands of levels took 10 s on a 96 px image, this a few ms."""
    ordered = np.sort(values, axis=0)
    position = (np.arange(n) + 0.5) / n * (len(ordered) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(ordered) - 1)
    frac = (position - low)[:, None]
    return ordered[low] * (1 - frac) + ordered[high] * frac


def grey(image) -> np.ndarray:
    """float32 [H, W, 3]: the image's luminance in all three channels. With a palette (--colors=palette.png), every
    source's statistics come from this (Gatys et al. 2017's luminance-only synthesis, then the transfer): measured
    against synthesis in colour then the transfer, the luminance structure was as near or nearer the source on
    three photos, 0.182 against 0.195, 0.216 against 0.249, equal (bench/steering.py --only colors)."""
    return np.repeat(luminance(image), 3, axis=-1).astype(np.float32)


def luminance(image) -> np.ndarray:
    """Rec. 601 luma of float RGB [..., 3], as [..., 1]."""
    return np.asarray(image, np.float64) @ np.array([[0.299], [0.587], [0.114]])


# RGB -> YIQ (NTSC): luma and two chroma axes.
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def keep_colors(image, photo) -> np.ndarray:
    """float32 [H, W, 3]: `image`'s luminance with `photo`'s chrominance (YIQ), pixel by pixel (photo of the same
    size): a texture carried onto a photo in the photo's own colours (--colors=content; the luminance-only
    transfer of Gatys et al. 2017, whose texture statistics are of luminance too, `grey`)."""
    image, photo = np.asarray(image, np.float64) @ _YIQ.T, np.asarray(photo, np.float64) @ _YIQ.T
    out = np.concatenate([image[..., :1], photo[..., 1:]], axis=-1) @ np.linalg.inv(_YIQ).T
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def finish(images, config, source, content=None) -> np.ndarray:
    """Synthesised images [N, H, W, 3] with `config.colors` applied, as the job layer saves them: "" as they
    are; "source" or a palette's path, that image's colour distribution moved onto each (`transfer`);
    "content", each pixel's chrominance of `content`, the --content photo (`keep_colors`)."""
    if not config.colors:
        return np.asarray(images)
    if config.colors == "content":
        if content is None:
            raise ValueError("colors=content keeps the --content photo's colours; pass that photo as content=")
        return np.stack([keep_colors(x, content) for x in images])
    palette = image_io.load_image(config.palette)[0] if config.palette else source
    return np.stack([transfer(x, palette) for x in images])
