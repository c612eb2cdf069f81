"""The shared argument checks: the same mistake gets the same words and error class."""

import ast
import functools
import re
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxnn
from jaxnn import activations, initializers, losses, metrics, optimizers
from jaxnn._checks import (
    bind_options,
    check_bool,
    check_choice,
    check_directory,
    check_key,
    check_options,
    check_positive_int,
    higher_is_better,
    lookup,
    resolve_mode,
)

TABLE = {"mse": 1, "mae": 2, "huber": 3}

# ----------------------------------------------------------------------- lookup


@pytest.mark.parametrize("name", ["mse", "MSE", "Mse"])
def test_lookup_is_case_insensitive(name):
    assert lookup("loss", name, TABLE, "pass a function") == 1


def test_lookup_suggests_close_names_and_lists_every_known_one():
    with pytest.raises(
        ValueError,
        match=r"^unknown loss 'MSEE'\. Did you mean 'mse'\? Known names: 'huber', 'mae', "
        r"'mse'; or pass a function\.$",
    ):
        lookup("loss", "MSEE", TABLE, "pass a function")


def test_lookup_suggests_up_to_three_names():
    table = {"relu": 0, "relu6": 0, "elu": 0, "selu": 0, "celu": 0}
    with pytest.raises(ValueError, match=r"Did you mean '\w+', '\w+', '\w+'\? Known") as info:
        lookup("activation", "rlu", table, "pass a function")
    assert str(info.value).count("'") == 2 + 2 * 3 + 2 * len(table)


def test_lookup_without_close_names_gives_no_suggestion():
    with pytest.raises(
        ValueError, match=r"^unknown loss 'xyz'\. Known names: 'huber', 'mae', 'mse'; or pass"
    ):
        lookup("loss", "xyz", TABLE, "pass a function")


@pytest.mark.parametrize("bad", [None, 3, b"mse"])
def test_lookup_of_a_non_string_is_a_type_error(bad):
    with pytest.raises(TypeError, match=r"^a loss name must be a string, got \w+; or pass a f"):
        lookup("loss", bad, TABLE, "pass a function")


# ---------------------------------------------------------------------- options


def test_check_options_is_silent_when_every_option_is_known():
    check_options("loss 'huber'", [], ["delta"])
    check_options("loss 'huber'", {"delta": 2.0}, ["delta"])
    check_options("loss 'mse'", [], [])


def test_check_options_names_the_first_unknown_lists_the_known_and_suggests():
    with pytest.raises(
        ValueError,
        match=r"^loss 'bce' has no option 'from_logit'; its options are \['axis', "
        r"'from_logits'\]\. Did you mean 'from_logits'\?$",
    ):
        check_options("loss 'bce'", ["zzz", "from_logit"], ["from_logits", "axis"])


def test_check_options_when_none_are_taken():
    with pytest.raises(
        ValueError, match=r"^loss 'mse' has no option 'delta'; it takes no options\.$"
    ):
        check_options("loss 'mse'", {"delta": 1.0}, [])


def test_check_options_words_its_kind_of_option():
    with pytest.raises(
        ValueError,
        match=r"^optimizer 'sgd' has no hyperparameter 'lr'; its hyperparameters are "
        r"\['learning_rate', 'momentum'\]\.$",
    ):
        check_options(
            "optimizer 'sgd'", ["lr"], ["momentum", "learning_rate"], what="hyperparameter"
        )


def _huber(predictions, targets, *, delta=1.0):
    return delta


def test_bind_options_binds_after_the_calls_own_arguments():
    assert bind_options("loss 'huber'", _huber, {}, positional=2) is _huber
    bound = bind_options("loss 'huber'", _huber, {"delta": 2.0}, positional=2)
    assert isinstance(bound, functools.partial)
    assert bound(0, 0) == 2.0
    # `predictions` and `targets` are the call's own arguments, never options.
    with pytest.raises(ValueError, match=r"^loss 'huber' has no option 'targets'; its options"):
        bind_options("loss 'huber'", _huber, {"targets": 0}, positional=2)


def test_bind_options_reads_positional_or_keyword_parameters_and_partials():
    def scaled(p, t, scale=1.0, /, *, offset=0.0):  # `scale` cannot be named: no option
        return scale + offset

    with pytest.raises(ValueError, match=r"no option 'scale'; its options are \['offset'\]"):
        bind_options("loss 'scaled'", scaled, {"scale": 2.0}, positional=2)

    def plain(p, t, scale=1.0):
        return scale

    assert bind_options("loss 'plain'", plain, {"scale": 3.0}, positional=2)(0, 0) == 3.0
    rebound = bind_options(
        "x", bind_options("x", _huber, {"delta": 2.0}, positional=2), {"delta": 5.0}, positional=2
    )
    assert rebound(0, 0) == 5.0


def test_bind_options_accepts_anything_a_function_accepts():
    def anything(*args, **kwargs):
        return kwargs

    assert bind_options("f", anything, {"x": 1}, positional=2)() == {"x": 1}

    def star(*args, flag=False):
        return flag

    assert bind_options("f", star, {"flag": True}, positional=2)(0, 0) is True
    with pytest.raises(ValueError, match=r"^f has no option 'x'; its options are \['flag'\]"):
        bind_options("f", star, {"x": 1}, positional=2)
    # No signature Python can read: bound unchecked, Python's own call decides.
    assert bind_options("f", max, {"key": abs})([-3, 2]) == -3


# ----------------------------------------------------------------------- counts


@pytest.mark.parametrize("value", [1, 32, np.int32(7), np.int64(2**40)])
def test_check_positive_int_accepts_python_and_numpy_ints(value):
    checked = check_positive_int("Trainer.fit", "batch_size", value)
    assert checked == value and type(checked) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_check_positive_int_refuses_bool(value):
    with pytest.raises(ValueError, match=r"^Trainer\.fit: epochs must be a positive int, got "):
        check_positive_int("Trainer.fit", "epochs", value)


@pytest.mark.parametrize("value", [0, -3, 2.0, 2.5, "3", None])
def test_check_positive_int_refuses_non_positive_and_non_ints(value):
    with pytest.raises(
        ValueError, match=rf"^Trainer\.fit: batch_size must be a positive int, got {value!r}\.$"
    ):
        check_positive_int("Trainer.fit", "batch_size", value)


def test_check_positive_int_minimum():
    assert check_positive_int("Trainer.fit", "verbose", 0, minimum=0) == 0
    with pytest.raises(
        ValueError, match=r"^Trainer\.fit: verbose must be a non-negative int, got -1"
    ):
        check_positive_int("Trainer.fit", "verbose", -1, minimum=0)
    with pytest.raises(ValueError, match=r"^Repeat: times must be an int >= 2, got 1\.$"):
        check_positive_int("Repeat", "times", 1, minimum=2)


# ---------------------------------------------------------------------- choices


def test_check_choice_returns_the_value():
    assert check_choice("EarlyStopping", "mode", "max", ("auto", "min", "max")) == "max"


@pytest.mark.parametrize("value", ["up", "MIN", None, 1])
def test_check_choice_is_exact_and_lists_the_choices_in_order(value):
    with pytest.raises(
        ValueError,
        match=rf"^EarlyStopping: mode must be one of 'auto', 'min', 'max'; got {value!r}\.$",
    ):
        check_choice("EarlyStopping", "mode", value, ("auto", "min", "max"))


# ------------------------------------------------------------------------ modes


@pytest.mark.parametrize(
    ("name", "higher"),
    [
        ("accuracy", True),
        ("val_accuracy", True),
        ("val_ACC", True),  # metrics keep the user's spelling
        ("sparse_categorical_accuracy", True),
        ("auc", True),
        ("val_precision", True),
        ("recall", True),
        ("f1", True),
        ("loss", False),
        ("val_loss", False),
        ("mse", False),
        ("val_mean_absolute_error", False),
        ("binary_crossentropy", False),
    ],
)
def test_higher_is_better(name, higher):
    assert higher_is_better(name) is higher


def test_resolve_mode():
    assert resolve_mode("EarlyStopping", "auto", "val_accuracy") == "max"
    assert resolve_mode("EarlyStopping", "auto", "val_loss") == "min"
    assert resolve_mode("EarlyStopping", "min", "val_accuracy") == "min"
    assert resolve_mode("ModelCheckpoint", "max", "val_loss") == "max"
    with pytest.raises(
        ValueError, match=r"^ModelCheckpoint: mode must be one of 'auto', 'min', 'max'; got 'MAX'"
    ):
        resolve_mode("ModelCheckpoint", "MAX", "val_loss")


# --------------------------------------------------- every name lookup, one voice


@pytest.mark.parametrize(
    ("get", "given", "kind", "close", "alternative"),
    [
        (activations.get, "rleu", "activation", "relu", "pass a function such as jax.nn.relu"),
        (initializers.get, "Glorot", "initializer", "glorot_normal", "pass a function init"),
        (optimizers.get, "ADMA", "optimizer", "adam", "pass an optax transformation"),
        (losses.get, "msee", "loss", "mse", "pass a function f(predictions, targets)"),
        (metrics.get, "acuracy", "metric", "accuracy", "pass a function f(predictions, targets)"),
    ],
)
def test_every_get_words_an_unknown_name_alike(get, given, kind, close, alternative):
    with pytest.raises(
        ValueError,
        match=rf"^unknown {kind} '{given}'\. Did you mean .*'{close}'.*\? Known names: '.*; or "
        + re.escape(alternative),
    ):
        get(given)


@pytest.mark.parametrize("get", [activations.get, initializers.get, losses.get, metrics.get])
def test_every_get_finds_names_case_insensitively(get):
    name = {
        activations.get: "ReLU",
        initializers.get: "He_Normal",
        losses.get: "MSE",
        metrics.get: "MAE",
    }[get]
    assert callable(get(name))


def test_optimizers_get_is_case_insensitive():
    assert optimizers.get("Adam") is not None


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: losses.get("huber", delt=1.0), r"^loss 'huber' has no option 'delt'"),
        (lambda: metrics.get("acc", treshold=0.0), r"^metric 'acc' has no option 'treshold'"),
        (
            lambda: optimizers.get("adam", learning_rat=0.1),
            r"^optimizer 'adam' has no hyperparameter 'learning_rat'.*'learning_rate'\?$",
        ),
    ],
)
def test_every_unknown_option_is_a_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_did_you_mean_is_written_once():
    """Only _checks reaches for difflib: every name and option lookup goes through it."""
    package = Path(jaxnn.__file__).parent
    users = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            if "difflib" in modules:
                users.append(path.relative_to(package).as_posix())
    assert users == ["_checks.py"]


# ------------------------------------------------- keys, switches, huge counts, paths


def test_check_key_takes_typed_and_raw_keys_and_nothing_else():
    key = jax.random.key(0)
    assert check_key("f", "key", key) is key
    check_key("f", "key", jax.random.PRNGKey(0))  # raw (2,) uint32 key data
    check_key("f", "key", jax.random.key_data(jax.random.key(0, impl="rbg")))  # (4,)
    jax.jit(lambda k: check_key("f", "key", k))(key)  # a traced key is a key too
    for bad, got in [
        (0, "int 0"),
        (None, "NoneType None"),
        (np.array([0, 0], np.uint32), "ndarray"),
        (jax.numpy.zeros(2), r"an array of dtype float32 and shape \(2,\)"),
        ("x" * 100, r"str 'xxx.*\.\.\."),
    ]:
        with pytest.raises(TypeError, match=rf"^f: key must be a jax\.random\.key, got {got}"):
            check_key("f", "key", bad)
    with pytest.raises(ValueError, match=r"must be one random key, got an array of keys"):
        check_key("f", "key", jax.random.split(key, 3))


def test_check_bool_and_the_int64_ceiling_of_counts(tmp_path):
    assert check_bool("f", "shuffle", np.bool_(True)) is True
    for bad in (1, "no", None, 0.5):
        with pytest.raises(TypeError, match=r"^f: shuffle must be True or False, got"):
            check_bool("f", "shuffle", bad)
    assert check_positive_int("f", "n", 2**63 - 1) == 2**63 - 1
    with pytest.raises(ValueError, match=r"^f: n must be at most 2\*\*63 - 1, the largest int64"):
        check_positive_int("f", "n", 2**63)
    with pytest.raises(ValueError, match=r"^f: epochs must be at most 2147483647, got 2147483648"):
        check_positive_int("f", "epochs", 2**31, maximum=2**31 - 1)
    assert check_directory("f", "checkpoint", tmp_path / "new") == str(tmp_path / "new")
    with pytest.raises(ValueError, match=r"^f: checkpoint directory is the empty path"):
        check_directory("f", "checkpoint", "")
