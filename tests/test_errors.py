"""Bad input fails early with one message that says where, what, and the fix.

One test per distinct mistake a newcomer makes with the tutorial's program; each
matches the message, not just the exception type.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn


@pytest.fixture
def setup(key):
    rng = np.random.default_rng(0)
    x = rng.random((100, 4), dtype=np.float32)
    y = rng.integers(0, 2, size=(100, 1)).astype(np.float32)
    model = nn.Sequential(nn.Dense(32, "relu"), nn.Dense(1, "sigmoid"))
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", ["accuracy"])
    return trainer, trainer.init(key, x), x, y


def test_wrong_feature_count(setup):
    trainer, state, x, _ = setup
    with pytest.raises(
        nn.LayerError,
        match=r"Dense 'dense': input has 3 features, but the kernel was initialised for 4\. "
        r"Initialise with an input of shape \(batch, 3\)",
    ):
        trainer.model.apply(state.params, state.model_state, x[:, :3])


def test_wrong_feature_count_in_fit(setup):
    trainer, state, x, y = setup
    with pytest.raises(nn.LayerError, match=r"Dense 'dense': input has 5 features"):
        trainer.fit(state, np.ones((100, 5), np.float32), y, verbose=0)


def test_wrong_rank(key):
    with pytest.raises(
        nn.LayerError, match=r"Dense: expects an input of shape \(batch, \.\.\., in_features\)"
    ):
        nn.Dense(3).init(key, jnp.ones((4,)))


def test_labels_of_the_wrong_shape(setup):
    trainer, state, x, _ = setup
    with pytest.raises(ValueError, match=r"targets .*shape \(100, 3\).*predictions .*\(100, 1\)"):
        trainer.fit(state, x, np.zeros((100, 3), np.float32), verbose=0)


def test_labels_without_the_unit_axis_are_accepted(setup):
    """(100,) labels against (100, 1) predictions: reshaped as Keras does, never (100, 100)."""
    trainer, state, x, y = setup
    flat = trainer.evaluate(state, x, y[:, 0])
    full = trainer.evaluate(state, x, y)
    assert flat == pytest.approx(full, rel=1e-6)


def test_x_and_y_of_different_lengths(setup):
    trainer, state, x, y = setup
    with pytest.raises(
        ValueError, match=r"Trainer.fit: x has 100 examples but y has 90; x and y need the same"
    ):
        trainer.fit(state, x, y[:90], verbose=0)


def test_empty_data_set(setup):
    trainer, state, x, y = setup
    with pytest.raises(ValueError, match=r"Trainer.fit: x has no examples \(length 0\)"):
        trainer.fit(state, x[:0], y[:0], verbose=0)


@pytest.mark.parametrize("batch_size", [0, -5, 2.5])
def test_batch_size_not_positive(setup, batch_size):
    trainer, state, x, y = setup
    with pytest.raises(ValueError, match=r"Trainer.fit: batch_size must be a positive int"):
        trainer.fit(state, x, y, batch_size=batch_size, verbose=0)


def test_dropout_in_training_without_a_key(key):
    model = nn.Sequential(nn.Dense(4), nn.Dropout(0.5))
    params, state = model.init(key, jnp.ones((2, 3)))
    with pytest.raises(nn.LayerError, match=r"Dropout 'dropout'.*needs a key"):
        model.apply(params, state, jnp.ones((2, 3)), training=True)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rate_outside_the_unit_interval(rate):
    with pytest.raises(nn.LayerError, match=r"rate .*\[0, 1\)"):
        nn.Dropout(rate)


def test_unknown_activation():
    with pytest.raises(nn.LayerError, match=r"unknown activation 'rleu'\. Did you mean 'relu'"):
        nn.Dense(3, activation="rleu")


def test_unknown_loss():
    with pytest.raises(ValueError, match=r"unknown loss 'binary_crossentrop'"):
        nn.Trainer(nn.Dense(1), loss="binary_crossentrop")


def test_unknown_optimizer():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adma'\. Did you mean 'adam'"):
        nn.Trainer(nn.Dense(1), loss="mse", optimizer="adma")


def test_unknown_metric():
    with pytest.raises(ValueError, match=r"unknown metric 'acuracy'"):
        nn.Trainer(nn.Dense(1), loss="mse", metrics=["acuracy"])


def test_params_from_another_model(setup, key):
    trainer, state, x, _ = setup
    other = nn.Sequential(nn.Dense(32, "relu"), nn.Dense(8), nn.Dense(1))
    other_params, _ = other.init(key, x)
    with pytest.raises(
        nn.LayerError,
        match=r"Sequential: params have entries \['dense_2'\] that this layer does not have",
    ):
        trainer.model.apply(other_params, {}, x)


def test_params_of_another_width(setup, key):
    trainer, state, x, _ = setup
    wider = nn.Sequential(nn.Dense(16, "relu"), nn.Dense(1))
    params, _ = wider.init(key, x)
    with pytest.raises(nn.LayerError, match=r"Dense 'dense': kernel has shape \(4, 16\), but"):
        trainer.model.apply(params, {}, x)


def test_nan_in_the_inputs(setup):
    trainer, state, x, y = setup
    x = x.copy()
    x[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"x has NaN or Inf values in 1 row\(s\): 7\."):
        trainer.fit(state, x, y, verbose=0)


def test_ragged_python_lists(setup):
    trainer, state, _, y = setup
    with pytest.raises(ValueError, match=r"x could not be read as an array"):
        trainer.predict(state, [[1.0, 2.0], [3.0]])


def test_python_lists_are_accepted(setup):
    trainer, state, x, y = setup
    from_lists = trainer.evaluate(state, x.tolist(), y.tolist())
    assert from_lists == pytest.approx(trainer.evaluate(state, x, y), rel=1e-6)


def test_validation_split_outside_the_unit_interval(setup):
    trainer, state, x, y = setup
    with pytest.raises(ValueError, match=r"validation_split must lie in \[0, 1\)"):
        trainer.fit(state, x, y, validation_split=1.5, verbose=0)


def test_early_stopping_on_a_missing_log(setup):
    trainer, state, x, y = setup
    with pytest.raises(ValueError, match=r"EarlyStopping: monitor 'val_loss' is not in the logs"):
        trainer.fit(state, x, y, epochs=2, verbose=0, callbacks=[nn.EarlyStopping("val_loss")])


def test_init_with_a_non_key(setup):
    trainer, _, x, _ = setup
    with pytest.raises(TypeError, match=r"Trainer.init: key must be a jax.random.key"):
        trainer.init(0, x)


def test_fit_with_something_else_than_a_state(setup):
    trainer, state, x, y = setup
    with pytest.raises(TypeError, match=r"state must be a TrainState from Trainer.init"):
        trainer.fit(state.params, x, y, verbose=0)


def test_residual_changing_shape(key):
    with pytest.raises(nn.LayerError, match=r"Residual: the inner layer maps shape"):
        nn.Residual(nn.Dense(2)).init(key, jax.ShapeDtypeStruct((1, 4), jnp.float32))
