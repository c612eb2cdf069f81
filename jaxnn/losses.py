"""Losses as pure functions of ``(predictions, targets)`` (optax's order, not Keras's).

Every loss is computed per example first (the mean over all non-batch axes, as Keras
averages over the last axis) and then reduced to the weighted mean over examples::

    loss = sum(weights * per_example) / sum(weights)

so a 0/1 weight vector is exactly the same as dropping the examples with weight 0
(Keras divides by the batch size instead; the two agree when all weights are 1).
:func:`get` returns a :class:`Loss`, whose ``per_example`` gives the ``(batch,)``
values that training sums over batches so that a partial batch is weighted exactly.

Targets are never broadcast silently: labels ``(batch,)`` against predictions
``(batch, 1)`` (or the reverse) gain or lose that unit axis as in Keras; any other
shape difference raises a ``ValueError`` that names both shapes.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "EPSILON",
    "Loss",
    "binary_crossentropy",
    "categorical_crossentropy",
    "get",
    "huber",
    "mean_absolute_error",
    "mean_squared_error",
    "sparse_categorical_crossentropy",
]

EPSILON = 1e-7
"""Keras's clipping constant for probabilities."""


# ----------------------------------------------------------------------- helpers


def _compute_dtype(predictions: jax.Array) -> jnp.dtype:
    """At least float32, so bfloat16 predictions give accurate logs and sums."""
    dtype = jnp.dtype(predictions.dtype)
    if not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return dtype


def _check_batch(name: str, predictions: jax.Array, targets: jax.Array) -> None:
    if predictions.ndim == 0 or targets.ndim == 0:
        raise ValueError(
            f"{name}: predictions and targets need a leading batch axis, got shapes "
            f"{tuple(predictions.shape)} and {tuple(targets.shape)}."
        )
    if predictions.shape[0] != targets.shape[0]:
        raise ValueError(
            f"{name}: predictions have {predictions.shape[0]} examples but targets have "
            f"{targets.shape[0]}; pass one target per example."
        )


def align(name: str, predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Returns ``targets`` with the predictions' shape, or raises; never broadcasts.

    A missing or extra trailing axis of size 1 is added or removed, as Keras does.

    Args:
        name: the loss or metric, for the message.
        predictions: ``(batch, ...)``.
        targets: ``(batch, ...)``.

    Returns:
        The targets, reshaped to ``predictions.shape``.

    Raises:
        ValueError: when the shapes differ in any other way.

    Example:
        >>> import jax.numpy as jnp
        >>> align("mse", jnp.zeros((100, 1)), jnp.zeros(100)).shape
        (100, 1)
    """
    _check_batch(name, predictions, targets)
    p, t = tuple(predictions.shape), tuple(targets.shape)
    if t == p:
        return targets
    if len(t) == len(p) - 1 and p[-1] == 1 and t == p[:-1]:
        return targets[..., None]
    if len(t) == len(p) + 1 and t[-1] == 1 and t[:-1] == p:
        return targets[..., 0]
    hint = f", or {p[:-1]} for a single output" if p[-1:] == (1,) else ""
    raise ValueError(
        f"{name}: targets have shape {t} but predictions have shape {p}; targets must "
        f"have the predictions' shape {p}{hint}. Check the labels, or the last layer's "
        "number of outputs."
    )


def _per_example_mean(values: jax.Array) -> jax.Array:
    if values.ndim == 1:
        return values
    return jnp.mean(values.reshape(values.shape[0], -1), axis=1)


def weighted_mean(per_example: jax.Array, weights: Any = None) -> jax.Array:
    """``sum(weights * per_example) / sum(weights)``; 0 when all weights are 0.

    Example:
        >>> import jax.numpy as jnp
        >>> float(weighted_mean(jnp.array([1.0, 3.0]), jnp.array([1.0, 0.0])))
        1.0
    """
    if weights is None:
        return jnp.mean(per_example)
    weights = jnp.asarray(weights)
    if weights.shape != per_example.shape:
        raise ValueError(
            f"weights have shape {tuple(weights.shape)}, expected {tuple(per_example.shape)}: "
            "one weight per example."
        )
    weights = weights.astype(per_example.dtype)
    total = jnp.sum(weights)
    safe = jnp.where(total == 0, jnp.ones_like(total), total)
    return jnp.where(total == 0, jnp.zeros_like(total), jnp.sum(weights * per_example) / safe)


# ------------------------------------------------------------- per-example losses


def _mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    t = align("mean_squared_error", predictions, targets)
    dt = _compute_dtype(predictions)
    return _per_example_mean((predictions.astype(dt) - t.astype(dt)) ** 2)


def _mae(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    t = align("mean_absolute_error", predictions, targets)
    dt = _compute_dtype(predictions)
    return _per_example_mean(jnp.abs(predictions.astype(dt) - t.astype(dt)))


def _huber(predictions: jax.Array, targets: jax.Array, delta: float = 1.0) -> jax.Array:
    t = align("huber", predictions, targets)
    dt = _compute_dtype(predictions)
    err = jnp.abs(predictions.astype(dt) - t.astype(dt))
    quadratic = 0.5 * err**2
    linear = delta * (err - 0.5 * delta)
    return _per_example_mean(jnp.where(err <= delta, quadratic, linear))


def _bce(predictions: jax.Array, targets: jax.Array, from_logits: bool = False) -> jax.Array:
    t = align("binary_crossentropy", predictions, targets)
    dt = _compute_dtype(predictions)
    z, t = predictions.astype(dt), t.astype(dt)
    if from_logits:
        # softplus(z) - z t, stable for large |z|.
        values = jax.nn.softplus(z) - z * t
    else:
        p = jnp.clip(z, EPSILON, 1.0 - EPSILON)
        values = -(t * jnp.log(p) + (1.0 - t) * jnp.log1p(-p))
    return _per_example_mean(values)


def _cce(predictions: jax.Array, targets: jax.Array, from_logits: bool = False) -> jax.Array:
    _check_batch("categorical_crossentropy", predictions, targets)
    if tuple(targets.shape) != tuple(predictions.shape):
        raise ValueError(
            f"categorical_crossentropy: targets have shape {tuple(targets.shape)} but "
            f"predictions have shape {tuple(predictions.shape)}; targets must be one-hot "
            "(or probabilities) of the same shape. For integer class labels use "
            "sparse_categorical_crossentropy."
        )
    dt = _compute_dtype(predictions)
    z, t = predictions.astype(dt), targets.astype(dt)
    if from_logits:
        log_p = jax.nn.log_softmax(z, axis=-1)
    else:
        p = z / jnp.sum(z, axis=-1, keepdims=True)
        log_p = jnp.log(jnp.clip(p, EPSILON, 1.0 - EPSILON))
    return _per_example_mean(-jnp.sum(t * log_p, axis=-1))


def sparse_targets(name: str, predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Integer class labels shaped ``predictions.shape[:-1]``, or a clear error.

    Example:
        >>> import jax.numpy as jnp
        >>> sparse_targets("x", jnp.zeros((4, 3)), jnp.array([[0], [1], [2], [1]])).shape
        (4,)
    """
    _check_batch(name, predictions, targets)
    p, t = tuple(predictions.shape), tuple(targets.shape)
    if len(p) < 2:
        raise ValueError(
            f"{name}: predictions need a class axis, shape (batch, ..., classes), got {p}."
        )
    if t == (*p[:-1], 1):
        targets = targets[..., 0]
    elif t != p[:-1]:
        raise ValueError(
            f"{name}: targets have shape {t} but predictions have shape {p}; integer class "
            f"labels must have shape {p[:-1]} (or {(*p[:-1], 1)}). For one-hot targets use "
            "categorical_crossentropy."
        )
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        targets = targets.astype(jnp.int32)
    return targets


def _scce(predictions: jax.Array, targets: jax.Array, from_logits: bool = False) -> jax.Array:
    labels = sparse_targets("sparse_categorical_crossentropy", predictions, targets)
    dt = _compute_dtype(predictions)
    z = predictions.astype(dt)
    if from_logits:
        log_p = jax.nn.log_softmax(z, axis=-1)
    else:
        p = z / jnp.sum(z, axis=-1, keepdims=True)
        log_p = jnp.log(jnp.clip(p, EPSILON, 1.0 - EPSILON))
    # An out-of-range label gives NaN (not a silent 0), so the mistake shows.
    picked = jnp.take_along_axis(log_p, labels[..., None], axis=-1, mode="fill", fill_value=jnp.nan)
    return _per_example_mean(-picked[..., 0])


# ------------------------------------------------------------------- public API


class Loss(NamedTuple):
    """A loss: its name and its per-example form.

    Attributes:
        name: the name shown in logs.
        per_example: ``per_example(predictions, targets) -> (batch,)``.

    Calling a ``Loss`` gives the weighted mean:
    ``loss(predictions, targets, weights=None) -> scalar``.
    """

    name: str
    per_example: Callable[[jax.Array, jax.Array], jax.Array]

    def __call__(
        self, predictions: jax.Array, targets: jax.Array, weights: Any = None
    ) -> jax.Array:
        return weighted_mean(self.per_example(predictions, targets), weights)


def mean_squared_error(
    predictions: jax.Array, targets: jax.Array, weights: Any = None
) -> jax.Array:
    """Mean squared error, ``mean((predictions - targets)^2)``.

    Args:
        predictions: ``(batch, ...)``.
        targets: the same shape (a missing unit last axis is added).
        weights: optional ``(batch,)`` per-example weights.

    Returns:
        The weighted mean over examples, a scalar.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp
        >>> float(mean_squared_error(jnp.array([[1.0], [3.0]]), jnp.array([0.0, 1.0])))
        2.5
    """
    return weighted_mean(_mse(predictions, targets), weights)


def mean_absolute_error(
    predictions: jax.Array, targets: jax.Array, weights: Any = None
) -> jax.Array:
    """Mean absolute error, ``mean(|predictions - targets|)``.

    Args:
        predictions: ``(batch, ...)``.
        targets: the same shape (a missing unit last axis is added).
        weights: optional ``(batch,)`` per-example weights.

    Returns:
        The weighted mean over examples, a scalar.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp
        >>> float(mean_absolute_error(jnp.array([[1.0], [3.0]]), jnp.array([0.0, 1.0])))
        1.5
    """
    return weighted_mean(_mae(predictions, targets), weights)


def huber(
    predictions: jax.Array, targets: jax.Array, weights: Any = None, *, delta: float = 1.0
) -> jax.Array:
    """Huber loss: ``0.5 e^2`` for ``|e| <= delta``, else ``delta (|e| - delta / 2)``.

    Args:
        predictions: ``(batch, ...)``.
        targets: the same shape.
        weights: optional ``(batch,)`` per-example weights.
        delta: where the loss turns from quadratic to linear.

    Returns:
        The weighted mean over examples, a scalar.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp
        >>> float(huber(jnp.array([[0.5], [3.0]]), jnp.array([[0.0], [0.0]])))
        1.3125
    """
    return weighted_mean(_huber(predictions, targets, delta), weights)


def binary_crossentropy(
    predictions: jax.Array,
    targets: jax.Array,
    weights: Any = None,
    *,
    from_logits: bool = False,
) -> jax.Array:
    """Binary cross-entropy, ``-(t log p + (1 - t) log(1 - p))``.

    Args:
        predictions: probabilities ``(batch, ...)`` (clipped to ``[1e-7, 1 - 1e-7]``,
            as Keras does), or logits with ``from_logits=True`` (computed stably).
        targets: 0/1 (or soft) labels of the same shape; ``(batch,)`` labels fit
            ``(batch, 1)`` predictions.
        weights: optional ``(batch,)`` per-example weights.
        from_logits: whether ``predictions`` are logits.

    Returns:
        The weighted mean over examples, a scalar.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(binary_crossentropy(jnp.array([[0.9], [0.2]]), jnp.array([1, 0]))), 4)
        0.1643
    """
    return weighted_mean(_bce(predictions, targets, from_logits), weights)


def categorical_crossentropy(
    predictions: jax.Array,
    targets: jax.Array,
    weights: Any = None,
    *,
    from_logits: bool = False,
) -> jax.Array:
    """Categorical cross-entropy against one-hot (or probability) targets.

    Args:
        predictions: probabilities ``(batch, ..., classes)`` (renormalised and
            clipped, as Keras does), or logits with ``from_logits=True``.
        targets: one-hot targets of the same shape.
        weights: optional ``(batch,)`` per-example weights.
        from_logits: whether ``predictions`` are logits.

    Returns:
        The weighted mean over examples, a scalar.

    Raises:
        ValueError: if the shapes differ (integer labels need the sparse loss).

    Example:
        >>> import jax.numpy as jnp
        >>> p = jnp.array([[0.7, 0.2, 0.1]])
        >>> round(float(categorical_crossentropy(p, jnp.array([[1.0, 0.0, 0.0]]))), 4)
        0.3567
    """
    return weighted_mean(_cce(predictions, targets, from_logits), weights)


def sparse_categorical_crossentropy(
    predictions: jax.Array,
    targets: jax.Array,
    weights: Any = None,
    *,
    from_logits: bool = False,
) -> jax.Array:
    """Categorical cross-entropy against integer class labels.

    Args:
        predictions: probabilities ``(batch, ..., classes)``, or logits with
            ``from_logits=True``.
        targets: integer labels ``(batch, ...)`` or ``(batch, ..., 1)``; a label
            outside ``[0, classes)`` gives NaN.
        weights: optional ``(batch,)`` per-example weights.
        from_logits: whether ``predictions`` are logits.

    Returns:
        The weighted mean over examples, a scalar.

    Raises:
        ValueError: if the label shape does not fit the predictions.

    Example:
        >>> import jax.numpy as jnp
        >>> p = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
        >>> round(float(sparse_categorical_crossentropy(p, jnp.array([0, 1]))), 4)
        0.2899
    """
    return weighted_mean(_scce(predictions, targets, from_logits), weights)


_PER_EXAMPLE: dict[str, Callable] = {
    "mean_squared_error": _mse,
    "mse": _mse,
    "mean_absolute_error": _mae,
    "mae": _mae,
    "huber": _huber,
    "binary_crossentropy": _bce,
    "bce": _bce,
    "binary_crossentropy_from_logits": functools.partial(_bce, from_logits=True),
    "categorical_crossentropy": _cce,
    "categorical_crossentropy_from_logits": functools.partial(_cce, from_logits=True),
    "sparse_categorical_crossentropy": _scce,
    "sparse_categorical_crossentropy_from_logits": functools.partial(_scce, from_logits=True),
}


def _checked(name: str, fn: Callable) -> Callable[[jax.Array, jax.Array], jax.Array]:
    def per_example(predictions: jax.Array, targets: jax.Array) -> jax.Array:
        values = jnp.asarray(fn(predictions, targets))
        batch = jax.tree.leaves(predictions)[0].shape[0]
        if values.shape != (batch,):
            raise ValueError(
                f"loss {name!r} returned shape {tuple(values.shape)}; a loss function must "
                f"return one value per example, shape ({batch},), so that batches and "
                "weights reduce exactly."
            )
        return values

    return per_example


def get(loss: str | Callable | Loss, **kwargs: Any) -> Loss:
    """Returns a :class:`Loss` for a Keras name or a function.

    Args:
        loss: a name (case-insensitive): ``"mse"``, ``"mae"``, ``"huber"``,
            ``"binary_crossentropy"``, ``"categorical_crossentropy"``,
            ``"sparse_categorical_crossentropy"`` (each full Keras name works, and
            ``"<name>_from_logits"`` for the cross-entropies); a :class:`Loss`; or a
            function ``f(predictions, targets) -> (batch,)`` values.
        **kwargs: options of a named loss, e.g. ``from_logits=True`` or ``delta=2.0``.

    Returns:
        The :class:`Loss`.

    Raises:
        ValueError: for an unknown name; the message lists close matches.

    Example:
        >>> import jax.numpy as jnp
        >>> loss = get("binary_crossentropy", from_logits=True)
        >>> loss.per_example(jnp.zeros((3, 1)), jnp.ones((3, 1))).shape
        (3,)
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        fn = _PER_EXAMPLE.get(loss.lower())
        if fn is None:
            close = difflib.get_close_matches(loss.lower(), _PER_EXAMPLE, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"unknown loss {loss!r}.{hint} Known names: {', '.join(sorted(_PER_EXAMPLE))}; "
                "or pass a function f(predictions, targets) giving one value per example."
            )
        if kwargs:
            fn = functools.partial(fn, **kwargs)
        return Loss(loss.lower(), fn)
    if callable(loss):
        name = getattr(loss, "__name__", type(loss).__name__)
        if kwargs:
            loss = functools.partial(loss, **kwargs)
        return Loss(name, _checked(name, loss))
    raise TypeError(f"loss must be a name or a function, got {type(loss).__name__}.")
