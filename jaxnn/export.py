"""Export a trained model's inference function as StableHLO, runnable without jaxnn.

:func:`export_model` traces the model's ``apply`` in inference mode with
:mod:`jax.export` and bakes the trained params and model state into the program as
constants, so the exported function takes only the input. The batch axis is
symbolic by default (one program serves any batch size). :func:`save_exported`
writes the serialised program (JAX's own flatbuffer format: no pickle, no Python
code) followed by a 40-byte trailer, ``b"JAXNNX1\\0"`` and the SHA-256 of everything
before it; :func:`load_exported` verifies that checksum before it lets JAX read a
byte, so a damaged file is a clear ``ValueError``, never a crash or a model that
silently computes something else. Loading needs only ``jax``; the model's Python
code need not exist::

    import hashlib, jax
    data = open("model.jaxexport", "rb").read()
    payload, digest = data[:-40], data[-32:]
    assert hashlib.sha256(payload).digest() == digest  # what load_exported checks
    exported = jax.export.deserialize(bytearray(payload))
    y = exported.call(x)

The program's debug locations name source files by their base name only
(``dense.py``), never by the absolute path on the machine that exported it.

Why bake the weights in: the file is then the whole model, one artifact to ship,
and the caller cannot pass params of the wrong structure. The cost is a file (and
a compiled program) as large as the params, and a new export for new weights;
export :meth:`jaxnn.Layer.apply` yourself with ``jax.export`` if you need the
params as an argument.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxnn._checks import did_you_mean
from jaxnn._types import Params, State
from jaxnn.core import as_layer, spec_of

__all__ = ["export_model", "load_exported", "save_exported"]

BATCH = "batch"
"""The name of the symbolic batch dimension in exported programs."""

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
"""The platform names ``jax.export`` lowers for."""

_MAGIC = b"JAXNNX1\0"
"""The start of the trailer :func:`save_exported` appends: then the payload's SHA-256."""
_TRAILER = len(_MAGIC) + hashlib.sha256().digest_size

_BASE_NAME = r"^.*[/\\]"
"""Removed from every source file name in the program's debug locations."""


def _check_platforms(where: str, platforms: Any) -> tuple[str, ...] | None:
    """``platforms`` as a tuple of JAX's names; one name is one platform."""
    if platforms is None:
        return None
    if isinstance(platforms, str):
        platforms = (platforms,)
    if not isinstance(platforms, (tuple, list)):
        raise TypeError(
            f"{where}: platforms must be a platform name or a sequence of them, e.g. "
            f"('cpu', 'cuda'), got {type(platforms).__name__}."
        )
    if not platforms:
        raise ValueError(
            f"{where}: platforms is empty; name at least one of {list(PLATFORMS)}, or pass "
            "None for the current backend."
        )
    names = []
    for name in platforms:
        if not isinstance(name, str):
            raise TypeError(
                f"{where}: platforms must be names such as 'cpu' or 'cuda', got "
                f"{type(name).__name__} {name!r}."
            )
        lowered = name.lower()
        if lowered not in PLATFORMS:
            hint = " 'gpu' is 'cuda' (NVIDIA) or 'rocm' (AMD)." if lowered == "gpu" else ""
            raise ValueError(
                f"{where}: unknown platform {name!r}.{hint or did_you_mean(lowered, PLATFORMS)}"
                f" JAX exports for {list(PLATFORMS)}."
            )
        if lowered in names:
            raise ValueError(f"{where}: platform {name!r} is named twice in {platforms!r}.")
        names.append(lowered)
    return tuple(names)


def _check_path(where: str, path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a file path, got {type(path).__name__}.")
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{where}: path is empty; name a file such as 'model.jaxexport'.")
    if os.path.isdir(path):
        raise ValueError(
            f"{where}: path {path!r} is a directory; name a file in it, such as "
            f"{os.path.join(path, 'model.jaxexport')!r}."
        )
    return path


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
        platforms: the platforms to export for: one name (``"cpu"``) or several
            (``("cpu", "cuda")``), of ``"cpu"``, ``"cuda"``, ``"rocm"`` and ``"tpu"``;
            the default is the current backend.

    Returns:
        A ``jax.export.Exported``; ``exported.call(x)`` runs it.

    Raises:
        ValueError: for an input spec without a batch axis, or an unknown platform.
        TypeError: for ``state_or_params`` that is neither a ``TrainState`` nor a dict,
            or ``platforms`` or ``path`` of the wrong type.

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
    platforms = _check_platforms(where, platforms)
    if path is not None:
        path = _check_path(where, path)
    model = as_layer(getattr(trainer_or_model, "model", trainer_or_model))
    params, state = _params_and_state(where, state_or_params, model_state)
    spec = spec_of(x_spec, f"{where}: x_spec")
    if symbolic_batch:
        spec = _symbolic_spec(spec, where)

    def infer(x: Any) -> Any:
        return model.apply(params, state, x)[0]

    # Source files are named by their base name in the program's locations: the file
    # must not carry the exporting machine's directories. The setting is part of JAX's
    # trace context, so no cached lowering is reused across it.
    option = "jax_hlo_source_file_canonicalization_regex"
    before = getattr(jax.config, option)
    jax.config.update(option, _BASE_NAME)
    try:
        exported = jax.export.export(jax.jit(infer), platforms=platforms)(spec)
    finally:
        jax.config.update(option, before)
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

    The file holds ``exported.serialize()`` (JAX's versioned flatbuffer with the
    StableHLO module, no pickle and no Python code), then a trailer:
    ``b"JAXNNX1\\0"`` and the SHA-256 of the serialised bytes, which
    :func:`load_exported` verifies before it deserialises anything.

    Args:
        exported: from :func:`export_model` (or any ``jax.export.export``).
        path: the file to write; its directory must exist.

    Raises:
        TypeError: if ``exported`` is not a ``jax.export.Exported``, or ``path`` not a
            path.

    Example:
        >>> import os, tempfile, jax, jax.numpy as jnp, jaxnn as nn
        >>> params, _ = nn.Dense(2).init(jax.random.key(0), jnp.zeros((1, 3)))
        >>> path = os.path.join(tempfile.mkdtemp(), "dense.jaxexport")
        >>> save_exported(export_model(nn.Dense(2), params, jnp.zeros((1, 3))), path)
        >>> load_exported(path)(jnp.ones((4, 3))).shape
        (4, 2)
    """
    where = "save_exported"
    if not isinstance(exported, jax.export.Exported):
        loaded = (
            " (for a function from load_exported, pass its .exported)"
            if hasattr(exported, "exported")
            else ""
        )
        raise TypeError(
            f"{where}: exported must be a jax.export.Exported{loaded}, got "
            f"{type(exported).__name__}. Make one with export_model(model, params, x_spec), "
            "or pass path= to export_model to save in one go."
        )
    target = _check_path(where, path)
    data = bytes(exported.serialize())
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.write(_MAGIC + hashlib.sha256(data).digest())
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
        ValueError: if the file is damaged (its checksum does not match: a byte
            changed after it was written), has no checksum (not written by
            :func:`save_exported`, or by a jaxnn before checksums: export it again),
            or is not a serialised ``jax.export`` program.
        TypeError: if ``path`` is not a path.
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
    where = "load_exported"
    path = _check_path(where, path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _TRAILER or data[-_TRAILER : -_TRAILER + len(_MAGIC)] != _MAGIC:
        raise ValueError(
            f"{where}: {path!r} has no jaxnn checksum ({len(data)} bytes, no "
            f"{_MAGIC!r} trailer): it was not written by jaxnn.export.save_exported, was "
            "written before exports carried a checksum, or was cut short. Export it "
            "again with export_model(..., path=...) or save_exported."
        )
    payload, digest = data[:-_TRAILER], data[-hashlib.sha256().digest_size :]
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError(
            f"{where}: {path!r} is damaged: the SHA-256 of its {len(payload)} bytes does not "
            "match the checksum written with it, so bytes changed after it was saved (a "
            "bad copy or disk). Nothing was deserialised; export it again, or restore a "
            "good copy."
        )
    try:
        exported = jax.export.deserialize(bytearray(payload))
    except Exception as e:  # the flatbuffer reader raises various errors on bad bytes
        raise ValueError(
            f"{where}: {path!r} is not a serialised jax.export program "
            f"({type(e).__name__}: {e}). Write it with jaxnn.export.save_exported."
        ) from None

    def run(*args: Any) -> Any:
        return exported.call(*args)

    run.exported = exported  # type: ignore[attr-defined]
    run.__doc__ = f"The exported program from {path!r}; inputs {exported.in_avals}."
    return run
