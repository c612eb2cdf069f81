"""Pooling over channels-last inputs: max and average over windows, and global pooling.

Inputs are ``(batch, *spatial, channels)``; every channel is pooled on its own. The
number of spatial dims comes from the window tuple, or is fixed by the ``1D``/``2D``/
``3D`` names, so that an ``int`` window means a square (cubic) one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn._types import Params, PRNGKey, Spec, State
from jaxnn.core import Layer, LayerError, check_entries
from jaxnn.layers.conv import check_input, int_tuple, parse_padding, same_pads, spatial_rank

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

Padding = str | Sequence[tuple[int, int]]
IntOrTuple = int | Sequence[int]


def _accumulator(dtype: Any) -> np.dtype:
    """Sums of half-precision inputs are accumulated in float32."""
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating) or dtype.itemsize < 4:
        return jnp.dtype(jnp.float32)
    return dtype


def _window_counts(
    spatial: tuple[int, ...],
    window: tuple[int, ...],
    strides: tuple[int, ...],
    pads: Sequence[tuple[int, int]],
) -> np.ndarray:
    """How many real (unpadded) cells each window covers: shape ``(1, *out, 1)``.

    Computed in NumPy at trace time, one factor per spatial dim, so it becomes a
    constant of the compiled program.
    """
    counts = np.ones((), np.float64)
    for n, w, s, (lo, hi) in zip(spatial, window, strides, pads, strict=True):
        out = (n + lo + hi - w) // s + 1
        start = np.arange(out) * s - lo
        per_dim = np.minimum(start + w, n) - np.maximum(start, 0)
        counts = np.multiply.outer(counts, np.maximum(per_dim, 0))
    return counts[None, ..., None]


def _pool(
    kind: str,
    rank: int | None,
    window: IntOrTuple,
    strides: IntOrTuple | None,
    padding: Padding,
    reducer: str,
    name: str | None,
) -> Layer:
    rank = spatial_rank(kind, "window", window, rank)
    window = int_tuple(kind, "window", window, rank)
    strides = window if strides is None else int_tuple(kind, "strides", strides, rank)
    pad = parse_padding(kind, padding, rank, ("SAME", "VALID"))

    def pads_for(spatial: tuple[int, ...]) -> list[tuple[int, int]]:
        if pad == "VALID":
            return [(0, 0)] * rank
        if pad == "SAME":
            return [same_pads(n, w, s) for n, w, s in zip(spatial, window, strides, strict=True)]
        return list(pad)

    def check(x: Any) -> None:
        check_input(kind, x, rank)
        spatial = tuple(x.shape[1:-1])
        for axis, (n, (lo, hi), w) in enumerate(
            zip(spatial, pads_for(spatial), window, strict=True)
        ):
            if min(lo, hi) < 0:
                raise LayerError(kind, f"padding pairs must not be negative, got ({lo}, {hi}).")
            if n + lo + hi < w:
                raise LayerError(
                    kind,
                    f"spatial dim {axis} of the input has size {n} (padded to {n + lo + hi}), "
                    f"smaller than the window {w}, so there is no output position. Use "
                    "padding='SAME', a smaller window, or a larger input.",
                )
            if max(lo, hi) >= w:
                raise LayerError(
                    kind,
                    f"padding ({lo}, {hi}) of spatial dim {axis} is not smaller than the "
                    f"window {w}, so some windows would hold only padding. Use pairs "
                    f"smaller than the window.",
                )

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        del key
        check(x)
        return {}, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        del key, training
        check_entries(kind, "params", params, ())
        check(x)
        spatial = tuple(x.shape[1:-1])
        pads = [(0, 0), *pads_for(spatial), (0, 0)]
        dims = (1, *window, 1)
        steps = (1, *strides, 1)
        # The initial values are NumPy scalars, concrete even under jit, so that JAX
        # recognises the max/add monoids and uses its differentiable window reductions.
        if reducer == "max":
            if jnp.issubdtype(x.dtype, jnp.floating):
                lowest = np.array(-np.inf, x.dtype)
            else:
                lowest = np.array(jnp.iinfo(x.dtype).min, x.dtype)
            return lax.reduce_window(x, lowest, lax.max, dims, steps, pads), state
        acc = _accumulator(x.dtype)
        out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else acc
        total = lax.reduce_window(x.astype(acc), np.array(0, acc), lax.add, dims, steps, pads)
        counts = _window_counts(spatial, window, strides, pads[1:-1])
        return (total / jnp.asarray(counts, acc)).astype(out_dtype), state

    return Layer(init, apply, kind, name)


# ------------------------------------------------------------------------- MaxPool


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
    return _pool("MaxPool", None, window, strides, padding, "max", name)


def MaxPool1D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """Max pooling over sequences ``(batch, length, channels)``: :func:`MaxPool` in 1-D.

    Args:
        window: the window length.
        strides: the step between windows; ``None`` for the window.
        padding: ``"VALID"``, ``"SAME"`` or ``((lo, hi),)``; see :func:`MaxPool`.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, length, channels)`` to
        ``y: (batch, out_length, channels)``, with no params and no state.

    Raises:
        LayerError: as :func:`MaxPool`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = MaxPool1D(3, strides=1, padding="SAME")
        >>> x = jnp.array([[[1.0], [5.0], [2.0], [0.0]]])
        >>> layer.apply({}, {}, x)[0][0, :, 0].tolist()
        [5.0, 5.0, 5.0, 2.0]
    """
    return _pool("MaxPool1D", 1, window, strides, padding, "max", name)


def MaxPool2D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """Max pooling over images ``(batch, height, width, channels)``: 2-D :func:`MaxPool`.

    Args:
        window: the window: one int for both dims, or two ints.
        strides: the step between windows: one int or two; ``None`` for the window.
        padding: ``"VALID"``, ``"SAME"`` or ``((lo, hi), (lo, hi))``; see :func:`MaxPool`.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, height, width, channels)`` to
        ``y: (batch, out_height, out_width, channels)``, with no params and no state.

    Raises:
        LayerError: as :func:`MaxPool`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = MaxPool2D(2)
        >>> x = jnp.zeros((8, 28, 28, 32))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (8, 14, 14, 32)
    """
    return _pool("MaxPool2D", 2, window, strides, padding, "max", name)


def MaxPool3D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """Max pooling over volumes ``(batch, depth, height, width, channels)``: 3-D.

    Args:
        window: the window: one int for all three dims, or three ints.
        strides: the step between windows: one int or three; ``None`` for the window.
        padding: ``"VALID"``, ``"SAME"`` or three ``(lo, hi)`` pairs; see :func:`MaxPool`.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, depth, height, width, channels)`` to
        ``y: (batch, *out_spatial, channels)``, with no params and no state.

    Raises:
        LayerError: as :func:`MaxPool`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = MaxPool3D(2, padding="SAME")
        >>> x = jnp.zeros((1, 5, 4, 3, 2))
        >>> layer.apply({}, {}, x)[0].shape
        (1, 3, 2, 2, 2)
    """
    return _pool("MaxPool3D", 3, window, strides, padding, "max", name)


# ------------------------------------------------------------------------- AvgPool


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
    return _pool("AvgPool", None, window, strides, padding, "avg", name)


def AvgPool1D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """Average pooling over sequences ``(batch, length, channels)``: 1-D :func:`AvgPool`.

    Padding is excluded from the average, as in :func:`AvgPool`.

    Args:
        window: the window length.
        strides: the step between windows; ``None`` for the window.
        padding: ``"VALID"``, ``"SAME"`` or ``((lo, hi),)``; see :func:`AvgPool`.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, length, channels)`` to
        ``y: (batch, out_length, channels)``, with no params and no state.

    Raises:
        LayerError: as :func:`AvgPool`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.array([[[1.0], [3.0], [5.0], [7.0]]])
        >>> AvgPool1D(2).apply({}, {}, x)[0][0, :, 0].tolist()
        [2.0, 6.0]
    """
    return _pool("AvgPool1D", 1, window, strides, padding, "avg", name)


def AvgPool2D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """Average pooling over images ``(batch, height, width, channels)``: 2-D.

    Padding is excluded from the average, as in :func:`AvgPool`.

    Args:
        window: the window: one int for both dims, or two ints.
        strides: the step between windows: one int or two; ``None`` for the window.
        padding: ``"VALID"``, ``"SAME"`` or ``((lo, hi), (lo, hi))``; see :func:`AvgPool`.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, height, width, channels)`` to
        ``y: (batch, out_height, out_width, channels)``, with no params and no state.

    Raises:
        LayerError: as :func:`AvgPool`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = AvgPool2D(3, strides=2, padding="SAME")
        >>> x = jnp.ones((2, 7, 7, 4))
        >>> y = layer.apply({}, {}, x)[0]
        >>> y.shape, bool((y == 1.0).all())
        ((2, 4, 4, 4), True)
    """
    return _pool("AvgPool2D", 2, window, strides, padding, "avg", name)


def AvgPool3D(
    window: IntOrTuple = 2,
    strides: IntOrTuple | None = None,
    padding: Padding = "VALID",
    *,
    name: str | None = None,
) -> Layer:
    """Average pooling over volumes ``(batch, depth, height, width, channels)``: 3-D.

    Padding is excluded from the average, as in :func:`AvgPool`.

    Args:
        window: the window: one int for all three dims, or three ints.
        strides: the step between windows: one int or three; ``None`` for the window.
        padding: ``"VALID"``, ``"SAME"`` or three ``(lo, hi)`` pairs; see :func:`AvgPool`.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, depth, height, width, channels)`` to
        ``y: (batch, *out_spatial, channels)``, with no params and no state.

    Raises:
        LayerError: as :func:`AvgPool`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> AvgPool3D(2).apply({}, {}, jnp.ones((1, 4, 4, 4, 3)))[0].shape
        (1, 2, 2, 2, 3)
    """
    return _pool("AvgPool3D", 3, window, strides, padding, "avg", name)


# ------------------------------------------------------------------------- global


def _global(kind: str, reducer: str, keepdims: bool, name: str | None) -> Layer:
    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        del key
        check_input(kind, x, None)
        return {}, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        del key, training
        check_entries(kind, "params", params, ())
        check_input(kind, x, None)
        axes = tuple(range(1, x.ndim - 1))
        if reducer == "max":
            return jnp.max(x, axis=axes, keepdims=keepdims), state
        acc = _accumulator(x.dtype)
        out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else acc
        y = jnp.mean(x.astype(acc), axis=axes, keepdims=keepdims)
        return y.astype(out_dtype), state

    return Layer(init, apply, kind, name)


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
