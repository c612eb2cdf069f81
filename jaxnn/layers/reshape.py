"""Layers that change the shape of each example, keeping the batch axis."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxnn.core import Layer, LayerError, configured
from jaxnn.layers._common import check_min_rank, stateless

__all__ = ["Flatten", "Reshape"]


@configured
def Flatten(*, name: str | None = None) -> Layer:
    """Flattens every axis after the batch axis into one.

    Args:
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, d1, ..., dn)`` to ``y: (batch, d1 * ... * dn)``
        (``(batch, 1)`` for an input of shape ``(batch,)``, as in Keras), with no
        params and no state.

    Raises:
        LayerError: for an input without a batch axis.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Flatten()
        >>> params, state = layer.init(jax.random.key(0), jnp.zeros((2, 3, 4)))
        >>> layer.apply(params, state, jnp.zeros((2, 3, 4)))[0].shape
        (2, 12)
    """

    def check(x: Any) -> None:
        check_min_rank("Flatten", x, 1, "(batch, ...)")

    def flatten(x: Any) -> Any:
        return jnp.reshape(x, (x.shape[0], math.prod(x.shape[1:])))

    return stateless("Flatten", flatten, check=check, name=name)


@configured
def Reshape(shape: Sequence[int], *, name: str | None = None) -> Layer:
    """Reshapes the axes after the batch axis to ``shape``.

    Args:
        shape: the new shape of each example, without the batch axis. At most one entry
            may be ``-1``; it is inferred from the element count.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, d1, ..., dn)`` to ``y: (batch, *shape)``, with no
        params and no state.

    Raises:
        LayerError: for a ``shape`` with entries that are not positive integers or
            ``-1``, more than one ``-1``; at ``init`` (and ``apply``), for an input
            whose element count per example does not fit ``shape``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Reshape((-1, 2))
        >>> params, state = layer.init(jax.random.key(0), jnp.zeros((5, 3, 4)))
        >>> layer.apply(params, state, jnp.zeros((5, 3, 4)))[0].shape
        (5, 6, 2)
    """
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(shape)

    def valid(d: Any) -> bool:
        return isinstance(d, (int, np.integer)) and not isinstance(d, bool) and (d > 0 or d == -1)

    if not all(valid(d) for d in shape):
        raise LayerError(
            "Reshape",
            f"shape entries must be positive integers or -1, got {shape}. Give the shape "
            "of one example without the batch axis, e.g. Reshape((7, 7, 64)).",
        )
    if shape.count(-1) > 1:
        raise LayerError(
            "Reshape",
            f"at most one entry of shape may be -1, got {shape}. Give all axes but one.",
        )
    known = math.prod(d for d in shape if d != -1)

    def target(x: Any) -> tuple[int, ...]:
        check_min_rank("Reshape", x, 1, "(batch, ...)")
        count = math.prod(x.shape[1:])
        if -1 in shape:
            fits = count % known == 0
            new = tuple(count // known if d == -1 else d for d in shape)
        else:
            fits = count == known
            new = shape
        if not fits:
            raise LayerError(
                "Reshape",
                f"cannot reshape an example of shape {tuple(x.shape[1:])} ({count} elements) "
                f"to {shape}, which "
                + (f"needs a multiple of {known}" if -1 in shape else f"holds {known}")
                + " elements. Fix the target shape (the batch axis is not part of it) or "
                "the previous layer.",
            )
        return (x.shape[0], *new)

    return stateless("Reshape", lambda x: jnp.reshape(x, target(x)), check=target, name=name)
