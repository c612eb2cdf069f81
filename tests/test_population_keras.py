"""Keras's training options in populations: reduce-on-plateau per member, mixed
precision, class weights, and metrics of several values as monitors.

As in ``test_population.py``, the reference for every training test is the same
network trained alone with ``Trainer.fit`` (with the host callback, policy or
``class_weight`` in question): member ``i`` must end where it would have ended alone.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn
from jaxnn import population as pop
from jaxnn.confusion_metrics import F1Score
from jaxnn.optimizers import hyperparams
from jaxnn.population import fitting
from jaxnn.train.steering import plateau_rule

# float32 members: a vmapped product may sum in another order than the unbatched one
# (a few ulps per step, carried through a few dozen Adam steps), as in
# test_population.py; a wrong rate, weight or mask moves parameters by 1e-3 or more.
RTOL, ATOL = 1e-5, 1e-6
EXAMPLES, FEATURES, BATCH, MEMBERS = 30, 3, 8, 4  # 30 % 8: a masked partial batch


@pytest.fixture(autouse=True)
def strict_promotion():
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        yield


def toy_data(n=EXAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = (x.sum(axis=1, keepdims=True) > 0).astype(np.float32)
    return x, y


def classifier(**kwargs):
    model = nn.Sequential(nn.Dense(8, "relu"), nn.Dense(1, "sigmoid"))
    return nn.Trainer(model, "binary_crossentropy", kwargs.pop("optimizer", "adam"), **kwargs)


# Shared, so that each compiled program serves several tests.
CLASSIFIER = classifier(metrics=["accuracy"])


def member(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def population(trainer, x, rates=(1e-3, 1e-2, 1e-1, 1.0)):
    return pop.init(
        trainer, jax.random.key(0), x, len(rates), hyperparams={"learning_rate": jnp.array(rates)}
    )


def lr_of(state):
    return hyperparams(state.opt_state)["learning_rate"]


# ------------------------------------------------------- reduce-on-plateau per member


def test_plateau_rule_matches_the_host_callback_step_by_step():
    """The pure rule, run on a vector of entries in jax.numpy, gives each entry the
    rates the host callback gives it alone (scripted values, cooldown and min_lr)."""
    values = np.array(
        [
            [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85],
            [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        ],
        np.float32,
    )
    args = dict(factor=0.5, patience=2, min_delta=1e-4, cooldown=2, min_lr=0.03, mode="min")
    rule = plateau_rule(**args)
    plateau, lr = rule.init((3,), jnp), jnp.full((3,), 0.1, jnp.float32)
    rates = []
    for value in values.T:
        plateau, lr = jax.jit(rule.update, static_argnums=4)(plateau, value, lr, True, jnp)
        rates.append(lr)
    rates = np.stack(rates, axis=1)
    for i, row in enumerate(values):
        host = nn.ReduceLROnPlateau("loss", **{k: v for k, v in args.items() if k != "mode"})
        host.on_train_begin(None)
        expected, lr_i = [], np.float32(0.1)
        for value in row:
            host.plateau, lr_i = host.rule.update(host.plateau, value, lr_i, np.bool_(True), np)
            expected.append(lr_i)
        np.testing.assert_array_equal(rates[i], expected)
    # Worked by hand (test_callbacks.py has the same first row): reductions after
    # epochs 3 and 6, the second clipped to min_lr, and none after 10, the rate being
    # at min_lr already; the falling row never reduces, the flat one does.
    np.testing.assert_allclose(rates[0, [2, 3, 6, 10]], [0.1, 0.05, 0.03, 0.03], rtol=1e-6)
    np.testing.assert_array_equal(rates[1], np.full(11, np.float32(0.1)))
    assert rates[2, -1] == np.float32(0.03)


@pytest.mark.parametrize("verbose", [0, 2], ids=["one-program", "per-epoch"])
def test_reduce_lr_member_equals_trainer_fit_with_the_callback(verbose, capsys):
    trainer = CLASSIFIER
    x, y = toy_data()
    xv, yv = toy_data(10, seed=1)
    states = population(trainer, x)
    make = lambda: nn.ReduceLROnPlateau("val_loss", factor=0.5, patience=1, min_delta=1e-3)
    epochs = 6
    trained, history = pop.fit(
        trainer,
        states,
        x,
        y,
        epochs=epochs,
        batch_size=BATCH,
        validation_data=(xv, yv),
        reduce_lr=make(),
        verbose=verbose,
    )
    capsys.readouterr()
    assert history["learning_rate"].shape == (MEMBERS, epochs)
    for i in range(MEMBERS):
        alone, alone_history = trainer.fit(
            member(states, i),
            x,
            y,
            epochs=epochs,
            batch_size=BATCH,
            validation_data=(xv, yv),
            verbose=0,
            callbacks=[make()],
        )
        # The rate of each epoch: the same float32 arithmetic, so exactly equal.
        np.testing.assert_array_equal(history["learning_rate"][i], alone_history["learning_rate"])
        np.testing.assert_allclose(history["val_loss"][i], alone_history["val_loss"], rtol=RTOL)
        chex.assert_trees_all_close(member(trained.params, i), alone.params, rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(lr_of(member(trained, i)), lr_of(alone))
    # Teeth: some members plateau and are reduced, the slowest never is.
    reduced = history["learning_rate"][:, -1] < history["learning_rate"][:, 0]
    assert reduced.any() and not reduced.all()


def test_reduce_lr_with_early_stopping_runs_as_the_two_host_callbacks():
    """reduce_lr and early_stopping together equal callbacks=[reduce, stop] alone;
    a stopped member's rate is NaN in the history from then on, as its other logs."""
    trainer = CLASSIFIER
    x, y = toy_data()
    states = population(trainer, x, rates=(1e-2, 1.0, 3.0))
    reduce = lambda: nn.ReduceLROnPlateau("loss", factor=0.2, patience=0, min_delta=0.01)
    stop = lambda: nn.EarlyStopping("loss", patience=1, min_delta=0.01, restore_best_weights=True)
    settings = dict(epochs=8, batch_size=BATCH)
    trained, history = pop.fit(
        trainer, states, x, y, reduce_lr=reduce(), early_stopping=stop(), **settings
    )
    stopped = history["stopped_epoch"]
    assert (stopped >= 0).any()
    for i in range(3):
        alone, alone_history = trainer.fit(
            member(states, i), x, y, verbose=0, callbacks=[reduce(), stop()], **settings
        )
        ran = len(alone_history["loss"])
        assert ran == (stopped[i] + 1 if stopped[i] >= 0 else settings["epochs"])
        np.testing.assert_array_equal(
            history["learning_rate"][i, :ran], alone_history["learning_rate"]
        )
        assert np.isnan(history["learning_rate"][i, ran:]).all()
        chex.assert_trees_all_close(member(trained.params, i), alone.params, rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(lr_of(member(trained, i)), lr_of(alone))


def test_reduce_lr_errors_name_the_problem_and_the_fix():
    x, y = toy_data()
    states = population(CLASSIFIER, x)
    with pytest.raises(TypeError, match=r"reduce_lr must be a jaxnn\.ReduceLROnPlateau, got str"):
        pop.fit(CLASSIFIER, states, x, y, reduce_lr="val_loss")
    with pytest.raises(ValueError, match="reduce_lr monitors 'val_loss' but there is no valid"):
        pop.fit(CLASSIFIER, states, x, y, reduce_lr=nn.ReduceLROnPlateau("val_loss"))
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau: monitor 'los' is not in the logs.*"):
        pop.fit(CLASSIFIER, states, x, y, reduce_lr=nn.ReduceLROnPlateau("los"))
    scheduled = classifier(optimizer="sgd", learning_rate=optax.exponential_decay(0.1, 10, 0.5))
    sched_states = pop.init(scheduled, jax.random.key(0), x, 2)
    with pytest.raises(ValueError, match="reduce_lr: the learning_rate is an optax schedule"):
        pop.fit(scheduled, sched_states, x, y, reduce_lr=nn.ReduceLROnPlateau("loss"))
    plain = nn.Trainer(nn.Dense(1), "mse", optax.sgd(0.1))
    plain_states = pop.init(plain, jax.random.key(0), x, 2)
    with pytest.raises(ValueError, match="reduce_lr: the optimizer traces no learning_rate"):
        pop.fit(plain, plain_states, x, y, reduce_lr=nn.ReduceLROnPlateau("loss"))


# ------------------------------------------------------------------ mixed precision


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_dtype_policy_member_equals_the_trainer_alone(policy):
    x, y = toy_data()
    optimizer = nn.optimizers.get("adam")
    if policy == "mixed_float16":
        # A scale far too large: the first steps overflow in float16 and are skipped
        # while the scale halves, in each member's own optimizer state.
        optimizer = nn.precision.dynamic_loss_scale(optimizer, initial_scale=2.0**20)
    trainer = classifier(optimizer=optimizer, metrics=["accuracy"], dtype_policy=policy)
    states = population(trainer, x)
    epochs = 3
    trained, history = pop.fit(trainer, states, x, y, epochs=epochs, batch_size=BATCH)
    np.testing.assert_array_equal(history["nonfinite_epoch"], np.full(MEMBERS, -1))
    evaluated = pop.evaluate(trainer, trained, x, y, batch_size=BATCH)
    predicted = pop.predict(trainer, trained, x, batch_size=BATCH)
    assert predicted.dtype == jnp.float32  # the policy's output dtype
    for i in range(MEMBERS):
        alone, alone_history = trainer.fit(
            member(states, i), x, y, epochs=epochs, batch_size=BATCH, verbose=0
        )
        # Members compute as the network alone does, in the same 16-bit dtype.
        chex.assert_trees_all_close(member(trained, i).params, alone.params, rtol=RTOL, atol=ATOL)
        chex.assert_trees_all_close(
            member(trained, i).opt_state, alone.opt_state, rtol=RTOL, atol=ATOL
        )
        np.testing.assert_allclose(history["loss"][i], alone_history["loss"], rtol=RTOL)
        logs = trainer.evaluate(alone, x, y, batch_size=BATCH)
        for name, value in logs.items():
            np.testing.assert_allclose(evaluated[name][i], value, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(
            predicted[i], trainer.predict(alone, x, batch_size=BATCH), rtol=RTOL, atol=ATOL
        )
    assert (history["loss"][:, -1] != history["loss"][:, 0]).all()  # the members learn
    if policy == "mixed_float16":
        scale = np.asarray(trained.opt_state.scale)
        assert (scale < 2.0**20).all()  # overflowing steps were skipped and scaled down


# ---------------------------------------------------------------------- class weights


def class_weighted(trainer, states, x, y, class_weight, **kwargs):
    return pop.fit(
        trainer, states, x, y, epochs=2, batch_size=BATCH, class_weight=class_weight, **kwargs
    )


def test_class_weight_shared_and_per_member_equal_trainer_fit():
    trainer = CLASSIFIER
    x, y = toy_data()
    xv, yv = toy_data(10, seed=1)
    states = population(trainer, x)
    table = np.array([[1.0, 1.0], [1.0, 5.0], [0.2, 1.0], [0.0, 3.0]], np.float32)
    per_member, history = class_weighted(trainer, states, x, y, table, validation_data=(xv, yv))
    shared, _ = class_weighted(trainer, states, x, y, {1: 5.0})
    for i in range(MEMBERS):
        own = {0: float(table[i, 0]), 1: float(table[i, 1])}
        alone, alone_history = trainer.fit(
            member(states, i),
            x,
            y,
            epochs=2,
            batch_size=BATCH,
            class_weight=own,
            validation_data=(xv, yv),
            verbose=0,
        )
        chex.assert_trees_all_close(
            member(per_member.params, i), alone.params, rtol=RTOL, atol=ATOL
        )
        # Validation is not weighted, as in Keras.
        np.testing.assert_allclose(history["val_loss"][i], alone_history["val_loss"], rtol=RTOL)
        alone, _ = trainer.fit(
            member(states, i), x, y, epochs=2, batch_size=BATCH, class_weight={1: 5.0}, verbose=0
        )
        chex.assert_trees_all_close(member(shared.params, i), alone.params, rtol=RTOL, atol=ATOL)
    # Teeth: the weights change what member 1 learns.
    unweighted, _ = class_weighted(trainer, states, x, y, None)
    delta = (
        member(unweighted.params, 1)["dense"]["kernel"]
        - member(per_member.params, 1)["dense"]["kernel"]
    )
    assert float(jnp.abs(delta).max()) > 1e-3


def test_per_member_class_weights_are_traced_not_compiled_again():
    trainer = CLASSIFIER
    x, y = toy_data()
    states = population(trainer, x)
    first = np.ones((MEMBERS, 2), np.float32)
    class_weighted(trainer, states, x, y, first)
    programs = fitting._run_jit._cache_size()
    trained, _ = class_weighted(trainer, states, x, y, first * np.array([1.0, 4.0], np.float32))
    class_weighted(trainer, states, x, y, {0: 2.0})  # a dict is a table too
    assert fitting._run_jit._cache_size() == programs
    assert np.isfinite(trained.params["dense"]["kernel"]).all()


def test_class_weight_with_member_data_weighs_each_member_by_its_own_targets():
    trainer = CLASSIFIER
    x, y = toy_data()
    idx = np.stack([np.roll(np.arange(EXAMPLES), 7 * i) for i in range(MEMBERS)])
    states = population(trainer, x)
    table = np.array([[1.0, 2.0], [3.0, 1.0], [1.0, 1.0], [0.5, 0.5]], np.float32)
    trained, _ = class_weighted(trainer, states, x[idx], y[idx], table, member_data=True)
    for i in range(MEMBERS):
        weights = {0: float(table[i, 0]), 1: float(table[i, 1])}
        alone, _ = trainer.fit(
            member(states, i),
            x[idx[i]],
            y[idx[i]],
            epochs=2,
            batch_size=BATCH,
            class_weight=weights,
            verbose=0,
        )
        chex.assert_trees_all_close(member(trained.params, i), alone.params, rtol=RTOL, atol=ATOL)


def test_class_weight_errors_name_the_problem_and_the_fix():
    trainer = CLASSIFIER
    x, y = toy_data()
    states = population(trainer, x)
    with pytest.raises(ValueError, match=r"class_weight has shape \(2,\), but per-member class "):
        class_weighted(trainer, states, x, y, [1.0, 2.0])
    bad = np.ones((MEMBERS, 2), np.float32)
    bad[2, 1] = -1.0
    with pytest.raises(ValueError, match=r"class_weight\[2, 1\] \(member 2, class 1\) is -1\.0"):
        class_weighted(trainer, states, x, y, bad)
    with pytest.raises(ValueError, match="class_weight has the key 3, but the model has 2"):
        class_weighted(trainer, states, x, y, {3: 1.0})
    with pytest.raises(TypeError, match="class_weight must be a dict from class index"):
        class_weighted(trainer, states, x, y, "balanced")
    stream = lambda: iter([(x[:BATCH], y[:BATCH])])
    with pytest.raises(ValueError, match="class_weight needs the whole targets, but x is a"):
        pop.fit(trainer, states, stream, None, class_weight={1: 2.0})


# --------------------------------------------------------- metrics of several values

F1 = F1Score(average=None, threshold=0.5)
MULTICLASS = nn.Trainer(nn.Dense(3, "softmax"), "categorical_crossentropy", "adam", [F1])


def three_classes(n=EXAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    return x, np.eye(3, dtype=np.float32)[np.argmax(x, axis=1)]


def test_each_value_of_a_metric_is_a_log_that_can_be_monitored(tmp_path):
    trainer = MULTICLASS
    x, y = three_classes()
    state = trainer.init(jax.random.key(0), x)
    assert trainer.log_names(validation=True, state=state, x=x, y=y) == [
        "loss",
        "f1_score_0",
        "f1_score_1",
        "f1_score_2",
        "val_loss",
        "val_f1_score_0",
        "val_f1_score_1",
        "val_f1_score_2",
    ]
    stop = nn.EarlyStopping("val_f1_score_1", patience=2, mode="max")
    reduce = nn.ReduceLROnPlateau("f1_score_2", patience=0, min_delta=1.0)  # "auto": max
    assert reduce.mode == "max"
    checkpoint = nn.Checkpointing(str(tmp_path), monitor="val_f1_score_2")
    _, history = trainer.fit(
        state,
        x,
        y,
        epochs=4,
        validation_split=0.2,
        verbose=0,
        callbacks=[reduce, stop],
        checkpoint=checkpoint,
    )
    assert {"f1_score_0", "val_f1_score_1", "learning_rate"} <= set(history)
    assert history["learning_rate"][-1] < history["learning_rate"][0]
    assert (tmp_path / "best.safetensors").exists()
    with pytest.raises(ValueError, match=r"monitor 'f1_score' is not in the logs.*'f1_score_0'"):
        trainer.fit(state, x, y, verbose=0, callbacks=[nn.EarlyStopping("f1_score")])


def test_population_monitors_each_value_of_a_metric():
    trainer = MULTICLASS
    x, y = three_classes()
    states = pop.init(trainer, jax.random.key(0), x, 3)
    stop = lambda: nn.EarlyStopping("f1_score_0", patience=0, min_delta=0.05, mode="max")
    trained, history = pop.fit(
        trainer, states, x, y, epochs=5, batch_size=BATCH, early_stopping=stop()
    )
    assert history["f1_score_1"].shape == (3, 5)
    for i in range(3):
        alone, alone_history = trainer.fit(
            member(states, i), x, y, epochs=5, batch_size=BATCH, verbose=0, callbacks=[stop()]
        )
        ran = len(alone_history["loss"])
        np.testing.assert_allclose(history["f1_score_0"][i, :ran], alone_history["f1_score_0"])
        chex.assert_trees_all_close(member(trained.params, i), alone.params, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match=r"monitor 'f1_score_3' is not in the logs; they are "):
        pop.fit(trainer, states, x, y, reduce_lr=nn.ReduceLROnPlateau("f1_score_3"))
