"""Pooling against NumPy loops over windows.

The reference visits every output window, keeps the cells that fall inside the input
(padding is never a candidate for the max and never counted in the mean), and reduces
them in float64.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.core import LayerError
from jaxnn.layers.pooling import (
    AvgPool,
    AvgPool1D,
    AvgPool2D,
    AvgPool3D,
    GlobalAvgPool,
    GlobalMaxPool,
    MaxPool,
    MaxPool1D,
    MaxPool2D,
    MaxPool3D,
    _max_pool,
    _max_pool_taps,
)

# Means of at most 27 float32 values against float64: a few ulps.
TOL = {"rtol": 1e-6, "atol": 1e-6}


def ref_pads(mode, sizes, window, strides):
    if mode == "VALID":
        return [(0, 0)] * len(sizes)
    if mode == "SAME":
        pads = []
        for n, w, s in zip(sizes, window, strides, strict=True):
            total = max((-(-n // s) - 1) * s + w - n, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    return list(mode)


def ref_pool(x, window, strides, pads, reduce):
    x = np.asarray(x, np.float64)
    batch, *sizes, channels = x.shape
    out_sizes = [
        (n + lo + hi - w) // s + 1
        for n, w, s, (lo, hi) in zip(sizes, window, strides, pads, strict=True)
    ]
    y = np.zeros((batch, *out_sizes, channels))
    for o in itertools.product(*map(range, out_sizes)):
        cells = []
        for k in itertools.product(*map(range, window)):
            i = [oi * s + ki - lo for oi, ki, s, (lo, _) in zip(o, k, strides, pads, strict=True)]
            if all(0 <= ii < n for ii, n in zip(i, sizes, strict=True)):
                cells.append(x[(slice(None), *i, slice(None))])
        y[(slice(None), *o, slice(None))] = reduce(np.stack(cells), axis=0)
    return y


def data(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


CASES = [
    # (input shape, window, strides, padding)
    ((2, 9, 3), (2,), None, "VALID"),
    ((2, 9, 3), (3,), (2,), "SAME"),
    ((2, 8, 2), (4,), (3,), "same"),
    ((2, 7, 2), (3,), (1,), ((2, 1),)),
    ((2, 6, 7, 3), (2, 2), None, "VALID"),
    ((2, 7, 7, 2), (3, 3), (2, 2), "SAME"),
    ((2, 5, 6, 2), (2, 3), (1, 2), "SAME"),
    ((1, 6, 5, 2), (3, 2), (2, 1), ((1, 2), (1, 0))),
    ((1, 5, 4, 6, 2), (2, 2, 3), None, "VALID"),
    ((1, 5, 4, 5, 2), (3, 2, 2), (2, 1, 2), "SAME"),
    ((1, 4, 3, 4, 1), (2, 3, 2), (1, 1, 2), ((1, 0), (2, 2), (0, 1))),
]
IDS = [
    f"{len(c[1])}d-{c[3] if isinstance(c[3], str) else 'pairs'}-{i}" for i, c in enumerate(CASES)
]


@pytest.mark.parametrize(("shape", "window", "strides", "padding"), CASES, ids=IDS)
@pytest.mark.parametrize(("make", "reduce"), [(MaxPool, np.max), (AvgPool, np.mean)])
def test_pool_matches_loop_over_windows(make, reduce, shape, window, strides, padding):
    x = data(shape)
    layer = make(window, strides, padding)
    params, state = layer.init(jax.random.key(0), x)
    assert params == {} and state == {}
    y, _ = layer.apply(params, state, x)
    steps = window if strides is None else strides
    pads = ref_pads(
        padding.upper() if isinstance(padding, str) else padding, shape[1:-1], window, steps
    )
    expected = ref_pool(x, window, steps, pads, reduce)
    assert y.shape == expected.shape
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, expected, **TOL)


def test_avg_pool_excludes_padding_from_the_count():
    x = jnp.ones((1, 5, 5, 1))
    y, _ = AvgPool2D(3, strides=1, padding="SAME").apply({}, {}, x)
    np.testing.assert_array_equal(y, jnp.ones((1, 5, 5, 1)))  # padding counted would give 4/9
    z, _ = AvgPool1D(3, 1, padding=((2, 0),)).apply({}, {}, jnp.array([[[2.0], [4.0], [6.0]]]))
    assert z[0, :, 0].tolist() == [2.0, 3.0, 4.0]


def test_max_pool_ignores_padding_for_negative_inputs():
    x = -jnp.ones((1, 3, 3, 1)) - jnp.arange(9.0).reshape(1, 3, 3, 1)
    y, _ = MaxPool2D(2, 1, "SAME").apply({}, {}, x)
    assert float(y.max()) < 0  # a zero from the padding never wins


def test_wrappers_match_general_layer():
    x = data((2, 6, 6, 6, 2))
    for wrapper, general in [(MaxPool3D, MaxPool), (AvgPool3D, AvgPool)]:
        a = wrapper(2, 1, "SAME").apply({}, {}, x)[0]
        b = general((2, 2, 2), (1, 1, 1), "SAME").apply({}, {}, x)[0]
        np.testing.assert_array_equal(a, b)
    assert MaxPool2D().kind == "MaxPool2D" and AvgPool((2,)).kind == "AvgPool"
    assert MaxPool1D().apply({}, {}, data((1, 6, 1)))[0].shape == (1, 3, 1)


def test_dtypes():
    xb = data((2, 4, 4, 3)).astype(jnp.bfloat16)
    assert MaxPool2D().apply({}, {}, xb)[0].dtype == jnp.bfloat16
    assert AvgPool2D().apply({}, {}, xb)[0].dtype == jnp.bfloat16
    xi = jnp.arange(16, dtype=jnp.int32).reshape(1, 4, 4, 1)
    assert MaxPool2D().apply({}, {}, xi)[0].dtype == jnp.int32
    avg, _ = AvgPool2D().apply({}, {}, xi)
    assert avg.dtype == jnp.float32
    assert avg[0, :, :, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]


@pytest.mark.parametrize("shape", [(2, 7, 3), (2, 4, 5, 3), (2, 3, 4, 2, 3)])
def test_global_pooling(shape):
    x = data(shape)
    axes = tuple(range(1, len(shape) - 1))
    reference = np.asarray(x, np.float64)
    y, _ = GlobalAvgPool().apply({}, {}, x)
    np.testing.assert_allclose(y, reference.mean(axis=axes), **TOL)
    y, _ = GlobalMaxPool().apply({}, {}, x)
    np.testing.assert_array_equal(y, reference.max(axis=axes).astype(np.float32))
    y, _ = GlobalAvgPool(keepdims=True).apply({}, {}, x)
    assert y.shape == (shape[0], *(1,) * len(axes), shape[-1])


def test_max_pool_gradient_routes_to_the_argmax():
    x = data((1, 4, 4, 1))
    g = jax.grad(lambda x: jnp.sum(MaxPool2D(2).apply({}, {}, x)[0]))(x)
    expected = np.zeros((1, 4, 4, 1), np.float32)
    xn = np.asarray(x)
    for i in (0, 2):
        for j in (0, 2):
            block = xn[0, i : i + 2, j : j + 2, 0]
            a, b = np.unravel_index(np.argmax(block), block.shape)
            expected[0, i + a, j + b, 0] = 1.0
    np.testing.assert_array_equal(g, expected)


@pytest.mark.parametrize("make", [MaxPool2D, AvgPool2D])
def test_jitted_gradient(make):
    """Under jit the window reduction must stay the differentiable max/add monoid."""
    x = data((2, 4, 4, 3))
    layer = make(2, 1, "SAME")
    loss = lambda x: jnp.sum(layer.apply({}, {}, x)[0] ** 2)
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(x), jax.grad(loss)(x), rtol=1e-6)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MaxPool(2), r"MaxPool: window=2 does not say how many spatial dims.*MaxPool2D"),
        (lambda: AvgPool2D((2, 2, 2)), r"window=\(2, 2, 2\) has 3 entries, but this layer has 2"),
        (lambda: MaxPool2D(2, strides=(1,)), r"strides=\(1,\) has 1 entries"),
        (lambda: MaxPool2D(0), r"every entry of window must be a positive int, got 0"),
        (
            lambda: AvgPool2D(2, padding="causal"),
            r"unknown padding 'causal'. Use one of 'SAME', 'VALID'",
        ),
        (lambda: MaxPool1D(2, padding=(1, 1)), r"1 \(lo, hi\) pair\(s\) of ints"),
    ],
)
def test_config_errors(make, match):
    with pytest.raises(LayerError, match=match):
        make()


def test_input_errors():
    key = jax.random.key(0)
    with pytest.raises(
        LayerError,
        match=r"MaxPool2D: expects an input of shape \(batch, height, width, channels\) "
        r"with 4 axes, got shape \(4, 4\)",
    ):
        MaxPool2D().init(key, jnp.zeros((4, 4)))
    with pytest.raises(LayerError, match=r"size 2 \(padded to 2\), smaller than the window 3"):
        AvgPool1D(3).init(key, jnp.zeros((1, 2, 1)))
    with pytest.raises(
        LayerError, match=r"padding \(2, 0\) of spatial dim 0 is not smaller than the window 2"
    ):
        AvgPool1D(2, padding=((2, 0),)).init(key, jnp.zeros((1, 4, 1)))
    with pytest.raises(LayerError, match=r"padding pairs must not be negative"):
        MaxPool1D(2, padding=((-1, 0),)).init(key, jnp.zeros((1, 4, 1)))
    with pytest.raises(
        LayerError,
        match=r"GlobalAvgPool: expects an input \(batch, \*spatial, channels\) "
        r"with at least 1 spatial",
    ):
        GlobalAvgPool().init(key, jnp.zeros((4, 3)))
    with pytest.raises(LayerError, match=r"params have entries \['kernel'\]"):
        GlobalMaxPool().apply({"kernel": 1}, {}, jnp.zeros((1, 2, 3)))


def test_pooling_and_conv_share_the_spatial_module():
    """Pooling reads windows and padding with jaxnn.layers.spatial, not with conv's code."""
    import ast
    import inspect

    from jaxnn.layers import pooling

    tree = ast.parse(inspect.getsource(pooling))
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert "jaxnn.layers.conv" not in imported
    assert "jaxnn.layers.spatial" in imported


def test_aliases_are_the_general_pools_with_a_fixed_rank():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 5, 3)), jnp.float32)
    for alias, general in [(MaxPool2D, MaxPool), (AvgPool2D, AvgPool)]:
        a = alias(3, strides=2, padding="SAME")
        g = general((3, 3), strides=2, padding="SAME")
        assert a.kind == alias.__name__
        np.testing.assert_array_equal(a.apply({}, {}, x)[0], g.apply({}, {}, x)[0])


# ------------------------------------------------ max pooling's gradient on the CPU

TAPS_CASES = [
    # (input shape, window, strides, (lo, hi) pads)
    ((2, 6, 6, 3), (2, 2), (2, 2), ((0, 0), (0, 0))),
    ((2, 7, 6, 2), (3, 3), (2, 2), ((1, 1), (0, 1))),
    ((2, 7, 2), (3,), (1,), ((1, 1),)),
    ((1, 5, 4, 3, 2), (2, 2, 2), (2, 2, 2), ((0, 1), (0, 0), (0, 1))),
    ((2, 5, 5, 2), (3, 3), (3, 1), ((2, 0), (1, 1))),
]
TAPS_IDS = [f"{len(c[1])}d-{i}" for i, c in enumerate(TAPS_CASES)]


def taps_and_plain(window, strides, pads):
    """``_max_pool_taps`` and the ``reduce_window`` it stands for, for one window."""
    config = ((1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0)))
    return (lambda x: _max_pool_taps(x, *config)), (lambda x: _max_pool(x, *config))


def tied(shape, seed=0, dtype=jnp.float32):
    """Normal draws rounded to integers, then ReLU: most windows hold ties."""
    x = np.maximum(np.round(np.random.default_rng(seed).normal(size=shape)), 0.0)
    return jnp.asarray(x, dtype)


def value_and_vjp(f, x):
    y, vjp = jax.vjp(f, x)
    return y, vjp(jnp.asarray(np.random.default_rng(1).normal(size=y.shape), y.dtype))[0]


# Jitted for every case; eager (op by op, slower to compile) for the first two.
TAPS_RUNS = [(*c, True) for c in TAPS_CASES] + [(*c, False) for c in TAPS_CASES[:2]]


@pytest.mark.parametrize(
    ("shape", "window", "strides", "pads", "jit"),
    TAPS_RUNS,
    ids=[f"{TAPS_IDS[TAPS_CASES.index(c[:-1])]}-{'jit' if c[-1] else 'eager'}" for c in TAPS_RUNS],
)
def test_max_pool_taps_gradient_equals_select_and_scatter(shape, window, strides, pads, jit):
    """The same cell of each window gets the cotangent, ties included: equal numbers."""
    taps, plain = taps_and_plain(window, strides, pads)
    x = tied(shape)
    run = jax.jit(value_and_vjp, static_argnums=0) if jit else value_and_vjp
    chex.assert_trees_all_equal(run(taps, x), run(plain, x))


@pytest.mark.parametrize(("shape", "window", "strides", "pads"), TAPS_CASES[:3], ids=TAPS_IDS[:3])
def test_max_pool_taps_gradient_in_float64(shape, window, strides, pads):
    taps, plain = taps_and_plain(window, strides, pads)
    with jax.enable_x64(True):
        x = tied(shape, dtype=jnp.float64)
        got = jax.jit(value_and_vjp, static_argnums=0)(taps, x)
        assert got[1].dtype == jnp.float64
        chex.assert_trees_all_equal(got, value_and_vjp(plain, x))


@pytest.mark.parametrize(
    ("shape", "window", "strides", "pads"),
    [TAPS_CASES[i] for i in (0, 1, 3)],
    ids=[TAPS_IDS[i] for i in (0, 1, 3)],
)
def test_max_pool_taps_jvp_is_the_transpose_of_the_gradient(shape, window, strides, pads):
    """Forward mode (jacfwd, from the jvp) gives the Jacobian that reverse mode of
    ``reduce_window`` (jacrev, select-and-scatter) gives, ties included.

    Plain ``reduce_window``'s own jvp breaks some ties otherwise, so it is compared
    only on inputs without ties.
    """
    taps, plain = taps_and_plain(window, strides, pads)
    x = tied(shape)
    chex.assert_trees_all_equal(jax.jacfwd(taps)(x), jax.jacrev(plain)(x))
    x, t = data(shape), data(shape, seed=1)
    chex.assert_trees_all_equal(jax.jvp(taps, (x,), (t,)), jax.jvp(plain, (x,), (t,)))


def test_max_pool_taps_with_nan_and_under_vmap():
    taps, plain = taps_and_plain((2, 2), (2, 2), ((0, 0), (0, 0)))
    x = tied((3, 2, 4, 4, 2)).at[0, 1, 0, 1, 0].set(np.nan).at[1, 0, 2, 2, 1].set(np.nan)
    loss = lambda f: lambda x: jnp.sum(f(x) * jnp.arange(2.0).reshape(1, 1, 1, 2))
    got = jax.vmap(jax.grad(loss(taps)))(x)
    chex.assert_trees_all_equal(got, jnp.stack([jax.grad(loss(plain))(m) for m in x]))


@pytest.mark.parametrize(
    ("window", "platform", "scatters"),
    [
        (2, "cpu", 0),
        (3, "cpu", 0),
        (2, "cuda", 1),  # other backends keep XLA's select-and-scatter
        (4, "cpu", 1),  # 16 cells: the slices were slower than select-and-scatter
    ],
)
def test_max_pool_gradient_path_by_platform_and_window(window, platform, scatters):
    """The path is chosen when the program is lowered, from its platform and window."""
    layer = MaxPool2D(window, padding="SAME")
    x = jnp.zeros((2, 8, 8, 3))
    loss = lambda x: jnp.sum(layer.apply({}, {}, x)[0] ** 2)
    lowered = jax.jit(jax.grad(loss)).trace(x).lower(lowering_platforms=(platform,))
    assert lowered.as_text().count("stablehlo.select_and_scatter") == scatters
