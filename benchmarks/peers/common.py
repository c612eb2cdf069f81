"""What every implementation of a workload shares: sizes, data, and timing.

The timing here is deliberately small: warm up (which compiles), then time whole runs
that each end in a blocking wait, alternating between implementations so that drift
on a shared machine hits all alike, and report medians. It imports no peer library
and not jaxnn, so a peer's process holds only that peer.
"""

from __future__ import annotations

import itertools
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# seed: the tutorial's network, 4 -> 32 -> 1, batch 10, 100 epochs of 100 examples.
SEED_N, SEED_FEATURES, SEED_HIDDEN, SEED_BATCH, SEED_EPOCHS = 100, 4, 32, 10, 100
SEED_STEPS = SEED_EPOCHS * SEED_N // SEED_BATCH

# mlp: 784 -> 512 -> 512 -> 10, batch 256, softmax cross-entropy, Adam.
MLP_SIZES, MLP_BATCH, MLP_CLASSES = (784, 512, 512, 10), 256, 10

# cnn: LeNet-style, 28x28x1, batch 128 (benchmarks/cnn.py has the network).
CNN_BATCH, CNN_SIZE, CNN_CLASSES = 128, 28, 10

LEARNING_RATE = 1e-3


def seed_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's data: ``x`` (100, 4) in [0, 1) and 0/1 targets ``y`` (100, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.random((SEED_N, SEED_FEATURES), dtype=np.float32)
    y = rng.integers(0, 2, size=(SEED_N, 1)).astype(np.float32)
    return x, y


def seed_batches(rng: np.random.Generator, x: np.ndarray, y: np.ndarray):
    """One epoch of shuffled host batches, as a NumPy data loader would give them."""
    perm = rng.permutation(SEED_N)
    for start in range(0, SEED_N, SEED_BATCH):
        idx = perm[start : start + SEED_BATCH]
        yield x[idx], y[idx]


def mlp_data(examples: int = MLP_BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped random data: ``x`` (examples, 784) float32, ``y`` (examples,) int32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(examples, MLP_SIZES[0])).astype(np.float32)
    y = rng.integers(0, MLP_CLASSES, size=(examples,)).astype(np.int32)
    return x, y


def cnn_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One NHWC batch: ``x`` (128, 28, 28, 1) float32, ``y`` (128,) int32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(CNN_BATCH, CNN_SIZE, CNN_SIZE, 1)).astype(np.float32)
    y = rng.integers(0, CNN_CLASSES, size=(CNN_BATCH,)).astype(np.int32)
    return x, y


def mlp_flops_per_step() -> float:
    """Multiply-add FLOPs of one training step of the MLP, counted by hand.

    Forward: ``2 * batch * in * out`` per layer. Backward: the weight gradient of every
    layer, and the input gradient of every layer but the first, each as much again.
    Elementwise work (activations, Adam) is small beside it and not counted.
    """
    pairs = list(itertools.pairwise(MLP_SIZES))
    forward = sum(2 * MLP_BATCH * a * b for a, b in pairs)
    backward_inputs = sum(2 * MLP_BATCH * a * b for a, b in pairs[1:])
    return float(2 * forward + backward_inputs)


def cnn_flops_per_step() -> float:
    """FLOPs of one LeNet-style training step, counted by hand as for the MLP."""
    b, s = CNN_BATCH, CNN_SIZE
    conv1 = 2 * b * s * s * 9 * 1 * 32
    conv2 = 2 * b * (s // 2) ** 2 * 9 * 32 * 64
    dense1 = 2 * b * (s // 4) ** 2 * 64 * 128
    dense2 = 2 * b * 128 * CNN_CLASSES
    forward = conv1 + conv2 + dense1 + dense2
    return float(2 * forward + conv2 + dense1 + dense2)  # conv1 needs no input gradient


class Timed:
    """One implementation of a workload: a label, and a run of work that blocks.

    Args:
        name: the row's label, e.g. ``"flax linen: jitted step"``.
        run: does one timed unit of work and returns only when the work is done
            (it must block, e.g. with ``jax.block_until_ready`` or ``.item()``).
        steps: training steps in one call of ``run``.
        setup: builds and compiles (or warms up); timed as the compile figure.
    """

    def __init__(
        self,
        name: str,
        run: Callable[[], Any],
        steps: int,
        setup: Callable[[], Any] | None = None,
    ):
        self.name = name
        self._run = run
        self.steps = steps
        self._setup = setup
        self.first_call_s: float | None = None
        self.warm_s = 0.0
        self.samples: list[float] = []

    def warm_up(self) -> None:
        """Runs ``setup`` (timed as compile) and then ``run`` once, untimed."""
        start = time.perf_counter()
        if self._setup is not None:
            self._setup()
        self._run()
        self.first_call_s = time.perf_counter() - start
        start = time.perf_counter()
        self._run()
        self.warm_s = time.perf_counter() - start

    def sample(self) -> None:
        start = time.perf_counter()
        self._run()
        self.samples.append(time.perf_counter() - start)


def measure(impls: Sequence[Timed], repeats: int, budget_s: float = 60.0) -> list[dict]:
    """Warms every implementation up, then times them in turn ``repeats`` times.

    Args:
        impls: the implementations to compare; alternated within each repeat.
        repeats: timed runs of each, at most; fewer (but at least 1) when the warm
            runs say that ``repeats`` rounds would take longer than ``budget_s``.
        budget_s: the time the timed rounds may take together, roughly.

    Returns:
        One dict per implementation: ``name``, ``seconds`` (the median time of one
        run), ``step_s`` (per training step), ``spread`` ((max - min) / median),
        ``first_call_s`` (setup and the first call: compile included), and ``samples``.
    """
    for impl in impls:
        impl.warm_up()
    round_s = sum(impl.warm_s for impl in impls)
    repeats = max(1, min(repeats, int(budget_s / max(round_s, 1e-9))))
    for _ in range(repeats):
        for impl in impls:
            impl.sample()
    rows = []
    for impl in impls:
        median = statistics.median(impl.samples)
        rows.append(
            {
                "name": impl.name,
                "seconds": median,
                "step_s": median / impl.steps,
                "steps": impl.steps,
                "spread": (max(impl.samples) - min(impl.samples)) / median,
                "first_call_s": impl.first_call_s,
                "samples": impl.samples,
                "repeats": repeats,
            }
        )
    return rows


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (``ru_maxrss`` is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def alternate(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """Warm (first call timed apart: it compiles), then alternated; median wall time.

    For jaxnn-only workloads run in one process; JAX is imported here, not at the
    top, so that a peer's process does not load it.
    """
    import jax

    first = {}
    for k, fn in fns.items():
        start = time.perf_counter()
        jax.block_until_ready(fn())
        first[k] = time.perf_counter() - start
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[k].append(time.perf_counter() - start)
    return {
        k: {"seconds": statistics.median(v), "times": v, "first_call_s": first[k]}
        for k, v in times.items()
    }
