"""Texture synthesis for one seed: targets from a source, the loss, and L-BFGS steps from noise.

Everything here is written for one image and one key; `engine.py` batches it over seeds in one place and
compiles it once per job. The targets, init_state, restart and step are jitted (the network and the config
static), so a call outside jit is one compiled program, not a hundred small ones op by op; under jit or vmap
they inline. texture_loss is not: its gradient through a jit boundary would keep every activation the
backward pass needs alive (+30% memory per step, tests/test_hardening.py). The optimiser runs on an
unconstrained latent whose sigmoid is the image, so every pixel stays in [0, 1] without a bounded L-BFGS
(Gatys et al. used scipy's L-BFGS-B with box bounds instead).
"""

from functools import partial
from typing import Mapping, NamedTuple

import numpy as np

import jax
import jax.numpy as jnp

from texsynth_jax import content as content_lib
from texsynth_jax import conv as conv_lib
from texsynth_jax import fill, guide, optimizers, terms, vgg
from texsynth_jax.config import INIT_SCALE, SynthesisConfig, check_size, scaled_size


class SynthState(NamedTuple):
    """One seed's optimisation state; a pytree, so it jits, vmaps and checkpoints as it is."""

    latent: jax.Array  # float32 [H, W, 3]; image = sigmoid(latent)
    opt_state: object  # the optimiser's state pytree (optimizers.py)
    step: jax.Array  # int32 scalar: iterations done
    key: jax.Array  # uint32 key data of the seed (random projections of the loss)


def image_from_latent(latent: jax.Array) -> jax.Array:
    """The image of a latent: float32 [..., H, W, 3] (any real values) -> RGB in [0, 1] (sigmoid)."""
    return jax.nn.sigmoid(latent)


# How far outside [0, 1] an image may reach before it is taken for another convention (0-255, [-1, 1]):
# resampling (cubic, lanczos) overshoots a little, a 0-255 image by far more.
_RANGE_SLACK = 0.1


def check_image(image, what: str = "source image") -> None:
    """Raise ValueError (one line, naming the fix) unless `image` is RGB [H, W, 3] of floats in [0, 1].

    uint8 and 0-255 images are refused (pass image / 255), as are NaN and infinite values. A
    jit-traced image's values are unknown: only its shape and dtype are checked.
    """
    shape, dtype = np.shape(image), getattr(image, "dtype", None)
    dtype = np.asarray(image).dtype if dtype is None else dtype
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"{what} has shape {tuple(shape)}; pass one RGB image [H, W, 3] (image[..., :3] drops "
                         "an alpha channel)")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{what} is {dtype}; pass float32 RGB in [0, 1], e.g. image / 255 for a uint8 image "
                         "(image_io.load_image does this)")
    if isinstance(image, jax.core.Tracer):
        return
    if isinstance(image, jax.Array):
        low, high = (float(v) for v in jax.device_get((jnp.min(image), jnp.max(image))))
    else:
        low, high = float(np.min(image)), float(np.max(image))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{what} has NaN or infinite values; pass finite RGB values in [0, 1]")
    if high > 1 + _RANGE_SLACK:
        raise ValueError(f"{what} has values up to {high:.4g}, not RGB in [0, 1]; pass image / 255 for a 0-255 image")
    if low < -_RANGE_SLACK:
        raise ValueError(f"{what} has values down to {low:.4g}, not RGB in [0, 1]; pass (image + 1) / 2 for a "
                         "[-1, 1] image")


def _features(params, image, spec: vgg.NetworkSpec, config: SynthesisConfig, padding: str, layers=None):
    dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
    conv = conv_lib.select(config.conv)
    return vgg.extract_features(params, image, spec, config.layers if layers is None else layers, config.pooling,
                                conv, dtype, config.remat, padding)


def compute_targets(params: Mapping, source: jax.Array, spec: vgg.NetworkSpec,
                    config: SynthesisConfig) -> dict[str, object]:
    """The source's statistics for every loss term of `config.loss`, computed once per source.

    Args:
      params: VGG conv weights (see `vgg.extract_features`).
      source: float32 [H, W, 3], RGB in [0, 1]; any size that reaches the deepest layer. A uint8 or
        0-255 image is a ValueError (pass image / 255); under jit only its dtype is checked.
      spec, config: the network and the synthesis settings.

    Returns:
      {term: stats} (terms.py); for "gram", {layer: float32 [C, C]} for each layer in
      `config.layers`, size-independent (normalised by the number of positions), so an output of
      another size can match them; with `config.pyramid`, under terms.PYRAMID a list of the same for the
      source halved once, twice, ... (`halve`), one per `config.pyramid_sizes()`.
    """
    check_image(source, "source image")
    config.check_network(spec.arch)
    check_size(source.shape[:2], spec.arch, config.layers, "source image")
    return _source_stats(params, jnp.asarray(source), spec, config)


@partial(jax.jit, static_argnums=(2, 3))
def _source_stats(params, source, spec, config, mask=None):
    """{term: stats} of `source`, or of its part in `mask` ([H, W] shares); of a whole source with --pyramid,
    under terms.PYRAMID, the same of the source halved once, twice, ... A part of a photo has no halved
    statistics: halved, its features' receptive fields, twice as wide, see past the mask (a hole's red
    object, kept out at full size, leaked into --fill's output: tests/test_fill.py)."""
    # The source is a photo, not a torus: its statistics use config.padding even when tileable.
    features = _features(params, source, spec, config, config.padding)
    if mask is not None:
        masks = guide.layer_masks(mask, config.layers, spec.arch)
        return terms.masked_source_stats(features, source, config.layers, config.size, config.loss_weights, masks)
    out = terms.source_stats(features, source, config.layers, config.size, config.loss_weights)
    for k, size in enumerate(config.pyramid_sizes(), 1):
        source = halve(source)
        check_size(source.shape[:2], spec.arch, config.layers, f"source image halved {k} time(s) for --pyramid")
        features = _features(params, source, spec, config, config.padding)
        out.setdefault(terms.PYRAMID, []).append(
            terms.source_stats(features, source, config.layers, size, config.loss_weights))
    return out


def halve(image: jax.Array) -> jax.Array:
    """[H, W, C] -> [H // 2, W // 2, C]: the means of 2x2 blocks (an odd last row or column left out): --pyramid's
    shrinking, the same for the source and the output, and periodic for an output of even sides."""
    h, w, c = image.shape[0] // 2, image.shape[1] // 2, image.shape[-1]
    return image[:2 * h, :2 * w].reshape(h, 2, w, 2, c).mean(axis=(1, 3))


@partial(jax.jit, static_argnums=(3, 4))
def masked_targets(params: Mapping, source: jax.Array, mask: jax.Array, spec: vgg.NetworkSpec,
                   config: SynthesisConfig) -> dict[str, object]:
    """`compute_targets` of the part of `source` inside `mask` (float32 [H, W], each pixel's share in
    [0, 1], at the source's size): a guided region's statistics from part of a photo (--source_guide).
    Terms without a masked form take the whole source's (terms.masked_source_stats); no --pyramid levels
    (`_source_stats`)."""
    return _source_stats(params, source, spec, config, mask)


def texture_loss(image: jax.Array, targets: Mapping[str, object], params: Mapping,
                 spec: vgg.NetworkSpec, config: SynthesisConfig, key: jax.Array | None = None) -> jax.Array:
    """The texture loss of one image (with `config.loss` = gram:1, that of Gatys et al.).

    Args:
      image: float32 [H, W, 3], RGB in [0, 1], of size `config.size`.
      targets: {term: stats} from `compute_targets` (with a content photo's, `content_targets`, its content
        loss is added: content.py).
      params, spec, config: the network and the synthesis settings.
      key: PRNG key of random terms (swd's directions); None uses jax.random.key(0).

    Returns:
      a pure, differentiable float32 scalar.
    """
    layers = config.layers
    if content_lib.CONTENT in targets and config.content_layer not in layers:
        layers = (*layers, config.content_layer)
    # Tileable: the output is a torus, so every convolution wraps around its border.
    padding = "circular" if config.tileable else config.padding
    features = _features(params, image, spec, config, padding, layers)
    weights = dict(zip(config.layers, config.layer_weights))
    key = jax.random.key(0) if key is None else key
    loss = terms.total_loss(features, image, targets, weights, config.loss_weights, key)
    if content_lib.CONTENT in targets:
        loss = loss + content_lib.loss(features, targets, config.content_layer)
    for shrunk in targets.get(terms.PYRAMID, ()):  # --pyramid: the same terms on the output halved, and again
        image = halve(image)
        features = _features(params, image, spec, config, padding)
        loss = loss + terms.total_loss(features, image, shrunk, weights, config.loss_weights, key)
    return loss


@partial(jax.jit, static_argnums=(4, 5))
def content_targets(params: Mapping, content: jax.Array, weight, targets: Mapping[str, object],
                    spec: vgg.NetworkSpec, config: SynthesisConfig) -> dict[str, object]:
    """`targets` with a content photo's (Gatys et al. 2016, content.py): its features at config.content_layer.

    Args:
      content: float32 [*config.size, 3], RGB in [0, 1]: the photo whose layout the output keeps.
      weight: the content loss's weight (a scalar, an argument: every weight runs the same program).
      targets: {term: stats} from `compute_targets` (guided, blended or a canvas's as well).

    Returns:
      {**targets, CONTENT: {"features", "image", "weight"}}.
    """
    features = _features(params, content, spec, config, config.padding, (config.content_layer,))
    grey = jnp.full((*config.size, 3), 0.5, jnp.float32)
    unit = texture_loss(grey, targets, params, spec, config)
    entry = content_lib.entry(features[config.content_layer], content, weight, unit)
    return {**targets, content_lib.CONTENT: entry}


def projection_key(state: SynthState, config: SynthesisConfig) -> jax.Array:
    """The PRNG key of the loss's random terms at this state's iteration: the seed's own for the whole
    run ("fixed"), or a new one each iteration ("fresh"); the same for every line-search trial."""
    key = jax.random.wrap_key_data(state.key)
    return jax.random.fold_in(key, state.step + 1 if config.projections == "fresh" else 0)


def _loss_of_latent(targets, params, spec, config, key):
    """The loss as a function of the latent alone, for the optimiser (of the composite, filling a canvas)."""
    return lambda latent: texture_loss(fill.compose(image_from_latent(latent), targets), targets, params, spec,
                                       config, key)


@partial(jax.jit, static_argnums=(3, 4))
def init_state(key: jax.Array, targets: Mapping[str, object], params: Mapping,
               spec: vgg.NetworkSpec, config: SynthesisConfig) -> SynthState:
    """Fresh state for one seed: noise around mid-grey (`config.init`, `config.init_scale`), or around the content
    photo where the targets hold one and `config.content_start` is "content".

    Args:
      key: the seed's PRNG key (its noise, and the random directions of random terms).
      targets: {term: stats} from `compute_targets` (the optimiser evaluates the loss at the start).
      params, spec, config: the network and the synthesis settings.

    Returns:
      SynthState at iteration 0, latent float32 [*config.size, 3].
    """
    shape = (*config.size, 3)
    init, scale = config.start
    if content_lib.CONTENT in targets and config.content_start == "content":
        # The photo's own noise is normal: a uniform start's spread would bury the photo.
        scale = scale if init == "normal" else INIT_SCALE
        latent = content_lib.start(targets, scale * 4.0 * jax.random.normal(key, shape, jnp.float32))
    elif init == "uniform":  # the image itself uniform; kept off 0 and 1, where the sigmoid is flat
        image = 0.5 + scale * jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
        latent = jax.scipy.special.logit(jnp.clip(image, 0.005, 0.995))
    else:  # sigmoid'(0) = 1/4, so latent noise of std 4 * init_scale gives image noise of std init_scale.
        latent = scale * 4.0 * jax.random.normal(key, shape, jnp.float32)
    return restart(latent, jax.random.key_data(key), targets, params, spec, config)


@partial(jax.jit, static_argnums=(4, 5))
def restart(latent: jax.Array, key_data: jax.Array, targets: Mapping[str, object], params: Mapping,
            spec: vgg.NetworkSpec, config: SynthesisConfig) -> SynthState:
    """A state that starts from `latent` (of any size: resized to `config.size` with
    `config.upsample`, periodically when tileable) with a fresh optimiser at iteration 0: how each
    scale of a coarse-to-fine run starts from the one before (the L-BFGS memory of another size
    means nothing at this one). Filling a canvas (fill.py), its kept pixels take the photo's values."""
    enlarged = tuple(latent.shape[:2]) != tuple(config.size)
    latent = fill.pin(resize(latent, config.size, config.upsample, config.tileable), targets, enlarged)
    state = SynthState(latent, None, jnp.zeros((), jnp.int32), key_data)
    optimizer = optimizers.make(config.optimizer, config.history)
    opt_state = optimizer.init(_loss_of_latent(targets, params, spec, config, projection_key(state, config)), latent)
    # Weakly typed leaves (optax's counters start as Python 0) would make the first step's input types differ
    # from every later step's, and compile the step twice.
    opt_state = jax.tree.map(lambda leaf: jax.lax.convert_element_type(leaf, leaf.dtype), opt_state)
    return state._replace(opt_state=opt_state)


def resize_source(source: jax.Array, size) -> jax.Array:
    """float32 [H, W, 3] in [0, 1] -> [*size, 3] (antialiased cubic, clipped to [0, 1]); itself at its own size."""
    if tuple(source.shape[:2]) == tuple(size):
        return source
    source = jnp.asarray(source, jnp.float32)
    return jnp.clip(jax.image.resize(source, (*size, source.shape[2]), "cubic", antialias=True), 0.0, 1.0)


def scale_source(source, scale: float):
    """The source as its statistics see it: resized by `scale` (config.source_scale; itself at 1)."""
    return resize_source(source, scaled_size(np.shape(source)[:2], scale))


def resize(image: jax.Array, size: tuple[int, int], method: str, periodic: bool = False) -> jax.Array:
    """[h, w, C] -> [*size, C] with jax.image's `method`; `periodic` treats the image as a torus (the
    border is interpolated from the opposite side), so a tileable image stays tileable."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    if not periodic or method == "nearest":  # nearest never looks past the border
        return jax.image.resize(image, (*size, image.shape[2]), method)
    pad = 6  # beyond the reach of every jax.image kernel (lanczos5: 5 px of the smaller image)
    wrapped = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="wrap")
    scale = jnp.array([size[0] / image.shape[0], size[1] / image.shape[1]])
    # Output pixel o samples the padded input at (o + 0.5) / scale - 0.5 + pad: translate by -pad * scale.
    return jax.image.scale_and_translate(wrapped, (*size, image.shape[2]), (0, 1), scale, -pad * scale, method,
                                         antialias=False)


@partial(jax.jit, static_argnums=(3, 4))
def step(state: SynthState, targets: Mapping[str, object], params: Mapping,
         spec: vgg.NetworkSpec, config: SynthesisConfig) -> tuple[SynthState, jax.Array]:
    """One L-BFGS iteration of one seed (line search included).

    Returns:
      (state, loss): the new state, and the float32 scalar loss at it.
    """
    optimizer = optimizers.make(config.optimizer, config.history)
    loss = _loss_of_latent(targets, params, spec, config, projection_key(state, config))
    opt_state = state.opt_state
    if config.projections == "fresh" and terms.is_random(config.loss_weights):
        # The stored value and gradient are the last iteration's loss, with other directions: against
        # them, the line search finds no decrease half the time (20 trials, then a reset).
        opt_state = optimizer.refresh(loss, state.latent, opt_state)
    latent, opt_state = optimizer.step(loss, state.latent, opt_state)
    return SynthState(latent, opt_state, state.step + 1, state.key), optimizer.value(opt_state)


def evaluations(state: SynthState, config: SynthesisConfig) -> jax.Array:
    """int32: loss-and-gradient evaluations so far (one per line-search trial, plus the start)."""
    return optimizers.make(config.optimizer, config.history).evals(state.opt_state)
