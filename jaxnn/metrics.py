"""Metrics as pure per-example functions, so that any batching reduces exactly.

A metric gives one value per example, shape ``(batch,)``, float32 (an example with
several outputs or time steps gets the mean over them). Summing ``values * mask`` and
``mask`` over batches, a padded partial last batch included, and dividing once gives
exactly the metric over the whole data set, whatever the batch size::

    totals = Totals.zeros()
    for predictions, targets, mask in batches:
        totals = totals.update(accuracy(predictions, targets), mask)
    totals.result()                      # == the mean over the real examples

:func:`reduce` gives one batch's ``(sum, count)``; :class:`Totals` accumulates them and is
a pytree, so it can be the carry of ``lax.scan``; with nothing counted the result is NaN,
as in training logs. Shapes follow the losses' rules (:func:`jaxnn.losses.align`): never
a silent broadcast, an error naming both shapes.

Metrics that are not means of per-example values (AUC, precision, recall, F-scores,
mean IoU) are :class:`~jaxnn.confusion_metrics.StatefulMetric` values, made in
:mod:`jaxnn.confusion_metrics`; :func:`get` finds them by their Keras names too
(``"auc"``, ``"precision"``, ``"recall"``, ``"f1_score"``, ``"fbeta_score"``,
``"mean_iou"``), so ``Trainer(..., metrics=["auc"])`` works.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import confusion_metrics as cm
from jaxnn._checks import bind_options, lookup
from jaxnn._types import ArrayLike
from jaxnn.losses import (
    Loss,
    PerExampleFn,
    align,
    check_batch,
    compute_dtype,
    function_name,
    per_example_fn,
    per_example_mean,
    predictions_first,
    sparse_targets,
)
from jaxnn.losses import get as get_loss

__all__ = [
    "Metric",
    "Totals",
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "get",
    "mean_absolute_error",
    "mean_squared_error",
    "reduce",
    "sparse_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "top_k_categorical_accuracy",
]

# The regression metrics are the per-example forms of the losses of the same name.
_MSE = get_loss("mean_squared_error").per_example
_MAE = get_loss("mean_absolute_error").per_example


def _mean_of(hits: jax.Array) -> jax.Array:
    return per_example_mean(hits.astype(jnp.float32))


def _binary(name: str, predictions: ArrayLike, targets: ArrayLike, threshold: Any) -> jax.Array:
    predictions = jnp.asarray(predictions)
    t = align(name, predictions, targets)
    dt = compute_dtype(predictions)
    threshold = jnp.asarray(threshold).astype(dt)
    hits = (predictions.astype(dt) > threshold) == (t.astype(jnp.float32) > 0.5)
    return _mean_of(hits)


def _categorical(name: str, predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    check_batch(name, predictions, targets)
    if tuple(targets.shape) != tuple(predictions.shape):
        raise ValueError(
            f"{name}: targets have shape {tuple(targets.shape)} but predictions have shape "
            f"{tuple(predictions.shape)}; one-hot targets must match the predictions' "
            "shape. For integer labels use sparse_categorical_accuracy."
        )
    return _mean_of(jnp.argmax(predictions, axis=-1) == jnp.argmax(targets, axis=-1))


def _sparse(name: str, predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    predictions = jnp.asarray(predictions)
    labels = sparse_targets(name, predictions, targets)
    classes = predictions.shape[-1]
    hits = (jnp.argmax(predictions, axis=-1) == labels).astype(jnp.float32)
    # A traced invalid label (one past the last class) makes its example NaN, not 0.
    return per_example_mean(jnp.where(labels < classes, hits, jnp.nan))


def binary_accuracy(
    predictions: ArrayLike, targets: ArrayLike, *, threshold: ArrayLike = 0.5
) -> jax.Array:
    """Whether ``predictions > threshold`` agrees with the label, per example.

    Args:
        predictions: probabilities ``(batch, ...)`` (for logits, ``threshold=0.0``).
        targets: 0/1 labels of the predictions' shape (``(batch,)`` fits
            ``(batch, 1)``); a label counts as positive when above 0.5.
        threshold: the decision threshold for the predictions.

    Returns:
        ``(batch,)`` values in ``[0, 1]``: the fraction of an example's outputs right.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp
        >>> binary_accuracy(jnp.array([[0.9], [0.4], [0.6]]), jnp.array([1, 1, 0])).tolist()
        [1.0, 0.0, 0.0]
    """
    return _binary("binary_accuracy", predictions, targets, threshold)


def categorical_accuracy(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Whether the predicted class (argmax) is the one-hot target's, per example.

    Args:
        predictions: scores ``(batch, ..., classes)``: probabilities or logits.
        targets: one-hot (or probability) targets of the same shape.

    Returns:
        ``(batch,)`` values in ``[0, 1]``.

    Raises:
        ValueError: if the shapes differ (integer labels need the sparse form).

    Example:
        >>> import jax.numpy as jnp
        >>> p = jnp.array([[0.1, 0.9], [0.8, 0.2]])
        >>> categorical_accuracy(p, jnp.array([[0.0, 1.0], [0.0, 1.0]])).tolist()
        [1.0, 0.0]
    """
    return _categorical("categorical_accuracy", predictions, targets)


def sparse_categorical_accuracy(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Whether the predicted class (argmax) is the integer label, per example.

    Args:
        predictions: scores ``(batch, ..., classes)``: probabilities or logits.
        targets: class labels ``(batch, ...)`` or ``(batch, ..., 1)`` in
            ``[0, classes)``. Concrete labels are checked; a traced invalid label
            (inside ``jit``) makes its example NaN.

    Returns:
        ``(batch,)`` values in ``[0, 1]``.

    Raises:
        ValueError: if the label shape does not fit, or concrete labels are invalid.

    Example:
        >>> import jax.numpy as jnp
        >>> p = jnp.array([[0.1, 0.9], [0.8, 0.2]])
        >>> sparse_categorical_accuracy(p, jnp.array([1, 1])).tolist()
        [1.0, 0.0]
    """
    return _sparse("sparse_categorical_accuracy", predictions, targets)


def accuracy(
    predictions: ArrayLike, targets: ArrayLike, *, threshold: ArrayLike = 0.5
) -> jax.Array:
    """Accuracy, its kind chosen from the shapes as Keras does (statically).

    * one output, predictions ``(batch,)`` or ``(batch, ..., 1)``: binary, with
      ``threshold``;
    * several classes and labels without the class axis, ``(batch, ...)``, or with a
      unit one, ``(batch, ..., 1)``: sparse categorical;
    * several classes and targets of the predictions' shape: categorical (one-hot).

    Args:
        predictions: ``(batch, ...)`` probabilities, or class scores
            ``(batch, ..., classes)``.
        targets: labels, as above.
        threshold: the decision threshold, used in the binary case only.

    Returns:
        ``(batch,)`` values in ``[0, 1]``.

    Raises:
        ValueError: if the targets fit none of the three cases.

    Example:
        >>> import jax.numpy as jnp
        >>> accuracy(jnp.array([[0.2, 0.8]]), jnp.array([1])).tolist()
        [1.0]
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    check_batch("accuracy", predictions, targets)
    p, t = tuple(predictions.shape), tuple(targets.shape)
    if len(p) == 1 or p[-1] == 1:
        return _binary("accuracy", predictions, targets, threshold)
    if len(t) == len(p) - 1 or (len(t) == len(p) and t[-1] == 1):
        return _sparse("accuracy", predictions, targets)
    if t == p:
        return _categorical("accuracy", predictions, targets)
    raise ValueError(
        f"accuracy: targets have shape {t} but predictions have shape {p}; for "
        f"{p[-1]} classes pass one-hot targets {p} or integer labels {p[:-1]} "
        f"(or {(*p[:-1], 1)})."
    )


def _in_top_k(predictions: jax.Array, labels: jax.Array, k: Any) -> jax.Array:
    """Whether each label's score is among the ``k`` highest (ties count in, as Keras's
    ``in_top_k``): fewer than ``k`` classes score strictly higher."""
    classes = predictions.shape[-1]
    safe = jnp.clip(labels, 0, classes - 1).astype(jnp.int32)
    score = jnp.take_along_axis(predictions, safe[..., None], axis=-1)
    higher = jnp.sum(predictions > score, axis=-1)
    return higher < k


def _check_k(name: str, k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name}: k must be an integer >= 1, got {k!r}.")


def top_k_categorical_accuracy(
    predictions: ArrayLike, targets: ArrayLike, *, k: int = 5
) -> jax.Array:
    """Whether the one-hot target's class is among the ``k`` highest scores, per example.

    As Keras's ``top_k_categorical_accuracy``: ties with the ``k``-th score count as
    hits. Equal to scikit-learn's ``top_k_accuracy_score`` when scores do not tie.

    Args:
        predictions: scores ``(batch, ..., classes)``: probabilities or logits.
        targets: one-hot targets of the same shape (the class is their argmax).
        k: how many of the highest scores count, >= 1.

    Returns:
        ``(batch,)`` values in ``[0, 1]``.

    Raises:
        ValueError: if the shapes differ or ``k`` is not a positive integer.

    Example:
        >>> import jax.numpy as jnp
        >>> p = jnp.array([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]])
        >>> t = jnp.array([[0, 1, 0], [1, 0, 0]])
        >>> top_k_categorical_accuracy(p, t, k=2).tolist()
        [1.0, 0.0]
    """
    name = "top_k_categorical_accuracy"
    _check_k(name, k)
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    check_batch(name, predictions, targets)
    if tuple(targets.shape) != tuple(predictions.shape):
        raise ValueError(
            f"{name}: targets have shape {tuple(targets.shape)} but predictions have shape "
            f"{tuple(predictions.shape)}; one-hot targets must match the predictions' "
            "shape. For integer labels use sparse_top_k_categorical_accuracy."
        )
    return _mean_of(_in_top_k(predictions, jnp.argmax(targets, axis=-1), k))


def sparse_top_k_categorical_accuracy(
    predictions: ArrayLike, targets: ArrayLike, *, k: int = 5
) -> jax.Array:
    """Whether the integer label is among the ``k`` highest scores, per example.

    As Keras's ``sparse_top_k_categorical_accuracy`` (ties with the ``k``-th score
    count as hits); equal to scikit-learn's ``top_k_accuracy_score`` without ties.

    Args:
        predictions: scores ``(batch, ..., classes)``.
        targets: class labels ``(batch, ...)`` or ``(batch, ..., 1)`` in
            ``[0, classes)``; a traced invalid label makes its example NaN.
        k: how many of the highest scores count, >= 1.

    Returns:
        ``(batch,)`` values in ``[0, 1]``.

    Raises:
        ValueError: if the label shape does not fit, concrete labels are invalid, or
            ``k`` is not a positive integer.

    Example:
        >>> import jax.numpy as jnp
        >>> p = jnp.array([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]])
        >>> sparse_top_k_categorical_accuracy(p, jnp.array([1, 0]), k=2).tolist()
        [1.0, 0.0]
    """
    name = "sparse_top_k_categorical_accuracy"
    _check_k(name, k)
    predictions = jnp.asarray(predictions)
    labels = sparse_targets(name, predictions, targets)
    hits = _in_top_k(predictions, labels, k).astype(jnp.float32)
    return per_example_mean(jnp.where(labels < predictions.shape[-1], hits, jnp.nan))


def mean_squared_error(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Squared error, averaged over each example's outputs.

    Args:
        predictions: ``(batch, ...)``.
        targets: the predictions' shape (``(batch,)`` fits ``(batch, 1)`` and back).

    Returns:
        ``(batch,)`` values, in at least float32.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp
        >>> mean_squared_error(jnp.array([[1.0], [3.0]]), jnp.array([0.0, 1.0])).tolist()
        [1.0, 4.0]
    """
    return _MSE(predictions, targets)


def mean_absolute_error(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Absolute error, averaged over each example's outputs.

    Args:
        predictions: ``(batch, ...)``.
        targets: the predictions' shape (``(batch,)`` fits ``(batch, 1)`` and back).

    Returns:
        ``(batch,)`` values, in at least float32.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp
        >>> mean_absolute_error(jnp.array([[1.0], [3.0]]), jnp.array([0.0, 1.0])).tolist()
        [1.0, 2.0]
    """
    return _MAE(predictions, targets)


def reduce(values: ArrayLike, mask: ArrayLike | None = None) -> tuple[jax.Array, jax.Array]:
    """One batch's ``(sum, count)``: add them over batches and divide once at the end.

    Args:
        values: ``(batch,)`` per-example values.
        mask: ``(batch,)`` booleans or 0/1 (weights work too): which examples are
            real, e.g. ``arange(batch) < n`` for a padded last batch. ``None``: all.

    Returns:
        ``(sum(values * mask), sum(mask))``, two float32 scalars. A masked-out value
        is dropped even if it is NaN.

    Raises:
        ValueError: if ``values`` or ``mask`` is not ``(batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> total, count = reduce(jnp.array([1.0, 0.0, 1.0]), jnp.array([1, 1, 0]))
        >>> float(total), float(count)
        (1.0, 2.0)
    """
    values = jnp.asarray(values)
    if values.ndim != 1:
        raise ValueError(
            f"reduce: values must be per-example, shape (batch,), got "
            f"{tuple(values.shape)}. Pass a metric's per-example values."
        )
    values = values.astype(jnp.float32)
    if mask is None:
        return jnp.sum(values), jnp.asarray(values.shape[0], jnp.float32)
    mask = jnp.asarray(mask)
    if tuple(mask.shape) != tuple(values.shape):
        raise ValueError(
            f"reduce: mask has shape {tuple(mask.shape)} but values have shape "
            f"{tuple(values.shape)}; pass one mask entry per example."
        )
    mask = mask.astype(jnp.float32)
    kept = jnp.where(mask != 0, values, jnp.zeros_like(values))
    return jnp.sum(kept * mask), jnp.sum(mask)


class Totals(NamedTuple):
    """Running ``(total, count)`` of a metric over batches; a pytree (scan-friendly).

    Attributes:
        total: float32 scalar, the sum of ``values * mask`` so far.
        count: float32 scalar, the sum of ``mask`` so far (exact up to 2**24).

    Example:
        >>> import jax.numpy as jnp
        >>> totals = Totals.zeros()
        >>> totals = totals.update(jnp.array([1.0, 0.0]))
        >>> totals = totals.update(jnp.array([1.0, 5.0]), jnp.array([True, False]))
        >>> float(totals.result())  # (1 + 0 + 1) / 3
        0.6666666865348816
        >>> float(Totals.zeros().result())  # nothing counted: no mean
        nan
    """

    total: jax.Array
    count: jax.Array

    @classmethod
    def zeros(cls) -> Totals:
        """Empty totals; ``result()`` is NaN until something is counted."""
        return cls(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))

    def update(self, values: ArrayLike, mask: ArrayLike | None = None) -> Totals:
        """Adds one batch's ``(batch,)`` values, masked as in :func:`reduce`."""
        total, count = reduce(values, mask)
        return Totals(self.total + total, self.count + count)

    def result(self) -> jax.Array:
        """``total / count``; NaN when nothing was counted, as in training logs.

        NaN, not 0: an empty count has no mean, and a 0 would read as a real (and,
        for an error metric, perfect) value.
        """
        empty = self.count == 0
        safe = jnp.where(empty, jnp.ones_like(self.count), self.count)
        return jnp.where(empty, jnp.full_like(self.total, jnp.nan), self.total / safe)


@dataclasses.dataclass(frozen=True, eq=False)
class Metric:
    """A metric, as :func:`get` returns it: its name, per-example form and options.

    Shaped like :class:`jaxnn.losses.Loss`.

    Attributes:
        name: the name shown in logs: the user's spelling, as Keras does.
        per_example: ``per_example(predictions, targets) -> (batch,)`` float
            values, options already bound. Training sums ``mask * per_example``
            and ``mask`` over batches (:class:`Totals`) and divides once.
        kwargs: the options bound into ``per_example`` (``{"threshold": 0.0}``), a
            read-only mapping, for logs and configs.

    Calling a ``Metric`` gives the mean over the examples ``mask`` keeps,
    ``metric(predictions, targets, mask=None) -> ()`` (NaN when it keeps none). It
    is a frozen dataclass, not a NamedTuple, so that ``jax.jit(metric)`` works and
    a ``Metric`` is never mistaken for a pytree of arrays.

    Example:
        >>> import jax.numpy as jnp
        >>> m = get("acc")
        >>> p, t = jnp.array([[0.7], [0.2]]), jnp.array([1, 1])
        >>> m.name, m.per_example(p, t).tolist(), float(m(p, t))
        ('acc', [1.0, 0.0], 0.5)
    """

    name: str
    per_example: PerExampleFn
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    def __call__(self, predictions: Any, targets: Any, mask: ArrayLike | None = None) -> jax.Array:
        return Totals.zeros().update(self.per_example(predictions, targets), mask).result()


_BY_NAME: dict[str, Callable[..., jax.Array]] = {
    "accuracy": accuracy,
    "acc": accuracy,
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mean_squared_error": mean_squared_error,
    "mse": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "mae": mean_absolute_error,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
}

# Stateful metrics, by Keras's function-style and class names (lower-cased).
_STATEFUL: dict[str, Callable[..., cm.StatefulMetric]] = {
    "auc": cm.AUC,
    "precision": cm.Precision,
    "recall": cm.Recall,
    "f1_score": cm.F1Score,
    "f1score": cm.F1Score,
    "fbeta_score": cm.FBetaScore,
    "fbetascore": cm.FBetaScore,
    "mean_iou": cm.MeanIoU,
    "meaniou": cm.MeanIoU,
}

_BUILTINS = frozenset(
    {
        accuracy,
        binary_accuracy,
        categorical_accuracy,
        sparse_categorical_accuracy,
        mean_squared_error,
        mean_absolute_error,
        top_k_categorical_accuracy,
        sparse_top_k_categorical_accuracy,
    }
)


def _stateful(name: str, kwargs: dict[str, Any]) -> cm.StatefulMetric:
    """The stateful metric called ``name``, made with ``kwargs``; its log name is the
    spelling given unless ``kwargs`` names it."""
    make = _STATEFUL[name.lower()]
    where = f"metric {name!r}"
    bind_options(where, make, kwargs)  # checks the option names
    try:
        return make(**{"name": name, **kwargs})
    except TypeError as e:  # a required option missing, such as num_classes
        raise ValueError(
            f"{where}: {e}. Pass it as an option, e.g. "
            f"nn.metrics.get({name!r}, num_classes=3) for mean_iou."
        ) from None


def get(
    metric: str | Callable | Loss | Metric | cm.StatefulMetric,
    *,
    order: str | None = None,
    **kwargs: Any,
) -> Metric | cm.StatefulMetric:
    """Returns a :class:`Metric` (or a stateful metric) for a Keras name, a function,
    a Loss or a Metric.

    Args:
        metric: one of

            * a name, case-insensitive: ``"accuracy"``/``"acc"``,
              ``"binary_accuracy"``, ``"categorical_accuracy"``,
              ``"sparse_categorical_accuracy"``, ``"mean_squared_error"``/``"mse"``,
              ``"mean_absolute_error"``/``"mae"``, ``"top_k_categorical_accuracy"``,
              ``"sparse_top_k_categorical_accuracy"`` (option ``k=5``); the metric
              keeps the spelling given;
            * the name of a stateful metric, which gives a
              :class:`~jaxnn.confusion_metrics.StatefulMetric` made with
              ``kwargs`` (Keras's options): ``"auc"``, ``"precision"``,
              ``"recall"``, ``"f1_score"``, ``"fbeta_score"``, ``"mean_iou"``
              (needs ``num_classes``), or their Keras class names (``"AUC"``,
              ``"F1Score"``, ``"MeanIoU"``, ...);
            * a :class:`~jaxnn.confusion_metrics.StatefulMetric`, returned as is;
            * a function of this module (``metrics.accuracy``);
            * a :class:`jaxnn.losses.Loss` (its per-example values, e.g. to log a
              second loss);
            * any function of the predictions and the targets, in Keras's order
              ``f(y_true, y_pred)`` or optax's ``f(predictions, targets)`` (read from
              its parameter names, see :func:`jaxnn.losses.predictions_first`),
              returning ``(batch,)`` values, ``(batch, ...)`` values (averaged per
              example) or a scalar mean (see :func:`jaxnn.losses.per_example_fn`);
            * a :class:`Metric`, returned as is (with ``kwargs``, rebound).
        order: for a function of your own whose parameter names do not tell the
            order: ``"keras"`` for ``f(y_true, y_pred)``, ``"optax"`` for
            ``f(predictions, targets)``.
        **kwargs: options, e.g. ``threshold=0.0`` for ``"binary_accuracy"`` or
            ``"accuracy"`` on logits.

    Returns:
        The :class:`Metric` or :class:`~jaxnn.confusion_metrics.StatefulMetric`,
        its options in ``kwargs``.

    Raises:
        ValueError: for an unknown name (the message suggests close matches), an
            option the metric does not take (checked against its keyword parameters
            after ``predictions`` and ``targets``), a function whose parameter names
            do not tell their order (without ``order``), or an ``order`` given with
            a name, a built-in metric, a Loss or a Metric; options given with a
            ``StatefulMetric`` (they go to its constructor); a stateful metric's
            required option missing (``num_classes`` of ``"mean_iou"``).
        TypeError: for a ``metric`` of the wrong type.

    Example:
        >>> import jax.numpy as jnp
        >>> def hits(y_true, y_pred):  # Keras's order, found from the names
        ...     return (y_pred > 0.5) == (y_true > 0.5)
        >>> get(hits).per_example(jnp.array([[0.9], [0.2]]), jnp.array([[1.0], [1.0]])).tolist()
        [1.0, 0.0]
        >>> get("accuracy").name, get("ACC").name
        ('accuracy', 'ACC')
        >>> dict(get("binary_accuracy", threshold=0.0).kwargs)
        {'threshold': 0.0}
        >>> get("AUC", curve="PR").kwargs["curve"], get("mean_iou", num_classes=3).name
        ('PR', 'mean_iou')
        >>> get("acuracy")
        Traceback (most recent call last):
        ...
        ValueError: unknown metric 'acuracy'. Did you mean 'accuracy', ...
    """
    frozen = MappingProxyType(dict(kwargs))
    builtin = any(metric is b for b in _BUILTINS)
    stateful = (str, Loss, Metric, cm.StatefulMetric)
    if order is not None and (isinstance(metric, stateful) or builtin):
        given = metric if isinstance(metric, str) else getattr(metric, "name", None)
        raise ValueError(
            f"metric {given or function_name(metric)!r}: order is for a function of your "
            "own (its argument order); a name, a built-in metric, a Loss or a Metric "
            "already takes (predictions, targets). Drop order."
        )
    if isinstance(metric, cm.StatefulMetric):
        if kwargs:
            raise ValueError(
                f"metric {metric.name!r}: a stateful metric takes its options when it "
                f"is made, not here; got {sorted(kwargs)}. Make it with them, e.g. "
                "nn.metrics.get('auc', curve='PR') or nn.AUC(curve='PR')."
            )
        return metric
    if isinstance(metric, str) and metric.lower() in _STATEFUL:
        return _stateful(metric, dict(kwargs))
    if isinstance(metric, Metric):
        if not kwargs:
            return metric
        where = f"metric {metric.name!r}"
        per_example = bind_options(where, metric.per_example, kwargs, positional=2)
        return Metric(metric.name, per_example, MappingProxyType({**metric.kwargs, **kwargs}))
    if isinstance(metric, Loss):
        loss = get_loss(metric, **kwargs)
        return Metric(loss.name, loss.per_example, loss.kwargs)
    if isinstance(metric, str):
        # Stateful names are in the table only for the suggestions of a misspelling.
        known = {**_BY_NAME, **_STATEFUL}
        fn = lookup("metric", metric, known, "pass a function f(predictions, targets)")
        return Metric(metric, bind_options(f"metric {metric!r}", fn, kwargs, positional=2), frozen)
    if callable(metric):
        name = function_name(metric)
        fn = bind_options(f"metric {name!r}", metric, kwargs, positional=2)
        if builtin:
            return Metric(name, fn, frozen)
        fn = predictions_first(fn, name, "metric", order)
        return Metric(name, per_example_fn(fn, name, "metric"), frozen)
    raise TypeError(
        f"metric must be a name such as 'accuracy', a function f(predictions, targets), a "
        f"Loss, a Metric or a StatefulMetric, got {type(metric).__name__}."
    )
