"""Pooling over channels-last inputs: max and average over windows, and global pooling.

Inputs are ``(batch, *spatial, channels)``; every channel is pooled on its own. The
number of spatial dims comes from the window tuple, or is fixed by the ``1D``/``2D``/
``3D`` names, so that an ``int`` window means a square (cubic) one. Windows, strides and
padding are parsed by :mod:`jaxnn.layers.spatial`, shared with the convolutions. On
the CPU, max pooling over windows of up to 9 cells takes its gradient from strided
slices instead of XLA's select-and-scatter, which is slow there; the numbers are the
same, ties included.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn.core import Layer, LayerError, configured
from jaxnn.layers import spatial
from jaxnn.layers._common import stateless
from jaxnn.layers.spatial import IntOrTuple, Padding, window_taps

__all__ = [
    "AvgPool",
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "MaxPool",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
]


def _accumulator(dtype: Any) -> np.dtype:
    """Sums of half-precision inputs are accumulated in float32."""
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating) or dtype.itemsize < 4:
        return jnp.dtype(jnp.float32)
    return dtype


def _window_counts(
    sizes: tuple[int, ...],
    window: tuple[int, ...],
    strides: tuple[int, ...],
    pads: Sequence[tuple[int, int]],
) -> np.ndarray:
    """How many real (unpadded) cells each window covers: shape ``(1, *out, 1)``.

    Computed in NumPy at trace time, one factor per spatial dim, so it becomes a
    constant of the compiled program.
    """
    counts = np.ones((), np.float64)
    for n, w, s, (lo, hi) in zip(sizes, window, strides, pads, strict=True):
        out = (n + lo + hi - w) // s + 1
        start = np.arange(out) * s - lo
        per_dim = np.minimum(start + w, n) - np.maximum(start, 0)
        counts = np.multiply.outer(counts, np.maximum(per_dim, 0))
    return counts[None, ..., None]


# Max pooling's gradient on the CPU. JAX differentiates ``reduce_window(max)`` into
# XLA's select-and-scatter, which the CPU backend runs slowly: a 2x2 pool of a
# (128, 28, 28, 32) input and its gradient take 55 ms, the forward pass alone 0.5 ms.
# _max_pool_taps has the same value and the same gradient, written with strided
# slices that XLA fuses into a few elementwise loops: 4.6 ms (benchmarks/README.md,
# "Convolutions on the CPU"). With windows of more cells than this (4x4, 5x5) the
# slices were slower than select-and-scatter, so those keep it.
_TAPS_MAX_CELLS = 9


def _max_pool(x: Any, dims: tuple, steps: tuple, pads: tuple) -> Any:
    """``reduce_window(max)`` over a floating ``x``, padded with ``-inf``."""
    return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, dims, steps, pads)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _max_pool_taps(x: Any, dims: tuple, steps: tuple, pads: tuple) -> Any:
    """:func:`_max_pool`, with its tangent taken from strided slices (see above).

    The tangent of a window is the tangent of the cell that XLA's select-and-scatter
    picks for ``reduce_window(max)``'s gradient (with JAX's ``>=`` as the select):
    going through the window in row-major order, a cell replaces the one kept so far
    unless the kept one is ``>=`` it. So a tie goes to the first of the equal cells,
    as in JAX's gradient, and a NaN is handled as there too.
    """
    return _max_pool(x, dims, steps, pads)


@_max_pool_taps.defjvp
def _max_pool_taps_jvp(
    dims: tuple, steps: tuple, pads: tuple, primals: tuple, tangents: tuple
) -> tuple[Any, Any]:
    (x,), (t,) = primals, tangents
    y = _max_pool(x, dims, steps, pads)
    config = [(lo, hi, 0) for lo, hi in pads]
    xp = lax.pad(x, np.array(-np.inf, x.dtype), config)
    tp = lax.pad(t, np.array(0, t.dtype), config)
    kept_x = kept_t = None
    # Tap k of each holds, for every output position, the cell at offset k in its window.
    x_taps, t_taps = (window_taps(a, dims, y.shape, steps) for a in (xp, tp))
    for (_, xk), (_, tk) in zip(x_taps, t_taps, strict=True):
        if kept_x is None:
            kept_x, kept_t = xk, tk
            continue
        keep = kept_x >= xk
        kept_x = jnp.where(keep, kept_x, xk)
        kept_t = jnp.where(keep, kept_t, tk)
    return y, kept_t


def _pool(
    kind: str,
    rank: int | None,
    window: IntOrTuple,
    strides: IntOrTuple | None,
    padding: Padding,
    *,
    reducer: str,
    name: str | None,
) -> Layer:
    """A max (``reducer="max"``) or average pooling layer of kind ``kind``."""
    win = spatial.window(
        kind,
        rank,
        size_name="window",
        size=window,
        strides=strides,
        padding=padding,
        modes=("SAME", "VALID"),
    )

    def check(x: Any) -> None:
        spatial.check_input(kind, x, win.rank)
        sizes = tuple(x.shape[1:-1])
        for lo, hi in win.pads(sizes):
            if min(lo, hi) < 0:
                raise LayerError(kind, f"padding pairs must not be negative, got ({lo}, {hi}).")
        win.check_fits(kind, sizes, "window")
        for axis, ((lo, hi), w) in enumerate(zip(win.pads(sizes), win.size, strict=True)):
            if max(lo, hi) >= w:
                raise LayerError(
                    kind,
                    f"padding ({lo}, {hi}) of spatial dim {axis} is not smaller than the "
                    f"window {w}, so some windows would hold only padding. Use pairs "
                    f"smaller than the window.",
                )

    def pool(x: Any) -> Any:
        sizes = tuple(x.shape[1:-1])
        pads = [(0, 0), *win.pads(sizes), (0, 0)]
        dims = (1, *win.size, 1)
        steps = (1, *win.strides, 1)
        # The initial values are NumPy scalars, concrete even under jit, so that JAX
        # recognises the max/add monoids and uses its differentiable window reductions.
        if reducer == "max":
            if not jnp.issubdtype(x.dtype, jnp.floating):
                lowest = np.array(jnp.iinfo(x.dtype).min, x.dtype)
                return lax.reduce_window(x, lowest, lax.max, dims, steps, pads)
            config = (dims, steps, tuple(pads))
            if math.prod(win.size) > _TAPS_MAX_CELLS:
                return _max_pool(x, *config)
            # The platform is known when the program is lowered: the CPU takes the
            # tangent from strided slices, other backends keep XLA's own gradient.
            return lax.platform_dependent(
                x,
                cpu=lambda x: _max_pool_taps(x, *config),
                default=lambda x: _max_pool(x, *config),
            )
        acc = _accumulator(x.dtype)
        out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else acc
        total = lax.reduce_window(x.astype(acc), np.array(0, acc), lax.add, dims, steps, pads)
        counts = _window_counts(sizes, win.size, win.strides, pads[1:-1])
        return (total / jnp.asarray(counts, acc)).astype(out_dtype)

    return stateless(kind, pool, check=check, name=name)


# ------------------------------------------------------------------------- MaxPool


@configured
def MaxPool(
    window: Sequence[int],
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """Max pooling over any number of spatial dims, set by ``len(window)``.

    Args:
        window: the window, one int per spatial dim; its length sets the number of
            spatial dims (an int is refused: use a tuple, or ``MaxPool2D``).
        strides: the step between windows: one int for all dims, one per dim, or
            ``None`` for the window (non-overlapping windows).
        padding: ``"VALID"`` (no padding), ``"SAME"`` (``ceil(n / stride)``
            outputs), or explicit ``((lo, hi), ...)`` pairs, each smaller than the
            window. Padded cells never win the max. Case does not matter.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, *spatial, channels)`` to
        ``y: (batch, *out_spatial, channels)``, with no params and no state. Along a
        dim of size ``n``: ``out = (n + lo + hi - window) // stride + 1``.

    Raises:
        LayerError: for a non-positive window or stride, an int ``window``, a tuple
            whose length differs from ``window``'s, an unknown padding string, and at
            ``init`` or ``apply``, an input of the wrong rank, a window larger than
            the padded input, or pads as large as the window.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = MaxPool((2, 2))
        >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0][0, :, :, 0].tolist()
        [[5.0, 7.0], [13.0, 15.0]]
    """
    return _pool("MaxPool", None, window, strides, padding, reducer="max", name=name)


@configured
def MaxPool1D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """As :func:`MaxPool` with 1 spatial dimension.

    Example:
        >>> import jax.numpy as jnp
        >>> layer = MaxPool1D(3, strides=1, padding="SAME")
        >>> x = jnp.array([[[1.0], [5.0], [2.0], [0.0]]])
        >>> layer.apply({}, {}, x)[0][0, :, 0].tolist()
        [5.0, 5.0, 5.0, 2.0]
    """
    return _pool("MaxPool1D", 1, window, strides, padding, reducer="max", name=name)


@configured
def MaxPool2D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """As :func:`MaxPool` with 2 spatial dimensions.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = MaxPool2D(2)
        >>> x = jnp.zeros((8, 28, 28, 32))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (8, 14, 14, 32)
    """
    return _pool("MaxPool2D", 2, window, strides, padding, reducer="max", name=name)


@configured
def MaxPool3D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """As :func:`MaxPool` with 3 spatial dimensions.

    Example:
        >>> import jax.numpy as jnp
        >>> MaxPool3D(2, padding="SAME").apply({}, {}, jnp.zeros((1, 5, 4, 3, 2)))[0].shape
        (1, 3, 2, 2, 2)
    """
    return _pool("MaxPool3D", 3, window, strides, padding, reducer="max", name=name)


# ------------------------------------------------------------------------- AvgPool


@configured
def AvgPool(
    window: Sequence[int],
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """Average pooling over any number of spatial dims, set by ``len(window)``.

    Padding is excluded from the average: a window that overlaps the border is the
    mean of the real cells it covers only (Keras's and TensorFlow's behaviour;
    PyTorch's ``count_include_pad=False``), so a constant input stays constant.

    Args:
        window: the window, one int per spatial dim; its length sets the number of
            spatial dims (an int is refused: use a tuple, or ``AvgPool2D``).
        strides: the step between windows: one int for all dims, one per dim, or
            ``None`` for the window (non-overlapping windows).
        padding: ``"VALID"`` (no padding), ``"SAME"`` (``ceil(n / stride)``
            outputs), or explicit ``((lo, hi), ...)`` pairs, each smaller than the
            window. Case does not matter.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, *spatial, channels)`` to
        ``y: (batch, *out_spatial, channels)`` in the input's floating dtype
        (float32 for integer inputs), with no params and no state. Half-precision
        inputs are summed in float32.

    Raises:
        LayerError: for a non-positive window or stride, an int ``window``, a tuple
            whose length differs from ``window``'s, an unknown padding string, and at
            ``init`` or ``apply``, an input of the wrong rank, a window larger than
            the padded input, or pads as large as the window.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = AvgPool((3,), strides=1, padding="SAME")
        >>> x = jnp.array([[[3.0], [6.0], [9.0]]])
        >>> layer.apply({}, {}, x)[0][0, :, 0].tolist()  # edges average 2 cells, not 3
        [4.5, 6.0, 7.5]
    """
    return _pool("AvgPool", None, window, strides, padding, reducer="avg", name=name)


@configured
def AvgPool1D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """As :func:`AvgPool` with 1 spatial dimension.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[[1.0], [3.0], [5.0], [7.0]]])
        >>> AvgPool1D(2).apply({}, {}, x)[0][0, :, 0].tolist()
        [2.0, 6.0]
    """
    return _pool("AvgPool1D", 1, window, strides, padding, reducer="avg", name=name)


@configured
def AvgPool2D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """As :func:`AvgPool` with 2 spatial dimensions.

    Example:
        >>> import jax.numpy as jnp
        >>> y = AvgPool2D(3, strides=2, padding="SAME").apply({}, {}, jnp.ones((2, 7, 7, 4)))[0]
        >>> y.shape, bool((y == 1.0).all())  # padding is not averaged in
        ((2, 4, 4, 4), True)
    """
    return _pool("AvgPool2D", 2, window, strides, padding, reducer="avg", name=name)


@configured
def AvgPool3D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """As :func:`AvgPool` with 3 spatial dimensions.

    Example:
        >>> import jax.numpy as jnp
        >>> AvgPool3D(2).apply({}, {}, jnp.ones((1, 4, 4, 4, 3)))[0].shape
        (1, 2, 2, 2, 3)
    """
    return _pool("AvgPool3D", 3, window, strides, padding, reducer="avg", name=name)


# ------------------------------------------------------------------------- global


def _global(kind: str, reducer: str, keepdims: bool, name: str | None) -> Layer:
    def pool(x: Any) -> Any:
        axes = tuple(range(1, x.ndim - 1))
        if reducer == "max":
            return jnp.max(x, axis=axes, keepdims=keepdims)
        acc = _accumulator(x.dtype)
        out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else acc
        return jnp.mean(x.astype(acc), axis=axes, keepdims=keepdims).astype(out_dtype)

    return stateless(kind, pool, check=lambda x: spatial.check_input(kind, x, None), name=name)


@configured
def GlobalAvgPool(*, keepdims: bool = False, name: str | None = None) -> Layer:
    """Averages over every spatial axis: one value per example and channel.

    Args:
        keepdims: keep the spatial axes with size 1 instead of dropping them.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, *spatial, channels)`` (any number of spatial
        dims) to ``y: (batch, channels)``, or ``(batch, 1, ..., 1, channels)`` with
        ``keepdims``; in the input's floating dtype (float32 for integer inputs;
        half-precision inputs are summed in float32). No params, no state.

    Raises:
        LayerError: for an input with fewer than three axes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = GlobalAvgPool()
        >>> x = jnp.ones((8, 7, 7, 64))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (8, 64)
    """
    return _global("GlobalAvgPool", "avg", keepdims, name)


@configured
def GlobalMaxPool(*, keepdims: bool = False, name: str | None = None) -> Layer:
    """Takes the maximum over every spatial axis: one value per example and channel.

    Args:
        keepdims: keep the spatial axes with size 1 instead of dropping them.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, *spatial, channels)`` (any number of spatial
        dims) to ``y: (batch, channels)``, or ``(batch, 1, ..., 1, channels)`` with
        ``keepdims``. No params, no state.

    Raises:
        LayerError: for an input with fewer than three axes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.arange(12.0).reshape(2, 3, 2)
        >>> GlobalMaxPool(keepdims=True).apply({}, {}, x)[0].tolist()
        [[[4.0, 5.0]], [[10.0, 11.0]]]
    """
    return _global("GlobalMaxPool", "max", keepdims, name)
