"""Recurrent layers against the textbook equations, written step by step in NumPy.

The references loop over time in float64 on each example's *unpadded* sequence alone
(reversed explicitly for the backward direction), so they share nothing with the
``lax.scan``/masking code under test. jaxnn computes in float32; over a handful of
tanh/sigmoid steps with O(1) values the float32 rounding stays below 1e-5, hence
``rtol=atol=2e-5`` throughout.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import LayerError, Sequential
from jaxnn.layers.recurrent import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    GRUCell,
    LSTMCell,
    SimpleRNN,
    SimpleRNNCell,
)

TOL = {"rtol": 2e-5, "atol": 2e-5}
B, T, F, U = 3, 6, 4, 5


# ----------------------------------------------------------------- NumPy references


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_params(params):
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def simple_step(p, carry, x, act=np.tanh):
    (h,) = carry
    h = act(x @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"])
    return (h,), h


def lstm_step(p, carry, x):
    h, c = carry
    W, V, b = p["kernel"], p["recurrent_kernel"], p["bias"]
    gate = {}
    for k, g in enumerate("ifgo"):
        sl = slice(k * U, (k + 1) * U)
        gate[g] = x @ W[:, sl] + h @ V[:, sl] + b[sl]
    i, f, o = sigmoid(gate["i"]), sigmoid(gate["f"]), sigmoid(gate["o"])
    g = np.tanh(gate["g"])
    c = f * c + i * g
    h = o * np.tanh(c)
    return (h, c), h


def gru_step(p, carry, x):
    (h,) = carry
    W, V, b, d = p["kernel"], p["recurrent_kernel"], p["bias"], p["recurrent_bias"]
    z_, r_, n_ = (slice(k * U, (k + 1) * U) for k in range(3))
    z = sigmoid(x @ W[:, z_] + b[z_] + h @ V[:, z_] + d[z_])
    r = sigmoid(x @ W[:, r_] + b[r_] + h @ V[:, r_] + d[r_])
    n = np.tanh(x @ W[:, n_] + b[n_] + r * (h @ V[:, n_] + d[n_]))
    h = z * h + (1 - z) * n
    return (h,), h


def reference(step, params, x, lengths=None, reverse=False, carry0=None):
    """Runs ``step`` on each example's real steps alone; returns (ys, last, carry)."""
    p = np_params(params)
    x = np.asarray(x, np.float64)
    batch, time, _ = x.shape
    lengths = [time] * batch if lengths is None else [min(max(int(n), 0), time) for n in lengths]
    ys = np.zeros((batch, time, U))
    last = np.zeros((batch, U))
    carries = []
    for b in range(batch):
        n = lengths[b]
        order = list(range(n))[::-1] if reverse else list(range(n))
        if carry0 is None:
            carry = tuple(np.zeros(U) for _ in range(2 if step is lstm_step else 1))
        else:
            carry = carry0[b]
        for t in order:
            carry, y = step(p, carry, x[b, t])
            ys[b, t] = y
            last[b] = y
        carries.append(carry)
    return ys, last, carries


CELLS = {
    "simple": (SimpleRNNCell, SimpleRNN, simple_step),
    "lstm": (LSTMCell, LSTM, lstm_step),
    "gru": (GRUCell, GRU, gru_step),
}


def data(seed=0, shape=(B, T, F)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def random_params(layer, x, seed=0):
    """Init, then perturb every param so zero biases do not hide a mistake."""
    params, state = layer.init(jax.random.key(seed), x)
    rng = np.random.default_rng(seed + 100)
    params = {
        k: v + jnp.asarray(0.3 * rng.normal(size=v.shape), v.dtype) for k, v in params.items()
    }
    return params, state


def carry_tuple(carry, b):
    names = ("h", "c") if "c" in carry else ("h",)
    return tuple(np.asarray(carry[n][b], np.float64) for n in names)


# ----------------------------------------------------------------- against references


@pytest.mark.parametrize("which", sorted(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
def test_matches_textbook_equations(which, reverse):
    _, make, step = CELLS[which]
    x = data()
    seq = make(U, return_sequences=True, return_carry=True, reverse=reverse)
    last = make(U, reverse=reverse)
    params, state = random_params(seq, x)
    (ys, carry), _ = seq.apply(params, state, x)
    y_last, _ = last.apply(params, state, x)
    ref_ys, ref_last, ref_carry = reference(step, params, x, reverse=reverse)
    np.testing.assert_allclose(ys, ref_ys, **TOL)
    np.testing.assert_allclose(y_last, ref_last, **TOL)
    for b in range(B):
        for got, want in zip(carry_tuple(carry, b), ref_carry[b], strict=True):
            np.testing.assert_allclose(got, want, **TOL)


def test_rnn_of_a_cell_equals_the_named_layer():
    x = data()
    params, state = random_params(LSTM(U), x)
    a, _ = RNN(LSTMCell(U), return_sequences=True).apply(params, state, x)
    b, _ = LSTM(U, return_sequences=True).apply(params, state, x)
    np.testing.assert_array_equal(a, b)


def test_simple_rnn_activation():
    x = data()
    layer = SimpleRNN(U, "relu", return_sequences=True)
    params, state = random_params(layer, x)
    ys, _ = layer.apply(params, state, x)
    ref, _, _ = reference(
        lambda p, c, x: simple_step(p, c, x, act=lambda z: np.maximum(z, 0)), params, x
    )
    np.testing.assert_allclose(ys, ref, **TOL)


@pytest.mark.parametrize("which", sorted(CELLS))
def test_initial_carry(which):
    cell_fn, make, step = CELLS[which]
    x = data()
    layer = make(U, return_sequences=True)
    params, state = random_params(layer, x)
    zero = cell_fn(U).initial_carry(B, jnp.float32)
    rng = np.random.default_rng(3)
    carry = {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in zero.items()}
    ys, _ = layer.apply(params, state, {"inputs": x, "initial_carry": carry})
    ref, _, _ = reference(step, params, x, carry0=[carry_tuple(carry, b) for b in range(B)])
    np.testing.assert_allclose(ys, ref, **TOL)


def test_cell_step_is_one_step_of_the_layer():
    cell = GRUCell(U)
    x = data()
    params = cell.init(jax.random.key(0), F)
    carry, y = cell.step(params, cell.initial_carry(B, jnp.float32), x[:, 0])
    ys, _ = RNN(cell, return_sequences=True).apply(params, {}, x)
    np.testing.assert_allclose(y, ys[:, 0], **TOL)
    np.testing.assert_allclose(carry["h"], ys[:, 0], **TOL)


@pytest.mark.parametrize("merge", ["concat", "add", "mul", "mean", "stack", None, "fn"])
def test_bidirectional_matches_two_references(merge):
    x = data()
    lengths = np.array([6, 3, 0])
    how = (lambda ys: ys[0] - ys[1]) if merge == "fn" else merge
    layer = Bidirectional(LSTMCell(U), how, return_sequences=True)
    params, state = layer.init(jax.random.key(0), x)
    params = {d: random_params(LSTM(U), x, seed=i)[0] for i, d in enumerate(params)}
    ys, _ = layer.apply(params, state, {"inputs": x, "lengths": jnp.asarray(lengths)})
    fwd, _, _ = reference(lstm_step, params["forward"], x, lengths)
    bwd, _, _ = reference(lstm_step, params["backward"], x, lengths, reverse=True)
    want = {
        "concat": np.concatenate([fwd, bwd], axis=-1),
        "add": fwd + bwd,
        "mul": fwd * bwd,
        "mean": (fwd + bwd) / 2,
        "stack": np.stack([fwd, bwd], axis=-1),
        None: (fwd, bwd),
        "fn": fwd - bwd,
    }[merge]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), ys, want)


def test_bidirectional_last_outputs_and_carry():
    x = data()
    lengths = np.array([6, 2, 4])
    layer = Bidirectional(GRUCell(U), return_carry=True)
    params, state = layer.init(jax.random.key(0), x)
    params = {d: random_params(GRU(U), x, seed=i)[0] for i, d in enumerate(params)}
    (y, carry), _ = layer.apply(params, state, {"inputs": x, "lengths": jnp.asarray(lengths)})
    _, fwd, fwd_c = reference(gru_step, params["forward"], x, lengths)
    _, bwd, bwd_c = reference(gru_step, params["backward"], x, lengths, reverse=True)
    np.testing.assert_allclose(y, np.concatenate([fwd, bwd], axis=-1), **TOL)
    np.testing.assert_allclose(carry["forward"]["h"], np.stack([c[0] for c in fwd_c]), **TOL)
    np.testing.assert_allclose(carry["backward"]["h"], np.stack([c[0] for c in bwd_c]), **TOL)


def test_bidirectional_of_a_cell_uses_rnn_defaults():
    x = data()
    layer = Bidirectional(SimpleRNNCell(U))
    params, state = layer.init(jax.random.key(0), x)
    y, _ = layer.apply(params, state, x)
    _, fwd, _ = reference(simple_step, params["forward"], x)
    _, bwd, _ = reference(simple_step, params["backward"], x, reverse=True)
    np.testing.assert_allclose(y, np.concatenate([fwd, bwd], axis=-1), **TOL)


# ----------------------------------------------------------------- padding and lengths


@pytest.mark.parametrize("which", sorted(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
def test_padding_neither_changes_carry_nor_leaks(which, reverse):
    _, make, step = CELLS[which]
    x = data()
    lengths = np.array([6, 2, 0])
    real = np.arange(T)[None, :] < lengths[:, None]
    x_other = jnp.where(real[..., None], x, data(seed=9) * 100)  # new padding values
    seq = make(U, return_sequences=True, return_carry=True, reverse=reverse)
    last = make(U, reverse=reverse)
    params, state = random_params(seq, x)

    # Each layer is compiled once for both inputs (jit equals eager: test_conformance).
    seq_apply, last_apply = jax.jit(seq.apply), jax.jit(last.apply)

    def run(apply, inputs):
        return apply(params, state, {"inputs": inputs, "lengths": jnp.asarray(lengths)})[0]

    (ys, carry), y_last = run(seq_apply, x), run(last_apply, x)
    (ys2, carry2), y_last2 = run(seq_apply, x_other), run(last_apply, x_other)
    # Padding values do not matter ...
    np.testing.assert_array_equal(ys, ys2)
    np.testing.assert_array_equal(y_last, y_last2)
    jax.tree.map(np.testing.assert_array_equal, carry, carry2)
    # ... padded outputs are zeros ...
    np.testing.assert_array_equal(np.asarray(ys)[~real], 0.0)
    # ... and each example equals its unpadded sequence run alone, through the layer
    for b, n in enumerate(lengths):
        if n == 0:
            np.testing.assert_array_equal(y_last[b], 0.0)
            continue
        (alone, alone_carry), _ = seq.apply(params, state, x[b : b + 1, :n])
        np.testing.assert_allclose(ys[b, :n], alone[0], **TOL)
        np.testing.assert_allclose(y_last[b], alone[0, 0 if reverse else n - 1], **TOL)
        jax.tree.map(
            lambda a, c, b=b: np.testing.assert_allclose(a[b], c[0], **TOL), carry, alone_carry
        )
    # ... and through the NumPy reference.
    ref_ys, ref_last, _ = reference(step, params, x, lengths, reverse=reverse)
    np.testing.assert_allclose(ys, ref_ys, **TOL)
    np.testing.assert_allclose(y_last, ref_last, **TOL)


def test_padding_gets_no_gradient():
    x = data()
    lengths = jnp.asarray([4, 6, 1])
    layer = LSTM(U, reverse=True)
    params, state = layer.init(jax.random.key(0), x)

    def loss(x):
        return jnp.sum(layer.apply(params, state, {"inputs": x, "lengths": lengths})[0] ** 2)

    g = np.asarray(jax.grad(loss)(x))
    real = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    np.testing.assert_array_equal(g[~real], 0.0)
    assert np.abs(g[real]).min() > 0


def test_lengths_beyond_time_are_clipped():
    x = data()
    layer = GRU(U, return_sequences=True)
    params, state = layer.init(jax.random.key(0), x)
    full, _ = layer.apply(params, state, x)
    clipped, _ = layer.apply(params, state, {"inputs": x, "lengths": jnp.asarray([T, T + 3, 99])})
    # The masked path fuses differently: equal up to float32 rounding.
    np.testing.assert_allclose(full, clipped, **TOL)


def test_lengths_under_jit_compile_once():
    x = data()
    layer = LSTM(U)
    params, state = layer.init(jax.random.key(0), x)
    traces = []

    @jax.jit
    def f(params, x, lengths):
        traces.append(1)
        return layer.apply(params, state, {"inputs": x, "lengths": lengths})[0]

    a = f(params, x, jnp.asarray([6, 2, 3]))
    b = f(params, x, jnp.asarray([1, 5, 6]))
    assert len(traces) == 1
    _, ref_a, _ = reference(lstm_step, params, x, [6, 2, 3])
    _, ref_b, _ = reference(lstm_step, params, x, [1, 5, 6])
    np.testing.assert_allclose(a, ref_a, **TOL)
    np.testing.assert_allclose(b, ref_b, **TOL)


@pytest.mark.parametrize("unroll", [2, 4, True])
def test_unroll_gives_the_same_result(unroll):
    x = data()
    base = GRU(U, return_sequences=True)
    params, state = base.init(jax.random.key(0), x)
    lengths = jnp.asarray([5, 6, 2])
    want, _ = base.apply(params, state, {"inputs": x, "lengths": lengths})
    got, _ = GRU(U, return_sequences=True, unroll=unroll).apply(
        params, state, {"inputs": x, "lengths": lengths}
    )
    np.testing.assert_allclose(got, want, **TOL)


# ----------------------------------------------------------------- params, names, dtypes


def test_param_shapes_and_lstm_forget_bias():
    x = data()
    lstm, _ = LSTM(U).init(jax.random.key(0), x)
    assert {k: v.shape for k, v in lstm.items()} == {
        "kernel": (F, 4 * U),
        "recurrent_kernel": (U, 4 * U),
        "bias": (4 * U,),
    }
    want_bias = np.r_[np.zeros(U), np.ones(U), np.zeros(2 * U)]
    np.testing.assert_array_equal(lstm["bias"], want_bias)
    gru, _ = GRU(U).init(jax.random.key(0), x)
    assert {k: v.shape for k, v in gru.items()} == {
        "kernel": (F, 3 * U),
        "recurrent_kernel": (U, 3 * U),
        "bias": (3 * U,),
        "recurrent_bias": (3 * U,),
    }
    simple, _ = SimpleRNN(U).init(jax.random.key(0), x)
    assert simple["recurrent_kernel"].shape == (U, U)
    # Orthogonal recurrent kernel by default.
    k = np.asarray(simple["recurrent_kernel"])
    np.testing.assert_allclose(k.T @ k, np.eye(U), atol=1e-5)


def test_default_names_inside_a_parent():
    model = Sequential(
        SimpleRNN(2, return_sequences=True),
        LSTM(2, return_sequences=True),
        GRU(2, return_sequences=True),
        RNN(GRUCell(2), return_sequences=True),
        Bidirectional(LSTMCell(2)),
    )
    params, _ = model.init(jax.random.key(0), data())
    assert list(params) == ["simple_rnn", "lstm", "gru", "rnn", "bidirectional"]
    assert sorted(params["bidirectional"]) == ["backward", "forward"]
    assert LSTM(2, name="encoder").name == "encoder"


def test_dtype_setting_computes_in_that_dtype():
    x = data()
    layer = LSTM(U, return_sequences=True, dtype=jnp.bfloat16)
    params, state = layer.init(jax.random.key(0), x)
    assert params["kernel"].dtype == jnp.float32
    y, _ = layer.apply(params, state, x)
    assert y.dtype == jnp.bfloat16
    ref, _ = LSTM(U, return_sequences=True).apply(params, state, x)
    # bfloat16 keeps 8 bits of mantissa: about 3 significant digits over 6 steps.
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, atol=3e-2)


# ----------------------------------------------------------------- errors


def test_config_errors():
    with pytest.raises(LayerError, match=r"^LSTMCell: features must be a positive int, got 0\.$"):
        LSTM(0)
    with pytest.raises(LayerError, match="unknown activation 'tanhh'"):
        SimpleRNN(3, "tanhh")
    with pytest.raises(LayerError, match="unknown initializer 'orthogonl'"):
        GRU(3, recurrent_init="orthogonl")
    with pytest.raises(LayerError, match=r"unroll is the number of steps .* got 0"):
        LSTM(3, unroll=0)
    with pytest.raises(LayerError, match=r"RNN: expects a Cell such as LSTMCell\(features\)"):
        RNN(LSTM(3))
    with pytest.raises(
        LayerError, match=r"Bidirectional: expects a Cell .* got the layer Dense\(\)\."
    ):
        from jaxnn import Dense

        Bidirectional(Dense(3))
    with pytest.raises(
        LayerError,
        match=r"Bidirectional: expects a Cell such as LSTMCell\(features\), got the layer "
        r"GRU\(\)\. .* write Bidirectional\(LSTMCell\(4\), return_sequences=True\)",
    ):
        Bidirectional(GRU(3))
    with pytest.raises(LayerError, match=r"unknown merge 'cat'\. Did you mean 'concat'\?"):
        Bidirectional(GRUCell(3), merge="cat")
    with pytest.raises(LayerError, match=r"unroll is the number of steps .* got 0"):
        Bidirectional(GRUCell(3), unroll=0)


@pytest.mark.parametrize(("old", "new"), [("sum", "add"), ("ave", "mean")])
def test_bidirectional_keras_merge_words_name_the_jaxnn_word(old, new):
    with pytest.raises(
        LayerError,
        match=rf"^Bidirectional: merge '{old}' is called '{new}' in jaxnn\. Use merge='{new}'\.$",
    ):
        Bidirectional(LSTMCell(3), merge=old)


def test_units_is_called_features():
    assert LSTMCell(3).features == 3
    params, _ = jax.eval_shape(GRU(features=2).init, jax.random.key(0), data())
    assert params["recurrent_kernel"].shape == (2, 6)
    with pytest.raises(TypeError, match=r"LSTM\(\) missing 1 required .* 'features'"):
        LSTM(units=3)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'units'"):
        SimpleRNNCell(units=3)


def test_input_errors():
    x = data()
    layer = LSTM(U)
    params, state = layer.init(jax.random.key(0), x)
    with pytest.raises(
        LayerError,
        match=r"LSTM: expects inputs of shape \(batch, time, features\), got shape \(3, 6\)",
    ):
        layer.init(jax.random.key(0), x[:, :, 0])
    with pytest.raises(
        LayerError, match="input has 2 features, but the kernel was initialised for 4"
    ):
        layer.apply(params, state, x[:, :, :2])
    with pytest.raises(
        LayerError, match=r"a dict input takes the entries .* got unknown entries \['length'\]"
    ):
        layer.apply(params, state, {"inputs": x, "length": jnp.ones(3, jnp.int32)})
    with pytest.raises(LayerError, match=r"lengths must be integers of shape \(3,\)"):
        layer.apply(params, state, {"inputs": x, "lengths": jnp.ones(3)})
    with pytest.raises(LayerError, match=r"lengths must be integers of shape \(3,\)"):
        layer.apply(params, state, {"inputs": x, "lengths": jnp.ones((3, 1), jnp.int32)})
    with pytest.raises(LayerError, match="initial_carry must have the cell's carry structure"):
        layer.apply(params, state, {"inputs": x, "initial_carry": {"h": jnp.zeros((3, U))}})
    with pytest.raises(LayerError, match="params lack entries"):
        layer.apply({"kernel": params["kernel"]}, state, x)
    with pytest.raises(LayerError, match="got no 'inputs' entry"):
        layer.apply(params, state, {"lengths": jnp.ones(3, jnp.int32)})


def test_bidirectional_errors_name_the_direction():
    x = data()
    layer = Bidirectional(GRUCell(U))
    params, state = layer.init(jax.random.key(0), x)
    with pytest.raises(LayerError, match="GRU 'forward': input has 2 features"):
        layer.apply(params, state, x[:, :, :2])
    with pytest.raises(LayerError, match=r"initial_carry must be a dict \{'forward'"):
        layer.apply(params, state, {"inputs": x, "initial_carry": {"h": jnp.zeros((3, U))}})
