"""The cost of spreading work over 8 devices, against the same work on one device.

Run in one process started with 8 virtual CPU devices
(``--xla_force_host_platform_device_count=8``, set by this script before JAX starts).
The virtual devices share this machine's cores, so there is no speed-up to be had: the
ratio measures the overhead of the partitioned program (the collectives, the uneven
split, the extra scheduling), which should stay small. On 8 real GPUs the same lines
divide the per-device work by 8 and add one all-reduce of the gradients per step.

* ``mlp``: ``Trainer.fit`` of the 784-512-512-10 MLP, global batch 256, one epoch of
  ``--steps`` steps, with ``parallel=nn.parallel.data_parallel()`` over 8 devices,
  against ``parallel=None`` (one device), same data, same seed;
* ``population``: ``population.fit`` of 1024 tutorial networks (4-32-1, 100 examples
  each, batch 10, ``--epochs`` epochs) with the members sharded over 8 devices by
  ``nn.parallel.shard_members``, against the same population on one device.

* ``mlp`` times three layouts on the 8 devices: the default (params replicated,
  Adam's large moments split over the batch axis, so each device updates an eighth of
  each large kernel), ``split_optimizer=False`` (every device runs the whole update),
  and ``param_axis="data"`` (params split too, FSDP-style);
* ``startup``: the wall time for 2 processes (2 virtual devices each) to start,
  ``nn.parallel.initialize`` over localhost and run one collective, against one
  process doing the same on its own 4 devices.

Both sides are timed warm (compiled first), alternating, median of ``--repeats``.

    python benchmarks/parallel.py [--quick] [--json PATH]
"""

from __future__ import annotations

import os

os.environ["JAX_PLATFORMS"] = "cpu"  # virtual CPU devices, even where a GPU is present
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import argparse  # after the flag above: JAX reads it when it starts
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

import jaxnn as nn
from jaxnn import population as pop

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.peers import common as c


def mlp(steps: int, repeats: int) -> dict:
    batch = 256
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=(steps * batch,)).astype(np.int32)

    def build(parallel: nn.parallel.DataParallel | None) -> Callable[[], object]:
        model = nn.Sequential(nn.Dense(512, "relu"), nn.Dense(512, "relu"), nn.Dense(10))
        loss = nn.losses.get("sparse_categorical_crossentropy", from_logits=True)
        trainer = nn.Trainer(model, loss, "adam", parallel=parallel)
        state = trainer.init(jax.random.key(0), x[:1])
        fit = dict(epochs=1, batch_size=batch, shuffle=False, verbose=0)
        return lambda: trainer.fit(state, x, y, **fit)[0].params

    timed = c.alternate(
        {
            "one_device": build(None),
            "eight_devices": build(nn.parallel.data_parallel()),
            "eight_devices_replicated_update": build(
                nn.parallel.data_parallel(split_optimizer=False)
            ),
            "eight_devices_fsdp": build(nn.parallel.data_parallel(param_axis="data")),
        },
        repeats,
    )
    return {"steps": steps, "batch": batch, **timed}


STARTUP = """
import sys, time
start = float(sys.argv[1])
import jax, jax.numpy as jnp
import jaxnn as nn
if len(sys.argv) > 2:
    nn.parallel.initialize(f"localhost:{sys.argv[2]}", 2, int(sys.argv[3]), local_devices=2)
else:
    jax.config.update("jax_num_cpu_devices", 4)
dp = nn.parallel.data_parallel()
ones = nn.parallel.put(jnp.ones((8,)), dp.batch_sharding())
total = jax.jit(jnp.sum, out_shardings=dp.replicated())(ones)
assert float(total) == 8.0
print(time.time() - start)
"""


def startup(repeats: int) -> dict:
    """Seconds from spawning to a first collective: 2 processes against 1."""
    import socket
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))

    def run(processes: int) -> float:
        with socket.socket() as s:
            s.bind(("localhost", 0))
            port = str(s.getsockname()[1])
        start = time.time()
        extra = (lambda i: [port, str(i)]) if processes > 1 else (lambda i: [])
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", STARTUP, str(start), *extra(i)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(processes)
        ]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        return time.time() - start

    times = {"one_process": [], "two_processes": []}
    for _ in range(repeats):
        times["one_process"].append(run(1))
        times["two_processes"].append(run(2))
    return {k: {"seconds": statistics.median(v), "times": v} for k, v in times.items()}


def population(members: int, epochs: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.random((members, 100, 4), dtype=np.float32)
    y = rng.integers(0, 2, size=(members, 100, 1)).astype(np.float32)
    trainer = nn.Trainer(
        nn.Sequential(nn.Dense(32, "relu"), nn.Dense(1, "sigmoid")), "binary_crossentropy", "adam"
    )
    states = pop.init(trainer, jax.random.key(0), x[0], members)
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("members",))
    sharded = nn.parallel.shard_members(states, mesh)
    xs, ys = nn.parallel.shard_members((x, y), mesh)
    fit = dict(epochs=epochs, batch_size=10, member_data=True)

    timed = c.alternate(
        {
            "one_device": lambda: pop.fit(trainer, states, x, y, **fit)[0].params,
            "eight_devices": lambda: pop.fit(trainer, sharded, xs, ys, **fit)[0].params,
        },
        repeats,
    )
    return {"members": members, "epochs": epochs, "steps": epochs * 10, **timed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    assert len(jax.devices()) == 8, jax.devices()
    results = {
        "devices": len(jax.devices()),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "mlp": mlp(steps=4 if args.quick else 40, repeats=3 if args.quick else 7),
        "population": population(
            members=64 if args.quick else 1024,
            epochs=2 if args.quick else 100,
            repeats=2 if args.quick else 5,
        ),
        "startup": startup(repeats=1 if args.quick else 3),
    }
    for key in ("mlp", "population"):
        r = results[key]
        r["overhead"] = r["eight_devices"]["seconds"] / r["one_device"]["seconds"]
        print(
            f"{key}: one device {r['one_device']['seconds']:.3f} s, 8 virtual devices "
            f"{r['eight_devices']['seconds']:.3f} s ({r['overhead']:.2f}x)",
            flush=True,
        )
    r = results["mlp"]
    for layout in ("replicated_update", "fsdp"):
        seconds = r[f"eight_devices_{layout}"]["seconds"]
        r[f"overhead_{layout}"] = seconds / r["one_device"]["seconds"]
        print(f"mlp, 8 devices, {layout}: {seconds:.3f} s ({r[f'overhead_{layout}']:.2f}x)")
    r = results["startup"]
    r["ratio"] = r["two_processes"]["seconds"] / r["one_process"]["seconds"]
    print(
        f"startup to a first collective: one process {r['one_process']['seconds']:.2f} s, "
        f"two processes {r['two_processes']['seconds']:.2f} s ({r['ratio']:.2f}x)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
