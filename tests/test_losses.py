"""Losses against hand-computed values, shape rules, weights, dtypes and jit.

Expected numbers are written from the formulas with Python's math module (or plain
NumPy), not with the code under test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import losses

# float32 arithmetic on a handful of terms: 1e-6 relative is a few ulps.
RTOL = 1e-6

ALL_NAMES = [
    "mean_squared_error",
    "mean_absolute_error",
    "huber",
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
]


def _example(name, batch=6, dtype=jnp.float32, target_dtype=jnp.float32):
    """Predictions and targets that fit loss `name`, from a fixed seed."""
    rng = np.random.default_rng(1)
    if name in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        p = rng.dirichlet(np.ones(3), batch)
        labels = rng.integers(0, 3, batch)
        t = labels if name.startswith("sparse") else np.eye(3)[labels]
    elif name == "binary_crossentropy":
        p = rng.uniform(0.05, 0.95, (batch, 1))
        t = rng.integers(0, 2, (batch, 1))
    else:
        p = rng.normal(size=(batch, 2)) * 2
        t = rng.integers(-2, 3, (batch, 2))
    return jnp.asarray(p, dtype), jnp.asarray(t, target_dtype)


# ------------------------------------------------------------------- values


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


def test_binary_crossentropy_soft_labels():
    p = jnp.array([[0.25]])
    t = jnp.array([[0.5]])
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    np.testing.assert_allclose(losses.binary_crossentropy(p, t), expected, rtol=RTOL)


def test_binary_crossentropy_clips_like_keras():
    p = jnp.array([[0.0], [1.0], [0.0], [1.0]])
    t = jnp.array([[1.0], [0.0], [0.0], [1.0]])
    # Clipped to [1e-7, 1 - 1e-7]; in float32, 1 - 1e-7 rounds to 1 - 2**-23, and
    # log(1 - 1e-7) for the two right answers is about -1.19e-7 each.
    value = losses.binary_crossentropy(p, t)
    wrong = -math.log(1e-7) - math.log(2.0**-23)
    right = 2 * -math.log1p(-1e-7)
    np.testing.assert_allclose(value, (wrong + right) / 4, rtol=1e-5)
    grad = jax.grad(lambda p: losses.binary_crossentropy(p, t))(p)
    assert np.isfinite(np.asarray(grad)).all()


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
    z = jnp.array([[100.0], [-100.0], [100.0]])
    t = jnp.array([[0.0], [1.0], [1.0]])
    value = losses.binary_crossentropy(z, t, from_logits=True)
    # softplus(100) - 0 = 100; softplus(-100) + 100 = 100; softplus(100) - 100 ~ 3.7e-44
    np.testing.assert_allclose(value, 200.0 / 3, rtol=RTOL)
    grad = jax.grad(lambda z: losses.binary_crossentropy(z, t, from_logits=True))(z)
    # sigmoid(z) - t, over 3 examples
    np.testing.assert_allclose(grad, np.array([[1.0], [-1.0], [0.0]]) / 3, atol=1e-7)


def test_categorical_crossentropy():
    p = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    t = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    expected = -(math.log(0.7) + math.log(0.1)) / 2
    np.testing.assert_allclose(losses.categorical_crossentropy(p, t), expected, rtol=RTOL)


def test_categorical_crossentropy_renormalises_and_clips_like_keras():
    p = jnp.array([[2.0, 1.0, 1.0]])  # sums to 4: renormalised to 0.5, 0.25, 0.25
    t = jnp.array([[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(losses.categorical_crossentropy(p, t), -math.log(0.25), rtol=RTOL)
    zero = losses.categorical_crossentropy(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]))
    np.testing.assert_allclose(zero, -math.log(1e-7), rtol=1e-5)


def test_categorical_crossentropy_from_logits():
    z = jnp.array([[1.0, 2.0, 3.0]])
    t = jnp.array([[0.0, 0.0, 1.0]])
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    np.testing.assert_allclose(
        losses.categorical_crossentropy(z, t, from_logits=True), lse - 3.0, rtol=RTOL
    )
    big = losses.categorical_crossentropy(
        jnp.array([[1000.0, 0.0]]), jnp.array([[0.0, 1.0]]), from_logits=True
    )
    np.testing.assert_allclose(big, 1000.0, rtol=RTOL)


def test_categorical_crossentropy_from_logits_masked_with_minus_inf():
    """A class masked out with a -inf logit has probability 0: with target 0 it adds
    nothing (0 * -inf is not NaN), exactly as in the sparse form."""
    z = jnp.array([[1.0, -jnp.inf, 3.0], [-jnp.inf, 0.0, 0.0]])
    t = jnp.array([[0.0, 0.0, 1.0], [0.0, 0.5, 0.5]])
    expected = [
        math.log(math.exp(1) + math.exp(3)) - 3.0,  # the -inf class is not in the sum
        math.log(2.0),
    ]
    np.testing.assert_allclose(
        losses.get("categorical_crossentropy", from_logits=True).per_example(z, t),
        expected,
        rtol=RTOL,
    )
    sparse = losses.sparse_categorical_crossentropy(z[:1], jnp.array([2]), from_logits=True)
    np.testing.assert_allclose(
        losses.categorical_crossentropy(z[:1], t[:1], from_logits=True), sparse, rtol=RTOL
    )
    grad = jax.grad(lambda z: losses.categorical_crossentropy(z, t, from_logits=True))(z)
    assert np.isfinite(grad).all()
    # The target's own class at -inf is an infinite loss, as in the sparse form.
    on_target = losses.categorical_crossentropy(
        z[:1], jnp.array([[0.0, 1.0, 0.0]]), from_logits=True
    )
    assert on_target == jnp.inf


def test_sparse_categorical_crossentropy():
    p = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    expected = -(math.log(0.7) + math.log(0.8)) / 2
    for labels in (
        jnp.array([0, 2]),
        jnp.array([[0], [2]]),
        jnp.array([0.0, 2.0]),
        jnp.array([0, 2], jnp.uint8),
        np.array([0, 2]),
    ):
        np.testing.assert_allclose(
            losses.sparse_categorical_crossentropy(p, labels), expected, rtol=RTOL
        )
    z = jnp.log(p)  # logits whose softmax is p
    np.testing.assert_allclose(
        losses.sparse_categorical_crossentropy(z, jnp.array([0, 2]), from_logits=True),
        expected,
        rtol=1e-5,
    )


def test_sparse_equals_categorical_on_one_hot():
    p, labels = _example("sparse_categorical_crossentropy", target_dtype=jnp.int32)
    one_hot = jax.nn.one_hot(labels, 3)
    for from_logits in (False, True):
        np.testing.assert_allclose(
            losses.sparse_categorical_crossentropy(p, labels, from_logits=from_logits),
            losses.categorical_crossentropy(p, one_hot, from_logits=from_logits),
            rtol=RTOL,
        )


def test_sequence_targets():
    p = jax.nn.softmax(jnp.arange(24.0).reshape(2, 3, 4) / 10, axis=-1)
    labels = np.array([[0, 1, 2], [3, 3, 0]])
    probs = np.asarray(p)
    per_example = [
        -np.mean([math.log(probs[b, s, labels[b, s]]) for s in range(3)]) for b in range(2)
    ]
    np.testing.assert_allclose(
        losses.get("sparse_categorical_crossentropy").per_example(p, labels),
        per_example,
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        losses.sparse_categorical_crossentropy(p, labels), np.mean(per_example), rtol=1e-6
    )


# ------------------------------------------------------------- invalid labels


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (jnp.array([5, 0]), r"class labels must lie in \[0, 2\) .* got labels from 0 to 5"),
        (jnp.array([-1, 0]), r"class labels must lie in \[0, 2\) .* got labels from -1 to 0"),
        (jnp.array([0.5, 1.0]), r"must be integer class labels, got the value 0\.5"),
        (jnp.array([jnp.nan, 1.0]), r"must be integer class labels, got the value nan"),
    ],
)
def test_sparse_invalid_concrete_labels_raise(labels, match):
    with pytest.raises(ValueError, match=match):
        losses.sparse_categorical_crossentropy(jnp.array([[0.5, 0.5], [0.5, 0.5]]), labels)


@pytest.mark.parametrize("bad", [5.0, -1.0, 0.5])
def test_sparse_invalid_traced_labels_are_nan_not_wrapped(bad):
    # Inside jit the values cannot be checked; the bad example is NaN, never a wrapped
    # index (-1 would otherwise pick the last class) or a silent 0.
    p = jnp.array([[0.25, 0.75], [0.5, 0.5]])
    per_example = jax.jit(losses.get("sparse_categorical_crossentropy").per_example)(
        p, jnp.array([bad, 1.0])
    )
    assert np.isnan(per_example[0])
    np.testing.assert_allclose(per_example[1], -math.log(0.5), rtol=RTOL)


def test_sparse_shape_errors():
    with pytest.raises(ValueError, match=r"integer class labels must have shape \(4,\)"):
        losses.sparse_categorical_crossentropy(jnp.zeros((4, 3)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"predictions need a class axis"):
        losses.sparse_categorical_crossentropy(jnp.zeros(4), jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match=r"predictions have 4 examples but targets have 3"):
        losses.sparse_categorical_crossentropy(jnp.zeros((4, 3)), jnp.zeros(3, jnp.int32))


# ------------------------------------------------------------------- weights


@pytest.mark.parametrize("name", ALL_NAMES)
def test_weights_mask_equals_dropping_rows(name):
    p, t = _example(name, batch=10)
    fn = getattr(losses, name)
    w = jnp.array([1.0, 0.0] * 5)
    np.testing.assert_allclose(fn(p, t, w), fn(p[::2], t[::2]), rtol=RTOL)
    # Boolean and integer masks work the same.
    np.testing.assert_allclose(fn(p, t, w > 0), fn(p[::2], t[::2]), rtol=RTOL)


def test_fractional_weights_are_a_weighted_mean_not_kerass():
    p = jnp.array([[1.0], [3.0]])
    t = jnp.zeros((2, 1))
    # (1 * 1 + 3 * 9) / (1 + 3) = 7; Keras would divide by the batch size: 28 / 2 = 14.
    np.testing.assert_allclose(
        losses.mean_squared_error(p, t, jnp.array([1.0, 3.0])), 7.0, rtol=RTOL
    )


def test_all_zero_weights_give_zero_and_finite_gradients():
    p, t = _example("binary_crossentropy", batch=4)
    loss = losses.get("binary_crossentropy")
    assert float(loss(p, t, jnp.zeros(4))) == 0.0
    grad = jax.jit(jax.grad(lambda p: loss(p, t, jnp.zeros(4))))(p)
    np.testing.assert_array_equal(grad, np.zeros((4, 1)))
    assert float(losses.mean_squared_error(jnp.zeros((0, 1)), jnp.zeros((0, 1)))) == 0.0


def test_weights_of_the_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match=r"weights have shape \(4, 1\) but there are 4 examples"):
        losses.mean_squared_error(jnp.zeros((4, 1)), jnp.zeros((4, 1)), jnp.ones((4, 1)))


# -------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "name", ["mean_squared_error", "mean_absolute_error", "huber", "binary_crossentropy"]
)
def test_labels_without_unit_axis_never_broadcast(name):
    p = jnp.full((100, 1), 0.25)
    t = (jnp.arange(100) % 2).astype(jnp.float32)
    loss = losses.get(name)
    matching = loss(p, t[:, None])
    for pred, targ in ((p, t), (p[:, 0], t[:, None]), (p[:, 0], t)):
        value = loss(pred, targ)
        assert value.shape == ()
        np.testing.assert_allclose(value, matching, rtol=RTOL)
        assert loss.per_example(pred, targ).shape == (100,)
    # The hand value for MSE: half the labels are 1 (0.75^2), half 0 (0.25^2).
    if name == "mean_squared_error":
        np.testing.assert_allclose(matching, (0.75**2 + 0.25**2) / 2, rtol=RTOL)


@pytest.mark.parametrize(
    "fn",
    [
        losses.mean_squared_error,
        losses.mean_absolute_error,
        losses.huber,
        losses.binary_crossentropy,
    ],
)
def test_mismatched_shapes_are_rejected(fn):
    name = fn.__name__
    with pytest.raises(
        ValueError,
        match=rf"{name}: targets have shape \(100, 3\) but predictions have shape \(100, 1\); "
        r"targets must match the predictions' shape, \(100, 1\) or \(100,\)",
    ):
        fn(jnp.zeros((100, 1)), jnp.zeros((100, 3)))
    with pytest.raises(ValueError, match=r"targets have shape \(100, 1, 1\)"):
        fn(jnp.zeros(100), jnp.zeros((100, 1, 1)))


def test_different_lengths_are_rejected():
    with pytest.raises(ValueError, match=r"predictions have 100 examples but targets have 99"):
        losses.mean_squared_error(jnp.zeros((100, 1)), jnp.zeros((99, 1)))
    with pytest.raises(ValueError, match=r"predictions have 100 examples but targets have 99"):
        losses.binary_crossentropy(jnp.zeros((100, 1)), jnp.zeros(99))


def test_scalars_are_rejected():
    with pytest.raises(ValueError, match=r"need a leading batch axis"):
        losses.mean_squared_error(jnp.zeros(()), jnp.zeros(()))


def test_categorical_needs_one_hot():
    with pytest.raises(ValueError, match=r"use sparse_categorical_crossentropy"):
        losses.categorical_crossentropy(jnp.zeros((4, 3)), jnp.zeros(4))


# -------------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
    ("name", "target_dtype"),
    [(n, jnp.float32) for n in ALL_NAMES]
    + [(n, jnp.int32) for n in ALL_NAMES if n != "categorical_crossentropy"],
)
@pytest.mark.parametrize("pred_dtype", [jnp.float32, jnp.bfloat16])
def test_mixed_dtypes_in_strict_mode(name, pred_dtype, target_dtype):
    p, t = _example(name, dtype=pred_dtype, target_dtype=target_dtype)
    value = getattr(losses, name)(p, t)
    assert value.dtype == jnp.float32
    # The same numbers in float32 throughout: bfloat16 only rounds the inputs.
    reference = getattr(losses, name)(p.astype(jnp.float32), t.astype(jnp.float32))
    np.testing.assert_allclose(value, reference, rtol=RTOL)


def test_integer_one_hot_targets():
    p = jnp.array([[0.7, 0.2, 0.1]], jnp.bfloat16)
    value = losses.categorical_crossentropy(p, jnp.array([[1, 0, 0]], jnp.int32))
    # bfloat16 holds 0.7 as 0.69921875, 0.2 as 0.2001953125, 0.1 as 0.10009765625
    expected = -math.log(0.69921875 / (0.69921875 + 0.2001953125 + 0.10009765625))
    np.testing.assert_allclose(value, expected, rtol=RTOL)


def test_bfloat16_predictions_and_integer_targets():
    p = jnp.array([[0.9], [0.2]], jnp.bfloat16)
    t = jnp.array([1, 0], jnp.int32)
    value = losses.binary_crossentropy(p, t)
    assert value.dtype == jnp.float32
    # bfloat16 holds 0.9 as 0.8984375 and 0.2 as 0.2001953125
    expected = -(math.log(0.8984375) + math.log(1 - 0.2001953125)) / 2
    np.testing.assert_allclose(value, expected, rtol=1e-6)


# ---------------------------------------------------------------- jit, grad


@pytest.mark.parametrize("name", ALL_NAMES)
def test_jit_equals_eager(name):
    p, t = _example(name)
    loss = losses.get(name)
    w = jnp.arange(6.0)
    np.testing.assert_allclose(jax.jit(loss.per_example)(p, t), loss.per_example(p, t), rtol=RTOL)
    np.testing.assert_allclose(jax.jit(loss)(p, t, w), loss(p, t, w), rtol=RTOL)


def test_losses_jit_and_grad():
    p = jnp.array([[0.3], [0.8]])
    t = jnp.array([[0.0], [1.0]])
    g = jax.jit(jax.grad(lambda p: losses.binary_crossentropy(p, t)))(p)
    # d/dp of -(t log p + (1-t) log(1-p)) / n
    expected = np.array([[1 / (1 - 0.3)], [-1 / 0.8]]) / 2
    np.testing.assert_allclose(g, expected, rtol=1e-5)


def test_huber_delta_may_be_traced():
    p = jnp.array([[0.5], [3.0]])
    t = jnp.zeros((2, 1))
    value = jax.jit(lambda d: losses.huber(p, t, delta=d))(jnp.float32(3.0))
    # 0.5 * 0.25 and 0.5 * 9 (both within delta 3)
    np.testing.assert_allclose(value, (0.125 + 4.5) / 2, rtol=RTOL)


# ----------------------------------------------------------------------- get


def test_get_by_name_and_options():
    assert losses.get("MSE").name == "mse"
    assert losses.get("bce").name == "bce"
    loss = losses.get("binary_crossentropy", from_logits=True)
    assert dict(loss.kwargs) == {"from_logits": True}
    np.testing.assert_allclose(loss(jnp.zeros((2, 1)), jnp.ones((2, 1))), math.log(2.0), rtol=RTOL)
    np.testing.assert_allclose(
        losses.get("huber", delta=3.0)(jnp.array([[2.0]]), jnp.zeros((1, 1))), 2.0, rtol=RTOL
    )


def test_get_unknown_names_and_options():
    with pytest.raises(ValueError, match=r"unknown loss 'msee'\. Did you mean 'mse'.*Known names:"):
        losses.get("msee")
    with pytest.raises(ValueError, match=r"^unknown loss 'LOGCOSH'\. Known names: 'bce', "):
        losses.get("LOGCOSH")
    with pytest.raises(ValueError, match=r"loss 'mse' has no option 'from_logits'; it takes no"):
        losses.get("mse", from_logits=True)
    with pytest.raises(
        ValueError,
        match=r"^loss 'huber' has no option 'delt'; its options are \['delta'\]\. "
        r"Did you mean 'delta'\?$",
    ):
        losses.get("huber", delt=2.0)
    # `weights` is an argument of the call, never an option bound into the loss.
    with pytest.raises(ValueError, match=r"loss 'huber' has no option 'weights'"):
        losses.get(losses.huber, weights=jnp.ones(1))
    with pytest.raises(TypeError, match=r"from_logits must be True or False, got 'yes'"):
        losses.binary_crossentropy(jnp.zeros((1, 1)), jnp.zeros((1, 1)), from_logits="yes")
    with pytest.raises(ValueError, match=r"huber: delta must be a positive number, got 0"):
        losses.huber(jnp.zeros((1, 1)), jnp.zeros((1, 1)), delta=0)
    with pytest.raises(TypeError, match=r"loss must be a name such as 'mse'"):
        losses.get(3)


def test_built_in_losses_declare_their_target_check():
    """Losses whose domain is narrower than all reals say so with check_targets, which
    fit and evaluate run once on the concrete targets; the rest have none."""
    spec = jax.ShapeDtypeStruct((4, 3), jnp.float32)
    sparse = losses.get("sparse_categorical_crossentropy", from_logits=True)
    sparse.check_targets("fit", np.array([0, 1, 2, 2]), spec)
    with pytest.raises(ValueError, match=r"^fit: sparse_categorical_crossentropy: class labels"):
        sparse.check_targets("fit", np.array([0, 1, 3, 2]), spec)
    with pytest.raises(ValueError, match=r"binary_crossentropy needs targets in \[0, 1\]"):
        losses.get(losses.binary_crossentropy).check_targets("fit", np.array([2.0]), spec)
    with pytest.raises(ValueError, match=r"got a smallest value of -0.5"):
        losses.get("categorical_crossentropy").check_targets("fit", np.array([-0.5]), spec)
    rebound = losses.get(losses.get("bce"), from_logits=True)
    assert rebound.check_targets is losses.get("bce").check_targets is not None
    for loss in ("mse", "mae", "huber", lambda p, t: (p - t) ** 2):
        assert losses.get(loss).check_targets is None
    # Traced targets cannot be read on the host: the check leaves them to the loss.
    jax.jit(lambda t: sparse.check_targets("fit", t, spec))(jnp.array([9]))


def test_get_rebinds_a_loss_and_checks_its_options():
    loss = losses.get("huber", delta=3.0)
    rebound = losses.get(loss, delta=1.0)
    assert rebound.name == "huber"
    assert dict(rebound.kwargs) == {"delta": 1.0}
    # 0.5 e^2 below delta, delta (|e| - delta / 2) above: e = 2.
    np.testing.assert_allclose(loss(jnp.array([[2.0]]), jnp.zeros((1, 1))), 2.0, rtol=RTOL)
    np.testing.assert_allclose(rebound(jnp.array([[2.0]]), jnp.zeros((1, 1))), 1.5, rtol=RTOL)
    with pytest.raises(ValueError, match=r"^loss 'huber' has no option 'from_logits'; its "):
        losses.get(loss, from_logits=True)


def test_get_a_loss_function_uses_its_per_example_form():
    loss = losses.get(losses.binary_crossentropy, from_logits=True)
    assert loss.name == "binary_crossentropy"
    z = jnp.array([[0.0], [2.0]])
    t = jnp.array([[1.0], [1.0]])
    np.testing.assert_allclose(
        loss.per_example(z, t), [math.log(2.0), math.log1p(math.exp(-2.0))], rtol=RTOL
    )
    assert losses.get(loss) is loss


def test_custom_losses_are_made_per_example():
    p = jnp.array([[1.0, 2.0], [3.0, 5.0], [0.0, 0.0]])
    t = jnp.zeros((3, 2))
    expected = [2.5, 17.0, 0.0]  # (1 + 4) / 2, (9 + 25) / 2, 0
    per_row = losses.get(lambda p, t: jnp.mean((p - t) ** 2, axis=1))
    elementwise = losses.get(lambda p, t: (p - t) ** 2)
    scalar = losses.get(lambda p, t: jnp.mean((p - t) ** 2))
    for loss in (per_row, elementwise, scalar):
        assert loss.name == "lambda"
        np.testing.assert_allclose(loss.per_example(p, t), expected, rtol=RTOL)
        np.testing.assert_allclose(jax.jit(loss.per_example)(p, t), expected, rtol=RTOL)
        np.testing.assert_allclose(loss(p, t, jnp.array([1.0, 0.0, 1.0])), 1.25, rtol=RTOL)


def test_custom_loss_options_are_bound_and_checked():
    def scaled(p, t, scale=1.0):
        return scale * jnp.mean((p - t) ** 2, axis=1)

    loss = losses.get(scaled, scale=2.0)
    assert dict(loss.kwargs) == {"scale": 2.0}
    np.testing.assert_allclose(loss.per_example(jnp.ones((2, 1)), jnp.zeros((2, 1))), [2.0, 2.0])
    with pytest.raises(
        ValueError,
        match=r"^loss 'scaled' has no option 'scal'; its options are \['scale'\]\. "
        r"Did you mean 'scale'\?$",
    ):
        losses.get(scaled, scal=2.0)
    with pytest.raises(ValueError, match=r"^loss 'lambda' has no option 'scale'; it takes no"):
        losses.get(lambda p, t: (p - t) ** 2, scale=2.0)


def test_building_blocks_for_metrics_are_public():
    """What jaxnn.metrics and custom losses build on is part of the documented interface."""
    for name in (
        "align",
        "check_batch",
        "compute_dtype",
        "function_name",
        "per_example_fn",
        "per_example_mean",
        "sparse_targets",
        "weighted_mean",
    ):
        assert name in losses.__all__
        assert getattr(losses, name).__doc__
    np.testing.assert_array_equal(losses.per_example_mean(jnp.ones((2, 3, 4))), [1.0, 1.0])
    with pytest.raises(ValueError, match=r"^x: predictions have 2 examples but targets have 3"):
        losses.check_batch("x", jnp.zeros((2, 1)), jnp.zeros(3))
    assert losses.function_name(lambda p, t: p) == "lambda"


def test_custom_loss_of_the_wrong_shape_is_rejected():
    def bad(p, t):
        return jnp.sum(p - t, axis=0)  # sums over the batch: shape (2,) for 3 examples

    with pytest.raises(ValueError, match=r"loss 'bad' returned \(2,\) for 3 examples"):
        losses.get(bad).per_example(jnp.zeros((3, 2)), jnp.zeros((3, 2)))


# ------------------------------------------------------- Keras's order and optax's


def keras_bce(y_true, y_pred):
    """Keras's custom-loss habit: targets first (the issue's silent wrong result)."""
    return -(y_true * jnp.log(y_pred) + (1.0 - y_true) * jnp.log(1.0 - y_pred))


def test_keras_and_optax_orders_are_read_from_the_names():
    p = jnp.array([[0.9], [0.2], [0.6]])
    t = jnp.array([[1.0], [0.0], [0.0]])
    expected = [-math.log(0.9), -math.log(0.8), -math.log(0.4)]
    np.testing.assert_allclose(losses.get(keras_bce).per_example(p, t), expected, rtol=1e-5)

    def optax_style(logits, labels):
        return jax.nn.softplus(logits) - labels * logits

    z = jnp.log(p / (1.0 - p))  # the same probabilities as logits
    np.testing.assert_allclose(losses.get(optax_style).per_example(z, t), expected, rtol=1e-5)
    # Whatever the words, the function receives the predictions where it names them.
    for fn in (
        lambda predictions, targets: predictions,
        lambda y_true, y_pred: y_pred,
        lambda labels, logits: logits,
        lambda output, target: output,
    ):
        assert losses.get(fn).per_example(p, t).tolist() == pytest.approx([0.9, 0.2, 0.6])


def test_an_ambiguous_signature_asks_for_the_order():
    with pytest.raises(
        ValueError,
        match=r"^loss 'lambda': cannot tell the order of its arguments from their names "
        r"\(a, b\)\. Keras calls a loss fn\(y_true, y_pred\), optax and jaxnn "
        r"fn\(predictions, targets\)\. Name them so \(y_true/y_pred, labels/logits, "
        r"targets/predictions\), or declare the order: nn\.losses\.get\(fn, order='keras'\) "
        r"for fn\(y_true, y_pred\), order='optax' for fn\(predictions, targets\)\.$",
    ):
        losses.get(lambda a, b: a - b)
    with pytest.raises(ValueError, match=r"loss 'f': cannot tell .* \(\*args\)"):

        def f(*args):
            return args[0]

        losses.get(f)
    p, t = jnp.array([[3.0]]), jnp.array([[1.0]])
    keras = losses.get(lambda a, b: b - a, order="keras")  # b is the prediction
    optax = losses.get(lambda a, b: a - b, order="optax")  # a is the prediction
    assert keras.per_example(p, t).tolist() == optax.per_example(p, t).tolist() == [2.0]


def test_order_is_refused_where_the_order_is_known():
    with pytest.raises(
        ValueError,
        match=r"^loss 'mse': order is for a function of your own \(its argument order\); a "
        r"name, a built-in loss or a Loss already takes \(predictions, targets\)\. Drop order\.$",
    ):
        losses.get("mse", order="keras")
    with pytest.raises(ValueError, match=r"^loss 'huber': order is for a function of your own"):
        losses.get(losses.huber, order="optax")
    with pytest.raises(
        ValueError,
        match=r"^loss 'keras_bce': order must be 'keras' \(fn\(y_true, y_pred\)\) or 'optax' "
        r"\(fn\(predictions, targets\)\), got 'torch'\.$",
    ):
        losses.get(keras_bce, order="torch")
