"""``Trainer``: a model with its loss, optimizer and metrics, and a compiled ``fit``.

``fit`` reads as three parts: check the arguments, plan the run (data on the device,
validation, callbacks, checkpoints), then run all epochs as one program when nothing
on the host needs to see them one by one, or one program per epoch otherwise.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import checkpoint as checkpoint_lib
from jaxnn import data as data_lib
from jaxnn import losses as losses_lib
from jaxnn import metrics as metrics_lib
from jaxnn import optimizers
from jaxnn import precision as precision_lib
from jaxnn import stream as stream_lib
from jaxnn._checks import (
    check_bool,
    check_choice,
    check_directory,
    check_key,
    check_positive_int,
)
from jaxnn._types import Params, PRNGKey, State
from jaxnn.confusion_metrics import MetricState, StatefulMetric, finish_state
from jaxnn.core import Layer, as_layer, spec_of
from jaxnn.data import Data
from jaxnn.parallel import DataParallel
from jaxnn.train.callbacks import (
    Callback,
    FitResult,
    History,
    as_callbacks,
    check_monitors,
    run_callbacks,
)
from jaxnn.train.checkpointing import CheckpointDirectory, Checkpointing, fingerprint
from jaxnn.train.guard import new_guard, nonfinite_error, state_finite
from jaxnn.train.programs import (
    Compiled,
    Programs,
    TrainState,
    compile_once,
    finish,
    programs,
    with_loss_weights,
)
from jaxnn.train.progress import Progress, check_verbose
from jaxnn.train.streaming import Streaming

__all__ = ["Trainer"]


@dataclasses.dataclass
class _Plan:
    """What ``fit`` runs, once the arguments are checked."""

    data: Data
    val: Data | None
    examples: int
    epochs: int
    batch_size: int
    shuffle: bool
    policy: str | None  # the guard's policy; None for on_nonfinite="ignore"
    skip: bool
    callbacks: list[Callback]
    checkpoints: CheckpointDirectory | None
    resume: bool
    verbose: int
    val_stream: tuple | None = None  # (source, validation_steps) of a streamed validation
    position: stream_lib.Position | None = None  # a streamed source's place, for resume
    steps: int | None = None  # steps per epoch, when known


class Trainer(Streaming):
    """A model with its loss, optimizer and metrics: Keras's ``compile``, made pure.

    A ``Trainer`` holds no arrays: every method takes and returns a
    :class:`TrainState`. It owns the compiled programs, so build it once and reuse it.
    Its pure, uncompiled programs are ``trainer.programs`` (a
    :class:`~jaxnn.train.Programs`), the seam :mod:`jaxnn.population` builds on.

    Args:
        model: a :class:`~jaxnn.Layer` (or a plain function, lifted).
        loss: a loss name (``"binary_crossentropy"``, ``"mse"``, ...) or a function
            of your own giving one value per example (or a mean), in Keras's order
            ``loss(y_true, y_pred)`` or optax's ``loss(predictions, targets)``: the
            order is read from the parameter names (``y_true``/``y_pred``,
            ``labels``/``logits``, ``targets``/``predictions``, ...), and names that
            do not tell it (``(a, b)``) are an error; declare the order with
            ``nn.losses.get(fn, order="keras")`` (or ``"optax"``).
        optimizer: a Keras name (``"adam"``, ``"sgd"``, ``"rmsprop"``, ``"adamw"``)
            with Keras's defaults, or an optax transformation.
        metrics: names (``"accuracy"``, ``"mae"``, ...) or metric functions, in
            either order as for ``loss`` (``nn.metrics.get(fn, order=...)``).
        learning_rate: the named optimizer's learning rate, instead of Keras's
            default (``Trainer(model, "mse", "adam", learning_rate=1e-2)`` is
            ``optimizer=nn.optimizers.get("adam", learning_rate=1e-2)``); a number or
            an optax schedule. An optax transformation carries its own.
        parallel: ``None`` for one device, or a :class:`~jaxnn.parallel.DataParallel`
            (from :func:`jaxnn.parallel.data_parallel`): every batch of ``fit``,
            ``evaluate``, ``predict`` and ``train_step`` is split over the devices of
            a mesh axis, and the states this trainer returns are replicated on them.
        dtype_policy: mixed precision, as Keras 3's ``dtype_policy``: ``None`` (the
            model's own dtypes, no casts), ``"float32"``, ``"mixed_bfloat16"``,
            ``"mixed_float16"``, ``"bfloat16"`` or a :class:`~jaxnn.precision.Policy`.
            Params are stored in its param dtype; every step, evaluation and
            prediction casts floating params and inputs to its compute dtype and the
            model's outputs to float32, so losses and metrics (and normalisation
            statistics and softmax, inside the layers) run in float32.
            ``"mixed_float16"`` also scales the loss dynamically: the optimizer is
            wrapped by :func:`~jaxnn.precision.dynamic_loss_scale`, whose scale lives
            in ``state.opt_state`` (so checkpoints keep it), and a step whose
            gradients overflow is skipped, not a non-finite failure. See
            :mod:`jaxnn.precision`.

    Raises:
        ValueError: for unknown names, metric names that repeat or are ``"loss"``, a
            loss or metric function whose argument order its names do not tell, a
            ``learning_rate`` that is not positive or comes with an optax
            transformation, or an unknown ``dtype_policy``.
        TypeError: for a ``parallel`` that is not a ``DataParallel``, or a
            ``dtype_policy`` that is not a name, a ``Policy`` or ``None``.

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
        *,
        learning_rate: float | Callable | None = None,
        parallel: DataParallel | None = None,
        dtype_policy: str | precision_lib.Policy | None = None,
    ):
        if parallel is not None and not isinstance(parallel, DataParallel):
            raise TypeError(
                "Trainer: parallel must be None or a jaxnn.parallel.DataParallel (from "
                f"nn.parallel.data_parallel(mesh)), got {type(parallel).__name__}."
            )
        self.parallel = parallel
        if metrics is None:
            metrics = ()
        elif not isinstance(metrics, (list, tuple, Iterator)):
            metrics = [metrics]  # one name, function or Metric
        metrics = list(metrics)
        self.loss = losses_lib.get(loss)
        # A loss with traced weights keeps them in the model state (losses.weighted).
        self.model = with_loss_weights(as_layer(model), self.loss)
        self.optimizer = _optimizer(optimizer, learning_rate)
        try:
            self.dtype_policy = precision_lib.get(dtype_policy)
        except (ValueError, TypeError) as e:
            raise type(e)(f"Trainer: {e}") from None
        scales = self.dtype_policy is not None and self.dtype_policy.loss_scaling
        if scales and not isinstance(self.optimizer, precision_lib.DynamicLossScale):
            self.optimizer = precision_lib.dynamic_loss_scale(self.optimizer)
        self.metrics = tuple(metrics_lib.get(m) for m in metrics)
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"Trainer: metric names must be unique and not 'loss', got {names}.")
        # An equal Trainer made before (a notebook cell run again) lends its compiled
        # programs: equal configurations compute the same thing.
        configuration = _configuration(
            self.model,
            loss,
            optimizer,
            tuple(metrics),
            learning_rate,
            parallel,
            self.dtype_policy,
        )
        self._prepared: _Prepared | None = None
        earlier = _EARLIER.get(configuration) if configuration is not None else None
        if earlier is not None:
            _EARLIER.move_to_end(configuration)
            for name in _COMPILED:
                setattr(self, name, getattr(earlier, name))
            return
        self.programs: Programs = programs(
            self.model,
            self.loss,
            self.optimizer,
            self.metrics,
            parallel=parallel,
            policy=self.dtype_policy,
        )
        self._checked: set = set()
        self._inits: dict = {}
        # Seconds per epoch of the compiled fit programs, by data and settings: a
        # shown fit's first group is sized from it (see _fit_whole).
        self._epoch_seconds: dict = {}
        self._step = _Compiled(self._train_step)
        self._run = _Compiled(self._run_epochs, ("capacity", "batch_size", "shuffle", "policy"))
        self._evaluate = _Compiled(self.programs.evaluate_sums, ("batch_size",))
        self._evaluate_logs = _Compiled(
            functools.partial(_evaluated, self.programs.evaluate_sums), ("batch_size",)
        )
        self._predict = _Compiled(self.programs.predict_batches, ("batch_size",))
        self._chunk = _Compiled(self._run_chunk, ("policy",))
        if configuration is not None:
            _EARLIER[configuration] = self
            if len(_EARLIER) > _EARLIER_SIZE:
                _EARLIER.popitem(last=False)

    def __repr__(self) -> str:
        metrics = [m.name for m in self.metrics]
        return f"Trainer(model={self.model!r}, loss={self.loss.name!r}, metrics={metrics})"

    def log_names(
        self,
        validation: bool = False,
        *,
        state: TrainState | None = None,
        x: Any = None,
        y: Any = None,
    ) -> list[str]:
        """The names of the logs ``fit`` writes: ``loss``, the metrics, and their
        ``val_`` forms with ``validation``.

        A metric whose result holds several values (``F1Score(average=None)``, one per
        class) writes one log per value, ``f1_score_0``, ``f1_score_1``, ...; how many
        depends on the model's outputs, so those names are listed when ``state`` and
        the training data ``x`` and ``y`` (arrays or ``jax.ShapeDtypeStruct`` specs,
        with the batch axis) are given, and the metric's own name otherwise. Each of
        them can be monitored (:class:`~jaxnn.EarlyStopping`,
        :class:`~jaxnn.ReduceLROnPlateau`, checkpoints).

        Example:
            >>> import jax, numpy as np, jaxnn as nn
            >>> nn.Trainer(nn.Dense(1), "mse", "sgd", ["mae"]).log_names(validation=True)
            ['loss', 'mae', 'val_loss', 'val_mae']
            >>> f1 = nn.confusion_metrics.F1Score(average=None)
            >>> trainer = nn.Trainer(nn.Dense(3, "softmax"), "categorical_crossentropy",
            ...                      "sgd", [f1])
            >>> x, y = np.zeros((4, 2), np.float32), np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
            >>> trainer.log_names(state=trainer.init(jax.random.key(0), x), x=x, y=y)
            ['loss', 'f1_score_0', 'f1_score_1', 'f1_score_2']
        """
        names = ["loss", *(m.name for m in self.metrics)]
        several = any(isinstance(m, StatefulMetric) for m in self.metrics)
        if several and state is not None and x is not None and y is not None:
            names = _log_names_of(self.programs.evaluate_sums, names, state, x, y)
        return names + [f"val_{k}" for k in names] if validation else names

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

        Raises:
            TypeError: if ``key`` is not a JAX key.

        Example:
            >>> import jax, jaxnn as nn
            >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
            >>> state = trainer.init(jax.random.key(0), jax.ShapeDtypeStruct((1, 3), "float32"))
            >>> int(state.step), state.params["kernel"].shape
            (0, (3, 1))
        """
        check_key("Trainer.init", "key", key)
        spec = spec_of(x, "Trainer.init: x")
        if isinstance(key, jax.core.Tracer):  # under jit, vmap or eval_shape: trace it
            return self._place_state(self.programs.init(key, spec))
        # One compiled program per input signature: run op by op, initialising a small
        # network compiles each initializer's arithmetic on its own (about 18 programs
        # for the tutorial's two Dense layers), which costs a fresh process seconds.
        signature = (
            jax.tree.structure(spec),
            tuple(jax.tree.leaves(spec)),
            (np.shape(key), key.dtype),
        )
        run = self._inits.get(signature)
        if run is None:
            run = _compile_init(functools.partial(_init_with, self.programs.init, spec), key)
            self._inits[signature] = run
        return self._place_state(run(key))

    def _place_state(self, state: TrainState) -> TrainState:
        """Under data parallelism, a state placed on the mesh (replicated, or its large
        arrays split along the param axis)."""
        return state if self.parallel is None else self.parallel.place_state(state)

    def _place_data(self, data: Any) -> Any:
        """Under data parallelism, in-memory data replicated on the mesh."""
        return data if self.parallel is None else self.parallel.replicate(data)

    # -- one step

    def train_step(
        self, state: TrainState, x: Any, y: Any, sample_weight: jax.Array | None = None
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        """One compiled update on one batch; it compiles once per batch shape.

        Args:
            state: the :class:`TrainState`.
            x: a batch of inputs ``(batch, ...)``.
            y: its targets ``(batch, ...)``.
            sample_weight: ``(batch,)`` weights, or ``None``.

        Returns:
            ``(state, logs)``: the updated state and the batch's ``loss`` and metrics
            (as arrays, not yet on the host).

        Example:
            >>> import jax, jax.numpy as jnp, jaxnn as nn
            >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
            >>> state = trainer.init(jax.random.key(0), jnp.zeros((1, 3)))
            >>> state, logs = trainer.train_step(state, jnp.ones((4, 3)), jnp.ones((4, 1)))
            >>> int(state.step), sorted(logs)
            (1, ['loss'])
        """
        if self.parallel is not None:
            state = self._place_state(state)
            x, y, sample_weight = self._place_data((x, y, sample_weight))
        return self._step(state, x, y, sample_weight)

    def _train_step(
        self, state: TrainState, x: Any, y: Any, sample_weight: jax.Array | None = None
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        n = data_lib.num_examples("Trainer.train_step", "x", x)
        ones = jnp.ones((n,), jnp.float32)
        weight = ones if sample_weight is None else sample_weight
        key = jax.random.fold_in(state.key, state.step)
        if self.parallel is not None:
            x, y, weight = self.parallel.constrain_batch((x, y, weight))
        new_state, sums = self.programs.step(state, x, y, weight, ones, key)
        return new_state, finish(sums)

    def _run_chunk(
        self,
        state: TrainState,
        batches: tuple,
        start: jax.Array,
        dropout_key: PRNGKey,
        guard: Any,
        *,
        policy: str | None,
    ) -> tuple:
        """Streamed steps, as ``programs.chunk``; under the policy ``"watch"`` the
        steps run unguarded and the guard's place holds whether the chunk ended with a
        finite loss sum and state (see :meth:`_run_plan`)."""
        if policy != "watch":
            return self.programs.chunk(state, batches, start, dropout_key, guard, policy)
        state, _, sums = self.programs.chunk(state, batches, start, dropout_key)
        return state, state_finite(state, sums["loss"]), sums

    def _watches(self, policy: str | None) -> bool:
        """Whether ``policy`` runs unguarded steps with a finite check at the end (see
        :meth:`_run_plan`): ``"raise"``, unless a dynamic loss scale decides steps."""
        return policy == "raise" and not isinstance(self.optimizer, precision_lib.DynamicLossScale)

    # -- whole epochs

    def _run_epochs(
        self,
        state: TrainState,
        data: Data,
        val: Data | None,
        count: jax.Array,
        *,
        capacity: int,
        batch_size: int,
        shuffle: bool,
        policy: str | None,
    ) -> tuple[TrainState, dict[str, jax.Array], dict[str, jax.Array], Any]:
        """``count`` epochs (traced, at most ``capacity``): the state, per-epoch logs
        and guard facts (``skipped``, ``halted``), each ``(capacity,)`` with the first
        ``count`` filled, and the final guard (``None`` without a policy).

        The count is an argument, not part of the program: one compiled program runs
        any number of epochs up to ``capacity``, all at once or in groups (for
        progress between them), with the same arithmetic either way."""

        watch = policy == "watch"
        policy = None if watch else policy

        def one_epoch(state: TrainState, guard: Any) -> tuple:
            if guard is not None:
                guard = guard._replace(skipped=jnp.zeros((), jnp.int32))
            state, guard, sums = self.programs.epoch(
                state, data, batch_size, shuffle, guard, policy
            )
            logs = finish(sums)
            if val is not None:
                val_sums = self.programs.evaluate_sums(
                    state.params, state.model_state, val, batch_size
                )
                logs.update({f"val_{k}": v for k, v in finish(val_sums).items()})
            facts = {} if guard is None else {"skipped": guard.skipped, "halted": guard.halted}
            if watch:  # the steps ran unguarded: did the epoch end finite (_run_plan)?
                facts = {"finite": state_finite(state, sums["loss"])}
            return state, guard, (logs, facts)

        def body(i: jax.Array, carry: tuple) -> tuple:
            state, guard, out = carry
            state, guard, now = one_epoch(state, guard)
            out = jax.tree.map(lambda whole, one: whole.at[i].set(one), out, now)
            return state, guard, out

        guard = None if policy is None else new_guard(state.params)
        shapes = jax.eval_shape(one_epoch, state, guard)[2]
        out = jax.tree.map(lambda s: jnp.zeros((capacity, *s.shape), s.dtype), shapes)
        state, guard, (logs, facts) = jax.lax.fori_loop(0, count, body, (state, guard, out))
        return state, logs, facts, guard

    def fit(
        self,
        state: TrainState,
        x: Any = None,
        y: Any = None,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        shuffle: bool = True,
        validation_split: float = 0.0,
        validation_data: Any = None,
        sample_weight: Any = None,
        class_weight: dict[int, float] | None = None,
        verbose: int = 1,
        callbacks: Sequence[Callback | Callable] = (),
        on_nonfinite: str = "raise",
        checkpoint: str | Checkpointing | None = None,
        steps_per_epoch: int | None = None,
        steps_per_execution: int | None = None,
        validation_steps: int | None = None,
    ) -> FitResult:
        """Trains for ``epochs`` passes over ``(x, y)``, compiled with ``lax.scan``.

        Each epoch shuffles inside the program (a uniformly random permutation
        drawn as ``jax.random.permutation`` draws it, but with cheaper sorts) and
        scans over ``ceil(n / batch_size)`` batches. A last partial batch is padded
        with real examples that are masked out of the loss, the gradient and the
        metrics, so the epoch's loss is exactly the mean over all ``n`` examples.
        Without callbacks or checkpoints, all epochs run as one compiled program: in
        one dispatch with ``verbose=0``, and with progress shown in groups of about
        0.2 s (the first one epoch, unless an earlier fit timed this program's
        epochs), each group's epochs printed as it ends.

        **Numerical guard.** With ``on_nonfinite="raise"`` a step whose loss,
        gradients or updated state are NaN or Inf is not applied, nor any after it,
        and the host raises :class:`~jaxnn.NonFiniteError` at the end of that epoch
        (or, when epochs run as one program, at the end of their dispatch), naming
        the epoch, the batch, the step and the first non-finite gradient path;
        ``error.state`` is the last finite state. To keep the checks out of every
        step, the epochs first run unguarded and report only whether each ended
        with a finite loss sum, params and optimizer and model state (a NaN or Inf
        stays in them once there); only epochs that did not are run again with
        every step checked. So a non-finite gradient that the optimizer itself
        discards (``optax.zero_nans``) leaves no trace and is not reported; a
        dynamic loss scale keeps the check in every step. With ``"skip"`` a
        bad step leaves the state as it was and training goes on;
        ``history["skipped_steps"]`` counts them per epoch, and the epoch's logs
        average over the applied steps. ``"ignore"`` checks nothing.

        **Checkpoints.** With ``checkpoint`` (a directory, or a
        :class:`~jaxnn.Checkpointing` for the settings), the state is saved
        atomically as ``epoch_000005.safetensors`` after every ``every``-th epoch and
        after the last one, keeping the newest ``keep``; with a ``monitor``,
        ``best.safetensors`` holds the state of the best epoch by that log. Each
        file's metadata holds the epoch count, the history so far and the fit
        settings. With ``resume=True`` the newest readable checkpoint there is
        restored (damaged ones are skipped, with a warning) and training continues:
        ``epochs`` is the *total* number of epochs, as Keras's ``initial_epoch``, so
        a run of ``epochs=10`` stopped after 5 and resumed with ``epochs=10`` runs 5
        more, with the same optimizer state and random stream, and gives
        bit-identical parameters and a history of all 10 epochs. The state passed in
        is used only if there is no checkpoint yet. Callbacks start afresh on resume
        (an :class:`~jaxnn.EarlyStopping` forgets its patience). Leftover temporary
        files of saves killed midway are removed.

        **Streams.** ``x`` may instead be a stream of batches (see
        :mod:`jaxnn.stream`): a function returning a fresh iterator per epoch, an
        iterable, or a one-pass iterator or generator, each batch ``(x, y)`` or
        ``(x, y, sample_weight)``; then ``y`` is ``None``. The data is never whole
        in memory: ``steps_per_execution`` batches at a time are stacked and run as
        one compiled ``lax.scan``, while a background thread prepares the next two
        chunks. An epoch ends when the stream ends, or after ``steps_per_epoch``
        batches. The order is the stream's own (``shuffle`` does not apply), and a
        batch equal to the in-memory path's gives bit-identical params. Progress,
        callbacks, the guard and checkpoints work as above. A resume restarts the
        stream at the start of the next epoch: a function is called again, an
        ``iter_epoch`` source (:class:`~jaxnn.ArrayStream`) is asked for that epoch,
        an iterator with ``get_state``/``set_state`` (grain's) is moved to the
        position saved in the checkpoint, and a plain one-pass generator, which
        cannot be moved, reads on from where it is (with a warning).
        ``validation_data`` may be a stream too (with any ``x``), read to its end
        or for ``validation_steps`` batches after each epoch.

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
            validation_data: ``(x_val, y_val)`` or ``(x_val, y_val, weights)``, or
                a stream of such batches; overrides ``validation_split``.
            sample_weight: ``(n,)`` weights of each example in the loss. As in
                Keras, a batch's loss (and so its gradient) is ``sum(w * loss)`` over
                the number of examples in the batch, not over ``sum(w)``, so weights
                change the size of the updates; the reported loss is
                ``sum(w * loss) / n`` over the epoch. A padded last batch counts only
                its real examples, and an example of weight 0 counts as absent (Keras
                counts it in the batch size; the two differ only for weights of 0).
            class_weight: Keras's dict from class index to weight, multiplied into
                ``sample_weight`` for the training data (not validation): an
                example's class is its 0/1 target for a one-output model, its label
                for sparse targets, the argmax of one-hot targets; a class left out
                weighs 1. Not with a stream (put the weights in each batch).
            verbose: 0 silent; 1 a progress bar per epoch with the loss and metrics;
                2 one line per epoch.
            callbacks: :class:`~jaxnn.Callback` objects (such as
                :class:`~jaxnn.EarlyStopping`, :class:`~jaxnn.ReduceLROnPlateau`) or
                functions ``fn(epoch, logs)``; returning ``True`` stops training, a
                :class:`TrainState` goes on from it, and :class:`~jaxnn.Steer` does
                both (see :class:`~jaxnn.Callback`).
            on_nonfinite: ``"raise"``, ``"skip"`` or ``"ignore"``, for a step whose
                loss or gradients are NaN or Inf (see above).
            checkpoint: ``None`` (save nothing), a directory, or a
                :class:`~jaxnn.Checkpointing`.
            steps_per_epoch: with a stream, the batches per epoch (``None``: until
                the stream ends).
            steps_per_execution: with a stream, the batches per compiled dispatch
                (``None``: chosen from the batch's size, up to 64).
            validation_steps: with a streamed ``validation_data``, the batches read
                per validation (``None``: until it ends).

        Returns:
            A :class:`~jaxnn.train.FitResult` ``(state, history)``, which unpacks as
            ``state, history = trainer.fit(...)`` and also reads as ``result.state``
            and ``result.history`` (Keras's ``model.fit(...).history``): the trained
            state and a :class:`~jaxnn.History` of per-epoch ``loss``, metrics,
            ``val_*`` logs, and with ``on_nonfinite="skip"`` ``skipped_steps``.
            After a resume it covers every epoch, those before the checkpoint
            included.

        Raises:
            ValueError: for empty data, ``x`` and ``y`` of different lengths, NaN or
                Inf in the data, a non-positive ``batch_size``, a
                ``validation_split`` outside ``[0, 1)``, targets whose shape does
                not fit the predictions, a checkpoint ``monitor`` that is not a log,
                or a checkpoint to resume from that was written with another
                ``batch_size``, number of examples or ``shuffle``.
            NonFiniteError: under ``on_nonfinite="raise"``, for a non-finite loss or
                gradient.
            TypeError: for data where the state goes (Keras's ``fit(X, y)``: the
                message shows ``state = trainer.init(key, X)`` first).

        Example:
            >>> import jax, numpy as np, os, tempfile
            >>> import jaxnn as nn
            >>> x = np.random.default_rng(0).random((64, 3), dtype=np.float32)
            >>> y = x.sum(axis=1, keepdims=True)
            >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
            >>> state = trainer.init(jax.random.key(0), x)
            >>> directory = tempfile.mkdtemp()
            >>> _, h = trainer.fit(state, x, y, epochs=2, verbose=0, checkpoint=directory)
            >>> sorted(os.listdir(directory))
            ['epoch_000001.safetensors', 'epoch_000002.safetensors']
            >>> state, h = trainer.fit(state, x, y, epochs=4, verbose=0,
            ...                        checkpoint=nn.Checkpointing(directory, resume=True))
            >>> int(state.step), h.epochs  # 2 epochs restored, 2 more run; 2 steps each
            (8, 4)
        """
        _check_state("Trainer.fit", state)
        if class_weight is not None and stream_lib.is_stream(x):
            raise ValueError(
                "Trainer.fit: class_weight needs the whole targets, but x is a stream. "
                "Put per-example weights in each batch, (x, y, sample_weight), instead."
            )
        if stream_lib.is_stream(x):
            return FitResult(
                *self._fit_stream(
                    state,
                    x,
                    y,
                    epochs=epochs,
                    validation_data=validation_data,
                    validation_split=validation_split,
                    sample_weight=sample_weight,
                    verbose=verbose,
                    callbacks=callbacks,
                    on_nonfinite=on_nonfinite,
                    checkpoint=checkpoint,
                    steps_per_epoch=steps_per_epoch,
                    steps_per_execution=steps_per_execution,
                    validation_steps=validation_steps,
                )
            )
        if steps_per_epoch is not None or steps_per_execution is not None:
            raise ValueError(
                "Trainer.fit: steps_per_epoch and steps_per_execution are for streamed "
                "data (an iterator, generator or function of batches); arrays run each "
                "epoch as one program. Drop them, or pass a stream."
            )
        plan = self._plan(
            state,
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=shuffle,
            validation_split=validation_split,
            validation_data=validation_data,
            sample_weight=sample_weight,
            class_weight=class_weight,
            verbose=verbose,
            callbacks=callbacks,
            on_nonfinite=on_nonfinite,
            checkpoint=checkpoint,
            validation_steps=validation_steps,
        )
        state = self._place_state(state)
        # Without callbacks or checkpoints, the host needs nothing between epochs: the
        # epochs run as one program, in one dispatch or, to show progress, in groups.
        if not plan.callbacks and plan.checkpoints is None and plan.val_stream is None:
            return FitResult(*self._fit_whole(state, plan))
        one = lambda s, _: self._run_plan(s, plan, 1, _EPOCHS_PER_CALL)
        return FitResult(*self._fit_per_epoch(state, plan, one))

    def _plan(self, state: TrainState, x: Any, y: Any, **settings: Any) -> _Plan:
        """Checks ``fit``'s arguments and puts the data on the device."""
        where = "Trainer.fit"
        if not isinstance(state, TrainState):
            raise TypeError(
                f"{where}: state must be a TrainState from Trainer.init, got "
                f"{type(state).__name__}."
            )
        batch_size = data_lib.check_batch_size(where, settings["batch_size"])
        # The epoch counter inside the program is an int32.
        epochs = check_positive_int(
            where, "epochs", settings["epochs"], minimum=0, maximum=2**31 - 1
        )
        shuffle = check_bool(where, "shuffle", settings["shuffle"])
        split = data_lib.check_validation_split(where, settings["validation_split"])
        verbose = check_verbose(where, settings["verbose"])
        on_nonfinite = settings["on_nonfinite"]
        if on_nonfinite == "stop":
            raise ValueError(
                f"{where}: on_nonfinite='stop' is for population members; a single network "
                "takes 'raise' (stop with the last finite state in the error), 'skip' or "
                "'ignore'."
            )
        check_choice(where, "on_nonfinite", on_nonfinite, ("raise", "skip", "ignore"))
        checkpointing = Checkpointing.of(where, settings["checkpoint"])
        if checkpointing is not None:
            check_directory(where, "checkpoint", checkpointing.directory)
        callbacks = as_callbacks(where, settings["callbacks"])

        # The same small arrays as the last fit (a notebook loop, a benchmark) are
        # not converted and checked again: see _Prepared.
        key = _Prepared.key(x, y, settings["sample_weight"])
        fresh = self._prepared is None or not self._prepared.matches(key)
        if fresh:
            data, n = data_lib.prepare(where, x, y, settings["sample_weight"], need_y=True)
        else:
            data, n = self._prepared.data, self._prepared.examples
        val, val_stream = None, None
        val_steps = settings["validation_steps"]
        if val_steps is not None:
            val_steps = check_positive_int(where, "validation_steps", val_steps)
        if stream_lib.is_stream(settings["validation_data"]):
            val_stream = (settings["validation_data"], val_steps)
        elif val_steps is not None:
            raise ValueError(
                f"{where}: validation_steps={val_steps} is for a streamed validation_data "
                "(an iterator, generator or function of batches); validation arrays are "
                "evaluated whole. Drop validation_steps, or pass a stream."
            )
        elif settings["validation_data"] is not None:
            val, _ = data_lib.validation(where, settings["validation_data"])
        elif split:
            data, val, n = data_lib.split_validation(where, data, n, split)
        self._check_targets(state, data.x, data.y)
        if settings["class_weight"] is not None:  # Keras's: the training data only
            out = jax.eval_shape(self.model.apply, state.params, state.model_state, spec_of(data.x))
            weights = data_lib.class_weights(where, settings["class_weight"], data.y, out[0])
            data = data._replace(weight=data.weight * weights)
        for checked in (data if fresh or split else None, val):
            data_lib.check_target_values(
                where, self.loss, self.model, state.params, state.model_state, checked
            )
        if fresh and key is not None and not split:
            self._prepared = _Prepared(key, data, n)
        # A batch never outgrows the data: a padded batch of 2**40 rows is no help.
        batch_size = min(batch_size, n)
        names = self.log_names(
            validation=val is not None or val_stream is not None, state=state, x=data.x, y=data.y
        )
        names += ["skipped_steps"] if on_nonfinite == "skip" else []
        check_monitors(where, callbacks, names)

        checkpoints = None
        if checkpointing is not None:
            checkpoints = CheckpointDirectory(where, checkpointing)
            checkpoints.check_monitor(names)
        return _Plan(
            data=self._place_data(data),
            val=self._place_data(val),
            examples=n,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=shuffle,
            policy=None if on_nonfinite == "ignore" else on_nonfinite,
            skip=on_nonfinite == "skip",
            callbacks=callbacks,
            checkpoints=checkpoints,
            resume=checkpointing is not None and checkpointing.resume,
            verbose=verbose,
            val_stream=val_stream,
        )

    def _run_plan(self, state: TrainState, plan: _Plan, count: int, capacity: int) -> tuple:
        """``count`` epochs from ``state``: ``(state, logs, facts, guard)``.

        Under ``on_nonfinite="raise"`` the epochs first run with no guard in their
        steps (the guard's checks and its choice of state cost a third of the
        tutorial network's step): each epoch only reports whether its loss sum and
        its final state are finite. A NaN or Inf, once in a sum or in the params or
        optimizer state, stays there (an update adds to the params; the moments
        average in), so a bad step shows at its epoch's end. Only then do the same
        epochs run again from ``state`` with every step guarded, which finds the
        first bad step and keeps the last finite state, exactly as if they had been
        guarded all along. A dynamic loss scale, which skips overflowing steps
        itself, keeps the per-step guard.
        """

        def run(policy: str | None) -> tuple:
            return self._run(
                state,
                plan.data,
                plan.val,
                np.int32(count),
                capacity=capacity,
                batch_size=plan.batch_size,
                shuffle=plan.shuffle,
                policy=policy,
            )

        if not self._watches(plan.policy):
            return run(plan.policy)
        new_state, logs, facts, _ = run("watch")
        if np.all(jax.device_get(facts["finite"])[:count]):
            return new_state, logs, {}, None
        return run("raise")

    def _fit_whole(self, state: TrainState, plan: _Plan) -> tuple[TrainState, History]:
        """The epochs as one program: in one dispatch when silent; else in groups
        that grow until each takes about :data:`_GROUP_SECONDS`, the epochs of a group
        shown when it ends (the first group one epoch, or, when an earlier fit timed
        this program's epochs, as many as fit in that time). A bad step freezes the
        state there; the host learns of it at the end of its group."""
        where = "Trainer.fit"
        if not plan.epochs:
            return state, History()
        capacity = _EPOCHS_PER_CALL
        progress = Progress(plan.verbose, plan.epochs, -(-plan.examples // plan.batch_size))
        names = self.log_names(
            validation=plan.val is not None, state=state, x=plan.data.x, y=plan.data.y
        )
        history: dict[str, list[np.ndarray]] = {}
        timing = (plan.examples, plan.batch_size, plan.shuffle, plan.val is not None, capacity)
        known = self._epoch_seconds.get(timing)
        count = 1 if known is None else max(1, int(_GROUP_SECONDS / max(known, 1e-9)))
        done, count = 0, plan.epochs if plan.verbose == 0 else count
        while done < plan.epochs:
            count = min(count, plan.epochs - done, capacity)
            programs, previous = self._run._cache_size(), count
            start = time.perf_counter()
            new_state, logs, facts, guard = self._run_plan(state, plan, count, capacity)
            logs, facts = jax.device_get((logs, facts))
            seconds = time.perf_counter() - start
            halted = np.asarray(facts["halted"][:count]) if guard is not None else None
            bad = int(np.argmax(halted)) if halted is not None and halted.any() else None
            shown = count if bad is None else bad
            part = {k: np.asarray(logs[k][:shown], np.float64) for k in names}
            if plan.skip:
                part["skipped_steps"] = np.asarray(facts["skipped"][:shown], np.int64)
            for k, v in part.items():
                history.setdefault(k, []).append(v)
            for i in range(shown if plan.verbose else 0):
                epoch_logs = {k: v[i].item() for k, v in part.items()}
                progress.epoch_end(done + i, epoch_logs, seconds / count)
            if bad is not None:
                before = History({k: np.concatenate(v) for k, v in history.items()})
                raise nonfinite_error(where, guard, new_state, done + bad, plan.epochs, before)
            state, done = new_state, done + count
            # The next group: about _GROUP_SECONDS long, and, after a group whose time
            # included compiling, at most 4 times larger.
            count = max(1, int(_GROUP_SECONDS * count / max(seconds, 1e-9)))
            if self._run._cache_size() != programs:
                count = min(count, 4 * previous)
            else:  # no compiling in it: a time per epoch for later fits
                self._epoch_seconds[timing] = seconds / previous
            if plan.verbose == 0:
                count = plan.epochs  # as many as a call holds
            if jax.process_count() > 1:
                # Every process must dispatch the same groups, and their timings differ:
                # one epoch at a time, as all processes agree.
                count = 1
        return state, History({k: np.concatenate(v) for k, v in history.items()})

    def _fit_per_epoch(
        self, state: TrainState, plan: _Plan, run_epoch: Callable[[TrainState, int], tuple]
    ) -> tuple[TrainState, History]:
        """Epoch by epoch, ``run_epoch(state, epoch) -> (state, logs, facts, guard)``
        each (logs and facts with a leading axis of 1); the host sees each epoch's
        logs, for progress, callbacks and checkpoints."""
        where = "Trainer.fit"
        first_epoch, history = 0, {}
        settings = {
            "batch_size": plan.batch_size,
            "examples": plan.examples,
            "shuffle": plan.shuffle,
        }
        ckpt = plan.checkpoints
        if ckpt is not None:
            data = None if plan.position is not None else plan.data
            ckpt.claim({"state": fingerprint(state), "data": fingerprint(data)})
            found = ckpt.restore_latest(state, settings) if plan.resume else None
            if plan.resume:
                ckpt.check_same_epoch(0 if found is None else found[1])
            if found is not None:
                state, first_epoch, history = found
                if first_epoch > plan.epochs:
                    raise ValueError(
                        f"{where}: cannot resume to epochs={plan.epochs}: the checkpoint "
                        f"in {ckpt.directory!r} has already trained {first_epoch} epochs "
                        "(epochs is the total, as Keras's initial_epoch). Pass "
                        f"epochs >= {first_epoch}, or restore the file you want with "
                        "nn.checkpoint.restore."
                    )
                state = self._place_state(state)
                if plan.position is not None:
                    plan.position.restore(where, ckpt.data_state, first_epoch)

        steps = -(-plan.examples // plan.batch_size) if plan.examples else plan.steps
        progress = Progress(plan.verbose, plan.epochs, steps)
        for cb in plan.callbacks:
            cb.on_train_begin(state)
        for epoch in range(first_epoch, plan.epochs):
            start = time.perf_counter()
            # A callback may return a new state (a learning rate set): see Callback.
            state, _ = run_callbacks(where, plan.callbacks, "on_epoch_begin", state, epoch)
            new_state, logs, facts, guard = run_epoch(state, epoch)
            logs, facts = jax.device_get((logs, facts))
            logs = {k: float(v[0]) for k, v in logs.items()}
            if plan.skip:
                logs["skipped_steps"] = int(facts["skipped"][0])
            if guard is not None and facts["halted"][0]:
                before = History({k: np.asarray(v) for k, v in history.items()})
                raise nonfinite_error(where, guard, new_state, epoch, plan.epochs, before)
            state = new_state
            if plan.val_stream is not None:
                val_logs = self._evaluate_stream(where, state, *plan.val_stream, epoch=epoch)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            seconds = time.perf_counter() - start
            # The callbacks share the logs, as in Keras, and may add to them
            # (learning_rate) before history and progress see them; each may stop
            # training or return a new state to go on from.
            state, stop = run_callbacks(where, plan.callbacks, "on_epoch_end", state, epoch, logs)
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            progress.epoch_end(epoch, logs, seconds)
            if ckpt is not None:
                last = stop or epoch + 1 == plan.epochs
                ckpt.after_epoch(
                    state,
                    epoch + 1,
                    history,
                    logs,
                    settings,
                    last=last,
                    data_state=None if plan.position is None else plan.position.save(),
                )
            if stop:
                break
        for cb in plan.callbacks:
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
        y: Any = None,
        *,
        batch_size: int = 32,
        sample_weight: Any = None,
        steps: int | None = None,
    ) -> dict[str, float]:
        """The loss and metrics over ``(x, y)``, in inference mode, batched and masked.

        ``x`` may be a stream of ``(x, y)`` or ``(x, y, sample_weight)`` batches, as
        for :meth:`fit` (then ``y`` is ``None``): it is read in prefetched chunks,
        to its end or for ``steps`` batches, and the result is the same as on the
        same examples in memory.

        Args:
            state: the trained state.
            x: inputs ``(n, ...)``, or a stream of batches.
            y: targets ``(n, ...)``; ``None`` for a stream.
            batch_size: examples per forward pass; the result does not depend on it.
                A stream's batches keep their own size.
            sample_weight: ``(n,)`` weights of each example in the loss, reduced
                as Keras does: ``sum(w * loss) / n`` over the examples of non-zero
                weight (see :meth:`fit`), not over ``sum(w)``.
            steps: with a stream, the batches to read (``None``: until it ends).

        Returns:
            ``{"loss": ..., "<metric>": ...}`` as Python floats.

        Raises:
            ValueError: for bad data, as :meth:`fit`.

        Example:
            >>> import jax, jax.numpy as jnp, jaxnn as nn
            >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
            >>> state = trainer.init(jax.random.key(0), jnp.zeros((1, 3)))
            >>> sorted(trainer.evaluate(state, jnp.ones((5, 3)), jnp.ones((5, 1))))
            ['loss']
        """
        where = "Trainer.evaluate"
        _check_state(where, state)
        batch_size = data_lib.check_batch_size(where, batch_size)
        steps = self._check_stream_arguments(where, x, y, steps, sample_weight)
        if stream_lib.is_stream(x):
            return self._evaluate_stream(where, self._place_state(state), x, steps)
        data, n = data_lib.prepare(where, x, y, sample_weight, need_y=True)
        self._check_targets(state, data.x, data.y)
        data_lib.check_target_values(
            where, self.loss, self.model, state.params, state.model_state, data
        )
        state, data = self._place_state(state), self._place_data(data)
        logs = self._evaluate_logs(
            state.params, state.model_state, data, batch_size=min(batch_size, n)
        )
        return {k: float(v) for k, v in jax.device_get(logs).items()}

    def predict(
        self, state: TrainState, x: Any = None, *, batch_size: int = 32, steps: int | None = None
    ) -> Any:
        """The model's outputs on ``x`` in inference mode, batched.

        ``x`` may be a stream (as for :meth:`fit`) whose items are input batches, or
        ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)`` tuples whose ``x`` is used;
        it is read in prefetched chunks, to its end or for ``steps`` batches. With
        several processes, each gets the outputs of its own batches.

        Args:
            state: the trained state.
            x: inputs ``(n, ...)``, or a stream of batches.
            batch_size: examples per forward pass; the result does not depend on it.
                A stream's batches keep their own size.
            steps: with a stream, the batches to read (``None``: until it ends).

        Returns:
            The outputs, ``(n, ...)``: a JAX array for in-memory ``x``, NumPy arrays
            gathered on the host for a stream.

        Raises:
            ValueError: for bad data, as :meth:`fit`.

        Example:
            >>> import jax, jax.numpy as jnp, jaxnn as nn
            >>> trainer = nn.Trainer(nn.Dense(2), "mse", "sgd")
            >>> state = trainer.init(jax.random.key(0), jnp.zeros((1, 3)))
            >>> trainer.predict(state, jnp.ones((5, 3))).shape
            (5, 2)
        """
        where = "Trainer.predict"
        _check_state(where, state)
        batch_size = data_lib.check_batch_size(where, batch_size)
        steps = self._check_stream_arguments(where, x, None, steps, None)
        if stream_lib.is_stream(x):
            return self._predict_stream(where, self._place_state(state), x, steps)
        data, n = data_lib.prepare(where, x)
        data_lib.check_input_ids(where, self.model, state.params, data.x)
        state, data = self._place_state(state), self._place_data(data)
        return self._predict(state.params, state.model_state, data.x, batch_size=min(batch_size, n))

    # -- save and load

    def save(self, path: str, state: TrainState, metadata: dict[str, Any] | None = None) -> None:
        """Saves a :class:`TrainState` to one safetensors file, atomically.

        The params, model state, optimizer state, step and key are stored by name
        (``params/dense/kernel``); :meth:`load` reads them back, and
        ``nn.checkpoint.restore(path)`` reads them as nested dicts without a trainer
        (``restored["params"]``, ``restored["model_state"]``) for ``model.apply``.

        Args:
            path: the file to write (``.safetensors`` is the customary suffix); its
                directory must exist.
            state: the state to save.
            metadata: JSON-serialisable facts to keep beside it (an epoch, a
                config); read them with ``nn.checkpoint.read_metadata(path)["user"]``.

        Raises:
            TypeError: for a ``state`` that is not a ``TrainState``, or metadata that
                is not JSON-serialisable.

        Example:
            >>> import os, tempfile, jax, jax.numpy as jnp, jaxnn as nn
            >>> trainer = nn.Trainer(nn.Dense(1), "mse", "adam")
            >>> state = trainer.init(jax.random.key(0), jnp.zeros((1, 3)))
            >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
            >>> trainer.save(path, state)
            >>> restored = trainer.load(path)
            >>> restored.params["kernel"].shape, int(restored.step)
            ((3, 1), 0)
            >>> nn.checkpoint.restore(path)["params"]["kernel"].shape  # no trainer needed
            (3, 1)
        """
        _check_state("Trainer.save", state)
        checkpoint_lib.save(path, state, metadata)

    def load(self, path: str, like: TrainState | None = None) -> TrainState:
        """Loads a :class:`TrainState` saved by :meth:`save` (or by ``fit``'s
        checkpoints) for this trainer's optimizer.

        Without ``like``, the params, model state, step and key are read from the
        file as stored, and the optimizer state's structure is this trainer's
        optimizer's for those params; every array is then checked against it.

        Args:
            path: the file.
            like: ``None``, or a state to check the file against and take the
                structure (and placement) from, such as ``trainer.init(key, x)``;
                the file's params must then have its model's shapes.

        Returns:
            The state, ready for :meth:`fit`, :meth:`evaluate` or :meth:`predict`.

        Raises:
            CheckpointError: for a damaged file, a file that holds no ``TrainState``
                (plain params, say: read those with ``nn.checkpoint.restore``), or
                one saved with another optimizer or model (the first differences
                named by path).

        Example:
            >>> import os, tempfile, jax, jax.numpy as jnp, jaxnn as nn
            >>> trainer = nn.Trainer(nn.Dense(2), "mse", "sgd", learning_rate=0.1)
            >>> state = trainer.init(jax.random.key(0), jnp.zeros((1, 3)))
            >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
            >>> trainer.save(path, state)
            >>> trainer.load(path, like=state).params["kernel"].shape
            (3, 2)
        """
        if like is not None:
            _check_state("Trainer.load", like)
            return self._place_state(checkpoint_lib.restore(path, like))
        stored = checkpoint_lib.restore(path)
        fields = ("params", "opt_state", "step", "key")
        if not isinstance(stored, dict) or not all(name in stored for name in fields):
            held = sorted(stored) if isinstance(stored, dict) else []
            raise checkpoint_lib.CheckpointError(
                f"Trainer.load: {str(path)!r} holds {held[:8]}, not a TrainState (params, "
                "model_state, opt_state, step, key) as Trainer.save and fit's checkpoints "
                "write it. Read other trees with nn.checkpoint.restore(path)."
            )
        params = stored["params"]
        like = TrainState(
            params,
            stored.get("model_state", {}),
            jax.eval_shape(self.optimizer.init, params),
            stored["step"],
            stored["key"],
        )
        return self._place_state(checkpoint_lib.restore(path, like))


_KERAS_CALLS = {
    "Trainer.fit": "state, history = trainer.fit(state, X, y)",
    "Trainer.evaluate": "trainer.evaluate(state, X, y)",
    "Trainer.predict": "trainer.predict(state, X)",
}


_GROUP_SECONDS = 0.2
"""With progress shown, ``fit`` runs its epochs in groups of about this many seconds
(the first one epoch, unless an earlier fit timed the program's epochs), and shows
each group's epochs as it ends."""


_EPOCHS_PER_CALL = 128
"""The epochs one call of ``fit``'s compiled program runs at most (and its logs
hold). The number it runs is an argument, so every in-memory ``fit`` of a Trainer
on data of one shape runs one program: silent (more epochs are several calls), shown
in groups, epoch by epoch with callbacks or checkpoints, or resumed. XLA may round
two programs differently even where they differ only in a loop's length (the loop
of a one-epoch program is removed), so one program is what makes these agree bit
for bit."""


_EARLIER: collections.OrderedDict = collections.OrderedDict()
"""The latest Trainers by configuration, whose compiled programs an equal new
Trainer reuses (at most :data:`_EARLIER_SIZE`, the least recently used dropped)."""
_EARLIER_SIZE = 16
_COMPILED = (
    "programs",
    "_checked",
    "_inits",
    "_epoch_seconds",
    "_step",
    "_run",
    "_evaluate",
    "_evaluate_logs",
    "_predict",
    "_chunk",
)
"""A Trainer's compiled parts, which an equal Trainer shares."""


def _configuration(*parts: Any) -> tuple | None:
    """A Trainer's configuration as a dictionary key: its model (equal to an equal
    model built by the same constructors, see ``Layer.config``) and the arguments it
    was given; ``None`` when one of them cannot be hashed."""
    try:
        hash(parts)
    except TypeError:
        return None
    return parts


class _Prepared:
    """The last fit's training data, converted and checked, kept for the next fit of
    the same arrays: a warm fit of a small network then costs little more than its
    program. Only NumPy and JAX arrays of at most :data:`_REUSE_BYTES` in all are
    kept. A NumPy array counts as the same when it is the same object with the same
    contents (a CRC-32 of its bytes, so an array changed in place is converted
    again); a JAX array, which cannot change, when it is the same object."""

    def __init__(self, key: tuple, data: Data, examples: int):
        self.held, self.signature = key  # ``held`` keeps the arrays (and their ids) alive
        self.data, self.examples = data, examples

    @staticmethod
    def key(*trees: Any) -> tuple | None:
        """``(arrays, signature)`` of ``trees``' leaves, or ``None`` when they are
        not all arrays or are too large to keep."""
        leaves, treedef = jax.tree.flatten(trees)
        parts: list = [treedef]
        total = 0
        for leaf in leaves:
            if not isinstance(leaf, (np.ndarray, jax.Array)):
                return None
            total += leaf.nbytes
            if total > _REUSE_BYTES:
                return None
            if isinstance(leaf, np.ndarray):
                contents = zlib.crc32(np.ascontiguousarray(leaf).view(np.uint8).reshape(-1))
                parts.append((id(leaf), leaf.shape, leaf.dtype.str, contents))
            else:
                parts.append((id(leaf),))
        return tuple(leaves), tuple(parts)

    def matches(self, key: tuple | None) -> bool:
        return key is not None and key[1] == self.signature


_REUSE_BYTES = 1 << 24
"""The most bytes of training data a Trainer keeps for its next fit (16 MiB)."""


def _network(first: Any, *args: Any, **kwargs: Any) -> tuple[Params, int]:
    """The network of a ``Trainer`` program: its first argument's params (a
    :class:`TrainState`, or the params themselves)."""
    del args, kwargs
    return (first.params if isinstance(first, TrainState) else first), 1


def _Compiled(fn: Callable, static_argnames: Sequence[str] = ()) -> Compiled:
    """``fn`` compiled as ``programs.Compiled``, picked by the network it runs."""
    return Compiled(fn, static_argnames, network=_network)


def _init_with(init: Callable, spec: Any, key: PRNGKey) -> TrainState:
    """``init(key, spec)``, with the spec bound (jitted once per input signature)."""
    return init(key, spec)


def _compile_init(init: Callable[[PRNGKey], TrainState], key: PRNGKey) -> Callable:
    """``init`` compiled for ``key``'s type: quickly for a small state (see
    ``programs.compile_once``)."""
    return compile_once(init, key)


def _log_names_of(
    evaluate_sums: Callable, names: list[str], state: TrainState, x: Any, y: Any
) -> list[str]:
    """``names`` (``loss`` and the metrics' names) with each metric of several values
    replaced by the names of its logs, found from shapes alone (``jax.eval_shape``:
    nothing runs)."""
    x, y = spec_of(x), spec_of(y)
    specs = spec_of((state.params, state.model_state, x, y))
    key = (evaluate_sums, tuple(names), jax.tree.structure(specs), tuple(jax.tree.leaves(specs)))
    if key in _LOG_NAMES:  # tracing an evaluation costs milliseconds: once per signature
        return list(_LOG_NAMES[key])
    n = data_lib.num_examples("Trainer.log_names", "x", x)
    data = Data(x, y, jax.ShapeDtypeStruct((n,), jnp.float32))
    found: list[str] = []

    def logs(params: Params, model_state: State, data: Data) -> Any:
        sums = evaluate_sums(params, model_state, data, min(n, 32))
        for name in names:
            value = sums[name]
            found.extend(finish_state(name, value) if isinstance(value, MetricState) else [name])
        return sums["loss"]

    jax.eval_shape(logs, state.params, state.model_state, data)
    _LOG_NAMES[key] = tuple(found)
    if len(_LOG_NAMES) > _EARLIER_SIZE:
        _LOG_NAMES.popitem(last=False)
    return found


_LOG_NAMES: collections.OrderedDict = collections.OrderedDict()
"""The log names of the latest signatures :func:`_log_names_of` traced (at most
:data:`_EARLIER_SIZE`, the oldest dropped)."""


def _evaluated(evaluate_sums: Callable, *args: Any, batch_size: int) -> dict[str, jax.Array]:
    """The logs of ``evaluate_sums``, finished inside the same program (no eager ops)."""
    return finish(evaluate_sums(*args, batch_size=batch_size))


def _check_state(where: str, state: Any) -> None:
    """Refuses anything but a :class:`TrainState` (bare params too), before any trace;
    data where the state goes (Keras's ``model.fit(X, y)``) gets the jaxnn call."""
    if isinstance(state, TrainState):
        return
    if isinstance(state, (np.ndarray, jax.Array, list)) and where in _KERAS_CALLS:
        shape = f" of shape {np.shape(state)}" if not isinstance(state, list) else ""
        raise TypeError(
            f"{where}: the first argument is the TrainState, got data ({type(state).__name__}"
            f"{shape}). A Trainer holds no weights: make the state first, then pass it, "
            f"as in state = trainer.init(jax.random.key(0), X); {_KERAS_CALLS[where]}."
        )
    raise TypeError(
        f"{where}: state must be a TrainState from Trainer.init or Trainer.fit, got "
        f"{type(state).__name__}. For bare params, use model.apply."
    )


def _optimizer(
    optimizer: str | optax.GradientTransformation, learning_rate: Any
) -> optax.GradientTransformation:
    """The optimizer of ``Trainer``, with ``learning_rate`` passed to a named one."""
    if learning_rate is None:
        return optimizers.get(optimizer)
    if isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            "Trainer: learning_rate is for a named optimizer (optimizer='adam'); an optax "
            "transformation carries its own, e.g. optax.adam(learning_rate=1e-2). Drop "
            "learning_rate, or pass the optimizer by name."
        )
    number = isinstance(learning_rate, (int, float, np.number)) and not isinstance(
        learning_rate, bool
    )
    if not callable(learning_rate) and not (number and 0 < learning_rate < float("inf")):
        raise ValueError(
            f"Trainer: learning_rate must be a positive number (or an optax schedule), got "
            f"{learning_rate!r}. Keras's default for Adam is 1e-3."
        )
    return optimizers.get(optimizer, learning_rate=learning_rate)
