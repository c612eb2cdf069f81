"""Fitting from streams of batches: equal to the in-memory path, chunked, prefetched,
resumable, and refusing bad streams with the batch index."""

import itertools
import threading

import chex
import jax
import numpy as np
import pytest

import jaxnn as nn
from jaxnn import stream

N, BATCH = 50, 8  # 6 full batches and a short one of 2


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 4)).astype(np.float32)
    y = (x.sum(axis=1, keepdims=True) > 0).astype(np.float32)
    model = nn.Sequential(
        nn.Dense(8), nn.BatchNorm(), nn.Activation("relu"), nn.Dropout(0.2), nn.Dense(1, "sigmoid")
    )
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", ["accuracy"])
    return trainer, trainer.init(jax.random.key(0), x), x, y


def batches(x, y, size=BATCH):
    for i in range(0, len(x), size):
        yield x[i : i + size], y[i : i + size]


def state_leaves(state):
    """Every leaf as NumPy, the key as its raw data."""
    key = jax.random.key_data(state.key)
    return [np.asarray(a) for a in jax.tree.leaves(state._replace(key=key))]


def assert_bit_identical(a, b):
    for p, q in zip(state_leaves(a), state_leaves(b), strict=True):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize(
    "k, on_nonfinite", [(1, "raise"), (3, "raise"), (7, "raise"), (3, "ignore")]
)
def test_a_stream_equals_the_in_memory_path_bit_for_bit(setup, k, on_nonfinite):
    """Same batches, same order: identical params, BatchNorm statistics, optimizer
    state, step and key, with dropout and a short last batch, for any chunk size,
    guarded or not."""
    trainer, state, x, y = setup
    fit = dict(epochs=2, verbose=0, on_nonfinite=on_nonfinite)
    memory, memory_history = trainer.fit(state, x, y, batch_size=BATCH, shuffle=False, **fit)
    streamed, history = trainer.fit(
        state, lambda: batches(x, y), None, steps_per_execution=k, **fit
    )
    assert_bit_identical(memory, streamed)
    for name in memory_history:
        np.testing.assert_allclose(history[name], memory_history[name], rtol=1e-6)


def test_sources_epochs_and_steps_per_epoch(setup):
    trainer, state, x, y = setup
    listed = list(batches(x, y))
    from_list, _ = trainer.fit(state, listed, None, epochs=2, verbose=0)
    from_function, _ = trainer.fit(state, lambda: iter(listed), None, epochs=2, verbose=0)
    assert_bit_identical(from_list, from_function)
    assert int(from_list.step) == 2 * 7

    # A one-pass generator: epochs take turns from it with steps_per_epoch...
    def endless():
        while True:
            yield from batches(x[:48], y[:48])

    taken, history = trainer.fit(state, endless(), None, epochs=3, steps_per_epoch=4, verbose=0)
    assert int(taken.step) == 12 and history.epochs == 3
    # ... and without, the second epoch finds it used up.
    with pytest.raises(ValueError, match=r"yielded no batches.*one pass only.*fresh iterator"):
        trainer.fit(state, batches(x, y), None, epochs=2, verbose=0)
    with pytest.raises(ValueError, match=r"steps_per_epoch=9, but the data stream ended after 7"):
        trainer.fit(state, lambda: batches(x, y), None, steps_per_epoch=9, verbose=0)


def test_progress_validation_and_resume(setup, tmp_path, capsys):
    trainer, state, x, y = setup
    source = lambda: batches(x, y)
    fit = dict(validation_data=(x, y), verbose=2)
    straight, straight_history = trainer.fit(state, source, None, epochs=3, **fit)
    out = capsys.readouterr().out
    assert out.count("Epoch 3/3") == 1 and "val_loss" in out
    trainer.fit(state, source, None, epochs=2, checkpoint=tmp_path, **fit)
    resumed, history = trainer.fit(
        state, source, None, epochs=3, checkpoint=nn.Checkpointing(tmp_path, resume=True), **fit
    )
    assert_bit_identical(resumed, straight)
    np.testing.assert_array_equal(history["val_loss"], straight_history["val_loss"])


# The chunks under "raise" run unguarded, each checked as the host waits on it; the
# first that ends non-finite runs again guarded. With 1 or 2 steps a chunk, the bad
# chunk comes after finite ones, and others are in flight behind it.
@pytest.mark.parametrize("k", [None, 1, 2], ids=["auto", "k1", "k2"])
def test_nonfinite_batches_in_a_stream(setup, k):
    _, _, x, y = setup
    trainer = nn.Trainer(nn.Dense(1), "mse", "sgd")
    state = trainer.init(jax.random.key(0), x)
    bad = x.copy()
    bad[19] = 3e38  # finite, but its loss overflows: batch 2

    with pytest.raises(nn.NonFiniteError, match=r"epoch 1/2 \(index 0\), batch 2, step 2") as e:
        trainer.fit(
            state, lambda: batches(bad, y), None, epochs=2, verbose=0, steps_per_execution=k
        )
    assert int(e.value.state.step) == 2
    # The last finite state: the two good batches' updates.
    good, _ = trainer.fit(
        state, lambda: batches(x[:16], y[:16]), None, epochs=1, verbose=0, steps_per_execution=k
    )
    chex.assert_trees_all_equal(e.value.state.params, good.params)
    if k is not None:
        return
    skipped, history = trainer.fit(
        state, lambda: batches(bad, y), None, epochs=2, verbose=0, on_nonfinite="skip"
    )
    assert history["skipped_steps"].tolist() == [1, 1]
    bad[19] = np.nan  # NaN is refused on the host, before any step
    with pytest.raises(ValueError, match=r"batch 2 has NaN or Inf values in row\(s\) 3\."):
        trainer.fit(state, lambda: batches(bad, y), None, verbose=0)


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "jaxnn-prefetch"]


def test_prefetch_leaves_no_thread_and_raises_the_producers_error(setup):
    trainer, state, x, y = setup

    def broken():
        yield from list(batches(x, y))[:3]
        raise RuntimeError("the disk went away")

    with pytest.raises(RuntimeError, match="the disk went away") as e:
        trainer.fit(state, broken, None, epochs=1, steps_per_execution=1, verbose=0)
    assert any("broken" in str(entry.name) for entry in e.traceback)  # its own traceback
    trainer.fit(state, lambda: batches(x, y), None, epochs=1, verbose=0)
    for thread in prefetch_threads():
        thread.join(timeout=5)
    assert not prefetch_threads()

    # A consumer that stops early closes the producer too.
    items = stream.prefetch(range(1000), lambda i: i, depth=2)
    assert next(items) == 0
    items.close()
    for thread in prefetch_threads():
        thread.join(timeout=5)
    assert not prefetch_threads()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda x, y: iter([]), r"yielded no batches"),
        (lambda x, y: iter([x[:8]]), r"batch 0 is ndarray; each batch must be \(x, y\)"),
        (
            lambda x, y: iter([(x[:8], y[:8]), (x[:8, :3], y[:8])]),
            r"batch 1 has another structure, per-example shape or dtype than batch 0",
        ),
        (
            lambda x, y: iter([(x[:8], y[:8]), (x[:10], y[:10])]),
            r"batch 1 has 10 examples, more than the 8 of batch 0",
        ),
        (
            lambda x, y: iter([(x[:8], y[:8]), (x[:4], y[:4]), (x[:8], y[:8])]),
            r"batch 1 had 4 examples, fewer than the 8 of batch 0, but was not the last",
        ),
        (
            lambda x, y: iter([(x[:8], y[:8]), (np.array(["a"] * 8), y[:8])]),
            r"batch 1 holds non-numeric data",
        ),
        (lambda x, y: iter([(x[:8], y[:7])]), r"batch 0 has arrays of different lengths"),
    ],
)
def test_bad_streams_name_the_batch(setup, make, match):
    trainer, state, x, y = setup
    with pytest.raises(ValueError, match=match):
        trainer.fit(state, make(x, y), None, epochs=1, verbose=0)


def test_stream_arguments_are_checked(setup):
    trainer, state, x, y = setup
    with pytest.raises(ValueError, match=r"x is a stream of batches, so the targets come in"):
        trainer.fit(state, lambda: batches(x, y), y)
    with pytest.raises(ValueError, match=r"steps_per_epoch and steps_per_execution are for"):
        trainer.fit(state, x, y, steps_per_epoch=3, verbose=0)
    with pytest.raises(ValueError, match=r"validation_split cannot cut a stream"):
        trainer.fit(state, lambda: batches(x, y), None, validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match=r"steps_per_execution must be a positive int, got 0"):
        trainer.fit(state, lambda: batches(x, y), None, steps_per_execution=0, verbose=0)
    with pytest.raises(ValueError, match=r"validation_steps=2 is for a streamed validation_data"):
        trainer.fit(state, x, y, validation_data=(x, y), validation_steps=2, verbose=0)
    with pytest.raises(ValueError, match=r"Trainer.evaluate: steps=3 is for streamed data"):
        trainer.evaluate(state, x, y, steps=3)
    with pytest.raises(ValueError, match=r"Trainer.evaluate: x is a stream of batches, so"):
        trainer.evaluate(state, lambda: batches(x, y), y)
    with pytest.raises(ValueError, match=r"Trainer.predict: steps must be a positive int"):
        trainer.predict(state, lambda: batches(x, y), steps=0)


def test_epochs_take_turns_from_one_generator_without_losing_a_batch(setup):
    trainer, state, x, y = setup
    given = []

    def numbered():
        for i, batch in enumerate(batches(x[:48], y[:48])):
            given.append(i)
            yield batch

    source = numbered()
    trainer.fit(state, source, None, epochs=2, steps_per_epoch=2, steps_per_execution=1, verbose=0)
    assert given == [0, 1, 2, 3]  # epoch 2 starts at batch 2: none read ahead, none lost
    assert len(list(source)) == 2


def test_evaluate_and_predict_read_streams_as_arrays(setup):
    """Same examples, same numbers: a short last batch, weights and padding included."""
    trainer, state, x, y = setup
    trained, _ = trainer.fit(state, x, y, epochs=1, batch_size=BATCH, verbose=0)
    w = np.linspace(0.5, 1.5, N).astype(np.float32)
    expected = trainer.evaluate(trained, x, y, sample_weight=w)
    weighted = lambda: ((x[i : i + 8], y[i : i + 8], w[i : i + 8]) for i in range(0, N, 8))
    got = trainer.evaluate(trained, weighted)
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6)
    first_two = trainer.evaluate(trained, weighted, steps=2)
    np.testing.assert_allclose(
        first_two["loss"],
        trainer.evaluate(trained, x[:16], y[:16], sample_weight=w[:16])["loss"],
        rtol=1e-6,
    )

    outputs = np.asarray(trainer.predict(trained, x))
    from_pairs = trainer.predict(trained, lambda: batches(x, y))
    from_inputs = trainer.predict(trained, (x[i : i + 8] for i in range(0, N, 8)), steps=3)
    assert isinstance(from_pairs, np.ndarray) and from_pairs.shape == (N, 1)
    np.testing.assert_allclose(from_pairs, outputs, rtol=1e-6)
    np.testing.assert_allclose(from_inputs, outputs[:24], rtol=1e-6)


def test_streamed_validation_equals_validation_arrays(setup):
    trainer, state, x, y = setup
    _, expected = trainer.fit(state, x, y, epochs=2, validation_data=(x, y), verbose=0)
    _, got = trainer.fit(state, x, y, epochs=2, validation_data=lambda: batches(x, y), verbose=0)
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6)
    _, partial = trainer.fit(
        state,
        lambda: batches(x, y),
        None,
        epochs=1,
        validation_data=lambda: batches(x, y),
        validation_steps=1,
        verbose=0,
    )
    _, first_batch = trainer.fit(
        state, lambda: batches(x, y), None, epochs=1, validation_data=(x[:8], y[:8]), verbose=0
    )
    np.testing.assert_allclose(partial["val_loss"], first_batch["val_loss"], rtol=1e-6)


def test_resume_moves_a_grain_iterator_and_warns_for_a_generator(setup, tmp_path):
    grain = pytest.importorskip("grain", reason="grain is the [data] extra")
    trainer, state, x, y = setup
    pairs = grain.MapDataset.source(list(range(48))).map(lambda i: (x[i], y[i]))
    dataset = pairs.shuffle(seed=3).batch(8)
    # A grain dataset is an iterable: each epoch iterates it afresh.
    listed = [(np.asarray(a), np.asarray(b)) for a, b in dataset]
    from_grain, _ = trainer.fit(state, dataset, None, epochs=2, verbose=0)
    assert_bit_identical(from_grain, trainer.fit(state, listed, None, epochs=2, verbose=0)[0])

    # One endless grain iterator, epochs taking turns: resume puts it where it was.
    endless = lambda: iter(pairs.repeat().shuffle(seed=4).batch(8))
    fit = dict(steps_per_epoch=4, steps_per_execution=2, verbose=0)
    straight, _ = trainer.fit(state, endless(), None, epochs=3, **fit)
    trainer.fit(state, endless(), None, epochs=2, checkpoint=tmp_path / "grain", **fit)
    again = nn.Checkpointing(tmp_path / "grain", resume=True)
    resumed, history = trainer.fit(state, endless(), None, epochs=3, checkpoint=again, **fit)
    assert_bit_identical(resumed, straight) and history.epochs == 3

    def plain():
        while True:
            yield from batches(x[:48], y[:48])

    trainer.fit(state, plain(), None, epochs=1, checkpoint=tmp_path / "plain", **fit)
    again = nn.Checkpointing(tmp_path / "plain", resume=True)
    with pytest.warns(UserWarning, match=r"resuming after epoch 1 from a one-pass iterator"):
        trainer.fit(state, plain(), None, epochs=2, checkpoint=again, **fit)


class Rows:
    """An endless iterator with a position (as grain's are) that counts what it gave
    and how fast the reader came: a prefetching reader that went past the batches
    the program used would show in ``i``."""

    def __init__(self, x, y):
        self.x, self.y, self.i = x, y, 0

    def __iter__(self):
        return self

    def __next__(self):
        b, self.i = self.i % 6, self.i + 1
        return self.x[BATCH * b : BATCH * b + BATCH], self.y[BATCH * b : BATCH * b + BATCH]

    def get_state(self):
        return {"i": self.i}

    def set_state(self, state):
        self.i = state["i"]


def test_the_saved_position_is_where_the_program_stopped_reading(setup, tmp_path):
    """One step per chunk, so the prefetch thread could run two chunks ahead; the
    checkpoints still hold the epoch boundaries, and a resume equals a straight run."""
    trainer, state, x, y = setup
    fit = dict(steps_per_epoch=3, steps_per_execution=1, verbose=0)
    straight, _ = trainer.fit(state, Rows(x, y), None, epochs=3, **fit)
    source = Rows(x, y)
    trainer.fit(state, source, None, epochs=2, checkpoint=tmp_path, **fit)
    assert source.i == 6  # 2 epochs of 3 batches, not one more
    for epoch in (1, 2):
        meta = nn.checkpoint.read_metadata(tmp_path / f"epoch_{epoch:06d}.safetensors")
        assert meta["user"]["jaxnn_fit"]["data_state"] == {"state": {"i": 3 * epoch}}
    again = nn.Checkpointing(tmp_path, resume=True)
    resumed, _ = trainer.fit(state, Rows(x, y), None, epochs=3, checkpoint=again, **fit)
    assert_bit_identical(resumed, straight)


def test_a_population_trains_on_one_shared_stream(setup):
    """Every member on the same streamed batches equals the in-memory population fit,
    early stopping and the non-finite stop included."""
    _, _, x, y = setup
    trainer = nn.Trainer(nn.Sequential(nn.Dense(4, "relu"), nn.Dense(1)), "mse", "sgd")
    rates = np.array([1e-2, 1e-1, 1e9], np.float32)  # the last goes non-finite
    states = nn.population.init(
        trainer, jax.random.key(1), x, 3, hyperparams={"learning_rate": rates}
    )
    stop = nn.EarlyStopping("val_loss", patience=1)
    fit = dict(epochs=3, early_stopping=stop, validation_data=(x[:16], y[:16]))
    memory, expected = nn.population.fit(
        trainer, states, x, y, batch_size=BATCH, shuffle=False, **fit
    )
    streamed, history = nn.population.fit(
        trainer, states, lambda: batches(x, y), None, steps_per_execution=3, **fit
    )
    assert_bit_identical(memory, streamed)
    assert sorted(history) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(history[name], expected[name], rtol=1e-6)
    assert history["nonfinite_epoch"].tolist()[2] == 0
    with pytest.raises(ValueError, match=r"population.fit: x is a stream of batches shared"):
        nn.population.fit(trainer, states, lambda: batches(x, y), y)
    with pytest.raises(ValueError, match=r"population.fit: steps_per_epoch and steps_per_exec"):
        nn.population.fit(trainer, states, x, y, steps_per_epoch=2)


# ------------------------------------------------------------- building chunks on the host


def stacked(batches, k):
    """The chunks :func:`stream.chunks` must build, made the plain way: each batch
    converted as JAX would (float64 to float32, int64 to int32, weights to float32,
    1 when absent), a short batch padded with batch 0's rows, a short chunk with
    copies of its first step, masked out."""

    def convert(a):
        a = np.asarray(a)
        return a.astype({"f": np.float32, "i": np.int32}.get(a.dtype.kind, a.dtype))

    rows = []
    for item in batches:
        x, y = jax.tree.map(convert, (item[0], item[1]))
        n = len(y)
        w = np.ones(n, np.float32) if len(item) == 2 else np.asarray(item[2], np.float32)
        rows.append(((x, y, w), n))
    size, first = rows[0][1], rows[0][0]
    padded = [
        (
            jax.tree.map(lambda a, f, m=n: np.concatenate([a, f[: size - m]]), tree, first),
            np.arange(size) < n,
        )
        for tree, n in rows
    ]
    out = []
    for at in range(0, len(padded), k):
        part = padded[at : at + k]
        steps = len(part)
        part += [(part[0][0], np.zeros(size, bool))] * (k - steps)
        trees = jax.tree.map(lambda *a: np.stack(a), *[tree for tree, _ in part])
        out.append((*trees, np.stack([mask for _, mask in part]), steps))
    return out


def mixed_batches():
    """Tuples of NumPy arrays (the fast path), between batches given otherwise: a
    list, JAX arrays, other dtypes, with and without weights, a short last one."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3))  # float64: converted to float32
    y = rng.integers(0, 5, 30)  # int64: converted to int32
    w = rng.uniform(size=30)
    b = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 28, 4)] + [(x[28:], y[28:])]
    b[2] = [b[2][0], b[2][1]]  # a list, not a tuple
    b[3] = (jax.numpy.asarray(b[3][0], np.float32), b[3][1])  # a JAX array
    b[4] = (*b[4], w[16:20])  # with weights, float64
    b[5] = (*b[5], w[20:24] < 0.5)  # with weights, bool (all True here)
    return b


@pytest.mark.parametrize(
    "make, k",
    [
        (lambda: list(batches(*np.split(np.arange(100.0).reshape(50, 2), [1], axis=1))), 3),
        (mixed_batches, 3),
        (mixed_batches, 8),
        (
            lambda: [
                ({"a": np.full((4, 2), i, np.float32), "b": np.arange(4) + i}, np.ones(4) * i)
                for i in range(5)
            ],
            2,
        ),
    ],
)
def test_chunks_equal_batches_stacked_the_plain_way(make, k):
    got = list(stream.chunks("fit", iter(make()), k, buffers=stream.ChunkBuffers()))
    expected = stacked(make(), k)
    assert [c.steps for c in got] == [e[-1] for e in expected]
    for chunk, (x, y, w, mask, _) in zip(got, expected, strict=True):
        chex.assert_trees_all_equal((chunk.x, chunk.y, chunk.weight, chunk.mask), (x, y, w, mask))
        chex.assert_trees_all_equal_dtypes((chunk.x, chunk.y, chunk.weight), (x, y, w))


def test_chunk_arrays_are_reused_only_once_nothing_refers_to_them():
    data = [(np.full((4, 2), i, np.float32), np.full(4, i, np.float32)) for i in range(8)]
    pool = stream.ChunkBuffers()
    for _ in range(3):  # epochs of a fit share the pool: a consumer that lets go of each
        for chunk in stream.chunks("fit", iter(data), 2, buffers=pool):
            assert chunk.x[:, 0, 0].tolist() == chunk.y[:, 0].tolist()
    # Two sets serve all 12 chunks: the one the loop still holds, the one being built.
    assert len(pool.sets) == 2
    kept = list(stream.chunks("fit", iter(data), 2, buffers=pool))  # held, as in flight
    views = [c.x[1:] for c in list(stream.chunks("fit", iter(data), 2, buffers=pool))]
    held = [c.x for c in kept] + views  # never handed out again while held
    assert not any(np.shares_memory(a, b) for a, b in itertools.combinations(held, 2))
    assert [c.x[:, 0, 0].tolist() for c in kept] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [v[0, 0, 0] for v in views] == [1, 3, 5, 7]  # a view keeps its array too


def test_nan_is_found_per_chunk_but_reported_in_stream_order():
    x = np.ones((8, 2), np.float32)
    bad = x.copy()
    bad[5, 1] = np.inf
    stream_ = [(x[:4], x[:4, 0]), (bad[4:], x[:4, 0]), (x[:4, :1], x[:4, 0])]
    with pytest.raises(ValueError, match=r"batch 1 has NaN or Inf values in row\(s\) 1\."):
        list(stream.chunks("fit", iter(stream_), 4))  # before batch 2's other shape
    # Finite values whose sum overflows (float16, float32) are not refused.
    big = [(np.full((4, 2), 6e4, np.float16), np.full(4, 3e38, np.float32))] * 3
    assert [c.steps for c in stream.chunks("fit", iter(big), 3)] == [3]


def test_positions_of_several_processes_are_restored_each_to_its_own():
    class Counter:
        def __init__(self):
            self.i = 0

        def __iter__(self):
            return self

        def __next__(self):
            self.i += 1
            return self.i

        def get_state(self):
            return {"i": self.i}

        def set_state(self, state):
            self.i = state["i"]

    position = stream.Position(Counter())
    position.restore("Trainer.fit", {"processes": [{"state": {"i": 7}}]}, 1)
    assert position.moved and next(position.source) == 8  # process 0 of 1 takes entry 0
    two = {"processes": [{"state": {"i": 7}}, {"state": {"i": 9}}]}
    with pytest.raises(ValueError, match=r"positions of 2 processes, but this run has 1"):
        stream.Position(Counter()).restore("Trainer.fit", two, 1)
