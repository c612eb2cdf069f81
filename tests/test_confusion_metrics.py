"""Stateful metrics (AUC, precision, recall, F-scores, top-k, mean IoU) and class_weight.

References are independent: scikit-learn on the full data for the exact variants, and
a direct NumPy transcription of Keras's formulas for the thresholded AUC.
"""

import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn
from jaxnn import confusion_metrics as cm

sklearn_metrics = pytest.importorskip("sklearn.metrics")

RNG = np.random.default_rng(0)
N = 203  # not a multiple of the batch sizes used below
SCORES = RNG.random(N).astype(np.float32)
LABELS = (RNG.random(N) < SCORES).astype(np.int32)  # informative but imperfect
# Ties: scores rounded to 1/20 so that many examples share a score.
TIED = (np.round(SCORES * 20) / 20).astype(np.float32)
WEIGHTS = RNG.integers(0, 4, N).astype(np.float32)  # 0 drops an example
CLASSES = 4
LOGITS = RNG.normal(size=(N, CLASSES)).astype(np.float32)
PROBS = np.asarray(jax.nn.softmax(LOGITS, axis=-1))
SPARSE = RNG.integers(0, CLASSES, N).astype(np.int32)
ONE_HOT = np.eye(CLASSES, dtype=np.float32)[SPARSE]
MULTI_P = RNG.random((N, 3)).astype(np.float32)
MULTI_T = (RNG.random((N, 3)) < MULTI_P).astype(np.int32)


def run(metric, predictions, targets, weight=None, sizes=None):
    """The metric's value over batches of ``sizes`` (``None``: one batch)."""
    if sizes is None:
        return np.asarray(metric(predictions, targets, weight))
    state, start = metric.init(), 0
    for size in sizes:
        w = None if weight is None else weight[start : start + size]
        part = slice(start, start + size)
        state = metric.update(state, predictions[part], targets[part], w)
        start += size
    assert start == len(predictions)
    return np.asarray(metric.result(state))


# -- AUC


@pytest.mark.parametrize("scores", [SCORES, TIED], ids=["distinct", "ties"])
@pytest.mark.parametrize("weighted", [False, True])
def test_exact_roc_auc_equals_sklearn(scores, weighted):
    w = WEIGHTS if weighted else None
    got = run(nn.AUC(exact=True), scores, LABELS, w)
    want = sklearn_metrics.roc_auc_score(LABELS, scores, sample_weight=w)
    # float32 cumulative sums of at most 600 integer weights are exact; the final
    # division rounds once.
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("scores", [SCORES, TIED], ids=["distinct", "ties"])
@pytest.mark.parametrize("weighted", [False, True])
def test_exact_pr_auc_equals_sklearn_average_precision(scores, weighted):
    w = WEIGHTS if weighted else None
    got = run(nn.AUC(curve="PR", exact=True), scores, LABELS, w)
    want = sklearn_metrics.average_precision_score(LABELS, scores, sample_weight=w)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_exact_multi_label_auc_equals_sklearn_macro_average():
    got = run(nn.AUC(exact=True, multi_label=True), MULTI_P, MULTI_T)
    want = sklearn_metrics.roc_auc_score(MULTI_T, MULTI_P, average="macro")
    np.testing.assert_allclose(got, want, rtol=1e-6)
    weighted = nn.AUC(exact=True, multi_label=True, label_weights=[1.0, 0.0, 3.0])
    by_label = [sklearn_metrics.roc_auc_score(MULTI_T[:, i], MULTI_P[:, i]) for i in range(3)]
    want = (by_label[0] + 3 * by_label[2]) / 4
    np.testing.assert_allclose(run(weighted, MULTI_P, MULTI_T), want, rtol=1e-6)


def test_exact_auc_from_logits_and_flattened_multi_output():
    logits = np.log(SCORES / (1 - SCORES)).astype(np.float32)
    got = run(nn.AUC(exact=True, from_logits=True), logits, LABELS)
    np.testing.assert_allclose(got, sklearn_metrics.roc_auc_score(LABELS, SCORES), rtol=1e-6)
    flat = run(nn.AUC(exact=True), MULTI_P, MULTI_T)  # multi_label=False: one pool
    want = sklearn_metrics.roc_auc_score(MULTI_T.reshape(-1), MULTI_P.reshape(-1))
    np.testing.assert_allclose(flat, want, rtol=1e-6)


def test_exact_auc_without_both_labels_is_nan():
    assert np.isnan(run(nn.AUC(exact=True), SCORES[:5], np.ones(5, np.int32)))
    assert np.isnan(run(nn.AUC(exact=True, curve="PR"), SCORES[:5], np.zeros(5, np.int32)))


def keras_auc(scores, labels, weights, thresholds, curve, method):
    """Keras's AUC, transcribed from its documented definition in NumPy (float64)."""
    inner = np.asarray(thresholds, np.float64)
    th = np.concatenate([[-1e-7], inner, [1 + 1e-7]]).astype(np.float32).astype(np.float64)
    p = np.clip(scores.astype(np.float64), 0, 1)[:, None]
    pos = (labels != 0)[:, None]
    w = weights.astype(np.float64)[:, None]
    above = p > th[None, :]
    tp = (w * (above & pos)).sum(0)
    fp = (w * (above & ~pos)).sum(0)
    tn = (w * (~above & ~pos)).sum(0)
    fn = (w * (~above & pos)).sum(0)

    def div(a, b):
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1, b))

    if curve == "PR" and method == "interpolation":
        dtp = tp[:-1] - tp[1:]
        pp = tp + fp
        dp = pp[:-1] - pp[1:]
        slope = div(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * pp[1:]
        ok = (pp[:-1] > 0) & (pp[1:] > 0)
        ratio = np.where(ok, div(pp[:-1], np.maximum(pp[1:], 0)), 1.0)
        return np.sum(div(slope * (dtp + intercept * np.log(ratio)), tp[1:] + fn[1:]))
    recall = div(tp, tp + fn)
    x, y = (div(fp, fp + tn), recall) if curve == "ROC" else (recall, div(tp, tp + fp))
    heights = {
        "interpolation": (y[:-1] + y[1:]) / 2,
        "minoring": np.minimum(y[:-1], y[1:]),
        "majoring": np.maximum(y[:-1], y[1:]),
    }[method]
    return np.sum((x[:-1] - x[1:]) * heights)


@pytest.mark.parametrize(
    "curve, method",
    [
        ("ROC", "interpolation"),
        ("ROC", "minoring"),
        ("ROC", "majoring"),
        ("PR", "interpolation"),
        ("PR", "minoring"),
        ("PR", "majoring"),
    ],
)
def test_thresholded_auc_equals_keras_formula(curve, method):
    inner = [(i + 1) / 199 for i in range(198)]
    want = keras_auc(SCORES, LABELS, WEIGHTS, inner, curve, method)
    metric = nn.AUC(curve=curve, summation_method=method)
    got = run(metric, SCORES, LABELS, WEIGHTS, sizes=[64, 64, 75])
    # float32 counts against a float64 transcription of the same sums.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_thresholded_auc_with_given_thresholds_equals_keras_formula():
    inner = [0.1, 0.25, 0.5, 0.9]
    want = keras_auc(SCORES, LABELS, np.ones(N), inner, "ROC", "interpolation")
    np.testing.assert_allclose(run(nn.AUC(thresholds=inner), SCORES, LABELS), want, rtol=1e-6)


def test_thresholded_auc_is_close_to_sklearn():
    # 200 evenly spaced thresholds and 203 uniform scores: an interval holds one or
    # two scores, so the trapezoids lose little; 2e-3 is about one discordant pair
    # out of P * N ~ 10,000.
    got = run(nn.AUC(), SCORES, LABELS)
    np.testing.assert_allclose(got, sklearn_metrics.roc_auc_score(LABELS, SCORES), atol=2e-3)
    got = run(nn.AUC(curve="PR"), SCORES, LABELS)
    want = sklearn_metrics.average_precision_score(LABELS, SCORES)
    np.testing.assert_allclose(got, want, atol=1e-2)  # interpolation, not AP's steps


def test_auc_keras_documented_example():
    p, t = np.array([0, 0.5, 0.3, 0.9], np.float32), np.array([0, 0, 1, 1])
    np.testing.assert_allclose(run(nn.AUC(num_thresholds=3), p, t), 0.75)
    np.testing.assert_allclose(run(nn.AUC(num_thresholds=3), p, t, np.array([1.0, 0, 0, 1])), 1.0)


# -- precision, recall, F-scores


def test_precision_and_recall_equal_sklearn():
    predicted = (SCORES > 0.5).astype(np.int32)
    for make, fn in [(nn.Precision, "precision_score"), (nn.Recall, "recall_score")]:
        want = getattr(sklearn_metrics, fn)(LABELS, predicted, sample_weight=WEIGHTS)
        got = run(make(), SCORES, LABELS, WEIGHTS, sizes=[100, 103])
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_precision_at_several_thresholds_and_class_id_and_top_k():
    got = run(nn.Precision(thresholds=[0.3, 0.7]), SCORES, LABELS)
    want = [sklearn_metrics.precision_score(LABELS, np.greater(SCORES, t)) for t in (0.3, 0.7)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    got = run(nn.Recall(class_id=2), PROBS, ONE_HOT)
    want = sklearn_metrics.recall_score(SPARSE == 2, PROBS[:, 2] > 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # top_k=1 on one-hot targets: precision is the fraction of argmaxes that hit.
    got = run(nn.Precision(top_k=1), PROBS, ONE_HOT)
    np.testing.assert_allclose(got, np.mean(PROBS.argmax(1) == SPARSE), rtol=1e-6)


def test_no_predicted_positive_gives_zero_as_keras():
    assert run(nn.Precision(), np.zeros(4, np.float32), np.ones(4)) == 0.0


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
def test_f1_score_equals_sklearn_multiclass(average):
    got = run(nn.F1Score(average=average), PROBS, ONE_HOT, sizes=[50, 50, 103])
    want = sklearn_metrics.f1_score(SPARSE, PROBS.argmax(1), average=average)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    sparse = run(nn.F1Score(average=average), PROBS, SPARSE)  # labels work too
    np.testing.assert_allclose(sparse, want, rtol=1e-6)


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
def test_fbeta_score_equals_sklearn_multi_label(average):
    got = run(nn.FBetaScore(average=average, beta=2.0, threshold=0.5), MULTI_P, MULTI_T)
    want = sklearn_metrics.fbeta_score(MULTI_T, MULTI_P > 0.5, beta=2.0, average=average)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_f1_keras_documented_example():
    t = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]], np.int32)
    p = np.array([[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]], np.float32)
    np.testing.assert_allclose(run(nn.F1Score(threshold=0.5), p, t), [0.5, 0.8, 2 / 3], rtol=1e-6)


# -- top-k and mean IoU


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_accuracy_equals_sklearn(k):
    want = sklearn_metrics.top_k_accuracy_score(SPARSE, LOGITS, k=k, labels=range(CLASSES))
    sparse = nn.metrics.get("sparse_top_k_categorical_accuracy", k=k)
    dense = nn.metrics.get("top_k_categorical_accuracy", k=k)
    np.testing.assert_allclose(sparse(LOGITS, SPARSE), want, rtol=1e-6)
    np.testing.assert_allclose(dense(LOGITS, ONE_HOT), want, rtol=1e-6)


def test_top_k_counts_ties_in_as_keras():
    p = jnp.array([[0.5, 0.5, 0.0]])
    assert nn.metrics.sparse_top_k_categorical_accuracy(p, jnp.array([1]), k=1).tolist() == [1.0]
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        nn.metrics.top_k_categorical_accuracy(p, p, k=0)


def test_mean_iou_equals_sklearn_jaccard():
    got = run(nn.MeanIoU(CLASSES), PROBS, SPARSE, sizes=[3, 200])
    want = sklearn_metrics.jaccard_score(SPARSE, PROBS.argmax(1), average="macro")
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # Segmentation maps: every pixel counts; labels and argmax of scores.
    maps = RNG.random((6, 5, 5, 3)).astype(np.float32)
    truth = RNG.integers(0, 3, (6, 5, 5))
    got = run(nn.MeanIoU(3), maps, truth)
    want = sklearn_metrics.jaccard_score(truth.ravel(), maps.argmax(-1).ravel(), average="macro")
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_mean_iou_ignore_class_and_keras_example():
    t, p = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    np.testing.assert_allclose(run(nn.MeanIoU(2), p, t), 1 / 3, rtol=1e-6)
    kept = SPARSE != 0
    got = run(nn.MeanIoU(CLASSES, ignore_class=0), PROBS, SPARSE)
    pred = PROBS.argmax(1)[kept]
    labels = sorted(set(SPARSE[kept]) | set(pred))
    want = sklearn_metrics.jaccard_score(SPARSE[kept], pred, average="macro", labels=labels)
    np.testing.assert_allclose(got, want, rtol=1e-6)


# -- merging: batches, scan, devices, members

ALL = [
    ("auc", lambda: nn.AUC(), SCORES, LABELS),
    ("auc_pr_exact", lambda: nn.AUC(curve="PR", exact=True), SCORES, LABELS),
    ("auc_multi", lambda: nn.AUC(multi_label=True, num_labels=3), MULTI_P, MULTI_T),
    ("precision", lambda: nn.Precision(), SCORES, LABELS),
    ("recall", lambda: nn.Recall(thresholds=[0.2, 0.6]), SCORES, LABELS),
    ("f1", lambda: nn.F1Score(average="macro"), PROBS, ONE_HOT),
    ("mean_iou", lambda: nn.MeanIoU(CLASSES), PROBS, SPARSE),
]


@pytest.mark.parametrize("name, make, p, t", ALL, ids=[a[0] for a in ALL])
def test_merging_batches_equals_one_batch(name, make, p, t):
    m = make()
    whole = m.update(m.init(), p, t, WEIGHTS)
    a = m.update(m.init(), p[:80], t[:80], WEIGHTS[:80])
    b = m.update(m.init(), p[80:], t[80:], WEIGHTS[80:])
    # Counts add in another order: float32 sums of integers below 2**24 are exact.
    chex.assert_trees_all_close(m.result(m.merge(a, b)), m.result(whole), rtol=1e-6)
    chex.assert_trees_all_close(
        run(m, p, t, WEIGHTS, sizes=[7, 96, 100]), m.result(whole), rtol=1e-6
    )


@pytest.mark.parametrize("name, make, p, t", ALL, ids=[a[0] for a in ALL])
def test_scan_over_batches_then_merge_stacked_equals_one_batch(name, make, p, t):
    m = make()
    n = 200
    pb, tb = p[:n].reshape(8, 25, *p.shape[1:]), t[:n].reshape(8, 25, *t.shape[1:])

    @jax.jit
    def program(pb, tb):
        def body(_, batch):
            return None, m.update(m.init(), *batch)

        _, stacked = jax.lax.scan(body, None, (pb, tb))
        return m.result(m.merge_stacked(stacked))

    chex.assert_trees_all_close(program(pb, tb), m(p[:n], t[:n]), rtol=1e-6)


@pytest.mark.parametrize("name, make, p, t", ALL, ids=[a[0] for a in ALL])
def test_vmap_over_members_equals_each_member_alone(name, make, p, t):
    m = make()
    members = 3
    ps = np.stack([np.roll(p, 17 * i, axis=0) for i in range(members)])
    states = jax.vmap(lambda q: m.update(m.init(), q, t))(ps)
    merged = m.merge(states, states)  # a member axis leads every leaf
    got = jax.vmap(m.result)(merged)
    for i in range(members):
        alone = m.update(m.init(), ps[i], t)
        chex.assert_trees_all_close(got[i], m.result(m.merge(alone, alone)), rtol=1e-6)


def test_counting_states_merge_over_devices_with_psum():
    m = nn.Precision()
    halves = jnp.stack([SCORES[:100], SCORES[100:200]]), jnp.stack([LABELS[:100], LABELS[100:200]])
    states = jax.vmap(lambda p, t: m.update(m.init(), p, t))(*halves)
    summed = jax.vmap(lambda s: jax.lax.psum(s, "devices"), axis_name="devices")(states)
    chex.assert_trees_all_close(
        m.result(jax.tree.map(lambda a: a[0], summed)), m(SCORES[:200], LABELS[:200])
    )


# -- get and errors


def test_get_finds_keras_names_and_keeps_options():
    assert isinstance(nn.metrics.get("auc"), cm.StatefulMetric)
    assert nn.metrics.get("AUC", curve="pr").kwargs["curve"] == "PR"
    assert nn.metrics.get("F1Score").name == "F1Score"
    assert nn.metrics.get("recall", name="rec").name == "rec"
    m = nn.Precision(thresholds=0.3)
    assert nn.metrics.get(m) is m


def test_get_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"metric 'mean_iou': .*num_classes.*get\('mean_iou'"):
        nn.metrics.get("mean_iou")
    with pytest.raises(ValueError, match="metric 'auc' has no option 'curv'"):
        nn.metrics.get("auc", curv="PR")
    with pytest.raises(ValueError, match="takes its options when it is made"):
        nn.metrics.get(nn.AUC(), curve="PR")
    with pytest.raises(ValueError, match="Did you mean 'auc'"):
        nn.metrics.get("auc_")


def test_constructor_errors():
    with pytest.raises(ValueError, match="auc: curve must be 'ROC' or 'PR', got 'XY'"):
        nn.AUC(curve="XY")
    with pytest.raises(ValueError, match="summation_method must be one of"):
        nn.AUC(summation_method="riemann")
    with pytest.raises(ValueError, match="num_thresholds must be an integer >= 2, got 1"):
        nn.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match=r"thresholds must be in \[0, 1\]"):
        nn.AUC(thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="num_labels=3 is for multi_label=True"):
        nn.AUC(num_labels=3)
    with pytest.raises(ValueError, match="f1_score: average must be None, 'micro'"):
        nn.F1Score(average="samples")
    with pytest.raises(ValueError, match=r"threshold must be a number in \(0.0, 1.0\]"):
        nn.F1Score(threshold=0.0)
    with pytest.raises(ValueError, match="mean_iou: num_classes must be an integer >= 2"):
        nn.MeanIoU(1)


def test_update_errors_name_shapes():
    with pytest.raises(ValueError, match=r"class_id=5 but the predictions have 4 classes"):
        nn.Precision(class_id=5)(PROBS, ONE_HOT)
    with pytest.raises(ValueError, match=r"weight has shape \(3,\) but the batch has 203"):
        nn.Recall()(SCORES, LABELS, np.ones(3))
    with pytest.raises(ValueError, match=r"multi_label=True predictions must be \(batch, labels\)"):
        nn.AUC(multi_label=True)(SCORES, LABELS)
    with pytest.raises(ValueError, match=r"predictions are class scores along axis -1"):
        nn.MeanIoU(3)(PROBS, SPARSE)


# -- training: Trainer, streams, populations


def _binary_problem():
    x = RNG.random((96, 3), dtype=np.float32)
    y = (x.sum(axis=1) + 0.3 * RNG.normal(size=96) > 1.5).astype(np.float32)
    model = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(1, activation="sigmoid"))
    return x, y, model


def test_trainer_reports_stateful_metrics_per_epoch_and_in_evaluate():
    x, y, model = _binary_problem()
    metrics = ["accuracy", "auc", nn.AUC(exact=True, name="auc_exact"), "precision", "recall"]
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics, learning_rate=1e-2)
    state = trainer.init(jax.random.key(0), x)
    state, history = trainer.fit(
        state, x, y, epochs=2, batch_size=20, verbose=0, validation_data=(x, y)
    )
    names = {"loss", "accuracy", "auc", "auc_exact", "precision", "recall"}
    assert set(history) == names | {f"val_{k}" for k in names}
    assert history["auc"].shape == (2,)
    logs = trainer.evaluate(state, x, y, batch_size=20)
    p = np.asarray(trainer.predict(state, x))[:, 0]
    np.testing.assert_allclose(logs["auc_exact"], sklearn_metrics.roc_auc_score(y, p), rtol=1e-5)
    np.testing.assert_allclose(logs["precision"], sklearn_metrics.precision_score(y, p > 0.5))
    np.testing.assert_allclose(logs["recall"], sklearn_metrics.recall_score(y, p > 0.5))
    # The last epoch's validation is an evaluation of the final state.
    np.testing.assert_allclose(history["val_auc_exact"][-1], logs["auc_exact"], rtol=1e-6)
    # A stream of the same batches gives the same sums.
    batches = [(x[i : i + 20], y[i : i + 20]) for i in range(0, 96, 20)]
    streamed = trainer.evaluate(state, lambda: iter(batches))
    for k in ("auc", "auc_exact", "precision", "recall"):
        np.testing.assert_allclose(streamed[k], logs[k], rtol=1e-6)


def test_trainer_splits_a_vector_result_into_logs():
    x = RNG.random((60, 3), dtype=np.float32)
    y = RNG.integers(0, 3, 60)
    model = nn.Dense(3, activation="softmax")
    trainer = nn.Trainer(model, "sparse_categorical_crossentropy", "sgd", ["f1_score"])
    state = trainer.init(jax.random.key(1), x)
    logs = trainer.evaluate(state, x, y)
    p = np.asarray(trainer.predict(state, x)).argmax(1)
    want = sklearn_metrics.f1_score(y, p, average=None, labels=range(3))
    got = [logs[f"f1_score_{i}"] for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_population_reports_stateful_metrics_per_member():
    x, y, model = _binary_problem()
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", [nn.AUC(exact=True)])
    states = nn.population.init(trainer, jax.random.key(2), x, 3)
    states, history = nn.population.fit(trainer, states, x, y, epochs=2, verbose=0)
    assert history["auc"].shape == (3, 2)
    logs = nn.population.evaluate(trainer, states, x, y)
    for i in range(3):
        alone = jax.tree.map(lambda a, i=i: a[i], states)
        p = np.asarray(trainer.predict(alone, x))[:, 0]
        want = sklearn_metrics.roc_auc_score(y, p)
        np.testing.assert_allclose(logs["auc"][i], want, rtol=1e-5)


# -- class_weight


def test_class_weight_equals_the_equivalent_sample_weight():
    x, y, model = _binary_problem()
    trainer = nn.Trainer(model, "binary_crossentropy", "sgd", ["accuracy"])
    state = trainer.init(jax.random.key(3), x)
    kwargs = dict(epochs=2, batch_size=16, verbose=0, validation_split=0.25)
    a, ha = trainer.fit(state, x, y, class_weight={0: 0.5, 1: 3.0}, **kwargs)
    sample_weight = np.where(y == 1, 3.0, 0.5).astype(np.float32)
    # validation (the last quarter) is unweighted under class_weight, as in Keras.
    sample_weight[72:] = 1.0
    b, hb = trainer.fit(state, x, y, sample_weight=sample_weight, **kwargs)
    chex.assert_trees_all_close(a.params, b.params)
    chex.assert_trees_all_close(dict(ha), dict(hb))


def test_class_weight_for_sparse_and_one_hot_targets():
    x = RNG.random((30, 3), dtype=np.float32)
    labels = RNG.integers(0, 3, 30)
    weights = {0: 1.0, 2: 4.0}  # class 1 left out: weight 1
    out = jax.ShapeDtypeStruct((30, 3), "float32")
    want = np.where(labels == 2, 4.0, 1.0)
    got_sparse = nn.data.class_weights("fit", weights, jnp.asarray(labels), out)
    got_one_hot = nn.data.class_weights("fit", weights, jnp.eye(3)[labels], out)
    np.testing.assert_array_equal(got_sparse, want)
    np.testing.assert_array_equal(got_one_hot, want)
    del x


def test_class_weight_errors():
    x, y, model = _binary_problem()
    trainer = nn.Trainer(model, "binary_crossentropy", "sgd")
    state = trainer.init(jax.random.key(0), x)

    def fit(**kwargs):
        return trainer.fit(state, x, y, verbose=0, **kwargs)

    with pytest.raises(ValueError, match=r"class_weight has the key 2, but the model has 2"):
        fit(class_weight={0: 1.0, 2: 1.0})
    with pytest.raises(ValueError, match=r"class_weight\[1\] is -1.0; a weight must be"):
        fit(class_weight={1: -1.0})
    with pytest.raises(TypeError, match="class_weight must be a dict"):
        fit(class_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="class_weight needs the whole targets, but x is a"):
        trainer.fit(state, lambda: iter([(x, y)]), class_weight={0: 1.0}, verbose=0)
    regression = nn.Trainer(nn.Dense(1), "mse", "sgd")
    with pytest.raises(ValueError, match=r"integer class labels in \[0, 2\), but target 0"):
        regression.fit(regression.init(jax.random.key(0), x), x, x[:, 0], class_weight={0: 2.0})


DATA_PARALLEL = """
import jax, numpy as np
import jaxnn as nn

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
assert len(jax.devices()) == 4
rng = np.random.default_rng(0)
x = rng.normal(size=(50, 3)).astype(np.float32)
y = (x.sum(axis=1) + rng.normal(size=50) > 0).astype(np.float32)
out = []
for parallel in (None, nn.parallel.data_parallel(devices=jax.devices())):
    metrics = ["auc", nn.AUC(exact=True, name="exact"), "precision", nn.F1Score(threshold=0.5)]
    model = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(1, activation="sigmoid"))
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics, parallel=parallel)
    state = trainer.init(jax.random.key(0), x)
    # batch 14: uneven over 4 devices, and a padded last batch
    state, history = trainer.fit(state, x, y, epochs=2, batch_size=14, verbose=0)
    out.append((dict(history), trainer.evaluate(state, x, y, batch_size=14)))
(h1, e1), (h4, e4) = out
for k in e1:
    np.testing.assert_allclose(e4[k], e1[k], rtol=1e-5, err_msg=k)
    np.testing.assert_allclose(h4[k], h1[k], rtol=1e-5, err_msg=k)
print("same", sorted(e1))
"""


def test_data_parallel_gives_the_single_device_metrics():
    # A subprocess: the device count is fixed when JAX starts.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "same ['auc', 'exact', 'f1_score', 'loss', 'precision']" in result.stdout
