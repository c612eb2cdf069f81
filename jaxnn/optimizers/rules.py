"""Keras 3's update rules, each an optax transformation.

Every rule here returns an ``optax.GradientTransformation`` whose
``update(grads, state, params)`` gives the whole change of the params, learning rate
included, computed with Keras 3's formula in Keras's order of operations and in each
param's dtype (hyperparameters are cast to it, as Keras casts them). ``params`` must be
passed: FTRL and LAMB read them. Hyperparameters may be traced arrays, so
``optax.inject_hyperparams`` can hold them in the state.

:func:`keras_extras` adds what Keras's base optimizer does around every rule:
gradient clipping, decoupled weight decay and gradient accumulation.
:func:`jaxnn.optimizers.get` puts the two together by name.

The rules are written from Keras 3.15's ``keras/src/optimizers`` (``update_step`` of
each class; the base class for clipping, weight decay and accumulation) and checked
against it in ``tests/test_optimizers.py``, from values recorded by
``tests/data/make_keras_reference.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "accumulate",
    "ftrl",
    "keras_extras",
    "lamb",
    "lion",
    "nadam",
    "rmsprop",
    "sgd",
]

Scalar = float | jax.Array


def _casts(like: jax.Array, *values: Scalar) -> tuple[jax.Array, ...]:
    """``values`` in the dtype of ``like``, as Keras casts hyperparameters."""
    return tuple(jnp.asarray(v, like.dtype) for v in values)


def _zeros(params: Any) -> Any:
    return jax.tree.map(jnp.zeros_like, params)


def _split(out: Any, like: Any, n: int) -> tuple[Any, ...]:
    """A tree of ``n``-tuples (the result of a per-leaf map) as ``n`` trees."""
    treedef = jax.tree.structure(like)
    leaves = treedef.flatten_up_to(out)
    return tuple(treedef.unflatten([leaf[i] for leaf in leaves]) for i in range(n))


def _need(name: str, params: Any) -> Any:
    if params is None:
        raise ValueError(
            f"optimizer {name!r}: update needs the params, as Keras's rules read them; "
            "call tx.update(grads, opt_state, params)."
        )
    return params


def _step(count: jax.Array, like: jax.Array, offset: int = 1) -> jax.Array:
    """Keras's ``local_step = iterations + offset`` in the dtype of ``like``."""
    return (count + offset).astype(like.dtype)


class MomentsState(NamedTuple):
    """State of Adam, Lamb and Adamax: the step count and two moment trees."""

    count: jax.Array
    momentum: optax.Updates
    velocity: optax.Updates


class AdamState(NamedTuple):
    """Adam's state; ``velocity_hat`` is the running maximum (``None`` unless amsgrad)."""

    count: jax.Array
    momentum: optax.Updates
    velocity: optax.Updates
    velocity_hat: optax.Updates | None


class NadamState(NamedTuple):
    """Nadam's state: ``u_product`` is Keras's product of the momentum schedule."""

    count: jax.Array
    u_product: jax.Array
    momentum: optax.Updates
    velocity: optax.Updates


class SlotsState(NamedTuple):
    """State of the rules with one or two per-param slots and no step count."""

    first: optax.Updates
    second: optax.Updates | None


def adam(
    learning_rate: Scalar = 1e-3,
    beta_1: Scalar = 0.9,
    beta_2: Scalar = 0.999,
    epsilon: Scalar = 1e-7,
    amsgrad: bool = False,
) -> optax.GradientTransformation:
    """Keras's Adam: ε is added before the bias correction.

    With ``t`` the step (from 1), ``m ← m + (g - m)(1 - β₁)``,
    ``v ← v + (g² - v)(1 - β₂)``, and the update is
    ``-lr·√(1 - β₂ᵗ)/(1 - β₁ᵗ) · m / (√v + ε)`` (amsgrad: ``v`` replaced by its running
    maximum). optax's ``adam`` divides by ``√v̂ + ε`` instead, whose ε is
    ``√(1 - β₂ᵗ)`` times Keras's (31.6x smaller at step 1).

    Args:
        learning_rate: a scalar (traceable).
        beta_1: a scalar (traceable).
        beta_2: a scalar (traceable).
        epsilon: a scalar (traceable).
        amsgrad: keep the running maximum of ``v`` (static).

    Returns:
        The transformation; its state holds ``m``, ``v`` (and ``v̂``) shaped like
        the params.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = adam()
        >>> p = {"w": jnp.zeros(2)}
        >>> u, _ = tx.update({"w": jnp.array([1.0, -1.0])}, tx.init(p), p)
        >>> [round(x, 6) for x in u["w"].tolist()]  # about lr·sign(g) at step 1
        [-0.001, 0.001]
    """

    def init(params: Any) -> AdamState:
        hat = _zeros(params) if amsgrad else None
        return AdamState(jnp.zeros((), jnp.int32), _zeros(params), _zeros(params), hat)

    def update(grads: Any, state: AdamState, params: Any = None) -> tuple[Any, AdamState]:
        params = _need("adam", params)

        def leaf(g: jax.Array, p: jax.Array, m: jax.Array, v: jax.Array, vh: jax.Array) -> tuple:
            g = g.astype(p.dtype)
            lr, b1, b2, eps = _casts(p, learning_rate, beta_1, beta_2, epsilon)
            t = _step(state.count, p)
            alpha = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
            m = m + (g - m) * (1 - b1)
            v = v + (jnp.square(g) - v) * (1 - b2)
            if amsgrad:
                vh = jnp.maximum(vh, v)
            used = vh if amsgrad else v
            return -((m * alpha) / (jnp.sqrt(used) + eps)), m, v, vh

        hat = state.velocity_hat if amsgrad else state.velocity
        out = jax.tree.map(leaf, grads, params, state.momentum, state.velocity, hat)
        u, m, v, vh = _split(out, grads, 4)
        return u, AdamState(state.count + 1, m, v, vh if amsgrad else None)

    return optax.GradientTransformation(init, update)


def nadam(
    learning_rate: Scalar = 1e-3,
    beta_1: Scalar = 0.9,
    beta_2: Scalar = 0.999,
    epsilon: Scalar = 1e-7,
) -> optax.GradientTransformation:
    """Keras's Nadam, with its momentum schedule ``μₜ = β₁(1 - 0.5·0.96ᵗ)``.

    ``m`` and ``v`` as in :func:`adam`; with ``Πₜ = μ₁⋯μₜ`` the update is
    ``-lr·m̂ / (√(v/(1 - β₂ᵗ)) + ε)``, where
    ``m̂ = μₜ₊₁·m/(1 - Πₜ·μₜ₊₁) + (1 - μₜ)·g/(1 - Πₜ)``. optax's ``nadam`` has no
    schedule (updates differ by about 30%).

    Args:
        learning_rate: a scalar (traceable).
        beta_1: a scalar (traceable).
        beta_2: a scalar (traceable).
        epsilon: a scalar (traceable).

    Returns:
        The transformation; its state holds ``Πₜ``, ``m`` and ``v``.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = nadam()
        >>> p = {"w": jnp.zeros(1)}
        >>> u, s = tx.update({"w": jnp.ones(1)}, tx.init(p), p)
        >>> round(float(s.u_product), 6)  # μ₁ = 0.9·(1 - 0.5·0.96)
        0.468
    """

    def init(params: Any) -> NadamState:
        leaves = jax.tree.leaves(params)
        dtype = max((x.dtype for x in leaves), key=lambda d: d.itemsize, default=jnp.float32)
        one = jnp.ones((), dtype)
        return NadamState(jnp.zeros((), jnp.int32), one, _zeros(params), _zeros(params))

    def update(grads: Any, state: NadamState, params: Any = None) -> tuple[Any, NadamState]:
        params = _need("nadam", params)
        # Keras updates the product once per step, before any variable.
        u_prev = state.u_product
        (b1_u,) = _casts(u_prev, beta_1)
        decay_u = jnp.asarray(0.96, u_prev.dtype)
        u_product = u_prev * b1_u * (1.0 - 0.5 * decay_u ** _step(state.count, u_prev))

        def leaf(g: jax.Array, p: jax.Array, m: jax.Array, v: jax.Array) -> tuple:
            g = g.astype(p.dtype)
            lr, b1, b2, eps, decay = _casts(p, learning_rate, beta_1, beta_2, epsilon, 0.96)
            t, t_next = _step(state.count, p), _step(state.count, p, 2)
            u_t = b1 * (1.0 - 0.5 * decay**t)
            u_t_1 = b1 * (1.0 - 0.5 * decay**t_next)
            u_product_t = u_product.astype(p.dtype)
            u_product_t_1 = u_product_t * u_t_1
            m = m + (g - m) * (1 - b1)
            v = v + (jnp.square(g) - v) * (1 - b2)
            m_hat = (u_t_1 * m) / (1 - u_product_t_1) + ((1 - u_t) * g) / (1 - u_product_t)
            v_hat = v / (1 - b2**t)
            return -((m_hat * lr) / (jnp.sqrt(v_hat) + eps)), m, v

        out = jax.tree.map(leaf, grads, params, state.momentum, state.velocity)
        u, m, v = _split(out, grads, 3)
        return u, NadamState(state.count + 1, u_product, m, v)

    return optax.GradientTransformation(init, update)


def adamax(
    learning_rate: Scalar = 1e-3,
    beta_1: Scalar = 0.9,
    beta_2: Scalar = 0.999,
    epsilon: Scalar = 1e-7,
) -> optax.GradientTransformation:
    """Keras's Adamax: ``m ← m + (g - m)(1 - β₁)``, ``u ← max(β₂u, |g|)``, update
    ``-lr·m / ((1 - β₁ᵗ)(u + ε))``.

    Args:
        learning_rate: a scalar (traceable).
        beta_1: a scalar (traceable).
        beta_2: a scalar (traceable).
        epsilon: a scalar (traceable).

    Returns:
        The transformation; its state holds ``m`` (``momentum``) and ``u``
        (``velocity``).

    Example:
        >>> import jax.numpy as jnp
        >>> tx = adamax()
        >>> p = {"w": jnp.zeros(1)}
        >>> round(float(tx.update({"w": jnp.ones(1)}, tx.init(p), p)[0]["w"][0]), 6)
        -0.001
    """

    def init(params: Any) -> MomentsState:
        return MomentsState(jnp.zeros((), jnp.int32), _zeros(params), _zeros(params))

    def update(grads: Any, state: MomentsState, params: Any = None) -> tuple[Any, MomentsState]:
        params = _need("adamax", params)

        def leaf(g: jax.Array, p: jax.Array, m: jax.Array, u: jax.Array) -> tuple:
            g = g.astype(p.dtype)
            lr, b1, b2, eps = _casts(p, learning_rate, beta_1, beta_2, epsilon)
            b1_power = b1 ** _step(state.count, p)
            m = m + (g - m) * (1 - b1)
            u = jnp.maximum(b2 * u, jnp.abs(g))
            return -((lr * m) / ((1 - b1_power) * (u + eps))), m, u

        out = jax.tree.map(leaf, grads, params, state.momentum, state.velocity)
        u, m, v = _split(out, grads, 3)
        return u, MomentsState(state.count + 1, m, v)

    return optax.GradientTransformation(init, update)


def lamb(
    learning_rate: Scalar = 1e-3,
    beta_1: Scalar = 0.9,
    beta_2: Scalar = 0.999,
    epsilon: Scalar = 1e-7,
) -> optax.GradientTransformation:
    """Keras's LAMB: Adam's direction ``r = m̂/(√v̂ + ε)`` scaled per param array by
    the trust ratio ``‖w‖/‖r‖`` (1 when either norm is 0); update ``-ratio·lr·r``.

    Args:
        learning_rate: a scalar (traceable).
        beta_1: a scalar (traceable).
        beta_2: a scalar (traceable).
        epsilon: a scalar (traceable).

    Returns:
        The transformation; its state holds ``m`` and ``v``.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = lamb()
        >>> p = {"w": jnp.array([3.0, 4.0])}
        >>> u, _ = tx.update({"w": jnp.array([1.0, 1.0])}, tx.init(p), p)
        >>> [round(x, 4) for x in u["w"].tolist()]  # ‖w‖ = 5, ‖r‖ ≈ √2
        [-0.0035, -0.0035]
    """

    def init(params: Any) -> MomentsState:
        return MomentsState(jnp.zeros((), jnp.int32), _zeros(params), _zeros(params))

    def update(grads: Any, state: MomentsState, params: Any = None) -> tuple[Any, MomentsState]:
        params = _need("lamb", params)

        def leaf(g: jax.Array, p: jax.Array, m: jax.Array, v: jax.Array) -> tuple:
            g = g.astype(p.dtype)
            lr, b1, b2, eps = _casts(p, learning_rate, beta_1, beta_2, epsilon)
            t = _step(state.count, p)
            m = m + (g - m) * (1 - b1)
            v = v + (jnp.square(g) - v) * (1 - b2)
            r = (m / (1.0 - b1**t)) / (jnp.sqrt(v / (1.0 - b2**t)) + eps)
            w_norm = jnp.sqrt(jnp.sum(p**2))
            r_norm = jnp.sqrt(jnp.sum(r**2))
            one = jnp.ones((), p.dtype)
            safe = jnp.where(r_norm > 0, r_norm, one)
            ratio = jnp.where(w_norm > 0, jnp.where(r_norm > 0, w_norm / safe, one), one)
            return -(ratio * lr * r), m, v

        out = jax.tree.map(leaf, grads, params, state.momentum, state.velocity)
        u, m, v = _split(out, grads, 3)
        return u, MomentsState(state.count + 1, m, v)

    return optax.GradientTransformation(init, update)


def lion(
    learning_rate: Scalar = 1e-3, beta_1: Scalar = 0.9, beta_2: Scalar = 0.99
) -> optax.GradientTransformation:
    """Keras's Lion: update ``-lr·sign(β₁m + (1 - β₁)g)``, then
    ``m ← β₂m + (1 - β₂)g``. Keras's default learning rate is 1e-3 (optax's 1e-4).

    Args:
        learning_rate: a scalar (traceable).
        beta_1: a scalar (traceable).
        beta_2: a scalar (traceable).

    Returns:
        The transformation; its state holds ``m`` (``first``).

    Example:
        >>> import jax.numpy as jnp
        >>> tx = lion()
        >>> p = {"w": jnp.zeros(2)}
        >>> tx.update({"w": jnp.array([2.0, -1e-6])}, tx.init(p), p)[0]["w"].tolist()
        [-0.0010000000474974513, 0.0010000000474974513]
    """

    def init(params: Any) -> SlotsState:
        return SlotsState(_zeros(params), None)

    def update(grads: Any, state: SlotsState, params: Any = None) -> tuple[Any, SlotsState]:
        params = _need("lion", params)

        def leaf(g: jax.Array, p: jax.Array, m: jax.Array) -> tuple:
            g = g.astype(p.dtype)
            lr, b1, b2 = _casts(p, learning_rate, beta_1, beta_2)
            u = -(lr * jnp.sign(m * b1 + g * (1.0 - b1)))
            return u, m * b2 + g * (1.0 - b2)

        u, m = _split(jax.tree.map(leaf, grads, params, state.first), grads, 2)
        return u, SlotsState(m, None)

    return optax.GradientTransformation(init, update)


def sgd(
    learning_rate: Scalar = 1e-2, momentum: Scalar = 0.0, nesterov: bool = False
) -> optax.GradientTransformation:
    """Keras's SGD: ``b ← μb - lr·g`` and update ``b`` (nesterov: ``μb - lr·g``).

    With ``μ = 0`` this is exactly ``-lr·g``. The buffer is kept even then (Keras
    drops it), so that ``momentum`` can be traced and swept.

    Args:
        learning_rate: a scalar (traceable).
        momentum: a scalar (traceable).
        nesterov: Nesterov momentum (static).

    Returns:
        The transformation; its state holds the velocity ``b`` (``first``).

    Example:
        >>> import jax.numpy as jnp
        >>> tx = sgd(0.1)
        >>> p = {"w": jnp.zeros(1)}
        >>> tx.update({"w": jnp.ones(1)}, tx.init(p), p)[0]["w"].tolist()
        [-0.10000000149011612]
    """

    def init(params: Any) -> SlotsState:
        return SlotsState(_zeros(params), None)

    def update(grads: Any, state: SlotsState, params: Any = None) -> tuple[Any, SlotsState]:
        params = _need("sgd", params)

        def leaf(g: jax.Array, p: jax.Array, b: jax.Array) -> tuple:
            g = g.astype(p.dtype)
            lr, mu = _casts(p, learning_rate, momentum)
            b = b * mu - g * lr
            return (b * mu - g * lr if nesterov else b), b

        u, b = _split(jax.tree.map(leaf, grads, params, state.first), grads, 2)
        return u, SlotsState(b, None)

    return optax.GradientTransformation(init, update)


class RMSpropState(NamedTuple):
    """RMSprop's state: ``v``, the momentum buffer, and the mean gradient (centered)."""

    velocity: optax.Updates
    momentum: optax.Updates
    average_gradient: optax.Updates | None


def rmsprop(
    learning_rate: Scalar = 1e-3,
    rho: Scalar = 0.9,
    momentum: Scalar = 0.0,
    epsilon: Scalar = 1e-7,
    centered: bool = False,
) -> optax.GradientTransformation:
    """Keras's RMSprop: ``v ← rho·v + (1 - rho)g²``, ``Δ = lr·g/√(v + ε)`` (ε inside the
    root; centered: ``√(v - ḡ² + ε)``), ``b ← μb + Δ`` and update ``-b``.

    optax's ``rmsprop`` puts ε outside the root. The momentum buffer is kept even for
    ``μ = 0`` (then the update is exactly ``-Δ``), so ``momentum`` can be swept.

    Args:
        learning_rate: a scalar (traceable).
        rho: a scalar (traceable).
        momentum: a scalar (traceable).
        epsilon: a scalar (traceable).
        centered: subtract the running mean gradient's square (static).

    Returns:
        The transformation.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = rmsprop()
        >>> p = {"w": jnp.zeros(1)}
        >>> round(float(tx.update({"w": jnp.ones(1)}, tx.init(p), p)[0]["w"][0]), 6)
        -0.003162
    """

    def init(params: Any) -> RMSpropState:
        mean = _zeros(params) if centered else None
        return RMSpropState(_zeros(params), _zeros(params), mean)

    def update(grads: Any, state: RMSpropState, params: Any = None) -> tuple[Any, RMSpropState]:
        params = _need("rmsprop", params)

        def leaf(g: jax.Array, p: jax.Array, v: jax.Array, b: jax.Array, a: jax.Array) -> tuple:
            g = g.astype(p.dtype)
            lr, r, mu, eps = _casts(p, learning_rate, rho, momentum, epsilon)
            v = r * v + (1 - r) * jnp.square(g)
            if centered:
                a = r * a + (1 - r) * g
                denominator = v - jnp.square(a) + eps
            else:
                denominator = v + eps
            b = mu * b + (lr * g) / jnp.sqrt(denominator)
            return -b, v, b, a

        mean = state.average_gradient if centered else state.velocity
        out = jax.tree.map(leaf, grads, params, state.velocity, state.momentum, mean)
        u, v, b, a = _split(out, grads, 4)
        return u, RMSpropState(v, b, a if centered else None)

    return optax.GradientTransformation(init, update)


def adagrad(
    learning_rate: Scalar = 1e-3,
    initial_accumulator_value: Scalar = 0.1,
    epsilon: Scalar = 1e-7,
) -> optax.GradientTransformation:
    """Keras's Adagrad: ``s ← s + g²`` (from ``initial_accumulator_value``), update
    ``-lr·g/√(s + ε)`` (ε inside the root).

    Args:
        learning_rate: a scalar (traceable).
        initial_accumulator_value: a scalar (traceable).
        epsilon: a scalar (traceable).

    Returns:
        The transformation; its state holds ``s`` (``first``).

    Example:
        >>> import jax.numpy as jnp
        >>> tx = adagrad()
        >>> p = {"w": jnp.zeros(1)}
        >>> round(float(tx.update({"w": jnp.ones(1)}, tx.init(p), p)[0]["w"][0]), 6)
        -0.000953
    """

    def init(params: Any) -> SlotsState:
        start = jax.tree.map(
            lambda p: jnp.full_like(p, jnp.asarray(initial_accumulator_value, p.dtype)), params
        )
        return SlotsState(start, None)

    def update(grads: Any, state: SlotsState, params: Any = None) -> tuple[Any, SlotsState]:
        params = _need("adagrad", params)

        def leaf(g: jax.Array, p: jax.Array, s: jax.Array) -> tuple:
            g = g.astype(p.dtype)
            lr, eps = _casts(p, learning_rate, epsilon)
            s = s + jnp.square(g)
            return -((lr * g) / jnp.sqrt(s + eps)), s

        u, s = _split(jax.tree.map(leaf, grads, params, state.first), grads, 2)
        return u, SlotsState(s, None)

    return optax.GradientTransformation(init, update)


def adadelta(
    learning_rate: Scalar = 1e-3, rho: Scalar = 0.95, epsilon: Scalar = 1e-7
) -> optax.GradientTransformation:
    """Keras's Adadelta: ``a ← rho·a + (1 - rho)g²``, ``δ = -√(d + ε)·g/√(a + ε)``,
    ``d ← rho·d + (1 - rho)δ²``, update ``lr·δ``. Keras's default learning rate is 1e-3
    (the paper's is 1).

    Args:
        learning_rate: a scalar (traceable).
        rho: a scalar (traceable).
        epsilon: a scalar (traceable).

    Returns:
        The transformation; its state holds ``a`` (``first``) and ``d``
        (``second``).

    Example:
        >>> import jax.numpy as jnp
        >>> tx = adadelta()
        >>> p = {"w": jnp.zeros(1)}
        >>> float(tx.update({"w": jnp.ones(1)}, tx.init(p), p)[0]["w"][0]) < 0
        True
    """

    def init(params: Any) -> SlotsState:
        return SlotsState(_zeros(params), _zeros(params))

    def update(grads: Any, state: SlotsState, params: Any = None) -> tuple[Any, SlotsState]:
        params = _need("adadelta", params)

        def leaf(g: jax.Array, p: jax.Array, a: jax.Array, d: jax.Array) -> tuple:
            g = g.astype(p.dtype)
            lr, r, eps = _casts(p, learning_rate, rho, epsilon)
            a = r * a + (1 - r) * jnp.square(g)
            delta = -((jnp.sqrt(d + eps) * g) / jnp.sqrt(a + eps))
            d = r * d + (1 - r) * jnp.square(delta)
            return lr * delta, a, d

        out = jax.tree.map(leaf, grads, params, state.first, state.second)
        u, a, d = _split(out, grads, 3)
        return u, SlotsState(a, d)

    return optax.GradientTransformation(init, update)


def ftrl(
    learning_rate: Scalar = 1e-3,
    learning_rate_power: Scalar = -0.5,
    initial_accumulator_value: Scalar = 0.1,
    l1_regularization_strength: Scalar = 0.0,
    l2_regularization_strength: Scalar = 0.0,
    l2_shrinkage_regularization_strength: Scalar = 0.0,
    beta: Scalar = 0.0,
) -> optax.GradientTransformation:
    """Keras's FTRL-proximal: with ``n`` the accumulated ``g²`` and ``c = -power``,
    ``z ← z + g + 2λ₂ₛw - (nₜᶜ - nₜ₋₁ᶜ)/lr·w`` and the new params
    ``(clip(z, -λ₁, λ₁) - z)/(nₜᶜ/lr + 2(λ₂ + β/(2lr)))``.

    Args:
        learning_rate: a scalar (traceable).
        learning_rate_power: a scalar (traceable).
        initial_accumulator_value: a scalar (traceable).
        l1_regularization_strength: a scalar (traceable).
        l2_regularization_strength: a scalar (traceable).
        l2_shrinkage_regularization_strength: a scalar (traceable).
        beta: a scalar (traceable).

    Returns:
        The transformation; its state holds ``n`` (``first``) and ``z``
        (``second``). Its update is the new params minus the old.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = ftrl()
        >>> p = {"w": jnp.zeros(1)}
        >>> round(float(tx.update({"w": jnp.ones(1)}, tx.init(p), p)[0]["w"][0]), 6)
        -0.000953
    """

    def init(params: Any) -> SlotsState:
        start = jax.tree.map(
            lambda p: jnp.full_like(p, jnp.asarray(initial_accumulator_value, p.dtype)), params
        )
        return SlotsState(start, _zeros(params))

    def update(grads: Any, state: SlotsState, params: Any = None) -> tuple[Any, SlotsState]:
        params = _need("ftrl", params)

        def leaf(g: jax.Array, p: jax.Array, n: jax.Array, z: jax.Array) -> tuple:
            g = g.astype(p.dtype)
            lr, power, l1, l2, l2_shrink, b = _casts(
                p,
                learning_rate,
                learning_rate_power,
                l1_regularization_strength,
                l2_regularization_strength,
                l2_shrinkage_regularization_strength,
                beta,
            )
            l2_reg = l2 + b / (2.0 * lr)
            grad_to_use = g + (2 * l2_shrink) * p
            new_n = n + jnp.square(g)
            z = z + (grad_to_use - ((new_n**-power - n**-power) / lr) * p)
            quadratic = new_n**-power / lr + 2 * l2_reg
            new_p = (jnp.clip(z, -l1, l1) - z) / quadratic
            return new_p - p, new_n, z

        out = jax.tree.map(leaf, grads, params, state.first, state.second)
        u, n, z = _split(out, grads, 3)
        return u, SlotsState(n, z)

    return optax.GradientTransformation(init, update)


def _clip(
    grads: Any, clipnorm: Scalar | None, clipvalue: Scalar | None, global_clipnorm: Scalar | None
) -> Any:
    """Keras's ``_clip_gradients``: by each array's norm, the global norm, or value."""
    if clipnorm is not None:

        def by_norm(g: jax.Array) -> jax.Array:
            (c,) = _casts(g, clipnorm)
            l2sum = jnp.sum(jnp.square(g), keepdims=True)
            positive = l2sum > 0
            l2norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, l2sum, 1)), l2sum)
            return (g * c) / jnp.maximum(l2norm, c)

        return jax.tree.map(by_norm, grads)
    if global_clipnorm is not None:
        leaves = jax.tree.leaves(grads)
        if not leaves:
            return grads
        norm = jnp.sqrt(jnp.sum(jnp.stack([jnp.sum(jnp.square(g)) for g in leaves])))
        (c,) = _casts(norm, global_clipnorm)
        scale = c * jnp.minimum(1.0 / norm, 1.0 / c) + (norm - norm)
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)
    if clipvalue is not None:
        return jax.tree.map(lambda g: jnp.clip(g, *_casts(g, -clipvalue, clipvalue)), grads)
    return grads


def keras_extras(
    rule: optax.GradientTransformation,
    learning_rate: Scalar,
    *,
    weight_decay: Scalar | None = None,
    clipnorm: Scalar | None = None,
    clipvalue: Scalar | None = None,
    global_clipnorm: Scalar | None = None,
    gradient_accumulation_steps: int | None = None,
) -> optax.GradientTransformation:
    """What Keras's base optimizer does around every rule.

    In Keras's order: with ``gradient_accumulation_steps = k``, only every ``k``-th
    call updates, with the mean of the last ``k`` gradients (the others return zero
    updates and leave the rule's state alone: :func:`accumulate`); the gradients are
    clipped (``clipnorm``: each array to that norm; else ``global_clipnorm``: all
    together; else ``clipvalue``: each value); weight decay ``w ← w - w·wd·lr`` is
    applied to every param before the rule, which sees the decayed params.

    Args:
        rule: one of this module's rules (its update includes the learning rate).
        learning_rate: the rule's learning rate (weight decay is scaled by it).
        weight_decay: ``None`` for none, else a scalar (traceable).
        clipnorm: ``None`` or a scalar (traceable); at most one of clipnorm, clipvalue
            and global_clipnorm may be given, as in Keras.
        clipvalue: ``None`` or a scalar (traceable); at most one of clipnorm, clipvalue
            and global_clipnorm may be given, as in Keras.
        global_clipnorm: ``None`` or a scalar (traceable); at most one of clipnorm, clipvalue
            and global_clipnorm may be given, as in Keras.
        gradient_accumulation_steps: ``None`` or an int ``>= 2`` (static).

    Returns:
        The transformation.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = keras_extras(sgd(1.0), 1.0, clipvalue=0.5, gradient_accumulation_steps=2)
        >>> p = {"w": jnp.zeros(1)}
        >>> s = tx.init(p)
        >>> u1, s = tx.update({"w": jnp.ones(1)}, s, p)
        >>> u2, s = tx.update({"w": jnp.ones(1)}, s, p)
        >>> u1["w"].tolist(), u2["w"].tolist()  # nothing, then -clip(mean g)
        ([0.0], [-0.5])
    """

    def update(grads: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        params = _need("keras", params)
        grads = _clip(grads, clipnorm, clipvalue, global_clipnorm)
        if weight_decay is None:
            return rule.update(grads, state, params)

        def decay(p: jax.Array) -> jax.Array:
            wd, lr = _casts(p, weight_decay, learning_rate)
            return p - p * wd * lr

        decayed = jax.tree.map(decay, params)
        updates, state = rule.update(grads, state, decayed)
        return jax.tree.map(lambda p, d, u: (d - p) + u, params, decayed, updates), state

    tx = optax.GradientTransformation(rule.init, update)
    if gradient_accumulation_steps is None:
        return tx
    return accumulate(tx, gradient_accumulation_steps)


class AccumulateState(NamedTuple):
    """State of :func:`accumulate`: calls so far, the gradient sum, the inner state."""

    mini_step: jax.Array
    accumulated: optax.Updates
    inner: Any


def accumulate(inner: optax.GradientTransformation, steps: int) -> optax.GradientTransformation:
    """Keras's gradient accumulation: every ``steps``-th call updates with the mean.

    Calls that do not update return zero updates and keep the inner state (Keras
    leaves the params and the optimizer's variables unchanged); the update uses
    ``(g + Σ earlier g) / steps``, summed in the params' dtype, as Keras does.
    (``optax.MultiSteps`` keeps a running mean in float32 whatever the params'
    dtype, which differs from Keras by about 1e-6 relative in float64.)

    Args:
        inner: the transformation to update with the mean gradient.
        steps: the number of calls per update, an int ``>= 1`` (static).

    Returns:
        The transformation.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = accumulate(sgd(1.0), 2)
        >>> p = {"w": jnp.zeros(1)}
        >>> s = tx.init(p)
        >>> u1, s = tx.update({"w": jnp.array([1.0])}, s, p)
        >>> u2, s = tx.update({"w": jnp.array([3.0])}, s, p)
        >>> u1["w"].tolist(), u2["w"].tolist()
        ([0.0], [-2.0])
    """

    def init(params: Any) -> AccumulateState:
        return AccumulateState(jnp.zeros((), jnp.int32), _zeros(params), inner.init(params))

    def update(grads: Any, state: AccumulateState, params: Any = None) -> tuple[Any, Any]:
        summed = jax.tree.map(lambda g, a: g.astype(a.dtype) + a, grads, state.accumulated)
        mean = jax.tree.map(lambda a: a / jnp.asarray(steps, a.dtype), summed)
        shapes = jax.eval_shape(inner.update, mean, state.inner, params)[0]

        def apply() -> tuple[Any, Any, Any]:
            updates, inner_state = inner.update(mean, state.inner, params)
            return updates, inner_state, _zeros(summed)

        def hold() -> tuple[Any, Any, Any]:
            zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
            return zeros, state.inner, summed

        is_update = (state.mini_step + 1) % steps == 0
        updates, inner_state, summed = jax.lax.cond(is_update, apply, hold)
        return updates, AccumulateState(state.mini_step + 1, summed, inner_state)

    return optax.GradientTransformation(init, update)


RULES: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adadelta": adadelta,
    "adagrad": adagrad,
    "adam": adam,
    "adamax": adamax,
    "ftrl": ftrl,
    "lamb": lamb,
    "lion": lion,
    "nadam": nadam,
    "rmsprop": rmsprop,
    "sgd": sgd,
}
"""Each rule by its Keras name (``adamw`` is ``adam`` with weight decay)."""
