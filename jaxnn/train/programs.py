"""Training's pure programs: the seam that ``Trainer`` and populations both build on.

:func:`programs` turns a model, a loss, an optimizer and metrics into a
:class:`Programs`, a NamedTuple of pure functions over a :class:`TrainState` (in the
manner of optax's ``GradientTransformation``). Nothing here is jitted, and nothing
holds arrays: :class:`~jaxnn.Trainer` compiles them for one network, and
:mod:`jaxnn.population` vmaps or maps them over members and compiles that.

Log sums: a batch or an epoch reports *sums* (``"loss"`` weighted, each metric over
the examples of non-zero weight, plus ``"_weight"`` and ``"_count"``), so that sums
of any number of batches add up exactly; :func:`finish` turns them into means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnn import data as data_lib
from jaxnn._types import Params, PRNGKey, State
from jaxnn.core import Layer
from jaxnn.data import Data
from jaxnn.losses import Loss
from jaxnn.metrics import Metric
from jaxnn.parallel import DataParallel
from jaxnn.train.guard import Guard, finite_leaves

__all__ = ["Programs", "TrainState", "finish", "init_optimizer", "programs"]

Sums = dict[str, jax.Array]


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


class Programs(NamedTuple):
    """The pure functions of training one network. Jit, vmap or scan them freely.

    Attributes:
        init: ``init(key, spec) -> TrainState`` at step 0.
        step: ``step(state, x, y, weight, mask, key) -> (state, sums)``: one update
            on a batch (``mask`` marks padding out).
        guarded_step: ``guarded_step(state, guard, policy, batch, x, y, weight, mask,
            key) -> (state, guard, sums)``: one update applied only if its loss and
            gradients are finite (``policy`` ``"raise"`` or ``"skip"``).
        epoch: ``epoch(state, data, batch_size, shuffle, guard=None, policy=None) ->
            (state, guard, sums)``: one pass over a :class:`~jaxnn.data.Data` as a
            ``lax.scan`` over shuffled, padded and masked batches.
        chunk: ``chunk(state, batches, start, dropout_key, guard=None, policy=None) ->
            (state, guard, sums)``: the steps of streamed batches stacked as
            ``(x, y, weight, mask)``, each ``(k, batch, ...)``, as a ``lax.scan``;
            step ``i`` draws its dropout key as the in-memory epoch does
            (``fold_in(dropout_key, start + i)``), and a step whose mask is all 0 is
            padding and changes nothing.
        evaluate_sums: ``evaluate_sums(params, model_state, data, batch_size) -> sums``
            in inference mode.
        predict_batches: ``predict_batches(params, model_state, x, batch_size) -> y``
            in inference mode.
    """

    init: Callable[..., TrainState]
    step: Callable[..., tuple[TrainState, Sums]]
    guarded_step: Callable[..., tuple[TrainState, Guard, Sums]]
    epoch: Callable[..., tuple[TrainState, Guard | None, Sums]]
    chunk: Callable[..., tuple[TrainState, Guard | None, Sums]]
    evaluate_sums: Callable[..., Sums]
    predict_batches: Callable[..., Any]


def init_optimizer(optimizer: optax.GradientTransformation, params: Params) -> optax.OptState:
    """``optimizer.init(params)`` under standard dtype promotion (optax mixes int32
    counts with float hyperparameters, which JAX's strict promotion refuses)."""
    with jax.numpy_dtype_promotion("standard"):
        return optimizer.init(params)


def finish(sums: Sums) -> Sums:
    """Turns log sums into means: the loss over the weights, metrics over the count.

    Nothing counted (every step skipped, or every weight 0) gives NaN, not a perfect 0.

    Example:
        >>> sums = {"loss": jnp.array(3.0), "acc": jnp.array(1.0),
        ...         "_weight": jnp.array(6.0), "_count": jnp.array(2.0)}
        >>> {k: float(v) for k, v in finish(sums).items()}
        {'loss': 0.5, 'acc': 0.5}
    """
    sums = dict(sums)
    weight = sums.pop("_weight")
    count = sums.pop("_count")
    out = {}
    for k, v in sums.items():
        denominator = weight if k == "loss" else count
        out[k] = jnp.where(denominator > 0, v / jnp.where(denominator > 0, denominator, 1), jnp.nan)
    return out


def programs(
    model: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    metrics: Sequence[Metric],
    *,
    parallel: DataParallel | None = None,
) -> Programs:
    """Builds the pure programs of training ``model``.

    Args:
        model: the :class:`~jaxnn.Layer`.
        loss: a :class:`~jaxnn.Loss` (per-example values).
        optimizer: an optax transformation.
        metrics: :class:`~jaxnn.Metric` values, with unique names other than ``"loss"``.
        parallel: a :class:`~jaxnn.parallel.DataParallel`: every batch gathered
            inside an epoch, an evaluation or a prediction is split over its devices;
            ``None`` for one device.

    Returns:
        The :class:`Programs`.

    Example:
        >>> import jax, optax, jaxnn as nn
        >>> p = programs(nn.Dense(1), nn.losses.get("mse"), optax.sgd(0.1), ())
        >>> state = p.init(jax.random.key(0), jax.ShapeDtypeStruct((1, 3), "float32"))
        >>> x, y = jnp.ones((4, 3)), jnp.zeros((4, 1))
        >>> data = nn.data.Data(x, y, jnp.ones(4))
        >>> state, _, sums = p.epoch(state, data, 2, False)
        >>> int(state.step), sorted(finish(sums))
        (2, ['loss'])
    """
    tiny = jnp.finfo(jnp.float32).tiny
    # A step is fenced off from the program around it, so that XLA compiles its
    # arithmetic the same way inside the epoch program (batches gathered from arrays)
    # and inside a streamed chunk (batches sliced from a stack): the two then give
    # bit-identical params for the same batches.
    isolate = jax.lax.optimization_barrier
    constrain = (lambda tree: tree) if parallel is None else parallel.constrain_batch

    def init(key: PRNGKey, spec: Any) -> TrainState:
        init_key, train_key = jax.random.split(key)
        params, model_state = model.init(init_key, spec)
        return TrainState(
            params=params,
            model_state=model_state,
            opt_state=init_optimizer(optimizer, params),
            step=jnp.zeros((), jnp.int32),
            key=train_key,
        )

    def loss_and_sums(
        params: Params,
        model_state: State,
        x: Any,
        y: Any,
        weight: jax.Array,
        mask: jax.Array,
        key: PRNGKey | None,
        training: bool,
    ) -> tuple[jax.Array, tuple[State, Sums]]:
        """The mean loss over the batch, the new model state and the batch's log sums."""
        predictions, new_state = model.apply(params, model_state, x, key=key, training=training)
        per_example = loss.per_example(predictions, y).astype(jnp.float32)
        weight = weight.astype(jnp.float32) * mask.astype(jnp.float32)
        total_weight = jnp.sum(weight)
        loss_sum = jnp.sum(per_example * weight)
        mean = loss_sum / jnp.maximum(total_weight, tiny)
        # Metrics are unweighted, as Keras's ``metrics`` are, but an example of weight
        # 0 (masked padding, or the padding of `population.kfold`) is not counted.
        counted = (weight != 0).astype(jnp.float32)
        sums = {"loss": loss_sum, "_weight": total_weight, "_count": jnp.sum(counted)}
        for m in metrics:
            sums[m.name] = jnp.sum(m.per_example(predictions, y).astype(jnp.float32) * counted)
        return mean, (new_state, sums)

    grad_fn = jax.grad(loss_and_sums, has_aux=True)

    def gradients(
        state: TrainState, x: Any, y: Any, weight: jax.Array, mask: jax.Array, key: PRNGKey
    ) -> tuple[Params, State, Sums]:
        grads, (model_state, sums) = grad_fn(
            state.params, state.model_state, x, y, weight, mask, key, True
        )
        return grads, model_state, sums

    def apply_gradients(state: TrainState, grads: Params, model_state: State) -> TrainState:
        # optax mixes int32 counts with float hyperparameters; let it promote as it
        # expects even when the caller runs JAX's strict dtype promotion.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        if parallel is not None:  # large arrays stay split where they were
            params = parallel.constrain_state(params)
            opt_state = parallel.constrain_state(opt_state, optimizer=True)
        return state._replace(
            params=params, model_state=model_state, opt_state=opt_state, step=state.step + 1
        )

    def step(
        state: TrainState, x: Any, y: Any, weight: jax.Array, mask: jax.Array, key: PRNGKey
    ) -> tuple[TrainState, Sums]:
        state, x, y, weight, mask = isolate((state, x, y, weight, mask))
        grads, model_state, sums = gradients(state, x, y, weight, mask, key)
        return isolate((apply_gradients(state, grads, model_state), sums))

    def guarded_step(
        state: TrainState,
        guard: Guard,
        policy: str,
        batch: jax.Array,
        x: Any,
        y: Any,
        weight: jax.Array,
        mask: jax.Array,
        key: PRNGKey,
    ) -> tuple[TrainState, Guard, Sums]:
        """One update, applied only if its loss, its gradients and the state it
        makes (params, optimizer state, model state) are all finite.

        Under ``"raise"`` the first bad step also freezes every later update (the
        guard is ``halted``), so the state stays the last finite one; under
        ``"skip"`` a bad step is counted and training goes on. Either way the
        first bad step is recorded, and a step not applied adds nothing to the logs.
        The kept state is chosen by ``lax.cond`` rather than by ``where`` on every
        leaf, which on a small network costs more than the step itself.
        """
        state, x, y, weight, mask = isolate((state, x, y, weight, mask))
        grads, model_state, sums = gradients(state, x, y, weight, mask, key)
        grads_ok = finite_leaves(grads)
        new_state = isolate(apply_gradients(state, grads, model_state))
        update_ok = finite_leaves(new_state.params)
        state_ok = jnp.all(finite_leaves((new_state.opt_state, new_state.model_state)))
        ok = jnp.isfinite(sums["loss"]) & jnp.all(grads_ok) & jnp.all(update_ok) & state_ok
        first = ~ok & (guard.bad_step < 0)
        mean_loss = sums["loss"] / jnp.maximum(sums["_weight"], tiny)
        new_guard = Guard(
            halted=guard.halted | (~ok if policy == "raise" else False),
            skipped=guard.skipped + (~ok).astype(jnp.int32),
            bad_step=jnp.where(first, state.step, guard.bad_step),
            bad_batch=jnp.where(first, batch, guard.bad_batch),
            bad_grads=jnp.where(first, ~grads_ok, guard.bad_grads),
            bad_loss=jnp.where(first, mean_loss, guard.bad_loss),
            bad_update=jnp.where(first, ~update_ok, guard.bad_update),
            bad_state=jnp.where(first, ~state_ok, guard.bad_state),
        )
        state, sums = jax.lax.cond(
            ok & ~guard.halted,
            lambda: (new_state, sums),
            lambda: (state, jax.tree.map(jnp.zeros_like, sums)),
        )
        return state, new_guard, sums

    def epoch(
        state: TrainState,
        data: Data,
        batch_size: int,
        shuffle: bool,
        guard: Guard | None = None,
        policy: str | None = None,
    ) -> tuple[TrainState, Guard | None, Sums]:
        """One epoch; with a ``policy``, every step goes through the finite guard."""
        n = data_lib.num_examples("Trainer.fit", "x", data.x)
        next_key, order_key, dropout_key = jax.random.split(state.key, 3)
        order = data_lib.shuffled_order(order_key, n) if shuffle else jnp.arange(n)
        idx, mask = data_lib.batch_indices(order, n, batch_size)

        def body(carry: tuple, batch: tuple) -> tuple[tuple, Sums]:
            # Gather one batch at a time: the data is never copied whole, so shared
            # data stays one buffer when members of a population are vmapped.
            state, guard, i = carry
            (xb, yb, wb), mb = constrain((data_lib.take(data, batch[0]), batch[1]))
            key = jax.random.fold_in(dropout_key, i)
            if policy is None:
                state, sums = step(state, xb, yb, wb, mb, key)
            else:
                state, guard, sums = guarded_step(state, guard, policy, i, xb, yb, wb, mb, key)
            return (state, guard, i + 1), sums

        carry = (state, guard, jnp.zeros((), jnp.int32))
        (state, guard, _), sums = jax.lax.scan(body, carry, (idx, mask))
        if guard is None:
            state = state._replace(key=next_key)
        else:  # a halted state stays exactly the last finite one, key included
            state = state._replace(key=jnp.where(guard.halted, state.key, next_key))
        return state, guard, jax.tree.map(jnp.sum, sums)

    def chunk(
        state: TrainState,
        batches: tuple,
        start: jax.Array,
        dropout_key: PRNGKey,
        guard: Guard | None = None,
        policy: str | None = None,
    ) -> tuple[TrainState, Guard | None, Sums]:
        """Streamed steps; see :class:`Programs`."""

        def run(state: TrainState, guard: Guard | None, i: jax.Array, batch: tuple) -> tuple:
            xb, yb, wb, mb = constrain(batch)
            key = jax.random.fold_in(dropout_key, i)
            if policy is None:
                state, sums = step(state, xb, yb, wb, mb, key)
                return state, guard, sums
            return guarded_step(state, guard, policy, i, xb, yb, wb, mb, key)

        def body(carry: tuple, batch: tuple) -> tuple[tuple, Sums]:
            state, guard, i = carry
            shapes = jax.eval_shape(run, state, guard, i, batch)[2]
            state, guard, sums = jax.lax.cond(
                jnp.any(batch[3]),
                lambda: run(state, guard, i, batch),
                lambda: (state, guard, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)),
            )
            return (state, guard, i + 1), sums

        (state, guard, _), sums = jax.lax.scan(body, (state, guard, start), batches)
        return state, guard, jax.tree.map(jnp.sum, sums)

    def evaluate_sums(params: Params, model_state: State, data: Data, batch_size: int) -> Sums:
        n = data_lib.num_examples("Trainer.evaluate", "x", data.x)
        idx, mask = data_lib.batch_indices(jnp.arange(n), n, batch_size)

        def body(_: None, batch: tuple) -> tuple[None, Sums]:
            (xb, yb, wb), mb = constrain((data_lib.take(data, batch[0]), batch[1]))
            _, (_, sums) = loss_and_sums(params, model_state, xb, yb, wb, mb, None, False)
            return None, sums

        _, sums = jax.lax.scan(body, None, (idx, mask))
        return jax.tree.map(jnp.sum, sums)

    def predict_batches(params: Params, model_state: State, x: Any, batch_size: int) -> Any:
        n = data_lib.num_examples("Trainer.predict", "x", x)
        idx, _ = data_lib.batch_indices(jnp.arange(n), n, batch_size)

        def body(_: None, ib: jax.Array) -> tuple[None, Any]:
            y, _ = model.apply(params, model_state, constrain(data_lib.take(x, ib)))
            return None, y

        _, ys = jax.lax.scan(body, None, idx)
        ys = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], ys)
        # Under data parallelism the outputs are gathered whole, so that every process
        # can read them.
        return ys if parallel is None else parallel.constrain_whole(ys)

    return Programs(init, step, guarded_step, epoch, chunk, evaluate_sums, predict_batches)
