"""Metrics as pure per-example functions, so any batching reduces exactly.

A metric gives one value per example, shape ``(batch,)``. Summing ``values * mask``
and ``mask`` over batches, a partial last batch included, and dividing gives exactly
the metric over the whole data set: :func:`reduce` does that for one batch.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnn.losses import align, sparse_targets

__all__ = [
    "Metric",
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "get",
    "mean_absolute_error",
    "mean_squared_error",
    "reduce",
    "sparse_categorical_accuracy",
]


def _per_example_mean(values: jax.Array) -> jax.Array:
    values = values.astype(jnp.float32)
    if values.ndim == 1:
        return values
    return jnp.mean(values.reshape(values.shape[0], -1), axis=1)


def binary_accuracy(
    predictions: jax.Array, targets: jax.Array, *, threshold: float = 0.5
) -> jax.Array:
    """Whether ``predictions > threshold`` equals ``targets > threshold``, per example.

    Args:
        predictions: probabilities ``(batch, ...)``.
        targets: 0/1 labels of the same shape (``(batch,)`` fits ``(batch, 1)``).
        threshold: the decision threshold.

    Returns:
        ``(batch,)`` values in ``[0, 1]`` (the mean over an example's outputs).

    Example:
        >>> import jax.numpy as jnp
        >>> binary_accuracy(jnp.array([[0.9], [0.4], [0.6]]), jnp.array([1, 1, 0])).tolist()
        [1.0, 0.0, 0.0]
    """
    t = align("binary_accuracy", predictions, targets)
    hit = (predictions > threshold) == (t.astype(jnp.float32) > threshold)
    return _per_example_mean(hit)


def categorical_accuracy(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Whether the predicted class (argmax) equals the one-hot target's, per example.

    Example:
        >>> import jax.numpy as jnp
        >>> p = jnp.array([[0.1, 0.9], [0.8, 0.2]])
        >>> categorical_accuracy(p, jnp.array([[0.0, 1.0], [0.0, 1.0]])).tolist()
        [1.0, 0.0]
    """
    if tuple(targets.shape) != tuple(predictions.shape):
        raise ValueError(
            f"categorical_accuracy: targets have shape {tuple(targets.shape)} but predictions "
            f"have shape {tuple(predictions.shape)}; one-hot targets must match. For integer "
            "labels use sparse_categorical_accuracy."
        )
    hit = jnp.argmax(predictions, axis=-1) == jnp.argmax(targets, axis=-1)
    return _per_example_mean(hit)


def sparse_categorical_accuracy(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Whether the predicted class (argmax) equals the integer label, per example.

    Example:
        >>> import jax.numpy as jnp
        >>> p = jnp.array([[0.1, 0.9], [0.8, 0.2]])
        >>> sparse_categorical_accuracy(p, jnp.array([1, 1])).tolist()
        [1.0, 0.0]
    """
    labels = sparse_targets("sparse_categorical_accuracy", predictions, targets)
    hit = jnp.argmax(predictions, axis=-1) == labels
    return _per_example_mean(hit)


def accuracy(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Accuracy, its kind resolved from the shapes as Keras does.

    * one output (``(batch,)`` or ``(batch, ..., 1)``): binary, threshold 0.5;
    * several classes and integer labels, or labels without the class axis
      (``(batch, ...)`` or ``(batch, ..., 1)``): sparse categorical;
    * several classes and targets of the predictions' shape: categorical.

    Example:
        >>> import jax.numpy as jnp
        >>> accuracy(jnp.array([[0.2, 0.8]]), jnp.array([1])).tolist()
        [1.0]
    """
    p, t = tuple(predictions.shape), tuple(targets.shape)
    if len(p) == 1 or p[-1] == 1:
        return binary_accuracy(predictions, targets)
    if t == p and not jnp.issubdtype(targets.dtype, jnp.integer):
        return categorical_accuracy(predictions, targets)
    return sparse_categorical_accuracy(predictions, targets)


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Squared error, averaged over each example's outputs: ``(batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> mean_squared_error(jnp.array([[1.0], [3.0]]), jnp.array([0.0, 1.0])).tolist()
        [1.0, 4.0]
    """
    t = align("mean_squared_error", predictions, targets)
    return _per_example_mean((predictions.astype(jnp.float32) - t.astype(jnp.float32)) ** 2)


def mean_absolute_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Absolute error, averaged over each example's outputs: ``(batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> mean_absolute_error(jnp.array([[1.0], [3.0]]), jnp.array([0.0, 1.0])).tolist()
        [1.0, 2.0]
    """
    t = align("mean_absolute_error", predictions, targets)
    return _per_example_mean(jnp.abs(predictions.astype(jnp.float32) - t.astype(jnp.float32)))


class Metric(NamedTuple):
    """A named per-example metric.

    Attributes:
        name: the name shown in logs (the user's spelling, as Keras does).
        fn: ``fn(predictions, targets) -> (batch,)`` values.
    """

    name: str
    fn: Callable[[jax.Array, jax.Array], jax.Array]


def reduce(values: jax.Array, mask: Any = None) -> tuple[jax.Array, jax.Array]:
    """One batch's ``(sum, count)``; add them up over batches and divide at the end.

    Example:
        >>> import jax.numpy as jnp
        >>> total, count = reduce(jnp.array([1.0, 0.0, 1.0]), jnp.array([1, 1, 0]))
        >>> float(total), float(count)
        (1.0, 2.0)
    """
    if mask is None:
        return jnp.sum(values), jnp.asarray(values.shape[0], jnp.float32)
    mask = jnp.asarray(mask).astype(values.dtype)
    return jnp.sum(values * mask), jnp.sum(mask)


_BY_NAME: dict[str, Callable] = {
    "accuracy": accuracy,
    "acc": accuracy,
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mean_squared_error": mean_squared_error,
    "mse": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "mae": mean_absolute_error,
}


def get(metric: str | Callable | Metric, **kwargs: Any) -> Metric:
    """Returns a :class:`Metric` for a Keras name or a per-example function.

    Args:
        metric: a name (``"accuracy"``, ``"binary_accuracy"``,
            ``"categorical_accuracy"``, ``"sparse_categorical_accuracy"``,
            ``"mse"``, ``"mae"``, ...), a :class:`Metric`, or a function
            ``f(predictions, targets) -> (batch,)``.
        **kwargs: options of a named metric, e.g. ``threshold=0.3``.

    Returns:
        The :class:`Metric`, named as given.

    Raises:
        ValueError: for an unknown name; the message lists close matches.

    Example:
        >>> get("accuracy").name
        'accuracy'
    """
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        fn = _BY_NAME.get(metric.lower())
        if fn is None:
            close = difflib.get_close_matches(metric.lower(), _BY_NAME, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"unknown metric {metric!r}.{hint} Known names: {', '.join(sorted(_BY_NAME))}; "
                "or pass a function f(predictions, targets) giving one value per example."
            )
        return Metric(metric, functools.partial(fn, **kwargs) if kwargs else fn)
    if callable(metric):
        return Metric(getattr(metric, "__name__", type(metric).__name__), metric)
    raise TypeError(f"metric must be a name or a function, got {type(metric).__name__}.")
