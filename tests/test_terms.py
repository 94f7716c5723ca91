"""Loss terms beyond the Gram matrix: exact against direct computations, zero at the source's own
statistics, gradients against finite differences, vmap equal to a loop, the --loss setting, and a term
registered here, outside the library, used by name."""


import numpy as np
import jax
import jax.numpy as jnp
import optax
import pytest

from texsynth_jax import SynthesisConfig, compute_targets, losses, make_engine, synthesis, terms, texture_loss
from test_synthesis import SPECS, random_params

LAYERS = ("conv1_1", "pool1", "pool2")
SIZE = 16
BUILT_IN = ("gram", "swd", "hist", "spectrum")


# A term of this test module's own, as research code would add one: the source's mean colour.
def mean_colour_stats(features, source, layers, size):
    return jnp.mean(source, axis=(0, 1))  # [3]


def mean_colour_loss(features, image, stats, layer_weights, key):
    return jnp.sum(jnp.square(jnp.mean(image, axis=(0, 1)) - stats))


terms.register("mean_colour", mean_colour_stats, mean_colour_loss)


@pytest.fixture(scope="module")
def network():
    return random_params("vgg16"), SPECS["vgg16"]


def config_of(loss, size=SIZE, **kwargs):
    return SynthesisConfig(size=(size, size), layers=LAYERS, layer_weights=(1.0, 0.5, 2.0), loss=loss,
                           coarse_iterations=(), **kwargs)


def texture(size, seed=0):
    """A small structured image: stripes plus noise, so every statistic has something to match."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    stripes = 0.5 + 0.3 * np.sin(2 * np.pi * (x + 2 * y) / 5.0)
    return np.clip(stripes[..., None] * np.array([1.0, 0.8, 0.6]) + 0.1 * rng.normal(size=(size, size, 3)),
                   0, 1).astype(np.float32)


def test_sliced_wasserstein_equals_a_direct_sort():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4, 5, 3)).astype(np.float32)
    source = rng.normal(1.0, 2.0, size=(13, 3)).astype(np.float32)  # another count of positions
    directions = rng.normal(size=(3, 4)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=0)
    out = np.sort(features.reshape(20, 3) @ directions, axis=0)
    src = np.sort(source @ directions, axis=0)
    quantiles = np.array([src[int((i + 0.5) * 13 / 20)] for i in range(20)])
    expected = np.mean((out - quantiles) ** 2)
    got = jax.jit(losses.sliced_wasserstein)(features, source, directions)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Same count: the plain sorted difference; zero against itself.
    same = source[:10].reshape(2, 5, 3)
    np.testing.assert_allclose(losses.sliced_wasserstein(same, source[:10], directions), 0, atol=1e-12)


def test_spectrum_projection_is_the_nearest_image_with_the_source_spectrum():
    rng = np.random.default_rng(1)
    image, source = rng.uniform(size=(2, 12, 10, 3)).astype(np.float32)
    source_fft = jnp.fft.fft2(source, axes=(0, 1))
    projected = np.asarray(losses.spectrum_projection(image, source_fft))
    spectrum = np.fft.fft2(projected, axes=(0, 1))
    np.testing.assert_allclose(np.abs(spectrum), np.abs(np.asarray(source_fft)), rtol=1e-3, atol=1e-3)
    # Nearest: no image of that spectrum with another common phase (random, per frequency) is closer.
    for seed in range(5):
        phase = np.exp(1j * np.angle(np.fft.fft2(np.random.default_rng(seed).normal(size=(12, 10)))))[..., None]
        other = np.real(np.fft.ifft2(np.asarray(source_fft) * phase, axes=(0, 1)))
        assert np.sum((image - projected) ** 2) <= np.sum((image - other) ** 2) + 1e-4


def test_spectrum_loss_is_invariant_to_circular_shifts():
    rng = np.random.default_rng(2)
    image, source = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)
    source_fft = jnp.fft.fft2(source, axes=(0, 1))
    loss = float(losses.spectrum_loss(image, source_fft))
    assert loss > 1e-3
    for shift in [(3, 0), (0, 5), (7, 11)]:
        np.testing.assert_allclose(losses.spectrum_loss(np.roll(image, shift, axis=(0, 1)), source_fft), loss, rtol=1e-4)
    # A shifted source has the source's spectrum: zero.
    assert float(losses.spectrum_loss(np.roll(source, (4, 9), axis=(0, 1)), source_fft)) < 1e-9


@pytest.mark.parametrize("name", BUILT_IN + ("mean_colour",))
def test_each_term_is_zero_at_the_source_and_positive_elsewhere(network, name):
    params, spec = network
    config = config_of((f"{name}:1",))
    source = texture(SIZE)
    targets = compute_targets(params, jnp.asarray(source), spec, config)
    loss = jax.jit(texture_loss, static_argnums=(3, 4))
    assert float(loss(source, targets, params, spec, config)) < 1e-9
    noise = np.random.default_rng(5).uniform(size=source.shape).astype(np.float32)
    assert float(loss(noise, targets, params, spec, config)) > 1e-4


@pytest.mark.parametrize("name", BUILT_IN + ("mean_colour",))
def test_each_term_gradient_matches_finite_differences(network, name):
    params, spec = network
    config = config_of((f"{name}:1",))
    targets = compute_targets(params, jnp.asarray(texture(SIZE)), spec, config)
    image = jnp.asarray(texture(SIZE, seed=7) * 0.5 + 0.25)
    key = jax.random.key(3)
    fn = jax.jit(lambda x: texture_loss(x, targets, params, spec, config, key))
    grad = jax.grad(fn)(image)
    unit = lambda v: v / jnp.linalg.norm(v)
    for seed in range(3):
        # Half along the gradient, so the derivative stands well above float32 rounding of the loss.
        v = unit(unit(grad) + unit(jax.random.normal(jax.random.key(seed), image.shape)))
        eps = 1e-2
        numeric = (float(fn(image + eps * v)) - float(fn(image - eps * v))) / (2 * eps)
        analytic = float(jnp.vdot(grad, v))
        assert abs(numeric - analytic) <= 2e-2 * abs(analytic) + 1e-6, (numeric, analytic)


def test_vmap_over_seeds_equals_a_loop_for_every_term(network):
    params, spec = network
    config = config_of(tuple(f"{n}:1" for n in BUILT_IN + ("mean_colour",)))
    targets = compute_targets(params, jnp.asarray(texture(SIZE)), spec, config)
    images = jnp.asarray(np.random.default_rng(8).uniform(size=(3, SIZE, SIZE, 3)).astype(np.float32))
    keys = jax.random.split(jax.random.key(4), 3)
    fn = lambda x, key: jax.value_and_grad(texture_loss)(x, targets, params, spec, config, key)
    values, grads = jax.jit(jax.vmap(fn))(images, keys)
    for i in range(3):
        value, grad = jax.jit(fn)(images[i], keys[i])
        np.testing.assert_allclose(values[i], value, rtol=1e-5)
        np.testing.assert_allclose(grads[i], grad, rtol=1e-4, atol=1e-7)
    # Different keys draw different swd directions.
    assert len({round(float(v), 6) for v in values}) == 3


def test_terms_compose_by_weight(network):
    params, spec = network
    image = jnp.asarray(np.random.default_rng(9).uniform(size=(SIZE, SIZE, 3)).astype(np.float32))
    source = jnp.asarray(texture(SIZE))
    key = jax.random.key(1)

    def loss(spec_text):
        config = config_of(spec_text)
        return float(texture_loss(image, compute_targets(params, source, spec, config), params, spec, config, key))

    np.testing.assert_allclose(loss(("gram:2", "swd:0.5", "spectrum:3")),
                               2 * loss(("gram",)) + 0.5 * loss(("swd:1",)) + 3 * loss(("spectrum:1",)), rtol=1e-5)


def test_projections_fixed_keep_the_key_and_fresh_redraw_it():
    state = synthesis.SynthState(None, None, jnp.zeros((), jnp.int32), jax.random.key_data(jax.random.key(5)))
    later = state._replace(step=jnp.asarray(7, jnp.int32))
    data = lambda key: np.asarray(jax.random.key_data(key))
    fixed, fresh = config_of(("swd:1",), projections="fixed"), config_of(("swd:1",), projections="fresh")
    assert np.array_equal(data(synthesis.projection_key(state, fixed)), data(synthesis.projection_key(later, fixed)))
    assert not np.array_equal(data(synthesis.projection_key(state, fresh)), data(synthesis.projection_key(later, fresh)))


@pytest.mark.parametrize("optimizer", ["lbfgs", "optax"])
def test_fresh_projections_line_search_compares_one_loss(network, optimizer):
    # The stored value is the last iteration's loss, with other directions. Made stale on purpose here
    # (zero: no point can beat it), a step that compared against it would search 20 trials and stay put.
    params, spec = network
    config = config_of(("swd:1",), size=24, projections="fresh", optimizer=optimizer)
    targets = compute_targets(params, jnp.asarray(texture(24)), spec, config)
    state = synthesis.init_state(jax.random.key(1), targets, params, spec, config)
    zero, opt_state = jnp.zeros((), jnp.float32), state.opt_state
    if optimizer == "lbfgs":
        opt_state = opt_state._replace(value=zero)
    else:
        opt_state = opt_state._replace(inner=optax.tree.set(opt_state.inner, value=zero))
    stale = state._replace(step=jnp.asarray(4, jnp.int32), opt_state=opt_state)
    new, value = synthesis.step(stale, targets, params, spec, config)
    before = texture_loss(synthesis.image_from_latent(stale.latent), targets, params, spec, config,
                          synthesis.projection_key(stale, config))
    assert float(value) < float(before)  # moved, downhill on this iteration's loss
    assert int(synthesis.evaluations(new, config)) - int(synthesis.evaluations(stale, config)) < 5


@pytest.mark.parametrize("loss, message", [
    (("gramm:1",), "unknown"), (("gram:x",), "not a finite number"), (("gram:-1",), "not a finite number"),
    (("gram:nan",), "not a finite number"), (("gram:1", "gram:2"), "twice"), (("gram:0",), "positive weight"),
])
def test_bad_loss_settings_name_the_fix(loss, message):
    with pytest.raises(ValueError, match=message):
        SynthesisConfig(loss=loss)


def test_loss_weights_parse():
    assert config_of(("gram", "swd:0.5", " spectrum:0")).loss_weights == {
        "gram": 1.0, "swd": 0.5, "spectrum": 0.0}


def test_host_sorts_equal_xla_sorts():
    x = np.random.default_rng(3).normal(size=(50, 4)).astype(np.float32)
    np.testing.assert_array_equal(losses._host_sort(x), np.asarray(jnp.sort(x, axis=0)))
    np.testing.assert_array_equal(losses._host_ranks(x), np.asarray(jnp.argsort(jnp.argsort(x, axis=0), axis=0)))
    np.testing.assert_array_equal(jax.jit(losses.rank_columns)(x), losses._host_ranks(x))


def test_a_registered_term_pulls_the_synthesis_its_way(network):
    """gram:1,mean_colour:30 from grey noise: the output's mean colour ends nearer the source's than with
    gram alone (the documented direction of the term's gradient), and the term is in the targets."""
    params, spec = network
    source = np.clip(texture(24) * np.array([1.3, 0.6, 0.3], np.float32), 0, 1)  # orange: far from grey
    keys = jax.random.split(jax.random.key(0), 2)
    gap = {}
    for loss in (("gram:1",), ("gram:1", "mean_colour:30")):
        engine = make_engine(params, spec, config_of(loss, size=24, iterations=6), 2)
        targets = engine.targets(source)
        names = {name.split(":")[0] for name in loss}
        assert set(targets) == {*names, terms.PYRAMID} and all(set(t) == names for t in targets[terms.PYRAMID])
        images, values = engine.synthesize(keys, targets)
        assert np.all(np.isfinite(np.asarray(values)))
        gap[loss] = np.abs(np.asarray(images).mean(axis=(1, 2)) - source.mean(axis=(0, 1))).max(axis=-1)
    with_term, gram_only = gap[("gram:1", "mean_colour:30")], gap[("gram:1",)]
    assert np.all(with_term < 0.5 * gram_only), (with_term, gram_only)


def test_registry_checks_what_it_is_given():
    assert terms.names()[:len(BUILT_IN)] == BUILT_IN and "mean_colour" in terms.names()
    with pytest.raises(ValueError, match="'my term' is not an identifier"):
        terms.register("my term", mean_colour_stats, mean_colour_loss)
    with pytest.raises(ValueError, match="'gram' is already registered; choose another name, or pass replace=True"):
        terms.register("gram", mean_colour_stats, mean_colour_loss)
    with pytest.raises(ValueError, match="loss of loss term 'x' is a int, not a function"):
        terms.register("x", mean_colour_stats, 3)
    with pytest.raises(ValueError, match="random='yes' .* is not a bool"):
        terms.register("x", mean_colour_stats, mean_colour_loss, random="yes")
    assert "x" not in terms.names()
    with pytest.raises(ValueError, match="loss term 'nope' is unknown; .*mean_colour"):
        config_of(("gram:1", "nope:1"))


def test_replacing_a_term_reaches_programs_compiled_before(network):
    params, spec = network
    terms.register("probe", mean_colour_stats, mean_colour_loss)
    config = config_of(("gram:0", "probe:1"))
    targets = compute_targets(params, jnp.asarray(texture(SIZE)), spec, config)
    loss = jax.jit(texture_loss, static_argnums=(3, 4))
    image = jnp.full((SIZE, SIZE, 3), 0.5)
    before = float(loss(image, targets, params, spec, config))
    terms.register("probe", mean_colour_stats, lambda *args: 2 * mean_colour_loss(*args), replace=True)
    assert float(loss(image, targets, params, spec, config)) == pytest.approx(2 * before, rel=1e-6)
