"""The tutorial's network (4 -> 32 -> 1, Adam, batch 10, 100 epochs = 1000 steps).

Times jaxnn ``Trainer.fit`` warm against a hand-written pure-JAX training of the same
model in which all epochs are one jitted ``lax.scan`` (shuffling included), in the
same process; and the time of a fresh process that imports jaxnn, compiles and trains.

    python benchmarks/seed.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn as nn

N, FEATURES, HIDDEN, BATCH = 100, 4, 32, 10


def data(seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    x = rng.random((N, FEATURES), dtype=np.float32)
    y = rng.integers(0, 2, size=(N, 1)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def reference(epochs: int):
    """Hand-written JAX: every epoch and every step inside one jitted lax.scan."""
    tx = optax.adam(1e-3, eps=1e-7)
    glorot = jax.nn.initializers.glorot_uniform()

    def init(key):
        k1, k2 = jax.random.split(key)
        params = {
            "w1": glorot(k1, (FEATURES, HIDDEN)),
            "b1": jnp.zeros(HIDDEN),
            "w2": glorot(k2, (HIDDEN, 1)),
            "b2": jnp.zeros(1),
        }
        return params, tx.init(params)

    def loss_fn(p, xb, yb):
        h = jax.nn.relu(xb @ p["w1"] + p["b1"])
        out = jax.nn.sigmoid(h @ p["w2"] + p["b2"])
        out = jnp.clip(out, 1e-7, 1 - 1e-7)
        return -jnp.mean(yb * jnp.log(out) + (1 - yb) * jnp.log(1 - out))

    @jax.jit
    def train(params, opt_state, key, x, y):
        def epoch(carry, k):
            perm = jax.random.permutation(k, N)
            xb = x[perm].reshape(N // BATCH, BATCH, FEATURES)
            yb = y[perm].reshape(N // BATCH, BATCH, 1)

            def step(carry, batch):
                params, opt_state = carry
                loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            carry, losses = jax.lax.scan(step, carry, (xb, yb))
            return carry, losses.mean()

        return jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, epochs))

    params, opt_state = init(jax.random.key(0))
    x, y = data()
    return lambda: train(params, opt_state, jax.random.key(1), x, y)


def jaxnn_fit(epochs: int, **settings):
    """``fit(verbose=0)`` on device arrays; ``settings`` go to ``fit``."""
    model = nn.Sequential(nn.Dense(HIDDEN, "relu"), nn.Dense(1, "sigmoid"))
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics=["accuracy"])
    x, y = data()
    state = trainer.init(jax.random.key(0), x)
    return lambda: trainer.fit(state, x, y, epochs=epochs, batch_size=BATCH, verbose=0, **settings)


def jaxnn_fit_shown(epochs: int):
    """``fit`` as the tutorial calls it: ``verbose=1`` (the default) on NumPy arrays,
    its progress written to a discarded stream."""
    model = nn.Sequential(nn.Dense(HIDDEN, "relu"), nn.Dense(1, "sigmoid"))
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics=["accuracy"])
    x, y = (np.asarray(a) for a in data())
    state = trainer.init(jax.random.key(0), x)

    def run():
        with contextlib.redirect_stdout(io.StringIO()):
            return trainer.fit(state, x, y, epochs=epochs, batch_size=BATCH)

    return run


def jaxnn_fit_numpy(epochs: int):
    """``fit(verbose=0)`` on NumPy arrays, as most users hold their data."""
    model = nn.Sequential(nn.Dense(HIDDEN, "relu"), nn.Dense(1, "sigmoid"))
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics=["accuracy"])
    x, y = (np.asarray(a) for a in data())
    state = trainer.init(jax.random.key(0), x)
    return lambda: trainer.fit(state, x, y, epochs=epochs, batch_size=BATCH, verbose=0)


def warm_seconds(run, repeats: int) -> list[float]:
    jax.block_until_ready(run())  # compile and warm up
    jax.block_until_ready(run())
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        samples.append(time.perf_counter() - start)
    return samples


FRESH = """
import time
start = time.perf_counter()
import jax, numpy as np
import jaxnn as nn
imported = time.perf_counter()
rng = np.random.default_rng(0)
x = rng.random((100, 4), dtype=np.float32)
y = rng.integers(0, 2, size=(100, 1)).astype(np.float32)
model = nn.Sequential(nn.Dense(32, "relu"), nn.Dense(1, "sigmoid"))
trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics=["accuracy"])
state = trainer.init(jax.random.key(0), x)
state, history = trainer.fit(state, x, y, epochs={epochs}, batch_size=10, verbose=0)
jax.block_until_ready(state)
print(imported - start, time.perf_counter() - start)
"""


def fresh_process(epochs: int) -> tuple[float, float, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", FRESH.format(epochs=epochs)],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    imported, trained = (float(v) for v in out.stdout.split())
    return wall, imported, trained


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for CI")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    epochs = 100
    repeats = 5 if args.quick else 30

    ref = warm_seconds(reference(epochs), repeats)
    ours = warm_seconds(jaxnn_fit(epochs), repeats)
    wall, imported, trained = fresh_process(epochs)
    result = {
        "workload": "seed",
        "steps": epochs * N // BATCH,
        "reference_warm_s": statistics.median(ref),
        "jaxnn_warm_s": statistics.median(ours),
        "ratio_jaxnn_over_reference": statistics.median(ours) / statistics.median(ref),
        "fresh_process_wall_s": wall,
        "fresh_import_s": imported,
        "fresh_import_to_trained_s": trained,
        "repeats": repeats,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }
    print(f"seed: {result['steps']} Adam steps of the 4-32-1 network, median of {repeats}")
    print(f"  hand-written lax.scan (warm): {result['reference_warm_s'] * 1e3:8.2f} ms")
    print(f"  jaxnn Trainer.fit     (warm): {result['jaxnn_warm_s'] * 1e3:8.2f} ms")
    print(f"  ratio jaxnn / reference     : {result['ratio_jaxnn_over_reference']:8.2f}x")
    print(
        f"  fresh process: {wall:.2f} s wall ({imported:.2f} s import, "
        f"{trained:.2f} s import to trained)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
