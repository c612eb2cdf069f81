"""Parity of variable-length bit strings with a GRU: is the count of ones even?

Each example is a string of 1 to 16 random bits, padded to 16 steps; the model reads
``{"inputs": bits, "lengths": lengths}``, so the GRU stops at each string's end and
the padding (filled with random noise here, to prove it is ignored) never reaches
the answer. Parity needs the whole string: flipping any one bit flips the label, so
a model that skips a step cannot beat 50%.

    python examples/sequence_rnn.py          # full run: exits 1 below 99% test accuracy
    python examples/sequence_rnn.py --quick  # a few seconds, for CI
"""

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn as nn
from jaxnn.layers.recurrent import GRU

MAX_LEN = 16
TARGET = 0.99


def make_data(n: int, seed: int) -> tuple[dict, np.ndarray]:
    """``n`` bit strings of random lengths in ``[1, MAX_LEN]``; labels 1 when even."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, MAX_LEN + 1, n)
    bits = rng.integers(0, 2, (n, MAX_LEN))
    real = np.arange(MAX_LEN)[None, :] < lengths[:, None]
    ones = (bits * real).sum(axis=1)
    noise = rng.normal(size=(n, MAX_LEN)) * 5
    inputs = np.where(real, 2.0 * bits - 1.0, noise).astype(np.float32)[..., None]
    x = {"inputs": inputs, "lengths": lengths.astype(np.int32)}
    y = (ones % 2 == 0).astype(np.float32)[:, None]
    return x, y


# Training is a small optax loop (one jitted lax.scan per epoch) until jaxnn.Trainer is
# importable; then it becomes Trainer(model, "binary_crossentropy", "adam", ["accuracy"]).
def main(quick: bool) -> float:
    train_n, epochs = (512, 2) if quick else (8192, 20)
    batch_size = 64
    x, y = make_data(train_n, seed=0)
    x_test, y_test = make_data(2048, seed=1)

    model = nn.Sequential(GRU(32), nn.Dense(1, activation="sigmoid"))
    params, state = model.init(jax.random.key(0), x)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    def loss_fn(params, xb, yb):
        p, _ = model.apply(params, state, xb)
        p = jnp.clip(p, 1e-7, 1 - 1e-7)
        return -jnp.mean(yb * jnp.log(p) + (1 - yb) * jnp.log(1 - p))

    @jax.jit
    def epoch(params, opt_state, key):
        # One epoch as one program: shuffle on the device, scan over the batches.
        order = jax.random.permutation(key, train_n).reshape(-1, batch_size)

        def step(carry, idx):
            params, opt_state = carry
            xb, yb = jax.tree.map(lambda a: a[idx], x), y[idx]
            loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), order)
        return params, opt_state, losses.mean()

    @jax.jit
    def accuracy(params, x, y):
        p, _ = model.apply(params, state, x)
        return jnp.mean(((p > 0.5) == (y > 0.5)).astype(jnp.float32))

    x, y = jax.tree.map(jnp.asarray, (x, y))
    key = jax.random.key(1)
    for i in range(epochs):
        key, sub = jax.random.split(key)
        params, opt_state, loss = epoch(params, opt_state, sub)
        if not quick:
            acc = float(accuracy(params, x_test, y_test))
            print(f"epoch {i + 1:3d}  loss {float(loss):.4f}  test accuracy {acc:.4f}")
    test_accuracy = float(accuracy(params, x_test, y_test))
    print(f"test accuracy: {test_accuracy:.4f} (target {TARGET})")
    return test_accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI")
    args = parser.parse_args()
    accuracy = main(args.quick)
    if not args.quick and accuracy < TARGET:
        print(f"FAILED: test accuracy {accuracy:.4f} is below the target {TARGET}")
        sys.exit(1)
