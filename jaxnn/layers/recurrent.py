"""Recurrent layers: cells and the ``RNN`` layer that scans a cell over time.

A **cell** is a small value (:class:`Cell`) describing one recurrent step; it is not a
layer. :func:`RNN` turns a cell into a layer over inputs ``(batch, time, features)``,
running the step with ``lax.scan``. :func:`SimpleRNN`, :func:`LSTM` and :func:`GRU` are
``RNN`` over the matching cell; :func:`Bidirectional` runs a cell both ways.

Inputs. The layer contract passes data only through ``x``, so an ``RNN`` accepts
either an array ``x: (batch, time, features)``, or a dict with the extras::

    {"inputs": x,                 # (batch, time, features), required
     "lengths": lengths,          # (batch,) integers, optional
     "initial_carry": carry}      # the cell's carry for batch examples, optional

With ``lengths``, step ``t`` of example ``b`` is real when ``t < lengths[b]`` and padding
otherwise (lengths are clipped to ``[0, time]``): padding steps leave the carry
unchanged and their outputs are zeros, and the last output is the output of each
sequence's last real step. A reverse ``RNN`` reads each sequence from its last real
step back to step 0, and still returns outputs in the input's time order.

Equations, with ``x`` the input at one step, ``h``/``c`` the carry, ``sigmoid`` the
logistic function, ``⊙`` the elementwise product; each kernel is stored ``(in, out)``
with the gates side by side along ``out``:

- SimpleRNN: ``h' = activation(x W + h U + b)``.
- LSTM (Hochreiter & Schmidhuber; gates ``i, f, g, o`` in that order, as Keras)::

      i = sigmoid(x W_i + h U_i + b_i)    f = sigmoid(x W_f + h U_f + b_f)
      g = tanh(x W_g + h U_g + b_g)       o = sigmoid(x W_o + h U_o + b_o)
      c' = f ⊙ c + i ⊙ g                  h' = o ⊙ tanh(c')

- GRU, the "reset after" variant (Keras's default ``reset_after=True``, PyTorch and
  cuDNN; gates ``z, r, n`` in that order), with a separate recurrent bias ``d``::

      z = sigmoid(x W_z + b_z + h U_z + d_z)
      r = sigmoid(x W_r + b_r + h U_r + d_r)
      n = tanh(x W_n + b_n + r ⊙ (h U_n + d_n))
      h' = z ⊙ h + (1 - z) ⊙ n

For speed, the input part ``x W + b`` of every step is computed before the scan as one
matrix product over the whole sequence (a cell's ``project``); only the recurrent
part runs inside the scan (its ``recur``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import activations
from jaxnn import initializers as inits
from jaxnn._types import Array, DTypeLike, Params, PRNGKey, Spec, State
from jaxnn.core import Layer, LayerError, check_entries, child_key, scope
from jaxnn.layers._common import along_last, check_positive, compute_dtype, dict_input

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

Carry = Any
"""A cell's carry: a dict of ``(batch, units)`` arrays (``{"h"}``, or ``{"h", "c"}``)."""

_INPUT_KEYS = ("inputs", "lengths", "initial_carry")


class Cell(NamedTuple):
    """One recurrent step, as plain functions; :func:`RNN` scans it over time.

    A cell is not a layer: it has no batch-and-time input of its own. Write a new cell
    by filling these fields; ``project`` may be the identity (``lambda p, x: x``).

    Attributes:
        kind: the cell's name, for messages (``"LSTMCell"``).
        units: the size of the output at each step.
        init: ``init(key, in_features) -> params``.
        initial_carry: ``initial_carry(batch, dtype) -> carry``, the zero state.
        project: ``project(params, x) -> u``: the input part of the step, for any
            leading axes: ``x: (..., in_features)`` to ``u: (..., k)``. ``RNN`` calls it
            once on the whole sequence ``(batch, time, in_features)``.
        recur: ``recur(params, carry, u_t) -> (carry, y_t)``: the rest of the step,
            from ``u_t: (batch, k)``; ``y_t: (batch, units)`` in ``u_t``'s dtype, and
            the new carry in the dtypes of the old.
        param_names: the entries of ``params``.
        dtype: the compute dtype; ``None`` computes in the input's floating dtype.
        param_dtype: the dtype of the stored params.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> cell = LSTMCell(4)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> carry = cell.initial_carry(2, jnp.float32)
        >>> carry, y = cell.step(params, carry, jnp.ones((2, 3)))
        >>> y.shape, carry["c"].shape
        ((2, 4), (2, 4))
    """

    kind: str
    units: int
    init: Callable[[PRNGKey, int], Params]
    initial_carry: Callable[[int, DTypeLike], Carry]
    project: Callable[[Params, Array], Array]
    recur: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    param_names: tuple[str, ...]
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def step(self, params: Params, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        """One full step: ``recur(params, carry, project(params, x_t))``.

        Args:
            params: the cell's params.
            carry: the carry for ``batch`` examples.
            x_t: the input at one step, ``(batch, in_features)``.

        Returns:
            ``(carry, y_t)`` with ``y_t: (batch, units)``.
        """
        return self.recur(params, carry, self.project(params, x_t))


def _cell_inits(kind: str, kernel_init: Any, recurrent_init: Any, bias_init: Any) -> tuple:
    try:
        return inits.get(kernel_init), inits.get(recurrent_init), inits.get(bias_init)
    except (ValueError, TypeError) as e:
        raise LayerError(kind, str(e)) from e


def _zeros_carry(names: tuple[str, ...], units: int) -> Callable[[int, DTypeLike], Carry]:
    def initial_carry(batch: int, dtype: DTypeLike = jnp.float32) -> Carry:
        return {n: jnp.zeros((batch, units), dtype) for n in names}

    return initial_carry


def _project(params: Params, x: Array, bias: str | None = "bias") -> Array:
    """``x @ kernel + bias`` over the last axis, in ``x``'s dtype."""
    u = jnp.matmul(x, params["kernel"].astype(x.dtype))
    if bias is not None:
        u = u + along_last(params[bias].astype(x.dtype), u.ndim)
    return u


def _kernels(
    key: PRNGKey,
    in_features: int,
    width: int,
    units: int,
    kernel_fn: inits.Initializer,
    recurrent_fn: inits.Initializer,
    param_dtype: DTypeLike,
) -> Params:
    return {
        "kernel": kernel_fn(child_key(key, "kernel"), (in_features, width), param_dtype),
        "recurrent_kernel": recurrent_fn(
            child_key(key, "recurrent_kernel"), (units, width), param_dtype
        ),
    }


def SimpleRNNCell(
    units: int,
    activation: str | Callable = "tanh",
    *,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    recurrent_init: str | inits.Initializer = "orthogonal",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
) -> Cell:
    """The Elman cell: ``h' = activation(x W + h U + b)``; the output is ``h'``.

    Args:
        units: the size of the state and of the output.
        activation: a function or an activation name; ``tanh`` by default.
        kernel_init: initializer of ``kernel`` ``W: (in_features, units)``.
        recurrent_init: initializer of ``recurrent_kernel`` ``U: (units, units)``;
            orthogonal by default, as in Keras.
        bias_init: initializer of ``bias`` ``b: (units,)``.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.

    Returns:
        A :class:`Cell` with params ``{"kernel", "recurrent_kernel", "bias"}`` and
        carry ``{"h": (batch, units)}``.

    Raises:
        LayerError: for a non-positive ``units``, or an unknown activation or
            initializer.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> cell = SimpleRNNCell(5)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> params["recurrent_kernel"].shape
        (5, 5)
        >>> cell.step(params, cell.initial_carry(2, jnp.float32), jnp.ones((2, 3)))[1].shape
        (2, 5)
    """
    kind = "SimpleRNNCell"
    check_positive(kind, "units", units)
    try:
        act = activations.get(activation)
    except (ValueError, TypeError) as e:
        raise LayerError(kind, str(e)) from e
    kernel_fn, recurrent_fn, bias_fn = _cell_inits(kind, kernel_init, recurrent_init, bias_init)

    def init(key: PRNGKey, in_features: int) -> Params:
        params = _kernels(key, in_features, units, units, kernel_fn, recurrent_fn, param_dtype)
        params["bias"] = bias_fn(child_key(key, "bias"), (units,), param_dtype)
        return params

    def recur(params: Params, carry: Carry, u_t: Array) -> tuple[Carry, Array]:
        h = carry["h"]
        h = act(u_t + jnp.matmul(h, params["recurrent_kernel"].astype(h.dtype)))
        return {"h": h}, h

    return Cell(
        kind,
        units,
        init,
        _zeros_carry(("h",), units),
        _project,
        recur,
        ("kernel", "recurrent_kernel", "bias"),
        dtype,
        param_dtype,
    )


def LSTMCell(
    units: int,
    *,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    recurrent_init: str | inits.Initializer = "orthogonal",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
) -> Cell:
    """The long short-term memory cell; the output is ``h'`` (equations in the module doc).

    The four gates ``i, f, g, o`` sit side by side, in that order, along the last axis
    of ``kernel: (in_features, 4 * units)``, ``recurrent_kernel: (units, 4 * units)``
    and ``bias: (4 * units,)``. As Keras's ``unit_forget_bias``, the forget gate's bias
    starts at ``bias_init + 1``, so the cell remembers by default.

    Args:
        units: the size of the state and of the output.
        kernel_init: initializer of ``kernel``.
        recurrent_init: initializer of ``recurrent_kernel``; orthogonal by default.
        bias_init: initializer of ``bias`` (before the forget gate's ``+ 1``).
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.

    Returns:
        A :class:`Cell` with params ``{"kernel", "recurrent_kernel", "bias"}`` and
        carry ``{"h": (batch, units), "c": (batch, units)}``.

    Raises:
        LayerError: for a non-positive ``units`` or an unknown initializer.

    Example:
        >>> import jax
        >>> params = LSTMCell(2).init(jax.random.key(0), 3)
        >>> params["kernel"].shape, params["bias"].tolist()
        ((3, 8), [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    """
    kind = "LSTMCell"
    check_positive(kind, "units", units)
    kernel_fn, recurrent_fn, bias_fn = _cell_inits(kind, kernel_init, recurrent_init, bias_init)

    def init(key: PRNGKey, in_features: int) -> Params:
        params = _kernels(key, in_features, 4 * units, units, kernel_fn, recurrent_fn, param_dtype)
        bias = bias_fn(child_key(key, "bias"), (4 * units,), param_dtype)
        forget = jnp.zeros((4 * units,), param_dtype).at[units : 2 * units].set(1)
        params["bias"] = bias + forget
        return params

    def recur(params: Params, carry: Carry, u_t: Array) -> tuple[Carry, Array]:
        h, c = carry["h"], carry["c"]
        z = u_t + jnp.matmul(h, params["recurrent_kernel"].astype(h.dtype))
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return {"h": h, "c": c}, h

    return Cell(
        kind,
        units,
        init,
        _zeros_carry(("h", "c"), units),
        _project,
        recur,
        ("kernel", "recurrent_kernel", "bias"),
        dtype,
        param_dtype,
    )


def GRUCell(
    units: int,
    *,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    recurrent_init: str | inits.Initializer = "orthogonal",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
) -> Cell:
    """The gated recurrent unit, "reset after" variant; the output is ``h'``.

    This is Keras's default (``reset_after=True``), PyTorch's and cuDNN's GRU: the
    reset gate multiplies ``h U_n + d_n`` after the recurrent product (equations in the
    module doc). The gates ``z, r, n`` sit side by side, in that order, along the last
    axis of ``kernel: (in_features, 3 * units)``, ``recurrent_kernel:
    (units, 3 * units)``, ``bias: (3 * units,)`` (input side) and ``recurrent_bias:
    (3 * units,)`` (recurrent side).

    Args:
        units: the size of the state and of the output.
        kernel_init: initializer of ``kernel``.
        recurrent_init: initializer of ``recurrent_kernel``; orthogonal by default.
        bias_init: initializer of ``bias`` and ``recurrent_bias``.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.

    Returns:
        A :class:`Cell` with params ``{"kernel", "recurrent_kernel", "bias",
        "recurrent_bias"}`` and carry ``{"h": (batch, units)}``.

    Raises:
        LayerError: for a non-positive ``units`` or an unknown initializer.

    Example:
        >>> import jax
        >>> params = GRUCell(4).init(jax.random.key(0), 3)
        >>> {k: v.shape for k, v in sorted(params.items())}
        {'bias': (12,), 'kernel': (3, 12), 'recurrent_bias': (12,), 'recurrent_kernel': (4, 12)}
    """
    kind = "GRUCell"
    check_positive(kind, "units", units)
    kernel_fn, recurrent_fn, bias_fn = _cell_inits(kind, kernel_init, recurrent_init, bias_init)

    def init(key: PRNGKey, in_features: int) -> Params:
        params = _kernels(key, in_features, 3 * units, units, kernel_fn, recurrent_fn, param_dtype)
        params["bias"] = bias_fn(child_key(key, "bias"), (3 * units,), param_dtype)
        params["recurrent_bias"] = bias_fn(
            child_key(key, "recurrent_bias"), (3 * units,), param_dtype
        )
        return params

    def recur(params: Params, carry: Carry, u_t: Array) -> tuple[Carry, Array]:
        h = carry["h"]
        v = jnp.matmul(h, params["recurrent_kernel"].astype(h.dtype))
        v = v + along_last(params["recurrent_bias"].astype(h.dtype), v.ndim)
        ux_z, ux_r, ux_n = jnp.split(u_t, 3, axis=-1)
        uh_z, uh_r, uh_n = jnp.split(v, 3, axis=-1)
        z = jax.nn.sigmoid(ux_z + uh_z)
        r = jax.nn.sigmoid(ux_r + uh_r)
        n = jnp.tanh(ux_n + r * uh_n)
        h = z * h + (1 - z) * n
        return {"h": h}, h

    return Cell(
        kind,
        units,
        init,
        _zeros_carry(("h",), units),
        _project,
        recur,
        ("kernel", "recurrent_kernel", "bias", "recurrent_bias"),
        dtype,
        param_dtype,
    )


class _RNNConfig(NamedTuple):
    """What :func:`Bidirectional` needs to rebuild an ``RNN`` layer in both directions."""

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
        batch, time, features = inputs.shape
        if "kernel" in params and params["kernel"].shape[0] != features:
            raise LayerError(
                kind,
                f"input has {features} features, but the kernel was initialised for "
                f"{params['kernel'].shape[0]}. Initialise with an input of shape (batch, "
                f"time, {features}), or fix the previous layer.",
            )
        cdt = compute_dtype(inputs, cell.dtype, cell.param_dtype)
        zero_carry = cell.initial_carry(batch, cdt)
        carry = zero_carry if carry is None else _check_carry(kind, carry, zero_carry)
        # The input part of every step at once, then time-major for the scan.
        u = jnp.swapaxes(cell.project(params, inputs.astype(cdt)), 0, 1)
        last = jnp.zeros((batch, cell.units), cdt)

        if lengths is None:

            def body(c: tuple, u_t: Array) -> tuple[tuple, Any]:
                new_carry, y = cell.recur(params, c[0], u_t)
                return (new_carry, y), (y if config.return_sequences else None)

            xs: Any = u
        else:
            _check_lengths(kind, lengths, batch)
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
        return ((y, carry) if config.return_carry else y), state

    apply.rnn_config = config  # read by Bidirectional to rebuild this layer both ways
    return Layer(init, apply, kind, name)


def _check_cell(kind: str, cell: Any) -> None:
    if not isinstance(cell, Cell):
        raise LayerError(
            kind,
            f"expects a Cell such as LSTMCell(units), got {type(cell).__name__}: {cell!r}. "
            "For a layer, use LSTM(units), GRU(units) or SimpleRNN(units) directly.",
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

    The input is ``x: (batch, time, features)``, or a dict ``{"inputs": x, "lengths":
    (batch,) ints, "initial_carry": carry}`` with the last two optional; see the module
    doc for how lengths mask padding.

    Args:
        cell: a :class:`Cell`: ``SimpleRNNCell``, ``LSTMCell``, ``GRUCell`` or your own.
        return_sequences: return the output at every step, ``(batch, time, units)``,
            instead of the last output, ``(batch, units)``.
        return_carry: also return the final carry: the output becomes ``(y, carry)``.
        reverse: read each sequence from its last (real) step back to its first; the
            outputs stay in the input's time order.
        unroll: steps per ``lax.scan`` iteration (``True`` unrolls fully): faster
            steps, longer compiles.
        name: the name of this layer inside a parent.

    Returns:
        A layer with the cell's params (``kernel``, ``recurrent_kernel``, ...) and no
        state, mapping ``x`` to ``(batch, units)`` (the output of each sequence's last
        real step; zeros for an empty sequence) or, with ``return_sequences``, to
        ``(batch, time, units)`` with zeros at padding steps.

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


def SimpleRNN(
    units: int,
    activation: str | Callable = "tanh",
    *,
    return_sequences: bool = False,
    return_carry: bool = False,
    reverse: bool = False,
    unroll: int | bool = 1,
    name: str | None = None,
    **cell_kwargs: Any,
) -> Layer:
    """``RNN(SimpleRNNCell(units, activation, **cell_kwargs), ...)``, of kind ``SimpleRNN``.

    Args:
        units: the size of the state and of the output.
        activation: a function or an activation name; ``tanh`` by default.
        return_sequences: return the output at every step, ``(batch, time, units)``,
            instead of the last output, ``(batch, units)``.
        return_carry: also return the final carry: the output becomes ``(y, carry)``.
        reverse: read each sequence from its last (real) step back to its first; the
            outputs stay in the input's time order.
        unroll: steps per ``lax.scan`` iteration (``True`` unrolls fully): faster
            steps, longer compiles.
        name: the name of this layer inside a parent.
        **cell_kwargs: ``kernel_init``, ``recurrent_init``, ``bias_init``, ``dtype``,
            ``param_dtype`` of :func:`SimpleRNNCell`.

    Returns:
        A layer mapping ``(batch, time, features)`` to ``(batch, units)``, or
        ``(batch, time, units)`` with ``return_sequences``; see :func:`RNN`.

    Raises:
        LayerError: as :func:`SimpleRNNCell` and :func:`RNN`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = SimpleRNN(4)
        >>> params, state = layer.init(jax.random.key(0), jnp.ones((2, 5, 3)))
        >>> layer.apply(params, state, jnp.ones((2, 5, 3)))[0].shape
        (2, 4)
    """
    cell = SimpleRNNCell(units, activation, **cell_kwargs)
    return _rnn("SimpleRNN", cell, return_sequences, return_carry, reverse, unroll, name)


def LSTM(
    units: int,
    *,
    return_sequences: bool = False,
    return_carry: bool = False,
    reverse: bool = False,
    unroll: int | bool = 1,
    name: str | None = None,
    **cell_kwargs: Any,
) -> Layer:
    """``RNN(LSTMCell(units, **cell_kwargs), ...)``, of kind ``LSTM``.

    Args:
        units: the size of the state and of the output.
        return_sequences: return the output at every step, ``(batch, time, units)``,
            instead of the last output, ``(batch, units)``.
        return_carry: also return the final carry: the output becomes ``(y, carry)``.
        reverse: read each sequence from its last (real) step back to its first; the
            outputs stay in the input's time order.
        unroll: steps per ``lax.scan`` iteration (``True`` unrolls fully): faster
            steps, longer compiles.
        name: the name of this layer inside a parent.
        **cell_kwargs: ``kernel_init``, ``recurrent_init``, ``bias_init``, ``dtype``,
            ``param_dtype`` of :func:`LSTMCell`.

    Returns:
        A layer mapping ``(batch, time, features)`` to ``(batch, units)``, or
        ``(batch, time, units)`` with ``return_sequences``; see :func:`RNN`. With
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
    cell = LSTMCell(units, **cell_kwargs)
    return _rnn("LSTM", cell, return_sequences, return_carry, reverse, unroll, name)


def GRU(
    units: int,
    *,
    return_sequences: bool = False,
    return_carry: bool = False,
    reverse: bool = False,
    unroll: int | bool = 1,
    name: str | None = None,
    **cell_kwargs: Any,
) -> Layer:
    """``RNN(GRUCell(units, **cell_kwargs), ...)``, of kind ``GRU`` ("reset after" GRU).

    Args:
        units: the size of the state and of the output.
        return_sequences: return the output at every step, ``(batch, time, units)``,
            instead of the last output, ``(batch, units)``.
        return_carry: also return the final carry: the output becomes ``(y, carry)``.
        reverse: read each sequence from its last (real) step back to its first; the
            outputs stay in the input's time order.
        unroll: steps per ``lax.scan`` iteration (``True`` unrolls fully): faster
            steps, longer compiles.
        name: the name of this layer inside a parent.
        **cell_kwargs: ``kernel_init``, ``recurrent_init``, ``bias_init``, ``dtype``,
            ``param_dtype`` of :func:`GRUCell`.

    Returns:
        A layer mapping ``(batch, time, features)`` to ``(batch, units)``, or
        ``(batch, time, units)`` with ``return_sequences``; see :func:`RNN`.

    Raises:
        LayerError: as :func:`GRUCell` and :func:`RNN`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = GRU(4, return_sequences=True)
        >>> params, state = layer.init(jax.random.key(0), jnp.ones((2, 5, 3)))
        >>> layer.apply(params, state, jnp.ones((2, 5, 3)))[0].shape
        (2, 5, 4)
    """
    cell = GRUCell(units, **cell_kwargs)
    return _rnn("GRU", cell, return_sequences, return_carry, reverse, unroll, name)


_MERGES: dict[str, Callable[[Array, Array], Array]] = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "ave": lambda a, b: (a + b) / 2,
}


def Bidirectional(
    layer: Cell | Layer,
    merge: str | Callable[[Array, Array], Any] | None = "concat",
    *,
    name: str | None = None,
) -> Layer:
    """Runs a recurrent layer forward and backward over the sequence and merges the two.

    The backward copy reads each sequence from its last real step to its first (so it
    honours ``lengths``) and returns its outputs in the input's time order, so with
    ``return_sequences`` position ``t`` of both directions describes input step ``t``.
    Without it, the forward direction gives the output at each sequence's last real
    step and the backward direction the output at step 0 (which it reads last).

    The input is that of :func:`RNN`; a dict's ``initial_carry`` is ``{"forward": carry,
    "backward": carry}``. The two directions have separate params.

    Args:
        layer: a cell (run with ``RNN``'s defaults) or a forward layer made by
            ``RNN``, ``SimpleRNN``, ``LSTM`` or ``GRU``, whose options (return_sequences,
            return_carry, unroll) both directions share.
        merge: ``"concat"`` (along the last axis, the default), ``"sum"``, ``"mul"``,
            ``"ave"``, ``None`` for a tuple ``(forward, backward)``, or a function
            ``f(forward, backward)``.
        name: the name of this layer inside a parent.

    Returns:
        A layer with params ``{"forward": ..., "backward": ...}`` mapping
        ``(batch, time, features)`` to the merged outputs: ``(batch, 2 * units)`` with
        ``"concat"`` and ``(batch, time, 2 * units)`` with ``return_sequences``. With
        ``return_carry`` the output is ``(y, {"forward": carry, "backward": carry})``.

    Raises:
        LayerError: for something that is neither a cell nor an ``RNN`` layer, a
            reverse layer, an unknown merge, or (in ``apply``) as :func:`RNN`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Bidirectional(LSTM(4, return_sequences=True))
        >>> params, state = layer.init(jax.random.key(0), jnp.ones((2, 5, 3)))
        >>> sorted(params)
        ['backward', 'forward']
        >>> layer.apply(params, state, jnp.ones((2, 5, 3)))[0].shape
        (2, 5, 8)
    """
    kind = "Bidirectional"
    if isinstance(layer, Cell):
        config = _RNNConfig("RNN", layer, False, False, False, 1)
    elif isinstance(layer, Layer) and hasattr(layer.apply, "rnn_config"):
        config = layer.apply.rnn_config
    else:
        raise LayerError(
            kind,
            f"expects a Cell (LSTMCell(units), ...) or a layer made by RNN, SimpleRNN, LSTM "
            f"or GRU, got {layer!r}. Wrap other layers yourself with Parallel.",
        )
    if config.reverse:
        raise LayerError(
            kind,
            "got a reverse RNN, but Bidirectional builds the backward direction itself. "
            "Pass the forward layer (reverse=False).",
        )
    if merge is None:
        merge_fn: Callable = lambda a, b: (a, b)
    elif callable(merge):
        merge_fn = merge
    elif merge in _MERGES:
        merge_fn = _MERGES[merge]
    else:
        raise LayerError(
            kind,
            f"unknown merge {merge!r}. Use 'concat', 'sum', 'mul', 'ave', None (a tuple "
            "(forward, backward)) or a function f(forward, backward).",
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
            return (merge_fn(y_f, y_b), {"forward": c_f, "backward": c_b}), state
        return merge_fn(outs["forward"], outs["backward"]), state

    def child_inputs(params: Params, state: State, x: Spec) -> list[Spec]:
        del params, state
        return [x, x]

    return Layer(init, apply, kind, name, children, child_inputs)
