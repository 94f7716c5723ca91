"""The synthesis engine for one scale: weights placed once, programs compiled once, any number of sources run through them.

    engine = Engine(params, spec, config, batch_size=4)            # mesh=parallel.make_mesh(...) to shard
    for source in sources:
        targets = engine.targets(source)                              # jitted (once per source shape)
        images, losses = engine.synthesize(keys, targets)             # the same init and step programs

An `Engine` is built for one (network, single-scale config, batch size, mesh); `coarse_to_fine.py`
holds one per scale, and `coarse_to_fine.make_engine` picks what a config needs. It puts the weights
on the devices once, and jits the targets, the batched init and the batched step; every source of a job
reuses them, so a job of 10,000 sources compiles its step program once. Batches smaller than
`batch_size` are padded with repeated seeds and the padding is dropped from what is returned.

The programs see `program_config(config)`: the config with its run-only settings (RUN_ONLY: how many
iterations) made neutral, so engines that differ only in how long they run share every traced and
compiled program (the programs are jits of the same module-level functions, and jax caches them by
function, static arguments and shapes).

`run` drives the iterations from the host and keeps losses and images on the device: they reach the
host only when the caller's `on_step` fetches them (a log line, a snapshot, a checkpoint, the end).
"""

import dataclasses
import functools
from typing import Callable, Mapping

import numpy as np

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from texsynth_jax import content as content_lib
from texsynth_jax import fill, guide, parallel, synthesis, terms, vgg
from texsynth_jax.config import SynthesisConfig, check_size, scaled_source
from texsynth_jax.synthesis import SynthState

# Iterations per dispatch (a lax.scan of that many steps in one program), per backend. On XLA:CPU a
# scan body runs the convolutions slower than a top-level program (bench/dispatch.py), so 1 there;
# on other backends unmeasured so far, so 1 as well (a step costs far more than its dispatch).
STEPS_PER_DISPATCH = {"cpu": 1}

# Settings the compiled programs never see: how long a run goes on, which sources make the targets and at what
# size (resized on the way into the targets program, blended after it), and the colours given to the results.
RUN_ONLY = ("iterations", "coarse_iterations", "coarse_min_view", "source_scale", "blend", "colors", "guide", "region",
            "source_guide", "fill", "mask", "place", "band", "content", "content_weight")


def dispatch_steps(requested: int | None = None, backend: str | None = None) -> int:
    """Iterations per host dispatch: `requested` if given, else the backend's entry of STEPS_PER_DISPATCH
    (1 where unmeasured). backend: a jax backend name; None is jax.default_backend()."""
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, int) or requested < 1):
        raise ValueError(f"steps_per_dispatch={requested!r} must be a positive int; give 1 or more, or None")
    return requested or STEPS_PER_DISPATCH.get(backend or jax.default_backend(), 1)


def program_config(config: SynthesisConfig) -> SynthesisConfig:
    """The static argument of the compiled programs: a single-scale `config` with its RUN_ONLY fields at their
    defaults (iterations=1, coarse_iterations=()), so that running longer, another source scale, blend, palette,
    guide map, canvas or content photo and weight never retraces or recompiles (guide masks, canvases and contents
    are in the targets)."""
    neutral = {f.name: f.default for f in dataclasses.fields(config) if f.name in RUN_ONLY}
    return dataclasses.replace(config, **{**neutral, "iterations": 1, "coarse_iterations": ()})


def check_mesh(mesh: Mesh | None, config: SynthesisConfig, arch: str) -> None:
    """Raise ValueError (one line) unless a SPACE mesh splits every scale of `config` into strips of
    whole pooling windows; nothing to check for None or a SEEDS mesh."""
    if mesh is None or parallel.SPACE not in mesh.axis_names:
        return
    factor = max(vgg.downsampling(arch, layer) for layer in config.layers)
    strips = mesh.shape[parallel.SPACE]
    for size in config.scale_sizes:
        parallel.check_spatial(mesh, size, factor)
        for k, shrunk in enumerate(config.pyramid_sizes(size), 1):  # --pyramid's halved outputs are split alike
            if shrunk[0] % (strips * factor):
                raise ValueError(f"--pyramid halves height {size[0]} {k} time(s) to {shrunk[0]}, which cannot be "
                                 f"split into {strips} strips of whole {factor}-px pooling windows; use "
                                 f"--pyramid={k - 1} or a height that is a multiple of {strips * factor * 2 ** k}")


def check_source_mask(mask, size) -> np.ndarray:
    """float32 [H, W] mask of a source of `size` (H, W), shares in [0, 1] with some pixel in it; ValueError
    (one line) otherwise."""
    m = np.asarray(mask, np.float32)
    if m.shape != tuple(size):
        raise ValueError(f"source mask has shape {m.shape}, not the source's {tuple(size)}; pass one share per "
                         "source pixel")
    if not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1 or m.max() == 0:
        raise ValueError("source mask is empty or has values outside [0, 1]; pass each pixel's share in the region")
    return m


def check_content(size, config: SynthesisConfig, arch: str, what: str = "content image") -> None:
    """Raise ValueError (one line) unless config.content_layer is a layer of `arch`, a content photo of `size` reaches
    the deepest layer of the loss and the content layer, and so does every scale of the output."""
    if config.content_layer not in vgg.layer_names(arch):
        raise ValueError(f"content_layer={config.content_layer} is not a layer of {arch}; use one like conv4_2")
    layers = (*config.layers, config.content_layer)
    check_size(size, arch, layers, what)
    for scale in config.scale_sizes:
        check_size(scale, arch, layers, "size" if scale == tuple(config.size) else
                   f"the coarsest scale {scale[0]}x{scale[1]}, for content_layer={config.content_layer},")


def check_content_weight(weight) -> None:
    """Raise ValueError (one line) unless `weight` is a content weight: a finite number >= 0."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating)) or not np.isfinite(weight) \
            or weight < 0:
        raise ValueError(f"content weight {weight!r} is not a number >= 0; give one like 1 (0: the texture alone)")


def check_keys(keys) -> jax.Array:
    """PRNG keys [B] for B seeds, as typed keys; ValueError (one line) for anything else.

    Args:
      keys: typed keys [B] (`jax.random.split(jax.random.key(0), B)`), or legacy uint32 keys [B, 2]
        (`jax.random.split(jax.random.PRNGKey(0), B)`), B >= 1.
    """
    fix = "pass one key per seed, e.g. jax.random.split(jax.random.key(0), B), or engine.keys(seeds) for int seeds"
    dtype, shape = getattr(keys, "dtype", None), np.shape(keys) if hasattr(keys, "shape") else None
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if len(shape) != 1:
            raise ValueError(f"keys have shape {tuple(shape)}; {fix}")
    elif dtype == np.uint32 and shape is not None and len(shape) == 2 and shape[1] == 2:
        keys = jax.random.wrap_key_data(keys)  # legacy raw threefry keys
    else:
        what = f"{dtype} of shape {tuple(shape)}" if shape is not None else type(keys).__name__
        raise ValueError(f"keys are {what}, not PRNG keys; {fix}")
    if len(keys) == 0:
        raise ValueError(f"keys are empty; {fix}")
    return keys


# The per-seed functions batched over seeds: the first argument batched, targets and weights shared. They
# are module-level objects, so every Engine's jits of them share jax's trace and compile caches.
_init_batch = jax.vmap(synthesis.init_state, in_axes=(0, None, None, None, None))
_step_batch = jax.vmap(synthesis.step, in_axes=(0, None, None, None, None))
_restart_batch = jax.vmap(synthesis.restart, in_axes=(0, 0, None, None, None, None))


def _scan_steps(state, targets, params, spec, config, length):
    """`length` iterations of one seed in one program; losses [length]."""
    def body(state, _):
        return synthesis.step(state, targets, params, spec, config)
    return jax.lax.scan(body, state, None, length=length)


def _scan_batch(state, targets, params, spec, config, length):
    scan = functools.partial(_scan_steps, length=length)
    return jax.vmap(scan, in_axes=(0, None, None, None, None), out_axes=(0, 1))(state, targets, params, spec, config)


# Programs for a batch of seeds on the default device, as an Engine without a mesh runs them:
# (keys [B], targets, params, spec, config) -> state, and (state, ...) -> (state, losses [B]). The state
# is donated, so its buffers (the L-BFGS memory above all) are updated in place.
init_state_batch = jax.jit(_init_batch, static_argnums=(3, 4))
step_batch = jax.jit(_step_batch, static_argnums=(3, 4), donate_argnums=0)


class Engine:
    """Compiled synthesis programs for one (network, single-scale config, batch size, mesh).

    Attributes:
      params: the weights, on the device(s) (replicated over a mesh).
      spec, config, mesh: as given (`config` with its iterations; the programs see program_config(config)).
      batch_size: seeds per batch as given; `padded_size` is that rounded up for a seed mesh.
      steps_per_dispatch: iterations per host dispatch (see dispatch_steps).
      state_shape, state_sharding: the batched state's shapes (jax.ShapeDtypeStruct) and shardings
        (None without a mesh), e.g. to load a checkpoint.
    """

    def __init__(self, params: Mapping, spec: vgg.NetworkSpec, config: SynthesisConfig, batch_size: int,
                 mesh: Mesh | None = None, steps_per_dispatch: int | None = None):
        """Check the settings, place the weights and build (not yet compile) the programs.

        Args:
          params: VGG weights {layer: {"kernel": HWIO, "bias": [O]}} (`load_weights`).
          spec: their network and input convention.
          config: a single-scale config (no coarse scale in scale_sizes; see coarse_to_fine.make_engine).
          batch_size: seeds per batch, >= 1.
          mesh: None for the default device, or a parallel.SEEDS / parallel.SPACE mesh.
          steps_per_dispatch: iterations per dispatch; None: the backend's (dispatch_steps).
        """
        if len(config.scale_sizes) > 1:
            raise ValueError("an Engine runs one scale, and this config has coarse scales (coarse_iterations, "
                             "on by default); use coarse_to_fine.make_engine (an Engine per scale), or "
                             "SynthesisConfig(coarse_iterations=()) for one scale")
        config.check_network(spec.arch)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an int of at least 1")
        check_mesh(mesh, config, spec.arch)
        self.spec, self.config, self.mesh, self.batch_size = spec, config, mesh, batch_size
        self._program = program = program_config(config)
        self.padded_size = parallel.padded_size(batch_size, mesh)
        self.steps_per_dispatch = dispatch_steps(steps_per_dispatch)
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
        self._targets_like = jax.eval_shape(self._targets, self.params, image_like, spec, program)
        self.state_shape = jax.eval_shape(init_state_batch, keys_like, self._targets_like, self.params, spec, program)
        self.state_sharding = None if mesh is None else parallel.batch_sharding(mesh, self.state_shape, config.size)
        if mesh is None:
            self._init, self._step = init_state_batch, step_batch
            placed = lambda *out: {}
        else:  # output shardings: the state's, and losses split like the seeds
            self._init = jax.jit(_init_batch, static_argnums=(3, 4), out_shardings=self.state_sharding)
            self._step = jax.jit(_step_batch, static_argnums=(3, 4), donate_argnums=0,
                                 out_shardings=(self.state_sharding, self._keys))
            placed = lambda out: {"out_shardings": out}
        self._restart = jax.jit(_restart_batch, static_argnums=(4, 5), **placed(self.state_sharding))
        self._scan = None
        if self.steps_per_dispatch > 1:
            self._scan = jax.jit(_scan_batch, static_argnums=(3, 4, 5), donate_argnums=0,
                                 **placed((self.state_sharding, None)))

    # Inputs.

    def targets(self, source, source_scale: float | None = None, mask=None) -> dict[str, object]:
        """The source's statistics for every term of `config.loss`, on the device(s).

        Args:
          source: float32 [H, W, 3], RGB in [0, 1] (uint8 or 0-255 values are refused: pass
            image / 255), any size that reaches the deepest layer once resized by config.source_scale.
            One compile per source shape.
          source_scale: this source's factor instead of config.source_scale (a blended source's own).
          mask: None for the whole source; float32 [H, W], each pixel's share in [0, 1], for the
            statistics of that part of it (a guided region's, `guided_targets`).

        Returns:
          {term: stats}, as `synthesis.compute_targets`.
        """
        synthesis.check_image(source, "source image")
        scale = self.config.source_scale if source_scale is None else source_scale
        size, what = scaled_source(np.shape(source)[:2], scale, "source image")
        check_size(size, self.spec.arch, self.config.layers, what)
        mask = None if mask is None else guide.resize_masks(check_source_mask(mask, np.shape(source)[:2]), size)
        return self._compute_targets(synthesis.scale_source(source, scale), mask)

    def _compute_targets(self, source, mask=None) -> dict[str, object]:
        place = lambda x: jax.device_put(jnp.asarray(x, jnp.float32), jax.tree.leaves(self._params_one)[0].sharding)
        if mask is None:
            targets = self._targets(self._params_one, place(source), self.spec, self._program)
        else:
            targets = synthesis.masked_targets(self._params_one, place(source), place(mask), self.spec, self._program)
        return jax.device_put(targets, self._shared)

    def guided_targets(self, region_targets, masks, names=None) -> dict[str, object]:
        """Targets of a guided output (guide.py): each region of `masks` matched to its own targets.

        Args:
          region_targets: [{term: stats}] per region, from `targets(source)` (or `targets(source, mask=...)`
            for part of a photo).
          masks: float32 [R, H, W] at config.size (guide.masks of a map), shares in [0, 1]; each region must
            cover one position of the deepest layer. Arguments of the programs: any map of this size and R
            runs the same compiled step.
          names: how errors name the regions (e.g. their colours); default region 0, 1, ...

        Returns:
          {GUIDE: {layer: [R, H_l, W_l]}, term: [stats] * R, ...} (terms.guided_targets), on the device(s).
        """
        masks = guide.check_masks(masks, len(region_targets), self.config.size, self.config.layers, self.spec.arch,
                                  names)
        return self._guided(region_targets, masks)

    def _guided(self, region_targets, masks) -> dict[str, object]:
        """guided_targets without the mass check: a coarse scale's masks may cover less than a position."""
        for targets in region_targets:
            self.check_targets(targets)
        layer_masks = guide.layer_masks(jnp.asarray(masks), self.config.layers, self.spec.arch)
        return jax.device_put(terms.guided_targets(region_targets, layer_masks), self._shared)

    def fill_targets(self, targets, known, keep) -> dict[str, object]:
        """Targets of a canvas to fill (fill.py): the kept pixels of `known` fixed, the others made so that the
        whole composite matches `targets`.

        Args:
          targets: {term: stats} from `targets(source)` (e.g. `targets(photo, mask=keep)`: the photo's kept
            part), or guided ones (`guided_targets`).
          known: float32 [H, W, 3] in [0, 1] at config.size, the canvas (fill.canvas); unkept values unused.
          keep: float32 [H, W], 1 where a pixel is kept, 0 where it is made. Arguments of the programs:
            every canvas and mask of this size run the same compiled step.

        Returns:
          {**targets, FILL: {"image", "keep"}}, on the device(s).
        """
        fill.check_canvas(known, keep, self.config.size)
        return self._fill(targets, known, keep)

    def _fill(self, targets, known, keep) -> dict[str, object]:
        """fill_targets of a canvas of any size, shrunk to this engine's (a coarse scale's) by fill.entry."""
        self.check_targets(targets)
        return {**targets, fill.FILL: jax.device_put(fill.entry(known, keep, self.config.size), self._shared)}

    def content_targets(self, targets, content, weight: float) -> dict[str, object]:
        """Targets that carry the texture onto a photo's layout (Gatys et al. 2016, content.py).

        Args:
          targets: {term: stats} from `targets(source)` (or guided, blended, a canvas's).
          content: float32 [H, W, 3], RGB in [0, 1], the photo whose layout the output keeps; any size that
            reaches the deepest layer, resized to config.size (cubic).
          weight: the content loss's weight, >= 0 (an argument of the programs: every weight runs the same
            compiled step); 0 leaves `targets` as they are (the texture alone).

        Returns:
          {**targets, CONTENT: {"features", "image", "weight"}}, on the device(s).
        """
        synthesis.check_image(content, "content image")
        check_content_weight(weight)
        check_content(np.shape(content)[:2], self.config, self.spec.arch)
        return self._content(targets, content, weight)

    def _content(self, targets, content, weight) -> dict[str, object]:
        """content_targets of a photo of any size, resized to this engine's (a coarse scale's)."""
        self.check_targets(targets)
        if not weight:
            return targets
        content = synthesis.resize_source(jnp.asarray(content, jnp.float32), self.config.size)
        place = lambda x: jax.device_put(x, jax.tree.leaves(self._params_one)[0].sharding)
        out = synthesis.content_targets(self._params_one, place(content), jnp.float32(weight), place(targets),
                                        self.spec, self._program)
        return jax.device_put(out, self._shared)

    def blend_targets(self, targets_list, weights) -> dict[str, object]:
        """Several sources' `targets` as one ({term: stats}, the first's shapes), mixed by `weights`
        (non-negative, summing to 1; terms.blend_targets): a change of targets, not of programs."""
        for targets in targets_list:
            self.check_targets(targets)
        return terms.blend_targets(targets_list, weights)

    def check_targets(self, targets) -> None:
        """Raise ValueError (one line) unless `targets` are this engine's kind: {term: stats} of
        `config.loss`, as `targets(source)` gives them."""
        if not isinstance(targets, Mapping):
            kind = ("a list (one entry per scale, as CoarseToFine.targets gives)" if isinstance(targets, (list, tuple))
                    else f"a {type(targets).__name__}")
            raise ValueError(f"targets are {kind}; this Engine runs one scale: pass its {{term: stats}}, "
                             "engine.targets(source)")
        names = list(self.config.loss_weights)
        guided = terms.GUIDE in targets
        if content_lib.CONTENT in targets:
            entry = targets[content_lib.CONTENT]
            layer = vgg.downsampling(self.spec.arch, self.config.content_layer)
            if not isinstance(entry, Mapping) or np.shape(entry.get("image")) != (*self.config.size, 3) or np.shape(
                    entry.get("features"))[:2] != (self.config.size[0] // layer, self.config.size[1] // layer):
                raise ValueError("targets' content is not of this engine's size and content layer; pass "
                                 "engine.content_targets(targets, content, weight)")
            targets = {k: v for k, v in targets.items() if k != content_lib.CONTENT}
        if fill.FILL in targets:
            canvas = targets[fill.FILL]
            if not isinstance(canvas, Mapping) or {k: np.shape(v) for k, v in canvas.items()} != {
                    "image": (*self.config.size, 3), "keep": (*self.config.size, 1)}:
                raise ValueError("targets' canvas is not of this engine's size; pass engine.fill_targets(targets, "
                                 "known, keep)")
            targets = {k: v for k, v in targets.items() if k != fill.FILL}
        if sorted(set(targets) - {terms.GUIDE, terms.PYRAMID}) != sorted(names):
            raise ValueError(f"targets hold {sorted(targets)}, not the loss terms {sorted(names)}; pass "
                             "engine.targets(source) ({term: stats}; style_loss's {layer: gram} go under 'gram')")
        like = self._targets_like
        if terms.PYRAMID not in targets:  # a part of a photo's: no halved statistics (synthesis._source_stats)
            like = {k: v for k, v in like.items() if k != terms.PYRAMID}
        if guided:
            masks = targets[terms.GUIDE]
            shapes = {layer: np.shape(m)[1:] for layer, m in masks.items()} if isinstance(masks, Mapping) else None
            regions = {np.shape(m)[0] for m in masks.values()} if shapes else set()
            if shapes != {layer: (self.config.size[0] // vgg.downsampling(self.spec.arch, layer),
                                  self.config.size[1] // vgg.downsampling(self.spec.arch, layer))
                          for layer in self.config.layers} or len(regions) != 1:
                raise ValueError("guided targets' masks are not of this engine's size and layers; pass "
                                 "engine.guided_targets(region_targets, masks)")
            count = regions.pop()
            guided_like = lambda level: {terms.GUIDE: masks, **{
                name: [level[name]] * count if terms.get(name).masked_loss else level[name] for name in names}}
            like = {**guided_like(like), **{k: [guided_like(level) for level in v] for k, v in like.items()
                                            if k == terms.PYRAMID}}
        if jax.tree.structure(targets) != jax.tree.structure(like):
            raise ValueError("targets are not of this engine's layers and terms (another config's?); pass "
                             "engine.targets(source)")

    def keys(self, seeds) -> jax.Array:
        """PRNG keys [padded_size] of int seeds (the CLI's `--seeds`: jax.random.key(seed)), repeated
        cyclically to the engine's padded batch."""
        seeds = np.asarray(seeds)
        if seeds.ndim != 1 or not 1 <= len(seeds) <= self.padded_size or not np.issubdtype(seeds.dtype, np.integer):
            raise ValueError(f"seeds={seeds.tolist()!r} must be 1 to {self.padded_size} ints; give a list of seeds")
        if seeds.min() < 0 or seeds.max() > np.iinfo(np.uint32).max:
            raise ValueError(f"seeds={seeds.tolist()} must lie in 0..{np.iinfo(np.uint32).max}")
        seeds = seeds.astype(np.uint32)
        return jax.vmap(jax.random.key)(jnp.asarray(seeds[np.arange(self.padded_size) % len(seeds)]))

    def _check_batch(self, keys) -> jax.Array:
        keys = check_keys(keys)
        if len(keys) > self.padded_size:
            raise ValueError(f"{len(keys)} keys for an engine of batch {self.batch_size}; build one with "
                             f"batch_size={len(keys)}")
        return keys

    # States.

    def init(self, keys: jax.Array, targets: Mapping[str, object]) -> SynthState:
        """Fresh batched state at the source's `targets`: one row per key, padded cyclically to
        `padded_size` rows (the optimiser evaluates the loss at the start).

        Args:
          keys: PRNG keys [B], 1 <= B <= padded_size (check_keys).
          targets: {term: stats} from `targets(source)`.

        Returns:
          SynthState with a leading axis [padded_size], latents [padded_size, H, W, 3].
        """
        keys = self._check_batch(keys)
        self.check_targets(targets)
        keys = jax.device_put(keys[np.arange(self.padded_size) % len(keys)], self._keys)
        return self._init(keys, targets, self.params, self.spec, self._program)

    def restart(self, state: SynthState, targets: Mapping[str, object]) -> SynthState:
        """This engine's state from `state` of another size (the previous scale of a coarse-to-fine run):
        its images enlarged to `config.size` (synthesis.restart), the same seeds, a fresh optimiser."""
        self.check_targets(targets)
        return self._restart(state.latent, state.key, targets, self.params, self.spec, self._program)

    def place(self, state) -> SynthState:
        """A state from the host (a checkpoint) onto the engine's devices."""
        return jax.device_put(state, self.state_sharding)

    def scale_of(self, state: SynthState) -> int:
        """The scale of a state: always 0 (one scale); CoarseToFine.scale_of has the same signature."""
        return 0

    def images(self, state: SynthState) -> jax.Array:
        """float32 [batch_size, H, W, 3] in [0, 1], on the device (padding rows dropped)."""
        return synthesis.image_from_latent(state.latent[: self.batch_size])

    # Iterations.

    def step(self, state: SynthState, targets) -> tuple[SynthState, jax.Array]:
        """One iteration of the whole batch; `state` is donated. Returns (state, losses [padded_size])."""
        self.check_targets(targets)
        return self._step(state, targets, self.params, self.spec, self._program)

    def run(self, state: SynthState, targets, until: int,
            on_step: Callable[[SynthState, int, list], bool | None] | None = None,
            losses: list | None = None) -> tuple[SynthState, list]:
        """Iterate from `state.step` to iteration `until`, `steps_per_dispatch` at a time.

        Args:
          state: a batched state of this engine (from init, restart, place or an earlier run); donated.
          targets: {term: stats} from `targets(source)`.
          until: the iteration to stop after (any count: programs do not depend on it).
          on_step: called after each dispatch as on_step(state, step, losses), `step` the iterations
            done and `losses` the list of device arrays [padded_size] of every iteration run so far.
            Return True to stop here (Ctrl-C, a budget). Nothing is fetched to the host unless it does.
          losses: a list to extend with this call's losses (an earlier scale's, as CoarseToFine passes);
            None starts a new one.

        Returns:
          (state, losses): the final state and one device array [padded_size] per iteration.
        """
        self.check_targets(targets)
        done = int(np.max(jax.device_get(state.step)))
        losses = [] if losses is None else losses
        while done < until:
            if self._scan is not None and until - done >= self.steps_per_dispatch:
                state, chunk = self._scan(state, targets, self.params, self.spec, self._program,
                                          self.steps_per_dispatch)
                losses += list(chunk)
                done += self.steps_per_dispatch
            else:
                state, loss = self._step(state, targets, self.params, self.spec, self._program)
                losses.append(loss)
                done += 1
            if on_step is not None and on_step(state, done, losses):
                break
        return state, losses

    def synthesize(self, keys: jax.Array, targets, on_step=None, state: SynthState | None = None
                   ) -> tuple[jax.Array, jax.Array]:
        """Run `keys` (or a checkpointed `state`) to `config.iterations`.

        Args:
          keys: PRNG keys [B] (check_keys), B <= padded_size.
          targets: {term: stats} from `targets(source)`.
          on_step: as in `run`.
          state: a state to continue from instead of fresh ones (a checkpoint, batched as on_step saw it).

        Returns:
          images float32 [B, H, W, 3] in [0, 1] and losses float32 [B, n] of the n iterations run.
        """
        keys = self._check_batch(keys)
        batch = len(keys)
        state = self.init(keys, targets) if state is None else self.place(state)
        state, losses = self.run(state, targets, self.config.last_iterations, on_step)
        losses = jnp.stack(losses, axis=1) if losses else jnp.zeros((self.padded_size, 0), jnp.float32)
        return synthesis.image_from_latent(state.latent[:batch]), losses[:batch]

    def lower(self, platform: str | None = None, programs=None) -> dict[str, jax.stages.Lowered]:
        """The engine's programs lowered for `platform`, nothing run.

        Args:
          platform: "cpu", "cuda", "rocm" or "tpu", whether or not this machine has one (a job's programs
            shown to build for a TPU before they are sent to one); None: this machine's backend.
          programs: names of the programs to lower; None: all of "targets", "init", "step", "restart"
            (and "scan" when the engine dispatches several steps at once).

        Returns:
          {name: jax.stages.Lowered}: `.as_text()` is the program's StableHLO (every precision and
          sharding in it), `.compile()` (on that platform) XLA's program and its memory_analysis().
        """
        place = lambda tree, sharding: jax.tree.map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), tree, sharding)
        like = lambda tree: jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree)
        state, targets, params = self.state_shape, self._targets_like, like(self.params)
        keys = jax.ShapeDtypeStruct((self.padded_size,), jax.random.key(0).dtype, sharding=self._keys)
        if self.mesh is not None:
            state = place(state, self.state_sharding)
            targets = place(targets, jax.tree.map(lambda _: self._shared, targets))
        source = jax.ShapeDtypeStruct((*self.config.size, 3), jnp.float32,
                                      sharding=jax.tree.leaves(self._params_one)[0].sharding)
        spec, program = self.spec, self._program
        tracers = {"targets": lambda: self._targets.trace(like(self._params_one), source, spec, program),
                   "init": lambda: self._init.trace(keys, targets, params, spec, program),
                   "step": lambda: self._step.trace(state, targets, params, spec, program),
                   "restart": lambda: self._restart.trace(state.latent, state.key, targets, params, spec, program)}
        if self._scan is not None:
            tracers["scan"] = lambda: self._scan.trace(state, targets, params, spec, program, self.steps_per_dispatch)
        unknown = set(programs or ()) - set(tracers)
        if unknown:
            raise ValueError(f"no program {sorted(unknown)} in this engine; choose from {sorted(tracers)}")
        platforms = None if platform is None else (platform,)
        return {name: tracers[name]().lower(lowering_platforms=platforms) for name in programs or tracers}

    def step_memory_bytes(self) -> int:
        """XLA's account of the compiled step, per device: arguments + outputs + temporaries, less
        the donated buffers it updates in place. Compiles the step for this (a compile of its own)."""
        return memory_bytes(self.lower(programs=("step",))["step"])


# XLA's memory account is its buffer assignment, made before the backend optimises the machine code: a
# compile at backend optimisation level 0 gives the same bytes (tests/test_hardening.py) about 3x faster
# (XLA:CPU, 64-128 px: 3.8 -> 1.3 s, 7.3 -> 2.6 s).
ANALYSIS_ONLY = {"xla_backend_optimization_level": 0}


def memory_bytes(lowered: jax.stages.Lowered, compiler_options=ANALYSIS_ONLY) -> int:
    """Arguments + outputs + temporaries - donated buffers of a lowered program, by XLA's account of it
    compiled with `compiler_options` (default: for the analysis only)."""
    m = lowered.compile(compiler_options).memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
