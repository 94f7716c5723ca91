"""Texture synthesis for one seed: target Grams from a source, the loss, and L-BFGS steps from noise.

Everything here is written for one image and one key; `engine.py` batches it over seeds in one
place and compiles it once per job. The
optimiser runs on an unconstrained latent whose sigmoid is the image, so every pixel stays in
[0, 1] without a bounded L-BFGS (Gatys et al. used scipy's L-BFGS-B with box bounds instead).
"""

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

from texsynth_jax import conv as conv_lib
from texsynth_jax import losses, optimizers, vgg
from texsynth_jax.config import SynthesisConfig, check_size


class SynthState(NamedTuple):
    """One seed's optimisation state; a pytree, so it jits, vmaps and checkpoints as it is."""

    latent: jax.Array  # float32 [H, W, 3]; image = sigmoid(latent)
    opt_state: object  # the optimiser's state pytree (optimizers.py)
    step: jax.Array  # int32 scalar: iterations done


def image_from_latent(latent: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(latent)


def _features(params, image, spec: vgg.NetworkSpec, config: SynthesisConfig):
    dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
    conv = conv_lib.select(config.conv, jax.default_backend())
    return vgg.extract_features(params, image, spec, config.layers, config.pooling, conv, dtype,
                                config.remat)


def compute_targets(params: Mapping, source: jax.Array, spec: vgg.NetworkSpec,
                    config: SynthesisConfig) -> dict[str, jax.Array]:
    """Target Gram matrices of a source image, computed once per source.

    Args:
      params: VGG conv weights (see `vgg.extract_features`).
      source: float32 [H, W, 3], RGB in [0, 1]; any size that reaches the deepest layer.
      spec, config: the network and the synthesis settings.

    Returns:
      {layer: float32 [C, C]} for each layer in `config.layers`. Size-independent (normalised by
      the number of positions), so an output of another size can match them.
    """
    config.check_network(spec.arch)
    check_size(source.shape[:2], spec.arch, config.layers, "source image")
    features = _features(params, source, spec, config)
    return {name: losses.gram_matrix(features[name]) for name in config.layers}


def texture_loss(image: jax.Array, target_grams: Mapping[str, jax.Array], params: Mapping,
                 spec: vgg.NetworkSpec, config: SynthesisConfig) -> jax.Array:
    """The Gatys et al. texture loss of one image: a pure, differentiable float32 scalar.

    image: float32 [H, W, 3], RGB in [0, 1].
    """
    features = _features(params, image, spec, config)
    weights = dict(zip(config.layers, config.layer_weights))
    return losses.style_loss(features, target_grams, weights)


def _loss_of_latent(target_grams, params, spec, config):
    """The loss as a function of the latent alone, for the optimiser."""
    return lambda latent: texture_loss(image_from_latent(latent), target_grams, params, spec, config)


def init_state(key: jax.Array, target_grams: Mapping[str, jax.Array], params: Mapping,
               spec: vgg.NetworkSpec, config: SynthesisConfig) -> SynthState:
    """Fresh state for one seed: noise around mid-grey (the paper's almost flat start)."""
    # sigmoid'(0) = 1/4, so latent noise of std 4 * init_scale gives image noise of std init_scale.
    latent = config.init_scale * 4.0 * jax.random.normal(key, (*config.size, 3), jnp.float32)
    optimizer = optimizers.make(config.optimizer, config.history)
    opt_state = optimizer.init(_loss_of_latent(target_grams, params, spec, config), latent)
    return SynthState(latent, opt_state, jnp.zeros((), jnp.int32))


def step(state: SynthState, target_grams: Mapping[str, jax.Array], params: Mapping,
         spec: vgg.NetworkSpec, config: SynthesisConfig) -> tuple[SynthState, jax.Array]:
    """One L-BFGS iteration of one seed. Returns the new state and the loss at it."""
    optimizer = optimizers.make(config.optimizer, config.history)
    latent, opt_state = optimizer.step(_loss_of_latent(target_grams, params, spec, config), state.latent,
                                       state.opt_state)
    return SynthState(latent, opt_state, state.step + 1), optimizer.value(opt_state)


def evaluations(state: SynthState, config: SynthesisConfig) -> jax.Array:
    """Loss-and-gradient evaluations so far (one per line-search trial, plus the start)."""
    return optimizers.make(config.optimizer, config.history).evals(state.opt_state)
