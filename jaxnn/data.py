"""Turning the user's data into device arrays and batches: checks, splits, shuffles.

Shared by :class:`~jaxnn.Trainer` and :mod:`jaxnn.population`, so that both refuse
bad data with the same words and shuffle and batch it the same way:

* :func:`prepare` checks and converts ``x``, ``y`` and ``sample_weight`` (NumPy,
  JAX, nested lists or dicts of arrays) and counts the examples;
* :func:`validation` and :func:`split_validation` build the held-out set;
* :func:`shuffled_order`, :func:`batch_indices` and :func:`take` turn an epoch into
  ``(batches, batch_size)`` gathers inside a compiled program, the last partial
  batch padded with real examples and masked out.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._checks import check_positive_int, narrow
from jaxnn._types import Params, PRNGKey, State
from jaxnn.core import Layer, output_spec

__all__ = [
    "Data",
    "batch_indices",
    "check_batch_size",
    "check_input_ids",
    "check_target_values",
    "check_validation_data",
    "check_validation_split",
    "class_labels",
    "class_table",
    "class_weights",
    "num_examples",
    "prepare",
    "prepare_members",
    "shuffled_order",
    "split_validation",
    "take",
    "validation",
]


class Data(NamedTuple):
    """Checked data on the device: inputs, targets and one weight per example.

    Attributes:
        x: inputs, an array or a dict of arrays, each ``(examples, ...)``.
        y: targets ``(examples, ...)``, or ``None`` where none are needed (predict).
        weight: ``(examples,)`` float32 weights; all 1 when none were given.
    """

    x: Any
    y: Any
    weight: jax.Array


def num_examples(where: str, what: str, tree: Any) -> int:
    """The common leading length of every array in ``tree``.

    Raises:
        ValueError: for an empty tree, a scalar, or arrays of different lengths.

    Example:
        >>> num_examples("fit", "x", {"a": np.zeros((3, 2)), "b": np.zeros(3)})
        3
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{where}: {what} is empty; pass arrays with a leading batch axis.")
    sizes = set()
    for leaf in leaves:
        if np.ndim(leaf) == 0:
            raise ValueError(
                f"{where}: {what} must have a leading batch axis, got a scalar. "
                "Pass an array of shape (examples, ...)."
            )
        sizes.add(np.shape(leaf)[0])
    if len(sizes) > 1:
        raise ValueError(
            f"{where}: the arrays in {what} have different lengths {sorted(sizes)}; "
            "every array needs the same number of examples."
        )
    return sizes.pop()


def _rows(rows: np.ndarray) -> str:
    """``"1, 4, 7, ..."``: the first five row numbers, for messages."""
    return ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")


def _check_dtype(where: str, what: str, dtype: Any) -> None:
    """Refuses what no layer can compute with: strings, objects, dates, complex numbers."""
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise ValueError(
            f"{where}: {what} is complex (dtype {dtype}); jaxnn's layers and losses are "
            "real-valued and would drop the imaginary part. Pass real arrays, e.g. the "
            "real and imaginary parts as two features: np.stack([z.real, z.imag], axis=-1)."
        )
    if not (jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)):
        raise ValueError(
            f"{where}: {what} is not numeric (got dtype {dtype}). Pass a NumPy or JAX "
            "array, or a list of equal-length rows of numbers (encode strings or "
            "categories as integer ids or one-hot floats first)."
        )


def _to_array(where: str, what: str, a: Any) -> jax.Array:
    if isinstance(a, jax.Array):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{where}: {what} could not be read as an array ({type(a).__name__}: {e}). "
                "Pass a NumPy or JAX array, or a list of equal-length rows."
            ) from e
    _check_dtype(where, what, arr.dtype)
    if jnp.issubdtype(arr.dtype, jnp.inexact) and arr.ndim and arr.size:
        # NumPy data is checked on the host; device data in one compiled call.
        finite = (
            np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1)
            if isinstance(arr, np.ndarray)
            else np.asarray(_finite_rows(arr))
        )
        if not finite.all():
            rows = np.flatnonzero(~finite)
            raise ValueError(
                f"{where}: {what} has NaN or Inf values in {len(rows)} row(s): "
                f"{_rows(rows)}. Clean or drop those rows before training."
            )
    if isinstance(arr, np.ndarray):
        # device_put copies host data without compiling anything (jnp.asarray compiles
        # a small program per shape on some JAX versions).
        return jax.device_put(narrow(where, what, arr))
    return arr


@jax.jit
def _finite_rows(a: jax.Array) -> jax.Array:
    return jnp.isfinite(a).reshape(a.shape[0], -1).all(axis=1)


def _to_tree(where: str, what: str, data: Any) -> Any:
    """A dict of inputs stays a dict of arrays; anything else (arrays, NumPy, nested
    lists of numbers) is one array."""
    if isinstance(data, dict):
        return {k: _to_tree(where, f"{what}[{k!r}]", v) for k, v in data.items()}
    return _to_array(where, what, data)


def prepare(
    where: str, x: Any, y: Any = None, sample_weight: Any = None, *, need_y: bool = False
) -> tuple[Data, int]:
    """Checks and converts ``x``, ``y`` and ``sample_weight`` into device arrays.

    float64 and int64 NumPy data become float32 and int32 (unless 64-bit mode is on),
    as ``jnp.asarray`` would make them, but never silently: an integer outside the
    int32 range (it would wrap) or a finite float64 beyond float32's range (it would
    become Inf) is an error. NaN or Inf rows, complex numbers, strings and objects
    are refused, and so are negative weights. Everything is checked once, on the
    concrete arrays, before any compiled step.

    Args:
        where: the entry point, for messages (``"Trainer.fit"``).
        x: inputs ``(n, ...)``: an array, a list of rows, or a dict of arrays.
        y: targets ``(n, ...)``, or ``None``.
        sample_weight: ``(n,)`` weights, or ``None`` for all ones.
        need_y: refuse ``y=None``.

    Returns:
        ``(data, n)``: the :class:`Data` and the number of examples.

    Raises:
        ValueError: for missing or empty data, NaN or Inf values, values that do
            not fit the 32-bit dtype JAX computes in, complex or non-numeric arrays,
            ``x`` and ``y`` of different lengths, or weights of the wrong shape or
            below 0.

    Example:
        >>> data, n = prepare("fit", [[1.0, 2.0], [3.0, 4.0]], [0, 1])
        >>> n, data.x.dtype, data.weight.tolist()
        (2, dtype('float32'), [1.0, 1.0])
    """
    if x is None:
        raise ValueError(f"{where}: x is None; pass the input data.")
    if need_y and y is None:
        raise ValueError(f"{where}: y is None; pass the targets.")
    x = _to_tree(where, "x", x)
    n = num_examples(where, "x", x)
    if n == 0:
        raise ValueError(f"{where}: x has no examples (length 0); pass at least one example.")
    if y is not None:
        y = _to_tree(where, "y", y)
        ny = num_examples(where, "y", y)
        if ny != n:
            raise ValueError(
                f"{where}: x has {n} examples but y has {ny}; x and y need the same "
                "length (one target per example)."
            )
    if sample_weight is None:
        weight = jax.device_put(np.ones((n,), np.float32))
    else:
        weight = _to_array(where, "sample_weight", sample_weight)
        if weight.shape != (n,):
            raise ValueError(
                f"{where}: sample_weight has shape {tuple(weight.shape)}, expected "
                f"({n},): one weight per example."
            )
        negative = np.asarray(weight < 0) if weight.size else np.zeros(0, bool)
        if negative.any():
            rows = np.flatnonzero(negative)
            raise ValueError(
                f"{where}: sample_weight has negative values in {len(rows)} row(s): "
                f"{_rows(rows)}; a weight says how much an example counts and must be "
                ">= 0 (0 leaves the example out). Clip or drop those weights."
            )
        weight = weight.astype(jnp.float32)
    return Data(x, y, weight), n


def validation(where: str, validation_data: Any) -> tuple[Data, int]:
    """Checks ``validation_data``, ``(x_val, y_val)`` or ``(x_val, y_val, weights)``.

    Raises:
        ValueError: for anything else, or bad arrays as :func:`prepare`.

    Example:
        >>> data, n = validation("fit", (np.zeros((4, 2)), np.ones((4, 1))))
        >>> n
        4
    """
    check_validation_data(where, validation_data)
    return prepare(f"{where} (validation_data)", *validation_data, need_y=True)


def check_validation_data(where: str, validation_data: Any) -> None:
    """Refuses ``validation_data`` that is not ``(x_val, y_val)`` or ``(x_val, y_val,
    weights)``, before any of it is read.

    Raises:
        ValueError: naming what came.

    Example:
        >>> check_validation_data("fit", (np.zeros((4, 2)), np.ones(4)))  # fine: silent
    """
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        length = (
            f" of length {len(validation_data)}"
            if isinstance(validation_data, (tuple, list))
            else ""
        )
        raise ValueError(
            f"{where}: validation_data must be (x_val, y_val) or (x_val, y_val, weights), "
            f"got {type(validation_data).__name__}{length}."
        )


def check_validation_split(where: str, fraction: Any) -> float:
    """``validation_split`` as a ``float`` in ``[0, 1)``; 0 holds nothing out.

    Raises:
        ValueError: for anything but a real number in ``[0, 1)``.

    Example:
        >>> check_validation_split("fit", 0.2), check_validation_split("fit", 0)
        (0.2, 0.0)
    """
    if isinstance(fraction, (bool, np.bool_)) or not isinstance(
        fraction, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"{where}: validation_split must be a number, got {fraction!r}.")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{where}: validation_split must lie in [0, 1), got {fraction!r}.")
    return float(fraction)


def split_validation(
    where: str, data: Data, n: int, fraction: float, *, axis: int = 0
) -> tuple[Data, Data, int]:
    """Holds out the last ``fraction`` of the examples (before shuffling, as Keras).

    Args:
        where: the entry point, for messages.
        data: the checked data.
        n: its number of examples (along ``axis``).
        fraction: in ``(0, 1)``.
        axis: the example axis: 0, or 1 for per-member data ``(members, examples, ...)``.

    Returns:
        ``(train, held_out, train_examples)``.

    Raises:
        ValueError: for a fraction outside ``(0, 1)`` or one that leaves either part
            empty.

    Example:
        >>> data, n = prepare("fit", np.arange(10.0)[:, None], np.arange(10))
        >>> train, held_out, m = split_validation("fit", data, n, 0.2)
        >>> m, held_out.y.tolist()
        (8, [8, 9])
    """
    fraction = check_validation_split(where, fraction)
    held = int(n * fraction)
    if held == 0 or held == n:
        raise ValueError(
            f"{where}: validation_split={fraction} of {n} examples leaves {n - held} for "
            f"training and {held} for validation; both need at least one. Change the "
            "split or pass validation_data."
        )
    cut = n - held

    def part(start: int, stop: int) -> Data:
        return jax.tree.map(lambda a: jax.lax.slice_in_dim(a, start, stop, axis=axis), data)

    return part(0, cut), part(cut, n), cut


def check_target_values(
    where: str,
    loss: Any,
    model: Layer,
    params: Params,
    model_state: State,
    data: Data | None,
    *,
    stacked: bool = False,
    member_data: bool = False,
) -> None:
    """Runs the loss's own target check (``loss.check_targets``) on the concrete
    targets, once, before any compiled step: inside one a target outside the loss's
    domain (a class label past the last class, a binary target of 2) could only turn
    into NaN or a negative loss.

    The model is traced for its output spec (shapes only, nothing computed) when the
    loss has a check; a loss without one costs nothing.

    Args:
        where: the entry point, for messages.
        loss: a :class:`~jaxnn.losses.Loss` (anything with ``check_targets``).
        model: the model, for the predictions' spec (the number of classes).
        params: its params; with ``stacked``, a population's ``(members, ...)``.
        model_state: its model state, laid out as ``params``.
        data: the checked data; ``None`` (or no targets) checks nothing.
        stacked: whether ``params`` and ``model_state`` have a leading member axis.
        member_data: whether ``data`` has a leading member axis.

    Raises:
        ValueError: from the loss's check.

    Example:
        >>> from jaxnn import Dense, losses
        >>> model = Dense(3)
        >>> params, _ = model.init(jax.random.key(0), jnp.zeros((1, 2)))
        >>> data, _ = prepare("fit", np.zeros((2, 2)), np.array([0, 5]))
        >>> check_target_values("fit", losses.get("sparse_categorical_crossentropy"), model,
        ...                     params, {}, data)
        Traceback (most recent call last):
        ...
        ValueError: fit: sparse_categorical_crossentropy: class labels must lie in [0, 3) \
for predictions with 3 classes, got labels from 0 to 5. Map the labels to 0..2, or give the \
last layer more outputs.
    """
    if data is not None:
        check_input_ids(where, model, params, data.x)
    check = getattr(loss, "check_targets", None)
    if check is None or data is None or data.y is None:
        return
    one = lambda a: jax.ShapeDtypeStruct(
        np.shape(a)[1:], jax.dtypes.canonicalize_dtype(a.dtype, allow_extended_dtype=True)
    )
    if stacked:
        params, model_state = jax.tree.map(one, (params, model_state))
    x = jax.tree.map(one, data.x) if member_data else data.x
    try:
        hash(model)
    except TypeError:  # a layer holding something unhashable: trace it afresh
        predictions = output_spec(model, params, model_state, x)
    else:  # traced once per model and shapes, however many fits follow
        predictions = _output_spec.eval_shape(model, params, model_state, x)
    check(where, data.y, predictions)


def check_input_ids(where: str, model: Layer, params: Params, x: Any) -> None:
    """When the model's first layer (through nested ``Sequential`` s) is an
    ``Embedding``, checks the concrete input ids against its table, once, at the
    door: inside a compiled step an id past the table can only turn into a NaN row.

    Raises:
        ValueError: for an id outside ``[0, rows of the table)``.

    Example:
        >>> from jaxnn import Embedding, Sequential, Dense
        >>> model = Sequential(Embedding(10, 4), Dense(1))
        >>> params, _ = model.init(jax.random.key(0), jnp.zeros((1, 3), jnp.int32))
        >>> check_input_ids("predict", model, params, np.array([[1, 2, 12]]))
        Traceback (most recent call last):
        ...
        ValueError: predict: the model's first layer, Embedding 'embedding', has 10 rows, \
but the input holds ids from 1 to 12; ids must lie in [0, 10). Map them into the \
vocabulary, or make num_embeddings larger.
    """
    layer, path = model, []
    while layer.kind == "Sequential" and layer.children:
        name, layer = layer.children[0]
        path.append(name)
    if layer.kind != "Embedding" or not hasattr(x, "dtype") or not np.size(x):
        return
    table = params
    for name in path:
        table = table.get(name, {}) if isinstance(table, dict) else {}
    table = table.get("embedding") if isinstance(table, dict) else None
    if table is None or not jnp.issubdtype(x.dtype, jnp.integer):
        return  # the layer's own checks say what is wrong
    rows = int(np.shape(table)[-2])
    host = np.asarray(jax.device_get(x))
    lo, hi = int(host.min()), int(host.max())
    if lo < 0 or hi >= rows:
        label = f"Embedding {'/'.join(path)!r}" if path else "Embedding"
        raise ValueError(
            f"{where}: the model's first layer, {label}, has {rows} rows, but the input "
            f"holds ids from {lo} to {hi}; ids must lie in [0, {rows}). Map them into the "
            "vocabulary, or make num_embeddings larger."
        )


def _inference(model: Layer, params: Params, model_state: State, x: Any) -> Any:
    return model.apply(params, model_state, x, key=None, training=False)[0]


_output_spec = jax.jit(_inference, static_argnums=0)


def check_batch_size(where: str, batch_size: Any) -> int:
    """``batch_size`` as an ``int``, or a ``ValueError`` unless it is a positive int.

    Example:
        >>> check_batch_size("fit", 32)
        32
    """
    return check_positive_int(where, "batch_size", batch_size)


def shuffled_order(key: PRNGKey, n: int) -> jax.Array:
    """A uniformly random permutation of ``range(n)``, by sorts of one ``uint32`` array.

    ``jax.random.permutation`` sorts (random key, index) pairs, a two-operand sort
    that XLA's CPU backend runs about five times slower than a sort of one array
    (``benchmarks/population.py`` spends most of its shuffle time there). Here each
    round packs random bits (high) and the position (low ``b`` bits) into one
    ``uint32``, sorts that, and reads the positions back from the low bits. Equal
    random parts keep the previous round's (random) order. The rounds together draw
    at least ``3 log2 n`` random bits, the rule ``jax.random.permutation`` follows,
    so the result is as uniform as its. Past ``2**24`` examples it falls back to
    ``jax.random.permutation``.

    Args:
        key: the random key.
        n: the number of items, a Python int.

    Returns:
        ``(n,)`` int32 indices, a permutation of ``range(n)``.

    Example:
        >>> sorted(shuffled_order(jax.random.key(0), 5).tolist())
        [0, 1, 2, 3, 4]
    """
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 24:
        return jax.random.permutation(key, n)
    low = (1 << index_bits) - 1
    rounds = max(1, math.ceil(3 * math.log2(max(n, 2)) / (32 - index_bits)))
    position = jnp.arange(n, dtype=jnp.uint32)
    order = jnp.arange(n, dtype=jnp.int32)
    for round_key in jax.random.split(key, rounds):
        bits = jax.random.bits(round_key, (n,), jnp.uint32)
        packed = (bits & jnp.uint32(0xFFFFFFFF ^ low)) | position
        order = order[(jnp.sort(packed) & jnp.uint32(low)).astype(jnp.int32)]
    return order


def batch_indices(order: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Indices of shape ``(batches, batch_size)`` and a matching 0/1 mask.

    The last batch is filled up with examples from the start of ``order`` (real data,
    so statistics such as BatchNorm's stay sensible); the mask marks them out.

    Example:
        >>> idx, mask = batch_indices(jnp.arange(5), 5, 2)
        >>> idx.tolist(), mask.tolist()
        ([[0, 1], [2, 3], [4, 0]], [[True, True], [True, True], [True, False]])
    """
    num_batches = -(-n // batch_size)
    slots = jnp.arange(num_batches * batch_size)
    idx = order[slots % n].reshape(num_batches, batch_size)
    mask = (slots < n).reshape(num_batches, batch_size)
    return idx, mask


def take(tree: Any, idx: jax.Array) -> Any:
    """``a[idx]`` along the leading axis for every array in ``tree``.

    Example:
        >>> take({"a": jnp.arange(4)}, jnp.array([3, 0]))["a"].tolist()
        [3, 0]
    """
    return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), tree)


def prepare_members(
    where: str, x: Any, y: Any, sample_weight: Any, members: int
) -> tuple[Data, int]:
    """Checks per-member data ``(members, examples, ...)``, as :func:`prepare` checks
    shared data; returns it and the number of examples per member.

    Args:
        where: the entry point, for messages.
        x: inputs ``(members, examples, ...)`` (or a dict of such arrays).
        y: targets ``(members, examples, ...)``.
        sample_weight: ``(members, examples)`` weights, or ``None`` for all ones.
        members: the number of members.

    Returns:
        ``(data, examples)``; ``data.weight`` is ``(members, examples)``.

    Raises:
        ValueError: for a leading axis that is not ``members``, or bad data as
            :func:`prepare`.

    Example:
        >>> data, examples = prepare_members("fit", np.zeros((4, 10, 3)), np.zeros((4, 10)),
        ...                                  None, 4)
        >>> examples, data.weight.shape
        (10, (4, 10))
    """
    for what, tree in (("x", x), ("y", y), ("sample_weight", sample_weight)):
        for leaf in jax.tree.leaves(tree):
            bad_rank = np.ndim(leaf) != 2 if what == "sample_weight" else np.ndim(leaf) < 2
            if bad_rank or np.shape(leaf)[0] != members:
                layout = "examples" if what == "sample_weight" else "examples, ..."
                raise ValueError(
                    f"{where}: with member_data=True, {what} needs shape (members={members}, "
                    f"{layout}), got {np.shape(leaf)}."
                )
    flat = lambda t: jax.tree.map(lambda a: np.asarray(a).reshape(-1, *np.shape(a)[2:]), t)
    w = None if sample_weight is None else np.asarray(sample_weight).reshape(-1)
    prepare(where, flat(x), flat(y), w)  # the checks, on all members' rows at once
    x, y = (jax.tree.map(jnp.asarray, t) for t in (x, y))
    examples = jax.tree.leaves(x)[0].shape[1]
    if sample_weight is None:
        weight = jnp.ones((members, examples), jnp.float32)
    else:
        weight = jnp.asarray(sample_weight, jnp.float32)
    return Data(x, y, weight), examples


def class_weights(where: str, class_weight: Any, y: Any, predictions: Any) -> jax.Array:
    """Keras's ``class_weight`` as one weight per example, to multiply into the others.

    The class of an example is its target: the 0/1 label of a one-output (binary)
    model, the integer label of sparse targets ``(n,)`` or ``(n, 1)``, or the argmax
    of one-hot targets ``(n, classes)``. A class the dict leaves out weighs 1, as
    in Keras.

    Args:
        where: the caller, for messages (``"Trainer.fit"``).
        class_weight: a dict from class index to a non-negative weight.
        y: the targets, ``(n,)``, ``(n, 1)`` or ``(n, classes)``.
        predictions: the model's output spec with its batch axis (anything with a
            ``shape``): its last axis gives the number of classes (1: binary).

    Returns:
        ``(n,)`` float32 weights.

    Raises:
        TypeError: if ``class_weight`` is not a dict.
        ValueError: for a key that is not a class of the model, a negative or
            non-finite weight, targets that are not one array of those shapes, or
            sparse targets that are not integer labels of the model's classes.

    Example:
        >>> import jax
        >>> out = jax.ShapeDtypeStruct((4, 1), "float32")  # a binary model
        >>> class_weights("fit", {0: 1.0, 1: 3.0}, np.array([0, 1, 1, 0]), out).tolist()
        [1.0, 3.0, 3.0, 1.0]
    """
    labels, classes = class_labels(where, y, predictions)
    return jnp.asarray(class_table(where, class_weight, classes)[labels], jnp.float32)


def class_labels(where: str, y: Any, predictions: Any) -> tuple[np.ndarray, int]:
    """The class of each example, as :func:`class_weights` reads it, and the number
    of classes.

    Args:
        where: the caller, for messages (``"population.fit"``).
        y: the targets, ``(n,)``, ``(n, 1)`` or ``(n, classes)``.
        predictions: the model's output spec with its batch axis: its last axis gives
            the number of classes (1: binary, 2 classes).

    Returns:
        ``(labels, classes)``: ``(n,)`` int64 class indices and the class count.

    Raises:
        ValueError: as :func:`class_weights`, for targets it cannot read.

    Example:
        >>> import jax
        >>> out = jax.ShapeDtypeStruct((3, 3), "float32")
        >>> labels, classes = class_labels("fit", np.eye(3)[[2, 0, 1]], out)
        >>> labels.tolist(), classes
        ([2, 0, 1], 3)
    """
    if not isinstance(y, (jax.Array, np.ndarray)):
        raise ValueError(
            f"{where}: class_weight needs the targets as one array, got "
            f"{type(y).__name__}. Pass sample_weight instead."
        )
    shape = tuple(predictions.shape)
    classes = 2 if len(shape) == 1 or shape[-1] == 1 else shape[-1]
    labels = np.asarray(y)
    if labels.ndim > 2 or (labels.ndim == 2 and labels.shape[1] not in (1, classes)):
        raise ValueError(
            f"{where}: class_weight needs targets (n,), (n, 1) or one-hot (n, {classes}), "
            f"got shape {labels.shape}. Pass per-example weights as sample_weight instead."
        )
    if labels.ndim == 2 and labels.shape[1] == classes and classes > 1 and shape[-1] != 1:
        return np.argmax(labels, axis=1), classes
    labels = labels.reshape(-1)
    whole = np.isfinite(labels) & (labels == np.round(labels))
    inside = whole & (labels >= 0) & (labels < classes)
    if not np.all(inside):
        row = int(np.argmin(inside))
        raise ValueError(
            f"{where}: class_weight needs integer class labels in [0, {classes}), but "
            f"target {row} is {labels[row]!r}. Pass labels (or one-hot targets), or "
            "per-example weights as sample_weight."
        )
    return labels.astype(np.int64), classes


def class_table(where: str, class_weight: Any, classes: int) -> np.ndarray:
    """Keras's ``class_weight`` dict as a ``(classes,)`` float32 table (1 where left out).

    Raises:
        TypeError: if ``class_weight`` is not a dict.
        ValueError: for a key that is not a class index, or a weight that is negative
            or not finite.

    Example:
        >>> class_table("fit", {1: 3.0}, 3).tolist()
        [1.0, 3.0, 1.0]
    """
    if not isinstance(class_weight, dict):
        raise TypeError(
            f"{where}: class_weight must be a dict from class index to weight, such as "
            f"{{0: 1.0, 1: 5.0}}, got {type(class_weight).__name__}."
        )
    table = np.ones(classes, np.float32)
    for key, value in class_weight.items():
        is_int = isinstance(key, (int, np.integer)) and not isinstance(key, bool)
        if not is_int or not 0 <= key < classes:
            raise ValueError(
                f"{where}: class_weight has the key {key!r}, but the model has {classes} "
                f"classes, 0 to {classes - 1}. Use class indices as keys."
            )
        ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        if not ok or not np.isfinite(value) or value < 0:
            raise ValueError(
                f"{where}: class_weight[{key}] is {value!r}; a weight must be a finite number >= 0."
            )
        table[int(key)] = value
    return table
