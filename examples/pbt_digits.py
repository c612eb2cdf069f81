"""Population-based training of learning rate and weight decay on the digits data.

An MLP on scikit-learn's bundled 8x8 digits (1797 images), trained with AdamW by two
populations of the same size, from the same initial weights and the same initial
hyperparameters (learning rates in [1e-4, 3e-3] and weight decays in [1e-5, 0.1],
drawn log-uniformly), for the same number of epochs:

* a sweep: every member keeps its hyperparameters for the whole run;
* PBT (``jaxnn.population.pbt``): every 4 epochs the quarter of the members worst on
  validation loss copy the weights and optimizer state of one of the best quarter
  and perturb its learning rate and weight decay (x0.8 or x1.2), all in one compiled
  program.

Each side's model is its member best on the validation set; both are then scored on a
test set that neither saw. PBT also prints the learning-rate schedule its best member
followed, through the members it descends from.

    python examples/pbt_digits.py          # 32 members, 48 epochs
    python examples/pbt_digits.py --quick  # 8 members, 4 epochs, for CI
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import jaxnn as nn
from jaxnn import population
from jaxnn.population import pbt


def load(seed: int = 0):
    """Pixels scaled to [0, 1], ``(n, 64)``; labels ``(n,)``; stratified 60/20/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=0.25, random_state=seed, stratify=y_train
    )
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def lineage(parent: np.ndarray, member: int) -> list[int]:
    """The member whose weights ``member`` carried in each round, oldest first."""
    path = [member]
    for r in range(parent.shape[1] - 1, 0, -1):
        path.append(int(parent[path[-1], r]))
    return path[::-1]


def main(quick: bool) -> tuple[float, float]:
    """Trains both populations; returns the (sweep, PBT) test accuracies."""
    (x, y), (x_val, y_val), (x_test, y_test) = load()
    members, epochs, every = (8, 4, 2) if quick else (32, 48, 4)
    rng = np.random.default_rng(0)
    start = {
        "learning_rate": np.exp(rng.uniform(np.log(1e-4), np.log(3e-3), members)),
        "weight_decay": np.exp(rng.uniform(np.log(1e-5), np.log(1e-1), members)),
    }
    start = {k: v.astype(np.float32) for k, v in start.items()}

    model = nn.Sequential(nn.Dense(64, "relu"), nn.Dense(10, "softmax"))
    trainer = nn.Trainer(model, "sparse_categorical_crossentropy", "adamw", ["accuracy"])
    states = population.init(trainer, jax.random.key(0), x, members, hyperparams=start)
    settings = dict(epochs=epochs, batch_size=64, validation_data=(x_val, y_val))

    swept, sweep_history = population.fit(trainer, states, x, y, **settings)
    schedule = population.PBT(
        ("learning_rate", "weight_decay"),
        every=every,
        monitor="val_loss",
        bounds={"learning_rate": (1e-5, 0.1), "weight_decay": (1e-6, 0.3)},
    )
    trained, history = pbt.fit(
        trainer, states, x, y, pbt=schedule, key=jax.random.key(1), **settings
    )

    scores = {}
    for name, (states_, hist) in {
        "sweep": (swept, sweep_history),
        "PBT": (trained, history),
    }.items():
        val = hist["val_accuracy"][:, -1]
        best = int(np.nanargmax(val))
        test = population.evaluate(trainer, states_, x_test, y_test)["accuracy"][best]
        scores[name] = (float(val[best]), float(test))
        print(
            f"{name:>5}: best member {best:2d}, validation accuracy {val[best]:.4f}, "
            f"test accuracy {float(test):.4f}"
        )
    best = int(np.nanargmax(history["val_accuracy"][:, -1]))
    path = lineage(history["parent"], best)
    rates = [history["learning_rate"][m, r] for r, m in enumerate(path)]
    print("PBT's best member's learning rate per round:", " ".join(f"{r:.2g}" for r in rates))
    sweep_best = int(np.nanargmax(sweep_history["val_accuracy"][:, -1]))
    print(
        f"the sweep's best fixed hyperparameters: learning rate "
        f"{start['learning_rate'][sweep_best]:.2g}, weight decay "
        f"{start['weight_decay'][sweep_best]:.2g}"
    )
    return scores["sweep"][1], scores["PBT"][1]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few members and epochs, for CI")
    main(parser.parse_args().quick)
