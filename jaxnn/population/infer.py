"""Using a trained population: every member's scores and outputs, the ensemble, the best.

:func:`evaluate` and :func:`predict` run each member in inference mode, batched, as
:meth:`~jaxnn.Trainer.evaluate` and :meth:`~jaxnn.Trainer.predict` run one network;
:func:`ensemble_predict` combines the members; :func:`select` picks the best.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import data as data_lib
from jaxnn.data import Data
from jaxnn.population.build import check_trainer, num_members
from jaxnn.population.fitting import prepare_data
from jaxnn.population.strategy import check_strategy, over_members
from jaxnn.train import Trainer, TrainState, finish

__all__ = ["ensemble_predict", "evaluate", "predict", "select"]


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
        >>> states = nn.population.init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4)
        >>> evaluate(trainer, states, jnp.ones((10, 3)), jnp.ones((10, 1)))["loss"].shape
        (4,)
        >>> idx = nn.population.bootstrap(jax.random.key(1), 4, 10)
        >>> x_m, y_m = nn.population.take_members((jnp.ones((10, 3)), jnp.ones((10, 1))), idx)
        >>> evaluate(trainer, states, x_m, y_m, member_data=True)["loss"].shape
        (4,)
    """
    where = "population.evaluate"
    check_trainer(where, trainer)
    n = num_members(states)
    chunk_size = check_strategy(strategy, chunk_size, n)
    data, _, examples = prepare_data(
        where, trainer, states, (x, y, sample_weight), None, 0.0, member_data
    )
    bs = min(data_lib.check_batch_size(where, batch_size), examples)
    out = _evaluate_jit(
        trainer,
        (states.params, states.model_state),
        data,
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
    data: Data,
    *,
    batch_size: int,
    member_data: bool,
    strategy: str,
    chunk_size: int | None,
    n: int,
) -> dict[str, jax.Array]:
    def member(args: tuple) -> dict[str, jax.Array]:
        (params, model_state), own = args
        d = own if member_data else data
        return finish(trainer.programs.evaluate_sums(params, model_state, d, batch_size))

    return over_members(member, strategy, chunk_size, n)((variables, data if member_data else None))


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
        >>> states = nn.population.init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4)
        >>> predict(trainer, states, jnp.ones((10, 3))).shape
        (4, 10, 2)
    """
    where = "population.predict"
    check_trainer(where, trainer)
    n = num_members(states)
    chunk_size = check_strategy(strategy, chunk_size, n)
    data, examples = data_lib.prepare(where, x)
    data_lib.check_input_ids(where, trainer.model, states.params, data.x)
    bs = min(data_lib.check_batch_size(where, batch_size), examples)
    return _predict_jit(
        trainer,
        (states.params, states.model_state),
        data.x,
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
        return trainer.programs.predict_batches(params, model_state, x, batch_size)

    return over_members(member, strategy, chunk_size, n)(variables)


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
        >>> states = nn.population.init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 5)
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
        >>> states = nn.population.init(trainer, jax.random.key(0), jnp.zeros((1, 3)), 4)
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
