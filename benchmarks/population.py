"""1024 tutorial networks (4 -> 32 -> 1) trained at once, each on its own data set.

Every member has its own 100x4 data set, Adam (lr 1e-3), batch 10, 100 epochs = 1000
steps, shuffled every epoch. Timed warm (compiled before timing; the median of
``--repeats`` runs, each ending in ``block_until_ready``), in one process:

* ``jaxnn``: ``population.fit(..., member_data=True)``, all epochs in one program;
* ``baseline``: hand-written JAX, the fastest peer pattern: one jitted, vmapped
  train step called 1000 times from a Python loop, the batch gathered inside the
  step from per-member orders made once per epoch (argsort of uniform draws, jitted);
* ``single``: one member alone with jaxnn ``Trainer.fit``.

Then the scaling of ``population.fit`` in member count up to 16,384, each size in a
fresh process, reporting time and peak resident memory (``ru_maxrss``).

Throughput is member-steps per second: members x steps / seconds.

    python benchmarks/population.py [--quick] [--json PATH] [--no-scaling]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn as nn
from jaxnn import population as pop

EXAMPLES, FEATURES, HIDDEN, BATCH, LR = 100, 4, 32, 10, 1e-3
ROOT = Path(__file__).resolve().parents[1]


def member_data(members: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(members, 100, 4)`` inputs and ``(members, 100, 1)`` 0/1 targets."""
    rng = np.random.default_rng(seed)
    x = rng.random((members, EXAMPLES, FEATURES), dtype=np.float32)
    y = rng.integers(0, 2, size=(members, EXAMPLES, 1)).astype(np.float32)
    return x, y


def trainer() -> nn.Trainer:
    # Loss only, no metrics: the baseline computes nothing else either.
    model = nn.Sequential(nn.Dense(HIDDEN, "relu"), nn.Dense(1, "sigmoid"))
    return nn.Trainer(model, "binary_crossentropy", "adam")


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn`` after one warm-up call (which compiles)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


# ------------------------------------------------------------------------- jaxnn


def jaxnn_population(members: int, epochs: int) -> Callable[[], object]:
    t = trainer()
    x, y = member_data(members)
    x, y = jnp.asarray(x), jnp.asarray(y)
    states = pop.init(t, jax.random.key(0), x[0], members)

    def run() -> object:
        trained, _ = pop.fit(t, states, x, y, epochs=epochs, batch_size=BATCH, member_data=True)
        return trained.params

    return run


def jaxnn_single(epochs: int) -> Callable[[], object]:
    t = trainer()
    x, y = member_data(1)
    state = t.init(jax.random.key(0), x[0])

    def run() -> object:
        trained, _ = t.fit(state, x[0], y[0], epochs=epochs, batch_size=BATCH, verbose=0)
        return trained.params

    return run


# ---------------------------------------------------------------------- baseline


def baseline(members: int, epochs: int) -> Callable[[], object]:
    """Hand-written JAX: a jitted vmapped step, called from a Python loop."""
    tx = optax.adam(LR, eps=1e-7)
    glorot = jax.nn.initializers.glorot_uniform()
    steps_per_epoch = EXAMPLES // BATCH

    def init(key: jax.Array) -> tuple[dict, optax.OptState]:
        k1, k2 = jax.random.split(key)
        params = {
            "w1": glorot(k1, (FEATURES, HIDDEN)),
            "b1": jnp.zeros(HIDDEN),
            "w2": glorot(k2, (HIDDEN, 1)),
            "b2": jnp.zeros(1),
        }
        return params, tx.init(params)

    def loss_fn(p: dict, xb: jax.Array, yb: jax.Array) -> jax.Array:
        h = jax.nn.relu(xb @ p["w1"] + p["b1"])
        out = jnp.clip(jax.nn.sigmoid(h @ p["w2"] + p["b2"]), 1e-7, 1 - 1e-7)
        return -jnp.mean(yb * jnp.log(out) + (1 - yb) * jnp.log(1 - out))

    def member_step(p, o, x, y, idx):
        grads = jax.grad(loss_fn)(p, x[idx], y[idx])
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o

    @jax.jit
    def step(params, opt_state, x, y, orders, i):
        idx = jax.lax.dynamic_slice_in_dim(orders, i * BATCH, BATCH, axis=1)
        return jax.vmap(member_step)(params, opt_state, x, y, idx)

    @jax.jit
    def shuffle(key: jax.Array) -> jax.Array:
        # One draw for all members, argsort per member: a cheap, independent order each.
        return jnp.argsort(jax.random.uniform(key, (members, EXAMPLES)), axis=1)

    x, y = member_data(members)
    x, y = jnp.asarray(x), jnp.asarray(y)
    with jax.numpy_dtype_promotion("standard"):
        params, opt_state = jax.jit(jax.vmap(init))(jax.random.split(jax.random.key(0), members))

    def run() -> object:
        p, o = params, opt_state
        key = jax.random.key(1)
        for epoch in range(epochs):
            orders = shuffle(jax.random.fold_in(key, epoch))
            for i in range(steps_per_epoch):
                p, o = step(p, o, x, y, orders, i)
        return p

    return run


# ----------------------------------------------------------------------- scaling


def one_size(members: int, epochs: int, repeats: int) -> dict:
    """Run in a fresh process: one population size, time and peak memory."""
    jax.block_until_ready(jnp.ones(8) + 1.0)  # start the backend before the first reading
    at_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run = jaxnn_population(members, epochs)
    seconds, _ = timed(run, repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    steps = epochs * -(-EXAMPLES // BATCH)
    return {
        "members": members,
        "seconds": seconds,
        "member_steps_per_s": members * steps / seconds,
        "peak_rss_mib": peak / 1024,
        "rss_growth_mib": (peak - at_start) / 1024,  # data, states, program, buffers
        "data_mib": members * EXAMPLES * (FEATURES + 1) * 4 / 2**20,
    }


def scaling(sizes: list[int], epochs: int, repeats: int) -> list[dict]:
    rows = []
    for members in sizes:
        cmd = [sys.executable, __file__, "--one-size", str(members), "--epochs", str(epochs)]
        cmd += ["--repeats", str(repeats)]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            rows.append({"members": members, "error": out.stderr[-2000:]})
            print(f"  {members:>6} members: failed\n{out.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"  {members:>6} members: {row['seconds']:7.2f} s  "
            f"{row['member_steps_per_s'] / 1e6:6.2f} M member-steps/s  "
            f"peak RSS {row['peak_rss_mib']:6.0f} MiB, +{row['rss_growth_mib']:.0f} MiB over "
            f"a started JAX (data {row['data_mib']:.1f} MiB)",
            flush=True,
        )
    return rows


# -------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few members and steps, for CI")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--members", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling runs")
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    members = args.members or (64 if args.quick else 1024)
    epochs = args.epochs or (5 if args.quick else 100)
    repeats = args.repeats or (2 if args.quick else 5)
    if args.one_size:
        print(json.dumps(one_size(args.one_size, epochs, min(repeats, 2))))
        return

    steps = epochs * -(-EXAMPLES // BATCH)
    print(
        f"{members} members x {steps} steps (batch {BATCH}, {epochs} epochs), "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs",
        flush=True,
    )
    results: dict = {"members": members, "steps": steps, "repeats": repeats}
    for name, make, count in (
        ("jaxnn", lambda: jaxnn_population(members, epochs), members),
        ("baseline", lambda: baseline(members, epochs), members),
        ("single", lambda: jaxnn_single(epochs), 1),
    ):
        seconds, times = timed(make(), repeats)
        rate = count * steps / seconds
        results[name] = {
            "seconds": seconds,
            "min_seconds": min(times),
            "times": times,
            "member_steps_per_s": rate,
        }
        print(
            f"  {name:<9} {seconds:8.3f} s (min {min(times):.3f})  "
            f"{rate / 1e6:8.3f} M member-steps/s",
            flush=True,
        )
    ratio = results["baseline"]["seconds"] / results["jaxnn"]["seconds"]
    results["speedup_vs_baseline"] = ratio
    # On a shared machine the fastest run is the least disturbed: report that ratio too.
    results["speedup_vs_baseline_min"] = (
        results["baseline"]["min_seconds"] / results["jaxnn"]["min_seconds"]
    )
    results["speedup_vs_single"] = (
        results["jaxnn"]["member_steps_per_s"] / results["single"]["member_steps_per_s"]
    )
    print(
        f"  jaxnn / baseline: {ratio:.2f}x faster by median, "
        f"{results['speedup_vs_baseline_min']:.2f}x by best run (target 1.5x)",
        flush=True,
    )
    print(
        f"  jaxnn population / one member alone: {results['speedup_vs_single']:.0f}x the throughput"
    )

    if not args.no_scaling:
        sizes = [16, 64, 256] if args.quick else [1024, 4096, 16384]
        print("scaling (fresh process per size):", flush=True)
        results["scaling"] = scaling(sizes, epochs, 1)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
