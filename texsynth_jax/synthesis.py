"""Texture synthesis: target Grams from a source, the loss, and L-BFGS from noise over a batch of seeds.

Write for one image and one key; batch in one place (`init_state_batch`, `step_batch`). The
optimiser runs on an unconstrained latent whose sigmoid is the image, so every pixel stays in
[0, 1] without a bounded L-BFGS (Gatys et al. used scipy's L-BFGS-B with box bounds instead).
"""

from typing import Callable, Mapping, NamedTuple

import numpy as np

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from texsynth_jax import conv as conv_lib
from texsynth_jax import lbfgs, losses, parallel, vgg
from texsynth_jax.config import SynthesisConfig, check_size


class SynthState(NamedTuple):
    """One seed's optimisation state; a pytree, so it jits, vmaps and checkpoints as it is."""

    latent: jax.Array  # float32 [H, W, 3]; image = sigmoid(latent)
    opt_state: lbfgs.LbfgsState
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


def _value_and_grad(target_grams, params, spec, config):
    """Loss and gradient as functions of the latent alone, for the optimiser."""
    return jax.value_and_grad(
        lambda latent: texture_loss(image_from_latent(latent), target_grams, params, spec, config))


def init_state(key: jax.Array, target_grams: Mapping[str, jax.Array], params: Mapping,
               spec: vgg.NetworkSpec, config: SynthesisConfig) -> SynthState:
    """Fresh state for one seed: noise around mid-grey (the paper's almost flat start)."""
    # sigmoid'(0) = 1/4, so latent noise of std 4 * init_scale gives image noise of std init_scale.
    latent = config.init_scale * 4.0 * jax.random.normal(key, (*config.size, 3), jnp.float32)
    opt_state = lbfgs.init(_value_and_grad(target_grams, params, spec, config), latent, config.history)
    return SynthState(latent, opt_state, jnp.zeros((), jnp.int32))


def step(state: SynthState, target_grams: Mapping[str, jax.Array], params: Mapping,
         spec: vgg.NetworkSpec, config: SynthesisConfig) -> tuple[SynthState, jax.Array]:
    """One L-BFGS iteration of one seed. Returns the new state and the loss at it."""
    value_and_grad = _value_and_grad(target_grams, params, spec, config)
    latent, opt_state = lbfgs.step(value_and_grad, state.latent, state.opt_state)
    return SynthState(latent, opt_state, state.step + 1), opt_state.value


def _batched(fn, **jit_args):
    """One program for a batch of seeds: the first argument batched, targets and weights shared."""
    return jax.jit(jax.vmap(fn, in_axes=(0, None, None, None, None)), static_argnums=(3, 4), **jit_args)


# The state is donated, so its buffers (the L-BFGS memory above all) are updated in place.
init_state_batch = _batched(init_state)
step_batch = _batched(step, donate_argnums=0)


def _programs(mesh, keys, target_grams, params, spec, config):
    """Place the inputs on `mesh` (None: the default device); the init and step programs for it,
    and the state's shardings (None: the default device)."""
    if mesh is None:
        return jax.device_put((keys, target_grams, params)), init_state_batch, step_batch, None
    rep = parallel.replicated(mesh)
    target_grams, params = jax.device_put((target_grams, params), rep)
    by_seed = parallel.SEEDS in mesh.axis_names
    keys = jax.device_put(keys, NamedSharding(mesh, P(parallel.SEEDS)) if by_seed else rep)
    shape = jax.eval_shape(init_state_batch, keys, target_grams, params, spec, config)
    shardings = parallel.batch_sharding(mesh, shape, config.size)
    losses = NamedSharding(mesh, P(parallel.SEEDS)) if by_seed else rep
    init = _batched(init_state, out_shardings=shardings)
    step_ = _batched(step, out_shardings=(shardings, losses), donate_argnums=0)
    return (keys, target_grams, params), init, step_, shardings


def synthesize(keys: jax.Array, target_grams: Mapping[str, jax.Array], params: Mapping,
               spec: vgg.NetworkSpec, config: SynthesisConfig,
               callback: Callable[[SynthState], None] | None = None, *,
               mesh: Mesh | None = None, state: SynthState | None = None) -> tuple[jax.Array, jax.Array]:
    """Synthesise one texture per key.

    The iterations run from the host, one jitted batched step each: XLA:CPU runs convolutions
    inside a loop body (`lax.scan`/`fori_loop`) about 3x slower than at the top level of a
    program (measured, 128 px), and a step takes far longer than its dispatch on any backend.

    Args:
      keys: [B] PRNG keys, one per seed (e.g. `jax.random.split(jax.random.key(0), 4)`).
      target_grams: from `compute_targets`.
      params, spec: the VGG weights and their convention (`weights.load_weights`).
      config: the synthesis settings.
      callback: called with the batched state after every iteration (progress, snapshots,
        checkpoints). On a seed mesh the batch is padded to a multiple of the device count: rows
        from B on are padding.
      mesh: None for the default device; a `parallel.SEEDS` mesh to split the seeds over its
        devices; a `parallel.SPACE` mesh to split every image into strips over its devices.
      state: a state to continue from (a checkpoint), batched as the callback saw it; the run
        goes on from `state.step` to `config.iterations`.

    Returns:
      images float32 [B, H, W, 3] RGB in [0, 1], and losses float32 [B, n] after each of the n
      iterations run by this call.
    """
    config.check_network(spec.arch)
    if mesh is not None and parallel.SPACE in mesh.axis_names:
        parallel.check_spatial(mesh, config.size, max(vgg.downsampling(spec.arch, l) for l in config.layers))
    batch = keys.shape[0]
    keys = parallel.pad_batch(keys, mesh)
    (keys, target_grams, params), init, step_, shardings = _programs(
        mesh, keys, target_grams, params, spec, config)
    if state is None:
        state = init(keys, target_grams, params, spec, config)
    else:
        state = jax.device_put(state, shardings)
    history = []
    for _ in range(int(np.max(jax.device_get(state.step))), config.iterations):
        state, loss = step_(state, target_grams, params, spec, config)
        history.append(loss)
        if callback is not None:
            callback(state)
    losses = jnp.stack(history, axis=1) if history else jnp.zeros((keys.shape[0], 0), jnp.float32)
    return image_from_latent(state.latent)[:batch], losses[:batch]
