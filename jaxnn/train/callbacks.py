"""What runs around the compiled epochs: ``History``, callbacks, and early stopping.

A callback may steer training between epochs by returning a new state (see
:class:`Callback`); :mod:`jaxnn.train.steering` has the callbacks that change the
learning rate that way, with no recompilation, and those that record the logs.

Early stopping is written once, as a pure rule over arrays (:func:`stopping_rule`:
``init`` and ``update``). The host callback :class:`EarlyStopping` runs it on NumPy
scalars after each epoch; :func:`jaxnn.population.fit` runs the same rule inside its
compiled program, one row per member.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np

if TYPE_CHECKING:
    import matplotlib.figure

from jaxnn._checks import check_positive_int, did_you_mean, resolve_mode
from jaxnn.train.programs import TrainState

__all__ = [
    "Callback",
    "EarlyStopping",
    "FitResult",
    "History",
    "LambdaCallback",
    "MonitorCallback",
    "Steer",
    "StopState",
    "StoppingRule",
    "as_callback",
    "as_callbacks",
    "check_monitors",
    "run_callbacks",
    "steer",
    "stopping_rule",
]


class History(dict):
    """Per-epoch logs: ``history["loss"]``, ``history["val_accuracy"]``, ... as arrays.

    A ``dict`` from log name to a NumPy array with one value per epoch run.
    ``history.history`` is the same dict, for code written for Keras.

    Example:
        >>> h = History({"loss": np.array([0.5, 0.25])})
        >>> h.history["loss"].tolist(), h.epochs
        ([0.5, 0.25], 2)
    """

    @property
    def history(self) -> dict[str, np.ndarray]:
        return self

    @property
    def epochs(self) -> int:
        """How many epochs were run."""
        # A population's logs are (members, epochs): the epochs are the last axis.
        return int(np.shape(next(iter(self.values())))[-1]) if self else 0

    def plot(self, names: Iterable[str] | None = None) -> matplotlib.figure.Figure:
        """Plots the logs per epoch in one figure: a panel per log, validation beside
        training.

        Each panel shows a log (``loss``, ``accuracy``, ...) against the epoch, with
        its ``val_`` twin as a dashed line when there is one. A population's logs
        (``(members, epochs)``) draw one thin line per member. Counters that are not
        curves (``skipped_steps``, ``stopped_epoch``, ``nonfinite_epoch``) are left
        out. matplotlib is imported only here (``pip install matplotlib``, or the
        ``[examples]`` extra); save the figure with ``fig.savefig("history.png")``.

        Args:
            names: the logs to plot (training names: ``["loss"]``), in that order;
                ``None`` for every log.

        Returns:
            The ``matplotlib.figure.Figure``.

        Raises:
            ImportError: if matplotlib is not installed, with the command to install it.
            ValueError: for a name that is not a log (the message lists the logs), or
                a history without epochs.

        Example:
            >>> h = History({"loss": np.array([0.9, 0.5]), "val_loss": np.array([1.0, 0.7]),
            ...              "accuracy": np.array([0.6, 0.8])})
            >>> fig = h.plot()
            >>> [ax.get_title() for ax in fig.axes]
            ['loss', 'accuracy']
            >>> import matplotlib.pyplot as plt; plt.close(fig)
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError(
                "History.plot needs matplotlib, which is not installed: pip install "
                "matplotlib (or pip install -e '.[examples]' in a jaxnn checkout)."
            ) from e
        skip = {"skipped_steps", "stopped_epoch", "nonfinite_epoch"}
        logs = [k for k in self if not k.startswith("val_") and k not in skip]
        logs += [k[4:] for k in self if k.startswith("val_") and k[4:] not in self]
        if names is None:
            names = logs
        else:
            names = [names] if isinstance(names, str) else list(names)
            for name in names:
                if name not in logs:
                    raise ValueError(
                        f"History.plot: {name!r} is not a log of this history; its logs "
                        f"are {logs}.{did_you_mean(str(name), logs)}"
                    )
        if not names or not self.epochs:
            raise ValueError(
                "History.plot: this history holds no epochs to plot (fit ran 0 epochs)."
            )
        fig, axes = plt.subplots(
            1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False, layout="constrained"
        )
        for ax, name in zip(axes[0], names, strict=True):
            for log, style, label in ((name, "-", "training"), (f"val_{name}", "--", "validation")):
                if log not in self:
                    continue
                values = np.asarray(self[log], dtype=np.float64)
                rows = values.reshape(-1, values.shape[-1])
                epochs = np.arange(1, rows.shape[-1] + 1)
                width, alpha = (1.5, 1.0) if len(rows) == 1 else (0.8, 0.4)
                color = "C0" if style == "-" else "C1"
                for i, row in enumerate(rows):
                    ax.plot(
                        epochs, row, style, color=color, linewidth=width, alpha=alpha,
                        label=label if i == 0 else None,
                    )  # fmt: skip
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.legend()
        return fig


class FitResult(NamedTuple):
    """What ``fit`` returns: unpacks as ``state, history = trainer.fit(...)``.

    Keras code that keeps the result whole reads on too: ``result.history["loss"]``.

    Attributes:
        state: the trained :class:`~jaxnn.TrainState` (a population's stacked one).
        history: the :class:`History` of per-epoch logs.

    Example:
        >>> result = FitResult("state", History({"loss": np.array([0.5, 0.25])}))
        >>> state, history = result
        >>> result.history["loss"].tolist(), result.state
        ([0.5, 0.25], 'state')
    """

    state: Any
    history: History


class Callback:
    """Something run on the host around each epoch. Override what you need.

    ``fit`` calls, for each callback in the order given:

    * ``on_train_begin(state)`` once, before the first epoch;
    * ``on_epoch_begin(epoch, state)`` before each epoch;
    * ``on_epoch_end(epoch, logs, state)`` after each epoch (and its validation);
    * ``on_train_end(state)`` once at the end, which returns the state ``fit``
      hands back (``EarlyStopping``'s best weights).

    **Steering.** What ``on_epoch_begin`` and ``on_epoch_end`` return decides what
    ``fit`` does next:

    * ``None`` or ``False``: go on as before;
    * ``True`` (``on_epoch_end`` only): stop after this epoch;
    * a :class:`~jaxnn.TrainState`: go on from that state (a new learning rate in
      its optimizer state, other weights, ...);
    * :class:`Steer` ``(state=..., stop=...)``: both at once.

    A new state must have the layout of the one passed in (the same tree, shapes
    and dtypes): values change, never the compiled program. Change traced
    hyperparameters with :func:`jaxnn.optimizers.replace_hyperparams`, as
    :class:`ReduceLROnPlateau` does. The next callback in the list sees the new
    state. ``epoch`` is 0-based. ``logs`` is the epoch's dict of floats, shared by
    the callbacks in order, as in Keras: a callback may add to it
    (``logs["learning_rate"]``), and what is there after the last callback goes
    into the history, the progress line and checkpoints.

    Example:
        >>> import jax, numpy as np
        >>> import jaxnn as nn
        >>> class Halve(nn.Callback):  # halve the learning rate after epoch 0
        ...     def on_epoch_end(self, epoch, logs, state):
        ...         if epoch == 0:
        ...             lr = nn.optimizers.hyperparams(state.opt_state)["learning_rate"]
        ...             return state._replace(opt_state=nn.optimizers.replace_hyperparams(
        ...                 state.opt_state, {"learning_rate": lr / 2}))
        >>> x = np.ones((8, 2), np.float32)
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> state, _ = trainer.fit(trainer.init(jax.random.key(0), x), x, x[:, :1],
        ...                        epochs=2, verbose=0, callbacks=[Halve()])
        >>> float(nn.optimizers.hyperparams(state.opt_state)["learning_rate"])
        0.004999999888241291
    """

    def on_train_begin(self, state: Any) -> None:
        """Called once before the first epoch."""

    def on_epoch_begin(self, epoch: int, state: Any) -> Any:
        """Called before each epoch with its 0-based index; may return a new state."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: Any) -> Any:
        """Called after each epoch with its 0-based index and its logs; may return a
        stop flag, a new state, or a :class:`Steer`."""

    def on_train_end(self, state: Any) -> Any:
        """Called once at the end; may return a different state (best weights)."""
        return state


class MonitorCallback(Callback):
    """A callback that watches one log, its ``monitor`` attribute (``"val_loss"``).

    ``fit`` refuses, before the first epoch, one whose monitor is not among its
    logs (:func:`check_monitors`). :class:`EarlyStopping` and
    :class:`~jaxnn.ReduceLROnPlateau` are such callbacks; so may yours be.
    """

    monitor: str


class Steer(NamedTuple):
    """What a callback returns to change the state and stop at once.

    Attributes:
        state: the :class:`~jaxnn.TrainState` to go on from, or ``None`` to keep it.
        stop: stop training after this epoch (``on_epoch_end`` only).

    Example:
        >>> Steer(stop=True)
        Steer(state=None, stop=True)
    """

    state: Any = None
    stop: bool = False


def _is_flag(value: Any) -> bool:
    """A Python or NumPy bool, or a 0-d boolean array (``logs["loss"] < 0.1``)."""
    return isinstance(value, (bool, np.bool_)) or (
        getattr(value, "dtype", None) == np.bool_ and np.ndim(value) == 0
    )


def _check_layout(where: str, old: TrainState, new: TrainState) -> None:
    """Refuses a new state whose tree, shapes, dtypes or weak types differ from the
    old one's: fed to the compiled epoch, it would compile it again (or fail)."""
    old_leaves, old_tree = jax.tree_util.tree_flatten_with_path(old)
    new_leaves, new_tree = jax.tree_util.tree_flatten_with_path(new)
    fix = (
        "A callback may change the values of the state, not its layout; change traced "
        "hyperparameters with jaxnn.optimizers.replace_hyperparams, and arrays with "
        "arrays of the same shape and dtype."
    )
    if old_tree != new_tree:
        raise ValueError(
            f"{where} returned a TrainState whose tree differs from the one it was given "
            f"({new_tree} instead of {old_tree}). {fix}"
        )

    def layout(x: Any) -> tuple:
        dtype = x.dtype if hasattr(x, "dtype") else np.result_type(x)
        return np.shape(x), dtype, bool(getattr(x, "weak_type", False))

    for (path, a), (_, b) in zip(old_leaves, new_leaves, strict=True):
        if layout(a) != layout(b):
            (shape, dtype, weak), (shape2, dtype2, weak2) = layout(a), layout(b)
            given = f"shape {shape2}, dtype {dtype2}" + (", weakly typed" if weak2 else "")
            wanted = f"shape {shape}, dtype {dtype}" + (", weakly typed" if weak else "")
            raise ValueError(
                f"{where} returned a TrainState whose leaf state{jax.tree_util.keystr(path)} "
                f"has {given}, but the state it was given has {wanted}. {fix}"
            )


def steer(where: str, callback: Callback, hook: str, result: Any, state: Any) -> tuple[Any, bool]:
    """Reads what a callback's hook returned: ``(state to go on from, stop)``.

    The rule is :class:`Callback`'s: ``None``/``False`` go on, ``True`` stops, a
    :class:`~jaxnn.TrainState` replaces the state, a :class:`Steer` does both. A new
    state is checked to have the old one's layout.

    Args:
        where: who asks, for messages (``"Trainer.fit"``).
        callback: the callback, named in messages.
        hook: ``"on_epoch_begin"`` or ``"on_epoch_end"``.
        result: what the hook returned.
        state: the state the hook was given.

    Returns:
        ``(state, stop)``: the state to go on from (``state`` itself if unchanged)
        and whether to stop after this epoch.

    Raises:
        TypeError: for a result of another kind (a tuple, a number, ...), or a
            :class:`Steer` whose ``state`` is not a TrainState or ``stop`` not a bool.
        ValueError: for a stop asked by ``on_epoch_begin``, or a new state of
            another layout.

    Example:
        >>> cb = Callback()
        >>> steer("fit", cb, "on_epoch_end", True, "s")
        ('s', True)
        >>> steer("fit", cb, "on_epoch_end", None, "s")
        ('s', False)
    """
    at = f"{where}: {type(callback).__name__}.{hook}"
    if result is None:
        return state, False
    if isinstance(result, Steer):
        new, stop = result
        if not _is_flag(stop):
            raise TypeError(f"{at} returned a Steer whose stop is {stop!r}; pass True or False.")
    elif isinstance(result, TrainState):
        new, stop = result, False
    elif _is_flag(result):
        new, stop = None, result
    else:
        shown = repr(result)
        shown = shown if len(shown) <= 60 else f"a {type(result).__name__}"
        raise TypeError(
            f"{at} returned {shown}; a callback returns None or False (go on), True (stop "
            "after this epoch), a TrainState to go on from, or "
            "jaxnn.Steer(state=..., stop=...) for both."
        )
    if stop and hook == "on_epoch_begin":
        raise ValueError(
            f"{at} asked to stop; an epoch is stopped after it runs. Return True (or "
            "Steer(stop=True)) from on_epoch_end instead."
        )
    if new is None or new is state:
        return state, bool(stop)
    if not isinstance(new, TrainState):
        raise TypeError(
            f"{at} returned a Steer whose state is a {type(new).__name__}; pass the "
            "TrainState to go on from, e.g. state._replace(opt_state=...), or None."
        )
    if isinstance(state, TrainState):
        _check_layout(at, state, new)
        new = jax.tree.map(_placed_as, state, new)
    return new, bool(stop)


def _placed_as(old: Any, new: Any) -> Any:
    """``new`` with the sharding of the leaf ``old`` it replaces when that spans several
    devices (a mesh, under data parallelism), so that the compiled epoch takes it as it
    took ``old``; on one device it is left as made (committing it to the device would
    add a dispatch-cache entry)."""
    if new is old or not isinstance(old, jax.Array) or len(old.sharding.device_set) == 1:
        return new
    return jax.device_put(new, old.sharding)


def run_callbacks(
    where: str, callbacks: Iterable[Callback], hook: str, state: Any, epoch: int, *logs: dict
) -> tuple[Any, bool]:
    """Calls ``hook`` of each callback in turn, each on the state the previous one
    left (:func:`steer`), and says whether any asked to stop.

    Args:
        where: who asks, for messages (``"Trainer.fit"``).
        callbacks: the callbacks, in order.
        hook: ``"on_epoch_begin"`` (called as ``(epoch, state)``) or
            ``"on_epoch_end"`` (called as ``(epoch, logs, state)``).
        state: the current state.
        epoch: the 0-based epoch.
        *logs: for ``on_epoch_end``, the epoch's logs (one dict, shared).

    Returns:
        ``(state, stop)``.

    Example:
        >>> run_callbacks("fit", [LambdaCallback(lambda e, logs: e == 2)], "on_epoch_end",
        ...               "s", 2, {"loss": 0.5})
        ('s', True)
    """
    stop = False
    for cb in callbacks:
        result = getattr(cb, hook)(epoch, *logs, state)
        state, halt = steer(where, cb, hook, result, state)
        stop = stop or halt
    return state, stop


class LambdaCallback(Callback):
    """Wraps a plain function ``fn(epoch, logs)``; returning ``True`` stops training.

    Example:
        >>> seen = []
        >>> cb = LambdaCallback(lambda epoch, logs: seen.append(epoch))
        >>> cb.on_epoch_end(0, {"loss": 1.0}, None); seen
        [0]
    """

    def __init__(self, fn: Callable[[int, dict[str, float]], bool | None]):
        self.fn = fn

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: Any) -> bool | None:
        del state
        return self.fn(epoch, logs)


def as_callback(cb: Callback | Callable) -> Callback:
    """A :class:`Callback` as it is; a function ``fn(epoch, logs)`` wrapped.

    Raises:
        TypeError: for anything else.

    Example:
        >>> isinstance(as_callback(lambda epoch, logs: None), LambdaCallback)
        True
    """
    if isinstance(cb, Callback):
        return cb
    if isinstance(cb, type):
        raise TypeError(
            f"a callback must be a jaxnn.Callback object or a function fn(epoch, logs), got "
            f"the class {cb.__name__}; pass an instance, e.g. {cb.__name__}(...)."
        )
    if callable(cb):
        return LambdaCallback(cb)
    raise TypeError(
        f"a callback must be a jaxnn.Callback or a function fn(epoch, logs), got "
        f"{type(cb).__name__}."
    )


def as_callbacks(where: str, callbacks: Any) -> list[Callback]:
    """``fit``'s ``callbacks`` as a list of :class:`Callback`: ``None`` is none, and one
    callback (or function) is a list of one.

    Raises:
        TypeError: for anything else than ``None``, a callback, or an iterable of them.

    Example:
        >>> as_callbacks("fit", None)
        []
        >>> [type(cb).__name__ for cb in as_callbacks("fit", lambda epoch, logs: None)]
        ['LambdaCallback']
    """
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or (callable(callbacks) and not isinstance(callbacks, type)):
        return [as_callback(callbacks)]
    if not isinstance(callbacks, (list, tuple, Iterator)):
        raise TypeError(
            f"{where}: callbacks must be a list of jaxnn.Callback objects or functions "
            f"fn(epoch, logs), or None; got {type(callbacks).__name__}."
        )
    return [as_callback(cb) for cb in callbacks]


def check_monitors(where: str, callbacks: Iterable[Callback], names: Iterable[str]) -> None:
    """Refuses, before training, a :class:`MonitorCallback` (:class:`EarlyStopping`,
    ``ReduceLROnPlateau``) whose ``monitor`` is not one of the logs ``names`` (a
    misspelling would otherwise surface after the first epoch).

    Raises:
        ValueError: naming the monitor, the logs and the closest names.

    Example:
        >>> check_monitors("fit", [EarlyStopping("loss")], ["loss", "accuracy"])  # silent
        >>> try:
        ...     check_monitors("fit", [EarlyStopping("los")], ["loss", "accuracy"])
        ... except ValueError as e:
        ...     print(e)
        fit: EarlyStopping: monitor 'los' is not in the logs; they are ['accuracy', 'loss']. \
Did you mean 'loss'? Monitor one of those (val_* needs validation data).
    """
    names = sorted(names)
    for cb in callbacks:
        if isinstance(cb, MonitorCallback) and cb.monitor not in names:
            raise ValueError(
                f"{where}: {type(cb).__name__}: monitor {cb.monitor!r} is not in the logs; they "
                f"are {names}.{did_you_mean(cb.monitor, names)} Monitor one of those (val_* "
                "needs validation data)."
            )


# --------------------------------------------------------------- the stopping rule


class StopState(NamedTuple):
    """Early stopping's bookkeeping: arrays of one shape (``()``, or ``(members,)``).

    Attributes:
        best: the best monitored value so far.
        wait: epochs since the last improvement.
        stopped: whether training has stopped.
        stopped_epoch: the 0-based epoch at which it stopped, or -1.
        epoch: how many epochs the rule has seen.
    """

    best: Any
    wait: Any
    stopped: Any
    stopped_epoch: Any
    epoch: Any


class StoppingRule(NamedTuple):
    """Early stopping as two pure functions, in the manner of optax.

    ``init(shape) -> StopState``; ``update(stop, value, active) -> (stop, improved)``.
    ``value`` is the monitored log of the epoch just run; ``active`` is False for an
    entry whose epoch does not count (already stopped, or halted elsewhere), which
    then changes nothing. ``improved`` says the epoch was a new best. Both take
    ``xp``, the array module: NumPy on the host, ``jax.numpy`` inside a program.
    """

    init: Callable[..., StopState]
    update: Callable[..., tuple[StopState, Any]]


def stopping_rule(patience: int, min_delta: float, mode: str) -> StoppingRule:
    """The rule: stop after ``patience`` epochs that did not improve by ``min_delta``.

    Args:
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"`` or ``"max"``.

    Returns:
        A :class:`StoppingRule`.

    Example:
        >>> rule = stopping_rule(patience=1, min_delta=0.0, mode="min")
        >>> stop = rule.init((), np)
        >>> for value in [3.0, 2.0, 2.5, 2.4]:
        ...     stop, improved = rule.update(stop, value, True, np)
        >>> bool(stop.stopped), int(stop.stopped_epoch)
        (True, 3)
    """
    worst = math.inf if mode == "min" else -math.inf

    def init(shape: tuple[int, ...], xp: Any) -> StopState:
        return StopState(
            best=xp.full(shape, worst, xp.float32),
            wait=xp.zeros(shape, xp.int32),
            stopped=xp.zeros(shape, bool),
            stopped_epoch=xp.full(shape, -1, xp.int32),
            epoch=xp.zeros(shape, xp.int32),
        )

    def update(stop: StopState, value: Any, active: Any, xp: Any) -> tuple[StopState, Any]:
        active = active & ~stop.stopped
        better = value < stop.best - min_delta if mode == "min" else value > stop.best + min_delta
        improved = active & better
        wait = xp.where(active, xp.where(better, 0, stop.wait + 1), stop.wait).astype(xp.int32)
        stopping = active & (wait > patience)
        new = StopState(
            best=xp.where(improved, value, stop.best).astype(xp.float32),
            wait=wait,
            stopped=stop.stopped | stopping,
            stopped_epoch=xp.where(stopping, stop.epoch, stop.stopped_epoch).astype(xp.int32),
            epoch=(stop.epoch + 1).astype(xp.int32),
        )
        return new, improved

    return StoppingRule(init, update)


class EarlyStopping(MonitorCallback):
    """Stops when a monitored log has not improved for ``patience`` epochs.

    The same rule (:func:`stopping_rule`) stops members of a population inside the
    compiled program when passed as ``population.fit(..., early_stopping=...)``.

    Args:
        monitor: the log to watch, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"``, or ``"auto"`` (max for accuracy-like names).
        restore_best_weights: hand back the state of the best epoch at the end.

    Raises:
        ValueError: for an unknown ``mode``, a negative ``patience`` or a non-finite
            ``min_delta``.
        TypeError: for a ``monitor`` that is not a string or a ``min_delta`` that is
            not a number.

    Example:
        >>> stop = EarlyStopping("loss", patience=1)
        >>> stop.on_train_begin(None)
        >>> [stop.on_epoch_end(e, {"loss": v}, None) for e, v in enumerate([3.0, 2.0, 2.5, 2.4])]
        [False, False, False, True]
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
    ):
        if not isinstance(monitor, str):
            raise TypeError(
                f"EarlyStopping: monitor must be the name of a log such as 'val_loss', got "
                f"{type(monitor).__name__}."
            )
        self.mode = resolve_mode("EarlyStopping", mode, monitor)
        self.patience = check_positive_int("EarlyStopping", "patience", patience, minimum=0)
        self.monitor = monitor
        if isinstance(min_delta, (bool, np.bool_)) or not isinstance(
            min_delta, (int, float, np.integer, np.floating)
        ):
            raise TypeError(
                f"EarlyStopping: min_delta must be a number, got {type(min_delta).__name__}."
            )
        if not math.isfinite(min_delta):
            raise ValueError(f"EarlyStopping: min_delta must be finite, got {min_delta!r}.")
        self.min_delta = abs(float(min_delta))
        self.restore_best_weights = restore_best_weights
        self.rule = stopping_rule(self.patience, self.min_delta, self.mode)

    def on_train_begin(self, state: Any) -> None:
        self.stop = self.rule.init((), np)
        self.best_epoch = -1
        self.best_state = None

    @property
    def best(self) -> float:
        """The best monitored value so far."""
        return float(self.stop.best)

    @property
    def stopped_epoch(self) -> int | None:
        """The 0-based epoch at which training stopped, or ``None``."""
        epoch = int(self.stop.stopped_epoch)
        return None if epoch < 0 else epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: Any) -> bool:
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping: monitor {self.monitor!r} is not in the logs; they have "
                f"{sorted(logs)}. Monitor one of those (val_* needs validation data)."
            )
        self.stop, improved = self.rule.update(
            self.stop, np.float32(logs[self.monitor]), np.bool_(True), np
        )
        if improved:
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_state = state
        return bool(self.stop.stopped)

    def on_train_end(self, state: Any) -> Any:
        if self.restore_best_weights and self.best_state is not None:
            return self.best_state
        return state
