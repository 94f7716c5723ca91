"""Seeds sharded over 8 virtual CPU devices, spatial strips, host shares.

Every test runs on conftest's 8 virtual CPU devices (`jax.devices("cpu")`), also on a machine whose default
devices are one GPU, and is skipped where fewer CPU devices exist."""

import numpy as np
import jax
import pytest

from texsynth_jax import guide, parallel, synthesis, synthesize, terms
from test_synthesis import make_problem


def cpu_devices(n: int = 8):
    devices = jax.devices("cpu")
    if len(devices) < n:
        pytest.skip(f"{len(devices)} CPU devices, not {n} (conftest sets jax_num_cpu_devices)")
    return devices[:n]


@pytest.fixture(autouse=True)
def on_cpu():
    with jax.default_device(cpu_devices()[0]):
        yield


@pytest.fixture(scope="module")
def problem():
    with jax.default_device(cpu_devices()[0]):
        params, spec, config, targets = make_problem(32, 3)
        single = synthesize(jax.random.split(jax.random.key(0), 5), targets, params, spec, config)
    return params, spec, config, targets, single


def test_seeds_sharded_over_8_devices_equal_one_device(problem):
    params, spec, config, targets, (images, losses) = problem
    mesh = parallel.make_mesh(parallel.SEEDS, cpu_devices())
    seen = []
    # 5 seeds on 8 devices: padded to 8, padding dropped.
    sharded, sharded_losses = synthesize(
        jax.random.split(jax.random.key(0), 5), targets, params, spec, config,
        on_step=lambda state, step, losses: seen.append(state.latent.sharding), mesh=mesh)
    assert sharded.shape == images.shape and sharded_losses.shape == losses.shape
    assert seen[0].spec == jax.sharding.PartitionSpec(parallel.SEEDS)
    assert len(seen[0].device_set) == 8
    np.testing.assert_allclose(sharded, images, atol=1e-5)
    np.testing.assert_allclose(sharded_losses, losses, rtol=1e-4)


def test_spatial_strips_equal_unsharded(problem):
    params, spec, config, targets, (images, losses) = problem
    mesh = parallel.make_mesh(parallel.SPACE, cpu_devices(4))  # 32 rows = 4 strips of 8 (pool2 = 4x)
    seen = []
    strips, strip_losses = synthesize(
        jax.random.split(jax.random.key(0), 5), targets, params, spec, config,
        on_step=lambda state, step, losses: seen.append(state.opt_state.s.sharding), mesh=mesh)
    # The L-BFGS memory, the largest buffer, is split along the image height.
    assert seen[0].spec == jax.sharding.PartitionSpec(None, None, parallel.SPACE)
    # Summation order differs across strips, and L-BFGS amplifies rounding a little per iteration.
    np.testing.assert_allclose(strips, images, atol=1e-3)
    np.testing.assert_allclose(strip_losses, losses, rtol=1e-3)


def test_spatially_split_loss_and_gradient_equal_unsplit(problem):
    params, spec, config, targets, _ = problem
    mesh = parallel.make_mesh(parallel.SPACE, cpu_devices(4))
    assert_split_equals_unsplit(params, spec, config, targets, mesh)


def assert_split_equals_unsplit(params, spec, config, targets, mesh) -> None:
    """The loss and gradient of a random image split into the mesh's strips equal those of the whole image."""
    image = np.random.default_rng(5).uniform(size=(32, 32, 3)).astype(np.float32)
    value_and_grad = jax.jit(jax.value_and_grad(synthesis.texture_loss), static_argnums=(3, 4))
    loss, grad = value_and_grad(image, targets, params, spec, config)
    split = jax.device_put(image, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(parallel.SPACE)))
    split_loss, split_grad = value_and_grad(split, targets, params, spec, config)
    assert len(split_grad.sharding.device_set) == len(mesh.devices.flat)
    np.testing.assert_allclose(split_loss, loss, rtol=1e-5)
    np.testing.assert_allclose(split_grad, grad, rtol=1e-4, atol=1e-5 * float(np.abs(grad).max()))


def test_a_guided_loss_splits_over_strips_too(problem):
    """Guide masks are replicated targets beside image strips: the guided loss and gradient equal the unsplit ones."""
    params, spec, config, targets, _ = problem
    mesh = parallel.make_mesh(parallel.SPACE, cpu_devices(4))
    rng = np.random.default_rng(6)
    other = synthesis.compute_targets(params, rng.uniform(size=(32, 32, 3)).astype(np.float32), spec, config)
    labels = np.zeros((32, 32), int)
    labels[:, 12:] = 1  # a boundary across every strip
    guided = terms.guided_targets([targets, other], guide.layer_masks(guide.masks(labels, 2, (32, 32)), config.layers,
                                                                      spec.arch))
    assert_split_equals_unsplit(params, spec, config, guided, mesh)


def test_spatial_strips_must_hold_whole_pooling_windows(problem):
    params, spec, config, targets, _ = problem
    mesh = parallel.make_mesh(parallel.SPACE, cpu_devices(3))
    with pytest.raises(ValueError, match="multiple of 12"):
        synthesize(jax.random.split(jax.random.key(0), 1), targets, params, spec, config, mesh=mesh)



def test_padding_rounds_up_to_the_device_count():
    assert parallel.padded_size(5, parallel.make_mesh(parallel.SEEDS, cpu_devices())) == 8
    assert parallel.padded_size(5, None) == 5


def test_a_canvas_to_fill_splits_over_strips_too(problem):
    """A --fill canvas is replicated beside image strips (a large extension over several devices): the images equal
    the unsplit engine's, and the kept pixels stay."""
    from texsynth_jax import Engine, fill

    params, spec, config, targets, _ = problem
    photo = np.random.default_rng(7).uniform(size=(32, 32, 3)).astype(np.float32)
    make = np.zeros((32, 32), bool)
    make[6:26, 10:22] = True  # across every strip
    known, keep = fill.canvas(photo, make, (32, 32))
    keys = jax.random.split(jax.random.key(0), 1)
    images = []
    for mesh in (None, parallel.make_mesh(parallel.SPACE, cpu_devices(4))):
        engine = Engine(params, spec, config, 1, mesh=mesh)
        images.append(np.asarray(engine.synthesize(keys, engine.fill_targets(targets, known, keep))[0]))
    np.testing.assert_allclose(images[1], images[0], atol=1e-4)
    np.testing.assert_allclose(images[1][0][~make], photo[~make], atol=1e-3)
