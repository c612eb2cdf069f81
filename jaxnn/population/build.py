"""Building a population: stacked states, per-member hyperparameters, per-member data.

A population is a stacked :class:`~jaxnn.TrainState`: every leaf has a leading member
axis. :func:`init` builds one, :func:`set_hyperparams` gives each member its own
(traced) optimizer hyperparameters, and :func:`bootstrap`, :func:`kfold` and
:func:`take_members` build per-member data sets.
"""

from __future__ import annotations

import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import optimizers
from jaxnn._checks import check_key, check_positive_int
from jaxnn._types import PRNGKey
from jaxnn.core import spec_of
from jaxnn.train import Trainer, TrainState
from jaxnn.train.programs import compile_once

__all__ = [
    "bootstrap",
    "init",
    "kfold",
    "num_members",
    "per_member",
    "set_hyperparams",
    "take_members",
]


_INITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Each trainer's compiled population initialisations, by input shapes and count."""


def num_members(states: TrainState) -> int:
    """The number of members in a stacked state (the length of its leading axis).

    Args:
        states: a stacked :class:`~jaxnn.TrainState`, as from :func:`init` or :func:`fit`.

    Returns:
        The number of members, read from ``states.step``, which has shape ``(members,)``.

    Raises:
        ValueError: if ``states.step`` is not one-dimensional, e.g. for the single
            member's state that :func:`select` returns with ``k=None``.
        TypeError: if ``states`` is not a :class:`~jaxnn.TrainState`.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> num_members(init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4))
        4
    """
    if not isinstance(states, TrainState):
        raise TypeError(
            "population: expected a stacked TrainState (from jaxnn.population.init), got "
            f"{type(states).__name__}."
        )
    shape = np.shape(states.step)
    if len(shape) != 1:
        raise ValueError(
            "population: expected a stacked TrainState whose step has shape (members,), "
            f"got step of shape {shape}. Build one with jaxnn.population.init."
        )
    return shape[0]


def init(
    trainer: Trainer,
    key: PRNGKey,
    x: Any,
    n: int,
    *,
    hyperparams: dict[str, Any] | None = None,
    kernel_scale: Any = None,
) -> TrainState:
    """Initialises ``n`` members, each from its own key, as one stacked state.

    Member ``i`` equals ``trainer.init(jax.random.split(key, n)[i], x)``.

    Args:
        trainer: the :class:`~jaxnn.Trainer` (model, loss, optimizer, metrics).
        key: one key for the whole population.
        x: an example input with its batch axis (array or ``jax.ShapeDtypeStruct``).
        n: the number of members.
        hyperparams: per-member hyperparameters (the optimizer's, a traced
            schedule's, traced dropout rates, traced loss weights), e.g.
            ``{"learning_rate": jnp.logspace(-4, -1, n)}``; see :func:`set_hyperparams`.
        kernel_scale: ``(n,)`` factors that multiply every member's initial
            ``kernel`` and ``embedding`` arrays, for populations that differ in
            initializer scale.

    Returns:
        A :class:`~jaxnn.TrainState` whose leaves have a leading axis of length ``n``.

    Raises:
        ValueError: for ``n < 1``, non-numeric ``x``, or hyperparameters or scales of
            the wrong length or with NaN or Inf values.
        TypeError: for a ``trainer`` that is not a :class:`~jaxnn.Trainer`, a ``key``
            that is not a JAX random key, or ``hyperparams`` that is not a dict.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> states = init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 8,
        ...               hyperparams={"learning_rate": jnp.linspace(0.01, 0.1, 8)})
        >>> states.params["kernel"].shape, states.opt_state.hyperparams["learning_rate"].shape
        ((8, 3, 1), (8,))
    """
    where = "population.init"
    check_trainer(where, trainer)
    check_key(where, "key", key)
    n = check_positive_int(where, "n", n)
    if hyperparams is not None and not isinstance(hyperparams, dict):
        raise TypeError(
            f"{where}: hyperparams must be a dict from name to per-member values, e.g. "
            f"{{'learning_rate': jnp.logspace(-4, -1, n)}}; got {type(hyperparams).__name__}."
        )
    spec = spec_of(x, f"{where}: x")
    keys = jax.random.split(key, n)
    init_all = jax.vmap(lambda k: trainer.programs.init(k, spec))
    if isinstance(keys, jax.core.Tracer):  # under a transformation: trace it
        states = init_all(keys)
    else:  # one program (op by op, each initializer would compile on its own)
        compiled = _INITS.setdefault(trainer, {})
        signature = (jax.tree.structure(spec), tuple(jax.tree.leaves(spec)), n, keys.dtype)
        if signature not in compiled:  # compiled once per trainer and shapes
            compiled[signature] = compile_once(init_all, keys)
        states = compiled[signature](keys)
    if kernel_scale is not None:
        scale = per_member("population.init", "kernel_scale", kernel_scale, n)

        def rescale(path: tuple, leaf: jax.Array) -> jax.Array:
            last = getattr(path[-1], "key", None)
            if last in ("kernel", "embedding"):
                return leaf * scale.reshape((n,) + (1,) * (leaf.ndim - 1)).astype(leaf.dtype)
            return leaf

        states = states._replace(params=jax.tree_util.tree_map_with_path(rescale, states.params))
    if hyperparams:
        states = set_hyperparams(states, **hyperparams)
    return states


def check_trainer(where: str, trainer: Any) -> None:
    """Refuses anything but a :class:`~jaxnn.Trainer`, before any trace.

    Raises:
        TypeError: naming what came instead.

    Example:
        >>> check_trainer("population.fit", "adam")
        Traceback (most recent call last):
        ...
        TypeError: population.fit: trainer must be a jaxnn.Trainer (model, loss, optimizer), \
got str. Build one with nn.Trainer(model, loss, optimizer).
    """
    if not isinstance(trainer, Trainer):
        from jaxnn.population.padded import Sweep  # padded builds on this module

        if isinstance(trainer, Sweep):
            raise TypeError(
                f"{where}: got a Sweep; pass its padded trainer, sweep.trainer (and build "
                "the states with sweep.init(key))."
            )
        raise TypeError(
            f"{where}: trainer must be a jaxnn.Trainer (model, loss, optimizer), got "
            f"{type(trainer).__name__}. Build one with nn.Trainer(model, loss, optimizer)."
        )


def per_member(where: str, what: str, value: Any, n: int) -> jax.Array:
    """``value`` as a ``(n,)`` array, one per member; a scalar is broadcast.

    Concrete values are checked: each must be a finite real number (a NaN learning
    rate would silently train nothing).

    Raises:
        ValueError: for any other shape, non-numeric values, NaN or Inf values, or
            values that would overflow to Inf in the stored dtype.

    Example:
        >>> per_member("init", "kernel_scale", 2.0, 3).tolist()
        [2.0, 2.0, 2.0]
        >>> per_member("init", "kernel_scale", [1.0, 1e300], 2)
        Traceback (most recent call last):
        ...
        ValueError: init: kernel_scale has values too large for float32 (at members [1]): \
they would become Inf. Give values within +-3.4e+38.
    """
    if not isinstance(value, jax.Array):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError):
            value = np.asarray(None)  # an object array: refused just below
    if not (jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating)):
        raise ValueError(
            f"{where}: {what} must be real numbers, one per member (or one for all), "
            f"got dtype {value.dtype}."
        )
    if not isinstance(value, jax.core.Tracer):
        finite = np.isfinite(np.asarray(value, np.float64))
        if not finite.all():
            members = np.flatnonzero(~finite.reshape(-1)).tolist()
            raise ValueError(
                f"{where}: {what} has NaN or Inf values (at members {members[:5]}"
                f"{', ...' if len(members) > 5 else ''}); every member needs a finite value."
            )
        stored = jax.dtypes.canonicalize_dtype(value.dtype)  # float32 unless 64-bit mode
        if jnp.issubdtype(stored, jnp.floating):
            with np.errstate(over="ignore"):
                fits = np.isfinite(np.asarray(value, np.float64).astype(stored))
            if not fits.all():
                members = np.flatnonzero(~fits.reshape(-1)).tolist()
                raise ValueError(
                    f"{where}: {what} has values too large for {stored} (at members "
                    f"{members[:5]}{', ...' if len(members) > 5 else ''}): they would "
                    f"become Inf. Give values within +-{float(np.finfo(stored).max):.3g}."
                )
    arr = jnp.asarray(value)
    if arr.ndim == 0:
        arr = jnp.broadcast_to(arr, (n,))
    if arr.shape != (n,):
        raise ValueError(
            f"{where}: {what} has shape {tuple(arr.shape)}, expected ({n},): one value per "
            "member (or a scalar for all)."
        )
    return arr


def _state_paths(model_state: Any) -> dict[str, Any]:
    """Every model-state leaf by its path, ``"encoder/dropout/rate"``."""
    leaves = jax.tree_util.tree_flatten_with_path(model_state)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): leaf for path, leaf in leaves}


def _set_state_leaves(model_state: Any, paths: dict[str, jax.Array]) -> Any:
    """``model_state`` with the leaves at ``paths`` replaced (cast to their dtype)."""

    def replace(path: tuple, leaf: Any) -> Any:
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        return paths[name].astype(leaf.dtype) if name in paths else leaf

    return jax.tree_util.tree_map_with_path(replace, model_state)


def set_hyperparams(states: TrainState, **values: Any) -> TrainState:
    """Sets per-member hyperparameters, traced: no recompilation.

    A name is looked up first among the optimizer's traced hyperparameters, found
    anywhere in the optimizer state: the top of an optimizer from
    :func:`jaxnn.optimizers.get` (every Keras argument given or defaulted:
    ``learning_rate``, ``beta_1``, ``clipnorm``, ``weight_decay``, ...), the
    parameters of a traced schedule (``peak_value``, ``warmup_steps``, ... of
    :func:`jaxnn.optimizers.warmup_cosine`), or an ``optax.inject_hyperparams`` part
    inside ``optax.chain``, ``optax.MultiSteps`` or another wrapper; every traced
    hyperparameter of that name is set. Otherwise it names scalar entries of the
    model state by their path or its last parts: ``rate`` sets every
    ``Dropout(..., traced=True)``, ``"encoder/dropout/rate"`` one of them, and
    ``"loss_weights/aux"`` a traced weight of :func:`jaxnn.losses.weighted`.

    Args:
        states: a stacked state whose optimizer or model state traces them.
        **values: name (or model-state path) to a ``(members,)`` array, or a scalar
            for every member.

    Returns:
        The states with those hyperparameters replaced.

    Raises:
        ValueError: if neither the optimizer nor the model state has that
            hyperparameter, a model-state entry of that name is not one scalar per
            member, or a value has the wrong length.

    Example:
        >>> import jax, jax.numpy as jnp, optax, jaxnn as nn
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "adam")
        >>> states = init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4)
        >>> states = set_hyperparams(states, learning_rate=jnp.array([0.1, 0.01, 1e-3, 1e-4]))
        >>> states.opt_state.hyperparams["learning_rate"].tolist()[1]
        0.009999999776482582
        >>> chained = optax.chain(optax.clip_by_global_norm(1.0), nn.optimizers.get("adam"))
        >>> states = init(nn.Trainer(nn.Dense(1), "mse", chained), jax.random.key(0),
        ...               jnp.zeros((1, 3)), 2, hyperparams={"learning_rate": [0.1, 0.2]})
        >>> nn.optimizers.hyperparams(states.opt_state)["learning_rate"].tolist()
        [0.10000000149011612, 0.20000000298023224]
    """
    where = "population.set_hyperparams"
    n = num_members(states)
    known = optimizers.hyperparams(states.opt_state)
    leaves = _state_paths(states.model_state)
    scalars = sorted(p for p, leaf in leaves.items() if np.shape(leaf) == (n,))
    in_state: dict[str, list[str]] = {}
    for name in values:
        if name not in known:
            found = [p for p in leaves if p == name or p.endswith("/" + name)]
            if found:
                in_state[name] = found
    # Checked here first for the message; replace_hyperparams checks the same.
    if known:
        for name in values:
            if name not in known and name not in in_state:
                raise ValueError(
                    f"{where}: the optimizer has no traced hyperparameter {name!r}; it has "
                    f"{sorted(known)}. Pass it to jaxnn.optimizers.get (e.g. clipnorm=1.0) "
                    "so that it is traced. Nor has the model state an entry of that name "
                    f"or path (its per-member scalars: {scalars})."
                )
    arrays = {name: per_member(where, name, value, n) for name, value in values.items()}
    paths: dict[str, jax.Array] = {}
    for name, found in in_state.items():
        value = arrays.pop(name)
        for p in found:
            if np.shape(leaves[p]) != (n,):
                raise ValueError(
                    f"{where}: the model-state entry {p!r} has shape "
                    f"{tuple(np.shape(leaves[p]))}, not one scalar per member ({n},), so it "
                    f"is no hyperparameter; the per-member scalars are {scalars}."
                )
            paths[p] = value
    opt_state = states.opt_state
    if arrays or not in_state:
        opt_state = optimizers.replace_hyperparams(opt_state, arrays, where=where)
    return states._replace(
        opt_state=opt_state, model_state=_set_state_leaves(states.model_state, paths)
    )


def bootstrap(key: PRNGKey, members: int, examples: int) -> jax.Array:
    """Bootstrap resamples for bagging: ``(members, examples)`` indices, with replacement.

    Each row is one member's resample: ``examples`` indices drawn independently and
    uniformly from ``[0, examples)``, so some examples repeat and others are left out.
    Pass the rows to :func:`take_members` to build the per-member data sets.

    Args:
        key: the key for all the draws.
        members: the number of resamples (rows).
        examples: the number of examples in the data set, and the length of each
            resample.

    Returns:
        Integer indices of shape ``(members, examples)`` (``int32`` unless 64-bit mode
        is on).

    Example:
        >>> import jax
        >>> bootstrap(jax.random.key(0), 4, 10).shape
        (4, 10)
        >>> idx = bootstrap(jax.random.key(0), 4, 10)
        >>> bool(((idx >= 0) & (idx < 10)).all())
        True

    Raises:
        ValueError: if ``members`` or ``examples`` is not a positive int.
        TypeError: if ``key`` is not a JAX random key.
    """
    check_key("bootstrap", "key", key)
    members = check_positive_int("bootstrap", "members", members)
    examples = check_positive_int("bootstrap", "examples", examples)
    return jax.random.randint(key, (members, examples), 0, examples)


def kfold(
    examples: int, k: int, *, key: PRNGKey | None = None
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Indices and 0/1 weights for k-fold cross-validation, one member per fold.

    Folds differ in size by at most one example, so each member's index list is padded
    to the longest with weight 0: use the weights as ``sample_weight`` (training) and
    as validation weights, and the padded examples count for nothing.

    Args:
        examples: the number of examples.
        k: the number of folds (members), ``2 <= k <= examples``.
        key: shuffle the examples before cutting the folds; ``None`` keeps their order.

    Returns:
        ``(train_idx, train_weight, val_idx, val_weight)``, each ``(k, length)``.

    Raises:
        ValueError: if ``examples`` or ``k`` is not an int, or ``k`` is outside
            ``[2, examples]``.
        TypeError: if ``key`` is neither ``None`` nor a JAX random key.

    Example:
        >>> train_idx, train_w, val_idx, val_w = kfold(10, 3)
        >>> train_idx.shape, val_idx.shape, val_w.sum(axis=1).tolist()
        ((3, 7), (3, 4), [4.0, 3.0, 3.0])
    """
    examples = check_positive_int("kfold", "examples", examples)
    k = check_positive_int("kfold", "k", k, minimum=2)
    if key is not None:
        check_key("kfold", "key", key)
    if not 2 <= k <= examples:
        raise ValueError(f"kfold: k must lie in [2, {examples}] for {examples} examples, got {k}.")
    order = (
        np.arange(examples) if key is None else np.asarray(jax.random.permutation(key, examples))
    )
    folds = np.array_split(order, k)
    trains = [np.concatenate([f for j, f in enumerate(folds) if j != i]) for i in range(k)]

    def pad(parts: list[np.ndarray]) -> tuple[jax.Array, jax.Array]:
        length = max(len(p) for p in parts)
        idx = np.stack([np.pad(p, (0, length - len(p)), mode="edge") for p in parts])
        weight = np.stack([np.arange(length) < len(p) for p in parts]).astype(np.float32)
        return jnp.asarray(idx), jnp.asarray(weight)

    return (*pad(trains), *pad(folds))


def take_members(tree: Any, idx: jax.Array) -> Any:
    """Per-member data sets: ``a[idx]`` for every array in ``tree``.

    The result has the layout that ``fit(..., member_data=True)`` and
    ``evaluate(..., member_data=True)`` expect. Concrete indices are checked: each
    must lie in ``[0, examples)`` (a JAX gather would silently clamp one past the
    end, and count a negative one from the end).

    Args:
        tree: an array, or a pytree of arrays such as ``(x, y)``, each
            ``(examples, ...)``; anything ``jnp.asarray`` accepts.
        idx: integer indices ``(members, length)``, e.g. from :func:`bootstrap` or the
            index arrays of :func:`kfold`.

    Returns:
        The same tree with every array gathered to ``(members, length, ...)``.

    Raises:
        ValueError: if ``idx`` is empty or not integer or, when concrete, holds an
            index outside ``[0, examples)`` for some array.

    Example:
        >>> import jax.numpy as jnp
        >>> take_members(jnp.arange(5.0), jnp.array([[0, 1], [4, 4]])).tolist()
        [[0.0, 1.0], [4.0, 4.0]]
    """
    if not isinstance(idx, (jax.Array, np.ndarray)):
        try:
            idx = np.asarray(idx)
        except (TypeError, ValueError):
            idx = np.asarray(None)  # an object array: refused below
    if np.size(idx) == 0:
        raise ValueError(
            f"take_members: the index list idx is empty (shape {np.shape(idx)}); pass "
            "(members, length) indices with at least one, e.g. from bootstrap or kfold."
        )
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise ValueError(
            f"take_members: idx must hold integer indices, got dtype {idx.dtype}; "
            "use the indices from bootstrap or kfold."
        )
    concrete = not isinstance(idx, jax.core.Tracer)
    low, high = (int(np.min(idx)), int(np.max(idx))) if concrete and np.size(idx) else (0, 0)

    def take(a: Any) -> jax.Array:
        a = jnp.asarray(a)
        if concrete and (low < 0 or high >= a.shape[0]):
            raise ValueError(
                f"take_members: indices must lie in [0, {a.shape[0]}) for data of "
                f"{a.shape[0]} examples, got indices from {low} to {high}; draw them "
                f"for {a.shape[0]} examples (bootstrap(key, members, {a.shape[0]}))."
            )
        return a[idx]

    return jax.tree.map(take, tree)
