"""A LeNet-style CNN (28x28x1, batch 128, Adam): jaxnn layers against hand-written lax.

Network: Conv 32 3x3 -> ReLU -> max-pool 2 -> Conv 64 3x3 -> ReLU -> max-pool 2 ->
Flatten -> Dense 128 -> ReLU -> Dense 10, softmax cross-entropy, Adam. Both versions
train with the same plain jitted step (``jax.grad`` plus an optax update), on the same
random data, in the same process; only the forward pass differs: ``jaxnn.Sequential``
of jaxnn layers, or ``lax.conv_general_dilated`` and ``lax.reduce_window`` written by
hand. Reports compile time and steady-state steps per second (the median over
repeats of a timed run of steps, each ended with ``block_until_ready``; the two
versions alternate between repeats so that drift hits both alike).

``--pieces`` times instead each convolution and max-pool of the step alone, in its own
jitted program: the forward pass, the input gradient and the kernel gradient of each
convolution, the forward and backward pass of each pooling; jaxnn's layer against
``lax`` (see benchmarks/README.md, "Convolutions on the CPU").

    python benchmarks/cnn.py [--quick] [--pieces] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import jaxnn as nn
from jaxnn.layers.conv import Conv2D
from jaxnn.layers.pooling import MaxPool2D

try:
    from jaxnn.layers.reshape import Flatten
except ImportError:  # pragma: no cover - the reshape layers are not there yet
    Flatten = None

BATCH, SIZE, CLASSES = 128, 28, 10


def data(seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, SIZE, SIZE, 1)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=(BATCH,)).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


def jaxnn_model(x: jax.Array) -> tuple[Callable, dict]:
    flatten = Flatten() if Flatten is not None else (lambda x: x.reshape(x.shape[0], -1))
    model = nn.Sequential(
        Conv2D(32, 3),
        jax.nn.relu,
        MaxPool2D(2),
        Conv2D(64, 3),
        jax.nn.relu,
        MaxPool2D(2),
        flatten,
        nn.Dense(128),
        jax.nn.relu,
        nn.Dense(CLASSES),
    )
    params, state = model.init(jax.random.key(0), x)

    def forward(params: dict, x: jax.Array) -> jax.Array:
        return model.apply(params, state, x)[0]

    return forward, params


def reference_model(x: jax.Array) -> tuple[Callable, dict]:
    glorot = jax.nn.initializers.glorot_uniform()
    keys = jax.random.split(jax.random.key(0), 4)
    flat = (SIZE // 4) * (SIZE // 4) * 64
    params = {
        "w1": glorot(keys[0], (3, 3, 1, 32)),
        "b1": jnp.zeros(32),
        "w2": glorot(keys[1], (3, 3, 32, 64)),
        "b2": jnp.zeros(64),
        "w3": glorot(keys[2], (flat, 128)),
        "b3": jnp.zeros(128),
        "w4": glorot(keys[3], (128, CLASSES)),
        "b4": jnp.zeros(CLASSES),
    }
    dn = ("NHWC", "HWIO", "NHWC")

    def conv(x, w, b):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn) + b

    def pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def forward(p: dict, x: jax.Array) -> jax.Array:
        h = pool(jax.nn.relu(conv(x, p["w1"], p["b1"])))
        h = pool(jax.nn.relu(conv(h, p["w2"], p["b2"])))
        h = h.reshape(h.shape[0], -1)
        h = jax.nn.relu(h @ p["w3"] + p["b3"])
        return h @ p["w4"] + p["b4"]

    del x
    return forward, params


def make_step(forward: Callable) -> tuple[Callable, optax.GradientTransformation]:
    tx = optax.adam(1e-3)

    def loss_fn(params, x, y):
        logits = forward(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step, tx


class Runner:
    """One version of the network: its compiled step and its training state."""

    def __init__(
        self,
        name: str,
        build: Callable,
        x: jax.Array,
        y: jax.Array,
        compiler_options: dict[str, str] | None = None,
    ):
        self.name = name
        self.build = build
        self.x, self.y = x, y
        self.compiler_options = compiler_options
        self.compile_samples: list[float] = []
        self.samples: list[float] = []
        self.compile()

    def compile(self) -> None:
        """Builds the model and its step afresh (no cache can help) and compiles it."""
        start = time.perf_counter()
        forward, self.params = self.build(self.x)
        step, tx = make_step(forward)
        self.opt_state = tx.init(self.params)
        lowered = step.lower(self.params, self.opt_state, self.x, self.y)
        self.step = lowered.compile(compiler_options=self.compiler_options)
        self.compile_samples.append(time.perf_counter() - start)

    def run(self, steps: int) -> float:
        params, opt_state = self.params, self.opt_state
        start = time.perf_counter()
        for _ in range(steps):
            params, opt_state, loss = self.step(params, opt_state, self.x, self.y)
        jax.block_until_ready((params, opt_state, loss))
        elapsed = time.perf_counter() - start
        self.params, self.opt_state = params, opt_state
        return elapsed

    def first_loss(self) -> float:
        return float(self.step(self.params, self.opt_state, self.x, self.y)[2])


def _median_ms(fn: Callable, args: tuple, repeats: int) -> float:
    """The median time of ``fn(*args)`` in ms, each call blocked, after one warm-up."""
    jax.block_until_ready(fn(*args))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


def _conv_programs(conv: Callable) -> dict[str, Callable]:
    """The forward pass and the two gradients of ``conv(x, kernel)``, each jitted."""

    def input_gradient(x, kernel, g):
        return jax.vjp(lambda x: conv(x, kernel), x)[1](g)[0]

    def kernel_gradient(x, kernel, g):
        return jax.vjp(lambda kernel: conv(x, kernel), kernel)[1](g)[0]

    return {
        "forward": jax.jit(lambda x, kernel, g: conv(x, kernel)),
        "input gradient": jax.jit(input_gradient),
        "kernel gradient": jax.jit(kernel_gradient),
    }


def pieces(repeats: int) -> list[dict]:
    """Each convolution and max-pool of the network alone: jaxnn's layer against lax.

    Every program is jitted and timed on the same random inputs (a ReLU's output for
    the pools, so that windows hold ties as in the network), jaxnn's version first.
    """
    rng = np.random.default_rng(0)

    def normal(*shape: int) -> jax.Array:
        return jnp.asarray(rng.normal(size=shape).astype(np.float32))

    def lax_conv(x, kernel):
        dn = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=dn)

    def lax_pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def pool_gradient(pool):
        return jax.jit(lambda x, g: jax.vjp(pool, x)[1](g)[0])

    rows = []
    for name, shape, features in [
        ("conv1", (BATCH, SIZE, SIZE, 1), 32),
        ("conv2", (BATCH, SIZE // 2, SIZE // 2, 32), 64),
    ]:
        layer = Conv2D(features, 3, use_bias=False)
        args = (normal(*shape), normal(3, 3, shape[-1], features), normal(*shape[:-1], features))
        versions = {
            "jaxnn": lambda x, kernel, layer=layer: layer.apply({"kernel": kernel}, {}, x)[0],
            "lax": lax_conv,
        }
        for version, conv in versions.items():
            for piece, program in _conv_programs(conv).items():
                ms = _median_ms(program, args, repeats)
                rows.append({"piece": f"{name} {piece}", "version": version, "ms": ms})
    for name, shape in [
        ("pool1", (BATCH, SIZE, SIZE, 32)),
        ("pool2", (BATCH, SIZE // 2, SIZE // 2, 64)),
    ]:
        args = (
            jax.nn.relu(normal(*shape)),
            normal(shape[0], shape[1] // 2, shape[2] // 2, shape[3]),
        )
        layer = MaxPool2D(2)
        versions = {"jaxnn": lambda x, layer=layer: layer.apply({}, {}, x)[0], "lax": lax_pool}
        for version, pool in versions.items():
            ms = _median_ms(pool_gradient(pool), args, repeats)
            rows.append({"piece": f"{name} forward + gradient", "version": version, "ms": ms})
    return rows


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps and repeats, for CI")
    parser.add_argument(
        "--pieces", action="store_true", help="time each convolution and pooling alone instead"
    )
    parser.add_argument(
        "--compiler-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an XLA option for both steps' compilation (repeatable), e.g. "
        "xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
    )
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    steps, repeats = (3, 2) if args.quick else (20, 7)
    options = dict(option.split("=", 1) for option in args.compiler_option) or None
    if args.pieces:
        rows = pieces(3 if args.quick else 15)
        print(f"cnn pieces: median ms of each jitted program ({jax.default_backend()})")
        by_piece: dict[str, dict[str, float]] = {}
        for row in rows:
            by_piece.setdefault(row["piece"], {})[row["version"]] = row["ms"]
        print(f"  {'':28} {'jaxnn':>8} {'lax':>8}")
        for piece, ms in by_piece.items():
            print(f"  {piece:28} {ms['jaxnn']:8.2f} {ms['lax']:8.2f}")
        result = {"workload": "cnn-pieces", "rows": rows, "jax": jax.__version__}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return result

    x, y = data()
    runners = [
        Runner("hand-written lax", reference_model, x, y, options),
        Runner("jaxnn", jaxnn_model, x, y, options),
    ]
    # Compile times: the median of fresh compilations after the first, which pays
    # XLA's one-time start-up costs (and would favour whichever version comes second).
    for r in runners:
        r.compile_samples.clear()
    for _ in range(1 if args.quick else 3):
        for r in runners:
            r.compile()
    for r in runners:
        loss = r.first_loss()
        assert np.isfinite(loss), f"{r.name}: non-finite loss {loss}"
        r.run(2)  # warm up
    for _ in range(repeats):
        for r in runners:
            r.samples.append(r.run(steps))

    ref, ours = runners
    rate = {r.name: steps / statistics.median(r.samples) for r in runners}
    compile_s = {r.name: statistics.median(r.compile_samples) for r in runners}
    result = {
        "workload": "cnn",
        "batch": BATCH,
        "steps_per_repeat": steps,
        "repeats": repeats,
        "reference_compile_s": compile_s[ref.name],
        "jaxnn_compile_s": compile_s[ours.name],
        "reference_steps_per_s": rate[ref.name],
        "jaxnn_steps_per_s": rate[ours.name],
        "ratio_jaxnn_over_reference": rate[ours.name] / rate[ref.name],
        "compiler_options": options,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
    }
    print(
        f"cnn: LeNet-style, batch {BATCH}, Adam; {steps} steps per repeat, median of "
        f"{repeats} ({result['backend']}: {result['device']})"
    )
    if options:
        print(f"  compiler options: {options}")
    print(f"  {'':18} {'compile s':>10} {'steps/s':>10}")
    for r in runners:
        print(f"  {r.name:18} {compile_s[r.name]:10.2f} {rate[r.name]:10.2f}")
    print(f"  ratio jaxnn / hand-written (steps/s): {result['ratio_jaxnn_over_reference']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
