"""Training every member of a population as one compiled program.

Each member runs the same pure epoch as :meth:`~jaxnn.Trainer.fit`
(``trainer.programs.epoch``), vmapped, mapped or chunked over members
(:mod:`~jaxnn.population.strategy`). Early stopping is the same rule as the host
callback's (:func:`jaxnn.train.stopping_rule`), run inside the program with one row
per member; a member that goes non-finite stops at its last finite epoch. So is
reduce-on-plateau (:func:`jaxnn.train.steering.plateau_rule`, the rule of
:class:`~jaxnn.ReduceLROnPlateau`): each member's traced learning rate is reduced
when its own monitored log plateaus. Keras's ``class_weight`` is shared or per
member; per-member tables are traced, so new values do not compile again.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import data as data_lib
from jaxnn import stream as stream_lib
from jaxnn._checks import check_bool, check_choice, check_positive_int
from jaxnn.confusion_metrics import merge_sums
from jaxnn.core import spec_of
from jaxnn.data import Data
from jaxnn.optimizers import hyperparams, replace_hyperparams
from jaxnn.population.build import check_trainer, num_members
from jaxnn.population.strategy import check_strategy, over_members
from jaxnn.train import EarlyStopping, History, Trainer, TrainState, finish, stopping_rule
from jaxnn.train.callbacks import FitResult, check_monitors
from jaxnn.train.guard import state_finite
from jaxnn.train.programs import Compiled
from jaxnn.train.progress import Progress, check_verbose
from jaxnn.train.steering import ReduceLROnPlateau, plateau_rule, traced_learning_rate

__all__ = ["fit"]


class _Stopping(NamedTuple):
    """Early stopping inside the program: what ``fit`` passes as a static setting."""

    monitor: str
    patience: int
    min_delta: float
    mode: str
    restore: bool


class _Plateau(NamedTuple):
    """Reduce-on-plateau inside the program: what ``fit`` passes as a static setting."""

    monitor: str
    factor: float
    patience: int
    min_delta: float
    cooldown: int
    min_lr: float
    mode: str

    def rule(self) -> Any:
        return plateau_rule(*self[1:])


class _Carry(NamedTuple):
    """One member's carry through the epochs."""

    state: TrainState
    stop: Any  # a StopState, or None without early stopping
    best_state: Any  # the best epoch's state, with restore_best_weights; else None
    bad_epoch: Any  # int32: the epoch it went non-finite (-1 if never); None if unchecked
    epoch: jax.Array  # int32: epochs run
    plateau: Any = None  # a PlateauState, or None without reduce_lr


def _stopping(stop: EarlyStopping | None) -> _Stopping | None:
    if stop is None:
        return None
    if not isinstance(stop, EarlyStopping):
        raise TypeError(
            f"population.fit: early_stopping must be a jaxnn.EarlyStopping, got "
            f"{type(stop).__name__}."
        )
    return _Stopping(
        stop.monitor, stop.patience, stop.min_delta, stop.mode, stop.restore_best_weights
    )


def _plateau(reduce: ReduceLROnPlateau | None) -> _Plateau | None:
    if reduce is None:
        return None
    if not isinstance(reduce, ReduceLROnPlateau):
        raise TypeError(
            f"population.fit: reduce_lr must be a jaxnn.ReduceLROnPlateau, got "
            f"{type(reduce).__name__}."
        )
    return _Plateau(
        reduce.monitor,
        reduce.factor,
        reduce.patience,
        reduce.min_delta,
        reduce.cooldown,
        reduce.min_lr,
        reduce.mode,
    )


def _select(flag: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.where(flag, x, y), a, b)


def _epoch_end(
    carry: _Carry,
    new_state: TrainState,
    logs: dict[str, jax.Array],
    stopping: _Stopping | None,
    plateau: _Plateau | None = None,
) -> tuple[_Carry, dict[str, jax.Array]]:
    """One member's epoch ends: its new state is kept, or masked out when it went
    non-finite (and ``bad_epoch`` is carried) or early stopping stopped it. With
    ``plateau``, the learning rate the epoch trained with is logged and then, on a
    plateau, reduced in the kept state, before early stopping looks (as
    ``callbacks=[ReduceLROnPlateau(...), EarlyStopping(...)]`` on the host)."""
    keep = jnp.ones((), bool)  # whether this epoch's new state is kept
    bad_epoch = carry.bad_epoch
    if bad_epoch is not None:
        finite = state_finite(new_state, logs["loss"])
        keep = finite & (bad_epoch < 0)
        bad_epoch = jnp.where(~finite & (bad_epoch < 0), carry.epoch, bad_epoch)
    stop, best_state, reduced = carry.stop, carry.best_state, carry.plateau
    if stopping is not None:
        # A member halted as non-finite is out of early stopping's bookkeeping too.
        keep = keep & ~stop.stopped
    if plateau is not None:
        lr = hyperparams(new_state.opt_state)["learning_rate"]
        logs = {**logs, "learning_rate": lr.astype(jnp.float32)}
        reduced, new_lr = plateau.rule().update(reduced, logs[plateau.monitor], lr, keep, jnp)
        opt_state = replace_hyperparams(new_state.opt_state, {"learning_rate": new_lr})
        new_state = new_state._replace(opt_state=opt_state)
    if stopping is not None:
        rule = stopping_rule(*stopping[1:4])
        stop, improved = rule.update(stop, logs[stopping.monitor], keep, jnp)
        if stopping.restore:
            best_state = _select(improved, new_state, best_state)
    # A stopped member keeps its parameters: the update is masked out.
    state = _select(keep, new_state, carry.state)
    logs = {k: jnp.where(keep, v, jnp.nan) for k, v in logs.items()}
    return _Carry(state, stop, best_state, bad_epoch, carry.epoch + 1, reduced), logs


def _member_epochs(
    trainer: Trainer,
    carry: _Carry,
    data: Data,
    val: Data | None,
    count: jax.Array | None = None,
    *,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    stopping: _Stopping | None,
    plateau: _Plateau | None,
) -> tuple[_Carry, dict[str, jax.Array]]:
    """``epochs`` epochs of one member, with masked early stopping and
    reduce-on-plateau and, when ``bad_epoch`` is carried, a stop at the first epoch
    whose loss or state is not finite.

    With ``count`` (a traced int32, at most ``epochs``) it runs ``count`` epochs and
    ``epochs`` is only the logs' capacity: the first ``count`` of each log are
    filled. XLA then cannot see the trip count, so it never removes the loop of a
    one-epoch call: the epoch compiles the same whether its program runs one epoch
    (``verbose > 0``) or all of them, and a run split into calls (resumed from a
    checkpoint) rounds exactly as a straight one."""
    p = trainer.programs

    def one_epoch(carry: _Carry, _: None) -> tuple[_Carry, dict[str, jax.Array]]:
        new_state, _, sums = p.epoch(carry.state, data, batch_size, shuffle)
        logs = finish(sums)
        if val is not None:
            val_sums = p.evaluate_sums(new_state.params, new_state.model_state, val, batch_size)
            logs.update({f"val_{k}": v for k, v in finish(val_sums).items()})
        return _epoch_end(carry, new_state, logs, stopping, plateau)

    if count is None:
        return jax.lax.scan(one_epoch, carry, None, length=epochs)

    def body(i: jax.Array, loop: tuple) -> tuple:
        carry, out = loop
        carry, logs = one_epoch(carry, None)
        return carry, jax.tree.map(lambda whole, one: whole.at[i].set(one), out, logs)

    shapes = jax.eval_shape(one_epoch, carry, None)[1]
    out = jax.tree.map(lambda s: jnp.zeros((epochs, *s.shape), s.dtype), shapes)
    return jax.lax.fori_loop(0, count, body, (carry, out))


def _run(
    trainer: Trainer,
    carry: _Carry,
    data: Data,
    val: Data | None,
    weighting: tuple[jax.Array, jax.Array] | None = None,
    count: jax.Array | None = None,
    *,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    stopping: _Stopping | None,
    plateau: _Plateau | None = None,
    member_data: bool,
    strategy: str,
    chunk_size: int | None,
    n: int,
) -> tuple[_Carry, dict[str, jax.Array]]:
    """Every member's epochs. ``weighting`` is ``None`` or ``(tables, labels)``:
    ``(members, classes)`` class weights (traced) and each training example's class,
    ``(examples,)`` or, with ``member_data``, ``(members, examples)``. With ``count``
    (traced), ``count`` epochs run and ``epochs`` is the logs' capacity (see
    ``_member_epochs``)."""

    def member(args: tuple) -> tuple:
        member_carry, own, table, own_labels = args
        d, v = own if member_data else (data, val)
        if table is not None:  # Keras's class_weight: the training data only
            labels = own_labels if member_data else weighting[1]
            d = d._replace(weight=d.weight * table[labels])
        return _member_epochs(
            trainer,
            member_carry,
            d,
            v,
            count,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=shuffle,
            stopping=stopping,
            plateau=plateau,
        )

    tables, labels = (None, None) if weighting is None else weighting
    per_member = (
        carry,
        (data, val) if member_data else None,
        tables,
        labels if member_data else None,
    )
    return over_members(member, strategy, chunk_size, n)(per_member)


_RUN_STATICS = (
    "trainer",
    "epochs",
    "batch_size",
    "shuffle",
    "stopping",
    "plateau",
    "member_data",
    "strategy",
    "chunk_size",
    "n",
)


def _network(trainer: Trainer, first: Any, *args: Any, n: int, **kwargs: Any) -> tuple:
    """The network of a population program: the stacked params of its second
    argument (a carry or the states) over ``n`` members, so that a population
    compiles as ``Trainer`` does for one member's network."""
    del trainer, args, kwargs
    return (first.state if isinstance(first, _Carry) else first).params, n


_run_jit = Compiled(_run, _RUN_STATICS, network=_network)


def _stream_chunk(
    trainer: Trainer,
    states: TrainState,
    keys: jax.Array,
    arrays: tuple,
    start: jax.Array,
    *,
    strategy: str,
    chunk_size: int | None,
    n: int,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Every member takes the same chunk of streamed steps (the batches are shared,
    not copied per member), each with its own dropout key."""

    def member(args: tuple) -> tuple:
        state, key = args
        state, _, sums = trainer.programs.chunk(state, arrays, start, key)
        return state, sums

    return over_members(member, strategy, chunk_size, n)((states, keys))


def _stream_epoch_end(
    trainer: Trainer,
    carry: _Carry,
    states: TrainState,
    sums: dict[str, jax.Array],
    val: Data | None,
    *,
    batch_size: int,
    stopping: _Stopping | None,
    plateau: _Plateau | None,
    strategy: str,
    chunk_size: int | None,
    n: int,
) -> tuple[_Carry, dict[str, jax.Array]]:
    """A streamed epoch's end for every member: logs, validation, the masks, the
    learning rates."""

    def member(args: tuple) -> tuple:
        member_carry, state, member_sums = args
        logs = finish(member_sums)
        if val is not None:
            p = trainer.programs
            val_sums = p.evaluate_sums(state.params, state.model_state, val, batch_size)
            logs.update({f"val_{k}": v for k, v in finish(val_sums).items()})
        return _epoch_end(member_carry, state, logs, stopping, plateau)

    return over_members(member, strategy, chunk_size, n)((carry, states, sums))


_STATIC = ("trainer", "strategy", "chunk_size", "n")
_stream_chunk_jit = Compiled(_stream_chunk, _STATIC, network=_network)
_stream_epoch_end_jit = Compiled(
    _stream_epoch_end, (*_STATIC, "batch_size", "stopping", "plateau"), network=_network
)


def _stream_runner(
    where: str,
    trainer: Trainer,
    states: TrainState,
    source: Any,
    head: tuple[tuple, Any],
    val: Data | None,
    *,
    steps: int | None,
    given_k: int | None,
    stopping: _Stopping | None,
    plateau: _Plateau | None,
    strategy: str,
    chunk_size: int | None,
) -> Any:
    """``run(carry, 1)`` for :func:`_fit_per_epoch`: one epoch of a shared stream,
    whose first epoch starts with ``head``, ``stream.first_batch(where, source)``."""
    n = num_members(states)
    batch, first = head
    batch_size = int(batch[2].shape[0])
    k = stream_lib.steps_per_chunk(sum(a.nbytes for a in jax.tree.leaves(batch)), given_k)
    unread = [first]
    epochs = itertools.count()
    settings = dict(strategy=strategy, chunk_size=chunk_size, n=n)
    buffers = stream_lib.ChunkBuffers()  # the chunks' host arrays, kept across epochs

    def run(carry: _Carry, count: int) -> tuple[_Carry, dict[str, jax.Array]]:
        del count  # always one epoch
        epoch = next(epochs)
        batches = unread.pop() if unread else stream_lib.epoch_batches(where, source, epoch)
        keys = jax.vmap(lambda key: jax.random.split(key, 3))(carry.state.key)
        states, total, start = carry.state, None, 0
        chunks = stream_lib.chunks(where, batches, k, steps=steps, buffers=buffers)
        in_flight = stream_lib.InFlight()
        for arrays in stream_lib.prefetch(chunks, lambda c: jax.device_put(c[:4])):
            states, sums = _stream_chunk_jit(
                trainer, states, keys[:, 2], arrays, np.int32(start), **settings
            )
            in_flight.add(sums)
            total = sums if total is None else merge_sums(total, sums)
            start += k
        states = states._replace(key=keys[:, 0])
        carry, logs = _stream_epoch_end_jit(
            trainer,
            carry,
            states,
            total,
            val,
            batch_size=batch_size,
            stopping=stopping,
            plateau=plateau,
            **settings,
        )
        return carry, {name: v[:, None] for name, v in logs.items()}

    return run


def _member_spec(tree: Any) -> Any:
    """The spec of one member's slice of a stacked pytree."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), tree)


def _class_weighting(
    where: str,
    class_weight: Any,
    trainer: Trainer,
    states: TrainState,
    data: Data,
    member_data: bool,
    n: int,
) -> tuple[jax.Array, jax.Array]:
    """Keras's ``class_weight`` for every member: ``(tables, labels)``, the
    ``(members, classes)`` float32 weights and each training example's class,
    ``(examples,)`` or with ``member_data`` ``(members, examples)`` int32."""
    x = _member_spec(data.x) if member_data else spec_of(data.x)
    params, model_state = _member_spec((states.params, states.model_state))
    out = jax.eval_shape(trainer.model.apply, params, model_state, x)[0]
    if member_data and isinstance(data.y, (jax.Array, np.ndarray)):
        rows = [data_lib.class_labels(where, y, out) for y in np.asarray(data.y)]
        labels, classes = np.stack([row[0] for row in rows]), rows[0][1]
    else:
        labels, classes = data_lib.class_labels(where, data.y, out)
    if isinstance(class_weight, dict):
        table = np.broadcast_to(data_lib.class_table(where, class_weight, classes), (n, classes))
        return jnp.asarray(table, jnp.float32), jnp.asarray(labels, jnp.int32)
    try:
        table = np.asarray(class_weight, np.float32)
    except (TypeError, ValueError):
        raise TypeError(
            f"{where}: class_weight must be a dict from class index to weight, shared by "
            f"every member ({{0: 1.0, 1: 5.0}}), or an array of per-member weights of shape "
            f"(members, classes) = ({n}, {classes}); got {type(class_weight).__name__}."
        ) from None
    if table.shape != (n, classes):
        raise ValueError(
            f"{where}: class_weight has shape {table.shape}, but per-member class weights "
            f"are (members, classes) = ({n}, {classes}) for this population and model. "
            "Pass one row per member, or a dict shared by every member."
        )
    bad = ~(np.isfinite(table) & (table >= 0))
    if bad.any():
        i, c = (int(k) for k in np.argwhere(bad)[0])
        raise ValueError(
            f"{where}: class_weight[{i}, {c}] (member {i}, class {c}) is {float(table[i, c])}; a "
            "weight must be a finite number >= 0."
        )
    return jnp.asarray(table), jnp.asarray(labels, jnp.int32)


def _data(
    where: str, x: Any, y: Any, sample_weight: Any, member_data: bool, n: int
) -> tuple[Data, int]:
    if member_data:
        return data_lib.prepare_members(where, x, y, sample_weight, n)
    return data_lib.prepare(where, x, y, sample_weight, need_y=True)


def prepare_data(
    where: str,
    trainer: Trainer,
    states: TrainState,
    train: tuple | None,
    validation_data: tuple | None,
    validation_split: float,
    member_data: bool,
) -> tuple[Data | None, Data | None, int]:
    """A population's training and validation data, checked and converted.

    Args:
        where: the caller, for messages.
        trainer: the members' trainer (its loss checks the targets' domain).
        states: the stacked states (for the targets' check).
        train: ``(x, y, sample_weight)`` arrays, or ``None`` for a stream (then only
            ``validation_data`` is prepared).
        validation_data: ``(x, y)`` or ``(x, y, weights)``, or ``None``.
        validation_split: the fraction held out from the end of the training data.
        member_data: whether the data has a leading member axis.

    Returns:
        ``(data, val, examples)``: ``data`` is ``None`` for a stream, ``val`` without
        validation, and ``examples`` (per member) is 0 for a stream.

    Raises:
        ValueError: for bad data, as ``fit`` documents.
    """
    n = num_members(states)
    data, examples = None, 0
    if train is not None:
        data, examples = _data(where, *train, member_data, n)
    val = None
    if validation_data is not None:
        data_lib.check_validation_data(where, validation_data)
        xv, yv, *wv = validation_data
        val, _ = _data(where, xv, yv, wv[0] if wv else None, member_data, n)
    elif validation_split and data is not None:
        axis = 1 if member_data else 0
        data, val, examples = data_lib.split_validation(
            where, data, examples, validation_split, axis=axis
        )
    for checked in (data, val):
        data_lib.check_target_values(
            where,
            trainer.loss,
            trainer.model,
            states.params,
            states.model_state,
            checked,
            stacked=True,
            member_data=member_data,
        )
    return data, val, examples


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
    class_weight: Any = None,
    member_data: bool = False,
    early_stopping: EarlyStopping | None = None,
    reduce_lr: ReduceLROnPlateau | None = None,
    strategy: str = "vmap",
    chunk_size: int | None = None,
    verbose: int = 0,
    on_nonfinite: str = "stop",
    steps_per_epoch: int | None = None,
    steps_per_execution: int | None = None,
) -> FitResult:
    """Trains every member of a population, as one compiled program.

    ``x`` may instead be a stream of batches shared by all members (as for
    :meth:`Trainer.fit <jaxnn.Trainer.fit>`; then ``y`` is ``None``): each chunk of
    ``steps_per_execution`` batches is transferred once and every member takes its
    steps on it, in one program per chunk, with early stopping and the non-finite
    stop applied at each epoch's end. ``shuffle`` does not apply (the order is the
    stream's), and the validation data, if any, are arrays.

    With arrays, the program takes the number of epochs it runs as an argument (up
    to 32 a call; more are several calls, dispatched back to back), so a silent fit,
    one shown epoch by epoch and one resumed from a checkpoint all run the same
    compiled program, and agree bit for bit.

    Args:
        trainer: the :class:`~jaxnn.Trainer` the members share.
        states: a stacked state from :func:`~jaxnn.population.init`.
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
        class_weight: Keras's ``class_weight``, multiplied into the training
            data's weights (not validation's) as :meth:`Trainer.fit
            <jaxnn.Trainer.fit>` does: a dict from class index to weight shared by
            every member, or an array ``(members, classes)`` of each member's
            weights, traced (new values do not compile again). Not with a stream.
        member_data: whether the data has a leading member axis (bagging, k-fold).
        early_stopping: an :class:`~jaxnn.EarlyStopping` applied to every member
            inside the program: a stopped member's updates are masked out (its
            parameters freeze, or return to its best with ``restore_best_weights``)
            while the others go on. Its logs read NaN after it stopped.
        reduce_lr: a :class:`~jaxnn.ReduceLROnPlateau` applied to every member inside
            the program, with its rule and arguments: a member's traced
            ``learning_rate`` is reduced when its own ``monitor`` plateaus, as
            ``Trainer.fit(..., callbacks=[reduce_lr])`` reduces one network's (with
            ``early_stopping`` too, as ``callbacks=[reduce_lr, early_stopping]``).
            ``history["learning_rate"]`` gives the rate each member trained each
            epoch with.
        strategy: ``"vmap"``, ``"map"`` or ``"chunked"`` (see
            :mod:`jaxnn.population.strategy`).
        chunk_size: members per chunk, with ``strategy="chunked"``.
        verbose: 0 silent; 1 a progress bar and 2 a line per epoch, each showing the
            population's best, median and worst loss and metrics.
        steps_per_epoch: with a stream, the batches per epoch (``None``: until it
            ends).
        steps_per_execution: with a stream, the batches per compiled dispatch
            (``None``: chosen from the batch's size).
        on_nonfinite: ``"stop"`` (the default): a member whose epoch ends with a NaN
            or Inf loss, parameter, optimizer state or model state (a learning rate too high, in a
            sweep) goes back to its state at the start of that epoch and trains no
            further, while the others go on; ``history["nonfinite_epoch"]`` gives, per
            member, that 0-based epoch (-1 if none), and its logs read NaN from then on.
            ``"ignore"``: no check; such a member's params go non-finite.

    Returns:
        ``(states, history)``, a :class:`~jaxnn.train.FitResult` (also read as
        ``.state`` and ``.history``); every log has shape ``(members, epochs)``. With early
        stopping ``history["stopped_epoch"]`` gives, per member, the 0-based epoch at
        which it stopped (-1 if it never did); under ``on_nonfinite="stop"``,
        ``history["nonfinite_epoch"]`` (``(members,)``) gives the epoch it went
        non-finite (-1 if it never did).

    Raises:
        ValueError: for bad data or settings, as :meth:`Trainer.fit`; a monitor
            that is not a log (the message lists the logs); a ``reduce_lr`` whose
            optimizer traces no constant ``learning_rate``; a ``class_weight`` of
            the wrong shape or with a negative or non-finite weight.
        TypeError: for an ``early_stopping`` that is not an ``EarlyStopping``, a
            ``reduce_lr`` that is not a ``ReduceLROnPlateau``, or a
            ``class_weight`` that is neither a dict nor an array.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, jaxnn as nn
        >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        >>> y = x.sum(axis=1, keepdims=True)
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> states = nn.population.init(trainer, jax.random.key(0), x, 16,
        ...                             hyperparams={"learning_rate": jnp.logspace(-3, -1, 16)})
        >>> states, history = nn.population.fit(trainer, states, x, y, epochs=5, batch_size=16)
        >>> history["loss"].shape
        (16, 5)
    """
    where = "population.fit"
    check_trainer(where, trainer)
    n = num_members(states)
    chunk_size = check_strategy(strategy, chunk_size, n)
    if on_nonfinite == "continue":
        raise ValueError(
            f"{where}: on_nonfinite='continue' is now called 'ignore' (no check), the word "
            "every jaxnn entry point uses."
        )
    check_choice(where, "on_nonfinite", on_nonfinite, ("stop", "ignore"))
    stopping = _stopping(early_stopping)
    plateau = _plateau(reduce_lr)
    if plateau is not None:
        traced_learning_rate(f"{where}: reduce_lr", states.opt_state)
    verbose = check_verbose(where, verbose)
    batch_size = data_lib.check_batch_size(where, batch_size)
    # The epoch counter inside the program is an int32.
    epochs = check_positive_int(where, "epochs", epochs, minimum=0, maximum=2**31 - 1)
    shuffle = check_bool(where, "shuffle", shuffle)
    member_data = check_bool(where, "member_data", member_data)
    validation_split = data_lib.check_validation_split(where, validation_split)

    streamed = stream_lib.is_stream(x)
    if streamed:
        if class_weight is not None:
            raise ValueError(
                f"{where}: class_weight needs the whole targets, but x is a stream. Put "
                "per-example weights in each batch, (x, y, sample_weight), instead."
            )
        if y is not None or sample_weight is not None or member_data or validation_split:
            raise ValueError(
                f"{where}: x is a stream of batches shared by every member, so targets "
                "and weights come in each batch as (x, y) or (x, y, sample_weight): pass "
                "y=None, no sample_weight and no validation_split (pass validation_data "
                "arrays), and member_data=False."
            )
        if steps_per_epoch is not None:
            check_positive_int(where, "steps_per_epoch", steps_per_epoch)
        if steps_per_execution is not None:
            check_positive_int(where, "steps_per_execution", steps_per_execution)
        head = stream_lib.first_batch(where, x)  # read once: a generator runs one pass
    elif steps_per_epoch is not None or steps_per_execution is not None:
        raise ValueError(
            f"{where}: steps_per_epoch and steps_per_execution are for streamed data (an "
            "iterator, generator or function of batches); arrays run each epoch as one "
            "program. Drop them, or pass a stream."
        )
    data, val, examples = prepare_data(
        where,
        trainer,
        states,
        None if streamed else (x, y, sample_weight),
        validation_data,
        validation_split,
        member_data,
    )
    if not streamed:
        # A batch never outgrows the data: a padded batch of 2**40 rows is no help.
        batch_size = min(batch_size, examples)
    weighting = None
    if class_weight is not None:  # Keras's: the training data only, after the split
        weighting = _class_weighting(where, class_weight, trainer, states, data, member_data, n)
    watchers = [("early_stopping", early_stopping), ("reduce_lr", reduce_lr)]
    watchers = [(name, cb) for name, cb in watchers if cb is not None]
    for name, cb in watchers:
        if cb.monitor.startswith("val_") and val is None:
            raise ValueError(
                f"{where}: {name} monitors {cb.monitor!r} but there is no validation "
                "data; pass validation_data or validation_split, or monitor 'loss'."
            )
    if watchers:
        # One member's training data: it tells how many logs a metric of several
        # values (F1Score(average=None)) writes.
        if streamed:
            one = head[0][:2]
        else:
            one = (data.x, data.y)
            one = _member_spec(one) if member_data else one
        state = _member_spec(states)
        names = trainer.log_names(validation=val is not None, state=state, x=one[0], y=one[1])
        check_monitors(where, [cb for _, cb in watchers], names)

    rule = None if stopping is None else stopping_rule(*stopping[1:4])
    carry = _Carry(
        state=states,
        stop=None if rule is None else rule.init((n,), jnp),
        best_state=states if stopping is not None and stopping.restore else None,
        bad_epoch=None if on_nonfinite == "ignore" else jnp.full((n,), -1, jnp.int32),
        epoch=jnp.zeros((n,), jnp.int32),
        plateau=None if plateau is None else plateau.rule().init((n,), jnp),
    )
    # One compiled program runs k <= EPOCHS_PER_CALL epochs (k is traced), whatever
    # `epochs` is: a run shown epoch by epoch, a silent one and one resumed from a
    # checkpoint execute the same program, so they agree bit for bit.
    run = lambda c, k: _run_jit(
        trainer,
        c,
        data,
        val,
        weighting,
        np.int32(k),
        epochs=EPOCHS_PER_CALL,
        batch_size=batch_size,
        shuffle=shuffle,
        stopping=stopping,
        plateau=plateau,
        member_data=member_data,
        strategy=strategy,
        chunk_size=chunk_size,
        n=n,
    )
    if streamed:
        run = _stream_runner(
            where,
            trainer,
            states,
            x,
            head,
            val,
            steps=steps_per_epoch,
            given_k=steps_per_execution,
            stopping=stopping,
            plateau=plateau,
            strategy=strategy,
            chunk_size=chunk_size,
        )
        carry, history = _fit_per_epoch(run, carry, epochs, verbose, n)
    elif verbose == 0:
        carry, history = _fit_silent(run, carry, epochs)
    else:
        carry, history = _fit_per_epoch(run, carry, epochs, verbose, n)
    if carry.bad_epoch is not None:
        history["nonfinite_epoch"] = np.asarray(carry.bad_epoch)
    states = carry.state
    if carry.stop is not None:
        history["stopped_epoch"] = np.asarray(carry.stop.stopped_epoch)
        if stopping.restore:
            states = carry.best_state
    return FitResult(states, History(history))


EPOCHS_PER_CALL = 32
"""The epochs one call of ``fit``'s compiled program runs at most (and its logs
hold). The number it runs is an argument, not part of the program, so that every
``fit`` of a population (silent or not, straight or resumed, of any ``epochs``)
runs the same program: XLA's arithmetic may differ between two programs, even ones
that differ only in a loop's trip count (a one-epoch program's loop is removed), so
a resumed run would not match a straight one bit for bit."""


def _fit_silent(run: Any, carry: _Carry, epochs: int) -> tuple[_Carry, dict[str, np.ndarray]]:
    """All epochs, in calls of up to :data:`EPOCHS_PER_CALL` dispatched back to back
    (100 epochs: 4 calls), their logs read once at the end."""
    parts = []
    for done in range(0, epochs, EPOCHS_PER_CALL):
        count = min(EPOCHS_PER_CALL, epochs - done)
        carry, logs = run(carry, count)
        parts.append((count, logs))
    parts = jax.device_get(parts)
    if not parts:
        return carry, {}
    names = parts[0][1]
    return carry, {
        name: np.concatenate([np.asarray(logs[name])[:, :count] for count, logs in parts], 1)
        for name in names
    }


def _fit_per_epoch(
    run: Any, carry: _Carry, epochs: int, verbose: int, n: int
) -> tuple[_Carry, dict[str, np.ndarray]]:
    """One program per epoch, reporting the population's progress after each."""
    progress = Progress(verbose, epochs)
    collected: dict[str, list] = {}
    for epoch in range(epochs):
        start = time.perf_counter()
        carry, logs = run(carry, 1)
        logs = {k: np.asarray(v)[:, 0] for k, v in jax.device_get(logs).items()}
        for k, v in logs.items():
            collected.setdefault(k, []).append(v)
        progress.epoch_end(epoch, logs, time.perf_counter() - start)
        done = np.zeros(n, bool) if carry.stop is None else np.asarray(carry.stop.stopped)
        if carry.bad_epoch is not None:
            done = done | (np.asarray(carry.bad_epoch) >= 0)
        if done.all() and epoch + 1 < epochs:
            # Every member has stopped: the epochs left would only log NaN, as they do
            # when all epochs run as one program, so write that instead.
            for v in collected.values():
                v.extend([np.full_like(v[0], np.nan)] * (epochs - epoch - 1))
            break
    return carry, {k: np.stack(v, axis=1) for k, v in collected.items()}


# The seam population-based training (population/pbt.py) runs its rounds on: one
# member's carry through the epochs, and every member's epochs as fit runs them.
Carry = _Carry
run_epochs = _run
