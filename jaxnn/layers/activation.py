"""Activation: a layer that applies an activation function elementwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxnn import activations
from jaxnn._types import Params, PRNGKey, Spec, State
from jaxnn.core import Layer, LayerError, check_entries

__all__ = ["Activation"]


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
    try:
        fn = activations.get(activation)
    except (ValueError, TypeError) as e:
        raise LayerError("Activation", str(e)) from e

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        del key, x
        return {}, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        del key, training
        check_entries("Activation", "params", params, ())
        check_entries("Activation", "state", state, ())
        return fn(x), state

    return Layer(init, apply, "Activation", name)
