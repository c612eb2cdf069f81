"""Many small networks at once: a population of members in one XLA program.

A population is a stacked :class:`~jaxnn.TrainState`: every leaf has a leading member
axis of length ``n``. Each member has its own initialisation, shuffle order, dropout
stream, model state (BatchNorm statistics) and optimizer hyperparameters (traced, so
changing them never recompiles). Training runs the same compiled epoch as
:meth:`Trainer.fit` for every member, with one of three execution strategies:

* ``"vmap"`` (default): all members side by side, the fastest when memory allows;
* ``"map"``: one member after another with ``lax.map``, the least memory;
* ``"chunked"``: ``vmap`` within chunks of ``chunk_size`` members, ``lax.map`` over
  the chunks, to bound memory while keeping most of the speed.

All three give the same results, and member ``i`` gives the same parameters (to float
tolerance) as the same network trained alone with :meth:`Trainer.fit` from the same
state and data.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnn._types import Params, PRNGKey, State
from jaxnn.core import spec_of
from jaxnn.train import (
    EarlyStopping,
    History,
    Trainer,
    TrainState,
    _finish,
    _finite_leaves,
    _prepare,
)

__all__ = [
    "bootstrap",
    "ensemble_predict",
    "evaluate",
    "fit",
    "init",
    "kfold",
    "num_members",
    "predict",
    "ravel",
    "flat_apply",
    "select",
    "set_hyperparams",
    "shard_members",
    "take_members",
]

STRATEGIES = ("vmap", "map", "chunked")


def num_members(states: TrainState) -> int:
    """The number of members in a stacked state (the length of its leading axis).

    Args:
        states: a stacked :class:`~jaxnn.TrainState`, as from :func:`init` or :func:`fit`.

    Returns:
        The number of members, read from ``states.step``, which has shape ``(members,)``.

    Raises:
        ValueError: if ``states.step`` is not one-dimensional, e.g. for the single
            member's state that :func:`select` returns with ``k=None``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> num_members(init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4))
        4
    """
    shape = np.shape(states.step)
    if len(shape) != 1:
        raise ValueError(
            "population: expected a stacked TrainState whose step has shape (members,), "
            f"got step of shape {shape}. Build one with jaxnn.population.init."
        )
    return shape[0]


# ---------------------------------------------------------------------------- init


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
        hyperparams: per-member optimizer hyperparameters, e.g.
            ``{"learning_rate": jnp.logspace(-4, -1, n)}``; see :func:`set_hyperparams`.
        kernel_scale: ``(n,)`` factors that multiply every member's initial
            ``kernel`` and ``embedding`` arrays, for populations that differ in
            initializer scale.

    Returns:
        A :class:`~jaxnn.TrainState` whose leaves have a leading axis of length ``n``.

    Raises:
        ValueError: for ``n < 1``, or hyperparameters or scales of the wrong length.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> states = init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 8,
        ...               hyperparams={"learning_rate": jnp.linspace(0.01, 0.1, 8)})
        >>> states.params["kernel"].shape, states.opt_state.hyperparams["learning_rate"].shape
        ((8, 3, 1), (8,))
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"population.init: n must be a positive int, got {n!r}.")
    spec = spec_of(x)
    keys = jax.random.split(key, n)
    states = jax.vmap(lambda k: trainer.init(k, spec))(keys)
    if kernel_scale is not None:
        scale = _per_member("population.init", "kernel_scale", kernel_scale, n)

        def rescale(path: tuple, leaf: jax.Array) -> jax.Array:
            last = getattr(path[-1], "key", None)
            if last in ("kernel", "embedding"):
                return leaf * scale.reshape((n,) + (1,) * (leaf.ndim - 1)).astype(leaf.dtype)
            return leaf

        states = states._replace(params=jax.tree_util.tree_map_with_path(rescale, states.params))
    if hyperparams:
        states = set_hyperparams(states, **hyperparams)
    return states


def _per_member(where: str, what: str, value: Any, n: int) -> jax.Array:
    arr = jnp.asarray(value)
    if arr.ndim == 0:
        arr = jnp.broadcast_to(arr, (n,))
    if arr.shape != (n,):
        raise ValueError(
            f"{where}: {what} has shape {tuple(arr.shape)}, expected ({n},): one value per "
            "member (or a scalar for all)."
        )
    return arr


def set_hyperparams(states: TrainState, **values: Any) -> TrainState:
    """Sets per-member optimizer hyperparameters (traced: no recompilation).

    Args:
        states: a stacked state whose optimizer was built by
            :func:`jaxnn.optimizers.get` or ``optax.inject_hyperparams``.
        **values: name to ``(members,)`` array (or a scalar for every member).

    Returns:
        The states with those hyperparameters replaced.

    Raises:
        ValueError: if the optimizer does not trace that hyperparameter, or a value
            has the wrong length.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "adam")
        >>> states = init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4)
        >>> states = set_hyperparams(states, learning_rate=jnp.array([0.1, 0.01, 1e-3, 1e-4]))
        >>> states.opt_state.hyperparams["learning_rate"].tolist()[1]
        0.009999999776482582
    """
    n = num_members(states)
    found = getattr(states.opt_state, "hyperparams", None)
    if found is None:
        raise ValueError(
            "population.set_hyperparams: this optimizer traces no hyperparameters. Pass "
            "the optimizer by name (optimizer='adam') or wrap it in "
            "optax.inject_hyperparams."
        )
    new = dict(found)
    for name, value in values.items():
        if name not in found:
            raise ValueError(
                f"population.set_hyperparams: the optimizer has no traced hyperparameter "
                f"{name!r}; it has {sorted(found)}."
            )
        old = found[name]
        new[name] = _per_member("population.set_hyperparams", name, value, n).astype(old.dtype)
    return states._replace(opt_state=states.opt_state._replace(hyperparams=new))


# ---------------------------------------------------------------------- data helpers


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
    """
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

    Example:
        >>> train_idx, train_w, val_idx, val_w = kfold(10, 3)
        >>> train_idx.shape, val_idx.shape, val_w.sum(axis=1).tolist()
        ((3, 7), (3, 4), [4.0, 3.0, 3.0])
    """
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
        ValueError: if ``idx`` is not integer or, when concrete, holds an index
            outside ``[0, examples)`` for some array.

    Example:
        >>> import jax.numpy as jnp
        >>> take_members(jnp.arange(5.0), jnp.array([[0, 1], [4, 4]])).tolist()
        [[0.0, 1.0], [4.0, 4.0]]
    """
    if not isinstance(idx, (jax.Array, np.ndarray)):
        idx = np.asarray(idx)
    if not jnp.issubdtype(jnp.result_type(idx), jnp.integer):
        raise ValueError(
            f"take_members: idx must hold integer indices, got dtype {jnp.result_type(idx)}; "
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


# ------------------------------------------------------------------------ strategies


def _over_members(
    fn: Callable, strategy: str, chunk_size: int | None, n: int
) -> Callable[[Any], Any]:
    """Runs ``fn(member_args) -> out`` for every member, stacked on the leading axis."""
    if strategy == "vmap":
        return jax.vmap(fn)
    if strategy == "map":
        return lambda args: jax.lax.map(fn, args)
    chunks = -(-n // chunk_size)
    padded = chunks * chunk_size

    def run(args: Any) -> Any:
        def split(a: jax.Array) -> jax.Array:
            if padded != n:  # pad with copies of member 0; their results are dropped
                a = jnp.concatenate([a, jnp.repeat(a[:1], padded - n, axis=0)])
            return a.reshape(chunks, chunk_size, *a.shape[1:])

        out = jax.lax.map(jax.vmap(fn), jax.tree.map(split, args))
        return jax.tree.map(lambda a: a.reshape(padded, *a.shape[2:])[:n], out)

    return run


def _check_strategy(strategy: str, chunk_size: int | None, n: int) -> int | None:
    if strategy not in STRATEGIES:
        raise ValueError(
            f"population: unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}."
        )
    if strategy == "chunked":
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, (int, np.integer))
            or chunk_size < 1
        ):
            raise ValueError(
                "population: strategy='chunked' needs chunk_size, a positive int (members "
                f"vmapped together), got {chunk_size!r}."
            )
        return min(int(chunk_size), n)
    return None


# ----------------------------------------------------------------------------- fit


class _Stop(NamedTuple):
    """Per-member early-stopping bookkeeping, carried through the compiled epochs."""

    best: jax.Array
    wait: jax.Array
    stopped: jax.Array
    stopped_epoch: jax.Array
    epoch: jax.Array
    best_state: Any


class _Halt(NamedTuple):
    """Per-member non-finite stop: the epoch it happened (-1 if never) and a counter."""

    bad_epoch: jax.Array
    epoch: jax.Array


def _initial_halt(on_nonfinite: str, n: int) -> _Halt | None:
    if on_nonfinite == "continue":
        return None
    return _Halt(bad_epoch=jnp.full((n,), -1, jnp.int32), epoch=jnp.zeros((n,), jnp.int32))


def _select(flag: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.where(flag, x, y), a, b)


def _stop_config(stop: EarlyStopping | None) -> tuple | None:
    if stop is None:
        return None
    if not isinstance(stop, EarlyStopping):
        raise TypeError(
            f"population.fit: early_stopping must be a jaxnn.EarlyStopping, got "
            f"{type(stop).__name__}."
        )
    return (stop.monitor, stop.patience, stop.min_delta, stop.mode, stop.restore_best_weights)


def _initial_stop(states: TrainState, config: tuple | None, n: int) -> _Stop | None:
    if config is None:
        return None
    _, _, _, mode, restore = config
    worst = jnp.inf if mode == "min" else -jnp.inf
    return _Stop(
        best=jnp.full((n,), worst, jnp.float32),
        wait=jnp.zeros((n,), jnp.int32),
        stopped=jnp.zeros((n,), bool),
        stopped_epoch=jnp.full((n,), -1, jnp.int32),
        epoch=jnp.zeros((n,), jnp.int32),
        best_state=states if restore else None,
    )


def _member_epochs(
    trainer: Trainer,
    carry: tuple,
    data: tuple,
    val: tuple | None,
    *,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    config: tuple | None,
) -> tuple[tuple, dict[str, jax.Array]]:
    """``epochs`` epochs of one member, with masked early stopping and, when ``halt``
    is carried, a stop at the first epoch whose loss or params are not finite."""

    def one_epoch(carry: tuple, _: None) -> tuple[tuple, dict[str, jax.Array]]:
        state, stop, halt = carry
        new_state, sums = trainer._epoch(state, data, batch_size, shuffle)
        logs = _finish(sums)
        if val is not None:
            val_sums = trainer._evaluate_sums(
                new_state.params, new_state.model_state, *val, batch_size
            )
            logs.update({f"val_{k}": v for k, v in _finish(val_sums).items()})
        keep = jnp.ones((), bool)  # whether this epoch's new state is kept
        if halt is not None:
            state_ok = _finite_leaves((new_state.params, new_state.model_state))
            finite = jnp.isfinite(logs["loss"]) & jnp.all(state_ok)
            going_bad = ~finite & (halt.bad_epoch < 0)
            keep = finite & (halt.bad_epoch < 0)
            halt = _Halt(
                bad_epoch=jnp.where(going_bad, halt.epoch, halt.bad_epoch), epoch=halt.epoch + 1
            )
        if config is None:
            state = _select(keep, new_state, state)
            logs = {k: jnp.where(keep, v, jnp.nan) for k, v in logs.items()}
            return (state, stop, halt), logs
        monitor, patience, min_delta, mode, restore = config
        value = logs[monitor]
        # A member halted as non-finite is out of early stopping's bookkeeping too.
        active = ~stop.stopped & keep
        better = value < stop.best - min_delta if mode == "min" else value > stop.best + min_delta
        improved = active & better
        wait = jnp.where(active, jnp.where(better, 0, stop.wait + 1), stop.wait)
        stopping = active & (wait > patience)
        stop = _Stop(
            best=jnp.where(improved, value, stop.best),
            wait=wait,
            stopped=stop.stopped | stopping,
            stopped_epoch=jnp.where(stopping, stop.epoch, stop.stopped_epoch),
            epoch=stop.epoch + 1,
            best_state=_select(improved, new_state, stop.best_state) if restore else None,
        )
        # A stopped member keeps its parameters: the update is masked out.
        state = _select(active, new_state, state)
        logs = {k: jnp.where(active, v, jnp.nan) for k, v in logs.items()}
        return (state, stop, halt), logs

    return jax.lax.scan(one_epoch, carry, None, length=epochs)


def _run(
    trainer: Trainer,
    carry: tuple,
    data: tuple,
    val: tuple | None,
    *,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    config: tuple | None,
    member_data: bool,
    strategy: str,
    chunk_size: int | None,
    n: int,
) -> tuple[tuple, dict[str, jax.Array]]:
    def member(args: tuple) -> tuple:
        member_carry, member_data_args = args
        d, v = member_data_args if member_data else (data, val)
        return _member_epochs(
            trainer,
            member_carry,
            d,
            v,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=shuffle,
            config=config,
        )

    per_member = (carry, (data, val) if member_data else None)
    return _over_members(member, strategy, chunk_size, n)(per_member)


_run_jit = jax.jit(
    _run,
    static_argnames=(
        "trainer",
        "epochs",
        "batch_size",
        "shuffle",
        "config",
        "member_data",
        "strategy",
        "chunk_size",
        "n",
    ),
)


def _prepare_members(where: str, x: Any, y: Any, w: Any, n: int) -> tuple[Any, Any, Any, int]:
    """Checks per-member data ``(members, examples, ...)``; returns it and ``examples``."""
    for what, tree in (("x", x), ("y", y), ("sample_weight", w)):
        for leaf in jax.tree.leaves(tree):
            bad_rank = np.ndim(leaf) != 2 if what == "sample_weight" else np.ndim(leaf) < 2
            if bad_rank or np.shape(leaf)[0] != n:
                layout = "examples" if what == "sample_weight" else "examples, ..."
                raise ValueError(
                    f"{where}: with member_data=True, {what} needs shape (members={n}, "
                    f"{layout}), got {np.shape(leaf)}."
                )
    flat = lambda t: jax.tree.map(lambda a: np.asarray(a).reshape(-1, *np.shape(a)[2:]), t)
    _prepare(where, flat(x), flat(y), None if w is None else np.asarray(w).reshape(-1))
    x, y = (jax.tree.map(jnp.asarray, t) for t in (x, y))
    examples = jax.tree.leaves(x)[0].shape[1]
    return x, y, None if w is None else jnp.asarray(w, jnp.float32), examples


def fit(
    trainer: Trainer,
    states: TrainState,
    x: Any,
    y: Any,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    shuffle: bool = True,
    validation_split: float = 0.0,
    validation_data: tuple | None = None,
    sample_weight: Any = None,
    member_data: bool = False,
    early_stopping: EarlyStopping | None = None,
    strategy: str = "vmap",
    chunk_size: int | None = None,
    verbose: int = 0,
    on_nonfinite: str = "stop",
) -> tuple[TrainState, History]:
    """Trains every member of a population, as one compiled program.

    Args:
        trainer: the :class:`~jaxnn.Trainer` the members share.
        states: a stacked state from :func:`init`.
        x: inputs: ``(examples, ...)`` shared by all members (never copied per
            member), or ``(members, examples, ...)`` with ``member_data=True``.
        y: targets, laid out as ``x``.
        epochs: passes over the data.
        batch_size: examples per update.
        shuffle: each member reshuffles its data every epoch, with its own key.
        validation_split: the fraction held out from the end of the data.
        validation_data: ``(x_val, y_val)`` or ``(x_val, y_val, weights)``, laid out
            as ``x`` (per member with ``member_data=True``).
        sample_weight: weights, ``(examples,)`` or ``(members, examples)``.
        member_data: whether the data has a leading member axis (bagging, k-fold).
        early_stopping: an :class:`~jaxnn.EarlyStopping` applied to every member
            inside the program: a stopped member's updates are masked out (its
            parameters freeze, or return to its best with ``restore_best_weights``)
            while the others go on. Its logs read NaN after it stopped.
        strategy: ``"vmap"``, ``"map"`` or ``"chunked"`` (see the module docs).
        chunk_size: members per chunk, with ``strategy="chunked"``.
        verbose: 0 silent; 1 a progress bar and 2 a line per epoch, each showing the
            population's best, median and worst loss and metrics.
        on_nonfinite: ``"stop"`` (the default): a member whose epoch ends with a NaN
            or Inf loss, parameter or model state (a learning rate too high, in a
            sweep) goes back to its state at the start of that epoch and trains no
            further, while the others go on; ``history["nonfinite_epoch"]`` gives, per
            member, that 0-based epoch (-1 if none), and its logs read NaN from then on.
            ``"continue"``: no check; such a member's params go non-finite.

    Returns:
        ``(states, history)``; every log has shape ``(members, epochs)``. With early
        stopping ``history["stopped_epoch"]`` gives, per member, the 0-based epoch at
        which it stopped (-1 if it never did); under ``on_nonfinite="stop"``,
        ``history["nonfinite_epoch"]`` (``(members,)``) gives the epoch it went
        non-finite (-1 if it never did).

    Raises:
        ValueError: for bad data or settings, as :meth:`Trainer.fit`.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, jaxnn as nn
        >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        >>> y = x.sum(axis=1, keepdims=True)
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> states = init(trainer, jax.random.key(0), x, 16,
        ...               hyperparams={"learning_rate": jnp.logspace(-3, -1, 16)})
        >>> states, history = fit(trainer, states, x, y, epochs=5, batch_size=16)
        >>> history["loss"].shape
        (16, 5)
    """
    where = "population.fit"
    n = num_members(states)
    chunk_size = _check_strategy(strategy, chunk_size, n)
    if on_nonfinite not in ("stop", "continue"):
        raise ValueError(
            f"{where}: on_nonfinite must be 'stop' or 'continue', got {on_nonfinite!r}."
        )
    config = _stop_config(early_stopping)
    if verbose not in (0, 1, 2):
        raise ValueError(f"{where}: verbose must be 0, 1 or 2, got {verbose!r}.")
    from jaxnn.train import _check_batch_size

    batch_size = _check_batch_size(where, batch_size)

    if member_data:
        x, y, sample_weight, examples = _prepare_members(where, x, y, sample_weight, n)
        weight = jnp.ones((n, examples), jnp.float32) if sample_weight is None else sample_weight
        axis = 1
    else:
        x, y, sample_weight, examples = _prepare(where, x, y, sample_weight)
        weight = jnp.ones((examples,), jnp.float32) if sample_weight is None else sample_weight
        axis = 0

    val = None
    if validation_data is not None:
        xv, yv, *wv = validation_data
        if member_data:
            xv, yv, wv_arr, nv = _prepare_members(where, xv, yv, wv[0] if wv else None, n)
            ones = jnp.ones((n, nv), jnp.float32)
        else:
            xv, yv, wv_arr, nv = _prepare(where, xv, yv, wv[0] if wv else None)
            ones = jnp.ones((nv,), jnp.float32)
        val = (xv, yv, ones if wv_arr is None else wv_arr)
    elif validation_split:
        if not 0.0 < validation_split < 1.0:
            raise ValueError(
                f"{where}: validation_split must lie in [0, 1), got {validation_split!r}."
            )
        cut = examples - int(examples * validation_split)
        if cut in (0, examples):
            raise ValueError(
                f"{where}: validation_split={validation_split} of {examples} examples leaves "
                "an empty training or validation set; change the split."
            )
        part = lambda t, s: jax.tree.map(
            lambda a: jax.lax.slice_in_dim(a, s.start or 0, s.stop or a.shape[axis], axis=axis), t
        )
        val = (part(x, slice(cut, None)), part(y, slice(cut, None)), part(weight, slice(cut, None)))
        x, y, weight = part(x, slice(0, cut)), part(y, slice(0, cut)), part(weight, slice(0, cut))
    if config is not None and config[0].startswith("val_") and val is None:
        raise ValueError(
            f"{where}: early_stopping monitors {config[0]!r} but there is no validation data; "
            "pass validation_data or validation_split, or monitor 'loss'."
        )

    data = (x, y, weight)
    carry = (states, _initial_stop(states, config, n), _initial_halt(on_nonfinite, n))
    run = lambda c, k: _run_jit(
        trainer,
        c,
        data,
        val,
        epochs=k,
        batch_size=batch_size,
        shuffle=shuffle,
        config=config,
        member_data=member_data,
        strategy=strategy,
        chunk_size=chunk_size,
        n=n,
    )
    if verbose == 0:
        carry, logs = run(carry, epochs) if epochs else (carry, {})
        history = {k: np.asarray(v) for k, v in jax.device_get(logs).items()}
    else:
        collected: dict[str, list] = {}
        for epoch in range(epochs):
            carry, logs = run(carry, 1)
            logs = {k: np.asarray(v)[:, 0] for k, v in jax.device_get(logs).items()}
            for k, v in logs.items():
                collected.setdefault(k, []).append(v)
            _report(verbose, epoch, epochs, logs)
            stop, halt = carry[1], carry[2]
            done = np.zeros(n, bool) if stop is None else np.asarray(stop.stopped)
            if halt is not None:
                done = done | (np.asarray(halt.bad_epoch) >= 0)
            if done.all() and epoch + 1 < epochs:
                # Every member has stopped: the epochs left would only log NaN, as
                # they do when all epochs run as one program, so write that instead.
                for v in collected.values():
                    v.extend([np.full_like(v[0], np.nan)] * (epochs - epoch - 1))
                break
        history = {k: np.stack(v, axis=1) for k, v in collected.items()}
    states, stop, halt = carry
    if halt is not None:
        history["nonfinite_epoch"] = np.asarray(halt.bad_epoch)
    if stop is not None:
        history["stopped_epoch"] = np.asarray(stop.stopped_epoch)
        if config[4]:
            states = stop.best_state
    return states, History(history)


def _report(verbose: int, epoch: int, epochs: int, logs: dict[str, np.ndarray]) -> None:
    parts = []
    for k, v in logs.items():
        finite = v[np.isfinite(v)]
        if finite.size == 0:
            parts.append(f"{k}: stopped")
            continue
        higher = any(w in k for w in ("acc", "auc", "precision"))
        best, worst = (finite.max(), finite.min()) if higher else (finite.min(), finite.max())
        parts.append(f"{k}: best {best:.4f} / median {np.median(finite):.4f} / worst {worst:.4f}")
    text = " - ".join(parts)
    if verbose == 2:
        print(f"Epoch {epoch + 1}/{epochs} - {text}", flush=True)
        return
    from tqdm.auto import tqdm

    bar = tqdm(
        total=1,
        desc=f"Epoch {epoch + 1}/{epochs}",
        file=sys.stdout,
        bar_format="{desc} [{bar:20}] {elapsed} {postfix}",
        ascii=" =",
    )
    bar.update(1)
    bar.set_postfix_str(text, refresh=False)
    bar.close()


# --------------------------------------------------------- evaluate, predict, select


def evaluate(
    trainer: Trainer,
    states: TrainState,
    x: Any,
    y: Any,
    *,
    batch_size: int = 32,
    sample_weight: Any = None,
    member_data: bool = False,
    strategy: str = "vmap",
    chunk_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Every member's loss and metrics on ``(x, y)``, each as an array ``(members,)``.

    Each member is evaluated in inference mode and in batches, as
    :meth:`Trainer.evaluate` evaluates a single network. The loss is weighted by
    ``sample_weight``; metrics are unweighted, but examples of weight 0 count in
    neither, so the validation weights of :func:`kfold` leave its padding out.

    Args:
        trainer: the :class:`~jaxnn.Trainer` the members share.
        states: a stacked state, as from :func:`init` or :func:`fit`.
        x: inputs: ``(examples, ...)`` shared by all members, or
            ``(members, examples, ...)`` with ``member_data=True``; a dict of such
            arrays for a model with several inputs.
        y: targets, laid out as ``x``.
        batch_size: examples per forward pass, capped at the number of examples; the
            result does not depend on it.
        sample_weight: per-example weights, ``(examples,)``, or ``(members,
            examples)`` with ``member_data=True``; all 1 by default.
        member_data: whether ``x`` and ``y`` have a leading member axis, so that each
            member is evaluated on its own data (e.g. its k-fold validation fold).
        strategy: ``"vmap"``, ``"map"`` or ``"chunked"`` (see the module docs).
        chunk_size: members per chunk, with ``strategy="chunked"``; ignored otherwise.

    Returns:
        A dict from ``"loss"`` and each metric name to a NumPy array ``(members,)``.

    Raises:
        ValueError: if ``states`` is not stacked; for an unknown ``strategy``; for
            ``strategy="chunked"`` without a positive int ``chunk_size``; for a
            ``batch_size`` that is not a positive int; or for bad data, as
            :func:`fit` (no examples, NaN or Inf values, ``x`` and ``y`` of different
            lengths, or with ``member_data=True`` a leading axis that is not
            ``members``).

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> states = init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4)
        >>> evaluate(trainer, states, jnp.ones((10, 3)), jnp.ones((10, 1)))["loss"].shape
        (4,)
        >>> idx = bootstrap(jax.random.key(1), 4, 10)
        >>> x_m, y_m = take_members((jnp.ones((10, 3)), jnp.ones((10, 1))), idx)
        >>> evaluate(trainer, states, x_m, y_m, member_data=True)["loss"].shape
        (4,)
    """
    n = num_members(states)
    chunk_size = _check_strategy(strategy, chunk_size, n)
    if member_data:
        x, y, w, examples = _prepare_members("population.evaluate", x, y, sample_weight, n)
        w = jnp.ones((n, examples), jnp.float32) if w is None else w
    else:
        x, y, w, examples = _prepare("population.evaluate", x, y, sample_weight)
        w = jnp.ones((examples,), jnp.float32) if w is None else jnp.asarray(w, jnp.float32)
    from jaxnn.train import _check_batch_size

    bs = min(_check_batch_size("population.evaluate", batch_size), examples)
    out = _evaluate_jit(
        trainer,
        (states.params, states.model_state),
        x,
        y,
        w,
        batch_size=bs,
        member_data=member_data,
        strategy=strategy,
        chunk_size=chunk_size,
        n=n,
    )
    return {k: np.asarray(v) for k, v in jax.device_get(out).items()}


def _evaluate_members(
    trainer: Trainer,
    variables: tuple,
    x: Any,
    y: Any,
    w: jax.Array,
    *,
    batch_size: int,
    member_data: bool,
    strategy: str,
    chunk_size: int | None,
    n: int,
) -> dict[str, jax.Array]:
    def member(args: tuple) -> dict[str, jax.Array]:
        (params, model_state), d = args
        xm, ym, wm = d if member_data else (x, y, w)
        return _finish(trainer._evaluate_sums(params, model_state, xm, ym, wm, batch_size))

    return _over_members(member, strategy, chunk_size, n)(
        (variables, (x, y, w) if member_data else None)
    )


# Module-level jits, keyed on the static settings, so repeated calls (every epoch of a
# selection loop, say) reuse the compiled program instead of compiling a new one.
_MEMBER_STATICS = ("trainer", "batch_size", "strategy", "chunk_size", "n")
_evaluate_jit = jax.jit(_evaluate_members, static_argnames=(*_MEMBER_STATICS, "member_data"))


def predict(
    trainer: Trainer,
    states: TrainState,
    x: Any,
    *,
    batch_size: int = 32,
    strategy: str = "vmap",
    chunk_size: int | None = None,
) -> jax.Array:
    """Every member's outputs on shared inputs: ``(members, examples, ...)``.

    Each member runs in inference mode and in batches, as :meth:`Trainer.predict`
    runs a single network. All members see the same inputs; there is no per-member
    form.

    Args:
        trainer: the :class:`~jaxnn.Trainer` the members share.
        states: a stacked state, as from :func:`init` or :func:`fit`.
        x: inputs ``(examples, ...)`` shared by all members, or a dict of such arrays
            for a model with several inputs.
        batch_size: examples per forward pass, capped at the number of examples; the
            result does not depend on it.
        strategy: ``"vmap"``, ``"map"`` or ``"chunked"`` (see the module docs).
        chunk_size: members per chunk, with ``strategy="chunked"``; ignored otherwise.

    Returns:
        The outputs stacked over members, a ``jax.Array`` of shape
        ``(members, examples, ...)`` (a pytree of such arrays for a model with
        several outputs).

    Raises:
        ValueError: if ``states`` is not stacked; for an unknown ``strategy``; for
            ``strategy="chunked"`` without a positive int ``chunk_size``; for a
            ``batch_size`` that is not a positive int; or for bad inputs, as
            :meth:`Trainer.predict` (``None``, no examples, NaN or Inf values, or
            arrays of different lengths).

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> trainer = nn.Trainer(nn.Dense(2), "mse", "sgd")
        >>> states = init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4)
        >>> predict(trainer, states, jnp.ones((10, 3))).shape
        (4, 10, 2)
    """
    n = num_members(states)
    chunk_size = _check_strategy(strategy, chunk_size, n)
    x, _, _, examples = _prepare("population.predict", x)
    from jaxnn.train import _check_batch_size

    bs = min(_check_batch_size("population.predict", batch_size), examples)
    return _predict_jit(
        trainer,
        (states.params, states.model_state),
        x,
        batch_size=bs,
        strategy=strategy,
        chunk_size=chunk_size,
        n=n,
    )


def _predict_members(
    trainer: Trainer,
    variables: tuple,
    x: Any,
    *,
    batch_size: int,
    strategy: str,
    chunk_size: int | None,
    n: int,
) -> Any:
    def member(args: tuple) -> Any:
        params, model_state = args
        return trainer._predict_batches(params, model_state, x, batch_size)

    return _over_members(member, strategy, chunk_size, n)(variables)


_predict_jit = jax.jit(_predict_members, static_argnames=_MEMBER_STATICS)


def ensemble_predict(
    trainer: Trainer,
    states: TrainState,
    x: Any,
    *,
    kind: str = "regression",
    batch_size: int = 32,
    strategy: str = "vmap",
    chunk_size: int | None = None,
) -> dict[str, jax.Array]:
    """The ensemble's prediction from all members.

    Args:
        trainer: the shared trainer.
        states: the stacked states.
        x: inputs ``(examples, ...)``.
        kind: ``"regression"``: ``{"mean", "std"}`` over members, each
            ``(examples, ...)``; ``"classification"``: ``{"probabilities"}`` (the
            members' averaged probabilities; for one sigmoid output, the probability
            of class 1), ``{"vote"}`` (the majority class, ties to the lowest) and
            ``{"agreement"}`` (the fraction of members voting for it).
        batch_size: examples per forward pass.
        strategy: how members run, as in :func:`predict` (``"vmap"``, ``"map"`` or
            ``"chunked"`` with ``chunk_size``).
        chunk_size: members vmapped together under ``strategy="chunked"``.

    Returns:
        A dict of arrays, as above.

    Raises:
        ValueError: for an unknown ``kind``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> states = init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 5)
        >>> out = ensemble_predict(trainer, states, jnp.ones((10, 3)))
        >>> out["mean"].shape, out["std"].shape
        ((10, 1), (10, 1))
    """
    if kind not in ("regression", "classification"):
        raise ValueError(
            f"ensemble_predict: kind must be 'regression' or 'classification', got {kind!r}."
        )
    preds = predict(
        trainer, states, x, batch_size=batch_size, strategy=strategy, chunk_size=chunk_size
    ).astype(jnp.float32)
    if kind == "regression":
        return {"mean": preds.mean(axis=0), "std": preds.std(axis=0)}
    if preds.shape[-1] == 1:  # one sigmoid output per example
        votes = (preds[..., 0] > 0.5).astype(jnp.int32)
        classes = 2
    else:
        votes = jnp.argmax(preds, axis=-1)
        classes = preds.shape[-1]
    counts = jax.nn.one_hot(votes, classes).sum(axis=0)
    return {
        "probabilities": preds.mean(axis=0),
        "vote": jnp.argmax(counts, axis=-1),
        "agreement": counts.max(axis=-1) / preds.shape[0],
    }


def select(
    states: TrainState, scores: Any, *, k: int | None = None, mode: str = "min"
) -> TrainState:
    """Picks the best member (an ordinary single state) or the top ``k`` (stacked).

    Args:
        states: the stacked states.
        scores: ``(members,)`` values such as ``evaluate(...)["loss"]``; NaN ranks last.
        k: ``None`` for the single best member; else the best ``k``, best first.
        mode: ``"min"`` when lower is better (losses), ``"max"`` for accuracies.

    Returns:
        A single :class:`~jaxnn.TrainState` (``k=None``) or a stacked one of ``k``.

    Raises:
        ValueError: for scores of the wrong length, a bad ``k`` or ``mode``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> states = init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4)
        >>> best = select(states, jnp.array([0.3, 0.1, 0.2, 0.4]))
        >>> best.params["kernel"].shape, int(best.step)
        ((3, 1), 0)
        >>> select(states, jnp.array([0.3, 0.1, 0.2, 0.4]), k=2).params["kernel"].shape
        (2, 3, 1)
    """
    n = num_members(states)
    scores = np.asarray(scores, np.float64)
    if scores.shape != (n,):
        raise ValueError(f"select: scores have shape {scores.shape}, expected ({n},).")
    if mode not in ("min", "max"):
        raise ValueError(f"select: mode must be 'min' or 'max', got {mode!r}.")
    key = np.where(np.isnan(scores), np.inf, scores if mode == "min" else -scores)
    order = np.argsort(key, kind="stable")
    if k is None:
        return jax.tree.map(lambda a: a[int(order[0])], states)
    if not 1 <= k <= n:
        raise ValueError(f"select: k must lie in [1, {n}], got {k}.")
    return jax.tree.map(lambda a: a[jnp.asarray(order[:k])], states)


# ----------------------------------------------------------------- flat parameters


def ravel(params: Params) -> tuple[jax.Array, Callable[[jax.Array], Params]]:
    """One flat vector of all parameters, and the function that rebuilds the tree.

    The order is ``jax.tree.leaves`` order: dict keys sorted, each array flattened in
    C (row-major) order, concatenated. It depends only on the tree's names and
    shapes, so it is stable across runs and processes. Dtypes are promoted to a
    common one (float32 for a float32 model).

    Args:
        params: a params tree of one network.

    Returns:
        ``(vector, unravel)`` with ``unravel(vector)`` giving the tree back.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> params, _ = nn.Dense(2).init(jax.random.key(0), jnp.zeros((1, 3)))
        >>> vector, unravel = ravel(params)
        >>> vector.shape, unravel(vector)["kernel"].shape
        ((8,), (3, 2))
    """
    return ravel_pytree(params)


def flat_apply(
    trainer_or_model: Any, params: Params, model_state: State | None = None
) -> Callable[[jax.Array, Any], jax.Array]:
    """``f(vector, x) -> y``: the model applied to a flat parameter vector.

    The function is pure, so ``jax.vmap(f, in_axes=(0, None))`` evaluates a whole
    population of vectors (evolution strategies, other gradient-free methods).

    Args:
        trainer_or_model: a :class:`~jaxnn.Trainer` or a :class:`~jaxnn.Layer`.
        params: one network's params, giving the structure of the vector.
        model_state: the model state to apply with (default: none).

    Returns:
        The function ``f(vector, x)``, in inference mode.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> model = nn.Dense(2)
        >>> params, _ = model.init(jax.random.key(0), jnp.zeros((1, 3)))
        >>> f = flat_apply(model, params)
        >>> vectors = jnp.zeros((16, ravel(params)[0].size))
        >>> jax.vmap(f, in_axes=(0, None))(vectors, jnp.ones((5, 3))).shape
        (16, 5, 2)
    """
    model = getattr(trainer_or_model, "model", trainer_or_model)
    _, unravel = ravel_pytree(params)
    model_state = {} if model_state is None else model_state

    def f(vector: jax.Array, x: Any) -> jax.Array:
        return model.apply(unravel(vector), model_state, x)[0]

    return f


# ------------------------------------------------------------------------ sharding


def shard_members(states: Any, mesh: jax.sharding.Mesh, axis: str | None = None) -> Any:
    """Spreads the member axis of a stacked tree over the devices of a mesh.

    Args:
        states: a stacked state (or any tree with a leading member axis).
        mesh: a ``jax.sharding.Mesh``.
        axis: the mesh axis to shard members over; the mesh's first by default. The
            number of members must be divisible by that axis's size.

    Returns:
        The same tree, placed with ``NamedSharding(mesh, P(axis))``. Training and
        evaluation then run each device's members on that device.

    Raises:
        ValueError: if the members do not divide evenly over the devices.

    Example:
        >>> import jax, numpy as np, jax.numpy as jnp, jaxnn as nn
        >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("members",))
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> states = init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4)
        >>> spec = shard_members(states, mesh).params["kernel"].sharding.spec
        >>> spec == jax.sharding.PartitionSpec("members")
        True
    """
    axis = axis or mesh.axis_names[0]
    size = mesh.shape[axis]
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))

    def place(a: jax.Array) -> jax.Array:
        if a.shape[0] % size:
            raise ValueError(
                f"shard_members: {a.shape[0]} members do not divide over the {size} devices "
                f"of mesh axis {axis!r}; use a multiple of {size} members."
            )
        return jax.device_put(a, sharding)

    return jax.tree.map(place, states)
