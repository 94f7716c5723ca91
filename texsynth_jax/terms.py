"""Loss terms by name: each statistic of the source that a synthesis can match, in an open registry.

A term is two pure functions. `stats(features, source, layers, size)` summarises the source once per
source (a pytree: it becomes part of the targets); `loss(features, image, stats, layer_weights, key)`
is the term's loss of the image being synthesised. Both see the same VGG features (one forward pass
serves every term) and the image itself. `SynthesisConfig.loss` weighs them, e.g. `gram:1,swd:1`.
Research code adds its own with `register`, with no change to the optimiser, engine or CLI:

    def mean_colour_stats(features, source, layers, size):
        return jnp.mean(source, axis=(0, 1))                          # [3]

    def mean_colour_loss(features, image, stats, layer_weights, key):
        return jnp.sum(jnp.square(jnp.mean(image, axis=(0, 1)) - stats))

    terms.register("mean_colour", mean_colour_stats, mean_colour_loss)
    config = SynthesisConfig(loss=("gram:1", "mean_colour:10"))    # or --imports=mymodule --loss=...

Built in:

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
import numpy as np

from texsynth_jax import losses


def weighted_sum(stats_list, weights):
    """The blend of statistics that are averages over positions (Grams, means): their weighted sum, the
    statistics of the mixture. The default blend of a term."""
    return jax.tree.map(lambda *leaves: sum(w * leaf for w, leaf in zip(weights, leaves)), *stats_list)


class Term(NamedTuple):
    """A loss term: the two pure functions of the module docstring, whether its loss uses its key, how
    several sources' statistics blend (`blend_targets`), and optionally its masked form (guide.py).

    A term with a masked form matches each region of a guided output to its own statistics: masked_stats
    takes a region's statistics from part of a source (its masks {layer: [H_l, W_l]}, shares in [0, 1]), and
    masked_loss is the loss of an image whose regions (masks {layer: [R, H_l, W_l]}) each match their own
    stats (a list of R). A term without one sees the regions' statistics blended by area (Term.blend) over
    the whole image.
    """

    stats: Callable  # (features {layer: [H, W, C]}, source [H, W, 3], layers, size) -> pytree
    loss: Callable  # (features, image [H, W, 3], stats, layer_weights {layer: w}, key) -> scalar
    random: bool = False  # whether the loss depends on `key` (a fresh key changes the loss)
    blend: Callable = weighted_sum  # ([stats, ...], [weight, ...]) -> stats, the first source's shapes
    masked_stats: Callable | None = None  # (features, source, layers, size, masks {layer: [H, W]}) -> stats
    masked_loss: Callable | None = None  # (features, image, [stats] * R, masks {layer: [R, H, W]}, weights, key)


def _gram_stats(features, source, layers, size):
    return {name: losses.gram_matrix(features[name]) for name in layers}


def _gram_loss(features, image, stats, weights, key):
    return losses.style_loss(features, stats, weights)


def _masked_gram_stats(features, source, layers, size, masks):
    return {name: losses.masked_gram(features[name], masks[name]) for name in layers}


def _masked_gram_loss(features, image, stats_list, masks, weights, key):
    def region(r):
        return sum(weights[name] * coverage(masks[name][r]) *
                   losses.layer_loss(losses.masked_gram(features[name], masks[name][r]), target)
                   for name, target in stats_list[r].items())
    return sum(region(r) for r in range(len(stats_list))) / len(stats_list)


def coverage(mask) -> jax.Array:
    """min(1, positions a region covers at a layer): where a region covers less than one position (a coarse
    scale), its loss there weighs that fraction, not a whole region's (its statistics there are a guess)."""
    return jnp.minimum(1.0, jnp.sum(mask))


def _vector_stats(features, source, layers, size):
    """Each layer's source features as [M, C] vectors, and their mean square (the layer's scale)."""
    out = {}
    for name in layers:
        vectors = features[name].reshape(-1, features[name].shape[-1]).astype(jnp.float32)
        out[name] = _vectors_entry(vectors)
    return out


def _vectors_entry(vectors) -> dict:
    """A layer's vector statistics: the [M, C] vectors, and their mean square (the layer's scale)."""
    return {"vectors": vectors, "scale": jnp.maximum(jnp.mean(jnp.square(vectors)), 1e-12)}


def _masked_vector_stats(features, source, layers, size, masks):
    """_vector_stats of a region: as many rows as the layer has positions, drawn by the inverse of the mask's
    cumulative share in raster order (evenly spaced over the region, each position as often as its share):
    the region's distribution, with the shapes of the whole source's, so one program serves any mask."""
    out = {}
    for name in layers:
        flat = features[name].reshape(-1, features[name].shape[-1]).astype(jnp.float32)
        share = jnp.cumsum(masks[name].reshape(-1))
        rows = (jnp.arange(flat.shape[0]) + 0.5) * (share[-1] / flat.shape[0])
        vectors = flat[jnp.minimum(jnp.searchsorted(share, rows), flat.shape[0] - 1)]
        out[name] = _vectors_entry(vectors)
    return out


def _vector_blend(stats_list, weights):
    """The mixture of the sources' feature distributions: as many of the first source's M rows as there
    are, split between the sources by weight (largest remainders), each source's rows taken evenly spaced
    over its image. A sample of the mixture, so its sorted projections are the mixture's quantiles; the
    first source's shapes, so one compiled step serves every blend."""
    out = {}
    for name in stats_list[0]:
        rows = stats_list[0][name]["vectors"].shape[0]
        counts = _split(rows, weights)
        parts = [stats[name]["vectors"][((np.arange(n) + 0.5) * stats[name]["vectors"].shape[0] / n).astype(int)]
                 for stats, n in zip(stats_list, counts) if n]
        out[name] = {"vectors": jnp.concatenate(parts) if len(parts) > 1 else parts[0],
                     "scale": weighted_sum([stats[name]["scale"] for stats in stats_list], weights)}
    return out


def _split(rows: int, weights) -> list[int]:
    """`rows` split in proportion to `weights` (summing to 1), whole numbers by largest remainders."""
    exact = [w * rows for w in weights]
    counts = [int(np.floor(x)) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])[:rows - sum(counts)]:
        counts[i] += 1
    return counts


def _sliced_loss(directions_of):
    def loss(features, image, stats, weights, key):
        total = jnp.zeros((), jnp.float32)
        for i, (name, layer) in enumerate(stats.items()):
            directions = directions_of(jax.random.fold_in(key, i), layer["vectors"].shape[1])
            distance = losses.sliced_wasserstein(features[name], layer["vectors"], directions)
            total = total + weights[name] * distance / layer["scale"]
        return total
    return loss


def _masked_sliced_loss(directions_of):
    def loss(features, image, stats_list, masks, weights, key):
        total = jnp.zeros((), jnp.float32)
        for i, name in enumerate(stats_list[0]):
            directions = directions_of(jax.random.fold_in(key, i), stats_list[0][name]["vectors"].shape[1])
            for stats, mask in zip(stats_list, masks[name]):
                distance = losses.masked_sliced_wasserstein(features[name], mask, stats[name]["vectors"], directions)
                total = total + weights[name] * coverage(mask) * distance / stats[name]["scale"]
        return total / len(stats_list)
    return loss


def random_directions(key: jax.Array, channels: int) -> jax.Array:
    """Random projection directions of the swd term.

    Args:
      key: a PRNG key.
      channels: C, the feature channels of the layer.

    Returns:
      float32 [C, C]: C unit columns, uniform on the sphere (normalised Gaussian columns).
    """
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


def _spectrum_blend(stats_list, weights):
    """The power spectra mixed, |F|^2 = sum_i w_i |F_i|^2 (the expected power spectrum of a picture drawn
    from each source with its weight; averaging the complex transforms would cancel their phases), with the
    heaviest source's phases, which carry the offsets between the colour channels."""
    heaviest = stats_list[int(np.argmax(weights))]
    power = sum(w * jnp.square(jnp.abs(f)) for w, f in zip(weights, stats_list))
    modulus = jnp.abs(heaviest)
    return jnp.where(modulus > 0, heaviest * (jnp.sqrt(power) / jnp.where(modulus > 0, modulus, 1)), jnp.sqrt(power))


def _identity(key, channels):  # hist's directions: each channel alone
    return jnp.eye(channels, dtype=jnp.float32)


# The registry: built-in terms first; `register` adds more. Programs look terms up by name when they
# are traced, so a config (hashable, a static jit argument) names its terms and nothing else.
_TERMS: dict[str, Term] = {
    "gram": Term(_gram_stats, _gram_loss, masked_stats=_masked_gram_stats, masked_loss=_masked_gram_loss),
    "swd": Term(_vector_stats, _sliced_loss(random_directions), random=True, blend=_vector_blend,
                masked_stats=_masked_vector_stats, masked_loss=_masked_sliced_loss(random_directions)),
    "hist": Term(_vector_stats, _sliced_loss(_identity), blend=_vector_blend, masked_stats=_masked_vector_stats,
                 masked_loss=_masked_sliced_loss(_identity)),
    "spectrum": Term(_spectrum_stats, _spectrum_loss, blend=_spectrum_blend),
}


def register(name: str, stats: Callable, loss: Callable, random: bool = False, *, replace: bool = False,
             blend: Callable = weighted_sum, masked_stats: Callable | None = None,
             masked_loss: Callable | None = None) -> Term:
    """Make a loss term usable by name in `SynthesisConfig.loss` (and `--loss`, after `--imports`).

    Args:
      name: a new identifier (letters, digits, _), e.g. "mean_colour".
      stats: (features {layer: [H_l, W_l, C_l]}, source float32 [H, W, 3] in [0, 1], layers, size
        (height, width) of the output) -> a pytree of arrays: the source's statistics, computed once per
        source.
      loss: (features of the image, image float32 [H, W, 3] in [0, 1], stats, layer_weights {layer: w},
        key) -> float32 scalar, differentiable in the image; pure (it is traced, vmapped over seeds and
        compiled).
      random: True if the loss depends on `key` (then projections="fresh" gives it a new key each
        iteration, and the optimiser re-evaluates its stored loss).
      replace: allow a name that is already registered; every compiled program is then dropped
        (jax.clear_caches), as a program traced with the old functions would otherwise be reused.
      blend: ([stats, ...], [weight, ...]) -> stats: several sources' statistics as one (`--blend`),
        with the first's shapes; the default, the weighted sum, is right for averages over positions.
      masked_stats, masked_loss: the term's masked form for guided runs (both or neither; see Term). Without
        one, a guided run gives the term its regions' statistics blended by area.

    Returns:
      the registered Term. Raises ValueError (one line) for a bad name, a taken name, or arguments of
      the wrong kind.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"loss term name {name!r} is not an identifier; use letters, digits and _, like mean_colour")
    if name in _TERMS and not replace:
        raise ValueError(f"loss term {name!r} is already registered; choose another name, or pass replace=True")
    if (masked_stats is None) != (masked_loss is None):
        raise ValueError(f"loss term {name!r} has one of masked_stats and masked_loss; give both, or neither")
    for what, fn in (("stats", stats), ("loss", loss), ("blend", blend), ("masked_stats", masked_stats or len),
                     ("masked_loss", masked_loss or len)):
        if not callable(fn):
            raise ValueError(f"{what} of loss term {name!r} is a {type(fn).__name__}, not a function; pass a function")
    if not isinstance(random, bool):
        raise ValueError(f"random={random!r} for loss term {name!r} is not a bool; pass True or False")
    if name in _TERMS:
        jax.clear_caches()
    _TERMS[name] = Term(stats, loss, random, blend, masked_stats, masked_loss)
    return _TERMS[name]


def names() -> tuple[str, ...]:
    """Every registered term's name, built-in ones first (what `SynthesisConfig.loss` accepts)."""
    return tuple(_TERMS)


def get(name: str) -> Term:
    """The Term registered as `name`; ValueError (one line) naming the known ones if there is none."""
    if name not in _TERMS:
        raise ValueError(f"loss term {name!r} is unknown; use one of {', '.join(_TERMS)}, or register it first "
                         "(terms.register, --imports)")
    return _TERMS[name]


def is_random(weights: Mapping[str, float]) -> bool:
    """Whether the loss of these terms ({name: weight}) depends on its key."""
    return any(get(name).random for name in weights)


def source_stats(features, source, layers, size, weights: Mapping[str, float]) -> dict:
    """The source's statistics for every term of a loss.

    Args:
      features: {layer: [H_l, W_l, C_l]} of the source.
      source: float32 [H, W, 3], RGB in [0, 1].
      layers: the VGG layers of the config.
      size: (height, width) of the output.
      weights: {term: weight}, `SynthesisConfig.loss_weights`.

    Returns:
      {term: stats}, the targets of `total_loss`.
    """
    return {name: get(name).stats(features, source, layers, size) for name in weights}


def masked_source_stats(features, source, layers, size, weights: Mapping[str, float], masks) -> dict:
    """`source_stats` of the part of a source inside `masks` ({layer: [H_l, W_l]}, shares in [0, 1]): each
    term's masked_stats, or its whole-source stats where it has no masked form."""
    return {name: get(name).masked_stats(features, source, layers, size, masks) if get(name).masked_stats
            else get(name).stats(features, source, layers, size) for name in weights}


# The key under which guided targets carry their masks ({layer: [R, H_l, W_l]}), beside the terms' statistics.
GUIDE = "guide"
# The key under which --pyramid's targets carry the shrunk source's statistics: [{term: stats}], one per halving.
PYRAMID = "pyramid"


def guided_targets(region_targets, layer_masks) -> dict:
    """Targets of a guided output: each region matched to its own statistics.

    Args:
      region_targets: [{term: stats}] per region (`source_stats`, or an engine's `targets`), in the order
        of the masks; all of one kind (the same terms and layers).
      layer_masks: {layer: [R, H_l, W_l]} of the output (guide.layer_masks), shares in [0, 1].

    Returns:
      {GUIDE: layer_masks, term: [stats] * R} for terms with a masked form; for a term without one, its
      regions' statistics blended by their area at the first layer (Term.blend over the whole image). Under
      PYRAMID, where every region has it, the same for each halved level with the masks halved alike (so the
      halved output keeps the regions' borders); a region from part of a photo has none (synthesis).
    """
    first = next(iter(layer_masks.values()))
    areas = np.asarray(first.sum(axis=(-2, -1)), np.float64)
    shares = areas / areas.sum()
    out = {GUIDE: layer_masks}
    for name in region_targets[0]:
        if name == PYRAMID:
            if all(PYRAMID in t for t in region_targets):
                out[name], masks = [], layer_masks
                for level in zip(*(t[PYRAMID] for t in region_targets)):
                    masks = {layer: _halve_masks(m) for layer, m in masks.items()}
                    out[name].append(guided_targets(list(level), masks))
            continue
        stats = [t[name] for t in region_targets]
        if get(name).masked_loss is not None:
            out[name] = stats
        else:
            out[name] = stats[0] if len(stats) == 1 else get(name).blend(stats, shares.tolist())
    return out


def _halve_masks(masks):
    """[R, H, W] -> [R, H // 2, W // 2], the means of 2x2 blocks: a layer's masks for the output halved (the
    same as guide.layer_masks of the halved pixel masks, since both are block means)."""
    r, h, w = masks.shape[0], masks.shape[1] // 2, masks.shape[2] // 2
    return masks[:, :2 * h, :2 * w].reshape(r, h, 2, w, 2).mean(axis=(2, 4))


def blend_targets(targets_list, weights) -> dict:
    """Several sources' targets as one: each term's statistics blended by its Term.blend.

    Args:
      targets_list: [{term: stats}] of the sources (`source_stats`, or an engine's `targets`), the main
        source first: the blend has its shapes, so one compiled step serves any weights.
      weights: one non-negative weight per source, summing to 1.

    Returns:
      {term: stats}. A weight of 1 on one source gives its targets unchanged.
    """
    weights = [float(w) for w in weights]
    if len(weights) != len(targets_list) or min(weights) < 0 or abs(sum(weights) - 1) > 1e-6:
        raise ValueError(f"blend weights {weights} for {len(targets_list)} source(s); give one non-negative weight "
                         "per source, summing to 1")
    if 1.0 in weights:
        return targets_list[weights.index(1.0)]
    return {name: [blend_targets([t[name][k] for t in targets_list], weights) for k in range(len(stats))]
            if name == PYRAMID else get(name).blend([t[name] for t in targets_list], weights)
            for name, stats in targets_list[0].items()}


def total_loss(features, image, targets, layer_weights, weights: Mapping[str, float], key) -> jax.Array:
    """The loss of an image: sum over terms of weight * term loss.

    Args:
      features: {layer: [H_l, W_l, C_l]} of the image.
      image: float32 [H, W, 3], RGB in [0, 1].
      targets: {term: stats} from `source_stats`, or a guided output's (`guided_targets`).
      layer_weights: {layer: w}.
      weights: {term: weight}.
      key: PRNG key of random terms.

    Returns:
      float32 scalar.
    """
    masks = targets.get(GUIDE)

    def term_loss(name):
        term = get(name)
        if masks is not None and term.masked_loss is not None:
            return term.masked_loss(features, image, targets[name], masks, layer_weights, key)
        return term.loss(features, image, targets[name], layer_weights, key)
    return sum(w * term_loss(name) for name, w in weights.items())
