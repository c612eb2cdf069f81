"""Bad input fails early with one message that says where, what, and the fix.

One test per distinct mistake a newcomer makes with the tutorial's program; each
matches the message, not just the exception type.
"""

import collections
import functools
import os
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import jaxnn as nn
from jaxnn import population as pop
from jaxnn.export import export_model, load_exported, save_exported


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
    with pytest.raises(ValueError, match=r"unknown optimizer 'adma'\. Did you mean [^?]*'adam'"):
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


# ------------------------------------------------- issue 15: nothing passes silently


@pytest.fixture(scope="module")
def small():
    """One small classifier, its state and 40 rows, shared (compiling is most of the
    time these tests take)."""
    rng = np.random.default_rng(0)
    x = rng.random((40, 3), dtype=np.float32)
    y = (x.sum(axis=1, keepdims=True) > 1.5).astype(np.float32)
    trainer = nn.Trainer(nn.Sequential(nn.Dense(4), nn.Dense(1, "sigmoid")), "bce", "sgd")
    return trainer, trainer.init(jax.random.key(0), x), x, y


def test_none_is_no_metrics_and_no_callbacks(small):
    trainer, state, x, y = small
    assert nn.Trainer(nn.Dense(1), metrics=None).metrics == ()
    assert [m.name for m in nn.Trainer(nn.Dense(1), metrics="mae").metrics] == ["mae"]
    _, history = trainer.fit(state, x, y, batch_size=8, verbose=0, callbacks=None)
    assert sorted(history) == ["loss"]
    seen = []
    trainer.fit(state, x, y, batch_size=8, verbose=0, callbacks=lambda e, logs: seen.append(e))
    assert seen == [0]  # one function is a list of one
    with pytest.raises(TypeError, match=r"got the class EarlyStopping; pass an instance"):
        trainer.fit(state, x, y, verbose=0, callbacks=[nn.EarlyStopping])
    with pytest.raises(TypeError, match=r"Trainer.fit: callbacks must be a list of jaxnn.Callback"):
        trainer.fit(state, x, y, verbose=0, callbacks="early")


def test_missing_or_wrong_state_and_data_name_the_fix(small):
    trainer, state, x, y = small
    with pytest.raises(ValueError, match=r"Trainer.evaluate: x is None; pass the input data"):
        trainer.evaluate(state, None)
    with pytest.raises(ValueError, match=r"Trainer.evaluate: y is None; pass the targets"):
        trainer.evaluate(state, x)
    with pytest.raises(ValueError, match=r"Trainer.predict: x is None; pass the input data"):
        trainer.predict(state, None)
    for method in ("evaluate", "predict"):
        with pytest.raises(TypeError, match=rf"Trainer.{method}: state must be a TrainState"):
            getattr(trainer, method)(state.params, x, *([y] if method == "evaluate" else []))


def test_string_arrays_are_refused_at_every_door(small):
    trainer, state, x, y = small
    text = np.array([["a", "b", "c"]] * 40)
    message = r"x is not numeric \(got dtype <U1\)\. .*encode strings or categories"
    with pytest.raises(ValueError, match=rf"Trainer.fit: {message}"):
        trainer.fit(state, text, y, verbose=0)
    with pytest.raises(ValueError, match=rf"Trainer.evaluate: {message}"):
        trainer.evaluate(state, text, y)
    with pytest.raises(ValueError, match=rf"Trainer.predict: {message}"):
        trainer.predict(state, text)
    with pytest.raises(ValueError, match=r"Trainer.fit: y is not numeric \(got dtype <U3\)"):
        trainer.fit(state, x, np.array(["yes"] * 40), verbose=0)
    with pytest.raises(ValueError, match=r"expected numeric arrays .*got an array of dtype <U1"):
        trainer.init(jax.random.key(0), text)


def test_a_misspelled_monitor_is_refused_before_the_first_epoch(small):
    trainer, state, x, y = small
    calls = []
    with pytest.raises(
        ValueError,
        match=r"Trainer.fit: EarlyStopping: monitor 'los' is not in the logs; they are "
        r"\['loss'\]\. Did you mean 'loss'\? Monitor one of those",
    ):
        trainer.fit(
            state,
            x,
            y,
            verbose=0,
            callbacks=[lambda e, logs: calls.append(e), nn.EarlyStopping("los")],
        )
    assert calls == []  # refused before any epoch ran
    with pytest.raises(ValueError, match=r"monitor 'val_loss' is not in the logs.*val_\* needs"):
        trainer.fit(state, x, y, verbose=0, callbacks=[nn.EarlyStopping()])
    with pytest.raises(TypeError, match=r"EarlyStopping: monitor must be the name of a log"):
        nn.EarlyStopping(monitor=None)


def test_checkpoint_into_an_existing_file(small, tmp_path):
    trainer, state, x, y = small
    path = tmp_path / "notes.txt"
    path.write_text("not a directory")
    with pytest.raises(
        ValueError,
        match=r"Trainer.fit: checkpoint directory '.*notes.txt' is an existing file, not a "
        r"directory; pass a directory \(it is created if missing\), or move the file away",
    ):
        trainer.fit(state, x, y, verbose=0, checkpoint=path)
    with pytest.raises(ValueError, match=r"is an existing file"):
        trainer.fit(state, x, y, verbose=0, checkpoint=nn.Checkpointing(path, resume=True))
    assert path.read_text() == "not a directory"


def test_targets_outside_the_loss_domain_are_refused_at_the_door(small):
    """Sparse labels past the last class made evaluate return NaN and fit raise a
    NonFiniteError about the learning rate; binary targets of 2 made the loss negative.
    Both are now refused before any compiled step, naming the labels."""
    trainer, state, x, y = small
    with pytest.raises(ValueError, match=r"Trainer.fit: binary_crossentropy needs targets in"):
        trainer.fit(state, x, y * 2, verbose=0)
    with pytest.raises(ValueError, match=r"Trainer.fit: binary_crossentropy needs targets in"):
        trainer.fit(state, x, y, verbose=0, validation_data=(x, y - 1))
    with pytest.raises(ValueError, match=r"Trainer.evaluate: binary_crossentropy needs"):
        trainer.evaluate(state, x, y * 2)
    sparse = nn.Trainer(nn.Dense(3), "sparse_categorical_crossentropy", "sgd")
    sparse_state = sparse.init(jax.random.key(0), x)
    labels = np.arange(40) % 3
    for bad, match in [
        (labels + 1, r"class labels must lie in \[0, 3\) .*got labels from 1 to 3\. Map the"),
        (labels - 1, r"got labels from -1 to 1"),
        (labels + 0.5, r"targets must be integer class labels, got the value 0\.5"),
    ]:
        with pytest.raises(
            ValueError, match=rf"Trainer.fit: sparse_categorical_crossentropy: .*{match}"
        ):
            sparse.fit(sparse_state, x, bad, verbose=0)
        with pytest.raises(ValueError, match=r"Trainer.evaluate: sparse_categorical_crossentropy"):
            sparse.evaluate(sparse_state, x, bad)
    categorical = nn.Trainer(nn.Dense(3), "categorical_crossentropy", "sgd")
    with pytest.raises(ValueError, match=r"categorical_crossentropy needs one-hot or probability"):
        categorical.evaluate(sparse_state, x, -np.eye(3)[labels])


def test_negative_weights_and_overflowing_values_are_refused(small):
    trainer, state, x, y = small
    weights = np.ones(40)
    weights[3] = -1.0
    with pytest.raises(ValueError, match=r"Trainer.fit: sample_weight has negative values in 1"):
        trainer.fit(state, x, y, verbose=0, sample_weight=weights)
    with pytest.raises(ValueError, match=r"Trainer.predict: x has finite float64 values that "):
        trainer.predict(state, np.full((2, 3), 1e300))
    with pytest.raises(ValueError, match=r"Trainer.predict: x has int64 values outside the int32"):
        trainer.predict(state, np.full((2, 3), 2**40))
    with pytest.raises(ValueError, match=r"Trainer.evaluate: x is complex"):
        trainer.evaluate(state, x + 1j, y)


def test_a_batch_larger_than_the_data_is_the_whole_data(small):
    """batch_size=2**40 on 40 rows padded every batch to 2**40 rows (out of memory);
    now it is clamped to the 40 rows, as evaluate and predict do, and it is the very
    program batch_size=40 runs (one compiled program for both)."""
    trainer, state, x, y = small
    huge, h1 = trainer.fit(state, x, y, batch_size=2**40, epochs=2, verbose=0)
    whole, h2 = trainer.fit(state, x, y, batch_size=40, epochs=2, verbose=0)
    np.testing.assert_array_equal(h1["loss"], h2["loss"])
    for a, b in zip(jax.tree.leaves(huge.params), jax.tree.leaves(whole.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert trainer.evaluate(state, x, y, batch_size=2**40) == trainer.evaluate(state, x, y)


# ------------------------------------- property: wrong kinds of value at every door
#
# Random values of the wrong kind (None, bools, tiny and huge ints, NaN, strings,
# bytes, complex numbers, lists, dicts, tuples, functions, key arrays, string and
# complex arrays, empty arrays, states and params in the wrong place) are thrown at
# one argument of a public entry point at a time, the others being right. Each call
# must either work or raise a TypeError or ValueError (LayerError and CheckpointError
# are ValueErrors) from jaxnn's own code: never an AttributeError or KeyError, and
# never an error raised inside JAX or NumPy (a missing file for load_exported is
# Python's FileNotFoundError, as for open()). A wrong value that happens to be valid
# (epochs=2) simply runs. The counts are printed at the end of the module (pytest -s)
# and per entry point with --hypothesis-show-statistics.

TALLY = collections.Counter()
JAXNN_DIR = os.path.dirname(os.path.abspath(nn.__file__))


@pytest.fixture(scope="module")
def world(small, tmp_path_factory):
    """Everything the entry points need, shared; the working directory is a fresh
    temporary one, since a string may well be taken as a checkpoint directory."""
    trainer, state, x, y = small
    here = os.getcwd()
    tmp = tmp_path_factory.mktemp("wrong_kinds")
    os.chdir(tmp)
    key = jax.random.key(0)
    states = pop.init(trainer, key, x, 2)
    exported_path = str(tmp / "model.jaxexport")
    export_model(trainer, state, x, exported_path)
    odd = [
        object(),
        print,
        lambda *args, **kwargs: None,
        np.array(["a", "b"]),
        np.array([["a", "b", "c"]] * 40),
        np.ones((2, 2), np.complex64),
        np.zeros((0, 3)),
        np.full((3, 3), np.nan),
        np.float32(1.5),
        jnp.zeros(()),
        key,
        jax.random.split(key, 2),
        jax.ShapeDtypeStruct((2, 3), jnp.float32),
        np.ones((40, 3, 1)),
        np.ones((40,)),
        {"a": np.ones((40, 3))},
        nn.Dense(2),
        nn.EarlyStopping,
        state,
        state.params,
        states,
    ]
    yield dict(
        trainer=trainer,
        state=state,
        x=x,
        y=y,
        key=key,
        states=states,
        odd=odd,
        tmp=tmp,
        exported=exported_path,
    )
    os.chdir(here)
    refused, tried = TALLY["refused"], TALLY["tried"]
    print(
        f"\nwrong-kind fuzz: {tried} inputs tried at {len(ENTRIES)} arguments, {refused} "
        f"refused by jaxnn's own checks (TypeError/ValueError), {tried - refused} accepted "
        "as valid; 0 other errors."
    )


def wrong_values(world):
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-3, max_value=3),
        st.sampled_from([2**64, -(2**64)]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.complex_numbers(max_magnitude=10),
        st.text(max_size=4),
        st.binary(max_size=3),
        st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=2)), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(-3, 3), max_size=2),
        st.tuples(st.integers(-3, 3), st.text(max_size=2)),
        st.sampled_from(world["odd"]),
    )


def _fit(w, v, name):
    args = dict(state=w["state"], x=w["x"], y=w["y"], verbose=0, batch_size=40)
    args[name] = v
    state, x, y = args.pop("state"), args.pop("x"), args.pop("y")
    return w["trainer"].fit(state, x, y, **args)


def _evaluate(w, v, name):
    args = dict(state=w["state"], x=w["x"], y=w["y"])
    args[name] = v
    return w["trainer"].evaluate(args.pop("state"), args.pop("x"), args.pop("y"), **args)


def _predict(w, v, name):
    args = dict(state=w["state"], x=w["x"])
    args[name] = v
    return w["trainer"].predict(args.pop("state"), args.pop("x"), **args)


def _pop_init(w, v, name):
    args = dict(trainer=w["trainer"], key=w["key"], x=w["x"], n=2)
    args[name] = v
    return pop.init(args.pop("trainer"), args.pop("key"), args.pop("x"), args.pop("n"), **args)


def _pop_fit(w, v, name):
    args = dict(trainer=w["trainer"], states=w["states"], x=w["x"], y=w["y"], batch_size=40)
    args[name] = v
    trainer, states, x, y = (args.pop(k) for k in ("trainer", "states", "x", "y"))
    return pop.fit(trainer, states, x, y, **args)


def _export(w, v, name):
    args = dict(trainer_or_model=w["trainer"], state_or_params=w["state"], x_spec=w["x"])
    args[name] = v
    model, state, spec = (args.pop(k) for k in ("trainer_or_model", "state_or_params", "x_spec"))
    return export_model(model, state, spec, **args)


ENTRIES = {
    "Trainer(model)": lambda w, v: nn.Trainer(v),
    "Trainer(loss)": lambda w, v: nn.Trainer(nn.Dense(1), v),
    "Trainer(optimizer)": lambda w, v: nn.Trainer(nn.Dense(1), "mse", v),
    "Trainer(metrics)": lambda w, v: nn.Trainer(nn.Dense(1), "mse", "sgd", v),
    "Trainer(parallel)": lambda w, v: nn.Trainer(nn.Dense(1), parallel=v),
    "Trainer.init(key)": lambda w, v: w["trainer"].init(v, w["x"]),
    "Trainer.init(x)": lambda w, v: w["trainer"].init(w["key"], v),
    **{
        f"Trainer.fit({name})": functools.partial(_fit, name=name)
        for name in (
            "state",
            "x",
            "y",
            "epochs",
            "batch_size",
            "shuffle",
            "validation_split",
            "validation_data",
            "sample_weight",
            "verbose",
            "callbacks",
            "on_nonfinite",
            "checkpoint",
        )
    },
    **{
        f"Trainer.evaluate({name})": functools.partial(_evaluate, name=name)
        for name in ("state", "x", "y", "batch_size", "sample_weight")
    },
    **{
        f"Trainer.predict({name})": functools.partial(_predict, name=name)
        for name in ("state", "x", "batch_size")
    },
    **{
        f"population.init({name})": functools.partial(_pop_init, name=name)
        for name in ("trainer", "key", "x", "n", "hyperparams", "kernel_scale")
    },
    **{
        f"population.fit({name})": functools.partial(_pop_fit, name=name)
        for name in (
            "trainer",
            "states",
            "x",
            "y",
            "epochs",
            "batch_size",
            "shuffle",
            "validation_data",
            "sample_weight",
            "member_data",
            "early_stopping",
            "strategy",
            "verbose",
            "on_nonfinite",
        )
    },
    "population.evaluate(x)": lambda w, v: pop.evaluate(w["trainer"], w["states"], v, w["y"]),
    "population.predict(x)": lambda w, v: pop.predict(w["trainer"], w["states"], v),
    "population.bootstrap(members)": lambda w, v: pop.bootstrap(w["key"], v, 10),
    "population.kfold(k)": lambda w, v: pop.kfold(10, v),
    "population.take_members(idx)": lambda w, v: pop.take_members(w["x"], v),
    "Dense(features)": lambda w, v: nn.Dense(v),
    "Dense(activation)": lambda w, v: nn.Dense(2, v),
    "Dense(kernel_init)": lambda w, v: nn.Dense(2, kernel_init=v),
    "Dense.init(key)": lambda w, v: nn.Dense(2).init(v, w["x"]),
    "Dense.init(x)": lambda w, v: nn.Dense(2).init(w["key"], v),
    "Conv(kernel_size)": lambda w, v: nn.Conv(2, v),
    "Conv(padding)": lambda w, v: nn.Conv(2, (3, 3), padding=v),
    "Dropout(rate)": lambda w, v: nn.Dropout(v),
    "Embedding(features)": lambda w, v: nn.Embedding(10, v),
    "Sequential(layers)": lambda w, v: nn.Sequential(nn.Dense(2), v),
    "Checkpointing(directory)": lambda w, v: nn.Checkpointing(v),
    "Checkpointing(every)": lambda w, v: nn.Checkpointing("runs", every=v),
    "Checkpointing(monitor)": lambda w, v: nn.Checkpointing("runs", monitor=v),
    "Checkpointing(mode)": lambda w, v: nn.Checkpointing("runs", mode=v),
    "EarlyStopping(patience)": lambda w, v: nn.EarlyStopping(patience=v),
    "EarlyStopping(min_delta)": lambda w, v: nn.EarlyStopping(min_delta=v),
    **{
        f"export_model({name})": functools.partial(_export, name=name)
        for name in ("trainer_or_model", "state_or_params", "x_spec", "platforms", "path")
    },
    "save_exported(exported)": lambda w, v: save_exported(v, "saved.jaxexport"),
    "load_exported(path)": lambda w, v: load_exported(v),
}


# Reading a file that is not there is Python's own FileNotFoundError, as for open().
ALSO_ALLOWED = {"load_exported(path)": FileNotFoundError}


@pytest.mark.parametrize("entry", list(ENTRIES))
@settings(max_examples=12, deadline=None, database=None)
@given(data=st.data())
def test_wrong_kinds_raise_jaxnns_own_type_or_value_error(world, entry, data):
    value = data.draw(wrong_values(world), label="value")
    TALLY["tried"] += 1
    try:
        ENTRIES[entry](world, value)
    except (TypeError, ValueError, ALSO_ALLOWED.get(entry, TypeError)) as e:
        raised_in = traceback.extract_tb(e.__traceback__)[-1].filename
        assert raised_in.startswith(JAXNN_DIR), (
            f"{entry} with {value!r}: {type(e).__name__} from {raised_in}, not from jaxnn: {e}"
        )
        TALLY["refused"] += 1
        event(f"{entry}: refused")
    else:
        event(f"{entry}: accepted")


def test_embedding_ids_outside_the_table_are_refused_at_the_door():
    """Inside a compiled step an id past the table could only become a NaN row."""
    x = np.array([[1, 2, 3], [4, 5, 9]], np.int32)
    y = np.zeros((2, 1), np.float32)
    model = nn.Sequential(
        nn.Sequential(nn.Embedding(10, 4, name="tokens")), nn.Flatten(), nn.Dense(1)
    )
    trainer = nn.Trainer(model, "mse", "sgd")
    state = trainer.init(jax.random.key(0), x)
    bad = np.array([[1, 2, 3], [4, 10, -1]], np.int32)
    match = (
        r"first layer, Embedding 'sequential/tokens', has 10 rows, but the input holds ids "
        r"from -1 to 10"
    )
    for call in (
        lambda: trainer.fit(state, bad, y, verbose=0),
        lambda: trainer.evaluate(state, bad, y),
        lambda: trainer.predict(state, bad),
    ):
        with pytest.raises(ValueError, match=match):
            call()
    states = nn.population.init(trainer, jax.random.key(0), x, 2)
    with pytest.raises(ValueError, match=match):
        nn.population.predict(trainer, states, bad)
    assert trainer.predict(state, x).shape == (2, 1)  # ids in range pass


def test_init_refuses_a_complex_example_input():
    trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
    with pytest.raises(ValueError, match=r"Trainer.init: x: expected real numeric arrays, got "):
        trainer.init(jax.random.key(0), np.ones((2, 3), np.complex64))
