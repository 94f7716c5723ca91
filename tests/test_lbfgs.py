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
        return (x, state), (state.value, state.evals)

    (x, state), values = jax.lax.scan(body, (x, state), None, length=iterations)
    return x, state, values


def test_finds_the_rosenbrock_minimum():
    x, state, (values, evals) = jax.jit(minimise, static_argnums=1)(jnp.array([-1.2, 1.0, -0.5, 0.8]), 200)
    np.testing.assert_allclose(x, np.ones(4), atol=1e-3)
    assert np.all(np.diff(np.asarray(values)) <= 0)  # Armijo: the value never rises
    # About one evaluation per iteration on the way down. Once at the minimum, float32 rounding leaves no
    # decrease to find and each iteration spends the full line search, more or fewer by the compiler's rounding.
    there = int(np.argmax(np.asarray(values) < 1e-8))
    assert 0 < there and int(evals[there]) < 2 * (there + 1), (there, evals[there])


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


def dense_direction(state):
    """-H g with H built densely by the BFGS inverse update from gamma*I over the stored pairs, oldest
    first (Nocedal & Wright, eq. 7.19): the reference the two-loop recursion must equal."""
    m, pairs, head = state.rho.shape[0], int(state.pairs), int(state.head)
    order = [(head - pairs + j) % m for j in range(pairs)]  # oldest to newest
    s, y = np.asarray(state.s, np.float64), np.asarray(state.y, np.float64)
    newest = order[-1]
    h = np.eye(s.shape[1]) * (s[newest] @ y[newest]) / (y[newest] @ y[newest])
    for i in order:
        rho = 1.0 / (s[i] @ y[i])
        v = np.eye(len(h)) - rho * np.outer(y[i], s[i])
        h = v.T @ h @ v + rho * np.outer(s[i], s[i])
    return -h @ np.asarray(state.grad, np.float64)


def test_direction_equals_the_dense_inverse_hessian():
    with jax.enable_x64(True):
        x = jnp.array([-1.2, 1.0, -0.5, 0.8, 0.3, -0.7], jnp.float64)
        value_and_grad = jax.value_and_grad(rosenbrock)
        state = lbfgs.init(value_and_grad, x, 4)
        step = jax.jit(lambda x, state: lbfgs.step(value_and_grad, x, state))  # one compile, not op by op
        for i in range(9):  # past the memory size, so the ring buffer has wrapped
            x, state = step(x, state)
            if int(state.pairs) >= 2:
                np.testing.assert_allclose(lbfgs.direction(state, 0.5), dense_direction(state), rtol=1e-8,
                                           err_msg=f"iteration {i}")
        assert int(state.pairs) == 4


def test_minimum_equals_scipy():
    """A smooth nonconvex problem with a unique minimum: ours and scipy's L-BFGS-B agree."""
    import scipy.optimize

    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 8))
    a = a @ a.T / 8 + np.eye(8)
    b = rng.normal(size=8)

    def f(x):
        return 0.5 * x @ (a @ x) + b @ x + 0.25 * jnp.sum(x ** 4) + jnp.sum(jnp.cos(x)) * 0.1

    with jax.enable_x64(True):
        value_and_grad = jax.value_and_grad(f)
        x = jnp.zeros(8, jnp.float64) + 0.5
        state = lbfgs.init(value_and_grad, x, 10)
        step = jax.jit(lambda x, state: lbfgs.step(value_and_grad, x, state))  # compiled once, not op by op
        for _ in range(100):
            x, state = step(x, state)
        value, grad = jax.jit(f), jax.jit(jax.grad(f))
        reference = scipy.optimize.minimize(lambda v: float(value(jnp.asarray(v))), np.full(8, 0.5),
                                            jac=lambda v: np.asarray(grad(jnp.asarray(v))),
                                            method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15})
        np.testing.assert_allclose(x, reference.x, atol=1e-6)
        np.testing.assert_allclose(float(state.value), reference.fun, rtol=1e-10)
