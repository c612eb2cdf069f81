"""Convolutions over channels-last inputs: ``Conv`` and ``ConvTranspose`` in N dims.

Inputs are ``(batch, *spatial, channels)`` and kernels ``(*kernel_size, in, out)``
(``HWIO`` for two dims), XLA's native layouts. One N-d implementation over
``lax.conv_general_dilated`` serves every rank; ``Conv1D``, ``Conv2D``, ``Conv3D`` (and
the ``ConvTranspose`` ones) only fix the number of spatial dims, so that an ``int``
``kernel_size`` means a square (cubic) window. Windows, strides, dilation and padding
are parsed by :mod:`jaxnn.layers.spatial`, shared with pooling. On the CPU, a
convolution of a single input channel is summed tap by tap instead, which XLA runs
faster there (the same numbers up to rounding); other backends always convolve.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn import initializers as inits
from jaxnn._types import DTypeLike, Params, PRNGKey, Spec, State
from jaxnn.core import Layer, LayerError, check_entries, configured
from jaxnn.layers._common import along_last, check_positive, compute_dtype, param, resolve
from jaxnn.layers.spatial import IntOrTuple, Padding, check_input, window, window_taps

__all__ = [
    "Conv",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "ConvTranspose",
    "ConvTranspose1D",
    "ConvTranspose2D",
    "ConvTranspose3D",
]


def _dimension_numbers(rank: int) -> lax.ConvDimensionNumbers:
    # (batch, *spatial, channels), (*spatial, in, out), (batch, *spatial, channels).
    io = (0, rank + 1, *range(1, rank + 1))
    kernel = (rank + 1, rank, *range(rank))
    return lax.ConvDimensionNumbers(io, kernel, io)


def _check_kernel(kind: str, kernel: Any, expected: tuple[int, ...], what: str) -> None:
    if tuple(kernel.shape) != expected:
        raise LayerError(
            kind,
            f"kernel has shape {tuple(kernel.shape)}, but this layer expects {expected} "
            f"({what}) for this input. Pass the params returned by this model's own init "
            "for an input like this one.",
        )


def _kernel_and_bias(
    key: PRNGKey,
    shape: tuple[int, ...],
    use_bias: bool,
    kernel_fn: inits.Initializer,
    bias_fn: inits.Initializer,
    param_dtype: DTypeLike,
) -> Params:
    params = {"kernel": param(key, "kernel", kernel_fn, shape, param_dtype)}
    if use_bias:
        params["bias"] = param(key, "bias", bias_fn, shape[-1:], param_dtype)
    return params


# A convolution of a single input channel on the CPU. XLA's CPU convolution is slow
# when the input has one channel (a grey image entering a CNN): for a 3x3, 1 -> 32
# convolution of a (128, 28, 28, 1) batch, 4.1 ms forward, 8.8 ms for the kernel
# gradient and 6.9 ms for the input gradient, against 0.6, 4.3 and 2.0 ms (best of 10,
# 2 cores) for _conv_taps, which writes the same sum tap by tap: one strided slice of the padded
# input per kernel cell, times that cell's row of the kernel (benchmarks/README.md,
# "Convolutions on the CPU"). Its derivatives are JAX's own, of slices and products;
# only the order of the sum differs from XLA's, so results agree to rounding. With
# more channels, or more kernel cells than this, XLA's convolution is faster.
_TAPS_MAX_CELLS = 25


def _taps_apply(x: Any, kernel: Any, groups: int) -> bool:
    """Whether ``x`` and ``kernel`` may take :func:`_conv_taps` on the CPU."""
    cells = math.prod(kernel.shape[:-2])
    return (
        groups == 1
        and kernel.shape[-2] == 1
        and cells <= _TAPS_MAX_CELLS
        and jnp.dtype(x.dtype) in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
    )


def _conv_taps(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    pads: Sequence[tuple[int, int]],
    dilation: tuple[int, ...],
) -> Any:
    """``lax.conv_general_dilated`` of a one-channel ``x`` as a sum over kernel taps.

    Args:
        x: ``(batch, *spatial, 1)``.
        kernel: ``(*kernel_size, 1, features)``.
        strides: one per spatial dim.
        pads: ``(lo, hi)`` per spatial dim (negative pads crop).
        dilation: the kernel dilation, one per spatial dim.

    Returns:
        ``(batch, *out_spatial, features)``, as the convolution.
    """
    rank = x.ndim - 2
    xp = lax.pad(x, np.array(0, x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)])
    size = kernel.shape[:rank]
    out = [
        (n - (k - 1) * d - 1) // s + 1
        for n, k, d, s in zip(xp.shape[1:-1], size, dilation, strides, strict=True)
    ]
    contract = (((rank + 1,), (0,)), ((), ()))
    y = None
    taps = window_taps(
        xp, (1, *size, 1), (x.shape[0], *out, 1), (1, *strides, 1), (1, *dilation, 1)
    )
    for offset, xk in taps:
        term = lax.dot_general(xk, kernel[offset[1:-1]], contract)
        y = term if y is None else y + term
    return y


# ------------------------------------------------------------------------------ Conv


def _conv(
    kind: str,
    rank: int | None,
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    kernel_dilation: IntOrTuple = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """:func:`Conv` of kind ``kind``, with ``rank`` spatial dims (``None``: from the window)."""
    check_positive(kind, "features", features)
    check_positive(kind, "groups", groups)
    win = window(
        kind,
        rank,
        size_name="kernel_size",
        size=kernel_size,
        strides=strides,
        kernel_dilation=kernel_dilation,
        padding=padding,
        modes=("SAME", "VALID", "CAUSAL"),
    )
    if features % groups:
        raise LayerError(
            kind,
            f"features={features} is not divisible by groups={groups}; each group needs "
            "the same number of output channels. Choose features as a multiple of groups.",
        )
    kernel_fn = resolve(kind, inits.get, kernel_init)
    bias_fn = resolve(kind, inits.get, bias_init)
    names = ("kernel", "bias") if use_bias else ("kernel",)
    numbers = _dimension_numbers(win.rank)

    def check(x: Any) -> None:
        check_input(kind, x, win.rank)
        channels = x.shape[-1]
        if channels % groups:
            raise LayerError(
                kind,
                f"the input has {channels} channels, which is not divisible by "
                f"groups={groups}. Use groups that divides the channel count "
                f"(groups={channels} is depthwise).",
            )
        win.check_fits(kind, tuple(x.shape[1:-1]), "dilated kernel extent")

    def kernel_shape(x: Any) -> tuple[int, ...]:
        return (*win.size, x.shape[-1] // groups, features)

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        check(x)
        return _kernel_and_bias(key, kernel_shape(x), use_bias, kernel_fn, bias_fn, param_dtype), {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        del key, training
        check_entries(kind, "params", params, names, names)
        check(x)
        kernel = params["kernel"]
        _check_kernel(
            kind, kernel, kernel_shape(x), "kernel_size, input channels / groups, features"
        )
        cdt = compute_dtype(x, dtype, param_dtype)
        x, kernel = x.astype(cdt), kernel.astype(cdt)
        pads = win.pads(tuple(x.shape[1:-1]))
        conv = functools.partial(
            lax.conv_general_dilated,
            window_strides=win.strides,
            padding=pads,
            rhs_dilation=win.dilation,
            dimension_numbers=numbers,
            feature_group_count=groups,
        )
        if _taps_apply(x, kernel, groups):
            # Chosen when the program is lowered: the CPU sums taps, others convolve.
            taps = functools.partial(
                _conv_taps, strides=win.strides, pads=pads, dilation=win.dilation
            )
            y = lax.platform_dependent(x, kernel, cpu=taps, default=conv)
        else:
            y = conv(x, kernel)
        if use_bias:
            y = y + along_last(params["bias"].astype(cdt), y.ndim)
        return y, state

    return Layer(init, apply, kind, name)


@configured
def Conv(
    features: int,
    kernel_size: Sequence[int],
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    kernel_dilation: IntOrTuple = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A convolution over any number of spatial dims, set by ``len(kernel_size)``.

    ``y[b, o, f] = bias[f] + sum_{k, c} x[b, o * stride + k * kernel_dilation - lo, c]
    * kernel[k, c, f]`` per spatial dim (a cross-correlation, as in every deep-learning
    library), summed within each group of channels.

    Args:
        features: the number of output channels.
        kernel_size: the window, one int per spatial dim; its length sets the
            number of spatial dims (an int is refused: use a tuple, or ``Conv2D``).
        strides: the step between windows: one int for all dims, or one per dim.
        padding: ``"SAME"`` (``ceil(n / stride)`` outputs; an odd padding cell goes at
            the end), ``"VALID"`` (no padding), ``"CAUSAL"`` (one spatial dim only:
            ``(k - 1) * kernel_dilation`` zeros before the sequence, so output ``t``
            sees inputs up to ``t``), or explicit ``((lo, hi), ...)`` pairs, one per
            spatial dim. Case does not matter.
        kernel_dilation: the spacing between kernel taps (atrous convolution): one
            int for all dims, or one per dim.
        groups: split the channels into this many groups convolved separately;
            ``groups == in_channels`` is a depthwise convolution. The input channels
            and ``features`` must both be divisible by it.
        use_bias: whether to add a bias.
        kernel_init: initializer of ``kernel``, shape
            ``(*kernel_size, in_channels // groups, features)``; Glorot uniform.
        bias_init: initializer of ``bias``, shape ``(features,)``; zeros.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, *spatial, in_channels)`` to
        ``y: (batch, *out_spatial, features)``, with params ``{"kernel", "bias"}``.
        Along a spatial dim of size ``n``, with extent
        ``e = (k - 1) * kernel_dilation + 1``: ``out = ceil(n / stride)`` for
        ``"SAME"``, ``(n - e) // stride + 1`` for ``"VALID"``,
        ``(n + lo + hi - e) // stride + 1`` for pairs, and ``n`` for ``"CAUSAL"``
        with stride 1.

    Raises:
        LayerError: for a non-positive ``features``, ``groups``, kernel size, stride
            or dilation; an int ``kernel_size``; a tuple whose length differs from
            ``kernel_size``'s; an unknown padding string; ``"CAUSAL"`` with more than
            one spatial dim; ``features`` not divisible by ``groups``; an unknown
            initializer; and at ``init`` or ``apply``, an input of the wrong rank,
            channels not divisible by ``groups``, a window larger than the padded
            input, or params that do not fit the input.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Conv(8, kernel_size=(3, 3), strides=2)
        >>> x = jnp.zeros((4, 28, 28, 1))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> params["kernel"].shape
        (3, 3, 1, 8)
        >>> layer.apply(params, state, x)[0].shape
        (4, 14, 14, 8)
    """
    return _conv(
        "Conv",
        None,
        features,
        kernel_size,
        strides,
        padding,
        kernel_dilation=kernel_dilation,
        groups=groups,
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


@configured
def Conv1D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    **options: Any,
) -> Layer:
    """As :func:`Conv` with 1 spatial dimension.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Conv1D(16, 5, padding="CAUSAL", kernel_dilation=2)
        >>> x = jnp.zeros((2, 100, 3))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> params["kernel"].shape, layer.apply(params, state, x)[0].shape
        ((5, 3, 16), (2, 100, 16))
    """
    return _conv("Conv1D", 1, features, kernel_size, strides, padding, **options)


@configured
def Conv2D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    **options: Any,
) -> Layer:
    """As :func:`Conv` with 2 spatial dimensions.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Conv2D(32, 3)
        >>> x = jnp.zeros((8, 28, 28, 1))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> params["kernel"].shape, layer.apply(params, state, x)[0].shape
        ((3, 3, 1, 32), (8, 28, 28, 32))
    """
    return _conv("Conv2D", 2, features, kernel_size, strides, padding, **options)


@configured
def Conv3D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    **options: Any,
) -> Layer:
    """As :func:`Conv` with 3 spatial dimensions.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Conv3D(4, 3, padding="VALID")
        >>> x = jnp.zeros((1, 5, 6, 7, 2))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (1, 3, 4, 5, 4)
    """
    return _conv("Conv3D", 3, features, kernel_size, strides, padding, **options)


# --------------------------------------------------------------------- ConvTranspose


def _conv_transpose(
    kind: str,
    rank: int | None,
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    kernel_dilation: IntOrTuple = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """:func:`ConvTranspose` of kind ``kind``, with ``rank`` spatial dims."""
    check_positive(kind, "features", features)
    win = window(
        kind,
        rank,
        size_name="kernel_size",
        size=kernel_size,
        strides=strides,
        kernel_dilation=kernel_dilation,
        padding=padding,
        modes=("SAME", "VALID"),
    )
    kernel_fn = resolve(kind, inits.get, kernel_init)
    bias_fn = resolve(kind, inits.get, bias_init)
    names = ("kernel", "bias") if use_bias else ("kernel",)
    numbers = _dimension_numbers(win.rank)

    def crops_for(spatial: tuple[int, ...]) -> list[tuple[int, int]]:
        # Cells removed from each end of the full ("VALID") output; negative adds zeros.
        if win.padding == "VALID":
            return [(0, 0)] * win.rank
        if win.padding == "SAME":
            # The crops that make this the transpose of a "SAME" Conv with these strides.
            crops = []
            for n, e, s in zip(spatial, win.extent, win.strides, strict=True):
                lo = max(e - s, 0) // 2
                crops.append((lo, (n - 1) * s + e - n * s - lo))
            return crops
        return list(win.padding)

    def check(x: Any) -> None:
        check_input(kind, x, win.rank)
        spatial = tuple(x.shape[1:-1])
        for axis, (n, (lo, hi), e, s) in enumerate(
            zip(spatial, crops_for(spatial), win.extent, win.strides, strict=True)
        ):
            if (n - 1) * s + e - lo - hi < 1:
                raise LayerError(
                    kind,
                    f"padding ({lo}, {hi}) crops all {(n - 1) * s + e} output cells of "
                    f"spatial dim {axis}. Use smaller explicit pairs.",
                )

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        check(x)
        shape = (*win.size, x.shape[-1], features)
        return _kernel_and_bias(key, shape, use_bias, kernel_fn, bias_fn, param_dtype), {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        del key, training
        check_entries(kind, "params", params, names, names)
        check(x)
        kernel = params["kernel"]
        _check_kernel(
            kind, kernel, (*win.size, x.shape[-1], features), "kernel_size, in channels, features"
        )
        cdt = compute_dtype(x, dtype, param_dtype)
        # Dilate the input by the strides, pad it fully, and correlate with the flipped
        # kernel: every input cell i then scatters kernel tap k to output i * s + k * d.
        pads = [
            (e - 1 - lo, e - 1 - hi)
            for e, (lo, hi) in zip(win.extent, crops_for(tuple(x.shape[1:-1])), strict=True)
        ]
        flipped = jnp.flip(kernel.astype(cdt), axis=tuple(range(win.rank)))
        y = lax.conv_general_dilated(
            x.astype(cdt),
            flipped,
            window_strides=(1,) * win.rank,
            padding=pads,
            lhs_dilation=win.strides,
            rhs_dilation=win.dilation,
            dimension_numbers=numbers,
        )
        if use_bias:
            y = y + along_last(params["bias"].astype(cdt), y.ndim)
        return y, state

    return Layer(init, apply, kind, name)


@configured
def ConvTranspose(
    features: int,
    kernel_size: Sequence[int],
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    kernel_dilation: IntOrTuple = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A transposed convolution (learned upsampling); spatial dims from ``kernel_size``.

    Each input cell scatters a copy of the kernel into the output:
    ``y[b, i * stride + k * kernel_dilation - lo, f] += x[b, i, c] * kernel[k, c, f]``
    per spatial dim, then ``bias`` is added. This is the gradient of a :func:`Conv`
    with respect to its input (as in Keras and PyTorch), so it undoes the shape change
    of a strided convolution.

    Args:
        features: the number of output channels.
        kernel_size: the window, one int per spatial dim; its length sets the
            number of spatial dims (an int is refused: use a tuple, or
            ``ConvTranspose2D``).
        strides: the upsampling factor: one int for all dims, or one per dim.
        padding: ``"SAME"`` (``n * stride`` outputs: the transpose of a ``"SAME"``
            :func:`Conv` with these strides), ``"VALID"`` (all
            ``(n - 1) * stride + (k - 1) * kernel_dilation + 1`` outputs), or explicit
            ``((lo, hi), ...)`` pairs: the cells cut from each end of the ``"VALID"``
            output (PyTorch's ``padding``). Case does not matter. When the stride is
            larger than the kernel, Keras's ``"valid"`` pads the output with zeros to
            ``n * stride``; jaxnn's ``"VALID"`` is the exact transpose of a
            ``"VALID"`` :func:`Conv` (as in PyTorch and ``lax.conv_transpose``), so
            it has ``stride - k`` fewer cells there.
        kernel_dilation: the spacing between kernel taps: one int or one per dim.
        use_bias: whether to add a bias.
        kernel_init: initializer of ``kernel``, shape
            ``(*kernel_size, in_channels, features)``, the layout of :func:`Conv`
            (XLA's HWIO); Glorot uniform. Keras's ``Conv*Transpose`` stores
            ``(*kernel_size, features, in_channels)``: swap the last two axes of a
            Keras kernel to load it.
        bias_init: initializer of ``bias``, shape ``(features,)``; zeros.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, *spatial, in_channels)`` to
        ``y: (batch, *out_spatial, features)``, with params ``{"kernel", "bias"}``.

    Raises:
        LayerError: for a non-positive ``features``, kernel size, stride or
            dilation; an int ``kernel_size``; a tuple whose length differs from
            ``kernel_size``'s; an unknown padding string (``"CAUSAL"`` included); an
            unknown initializer; and at ``init`` or ``apply``, an input of the wrong
            rank, pairs that crop the whole output, or params that do not fit the
            input.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = ConvTranspose(8, kernel_size=(3, 3), strides=2)
        >>> x = jnp.zeros((4, 7, 7, 16))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> params["kernel"].shape
        (3, 3, 16, 8)
        >>> layer.apply(params, state, x)[0].shape
        (4, 14, 14, 8)
    """
    return _conv_transpose(
        "ConvTranspose",
        None,
        features,
        kernel_size,
        strides,
        padding,
        kernel_dilation=kernel_dilation,
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


@configured
def ConvTranspose1D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    **options: Any,
) -> Layer:
    """As :func:`ConvTranspose` with 1 spatial dimension.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = ConvTranspose1D(2, 4, strides=2, padding="VALID")
        >>> x = jnp.zeros((3, 10, 5))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape  # (10 - 1) * 2 + 4
        (3, 22, 2)
    """
    return _conv_transpose("ConvTranspose1D", 1, features, kernel_size, strides, padding, **options)


@configured
def ConvTranspose2D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    **options: Any,
) -> Layer:
    """As :func:`ConvTranspose` with 2 spatial dimensions.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = ConvTranspose2D(3, 4, strides=2)
        >>> x = jnp.zeros((1, 8, 8, 6))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (1, 16, 16, 3)
    """
    return _conv_transpose("ConvTranspose2D", 2, features, kernel_size, strides, padding, **options)


@configured
def ConvTranspose3D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    **options: Any,
) -> Layer:
    """As :func:`ConvTranspose` with 3 spatial dimensions.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = ConvTranspose3D(2, 2, strides=2)
        >>> x = jnp.zeros((1, 3, 4, 5, 1))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (1, 6, 8, 10, 2)
    """
    return _conv_transpose("ConvTranspose3D", 3, features, kernel_size, strides, padding, **options)
