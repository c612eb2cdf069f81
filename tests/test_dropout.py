"""Dropout: its statistics, its scaling, its keys, and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.layers.dropout import Dropout

N = 1_000_000  # elements for the statistical checks


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_fraction_dropped_is_near_rate(rate):
    x = jnp.ones((1000, N // 1000))
    y, _ = Dropout(rate).apply({}, {}, x, key=jax.random.key(3), training=True)
    dropped = float(jnp.mean(y == 0.0))
    # The dropped fraction is a mean of N Bernoulli(rate) draws: its standard deviation is
    # sqrt(rate * (1 - rate) / N) <= 5e-4; allow 5 of them.
    assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / N)
    # Inverted dropout keeps the expected value: mean(y) ~ 1 within the same 5 sigma,
    # scaled by 1 / (1 - rate).
    assert abs(float(jnp.mean(y)) - 1.0) < 5 * np.sqrt(rate / ((1 - rate) * N))


@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_kept_values_are_scaled_and_dropped_are_zero(rate, rng):
    x = rng.normal(size=(64, 32)).astype(np.float32) + 3.0  # no zeros in x
    y, state = Dropout(rate).apply({}, {}, jnp.asarray(x), key=jax.random.key(5), training=True)
    y = np.asarray(y)
    kept = y != 0
    assert state == {}
    assert 0 < kept.sum() < kept.size
    # One float32 multiply by 1 / (1 - rate) against float64: one rounding (6e-8 relative).
    np.testing.assert_allclose(y[kept], x[kept] / (1.0 - rate), rtol=2e-7)
    assert (y[~kept] == 0.0).all()


def test_same_key_same_mask_other_key_other_mask():
    x = jnp.ones((32, 32))
    layer = Dropout(0.5)

    def mask(seed):
        y, _ = layer.apply({}, {}, x, key=jax.random.key(seed), training=True)
        return np.asarray(y) == 0

    np.testing.assert_array_equal(mask(1), mask(1))
    assert (mask(1) != mask(2)).mean() > 0.3  # independent masks differ on ~half the entries


def test_members_of_an_ensemble_draw_their_own_masks():
    keys = jax.random.split(jax.random.key(0), 3)
    x = jnp.ones((3, 16, 16))
    ys, _ = jax.vmap(lambda k, x: Dropout(0.5).apply({}, {}, x, key=k, training=True))(keys, x)
    masks = np.asarray(ys) == 0
    assert (masks[0] != masks[1]).any() and (masks[1] != masks[2]).any()


def test_jit_draws_the_same_mask_as_eager():
    x = jnp.ones((8, 8))
    f = lambda x, k: Dropout(0.3).apply({}, {}, x, key=k, training=True)[0]
    np.testing.assert_array_equal(f(x, jax.random.key(4)), jax.jit(f)(x, jax.random.key(4)))


def test_evaluation_is_the_identity(rng):
    x = jnp.asarray(rng.normal(size=(4, 5)).astype(np.float32))
    y, _ = Dropout(0.5).apply({}, {}, x, training=False)
    np.testing.assert_array_equal(y, x)
    y, _ = Dropout(0.5).apply({}, {}, x, key=jax.random.key(0))  # a key alone does not train
    np.testing.assert_array_equal(y, x)


def test_rate_zero_is_the_identity_and_needs_no_key(rng):
    x = jnp.asarray(rng.normal(size=(4, 5)).astype(np.float32))
    np.testing.assert_array_equal(Dropout(0.0).apply({}, {}, x, training=True)[0], x)


def test_keeps_the_dtype():
    x = jnp.ones((4, 8), jnp.bfloat16)
    y, _ = Dropout(0.5).apply({}, {}, x, key=jax.random.key(0), training=True)
    assert y.dtype == jnp.bfloat16
    assert set(np.asarray(y, np.float32).ravel().tolist()) <= {0.0, 2.0}


def test_training_without_a_key_names_the_layer():
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^Dropout: training=True needs a key: pass key=jax\.random\.key\(\.\.\.\) to apply",
    ):
        Dropout(0.5).apply({}, {}, jnp.ones((2, 3)), training=True)


def test_training_without_a_key_inside_a_model_names_the_path(key):
    model = jaxnn.Sequential(jaxnn.Dense(3), Dropout(0.5))
    params, state = model.init(key, jnp.ones((2, 3)))
    with pytest.raises(jaxnn.LayerError, match=r"^Dropout 'dropout': training=True needs a key"):
        model.apply(params, state, jnp.ones((2, 3)), training=True)
    model.apply(params, state, jnp.ones((2, 3)), key=key, training=True)  # a key suffices


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "0.5", None])
def test_rate_outside_unit_interval(rate):
    with pytest.raises(jaxnn.LayerError, match=r"^Dropout: rate .* must lie in \[0, 1\)"):
        Dropout(rate)


def test_integer_input_in_training():
    with pytest.raises(jaxnn.LayerError, match=r"^Dropout: expects a floating-point input"):
        Dropout(0.5).apply(
            {}, {}, jnp.ones((2, 3), jnp.int32), key=jax.random.key(0), training=True
        )
