"""Recurrent layers: cells and the ``RNN`` layer that scans a cell over time.

A **cell** is a small value (:class:`Cell`) describing one recurrent step; it is not a
layer. :func:`RNN` turns a cell into a layer over inputs ``(batch, time, in_features)``,
running the step with ``lax.scan``. :func:`SimpleRNN`, :func:`LSTM` and :func:`GRU` are
``RNN`` over the matching cell; :func:`Bidirectional` runs a cell both ways.

Inputs. The layer contract passes data only through ``x``, so an ``RNN`` accepts
either an array ``x: (batch, time, in_features)``, or a dict with the extras::

    {"inputs": x,                 # (batch, time, in_features), required
     "lengths": lengths,          # (batch,) integers, optional
     "initial_carry": carry}      # the cell's carry for batch examples, optional

With ``lengths``, step ``t`` of example ``b`` is real when ``t < lengths[b]`` and padding
otherwise (lengths are clipped to ``[0, time]``): padding steps leave the carry
unchanged and their outputs are zeros, and the last output is the output of each
sequence's last real step. A reverse ``RNN`` reads each sequence from its last real
step back to step 0, and still returns outputs in the input's time order.

The cells and their equations are in :mod:`jaxnn.layers.cells`; this module re-exports
them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._types import Array, Params, PRNGKey, Spec, State
from jaxnn.core import Layer, LayerError, check_entries, child_key, configured, scope
from jaxnn.core import merge as merge_outputs
from jaxnn.layers._common import compute_dtype, dict_input
from jaxnn.layers.cells import Carry, Cell, GRUCell, LSTMCell, SimpleRNNCell

__all__ = [
    "Bidirectional",
    "Cell",
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "RNN",
    "SimpleRNN",
    "SimpleRNNCell",
]

_INPUT_KEYS = ("inputs", "lengths", "initial_carry")


class _RNNConfig(NamedTuple):
    """The options of one ``RNN`` direction: :func:`RNN` and :func:`Bidirectional` build
    their layers from this plain data with ``_make_rnn``."""

    kind: str
    cell: Cell
    return_sequences: bool
    return_carry: bool
    reverse: bool
    unroll: int | bool


def _split_input(kind: str, x: Any) -> tuple[Any, Any, Any]:
    """``x`` or ``{"inputs", "lengths", "initial_carry"}`` -> the three parts."""
    if isinstance(x, dict):
        return dict_input(
            kind,
            x,
            _INPUT_KEYS,
            "Pass {'inputs': x} with x: (batch, time, features), and optionally "
            "'lengths': (batch,) and 'initial_carry'.",
        )
    return x, None, None


def _check_sequence(kind: str, inputs: Any) -> None:
    if not hasattr(inputs, "shape") or not hasattr(inputs, "dtype"):
        raise LayerError(
            kind,
            f"expects inputs of shape (batch, time, features), got {type(inputs).__name__}.",
        )
    if inputs.ndim != 3:
        raise LayerError(
            kind,
            f"expects inputs of shape (batch, time, features), got shape "
            f"{tuple(inputs.shape)}. Add the missing axis (x[:, :, None] for one feature, "
            "x[None] for one sequence) or reshape.",
        )


def _check_lengths(kind: str, lengths: Any, batch: int) -> None:
    shape = tuple(getattr(lengths, "shape", ()))
    dtype = getattr(lengths, "dtype", None)
    if shape != (batch,) or dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise LayerError(
            kind,
            f"lengths must be integers of shape ({batch},), one per example, got "
            f"{type(lengths).__name__} of shape {shape} and dtype {dtype}. Pass e.g. "
            "jnp.asarray(lengths, jnp.int32).",
        )


def _check_carry(kind: str, given: Carry, expected: Carry) -> Carry:
    """Checks a user's initial carry against the cell's zero carry; casts it."""
    g_struct, e_struct = jax.tree.structure(given), jax.tree.structure(expected)
    g_shapes = [tuple(np.shape(a)) for a in jax.tree.leaves(given)]
    e_shapes = [tuple(a.shape) for a in jax.tree.leaves(expected)]
    if g_struct != e_struct or g_shapes != e_shapes:
        want = jax.tree.map(lambda a: tuple(a.shape), expected)
        got = jax.tree.map(lambda a: tuple(np.shape(a)), given)
        raise LayerError(
            kind,
            f"initial_carry must have the cell's carry structure and shapes {want}, got "
            f"{got}. Start from cell.initial_carry(batch, dtype) or a final carry of the "
            "same cell (return_carry=True).",
        )
    return jax.tree.map(lambda g, e: jnp.asarray(g).astype(e.dtype), given, expected)


def _where_rows(mask: Array, new: Any, old: Any) -> Any:
    """``new`` where ``mask`` (batch,) is true, else ``old``, for every leaf."""
    return jax.tree.map(
        lambda n, o: jnp.where(jnp.reshape(mask, mask.shape + (1,) * (n.ndim - 1)), n, o),
        new,
        old,
    )


def _make_rnn(config: _RNNConfig, name: str | None) -> Layer:
    kind, cell = config.kind, config.cell
    names = cell.param_names

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        inputs, _, _ = _split_input(kind, x)
        _check_sequence(kind, inputs)
        return cell.init(key, inputs.shape[-1]), {}

    # Made once per layer: an eager ``apply`` would otherwise trace and compile its scan
    # anew on every call (the scan's body is a new closure each time). Inside a caller's
    # jit, this is inlined like any other function.
    @jax.jit
    def scan_cell(params: Params, inputs: Array, lengths: Array | None, carry: Carry | None) -> Any:
        batch, time, _ = inputs.shape
        cdt = compute_dtype(inputs, cell.dtype, cell.param_dtype)
        if carry is None:
            carry = cell.initial_carry(batch, cdt)
        # The input part of every step at once, then time-major for the scan.
        u = jnp.swapaxes(cell.project(params, inputs.astype(cdt)), 0, 1)
        last = jnp.zeros((batch, cell.features), cdt)

        if lengths is None:

            def body(c: tuple, u_t: Array) -> tuple[tuple, Any]:
                new_carry, y = cell.recur(params, c[0], u_t)
                return (new_carry, y), (y if config.return_sequences else None)

            xs: Any = u
        else:
            steps = jnp.arange(time, dtype=lengths.dtype)
            real = steps[:, None] < lengths[None, :]  # (time, batch)

            def body(c: tuple, xs_t: tuple) -> tuple[tuple, Any]:
                u_t, real_t = xs_t
                new_carry, y = cell.recur(params, c[0], u_t)
                y = _where_rows(real_t, y, jnp.zeros_like(y))
                carry_t = _where_rows(real_t, new_carry, c[0])
                last_t = _where_rows(real_t, y, c[1])
                return (carry_t, last_t), (y if config.return_sequences else None)

            xs = (u, real)

        (carry, last), ys = jax.lax.scan(
            body, (carry, last), xs, reverse=config.reverse, unroll=config.unroll
        )
        y = jnp.swapaxes(ys, 0, 1) if config.return_sequences else last
        return (y, carry) if config.return_carry else y

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
        inputs, lengths, carry = _split_input(kind, x)
        _check_sequence(kind, inputs)
        batch, _, in_features = inputs.shape
        if "kernel" in params and params["kernel"].shape[0] != in_features:
            raise LayerError(
                kind,
                f"input has {in_features} features, but the kernel was initialised for "
                f"{params['kernel'].shape[0]}. Initialise with an input of shape (batch, "
                f"time, {in_features}), or fix the previous layer.",
            )
        if carry is not None:
            cdt = compute_dtype(inputs, cell.dtype, cell.param_dtype)
            zero_carry = jax.eval_shape(functools.partial(cell.initial_carry, batch, cdt))
            carry = _check_carry(kind, carry, zero_carry)
        if lengths is not None:
            _check_lengths(kind, lengths, batch)
        return scan_cell(params, inputs, lengths, carry), state

    return Layer(init, apply, kind, name)


def _check_cell(kind: str, cell: Any) -> None:
    if not isinstance(cell, Cell):
        raise LayerError(
            kind,
            f"expects a Cell such as LSTMCell(features), got {type(cell).__name__}: {cell!r}. "
            "For a layer, use LSTM(features), GRU(features) or SimpleRNN(features) directly.",
        )


def _check_unroll(kind: str, unroll: Any) -> None:
    is_int = isinstance(unroll, int) and not isinstance(unroll, bool)
    if not (unroll is True or (is_int and unroll >= 1)):
        raise LayerError(
            kind,
            f"unroll is the number of steps per scan iteration and must be a positive "
            f"integer or True (fully unrolled), got {unroll!r}.",
        )


def _rnn(
    kind: str,
    cell: Cell,
    return_sequences: bool,
    return_carry: bool,
    reverse: bool,
    unroll: int | bool,
    name: str | None,
) -> Layer:
    _check_cell(kind, cell)
    _check_unroll(kind, unroll)
    config = _RNNConfig(
        kind, cell, bool(return_sequences), bool(return_carry), bool(reverse), unroll
    )
    return _make_rnn(config, name)


@configured
def RNN(
    cell: Cell,
    *,
    return_sequences: bool = False,
    return_carry: bool = False,
    reverse: bool = False,
    unroll: int | bool = 1,
    name: str | None = None,
) -> Layer:
    """Runs a cell over the time axis with ``lax.scan``.

    The input is ``x: (batch, time, in_features)``, or a dict ``{"inputs": x, "lengths":
    (batch,) ints, "initial_carry": carry}`` with the last two optional; see the module
    doc for how lengths mask padding.

    Args:
        cell: a :class:`Cell`: ``SimpleRNNCell``, ``LSTMCell``, ``GRUCell`` or your own.
        return_sequences: return the output at every step, ``(batch, time, features)``,
            instead of the last output, ``(batch, features)``.
        return_carry: also return the final carry: the output becomes ``(y, carry)``.
        reverse: read each sequence from its last (real) step back to its first; the
            outputs stay in the input's time order.
        unroll: steps per ``lax.scan`` iteration (``True`` unrolls fully): faster
            steps, longer compiles.
        name: the name of this layer inside a parent.

    Returns:
        A layer with the cell's params (``kernel``, ``recurrent_kernel``, ...) and no
        state, mapping ``x`` to ``(batch, features)`` (the output of each sequence's last
        real step; zeros for an empty sequence) or, with ``return_sequences``, to
        ``(batch, time, features)`` with zeros at padding steps.

    Raises:
        LayerError: for something that is not a cell, a bad ``unroll``, inputs not of
            rank 3, a feature count unlike the kernel's, lengths not of shape
            ``(batch,)`` integers, or an initial carry of the wrong structure.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = RNN(GRUCell(8), return_sequences=True)
        >>> x = jnp.ones((2, 5, 3))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (2, 5, 8)
        >>> y, _ = layer.apply(params, state, {"inputs": x, "lengths": jnp.array([5, 2])})
        >>> y[1, 2:].tolist() == [[0.0] * 8] * 3
        True
    """
    return _rnn("RNN", cell, return_sequences, return_carry, reverse, unroll, name)


@configured
def SimpleRNN(
    features: int,
    activation: str | Callable = "tanh",
    *,
    return_sequences: bool = False,
    return_carry: bool = False,
    reverse: bool = False,
    unroll: int | bool = 1,
    name: str | None = None,
    **cell_kwargs: Any,
) -> Layer:
    """``RNN(SimpleRNNCell(features, activation, **cell_kwargs), ...)``, of kind ``SimpleRNN``.

    Args:
        features: the size of the state and of the output.
        activation: a function or an activation name; ``tanh`` by default.
        return_sequences: return the output at every step, ``(batch, time, features)``,
            instead of the last output, ``(batch, features)``.
        return_carry: also return the final carry: the output becomes ``(y, carry)``.
        reverse: read each sequence from its last (real) step back to its first; the
            outputs stay in the input's time order.
        unroll: steps per ``lax.scan`` iteration (``True`` unrolls fully): faster
            steps, longer compiles.
        name: the name of this layer inside a parent.
        **cell_kwargs: ``kernel_init``, ``recurrent_init``, ``bias_init``, ``dtype``,
            ``param_dtype`` of :func:`SimpleRNNCell`.

    Returns:
        A layer mapping ``(batch, time, in_features)`` to ``(batch, features)``, or
        ``(batch, time, features)`` with ``return_sequences``; see :func:`RNN`.

    Raises:
        LayerError: as :func:`SimpleRNNCell` and :func:`RNN`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = SimpleRNN(4)
        >>> params, state = layer.init(jax.random.key(0), jnp.ones((2, 5, 3)))
        >>> layer.apply(params, state, jnp.ones((2, 5, 3)))[0].shape
        (2, 4)
    """
    cell = SimpleRNNCell(features, activation, **cell_kwargs)
    return _rnn("SimpleRNN", cell, return_sequences, return_carry, reverse, unroll, name)


@configured
def LSTM(
    features: int,
    *,
    return_sequences: bool = False,
    return_carry: bool = False,
    reverse: bool = False,
    unroll: int | bool = 1,
    name: str | None = None,
    **cell_kwargs: Any,
) -> Layer:
    """``RNN(LSTMCell(features, **cell_kwargs), ...)``, of kind ``LSTM``.

    Args:
        features: the size of the state and of the output.
        return_sequences: return the output at every step, ``(batch, time, features)``,
            instead of the last output, ``(batch, features)``.
        return_carry: also return the final carry: the output becomes ``(y, carry)``.
        reverse: read each sequence from its last (real) step back to its first; the
            outputs stay in the input's time order.
        unroll: steps per ``lax.scan`` iteration (``True`` unrolls fully): faster
            steps, longer compiles.
        name: the name of this layer inside a parent.
        **cell_kwargs: ``kernel_init``, ``recurrent_init``, ``bias_init``, ``dtype``,
            ``param_dtype`` of :func:`LSTMCell`.

    Returns:
        A layer mapping ``(batch, time, in_features)`` to ``(batch, features)``, or
        ``(batch, time, features)`` with ``return_sequences``; see :func:`RNN`. With
        ``return_carry`` the carry is ``{"h", "c"}``.

    Raises:
        LayerError: as :func:`LSTMCell` and :func:`RNN`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = LSTM(4, return_carry=True)
        >>> params, state = layer.init(jax.random.key(0), jnp.ones((2, 5, 3)))
        >>> (y, carry), _ = layer.apply(params, state, jnp.ones((2, 5, 3)))
        >>> y.shape, sorted(carry)
        ((2, 4), ['c', 'h'])
    """
    cell = LSTMCell(features, **cell_kwargs)
    return _rnn("LSTM", cell, return_sequences, return_carry, reverse, unroll, name)


@configured
def GRU(
    features: int,
    *,
    return_sequences: bool = False,
    return_carry: bool = False,
    reverse: bool = False,
    unroll: int | bool = 1,
    name: str | None = None,
    **cell_kwargs: Any,
) -> Layer:
    """``RNN(GRUCell(features, **cell_kwargs), ...)``, of kind ``GRU`` ("reset after" GRU).

    Args:
        features: the size of the state and of the output.
        return_sequences: return the output at every step, ``(batch, time, features)``,
            instead of the last output, ``(batch, features)``.
        return_carry: also return the final carry: the output becomes ``(y, carry)``.
        reverse: read each sequence from its last (real) step back to its first; the
            outputs stay in the input's time order.
        unroll: steps per ``lax.scan`` iteration (``True`` unrolls fully): faster
            steps, longer compiles.
        name: the name of this layer inside a parent.
        **cell_kwargs: ``kernel_init``, ``recurrent_init``, ``bias_init``, ``dtype``,
            ``param_dtype`` of :func:`GRUCell`.

    Returns:
        A layer mapping ``(batch, time, in_features)`` to ``(batch, features)``, or
        ``(batch, time, features)`` with ``return_sequences``; see :func:`RNN`.

    Raises:
        LayerError: as :func:`GRUCell` and :func:`RNN`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = GRU(4, return_sequences=True)
        >>> params, state = layer.init(jax.random.key(0), jnp.ones((2, 5, 3)))
        >>> layer.apply(params, state, jnp.ones((2, 5, 3)))[0].shape
        (2, 5, 4)
    """
    cell = GRUCell(features, **cell_kwargs)
    return _rnn("GRU", cell, return_sequences, return_carry, reverse, unroll, name)


def _direction_kind(cell: Cell) -> str:
    """The kind of one direction of a ``Bidirectional``: ``GRU`` for a ``GRUCell``."""
    return cell.kind.removesuffix("Cell") if cell.kind.endswith("Cell") else "RNN"


@configured
def Bidirectional(
    cell: Cell,
    merge: str | Callable[[list], Any] | None = "concat",
    *,
    return_sequences: bool = False,
    return_carry: bool = False,
    unroll: int | bool = 1,
    name: str | None = None,
) -> Layer:
    """Runs a cell forward and backward over the sequence and merges the two outputs.

    ``Bidirectional(cell, ...)`` is two ``RNN(cell, ...)`` layers, one with
    ``reverse=True``, with separate params. The backward direction reads each sequence
    from its last real step to its first (so it honours ``lengths``) and returns its
    outputs in the input's time order, so with ``return_sequences`` position ``t`` of
    both directions describes input step ``t``. Without it, the forward direction
    gives the output at each sequence's last real step and the backward direction the
    output at step 0 (which it reads last).

    The input is that of :func:`RNN`; a dict's ``initial_carry`` is ``{"forward": carry,
    "backward": carry}``.

    Args:
        cell: a :class:`Cell` (``LSTMCell(features)``, ...), run in both directions.
        merge: how to merge ``[forward, backward]``, in the words of
            :func:`jaxnn.core.merge` (as :func:`jaxnn.Parallel`): ``"concat"`` (along
            the last axis, the default), ``"add"``, ``"mul"``, ``"mean"``, ``"stack"``,
            ``None`` for a tuple ``(forward, backward)``, or a function ``f(outputs)``
            of the list ``[forward, backward]``.
        return_sequences: return the outputs at every step,
            ``(batch, time, features)`` per direction, instead of the last ones.
        return_carry: also return the final carries: the output becomes
            ``(y, {"forward": carry, "backward": carry})``.
        unroll: steps per ``lax.scan`` iteration (``True`` unrolls fully).
        name: the name of this layer inside a parent.

    Returns:
        A layer with params ``{"forward": ..., "backward": ...}`` mapping
        ``(batch, time, in_features)`` to the merged outputs: ``(batch, 2 * features)``
        with ``"concat"`` and ``(batch, time, 2 * features)`` with
        ``return_sequences``.

    Raises:
        LayerError: for something that is not a cell (a layer such as ``LSTM(4)``
            included: pass ``LSTMCell(4)``), an unknown merge (a Keras word such as
            ``"sum"`` names the jaxnn word), a bad ``unroll``, or (in ``apply``) as
            :func:`RNN`, with the direction in the path.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Bidirectional(LSTMCell(4), return_sequences=True)
        >>> params, state = layer.init(jax.random.key(0), jnp.ones((2, 5, 3)))
        >>> sorted(params)
        ['backward', 'forward']
        >>> layer.apply(params, state, jnp.ones((2, 5, 3)))[0].shape
        (2, 5, 8)
    """
    kind = "Bidirectional"
    if isinstance(cell, Layer):
        raise LayerError(
            kind,
            f"expects a Cell such as LSTMCell(features), got the layer {cell!r}. It runs "
            "the cell both ways: for a bidirectional LSTM(4, return_sequences=True) write "
            "Bidirectional(LSTMCell(4), return_sequences=True); wrap other layers yourself "
            "with Parallel.",
        )
    _check_cell(kind, cell)
    _check_unroll(kind, unroll)
    merge_fn = merge_outputs(kind, merge)
    config = _RNNConfig(
        _direction_kind(cell), cell, bool(return_sequences), bool(return_carry), False, unroll
    )
    forward = _make_rnn(config, "forward")
    backward = _make_rnn(config._replace(reverse=True), "backward")
    children = (("forward", forward), ("backward", backward))
    names = ("forward", "backward")

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        params: Params = {}
        for child_name, child in children:
            with scope(child_name):
                params[child_name] = child.init(child_key(key, child_name), x)[0]
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
        check_entries(kind, "state", state, ())
        inputs, lengths, carry = _split_input(kind, x)
        if carry is not None and not (isinstance(carry, dict) and set(carry) == set(names)):
            raise LayerError(
                kind,
                f"initial_carry must be a dict {{'forward': carry, 'backward': carry}}, got "
                f"{type(carry).__name__}"
                f"{' with entries ' + str(sorted(carry)) if isinstance(carry, dict) else ''}.",
            )
        outs = {}
        for child_name, child in children:
            child_x: dict[str, Any] = {"inputs": inputs}
            if lengths is not None:
                child_x["lengths"] = lengths
            if carry is not None:
                child_x["initial_carry"] = carry[child_name]
            with scope(child_name):
                outs[child_name] = child.apply(params[child_name], {}, child_x)[0]
        if config.return_carry:
            (y_f, c_f), (y_b, c_b) = outs["forward"], outs["backward"]
            return (merge_fn([y_f, y_b]), {"forward": c_f, "backward": c_b}), state
        return merge_fn([outs["forward"], outs["backward"]]), state

    def child_inputs(params: Params, state: State, x: Spec) -> list[Spec]:
        del params, state
        return [x, x]

    return Layer(init, apply, kind, name, children, child_inputs)
