"""The L-BFGS optimisers a synthesis can use, behind one small interface.

- "optax": `optax.lbfgs` with `optax.scale_by_backtracking_linesearch(store_grad=True)`. The value and
  gradient of the accepted point live in the optimiser state and are read back with `optax.tree.get`
  (`optax.value_and_grad_from_state` would put a `lax.cond` around a second evaluation, and under
  `vmap` a cond runs both branches). Each line-search trial is one value-and-gradient under vmap.
- "lbfgs": texsynth_jax's own two-loop L-BFGS with a backtracking Armijo search (`lbfgs.py`).

bench/optimizer.py measures both on the real problem; `SynthesisConfig.optimizer` picks one.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from texsynth_jax import lbfgs

NAMES = ("optax", "lbfgs")
_MAX_TRIALS = 20  # line-search trials per iteration before giving up on a decrease


class Optimizer(NamedTuple):
    """Pure functions of one point x (an array) and the loss `fn(x) -> scalar`.

    init(fn, x) -> state (evaluates fn and its gradient at x once)
    step(fn, x, state) -> (x, state): one iteration, line search included
    refresh(fn, x, state) -> state: f and its gradient at x evaluated again, for a loss that changed
      (swd's fresh projections): the line search then compares values of one loss
    value(state) -> f at the current x; evals(state) -> loss evaluations so far
    """

    init: Callable
    step: Callable
    refresh: Callable
    value: Callable
    evals: Callable


class OptaxState(NamedTuple):
    inner: optax.OptState  # value and grad of the current point are stored in here
    evals: jax.Array  # int32: value-and-gradient evaluations so far


def _optax(history: int) -> Optimizer:
    solver = optax.lbfgs(memory_size=history, linesearch=optax.scale_by_backtracking_linesearch(
        max_backtracking_steps=_MAX_TRIALS, store_grad=True))

    def init(fn, x):
        value, grad = jax.value_and_grad(fn)(x)
        inner = optax.tree.set(solver.init(x), value=value, grad=grad)
        return OptaxState(inner, jnp.ones((), jnp.int32))

    def step(fn, x, state):
        value, grad = optax.tree.get(state.inner, "value"), optax.tree.get(state.inner, "grad")
        updates, inner = solver.update(grad, state.inner, x, value=value, grad=grad, value_fn=fn)
        trials = optax.tree.get(inner, "num_linesearch_steps")
        return optax.apply_updates(x, updates), OptaxState(inner, state.evals + trials.astype(jnp.int32))

    def refresh(fn, x, state):
        value, grad = jax.value_and_grad(fn)(x)
        return OptaxState(optax.tree.set(state.inner, value=value, grad=grad), state.evals + 1)

    return Optimizer(init, step, refresh, lambda state: optax.tree.get(state.inner, "value"), lambda state: state.evals)


def _own(history: int) -> Optimizer:
    def refresh(fn, x, state):
        value, grad = jax.value_and_grad(fn)(x)
        return state._replace(value=value, grad=grad, evals=state.evals + 1)

    return Optimizer(
        init=lambda fn, x: lbfgs.init(jax.value_and_grad(fn), x, history),
        step=lambda fn, x, state: lbfgs.step(jax.value_and_grad(fn), x, state, max_trials=_MAX_TRIALS),
        refresh=refresh,
        value=lambda state: state.value,
        evals=lambda state: state.evals)


def make(name: str, history: int) -> Optimizer:
    """The optimiser called `name` (one of NAMES) with `history` L-BFGS pairs."""
    if name == "optax":
        return _optax(history)
    if name == "lbfgs":
        return _own(history)
    raise ValueError(f"optimizer={name!r} is unknown; use one of {NAMES}")
