"""Networks as flat vectors, for gradient-free methods (evolution strategies).

:func:`ravel` turns one network's params into a vector and back; :func:`flat_apply`
gives ``f(vector, x)``, which ``jax.vmap`` evaluates for a whole population of
vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.flatten_util import ravel_pytree

from jaxnn._types import Params, State

__all__ = ["flat_apply", "ravel"]


def ravel(params: Params) -> tuple[jax.Array, Callable[[jax.Array], Params]]:
    """One flat vector of all parameters, and the function that rebuilds the tree.

    The order is ``jax.tree.leaves`` order: dict keys sorted, each array flattened in
    C (row-major) order, concatenated. It depends only on the tree's names and
    shapes, so it is stable across runs and processes. Dtypes are promoted to a
    common one (float32 for a float32 model).

    Args:
        params: a params tree of one network.

    Returns:
        ``(vector, unravel)`` with ``unravel(vector)`` giving the tree back.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> params, _ = nn.Dense(2).init(jax.random.key(0), jnp.zeros((1, 3)))
        >>> vector, unravel = ravel(params)
        >>> vector.shape, unravel(vector)["kernel"].shape
        ((8,), (3, 2))
    """
    return ravel_pytree(params)


def flat_apply(
    trainer_or_model: Any, params: Params, model_state: State | None = None
) -> Callable[[jax.Array, Any], jax.Array]:
    """``f(vector, x) -> y``: the model applied to a flat parameter vector.

    The function is pure, so ``jax.vmap(f, in_axes=(0, None))`` evaluates a whole
    population of vectors (evolution strategies, other gradient-free methods).

    Args:
        trainer_or_model: a :class:`~jaxnn.Trainer` or a :class:`~jaxnn.Layer`.
        params: one network's params, giving the structure of the vector.
        model_state: the model state to apply with (default: none).

    Returns:
        The function ``f(vector, x)``, in inference mode.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> model = nn.Dense(2)
        >>> params, _ = model.init(jax.random.key(0), jnp.zeros((1, 3)))
        >>> f = flat_apply(model, params)
        >>> vectors = jnp.zeros((16, ravel(params)[0].size))
        >>> jax.vmap(f, in_axes=(0, None))(vectors, jnp.ones((5, 3))).shape
        (16, 5, 2)
    """
    model = getattr(trainer_or_model, "model", trainer_or_model)
    _, unravel = ravel_pytree(params)
    model_state = {} if model_state is None else model_state

    def f(vector: jax.Array, x: Any) -> jax.Array:
        return model.apply(unravel(vector), model_state, x)[0]

    return f
