"""The engine and the job runner: one compile per job, the same images as separate runs, no host
transfers between log lines, and a job driven from Python with checkpoints and resume."""

import collections
import contextlib
import dataclasses
import logging
import re

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from PIL import Image

from texsynth_jax import (CoarseToFine, Engine, RunOptions, SynthesisConfig, compute_targets,
                          image_io, load_weights, make_engine, progress, run_job, synthesize, terms)
from test_synthesis import make_problem

TRACES = []  # one entry per trace of a program's loss


def _zero_stats(features, source, layers, size):
    return jnp.zeros((), jnp.float32)


def _traced_loss(features, image, stats, layer_weights, key):
    TRACES.append(1)  # Python: runs when a program is traced, never when it runs
    return 0.0 * jnp.mean(image) + stats


terms.register("traced", _zero_stats, _traced_loss)


@contextlib.contextmanager
def counted_compiles():
    """Counter of XLA compilations by program name (`step`, `init_state`, ...), read from jax's own
    compile log: every real compilation of the real code path, whoever built the program. jax's in-memory
    caches are cleared first, so that a program an earlier test built counts here too (a load from the
    persistent cache logs as a compilation)."""
    jax.clear_caches()
    names = collections.Counter()

    class Handler(logging.Handler):
        def emit(self, record):
            match = re.match(r"Finished XLA compilation of jit\((\w+)\)", record.getMessage())
            if match:
                names[match.group(1)] += 1

    logger, handler = logging.getLogger("jax"), Handler()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles():
            yield names
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def make_sources(folder, count, size=40):
    paths = []
    for i in range(count):
        path = folder / f"src{i}.png"
        rng = np.random.default_rng(10 + i)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


CONFIG = SynthesisConfig(size=(32, 32), layers=("conv1_1", "pool1", "pool2"), layer_weights=(1.0, 1.0, 1.0),
                         iterations=3, coarse_iterations=())


SEEDS = ([0, 1], [5], [2, 3])  # a job's batches of 2, 1 (padded), 2


@pytest.fixture(scope="module")
def separate_runs(tmp_path_factory, weights_path):
    """{(source stem, seed): uint8 image} of each source synthesised on its own with synthesize(), once for
    both meshes below."""
    params, spec, _ = load_weights(weights_path)
    images = {}
    for path, seeds in zip(make_sources(tmp_path_factory.mktemp("alone"), 3), SEEDS):
        source, _ = image_io.load_image(path)
        targets = compute_targets(params, source, spec, CONFIG)
        alone, _ = synthesize(jax.vmap(jax.random.key)(np.asarray(seeds, np.uint32)), targets, params, spec, CONFIG)
        images.update({(path.rsplit("/", 1)[1][:-4], seed): image_io.to_uint8(image)
                       for seed, image in zip(seeds, np.asarray(alone))})
    return images


@pytest.mark.parametrize("mesh", ["none", "seeds"])
def test_a_job_compiles_once_and_equals_separate_runs(mesh, tmp_path, weights_path, separate_runs):
    work = list(zip(make_sources(tmp_path, 3), SEEDS))
    options = RunOptions(output_dir=str(tmp_path / "out"), log_every=100, mesh=mesh, judge=False)
    with counted_compiles() as compiles:
        report = run_job(work, weights_path, CONFIG, options, log=lambda line: None)
    assert [r.status for r in report.results] == ["complete"] * 3 and not report.interrupted
    assert compiles["step"] == 1 and compiles["init_state"] == 1, compiles
    assert compiles["compute_targets"] == 1, compiles  # the sources share one shape
    for (stem, seed), image in separate_runs.items():
        written = np.asarray(Image.open(tmp_path / "out" / f"{stem}_seed{seed}.png"), np.int16)
        assert np.abs(written - image).max() <= 1, (stem, seed)
    assert len(separate_runs) == 5


def test_engine_runs_many_sources_through_one_program():
    params, spec, config, targets = make_problem(24, 2)
    engine = Engine(params, spec, config, batch_size=2)
    keys = jax.random.split(jax.random.key(0), 2)
    with counted_compiles() as compiles:
        for seed in range(3):
            source = np.random.default_rng(seed).uniform(size=(24, 24, 3)).astype(np.float32)
            images, losses = engine.synthesize(keys[:1] if seed == 1 else keys, engine.targets(source))
            assert images.shape == (1 if seed == 1 else 2, 24, 24, 3) and losses.shape[1] == 2
    assert compiles["step"] == 1 and compiles["init_state"] == 1 and compiles["compute_targets"] == 1, compiles


@pytest.mark.parametrize("optimizer", ["lbfgs", "optax"])
def test_the_step_compiles_once_for_either_optimizer(optimizer):
    """The first step's input (init_state's output) has the types of every later step's: optax's counters
    start as Python 0, weakly typed, and a state left so compiled the step a second time."""
    params, spec, config, targets = make_problem(24, 3)
    config = dataclasses.replace(config, optimizer=optimizer)
    with counted_compiles() as compiles:
        synthesize(jax.random.split(jax.random.key(0), 2), targets, params, spec, config)
    assert compiles["step"] == 1 and compiles["init_state"] == 1, compiles


def test_running_longer_never_retraces_or_recompiles():
    """Iteration counts are run-only settings: engines that differ only in them share every program."""
    params, spec, config, _ = make_problem(24, 2)
    base = dataclasses.replace(config, size=(24, 20), loss=("gram:1", "traced:1"))
    source = np.random.default_rng(4).uniform(size=(24, 20, 3)).astype(np.float32)
    keys = jax.random.split(jax.random.key(0), 2)
    with counted_compiles() as compiles:
        short = Engine(params, spec, base, 2)
        a, _ = short.synthesize(keys, short.targets(source))
        traced = len(TRACES)
        assert traced >= 2 and compiles["step"] == 1, (traced, compiles)  # init and step traced the loss
        longer = Engine(params, spec, dataclasses.replace(base, iterations=5), 2)
        b, losses = longer.synthesize(keys, longer.targets(source))
        assert losses.shape == (2, 5) and not np.array_equal(a, b)
        assert len(TRACES) == traced, "more iterations retraced the loss"
        assert compiles["step"] == 1 and compiles["init_state"] == 1 and compiles["compute_targets"] == 1, compiles
        # Coarse to fine: other counts per scale, the same programs.
        coarse = dataclasses.replace(base, size=(48, 40), coarse_iterations=(2,), iterations=1)
        first = CoarseToFine(params, spec, coarse, 2)
        first.synthesize(keys, first.targets(source))
        programs = lambda: {name: compiles[name] for name in ("init_state", "step", "restart", "compute_targets")}
        traced, seen = len(TRACES), programs()
        again = make_engine(params, spec, dataclasses.replace(coarse, coarse_iterations=(3,), iterations=2), 2)
        _, losses = again.synthesize(keys, again.targets(source))
        assert losses.shape == (2, 5) and len(TRACES) == traced and programs() == seen, compiles
    # A setting of the mathematics is another program: the counter sees its trace (lowered only: no compile).
    Engine(params, spec, dataclasses.replace(base, history=3), 2).lower(programs=("step",))
    assert len(TRACES) > traced


def test_wrong_targets_and_keys_are_refused_in_one_line():
    params, spec, config, targets = make_problem(24, 1)
    engine = Engine(params, spec, config, 2)
    ctf = CoarseToFine(params, spec, dataclasses.replace(config, size=(48, 48), coarse_iterations=(1,)), 2)
    source = np.random.default_rng(3).uniform(size=(48, 48, 3)).astype(np.float32)
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=r"targets are a list .*; this Engine runs one scale"):
        engine.synthesize(keys, ctf.targets(source))
    with pytest.raises(ValueError, match=r"targets are one scale's \{term: stats\}; this run has 2 scale"):
        ctf.synthesize(keys, targets)
    with pytest.raises(ValueError, match=r"targets are a list .*; this Engine runs one scale"):
        synthesize(keys, ctf.targets(source), params, spec, config)
    with pytest.raises(ValueError, match=r"targets hold \['conv1_1', 'pool1', 'pool2'\], not the loss terms"):
        engine.synthesize(keys, targets["gram"])  # style_loss's {layer: gram}
    with pytest.raises(ValueError, match="3 keys for an engine of batch 2"):
        engine.synthesize(jax.random.split(jax.random.key(0), 3), targets)
    for bad in (np.arange(2), jax.random.key(0), [jax.random.key(0)], jnp.zeros((2, 3), jnp.uint32)):
        with pytest.raises(ValueError, match=r"not PRNG keys|keys have shape \(\)"):
            engine.synthesize(bad, targets)
    with pytest.raises(ValueError, match=r"seeds=\[-1\] must lie in 0\.\.4294967295"):
        engine.keys([-1])
    # Legacy uint32 keys are the same keys.
    legacy = jax.random.split(jax.random.PRNGKey(0), 2)
    a, _ = engine.synthesize(legacy, targets)
    b, _ = engine.synthesize(jax.random.wrap_key_data(legacy), targets)
    np.testing.assert_array_equal(a, b)


def test_iterations_transfer_nothing_until_asked():
    params, spec, config, targets = make_problem(24, 4)
    engine = Engine(params, spec, config, batch_size=2)
    targets = engine.targets(np.random.default_rng(0).uniform(size=(24, 24, 3)).astype(np.float32))
    state = engine.init(jax.random.split(jax.random.key(0), 2), targets)
    tracker = progress.Progress(4, [0, 1], log_every=4, stream=progress.SILENT)
    tracker.begin()

    def on_step(state, step, losses):
        if step in (2, 3):  # no log line due: not even an explicit fetch may happen
            with jax.transfer_guard_device_to_host("disallow_explicit"):
                tracker.update(step, losses[-1:])
        else:  # the first line and the last fetch every pending loss at once
            tracker.update(step, losses[-1:])

    with jax.transfer_guard("disallow"):  # and nothing implicit anywhere in the loop
        engine.run(state, targets, 4, on_step)
    history = tracker.history()
    assert len(history) == 4 and history[0].shape == (2,)
    assert np.all(np.diff(np.stack(history), axis=0) <= 0)


def test_scan_dispatch_equals_single_steps():
    params, spec, config, targets = make_problem(24, 5)
    keys = jax.random.split(jax.random.key(3), 2)
    single = Engine(params, spec, config, 2, steps_per_dispatch=1)
    scanned = Engine(params, spec, config, 2, steps_per_dispatch=2)  # 2 + 2 scanned, then 1 single
    a, la = single.synthesize(keys, single.targets(np.full((24, 24, 3), 0.3, np.float32)))
    b, lb = scanned.synthesize(keys, scanned.targets(np.full((24, 24, 3), 0.3, np.float32)))
    assert la.shape == lb.shape == (2, 5)
    np.testing.assert_allclose(b, a, atol=1e-4)
    np.testing.assert_allclose(lb, la, rtol=1e-3)


def test_a_job_from_python_checkpoints_and_resumes(tmp_path, weights_path):
    """What the README's library example does: a job with checkpoints, stopped and resumed."""
    (path,) = make_sources(tmp_path, 1)
    out = tmp_path / "out"
    config = CONFIG.__class__(**{**CONFIG.__dict__, "iterations": 4})
    straight = run_job([(path, [0, 1])], weights_path, config, RunOptions(output_dir=str(tmp_path / "straight")),
                       log=lambda line: None)
    # Stopped after 2 iterations, as a preemption notice would stop it.
    lines, calls = [], []
    half = run_job([(path, [0, 1])], weights_path, config, RunOptions(output_dir=str(out), checkpoint_every=2),
                   log=lines.append, should_stop=lambda: calls.append(1) or len(calls) >= 2)
    assert half.interrupted and (out / "src0_ckpt.npz").is_file()
    resumed = run_job([(path, [0, 1])], weights_path, config, RunOptions(output_dir=str(out), resume=True,
                                                                         checkpoint_every=2), log=lines.append)
    assert [r.status for r in resumed.results] == ["complete"]
    assert any(l.startswith("resuming from") for l in lines)
    for seed in (0, 1):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"src0_seed{seed}.png")),
                                      np.asarray(Image.open(tmp_path / "straight" / f"src0_seed{seed}.png")))
    assert straight.results[0].status == "complete" and not (out / "src0_ckpt.npz").exists()
