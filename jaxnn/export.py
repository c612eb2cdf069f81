"""Export a trained model's inference function as StableHLO, runnable without jaxnn.

:func:`export_model` traces the model's ``apply`` in inference mode with
:mod:`jax.export` and bakes the trained params and model state into the program as
constants, so the exported function takes only the input. The batch axis is
symbolic by default (one program serves any batch size). :func:`save_exported`
writes the serialised program (JAX's own flatbuffer format: no pickle, no Python
code), and :func:`load_exported` reads it back as a plain function. Loading needs
only ``jax``; the model's Python code need not exist::

    import jax
    exported = jax.export.deserialize(bytearray(open("model.jaxexport", "rb").read()))
    y = exported.call(x)

Why bake the weights in: the file is then the whole model, one artifact to ship,
and the caller cannot pass params of the wrong structure. The cost is a file (and
a compiled program) as large as the params, and a new export for new weights;
export :meth:`jaxnn.Layer.apply` yourself with ``jax.export`` if you need the
params as an argument.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxnn._types import Params, State
from jaxnn.core import as_layer, spec_of

__all__ = ["export_model", "load_exported", "save_exported"]

BATCH = "batch"
"""The name of the symbolic batch dimension in exported programs."""


def _symbolic_spec(spec: Any, where: str) -> Any:
    """The input spec with every leading (batch) axis replaced by one symbol."""
    (batch,) = jax.export.symbolic_shape(BATCH)

    def one(leaf: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
        if not leaf.shape:
            raise ValueError(
                f"{where}: x_spec has a scalar leaf; every input needs a leading batch axis, "
                "e.g. jax.ShapeDtypeStruct((1, features), 'float32')."
            )
        return jax.ShapeDtypeStruct((batch, *leaf.shape[1:]), leaf.dtype)

    return jax.tree.map(one, spec)


def export_model(
    trainer_or_model: Any,
    state_or_params: Any,
    x_spec: Any,
    path: str | os.PathLike | None = None,
    *,
    model_state: State | None = None,
    symbolic_batch: bool = True,
    platforms: Sequence[str] | None = None,
) -> jax.export.Exported:
    """Exports ``x -> model.apply(params, model_state, x)[0]`` (inference) as StableHLO.

    Args:
        trainer_or_model: a :class:`~jaxnn.Trainer` or a :class:`~jaxnn.Layer` (or a
            plain function, lifted).
        state_or_params: a :class:`~jaxnn.TrainState` (its params and model state are
            used), or a params dict.
        x_spec: an example input with its batch axis: an array, a
            ``jax.ShapeDtypeStruct`` or a pytree of them. Only shapes and dtypes
            are read; the dtype is the one the exported function accepts.
        path: if given, the exported program is also saved there
            (:func:`save_exported`).
        model_state: the model state to use with bare params (default: none);
            ignored when a ``TrainState`` is passed.
        symbolic_batch: export with a symbolic batch axis (``"batch"``), so any
            batch size runs; ``False`` fixes the batch size of ``x_spec``.
        platforms: the platforms to export for, e.g. ``("cpu", "cuda")``; the
            default is the current backend.

    Returns:
        A ``jax.export.Exported``; ``exported.call(x)`` runs it.

    Raises:
        ValueError: for an input spec without a batch axis.
        TypeError: for ``state_or_params`` that is neither a ``TrainState`` nor a dict.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> model = nn.Sequential(nn.Dense(4, "relu"), nn.Dense(2))
        >>> params, _ = model.init(jax.random.key(0), jnp.zeros((1, 3)))
        >>> exported = export_model(model, params, jax.ShapeDtypeStruct((1, 3), "float32"))
        >>> exported.call(jnp.ones((5, 3))).shape  # any batch size
        (5, 2)
        >>> bool(jnp.allclose(exported.call(jnp.ones((5, 3))),
        ...                   model.apply(params, {}, jnp.ones((5, 3)))[0]))
        True
    """
    where = "export_model"
    model = as_layer(getattr(trainer_or_model, "model", trainer_or_model))
    params, state = _params_and_state(where, state_or_params, model_state)
    spec = spec_of(x_spec)
    if symbolic_batch:
        spec = _symbolic_spec(spec, where)

    def infer(x: Any) -> Any:
        return model.apply(params, state, x)[0]

    exported = jax.export.export(
        jax.jit(infer), platforms=tuple(platforms) if platforms is not None else None
    )(spec)
    if path is not None:
        save_exported(exported, path)
    return exported


def _params_and_state(where: str, given: Any, model_state: State | None) -> tuple[Params, State]:
    if hasattr(given, "params") and hasattr(given, "model_state"):
        return given.params, given.model_state
    if isinstance(given, dict):
        return given, {} if model_state is None else model_state
    raise TypeError(
        f"{where}: state_or_params must be a TrainState or a params dict, got "
        f"{type(given).__name__}."
    )


def save_exported(exported: jax.export.Exported, path: str | os.PathLike) -> None:
    """Writes an exported program to ``path``, atomically (temporary file, rename).

    The file holds ``exported.serialize()``: JAX's versioned flatbuffer with the
    StableHLO module, no pickle and no Python code.

    Args:
        exported: from :func:`export_model` (or any ``jax.export.export``).
        path: the file to write; its directory must exist.

    Example:
        >>> import os, tempfile, jax, jax.numpy as jnp, jaxnn as nn
        >>> params, _ = nn.Dense(2).init(jax.random.key(0), jnp.zeros((1, 3)))
        >>> path = os.path.join(tempfile.mkdtemp(), "dense.jaxexport")
        >>> save_exported(export_model(nn.Dense(2), params, jnp.zeros((1, 3))), path)
        >>> load_exported(path)(jnp.ones((4, 3))).shape
        (4, 2)
    """
    data = exported.serialize()
    target = os.fspath(path)
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_exported(path: str | os.PathLike) -> Callable[..., Any]:
    """Loads a program written by :func:`save_exported` as a function ``f(x) -> y``.

    Only ``jax`` is needed: the function runs the stored StableHLO, not jaxnn's
    Python code. It can be called eagerly or under ``jax.jit``, but not under
    ``jax.vmap`` (JAX has no batching rule for exported programs; with a symbolic
    batch axis, pass the whole batch instead). ``f.exported`` is the underlying
    ``jax.export.Exported`` (input specs, platforms).

    Args:
        path: a file written by :func:`save_exported`.

    Returns:
        The function.

    Raises:
        ValueError: if the file is not a serialised ``jax.export`` program.
        OSError: if the file cannot be read.

    Example:
        >>> import os, tempfile, jax, jax.numpy as jnp, jaxnn as nn
        >>> model = nn.Dense(2)
        >>> params, _ = model.init(jax.random.key(0), jnp.zeros((1, 3)))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = os.path.join(tmp, "dense.jaxexport")
        ...     save_exported(export_model(model, params, jnp.zeros((1, 3))), path)
        ...     f = load_exported(path)
        >>> f.exported.in_avals[0].shape  # the batch axis is symbolic
        (batch, 3)
        >>> x = jnp.ones((4, 3))
        >>> bool(jnp.allclose(f(x), model.apply(params, {}, x)[0]))
        True
        >>> jax.jit(f)(x).shape
        (4, 2)
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        exported = jax.export.deserialize(bytearray(data))
    except Exception as e:  # the flatbuffer reader raises various errors on bad bytes
        raise ValueError(
            f"load_exported: {os.fspath(path)!r} is not a serialised jax.export program "
            f"({type(e).__name__}: {e}). Write it with jaxnn.export.save_exported."
        ) from None

    def run(*args: Any) -> Any:
        return exported.call(*args)

    run.exported = exported  # type: ignore[attr-defined]
    run.__doc__ = f"The exported program from {os.fspath(path)!r}; inputs {exported.in_avals}."
    return run
