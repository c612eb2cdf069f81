"""Data that does not fit in memory: batches from iterators, in chunks, prefetched.

``Trainer.fit`` accepts, instead of arrays, a *stream* of batches: an iterator or a
generator (one pass), any other iterable (iterated afresh each epoch), or a function
returning a fresh iterator per epoch. Each batch is ``(x, y)`` or ``(x, y,
sample_weight)``, pytrees of NumPy or JAX arrays with a leading batch axis.

The host groups ``k`` batches into a :class:`Chunk` (arrays ``(k, batch, ...)``): one
compiled ``lax.scan`` runs the ``k`` steps, so the host dispatches once per ``k``
steps (Keras's ``steps_per_execution``). A background thread (:func:`prefetch`)
builds and transfers the next chunks while the device runs the current one. A short
last batch is padded (with the epoch's first examples, as the in-memory path pads)
and masked; a short last chunk is padded with empty steps that change nothing. So
neither compiles a second program.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import queue
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxnn._checks import check_positive_int

__all__ = [
    "Chunk",
    "InFlight",
    "Position",
    "chunks",
    "epoch_batches",
    "first_batch",
    "inputs_only",
    "is_stream",
    "prefetch",
    "steps_per_chunk",
]

_ARRAYS = (list, tuple, dict, np.ndarray, jax.Array, np.generic, int, float)


class Chunk(NamedTuple):
    """``k`` batches stacked: ``x``, ``y`` ``(k, batch, ...)``, ``weight`` and ``mask``
    ``(k, batch)``; a step whose mask is all 0 is padding and is skipped.

    Attributes:
        x: inputs.
        y: targets.
        weight: per-example weights (1 when the stream gives none).
        mask: 1 for real examples, 0 for padding.
        steps: how many of the ``k`` steps are real (a Python int, on the host).
    """

    x: Any
    y: Any
    weight: Any
    mask: Any
    steps: int


def is_stream(x: Any) -> bool:
    """Whether ``x`` is a stream of batches rather than an array (or a dict of them).

    A list is an array (of rows) unless its first item is a batch ``(x, y)`` whose
    ``x`` is an array.

    Example:
        >>> is_stream(np.zeros((3, 2))), is_stream(iter([])), is_stream(lambda: iter([]))
        (False, True, True)
        >>> is_stream([(1.0, 2.0)]), is_stream([(np.zeros((4, 2)), np.zeros(4))])
        (False, True)
    """
    if callable(getattr(x, "iter_epoch", None)):
        return True  # a source that gives each epoch's batches
    if isinstance(x, list) and x and _is_batch(x[0]):
        return True  # a list of (x, y) batches, not a list of rows
    if isinstance(x, _ARRAYS) or hasattr(x, "__array__") or hasattr(x, "shape"):
        return False
    return callable(x) or hasattr(x, "__iter__") or hasattr(x, "__next__")


def _is_batch(item: Any) -> bool:
    """``(x, y)`` or ``(x, y, w)`` whose ``x`` is an array (or a dict of them)."""
    return (
        isinstance(item, tuple)
        and len(item) in (2, 3)
        and (isinstance(item[0], dict) or np.ndim(item[0]) >= 1)
    )


def epoch_batches(where: str, source: Any, epoch: int) -> Iterator[Any]:
    """A fresh iterator over one epoch's batches.

    A source with an ``iter_epoch(epoch)`` method (such as
    :class:`jaxnn.sources.ArrayStream`) is asked for that epoch's batches, so a
    resumed run reads the same batches as an uninterrupted one. A function is called;
    an iterator is used as it is (so a generator gives one pass: with
    ``steps_per_epoch`` the epochs take turns from it, without, a second epoch finds
    it used up and :func:`chunks` says so); another iterable is iterated again.

    Raises:
        ValueError: for a function that does not return an iterable.
    """
    if callable(getattr(source, "iter_epoch", None)):
        return iter(source.iter_epoch(epoch))
    if isinstance(source, Iterator):
        return source
    if callable(source):
        made = source()
        try:
            return iter(made)
        except TypeError:
            raise ValueError(
                f"{where}: the data function returned {type(made).__name__}, not an "
                "iterator of (x, y) batches."
            ) from None
    return iter(source)


def first_batch(where: str, source: Any, epoch: int = 0) -> tuple[tuple, Iterator[Any]]:
    """The first batch of an epoch, read and checked, and that epoch's batches with the
    first put back in front.

    The first batch gives the shapes that a program is compiled for before the stream
    runs.

    Raises:
        ValueError: as :func:`chunks`, for an empty or malformed first batch.

    Example:
        >>> batch, rest = first_batch("fit", iter([(np.ones((2, 3)), np.zeros(2))] * 3))
        >>> [a.shape for a in batch], len(list(rest))
        ([(2, 3), (2,), (2,)], 3)
    """
    batches = epoch_batches(where, source, epoch)
    head = next(chunks(where, batches, 1, steps=1))
    batch = jax.tree.map(lambda a: a[0], (head.x, head.y, head.weight))
    return batch, itertools.chain([batch], batches)


def inputs_only(batches: Iterable[Any]) -> Iterator[tuple]:
    """For ``predict``: each item as an ``(x, y)`` batch with dummy targets.

    An item is ``x`` itself, or a tuple ``(x,)``, ``(x, y)`` or ``(x, y,
    sample_weight)`` whose ``x`` is taken (so the batches of ``fit`` can be reused).

    Example:
        >>> [b[0].shape for b in inputs_only([np.ones((2, 3)), (np.ones((4, 3)), None)])]
        [(2, 3), (4, 3)]
    """
    for item in batches:
        x = item[0] if isinstance(item, tuple) and 1 <= len(item) <= 3 else item
        leaves = jax.tree.leaves(x)
        n = np.shape(leaves[0])[0] if leaves and np.ndim(leaves[0]) else 0
        yield x, np.zeros((n,), np.float32)


class Position:
    """Where a stream is, kept in checkpoints so that a resumed run reads on from there.

    Only an iterator with ``get_state()`` and ``set_state(state)`` (grain's dataset
    iterators and ``DataLoader`` iterators) has a position worth keeping: a function,
    an iterable and an ``iter_epoch`` source start each epoch afresh, so the epoch
    number alone places them. A plain generator cannot be moved; resuming from one
    warns, and the run reads on from wherever the generator is.

    Args:
        source: the stream given to ``fit``.
    """

    def __init__(self, source: Any):
        self.source = source
        self.movable = isinstance(source, Iterator) and all(
            callable(getattr(source, name, None)) for name in ("get_state", "set_state")
        )
        self.moved = False  # set_state was called by a resume

    def save(self) -> Any:
        """The position, JSON-safe (``None`` when the source has none)."""
        if not self.movable:
            return None
        state = self.source.get_state()
        if isinstance(state, bytes):
            return {"bytes": base64.b64encode(state).decode("ascii")}
        return {"state": state}

    def restore(self, where: str, saved: Any, epoch: int) -> None:
        """Moves the source to ``saved`` (then ``moved`` is true).

        Warns when a one-pass iterator cannot be moved back to epoch ``epoch``.
        """
        if saved is not None and self.movable:
            state = saved.get("state")
            self.source.set_state(base64.b64decode(saved["bytes"]) if "bytes" in saved else state)
            self.moved = True
            return
        if isinstance(self.source, Iterator) and epoch:
            warnings.warn(
                f"{where}: resuming after epoch {epoch} from a one-pass iterator that "
                "cannot be moved back (it has no get_state/set_state): training reads on "
                "from wherever the iterator is now, not where the interrupted run was. "
                "Pass a function returning each epoch's batches, an iter_epoch source "
                "(nn.ArrayStream) or a grain iterator to resume the data exactly.",
                stacklevel=5,
            )


def steps_per_chunk(batch_bytes: int, given: int | None) -> int:
    """``k``, the steps per compiled dispatch: ``given``, or chosen from the batch size.

    Small batches are bound by the per-dispatch cost (tens of microseconds on a
    CPU), so they get many steps per chunk; large ones few, so that a chunk holds at
    most about 64 MiB. About five chunks are alive at a time (one being stacked, two
    prefetched, two running: :class:`InFlight`), so streaming needs a few hundred
    MiB of host and device memory at most, whatever the size of the data.

    Example:
        >>> steps_per_chunk(4 * 10 * 5, None), steps_per_chunk(4 * 256 * 784, None)
        (64, 64)
        >>> steps_per_chunk(64 * 2**20, None), steps_per_chunk(1000, 3)
        (1, 3)
    """
    if given is not None:
        return check_positive_int("Trainer.fit", "steps_per_execution", given)
    return int(max(1, min(64, (64 * 2**20) // max(batch_bytes, 1))))


def _as_numpy(a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == np.float64 and not jax.config.jax_enable_x64:
        return arr.astype(np.float32)
    if arr.dtype == np.int64 and not jax.config.jax_enable_x64:
        return arr.astype(np.int32)
    return arr


def _parts(where: str, item: Any, index: int) -> tuple[Any, Any, Any]:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ValueError(
            f"{where}: batch {index} is {type(item).__name__}"
            + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
            + "; each batch must be (x, y) or (x, y, sample_weight). Yield tuples such as "
            "(x_batch, y_batch)."
        )
    x, y, w = (*item, None) if len(item) == 2 else item
    try:
        x, y = jax.tree.map(_as_numpy, (x, y))
        w = None if w is None else _as_numpy(w).astype(np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: batch {index} could not be read as arrays ({e}).") from e
    for leaf in jax.tree.leaves((x, y, w)):
        if not (np.issubdtype(leaf.dtype, np.number) or leaf.dtype == np.bool_):
            raise ValueError(
                f"{where}: batch {index} holds non-numeric data (dtype {leaf.dtype}); "
                "yield NumPy or JAX arrays of numbers."
            )
        if np.issubdtype(leaf.dtype, np.inexact) and leaf.ndim and not np.isfinite(leaf).all():
            rows = np.flatnonzero(~np.isfinite(leaf).reshape(len(leaf), -1).all(axis=1))
            raise ValueError(
                f"{where}: batch {index} has NaN or Inf values in row(s) "
                f"{', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''}. Clean "
                "or drop those rows in the stream."
            )
    return x, y, w


def _signature(tree: Any) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((leaf.shape[1:], leaf.dtype) for leaf in leaves)


def chunks(
    where: str,
    batches: Iterator[Any],
    k: int,
    *,
    steps: int | None = None,
) -> Iterator[Chunk]:
    """Groups batches into :class:`Chunk` s of ``k`` steps, on the host.

    The first batch fixes the batch size, the structure, the per-example shapes and
    the dtypes; a later batch may only be smaller (the last one). A short batch is
    padded with the epoch's first examples and masked; a short last chunk with
    empty steps. With ``steps``, the epoch ends after that many batches.

    Raises:
        ValueError: for an empty stream, a batch that is not ``(x, y)`` or
            ``(x, y, w)``, non-numeric data, a batch whose structure, shapes or
            dtypes change, a batch larger than the first, a smaller batch that is
            not the last, or a stream that ends before ``steps`` batches.

    Example:
        >>> data = [(np.ones((4, 2)), np.zeros((4, 1)))] * 2 + [(np.ones((3, 2)), np.zeros((3, 1)))]
        >>> got = list(chunks("fit", iter(data), 2))
        >>> [c.steps for c in got], got[1].mask.tolist()
        ([2, 1], [[True, True, True, False], [False, False, False, False]])
    """
    first: tuple | None = None
    signature, size, short, short_n, count = None, 0, None, 0, 0
    pending: list[tuple] = []
    # islice, so that the batch after the epoch's last stays in a shared iterator.
    for index, item in enumerate(batches if steps is None else itertools.islice(batches, steps)):
        count = index + 1
        x, y, w = _parts(where, item, index)
        sizes = {leaf.shape[0] if leaf.ndim else -1 for leaf in jax.tree.leaves((x, y, w))}
        if len(sizes) != 1 or -1 in sizes:
            raise ValueError(
                f"{where}: batch {index} has arrays of different lengths or a scalar "
                f"(leading sizes {sorted(sizes)}); every array of a batch needs the same "
                "number of examples."
            )
        n = sizes.pop()
        if w is None:
            w = np.ones((n,), np.float32)
        if first is None:
            first, size, signature = (x, y, w), n, _signature((x, y, w))
        elif _signature((x, y, w)) != signature:
            raise ValueError(
                f"{where}: batch {index} has another structure, per-example shape or "
                f"dtype than batch 0: expected {_describe(signature)}, got "
                f"{_describe(_signature((x, y, w)))}. Every batch must look like the "
                "first (only the last may be smaller)."
            )
        if short is not None:
            raise ValueError(
                f"{where}: batch {short} had {short_n} examples, fewer than the {size} of "
                "batch 0, but was not the last; only the last batch may be smaller. Yield "
                "full batches."
            )
        if n > size:
            raise ValueError(
                f"{where}: batch {index} has {n} examples, more than the {size} of batch 0; "
                "the first batch sets the batch size. Yield batches of one size (the last "
                "may be smaller)."
            )
        mask = np.ones((size,), bool)
        if n < size:
            short, short_n = index, n
            missing = size - n
            x, y, w = jax.tree.map(
                lambda a, f, m=missing: np.concatenate([a, f[:m]]), (x, y, w), first
            )
            mask[n:] = False
        pending.append((x, y, w, mask))
        if len(pending) == k:
            yield _stack(pending, k)
            pending = []
    if first is None:
        raise ValueError(
            f"{where}: the data stream yielded no batches. Check that it yields (x, y) "
            "tuples; a generator or other iterator gives one pass only, so a second epoch "
            "finds it used up: pass a function that returns a fresh iterator per epoch "
            "(lambda: make_batches()) or an iterable that can be iterated again."
        )
    if steps is not None and count < steps:
        raise ValueError(
            f"{where}: steps_per_epoch={steps}, but the data stream ended after {count} "
            "batches. Lower steps_per_epoch, or pass a stream that yields enough (a "
            "function returning a fresh iterator per epoch)."
        )
    if pending:
        yield _stack(pending, k)


def _describe(signature: tuple) -> str:
    treedef, leaves = signature
    shapes = ", ".join(
        f"(batch, {', '.join(map(str, s))}) {d}" if s else f"(batch,) {d}" for s, d in leaves
    )
    return f"{treedef.num_leaves} arrays [{shapes}]"


def _stack(pending: list[tuple], k: int) -> Chunk:
    steps = len(pending)
    while len(pending) < k:  # empty steps: all masked, skipped by the program
        x, y, w, mask = pending[0]
        pending.append((x, y, w, np.zeros_like(mask)))
    x, y, w, mask = (
        jax.tree.map(lambda *a: np.stack(a), *part) for part in zip(*pending, strict=True)
    )
    return Chunk(x, y, w, mask, steps)


class InFlight:
    """Bounds how many dispatched chunks may still be running.

    JAX dispatches asynchronously, so a host loop can run far ahead of the device,
    each chunk it dispatched keeping its input buffers alive. :meth:`add` records a
    chunk's output and waits for the one ``depth`` dispatches back, so at most
    ``depth`` chunks are in flight (plus the prefetched ones), and memory does not
    grow with the steps per chunk.

    Example:
        >>> bound = InFlight(depth=2)
        >>> for i in range(5):
        ...     bound.add(jax.numpy.ones(3) * i)
        >>> len(bound.outputs)
        2
    """

    def __init__(self, depth: int = 2):
        self.depth = check_positive_int("InFlight", "depth", depth)
        self.outputs: list[Any] = []

    def add(self, output: Any) -> None:
        """Records a dispatched chunk's output; waits for the oldest beyond ``depth``."""
        self.outputs.append(output)
        if len(self.outputs) > self.depth:
            jax.block_until_ready(self.outputs.pop(0))


def prefetch(items: Iterable[Any], put: Callable[[Any], Any], depth: int = 2) -> Iterator[Any]:
    """``put(item)`` for every item, made ``depth`` ahead by a background thread.

    The thread runs the host work (reading, stacking, the transfer ``put`` starts)
    while the caller's device work runs. An exception in the thread is raised in the
    caller, with its traceback; the thread stops when the caller stops iterating
    (the generator is closed) or the items end.

    Example:
        >>> list(prefetch(range(5), lambda i: i * 10))
        [0, 10, 20, 30, 40]
    """
    check_positive_int("prefetch", "depth", depth)
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                placed = put(item)
                while not stop.is_set():
                    try:
                        slots.put((placed, None), timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((end, None))
        except BaseException as e:  # handed to the caller, who raises it
            slots.put((end, e))

    thread = threading.Thread(target=produce, name="jaxnn-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):  # unblock a producer on a full queue
                slots.get_nowait()
            thread.join(timeout=0.05)
