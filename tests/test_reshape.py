"""Flatten and Reshape against NumPy's row-major reshape, and their errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.layers.reshape import Flatten, Reshape


@pytest.mark.parametrize(
    ("shape", "expected"), [((2, 3, 4), (2, 12)), ((2, 3, 4, 5), (2, 60)), ((4, 3), (4, 3))]
)
def test_flatten_matches_numpy(shape, expected, key):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    layer = Flatten()
    params, state = layer.init(key, x)
    assert (params, state) == ({}, {})
    y, _ = layer.apply(params, state, jnp.asarray(x))
    assert y.shape == expected
    np.testing.assert_array_equal(y, x.reshape(shape[0], -1))  # exact: data only moves


def test_flatten_of_a_vector_gives_one_column(key):
    y, _ = Flatten().apply({}, {}, jnp.arange(3.0))
    np.testing.assert_array_equal(y, [[0.0], [1.0], [2.0]])


def test_flatten_needs_a_batch_axis(key):
    with pytest.raises(jaxnn.LayerError, match=r"^Flatten: expects an input of shape"):
        Flatten().init(key, jnp.zeros(()))


@pytest.mark.parametrize(
    ("in_shape", "target", "out_shape"),
    [
        ((2, 12), (3, 4), (2, 3, 4)),
        ((2, 3, 4), (-1, 2), (2, 6, 2)),
        ((2, 3, 4), (-1,), (2, 12)),
        ((2, 3, 4), 12, (2, 12)),
        ((5, 6), (2, -1, 3), (5, 2, 1, 3)),
    ],
)
def test_reshape_matches_numpy(in_shape, target, out_shape, key):
    x = np.arange(np.prod(in_shape), dtype=np.float32).reshape(in_shape)
    layer = Reshape(target)
    params, state = layer.init(key, jax.ShapeDtypeStruct(in_shape, jnp.float32))
    y, _ = layer.apply(params, state, jnp.asarray(x))
    assert y.shape == out_shape
    np.testing.assert_array_equal(y, x.reshape(out_shape))


def test_reshape_then_flatten_round_trips(key, rng):
    model = jaxnn.Sequential(Reshape((4, 3)), Flatten())
    x = rng.normal(size=(2, 12)).astype(np.float32)
    params, state = model.init(key, x)
    np.testing.assert_array_equal(model.apply(params, state, jnp.asarray(x))[0], x)


def test_reshape_element_count_mismatch_fails_at_init(key):
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^Reshape: cannot reshape an example of shape \(3, 4\) \(12 elements\) to "
        r"\(5, 2\), which holds 10 elements\.",
    ):
        Reshape((5, 2)).init(key, jnp.zeros((2, 3, 4)))


def test_reshape_inferred_axis_mismatch_fails_at_init(key):
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^Reshape: cannot reshape an example of shape \(3, 4\) \(12 elements\) to "
        r"\(5, -1\), which needs a multiple of 5 elements\.",
    ):
        Reshape((5, -1)).init(key, jnp.zeros((2, 3, 4)))


def test_reshape_mismatch_inside_a_model_names_the_path(key):
    model = jaxnn.Sequential(jaxnn.Dense(7), Reshape((2, 4)))
    with pytest.raises(jaxnn.LayerError, match=r"^Reshape 'reshape': cannot reshape"):
        model.init(key, jnp.zeros((2, 3)))


@pytest.mark.parametrize("shape", [(0, 4), (-2, 3), (2.0, 3), ("2", 3), (True, 3)])
def test_reshape_rejects_bad_entries(shape):
    with pytest.raises(
        jaxnn.LayerError, match=r"^Reshape: shape entries must be positive integers or -1"
    ):
        Reshape(shape)


def test_reshape_allows_one_inferred_axis():
    with pytest.raises(jaxnn.LayerError, match=r"^Reshape: at most one entry of shape may be -1"):
        Reshape((-1, -1))
