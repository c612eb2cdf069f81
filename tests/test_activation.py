"""Activation layer, and every named activation against its NumPy formula.

Each name in ``jaxnn.activations.ACTIVATIONS`` is checked as an ``Activation`` layer,
as ``Dense(..., activation=name)`` and as a string inside ``Sequential``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.activations import ACTIVATIONS
from jaxnn.layers.activation import Activation


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def _hard_sigmoid(x):
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0


def _glu(x):
    a, b = np.split(x, 2, axis=-1)
    return a * _sigmoid(b)


def _gelu_tanh(x):
    # jax.nn.gelu defaults to the tanh approximation (approximate=True).
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

# The textbook definitions, in float64, written without jax.
REFERENCES = {
    "celu": lambda x: np.maximum(x, 0.0) + np.minimum(0.0, np.expm1(np.minimum(x, 0.0))),
    "elu": _elu,
    "exponential": np.exp,
    "gelu": _gelu_tanh,
    "glu": _glu,
    "hard_sigmoid": _hard_sigmoid,
    "hard_silu": lambda x: x * _hard_sigmoid(x),
    "hard_swish": lambda x: x * _hard_sigmoid(x),
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "identity": lambda x: x,
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "linear": lambda x: x,
    "log_sigmoid": lambda x: -_softplus(-x),
    "log_softmax": lambda x: np.log(_softmax(x)),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "selu": lambda x: _SELU_SCALE * _elu(x, _SELU_ALPHA),
    "sigmoid": _sigmoid,
    "silu": lambda x: x * _sigmoid(x),
    "soft_sign": lambda x: x / (1.0 + np.abs(x)),
    "softmax": _softmax,
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "sparse_plus": lambda x: np.where(x <= -1, 0.0, np.where(x >= 1, x, (x + 1.0) ** 2 / 4.0)),
    "sparse_sigmoid": lambda x: np.clip((x + 1.0) / 2.0, 0.0, 1.0),
    "squareplus": lambda x: (x + np.sqrt(x**2 + 4.0)) / 2.0,
    "swish": lambda x: x * _sigmoid(x),
    "tanh": np.tanh,
}

NAMES = sorted(ACTIVATIONS)

# float32 evaluation against a float64 formula: a few ulps of float32 (eps 1.2e-7) on
# values of order 1-10 (exp(3) for "exponential").
RTOL, ATOL = 1e-5, 1e-6


def test_every_activation_has_a_reference():
    missing = sorted(set(ACTIVATIONS) - set(REFERENCES))
    assert not missing, f"add a NumPy reference for the new activations {missing}"


@pytest.fixture
def x(rng):
    return (2.0 * rng.normal(size=(5, 6))).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_activation_layer_matches_formula(name, x, key):
    layer = Activation(name)
    params, state = layer.init(key, x)
    assert (params, state) == ({}, {})
    y, new_state = layer.apply(params, state, jnp.asarray(x))
    assert new_state == {}
    np.testing.assert_allclose(y, REFERENCES[name](x.astype(np.float64)), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_activation_in_dense_matches_formula(name, x, key):
    layer = jaxnn.Dense(4, activation=name)
    params, state = layer.init(key, x)
    y, _ = layer.apply(params, state, jnp.asarray(x))
    w = np.asarray(params["kernel"], np.float64)
    b = np.asarray(params["bias"], np.float64)
    expected = REFERENCES[name](x.astype(np.float64) @ w + b)
    assert y.shape == ((5, 2) if name == "glu" else (5, 4))  # glu halves the last axis
    # The matmul adds float32 rounding of the 6-term sums (about 1e-6 relative).
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_activation_name_in_sequential(name, x, key):
    model = jaxnn.Sequential(jaxnn.Dense(4), name)
    params, state = model.init(key, x)
    assert sorted(params) == ["dense"]
    y, _ = model.apply(params, state, jnp.asarray(x))
    w = np.asarray(params["dense"]["kernel"], np.float64)
    b = np.asarray(params["dense"]["bias"], np.float64)
    np.testing.assert_allclose(
        y, REFERENCES[name](x.astype(np.float64) @ w + b), rtol=1e-5, atol=1e-5
    )


def test_plain_function_in_sequential(x, key):
    model = jaxnn.Sequential(jaxnn.Dense(3), jax.nn.gelu)
    params, state = model.init(key, x)
    y, _ = model.apply(params, state, jnp.asarray(x))
    w = np.asarray(params["dense"]["kernel"], np.float64)
    b = np.asarray(params["dense"]["bias"], np.float64)
    np.testing.assert_allclose(y, _gelu_tanh(x.astype(np.float64) @ w + b), rtol=1e-5, atol=1e-5)


def test_activation_layer_is_named_activation_in_a_parent(x, key):
    model = jaxnn.Sequential(jaxnn.Dense(3), Activation("relu"), Activation("tanh", name="out"))
    assert [n for n, _ in model.children] == ["dense", "activation", "out"]
    assert Activation("relu").kind == "Activation"
    params, _ = model.init(key, x)
    assert sorted(params) == ["dense"]


def test_activation_accepts_any_function(x, key):
    layer = Activation(lambda v: 2.0 * v)
    params, state = layer.init(key, x)
    np.testing.assert_array_equal(layer.apply(params, state, jnp.asarray(x))[0], 2.0 * x)


def test_activation_names_are_case_insensitive(x, key):
    layer = Activation("ReLU")
    np.testing.assert_array_equal(layer.apply({}, {}, jnp.asarray(x))[0], np.maximum(x, 0))


def test_unknown_activation_lists_close_matches():
    with pytest.raises(
        jaxnn.LayerError, match=r"^Activation: unknown activation 'rleu'\. Did you mean 'relu'"
    ):
        Activation("rleu")


@pytest.mark.parametrize("bad", [None, 3])
def test_activation_rejects_non_functions(bad):
    with pytest.raises(jaxnn.LayerError, match=r"^Activation: .*(got None|got int)"):
        Activation(bad)


def test_activation_rejects_params(x):
    with pytest.raises(jaxnn.LayerError, match=r"params have entries \['kernel'\]"):
        Activation("relu").apply({"kernel": jnp.ones(2)}, {}, jnp.asarray(x))
