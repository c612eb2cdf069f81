"""A deep ensemble for 1-D regression: its spread grows away from the training data.

Sixteen small MLPs, each with its own initialisation and its own bootstrap resample of
the data, train together as one population. The ensemble's mean fits the data where
there is some, and the members disagree where there is none: the predictive standard
deviation far from the training inputs is larger than within them. The script checks
that, and writes ``deep_ensemble.png``.

    python examples/deep_ensemble.py          # 16 members, 300 epochs
    python examples/deep_ensemble.py --quick  # fewer epochs, for CI
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

import jaxnn as nn
from jaxnn import population

MEMBERS = 16


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """160 noisy samples of ``sin(3x)`` in two clusters, ``[-1.5, -0.5]`` and ``[0.5, 1.5]``."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-1.5, -0.5, 80), rng.uniform(0.5, 1.5, 80)])
    y = np.sin(3 * x) + 0.1 * rng.normal(size=x.shape)
    return x[:, None].astype(np.float32), y[:, None].astype(np.float32)


def plot(x, y, grid, mean, std, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(grid, mean - 2 * std, mean + 2 * std, alpha=0.3, label="mean ± 2 std")
    ax.plot(grid, mean, color="C0", label="ensemble mean")
    ax.plot(x[:, 0], y[:, 0], ".", color="k", markersize=3, label="training data")
    ax.set_ylim(-4, 4)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"deep ensemble of {MEMBERS} networks")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(quick: bool) -> bool:
    x, y = data()
    model = nn.Sequential(nn.Dense(64, "relu"), nn.Dense(64, "relu"), nn.Dense(1))
    trainer = nn.Trainer(model, "mse", nn.optimizers.get("adam", learning_rate=0.01))
    key_init, key_boot = jax.random.split(jax.random.key(0))
    states = population.init(trainer, key_init, x, MEMBERS)
    idx = population.bootstrap(key_boot, MEMBERS, len(x))
    xs, ys = population.take_members((x, y), idx)
    states, history = population.fit(
        trainer, states, xs, ys, member_data=True, epochs=30 if quick else 300, batch_size=32
    )
    print(f"final training loss: median {np.median(history['loss'][:, -1]):.4f} over members")

    grid = np.linspace(-4, 4, 401, dtype=np.float32)
    out = population.ensemble_predict(trainer, states, grid[:, None])
    mean, std = np.asarray(out["mean"][:, 0]), np.asarray(out["std"][:, 0])
    near = (np.abs(grid) > 0.5) & (np.abs(grid) < 1.5)  # where the training data is
    far = np.abs(grid) > 3.0  # at least 1.5 away from any training input
    std_near, std_far = float(std[near].mean()), float(std[far].mean())
    print(f"mean predictive std: {std_near:.3f} within the data, {std_far:.3f} far from it")
    plot(x, y, grid, mean, std, "deep_ensemble.png")
    print("wrote deep_ensemble.png")
    ok = std_far > 2 * std_near
    print("check std far > 2 x std within:", "passed" if ok else "FAILED")
    return ok


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few epochs, for CI")
    sys.exit(0 if main(parser.parse_args().quick) else 1)
