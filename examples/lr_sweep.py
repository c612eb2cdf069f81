"""A learning-rate sweep: 256 networks trained at once, one per learning rate.

Every member is the same MLP on scikit-learn's bundled breast-cancer data set (569 x 30),
with its own initialisation, shuffle order and Adam learning rate, log-spaced from
1e-5 to 1. The whole population trains as one compiled program (``jaxnn.population``),
and the learning rates are traced values: a second sweep with other rates would reuse
the same program. Prints the sweep's table (``population.summarize``), writes
``lr_sweep.png`` (final validation loss against learning rate, log x-axis, with
``population.plot``) and prints the best learning rate.

    python examples/lr_sweep.py          # 256 members, 40 epochs
    python examples/lr_sweep.py --quick  # 32 members, 3 epochs, for CI
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn as nn
from jaxnn import population


def load(seed: int = 0):
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8
    prep = lambda a: ((a - mean) / std).astype(np.float32)
    col = lambda a: a[:, None].astype(np.float32)
    return prep(x_train), col(y_train), prep(x_val), col(y_val)


def plot(history, rates: np.ndarray, best: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Final validation loss against learning rate: both axes log, as they span decades.
    fig = population.plot(history, {"learning_rate": rates}, "learning_rate", value="final")
    ax = fig.axes[0]
    ax.set_xlabel("learning rate (Adam)")
    ax.axvline(best, color="C3", linestyle="--", label=f"best lr = {best:.2g}")
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(quick: bool) -> float:
    x, y, x_val, y_val = load()
    members, epochs = (32, 3) if quick else (256, 40)
    rates = np.logspace(-5, 0, members).astype(np.float32)

    model = nn.Sequential(nn.Dense(16, "relu"), nn.Dense(1, "sigmoid"))
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics=["accuracy"])
    states = population.init(
        trainer, jax.random.key(0), x, members, hyperparams={"learning_rate": jnp.asarray(rates)}
    )
    states, history = population.fit(
        trainer,
        states,
        x,
        y,
        epochs=epochs,
        batch_size=32,
        validation_data=(x_val, y_val),
        verbose=0 if quick else 2,
    )
    # One row per member, best final validation loss first; a member that went
    # non-finite stopped there (its logs read NaN), and ranks last.
    summary = population.summarize(history, {"learning_rate": rates}, "val_loss", by="final")
    print(summary.format(max_rows=5))
    diverged = rates[history["nonfinite_epoch"] >= 0]
    if diverged.size:
        print(f"{diverged.size} members diverged and stopped, from lr {diverged.min():.3g}")
    best = summary.to_dicts()[0]
    best_state = population.select(states, history["val_loss"][:, -1])
    scores = trainer.evaluate(best_state, x_val, y_val)
    print(
        f"best learning rate: {best['learning_rate']:.3g} (val loss {best['final']:.4f}, "
        f"val accuracy {scores['accuracy']:.3f})"
    )
    plot(history, rates, best["learning_rate"], "lr_sweep.png")
    print("wrote lr_sweep.png")
    return best["learning_rate"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few members and epochs, for CI")
    main(parser.parse_args().quick)
