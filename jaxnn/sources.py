"""Sources of batches for :meth:`Trainer.fit <jaxnn.Trainer.fit>`: arrays too big for memory.

:class:`ArrayStream` streams arrays that need not fit in memory (``np.load(path,
mmap_mode="r")`` memory maps, ``np.memmap``, an ``h5py`` dataset: anything with a
``shape``, a ``dtype`` and indexing by a sorted array of row numbers) as shuffled
NumPy batches, reading only the rows of the batch at hand. Its
``iter_epoch(epoch)`` gives that epoch's batches, so a resumed run reads the batches
an uninterrupted run would have read (see :func:`jaxnn.stream.epoch_batches`).

The shuffle is an exact permutation of the examples per epoch, computed position by
position from ``(seed, epoch)``, so nothing of size ``n`` is ever held: memory is a
few batches, whatever the size of the file.
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxnn._checks import check_positive_int

__all__ = ["ArrayStream"]

_ROUNDS = 6  # Feistel rounds: grain's index_shuffle uses 4
_SPAN = 1 << 16  # positions of the order computed together (512 KiB of indices)
_GAP = 8192  # rows closer than this many bytes are read together, gap and all
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(v: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: every output bit depends on every input bit."""
    v = (v ^ (v >> np.uint64(30))) * _M1
    v = (v ^ (v >> np.uint64(27))) * _M2
    return v ^ (v >> np.uint64(31))


class _Permutation:
    """A pseudo-random permutation of ``range(n)``, evaluated at any positions.

    A Feistel network permutes ``range(2**bits)``, the smallest such range holding
    ``n``; a value that lands at ``n`` or above is sent through again ("cycle
    walking") until it lands below ``n``, which restricts the permutation to
    ``range(n)`` exactly, with fewer than 2 passes on average and no table. The
    halves may differ by a bit (an unbalanced network): each round maps
    ``(left, right)`` to ``(right, left ^ F(right))``, so their widths swap.
    """

    def __init__(self, n: int, entropy: list[int]):
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self.widths = (bits // 2, bits - bits // 2)  # (left, right)
        self.keys = np.random.SeedSequence(entropy).generate_state(_ROUNDS, np.uint64)

    def _once(self, v: np.ndarray) -> np.ndarray:
        a, b = self.widths
        left, right = v >> np.uint64(b), v & np.uint64((1 << b) - 1)
        for k in self.keys:
            left, right = right, left ^ (_mix(right ^ k) & np.uint64((1 << a) - 1))
            a, b = b, a
        return (left << np.uint64(b)) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        out = self._once(positions.astype(np.uint64))
        todo = np.flatnonzero(out >= self.n)
        while todo.size:
            out[todo] = self._once(out[todo])
            todo = todo[out[todo] >= self.n]
        return out.astype(np.int64)


def _check_shard(where: str, shard: Any) -> tuple[int, int]:
    """``(index, count)`` from ``None``, ``"process"`` or a pair of ints."""
    if shard is None:
        return 0, 1
    if isinstance(shard, str) and shard == "process":
        return jax.process_index(), jax.process_count()
    if (
        isinstance(shard, (tuple, list))
        and len(shard) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shard)
        and shard[1] >= 1
        and 0 <= shard[0] < shard[1]
    ):
        return int(shard[0]), int(shard[1])
    raise ValueError(
        f"{where}: shard must be None, 'process', or (index, count) with 0 <= index < "
        f"count, got {shard!r}. In process i of n, pass shard=(i, n) or shard='process'."
    )


def _is_blocks(shuffle: Any) -> bool:
    return isinstance(shuffle, str) and shuffle == "blocks"


def _map(fn: Any, tree: Any) -> Any:
    """``fn`` on every array of ``tree``; as in :mod:`jaxnn.data`, only dicts nest."""
    if isinstance(tree, dict):
        return {k: _map(fn, v) for k, v in tree.items()}
    return fn(tree)


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in _leaves(v)]
    return [tree]


class _File(NamedTuple):
    """Where the rows of a memory-mapped array lie in its file."""

    path: str
    start: int  # the byte position of row 0
    row_bytes: int


def _mapping_of(a: Any) -> mmap.mmap | None:
    """The ``mmap`` under a memory-mapped array, found through ``.base``."""
    while a is not None and not isinstance(a, mmap.mmap):
        a = getattr(a, "base", None)
    return a


def _file_of(a: Any) -> _File | None:
    """The file and byte position of a memory map whose rows are contiguous, read
    with ``pread`` rather than through the mapping; ``None`` for anything else.

    Reading through the mapping would map whole page-cache folios (up to 2 MiB each
    on Linux 6) into the process for every row touched, counted in its resident
    memory; ``pread`` copies just the rows and maps nothing.
    """
    if not (isinstance(a, np.memmap) and hasattr(os, "preadv") and a.flags.c_contiguous):
        return None
    mapping = _mapping_of(a)
    if mapping is None or getattr(a, "mode", None) not in ("r", "r+", "w+") or not a.filename:
        return None  # "c" (copy on write) may hold changes the file lacks
    # np.memmap maps the file from `offset` rounded down to the allocation granularity;
    # a view (x[1000:]) keeps its parent's `offset` and mapping.
    mapped_from = a.offset - a.offset % mmap.ALLOCATIONGRANULARITY
    into = a.ctypes.data - np.frombuffer(mapping, np.uint8).ctypes.data
    return _File(str(a.filename), mapped_from + into, a.itemsize * math.prod(a.shape[1:]))


def _pread_rows(
    fd: int, file: _File, rows: np.ndarray, out: np.ndarray, dest: np.ndarray | None = None
) -> None:
    """Reads ``rows`` (sorted) of ``file`` into ``out``, row ``rows[i]`` into
    ``out[dest[i]]`` (``out[i]`` without ``dest``): one ``pread`` per group of rows
    less than :data:`_GAP` bytes apart (a syscall costs more than copying a few KiB
    from the page cache), straight into its place in ``out`` for a lone row or, in
    order, for a group without gaps; other groups go through a buffer."""
    size = file.row_bytes
    if not size:
        return  # rows of no bytes: nothing to read
    into = out.reshape(len(rows), -1).view(np.uint8)
    view = memoryview(into.reshape(-1))
    ends = np.append(np.flatnonzero(np.diff(rows) > 1 + _GAP // size) + 1, len(rows))
    firsts = np.append(0, ends[:-1])
    lone = ends - firsts == 1  # most groups, in a shuffle of a large file
    places = firsts[lone] if dest is None else dest[firsts[lone]]
    for place, row in zip(places.tolist(), rows[firsts[lone]].tolist(), strict=True):
        _pread(fd, file, view[place * size : (place + 1) * size], row)
    firsts, ends = firsts[~lone], ends[~lone]
    lows, highs = rows[firsts], rows[ends - 1] + 1
    for first, end, low, high in zip(
        *(a.tolist() for a in (firsts, ends, lows, highs)), strict=True
    ):
        if high - low == end - first and dest is None:  # no gaps, in order: in place
            _pread(fd, file, view[first * size : end * size], low)
            continue
        buffer = memoryview(bytearray((high - low) * size))
        _pread(fd, file, buffer, low)
        read = np.frombuffer(buffer, np.uint8).reshape(high - low, size)
        into[slice(first, end) if dest is None else dest[first:end]] = read[rows[first:end] - low]


def _pread(fd: int, file: _File, buffer: memoryview, row: int) -> None:
    """Fills ``buffer`` from ``file``, from row ``row`` on."""
    got = os.preadv(fd, [buffer], file.start + row * file.row_bytes)
    if got != len(buffer):
        raise OSError(
            f"ArrayStream: {file.path} ended after {got} of {len(buffer)} bytes at row "
            f"{row}; the file is shorter than its array says (truncated?)."
        )


class ArrayStream:
    """Shuffled batches of arrays that need not fit in memory, read batch by batch.

    Each batch reads only its own rows, in ascending order, and puts them into the
    shuffled order afterwards. The rows of a memory map (``np.load(path,
    mmap_mode="r")``, ``np.memmap``) are read from its file with ``pread``, one call
    per run of nearby rows, not through the mapping: reading through it would
    map whole page-cache pages (up to 2 MiB each on Linux 6) into the process for
    every row touched, and its resident memory would grow towards the file's size.
    Rows less than 8 KiB apart are read in one call, gap and all. So memory stays at
    a few batches (plus at most 8 KiB a row for those gaps, and with
    ``shuffle="blocks"`` one window), whatever the size of the file. The operating
    system's page cache still fills with the file as it is read; that memory is the
    kernel's, and reclaimable. Give the stream to ``trainer.fit(state, stream, None,
    epochs=...)``: it asks for each epoch's batches with :meth:`iter_epoch`.

    **Shuffles.** ``shuffle=True`` is an exact permutation of all examples per epoch:
    every example once (with ``drop_remainder``, all but the last ``n % batch_size``,
    a different few each epoch), the same order for the same ``(seed, epoch)`` and a
    new one for each epoch, so a resumed run reads what an uninterrupted one would.
    It is computed position by position (a 6-round Feistel network with cycle
    walking), so no table of ``n`` indices is ever made; it is pseudo-random, not
    drawn uniformly from all ``n!`` orders, as no shuffle of a large ``n`` from a
    finite seed can be. Its cost on a file is one random read per example: cheap
    from the page cache or an SSD, slow from a spinning disk or network storage.

    ``shuffle="blocks"`` is the cheaper order for those: the examples are cut into
    blocks of ``block_size`` contiguous rows, the blocks are permuted, and the rows
    of every ``window`` consecutive blocks of that order are permuted among
    themselves. Each window is read as ``window`` sequential reads and kept in memory
    while its batches are served. It is *not* a uniform shuffle: the examples of a
    batch come from about ``window`` places in the file, two examples from the same
    block always share a window, and any order in the file at a scale below
    ``block_size`` (say, examples sorted by class) survives within windows; the last
    ``n % block_size`` rows always fall in the epoch's last window. Every example is
    still read once per epoch. From the page cache the two cost about the same.
    ``shuffle=False`` reads the rows in order, each batch in one read.

    Args:
        x: inputs ``(n, ...)``: an array, a memory map, any array-like with
            ``shape``, ``dtype`` and indexing by a sorted array of rows, or a dict of
            them with the same leading length.
        y: targets ``(n, ...)``, likewise.
        sample_weight: ``(n,)`` weights of each example in the loss, or ``None``.
        batch_size: examples per batch.
        shuffle: ``True`` (an exact permutation per epoch), ``"blocks"`` (see above)
            or ``False``.
        seed: a non-negative int; with the epoch it fixes the order.
        drop_remainder: leave out the last, short batch (its examples change from
            epoch to epoch when shuffled).
        block_size: with ``shuffle="blocks"``, the rows per contiguous block
            (default: the global batch, ``batch_size`` times the shard count).
        window: with ``shuffle="blocks"``, the blocks whose rows are mixed
            (default 16).
        shard: ``(index, count)``: this reader's part of each batch when ``count``
            readers (processes) share the data, or ``"process"`` for
            ``(jax.process_index(), jax.process_count())``. The epoch's order is cut
            into global batches of ``batch_size * count`` examples, and shard
            ``index`` reads examples ``index * batch_size`` to ``(index + 1) *
            batch_size`` of each, so every reader reads only its rows and all run
            the same number of steps; with ``count > 1`` a last global batch short
            of ``batch_size * count`` is left out. ``None``: one reader.

    Raises:
        ValueError: for a missing or empty array, arrays of different lengths, a
            scalar, non-numeric data, weights that are not ``(n,)``, a bad
            ``batch_size``, ``shuffle``, ``seed``, ``block_size``, ``window`` or
            ``shard``, or ``drop_remainder`` (or shards) with fewer examples than one
            (global) batch.

    Example:
        >>> import os, tempfile
        >>> import numpy as np, jaxnn as nn
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
        >>> np.save(path, np.arange(20, dtype=np.float32).reshape(10, 2))
        >>> x = np.load(path, mmap_mode="r")  # on disk, not read
        >>> stream = nn.ArrayStream(x, np.arange(10), batch_size=4, seed=0)
        >>> len(stream), [xb.shape for xb, yb in stream.iter_epoch(0)]
        (3, [(4, 2), (4, 2), (2, 2)])
        >>> order = np.concatenate([yb for _, yb in stream.iter_epoch(0)])
        >>> sorted(order.tolist()) == list(range(10))  # each example once
        True
        >>> np.array_equal(order, stream.order(0, np.arange(10)))
        True
        >>> np.array_equal(order, np.concatenate([yb for _, yb in stream.iter_epoch(1)]))
        False
    """

    def __init__(
        self,
        x: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        batch_size: int = 32,
        shuffle: bool | str = True,
        seed: int = 0,
        drop_remainder: bool = False,
        block_size: int | None = None,
        window: int | None = None,
        shard: tuple[int, int] | str | None = None,
    ):
        where = "ArrayStream"
        for name, value in (("x", x), ("y", y)):
            if value is None:
                raise ValueError(f"{where}: {name} is None; pass the {name} array (n, ...).")
        self.x = _map(lambda a: _array(where, "x", a), x)
        self.y = _map(lambda a: _array(where, "y", a), y)
        self.sample_weight = None
        if sample_weight is not None:
            self.sample_weight = _array(where, "sample_weight", sample_weight)
        self.n = _length(where, self.x, self.y, self.sample_weight)
        self.batch_size = check_positive_int(where, "batch_size", batch_size)
        if not (isinstance(shuffle, (bool, np.bool_)) or _is_blocks(shuffle)):
            raise ValueError(
                f"{where}: shuffle must be True (an exact permutation per epoch), 'blocks' "
                f"(permuted blocks of contiguous rows) or False; got {shuffle!r}."
            )
        self.shuffle = "blocks" if _is_blocks(shuffle) else bool(shuffle)
        self.seed = check_positive_int(where, "seed", seed, minimum=0)
        self.drop_remainder = bool(drop_remainder)
        if self.shuffle != "blocks" and (block_size is not None or window is not None):
            raise ValueError(
                f"{where}: block_size and window are for shuffle='blocks', got "
                f"shuffle={shuffle!r}. Pass shuffle='blocks', or drop them."
            )
        self.shard = _check_shard(where, shard)
        global_batch = self.batch_size * self.shard[1]  # the order does not depend on shards
        self.block_size = check_positive_int(
            where, "block_size", global_batch if block_size is None else block_size
        )
        self.window = check_positive_int(where, "window", 16 if window is None else window)
        if self.shard[1] > 1 and self.n < self.batch_size * self.shard[1]:
            raise ValueError(
                f"{where}: {self.n} examples make no full global batch of batch_size * "
                f"{self.shard[1]} shards = {self.batch_size * self.shard[1]}; every shard "
                "must run the same steps, so the short one is left out and the epoch "
                "would be empty. Lower batch_size."
            )
        if self.drop_remainder and self.n < self.batch_size:
            raise ValueError(
                f"{where}: {self.n} examples make no full batch of batch_size="
                f"{self.batch_size}, and drop_remainder=True drops the short one: the "
                "epoch would be empty. Lower batch_size, or pass drop_remainder=False."
            )

    def __len__(self) -> int:
        """Batches per epoch (of this shard)."""
        if self.shard[1] > 1:
            return self.n // (self.batch_size * self.shard[1])
        if self.drop_remainder:
            return self.n // self.batch_size
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple]:
        return self.iter_epoch(0)

    def __repr__(self) -> str:
        return (
            f"ArrayStream(n={self.n}, batch_size={self.batch_size}, shuffle={self.shuffle!r}, "
            f"seed={self.seed}, drop_remainder={self.drop_remainder}, shard={self.shard})"
        )

    def order(self, epoch: int, positions: Any) -> np.ndarray:
        """The examples at ``positions`` of epoch ``epoch``'s order.

        Args:
            epoch: the epoch, a non-negative int.
            positions: ``(m,)`` positions in ``range(n)``.

        Returns:
            ``(m,)`` int64 example indices; over all positions, each example once.

        Example:
            >>> import jaxnn as nn
            >>> s = nn.ArrayStream(np.zeros((6, 1)), np.zeros(6), shuffle=False)
            >>> s.order(0, np.arange(6)).tolist()
            [0, 1, 2, 3, 4, 5]
        """
        epoch = check_positive_int("ArrayStream.order", "epoch", epoch, minimum=0)
        positions = np.asarray(positions, np.int64)
        if not self.shuffle:
            return positions
        if self.shuffle is True:
            return _Permutation(self.n, [self.seed, epoch])(positions)
        out = np.empty_like(positions)
        for index, at, offsets in self._windows(epoch, positions):
            local = self._window_order(epoch, index)[offsets]
            starts = self._window_starts(epoch, index)
            out[at] = starts[local // self.block_size] + local % self.block_size
        return out

    # -- shuffle="blocks": windows of `window` blocks of `block_size` rows

    def _windows(self, epoch: int, positions: np.ndarray) -> Iterator[tuple]:
        """``(window, where in positions, offsets in the window)`` for each window that
        ``positions`` reach, in order."""
        rows = self.block_size * self.window
        windows = positions // rows
        for index in np.unique(windows).tolist():
            at = np.flatnonzero(windows == index)
            yield index, at, positions[at] - index * rows

    def _window_order(self, epoch: int, index: int) -> np.ndarray:
        """The order of window ``index``'s rows, as rows of its blocks laid one after
        the other (then, in the last window, the rows after the last full block)."""
        rows = self.block_size * self.window
        full = (self.n // self.block_size) // self.window  # windows of `window` blocks
        size = rows if index < full else self.n - full * rows
        return _Permutation(size, [self.seed, epoch, 1, index])(np.arange(size))

    def _window_starts(self, epoch: int, index: int) -> np.ndarray:
        """The first example of each block of window ``index``."""
        b, blocks = self.block_size, self.n // self.block_size
        slots = np.arange(index * self.window, min((index + 1) * self.window, blocks))
        starts = _Permutation(blocks, [self.seed, epoch, 0])(slots) * b if slots.size else slots
        if index == blocks // self.window and self.n > blocks * b:
            starts = np.append(starts, blocks * b)  # the rows after the last full block
        return starts

    def iter_epoch(self, epoch: int) -> Iterator[tuple]:
        """The batches of epoch ``epoch``, in its order.

        Args:
            epoch: the epoch, a non-negative int (the first is 0).

        Yields:
            ``(x, y)`` or, with ``sample_weight``, ``(x, y, w)``: NumPy arrays (or
            dicts of them) ``(batch_size, ...)``; the last batch may be shorter
            unless ``drop_remainder``.

        Raises:
            ValueError: for an epoch that is not a non-negative int.
        """
        epoch = check_positive_int("ArrayStream.iter_epoch", "epoch", epoch, minimum=0)
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple]:
        parts = [self.x, self.y] + ([self.sample_weight] if self.sample_weight is not None else [])
        size, (index, count) = self.batch_size, self.shard
        span = size * max(1, _SPAN // size)  # positions ordered at once: fewer NumPy calls
        order, window = None, {}
        with _Reader([leaf for part in parts for leaf in _leaves(part)]) as reader:
            for batch_index in range(len(self)):
                start = (batch_index * count + index) * size  # this shard's rows
                positions = np.arange(start, min(start + size, self.n))
                if self.shuffle == "blocks":
                    batch = self._from_windows(epoch, positions, parts, reader, window)
                else:
                    rows, sort = positions, None
                    if self.shuffle and count > 1:
                        rows = self.order(epoch, positions)
                        sort = np.argsort(rows)
                        rows = rows[sort]
                    elif self.shuffle:
                        if start % span == 0:
                            order = None  # the last span's order goes before the next comes
                            order = self.order(epoch, np.arange(start, min(start + span, self.n)))
                        rows = order[start % span : start % span + len(positions)]
                        sort = np.argsort(rows)
                        rows = rows[sort]
                    batch = tuple(
                        _map(lambda a, r=rows, s=sort: reader.rows(a, r, s), p) for p in parts
                    )
                reader.release()
                yield batch
                batch = None  # not held while the next is read

    def _from_windows(
        self, epoch: int, positions: np.ndarray, parts: list, reader: _Reader, window: dict
    ) -> tuple:
        """A batch of ``shuffle="blocks"``, from the window(s) its positions fall in;
        ``window`` keeps the last window read (its blocks, read in one go each)."""
        pieces = []
        for index, _, offsets in self._windows(epoch, positions):
            if window.get("index") != index:
                starts = self._window_starts(epoch, index)
                window.update(
                    index=index,
                    order=self._window_order(epoch, index),
                    parts=[reader.blocks(p, starts, self.block_size) for p in parts],
                )
            local = window["order"][offsets]
            pieces.append([_map(lambda a, i=local: a[i], p) for p in window["parts"]])
        return tuple(_concatenate([piece[k] for piece in pieces]) for k in range(len(parts)))


class _Reader:
    """Reads rows of arrays; a memory map's rows with ``pread``, not through the map.

    Reading through a mapping maps whole page-cache folios (up to 2 MiB each on Linux
    6) into the process for every row touched, and they count in its resident
    memory; ``pread`` copies just the rows and maps nothing. Memory maps whose rows
    are not contiguous (``x[:, :10]``) are read through the map, and their pages are
    handed back to the page cache after every batch (:meth:`release`).
    """

    def __init__(self, arrays: list[Any]):
        self.files = {id(a): f for a in arrays if (f := _file_of(a)) is not None}
        self.mapped = {
            id(m): m
            for a in arrays
            if id(a) not in self.files and isinstance(a, np.memmap) and a.mode == "r"
            if (m := _mapping_of(a)) is not None and hasattr(mmap, "MADV_DONTNEED")
        }
        self.fds: dict[str, int] = {}

    def __enter__(self) -> _Reader:
        for path in sorted({f.path for f in self.files.values()}):
            self.fds[path] = os.open(path, os.O_RDONLY)
        return self

    def __exit__(self, *_: Any) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def rows(self, a: Any, rows: np.ndarray, sort: np.ndarray | None) -> np.ndarray:
        """``a[rows]`` for sorted ``rows``, put back in the order ``argsort`` undid."""
        file = self.files.get(id(a))
        if file is not None:  # each row read straight into its place
            got = np.empty((len(rows), *a.shape[1:]), a.dtype)
            _pread_rows(self.fds[file.path], file, rows, got, sort)
            return got
        if sort is None:  # rows in order: a slice reads them in one sweep
            return np.array(a[rows[0] : rows[-1] + 1])
        got = np.asarray(a[rows])
        out = np.empty_like(got)
        out[sort] = got
        return out

    def blocks(self, part: Any, starts: np.ndarray, size: int) -> Any:
        """The rows ``starts[j]`` to ``starts[j] + size`` (clipped to the array) of every
        array in ``part``, one after the other; read in ascending order."""

        def read(a: Any) -> np.ndarray:
            n = a.shape[0]
            out = np.empty(
                (sum(min(s + size, n) - s for s in starts.tolist()), *a.shape[1:]), a.dtype
            )
            for j in np.argsort(starts).tolist():
                s = int(starts[j])
                out[j * size : j * size + min(size, n - s)] = self.rows(
                    a, np.arange(s, min(s + size, n)), None
                )
            return out

        return _map(read, part)

    def release(self) -> None:
        for mapping in self.mapped.values():
            mapping.madvise(mmap.MADV_DONTNEED)


def _concatenate(pieces: list[Any]) -> Any:
    if len(pieces) == 1:
        return pieces[0]
    if isinstance(pieces[0], dict):
        return {k: _concatenate([p[k] for p in pieces]) for k in pieces[0]}
    return np.concatenate(pieces)


def _array(where: str, what: str, a: Any) -> Any:
    """``a`` itself if it can be read by rows without loading it; else ``np.asarray``."""
    if isinstance(a, jax.Array):
        a = np.asarray(a)  # a device array: one copy to the host, not one per batch
    if not (hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "__getitem__")):
        try:
            a = np.asarray(a)
        except ValueError as e:
            raise ValueError(
                f"{where}: {what} could not be read as an array ({e}). Pass a NumPy "
                "array, a memory map (np.load(path, mmap_mode='r')) or a dict of them."
            ) from e
    if len(a.shape) == 0:
        raise ValueError(
            f"{where}: {what} must have a leading example axis, got a scalar. Pass an "
            "array of shape (n, ...)."
        )
    dtype = np.dtype(a.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise ValueError(f"{where}: {what} is not numeric (dtype {dtype}). Pass arrays of numbers.")
    return a


def _length(where: str, x: Any, y: Any, w: Any) -> int:
    sizes = {}
    for what, tree in (("x", x), ("y", y), ("sample_weight", w)):
        for leaf in _leaves(tree) if tree is not None else []:
            sizes.setdefault(int(leaf.shape[0]), what)
    if len(sizes) > 1:
        listed = ", ".join(f"{what} {n}" for n, what in sizes.items())
        raise ValueError(
            f"{where}: the arrays have different lengths ({listed}); x, y and "
            "sample_weight need the same number of examples."
        )
    n = next(iter(sizes))
    if n == 0:
        raise ValueError(f"{where}: x has no examples (length 0); pass at least one example.")
    if w is not None and tuple(w.shape) != (n,):
        raise ValueError(
            f"{where}: sample_weight has shape {tuple(w.shape)}, expected ({n},): one "
            "weight per example."
        )
    return n
