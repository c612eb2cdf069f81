"""Training from a data set on disk that is never whole in memory: nn.ArrayStream.

Writes a float32 data set of 2 GiB (784 features per example, labels from a fixed
random linear rule over 10 classes) to a temporary directory, chunk by chunk so it
is never whole in memory either; opens it with ``np.load(path, mmap_mode="r")``,
which reads nothing; trains an MLP on it with ``Trainer.fit(state,
nn.ArrayStream(x, y, ...))``, which reads each shuffled batch's rows from the file
(a new exact permutation of the examples every epoch) while the previous chunk of
steps trains; and prints the steps per second and the process's peak resident
memory. That memory is JAX's and that of the chunks of batches in flight (about
1 GB for the full run here), not the file's: rows are read with ``pread``, a batch
at a time, and never mapped into the process. The directory is deleted at the end.

    python examples/stream_from_disk.py          # 2 GiB, one epoch: exits 1 below 85%
    python examples/stream_from_disk.py --quick  # 50 MB, for CI
"""

import argparse
import os
import resource
import sys
import tempfile
import time

import jax
import numpy as np

import jaxnn as nn

FEATURES, CLASSES, BATCH = 784, 10, 256
TARGET = 0.85  # test accuracy after the full run's one epoch over 2 GiB (0.90 measured)


def labels(x: np.ndarray) -> np.ndarray:
    """The rule to learn: the largest of 10 fixed random projections of ``x``."""
    w = np.random.default_rng(1234).normal(size=(FEATURES, CLASSES)).astype(np.float32)
    return np.argmax(x @ w, axis=1).astype(np.int32)


def write_data_set(directory: str, nbytes: int, seed: int = 0) -> tuple[str, str]:
    """``x.npy`` ``(n, 784)`` float32 of about ``nbytes``, and ``y.npy`` ``(n,)`` int32,
    written 16 MiB at a time (a header, then raw rows: nothing is mapped or held)."""
    n = nbytes // (4 * FEATURES)
    rows = (16 * 2**20) // (4 * FEATURES)
    x_path, y_path = os.path.join(directory, "x.npy"), os.path.join(directory, "y.npy")
    rng = np.random.default_rng(seed)
    header = {"descr": "<f4", "fortran_order": False, "shape": (n, FEATURES)}
    y = np.empty(n, np.int32)  # 4 bytes an example: 2.7 MB for 2 GiB of x
    with open(x_path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        for start in range(0, n, rows):
            chunk = rng.standard_normal((min(rows, n - start), FEATURES), np.float32)
            chunk.tofile(f)
            y[start : start + len(chunk)] = labels(chunk)
    np.save(y_path, y)
    return x_path, y_path


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (``ru_maxrss``: KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main(quick: bool) -> float:
    nbytes, epochs = (50 * 10**6, 2) if quick else (2 * 2**30, 1)
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        x_path, y_path = write_data_set(directory, nbytes)
        x = np.load(x_path, mmap_mode="r")  # nothing is read yet
        y = np.load(y_path, mmap_mode="r")
        print(
            f"wrote {x.shape[0]:,} examples, {os.path.getsize(x_path) / 2**20:,.0f} MiB, in "
            f"{time.perf_counter() - start:.1f} s; peak RSS so far {peak_rss_mib():.0f} MiB"
        )

        model = nn.Sequential(nn.Dense(256, "relu"), nn.Dense(256, "relu"), nn.Dense(CLASSES))
        loss = nn.losses.get("sparse_categorical_crossentropy", from_logits=True)
        trainer = nn.Trainer(model, loss, "adam", metrics=["accuracy"])
        state = trainer.init(jax.random.key(0), np.zeros((1, FEATURES), np.float32))

        stream = nn.ArrayStream(x, y, batch_size=BATCH, seed=0)
        start = time.perf_counter()
        state, history = trainer.fit(state, stream, None, epochs=epochs, verbose=0 if quick else 2)
        seconds = time.perf_counter() - start
        steps = epochs * len(stream)
        print(
            f"trained {steps:,} steps of batch {BATCH} from disk in {seconds:.1f} s: "
            f"{steps / seconds:,.0f} steps/s ({steps * BATCH * 4 * FEATURES / seconds / 2**20:,.0f}"
            f" MiB/s of x, compilation included); loss {history['loss'][-1]:.3f}"
        )
        del x, y, stream  # close the maps before the directory goes

    x_test = np.random.default_rng(1).normal(size=(4096, FEATURES)).astype(np.float32)
    accuracy = float(trainer.evaluate(state, x_test, labels(x_test))["accuracy"])
    print(f"test accuracy {accuracy:.3f} (target {TARGET}); peak RSS {peak_rss_mib():.0f} MiB")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 MB, for CI")
    args = parser.parse_args()
    accuracy = main(args.quick)
    if not args.quick and accuracy < TARGET:
        print(f"FAILED: test accuracy {accuracy:.4f} is below the target {TARGET}")
        sys.exit(1)
