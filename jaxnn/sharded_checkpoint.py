"""Checkpoints of state split over several processes, written with orbax-checkpoint.

:mod:`jaxnn.checkpoint` writes one safetensors file from the host, which needs every
array whole on one process. When a state is split over the devices of several
processes (sharded parameters on a multi-host mesh), no process holds it whole; then
each process writes its own shards into one checkpoint directory, in parallel, with
orbax-checkpoint (the JAX ecosystem's distributed checkpointer; install it with
``pip install -e ".[distributed]"``). Restoring reads each array straight onto the
shardings of the state it is given, so a checkpoint written on one mesh restores onto
another (8 devices onto 4, two processes onto one).

A checkpoint is a directory: orbax's files plus ``jaxnn.json`` (the metadata, written
by process 0 after orbax has committed the arrays). A directory without it is an
unfinished save, which :func:`read_metadata` refuses.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from jaxnn.checkpoint import CheckpointError

__all__ = ["is_sharded_checkpoint", "needs_sharded", "read_metadata", "restore", "save"]

_META = "jaxnn.json"


def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError:
        raise ImportError(
            "jaxnn.sharded_checkpoint needs orbax-checkpoint, which is not installed; "
            'install the extra with pip install -e ".[distributed]" (or pip install '
            '"jaxnn[distributed]").'
        ) from None
    return ocp


def needs_sharded(tree: Any) -> bool:
    """Whether some array of ``tree`` is split over devices of several processes, so
    that no process can write it whole.

    Example:
        >>> needs_sharded({"w": jax.numpy.ones(3)})
        False
    """
    return any(
        isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated
        for a in jax.tree.leaves(tree)
    )


def is_sharded_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory written by :func:`save`."""
    return os.path.isdir(path)


def _is_key(a: Any) -> bool:
    return isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def _plain(tree: Any) -> Any:
    """Random keys as their raw ``uint32`` data, which orbax can store."""
    return jax.tree.map(lambda a: jax.random.key_data(a) if _is_key(a) else a, tree)


def save(path: str | os.PathLike, tree: Any, metadata: dict[str, Any] | None = None) -> None:
    """Saves ``tree`` (arrays, possibly split over processes) into the directory
    ``path``; every process must call it, with its own shards.

    Args:
        path: the checkpoint directory (replaced if it exists).
        tree: a pytree of JAX arrays (random keys included).
        metadata: JSON-safe data kept beside the arrays (:func:`read_metadata`).

    Raises:
        ImportError: without orbax-checkpoint (the ``[distributed]`` extra).

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> path = os.path.join(tempfile.mkdtemp(), "state.orbax")
        >>> save(path, {"w": jnp.ones(3)}, {"epoch": 1})
        >>> read_metadata(path)["epoch"], restore(path, {"w": jnp.zeros(3)})["w"].tolist()
        (1, [1.0, 1.0, 1.0])
    """
    ocp = _orbax()
    path = os.path.abspath(os.fspath(path))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, _plain(tree), force=True)
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        tmp = os.path.join(path, f".{_META}.tmp")
        with open(tmp, "w") as f:
            json.dump({"metadata": metadata or {}}, f)
        os.replace(tmp, os.path.join(path, _META))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata`` a :func:`save` kept.

    Raises:
        CheckpointError: for a directory without it (a save killed midway).
    """
    try:
        with open(os.path.join(path, _META)) as f:
            return json.load(f)["metadata"]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"{os.fspath(path)!r} is not a finished sharded checkpoint (no readable {_META}: "
            f"{e}); it was probably killed midway."
        ) from None


def restore(path: str | os.PathLike, like: Any) -> Any:
    """The tree saved in ``path``, each array placed as the array of ``like`` in its
    position is (its sharding, on this mesh, which may differ from the saving one).

    Args:
        path: a directory written by :func:`save`.
        like: a pytree of the same structure, shapes and dtypes (e.g. a freshly
            initialised, placed state); its values are not used.

    Raises:
        CheckpointError: when the checkpoint's tree does not match ``like``.
    """
    ocp = _orbax()
    read_metadata(path)
    keys = jax.tree.map(_is_key, like)
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=getattr(a, "sharding", None)),
        _plain(like),
    )
    try:
        found = ocp.StandardCheckpointer().restore(os.path.abspath(os.fspath(path)), target)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"{os.fspath(path)!r} does not match the expected tree (of shapes and dtypes "
            f"of the state given to restore it into): {str(e)[:300]}"
        ) from None
    return jax.tree.map(
        lambda a, is_key, ref: (
            jax.random.wrap_key_data(a, impl=jax.random.key_impl(ref)) if is_key else a
        ),
        found,
        keys,
        like,
    )
