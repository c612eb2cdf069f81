"""Keras parity: optimizers, weighted losses and the tutorial's training against Keras 3.

The reference values come from Keras 3 itself, recorded once into
``tests/data/keras_reference.npz`` by ``tests/data/make_keras_reference.py`` (so these
tests need no Keras). Also here: the optimizers' traced hyperparameters (populations
sweep any of them, inside chains too) and their argument checks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn
from jaxnn import optimizers
from jaxnn import population as pop

DATA = Path(__file__).parent / "data"


def _maker():
    """The generator script, for its list of configs (it imports Keras only in main)."""
    spec = importlib.util.spec_from_file_location(
        "make_keras_reference", DATA / "make_keras_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKER = _maker()
REF = dict(np.load(DATA / "keras_reference.npz"))
CASES = [(name, config) for name in MAKER.KERAS_CLASSES for config in MAKER.configs(name)]


def test_the_reference_covers_every_keras_name_config_and_scale():
    assert set(MAKER.KERAS_CLASSES) == set(optimizers.KERAS_DEFAULTS)
    for name, config in CASES:
        for scale in MAKER.SCALES:
            assert REF[f"opt/{name}/{config}/{scale}/updates"].shape == (MAKER.STEPS, 8)
    assert str(REF["keras_version"]).startswith("3.")


# ------------------------------------------------------------- optimizer updates


@pytest.mark.parametrize(("name", "config"), CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_updates_match_keras_step_by_step(name, config):
    """20 steps on gradients of size ~1e-6, ~1 and ~1e3, each within 1e-6 relative.

    Run in float64, as the reference was recorded: the test checks the rule, not
    float32 rounding (FTRL and weight decay make a new param value, so in float32 an
    update is only as precise as the param it changes). The three scales run as one
    vmapped scan.
    """
    kwargs = MAKER.configs(name)[config]
    keras_updates = np.stack([REF[f"opt/{name}/{config}/{s}/updates"] for s in MAKER.SCALES])
    with jax.enable_x64(True):
        params = {
            "kernel": jnp.asarray(REF["params0/kernel"]),
            "bias": jnp.asarray(REF["params0/bias"]),
        }
        grads = {
            part: jnp.stack([jnp.asarray(REF[f"grads/{s}/{part}"]) for s in MAKER.SCALES])
            for part in ("kernel", "bias")
        }
        tx = optimizers.get(name, **kwargs)

        def run(grads_of_scale):
            def step(carry, g):
                p, s = carry
                u, s = tx.update(g, s, p)
                new = optax.apply_updates(p, u)
                change = jnp.concatenate(
                    [jnp.ravel(new["kernel"] - p["kernel"]), new["bias"] - p["bias"]]
                )
                return (new, s), change

            return jax.lax.scan(step, (params, tx.init(params)), grads_of_scale)[1]

        with jax.numpy_dtype_promotion("standard"):
            ours = np.asarray(jax.jit(jax.vmap(run))(grads))
    assert ours.dtype == np.float64
    # 1e-6 relative to each value; a value that is exactly 0 in Keras (no update on an
    # accumulation step) must be exactly 0 here.
    np.testing.assert_allclose(ours, keras_updates, rtol=1e-6, atol=0)


def test_adam_is_keras_rule_not_optax_rule():
    """With gradients of ~1e-6, where ε goes decides the size of the first update."""
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.full(3, 1e-6)}
    tx = optimizers.get("adam")
    keras_u = tx.update(grads, tx.init(params), params)[0]["w"]
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 and float
        reference = optax.adam(1e-3, eps=1e-7)
        optax_u = reference.update(grads, reference.init(params))[0]["w"]
    # At step 1, Keras's lr·√(1-β₂)/(1-β₁)·m/(√v+ε) is lr·g/(g + ε/√(1-β₂)) and
    # optax's lr·m̂/(√v̂+ε) is lr·g/(g + ε): 3.8x larger here.
    np.testing.assert_allclose(
        -keras_u, 1e-3 * 1e-6 / (1e-6 + 1e-7 / np.sqrt(1 - 0.999)), rtol=1e-5
    )
    np.testing.assert_allclose(-optax_u, 1e-3 * 1e-6 / (1e-6 + 1e-7), rtol=1e-5)


def test_keras_defaults():
    defaults = {name: d for name, (_, d) in optimizers.KERAS_DEFAULTS.items()}
    assert defaults["lion"]["learning_rate"] == 1e-3
    assert defaults["sgd"]["learning_rate"] == 1e-2
    assert defaults["adamw"]["weight_decay"] == 0.004
    assert defaults["adadelta"]["rho"] == 0.95
    assert all(d["epsilon"] == 1e-7 for d in defaults.values() if "epsilon" in d)
    state = optimizers.get("lion").init({"w": jnp.zeros(2)})
    np.testing.assert_allclose(state.hyperparams["learning_rate"], 1e-3)


# ---------------------------------------------------------------- traced hyperparams


@pytest.mark.parametrize(
    ("name", "kwargs", "swept"),
    [
        ("adam", {"clipnorm": 1.0}, {"learning_rate": [0.1, 0.01], "clipnorm": [0.5, 2.0]}),
        ("sgd", {"weight_decay": 0.1}, {"momentum": [0.0, 0.9], "weight_decay": [0.0, 0.3]}),
        ("nadam", {"gradient_accumulation_steps": 2}, {"beta_1": [0.8, 0.95]}),
        ("ftrl", {"global_clipnorm": 0.5}, {"l1_regularization_strength": [0.0, 0.01]}),
    ],
)
def test_population_members_sweep_any_argument_as_if_built_alone(name, kwargs, swept):
    """Each member of a population with per-member values trains exactly as a Trainer
    whose optimizer was built with that member's values."""
    model = nn.Dense(2)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(12, 3)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(1).normal(size=(12, 2)), jnp.float32)
    trainer = nn.Trainer(model, "mse", optimizers.get(name, **kwargs))
    states = pop.init(trainer, jax.random.key(0), x, 2, hyperparams=swept)
    trained, _ = pop.fit(trainer, states, x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    for i in range(2):
        alone = nn.Trainer(
            model, "mse", optimizers.get(name, **{**kwargs, **{k: v[i] for k, v in swept.items()}})
        )
        state = jax.tree.map(lambda a, i=i: a[i], states)
        state, _ = alone.fit(state, x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, i=i: a[i], trained.params), state.params, rtol=1e-5, atol=1e-7
        )


def test_set_hyperparams_reaches_inside_chains_and_wrappers():
    """The issue's case: clipping chained by hand before a named optimizer."""
    chained = optax.chain(optax.clip_by_global_norm(1.0), optimizers.get("adam"))
    wrapped = optax.MultiSteps(chained, every_k_schedule=2).gradient_transformation()
    for tx in (chained, wrapped):
        trainer = nn.Trainer(nn.Dense(1), "mse", tx)
        states = pop.init(
            trainer,
            jax.random.key(0),
            jnp.zeros((1, 3)),
            3,
            hyperparams={"learning_rate": [0.1, 0.2, 0.3]},
        )
        np.testing.assert_allclose(
            optimizers.hyperparams(states.opt_state)["learning_rate"], [0.1, 0.2, 0.3], rtol=1e-7
        )
    with pytest.raises(
        ValueError,
        match=r"no traced hyperparameter 'clipnorm'; it has \[.*'learning_rate'.*\]\. "
        r"Pass it to jaxnn\.optimizers\.get \(e\.g\. clipnorm=1\.0\)",
    ):
        pop.set_hyperparams(states, clipnorm=1.0)


def test_changing_a_hyperparameter_never_recompiles():
    trainer = nn.Trainer(nn.Dense(1), "mse", optimizers.get("lamb", clipvalue=1.0))
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 1))
    state = trainer.init(jax.random.key(0), x)
    state, _ = trainer.train_step(state, x, y)
    compiled = trainer._step._cache_size()  # equal Trainers share it: count what is added
    state = state._replace(
        opt_state=optimizers.replace_hyperparams(state.opt_state, {"clipvalue": 0.1, "beta_1": 0.5})
    )
    state, _ = trainer.train_step(state, x, y)
    assert trainer._step._cache_size() == compiled
    assert float(state.opt_state.hyperparams["clipvalue"]) == pytest.approx(0.1)


def test_an_optax_transformation_is_used_as_it_is():
    tx = optax.adam(1e-3)
    assert optimizers.get(tx) is tx
    with pytest.raises(ValueError, match=r"were given with an optax transformation"):
        optimizers.get(tx, learning_rate=0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"clipnorm": 1.0, "clipvalue": 0.5},
            r"^optimizer 'adam': only one of clipnorm, clipvalue and global_clipnorm can be set, "
            r"as in Keras; got clipnorm=1\.0, clipvalue=0\.5\. Keep one\.$",
        ),
        (
            {"gradient_accumulation_steps": 1},
            r"^optimizer 'adam': gradient_accumulation_steps must be an int >= 2 "
            r"\(or None for none\), got 1\.$",
        ),
        (
            {"clipnorm": 0.0},
            r"^optimizer 'adam': clipnorm must be > 0, got 0\.0; pass None for no clipping\.$",
        ),
        (
            {"learning_rate": float("nan")},
            r"^optimizer 'adam': learning_rate must be a finite scalar, got nan\.$",
        ),
        ({"amsgrad": 1}, r"^optimizer 'adam': amsgrad must be True or False, got 1\.$"),
        ({"beta_1": "0.9"}, r"^optimizer 'adam': beta_1 must be a number, got str \('0\.9'\)\.$"),
    ],
)
def test_bad_arguments_are_refused_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.get("adam", **kwargs)


def test_adamw_needs_a_weight_decay_and_ints_are_traced_as_floats():
    with pytest.raises(
        ValueError, match=r"^optimizer 'adamw': weight_decay must be a number .*use 'adam'"
    ):
        optimizers.get("adamw", weight_decay=None)
    state = optimizers.get("sgd", learning_rate=1).init({"w": jnp.zeros(1)})
    assert state.hyperparams["learning_rate"].dtype == jnp.float32


def test_the_rules_need_the_params():
    tx = optimizers.rules.ftrl()
    params = {"w": jnp.zeros(1)}
    with pytest.raises(ValueError, match=r"^optimizer 'ftrl': update needs the params"):
        tx.update({"w": jnp.ones(1)}, tx.init(params))


# ------------------------------------------------------------------ weighted losses

LOSS_NAMES = sorted({k.split("/")[1] for k in REF if k.startswith("loss/")})


def test_weighted_losses_follow_keras_in_the_trainer():
    """``Trainer.evaluate`` with sample weights, in batches of 4 of 10 (a short last
    batch), gives Keras's ``sum(w·loss)/n``: the loss object's value and Keras's
    ``evaluate`` in the same batches, within float32 rounding."""
    assert len(LOSS_NAMES) == 6
    for name in LOSS_NAMES:
        y_true, y_pred, w = (REF[f"loss/{name}/{k}"] for k in ("y_true", "y_pred", "sample_weight"))
        trainer = nn.Trainer(lambda x: x, name, "sgd")
        state = trainer.init(jax.random.key(0), y_pred)
        ours = trainer.evaluate(state, y_pred, y_true, sample_weight=w, batch_size=4)["loss"]
        for k in ("call", "evaluate"):
            assert float(ours) == pytest.approx(float(REF[f"loss/{name}/{k}"]), rel=1e-6), (name, k)
        unweighted_mean = np.sum(
            np.asarray(nn.losses.get(name).per_example(y_pred, y_true)) * w
        ) / np.sum(w)
        assert float(ours) != pytest.approx(unweighted_mean, rel=1e-3)


def test_padding_and_weight_zero_never_enter_the_loss_denominator(key):
    """A short last batch is masked and ``population.kfold``'s padding has weight 0:
    neither counts as an example. Weights 2 and 1 give Keras's sum(w·l)/n."""
    x = jnp.asarray([[1.0], [2.0], [3.0]])
    y = jnp.zeros((3, 1))
    trainer = nn.Trainer(lambda v: v, "mse", "sgd")
    state = trainer.init(key, x)
    loss = trainer.evaluate(state, x, y, sample_weight=jnp.asarray([2.0, 1.0, 0.0]), batch_size=2)[
        "loss"
    ]
    assert float(loss) == pytest.approx((2 * 1 + 1 * 4) / 2)


# ---------------------------------------------------------------- the tutorial, epoch by epoch


@pytest.mark.parametrize("case", ["tutorial", "weighted"])
def test_training_matches_keras_fit_epoch_by_epoch(case):
    """The tutorial network from Keras's initial weights, without shuffling: every
    epoch's loss within 1e-6 of Keras's, and the final weights within float32
    rounding of 20 epochs. ``tutorial``: Adam, batch 10; ``weighted``: SGD with
    sample weights in batches of 32 of 100 (a short last batch)."""
    prefix = f"fit/{case}/"
    x, y = REF[prefix + "x"], REF[prefix + "y"]
    weight = REF.get(prefix + "sample_weight")
    optimizer, batch_size = ("adam", 10) if case == "tutorial" else ("sgd", 32)
    model = nn.Sequential(nn.Dense(32, "relu"), nn.Dense(1, "sigmoid"))
    trainer = nn.Trainer(model, "binary_crossentropy", optimizer)
    state = trainer.init(jax.random.key(0), x)
    initial = [REF[f"{prefix}initial/{i}"] for i in range(4)]
    params = {
        "dense": {"kernel": initial[0], "bias": initial[1]},
        "dense_1": {"kernel": initial[2], "bias": initial[3]},
    }
    chex.assert_trees_all_equal_shapes(params, state.params)
    state = state._replace(params=jax.tree.map(jnp.asarray, params))
    state, history = trainer.fit(
        state,
        x,
        y,
        sample_weight=weight,
        epochs=20,
        batch_size=batch_size,
        shuffle=False,
        verbose=0,
    )
    np.testing.assert_allclose(history.history["loss"], REF[prefix + "loss"], rtol=0, atol=1e-6)
    final = [REF[f"{prefix}final/{i}"] for i in range(4)]
    ours = [
        state.params["dense"]["kernel"],
        state.params["dense"]["bias"],
        state.params["dense_1"]["kernel"],
        state.params["dense_1"]["bias"],
    ]
    for a, b in zip(ours, final, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
