"""Numerical guards in ``fit`` (NaN/Inf loss or gradient) and the checks at its door."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn
from jaxnn.train import NonFiniteError

BATCH = 8
BAD_ROW = 37  # in batch 4 (rows 32..39) when the data is not shuffled


def regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, x.sum(axis=1, keepdims=True)


def overflowing(x):
    """Finite data (it passes the door check) that overflows to Inf in the first layer."""
    x = x.copy()
    x[BAD_ROW] = 3e38
    return x


def make(optimizer="sgd"):
    model = nn.Sequential(nn.Dense(4, "relu", name="hidden"), nn.Dense(1, name="out"))
    return nn.Trainer(model, "mse", optimizer)


# A Trainer compiles per Trainer object, shape and setting, and compiling is most of
# these tests' time: tests that do not count compilations share these two, with
# settings chosen so that one compiled program serves several tests.
SGD = make()
ADAM = make("adam")


def all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("verbose", [0, 2], ids=["one-program", "per-epoch"])
def test_raise_on_overflowing_data_names_epoch_step_and_path(key, verbose, capsys):
    x, y = regression()
    x = overflowing(x)
    trainer = SGD
    state = trainer.init(key, x)
    with pytest.raises(
        NonFiniteError,
        match=r"Trainer\.fit: non-finite values in epoch 1/3 \(index 0\), batch 4, step 4: "
        r"the first non-finite gradient is at 'hidden/kernel'.*error\.state is the last "
        r"finite state \(step 4\).*on_nonfinite='skip'",
    ) as info:
        trainer.fit(state, x, y, epochs=3, batch_size=BATCH, shuffle=False, verbose=verbose)
    e = info.value
    assert isinstance(e, FloatingPointError)
    assert (e.epoch, e.batch, e.step, e.path) == (0, 4, 4, "hidden/kernel")
    assert int(e.state.step) == 4 and all_finite(e.state.params)
    assert e.history.epochs == 0
    # The state handed back is the one after the 4 good batches, key included.
    expected = state
    for b in range(4):
        rows = slice(b * BATCH, (b + 1) * BATCH)
        expected, _ = trainer.train_step(expected, x[rows], y[rows])
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), e.state.params, expected.params
    )
    np.testing.assert_array_equal(jax.random.key_data(e.state.key), jax.random.key_data(state.key))


def test_both_paths_hand_back_the_same_state(key):
    """The one-program path freezes at the bad step just as the per-epoch loop does."""
    x, y = regression()
    x = overflowing(x)
    trainer = ADAM
    state = trainer.init(key, x)
    errors = []
    for verbose in (0, 2):
        with pytest.raises(NonFiniteError) as info:
            trainer.fit(state, x, y, epochs=4, batch_size=BATCH, verbose=verbose)
        errors.append(info.value)
    a, b = errors
    assert (a.epoch, a.batch, a.step, a.path) == (b.epoch, b.batch, b.step, b.path)
    assert_trees_equal(a.state.params, b.state.params)
    assert_trees_equal(a.state.opt_state, b.state.opt_state)


def test_skip_on_overflowing_data_equals_training_without_that_batch(key):
    x, y = regression()
    bad = overflowing(x)
    trainer = SGD
    state = trainer.init(key, x)
    skipped, history = trainer.fit(
        state, bad, y, epochs=3, batch_size=BATCH, shuffle=False, verbose=0, on_nonfinite="skip"
    )
    np.testing.assert_array_equal(history["skipped_steps"], [1, 1, 1])
    assert all_finite(skipped.params)
    keep = np.r_[0:32, 40:64]  # the batch with the bad row, dropped
    clean, clean_history = trainer.fit(
        state, x[keep], y[keep], epochs=3, batch_size=BATCH, shuffle=False, verbose=0
    )
    # The same SGD updates in the same order; a skipped step does not count either.
    # Sums over a batch may fuse differently: 1e-6 relative is float32 rounding.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), skipped.params, clean.params
    )
    assert int(skipped.step) == int(clean.step) == 3 * 7
    # The epoch's logs average over the applied steps only.
    np.testing.assert_allclose(history["loss"], clean_history["loss"], rtol=1e-5)


def test_skip_counts_per_epoch_in_the_per_epoch_loop(key):
    x, y = regression()
    x = overflowing(x)
    trainer = SGD
    state = trainer.init(key, x)
    _, history = trainer.fit(
        state, x, y, epochs=2, batch_size=BATCH, verbose=2, on_nonfinite="skip"
    )
    assert history["skipped_steps"].tolist() == [1, 1]
    assert np.all(np.isfinite(history["loss"]))


def nan_for_negative_targets(predictions, targets):
    """MSE plus log(target): a NaN loss for rows with a negative target, while the
    gradient (which does not depend on the target's log) stays finite."""
    return jnp.mean((predictions - targets) ** 2, axis=-1) + jnp.log(targets[:, 0] + 10.0)


def test_custom_loss_with_nan_rows(key):
    x, y = regression()
    y = y.copy()
    y[5] = -20.0  # finite data: log(-10) is NaN only inside the loss
    trainer = nn.Trainer(make().model, nan_for_negative_targets, "sgd")
    state = trainer.init(key, x)
    with pytest.raises(
        NonFiniteError,
        match=r"epoch 1/2 \(index 0\), batch 0, step 0: the loss is non-finite \(the "
        r"gradients are finite\); the batch loss was nan",
    ) as info:
        trainer.fit(state, x, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0)
    assert info.value.path is None
    assert_trees_equal(info.value.state.params, state.params)

    _, history = trainer.fit(
        state, x, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0, on_nonfinite="skip"
    )
    assert history["skipped_steps"].tolist() == [1, 1]


def test_diverging_learning_rate(key):
    x, y = regression()
    trainer = SGD
    state = trainer.init(key, x)
    # SGD at 10 diverges within a few steps. The rate is a traced hyperparameter, and
    # the settings are those of the tests above: their compiled programs serve here.
    hyperparams = {**state.opt_state.hyperparams, "learning_rate": jnp.float32(10.0)}
    state = state._replace(opt_state=state.opt_state._replace(hyperparams=hyperparams))
    fit = dict(epochs=3, batch_size=BATCH, shuffle=False, verbose=0)
    with pytest.raises(NonFiniteError, match=r"non-finite values in epoch \d+/3") as info:
        trainer.fit(state, x, y, **fit)
    e = info.value
    assert all_finite(e.state.params) and all_finite(e.state.opt_state)
    assert int(e.state.step) == e.step and e.step >= 1
    assert e.history.epochs == e.epoch

    skipped, history = trainer.fit(state, x, y, on_nonfinite="skip", **fit)
    assert history["skipped_steps"].sum() > 0
    assert all_finite(skipped.params)


def test_unknown_policy(key):
    x, y = regression()
    trainer = SGD
    state = trainer.init(key, x)
    with pytest.raises(
        ValueError, match=r"on_nonfinite must be one of 'raise', 'skip', 'ignore'; got 'warn'"
    ):
        trainer.fit(state, x, y, verbose=0, on_nonfinite="warn")
    with pytest.raises(ValueError, match=r"on_nonfinite='stop' is for population members"):
        trainer.fit(state, x, y, verbose=0, on_nonfinite="stop")


def test_guard_compiles_once(key):
    x, y = regression()
    trainer = make()
    state = trainer.init(key, x)
    state, _ = trainer.fit(state, x, y, epochs=2, batch_size=BATCH, verbose=0)
    # Equal Trainers share their programs (other tests' included): count what is added.
    compiled = trainer._run._cache_size()
    state, _ = trainer.fit(state, x, y, epochs=2, batch_size=BATCH, verbose=0)
    assert trainer._run._cache_size() == compiled


def test_a_finite_fit_runs_unguarded_and_only_a_bad_one_is_run_again_guarded(key):
    """Under "raise" the epochs first run without the per-step guard: a finite fit
    compiles and runs only that program, and equals "ignore" bit for bit; the
    guarded program is compiled when an epoch ends non-finite, and its error is the
    per-step guard's (the same step, the last finite state)."""
    x, y = regression()
    # Its own configuration (5 hidden units), so that no other test shares its programs.
    model = nn.Sequential(nn.Dense(5, "relu", name="hidden"), nn.Dense(1, name="out"))
    trainer = nn.Trainer(model, "mse", "sgd")
    state = trainer.init(key, x)
    fit = dict(epochs=2, batch_size=BATCH, shuffle=False, verbose=0)
    finite, history = trainer.fit(state, x, y, **fit)
    assert trainer._run._cache_size() == 1
    plain, plain_history = trainer.fit(state, x, y, on_nonfinite="ignore", **fit)
    assert_trees_equal(finite._replace(key=None), plain._replace(key=None))
    assert_trees_equal(jax.random.key_data(finite.key), jax.random.key_data(plain.key))
    np.testing.assert_array_equal(history["loss"], plain_history["loss"])
    with pytest.raises(NonFiniteError, match=r"epoch 1/2 \(index 0\), batch 4, step 4") as e:
        trainer.fit(state, overflowing(x), y, **fit)
    assert trainer._run._cache_size() == 3  # + "ignore" + the guarded program
    assert int(e.value.state.step) == 4 and all_finite(e.value.state.params)
    # The last finite state is the unguarded program's after the 4 good steps.
    four, _ = trainer.fit(state, x[: 4 * BATCH], y[: 4 * BATCH], **{**fit, "epochs": 1})
    assert_trees_equal(e.value.state.params, four.params)


def where_nan_loss(predictions, targets):
    """Finite values whose gradient is NaN: the ``jnp.where`` trap (sqrt of a negative
    in the branch not taken)."""
    safe = jnp.where(targets > 1e6, jnp.sqrt(predictions - 1e9), (predictions - targets) ** 2)
    return jnp.mean(safe, axis=-1)


def test_a_nan_gradient_the_optimizer_discards_is_not_reported(key):
    """A NaN gradient that leaves no NaN behind (the optimizer zeroes it) is not a
    failure of the run; with a plain optimizer the same gradient is raised."""
    x, y = regression(16)
    fit = dict(epochs=2, batch_size=8, shuffle=False, verbose=0)
    plain = nn.Trainer(nn.Dense(1, name="out"), where_nan_loss, "sgd")
    bad = r"batch 0, step 0: the first non-finite gradient is at 'bias'"
    with pytest.raises(NonFiniteError, match=bad):
        plain.fit(plain.init(key, x), x, y, **fit)
    tolerant = nn.Trainer(
        nn.Dense(1, name="out"), where_nan_loss, optax.chain(optax.zero_nans(), optax.sgd(0.01))
    )
    state, history = tolerant.fit(tolerant.init(key, x), x, y, **fit)
    assert all_finite(state.params) and np.isfinite(history["loss"]).all()
    assert int(state.step) == 4


# ------------------------------------------------------------------ the door


def test_integer_features_are_converted_by_the_first_layer(key):
    """int features reach Dense, which casts them to its float32 compute dtype."""
    x, y = regression()
    ints = np.round(x * 10).astype(np.int64)
    trainer = ADAM  # features of scale 10 would make plain SGD diverge
    state = trainer.init(key, ints)
    assert state.params["hidden"]["kernel"].dtype == jnp.float32
    out = trainer.predict(state, ints)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, trainer.predict(state, ints.astype(np.float32)), rtol=1e-6)
    trained, history = trainer.fit(state, ints, y, epochs=2, batch_size=BATCH, verbose=0)
    assert all_finite(trained.params) and np.all(np.isfinite(history["loss"]))


def test_numpy_and_lists_in_evaluate_and_predict(key):
    x, y = regression(20)
    trainer = SGD
    state = trainer.init(key, x)
    as_jax = trainer.predict(state, jnp.asarray(x))
    np.testing.assert_array_equal(trainer.predict(state, x), as_jax)
    np.testing.assert_array_equal(trainer.predict(state, x.tolist()), as_jax)
    np.testing.assert_array_equal(trainer.predict(state, x.astype(np.float64)), as_jax)
    logs = trainer.evaluate(state, jnp.asarray(x), jnp.asarray(y))
    assert trainer.evaluate(state, x, y) == logs
    assert trainer.evaluate(state, x.tolist(), y.tolist()) == logs


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda t, s, x, y: t.predict(s, np.zeros((0, 3), np.float32)), r"x has no examples"),
        (lambda t, s, x, y: t.evaluate(s, x, y[:5]), r"x has 20 examples but y has 5"),
        (
            lambda t, s, x, y: t.predict(s, np.where(np.arange(20)[:, None] == 3, np.inf, x)),
            r"Trainer\.predict: x has NaN or Inf values in 1 row\(s\): 3\.",
        ),
        (
            lambda t, s, x, y: t.evaluate(s, x, np.where(np.arange(20)[:, None] == 9, np.nan, y)),
            r"Trainer\.evaluate: y has NaN or Inf values in 1 row\(s\): 9\.",
        ),
    ],
    ids=["empty", "lengths", "inf-in-x", "nan-in-y"],
)
def test_bad_data_at_the_door_of_evaluate_and_predict(key, call, match):
    x, y = regression(20)
    trainer = SGD
    state = trainer.init(key, x)
    with pytest.raises(ValueError, match=match):
        call(trainer, state, x, y)


def test_an_epoch_with_every_step_skipped_logs_nan_not_zero(key):
    """No applied step means no loss to report: NaN, never a 'perfect' 0.0 that
    early stopping or keep_best would take as the best epoch."""
    x, y = np.ones((8, 2), np.float32), np.ones((8, 1), np.float32)

    def loss(p, t):  # non-finite wherever the prediction exceeds 1.5
        return jnp.where(p[:, 0] > 1.5, jnp.inf, (p[:, 0] - t[:, 0]) ** 2)

    trainer = nn.Trainer(nn.Dense(1), loss, "sgd", metrics=["mae"])
    state = trainer.init(key, x)
    state = state._replace(params=jax.tree.map(lambda a: a + 5.0, state.params))
    for verbose in (0, 2):
        trained, history = trainer.fit(
            state, x, y, epochs=2, batch_size=8, verbose=verbose, on_nonfinite="skip"
        )
        assert np.isnan(history["loss"]).all() and np.isnan(history["mae"]).all()
        np.testing.assert_array_equal(history["skipped_steps"], [1, 1])
        assert_trees_equal(trained.params, state.params)


def test_all_zero_weights_evaluate_to_nan(key):
    x, y = regression(16)
    trainer = nn.Trainer(nn.Dense(1), "mse", "sgd", metrics=["mae"])
    state = trainer.init(key, x)
    logs = trainer.evaluate(state, x, y, sample_weight=np.zeros(16))
    assert np.isnan(logs["loss"]) and np.isnan(logs["mae"])


def test_ignore_checks_nothing_and_equals_the_guarded_run_on_finite_data(key):
    """'ignore' runs the unguarded program: finite data trains exactly as under the
    guard, and overflowing data is let through to non-finite params."""
    x, y = regression()
    trainer = SGD
    state = trainer.init(key, x)
    # Shuffled, so that the two programs must also draw the same batches.
    fit = dict(epochs=3, batch_size=BATCH, verbose=0)
    guarded, guarded_history = trainer.fit(state, x, y, **fit)
    plain, plain_history = trainer.fit(state, x, y, on_nonfinite="ignore", **fit)
    assert_trees_equal(plain.params, guarded.params)
    np.testing.assert_array_equal(plain_history["loss"], guarded_history["loss"])
    # Every epoch meets the overflowing row: one program serves both "ignore" runs.
    broken, history = trainer.fit(state, overflowing(x), y, on_nonfinite="ignore", **fit)
    assert not all_finite(broken.params)
    assert "skipped_steps" not in history


@pytest.mark.parametrize(
    "optimizer, zero_targets",
    [
        # Finite gradients, an overflowing learning rate: the params would overflow.
        (lambda: nn.optimizers.get("sgd", learning_rate=3e38), False),
        # Zero gradients (zero predictions, zero targets) with eps=0: Adam's 0/0.
        (lambda: optax.adam(1e-3, eps=0.0), True),
    ],
    ids=["sgd-overflow", "adam-eps0"],
)
def test_the_guard_checks_the_state_an_update_makes(key, optimizer, zero_targets):
    """Finite loss and gradients whose update is not finite: raised or skipped as a
    bad gradient is, and the state handed back is finite."""
    x, y = regression(16)
    y = np.zeros_like(y) if zero_targets else y
    trainer = nn.Trainer(nn.Dense(1, kernel_init="zeros"), "mse", optimizer())
    state = trainer.init(key, x)
    with pytest.raises(NonFiniteError, match=r"would make the params non-finite, first at") as e:
        trainer.fit(state, x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert all_finite((e.value.state.params, e.value.state.opt_state))
    assert int(e.value.state.step) == 0
    skipped, history = trainer.fit(
        state, x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, on_nonfinite="skip"
    )
    assert all_finite((skipped.params, skipped.opt_state))
    assert history["skipped_steps"].tolist() == [2, 2]


def test_a_population_member_stops_before_its_optimizer_state_goes_non_finite(key):
    x, y = regression(16)
    trainer = nn.Trainer(nn.Dense(1, kernel_init="zeros"), "mse", optax.adam(1e-3, eps=0.0))
    states = nn.population.init(trainer, key, x, 2)
    states, history = nn.population.fit(trainer, states, x, np.zeros_like(y), epochs=2)
    assert history["nonfinite_epoch"].tolist() == [0, 0]
    assert all_finite((states.params, states.opt_state))
