"""Fewer compilations: one program per Trainer entry point, shared by equal Trainers;
progress shown without a dispatch per epoch; checked data reused while unchanged."""

import contextlib
import io

import chex
import jax
import jax.monitoring
import numpy as np
import pytest

import jaxnn as nn

_COMPILES: list[str] = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **_: (
        _COMPILES.append(event) if event == "/jax/core/compile/backend_compile_duration" else None
    )
)


@contextlib.contextmanager
def counting():
    """Yields a list that ends up holding one entry per XLA compilation inside."""
    start = len(_COMPILES)
    seen: list[str] = []
    yield seen
    seen.extend(_COMPILES[start:])


def tutorial_data(n=40):
    rng = np.random.default_rng(0)
    return rng.random((n, 4), dtype=np.float32), rng.integers(0, 2, (n, 1)).astype(np.float32)


def cell(width=8, key=0, x=None, y=None, **fit):
    """The tutorial as a notebook cell: a new model and Trainer, init, fit, evaluate."""
    if x is None:
        x, y = tutorial_data()
    model = nn.Sequential(nn.Dense(width, "relu"), nn.Dense(1, "sigmoid"))
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics=["accuracy"])
    state = trainer.init(jax.random.key(key), x)
    state, history = trainer.fit(state, x, y, epochs=3, batch_size=10, verbose=0, **fit)
    return trainer, state, history, trainer.evaluate(state, x, y)


def test_a_cell_run_again_compiles_nothing():
    x, y = tutorial_data()
    key = jax.random.key(0)  # made here: making a key compiles a program of its own
    with counting() as first:
        _, state, history, logs = cell(width=7, x=x, y=y)
    # init, the epochs and the evaluation: one program each (jax.random.key aside).
    assert 1 <= len(first) <= 3, first
    with counting() as again:
        _, state2, history2, logs2 = cell(width=7, x=x, y=y)
    assert again == []
    chex.assert_trees_all_equal(state.params, state2.params)
    assert logs == logs2
    with counting() as other:
        cell(width=6, x=x, y=y)  # another width: another network, compiled anew
    assert len(other) >= 2
    del key


def test_equal_layers_compare_equal_and_others_do_not():
    assert nn.Dense(3, "relu") == nn.Dense(3, "relu")
    assert hash(nn.Dense(3, "relu")) == hash(nn.Dense(3, "relu"))
    assert nn.Dense(3, "relu") != nn.Dense(4, "relu")
    assert nn.Dense(3).named("a") != nn.Dense(3).named("b")
    assert nn.Sequential(nn.Dense(3), nn.Dense(1)) == nn.Sequential(nn.Dense(3), nn.Dense(1))
    assert nn.Sequential(nn.Dense(3), nn.Dense(1)) != nn.Sequential(nn.Dense(1), nn.Dense(3))
    # A function made anew each time is another function: no claim of equality.
    assert nn.Dense(3, lambda v: v) != nn.Dense(3, lambda v: v)
    # A layer written by hand has no configuration: it equals only itself.
    mine = nn.Layer(lambda key, x: ({}, {}), lambda p, s, x: (x, s), "Mine")
    twin = nn.Layer(lambda key, x: ({}, {}), lambda p, s, x: (x, s), "Mine")
    assert mine == mine and mine != twin and mine.config is None


def test_progress_runs_the_same_program_as_silent_fit():
    x, y = tutorial_data(30)
    trainer = nn.Trainer(nn.Sequential(nn.Dense(5, "tanh"), nn.Dense(1, "sigmoid")), "bce")
    state = trainer.init(jax.random.key(1), x)
    quiet, quiet_history = trainer.fit(state, x, y, epochs=9, batch_size=7, verbose=0)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        shown, shown_history = trainer.fit(state, x, y, epochs=9, batch_size=7, verbose=1)
    chex.assert_trees_all_equal(quiet.params, shown.params)
    np.testing.assert_array_equal(quiet_history["loss"], shown_history["loss"])
    lines = out.getvalue().splitlines()
    assert [line.split(" ")[1] for line in lines] == [f"{e}/9" for e in range(1, 10)]
    assert all("5/5 [====================]" in line for line in lines)
    # 9 epochs share the program of up to 16: a second fit of 12 compiles nothing new.
    compiled = trainer._run._cache_size()
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.fit(state, x, y, epochs=12, batch_size=7, verbose=2)
    assert trainer._run._cache_size() == compiled


def test_progress_stops_at_the_first_bad_epoch():
    x, y = tutorial_data(20)
    bad_x = x.copy()
    trainer = nn.Trainer(nn.Dense(1), "mse", nn.optimizers.get("sgd", learning_rate=1e30))
    state = trainer.init(jax.random.key(0), bad_x)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(nn.NonFiniteError) as caught:
        trainer.fit(state, bad_x * 1e10, y, epochs=6, batch_size=20, verbose=2)
    shown = out.getvalue().count("Epoch ")
    assert shown == len(caught.value.history.get("loss", [])) < 6


def test_unchanged_arrays_are_reused_and_changed_ones_read_again():
    x, y = tutorial_data(24)
    trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
    state = trainer.init(jax.random.key(0), x)
    first, _ = trainer.fit(state, x, y, epochs=1, batch_size=8, verbose=0)
    kept = trainer._prepared
    again, _ = trainer.fit(state, x, y, epochs=1, batch_size=8, verbose=0)
    assert trainer._prepared is kept
    chex.assert_trees_all_equal(first.params, again.params)
    x[3, 1] += 1.0  # changed in place: the next fit must see it
    changed, _ = trainer.fit(state, x, y, epochs=1, batch_size=8, verbose=0)
    fresh, _ = trainer.fit(state, x.copy(), y.copy(), epochs=1, batch_size=8, verbose=0)
    chex.assert_trees_all_equal(changed.params, fresh.params)
    assert not np.array_equal(changed.params["kernel"], first.params["kernel"])
    x[5, 0] = np.nan  # and a bad value put in place is refused, not reused
    with pytest.raises(ValueError, match=r"x has NaN or Inf values in 1 row\(s\)"):
        trainer.fit(state, x, y, epochs=1, batch_size=8, verbose=0)


def test_init_works_under_transformations():
    trainer = nn.Trainer(nn.Dense(2), "mse", "sgd")
    x = np.zeros((1, 3), np.float32)
    spec = jax.eval_shape(trainer.init, jax.random.key(0), x)
    assert spec.params["kernel"].shape == (3, 2)
    keys = jax.random.split(jax.random.key(0), 2)
    kernels = jax.vmap(lambda k: trainer.init(k, x).params["kernel"])(keys)
    chex.assert_trees_all_equal(kernels[1], trainer.init(keys[1], x).params["kernel"])
