"""The MLP (784 -> 512 -> 512 -> 10, batch 256, Adam): jaxnn against hand-written JAX.

Three versions in one process, alternated between repeats so drift hits all alike:

* ``pure JAX: jitted step``: a dict of arrays, ``jax.value_and_grad`` and an optax
  update in one ``jax.jit``, called once per step on one device batch;
* ``jaxnn: Trainer.train_step``: the same loop through jaxnn's jitted step;
* ``jaxnn: Trainer.fit``: one epoch of ``steps`` batches as one ``lax.scan``,
  shuffling and gathering each batch inside the program;
* ``jaxnn: mixed_bfloat16 Trainer.fit``: the same epoch with
  ``dtype_policy="mixed_bfloat16"`` (float32 params, bfloat16 products), reported
  also as a ratio to the float32 ``Trainer.fit`` row. On a CPU it may well be
  slower: XLA's CPU backend converts bfloat16 operands to float32 and back around
  each product; the gain is on GPUs and TPUs.

    python benchmarks/mlp.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.peers import common as c
from benchmarks.peers import pure_jax


def model(dtype_policy=None):
    """The jaxnn network and its trainer (logits out, sparse cross-entropy, Adam)."""
    import jaxnn as nn

    layers = [nn.Dense(w, "relu") for w in c.MLP_SIZES[1:-1]]
    net = nn.Sequential(*layers, nn.Dense(c.MLP_SIZES[-1]))
    loss = nn.losses.get("sparse_categorical_crossentropy", from_logits=True)
    return nn.Trainer(net, loss, "adam", dtype_policy=dtype_policy)


def jaxnn_impls(steps: int) -> list[c.Timed]:
    """``Trainer.train_step`` in a Python loop, and ``Trainer.fit`` over one epoch."""
    import jax
    import jax.numpy as jnp

    trainer = model()
    x, y = (jnp.asarray(a) for a in c.mlp_data())
    step_box = [trainer.init(jax.random.key(0), x)]

    def run_step():
        state = step_box[0]
        for _ in range(steps):
            state, logs = trainer.train_step(state, x, y)
        step_box[0] = jax.block_until_ready(state)

    xs, ys = (jnp.asarray(a) for a in c.mlp_data(c.MLP_BATCH * steps))
    fit_box = [trainer.init(jax.random.key(0), x)]

    def run_fit():
        state, _ = trainer.fit(fit_box[0], xs, ys, epochs=1, batch_size=c.MLP_BATCH, verbose=0)
        fit_box[0] = jax.block_until_ready(state)

    mixed = model("mixed_bfloat16")
    mixed_box = [mixed.init(jax.random.key(0), x)]

    def run_mixed():
        state, _ = mixed.fit(mixed_box[0], xs, ys, epochs=1, batch_size=c.MLP_BATCH, verbose=0)
        mixed_box[0] = jax.block_until_ready(state)

    return [
        c.Timed("jaxnn: Trainer.train_step", run_step, steps),
        c.Timed("jaxnn: Trainer.fit (one epoch, lax.scan)", run_fit, steps),
        c.Timed(MIXED, run_mixed, steps),
    ]


MIXED = "jaxnn: mixed_bfloat16 Trainer.fit"
"""The mixed-precision row's name (it does not start with ``jaxnn: Trainer.fit``, the
prefix the suite's targets look up for the float32 row)."""


def xla_flops() -> float | None:
    """FLOPs of one reference step by XLA's cost analysis of the compiled program."""
    import jax.numpy as jnp

    step, tx, params = pure_jax.mlp_step()
    x, y = (jnp.asarray(a) for a in c.mlp_data())
    try:
        cost = step.lower(params, tx.init(params), x, y).compile().cost_analysis()
    except Exception:  # cost analysis is best effort on some backends
        return None
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    return float(cost.get("flops", 0.0)) or None


def impls(steps: int) -> list[c.Timed]:
    """The reference first, then jaxnn's two ways."""
    return [*pure_jax.mlp(steps), *jaxnn_impls(steps)]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps and repeats, for CI")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    steps, repeats = (10, 3) if args.quick else (50, 7)
    rows = c.measure(impls(steps), repeats)
    flops = c.mlp_flops_per_step()
    ref = rows[0]["step_s"]
    print(f"mlp: 784-512-512-10, batch {c.MLP_BATCH}, Adam; {steps} steps, median of {repeats}")
    for r in rows:
        r["time_vs_reference"] = r["step_s"] / ref
        print(
            f"  {r['name']:42} {1 / r['step_s']:8.1f} steps/s  "
            f"{flops / r['step_s'] / 1e9:6.1f} GFLOP/s  {r['time_vs_reference']:5.2f}x time"
        )
    fit = next(r for r in rows if r["name"].startswith("jaxnn: Trainer.fit"))
    mixed = next(r for r in rows if r["name"] == MIXED)
    mixed["time_vs_float32_fit"] = mixed["step_s"] / fit["step_s"]
    print(f"  mixed_bfloat16 / float32 Trainer.fit: {mixed['time_vs_float32_fit']:.2f}x time")
    result = {"workload": "mlp", "rows": rows, "flops_per_step": flops, "xla_flops": xla_flops()}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
