"""Losses as pure functions of ``(predictions, targets)`` (optax's order, not Keras's).

Every loss is computed per example first, the mean over all non-batch axes (as Keras
averages over the last axis), and then reduced to the weighted mean over examples::

    loss = sum(weights * per_example) / sum(weights)        # 0 when sum(weights) == 0

so a 0/1 weight vector gives exactly the loss on the examples with weight 1, as if the
others had been dropped. Keras divides by the batch size instead; the two agree when all
weights are 1.

Two forms of each loss:

* the function, ``binary_crossentropy(predictions, targets, weights=None, *,
  from_logits=False) -> ()``, the weighted mean;
* :func:`get` ``(name_or_fn, **options) -> Loss``, whose ``per_example(predictions,
  targets) -> (batch,)`` gives the values that training sums over batches, so that a
  partial last batch is weighted exactly; calling the :class:`Loss` gives the mean.

Shapes are checked at trace time and targets are never broadcast silently: labels
``(batch,)`` against predictions ``(batch, 1)`` (or the reverse) gain or lose that unit
axis, as in Keras; any other difference raises a ``ValueError`` naming both shapes.
Targets of any integer or float dtype are cast; the result is computed in at least
float32, so bfloat16 predictions give accurate logarithms and sums.

A function of your own may take its arguments in either order: Keras's ``fn(y_true,
y_pred)`` or optax's ``fn(predictions, targets)``. :func:`get` reads the order from the
names of its first two parameters (:func:`predictions_first`); when the names do not
say, it asks for ``order="keras"`` or ``order="optax"``.

The building blocks of these rules are public, for :mod:`jaxnn.metrics` and for custom
losses: :func:`check_batch`, :func:`align` and :func:`sparse_targets` check and shape
targets; :func:`compute_dtype`, :func:`per_example_mean` and :func:`weighted_mean`
compute and reduce; :func:`per_example_fn` and :func:`function_name` turn a user's
function into a named per-example one.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._checks import bind_options, lookup
from jaxnn._types import ArrayLike

__all__ = [
    "EPSILON",
    "Loss",
    "PerExampleFn",
    "TargetCheck",
    "align",
    "binary_crossentropy",
    "categorical_crossentropy",
    "check_batch",
    "compute_dtype",
    "function_name",
    "get",
    "huber",
    "mean_absolute_error",
    "mean_squared_error",
    "per_example_fn",
    "per_example_mean",
    "predictions_first",
    "sparse_categorical_crossentropy",
    "sparse_targets",
    "weighted",
    "weighted_mean",
    "LOSS_WEIGHTS",
]

EPSILON = 1e-7
"""Keras's clipping constant: probabilities are clipped to ``[EPSILON, 1 - EPSILON]``."""

PerExampleFn = Callable[[Any, Any], jax.Array]
"""``fn(predictions, targets) -> (batch,)``."""


# ----------------------------------------------------------------------- helpers


def _as_array(x: ArrayLike) -> jax.Array:
    if isinstance(x, jax.Array):
        return x
    if isinstance(x, dict):
        raise ValueError(
            "a built-in loss or metric takes one array of predictions and one of targets, "
            f"got a dict with keys {sorted(map(str, x))}. For a model with several outputs "
            "or targets, pass a function f(predictions, targets) over those dicts."
        )
    return jnp.asarray(x)


def compute_dtype(x: jax.Array) -> jnp.dtype:
    """The dtype a loss or metric is computed in: ``x``'s float dtype, at least float32.

    Args:
        x: the predictions (anything with a ``dtype``).

    Returns:
        ``x.dtype`` for float32 and wider floats; float32 for narrower floats
        (bfloat16, float16), integers and booleans.

    Example:
        >>> import jax.numpy as jnp
        >>> compute_dtype(jnp.zeros(2, jnp.bfloat16)), compute_dtype(jnp.zeros(2, jnp.int32))
        (dtype('float32'), dtype('float32'))
    """
    dtype = jnp.dtype(x.dtype)
    if not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return dtype


def check_batch(name: str, predictions: ArrayLike, targets: ArrayLike) -> None:
    """Checks that predictions and targets have a leading batch axis of the same size.

    Args:
        name: the loss or metric, for the message.
        predictions: ``(batch, ...)``.
        targets: ``(batch, ...)``.

    Raises:
        ValueError: if either is a scalar, or the batch sizes differ.

    Example:
        >>> import jax.numpy as jnp
        >>> check_batch("mse", jnp.zeros((4, 1)), jnp.zeros(4))  # fine: silent
        >>> check_batch("mse", jnp.zeros((4, 1)), jnp.zeros(3))
        Traceback (most recent call last):
        ...
        ValueError: mse: predictions have 4 examples but targets have 3 (shapes (4, 1) and \
(3,)); pass one target per example.
    """
    predictions, targets = _as_array(predictions), _as_array(targets)
    if predictions.ndim == 0 or targets.ndim == 0:
        raise ValueError(
            f"{name}: predictions and targets need a leading batch axis, got shapes "
            f"{tuple(predictions.shape)} and {tuple(targets.shape)}. Pass arrays of shape "
            "(batch, ...)."
        )
    if predictions.shape[0] != targets.shape[0]:
        raise ValueError(
            f"{name}: predictions have {predictions.shape[0]} examples but targets have "
            f"{targets.shape[0]} (shapes {tuple(predictions.shape)} and "
            f"{tuple(targets.shape)}); pass one target per example."
        )


def align(name: str, predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Returns ``targets`` with the predictions' shape, or raises; never broadcasts.

    A missing or extra trailing axis of size 1 is added or removed, as Keras does:
    labels ``(100,)`` fit predictions ``(100, 1)``, and labels ``(100, 1)`` fit
    predictions ``(100,)``. Any other difference is an error.

    Args:
        name: the loss or metric, for the message.
        predictions: ``(batch, ...)``.
        targets: ``(batch, ...)``.

    Returns:
        The targets, reshaped to ``predictions.shape`` (dtype unchanged).

    Raises:
        ValueError: when the shapes differ in any other way, or the batch sizes differ.

    Example:
        >>> import jax.numpy as jnp
        >>> align("mse", jnp.zeros((100, 1)), jnp.zeros(100)).shape
        (100, 1)
    """
    predictions, targets = _as_array(predictions), _as_array(targets)
    check_batch(name, predictions, targets)
    p, t = tuple(predictions.shape), tuple(targets.shape)
    if t == p:
        return targets
    if len(t) == len(p) - 1 and p[-1] == 1 and t == p[:-1]:
        return targets[..., None]
    if len(t) == len(p) + 1 and t[-1] == 1 and t[:-1] == p:
        return targets[..., 0]
    if p[-1] == 1:
        allowed = f"{p} or {p[:-1]}"
    elif len(p) == 1:
        allowed = f"{p} or {(*p, 1)}"
    else:
        allowed = f"{p}"
    raise ValueError(
        f"{name}: targets have shape {t} but predictions have shape {p}; targets must "
        f"match the predictions' shape, {allowed}. Check the labels, or the number of "
        "outputs of the last layer."
    )


def _is_concrete(x: jax.Array) -> bool:
    return not isinstance(x, jax.core.Tracer) and getattr(x, "is_fully_addressable", True)


def sparse_targets(name: str, predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Integer class labels of shape ``predictions.shape[:-1]``, or a clear error.

    Labels may be ``(batch, ...)`` or ``(batch, ..., 1)``, of any integer dtype, or a
    float dtype holding whole numbers. Concrete labels are checked on the host: a
    label outside ``[0, classes)`` or a fraction raises. Traced labels (inside ``jit``)
    cannot be checked there; an invalid one is returned as ``classes``, one past the
    last class, which callers turn into NaN so that the mistake shows in the result.

    Args:
        name: the loss or metric, for the message.
        predictions: ``(batch, ..., classes)``.
        targets: ``(batch, ...)`` or ``(batch, ..., 1)``.

    Returns:
        ``int32`` labels of shape ``predictions.shape[:-1]``.

    Raises:
        ValueError: for a label shape that does not fit the predictions, and for
            concrete labels that are out of range or not whole numbers.

    Example:
        >>> import jax.numpy as jnp
        >>> sparse_targets("x", jnp.zeros((4, 3)), jnp.array([[0], [1], [2], [1]])).tolist()
        [0, 1, 2, 1]
    """
    predictions, targets = _as_array(predictions), _as_array(targets)
    check_batch(name, predictions, targets)
    p, t = tuple(predictions.shape), tuple(targets.shape)
    if len(p) < 2:
        raise ValueError(
            f"{name}: predictions need a class axis, shape (batch, ..., classes), got {p}. "
            "For a single output use binary labels and a binary loss or metric."
        )
    if t == (*p[:-1], 1):
        targets = targets[..., 0]
    elif t != p[:-1]:
        raise ValueError(
            f"{name}: targets have shape {t} but predictions have shape {p}; integer class "
            f"labels must have shape {p[:-1]} (or {(*p[:-1], 1)}). For one-hot targets use "
            f"the categorical form (categorical_crossentropy, categorical_accuracy)."
        )
    classes = p[-1]
    if jnp.issubdtype(targets.dtype, jnp.floating):
        as_float = targets.astype(jnp.float32)
        whole = jnp.isfinite(as_float) & (jnp.floor(as_float) == as_float)
        valid = whole & (as_float >= 0) & (as_float < classes)
        labels = jnp.where(valid, as_float, 0.0).astype(jnp.int32)
    elif jnp.issubdtype(targets.dtype, jnp.integer) or targets.dtype == jnp.bool_:
        labels = targets.astype(jnp.int32)
        valid = (labels >= 0) & (labels < classes)
    else:
        raise ValueError(
            f"{name}: targets must be integer class labels, got dtype {targets.dtype}."
        )
    if _is_concrete(targets) and targets.size:
        _check_labels(name, np.asarray(targets), classes)
    return jnp.where(valid, labels, classes)


def _check_labels(name: str, host: np.ndarray, classes: int) -> None:
    """Refuses concrete class labels that are fractions or outside ``[0, classes)``."""
    host = host.astype(np.float64)
    whole = np.isfinite(host) & (np.floor(host) == host)
    if not np.all(whole):
        bad = host[~whole].ravel()[0]
        raise ValueError(
            f"{name}: targets must be integer class labels, got the value {bad}. For "
            "one-hot or probability targets use the categorical form "
            "(categorical_crossentropy, categorical_accuracy)."
        )
    lo, hi = int(host.min()), int(host.max())
    if lo < 0 or hi >= classes:
        raise ValueError(
            f"{name}: class labels must lie in [0, {classes}) for predictions with "
            f"{classes} classes, got labels from {lo} to {hi}. Map the labels to "
            f"0..{classes - 1}, or give the last layer more outputs."
        )


def per_example_mean(values: ArrayLike) -> jax.Array:
    """``(batch, ...) -> (batch,)``: the mean over all non-batch axes.

    Args:
        values: ``(batch, ...)`` values, at least one axis.

    Returns:
        ``(batch,)`` values, in ``values``' dtype; ``values`` itself when it is
        ``(batch,)`` already.

    Example:
        >>> import jax.numpy as jnp
        >>> per_example_mean(jnp.array([[1.0, 3.0], [0.0, 1.0]])).tolist()
        [2.0, 0.5]
    """
    values = _as_array(values)
    if values.ndim == 1:
        return values
    return jnp.mean(values.reshape(values.shape[0], math.prod(values.shape[1:])), axis=1)


def weighted_mean(per_example: jax.Array, weights: ArrayLike | None = None) -> jax.Array:
    """``sum(weights * per_example) / sum(weights)``, and 0 (not NaN) when that sum is 0.

    Args:
        per_example: ``(batch,)`` values.
        weights: ``(batch,)`` weights, or ``None`` for all ones. A 0/1 mask gives
            exactly the mean over the examples with weight 1.

    Returns:
        A scalar in the values' dtype, at least float32.

    Raises:
        ValueError: if ``weights`` is not ``(batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(weighted_mean(jnp.array([1.0, 3.0]), jnp.array([1.0, 0.0])))
        1.0
    """
    per_example = _as_array(per_example)
    per_example = per_example.astype(compute_dtype(per_example))
    if weights is None:
        batch = per_example.shape[0]
        if batch == 0:
            return jnp.zeros((), per_example.dtype)
        return jnp.sum(per_example) / batch
    weights = _as_array(weights)
    if tuple(weights.shape) != tuple(per_example.shape):
        raise ValueError(
            f"weights have shape {tuple(weights.shape)} but there are "
            f"{per_example.shape[0]} examples; pass one weight per example, shape "
            f"{tuple(per_example.shape)}."
        )
    weights = weights.astype(per_example.dtype)
    total = jnp.sum(weights)
    empty = total == 0
    # The safe denominator keeps the gradient finite when every weight is 0.
    safe = jnp.where(empty, jnp.ones_like(total), total)
    return jnp.where(empty, jnp.zeros_like(total), jnp.sum(weights * per_example) / safe)


def _log_probabilities(predictions: jax.Array, from_logits: bool) -> jax.Array:
    """Log-probabilities over the last axis, in at least float32."""
    z = predictions.astype(compute_dtype(predictions))
    if from_logits:
        return jax.nn.log_softmax(z, axis=-1)
    # As Keras: renormalise to sum 1, then clip away from 0 and 1.
    p = z / jnp.sum(z, axis=-1, keepdims=True)
    return jnp.log(jnp.clip(p, EPSILON, 1.0 - EPSILON))


def _check_from_logits(name: str, from_logits: Any) -> None:
    if not isinstance(from_logits, (bool, np.bool_)):
        raise TypeError(
            f"{name}: from_logits must be True or False, got {from_logits!r}. It is a "
            "Python setting, fixed when the loss is traced."
        )


# ------------------------------------------------------------- per-example losses


def _mse(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    predictions = _as_array(predictions)
    t = align("mean_squared_error", predictions, targets)
    dt = compute_dtype(predictions)
    return per_example_mean((predictions.astype(dt) - t.astype(dt)) ** 2)


def _mae(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    predictions = _as_array(predictions)
    t = align("mean_absolute_error", predictions, targets)
    dt = compute_dtype(predictions)
    return per_example_mean(jnp.abs(predictions.astype(dt) - t.astype(dt)))


def _huber(predictions: ArrayLike, targets: ArrayLike, *, delta: ArrayLike = 1.0) -> jax.Array:
    if isinstance(delta, (int, float)) and not (delta > 0 and math.isfinite(delta)):
        raise ValueError(f"huber: delta must be a positive number, got {delta!r}.")
    predictions = _as_array(predictions)
    t = align("huber", predictions, targets)
    dt = compute_dtype(predictions)
    delta = jnp.asarray(delta).astype(dt)
    err = jnp.abs(predictions.astype(dt) - t.astype(dt))
    quadratic = 0.5 * err**2
    linear = delta * (err - 0.5 * delta)
    return per_example_mean(jnp.where(err <= delta, quadratic, linear))


def _bce(predictions: ArrayLike, targets: ArrayLike, *, from_logits: bool = False) -> jax.Array:
    _check_from_logits("binary_crossentropy", from_logits)
    predictions = _as_array(predictions)
    t = align("binary_crossentropy", predictions, targets)
    dt = compute_dtype(predictions)
    z, t = predictions.astype(dt), t.astype(dt)
    if from_logits:
        # -(t log sigmoid(z) + (1 - t) log sigmoid(-z)) = softplus(z) - t z, stable for any z.
        values = jax.nn.softplus(z) - t * z
    else:
        p = jnp.clip(z, EPSILON, 1.0 - EPSILON)
        values = -(t * jnp.log(p) + (1.0 - t) * jnp.log1p(-p))
    return per_example_mean(values)


def _cce(predictions: ArrayLike, targets: ArrayLike, *, from_logits: bool = False) -> jax.Array:
    _check_from_logits("categorical_crossentropy", from_logits)
    predictions, targets = _as_array(predictions), _as_array(targets)
    check_batch("categorical_crossentropy", predictions, targets)
    if tuple(targets.shape) != tuple(predictions.shape):
        raise ValueError(
            f"categorical_crossentropy: targets have shape {tuple(targets.shape)} but "
            f"predictions have shape {tuple(predictions.shape)}; targets must be one-hot "
            "(or probabilities) of the predictions' shape. For integer class labels use "
            "sparse_categorical_crossentropy."
        )
    log_p = _log_probabilities(predictions, from_logits)
    t = targets.astype(log_p.dtype)
    # A class of target 0 adds nothing, even where its logit is -inf (masked out), as
    # in the sparse form: 0 * -inf would be NaN.
    return per_example_mean(-jnp.sum(jnp.where(t == 0, 0.0, t * log_p), axis=-1))


def _scce(predictions: ArrayLike, targets: ArrayLike, *, from_logits: bool = False) -> jax.Array:
    _check_from_logits("sparse_categorical_crossentropy", from_logits)
    predictions = _as_array(predictions)
    labels = sparse_targets("sparse_categorical_crossentropy", predictions, targets)
    log_p = _log_probabilities(predictions, from_logits)
    # An invalid label is `classes`, past the end, which "fill" turns into NaN.
    picked = jnp.take_along_axis(log_p, labels[..., None], axis=-1, mode="fill", fill_value=jnp.nan)
    return per_example_mean(-picked[..., 0])


# ------------------------------------------------------- target checks at the door

TargetCheck = Callable[[str, Any, Any], None]
"""``check(where, targets, predictions)``: raises a ``ValueError`` for targets the loss
is not defined on. ``targets`` are concrete arrays; ``predictions`` is the model's
output spec (anything with a ``shape``), for the number of classes."""


def _host_targets(targets: Any) -> np.ndarray | None:
    """Concrete targets on the host, or ``None`` where they cannot be read there
    (traced, or split over processes) or are empty."""
    if not isinstance(targets, (np.ndarray, jax.Array)) or not _is_concrete(targets):
        return None
    host = np.asarray(targets)
    return host if host.size and host.dtype != object else None


def _check_binary_targets(where: str, targets: Any, predictions: Any) -> None:
    del predictions  # any shape: the range is the same
    host = _host_targets(targets)
    if host is None:
        return
    lo, hi = host.min(), host.max()
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{where}: binary_crossentropy needs targets in [0, 1] (0/1 labels or "
            f"probabilities), got values from {lo} to {hi}; outside [0, 1] the loss "
            "goes negative and training runs away. Map the labels to 0 and 1 (e.g. "
            "y == positive_class); for several classes use "
            "sparse_categorical_crossentropy."
        )


def _check_categorical_targets(where: str, targets: Any, predictions: Any) -> None:
    del predictions
    host = _host_targets(targets)
    if host is None:
        return
    lo = host.min()
    if lo < 0:
        raise ValueError(
            f"{where}: categorical_crossentropy needs one-hot or probability targets "
            f"(every value >= 0), got a smallest value of {lo}; a negative target makes "
            "the loss negative. For integer class labels use "
            "sparse_categorical_crossentropy."
        )


def _check_sparse_targets(where: str, targets: Any, predictions: Any) -> None:
    shape = tuple(getattr(predictions, "shape", ()))
    host = _host_targets(targets)
    if host is None or len(shape) < 2:
        return  # without a class axis, the loss's own shape check says what is wrong
    _check_labels(f"{where}: sparse_categorical_crossentropy", host, shape[-1])


_TARGET_CHECKS: dict[Callable, TargetCheck] = {
    _bce: _check_binary_targets,
    _cce: _check_categorical_targets,
    _scce: _check_sparse_targets,
}


# ------------------------------------------------------------------- public API


def mean_squared_error(
    predictions: ArrayLike, targets: ArrayLike, weights: ArrayLike | None = None
) -> jax.Array:
    """Mean squared error, ``mean((predictions - targets)^2)``.

    Args:
        predictions: ``(batch, ...)``.
        targets: the predictions' shape; ``(batch,)`` fits ``(batch, 1)`` and back.
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
    predictions: ArrayLike, targets: ArrayLike, weights: ArrayLike | None = None
) -> jax.Array:
    """Mean absolute error, ``mean(|predictions - targets|)``.

    Args:
        predictions: ``(batch, ...)``.
        targets: the predictions' shape; ``(batch,)`` fits ``(batch, 1)`` and back.
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
    predictions: ArrayLike,
    targets: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    delta: ArrayLike = 1.0,
) -> jax.Array:
    """Huber loss: ``0.5 e^2`` where ``|e| <= delta``, else ``delta (|e| - delta / 2)``.

    Args:
        predictions: ``(batch, ...)``.
        targets: the predictions' shape; ``(batch,)`` fits ``(batch, 1)`` and back.
        weights: optional ``(batch,)`` per-example weights.
        delta: where the loss turns from quadratic to linear; positive.

    Returns:
        The weighted mean over examples, a scalar.

    Raises:
        ValueError: if the shapes do not match, or ``delta`` is not positive.

    Example:
        >>> import jax.numpy as jnp
        >>> float(huber(jnp.array([[0.5], [3.0]]), jnp.array([[0.0], [0.0]])))
        1.3125
    """
    return weighted_mean(_huber(predictions, targets, delta=delta), weights)


def binary_crossentropy(
    predictions: ArrayLike,
    targets: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    from_logits: bool = False,
) -> jax.Array:
    """Binary cross-entropy, ``-(t log p + (1 - t) log(1 - p))``.

    Args:
        predictions: probabilities ``(batch, ...)``, clipped to ``[1e-7, 1 - 1e-7]``
            as Keras does; or logits with ``from_logits=True``, computed stably as
            ``softplus(z) - t z`` (prefer this: no clipping, exact gradients).
        targets: 0/1 (or soft) labels of the predictions' shape; ``(batch,)`` labels
            fit ``(batch, 1)`` predictions.
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
    return weighted_mean(_bce(predictions, targets, from_logits=from_logits), weights)


def categorical_crossentropy(
    predictions: ArrayLike,
    targets: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    from_logits: bool = False,
) -> jax.Array:
    """Categorical cross-entropy against one-hot (or probability) targets.

    Args:
        predictions: probabilities ``(batch, ..., classes)``, renormalised to sum 1
            and clipped to ``[1e-7, 1 - 1e-7]`` as Keras does; or logits with
            ``from_logits=True`` (``log_softmax``, stable).
        targets: one-hot targets of the predictions' shape.
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
    return weighted_mean(_cce(predictions, targets, from_logits=from_logits), weights)


def sparse_categorical_crossentropy(
    predictions: ArrayLike,
    targets: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    from_logits: bool = False,
) -> jax.Array:
    """Categorical cross-entropy against integer class labels.

    Args:
        predictions: probabilities ``(batch, ..., classes)`` (renormalised and
            clipped like :func:`categorical_crossentropy`), or logits with
            ``from_logits=True``.
        targets: class labels ``(batch, ...)`` or ``(batch, ..., 1)``, integers or
            whole-number floats in ``[0, classes)``. Concrete labels are checked; a
            traced invalid label (inside ``jit``) makes its example's loss NaN.
        weights: optional ``(batch,)`` per-example weights.
        from_logits: whether ``predictions`` are logits.

    Returns:
        The weighted mean over examples, a scalar.

    Raises:
        ValueError: if the label shape does not fit the predictions, or concrete
            labels are out of range or fractional.

    Example:
        >>> import jax.numpy as jnp
        >>> p = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
        >>> round(float(sparse_categorical_crossentropy(p, jnp.array([0, 1]))), 4)
        0.2899
    """
    return weighted_mean(_scce(predictions, targets, from_logits=from_logits), weights)


@dataclasses.dataclass(frozen=True, eq=False)
class Loss:
    """A loss, as :func:`get` returns it: its name, per-example form and options.

    Attributes:
        name: the name shown in logs (``"mse"``, ``"binary_crossentropy"``, ...).
        per_example: ``per_example(predictions, targets) -> (batch,)``, options
            already bound. Training sums ``weight * per_example`` and ``weight`` over
            batches and divides once, which weights a partial last batch exactly.
        kwargs: the options bound into ``per_example`` (``{"from_logits": True}``), a
            read-only mapping, for logs and configs.
        check_targets: ``check_targets(where, targets, predictions)``, or ``None``:
            refuses concrete targets outside the loss's domain (labels outside
            ``[0, classes)`` for ``sparse_categorical_crossentropy``, values outside
            ``[0, 1]`` for ``binary_crossentropy``, negative values for
            ``categorical_crossentropy``); ``predictions`` is the model's output spec.
            ``fit`` and ``evaluate`` run it once on the whole data, before any
            compiled step, because inside one a bad target can only turn into NaN.
        weights: ``None``, or for a weighted sum with traced weights
            (:func:`weighted` with ``traced=True``) each term's starting weight; then
            ``per_example(predictions, targets, weights)`` also takes the weights
            (without them, the starting ones), and training reads them from the
            model state's ``"loss_weights"`` entry (see
            :func:`jaxnn.train.programs.with_loss_weights`).

    Calling a ``Loss`` gives the weighted mean,
    ``loss(predictions, targets, weights=None) -> ()``, as the loss functions do.
    It is a frozen dataclass, not a NamedTuple, so that ``jax.jit(loss)`` works and
    a ``Loss`` is never mistaken for a pytree of arrays.

    Example:
        >>> import jax.numpy as jnp
        >>> loss = get("mse")
        >>> p, t = jnp.array([[1.0], [3.0]]), jnp.array([0.0, 1.0])
        >>> loss.per_example(p, t).tolist(), float(loss(p, t, jnp.array([1.0, 0.0])))
        ([1.0, 4.0], 1.0)
    """

    name: str
    per_example: PerExampleFn
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    check_targets: TargetCheck | None = None
    weights: Mapping[str, float] | None = None

    def __call__(
        self, predictions: Any, targets: Any, weights: ArrayLike | None = None
    ) -> jax.Array:
        return weighted_mean(self.per_example(predictions, targets), weights)


_PER_EXAMPLE: dict[str, Callable[..., jax.Array]] = {
    "mean_squared_error": _mse,
    "mse": _mse,
    "mean_absolute_error": _mae,
    "mae": _mae,
    "huber": _huber,
    "binary_crossentropy": _bce,
    "bce": _bce,
    "categorical_crossentropy": _cce,
    "sparse_categorical_crossentropy": _scce,
}

_OF_FUNCTION: dict[Callable, Callable[..., jax.Array]] = {
    mean_squared_error: _mse,
    mean_absolute_error: _mae,
    huber: _huber,
    binary_crossentropy: _bce,
    categorical_crossentropy: _cce,
    sparse_categorical_crossentropy: _scce,
}


def _leading_size(name: str, kind: str, predictions: Any, targets: Any) -> int:
    sizes = set()
    for what, tree in (("predictions", predictions), ("targets", targets)):
        for leaf in jax.tree.leaves(tree):
            if np.ndim(leaf) == 0:
                raise ValueError(
                    f"{kind} {name!r}: {what} need a leading batch axis, got a scalar."
                )
            sizes.add(np.shape(leaf)[0])
    if len(sizes) != 1:
        raise ValueError(
            f"{kind} {name!r}: predictions and targets have different numbers of "
            f"examples {sorted(sizes)}; pass one target per example."
        )
    return sizes.pop()


def per_example_fn(fn: Callable[[Any, Any], Any], name: str, kind: str = "loss") -> PerExampleFn:
    """Turns a user's ``f(predictions, targets)`` into one giving ``(batch,)`` values.

    What ``f`` returns decides how, found with ``jax.eval_shape`` (no computation):

    * ``(batch,)``: used as is;
    * ``(batch, ...)``: the mean over the non-batch axes, like the built-in losses
      (so an elementwise loss such as ``optax.l2_loss`` works);
    * a scalar: taken to be a mean over examples, so it is applied to each example
      as a batch of one (``jax.vmap``). A loss that couples examples (a contrastive
      loss) has no per-example form and cannot be weighted exactly.

    Predictions and targets may be pytrees; their leaves share the batch axis.

    Args:
        fn: the function.
        name: its name, for messages.
        kind: ``"loss"`` or ``"metric"``, for messages.

    Returns:
        ``per_example(predictions, targets) -> (batch,)``.

    Raises:
        ValueError: (when called) if ``f`` returns any other shape.

    Example:
        >>> import jax.numpy as jnp
        >>> f = per_example_fn(lambda p, t: jnp.mean((p - t) ** 2), "my_mse")
        >>> f(jnp.array([[1.0], [3.0]]), jnp.zeros((2, 1))).tolist()
        [1.0, 9.0]
    """

    def per_example(predictions: Any, targets: Any) -> jax.Array:
        batch = _leading_size(name, kind, predictions, targets)
        out = jax.eval_shape(fn, predictions, targets)
        shape = getattr(out, "shape", None)
        if shape == ():

            def one(p: Any, t: Any) -> jax.Array:
                first = functools.partial(jax.tree.map, lambda a: a[None])
                return jnp.asarray(fn(first(p), first(t)))

            return jax.vmap(one)(predictions, targets)
        if shape is not None and len(shape) >= 1 and shape[0] == batch:
            return per_example_mean(_as_array(fn(predictions, targets)))
        got = tuple(shape) if shape is not None else type(out).__name__
        raise ValueError(
            f"{kind} {name!r} returned {got} for {batch} examples; a {kind} function must "
            f"return one value per example, shape ({batch},) (or ({batch}, ...), averaged "
            "per example, or a scalar mean over the batch)."
        )

    return per_example


_PREDICTION_NAMES = frozenset(
    {
        "y_pred", "pred", "preds", "prediction", "predictions", "p", "y_hat", "yhat",
        "logits", "logit", "log_predictions", "predictor_outputs", "outputs", "output",
        "out", "scores", "probs", "probabilities", "input", "inputs",
    }
)  # fmt: skip
"""Parameter names that mark the predictions (Keras's, optax's, PyTorch's words)."""
_TARGET_NAMES = frozenset(
    {"y_true", "true", "y", "t", "targets", "target", "labels", "label", "truth", "gold"}
)
"""Parameter names that mark the targets."""
_ORDERS = ("optax", "keras")
"""The argument orders of a user's function: ``"optax"`` is ``fn(predictions, targets)``,
``"keras"`` is ``fn(y_true, y_pred)``."""


def _first_two(fn: Callable) -> tuple[tuple[str, ...], str]:
    """The names of ``fn``'s first two positional parameters, and its signature as text
    (``"(which Python cannot read)"`` for a callable without one)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return (), "(which Python cannot read)"
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = tuple(p.name for p in signature.parameters.values() if p.kind in positional)
    return names[:2], str(signature)


def predictions_first(
    fn: Callable[[Any, Any], Any], name: str, kind: str = "loss", order: str | None = None
) -> Callable[[Any, Any], Any]:
    """``fn`` as a function of ``(predictions, targets)``, whichever order it takes.

    Keras calls a loss or metric ``fn(y_true, y_pred)``; optax and jaxnn call it
    ``fn(predictions, targets)``. Passing one where the other is expected trains on
    a wrong loss without an error, so the order is read from the names of ``fn``'s
    first two parameters: targets are ``y_true``, ``targets``/``target``,
    ``labels``/``label``, ``y``, ``t``, ...; predictions are ``y_pred``,
    ``predictions``, ``logits``, ``outputs``, ``y_hat``, ``p``, ``input``, ...
    When the names say neither (``(a, b)``), declare the order.

    Args:
        fn: the user's function of two arrays (or pytrees).
        name: its name, for the message.
        kind: ``"loss"`` or ``"metric"``, for the message.
        order: ``None`` to read it from the names; ``"keras"`` for
            ``fn(y_true, y_pred)``; ``"optax"`` for ``fn(predictions, targets)``.

    Returns:
        ``fn`` itself for the optax order, else ``lambda predictions, targets:
        fn(targets, predictions)``.

    Raises:
        ValueError: when the names do not tell the order and ``order`` is ``None``,
            or for an ``order`` that is not ``"keras"`` or ``"optax"``.

    Example:
        >>> import jax.numpy as jnp
        >>> def keras_style(y_true, y_pred):
        ...     return y_pred - y_true
        >>> predictions_first(keras_style, "keras_style")(jnp.ones(2), jnp.zeros(2)).tolist()
        [1.0, 1.0]
        >>> predictions_first(lambda a, b: a - b, "lambda")
        Traceback (most recent call last):
        ...
        ValueError: loss 'lambda': cannot tell the order of its arguments from their names \
(a, b). Keras calls a loss fn(y_true, y_pred), optax and jaxnn fn(predictions, targets). \
Name them so (y_true/y_pred, labels/logits, targets/predictions), or declare the order: \
nn.losses.get(fn, order='keras') for fn(y_true, y_pred), order='optax' for \
fn(predictions, targets).
    """
    if order is None:
        names, signature = _first_two(fn)
        first, second = (*names, "", "")[:2]
        if first in _PREDICTION_NAMES and second in _TARGET_NAMES:
            order = "optax"
        elif first in _TARGET_NAMES and second in _PREDICTION_NAMES:
            order = "keras"
        else:
            module = "losses" if kind == "loss" else "metrics"
            raise ValueError(
                f"{kind} {name!r}: cannot tell the order of its arguments from their names "
                f"{signature}. Keras calls a {kind} fn(y_true, y_pred), optax and jaxnn "
                "fn(predictions, targets). Name them so (y_true/y_pred, labels/logits, "
                f"targets/predictions), or declare the order: nn.{module}.get(fn, "
                "order='keras') for fn(y_true, y_pred), order='optax' for "
                "fn(predictions, targets)."
            )
    if order not in _ORDERS:
        raise ValueError(
            f"{kind} {name!r}: order must be 'keras' (fn(y_true, y_pred)) or 'optax' "
            f"(fn(predictions, targets)), got {order!r}."
        )
    if order == "optax":
        return fn

    def swapped(predictions: Any, targets: Any) -> Any:
        return fn(targets, predictions)

    return swapped


def function_name(fn: Callable) -> str:
    """The name a loss or metric made from ``fn`` has in logs.

    Args:
        fn: a function, a ``functools.partial`` of one, or a callable object.

    Returns:
        Its ``__name__`` (that of the wrapped function for a partial, of the type
        for an object without one), and ``"lambda"`` for a lambda.

    Example:
        >>> import functools
        >>> function_name(huber), function_name(functools.partial(huber, delta=2.0))
        ('huber', 'huber')
        >>> function_name(lambda p, t: p - t)
        'lambda'
    """
    base = fn.func if isinstance(fn, functools.partial) else fn
    name = getattr(base, "__name__", type(base).__name__)
    return "lambda" if name == "<lambda>" else name


def get(loss: str | Callable | Loss, *, order: str | None = None, **kwargs: Any) -> Loss:
    """Returns a :class:`Loss` for a Keras name, a loss function, or a :class:`Loss`.

    Args:
        loss: one of

            * a name, case-insensitive: ``"mean_squared_error"``/``"mse"``,
              ``"mean_absolute_error"``/``"mae"``, ``"huber"``,
              ``"binary_crossentropy"``/``"bce"``, ``"categorical_crossentropy"``,
              ``"sparse_categorical_crossentropy"``;
            * a function of this module (``losses.huber``), used per example;
            * any function of the predictions and the targets, in Keras's order
              ``f(y_true, y_pred)`` or optax's ``f(predictions, targets)`` (read from
              its parameter names, see :func:`predictions_first`), returning
              ``(batch,)`` values, ``(batch, ...)`` values (averaged per example) or a
              scalar mean (see :func:`per_example_fn`);
            * a :class:`Loss`, returned as is (with ``kwargs``, rebound).
        order: for a function of your own whose parameter names do not tell the
            order: ``"keras"`` for ``f(y_true, y_pred)``, ``"optax"`` for
            ``f(predictions, targets)``.
        **kwargs: options of the loss, e.g. ``from_logits=True`` or ``delta=2.0``.

    Returns:
        The :class:`Loss`, named by its lower-cased name or the function's name.

    Raises:
        ValueError: for an unknown name (the message suggests close matches), an
            option the loss does not take (checked against its keyword parameters
            after ``predictions`` and ``targets``), a function whose parameter names
            do not tell their order (without ``order``), or an ``order`` given with
            a name or a built-in loss.
        TypeError: for a ``loss`` of the wrong type.

    Example:
        >>> import jax.numpy as jnp
        >>> def bce(y_true, y_pred):  # Keras's order, found from the names
        ...     return -(y_true * jnp.log(y_pred) + (1 - y_true) * jnp.log(1 - y_pred))
        >>> round(float(get(bce).per_example(jnp.array([[0.9]]), jnp.array([[1.0]]))[0]), 4)
        0.1054
        >>> get(lambda a, b: (a - b) ** 2, order="optax").name
        'lambda'
        >>> loss = get("binary_crossentropy", from_logits=True)
        >>> loss.name, dict(loss.kwargs)
        ('binary_crossentropy', {'from_logits': True})
        >>> loss.per_example(jnp.zeros((3, 1)), jnp.ones((3, 1))).shape
        (3,)
        >>> get("huber", delt=2.0)
        Traceback (most recent call last):
        ...
        ValueError: loss 'huber' has no option 'delt'; its options are ['delta']. Did you \
mean 'delta'?
    """
    frozen = MappingProxyType(dict(kwargs))
    builtin = next((v for k, v in _OF_FUNCTION.items() if k is loss), None)
    if order is not None and (isinstance(loss, (str, Loss)) or builtin is not None):
        raise ValueError(
            f"loss {loss if isinstance(loss, str) else function_name(loss)!r}: order is "
            "for a function of your own (its argument order); a name, a built-in loss or "
            "a Loss already takes (predictions, targets). Drop order."
        )
    if isinstance(loss, Loss):
        if not kwargs:
            return loss
        per_example = bind_options(f"loss {loss.name!r}", loss.per_example, kwargs, positional=2)
        merged = MappingProxyType({**loss.kwargs, **kwargs})
        return Loss(loss.name, per_example, merged, loss.check_targets)
    if isinstance(loss, str):
        fn = lookup("loss", loss, _PER_EXAMPLE, "pass a function f(predictions, targets)")
        name = loss.lower()
        per_example = bind_options(f"loss {name!r}", fn, kwargs, positional=2)
        return Loss(name, per_example, frozen, _TARGET_CHECKS.get(fn))
    if callable(loss):
        name = function_name(loss)
        where = f"loss {name!r}"
        if builtin is not None:
            per_example = bind_options(where, builtin, kwargs, positional=2)
            return Loss(name, per_example, frozen, _TARGET_CHECKS.get(builtin))
        fn = predictions_first(bind_options(where, loss, kwargs, positional=2), name, "loss", order)
        return Loss(name, per_example_fn(fn, name, "loss"), frozen)
    raise TypeError(
        f"loss must be a name such as 'mse', a function f(predictions, targets) or a Loss, "
        f"got {type(loss).__name__}."
    )


# ------------------------------------------------------------ weighted sums of losses

LOSS_WEIGHTS = "loss_weights"
"""The model-state entry that holds a weighted loss's traced weights."""


def _route(key: str, predictions: Any, targets: Any) -> tuple[Any, Any]:
    """A term's inputs: the entries ``key`` of dict predictions and targets (Keras's
    ``loss={"output": ...}``), else the whole predictions and targets."""
    if isinstance(predictions, dict) and key in predictions:
        if not (isinstance(targets, dict) and key in targets):
            got = sorted(map(str, targets)) if isinstance(targets, dict) else type(targets)
            raise ValueError(
                f"loss 'weighted': term {key!r} is the model's output {key!r}, so the "
                f"targets must be a dict with an entry {key!r} too, got {got}."
            )
        return predictions[key], targets[key]
    return predictions, targets


def weighted(
    terms: Mapping[str, str | Callable | Loss],
    weights: Mapping[str, float] | None = None,
    *,
    traced: bool = False,
) -> Loss:
    """A weighted sum of losses: Keras's ``loss_weights``, or the terms of one loss.

    Per example, the value is ``sum(weights[k] * terms[k](predictions, targets))``.
    A term named after an entry of dict predictions (a model with several outputs,
    ``{"label": ..., "box": ...}``) sees that entry of the predictions and of the
    targets, as Keras's ``compile(loss={...}, loss_weights={...})`` does; any other
    term sees the whole predictions and targets (``{"mse": "mse", "mae": "mae"}``
    on one output).

    With ``traced=True`` the weights are traced: a :class:`~jaxnn.Trainer` holds
    them in the model state (``state.model_state["loss_weights"]``, one float32
    scalar per term, see :func:`jaxnn.train.programs.with_loss_weights`), so that
    changing them never recompiles and each member of a population can have its own
    (``jaxnn.population.set_hyperparams(states, **{"loss_weights/box": ...})``).
    ``evaluate`` and the validation loss use each member's own weights too.

    Args:
        terms: term name to a loss: a name (``"mse"``), a function or a
            :class:`Loss`, as :func:`get` takes them.
        weights: term name to its weight (a finite number); a term left out weighs
            1, as in Keras.
        traced: hold the weights in the model state rather than in the program.

    Returns:
        A :class:`Loss` named ``"weighted"``; with ``traced=True`` its ``weights``
        are the starting weights.

    Raises:
        ValueError: for no terms, a weight for no term (listing the terms), a
            weight that is not a finite number, or (when called) dict predictions
            with a term's entry and targets without it.
        TypeError: for ``terms`` or ``weights`` that are not mappings, or a term
            that :func:`get` refuses.

    Example:
        >>> import jax.numpy as jnp
        >>> loss = weighted({"mse": "mse", "mae": "mae"}, {"mae": 0.5})
        >>> loss.per_example(jnp.array([[2.0]]), jnp.array([[0.0]])).tolist()  # 4 + 0.5·2
        [5.0]
        >>> two = weighted({"a": "mse", "b": "mae"}, {"b": 0.1}, traced=True)
        >>> p = {"a": jnp.ones((1, 1)), "b": jnp.ones((1, 1))}
        >>> t = {"a": jnp.zeros((1, 1)), "b": jnp.zeros((1, 1))}
        >>> [round(float(v), 6) for v in two.per_example(p, t)]  # the starting weights
        [1.1]
        >>> two.per_example(p, t, {"a": jnp.array(0.0), "b": jnp.array(2.0)}).tolist()
        [2.0]
    """
    where = "loss 'weighted'"
    if not isinstance(terms, Mapping) or not terms:
        raise (TypeError if not isinstance(terms, Mapping) else ValueError)(
            f"{where}: terms must be a non-empty dict from name to loss, e.g. "
            f"{{'label': 'sparse_categorical_crossentropy', 'box': 'mse'}}; got {terms!r}."
        )
    if weights is None:
        weights = {}
    if not isinstance(weights, Mapping):
        raise TypeError(
            f"{where}: weights must be a dict from term name to weight, e.g. {{'box': 0.5}}; "
            f"got {type(weights).__name__}."
        )
    unknown = sorted(map(str, set(weights) - set(terms)))
    if unknown:
        raise ValueError(
            f"{where}: weights has entries {unknown} that are no term; the terms are "
            f"{sorted(map(str, terms))}."
        )
    losses = {str(k): get(v) for k, v in terms.items()}
    start: dict[str, float] = {}
    for k in losses:
        w = weights.get(k, 1.0)
        number = isinstance(w, (int, float, np.number)) and not isinstance(w, bool)
        if not number or not math.isfinite(float(w)):
            raise ValueError(f"{where}: the weight of {k!r} must be a finite number, got {w!r}.")
        start[k] = float(w)
    if not isinstance(traced, bool):
        raise TypeError(f"{where}: traced must be True or False, got {traced!r}.")

    def per_example(
        predictions: Any, targets: Any, weights: Mapping[str, Any] | None = None
    ) -> jax.Array:
        w = start if weights is None else weights
        total = None
        for k, loss in losses.items():
            values = loss.per_example(*_route(k, predictions, targets))
            values = values.astype(compute_dtype(values)) * jnp.asarray(w[k], values.dtype)
            total = values if total is None else total + values
        return total

    def check_targets(where: str, targets: Any, predictions: Any) -> None:
        for k, loss in losses.items():
            if loss.check_targets is not None:
                p, t = (
                    (predictions[k], targets[k])
                    if isinstance(predictions, dict)
                    and k in predictions
                    and isinstance(targets, dict)
                    and k in targets
                    else (predictions, targets)
                )
                loss.check_targets(f"{where} (term {k!r})", t, p)

    return Loss(
        "weighted",
        per_example,
        MappingProxyType({"terms": tuple(losses), "weights": MappingProxyType(start)}),
        check_targets,
        MappingProxyType(dict(start)) if traced else None,
    )
