"""Dense against a NumPy reference (``x @ W + b``, then the activation), and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from tests.test_activation import REFERENCES


def reference(x, params, activation="linear"):
    """``activation(x @ kernel + bias)`` in float64 NumPy."""
    y = np.asarray(x, np.float64) @ np.asarray(params["kernel"], np.float64)
    if "bias" in params:
        y = y + np.asarray(params["bias"], np.float64)
    return REFERENCES[activation](y)


def random_params(rng, shapes):
    """Params with non-trivial values, so a bias of zeros cannot hide a mistake."""
    return {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}


@pytest.mark.parametrize(
    ("shape", "activation"),
    [((4, 3), "linear"), ((4, 3), "relu"), ((2, 5, 3), "sigmoid"), ((2, 2, 2, 3), "tanh")],
)
def test_dense_matches_numpy(shape, activation, rng, key):
    layer = jaxnn.Dense(5, activation=activation)
    x = rng.normal(size=shape).astype(np.float32)
    params, state = layer.init(key, x)
    assert params["kernel"].shape == (3, 5) and params["bias"].shape == (5,)
    assert state == {}
    params = random_params(rng, {"kernel": (3, 5), "bias": (5,)})
    y, new_state = layer.apply(params, state, jnp.asarray(x))
    assert y.shape == (*shape[:-1], 5) and new_state == {}
    # float32 sums of 3 products of O(1) values against float64: a few ulps.
    np.testing.assert_allclose(y, reference(x, params, activation), rtol=1e-5, atol=1e-5)


def test_dense_without_bias(rng, key):
    layer = jaxnn.Dense(2, use_bias=False)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    params, _ = layer.init(key, x)
    assert sorted(params) == ["kernel"]
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, reference(x, params), rtol=1e-5, atol=1e-5)


def test_dense_accepts_a_function_activation(rng, key):
    layer = jaxnn.Dense(3, activation=jax.nn.softplus)
    x = rng.normal(size=(4, 2)).astype(np.float32)
    params, _ = layer.init(key, x)
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, reference(x, params, "softplus"), rtol=1e-5, atol=1e-5)


def test_default_init_is_glorot_uniform_with_zero_bias(key):
    params, _ = jaxnn.Dense(64).init(key, jnp.zeros((1, 32)))
    limit = np.sqrt(6.0 / (32 + 64))
    kernel = np.asarray(params["kernel"])
    assert np.abs(kernel).max() <= limit
    # A uniform on [-l, l] has standard deviation l / sqrt(3); 2048 draws pin it to ~2%.
    np.testing.assert_allclose(kernel.std(), limit / np.sqrt(3.0), rtol=0.05)
    np.testing.assert_array_equal(params["bias"], np.zeros(64))


def test_init_is_deterministic_per_key(key):
    a, _ = jaxnn.Dense(4).init(key, jnp.zeros((1, 3)))
    b, _ = jaxnn.Dense(4).init(key, jnp.zeros((1, 3)))
    c, _ = jaxnn.Dense(4).init(jax.random.key(1), jnp.zeros((1, 3)))
    np.testing.assert_array_equal(a["kernel"], b["kernel"])
    assert not np.array_equal(a["kernel"], c["kernel"])


def test_dense_dtypes(rng, key):
    x = rng.normal(size=(4, 3)).astype(np.float32)
    params, _ = jaxnn.Dense(2).init(key, x)
    assert params["kernel"].dtype == jnp.float32
    y, _ = jaxnn.Dense(2).apply(params, {}, jnp.asarray(x, jnp.bfloat16))
    assert y.dtype == jnp.bfloat16  # a bfloat16 input computes in bfloat16
    # bfloat16 rounds to 8 bits (4e-3 relative); x, W and the result each round: 3e-2.
    np.testing.assert_allclose(y.astype(np.float32), reference(x, params), rtol=3e-2, atol=3e-2)
    mixed = jaxnn.Dense(2, dtype=jnp.bfloat16, param_dtype=jnp.float32)
    p, _ = mixed.init(key, x)
    assert p["kernel"].dtype == jnp.float32
    assert mixed.apply(p, {}, jnp.asarray(x))[0].dtype == jnp.bfloat16


def test_wrong_feature_count(key):
    layer = jaxnn.Dense(2)
    params, state = layer.init(key, jnp.zeros((5, 4)))
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^Dense: input has 3 features, but the kernel was initialised for 4\. "
        r"Initialise with an input of shape \(batch, 3\)",
    ):
        layer.apply(params, state, jnp.zeros((5, 3)))


def test_wrong_feature_count_names_the_path(key):
    model = jaxnn.Sequential(jaxnn.Dense(4), jaxnn.Dense(2).named("head"))
    params, state = model.init(key, jnp.zeros((5, 3)))
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^Dense 'dense': input has 6 features, but the kernel was initialised for 3",
    ):
        model.apply(params, state, jnp.zeros((5, 6)))


@pytest.mark.parametrize("shape", [(), (4,)])
def test_wrong_rank(shape, key):
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^Dense: expects an input of shape \(batch, \.\.\., in_features\) with at least "
        r"2 axes, got shape",
    ):
        jaxnn.Dense(2).init(key, jnp.zeros(shape))


def test_params_from_a_wider_dense(key):
    params, state = jaxnn.Dense(5).init(key, jnp.zeros((2, 4)))
    with pytest.raises(
        jaxnn.LayerError,
        match=r"^Dense: kernel has shape \(4, 5\), but this layer has 3 features, so it "
        r"expects \(in_features, 3\)",
    ):
        jaxnn.Dense(3).apply(params, state, jnp.zeros((2, 4)))


def test_params_from_another_model(key):
    params, state = jaxnn.Sequential(jaxnn.Dense(3)).init(key, jnp.zeros((2, 4)))
    with pytest.raises(
        jaxnn.LayerError, match=r"^Dense: params have entries \['dense'\] that this layer"
    ):
        jaxnn.Dense(3).apply(params, state, jnp.zeros((2, 4)))


def test_params_without_bias(key):
    params, _ = jaxnn.Dense(3, use_bias=False).init(key, jnp.zeros((2, 4)))
    with pytest.raises(jaxnn.LayerError, match=r"^Dense: params lack entries \['bias'\]"):
        jaxnn.Dense(3).apply(params, {}, jnp.zeros((2, 4)))


def test_unknown_activation():
    with pytest.raises(
        jaxnn.LayerError, match=r"^Dense: unknown activation 'rleu'\. Did you mean 'relu'"
    ):
        jaxnn.Dense(3, activation="rleu")


def test_unknown_initializer():
    with pytest.raises(
        jaxnn.LayerError, match=r"^Dense: unknown initializer 'glorot'\. Did you mean"
    ):
        jaxnn.Dense(3, kernel_init="glorot")


@pytest.mark.parametrize("features", [0, -2, 2.5, True])
def test_bad_features(features):
    with pytest.raises(
        jaxnn.LayerError, match=rf"^Dense: features must be a positive int, got {features!r}\.$"
    ):
        jaxnn.Dense(features)


@pytest.mark.parametrize("shape", [(10, 4), (3, 2, 4), (2**13, 4)], ids=["small", "3d", "large"])
def test_kernel_gradient_matches_numpy_in_both_modes_and_under_vmap(shape, rng, key):
    # Small inputs take the kernel gradient from a transposed copy of x (a custom JVP,
    # fast under vmap); large ones the plain product. Both must give x^T g exactly as
    # NumPy does, forward and reverse, for one network and for a vmapped population.
    layer = jaxnn.Dense(5)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    params, state = layer.init(key, x)
    g = rng.normal(size=(*shape[:-1], 5))
    expected = np.asarray(x, np.float64).reshape(-1, 4).T @ g.reshape(-1, 5)

    def objective(kernel, x):
        y, _ = layer.apply({**params, "kernel": kernel}, state, x)
        return jnp.sum(y * jnp.asarray(g, jnp.float32))

    kernel = params["kernel"]
    np.testing.assert_allclose(jax.grad(objective)(kernel, x), expected, rtol=1e-5, atol=1e-4)
    forward = jax.jacfwd(objective)(kernel, x)
    np.testing.assert_allclose(forward, expected, rtol=1e-5, atol=1e-4)
    members = jax.vmap(jax.grad(objective))(jnp.stack([kernel, 2 * kernel]), jnp.stack([x, -x]))
    np.testing.assert_allclose(members[0], expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(members[1], -expected, rtol=1e-5, atol=1e-4)
    # The input's gradient is untouched: g @ kernel^T.
    x_grad = jax.grad(objective, argnums=1)(kernel, x)
    np.testing.assert_allclose(x_grad, g @ np.asarray(kernel, np.float64).T, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("shape", "features", "transposed"),
    [((10, 4), 5, True), ((2, 5, 4), 5, True), ((2**13, 4), 5, False), ((10, 4), 1, False)],
    ids=["small", "3d", "large", "one-feature"],
)
def test_small_inputs_take_the_kernel_tangent_from_a_transposed_copy(
    shape, features, transposed, rng, key
):
    # A small input (at most SMALL_INPUT elements and FEW_IN_FEATURES features, into
    # more than one feature) gives the kernel's tangent from a copy of x laid out
    # (in_features, rows), kept behind an optimization barrier; others the plain
    # product. Either way a jvp in both inputs is x dW + dx W, and the rule is itself
    # differentiable: forward over reverse gives the Hessian-vector product x^T x V.
    from jaxnn.layers.dense import FEW_IN_FEATURES, SMALL_INPUT

    small = np.prod(shape) <= SMALL_INPUT and shape[-1] <= FEW_IN_FEATURES
    assert (small and features > 1) == transposed
    layer = jaxnn.Dense(features)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    params, state = layer.init(key, x)
    kernel = params["kernel"]
    apply = lambda x, kernel: layer.apply({**params, "kernel": kernel}, state, x)[0]
    grad = jax.grad(lambda kernel: jnp.sum(apply(x, kernel) ** 2) / 2)
    assert ("optimization_barrier" in str(jax.make_jaxpr(grad)(kernel))) == transposed

    dx = jnp.asarray(rng.normal(size=shape), jnp.float32)
    dk = jnp.asarray(rng.normal(size=(4, features)), jnp.float32)
    y, dy = jax.jvp(apply, (x, kernel), (dx, dk))
    x64, dx64 = np.asarray(x, np.float64), np.asarray(dx, np.float64)
    kernel64, dk64 = np.asarray(kernel, np.float64), np.asarray(dk, np.float64)
    rows = x64.reshape(-1, 4)
    np.testing.assert_allclose(y, reference(x, params), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dy, x64 @ dk64 + dx64 @ kernel64, rtol=1e-5, atol=1e-4)
    _, hvp = jax.jvp(grad, (kernel,), (dk,))
    np.testing.assert_allclose(hvp, rows.T @ rows @ dk64, rtol=1e-4, atol=1e-2)
