"""Population-based training (Jaderberg et al., 2017) inside one compiled program.

A population trains in *rounds* of ``every`` epochs. After each round the members are
ranked on a monitored log (``val_loss``, ``val_accuracy``, ...): the worst
``fraction`` *exploit*, each copying the params, model state and optimizer state of a
member drawn at random from the best ``fraction`` (truncation selection), and then
*explore*, perturbing the hyperparameters they copied (by a factor drawn from
``perturb``, ``x0.8`` or ``x1.2`` by default) or, with ``resample_probability``,
drawing new ones within ``bounds``. Members keep their own random streams (shuffle
order, dropout), so a copy does not replay its parent.

Two entry points share one rule:

* :func:`exploit_explore`, a pure function over any stacked pytree and a dict of
  per-member hyperparameters: the step of PBT, usable in a training loop of your own
  (the paper's toy example is written with it);
* :func:`fit`, which trains a population from :func:`~jaxnn.population.init` with a
  :class:`PBT` schedule. All rounds, with their exploit and explore steps, are one
  XLA program (``lax.scan`` over rounds), and the hyperparameters are traced values
  in the optimizer state, so nothing recompiles when they change.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import data as data_lib
from jaxnn import optimizers
from jaxnn import stream as stream_lib
from jaxnn._checks import (
    check_bool,
    check_choice,
    check_key,
    check_positive_int,
    resolve_mode,
)
from jaxnn._types import PRNGKey
from jaxnn.data import Data
from jaxnn.population.build import check_trainer, num_members
from jaxnn.population.fitting import Carry, prepare_data, run_epochs
from jaxnn.population.strategy import check_strategy
from jaxnn.train import History, Trainer, TrainState
from jaxnn.train.callbacks import FitResult

__all__ = ["PBT", "exploit_explore", "fit", "selected_count"]

_SCALES = ("log", "linear")


def selected_count(fraction: float, n: int) -> int:
    """How many members exploit (and how many they copy from) in a population of ``n``.

    ``ceil(fraction * n)``, at most ``n // 2`` so that the worst and the best never
    overlap: with one member nothing is copied.

    Args:
        fraction: the fraction of the population at each end, in ``(0, 0.5]``.
        n: the number of members.

    Returns:
        The number of members in the bottom (and in the top) group.

    Example:
        >>> selected_count(0.25, 10), selected_count(0.5, 2), selected_count(0.2, 1)
        (3, 1, 0)
    """
    return min(math.ceil(fraction * n - 1e-9), n // 2)


def _check_settings(
    where: str,
    *,
    mode: str,
    fraction: Any,
    perturb: Any,
    resample_probability: Any,
    bounds: Any,
    exploit: Any,
    explore: Any,
) -> tuple:
    """Checks the exploit/explore settings; returns them normalised (hashable)."""
    check_choice(where, "mode", mode, ("min", "max"))
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)):
        raise TypeError(f"{where}: fraction must be a number in (0, 0.5], got {fraction!r}.")
    if not 0.0 < float(fraction) <= 0.5:
        raise ValueError(
            f"{where}: fraction must lie in (0, 0.5] (the worst fraction copies the best "
            f"fraction, so the two cannot overlap), got {fraction!r}; the paper uses 0.2."
        )
    try:
        factors = tuple(float(f) for f in perturb)
    except TypeError:
        raise TypeError(
            f"{where}: perturb must be a sequence of factors such as (0.8, 1.2), got {perturb!r}."
        ) from None
    if not factors or not all(math.isfinite(f) and f > 0 for f in factors):
        raise ValueError(
            f"{where}: perturb must hold at least one finite factor > 0, such as (0.8, 1.2), "
            f"got {perturb!r}."
        )
    if isinstance(resample_probability, bool) or not isinstance(
        resample_probability, (int, float, np.number)
    ):
        raise TypeError(
            f"{where}: resample_probability must be a number in [0, 1], got "
            f"{resample_probability!r}."
        )
    if not 0.0 <= float(resample_probability) <= 1.0:
        raise ValueError(
            f"{where}: resample_probability must lie in [0, 1], got {resample_probability!r}."
        )
    bounds = {} if bounds is None else bounds
    if not isinstance(bounds, Mapping):
        raise TypeError(
            f"{where}: bounds must be a dict from hyperparameter name to (low, high) or "
            f"(low, high, 'linear'), got {type(bounds).__name__}."
        )
    checked = []
    for name, bound in sorted(bounds.items()):
        if not isinstance(bound, (tuple, list)) or len(bound) not in (2, 3):
            raise ValueError(
                f"{where}: bounds[{name!r}] must be (low, high) or (low, high, scale) with "
                f"scale 'log' or 'linear', got {bound!r}."
            )
        low, high = float(bound[0]), float(bound[1])
        scale = bound[2] if len(bound) == 3 else "log"
        check_choice(where, f"the scale of bounds[{name!r}]", scale, _SCALES)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(
                f"{where}: bounds[{name!r}] must have finite low < high, got ({low}, {high})."
            )
        if scale == "log" and low <= 0:
            raise ValueError(
                f"{where}: bounds[{name!r}] = ({low}, {high}) is on a log scale, which needs "
                f"low > 0; give a positive low, or (low, high, 'linear') to draw uniformly."
            )
        checked.append((name, low, high, scale))
    exploit = check_bool(where, "exploit", exploit)
    explore = check_bool(where, "explore", explore)
    settings = (mode, float(fraction), factors, float(resample_probability), tuple(checked))
    return (*settings, exploit, explore)


def _check_names(where: str, names: Sequence[str], settings: tuple) -> None:
    """Every bounded name is explored; resampling needs bounds for every name."""
    bounds = {b[0] for b in settings[4]}
    unknown = sorted(bounds - set(names))
    if unknown:
        raise ValueError(
            f"{where}: bounds name the unknown hyperparameter {unknown[0]!r}; the "
            f"hyperparameters explored are {sorted(names)}. Bound only those."
        )
    if settings[3] > 0:
        missing = sorted(set(names) - bounds)
        if missing:
            raise ValueError(
                f"{where}: resample_probability={settings[3]} draws new values within "
                f"bounds, but {missing[0]!r} has none; pass bounds={{{missing[0]!r}: "
                "(low, high)}."
            )


def _decide(
    key: PRNGKey, scores: jax.Array, hyperparams: dict[str, jax.Array], settings: tuple
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The parents ``(n,)`` and the new hyperparameters of one exploit/explore step."""
    mode, fraction, factors, resample, bounds, exploit, explore = settings
    n = scores.shape[0]
    m = selected_count(fraction, n)
    members = jnp.arange(n, dtype=jnp.int32)
    if m == 0:
        return members, dict(hyperparams)
    scores = jnp.asarray(scores, jnp.float32)
    # NaN (a member stopped as non-finite) ranks last; a stable sort breaks ties by index.
    better = jnp.where(jnp.isnan(scores), -jnp.inf, scores if mode == "max" else -scores)
    order = jnp.argsort(-better, stable=True).astype(jnp.int32)  # best first
    top, bottom = order[:m], order[n - m :]
    key_parent, key_explore = jax.random.split(key)
    if exploit:
        drawn = top[jax.random.randint(key_parent, (m,), 0, m)]
        parents = members.at[bottom].set(drawn)
    else:
        parents = members
    chosen = jnp.zeros((n,), bool).at[bottom].set(True)
    bound_of = {b[0]: b[1:] for b in bounds}
    new = {}
    for i, name in enumerate(sorted(hyperparams)):
        value = jnp.asarray(hyperparams[name])[parents]
        if explore:
            k_factor, k_coin, k_draw = jax.random.split(jax.random.fold_in(key_explore, i), 3)
            table = jnp.asarray(factors, value.dtype)
            moved = value * table[jax.random.randint(k_factor, value.shape, 0, len(factors))]
            if name in bound_of:
                low, high, scale = bound_of[name]
                if resample > 0:
                    u = jax.random.uniform(k_draw, value.shape, jnp.float32)
                    if scale == "log":
                        fresh = jnp.exp(math.log(low) + u * (math.log(high) - math.log(low)))
                    else:
                        fresh = low + u * (high - low)
                    coin = jax.random.bernoulli(k_coin, resample, value.shape)
                    moved = jnp.where(coin, fresh.astype(value.dtype), moved)
                moved = jnp.clip(moved, low, high).astype(value.dtype)
            mask = chosen.reshape((n,) + (1,) * (value.ndim - 1))
            value = jnp.where(mask, moved, value)
        new[name] = value
    return parents, new


def exploit_explore(
    key: PRNGKey,
    scores: jax.typing.ArrayLike,
    tree: Any,
    hyperparams: Mapping[str, jax.typing.ArrayLike],
    *,
    mode: str = "max",
    fraction: float = 0.25,
    perturb: Sequence[float] = (0.8, 1.2),
    resample_probability: float = 0.0,
    bounds: Mapping[str, tuple] | None = None,
    exploit: bool = True,
    explore: bool = True,
) -> tuple[Any, dict[str, jax.Array], jax.Array]:
    """One exploit-and-explore step of PBT over a stacked population.

    The members are ranked by ``scores``. Each of the worst ``k`` members
    (``k = ceil(fraction * n)``, at most ``n // 2``; :func:`selected_count`) copies
    every leaf of ``tree`` and the hyperparameters of a member drawn uniformly from
    the best ``k`` (exploit), then multiplies each of its hyperparameters by a factor
    drawn from ``perturb`` or, with probability ``resample_probability``, draws it
    anew within ``bounds`` (explore), and clips it to ``bounds``. The other members
    are left as they are. Pure and traceable: use it inside ``jit``, ``scan`` or
    ``vmap``.

    Args:
        key: a JAX random key for the draws.
        scores: ``(n,)``, one per member; NaN ranks worst.
        tree: any pytree whose leaves have a leading member axis ``(n, ...)``:
            parameters, optimizer states, a :class:`~jaxnn.TrainState`.
        hyperparams: name to ``(n, ...)`` per-member values (floats).
        mode: ``"max"`` (higher scores are better) or ``"min"``.
        fraction: the fraction replaced (and copied from), in ``(0, 0.5]``.
        perturb: the factors an explored hyperparameter is multiplied by, one drawn
            uniformly per member and name.
        resample_probability: the probability, per member and name, of drawing a new
            value instead: log-uniform within ``bounds[name] = (low, high)``, or
            uniform with ``(low, high, "linear")``. Needs bounds for every name.
        bounds: name to ``(low, high)`` or ``(low, high, scale)``; explored values are
            clipped to it.
        exploit: copy from the best (``False``: the worst explore their own values).
        explore: perturb or resample (``False``: copies keep their parent's values).

    Returns:
        ``(tree, hyperparams, parents)``: the new tree and hyperparameters, and
        ``parents`` ``(n,)`` int32, the member each one copied (itself if none).

    Raises:
        ValueError: for a fraction outside ``(0, 0.5]``, a bad factor, probability or
            bound, bounds naming a hyperparameter not in ``hyperparams``, or
            resampling a name without bounds.
        TypeError: for settings of the wrong type or a key that is not a JAX key.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> theta = jnp.array([[0.1, 0.2], [0.5, 0.5], [0.3, 0.0], [0.9, 0.9]])
        >>> scores = 1.2 - (theta**2).sum(axis=1)  # member 0 best, member 3 worst
        >>> theta, h, parents = exploit_explore(
        ...     jax.random.key(0), scores, theta, {"h": jnp.ones(4)}, fraction=0.25)
        >>> parents.tolist(), theta[3].tolist()
        ([0, 1, 2, 0], [0.10000000149011612, 0.20000000298023224])
        >>> round(float(h["h"][3]), 3) in (0.8, 1.2), h["h"][:3].tolist()  # explored, kept
        (True, [1.0, 1.0, 1.0])
    """
    where = "pbt.exploit_explore"
    check_key(where, "key", key)
    settings = _check_settings(
        where,
        mode=mode,
        fraction=fraction,
        perturb=perturb,
        resample_probability=resample_probability,
        bounds=bounds,
        exploit=exploit,
        explore=explore,
    )
    if not isinstance(hyperparams, Mapping):
        raise TypeError(
            f"{where}: hyperparams must be a dict from name to (members,) values, got "
            f"{type(hyperparams).__name__}."
        )
    _check_names(where, list(hyperparams), settings)
    scores = jnp.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"{where}: scores must have shape (members,), got {tuple(scores.shape)}.")
    n = scores.shape[0]
    for path, leaf in jax.tree_util.tree_leaves_with_path((tree, dict(hyperparams))):
        if np.shape(leaf)[:1] != (n,):
            raise ValueError(
                f"{where}: every leaf needs a leading member axis of {n} (the length of "
                f"scores), but {jax.tree_util.keystr(path)} has shape {np.shape(leaf)}."
            )
    hyperparams = {name: jnp.asarray(value) for name, value in hyperparams.items()}
    for name, value in hyperparams.items():
        if not jnp.issubdtype(value.dtype, jnp.floating):
            raise ValueError(
                f"{where}: hyperparameter {name!r} has dtype {value.dtype}; explore scales "
                f"and draws real values, so pass floats (e.g. jnp.asarray(v, jnp.float32))."
            )
    parents, new = _decide(key, scores, hyperparams, settings)
    tree = jax.tree.map(lambda a: jnp.asarray(a)[parents], tree)
    return tree, new, parents


@dataclasses.dataclass(frozen=True)
class PBT:
    """A population-based training schedule for :func:`fit`.

    Every ``every`` epochs the members are ranked on ``monitor``, and the worst
    ``fraction`` copy the state of a random member of the best ``fraction`` and
    explore its ``hyperparams`` (see :func:`exploit_explore`).

    Args:
        hyperparams: the name, or names, of the optimizer's traced hyperparameters to
            explore, e.g. ``("learning_rate", "weight_decay")`` (any of
            ``nn.optimizers.hyperparams(states.opt_state)``).
        every: epochs per round, ``>= 1``.
        monitor: the log ranked at the end of each round (its last epoch), e.g.
            ``"val_loss"`` or ``"val_accuracy"``.
        mode: ``"min"``, ``"max"``, or ``"auto"`` (max for accuracy-like names).
        fraction: the fraction replaced and copied from, in ``(0, 0.5]``.
        perturb: the factors explored values are multiplied by.
        resample_probability: the chance of a fresh draw within ``bounds`` instead.
        bounds: name to ``(low, high)`` (log-uniform draws) or
            ``(low, high, "linear")`` (uniform draws); explored values are clipped.
        exploit: whether the worst copy the best (``False``: explore only).
        explore: whether copies perturb their hyperparameters (``False``: exploit only).

    Raises:
        ValueError: for a bad setting (the message names it and the range allowed).
        TypeError: for settings of the wrong type.

    Example:
        >>> schedule = PBT(("learning_rate",), every=5, monitor="val_accuracy")
        >>> schedule.mode, schedule.fraction, schedule.perturb
        ('max', 0.25, (0.8, 1.2))
    """

    hyperparams: tuple[str, ...]
    every: int = 1
    monitor: str = "val_loss"
    mode: str = "auto"
    fraction: float = 0.25
    perturb: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.0
    bounds: Any = None
    exploit: bool = True
    explore: bool = True

    def __post_init__(self) -> None:
        where = "PBT"
        names = (self.hyperparams,) if isinstance(self.hyperparams, str) else self.hyperparams
        try:
            names = tuple(names)
        except TypeError:
            names = (None,)
        if not names or not all(isinstance(name, str) for name in names):
            raise TypeError(
                f"{where}: hyperparams must name the hyperparameters to explore, e.g. "
                f"('learning_rate',), got {self.hyperparams!r}."
            )
        if not isinstance(self.monitor, str):
            raise TypeError(
                f"{where}: monitor must be the name of a log such as 'val_loss', got "
                f"{type(self.monitor).__name__}."
            )
        every = check_positive_int(where, "every", self.every)
        mode = resolve_mode(where, self.mode, self.monitor)
        settings = _check_settings(
            where,
            mode=mode,
            fraction=self.fraction,
            perturb=self.perturb,
            resample_probability=self.resample_probability,
            bounds=self.bounds,
            exploit=self.exploit,
            explore=self.explore,
        )
        _check_names(where, names, settings)
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("hyperparams", names)
        set_("every", every)
        set_("mode", mode)
        set_("fraction", settings[1])
        set_("perturb", settings[2])
        set_("resample_probability", settings[3])
        # Kept as a tuple of (name, low, high, scale): hashable, so that a PBT is a
        # static setting of the compiled program.
        set_("bounds", settings[4])

    def _settings(self) -> tuple:
        return (
            self.mode,
            self.fraction,
            self.perturb,
            self.resample_probability,
            self.bounds,
            self.exploit,
            self.explore,
        )


def _program(
    trainer: Trainer,
    carry: Carry,
    data: Data,
    val: Data | None,
    keys: jax.Array,
    *,
    schedule: PBT,
    batch_size: int,
    shuffle: bool,
    member_data: bool,
    strategy: str,
    chunk_size: int | None,
    n: int,
) -> tuple[Carry, dict[str, jax.Array], jax.Array, dict[str, jax.Array]]:
    """Every round of a PBT run as one ``lax.scan``: decide (from round 1), train."""
    names = schedule.hyperparams
    settings = schedule._settings()
    members = jnp.arange(n, dtype=jnp.int32)

    def one_round(state: tuple, xs: tuple) -> tuple:
        carry, scores = state
        key, first = xs
        old = optimizers.hyperparams(carry.state.opt_state)
        parents, new = _decide(key, scores, {name: old[name] for name in names}, settings)
        parents = jnp.where(first, members, parents)
        new = {name: jnp.where(first, old[name], new[name]) for name in names}
        take = lambda tree: jax.tree.map(lambda a: a[parents], tree)
        s = carry.state
        # The copy takes the parent's params, model state, optimizer state and step;
        # its own key stays, so that it does not replay the parent's shuffles.
        opt_state = optimizers.replace_hyperparams(take(s.opt_state), new, where="pbt.fit")
        s = s._replace(params=take(s.params), model_state=take(s.model_state), opt_state=opt_state)
        s = s._replace(step=take(s.step))
        bad = None if carry.bad_epoch is None else take(carry.bad_epoch)
        carry = carry._replace(state=s, bad_epoch=bad)
        carry, logs = run_epochs(
            trainer,
            carry,
            data,
            val,
            weighting=None,
            epochs=schedule.every,
            batch_size=batch_size,
            shuffle=shuffle,
            stopping=None,
            plateau=None,
            member_data=member_data,
            strategy=strategy,
            chunk_size=chunk_size,
            n=n,
        )
        scores = logs[schedule.monitor][:, -1].astype(jnp.float32)
        return (carry, scores), (logs, parents, new)

    rounds = keys.shape[0]
    firsts = jnp.arange(rounds) == 0
    init = (carry, jnp.zeros((n,), jnp.float32))
    (carry, _), (logs, parents, hyper) = jax.lax.scan(one_round, init, (keys, firsts))
    # (rounds, n, every) -> (n, rounds * every); (rounds, n) -> (n, rounds).
    logs = {k: jnp.moveaxis(v, 0, 1).reshape(n, -1) for k, v in logs.items()}
    return carry, logs, parents.T, {k: v.T for k, v in hyper.items()}


_program_jit = jax.jit(
    _program,
    static_argnames=(
        "trainer",
        "schedule",
        "batch_size",
        "shuffle",
        "member_data",
        "strategy",
        "chunk_size",
        "n",
    ),
)


def fit(
    trainer: Trainer,
    states: TrainState,
    x: Any,
    y: Any,
    *,
    pbt: PBT,
    key: PRNGKey,
    epochs: int,
    batch_size: int = 32,
    shuffle: bool = True,
    validation_split: float = 0.0,
    validation_data: tuple | None = None,
    sample_weight: Any = None,
    member_data: bool = False,
    strategy: str = "vmap",
    chunk_size: int | None = None,
    on_nonfinite: str = "stop",
) -> FitResult:
    """Trains a population with population-based training, as one compiled program.

    The epochs run in rounds of ``pbt.every``; before every round but the first, the
    members are ranked on ``pbt.monitor`` at the end of the last round, and the worst
    copy and explore (:func:`exploit_explore`). Within a round, every member trains
    exactly as in :func:`jaxnn.population.fit` (same epoch, shuffles, masks). The
    data are arrays (a stream would leave the program at every chunk).

    Args:
        trainer: the :class:`~jaxnn.Trainer` the members share; its optimizer must
            trace the hyperparameters explored (``nn.optimizers.get`` traces all of a
            named optimizer's).
        states: a stacked state from :func:`~jaxnn.population.init`, with each
            member's starting hyperparameters.
        x: inputs ``(examples, ...)`` shared by all members, or
            ``(members, examples, ...)`` with ``member_data=True``.
        y: targets, laid out as ``x``.
        pbt: the :class:`PBT` schedule.
        key: the JAX random key of the exploit and explore draws.
        epochs: the total epochs, a multiple of ``pbt.every``.
        batch_size: examples per update.
        shuffle: each member reshuffles its data every epoch, with its own key.
        validation_split: the fraction held out from the end of the data.
        validation_data: ``(x_val, y_val)`` or ``(x_val, y_val, weights)``.
        sample_weight: weights, ``(examples,)`` or ``(members, examples)``.
        member_data: whether the data has a leading member axis; a member that copies
            another keeps training on its own data.
        strategy: ``"vmap"``, ``"map"`` or ``"chunked"``.
        chunk_size: members per chunk, with ``strategy="chunked"``.
        on_nonfinite: ``"stop"``: a member that goes non-finite stops (its logs read
            NaN, so it ranks worst and is replaced at the next round, taking its
            parent's status); ``"ignore"``: no check.

    Returns:
        ``(states, history)``. The history has every log as ``(members, epochs)``;
        ``history["parent"]``, ``(members, rounds)``, the member whose state each one
        copied at the start of each round (itself if none; column 0 is always itself);
        ``history[name]``, ``(members, rounds)``, each explored hyperparameter's value
        during each round; and with ``on_nonfinite="stop"``
        ``history["nonfinite_epoch"]``, ``(members,)``.

    Raises:
        ValueError: for an epoch count that is not a multiple of ``pbt.every``, a
            monitor that is not a log, a hyperparameter the optimizer does not trace,
            streamed data, or bad data and settings as in :func:`population.fit
            <jaxnn.population.fit>`.
        TypeError: for a ``pbt`` that is not a :class:`PBT`, or a bad key.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, jaxnn as nn
        >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        >>> y = x.sum(axis=1, keepdims=True)
        >>> trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
        >>> states = nn.population.init(trainer, jax.random.key(0), x, 8,
        ...                             hyperparams={"learning_rate": jnp.logspace(-3, -1, 8)})
        >>> schedule = nn.population.PBT(("learning_rate",), every=2, monitor="loss")
        >>> states, history = nn.population.pbt.fit(
        ...     trainer, states, x, y, pbt=schedule, key=jax.random.key(1), epochs=6)
        >>> history["loss"].shape, history["parent"].shape, history["learning_rate"].shape
        ((8, 6), (8, 3), (8, 3))
    """
    where = "pbt.fit"
    check_trainer(where, trainer)
    if not isinstance(pbt, PBT):
        raise TypeError(
            f"{where}: pbt must be a jaxnn.population.PBT schedule, got {type(pbt).__name__}. "
            "Build one with nn.population.PBT(('learning_rate',), every=5)."
        )
    check_key(where, "key", key)
    n = num_members(states)
    chunk_size = check_strategy(strategy, chunk_size, n)
    check_choice(where, "on_nonfinite", on_nonfinite, ("stop", "ignore"))
    batch_size = data_lib.check_batch_size(where, batch_size)
    epochs = check_positive_int(where, "epochs", epochs, maximum=2**31 - 1)
    if epochs % pbt.every:
        lower = epochs - epochs % pbt.every
        raise ValueError(
            f"{where}: epochs={epochs} is not a multiple of every={pbt.every}; PBT runs "
            f"whole rounds of {pbt.every} epochs. Pass epochs={lower or pbt.every} or "
            f"{lower + pbt.every}."
        )
    shuffle = check_bool(where, "shuffle", shuffle)
    member_data = check_bool(where, "member_data", member_data)
    validation_split = data_lib.check_validation_split(where, validation_split)
    if stream_lib.is_stream(x):
        raise ValueError(
            f"{where}: x is a stream of batches, but PBT runs every round in one program "
            "and needs arrays: pass x and y as arrays (or train with population.fit)."
        )
    known = optimizers.hyperparams(states.opt_state)
    for name in pbt.hyperparams:
        if name not in known:
            raise ValueError(
                f"{where}: the optimizer has no traced hyperparameter {name!r} to explore; "
                f"it has {sorted(known)}. Pass it to nn.optimizers.get (e.g. "
                "weight_decay=1e-4) so that it is traced."
            )
        value = known[name]
        if not jnp.issubdtype(value.dtype, jnp.floating) or np.shape(value)[:1] != (n,):
            raise ValueError(
                f"{where}: hyperparameter {name!r} has dtype {value.dtype} and shape "
                f"{np.shape(value)}; PBT explores float values, one per member ({n},). "
                "Set them with population.init(..., hyperparams=...)."
            )

    data, val, examples = prepare_data(
        where,
        trainer,
        states,
        (x, y, sample_weight),
        validation_data,
        validation_split,
        member_data,
    )
    batch_size = min(batch_size, examples)
    logs = trainer.log_names(validation=val is not None)
    if pbt.monitor not in logs:
        hint = " (val_* needs validation_data or validation_split)" if val is None else ""
        raise ValueError(
            f"{where}: the PBT monitor {pbt.monitor!r} is not a log of this fit; the logs "
            f"are {logs}{hint}. Monitor one of those."
        )
    clash = sorted(set(pbt.hyperparams) & {*logs, "parent", "nonfinite_epoch"})
    if clash:
        raise ValueError(
            f"{where}: the hyperparameter {clash[0]!r} has the name of a history entry; "
            "rename the metric so that the two do not collide."
        )

    carry = Carry(
        state=states,
        stop=None,
        best_state=None,
        bad_epoch=None if on_nonfinite == "ignore" else jnp.full((n,), -1, jnp.int32),
        epoch=jnp.zeros((n,), jnp.int32),
    )
    keys = jax.random.split(key, epochs // pbt.every)
    carry, logs, parents, hyper = _program_jit(
        trainer,
        carry,
        data,
        val,
        keys,
        schedule=pbt,
        batch_size=batch_size,
        shuffle=shuffle,
        member_data=member_data,
        strategy=strategy,
        chunk_size=chunk_size,
        n=n,
    )
    history = {k: np.asarray(v) for k, v in jax.device_get(logs).items()}
    history["parent"] = np.asarray(parents)
    history.update({k: np.asarray(v) for k, v in jax.device_get(hyper).items()})
    if carry.bad_epoch is not None:
        history["nonfinite_epoch"] = np.asarray(carry.bad_epoch)
    return FitResult(carry.state, History(history))
