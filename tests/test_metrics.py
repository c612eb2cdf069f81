"""Metrics: hand-checked values, Keras's accuracy resolution, exact batched reduction."""

import ast
import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnn import losses, metrics


def test_binary_accuracy_threshold():
    p = jnp.array([[0.9], [0.4], [0.6], [0.5]])
    t = jnp.array([[1.0], [1.0], [0.0], [0.0]])
    assert metrics.binary_accuracy(p, t).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert metrics.binary_accuracy(p, t, threshold=0.45).tolist() == [1.0, 0.0, 0.0, 0.0]
    # Logits with threshold 0: the labels are still read as 0/1.
    z = jnp.array([2.0, -1.0, 0.5])
    assert metrics.binary_accuracy(z, jnp.array([1, 0, 0]), threshold=0.0).tolist() == [
        1.0,
        1.0,
        0.0,
    ]


def test_binary_accuracy_several_outputs_is_a_fraction():
    p = jnp.array([[0.9, 0.1, 0.8, 0.3]])
    t = jnp.array([[1, 1, 1, 0]])
    assert metrics.binary_accuracy(p, t).tolist() == [0.75]


def test_accuracy_resolves_binary_sparse_and_categorical():
    binary = metrics.accuracy(jnp.array([[0.8], [0.3]]), jnp.array([1, 1]))
    assert binary.tolist() == [1.0, 0.0]
    probs = jnp.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    assert metrics.accuracy(probs, jnp.array([1, 2])).tolist() == [1.0, 0.0]  # sparse
    assert metrics.accuracy(probs, jnp.array([[1], [0]])).tolist() == [1.0, 1.0]  # sparse (b, 1)
    assert metrics.accuracy(probs, jnp.array([1.0, 0.0])).tolist() == [1.0, 1.0]  # float labels
    one_hot = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert metrics.accuracy(probs, one_hot).tolist() == [1.0, 0.0]  # categorical
    int_one_hot = one_hot.astype(jnp.int32)
    assert metrics.accuracy(probs, int_one_hot).tolist() == [1.0, 0.0]  # by shape, not dtype
    flat = metrics.accuracy(jnp.array([0.8, 0.3]), jnp.array([1.0, 0.0]))
    assert flat.tolist() == [1.0, 1.0]  # rank-1 predictions: binary
    flat = metrics.accuracy(jnp.array([0.8, 0.3]), jnp.array([[1.0], [1.0]]))
    assert flat.tolist() == [1.0, 0.0]  # rank-1 predictions, (b, 1) labels
    logits = metrics.accuracy(jnp.array([[0.4], [-0.3]]), jnp.array([1, 1]), threshold=0.0)
    assert logits.tolist() == [1.0, 0.0]


def test_accuracy_rejects_targets_that_fit_no_kind():
    with pytest.raises(
        ValueError,
        match=r"accuracy: targets have shape \(2, 5\) but predictions have shape \(2, 3\); "
        r"for 3 classes pass one-hot targets \(2, 3\) or integer labels \(2,\)",
    ):
        metrics.accuracy(jnp.zeros((2, 3)), jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"accuracy: predictions have 2 examples but targets"):
        metrics.accuracy(jnp.zeros((2, 3)), jnp.zeros(3, jnp.int32))


def test_sequence_accuracy_is_per_example_mean():
    p = jax.nn.one_hot(jnp.array([[0, 1, 2, 2], [1, 1, 1, 1]]), 3)
    labels = jnp.array([[0, 1, 2, 0], [1, 1, 0, 0]])
    assert metrics.accuracy(p, labels).tolist() == [0.75, 0.5]
    assert metrics.accuracy(p, jax.nn.one_hot(labels, 3)).tolist() == [0.75, 0.5]


def test_regression_metrics():
    p = jnp.array([[1.0, 2.0], [3.0, 5.0]])
    t = jnp.array([[0.0, 2.0], [1.0, 1.0]])
    assert metrics.mean_squared_error(p, t).tolist() == [0.5, 10.0]
    assert metrics.mean_absolute_error(p, t).tolist() == [0.5, 3.0]


def test_sparse_invalid_labels():
    p = jnp.array([[0.2, 0.8], [0.6, 0.4]])
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 2\)"):
        metrics.sparse_categorical_accuracy(p, jnp.array([2, 0]))
    traced = jax.jit(metrics.sparse_categorical_accuracy)(p, jnp.array([-1, 0]))
    assert np.isnan(traced[0]) and traced[1] == 1.0


# ------------------------------------------------------------------ reduction


def _padded_batches(x, batch):
    """(n, ...) -> (batches, batch, ...) zero-padded, and the (batches, batch) mask."""
    n = x.shape[0]
    pad = -n % batch
    padded = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    mask = np.arange(n + pad) < n
    return padded.reshape(-1, batch, *x.shape[1:]), mask.reshape(-1, batch)


@pytest.mark.parametrize("kind", ["binary", "sparse", "categorical"])
def test_streaming_over_uneven_batches_equals_the_plain_mean(kind):
    rng = np.random.default_rng(0)
    n = 105
    if kind == "binary":
        p = rng.random((n, 1)).astype(np.float32)
        t = rng.integers(0, 2, (n, 1)).astype(np.float32)
        expected = np.mean((p > 0.5) == (t > 0.5))
    else:
        p = rng.random((n, 4)).astype(np.float32)
        labels = rng.integers(0, 4, n)
        t = labels.astype(np.int32) if kind == "sparse" else np.eye(4, dtype=np.float32)[labels]
        expected = np.mean(p.argmax(axis=1) == labels)
    pb, mask = _padded_batches(p, 10)
    tb, _ = _padded_batches(t, 10)
    assert pb.shape[0] == 11  # ten full batches and one of 5

    # Eagerly, batch by batch, with reduce.
    total = count = 0.0
    for i in range(pb.shape[0]):
        s, c = metrics.reduce(metrics.accuracy(pb[i], tb[i]), mask[i])
        total, count = total + float(s), count + float(c)
    assert count == n
    np.testing.assert_allclose(total / count, expected, rtol=1e-6)

    # Compiled, as the carry of lax.scan.
    def body(totals, batch):
        pi, ti, mi = batch
        return totals.update(metrics.accuracy(pi, ti), mi), None

    totals, _ = jax.jit(lambda *xs: jax.lax.scan(body, metrics.Totals.zeros(), xs))(pb, tb, mask)
    assert float(totals.count) == n
    np.testing.assert_allclose(totals.result(), expected, rtol=1e-6)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 40), batch=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_streaming_mse_equals_the_plain_mean_for_any_batching(n, batch, seed):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 2)).astype(np.float32)
    t = rng.normal(size=(n, 2)).astype(np.float32)
    expected = np.mean((p.astype(np.float64) - t) ** 2)
    pb, mask = _padded_batches(p, batch)
    tb, _ = _padded_batches(t, batch)
    totals = metrics.Totals.zeros()
    for i in range(pb.shape[0]):
        totals = totals.update(metrics.mean_squared_error(pb[i], tb[i]), mask[i])
    np.testing.assert_allclose(totals.result(), expected, rtol=1e-5)


def test_empty_totals_are_nan_like_training_logs():
    assert math.isnan(float(metrics.Totals.zeros().result()))
    masked_out = metrics.Totals.zeros().update(jnp.array([1.0, 1.0]), jnp.zeros(2))
    assert math.isnan(float(masked_out.result()))
    assert float(masked_out.update(jnp.array([0.25])).result()) == 0.25


def test_reduce_drops_masked_nan_and_checks_shapes():
    s, c = metrics.reduce(jnp.array([1.0, jnp.nan]), jnp.array([True, False]))
    assert (float(s), float(c)) == (1.0, 1.0)
    with pytest.raises(ValueError, match=r"mask has shape \(3,\) but values have shape \(2,\)"):
        metrics.reduce(jnp.zeros(2), jnp.ones(3))
    with pytest.raises(ValueError, match=r"values must be per-example, shape \(batch,\)"):
        metrics.reduce(jnp.zeros((2, 2)))


# ----------------------------------------------------------------- jit, dtypes


def test_metrics_jit_and_bfloat16():
    p = jnp.array([[0.9], [0.2]], jnp.bfloat16)
    t = jnp.array([1, 0], jnp.int32)
    assert jax.jit(metrics.accuracy)(p, t).tolist() == [1.0, 1.0]
    assert metrics.mean_squared_error(p, t).dtype == jnp.float32
    # bfloat16 holds 0.9 as 0.8984375: (1 - 0.8984375)^2
    np.testing.assert_allclose(metrics.mean_squared_error(p, t)[0], 0.1015625**2, rtol=1e-6)
    probs = jnp.array([[0.1, 0.7, 0.2]], jnp.bfloat16)
    assert jax.jit(metrics.accuracy)(probs, jnp.array([1.0])).tolist() == [1.0]
    threshold = jnp.float32(0.95)  # a traced float32 threshold against bfloat16
    assert jax.jit(lambda th: metrics.binary_accuracy(p, t, threshold=th))(threshold).tolist() == [
        0.0,
        1.0,
    ]


# ----------------------------------------------------------------------- get


def test_get_keeps_the_users_name_and_rejects_unknown():
    assert metrics.get("acc").name == "acc"
    assert metrics.get("accuracy").name == "accuracy"
    assert metrics.get("MSE").name == "MSE"
    assert metrics.get("binary_accuracy", threshold=0.2).per_example(
        jnp.array([[0.3]]), jnp.array([1])
    ).tolist() == [1.0]
    with pytest.raises(ValueError, match=r"unknown metric 'acuracy'\. Did you mean 'accuracy'"):
        metrics.get("acuracy")
    with pytest.raises(ValueError, match=r"^unknown metric 'ACURACY'\. Did you mean 'accuracy'"):
        metrics.get("ACURACY")
    with pytest.raises(ValueError, match=r"^metric 'mse' has no option 'threshold'; it takes no"):
        metrics.get("mse", threshold=0.3)
    with pytest.raises(
        ValueError, match=r"^metric 'accuracy' has no option 'treshold'.*Did you mean 'threshold'"
    ):
        metrics.get(metrics.accuracy, treshold=0.3)
    with pytest.raises(TypeError, match=r"metric must be a name such as 'accuracy'"):
        metrics.get(None)


def test_get_functions_losses_and_custom_metrics():
    assert metrics.get(metrics.accuracy).name == "accuracy"
    p = jnp.array([[0.9], [0.2]])
    t = jnp.array([1.0, 1.0])
    bce = metrics.get(losses.get("binary_crossentropy"))
    assert bce.name == "binary_crossentropy"
    np.testing.assert_allclose(bce.per_example(p, t), [-np.log(0.9), -np.log(0.2)], rtol=1e-6)
    logits = metrics.get(losses.get("binary_crossentropy"), from_logits=True)
    assert dict(logits.kwargs) == {"from_logits": True}
    np.testing.assert_allclose(logits.per_example(jnp.zeros((1, 1)), jnp.ones(1)), [np.log(2.0)])

    def hit_rate(p, t):  # a scalar mean: applied per example
        return jnp.mean((p[:, 0] > 0.5) == (t > 0.5))

    m = metrics.get(hit_rate)
    assert m.name == "hit_rate"
    assert m.per_example(p, t).tolist() == [1.0, 0.0]

    def bad(p, t):
        return jnp.zeros(3)

    with pytest.raises(ValueError, match=r"metric 'bad' returned \(3,\) for 2 examples"):
        metrics.get(bad).per_example(p, t)


def test_metric_is_shaped_like_loss():
    """name, per_example and kwargs, frozen, callable for the mean, jittable; a loss
    adds only its check of the targets' domain and the weights of a weighted sum of
    terms (``losses.weighted``)."""
    m = metrics.get("binary_accuracy", threshold=0.0)
    loss_fields = [f.name for f in dataclasses.fields(losses.Loss)]
    assert [f.name for f in dataclasses.fields(metrics.Metric)] == [
        f for f in loss_fields if f not in ("check_targets", "weights")
    ]
    assert "check_targets" in loss_fields and "weights" in loss_fields
    assert (m.name, dict(m.kwargs)) == ("binary_accuracy", {"threshold": 0.0})
    with pytest.raises(dataclasses.FrozenInstanceError, match=r"cannot assign to field 'name'"):
        m.name = "other"
    with pytest.raises(TypeError, match=r"does not support item assignment"):
        m.kwargs["threshold"] = 1.0  # a read-only mapping
    logits = jnp.array([[1.0], [-1.0], [2.0], [3.0]])
    labels = jnp.array([1, 1, 0, 1])
    assert m.per_example(logits, labels).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert float(m(logits, labels)) == 0.5
    assert float(m(logits, labels, jnp.array([1, 0, 0, 1]))) == 1.0
    assert float(jax.jit(m)(logits, labels)) == 0.5
    assert math.isnan(float(m(logits, labels, jnp.zeros(4))))
    assert metrics.get(m) is m


def test_get_rebinds_a_metric_and_checks_its_options():
    m = metrics.get("acc", threshold=0.9)
    rebound = metrics.get(m, threshold=0.1)
    assert (rebound.name, dict(rebound.kwargs)) == ("acc", {"threshold": 0.1})
    p, t = jnp.array([[0.5]]), jnp.array([1])
    assert (m.per_example(p, t).tolist(), rebound.per_example(p, t).tolist()) == ([0.0], [1.0])
    with pytest.raises(ValueError, match=r"^metric 'acc' has no option 'from_logits'; its "):
        metrics.get(m, from_logits=True)
    custom = metrics.get(lambda p, t: p[:, 0])
    with pytest.raises(ValueError, match=r"^metric 'lambda' has no option 'x'; it takes no"):
        metrics.get(custom, x=1)


def test_metrics_imports_no_private_names():
    """metrics builds on losses' public interface (and the ground floor), never on _names."""
    tree = ast.parse(Path(metrics.__file__).read_text())
    imported = [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxnn")
        for alias in node.names
    ]
    assert ("jaxnn.losses", "align") in imported
    assert [name for name in imported if name[1].startswith("_")] == []


def test_shape_mistakes_are_reported():
    with pytest.raises(ValueError, match=r"targets have shape \(4, 2\) but predictions have shape"):
        metrics.binary_accuracy(jnp.zeros((4, 1)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"use sparse_categorical_accuracy"):
        metrics.categorical_accuracy(jnp.zeros((4, 3)), jnp.zeros((4,)))
    with pytest.raises(ValueError, match=r"predictions have 4 examples but targets have 5"):
        metrics.mean_absolute_error(jnp.zeros((4, 1)), jnp.zeros((5, 1)))


def test_metric_functions_in_keras_order_and_the_ambiguous_case():
    p = jnp.array([[0.9], [0.2], [0.7]])
    t = jnp.array([[1.0], [1.0], [0.0]])

    def keras_accuracy(y_true, y_pred):  # Keras's order, read from the names
        return jnp.mean((y_pred > 0.5) == (y_true > 0.5), axis=-1)

    assert metrics.get(keras_accuracy).per_example(p, t).tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(
        ValueError,
        match=r"^metric 'lambda': cannot tell the order of its arguments from their names "
        r"\(u, v\)\. Keras calls a metric fn\(y_true, y_pred\), optax and jaxnn "
        r"fn\(predictions, targets\)\..*declare the order: nn\.metrics\.get\(fn, "
        r"order='keras'\)",
    ):
        metrics.get(lambda u, v: u)
    declared = metrics.get(lambda u, v: v[:, 0], order="keras")  # v is the prediction
    np.testing.assert_allclose(declared.per_example(p, t), [0.9, 0.2, 0.7])
    with pytest.raises(ValueError, match=r"^metric 'accuracy': order is for a function of"):
        metrics.get("accuracy", order="keras")
