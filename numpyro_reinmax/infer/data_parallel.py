r"""SVI on several devices with JAX sharding (NumPyro): each step's data are split along their
leading (data) axis over a one-axis device mesh, and ``jit`` partitions the step.

The model and the ELBO are unchanged: the sharded step computes the same function as the
unsharded one (JAX's random numbers do not depend on the sharding), and XLA sums the gradients
of the global parameters over the devices. Parameters whose leading axis is the data axis
(per-datum guide logits and their optimiser moments) are partitioned like the data: each device
holds and updates its rows; every other parameter (networks, amortised encoders, global latents'
guide) is replicated.

.. code-block:: python

    mesh = data_mesh(2)
    state = place_state(svi.init(key, x), mesh, data_length=len(x))
    update = jax.jit(svi.update)
    state, loss = update(state, *shard_data((x,), mesh))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax import Array
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["DATA_AXIS", "data_mesh", "place_state", "shard_data"]

DATA_AXIS = "data"


def data_mesh(devices: int | Sequence) -> Mesh:
    """A one-axis mesh (axis ``"data"``) over the first ``devices`` devices, or those given."""
    if isinstance(devices, int):
        available = jax.devices()
        if devices > len(available):
            raise ValueError(
                f"data_mesh: {devices} devices asked for, JAX sees {len(available)}; on a CPU, "
                "call numpyro.set_host_device_count(n) before JAX starts"
            )
        devices = available[:devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def shard_data(arrays: Sequence, mesh: Mesh) -> tuple:
    """Each array split along its leading axis over the mesh (other arguments unchanged)."""
    size = mesh.shape[DATA_AXIS]
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    placed = []
    for value in arrays:
        if not hasattr(value, "shape") or not value.shape:
            placed.append(value)
            continue
        if value.shape[0] % size:
            raise ValueError(
                f"shard_data: a data axis of {value.shape[0]} does not split over {size} devices; "
                "pad the data to a multiple (and mask the padding with numpyro.handlers.mask)"
            )
        placed.append(jax.device_put(value, sharding))
    return tuple(placed)


def place_state(state: Any, mesh: Mesh, data_length: int) -> Any:
    """``state`` (an ``SVIState`` or any pytree) on the mesh: leaves whose leading axis has
    ``data_length`` entries split over the devices like the data, the others replicated."""
    size = mesh.shape[DATA_AXIS]
    split = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(leaf: Array) -> Array:
        shape = getattr(leaf, "shape", ())
        local = bool(shape) and shape[0] == data_length and data_length % size == 0
        return jax.device_put(leaf, split if local else replicated)

    return jax.tree_util.tree_map(place, state)
