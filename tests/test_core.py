"""The layer contract: names, keys, lifting, combinators, and summary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn
from jaxnn.core import child_key, merge, name_hash, snake_case, unique_names


def test_names_are_readable_unique_and_stable(key):
    model = nn.Sequential(nn.Dense(4), jax.nn.relu, nn.Dense(4), nn.Dense(2, name="head"))
    params, _ = model.init(key, jnp.zeros((1, 3)))
    assert sorted(params) == ["dense", "dense_1", "head"]
    assert [n for n, _ in model.children] == ["dense", "relu", "dense_1", "head"]


def test_user_names_are_reserved_before_auto_names():
    names = unique_names([nn.Dense(1), nn.Dense(1, name="dense"), nn.Dense(1)], "Sequential")
    assert names == ("dense_1", "dense", "dense_2")


def test_duplicate_user_names_fail():
    with pytest.raises(nn.LayerError, match="two children are named 'x'"):
        nn.Sequential(nn.Dense(1, name="x"), nn.Dense(1, name="x"))


def test_bad_name_fails():
    with pytest.raises(ValueError, match="without '/'"):
        nn.Dense(1).named("a/b")


def test_snake_case():
    assert snake_case("GroupNorm") == "group_norm"
    assert snake_case("LSTM") == "lstm"
    assert snake_case("RMSNorm") == "rms_norm"


def test_child_keys_depend_only_on_the_name(key):
    """Adding a layer elsewhere leaves the other layers' initial params unchanged."""
    a = nn.Sequential(nn.Dense(3, name="first"), nn.Dense(2, name="second"))
    b = nn.Sequential(
        nn.Dense(3, name="first"), nn.Dense(3, name="extra"), nn.Dense(2, name="second")
    )
    pa, _ = a.init(key, jnp.zeros((1, 4)))
    pb, _ = b.init(key, jnp.zeros((1, 4)))
    np.testing.assert_array_equal(pa["first"]["kernel"], pb["first"]["kernel"])
    assert not np.array_equal(pa["first"]["kernel"][:, :2], pa["second"]["kernel"][:3])


def test_name_hash_is_stable_across_processes():
    # CRC-32 of the UTF-8 bytes: fixed forever, unlike Python's salted hash().
    assert name_hash("dense") == 1575712873
    assert child_key(None, "dense") is None


def test_plain_function_is_lifted(key):
    model = nn.Sequential(nn.Dense(3), lambda x: 2 * x, "tanh")
    params, state = model.init(key, jnp.ones((2, 4)))
    y, _ = model.apply(params, state, jnp.ones((2, 4)))
    dense_y, _ = nn.Dense(3).apply(params["dense"], {}, jnp.ones((2, 4)))
    np.testing.assert_allclose(y, jnp.tanh(2 * dense_y), rtol=1e-6)


def test_as_layer_rejects_other_things():
    with pytest.raises(TypeError, match="expected a Layer, a function"):
        nn.as_layer(3)


def test_parallel_merges(key):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4)), jnp.float32)
    want = {
        "concat": lambda a, b: np.concatenate([a, b], axis=-1),
        "add": lambda a, b: a + b,
        "mul": lambda a, b: a * b,
        "mean": lambda a, b: (a + b) / 2,
        "stack": lambda a, b: np.stack([a, b], axis=-1),
    }
    for how, expected in [*want.items(), (lambda ys: ys[0] - ys[1], lambda a, b: a - b)]:
        block = nn.Parallel(nn.Dense(2), nn.Dense(2, "tanh"), merge=how)
        p, s = block.init(key, x)
        y, _ = block.apply(p, s, x)
        a, _ = nn.Dense(2).apply(p["dense"], {}, x)
        b, _ = nn.Dense(2, "tanh").apply(p["dense_1"], {}, x)
        np.testing.assert_allclose(y, expected(np.asarray(a), np.asarray(b)), rtol=1e-6)
    both = nn.Parallel(nn.Dense(2), nn.Dense(3), merge=None)
    p, s = both.init(key, x)
    y, _ = both.apply(p, s, x)
    assert isinstance(y, tuple)
    assert [a.shape for a in y] == [(2, 2), (2, 3)]


def test_parallel_bad_merge(key):
    with pytest.raises(
        nn.LayerError,
        match=r"^Parallel: unknown merge 'max'\. .*Known names: 'add', 'concat', 'mean', 'mul', "
        r"'stack'; or pass None \(a tuple\) or a function f\(outputs\) -> y\.$",
    ):
        nn.Parallel(nn.Dense(2), merge="max")
    block = nn.Parallel(nn.Dense(2), nn.Dense(3), merge="add")
    with pytest.raises(nn.LayerError, match=r"cannot merge the branch outputs of shapes"):
        block.init(key, jnp.ones((2, 4)))


@pytest.mark.parametrize(
    ("old", "new"),
    [("sum", "add"), ("ave", "mean"), ("average", "mean"), ("concatenate", "concat")],
)
def test_keras_merge_words_name_the_jaxnn_word(old, new):
    with pytest.raises(
        nn.LayerError,
        match=rf"^Parallel: merge '{old}' is called '{new}' in jaxnn\. Use merge='{new}'\.$",
    ):
        nn.Parallel(nn.Dense(2), merge=old)


def test_one_merge_vocabulary_for_parallel_and_bidirectional():
    """core.merge is the one implementation; both layers name themselves in its errors."""
    ys = [jnp.array([1.0, 2.0]), jnp.array([3.0, 6.0])]
    assert merge("Parallel", "mean")(ys).tolist() == [2.0, 4.0]
    assert merge("Parallel", "mul")(ys).tolist() == [3.0, 12.0]
    assert merge("Parallel", "stack")(ys).shape == (2, 2)
    assert merge("Parallel", None)(ys) == tuple(ys)
    with pytest.raises(nn.LayerError, match=r"^Bidirectional: merge must be a name, None or"):
        nn.Bidirectional(nn.LSTMCell(2), merge=3)
    with pytest.raises(nn.LayerError, match=r"^Parallel: unknown merge 'cat'\. Did you mean"):
        nn.Parallel(nn.Dense(2), merge="cat")


def test_residual(key):
    block = nn.Residual(nn.Dense(4))
    p, s = block.init(key, jnp.ones((2, 4)))
    x = jnp.arange(8.0).reshape(2, 4)
    y, _ = block.apply(p, s, x)
    inner, _ = nn.Dense(4).apply(p["dense"], {}, x)
    np.testing.assert_allclose(y, x + inner, rtol=1e-6)
    with pytest.raises(nn.LayerError, match=r"Residual: the inner layer maps shape \(2, 4\) to"):
        nn.Residual(nn.Dense(3)).init(key, jnp.ones((2, 4)))


def test_errors_name_the_path(key):
    model = nn.Sequential(nn.Sequential(nn.Dense(3), nn.Dense(2), name="encoder"), nn.Dense(1))
    params, state = model.init(key, jnp.ones((1, 4)))
    bad = jax.tree.map(lambda a: a, params)
    bad["encoder"]["dense_1"]["kernel"] = jnp.zeros((5, 2))
    with pytest.raises(
        nn.LayerError,
        match=r"Dense 'encoder/dense_1': input has 3 features, but the kernel was initialised "
        r"for 5",
    ):
        model.apply(bad, state, jnp.ones((1, 4)))


def test_summary_counts_match_the_real_tree(key):
    model = nn.Sequential(
        nn.Sequential(nn.Dense(8, "relu"), nn.Dense(8), name="encoder"),
        nn.Parallel(nn.Dense(2), nn.Dense(3)),
        nn.Dense(1),
    )
    x = jnp.ones((5, 4))
    text = nn.summary(model, x)
    params, _ = model.init(key, x)
    total = sum(a.size for a in jax.tree.leaves(params))
    assert f"Total params: {total:,}" in text
    assert "encoder/dense_1" in text
    assert "parallel/dense_1" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("parallel "))
    assert row.split()[-1] == str(2 * 8 + 2 + 3 * 8 + 3)
    assert "(5, 5)" in row


# ------------------------------------------------------------- writing a layer


def Scale():
    """A user's layer, written as the README shows: a learned scale, a call counter."""

    def init(key, x):
        del key
        return {"scale": jnp.ones((x.shape[-1],))}, {"calls": jnp.zeros((), jnp.int32)}

    def apply(params, state, x, *, key=None, training=False):
        del key
        if training:
            state = {"calls": state["calls"] + 1}
        return x * params["scale"][None, :], state

    return nn.Layer(init, apply, "Scale")


def test_a_users_layer_composes_trains_and_keeps_its_state(key):
    model = nn.Sequential(Scale(), nn.Dense(1))
    x, y = jnp.ones((8, 3)), jnp.zeros((8, 1))
    trainer = nn.Trainer(model, "mse", "sgd")
    state = trainer.init(key, x)
    assert state.params["scale"]["scale"].shape == (3,)
    state, _ = trainer.fit(state, x, y, epochs=2, batch_size=4, verbose=0)
    assert int(state.model_state["scale"]["calls"]) == 4  # 2 epochs of 2 steps
    assert not np.allclose(state.params["scale"]["scale"], 1.0)  # it learned


def test_subclassing_layer_fails_with_the_pattern_to_use():
    with pytest.raises(
        TypeError,
        match=r"class ScaledTanh\(Layer\): a jaxnn layer is a value made by a function, not "
        r"a subclass\. Write ScaledTanh as a function that returns a Layer:(.|\n)*"
        r'return nn\.Layer\(init, apply, "ScaledTanh"\)',
    ):

        class ScaledTanh(nn.Layer):
            def init(self, key, x):
                return {}, {}


def test_calling_a_layer_names_apply():
    with pytest.raises(
        TypeError,
        match=r"a Dense layer is not called as layer\(x\): it is a pair of pure functions\. "
        r"Use params, state = layer\.init\(key, x\), then y, state = layer\.apply\(params, "
        r"state, x\)",
    ):
        nn.Dense(2)(jnp.ones((1, 3)))


def test_flax_apply_habit_names_the_jaxnn_call(key):
    model = nn.Sequential(nn.Dense(2))
    params, _ = model.init(key, jnp.ones((1, 3)))
    with pytest.raises(
        TypeError,
        match=r"Sequential\.apply takes \(params, state, x, \*, key=None, training=False\), "
        r"got 2 positional argument\(s\)\. Call y, state = model\.apply\(params, state, x\)"
        r".*Flax's model\.apply\(variables, x\) is model\.apply\(params, state, x\) here",
    ):
        model.apply(params, jnp.ones((1, 3)))
    with pytest.raises(TypeError, match=r"got 4 positional argument\(s\).*key and training are"):
        model.apply(params, {}, jnp.ones((1, 3)), key)


def test_an_apply_that_forgets_its_state_is_blamed_on_itself(key):
    forgetful = nn.Layer(lambda key, x: ({}, {}), lambda p, s, x: 2 * x, "Double")
    with pytest.raises(
        nn.LayerError,
        match=r"Double 'double': apply returned an array of shape \(4, 3\) and dtype float32, "
        r"but apply must return a pair \(y, state\)\. End it with `return y, state`",
    ):
        nn.Sequential(forgetful, nn.Dense(2)).init(key, jnp.ones((4, 3)))
    bad_state = nn.Layer(lambda key, x: ({}, {}), lambda p, s, x: (x, None), "NoState")
    with pytest.raises(
        nn.LayerError,
        match=r"NoState 'encoder/no_state': apply returned a pair whose second item is None, "
        r"but that item must be the layer's state, a dict",
    ):
        nn.Sequential(nn.Sequential(bad_state, name="encoder")).init(key, jnp.ones((4, 3)))


def test_an_init_that_returns_params_only_is_named(key):
    params_only = nn.Layer(lambda key, x: {"w": jnp.ones(2)}, lambda p, s, x: (x, s), "ParamsOnly")
    with pytest.raises(
        nn.LayerError,
        match=r"ParamsOnly 'params_only': init returned one dict with entries \['w'\], but "
        r"init must return a pair \(params, state\) of dicts\. End it with `return params, "
        r"\{\}` for a layer without state\.",
    ):
        nn.Sequential(params_only).init(key, jnp.ones((4, 3)))
    listy = nn.Layer(lambda key, x: ([1], {}), lambda p, s, x: (x, s), "Listy")
    with pytest.raises(
        nn.LayerError,
        match=r"Listy: init returned params as a list of 1 items, but params must be a dict",
    ):
        listy.init(key, jnp.ones((4, 3)))


def test_apply_without_key_or_training_is_called_without_them(key):
    plain = nn.Layer(lambda key, x: ({}, {}), lambda p, s, x: (x + 1, s), "PlusOne")
    model = nn.Sequential(plain, nn.Dropout(0.5))
    params, state = model.init(key, jnp.ones((2, 3)))
    y, _ = model.apply(params, state, jnp.ones((2, 3)), key=key, training=True)
    assert y.shape == (2, 3)
    only_training = nn.Layer(
        lambda key, x: ({}, {}), lambda p, s, x, training=False: (x * float(training), s), "Gate"
    )
    assert float(only_training.apply({}, {}, jnp.ones((1, 1)), key=key, training=True)[0][0, 0])


def test_functions_of_the_wrong_arity_fail_when_the_layer_is_made():
    with pytest.raises(
        TypeError,
        match=r"Layer 'Bad': init takes \(x\), but a layer's init is called as init\(key, x\) "
        r"-> \(params, state\)\. Give it the two arguments \(key, x\)\.",
    ):
        nn.Layer(lambda x: ({}, {}), lambda p, s, x: (x, s), "Bad")
    with pytest.raises(
        TypeError,
        match=r"Layer 'Bad': apply takes \(params, x\), but a layer's apply is called as "
        r"apply\(params, state, x, \*, key=None, training=False\) -> \(y, state\)\.",
    ):
        nn.Layer(lambda key, x: ({}, {}), lambda params, x: (x, {}), "Bad")
    with pytest.raises(TypeError, match=r"Layer: kind must be a non-empty string"):
        nn.Layer(lambda key, x: ({}, {}), lambda p, s, x: (x, s), None)
    with pytest.raises(TypeError, match=r"Layer 'Bad': apply must be a function apply\("):
        nn.Layer(lambda key, x: ({}, {}), 3, "Bad")


def test_float64_numpy_input_to_apply_is_cast_as_fit_casts_it(key, recwarn):
    model = nn.Sequential(nn.Dense(3), nn.BatchNorm())
    x64 = np.random.default_rng(0).random((4, 2))
    params, state = model.init(key, x64)
    y, _ = model.apply(params, state, x64, training=True)
    y32, _ = model.apply(params, state, x64.astype(np.float32), training=True)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, y32)
    assert not [w for w in recwarn if "truncated" in str(w.message)]
    with pytest.raises(
        ValueError,
        match=r"Sequential\.apply: x has finite float64 values that overflow float32 "
        r"\(largest magnitude 1e\+300 > 3\.4e\+38\) in 1 row\(s\): 0;",
    ):
        model.apply(params, state, np.full((1, 2), 1e300))
