"""Width and depth sweeps (jaxnn.population.sweep): each member of a padded population
equals the network built at its own size and trained alone, from the same start."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn
from jaxnn.core import Layer

TOL = dict(rtol=2e-5, atol=2e-6)


def _data(n=40, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = (x[:, :1] + 0.5 * x[:, 1:2] > 0).astype(np.float32)
    return x, y


def _tutorial(width=32):
    return nn.Sequential(nn.Dense(width, "relu", name="hidden"), nn.Dense(1, "sigmoid"))


def _assert_members_equal_alone(sw, states0, x, y, epochs, batch_size, **fit_kwargs):
    """Trains the sweep, then each member alone from its own start, and compares."""
    states, history = nn.population.fit(
        sw.trainer, states0, x, y, epochs=epochs, batch_size=batch_size, **fit_kwargs
    )
    for i in range(sw.n):
        trainer, start = sw.member(states0, i)
        alone, alone_history = trainer.fit(
            start, x, y, epochs=epochs, batch_size=batch_size, verbose=0, **fit_kwargs
        )
        _, got = sw.member(states, i)
        chex.assert_trees_all_close(got.params, alone.params, **TOL)
        chex.assert_trees_all_close(got.model_state, alone.model_state, **TOL)
        chex.assert_trees_all_close(got.opt_state, alone.opt_state, **TOL)
        np.testing.assert_allclose(history["loss"][i], alone_history["loss"], **TOL)
    return states, history


@pytest.fixture(scope="module")
def tutorial_sweep():
    x, y = _data()
    trainer = nn.Trainer(_tutorial(), "binary_crossentropy", "adam", ["accuracy"])
    sw = nn.population.sweep(trainer, x, widths={"hidden": [3, 8, 5, 8]})
    return sw, sw.init(jax.random.key(0)), x, y


def test_members_start_as_their_own_size_networks(tutorial_sweep):
    sw, states, x, _ = tutorial_sweep
    keys = jax.random.split(jax.random.key(0), sw.n)
    for i in range(sw.n):
        trainer, got = sw.member(states, i)
        assert got.params["hidden"]["kernel"].shape == (4, int(sw.sizes["hidden"][i]))
        chex.assert_trees_all_equal(got, trainer.init(keys[i], x))


def test_padded_parts_start_at_zero_and_are_masked(tutorial_sweep):
    sw, states, _, _ = tutorial_sweep
    kernel = np.asarray(states.params["hidden"]["kernel"])  # (members, 4, 8)
    mask = np.asarray(states.opt_state.mask["hidden"]["kernel"])
    for i, width in enumerate(sw.sizes["hidden"]):
        assert (kernel[i, :, width:] == 0).all()
        assert mask[i, :, :width].all() and not mask[i, :, width:].any()
    out = np.asarray(states.params["dense"]["kernel"])  # (members, 8, 1): padded rows
    assert (out[0, 3:] == 0).all() and (out[0, :3] != 0).all()


def test_width_sweep_members_equal_their_own_size_networks(tutorial_sweep):
    sw, states0, x, y = tutorial_sweep
    states, _ = _assert_members_equal_alone(sw, states0, x, y, epochs=3, batch_size=10)
    # The padding stayed zero through training, in the params and Adam's moments.
    kernel = np.asarray(states.params["hidden"]["kernel"])
    assert (kernel[0, :, 3:] == 0).all() and (kernel[2, :, 5:] == 0).all()
    moments = [a for a in jax.tree.leaves(states.opt_state.inner) if a.shape == kernel.shape]
    assert len(moments) == 2 and all((np.asarray(a)[0, :, 3:] == 0).all() for a in moments)


def test_evaluate_and_predict_per_member(tutorial_sweep):
    sw, states, x, y = tutorial_sweep
    logs = nn.population.evaluate(sw.trainer, states, x, y, batch_size=16)
    predictions = nn.population.predict(sw.trainer, states, x, batch_size=16)
    for i in range(sw.n):
        trainer, state = sw.member(states, i)
        alone = trainer.evaluate(state, x, y, batch_size=16)
        np.testing.assert_allclose(logs["loss"][i], alone["loss"], **TOL)
        np.testing.assert_allclose(predictions[i], trainer.predict(state, x), **TOL)


def test_depth_sweep_with_batch_norm_and_clipping():
    x, y = _data(seed=1)
    block = nn.Residual(nn.Sequential(nn.Dense(6, "tanh"), nn.BatchNorm()))
    model = nn.Sequential(
        nn.Dense(6, name="inp"), nn.Repeat(block, 3, name="blocks"), nn.Dense(1, "sigmoid")
    )
    optimizer = nn.optimizers.get("adamw", learning_rate=0.01, weight_decay=0.1, clipnorm=0.5)
    trainer = nn.Trainer(model, "binary_crossentropy", optimizer)
    # The blocks keep their input's width, so they are swept with the input layer.
    sw = nn.population.sweep(
        trainer,
        x,
        widths={"inp": [4, 6, 6], "blocks/residual/sequential/dense": [4, 6, 6]},
        depths={"blocks": [1, 3, 2]},
    )
    states0 = sw.init(jax.random.key(3))
    assert np.asarray(states0.model_state["blocks"]["depth"]).tolist() == [1, 3, 2]
    states, _ = _assert_members_equal_alone(sw, states0, x, y, epochs=2, batch_size=8)
    # A member's copies past its depth never moved.
    unused = states.params["blocks"]["residual"]["sequential"]["dense"]["kernel"][0, 1:]
    assert (np.asarray(unused) == 0).all()


def test_conv_width_sweep():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=(12,))
    model = nn.Sequential(
        nn.Conv2D(8, (3, 3), name="conv"),
        nn.BatchNorm(),
        "relu",
        nn.GlobalAvgPool(),
        nn.Dense(3),
    )
    trainer = nn.Trainer(model, "sparse_categorical_crossentropy", "sgd")
    sw = nn.population.sweep(trainer, x, widths={"conv": [2, 8]})
    _assert_members_equal_alone(sw, sw.init(jax.random.key(1)), x, y, epochs=2, batch_size=6)


def test_hyperparams_and_rerun_need_no_new_compile(tutorial_sweep):
    sw, states, x, y = tutorial_sweep
    states = nn.population.set_hyperparams(states, learning_rate=[0.1, 0.01, 0.001, 0.0001])
    lr = nn.optimizers.hyperparams(states.opt_state)["learning_rate"]
    np.testing.assert_allclose(lr, [0.1, 0.01, 0.001, 0.0001], rtol=1e-6)
    same = nn.population.sweep(sw.base, x, widths={"hidden": [3, 8, 5, 8]})
    assert same.trainer.programs is sw.trainer.programs  # equal sweeps share programs


def test_member_trainer_is_a_plain_trainer(tutorial_sweep):
    sw, states, x, _ = tutorial_sweep
    trainer, state = sw.member(states, 1)
    assert trainer.model == _tutorial(8)
    assert trainer.optimizer is sw.base.optimizer
    with pytest.raises(IndexError, match=r"member 4 outside \[0, 4\)"):
        sw.trainer_of(4)
    assert repr(sw) == "Sweep(n=4, sizes={'hidden': [3, 5, 8]})"


# ------------------------------------------------------------------------- refusals


def _trainer(model):
    return nn.Trainer(model, "mse", "sgd")


X = np.zeros((4, 3), np.float32)


def test_padding_that_changes_the_computation_is_refused():
    model = nn.Sequential(nn.Dense(8, name="hidden"), nn.LayerNorm(), nn.Dense(1))
    with pytest.raises(ValueError, match="changes the computation of a member with sizes"):
        nn.population.sweep(_trainer(model), X, widths={"hidden": [4, 8]})


def test_sweeping_the_output_layer_is_refused():
    with pytest.raises(ValueError, match="a swept layer sets the output's size"):
        model = nn.Sequential(nn.Dense(4), nn.Dense(2, name="out"))
        nn.population.sweep(_trainer(model), X, widths={"out": [1, 2]})


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(), ValueError, "nothing to sweep"),
        (dict(widths={"nope": [1, 2]}), ValueError, r"no layer 'nope': the model \(Sequential\)"),
        (dict(widths={"dropout": [1, 2]}), ValueError, "which has no width to sweep"),
        (dict(depths={"hidden": [1, 2]}), ValueError, "a depth sweep runs"),
        (dict(widths={"hidden": [4, 0]}), ValueError, "list of positive ints"),
        (dict(widths={"hidden": [4.0, 8.0]}), ValueError, "list of positive ints"),
        (
            dict(widths={"hidden": [4, 8], "dense": [1, 1, 1]}),
            ValueError,
            "has 3 values but the sweep has 2 members",
        ),
        (dict(widths=[4, 8]), TypeError, "widths must be a dict"),
    ],
)
def test_bad_sweeps_are_refused(kwargs, error, match):
    model = nn.Sequential(nn.Dense(8, name="hidden"), nn.Dropout(0.1), nn.Dense(1))
    with pytest.raises(error, match=match):
        nn.population.sweep(_trainer(model), X, **kwargs)


def test_a_layer_without_a_config_is_named():
    inner = Layer(
        lambda key, x: nn.Dense(4).init(key, x),
        lambda p, s, x: nn.Dense(4).apply(p, s, x),
        "Wrapped",
    )
    wrapped = nn.Sequential(inner, nn.Dense(1))
    with pytest.raises(ValueError, match="cannot be rebuilt at another size"):
        nn.population.sweep(_trainer(wrapped), X, widths={"wrapped": [2, 4]})


def test_loss_scaling_and_wrong_arguments_are_refused():
    trainer = nn.Trainer(
        nn.Sequential(nn.Dense(4, name="h"), nn.Dense(1)),
        "mse",
        "sgd",
        dtype_policy="mixed_float16",
    )
    with pytest.raises(ValueError, match="scales the loss"):
        nn.population.sweep(trainer, X, widths={"h": [2, 4]})
    with pytest.raises(TypeError, match=r"must be a jaxnn\.Trainer"):
        nn.population.sweep("adam", X, widths={"h": [2, 4]})
    sw = nn.population.sweep(
        _trainer(nn.Sequential(nn.Dense(4, name="h"), nn.Dense(1))), X, widths={"h": [2, 4]}
    )
    with pytest.raises(TypeError, match="got a Sweep; pass its padded trainer"):
        nn.population.fit(sw, sw.init(jax.random.key(0)), X, np.zeros((4, 1), np.float32))


def test_masked_optimizer_keeps_padding_out_of_global_norms():
    inner = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0))
    opt = nn.population.padded.masked(inner)
    params = {"w": jnp.zeros(4)}
    state = opt.init(params)._replace(mask={"w": jnp.array([True, True, False, False])})
    grads = {"w": jnp.array([3.0, 4.0, 100.0, 100.0])}
    updates, _ = opt.update(grads, state, params)
    np.testing.assert_allclose(updates["w"], [-0.6, -0.8, 0.0, 0.0], rtol=1e-6)
