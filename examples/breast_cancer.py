"""Breast-cancer diagnosis (scikit-learn's bundled Wisconsin data set, 569 x 30).

A small MLP with dropout and early stopping on a validation split; it reaches at
least 95% test accuracy and writes the learning curves to ``breast_cancer.png``.

    python examples/breast_cancer.py          # full run: exits non-zero below 95%
    python examples/breast_cancer.py --quick  # a few epochs, for CI
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

import jaxnn as nn

TARGET = 0.95


def load(seed: int = 0):
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8
    prep = lambda a: ((a - mean) / std).astype(np.float32)
    return prep(x_train), y_train[:, None].astype(np.float32), prep(x_test), y_test[:, None]


def plot(history: nn.History, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = np.arange(1, history.epochs + 1)
    for name, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
        ax.plot(epochs, history[name], label=f"training {name}")
        ax.plot(epochs, history[f"val_{name}"], label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def main(quick: bool) -> float:
    x_train, y_train, x_test, y_test = load()
    model = nn.Sequential(
        nn.Dense(32, "relu"),
        nn.Dropout(0.2),
        nn.Dense(16, "relu"),
        nn.Dense(1, "sigmoid"),
    )
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", metrics=["accuracy"])
    state = trainer.init(jax.random.key(0), x_train)
    stop = nn.EarlyStopping("val_loss", patience=10, restore_best_weights=True)
    state, history = trainer.fit(
        state,
        x_train,
        y_train,
        epochs=5 if quick else 200,
        batch_size=16,
        validation_split=0.2,
        callbacks=[stop],
        verbose=0 if quick else 2,
    )
    accuracy = trainer.evaluate(state, x_test, y_test)["accuracy"]
    print(f"test accuracy after {history.epochs} epochs: {accuracy:.4f} (target {TARGET})")
    plot(history, "breast_cancer.png")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs, for CI")
    args = parser.parse_args()
    acc = main(args.quick)
    if not args.quick and acc < TARGET:
        sys.exit(f"test accuracy {acc:.4f} is below the target {TARGET}")
