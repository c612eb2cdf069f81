"""Dropout: zero a random fraction of the inputs while training."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxnn._types import Params, PRNGKey, State
from jaxnn.core import Layer, LayerError, check_entries, configured
from jaxnn.layers._common import check_rate, dropout, require_key, stateless

__all__ = ["Dropout"]


@configured
def Dropout(rate: float, *, traced: bool = False, name: str | None = None) -> Layer:
    """Inverted dropout: in training, drops each entry with probability ``rate``.

    Kept entries are scaled by ``1 / (1 - rate)`` so the expected output equals the
    input, and evaluation (``training=False``) is the identity. Each entry is dropped
    independently; the mask is drawn from the ``key`` given to ``apply``, so the same
    key gives the same mask (the mask function that also drops attention weights in
    :func:`~jaxnn.layers.attention.MultiHeadAttention`). With ``rate=0`` the layer is
    the identity and needs no key.

    By default ``rate`` is a constant of the compiled program. With ``traced=True``
    it is held in the layer's state instead (``state == {"rate": rate}``, a float32
    scalar), so it can change without recompiling, and each member of a population
    can have its own: ``jaxnn.population.set_hyperparams(states, rate=...)`` (every
    traced dropout) or ``**{"encoder/dropout/rate": ...}`` (one, by its path). A
    traced rate gives the same outputs as the constant one for the same key (to
    float32 rounding of ``1 - rate``) and always needs a key in training.

    Args:
        rate: the probability of dropping an entry, in ``[0, 1)`` (a traced rate
            set later must lie there too; it is not checked inside the program).
        traced: hold the rate in the state (see above) rather than in the program.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, ...)`` to ``y: (batch, ...)`` of the same shape and
        dtype, with no params, and no state unless ``traced``.

    Raises:
        LayerError: for a ``rate`` outside ``[0, 1)``; in ``apply``, for
            ``training=True`` without a ``key``, or a non-floating input in training.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Dropout(0.5)
        >>> params, state = layer.init(jax.random.key(0), jnp.ones((2, 4)))
        >>> y, _ = layer.apply(params, state, jnp.ones((2, 4)), key=jax.random.key(1),
        ...                    training=True)
        >>> bool(((y == 0.0) | (y == 2.0)).all())  # dropped, or kept and doubled
        True
        >>> layer.apply(params, state, jnp.ones((2, 4)))[0].tolist()  # eval: identity
        [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
        >>> traced = Dropout(0.5, traced=True)
        >>> params, state = traced.init(jax.random.key(0), jnp.ones((2, 4)))
        >>> state
        {'rate': Array(0.5, dtype=float32)}
        >>> y, _ = traced.apply(params, {"rate": jnp.array(0.25)}, jnp.ones((2, 4)),
        ...                     key=jax.random.key(1), training=True)
        >>> bool(((y == 0.0) | (y == jnp.float32(1 / 0.75))).all())
        True
    """
    check_rate("Dropout", rate)
    if not isinstance(traced, bool):
        raise LayerError("Dropout", f"traced must be True or False, got {traced!r}.")

    def floating(x: Any) -> None:
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise LayerError(
                "Dropout",
                f"expects a floating-point input, got dtype {x.dtype}. Cast the input "
                "(e.g. x.astype(jnp.float32)) or drop out after an embedding.",
            )

    if traced:
        return _traced_dropout(rate, floating, name)

    def train(x: Any, key: PRNGKey) -> Any:
        floating(x)
        return dropout(key, rate, x)

    return stateless("Dropout", lambda x: x, train=train if rate > 0 else None, name=name)


def _traced_dropout(rate: float, floating: Any, name: str | None) -> Layer:
    """Dropout whose rate is the state's ``"rate"`` (a float32 scalar)."""

    def init(key: PRNGKey, x: Any) -> tuple[Params, State]:
        del key, x
        return {}, {"rate": jnp.asarray(rate, jnp.float32)}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        check_entries("Dropout", "params", params, ())
        check_entries("Dropout", "state", state, ("rate",), ("rate",))
        if not training:
            return x, state
        require_key("Dropout", key, "training=True")
        floating(x)
        keep_prob = 1.0 - jnp.asarray(state["rate"], jnp.float32)
        if keep_prob.shape != ():
            raise LayerError(
                "Dropout",
                f"the traced rate must be a scalar, got shape {keep_prob.shape}. A "
                "population's (members,) rates are set with population.set_hyperparams "
                "and vmapped to one per member.",
            )
        keep = jax.random.bernoulli(key, keep_prob, x.shape)
        scale = (1.0 / keep_prob).astype(x.dtype)
        return jnp.where(keep, x * scale, jnp.zeros_like(x)), state

    return Layer(init, apply, "Dropout", name)
