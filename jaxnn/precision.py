"""Mixed precision: a dtype policy for training, and dynamic loss scaling for float16.

A :class:`Policy` names three dtypes, as Keras 3's ``dtype_policy`` and DeepMind's jmp
do: the params are *stored* in ``param_dtype``, the model *computes* in
``compute_dtype`` (floating params and inputs are cast to it before ``model.apply``),
and its outputs are cast to ``output_dtype`` before the loss and the metrics.
``Trainer(..., dtype_policy="mixed_bfloat16")`` trains with one; :func:`get` knows
the names:

=====================  ============  ==============  =============  ============
name                   params        compute         outputs        loss scale
=====================  ============  ==============  =============  ============
``"float32"``          float32       float32         float32        no
``"mixed_bfloat16"``   float32       bfloat16        float32        no
``"mixed_float16"``    float32       float16         float32        dynamic
``"bfloat16"``         bfloat16      bfloat16        float32        no
=====================  ============  ==============  =============  ============

The parts that lose too much in 16 bits run in float32 whatever the policy:
normalisation statistics (:mod:`jaxnn.layers.norm`), the softmax of attention and of
the ``"softmax"``/``"log_softmax"`` activations, pooled sums, and the losses and
metrics (:func:`jaxnn.losses.compute_dtype`). Gradients reach float32 params in
float32 (the cast's transpose casts them back).

float16 has 5 exponent bits: gradients below about 6e-8 flush to zero. **Dynamic loss
scaling** (:func:`dynamic_loss_scale`) multiplies the loss by a large scale before the
backward pass and divides the gradients by it after; a step whose gradients overflow
(Inf or NaN) is skipped and the scale halved, and after ``growth_steps`` finite steps
in a row it is doubled, as Keras's ``LossScaleOptimizer`` does (same defaults: 2**15
and 2000 steps). Its state lives in the optimizer state, so checkpoints and
``fit(..., checkpoint=...)``'s resume keep it. bfloat16 has float32's exponent range
and needs no scaling.

Why not jmp: it is the design this module follows (a three-dtype policy, a dynamic
loss scale as data), but it has had no release since 0.0.4 (January 2023), and two
of its details would cost more than the hundred lines here: its
``DynamicLossScale`` is a custom pytree whose unflatten drops ``min_loss_scale`` (a
jitted step quietly resets it to 1), and it is not an optax transformation, so its
state would need its own place in the ``TrainState``, its own checkpoint names and
its own skip logic beside the optimizer's. Here the loss scale is an optax
transformation whose state is a plain NamedTuple of named arrays
(``opt_state/scale``, ``opt_state/good_steps``) that checkpoints store by name.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn._checks import lookup

__all__ = [
    "MIN_SCALE",
    "POLICIES",
    "DynamicLossScale",
    "LossScaleState",
    "Policy",
    "cast_floating",
    "dynamic_loss_scale",
    "get",
    "loss_scale_of",
]


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Casts the floating-point leaves of ``tree`` to ``dtype``; other leaves are kept.

    Integer inputs (token ids, labels), booleans (masks) and keys pass unchanged, so a
    policy can be applied to any model input.

    Args:
        tree: a pytree of arrays (params, an input batch, model outputs).
        dtype: the floating dtype to cast to.

    Returns:
        The same tree, its floating leaves in ``dtype`` (a leaf already in it is
        returned as it is).

    Example:
        >>> tree = {"x": jnp.ones(2), "ids": jnp.arange(2)}
        >>> {k: str(v.dtype) for k, v in cast_floating(tree, jnp.bfloat16).items()}
        {'ids': 'int32', 'x': 'bfloat16'}
    """
    dtype = jnp.dtype(dtype)

    def cast(leaf: Any) -> Any:
        leaf_dtype = getattr(leaf, "dtype", None)
        if leaf_dtype is None or not jnp.issubdtype(leaf_dtype, jnp.floating):
            return leaf
        return leaf if leaf_dtype == dtype else leaf.astype(dtype)

    return jax.tree.map(cast, tree)


class Policy(NamedTuple):
    """Which dtype params are stored in, which the model computes in, and which its
    outputs are given in.

    Attributes:
        param_dtype: the dtype of the stored params (and so of their optimizer state).
        compute_dtype: the dtype floating params and inputs are cast to for
            ``model.apply``.
        output_dtype: the dtype the model's outputs are cast to, before the loss and
            the metrics and in ``predict``.

    Example:
        >>> policy = Policy(jnp.float32, jnp.bfloat16, jnp.float32)
        >>> policy.cast_to_compute(jnp.ones(2)).dtype, policy.loss_scaling
        (dtype(bfloat16), False)
    """

    param_dtype: np.dtype
    compute_dtype: np.dtype
    output_dtype: np.dtype

    @property
    def loss_scaling(self) -> bool:
        """Whether training scales the loss: float16 compute, whose small gradients
        flush to zero without it."""
        return jnp.dtype(self.compute_dtype) == jnp.float16

    def cast_to_param(self, tree: Any) -> Any:
        """The floating leaves of ``tree`` in ``param_dtype``."""
        return cast_floating(tree, self.param_dtype)

    def cast_to_compute(self, tree: Any) -> Any:
        """The floating leaves of ``tree`` in ``compute_dtype``."""
        return cast_floating(tree, self.compute_dtype)

    def cast_to_output(self, tree: Any) -> Any:
        """The floating leaves of ``tree`` in ``output_dtype``."""
        return cast_floating(tree, self.output_dtype)


_F32, _BF16, _F16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)

POLICIES: dict[str, Policy] = {
    "float32": Policy(_F32, _F32, _F32),
    "mixed_bfloat16": Policy(_F32, _BF16, _F32),
    "mixed_float16": Policy(_F32, _F16, _F32),
    "bfloat16": Policy(_BF16, _BF16, _F32),
}
"""The policies by name, as Keras 3 names them."""


def get(policy: str | Policy | None) -> Policy | None:
    """The :class:`Policy` for a name, a ``Policy``, or ``None`` (no policy).

    Args:
        policy: a name from :data:`POLICIES` (``"mixed_bfloat16"``, ...), a
            :class:`Policy`, or ``None``.

    Returns:
        The policy, or ``None``.

    Raises:
        ValueError: for an unknown name (the message suggests close names).
        TypeError: for anything else.

    Example:
        >>> get("mixed_bfloat16")
        Policy(param_dtype=dtype('float32'), compute_dtype=dtype(bfloat16), \
output_dtype=dtype('float32'))
        >>> get("mixed_bf16")
        Traceback (most recent call last):
        ...
        ValueError: unknown dtype policy 'mixed_bf16'. Did you mean 'mixed_bfloat16', ...
    """
    if policy is None or isinstance(policy, Policy):
        return policy
    if isinstance(policy, str):
        return lookup(
            "dtype policy", policy, POLICIES, "pass nn.precision.Policy(param, compute, output)"
        )
    raise TypeError(
        "dtype_policy must be a name ('float32', 'mixed_bfloat16', 'mixed_float16', "
        f"'bfloat16'), a jaxnn.precision.Policy or None, got {policy!r}. For a dtype, "
        "pass a Policy of three, e.g. nn.precision.Policy(jnp.float32, jnp.float16, "
        "jnp.float32)."
    )


# ---------------------------------------------------------------- dynamic loss scale


class LossScaleState(NamedTuple):
    """The state of :func:`dynamic_loss_scale`: the scale and the wrapped optimizer's state.

    Attributes:
        scale: the current loss scale, a float32 scalar.
        good_steps: finite steps in a row since the scale last changed, an int32
            scalar.
        inner: the wrapped optimizer's state.
    """

    scale: jax.Array
    good_steps: jax.Array
    inner: optax.OptState


class DynamicLossScale(optax.GradientTransformation):
    """The optax transformation :func:`dynamic_loss_scale` returns (a
    ``GradientTransformation``; its own type so that a trainer can tell it apart)."""

    __slots__ = ()


MIN_SCALE = 1.0
"""The loss scale never falls below this. At 1 the scaled gradients are the true
ones, so a step whose gradients still overflow there is a real failure (the
non-finite guard of ``fit`` treats it as one), not a scale to lower."""


def dynamic_loss_scale(
    optimizer: optax.GradientTransformation,
    *,
    initial_scale: float = 2.0**15,
    growth_steps: int = 2000,
    factor: float = 2.0,
) -> DynamicLossScale:
    """Wraps ``optimizer`` with a dynamic loss scale, for float16 training.

    The caller multiplies the loss by ``opt_state.scale`` before taking gradients and
    divides the gradients by it after (``Trainer`` does both under
    ``dtype_policy="mixed_float16"``). ``update`` then gets true gradients:

    - all finite: the wrapped optimizer's update; after ``growth_steps`` finite steps
      in a row the scale is multiplied by ``factor`` (if the result is finite);
    - any Inf or NaN: zero updates (the params stay as they are), the wrapped
      optimizer's state unchanged, and the scale divided by ``factor``, to
      :data:`MIN_SCALE` at least.

    Args:
        optimizer: the optax transformation to wrap.
        initial_scale: the first scale; Keras's default, 2**15. Too high a start costs
            a few skipped steps (it halves each time), too low one wastes precision.
        growth_steps: finite steps in a row before the scale grows.
        factor: what the scale is multiplied by on growth and divided by on overflow.

    Returns:
        A :class:`DynamicLossScale`, whose state is a :class:`LossScaleState`.

    Raises:
        ValueError: for a non-positive ``initial_scale``, ``growth_steps`` or a
            ``factor`` not above 1.

    Example:
        >>> tx = dynamic_loss_scale(optax.sgd(0.1), initial_scale=8.0, growth_steps=2)
        >>> params = {"w": jnp.ones(2)}
        >>> state = tx.init(params)
        >>> _, state = tx.update({"w": jnp.array([jnp.inf, 0.0])}, state, params)
        >>> float(state.scale)  # overflow: halved, the update skipped
        4.0
        >>> for _ in range(2):
        ...     _, state = tx.update({"w": jnp.ones(2)}, state, params)
        >>> float(state.scale), int(state.good_steps)  # two finite steps: doubled
        (8.0, 0)
    """
    if not (isinstance(initial_scale, (int, float)) and initial_scale >= MIN_SCALE):
        raise ValueError(
            f"dynamic_loss_scale: initial_scale must be a number >= {MIN_SCALE}, got "
            f"{initial_scale!r}. Keras's default is 2**15."
        )
    if isinstance(growth_steps, bool) or not isinstance(growth_steps, int) or growth_steps < 1:
        raise ValueError(
            f"dynamic_loss_scale: growth_steps must be a positive int, got {growth_steps!r}. "
            "Keras's default is 2000."
        )
    if not (isinstance(factor, (int, float)) and factor > 1):
        raise ValueError(
            f"dynamic_loss_scale: factor must be a number above 1, got {factor!r}. "
            "The usual one is 2."
        )

    def init(params: Any) -> LossScaleState:
        return LossScaleState(
            scale=jnp.asarray(initial_scale, jnp.float32),
            good_steps=jnp.zeros((), jnp.int32),
            inner=optimizer.init(params),
        )

    def update(
        grads: Any, state: LossScaleState, params: Any = None, **extra: Any
    ) -> tuple[Any, LossScaleState]:
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))

        def apply() -> tuple[Any, Any]:
            # optax mixes int32 counts with float hyperparameters: let it promote as
            # it expects even under JAX's strict dtype promotion.
            with jax.numpy_dtype_promotion("standard"):
                return optimizer.update(grads, state.inner, params, **extra)

        shapes = jax.eval_shape(apply)

        def skip() -> tuple[Any, Any]:
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes[0])
            return zeros, state.inner

        # ``cond``, not ``where`` on every leaf: the skipped branch's update (on
        # non-finite grads) is never computed, and a finite step pays nothing extra.
        updates, inner = jax.lax.cond(finite, apply, skip)
        scale = state.scale
        grow = finite & (state.good_steps + 1 >= growth_steps)
        grown = scale * jnp.asarray(factor, jnp.float32)
        grown = jnp.where(jnp.isfinite(grown), grown, scale)
        shrunk = jnp.maximum(scale / jnp.asarray(factor, jnp.float32), MIN_SCALE)
        new_scale = jnp.where(finite, jnp.where(grow, grown, scale), shrunk)
        good = jnp.where(finite & ~grow, state.good_steps + 1, 0).astype(jnp.int32)
        return updates, LossScaleState(new_scale, good, inner)

    return DynamicLossScale(init, update)


def loss_scale_of(where: str, opt_state: Any) -> jax.Array:
    """The current loss scale held in ``opt_state`` (a :class:`LossScaleState`).

    Raises:
        TypeError: when ``opt_state`` is not one: the optimizer was not wrapped by
            :func:`dynamic_loss_scale`.

    Example:
        >>> state = dynamic_loss_scale(optax.sgd(0.1)).init({"w": jnp.ones(2)})
        >>> float(loss_scale_of("here", state))
        32768.0
    """
    if not isinstance(opt_state, LossScaleState):
        raise TypeError(
            f"{where}: a float16 policy scales the loss, so the optimizer state must be "
            "a jaxnn.precision.LossScaleState, got "
            f"{type(opt_state).__name__}. Wrap the optimizer with "
            "nn.precision.dynamic_loss_scale(optimizer) (Trainer does this itself for "
            "dtype_policy='mixed_float16'), and make the state with its init."
        )
    return opt_state.scale
