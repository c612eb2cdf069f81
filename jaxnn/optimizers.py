"""Optimizers by Keras name, as optax transformations with traced hyperparameters.

Every optimizer returned by :func:`get` is wrapped in ``optax.inject_hyperparams``, so
its hyperparameters (learning rate, weight decay, ...) live in the optimizer state as
arrays: changing them, or giving each member of a population its own, never
recompiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from jaxnn._checks import check_options, lookup

__all__ = ["KERAS_DEFAULTS", "get", "hyperparams"]

KERAS_DEFAULTS: dict[str, tuple[Callable[..., optax.GradientTransformation], dict[str, Any]]] = {
    "adam": (optax.adam, {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-7}),
    "adamw": (
        optax.adamw,
        {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-7, "weight_decay": 0.004},
    ),
    "sgd": (optax.sgd, {"learning_rate": 1e-2, "momentum": 0.0}),
    "rmsprop": (
        optax.rmsprop,
        {"learning_rate": 1e-3, "decay": 0.9, "eps": 1e-7, "momentum": 0.0},
    ),
    "adagrad": (
        optax.adagrad,
        {"learning_rate": 1e-3, "initial_accumulator_value": 0.1, "eps": 1e-7},
    ),
    "nadam": (optax.nadam, {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-7}),
    "lion": (optax.lion, {"learning_rate": 1e-4, "b1": 0.9, "b2": 0.99, "weight_decay": 0.0}),
}
"""Each Keras optimizer name, with the optax function and Keras's default values."""


def get(
    optimizer: str | optax.GradientTransformation, **hyperparams: Any
) -> optax.GradientTransformation:
    """Returns an optax optimizer for a Keras name, with Keras's defaults.

    Args:
        optimizer: a name from :data:`KERAS_DEFAULTS` (``"adam"``, ``"sgd"``,
            ``"rmsprop"``, ``"adamw"``, ...), or an optax transformation (returned as
            it is; wrap it in ``optax.inject_hyperparams`` yourself to trace its
            hyperparameters).
        **hyperparams: values that replace the defaults, e.g. ``learning_rate=0.01``.

    Returns:
        An ``optax.GradientTransformation`` whose state holds the hyperparameters in
        ``state.hyperparams``.

    Raises:
        ValueError: for an unknown name (matched case-insensitively) or
            hyperparameter, or hyperparameters given with an optax transformation;
            the message suggests close matches and lists the valid ones.
        TypeError: for an ``optimizer`` that is neither a name nor an optax
            transformation.

    Example:
        >>> tx = get("adam", learning_rate=0.01)
        >>> import jax.numpy as jnp
        >>> round(float(tx.init({"w": jnp.zeros(2)}).hyperparams["learning_rate"]), 6)
        0.01
        >>> get("adam", learning_rat=0.01)
        Traceback (most recent call last):
        ...
        ValueError: optimizer 'adam' has no hyperparameter 'learning_rat'; its hyperparameters \
are ['b1', 'b2', 'eps', 'learning_rate']. Did you mean 'learning_rate'?
    """
    if isinstance(optimizer, optax.GradientTransformation):
        if hyperparams:
            raise ValueError(
                f"hyperparameters {sorted(hyperparams)} were given with an optax "
                "transformation; set them when you build it, e.g. optax.adam(0.01)."
            )
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(
            "optimizer must be a name such as 'adam' or an optax.GradientTransformation, "
            f"got {type(optimizer).__name__}."
        )
    fn, defaults = lookup("optimizer", optimizer, KERAS_DEFAULTS, "pass an optax transformation")
    check_options(f"optimizer {optimizer!r}", hyperparams, defaults, what="hyperparameter")
    return optax.inject_hyperparams(fn)(**{**defaults, **hyperparams})


def hyperparams(opt_state: Any) -> dict[str, Any]:
    """The traced hyperparameters inside an optimizer state made by :func:`get`.

    Args:
        opt_state: the optimizer state (``TrainState.opt_state``).

    Returns:
        The dict of hyperparameter arrays; empty when the optimizer has none traced.

    Example:
        >>> import jax.numpy as jnp
        >>> sorted(hyperparams(get("sgd").init({"w": jnp.zeros(2)})))
        ['learning_rate', 'momentum']
    """
    found = getattr(opt_state, "hyperparams", None)
    return dict(found) if found is not None else {}
