"""The non-finite guard: what a compiled step records when a loss or gradient is NaN/Inf.

Every guarded step checks its loss, its gradients and the state its update would
make (params, optimizer state, model state) inside the program. A :class:`Guard`
carries, through ``lax.scan``, whether training is halted, how many steps were
skipped, and the facts of the first bad step, which the host turns into a
:class:`NonFiniteError` with :func:`nonfinite_error`.

The library's words for what to do on a non-finite loss, gradient or state
(``on_nonfinite``): ``"raise"`` an error holding the last finite state; ``"skip"`` the
bad update and go on; ``"stop"`` at the last finite state without an error (a
population member); ``"ignore"``: do not check.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._types import Params

__all__ = [
    "Guard",
    "NonFiniteError",
    "finite_leaves",
    "leaf_paths",
    "new_guard",
    "nonfinite_error",
    "state_finite",
]


class NonFiniteError(FloatingPointError):
    """Training met a NaN or Inf loss or gradient, under ``on_nonfinite="raise"``.

    The update that would have used it was not applied, nor any after it, so
    ``error.state`` is the last finite state, from just before the bad step: fix the
    cause (learning rate, data, loss) and continue from it.

    Attributes:
        state: the last finite :class:`~jaxnn.TrainState`; ``state.step == error.step``.
        epoch: the 0-based index of the epoch in which it happened.
        batch: the 0-based index of the batch within that epoch.
        step: the update count (``TrainState.step``) of the bad step.
        path: the first parameter path whose gradient was non-finite (such as
            ``"dense_1/kernel"``), or ``None`` if every gradient was finite (then the
            loss was not).
        history: the :class:`~jaxnn.History` of the epochs completed before it.
    """

    def __init__(
        self,
        message: str,
        *,
        state: Any,
        epoch: int,
        batch: int,
        step: int,
        path: str | None,
        history: Any,
    ):
        super().__init__(message)
        self.state = state
        self.epoch = epoch
        self.batch = batch
        self.step = step
        self.path = path
        self.history = history


class Guard(NamedTuple):
    """What the finite guard carries through the compiled steps.

    Attributes:
        halted: bool; under ``"raise"``, a bad step was met and updates are frozen.
        skipped: int32; steps not applied in this epoch.
        bad_step: int32; the update count of the first bad step, or -1.
        bad_batch: int32; its batch index within its epoch, or -1.
        bad_grads: bool ``(leaves,)``; which gradient leaves were non-finite there.
        bad_loss: float32; the batch's loss there.
        bad_update: bool ``(leaves,)``; which params the update would have made
            non-finite there (from finite gradients: an overflowing learning rate, an
            optimizer dividing by zero).
        bad_state: bool; the update would have made the optimizer or model state
            non-finite there.
    """

    halted: jax.Array
    skipped: jax.Array
    bad_step: jax.Array
    bad_batch: jax.Array
    bad_grads: jax.Array
    bad_loss: jax.Array
    bad_update: jax.Array
    bad_state: jax.Array


def new_guard(params: Params) -> Guard:
    """A guard that has seen nothing bad, for a model with these params.

    Example:
        >>> new_guard({"w": jnp.zeros(2), "b": jnp.zeros(1)}).bad_grads.shape
        (2,)
    """
    leaves = len(jax.tree.leaves(params))
    return Guard(
        halted=jnp.zeros((), bool),
        skipped=jnp.zeros((), jnp.int32),
        bad_step=jnp.full((), -1, jnp.int32),
        bad_batch=jnp.full((), -1, jnp.int32),
        bad_grads=jnp.zeros((leaves,), bool),
        bad_loss=jnp.zeros((), jnp.float32),
        bad_update=jnp.zeros((leaves,), bool),
        bad_state=jnp.zeros((), bool),
    )


def finite_leaves(tree: Any) -> jax.Array:
    """One bool per leaf (in ``jax.tree.leaves`` order): all its values are finite.

    Example:
        >>> finite_leaves({"a": jnp.array([1.0, jnp.nan]), "b": jnp.ones(2)}).tolist()
        [False, True]
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.ones((0,), bool)
    return jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])


def state_finite(state: Any, loss: jax.Array) -> jax.Array:
    """Whether ``loss`` and a state's params, optimizer state and model state are all
    finite: a bool scalar. Checked where steps end (an epoch, a chunk), it tells
    whether any step on the way met a NaN or Inf, since one stays in the loss sum or
    the state once there (an update adds to the params; the moments average it in).

    Example:
        >>> from jaxnn.train.programs import TrainState
        >>> state = TrainState({"w": jnp.ones(2)}, {}, (), jnp.zeros((), jnp.int32), None)
        >>> bool(state_finite(state, jnp.array(0.5))), bool(state_finite(state, jnp.nan))
        (True, False)
    """
    kept = finite_leaves((state.params, state.model_state, state.opt_state))
    return jnp.isfinite(loss) & jnp.all(kept)


def leaf_paths(tree: Any) -> list[str]:
    """Readable leaf paths in ``jax.tree.leaves`` order: ``dense_1/kernel``.

    Example:
        >>> leaf_paths({"dense": {"kernel": 0, "bias": 0}})
        ['dense/bias', 'dense/kernel']
    """
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    return ["/".join(_path_part(e) for e in path) or "value" for path, _ in paths]


def _path_part(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def nonfinite_error(
    where: str, guard: Guard, state: Any, epoch: int, epochs: int, history: Any
) -> NonFiniteError:
    """The error for the first bad step that ``guard`` recorded.

    Args:
        where: the entry point, for the message.
        guard: the guard after the epoch (or program) that met the bad step.
        state: the last finite state.
        epoch: the 0-based epoch of the bad step.
        epochs: the number of epochs asked for.
        history: the logs of the epochs before.

    Returns:
        The :class:`NonFiniteError`, to raise.
    """
    guard = jax.device_get(guard)
    step, batch, loss = int(guard.bad_step), int(guard.bad_batch), float(guard.bad_loss)
    paths = leaf_paths(state.params)
    bad = [p for p, b in zip(paths, np.asarray(guard.bad_grads), strict=True) if b]
    bad_update = [p for p, b in zip(paths, np.asarray(guard.bad_update), strict=True) if b]
    if bad:
        more = f" (and {len(bad) - 1} more of the {len(paths)})" if len(bad) > 1 else ""
        what = f"the first non-finite gradient is at {bad[0]!r}{more}"
    elif not np.isfinite(loss):
        what = "the loss is non-finite (the gradients are finite)"
    elif bad_update:
        what = (
            "the loss and gradients are finite, but the update would make the params "
            f"non-finite, first at {bad_update[0]!r} (a learning rate or optimizer "
            "setting that overflows, or divides by zero)"
        )
    else:
        what = (
            "the loss and gradients are finite, but the update would make the optimizer "
            "or model state non-finite"
        )
    message = (
        f"{where}: non-finite values in epoch {epoch + 1}/{epochs} (index {epoch}), batch "
        f"{batch}, step {step}: {what}; the batch loss was {loss}. That update and any "
        f"after it were not applied: error.state is the last finite state (step {step}) "
        "and error.history the epochs before. Lower the learning rate, clip the "
        "gradients (optax.clip_by_global_norm), look for data or a loss that overflows, "
        "or pass on_nonfinite='skip' to skip such steps."
    )
    return NonFiniteError(
        message,
        state=state,
        epoch=epoch,
        batch=batch,
        step=step,
        path=bad[0] if bad else None,
        history=history,
    )
