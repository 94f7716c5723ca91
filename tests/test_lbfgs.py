"""The vmap-friendly L-BFGS on functions with known minima."""

import numpy as np
import jax
import jax.numpy as jnp

from texsynth_jax import lbfgs


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def minimise(x, iterations, history=10):
    value_and_grad = jax.value_and_grad(rosenbrock)
    state = lbfgs.init(value_and_grad, x, history)

    def body(carry, _):
        x, state = carry
        x, state = lbfgs.step(value_and_grad, x, state)
        return (x, state), state.value

    (x, state), values = jax.lax.scan(body, (x, state), None, length=iterations)
    return x, state, values


def test_finds_the_rosenbrock_minimum():
    x, state, values = jax.jit(minimise, static_argnums=1)(jnp.array([-1.2, 1.0, -0.5, 0.8]), 200)
    np.testing.assert_allclose(x, np.ones(4), atol=1e-3)
    assert np.all(np.diff(np.asarray(values)) <= 0)  # Armijo: the value never rises
    assert int(state.evals) < 2 * 200  # about one evaluation per iteration


def test_vmap_equals_separate_runs():
    # In float64, so that batched and unbatched rounding differences stay far below the tolerance
    # while seeds take different numbers of line-search trials.
    with jax.enable_x64(True):
        starts = jnp.array([[-1.2, 1.0, 0.3], [0.5, -0.5, 2.0], [2.0, 2.0, 2.0]], jnp.float64)
        run = lambda x: minimise(x, 30)[:2]
        batched, states = jax.jit(jax.vmap(run))(starts)
        assert len(set(np.asarray(states.evals).tolist())) > 1  # the seeds did differ in trials
        for i in range(3):
            np.testing.assert_allclose(batched[i], jax.jit(run)(starts[i])[0], rtol=1e-9)


def test_a_failed_line_search_stays_put_and_clears_the_memory():
    value_and_grad = jax.value_and_grad(lambda x: jnp.where(jnp.sum(x) > 0.0, jnp.nan, jnp.sum(x ** 2)))
    x = jnp.array([-1.0, -2.0])
    state = lbfgs.init(value_and_grad, x, 5)
    # Steepest descent heads to positive sums, where the value is NaN: every trial is rejected
    # until the step is small enough; a NaN is never accepted.
    new_x, new_state = lbfgs.step(value_and_grad, x, state, first_step=1e6, max_trials=3)
    np.testing.assert_array_equal(new_x, x)
    assert int(new_state.pairs) == 0 and float(new_state.value) == float(state.value)
