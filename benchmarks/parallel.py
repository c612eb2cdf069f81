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

* ``breakdown``: why the MLP's ratio is what it is. The MLP's training step (no
  guard, batches stacked beforehand) on one device, on the 8 devices, and on the 8
  devices with no communication at all (each device updating on its own 32
  examples: a floor for any data-parallel layout); then every collective in the
  compiled 8-device step (kind and bytes, read from the optimised HLO), each timed
  alone over the same 8 devices. The floor plus the cheapest way of summing the
  gradient (an all-reduce or a reduce-scatter of its bytes) is a lower bound on the
  8-device step that no layout can beat on these devices.

Each section is timed warm (compiled first), alternating, median of several repeats.

    python benchmarks/parallel.py [--quick] [--json PATH] [--only mlp,breakdown]
"""

from __future__ import annotations

import os

os.environ["JAX_PLATFORMS"] = "cpu"  # virtual CPU devices, even where a GPU is present
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import argparse  # after the flag above: JAX reads it when it starts
import json
import math
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


COLLECTIVE = re.compile(
    r"= (\(.*?\)|\S+) (all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)\("
)
ARRAY = re.compile(r"(f32|f16|bf16|s32|u32|pred)\[([\d,]*)\]")
ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "pred": 1}


def collectives_of(hlo: str) -> list[dict]:
    """The collectives of a compiled program: kind and the shapes of its result."""
    found = []
    for result, kind in COLLECTIVE.findall(hlo):
        shapes = [
            (dtype, tuple(int(d) for d in dims.split(",") if d))
            for dtype, dims in ARRAY.findall(result)
        ]
        size = sum(ITEMSIZE[t] * math.prod(shape) for t, shape in shapes)
        found.append({"kind": kind, "shapes": shapes, "bytes": size})
    return found


def collective_seconds(op: dict, mesh: jax.sharding.Mesh, repeats: int, loops: int = 20) -> float:
    """Seconds for one collective like ``op`` (same kind, same result shapes) over the
    mesh, timed alone: ``loops`` of them in a ``fori_loop`` inside ``shard_map``, so
    that neither dispatch nor a host sync is counted."""
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    axis, n = mesh.axis_names[0], mesh.size
    # The result's elements as one float32 vector per device (f32 is every op's dtype
    # in the MLP's step; a tuple all-reduce of the same bytes costs the same).
    size = max(1, op["bytes"] // 4)
    if op["kind"] == "all-reduce":
        body = lambda v: jax.lax.psum(v, axis)  # x8 a loop: finite for 20 loops
    elif op["kind"] == "all-gather":
        size = -(-size // n) * n
        body = lambda v: jax.lax.all_gather(v[: size // n], axis, tiled=True)
    elif op["kind"] == "reduce-scatter":
        body = lambda v: jnp.tile(jax.lax.psum_scatter(v, axis, tiled=True), n)
        size = -(-size // n) * n
    else:
        return float("nan")
    spec = P(axis)

    @jax.jit
    def run(v: jax.Array) -> jax.Array:
        looped = lambda v: jax.lax.fori_loop(0, loops, lambda i, v: body(v), v)
        return jax.shard_map(looped, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)(v)

    v = jax.device_put(jnp.ones((n * size,), jnp.float32), jax.sharding.NamedSharding(mesh, spec))
    timed = c.alternate({"op": lambda: run(v)}, repeats)["op"]
    return timed["seconds"] / loops


def breakdown(steps: int, repeats: int) -> dict:
    """Where the MLP's data-parallel step spends its time on the 8 virtual devices.

    Each program is ``steps`` of ``Trainer.programs.step`` (no guard, no gather: the
    batches are stacked beforehand), so the three step times below differ only in
    where the work runs:

    * ``one_device``: the step on one device, batch 256;
    * ``eight_devices``: the default ``data_parallel()`` trainer's step, batch split
      over the 8 (what ``fit`` runs inside its epoch);
    * ``no_communication``: each of the 8 devices runs forward, backward and a plain
      SGD update on its own 32 examples and never communicates (``shard_map``, no
      collective): the least work any data-parallel layout does per step, so its time
      is a floor for every layout on these devices;

    then the collectives in the compiled ``eight_devices`` step (kind, bytes), each
    timed alone over the same 8 devices.
    """
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    batch = 256
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps, batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=(steps, batch)).astype(np.int32)
    model = nn.Sequential(nn.Dense(512, "relu"), nn.Dense(512, "relu"), nn.Dense(10))
    loss = nn.losses.get("sparse_categorical_crossentropy", from_logits=True)
    dp = nn.parallel.data_parallel()
    one, many = (nn.Trainer(model, loss, "adam", parallel=p) for p in (None, dp))
    ones = np.ones((steps, batch), np.float32)
    key = jax.random.key(1)

    def scanned(trainer: nn.Trainer) -> Callable:
        def run(state: Any, batches: tuple) -> Any:
            def body(state: Any, batch: tuple) -> tuple:
                if trainer.parallel is not None:
                    batch = trainer.parallel.constrain_batch(batch)
                xb, yb, wb = batch
                state, sums = trainer.programs.step(state, xb, yb, wb, wb, key)
                return state, sums["loss"]

            return jax.lax.scan(body, state, batches)

        return jax.jit(run)

    batches = (x, y, ones)
    split = NamedSharding(dp.mesh, P(None, dp.axis))
    state_one = one.init(jax.random.key(0), x[0])
    state_many = many.init(jax.random.key(0), x[0])
    run_one, run_many = scanned(one), scanned(many)
    on_mesh = jax.device_put(batches, split)

    def local(params: Any, batches: tuple) -> Any:
        def body(params: Any, batch: tuple) -> tuple:
            xb, yb, _ = batch

            def total(p: Any) -> jax.Array:
                return jnp.sum(loss.per_example(model.apply(p, state_one.model_state, xb)[0], yb))

            grads = jax.grad(total)(params)
            return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), None

        return jax.lax.scan(body, params, batches)[0]

    floor = jax.jit(
        jax.shard_map(
            local, mesh=dp.mesh, in_specs=(P(), P(None, dp.axis)), out_specs=P(), check_vma=False
        )
    )
    params = dp.replicate(state_one.params)
    timed = c.alternate(
        {
            "one_device": lambda: run_one(state_one, batches)[1],
            "eight_devices": lambda: run_many(state_many, on_mesh)[1],
            "no_communication": lambda: floor(params, on_mesh),
        },
        repeats,
    )
    per_step = {k: v["seconds"] / steps for k, v in timed.items()}

    step = jax.jit(lambda s, b: many.programs.step(s, *dp.constrain_batch(b), b[2], key))
    hlo = step.lower(state_many, jax.device_put((x[0], y[0], ones[0]), dp.batch_sharding()))
    ops = collectives_of(hlo.compile().as_text())
    for op in ops:
        op["seconds"] = collective_seconds(op, dp.mesh, repeats)
        op["shapes"] = [f"{t}{list(shape)}" for t, shape in op["shapes"]]
    gradient_bytes = sum(a.nbytes for a in jax.tree.leaves(state_one.params))
    cheapest = min(
        collective_seconds({"kind": kind, "bytes": gradient_bytes}, dp.mesh, repeats)
        for kind in ("all-reduce", "reduce-scatter")
    )
    collective_s = sum(op["seconds"] for op in ops)
    return {
        "steps": steps,
        "batch": batch,
        "step_seconds": per_step,
        "collectives": ops,
        "collective_seconds": collective_s,
        "predicted_eight_devices_s": per_step["no_communication"] + collective_s,
        "gradient_bytes": gradient_bytes,
        "cheapest_gradient_reduction_s": cheapest,
        "lower_bound_ratio": (per_step["no_communication"] + cheapest) / per_step["one_device"],
        "ratio": per_step["eight_devices"] / per_step["one_device"],
        "floor_ratio": per_step["no_communication"] / per_step["one_device"],
        **timed,
    }


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


SECTIONS = ("mlp", "population", "breakdown", "startup")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all)",
    )
    args = parser.parse_args()
    only = args.only.split(",")
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown sections {unknown}; choose from {list(SECTIONS)}")
    assert len(jax.devices()) == 8, jax.devices()
    quick = args.quick
    results: dict[str, Any] = {
        "devices": len(jax.devices()),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "load_average_start": os.getloadavg(),
    }
    if "mlp" in only:
        results["mlp"] = mlp(steps=4 if quick else 40, repeats=3 if quick else 7)
    if "population" in only:
        results["population"] = population(
            members=64 if quick else 1024, epochs=2 if quick else 100, repeats=2 if quick else 5
        )
    if "breakdown" in only:
        results["breakdown"] = breakdown(steps=4 if quick else 40, repeats=3 if quick else 7)
    if "startup" in only:
        results["startup"] = startup(repeats=1 if quick else 3)
    results["load_average_end"] = os.getloadavg()
    for key in ("mlp", "population"):
        if key not in results:
            continue
        r = results[key]
        r["overhead"] = r["eight_devices"]["seconds"] / r["one_device"]["seconds"]
        print(
            f"{key}: one device {r['one_device']['seconds']:.3f} s, 8 virtual devices "
            f"{r['eight_devices']['seconds']:.3f} s ({r['overhead']:.2f}x)",
            flush=True,
        )
    if "mlp" in results:
        r = results["mlp"]
        for layout in ("replicated_update", "fsdp"):
            seconds = r[f"eight_devices_{layout}"]["seconds"]
            r[f"overhead_{layout}"] = seconds / r["one_device"]["seconds"]
            print(f"mlp, 8 devices, {layout}: {seconds:.3f} s ({r[f'overhead_{layout}']:.2f}x)")
    if "breakdown" in results:
        r = results["breakdown"]
        ms = {k: 1e3 * v for k, v in r["step_seconds"].items()}
        print(
            f"breakdown, ms per MLP step: one device {ms['one_device']:.2f}; 8 devices "
            f"{ms['eight_devices']:.2f} ({r['ratio']:.2f}x); 8 devices with no "
            f"communication {ms['no_communication']:.2f} ({r['floor_ratio']:.2f}x)"
        )
        for op in r["collectives"]:
            print(
                f"  {op['kind']} of {op['bytes'] / 1e6:.2f} MB {op['shapes']}: "
                f"{1e3 * op['seconds']:.2f} ms"
            )
        print(
            f"  no communication + these collectives = "
            f"{1e3 * r['predicted_eight_devices_s']:.2f} ms (measured "
            f"{ms['eight_devices']:.2f}); floor + the cheapest reduction of the "
            f"{r['gradient_bytes'] / 1e6:.2f} MB gradient "
            f"({1e3 * r['cheapest_gradient_reduction_s']:.2f} ms) = "
            f"{r['lower_bound_ratio']:.2f}x one device"
        )
    if "startup" in results:
        r = results["startup"]
        r["ratio"] = r["two_processes"]["seconds"] / r["one_process"]["seconds"]
        print(
            f"startup to a first collective: one process {r['one_process']['seconds']:.2f} s, "
            f"two processes {r['two_processes']['seconds']:.2f} s ({r['ratio']:.2f}x)"
        )
    print(f"load average: {results['load_average_start']} -> {results['load_average_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
