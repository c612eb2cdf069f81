"""Losses against hand-computed values, shape rules, weights and dtypes.

Expected numbers are written from the formulas with Python's math module, not with
the code under test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import losses

# float32 arithmetic on a handful of terms: 1e-6 relative is a few ulps.
RTOL = 1e-6


def test_mean_squared_error():
    p = jnp.array([[1.0, 2.0], [3.0, 5.0]])
    t = jnp.array([[0.0, 2.0], [1.0, 1.0]])
    # per example: (1 + 0) / 2 = 0.5 and (4 + 16) / 2 = 10
    np.testing.assert_allclose(losses.mean_squared_error(p, t), (0.5 + 10) / 2, rtol=RTOL)


def test_mean_absolute_error():
    p = jnp.array([[1.0, 2.0], [3.0, 5.0]])
    t = jnp.array([[0.0, 2.0], [1.0, 1.0]])
    np.testing.assert_allclose(losses.mean_absolute_error(p, t), (0.5 + 3.0) / 2, rtol=RTOL)


def test_huber_both_branches():
    p = jnp.array([[0.5], [-2.0], [4.0]])
    t = jnp.zeros((3, 1))
    # delta 1: 0.5 * 0.25 = 0.125; 1 * (2 - 0.5) = 1.5; 1 * (4 - 0.5) = 3.5
    np.testing.assert_allclose(losses.huber(p, t), (0.125 + 1.5 + 3.5) / 3, rtol=RTOL)
    # delta 3: 0.5 * 0.25, 0.5 * 4, 3 * (4 - 1.5)
    np.testing.assert_allclose(losses.huber(p, t, delta=3.0), (0.125 + 2.0 + 7.5) / 3, rtol=RTOL)


def test_binary_crossentropy_on_probabilities():
    p = jnp.array([[0.9], [0.2], [0.6]])
    t = jnp.array([[1.0], [0.0], [0.0]])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3
    np.testing.assert_allclose(losses.binary_crossentropy(p, t), expected, rtol=RTOL)


def test_binary_crossentropy_clips_like_keras():
    p = jnp.array([[0.0], [1.0]])
    t = jnp.array([[1.0], [0.0]])
    # Clipped to [1e-7, 1 - 1e-7]; in float32, 1 - 1e-7 rounds to 1 - 2**-23.
    value = losses.binary_crossentropy(p, t)
    expected = (-math.log(1e-7) - math.log(2.0**-23)) / 2
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_binary_crossentropy_from_logits_agrees_with_probabilities():
    z = jnp.linspace(-6.0, 6.0, 25).reshape(25, 1)
    t = (jnp.arange(25) % 2).astype(jnp.float32).reshape(25, 1)
    on_logits = losses.binary_crossentropy(z, t, from_logits=True)
    on_probs = losses.binary_crossentropy(jax.nn.sigmoid(z), t)
    # Away from the clip region the two forms agree to float32 rounding of log(sigmoid).
    np.testing.assert_allclose(on_logits, on_probs, rtol=1e-5)
    expected = np.mean(
        [
            math.log1p(math.exp(float(a))) - float(a) * float(b)
            for a, b in zip(z[:, 0], t[:, 0], strict=True)
        ]
    )
    np.testing.assert_allclose(on_logits, expected, rtol=1e-6)


def test_binary_crossentropy_from_logits_is_stable():
    z = jnp.array([[100.0], [-100.0]])
    t = jnp.array([[0.0], [1.0]])
    np.testing.assert_allclose(losses.binary_crossentropy(z, t, from_logits=True), 100.0, rtol=RTOL)


def test_categorical_crossentropy():
    p = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    t = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    expected = -(math.log(0.7) + math.log(0.1)) / 2
    np.testing.assert_allclose(losses.categorical_crossentropy(p, t), expected, rtol=RTOL)


def test_categorical_crossentropy_renormalises_like_keras():
    p = jnp.array([[2.0, 1.0, 1.0]])  # sums to 4: renormalised to 0.5, 0.25, 0.25
    t = jnp.array([[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(losses.categorical_crossentropy(p, t), -math.log(0.25), rtol=RTOL)


def test_categorical_crossentropy_from_logits():
    z = jnp.array([[1.0, 2.0, 3.0]])
    t = jnp.array([[0.0, 0.0, 1.0]])
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    np.testing.assert_allclose(
        losses.categorical_crossentropy(z, t, from_logits=True), lse - 3.0, rtol=RTOL
    )


def test_sparse_categorical_crossentropy():
    p = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    expected = -(math.log(0.7) + math.log(0.8)) / 2
    for labels in (jnp.array([0, 2]), jnp.array([[0], [2]]), jnp.array([0.0, 2.0])):
        np.testing.assert_allclose(
            losses.sparse_categorical_crossentropy(p, labels), expected, rtol=RTOL
        )
    z = jnp.log(p)  # logits whose softmax is p
    np.testing.assert_allclose(
        losses.sparse_categorical_crossentropy(z, jnp.array([0, 2]), from_logits=True),
        expected,
        rtol=1e-5,
    )


def test_sparse_label_out_of_range_is_nan_not_zero():
    p = jnp.array([[0.5, 0.5]])
    assert np.isnan(losses.sparse_categorical_crossentropy(p, jnp.array([5])))


def test_sequence_targets():
    p = jax.nn.softmax(jnp.arange(24.0).reshape(2, 3, 4) / 10, axis=-1)
    labels = jnp.array([[0, 1, 2], [3, 3, 0]])
    per_token = -jnp.log(jnp.take_along_axis(p, labels[..., None], axis=-1))[..., 0]
    np.testing.assert_allclose(
        losses.sparse_categorical_crossentropy(p, labels), per_token.mean(), rtol=1e-6
    )


def test_weights_mask_equals_dropping_rows():
    rng = np.random.default_rng(0)
    p = jnp.asarray(rng.random((10, 1)), jnp.float32)
    t = jnp.asarray(rng.integers(0, 2, (10, 1)), jnp.float32)
    w = jnp.array([1.0] * 6 + [0.0] * 4)
    np.testing.assert_allclose(
        losses.binary_crossentropy(p, t, w), losses.binary_crossentropy(p[:6], t[:6]), rtol=RTOL
    )
    assert float(losses.mean_squared_error(p, t, jnp.zeros(10))) == 0.0


def test_fractional_weights_are_a_weighted_mean():
    p = jnp.array([[1.0], [3.0]])
    t = jnp.zeros((2, 1))
    # (1 * 1 + 3 * 9) / (1 + 3)
    np.testing.assert_allclose(
        losses.mean_squared_error(p, t, jnp.array([1.0, 3.0])), 7.0, rtol=RTOL
    )


def test_labels_without_unit_axis_never_broadcast():
    p = jnp.full((100, 1), 0.25)
    flat = jnp.ones(100)
    value = losses.mean_squared_error(p, flat)
    assert value.shape == ()
    np.testing.assert_allclose(value, 0.75**2, rtol=RTOL)
    np.testing.assert_allclose(
        losses.mean_squared_error(p[:, 0], flat[:, None]), 0.75**2, rtol=RTOL
    )
    assert losses.get("mse").per_example(p, flat).shape == (100,)


@pytest.mark.parametrize(
    "fn",
    [losses.mean_squared_error, losses.binary_crossentropy, losses.mean_absolute_error],
)
def test_mismatched_shapes_are_rejected(fn):
    with pytest.raises(
        ValueError, match=r"targets have shape \(100, 3\) but predictions have shape \(100, 1\)"
    ):
        fn(jnp.zeros((100, 1)), jnp.zeros((100, 3)))


def test_different_lengths_are_rejected():
    with pytest.raises(ValueError, match=r"predictions have 100 examples but targets have 99"):
        losses.mean_squared_error(jnp.zeros((100, 1)), jnp.zeros((99, 1)))


def test_categorical_needs_one_hot():
    with pytest.raises(ValueError, match=r"use sparse_categorical_crossentropy"):
        losses.categorical_crossentropy(jnp.zeros((4, 3)), jnp.zeros(4))


def test_sparse_needs_labels_without_class_axis():
    with pytest.raises(ValueError, match=r"integer class labels must have shape \(4,\)"):
        losses.sparse_categorical_crossentropy(jnp.zeros((4, 3)), jnp.zeros((4, 3)))


def test_get_by_name_and_options():
    assert losses.get("MSE").name == "mse"
    loss = losses.get("binary_crossentropy", from_logits=True)
    np.testing.assert_allclose(loss(jnp.zeros((2, 1)), jnp.ones((2, 1))), math.log(2.0), rtol=RTOL)
    with pytest.raises(ValueError, match=r"unknown loss 'msee'\. Did you mean 'mse'"):
        losses.get("msee")


def test_custom_loss_must_be_per_example():
    bad = losses.get(lambda p, t: jnp.mean(p - t))
    with pytest.raises(ValueError, match=r"must return one value per example, shape \(3,\)"):
        bad.per_example(jnp.zeros((3, 1)), jnp.zeros((3, 1)))
    good = losses.get(lambda p, t: jnp.sum(jnp.abs(p - t), axis=1))
    assert good.per_example(jnp.zeros((3, 2)), jnp.ones((3, 2))).tolist() == [2.0, 2.0, 2.0]


def test_bfloat16_predictions_and_integer_targets():
    p = jnp.array([[0.9], [0.2]], jnp.bfloat16)
    t = jnp.array([1, 0], jnp.int32)
    value = losses.binary_crossentropy(p, t)
    assert value.dtype == jnp.float32
    # bfloat16 holds 0.9 as 0.8984375 and 0.2 as 0.2001953125
    expected = -(math.log(0.8984375) + math.log(1 - 0.2001953125)) / 2
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_losses_jit_and_grad():
    p = jnp.array([[0.3], [0.8]])
    t = jnp.array([[0.0], [1.0]])
    g = jax.jit(jax.grad(lambda p: losses.binary_crossentropy(p, t)))(p)
    # d/dp of -(t log p + (1-t) log(1-p)) / n
    expected = np.array([[1 / (1 - 0.3)], [-1 / 0.8]]) / 2
    np.testing.assert_allclose(g, expected, rtol=1e-5)
