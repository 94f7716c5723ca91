"""Texture synthesis for one seed: targets from a source, the loss, and L-BFGS steps from noise.

Everything here is written for one image and one key; `engine.py` batches it over seeds in one
place and compiles it once per job. The
optimiser runs on an unconstrained latent whose sigmoid is the image, so every pixel stays in
[0, 1] without a bounded L-BFGS (Gatys et al. used scipy's L-BFGS-B with box bounds instead).
"""

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

from texsynth_jax import conv as conv_lib
from texsynth_jax import optimizers, terms, vgg
from texsynth_jax.config import SynthesisConfig, check_size


class SynthState(NamedTuple):
    """One seed's optimisation state; a pytree, so it jits, vmaps and checkpoints as it is."""

    latent: jax.Array  # float32 [H, W, 3]; image = sigmoid(latent)
    opt_state: object  # the optimiser's state pytree (optimizers.py)
    step: jax.Array  # int32 scalar: iterations done
    key: jax.Array  # uint32 key data of the seed (random projections of the loss)


def image_from_latent(latent: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(latent)


def _features(params, image, spec: vgg.NetworkSpec, config: SynthesisConfig, padding: str):
    dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
    conv = conv_lib.select(config.conv, jax.default_backend())
    return vgg.extract_features(params, image, spec, config.layers, config.pooling, conv, dtype,
                                config.remat, padding)


def compute_targets(params: Mapping, source: jax.Array, spec: vgg.NetworkSpec,
                    config: SynthesisConfig) -> dict[str, object]:
    """The source's statistics for every loss term of `config.loss`, computed once per source.

    Args:
      params: VGG conv weights (see `vgg.extract_features`).
      source: float32 [H, W, 3], RGB in [0, 1]; any size that reaches the deepest layer.
      spec, config: the network and the synthesis settings.

    Returns:
      {term: stats} (terms.py); for "gram", {layer: float32 [C, C]} for each layer in
      `config.layers`, size-independent (normalised by the number of positions), so an output of
      another size can match them.
    """
    config.check_network(spec.arch)
    check_size(source.shape[:2], spec.arch, config.layers, "source image")
    # The source is a photo, not a torus: its statistics use config.padding even when tileable.
    features = _features(params, source, spec, config, config.padding)
    return terms.source_stats(features, source, config.layers, config.size, config.loss_weights)


def texture_loss(image: jax.Array, targets: Mapping[str, object], params: Mapping,
                 spec: vgg.NetworkSpec, config: SynthesisConfig, key: jax.Array | None = None) -> jax.Array:
    """The texture loss of one image (with `config.loss` = gram:1, that of Gatys et al.): a pure,
    differentiable float32 scalar.

    image: float32 [H, W, 3], RGB in [0, 1]. key: PRNG key of random terms (swd's directions);
    None uses jax.random.key(0).
    """
    # Tileable: the output is a torus, so every convolution wraps around its border.
    features = _features(params, image, spec, config, "circular" if config.tileable else config.padding)
    weights = dict(zip(config.layers, config.layer_weights))
    key = jax.random.key(0) if key is None else key
    return terms.total_loss(features, image, targets, weights, config.loss_weights, key)


def projection_key(state: SynthState, config: SynthesisConfig) -> jax.Array:
    """The key of the loss's random directions at this state's iteration: the seed's own for the whole
    run ("fixed"), or a new one each iteration ("fresh"); the same for every line-search trial."""
    key = jax.random.wrap_key_data(state.key)
    return jax.random.fold_in(key, state.step + 1 if config.projections == "fresh" else 0)


def _loss_of_latent(targets, params, spec, config, key):
    """The loss as a function of the latent alone, for the optimiser."""
    return lambda latent: texture_loss(image_from_latent(latent), targets, params, spec, config, key)


def init_state(key: jax.Array, targets: Mapping[str, object], params: Mapping,
               spec: vgg.NetworkSpec, config: SynthesisConfig) -> SynthState:
    """Fresh state for one seed: noise around mid-grey (`config.init`, `config.init_scale`)."""
    shape = (*config.size, 3)
    if config.init == "uniform":  # the image itself uniform; kept off 0 and 1, where the sigmoid is flat
        image = 0.5 + config.init_scale * jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
        latent = jax.scipy.special.logit(jnp.clip(image, 0.005, 0.995))
    else:  # sigmoid'(0) = 1/4, so latent noise of std 4 * init_scale gives image noise of std init_scale.
        latent = config.init_scale * 4.0 * jax.random.normal(key, shape, jnp.float32)
    return restart(latent, jax.random.key_data(key), targets, params, spec, config)


def restart(latent: jax.Array, key_data: jax.Array, targets: Mapping[str, object], params: Mapping,
            spec: vgg.NetworkSpec, config: SynthesisConfig) -> SynthState:
    """A state that starts from `latent` (of any size: resized to `config.size` with
    `config.upsample`, periodically when tileable) with a fresh optimiser at iteration 0: how each
    scale of a coarse-to-fine run starts from the one before (the L-BFGS memory of another size
    means nothing at this one)."""
    latent = resize(latent, config.size, config.upsample, config.tileable)
    state = SynthState(latent, None, jnp.zeros((), jnp.int32), key_data)
    optimizer = optimizers.make(config.optimizer, config.history)
    opt_state = optimizer.init(_loss_of_latent(targets, params, spec, config, projection_key(state, config)), latent)
    return state._replace(opt_state=opt_state)


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


def step(state: SynthState, targets: Mapping[str, object], params: Mapping,
         spec: vgg.NetworkSpec, config: SynthesisConfig) -> tuple[SynthState, jax.Array]:
    """One L-BFGS iteration of one seed. Returns the new state and the loss at it."""
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
    """Loss-and-gradient evaluations so far (one per line-search trial, plus the start)."""
    return optimizers.make(config.optimizer, config.history).evals(state.opt_state)
