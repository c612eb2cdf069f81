"""Normalisation layers: BatchNorm, LayerNorm, GroupNorm, RMSNorm, InstanceNorm.

Every layer here computes its statistics in float32 at least (float64 inputs stay in
float64), so a bfloat16 model normalises as accurately as a float32 one; the output is
cast back to the compute dtype. The feature (channel) axis is the last one, except for
``BatchNorm(axis=...)``. Inputs are channels-last: ``(batch, ..spatial.., channels)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import initializers as inits
from jaxnn._types import DTypeLike, Params, PRNGKey, Spec, State
from jaxnn.core import Layer, LayerError, check_entries, configured
from jaxnn.layers._common import check_min_rank, check_positive, compute_dtype, param, resolve

__all__ = ["BatchNorm", "GroupNorm", "InstanceNorm", "LayerNorm", "RMSNorm"]


def _check_epsilon(kind: str, epsilon: float) -> None:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0:
        raise LayerError(
            kind,
            f"epsilon is added to the variance to avoid dividing by zero and must be a "
            f"positive number, got {epsilon!r}. Use e.g. epsilon=1e-5.",
        )


def _initializers(
    kind: str, scale_init: str | inits.Initializer, bias_init: str | inits.Initializer
) -> tuple[inits.Initializer, inits.Initializer]:
    return resolve(kind, inits.get, scale_init), resolve(kind, inits.get, bias_init)


def _stat_dtype(cdt: np.dtype) -> np.dtype:
    """float32 at least: bfloat16 and float16 statistics are computed in float32."""
    cdt = jnp.dtype(cdt)
    return cdt if cdt.itemsize >= 4 else jnp.dtype(jnp.float32)


def _along(v: jax.Array, ndim: int, axis: int) -> jax.Array:
    """Reshapes a ``(features,)`` vector to broadcast along ``axis`` of an ``ndim``-axis array."""
    shape = [1] * ndim
    shape[axis] = -1
    return jnp.reshape(v, shape)


def _moments(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Mean and biased variance over ``axes``, kept as size-1 axes (two passes, for accuracy)."""
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    return mean, var


def _affine_params(
    key: PRNGKey,
    features: int,
    use_scale: bool,
    use_bias: bool,
    scale_fn: inits.Initializer,
    bias_fn: inits.Initializer,
    param_dtype: DTypeLike,
) -> Params:
    params = {}
    if use_scale:
        params["scale"] = param(key, "scale", scale_fn, (features,), param_dtype)
    if use_bias:
        params["bias"] = param(key, "bias", bias_fn, (features,), param_dtype)
    return params


def _check_vectors(kind: str, what: str, tree: dict, features: int, axis_word: str) -> None:
    for leaf_name, v in tree.items():
        if tuple(v.shape) != (features,):
            raise LayerError(
                kind,
                f"{what} entry {leaf_name!r} has shape {tuple(v.shape)}, but the input has "
                f"{features} features on its {axis_word} axis, so it expects ({features},). "
                f"Pass the {what} returned by this model's own init, or fix the input.",
            )


def _affine(y: jax.Array, params: Params, axis: int) -> jax.Array:
    if "scale" in params:
        y = y * _along(params["scale"].astype(y.dtype), y.ndim, axis)
    if "bias" in params:
        y = y + _along(params["bias"].astype(y.dtype), y.ndim, axis)
    return y


@configured
def BatchNorm(
    momentum: float = 0.99,
    epsilon: float = 1e-3,
    *,
    axis: int = -1,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: str | inits.Initializer = "ones",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Batch normalisation, with Keras's defaults.

    In training, each feature is normalised with the mean and (biased) variance of the
    batch, taken over every axis but ``axis``, and the running statistics are updated:
    ``new = momentum * old + (1 - momentum) * batch_stat``; the running variance
    averages the biased batch variance (over ``n`` examples), as Keras's does, where
    PyTorch's ``running_var`` averages the unbiased one (over ``n - 1``, larger by
    ``n / (n - 1)``). In evaluation
    (``training=False``) the running statistics are used and the state is unchanged.
    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias``. Under ``jax.vmap`` over
    an ensemble, each member keeps its own statistics.

    Args:
        momentum: the weight of the old running value, in ``[0, 1]``.
        epsilon: added to the variance; positive.
        axis: the feature axis; any axis but the batch axis (``0``).
        use_scale: whether to learn ``scale`` (else 1).
        use_bias: whether to learn ``bias`` (else 0).
        scale_init: initializer of ``scale``; ones by default.
        bias_init: initializer of ``bias``; zeros by default.
        dtype: the compute dtype of the output; by default the input's floating dtype.
            Statistics are computed in float32 at least.
        param_dtype: the dtype of the params and the running statistics.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, ..., features, ...)`` to ``y`` of the same shape,
        with params ``{"scale", "bias"}`` and state ``{"mean", "var"}``, each of shape
        ``(features,)``; the running statistics start at zeros and ones.

    Raises:
        LayerError: for a ``momentum`` outside ``[0, 1]``, a non-positive ``epsilon``,
            an unknown initializer; at ``init``, for an input with fewer than two
            axes or an ``axis`` that is out of range or is the batch axis; in
            ``apply``, for params or state of the wrong shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = BatchNorm()
        >>> x = jnp.arange(8.0).reshape(4, 2)
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> y, new_state = layer.apply(params, state, x, training=True)
        >>> [round(v, 4) + 0.0 for v in y.mean(axis=0).tolist()]  # + 0.0 turns -0.0 into 0.0
        [0.0, 0.0]
        >>> [round(v, 4) for v in new_state["mean"].tolist()]  # 0.99 * 0 + 0.01 * [3, 4]
        [0.03, 0.04]
    """
    if (
        isinstance(momentum, bool)
        or not isinstance(momentum, (int, float))
        or not 0.0 <= momentum <= 1.0
    ):
        raise LayerError(
            "BatchNorm",
            f"momentum is the weight of the old running statistic and must lie in [0, 1], "
            f"got {momentum!r}. Keras's default is 0.99 (PyTorch's momentum=0.1 is 0.9 "
            "here).",
        )
    _check_epsilon("BatchNorm", epsilon)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise LayerError("BatchNorm", f"axis must be an integer, got {axis!r}.")
    scale_fn, bias_fn = _initializers("BatchNorm", scale_init, bias_init)
    param_names = tuple(n for n, on in (("scale", use_scale), ("bias", use_bias)) if on)
    layout = "(batch, ..., features, ...)"

    def feature_axis(x: Any) -> int:
        check_min_rank("BatchNorm", x, 2, layout)
        if not -x.ndim <= axis < x.ndim or axis % x.ndim == 0:
            raise LayerError(
                "BatchNorm",
                f"axis={axis} is not a feature axis of an input of shape {tuple(x.shape)}: "
                f"it must lie in [1, {x.ndim - 1}] or [-{x.ndim - 1}, -1] (axis 0 is the "
                "batch axis). Use axis=-1 for channels-last inputs.",
            )
        return axis % x.ndim

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        features = x.shape[feature_axis(x)]
        params = _affine_params(key, features, use_scale, use_bias, scale_fn, bias_fn, param_dtype)
        state = {
            "mean": jnp.zeros((features,), param_dtype),
            "var": jnp.ones((features,), param_dtype),
        }
        return params, state

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        del key
        check_entries("BatchNorm", "params", params, param_names, param_names)
        check_entries("BatchNorm", "state", state, ("mean", "var"), ("mean", "var"))
        ax = feature_axis(x)
        features = x.shape[ax]
        _check_vectors("BatchNorm", "params", params, features, "feature")
        _check_vectors("BatchNorm", "state", state, features, "feature")
        cdt = compute_dtype(x, dtype, param_dtype)
        sdt = _stat_dtype(cdt)
        xs = x.astype(sdt)
        if training:
            axes = tuple(i for i in range(x.ndim) if i != ax)
            mean, var = _moments(xs, axes)
            m = jnp.asarray(momentum, sdt)
            keep = jnp.asarray(1.0 - momentum, sdt)

            def update(old: jax.Array, batch: jax.Array) -> jax.Array:
                new = m * old.astype(sdt) + keep * jnp.reshape(jax.lax.stop_gradient(batch), -1)
                return new.astype(old.dtype)

            new_state = {
                "mean": update(state["mean"], mean),
                "var": update(state["var"], var),
            }
        else:
            mean = _along(state["mean"].astype(sdt), x.ndim, ax)
            var = _along(state["var"].astype(sdt), x.ndim, ax)
            new_state = state
        y = (xs - mean) * jax.lax.rsqrt(var + jnp.asarray(epsilon, sdt))
        return _affine(y, params, ax).astype(cdt), new_state

    return Layer(init, apply, "BatchNorm", name)


def _last_axis_norm(
    kind: str,
    epsilon: float,
    use_scale: bool,
    use_bias: bool,
    scale_init: str | inits.Initializer,
    bias_init: str | inits.Initializer,
    dtype: DTypeLike | None,
    param_dtype: DTypeLike,
    name: str | None,
    min_rank: int,
    layout: str,
    normalise: Callable[[jax.Array, jax.Array], jax.Array],
    check: Callable[[Any], None] = lambda x: None,
) -> Layer:
    """A stateless per-example normalisation with a learned affine map on the last axis.

    ``normalise(x, epsilon)`` gets ``x`` in the statistics dtype and returns the
    normalised array of the same shape.
    """
    _check_epsilon(kind, epsilon)
    scale_fn, bias_fn = _initializers(kind, scale_init, bias_init)
    param_names = tuple(n for n, on in (("scale", use_scale), ("bias", use_bias)) if on)

    def validate(x: Any) -> None:
        check_min_rank(kind, x, min_rank, layout)
        check(x)

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        validate(x)
        params = _affine_params(
            key, x.shape[-1], use_scale, use_bias, scale_fn, bias_fn, param_dtype
        )
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
        check_entries(kind, "params", params, param_names, param_names)
        check_entries(kind, "state", state, ())
        validate(x)
        _check_vectors(kind, "params", params, x.shape[-1], "last")
        cdt = compute_dtype(x, dtype, param_dtype)
        sdt = _stat_dtype(cdt)
        y = normalise(x.astype(sdt), jnp.asarray(epsilon, sdt))
        return _affine(y, params, x.ndim - 1).astype(cdt), state

    return Layer(init, apply, kind, name)


def _standardise(x: jax.Array, epsilon: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    mean, var = _moments(x, axes)
    return (x - mean) * jax.lax.rsqrt(var + epsilon)


@configured
def LayerNorm(
    epsilon: float = 1e-6,
    *,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: str | inits.Initializer = "ones",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Layer normalisation over the last axis, separately for every position.

    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias``, with the mean and biased
    variance taken over the last axis. Training and evaluation compute the same thing.

    Args:
        epsilon: added to the variance; positive. The default 1e-6 differs from
            Keras's ``LayerNormalization`` (1e-3): it is Flax's and the usual value
            in transformer code, and 1e-3 visibly shrinks features whose variance is
            small. Pass ``epsilon=1e-3`` to match Keras.
        use_scale: whether to learn ``scale`` (else 1).
        use_bias: whether to learn ``bias`` (else 0).
        scale_init: initializer of ``scale``; ones by default.
        bias_init: initializer of ``bias``; zeros by default.
        dtype: the compute dtype of the output; by default the input's floating dtype.
            Statistics are computed in float32 at least.
        param_dtype: the dtype of the params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, ..., features)`` to ``y`` of the same shape, with
        params ``{"scale", "bias"}`` of shape ``(features,)`` and no state.

    Raises:
        LayerError: for a non-positive ``epsilon``, an unknown initializer, an input
            without a feature axis, or (in ``apply``) params of the wrong shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = LayerNorm()
        >>> x = jnp.array([[1.0, 2.0, 3.0]])
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> [round(v, 3) for v in layer.apply(params, state, x)[0][0].tolist()]
        [-1.225, 0.0, 1.225]
    """
    return _last_axis_norm(
        "LayerNorm",
        epsilon,
        use_scale,
        use_bias,
        scale_init,
        bias_init,
        dtype,
        param_dtype,
        name,
        min_rank=2,
        layout="(batch, ..., features)",
        normalise=lambda x, eps: _standardise(x, eps, (x.ndim - 1,)),
    )


@configured
def RMSNorm(
    epsilon: float = 1e-6,
    *,
    use_scale: bool = True,
    scale_init: str | inits.Initializer = "ones",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Root-mean-square normalisation over the last axis: ``y = x / rms(x) * scale``.

    ``rms(x) = sqrt(mean(x ** 2) + epsilon)`` over the last axis; there is no centring
    and no bias.

    Args:
        epsilon: added to the mean square; positive.
        use_scale: whether to learn ``scale`` (else 1).
        scale_init: initializer of ``scale``; ones by default.
        dtype: the compute dtype of the output; by default the input's floating dtype.
            Statistics are computed in float32 at least.
        param_dtype: the dtype of the params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, ..., features)`` to ``y`` of the same shape, with
        params ``{"scale"}`` of shape ``(features,)`` and no state.

    Raises:
        LayerError: for a non-positive ``epsilon``, an unknown initializer, an input
            without a feature axis, or (in ``apply``) params of the wrong shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = RMSNorm()
        >>> x = jnp.array([[3.0, -3.0]])
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> [round(v, 3) for v in layer.apply(params, state, x)[0][0].tolist()]
        [1.0, -1.0]
    """

    def normalise(x: jax.Array, eps: jax.Array) -> jax.Array:
        mean_square = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
        return x * jax.lax.rsqrt(mean_square + eps)

    return _last_axis_norm(
        "RMSNorm",
        epsilon,
        use_scale,
        False,
        scale_init,
        "zeros",
        dtype,
        param_dtype,
        name,
        min_rank=2,
        layout="(batch, ..., features)",
        normalise=normalise,
    )


@configured
def GroupNorm(
    num_groups: int = 32,
    epsilon: float = 1e-5,
    *,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: str | inits.Initializer = "ones",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Group normalisation: channels split into groups, normalised per example and group.

    The ``channels`` are split into ``num_groups`` consecutive groups; each group of each
    example is standardised with the mean and biased variance over its channels and all
    spatial axes, then ``scale`` and ``bias`` act per channel. ``num_groups=1`` is layer
    normalisation over all non-batch axes; ``num_groups=channels`` is
    :func:`InstanceNorm`.

    Args:
        num_groups: the number of groups; must divide the number of channels.
        epsilon: added to the variance; positive. The default 1e-5 differs from
            Keras's ``GroupNormalization`` (1e-3): it is PyTorch's and Flax's, the
            values GroupNorm models are published with. Pass ``epsilon=1e-3`` to
            match Keras.
        use_scale: whether to learn ``scale`` (else 1).
        use_bias: whether to learn ``bias`` (else 0).
        scale_init: initializer of ``scale``; ones by default.
        bias_init: initializer of ``bias``; zeros by default.
        dtype: the compute dtype of the output; by default the input's floating dtype.
            Statistics are computed in float32 at least.
        param_dtype: the dtype of the params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, ..spatial.., channels)`` to ``y`` of the same
        shape, with params ``{"scale", "bias"}`` of shape ``(channels,)`` and no state.

    Raises:
        LayerError: for a non-positive ``num_groups`` or ``epsilon``, an unknown
            initializer; at ``init``, for an input without a channel axis or whose
            channels ``num_groups`` does not divide.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = GroupNorm(num_groups=2)
        >>> x = jnp.zeros((8, 5, 5, 6))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (8, 5, 5, 6)
    """
    check_positive("GroupNorm", "num_groups", num_groups)

    def check(x: Any) -> None:
        channels = x.shape[-1]
        if channels % num_groups:
            divisors = [g for g in range(1, channels + 1) if channels % g == 0]
            raise LayerError(
                "GroupNorm",
                f"num_groups={num_groups} does not divide the {channels} channels of the "
                f"input of shape {tuple(x.shape)}. Choose num_groups among {divisors}, "
                "or change the number of channels of the previous layer.",
            )

    def normalise(x: jax.Array, eps: jax.Array) -> jax.Array:
        grouped = jnp.reshape(x, (*x.shape[:-1], num_groups, x.shape[-1] // num_groups))
        axes = (*range(1, grouped.ndim - 2), grouped.ndim - 1)
        return jnp.reshape(_standardise(grouped, eps, axes), x.shape)

    return _last_axis_norm(
        "GroupNorm",
        epsilon,
        use_scale,
        use_bias,
        scale_init,
        bias_init,
        dtype,
        param_dtype,
        name,
        min_rank=2,
        layout="(batch, ..spatial.., channels)",
        normalise=normalise,
        check=check,
    )


@configured
def InstanceNorm(
    epsilon: float = 1e-5,
    *,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: str | inits.Initializer = "ones",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Instance normalisation: each channel of each example, over the spatial axes.

    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias``, with the mean and biased
    variance taken over the spatial axes of one example and one channel.

    Args:
        epsilon: added to the variance; positive.
        use_scale: whether to learn ``scale`` (else 1).
        use_bias: whether to learn ``bias`` (else 0).
        scale_init: initializer of ``scale``; ones by default.
        bias_init: initializer of ``bias``; zeros by default.
        dtype: the compute dtype of the output; by default the input's floating dtype.
            Statistics are computed in float32 at least.
        param_dtype: the dtype of the params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping channels-last ``x: (batch, ..spatial.., channels)`` (at least
        one spatial axis) to ``y`` of the same shape, with params ``{"scale", "bias"}``
        of shape ``(channels,)`` and no state.

    Raises:
        LayerError: for a non-positive ``epsilon``, an unknown initializer, an input
            without a spatial axis, or (in ``apply``) params of the wrong shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = InstanceNorm()
        >>> x = jnp.zeros((2, 16, 16, 3))
        >>> params, state = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, state, x)[0].shape
        (2, 16, 16, 3)
    """
    return _last_axis_norm(
        "InstanceNorm",
        epsilon,
        use_scale,
        use_bias,
        scale_init,
        bias_init,
        dtype,
        param_dtype,
        name,
        min_rank=3,
        layout="(batch, ..spatial.., channels)",
        normalise=lambda x, eps: _standardise(x, eps, tuple(range(1, x.ndim - 1))),
    )
