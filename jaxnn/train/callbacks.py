"""What runs around the compiled epochs: ``History``, callbacks, and early stopping.

Early stopping is written once, as a pure rule over arrays (:func:`stopping_rule`:
``init`` and ``update``). The host callback :class:`EarlyStopping` runs it on NumPy
scalars after each epoch; :func:`jaxnn.population.fit` runs the same rule inside its
compiled program, one row per member.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import matplotlib.figure

from jaxnn._checks import check_positive_int, did_you_mean, resolve_mode

__all__ = [
    "Callback",
    "EarlyStopping",
    "FitResult",
    "History",
    "LambdaCallback",
    "StopState",
    "StoppingRule",
    "as_callback",
    "as_callbacks",
    "check_monitors",
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
    """Something run on the host after each epoch. Override what you need.

    ``on_epoch_end`` returning ``True`` stops training after that epoch. The state
    passed is a :class:`~jaxnn.TrainState`.
    """

    def on_train_begin(self, state: Any) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: Any) -> bool | None:
        """Called after each epoch with its 0-based index and its logs."""

    def on_train_end(self, state: Any) -> Any:
        """Called once at the end; may return a different state (best weights)."""
        return state


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
    """Refuses, before training, an :class:`EarlyStopping` whose ``monitor`` is not one
    of the logs ``names`` (a misspelling would otherwise surface after the first epoch).

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
        if isinstance(cb, EarlyStopping) and cb.monitor not in names:
            raise ValueError(
                f"{where}: EarlyStopping: monitor {cb.monitor!r} is not in the logs; they "
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


class EarlyStopping(Callback):
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
