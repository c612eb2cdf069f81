"""Dot-product attention: the pure function and the ``MultiHeadAttention`` layer.

:func:`dot_product_attention` is the maths on already projected heads;
:func:`MultiHeadAttention` adds the learned projections, masks built from lengths and
causality, and self-/cross-attention inputs.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import initializers as inits
from jaxnn._types import Array, DTypeLike, Params, PRNGKey, Spec, State
from jaxnn.core import Layer, LayerError, check_entries, child_key, configured, scope
from jaxnn.layers._common import (
    check_positive,
    check_rate,
    compute_dtype,
    dict_input,
    dropout,
    param,
    require_key,
    resolve,
)

__all__ = ["MultiHeadAttention", "dot_product_attention"]

_KIND = "MultiHeadAttention"
_INPUT_KEYS = ("query", "key_value", "mask", "kv_lengths")
_PROJECTIONS = ("query", "key", "value", "out")


def _split_input(x: Any) -> tuple[Any, Any, Any, Any]:
    """``x`` or ``{"query", "key_value", "mask", "kv_lengths"}`` -> the four parts."""
    if isinstance(x, dict):
        query, key_value, mask, kv_lengths = dict_input(
            _KIND,
            x,
            _INPUT_KEYS,
            "Pass {'query': q} with q: (batch, q_len, features), and optionally "
            "'key_value': (batch, kv_len, kv_features), 'mask': (batch, q_len, kv_len) bool "
            "and 'kv_lengths': (batch,) int.",
        )
        return query, query if key_value is None else key_value, mask, kv_lengths
    return x, x, None, None


def _check_sequence(what: str, a: Any) -> None:
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise LayerError(
            _KIND,
            f"{what} must be an array of shape (batch, seq, features), got {type(a).__name__}.",
        )
    if a.ndim != 3:
        raise LayerError(
            _KIND,
            f"{what} must have shape (batch, seq, features), got shape {tuple(a.shape)}. "
            "Add the missing axis (x[None] for one sequence, x[..., None] for one feature) "
            "or reshape.",
        )


def _check_inputs(query: Any, key_value: Any) -> None:
    _check_sequence("the query", query)
    _check_sequence("key_value", key_value)
    if key_value.shape[0] != query.shape[0]:
        raise LayerError(
            _KIND,
            f"query has batch size {query.shape[0]} but key_value has {key_value.shape[0]}. "
            "Pass one key/value sequence per query sequence.",
        )


def _full_mask(mask: Any, kv_lengths: Any, causal: bool, shape: tuple[int, ...]) -> Any:
    """Combines the optional masks into one bool array ``(batch, 1 or heads, q, kv)``.

    Returns ``None`` when nothing is masked.
    """
    batch, heads, q_len, kv_len = shape
    masks = []
    if mask is not None:
        m = jnp.asarray(mask) if not hasattr(mask, "dtype") else mask
        if m.dtype != jnp.bool_ or m.ndim not in (3, 4):
            raise LayerError(
                _KIND,
                f"mask must be a bool array of shape (batch, q_len, kv_len) = ({batch}, "
                f"{q_len}, {kv_len}) or (batch, num_heads, q_len, kv_len), any axis of "
                f"size 1 to broadcast; True means attend. Got dtype {m.dtype} and shape "
                f"{tuple(m.shape)}. For a padding mask pad of shape (batch, kv_len) pass "
                "pad[:, None, :], or pass 'kv_lengths'.",
            )
        given = tuple(m.shape)
        if m.ndim == 3:
            m = m[:, None]
        want = (batch, heads, q_len, kv_len)
        if any(g not in (1, w) for g, w in zip(m.shape, want, strict=True)):
            raise LayerError(
                _KIND,
                f"mask of shape {given} does not broadcast to (batch, "
                f"[num_heads,] q_len, kv_len) = {want}. Give each axis its full size or 1.",
            )
        masks.append(m)
    if kv_lengths is not None:
        lengths = kv_lengths
        dtype = getattr(lengths, "dtype", None)
        if (
            tuple(getattr(lengths, "shape", ())) != (batch,)
            or dtype is None
            or not jnp.issubdtype(dtype, jnp.integer)
        ):
            raise LayerError(
                _KIND,
                f"kv_lengths must be integers of shape ({batch},), the number of real "
                f"key/value positions per example, got {type(lengths).__name__} of shape "
                f"{tuple(getattr(lengths, 'shape', ()))} and dtype {dtype}. Pass e.g. "
                "jnp.asarray(lengths, jnp.int32).",
            )
        lengths = jnp.asarray(lengths)
        positions = jnp.arange(kv_len, dtype=lengths.dtype)
        masks.append((positions[None, :] < lengths[:, None])[:, None, None, :])
    if causal:
        rows = jnp.arange(q_len)[:, None]
        cols = jnp.arange(kv_len)[None, :]
        masks.append((cols <= rows)[None, None])
    if not masks:
        return None
    out_shape = (batch, max(m.shape[1] for m in masks), q_len, kv_len)
    combined = jnp.ones(out_shape, jnp.bool_)
    for m in masks:
        combined = combined & jnp.broadcast_to(m, out_shape)
    return combined


def dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    mask: Array | None = None,
    *,
    dropout_rate: float = 0.0,
    dropout_key: PRNGKey | None = None,
) -> Array:
    """Scaled dot-product attention over heads: ``softmax(q kᵀ / sqrt(d) + mask) v``.

    For each head ``h``, query position ``i`` and key position ``j``:
    ``w[h, i, j] = softmax_j(q[i, h] · k[j, g] / sqrt(head_size))`` over the allowed
    ``j``, and ``y[i, h] = sum_j w[h, i, j] v[j, g]``, where ``g = h // (num_heads //
    num_kv_heads)`` is the key/value head that query head ``h`` reads (grouped-query
    attention; ``num_kv_heads == num_heads`` is ordinary multi-head attention). The
    logits and the softmax are computed in float32 at least. A query row with no
    allowed key gets zero weights (a zero output), never NaN.

    Args:
        query: ``(batch, q_len, num_heads, head_size)``.
        key: ``(batch, kv_len, num_kv_heads, head_size)``; ``num_kv_heads`` divides
            ``num_heads``.
        value: ``(batch, kv_len, num_kv_heads, head_size)``, like ``key``.
        mask: ``None`` (attend everywhere) or a bool array broadcastable to
            ``(batch, num_heads, q_len, kv_len)``, each axis of full size or 1;
            ``True`` means *attend*.
        dropout_rate: the probability of dropping each attention weight (kept
            weights are scaled by ``1 / (1 - dropout_rate)``); ``0`` in evaluation.
        dropout_key: the key the dropout mask is drawn from; needed when
            ``dropout_rate > 0``.

    Returns:
        ``(batch, q_len, num_heads, head_size)`` in ``query``'s dtype.

    Raises:
        ValueError: for inputs that are not 4-D, key and value of different shapes,
            heads that do not divide, a mask that does not broadcast, or
            ``dropout_rate > 0`` without a ``dropout_key``.

    Example:
        >>> import jax.numpy as jnp
        >>> q = jnp.ones((1, 2, 1, 4))  # (batch, q_len, heads, head_size)
        >>> k = jnp.ones((1, 3, 1, 4))
        >>> v = jnp.arange(3.0).reshape(1, 3, 1, 1) * jnp.ones((1, 3, 1, 4))
        >>> dot_product_attention(q, k, v)[0, :, 0, 0].tolist()  # equal logits: the mean
        [1.0, 1.0]
        >>> causal = jnp.tril(jnp.ones((2, 3), bool))[None, None]
        >>> dot_product_attention(q, k, v, causal)[0, :, 0, 0].tolist()
        [0.0, 0.5]
    """
    where = "dot_product_attention"
    for what, a in (("query", query), ("key", key), ("value", value)):
        if getattr(a, "ndim", None) != 4:
            raise ValueError(
                f"{where}: {what} must have shape (batch, length, heads, head_size), got "
                f"{tuple(getattr(a, 'shape', ()))}."
            )
    batch, q_len, num_heads, size = query.shape
    kv_len, kv_heads = key.shape[1], key.shape[2]
    if tuple(value.shape) != tuple(key.shape) or key.shape[0] != batch or key.shape[3] != size:
        raise ValueError(
            f"{where}: key {tuple(key.shape)} and value {tuple(value.shape)} must have the "
            f"same shape, (batch={batch}, kv_len, num_kv_heads, head_size={size})."
        )
    if num_heads % kv_heads:
        raise ValueError(
            f"{where}: {num_heads} query heads cannot share {kv_heads} key/value heads "
            "evenly; num_kv_heads must divide num_heads."
        )
    group = num_heads // kv_heads
    cdt = query.dtype
    # Logits and softmax in float32 at least: bfloat16 exponentials lose too much.
    sdt = jnp.dtype(jnp.float64 if cdt == jnp.float64 else jnp.float32)
    q = jnp.reshape(query, (batch, q_len, kv_heads, group, size))
    logits = jnp.einsum("bqkgd,bskd->bkgqs", q, key.astype(cdt), preferred_element_type=sdt)
    logits = logits * jnp.asarray(1.0 / math.sqrt(size), sdt)
    allowed = None
    if mask is not None:
        want = (batch, num_heads, q_len, kv_len)
        shape = tuple(getattr(mask, "shape", ()))
        if len(shape) != 4 or any(g not in (1, w) for g, w in zip(shape, want, strict=True)):
            raise ValueError(
                f"{where}: mask of shape {shape} does not broadcast to (batch, num_heads, "
                f"q_len, kv_len) = {want}. Give each axis its full size or 1."
            )
        m = jnp.broadcast_to(mask, (batch, shape[1], q_len, kv_len))
        m = jnp.reshape(m, (batch, kv_heads if shape[1] != 1 else 1, -1, q_len, kv_len))
        allowed = jnp.broadcast_to(m, logits.shape)
        logits = jnp.where(allowed, logits, jnp.asarray(jnp.finfo(sdt).min, sdt))
    weights = jax.nn.softmax(logits, axis=-1)
    if allowed is not None:
        # A row with nothing to attend to gets zero weights, not a uniform average.
        weights = weights * jnp.any(allowed, axis=-1, keepdims=True).astype(sdt)
    if dropout_rate > 0:
        if dropout_key is None:
            raise ValueError(
                f"{where}: dropout_rate={dropout_rate} needs a dropout_key; pass "
                "dropout_key=jax.random.key(...), or dropout_rate=0 for evaluation."
            )
        weights = dropout(dropout_key, dropout_rate, weights)
    heads = jnp.einsum("bkgqs,bskd->bqkgd", weights.astype(cdt), value.astype(cdt))
    return jnp.reshape(heads, (batch, q_len, num_heads, size))


@configured
def MultiHeadAttention(
    num_heads: int,
    key_size: int | None = None,
    *,
    num_kv_heads: int | None = None,
    out_features: int | None = None,
    dropout_rate: float = 0.0,
    use_bias: bool = True,
    causal: bool = False,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Multi-head scaled dot-product attention, for self- and cross-attention.

    Each head ``h`` computes ``softmax(q_h k_hᵀ / sqrt(key_size) + mask) v_h``; the heads
    are concatenated and projected to ``out_features``. With ``num_kv_heads`` smaller
    than ``num_heads`` (grouped-query attention) the key and value projections have
    ``num_kv_heads`` heads, and query head ``h`` reads key/value head
    ``h // (num_heads // num_kv_heads)``; ``num_kv_heads=1`` is multi-query attention.

    **Inputs.** An array ``x: (batch, seq, features)`` is self-attention. A dict is
    the general form, with entries:

    - ``"query"`` (required): ``(batch, q_len, features)``;
    - ``"key_value"``: ``(batch, kv_len, kv_features)``, the sequence attended to
      (cross-attention); by default the query itself;
    - ``"mask"``: bool ``(batch, q_len, kv_len)`` or ``(batch, num_heads, q_len,
      kv_len)``, any axis of size 1 to broadcast; ``True`` means *attend*;
    - ``"kv_lengths"``: int ``(batch,)``, the number of real key/value positions per
      example; positions at and beyond it are padding and are never attended to.

    ``mask``, ``kv_lengths`` and ``causal`` combine (a position is attended to only if
    all allow it). ``causal=True`` lets query position ``i`` attend to key positions
    ``j <= i`` (positions counted from the start of both sequences). A query row that
    may attend to nothing gets a zero attention result (so its output is the ``out``
    bias), never NaN. Softmax runs in float32 at least, whatever the compute dtype.

    **Params.** ``{"query", "key", "value", "out"}``, each ``{"kernel", "bias"}``:

    - ``query/kernel``: ``(features, num_heads, key_size)``, ``query/bias``:
      ``(num_heads, key_size)``;
    - ``key/kernel``, ``value/kernel``: ``(kv_features, num_kv_heads, key_size)``,
      biases ``(num_kv_heads, key_size)``;
    - ``out/kernel``: ``(num_heads, key_size, out_features)``, ``out/bias``:
      ``(out_features,)``.

    Kernels are initialised as the 2-D matrix ``(in, heads * key_size)`` (resp.
    ``(num_heads * key_size, out_features)``) and reshaped, so fan-in and fan-out are
    those of the equivalent dense projection.

    Args:
        num_heads: the number of query heads.
        key_size: the size of each head (queries, keys and values); by default
            ``features // num_heads``.
        num_kv_heads: the number of key/value heads; must divide ``num_heads``; by
            default ``num_heads`` (ordinary multi-head attention).
        out_features: the size of the output; by default the query's ``features``.
        dropout_rate: the probability of dropping each attention weight, in training
            only (kept weights are scaled by ``1 / (1 - dropout_rate)``); needs a key.
        use_bias: whether the four projections have biases.
        causal: whether query ``i`` may only attend to key positions ``j <= i``.
        kernel_init: initializer of the kernels (on their 2-D form).
        bias_init: initializer of the biases.
        dtype: the compute dtype; by default the query's floating dtype.
        param_dtype: the dtype of the stored params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping the query ``(batch, q_len, features)`` (alone or in a dict) to
        ``y: (batch, q_len, out_features)``, with no state.

    Raises:
        LayerError: for a non-positive size, ``num_heads`` not divisible by
            ``num_kv_heads``, a ``dropout_rate`` outside ``[0, 1)``, an unknown
            initializer; at ``init`` when ``key_size`` is not given and ``features``
            is not divisible by ``num_heads``; in ``init`` or ``apply`` for inputs,
            masks or lengths of the wrong shape or dtype, params that do not match,
            or ``training=True`` with ``dropout_rate > 0`` and no key.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = MultiHeadAttention(num_heads=4)
        >>> x = jnp.ones((2, 5, 16))  # (batch, seq, features)
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> params["query"]["kernel"].shape, params["out"]["kernel"].shape
        ((16, 4, 4), (4, 4, 16))
        >>> layer.apply(params, state, x)[0].shape
        (2, 5, 16)
        >>> memory = jnp.ones((2, 7, 16))  # cross-attention, padding after 3 and 7
        >>> inputs = {"query": x, "key_value": memory, "kv_lengths": jnp.array([3, 7])}
        >>> layer.apply(params, state, inputs)[0].shape
        (2, 5, 16)
    """
    check_positive(_KIND, "num_heads", num_heads)
    if key_size is not None:
        check_positive(_KIND, "key_size", key_size)
    if out_features is not None:
        check_positive(_KIND, "out_features", out_features)
    kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    check_positive(_KIND, "num_kv_heads", kv_heads)
    if num_heads % kv_heads:
        raise LayerError(
            _KIND,
            f"num_heads={num_heads} must be a multiple of num_kv_heads={kv_heads}: each "
            "key/value head serves an equal group of query heads. Choose num_kv_heads "
            f"among the divisors of {num_heads}.",
        )
    check_rate(_KIND, dropout_rate)
    kernel_fn = resolve(_KIND, inits.get, kernel_init)
    bias_fn = resolve(_KIND, inits.get, bias_init)
    leaf_names = ("kernel", "bias") if use_bias else ("kernel",)

    def head_size(features: int) -> int:
        if key_size is not None:
            return key_size
        if features % num_heads:
            raise LayerError(
                _KIND,
                f"the query has {features} features, which {num_heads} heads cannot split "
                f"evenly. Pass key_size=... (e.g. key_size={max(1, features // num_heads)}) "
                "or use a number of heads that divides the features.",
            )
        return features // num_heads

    def projection(
        key: PRNGKey, fan_in: int, heads: int, size: int, out: bool = False
    ) -> dict[str, jax.Array]:
        if out:
            kernel = param(key, "kernel", kernel_fn, (heads * size, fan_in), param_dtype)
            params = {"kernel": jnp.reshape(kernel, (heads, size, fan_in))}
            bias_shape: tuple[int, ...] = (fan_in,)
        else:
            kernel = param(key, "kernel", kernel_fn, (fan_in, heads * size), param_dtype)
            params = {"kernel": jnp.reshape(kernel, (fan_in, heads, size))}
            bias_shape = (heads, size)
        if use_bias:
            params["bias"] = param(key, "bias", bias_fn, bias_shape, param_dtype)
        return params

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        query, key_value, _, _ = _split_input(x)
        _check_inputs(query, key_value)
        features, kv_features = query.shape[-1], key_value.shape[-1]
        size = head_size(features)
        out = features if out_features is None else out_features
        params = {
            "query": projection(child_key(key, "query"), features, num_heads, size),
            "key": projection(child_key(key, "key"), kv_features, kv_heads, size),
            "value": projection(child_key(key, "value"), kv_features, kv_heads, size),
            "out": projection(child_key(key, "out"), out, num_heads, size, out=True),
        }
        return params, {}

    def check_params(params: Params, features: int, kv_features: int) -> int:
        check_entries(_KIND, "params", params, _PROJECTIONS, _PROJECTIONS)
        for proj in _PROJECTIONS:
            with scope(proj):
                check_entries(_KIND, "params", params[proj], leaf_names, leaf_names)
        size = params["query"]["kernel"].shape[-1]
        out = params["out"]["kernel"].shape[-1]
        want = {
            "query": ((features, num_heads, size), (num_heads, size)),
            "key": ((kv_features, kv_heads, size), (kv_heads, size)),
            "value": ((kv_features, kv_heads, size), (kv_heads, size)),
            "out": ((num_heads, size, out), (out,)),
        }
        for proj, (kernel_shape, bias_shape) in want.items():
            shapes = {"kernel": kernel_shape, "bias": bias_shape}
            for leaf in leaf_names:
                got = tuple(params[proj][leaf].shape)
                if got != shapes[leaf]:
                    raise LayerError(
                        _KIND,
                        f"{proj}/{leaf} has shape {got}, but for a query of {features} "
                        f"features, key_value of {kv_features} features, {num_heads} heads "
                        f"and {kv_heads} key/value heads it must be {shapes[leaf]}. "
                        "Initialise with inputs of the shapes you apply to, or pass the "
                        "params returned by this model's own init.",
                    )
        return size

    def project(params: Params, a: jax.Array, cdt: np.dtype) -> jax.Array:
        y = jnp.einsum("bsf,fhd->bshd", a, params["kernel"].astype(cdt))
        if use_bias:
            y = y + params["bias"].astype(cdt)[None, None]
        return y

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        check_entries(_KIND, "state", state, ())
        query, key_value, mask, kv_lengths = _split_input(x)
        _check_inputs(query, key_value)
        check_params(params, query.shape[-1], key_value.shape[-1])
        dropping = training and dropout_rate > 0
        if dropping:
            require_key(_KIND, key, f"training=True with dropout_rate={dropout_rate}")
        batch, q_len, kv_len = query.shape[0], query.shape[1], key_value.shape[1]
        full = _full_mask(mask, kv_lengths, causal, (batch, num_heads, q_len, kv_len))

        cdt = compute_dtype(query, dtype, param_dtype)
        heads = dot_product_attention(
            project(params["query"], query.astype(cdt), cdt),  # (b, q, H, d)
            project(params["key"], key_value.astype(cdt), cdt),  # (b, s, K, d)
            project(params["value"], key_value.astype(cdt), cdt),  # (b, s, K, d)
            full,
            dropout_rate=dropout_rate if dropping else 0.0,
            dropout_key=child_key(key, "dropout") if dropping else None,
        )
        y = jnp.einsum("bqhd,hdo->bqo", heads, params["out"]["kernel"].astype(cdt))
        if use_bias:
            y = y + params["out"]["bias"].astype(cdt)[None, None]
        return y, state

    return Layer(init, apply, _KIND, name)
