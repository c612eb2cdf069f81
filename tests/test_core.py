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
