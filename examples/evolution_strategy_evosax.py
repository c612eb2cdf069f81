"""Gradient-free training with evosax: the evolution strategy example, by a library.

The same two-moons network as ``examples/evolution_strategy.py`` (one flat vector of
337 parameters, from ``population.ravel``; a population of vectors scored at once with
``jax.vmap`` over ``population.flat_apply``), searched by strategies from evosax, the
JAX evolution-strategies library, through its ask/tell interface:

* ``Open_ES``, set up as the hand-written strategy (128 antithetic candidates,
  sigma 0.1, Adam at 0.03, centered ranks). Given the same keys it draws the same
  noise, so it follows the hand-written search step for step: the printed gap
  between the two final vectors is float rounding;
* ``SNES`` with evosax's default settings, which adapts a step size per parameter
  (no hand-written twin).

Every run is one jitted ``lax.scan`` over generations. The generations per second of
each, timed after compilation in this process, are printed beside the hand-written
strategy's. Needs the ``[evosax]`` extra: ``pip install -e ".[evosax]"``.

    python examples/evolution_strategy_evosax.py          # exits non-zero below 95% accuracy
    python examples/evolution_strategy_evosax.py --quick  # a few generations, for CI
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evolution_strategy as hand  # the hand-written strategy, beside this file

TARGET = 0.95
MISSING = (
    "examples/evolution_strategy_evosax.py needs evosax, which is not installed. "
    'Install the extra from the jaxnn checkout: pip install -e ".[evosax]"'
)


def import_evosax() -> Any:
    """The ``evosax.algorithms`` module, or exit with the command that installs it."""
    try:
        from evosax import algorithms
    except ImportError as e:
        raise SystemExit(f"{MISSING} ({e}).") from e
    return algorithms


def open_es(algorithms: Any, theta: jax.Array) -> Any:
    """evosax's ``Open_ES`` set up as the hand-written strategy: 128 antithetic
    candidates around ``theta``, sigma 0.1, Adam at 0.03, centered ranks (its default)."""
    return algorithms.Open_ES(
        2 * hand.PAIRS,
        theta,
        optimizer=optax.adam(hand.LR),
        std_schedule=optax.constant_schedule(hand.SIGMA),
    )


def evosax_run(strategy: Any, loss: Callable[[jax.Array], jax.Array], theta: jax.Array):
    """``run(keys) -> (mean, losses)``: one jitted scan of evosax ask/tell generations.

    Each generation asks for candidates with its key, scores them (evosax minimises,
    so the fitness is the loss), tells, and logs the training loss of the new mean.
    """
    params = strategy.default_params

    def generation(state, key):
        candidates, state = strategy.ask(key, state, params)
        state, _ = strategy.tell(key, candidates, loss(candidates), state, params)
        return state, loss(state.mean[None])[0]

    @jax.jit
    def run(keys: jax.Array) -> tuple[jax.Array, jax.Array]:
        state = strategy.init(jax.random.key(2), theta, params)
        state, losses = jax.lax.scan(generation, state, keys)
        return state.mean, losses

    return run


def hand_run(loss: Callable[[jax.Array], jax.Array], theta: jax.Array):
    """``run(keys) -> (theta, losses)``: the hand-written OpenAI-ES as one jitted scan."""
    carry, generation = hand.openai_es(loss, theta)

    @jax.jit
    def run(keys: jax.Array) -> tuple[jax.Array, jax.Array]:
        (theta, *_), losses = jax.lax.scan(generation, carry, keys)
        return theta, losses

    return run


def generations_per_second(
    runs: dict[str, Callable], keys: jax.Array, repeats: int
) -> dict[str, float]:
    """Generations per second of each ``run(keys)``: compiled first, then timed in
    ``repeats`` interleaved rounds (so that a busy machine slows all alike); the median."""
    for run in runs.values():
        jax.block_until_ready(run(keys))  # compile, and run once
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run(keys))
            times[name].append(time.perf_counter() - start)
    return {name: len(keys) / statistics.median(t) for name, t in times.items()}


def main(quick: bool) -> float:
    algorithms = import_evosax()
    task = hand.problem()
    runs = {
        "hand-written OpenAI-ES": hand_run(task.loss, task.theta),
        "evosax Open_ES": evosax_run(open_es(algorithms, task.theta), task.loss, task.theta),
        # SNES with evosax's defaults (initial sigma 1, its own learning rates).
        "evosax SNES": evosax_run(
            algorithms.SNES(2 * hand.PAIRS, task.theta), task.loss, task.theta
        ),
    }
    generations, repeats = (40, 1) if quick else (400, 5)
    keys = jax.random.split(jax.random.key(1), generations)  # the hand-written run's keys

    print(
        f"{generations} generations x {2 * hand.PAIRS} candidates of {task.theta.size} parameters"
    )
    if quick:
        print("(--quick: one timing round, a smoke test rather than a measurement)")
    rates = generations_per_second(runs, keys, repeats)
    results = {name: run(keys) for name, run in runs.items()}
    accuracies = {name: task.accuracy(theta) for name, (theta, _) in results.items()}
    for name, (_, losses) in results.items():
        print(
            f"  {name:24s} {rates[name]:8.0f} generations/s   final training loss "
            f"{float(losses[-1]):.4f}   test accuracy {accuracies[name]:.3f}"
        )
    # Same keys, same noise, same update: the two OpenAI-ES runs agree until float
    # rounding (and rank ties, once the losses near zero) lets them part.
    hand_losses = results["hand-written OpenAI-ES"][1]
    apart = jnp.abs(results["evosax Open_ES"][1] - hand_losses) > 1e-5
    agree = int(jnp.argmax(apart)) if bool(jnp.any(apart)) else generations
    print(
        f"evosax Open_ES and the hand-written strategy: training losses within 1e-5 for "
        f"the first {agree} of {generations} generations"
    )
    ratio = rates["evosax Open_ES"] / rates["hand-written OpenAI-ES"]
    print(f"evosax Open_ES runs at {ratio:.2f}x the hand-written strategy's generations/s")
    accuracy = min(accuracies.values())
    print(f"lowest test accuracy {accuracy:.3f} (target {TARGET})")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few generations, for CI")
    args = parser.parse_args()
    acc = main(args.quick)
    if not args.quick and acc < TARGET:
        print(f"missed the target: {acc:.3f} < {TARGET}")
        sys.exit(1)
