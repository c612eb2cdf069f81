"""Type aliases shared by every jaxnn module."""

from __future__ import annotations

from typing import Any, Protocol

import jax

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
DTypeLike = jax.typing.DTypeLike
PRNGKey = jax.Array
Params = dict[str, Any]
"""Trainable arrays of a layer: a nested ``dict`` keyed by readable names."""
State = dict[str, Any]
"""Non-trainable arrays of a layer (running statistics, counters): a nested ``dict``."""
Shape = tuple[int, ...]
Spec = Any
"""An example input: an array, a ``jax.ShapeDtypeStruct``, or a pytree of them."""


class InitFn(Protocol):
    """``init(key, x) -> (params, state)``; ``x`` is an example input with its batch axis."""

    def __call__(self, key: PRNGKey, x: Spec) -> tuple[Params, State]: ...


class ApplyFn(Protocol):
    """``apply(params, state, x, *, key=None, training=False) -> (y, state)``."""

    def __call__(
        self,
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]: ...
