"""Optimizers by Keras name, following Keras 3's update rules, with traced hyperparameters.

Every Keras name gives Keras 3's own rule (not optax's optimizer of the same name),
with Keras's defaults and arguments, built as an optax transformation in
:mod:`jaxnn.optimizers.rules`:

| name | rule (and where it differs from optax's optimizer of that name) |
| --- | --- |
| ``adam`` | ε added before the bias correction: ``lr·√(1-β₂ᵗ)/(1-β₁ᵗ)·m/(√v+ε)`` |
| ``adamw`` | ``adam`` with decoupled weight decay ``w ← w - w·wd·lr`` (wd 0.004) |
| ``nadam`` | Adam with Keras's momentum schedule ``μₜ = β₁(1 - 0.5·0.96ᵗ)`` |
| ``lion`` | ``-lr·sign(β₁m + (1-β₁)g)``; Keras's learning rate 1e-3 (optax 1e-4) |
| ``adamax`` | ``-lr·m/((1-β₁ᵗ)(u+ε))``, ``u = max(β₂u, abs(g))`` |
| ``adadelta`` | Zeiler's rule times ``learning_rate`` (Keras's default 1e-3) |
| ``ftrl`` | FTRL-proximal with Keras's l1, l2, shrinkage and ``beta`` |
| ``lamb`` | Adam's direction scaled by the trust ratio ``‖w‖/‖r‖`` per array |
| ``sgd`` | ``b ← μb - lr·g``, update ``b`` (or Nesterov's) |
| ``rmsprop`` | ``lr·g/√(v+ε)``, ε inside the root; momentum and centered as Keras |
| ``adagrad`` | ``lr·g/√(s+ε)``, ``s`` from 0.1, ε inside the root |

Every name also takes Keras's base-optimizer arguments: ``weight_decay``,
``clipnorm``, ``clipvalue``, ``global_clipnorm`` (at most one of the three) and
``gradient_accumulation_steps`` (see :func:`jaxnn.optimizers.rules.keras_extras`).

The whole optimizer is one ``optax.inject_hyperparams``: every numeric argument that
was given (learning rate, betas, ε, weight decay, clipping thresholds, ...) lives in
the optimizer state as an array, so changing it, or giving each member of a population
its own, never recompiles. The flags (``amsgrad``, ``nesterov``, ``centered``) and
``gradient_accumulation_steps`` change the program and are static. An optax
transformation passed instead of a name is used as it is.

:func:`hyperparams` and :func:`replace_hyperparams` find traced hyperparameters
anywhere in an optimizer state: inside ``optax.chain``, ``optax.MultiSteps`` or any
other wrapper whose state is made of tuples, named tuples, lists and dicts.

A learning rate may be a schedule whose own parameters are traced too
(:mod:`jaxnn.optimizers.schedules`): ``get("adam", learning_rate=warmup_cosine(
peak_value=1e-3, warmup_steps=100, decay_steps=1000))`` holds ``peak_value``,
``warmup_steps``, ... in the state, so each member of a population can follow its own
schedule.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from jaxnn._checks import check_options, lookup
from jaxnn.optimizers import rules, schedules
from jaxnn.optimizers.schedules import TracedSchedule, traced_schedule, warmup_cosine

__all__ = [
    "KERAS_DEFAULTS",
    "TracedSchedule",
    "get",
    "hyperparams",
    "replace_hyperparams",
    "rules",
    "schedules",
    "traced_schedule",
    "warmup_cosine",
]

_EXTRAS = {
    "weight_decay": None,
    "clipnorm": None,
    "clipvalue": None,
    "global_clipnorm": None,
    "gradient_accumulation_steps": None,
}
_CLIPS = ("clipnorm", "clipvalue", "global_clipnorm")
_FLAGS = ("amsgrad", "nesterov", "centered")
_ADAM = {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}

KERAS_DEFAULTS: dict[str, tuple[Callable[..., optax.GradientTransformation], dict[str, Any]]] = {
    "adam": (rules.adam, {**_ADAM, "amsgrad": False, **_EXTRAS}),
    "adamw": (rules.adam, {**_ADAM, "amsgrad": False, **_EXTRAS, "weight_decay": 0.004}),
    "nadam": (rules.nadam, {**_ADAM, **_EXTRAS}),
    "lion": (rules.lion, {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.99, **_EXTRAS}),
    "adamax": (rules.adamax, {**_ADAM, **_EXTRAS}),
    "adadelta": (
        rules.adadelta,
        {"learning_rate": 1e-3, "rho": 0.95, "epsilon": 1e-7, **_EXTRAS},
    ),
    "ftrl": (
        rules.ftrl,
        {
            "learning_rate": 1e-3,
            "learning_rate_power": -0.5,
            "initial_accumulator_value": 0.1,
            "l1_regularization_strength": 0.0,
            "l2_regularization_strength": 0.0,
            "l2_shrinkage_regularization_strength": 0.0,
            "beta": 0.0,
            **_EXTRAS,
        },
    ),
    "lamb": (rules.lamb, {**_ADAM, **_EXTRAS}),
    "sgd": (rules.sgd, {"learning_rate": 1e-2, "momentum": 0.0, "nesterov": False, **_EXTRAS}),
    "rmsprop": (
        rules.rmsprop,
        {
            "learning_rate": 1e-3,
            "rho": 0.9,
            "momentum": 0.0,
            "epsilon": 1e-7,
            "centered": False,
            **_EXTRAS,
        },
    ),
    "adagrad": (
        rules.adagrad,
        {"learning_rate": 1e-3, "initial_accumulator_value": 0.1, "epsilon": 1e-7, **_EXTRAS},
    ),
}
"""Each Keras name, with its rule and the Keras 3 defaults of every argument it takes.

``None`` means off (no weight decay, no clipping, no accumulation), as in Keras.
"""


def _factory(name: str, rule: Callable[..., optax.GradientTransformation], names: list[str]):
    """The rule with Keras's extras, as a function of keyword arguments only, with an
    explicit signature so that ``optax.inject_hyperparams`` sees every argument."""

    def make(**kwargs: Any) -> optax.GradientTransformation:
        extras = {k: kwargs.pop(k) for k in _EXTRAS}
        return rules.keras_extras(rule(**kwargs), kwargs["learning_rate"], **extras)

    keyword = inspect.Parameter.KEYWORD_ONLY
    make.__signature__ = inspect.Signature([inspect.Parameter(n, keyword) for n in names])
    make.__name__ = make.__qualname__ = name
    return make


def _check(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Keras's checks on the arguments, plus: numbers are finite floats (an int
    learning rate would be traced as an int), flags are bools."""
    where = f"optimizer {name!r}"
    out = dict(values)
    given = [k for k in _CLIPS if values[k] is not None]
    if len(given) > 1:
        raise ValueError(
            f"{where}: only one of clipnorm, clipvalue and global_clipnorm can be set, as in "
            f"Keras; got {', '.join(f'{k}={values[k]!r}' for k in given)}. Keep one."
        )
    steps = values["gradient_accumulation_steps"]
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2
    ):
        raise ValueError(
            f"{where}: gradient_accumulation_steps must be an int >= 2 (or None for none), "
            f"got {steps!r}."
        )
    for k, v in values.items():
        if k == "gradient_accumulation_steps" or v is None:
            continue
        if k in _FLAGS:
            if not isinstance(v, bool):
                raise ValueError(f"{where}: {k} must be True or False, got {v!r}.")
            continue
        if k == "learning_rate" and callable(v):
            continue  # an optax schedule
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number, np.ndarray)):
            if hasattr(v, "dtype") and np.ndim(v) == 0:  # a jax scalar
                continue
            raise ValueError(
                f"{where}: {k} must be a number, got {type(v).__name__} ({v!r})"
                + ("; or an optax schedule." if k == "learning_rate" else ".")
            )
        if np.ndim(v) != 0 or not math.isfinite(float(v)):
            raise ValueError(f"{where}: {k} must be a finite scalar, got {v!r}.")
        if k in _CLIPS and float(v) <= 0:
            raise ValueError(f"{where}: {k} must be > 0, got {v!r}; pass None for no clipping.")
        if k == "learning_rate" and float(v) <= 0:
            raise ValueError(f"{where}: learning_rate must be > 0, got {v!r}.")
        out[k] = float(v) if isinstance(v, (int, np.integer)) else v
    return out


def get(
    optimizer: str | optax.GradientTransformation, **hyperparams: Any
) -> optax.GradientTransformation:
    """Returns an optax optimizer that follows Keras 3's rule for a Keras name.

    The rule of each name is in the table of :mod:`jaxnn.optimizers` and in
    :mod:`jaxnn.optimizers.rules`; the defaults are Keras 3's
    (:data:`KERAS_DEFAULTS`), and so are the argument names (``beta_1``,
    ``epsilon``, ``rho``, ...). Updates agree with Keras 3.15 to 1e-6 relative,
    checked step by step in ``tests/test_optimizers.py``.

    Args:
        optimizer: a Keras name (``"adam"``, ``"adamw"``, ``"nadam"``, ``"lion"``,
            ``"adamax"``, ``"adadelta"``, ``"ftrl"``, ``"lamb"``, ``"sgd"``,
            ``"rmsprop"``, ``"adagrad"``; any case), or an optax transformation,
            returned as it is (wrap it in ``optax.inject_hyperparams`` yourself to
            trace its hyperparameters).
        **hyperparams: Keras's arguments, replacing the defaults, e.g.
            ``learning_rate=0.01`` (a number, an optax schedule, or a traced
            schedule such as :func:`warmup_cosine`, whose parameters are then
            traced hyperparameters too),
            ``clipnorm=1.0``, ``weight_decay=1e-4``, ``gradient_accumulation_steps=4``.

    Returns:
        An ``optax.GradientTransformation`` (its ``update`` needs the params). Its
        state is an ``optax.InjectStatefulHyperparamsState`` whose ``hyperparams``
        dict holds every numeric argument given or defaulted (``None`` ones are off
        and absent), each a scalar array in the params' dtype.

    Raises:
        ValueError: for an unknown name (matched case-insensitively) or argument
            (the message suggests close matches and lists the valid ones), more than
            one clipping argument, a non-finite or non-positive learning rate or
            clipping threshold, ``gradient_accumulation_steps`` that is not an int
            ``>= 2``, or arguments given with an optax transformation.
        TypeError: for an ``optimizer`` that is neither a name nor an optax
            transformation.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = get("adam", learning_rate=0.01, clipnorm=1.0)
        >>> state = tx.init({"w": jnp.zeros(2)})
        >>> sorted(state.hyperparams)
        ['beta_1', 'beta_2', 'clipnorm', 'epsilon', 'learning_rate']
        >>> get("adam", learning_rat=0.01)
        Traceback (most recent call last):
        ...
        ValueError: optimizer 'adam' has no hyperparameter 'learning_rat'; its hyperparameters \
are ['amsgrad', 'beta_1', 'beta_2', 'clipnorm', 'clipvalue', 'epsilon', \
'global_clipnorm', 'gradient_accumulation_steps', 'learning_rate', 'weight_decay']. \
Did you mean 'learning_rate'?
    """
    if isinstance(optimizer, optax.GradientTransformation):
        if hyperparams:
            raise ValueError(
                f"hyperparameters {sorted(hyperparams)} were given with an optax "
                "transformation; set them when you build it, e.g. optax.adam(0.01)."
            )
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(
            "optimizer must be a name such as 'adam' or an optax.GradientTransformation, "
            f"got {type(optimizer).__name__}."
        )
    rule, defaults = lookup("optimizer", optimizer, KERAS_DEFAULTS, "pass an optax transformation")
    check_options(f"optimizer {optimizer!r}", hyperparams, defaults, what="hyperparameter")
    name = optimizer.lower()
    values = _check(name, {**defaults, **hyperparams})
    if name == "adamw" and values["weight_decay"] is None:
        raise ValueError(
            "optimizer 'adamw': weight_decay must be a number (Keras's default is 0.004), "
            "got None; use 'adam' for no weight decay."
        )
    make = _factory(name, rule, list(values))
    static = [k for k in ("gradient_accumulation_steps", *_FLAGS) if k in values]
    return optax.inject_hyperparams(make, static_args=static)(**values)


def _walk(node: Any, visit: Callable[[Any], Any]) -> Any:
    """Rebuilds an optimizer state, calling ``visit`` on every state that has
    ``hyperparams`` (outer first) and going through tuples, named tuples, lists and
    dicts (the containers optax's states are made of)."""
    if hasattr(node, "hyperparams") and hasattr(node, "_replace"):
        node = visit(node)
        fields = getattr(node, "_fields", ())
        return node._make(
            c if f == "hyperparams" else _walk(c, visit) for f, c in zip(fields, node, strict=True)
        )
    if isinstance(node, tuple) and hasattr(node, "_make"):
        return node._make(_walk(c, visit) for c in node)
    if isinstance(node, (tuple, list)):
        return type(node)(_walk(c, visit) for c in node)
    if isinstance(node, dict):
        return {k: _walk(v, visit) for k, v in node.items()}
    return node


def hyperparams(opt_state: Any) -> dict[str, Any]:
    """The traced hyperparameters anywhere in an optimizer state.

    Finds every ``optax.inject_hyperparams`` state: the top one of :func:`get`, and
    ones inside ``optax.chain``, ``optax.MultiSteps`` and similar wrappers. A name
    found in more than one place is reported from the first (outermost, then
    leftmost).

    Args:
        opt_state: the optimizer state (``TrainState.opt_state``).

    Returns:
        Name to hyperparameter array; empty when the optimizer traces none.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> sorted(hyperparams(get("sgd").init({"w": jnp.zeros(2)})))
        ['learning_rate', 'momentum']
        >>> chained = optax.chain(optax.clip_by_global_norm(1.0), get("adam"))
        >>> float(hyperparams(chained.init({"w": jnp.zeros(2)}))["learning_rate"])
        0.0010000000474974513
    """
    found: dict[str, Any] = {}

    def visit(state: Any) -> Any:
        for k, v in dict(state.hyperparams).items():
            found.setdefault(k, v)
        return state

    _walk(opt_state, visit)
    return found


def _scheduled(opt_state: Any) -> dict[str, Any]:
    """Name to schedule state, for the hyperparameters that an ``inject_hyperparams`` state
    computes from a schedule (and holds as no constant anywhere else)."""
    plain: set[str] = set()
    computed: dict[str, Any] = {}

    def visit(state: Any) -> Any:
        schedules = getattr(state, "hyperparams_states", None) or {}
        for k in dict(state.hyperparams):
            if k not in schedules:
                plain.add(k)
        for k, v in schedules.items():
            computed.setdefault(k, v)
        return state

    _walk(opt_state, visit)
    return {k: v for k, v in computed.items() if k not in plain}


def replace_hyperparams(
    opt_state: Any, values: Mapping[str, Any], *, where: str = "replace_hyperparams"
) -> Any:
    """The optimizer state with traced hyperparameters replaced, wherever they are.

    Every traced hyperparameter of each given name is replaced (in every
    ``inject_hyperparams`` state that has it), cast to its dtype. Values are used
    as given: shapes are not checked here (a population's are ``(members,)``).

    Args:
        opt_state: the optimizer state.
        values: name to new value.
        where: who asks, for the error message.

    Returns:
        The new state (no recompilation when it is fed back to a jitted step).

    Raises:
        ValueError: if the state traces no hyperparameters, or none of a given name.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> tx = optax.chain(optax.clip(1.0), get("sgd"))
        >>> s = replace_hyperparams(tx.init({"w": jnp.zeros(1)}), {"learning_rate": 0.5})
        >>> float(hyperparams(s)["learning_rate"])
        0.5
    """
    known = hyperparams(opt_state)
    if not known:
        raise ValueError(
            f"{where}: this optimizer traces no hyperparameters. Pass the optimizer by name "
            "(optimizer='adam') or wrap it (or the part of a chain that has them) in "
            "optax.inject_hyperparams."
        )
    for name in values:
        if name not in known:
            raise ValueError(
                f"{where}: the optimizer has no traced hyperparameter {name!r}; it has "
                f"{sorted(known)}. Pass it to jaxnn.optimizers.get (e.g. clipnorm=1.0) so "
                "that it is traced."
            )
    scheduled = _scheduled(opt_state)
    for name in values:
        if name in scheduled:
            schedule = scheduled[name]
            hint = (
                f"set the schedule's own hyperparameters instead ({sorted(schedule.hyperparams)})"
                if isinstance(schedule, schedules.ScheduleState)
                else "pass a constant, or a traced schedule such as "
                "jaxnn.optimizers.warmup_cosine whose parameters can be set"
            )
            raise ValueError(
                f"{where}: {name!r} is computed by a schedule at every step, so a value "
                f"set here would be overwritten; {hint}."
            )

    def visit(state: Any) -> Any:
        old = dict(state.hyperparams)
        new = {
            k: jnp.asarray(values[k]).astype(v.dtype) if k in values else v for k, v in old.items()
        }
        return state._replace(hyperparams=new)

    return _walk(opt_state, visit)
