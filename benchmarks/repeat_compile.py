"""Compile time of ``Repeat(block, n)`` against the unrolled stack of n blocks.

The block is a pre-norm transformer block (LayerNorm → MultiHeadAttention → residual,
LayerNorm → MLP → residual) of width 64 on ``(8, 32, 64)`` inputs. For each n the
benchmark builds a fresh model, jits a training step (the gradient of a squared loss
with respect to the params) and measures, in this process:

* ``trace_s``: tracing and lowering to StableHLO (``jax.jit(step).lower(...)``);
* ``compile_s``: XLA compilation of that program (``lowered.compile()``);
* ``step_ms``: the steady-state time of one compiled step (median of several calls).

``Repeat`` traces the block once and compiles one ``lax.scan`` body, so its times stay
flat as n grows; ``Sequential`` of n copies traces and compiles n copies of the block.
Each figure is the median over ``--repeats`` fresh builds.

    python benchmarks/repeat_compile.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

if __package__ in (None, ""):  # run as a script: make ``jaxnn`` importable from the tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jaxnn as nn
from jaxnn.layers.attention import MultiHeadAttention
from jaxnn.layers.norm import LayerNorm
from jaxnn.repeat import Repeat

FEATURES, HEADS, BATCH, SEQ = 64, 4, 8, 32


def block(name: str | None = None) -> nn.Layer:
    attention = nn.Sequential(LayerNorm(), MultiHeadAttention(HEADS))
    mlp = nn.Sequential(LayerNorm(), nn.Dense(2 * FEATURES, "gelu"), nn.Dense(FEATURES))
    return nn.Sequential(nn.Residual(attention), nn.Residual(mlp), name=name)


def model(kind: str, n: int) -> nn.Layer:
    if kind == "repeat":
        return Repeat(block(), n)
    return nn.Sequential([block(f"block_{i}") for i in range(n)])


def measure(kind: str, n: int, calls: int) -> dict[str, float]:
    """One fresh build: trace, compile and step times of a jitted gradient step."""
    layer = model(kind, n)
    x = jnp.asarray(jax.random.normal(jax.random.key(1), (BATCH, SEQ, FEATURES)))
    params, state = layer.init(jax.random.key(0), x)

    def loss(p, x):
        y, _ = layer.apply(p, state, x)
        return jnp.mean(y**2)

    step = jax.jit(jax.grad(loss))
    t0 = time.perf_counter()
    lowered = step.lower(params, x)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    jax.block_until_ready(compiled(params, x))
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        jax.block_until_ready(compiled(params, x))
        times.append(time.perf_counter() - t)
    return {"trace_s": t1 - t0, "compile_s": t2 - t1, "step_ms": 1e3 * statistics.median(times)}


def run(quick: bool, repeats: int) -> dict:
    """Measures every n for both variants; returns a JSON-ready dict."""
    ns = (1, 2, 4, 8) if quick else (1, 2, 4, 8, 16, 32)
    calls = 5 if quick else 20
    rows = []
    for n in ns:
        for kind in ("repeat", "sequential"):
            samples = [measure(kind, n, calls) for _ in range(repeats)]
            row = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
            rows.append({"variant": kind, "n": n, **row})
            print(
                f"{kind:>10}  n={n:<3d} trace {row['trace_s']:7.3f} s   compile "
                f"{row['compile_s']:7.3f} s   step {row['step_ms']:8.2f} ms",
                flush=True,
            )
    return {
        "benchmark": "repeat_compile",
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "block": {"features": FEATURES, "heads": HEADS, "batch": BATCH, "seq": SEQ},
        "quick": quick,
        "repeats": repeats,
        "results": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n up to 8, one build each")
    parser.add_argument("--repeats", type=int, default=None, help="fresh builds per figure")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    result = run(args.quick, repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
