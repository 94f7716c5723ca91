"""The synthesis engine: weights placed once, programs compiled once, any number of sources run through them.

    engine = Engine(params, spec, config, batch_size=4)            # mesh=parallel.make_mesh(...) to shard
    for source in sources:
        targets = engine.targets(source)                              # jitted (once per source shape)
        images, losses = engine.synthesize(keys, targets)             # the same init and step programs

An `Engine` is built for one (network, config, batch size, mesh). It puts the weights on the devices once,
and jits the target Grams, the batched init and the batched step once; every source of a job reuses
them, so a job of 10,000 sources compiles its step program once. Batches smaller than `batch_size` are
padded with repeated seeds and the padding is dropped from what is returned.

`run` drives the iterations from the host and keeps losses and images on the device: they reach the
host only when the caller's `on_step` fetches them (a log line, a snapshot, a checkpoint, the end).
"""

import functools
from typing import Callable, Mapping

import numpy as np

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from texsynth_jax import parallel, synthesis, vgg
from texsynth_jax.config import SynthesisConfig, check_size
from texsynth_jax.synthesis import SynthState

# Iterations per dispatch (a lax.scan of that many steps in one program), per backend. On XLA:CPU a
# scan body runs the convolutions slower than a top-level program (bench/dispatch.py), so 1 there;
# on other backends unmeasured so far, so 1 as well (a step costs far more than its dispatch).
STEPS_PER_DISPATCH = {"cpu": 1}


def _batched(fn, **jit_args):
    """One program for a batch of seeds: the first argument batched, targets and weights shared."""
    return jax.jit(jax.vmap(fn, in_axes=(0, None, None, None, None)), static_argnums=(3, 4), **jit_args)


# Module-level programs for a batch of seeds on the default device; an Engine builds its own, with
# the shardings of its mesh. The state is donated, so its buffers (the L-BFGS memory above all) are
# updated in place.
init_state_batch = _batched(synthesis.init_state)
step_batch = _batched(synthesis.step, donate_argnums=0)


def _scan_steps(state, target_grams, params, spec, config, *, length):
    """`length` iterations of one seed in one program; losses [length]."""
    def body(state, _):
        return synthesis.step(state, target_grams, params, spec, config)
    return jax.lax.scan(body, state, None, length=length)


class Engine:
    """Compiled synthesis programs for one (network, config, batch size, mesh).

    Attributes:
      params: the weights, on the device(s) (replicated over a mesh).
      spec, config, mesh: as given.
      batch_size: seeds per batch as given; `padded_size` is that rounded up for a seed mesh.
      steps_per_dispatch: iterations per host dispatch (see STEPS_PER_DISPATCH).
    """

    def __init__(self, params: Mapping, spec: vgg.NetworkSpec, config: SynthesisConfig, batch_size: int,
                 mesh: Mesh | None = None, steps_per_dispatch: int | None = None):
        if config.coarse_iterations:
            raise ValueError("an Engine runs one scale, and this config has coarse scales (coarse_iterations); "
                             "use coarse_to_fine.CoarseToFine, which holds an Engine per scale")
        config.check_network(spec.arch)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        if mesh is not None and parallel.SPACE in mesh.axis_names:
            parallel.check_spatial(mesh, config.size, max(vgg.downsampling(spec.arch, l) for l in config.layers))
        self.spec, self.config, self.mesh, self.batch_size = spec, config, mesh, batch_size
        self.padded_size = parallel.padded_size(batch_size, mesh)
        self.steps_per_dispatch = steps_per_dispatch or STEPS_PER_DISPATCH.get(jax.default_backend(), 1)
        if mesh is None:
            self._shared = self._keys = None
            self.params = self._params_one = jax.device_put(params)
        else:
            self._shared = parallel.replicated(mesh)
            self._keys = NamedSharding(mesh, P(parallel.SEEDS)) if parallel.SEEDS in mesh.axis_names else self._shared
            self.params = jax.device_put(params, self._shared)
            # Targets are one forward pass per source: computed on one device and then broadcast, not
            # replicated on every device (which costs the device count's times the work where devices
            # share a host's cores, as virtual CPU devices do).
            self._params_one = jax.device_put(params, mesh.devices.flat[0])
        self._targets = jax.jit(synthesis.compute_targets, static_argnums=(2, 3))
        keys_like = jax.ShapeDtypeStruct((self.padded_size,), jax.random.key(0).dtype, sharding=self._keys)
        image_like = jax.ShapeDtypeStruct((*config.size, 3), jnp.float32)
        self._targets_like = jax.eval_shape(self._targets, self.params, image_like, spec, config)
        self.state_shape = jax.eval_shape(init_state_batch, keys_like, self._targets_like, self.params, spec, config)
        self.state_sharding = None if mesh is None else parallel.batch_sharding(mesh, self.state_shape, config.size)
        # Output shardings on a mesh (state, and losses split like the seeds); none on one device.
        placed = (lambda *out: {}) if mesh is None else (lambda *out: {"out_shardings": out[0] if len(out) == 1 else out})
        self._init = _batched(synthesis.init_state, **placed(self.state_sharding))
        self._restart = jax.jit(jax.vmap(synthesis.restart, in_axes=(0, 0, None, None, None, None)),
                                static_argnums=(4, 5), **placed(self.state_sharding))
        self._step = _batched(synthesis.step, donate_argnums=0, **placed(self.state_sharding, self._keys))
        self._scan = None
        if self.steps_per_dispatch > 1:
            scan = jax.vmap(functools.partial(_scan_steps, length=self.steps_per_dispatch),
                            in_axes=(0, None, None, None, None), out_axes=(0, 1))
            self._scan = jax.jit(scan, static_argnums=(3, 4), donate_argnums=0, **placed(self.state_sharding, None))

    # Sources and states.

    def targets(self, source) -> dict[str, jax.Array]:
        """Target Grams of a source image (float32 [H, W, 3] in [0, 1], any size that reaches the
        deepest layer), on the device(s). One compile per source shape."""
        check_size(np.shape(source)[:2], self.spec.arch, self.config.layers, "source image")
        source = jax.device_put(jnp.asarray(source, jnp.float32), jax.tree.leaves(self._params_one)[0].sharding)
        return jax.device_put(self._targets(self._params_one, source, self.spec, self.config), self._shared)

    def keys(self, seeds) -> jax.Array:
        """PRNG keys of integer seeds (the CLI's `--seeds`), padded to the engine's batch."""
        seeds = np.asarray(seeds, np.uint32)
        return jax.vmap(jax.random.key)(jnp.asarray(seeds[np.arange(self.padded_size) % len(seeds)]))

    def init(self, keys: jax.Array, targets: Mapping[str, jax.Array]) -> SynthState:
        """Fresh batched state at the source's `targets`: one row per key, padded cyclically to
        `padded_size` rows (the optimiser evaluates the loss at the start)."""
        if not 1 <= len(keys) <= self.padded_size:
            raise ValueError(f"{len(keys)} keys for an engine of batch {self.batch_size}; build one with "
                             f"batch_size={len(keys)}")
        keys = jax.device_put(keys[np.arange(self.padded_size) % len(keys)], self._keys)
        return self._init(keys, targets, self.params, self.spec, self.config)

    def restart(self, state: SynthState, targets: Mapping[str, jax.Array]) -> SynthState:
        """This engine's state from `state` of another size (the previous scale of a coarse-to-fine run):
        its images enlarged to `config.size` (synthesis.restart), the same seeds, a fresh optimiser."""
        return self._restart(state.latent, state.key, targets, self.params, self.spec, self.config)

    def place(self, state) -> SynthState:
        """A state from the host (a checkpoint) onto the engine's devices."""
        return jax.device_put(state, self.state_sharding)

    def step(self, state: SynthState, targets) -> tuple[SynthState, jax.Array]:
        """One iteration of the whole batch; `state` is donated. Returns (state, losses [padded_size])."""
        return self._step(state, targets, self.params, self.spec, self.config)

    def run(self, state: SynthState, targets, until: int,
            on_step: Callable[[SynthState, int, list], bool | None] | None = None) -> tuple[SynthState, list]:
        """Iterate from `state.step` to iteration `until`, `steps_per_dispatch` at a time.

        Args:
          on_step: called after each dispatch as on_step(state, step, losses), with `losses` the
            list of device arrays [padded_size] of every iteration run by this call so far. Return
            True to stop here (Ctrl-C, a budget). Nothing is fetched to the host unless it does.

        Returns:
          (state, losses): the final state and one device array [padded_size] per iteration.
        """
        done = int(np.max(jax.device_get(state.step)))
        losses = []
        while done < until:
            if self._scan is not None and until - done >= self.steps_per_dispatch:
                state, chunk = self._scan(state, targets, self.params, self.spec, self.config)
                losses += list(chunk)
                done += self.steps_per_dispatch
            else:
                state, loss = self.step(state, targets)
                losses.append(loss)
                done += 1
            if on_step is not None and on_step(state, done, losses):
                break
        return state, losses

    def step_memory_bytes(self) -> int:
        """XLA's account of the compiled step, per device: arguments + outputs + temporaries, less
        the donated buffers it updates in place. Compiles the step if it is not compiled yet."""
        place = lambda tree, sharding: jax.tree.map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), tree, sharding)
        state, targets = self.state_shape, self._targets_like
        if self.mesh is not None:
            state = place(state, self.state_sharding)
            targets = place(targets, jax.tree.map(lambda _: self._shared, targets))
        m = self._step.lower(state, targets, self.params, self.spec, self.config).compile().memory_analysis()
        return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes

    def images(self, state: SynthState) -> jax.Array:
        """float32 [batch_size, H, W, 3] in [0, 1], on the device (padding rows dropped)."""
        return synthesis.image_from_latent(state.latent[: self.batch_size])

    def synthesize(self, keys: jax.Array, targets, on_step=None, state: SynthState | None = None
                   ) -> tuple[jax.Array, jax.Array]:
        """Run `keys` (or a checkpointed `state`) to `config.iterations`.

        Returns:
          images float32 [B, H, W, 3] in [0, 1] and losses float32 [B, n] of the n iterations run,
          B = len(keys).
        """
        batch = len(keys)
        state = self.init(keys, targets) if state is None else self.place(state)
        state, losses = self.run(state, targets, self.config.iterations, on_step)
        losses = jnp.stack(losses, axis=1) if losses else jnp.zeros((self.padded_size, 0), jnp.float32)
        return synthesis.image_from_latent(state.latent[:batch]), losses[:batch]


def synthesize(keys: jax.Array, target_grams: Mapping[str, jax.Array], params: Mapping, spec: vgg.NetworkSpec,
               config: SynthesisConfig, callback: Callable[[SynthState], None] | None = None, *,
               mesh: Mesh | None = None, state: SynthState | None = None) -> tuple[jax.Array, jax.Array]:
    """Synthesise one texture per key: a one-off `Engine(...).synthesize`.

    Builds (and compiles) an engine for this call; to run many sources, build one `Engine` and call
    its `synthesize` for each, which compiles once.

    Args:
      keys: [B] PRNG keys, one per seed (e.g. `jax.random.split(jax.random.key(0), 4)`).
      target_grams: from `compute_targets` (or `Engine.targets`); with coarse scales
        (`config.coarse_iterations`), the list of `CoarseToFine.targets`.
      params, spec: the VGG weights and their convention (`load_weights`).
      config: the synthesis settings.
      callback: called with the batched state after every iteration. On a seed mesh the batch is
        padded to a multiple of the device count: rows from B on are padding.
      mesh: None for the default device; a `parallel.SEEDS` mesh to split the seeds over its
        devices; a `parallel.SPACE` mesh to split every image into strips over its devices.
      state: a state to continue from (a checkpoint), batched as the callback saw it; the run
        goes on from `state.step` to `config.iterations`.

    Returns:
      images float32 [B, H, W, 3] RGB in [0, 1], and losses float32 [B, n] after each of the n
      iterations run by this call.
    """
    if config.coarse_iterations:
        from texsynth_jax.coarse_to_fine import CoarseToFine  # it builds on this module

        engine = CoarseToFine(params, spec, config, len(keys), mesh)
        on_step = None if callback is None else (lambda state, scale, step, losses: callback(state))
    else:
        engine = Engine(params, spec, config, len(keys), mesh)
        on_step = None if callback is None else (lambda state, step, losses: callback(state))
    return engine.synthesize(keys, target_grams, on_step, state)
