"""Metrics: hand-checked values, Keras's accuracy resolution, exact batched reduction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import metrics


def test_binary_accuracy_threshold():
    p = jnp.array([[0.9], [0.4], [0.6], [0.5]])
    t = jnp.array([[1.0], [1.0], [0.0], [0.0]])
    assert metrics.binary_accuracy(p, t).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert metrics.binary_accuracy(p, t, threshold=0.45).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_accuracy_resolves_binary_sparse_and_categorical():
    binary = metrics.accuracy(jnp.array([[0.8], [0.3]]), jnp.array([1, 1]))
    assert binary.tolist() == [1.0, 0.0]
    probs = jnp.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    assert metrics.accuracy(probs, jnp.array([1, 2])).tolist() == [1.0, 0.0]  # sparse
    assert metrics.accuracy(probs, jnp.array([[1], [0]])).tolist() == [1.0, 1.0]  # sparse (b, 1)
    one_hot = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert metrics.accuracy(probs, one_hot).tolist() == [1.0, 0.0]  # categorical
    flat = metrics.accuracy(jnp.array([0.8, 0.3]), jnp.array([1.0, 0.0]))
    assert flat.tolist() == [1.0, 1.0]  # rank-1 predictions: binary


def test_sequence_accuracy_is_per_example_mean():
    p = jax.nn.one_hot(jnp.array([[0, 1, 2, 2], [1, 1, 1, 1]]), 3)
    labels = jnp.array([[0, 1, 2, 0], [1, 1, 0, 0]])
    assert metrics.accuracy(p, labels).tolist() == [0.75, 0.5]


def test_regression_metrics():
    p = jnp.array([[1.0, 2.0], [3.0, 5.0]])
    t = jnp.array([[0.0, 2.0], [1.0, 1.0]])
    assert metrics.mean_squared_error(p, t).tolist() == [0.5, 10.0]
    assert metrics.mean_absolute_error(p, t).tolist() == [0.5, 3.0]


def test_streaming_over_uneven_batches_equals_the_plain_mean():
    rng = np.random.default_rng(0)
    p = jnp.asarray(rng.random((105, 1)), jnp.float32)
    t = jnp.asarray(rng.integers(0, 2, (105, 1)), jnp.float32)
    total = count = 0.0
    for start in range(0, 110, 10):
        pb, tb = p[start : start + 10], t[start : start + 10]
        pad = 10 - pb.shape[0]
        mask = jnp.arange(10) < pb.shape[0]
        pb = jnp.concatenate([pb, jnp.zeros((pad, 1))])
        tb = jnp.concatenate([tb, jnp.zeros((pad, 1))])
        s, c = metrics.reduce(metrics.accuracy(pb, tb), mask)
        total, count = total + float(s), count + float(c)
    expected = np.mean((np.asarray(p) > 0.5) == (np.asarray(t) > 0.5))
    assert count == 105
    np.testing.assert_allclose(total / count, expected, rtol=1e-7)


def test_metrics_jit_and_bfloat16():
    p = jnp.array([[0.9], [0.2]], jnp.bfloat16)
    t = jnp.array([1, 0], jnp.int32)
    assert jax.jit(metrics.accuracy)(p, t).tolist() == [1.0, 1.0]
    assert metrics.mean_squared_error(p, t).dtype == jnp.float32


def test_get_keeps_the_users_name_and_rejects_unknown():
    assert metrics.get("acc").name == "acc"
    assert metrics.get("accuracy").name == "accuracy"
    assert metrics.get("binary_accuracy", threshold=0.2).fn(
        jnp.array([[0.3]]), jnp.array([1])
    ).tolist() == [1.0]
    with pytest.raises(ValueError, match=r"unknown metric 'acuracy'\. Did you mean 'accuracy'"):
        metrics.get("acuracy")


def test_shape_mistakes_are_reported():
    with pytest.raises(ValueError, match=r"targets have shape \(4, 2\) but predictions have shape"):
        metrics.binary_accuracy(jnp.zeros((4, 1)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"use sparse_categorical_accuracy"):
        metrics.categorical_accuracy(jnp.zeros((4, 3)), jnp.zeros((4,)))
