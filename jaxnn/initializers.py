"""Named initializers, by function or by name (``jax.nn.initializers`` underneath).

An initializer is a function ``init(key, shape, dtype) -> array``. Fan-in and fan-out
follow XLA's layouts: ``(in, out)`` for dense kernels and ``(..spatial.., in, out)``
(HWIO) for convolution kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxnn._checks import lookup
from jaxnn._types import DTypeLike, PRNGKey

__all__ = [
    "Initializer",
    "constant",
    "get",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "truncated_normal",
    "uniform",
    "zeros",
]

Initializer = Callable[[PRNGKey, tuple[int, ...], DTypeLike], jax.Array]

_vs = jax.nn.initializers.variance_scaling


def glorot_uniform() -> Initializer:
    """Glorot (Xavier) uniform: ``U(-l, l)`` with ``l = sqrt(6 / (fan_in + fan_out))``.

    Example:
        >>> import jax
        >>> glorot_uniform()(jax.random.key(0), (4, 32), "float32").shape
        (4, 32)
    """
    return _vs(1.0, "fan_avg", "uniform")


def glorot_normal() -> Initializer:
    """Glorot (Xavier) normal: truncated normal with variance ``2 / (fan_in + fan_out)``.

    Example:
        >>> import jax
        >>> glorot_normal()(jax.random.key(0), (4, 32), "float32").shape
        (4, 32)
    """
    return _vs(1.0, "fan_avg", "truncated_normal")


def he_uniform() -> Initializer:
    """He (Kaiming) uniform: ``U(-l, l)`` with ``l = sqrt(6 / fan_in)``; for ReLU nets.

    Example:
        >>> import jax
        >>> he_uniform()(jax.random.key(0), (4, 32), "float32").shape
        (4, 32)
    """
    return _vs(2.0, "fan_in", "uniform")


def he_normal() -> Initializer:
    """He (Kaiming) normal: truncated normal with variance ``2 / fan_in``.

    Example:
        >>> import jax
        >>> he_normal()(jax.random.key(0), (4, 32), "float32").shape
        (4, 32)
    """
    return _vs(2.0, "fan_in", "truncated_normal")


def lecun_uniform() -> Initializer:
    """LeCun uniform: ``U(-l, l)`` with ``l = sqrt(3 / fan_in)``.

    Example:
        >>> import jax
        >>> lecun_uniform()(jax.random.key(0), (4, 32), "float32").shape
        (4, 32)
    """
    return _vs(1.0, "fan_in", "uniform")


def lecun_normal() -> Initializer:
    """LeCun normal: truncated normal with variance ``1 / fan_in``; for SELU nets.

    Example:
        >>> import jax
        >>> lecun_normal()(jax.random.key(0), (4, 32), "float32").shape
        (4, 32)
    """
    return _vs(1.0, "fan_in", "truncated_normal")


def zeros() -> Initializer:
    """All zeros (the default bias).

    Example:
        >>> import jax
        >>> zeros()(jax.random.key(0), (2,), "float32").tolist()
        [0.0, 0.0]
    """
    return jax.nn.initializers.zeros


def ones() -> Initializer:
    """All ones (the default normalisation scale).

    Example:
        >>> import jax
        >>> ones()(jax.random.key(0), (2,), "float32").tolist()
        [1.0, 1.0]
    """
    return jax.nn.initializers.ones


def constant(value: float) -> Initializer:
    """Every entry equal to ``value``.

    Args:
        value: the fill value, a scalar, cast to the dtype asked for.

    Returns:
        An initializer ``init(key, shape, dtype)`` that ignores ``key`` and returns
        ``jnp.full(shape, value, dtype)``; ``dtype`` defaults to JAX's default float
        type (float32 unless 64-bit mode is on).

    Example:
        >>> import jax
        >>> constant(0.5)(jax.random.key(0), (2,), "float32").tolist()
        [0.5, 0.5]
        >>> constant(3)(jax.random.key(0), (2,), "int32").tolist()
        [3, 3]
    """
    return jax.nn.initializers.constant(value)


def normal(stddev: float = 0.05, mean: float = 0.0) -> Initializer:
    """Normal draws with the given ``mean`` and ``stddev`` (Keras's defaults).

    Args:
        stddev: the standard deviation of the draws.
        mean: the mean of the draws.

    Returns:
        An initializer ``init(key, shape, dtype=float32)`` returning draws from
        ``N(mean, stddev**2)`` of that shape; ``dtype`` must be a floating type.

    Example:
        >>> import jax
        >>> normal(1.0)(jax.random.key(0), (3,), "float32").shape
        (3,)
        >>> round(float(normal(0.1, mean=1.0)(jax.random.key(0), (10000,)).mean()), 2)
        1.0
    """
    base = jax.nn.initializers.normal(stddev)

    def init(key: PRNGKey, shape: tuple[int, ...], dtype: DTypeLike = jnp.float32) -> jax.Array:
        return base(key, shape, dtype) + jnp.asarray(mean, dtype)

    return init


def truncated_normal(stddev: float = 0.05, mean: float = 0.0) -> Initializer:
    """Normal draws cut at two standard deviations either side of ``mean``.

    ``stddev`` is the scale of the normal before the cut, as in
    ``jax.nn.initializers.truncated_normal``; it is not corrected for the cut, so the
    draws' own standard deviation is about ``0.88 * stddev``.

    Args:
        stddev: the standard deviation of the normal before truncation; every draw
            lies within ``2 * stddev`` of ``mean``.
        mean: the centre of the draws.

    Returns:
        An initializer ``init(key, shape, dtype=float32)`` returning truncated draws of
        that shape; ``dtype`` must be a floating type.

    Example:
        >>> import jax
        >>> x = truncated_normal(1.0)(jax.random.key(0), (1000,), "float32")
        >>> bool((abs(x) <= 2.0 * 1.14).all())
        True
        >>> bool((abs(x) <= 2.0).all())
        True
    """
    base = jax.nn.initializers.truncated_normal(stddev)

    def init(key: PRNGKey, shape: tuple[int, ...], dtype: DTypeLike = jnp.float32) -> jax.Array:
        return base(key, shape, dtype) + jnp.asarray(mean, dtype)

    return init


def uniform(scale: float = 0.05) -> Initializer:
    """Uniform draws in ``[-scale, scale)``.

    Args:
        scale: the half-width of the interval, centred on 0.

    Returns:
        An initializer ``init(key, shape, dtype=float32)`` returning uniform draws of
        that shape; ``dtype`` must be a floating type.

    Example:
        >>> import jax
        >>> bool((abs(uniform(0.1)(jax.random.key(0), (100,), "float32")) <= 0.1).all())
        True
    """

    def init(key: PRNGKey, shape: tuple[int, ...], dtype: DTypeLike = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def orthogonal(gain: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix over the last axis, times ``gain``.

    The array is drawn as a matrix of ``prod(shape[:-1])`` rows and ``shape[-1]``
    columns, with orthonormal columns when there are at least as many rows as
    columns and orthonormal rows otherwise, then multiplied by ``gain`` and reshaped
    to ``shape``.

    Args:
        gain: the factor applied to the orthogonal matrix, e.g. ``sqrt(2)`` for ReLU.

    Returns:
        An initializer ``init(key, shape, dtype)``; it raises ``ValueError`` for a
        shape with fewer than two axes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = orthogonal()(jax.random.key(0), (4, 4), "float32")
        >>> bool(jnp.allclose(w.T @ w, jnp.eye(4), atol=1e-5))
        True
        >>> w = orthogonal(2.0)(jax.random.key(0), (3, 5), "float32")
        >>> bool(jnp.allclose(w @ w.T, 4.0 * jnp.eye(3), atol=1e-5))
        True
    """
    return jax.nn.initializers.orthogonal(gain)


_BY_NAME: dict[str, Callable[[], Initializer]] = {
    "glorot_uniform": glorot_uniform,
    "xavier_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_normal": glorot_normal,
    "he_uniform": he_uniform,
    "kaiming_uniform": he_uniform,
    "he_normal": he_normal,
    "kaiming_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "lecun_normal": lecun_normal,
    "zeros": zeros,
    "ones": ones,
    "normal": normal,
    "random_normal": normal,
    "truncated_normal": truncated_normal,
    "uniform": uniform,
    "random_uniform": uniform,
    "orthogonal": orthogonal,
}


def get(init: str | Initializer | Any) -> Initializer:
    """Returns an initializer for a name or a function.

    Args:
        init: a name such as ``"glorot_uniform"``, ``"he_normal"``, ``"zeros"``
            (Keras's names work), or a function ``init(key, shape, dtype)``.

    Returns:
        The initializer function.

    Raises:
        ValueError: for an unknown name (matched case-insensitively); the message
            suggests close matches and lists every known name.
        TypeError: for anything that is neither a name nor a callable.

    Example:
        >>> import jax
        >>> get("zeros")(jax.random.key(0), (2,), "float32").tolist()
        [0.0, 0.0]
    """
    if callable(init):
        return init
    if isinstance(init, str):
        return lookup("initializer", init, _BY_NAME, "pass a function init(key, shape, dtype)")()
    raise TypeError(f"an initializer must be a name or a function, got {type(init).__name__}.")
