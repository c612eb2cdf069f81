"""Training: TrainState, the jitted step, fit, evaluate, predict, callbacks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

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
    for _ in range(3):
        state, logs = trainer.train_step(state, x, y)
    assert trainer._step._cache_size() == 1
    assert int(state.step) == 6
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
    assert trainer._run._cache_size() == 1
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
    assert trainer._run._cache_size() == 1


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
    hp = state.opt_state.hyperparams
    state = state._replace(
        opt_state=state.opt_state._replace(hyperparams={**hp, "learning_rate": jnp.float32(0.5)})
    )
    state, _ = trainer.train_step(state, x, y)
    assert trainer._step._cache_size() == 1


def test_keras_optimizer_names_and_defaults():
    for name, lr in [("adam", 1e-3), ("sgd", 1e-2), ("rmsprop", 1e-3), ("adamw", 1e-3)]:
        tx = nn.optimizers.get(name)
        state = tx.init({"w": jnp.zeros(2)})
        np.testing.assert_allclose(state.hyperparams["learning_rate"], lr)
