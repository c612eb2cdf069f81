"""What convolutions, transposed convolutions and pooling share: windows over space.

Inputs are channels-last, ``(batch, *spatial, channels)``. A layer's spatial rank is
fixed by its name (``Conv2D``, ``MaxPool3D``) or, for the general ``Conv``,
``ConvTranspose``, ``MaxPool`` and ``AvgPool``, by the length of its window tuple.
:func:`window` parses a layer's window, strides, dilation and padding once, at
construction, into a :class:`Window`; :meth:`Window.pads` turns its padding into
explicit ``(lo, hi)`` pairs for an input's spatial sizes, the same rule for every layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
from jax import lax

from jaxnn.core import LayerError
from jaxnn.layers._common import check_positive

__all__ = [
    "IntOrTuple",
    "Padding",
    "Window",
    "check_input",
    "int_tuple",
    "layout",
    "parse_padding",
    "same_pads",
    "spatial_rank",
    "window",
    "window_taps",
]

Padding = str | Sequence[tuple[int, int]]
"""A padding mode (``"SAME"``, ``"VALID"``, ``"CAUSAL"``) or ``(lo, hi)`` pairs per dim."""
IntOrTuple = int | Sequence[int]
"""One int for every spatial dim, or one per dim."""

_SPATIAL_NAMES = {1: "length", 2: "height, width", 3: "depth, height, width"}


def layout(rank: int | None, channels: str = "channels") -> str:
    """The input layout written out for messages.

    Example:
        >>> layout(2), layout(None)
        ('(batch, height, width, channels)', '(batch, *spatial, channels)')
    """
    if rank is None:
        return f"(batch, *spatial, {channels})"
    spatial = _SPATIAL_NAMES.get(rank, ", ".join(f"d{i}" for i in range(rank)))
    return f"(batch, {spatial}, {channels})"


def spatial_rank(kind: str, what: str, value: Any, rank: int | None) -> int:
    """The number of spatial dims: ``rank`` when fixed, else the length of ``value``.

    Raises:
        LayerError: when ``rank`` is ``None`` and ``value`` is an int (it cannot say
            how many dims) or not a non-empty tuple.

    Example:
        >>> spatial_rank("Conv", "kernel_size", (3, 3), None)
        2
    """
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
    """``value`` (an int or a ``rank``-tuple of positive ints) as a ``rank``-tuple.

    Raises:
        LayerError: for a tuple of another length or an entry that is not a
            positive int.

    Example:
        >>> int_tuple("Conv2D", "strides", 2, 2)
        (2, 2)
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,) * rank
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise LayerError(kind, f"{what} must be an int or a tuple of ints, got {value!r}.")
    if len(value) != rank:
        raise LayerError(
            kind,
            f"{what}={tuple(value)!r} has {len(value)} entries, but this layer has {rank} "
            "spatial dim(s) (set by the layer's name, or by the length of its window). "
            "Give one entry per spatial dim, or a single int for all.",
        )
    return tuple(check_positive(kind, f"every entry of {what}", v) for v in value)


def parse_padding(
    kind: str, padding: Any, rank: int, modes: Sequence[str]
) -> str | tuple[tuple[int, int], ...]:
    """An upper-case padding mode from ``modes``, or ``rank`` explicit ``(lo, hi)`` pairs.

    Raises:
        LayerError: for an unknown mode (listing ``modes``), ``"CAUSAL"`` with more
            than one spatial dim, or pairs of the wrong number or form.

    Example:
        >>> parse_padding("Conv2D", "same", 2, ("SAME", "VALID"))
        'SAME'
        >>> parse_padding("Conv1D", [(2, 0)], 1, ("SAME", "VALID"))
        ((2, 0),)
    """
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


def same_pads(size: int, extent: int, stride: int) -> tuple[int, int]:
    """Pads giving ``ceil(size / stride)`` outputs, the odd one at the end (as in XLA).

    Example:
        >>> same_pads(5, 3, 2)  # 3 outputs from 5 cells: windows at 0, 2, 4
        (1, 1)
        >>> same_pads(4, 2, 1)
        (0, 1)
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def check_input(kind: str, x: Any, rank: int | None, min_rank: int = 1) -> int:
    """Checks that ``x`` is ``(batch, *spatial, channels)``; returns the spatial rank.

    With ``rank=None`` any number of spatial dims from ``min_rank`` on is accepted.

    Raises:
        LayerError: for something that is not an array, or of the wrong rank.

    Example:
        >>> import jax.numpy as jnp
        >>> check_input("GlobalAvgPool", jnp.zeros((2, 5, 5, 3)), None)
        2
    """
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


class Window(NamedTuple):
    """A layer's window over space, parsed and checked once by :func:`window`.

    Attributes:
        rank: the number of spatial dims.
        size: the window (kernel size, pooling window), one int per dim.
        strides: the step between windows, one int per dim.
        dilation: the spacing between the window's taps, one int per dim.
        padding: an upper-case mode (``"SAME"``, ``"VALID"``, ``"CAUSAL"``) or
            explicit ``(lo, hi)`` pairs, one per dim.
    """

    rank: int
    size: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str | tuple[tuple[int, int], ...]

    @property
    def extent(self) -> tuple[int, ...]:
        """The cells the dilated window spans: ``(size - 1) * dilation + 1`` per dim."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.size, self.dilation, strict=True))

    def pads(self, spatial: Sequence[int]) -> list[tuple[int, int]]:
        """The ``(lo, hi)`` zeros added around each spatial dim of an input.

        ``"VALID"`` adds none, ``"SAME"`` gives ``ceil(n / stride)`` outputs
        (:func:`same_pads`), ``"CAUSAL"`` puts ``extent - 1`` zeros before the
        sequence, and explicit pairs are returned as they are.

        Args:
            spatial: the input's spatial sizes.

        Returns:
            One ``(lo, hi)`` pair per spatial dim.

        Example:
            >>> w = window("Conv1D", 1, size_name="kernel_size", size=3, strides=1,
            ...            kernel_dilation=2, padding="CAUSAL", modes=("VALID", "CAUSAL"))
            >>> w.extent, w.pads((10,))
            ((5,), [(4, 0)])
        """
        if self.padding == "VALID":
            return [(0, 0)] * self.rank
        if self.padding == "CAUSAL":
            return [(self.extent[0] - 1, 0)]
        if self.padding == "SAME":
            return [
                same_pads(n, e, s)
                for n, e, s in zip(spatial, self.extent, self.strides, strict=True)
            ]
        return list(self.padding)

    def check_fits(self, kind: str, spatial: Sequence[int], what: str) -> None:
        """Raises a :class:`LayerError` if a padded spatial dim is smaller than the extent.

        Args:
            kind: the layer's kind, for the message.
            spatial: the input's spatial sizes.
            what: the window's name in the message (``"window"``,
                ``"dilated kernel extent"``).

        Raises:
            LayerError: naming the first dim with no output position.
        """
        for axis, (n, (lo, hi), e) in enumerate(
            zip(spatial, self.pads(spatial), self.extent, strict=True)
        ):
            if n + lo + hi < e:
                raise LayerError(
                    kind,
                    f"spatial dim {axis} of the input has size {n} (padded to {n + lo + hi}), "
                    f"smaller than the {what} {e}, so there is no output position. Use "
                    f"padding='SAME', a smaller {what}, or a larger input.",
                )


def window(
    kind: str,
    rank: int | None,
    *,
    size_name: str,
    size: IntOrTuple,
    strides: IntOrTuple | None,
    padding: Padding,
    modes: Sequence[str],
    kernel_dilation: IntOrTuple = 1,
) -> Window:
    """Parses and checks a layer's window, strides, dilation and padding.

    Args:
        kind: the layer's kind, for messages.
        rank: the number of spatial dims when the layer's name fixes it; ``None`` to
            take it from the length of ``size``.
        size_name: the argument's name in messages (``"kernel_size"``, ``"window"``).
        size: the window: an int (with a fixed ``rank``) or one int per dim.
        strides: an int or one per dim; ``None`` for ``size`` (non-overlapping).
        padding: a mode from ``modes`` (any case) or explicit ``(lo, hi)`` pairs.
        modes: the padding modes this layer accepts.
        kernel_dilation: the spacing between the window's taps: an int or one per dim.

    Returns:
        The :class:`Window`.

    Raises:
        LayerError: for an int ``size`` without a fixed rank, a tuple of the wrong
            length, a non-positive entry, or a bad padding (see
            :func:`parse_padding`).

    Example:
        >>> w = window("MaxPool2D", 2, size_name="window", size=2, strides=None,
        ...            padding="valid", modes=("SAME", "VALID"))
        >>> w.size, w.strides, w.padding
        ((2, 2), (2, 2), 'VALID')
    """
    rank = spatial_rank(kind, size_name, size, rank)
    size = int_tuple(kind, size_name, size, rank)
    strides = size if strides is None else int_tuple(kind, "strides", strides, rank)
    dilation = int_tuple(kind, "kernel_dilation", kernel_dilation, rank)
    return Window(rank, size, strides, dilation, parse_padding(kind, padding, rank, modes))


def window_taps(
    padded: Any,
    size: Sequence[int],
    out: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int] | None = None,
) -> Iterator[tuple[tuple[int, ...], Any]]:
    """Every cell of a window, as the strided slice of ``padded`` that holds, at each
    output position, the input cell at that offset in its window.

    A window reduction (a pooling, a convolution of one input channel) is then an
    elementwise sum or choice over the slices, which XLA fuses. Every argument has one
    entry per dim of ``padded``, batch and channels included (a window of size 1 there).

    Args:
        padded: the input, already padded.
        size: the window's size per dim.
        out: the output's size per dim.
        strides: the window's step per dim.
        dilation: the spacing of the window's cells per dim (default 1).

    Yields:
        ``(offset, slice)`` for each cell in row-major order; each slice has shape
        ``out``.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.arange(5.0)[None, :, None]
        >>> [(k, v.ravel().tolist()) for k, v in window_taps(x, (1, 2, 1), (1, 2, 1), (1, 2, 1))]
        [((0, 0, 0), [0.0, 2.0]), ((0, 1, 0), [1.0, 3.0])]
    """
    dilation = (1,) * len(size) if dilation is None else tuple(dilation)
    for offset in itertools.product(*map(range, size)):
        start = [k * d for k, d in zip(offset, dilation, strict=True)]
        limit = [b + (n - 1) * s + 1 for b, n, s in zip(start, out, strides, strict=True)]
        yield offset, lax.slice(padded, start, limit, tuple(strides))
