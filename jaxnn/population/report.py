"""Reading a sweep: a table of its members and a plot of a metric against a hyperparameter.

:func:`summarize` turns a population's :class:`~jaxnn.train.History` (logs of shape
``(members, epochs)``) and the members' hyperparameters into a :class:`Summary`: one
row per member with its hyperparameters, the final and best value of a metric and the
epoch of the best, sorted best first. :func:`plot` draws the metric against one
hyperparameter, one curve per value of another (per width, say). The hyperparameters
are a dict of arrays ``(members,)``: the traced ones of the optimizer state
(:func:`jaxnn.optimizers.hyperparams`), sizes you chose, anything with one value per
member.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxnn._checks import check_choice, did_you_mean, resolve_mode

if TYPE_CHECKING:  # pragma: no cover - for annotations only
    import matplotlib.axes
    import matplotlib.figure

__all__ = ["Summary", "plot", "summarize"]

_RESULTS = ("final", "best", "best_epoch")


@dataclasses.dataclass(frozen=True)
class Summary:
    """A sweep as a table: one row per member, best first (see :func:`summarize`).

    Attributes:
        table: a NumPy structured array, one record per member, with the fields
            ``member`` (its index in the population), one per hyperparameter, one per
            per-member counter of the history (``nonfinite_epoch``, ``stopped_epoch``),
            then ``final``, ``best`` and ``best_epoch``. Columns read as
            ``summary.table["learning_rate"]``.
        metric: the log summarised, e.g. ``"val_loss"``.
        mode: ``"min"`` or ``"max"``: whether lower or higher values are better.
        by: the column the rows are sorted by.

    Example:
        >>> import numpy as np
        >>> history = {"loss": np.array([[0.5, 0.4], [0.6, 0.2]])}
        >>> s = summarize(history, {"lr": [0.1, 0.01]}, "loss")
        >>> s.table["member"].tolist(), s.to_dicts()[0]["best"]
        ([1, 0], 0.2)
    """

    table: np.ndarray
    metric: str
    mode: str
    by: str

    @property
    def columns(self) -> tuple[str, ...]:
        """The column names, in order."""
        return tuple(self.table.dtype.names)

    def __len__(self) -> int:
        return len(self.table)

    def to_dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts of Python numbers (and strings), in the table's order."""
        return [{name: row[name].item() for name in self.columns} for row in self.table]

    def format(self, max_rows: int | None = None) -> str:
        """The table as aligned text, the first ``max_rows`` rows (all by default).

        Floats show 4 significant digits; a line under the table counts the rows
        left out.
        """
        rows = self.table if max_rows is None else self.table[:max_rows]
        cells = [list(self.columns)] + [[_cell(row[name]) for name in self.columns] for row in rows]
        widths = [max(len(line[i]) for line in cells) for i in range(len(self.columns))]
        lines = [
            f"{self.metric} ({self.mode}), {len(self)} members, sorted by {self.by}",
            *("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells),
        ]
        if len(rows) < len(self):
            lines.append(f"... {len(self) - len(rows)} more rows")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _cell(value: np.generic) -> str:
    if np.issubdtype(value.dtype, np.floating):
        return f"{value:.4g}"
    return str(value)


def summarize(
    history: Mapping[str, Any],
    hyperparams: Mapping[str, Any],
    metric: str = "val_loss",
    *,
    mode: str = "auto",
    by: str = "best",
) -> Summary:
    """A table of a sweep: each member's hyperparameters and how it did on a metric.

    Args:
        history: a population's :class:`~jaxnn.train.History` (from
            :func:`jaxnn.population.fit`), or any mapping from log name to an array
            ``(members, epochs)``. Entries of shape ``(members,)`` (the counters
            ``nonfinite_epoch``, ``stopped_epoch``) become columns as they are.
        hyperparams: name to an array ``(members,)``, one value per member: e.g.
            ``nn.optimizers.hyperparams(states.opt_state)`` or ``{"width": widths}``.
            May be empty.
        metric: the log to summarise (``"val_loss"``, ``"accuracy"``, ...).
        mode: ``"min"`` when lower is better, ``"max"`` when higher is, or
            ``"auto"``: ``"max"`` for accuracy-like names, as Keras guesses.
        by: the column to sort by: ``"best"`` (default) or ``"final"``, best first,
            NaN last; or any other column (``"member"``, a hyperparameter), ascending.
            Ties keep member order.

    Returns:
        A :class:`Summary`. Per member, ``final`` is the metric at the last epoch
        (NaN if the member's logs read NaN there: it stopped or went non-finite),
        ``best`` the best finite value over the epochs (NaN if none) and
        ``best_epoch`` its 0-based epoch (the first one, for ties; -1 if none),
        counted as ``fit`` counts ``nonfinite_epoch``.

    Raises:
        ValueError: for a ``metric`` that is not a log of ``history`` (the message
            lists the logs) or is not ``(members, epochs)``; logs without epochs; a
            hyperparameter that is not one value per member, or whose name is taken
            by a column; an unknown ``mode`` or ``by``.

    Example:
        >>> import numpy as np
        >>> history = {"val_loss": np.array([[0.9, 0.5, 0.6], [0.8, 0.7, 0.3]])}
        >>> print(summarize(history, {"learning_rate": [1e-3, 1e-2]}))
        val_loss (min), 2 members, sorted by best
        member  learning_rate  final  best  best_epoch
             1           0.01    0.3   0.3           2
             0          0.001    0.6   0.5           1
    """
    values = _metric(history, metric, "summarize")
    members = values.shape[0]
    mode = resolve_mode("summarize", mode, metric)
    columns: dict[str, np.ndarray] = {"member": np.arange(members)}
    for name, value in hyperparams.items():
        columns[_column_name(name, columns, "hyperparameter")] = _per_member(
            value, members, f"hyperparameter {name!r}"
        )
    for name, value in history.items():
        if np.ndim(value) == 1 and np.shape(value)[0] == members:
            columns[_column_name(name, columns, "history entry")] = np.asarray(value)

    finite = np.isfinite(values)
    signed = values if mode == "min" else -values
    best_epoch = np.argmin(np.where(finite, signed, np.inf), axis=1)
    any_finite = finite.any(axis=1)
    columns["final"] = values[:, -1]
    columns["best"] = np.where(any_finite, values[np.arange(members), best_epoch], np.nan)
    columns["best_epoch"] = np.where(any_finite, best_epoch, -1)

    check_choice("summarize", "by", by, tuple(columns))
    key = columns[by]
    if by in ("final", "best"):
        key = np.where(np.isnan(key), np.inf, key if mode == "min" else -key)
    order = np.argsort(key, kind="stable")
    table = np.empty(members, dtype=[(name, col.dtype) for name, col in columns.items()])
    for name, col in columns.items():
        table[name] = col[order]
    return Summary(table, metric, mode, by)


def plot(
    history: Mapping[str, Any],
    hyperparams: Mapping[str, Any],
    x: str,
    metric: str = "val_loss",
    *,
    group: str | None = None,
    value: str = "best",
    mode: str = "auto",
    ax: matplotlib.axes.Axes | None = None,
) -> matplotlib.figure.Figure:
    """Draws a metric against a hyperparameter, one curve per group of members.

    Each member is a point at its value of ``x``; the members of a group (the same
    value of ``group``: a width, a depth) are joined in order of ``x``, one curve
    with its own colour and a legend entry. An axis is logarithmic when its values
    are all positive and span two decades or more (learning rates, losses). A member
    whose value is NaN (it went non-finite) leaves a gap. matplotlib is imported
    only here (``pip install -e ".[examples]"``).

    Args:
        history: a population's history, as for :func:`summarize`.
        hyperparams: name to an array ``(members,)``, as for :func:`summarize`.
        x: the hyperparameter on the x axis.
        metric: the log on the y axis.
        group: a hyperparameter whose values split the members into curves;
            ``None`` for one curve of all members.
        value: ``"best"`` or ``"final"``: which value of the metric per member.
        mode: ``"min"``, ``"max"`` or ``"auto"``, as for :func:`summarize`.
        ax: the axes to draw into; ``None`` for a new figure.

    Returns:
        The ``matplotlib.figure.Figure`` (``fig.axes[0]`` is the plot); save it
        with ``fig.savefig("sweep.png")``.

    Raises:
        ImportError: if matplotlib is not installed, with the command to install it.
        ValueError: as :func:`summarize`; for an ``x`` or ``group`` that is not a
            hyperparameter (the message lists them); a ``value`` other than
            ``"best"`` or ``"final"``.

    Example:
        >>> import numpy as np
        >>> history = {"val_loss": np.array([[0.9, 0.5], [0.8, 0.3], [0.7, 0.6], [0.5, 0.4]])}
        >>> hp = {"learning_rate": [1e-4, 1e-2, 1e-4, 1e-2], "width": [8, 8, 32, 32]}
        >>> fig = plot(history, hp, "learning_rate", group="width")
        >>> ax = fig.axes[0]
        >>> len(ax.lines), ax.get_xscale(), ax.get_xlabel()
        (2, 'log', 'learning_rate')
        >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    check_choice("plot", "value", value, ("best", "final"))
    for role, name in (("x", x), ("group", group)):
        if name is not None and name not in hyperparams:
            raise ValueError(
                f"plot: {role}={name!r} is not a hyperparameter; they are "
                f"{list(hyperparams)}.{did_you_mean(str(name), list(hyperparams))} Pass "
                f"its values in hyperparams, one per member."
            )
    table = summarize(history, hyperparams, metric, mode=mode, by="member").table
    if not np.issubdtype(table[x].dtype, np.number):
        raise ValueError(
            f"plot: x={x!r} must be numeric, but its values are {table[x].dtype} "
            f"({table[x][:3].tolist()}, ...). Put it on the x axis as numbers, or pass "
            f"it as group= for one curve per value."
        )
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(
            "population.plot needs matplotlib, which is not installed: pip install "
            "matplotlib (or pip install -e '.[examples]' in a jaxnn checkout)."
        ) from e
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    else:
        fig = ax.figure
    xs, ys = np.asarray(table[x], np.float64), np.asarray(table[value], np.float64)
    groups = [None] if group is None else list(np.unique(table[group]))
    for g in groups:
        chosen = np.ones(len(table), bool) if g is None else table[group] == g
        order = np.argsort(xs[chosen], kind="stable")
        label = None if g is None else f"{group} = {_cell(np.asarray(g)[()])}"
        ax.plot(xs[chosen][order], ys[chosen][order], ".-", markersize=5, label=label)
    if _spans_decades(xs):
        ax.set_xscale("log")
    if _spans_decades(ys):
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(f"{value} {metric}")
    ax.set_title(f"{len(table)} members")
    if group is not None:
        ax.legend()
    return fig


def _spans_decades(values: np.ndarray) -> bool:
    """Whether finite ``values`` are all positive and span a factor of 100 or more."""
    finite = values[np.isfinite(values)]
    return finite.size > 1 and finite.min() > 0 and finite.max() / finite.min() >= 100


def _metric(history: Mapping[str, Any], metric: str, where: str) -> np.ndarray:
    """``history[metric]`` as a float64 array ``(members, epochs)``, checked."""
    logs = [k for k, v in history.items() if np.ndim(v) == 2]
    if metric not in history:
        raise ValueError(
            f"{where}: {metric!r} is not a log of this history; its logs are {logs}."
            f"{did_you_mean(metric, logs)}"
        )
    values = np.asarray(history[metric], np.float64)
    if values.ndim != 2:
        raise ValueError(
            f"{where}: history[{metric!r}] has shape {values.shape}, expected (members, "
            f"epochs): pass a population's history (population.fit) and one of its logs "
            f"{logs}."
        )
    if values.shape[1] == 0:
        raise ValueError(f"{where}: history[{metric!r}] holds no epochs (fit ran 0 epochs).")
    return values


def _per_member(value: Any, members: int, what: str) -> np.ndarray:
    """``value`` as a NumPy array ``(members,)``, or a ``ValueError`` saying why not."""
    array = np.asarray(value)
    if array.shape != (members,):
        raise ValueError(
            f"summarize: {what} has shape {array.shape}, expected ({members},): one "
            f"value per member of the history. Pass an array with one entry per member, "
            f"in member order."
        )
    return array


def _column_name(name: Any, columns: Mapping[str, Any], what: str) -> str:
    """``name`` if it is a string free as a column, else a ``ValueError``."""
    if not isinstance(name, str) or name in columns or name in _RESULTS:
        raise ValueError(
            f"summarize: the {what} name {name!r} is taken or not a string; the table "
            f"already has columns {[*columns, *_RESULTS]}. Rename it."
        )
    return name
