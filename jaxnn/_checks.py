"""Argument checks shared by every floor: names with suggestions, options, counts, modes.

One place for the checks that used to be written once per module, so that the same
mistake gets the same words and the same error class everywhere: a bad *value*
(an unknown name, a negative count, an unknown option) is a ``ValueError``; a value
of the wrong *type* where no value of that type could work is a ``TypeError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

__all__ = [
    "check_choice",
    "check_options",
    "check_positive_int",
    "higher_is_better",
    "lookup",
    "resolve_mode",
]


def lookup(kind: str, name: str, table: Mapping[str, T], alternative: str) -> T:
    """``table[name.lower()]``, or a ``ValueError`` that suggests close names.

    Args:
        kind: what is looked up, for the message (``"activation"``, ``"loss"``).
        name: the name given by the user; matched case-insensitively.
        table: lower-case names to entries.
        alternative: what else the user may pass, e.g. ``"pass a function f(x)"``.

    Returns:
        The entry.

    Raises:
        ValueError: for an unknown name; the message lists the close matches and
            every known name.

    Example:
        >>> lookup("loss", "MSE", {"mse": 1, "mae": 2}, "pass a function")
        1
        >>> try:
        ...     lookup("loss", "msee", {"mse": 1, "mae": 2}, "pass a function")
        ... except ValueError as e:
        ...     print(e)
        unknown loss 'msee'. Did you mean 'mse'? Known names: 'mae', 'mse'; or pass a function.
    """
    key = name.lower()
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, list(table), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    known = ", ".join(repr(k) for k in sorted(table))
    raise ValueError(f"unknown {kind} {name!r}.{hint} Known names: {known}; or {alternative}.")


def check_options(where: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Raises a ``ValueError`` naming the first option in ``given`` not in ``known``.

    Example:
        >>> try:
        ...     check_options("loss 'huber'", ["delt"], ["delta"])
        ... except ValueError as e:
        ...     print(e)
        loss 'huber' has no option 'delt'; its options are ['delta'].
    """
    known = list(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        takes = f"its options are {sorted(known)}" if known else "it takes no options"
        raise ValueError(f"{where} has no option {unknown[0]!r}; {takes}.")


def check_positive_int(where: str, what: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum``; else a ``ValueError``.

    ``bool`` is refused (``True`` is an ``int`` to Python, never a count to a user).
    With ``minimum=0`` it checks a non-negative count.

    Example:
        >>> check_positive_int("Trainer.fit", "batch_size", 32)
        32
        >>> try:
        ...     check_positive_int("Trainer.fit", "batch_size", 0)
        ... except ValueError as e:
        ...     print(e)
        Trainer.fit: batch_size must be a positive int, got 0.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
        raise ValueError(f"{where}: {what} must be {kind}, got {value!r}.")
    return int(value)


def check_choice(where: str, what: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``; else a ``ValueError`` listing them.

    Example:
        >>> try:
        ...     check_choice("EarlyStopping", "mode", "up", ("auto", "min", "max"))
        ... except ValueError as e:
        ...     print(e)
        EarlyStopping: mode must be one of 'auto', 'min', 'max'; got 'up'.
    """
    choices = tuple(choices)
    if isinstance(value, str) and value in choices:
        return value
    listed = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{where}: {what} must be one of {listed}; got {value!r}.")


_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1")


def higher_is_better(name: str) -> bool:
    """Whether a log named ``name`` improves upwards (accuracy-like), as Keras guesses.

    Example:
        >>> higher_is_better("val_accuracy"), higher_is_better("val_loss")
        (True, False)
    """
    return any(word in name for word in _HIGHER_IS_BETTER)


def resolve_mode(where: str, mode: str, monitor: str) -> str:
    """Checks ``mode`` (``"auto"``, ``"min"`` or ``"max"``) and resolves ``"auto"``.

    ``"auto"`` is ``"max"`` for accuracy-like names (:func:`higher_is_better`) and
    ``"min"`` otherwise.

    Example:
        >>> resolve_mode("EarlyStopping", "auto", "val_accuracy")
        'max'
    """
    check_choice(where, "mode", mode, ("auto", "min", "max"))
    if mode == "auto":
        return "max" if higher_is_better(monitor) else "min"
    return mode
