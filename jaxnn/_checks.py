"""Argument checks shared by every floor: names with suggestions, options, counts, modes.

One place for the checks that used to be written once per module, so that the same
mistake gets the same words and the same error class everywhere: a bad *value*
(an unknown name, a negative count, an unknown option) is a ``ValueError``; a value
of the wrong *type* where no value of that type could work is a ``TypeError``.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

T = TypeVar("T")

__all__ = [
    "bind_options",
    "check_bool",
    "check_choice",
    "check_directory",
    "check_key",
    "check_options",
    "check_positive_int",
    "did_you_mean",
    "higher_is_better",
    "lookup",
    "narrow",
    "resolve_mode",
]


def did_you_mean(given: str, known: Iterable[str]) -> str:
    """``" Did you mean 'a', 'b'?"`` for up to three close matches, else ``""``.

    The one place that guesses what a misspelled name meant, for every message that
    names the valid choices.

    Example:
        >>> did_you_mean("los", ["loss", "accuracy"])
        " Did you mean 'loss'?"
    """
    close = difflib.get_close_matches(given, list(known), n=3)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


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
        TypeError: if ``name`` is not a string.

    Example:
        >>> lookup("loss", "MSE", {"mse": 1, "mae": 2}, "pass a function")
        1
        >>> try:
        ...     lookup("loss", "msee", {"mse": 1, "mae": 2}, "pass a function")
        ... except ValueError as e:
        ...     print(e)
        unknown loss 'msee'. Did you mean 'mse'? Known names: 'mae', 'mse'; or pass a function.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"a {kind} name must be a string, got {type(name).__name__}; or {alternative}."
        )
    key = name.lower()
    if key in table:
        return table[key]
    known = ", ".join(repr(k) for k in sorted(table))
    raise ValueError(
        f"unknown {kind} {name!r}.{did_you_mean(key, table)} Known names: {known}; "
        f"or {alternative}."
    )


def check_options(
    where: str, given: Iterable[str], known: Iterable[str], *, what: str = "option"
) -> None:
    """Raises a ``ValueError`` naming the first option in ``given`` not in ``known``.

    Args:
        where: who takes the options, for the message (``"loss 'huber'"``).
        given: the option names passed (a dict of options works).
        known: the option names accepted.
        what: the word for an option (``"hyperparameter"`` for optimizers).

    Raises:
        ValueError: if an option is unknown; the message names it (the first in
            sorted order), lists the known ones, and suggests close matches.

    Example:
        >>> check_options("loss 'huber'", ["delta"], ["delta"])  # all known: silent
        >>> try:
        ...     check_options("loss 'huber'", ["delt"], ["delta"])
        ... except ValueError as e:
        ...     print(e)
        loss 'huber' has no option 'delt'; its options are ['delta']. Did you mean 'delta'?
    """
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        takes = f"its {what}s are {known}" if known else f"it takes no {what}s"
        raise ValueError(
            f"{where} has no {what} {unknown[0]!r}; {takes}.{did_you_mean(unknown[0], known)}"
        )


def _option_names(fn: Callable, positional: int) -> list[str] | None:
    """The names ``fn`` accepts by keyword after ``positional`` arguments; ``None``: any."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # A callable without a signature Python can read.
        return None
    names = []
    for p in parameters:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            positional = 0
        elif p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            if positional > 0:
                positional -= 1
            elif p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
                names.append(p.name)
        elif p.kind is inspect.Parameter.KEYWORD_ONLY:
            names.append(p.name)
    return names


def bind_options(
    where: str, fn: Callable[..., T], options: Mapping[str, Any], *, positional: int = 0
) -> Callable[..., T]:
    """``functools.partial(fn, **options)``, once :func:`check_options` has passed.

    The options ``fn`` takes are the parameters it accepts by keyword after its first
    ``positional`` arguments (for a loss, ``predictions`` and ``targets``). A ``fn``
    with ``**kwargs``, or one whose signature cannot be read, accepts any option.

    Args:
        where: who takes the options, for the message (``"loss 'huber'"``).
        fn: the function.
        options: the values to bind by keyword.
        positional: how many leading arguments are the call's own, not options.

    Returns:
        ``fn`` itself when ``options`` is empty, else the partial.

    Raises:
        ValueError: for an option ``fn`` does not take (see :func:`check_options`).

    Example:
        >>> def huber(predictions, targets, *, delta=1.0):
        ...     return delta
        >>> bind_options("loss 'huber'", huber, {"delta": 2.0}, positional=2)(0, 0)
        2.0
        >>> try:
        ...     bind_options("loss 'huber'", huber, {"delt": 2.0}, positional=2)
        ... except ValueError as e:
        ...     print(e)
        loss 'huber' has no option 'delt'; its options are ['delta']. Did you mean 'delta'?
    """
    if not options:
        return fn
    known = _option_names(fn, positional)
    if known is not None:
        check_options(where, options, known)
    return functools.partial(fn, **options)


_INT64_MAX = 2**63 - 1


def check_positive_int(
    where: str, what: str, value: Any, *, minimum: int = 1, maximum: int = _INT64_MAX
) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum``; else a ``ValueError``.

    ``bool`` is refused (``True`` is an ``int`` to Python, never a count to a user).
    With ``minimum=0`` it checks a non-negative count. A count above ``maximum``
    (by default the largest int64, past which no array size or loop counter of JAX
    goes) is refused too.

    Args:
        where: who checks, for the message (``"Trainer.fit"``).
        what: the argument's name (``"batch_size"``).
        value: the value given; a Python or NumPy integer.
        minimum: the smallest value allowed.
        maximum: the largest value allowed.

    Returns:
        ``value`` as a Python ``int``.

    Raises:
        ValueError: if ``value`` is not an integer (a ``bool``, a float, a string)
            or is below ``minimum`` or above ``maximum``.

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
    if value > maximum:
        limit = "2**63 - 1, the largest int64" if maximum == _INT64_MAX else str(maximum)
        raise ValueError(f"{where}: {what} must be at most {limit}, got {value!r}.")
    return int(value)


def check_bool(where: str, what: str, value: Any) -> bool:
    """``value`` as a ``bool`` if it is ``True`` or ``False`` (Python's or NumPy's);
    else a ``TypeError``. A switch given ``"no"`` or ``0.5`` would otherwise read as
    on, silently.

    Example:
        >>> check_bool("Trainer.fit", "shuffle", False)
        False
        >>> try:
        ...     check_bool("Trainer.fit", "shuffle", "no")
        ... except TypeError as e:
        ...     print(e)
        Trainer.fit: shuffle must be True or False, got 'no'.
    """
    if not isinstance(value, (bool, np.bool_)):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else f"a {type(value).__name__}"
        raise TypeError(f"{where}: {what} must be True or False, got {shown}.")
    return bool(value)


def check_choice(where: str, what: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``; else a ``ValueError`` listing them.

    The match is exact (case-sensitive), and only strings match.

    Args:
        where: who checks, for the message (``"EarlyStopping"``).
        what: the argument's name (``"mode"``).
        value: the value given.
        choices: the strings allowed, in the order the message lists them.

    Returns:
        ``value``.

    Raises:
        ValueError: if ``value`` is not one of ``choices``.

    Example:
        >>> check_choice("EarlyStopping", "mode", "min", ("auto", "min", "max"))
        'min'
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


def check_key(where: str, what: str, key: Any) -> Any:
    """``key`` if it is one JAX random key; else a ``TypeError`` (a ``ValueError`` for
    an array of several keys).

    A key is a typed key (``jax.random.key(seed)``) of shape ``()``, or a raw
    ``uint32`` key (``jax.random.PRNGKey(seed)``) of shape ``(2,)``, or ``(4,)`` for
    the ``rbg`` implementations.

    Args:
        where: who checks, for the message (``"population.init"``).
        what: the argument's name (``"key"``).
        key: the value given.

    Returns:
        ``key``.

    Raises:
        TypeError: if ``key`` is not a key (a seed, ``None``, a NumPy array).
        ValueError: for an array of several keys.

    Example:
        >>> _ = check_key("population.init", "key", jax.random.key(0))
        >>> try:
        ...     check_key("population.init", "key", 0)
        ... except TypeError as e:
        ...     print(e)
        population.init: key must be a jax.random.key, got int 0. Use jax.random.key(seed).
    """
    if isinstance(key, jax.Array):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.shape == ():
                return key
            raise ValueError(
                f"{where}: {what} must be one random key, got an array of keys of shape "
                f"{key.shape}. Pass jax.random.key(seed), or one of those keys."
            )
        if key.dtype == jnp.uint32 and key.ndim == 1 and key.shape[0] in (2, 4):
            return key  # raw key data: threefry's (2,), rbg's (4,)
        got = f"an array of dtype {key.dtype} and shape {key.shape}"
    else:
        shown = repr(key)
        got = f"{type(key).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"
    raise TypeError(
        f"{where}: {what} must be a jax.random.key, got {got}. Use jax.random.key(seed)."
    )


def check_directory(where: str, what: str, path: Any) -> str:
    """``path`` as a string if it names a directory or nothing yet; else a ``ValueError``.

    For arguments that name a directory to be created or written into: an existing
    regular file (or anything else that is not a directory) there would fail later,
    deep in the first save.

    Args:
        where: who checks, for the message (``"Trainer.fit"``).
        what: the argument's name (``"checkpoint"``).
        path: a ``str`` or ``os.PathLike``.

    Returns:
        ``os.fspath(path)``.

    Raises:
        ValueError: if ``path`` is empty, or something that is not a directory
            exists there.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     check_directory("Trainer.fit", "checkpoint", tmp) == tmp
        True
        >>> with tempfile.NamedTemporaryFile() as f:
        ...     try:
        ...         check_directory("Trainer.fit", "checkpoint", f.name)
        ...     except ValueError as e:
        ...         print(str(e).replace(repr(f.name), "'run.txt'"))
        Trainer.fit: checkpoint directory 'run.txt' is an existing file, not a directory; \
pass a directory (it is created if missing), or move the file away.
    """
    path = os.fspath(path)
    if not path:
        raise ValueError(
            f"{where}: {what} directory is the empty path; name a directory (it is created "
            "if missing)."
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"{where}: {what} directory {path!r} is an existing file, not a directory; pass "
            "a directory (it is created if missing), or move the file away."
        )
    return path


_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1")


def higher_is_better(name: str) -> bool:
    """Whether a log named ``name`` improves upwards (accuracy-like), as Keras guesses.

    The one copy of the guess: a name containing ``acc``, ``auc``, ``precision``,
    ``recall`` or ``f1``, in any case (metrics keep the user's spelling, ``"ACC"``).

    Args:
        name: a log name such as ``"val_accuracy"`` or ``"loss"``.

    Returns:
        ``True`` for an accuracy-like name, ``False`` otherwise (losses, errors).

    Example:
        >>> higher_is_better("val_accuracy"), higher_is_better("val_ACC"), higher_is_better("loss")
        (True, True, False)
    """
    lowered = name.lower()
    return any(word in lowered for word in _HIGHER_IS_BETTER)


def resolve_mode(where: str, mode: str, monitor: str) -> str:
    """Checks ``mode`` (``"auto"``, ``"min"`` or ``"max"``) and resolves ``"auto"``.

    ``"auto"`` is ``"max"`` for accuracy-like names (:func:`higher_is_better`) and
    ``"min"`` otherwise.

    Args:
        where: who checks, for the message (``"EarlyStopping"``).
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        monitor: the log watched, e.g. ``"val_loss"``.

    Returns:
        ``"min"`` or ``"max"``.

    Raises:
        ValueError: for any other ``mode``.

    Example:
        >>> resolve_mode("EarlyStopping", "auto", "val_accuracy")
        'max'
        >>> resolve_mode("EarlyStopping", "auto", "val_loss")
        'min'
    """
    check_choice(where, "mode", mode, ("auto", "min", "max"))
    if mode == "auto":
        return "max" if higher_is_better(monitor) else "min"
    return mode


def _first_rows(rows: np.ndarray) -> str:
    """``"1, 4, 7, ..."``: the first five row numbers, for messages."""
    return ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")


def narrow(where: str, what: str, arr: np.ndarray) -> np.ndarray:
    """A 64-bit NumPy array in the dtype JAX computes in, refused where a value would change.

    JAX computes in 32 bits unless 64-bit mode is on, so ``fit`` and ``Layer.apply``
    cast NumPy float64 and int64 data to float32 and int32 themselves, silently
    where nothing is lost: an integer outside the narrow type's range would wrap,
    and a finite float64 beyond float32's range would become Inf, so those raise.

    Args:
        where: the entry point, for the message (``"Trainer.fit"``).
        what: the argument, for the message (``"x"``).
        arr: a NumPy array, batch axis first.

    Returns:
        ``arr`` itself when its dtype is already JAX's, else the cast copy.

    Raises:
        ValueError: naming the rows whose values would not survive the cast.

    Example:
        >>> narrow("fit", "x", np.ones((2, 3))).dtype
        dtype('float32')
        >>> narrow("fit", "x", np.array([[1e300]]))
        Traceback (most recent call last):
        ...
        ValueError: fit: x has finite float64 values that overflow float32 (largest \
magnitude 1e+300 > 3.4e+38) in 1 row(s): 0; JAX computes in float32 unless 64-bit mode \
is on, where they would become Inf. Rescale them (e.g. standardise the features), or \
enable jax.config.update('jax_enable_x64', True).
    """
    target = np.dtype(jax.dtypes.canonicalize_dtype(arr.dtype))
    if target == arr.dtype or not arr.size:
        return arr
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim else arr.reshape(1, 1)
    if jnp.issubdtype(arr.dtype, jnp.integer):
        info = np.iinfo(target)
        bad = ((flat < info.min) | (flat > info.max)).any(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"{where}: {what} has {arr.dtype} values outside the {target} range "
                f"[{info.min}, {info.max}] in {len(rows)} row(s): {_first_rows(rows)} (from "
                f"{flat.min()} to {flat.max()}); JAX computes in {target} unless 64-bit mode "
                "is on, and they would wrap around. Rescale them or pass floats, or "
                "enable jax.config.update('jax_enable_x64', True)."
            )
    elif jnp.issubdtype(arr.dtype, jnp.floating):
        big = np.finfo(target).max
        bad = (np.isfinite(flat) & (np.abs(flat) > big)).any(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"{where}: {what} has finite {arr.dtype} values that overflow {target} "
                f"(largest magnitude {np.abs(flat[bad]).max():.3g} > {big:.3g}) in "
                f"{len(rows)} row(s): {_first_rows(rows)}; JAX computes in {target} unless "
                "64-bit mode is on, where they would become Inf. Rescale them (e.g. "
                "standardise the features), or enable "
                "jax.config.update('jax_enable_x64', True)."
            )
    return arr.astype(target)
