"""Spreading work over devices with JAX's own sharding: data parallelism, members.

Everything here places arrays with ``jax.sharding`` (``Mesh``, ``NamedSharding``,
``PartitionSpec``) and constrains shardings inside compiled programs; XLA's SPMD
partitioner then inserts the collectives (the gradient all-reduce, BatchNorm's
cross-device mean). Nothing here communicates by hand.

* :func:`data_parallel` / :class:`DataParallel`: ``Trainer(..., parallel=...)``
  splits every batch along the batch axis over a mesh axis and keeps params,
  optimizer state and model state replicated.
* :func:`shard_members`: a population's member axis over a mesh axis.
* :func:`initialize`: start several processes (``jax.distributed``); a mesh over
  ``jax.devices()`` then spans every process's devices, and the same ``fit`` runs in
  each process, which prints and saves once (process 0).

This module sits on the data floor, below training: ``train`` and ``population``
ask it where arrays go.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxnn._checks import check_positive_int

__all__ = ["DataParallel", "data_parallel", "initialize", "is_main_process", "put", "shard_members"]


def initialize(
    coordinator_address: str,
    num_processes: int,
    process_id: int,
    *,
    local_devices: int | None = None,
    timeout_s: int = 300,
) -> None:
    """Starts this process as one of ``num_processes`` (``jax.distributed.initialize``).

    Call it first, before anything else touches JAX, in every process, with the same
    ``coordinator_address`` (process 0's ``host:port``) and each process's own
    ``process_id``. On CPUs it switches JAX's collectives to gloo (CPU processes then
    reduce over TCP) and, with ``local_devices``, gives each process that many
    virtual CPU devices. On GPUs and TPUs the cluster's devices are found as usual.

    Args:
        coordinator_address: ``"host:port"`` of process 0.
        num_processes: how many processes take part.
        process_id: this process's index, ``0 <= process_id < num_processes``.
        local_devices: virtual CPU devices per process (CPU only; ``None``: JAX's
            default).
        timeout_s: seconds to wait for every process to join, and for a peer's
            heartbeat before giving up on it.

    Raises:
        ValueError: for a ``process_id`` outside ``[0, num_processes)``.

    Example:
        >>> import jaxnn as nn
        >>> nn.parallel.initialize  # in each process: initialize("10.0.0.1:1234", 2, rank)
        <function initialize at ...>
    """
    num_processes = check_positive_int("parallel.initialize", "num_processes", num_processes)
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise ValueError(
            f"parallel.initialize: process_id must lie in [0, {num_processes}) for "
            f"num_processes={num_processes}, got {process_id!r}. Give each process its own "
            "index, process 0 being the coordinator."
        )
    if local_devices is not None:
        jax.config.update(
            "jax_num_cpu_devices",
            check_positive_int("parallel.initialize", "local_devices", local_devices),
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_s,
        heartbeat_timeout_seconds=timeout_s,
    )


def is_main_process() -> bool:
    """Whether this is process 0, the one that prints progress and writes files.

    Example:
        >>> is_main_process()  # a single process is the main one
        True
    """
    return jax.process_index() == 0


def put(tree: Any, sharding: Any) -> Any:
    """``jax.device_put`` that also works for shardings spanning several processes.

    Every process passes the same values (a replicated state, or the same in-memory
    data); each then places the pieces its own devices hold.

    Args:
        tree: arrays (NumPy, JAX, or JAX random keys).
        sharding: one ``Sharding`` for every leaf, or a function from a leaf's shape
            to its ``Sharding``.

    Returns:
        The placed tree.

    Example:
        >>> import jax, numpy as np
        >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
        >>> whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        >>> put({"w": np.ones(3)}, whole)["w"].sharding == whole
        True
    """
    of = sharding if callable(sharding) else (lambda shape: sharding)

    def place(a: Any) -> Any:
        target = of(np.shape(a))
        if target.is_fully_addressable:
            return jax.device_put(a, target)
        if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            data = place(jax.random.key_data(a))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, target, lambda index: host[index])

    return jax.tree.map(place, tree)


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """Data parallelism over one axis of a mesh: batches split, state replicated
    (or, for large arrays, sharded along a second axis).

    Build it with :func:`data_parallel`. Inside a compiled step every batch (inputs,
    targets, weights and the padding mask) is constrained to be split along its
    leading axis over ``mesh.shape[axis]`` devices; params and model state are
    replicated, except that with a ``param_axis`` every array of at least
    ``min_size`` elements is split along one of its dimensions over that axis
    (FSDP-style: XLA gathers a layer's weights where they are used and
    reduce-scatters their gradients), so each device holds only its share. With
    ``split_optimizer`` (the default), every optimizer-state array of at least
    ``min_size`` elements is split over ``axis`` (ZeRO-style): each device updates
    its share of the large params and the new params are gathered, instead of every
    device running the whole update.
    Gradients and BatchNorm statistics are reduced over the global batch by XLA,
    so a step computes what it computes on one device (to float32 reassociation).
    A batch whose size does not divide by the device count is split unevenly: XLA
    pads the last device's share internally and leaves the padding out of every
    reduction, so BatchNorm statistics and the loss still cover exactly the real
    batch.

    Attributes:
        mesh: the ``jax.sharding.Mesh`` (with ``Auto`` axis types).
        axis: the mesh axis that splits the batch.
        param_axis: the mesh axis that splits large params and optimizer state, or
            ``None`` to replicate them (it may be ``axis`` itself).
        min_size: the number of elements from which an array is split.
        split_optimizer: whether large optimizer-state arrays are split over
            ``axis`` when there is no ``param_axis``.
    """

    mesh: Mesh
    axis: str = "data"
    param_axis: str | None = None
    min_size: int = 2**18
    split_optimizer: bool = True

    @property
    def size(self) -> int:
        """The number of devices a batch is split over."""
        return int(self.mesh.shape[self.axis])

    def replicated(self) -> NamedSharding:
        """The sharding of params and states: a full copy on every device."""
        return NamedSharding(self.mesh, PartitionSpec())

    def batch_sharding(self) -> NamedSharding:
        """The sharding of a batch: split along its leading axis."""
        return NamedSharding(self.mesh, PartitionSpec(self.axis))

    def replicate(self, tree: Any) -> Any:
        """Places ``tree`` (in-memory data) whole on every device of the mesh."""
        return put(tree, self.replicated())

    def state_sharding(self, shape: tuple[int, ...], optimizer: bool = False) -> NamedSharding:
        """Where a state array of this shape goes: replicated, or, when it has at
        least ``min_size`` elements, split along its largest dimension that the axis
        divides; the axis is ``param_axis``, or for optimizer state (``optimizer``)
        ``axis`` when ``split_optimizer`` and there is no ``param_axis``."""
        split = self.param_axis
        if split is None and optimizer and self.split_optimizer:
            split = self.axis
        if split is None or math.prod(shape) < self.min_size:
            return self.replicated()
        parts = int(self.mesh.shape[split])
        dims = [d for d in range(len(shape)) if shape[d] % parts == 0]
        if not dims:
            return self.replicated()
        dim = max(dims, key=lambda d: (shape[d], d))
        spec = [None] * len(shape)
        spec[dim] = split
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def place_state(self, tree: Any) -> Any:
        """Places a state on the mesh: a training state's ``opt_state`` as optimizer
        state, everything else (params, model state) as params."""
        if hasattr(tree, "opt_state") and hasattr(tree, "_replace"):
            optimizer = put(tree.opt_state, lambda shape: self.state_sharding(shape, True))
            return put(tree._replace(opt_state=None), self.state_sharding)._replace(
                opt_state=optimizer
            )
        return put(tree, self.state_sharding)

    def constrain_state(self, tree: Any, optimizer: bool = False) -> Any:
        """Inside a program: keeps a state's arrays where :meth:`place_state` put them
        (``optimizer``: the arrays are optimizer state)."""
        return jax.tree.map(
            lambda a: jax.lax.with_sharding_constraint(a, self.state_sharding(a.shape, optimizer)),
            tree,
        )

    def constrain_batch(self, tree: Any) -> Any:
        """Inside a program: split every array of ``tree`` along its leading axis."""
        return jax.lax.with_sharding_constraint(tree, self.batch_sharding())

    def constrain_whole(self, tree: Any) -> Any:
        """Inside a program: a full copy on every device (outputs every process reads)."""
        return jax.lax.with_sharding_constraint(tree, self.replicated())


def data_parallel(
    mesh: Mesh | None = None,
    axis: str = "data",
    *,
    param_axis: str | None = None,
    min_size: int = 2**18,
    devices: Any = None,
    split_optimizer: bool = True,
) -> DataParallel:
    """Data parallelism over a mesh axis, for ``Trainer(..., parallel=...)``.

    Args:
        mesh: a ``jax.sharding.Mesh``; ``None`` builds a one-axis mesh named
            ``axis`` over ``devices``.
        axis: the mesh axis that splits every batch.
        param_axis: a mesh axis that splits every param and optimizer-state array of
            at least ``min_size`` elements (FSDP-style sharded parameters, for a
            model larger than one device's memory); ``None`` replicates them. It may
            be ``axis`` itself, or a second axis of a two-axis mesh.
        min_size: the number of elements from which an array is split (arrays
            smaller than that are cheaper to replicate than to gather).
        devices: the devices of the mesh built when ``mesh`` is ``None``; all of
            ``jax.devices()`` by default.
        split_optimizer: without a ``param_axis``, split every optimizer-state
            array of at least ``min_size`` elements over ``axis`` (ZeRO-style), so
            that each device runs only its share of the update; ``False``
            replicates the optimizer state and the update as well.

    Returns:
        A :class:`DataParallel`.

    Raises:
        ValueError: if ``axis`` or ``param_axis`` is not an axis of ``mesh``, the
            mesh's axes are ``Explicit`` (jaxnn places arrays with ``Auto`` axes), or
            ``min_size`` is not a positive int.

    Example:
        >>> import jax, jaxnn as nn
        >>> dp = nn.parallel.data_parallel(devices=jax.devices()[:1])
        >>> dp.size, dp.axis
        (1, 'data')
    """
    if mesh is None:
        devices = jax.devices() if devices is None else list(devices)
        mesh = Mesh(np.array(devices), (axis,))
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"data_parallel: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}."
        )
    kinds = dict(zip(mesh.axis_names, mesh.axis_types, strict=True))
    for what, name in (("axis", axis), ("param_axis", param_axis)):
        if name is None:
            continue
        if name not in kinds:
            raise ValueError(
                f"data_parallel: the mesh has no axis {name!r}; its axes are "
                f"{list(mesh.axis_names)}. Pass {what}= one of those, or build the mesh "
                f"with an axis named {name!r}."
            )
        if kinds[name] == jax.sharding.AxisType.Explicit:
            raise ValueError(
                f"data_parallel: mesh axis {name!r} is Explicit (jax.make_mesh's default); "
                "jaxnn places arrays on Auto axes. Build the mesh with jax.make_mesh(shape, "
                "names, axis_types=(jax.sharding.AxisType.Auto,) * len(names)) or "
                "jax.sharding.Mesh(devices, names)."
            )
    min_size = check_positive_int("data_parallel", "min_size", min_size)
    if not isinstance(split_optimizer, bool):
        raise ValueError(f"data_parallel: split_optimizer must be a bool, got {split_optimizer!r}.")
    return DataParallel(mesh, axis, param_axis, min_size, split_optimizer)


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
    if axis not in mesh.axis_names:
        raise ValueError(
            f"shard_members: the mesh has no axis {axis!r}; its axes are "
            f"{list(mesh.axis_names)}. Pass axis= one of those."
        )
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
