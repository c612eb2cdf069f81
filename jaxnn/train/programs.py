"""Training's pure programs: the seam that ``Trainer`` and populations both build on.

:func:`programs` turns a model, a loss, an optimizer and metrics into a
:class:`Programs`, a NamedTuple of pure functions over a :class:`TrainState` (in the
manner of optax's ``GradientTransformation``). Nothing here is jitted, and nothing
holds arrays: :class:`~jaxnn.Trainer` compiles them for one network, and
:mod:`jaxnn.population` vmaps or maps them over members and compiles that.

Log sums: a batch or an epoch reports *sums* (``"loss"`` weighted, each metric over
the examples of non-zero weight, plus ``"_weight"`` and ``"_count"``), so that sums
of any number of batches add up exactly; :func:`finish` turns them into means. The
loss is weighted as Keras weights it: ``sum(w * loss)`` over the number of examples
(of non-zero weight), not over ``sum(w)``, and the same mean drives the gradients,
so weights scale the size of the updates as they do in Keras.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnn import data as data_lib
from jaxnn import precision as precision_lib
from jaxnn._types import Params, PRNGKey, State
from jaxnn.confusion_metrics import MetricState, StatefulMetric, finish_state, sum_batches
from jaxnn.core import Layer, LayerError
from jaxnn.data import Data
from jaxnn.losses import LOSS_WEIGHTS, Loss
from jaxnn.metrics import Metric
from jaxnn.parallel import DataParallel
from jaxnn.summary import count_params
from jaxnn.train.guard import Guard, finite_leaves

__all__ = [
    "Compiled",
    "Programs",
    "TrainState",
    "QUICK_OPTIONS",
    "compile_once",
    "compiles_quickly",
    "finish",
    "init_optimizer",
    "programs",
    "with_loss_weights",
]

Sums = dict[str, jax.Array]


QUICK_OPTIONS = {"xla_backend_optimization_level": 1}
"""The compile options of a small network's programs on the CPU (see
:data:`SMALL_NETWORK` and :func:`compiles_quickly`)."""


def compiles_quickly(params: Params, members: int = 1) -> bool:
    """Whether programs over ``params`` compile with :data:`QUICK_OPTIONS`: on the
    CPU, for a network of at most :data:`SMALL_NETWORK` params (per member, for a
    stacked population of ``members``), unless the tests' fast-compiling settings
    (``jax_disable_most_optimizations``) are on.

    Every program of one network should choose alike (by its params), which keeps
    their arithmetic identical.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> compiles_quickly({"kernel": jnp.zeros((4, 32))}) == (jax.default_backend() == "cpu"
        ...     and not jax.config.read("jax_disable_most_optimizations"))
        True
    """
    if jax.default_backend() != "cpu" or jax.config.read("jax_disable_most_optimizations"):
        return False
    return count_params(params) <= SMALL_NETWORK * members


class Compiled:
    """A function jitted twice: with XLA's default options, and with
    :data:`QUICK_OPTIONS`. Each call picks by :func:`compiles_quickly` of the network
    it runs, found by ``network(*args, **kwargs) -> (params, members)``, so every
    program of one network (epochs, streamed chunks, evaluation) compiles alike,
    which keeps their arithmetic bit-identical.

    Args:
        fn: the function to jit.
        static_argnames: as ``jax.jit``'s.
        network: the params of a call (stacked over ``members`` for a population).

    Example:
        >>> import jax.numpy as jnp
        >>> double = Compiled(lambda p, x: 2 * x, network=lambda p, x: (p, 1))
        >>> double({"w": jnp.zeros(3)}, jnp.ones(2)).tolist()
        [2.0, 2.0]
    """

    def __init__(
        self,
        fn: Callable,
        static_argnames: Sequence[str] = (),
        *,
        network: Callable[..., tuple[Params, int]],
    ):
        self.full = jax.jit(fn, static_argnames=static_argnames)
        self.quick = jax.jit(fn, static_argnames=static_argnames, compiler_options=QUICK_OPTIONS)
        self.network = network

    def pick(self, *args: Any, **kwargs: Any) -> Callable:
        """The jitted function a call with these arguments uses."""
        return self.quick if compiles_quickly(*self.network(*args, **kwargs)) else self.full

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.pick(*args, **kwargs)(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        """As ``jax.jit(...).lower``, with the options a call would use."""
        return self.pick(*args, **kwargs).lower(*args, **kwargs)

    def _cache_size(self) -> int:
        return self.full._cache_size() + self.quick._cache_size()


QUICK_ONCE_ELEMENTS = 1 << 22
"""Up to this many output elements, :func:`compile_once` compiles without XLA's
backend optimisations: a program that runs once (an ``init``) costs mostly its
compilation when small (the tutorial network's init: 0.99 s fully optimised against
0.52 s), and its values are the same. A larger output compiles fully optimised, since
generating its random values then takes longer than compiling."""


def compile_once(fn: Callable, *args: Any) -> Callable:
    """``fn`` compiled for ``args``' shapes, as a program that runs once.

    Args:
        fn: a pure function of arrays (jittable).
        *args: example arguments (their shapes and dtypes are compiled for).

    Returns:
        A callable taking arguments of the same shapes and dtypes.

    Example:
        >>> import jax.numpy as jnp
        >>> twice = compile_once(lambda a: 2 * a, jnp.ones(3))
        >>> twice(jnp.arange(3.0)).tolist()
        [0.0, 2.0, 4.0]
    """
    jitted = jax.jit(fn)
    if count_params(jax.eval_shape(fn, *args)) > QUICK_ONCE_ELEMENTS:
        return jitted
    lowered = jitted.lower(*args)
    try:
        return lowered.compile({"xla_backend_optimization_level": 0})
    except (RuntimeError, ValueError):  # a backend without the option: compile as usual
        return lowered.compile()


SMALL_NETWORK = 1 << 16
"""Networks with at most this many params are small: their steps are a few small
kernels each, so per-op costs dominate. The guard keeps or drops a small network's
step with a ``lax.cond`` (a larger one's with a select per leaf, see
``guarded_step``), and on the CPU ``Trainer`` compiles a small network's programs with
fewer of LLVM's passes: about half the compile time, and as fast or faster (the
tutorial's 100 epochs: 1.71 s to compile and 7.5 ms to run, against 3.24 s and 8.5 ms
fully optimised), where a larger network's loops gain from the full set (an MLP of
800k params ran 20% slower with the fewer passes)."""


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
    """Turns log sums into means over the examples counted (of non-zero weight).

    The loss is ``sum(w * loss) / examples``, as Keras reports it (its epoch loss is
    the mean of batch means ``sum(w * loss) / batch_size``, weighted by batch size).

    Nothing counted (every step skipped, or every weight 0) gives NaN, not a perfect 0.

    Example:
        >>> sums = {"loss": jnp.array(3.0), "acc": jnp.array(1.0),
        ...         "_weight": jnp.array(6.0), "_count": jnp.array(2.0)}
        >>> {k: float(v) for k, v in finish(sums).items()}
        {'loss': 1.5, 'acc': 0.5}
    """
    sums = dict(sums)
    sums.pop("_weight")  # the loss, as Keras's, is over the examples: see programs()
    count = sums.pop("_count")
    out = {}
    for k, v in sums.items():
        if isinstance(v, MetricState):  # a stateful metric: its result, from its counts
            out.update(finish_state(k, v))
            continue
        out[k] = jnp.where(count > 0, v / jnp.where(count > 0, count, 1), jnp.nan)
    return out


def programs(
    model: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    metrics: Sequence[Metric | StatefulMetric],
    *,
    parallel: DataParallel | None = None,
    policy: precision_lib.Policy | None = None,
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
        policy: a :class:`~jaxnn.precision.Policy`: params stored in its
            ``param_dtype``; floating params and inputs cast to its
            ``compute_dtype`` for ``model.apply``, outputs to its ``output_dtype``;
            with float16 compute, the loss scaled by the optimizer state's scale,
            which needs ``optimizer`` wrapped by
            :func:`~jaxnn.precision.dynamic_loss_scale`. ``None``: no casts.

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
    # A step is fenced off from the program around it, so that XLA compiles its
    # arithmetic the same way inside the epoch program (batches gathered from arrays)
    # and inside a streamed chunk (batches sliced from a stack): the two then give
    # bit-identical params for the same batches.
    isolate = jax.lax.optimization_barrier
    model = with_loss_weights(model, loss)  # traced loss weights live in the model state
    constrain = (lambda tree: tree) if parallel is None else parallel.constrain_batch

    def init(key: PRNGKey, spec: Any) -> TrainState:
        init_key, train_key = jax.random.split(key)
        params, model_state = model.init(init_key, spec)
        if policy is not None:
            params = policy.cast_to_param(params)
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
        predictions, new_state = run_model(params, model_state, x, key, training)
        traced = () if loss.weights is None else (model_state[LOSS_WEIGHTS],)
        per_example = loss.per_example(predictions, y, *traced).astype(jnp.float32)
        weight = weight.astype(jnp.float32) * mask.astype(jnp.float32)
        total_weight = jnp.sum(weight)
        loss_sum = jnp.sum(per_example * weight)
        # Metrics are unweighted, as Keras's ``metrics`` are, but an example of weight
        # 0 (masked padding, or the padding of `population.kfold`) is not counted.
        counted = (weight != 0).astype(jnp.float32)
        # Keras's reduction: sum(w * loss) / examples, not / sum(w); padding is no example.
        # The gradient is taken of the sum over the whole (static) batch size and
        # rescaled by `gradients` to the mean over the examples counted: the count
        # is not needed before the backward pass, so under data parallelism its
        # cross-device sum joins the gradients' one all-reduce.
        mean = loss_sum / per_example.shape[0]
        sums = {"loss": loss_sum, "_weight": total_weight, "_count": jnp.sum(counted)}
        for m in metrics:
            if isinstance(m, StatefulMetric):  # its state: counts, merged over batches
                sums[m.name] = MetricState(m.update(m.init(), predictions, y, counted), m)
            else:
                values = m.per_example(predictions, y).astype(jnp.float32)
                sums[m.name] = jnp.sum(values * counted)
        return mean, (new_state, sums)

    def run_model(
        params: Params, model_state: State, x: Any, key: PRNGKey | None, training: bool
    ) -> tuple[Any, State]:
        """``model.apply``, under the policy when there is one."""
        if policy is None:
            return model.apply(params, model_state, x, key=key, training=training)
        y, new_state = model.apply(
            policy.cast_to_compute(params),
            model_state,
            policy.cast_to_compute(x),
            key=key,
            training=training,
        )
        # The model state keeps its dtypes (BatchNorm's float32 statistics), so a
        # scan's carry never changes type.
        new_state = jax.tree.map(
            lambda new, old: new.astype(old.dtype) if hasattr(old, "dtype") else new,
            new_state,
            model_state,
        )
        return policy.cast_to_output(y), new_state

    def scaled_loss_and_sums(
        params: Params, loss_scale: jax.Array, *args: Any
    ) -> tuple[jax.Array, tuple[State, Sums]]:
        mean, aux = loss_and_sums(params, *args)
        return mean * loss_scale, aux

    grad_fn = jax.grad(loss_and_sums, has_aux=True)
    scaled_grad_fn = jax.grad(scaled_loss_and_sums, has_aux=True)
    loss_scaling = policy is not None and policy.loss_scaling

    def gradients(
        state: TrainState, x: Any, y: Any, weight: jax.Array, mask: jax.Array, key: PRNGKey
    ) -> tuple[Params, State, Sums]:
        if loss_scaling:  # the gradients of loss * s, then divided by s
            loss_scale = precision_lib.loss_scale_of("Trainer", state.opt_state)
            grads, (model_state, sums) = scaled_grad_fn(
                state.params, loss_scale, state.model_state, x, y, weight, mask, key, True
            )
            scale = weight.shape[0] / jnp.maximum(sums["_count"], 1.0) / loss_scale
        else:
            grads, (model_state, sums) = grad_fn(
                state.params, state.model_state, x, y, weight, mask, key, True
            )
            scale = weight.shape[0] / jnp.maximum(sums["_count"], 1.0)  # 1 for a full batch
        grads = jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)
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
        grads_fine = jnp.all(grads_ok)
        if loss_scaling:
            # Gradients that overflow under a loss scale above its minimum are the
            # loss scale's business: it skipped the update and lowered the scale,
            # and that new state is kept. At the minimum they are a real failure.
            lowered = state.opt_state.scale > precision_lib.MIN_SCALE
            grads_fine = grads_fine | lowered
        ok = jnp.isfinite(sums["loss"]) & grads_fine & jnp.all(update_ok) & state_ok
        first = ~ok & (guard.bad_step < 0)
        mean_loss = sums["loss"] / jnp.maximum(sums["_count"], 1.0)
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
        keep = ok & ~guard.halted
        # A small network's state is chosen with a ``lax.cond`` (a select on every leaf
        # costs more than its step); a large one's with a select per leaf, which XLA
        # fuses, where the cond copies the whole state (the MLP benchmark's step: 6.3
        # against 6.9 ms). The choice is made at trace time, from the params' size.
        if count_params(state.params) > SMALL_NETWORK:
            state = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_state, state)
            sums = jax.tree.map(lambda v: jnp.where(keep, v, jnp.zeros_like(v)), sums)
        else:
            state, sums = jax.lax.cond(
                keep,
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
        return state, guard, sum_batches(sums)

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
        return state, guard, sum_batches(sums)

    def evaluate_sums(params: Params, model_state: State, data: Data, batch_size: int) -> Sums:
        n = data_lib.num_examples("Trainer.evaluate", "x", data.x)
        idx, mask = data_lib.batch_indices(jnp.arange(n), n, batch_size)

        def body(_: None, batch: tuple) -> tuple[None, Sums]:
            (xb, yb, wb), mb = constrain((data_lib.take(data, batch[0]), batch[1]))
            _, (_, sums) = loss_and_sums(params, model_state, xb, yb, wb, mb, None, False)
            return None, sums

        _, sums = jax.lax.scan(body, None, (idx, mask))
        return sum_batches(sums)

    def predict_batches(params: Params, model_state: State, x: Any, batch_size: int) -> Any:
        n = data_lib.num_examples("Trainer.predict", "x", x)
        idx, _ = data_lib.batch_indices(jnp.arange(n), n, batch_size)

        def body(_: None, ib: jax.Array) -> tuple[None, Any]:
            y, _ = run_model(params, model_state, constrain(data_lib.take(x, ib)), None, False)
            return None, y

        _, ys = jax.lax.scan(body, None, idx)
        ys = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], ys)
        # Under data parallelism the outputs are gathered whole, so that every process
        # can read them.
        return ys if parallel is None else parallel.constrain_whole(ys)

    return Programs(init, step, guarded_step, epoch, chunk, evaluate_sums, predict_batches)


def with_loss_weights(model: Layer, loss: Loss) -> Layer:
    """``model``, holding the traced weights of ``loss`` in its state.

    For a loss from :func:`jaxnn.losses.weighted` with ``traced=True``, the layer returned has
    the same params and names as ``model`` and its state has one more entry,
    ``"loss_weights"``: term name to a float32 scalar, starting at the loss's
    weights. ``apply`` hands the rest of the state to ``model`` and returns the
    entry unchanged, so the weights travel with the state (one per member in a
    population, in checkpoints) and training and evaluation read them there.
    :class:`~jaxnn.Trainer` does this itself (``trainer.model``); for any other
    loss, ``model`` is returned as it is.

    Args:
        model: a :class:`~jaxnn.Layer`.
        loss: a :class:`~jaxnn.losses.Loss`.

    Returns:
        The layer (``model`` itself when ``loss.weights`` is ``None`` or ``model``
        already holds them).

    Raises:
        jaxnn.core.LayerError: at ``init``, when the model's state already has an
            entry ``"loss_weights"`` (a layer of that name: rename it); at
            ``apply``, for a state without the entry.

    Example:
        >>> import jax, jax.numpy as jnp, jaxnn as nn
        >>> loss = nn.losses.weighted({"mse": "mse", "mae": "mae"}, {"mae": 0.5}, traced=True)
        >>> model = with_loss_weights(nn.Dense(1), loss)
        >>> params, state = model.init(jax.random.key(0), jnp.ones((2, 3)))
        >>> state
        {'loss_weights': {'mse': Array(1., dtype=float32), 'mae': Array(0.5, dtype=float32)}}
    """
    config = getattr(model, "config", None)
    if loss.weights is None or (isinstance(config, tuple) and config[:1] == (LOSS_WEIGHTS,)):
        return model
    start = dict(loss.weights)

    def split(state: dict) -> tuple[dict, Any]:
        if not isinstance(state, dict) or LOSS_WEIGHTS not in state:
            raise LayerError(
                model.kind,
                f"the state has no {LOSS_WEIGHTS!r} entry, which holds the traced loss "
                "weights. Pass the model state that trainer.init made (state.model_state), "
                "and apply it with trainer.model.",
            )
        return {k: v for k, v in state.items() if k != LOSS_WEIGHTS}, state[LOSS_WEIGHTS]

    def init(key: Any, x: Any) -> tuple[Any, Any]:
        params, state = model.init(key, x)
        if LOSS_WEIGHTS in state:
            raise LayerError(
                model.kind,
                f"its state already has an entry {LOSS_WEIGHTS!r}, where a weighted loss "
                f"keeps its traced weights. Rename that layer (.named('...')).",
            )
        return params, {
            **state,
            LOSS_WEIGHTS: {k: jnp.asarray(v, jnp.float32) for k, v in start.items()},
        }

    def apply(params: Any, state: Any, x: Any, *, key: Any = None, training: bool = False) -> Any:
        inner, held = split(state)
        y, inner = model.apply(params, inner, x, key=key, training=training)
        return y, {**inner, LOSS_WEIGHTS: held}

    child_inputs = None
    if model.child_inputs is not None:

        def child_inputs(params: Any, state: Any, x: Any) -> Any:
            return model.child_inputs(params, split(state)[0], x)

    # The config marks the layer as holding the weights, and makes it equal to another
    # such layer exactly when the two models are equal and so are the weights.
    marker = (LOSS_WEIGHTS, model, tuple(start.items()))
    return dataclasses.replace(
        model, init=init, apply=apply, child_inputs=child_inputs, config=marker
    )
