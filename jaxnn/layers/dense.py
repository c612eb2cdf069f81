"""Dense (fully connected) layers: ``y = activation(x @ kernel + bias)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

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

# Which layers take the kernel gradient from a transposed copy of the input (see
# ``_matmul``): inputs of at most SMALL_INPUT elements (per network: under a
# population's vmap, per member) and FEW_IN_FEATURES features, into more than one
# feature. Measured (`benchmarks/population.py --only-kernel-gradient`, in
# benchmarks/README.md, "Populations"): such layers ran 1.15x to 8.8x as fast with
# the copy, vmapped or not (one first look at 0.84x, 1.19x measured again); the
# others 0.44x to 1.33x, the MLP's 784-wide input 0.63x to 0.85x.
SMALL_INPUT = 2**12
FEW_IN_FEATURES = 32


def _copies_input(x: Any, features: int) -> bool:
    """Whether ``Dense`` takes the kernel gradient of input ``x`` from its copy."""
    if not all(isinstance(d, int) for d in x.shape):  # symbolic (jax.export): plain
        return False
    return features > 1 and x.shape[-1] <= FEW_IN_FEATURES and x.size <= SMALL_INPUT


@jax.custom_jvp
def _matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``x @ kernel`` whose kernel tangent (and so, transposed, its gradient) is a
    product with ``x`` transposed in memory first.

    Reverse mode takes the kernel's gradient as ``rows.T @ cotangent`` over the
    ``rows = x.reshape(-1, in_features)``. XLA's CPU backend runs that product,
    which contracts the leading axis of both operands, up to 10x slower than the
    same product with its left operand laid out as ``(in_features, rows)``, most of
    all when it is batched (a population's ``vmap``). So the tangent rule computes
    that transposed copy once, behind an ``optimization_barrier`` (otherwise XLA
    folds the transpose back into the product's dimension numbers), and contracts
    it. Values and derivatives are those of ``x @ kernel``, in every mode (``jvp``,
    ``grad``, ``vmap``, ``jit``); only the order of the sums may differ.

    Args:
        x: ``(batch, ..., in_features)``.
        kernel: ``(in_features, features)``.

    Returns:
        ``(batch, ..., features)``.
    """
    return jnp.matmul(x, kernel)


def _matmul_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    x, kernel = primals
    dx, dkernel = tangents
    y = jnp.matmul(x, kernel)
    parts = []
    if not isinstance(dx, SymbolicZero):
        parts.append(jnp.matmul(dx, kernel))
    if not isinstance(dkernel, SymbolicZero):
        rows_t = jax.lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)
        dot = jax.lax.dot_general(rows_t, dkernel, (((0,), (0,)), ((), ())))
        parts.append(dot.reshape(y.shape))
    if not parts:  # JAX calls the rule with a tangent for at least one input
        return y, jnp.zeros_like(y)
    return y, parts[0] if len(parts) == 1 else parts[0] + parts[1]


_matmul.defjvp(_matmul_jvp, symbolic_zeros=True)


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
        x, kernel = x.astype(cdt), kernel.astype(cdt)
        y = _matmul(x, kernel) if _copies_input(x, features) else jnp.matmul(x, kernel)
        if use_bias:
            y = y + along_last(params["bias"].astype(cdt), y.ndim)
        return act(y), state

    return Layer(init, apply, "Dense", name)
