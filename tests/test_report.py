"""population.summarize and population.plot: a sweep as a table and as a plot."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn
from jaxnn import population

NAN = np.nan


def tiny_history() -> nn.train.History:
    """Four members, three epochs: member 2 went non-finite at epoch 1, member 3 never
    improved after epoch 0, members 0 and 1 tie on their best."""
    return nn.train.History(
        {
            "loss": np.array([[0.9, 0.5, 0.4], [0.8, 0.4, 0.6], [0.7, NAN, NAN], [0.3, 0.35, 0.3]]),
            "val_loss": np.array(
                [[1.0, 0.6, 0.5], [0.9, 0.5, 0.7], [0.8, NAN, NAN], [0.4, 0.45, 0.5]]
            ),
            "val_accuracy": np.array(
                [[0.5, 0.7, 0.8], [0.6, 0.9, 0.7], [0.6, NAN, NAN], [0.9, 0.8, 0.8]]
            ),
            "nonfinite_epoch": np.array([-1, -1, 1, -1]),
        }
    )


HYPER = {"learning_rate": np.array([1e-3, 1e-2, 1.0, 1e-1]), "width": np.array([8, 8, 16, 16])}


def test_the_table_holds_each_members_values_best_first():
    summary = population.summarize(tiny_history(), HYPER, "val_loss")
    assert summary.columns == (
        "member", "learning_rate", "width", "nonfinite_epoch", "final", "best", "best_epoch"
    )  # fmt: skip
    assert (summary.metric, summary.mode, summary.by) == ("val_loss", "min", "best")
    assert len(summary) == 4
    # Best val_loss: member 3 (0.4 at epoch 0), then 0 and 1 tied at 0.5 (member order
    # kept), then member 2, whose best is its only finite value; its final value is NaN.
    rows = summary.to_dicts()
    assert np.isnan(rows[3]["final"])
    rows[3]["final"] = "nan"
    assert rows == [
        {"member": 3, "learning_rate": 0.1, "width": 16, "nonfinite_epoch": -1,
         "final": 0.5, "best": 0.4, "best_epoch": 0},
        {"member": 0, "learning_rate": 0.001, "width": 8, "nonfinite_epoch": -1,
         "final": 0.5, "best": 0.5, "best_epoch": 2},
        {"member": 1, "learning_rate": 0.01, "width": 8, "nonfinite_epoch": -1,
         "final": 0.7, "best": 0.5, "best_epoch": 1},
        {"member": 2, "learning_rate": 1.0, "width": 16, "nonfinite_epoch": 1,
         "final": "nan", "best": 0.8, "best_epoch": 0},
    ]  # fmt: skip


def test_the_table_is_a_structured_array_and_prints_aligned():
    summary = population.summarize(tiny_history(), HYPER, "val_loss")
    table = summary.table
    assert table.dtype.names == summary.columns
    assert table["member"].tolist() == [3, 0, 1, 2]
    assert table["width"].dtype == HYPER["width"].dtype
    np.testing.assert_array_equal(table["best"], [0.4, 0.5, 0.5, 0.8])
    assert str(summary) == (
        "val_loss (min), 4 members, sorted by best\n"
        "member  learning_rate  width  nonfinite_epoch  final  best  best_epoch\n"
        "     3            0.1     16               -1    0.5   0.4           0\n"
        "     0          0.001      8               -1    0.5   0.5           2\n"
        "     1           0.01      8               -1    0.7   0.5           1\n"
        "     2              1     16                1    nan   0.8           0"
    )
    assert summary.format(max_rows=1).splitlines()[2:] == [
        "     3            0.1     16               -1    0.5   0.4           0",
        "... 3 more rows",
    ]


def test_accuracy_is_maximised_and_rows_sort_by_any_column():
    summary = population.summarize(tiny_history(), {}, "val_accuracy")
    assert summary.mode == "max"  # "auto", as Keras guesses from the name
    assert summary.table["member"].tolist() == [1, 3, 0, 2]
    assert summary.table["best"].tolist() == [0.9, 0.9, 0.8, 0.6]
    assert summary.table["best_epoch"].tolist() == [1, 0, 2, 0]
    by_final = population.summarize(tiny_history(), {}, "val_accuracy", by="final")
    assert by_final.table["member"].tolist() == [0, 3, 1, 2]  # NaN last
    forced = population.summarize(tiny_history(), {}, "val_accuracy", mode="min")
    assert forced.table["member"].tolist() == [0, 1, 2, 3]
    by_lr = population.summarize(tiny_history(), HYPER, "loss", by="learning_rate")
    assert by_lr.table["member"].tolist() == [0, 1, 3, 2]


def test_a_member_without_a_finite_value_has_no_best():
    history = {"loss": np.array([[NAN, NAN], [0.2, 0.1]])}
    table = population.summarize(history, {}, "loss").table
    assert table["member"].tolist() == [1, 0]
    assert np.isnan(table["best"][1]) and table["best_epoch"].tolist() == [1, -1]


def test_it_reads_a_real_population_history_and_its_optimizer_hyperparameters():
    trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
    x, y = jnp.ones((8, 3)), jnp.zeros((8, 1))
    rates = jnp.asarray([0.0, 0.01, 0.1])
    states = population.init(trainer, jax.random.key(0), x, 3, hyperparams={"learning_rate": rates})
    states, history = population.fit(trainer, states, x, y, epochs=2, batch_size=8, verbose=0)
    summary = population.summarize(
        history, nn.optimizers.hyperparams(states.opt_state), "loss", by="member"
    )
    np.testing.assert_allclose(summary.table["learning_rate"], rates)
    np.testing.assert_array_equal(summary.table["final"], history["loss"][:, -1])
    assert summary.table["best_epoch"].tolist() == [0, 1, 1]  # lr 0 never improves


@pytest.mark.parametrize(
    ("history", "hyper", "metric", "kwargs", "message"),
    [
        (None, {"learning_rate": [0.1, 0.2]}, "val_loss", {},
         r"summarize: hyperparameter 'learning_rate' has shape \(2,\), expected \(4,\): one "
         r"value per member"),
        (None, {}, "val_los", {},
         r"summarize: 'val_los' is not a log of this history; its logs are \['loss', "
         r"'val_loss', 'val_accuracy'\]\. Did you mean 'val_loss'"),
        (None, {}, "nonfinite_epoch", {},
         r"history\['nonfinite_epoch'\] has shape \(4,\), expected \(members, epochs\)"),
        ({"loss": np.zeros((2, 0))}, {}, "loss", {}, r"holds no epochs"),
        ({"loss": np.zeros(3)}, {}, "loss", {},
         r"summarize: history\['loss'\] has shape \(3,\), expected \(members, epochs\): pass a "
         r"population's history"),
        (None, {"best": [1, 2, 3, 4]}, "val_loss", {},
         r"the hyperparameter name 'best' is taken or not a string"),
        (None, {}, "val_loss", {"by": "lr"},
         r"summarize: by must be one of 'member', 'nonfinite_epoch', 'final', 'best', "
         r"'best_epoch'; got 'lr'"),
        (None, {}, "val_loss", {"mode": "lowest"}, r"summarize: mode must be one of"),
    ],
)  # fmt: skip
def test_summarize_errors_say_what_and_how_to_fix(history, hyper, metric, kwargs, message):
    history = tiny_history() if history is None else history
    with pytest.raises(ValueError, match=message):
        population.summarize(history, hyper, metric, **kwargs)


@pytest.fixture
def plt():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_plot_draws_one_curve_per_group_on_a_log_axis(plt):
    fig = population.plot(tiny_history(), HYPER, "learning_rate", group="width")
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("learning_rate", "best val_loss")
    assert ax.get_title() == "4 members"
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "linear")  # lr spans 3 decades
    assert len(ax.lines) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["width = 8", "width = 16"]
    # Each curve's members in order of x, with their best values.
    width_8, width_16 = ax.lines
    np.testing.assert_array_equal(width_8.get_xdata(), [1e-3, 1e-2])
    np.testing.assert_array_equal(width_8.get_ydata(), [0.5, 0.5])
    np.testing.assert_array_equal(width_16.get_xdata(), [0.1, 1.0])
    np.testing.assert_array_equal(width_16.get_ydata(), [0.4, 0.8])


def test_plot_without_groups_draws_one_curve_into_given_axes(plt):
    fig, ax = plt.subplots()
    hyper = {"width": np.array([4, 8, 16, 32])}
    assert population.plot(tiny_history(), hyper, "width", "loss", value="final", ax=ax) is fig
    assert len(ax.lines) == 1 and ax.get_legend() is None
    assert (ax.get_xscale(), ax.get_ylabel()) == ("linear", "final loss")  # 4..32: < 2 decades
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [0.4, 0.6, NAN, 0.3])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": "learning_rat"},
         r"plot: x='learning_rat' is not a hyperparameter; they are \['learning_rate', "
         r"'width', 'activation'\]\. Did you mean 'learning_rate'\? Pass its values in "
         r"hyperparams"),
        ({"x": "width", "group": "depth"}, r"plot: group='depth' is not a hyperparameter"),
        ({"x": "activation"}, r"plot: x='activation' must be numeric.*pass it as group="),
        ({"x": "width", "value": "last"},
         r"plot: value must be one of 'best', 'final'; got 'last'"),
    ],
)  # fmt: skip
def test_plot_errors_say_what_and_how_to_fix(plt, kwargs, message):
    hyper = {**HYPER, "activation": np.array(["relu", "tanh", "relu", "tanh"])}
    with pytest.raises(ValueError, match=message):
        population.plot(tiny_history(), hyper, **kwargs)


def test_plot_names_the_extra_when_matplotlib_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"population.plot needs matplotlib.*\[examples\]"):
        population.plot(tiny_history(), HYPER, "learning_rate")
