"""Recurrent cells: one step of an Elman RNN, an LSTM or a GRU, as plain data.

A **cell** is a small value (:class:`Cell`) describing one recurrent step; it is not a
layer. :func:`jaxnn.layers.recurrent.RNN` scans a cell over time; ``SimpleRNN``,
``LSTM`` and ``GRU`` are ``RNN`` over the matching cell.

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

from jaxnn import activations
from jaxnn import initializers as inits
from jaxnn._types import Array, DTypeLike, Params, PRNGKey
from jaxnn.layers._common import along_last, check_positive, param, resolve

__all__ = ["Carry", "Cell", "GRUCell", "LSTMCell", "SimpleRNNCell"]

Carry = Any
"""A cell's carry: a dict of ``(batch, features)`` arrays (``{"h"}``, or ``{"h", "c"}``)."""


class Cell(NamedTuple):
    """One recurrent step, as plain functions; :func:`~jaxnn.layers.recurrent.RNN` scans it.

    A cell is not a layer: it has no batch-and-time input of its own. Write a new cell
    by filling these fields; ``project`` may be the identity (``lambda p, x: x``).

    Attributes:
        kind: the cell's name, for messages (``"LSTMCell"``).
        features: the size of the output at each step.
        init: ``init(key, in_features) -> params``.
        initial_carry: ``initial_carry(batch, dtype) -> carry``, the zero state.
        project: ``project(params, x) -> u``: the input part of the step, for any
            leading axes: ``x: (..., in_features)`` to ``u: (..., k)``. ``RNN`` calls it
            once on the whole sequence ``(batch, time, in_features)``.
        recur: ``recur(params, carry, u_t) -> (carry, y_t)``: the rest of the step,
            from ``u_t: (batch, k)``; ``y_t: (batch, features)`` in ``u_t``'s dtype, and
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
    features: int
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
            ``(carry, y_t)`` with ``y_t: (batch, features)``.
        """
        return self.recur(params, carry, self.project(params, x_t))


def _cell_inits(kind: str, kernel_init: Any, recurrent_init: Any, bias_init: Any) -> tuple:
    return tuple(resolve(kind, inits.get, i) for i in (kernel_init, recurrent_init, bias_init))


def _zeros_carry(names: tuple[str, ...], features: int) -> Callable[[int, DTypeLike], Carry]:
    def initial_carry(batch: int, dtype: DTypeLike = jnp.float32) -> Carry:
        return {n: jnp.zeros((batch, features), dtype) for n in names}

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
    features: int,
    gates: int,
    kernel_fn: inits.Initializer,
    recurrent_fn: inits.Initializer,
    param_dtype: DTypeLike,
) -> Params:
    """``kernel: (in_features, gates * features)`` and ``recurrent_kernel``."""
    width = gates * features
    return {
        "kernel": param(key, "kernel", kernel_fn, (in_features, width), param_dtype),
        "recurrent_kernel": param(
            key, "recurrent_kernel", recurrent_fn, (features, width), param_dtype
        ),
    }


def SimpleRNNCell(
    features: int,
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
        features: the size of the state and of the output.
        activation: a function or an activation name; ``tanh`` by default.
        kernel_init: initializer of ``kernel`` ``W: (in_features, features)``.
        recurrent_init: initializer of ``recurrent_kernel`` ``U: (features, features)``;
            orthogonal by default, as in Keras.
        bias_init: initializer of ``bias`` ``b: (features,)``.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.

    Returns:
        A :class:`Cell` with params ``{"kernel", "recurrent_kernel", "bias"}`` and
        carry ``{"h": (batch, features)}``.

    Raises:
        LayerError: for a non-positive ``features``, or an unknown activation or
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
    check_positive(kind, "features", features)
    act = resolve(kind, activations.get, activation)
    kernel_fn, recurrent_fn, bias_fn = _cell_inits(kind, kernel_init, recurrent_init, bias_init)

    def init(key: PRNGKey, in_features: int) -> Params:
        params = _kernels(key, in_features, features, 1, kernel_fn, recurrent_fn, param_dtype)
        params["bias"] = param(key, "bias", bias_fn, (features,), param_dtype)
        return params

    def recur(params: Params, carry: Carry, u_t: Array) -> tuple[Carry, Array]:
        h = carry["h"]
        h = act(u_t + jnp.matmul(h, params["recurrent_kernel"].astype(h.dtype)))
        return {"h": h}, h

    return Cell(
        kind,
        features,
        init,
        _zeros_carry(("h",), features),
        _project,
        recur,
        ("kernel", "recurrent_kernel", "bias"),
        dtype,
        param_dtype,
    )


def LSTMCell(
    features: int,
    *,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    recurrent_init: str | inits.Initializer = "orthogonal",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
) -> Cell:
    """The long short-term memory cell; the output is ``h'`` (equations in the module doc).

    The four gates ``i, f, g, o`` sit side by side, in that order, along the last axis
    of ``kernel: (in_features, 4 * features)``, ``recurrent_kernel: (features, 4 * features)``
    and ``bias: (4 * features,)``. As Keras's ``unit_forget_bias``, the forget gate's bias
    starts at ``bias_init + 1``, so the cell remembers by default.

    Args:
        features: the size of the state and of the output.
        kernel_init: initializer of ``kernel``.
        recurrent_init: initializer of ``recurrent_kernel``; orthogonal by default.
        bias_init: initializer of ``bias`` (before the forget gate's ``+ 1``).
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.

    Returns:
        A :class:`Cell` with params ``{"kernel", "recurrent_kernel", "bias"}`` and
        carry ``{"h": (batch, features), "c": (batch, features)}``.

    Raises:
        LayerError: for a non-positive ``features`` or an unknown initializer.

    Example:
        >>> import jax
        >>> params = LSTMCell(2).init(jax.random.key(0), 3)
        >>> params["kernel"].shape, params["bias"].tolist()
        ((3, 8), [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    """
    kind = "LSTMCell"
    check_positive(kind, "features", features)
    kernel_fn, recurrent_fn, bias_fn = _cell_inits(kind, kernel_init, recurrent_init, bias_init)

    def init(key: PRNGKey, in_features: int) -> Params:
        params = _kernels(key, in_features, features, 4, kernel_fn, recurrent_fn, param_dtype)
        bias = param(key, "bias", bias_fn, (4 * features,), param_dtype)
        forget = jnp.zeros((4 * features,), param_dtype).at[features : 2 * features].set(1)
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
        features,
        init,
        _zeros_carry(("h", "c"), features),
        _project,
        recur,
        ("kernel", "recurrent_kernel", "bias"),
        dtype,
        param_dtype,
    )


def GRUCell(
    features: int,
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
    axis of ``kernel: (in_features, 3 * features)``, ``recurrent_kernel:
    (features, 3 * features)``, ``bias: (3 * features,)`` (input side) and ``recurrent_bias:
    (3 * features,)`` (recurrent side).

    Args:
        features: the size of the state and of the output.
        kernel_init: initializer of ``kernel``.
        recurrent_init: initializer of ``recurrent_kernel``; orthogonal by default.
        bias_init: initializer of ``bias`` and ``recurrent_bias``.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.

    Returns:
        A :class:`Cell` with params ``{"kernel", "recurrent_kernel", "bias",
        "recurrent_bias"}`` and carry ``{"h": (batch, features)}``.

    Raises:
        LayerError: for a non-positive ``features`` or an unknown initializer.

    Example:
        >>> import jax
        >>> params = GRUCell(4).init(jax.random.key(0), 3)
        >>> {k: v.shape for k, v in sorted(params.items())}
        {'bias': (12,), 'kernel': (3, 12), 'recurrent_bias': (12,), 'recurrent_kernel': (4, 12)}
    """
    kind = "GRUCell"
    check_positive(kind, "features", features)
    kernel_fn, recurrent_fn, bias_fn = _cell_inits(kind, kernel_init, recurrent_init, bias_init)

    def init(key: PRNGKey, in_features: int) -> Params:
        params = _kernels(key, in_features, features, 3, kernel_fn, recurrent_fn, param_dtype)
        params["bias"] = param(key, "bias", bias_fn, (3 * features,), param_dtype)
        params["recurrent_bias"] = param(
            key, "recurrent_bias", bias_fn, (3 * features,), param_dtype
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
        features,
        init,
        _zeros_carry(("h",), features),
        _project,
        recur,
        ("kernel", "recurrent_kernel", "bias", "recurrent_bias"),
        dtype,
        param_dtype,
    )
