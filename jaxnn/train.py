"""Training: ``TrainState``, a jitted train step, and a compiled Keras-simple ``fit``.

``Trainer`` bundles what Keras's ``compile`` sets (model, loss, optimizer, metrics)
and owns the compiled programs. Its ``fit`` keeps the data on the device and runs
each epoch, or all epochs when nothing on the host needs to see them one by one, as
one ``lax.scan`` over the batches, shuffled inside the program. A last partial batch
is padded with real examples and masked out of the loss and the metrics, so it
neither drops data nor compiles a second program.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import losses as losses_lib
from jaxnn import metrics as metrics_lib
from jaxnn import optimizers
from jaxnn._types import Params, PRNGKey, State
from jaxnn.core import Layer, as_layer, spec_of

__all__ = [
    "Callback",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "TrainState",
    "Trainer",
]


class TrainState(NamedTuple):
    """Everything that changes during training, as one pytree.

    ``jit``, ``vmap`` (a population is a stacked ``TrainState``), sharding and
    checkpoints all work on it directly.

    Attributes:
        params: the model's trainable arrays.
        model_state: the model's non-trainable arrays (BatchNorm statistics, ...).
        opt_state: the optimizer's state, with its traced hyperparameters.
        step: the number of updates so far, an ``int32`` scalar.
        key: the random key for shuffling and dropout; advanced once per epoch.
    """

    params: Params
    model_state: State
    opt_state: optax.OptState
    step: jax.Array
    key: PRNGKey


class History(dict):
    """Per-epoch logs: ``history["loss"]``, ``history["val_accuracy"]``, ... as arrays.

    A ``dict`` from log name to a NumPy array with one value per epoch run.
    ``history.history`` is the same dict, for code written for Keras.
    """

    @property
    def history(self) -> dict[str, np.ndarray]:
        return self

    @property
    def epochs(self) -> int:
        """How many epochs were run."""
        return len(next(iter(self.values()))) if self else 0


class Callback:
    """Something run on the host after each epoch. Override what you need.

    ``on_epoch_end`` returning ``True`` stops training after that epoch.
    """

    def on_train_begin(self, state: TrainState) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: TrainState) -> bool | None:
        """Called after each epoch with its 0-based index and its logs."""

    def on_train_end(self, state: TrainState) -> TrainState:
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

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: TrainState) -> bool | None:
        del state
        return self.fn(epoch, logs)


class EarlyStopping(Callback):
    """Stops when a monitored log has not improved for ``patience`` epochs.

    Args:
        monitor: the log to watch, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"``, or ``"auto"`` (max for accuracy-like names).
        restore_best_weights: hand back the state of the best epoch at the end.

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
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}.")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(
                f"EarlyStopping: patience must be a non-negative int, got {patience!r}."
            )
        if mode == "auto":
            mode = "max" if any(w in monitor for w in ("acc", "auc", "precision")) else "min"
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.mode = mode
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, state: TrainState) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.best_state = None
        self.wait = 0
        self.stopped_epoch = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: TrainState) -> bool:
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping: monitor {self.monitor!r} is not in the logs; they have "
                f"{sorted(logs)}. Monitor one of those (val_* needs validation data)."
            )
        value = logs[self.monitor]
        better = (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        )
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_state = state
            return False
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, state: TrainState) -> TrainState:
        if self.restore_best_weights and self.best_state is not None:
            return self.best_state
        return state


def _as_callback(cb: Callback | Callable) -> Callback:
    if isinstance(cb, Callback):
        return cb
    if callable(cb):
        return LambdaCallback(cb)
    raise TypeError(
        f"a callback must be a jaxnn.Callback or a function fn(epoch, logs), got "
        f"{type(cb).__name__}."
    )


# ----------------------------------------------------------------------------- data


def _num_examples(where: str, what: str, tree: Any) -> int:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{where}: {what} is empty; pass arrays with a leading batch axis.")
    sizes = set()
    for leaf in leaves:
        if np.ndim(leaf) == 0:
            raise ValueError(
                f"{where}: {what} must have a leading batch axis, got a scalar. "
                "Pass an array of shape (examples, ...)."
            )
        sizes.add(np.shape(leaf)[0])
    if len(sizes) > 1:
        raise ValueError(
            f"{where}: the arrays in {what} have different lengths {sorted(sizes)}; "
            "every array needs the same number of examples."
        )
    return sizes.pop()


def _to_array(where: str, what: str, a: Any) -> jax.Array:
    if isinstance(a, jax.Array):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except ValueError as e:
            raise ValueError(
                f"{where}: {what} could not be read as an array ({e}). Pass a NumPy or "
                "JAX array, or a list of equal-length rows."
            ) from e
        if arr.dtype == object:
            raise ValueError(
                f"{where}: {what} is not numeric (got dtype object). Pass a NumPy or "
                "JAX array, or a list of equal-length rows of numbers."
            )
        if arr.dtype == np.float64 and not jax.config.jax_enable_x64:
            arr = arr.astype(np.float32)
        elif arr.dtype == np.int64 and not jax.config.jax_enable_x64:
            arr = arr.astype(np.int32)
    if jnp.issubdtype(arr.dtype, jnp.inexact) and arr.ndim and arr.size:
        finite = np.asarray(jnp.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1))
        if not finite.all():
            rows = np.flatnonzero(~finite)
            shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise ValueError(
                f"{where}: {what} has NaN or Inf values in {len(rows)} row(s): {shown}. "
                "Clean or drop those rows before training."
            )
    return jnp.asarray(arr)


def _to_tree(where: str, what: str, data: Any) -> Any:
    """A dict of inputs stays a dict of arrays; anything else (arrays, NumPy, nested
    lists of numbers) is one array."""
    if isinstance(data, dict):
        return {k: _to_tree(where, f"{what}[{k!r}]", v) for k, v in data.items()}
    return _to_array(where, what, data)


def _prepare(where: str, x: Any, y: Any = None, sample_weight: Any = None) -> tuple:
    """Checks and converts ``x``, ``y`` and ``sample_weight``; returns them and ``n``."""
    if x is None:
        raise ValueError(f"{where}: x is None; pass the input data.")
    x = _to_tree(where, "x", x)
    n = _num_examples(where, "x", x)
    if n == 0:
        raise ValueError(f"{where}: x has no examples (length 0); pass at least one example.")
    if y is not None:
        y = _to_tree(where, "y", y)
        ny = _num_examples(where, "y", y)
        if ny != n:
            raise ValueError(
                f"{where}: x has {n} examples but y has {ny}; x and y need the same "
                "length (one target per example)."
            )
    if sample_weight is not None:
        sample_weight = _to_array(where, "sample_weight", sample_weight)
        if sample_weight.shape != (n,):
            raise ValueError(
                f"{where}: sample_weight has shape {tuple(sample_weight.shape)}, expected "
                f"({n},): one weight per example."
            )
    return x, y, sample_weight, n


def _check_batch_size(where: str, batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"{where}: batch_size must be a positive int, got {batch_size!r}.")
    if batch_size <= 0:
        raise ValueError(f"{where}: batch_size must be a positive int, got {batch_size}.")
    return int(batch_size)


def _batch_indices(order: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Indices of shape ``(batches, batch_size)`` and a matching 0/1 mask.

    The last batch is filled up with examples from the start of ``order`` (real data,
    so statistics such as BatchNorm's stay sensible); the mask marks them out.
    """
    num_batches = -(-n // batch_size)
    slots = jnp.arange(num_batches * batch_size)
    idx = order[slots % n].reshape(num_batches, batch_size)
    mask = (slots < n).reshape(num_batches, batch_size)
    return idx, mask


def _take(tree: Any, idx: jax.Array) -> Any:
    return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), tree)


# ------------------------------------------------------------------------- trainer


class Trainer:
    """A model with its loss, optimizer and metrics: Keras's ``compile``, made pure.

    A ``Trainer`` holds no arrays: every method takes and returns a
    :class:`TrainState`. It owns the compiled programs, so build it once and reuse it.

    Args:
        model: a :class:`~jaxnn.Layer` (or a plain function, lifted).
        loss: a loss name (``"binary_crossentropy"``, ``"mse"``, ...) or a function
            ``loss(predictions, targets)`` giving one value per example.
        optimizer: a Keras name (``"adam"``, ``"sgd"``, ``"rmsprop"``, ``"adamw"``)
            with Keras's defaults, or an optax transformation.
        metrics: names (``"accuracy"``, ``"mae"``, ...) or metric functions.

    Example:
        >>> import jax, numpy as np
        >>> import jaxnn as nn
        >>> x = np.random.default_rng(0).random((100, 4), dtype=np.float32)
        >>> y = (x.sum(axis=1) > 2).astype(np.float32)
        >>> model = nn.Sequential(nn.Dense(32, "relu"), nn.Dense(1, "sigmoid"))
        >>> trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics=["accuracy"])
        >>> state = trainer.init(jax.random.key(0), x)
        >>> state, history = trainer.fit(state, x, y, epochs=3, batch_size=10, verbose=0)
        >>> history["loss"].shape, sorted(history)
        ((3,), ['accuracy', 'loss'])
    """

    def __init__(
        self,
        model: Layer | Callable,
        loss: str | Callable = "mse",
        optimizer: str | optax.GradientTransformation = "adam",
        metrics: Sequence[str | Callable] = (),
    ):
        if isinstance(metrics, str):
            metrics = [metrics]
        self.model = as_layer(model)
        self.loss = losses_lib.get(loss)
        self.optimizer = optimizers.get(optimizer)
        self.metrics = tuple(metrics_lib.get(m) for m in metrics)
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"Trainer: metric names must be unique and not 'loss', got {names}.")
        self._checked: set = set()
        self.train_step = jax.jit(self._train_step)
        self._run = jax.jit(
            self._run_epochs, static_argnames=("epochs", "batch_size", "shuffle", "val_batch")
        )
        self._evaluate = jax.jit(self._evaluate_sums, static_argnames=("batch_size",))
        self._predict = jax.jit(self._predict_batches, static_argnames=("batch_size",))

    def __repr__(self) -> str:
        metrics = [m.name for m in self.metrics]
        return f"Trainer(model={self.model!r}, loss={self.loss.name!r}, metrics={metrics})"

    # -- state

    def init(self, key: PRNGKey, x: Any) -> TrainState:
        """Initialises the model and the optimizer.

        Args:
            key: a ``jax.random.key``; it seeds the params and, split off, the
                shuffling and dropout stream.
            x: an example input with its batch axis (an array, a
                ``jax.ShapeDtypeStruct``, or a pytree of them); no data is read.

        Returns:
            A :class:`TrainState` at step 0.

        Example:
            >>> import jax, jaxnn as nn
            >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
            >>> state = trainer.init(jax.random.key(0), jax.ShapeDtypeStruct((1, 3), "float32"))
            >>> int(state.step), state.params["kernel"].shape
            (0, (3, 1))
        """
        if not isinstance(key, jax.Array):
            raise TypeError(
                f"Trainer.init: key must be a jax.random.key, got {type(key).__name__}. "
                "Use jax.random.key(seed)."
            )
        init_key, train_key = jax.random.split(key)
        params, model_state = self.model.init(init_key, spec_of(x))
        return TrainState(
            params=params,
            model_state=model_state,
            opt_state=_optimizer_init(self.optimizer, params),
            step=jnp.zeros((), jnp.int32),
            key=train_key,
        )

    # -- one step

    def _loss_and_metrics(
        self,
        params: Params,
        model_state: State,
        x: Any,
        y: Any,
        weight: jax.Array,
        mask: jax.Array,
        key: PRNGKey | None,
        training: bool,
    ) -> tuple[jax.Array, tuple[State, dict[str, jax.Array]]]:
        """The mean loss over the batch and the batch's log sums."""
        predictions, new_state = self.model.apply(
            params, model_state, x, key=key, training=training
        )
        per_example = self.loss.per_example(predictions, y).astype(jnp.float32)
        weight = weight.astype(jnp.float32) * mask.astype(jnp.float32)
        total_weight = jnp.sum(weight)
        loss_sum = jnp.sum(per_example * weight)
        loss = loss_sum / jnp.maximum(total_weight, jnp.finfo(jnp.float32).tiny)
        mask_f = mask.astype(jnp.float32)
        sums = {"loss": loss_sum, "_weight": total_weight, "_count": jnp.sum(mask_f)}
        for m in self.metrics:
            sums[m.name] = jnp.sum(m.fn(predictions, y).astype(jnp.float32) * mask_f)
        return loss, (new_state, sums)

    def _update(
        self,
        state: TrainState,
        x: Any,
        y: Any,
        weight: jax.Array,
        mask: jax.Array,
        key: PRNGKey,
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        grad_fn = jax.grad(self._loss_and_metrics, has_aux=True)
        grads, (model_state, sums) = grad_fn(
            state.params, state.model_state, x, y, weight, mask, key, True
        )
        # optax mixes int32 counts with float hyperparameters; let it promote as it
        # expects even when the caller runs JAX's strict dtype promotion.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        new_state = state._replace(
            params=params, model_state=model_state, opt_state=opt_state, step=state.step + 1
        )
        return new_state, sums

    def _train_step(
        self, state: TrainState, x: Any, y: Any, sample_weight: jax.Array | None = None
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        n = _num_examples("Trainer.train_step", "x", x)
        ones = jnp.ones((n,), jnp.float32)
        weight = ones if sample_weight is None else sample_weight
        key = jax.random.fold_in(state.key, state.step)
        new_state, sums = self._update(state, x, y, weight, ones, key)
        return new_state, _finish(sums)

    # -- whole epochs

    def _epoch(
        self,
        state: TrainState,
        data: tuple,
        batch_size: int,
        shuffle: bool,
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        x, y, w = data
        n = _num_examples("Trainer.fit", "x", x)
        next_key, order_key, dropout_key = jax.random.split(state.key, 3)
        order = jax.random.permutation(order_key, n) if shuffle else jnp.arange(n)
        idx, mask = _batch_indices(order, n, batch_size)

        def body(carry, batch):
            # Gather one batch at a time: the data is never copied whole, so shared
            # data stays one buffer when members of a population are vmapped.
            state, i = carry
            ib, mb = batch
            xb, yb, wb = _take(x, ib), _take(y, ib), jnp.take(w, ib, axis=0)
            state, sums = self._update(state, xb, yb, wb, mb, jax.random.fold_in(dropout_key, i))
            return (state, i + 1), sums

        (state, _), sums = jax.lax.scan(body, (state, jnp.zeros((), jnp.int32)), (idx, mask))
        state = state._replace(key=next_key)
        return state, jax.tree.map(jnp.sum, sums)

    def _evaluate_sums(
        self, params: Params, model_state: State, x: Any, y: Any, w: jax.Array, batch_size: int
    ) -> dict[str, jax.Array]:
        n = _num_examples("Trainer.evaluate", "x", x)
        idx, mask = _batch_indices(jnp.arange(n), n, batch_size)

        def body(_, batch):
            ib, mb = batch
            xb, yb = _take(x, ib), _take(y, ib)
            _, (_, sums) = self._loss_and_metrics(
                params, model_state, xb, yb, jnp.take(w, ib), mb, None, False
            )
            return None, sums

        _, sums = jax.lax.scan(body, None, (idx, mask))
        return jax.tree.map(jnp.sum, sums)

    def _run_epochs(
        self,
        state: TrainState,
        data: tuple,
        val_data: tuple | None,
        *,
        epochs: int,
        batch_size: int,
        shuffle: bool,
        val_batch: int,
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        def one_epoch(state, _):
            state, sums = self._epoch(state, data, batch_size, shuffle)
            logs = _finish(sums)
            if val_data is not None:
                val = self._evaluate_sums(state.params, state.model_state, *val_data, val_batch)
                logs.update({f"val_{k}": v for k, v in _finish(val).items()})
            return state, logs

        return jax.lax.scan(one_epoch, state, None, length=epochs)

    def fit(
        self,
        state: TrainState,
        x: Any,
        y: Any,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        shuffle: bool = True,
        validation_split: float = 0.0,
        validation_data: tuple | None = None,
        sample_weight: Any = None,
        verbose: int = 1,
        callbacks: Sequence[Callback | Callable] = (),
    ) -> tuple[TrainState, History]:
        """Trains for ``epochs`` passes over ``(x, y)``, compiled with ``lax.scan``.

        Each epoch shuffles with ``jax.random.permutation`` inside the program and
        scans over ``ceil(n / batch_size)`` batches. A last partial batch is padded
        with real examples that are masked out of the loss, the gradient and the
        metrics, so the epoch's loss is exactly the mean over all ``n`` examples.
        When ``verbose=0`` and there are no callbacks, all epochs run as one program
        and the host sees the logs once at the end.

        Args:
            state: the :class:`TrainState` to start from.
            x: inputs ``(n, ...)``: an array, a NumPy array, a list of rows, or a
                pytree of arrays with the same leading length.
            y: targets ``(n, ...)``, as the loss expects.
            epochs: passes over the data.
            batch_size: examples per update.
            shuffle: reshuffle the training data before each epoch.
            validation_split: the fraction of the data, taken from the end before
                shuffling (as Keras does), held out for validation.
            validation_data: ``(x_val, y_val)``; overrides ``validation_split``.
            sample_weight: ``(n,)`` weights of each example in the loss.
            verbose: 0 silent; 1 a progress bar per epoch with the loss and metrics;
                2 one line per epoch.
            callbacks: :class:`Callback` objects (such as :class:`EarlyStopping`) or
                functions ``fn(epoch, logs)``; returning ``True`` stops training.

        Returns:
            ``(state, history)``: the trained state and a :class:`History` of
            per-epoch ``loss``, metrics, and ``val_*`` logs.

        Raises:
            ValueError: for empty data, ``x`` and ``y`` of different lengths, NaN or
                Inf in the data, a non-positive ``batch_size``, a
                ``validation_split`` outside ``[0, 1)``, or targets whose shape does
                not fit the predictions.
        """
        where = "Trainer.fit"
        batch_size = _check_batch_size(where, batch_size)
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"{where}: epochs must be a non-negative int, got {epochs!r}.")
        if verbose not in (0, 1, 2):
            raise ValueError(f"{where}: verbose must be 0, 1 or 2, got {verbose!r}.")
        if not isinstance(state, TrainState):
            raise TypeError(
                f"{where}: state must be a TrainState from Trainer.init, got "
                f"{type(state).__name__}."
            )
        x, y, sample_weight, n = _prepare(where, x, y, sample_weight)
        if y is None:
            raise ValueError(f"{where}: y is None; pass the targets.")
        weight = jnp.ones((n,), jnp.float32) if sample_weight is None else sample_weight

        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (
                2,
                3,
            ):
                raise ValueError(
                    f"{where}: validation_data must be (x_val, y_val) or (x_val, y_val, weights)."
                )
            xv, yv, wv, nv = _prepare(f"{where} (validation_data)", *validation_data)
            val = (xv, yv, jnp.ones((nv,), jnp.float32) if wv is None else wv)
        elif validation_split:
            if not 0.0 < validation_split < 1.0:
                raise ValueError(
                    f"{where}: validation_split must lie in [0, 1), got {validation_split!r}."
                )
            n_val = int(n * validation_split)
            if n_val == 0 or n_val == n:
                raise ValueError(
                    f"{where}: validation_split={validation_split} of {n} examples leaves "
                    f"{n - n_val} for training and {n_val} for validation; both need at "
                    "least one. Change the split or pass validation_data."
                )
            cut = n - n_val
            head = lambda t: jax.tree.map(lambda a: a[:cut], t)
            tail = lambda t: jax.tree.map(lambda a: a[cut:], t)
            val = (tail(x), tail(y), tail(weight))
            x, y, weight, n = head(x), head(y), head(weight), cut

        self._check_targets(state, x, y)
        data = (x, y, weight)
        val_batch = batch_size
        cbs = [_as_callback(cb) for cb in callbacks]
        history: dict[str, list] = {}
        run = lambda s, k: self._run(
            s, data, val, epochs=k, batch_size=batch_size, shuffle=shuffle, val_batch=val_batch
        )

        if verbose == 0 and not cbs:
            if epochs:
                state, logs = run(state, epochs)
                history = {k: np.asarray(v) for k, v in jax.device_get(logs).items()}
            return state, History(history)

        for cb in cbs:
            cb.on_train_begin(state)
        steps = -(-n // batch_size)
        for epoch in range(epochs):
            start = time.perf_counter()
            state, logs = run(state, 1)
            logs = {k: float(v[0]) for k, v in jax.device_get(logs).items()}
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            _report(verbose, epoch, epochs, steps, logs, time.perf_counter() - start)
            stop = False
            for cb in cbs:
                stop = bool(cb.on_epoch_end(epoch, dict(logs), state)) or stop
            if stop:
                break
        for cb in cbs:
            state = cb.on_train_end(state)
        return state, History({k: np.asarray(v) for k, v in history.items()})

    def _check_targets(self, state: TrainState, x: Any, y: Any) -> None:
        """Fails at the door, not deep in a trace, when the targets do not fit."""
        x1, y1 = spec_of(x), spec_of(y)
        signature = (jax.tree.structure((x1, y1)), tuple(jax.tree.leaves((x1, y1))))
        if signature in self._checked:
            return

        def per_example(params: Params, model_state: State, xb: Any, yb: Any) -> jax.Array:
            predictions, _ = self.model.apply(params, model_state, xb)
            return self.loss.per_example(predictions, yb)

        jax.eval_shape(per_example, state.params, state.model_state, x1, y1)
        self._checked.add(signature)

    # -- evaluate and predict

    def evaluate(
        self,
        state: TrainState,
        x: Any,
        y: Any,
        *,
        batch_size: int = 32,
        sample_weight: Any = None,
    ) -> dict[str, float]:
        """The loss and metrics over ``(x, y)``, in inference mode, batched and masked.

        Args:
            state: the trained state.
            x: inputs ``(n, ...)``.
            y: targets ``(n, ...)``.
            batch_size: examples per forward pass; the result does not depend on it.
            sample_weight: ``(n,)`` weights of each example in the loss.

        Returns:
            ``{"loss": ..., "<metric>": ...}`` as Python floats.

        Raises:
            ValueError: for bad data, as :meth:`fit`.
        """
        where = "Trainer.evaluate"
        batch_size = _check_batch_size(where, batch_size)
        x, y, sample_weight, n = _prepare(where, x, y, sample_weight)
        if y is None:
            raise ValueError(f"{where}: y is None; pass the targets.")
        self._check_targets(state, x, y)
        w = jnp.ones((n,), jnp.float32) if sample_weight is None else sample_weight
        sums = self._evaluate(
            state.params, state.model_state, x, y, w, batch_size=min(batch_size, n)
        )
        return {k: float(v) for k, v in jax.device_get(_finish(sums)).items()}

    def _predict_batches(self, params: Params, model_state: State, x: Any, batch_size: int) -> Any:
        n = _num_examples("Trainer.predict", "x", x)
        idx, _ = _batch_indices(jnp.arange(n), n, batch_size)

        def body(_, ib):
            y, _ = self.model.apply(params, model_state, _take(x, ib))
            return None, y

        _, ys = jax.lax.scan(body, None, idx)
        return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], ys)

    def predict(self, state: TrainState, x: Any, *, batch_size: int = 32) -> Any:
        """The model's outputs on ``x`` in inference mode, batched.

        Args:
            state: the trained state.
            x: inputs ``(n, ...)``.
            batch_size: examples per forward pass; the result does not depend on it.

        Returns:
            The outputs, ``(n, ...)``.

        Raises:
            ValueError: for bad data, as :meth:`fit`.
        """
        where = "Trainer.predict"
        batch_size = _check_batch_size(where, batch_size)
        x, _, _, n = _prepare(where, x)
        return self._predict(state.params, state.model_state, x, batch_size=min(batch_size, n))


def _optimizer_init(optimizer: optax.GradientTransformation, params: Params) -> optax.OptState:
    with jax.numpy_dtype_promotion("standard"):
        return optimizer.init(params)


def _finish(sums: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Turns log sums into means: the loss over the weights, metrics over the count."""
    sums = dict(sums)
    weight = sums.pop("_weight")
    count = sums.pop("_count")
    tiny = jnp.finfo(jnp.float32).tiny
    return {k: v / jnp.maximum(weight if k == "loss" else count, tiny) for k, v in sums.items()}


def _report(
    verbose: int, epoch: int, epochs: int, steps: int, logs: dict[str, float], seconds: float
) -> None:
    if verbose == 0:
        return
    text = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
    if verbose == 2:
        print(f"Epoch {epoch + 1}/{epochs} - {seconds:.2f}s - {text}", flush=True)
        return
    from tqdm.auto import tqdm  # imported only when a bar is shown

    # The epoch ran as one compiled program, so its bar is drawn once, full, with the
    # epoch's time and logs, as Keras's bar looks at the end of an epoch.
    safe = text.replace("{", "{{").replace("}", "}}")
    bar = tqdm(
        total=steps,
        initial=steps,
        file=sys.stdout,
        bar_format=f"Epoch {epoch + 1}/{epochs} {{n_fmt}}/{{total_fmt}} [{{bar:20}}] "
        f"{{elapsed}} - {safe}",
        ascii=" =",
        delay=1e9,
    )
    bar.start_t -= seconds
    bar.delay = 0
    bar.close()
