"""The tutorial's Keras program in jaxnn, line for line.

Random data (100 x 4) with random 0/1 labels, Dense(32, relu) then Dense(1, sigmoid),
binary cross-entropy, Adam, accuracy, 100 epochs of batch size 10. The labels are
random, so the accuracy only shows that the network can memorise them.

    python examples/quickstart.py          # the full program, with Keras-like progress
    python examples/quickstart.py --quick  # 5 epochs, for CI
"""

import argparse

import jax
import numpy as np

import jaxnn as nn


def main(epochs: int = 100) -> float:
    # Generate random data.
    X = np.random.rand(100, 4)
    y = np.random.randint(2, size=(100, 1))

    # Build the model.
    model = nn.Sequential(
        nn.Dense(32, activation="relu"),
        nn.Dense(1, activation="sigmoid"),
    )

    # Compile it: loss, optimizer and metrics, by their Keras names.
    trainer = nn.Trainer(model, loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    state = trainer.init(jax.random.key(0), X)
    print(nn.summary(model, X))

    # Train it.
    state, history = trainer.fit(state, X, y, epochs=epochs, batch_size=10)

    accuracy = trainer.evaluate(state, X, y)["accuracy"]
    print(f"final training accuracy: {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 epochs, for CI")
    args = parser.parse_args()
    np.random.seed(0)
    main(epochs=5 if args.quick else 100)
