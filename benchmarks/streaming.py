"""Feeding the MLP from a stream: memory, a generator, a file on disk, grain, Keras.

The workload of ``benchmarks/mlp.py`` (784-512-512-10, batch 256, Adam), trained with
``Trainer.fit`` for one epoch of ``--steps`` steps per run, from:

* ``(a)`` arrays already on the device, ``fit(state, x, y, verbose=0)``: jaxnn's
  fastest path, the whole epoch one compiled program that shuffles and gathers on
  the device. The reference (ratio 1.00).
* ``(b)`` a Python generator of shuffled NumPy batches, gathered from arrays in
  memory (a function returning a fresh generator per epoch);
* ``(c)`` ``nn.ArrayStream`` over ``np.load(path, mmap_mode="r")`` files of the same
  data: an exact new permutation per epoch, each batch's rows read from the file;
* ``(d)`` grain (``pip install -e ".[data]"``), the fastest pipeline of grain's own
  transformations found on this machine: ``grain.MapDataset.range(n).shuffle(seed)
  .batch(256).map(gather)``, grain shuffling and batching the example indices and
  ``gather`` reading each batch's rows from the memory maps in one NumPy gather,
  ``.to_iter_dataset(grain.ReadOptions(num_threads=1))``;
* ``(d')`` grain as its documentation builds a pipeline, one record per example:
  ``grain.MapDataset.source(rows of the same memory maps).shuffle(seed).batch(256)
  .to_iter_dataset(grain.ReadOptions(num_threads=1))`` (the rows are plain NumPy
  views of the maps, not a ``np.memmap`` object per row, which costs about 1 ms more
  per batch). One read thread is the fastest setting for training on 2 cores (0,
  1, 2 and 16 were tried: more threads fight over the GIL);
* ``(e)`` Keras 3 ``model.fit`` on the same generator as ``(b)``, JAX backend, in its
  own process (it needs ``KERAS_BACKEND`` before it is imported); skipped when keras
  is not installed (``pip install -e ".[bench]"``).

``(a)`` to ``(d')`` run in one process, warmed up (compiled) first and then
alternated, medians of ``--repeats``; their ratios to ``(a)`` are steps per second
over ``(a)``'s in the same run (target: at least 0.9). The files sit in the page
cache, as a data set that fits in RAM would after its first epoch: this measures
the pipeline, not the disk. The grain pipelines are also iterated alone, without
training (batches per second, the same epoch): grain's own cost per batch, which
on a machine with few cores competes with the training step for them. As a
control, ``(d~)`` and ``(d'~)`` feed the generator of ``(b)`` with as much
pure-Python CPU work before each batch as grain alone spends on one: if they run
as fast as ``(d)`` and ``(d')``, grain's own cost, not jaxnn's handling of its
batches, is what bounds them.

The host's path per batch, timed on batches already in memory for a tiny batch (32,
8) and the MLP's (256, 784): ``jaxnn.stream.chunks`` (checking a batch and copying it
into its chunk, NaN and Inf looked for once per chunk) then ``jax.device_put`` of the
chunk, against ``np.stack`` of the same batches then ``jax.device_put``.

Then the peak resident memory of ``(c)`` for two file sizes, 4x apart: each size in a
fresh process that trains one epoch over the whole file (``ru_maxrss`` read with
``os.wait4``; the files are written beforehand, chunk by chunk). The target is a
peak that does not grow with the file.

    python benchmarks/streaming.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.peers import common as c

BATCH = c.MLP_BATCH
GRAIN_MISSING = "skipped: pip install -e '.[data]'"
KERAS_MISSING = "skipped: pip install -e '.[bench]' (keras is not installed)"
SETTINGS = {
    # steps per timed epoch (a multiple of the 64 steps per compiled chunk), repeats,
    # the two file sizes for the memory runs, and their steps per chunk
    "quick": {"steps": 64, "repeats": 2, "rss_mib": (32, 128), "rss_chunk": 4},
    "full": {"steps": 256, "repeats": 5, "rss_mib": (512, 2048), "rss_chunk": None},
}


def write_data(directory: Path, examples: int, seed: int = 0) -> None:
    """``x.npy`` ``(examples, 784)`` float32 and ``y.npy`` ``(examples,)`` int32, written
    16 MiB at a time: a header, then raw rows, so nothing is mapped or held whole."""
    rows = (16 * 2**20) // (4 * c.MLP_SIZES[0])
    rng = np.random.default_rng(seed)
    header = {"descr": "<f4", "fortran_order": False, "shape": (examples, c.MLP_SIZES[0])}
    with open(directory / "x.npy", "wb") as fx, open(directory / "y.npy", "wb") as fy:
        np.lib.format.write_array_header_2_0(fx, header)
        np.lib.format.write_array_header_2_0(
            fy, {"descr": "<i4", "fortran_order": False, "shape": (examples,)}
        )
        for start in range(0, examples, rows):
            m = min(rows, examples - start)
            rng.standard_normal((m, c.MLP_SIZES[0]), np.float32).tofile(fx)
            rng.integers(0, c.MLP_CLASSES, m, dtype=np.int32).tofile(fy)


def open_data(directory: Path) -> tuple:
    return (np.load(directory / name, mmap_mode="r") for name in ("x.npy", "y.npy"))


def shuffled_batches(x, y) -> Callable[[], Iterator[tuple]]:
    """A function returning a fresh generator of shuffled batches each epoch."""
    epochs = iter(range(2**31))

    def batches() -> Iterator[tuple]:
        order = np.random.default_rng(next(epochs)).permutation(len(x))
        for start in range(0, len(x), BATCH):
            index = order[start : start + BATCH]
            yield x[index], y[index]

    return batches


def grain_pipelines(x, y) -> dict[str, Callable[[], Iterator[tuple]]]:
    """``(d)`` and ``(d')``: functions returning a fresh iterator over grain's batches
    of the rows of ``x`` and ``y`` (memory maps); empty without grain."""
    if importlib.util.find_spec("grain") is None:
        return {}
    import grain

    xs, ys = np.asarray(x), np.asarray(y)  # plain views of the maps: no copy

    class Rows:  # grain's random-access source protocol: __len__ and __getitem__
        def __len__(self) -> int:
            return len(xs)

        def __getitem__(self, i: int) -> tuple:
            return xs[i], ys[i]

    def gather(index: np.ndarray) -> tuple:
        rows = np.sort(index)  # ascending reads; the order within a batch is irrelevant
        return xs[rows], ys[rows]

    options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=4 * BATCH)
    indices = grain.MapDataset.range(len(xs)).shuffle(seed=0).batch(BATCH).map(gather)
    records = grain.MapDataset.source(Rows()).shuffle(seed=0).batch(BATCH)
    return {
        "d": lambda: iter(indices.to_iter_dataset(options)),
        "d'": lambda: iter(records.to_iter_dataset(options)),
    }


def grain_alone(pipelines: dict, repeats: int) -> dict:
    """Each grain pipeline iterated for one epoch without training: batches/s."""
    out = {}
    for key, make in pipelines.items():
        times = []
        for _ in range(repeats + 1):  # the first warms up
            start = time.perf_counter()
            batches = sum(1 for _ in make())
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times[1:])
        out[key] = {"batches": batches, "seconds": seconds, "batches_per_s": batches / seconds}
    return out


def host_path(repeats: int) -> dict:
    """Microseconds per batch of the host's path for a stream: ``jaxnn.stream.chunks``
    building chunks of 64 batches and ``jax.device_put`` of each, against the plain
    way (``np.stack`` of the same 64 batches, then ``jax.device_put``), each timed to
    the end of the transfer."""
    import jax

    from jaxnn import stream

    rng = np.random.default_rng(0)
    out = {}
    for name, (size, features) in {"tiny": (32, 8), "mlp": (BATCH, c.MLP_SIZES[0])}.items():
        k = 64
        x = rng.normal(size=(k * size, features)).astype(np.float32)
        y = rng.integers(0, c.MLP_CLASSES, k * size).astype(np.int32)
        batches = [(x[i : i + size], y[i : i + size]) for i in range(0, k * size, size)]
        pool = stream.ChunkBuffers()

        def ours(batches=batches, k=k, pool=pool) -> None:
            for chunk in stream.chunks("fit", iter(batches), k, buffers=pool):
                jax.block_until_ready(jax.device_put(chunk[:4]))

        def plain(batches=batches) -> None:
            stacked = [np.stack([b[i] for b in batches]) for i in (0, 1)]
            jax.block_until_ready(jax.device_put(stacked))

        per_batch = {}
        for key, fn in (("chunks", ours), ("np_stack", plain)):
            fn()
            times = []
            for _ in range(max(9, repeats)):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            per_batch[key] = statistics.median(times) / k * 1e6
        out[name] = {
            "batch": [size, features],
            "chunks_us_per_batch": per_batch["chunks"],
            "np_stack_us_per_batch": per_batch["np_stack"],
            "vs_np_stack": per_batch["chunks"] / per_batch["np_stack"],
        }
    return out


def throughput(steps: int, repeats: int, directory: Path) -> tuple[list[dict], dict]:
    import jax
    import jax.numpy as jnp

    import jaxnn as nn
    from benchmarks import mlp

    x, y = c.mlp_data(steps * BATCH)
    np.save(directory / "x.npy", x)
    np.save(directory / "y.npy", y)
    mx, my = open_data(directory)
    trainer = mlp.model()
    state = trainer.init(jax.random.key(0), x[:1])
    xs, ys = jnp.asarray(x), jnp.asarray(y)

    def fit(source: object) -> Callable[[], object]:
        return lambda: trainer.fit(state, source, None, epochs=1, verbose=0)[0].params

    names = {
        "a": "(a) jaxnn: Trainer.fit on arrays on the device",
        "b": "(b) jaxnn: Trainer.fit on a generator of NumPy batches",
        "c": "(c) jaxnn: Trainer.fit on nn.ArrayStream (memory-mapped file)",
        "d": "(d) jaxnn: Trainer.fit on grain: indices shuffled, batches gathered",
        "d'": "(d') jaxnn: Trainer.fit on grain: one record per example (its docs)",
    }
    fns = {
        "a": lambda: trainer.fit(state, xs, ys, epochs=1, batch_size=BATCH, verbose=0)[0].params,
        "b": fit(shuffled_batches(x, y)),
        "c": fit(nn.ArrayStream(mx, my, batch_size=BATCH, seed=0)),
    }
    pipelines = grain_pipelines(mx, my)
    fns.update({key: fit(make) for key, make in pipelines.items()})
    alone = grain_alone(pipelines, repeats)
    for key, r in alone.items():  # the control: (b) with grain's CPU time per batch
        ms = 1e3 * r["seconds"] / r["batches"]
        names[f"{key}~"] = f"({key}~) jaxnn: the generator of (b) + {ms:.2f} ms of Python a batch"
        fns[f"{key}~"] = fit(burning(shuffled_batches(x, y), ms))
    timed = c.alternate(fns, repeats)
    rows = []
    for key, name in names.items():
        if key not in timed:
            rows.append({"key": key, "name": name, "skipped": GRAIN_MISSING})
            continue
        t = timed[key]
        rows.append(
            {"key": key, "name": name, "steps": steps, **t, "steps_per_s": steps / t["seconds"]}
        )
    return rows, alone


def burning(batches: Callable[[], Iterator[tuple]], ms: float) -> Callable[[], Iterator[tuple]]:
    """``batches`` with ``ms`` milliseconds of pure-Python CPU work (holding the GIL, as
    grain's per-record code does) before each batch: grain's cost without grain."""

    def burned() -> Iterator[tuple]:
        for batch in batches():
            end = time.thread_time() + ms / 1e3
            while time.thread_time() < end:
                pass
            yield batch

    return burned


def keras_worker(steps: int, repeats: int, out: str) -> None:
    """``(e)``, in this (fresh) process: Keras 3 ``fit`` on the generator of ``(b)``."""
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    x, y = c.mlp_data(steps * BATCH)
    batches = shuffled_batches(x, y)
    layers = [keras.Input((c.MLP_SIZES[0],))]
    layers += [keras.layers.Dense(w, activation="relu") for w in c.MLP_SIZES[1:-1]]
    model = keras.Sequential([*layers, keras.layers.Dense(c.MLP_SIZES[-1])])
    model.compile(
        optimizer=keras.optimizers.Adam(c.LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    run = lambda: model.fit(batches(), steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    result = {
        "seconds": seconds,
        "times": times,
        "first_call_s": first,
        "version": keras.__version__,
    }
    Path(out).write_text(json.dumps({**result, "steps": steps, "steps_per_s": steps / seconds}))


def keras_row(steps: int, repeats: int, timeout: float) -> dict:
    from benchmarks.run import _last_lines, run_child

    name = "(e) Keras 3 (JAX): model.fit on the generator of (b), own process"
    if importlib.util.find_spec("keras") is None:
        return {"key": "e", "name": name, "skipped": KERAS_MISSING}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "keras.json"
        cmd = [sys.executable, __file__, "--keras-worker", "--out", str(out)]
        child = run_child([*cmd, "--steps", str(steps), "--repeats", str(repeats)], timeout)
        if child["returncode"] != 0 or not out.exists():
            return {"key": "e", "name": name, "error": _last_lines(child)}
        return {"key": "e", "name": name, **json.loads(out.read_text())}


def rss_worker(directory: str, steps_per_execution: int | None, out: str) -> None:
    """``(c)`` in this (fresh) process: one epoch over the whole file."""
    import jax

    import jaxnn as nn
    from benchmarks import mlp

    x, y = open_data(Path(directory))
    trainer = mlp.model()
    state = trainer.init(jax.random.key(0), np.zeros((1, c.MLP_SIZES[0]), np.float32))
    stream = nn.ArrayStream(x, y, batch_size=BATCH, seed=0)
    start = time.perf_counter()
    state, _ = trainer.fit(
        state, stream, None, epochs=1, steps_per_execution=steps_per_execution, verbose=0
    )
    jax.block_until_ready(state)
    result = {"steps": len(stream), "seconds": time.perf_counter() - start}
    Path(out).write_text(json.dumps(result))


def memory(sizes_mib: tuple[int, ...], steps_per_execution: int | None, timeout: float) -> dict:
    from benchmarks.run import _last_lines, run_child

    runs = []
    for mib in sizes_mib:
        examples = mib * 2**20 // (4 * c.MLP_SIZES[0])
        with tempfile.TemporaryDirectory() as tmp:
            write_data(Path(tmp), examples)
            out = Path(tmp) / "out.json"
            cmd = [sys.executable, __file__, "--rss-worker", tmp, "--out", str(out)]
            if steps_per_execution is not None:
                cmd += ["--steps-per-execution", str(steps_per_execution)]
            child = run_child(cmd, timeout)
            if child["returncode"] != 0 or not out.exists():
                raise RuntimeError(f"memory run of {mib} MiB failed: {_last_lines(child)}")
            got = json.loads(out.read_text())
        runs.append(
            {
                "file_mib": mib,
                "examples": examples,
                "peak_rss_mib": child["peak_rss_mib"],
                "steps_per_s": got["steps"] / got["seconds"],
                **got,
            }
        )
        print(
            f"  (c) over a {mib} MiB file in a fresh process: peak RSS "
            f"{child['peak_rss_mib']:.0f} MiB, {got['steps'] / got['seconds']:.0f} steps/s",
            flush=True,
        )
    return {
        "steps_per_execution": steps_per_execution,
        "runs": runs,
        "growth_mib": runs[-1]["peak_rss_mib"] - runs[0]["peak_rss_mib"],
        "file_growth_mib": runs[-1]["file_mib"] - runs[0]["file_mib"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs and small files, for CI")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--keras-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-worker", help=argparse.SUPPRESS)
    parser.add_argument("--steps-per-execution", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.keras_worker:
        return keras_worker(args.steps, args.repeats, args.out)
    if args.rss_worker:
        return rss_worker(args.rss_worker, args.steps_per_execution, args.out)

    settings = SETTINGS["quick" if args.quick else "full"]
    steps, repeats, timeout = settings["steps"], settings["repeats"], 600.0
    print(f"streaming: MLP 784-512-512-10, batch {BATCH}, {steps} steps, median of {repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        rows, alone = throughput(steps, repeats, Path(tmp))
    rows.append(keras_row(steps, repeats, timeout))
    reference = rows[0]["steps_per_s"]
    for r in rows:
        if "steps_per_s" in r:
            r["vs_memory"] = r["steps_per_s"] / reference
            print(f"  {r['name']:70} {r['steps_per_s']:7.1f} steps/s  {r['vs_memory']:.2f}x (a)")
        else:
            print(f"  {r['name']:70} {r.get('skipped') or 'failed: ' + r['error']}")
    for key, r in alone.items():
        r["vs_memory"] = r["batches_per_s"] / reference
        print(
            f"  ({key}) grain alone, no training: {r['batches_per_s']:.0f} batches/s, "
            f"{1e3 / r['batches_per_s']:.2f} ms per batch ({r['vs_memory']:.2f}x (a)'s steps/s)"
        )
    host = host_path(repeats)
    for name, r in host.items():
        print(
            f"  host path per {name} batch {tuple(r['batch'])}, to the device: chunks "
            f"{r['chunks_us_per_batch']:.1f} us, np.stack {r['np_stack_us_per_batch']:.1f} us "
            f"({r['vs_np_stack']:.2f}x)"
        )
    results = {
        "workload": "streaming",
        "steps": steps,
        "batch": BATCH,
        "repeats": repeats,
        "rows": rows,
        "grain_alone": alone,
        "host_path": host,
        "memory": memory(settings["rss_mib"], settings["rss_chunk"], timeout),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
