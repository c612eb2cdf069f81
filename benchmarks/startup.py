"""Start-up: import times, and the time to a first trained epoch in a fresh process.

Every figure comes from fresh Python processes (the median over several, the
libraries alternated), so nothing is already imported or compiled:

* ``import jax``, then ``import jaxnn`` in the same fresh process: the second is
  what jaxnn adds (the target is at most 0.2 s); installed peers' imports are timed
  alone in fresh processes, for scale (not in ``--quick``);
* a fresh process that imports jaxnn, builds the tutorial's trainer and trains one
  epoch (``fit(epochs=1, verbose=0)``), timed from the first line of the script to
  the blocked result: without a cache, then with JAX's persistent compilation cache
  in an empty folder (the first run fills it; the later runs read it).

The cache is JAX's own, turned on by jaxnn's one switch, called before the first
compilation::

    import jaxnn as nn
    nn.enable_compilation_cache("/path/to/cache")   # default: ~/.cache/jaxnn/xla

It also caches programs that compile in under a second (JAX's default leaves those
out, which is most of a small network's programs).

    python benchmarks/startup.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import peers

IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
# jax first, then jaxnn, in one process: jaxnn's own cost is the second figure.
IMPORT_JAXNN = """
import time
t = time.perf_counter()
import jax
a = time.perf_counter()
import jaxnn
print(a - t, time.perf_counter() - a)
"""

FIRST_EPOCH = """
import sys
import time
start = time.perf_counter()
import jax
import numpy as np
import jaxnn as nn
imported = time.perf_counter()
if len(sys.argv) > 1:
    nn.enable_compilation_cache(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.random((100, 4), dtype=np.float32)
y = rng.integers(0, 2, size=(100, 1)).astype(np.float32)
model = nn.Sequential(nn.Dense(32, "relu"), nn.Dense(1, "sigmoid"))
trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics=["accuracy"])
state = trainer.init(jax.random.key(0), x)
state, history = trainer.fit(state, x, y, epochs=1, batch_size=10, verbose=0)
jax.block_until_ready(state)
print(imported - start, time.perf_counter() - start)
"""

# Counts XLA compilations (JAX records one duration event per backend compile).
COUNT_COMPILES = """
import jax.monitoring
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **_: compiles.append(seconds)
    if event == "/jax/core/compile/backend_compile_duration" else None
)
"""

# The tutorial program as its users write it (verbose=1, the default, prints every
# epoch), from a fresh process to a trained and evaluated network; then the same cell
# run again (a new, equal Trainer), as a notebook user re-runs it.
TUTORIAL_JAXNN = """
import time
start = time.perf_counter()
import jax
{count}
import numpy as np
import jaxnn as nn
rng = np.random.default_rng(0)
X = rng.random((100, 4), dtype=np.float32)
y = rng.integers(0, 2, size=(100, 1)).astype(np.float32)
def cell():
    model = nn.Sequential(nn.Dense(32, "relu"), nn.Dense(1, "sigmoid"))
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics=["accuracy"])
    state = trainer.init(jax.random.key(0), X)
    state, history = trainer.fit(state, X, y, epochs=100, batch_size=10)
    return trainer.evaluate(state, X, y)
cell()
seconds, first = time.perf_counter() - start, len(compiles)
cell()
print("RESULT", seconds, first, len(compiles) - first)
"""

# The strongest hand-written equivalent: initialisation, 100 shuffled epochs of Adam
# and the evaluation in one jitted program (one compilation).
TUTORIAL_JAX = """
import time
start = time.perf_counter()
import jax
{count}
import jax.numpy as jnp
import numpy as np
import optax
rng = np.random.default_rng(0)
X = rng.random((100, 4), dtype=np.float32)
y = rng.integers(0, 2, size=(100, 1)).astype(np.float32)
tx = optax.adam(1e-3, eps=1e-7)
glorot = jax.nn.initializers.glorot_uniform()

def predict(p, x):
    h = jax.nn.relu(x @ p["w1"] + p["b1"])
    return jax.nn.sigmoid(h @ p["w2"] + p["b2"])

def loss_fn(p, x, y):
    out = jnp.clip(predict(p, x), 1e-7, 1 - 1e-7)
    return -jnp.mean(y * jnp.log(out) + (1 - y) * jnp.log(1 - out))

@jax.jit
def train_and_evaluate(key, x, y):
    k1, k2, k3 = jax.random.split(key, 3)
    params = {{"w1": glorot(k1, (4, 32)), "b1": jnp.zeros(32),
              "w2": glorot(k2, (32, 1)), "b2": jnp.zeros(1)}}

    def epoch(carry, k):
        perm = jax.random.permutation(k, 100)
        batches = (x[perm].reshape(10, 10, 4), y[perm].reshape(10, 10, 1))

        def step(carry, batch):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        carry, losses = jax.lax.scan(step, carry, batches)
        return carry, losses.mean()

    (params, _), losses = jax.lax.scan(epoch, (params, tx.init(params)), jax.random.split(k3, 100))
    accuracy = jnp.mean((predict(params, x) > 0.5) == (y > 0.5))
    return params, losses, loss_fn(params, x, y), accuracy

jax.block_until_ready(train_and_evaluate(jax.random.key(0), X, y))
print("RESULT", time.perf_counter() - start, len(compiles), 0)
"""

# Cleared from the children's environment, so no run is cached unless it asks.
CACHE_ENV = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")


# Every library's modules are imported from bytecode, as from an installed package:
# jax's come with their .pyc files, so a checkout's modules get theirs too, kept out
# of the tree (a PYTHONDONTWRITEBYTECODE=1 environment would compile them on every
# import and count that against jaxnn). run() fills it before timing.
PYCACHE = os.path.join(tempfile.gettempdir(), "jaxnn-benchmark-pycache")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CACHE_ENV}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    env.setdefault("KERAS_BACKEND", "jax")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p
    )
    return {**env, **(extra or {})}


def _python(code: str, env: dict[str, str], *args: str) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"a fresh process failed:\n{out.stderr[-2000:]}")
    return [float(v) for v in out.stdout.split()]


def import_times(modules: list[str], repeats: int) -> dict[str, list[float]]:
    """Seconds to import each module in fresh processes, alternating modules."""
    times: dict[str, list[float]] = {m: [] for m in modules}
    for _ in range(repeats):
        for m in modules:
            times[m].append(_python(IMPORT.format(module=m), _env())[0])
    return times


def jaxnn_import(repeats: int) -> dict[str, list[float]]:
    """``import jax`` alone, ``import jaxnn`` after it, and the sum, per fresh process."""
    jax_s, extra_s = zip(*(_python(IMPORT_JAXNN, _env()) for _ in range(repeats)), strict=True)
    return {
        "jax": list(jax_s),
        "jaxnn": [a + b for a, b in zip(jax_s, extra_s, strict=True)],
        "jaxnn_after_jax": list(extra_s),
    }


def first_epoch(repeats: int) -> dict:
    """Fresh-process time to a first trained epoch, without and with the cache."""
    plain = [_python(FIRST_EPOCH, _env()) for _ in range(repeats)]
    # Fresh processes in a row: the operating system's file cache is warm for all.
    with tempfile.TemporaryDirectory(prefix="jaxnn-cache-") as cache:
        cold = _python(FIRST_EPOCH, _env(), cache)
        warm = [_python(FIRST_EPOCH, _env(), cache) for _ in range(repeats)]
        entries = sum(1 for _ in Path(cache).rglob("*") if _.is_file())
    no_cache = statistics.median(t for _, t in plain)
    cached = statistics.median(t for _, t in warm)
    return {
        "no_cache_s": no_cache,
        "no_cache_import_s": statistics.median(i for i, _ in plain),
        "cache_first_run_s": cold[1],
        "cache_later_runs_s": cached,
        "cache_saving_s": no_cache - cached,
        "cache_entries": entries,
        "samples": {"no_cache": plain, "cache_first": cold, "cache_later": warm},
    }


def _result(code: str, env: dict[str, str]) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"a fresh process failed:\n{out.stderr[-2000:]}")
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
    return [float(v) for v in line.split()[1:]]


def tutorial(repeats: int) -> dict:
    """The tutorial program in fresh processes, jaxnn and hand-written JAX alternated:
    seconds from the first line to the evaluated network, and XLA compilations."""
    jaxnn_code = TUTORIAL_JAXNN.format(count=COUNT_COMPILES)
    jax_code = TUTORIAL_JAX.format(count=COUNT_COMPILES)
    ours, ref = [], []
    for _ in range(repeats):
        ours.append(_result(jaxnn_code, _env()))
        ref.append(_result(jax_code, _env()))
    seconds = statistics.median(s for s, _, _ in ours)
    ref_seconds = statistics.median(s for s, _, _ in ref)
    return {
        "jaxnn_s": seconds,
        "pure_jax_s": ref_seconds,
        "ratio": seconds / ref_seconds,
        "jaxnn_compiles": int(ours[0][1]),
        "pure_jax_compiles": int(ref[0][1]),
        "rerun_compiles": int(ours[0][2]),
        "samples": {"jaxnn": ours, "pure_jax": ref},
    }


def run(quick: bool) -> dict:
    """Measures everything; returns a JSON-ready dict."""
    repeats = 3 if quick else 7
    # Peers' imports are for scale only: the full run times them, --quick does not.
    others = [] if quick else [p for p in peers.PEERS if peers.installed(p)]
    libraries = [peers.load(p).LIBRARY for p in others]
    _python(f"import {', '.join(['jax', 'optax', 'jaxnn.population', *libraries])}", _env())
    times = jaxnn_import(repeats)  # the line above filled PYCACHE
    peer_times = import_times(libraries, 3)
    med = {m: statistics.median(v) for m, v in {**times, **peer_times}.items()}
    result = {
        "workload": "startup",
        "repeats": repeats,
        "import_s": med,
        "import_samples": {**times, **peer_times},
        "jaxnn_over_jax_s": med.pop("jaxnn_after_jax"),
        "first_epoch": first_epoch(1 if quick else 3),
        "tutorial": tutorial(1 if quick else 3),
    }
    return result


def report(result: dict) -> None:
    """Prints the result for a person."""
    imp, fe = result["import_s"], result["first_epoch"]
    print(f"startup: fresh processes, import times the median of {result['repeats']}")
    for m, s in imp.items():
        print(f"  import {m:<8} {s:6.2f} s")
    print(f"  import jaxnn - import jax: {result['jaxnn_over_jax_s']:+.2f} s (target <= +0.20 s)")
    print(f"  first trained epoch, no cache     : {fe['no_cache_s']:6.2f} s")
    print(f"  first trained epoch, cache filled : {fe['cache_first_run_s']:6.2f} s")
    print(
        f"  first trained epoch, cache read   : {fe['cache_later_runs_s']:6.2f} s "
        f"(saves {fe['cache_saving_s']:.2f} s; {fe['cache_entries']} cache files)"
    )
    tu = result["tutorial"]
    print(
        f"  tutorial program, import to evaluated: jaxnn {tu['jaxnn_s']:.2f} s, "
        f"{tu['jaxnn_compiles']} compilations; hand-written JAX {tu['pure_jax_s']:.2f} s, "
        f"{tu['pure_jax_compiles']}; ratio {tu['ratio']:.2f}x (target <= 1.3x, <= 4 "
        f"compilations); the cell run again compiles {tu['rerun_compiles']}"
    )


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer fresh processes, for CI")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    result = run(args.quick)
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
