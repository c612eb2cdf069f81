"""Normalisation layers against their formulas, written in float64 NumPy.

The references loop over examples, groups and channels explicitly rather than sharing
the library's reshapes and reductions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.layers.norm import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RMSNorm

# float32 normalisation against float64: the inputs are O(1), the outputs O(3); the
# mean, variance and rsqrt each add a few ulps of float32 (1.2e-7). 1e-5 leaves margin.
TOL = {"rtol": 1e-5, "atol": 1e-5}


def random_affine(rng, features, names=("scale", "bias")):
    """Non-trivial scale and bias, so the affine step is checked too."""
    return {n: jnp.asarray(rng.normal(size=features), jnp.float32) for n in names}


def standardise(v, eps):
    """(v - mean) / sqrt(var + eps) over all of v, biased variance."""
    v = np.asarray(v, np.float64)
    return (v - v.mean()) / np.sqrt(((v - v.mean()) ** 2).mean() + eps)


def f64(a):
    return np.asarray(a, np.float64)


# --- BatchNorm ------------------------------------------------------------------------


def batch_norm_reference(x, params, mean, var, eps, axis=-1):
    """Per feature along ``axis``: (x - mean) / sqrt(var + eps) * scale + bias."""
    x = np.moveaxis(f64(x), axis, -1)
    y = np.empty_like(x)
    for c in range(x.shape[-1]):
        y[..., c] = (x[..., c] - mean[c]) / np.sqrt(var[c] + eps)
        y[..., c] = y[..., c] * (f64(params["scale"][c]) if "scale" in params else 1.0)
        y[..., c] = y[..., c] + (f64(params["bias"][c]) if "bias" in params else 0.0)
    return np.moveaxis(y, -1, axis)


def batch_stats(x, axis=-1):
    """Per-feature mean and biased variance of every value along the other axes."""
    x = np.moveaxis(f64(x), axis, -1).reshape(-1, x.shape[axis])
    return x.mean(axis=0), x.var(axis=0)  # np.var is the biased (1/N) variance


def test_batch_norm_init(key):
    params, state = BatchNorm().init(key, jnp.zeros((8, 5, 3)))
    np.testing.assert_array_equal(params["scale"], np.ones(3))
    np.testing.assert_array_equal(params["bias"], np.zeros(3))
    np.testing.assert_array_equal(state["mean"], np.zeros(3))
    np.testing.assert_array_equal(state["var"], np.ones(3))
    assert sorted(BatchNorm(use_scale=False).init(key, jnp.zeros((2, 3)))[0]) == ["bias"]
    assert BatchNorm(use_scale=False, use_bias=False).init(key, jnp.zeros((2, 3)))[0] == {}


@pytest.mark.parametrize(("shape", "axis"), [((16, 3), -1), ((4, 3, 3, 5), -1), ((6, 4, 3), 1)])
def test_batch_norm_training_uses_batch_statistics(shape, axis, rng, key):
    x = (2.0 * rng.normal(size=shape) + 1.5).astype(np.float32)
    layer = BatchNorm(momentum=0.9, epsilon=1e-3, axis=axis)
    params, state = layer.init(key, x)
    features = shape[axis]
    params = random_affine(rng, features)
    state = {
        "mean": jnp.asarray(rng.normal(size=features), jnp.float32),
        "var": jnp.asarray(rng.uniform(0.5, 2.0, size=features), jnp.float32),
    }
    y, new_state = layer.apply(params, state, jnp.asarray(x), training=True)
    mean, var = batch_stats(x, axis)
    np.testing.assert_allclose(y, batch_norm_reference(x, params, mean, var, 1e-3, axis), **TOL)
    np.testing.assert_allclose(new_state["mean"], 0.9 * f64(state["mean"]) + 0.1 * mean, **TOL)
    np.testing.assert_allclose(new_state["var"], 0.9 * f64(state["var"]) + 0.1 * var, **TOL)


def test_batch_norm_evaluation_uses_running_statistics(rng, key):
    x = rng.normal(size=(5, 4)).astype(np.float32)
    layer = BatchNorm(epsilon=1e-2)
    params = random_affine(rng, 4)
    state = {
        "mean": jnp.asarray(rng.normal(size=4), jnp.float32),
        "var": jnp.asarray(rng.uniform(0.5, 2.0, size=4), jnp.float32),
    }
    y, new_state = layer.apply(params, state, jnp.asarray(x), training=False)
    expected = batch_norm_reference(x, params, f64(state["mean"]), f64(state["var"]), 1e-2)
    np.testing.assert_allclose(y, expected, **TOL)
    jax.tree.map(np.testing.assert_array_equal, new_state, state)


def test_batch_norm_running_statistics_over_several_steps(rng, key):
    """Five training steps on shifting data, then evaluation on fresh data."""
    layer = BatchNorm(momentum=0.8, epsilon=1e-3)
    params, state = layer.init(key, jnp.zeros((32, 3)))
    step = jax.jit(lambda p, s, x: layer.apply(p, s, x, training=True))
    mean_ref, var_ref = np.zeros(3), np.ones(3)
    for i in range(5):
        x = (rng.normal(size=(32, 3)) * (1.0 + i) + 2.0 * i).astype(np.float32)
        _, state = step(params, state, jnp.asarray(x))
        batch_mean, batch_var = batch_stats(x)
        mean_ref = 0.8 * mean_ref + 0.2 * batch_mean  # momentum weighs the old value
        var_ref = 0.8 * var_ref + 0.2 * batch_var
    # Statistics of order 10 accumulated over five float32 updates.
    np.testing.assert_allclose(state["mean"], mean_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state["var"], var_ref, rtol=1e-5, atol=1e-5)
    x = rng.normal(size=(7, 3)).astype(np.float32)
    y, after = layer.apply(params, state, jnp.asarray(x))
    np.testing.assert_allclose(
        y, batch_norm_reference(x, params, mean_ref, var_ref, 1e-3), rtol=1e-5, atol=1e-5
    )
    jax.tree.map(np.testing.assert_array_equal, after, state)


def test_batch_norm_statistics_in_float32_for_bfloat16(rng, key):
    # Large mean, small spread: a bfloat16 sum or variance would lose the spread entirely.
    x = jnp.asarray(100.0 + rng.normal(size=(256, 2)), jnp.bfloat16)
    layer = BatchNorm(momentum=0.0)
    params, state = layer.init(key, x)
    y, new_state = layer.apply(params, state, x, training=True)
    assert y.dtype == jnp.bfloat16 and new_state["mean"].dtype == jnp.float32
    xs = f64(x.astype(jnp.float32))  # the exact values the layer saw
    mean, var = batch_stats(xs)
    # Float32 statistics of exact bfloat16 values: float32 accuracy.
    np.testing.assert_allclose(new_state["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(new_state["var"], var, rtol=1e-4)
    # The output is rounded to bfloat16 (8 bits: 4e-3 relative) once, on values of O(3).
    expected = batch_norm_reference(xs, params, mean, var, 1e-3)
    np.testing.assert_allclose(y.astype(jnp.float32), expected, rtol=1e-2, atol=2e-2)


def test_batch_norm_state_keeps_its_dtype(key):
    x = jnp.ones((4, 3), jnp.bfloat16)
    params, state = BatchNorm(param_dtype=jnp.bfloat16).init(key, x)
    _, new_state = BatchNorm(param_dtype=jnp.bfloat16).apply(params, state, x, training=True)
    assert new_state["mean"].dtype == jnp.bfloat16 and new_state["var"].dtype == jnp.bfloat16


def test_batch_norm_members_keep_their_own_statistics(key):
    layer = BatchNorm(momentum=0.0)
    xs = jnp.asarray(np.stack([np.full((4, 2), float(i)) + np.arange(2.0) for i in range(3)]))
    params, state = jax.vmap(layer.init, in_axes=(None, 0))(key, xs)
    _, new_state = jax.vmap(lambda p, s, x: layer.apply(p, s, x, training=True))(params, state, xs)
    np.testing.assert_allclose(new_state["mean"], [[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])


@pytest.mark.parametrize("momentum", [-0.1, 1.5, "0.9"])
def test_batch_norm_bad_momentum(momentum):
    with pytest.raises(jaxnn.LayerError, match=r"^BatchNorm: momentum .* must lie in \[0, 1\]"):
        BatchNorm(momentum)


@pytest.mark.parametrize("epsilon", [0.0, -1e-3])
def test_batch_norm_bad_epsilon(epsilon):
    with pytest.raises(jaxnn.LayerError, match=r"^BatchNorm: epsilon .* must be a positive"):
        BatchNorm(epsilon=epsilon)


@pytest.mark.parametrize("axis", [0, -3, 3, 7])
def test_batch_norm_bad_axis(axis, key):
    with pytest.raises(
        jaxnn.LayerError,
        match=rf"^BatchNorm: axis={axis} is not a feature axis of an input of shape \(2, 3, 4\)",
    ):
        BatchNorm(axis=axis).init(key, jnp.zeros((2, 3, 4)))


def test_batch_norm_needs_a_feature_axis(key):
    with pytest.raises(jaxnn.LayerError, match=r"^BatchNorm: .*at least 2 axes, got shape \(4,\)"):
        BatchNorm().init(key, jnp.zeros((4,)))


def test_batch_norm_state_of_another_width(key):
    params, state = BatchNorm().init(key, jnp.zeros((2, 3)))
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^BatchNorm: params entry 'scale' has shape \(3,\), but the input has 4 "
        r"features on its feature axis",
    ):
        BatchNorm().apply(params, state, jnp.zeros((2, 4)))


def test_batch_norm_missing_state(key):
    params, _ = BatchNorm().init(key, jnp.zeros((2, 3)))
    with pytest.raises(jaxnn.LayerError, match=r"^BatchNorm: state lack entries \['mean', 'var'\]"):
        BatchNorm().apply(params, {}, jnp.zeros((2, 3)))


def test_unknown_initializer():
    with pytest.raises(jaxnn.LayerError, match=r"^LayerNorm: unknown initializer 'one'"):
        LayerNorm(scale_init="one")


# --- LayerNorm, RMSNorm ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 5)])
def test_layer_norm_matches_formula(shape, rng, key):
    x = (3.0 * rng.normal(size=shape) - 1.0).astype(np.float32)
    layer = LayerNorm(epsilon=1e-6)
    params, state = layer.init(key, x)
    assert state == {} and params["scale"].shape == (shape[-1],)
    params = random_affine(rng, shape[-1])
    y, _ = layer.apply(params, state, jnp.asarray(x))
    expected = np.empty(shape)
    for idx in np.ndindex(*shape[:-1]):
        expected[idx] = standardise(x[idx], 1e-6) * f64(params["scale"]) + f64(params["bias"])
    np.testing.assert_allclose(y, expected, **TOL)


def test_layer_norm_without_affine(rng, key):
    x = rng.normal(size=(3, 4)).astype(np.float32)
    layer = LayerNorm(use_scale=False, use_bias=False)
    params, _ = layer.init(key, x)
    assert params == {}
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, [standardise(row, 1e-6) for row in x], **TOL)


def test_layer_norm_statistics_in_float32_for_bfloat16(rng, key):
    x = jnp.asarray(1000.0 + rng.normal(size=(4, 64)), jnp.bfloat16)
    layer = LayerNorm()
    params, _ = layer.init(key, x)
    y, _ = layer.apply(params, {}, x)
    assert y.dtype == jnp.bfloat16
    xs = f64(x.astype(jnp.float32))
    # One bfloat16 rounding (4e-3 relative) of outputs of O(3).
    np.testing.assert_allclose(
        y.astype(jnp.float32), [standardise(row, 1e-6) for row in xs], rtol=1e-2, atol=2e-2
    )


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 5)])
def test_rms_norm_matches_formula(shape, rng, key):
    x = (2.0 * rng.normal(size=shape) + 0.5).astype(np.float32)
    layer = RMSNorm(epsilon=1e-6)
    params, _ = layer.init(key, x)
    assert sorted(params) == ["scale"]
    params = random_affine(rng, shape[-1], ["scale"])
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    expected = np.empty(shape)
    for idx in np.ndindex(*shape[:-1]):
        v = f64(x[idx])
        expected[idx] = v / np.sqrt((v**2).mean() + 1e-6) * f64(params["scale"])
    np.testing.assert_allclose(y, expected, **TOL)


def test_rms_norm_params_of_another_width(key):
    params, _ = RMSNorm().init(key, jnp.zeros((2, 3)))
    with pytest.raises(
        jaxnn.LayerError, match=r"^RMSNorm: params entry 'scale' has shape \(3,\), but the input"
    ):
        RMSNorm().apply(params, {}, jnp.zeros((2, 5)))


# --- GroupNorm, InstanceNorm ----------------------------------------------------------


def group_norm_reference(x, params, groups, eps):
    x = f64(x)
    channels = x.shape[-1]
    size = channels // groups
    y = np.empty_like(x)
    for b in range(x.shape[0]):
        for g in range(groups):
            cs = slice(g * size, (g + 1) * size)
            y[b, ..., cs] = standardise(x[b, ..., cs], eps)
    return y * f64(params["scale"]) + f64(params["bias"])


@pytest.mark.parametrize(("shape", "groups"), [((2, 3, 3, 6), 2), ((3, 4, 6), 3), ((4, 8), 4)])
def test_group_norm_matches_formula(shape, groups, rng, key):
    x = (2.0 * rng.normal(size=shape) + 1.0).astype(np.float32)
    layer = GroupNorm(num_groups=groups, epsilon=1e-5)
    params, _ = layer.init(key, x)
    assert params["scale"].shape == (shape[-1],)
    params = random_affine(rng, shape[-1])
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, group_norm_reference(x, params, groups, 1e-5), **TOL)


def test_group_norm_channels_not_divisible(key):
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^GroupNorm: num_groups=4 does not divide the 6 channels of the input of shape "
        r"\(2, 5, 6\)\. Choose num_groups among \[1, 2, 3, 6\]",
    ):
        GroupNorm(num_groups=4).init(key, jnp.zeros((2, 5, 6)))


def test_group_norm_default_needs_32_groups(key):
    with pytest.raises(jaxnn.LayerError, match=r"^GroupNorm: num_groups=32 does not divide"):
        GroupNorm().init(key, jnp.zeros((2, 4, 4, 16)))


@pytest.mark.parametrize("groups", [0, -1, 2.0])
def test_group_norm_bad_num_groups(groups):
    with pytest.raises(jaxnn.LayerError, match=r"^GroupNorm: num_groups must be a positive"):
        GroupNorm(groups)


@pytest.mark.parametrize("shape", [(2, 4, 4, 3), (3, 5, 2)])
def test_instance_norm_matches_formula(shape, rng, key):
    x = (2.0 * rng.normal(size=shape) - 0.5).astype(np.float32)
    layer = InstanceNorm(epsilon=1e-5)
    params, _ = layer.init(key, x)
    params = random_affine(rng, shape[-1])
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    expected = np.empty(shape)
    for b in range(shape[0]):
        for c in range(shape[-1]):
            expected[b, ..., c] = standardise(x[b, ..., c], 1e-5)
    expected = expected * f64(params["scale"]) + f64(params["bias"])
    np.testing.assert_allclose(y, expected, **TOL)


def test_instance_norm_is_group_norm_with_one_channel_per_group(rng, key):
    x = jnp.asarray(rng.normal(size=(2, 5, 5, 4)), jnp.float32)
    params, _ = InstanceNorm().init(key, x)
    a, _ = InstanceNorm().apply(params, {}, x)
    b, _ = GroupNorm(num_groups=4).apply(params, {}, x)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)  # same maths, same float32 steps


def test_instance_norm_needs_a_spatial_axis(key):
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^InstanceNorm: expects an input of shape \(batch, \.\.spatial\.\., channels\) "
        r"with at least 3 axes, got shape \(4, 3\)",
    ):
        InstanceNorm().init(key, jnp.zeros((4, 3)))


@pytest.mark.parametrize("layer", [LayerNorm, RMSNorm, GroupNorm, InstanceNorm])
def test_stateless_norms_ignore_training(layer, rng, key):
    x = jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)
    make = (lambda: layer(num_groups=2)) if layer is GroupNorm else layer
    params, state = make().init(key, x)
    assert state == {}
    a, _ = make().apply(params, state, x, training=False)
    b, _ = make().apply(params, state, x, training=True)
    np.testing.assert_array_equal(a, b)
