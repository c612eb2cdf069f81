"""Writing your own layers: one with parameters, one with state, trained by Trainer.

A layer is two pure functions and a name: ``init(key, x) -> (params, state)`` and
``apply(params, state, x, *, key=None, training=False) -> (y, state)``, wrapped in
``nn.Layer(init, apply, "Kind")`` by a function that takes the layer's settings (as
``nn.Dense`` itself is written). Here:

* ``Linear(features)``: ``y = x @ kernel + bias``, its params made with
  ``nn.initializers``;
* ``Center(momentum)``: subtracts a running mean of its input, kept in the layer's
  state and updated in training only (like BatchNorm's statistics), then learns a
  scale per feature.

They then compose, train, summarise and checkpoint like the built-in layers. The data
is two interleaving half circles (two moons), shifted far from 0 so that ``Center``
has something to do.

    python examples/custom_layer.py          # 300 epochs
    python examples/custom_layer.py --quick  # 20 epochs, for CI
"""

import argparse
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn as nn

TARGET = 0.95
"""The training accuracy the full run reaches (tests/test_examples.py checks it)."""


def Linear(features: int, *, name: str | None = None) -> nn.Layer:
    """``y = x @ kernel + bias``: ``x: (batch, in_features) -> y: (batch, features)``."""
    glorot = nn.initializers.get("glorot_uniform")

    def init(key, x):
        kernel = glorot(key, (x.shape[-1], features), jnp.float32)
        return {"kernel": kernel, "bias": jnp.zeros((features,))}, {}  # (params, state)

    def apply(params, state, x, *, key=None, training=False):
        del key, training  # deterministic: the same in training and evaluation
        y = x @ params["kernel"] + params["bias"][None, :]
        return y, state  # no state: give back the one received

    return nn.Layer(init, apply, "Linear", name)


def Center(momentum: float = 0.9, *, name: str | None = None) -> nn.Layer:
    """``y = (x - running mean) * scale``, the mean kept in state, per feature."""

    def init(key, x):
        del key
        features = x.shape[-1]
        params = {"scale": jnp.ones((features,))}
        state = {"mean": jnp.zeros((features,))}
        return params, state

    def apply(params, state, x, *, key=None, training=False):
        del key
        mean = state["mean"]
        if training:  # a Python bool: each mode compiles its own program
            mean = momentum * mean + (1 - momentum) * jnp.mean(x, axis=0)
            state = {"mean": mean}
        return (x - mean[None, :]) * params["scale"][None, :], state

    return nn.Layer(init, apply, "Center", name)


def two_moons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of two interleaving half circles, labels 0 and 1, shifted by +5."""
    t = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.where(label == 0, np.cos(t), 1 - np.cos(t))
    y = np.where(label == 0, np.sin(t), 0.5 - np.sin(t))
    points = np.stack([x, y], axis=1) + rng.normal(0, 0.1, (n, 2)) + 5.0
    return points.astype(np.float32), label[:, None].astype(np.float32)


def main(quick: bool = False) -> float:
    X, y = two_moons(512, np.random.default_rng(0))
    model = nn.Sequential(
        Center(),
        Linear(32),
        "tanh",
        Linear(32),
        "tanh",
        Linear(1),
        "sigmoid",
    )
    trainer = nn.Trainer(model, "binary_crossentropy", "adam", ["accuracy"], learning_rate=1e-2)
    state = trainer.init(jax.random.key(0), X)
    print(nn.summary(model, X))

    state, history = trainer.fit(state, X, y, epochs=20 if quick else 300, batch_size=64, verbose=0)
    print(f"running mean of the inputs: {np.round(state.model_state['center']['mean'], 2)}")
    accuracy = trainer.evaluate(state, X, y)["accuracy"]
    print(f"loss {history['loss'][0]:.3f} -> {history['loss'][-1]:.3f}, accuracy {accuracy:.3f}")

    # Saved and read back like any model: the params and state by their names.
    path = os.path.join(tempfile.mkdtemp(), "custom_layer.safetensors")
    trainer.save(path, state)
    stored = nn.checkpoint.restore(path)  # nested dicts, no template needed
    y_hat, _ = model.apply(stored["params"], stored["model_state"], X)
    assert np.allclose(y_hat, trainer.predict(state, X), atol=1e-6)
    print(f"saved and restored {path}: {sorted(stored['params'])}")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 epochs, for CI")
    main(quick=parser.parse_args().quick)
