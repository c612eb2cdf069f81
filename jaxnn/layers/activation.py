"""Activation: a layer that applies an activation function elementwise."""

from __future__ import annotations

from collections.abc import Callable

from jaxnn import activations
from jaxnn.core import Layer, LayerError, configured
from jaxnn.layers._common import resolve, stateless

__all__ = ["Activation"]


@configured
def Activation(activation: str | Callable, *, name: str | None = None) -> Layer:
    """A layer without params that applies an activation: ``y = activation(x)``.

    A plain function or an activation name works wherever a layer is expected
    (``Sequential(Dense(3), "relu")``); this layer gives it the kind ``Activation``, so
    the default name inside a parent is ``activation`` and a name can be given.

    Args:
        activation: a name from :data:`jaxnn.activations.ACTIVATIONS` (``"relu"``,
            ``"gelu"``, Keras's names such as ``"linear"``) or a function ``f(x) -> y``.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, ...)`` to ``activation(x)``: the same shape for
        elementwise activations (``"glu"`` halves the last axis), with no params and
        no state.

    Raises:
        LayerError: for an unknown name (listing the close matches) or something that
            is neither a name nor a function.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Activation("relu")
        >>> params, state = layer.init(jax.random.key(0), jnp.zeros((1, 3)))
        >>> layer.apply(params, state, jnp.array([[-1.0, 0.0, 2.0]]))[0].tolist()
        [[0.0, 0.0, 2.0]]
    """
    if activation is None:
        raise LayerError(
            "Activation",
            "got None. Pass a name such as 'relu' or a function such as jax.nn.relu "
            "(use 'linear' for the identity).",
        )
    return stateless("Activation", resolve("Activation", activations.get, activation), name=name)
