"""The memory a job needs, estimated from header sizes before anything is decoded, compiled or written.

A run holds, one source at a time: the decoded source on the host; on each device the weights, then
either the target-Gram program on the source or the step's working set for its seeds (the L-BFGS
memory of 2 * history + 4 latent-sized arrays, and the VGG activations and their gradients, both
proportional to the pixels; with remat only the matched layers' maps and about one full-resolution
map besides); and the finished images on the host. `check` refuses a job whose
estimate exceeds the machine's memory, or the device's where JAX reports it, with one line saying
what would fit. The per-pixel constants are fitted to XLA's own account of the compiled programs
(`Engine.step_memory_bytes`; tests/test_hardening.py keeps them checked against it). With `judge=True`
the judge that follows each source counts too (evaluate.judge_memory_bytes: it runs after the step's
buffers are gone, on one device, so the larger of the two is what must fit). On a device with memory of its
own (GPU, TPU), where another compiler lays out the buffers, `check_programs` also holds XLA's own account
of the finest scale's compiled programs to the device's memory.
"""

import contextlib
import math
import os
from typing import Callable

from texsynth_jax import conv, vgg
from texsynth_jax.config import scaled_size

# Per convolution strategy: (step, targets) per-pixel factors relative to XLA's own convolution ("lax"),
# and (step, targets) copies of the weights, measured on XLA:CPU at 64 and 128 px: im2col patches and
# shifted products keep 9x wider temporaries; Winograd keeps its transformed kernels.
STRATEGIES = {"lax": (1.0, 1.0, 2.2, 1.1), "matmul": (2.9, 4.9, 1.1, 1.1), "shifted": (5.6, 4.8, 2.2, 2.1),
              "winograd": (2.0, 1.4, 4.7, 3.9), "winograd4": (2.0, 1.0, 9.0, 6.6)}
LATENT_COPIES = 4  # latent, gradient, direction, trial point, besides the 2 * history L-BFGS pairs
GRAD_MAPS_ONE = 1.7  # gradients of the step, in full-resolution first-block feature maps, one seed...
GRAD_MAPS_BATCH = 4.5  # ... and per seed of a vmapped batch (XLA keeps more layouts of batched maps)
# ... besides each matched layer's own gradient map (the Gram's, F @ dG): the paper's five layers carry 1.5
# first-block maps of them, the default's ten 3.8 (XLA's account at 128 px: +11 MB for one seed with the ten).
# With remat (blocks in bands, vgg._banded_block) the step keeps only the matched layers' maps in full,
# and about one full-resolution map besides (the first layer's gradient; a copy while it is assembled):
# measured 1.0 for one seed and 3.0 per seed of a batch at 256-1024 px, set with a margin (model / XLA
# 1.02-1.16 at 128-1024 px; 0.97 for a batch at 64 px, where the fixed part dominates).
REMAT_MAPS_ONE = 1.4
REMAT_MAPS_BATCH = 4.2
TARGET_MAPS = 3.1  # the forward pass peaks in the first block: a few full-resolution maps (and padded copies) live at once
TARGET_MAPS_REMAT = 1.6  # ... in bands: the first layer's map, assembled, and band-sized pieces, and 0.6 of
TARGET_MATCHED_REMAT = 0.6  # each matched layer's map, kept whole until its Gram (+5.7 MB for the ten at 128 px)
DECODE_BYTES_PER_PIXEL = 48  # Pillow's 4-byte pixels and its conversions, uint8 RGB, float32 RGB and /255
RUNTIME_BYTES = 1 << 30  # the interpreter, JAX, the weights (0.3 GB measured) and XLA compiling, on the host


class BudgetError(ValueError):
    """A job that cannot fit in memory; the message says what would fit."""


def host_memory_bytes() -> int:
    """Physical memory, or the container's limit (cgroup v2 or v1) when lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):  # "max": no limit
            with open(path) as f:
                total = min(total, int(f.read().strip()))
    return total


def device_memory_bytes(device) -> int | None:
    """What JAX lets the device allocate; None where it does not say (CPU: the host's memory)."""
    with contextlib.suppress(Exception):  # not every backend implements memory_stats
        stats = device.memory_stats()
        if stats and stats.get("bytes_limit"):
            return int(stats["bytes_limit"])
    return None


def _network(arch: str, layers, remat: bool = False) -> tuple[float, int, int]:
    """(feature values per input pixel over the forward path, or with remat over `layers` alone,
    first-block channels, weight bytes)."""
    shapes = vgg.conv_shapes(arch)
    path = vgg.needed_layers(arch, layers)
    values, channels = 0.0, 3
    for name in path:
        if name in shapes:
            channels = shapes[name][-1]
        if name in layers or not remat:
            values += channels / vgg.downsampling(arch, name) ** 2
    weights = sum(math.prod(shapes[n]) + shapes[n][-1] for n in path if n in shapes) * 4
    return values, shapes["conv1_1"][-1], weights


def _matched(arch: str, layers) -> float:
    """Feature values per input pixel of the matched layers alone (what remat keeps of the forward path)."""
    return _network(arch, layers, remat=True)[0]


def _shrunk(config) -> float:
    """--pyramid's shrunk copies in units of the full size's pixels: a quarter, a sixteenth, ..."""
    return sum(0.25 ** k for k in range(1, len(config.pyramid_sizes()) + 1))


def _strategy(config, backend: str) -> tuple[float, float, float, float]:
    step, targets, step_copies, targets_copies = STRATEGIES[conv.name(config.conv, backend)]
    return step, targets, step_copies + (2.0 if config.precision == "bf16" else 0.0), targets_copies  # bf16 weights


def step_bytes(config, arch: str, size: tuple[int, int], batch: int, backend: str = "cpu") -> int:
    """One device's working set for one step of `batch` seeds of `size` (its share of the image)."""
    values, first, weights = _network(arch, config.layers, config.remat)
    factor, _, copies, _ = _strategy(config, backend)
    if config.remat:
        maps = REMAT_MAPS_ONE if batch == 1 else REMAT_MAPS_BATCH
    else:
        maps = GRAD_MAPS_ONE if batch == 1 else GRAD_MAPS_BATCH
    maps += 2.0 if config.pooling == "max" else 0.0  # max pooling keeps where each maximum was
    matched = 0.0 if config.remat else _matched(arch, config.layers)  # with remat, in `values`
    per_pixel = 12 * (2 * config.history + LATENT_COPIES) + 4 * factor * (values + matched + maps * first)
    # --pyramid's halved copies keep their own activations, a quarter of the pixels, a sixteenth, ...: all of them
    # even with remat (XLA's account at 128 px: +5.8 MB for one seed with remat, where a quarter of the banded
    # maps would be +3.0 MB).
    shrunk = _shrunk(config)
    if shrunk:
        every, _, _ = _network(arch, config.layers)
        grads = _matched(arch, config.layers) + (GRAD_MAPS_ONE if batch == 1 else GRAD_MAPS_BATCH) * first
        per_pixel += 4 * factor * shrunk * (every + grads)
    return int(copies * weights + batch * size[0] * size[1] * per_pixel)


def targets_bytes(config, arch: str, size: tuple[int, int], backend: str = "cpu") -> int:
    """One device's working set for the target Grams of a source of `size`."""
    _, first, weights = _network(arch, config.layers)
    _, factor, _, copies = _strategy(config, backend)
    maps = TARGET_MAPS_REMAT * first + TARGET_MATCHED_REMAT * _matched(arch, config.layers) if config.remat else \
        TARGET_MAPS * first
    return int(copies * weights + (1 + _shrunk(config)) * size[0] * size[1] * 4 * factor * (maps + 3))


def decode_bytes(size: tuple[int, int]) -> int:
    return size[0] * size[1] * DECODE_BYTES_PER_PIXEL


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n < 100 * 2**30 else f"{n / 2**30:.0f} GiB"


def check_job(sources, config, arch: str, mesh, judge: bool = False) -> None:
    """`check` for a job's sources ([(path, (height, width), seeds)]) on this host's devices, as the
    runner will place them (`mesh`, None for one device), with the judge after each when `judge`."""
    import jax

    device = device_of(mesh)
    # A source enlarged by source_scale is that large on the device; decoded, it is its own size: the larger counts.
    scaled = lambda size: tuple(max(a, b) for a, b in zip(size, scaled_size(size, config.source_scale)))
    check([(path, scaled(size)) for path, size, _ in sources], config.size, max(len(seeds) for _, _, seeds in sources),
          config, arch, devices=1 if mesh is None else mesh.devices.size,
          split="none" if mesh is None else mesh.axis_names[0], backend=jax.default_backend(),
          device_limit=device_memory_bytes(device), device_name=f"{device.platform} device {device.id}",
          judge=judge)


def check_programs(engine, device_limit: int | None, device_name: str, log=None) -> None:
    """Where the device has memory of its own (a GPU or TPU: `device_memory_bytes` says how much), XLA's own
    account of the finest scale's programs (targets, init, step), compiled for the analysis only
    (engine.memory_bytes), must fit in it: the per-pixel model above is fitted to XLA:CPU, and another
    compiler lays out other buffers. A compile of its own, so only where there is such a device (None:
    nothing to do). BudgetError (one line) if a program does not fit.

    engine: a coarse_to_fine.CoarseToFine (or an Engine)."""
    if device_limit is None:
        return
    from texsynth_jax import engine as engine_lib

    finest = getattr(engine, "engines", [engine])[-1]
    need = {name: engine_lib.memory_bytes(lowered)
            for name, lowered in finest.lower(programs=("targets", "init", "step")).items()}
    name = max(need, key=need.get)
    (h, w), seeds = finest.config.size, finest.batch_size
    if log is not None:
        log(f"memory: XLA's account of the {name} program at {h}x{w}, {seeds} seed(s): {gib(need[name])} of the "
            f"{gib(device_limit)} of {device_name}")
    if need[name] > device_limit:
        raise BudgetError(f"{seeds} seed(s) at {h}x{w} need {gib(need[name])} in the {name} program by XLA's account, "
                          f"more than the {gib(device_limit)} of {device_name}; use a smaller --size or fewer seeds "
                          "per source")


def device_of(mesh):
    """The device whose memory bounds a job on this host's `mesh` (None: one device)."""
    import jax

    return jax.local_devices()[0] if mesh is None else mesh.devices.flat[0]


def check(sources, out_size: tuple[int, int], batch: int, config, arch: str, *, devices: int = 1,
          split: str = "none", backend: str = "cpu", host_limit: int | None = None,
          device_limit: int | None = None, device_name: str = "the device", judge: bool = False) -> None:
    """Raise BudgetError unless the job fits.

    Args:
      sources: [(path, (height, width))] from the headers; decoded one at a time.
      out_size, batch: the output size and the largest number of seeds of a source.
      devices, split: how many devices a batch is spread over, and how: "seeds" (the padded batch
        divided between them), "space" (each image in strips), "none" (one device).
      host_limit: bytes of host memory (default: `host_memory_bytes()`).
      device_limit: bytes per device (`device_memory_bytes`); None: the devices are the host's
        memory (XLA:CPU), so every device's share counts against host_limit.
      judge: the built-in judge runs after each source (evaluate.judge_memory_bytes counts, on one device).
    """
    from texsynth_jax import evaluate  # here: `python -m texsynth_jax.evaluate` must be the first to import it

    host_limit = host_memory_bytes() if host_limit is None else host_limit
    path, source = max(sources, key=lambda s: s[1][0] * s[1][1])

    def over(src, out, seeds) -> tuple[int, int, str] | None:
        """(need, limit, what) of the first memory that does not fit, or None."""
        per_device = -(-seeds // devices) if split == "seeds" else seeds
        share = (-(-out[0] // devices), out[1]) if split == "space" else out
        used = devices if split != "none" else 1
        device = max(targets_bytes(config, arch, src, backend), step_bytes(config, arch, share, per_device, backend))
        judged = evaluate.judge_memory_bytes(src, out, seeds) if judge else 0
        host = RUNTIME_BYTES + decode_bytes(src) + seeds * out[0] * out[1] * 12  # and the finished images
        if device_limit is None:
            host += max(used * device, judged)
        elif max(device, judged) > device_limit:
            return max(device, judged), device_limit, f"the {gib(device_limit)} of {device_name}"
        return (host, host_limit, f"the {gib(host_limit)} of memory here") if host > host_limit else None

    problem = over(source, out_size, batch)
    if problem is None:
        return
    need, _, where = problem
    smallest = (max(vgg.downsampling(arch, l) for l in config.layers),) * 2
    if over(source, smallest, 1):  # the source alone is too large
        need, _, where = over(source, smallest, 1)
        h, w = _largest(source, lambda s: not over(s, smallest, 1))
        fits = f"at most about {h}x{w} px fit" if h else "nothing fits beside the weights"
        raise BudgetError(f"input image {path} ({source[0]}x{source[1]}) needs ~{gib(need)} to decode and "
                          f"compute its Gram matrices, more than {where}; {fits}; give a smaller image")
    fits = []
    seeds = _last_true(batch, lambda n: not over(source, out_size, n))
    if seeds:
        fits.append(f"at most {seeds} seed(s) per source fit at {out_size[0]}x{out_size[1]}")
    h, w = _largest(out_size, lambda s: not over(source, s, batch))
    if h >= smallest[0]:
        fits.append(f"{batch} seed(s) fit at most about {h}x{w} px")
    elif not seeds:
        h, w = _largest(out_size, lambda s: not over(source, s, 1))
        fits.append(f"one seed fits at most about {h}x{w} px")
    raise BudgetError(f"{batch} seed(s) at {out_size[0]}x{out_size[1]} need ~{gib(need)}, more than {where}; "
                      f"{' or '.join(fits)}; use a smaller --size or fewer seeds per source")


def _last_true(high: int, ok: Callable[[int], bool]) -> int:
    """The largest n in 0..high with ok(n) (ok monotone, ok(0) assumed)."""
    low = 0
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if ok(mid) else (low, mid - 1)
    return low


def _largest(size: tuple[int, int], ok: Callable[[tuple[int, int]], bool]) -> tuple[int, int]:
    """The largest size of `size`'s aspect with ok(size); (0, 0) if none."""
    scaled = lambda h: (h, max(1, round(h * size[1] / size[0])))
    h = _last_true(size[0], lambda h: h > 0 and ok(scaled(h)))
    return scaled(h) if h else (0, 0)
