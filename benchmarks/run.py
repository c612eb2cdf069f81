"""jaxnn's benchmark suite: every workload, jaxnn against pure JAX and the peers.

Each workload runs in a fresh Python process per library (jaxnn and its pure-JAX
reference share one, alternating between repeats so their ratio is fair), so peak
memory (``ru_maxrss`` of that process) and compile times are cold and honest. A peer
that is not installed is reported as skipped. The matmul peak of this machine is
measured once per run, so throughput can be read as a fraction of it.

    python -m benchmarks [--quick] [--only seed,mlp] [--json PATH] [--markdown PATH]
                         [--png PATH] [--readme README.md] [--peers flax,torch|none]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("seed", "mlp", "cnn", "population", "parallel", "streaming", "startup")
PEER_WORKLOADS = ("seed", "mlp", "cnn")
QUICK_CORE_ONLY = ("cnn",)  # peers' CNNs compile slowly; --quick runs jaxnn's and pure JAX's
MARKERS = ("<!-- results:start -->", "<!-- results:end -->")

# Per workload: (quick, full) settings for a worker.
SETTINGS = {
    "seed": {"quick": {"repeats": 3}, "full": {"repeats": 15}},
    "mlp": {"quick": {"steps": 10, "repeats": 3}, "full": {"steps": 100, "repeats": 7}},
    "cnn": {"quick": {"steps": 3, "repeats": 2}, "full": {"steps": 10, "repeats": 5}},
}

DESCRIPTIONS = {
    "seed": "tutorial net 4-32-1, batch 10, 1000 Adam steps (100 epochs of 100 examples)",
    "mlp": "784-512-512-10, batch 256, Adam, one device batch",
    "cnn": "LeNet-style (conv 32, conv 64, dense 128), 28x28x1, batch 128, Adam",
    "population": "tutorial nets trained at once, each on its own data (time per step of all)",
}

# ------------------------------------------------------------------------- workers


def _core_impls(workload: str, quick: bool) -> list:
    """jaxnn and its pure-JAX reference(s); the reference comes first."""
    import jax

    from benchmarks.peers import common as c
    from benchmarks.peers import pure_jax

    settings = SETTINGS[workload]["quick" if quick else "full"]
    if workload == "seed":
        from benchmarks import seed

        ref, ours = seed.reference(c.SEED_EPOCHS), seed.jaxnn_fit(c.SEED_EPOCHS)
        numpy_fit, shown = seed.jaxnn_fit_numpy(c.SEED_EPOCHS), seed.jaxnn_fit_shown(c.SEED_EPOCHS)
        unguarded = seed.jaxnn_fit(c.SEED_EPOCHS, on_nonfinite="ignore")
        return [
            c.Timed(
                "pure JAX: lax.scan over all steps, one program",
                lambda: jax.block_until_ready(ref()),
                c.SEED_STEPS,
            ),
            c.Timed("jaxnn: Trainer.fit", lambda: jax.block_until_ready(ours()), c.SEED_STEPS),
            c.Timed(
                "jaxnn: Trainer.fit, NumPy data",
                lambda: jax.block_until_ready(numpy_fit()),
                c.SEED_STEPS,
            ),
            c.Timed(
                "jaxnn: Trainer.fit, NumPy data, verbose=1",
                lambda: jax.block_until_ready(shown()),
                c.SEED_STEPS,
            ),
            c.Timed(
                "jaxnn: Trainer.fit, no NaN/Inf check (on_nonfinite='ignore')",
                lambda: jax.block_until_ready(unguarded()),
                c.SEED_STEPS,
            ),
            *pure_jax.seed(),
        ]
    if workload == "mlp":
        from benchmarks import mlp

        return mlp.impls(settings["steps"])
    if workload == "cnn":
        from benchmarks import cnn

        x, y = cnn.data()
        steps = settings["steps"]

        def runner(name: str, build) -> c.Timed:
            box: dict = {}
            return c.Timed(
                name,
                lambda: box["runner"].run(steps),
                steps,
                setup=lambda: box.setdefault("runner", cnn.Runner(name, build, x, y)),
            )

        return [
            runner("pure JAX: lax.conv, jitted step", cnn.reference_model),
            runner("jaxnn: layers, jitted step", cnn.jaxnn_model),
        ]
    raise ValueError(f"no core implementation of workload {workload!r}")


def _matmul_peak(quick: bool) -> dict:
    """GFLOP/s of a jitted 2048^3 float32 matmul through XLA, the median of runs."""
    import jax
    import jax.numpy as jnp

    n = 2048
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    jax.block_until_ready(f(a, b))
    samples = []
    for _ in range(5 if quick else 15):
        start = time.perf_counter()
        jax.block_until_ready(f(a, b))
        samples.append(time.perf_counter() - start)
    flops = 2.0 * n**3
    result = {
        "size": n,
        "gflops": flops / statistics.median(samples) / 1e9,
        "best_gflops": flops / min(samples) / 1e9,
        "samples": samples,
    }
    try:  # jaxnn's own timing API, where present: its (median) figure, for comparison
        from jaxnn.benchmark import measure_matmul_peak

        result["jaxnn_benchmark_gflops"] = measure_matmul_peak(n) / 1e9
    except Exception as e:  # optional: the suite must not depend on it
        result["jaxnn_benchmark_gflops"] = f"not measured: {type(e).__name__}: {e}"
    return result


def worker(workload: str, lib: str, quick: bool) -> dict:
    """Runs one workload for one library in this process; returns its rows."""
    from benchmarks.peers import common as c

    if workload == "peak":
        return {"peak": _matmul_peak(quick), "peak_rss_mib": c.peak_rss_mib()}
    settings = SETTINGS[workload]["quick" if quick else "full"]
    if lib == "core":
        impls = _core_impls(workload, quick)
    else:
        from benchmarks import peers

        fn = getattr(peers.load(lib), workload)
        impls = fn() if workload == "seed" else fn(settings["steps"])
    rows = c.measure(impls, settings["repeats"], budget_s=10.0 if quick else 40.0)
    for i, row in enumerate(rows):
        row["library"] = "jaxnn" if row["name"].startswith("jaxnn") else lib
        row["reference"] = lib == "core" and i == 0
        if row["library"] == "core":
            row["library"] = "jax"
    return {"rows": rows, "peak_rss_mib": c.peak_rss_mib()}


# ------------------------------------------------------------------------- children


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "KERAS_BACKEND": "jax"}


def run_child(cmd: list[str], timeout: float) -> dict:
    """Runs ``cmd`` in a fresh process; its exit code, output, time and peak memory.

    ``os.wait4`` gives that one process's own ``ru_maxrss``, not the running maximum
    over all children that ``RUSAGE_CHILDREN`` would give.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=_env(), cwd=ROOT, text=True)
        rusage = None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                proc.kill()
                _, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return {
            "returncode": proc.returncode,
            "timed_out": seconds > timeout,
            "stdout": out.read(),
            "stderr": err.read(),
            "seconds": seconds,
            "peak_rss_mib": rusage.ru_maxrss / 1024,
        }


def _run_worker(workload: str, lib: str, quick: bool, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.json"
        cmd = [sys.executable, "-m", "benchmarks.run", "--worker", workload, "--lib", lib]
        cmd += ["--out", str(path)] + (["--quick"] if quick else [])
        child = run_child(cmd, timeout)
        if child["returncode"] != 0 or not path.exists():
            return {"error": _last_lines(child), "seconds": child["seconds"]}
        result = json.loads(path.read_text())
    result["process_s"] = child["seconds"]
    result["peak_rss_mib"] = child["peak_rss_mib"]
    return result


def _last_lines(child: dict, n: int = 6) -> str:
    why = "timed out" if child["timed_out"] else f"exit code {child['returncode']}"
    lines = (child["stderr"] or child["stdout"]).strip().splitlines()[-n:]
    return why + (": " + " | ".join(lines) if lines else "")


# ------------------------------------------------------------------------- workloads


def _training_workload(workload: str, quick: bool, peer_names: list[str], timeout: float):
    from benchmarks import peers

    rows, notes = [], []
    core = _run_worker(workload, "core", quick, timeout)
    if "error" in core:
        return [], [f"{workload}: jaxnn/pure-JAX worker failed: {core['error']}"], True
    for row in core["rows"]:
        row["peak_rss_mib"] = core["peak_rss_mib"]
        row["process"] = "jaxnn + pure JAX"
    rows += core["rows"]
    _progress(workload, "jaxnn + pure JAX", core)
    for name in peer_names:
        module = peers.load(name)
        if not hasattr(module, workload):
            continue
        if (quick and workload in QUICK_CORE_ONLY) or not peers.installed(name):
            continue  # reported once, in the notes
        got = _run_worker(workload, name, quick, timeout)
        if "error" in got:
            rows.append({"library": name, "name": module.LABEL, "error": got["error"]})
            notes.append(f"{workload}: {module.LABEL} failed: {got['error']}")
            print(f"  {workload:<10} {module.LABEL}: FAILED ({got['error']})", flush=True)
            continue
        for row in got["rows"]:
            row["peak_rss_mib"] = got["peak_rss_mib"]
            row["process"] = name
            row["version"] = peers.version(name)
        rows += got["rows"]
        _progress(workload, module.LABEL, got)
    return rows, notes, False


def _progress(workload: str, label: str, got: dict) -> None:
    parts = [f"{r['name'].split(': ', 1)[-1]} {r['step_s'] * 1e3:.3f} ms/step" for r in got["rows"]]
    print(f"  {workload:<10} {label} ({got['process_s']:.1f} s): " + "; ".join(parts), flush=True)


def _population(quick: bool, timeout: float):
    script = ROOT / "benchmarks" / "population.py"
    if not script.exists():
        return [], ["population: benchmarks/population.py is not there yet; skipped"], False
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "population.json"
        cmd = [sys.executable, str(script), "--json", str(path)]
        cmd += ["--quick", "--no-scaling"] if quick else []
        child = run_child(cmd, timeout)
        if child["returncode"] != 0 or not path.exists():
            return [], [f"population: benchmarks/population.py failed: {_last_lines(child)}"], True
        got = json.loads(path.read_text())
    steps, members = got["steps"], got["members"]
    rows = []
    # The reference is the peer's loop (Flax, or the same loop in pure JAX without it).
    for key, is_ref in (
        ("baseline", True),
        ("jaxnn", False),
        ("jaxnn_no_metrics", False),
        ("single_program", False),
    ):
        if key not in got:
            continue
        seconds = got[key]["seconds"]
        times = got[key].get("times", [seconds])
        rows.append(
            {
                "library": {"baseline": got[key].get("name", "jax_loop").split("_")[0]}.get(
                    key, "jax" if key == "single_program" else "jaxnn"
                ),
                "name": got[key]["label"],
                "reference": is_ref,
                "seconds": seconds,
                "step_s": seconds / steps,
                "steps": steps,
                "spread": (max(times) - min(times)) / statistics.median(times),
                "first_call_s": None,
                "peak_rss_mib": child["peak_rss_mib"],
                "process": "benchmarks/population.py",
                "members": members,
            }
        )
    print(
        f"  population {members} members ({child['seconds']:.1f} s): "
        + "; ".join(f"{r['name']} {r['seconds']:.3f} s" for r in rows),
        flush=True,
    )
    return rows, [], False, {"members": members, "raw": got}


def _parallel(quick: bool, timeout: float) -> tuple[dict | None, list[str], bool]:
    """``benchmarks/parallel.py``: 8 virtual devices against one, in its own process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "parallel.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "parallel.py"), "--json", str(path)]
        child = run_child(cmd + (["--quick"] if quick else []), timeout)
        if child["returncode"] != 0 or not path.exists():
            return None, [f"parallel: benchmarks/parallel.py failed: {_last_lines(child)}"], True
        got = json.loads(path.read_text())
    print(
        f"  parallel   ({child['seconds']:.1f} s): 8 virtual devices vs one: mlp "
        f"{got['mlp']['overhead']:.2f}x, population {got['population']['overhead']:.2f}x",
        flush=True,
    )
    return got, [], False


def _streaming(quick: bool, timeout: float) -> tuple[dict | None, list[str], bool]:
    """``benchmarks/streaming.py``: the MLP fed from memory, a generator, a file, grain."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "streaming.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "streaming.py"), "--json", str(path)]
        child = run_child(cmd + (["--quick"] if quick else []), timeout)
        if child["returncode"] != 0 or not path.exists():
            return None, [f"streaming: benchmarks/streaming.py failed: {_last_lines(child)}"], True
        got = json.loads(path.read_text())
    ratios = ", ".join(
        f"{r['key']} {r['vs_memory']:.2f}x" for r in got["rows"][1:] if "vs_memory" in r
    )
    mem = got["memory"]
    print(
        f"  streaming  ({child['seconds']:.1f} s): steps/s vs in-memory fit: {ratios}; "
        f"peak RSS of (c) "
        + " / ".join(
            f"{r['peak_rss_mib']:.0f} MiB ({r['file_mib']} MiB file)" for r in mem["runs"]
        ),
        flush=True,
    )
    notes = [f"streaming: {r['name']}: {r['skipped']}" for r in got["rows"] if "skipped" in r]
    return got, notes, False


def _startup(quick: bool, timeout: float) -> tuple[dict | None, list[str], bool]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "startup.json"
        cmd = [sys.executable, "-m", "benchmarks.startup", "--json", str(path)]
        child = run_child(cmd + (["--quick"] if quick else []), timeout)
        if child["returncode"] != 0 or not path.exists():
            return None, [f"startup failed: {_last_lines(child)}"], True
        got = json.loads(path.read_text())
    fe = got["first_epoch"]
    print(
        f"  startup    ({child['seconds']:.1f} s): import jaxnn - jax "
        f"{got['jaxnn_over_jax_s']:+.2f} s; first epoch {fe['no_cache_s']:.2f} s, "
        f"cached {fe['cache_later_runs_s']:.2f} s",
        flush=True,
    )
    return got, [], False


# ------------------------------------------------------------------------- machine


def machine_info() -> dict:
    """CPU model, cores, versions, date and load: what a reader needs to weigh numbers."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    from importlib import metadata

    for dist in ("jax", "jaxlib", "optax", "numpy", "jaxnn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    import jax

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "load_average_start": _load(),
    }


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ------------------------------------------------------------------------- results


def finish(results: dict) -> dict:
    """Adds ratios against each workload's reference, peak fractions, and targets."""
    from benchmarks.peers import common as c

    # The best run, not the median: the peak is what this machine can do at all.
    peak = (results.get("matmul_peak") or {}).get("best_gflops")
    flops = {"mlp": c.mlp_flops_per_step(), "cnn": c.cnn_flops_per_step()}
    for workload, block in results["workloads"].items():
        rows = block.get("rows", [])
        ref = next((r for r in rows if r.get("reference")), None)
        for r in rows:
            if "step_s" not in r:
                continue
            if ref is not None:
                r["time_vs_reference"] = r["step_s"] / ref["step_s"]
            if workload in flops:
                r["gflops"] = flops[workload] / r["step_s"] / 1e9
                if peak:
                    r["peak_fraction"] = r["gflops"] / peak
    results["targets"] = targets(results)
    return results


def _row(results: dict, workload: str, prefix: str) -> dict | None:
    rows = results["workloads"].get(workload, {}).get("rows", [])
    return next((r for r in rows if r["name"].startswith(prefix) and "step_s" in r), None)


def ref_of(results: dict, workload: str) -> dict | None:
    rows = results["workloads"].get(workload, {}).get("rows", [])
    return next((r for r in rows if r.get("reference")), None)


def _spread(*rows: dict | None) -> str:
    """The larger (max - min) / median of the rows' samples, as a percentage."""
    return f"{100 * max(r.get('spread', 0.0) for r in rows if r):.0f}%"


def targets(results: dict) -> list[dict]:
    """The issue's targets, each as measured in this run (``None`` if not measured)."""
    out = []
    ours = _row(results, "seed", "jaxnn")
    if ours and "time_vs_reference" in ours:
        peers = [
            r
            for r in results["workloads"]["seed"]["rows"]
            if "step_s" in r and r["library"] not in ("jax", "jaxnn")
        ]
        fastest = min(peers, key=lambda r: r["step_s"]) if peers else None
        out.append(
            {
                "target": "seed: jaxnn warm time <= 1.3x pure-JAX lax.scan",
                "measured": f"{ours['time_vs_reference']:.3f}x "
                f"(spread {_spread(ours, ref_of(results, 'seed'))})",
                "met": ours["time_vs_reference"] <= 1.3,
            }
        )
        if fastest is not None:
            out.append(
                {
                    "target": "seed: jaxnn ahead of every peer",
                    "measured": f"fastest peer ({fastest['name']}) takes "
                    f"{fastest['step_s'] / ours['step_s']:.1f}x jaxnn's time",
                    "met": ours["step_s"] < fastest["step_s"],
                }
            )
    numpy_row = _row(results, "seed", "jaxnn: Trainer.fit, NumPy data")
    shown_row = _row(results, "seed", "jaxnn: Trainer.fit, NumPy data, verbose=1")
    if numpy_row and "time_vs_reference" in numpy_row:
        out.append(
            {
                "target": "seed: fit on NumPy data (per-call work included) <= 1.3x pure-JAX "
                "lax.scan",
                "measured": f"{numpy_row['time_vs_reference']:.3f}x "
                f"(spread {_spread(numpy_row, ref_of(results, 'seed'))})",
                "met": numpy_row["time_vs_reference"] <= 1.3,
            }
        )
    if numpy_row and shown_row:
        ratio = shown_row["step_s"] / numpy_row["step_s"]
        out.append(
            {
                "target": "seed: verbose=1 <= 1.2x verbose=0",
                "measured": f"{ratio:.3f}x (spread {_spread(numpy_row, shown_row)})",
                "met": ratio <= 1.2,
            }
        )
    for prefix in ("jaxnn: Trainer.train_step", "jaxnn: Trainer.fit"):
        r = _row(results, "mlp", prefix)
        if r and "time_vs_reference" in r:
            speed = 1 / r["time_vs_reference"]
            out.append(
                {
                    "target": f"mlp: {prefix.split(': ')[1]} >= 1.0x pure-JAX jitted step",
                    "measured": f"{speed:.3f}x the steps/s (spread "
                    f"{_spread(r, ref_of(results, 'mlp'))})",
                    "met": speed >= 1.0,
                }
            )
    cnn, torch2 = _row(results, "cnn", "jaxnn"), _row(results, "cnn", "PyTorch: eager loop (2")
    if cnn and torch2:
        speed = torch2["step_s"] / cnn["step_s"]
        out.append(
            {
                "target": "cnn (stretch): jaxnn >= 0.5x PyTorch's steps/s (2 threads)",
                "measured": f"{speed:.2f}x (spread {_spread(cnn, torch2)})",
                "met": speed >= 0.5,
            }
        )
    population = results["workloads"].get("population", {})
    ours = _row(results, "population", "jaxnn")
    if ours and "time_vs_reference" in ours:
        speed = 1 / ours["time_vs_reference"]
        out.append(
            {
                "target": "population: jaxnn (metrics on) >= 1.5x the peer's jit(vmap(step)) "
                f"loop ({population['members']} members)",
                "measured": f"{speed:.2f}x faster (spread "
                f"{_spread(ours, ref_of(results, 'population'))})",
                "met": speed >= 1.5,
            }
        )
        program = _row(results, "population", "pure JAX: one jit(vmap(scan))")
        if program:
            speed = program["step_s"] / ours["step_s"]
            out.append(
                {
                    "target": "population: jaxnn (metrics on) >= 1.0x one hand-written "
                    "jit(vmap(scan)) with host-made orders",
                    "measured": f"{speed:.2f}x faster (spread {_spread(ours, program)})",
                    "met": speed >= 1.0,
                }
            )
    sweep = population.get("raw", {}).get("sweep")
    if sweep:
        for other, what, goal in (
            ("populations", "4 populations of 16, one per width", 2.0),
            ("separate_fits", "64 separate Trainer.fit runs", 20.0),
        ):
            speed = sweep[f"speedup_vs_{other}"]
            out.append(
                {
                    "target": f"sweep: 64 members over 4 widths as one padded program >= "
                    f"{goal:g}x faster than {what} (compilation included)",
                    "measured": f"{speed:.2f}x ({sweep['sweep']['seconds']:.2f} s against "
                    f"{sweep[other]['seconds']:.2f} s)",
                    "met": speed >= goal,
                }
            )
    par = results.get("parallel")
    if par:
        for key, what in (("mlp", "Trainer.fit data-parallel"), ("population", "population.fit")):
            r = par[key]
            out.append(
                {
                    "target": f"parallel: {what} on 8 virtual devices <= 1.25x one device "
                    "(overhead; the 8 share the same cores)",
                    "measured": f"{r['overhead']:.2f}x",
                    "met": r["overhead"] <= 1.25,
                }
            )
    streaming = results.get("streaming")
    if streaming:
        for r in streaming["rows"][1:4]:
            if "vs_memory" in r:
                out.append(
                    {
                        "target": f"streaming: {r['name'].split(': ', 1)[1]} >= 0.9x the "
                        "steps/s of fit on arrays",
                        "measured": f"{r['vs_memory']:.2f}x",
                        "met": r["vs_memory"] >= 0.9,
                    }
                )
        mem = streaming["memory"]
        small, big = mem["runs"][0], mem["runs"][-1]
        out.append(
            {
                "target": "streaming: peak RSS of nn.ArrayStream independent of the file's "
                "size (within 5% of the smaller run)",
                "measured": f"{small['peak_rss_mib']:.0f} MiB for {small['file_mib']} MiB, "
                f"{big['peak_rss_mib']:.0f} MiB for {big['file_mib']} MiB",
                "met": big["peak_rss_mib"] <= 1.05 * small["peak_rss_mib"],
            }
        )
    start = results.get("startup")
    tutorial = (start or {}).get("tutorial")
    if tutorial:
        out.append(
            {
                "target": "startup: tutorial program in a fresh process <= 1.3x the "
                "hand-written JAX process, <= 4 XLA compilations",
                "measured": f"{tutorial['ratio']:.2f}x ({tutorial['jaxnn_s']:.2f} s against "
                f"{tutorial['pure_jax_s']:.2f} s), {tutorial['jaxnn_compiles']} compilations "
                f"(hand-written: {tutorial['pure_jax_compiles']}); run again with a new "
                f"equal Trainer: {tutorial['rerun_compiles']}",
                "met": tutorial["ratio"] <= 1.3 and tutorial["jaxnn_compiles"] <= 4,
            }
        )
    if start:
        extra = start["jaxnn_over_jax_s"]
        out.append(
            {
                "target": "import jaxnn <= import jax + 0.2 s",
                "measured": f"+{extra:.2f} s ({100 * extra / start['import_s']['jax']:.0f}% "
                f"of `import jax`, {start['import_s']['jax']:.2f} s here)",
                "met": extra <= 0.2,
            }
        )
    return out


def _fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def markdown(results: dict) -> str:
    """The results as Markdown: machine, command, one table, start-up and targets."""
    m = results["machine"]
    v = m["versions"]
    peak = results.get("matmul_peak")
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores; JAX backend "
        f"{m.get('backend', 'cpu')}, {m.get('device_count', 1)} x "
        f"{m.get('device_kind', 'cpu')}), Python {m['python']}, "
        f"jax {v['jax']}, jaxlib {v['jaxlib']}, optax {v['optax']}; "
        f"load average {m['load_average_start']} at the start and "
        f"{m.get('load_average_end')} at the end (a shared machine: others' jobs ran too).",
        "",
        f"Command: `{results['command']}`"
        + (
            f"; XLA matmul peak {peak['best_gflops']:.0f} GFLOP/s (best 2048³ float32 run, "
            "measured at the start and the end)."
            if peak
            else "."
        ),
        "",
        "Time per training step, median of repeats; **x pure JAX** is the time relative to "
        "the pure-JAX reference of the same workload in the same run (lower is faster; "
        "the reference row is 1.00). **% peak** is the FLOP rate over the matmul peak. "
        "Peak RSS is that process's (jaxnn and its reference share one).",
        "",
        "| workload | implementation | per step | steps/s | x pure JAX | % peak "
        "| first call | peak RSS |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload, block in results["workloads"].items():
        for r in block.get("rows", []):
            name = r["name"] + (f" ({r['version']})" if r.get("version") else "")
            if r.get("reference"):
                name = f"**{name}**"
            if "skipped" in r or "error" in r:
                why = r.get("skipped") or "failed (see the JSON)"
                lines.append(f"| {workload} | {name} | {why} | | | | | |")
                continue
            pct = f"{100 * r['peak_fraction']:.0f}%" if "peak_fraction" in r else ""
            if r.get("peak_fraction", 0) > 1:
                pct += " †"  # the peak was measured while the machine was busy
            ratio = f"{r['time_vs_reference']:.2f}" if "time_vs_reference" in r else ""
            first = f"{r['first_call_s']:.2f} s" if r.get("first_call_s") is not None else ""
            lines.append(
                f"| {workload} | {name} | {_fmt_time(r['step_s'])} | {1 / r['step_s']:,.0f} "
                f"| {ratio} | {pct} | {first} | {r['peak_rss_mib']:.0f} MiB |"
            )
    scaling = results["workloads"].get("population", {}).get("raw", {}).get("scaling")
    if scaling:
        lines += [
            "",
            "Population scaling, `population.fit` of the tutorial network, each size in a "
            "fresh process: "
            + "; ".join(
                f"{r['members']:,} members {r['seconds']:.2f} s "
                f"({r['member_steps_per_s'] / 1e6:.2f} M member-steps/s, peak RSS "
                f"{r['peak_rss_mib']:.0f} MiB)"
                if "seconds" in r
                else f"{r['members']:,} members failed"
                for r in scaling
            )
            + ".",
        ]
    sweep = results["workloads"].get("population", {}).get("raw", {}).get("sweep")
    if sweep:
        lines += [
            "",
            f"Architecture sweep, {sweep['members']} tutorial networks over widths "
            f"{sweep['widths']} ({sweep['epochs']} epochs), from a started JAX to trained "
            "states, compilation included, each run in a fresh process: "
            + "; ".join(
                f"{sweep[k]['label']} {sweep[k]['seconds']:.2f} s (peak RSS "
                f"{sweep[k]['peak_rss_mib']:.0f} MiB)"
                for k in ("sweep", "populations", "separate_fits")
            )
            + ".",
        ]
    par = results.get("parallel")
    if par:
        mlp, popn = par["mlp"], par["population"]
        lines += [
            "",
            "Spread over 8 virtual CPU devices (`benchmarks/parallel.py`; all 8 share this "
            "machine's cores, so this is the overhead of the partitioned program, not a "
            f"speed-up): the MLP's `Trainer.fit` at global batch {mlp['batch']} takes "
            f"{mlp['eight_devices']['seconds']:.3f} s data-parallel against "
            f"{mlp['one_device']['seconds']:.3f} s on one device ({mlp['overhead']:.2f}x); "
            f"`population.fit` of {popn['members']:,} members sharded over the 8 takes "
            f"{popn['eight_devices']['seconds']:.3f} s against "
            f"{popn['one_device']['seconds']:.3f} s ({popn['overhead']:.2f}x).",
        ]
    streaming = results.get("streaming")
    if streaming:
        lines += [
            "",
            f"Feeding the MLP (`benchmarks/streaming.py`: `Trainer.fit`, {streaming['steps']} "
            f"steps of batch {streaming['batch']} per run, median of {streaming['repeats']}; "
            "(a) to (d) alternate in one process, the files in the page cache):",
            "",
            "| source | steps/s | x (a) | first call |",
            "| --- | ---: | ---: | ---: |",
        ]
        for r in streaming["rows"]:
            if "steps_per_s" not in r:
                lines.append(f"| {r['name']} | {r.get('skipped') or 'failed (see the JSON)'} | | |")
                continue
            lines.append(
                f"| {r['name']} | {r['steps_per_s']:,.1f} | {r['vs_memory']:.2f} "
                f"| {r['first_call_s']:.2f} s |"
            )
        mem = streaming["memory"]
        k = mem["steps_per_execution"]
        lines += [
            "",
            "Peak RSS of (c), one epoch over the whole file in a fresh process"
            + (f" (steps_per_execution={k})" if k else "")
            + ": "
            + "; ".join(
                f"{r['file_mib']:,} MiB file, {r['peak_rss_mib']:.0f} MiB" for r in mem["runs"]
            )
            + ".",
        ]
    start = results.get("startup")
    if start:
        fe = start["first_epoch"]
        imp = start["import_s"]
        lines += [
            "",
            "Start-up, fresh processes (median): "
            + ", ".join(f"`import {k}` {s:.2f} s" for k, s in imp.items())
            + f"; jaxnn adds {start['jaxnn_over_jax_s']:+.2f} s to `import jax`. "
            f"Import to a first trained epoch of the tutorial: {fe['no_cache_s']:.2f} s; "
            f"with JAX's persistent compilation cache, {fe['cache_first_run_s']:.2f} s to "
            f"fill it and {fe['cache_later_runs_s']:.2f} s on later runs "
            f"(saves {fe['cache_saving_s']:.2f} s).",
        ]
    if any(r.get("peak_fraction", 0) > 1 for b in results["workloads"].values() for r in b["rows"]):
        lines += [
            "",
            "† above 100%: the matmul peak (measured at the start and the end of the run) "
            "was itself slowed by other jobs, so read % peak as relative only.",
        ]
    if results.get("targets"):
        lines += ["", "| target | measured | met |", "| --- | --- | --- |"]
        for t in results["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} |")
    if results.get("notes"):
        lines += ["", *[f"- {n}" for n in results["notes"]]]
    return "\n".join(lines) + "\n"


FAIRNESS = """\
How each library is run, and why (`benchmarks/peers/`, one module each):

- **pure JAX** is the yardstick: plain dicts of arrays, `jax.value_and_grad` and an
  optax update under `jax.jit`. For `seed` it is all 1000 steps, shuffling included, in
  one jitted `lax.scan`, the fastest way JAX can run a tiny network; a second row runs
  the same step called from a Python loop, the pattern of every JAX peer below.
- **jaxnn** runs `Trainer.fit` for `seed` (every epoch one `lax.scan`, as a user
  writes it, with the accuracy metric) and both `Trainer.train_step` in a loop and
  `Trainer.fit` for `mlp`; for `cnn`, jaxnn's layers in the same jitted step as the
  pure-JAX network.
- **Flax linen**: `flax.training.train_state.TrainState` and one `jax.jit` step per
  batch, as in Flax's examples. **Haiku**: `hk.without_apply_rng(hk.transform(...))`
  and a `jax.jit` step, as in Haiku's examples. **Equinox**: an `eqx.filter_jit` step
  (Equinox's examples), and the `eqx.partition` + `jax.jit` split that its docs give
  for lower per-call overhead. Batches for `seed` come from the host, shuffled with
  NumPy, as a data loader would give them.
- **Keras 3** on the JAX backend: `compile` + `fit` (XLA-compiled by default), plus
  `steps_per_execution` for `seed`, which Keras recommends for small models.
- **PyTorch** (CPU build): an eager loop with `zero_grad(set_to_none=True)`, fused
  Adam and `channels_last` for the CNN, per PyTorch's performance-tuning guide, with
  its default thread count and with one thread (on a busy machine its OpenMP threads
  stall each other). `torch.compile` is left out: on a CPU it needs a C++ toolchain
  and minutes of compiling.
- Same sizes, batch, optimizer (Adam, 1e-3) and float32 everywhere; `mlp` and `cnn`
  train on one batch already in memory, so the step is timed, not a data pipeline.
  Every library runs in its own fresh process (jaxnn with its reference, alternating
  repeats), warmed up before timing; times are medians.
"""


def readme_section(results: dict) -> str:
    """The README's results section: heading, how to run, the table, fairness."""
    return (
        "## Benchmarks\n\n"
        "`python -m benchmarks` runs the suite in `benchmarks/` (`--quick` for CI, "
        "`--only mlp,seed`, `--json`, `--markdown`, `--png`); "
        '`pip install -e ".[bench]"` adds the peer libraries, which are skipped when '
        "missing. This section is written by the suite "
        "(`python -m benchmarks --readme README.md`), not by hand.\n\n"
        + markdown(results)
        + "\n"
        + FAIRNESS
    )


def png(results: dict, path: str) -> bool:
    """A bar chart of time relative to pure JAX, one panel per workload.

    Returns:
        False (and writes nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    panels = [
        (w, [r for r in b.get("rows", []) if "time_vs_reference" in r])
        for w, b in results["workloads"].items()
    ]
    panels = [(w, rows) for w, rows in panels if rows]
    if not panels:
        return False
    colours = {"jax": "#888888", "jaxnn": "#d62728"}
    height = sum(1.2 + 0.32 * len(rows) for _, rows in panels)
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(9, height),
        gridspec_kw={"height_ratios": [len(rows) + 2 for _, rows in panels]},
        squeeze=False,
    )
    for ax, (workload, rows) in zip(axes[:, 0], panels, strict=True):
        names = [r["name"] for r in rows][::-1]
        values = [r["time_vs_reference"] for r in rows][::-1]
        ax.barh(names, values, color=[colours.get(r["library"], "#1f77b4") for r in rows][::-1])
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlim(min(0.5, min(values) * 0.8), max(2.0, max(values) * 1.6))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(f"{workload}: time per step ÷ pure JAX (lower is faster)", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        for y, value in enumerate(values):
            ax.text(value, y, f" {value:.2f}", va="center", fontsize=7)
    fig.suptitle(f"jaxnn benchmarks, {results['machine']['date']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def update_readme(path: str, text: str) -> None:
    """Replaces what lies between the results markers of ``path`` with ``text``.

    Raises:
        ValueError: when the file lacks either marker.
    """
    readme = Path(path)
    body = readme.read_text()
    start, end = MARKERS
    if start not in body or end not in body:
        raise ValueError(
            f"{path}: the markers {start!r} and {end!r} were not found; add them where "
            "the results should go."
        )
    head, rest = body.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text}\n{end}{tail}")


# ------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="jaxnn's benchmark suite: jaxnn against hand-written JAX and, when "
        "installed (pip install -e '.[bench]'), Flax, Equinox, Haiku, Keras 3 and PyTorch.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="few steps and repeats (CI; under 3 minutes)"
    )
    parser.add_argument(
        "--only", help=f"comma-separated workloads to run, of: {', '.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--peers",
        help="comma-separated peers to run (default: all), or 'none'; of: "
        "flax, equinox, haiku, keras, torch",
    )
    parser.add_argument("--json", help="write all results to this JSON file")
    parser.add_argument("--markdown", help="write the results table to this Markdown file")
    parser.add_argument("--png", help="write a bar chart to this PNG file (needs matplotlib)")
    parser.add_argument(
        "--readme", help="put the results table between the results markers of this file"
    )
    parser.add_argument(
        "--from-json",
        metavar="PATH",
        help="run nothing: write --markdown/--png/--readme from an earlier --json file",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--lib", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        args.only = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in args.only if w not in WORKLOADS]
        if unknown:
            parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    else:
        args.only = list(WORKLOADS)
    from benchmarks import peers

    if args.peers is None:
        args.peers = list(peers.PEERS)
    elif args.peers.strip() == "none":
        args.peers = []
    else:
        args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
        unknown = [p for p in args.peers if p not in peers.PEERS]
        if unknown:
            parser.error(f"unknown peer {unknown[0]!r}; choose from {', '.join(peers.PEERS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Runs the suite (or, with the hidden ``--worker``, one worker). Returns the exit code."""
    args = parse_args(argv)
    if args.worker:
        result = worker(args.worker, args.lib, args.quick)
        Path(args.out).write_text(json.dumps(result))
        return 0

    if args.from_json:
        try:
            results = finish(json.loads(Path(args.from_json).read_text()))
        except (OSError, ValueError) as e:
            raise SystemExit(f"benchmarks: cannot read --from-json {args.from_json}: {e}") from e
        write_outputs(results, args)
        return 0

    from benchmarks import peers

    started = time.perf_counter()
    timeout = 300.0 if args.quick else 1800.0
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    if args.only != list(WORKLOADS):
        command += f" --only {','.join(args.only)}"
    results: dict[str, Any] = {
        "command": command,
        "quick": args.quick,
        "machine": machine_info(),
        "peers": {
            p: {"installed": peers.installed(p), "version": peers.version(p)} for p in args.peers
        },
        "workloads": {},
        "notes": [],
    }
    missing = [p for p in args.peers if not peers.installed(p)]
    print(
        f"jaxnn benchmarks{' (quick)' if args.quick else ''}: {', '.join(args.only)}; "
        f"peers: {', '.join(p for p in args.peers if p not in missing) or 'none'}"
        + (f" (skipped, not installed: {', '.join(missing)})" if missing else ""),
        flush=True,
    )
    if missing:
        results["notes"].append(f"skipped, not installed: {', '.join(missing)}")
    if args.quick and any(w in args.only for w in QUICK_CORE_ONLY) and args.peers:
        results["notes"].append(
            f"--quick runs {', '.join(QUICK_CORE_ONLY)} for jaxnn and pure JAX only"
        )
    failed = False
    if any(w in args.only for w in ("mlp", "cnn")):
        got = _run_worker("peak", "core", args.quick, timeout)
        if "error" in got:
            results["notes"].append(f"matmul peak not measured: {got['error']}")
        else:
            results["matmul_peak"] = got["peak"]
            print(f"  matmul peak: {got['peak']['best_gflops']:.0f} GFLOP/s", flush=True)
    for workload in args.only:
        if workload in PEER_WORKLOADS:
            rows, notes, bad = _training_workload(workload, args.quick, args.peers, timeout)
            results["workloads"][workload] = {"description": DESCRIPTIONS[workload], "rows": rows}
        elif workload == "population":
            rows, notes, bad, *extra = _population(args.quick, timeout)
            if rows:
                block = {"description": DESCRIPTIONS[workload], "rows": rows}
                block.update(extra[0] if extra else {})
                results["workloads"][workload] = block
        elif workload == "streaming":
            got, notes, bad = _streaming(args.quick, timeout)
            if got:
                results["streaming"] = got
        elif workload == "parallel":
            got, notes, bad = _parallel(args.quick, timeout)
            if got:
                results["parallel"] = got
        else:
            got, notes, bad = _startup(args.quick, timeout)
            if got:
                results["startup"] = got
        results["notes"] += notes
        failed = failed or bad
    if "matmul_peak" in results:  # again at the end: a busy moment must not set the peak
        got = _run_worker("peak", "core", args.quick, timeout)
        if "error" not in got:
            first = results["matmul_peak"]
            results["matmul_peak"] = max(first, got["peak"], key=lambda p: p["best_gflops"])
            results["matmul_peak"]["runs_best_gflops"] = [
                first["best_gflops"],
                got["peak"]["best_gflops"],
            ]
            print(f"  matmul peak again: {got['peak']['best_gflops']:.0f} GFLOP/s", flush=True)
    results["machine"]["load_average_end"] = _load()
    results["suite_seconds"] = time.perf_counter() - started
    finish(results)

    print()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    write_outputs(results, args)
    print(f"suite took {results['suite_seconds']:.0f} s", flush=True)
    return 1 if failed else 0


def write_outputs(results: dict, args: argparse.Namespace) -> None:
    """Prints the Markdown, and writes the Markdown, PNG and README outputs asked for."""
    text = markdown(results)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.png and not png(results, args.png):
        print(f"--png {args.png}: skipped (matplotlib is not installed, or nothing to plot)")
    if args.readme:
        update_readme(args.readme, readme_section(results))


if __name__ == "__main__":
    sys.exit(main())
