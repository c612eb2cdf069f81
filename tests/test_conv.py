"""Conv and ConvTranspose against direct NumPy loops over output positions.

The references below compute every output cell from its definition, in float64, and
share no code with ``jaxnn.layers.conv`` (the "SAME" rule is restated here from its
definition: ``ceil(n / stride)`` outputs, the odd padding cell at the end).
"""

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxnn.core import LayerError
from jaxnn.layers.conv import (
    Conv,
    Conv1D,
    Conv2D,
    Conv3D,
    ConvTranspose,
    ConvTranspose1D,
    ConvTranspose2D,
    ConvTranspose3D,
    _conv_taps,
    _dimension_numbers,
)

# float32 convolutions of a few dozen terms each, against float64 loops: ~1e-6 relative
# error per term; 1e-5 keeps a margin without hiding a misplaced tap (errors of O(1)).
TOL = {"rtol": 1e-5, "atol": 1e-5}


def ref_pads(mode, sizes, kernel, strides, dilation):
    extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    if mode == "VALID":
        return [(0, 0)] * len(sizes)
    if mode == "CAUSAL":
        return [(extents[0] - 1, 0)]
    if mode == "SAME":
        pads = []
        for n, e, s in zip(sizes, extents, strides, strict=True):
            out = -(-n // s)
            total = max((out - 1) * s + e - n, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    return list(mode)


def ref_conv(x, w, b, strides, pads, dilation, groups):
    """y[o] = b + sum over taps k and channels c of its group of x[o*s + k*d - lo] w[k]."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    batch, *sizes, channels = x.shape
    *kernel, cin, features = w.shape
    assert cin * groups == channels
    fout = features // groups
    out_sizes = [
        (n + lo + hi - (k - 1) * d - 1) // s + 1
        for n, (lo, hi), k, d, s in zip(sizes, pads, kernel, dilation, strides, strict=True)
    ]
    y = np.zeros((batch, *out_sizes, features))
    for o in itertools.product(*map(range, out_sizes)):
        for k in itertools.product(*map(range, kernel)):
            i = [
                oi * s + ki * d - lo
                for oi, ki, s, d, (lo, _) in zip(o, k, strides, dilation, pads, strict=True)
            ]
            if not all(0 <= ii < n for ii, n in zip(i, sizes, strict=True)):
                continue  # a padded (zero) cell
            for g in range(groups):
                xin = x[(slice(None), *i, slice(g * cin, (g + 1) * cin))]
                y[(slice(None), *o, slice(g * fout, (g + 1) * fout))] += (
                    xin @ w[(*k, slice(None), slice(g * fout, (g + 1) * fout))]
                )
    return y + np.asarray(b, np.float64)


def ref_conv_transpose(x, w, b, strides, crops, dilation):
    """y[o] = b + sum of x[i] w[k] over the (i, k) with i*s + k*d - lo == o."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    batch, *sizes, _ = x.shape
    *kernel, _, features = w.shape
    out_sizes = [
        (n - 1) * s + (k - 1) * d + 1 - lo - hi
        for n, s, k, d, (lo, hi) in zip(sizes, strides, kernel, dilation, crops, strict=True)
    ]
    y = np.zeros((batch, *out_sizes, features))
    for o in itertools.product(*map(range, out_sizes)):
        for k in itertools.product(*map(range, kernel)):
            i = []
            for oi, ki, s, d, (lo, _), n in zip(o, k, strides, dilation, crops, sizes, strict=True):
                m = oi + lo - ki * d
                i.append(m // s if m % s == 0 and 0 <= m // s < n else None)
            if None in i:
                continue
            y[(slice(None), *o, slice(None))] += x[(slice(None), *i, slice(None))] @ w[k]
    return y + np.asarray(b, np.float64)


def random_params(layer, x, seed=0):
    """Params of the shapes and dtypes ``init`` gives, drawn from N(0, 1) in NumPy.

    The references take any params; normal draws (a non-zero bias among them, so that
    adding it is checked too) avoid compiling the initializers for every shape. A real
    ``init`` runs in the conformance tests and in test_aliases_are_the_general_layer_*.
    """
    spec, state = jax.eval_shape(layer.init, jax.random.key(seed), x)
    rng = np.random.default_rng(seed + 1)
    params = {k: jnp.asarray(rng.normal(size=v.shape), v.dtype) for k, v in spec.items()}
    assert jax.tree.leaves(state) == []
    return params


def run(layer, x, seed=0):
    params = random_params(layer, x, seed)
    y, _ = layer.apply(params, {}, x)
    return y, params


def data(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


CONV_CASES = [
    # (input shape, features, kernel, strides, padding, dilation, groups)
    ((2, 9, 3), 4, (3,), (1,), "SAME", (1,), 1),
    ((2, 9, 3), 4, (4,), (2,), "SAME", (1,), 1),
    ((2, 9, 3), 4, (3,), (2,), "VALID", (2,), 1),
    ((2, 9, 4), 6, (3,), (1,), "CAUSAL", (2,), 2),
    ((2, 8, 3), 5, (2,), (3,), "CAUSAL", (1,), 1),
    ((2, 9, 3), 2, (3,), (1,), ((2, 0),), (1,), 1),
    ((2, 6, 7, 3), 4, (3, 3), (1, 1), "SAME", (1, 1), 1),
    ((2, 6, 7, 3), 4, (3, 2), (2, 3), "SAME", (1, 1), 1),
    ((2, 7, 7, 2), 3, (2, 3), (1, 2), "VALID", (2, 1), 1),
    ((2, 6, 6, 4), 6, (3, 3), (2, 1), ((1, 2), (0, 3)), (1, 2), 2),
    ((1, 5, 5, 3), 3, (3, 3), (1, 1), "SAME", (1, 1), 3),  # depthwise
    ((1, 5, 5, 3), 6, (3, 3), (2, 2), "VALID", (1, 1), 3),  # depthwise, multiplier 2
    ((1, 5, 4, 6, 2), 3, (2, 3, 2), (1, 2, 2), "SAME", (1, 1, 2), 1),
    ((1, 4, 5, 4, 4), 2, (2, 2, 3), (2, 1, 1), ((1, 0), (0, 1), (1, 1)), (1, 2, 1), 2),
    # One input channel: summed tap by tap on the CPU (_conv_taps).
    ((2, 9, 1), 3, (3,), (1,), "CAUSAL", (2,), 1),
    ((2, 7, 6, 1), 4, (3, 3), (1, 1), "SAME", (1, 1), 1),
    ((2, 9, 8, 1), 3, (5, 4), (2, 1), ((2, 0), (1, 2)), (1, 2), 1),
    ((1, 4, 5, 6, 1), 2, (2, 2, 3), (1, 2, 2), "VALID", (1, 1, 1), 1),
]


@pytest.mark.parametrize(
    ("shape", "features", "kernel", "strides", "padding", "dilation", "groups"),
    CONV_CASES,
    ids=[
        f"{len(c[2])}d-{c[4] if isinstance(c[4], str) else 'pairs'}-{i}"
        for i, c in enumerate(CONV_CASES)
    ],
)
def test_conv_matches_direct_loop(shape, features, kernel, strides, padding, dilation, groups):
    x = data(shape)
    layer = Conv(features, kernel, strides, padding, kernel_dilation=dilation, groups=groups)
    y, params = run(layer, x)
    pads = ref_pads(padding, shape[1:-1], kernel, strides, dilation)
    expected = ref_conv(x, params["kernel"], params["bias"], strides, pads, dilation, groups)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, **TOL)


def test_same_keeps_ceil_size_over_stride():
    for n, s, k in [(9, 2, 3), (8, 3, 5), (7, 1, 4), (5, 4, 1)]:
        y, _ = run(Conv1D(1, k, s), data((1, n, 1)))
        assert y.shape == (1, -(-n // s), 1)


def test_valid_output_size():
    y, _ = run(Conv2D(1, (3, 2), (2, 1), "VALID", kernel_dilation=(2, 3)), data((1, 11, 9, 1)))
    assert y.shape == (1, (11 - 5) // 2 + 1, (9 - 4) // 1 + 1, 1)


def test_causal_output_never_sees_the_future():
    layer = Conv1D(3, 3, padding="causal", kernel_dilation=2)
    x = data((2, 12, 2))
    y, params = run(layer, x)
    assert y.shape == (2, 12, 3)
    changed = x.at[:, 7:].set(100.0)
    y2, _ = layer.apply(params, {}, changed)
    np.testing.assert_array_equal(y[:, :7], y2[:, :7])
    assert not np.allclose(y[:, 7:], y2[:, 7:])


def test_wrappers_equal_conv_with_tuples():
    x = data((2, 6, 6, 3))
    a, pa = run(Conv2D(4, 3, 2, kernel_dilation=1), x)
    b, _ = Conv(4, (3, 3), (2, 2)).apply(pa, {}, x)
    np.testing.assert_array_equal(a, b)
    assert Conv2D(4, 3).kind == "Conv2D"
    assert Conv(4, (3,)).kind == "Conv"


def init_spec(layer, x):
    """``init``'s params and state as shapes and dtypes; the conformance tests check
    that a real ``init`` agrees with ``jax.eval_shape`` for every conv layer."""
    return jax.eval_shape(layer.init, jax.random.key(0), x)


def test_no_bias_and_param_shapes():
    x = data((2, 5, 4))
    params, _ = init_spec(Conv1D(6, 3, groups=2, use_bias=False), x)
    assert set(params) == {"kernel"}
    assert params["kernel"].shape == (3, 2, 6)
    p3, _ = init_spec(Conv3D(2, (1, 2, 3)), data((1, 3, 3, 3, 5)))
    assert p3["kernel"].shape == (1, 2, 3, 5, 2) and p3["bias"].shape == (2,)


def test_dtypes():
    x = data((2, 5, 5, 3)).astype(jnp.bfloat16)
    layer = Conv2D(4, 3)
    assert init_spec(layer, x)[0]["kernel"].dtype == jnp.float32
    params = random_params(layer, x)
    assert params["kernel"].dtype == jnp.float32
    assert layer.apply(params, {}, x)[0].dtype == jnp.bfloat16
    f32 = Conv2D(4, 3, dtype=jnp.float32)
    assert f32.apply(params, {}, x)[0].dtype == jnp.float32
    bf = Conv2D(4, 3, param_dtype=jnp.bfloat16)
    assert init_spec(bf, x)[0]["kernel"].dtype == jnp.bfloat16


TRANSPOSE_CASES = [
    # (input shape, features, kernel, strides, padding, dilation)
    ((2, 5, 3), 4, (3,), (2,), "SAME", (1,)),
    ((2, 5, 3), 4, (3,), (2,), "VALID", (1,)),
    ((2, 4, 2), 3, (2,), (3,), "SAME", (1,)),  # stride > kernel: SAME pads the end
    ((2, 4, 2), 3, (3,), (1,), "VALID", (2,)),
    ((2, 5, 2), 2, (4,), (2,), ((1, 2),), (1,)),
    ((2, 3, 4, 3), 2, (3, 3), (2, 2), "SAME", (1, 1)),
    ((2, 3, 4, 3), 2, (2, 3), (2, 1), "VALID", (2, 1)),
    ((1, 4, 3, 2), 3, (4, 4), (2, 3), ((1, 1), (2, 0)), (1, 1)),
    ((1, 3, 2, 3, 2), 2, (2, 3, 2), (2, 1, 2), "SAME", (1, 1, 1)),
    ((1, 2, 3, 2, 2), 2, (2, 2, 2), (1, 2, 3), "VALID", (2, 1, 1)),
]


@pytest.mark.parametrize(
    ("shape", "features", "kernel", "strides", "padding", "dilation"),
    TRANSPOSE_CASES,
    ids=[
        f"{len(c[2])}d-{c[4] if isinstance(c[4], str) else 'pairs'}-{i}"
        for i, c in enumerate(TRANSPOSE_CASES)
    ],
)
def test_conv_transpose_matches_direct_loop(shape, features, kernel, strides, padding, dilation):
    x = data(shape)
    y, params = run(ConvTranspose(features, kernel, strides, padding, kernel_dilation=dilation), x)
    sizes = shape[1:-1]
    extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    full = [(n - 1) * s + e for n, s, e in zip(sizes, strides, extents, strict=True)]
    if padding == "VALID":
        crops = [(0, 0)] * len(sizes)
        assert y.shape[1:-1] == tuple(full)
    elif padding == "SAME":
        crops = [
            (max(e - s, 0) // 2, f - n * s - max(e - s, 0) // 2)
            for n, s, e, f in zip(sizes, strides, extents, full, strict=True)
        ]
        assert y.shape[1:-1] == tuple(n * s for n, s in zip(sizes, strides, strict=True))
    else:
        crops = list(padding)
    expected = ref_conv_transpose(x, params["kernel"], params["bias"], strides, crops, dilation)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, **TOL)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize(
    ("kernel", "strides", "dilation"),
    [((3,), (2,), (1,)), ((2,), (3,), (1,)), ((3, 2), (2, 2), (1, 2)), ((4, 4), (2, 1), (1, 1))],
)
def test_conv_transpose_is_the_adjoint_of_conv(kernel, strides, dilation, padding):
    """<Conv(x), y> == <x, ConvTranspose(y)> with the same taps, channels swapped."""
    rank = len(kernel)
    sizes = (6, 6)[:rank]  # divisible by every stride: SAME then inverts exactly
    conv = Conv(3, kernel, strides, padding, kernel_dilation=dilation, use_bias=False)
    x = data((2, *sizes, 2), seed=1)
    w = data((*kernel, 2, 3), seed=2)
    cx, _ = conv.apply({"kernel": w}, {}, x)
    y = data(cx.shape, seed=3)
    tr = ConvTranspose(2, kernel, strides, padding, kernel_dilation=dilation, use_bias=False)
    ty, _ = tr.apply({"kernel": jnp.swapaxes(w, -1, -2)}, {}, y)
    if padding == "SAME":
        assert ty.shape == x.shape
    else:  # VALID conv may drop trailing cells that its transpose then never reaches
        x = x[(slice(None), *(slice(0, n) for n in ty.shape[1:-1]), slice(None))]
    lhs = float(jnp.vdot(cx, y))
    rhs = float(jnp.vdot(x, ty))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4)


def test_conv_transpose_wrappers_and_kinds():
    x = data((1, 3, 3, 2))
    assert init_spec(ConvTranspose2D(4, 3, 2), x)[0]["kernel"].shape == (3, 3, 2, 4)
    assert ConvTranspose1D(4, 3).kind == "ConvTranspose1D"
    y, _ = run(ConvTranspose3D(1, 2, (1, 2, 3)), data((1, 2, 2, 2, 1)))
    assert y.shape == (1, 2, 4, 6, 1)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Conv(4, 3), r"kernel_size=3 does not say how many spatial dims.*Conv2D"),
        (lambda: ConvTranspose(4, 3), r"kernel_size=3 .*ConvTranspose2D"),
        (lambda: Conv2D(4, (3, 3, 3)), r"kernel_size=\(3, 3, 3\) has 3 entries, but .* 2 spatial"),
        (lambda: Conv(4, (3, 3), strides=(1, 1, 1)), r"strides=\(1, 1, 1\) has 3 entries"),
        (
            lambda: Conv2D(4, 3, kernel_dilation=0),
            r"every entry of kernel_dilation must be a positive int, got 0",
        ),
        (lambda: Conv2D(0, 3), r"features must be a positive int, got 0"),
        (
            lambda: Conv2D(4, 3, padding="full"),
            r"unknown padding 'full'. Use one of 'SAME', 'VALID', 'CAUSAL'",
        ),
        (
            lambda: ConvTranspose2D(4, 3, padding="causal"),
            r"unknown padding 'causal'. Use one of 'SAME', 'VALID'",
        ),
        (lambda: Conv2D(4, 3, padding="CAUSAL"), r"'CAUSAL' is for one spatial dim .* has 2"),
        (lambda: Conv2D(4, 3, padding=((1, 1),)), r"2 \(lo, hi\) pair\(s\) of ints"),
        (lambda: Conv2D(4, 3, padding=((1, 1), (1,))), r"pair\(s\) of ints, one per spatial dim"),
        (lambda: Conv2D(5, 3, groups=2), r"features=5 is not divisible by groups=2"),
        (lambda: Conv2D(4, 3, kernel_init="glorot"), r"unknown initializer 'glorot'"),
    ],
)
def test_config_errors(make, match):
    with pytest.raises(LayerError, match=match):
        make()


def test_input_errors():
    key = jax.random.key(0)
    with pytest.raises(
        LayerError,
        match=r"Conv2D: expects an input of shape \(batch, height, width, channels\) "
        r"with 4 axes, got shape \(5, 5, 3\)",
    ):
        Conv2D(4, 3).init(key, data((5, 5, 3)))
    with pytest.raises(
        LayerError, match=r"input has 3 channels, which is not divisible by groups=2"
    ):
        Conv2D(4, 3, groups=2).init(key, data((1, 5, 5, 3)))
    with pytest.raises(
        LayerError, match=r"size 2 \(padded to 2\), smaller than the dilated kernel extent 5"
    ):
        Conv1D(4, 3, padding="VALID", kernel_dilation=2).init(key, data((1, 2, 3)))
    with pytest.raises(LayerError, match=r"crops all 3 output cells"):
        ConvTranspose1D(4, 3, padding=((2, 1),)).init(key, data((1, 1, 3)))
    layer = Conv2D(4, 3)
    params, state = random_params(layer, data((1, 5, 5, 3))), {}
    with pytest.raises(
        LayerError, match=r"kernel has shape \(3, 3, 3, 4\), but this layer expects \(3, 3, 2, 4\)"
    ):
        layer.apply(params, state, data((1, 5, 5, 2)))
    with pytest.raises(LayerError, match=r"params have entries \['w'\]"):
        layer.apply({**params, "w": params["bias"]}, state, data((1, 5, 5, 3)))


def test_jit_and_grad_through_the_layer():
    layer = Conv2D(2, 3, strides=2, groups=1)
    x = data((2, 6, 6, 3))
    params = random_params(layer, x)
    loss = lambda p: jnp.sum(layer.apply(p, {}, x)[0] ** 2)
    g = jax.jit(jax.grad(loss))(params)
    assert g["kernel"].shape == params["kernel"].shape
    assert bool(jnp.isfinite(g["kernel"]).all())


# ------------------------------------------- one input channel: taps on the CPU

TAPS_CASES = [
    # (input shape, features, kernel, strides, (lo, hi) pads, dilation)
    ((2, 7, 6, 1), 4, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 9, 8, 1), 3, (5, 5), (2, 1), ((2, 0), (1, 2)), (1, 2)),
    ((2, 11, 1), 3, (3,), (1,), ((4, 0),), (2,)),
    ((1, 4, 5, 6, 1), 2, (2, 2, 3), (1, 2, 2), ((0, 1), (0, 0), (1, 1)), (1, 1, 1)),
    ((2, 6, 6, 1), 2, (3, 3), (1, 1), ((-1, 1), (2, -1)), (1, 1)),  # negative pads crop
]


def taps_and_plain(strides, pads, dilation):
    """``_conv_taps`` and the ``lax.conv_general_dilated`` it stands for."""
    taps = functools.partial(_conv_taps, strides=strides, pads=pads, dilation=dilation)
    plain = functools.partial(
        lax.conv_general_dilated,
        window_strides=strides,
        padding=pads,
        rhs_dilation=dilation,
        dimension_numbers=_dimension_numbers(len(strides)),
    )
    return taps, plain


def value_and_derivatives(f, x, kernel):
    """``f(x, kernel)``, its vjp for a fixed cotangent and its jvp for fixed tangents."""
    y, vjp = jax.vjp(f, x, kernel)
    cotangent = jnp.asarray(np.random.default_rng(2).normal(size=y.shape), y.dtype)
    rng = np.random.default_rng(3)
    tangents = tuple(jnp.asarray(rng.normal(size=a.shape), a.dtype) for a in (x, kernel))
    return y, vjp(cotangent), jax.jvp(f, (x, kernel), tangents)[1]


# Jitted for every case; eager (op by op, slower to compile) for the first two.
TAPS_RUNS = [(c, True) for c in TAPS_CASES] + [(c, False) for c in TAPS_CASES[:2]]


@pytest.mark.parametrize(
    ("case", "jit"),
    TAPS_RUNS,
    ids=[f"{len(c[2])}d-{TAPS_CASES.index(c)}-{'jit' if j else 'eager'}" for c, j in TAPS_RUNS],
)
def test_one_channel_taps_equal_the_convolution(case, jit):
    """Value, input and kernel gradients and jvp agree with XLA's convolution."""
    shape, features, kernel_size, strides, pads, dilation = case
    taps, plain = taps_and_plain(strides, pads, dilation)
    x, kernel = data(shape), data((*kernel_size, 1, features), seed=1)
    run = jax.jit(value_and_derivatives, static_argnums=0) if jit else value_and_derivatives
    # Sums of at most 25 products (values), 2 * 11 * 9 (gradients): float32 rounding.
    chex.assert_trees_all_close(run(taps, x, kernel), run(plain, x, kernel), **TOL)


@pytest.mark.parametrize("case", TAPS_CASES[:3], ids=["2d", "2d-strided", "1d"])
def test_one_channel_taps_equal_the_convolution_in_float64(case):
    """In float64 the two agree to float64 rounding: the same sum in another order."""
    shape, features, kernel_size, strides, pads, dilation = case
    taps, plain = taps_and_plain(strides, pads, dilation)
    rng = np.random.default_rng(0)
    x, kernel = rng.normal(size=shape), rng.normal(size=(*kernel_size, 1, features))
    with jax.enable_x64(True):
        x, kernel = jnp.asarray(x, jnp.float64), jnp.asarray(kernel, jnp.float64)
        got = jax.jit(value_and_derivatives, static_argnums=0)(taps, x, kernel)
        want = value_and_derivatives(plain, x, kernel)
        assert got[0].dtype == jnp.float64
        chex.assert_trees_all_close(got, want, rtol=1e-12, atol=1e-12)


def test_one_channel_taps_under_vmap():
    """Kernels of an ensemble (vmap over members) give each member's own convolution."""
    taps, plain = taps_and_plain((2, 1), ((1, 1), (0, 2)), (1, 1))
    x, kernels = data((2, 7, 6, 1)), data((3, 3, 2, 1, 4), seed=1)
    loss = lambda f: lambda k: jnp.sum(f(x, k) ** 2)
    got = jax.vmap(jax.value_and_grad(loss(taps)))(kernels)
    want = [jax.value_and_grad(loss(plain))(k) for k in kernels]
    chex.assert_trees_all_close(got, jax.tree.map(lambda *a: jnp.stack(a), *want), **TOL)


@pytest.mark.parametrize(
    ("channels", "dtype", "groups", "platform", "convolutions"),
    [
        (1, jnp.float32, 1, "cpu", 0),
        (1, jnp.float32, 1, "cuda", 2),  # other backends keep XLA's convolution
        (2, jnp.float32, 1, "cpu", 2),  # more channels: XLA's convolution is faster
        (2, jnp.float32, 2, "cpu", 2),  # groups of one channel stay convolutions too
        (1, jnp.bfloat16, 1, "cpu", 2),  # half precision: XLA's accumulation
    ],
)
def test_one_channel_conv_takes_taps_on_the_cpu_only(
    channels, dtype, groups, platform, convolutions
):
    """The path is chosen when the program is lowered, from its platform and shapes.

    The jitted gradient with respect to the params holds two convolutions (forward
    and kernel gradient) on the plain path, none with taps.
    """
    layer = Conv2D(4, 3, groups=groups)
    x = jnp.zeros((2, 6, 6, channels), dtype)
    params = jax.tree.map(lambda a: a.astype(dtype), random_params(layer, x))
    loss = lambda p: jnp.sum(layer.apply(p, {}, x)[0].astype(jnp.float32) ** 2)
    lowered = jax.jit(jax.grad(loss)).trace(params).lower(lowering_platforms=(platform,))
    assert lowered.as_text().count("stablehlo.convolution") == convolutions


# ------------------------------------------------------------- aliases and vocabulary


@pytest.mark.parametrize(
    ("alias", "general", "kernel", "shape", "options"),
    [
        (Conv1D, Conv, 3, (2, 9, 4), {"kernel_dilation": 2, "groups": 2, "padding": "CAUSAL"}),
        (Conv2D, Conv, 3, (2, 7, 7, 3), {"strides": 2, "use_bias": False}),
        (Conv3D, Conv, 2, (1, 4, 5, 6, 2), {"padding": "VALID", "kernel_init": "he_normal"}),
        (ConvTranspose1D, ConvTranspose, 4, (2, 5, 3), {"strides": 2, "kernel_dilation": 2}),
        (ConvTranspose2D, ConvTranspose, 3, (1, 4, 4, 2), {"strides": (1, 2)}),
        (ConvTranspose3D, ConvTranspose, 2, (1, 2, 3, 2, 1), {"padding": "VALID"}),
    ],
)
def test_aliases_are_the_general_layer_with_a_fixed_rank(alias, general, kernel, shape, options):
    rank = len(shape) - 2
    x = data(shape)
    a = alias(4, kernel, **options)
    g = general(4, (kernel,) * rank, **options)
    assert (a.kind, g.kind) == (alias.__name__, general.__name__)
    pa, _ = a.init(jax.random.key(0), x)
    pg, _ = g.init(jax.random.key(0), x)
    jax.tree.map(np.testing.assert_array_equal, pa, pg)
    np.testing.assert_array_equal(a.apply(pa, {}, x)[0], g.apply(pg, {}, x)[0])


def test_dilation_is_called_kernel_dilation():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'dilation'"):
        Conv(4, (3,), dilation=2)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'dilation'"):
        Conv2D(4, 3, dilation=2)
