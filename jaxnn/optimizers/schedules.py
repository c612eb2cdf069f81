"""Learning-rate schedules whose own parameters are traced hyperparameters.

An optax schedule such as ``optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1000)``
is a Python function of the step with its peak, warmup and decay lengths baked in as
constants: changing one compiles the training program again, and a population cannot
give each member its own. A :class:`TracedSchedule` keeps those parameters in the
optimizer state instead, as arrays, next to the step it counts:

* it is an ``optax`` stateful schedule (``init``, ``update``, ``__call__`` of a
  state), so ``optax.inject_hyperparams`` takes it wherever it takes a schedule:
  ``jaxnn.optimizers.get("adam", learning_rate=warmup_cosine(...))``, or an
  ``optax.inject_hyperparams(optax.sgd)(learning_rate=warmup_cosine(...))`` inside an
  ``optax.chain``;
* its parameters (``peak_value``, ``warmup_steps``, ...) are found and set by
  :func:`jaxnn.optimizers.hyperparams`, :func:`jaxnn.optimizers.replace_hyperparams`
  and :func:`jaxnn.population.set_hyperparams` like any traced hyperparameter, so each
  member of a population follows its own schedule in one compiled program.

Step lengths are held as floats (so that they can be traced and swept); an integer
length gives the same values as optax's integer schedule (checked in
``tests/test_hyperparams.py``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["ScheduleState", "TracedSchedule", "traced_schedule", "warmup_cosine"]


class ScheduleState(NamedTuple):
    """A traced schedule's state: the step it is at and its parameters.

    The field is named ``hyperparams``, as in optax's ``inject_hyperparams`` states,
    so that :func:`jaxnn.optimizers.hyperparams` finds the parameters anywhere.

    Attributes:
        count: the number of updates so far, an ``int32`` scalar.
        hyperparams: parameter name to a float scalar (``(members,)`` in a
            population).
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class TracedSchedule:
    """A schedule ``fn(step, **hyperparams)`` whose hyperparameters live in its state.

    Build one with :func:`warmup_cosine` or :func:`traced_schedule`. It follows optax's
    ``StatefulSchedule`` protocol: ``init()`` gives a :class:`ScheduleState` at step
    0, ``state_value = schedule(state)`` the value at the state's step, and
    ``update(state)`` the state one step later. ``optax.inject_hyperparams`` calls
    the three for a hyperparameter given as a schedule.

    Attributes:
        name: the schedule's name, for messages.
        fn: ``fn(step, **hyperparams) -> value``, with ``step`` a float scalar and the
            hyperparameters float scalars; must be traceable.
        defaults: the hyperparameters' starting values (a read-only mapping).
    """

    name: str
    fn: Callable[..., jax.Array]
    defaults: Mapping[str, float]

    def _key(self) -> tuple:
        return (self.name, self.fn, tuple(sorted(self.defaults.items())))

    def __eq__(self, other: object) -> bool:  # equal schedules share compiled programs
        if not isinstance(other, TracedSchedule):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def init(self) -> ScheduleState:
        """The state at step 0, the hyperparameters as float arrays."""
        dtype = jnp.result_type(float)  # float32, or float64 in 64-bit mode
        values = {k: jnp.asarray(v, dtype) for k, v in self.defaults.items()}
        return ScheduleState(jnp.zeros((), jnp.int32), values)

    def update(self, state: ScheduleState, **extra_args: Any) -> ScheduleState:
        """The state one step later (the hyperparameters are kept)."""
        del extra_args
        return state._replace(count=optax.safe_increment(state.count))

    def __call__(self, state: ScheduleState, **extra_args: Any) -> jax.Array:
        """The schedule's value at ``state.count``, from ``state.hyperparams``."""
        del extra_args
        hyper = dict(state.hyperparams)
        dtype = jnp.result_type(*hyper.values()) if hyper else jnp.result_type(float)
        return self.fn(state.count.astype(dtype), **hyper)

    def value(self, step: Any, **hyperparams: Any) -> jax.Array:
        """The value at ``step``, with ``hyperparams`` replacing the defaults.

        Example:
            >>> s = warmup_cosine(peak_value=1.0, warmup_steps=10, decay_steps=20)
            >>> float(s.value(5)), float(s.value(5, warmup_steps=5))
            (0.5, 1.0)
        """
        unknown = sorted(set(hyperparams) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"schedule {self.name!r} has no hyperparameter {unknown[0]!r}; its "
                f"hyperparameters are {sorted(self.defaults)}."
            )
        state = self.init()
        values = {k: jnp.asarray(v, state.hyperparams[k].dtype) for k, v in hyperparams.items()}
        count = jnp.asarray(step, jnp.int32)
        return self(ScheduleState(count, {**state.hyperparams, **values}))


def _number(where: str, name: str, value: Any) -> float:
    """``value`` as a finite float, or a ``ValueError`` that says so."""
    scalar = hasattr(value, "dtype") and jnp.ndim(value) == 0
    if (isinstance(value, bool) or not isinstance(value, (int, float))) and not scalar:
        raise ValueError(f"{where}: {name} must be a number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, got {value!r}.")
    return value


def traced_schedule(
    fn: Callable[..., Any], *, name: str | None = None, **hyperparams: float
) -> TracedSchedule:
    """Makes any schedule ``fn(step, **hyperparams)`` traced in its hyperparameters.

    Args:
        fn: ``fn(step, **hyperparams) -> value``: ``step`` is a float scalar (the
            number of updates so far), each hyperparameter a float scalar; it must
            be traceable (``jnp`` operations, ``jnp.where`` rather than ``if``).
        name: its name in messages (default: ``fn.__name__``).
        **hyperparams: each hyperparameter's starting value, a finite number.

    Returns:
        A :class:`TracedSchedule`.

    Raises:
        ValueError: for a value that is not a finite number, or no hyperparameters.

    Example:
        >>> import jax.numpy as jnp
        >>> def exponential(step, init_value, rate):
        ...     return init_value * rate ** (step / 100.0)
        >>> s = traced_schedule(exponential, init_value=0.1, rate=0.5)
        >>> round(float(s.value(100)), 6), round(float(s.value(100, rate=0.25)), 6)
        (0.05, 0.025)
    """
    name = name or getattr(fn, "__name__", "schedule")
    where = f"schedule {name!r}"
    if not hyperparams:
        raise ValueError(
            f"{where}: give the starting value of each hyperparameter of fn, e.g. "
            "traced_schedule(fn, peak_value=1e-3); without any, pass fn itself as an "
            "optax schedule."
        )
    values = {k: _number(where, k, v) for k, v in hyperparams.items()}
    return TracedSchedule(name, fn, MappingProxyType(values))


def _warmup_cosine(
    step: jax.Array,
    *,
    init_value: jax.Array,
    peak_value: jax.Array,
    warmup_steps: jax.Array,
    decay_steps: jax.Array,
    end_value: jax.Array,
    exponent: jax.Array,
) -> jax.Array:
    """Linear warmup to the peak, then cosine decay to ``end_value`` at ``decay_steps``.

    The arithmetic is optax's ``warmup_cosine_decay_schedule`` (a linear schedule
    joined to a cosine one at ``warmup_steps``) with every parameter an array: the
    warmup is ``(init - peak)·(1 - step/warmup) + peak`` and the decay
    ``peak·((1 - alpha)·c^exponent + alpha)``, with ``alpha = end/peak`` (0 for a zero peak) and
    ``c = (1 + cos(π·s/(decay - warmup)))/2``, ``s`` the steps since the warmup.
    """
    one = jnp.ones((), step.dtype)

    def safe(d: jax.Array) -> jax.Array:  # a zero length divides nothing (its branch is unused)
        return jnp.where(d > 0, d, one)

    fraction = 1 - jnp.clip(step, 0, warmup_steps) / safe(warmup_steps)
    warm = (init_value - peak_value) * fraction + peak_value
    length = decay_steps - warmup_steps
    since = jnp.clip(step - warmup_steps, 0, jnp.maximum(length, 0))
    cosine = 0.5 * (1 + jnp.cos(jnp.pi * since / safe(length)))
    alpha = jnp.where(peak_value != 0, end_value / jnp.where(peak_value != 0, peak_value, one), 0)
    decayed = peak_value * ((1 - alpha) * cosine**exponent + alpha)
    return jnp.where(step < warmup_steps, warm, decayed)


def warmup_cosine(
    peak_value: float,
    warmup_steps: float,
    decay_steps: float,
    *,
    init_value: float = 0.0,
    end_value: float = 0.0,
    exponent: float = 1.0,
) -> TracedSchedule:
    """Linear warmup, then cosine decay: optax's ``warmup_cosine_decay_schedule``, traced.

    The value rises linearly from ``init_value`` at step 0 to ``peak_value`` at
    ``warmup_steps``, then decays as ``(1 + cos(π·s/(decay_steps - warmup_steps)))/2``
    (to the power ``exponent``) to ``end_value`` at ``decay_steps``, and stays there.
    Its values equal ``optax.warmup_cosine_decay_schedule(init_value, peak_value,
    warmup_steps, decay_steps, end_value, exponent)`` to float tolerance, but all six
    parameters are traced hyperparameters in the optimizer state: set them per
    member with :func:`jaxnn.population.set_hyperparams` (``peak_value=...``,
    ``warmup_steps=...``), with no recompilation. The step lengths are floats there,
    so a population may also sweep non-integer lengths.

    Args:
        peak_value: the value at the end of the warmup.
        warmup_steps: the length of the warmup, in updates (``>= 0``).
        decay_steps: the step at which the decay ends, counted from 0 (warmup
            included), ``> warmup_steps``.
        init_value: the value at step 0.
        end_value: the value from ``decay_steps`` on.
        exponent: the power of the cosine factor.

    Returns:
        A :class:`TracedSchedule` with hyperparameters ``init_value``,
        ``peak_value``, ``warmup_steps``, ``decay_steps``, ``end_value`` and
        ``exponent``; pass it as a ``learning_rate``.

    Raises:
        ValueError: for a value that is not a finite number, a negative
            ``warmup_steps``, or ``decay_steps <= warmup_steps``.

    Example:
        >>> import jax.numpy as jnp, jaxnn as nn
        >>> lr = warmup_cosine(peak_value=1e-3, warmup_steps=100, decay_steps=1000)
        >>> tx = nn.optimizers.get("adam", learning_rate=lr)
        >>> state = tx.init({"w": jnp.zeros(2)})
        >>> sorted(state.hyperparams_states["learning_rate"].hyperparams)
        ['decay_steps', 'end_value', 'exponent', 'init_value', 'peak_value', 'warmup_steps']
        >>> float(nn.optimizers.hyperparams(state)["warmup_steps"])  # found with the rest
        100.0
        >>> [round(float(lr.value(t)), 7) for t in (0, 50, 100, 550, 1000)]
        [0.0, 0.0005, 0.001, 0.0005, 0.0]
    """
    where = "warmup_cosine"
    values = {
        "init_value": init_value,
        "peak_value": peak_value,
        "warmup_steps": warmup_steps,
        "decay_steps": decay_steps,
        "end_value": end_value,
        "exponent": exponent,
    }
    values = {k: _number(where, k, v) for k, v in values.items()}
    if values["warmup_steps"] < 0:
        raise ValueError(f"{where}: warmup_steps must be >= 0, got {warmup_steps!r}.")
    if values["decay_steps"] <= values["warmup_steps"]:
        raise ValueError(
            f"{where}: decay_steps counts from step 0, warmup included, so it must be "
            f"greater than warmup_steps; got decay_steps={decay_steps!r} and "
            f"warmup_steps={warmup_steps!r}. For {decay_steps!r} steps of decay after "
            f"the warmup, pass decay_steps={values['warmup_steps'] + values['decay_steps']:g}."
        )
    return TracedSchedule("warmup_cosine", _warmup_cosine, MappingProxyType(values))
