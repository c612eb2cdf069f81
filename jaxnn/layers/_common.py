"""Helpers shared by the layer families: dtypes and input checks."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxnn._types import DTypeLike
from jaxnn.core import LayerError


def compute_dtype(x: Any, dtype: DTypeLike | None, param_dtype: DTypeLike) -> np.dtype:
    """The dtype a layer computes in.

    ``dtype`` when given; else the input's dtype when it is floating point (so a
    bfloat16 input computes in bfloat16 with float32 params); else ``param_dtype``.
    """
    if dtype is not None:
        return jnp.dtype(dtype)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.dtype(x.dtype)
    return jnp.dtype(param_dtype)


def check_min_rank(kind: str, x: Any, rank: int, layout: str) -> None:
    """Raises a :class:`LayerError` if ``x`` has fewer than ``rank`` axes."""
    if not hasattr(x, "shape"):
        raise LayerError(kind, f"expects an array input {layout}, got {type(x).__name__}.")
    if x.ndim < rank:
        raise LayerError(
            kind,
            f"expects an input of shape {layout} with at least {rank} axes, got shape "
            f"{tuple(x.shape)}. Add the batch axis (e.g. x[None]) or reshape the input.",
        )


def check_rate(kind: str, rate: float) -> None:
    """Raises a :class:`LayerError` unless ``0 <= rate < 1``."""
    if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise LayerError(
            kind,
            f"rate is the probability of dropping and must lie in [0, 1), got {rate!r}.",
        )


def check_positive(kind: str, what: str, value: Any) -> None:
    """Raises a :class:`LayerError` unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise LayerError(kind, f"{what} must be a positive integer, got {value!r}.")


def along_last(v: Any, ndim: int) -> Any:
    """Reshapes a ``(features,)`` vector to broadcast over the last axis of an
    ``ndim``-axis array, explicitly (jaxnn runs under ``jax_numpy_rank_promotion="raise"``).
    """
    return jnp.reshape(v, (1,) * (ndim - 1) + (-1,))


def dict_input(kind: str, x: dict, keys: tuple[str, ...], usage: str) -> tuple[Any, ...]:
    """The entries ``keys`` of a dict input, in order (``None`` where absent).

    The first key is required; any key not in ``keys`` is an error, whose message
    ends with ``usage`` (how to build the dict).
    """
    extra = sorted(str(k) for k in x if k not in keys)
    if extra or keys[0] not in x:
        problem = f"unknown entries {extra}" if extra else f"no {keys[0]!r} entry"
        raise LayerError(
            kind,
            f"a dict input takes the entries {list(keys)} ({keys[0]!r} required), "
            f"got {problem}. {usage}",
        )
    return tuple(x.get(k) for k in keys)
