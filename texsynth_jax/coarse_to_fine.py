"""Coarse-to-fine synthesis: the texture at a quarter or half of the size first, then enlarged and refined.

    config = SynthesisConfig(size=(1024, 1024), coarse_iterations=(200, 100), iterations=50)
    ctf = CoarseToFine(params, spec, config, batch_size=2)       # an Engine per scale: 256, 512, 1024 px
    images, losses = ctf.synthesize(keys, ctf.targets(source))

Each scale is half the size of the next (`SynthesisConfig.scale_sizes`). Its targets come from the
source shrunk by the same factor, so a texture element covers the same fraction of the output at
every scale: the coarse scales settle the layout of large structures in few, cheap iterations, and the
full-size scale only has to add detail. Each scale starts from the previous one's result, enlarged
(`config.upsample`), with a fresh L-BFGS (its memory is tied to the old size). Every scale's programs
are compiled once, by its own Engine, and reused for every source of a job.

Iterations are counted over all scales: scale k runs iterations offsets[k] + 1 .. offsets[k + 1].
"""

import dataclasses
from typing import Callable, Mapping

import numpy as np

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from texsynth_jax import synthesis, vgg
from texsynth_jax.config import SynthesisConfig, check_size, deepest_downsampling, deepest_layer
from texsynth_jax.engine import Engine
from texsynth_jax.synthesis import SynthState


def scale_configs(config: SynthesisConfig) -> list[SynthesisConfig]:
    """One single-scale config per scale, coarsest first (the last is `config` at its own size)."""
    return [dataclasses.replace(config, size=size, iterations=n, coarse_iterations=())
            for size, n in zip(config.scale_sizes, config.scale_iterations)]


def source_sizes(source_size, config: SynthesisConfig) -> list[tuple[int, int]]:
    """The source's (height, width) at every scale: shrunk as the output is from scale to scale."""
    return [(max(1, round(source_size[0] * h / config.size[0])), max(1, round(source_size[1] * w / config.size[1])))
            for h, w in config.scale_sizes]


def check_source(source_size, config: SynthesisConfig, arch: str, what: str) -> None:
    """Raise ValueError (one line) if the source, shrunk for the coarsest scale, leaves no pixel at the
    deepest layer."""
    check_size(source_size, arch, config.layers, what)
    coarsest = source_sizes(source_size, config)[0]
    if min(coarsest) < deepest_downsampling(config.layers):
        raise ValueError(f"{what} {source_size[0]}x{source_size[1]} shrinks to {coarsest[0]}x{coarsest[1]} at the "
                         f"coarsest of {len(config.scale_sizes)} scales, too small for {deepest_layer(config.layers)}; "
                         "use fewer --coarse_iterations or a larger source")


def shrink(source: jax.Array, size) -> jax.Array:
    """The source at `size` (antialiased cubic, clipped to [0, 1])."""
    if tuple(source.shape[:2]) == tuple(size):
        return source
    return jnp.clip(jax.image.resize(source, (*size, source.shape[2]), "cubic", antialias=True), 0.0, 1.0)


class CoarseToFine:
    """An Engine per scale of `config` (one when it has no coarse scales) and the schedule between them.

    Attributes:
      config: the whole run's settings; engines[k].config is scale k's (its size and iterations).
      engines: one Engine per scale, coarsest first.
      offsets: iterations before each scale, and the total last: [0, n0, n0 + n1, ...].
      iterations: all scales' iterations together.
    """

    def __init__(self, params: Mapping, spec: vgg.NetworkSpec, config: SynthesisConfig, batch_size: int,
                 mesh: Mesh | None = None, steps_per_dispatch: int | None = None):
        self.config, self.spec, self.batch_size = config, spec, batch_size
        self.engines = []
        for scale_config in scale_configs(config):
            self.engines.append(Engine(params, spec, scale_config, batch_size, mesh, steps_per_dispatch))
            params = self.engines[-1].params  # placed once: the next engines reuse the device copy
        self.offsets = [0, *np.cumsum(config.scale_iterations).tolist()]
        self.iterations = config.total_iterations
        self.steps_per_dispatch = self.engines[0].steps_per_dispatch

    def targets(self, source) -> list[dict]:
        """Every scale's targets from a source (float32 [H, W, 3] in [0, 1]), coarsest first."""
        check_source(np.shape(source)[:2], self.config, self.spec.arch, "source image")
        source = jnp.asarray(source, jnp.float32)
        sizes = source_sizes(source.shape[:2], self.config)
        return [engine.targets(shrink(source, size)) for engine, size in zip(self.engines, sizes)]

    def keys(self, seeds) -> jax.Array:
        return self.engines[0].keys(seeds)

    def init(self, keys: jax.Array, targets: list) -> SynthState:
        """Fresh batched state of the coarsest scale (see Engine.init)."""
        return self.engines[0].init(keys, targets[0])

    def scale_of(self, state: SynthState) -> int:
        """The scale a state belongs to, by its size (scale sizes are distinct)."""
        sizes = [tuple(e.config.size) for e in self.engines]
        return sizes.index(tuple(state.latent.shape[1:3]))

    def images(self, state: SynthState) -> jax.Array:
        """float32 [batch_size, h, w, 3] in [0, 1] at the state's scale, on the device."""
        return self.engines[self.scale_of(state)].images(state)

    def run(self, state: SynthState, targets: list,
            on_step: Callable[[SynthState, int, int, list], bool | None] | None = None,
            on_scale: Callable[[SynthState, int], None] | None = None) -> tuple[SynthState, list]:
        """Iterate from `state` (at any scale and step) to the end of the last scale.

        Args:
          on_step: called after each dispatch as on_step(state, scale, step, losses), `step` counted
            over all scales and `losses` the device arrays [padded_size] of the iterations this call
            has run at this scale. Return True to stop there.
          on_scale: called as on_scale(state, scale) when a scale's last iteration is done, before the
            next scale starts from it.

        Returns:
          (state, losses): where it stopped (the last scale's final state unless on_step stopped it)
          and one device array [padded_size] per iteration run by this call.
        """
        all_losses, stopped = [], []
        first = self.scale_of(state)
        for k in range(first, len(self.engines)):
            engine = self.engines[k]
            if k > first:
                state = engine.restart(state, targets[k])

            def hook(state, step, losses, k=k):
                if on_step is not None and on_step(state, self.offsets[k] + step, losses):
                    stopped.append(k)
                    return True

            state, losses = engine.run(state, targets[k], engine.config.iterations, hook)
            all_losses += losses
            if stopped:
                break
            if on_scale is not None:
                on_scale(state, k)
        return state, all_losses

    def synthesize(self, keys: jax.Array, targets: list, on_step=None, state: SynthState | None = None,
                   on_scale=None) -> tuple[jax.Array, jax.Array]:
        """Run `keys` (or a checkpointed `state`, at any scale) through every scale.

        Returns:
          images float32 [B, H, W, 3] in [0, 1] (at the size the run stopped at: `config.size` unless
          on_step stopped it) and losses float32 [B, n] of the n iterations run, B = len(keys).
        """
        batch = len(keys)
        if state is None:
            state = self.init(keys, targets)
        else:
            state = self.engines[self.scale_of(state)].place(state)
        state, losses = self.run(state, targets, on_step, on_scale)
        losses = jnp.stack(losses, axis=1) if losses else jnp.zeros((len(state.step), 0), jnp.float32)
        return synthesis.image_from_latent(state.latent[:batch]), losses[:batch]
