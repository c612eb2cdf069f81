"""Training: TrainState, the jitted step, fit, evaluate, predict, callbacks."""

import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn


def tutorial_trainer(**kw):
    model = nn.Sequential(nn.Dense(32, "relu"), nn.Dense(1, "sigmoid"))
    return nn.Trainer(model, "binary_crossentropy", kw.pop("optimizer", "adam"), ["accuracy"])


def tutorial_data(n=100, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 4), dtype=np.float32)
    y = rng.integers(0, 2, size=(n, 1)).astype(np.float32)
    return x, y


# A Trainer compiles its programs once per Trainer object (and per shape and setting), and
# compiling dominates these tests: so tests that do not count compilations share one.
TUTORIAL = tutorial_trainer()
# The tests that count the compilations of train_step share another, used only with
# inputs of one shape (tutorial_data(10)), so that its cache holds one program.
STEP_TRAINER = tutorial_trainer()


def test_train_state_is_one_pytree(key):
    trainer = TUTORIAL
    state = trainer.init(key, jnp.zeros((1, 4)))
    assert isinstance(state, nn.TrainState)
    assert state.step.dtype == jnp.int32
    leaves = jax.tree.leaves(state)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    doubled = jax.tree.map(lambda a: a, state)
    assert jax.tree.structure(doubled) == jax.tree.structure(state)


def test_train_step_compiles_once(key):
    trainer = STEP_TRAINER
    x, y = tutorial_data(10)
    state = trainer.init(key, x)
    traces = []
    step = jax.jit(lambda s, x, y: (traces.append(1), trainer._train_step(s, x, y))[1])
    state, logs = step(state, x, y)
    state, logs = step(state, x, y)
    state, logs = step(state, x, y)
    assert len(traces) == 1
    # The public jitted step too: one entry in its compilation cache after many calls.
    state, logs = trainer.train_step(state, x, y)
    compiled = trainer._step._cache_size()  # equal Trainers share it: count what is added
    for _ in range(3):
        state, logs = trainer.train_step(state, x, y)
    assert trainer._step._cache_size() == compiled
    assert int(state.step) == 7
    assert set(logs) == {"loss", "accuracy"}


def test_train_step_matches_hand_written_adam(key):
    trainer = nn.Trainer(nn.Dense(1), "mse", optax.adam(0.1))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(8, 3)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(2).normal(size=(8, 1)), jnp.float32)
    state = trainer.init(key, x)
    new_state, logs = trainer.train_step(state, x, y)

    def loss(p):
        return jnp.mean((x @ p["kernel"] + p["bias"][None, :] - y) ** 2)

    tx = optax.adam(0.1)
    grads = jax.grad(loss)(state.params)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 counts and floats
        updates, _ = tx.update(grads, tx.init(state.params), state.params)
    expected = optax.apply_updates(state.params, updates)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_state.params, expected
    )
    np.testing.assert_allclose(logs["loss"], loss(state.params), rtol=1e-6)


def test_partial_batch_is_masked_and_weighted_correctly(key):
    """105 examples in batches of 10: the epoch loss equals the mean over all 105."""
    x, y = tutorial_data(105)
    trainer = nn.Trainer(
        nn.Sequential(nn.Dense(8, "relu"), nn.Dense(1, "sigmoid")),
        "binary_crossentropy",
        optax.sgd(0.0),  # no learning: every batch sees the same params
        ["accuracy"],
    )
    state = trainer.init(key, x)
    _, history = trainer.fit(state, x, y, epochs=2, batch_size=10, verbose=0)
    p = trainer.predict(state, x)
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    expected_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    expected_acc = np.mean((p > 0.5) == (y > 0.5))
    # float32 sums of 105 terms: a relative error of 1e-5 is ample.
    np.testing.assert_allclose(history["loss"], [expected_loss] * 2, rtol=1e-5)
    np.testing.assert_allclose(history["accuracy"], [expected_acc] * 2, rtol=1e-6)
    compiled = trainer._run._cache_size()  # equal Trainers share it: count what is added
    trainer.fit(state, x, y, epochs=2, batch_size=10, verbose=0)
    assert trainer._run._cache_size() == compiled
    logs = trainer.evaluate(state, x, y, batch_size=10)
    np.testing.assert_allclose(logs["loss"], expected_loss, rtol=1e-5)


def test_partial_batch_does_not_compile_twice(key):
    x, y = tutorial_data(105)
    traces = []

    def counting(x):
        traces.append(1)
        return x

    model = nn.Sequential(counting, nn.Dense(32, "relu"), nn.Dense(1, "sigmoid"))
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", ["accuracy"])
    state = trainer.init(key, x)
    state, _ = trainer.fit(state, x, y, epochs=3, batch_size=10, verbose=0)
    first = len(traces)
    state, _ = trainer.fit(state, x, y, epochs=3, batch_size=10, verbose=0)
    assert len(traces) == first  # no new trace: the partial batch is masked, not recompiled


def test_fit_learns_xor(key):
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([[0], [1], [1], [0]], np.float32)
    model = nn.Sequential(nn.Dense(16, "tanh"), nn.Dense(1, "sigmoid"))
    trainer = nn.Trainer(
        model, "binary_crossentropy", nn.optimizers.get("adam", learning_rate=0.05), ["accuracy"]
    )
    state = trainer.init(key, x)
    state, history = trainer.fit(state, x, y, epochs=300, batch_size=4, verbose=0)
    assert trainer.evaluate(state, x, y)["accuracy"] == 1.0
    assert history["loss"][-1] < 0.1


def test_fit_is_deterministic_and_shuffles_per_epoch(key):
    x, y = tutorial_data()
    trainer = TUTORIAL
    state = trainer.init(key, x)
    # 4 epochs: the program of test_per_epoch_and_all_at_once_agree.
    a, _ = trainer.fit(state, x, y, epochs=4, batch_size=10, verbose=0)
    b, _ = trainer.fit(state, x, y, epochs=4, batch_size=10, verbose=0)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    c, _ = trainer.fit(state, x, y, epochs=4, batch_size=10, verbose=0, shuffle=False)
    assert not np.array_equal(a.params["dense"]["kernel"], c.params["dense"]["kernel"])
    assert int(a.step) == 40


def test_per_epoch_and_all_at_once_agree(key):
    x, y = tutorial_data()
    trainer = TUTORIAL
    state = trainer.init(key, x)
    a, ha = trainer.fit(state, x, y, epochs=4, batch_size=10, verbose=0)
    seen = []
    b, hb = trainer.fit(
        state, x, y, epochs=4, batch_size=10, verbose=0, callbacks=[lambda e, logs: seen.append(e)]
    )
    assert seen == [0, 1, 2, 3]
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-6)


def test_validation_split_and_data(key):
    x, y = tutorial_data()
    trainer = TUTORIAL
    state = trainer.init(key, x)
    _, h = trainer.fit(state, x, y, epochs=2, batch_size=10, validation_split=0.2, verbose=0)
    assert sorted(h) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    # The split holds out the last 20 examples, as Keras does.
    s2, h2 = trainer.fit(
        state,
        x[:80],
        y[:80],
        epochs=2,
        batch_size=10,
        validation_data=(x[80:], y[80:]),
        verbose=0,
    )
    np.testing.assert_allclose(h["val_loss"], h2["val_loss"], rtol=1e-6)
    np.testing.assert_allclose(
        h2["val_loss"][-1], trainer.evaluate(s2, x[80:], y[80:])["loss"], rtol=1e-5
    )


def test_early_stopping_restores_best_weights(key):
    x, y = tutorial_data()
    trainer = tutorial_trainer(optimizer=nn.optimizers.get("sgd", learning_rate=5.0))
    state = trainer.init(key, x)
    stop = nn.EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    final, h = trainer.fit(
        state, x, y, epochs=200, batch_size=10, validation_split=0.3, verbose=0, callbacks=[stop]
    )
    assert h.epochs < 200
    assert stop.stopped_epoch == h.epochs - 1
    best = int(np.argmin(h["val_loss"]))
    assert stop.best_epoch == best
    np.testing.assert_allclose(
        trainer.evaluate(final, x[70:], y[70:])["loss"], h["val_loss"][best], rtol=1e-5
    )


def test_user_callback_can_stop(key):
    x, y = tutorial_data()
    trainer = TUTORIAL
    state = trainer.init(key, x)
    _, h = trainer.fit(
        state, x, y, epochs=10, batch_size=10, verbose=0, callbacks=[lambda e, logs: e == 2]
    )
    assert h.epochs == 3


def test_verbose_output(key, capsys):
    x, y = tutorial_data()
    trainer = TUTORIAL
    state = trainer.init(key, x)
    trainer.fit(state, x, y, epochs=2, batch_size=10, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "loss: " in out and "accuracy: " in out
    trainer.fit(state, x, y, epochs=2, batch_size=10, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "10/10" in out and "accuracy" in out


def test_a_shown_fit_groups_epochs_by_an_earlier_fit_of_the_same_program(key, capsys):
    """Progress shows the epochs in groups of about 0.2 s: the first group is one
    epoch, unless a fit of the same program (here a silent one) timed its epochs;
    then all 8 tiny epochs run in one dispatch, as silently."""
    x, y = tutorial_data()
    model = nn.Sequential(nn.Dense(7, "relu"), nn.Dense(1, "sigmoid"))  # its own programs
    trainer = nn.Trainer(model, "binary_crossentropy", "adam")
    state = trainer.init(key, x)
    groups = []
    run_plan = trainer._run_plan
    trainer._run_plan = lambda s, plan, count, capacity: (
        groups.append(count) or run_plan(s, plan, count, capacity)
    )
    trainer.fit(state, x, y, epochs=8, batch_size=10, verbose=2)
    assert groups[0] == 1 and sum(groups) == 8
    groups.clear()
    trainer.fit(state, x, y, epochs=8, batch_size=10, verbose=0)
    trainer.fit(state, x, y, epochs=8, batch_size=10, verbose=2)
    assert groups == [8, 8]
    assert capsys.readouterr().out.count("Epoch 8/8") == 2


def test_silent_shown_and_per_epoch_fits_run_one_program_and_agree_bit_for_bit(key, capsys):
    """Every in-memory fit of a Trainer on data of one shape runs one compiled
    program (the epoch count is an argument): silent, shown in groups, epoch by epoch
    with a callback, and for any number of epochs; so they agree bit for bit."""
    x, y = tutorial_data()
    model = nn.Sequential(nn.Dense(6, "relu"), nn.Dense(1, "sigmoid"))  # its own programs
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics=["accuracy"])
    state = trainer.init(key, x)
    fit = dict(epochs=5, batch_size=10)
    silent, silent_history = trainer.fit(state, x, y, verbose=0, **fit)
    shown, _ = trainer.fit(state, x, y, verbose=2, **fit)
    noop = [lambda epoch, logs: None]
    each, each_history = trainer.fit(state, x, y, verbose=0, callbacks=noop, **fit)
    three, _ = trainer.fit(state, x, y, verbose=0, epochs=3, batch_size=10)
    more, _ = trainer.fit(three, x, y, verbose=0, epochs=2, batch_size=10)
    for other in (shown, each, more):
        chex.assert_trees_all_equal(other.params, silent.params)
        chex.assert_trees_all_equal(other.opt_state, silent.opt_state)
    for name in ("loss", "accuracy"):
        np.testing.assert_array_equal(each_history[name], silent_history[name])
    assert trainer._run._cache_size() == 1


def test_predict_matches_apply_and_batching(key):
    x, _ = tutorial_data(23)
    trainer = TUTORIAL
    state = trainer.init(key, x)
    direct, _ = trainer.model.apply(state.params, state.model_state, jnp.asarray(x))
    for bs in (1, 5, 32):
        np.testing.assert_allclose(trainer.predict(state, x, batch_size=bs), direct, rtol=1e-6)


def test_sample_weight_zero_equals_dropping(key):
    x, y = tutorial_data(40)
    trainer = nn.Trainer(nn.Dense(1, "sigmoid"), "binary_crossentropy", "sgd")
    state = trainer.init(key, x)
    w = np.ones(40, np.float32)
    w[30:] = 0
    full = trainer.evaluate(state, x, y, sample_weight=w)["loss"]
    part = trainer.evaluate(state, x[:30], y[:30])["loss"]
    np.testing.assert_allclose(full, part, rtol=1e-6)


def test_learning_rate_is_traced_not_recompiled(key):
    x, y = tutorial_data(10)
    trainer = STEP_TRAINER
    state = trainer.init(key, x)
    state, _ = trainer.train_step(state, x, y)
    compiled = trainer._step._cache_size()  # equal Trainers share it: count what is added
    hp = state.opt_state.hyperparams
    state = state._replace(
        opt_state=state.opt_state._replace(hyperparams={**hp, "learning_rate": jnp.float32(0.5)})
    )
    state, _ = trainer.train_step(state, x, y)
    assert trainer._step._cache_size() == compiled


def test_keras_optimizer_names_and_defaults():
    for name, lr in [("adam", 1e-3), ("sgd", 1e-2), ("rmsprop", 1e-3), ("adamw", 1e-3)]:
        tx = nn.optimizers.get(name)
        state = tx.init({"w": jnp.zeros(2)})
        np.testing.assert_allclose(state.hyperparams["learning_rate"], lr)


# ------------------------------------------------------- Keras habits, save and load


def test_keras_fit_habit_shows_the_state_first(key):
    x, y = tutorial_data(10)
    state_first = r"state = trainer\.init\(jax\.random\.key\(0\), X\); "
    with pytest.raises(
        TypeError,
        match=r"^Trainer\.fit: the first argument is the TrainState, got data \(ndarray of shape "
        r"\(10, 4\)\)\. A Trainer holds no weights: make the state first, then pass it, as in "
        + state_first
        + r"state, history = trainer\.fit\(state, X, y\)\.$",
    ):
        TUTORIAL.fit(x, y)
    with pytest.raises(TypeError, match=state_first + r"trainer\.evaluate\(state, X, y\)"):
        TUTORIAL.evaluate(x, y)
    with pytest.raises(TypeError, match=state_first + r"trainer\.predict\(state, X\)"):
        TUTORIAL.predict(x)
    with pytest.raises(ValueError, match=r"^Trainer\.fit: x is None; pass the input data"):
        TUTORIAL.fit(TUTORIAL.init(key, x))


def test_fit_result_unpacks_and_has_state_and_history(key):
    x, y = tutorial_data(10)
    state = TUTORIAL.init(key, x)
    result = TUTORIAL.fit(state, x, y, epochs=2, batch_size=5, verbose=0)
    assert isinstance(result, nn.FitResult)
    new_state, history = result  # the unpacking every README line uses
    assert result.state is new_state and result.history is history
    assert isinstance(history, nn.History) and sorted(history) == ["accuracy", "loss"]
    assert result.history["loss"].shape == (2,)  # Keras's fit(...).history["loss"]
    per_epoch = TUTORIAL.fit(state, x, y, epochs=1, batch_size=5, verbose=0, callbacks=[])
    assert isinstance(per_epoch, nn.FitResult)


def test_learning_rate_goes_to_the_named_optimizer(key):
    model = nn.Dense(1)
    trainer = nn.Trainer(model, "mse", "adam", learning_rate=1e-2)
    state = trainer.init(key, jnp.zeros((1, 3)))
    np.testing.assert_allclose(state.opt_state.hyperparams["learning_rate"], 1e-2)
    with pytest.raises(
        ValueError,
        match=r"^Trainer: learning_rate is for a named optimizer \(optimizer='adam'\); an optax "
        r"transformation carries its own, e\.g\. optax\.adam\(learning_rate=1e-2\)\.",
    ):
        nn.Trainer(model, "mse", optax.adam(1e-3), learning_rate=1e-2)
    for bad in (0.0, -1.0, float("nan"), True, "1e-2"):
        with pytest.raises(ValueError, match=r"^Trainer: learning_rate must be a positive number"):
            nn.Trainer(model, "mse", "adam", learning_rate=bad)


def test_a_keras_style_loss_trains_as_the_built_in_one(key):
    """The issue's silent wrong result: bce(y_true, y_pred) was called the other way round."""

    def bce(y_true, y_pred):
        p = jnp.clip(y_pred, 1e-7, 1 - 1e-7)
        return -(y_true * jnp.log(p) + (1 - y_true) * jnp.log(1 - p))

    model = nn.Sequential(nn.Dense(4, "relu"), nn.Dense(1, "sigmoid"))
    x, y = tutorial_data(20)
    custom = nn.Trainer(model, bce, "sgd")
    builtin = nn.Trainer(model, "binary_crossentropy", "sgd")
    state = builtin.init(key, x)
    np.testing.assert_allclose(
        custom.evaluate(state, x, y)["loss"], builtin.evaluate(state, x, y)["loss"], rtol=1e-5
    )


def test_save_and_load_in_one_line_each(key, tmp_path):
    x, y = tutorial_data(10)
    state, _ = TUTORIAL.fit(TUTORIAL.init(key, x), x, y, epochs=1, batch_size=5, verbose=0)
    path = tmp_path / "model.safetensors"
    TUTORIAL.save(path, state)
    loaded = TUTORIAL.load(path)
    assert jax.tree.structure(loaded) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(state), strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(TUTORIAL.predict(loaded, x), TUTORIAL.predict(state, x))
    assert TUTORIAL.load(path, like=state).step == state.step
    # Without a trainer: nested dicts, straight into model.apply.
    stored = nn.checkpoint.restore(path)
    y_hat, _ = TUTORIAL.model.apply(stored["params"], stored["model_state"], x)
    np.testing.assert_allclose(y_hat, TUTORIAL.predict(state, x), rtol=1e-6)
    nn.checkpoint.save(path, state.params)
    with pytest.raises(
        nn.CheckpointError,
        match=r"Trainer\.load: .* holds \['dense', 'dense_1'\], not a TrainState \(params, "
        r"model_state, opt_state, step, key\) as Trainer\.save and fit's checkpoints write it",
    ):
        TUTORIAL.load(path)
    with pytest.raises(TypeError, match=r"^Trainer\.save: state must be a TrainState"):
        TUTORIAL.save(path, state.params)


def test_history_plot(monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    history = nn.History(
        {
            "loss": np.array([0.9, 0.6, 0.4]),
            "accuracy": np.array([0.5, 0.7, 0.8]),
            "val_loss": np.array([1.0, 0.8, 0.7]),
            "val_accuracy": np.array([0.4, 0.6, 0.7]),
            "skipped_steps": np.array([0, 0, 1]),
        }
    )
    fig = history.plot()
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    loss = fig.axes[0]
    assert [line.get_label() for line in loss.get_lines()] == ["training", "validation"]
    np.testing.assert_array_equal(loss.get_lines()[1].get_ydata(), [1.0, 0.8, 0.7])
    plt.close(fig)
    members = nn.History({"loss": np.array([[0.9, 0.5], [0.8, 0.6]])})  # a population's
    fig = members.plot()
    assert len(fig.axes[0].get_lines()) == 2
    plt.close(fig)
    with pytest.raises(
        ValueError,
        match=r"^History\.plot: 'los' is not a log of this history; its logs are \['loss', "
        r"'accuracy'\]\. Did you mean 'loss'\?$",
    ):
        history.plot(["los"])


def test_history_plot_without_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(
        ImportError,
        match=r"^History\.plot needs matplotlib, which is not installed: pip install "
        r"matplotlib \(or pip install -e '\.\[examples\]' in a jaxnn checkout\)\.$",
    ):
        nn.History({"loss": np.array([1.0])}).plot()
