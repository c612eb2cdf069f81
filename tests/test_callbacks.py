"""Callbacks that steer training (a returned state, ReduceLROnPlateau,
LearningRateScheduler) and record it (CSVLogger, TensorBoard)."""

import csv
import os
import struct
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn
from jaxnn.optimizers import hyperparams, replace_hyperparams

# One small Trainer for every test that does not need another optimizer: its per-epoch
# program compiles once per data shape, and compiling dominates these tests.
TRAINER = nn.Trainer(nn.Dense(1), "mse", nn.optimizers.get("sgd", learning_rate=0.1))


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3), dtype=np.float32)
    return x, x @ np.array([[1.0], [-2.0], [0.5]], np.float32)


def lr_of(state):
    return float(hyperparams(state.opt_state)["learning_rate"])


def with_lr(state, lr):
    return state._replace(opt_state=replace_hyperparams(state.opt_state, {"learning_rate": lr}))


# ------------------------------------------------------------ ReduceLROnPlateau


def drive(callback, state, values, monitor="val_loss"):
    """Runs ``on_epoch_end`` over scripted monitor values, as fit would; returns the
    logged learning rates, the epochs that reduced, and the last state."""
    callback.on_train_begin(state)
    logged, reduced = [], []
    for epoch, value in enumerate(values):
        logs = {monitor: value}
        new, stop = nn.train.callbacks.steer(
            "test", callback, "on_epoch_end", callback.on_epoch_end(epoch, logs, state), state
        )
        assert not stop
        logged.append(logs["learning_rate"])
        if new is not state:
            reduced.append(epoch)
        state = new
    return logged, reduced, state


def test_reduce_on_plateau_reduces_at_the_epochs_keras_does():
    x, _ = data()
    state = TRAINER.init(jax.random.key(0), x)
    values = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85]
    reduce = nn.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2)
    logged, reduced, state = drive(reduce, state, values)
    # Worked out by hand from Keras's rule: epochs 2-3 do not improve on 0.9 (patience
    # 2: reduce after epoch 3); cooldown 2 makes epoch 4 not count, so epochs 5-6 reduce
    # again after 6; epoch 8 improves, 9-10 do not: a third reduction after 10.
    assert reduced == [3, 6, 10]
    np.testing.assert_allclose(logged, [0.1] * 4 + [0.05] * 3 + [0.025] * 4, rtol=1e-6)
    np.testing.assert_allclose(lr_of(state), 0.0125, rtol=1e-6)
    # The best is kept in float32, as the in-program rule of population.fit keeps it.
    assert reduce.best == np.float32(0.8) and reduce.wait == 0 and reduce.cooldown_counter == 2


def test_reduce_on_plateau_max_mode_min_lr_and_min_delta():
    x, _ = data()
    state = TRAINER.init(jax.random.key(0), x)
    # "val_accuracy" is watched for a maximum (mode="auto"); a rise smaller than
    # min_delta is no improvement; the rate stops at min_lr.
    reduce = nn.ReduceLROnPlateau("val_accuracy", factor=0.1, patience=1, min_lr=0.001)
    assert reduce.mode == "max"
    values = [0.5, 0.50005, 0.5, 0.5, 0.5]
    logged, reduced, state = drive(reduce, state, values, monitor="val_accuracy")
    assert reduced == [1, 2]
    np.testing.assert_allclose(logged, [0.1, 0.1, 0.01, 0.001, 0.001], rtol=1e-6)
    np.testing.assert_allclose(lr_of(state), 0.001, rtol=1e-6)


def test_reduce_on_plateau_in_fit_changes_the_traced_rate_without_recompiling():
    x, y = data()
    state = TRAINER.init(jax.random.key(0), x)
    # The first fit compiles the per-epoch program; equal Trainers share compiled
    # programs, so count what the second fit adds.
    TRAINER.fit(state, x, y, epochs=1, verbose=0, callbacks=[lambda epoch, logs: None])
    programs, steps = TRAINER._run._cache_size(), TRAINER._step._cache_size()
    reduce = nn.ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=1e9)
    trained, history = TRAINER.fit(state, x, y, epochs=4, verbose=0, callbacks=[reduce])
    assert TRAINER._run._cache_size() == programs
    assert TRAINER._step._cache_size() == steps
    # min_delta=1e9: only the first epoch improves, so each later one halves the rate
    # it trained with.
    np.testing.assert_allclose(history["learning_rate"], [0.1, 0.1, 0.05, 0.025], rtol=1e-6)
    np.testing.assert_allclose(lr_of(trained), 0.0125, rtol=1e-6)
    assert sorted(history) == ["learning_rate", "loss"]


def test_reduce_on_plateau_checks_its_arguments():
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau: factor must be a finite number in"):
        nn.ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="ReduceLROnPlateau: patience must be a non-negative"):
        nn.ReduceLROnPlateau(patience=-1)
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau: min_lr must be a finite number >="):
        nn.ReduceLROnPlateau(min_lr=-1.0)
    with pytest.raises(ValueError, match="ReduceLROnPlateau: mode must be one of"):
        nn.ReduceLROnPlateau(mode="up")
    with pytest.raises(TypeError, match="ReduceLROnPlateau: monitor must be the name of a log"):
        nn.ReduceLROnPlateau(3)
    with pytest.raises(TypeError, match="ReduceLROnPlateau: factor must be a number, got str"):
        nn.ReduceLROnPlateau(factor="0.5")


def test_reduce_on_plateau_refuses_a_monitor_that_is_not_a_log():
    x, y = data()
    state = TRAINER.init(jax.random.key(0), x)
    with pytest.raises(
        ValueError, match=r"ReduceLROnPlateau: monitor 'val_los' is not in the logs.*'val_loss'"
    ):
        TRAINER.fit(
            state, x, y, verbose=0, validation_split=0.25,
            callbacks=[nn.ReduceLROnPlateau("val_los")],
        )  # fmt: skip


@pytest.mark.parametrize("make", ["ReduceLROnPlateau", "LearningRateScheduler"])
def test_lr_callbacks_need_a_traced_constant_learning_rate(make):
    x, y = data()
    callback = {
        "ReduceLROnPlateau": lambda: nn.ReduceLROnPlateau("loss"),
        "LearningRateScheduler": lambda: nn.LearningRateScheduler(lambda epoch, lr: lr),
    }[make]
    seen = []
    record = nn.LambdaCallback(lambda epoch, logs: seen.append(epoch))
    plain = nn.Trainer(nn.Dense(1), "mse", optax.sgd(0.1))  # an optax optimizer, untraced
    state = plain.init(jax.random.key(0), x)
    with pytest.raises(
        ValueError,
        match=rf"{make}: the optimizer traces no learning_rate .*"
        r"optax.inject_hyperparams\(optax.adam\)\(learning_rate=1e-3\)",
    ):
        plain.fit(state, x, y, verbose=0, callbacks=[callback(), record])
    assert seen == []  # refused before the first epoch

    scheduled = nn.Trainer(
        nn.Dense(1), "mse", nn.optimizers.get("sgd", learning_rate=optax.constant_schedule(0.1))
    )
    state = scheduled.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=rf"{make}: the learning_rate is an optax schedule"):
        scheduled.fit(state, x, y, verbose=0, callbacks=[callback()])


# ------------------------------------------------------------ LearningRateScheduler


def test_learning_rate_scheduler_equals_setting_the_rate_by_hand():
    x, y = data()
    state = TRAINER.init(jax.random.key(1), x)
    rates = [0.1, 0.05, 0.025]
    schedule = nn.LearningRateScheduler(lambda epoch, lr: lr / 2 if epoch else lr)
    scheduled, history = TRAINER.fit(state, x, y, epochs=3, verbose=0, callbacks=[schedule])
    by_hand = state
    for rate in rates:
        by_hand, _ = TRAINER.fit(with_lr(by_hand, rate), x, y, epochs=1, verbose=0)
    chex.assert_trees_all_close(scheduled.params, by_hand.params, rtol=1e-6)
    np.testing.assert_allclose(history["learning_rate"], rates, rtol=1e-6)
    # A schedule of the epoch alone (an optax schedule counted in epochs) works too.
    decay = nn.LearningRateScheduler(optax.exponential_decay(0.1, 1, 0.5))
    again, history = TRAINER.fit(state, x, y, epochs=3, verbose=0, callbacks=[decay])
    np.testing.assert_allclose(history["learning_rate"], rates, rtol=1e-6)
    chex.assert_trees_all_close(again.params, by_hand.params, rtol=1e-6)


def test_learning_rate_scheduler_checks_its_schedule():
    x, y = data()
    state = TRAINER.init(jax.random.key(0), x)
    with pytest.raises(TypeError, match="LearningRateScheduler: schedule must be a function"):
        nn.LearningRateScheduler(0.1)
    with pytest.raises(TypeError, match=r"called as schedule\(epoch, lr\).*signature is \(\)"):
        nn.LearningRateScheduler(lambda: 0.1)
    fast = nn.LearningRateScheduler(lambda epoch, lr: "fast")
    with pytest.raises(
        TypeError,
        match=r"schedule\(0, ...\) must be a number, got str. Return the learning rate for epoch 0",
    ):
        TRAINER.fit(state, x, y, verbose=0, callbacks=[fast])
    nan = nn.LearningRateScheduler(lambda epoch, lr: float("nan"))
    with pytest.raises(ValueError, match=r"schedule\(0, ...\) must be a finite number >= 0.0"):
        TRAINER.fit(state, x, y, verbose=0, callbacks=[nan])


# ------------------------------------------------------------ the state a callback returns


class ZeroParamsAfter(nn.Callback):
    """Returns the state with zeroed params after epoch ``at`` (with ``stop``)."""

    def __init__(self, at, stop=False):
        self.at, self.stop = at, stop

    def on_epoch_end(self, epoch, logs, state):
        logs["zeroed"] = float(epoch == self.at)
        if epoch == self.at:
            new = state._replace(params=jax.tree.map(jnp.zeros_like, state.params))
            return nn.Steer(new, stop=True) if self.stop else new
        return None


def test_a_callback_returning_a_state_steers_fit():
    x, y = data()
    state = TRAINER.init(jax.random.key(2), x)
    seen = []

    class Look(nn.Callback):  # the next callback sees the new state
        def on_epoch_end(self, epoch, logs, state):
            seen.append(float(jnp.abs(state.params["kernel"]).sum()))

    steered, history = TRAINER.fit(
        state, x, y, epochs=4, verbose=0, callbacks=[ZeroParamsAfter(1), Look()]
    )
    assert seen[1] == 0.0 and seen[0] > 0 and seen[2] > 0
    assert history["zeroed"].tolist() == [0.0, 1.0, 0.0, 0.0]  # logs a callback added
    by_hand, _ = TRAINER.fit(state, x, y, epochs=2, verbose=0)
    by_hand = by_hand._replace(params=jax.tree.map(jnp.zeros_like, by_hand.params))
    by_hand, _ = TRAINER.fit(by_hand, x, y, epochs=2, verbose=0)
    chex.assert_trees_all_close(steered.params, by_hand.params, rtol=1e-6)
    assert int(steered.step) == int(by_hand.step)


def test_steer_changes_the_state_and_stops_at_once():
    x, y = data()
    state = TRAINER.init(jax.random.key(2), x)
    stopped, history = TRAINER.fit(
        state, x, y, epochs=5, verbose=0, callbacks=[ZeroParamsAfter(0, stop=True)]
    )
    assert history.epochs == 1
    chex.assert_trees_all_close(stopped.params, jax.tree.map(jnp.zeros_like, state.params))


def test_on_epoch_begin_may_return_a_state():
    x, y = data()
    state = TRAINER.init(jax.random.key(3), x)

    class SetRate(nn.Callback):
        def on_epoch_begin(self, epoch, state):
            return with_lr(state, 0.02)

    fitted, _ = TRAINER.fit(state, x, y, epochs=2, verbose=0, callbacks=[SetRate()])
    by_hand, _ = TRAINER.fit(with_lr(state, 0.02), x, y, epochs=2, verbose=0)
    chex.assert_trees_all_close(fitted.params, by_hand.params, rtol=1e-6)


def test_what_a_callback_returns_is_checked():
    x, y = data()
    state = TRAINER.init(jax.random.key(0), x)

    def fit_with(on_end=None, on_begin=None):
        class Returns(nn.Callback):
            def on_epoch_begin(self, epoch, state):
                return on_begin(state) if on_begin else None

            def on_epoch_end(self, epoch, logs, state):
                return on_end(state) if on_end else None

        return TRAINER.fit(state, x, y, epochs=2, verbose=0, callbacks=[Returns()])

    with pytest.raises(
        TypeError, match=r"Returns.on_epoch_end returned a tuple; a callback returns None"
    ):
        fit_with(lambda s: (s, True))
    with pytest.raises(TypeError, match=r"returned 1; a callback returns None or False"):
        fit_with(lambda s: 1)
    wider = lambda s: s._replace(params={**s.params, "kernel": jnp.zeros((3, 2))})
    with pytest.raises(
        ValueError,
        match=r"leaf state\.params\['kernel'\] has shape \(3, 2\), dtype float32, but the "
        r"state it was given has shape \(3, 1\)",
    ):
        fit_with(wider)
    with pytest.raises(ValueError, match=r"leaf state\.step has .*weakly typed"):
        fit_with(lambda s: s._replace(step=jnp.asarray(3)))
    with pytest.raises(ValueError, match="whose tree differs"):
        fit_with(lambda s: s._replace(params={"w": s.params["kernel"]}))
    with pytest.raises(ValueError, match=r"Returns.on_epoch_begin asked to stop"):
        fit_with(on_begin=lambda s: True)
    with pytest.raises(TypeError, match=r"returned a Steer whose stop is 'yes'"):
        fit_with(lambda s: nn.Steer(stop="yes"))
    with pytest.raises(TypeError, match=r"returned a Steer whose state is a dict"):
        fit_with(lambda s: nn.Steer(state={}))
    # The flags of before still stop: True, NumPy's bool, and None goes on.
    _, history = fit_with(lambda s: np.bool_(True))
    assert history.epochs == 1


# ------------------------------------------------------------ CSVLogger


def read_csv(path, separator=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_csv_logger_writes_a_row_per_epoch_as_keras(tmp_path):
    x, y = data()
    state = TRAINER.init(jax.random.key(0), x)
    path = tmp_path / "log.csv"
    reduce = nn.ReduceLROnPlateau(factor=0.5, patience=0, min_delta=1e9)
    _, history = TRAINER.fit(
        state, x, y, epochs=3, verbose=0, validation_split=0.25,
        callbacks=[reduce, nn.CSVLogger(path)],
    )  # fmt: skip
    rows = read_csv(path)
    assert rows[0] == ["epoch", "learning_rate", "loss", "val_loss"]
    assert [row[0] for row in rows[1:]] == ["0", "1", "2"]
    for i, row in enumerate(rows[1:]):
        for name, value in zip(rows[0][1:], row[1:], strict=True):
            assert float(value) == history[name][i]  # written with repr: exact
    # append=True adds rows without a second header; another separator.
    TRAINER.fit(state, x, y, epochs=2, verbose=0, callbacks=[nn.CSVLogger(path, append=True)])
    rows = read_csv(path)
    assert len(rows) == 6 and rows[4][0] == "0" and rows.count(rows[0]) == 1
    tabbed = tmp_path / "log.tsv"
    TRAINER.fit(state, x, y, epochs=1, verbose=0, callbacks=[nn.CSVLogger(tabbed, "\t")])
    assert read_csv(tabbed, "\t")[0] == ["epoch", "loss"]


def test_csv_logger_writes_na_for_a_missing_log_and_checks_its_arguments(tmp_path):
    logger = nn.CSVLogger(str(tmp_path / "log.csv"))
    logger.on_train_begin(None)
    logger.on_epoch_end(0, {"loss": 0.5, "extra": 1.0}, None)
    logger.on_epoch_end(1, {"loss": 0.25}, None)
    logger.on_train_end(None)
    assert read_csv(tmp_path / "log.csv") == [
        ["epoch", "extra", "loss"], ["0", "1.0", "0.5"], ["1", "NA", "0.25"]
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"CSVLogger: filename .* is a directory"):
        nn.CSVLogger(tmp_path)
    with pytest.raises(TypeError, match="CSVLogger: separator must be one character"):
        nn.CSVLogger(tmp_path / "a.csv", separator=", ")
    with pytest.raises(TypeError, match="CSVLogger: append must be True or False"):
        nn.CSVLogger(tmp_path / "a.csv", append="yes")
    x, y = data()
    state = TRAINER.init(jax.random.key(0), x)
    missing = nn.CSVLogger(tmp_path / "no" / "such" / "log.csv")
    with pytest.raises(OSError, match=r"CSVLogger: cannot open .* create its directory first"):
        TRAINER.fit(state, x, y, verbose=0, callbacks=[missing])


# ------------------------------------------------------------ TensorBoard


def read_scalars(directory):
    """``{tag: [(step, value), ...]}`` from the event files in ``directory``: TFRecord
    frames (length, its CRC, the Event protobuf, its CRC) read with tensorboardX's
    own protobuf classes."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for name in sorted(os.listdir(directory)):
        raw = (directory / name).read_bytes()
        at = 0
        while at < len(raw):
            (length,) = struct.unpack("<Q", raw[at : at + 8])
            event = event_pb2.Event.FromString(raw[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_writes_scalars_per_epoch_as_keras(tmp_path):
    pytest.importorskip("tensorboardX")
    x, y = data()
    state = TRAINER.init(jax.random.key(0), x)
    _, history = TRAINER.fit(
        state, x, y, epochs=3, verbose=0, validation_split=0.25,
        callbacks=[nn.TensorBoard(tmp_path)],
    )  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == ["train", "validation"]
    train, validation = read_scalars(tmp_path / "train"), read_scalars(tmp_path / "validation")
    assert sorted(train) == sorted(validation) == ["epoch_loss"]
    for scalars, name in ((train, "loss"), (validation, "val_loss")):
        steps, values = zip(*scalars["epoch_loss"], strict=True)
        assert steps == (0, 1, 2)
        np.testing.assert_allclose(values, history[name], rtol=1e-6)  # stored as float32


def test_tensorboard_without_tensorboardx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if not installed
    with pytest.raises(
        ImportError, match=r"pip install tensorboardX \(or pip install 'jaxnn\[tensorboard\]'\)"
    ):
        nn.TensorBoard(tmp_path)
