"""The helpers every layer family is built on (``jaxnn.layers._common``).

``param`` derives each leaf's key by name; ``stateless`` gives every parameterless layer
the same contract checks; ``resolve`` reports a bad name as a ``LayerError`` of the
layer; ``dropout`` is the one mask; ``check_positive`` has the words of
``jaxnn._checks.check_positive_int``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn
from jaxnn import activations, initializers
from jaxnn.core import LayerError, child_key
from jaxnn.layers._common import check_positive, dropout, param, resolve, stateless
from tests.registry import REGISTRY


def make_input(case):
    return jnp.zeros(case.shape, case.dtype)


# ------------------------------------------------------------------------------ param


def test_param_derives_the_key_from_the_name(key):
    init = initializers.get("glorot_uniform")
    kernel = param(key, "kernel", init, (3, 4), jnp.float32)
    np.testing.assert_array_equal(kernel, init(child_key(key, "kernel"), (3, 4), jnp.float32))
    assert kernel.shape == (3, 4) and kernel.dtype == jnp.float32
    other = param(key, "recurrent_kernel", init, (3, 4), jnp.float32)
    assert not np.array_equal(kernel, other)


def test_layers_create_their_leaves_with_param(key):
    """Dense, Conv, Embedding and the norms: each leaf is param(layer_key, leaf_name, ...)."""
    glorot, zeros, ones = (initializers.get(n) for n in ("glorot_uniform", "zeros", "ones"))
    params, _ = nn.Dense(3, bias_init="uniform").init(key, jnp.ones((2, 4)))
    np.testing.assert_array_equal(params["kernel"], param(key, "kernel", glorot, (4, 3), "float32"))
    uniform = initializers.get("uniform")
    np.testing.assert_array_equal(params["bias"], param(key, "bias", uniform, (3,), "float32"))
    params, _ = nn.Conv2D(2, 3).init(key, jnp.ones((1, 5, 5, 3)))
    np.testing.assert_array_equal(
        params["kernel"], param(key, "kernel", glorot, (3, 3, 3, 2), "float32")
    )
    params, _ = nn.Embedding(10, 4).init(key, jnp.ones((2,), jnp.int32))
    np.testing.assert_array_equal(
        params["embedding"], param(key, "embedding", uniform, (10, 4), "float32")
    )
    params, _ = nn.LayerNorm().init(key, jnp.ones((2, 4)))
    np.testing.assert_array_equal(params["scale"], param(key, "scale", ones, (4,), "float32"))
    np.testing.assert_array_equal(params["bias"], param(key, "bias", zeros, (4,), "float32"))


# -------------------------------------------------------------------------- stateless


def test_stateless_runs_check_and_fn(key):
    seen = []
    layer = stateless("Twice", lambda x: 2 * x, check=seen.append, name="twice")
    assert (layer.kind, layer.name) == ("Twice", "twice")
    x = jnp.ones((2, 3))
    assert layer.init(key, x) == ({}, {})
    y, state = layer.apply({}, {}, x)
    assert y.tolist() == [[2.0] * 3] * 2 and state == {}
    assert len(seen) == 2  # at init and in apply


def test_stateless_train_needs_a_key():
    layer = stateless(
        "Noisy", lambda x: x, train=lambda x, key: x + jax.random.normal(key, x.shape)
    )
    x = jnp.zeros((2, 3))
    assert layer.apply({}, {}, x, training=False)[0].tolist() == x.tolist()
    with pytest.raises(LayerError, match=r"^Noisy: training=True needs a key: pass key="):
        layer.apply({}, {}, x, training=True)
    y, _ = layer.apply({}, {}, x, key=jax.random.key(1), training=True)
    assert not np.array_equal(y, x)


PARAMETERLESS = [
    (name, case)
    for name, cases in sorted(REGISTRY.items())
    for case in cases
    if not case.make().children
    and jax.eval_shape(case.make().init, jax.random.key(0), make_input(case)) == ({}, {})
]


def test_every_parameterless_layer_is_covered():
    names = {name for name, _ in PARAMETERLESS}
    assert {"Activation", "Dropout", "Flatten", "Reshape", "MaxPool2D", "GlobalAvgPool"} <= names


@pytest.mark.parametrize(
    ("name", "case"), PARAMETERLESS, ids=[f"{n}-{c.id}" for n, c in PARAMETERLESS]
)
def test_parameterless_layers_check_params_and_state(name, case, key):
    layer = case.make()
    x = make_input(case)
    assert layer.init(key, x) == ({}, {})
    with pytest.raises(LayerError, match=rf"^{layer.kind}: params have entries \['kernel'\]"):
        layer.apply({"kernel": jnp.ones(2)}, {}, x)
    with pytest.raises(LayerError, match=rf"^{layer.kind}: state have entries \['mean'\]"):
        layer.apply({}, {"mean": jnp.ones(2)}, x)


# ---------------------------------------------------------------- resolve and checks


def test_resolve_names_the_layer():
    assert resolve("Dense", activations.get, "relu") is activations.get("relu")
    with pytest.raises(LayerError, match=r"^Conv2D: unknown initializer 'glorot'\. Did you mean"):
        resolve("Conv2D", initializers.get, "glorot")
    with pytest.raises(LayerError, match=r"^Dense: activation must be a name, a function or None"):
        resolve("Dense", activations.get, 3)


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "3", None])
def test_check_positive_refuses(value):
    with pytest.raises(
        LayerError, match=rf"^Dense: features must be a positive int, got {value!r}\.$"
    ):
        check_positive("Dense", "features", value)


def test_check_positive_accepts_numpy_ints():
    assert check_positive("Dense", "features", np.int64(3)) == 3
    assert isinstance(check_positive("Dense", "features", np.int32(3)), int)


def test_layer_errors_are_value_errors():
    """One class for a bad configuration value everywhere: LayerError, a ValueError."""
    for make in (
        lambda: nn.Dense(0),
        lambda: nn.Conv2D(4, 0),
        lambda: nn.MaxPool2D(2, padding="full"),
        lambda: nn.LSTM(3, recurrent_init="nope"),
        lambda: nn.Activation("nope"),
        lambda: nn.Repeat(nn.Dense(2), 0),
        lambda: nn.Parallel(nn.Dense(2), merge="sum"),
    ):
        with pytest.raises(LayerError) as info:
            make()
        assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------- dropout


def test_dropout_drops_at_rate_and_scales():
    x = jnp.ones((200, 50))
    y = dropout(jax.random.key(3), 0.3, x)
    kept = np.asarray(y) != 0
    # 10,000 Bernoulli(0.7) draws: the kept fraction's standard deviation is 0.0046.
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(y, dropout(jax.random.key(3), 0.3, x))
    assert dropout(jax.random.key(3), 0.3, x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_dropout_layer_uses_the_shared_mask():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6)), jnp.float32)
    k = jax.random.key(5)
    y, _ = nn.Dropout(0.25).apply({}, {}, x, key=k, training=True)
    np.testing.assert_array_equal(y, dropout(k, 0.25, x))
