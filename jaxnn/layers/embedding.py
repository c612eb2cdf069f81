"""Embedding: a learned table looked up by integer index."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import initializers as inits
from jaxnn._types import DTypeLike, Params, PRNGKey, Spec, State
from jaxnn.core import Layer, LayerError, check_entries, configured
from jaxnn.layers._common import check_min_rank, check_positive, param, resolve

__all__ = ["Embedding"]


@configured
def Embedding(
    num_embeddings: int,
    features: int,
    *,
    embedding_init: str | inits.Initializer = "uniform",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A lookup table: index ``i`` maps to row ``i`` of a learned ``embedding`` matrix.

    Args:
        num_embeddings: the number of rows (the vocabulary size); valid indices are
            ``0 .. num_embeddings - 1``.
        features: the length of each embedding vector.
        embedding_init: initializer of the table; by default uniform in
            ``[-0.05, 0.05)``, Keras's default (``"uniform"``). Pass e.g.
            ``jaxnn.initializers.normal(1.0)`` for unit-variance rows.
        dtype: the output dtype; by default the table's dtype.
        param_dtype: the dtype of the table.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping integer ``x: (batch, ...)`` to ``y: (batch, ..., features)``,
        with params ``{"embedding"}`` of shape ``(num_embeddings, features)``.
        Indices outside ``[0, num_embeddings)`` raise on concrete (eager) input;
        inside ``jit`` or ``vmap``, where they cannot be checked, they give rows of
        NaN rather than a silently clamped row. When an ``Embedding`` is the
        model's first layer (through nested ``Sequential`` s), ``Trainer.fit``,
        ``evaluate``, ``predict`` and the population's check the input ids against
        its table at the door (:func:`jaxnn.data.check_input_ids`); deeper in a model,
        where the ids it sees are computed, a bad id shows as NaN rows (and a NaN
        loss, which the numerical guard reports).

    Raises:
        LayerError: for non-positive sizes, an unknown initializer; at ``init`` or in
            ``apply``, for a non-integer input; in ``apply``, for a table of the wrong
            shape or (eagerly) out-of-range indices.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Embedding(1000, 64)
        >>> tokens = jnp.array([[1, 2, 3], [4, 5, 6]])
        >>> params, state = layer.init(jax.random.key(0), tokens)
        >>> params["embedding"].shape
        (1000, 64)
        >>> layer.apply(params, state, tokens)[0].shape
        (2, 3, 64)
    """
    check_positive("Embedding", "num_embeddings", num_embeddings)
    check_positive("Embedding", "features", features)
    init_fn = resolve("Embedding", inits.get, embedding_init)

    def check_input(x: Any) -> None:
        check_min_rank("Embedding", x, 1, "(batch, ...) of integer indices")
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise LayerError(
                "Embedding",
                f"expects integer indices in [0, {num_embeddings}), got dtype {x.dtype}. "
                "Pass token ids as an integer array (e.g. x.astype(jnp.int32)).",
            )

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        check_input(x)
        table = param(key, "embedding", init_fn, (num_embeddings, features), param_dtype)
        return {"embedding": table}, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        del key, training
        check_entries("Embedding", "params", params, ("embedding",), ("embedding",))
        check_input(x)
        table = params["embedding"]
        if tuple(table.shape) != (num_embeddings, features):
            raise LayerError(
                "Embedding",
                f"embedding has shape {tuple(table.shape)}, but this layer expects "
                f"({num_embeddings}, {features}). Pass the params returned by this "
                "model's own init.",
            )
        if not isinstance(x, jax.core.Tracer) and x.size:
            # A concrete input (even one closed over inside a jit) is checked on the host.
            host = np.asarray(x)
            lo, hi = int(host.min()), int(host.max())
            if lo < 0 or hi >= num_embeddings:
                raise LayerError(
                    "Embedding",
                    f"indices must lie in [0, {num_embeddings}), got values from {lo} to "
                    f"{hi}. Map them into the vocabulary, or make num_embeddings larger.",
                )
        # Negative indices would wrap around; send them past the end, where "fill" gives NaN.
        idx = x if jnp.dtype(x.dtype).itemsize >= 4 else x.astype(jnp.int32)
        idx = jnp.where(idx < 0, jnp.asarray(num_embeddings, idx.dtype), idx)
        y = jnp.take(table, idx, axis=0, mode="fill", fill_value=jnp.nan)
        return y.astype(dtype if dtype is not None else table.dtype), state

    return Layer(init, apply, "Embedding", name)
