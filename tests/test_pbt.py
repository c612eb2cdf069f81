"""Population-based training: the paper's toy example, the exploit/explore rule, and
``pbt.fit`` against plain ``population.fit`` and against the copies it records.

The references are independent of PBT's own bookkeeping: with exploitation and
perturbation off, PBT must be ``population.fit``; a member that copied another must
end exactly where ``population.fit`` takes the parent's state (with the member's own
key) from the round the copy happened.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn
from jaxnn import population as pop
from jaxnn.population import pbt

# As tests/test_population.py: vmapped programs may sum in another order than a
# different program doing the same work, and Adam carries a few float32 ulps per step.
RTOL, ATOL = 1e-5, 1e-6
MEMBERS, EXAMPLES, EVERY = 6, 40, 2


@pytest.fixture(autouse=True)
def strict_promotion():
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        yield


# --- the paper's toy example (Jaderberg et al., 2017, figure 2) ---------------------

TOY_STEPS, TOY_EVERY, TOY_STEP_SIZE, TOY_SEEDS = 80, 4, 0.01, 32


def q(theta):
    """The objective, Q(theta) = 1.2 - (theta0^2 + theta1^2); theta: (..., 2)."""
    return 1.2 - (theta**2).sum(axis=-1)


def toy(key, exploit, explore):
    """Two workers ascend the surrogate Q^(theta|h) = 1.2 - (h0 theta0^2 + h1 theta1^2)
    from theta = (0.9, 0.9), h = (1, 0) and (0, 1); every 4 steps PBT steps on the true
    Q. h starts at 0 in one coordinate, which no factor moves, so explore resamples it
    uniformly in [0, 1] half the time (and perturbs it x0.8 / x1.2 otherwise)."""
    theta = jnp.full((2, 2), 0.9)
    h = jnp.array([[1.0, 0.0], [0.0, 1.0]])

    def one_round(carry, key):
        theta, h = carry

        def step(theta, _):
            theta = theta - TOY_STEP_SIZE * 2 * h * theta  # gradient ascent on Q^
            return theta, q(theta).max()

        theta, best = jax.lax.scan(step, theta, None, length=TOY_EVERY)
        theta, new, _ = pop.exploit_explore(
            key,
            q(theta),
            theta,
            {"h": h},
            mode="max",
            fraction=0.5,
            resample_probability=0.5,
            bounds={"h": (0.0, 1.0, "linear")},
            exploit=exploit,
            explore=explore,
        )
        return (theta, new["h"]), best

    keys = jax.random.split(key, TOY_STEPS // TOY_EVERY)
    _, best = jax.lax.scan(one_round, (theta, h), keys)
    return best.reshape(-1)  # the best worker's Q after every step


@pytest.fixture(scope="module")
def toy_runs():
    keys = jax.random.split(jax.random.key(0), TOY_SEEDS)
    runs = {}
    for name, (exploit, explore) in {
        "pbt": (True, True),
        "explore_only": (False, True),
        "exploit_only": (True, False),
    }.items():
        run = jax.jit(jax.vmap(lambda k, a=exploit, b=explore: toy(k, a, b)))
        runs[name] = np.asarray(run(keys))  # (seeds, steps), from the same seeds
    return runs


def test_toy_exploit_and_explore_beats_either_alone(toy_runs):
    final = {name: q_t[:, -1].mean() for name, q_t in toy_runs.items()}
    assert final["pbt"] > final["explore_only"] + 0.03, final
    assert final["pbt"] > final["exploit_only"] + 0.5, final
    assert final["pbt"] > 1.0  # near the optimum of 1.2


def test_toy_exploit_only_is_stuck_on_one_coordinate(toy_runs):
    """With both workers on equal footing after 4 steps (equal Q), worker 1 copies
    worker 0's theta and h = (1, 0): theta1 stays at 0.9, so Q <= 1.2 - 0.81."""
    assert toy_runs["exploit_only"].max() <= 1.2 - 0.81 + 1e-6


# --- exploit_explore ----------------------------------------------------------------


def test_exploit_explore_copies_the_worst_from_the_best():
    n = 8
    scores = jnp.array([0.5, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2, 0.6])  # best: 1, 5, 3, 7
    tree = {"w": jnp.arange(n * 3.0).reshape(n, 3), "s": jnp.arange(n)}
    hyper = {"lr": jnp.full((n,), 0.1), "wd": jnp.full((n,), 0.01)}
    new_tree, new_hyper, parents = pop.exploit_explore(
        jax.random.key(3), scores, tree, hyper, fraction=0.25
    )
    parents = np.asarray(parents)
    # The worst two (2 and 6) copied from the best two (1 and 5); the rest kept theirs.
    copied = np.flatnonzero(parents != np.arange(n))
    assert copied.tolist() == [2, 6]
    assert set(parents[copied]) <= {1, 5}
    chex.assert_trees_all_equal(new_tree, jax.tree.map(lambda a: a[parents], tree))
    for name, value in new_hyper.items():
        ratio = np.asarray(value) / np.asarray(hyper[name])[parents]
        np.testing.assert_allclose(np.delete(ratio, copied), 1.0)
        assert all(np.isclose(ratio[copied], 0.8) | np.isclose(ratio[copied], 1.2)), ratio


def test_exploit_explore_minimises_ranks_nan_last_and_resamples_within_bounds():
    scores = jnp.array([jnp.nan, 3.0, 1.0, 2.0])  # mode min: best 2, then 3; NaN worst
    hyper = {"lr": jnp.array([0.5, 0.5, 0.5, 0.5])}
    _, new, parents = pop.exploit_explore(
        jax.random.key(0),
        scores,
        jnp.zeros((4, 1)),
        hyper,
        mode="min",
        fraction=0.5,
        resample_probability=1.0,
        bounds={"lr": (1e-4, 1e-2)},
    )
    assert np.asarray(parents)[[0, 1]].tolist() in ([2, 2], [2, 3], [3, 2], [3, 3])
    lr = np.asarray(new["lr"])
    assert np.all((lr[:2] >= 1e-4) & (lr[:2] <= 1e-2)) and lr[2:].tolist() == [0.5, 0.5]


def test_exploit_explore_traces_under_jit_and_vmap():
    run = jax.jit(
        jax.vmap(lambda key, s: pop.exploit_explore(key, s, s, {"h": s + 1.0}, fraction=0.5)[2])
    )
    parents = run(jax.random.split(jax.random.key(0), 3), jnp.array([[1.0, 2.0]] * 3))
    assert parents.tolist() == [[1, 1]] * 3


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fraction": 0.0}, r"fraction must lie in \(0, 0\.5\]"),
        ({"fraction": 0.6}, r"fraction must lie in \(0, 0\.5\]"),
        ({"perturb": (0.8, -1.0)}, "perturb must hold at least one finite factor > 0"),
        ({"resample_probability": 1.5}, r"resample_probability must lie in \[0, 1\]"),
        ({"resample_probability": 0.5}, "'h' has none; pass bounds="),
        ({"bounds": {"lr": (0.1, 1.0)}}, "unknown hyperparameter 'lr'"),
        ({"bounds": {"h": (0.0, 1.0)}}, "log scale, which needs low > 0"),
        ({"mode": "up"}, "mode must be one of 'min', 'max'"),
    ],
)
def test_exploit_explore_refuses_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        pop.exploit_explore(
            jax.random.key(0), jnp.zeros(2), jnp.zeros((2, 1)), {"h": jnp.ones(2)}, **settings
        )


def test_exploit_explore_refuses_integer_hyperparameters():
    with pytest.raises(ValueError, match="hyperparameter 'k' has dtype int32; explore scales"):
        pop.exploit_explore(jax.random.key(0), jnp.zeros(2), {}, {"k": jnp.ones(2, jnp.int32)})


def test_exploit_explore_refuses_leaves_without_the_member_axis():
    with pytest.raises(ValueError, match=r"leading member axis of 2 .* has shape \(3, 1\)"):
        pop.exploit_explore(jax.random.key(0), jnp.zeros(2), jnp.zeros((3, 1)), {})


# --- pbt.fit -------------------------------------------------------------------------

TRAINER = nn.Trainer(
    nn.Sequential(nn.Dense(8, "relu"), nn.Dense(1, "sigmoid")),
    "binary_crossentropy",
    "adam",
    ["accuracy"],
)


def toy_data(n=EXAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x.sum(axis=1, keepdims=True) > 0).astype(np.float32)
    return x, y


X, Y = toy_data()
X_VAL, Y_VAL = toy_data(16, seed=1)
SETTINGS = dict(batch_size=16, validation_data=(X_VAL, Y_VAL))


def initial_states():
    rates = jnp.logspace(-3, -1, MEMBERS)
    return pop.init(TRAINER, jax.random.key(0), X, MEMBERS, hyperparams={"learning_rate": rates})


def assert_states_close(actual, expected):
    for part in ("params", "model_state", "opt_state", "step"):
        chex.assert_trees_all_close(
            getattr(actual, part), getattr(expected, part), rtol=RTOL, atol=ATOL
        )


@pytest.fixture(scope="module")
def copied_run():
    """Two rounds of PBT with copies and no perturbation, and the round-0 states."""
    schedule = pop.PBT(("learning_rate",), every=EVERY, fraction=0.5, explore=False)
    states = initial_states()
    result = pbt.fit(
        TRAINER, states, X, Y, pbt=schedule, key=jax.random.key(7), epochs=2 * EVERY, **SETTINGS
    )
    round0, _ = pop.fit(TRAINER, states, X, Y, epochs=EVERY, **SETTINGS)
    return result, round0


def test_without_exploit_or_perturbation_pbt_is_population_fit():
    schedule = pop.PBT(("learning_rate",), every=EVERY, exploit=False, perturb=(1.0,))
    states = initial_states()
    ours, history = pbt.fit(
        TRAINER, states, X, Y, pbt=schedule, key=jax.random.key(1), epochs=2 * EVERY, **SETTINGS
    )
    plain, reference = pop.fit(TRAINER, states, X, Y, epochs=2 * EVERY, **SETTINGS)
    assert_states_close(ours, plain)
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "nonfinite_epoch"):
        np.testing.assert_allclose(history[name], reference[name], rtol=RTOL, atol=ATOL)
    assert history["parent"].tolist() == [[i, i] for i in range(MEMBERS)]
    np.testing.assert_allclose(history["learning_rate"][:, 1], history["learning_rate"][:, 0])


def test_a_copy_trains_on_from_its_parents_state(copied_run):
    (ours, history), round0 = copied_run
    parents = history["parent"][:, 1]
    copied = np.flatnonzero(parents != np.arange(MEMBERS))
    assert len(copied) == pbt.selected_count(0.5, MEMBERS) == 3
    # By hand: every member takes its parent's params, model and optimizer state and
    # step at the end of round 0, keeps its own key, and trains one more round.
    take = lambda tree: jax.tree.map(lambda a: a[parents], tree)
    start = round0._replace(
        params=take(round0.params),
        model_state=take(round0.model_state),
        opt_state=take(round0.opt_state),
        step=take(round0.step),
    )
    expected, _ = pop.fit(TRAINER, start, X, Y, epochs=EVERY, **SETTINGS)
    assert_states_close(ours, expected)
    # Without perturbation a copy keeps its parent's learning rate.
    rates = history["learning_rate"]
    np.testing.assert_allclose(rates[:, 1], rates[parents, 0])


def test_lineage_follows_the_monitor(copied_run):
    (_, history), _ = copied_run
    parent = history["parent"]
    assert parent.shape == (MEMBERS, 2) and history["learning_rate"].shape == (MEMBERS, 2)
    assert history["loss"].shape == (MEMBERS, 2 * EVERY)
    assert parent[:, 0].tolist() == list(range(MEMBERS))
    # The copies are the worst by val_loss at the end of round 0, their parents the best.
    order = np.argsort(history["val_loss"][:, EVERY - 1], kind="stable")
    copied = set(np.flatnonzero(parent[:, 1] != np.arange(MEMBERS)))
    assert copied == set(order[-3:].tolist())
    assert set(parent[sorted(copied), 1]) <= set(order[:3].tolist())


def test_explored_rates_are_perturbed_copies_within_bounds():
    schedule = pop.PBT(
        ("learning_rate",), every=1, fraction=0.5, bounds={"learning_rate": (1e-3, 0.1)}
    )
    _, history = pbt.fit(
        TRAINER, initial_states(), X, Y, pbt=schedule, key=jax.random.key(2), epochs=3, **SETTINGS
    )
    rates, parent = history["learning_rate"], history["parent"]
    for r in (1, 2):
        copied = parent[:, r] != np.arange(MEMBERS)
        before = rates[parent[:, r], r - 1]
        expected = np.where(
            copied[:, None], np.clip(before[:, None] * [0.8, 1.2], 1e-3, 0.1), before[:, None]
        )
        assert np.isclose(rates[:, r : r + 1], expected, rtol=1e-6).any(axis=1).all()
    assert rates[:, 1:].min() >= 1e-3 * (1 - 1e-6) and rates[:, 1:].max() <= 0.1 * (1 + 1e-6)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: pop.PBT(("learning_rate",), every=0), ValueError, "every must be a positive int"),
        (lambda: pop.PBT(("learning_rate",), fraction=0.75), ValueError, "fraction must lie"),
        (lambda: pop.PBT("learning_rate", mode="best"), ValueError, "mode must be one of"),
        (lambda: pop.PBT(()), TypeError, "hyperparams must name the hyperparameters"),
        (
            lambda: pop.PBT(("learning_rate",), bounds={"momentum": (0.1, 0.9)}),
            ValueError,
            "unknown hyperparameter 'momentum'",
        ),
    ],
)
def test_pbt_refuses_bad_settings(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    ("schedule", "settings", "message"),
    [
        (
            pop.PBT(("momentum",), every=2),
            {},
            r"no traced hyperparameter 'momentum' to explore; it has \['beta_1'",
        ),
        (pop.PBT(("learning_rate",), every=2), {"epochs": 5}, "epochs=5 is not a multiple"),
        (
            pop.PBT(("learning_rate",), every=2),
            {"validation_data": None},
            r"monitor 'val_loss' is not a log of this fit.*needs validation_data",
        ),
        (
            pop.PBT(("learning_rate",), every=2, monitor="val_auc"),
            {},
            r"monitor 'val_auc' is not a log of this fit; the logs are \['loss', 'accuracy'",
        ),
    ],
)
def test_pbt_fit_refuses_bad_input(schedule, settings, message):
    kwargs = {**SETTINGS, "epochs": 4, **settings}
    with pytest.raises(ValueError, match=message):
        pbt.fit(TRAINER, initial_states(), X, Y, pbt=schedule, key=jax.random.key(0), **kwargs)


def test_pbt_fit_refuses_a_schedule_that_is_not_a_pbt():
    with pytest.raises(TypeError, match=r"pbt must be a jaxnn\.population\.PBT schedule, got dict"):
        pbt.fit(TRAINER, initial_states(), X, Y, pbt={"every": 2}, key=jax.random.key(0), epochs=2)


def test_new_hyperparameters_and_keys_reuse_the_compiled_program(copied_run):
    (_, history), _ = copied_run
    before = pbt._program_jit._cache_size()
    schedule = pop.PBT(("learning_rate",), every=EVERY, fraction=0.5, explore=False)
    states = pop.set_hyperparams(initial_states(), learning_rate=jnp.linspace(0.01, 0.02, MEMBERS))
    _, again = pbt.fit(
        TRAINER, states, X, Y, pbt=schedule, key=jax.random.key(8), epochs=2 * EVERY, **SETTINGS
    )
    assert pbt._program_jit._cache_size() == before
    assert not np.allclose(again["learning_rate"], history["learning_rate"])


def test_a_diverged_member_is_replaced_and_trains_again():
    """SGD at a learning rate of 10 on a linear regression blows up within a round; the
    member stops there (NaN logs), ranks worst, and copies a finite member."""
    trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
    x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32) * 10
    y = x.sum(axis=1, keepdims=True)
    rates = jnp.array([1e-3, 1e-3, 1e-3, 10.0])
    states = pop.init(trainer, jax.random.key(0), x, 4, hyperparams={"learning_rate": rates})
    schedule = pop.PBT(("learning_rate",), every=2, monitor="loss", fraction=0.25)
    states, history = pbt.fit(
        trainer, states, x, y, pbt=schedule, key=jax.random.key(0), epochs=4, batch_size=8
    )
    assert np.isnan(history["loss"][3, 1])  # diverged in round 0
    assert history["parent"][3, 1] in (0, 1, 2)  # replaced by a finite member
    assert np.isfinite(history["loss"][3, 2:]).all()  # and training again
    assert history["nonfinite_epoch"].tolist() == [-1, -1, -1, -1]  # its parent's status
    assert np.isfinite(states.params["kernel"]).all()
