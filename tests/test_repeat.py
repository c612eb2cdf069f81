"""Repeat: equals the unrolled stack of the same layers with the same params."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn
from jaxnn.core import Layer, LayerError, child_key
from jaxnn.layers.attention import MultiHeadAttention
from jaxnn.layers.dropout import Dropout
from jaxnn.layers.norm import BatchNorm, LayerNorm
from jaxnn.repeat import Repeat

# Same float32 operations in the same order, scan or not; XLA may fuse differently.
TOL = dict(rtol=1e-5, atol=1e-6)


def data(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def unrolled(layer, n, params, state, x, *, keys=None, training=False):
    """Copy after copy in Python, each with its slice of the stacked params and state."""
    states = []
    for i in range(n):
        p_i, s_i = jax.tree.map(lambda a, i=i: a[i], (params, state))
        k_i = None if keys is None else keys[i]
        x, s_new = layer.apply(p_i, s_i, x, key=k_i, training=training)
        states.append(s_new)
    return x, jax.tree.map(lambda *a: jnp.stack(a), *states) if states[0] else {}


def sequential_of(layer, n, params):
    """A Sequential of n copies, with its params built from the stacked ones."""
    model = nn.Sequential([layer.named(f"copy_{i}") for i in range(n)])
    seq_params = {f"copy_{i}": jax.tree.map(lambda a, i=i: a[i], params) for i in range(n)}
    return model, seq_params


def block():
    """A pre-norm transformer block, as in the conformance registry (tests/cases_attention.py).

    Every kernel is drawn as an 8 x 8 matrix (attention reshapes its own), so the
    initializer compiles once for all of them.
    """
    return nn.Sequential(
        nn.Residual(nn.Sequential(LayerNorm(), MultiHeadAttention(2, causal=True))),
        nn.Residual(nn.Sequential(LayerNorm(), nn.Dense(8, "gelu"), nn.Dense(8))),
    )


# Three plain copies check the slicing of every copy's params (first, middle, last); the
# block checks nested params, with two copies to keep its compilation short.
@pytest.mark.parametrize(
    ("make", "n", "shape"),
    [(lambda: nn.Dense(6, "tanh"), 3, (4, 6)), (block, 2, (2, 5, 8))],
    ids=["dense", "transformer_block"],
)
def test_equals_sequential_of_the_same_params(make, n, shape):
    layer = make()
    stack = Repeat(layer, n)
    x = data(shape)
    params, state = stack.init(jax.random.key(0), x)
    (child_name,) = params
    model, seq_params = sequential_of(layer, n, params[child_name])
    expected, _ = jax.jit(model.apply)(seq_params, {}, x)
    y, new_state = jax.jit(stack.apply)(params, state, x)
    np.testing.assert_allclose(y, expected, **TOL)
    assert new_state == {}

    def loss_repeat(p):
        return jnp.sum(stack.apply(p, state, x)[0] ** 2)

    def loss_seq(p):
        return jnp.sum(model.apply(p, {}, x)[0] ** 2)

    g_repeat = jax.jit(jax.grad(loss_repeat))(params)[child_name]
    g_seq = jax.jit(jax.grad(loss_seq))(seq_params)
    for i in range(n):
        jax.tree.map(
            # Gradients are sums of O(1) terms; a few float32 ulps of those is ~1e-6.
            lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-5),
            g_repeat,
            g_seq[f"copy_{i}"],
        )


def test_init_stacks_distinct_copies():
    stack = Repeat(nn.Dense(5), 3, name="tower")
    params, state = stack.init(jax.random.key(0), data((2, 5)))
    assert state == {}
    assert jax.tree.map(lambda a: a.shape, params) == {
        "dense": {"kernel": (3, 5, 5), "bias": (3, 5)}
    }
    kernels = params["dense"]["kernel"]
    assert not np.allclose(kernels[0], kernels[1]) and not np.allclose(kernels[1], kernels[2])
    # Copy i is the layer's init with the i-th key split from the key of its name.
    keys = jax.random.split(child_key(jax.random.key(0), "dense"), 3)
    one, _ = nn.Dense(5).init(keys[2], data((2, 5)))
    np.testing.assert_array_equal(kernels[2], one["kernel"])


def test_init_needs_no_data():
    stack = Repeat(block(), 2)
    spec = jax.ShapeDtypeStruct((2, 5, 8), jnp.float32)
    a = stack.init(jax.random.key(0), spec)
    b = stack.init(jax.random.key(0), data((2, 5, 8)))
    jax.tree.map(np.testing.assert_array_equal, a, b)


def unroll_layer():
    return nn.Sequential(nn.Dense(6, "tanh"), Dropout(0.3))


@functools.cache
def rolled_outputs():
    """Three copies run by the rolled scan, in both modes (made once, shared)."""
    x = data((4, 6))
    rolled = Repeat(unroll_layer(), 3)
    params, state = rolled.init(jax.random.key(0), x)
    key = jax.random.key(4)
    outputs = {t: rolled.apply(params, state, x, key=key, training=t)[0] for t in (False, True)}
    return x, params, state, key, outputs


# True: all copies in straight-line code; 2: two copies per iteration and a remainder.
@pytest.mark.parametrize("unroll", [True, 2])
def test_unroll_equals_scan(unroll):
    x, params, state, key, rolled = rolled_outputs()
    for training, a in rolled.items():
        b = Repeat(unroll_layer(), 3, unroll=unroll).apply(
            params, state, x, key=key, training=training
        )
        np.testing.assert_allclose(a, b[0], **TOL)


def test_each_copy_gets_its_own_key():
    def init(key, x):
        del key, x
        return {}, {"draw": jnp.zeros(())}

    def apply(params, state, x, *, key=None, training=False):
        del params, state, training
        draw = jnp.zeros(()) if key is None else jax.random.uniform(key, ())
        return x, {"draw": draw}

    probe = Layer(init, apply, "Probe")
    stack = Repeat(probe, 4)
    x = data((2, 3))
    params, state = stack.init(jax.random.key(0), x)
    assert state["probe"]["draw"].shape == (4,)
    key = jax.random.key(1)
    _, new_state = stack.apply(params, state, x, key=key, training=True)
    draws = np.asarray(new_state["probe"]["draw"])
    assert len(set(draws.tolist())) == 4
    keys = jax.random.split(child_key(key, "probe"), 4)
    np.testing.assert_array_equal(draws, [jax.random.uniform(k, ()) for k in keys])


def test_dropout_matches_unrolled_with_the_same_keys():
    layer = nn.Sequential(nn.Dense(6, "tanh"), Dropout(0.5))
    stack = Repeat(layer, 3)
    x = data((4, 6))
    params, state = stack.init(jax.random.key(0), x)
    key = jax.random.key(9)
    y, _ = stack.apply(params, state, x, key=key, training=True)
    keys = jax.random.split(child_key(key, "sequential"), 3)
    expected, _ = unrolled(layer, 3, params["sequential"], {}, x, keys=keys, training=True)
    np.testing.assert_allclose(y, expected, **TOL)
    with pytest.raises(
        LayerError, match=r"Dropout 'sequential/dropout': training=True needs a key"
    ):
        stack.apply(params, state, x, training=True)


def test_state_is_per_copy():
    layer = nn.Sequential(nn.Dense(5), BatchNorm(), "tanh")
    stack = Repeat(layer, 3)
    x = data((8, 5))
    params, state = stack.init(jax.random.key(0), x)
    assert jax.tree.map(lambda a: a.shape[0], state) == jax.tree.map(lambda a: 3, state)
    y, new_state = jax.jit(lambda p, s, x: stack.apply(p, s, x, training=True))(params, state, x)
    expected, expected_state = unrolled(
        layer, 3, params["sequential"], state["sequential"], x, training=True
    )
    np.testing.assert_allclose(y, expected, **TOL)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, **TOL),
        new_state["sequential"],
        expected_state,
    )
    means = jax.tree.leaves(new_state)[0]
    assert not np.allclose(means[0], means[1])  # each copy tracked its own statistics


def test_plain_function():
    y, _ = Repeat(jnp.tanh, 3).apply({}, {}, data((2, 3)))
    np.testing.assert_allclose(y, jnp.tanh(jnp.tanh(jnp.tanh(data((2, 3))))), **TOL)


def test_block_is_traced_once():
    traces = []

    def init(key, x):
        return {"w": jax.random.normal(key, (x.shape[-1],))}, {}

    def apply(params, state, x, *, key=None, training=False):
        traces.append(1)
        return x * params["w"][None], state

    scale = Layer(init, apply, "Scale")
    x = data((2, 4))
    for stack, expected_traces in [(Repeat(scale, 16), 1), (Repeat(scale, 16, unroll=True), 1)]:
        params, state = stack.init(jax.random.key(0), x)
        traces.clear()
        jax.jit(stack.apply)(params, state, x)
        assert len(traces) == expected_traces


def test_nested_paths_in_errors():
    model = nn.Sequential(nn.Dense(4), Repeat(nn.Dense(3), 2, name="tower"))
    with pytest.raises(
        LayerError,
        match=r"Repeat 'tower': the repeated layer maps \(\(2, 4\), 'float32'\) to "
        r"\(\(2, 3\), 'float32'\).*keep its input's shape and dtype",
    ):
        model.init(jax.random.key(0), data((2, 5)))


def test_dtype_change_is_an_error():
    with pytest.raises(LayerError, match=r"'bfloat16'.*keep its input's shape and dtype"):
        Repeat(nn.Dense(3, dtype=jnp.bfloat16), 2).init(jax.random.key(0), data((2, 3)))


def test_config_errors():
    with pytest.raises(
        LayerError, match=r"^Repeat: n \(the number of copies\) must be a positive int, got 0\.$"
    ):
        Repeat(nn.Dense(3), 0)
    with pytest.raises(
        LayerError, match=r"n \(the number of copies\) must be a positive int, got 2\.0"
    ):
        Repeat(nn.Dense(3), 2.0)
    with pytest.raises(LayerError, match=r"unroll must be a bool .* got 0"):
        Repeat(nn.Dense(3), 2, unroll=0)


def test_params_without_the_stacked_axis():
    stack = Repeat(nn.Dense(3), 4)
    x = data((2, 3))
    params, state = stack.init(jax.random.key(0), x)
    single = jax.tree.map(lambda a: a[0], params)
    with pytest.raises(
        LayerError, match=r"params leaf dense/bias has shape \(3,\), but this layer repeats 4"
    ):
        stack.apply(single, state, x)
    with pytest.raises(LayerError, match=r"params have entries \['dense_1'\]"):
        stack.apply({"dense_1": params["dense"]}, state, x)
