"""Preemption-safe checkpoints of a synthesis: the whole batched state and a JSON record, in one file.

One `.npz` per host (its own seeds): every leaf of the `SynthState` pytree (latent, L-BFGS memory,
step counter) stored exactly, plus a JSON string with what the run needs to continue (loss history,
and a fingerprint of the settings so a resume never continues a different run). It is written to a
temp file and renamed (in a bucket: uploaded whole), so a kill at any moment leaves the previous
checkpoint or the new one, never a torn file. orbax-checkpoint solves the harder problem of one global
array written by many hosts; here each host's state is its own, and a single atomic file restores bit
for bit.
"""

import json
import math
import zipfile

import numpy as np

import jax

from texsynth_jax import storage


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
    with storage.writer(path, sync=True) as f:
        np.savez(f, **arrays)


def load(path: str, like) -> tuple[object, dict]:
    """Read a checkpoint into the structure of `like` (a pytree or `jax.eval_shape` of one, or a
    function of the record that returns one: the shape may depend on what the record says).

    Every array's header is checked against `like` before its data is read, so a damaged or foreign
    file costs no more memory than the state it should hold.

    Returns:
      (state with numpy leaves, record dict). Raises CheckpointError, naming the file and the fix, if
      it cannot be read (empty, truncated, corrupt: any failure of reading) or does not fit `like`.
    """
    try:
        with storage.opened(path) as f, zipfile.ZipFile(f) as archive:
            names = json.loads(str(_array(archive, "names")))
            record = json.loads(str(_array(archive, "record")))
            if not isinstance(record, dict) or not isinstance(names, list):
                raise ValueError("its record is not a JSON object")
            like = like(record) if callable(like) else like
            expected = jax.tree.leaves(like)
            if names != _names(like):
                raise _Foreign()
            leaves = [_array(archive, f"leaf{i}", e) for i, e in enumerate(expected)]
    except _Foreign:
        raise CheckpointError(
            f"checkpoint {path} holds a state of another shape; it belongs to another run (delete it or "
            "run without --resume)") from None
    except Exception as e:  # zipfile.BadZipFile, EOFError, zlib.error, ValueError, KeyError, OSError, ...
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); delete it, or run "
                              "without --resume and with --overwrite, to start over") from None
    return jax.tree.unflatten(jax.tree.structure(like), leaves), record


class _Foreign(Exception):
    """An array of another shape or dtype than the state asked for."""


def _array(archive: zipfile.ZipFile, key: str, like=None) -> np.ndarray:
    """One array of the archive, its header checked (against `like` if given) before its data is read."""
    info = archive.getinfo(key + ".npy")
    if info.compress_type != zipfile.ZIP_STORED:  # np.savez stores; a compressed entry could expand unboundedly
        raise ValueError(f"{key} is compressed")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        shape, _, dtype = header[version](f)
        if like is not None and (tuple(shape) != tuple(like.shape) or dtype != like.dtype):
            raise _Foreign()
        if math.prod(shape) * dtype.itemsize > info.file_size:
            raise ValueError(f"{key} claims more data than its {info.file_size} bytes")
    with archive.open(info) as f:
        array = np.lib.format.read_array(f, allow_pickle=False)
        if f.read(1):  # reading to the entry's end also makes zipfile check its CRC
            raise ValueError(f"{key} has data past its array")
    return array
