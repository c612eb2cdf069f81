"""Spreading work over devices with JAX's own sharding: meshes and member sharding.

Everything here places arrays with ``jax.sharding`` (``Mesh``, ``NamedSharding``,
``PartitionSpec``); the compiled programs then run where their data is. A
population's member axis is sharded with :func:`shard_members`.
"""

from __future__ import annotations

from typing import Any

import jax

__all__ = ["shard_members"]


def shard_members(states: Any, mesh: jax.sharding.Mesh, axis: str | None = None) -> Any:
    """Spreads the member axis of a stacked tree over the devices of a mesh.

    Args:
        states: a stacked state (or any tree with a leading member axis).
        mesh: a ``jax.sharding.Mesh``.
        axis: the mesh axis to shard members over; the mesh's first by default. The
            number of members must be divisible by that axis's size.

    Returns:
        The same tree, placed with ``NamedSharding(mesh, P(axis))``. Training and
        evaluation then run each device's members on that device.

    Raises:
        ValueError: if the members do not divide evenly over the devices.

    Example:
        >>> import jax, numpy as np, jax.numpy as jnp, jaxnn as nn
        >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("members",))
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> states = nn.population.init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4)
        >>> spec = shard_members(states, mesh).params["kernel"].sharding.spec
        >>> spec == jax.sharding.PartitionSpec("members")
        True
    """
    axis = axis or mesh.axis_names[0]
    size = mesh.shape[axis]
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))

    def place(a: jax.Array) -> jax.Array:
        if a.shape[0] % size:
            raise ValueError(
                f"shard_members: {a.shape[0]} members do not divide over the {size} devices "
                f"of mesh axis {axis!r}; use a multiple of {size} members."
            )
        return jax.device_put(a, sharding)

    return jax.tree.map(place, states)
