"""Stateful, mergeable metrics: AUC, precision, recall, F-scores and mean IoU.

These metrics are not means of per-example values, so :mod:`jaxnn.metrics`'s sums cannot
express them. Each is a :class:`StatefulMetric`, four pure functions over a pytree of
arrays (in the manner of optax's ``GradientTransformation``)::

    state = metric.init()
    for predictions, targets, weight in batches:
        state = metric.update(state, predictions, targets, weight)
    metric.result(state)                  # the metric over every batch

``merge(a, b)`` combines two states: the states of two halves of the data merge to the
state of the whole, so a metric works over batches (inside the compiled epoch), over
devices (under ``jit`` with a sharded batch nothing is needed; inside ``shard_map`` a
counting state merges with ``jax.lax.psum``) and per population member (``vmap`` keeps a
leading member axis on every leaf). The counting metrics' states are sums of counts and
merge by adding; the exact AUC keeps every score and merges by concatenating.

Counts are float32 sums of example weights: exact for integer weights up to 2**24
(about 16.7 million) counted examples per state.

Keras's names and arguments: :func:`AUC` (``num_thresholds=200``, ``curve``,
``summation_method``, ``thresholds``, ``multi_label``, ``label_weights``,
``from_logits``), :func:`Precision` and :func:`Recall` (``thresholds=0.5``, ``top_k``,
``class_id``), :func:`F1Score` and :func:`FBetaScore` (``average``, ``beta``,
``threshold``), :func:`MeanIoU` (``num_classes``, ``ignore_class``, ``sparse_y_true``,
``sparse_y_pred``). ``jaxnn.metrics.get("auc")`` and ``Trainer(..., metrics=["auc"])``
find them by those names.

In training logs a result of one value is one log (``"auc"``); a result with several
values (``F1Score(average=None)`` over several classes, or several ``thresholds``) is one
log per value, ``"f1_score_0"``, ``"f1_score_1"``, ....
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._types import ArrayLike
from jaxnn.losses import align, check_batch

__all__ = [
    "AUC",
    "F1Score",
    "FBetaScore",
    "MeanIoU",
    "MetricState",
    "Precision",
    "Recall",
    "StatefulMetric",
    "finish_state",
    "merge_sums",
    "sum_batches",
]

# Keras's epsilon: the end thresholds of AUC sit this far outside [0, 1].
_EPSILON = 1e-7
# Keras's stand-in for minus infinity: the threshold of a top-k precision or recall.
_NEG_INF = -1e10


@dataclasses.dataclass(frozen=True, eq=False)
class StatefulMetric:
    """A metric over a whole data set, as four pure functions over its state.

    A state is a pytree of arrays. ``update`` and ``merge`` are pure, so they can be
    jitted, vmapped, scanned and sharded; a ``StatefulMetric`` itself is a frozen
    dataclass compared by identity (not a pytree), so ``jax.jit(metric.result)`` works.

    Attributes:
        name: the name shown in logs.
        init: ``init() -> state``, the state of no data.
        update: ``update(state, predictions, targets, weight=None) -> state``: adds a
            batch; ``weight`` is ``(batch,)`` (``None``: all 1); an example of weight 0
            is not counted.
        merge: ``merge(a, b) -> state``: the state of the data of ``a`` and of ``b``.
            Leaves may carry leading axes (a population's member axis).
        result: ``result(state) -> value``: a scalar, or one value per class or
            threshold, float32.
        merge_stacked: ``merge_stacked(states) -> state``: merges states stacked on a
            leading axis, as ``lax.scan`` stacks one state per batch.
        kwargs: the options it was made with, a read-only mapping, for logs and configs.

    Calling a ``StatefulMetric`` gives its value on one batch:
    ``metric(predictions, targets, weight=None)`` is
    ``result(update(init(), predictions, targets, weight))``.

    Example:
        >>> import jax.numpy as jnp
        >>> m = Precision()
        >>> state = m.update(m.init(), jnp.array([0.9, 0.8]), jnp.array([1, 0]))
        >>> state = m.update(state, jnp.array([0.7, 0.1]), jnp.array([1, 1]))
        >>> float(m.result(state))  # 2 of the 3 predicted positives are positive
        0.6666666865348816
    """

    name: str
    init: Callable[[], Any]
    update: Callable[..., Any]
    merge: Callable[[Any, Any], Any]
    result: Callable[[Any], jax.Array]
    merge_stacked: Callable[[Any], Any]
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    def __call__(
        self, predictions: ArrayLike, targets: ArrayLike, weight: ArrayLike | None = None
    ) -> jax.Array:
        return self.result(self.update(self.init(), predictions, targets, weight))


@jax.tree_util.register_pytree_node_class
class MetricState:
    """A :class:`StatefulMetric`'s state in a training program's log sums.

    A pytree whose leaves are the state's arrays and whose static part is the metric,
    so that ``scan``, ``vmap``, ``cond`` and ``jax.tree.map`` carry it like any sum,
    and :func:`finish_state` knows how to turn it into the metric's value.

    Attributes:
        value: the state (a pytree of arrays).
        metric: the :class:`StatefulMetric` it belongs to.

    Example:
        >>> import jax.numpy as jnp
        >>> m = Recall()
        >>> s = MetricState(m.update(m.init(), jnp.array([0.9, 0.2]), jnp.array([1, 1])), m)
        >>> {k: float(v) for k, v in finish_state("recall", s).items()}
        {'recall': 0.5}
    """

    def __init__(self, value: Any, metric: StatefulMetric):
        self.value = value
        self.metric = metric

    def tree_flatten(self) -> tuple[tuple[Any], StatefulMetric]:
        return (self.value,), self.metric

    @classmethod
    def tree_unflatten(cls, metric: StatefulMetric, children: tuple[Any]) -> MetricState:
        return cls(children[0], metric)

    def __repr__(self) -> str:
        return f"MetricState({self.metric.name!r}, {self.value!r})"


def _is_state(x: Any) -> bool:
    return isinstance(x, MetricState)


def sum_batches(sums: Mapping[str, Any]) -> dict[str, Any]:
    """Merges log sums stacked on a leading axis (one entry per batch) into one.

    Plain sums add up over that axis; a :class:`MetricState` merges with its
    metric's ``merge_stacked``.

    Args:
        sums: a dict of ``(steps, ...)`` arrays and ``MetricState`` values, as a
            ``lax.scan`` over batches stacks them.

    Returns:
        The dict with the leading axis merged away.

    Example:
        >>> import jax.numpy as jnp
        >>> m = Recall()
        >>> s = MetricState({"tp": jnp.ones((3, 1)), "fn": jnp.zeros((3, 1))}, m)
        >>> out = sum_batches({"loss": jnp.ones(3), "recall": s})
        >>> float(out["loss"]), out["recall"].value["tp"].tolist()
        (3.0, [3.0])
    """
    out = {}
    for k, v in sums.items():
        if _is_state(v):
            out[k] = MetricState(v.metric.merge_stacked(v.value), v.metric)
        else:
            out[k] = jnp.sum(v, axis=0)
    return out


def merge_sums(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The log sums of the data of ``a`` and of ``b`` (e.g. two streamed chunks).

    Plain sums add; a :class:`MetricState` merges with its metric's ``merge``.

    Args:
        a: log sums, a dict of arrays and ``MetricState`` values.
        b: log sums of the same names.

    Returns:
        The merged dict.

    Example:
        >>> import jax.numpy as jnp
        >>> out = merge_sums({"loss": jnp.array(1.0)}, {"loss": jnp.array(2.0)})
        >>> float(out["loss"])
        3.0
    """
    out = {}
    for k, v in a.items():
        if _is_state(v):
            out[k] = MetricState(v.metric.merge(v.value, b[k].value), v.metric)
        else:
            out[k] = jnp.add(v, b[k])
    return out


def finish_state(name: str, state: MetricState) -> dict[str, jax.Array]:
    """A metric state's logs: ``{name: value}``, or one log per value of a vector.

    Args:
        name: the log name.
        state: the :class:`MetricState`.

    Returns:
        ``{name: scalar}`` when the result has one value; else
        ``{f"{name}_{i}": scalar}`` for each value, in order.

    Example:
        >>> import jax.numpy as jnp
        >>> m = F1Score(threshold=0.5)
        >>> s = MetricState(m.update(m.init(), jnp.eye(2), jnp.eye(2)), m)
        >>> sorted(finish_state("f1_score", s))
        ['f1_score_0', 'f1_score_1']
    """
    value = jnp.asarray(state.metric.result(state.value))
    if value.size == 1:
        return {name: value.reshape(())}
    flat = value.reshape(-1)
    return {f"{name}_{i}": flat[i] for i in range(flat.shape[0])}


# -- shared pieces


def _add(a: Any, b: Any) -> Any:
    return jax.tree.map(jnp.add, a, b)


def _add_counts(state: Any, counts: Any) -> Any:
    """``state + counts``, a state of scalars (``init()`` before the class count is
    known) broadcast to the counts' shape."""
    return jax.tree.map(lambda s, c: jnp.broadcast_to(s, c.shape) + c, state, counts)


def _sum_stacked(states: Any) -> Any:
    return jax.tree.map(lambda s: jnp.sum(s, axis=0), states)


def _divide(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a / b``, and 0 where ``b`` is 0 (Keras's ``divide_no_nan``)."""
    safe = jnp.where(b == 0, jnp.ones_like(b), b)
    return jnp.where(b == 0, jnp.zeros_like(a), a / safe)


def _weight(name: str, weight: ArrayLike | None, batch: int) -> jax.Array:
    """``(batch,)`` float32 weights (all 1 for ``None``), checked."""
    if weight is None:
        return jnp.ones((batch,), jnp.float32)
    weight = jnp.asarray(weight)
    if tuple(weight.shape) != (batch,):
        raise ValueError(
            f"{name}: weight has shape {tuple(weight.shape)} but the batch has {batch} "
            f"examples; pass one weight per example, shape ({batch},)."
        )
    return weight.astype(jnp.float32)


def _per_element(weight: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Example weights ``(batch,)`` broadcast over an example's elements ``shape``."""
    return jnp.broadcast_to(weight.reshape(-1, *([1] * (len(shape) - 1))), shape)


def _thresholds(name: str, thresholds: Any, default: float) -> np.ndarray:
    values = np.atleast_1d(np.asarray(default if thresholds is None else thresholds, float))
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(
            f"{name}: thresholds must be a finite number or a non-empty list of them, got "
            f"{thresholds!r}."
        )
    return values.astype(np.float32)


def _check_float(name: str, what: str, value: Any, low: float, high: float) -> float:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not ok or not low < float(value) <= high:
        raise ValueError(f"{name}: {what} must be a number in ({low}, {high}], got {value!r}.")
    return float(value)


def _check_int(name: str, what: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: {what} must be an integer >= {low}, got {value!r}.")
    return int(value)


def _make(
    name: str,
    kwargs: Mapping[str, Any],
    *,
    init: Callable,
    update: Callable,
    result: Callable,
    merge: Callable = _add,
    merge_stacked: Callable = _sum_stacked,
) -> StatefulMetric:
    """A :class:`StatefulMetric`; states that are sums of counts merge by adding
    (the default ``merge`` and ``merge_stacked``)."""
    return StatefulMetric(
        name=name,
        kwargs=MappingProxyType(dict(kwargs)),
        init=init,
        update=update,
        merge=merge,
        result=result,
        merge_stacked=merge_stacked,
    )


# -- precision and recall at thresholds


def _keep_top_k(p: jax.Array, k: int) -> jax.Array:
    """Keeps the ``k`` largest values along the last axis; the rest become -1e10."""
    _, idx = jax.lax.top_k(p, k)
    kept = jnp.any(jax.nn.one_hot(idx, p.shape[-1], dtype=jnp.bool_), axis=-2)
    return jnp.where(kept, p, jnp.full_like(p, _NEG_INF))


def _threshold_counts(
    name: str,
    predictions: ArrayLike,
    targets: ArrayLike,
    weight: ArrayLike | None,
    thresholds: jax.Array,
    top_k: int | None,
    class_id: int | None,
) -> dict[str, jax.Array]:
    """Weighted ``tp``, ``fp``, ``fn``, ``tn`` at each threshold, ``(thresholds,)``."""
    p = jnp.asarray(predictions)
    t = align(name, p, targets)
    w = _per_element(_weight(name, weight, p.shape[0]), tuple(p.shape))
    p = p.astype(jnp.float32)
    positive = t != 0  # Keras casts the targets to bool
    if top_k is not None:
        p = _keep_top_k(p, top_k)
    if class_id is not None:
        classes = p.shape[-1]
        if not 0 <= class_id < classes:
            raise ValueError(
                f"{name}: class_id={class_id} but the predictions have {classes} classes "
                f"(shape {tuple(p.shape)}); pass a class_id in [0, {classes})."
            )
        p, positive, w = p[..., class_id], positive[..., class_id], w[..., class_id]
    above = p.reshape(-1, 1) > thresholds.reshape(1, -1)
    positive = positive.reshape(-1, 1)
    w = w.reshape(-1, 1)

    def count(cond: jax.Array) -> jax.Array:
        return jnp.sum(jnp.where(cond, w, jnp.zeros_like(w)), axis=0)

    return {
        "tp": count(above & positive),
        "fp": count(above & ~positive),
        "fn": count(~above & positive),
    }


def _precision_or_recall(
    kind: str, thresholds: Any, top_k: int | None, class_id: int | None, name: str | None
) -> StatefulMetric:
    name = name or kind
    if top_k is not None:
        top_k = _check_int(name, "top_k", top_k, 1)
    if class_id is not None:
        class_id = _check_int(name, "class_id", class_id, 0)
    values = _thresholds(name, thresholds, 0.5 if top_k is None else _NEG_INF)
    other = "fp" if kind == "precision" else "fn"

    def init() -> dict[str, jax.Array]:
        zeros = jnp.zeros(values.shape, jnp.float32)
        return {"tp": zeros, other: zeros}

    def update(
        state: Any, predictions: ArrayLike, targets: ArrayLike, weight: ArrayLike | None = None
    ) -> Any:
        counts = _threshold_counts(
            name, predictions, targets, weight, jnp.asarray(values), top_k, class_id
        )
        return _add(state, {"tp": counts["tp"], other: counts[other]})

    def result(state: Any) -> jax.Array:
        value = _divide(state["tp"], state["tp"] + state[other])
        return value[..., 0] if values.size == 1 else value

    kwargs = {"thresholds": thresholds, "top_k": top_k, "class_id": class_id}
    return _make(
        name,
        kwargs,
        init=init,
        update=update,
        result=result,
    )


def Precision(
    thresholds: float | Sequence[float] | None = None,
    top_k: int | None = None,
    class_id: int | None = None,
    name: str | None = None,
) -> StatefulMetric:
    """Precision, ``tp / (tp + fp)``, as Keras's ``keras.metrics.Precision``.

    An element is predicted positive when its prediction is ``> threshold``; a target
    counts as positive when it is not 0. Every element of ``(batch, ...)`` counts
    (multi-label outputs are flattened). With no predicted positive the value is 0,
    as in Keras (scikit-learn's ``zero_division=0``).

    Args:
        thresholds: a threshold or a list of them (then one value per threshold).
            ``None``: 0.5, or, with ``top_k``, -1e10 (every top-k prediction is
            positive). For logits, pass 0.0.
        top_k: count only each example's ``top_k`` highest predictions (along the
            last axis) as predicted positive.
        class_id: count only this class (an index into the last axis).
        name: the log name; ``None``: ``"precision"``.

    Returns:
        A :class:`StatefulMetric`. Its state is ``{"tp", "fp"}``, each
        ``(thresholds,)``; the result is a scalar for one threshold.

    Raises:
        ValueError: for a non-finite threshold, a ``top_k`` below 1 or a negative
            ``class_id``; when updating, for shapes that do not fit or a ``class_id``
            past the last class.

    Example:
        >>> import jax.numpy as jnp
        >>> float(Precision()(jnp.array([1.0, 0.0, 1.0, 1.0]), jnp.array([0, 1, 1, 1])))
        0.6666666865348816
    """
    return _precision_or_recall("precision", thresholds, top_k, class_id, name)


def Recall(
    thresholds: float | Sequence[float] | None = None,
    top_k: int | None = None,
    class_id: int | None = None,
    name: str | None = None,
) -> StatefulMetric:
    """Recall, ``tp / (tp + fn)``, as Keras's ``keras.metrics.Recall``.

    Positives as in :func:`Precision`. With no positive target the value is 0, as in
    Keras.

    Args:
        thresholds: a threshold or a list of them; ``None``: 0.5 (with ``top_k``,
            -1e10).
        top_k: count only each example's ``top_k`` highest predictions as positive.
        class_id: count only this class (an index into the last axis).
        name: the log name; ``None``: ``"recall"``.

    Returns:
        A :class:`StatefulMetric`; its state is ``{"tp", "fn"}``, each ``(thresholds,)``.

    Raises:
        ValueError: as for :func:`Precision`.

    Example:
        >>> import jax.numpy as jnp
        >>> float(Recall()(jnp.array([1.0, 0.0, 1.0, 1.0]), jnp.array([0, 1, 1, 1])))
        0.6666666865348816
    """
    return _precision_or_recall("recall", thresholds, top_k, class_id, name)


# -- AUC


def _auc_from_counts(c: dict[str, jax.Array], curve: str, summation_method: str) -> jax.Array:
    """Keras's Riemann sum over thresholds (axis 0) of ``tp, fp, tn, fn``."""
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    if curve == "PR" and summation_method == "interpolation":
        # Davis & Goadrich's interpolation: tp and tp + fp vary linearly between
        # thresholds, precision does not (Keras's closed form).
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _divide(dtp, jnp.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = jnp.where(both, _divide(p[:-1], jnp.maximum(p[1:], 0)), jnp.ones_like(p[1:]))
        return jnp.sum(
            _divide(slope * (dtp + intercept * jnp.log(ratio)), jnp.maximum(tp[1:] + fn[1:], 0)),
            axis=0,
        )
    recall = _divide(tp, tp + fn)
    if curve == "ROC":
        x, y = _divide(fp, fp + tn), recall
    else:
        x, y = recall, _divide(tp, tp + fp)
    if summation_method == "interpolation":
        heights = (y[:-1] + y[1:]) / 2
    elif summation_method == "minoring":
        heights = jnp.minimum(y[:-1], y[1:])
    else:
        heights = jnp.maximum(y[:-1], y[1:])
    return jnp.sum((x[:-1] - x[1:]) * heights, axis=0)


def _exact_auc(scores: jax.Array, positive: jax.Array, weight: jax.Array, curve: str) -> jax.Array:
    """The exact ROC AUC (trapezoids, ties half) or average precision, ``(n,)`` inputs.

    With sorted scores, ``P(> s)`` and ``P(>= s)`` (the positive weight above a score)
    come from a cumulative sum and a binary search, so each example's share is direct:
    ROC AUC is ``sum over negatives of w * (P(> s) + P(= s) / 2) / (P * N)`` (the
    trapezoidal area, ties counted half), and average precision is ``sum over
    positives of w * P(>= s) / W(>= s) / P`` (scikit-learn's step sum).
    """
    scores = jnp.where(weight != 0, scores, jnp.zeros_like(scores))
    pos_w = jnp.where(positive, weight, jnp.zeros_like(weight))
    neg_w = weight - pos_w
    order = jnp.argsort(scores)
    ordered = scores[order]
    zero = jnp.zeros((1,), jnp.float32)
    cum_pos = jnp.concatenate([zero, jnp.cumsum(pos_w[order])])
    cum_all = jnp.concatenate([zero, jnp.cumsum(weight[order])])
    below = jnp.searchsorted(ordered, scores, side="left")  # count of scores < s
    upto = jnp.searchsorted(ordered, scores, side="right")  # count of scores <= s
    total_pos, total_neg = cum_pos[-1], cum_all[-1] - cum_pos[-1]
    undefined = (total_pos == 0) | (total_neg == 0)
    if curve == "ROC":
        greater = total_pos - cum_pos[upto]
        equal = cum_pos[upto] - cum_pos[below]
        area = jnp.sum(neg_w * (greater + equal / 2))
        value = area / jnp.where(undefined, 1.0, total_pos * total_neg)
    else:
        pos_at_least = total_pos - cum_pos[below]
        all_at_least = cum_all[-1] - cum_all[below]
        precision = _divide(pos_at_least, all_at_least)
        value = jnp.sum(pos_w * precision) / jnp.where(total_pos == 0, 1.0, total_pos)
        undefined = total_pos == 0
    return jnp.where(undefined, jnp.nan, value)


def _label_average(by_label: jax.Array, label_weights: np.ndarray | None) -> jax.Array:
    if label_weights is None:
        return jnp.mean(by_label)
    lw = jnp.asarray(label_weights)
    return _divide(jnp.sum(by_label * lw), jnp.sum(lw))


def AUC(
    num_thresholds: int = 200,
    curve: str = "ROC",
    summation_method: str = "interpolation",
    name: str | None = None,
    thresholds: Sequence[float] | None = None,
    multi_label: bool = False,
    num_labels: int | None = None,
    label_weights: Sequence[float] | None = None,
    from_logits: bool = False,
    exact: bool = False,
) -> StatefulMetric:
    """Area under the ROC or precision-recall curve, as Keras's ``keras.metrics.AUC``.

    **Thresholded (Keras's, the default).** The confusion counts ``tp, fp, tn, fn``
    at ``num_thresholds`` thresholds are summed over batches: ``-1e-7``, then
    ``i / (num_thresholds - 1)`` for ``i = 1 .. num_thresholds - 2``, then
    ``1 + 1e-7`` (or ``-1e-7``, the sorted ``thresholds``, ``1 + 1e-7``).
    Predictions are clipped to ``[0, 1]`` and an element is positive above a
    threshold (``>``). The area is Keras's Riemann sum: for ROC, FPR against TPR
    with ``"interpolation"`` (trapezoids), ``"minoring"`` or ``"majoring"``
    heights; for PR with ``"interpolation"``, Davis & Goadrich's interpolation
    (Keras's closed form). Its error against the exact area shrinks with finer
    thresholds; it is exact when no two scores of opposite labels fall between the
    same pair of thresholds.

    **Exact** (``exact=True``, a jaxnn option): the state keeps every counted
    example's score, label and weight, and merges by concatenating, so it grows
    with the data (one float32 triple per element, per epoch; for a stream, per
    pass). The result sorts them: for ROC, the trapezoidal area with tied scores
    counted half, equal to scikit-learn's ``roc_auc_score``; for PR, the average
    precision, equal to scikit-learn's ``average_precision_score`` (a step sum, not
    an interpolation). ``summation_method`` and ``thresholds`` do not apply. It is
    NaN when the data has no positive (or, for ROC, no negative).

    ``multi_label=False`` flattens multi-output predictions into one set of scores;
    ``True`` computes one AUC per label (the last axis of ``(batch, labels)``
    predictions) and averages them, weighted by ``label_weights`` if given.

    Args:
        num_thresholds: the number of thresholds, > 1.
        curve: ``"ROC"`` or ``"PR"``.
        summation_method: ``"interpolation"``, ``"minoring"`` or ``"majoring"``.
        name: the log name; ``None``: ``"auc"``.
        thresholds: thresholds in ``[0, 1]`` to use instead of ``num_thresholds``.
        multi_label: one AUC per label, averaged (see above).
        num_labels: the number of labels with ``multi_label`` (``None``: taken from
            the first batch; ``init()`` then gives a placeholder that merging fills).
        label_weights: non-negative weights per label: of each label's AUC with
            ``multi_label``, else of each label's elements in the counts.
        from_logits: predictions are logits (a sigmoid is applied first).
        exact: keep every score for the exact area (see above).

    Returns:
        A :class:`StatefulMetric` with a scalar result.

    Raises:
        ValueError: for an unknown ``curve`` or ``summation_method``,
            ``num_thresholds`` below 2, thresholds outside ``[0, 1]``,
            ``num_labels`` without ``multi_label`` or negative ``label_weights``;
            when updating,
            predictions that are not ``(batch, labels)`` with ``multi_label``.

    Example:
        >>> import jax.numpy as jnp
        >>> p, t = jnp.array([0.0, 0.5, 0.3, 0.9]), jnp.array([0, 0, 1, 1])
        >>> float(AUC(num_thresholds=3)(p, t))  # Keras's documented example
        0.75
        >>> float(AUC(exact=True)(p, t))  # roc_auc_score: 3 of 4 pairs ordered
        0.75
    """
    name = name or "auc"
    curve = {"roc": "ROC", "pr": "PR"}.get(str(curve).lower(), curve)
    if curve not in ("ROC", "PR"):
        raise ValueError(f"{name}: curve must be 'ROC' or 'PR', got {curve!r}.")
    methods = ("interpolation", "minoring", "majoring")
    if str(summation_method).lower() not in methods:
        raise ValueError(
            f"{name}: summation_method must be one of {list(methods)}, got {summation_method!r}."
        )
    method = str(summation_method).lower()
    if thresholds is not None:
        inner = np.sort(np.asarray(thresholds, np.float64).reshape(-1))
        if inner.size and (not np.all(np.isfinite(inner)) or inner[0] < 0 or inner[-1] > 1):
            raise ValueError(
                f"{name}: thresholds must be in [0, 1], got {list(thresholds)}; the end "
                "points -1e-7 and 1 + 1e-7 are added for you."
            )
    else:
        num_thresholds = _check_int(name, "num_thresholds", num_thresholds, 2)
        inner = np.arange(1, num_thresholds - 1, dtype=np.float64) / (num_thresholds - 1)
    values = np.concatenate([[-_EPSILON], inner, [1.0 + _EPSILON]]).astype(np.float32)
    if num_labels is not None:
        if not multi_label:
            raise ValueError(
                f"{name}: num_labels={num_labels} is for multi_label=True; drop it, or "
                "pass multi_label=True."
            )
        num_labels = _check_int(name, "num_labels", num_labels, 1)
    lw = None
    if label_weights is not None:
        lw = np.asarray(label_weights, np.float32).reshape(-1)
        if not np.all(np.isfinite(lw)) or np.any(lw < 0):
            raise ValueError(
                f"{name}: label_weights must be finite and non-negative, got {list(label_weights)}."
            )

    def scores_of(predictions: ArrayLike, targets: ArrayLike, weight: Any) -> tuple:
        p = jnp.asarray(predictions)
        t = align(name, p, targets)
        if multi_label and p.ndim != 2:
            raise ValueError(
                f"{name}: with multi_label=True predictions must be (batch, labels), got "
                f"shape {tuple(p.shape)}. Reshape them, or use multi_label=False."
            )
        w = _per_element(_weight(name, weight, p.shape[0]), tuple(p.shape))
        p = p.astype(jnp.float32)
        if from_logits:
            p = jax.nn.sigmoid(p)
        if lw is not None and not multi_label:
            if lw.shape[0] != p.shape[-1]:
                raise ValueError(
                    f"{name}: {lw.shape[0]} label_weights for predictions with "
                    f"{p.shape[-1]} labels (shape {tuple(p.shape)}); pass one per label."
                )
            w = w * jnp.asarray(lw)
        positive = t != 0
        if multi_label:  # (labels, n): one row per label
            return p.T, positive.T, w.T
        return p.reshape(-1), positive.reshape(-1), w.reshape(-1)

    def labels_shape() -> tuple[int, ...]:
        # Without num_labels the label axis is known at the first batch; until then
        # the state is empty (exact) or 0-d (counts), and merging fills it in.
        return (num_labels,) if multi_label and num_labels is not None else ()

    if exact:

        def init() -> dict[str, jax.Array]:
            shape = (*labels_shape(), 0)
            return {
                "scores": jnp.zeros(shape, jnp.float32),
                "labels": jnp.zeros(shape, jnp.bool_),
                "weights": jnp.zeros(shape, jnp.float32),
            }

        def batch_state(predictions: ArrayLike, targets: ArrayLike, weight: Any) -> Any:
            p, positive, w = scores_of(predictions, targets, weight)
            return {"scores": p, "labels": positive, "weights": w}

        def merge(a: Any, b: Any) -> Any:
            def join(u: jax.Array, v: jax.Array) -> jax.Array:
                if u.shape[-1] == 0:  # an empty state takes the other's shape
                    return v
                if v.shape[-1] == 0:
                    return u
                return jnp.concatenate([u, v], axis=-1)

            return jax.tree.map(join, a, b)

        def merge_stacked(states: Any) -> Any:
            def flat(s: jax.Array) -> jax.Array:
                s = jnp.moveaxis(s, 0, -2)
                return s.reshape(*s.shape[:-2], -1)

            return jax.tree.map(flat, states)

        def result(state: Any) -> jax.Array:
            s, y, w = state["scores"], state["labels"], state["weights"]
            if not multi_label:
                return _exact_auc(s, y, w, curve)
            by_label = jax.vmap(lambda a, b, c: _exact_auc(a, b, c, curve))(s, y, w)
            return _label_average(by_label, lw)

    else:
        th = jnp.asarray(values)

        def init() -> dict[str, jax.Array]:
            unknown = multi_label and num_labels is None
            shape = () if unknown else (values.shape[0], *labels_shape())
            zeros = jnp.zeros(shape, jnp.float32)
            return {"tp": zeros, "fp": zeros, "tn": zeros, "fn": zeros}

        def batch_state(predictions: ArrayLike, targets: ArrayLike, weight: Any) -> Any:
            p, positive, w = scores_of(predictions, targets, weight)
            p = jnp.clip(p, 0.0, 1.0)
            # (..., thresholds, n): every element against every threshold
            above = p[..., None, :] > th.reshape((1,) * (p.ndim - 1) + (-1, 1))
            pos = positive[..., None, :]
            w = w[..., None, :]

            def count(cond: jax.Array) -> jax.Array:
                return jnp.sum(jnp.where(cond, w, jnp.zeros_like(w)), axis=-1).T

            return {
                "tp": count(above & pos),
                "fp": count(above & ~pos),
                "tn": count(~above & ~pos),
                "fn": count(~above & pos),
            }

        merge, merge_stacked = _add_counts, _sum_stacked

        def result(state: Any) -> jax.Array:
            value = _auc_from_counts(state, curve, method)
            return _label_average(value, lw) if multi_label else value

    def update(
        state: Any, predictions: ArrayLike, targets: ArrayLike, weight: ArrayLike | None = None
    ) -> Any:
        return merge(state, batch_state(predictions, targets, weight))

    kwargs = {
        "num_thresholds": int(values.shape[0]),
        "curve": curve,
        "summation_method": method,
        "thresholds": None if thresholds is None else list(thresholds),
        "multi_label": multi_label,
        "num_labels": num_labels,
        "label_weights": None if lw is None else lw.tolist(),
        "from_logits": from_logits,
        "exact": exact,
    }
    return _make(
        name,
        kwargs,
        init=init,
        update=update,
        merge=merge,
        result=result,
        merge_stacked=merge_stacked,
    )


# -- F-scores


def FBetaScore(
    average: str | None = None,
    beta: float = 1.0,
    threshold: float | None = None,
    name: str | None = None,
) -> StatefulMetric:
    """The F-beta score per class, or averaged, as Keras's ``keras.metrics.FBetaScore``.

    ``(1 + beta**2) * precision * recall / (beta**2 * precision + recall)`` from the
    counts ``tp, fp, fn`` per class (the last axis of ``(batch, classes)``
    predictions) summed over batches. A prediction is positive above ``threshold``,
    or, with ``threshold=None``, where it is its example's largest (and not 0).
    Targets are one-hot or multi-hot of the predictions' shape, or (a jaxnn
    addition) integer labels ``(batch,)`` for several classes. A score with a zero
    denominator is 0, as scikit-learn's ``zero_division=0``; Keras adds 1e-7 to
    each denominator instead, a difference below 1e-6.

    Args:
        average: ``None`` (one score per class), ``"micro"`` (from the counts summed
            over classes), ``"macro"`` (the mean of the class scores) or
            ``"weighted"`` (their mean weighted by each class's positive targets).
        beta: the weight of recall, > 0.
        threshold: the decision threshold in ``(0, 1]``, or ``None`` for the argmax.
        name: the log name; ``None``: ``"fbeta_score"``.

    Returns:
        A :class:`StatefulMetric`; its state is ``{"tp", "fp", "fn", "support"}``,
        each ``(classes,)``, known after the first batch (``init()`` is empty and
        ``merge`` broadcasts it).

    Raises:
        ValueError: for an unknown ``average``, a ``beta`` not > 0 or a
            ``threshold`` outside ``(0, 1]``; when updating, predictions that are
            not ``(batch, classes)`` or targets that do not fit.

    Example:
        >>> import jax.numpy as jnp
        >>> t = jnp.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]])
        >>> p = jnp.array([[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]])
        >>> [round(v, 4) for v in FBetaScore(beta=2.0, threshold=0.5)(p, t).tolist()]
        [0.3846, 0.9091, 0.8333]
    """
    name = name or "fbeta_score"
    if average not in (None, "micro", "macro", "weighted"):
        raise ValueError(
            f"{name}: average must be None, 'micro', 'macro' or 'weighted', got {average!r}."
        )
    beta = _check_float(name, "beta", beta, 0.0, np.inf)
    if threshold is not None:
        threshold = _check_float(name, "threshold", threshold, 0.0, 1.0)
    b2 = beta**2

    def init() -> dict[str, jax.Array]:
        zero = jnp.zeros((), jnp.float32)
        return {"tp": zero, "fp": zero, "fn": zero, "support": zero}

    def update(
        state: Any, predictions: ArrayLike, targets: ArrayLike, weight: ArrayLike | None = None
    ) -> Any:
        p = jnp.asarray(predictions)
        t = jnp.asarray(targets)
        check_batch(name, p, t)
        if p.ndim != 2:
            raise ValueError(
                f"{name}: predictions must be (batch, classes), got shape "
                f"{tuple(p.shape)}. Reshape them to (batch, classes)."
            )
        classes = p.shape[-1]
        if classes > 1 and (t.ndim == 1 or (t.ndim == 2 and t.shape[-1] == 1)):
            t = jax.nn.one_hot(t.reshape(-1).astype(jnp.int32), classes)
        else:
            t = align(name, p, t)
        p = p.astype(jnp.float32)
        if threshold is None:
            predicted = (p >= jnp.max(p, axis=-1, keepdims=True)) & (jnp.abs(p) > 1e-9)
        else:
            predicted = p > threshold
        positive = t != 0
        w = _per_element(_weight(name, weight, p.shape[0]), tuple(p.shape))

        def count(cond: jax.Array) -> jax.Array:
            return jnp.sum(jnp.where(cond, w, jnp.zeros_like(w)), axis=0)

        return _add_counts(
            state,
            {
                "tp": count(predicted & positive),
                "fp": count(predicted & ~positive),
                "fn": count(~predicted & positive),
                "support": count(positive),
            },
        )

    def result(state: Any) -> jax.Array:
        tp, fp, fn = state["tp"], state["fp"], state["fn"]
        if average == "micro":
            tp, fp, fn = jnp.sum(tp), jnp.sum(fp), jnp.sum(fn)
        precision, recall = _divide(tp, tp + fp), _divide(tp, tp + fn)
        score = _divide((1 + b2) * precision * recall, b2 * precision + recall)
        if average == "weighted":
            return _divide(jnp.sum(score * state["support"]), jnp.sum(state["support"]))
        if average == "macro":
            return jnp.mean(score)
        return score

    kwargs = {"average": average, "beta": beta, "threshold": threshold}
    return _make(
        name,
        kwargs,
        init=init,
        update=update,
        result=result,
    )


def F1Score(
    average: str | None = None, threshold: float | None = None, name: str | None = None
) -> StatefulMetric:
    """The F1 score, ``2 * precision * recall / (precision + recall)``, as Keras's
    ``keras.metrics.F1Score``: :func:`FBetaScore` with ``beta=1``.

    For a one-output binary model pass ``threshold=0.5`` (the argmax of one output
    is always that output); its single score is logged as ``"f1_score"``.

    Args:
        average: ``None``, ``"micro"``, ``"macro"`` or ``"weighted"`` (see
            :func:`FBetaScore`).
        threshold: the decision threshold in ``(0, 1]``, or ``None`` for the argmax.
        name: the log name; ``None``: ``"f1_score"``.

    Returns:
        A :class:`StatefulMetric`.

    Raises:
        ValueError: as for :func:`FBetaScore`.

    Example:
        >>> import jax.numpy as jnp
        >>> t = jnp.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]])
        >>> p = jnp.array([[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]])
        >>> [round(v, 4) for v in F1Score(threshold=0.5)(p, t).tolist()]
        [0.5, 0.8, 0.6667]
    """
    m = FBetaScore(average, 1.0, threshold, name or "f1_score")
    kwargs = {"average": average, "threshold": m.kwargs["threshold"]}
    return dataclasses.replace(m, kwargs=MappingProxyType(kwargs))


# -- mean IoU


def _labels(
    name: str, what: str, a: jax.Array, sparse: bool | None, axis: int, num_classes: int
) -> jax.Array:
    if sparse is None:  # jaxnn: integer arrays are labels, floating ones scores
        sparse = not jnp.issubdtype(a.dtype, jnp.floating)
    if sparse:
        return jnp.round(a).astype(jnp.int32) if jnp.issubdtype(a.dtype, jnp.floating) else a
    if a.shape[axis] != num_classes:
        raise ValueError(
            f"{name}: {what} are class scores along axis {axis} (shape "
            f"{tuple(a.shape)}) but num_classes={num_classes}; pass scores with "
            f"{num_classes} classes there, or labels with sparse_y_{what[0]}=True."
        )
    return jnp.argmax(a, axis=axis)


def MeanIoU(
    num_classes: int,
    name: str | None = None,
    ignore_class: int | None = None,
    sparse_y_true: bool = True,
    sparse_y_pred: bool | None = None,
    axis: int = -1,
) -> StatefulMetric:
    """Mean intersection over union, as Keras's ``keras.metrics.MeanIoU``.

    A ``(num_classes, num_classes)`` confusion matrix (rows: true class, columns:
    predicted class) is summed over batches and over every element (a segmentation
    map's pixels count one by one). Each class's IoU is
    ``tp / (tp + fp + fn)``; the result is their mean over the classes that occur
    (in the targets or the predictions), 0 when none does, as in Keras; it equals
    scikit-learn's ``jaccard_score(..., average="macro")``. Labels outside
    ``[0, num_classes)``, and targets equal to ``ignore_class``, are not counted.

    Args:
        num_classes: the number of classes, >= 2.
        name: the log name; ``None``: ``"mean_iou"``.
        ignore_class: a target class left out of the counts (e.g. a void label).
        sparse_y_true: targets are labels (``False``: scores or one-hot along
            ``axis``, reduced by argmax).
        sparse_y_pred: predictions are labels (``True``, Keras's default) or class
            scores along ``axis`` (``False``). ``None`` (jaxnn's default): integer
            predictions are labels, floating ones are scores, so a softmax model
            works without it.
        axis: the class axis of scores.

    Returns:
        A :class:`StatefulMetric`; its state is ``{"confusion"}``, float32
        ``(num_classes, num_classes)``.

    Raises:
        ValueError: for ``num_classes`` below 2 or a negative ``ignore_class``; when
            updating, scores whose class axis is not ``num_classes`` long, or
            labels of the two sides with different shapes.

    Example:
        >>> import jax.numpy as jnp
        >>> m = MeanIoU(num_classes=2)
        >>> float(m(jnp.array([0, 1, 0, 1]), jnp.array([0, 0, 1, 1])))  # Keras's example
        0.3333333432674408
    """
    name = name or "mean_iou"
    num_classes = _check_int(name, "num_classes", num_classes, 2)
    if ignore_class is not None:
        ignore_class = _check_int(name, "ignore_class", ignore_class, 0)

    def init() -> dict[str, jax.Array]:
        return {"confusion": jnp.zeros((num_classes, num_classes), jnp.float32)}

    def update(
        state: Any, predictions: ArrayLike, targets: ArrayLike, weight: ArrayLike | None = None
    ) -> Any:
        p, t = jnp.asarray(predictions), jnp.asarray(targets)
        check_batch(name, p, t)
        w = _weight(name, weight, p.shape[0])
        pred = _labels(name, "predictions", p, sparse_y_pred, axis, num_classes)
        true = _labels(name, "targets", t, sparse_y_true, axis, num_classes)
        if true.shape != pred.shape and true.size == pred.size:
            true = true.reshape(pred.shape)  # labels (batch,) against (batch, 1) and back
        if true.shape != pred.shape:
            raise ValueError(
                f"{name}: target labels have shape {tuple(true.shape)} but predicted "
                f"labels have shape {tuple(pred.shape)}; they must match (check "
                "sparse_y_true, sparse_y_pred and axis)."
            )
        w = _per_element(w, tuple(pred.shape)).reshape(-1)
        pred, true = pred.reshape(-1), true.reshape(-1)
        keep = (true >= 0) & (true < num_classes) & (pred >= 0) & (pred < num_classes)
        if ignore_class is not None:
            keep = keep & (true != ignore_class)
        w = jnp.where(keep, w, jnp.zeros_like(w))
        cell = jnp.where(keep, true * num_classes + pred, 0)
        counts = jnp.zeros((num_classes * num_classes,), jnp.float32).at[cell].add(w)
        return _add(state, {"confusion": counts.reshape(num_classes, num_classes)})

    def result(state: Any) -> jax.Array:
        c = state["confusion"]
        tp = jnp.diagonal(c)
        denominator = jnp.sum(c, axis=0) + jnp.sum(c, axis=1) - tp
        valid = denominator != 0
        iou = _divide(tp, denominator)
        return _divide(jnp.sum(jnp.where(valid, iou, 0.0)), jnp.sum(valid).astype(jnp.float32))

    kwargs = {
        "num_classes": num_classes,
        "ignore_class": ignore_class,
        "sparse_y_true": sparse_y_true,
        "sparse_y_pred": sparse_y_pred,
        "axis": axis,
    }
    return _make(
        name,
        kwargs,
        init=init,
        update=update,
        result=result,
    )
