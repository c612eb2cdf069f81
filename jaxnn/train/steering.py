"""Callbacks that steer training and record it: ``ReduceLROnPlateau``,
``LearningRateScheduler``, ``CSVLogger`` and ``TensorBoard``, as Keras has them.

The first two change the learning rate between epochs the way any callback may
change the state (see :class:`~jaxnn.Callback`): they return the state with a new
traced ``learning_rate`` (:func:`jaxnn.optimizers.replace_hyperparams`), so the
compiled epoch runs on unchanged, with no recompilation. Both add the rate each epoch
trained with to its logs, as ``learning_rate``. The last two write each epoch's logs
to a CSV file or as TensorBoard scalars (through ``tensorboardX``, the
``[tensorboard]`` extra).

Reduce-on-plateau is written once, as a pure rule over arrays (:func:`plateau_rule`),
as early stopping is: :class:`ReduceLROnPlateau` runs it on NumPy scalars after each
epoch, and ``population.fit(..., reduce_lr=...)`` runs it inside its compiled
program, one entry per member.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jaxnn._checks import check_bool, check_directory, check_positive_int, resolve_mode
from jaxnn.optimizers import hyperparams, replace_hyperparams
from jaxnn.train.callbacks import Callback, MonitorCallback
from jaxnn.train.programs import TrainState

__all__ = [
    "CSVLogger",
    "LearningRateScheduler",
    "PlateauRule",
    "PlateauState",
    "ReduceLROnPlateau",
    "TensorBoard",
    "plateau_rule",
    "traced_learning_rate",
]


def _scheduled(node: Any, name: str) -> bool:
    """Whether an ``optax.inject_hyperparams`` state anywhere in ``node`` computes
    ``name`` from a schedule (then it is set again at every step)."""
    if name in (getattr(node, "hyperparams_states", None) or {}):
        return True
    if isinstance(node, dict):
        return any(_scheduled(c, name) for c in node.values())
    if isinstance(node, (tuple, list)):
        return any(_scheduled(c, name) for c in node)
    return False


def traced_learning_rate(where: str, opt_state: Any) -> Any:
    """The traced ``learning_rate`` of an optimizer state, or an error that says how
    to trace one.

    A callback (or a population's in-program rule) can change the rate only when it
    is a traced hyperparameter (:func:`jaxnn.optimizers.hyperparams`) that no optax
    schedule sets again at every step.

    Args:
        where: who asks, for the message (``"ReduceLROnPlateau"``).
        opt_state: the optimizer state (``TrainState.opt_state``; a population's
            stacked one gives a ``(members,)`` rate).

    Returns:
        The learning rate array: ``()`` for one network, ``(members,)`` for a
        population.

    Raises:
        ValueError: for an optimizer that traces no ``learning_rate``, or takes it
            from a schedule.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxnn as nn
        >>> opt_state = nn.optimizers.get("sgd", learning_rate=0.1).init({"w": jnp.zeros(2)})
        >>> float(traced_learning_rate("example", opt_state))
        0.10000000149011612
    """
    found = hyperparams(opt_state)
    if "learning_rate" not in found:
        raise ValueError(
            f"{where}: the optimizer traces no learning_rate (its traced hyperparameters: "
            f"{sorted(found)}), so it cannot change during fit. Name the optimizer "
            "(optimizer='adam', or jaxnn.optimizers.get('adam', learning_rate=1e-3)), or "
            "wrap an optax one in optax.inject_hyperparams: "
            "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)."
        )
    if _scheduled(opt_state, "learning_rate"):
        raise ValueError(
            f"{where}: the learning_rate is an optax schedule, which sets it again at every "
            "step, so a callback cannot change it. Pass a constant learning_rate, or put "
            "the change into the schedule."
        )
    return found["learning_rate"]


def _learning_rate(where: str, state: Any) -> float:
    """The traced learning rate of a single network's state, or an error that says
    how to trace one."""
    if not isinstance(state, TrainState):
        raise TypeError(
            f"{where}: needs the TrainState that Trainer.fit passes, got {type(state).__name__}."
        )
    lr = traced_learning_rate(where, state.opt_state)
    if np.ndim(lr) != 0:
        raise ValueError(
            f"{where}: the learning_rate has shape {np.shape(lr)}, not (): this callback "
            "steers one network's Trainer.fit, not a population's members. For those, pass "
            "it to population.fit(..., reduce_lr=...), which runs it per member."
        )
    return float(lr)


def _with_learning_rate(state: TrainState, lr: float, where: str) -> TrainState:
    """``state`` with its traced learning rate replaced (no recompilation)."""
    opt_state = replace_hyperparams(state.opt_state, {"learning_rate": lr}, where=where)
    return state._replace(opt_state=opt_state)


def _check_number(where: str, what: str, value: Any, *, low: float, high: float = math.inf):
    """``value`` as a float if it is a real number in ``[low, high)``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{where}: {what} must be a number, got {type(value).__name__}.")
    if not (math.isfinite(value) and low <= value < high):
        span = f">= {low}" if high == math.inf else f"in [{low}, {high})"
        raise ValueError(f"{where}: {what} must be a finite number {span}, got {value!r}.")
    return float(value)


class PlateauState(NamedTuple):
    """Reduce-on-plateau's bookkeeping: arrays of one shape (``()``, or ``(members,)``).

    Attributes:
        best: the best monitored value so far (float32).
        wait: epochs without improvement since the last improvement or reduction.
        cooldown_counter: cooldown epochs left.
    """

    best: Any
    wait: Any
    cooldown_counter: Any


class PlateauRule(NamedTuple):
    """Reduce-on-plateau as two pure functions, in the manner of optax (and of
    :class:`~jaxnn.train.StoppingRule`).

    ``init(shape, xp) -> PlateauState``;
    ``update(plateau, value, lr, active, xp) -> (plateau, new_lr)``. ``value`` is the
    monitored log of the epoch just run and ``lr`` the rate it trained with (float32);
    an entry whose ``active`` is False (a stopped or halted population member) keeps
    its bookkeeping and its rate. ``xp`` is the array module: NumPy on the host,
    ``jax.numpy`` inside a program.
    """

    init: Callable[..., PlateauState]
    update: Callable[..., tuple[PlateauState, Any]]


def plateau_rule(
    factor: float, patience: int, min_delta: float, cooldown: int, min_lr: float, mode: str
) -> PlateauRule:
    """Keras's ``ReduceLROnPlateau`` rule as pure array code.

    After ``patience`` epochs in a row that did not improve on the best by more than
    ``min_delta``, the rate becomes ``max(lr * factor, min_lr)`` (when it is above
    ``min_lr``); ``cooldown`` epochs then pass without counting. The arithmetic is
    float32 on the host and in a program alike, so :class:`ReduceLROnPlateau` and
    ``population.fit(..., reduce_lr=...)`` reduce to the same rates.

    Args:
        factor: the multiplier, in ``[0, 1)``.
        patience: epochs without improvement before a reduction.
        min_delta: the smallest change that counts as an improvement (``>= 0``).
        cooldown: epochs after a reduction during which nothing is counted.
        min_lr: the smallest learning rate.
        mode: ``"min"`` or ``"max"``.

    Returns:
        A :class:`PlateauRule`.

    Example:
        >>> rule = plateau_rule(0.5, patience=1, min_delta=0.0, cooldown=0, min_lr=0.0,
        ...                     mode="min")
        >>> plateau, lr = rule.init((), np), np.float32(0.1)
        >>> rates = []
        >>> for value in [3.0, 2.0, 2.5, 2.4]:
        ...     plateau, lr = rule.update(plateau, np.float32(value), lr, True, np)
        ...     rates.append(float(lr))
        >>> rates
        [0.10000000149011612, 0.10000000149011612, 0.05000000074505806, 0.02500000037252903]
    """
    worst = math.inf if mode == "min" else -math.inf

    def init(shape: tuple[int, ...], xp: Any) -> PlateauState:
        return PlateauState(
            best=xp.full(shape, worst, xp.float32),
            wait=xp.zeros(shape, xp.int32),
            cooldown_counter=xp.zeros(shape, xp.int32),
        )

    def update(
        plateau: PlateauState, value: Any, lr: Any, active: Any, xp: Any
    ) -> tuple[PlateauState, Any]:
        value = xp.asarray(value, xp.float32)
        lr = xp.asarray(lr, xp.float32)
        # Keras's order: a cooldown epoch counts down first and clears the wait;
        # then an improvement resets it, and outside cooldown an epoch that did not
        # improve waits one more, reducing the rate once it has waited `patience`.
        cooling = plateau.cooldown_counter > 0
        counter = xp.where(cooling, plateau.cooldown_counter - 1, plateau.cooldown_counter)
        wait = xp.where(cooling, 0, plateau.wait)
        low = xp.float32(min_delta)
        better = value < plateau.best - low if mode == "min" else value > plateau.best + low
        counts = ~better & ~(counter > 0)
        wait = xp.where(better, 0, xp.where(counts, wait + 1, wait))
        reduce = counts & (wait >= patience) & (lr > xp.float32(min_lr))
        reduced = xp.maximum(lr * xp.float32(factor), xp.float32(min_lr))
        new = PlateauState(
            best=xp.where(active & better, value, plateau.best).astype(xp.float32),
            wait=xp.where(active, xp.where(reduce, 0, wait), plateau.wait).astype(xp.int32),
            cooldown_counter=xp.where(
                active, xp.where(reduce, cooldown, counter), plateau.cooldown_counter
            ).astype(xp.int32),
        )
        return new, xp.where(active & reduce, reduced, lr).astype(xp.float32)

    return PlateauRule(init, update)


class ReduceLROnPlateau(MonitorCallback):
    """Multiplies the learning rate by ``factor`` when a log stops improving, as Keras.

    After ``patience`` epochs in a row whose ``monitor`` did not improve on the best
    by more than ``min_delta``, the learning rate becomes
    ``max(lr * factor, min_lr)`` (unless it is already at ``min_lr``); then
    ``cooldown`` epochs pass before epochs without improvement count again. The
    rate is the traced ``learning_rate`` in the optimizer state (every optimizer of
    :func:`jaxnn.optimizers.get` traces it), changed with
    :func:`jaxnn.optimizers.replace_hyperparams`: nothing is compiled again. Each
    epoch's logs get ``learning_rate``, the rate that epoch trained with (as Keras);
    put a :class:`CSVLogger` or :class:`TensorBoard` after this callback to record it.
    The rule is :func:`plateau_rule`, in float32; passed to
    ``population.fit(..., reduce_lr=...)`` it steers each member's rate inside the
    program. ``monitor`` may name each value of a metric of several values
    (``"f1_score_1"`` for ``F1Score(average=None)``).

    Args:
        monitor: the log to watch, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        factor: the multiplier, in ``[0, 1)``.
        patience: epochs without improvement before a reduction.
        verbose: 1 prints a line at each reduction; 0 is quiet.
        mode: ``"min"``, ``"max"``, or ``"auto"`` (max for accuracy-like names).
        min_delta: the smallest change that counts as an improvement.
        cooldown: epochs after a reduction during which nothing is counted.
        min_lr: the smallest learning rate.

    Attributes:
        best: the best monitored value so far.
        wait: epochs without improvement since the last improvement or reduction.
        cooldown_counter: cooldown epochs left.

    Raises:
        ValueError: for a ``factor`` outside ``[0, 1)``, a negative ``patience`` or
            ``cooldown``, a negative ``min_lr``, a non-finite ``min_delta`` or an
            unknown ``mode``; in ``fit``, for an optimizer that traces no
            ``learning_rate`` or takes it from a schedule (before the first epoch),
            and for a ``monitor`` that is not a log.
        TypeError: for a ``monitor`` that is not a string, or numbers that are not.

    Example:
        >>> import jax, numpy as np
        >>> import jaxnn as nn
        >>> x = np.ones((8, 2), np.float32)
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", nn.optimizers.get("sgd", learning_rate=0.1))
        >>> state = trainer.init(jax.random.key(0), x)
        >>> reduce = nn.ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=1e9)
        >>> state, history = trainer.fit(state, x, x[:, :1], epochs=4, verbose=0,
        ...                              callbacks=[reduce])
        >>> history["learning_rate"].round(4).tolist()  # the rate of each epoch
        [0.1, 0.1, 0.05, 0.025]
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ):
        where = "ReduceLROnPlateau"
        if not isinstance(monitor, str):
            raise TypeError(
                f"{where}: monitor must be the name of a log such as 'val_loss', got "
                f"{type(monitor).__name__}."
            )
        self.monitor = monitor
        self.factor = _check_number(where, "factor", factor, low=0.0, high=1.0)
        self.patience = check_positive_int(where, "patience", patience, minimum=0)
        self.verbose = check_positive_int(where, "verbose", verbose, minimum=0)
        self.mode = resolve_mode(where, mode, monitor)
        self.min_delta = abs(_check_number(where, "min_delta", min_delta, low=-math.inf))
        self.cooldown = check_positive_int(where, "cooldown", cooldown, minimum=0)
        self.min_lr = _check_number(where, "min_lr", min_lr, low=0.0)
        self.rule = plateau_rule(
            self.factor, self.patience, self.min_delta, self.cooldown, self.min_lr, self.mode
        )
        self.on_train_begin(None)

    def on_train_begin(self, state: Any) -> None:
        if state is not None:
            _learning_rate("ReduceLROnPlateau", state)  # fail before the first epoch
        self.plateau = self.rule.init((), np)

    @property
    def best(self) -> float:
        """The best monitored value so far."""
        return float(self.plateau.best)

    @property
    def wait(self) -> int:
        """Epochs without improvement since the last improvement or reduction."""
        return int(self.plateau.wait)

    @property
    def cooldown_counter(self) -> int:
        """Cooldown epochs left."""
        return int(self.plateau.cooldown_counter)

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: Any) -> Any:
        where = "ReduceLROnPlateau"
        lr = _learning_rate(where, state)
        logs["learning_rate"] = lr
        if self.monitor not in logs:
            raise ValueError(
                f"{where}: monitor {self.monitor!r} is not in the logs; they have "
                f"{sorted(logs)}. Monitor one of those (val_* needs validation data)."
            )
        self.plateau, new = self.rule.update(
            self.plateau, np.float32(logs[self.monitor]), np.float32(lr), np.bool_(True), np
        )
        if new == np.float32(lr):
            return None
        new = float(new)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
        return _with_learning_rate(state, new, where)


def _takes_lr(schedule: Callable) -> bool:
    """Whether ``schedule`` is called ``(epoch, lr)`` (else ``(epoch)``), from its
    signature, as Keras accepts both."""
    try:
        signature = inspect.signature(schedule)
    except (TypeError, ValueError):  # a builtin without a signature: Keras's form
        return True
    for args, takes in (((0, 0.1), True), ((0,), False)):
        try:
            signature.bind(*args)
            return takes
        except TypeError:
            pass
    raise TypeError(
        f"LearningRateScheduler: schedule must be called as schedule(epoch, lr) (or "
        f"schedule(epoch)), as in Keras; its signature is {signature}."
    )


class LearningRateScheduler(Callback):
    """Sets the learning rate before each epoch to ``schedule(epoch, lr)``, as Keras.

    ``epoch`` is the 0-based epoch about to run and ``lr`` the current rate, a
    float; a schedule of the epoch alone (``schedule(epoch)``, an optax schedule
    such as ``optax.exponential_decay(...)`` counted in epochs) works too. The rate
    is the traced ``learning_rate`` in the optimizer state, so nothing is compiled
    again. Each epoch's logs get ``learning_rate``, the rate that epoch trained with.

    Args:
        schedule: ``schedule(epoch, lr) -> new lr`` (or ``schedule(epoch)``).
        verbose: 1 prints the rate before each epoch; 0 is quiet.

    Raises:
        TypeError: for a ``schedule`` that is not callable with one or two
            arguments; in ``fit``, for a schedule that returns something else than a
            number.
        ValueError: in ``fit``, for a schedule that returns a negative or non-finite
            rate, or an optimizer that traces no ``learning_rate`` or takes it from
            a schedule (before the first epoch).

    Example:
        >>> import jax, numpy as np
        >>> import jaxnn as nn
        >>> x = np.ones((8, 2), np.float32)
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> halve = nn.LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr / 2)
        >>> state, history = trainer.fit(trainer.init(jax.random.key(0), x), x, x[:, :1],
        ...                              epochs=3, verbose=0, callbacks=[halve])
        >>> history["learning_rate"].round(5).tolist()
        [0.01, 0.005, 0.0025]
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0):
        if not callable(schedule):
            raise TypeError(
                "LearningRateScheduler: schedule must be a function schedule(epoch, lr) -> "
                f"lr, got {type(schedule).__name__}."
            )
        self.schedule = schedule
        self.verbose = check_positive_int("LearningRateScheduler", "verbose", verbose, minimum=0)
        self._takes_lr = _takes_lr(schedule)

    def on_train_begin(self, state: Any) -> None:
        _learning_rate("LearningRateScheduler", state)  # fail before the first epoch

    def on_epoch_begin(self, epoch: int, state: Any) -> Any:
        where = "LearningRateScheduler"
        lr = _learning_rate(where, state)
        new = self.schedule(epoch, lr) if self._takes_lr else self.schedule(epoch)
        if hasattr(new, "dtype") and np.ndim(new) == 0 and not isinstance(new, np.generic):
            new = np.asarray(new)[()]  # a 0-d JAX or NumPy array: its scalar
        try:
            new = _check_number(where, f"schedule({epoch}, ...)", new, low=0.0)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{e} Return the learning rate for epoch {epoch}, a float.") from None
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {new}.")
        if np.float32(new) == np.float32(lr):
            return None
        return _with_learning_rate(state, new, where)

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: Any) -> None:
        logs["learning_rate"] = _learning_rate("LearningRateScheduler", state)


def _check_filename(where: str, what: str, path: Any) -> str:
    """``path`` as a string if it can name a file; else an error."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: {what} must be a path (a str), got {type(path).__name__}.")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(
            f"{where}: {what} {path!r} is a directory; give the name of a file in it, e.g. "
            f"{os.path.join(path, 'training.csv')!r}."
        )
    return path


class CSVLogger(Callback):
    """Writes each epoch's logs as a row of a CSV file, as Keras.

    The first row is the header: ``epoch`` (0-based, as Keras), then the log names
    of the first epoch in sorted order; each epoch adds a row and flushes the file,
    so it can be read while training runs. A log missing from a later epoch is
    written ``NA``. Put it after callbacks that add logs (``learning_rate`` from
    :class:`ReduceLROnPlateau`): they run in the order given.

    Args:
        filename: the file to write.
        separator: the column separator.
        append: add to an existing file (no second header when it already has
            lines) instead of overwriting it; for resumed training.

    Raises:
        TypeError: for a ``filename`` that is not a path, or a ``separator`` that
            is not one character.
        ValueError: for a ``filename`` that is a directory.
        OSError: in ``fit``, when the file cannot be opened (a missing directory).

    Example:
        >>> import jax, numpy as np, os, tempfile
        >>> import jaxnn as nn
        >>> x = np.ones((8, 2), np.float32)
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
        >>> _ = trainer.fit(trainer.init(jax.random.key(0), x), x, x[:, :1], epochs=2,
        ...                 verbose=0, callbacks=[nn.CSVLogger(path)])
        >>> [line.split(",")[0] for line in open(path).read().splitlines()]
        ['epoch', '0', '1']
    """

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        self.filename = _check_filename("CSVLogger", "filename", filename)
        if not isinstance(separator, str) or len(separator) != 1:
            raise TypeError(
                f"CSVLogger: separator must be one character such as ',' or '\\t', got "
                f"{separator!r}."
            )
        self.separator = separator
        self.append = check_bool("CSVLogger", "append", append)
        self.keys: list[str] | None = None
        self._file: Any = None
        self._writer: Any = None

    def on_train_begin(self, state: Any) -> None:
        self.close()
        header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                header = not f.readline()
        try:
            self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115
        except OSError as e:
            raise OSError(
                f"CSVLogger: cannot open {self.filename!r} to write the logs ({e.strerror}); "
                "create its directory first, or pass another filename."
            ) from e
        self._header = header
        self.keys = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: Any) -> None:
        del state
        if self._file is None:
            self.on_train_begin(None)
        if self.keys is None:
            self.keys = sorted(logs)
            self._writer = csv.writer(self._file, delimiter=self.separator)
            if self._header:
                self._writer.writerow(["epoch", *self.keys])
        self._writer.writerow([epoch, *(logs.get(k, "NA") for k in self.keys)])
        self._file.flush()

    def on_train_end(self, state: Any) -> Any:
        self.close()
        return state

    def close(self) -> None:
        """Closes the file (``fit`` does at the end)."""
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None


class TensorBoard(Callback):
    """Writes each epoch's logs as TensorBoard scalars, through ``tensorboardX``.

    As Keras does, training logs go to ``log_dir/train`` and validation logs to
    ``log_dir/validation``, both under the tag ``epoch_<name>`` (``epoch_loss``,
    ``epoch_accuracy``, ``epoch_learning_rate``), so TensorBoard draws each log with
    its validation twin; the step is the 0-based epoch. Watch with
    ``tensorboard --logdir <log_dir>``. Needs ``tensorboardX`` (``pip install
    tensorboardX``, or the ``[tensorboard]`` extra); TensorFlow is not needed.

    Args:
        log_dir: the directory to write the event files into.

    Raises:
        ImportError: if tensorboardX is not installed, with the command to install it.
        TypeError: for a ``log_dir`` that is not a path.
        ValueError: for a ``log_dir`` that is an existing file.

    Example:
        With tensorboardX installed (skipped here, as CI has no tensorboardX):

        >>> import jax, numpy as np, os, tempfile
        >>> import jaxnn as nn
        >>> x = np.ones((8, 2), np.float32)
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> state = trainer.init(jax.random.key(0), x)
        >>> log_dir = tempfile.mkdtemp()
        >>> board = nn.TensorBoard(log_dir)  # doctest: +SKIP
        >>> _ = trainer.fit(state, x, x[:, :1], verbose=0, callbacks=[board])  # doctest: +SKIP
        >>> os.listdir(log_dir)  # doctest: +SKIP
        ['train']
    """

    def __init__(self, log_dir: str | os.PathLike = "logs"):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise ImportError(
                "TensorBoard needs tensorboardX, which is not installed: pip install "
                "tensorboardX (or pip install 'jaxnn[tensorboard]')."
            ) from e
        self._summary_writer = SummaryWriter
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(
                f"TensorBoard: log_dir must be a path (a str), got {type(log_dir).__name__}."
            )
        self.log_dir = check_directory("TensorBoard", "log_dir", os.fspath(log_dir))
        self._writers: dict[str, Any] = {}

    def _writer(self, part: str) -> Any:
        if part not in self._writers:
            self._writers[part] = self._summary_writer(os.path.join(self.log_dir, part))
        return self._writers[part]

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: Any) -> None:
        del state
        for name, value in logs.items():
            part, name = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            self._writer(part).add_scalar(f"epoch_{name}", float(value), global_step=epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, state: Any) -> Any:
        self.close()
        return state

    def close(self) -> None:
        """Closes the event files (``fit`` does at the end)."""
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
