"""Activation functions by name: every ``jax.nn`` activation, plus Keras's names."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxnn._checks import lookup


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


def _in_float32(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """``fn`` computed in float32 for bfloat16 and float16 inputs, the result cast
    back to the input's dtype; other inputs go to ``fn`` unchanged. For the softmaxes:
    a bfloat16 exponential of a bfloat16 difference loses about 4% at logits of 10,
    where float32 arithmetic on the same inputs is exact to the final rounding."""

    @functools.wraps(fn)
    def wrapped(x: jax.Array, *args, **kwargs) -> jax.Array:
        dtype = getattr(x, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating) or dtype.itemsize >= 4:
            return fn(x, *args, **kwargs)
        return fn(x.astype(jnp.float32), *args, **kwargs).astype(dtype)

    return wrapped


# Under mixed precision (``nn.precision``) the softmaxes run in float32 at least.
for _name in ("softmax", "log_softmax"):
    ACTIVATIONS[_name] = _in_float32(ACTIVATIONS[_name])

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
        ValueError: for an unknown name (matched case-insensitively); the message
            suggests close matches and lists every known name.
        TypeError: for anything else (not a name, a callable or ``None``).

    Example:
        >>> import jax.numpy as jnp
        >>> get("relu")(jnp.array([-1.0, 2.0])).tolist()
        [0.0, 2.0]
        >>> get("rleu")
        Traceback (most recent call last):
        ...
        ValueError: unknown activation 'rleu'. Did you mean 'relu', ...
    """
    if activation is None:
        return linear
    if callable(activation):
        return activation
    if isinstance(activation, str):
        return lookup("activation", activation, ACTIVATIONS, "pass a function such as jax.nn.relu")
    raise TypeError(
        f"activation must be a name, a function or None, got {type(activation).__name__}."
    )
