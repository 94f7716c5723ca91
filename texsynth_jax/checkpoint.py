"""Preemption-safe checkpoints of a synthesis: the whole batched state and a JSON record, in one file.

One `.npz` per host (its own seeds): every leaf of the `SynthState` pytree (latent, L-BFGS memory,
step counter) stored exactly, plus a JSON string with what the run needs to continue (loss history,
and a fingerprint of the settings so a resume never continues a different run). It is written to a
temp file and renamed, so a kill at any moment leaves the previous checkpoint or the new one, never
a torn file. orbax-checkpoint solves the harder problem of one global array written by many hosts;
here each host's state is its own, and a single atomic file restores bit for bit.
"""

import json
import os

import numpy as np

import jax

from texsynth_jax.image_io import atomic_path


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or belongs to another run."""


def _names(tree) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


def save(path: str, state, record: dict) -> None:
    """Write `state` (any pytree of arrays, e.g. a batched SynthState) and `record` atomically."""
    leaves = [np.asarray(leaf) for leaf in jax.device_get(jax.tree.leaves(state))]
    arrays = {f"leaf{i}": leaf for i, leaf in enumerate(leaves)}
    arrays["names"] = np.array(json.dumps(_names(state)))
    arrays["record"] = np.array(json.dumps(record))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())


def load(path: str, like) -> tuple[object, dict]:
    """Read a checkpoint into the structure of `like` (a pytree or `jax.eval_shape` of one).

    Returns:
      (state with numpy leaves, record). Raises CheckpointError if the file is unreadable or its
      arrays do not fit `like`.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            names = json.loads(str(data["names"]))
            record = json.loads(str(data["record"]))
            leaves = [data[f"leaf{i}"] for i in range(len(names))]
    except (OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable ({e}); delete it to start over") from None
    expected = jax.tree.leaves(like)
    if names != _names(like) or any(
            l.shape != e.shape or l.dtype != e.dtype for l, e in zip(leaves, expected)):
        raise CheckpointError(
            f"checkpoint {path} holds a state of another shape; it belongs to another run (delete it or "
            "run without --resume)")
    return jax.tree.unflatten(jax.tree.structure(like), leaves), record
