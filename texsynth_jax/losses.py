"""The statistics a texture is matched by, as pure functions of arrays: Gram matrices and the loss of
Gatys et al. (2015), sliced Wasserstein distances of features, and the Fourier-spectrum distance of
the image. No I/O, no config, no randomness (random directions come in as arguments)."""

from typing import Mapping, Sequence

import numpy as np

import jax
import jax.numpy as jnp

# The statistics' matrix products in float32 on every backend: by default TPUs run float32 products as
# bfloat16 passes and recent GPUs as TF32, which would change the Gram matrices (sums of ~10^4 products)
# with the hardware. The network's convolutions keep the backend's fast default (README, "Precision").
HIGHEST = jax.lax.Precision.HIGHEST


@jax.custom_jvp
def gram_matrix(features: jax.Array) -> jax.Array:
    """Gram matrix of one feature map, normalised by the number of positions.

    Args:
      features: [H, W, C], any float dtype.

    Returns:
      float32 [C, C], G = F^T F / M with F the [M, C] matrix of features (M = H*W). Products
      accumulate in float32 even when the features are bfloat16.
    """
    return _half_gram(features, features)


def _half_gram(features, tangents):
    h, w, c = features.shape
    flat, other = features.reshape(h * w, c), tangents.reshape(h * w, c)
    return jnp.einsum("mc,md->cd", flat, other, preferred_element_type=jnp.float32, precision=HIGHEST) / (h * w)


@gram_matrix.defjvp
def _gram_jvp(primals, tangents):
    # dG = P + P^T with P = F^T dF / M: its transpose, the gradient, is one product F (C + C^T) where
    # JAX's own is two (one per operand), and XLA keeps one full-size map fewer through the backward
    # pass (measured: 10% of a step's memory at 512 px).
    half = _half_gram(primals[0], tangents[0])
    return gram_matrix(primals[0]), half + half.T


def masked_gram(features: jax.Array, mask: jax.Array) -> jax.Array:
    """Gram matrix of a region of a feature map: sum_m t_m f_m f_m^T / sum_m t_m.

    Args:
      features: [H, W, C].
      mask: [H, W], each position's share in the region (guide.layer_masks); all ones gives gram_matrix.

    Returns:
      float32 [C, C], the mask-weighted mean of f f^T (the region's second moments, whatever its size). The
      features are weighted by sqrt(t) and go through gram_matrix, whose gradient is the cheaper one.
    """
    weighted = features * jnp.sqrt(mask).astype(features.dtype)[..., None]
    return gram_matrix(weighted) * (mask.size / jnp.maximum(jnp.sum(mask), 1e-6))


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


def sliced_wasserstein(features: jax.Array, source: jax.Array, directions: jax.Array) -> jax.Array:
    """Squared sliced Wasserstein-2 distance between two sets of feature vectors (Heitz et al. 2021).

    Both sets are projected on each direction and sorted; the sorted projections are whole 1-D
    distributions, so this matches every moment of each projection, not only the second.

    Args:
      features: [H, W, C] of the image being synthesised (M = H*W positions).
      source: [M_s, C] feature vectors of the source, constants (no gradient flows into them); M_s may
        differ from M (another image size): the output's i-th smallest value is compared with the
        source's quantile (i + 1/2) / M.
      directions: [C, D] projection directions (unit columns; the identity gives per-channel
        histogram matching, Risser et al. 2017).

    Returns:
      float32 scalar: mean over directions and positions of the squared difference of sorted
      projections. Written as sum_i (v_i - s_q(rank_i))^2, which is the same sum in another order,
      so only ranks are needed and the gradient, 2 (v_i - s_q(rank_i)), needs no sort of its own.
    """
    flat = features.reshape(-1, features.shape[-1]).astype(jnp.float32)
    out = jnp.matmul(flat, directions, precision=HIGHEST)
    src = sort_columns(jax.lax.stop_gradient(jnp.matmul(source.astype(jnp.float32), directions, precision=HIGHEST)))
    m, m_s = out.shape[0], src.shape[0]
    if m_s != m:  # static shapes: the quantile indices are constants
        src = src[((np.arange(m) + 0.5) * m_s / m).astype(np.int32)]
    matched = jnp.take_along_axis(src, rank_columns(jax.lax.stop_gradient(out)), axis=0)
    return jnp.mean(jnp.square(out - matched))


def masked_sliced_wasserstein(features: jax.Array, mask: jax.Array, source: jax.Array,
                              directions: jax.Array) -> jax.Array:
    """sliced_wasserstein of a region of the features: each position weighs its share `mask` [H, W].

    A position's quantile within the region is the share of the region at or below it along each direction
    (the mid-point of its own share); it is compared with the source's value at that quantile. All ones gives
    sliced_wasserstein (quantile (i + 1/2) / M of the i-th smallest). Returns the mask-weighted mean over
    positions and directions of the squared differences (0 for a region with no positions).
    """
    flat = features.reshape(-1, features.shape[-1]).astype(jnp.float32)
    t = mask.reshape(-1).astype(jnp.float32)
    mass = jnp.maximum(jnp.sum(t), 1e-6)
    out = jnp.matmul(flat, directions, precision=HIGHEST)
    src = sort_columns(jax.lax.stop_gradient(jnp.matmul(source.astype(jnp.float32), directions, precision=HIGHEST)))
    ranks = rank_columns(jax.lax.stop_gradient(out))  # [M, D]
    columns = jnp.arange(out.shape[1])[None, :]
    in_order = jnp.zeros(out.shape, jnp.float32).at[ranks, columns].set(jnp.broadcast_to(t[:, None], out.shape))
    quantile = (jnp.cumsum(in_order, axis=0) - in_order / 2) / mass  # [M, D], by rank
    index = jnp.clip(jnp.floor(quantile * src.shape[0]).astype(jnp.int32), 0, src.shape[0] - 1)
    matched = jnp.take_along_axis(jnp.take_along_axis(src, index, axis=0), ranks, axis=0)
    return jnp.sum(t[:, None] * jnp.square(out - matched)) / (mass * out.shape[1])


# XLA:CPU sorts with a generic comparator, ~15x slower than numpy's sort (1M floats: 300 ms against
# 20 ms, measured), and sorting is most of a sliced Wasserstein evaluation; on CPU the sorts go to numpy
# through a callback (sorting has no gradient to carry here: values of constants, ranks are integers).
def _host_sort(x):
    return np.sort(x, axis=-2)


def _host_ranks(x):
    order = np.argsort(x, axis=-2)
    ranks = np.empty(order.shape, np.int32)
    positions = np.arange(x.shape[-2], dtype=np.int32).reshape(-1, 1)
    np.put_along_axis(ranks, order, np.broadcast_to(positions, order.shape), axis=-2)
    return ranks


def _on_host(fn, dtype):
    def call(x):
        shape = jax.ShapeDtypeStruct(x.shape, dtype)
        return jax.pure_callback(fn, shape, x, vmap_method="expand_dims")
    return call


def sort_columns(x: jax.Array) -> jax.Array:
    """Each column of [M, D] sorted ascending (not differentiable: for constants)."""
    return jax.lax.platform_dependent(x, cpu=_on_host(_host_sort, x.dtype), default=lambda x: jnp.sort(x, axis=0))


def rank_columns(x: jax.Array) -> jax.Array:
    """int32 [M, D]: the rank of each entry within its column (0 = smallest)."""
    def device(x):
        return jnp.argsort(jnp.argsort(x, axis=0), axis=0).astype(jnp.int32)
    return jax.lax.platform_dependent(x, cpu=_on_host(_host_ranks, jnp.int32), default=device)


def spectrum_projection(image: jax.Array, source_fft: jax.Array) -> jax.Array:
    """The image nearest to `image` whose Fourier transform is the source's up to one phase per
    frequency, shared by the channels (Liu, Gousseau & Xia 2016).

    Args:
      image: float32 [H, W, 3].
      source_fft: complex64 [H, W, 3], fft2 of the source at the same size.

    Returns:
      float32 [H, W, 3]. Minimising |u^_c - s^_c e^{i phi}|^2 over phi per frequency gives
      e^{i phi} = X / |X| with X = sum_c u^_c conj(s^_c).
    """
    spectrum = jnp.fft.fft2(image, axes=(0, 1))
    cross = jnp.sum(spectrum * jnp.conj(source_fft), axis=-1, keepdims=True)
    phase = cross / jnp.maximum(jnp.abs(cross), 1e-12)
    return jnp.real(jnp.fft.ifft2(source_fft * phase, axes=(0, 1)))


def spectrum_loss(image: jax.Array, source_fft: jax.Array) -> jax.Array:
    """Mean squared distance of `image` [H, W, 3] to its `spectrum_projection`: zero iff the image
    has the source's Fourier modulus (and cross-channel phases); invariant to circular shifts.

    The projection is held constant in the gradient: for the squared distance to a set, 2 (u - P(u))
    is the exact gradient wherever the projection is unique.
    """
    target = jax.lax.stop_gradient(spectrum_projection(image, source_fft))
    return jnp.mean(jnp.square(image - target))
