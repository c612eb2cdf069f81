"""Dense (fully connected) layers: ``y = activation(x @ kernel + bias)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from jaxnn import activations
from jaxnn import initializers as inits
from jaxnn._types import DTypeLike, Params, PRNGKey, Spec, State
from jaxnn.core import Layer, LayerError, check_entries, configured
from jaxnn.layers._common import (
    along_last,
    check_min_rank,
    check_positive,
    compute_dtype,
    param,
    resolve,
)

__all__ = ["Dense"]


@configured
def Dense(
    features: int,
    activation: str | Callable | None = None,
    *,
    use_bias: bool = True,
    kernel_init: str | inits.Initializer = "glorot_uniform",
    bias_init: str | inits.Initializer = "zeros",
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A fully connected layer: ``y = activation(x @ kernel + bias)`` over the last axis.

    Args:
        features: the number of outputs.
        activation: a function, an activation name (``"relu"``, ``"sigmoid"``, ...) or
            ``None`` for linear.
        use_bias: whether to add a bias.
        kernel_init: initializer of ``kernel``, shape ``(in_features, features)``;
            Glorot uniform by default, as in Keras.
        bias_init: initializer of ``bias``, shape ``(features,)``; zeros by default.
        dtype: the compute dtype; by default the input's floating dtype.
        param_dtype: the dtype of the stored params.
        name: the name of this layer inside a parent.

    Returns:
        A layer mapping ``x: (batch, ..., in_features)`` to
        ``y: (batch, ..., features)``, with params ``{"kernel", "bias"}``.

    Raises:
        LayerError: for a non-positive ``features``, an unknown activation or
            initializer, an input without a feature axis, or (in ``apply``) an input
            whose feature count differs from the kernel's.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Dense(32, activation="relu")
        >>> params, state = layer.init(jax.random.key(0), jnp.zeros((10, 4)))
        >>> params["kernel"].shape, params["bias"].shape
        ((4, 32), (32,))
        >>> layer.apply(params, state, jnp.ones((10, 4)))[0].shape
        (10, 32)
    """
    check_positive("Dense", "features", features)
    act = resolve("Dense", activations.get, activation)
    kernel_fn = resolve("Dense", inits.get, kernel_init)
    bias_fn = resolve("Dense", inits.get, bias_init)
    names = ("kernel", "bias") if use_bias else ("kernel",)

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        check_min_rank("Dense", x, 2, "(batch, ..., in_features)")
        in_features = x.shape[-1]
        params = {"kernel": param(key, "kernel", kernel_fn, (in_features, features), param_dtype)}
        if use_bias:
            params["bias"] = param(key, "bias", bias_fn, (features,), param_dtype)
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
        check_entries("Dense", "params", params, names, names)
        check_min_rank("Dense", x, 2, "(batch, ..., in_features)")
        kernel = params["kernel"]
        if kernel.ndim != 2 or kernel.shape[-1] != features:
            raise LayerError(
                "Dense",
                f"kernel has shape {tuple(kernel.shape)}, but this layer has {features} "
                f"features, so it expects (in_features, {features}). Pass the params "
                "returned by this model's own init.",
            )
        if x.shape[-1] != kernel.shape[0]:
            raise LayerError(
                "Dense",
                f"input has {x.shape[-1]} features, but the kernel was initialised for "
                f"{kernel.shape[0]}. Initialise with an input of shape (batch, "
                f"{x.shape[-1]}), or fix the previous layer.",
            )
        cdt = compute_dtype(x, dtype, param_dtype)
        y = jnp.matmul(x.astype(cdt), kernel.astype(cdt))
        if use_bias:
            y = y + along_last(params["bias"].astype(cdt), y.ndim)
        return act(y), state

    return Layer(init, apply, "Dense", name)
