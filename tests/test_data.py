"""The data floor: checks and conversion, validation splits, shuffles and batches."""

from itertools import permutations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import data


def test_prepare_converts_and_counts():
    d, n = data.prepare("fit", np.ones((5, 2)), [[0], [1], [0], [1], [1]])
    assert n == 5
    assert d.x.dtype == jnp.float32 and d.y.dtype == jnp.int32  # float64/int64 narrowed
    np.testing.assert_array_equal(d.weight, np.ones(5, np.float32))
    d, _ = data.prepare("fit", {"a": np.zeros((3, 1)), "b": np.zeros((3, 2))}, None, [1, 2, 3])
    assert set(d.x) == {"a", "b"} and d.y is None and d.weight.dtype == jnp.float32


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((None,), {}, r"where: x is None; pass the input data"),
        ((np.ones((3, 2)), None), {"need_y": True}, r"where: y is None; pass the targets"),
        ((np.ones((3, 2)), np.ones(4)), {}, r"x has 3 examples but y has 4"),
        ((np.ones((0, 2)),), {}, r"x has no examples \(length 0\)"),
        ((np.float32(1.0),), {}, r"x must have a leading batch axis, got a scalar"),
        (({"a": np.ones(3), "b": np.ones(4)},), {}, r"different lengths \[3, 4\]"),
        ((np.array([[1.0], [np.nan]]),), {}, r"x has NaN or Inf values in 1 row\(s\): 1\."),
        ((np.array([object(), object()]),), {}, r"x is not numeric \(got dtype object\)"),
        ((np.ones((3, 1)), np.ones(3), np.ones(2)), {}, r"sample_weight has shape \(2,\)"),
    ],
)
def test_prepare_refuses_bad_data(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.prepare("where", *args, **kwargs)


@pytest.mark.parametrize(
    "args, match",
    [
        # int64 past int32 would wrap (2**40 -> 0) when JAX narrows it.
        (
            (np.array([[1], [2**40]], np.int64),),
            r"where: x has int64 values outside the int32 range \[-2147483648, 2147483647\] in "
            r"1 row\(s\): 1 \(from 1 to 1099511627776\); JAX computes in int32 unless 64-bit "
            r"mode is on.*jax_enable_x64",
        ),
        ((np.array([[2**63]], np.uint64),), r"x has uint64 values outside the uint32 range"),
        ((np.ones((3, 1)), [0, 1, -(2**40)]), r"y has int64 values outside the int32 range"),
        # 1e300 is finite: float32 makes it Inf, which is no reason to say "NaN or Inf".
        (
            (np.array([[1.0], [1e300], [-1e39]]),),
            r"x has finite float64 values that overflow float32 \(largest magnitude 1e\+300 > "
            r"3\.4e\+38\) in 2 row\(s\): 1, 2; .*Rescale them",
        ),
        ((np.array([[1e300], [np.inf]]),), r"x has NaN or Inf values in 1 row\(s\): 1\."),
        ((np.ones((2, 2), np.complex64),), r"x is complex \(dtype complex64\); .*imaginary part"),
        ((jnp.ones((2, 2), jnp.complex64),), r"x is complex"),
        ((np.array([["a", "b"], ["c", "d"]]),), r"x is not numeric \(got dtype <U1\)"),
        ((np.array([b"a", b"b"]),), r"x is not numeric \(got dtype \|S1\)"),
        (({"a": np.array(["x", "y"])},), r"x\['a'\] is not numeric"),
        (
            (np.ones((3, 1)), None, [1.0, -0.5, 2.0]),
            r"sample_weight has negative values in 1 row\(s\): 1; .*must be >= 0",
        ),
        ((np.ones((2, 1)), None, jnp.array([-1.0, 0.0])), r"sample_weight has negative values"),
        ((np.ones((2, 1)), None, [1.0, np.nan]), r"sample_weight has NaN or Inf values"),
    ],
)
def test_prepare_refuses_what_would_silently_go_wrong(args, match):
    with pytest.raises(ValueError, match=match):
        data.prepare("where", *args)


def test_prepare_keeps_what_fits():
    d, _ = data.prepare("fit", np.array([[-(2**31)], [2**31 - 1]]), None, [0.0, 1.0])
    assert d.x.dtype == jnp.int32 and d.x[:, 0].tolist() == [-(2**31), 2**31 - 1]
    d, _ = data.prepare("fit", np.array([[3e38], [1e-300]]), np.array([True, False]))
    assert d.x.dtype == jnp.float32 and np.isfinite(d.x).all() and d.y.dtype == jnp.bool_
    d, _ = data.prepare("fit", np.ones((2, 1), jnp.bfloat16), np.ones((2, 1), np.uint8))
    assert d.x.dtype == jnp.bfloat16 and d.y.dtype == jnp.uint8


def test_target_values_are_checked_at_the_door(key):
    """The loss's own check runs on the concrete targets, with the number of classes
    read from the model's output spec (traced, not computed)."""
    from jaxnn import Dense, losses

    model = Dense(3)
    params, _ = model.init(key, jnp.zeros((1, 2)))
    x = np.zeros((4, 2), np.float32)

    def check(loss, y, **options):
        d, _ = data.prepare("fit", x, y)
        data.check_target_values("fit", losses.get(loss, **options), model, params, {}, d)

    check("sparse_categorical_crossentropy", [0, 1, 2, 2])
    check("mse", [[-5.0, 0, 9]] * 4)  # no check: any real target
    check("binary_crossentropy", [[0, 0.5, 1]] * 4, from_logits=True)
    check("categorical_crossentropy", [[0, 0.5, 0.5]] * 4)
    for loss, y, match in [
        ("sparse_categorical_crossentropy", [0, 1, 3, 0], r"labels must lie in \[0, 3\) .*0 to 3"),
        ("sparse_categorical_crossentropy", [0, -1, 2, 0], r"got labels from -1 to 2"),
        ("sparse_categorical_crossentropy", [0, 1.5, 2, 0], r"integer class labels, got .*1\.5"),
        ("binary_crossentropy", [[0, 2, 1]] * 4, r"fit: binary_crossentropy needs targets in "),
        ("binary_crossentropy", [[0, -1, 1]] * 4, r"got values from -1 to 1;"),
        ("categorical_crossentropy", [[1, -1, 1]] * 4, r"needs one-hot or probability targets"),
    ]:
        with pytest.raises(ValueError, match=match):
            check(loss, y)
    # A population: stacked params and per-member data are read one member at a time.
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), params)
    d, _ = data.prepare_members("pop", np.zeros((2, 4, 2)), np.full((2, 4), 3), None, 2)
    with pytest.raises(ValueError, match=r"pop: sparse_categorical_crossentropy: class labels"):
        data.check_target_values(
            "pop",
            losses.get("sparse_categorical_crossentropy"),
            model,
            stacked,
            {},
            d,
            stacked=True,
            member_data=True,
        )


def test_validation_and_split():
    d, n = data.prepare("fit", np.arange(10.0)[:, None], np.arange(10))
    train, held, m = data.split_validation("fit", d, n, 0.3)
    assert m == 7 and held.y.tolist() == [7, 8, 9] and train.weight.shape == (7,)
    with pytest.raises(ValueError, match=r"validation_split must lie in \[0, 1\), got 1.5"):
        data.split_validation("fit", d, n, 1.5)
    with pytest.raises(ValueError, match=r"validation_split=0.05 of 10 examples leaves 10"):
        data.split_validation("fit", d, n, 0.05)
    per_member = data.Data(jnp.zeros((2, 10, 3)), jnp.zeros((2, 10)), jnp.ones((2, 10)))
    train, held, m = data.split_validation("fit", per_member, 10, 0.2, axis=1)
    assert m == 8 and held.x.shape == (2, 2, 3) and train.weight.shape == (2, 8)
    v, nv = data.validation("fit", (np.ones((4, 2)), np.ones(4), np.ones(4)))
    assert nv == 4 and v.weight.shape == (4,)
    with pytest.raises(ValueError, match=r"validation_data must be \(x_val, y_val\)"):
        data.validation("fit", (np.ones((4, 2)),))


def test_prepare_members_checks_the_member_axis():
    d, examples = data.prepare_members("pop", np.zeros((3, 5, 2)), np.zeros((3, 5)), None, 3)
    assert examples == 5 and d.weight.shape == (3, 5)
    with pytest.raises(ValueError, match=r"x needs shape \(members=4, examples, ...\)"):
        data.prepare_members("pop", np.zeros((3, 5, 2)), np.zeros((3, 5)), None, 4)
    bad = np.zeros((3, 5, 2))
    bad[1, 2, 0] = np.inf
    with pytest.raises(ValueError, match=r"x has NaN or Inf values in 1 row\(s\): 7\."):
        data.prepare_members("pop", bad, np.zeros((3, 5)), None, 3)


def test_batch_size_and_batches():
    assert data.check_batch_size("fit", np.int64(4)) == 4
    for bad in (0, -1, 2.0, True, "8"):
        with pytest.raises(ValueError, match=r"fit: batch_size must be a positive int"):
            data.check_batch_size("fit", bad)
    idx, mask = data.batch_indices(jnp.array([4, 3, 2, 1, 0]), 5, 3)
    assert idx.tolist() == [[4, 3, 2], [1, 0, 4]]
    assert mask.tolist() == [[True, True, True], [True, True, False]]


def test_shuffled_order_is_a_permutation_for_every_size(key):
    # 1 to 3: the edges; 100: one sort round; 1000: two rounds; 2**17 + 3: four rounds.
    for n in (1, 2, 3, 100, 1000, 2**17 + 3):
        order = np.asarray(jax.jit(data.shuffled_order, static_argnums=1)(key, n))
        assert order.dtype == np.int32
        np.testing.assert_array_equal(np.sort(order), np.arange(n), err_msg=f"n={n}")


def test_shuffled_order_is_uniform(key):
    """Every ordering of 4 items equally often; every position equally likely for an
    item when several sort rounds are needed (n=1000 takes two)."""

    draws = 24_000
    keys = jax.random.split(key, draws)
    orders = np.asarray(jax.jit(jax.vmap(lambda k: data.shuffled_order(k, 4)))(keys))
    counts = {p: 0 for p in permutations(range(4))}
    for o in map(tuple, orders):
        counts[o] += 1
    expected = draws / 24
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 60, chi2  # 23 degrees of freedom: P(chi2 > 60) < 1e-4

    n, draws = 1000, 2000
    keys = jax.random.split(jax.random.fold_in(key, 1), draws)
    first = jax.jit(jax.vmap(lambda k: jnp.argmin(data.shuffled_order(k, n))))
    where_zero = np.asarray(first(keys))
    deciles = np.bincount(where_zero * 10 // n, minlength=10)
    chi2 = (((deciles - draws / 10) ** 2) / (draws / 10)).sum()
    assert chi2 < 35, deciles  # 9 degrees of freedom: P(chi2 > 35) < 1e-4
