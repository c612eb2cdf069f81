"""Dropout: zero a random fraction of the inputs while training."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jaxnn._types import PRNGKey
from jaxnn.core import Layer, LayerError, configured
from jaxnn.layers._common import check_rate, dropout, stateless

__all__ = ["Dropout"]


@configured
def Dropout(rate: float, *, name: str | None = None) -> Layer:
    """Inverted dropout: in training, drops each entry with probability ``rate``.

    Kept entries are scaled by ``1 / (1 - rate)`` so the expected output equals the
    input, and evaluation (``training=False``) is the identity. Each entry is dropped
    independently; the mask is drawn from the ``key`` given to ``apply``, so the same
    key gives the same mask (the mask function that also drops attention weights in
    :func:`~jaxnn.layers.attention.MultiHeadAttention`). With ``rate=0`` the layer is
    the identity and needs no key.

    Args:
        rate: the probability of dropping an entry, in ``[0, 1)``.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, ...)`` to ``y: (batch, ...)`` of the same shape and
        dtype, with no params and no state.

    Raises:
        LayerError: for a ``rate`` outside ``[0, 1)``; in ``apply``, for
            ``training=True`` without a ``key``, or a non-floating input in training.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Dropout(0.5)
        >>> params, state = layer.init(jax.random.key(0), jnp.ones((2, 4)))
        >>> y, _ = layer.apply(params, state, jnp.ones((2, 4)), key=jax.random.key(1),
        ...                    training=True)
        >>> bool(((y == 0.0) | (y == 2.0)).all())  # dropped, or kept and doubled
        True
        >>> layer.apply(params, state, jnp.ones((2, 4)))[0].tolist()  # eval: identity
        [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """
    check_rate("Dropout", rate)

    def train(x: Any, key: PRNGKey) -> Any:
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise LayerError(
                "Dropout",
                f"expects a floating-point input, got dtype {x.dtype}. Cast the input "
                "(e.g. x.astype(jnp.float32)) or drop out after an embedding.",
            )
        return dropout(key, rate, x)

    return stateless("Dropout", lambda x: x, train=train if rate > 0 else None, name=name)
