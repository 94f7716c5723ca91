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

`make_engine` gives what a config needs (an Engine for one scale, a CoarseToFine for several), and
`synthesize` is the one-off call for either; both have targets, keys, init, run, synthesize, images and
scale_of, with one `on_step(state, step, losses)` signature.
"""

import dataclasses
from typing import Callable, Mapping

import numpy as np

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from texsynth_jax import fill, guide, synthesis, vgg
from texsynth_jax.config import SynthesisConfig, check_size, deepest_downsampling, deepest_layer, scaled_source
from texsynth_jax.engine import Engine, check_content, check_content_weight, check_keys, check_source_mask
from texsynth_jax.synthesis import SynthState


def scale_configs(config: SynthesisConfig) -> list[SynthesisConfig]:
    """One single-scale config per scale, coarsest first (the last is `config` at its own size), each starting as
    the whole output would (`config.start`: init=auto goes by the output's size, not the scale's), the coarsest of
    several with `config.coarsest_scale_padding`."""
    init, init_scale = config.start
    sizes = config.scale_sizes
    coarsest = config.coarsest_scale_padding if len(sizes) > 1 else config.padding
    return [dataclasses.replace(config, size=size, iterations=n, coarse_iterations=(), init=init, init_scale=init_scale,
                                padding=coarsest if k == 0 else config.padding)
            for k, (size, n) in enumerate(zip(sizes, config.scale_iterations))]


def source_sizes(source_size, config: SynthesisConfig) -> list[tuple[int, int]]:
    """The source's (height, width) at every scale, coarsest first: shrunk as the output is from scale
    to scale (source_size: the source's (height, width))."""
    return [(max(1, round(source_size[0] * h / config.size[0])), max(1, round(source_size[1] * w / config.size[1])))
            for h, w in config.scale_sizes]


def check_source(source_size, config: SynthesisConfig, arch: str, what: str) -> None:
    """Raise ValueError (one line) if the source (`source_size` as read, before config.source_scale), shrunk
    for the coarsest scale, leaves no pixel at the deepest layer."""
    source_size, what = scaled_source(source_size, config.source_scale, what)
    check_size(source_size, arch, config.layers, what)
    coarsest = source_sizes(source_size, config)[0]
    if min(coarsest) < deepest_downsampling(config.layers):
        raise ValueError(f"{what} {source_size[0]}x{source_size[1]} shrinks to {coarsest[0]}x{coarsest[1]} at the "
                         f"coarsest of {len(config.scale_sizes)} scales, too small for {deepest_layer(config.layers)}; "
                         "use fewer --coarse_iterations or a larger source")


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
        """Build an Engine per scale (weights placed once); arguments as Engine's, `config` with or
        without coarse_iterations."""
        self.config, self.spec, self.batch_size = config, spec, batch_size
        self.engines = []
        for scale_config in scale_configs(config):
            self.engines.append(Engine(params, spec, scale_config, batch_size, mesh, steps_per_dispatch))
            params = self.engines[-1].params  # placed once: the next engines reuse the device copy
        self.offsets = [0, *np.cumsum(config.scale_iterations).tolist()]
        self.iterations = config.total_iterations
        self.steps_per_dispatch = self.engines[0].steps_per_dispatch

    def targets(self, source, source_scale: float | None = None, mask=None) -> list[dict]:
        """Every scale's targets from a source, coarsest first.

        Args:
          source: float32 [H, W, 3], RGB in [0, 1] (uint8 or 0-255 values are refused: pass image / 255),
            large enough to reach the deepest layer at the coarsest scale (check_source).
          source_scale: this source's factor instead of config.source_scale (a blended source's own).
          mask: None, or float32 [H, W] for the statistics of part of the source (Engine.targets), shrunk
            with it.

        Returns:
          [{term: stats}] per scale, each from the source resized by config.source_scale, then shrunk like
          the output (source_sizes).
        """
        synthesis.check_image(source, "source image")
        config = self.config if source_scale is None else dataclasses.replace(self.config, source_scale=source_scale)
        check_source(np.shape(source)[:2], config, self.spec.arch, "source image")
        if mask is not None:
            mask = check_source_mask(mask, np.shape(source)[:2])
        source = synthesis.scale_source(jnp.asarray(source, jnp.float32), config.source_scale)
        sizes = source_sizes(source.shape[:2], config)
        return [engine._compute_targets(synthesis.resize_source(source, size),
                                        None if mask is None else guide.resize_masks(mask, size))
                for engine, size in zip(self.engines, sizes)]

    def guided_targets(self, region_targets, masks, names=None) -> list[dict]:
        """Every scale's targets of a guided output (Engine.guided_targets): `masks` [R, H, W] at config.size,
        area-resized to each scale (where a small region may cover less than a position of the deepest
        layer: its loss there weighs less, terms.coverage); region_targets from `targets(source)` each."""
        for targets in region_targets:
            self.check_targets(targets)
        masks = guide.check_masks(masks, len(region_targets), self.config.size, self.config.layers, self.spec.arch,
                                  names)
        return [engine._guided([t[k] for t in region_targets], guide.resize_masks(masks, engine.config.size))
                for k, engine in enumerate(self.engines)]

    def fill_targets(self, targets, known, keep) -> list[dict]:
        """Every scale's targets of a canvas to fill (Engine.fill_targets): `known` [H, W, 3] and `keep` [H, W] at
        config.size, shrunk to each scale by area (fill.entry); targets from `targets(source)`."""
        self.check_targets(targets)
        fill.check_canvas(known, keep, self.config.size)
        return [engine._fill(t, known, keep) for t, engine in zip(targets, self.engines)]

    def content_targets(self, targets, content, weight: float) -> list[dict]:
        """Every scale's targets carrying the texture onto a photo's layout (Engine.content_targets): `content` any
        size that the deepest layer sees, resized to each scale's size; weight >= 0 (0: `targets` unchanged). A
        scale whose content layer sees fewer than 4 positions loses the photo's layout: for small outputs build
        this with coarse_min_view=config.content_min_view, as the command line does."""
        self.check_targets(targets)
        synthesis.check_image(content, "content image")
        check_content_weight(weight)
        check_content(np.shape(content)[:2], self.config, self.spec.arch)
        return [engine._content(t, content, weight) for t, engine in zip(targets, self.engines)]

    def blend_targets(self, targets_list, weights) -> list[dict]:
        """Several sources' `targets` as one, scale by scale (Engine.blend_targets)."""
        for targets in targets_list:
            self.check_targets(targets)
        return [engine.blend_targets([t[k] for t in targets_list], weights) for k, engine in enumerate(self.engines)]

    def check_targets(self, targets) -> None:
        """Raise ValueError (one line) unless `targets` are a list of every scale's {term: stats}, as
        `targets(source)` gives them."""
        n = len(self.engines)
        if not isinstance(targets, (list, tuple)):
            kind = "one scale's {term: stats}" if isinstance(targets, Mapping) else f"a {type(targets).__name__}"
            raise ValueError(f"targets are {kind}; this run has {n} scale(s): pass a list, coarsest first, "
                             "from CoarseToFine.targets(source)")
        if len(targets) != n:
            raise ValueError(f"targets have {len(targets)} scale(s), this run has {n}; pass CoarseToFine.targets(source)")
        for engine, scale_targets in zip(self.engines, targets):
            engine.check_targets(scale_targets)

    def keys(self, seeds) -> jax.Array:
        """PRNG keys of int seeds, padded to the batch (see Engine.keys)."""
        return self.engines[0].keys(seeds)

    def init(self, keys: jax.Array, targets: list) -> SynthState:
        """Fresh batched state of the coarsest scale (see Engine.init); targets from `targets(source)`."""
        self.check_targets(targets)
        return self.engines[0].init(keys, targets[0])

    def scale_of(self, state: SynthState) -> int:
        """The scale a state belongs to (0 = coarsest), by its size (scale sizes are distinct)."""
        sizes = [tuple(e.config.size) for e in self.engines]
        size = tuple(state.latent.shape[1:3])
        if size not in sizes:
            raise ValueError(f"a state of {size[0]}x{size[1]} belongs to no scale of this run ({sizes}); pass a state "
                             "of this CoarseToFine's init or run")
        return sizes.index(size)

    def images(self, state: SynthState) -> jax.Array:
        """float32 [batch_size, h, w, 3] in [0, 1] at the state's scale, on the device."""
        return self.engines[self.scale_of(state)].images(state)

    def run(self, state: SynthState, targets: list,
            on_step: Callable[[SynthState, int, list], bool | None] | None = None,
            on_scale: Callable[[SynthState, int], None] | None = None) -> tuple[SynthState, list]:
        """Iterate from `state` (at any scale and step) to the end of the last scale.

        Args:
          state: a batched state of any scale (init, place, or an earlier run); donated.
          targets: every scale's, from `targets(source)`.
          on_step: called after each dispatch as on_step(state, step, losses), as Engine.run calls it:
            `step` counted over all scales (scale_of(state) gives the scale) and `losses` the device
            arrays [padded_size] of every iteration this call has run. Return True to stop there.
          on_scale: called as on_scale(state, scale) when a scale's last iteration is done, before the
            next scale starts from it.

        Returns:
          (state, losses): where it stopped (the last scale's final state unless on_step stopped it)
          and one device array [padded_size] per iteration run by this call.
        """
        self.check_targets(targets)
        losses, stopped = [], []
        first = self.scale_of(state)
        for k in range(first, len(self.engines)):
            engine = self.engines[k]
            if k > first:
                state = engine.restart(state, targets[k])

            def hook(state, step, losses, offset=self.offsets[k]):
                if on_step is not None and on_step(state, offset + step, losses):
                    stopped.append(True)
                    return True

            state, losses = engine.run(state, targets[k], engine.config.iterations, hook, losses)
            if stopped:
                break
            if on_scale is not None:
                on_scale(state, k)
        return state, losses

    def synthesize(self, keys: jax.Array, targets: list, on_step=None, state: SynthState | None = None,
                   on_scale=None) -> tuple[jax.Array, jax.Array]:
        """Run `keys` (or a checkpointed `state`, at any scale) through every scale.

        Args:
          keys: PRNG keys [B] (engine.check_keys), B <= the batch size.
          targets: every scale's, from `targets(source)`.
          on_step, on_scale: as in `run`.
          state: a state to continue from (a checkpoint, at any scale) instead of fresh ones.

        Returns:
          images float32 [B, H, W, 3] in [0, 1] (at the size the run stopped at: `config.size` unless
          on_step stopped it) and losses float32 [B, n] of the n iterations run.
        """
        batch = len(check_keys(keys))
        if state is None:
            state = self.init(keys, targets)
        else:
            state = self.engines[self.scale_of(state)].place(state)
        state, losses = self.run(state, targets, on_step, on_scale)
        losses = jnp.stack(losses, axis=1) if losses else jnp.zeros((len(state.step), 0), jnp.float32)
        return synthesis.image_from_latent(state.latent[:batch]), losses[:batch]


def make_engine(params: Mapping, spec: vgg.NetworkSpec, config: SynthesisConfig, batch_size: int,
                mesh: Mesh | None = None, steps_per_dispatch: int | None = None) -> Engine | CoarseToFine:
    """The engine a config needs: an Engine for one scale, a CoarseToFine when it has coarse scales
    (`config.scale_sizes`: coarse_iterations less those too small for coarse_min_view).

    Both take their own kind of targets from their `targets(source)` ({term: stats}, or a list of them
    per scale) and run with the same `on_step(state, step, losses)`. Arguments as Engine's.
    """
    if len(config.scale_sizes) > 1:
        return CoarseToFine(params, spec, config, batch_size, mesh, steps_per_dispatch)
    return Engine(params, spec, config, batch_size, mesh, steps_per_dispatch)


def synthesize(keys: jax.Array, targets, params: Mapping, spec: vgg.NetworkSpec, config: SynthesisConfig,
               on_step: Callable[[SynthState, int, list], bool | None] | None = None, *,
               mesh: Mesh | None = None, state: SynthState | None = None) -> tuple[jax.Array, jax.Array]:
    """Synthesise one texture per key: a one-off `make_engine(...).synthesize`.

    Builds an engine for this call; its programs are shared with any engine of the same settings (only
    the iteration counts may differ), so calling this again does not recompile. To run many sources,
    build one engine (`make_engine`) and call its `targets` and `synthesize` for each.

    Args:
      keys: PRNG keys [B], one per seed (e.g. `jax.random.split(jax.random.key(0), 4)`).
      targets: `make_engine(...).targets(source)`: for a single-scale config {term: stats} (also
        `compute_targets`), for one with coarse scales the list of every scale's, coarsest first.
      params, spec: the VGG weights and their convention (`load_weights`).
      config: the synthesis settings.
      on_step: called after every dispatch as on_step(state, step, losses) with the batched state
        (Engine.run). On a seed mesh the batch is padded to a multiple of the device count: rows from
        B on are padding. Return True to stop there.
      mesh: None for the default device; a `parallel.SEEDS` mesh to split the seeds over its
        devices; a `parallel.SPACE` mesh to split every image into strips over its devices.
      state: a state to continue from (a checkpoint), batched as on_step saw it.

    Returns:
      images float32 [B, H, W, 3] RGB in [0, 1], and losses float32 [B, n] after each of the n
      iterations run by this call.
    """
    keys = check_keys(keys)
    engine = make_engine(params, spec, config, len(keys), mesh)
    return engine.synthesize(keys, targets, on_step, state)
