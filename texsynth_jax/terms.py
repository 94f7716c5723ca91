"""Loss terms by name: each statistic of the source that a synthesis can match.

A term is two pure functions. `stats(features, source, layers, size)` summarises the source once per
source (a pytree: it becomes part of the targets); `loss(features, image, stats, layer_weights, key)`
is the term's loss of the image being synthesised. Both see the same VGG features (one forward pass
serves every term) and the image itself. `SynthesisConfig.loss` weighs them, e.g. `gram:1,swd:1`;
adding a statistic is adding an entry to TERMS, with no change to the optimiser, engine or CLI.

  gram      Gatys et al. (2015): Gram matrices of the features (the paper; second moments only).
  swd       sliced Wasserstein distance of the features (Heitz et al. 2021): whole distributions of
            random projections, C directions per layer of C channels, from the seed's key.
  hist      the same along each channel (per-feature histograms, Risser et al. 2017).
  spectrum  distance of the image to the source's Fourier modulus (Liu, Gousseau & Xia 2016): keeps
            regular structure (grids, stripes, cells) that Grams lose.

Feature distances are divided by the source's mean square feature of the layer, so a term's scale does
not depend on the network's input convention (caffe 0-255 or torchvision [0, 1]).
"""

from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from texsynth_jax import losses


class Term(NamedTuple):
    stats: Callable  # (features {layer: [H, W, C]}, source [H, W, 3], layers, size) -> pytree
    loss: Callable  # (features, image [H, W, 3], stats, layer_weights {layer: w}, key) -> scalar
    random: bool = False  # whether the loss depends on `key` (a fresh key changes the loss)


def _gram_stats(features, source, layers, size):
    return {name: losses.gram_matrix(features[name]) for name in layers}


def _gram_loss(features, image, stats, weights, key):
    return losses.style_loss(features, stats, weights)


def _vector_stats(features, source, layers, size):
    """Each layer's source features as [M, C] vectors, and their mean square (the layer's scale)."""
    out = {}
    for name in layers:
        vectors = features[name].reshape(-1, features[name].shape[-1]).astype(jnp.float32)
        out[name] = {"vectors": vectors, "scale": jnp.maximum(jnp.mean(jnp.square(vectors)), 1e-12)}
    return out


def _sliced_loss(directions_of):
    def loss(features, image, stats, weights, key):
        total = jnp.zeros((), jnp.float32)
        for i, (name, layer) in enumerate(stats.items()):
            directions = directions_of(jax.random.fold_in(key, i), layer["vectors"].shape[1])
            distance = losses.sliced_wasserstein(features[name], layer["vectors"], directions)
            total = total + weights[name] * distance / layer["scale"]
        return total
    return loss


def random_directions(key: jax.Array, channels: int) -> jax.Array:
    """[C, C] directions, uniform on the unit sphere (normalised Gaussian columns)."""
    d = jax.random.normal(key, (channels, channels), jnp.float32)
    return d / jnp.linalg.norm(d, axis=0, keepdims=True)


def _spectrum_stats(features, source, layers, size):
    """fft2 of the source at the output size: cropped, or wrapped around when the output is larger
    (a periodic extension keeps each frequency where it is, in cycles per pixel)."""
    h, w = size
    pad = ((0, max(h - source.shape[0], 0)), (0, max(w - source.shape[1], 0)), (0, 0))
    tiled = jnp.pad(source.astype(jnp.float32), pad, mode="wrap")[:h, :w]
    return jnp.fft.fft2(tiled, axes=(0, 1))


def _spectrum_loss(features, image, stats, weights, key):
    return losses.spectrum_loss(image, stats)


TERMS: Mapping[str, Term] = {
    "gram": Term(_gram_stats, _gram_loss),
    "swd": Term(_vector_stats, _sliced_loss(random_directions), random=True),
    "hist": Term(_vector_stats, _sliced_loss(lambda key, c: jnp.eye(c, dtype=jnp.float32))),
    "spectrum": Term(_spectrum_stats, _spectrum_loss),
}
NAMES = tuple(TERMS)


def is_random(weights: Mapping[str, float]) -> bool:
    """Whether the loss of these terms ({name: weight}) depends on its key."""
    return any(TERMS[name].random for name in weights)


def source_stats(features, source, layers, size, weights: Mapping[str, float]) -> dict:
    """{term: stats} of the source for every term in `weights` ({name: weight})."""
    return {name: TERMS[name].stats(features, source, layers, size) for name in weights}


def total_loss(features, image, targets, layer_weights, weights: Mapping[str, float], key) -> jax.Array:
    """sum over terms of weight * term loss; `targets` from `source_stats`."""
    return sum(w * TERMS[name].loss(features, image, targets[name], layer_weights, key)
               for name, w in weights.items())
