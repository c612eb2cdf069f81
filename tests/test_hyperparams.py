"""Hyperparameters anywhere: schedules, dropout rates and loss weights, traced per member.

The references are independent of the traced code: optax's own
``warmup_cosine_decay_schedule``, a static ``Dropout(rate)``, a loss with constant
weights, and, for populations, the same network built with those values fixed and
trained alone with ``Trainer.fit`` from the member's own initial state.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn
from jaxnn import population as pop
from jaxnn.layers.norm import BatchNorm
from jaxnn.optimizers import warmup_cosine

# A vmapped matmul may sum in another order than the unbatched one: a few float32 ulps
# per step, carried through a few Adam steps (as in tests/test_population.py). A wrong
# rate, schedule or weight moves the parameters by 1e-3 or more.
RTOL, ATOL = 1e-5, 1e-6
EXAMPLES, FEATURES, BATCH, EPOCHS, MEMBERS = 24, 3, 8, 2, 3


@pytest.fixture(autouse=True)
def strict_promotion():
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        yield


def member(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def assert_trees_close(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected), strict=True
    ):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL, err_msg=jax.tree_util.keystr(path)
        )


@contextlib.contextmanager
def counting_compiles():
    """Counts XLA compilations (every jit, eager op or program) inside the block."""
    count = [0]

    def listener(event, duration, **kwargs):
        del duration, kwargs
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32)
    y = {"a": x.sum(axis=1, keepdims=True), "b": x[:, :1] * x[:, 1:2]}
    return x, y


def two_outputs(x):
    return {"a": x[:, :1], "b": x[:, 1:]}


# --------------------------------------------------------------------- schedules

SCHEDULES = [
    # init, peak, warmup, decay, end, exponent
    (0.0, 1e-3, 100, 1000, 0.0, 1.0),
    (1e-5, 3e-3, 7, 50, 1e-4, 2.0),
    (0.5, 1.0, 0, 20, 0.25, 1.0),  # no warmup
]


@pytest.mark.parametrize("init, peak, warmup, decay, end, exponent", SCHEDULES)
def test_warmup_cosine_equals_optax_schedule(init, peak, warmup, decay, end, exponent):
    ours = warmup_cosine(peak, warmup, decay, init_value=init, end_value=end, exponent=exponent)
    theirs = optax.warmup_cosine_decay_schedule(init, peak, warmup, decay, end, exponent)
    steps = jnp.arange(decay + 10)
    got = np.asarray(jax.jit(jax.vmap(ours.value))(steps))
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int steps and floats
        want = np.asarray(jax.jit(jax.vmap(theirs))(steps))
    # optax computes differences of its Python-float parameters in float64, ours of
    # float32 arrays: one float32 rounding of the peak (6e-8 of it) apart.
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=2e-7 * peak)


def test_an_integer_warmup_traced_as_a_float_gives_optax_integer_schedule():
    """The step lengths are float32 in the state; setting them (traced, in one
    compiled function) to other integers follows optax's integer schedules."""
    lr = warmup_cosine(peak_value=2e-3, warmup_steps=10, decay_steps=60)
    state = lr.init()
    assert state.hyperparams["warmup_steps"].dtype == jnp.float32

    @jax.jit
    def values(hyper):
        return jax.vmap(lambda t: lr(state._replace(count=t, hyperparams=hyper)))(jnp.arange(70))

    for warmup, decay in ((10, 60), (37, 41), (1, 2)):
        hyper = {**state.hyperparams, "warmup_steps": jnp.float32(warmup)}
        hyper["decay_steps"] = jnp.float32(decay)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int steps and floats
            fixed = optax.warmup_cosine_decay_schedule(0.0, 2e-3, warmup, decay)
            want = jax.vmap(fixed)(jnp.arange(70))
        np.testing.assert_allclose(values(hyper), want, rtol=1e-6, atol=4e-10)
    assert values._cache_size() == 1


def run_updates(tx, steps=25):
    params = {"w": jnp.linspace(-1.0, 1.0, 5)}
    grads = jax.random.normal(jax.random.key(3), (steps, 5))
    state = tx.init(params)
    update = jax.jit(lambda g, s, p: tx.update({"w": g}, s, p))
    out = []
    for g in grads:
        u, state = update(g, state, params)
        params = optax.apply_updates(params, u)
        out.append(u["w"])
    return np.stack(out), state


def test_traced_schedule_in_a_keras_optimizer_and_in_a_chain_equals_optax():
    traced = warmup_cosine(peak_value=0.1, warmup_steps=5, decay_steps=20, end_value=1e-3)
    fixed = optax.warmup_cosine_decay_schedule(0.0, 0.1, 5, 20, 1e-3)
    got, state = run_updates(nn.optimizers.get("adam", learning_rate=traced))
    with jax.numpy_dtype_promotion("standard"):  # optax's schedule mixes ints and floats
        want, _ = run_updates(nn.optimizers.get("adam", learning_rate=fixed))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
    assert float(nn.optimizers.hyperparams(state)["peak_value"]) == pytest.approx(0.1)

    def chain(lr):
        sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=0.9)
        return optax.chain(optax.clip_by_global_norm(1.0), sgd)

    got, state = run_updates(chain(traced))
    with jax.numpy_dtype_promotion("standard"):
        want, _ = run_updates(chain(fixed))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
    # Found inside the chain, and set there.
    assert sorted(nn.optimizers.hyperparams(state))[:2] == ["decay_steps", "end_value"]
    longer = nn.optimizers.replace_hyperparams(state, {"warmup_steps": 10})
    assert nn.optimizers.hyperparams(longer)["warmup_steps"].dtype == jnp.float32
    assert float(nn.optimizers.hyperparams(longer)["warmup_steps"]) == 10.0


# --------------------------------------------------------------------- dropout


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.7])
def test_traced_dropout_equals_static_dropout_for_the_same_key(rate):
    x = jax.random.normal(jax.random.key(0), (16, 32))
    static, _ = nn.Dropout(rate).apply({}, {}, x, key=jax.random.key(1), training=True)
    layer = nn.Dropout(rate, traced=True)
    params, state = layer.init(jax.random.key(0), x)
    assert params == {} and set(state) == {"rate"}
    traced, same = layer.apply(params, state, x, key=jax.random.key(1), training=True)
    assert same is state
    np.testing.assert_array_equal(np.asarray(traced) == 0, np.asarray(static) == 0)
    # The scale 1/(1 - rate) is computed in float32 here, in float64 then rounded
    # there: at most one float32 rounding apart.
    np.testing.assert_allclose(traced, static, rtol=2e-7)
    assert (layer.apply(params, state, x)[0] == x).all()  # evaluation: the identity


def test_traced_dropout_rates_per_member_under_vmap_equal_static_layers():
    x = jnp.ones((8, 64))
    rates = jnp.array([0.0, 0.25, 0.6])
    layer = nn.Dropout(0.1, traced=True)
    keys = jax.random.split(jax.random.key(2), 3)
    ys, _ = jax.vmap(lambda r, k: layer.apply({}, {"rate": r}, x, key=k, training=True))(
        rates, keys
    )
    for i, rate in enumerate([0.0, 0.25, 0.6]):
        want, _ = nn.Dropout(rate).apply({}, {}, x, key=keys[i], training=True)
        np.testing.assert_allclose(ys[i], want, rtol=2e-7)


# --------------------------------------------------------------------- loss weights


def test_weighted_loss_is_the_weighted_sum_of_its_terms_per_output():
    p = {"a": jnp.array([[1.0], [2.0]]), "b": jnp.array([[0.0], [-3.0]])}
    t = {"a": jnp.array([[0.0], [0.0]]), "b": jnp.array([[1.0], [1.0]])}
    loss = nn.losses.weighted({"a": "mse", "b": "mae"}, {"b": 0.5})
    # a: (1, 4) by mse; b: (1, 4) by mae; weights 1 and 0.5
    assert loss.per_example(p, t).tolist() == [1.5, 6.0]
    assert loss.weights is None  # constant weights: nothing in the model state
    traced = nn.losses.weighted({"a": "mse", "b": "mae"}, {"b": 0.5}, traced=True)
    assert dict(traced.weights) == {"a": 1.0, "b": 0.5}
    w = {"a": jnp.float32(2.0), "b": jnp.float32(0.0)}
    assert traced.per_example(p, t, w).tolist() == [2.0, 8.0]
    # Terms on one output: both see the whole predictions and targets.
    one = nn.losses.weighted({"mse": "mse", "mae": "mae"}, {"mae": 2.0})
    assert one.per_example(p["a"], t["a"]).tolist() == [3.0, 8.0]


def test_trainer_keeps_traced_loss_weights_in_the_model_state_and_evaluates_with_them():
    x, y = data()
    loss = nn.losses.weighted({"a": "mse", "b": "mae"}, {"b": 0.5}, traced=True)
    trainer = nn.Trainer(nn.Sequential(nn.Dense(2), two_outputs), loss, "sgd")
    state = trainer.init(jax.random.key(0), x)
    assert jax.tree.map(float, state.model_state) == {"loss_weights": {"a": 1.0, "b": 0.5}}
    zero_b = state._replace(
        model_state={"loss_weights": {"a": jnp.float32(1.0), "b": jnp.float32(0.0)}}
    )
    y_hat = trainer.predict(state, x)
    mse = float(jnp.mean((y_hat["a"] - y["a"]) ** 2))
    mae = float(jnp.mean(jnp.abs(y_hat["b"] - y["b"])))
    assert trainer.evaluate(state, x, y)["loss"] == pytest.approx(mse + 0.5 * mae, rel=1e-6)
    assert trainer.evaluate(zero_b, x, y)["loss"] == pytest.approx(mse, rel=1e-6)


# --------------------------------------------------------------------- populations


def traced_trainer():
    model = nn.Sequential(
        nn.Dense(8, activation="relu"), nn.Dropout(0.2, traced=True), nn.Dense(2), two_outputs
    )
    loss = nn.losses.weighted({"a": "mse", "b": "mae"}, {"b": 0.5}, traced=True)
    lr = warmup_cosine(peak_value=1e-2, warmup_steps=2, decay_steps=8)
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0), nn.optimizers.get("adam", learning_rate=lr)
    )
    return nn.Trainer(model, loss, optimizer)


def fixed_trainer(rate, weight_b, peak, warmup):
    model = nn.Sequential(
        nn.Dense(8, activation="relu"), nn.Dropout(rate), nn.Dense(2), two_outputs
    )
    loss = nn.losses.weighted({"a": "mse", "b": "mae"}, {"b": weight_b})
    lr = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, 8)
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0), nn.optimizers.get("adam", learning_rate=lr)
    )
    return nn.Trainer(model, loss, optimizer)


def test_members_equal_networks_trained_alone_and_new_values_do_not_recompile():
    x, y = data()
    trainer = traced_trainer()
    values = {
        "rate": [0.0, 0.2, 0.5],
        "loss_weights/b": [0.0, 0.5, 2.0],
        "peak_value": [1e-2, 2e-2, 5e-2],
        "warmup_steps": [1, 2, 3],
    }
    key = jax.random.key(4)
    states = pop.init(trainer, key, x, MEMBERS, hyperparams=values)
    fit = lambda s: pop.fit(trainer, s, x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    trained, history = fit(states)
    keys = jax.random.split(key, MEMBERS)
    for i in range(MEMBERS):
        alone = fixed_trainer(*(values[k][i] for k in values))
        start = alone.init(keys[i], x)
        assert_trees_close(member(states.params, i), start.params)
        with jax.numpy_dtype_promotion("standard"):  # optax's schedule mixes ints and floats
            end, alone_history = alone.fit(start, x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
        assert_trees_close(member(trained.params, i), end.params)
        np.testing.assert_allclose(history["loss"][i], alone_history["loss"], rtol=RTOL)

    other = {k: v[::-1] for k, v in values.items()}
    with counting_compiles() as compiles:
        again, other_history = fit(pop.set_hyperparams(states, **other))
    assert compiles[0] == 0
    assert not np.allclose(history["loss"], other_history["loss"])  # the values were used
    found = nn.optimizers.hyperparams(again.opt_state)
    np.testing.assert_allclose(found["warmup_steps"], [3.0, 2.0, 1.0])
    np.testing.assert_allclose(again.model_state["dropout"]["rate"], [0.5, 0.2, 0.0])


# --------------------------------------------------------------------- errors


def test_set_hyperparams_errors_name_what_exists():
    x, _ = data()
    states = pop.init(traced_trainer(), jax.random.key(0), x, MEMBERS)
    with pytest.raises(
        ValueError,
        match=r"no traced hyperparameter 'rat'; it has \[.*'peak_value'.*\].*model state an "
        r"entry of that name or path \(its per-member scalars: \['dropout/rate', "
        r"'loss_weights/a', 'loss_weights/b'\]\)",
    ):
        pop.set_hyperparams(states, rat=0.1)
    with pytest.raises(ValueError, match=r"rate has shape \(2,\), expected \(3,\): one value per"):
        pop.set_hyperparams(states, rate=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"'learning_rate' is computed by a schedule at every "):
        pop.set_hyperparams(states, learning_rate=0.1)
    bn = nn.Trainer(nn.Sequential(nn.Dense(4), BatchNorm()), "mse", "sgd")
    bn_states = pop.init(bn, jax.random.key(0), x, MEMBERS)
    with pytest.raises(
        ValueError, match=r"model-state entry 'batch_norm/mean' has shape \(3, 4\), not one"
    ):
        pop.set_hyperparams(bn_states, mean=0.0)


def test_schedule_and_loss_and_dropout_errors():
    with pytest.raises(ValueError, match=r"decay_steps counts from step 0.*decay_steps=150"):
        warmup_cosine(peak_value=1e-3, warmup_steps=100, decay_steps=50)
    with pytest.raises(ValueError, match=r"warmup_steps must be >= 0, got -1"):
        warmup_cosine(peak_value=1e-3, warmup_steps=-1, decay_steps=50)
    with pytest.raises(ValueError, match=r"peak_value must be finite, got nan"):
        warmup_cosine(peak_value=float("nan"), warmup_steps=1, decay_steps=5)
    with pytest.raises(ValueError, match=r"has no hyperparameter 'peak'; its hyperparameters"):
        warmup_cosine(1e-3, 1, 5).value(0, peak=1.0)
    with pytest.raises(ValueError, match=r"weights has entries \['c'\] that are no term"):
        nn.losses.weighted({"a": "mse"}, {"c": 1.0})
    with pytest.raises(ValueError, match=r"the weight of 'a' must be a finite number"):
        nn.losses.weighted({"a": "mse"}, {"a": float("inf")})
    loss = nn.losses.weighted({"a": "mse"})
    with pytest.raises(ValueError, match=r"targets must be a dict with an entry 'a' too"):
        loss.per_example({"a": jnp.ones((2, 1))}, jnp.ones((2, 1)))
    traced = nn.losses.weighted({"a": "mse"}, traced=True)
    clash = nn.Sequential(nn.Dense(1), BatchNorm().named("loss_weights"))
    with pytest.raises(ValueError, match=r"already has an entry 'loss_weights'.*Rename"):
        nn.Trainer(clash, traced, "sgd").init(jax.random.key(0), jnp.ones((2, 3)))
    layer = nn.Dropout(0.5, traced=True)
    with pytest.raises(ValueError, match=r"Dropout: state .*'rate'"):
        layer.apply({}, {}, jnp.ones((2, 2)), key=jax.random.key(0), training=True)
    with pytest.raises(ValueError, match=r"Dropout.*key"):
        layer.apply({}, {"rate": jnp.float32(0.5)}, jnp.ones((2, 2)), training=True)
