"""The toy example of population-based training (Jaderberg et al., 2017, figure 2).

Two workers maximise Q(theta) = 1.2 - (theta0^2 + theta1^2) without seeing it: each
takes gradient-ascent steps on a surrogate, Q^(theta|h) = 1.2 - (h0 theta0^2 +
h1 theta1^2), whose hyperparameters h decide which coordinate it improves. Both start
at theta = (0.9, 0.9), one with h = (1, 0) and one with h = (0, 1). Every 4 steps the
population is scored on the true Q and ``jaxnn.population.exploit_explore`` runs:

* exploit and explore (PBT): the worse worker copies the better one's theta and h, then
  perturbs h (x0.8 or x1.2, or, half the time, a fresh draw in [0, 1]);
* explore only: the worse worker changes its own h, and keeps its theta;
* exploit only: the worse worker copies theta and h, and changes nothing;
* neither (a grid search of the two settings of h).

A zero in h never moves by a factor, so explore draws new values as well as scaling
them. Every run, over many seeds at once, is one ``jit(vmap(scan))``. The script prints
each variant's final Q (best worker, mean over seeds) and draws the trajectories of
theta over the contours of Q for one seed, and Q against steps, into one figure.

    python examples/pbt_toy.py                   # 64 seeds, 80 steps; figure in a temp dir
    python examples/pbt_toy.py --out toy.png     # the figure where you want it
    python examples/pbt_toy.py --quick           # 8 seeds, for CI
"""

from __future__ import annotations

import argparse
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import population

STEPS, EVERY, STEP_SIZE = 80, 4, 0.01
VARIANTS = {
    "exploit and explore (PBT)": (True, True),
    "explore only": (False, True),
    "exploit only": (True, False),
    "neither (grid search)": None,
}


def q(theta: jax.Array) -> jax.Array:
    """The objective; theta: (..., 2) -> (...)."""
    return 1.2 - (theta**2).sum(axis=-1)


def run(key: jax.Array, variant: tuple[bool, bool] | None, steps: int = STEPS) -> jax.Array:
    """One run of the two workers: theta after every step, ``(steps, 2 workers, 2)``."""
    theta = jnp.full((2, 2), 0.9)
    h = jnp.array([[1.0, 0.0], [0.0, 1.0]])

    def one_round(carry, key):
        theta, h = carry

        def step(theta, _):
            theta = theta - STEP_SIZE * 2 * h * theta  # the gradient of Q^ is -2 h theta
            return theta, theta

        theta, path = jax.lax.scan(step, theta, None, length=EVERY)
        if variant is not None:
            exploit, explore = variant
            theta, new, _ = population.exploit_explore(
                key,
                q(theta),
                theta,
                {"h": h},
                mode="max",
                fraction=0.5,
                resample_probability=0.5,
                bounds={"h": (0.0, 1.0, "linear")},
                exploit=exploit,
                explore=explore,
            )
            h = new["h"]
        return (theta, h), path

    _, paths = jax.lax.scan(one_round, (theta, h), jax.random.split(key, steps // EVERY))
    return paths.reshape(steps, 2, 2)


def plot(paths: dict[str, np.ndarray], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    grid = np.linspace(-0.05, 1.0, 100)
    t0, t1 = np.meshgrid(grid, grid)
    axes[0].contour(t0, t1, 1.2 - t0**2 - t1**2, levels=12, colors="0.8", linewidths=0.8)
    for i, (name, theta) in enumerate(paths.items()):
        first = theta[0]  # seed 0: (steps, workers, 2)
        for w, style in ((0, "-"), (1, ":")):
            axes[0].plot(first[:, w, 0], first[:, w, 1], style, color=f"C{i}", lw=1.5)
        best = q(theta).max(axis=-1)  # (seeds, steps): the better worker
        dashes = "--" if i == 2 else "-"  # exploit only lies on the grid search's curve
        steps = np.arange(1, best.shape[1] + 1)
        axes[1].plot(steps, best.mean(axis=0), dashes, color=f"C{i}", label=name)
    axes[0].plot([0.9], [0.9], "ko", markersize=4)
    axes[0].set(xlabel="theta0", ylabel="theta1", title="theta, seed 0 (worker 1 dotted)")
    axes[0].set_aspect("equal")
    axes[1].set(xlabel="step", ylabel="Q of the better worker (mean over seeds)", title="Q")
    axes[1].axhline(1.2, color="0.6", lw=0.8, linestyle="--")
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(quick: bool, out: str | None = None) -> dict[str, float]:
    """Runs the four variants from the same seeds; returns each one's final mean Q."""
    seeds = 8 if quick else 64
    keys = jax.random.split(jax.random.key(0), seeds)
    paths, final = {}, {}
    for name, variant in VARIANTS.items():
        theta = np.asarray(jax.jit(jax.vmap(lambda k, v=variant: run(k, v)))(keys))
        paths[name] = theta
        final[name] = float(q(theta[:, -1]).max(axis=-1).mean())
        print(f"{name:>26}: Q = {final[name]:.3f} after {STEPS} steps (mean of {seeds} seeds)")
    out = out or os.path.join(tempfile.mkdtemp(prefix="pbt_toy_"), "pbt_toy.png")
    plot(paths, out)
    print(f"wrote {out}")
    return final


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds, for CI")
    parser.add_argument("--out", help="where to write the figure (default: a temp dir)")
    args = parser.parse_args()
    main(args.quick, args.out)
