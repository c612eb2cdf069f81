"""ArrayStream: exact, reproducible shuffles of arrays on disk, read batch by batch in
constant memory, and fits from it that equal fits from the same batches in a list and
resume bit for bit."""

import os
import tracemalloc

import jax
import numpy as np
import pytest

import jaxnn as nn


def save(path, array):
    np.save(path, array)
    return np.load(path, mmap_mode="r")


def epoch_examples(stream, epoch):
    """The example indices of an epoch's batches, read back from y = arange(n)."""
    return np.concatenate([batch[1] for batch in stream.iter_epoch(epoch)])


@pytest.mark.parametrize("shuffle", [True, "blocks"])
@pytest.mark.parametrize("n", [1, 7, 64, 1000, 1037])
def test_every_example_once_per_epoch_new_each_epoch_same_for_same_seed(n, shuffle):
    x, y = np.arange(2 * n, dtype=np.float32).reshape(n, 2), np.arange(n)
    blocks = {"block_size": 16, "window": 3} if shuffle == "blocks" else {}
    stream = nn.ArrayStream(x, y, batch_size=32, shuffle=shuffle, seed=3, **blocks)
    orders = [epoch_examples(stream, epoch) for epoch in range(3)]
    for epoch, order in enumerate(orders):
        assert sorted(order.tolist()) == list(range(n))  # a permutation: each example once
        np.testing.assert_array_equal(order, stream.order(epoch, np.arange(n)))
    again = nn.ArrayStream(x, y, batch_size=32, shuffle=shuffle, seed=3, **blocks)
    np.testing.assert_array_equal(epoch_examples(again, 1), orders[1])
    other_seed = nn.ArrayStream(x, y, batch_size=32, shuffle=shuffle, seed=4, **blocks)
    if n >= 64:  # below that, two orders of a few examples may agree by chance
        assert not np.array_equal(orders[0], orders[1])
        assert not np.array_equal(epoch_examples(other_seed, 1), orders[1])
    for batch in stream.iter_epoch(2):  # the rows of x belong to the examples of y
        np.testing.assert_array_equal(batch[0][:, 0], 2 * batch[1])


def test_the_shuffle_leaves_no_trace_of_the_file_order():
    """For a uniformly random permutation of n = 20000 the correlation of position
    and example (and of neighbouring examples) has standard deviation 1/sqrt(n) =
    0.007, so 0.035 is 5 standard deviations; a neighbour in the file lands next to
    its neighbour with probability about 2/n, about once per epoch."""
    n = 20000
    stream = nn.ArrayStream(np.zeros((n, 1), np.float32), np.arange(n), batch_size=500)
    order = stream.order(0, np.arange(n))
    assert abs(np.corrcoef(np.arange(n), order)[0, 1]) < 0.035
    assert abs(np.corrcoef(order[:-1], order[1:])[0, 1]) < 0.035
    assert np.sum(np.abs(np.diff(order)) == 1) <= 8
    assert abs(np.corrcoef(order, stream.order(1, np.arange(n)))[0, 1]) < 0.035


def test_blocks_mix_whole_blocks_within_windows():
    """Each window of block_size * window positions holds exactly `window` whole
    blocks of the file, and the last one the rows after the last full block."""
    n, block, window = 230, 10, 4  # 23 blocks: 5 windows of 4, then 3 blocks in the last
    stream = nn.ArrayStream(
        np.zeros((n, 1)), np.arange(n), shuffle="blocks", block_size=block, window=window
    )
    order = stream.order(0, np.arange(n))
    for start in range(0, n, block * window):
        got = np.sort(order[start : start + block * window])
        blocks = np.unique(got // block)
        assert len(got) == len(blocks) * block  # whole blocks only
        assert len(blocks) == (window if start + block * window <= n else 3)
    assert not np.array_equal(order, np.arange(n))


@pytest.mark.parametrize("gap", [8192, 0])  # rows read in groups with gaps; one by one
def test_reads_memory_maps_views_and_dicts_like_arrays_in_memory(tmp_path, monkeypatch, gap):
    monkeypatch.setattr(nn.sources, "_GAP", gap)
    rng = np.random.default_rng(0)
    n = 101
    x = rng.normal(size=(n, 3, 2)).astype(np.float32)
    y = rng.integers(0, 5, size=n).astype(np.int64)
    w = rng.random(n).astype(np.float32)
    mx, my, mw = (save(tmp_path / f"{k}.npy", a) for k, a in zip("xyw", (x, y, w), strict=True))
    cases = [
        ((mx, my, mw), (x, y, w)),
        ((mx[7:], my[7:], mw[7:]), (x[7:], y[7:], w[7:])),  # a view: another offset in its file
        ((mx[:, 1:], my, None), (x[:, 1:], y, None)),  # rows not contiguous: read through the map
        (({"a": mx, "b": {"c": my}}, mw, None), ({"a": x, "b": {"c": y}}, w, None)),
    ]
    for shuffle in (True, "blocks", False):
        for disk, memory in cases:
            disk_stream = nn.ArrayStream(*disk, batch_size=16, shuffle=shuffle, seed=1)
            memory_stream = nn.ArrayStream(*memory, batch_size=16, shuffle=shuffle, seed=1)
            for got, expected in zip(
                disk_stream.iter_epoch(1), memory_stream.iter_epoch(1), strict=True
            ):
                assert len(got) == (3 if disk[2] is not None else 2)
                jax.tree.map(np.testing.assert_array_equal, got, expected)
                assert all(type(a) is np.ndarray for a in jax.tree.leaves(got))
    first = next(iter(nn.ArrayStream(x, y, batch_size=16, shuffle=False)))
    np.testing.assert_array_equal(first[0], x[:16])
    assert first[1].dtype == np.int64  # the stream's dtypes; fit converts as for arrays


def peak_rss_growth(run):
    """How far the peak resident set rose above the current one while ``run()`` ran,
    in KiB (Linux: writing 5 to /proc/self/clear_refs resets the peak); else None."""

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key))

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        run()
        return None
    before = status("VmRSS")
    run()
    return status("VmHWM") - before


def test_memory_does_not_grow_with_the_file(tmp_path, monkeypatch):
    """An epoch over a 4 MiB and a 16 MiB file: the same peak of Python and NumPy
    allocations, and a peak resident set that does not grow (reading the rows through
    the mapping instead maps most of the 16 MiB into the process: 16 MiB more,
    measured). The allocations are bounded by a few batches, the order of the next
    _SPAN positions, and reads of nearby rows with their gaps (under _GAP bytes each);
    both constants are shrunk so that files this small already reach the bound (each
    file's epoch computes the order of more than one span of positions)."""
    monkeypatch.setattr(nn.sources, "_SPAN", 4096)
    monkeypatch.setattr(nn.sources, "_GAP", 64)
    peaks, grown = [], []
    for n in (2**13 + 1, 2**15 + 1):
        x = save(tmp_path / f"x{n}.npy", np.ones((n, 128), np.float32))
        y = save(tmp_path / f"y{n}.npy", np.ones(n, np.float32))
        stream = nn.ArrayStream(x, y, batch_size=256)
        tracemalloc.start()
        grown.append(peak_rss_growth(lambda s=stream: [None for _ in s.iter_epoch(0)]))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] + 64 * 1024, peaks
    assert peaks[1] < 2**20, peaks
    if grown[0] is not None:
        assert grown[1] < grown[0] + 1024, f"peak resident memory grew by {grown} KiB"


@pytest.fixture(scope="module")
def trainer():
    return nn.Trainer(nn.Sequential(nn.Dense(8, "relu"), nn.Dense(1)), "mse", "adam")


@pytest.fixture
def disk_data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    return save(tmp_path / "x.npy", x), save(tmp_path / "y.npy", y)


def assert_same_state(a, b):
    jax.tree.map(np.testing.assert_array_equal, a._replace(key=None), b._replace(key=None))
    np.testing.assert_array_equal(jax.random.key_data(a.key), jax.random.key_data(b.key))


def test_fit_equals_fit_from_the_same_batches_in_a_list(trainer, disk_data):
    x, y = disk_data
    stream = nn.ArrayStream(x, y, batch_size=8, seed=5)
    state = trainer.init(jax.random.key(0), x[:1])
    streamed, history = trainer.fit(state, stream, None, epochs=2, verbose=0)
    epochs = [list(stream.iter_epoch(0)), list(stream.iter_epoch(1))]
    listed, listed_history = trainer.fit(
        state, lambda: iter(epochs.pop(0)), None, epochs=2, verbose=0
    )
    assert_same_state(streamed, listed)
    np.testing.assert_array_equal(history["loss"], listed_history["loss"])
    assert int(streamed.step) == 2 * 7


def test_resume_equals_an_uninterrupted_fit(trainer, disk_data, tmp_path):
    x, y = disk_data
    stream = nn.ArrayStream(x, y, batch_size=8, seed=5)
    state = trainer.init(jax.random.key(0), x[:1])
    straight, straight_history = trainer.fit(state, stream, None, epochs=4, verbose=0)
    trainer.fit(state, stream, None, epochs=2, verbose=0, checkpoint=tmp_path / "ckpt")
    resumed, history = trainer.fit(
        state,
        stream,
        None,
        epochs=4,
        verbose=0,
        checkpoint=nn.Checkpointing(tmp_path / "ckpt", resume=True),
    )
    assert_same_state(resumed, straight)
    np.testing.assert_array_equal(history["loss"], straight_history["loss"])


def test_drop_remainder(trainer, disk_data):
    x, y = disk_data  # 50 examples: 6 batches of 8, and 2 left over
    kept = nn.ArrayStream(x, np.arange(50), batch_size=8)
    dropped = nn.ArrayStream(x, np.arange(50), batch_size=8, drop_remainder=True)
    assert (len(kept), len(dropped)) == (7, 6)
    assert [len(b[1]) for b in kept] == [8] * 6 + [2]
    assert [len(b[1]) for b in dropped] == [8] * 6
    left_out = [set(range(50)) - set(epoch_examples(dropped, e).tolist()) for e in range(3)]
    assert all(len(s) == 2 for s in left_out) and len(set(map(frozenset, left_out))) > 1
    state = trainer.init(jax.random.key(0), x[:1])
    stream = nn.ArrayStream(x, y, batch_size=8, drop_remainder=True)
    state, _ = trainer.fit(state, stream, None, epochs=2, verbose=0)
    assert int(state.step) == 12


def test_len_iter_and_repr():
    stream = nn.ArrayStream(np.zeros((10, 2)), np.arange(10), batch_size=4, shuffle=False)
    assert len(stream) == 3
    assert [b[1].tolist() for b in stream] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert repr(stream) == (
        "ArrayStream(n=10, batch_size=4, shuffle=False, seed=0, drop_remainder=False, shard=(0, 1))"
    )
    assert nn.stream.is_stream(stream)


X, Y = np.zeros((10, 2), np.float32), np.zeros(10, np.float32)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((None, Y), {}, r"ArrayStream: x is None; pass the x array"),
        ((X, None), {}, r"ArrayStream: y is None; pass the y array"),
        ((X, Y[:9]), {}, r"different lengths \(x 10, y 9\).*same number of examples"),
        (({"a": X, "b": X[:3]}, Y), {}, r"different lengths \(x 10, x 3\)"),
        ((np.float32(1.0), Y), {}, r"x must have a leading example axis, got a scalar"),
        ((np.array(["a"] * 10), Y), {}, r"x is not numeric \(dtype <U1\)"),
        ((X[:0], Y[:0]), {}, r"x has no examples \(length 0\)"),
        ((X, Y, np.ones((10, 1))), {}, r"sample_weight has shape \(10, 1\), expected \(10,\)"),
        ((X, Y), {"batch_size": 0}, r"ArrayStream: batch_size must be a positive int, got 0"),
        ((X, Y), {"shuffle": "block"}, r"shuffle must be True .*, 'blocks' .* or False; got"),
        ((X, Y), {"seed": -1}, r"seed must be a non-negative int, got -1"),
        ((X, Y), {"block_size": 4}, r"block_size and window are for shuffle='blocks'"),
        ((X, Y), {"shuffle": "blocks", "window": 0}, r"window must be a positive int, got 0"),
        (
            (X, Y),
            {"batch_size": 16, "drop_remainder": True},
            r"10 examples make no full batch of batch_size=16.*drop_remainder=False",
        ),
    ],
)
def test_bad_arguments_say_what_and_how_to_fix(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        nn.ArrayStream(*args, **kwargs)


def test_bad_epochs_and_truncated_files(tmp_path):
    stream = nn.ArrayStream(X, Y)
    with pytest.raises(ValueError, match=r"ArrayStream.iter_epoch: epoch must be a non-negative"):
        stream.iter_epoch(-1)
    path = tmp_path / "x.npy"
    x = save(path, np.ones((100, 4), np.float32))
    stream = nn.ArrayStream(x, np.zeros(100), batch_size=10)
    os.truncate(path, os.path.getsize(path) - 800)  # the last 50 rows are gone
    with pytest.raises(
        OSError, match=r"x.npy ended after \d+ of \d+ bytes at row \d+; the file is shorter"
    ):
        list(stream.iter_epoch(0))


@pytest.mark.parametrize("shuffle", [True, False, "blocks"])
def test_shards_read_their_parts_of_each_global_batch(shuffle):
    """Three shards' batches, side by side, are the global batches of one reader with
    three times the batch size; the short global batch is left out."""
    x = np.arange(50, dtype=np.float32)[:, None]
    y = np.arange(50)
    whole = nn.ArrayStream(x, y, batch_size=12, shuffle=shuffle, seed=3, drop_remainder=True)
    shards = [
        nn.ArrayStream(x, y, batch_size=4, shuffle=shuffle, seed=3, shard=(i, 3)) for i in range(3)
    ]
    assert [len(s) for s in shards] == [4, 4, 4] == [len(whole)] * 3
    for epoch in (0, 1):
        parts = [list(s.iter_epoch(epoch)) for s in shards]
        for b, (_, expected) in enumerate(whole.iter_epoch(epoch)):
            np.testing.assert_array_equal(np.concatenate([p[b][1] for p in parts]), expected)
    assert nn.ArrayStream(x, y, shard="process").shard == (0, 1)
    with pytest.raises(ValueError, match=r"shard must be None, 'process', or \(index, count\)"):
        nn.ArrayStream(x, y, shard=(3, 3))
    with pytest.raises(ValueError, match=r"50 examples make no full global batch of batch_size"):
        nn.ArrayStream(x, y, batch_size=20, shard=(0, 3))
