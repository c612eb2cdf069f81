"""Convolutions over channels-last inputs: ``Conv`` and ``ConvTranspose`` in N dims.

Inputs are ``(batch, *spatial, channels)`` and kernels ``(*kernel_size, in, out)``
(``HWIO`` for two dims), XLA's native layouts. One N-d implementation over
``lax.conv_general_dilated`` serves every rank; ``Conv1D``, ``Conv2D``, ``Conv3D`` (and
the ``ConvTranspose`` ones) only fix the number of spatial dims, so that an ``int``
``kernel_size`` means a square (cubic) window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn import initializers as inits
from jaxnn._types import DTypeLike, Params, PRNGKey, Spec, State
from jaxnn.core import Layer, LayerError, check_entries, child_key
from jaxnn.layers._common import along_last, check_positive, compute_dtype

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

Padding = str | Sequence[tuple[int, int]]
IntOrTuple = int | Sequence[int]

_SPATIAL_NAMES = {1: "length", 2: "height, width", 3: "depth, height, width"}


# --------------------------------------------------------------------------- helpers
# Shared with ``jaxnn.layers.pooling``.


def layout(rank: int | None, channels: str = "channels") -> str:
    """The input layout ``(batch, height, width, channels)`` written out for messages."""
    if rank is None:
        return f"(batch, *spatial, {channels})"
    spatial = _SPATIAL_NAMES.get(rank, ", ".join(f"d{i}" for i in range(rank)))
    return f"(batch, {spatial}, {channels})"


def spatial_rank(kind: str, what: str, value: Any, rank: int | None) -> int:
    """The number of spatial dims: ``rank`` when fixed, else the length of ``value``."""
    if rank is not None:
        return rank
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        raise LayerError(
            kind,
            f"{what}={value!r} does not say how many spatial dims this layer has. Pass a "
            f"tuple with one entry per spatial dim, e.g. {what}=({value}, {value}), or use "
            f"{kind}1D, {kind}2D or {kind}3D.",
        )
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise LayerError(
            kind, f"{what} must be an int or a non-empty tuple of ints, got {value!r}."
        )
    return len(value)


def int_tuple(kind: str, what: str, value: Any, rank: int) -> tuple[int, ...]:
    """``value`` (an int or a ``rank``-tuple of positive ints) as a ``rank``-tuple."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,) * rank
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise LayerError(kind, f"{what} must be an int or a tuple of ints, got {value!r}.")
    if len(value) != rank:
        raise LayerError(
            kind,
            f"{what}={tuple(value)!r} has {len(value)} entries, but this layer has {rank} "
            f"spatial dim(s) (set by the layer's name, or by the length of its window). "
            "Give one entry "
            f"per spatial dim, or a single int for all.",
        )
    for v in value:
        check_positive(kind, f"every entry of {what}", v)
    return tuple(int(v) for v in value)


def parse_padding(
    kind: str, padding: Any, rank: int, modes: Sequence[str]
) -> str | tuple[tuple[int, int], ...]:
    """An upper-case padding mode from ``modes``, or ``rank`` explicit ``(lo, hi)`` pairs."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode not in modes:
            valid = ", ".join(repr(m) for m in modes)
            raise LayerError(
                kind,
                f"unknown padding {padding!r}. Use one of {valid}, or explicit "
                f"((lo, hi), ...) pairs, one per spatial dim.",
            )
        if mode == "CAUSAL" and rank != 1:
            raise LayerError(
                kind,
                f"padding 'CAUSAL' is for one spatial dim (sequences), but this layer has "
                f"{rank}. Use 'SAME', 'VALID' or explicit ((lo, hi), ...) pairs.",
            )
        return mode
    ok = isinstance(padding, Sequence) and len(padding) == rank
    if ok:
        for pair in padding:
            ok = ok and isinstance(pair, Sequence) and len(pair) == 2
            ok = ok and all(isinstance(p, (int, np.integer)) for p in pair)
    if not ok:
        raise LayerError(
            kind,
            f"padding must be a string or {rank} (lo, hi) pair(s) of ints, one per spatial "
            f"dim, got {padding!r}. For example padding={((1, 1),) * rank!r}.",
        )
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def same_pads(size: int, window: int, stride: int) -> tuple[int, int]:
    """Pads giving ``ceil(size / stride)`` outputs, the extra one at the end (as in XLA)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def check_input(kind: str, x: Any, rank: int | None, min_rank: int = 1) -> int:
    """Checks that ``x`` is ``(batch, *spatial, channels)``; returns the spatial rank."""
    if not hasattr(x, "shape"):
        raise LayerError(kind, f"expects an array input {layout(rank)}, got {type(x).__name__}.")
    if rank is None:
        if x.ndim < min_rank + 2:
            raise LayerError(
                kind,
                f"expects an input {layout(None)} with at least {min_rank} spatial dim(s), "
                f"got shape {tuple(x.shape)}. Add the batch axis (x[None]) or the channel "
                "axis (x[..., None]).",
            )
        return x.ndim - 2
    if x.ndim != rank + 2:
        raise LayerError(
            kind,
            f"expects an input of shape {layout(rank)} with {rank + 2} axes, got shape "
            f"{tuple(x.shape)}. Add the batch axis (x[None]) or the channel axis "
            "(x[..., None]), or use the layer for the right number of spatial dims.",
        )
    return rank


def _dimension_numbers(rank: int) -> lax.ConvDimensionNumbers:
    # (batch, *spatial, channels), (*spatial, in, out), (batch, *spatial, channels).
    io = (0, rank + 1, *range(1, rank + 1))
    kernel = (rank + 1, rank, *range(rank))
    return lax.ConvDimensionNumbers(io, kernel, io)


def _initializers(kind: str, kernel_init: Any, bias_init: Any) -> tuple:
    try:
        return inits.get(kernel_init), inits.get(bias_init)
    except (ValueError, TypeError) as e:
        raise LayerError(kind, str(e)) from e


def _check_kernel(kind: str, kernel: Any, expected: tuple[int, ...], what: str) -> None:
    if tuple(kernel.shape) != expected:
        raise LayerError(
            kind,
            f"kernel has shape {tuple(kernel.shape)}, but this layer expects {expected} "
            f"({what}) for this input. Pass the params returned by this model's own init "
            "for an input like this one.",
        )


# ------------------------------------------------------------------------------ Conv


def _conv(
    kind: str,
    rank: int | None,
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple,
    padding: Padding,
    dilation: IntOrTuple,
    groups: int,
    use_bias: bool,
    kernel_init: Any,
    bias_init: Any,
    dtype: DTypeLike | None,
    param_dtype: DTypeLike,
    name: str | None,
) -> Layer:
    check_positive(kind, "features", features)
    check_positive(kind, "groups", groups)
    rank = spatial_rank(kind, "kernel_size", kernel_size, rank)
    window = int_tuple(kind, "kernel_size", kernel_size, rank)
    strides = int_tuple(kind, "strides", strides, rank)
    dilation = int_tuple(kind, "dilation", dilation, rank)
    pad = parse_padding(kind, padding, rank, ("SAME", "VALID", "CAUSAL"))
    if features % groups:
        raise LayerError(
            kind,
            f"features={features} is not divisible by groups={groups}; each group needs "
            "the same number of output channels. Choose features as a multiple of groups.",
        )
    kernel_fn, bias_fn = _initializers(kind, kernel_init, bias_init)
    names = ("kernel", "bias") if use_bias else ("kernel",)
    extent = tuple((k - 1) * d + 1 for k, d in zip(window, dilation, strict=True))
    numbers = _dimension_numbers(rank)

    def pads_for(spatial: tuple[int, ...]) -> list[tuple[int, int]]:
        if pad == "VALID":
            return [(0, 0)] * rank
        if pad == "CAUSAL":
            return [(extent[0] - 1, 0)]
        if pad == "SAME":
            return [same_pads(n, e, s) for n, e, s in zip(spatial, extent, strides, strict=True)]
        return list(pad)

    def check(x: Any) -> None:
        check_input(kind, x, rank)
        channels = x.shape[-1]
        if channels % groups:
            raise LayerError(
                kind,
                f"the input has {channels} channels, which is not divisible by "
                f"groups={groups}. Use groups that divides the channel count "
                f"(groups={channels} is depthwise).",
            )
        spatial = tuple(x.shape[1:-1])
        for axis, (n, (lo, hi), e) in enumerate(
            zip(spatial, pads_for(spatial), extent, strict=True)
        ):
            if n + lo + hi < e:
                raise LayerError(
                    kind,
                    f"spatial dim {axis} of the input has size {n} (padded to {n + lo + hi}), "
                    f"smaller than the dilated kernel extent {e}, so there is no output "
                    f"position. Use padding='SAME', a smaller kernel, or a larger input.",
                )

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        check(x)
        shape = (*window, x.shape[-1] // groups, features)
        params = {"kernel": kernel_fn(child_key(key, "kernel"), shape, param_dtype)}
        if use_bias:
            params["bias"] = bias_fn(child_key(key, "bias"), (features,), param_dtype)
        return params, {}

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
            kind,
            kernel,
            (*window, x.shape[-1] // groups, features),
            "kernel_size, input channels / groups, features",
        )
        cdt = compute_dtype(x, dtype, param_dtype)
        y = lax.conv_general_dilated(
            x.astype(cdt),
            kernel.astype(cdt),
            window_strides=strides,
            padding=pads_for(tuple(x.shape[1:-1])),
            rhs_dilation=dilation,
            dimension_numbers=numbers,
            feature_group_count=groups,
        )
        if use_bias:
            y = y + along_last(params["bias"].astype(cdt), y.ndim)
        return y, state

    return Layer(init, apply, kind, name)


def Conv(
    features: int,
    kernel_size: Sequence[int],
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A convolution over any number of spatial dims, set by ``len(kernel_size)``.

    ``y[b, o, f] = bias[f] + sum_{k, c} x[b, o * stride + k * dilation - lo, c] *
    kernel[k, c, f]`` per spatial dim (a cross-correlation, as in every deep-learning
    library), summed within each group of channels.

    Args:
        features: the number of output channels.
        kernel_size: the window, one int per spatial dim; its length sets the
            number of spatial dims (an int is refused: use a tuple, or ``Conv2D``).
        strides: the step between windows: one int for all dims, or one per dim.
        padding: ``"SAME"`` (``ceil(n / stride)`` outputs; an odd padding cell goes at
            the end), ``"VALID"`` (no padding), ``"CAUSAL"`` (one spatial dim only:
            ``(k - 1) * dilation`` zeros before the sequence, so output ``t`` sees
            inputs up to ``t``), or explicit ``((lo, hi), ...)`` pairs, one per
            spatial dim. Case does not matter.
        dilation: the spacing between kernel taps (atrous convolution).
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
        Along a spatial dim of size ``n``, with extent ``e = (k - 1) * dilation + 1``:
        ``out = ceil(n / stride)`` for ``"SAME"``, ``(n - e) // stride + 1`` for
        ``"VALID"``, ``(n + lo + hi - e) // stride + 1`` for pairs, and ``n`` for
        ``"CAUSAL"`` with stride 1.

    Raises:
        LayerError: for a non-positive ``features``, ``groups``, kernel size, stride
            or dilation; an int ``kernel_size``; a tuple whose length differs from
            ``kernel_size``'s; an unknown padding string; ``"CAUSAL"`` with more than
            one spatial dim; ``features`` not divisible by ``groups``; and at ``init``
            or ``apply``, an input of the wrong rank, channels not divisible by
            ``groups``, a window larger than the padded input, or params that do not
            fit the input.

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
        "Conv", None, features, kernel_size, strides, padding, dilation, groups,
        use_bias, kernel_init, bias_init, dtype, param_dtype, name,
    )  # fmt: skip


def Conv1D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A convolution over sequences ``(batch, length, channels)``: :func:`Conv` in 1-D.

    Args:
        features: the number of output channels.
        kernel_size: the window length.
        strides: the step between windows.
        padding: ``"SAME"``, ``"VALID"``, ``"CAUSAL"`` or ``((lo, hi),)``; see :func:`Conv`.
        dilation: the spacing between kernel taps.
        groups: the number of channel groups; ``in_channels`` for depthwise.
        use_bias: whether to add a bias.
        kernel_init: initializer of ``kernel``, shape
            ``(*kernel_size, in_channels // groups, features)``.
        bias_init: initializer of ``bias``, shape ``(features,)``.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, length, in_channels)`` to
        ``y: (batch, *out_spatial, features)``, with params ``{"kernel", "bias"}``;
        sizes as in :func:`Conv`.

    Raises:
        LayerError: as :func:`Conv`, and for an input that is not
            ``(batch, length, channels)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Conv1D(16, 5, padding="CAUSAL", dilation=2)
        >>> x = jnp.zeros((2, 100, 3))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> params["kernel"].shape, layer.apply(params, state, x)[0].shape
        ((5, 3, 16), (2, 100, 16))
    """
    return _conv(
        "Conv1D", 1, features, kernel_size, strides, padding, dilation, groups,
        use_bias, kernel_init, bias_init, dtype, param_dtype, name,
    )  # fmt: skip


def Conv2D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A convolution over images ``(batch, height, width, channels)``: :func:`Conv` in 2-D.

    Args:
        features: the number of output channels.
        kernel_size: the window: one int for all 2 dims, or 2 ints.
        strides: the step between windows: one int or 2 ints.
        padding: ``"SAME"``, ``"VALID"`` or ``((lo, hi), ...)``; see :func:`Conv`.
        dilation: the spacing between kernel taps: one int or 2 ints.
        groups: the number of channel groups; ``in_channels`` for depthwise.
        use_bias: whether to add a bias.
        kernel_init: initializer of ``kernel``, shape
            ``(*kernel_size, in_channels // groups, features)``.
        bias_init: initializer of ``bias``, shape ``(features,)``.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, height, width, in_channels)`` to
        ``y: (batch, *out_spatial, features)``, with params ``{"kernel", "bias"}``;
        sizes as in :func:`Conv`.

    Raises:
        LayerError: as :func:`Conv`, and for an input that is not
            ``(batch, height, width, channels)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> depthwise = Conv2D(6, 3, groups=3)  # two filters per input channel
        >>> x = jnp.zeros((2, 8, 8, 3))
        >>> params, state = depthwise.init(jax.random.key(0), x)
        >>> params["kernel"].shape, depthwise.apply(params, state, x)[0].shape
        ((3, 3, 1, 6), (2, 8, 8, 6))
    """
    return _conv(
        "Conv2D", 2, features, kernel_size, strides, padding, dilation, groups,
        use_bias, kernel_init, bias_init, dtype, param_dtype, name,
    )  # fmt: skip


def Conv3D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A convolution over volumes ``(batch, depth, height, width, channels)``: 3-D.

    Args:
        features: the number of output channels.
        kernel_size: the window: one int for all 3 dims, or 3 ints.
        strides: the step between windows: one int or 3 ints.
        padding: ``"SAME"``, ``"VALID"`` or ``((lo, hi), ...)``; see :func:`Conv`.
        dilation: the spacing between kernel taps: one int or 3 ints.
        groups: the number of channel groups; ``in_channels`` for depthwise.
        use_bias: whether to add a bias.
        kernel_init: initializer of ``kernel``, shape
            ``(*kernel_size, in_channels // groups, features)``.
        bias_init: initializer of ``bias``, shape ``(features,)``.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, depth, height, width, in_channels)`` to
        ``y: (batch, *out_spatial, features)``, with params ``{"kernel", "bias"}``;
        sizes as in :func:`Conv`.

    Raises:
        LayerError: as :func:`Conv`, and for an input that is not
            ``(batch, depth, height, width, channels)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Conv3D(4, 3, padding="VALID")
        >>> x = jnp.zeros((1, 5, 6, 7, 2))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (1, 3, 4, 5, 4)
    """
    return _conv(
        "Conv3D", 3, features, kernel_size, strides, padding, dilation, groups,
        use_bias, kernel_init, bias_init, dtype, param_dtype, name,
    )  # fmt: skip


# --------------------------------------------------------------------- ConvTranspose


def _conv_transpose(
    kind: str,
    rank: int | None,
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple,
    padding: Padding,
    dilation: IntOrTuple,
    use_bias: bool,
    kernel_init: Any,
    bias_init: Any,
    dtype: DTypeLike | None,
    param_dtype: DTypeLike,
    name: str | None,
) -> Layer:
    check_positive(kind, "features", features)
    rank = spatial_rank(kind, "kernel_size", kernel_size, rank)
    window = int_tuple(kind, "kernel_size", kernel_size, rank)
    strides = int_tuple(kind, "strides", strides, rank)
    dilation = int_tuple(kind, "dilation", dilation, rank)
    pad = parse_padding(kind, padding, rank, ("SAME", "VALID"))
    kernel_fn, bias_fn = _initializers(kind, kernel_init, bias_init)
    names = ("kernel", "bias") if use_bias else ("kernel",)
    extent = tuple((k - 1) * d + 1 for k, d in zip(window, dilation, strict=True))
    numbers = _dimension_numbers(rank)

    def crops_for(spatial: tuple[int, ...]) -> list[tuple[int, int]]:
        # Cells removed from each end of the full ("VALID") output; negative adds zeros.
        if pad == "VALID":
            return [(0, 0)] * rank
        if pad == "SAME":
            # The crops that make this the transpose of a "SAME" Conv with these strides.
            crops = []
            for n, e, s in zip(spatial, extent, strides, strict=True):
                lo = max(e - s, 0) // 2
                crops.append((lo, (n - 1) * s + e - n * s - lo))
            return crops
        return list(pad)

    def check(x: Any) -> None:
        check_input(kind, x, rank)
        spatial = tuple(x.shape[1:-1])
        for axis, (n, (lo, hi), e, s) in enumerate(
            zip(spatial, crops_for(spatial), extent, strides, strict=True)
        ):
            if (n - 1) * s + e - lo - hi < 1:
                raise LayerError(
                    kind,
                    f"padding ({lo}, {hi}) crops all {(n - 1) * s + e} output cells of "
                    f"spatial dim {axis}. Use smaller explicit pairs.",
                )

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        check(x)
        shape = (*window, x.shape[-1], features)
        params = {"kernel": kernel_fn(child_key(key, "kernel"), shape, param_dtype)}
        if use_bias:
            params["bias"] = bias_fn(child_key(key, "bias"), (features,), param_dtype)
        return params, {}

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
            kind, kernel, (*window, x.shape[-1], features), "kernel_size, in channels, features"
        )
        cdt = compute_dtype(x, dtype, param_dtype)
        # Dilate the input by the strides, pad it fully, and correlate with the flipped
        # kernel: every input cell i then scatters kernel tap k to output i * s + k * d.
        pads = [
            (e - 1 - lo, e - 1 - hi)
            for e, (lo, hi) in zip(extent, crops_for(tuple(x.shape[1:-1])), strict=True)
        ]
        flipped = jnp.flip(kernel.astype(cdt), axis=tuple(range(rank)))
        y = lax.conv_general_dilated(
            x.astype(cdt),
            flipped,
            window_strides=(1,) * rank,
            padding=pads,
            lhs_dilation=strides,
            rhs_dilation=dilation,
            dimension_numbers=numbers,
        )
        if use_bias:
            y = y + along_last(params["bias"].astype(cdt), y.ndim)
        return y, state

    return Layer(init, apply, kind, name)


def ConvTranspose(
    features: int,
    kernel_size: Sequence[int],
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    dilation: IntOrTuple = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A transposed convolution (learned upsampling); spatial dims from ``kernel_size``.

    Each input cell scatters a copy of the kernel into the output:
    ``y[b, i * stride + k * dilation - lo, f] += x[b, i, c] * kernel[k, c, f]`` per
    spatial dim, then ``bias`` is added. This is the gradient of a :func:`Conv` with
    respect to its input (as in Keras and PyTorch), so it undoes the shape change of
    a strided convolution.

    Args:
        features: the number of output channels.
        kernel_size: the window, one int per spatial dim; its length sets the
            number of spatial dims (an int is refused: use a tuple, or
            ``ConvTranspose2D``).
        strides: the upsampling factor: one int for all dims, or one per dim.
        padding: ``"SAME"`` (``n * stride`` outputs: the transpose of a ``"SAME"``
            :func:`Conv` with these strides), ``"VALID"`` (all
            ``(n - 1) * stride + (k - 1) * dilation + 1`` outputs), or explicit
            ``((lo, hi), ...)`` pairs: the cells cut from each end of the ``"VALID"``
            output (PyTorch's ``padding``). Case does not matter.
        dilation: the spacing between kernel taps.
        use_bias: whether to add a bias.
        kernel_init: initializer of ``kernel``, shape
            ``(*kernel_size, in_channels, features)``; Glorot uniform.
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
            ``kernel_size``'s; an unknown padding string (``"CAUSAL"`` included); and
            at ``init`` or ``apply``, an input of the wrong rank, pairs that crop the
            whole output, or params that do not fit the input.

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
        "ConvTranspose", None, features, kernel_size, strides, padding, dilation,
        use_bias, kernel_init, bias_init, dtype, param_dtype, name,
    )  # fmt: skip


def ConvTranspose1D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    dilation: IntOrTuple = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A transposed convolution over sequences: :func:`ConvTranspose` in 1-D.

    Args:
        features: the number of output channels.
        kernel_size: the window length.
        strides: the upsampling factor.
        padding: ``"SAME"``, ``"VALID"`` or ``((lo, hi),)``; see :func:`ConvTranspose`.
        dilation: the spacing between kernel taps.
        use_bias: whether to add a bias.
        kernel_init: initializer of ``kernel``, shape
            ``(*kernel_size, in_channels, features)``.
        bias_init: initializer of ``bias``, shape ``(features,)``.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, length, in_channels)`` to
        ``y: (batch, *out_spatial, features)``, with params ``{"kernel", "bias"}``;
        sizes as in :func:`ConvTranspose`.

    Raises:
        LayerError: as :func:`ConvTranspose`, and for an input that is not
            ``(batch, length, channels)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = ConvTranspose1D(2, 4, strides=2, padding="VALID")
        >>> x = jnp.zeros((3, 10, 5))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape  # (10 - 1) * 2 + 4
        (3, 22, 2)
    """
    return _conv_transpose(
        "ConvTranspose1D", 1, features, kernel_size, strides, padding, dilation,
        use_bias, kernel_init, bias_init, dtype, param_dtype, name,
    )  # fmt: skip


def ConvTranspose2D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    dilation: IntOrTuple = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A transposed convolution over images: :func:`ConvTranspose` in 2-D.

    Args:
        features: the number of output channels.
        kernel_size: the window: one int for all 2 dims, or 2 ints.
        strides: the upsampling factor: one int or 2 ints.
        padding: ``"SAME"``, ``"VALID"`` or ``((lo, hi), ...)``; see :func:`ConvTranspose`.
        dilation: the spacing between kernel taps: one int or 2 ints.
        use_bias: whether to add a bias.
        kernel_init: initializer of ``kernel``, shape
            ``(*kernel_size, in_channels, features)``.
        bias_init: initializer of ``bias``, shape ``(features,)``.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, height, width, in_channels)`` to
        ``y: (batch, *out_spatial, features)``, with params ``{"kernel", "bias"}``;
        sizes as in :func:`ConvTranspose`.

    Raises:
        LayerError: as :func:`ConvTranspose`, and for an input that is not
            ``(batch, height, width, channels)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = ConvTranspose2D(3, 4, strides=2)
        >>> x = jnp.zeros((1, 8, 8, 6))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (1, 16, 16, 3)
    """
    return _conv_transpose(
        "ConvTranspose2D", 2, features, kernel_size, strides, padding, dilation,
        use_bias, kernel_init, bias_init, dtype, param_dtype, name,
    )  # fmt: skip


def ConvTranspose3D(
    features: int,
    kernel_size: IntOrTuple,
    strides: IntOrTuple = 1,
    padding: Padding = "SAME",
    *,
    dilation: IntOrTuple = 1,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A transposed convolution over volumes: :func:`ConvTranspose` in 3-D.

    Args:
        features: the number of output channels.
        kernel_size: the window: one int for all 3 dims, or 3 ints.
        strides: the upsampling factor: one int or 3 ints.
        padding: ``"SAME"``, ``"VALID"`` or ``((lo, hi), ...)``; see :func:`ConvTranspose`.
        dilation: the spacing between kernel taps: one int or 3 ints.
        use_bias: whether to add a bias.
        kernel_init: initializer of ``kernel``, shape
            ``(*kernel_size, in_channels, features)``.
        bias_init: initializer of ``bias``, shape ``(features,)``.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, depth, height, width, in_channels)`` to
        ``y: (batch, *out_spatial, features)``, with params ``{"kernel", "bias"}``;
        sizes as in :func:`ConvTranspose`.

    Raises:
        LayerError: as :func:`ConvTranspose`, and for an input that is not
            ``(batch, depth, height, width, channels)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = ConvTranspose3D(2, 2, strides=2)
        >>> x = jnp.zeros((1, 3, 4, 5, 1))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (1, 6, 8, 10, 2)
    """
    return _conv_transpose(
        "ConvTranspose3D", 3, features, kernel_size, strides, padding, dilation,
        use_bias, kernel_init, bias_init, dtype, param_dtype, name,
    )  # fmt: skip
