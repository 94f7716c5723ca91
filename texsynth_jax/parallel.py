"""Spreading a synthesis over devices with jax.sharding: seeds across devices, or one image in strips.

Seeds are independent, so a batch is split over a 1-D mesh of this host's devices along the seed
axis (`SEEDS`), with weights and targets replicated; there is no communication between devices.
For an output too large for one device, `SPACE` splits every image-shaped array (the latent, its
gradient and the L-BFGS memory) into horizontal strips; XLA's SPMD partitioner then exchanges the
one-row halos that each 3x3 convolution needs and sums the Gram matrices across strips.
Many hosts each take their own share of (source, seed) pairs (`jobs.host_jobs`) and never talk to
each other during synthesis, so a preempted host costs only its own seeds.
"""

import numpy as np

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

SEEDS = "seeds"
SPACE = "space"


def make_mesh(axis: str, devices=None) -> Mesh:
    """A 1-D mesh named `axis` over `devices` (default: every device of this process)."""
    devices = jax.local_devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (axis,))


def padded_size(batch: int, mesh: Mesh | None) -> int:
    """The batch rounded up to a multiple of the seed-mesh size (padding seeds are dropped later)."""
    if mesh is None or SEEDS not in mesh.axis_names:
        return batch
    n = mesh.shape[SEEDS]
    return -(-batch // n) * n


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, tree, image_shape: tuple[int, int]):
    """Shardings for a batched pytree (leading axis = seeds).

    On a SEEDS mesh every leaf is split along its leading axis. On a SPACE mesh a leaf whose last
    three axes are the image's [H, W, 3] is split along H, and everything else is replicated.
    """
    def sharding(leaf):
        if SEEDS in mesh.axis_names:
            return NamedSharding(mesh, P(SEEDS))
        if leaf.ndim >= 3 and tuple(leaf.shape[-3:-1]) == tuple(image_shape):
            return NamedSharding(mesh, P(*([None] * (leaf.ndim - 3)), SPACE))
        return replicated(mesh)

    return jax.tree.map(sharding, tree)


def check_spatial(mesh: Mesh, size: tuple[int, int], factor: int) -> None:
    """Raise ValueError unless each strip holds whole pooling windows down to the deepest layer."""
    n = mesh.shape[SPACE]
    if size[0] % (n * factor):
        raise ValueError(
            f"height {size[0]} cannot be split into {n} strips of whole {factor}-px pooling windows; "
            f"use a height that is a multiple of {n * factor}")



def choose_mesh(kind: str, devices=None) -> Mesh | None:
    """The mesh for RunOptions.mesh `kind` over `devices` (default: this host's); None: one device.
    "auto" splits the seeds when there are several devices. An Engine checks that a SPACE mesh fits
    its sizes (check_spatial)."""
    devices = jax.local_devices() if devices is None else list(devices)
    kind = kind if kind != "auto" else (SEEDS if len(devices) > 1 else "none")
    return None if kind == "none" else make_mesh(kind, devices)
