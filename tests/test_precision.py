"""Mixed precision: dtype policies, the dynamic loss scale, and Trainer(dtype_policy=...)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn
from jaxnn import precision
from jaxnn.train import NonFiniteError
from jaxnn.train.programs import programs

F32, BF16, F16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)


def regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, x.sum(axis=1, keepdims=True)


def dtypes(tree):
    return {str(leaf.dtype) for leaf in jax.tree.leaves(tree)}


# ------------------------------------------------------------------------ policies


@pytest.mark.parametrize(
    "name, param, compute, scaled",
    [
        ("float32", F32, F32, False),
        ("mixed_bfloat16", F32, BF16, False),
        ("mixed_float16", F32, F16, True),
        ("bfloat16", BF16, BF16, False),
    ],
)
def test_named_policies(name, param, compute, scaled):
    policy = precision.get(name)
    assert (policy.param_dtype, policy.compute_dtype, policy.output_dtype) == (param, compute, F32)
    assert policy.loss_scaling is scaled
    assert precision.get(policy) is policy and precision.get(None) is None


def test_unknown_policy_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"Trainer: unknown dtype policy 'mixed_bf16'.*Did you"):
        nn.Trainer(nn.Dense(1), "mse", "sgd", dtype_policy="mixed_bf16")
    with pytest.raises(
        TypeError, match=r"Trainer: dtype_policy must be a name .* got .*float16.*Policy of three"
    ):
        nn.Trainer(nn.Dense(1), "mse", "sgd", dtype_policy=jnp.float16)


def test_casts_touch_only_floating_leaves():
    policy = precision.get("mixed_bfloat16")
    tree = {"x": jnp.ones(2), "ids": jnp.arange(2), "mask": jnp.ones(2, bool)}
    out = policy.cast_to_compute(tree)
    assert (out["x"].dtype, out["ids"].dtype, out["mask"].dtype) == (BF16, jnp.int32, jnp.bool_)
    assert policy.cast_to_output(out)["x"].dtype == F32


def test_dense_computes_in_bfloat16_and_its_params_stay_float32(key):
    seen = []

    def spy(h):  # a plain function in the model: records the dtype it is traced with
        seen.append(h.dtype)
        return h

    trainer = nn.Trainer(
        nn.Sequential(nn.Dense(1, name="dense"), spy), "mse", "sgd", dtype_policy="mixed_bfloat16"
    )
    x, y = regression()
    state = trainer.init(key, x)
    assert dtypes(state.params) == {"float32"}
    seen.clear()  # init and fit's checks at the door trace the model as it is
    # Every matrix product of the step (forward and backward) multiplies bfloat16s.
    jaxpr = jax.make_jaxpr(trainer.programs.step)(
        state, x[:8], y[:8], jnp.ones(8), jnp.ones(8), key
    )
    products = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name == "dot_general"]
    assert products and all(v.aval.dtype == BF16 for e in products for v in e.invars)
    assert set(seen) == {BF16}
    new, _ = trainer.train_step(state, x[:8], y[:8])
    assert dtypes(new.params) == {"float32"}  # float32 gradients, float32 update
    assert not np.array_equal(new.params["dense"]["kernel"], state.params["dense"]["kernel"])
    assert trainer.predict(new, x).dtype == F32  # outputs in float32


def _equations(jaxpr):
    """Every equation of ``jaxpr``, inside sub-jaxprs (scan, cond, custom rules) too."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    yield from _equations(getattr(inner, "jaxpr", inner))


def test_float32_policy_is_bit_identical_to_no_policy(key):
    x, y = regression()
    states = []
    for policy in (None, "float32"):
        model = nn.Sequential(nn.Dense(8, "relu"), nn.Dense(1))
        trainer = nn.Trainer(model, "mse", "adam", dtype_policy=policy)
        state, _ = trainer.fit(trainer.init(key, x), x, y, epochs=2, batch_size=16, verbose=0)
        states.append(state)
    chex.assert_trees_all_equal(states[0].params, states[1].params)


def test_policies_do_not_share_compiled_programs():
    model = nn.Dense(1)
    plain = nn.Trainer(model, "mse", "sgd")
    mixed = nn.Trainer(model, "mse", "sgd", dtype_policy="mixed_bfloat16")
    assert mixed.programs is not plain.programs
    assert nn.Trainer(model, "mse", "sgd", dtype_policy="mixed_bfloat16").programs is mixed.programs


# ------------------------------------------------- float32 islands inside the layers


def test_batchnorm_statistics_stay_float32_under_mixed_bfloat16(key):
    x, y = regression()
    model = nn.Sequential(nn.Dense(8), nn.BatchNorm(), nn.Dense(1))
    trainer = nn.Trainer(model, "mse", "adam", dtype_policy="mixed_bfloat16")
    state, history = trainer.fit(trainer.init(key, x), x, y, epochs=2, batch_size=16, verbose=0)
    assert dtypes(state.model_state) == {"float32"}
    # The running mean follows the float32 batch statistics: after 8 steps of
    # momentum 0.99 from 0 it is 1 - 0.99**8 of their mean, to bfloat16 rounding of
    # the Dense output (8 bits, relative 2**-8) and the params' drift over 8 steps.
    h = jnp.asarray(x) @ state.params["dense"]["kernel"] + state.params["dense"]["bias"][None]
    expected = (1 - 0.99**8) * np.asarray(h).mean(axis=0)
    np.testing.assert_allclose(state.model_state["batch_norm"]["mean"], expected, atol=0.02)
    assert np.isfinite(history["loss"]).all()


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_activations_compute_in_float32(name):
    logits = jnp.linspace(-10.0, 10.0, 33, dtype=jnp.float32).astype(jnp.bfloat16)[None]
    fn = nn.activations.get(name)
    out = fn(logits)
    assert out.dtype == BF16
    exps = [e for e in _equations(jax.make_jaxpr(fn)(logits).jaxpr) if e.primitive.name == "exp"]
    assert exps and all(e.outvars[0].aval.dtype == F32 for e in exps)
    # Against float64 on the same bfloat16 inputs: only the final rounding to
    # bfloat16 is left (relative 2**-8; in bfloat16 throughout, about 4% here).
    z = np.asarray(logits, np.float64)
    log_p = z - z.max() - np.log(np.exp(z - z.max()).sum())
    want = np.exp(log_p) if name == "softmax" else log_p
    np.testing.assert_allclose(np.asarray(out, np.float64), want, rtol=2**-8, atol=1e-30)


def test_attention_softmax_is_float32_under_mixed_bfloat16(key):
    layer = nn.MultiHeadAttention(num_heads=2, key_size=4)
    x = jax.random.normal(key, (2, 5, 8))
    params, state = layer.init(key, x)
    policy = precision.get("mixed_bfloat16")

    def run(p, a):
        return layer.apply(policy.cast_to_compute(p), state, policy.cast_to_compute(a))[0]

    jaxpr = jax.make_jaxpr(run)(params, x)
    exps = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name == "exp"]
    assert exps and all(e.outvars[0].aval.dtype == F32 for e in exps)
    assert run(params, x).dtype == BF16


# --------------------------------------------------------------- the loss scale


def test_loss_scale_grows_after_growth_steps_and_halves_on_overflow():
    tx = precision.dynamic_loss_scale(optax.sgd(1.0), initial_scale=4.0, growth_steps=3)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    good, bad = {"w": jnp.full(2, 0.5)}, {"w": jnp.array([0.5, jnp.nan])}
    scales, steps = [], []
    for grads in [good, good, good, good, bad, good, bad, bad, bad, bad]:
        updates, state = tx.update(grads, state, params)
        scales.append(float(state.scale))
        steps.append(int(state.good_steps))
        if grads is bad:  # skipped: no update at all
            chex.assert_trees_all_equal(updates, {"w": jnp.zeros(2)})
        else:
            chex.assert_trees_all_close(updates, {"w": jnp.full(2, -0.5)})
    # Doubles on the 3rd finite step in a row; an overflow halves it and resets the
    # count; it never falls below precision.MIN_SCALE (1).
    assert scales == [4.0, 4.0, 8.0, 8.0, 4.0, 4.0, 2.0, 1.0, 1.0, 1.0]
    assert steps == [1, 2, 0, 1, 0, 1, 0, 0, 0, 0]


def test_loss_scale_keeps_the_inner_state_on_a_skipped_step():
    tx = precision.dynamic_loss_scale(optax.adam(0.1), initial_scale=8.0)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.ones(3)}, state, params)
    _, skipped = tx.update({"w": jnp.full(3, jnp.inf)}, state, params)
    chex.assert_trees_all_equal(skipped.inner, state.inner)  # Adam's moments, its count
    assert float(skipped.scale) == 4.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"initial_scale": 0.5}, r"initial_scale must be a number >= 1.0, got 0.5"),
        ({"growth_steps": 0}, r"growth_steps must be a positive int, got 0"),
        ({"factor": 1}, r"factor must be a number above 1, got 1"),
    ],
)
def test_loss_scale_settings_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        precision.dynamic_loss_scale(optax.sgd(0.1), **kwargs)


def test_programs_without_a_loss_scale_state_say_how_to_wrap(key):
    policy = precision.get("mixed_float16")
    p = programs(nn.Dense(1), nn.losses.get("mse"), optax.sgd(0.1), (), policy=policy)
    state = p.init(key, jax.ShapeDtypeStruct((1, 3), "float32"))
    x, y = regression(8)
    with pytest.raises(
        TypeError, match=r"Wrap the optimizer with nn\.precision\.dynamic_loss_scale"
    ):
        p.step(state, x, y, jnp.ones(8), jnp.ones(8), key)


def overflowing_trainer(initial_scale, loss="mse"):
    """float16 compute and a loss scale so large that the first gradients overflow
    float16 (its largest value is 65504): about 2**40 * (loss gradient ~1)."""
    optimizer = precision.dynamic_loss_scale(optax.adam(1e-2), initial_scale=initial_scale)
    model = nn.Sequential(nn.Dense(8, "relu"), nn.Dense(1))
    return nn.Trainer(model, loss, optimizer, dtype_policy="mixed_float16")


def test_a_float16_overflow_step_is_skipped_and_training_continues(key):
    x, y = regression()
    trainer = overflowing_trainer(2.0**40)
    state = trainer.init(key, x)
    assert isinstance(state.opt_state, precision.LossScaleState)
    assert dtypes(state.params) == {"float32"}
    new, logs = trainer.train_step(state, x[:16], y[:16])
    chex.assert_trees_all_equal(new.params, state.params)  # skipped ...
    assert float(new.opt_state.scale) == 2.0**39 and int(new.step) == 1  # ... and halved
    assert np.isfinite(float(logs["loss"]))  # the forward pass was fine
    # fit's guard ("raise") does not take these skips for failures: the scale comes
    # down until the gradients fit in float16, and then the model learns.
    # (Measured: 4.42 for the first epochs, all skipped, then down to 0.50 at 10.)
    state, history = trainer.fit(state, x, y, epochs=10, batch_size=8, verbose=0)
    scale = float(state.opt_state.scale)
    assert 1.0 < scale <= 2.0**16  # float16 gradients of ~1 times the scale fit
    # whole epochs skipped at first: the same loss, summed in another order
    np.testing.assert_allclose(history["loss"][1], history["loss"][0], rtol=1e-6)
    assert history["loss"][-1] < 0.25 * history["loss"][0]
    assert dtypes(state.params) == {"float32"}


def test_overflow_at_the_minimum_scale_is_a_real_failure(key):
    """At scale 1 the scaled gradients are the true ones: non-finite ones there are
    the guard's business, not the loss scale's."""

    def root_error(y_true, y_pred):  # finite at y_pred == y_true, its gradient is not
        return jnp.sqrt(jnp.abs(y_pred - y_true))[..., 0]

    optimizer = precision.dynamic_loss_scale(optax.sgd(0.1), initial_scale=1.0)
    model = nn.Dense(1, kernel_init="zeros")
    trainer = nn.Trainer(model, root_error, optimizer, dtype_policy="mixed_float16")
    x, _ = regression(16)
    state = trainer.init(key, x)
    with pytest.raises(NonFiniteError, match=r"first non-finite gradient is at 'bias'"):
        trainer.fit(state, x, np.zeros((16, 1), np.float32), epochs=1, batch_size=8, verbose=0)


def test_checkpoints_and_resume_keep_the_loss_scale(key, tmp_path):
    x, y = regression()
    trainer = overflowing_trainer(2.0**30)
    start = trainer.init(key, x)
    straight, _ = trainer.fit(start, x, y, epochs=4, batch_size=8, verbose=0)
    ckpt = nn.Checkpointing(str(tmp_path / "run"), resume=True)
    half, _ = trainer.fit(start, x, y, epochs=2, batch_size=8, verbose=0, checkpoint=ckpt)
    assert float(half.opt_state.scale) < 2.0**30  # it has come down on the way
    resumed, history = trainer.fit(start, x, y, epochs=4, batch_size=8, verbose=0, checkpoint=ckpt)
    assert len(history["loss"]) == 4
    chex.assert_trees_all_equal(resumed, straight)  # scale and good_steps included
    path = str(tmp_path / "state.safetensors")
    trainer.save(path, straight)
    loaded = trainer.load(path)  # no template: the structure comes from the optimizer
    assert isinstance(loaded.opt_state, precision.LossScaleState)
    chex.assert_trees_all_equal(loaded.opt_state, straight.opt_state)
    stored = nn.checkpoint.restore(path)
    assert float(stored["opt_state"]["scale"]) == float(straight.opt_state.scale)


# ------------------------------------------------- accuracy against float32 training


def _digits():
    datasets = pytest.importorskip("sklearn.datasets", reason="needs the [examples] extra")
    x, y = datasets.load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    return x, y, order[:1347], order[1347:]


def _mlp():
    return nn.Sequential(nn.Dense(64, "relu"), nn.Dense(10, "softmax"))


def _cnn():
    return nn.Sequential(
        nn.Conv2D(16, 3),
        "relu",
        nn.MaxPool2D(2),
        nn.Conv2D(32, 3),
        "relu",
        nn.Flatten(),
        nn.Dense(10, "softmax"),
    )


@pytest.mark.parametrize(
    "make, shape, epochs", [(_mlp, (-1, 64), 10), (_cnn, (-1, 8, 8, 1), 5)], ids=["mlp", "cnn"]
)
def test_mixed_bfloat16_trains_digits_as_well_as_float32(make, shape, epochs):
    """Both from the same seed; test accuracy on 450 held-out digits within 1
    percentage point (measured: MLP 96.9% and 97.3%, CNN 98.4% and 98.2%)."""
    x, y, train, test = _digits()
    x = x.reshape(shape)
    accuracy = {}
    for policy in (None, "mixed_bfloat16"):
        trainer = nn.Trainer(
            make(),
            "sparse_categorical_crossentropy",
            "adam",
            ["accuracy"],
            learning_rate=3e-3,
            dtype_policy=policy,
        )
        state = trainer.init(jax.random.key(0), x[:1])
        state, _ = trainer.fit(state, x[train], y[train], epochs=epochs, batch_size=32, verbose=0)
        assert dtypes(state.params) == {"float32"}
        accuracy[policy] = trainer.evaluate(state, x[test], y[test])["accuracy"]
    assert accuracy[None] > 0.95
    assert abs(accuracy["mixed_bfloat16"] - accuracy[None]) <= 0.01, accuracy
