"""Checkpoints restore bit for bit, and a resumed synthesis ends where an uninterrupted one does."""

import os

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from texsynth_jax import SynthesisConfig, checkpoint, compute_targets, engine, synthesize
from test_synthesis import SPECS, random_params


def test_resume_is_bit_identical(tmp_path):
    params, spec = random_params("vgg16"), SPECS["vgg16"]
    config = SynthesisConfig(size=(24, 24), layers=("conv1_1", "pool1"), layer_weights=(1.0, 1.0),
                             iterations=6, coarse_iterations=())
    source = np.random.default_rng(3).uniform(size=(24, 24, 3)).astype(np.float32)
    targets = compute_targets(params, jnp.asarray(source), spec, config)
    keys = jax.random.split(jax.random.key(7), 2)
    straight, straight_losses = synthesize(keys, targets, params, spec, config)

    path = str(tmp_path / "ckpt.npz")

    def save_at_3(state):
        if int(state.step[0]) == 3:
            checkpoint.save(path, state, {"iteration": 3})

    half = SynthesisConfig(**{**config.__dict__, "iterations": 3})
    synthesize(keys, targets, params, spec, half, on_step=lambda state, step, losses: save_at_3(state))
    like = jax.eval_shape(engine.init_state_batch, keys, targets, params, spec, config)
    state, record = checkpoint.load(path, like)
    assert record == {"iteration": 3}
    resumed, resumed_losses = synthesize(keys, targets, params, spec, config, state=state)
    np.testing.assert_array_equal(resumed, straight)
    np.testing.assert_array_equal(resumed_losses, straight_losses[:, 3:])
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temp file left behind


def test_foreign_or_broken_checkpoints_are_refused(tmp_path):
    path = str(tmp_path / "ckpt.npz")
    checkpoint.save(path, {"a": np.zeros((2, 3))}, {})
    with pytest.raises(checkpoint.CheckpointError, match="another run"):
        checkpoint.load(path, {"a": np.zeros((2, 4))})
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="unreadable"):
        checkpoint.load(str(tmp_path / "bad.npz"), {"a": np.zeros((2, 3))})
