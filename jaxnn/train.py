"""Training: ``TrainState``, a jitted train step, and a compiled Keras-simple ``fit``.

``Trainer`` bundles what Keras's ``compile`` sets (model, loss, optimizer, metrics)
and owns the compiled programs. Its ``fit`` keeps the data on the device and runs
each epoch, or all epochs when nothing on the host needs to see them one by one, as
one ``lax.scan`` over the batches, shuffled inside the program. A last partial batch
is padded with real examples and masked out of the loss and the metrics, so it
neither drops data nor compiles a second program.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import checkpoint as checkpoint_lib
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
    "NonFiniteError",
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
        # A population's logs are (members, epochs): the epochs are the last axis.
        return int(np.shape(next(iter(self.values())))[-1]) if self else 0


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


class NonFiniteError(FloatingPointError):
    """Training met a NaN or Inf loss or gradient, under ``on_nonfinite="raise"``.

    The update that would have used it was not applied, nor any after it, so
    ``error.state`` is the last finite state, from just before the bad step: fix the
    cause (learning rate, data, loss) and continue from it.

    Attributes:
        state: the last finite :class:`TrainState`; ``state.step == error.step``.
        epoch: the 0-based index of the epoch in which it happened.
        batch: the 0-based index of the batch within that epoch.
        step: the update count (``TrainState.step``) of the bad step.
        path: the first parameter path whose gradient was non-finite (such as
            ``"dense_1/kernel"``), or ``None`` if every gradient was finite (then the
            loss was not).
        history: the :class:`History` of the epochs completed before it.
    """

    def __init__(
        self,
        message: str,
        *,
        state: TrainState,
        epoch: int,
        batch: int,
        step: int,
        path: str | None,
        history: History,
    ):
        super().__init__(message)
        self.state = state
        self.epoch = epoch
        self.batch = batch
        self.step = step
        self.path = path
        self.history = history


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
        # NumPy data is checked on the host; device data in one compiled call.
        finite = (
            np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1)
            if isinstance(arr, np.ndarray)
            else np.asarray(_finite_rows(arr))
        )
        if not finite.all():
            rows = np.flatnonzero(~finite)
            shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise ValueError(
                f"{where}: {what} has NaN or Inf values in {len(rows)} row(s): {shown}. "
                "Clean or drop those rows before training."
            )
    return jnp.asarray(arr)


@jax.jit
def _finite_rows(a: jax.Array) -> jax.Array:
    return jnp.isfinite(a).reshape(a.shape[0], -1).all(axis=1)


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


def _shuffled_order(key: PRNGKey, n: int) -> jax.Array:
    """A uniformly random permutation of ``range(n)``, by sorts of one ``uint32`` array.

    ``jax.random.permutation`` sorts (random key, index) pairs, a two-operand sort
    that XLA's CPU backend runs about five times slower than a sort of one array
    (``benchmarks/population.py`` spends most of its shuffle time there). Here each
    round packs random bits (high) and the position (low ``b`` bits) into one
    ``uint32``, sorts that, and reads the positions back from the low bits. Equal
    random parts keep the previous round's (random) order. The rounds together draw
    at least ``3 log2 n`` random bits, the rule ``jax.random.permutation`` follows,
    so the result is as uniform as its. Past ``2**24`` examples it falls back to
    ``jax.random.permutation``.
    """
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 24:
        return jax.random.permutation(key, n)
    low = (1 << index_bits) - 1
    rounds = max(1, math.ceil(3 * math.log2(max(n, 2)) / (32 - index_bits)))
    position = jnp.arange(n, dtype=jnp.uint32)
    order = jnp.arange(n, dtype=jnp.int32)
    for round_key in jax.random.split(key, rounds):
        bits = jax.random.bits(round_key, (n,), jnp.uint32)
        packed = (bits & jnp.uint32(0xFFFFFFFF ^ low)) | position
        order = order[(jnp.sort(packed) & jnp.uint32(low)).astype(jnp.int32)]
    return order


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
            self._run_epochs,
            static_argnames=("epochs", "batch_size", "shuffle", "val_batch", "on_nonfinite"),
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
        # Metrics are unweighted, as Keras's ``metrics`` are, but an example of weight
        # 0 (masked padding, or the padding of `population.kfold`) is not counted.
        counted = (weight != 0).astype(jnp.float32)
        sums = {"loss": loss_sum, "_weight": total_weight, "_count": jnp.sum(counted)}
        for m in self.metrics:
            sums[m.name] = jnp.sum(m.fn(predictions, y).astype(jnp.float32) * counted)
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
        grads, model_state, sums = self._gradients(state, x, y, weight, mask, key)
        return self._apply_gradients(state, grads, model_state), sums

    def _gradients(
        self, state: TrainState, x: Any, y: Any, weight: jax.Array, mask: jax.Array, key: PRNGKey
    ) -> tuple[Params, State, dict[str, jax.Array]]:
        grad_fn = jax.grad(self._loss_and_metrics, has_aux=True)
        grads, (model_state, sums) = grad_fn(
            state.params, state.model_state, x, y, weight, mask, key, True
        )
        return grads, model_state, sums

    def _apply_gradients(self, state: TrainState, grads: Params, model_state: State) -> TrainState:
        # optax mixes int32 counts with float hyperparameters; let it promote as it
        # expects even when the caller runs JAX's strict dtype promotion.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        return state._replace(
            params=params, model_state=model_state, opt_state=opt_state, step=state.step + 1
        )

    def _guarded_update(
        self,
        state: TrainState,
        guard: _Guard,
        policy: str,
        batch: jax.Array,
        x: Any,
        y: Any,
        weight: jax.Array,
        mask: jax.Array,
        key: PRNGKey,
    ) -> tuple[TrainState, _Guard, dict[str, jax.Array]]:
        """One update, applied only if its loss and gradients are finite.

        Under ``"raise"`` the first bad step also freezes every later update (the
        guard is ``halted``), so the state stays the last finite one; under
        ``"skip"`` a bad step is counted and training goes on. Either way the
        first bad step is recorded, and a step not applied adds nothing to the logs.
        The update runs under ``lax.cond`` rather than being computed and then
        selected with ``where``: on a small network selecting every leaf of the
        state costs more than the step itself.
        """
        grads, model_state, sums = self._gradients(state, x, y, weight, mask, key)
        grads_ok = _finite_leaves(grads)
        ok = jnp.isfinite(sums["loss"]) & jnp.all(grads_ok)
        apply = ok & ~guard.halted
        first = ~ok & (guard.bad_step < 0)
        mean_loss = sums["loss"] / jnp.maximum(sums["_weight"], jnp.finfo(jnp.float32).tiny)
        guard = _Guard(
            halted=guard.halted | (~ok if policy == "raise" else False),
            skipped=guard.skipped + (~ok).astype(jnp.int32),
            bad_step=jnp.where(first, state.step, guard.bad_step),
            bad_batch=jnp.where(first, batch, guard.bad_batch),
            bad_grads=jnp.where(first, ~grads_ok, guard.bad_grads),
            bad_loss=jnp.where(first, mean_loss, guard.bad_loss),
        )
        state, sums = jax.lax.cond(
            apply,
            lambda: (self._apply_gradients(state, grads, model_state), sums),
            lambda: (state, jax.tree.map(jnp.zeros_like, sums)),
        )
        return state, guard, sums

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
        state, _, sums = self._guarded_epoch(state, None, data, batch_size, shuffle, None)
        return state, sums

    def _guarded_epoch(
        self,
        state: TrainState,
        guard: _Guard | None,
        data: tuple,
        batch_size: int,
        shuffle: bool,
        policy: str | None,
    ) -> tuple[TrainState, _Guard | None, dict[str, jax.Array]]:
        """One epoch; with a ``policy``, every step goes through the finite guard."""
        x, y, w = data
        n = _num_examples("Trainer.fit", "x", x)
        next_key, order_key, dropout_key = jax.random.split(state.key, 3)
        order = _shuffled_order(order_key, n) if shuffle else jnp.arange(n)
        idx, mask = _batch_indices(order, n, batch_size)

        def body(carry, batch):
            # Gather one batch at a time: the data is never copied whole, so shared
            # data stays one buffer when members of a population are vmapped.
            state, guard, i = carry
            ib, mb = batch
            xb, yb, wb = _take(x, ib), _take(y, ib), jnp.take(w, ib, axis=0)
            key = jax.random.fold_in(dropout_key, i)
            if policy is None:
                state, sums = self._update(state, xb, yb, wb, mb, key)
            else:
                state, guard, sums = self._guarded_update(
                    state, guard, policy, i, xb, yb, wb, mb, key
                )
            return (state, guard, i + 1), sums

        carry = (state, guard, jnp.zeros((), jnp.int32))
        (state, guard, _), sums = jax.lax.scan(body, carry, (idx, mask))
        if guard is None:
            state = state._replace(key=next_key)
        else:  # a halted state stays exactly the last finite one, key included
            state = state._replace(key=jnp.where(guard.halted, state.key, next_key))
        return state, guard, jax.tree.map(jnp.sum, sums)

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
        on_nonfinite: str,
    ) -> tuple[TrainState, dict[str, jax.Array], dict[str, jax.Array], _Guard]:
        """``epochs`` guarded epochs: the state, per-epoch logs, per-epoch guard
        facts (``skipped``, ``halted``) and the final guard."""

        def one_epoch(carry, _):
            state, guard = carry
            guard = guard._replace(skipped=jnp.zeros((), jnp.int32))
            state, guard, sums = self._guarded_epoch(
                state, guard, data, batch_size, shuffle, on_nonfinite
            )
            logs = _finish(sums)
            if val_data is not None:
                val = self._evaluate_sums(state.params, state.model_state, *val_data, val_batch)
                logs.update({f"val_{k}": v for k, v in _finish(val).items()})
            return (state, guard), (logs, {"skipped": guard.skipped, "halted": guard.halted})

        carry = (state, _new_guard(state.params))
        (state, guard), (logs, facts) = jax.lax.scan(one_epoch, carry, None, length=epochs)
        return state, logs, facts, guard

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
        on_nonfinite: str = "raise",
        checkpoint_dir: str | os.PathLike | None = None,
        save_every: int = 1,
        keep: int = 3,
        keep_best: str | None = None,
        best_mode: str = "auto",
        resume: bool = False,
    ) -> tuple[TrainState, History]:
        """Trains for ``epochs`` passes over ``(x, y)``, compiled with ``lax.scan``.

        Each epoch shuffles inside the program (a uniformly random permutation
        drawn as ``jax.random.permutation`` draws it, but with cheaper sorts) and
        scans over ``ceil(n / batch_size)`` batches. A last partial batch is padded
        with real examples that are masked out of the loss, the gradient and the
        metrics, so the epoch's loss is exactly the mean over all ``n`` examples.
        When ``verbose=0`` and there are no callbacks or checkpoints, all epochs run
        as one program and the host sees the logs once at the end.

        **Numerical guard.** Every step checks, inside the compiled program, that its
        loss and its gradients are finite. With
        ``on_nonfinite="raise"`` the first bad step and every step after it are not
        applied, and the host raises :class:`NonFiniteError` at the end of that
        epoch (or, when all epochs run as one program, at the end of the program),
        naming the epoch, the batch, the step and the first non-finite gradient
        path; ``error.state`` is the last finite state. With ``"skip"`` a bad step
        leaves the state as it was and training goes on; ``history["skipped_steps"]``
        counts them per epoch, and the epoch's logs average over the applied steps.

        **Checkpoints.** With ``checkpoint_dir``, the state is saved (with
        :func:`jaxnn.checkpoint.save`, atomically) as ``epoch_000005.safetensors``
        after every ``save_every``-th epoch and after the last one, keeping the
        newest ``keep``; with ``keep_best``, ``best.safetensors`` holds the state of
        the best epoch by that log. Each file's metadata holds the epoch count, the
        history so far and the fit settings. ``resume=True`` restores the newest
        readable checkpoint there (skipping damaged ones, with a warning) and
        continues: ``epochs`` is the *total* number of epochs, as Keras's
        ``initial_epoch``, so a run of ``epochs=10`` stopped after 5 and resumed with
        ``epochs=10`` runs 5 more, with the same optimizer state and random stream,
        and gives bit-identical parameters and a history of all 10 epochs. The
        state passed in is used only if there is no checkpoint yet. Callbacks start
        afresh on resume (an :class:`EarlyStopping` forgets its patience).
        Leftover temporary files of saves killed midway are removed.

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
            on_nonfinite: ``"raise"`` (stop with :class:`NonFiniteError`) or
                ``"skip"`` (skip the update and count it), for a step whose loss or
                gradients are NaN or Inf.
            checkpoint_dir: a directory (created if missing) to save checkpoints
                into; ``None`` saves nothing.
            save_every: save after every this many epochs (and after the last).
            keep: how many of the newest epoch checkpoints to keep.
            keep_best: a log to keep the best epoch by, e.g. ``"val_loss"``, in
                ``best.safetensors``; ``None`` keeps no best.
            best_mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy-like
                names), for ``keep_best``.
            resume: continue from the newest checkpoint in ``checkpoint_dir``.

        Returns:
            ``(state, history)``: the trained state and a :class:`History` of
            per-epoch ``loss``, metrics, ``val_*`` logs, and with
            ``on_nonfinite="skip"`` ``skipped_steps``. After a resume it covers
            every epoch, those before the checkpoint included.

        Raises:
            ValueError: for empty data, ``x`` and ``y`` of different lengths, NaN or
                Inf in the data, a non-positive ``batch_size``, a
                ``validation_split`` outside ``[0, 1)``, targets whose shape does
                not fit the predictions, bad checkpoint settings, or a checkpoint to
                resume from that was written with another ``batch_size``, number of
                examples or ``shuffle``.
            NonFiniteError: under ``on_nonfinite="raise"``, for a non-finite loss or
                gradient.

        Example:
            >>> import jax, numpy as np, os, tempfile
            >>> import jaxnn as nn
            >>> x = np.random.default_rng(0).random((64, 3), dtype=np.float32)
            >>> y = x.sum(axis=1, keepdims=True)
            >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
            >>> state = trainer.init(jax.random.key(0), x)
            >>> directory = tempfile.mkdtemp()
            >>> _, h = trainer.fit(state, x, y, epochs=2, verbose=0, checkpoint_dir=directory)
            >>> sorted(os.listdir(directory))
            ['epoch_000001.safetensors', 'epoch_000002.safetensors']
            >>> state, h = trainer.fit(state, x, y, epochs=4, verbose=0,
            ...                        checkpoint_dir=directory, resume=True)
            >>> int(state.step), h.epochs  # 2 epochs restored, 2 more run; 2 steps each
            (8, 4)
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
        if on_nonfinite not in ("raise", "skip"):
            raise ValueError(
                f"{where}: on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}."
            )
        ckpt = None
        if checkpoint_dir is not None:
            ckpt = _Checkpoints(where, checkpoint_dir, save_every, keep, keep_best, best_mode)
        elif resume or keep_best is not None:
            raise ValueError(
                f"{where}: {'resume=True' if resume else 'keep_best'} needs a checkpoint_dir; "
                "pass checkpoint_dir=... (a directory to save checkpoints into)."
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
            s,
            data,
            val,
            epochs=k,
            batch_size=batch_size,
            shuffle=shuffle,
            val_batch=val_batch,
            on_nonfinite=on_nonfinite,
        )

        if verbose == 0 and not cbs and ckpt is None:
            # All epochs in one program: a bad step freezes the state there, and the
            # host learns of it once, at the end.
            if epochs:
                new_state, logs, facts, guard = run(state, epochs)
                logs, facts = jax.device_get((logs, facts))
                history = {k: np.asarray(v) for k, v in logs.items()}
                if on_nonfinite == "skip":
                    history["skipped_steps"] = np.asarray(facts["skipped"])
                halted = np.asarray(facts["halted"])
                if halted.any():
                    bad = int(np.argmax(halted))
                    before = History({k: v[:bad] for k, v in history.items()} if bad else {})
                    raise _nonfinite_error(where, guard, new_state, bad, epochs, before)
                state = new_state
            return state, History(history)

        first_epoch = 0
        settings = {"batch_size": batch_size, "examples": n, "shuffle": bool(shuffle)}
        if ckpt is not None:
            names = ["loss", *(m.name for m in self.metrics)]
            names += [f"val_{k}" for k in names] if val is not None else []
            ckpt.check_monitor(names + (["skipped_steps"] if on_nonfinite == "skip" else []))
            if resume:
                found = ckpt.restore_latest(state, settings)
                if found is not None:
                    state, first_epoch, history = found
            else:
                ckpt.warn_if_not_empty()

        for cb in cbs:
            cb.on_train_begin(state)
        steps = -(-n // batch_size)
        for epoch in range(first_epoch, epochs):
            start = time.perf_counter()
            new_state, logs, facts, guard = run(state, 1)
            logs, facts = jax.device_get((logs, facts))
            logs = {k: float(v[0]) for k, v in logs.items()}
            if on_nonfinite == "skip":
                logs["skipped_steps"] = int(facts["skipped"][0])
            if facts["halted"][0]:
                before = History({k: np.asarray(v) for k, v in history.items()})
                raise _nonfinite_error(where, guard, new_state, epoch, epochs, before)
            state = new_state
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            _report(verbose, epoch, epochs, steps, logs, time.perf_counter() - start)
            stop = False
            for cb in cbs:
                stop = bool(cb.on_epoch_end(epoch, dict(logs), state)) or stop
            if ckpt is not None:
                last = stop or epoch + 1 == epochs
                ckpt.after_epoch(state, epoch + 1, history, logs, settings, last=last)
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


_EPOCH_FILE = re.compile(r"epoch_(\d+)\.safetensors")
_BEST_FILE = "best.safetensors"
_LEFTOVER = re.compile(r"\.(epoch_\d+|best)\.safetensors\.[0-9a-f]+\.tmp")


def _check_positive_int(where: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int, got {value!r}.")
    return int(value)


class _Checkpoints:
    """``fit``'s checkpoint directory: periodic saves, the last ``keep``, the best.

    Files: ``epoch_<epochs done, 6 digits>.safetensors`` and ``best.safetensors``,
    each a :func:`jaxnn.checkpoint.save` of the ``TrainState`` whose user metadata
    ``{"jaxnn_fit": {...}}`` holds the epoch count, the history, the fit settings
    and the best value so far.
    """

    def __init__(
        self,
        where: str,
        directory: str | os.PathLike,
        save_every: int,
        keep: int,
        monitor: str | None,
        mode: str,
    ):
        self.where = where
        self.save_every = _check_positive_int(where, "save_every", save_every)
        self.keep = _check_positive_int(where, "keep", keep)
        if monitor is not None and not isinstance(monitor, str):
            raise ValueError(
                f"{where}: keep_best must be the name of a log such as 'val_loss', or None; "
                f"got {monitor!r}."
            )
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{where}: best_mode must be 'auto', 'min' or 'max', got {mode!r}.")
        if mode == "auto" and monitor is not None:
            mode = "max" if any(w in monitor for w in ("acc", "auc", "precision")) else "min"
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        for name in os.listdir(self.directory):  # left by saves that were killed midway
            if _LEFTOVER.fullmatch(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.directory, name))

    def on_disk(self) -> list[tuple[int, str]]:
        """``(epochs done, path)`` of every epoch checkpoint, oldest first."""
        found = []
        for name in os.listdir(self.directory):
            match = _EPOCH_FILE.fullmatch(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.directory, name)))
        return sorted(found)

    def check_monitor(self, names: list[str]) -> None:
        if self.monitor is not None and self.monitor not in names:
            raise ValueError(
                f"{self.where}: keep_best={self.monitor!r} is not one of the logs "
                f"{sorted(names)}. Pick one of those (val_* needs validation data)."
            )

    def warn_if_not_empty(self) -> None:
        if self.on_disk():
            warnings.warn(
                f"{self.where}: checkpoint_dir {self.directory!r} already holds checkpoints; "
                "this run overwrites those of the same epochs and prunes the oldest. Pass "
                "resume=True to continue from them, or use an empty directory.",
                stacklevel=3,
            )

    def restore_latest(
        self, like: TrainState, settings: dict[str, Any]
    ) -> tuple[TrainState, int, dict[str, list]] | None:
        """The newest readable checkpoint: its state, epochs done and history."""
        for epoch, path in reversed(self.on_disk()):
            try:
                meta = checkpoint_lib.read_metadata(path)["user"]["jaxnn_fit"]
                state = checkpoint_lib.restore(path, like)
            except checkpoint_lib.CheckpointError as e:
                if "does not match the expected tree" in str(e):
                    raise checkpoint_lib.CheckpointError(
                        f"{self.where}: cannot resume: {e} (checkpoint_dir holds "
                        "checkpoints of another model or optimizer; use another directory)"
                    ) from None
                warnings.warn(f"{self.where}: skipping a damaged checkpoint: {e}", stacklevel=3)
                continue
            except (OSError, KeyError, TypeError) as e:
                warnings.warn(
                    f"{self.where}: skipping {path!r}, which is not a fit checkpoint ({e!r}).",
                    stacklevel=3,
                )
                continue
            saved = meta.get("settings", {})
            changed = [
                f"{k}={saved.get(k)!r} then, {v!r} now"
                for k, v in settings.items()
                if saved.get(k) != v
            ]
            if changed:
                raise ValueError(
                    f"{self.where}: cannot resume exactly from {path!r}: it was trained with "
                    f"{'; '.join(changed)}. Pass the same data and settings, or resume=False "
                    "with a new checkpoint_dir."
                )
            self.best, self.best_epoch = meta.get("best"), meta.get("best_epoch")
            history = {
                k: [math.nan if v is None else v for v in values]
                for k, values in meta.get("history", {}).items()
            }
            return state, int(meta.get("epoch", epoch)), history
        return None

    def after_epoch(
        self,
        state: TrainState,
        epoch: int,
        history: dict[str, list],
        logs: dict[str, float],
        settings: dict[str, Any],
        *,
        last: bool,
    ) -> None:
        """Saves the best (if improved) and the periodic checkpoint; prunes old ones."""
        if self.monitor is not None:
            value = logs[self.monitor]
            better = math.isfinite(value) and (
                self.best is None
                or (value < self.best if self.mode == "min" else value > self.best)
            )
            if better:
                self.best, self.best_epoch = value, epoch
                self._save(
                    os.path.join(self.directory, _BEST_FILE), state, epoch, history, settings
                )
        if epoch % self.save_every == 0 or last:
            name = f"epoch_{epoch:06d}.safetensors"
            self._save(os.path.join(self.directory, name), state, epoch, history, settings)
            for _, path in self.on_disk()[: -self.keep]:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def _save(
        self,
        path: str,
        state: TrainState,
        epoch: int,
        history: dict[str, list],
        settings: dict[str, Any],
    ) -> None:
        finite = lambda v: v if not isinstance(v, float) or math.isfinite(v) else None
        meta = {
            "epoch": epoch,
            "history": {k: [finite(v) for v in values] for k, values in history.items()},
            "settings": settings,
            "monitor": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
        }
        checkpoint_lib.save(path, state, metadata={"jaxnn_fit": meta})


def _nonfinite_error(
    where: str, guard: _Guard, state: TrainState, epoch: int, epochs: int, history: History
) -> NonFiniteError:
    """The error for the first bad step that ``guard`` recorded."""
    guard = jax.device_get(guard)
    step, batch, loss = int(guard.bad_step), int(guard.bad_batch), float(guard.bad_loss)
    paths = _leaf_paths(state.params)
    bad = [p for p, b in zip(paths, np.asarray(guard.bad_grads), strict=True) if b]
    if bad:
        more = f" (and {len(bad) - 1} more of the {len(paths)})" if len(bad) > 1 else ""
        what = f"the first non-finite gradient is at {bad[0]!r}{more}"
    else:
        what = "the loss is non-finite (the gradients are finite)"
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


class _Guard(NamedTuple):
    """What the finite guard carries through the compiled steps."""

    halted: jax.Array  # bool: under "raise", a bad step was met; updates are frozen
    skipped: jax.Array  # int32: steps not applied in this epoch
    bad_step: jax.Array  # int32: the update count of the first bad step, or -1
    bad_batch: jax.Array  # int32: its batch index within its epoch, or -1
    bad_grads: jax.Array  # bool (leaves,): which gradient leaves were non-finite there
    bad_loss: jax.Array  # float32: the batch's loss there


def _new_guard(params: Params) -> _Guard:
    leaves = len(jax.tree.leaves(params))
    return _Guard(
        halted=jnp.zeros((), bool),
        skipped=jnp.zeros((), jnp.int32),
        bad_step=jnp.full((), -1, jnp.int32),
        bad_batch=jnp.full((), -1, jnp.int32),
        bad_grads=jnp.zeros((leaves,), bool),
        bad_loss=jnp.zeros((), jnp.float32),
    )


def _finite_leaves(tree: Any) -> jax.Array:
    """One bool per leaf (in ``jax.tree.leaves`` order): all its values are finite."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.ones((0,), bool)
    return jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])


def _leaf_paths(tree: Any) -> list[str]:
    """Readable leaf paths in ``jax.tree.leaves`` order: ``dense_1/kernel``."""
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    return ["/".join(_path_part(e) for e in path) or "value" for path, _ in paths]


def _path_part(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _optimizer_init(optimizer: optax.GradientTransformation, params: Params) -> optax.OptState:
    with jax.numpy_dtype_promotion("standard"):
        return optimizer.init(params)


def _finish(sums: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Turns log sums into means: the loss over the weights, metrics over the count."""
    sums = dict(sums)
    weight = sums.pop("_weight")
    count = sums.pop("_count")
    # Nothing counted (every step skipped, or every weight 0): NaN, not a perfect 0.
    out = {}
    for k, v in sums.items():
        denominator = weight if k == "loss" else count
        out[k] = jnp.where(denominator > 0, v / jnp.where(denominator > 0, denominator, 1), jnp.nan)
    return out


def _report(
    verbose: int, epoch: int, epochs: int, steps: int, logs: dict[str, float], seconds: float
) -> None:
    if verbose == 0:
        return
    text = " - ".join(
        f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in logs.items()
    )
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
