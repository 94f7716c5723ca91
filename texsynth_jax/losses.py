"""Gram matrices and the texture loss of Gatys et al. (2015). No I/O, no config, no randomness."""

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp


def gram_matrix(features: jax.Array) -> jax.Array:
    """Gram matrix of one feature map, normalised by the number of positions.

    Args:
      features: [H, W, C], any float dtype.

    Returns:
      float32 [C, C], G = F^T F / M with F the [M, C] matrix of features (M = H*W). Products
      accumulate in float32 even when the features are bfloat16.
    """
    h, w, c = features.shape
    flat = features.reshape(h * w, c)
    gram = jnp.einsum("mc,md->cd", flat, flat, preferred_element_type=jnp.float32)
    return gram / (h * w)


def layer_loss(gram: jax.Array, target: jax.Array) -> jax.Array:
    """sum((G - A)^2) / (4 N^2) for one layer's [N, N] Grams.

    Gram / M with 1/(4N^2) equals the paper's 1/(4 N^2 M^2) on raw Grams, and a target taken at
    one image size applies at another.
    """
    n = gram.shape[0]
    return jnp.sum(jnp.square(gram - target)) / (4.0 * n * n)


def style_loss(
    features: Mapping[str, jax.Array],
    target_grams: Mapping[str, jax.Array],
    layer_weights: Mapping[str, float] | Sequence,
) -> jax.Array:
    """E = sum_l w_l * E_l over the layers in `target_grams`.

    Args:
      features: {layer: [H_l, W_l, C_l]} of the image being synthesised.
      target_grams: {layer: float32 [C_l, C_l]} of the source.
      layer_weights: {layer: w_l}.

    Returns:
      float32 scalar.
    """
    return sum(layer_weights[name] * layer_loss(gram_matrix(features[name]), target)
               for name, target in target_grams.items())
