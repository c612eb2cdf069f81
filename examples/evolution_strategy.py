"""An evolution strategy: a two-moons classifier trained without any gradient.

OpenAI-ES with antithetic sampling, written with jaxnn and jax alone. The network's
parameters are one flat vector (``population.ravel``); each generation draws 128
perturbed copies (64 pairs ``theta + sigma * eps``, ``theta - sigma * eps``), scores
them all at once with ``jax.vmap`` over ``population.flat_apply``, and moves ``theta``
along the rank-weighted perturbations with Adam. No ``jax.grad`` anywhere: the search
direction comes from the scores alone. The whole run is one ``lax.scan``.
``examples/evolution_strategy_evosax.py`` runs the same search with the evosax library
and times the two.

    python examples/evolution_strategy.py          # exits non-zero below 95% test accuracy
    python examples/evolution_strategy.py --quick  # a few generations, for CI
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn as nn
from jaxnn import population

TARGET = 0.95
PAIRS, SIGMA, LR = 64, 0.1, 0.03


def moons(n: int, seed: int, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles, ``n`` points, labels 0 and 1."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    t = rng.uniform(0, np.pi, n)
    x = np.where(
        label[:, None] == 0,
        np.stack([np.cos(t), np.sin(t)], 1),
        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1),
    )
    x = x + noise * rng.normal(size=x.shape)
    return x.astype(np.float32), label.astype(np.float32)


class Problem(NamedTuple):
    """What every strategy searches: the start vector, the loss of vectors, the test."""

    theta: jax.Array  # (parameters,) the initial network as one flat vector
    loss: Callable[[jax.Array], jax.Array]  # (members, parameters) -> (members,)
    accuracy: Callable[[jax.Array], float]  # (parameters,) -> test accuracy


def problem() -> Problem:
    """The two-moons data, a 2-16-16-1 tanh network, and its flat parameter vector."""
    x, y = moons(300, seed=0)
    x_test, y_test = moons(1000, seed=1)
    model = nn.Sequential(nn.Dense(16, "tanh"), nn.Dense(16, "tanh"), nn.Dense(1))
    params, _ = model.init(jax.random.key(0), x)
    theta, _ = population.ravel(params)
    f = population.flat_apply(model, params)  # f(vector, x) -> logits (examples, 1)
    logits_of = jax.vmap(f, in_axes=(0, None))  # a population of vectors at once

    def loss(vectors: jax.Array) -> jax.Array:
        """The mean logistic loss of each vector on the training set."""
        z = logits_of(vectors, x)[..., 0]  # (members, examples)
        return jnp.mean(jnp.logaddexp(0.0, z) - y[None] * z, axis=1)

    def accuracy(theta: jax.Array) -> float:
        return float(jnp.mean((f(theta, x_test)[:, 0] > 0) == (y_test > 0.5)))

    return Problem(theta, loss, accuracy)


def centered_ranks(scores: jax.Array) -> jax.Array:
    """Fitness shaping: ranks scaled to [-0.5, 0.5], robust to the scale of the scores."""
    ranks = jnp.argsort(jnp.argsort(scores)).astype(jnp.float32)
    return ranks / (scores.shape[0] - 1) - 0.5


def openai_es(
    loss: Callable[[jax.Array], jax.Array], theta: jax.Array
) -> tuple[tuple, Callable[[tuple, jax.Array], tuple[tuple, jax.Array]]]:
    """OpenAI-ES with Adam: the initial carry and ``generation(carry, key)`` for a scan.

    ``generation`` returns the new carry ``(theta, m, v, t)`` and the training loss
    of the new ``theta``.
    """

    def generation(carry, key):
        theta, m, v, t = carry
        eps = jax.random.normal(key, (PAIRS, theta.size))
        candidates = jnp.concatenate([theta[None] + SIGMA * eps, theta[None] - SIGMA * eps])
        weights = centered_ranks(-loss(candidates))  # fitness: higher is better
        # Antithetic estimate of the gradient of the smoothed fitness.
        step = (weights[:PAIRS] - weights[PAIRS:]) @ eps / (2 * PAIRS * SIGMA)
        t = t + 1
        m = 0.9 * m + 0.1 * step
        v = 0.999 * v + 0.001 * step**2
        m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
        theta = theta + LR * m_hat / (jnp.sqrt(v_hat) + 1e-8)  # Adam, ascending
        return (theta, m, v, t), loss(theta[None])[0]

    zeros = jnp.zeros_like(theta)
    return (theta, zeros, zeros, 0.0), generation


def main(quick: bool) -> float:
    task = problem()
    carry, generation = openai_es(task.loss, task.theta)
    generations = 40 if quick else 400
    keys = jax.random.split(jax.random.key(1), generations)
    run = jax.jit(lambda carry, keys: jax.lax.scan(generation, carry, keys))
    (theta, *_), losses = run(carry, keys)
    for g in range(0, generations, max(1, generations // 8)):
        print(f"generation {g:4d}: training loss {float(losses[g]):.4f}")

    accuracy = task.accuracy(theta)
    print(
        f"{generations} generations x {2 * PAIRS} candidates of {theta.size} parameters: "
        f"test accuracy {accuracy:.3f} (target {TARGET})"
    )
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few generations, for CI")
    args = parser.parse_args()
    acc = main(args.quick)
    if not args.quick and acc < TARGET:
        print(f"missed the target: {acc:.3f} < {TARGET}")
        sys.exit(1)
