"""The floor every layer family is built on: params, parameterless layers, checks.

- :func:`param` creates one named parameter array (Haiku's ``get_parameter``, Flax's
  ``self.param``) from the layer's key, so every leaf gets its own key by name.
- :func:`stateless` builds a layer without params or state from a function of ``x``.
- :func:`resolve` looks up an activation or initializer by name and reports a bad one
  as a :class:`~jaxnn.core.LayerError` naming the layer.
- :func:`dropout` is the one dropout mask (``Dropout``, attention weights).
- The checks (:func:`check_positive`, :func:`check_rate`, ...) give the same mistake
  the same words in every layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._checks import check_key, check_positive_int
from jaxnn._types import Array, DTypeLike, Params, PRNGKey, Shape, Spec, State
from jaxnn.core import Layer, LayerError, check_entries, child_key

__all__ = [
    "along_last",
    "check_min_rank",
    "check_positive",
    "check_rate",
    "compute_dtype",
    "dict_input",
    "dropout",
    "param",
    "require_key",
    "resolve",
    "stateless",
]

T = TypeVar("T")


# ------------------------------------------------------------------ params and layers


def param(
    key: PRNGKey,
    name: str,
    initializer: Callable[[PRNGKey, Shape, DTypeLike], Array],
    shape: Shape,
    dtype: DTypeLike,
) -> Array:
    """Creates the parameter ``name``: ``initializer(child_key(key, name), shape, dtype)``.

    The key depends only on the layer's key and the leaf's name, so adding a leaf
    (say a bias) never changes the values of the others.

    Args:
        key: the layer's key, as given to its ``init``.
        name: the leaf's name (``"kernel"``, ``"bias"``, ``"scale"``, ...).
        initializer: ``init(key, shape, dtype) -> array``, e.g. from
            :func:`jaxnn.initializers.get`.
        shape: the shape of the array.
        dtype: its dtype (the layer's ``param_dtype``).

    Returns:
        The array.

    Example:
        >>> import jax
        >>> from jaxnn import initializers
        >>> kernel = param(jax.random.key(0), "kernel", initializers.get("glorot_uniform"),
        ...                (3, 4), "float32")
        >>> kernel.shape, kernel.dtype
        ((3, 4), dtype('float32'))
    """
    check_key("Layer.init", "key", key)  # None too: a parameter needs a key
    return initializer(child_key(key, name), shape, dtype)


def stateless(
    kind: str,
    fn: Callable[[Any], Any],
    *,
    check: Callable[[Any], Any] | None = None,
    train: Callable[[Any, PRNGKey], Any] | None = None,
    name: str | None = None,
) -> Layer:
    """A layer without params or state that computes ``fn(x)``.

    ``init`` returns ``({}, {})``; ``apply`` checks that it was given empty params and
    state (so params of another model fail with a clear message, as for every layer),
    runs ``check(x)`` and returns ``fn(x)``, or ``train(x, key)`` when
    ``training=True`` and ``train`` is given.

    Args:
        kind: the layer's kind, for names and messages (``"Flatten"``).
        fn: ``fn(x) -> y``, what the layer computes (in evaluation).
        check: ``check(x)``, run at ``init`` and in ``apply``; raises a
            :class:`~jaxnn.core.LayerError` for an input the layer cannot take.
        train: ``train(x, key) -> y``, what a stochastic layer computes in training;
            ``apply`` then needs a ``key``.
        name: the name of this layer inside a parent.

    Returns:
        The layer.

    Raises:
        LayerError: in ``apply``, for non-empty params or state, or
            ``training=True`` with ``train`` and no key; and whatever ``check``
            raises.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> double = stateless("Double", lambda x: 2 * x)
        >>> params, state = double.init(jax.random.key(0), jnp.ones((1, 2)))
        >>> params, state, double.apply(params, state, jnp.ones((1, 2)))[0].tolist()
        ({}, {}, [[2.0, 2.0]])
        >>> double.apply({"kernel": 1}, {}, jnp.ones((1, 2)))
        Traceback (most recent call last):
        ...
        jaxnn.core.LayerError: Double: params have entries ['kernel'] that this layer \
does not have (it has []). Pass the params returned by this model's own init.
    """

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        del key
        if check is not None:
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
        check_entries(kind, "params", params, ())
        check_entries(kind, "state", state, ())
        if check is not None:
            check(x)
        if training and train is not None:
            require_key(kind, key, "training=True")
            return train(x, key), state
        return fn(x), state

    return Layer(init, apply, kind, name)


def resolve(kind: str, get: Callable[[Any], T], value: Any) -> T:
    """``get(value)``, with a bad name or type reported as a ``LayerError`` of ``kind``.

    Args:
        kind: the layer's kind, for the message.
        get: a lookup such as :func:`jaxnn.activations.get` or
            :func:`jaxnn.initializers.get`.
        value: what the user passed (a name or a function).

    Returns:
        What ``get`` returns.

    Raises:
        LayerError: with the lookup's message (which lists close names) for the
            ``ValueError`` or ``TypeError`` that ``get`` raises.

    Example:
        >>> from jaxnn import activations
        >>> resolve("Dense", activations.get, "rleu")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        jaxnn.core.LayerError: Dense: unknown activation 'rleu'. Did you mean 'relu', ...
    """
    try:
        return get(value)
    except (ValueError, TypeError) as e:
        raise LayerError(kind, str(e)) from e


# ---------------------------------------------------------------------- randomness


def require_key(kind: str, key: PRNGKey | None, needs: str) -> None:
    """Raises a :class:`LayerError` if a layer that draws random numbers got no key.

    Args:
        kind: the layer's kind, for the message.
        key: the key given to ``apply``.
        needs: what needs it, for the message (``"training=True"``).

    Raises:
        LayerError: when ``key`` is ``None``.

    Example:
        >>> require_key("Dropout", None, "training=True")
        Traceback (most recent call last):
        ...
        jaxnn.core.LayerError: Dropout: training=True needs a key: pass \
key=jax.random.key(...) to apply (a parent passes its own key on), or use training=False \
for evaluation.
    """
    if key is None:
        raise LayerError(
            kind,
            f"{needs} needs a key: pass key=jax.random.key(...) to apply (a parent passes "
            "its own key on), or use training=False for evaluation.",
        )


def dropout(key: PRNGKey, rate: float, x: Array) -> Array:
    """Inverted dropout: zeros each entry with probability ``rate``, scales the rest.

    Kept entries are multiplied by ``1 / (1 - rate)`` (in ``x``'s dtype), so the
    expected output is ``x``.

    Args:
        key: the key the mask is drawn from; the same key gives the same mask.
        rate: the probability of dropping, in ``[0, 1)``.
        x: a floating-point array, any shape.

    Returns:
        An array of ``x``'s shape and dtype.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> y = dropout(jax.random.key(0), 0.5, jnp.ones((2, 4)))
        >>> bool(((y == 0.0) | (y == 2.0)).all())
        True
    """
    keep_prob = 1.0 - float(rate)
    keep = jax.random.bernoulli(key, keep_prob, x.shape)
    return jnp.where(keep, x * jnp.asarray(1.0 / keep_prob, x.dtype), jnp.zeros_like(x))


# -------------------------------------------------------------------------- checks


def compute_dtype(x: Any, dtype: DTypeLike | None, param_dtype: DTypeLike) -> np.dtype:
    """The dtype a layer computes in.

    ``dtype`` when given; else the input's dtype when it is floating point (so a
    bfloat16 input computes in bfloat16 with float32 params); else ``param_dtype``.

    Example:
        >>> import jax.numpy as jnp
        >>> compute_dtype(jnp.ones(2, jnp.bfloat16), None, jnp.float32)
        dtype(bfloat16)
    """
    if dtype is not None:
        return jnp.dtype(dtype)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.dtype(x.dtype)
    return jnp.dtype(param_dtype)


def check_min_rank(kind: str, x: Any, rank: int, layout: str) -> None:
    """Raises a :class:`LayerError` if ``x`` has fewer than ``rank`` axes."""
    if not hasattr(x, "shape"):
        raise LayerError(kind, f"expects an array input {layout}, got {type(x).__name__}.")
    if x.ndim < rank:
        raise LayerError(
            kind,
            f"expects an input of shape {layout} with at least {rank} axes, got shape "
            f"{tuple(x.shape)}. Add the batch axis (e.g. x[None]) or reshape the input.",
        )


def check_rate(kind: str, rate: float) -> None:
    """Raises a :class:`LayerError` unless ``0 <= rate < 1``."""
    if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise LayerError(
            kind,
            f"rate is the probability of dropping and must lie in [0, 1), got {rate!r}.",
        )


def check_positive(kind: str, what: str, value: Any) -> int:
    """``value`` as an ``int`` if it is a positive integer; else a :class:`LayerError`.

    The rule and the words are :func:`jaxnn._checks.check_positive_int`'s (``bool`` is
    refused); the error is a ``LayerError`` naming the layer (a ``ValueError``).

    Example:
        >>> check_positive("Dense", "features", 0)
        Traceback (most recent call last):
        ...
        jaxnn.core.LayerError: Dense: features must be a positive int, got 0.
    """
    try:
        return check_positive_int(kind, what, value)
    except ValueError as e:
        raise LayerError(kind, str(e).removeprefix(f"{kind}: ")) from None


def along_last(v: Any, ndim: int) -> Any:
    """Reshapes a ``(features,)`` vector to broadcast over the last axis of an
    ``ndim``-axis array, explicitly (jaxnn runs under ``jax_numpy_rank_promotion="raise"``).
    """
    return jnp.reshape(v, (1,) * (ndim - 1) + (-1,))


def dict_input(kind: str, x: dict, keys: tuple[str, ...], usage: str) -> tuple[Any, ...]:
    """The entries ``keys`` of a dict input, in order (``None`` where absent).

    The first key is required; any key not in ``keys`` is an error, whose message
    ends with ``usage`` (how to build the dict).
    """
    extra = sorted(str(k) for k in x if k not in keys)
    if extra or keys[0] not in x:
        problem = f"unknown entries {extra}" if extra else f"no {keys[0]!r} entry"
        raise LayerError(
            kind,
            f"a dict input takes the entries {list(keys)} ({keys[0]!r} required), "
            f"got {problem}. {usage}",
        )
    return tuple(x.get(k) for k in keys)
