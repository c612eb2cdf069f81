"""Activation functions by name: every ``jax.nn`` activation, plus Keras's names."""

from __future__ import annotations

import difflib
from collections.abc import Callable

import jax
import jax.numpy as jnp


def linear(x: jax.Array) -> jax.Array:
    """The identity activation, Keras's ``"linear"``.

    Example:
        >>> import jax.numpy as jnp
        >>> linear(jnp.array([-1.0, 2.0])).tolist()
        [-1.0, 2.0]
    """
    return x


def exponential(x: jax.Array) -> jax.Array:
    """``exp(x)``, Keras's ``"exponential"`` activation.

    Example:
        >>> import jax.numpy as jnp
        >>> float(exponential(jnp.array(0.0)))
        1.0
    """
    return jnp.exp(x)


_JAX_NN_NAMES = (
    "celu",
    "elu",
    "gelu",
    "glu",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "mish",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "soft_sign",
    "softmax",
    "softplus",
    "sparse_plus",
    "sparse_sigmoid",
    "squareplus",
    "swish",
    "tanh",
)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    name: getattr(jax.nn, name) for name in _JAX_NN_NAMES if hasattr(jax.nn, name)
}
ACTIVATIONS.update(
    {
        "linear": linear,
        "identity": linear,
        "exponential": exponential,
        "softsign": ACTIVATIONS["soft_sign"],
    }
)
"""Every activation jaxnn knows by name, mapped to its function."""


def get(activation: str | Callable[[jax.Array], jax.Array] | None) -> Callable:
    """Returns the activation function for a name, a function, or ``None`` (identity).

    Args:
        activation: a name from :data:`ACTIVATIONS` (``"relu"``, ``"sigmoid"``, ...),
            any callable ``f(x) -> y``, or ``None`` for the identity.

    Returns:
        The function.

    Raises:
        ValueError: for an unknown name; the message lists the close matches.

    Example:
        >>> import jax.numpy as jnp
        >>> get("relu")(jnp.array([-1.0, 2.0])).tolist()
        [0.0, 2.0]
    """
    if activation is None:
        return linear
    if callable(activation):
        return activation
    if isinstance(activation, str):
        fn = ACTIVATIONS.get(activation.lower())
        if fn is not None:
            return fn
        close = difflib.get_close_matches(activation.lower(), ACTIVATIONS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown activation {activation!r}.{hint} Known names: "
            f"{', '.join(sorted(ACTIVATIONS))}; or pass a function such as jax.nn.relu."
        )
    raise TypeError(
        f"activation must be a name, a function or None, got {type(activation).__name__}."
    )
