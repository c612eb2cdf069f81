"""Embedding as a table lookup, checked against NumPy indexing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.layers.embedding import Embedding


@pytest.mark.parametrize("shape", [(6,), (3, 5), (2, 3, 4)])
def test_lookup_matches_numpy_indexing(shape, rng, key):
    ids = rng.integers(0, 10, size=shape).astype(np.int32)
    layer = Embedding(10, 4)
    params, state = layer.init(key, jnp.asarray(ids))
    assert state == {} and params["embedding"].shape == (10, 4)
    y, _ = layer.apply(params, state, jnp.asarray(ids))
    assert y.shape == (*shape, 4) and y.dtype == jnp.float32
    table = np.asarray(params["embedding"])
    np.testing.assert_array_equal(y, table[ids])  # a lookup copies values exactly
    np.testing.assert_array_equal(jax.jit(layer.apply)(params, state, jnp.asarray(ids))[0], y)


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.int8, jnp.int16, jnp.uint32])
def test_any_integer_dtype(dtype, key):
    ids = np.array([[0, 1, 2], [2, 1, 0]])
    layer = Embedding(3, 2)
    params, _ = layer.init(key, jnp.asarray(ids, dtype))
    y, _ = layer.apply(params, {}, jnp.asarray(ids, dtype))
    np.testing.assert_array_equal(y, np.asarray(params["embedding"])[ids])


def test_gradient_is_a_scatter_add_into_the_rows(rng, key):
    ids = np.array([[1, 3, 1], [0, 1, 3]])  # row 1 is used three times, row 2 never
    layer = Embedding(4, 2)
    params, _ = layer.init(key, jnp.asarray(ids))
    w = rng.normal(size=(2, 3, 2)).astype(np.float32)
    grads = jax.grad(lambda p: jnp.sum(layer.apply(p, {}, jnp.asarray(ids))[0] * w))(params)
    expected = np.zeros((4, 2))
    np.add.at(expected, ids, w.astype(np.float64))
    # Sums of at most three float32 values.
    np.testing.assert_allclose(grads["embedding"], expected, rtol=1e-6, atol=1e-6)


def test_default_init_is_keras_uniform(key):
    params, _ = Embedding(500, 64).init(key, jnp.zeros((1,), jnp.int32))
    table = np.asarray(params["embedding"])
    assert table.min() >= -0.05 and table.max() < 0.05
    # U(-0.05, 0.05) has standard deviation 0.05 / sqrt(3); 32000 draws pin it to ~1%.
    np.testing.assert_allclose(table.std(), 0.05 / np.sqrt(3.0), rtol=0.03)


def test_custom_init_and_dtypes(key):
    layer = Embedding(5, 3, embedding_init="ones", param_dtype=jnp.bfloat16)
    params, _ = layer.init(key, jnp.zeros((2,), jnp.int32))
    assert params["embedding"].dtype == jnp.bfloat16
    y, _ = layer.apply(params, {}, jnp.array([0, 4]))
    assert y.dtype == jnp.bfloat16  # the output follows the table
    np.testing.assert_array_equal(y.astype(jnp.float32), np.ones((2, 3)))
    mixed = Embedding(5, 3, dtype=jnp.bfloat16)
    p, _ = mixed.init(key, jnp.zeros((2,), jnp.int32))
    assert p["embedding"].dtype == jnp.float32
    assert mixed.apply(p, {}, jnp.array([0, 4]))[0].dtype == jnp.bfloat16


def test_float_input_is_rejected(key):
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^Embedding: expects integer indices in \[0, 10\), got dtype float32\. "
        r"Pass token ids as an integer array",
    ):
        Embedding(10, 4).init(key, jnp.zeros((2, 3)))
    params, _ = Embedding(10, 4).init(key, jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(jaxnn.LayerError, match=r"^Embedding: expects integer indices"):
        Embedding(10, 4).apply(params, {}, jnp.zeros((2, 3)))


@pytest.mark.parametrize(("ids", "lo", "hi"), [([0, 10], 0, 10), ([-1, 3], -1, 3)])
def test_out_of_range_indices_raise_eagerly(ids, lo, hi, key):
    layer = Embedding(10, 4)
    params, _ = layer.init(key, jnp.zeros((2,), jnp.int32))
    with pytest.raises(
        jaxnn.LayerError,
        match=rf"^Embedding: indices must lie in \[0, 10\), got values from {lo} to {hi}\.",
    ):
        layer.apply(params, {}, jnp.asarray(ids))


def test_out_of_range_indices_give_nan_under_jit(key):
    layer = Embedding(4, 2)
    params, _ = layer.init(key, jnp.zeros((2,), jnp.int32))
    y, _ = jax.jit(layer.apply)(params, {}, jnp.array([-1, 0, 4, 3], jnp.int8))
    y = np.asarray(y)
    assert np.isnan(y[[0, 2]]).all()  # no silent wrap-around or clamping
    np.testing.assert_array_equal(y[[1, 3]], np.asarray(params["embedding"])[[0, 3]])


def test_table_of_another_shape(key):
    params, _ = Embedding(10, 4).init(key, jnp.zeros((2,), jnp.int32))
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^Embedding: embedding has shape \(10, 4\), but this layer expects \(12, 4\)",
    ):
        Embedding(12, 4).apply(params, {}, jnp.zeros((2,), jnp.int32))


@pytest.mark.parametrize(("args", "what"), [((0, 4), "num_embeddings"), ((10, -1), "features")])
def test_bad_sizes(args, what):
    with pytest.raises(
        jaxnn.LayerError, match=rf"^Embedding: {what} must be a positive int, got -?\d+\.$"
    ):
        Embedding(*args)


def test_in_a_model(key):
    model = jaxnn.Sequential(Embedding(10, 4), jaxnn.Dense(2))
    params, state = model.init(key, jnp.zeros((3, 5), jnp.int32))
    assert sorted(params) == ["dense", "embedding"]
    assert model.apply(params, state, jnp.ones((3, 5), jnp.int32))[0].shape == (3, 5, 2)
