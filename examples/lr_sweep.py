"""A learning-rate sweep: 256 networks trained at once, one per learning rate.

Every member is the same MLP on scikit-learn's bundled breast-cancer data set (569 x 30),
with its own initialisation, shuffle order and Adam learning rate, log-spaced from
1e-5 to 1. The whole population trains as one compiled program (``jaxnn.population``),
and the learning rates are traced values: a second sweep with other rates would reuse
the same program. Writes ``lr_sweep.png`` (final validation loss against learning
rate, log x-axis) and prints the best learning rate.

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


def plot(rates: np.ndarray, val_loss: np.ndarray, best: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rates, val_loss, ".", markersize=4)
    ax.axvline(best, color="C3", linestyle="--", label=f"best lr = {best:.2g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate (Adam)")
    ax.set_ylabel("final validation loss")
    ax.set_title(f"{len(rates)} networks trained at once")
    ax.legend()
    fig.tight_layout()
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
    val_loss = history["val_loss"][:, -1]  # (members,)
    # A member that went non-finite stopped there (its logs read NaN); it ranks last.
    diverged = rates[history["nonfinite_epoch"] >= 0]
    if diverged.size:
        print(f"{diverged.size} members diverged and stopped, from lr {diverged.min():.3g}")
    best = int(np.nanargmin(val_loss))
    best_state = population.select(states, val_loss)
    scores = trainer.evaluate(best_state, x_val, y_val)
    print(
        f"best learning rate: {rates[best]:.3g} (val loss {val_loss[best]:.4f}, "
        f"val accuracy {scores['accuracy']:.3f}); worst finite val loss "
        f"{np.nanmax(val_loss):.4f} at lr {rates[int(np.nanargmax(val_loss))]:.3g}"
    )
    plot(rates, val_loss, float(rates[best]), "lr_sweep.png")
    print("wrote lr_sweep.png")
    return float(rates[best])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few members and epochs, for CI")
    main(parser.parse_args().quick)
