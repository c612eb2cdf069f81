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
import json
import math
import queue
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxnn._checks import check_positive_int

__all__ = [
    "Chunk",
    "ChunkBuffers",
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

    ``fit`` saves it at the end of an epoch, once the prefetch thread has stopped,
    and :func:`chunks` reads no batch past the epoch's last (``steps_per_epoch``),
    so the position is where the program stopped reading, never ahead of it.

    With several processes each streams its own batches from its own iterator, so
    each has its own position: :meth:`save` gathers them all (a collective, which
    every process calls), the checkpoint keeps them as ``{"processes": [...]}`` in
    process order, and :meth:`restore` moves each process's iterator to its own.

    Args:
        source: the stream given to ``fit``.

    Example:
        >>> class Counter:  # an iterator with a position, as grain's are
        ...     def __init__(self): self.i = 0
        ...     def __iter__(self): return self
        ...     def __next__(self): self.i += 1; return self.i
        ...     def get_state(self): return {"i": self.i}
        ...     def set_state(self, state): self.i = state["i"]
        >>> counter = Counter(); _ = next(counter), next(counter)
        >>> saved = Position(counter).save(); saved
        {'state': {'i': 2}}
        >>> again = Position(Counter()); again.restore("fit", saved, epoch=1)
        >>> again.moved, next(again.source)
        (True, 3)
    """

    def __init__(self, source: Any):
        self.source = source
        self.movable = isinstance(source, Iterator) and all(
            callable(getattr(source, name, None)) for name in ("get_state", "set_state")
        )
        self.moved = False  # set_state was called by a resume

    def _own(self) -> Any:
        if not self.movable:
            return None
        state = self.source.get_state()
        if isinstance(state, bytes):
            return {"bytes": base64.b64encode(state).decode("ascii")}
        return {"state": state}

    def save(self) -> Any:
        """The position, JSON-safe (``None`` when the source has none); with several
        processes, every process's, as ``{"processes": [...]}``. Every process must
        call it then."""
        own = self._own()
        if jax.process_count() == 1:
            return own
        every = _every_process(own)
        return None if all(p is None for p in every) else {"processes": every}

    def restore(self, where: str, saved: Any, epoch: int) -> None:
        """Moves the source to ``saved`` (then ``moved`` is true); with several
        processes, each to its own position.

        Warns when a one-pass iterator cannot be moved back to epoch ``epoch``.

        Raises:
            ValueError: when the positions were saved by another number of processes.
        """
        processes = jax.process_count()
        if isinstance(saved, dict) and "processes" in saved:
            if len(saved["processes"]) != processes:
                raise ValueError(
                    f"{where}: the checkpoint holds the stream positions of "
                    f"{len(saved['processes'])} processes, but this run has {processes}; "
                    "each process resumes its own stream from its own position. Resume "
                    f"with {len(saved['processes'])} processes, or start afresh "
                    "(Checkpointing(..., resume=False) in another directory)."
                )
            saved = saved["processes"][jax.process_index()]
        elif saved is not None and processes > 1:
            raise ValueError(
                f"{where}: the checkpoint holds the stream position of one process, but "
                f"this run has {processes}, each streaming its own batches. Resume with "
                "one process, or start afresh (Checkpointing(..., resume=False) in "
                "another directory)."
            )
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


def _every_process(value: Any) -> list[Any]:
    """``value`` (JSON-safe) of every process, in process order. A collective: every
    process must call it. Sent as JSON bytes, padded to a power of two (so that a
    few lengths compile a few programs)."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    lengths = multihost_utils.process_allgather(np.array([data.size], np.int32)).reshape(-1)
    padded = np.zeros(1 << max(6, int(lengths.max() - 1).bit_length()), np.uint8)
    padded[: data.size] = data
    rows = multihost_utils.process_allgather(padded)
    return [json.loads(bytes(row[:n])) for row, n in zip(rows, lengths.tolist(), strict=True)]


def steps_per_chunk(batch_bytes: int, given: int | None) -> int:
    """``k``, the steps per compiled dispatch: ``given``, or chosen from the batch size.

    Small batches are bound by the per-dispatch cost (tens of microseconds on a
    CPU), so they get many steps per chunk; large ones few, so that a chunk holds at
    most about 64 MiB. At most eight chunks' host memory is alive at a time (one
    being built, two prefetched, one waiting for a slot, one being dispatched, two
    running (:class:`InFlight`) and one not yet released by JAX, all kept by
    :class:`ChunkBuffers`), so streaming needs half a GiB of host memory at most,
    whatever the size of the data; on a CPU the device uses that memory in place.

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


def _parts(where: str, item: Any, index: int) -> tuple[Any, int]:
    """A batch read the careful way: ``(x, y, w)`` as NumPy arrays (``w`` of ones when
    the batch has none) and its size, or an error that names the batch. Non-finite
    values are found later, a chunk at a time (:func:`_check_finite`)."""
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
    leaves = jax.tree.leaves((x, y, w))
    for leaf in leaves:
        if not (np.issubdtype(leaf.dtype, np.number) or leaf.dtype == np.bool_):
            raise ValueError(
                f"{where}: batch {index} holds non-numeric data (dtype {leaf.dtype}); "
                "yield NumPy or JAX arrays of numbers."
            )
    sizes = {leaf.shape[0] if leaf.ndim else -1 for leaf in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            f"{where}: batch {index} has arrays of different lengths or a scalar "
            f"(leading sizes {sorted(sizes)}); every array of a batch needs the same "
            "number of examples."
        )
    n = sizes.pop()
    return (x, y, np.ones((n,), np.float32) if w is None else w), n


def _signature(tree: Any) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((leaf.shape[1:], leaf.dtype) for leaf in leaves)


def _describe(signature: tuple) -> str:
    treedef, leaves = signature
    shapes = ", ".join(
        f"(batch, {', '.join(map(str, s))}) {d}" if s else f"(batch,) {d}" for s, d in leaves
    )
    return f"{treedef.num_leaves} arrays [{shapes}]"


def _plain_weight(dtype: np.dtype) -> bool:
    """Weights whose cast to float32 on copy equals :func:`_parts`'s conversion."""
    return dtype.kind in "fb" or (dtype.kind in "iu" and dtype.itemsize <= 4)


class _Layout:
    """What batch 0 fixed (the structure, per-example shapes and dtypes of ``(x, y,
    w)``, and the batch size), and a cheap test that a later batch matches it.

    A batch given as a tuple of NumPy arrays with the types, dtypes and shapes of one
    that already passed :func:`_parts` converts to the same arrays, so :meth:`match`
    takes its arrays as they are: no conversion, no per-leaf checks beyond
    comparing a few attributes. Anything else goes the careful way again.
    """

    def __init__(self, tree: Any, size: int):
        self.signature = _signature(tree)
        self.treedef = self.signature[0]
        self.size = size
        dtypes = [dtype for _, dtype in self.signature[1]]
        self.inexact = [i for i, d in enumerate(dtypes) if np.issubdtype(d, np.inexact)]
        self.weight_shape = self.signature[1][-1][0]  # w is the last leaf of (x, y, w)
        self.raw: tuple | None = None  # how NumPy batches that passed were given
        self.pair = False  # ... and whether their x and y are two plain arrays

    def shapes(self, k: int) -> list[tuple]:
        """``(shape, dtype)`` of a chunk's arrays: each leaf's ``(k, size, ...)``, then
        the mask's ``(k, size)``."""
        leaves = [((k, self.size, *shape), dtype) for shape, dtype in self.signature[1]]
        return [*leaves, ((k, self.size), np.dtype(bool))]

    def learn(self, item: Any) -> None:
        """Remembers how ``item``, which passed :func:`_parts`, was given, if as a
        tuple of NumPy arrays, so that :meth:`match` accepts batches given alike."""
        if type(item) is not tuple:
            return
        leaves, treedef = jax.tree.flatten(item[:2])
        w = item[2] if len(item) == 3 else None
        if all(isinstance(leaf, np.ndarray) for leaf in leaves) and (
            w is None or (isinstance(w, np.ndarray) and _plain_weight(w.dtype))
        ):
            self.raw = (treedef, [(leaf.ndim, leaf.dtype, leaf.shape[1:]) for leaf in leaves])
            self.pair = treedef == jax.tree.structure((0, 0))

    def match(self, item: Any) -> tuple[list, int] | None:
        """The arrays of ``(x, y)`` and ``w`` (``None`` for none) and the batch size,
        when ``item`` is given as the batches :meth:`learn` saw; else ``None``."""
        if self.raw is None or type(item) is not tuple or not 2 <= len(item) <= 3:
            return None
        treedef, expected = self.raw
        if self.pair:
            leaves = [item[0], item[1]]
        else:
            leaves, given = jax.tree.flatten(item[:2])
            if given != treedef:
                return None
        n = -1
        for leaf, (ndim, dtype, shape) in zip(leaves, expected, strict=True):
            if not isinstance(leaf, np.ndarray) or leaf.ndim != ndim or leaf.dtype != dtype:
                return None
            if leaf.shape[1:] != shape or (n >= 0 and leaf.shape[0] != n):
                return None
            n = leaf.shape[0]
        w = item[2] if len(item) == 3 else None
        if w is not None and not (
            isinstance(w, np.ndarray)
            and w.shape == (n, *self.weight_shape)
            and _plain_weight(w.dtype)
        ):
            return None
        leaves.append(w)
        return leaves, n


_ALIGN = 64  # bytes: XLA's CPU client uses a host array this aligned in place, uncopied


class ChunkBuffers:
    """The host memory that chunks are built in, used again once nothing refers to it.

    Each array of a chunk is a view of a block of bytes aligned to 64 bytes, which
    ``jax.device_put`` on a CPU uses in place rather than copying (a copy of a 50 MiB
    chunk costs tens of milliseconds, mostly page faults on the fresh copy). JAX then
    keeps a reference to the block for as long as its array lives. Fresh blocks for
    every chunk would cost those page faults again, so up to ``keep`` sets of blocks
    are kept, and one is used again only when the only references left to its blocks
    are this pool's (CPython's reference count): a block still under a chunk, a view
    of one, or a device array is never overwritten. One pool serves every epoch of a
    ``fit``.

    Args:
        keep: how many sets of blocks to keep (each one chunk).

    Example:
        >>> pool, shapes = ChunkBuffers(), [((2, 3), np.dtype(np.float32))]
        >>> a = pool.take(shapes)[0]  # still referred to (a chunk on its way)
        >>> b = pool.take(shapes)[0]
        >>> np.shares_memory(a, b), a.ctypes.data % 64
        (False, 0)
        >>> del a  # now only the pool refers to its block
        >>> np.shares_memory(pool.take(shapes)[0], pool.sets[0][0]), len(pool.sets)
        (True, 2)
    """

    def __init__(self, keep: int = 8):
        self.keep = check_positive_int("ChunkBuffers", "keep", keep)
        self.shapes: list[tuple] | None = None
        self.sets: list[list[np.ndarray]] = []  # blocks of bytes, one per array

    def take(self, shapes: list[tuple]) -> list[np.ndarray]:
        """Arrays of ``shapes`` (a list of ``(shape, dtype)``), aligned to 64 bytes: on a
        free kept set of blocks, else on new ones (kept while fewer than ``keep``
        are). Their contents are arbitrary."""
        if shapes != self.shapes:  # another layout: start afresh
            self.shapes, self.sets = shapes, []
        for blocks in self.sets:
            # References: the set's list, the loop's name and getrefcount's argument;
            # any view of a block (NumPy's or JAX's) adds one.
            if all(sys.getrefcount(block) <= 3 for block in blocks):
                return _views(blocks, shapes)
        blocks = [
            np.empty(math.prod(shape) * np.dtype(dtype).itemsize + _ALIGN, np.uint8)
            for shape, dtype in shapes
        ]
        if len(self.sets) < self.keep:
            self.sets.append(blocks)
        return _views(blocks, shapes)


def _views(blocks: list[np.ndarray], shapes: list[tuple]) -> list[np.ndarray]:
    """Each block's aligned bytes viewed as an array of its shape and dtype."""
    out = []
    for block, (shape, dtype) in zip(blocks, shapes, strict=True):
        start = -block.ctypes.data % _ALIGN
        size = len(block) - _ALIGN
        out.append(block[start : start + size].view(dtype).reshape(shape))
    return out


def _check_finite(where: str, layout: _Layout, arrays: list, sizes: list[int], start: int) -> None:
    """Refuses NaN or Inf in the ``len(sizes)`` batches of a chunk being built (batch
    ``start`` first), naming the first such batch and its rows.

    One sum per floating array of the chunk finds most chunks clean; a sum that is
    not finite (a NaN, an Inf, or finite values whose sum overflows) is followed by
    the exact test, batch by batch."""
    steps = len(sizes)
    for i in layout.inexact:
        part = arrays[i][:steps]
        wide = np.float32 if part.dtype.itemsize < 4 else None  # float16 sums overflow
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(part.sum(dtype=wide)):
                continue
        for j, n in enumerate(sizes):
            for leaf in (arrays[i2][j, :n] for i2 in layout.inexact):
                if not np.isfinite(leaf).all():
                    bad = ~np.isfinite(leaf).reshape(len(leaf), -1).all(axis=1)
                    rows = np.flatnonzero(bad)
                    raise ValueError(
                        f"{where}: batch {start + j} has NaN or Inf values in row(s) "
                        f"{', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''}. "
                        "Clean or drop those rows in the stream."
                    )
        return  # finite values whose sum overflowed


def chunks(
    where: str,
    batches: Iterator[Any],
    k: int,
    *,
    steps: int | None = None,
    buffers: ChunkBuffers | None = None,
) -> Iterator[Chunk]:
    """Groups batches into :class:`Chunk` s of ``k`` steps, on the host.

    The first batch fixes the batch size, the structure, the per-example shapes and
    the dtypes; a later batch may only be smaller (the last one). A short batch is
    padded with the epoch's first examples and masked; a short last chunk with
    copies of its first step, masked out. With ``steps``, the epoch ends after that
    many batches.

    Each batch is copied straight into the chunk's arrays (taken from ``buffers``,
    so that a ``fit`` reuses them epoch after epoch). A batch given as the one
    before it was (a tuple of NumPy arrays of the same types, dtypes and shapes) is
    only compared, not converted or checked leaf by leaf again; NaN and Inf are
    looked for once per chunk.

    Args:
        where: the entry point, for messages.
        batches: an iterator of ``(x, y)`` or ``(x, y, sample_weight)`` batches.
        k: steps per chunk.
        steps: stop after this many batches (``None``: at the end of ``batches``).
        buffers: the pool the chunks' arrays come from; ``None``: a new one.

    Raises:
        ValueError: for an empty stream, a batch that is not ``(x, y)`` or
            ``(x, y, w)``, non-numeric data, NaN or Inf, a batch whose structure,
            shapes or dtypes change, a batch larger than the first, a smaller batch
            that is not the last, or a stream that ends before ``steps`` batches.

    Example:
        >>> data = [(np.ones((4, 2)), np.zeros((4, 1)))] * 2 + [(np.ones((3, 2)), np.zeros((3, 1)))]
        >>> got = list(chunks("fit", iter(data), 2))
        >>> [c.steps for c in got], got[1].mask.tolist()
        ([2, 1], [[True, True, True, False], [False, False, False, False]])
        >>> got[0].x.shape, got[0].x.dtype, got[0].weight.tolist()
        ((2, 4, 2), dtype('float32'), [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    """
    buffers = ChunkBuffers() if buffers is None else buffers
    layout: _Layout | None = None
    arrays: list[np.ndarray] = []  # the chunk being built: its leaves, then its mask
    sizes: list[int] = []  # the examples of each of its batches
    ones: list[int] = []  # its steps whose weights are 1, filled in when it is done
    start = count = 0  # the index of its first batch; batches read
    first: list[np.ndarray] = []  # batch 0's arrays, to pad a short batch
    short: tuple[int, int] | None = None  # (index, size) of a batch smaller than batch 0
    # islice, so that the batch after the epoch's last stays in a shared iterator.
    for index, item in enumerate(batches if steps is None else itertools.islice(batches, steps)):
        count = index + 1
        try:
            got = None if layout is None else layout.match(item)
            if got is None:
                tree, n = _parts(where, item, index)
                if layout is None:
                    layout = _Layout(tree, n)
                elif _signature(tree) != layout.signature:
                    raise ValueError(
                        f"{where}: batch {index} has another structure, per-example shape "
                        f"or dtype than batch 0: expected {_describe(layout.signature)}, "
                        f"got {_describe(_signature(tree))}. Every batch must look like "
                        "the first (only the last may be smaller)."
                    )
                layout.learn(item)
                got = jax.tree.leaves(tree), n
            leaves, n = got
            size = layout.size
            if short is not None:
                raise ValueError(
                    f"{where}: batch {short[0]} had {short[1]} examples, fewer than the "
                    f"{size} of batch 0, but was not the last; only the last batch may be "
                    "smaller. Yield full batches."
                )
            if n > size:
                raise ValueError(
                    f"{where}: batch {index} has {n} examples, more than the {size} of "
                    "batch 0; the first batch sets the batch size. Yield batches of one "
                    "size (the last may be smaller)."
                )
        except ValueError:
            if arrays:  # the batches before it come first, in the stream's order
                _close(arrays, sizes, ones)
                _check_finite(where, layout, arrays, sizes, start)
            raise
        if not arrays:
            arrays, start = buffers.take(layout.shapes(k)), index
        j = len(sizes)
        if n == size and first:  # the common case: one copy per array
            if leaves[-1] is None:
                ones.append(j)
            for buffer, leaf in zip(arrays, leaves, strict=False):  # the mask is left
                if leaf is not None:
                    buffer[j] = leaf
        else:  # batch 0, or a short batch: padded with batch 0's rows
            leaves[-1] = 1 if leaves[-1] is None else leaves[-1]
            for buffer, leaf, pad in zip(arrays, leaves, first or leaves, strict=False):
                buffer[j, :n] = leaf
                if n < size:
                    buffer[j, n:] = pad[: size - n]
            if n < size:
                short = index, n
            first = first or [buffer[j].copy() for buffer in arrays[:-1]]
        sizes.append(n)
        if j + 1 == k:
            _close(arrays, sizes, ones)
            _check_finite(where, layout, arrays, sizes, start)
            yield _chunk(layout, arrays, k)
            arrays, sizes, ones = [], [], []
    if layout is None:
        raise ValueError(
            f"{where}: the data stream yielded no batches. Check that it yields (x, y) "
            "tuples; a generator or other iterator gives one pass only, so a second epoch "
            "finds it used up: pass a function that returns a fresh iterator per epoch "
            "(lambda: make_batches()) or an iterable that can be iterated again."
        )
    if arrays:
        _close(arrays, sizes, ones)
        _check_finite(where, layout, arrays, sizes, start)
    if steps is not None and count < steps:
        raise ValueError(
            f"{where}: steps_per_epoch={steps}, but the data stream ended after {count} "
            "batches. Lower steps_per_epoch, or pass a stream that yields enough (a "
            "function returning a fresh iterator per epoch)."
        )
    if arrays:
        filled = len(sizes)
        for buffer in arrays[:-1]:  # empty steps: all masked, skipped by the program
            buffer[filled:] = buffer[0]
        arrays[-1][filled:] = False
        yield _chunk(layout, arrays, filled)


def _close(arrays: list[np.ndarray], sizes: list[int], ones: list[int]) -> None:
    """Fills in what :func:`chunks` leaves for the end of a chunk, one NumPy call each
    rather than one per batch: the weights of 1 (``ones``, the steps whose batches
    gave none) and the mask (the first ``sizes[j]`` examples of step ``j``)."""
    weight, mask = arrays[-2], arrays[-1]
    if len(ones) == len(sizes):
        weight[: len(sizes)] = 1
    elif ones:
        weight[ones] = 1
    mask[: len(sizes)] = np.arange(mask.shape[1]) < np.asarray(sizes)[:, None]


def _chunk(layout: _Layout, arrays: list[np.ndarray], steps: int) -> Chunk:
    x, y, w = jax.tree.unflatten(layout.treedef, arrays[:-1])
    return Chunk(x, y, w, arrays[-1], steps)


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
