"""Populations: many networks trained, evaluated and selected in one compiled program.

The reference for every training test is the same network trained alone with
``Trainer.fit`` from the same member state and data: member ``i`` of a population must
end where it would have ended by itself.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn
from jaxnn import population as pop
from jaxnn.data import Data
from jaxnn.layers.dropout import Dropout
from jaxnn.layers.norm import BatchNorm
from jaxnn.population import fitting, infer
from tests.exact import EXACT

# A vmapped matmul or reduction may sum in another order than the unbatched one, and
# the difference (a few float32 ulps per step) is carried through a few dozen Adam
# steps; 1e-5 relative leaves room for that and still catches any real mismatch (a
# wrong shuffle, key, learning rate or mask moves parameters by 1e-3 or more).
RTOL, ATOL = 1e-5, 1e-6

EXAMPLES, FEATURES, BATCH, EPOCHS, MEMBERS = 30, 3, 8, 3, 4  # 30 % 8: a masked partial batch
VALIDATION = 10  # also the size of a k-fold validation fold below (39 examples, k=4)

# Compiling dominates these tests, and a Trainer's programs are compiled per Trainer
# object and per shape. So the tests share one Trainer per model, and their data and
# settings are chosen to line up: a member trained alone compiles once for the whole
# file, and one population program serves several tests.


@pytest.fixture(autouse=True)
def strict_promotion():
    """JAX's strict modes, as in the rest of the suite, scoped to each test."""
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        yield


def classifier(*layers, optimizer="adam"):
    model = nn.Sequential(*(layers or (nn.Dense(8, "relu"),)), nn.Dense(1, "sigmoid"))
    return nn.Trainer(model, "binary_crossentropy", optimizer, ["accuracy"])


CLASSIFIER = classifier()
# No bias before BatchNorm: its gradient is zero up to rounding, which Adam would
# blow up into noise-driven steps that no tolerance can compare.
BATCHNORM_CLASSIFIER = classifier(
    nn.Dense(8, use_bias=False), BatchNorm(momentum=0.9), "relu", Dropout(0.3)
)


def toy_data(n=EXAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = (x.sum(axis=1, keepdims=True) > 0).astype(np.float32)
    return x, y


def member(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def assert_trees_close(actual, expected, rtol=RTOL, atol=ATOL):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    paths = jax.tree_util.tree_leaves_with_path(actual)
    for (path, a), b in zip(paths, jax.tree.leaves(expected), strict=True):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path)
        )


def learning_rates(n=MEMBERS):
    return jnp.logspace(-3, -1, n)


# ---------------------------------------------------------------------------- init


def test_init_member_i_is_trainer_init_with_split_key():
    trainer = CLASSIFIER
    x, _ = toy_data()
    key = jax.random.key(3)
    states = pop.init(trainer, key, x, MEMBERS, hyperparams={"learning_rate": learning_rates()})
    assert pop.num_members(states) == MEMBERS
    for i, k in enumerate(jax.random.split(key, MEMBERS)):
        alone = trainer.init(k, x)
        assert_trees_close(member(states.params, i), alone.params, rtol=0, atol=0)
        assert_trees_close(member(states.key, i), alone.key, rtol=0, atol=0)
    np.testing.assert_allclose(
        states.opt_state.hyperparams["learning_rate"], learning_rates(), rtol=1e-7
    )


def test_init_kernel_scale_multiplies_kernels_only():
    trainer = CLASSIFIER
    x, _ = toy_data()
    scale = jnp.array([0.5, 1.0, 2.0, 3.0])
    plain = pop.init(trainer, jax.random.key(0), x, MEMBERS)
    scaled = pop.init(trainer, jax.random.key(0), x, MEMBERS, kernel_scale=scale)
    kernel = scaled.params["dense"]["kernel"]
    np.testing.assert_allclose(kernel, plain.params["dense"]["kernel"] * scale[:, None, None])
    np.testing.assert_array_equal(scaled.params["dense"]["bias"], plain.params["dense"]["bias"])


# -------------------------------------------------------------------- equivalence


STRATEGIES = [
    pytest.param("vmap", None, id="vmap"),
    pytest.param("map", None, id="map"),
    pytest.param("chunked", 3, id="chunked-3-of-4"),  # 3 does not divide 4: padded
    # chunk_size > n (one chunk, no padding) is the k-fold test's strategy below.
]


@pytest.mark.parametrize(("strategy", "chunk_size"), STRATEGIES)
def test_member_equals_the_same_network_trained_alone(strategy, chunk_size):
    trainer = CLASSIFIER
    x, y = toy_data()
    xv, yv = toy_data(VALIDATION, seed=1)
    states = pop.init(
        trainer, jax.random.key(0), x, MEMBERS, hyperparams={"learning_rate": learning_rates()}
    )
    trained, history = pop.fit(
        trainer,
        states,
        x,
        y,
        epochs=EPOCHS,
        batch_size=BATCH,
        validation_data=(xv, yv),
        strategy=strategy,
        chunk_size=chunk_size,
    )
    assert history["loss"].shape == (MEMBERS, EPOCHS)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "nonfinite_epoch"}
    np.testing.assert_array_equal(history["nonfinite_epoch"], np.full(MEMBERS, -1))
    for i in range(MEMBERS):
        alone, alone_history = trainer.fit(
            member(states, i),
            x,
            y,
            epochs=EPOCHS,
            batch_size=BATCH,
            validation_data=(xv, yv),
            verbose=0,
        )
        assert_trees_close(member(trained, i), alone)
        for name, values in alone_history.items():
            np.testing.assert_allclose(history[name][i], values, rtol=RTOL, atol=ATOL)
    # The members really differ (own init, own learning rate), so the check has teeth.
    finals = history["loss"][:, -1]
    assert len(np.unique(np.round(finals, 4))) == MEMBERS


def test_kfold_member_data_equals_training_each_fold_alone():
    """Per-member data and weights (k-fold), with per-member validation sets."""
    trainer = CLASSIFIER
    # 39 over 4 folds: folds of 10, 10, 10, 9, padded with weight 0; training sets of
    # 29, 29, 29, 30, padded to 30: the shapes of the test above, so that each fold
    # trained alone reuses its compiled program.
    x, y = toy_data(39)
    k = 4
    train_idx, train_w, val_idx, val_w = pop.kfold(39, k, key=jax.random.key(5))
    assert train_idx.shape == (k, EXAMPLES) and val_idx.shape == (k, VALIDATION)
    assert (np.asarray(val_w).sum(axis=1) < VALIDATION).any()  # there is padding
    states = pop.init(trainer, jax.random.key(2), x, k, hyperparams={"learning_rate": 0.05})
    xs, ys = pop.take_members((x, y), train_idx)
    xv, yv = pop.take_members((x, y), val_idx)
    assert xs.shape == (k, train_idx.shape[1], FEATURES)
    trained, history = pop.fit(
        trainer,
        states,
        xs,
        ys,
        sample_weight=train_w,
        validation_data=(xv, yv, val_w),
        member_data=True,
        epochs=EPOCHS,
        batch_size=BATCH,
        strategy="chunked",
        chunk_size=100,  # more than k: one chunk of all 4, no padding
    )
    for i in range(k):
        alone, alone_history = trainer.fit(
            member(states, i),
            xs[i],
            ys[i],
            sample_weight=train_w[i],
            validation_data=(xv[i], yv[i], val_w[i]),
            epochs=EPOCHS,
            batch_size=BATCH,
            verbose=0,
        )
        assert_trees_close(member(trained, i), alone)
        np.testing.assert_allclose(history["val_loss"][i], alone_history["val_loss"], rtol=RTOL)
        # The weight-0 padding counts in no metric: accuracy is over the real fold only.
        real = np.asarray(val_w[i]) > 0
        probs = np.asarray(trainer.predict(member(trained, i), xv[i]))[real]
        expected = np.mean((probs > 0.5) == (np.asarray(yv[i])[real] > 0.5))
        np.testing.assert_allclose(history["val_accuracy"][i, -1], expected, rtol=1e-6)


@pytest.mark.parametrize("strategy", ["vmap", "chunked"])
def test_bootstrap_with_dropout_and_batchnorm_keeps_randomness_and_state_per_member(strategy):
    trainer = BATCHNORM_CLASSIFIER
    x, y = toy_data()
    n = MEMBERS
    idx = pop.bootstrap(jax.random.key(7), n, EXAMPLES)
    xs, ys = pop.take_members((x, y), idx)
    states = pop.init(trainer, jax.random.key(4), x, n, hyperparams={"learning_rate": 0.02})
    trained, history = pop.fit(
        trainer,
        states,
        xs,
        ys,
        member_data=True,
        epochs=EPOCHS,
        batch_size=BATCH,
        strategy=strategy,
        chunk_size=3,
    )
    for i in range(n):
        alone, alone_history = trainer.fit(
            member(states, i), xs[i], ys[i], epochs=EPOCHS, batch_size=BATCH, verbose=0
        )
        # params, BatchNorm running statistics, optimizer state, step and key
        assert_trees_close(member(trained, i), alone)
        np.testing.assert_allclose(history["loss"][i], alone_history["loss"], rtol=RTOL)
    stats = np.asarray(trained.model_state["batch_norm"]["mean"])
    assert not np.allclose(stats[0], stats[1], atol=1e-3)  # statistics stay per member


# ------------------------------------------------------------------ compilation


def test_changing_hyperparameter_values_does_not_recompile():
    trainer = CLASSIFIER
    x, y = toy_data()
    states = pop.init(trainer, jax.random.key(0), x, MEMBERS)
    fit = lambda s: pop.fit(trainer, s, x, y, epochs=1, batch_size=BATCH)
    fit(pop.set_hyperparams(states, learning_rate=jnp.full((4,), 0.01)))
    compiled = fitting._run_jit._cache_size()
    losses = []
    for lrs in ([1e-4, 1e-3, 1e-2, 1e-1], [0.5, 0.2, 0.1, 0.05]):
        trained, history = fit(pop.set_hyperparams(states, learning_rate=jnp.array(lrs)))
        losses.append(history["loss"])
    assert fitting._run_jit._cache_size() == compiled
    assert not np.allclose(losses[0], losses[1])  # the new values were used


def test_fit_returns_a_fit_result_as_trainer_fit_does():
    x, y = toy_data()
    states = pop.init(CLASSIFIER, jax.random.key(0), x, MEMBERS)
    result = pop.fit(CLASSIFIER, states, x, y, epochs=1, batch_size=BATCH)
    trained, history = result
    assert isinstance(result, nn.FitResult) and isinstance(history, nn.History)
    assert result.state is trained and result.history is history
    assert history["loss"].shape == (MEMBERS, 1)


def test_shared_data_is_one_buffer_not_one_per_member():
    """Looks at the compiled program's buffers.

    With shared data, adding members must add only per-member things (params,
    optimizer state, a permutation, one gathered batch), never another copy of the
    data. The data set here (1 MiB) is much bigger than all of those together
    (about 50 KiB per member), so the check separates the two by a wide margin. The
    same program with per-member data is the positive control: its arguments do
    grow by one data set per member.
    """
    trainer = nn.Trainer(nn.Sequential(nn.Dense(8, "relu"), nn.Dense(1)), "mse", "adam")
    examples, features = 4096, 64
    x = jnp.zeros((examples, features))
    y = jnp.zeros((examples, 1))
    w = jnp.ones((examples,))
    data_bytes = x.nbytes + y.nbytes + w.nbytes

    def memory(n, strategy="vmap", chunk_size=None, member_data=False):
        # Only shapes are lowered: the states' shapes, without computing any values.
        states = jax.eval_shape(lambda key: pop.init(trainer, key, x[:1], n), jax.random.key(0))
        data = Data(x, y, w)
        if member_data:
            data = jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), data)
        lowered = fitting._run_jit.lower(
            trainer,
            # the carry as fit builds it by default (on_nonfinite="stop")
            fitting._Carry(
                states, None, None, jnp.full((n,), -1, jnp.int32), jnp.zeros((n,), jnp.int32)
            ),
            data,
            None,
            epochs=1,
            batch_size=128,
            shuffle=True,
            stopping=None,
            member_data=member_data,
            strategy=strategy,
            chunk_size=chunk_size,
            n=n,
        )
        return lowered.compile().memory_analysis()

    small, large = memory(4), memory(36)
    per_member_temp = (large.temp_size_in_bytes - small.temp_size_in_bytes) / 32
    per_member_args = (large.argument_size_in_bytes - small.argument_size_in_bytes) / 32
    assert per_member_temp < data_bytes / 8, (per_member_temp, data_bytes)
    assert per_member_args < data_bytes / 8, (per_member_args, data_bytes)
    assert large.argument_size_in_bytes < 2 * data_bytes

    control = memory(4, member_data=True).argument_size_in_bytes
    assert control > 4 * data_bytes  # the measurement does see per-member copies

    # Chunks bound the working memory: 36 members in chunks of 4 need about as much
    # temporary memory as 4 members vmapped, far less than 36.
    # On a GPU the temporary memory also holds the matrix libraries' workspace (an H200
    # gave 33.8 MB chunked against 35.7 MB whole), so this is checked on the CPU.
    chunked = memory(36, strategy="chunked", chunk_size=4)
    if EXACT:
        assert chunked.temp_size_in_bytes < large.temp_size_in_bytes / 4


# ---------------------------------------------------------------- early stopping


REGRESSION = nn.Trainer(nn.Dense(1), "mse", "sgd")


def diverging_setup():
    """Full-batch SGD on a linear regression: lr 0.1 converges, lr 1.6 diverges.

    With x ~ N(0, 1) the MSE Hessian is about 2I, so plain gradient descent multiplies
    the error by |1 - 2 lr| each step: 0.8 (improves every epoch) or about 2.2
    (worsens every epoch after the first), deterministically: no shuffle, one step.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, FEATURES)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    xv = rng.normal(size=(32, FEATURES)).astype(np.float32)
    yv = xv @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    trainer = REGRESSION
    states = pop.init(
        trainer, jax.random.key(0), x, 3, hyperparams={"learning_rate": jnp.array([0.1, 1.6, 0.05])}
    )
    kwargs = dict(epochs=6, batch_size=64, shuffle=False, validation_data=(xv, yv))
    return trainer, states, x, y, kwargs


def test_a_member_that_goes_non_finite_stops_at_its_last_finite_state():
    """lr 40 multiplies the error by about 79 a step: Inf within ~20 epochs."""
    trainer, states, x, y, kwargs = diverging_setup()
    states = pop.set_hyperparams(states, learning_rate=jnp.array([0.1, 40.0, 0.05]))
    kwargs["epochs"] = 40
    trained, history = pop.fit(trainer, states, x, y, **kwargs)
    bad = history["nonfinite_epoch"]
    assert bad[0] == bad[2] == -1 and 0 < bad[1] < 40, bad
    e = int(bad[1])
    assert np.isfinite(history["loss"][1, :e]).all() and np.isnan(history["loss"][1, e:]).all()
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(trained.params))
    # Member 1 holds exactly its state after its last finite epoch, trained alone...
    alone, _ = trainer.fit(
        member(states, 1), x, y, **{**kwargs, "epochs": e, "validation_data": None}, verbose=0
    )
    assert_trees_close(member(trained, 1), alone)
    # ...and the others are untouched by it.
    unchecked, unchecked_history = pop.fit(trainer, states, x, y, on_nonfinite="ignore", **kwargs)
    assert "nonfinite_epoch" not in unchecked_history
    assert not np.isfinite(np.asarray(unchecked.params["kernel"][1])).all()
    for i in (0, 2):
        assert_trees_close(member(trained, i), member(unchecked, i))
    with pytest.raises(
        ValueError, match="on_nonfinite must be one of 'stop', 'ignore'; got 'raise'"
    ):
        pop.fit(trainer, states, x, y, on_nonfinite="raise", **kwargs)
    with pytest.raises(ValueError, match="on_nonfinite='continue' is now called 'ignore'"):
        pop.fit(trainer, states, x, y, on_nonfinite="continue", **kwargs)


@pytest.mark.parametrize("restore", [False, True], ids=["freeze", "restore-best"])
def test_early_stopping_freezes_only_the_member_that_stopped(restore):
    trainer, states, x, y, kwargs = diverging_setup()
    stop = lambda: nn.EarlyStopping("val_loss", patience=1, restore_best_weights=restore)
    trained, history = pop.fit(trainer, states, x, y, early_stopping=stop(), **kwargs)

    # Member 1 diverges: best at epoch 0, worse at 1 (wait 1) and 2 (wait 2 > 1): stops.
    np.testing.assert_array_equal(history["stopped_epoch"], [-1, 2, -1])
    val = history["val_loss"]
    assert np.isfinite(val[1, :3]).all() and np.isnan(val[1, 3:]).all()
    assert np.isnan(history["loss"][1, 3:]).all()
    assert np.isfinite(val[[0, 2]]).all()  # the others go on to the end
    assert (np.diff(val[[0, 2]], axis=1) < 0).all()

    for i in range(3):
        cb = stop()
        alone, alone_history = trainer.fit(member(states, i), x, y, callbacks=[cb], **kwargs)
        assert_trees_close(member(trained, i), alone)
        ran = len(alone_history["val_loss"])
        np.testing.assert_allclose(val[i, :ran], alone_history["val_loss"], rtol=RTOL)
        assert ran == (3 if i == 1 else 6)

    # The frozen member: exactly the parameters after its last epoch (or its best).
    at_stop, _ = trainer.fit(member(states, 1), x, y, **{**kwargs, "epochs": 1 if restore else 3})
    assert_trees_close(member(trained.params, 1), at_stop.params)


def test_early_stopping_needs_validation_data_for_val_monitor():
    trainer, states, x, y, _ = diverging_setup()
    with pytest.raises(ValueError, match="monitors 'val_loss' but there is no validation data"):
        pop.fit(trainer, states, x, y, early_stopping=nn.EarlyStopping("val_loss"))
    with pytest.raises(TypeError, match=r"early_stopping must be a jaxnn\.EarlyStopping"):
        pop.fit(trainer, states, x, y, early_stopping="val_loss")


# ---------------------------------------------------------------------- helpers


def test_kfold_partitions_every_example_once():
    train_idx, train_w, val_idx, val_w = pop.kfold(23, 4, key=jax.random.key(0))
    assert train_idx.shape == (4, 18) and val_idx.shape == (4, 6)
    np.testing.assert_array_equal(val_w.sum(axis=1), [6, 6, 6, 5])
    np.testing.assert_array_equal(train_w.sum(axis=1), [17, 17, 17, 18])
    seen = np.concatenate([np.asarray(val_idx[i])[np.asarray(val_w[i]) > 0] for i in range(4)])
    np.testing.assert_array_equal(np.sort(seen), np.arange(23))  # each example validates once
    for i in range(4):
        train = set(np.asarray(train_idx[i])[np.asarray(train_w[i]) > 0].tolist())
        val = set(np.asarray(val_idx[i])[np.asarray(val_w[i]) > 0].tolist())
        assert not train & val and train | val == set(range(23))
    unshuffled = pop.kfold(10, 5)[2]
    np.testing.assert_array_equal(unshuffled, np.arange(10).reshape(5, 2))
    with pytest.raises(ValueError, match=r"k must lie in \[2, 10\]"):
        pop.kfold(10, 11)


def test_bootstrap_draws_with_replacement_per_member():
    idx = np.asarray(pop.bootstrap(jax.random.key(0), 8, 50))
    assert idx.shape == (8, 50) and idx.min() >= 0 and idx.max() < 50
    assert len({tuple(row) for row in idx}) == 8  # every member its own resample
    assert all(len(np.unique(row)) < 50 for row in idx)  # with replacement: repeats
    np.testing.assert_array_equal(idx, pop.bootstrap(jax.random.key(0), 8, 50))


def test_take_members_gathers_per_member_copies():
    x = jnp.arange(12.0).reshape(6, 2)
    out = pop.take_members({"x": x}, jnp.array([[0, 5], [2, 2]]))
    np.testing.assert_array_equal(out["x"], [[[0, 1], [10, 11]], [[4, 5], [4, 5]]])


# ------------------------------------------------------- evaluate, predict, select


@pytest.fixture(scope="module")
def trained_population():
    """The population of the vmap equivalence test (the same compiled program)."""
    trainer = CLASSIFIER
    x, y = toy_data()
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        states = pop.init(
            trainer, jax.random.key(0), x, MEMBERS, hyperparams={"learning_rate": learning_rates()}
        )
        states, _ = pop.fit(
            trainer,
            states,
            x,
            y,
            epochs=EPOCHS,
            batch_size=BATCH,
            validation_data=toy_data(VALIDATION, seed=1),
        )
    return trainer, states, x, y


def test_evaluate_and_predict_match_each_member_alone(trained_population):
    trainer, states, x, y = trained_population
    scores = pop.evaluate(trainer, states, x, y, batch_size=7)
    outputs = pop.predict(trainer, states, x, batch_size=7)
    assert scores["loss"].shape == (MEMBERS,) and outputs.shape == (MEMBERS, EXAMPLES, 1)
    for i in range(MEMBERS):
        alone = trainer.evaluate(member(states, i), x, y)
        np.testing.assert_allclose(scores["loss"][i], alone["loss"], rtol=RTOL)
        np.testing.assert_allclose(scores["accuracy"][i], alone["accuracy"], rtol=RTOL)
        np.testing.assert_allclose(
            outputs[i], trainer.predict(member(states, i), x), rtol=RTOL, atol=ATOL
        )
    chunked = pop.evaluate(trainer, states, x, y, strategy="chunked", chunk_size=3)
    np.testing.assert_allclose(chunked["loss"], scores["loss"], rtol=RTOL)

    # Evaluating again, other members and other data of the same shapes: no new program.
    compiled = infer._evaluate_jit._cache_size(), infer._predict_jit._cache_size()
    pop.evaluate(trainer, jax.tree.map(lambda a: a[::-1], states), x[::-1], y, batch_size=7)
    pop.predict(trainer, states, x + 1.0, batch_size=7)
    assert (infer._evaluate_jit._cache_size(), infer._predict_jit._cache_size()) == compiled


def test_select_best_and_top_k_give_ordinary_states(trained_population):
    trainer, states, x, y = trained_population
    scores = pop.evaluate(trainer, states, x, y)["loss"]
    best = pop.select(states, scores)
    assert isinstance(best, nn.TrainState) and best.step.shape == ()
    i = int(np.argmin(scores))
    assert trainer.evaluate(best, x, y)["loss"] == pytest.approx(scores[i], rel=RTOL)
    assert_trees_close(best, member(states, i), rtol=0, atol=0)

    top = pop.select(states, scores, k=3)
    np.testing.assert_allclose(
        pop.evaluate(trainer, top, x, y)["loss"], np.sort(scores)[:3], rtol=RTOL
    )
    accuracy = np.array([0.5, 0.9, np.nan, 0.7])
    top_acc = pop.select(states, accuracy, k=4, mode="max")
    order = [1, 3, 0, 2]  # best first, NaN last
    np.testing.assert_array_equal(
        top_acc.params["dense"]["kernel"], states.params["dense"]["kernel"][np.array(order)]
    )
    # The selected state trains on with Trainer.fit as any other.
    xv, yv = toy_data(VALIDATION, seed=1)
    trained, _ = trainer.fit(
        best, x, y, epochs=EPOCHS, batch_size=BATCH, validation_data=(xv, yv), verbose=0
    )
    assert int(trained.step) == int(best.step) + EPOCHS * 4  # 30 examples, 4 batches

    with pytest.raises(ValueError, match=r"scores have shape \(3,\), expected \(4,\)"):
        pop.select(states, scores[:3])
    with pytest.raises(ValueError, match=r"k must lie in \[1, 4\]"):
        pop.select(states, scores, k=5)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        pop.select(states, scores, mode="best")


def fixed_members(model, biases):
    """Members of ``model`` (one Dense layer) with zero kernels and the given biases."""
    trainer = nn.Trainer(model, "mse", "sgd")
    states = pop.init(trainer, jax.random.key(0), jnp.zeros((1, 2)), len(biases))
    biases = jnp.asarray(biases, jnp.float32)
    params = {"kernel": jnp.zeros_like(states.params["kernel"]), "bias": biases}
    return trainer, states._replace(params=params)


def test_ensemble_predict_regression_mean_and_std():
    trainer, states = fixed_members(nn.Dense(1), [[1.0], [2.0], [6.0]])
    out = pop.ensemble_predict(trainer, states, jnp.ones((4, 2)))
    np.testing.assert_allclose(out["mean"], np.full((4, 1), 3.0), rtol=1e-6)
    np.testing.assert_allclose(out["std"], np.full((4, 1), np.sqrt(14 / 3)), rtol=1e-6)
    with pytest.raises(ValueError, match="kind must be 'regression' or 'classification'"):
        pop.ensemble_predict(trainer, states, jnp.ones((4, 2)), kind="vote")
    for strategy, chunk_size in (("map", None), ("chunked", 2)):
        other = pop.ensemble_predict(
            trainer, states, jnp.ones((4, 2)), strategy=strategy, chunk_size=chunk_size
        )
        np.testing.assert_allclose(other["mean"], out["mean"], rtol=1e-6)
        np.testing.assert_allclose(other["std"], out["std"], rtol=1e-6)


def test_ensemble_predict_classification_vote():
    logit = lambda p: float(np.log(p / (1 - p)))
    trainer, states = fixed_members(
        nn.Dense(1, "sigmoid"), [[logit(0.9)], [logit(0.8)], [logit(0.1)]]
    )
    out = pop.ensemble_predict(trainer, states, jnp.ones((2, 2)), kind="classification")
    np.testing.assert_array_equal(out["vote"], [1, 1])
    np.testing.assert_allclose(out["agreement"], [2 / 3, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(out["probabilities"], np.full((2, 1), 0.6), rtol=1e-5)

    probs = np.log(np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.7, 0.2]]))
    trainer, states = fixed_members(nn.Dense(3, "softmax"), probs)
    out = pop.ensemble_predict(trainer, states, jnp.ones((2, 2)), kind="classification")
    np.testing.assert_array_equal(out["vote"], [1, 1])  # votes: 1, 0, 1
    np.testing.assert_allclose(out["agreement"], [2 / 3, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(out["probabilities"][0], [0.3, 0.5, 0.2], rtol=1e-5)


# -------------------------------------------------------------- flat parameters


def test_ravel_order_is_sorted_names_then_row_major_and_round_trips():
    model = nn.Sequential(nn.Dense(3, "relu"), nn.Dense(2))
    params, _ = model.init(jax.random.key(0), jnp.zeros((1, 4)))
    vector, unravel = pop.ravel(params)
    expected = np.concatenate(
        [
            np.ravel(params[layer][leaf])  # C order
            for layer in ("dense", "dense_1")
            for leaf in ("bias", "kernel")  # sorted: bias before kernel
        ]
    )
    np.testing.assert_array_equal(vector, expected)
    assert_trees_close(unravel(vector), params, rtol=0, atol=0)
    assert_trees_close(unravel(vector + 1.0), jax.tree.map(lambda a: a + 1.0, params))


def test_flat_apply_vmapped_over_a_population_of_vectors():
    trainer = CLASSIFIER
    x, _ = toy_data()
    states = pop.init(trainer, jax.random.key(0), x, MEMBERS)
    vectors = jax.vmap(lambda p: pop.ravel(p)[0])(states.params)
    assert vectors.shape == (MEMBERS, FEATURES * 8 + 8 + 8 * 1 + 1)
    f = pop.flat_apply(trainer, member(states.params, 0))
    outputs = jax.jit(jax.vmap(f, in_axes=(0, None)))(vectors, x)
    for i in range(MEMBERS):
        expected, _ = trainer.model.apply(member(states.params, i), {}, x)
        np.testing.assert_allclose(outputs[i], expected, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ progress, errors


def test_verbose_shows_best_median_worst(capsys):
    trainer = CLASSIFIER
    x, y = toy_data()
    states = pop.init(trainer, jax.random.key(0), x, MEMBERS)
    _, history = pop.fit(trainer, states, x, y, epochs=2, batch_size=BATCH, verbose=2)
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 2
    worst = np.max(history["loss"][:, 1])
    assert f"loss: best {np.min(history['loss'][:, 1]):.4f}" in out
    assert f"worst {worst:.4f}" in out and "accuracy: best" in out


def test_errors_name_the_problem_and_the_fix():
    trainer = CLASSIFIER
    x, y = toy_data()
    states = pop.init(trainer, jax.random.key(0), x, MEMBERS)
    fit = lambda **kw: pop.fit(trainer, states, x, y, batch_size=BATCH, **kw)
    with pytest.raises(ValueError, match="unknown strategy 'pmap'; use one of vmap, map, chunked"):
        fit(strategy="pmap")
    with pytest.raises(ValueError, match="strategy='chunked' needs chunk_size, a positive int"):
        fit(strategy="chunked")
    with pytest.raises(ValueError, match=r"needs chunk_size, a positive int .* got 0"):
        fit(strategy="chunked", chunk_size=0)
    with pytest.raises(ValueError, match=r"needs chunk_size, a positive int .* got True"):
        fit(strategy="chunked", chunk_size=True)
    with pytest.raises(ValueError, match=r"learning_rate has shape \(3,\), expected \(4,\)"):
        pop.set_hyperparams(states, learning_rate=jnp.ones(3))
    with pytest.raises(ValueError, match=r"no traced hyperparameter 'lr'; it has .*learning_rate"):
        pop.set_hyperparams(states, lr=jnp.ones(4))
    with pytest.raises(ValueError, match=r"kernel_scale has shape \(2,\), expected \(4,\)"):
        pop.init(trainer, jax.random.key(0), x, 4, kernel_scale=jnp.ones(2))
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        pop.init(trainer, jax.random.key(0), x, 0)
    plain = nn.Trainer(nn.Dense(1), "mse", optax.sgd(0.1))  # hyperparameters not traced
    with pytest.raises(ValueError, match=r"traces no hyperparameters.*inject_hyperparams"):
        pop.set_hyperparams(pop.init(plain, jax.random.key(0), x, 2), learning_rate=0.1)
    with pytest.raises(ValueError, match=r"member_data=True, x needs shape \(members=4, examples"):
        fit(member_data=True)  # shared-layout data passed as per-member
    xs = jnp.broadcast_to(x, (4, *x.shape))
    ys = jnp.broadcast_to(y, (4, *y.shape))
    with pytest.raises(ValueError, match=r"y needs shape \(members=4, examples"):
        pop.fit(trainer, states, xs, ys[:3], member_data=True)
    with pytest.raises(ValueError, match=r"sample_weight needs shape \(members=4, examples\)"):
        pop.fit(trainer, states, xs, ys, member_data=True, sample_weight=jnp.ones(4))
    with pytest.raises(ValueError, match=r"stacked TrainState whose step has shape \(members,\)"):
        pop.fit(trainer, member(states, 0), x, y)
    with pytest.raises(ValueError, match="verbose must be 0, 1 or 2"):
        fit(verbose=3)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        pop.fit(trainer, states, x, y, batch_size=0)


def test_arguments_are_checked_before_any_trace():
    """Issue 15: every argument that used to pass silently (epochs=1.5 ran 1 epoch,
    None ran 0), or to fail deep in JAX or MLIR, is refused with what came and the fix."""
    trainer = CLASSIFIER
    x, y = toy_data()
    key = jax.random.key(0)
    states = pop.init(trainer, key, x, MEMBERS)
    for epochs in (1.5, "2", None, -1, True):
        with pytest.raises(ValueError, match=r"population.fit: epochs must be a non-negative int"):
            pop.fit(trainer, states, x, y, epochs=epochs)
    with pytest.raises(
        TypeError, match=r"population.init: key must be a jax\.random\.key, got int 0"
    ):
        pop.init(trainer, 0, x, 2)
    with pytest.raises(ValueError, match=r"key must be one random key, got an array of keys"):
        pop.init(trainer, jax.random.split(key, 2), x, 2)
    assert pop.num_members(pop.init(trainer, jax.random.PRNGKey(0), x, 2)) == 2  # a raw key
    for where, call in [
        ("population.init", lambda: pop.init("adam", key, x, 2)),
        ("population.fit", lambda: pop.fit(None, states, x, y)),
        ("population.evaluate", lambda: pop.evaluate(trainer.model, states, x, y)),
        ("population.predict", lambda: pop.predict(42, states, x)),
    ]:
        with pytest.raises(TypeError, match=rf"{where}: trainer must be a jaxnn.Trainer"):
            call()
    with pytest.raises(TypeError, match=r"expected a stacked TrainState .*got dict"):
        pop.fit(trainer, states.params, x, y)
    with pytest.raises(TypeError, match=r"hyperparams must be a dict from name to per-member"):
        pop.init(trainer, key, x, 2, hyperparams=[0.1, 0.2])
    lr = jnp.array([0.1, jnp.nan])
    with pytest.raises(ValueError, match=r"learning_rate has NaN or Inf values \(at members \[1\]"):
        pop.init(trainer, key, x, 2, hyperparams={"learning_rate": lr})
    with pytest.raises(ValueError, match=r"kernel_scale has NaN or Inf values \(at members \[0\]"):
        pop.init(trainer, key, x, 2, kernel_scale=np.nan)
    with pytest.raises(ValueError, match=r"kernel_scale has values too large for float32"):
        pop.init(trainer, key, x, 2, kernel_scale=[1.0, 1e300])  # Inf once stored
    with pytest.raises(ValueError, match=r"kernel_scale must be real numbers.*got dtype <U4"):
        pop.init(trainer, key, x, 2, kernel_scale="half")
    with pytest.raises(ValueError, match=r"population.init: x: expected numeric arrays .*<U1"):
        pop.init(trainer, key, np.array([["a", "b", "c"]]), 2)
    for members in (0, -1, 2.0):
        with pytest.raises(ValueError, match=r"bootstrap: members must be a positive int"):
            pop.bootstrap(key, members, 10)
    with pytest.raises(TypeError, match=r"bootstrap: key must be a jax\.random\.key"):
        pop.bootstrap(3, 4, 10)
    with pytest.raises(ValueError, match=r"kfold: k must be an int >= 2, got 2.5"):
        pop.kfold(10, 2.5)
    with pytest.raises(ValueError, match=r"kfold: examples must be a positive int, got '10'"):
        pop.kfold("10", 2)
    with pytest.raises(TypeError, match=r"kfold: key must be a jax\.random\.key, got int 1"):
        pop.kfold(10, 2, key=1)
    for empty in ([], np.zeros((4, 0), np.int32)):
        with pytest.raises(ValueError, match=r"take_members: the index list idx is empty"):
            pop.take_members(x, empty)


def test_targets_and_strings_are_checked_at_the_door():
    """Labels outside the loss's domain would train on NaN or a negative loss inside
    the compiled program; strings would fail deep in JAX. Both are refused first."""
    trainer = CLASSIFIER
    x, y = toy_data()
    states = pop.init(trainer, jax.random.key(0), x, MEMBERS)
    with pytest.raises(ValueError, match=r"population.fit: binary_crossentropy needs targets"):
        pop.fit(trainer, states, x, y * 2)
    with pytest.raises(ValueError, match=r"population.fit: binary_crossentropy needs targets"):
        pop.fit(trainer, states, x, y, validation_data=(x, -y))
    with pytest.raises(ValueError, match=r"population.evaluate: binary_crossentropy needs"):
        pop.evaluate(trainer, states, x, y + 1)
    text = np.array([["a", "b", "c"]] * EXAMPLES)
    with pytest.raises(ValueError, match=r"population.fit: x is not numeric \(got dtype <U1\)"):
        pop.fit(trainer, states, text, y)
    with pytest.raises(ValueError, match=r"population.predict: x is not numeric"):
        pop.predict(trainer, states, text)
    with pytest.raises(ValueError, match=r"validation_data must be \(x_val, y_val\) or"):
        pop.fit(trainer, states, x, y, validation_data=x)
    stop = nn.EarlyStopping("acuracy")
    with pytest.raises(ValueError, match=r"monitor 'acuracy' is not in the logs.*'accuracy'\?"):
        pop.fit(trainer, states, x, y, early_stopping=stop)


def test_a_batch_larger_than_the_data_is_the_whole_data():
    """batch_size=2**40 on 30 examples used to pad every batch to 2**40 rows (out of
    memory); it is one batch of all 30, the same program as batch_size=30."""
    trainer = CLASSIFIER
    x, y = toy_data()
    states = pop.init(trainer, jax.random.key(0), x, 2)
    huge, h1 = pop.fit(trainer, states, x, y, batch_size=2**40, shuffle=False)
    whole, h2 = pop.fit(trainer, states, x, y, batch_size=EXAMPLES, shuffle=False)
    assert_trees_close(huge.params, whole.params, rtol=0, atol=0)
    np.testing.assert_array_equal(h1["loss"], h2["loss"])


def test_take_members_rejects_indices_out_of_range():
    x = jnp.arange(10.0)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\).*from 0 to 10"):
        pop.take_members(x, jnp.array([[0, 10]]))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\).*from -1 to 3"):
        pop.take_members((x, x), np.array([[-1, 3]]))
    with pytest.raises(ValueError, match="idx must hold integer indices"):
        pop.take_members(x, jnp.array([[0.0, 1.0]]))


def test_evaluate_weights_leave_kfold_padding_out():
    trainer = CLASSIFIER
    x, y = toy_data(39)  # the k-fold data above: folds of 10, 10, 10, 9, padded to 10
    k = 4
    _, _, val_idx, val_w = pop.kfold(39, k, key=jax.random.key(5))
    states = pop.init(trainer, jax.random.key(2), x, k)
    xv, yv = pop.take_members((x, y), val_idx)
    logs = pop.evaluate(trainer, states, xv, yv, sample_weight=val_w, member_data=True)
    for i in range(k):
        real = np.asarray(val_idx[i])[np.asarray(val_w[i]) > 0]
        alone = trainer.evaluate(member(states, i), x[real], y[real])
        np.testing.assert_allclose(logs["loss"][i], alone["loss"], rtol=1e-5)
        np.testing.assert_allclose(logs["accuracy"][i], alone["accuracy"], rtol=1e-6)
    shared = pop.evaluate(trainer, states, x, y, sample_weight=np.ones(39))
    np.testing.assert_allclose(shared["loss"], pop.evaluate(trainer, states, x, y)["loss"])


def test_verbose_and_silent_histories_agree_when_every_member_halts(capsys):
    """The per-epoch loop stops early once every member has stopped, but the history
    it returns has every epoch, as the one-program path's does."""
    trainer, states, x, y, kwargs = diverging_setup()
    states = pop.set_hyperparams(states, learning_rate=jnp.array([40.0, 50.0, 60.0]))
    kwargs.update(epochs=40, early_stopping=nn.EarlyStopping("val_loss", patience=20))
    silent = pop.fit(trainer, states, x, y, **kwargs)[1]
    loud = pop.fit(trainer, states, x, y, verbose=2, **kwargs)[1]
    assert (silent["nonfinite_epoch"] >= 0).all()
    assert set(silent) == set(loud) and loud.epochs == silent.epochs == 40
    for k in silent:
        np.testing.assert_allclose(loud[k], silent[k], rtol=1e-6, err_msg=k)
    # A halted member is out of early stopping: it is not also reported as stopped.
    np.testing.assert_array_equal(silent["stopped_epoch"], [-1, -1, -1])
