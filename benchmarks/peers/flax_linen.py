"""Flax linen: ``nn.Module`` models, a ``jax.jit`` train step, optax, a Python loop.

This is the pattern of Flax's own examples and "getting started" guide: a
``flax.training.train_state.TrainState`` updated by one jitted step per batch, the
batches fed from the host.
"""

from __future__ import annotations

from benchmarks.peers import common as c

LIBRARY = "flax"
LABEL = "Flax linen"


def _setup():
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from flax.training import train_state

    return nn, jax, jnp, optax, train_state


def _step(jax, optax, loss_fn):
    @jax.jit
    def step(state, x, y):
        def objective(params):
            return loss_fn(state.apply_fn({"params": params}, x), y)

        loss, grads = jax.value_and_grad(objective)(state.params)
        return state.apply_gradients(grads=grads), loss

    return step


def seed() -> list[c.Timed]:
    """1000 Adam steps of the 4-32-1 network: a jitted step, host-shuffled batches."""
    nn, jax, jnp, optax, train_state = _setup()
    import numpy as np

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(c.SEED_HIDDEN)(x))
            return nn.Dense(1)(x)

    def bce(logits, y):
        return optax.sigmoid_binary_cross_entropy(logits, y).mean()

    x, y = c.seed_data()
    model = Net()
    params = model.init(jax.random.key(0), x[:1])["params"]
    tx = optax.adam(c.LEARNING_RATE)
    step = _step(jax, optax, bce)
    box = [train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)]
    rng = np.random.default_rng(1)

    def run():
        state = box[0]
        for _ in range(c.SEED_EPOCHS):
            for xb, yb in c.seed_batches(rng, x, y):
                state, loss = step(state, xb, yb)
        box[0] = jax.block_until_ready(state)

    return [c.Timed("Flax linen: jitted step, Python loop", run, c.SEED_STEPS)]


def _classifier_impl(name, model, x, y, steps):
    nn, jax, jnp, optax, train_state = _setup()
    x, y = jnp.asarray(x), jnp.asarray(y)
    params = model.init(jax.random.key(0), x)["params"]

    def ce(logits, y):
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    step = _step(jax, optax, ce)
    box = [train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-3))]

    def run():
        state = box[0]
        for _ in range(steps):
            state, loss = step(state, x, y)
        box[0] = jax.block_until_ready(state)

    return c.Timed(name, run, steps)


def mlp(steps: int) -> list[c.Timed]:
    """784-512-512-10 at batch 256: ``steps`` jitted steps on one device batch."""
    nn = _setup()[0]

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            for width in c.MLP_SIZES[1:-1]:
                x = nn.relu(nn.Dense(width)(x))
            return nn.Dense(c.MLP_SIZES[-1])(x)

    x, y = c.mlp_data()
    return [_classifier_impl("Flax linen: jitted step", MLP(), x, y, steps)]


def cnn(steps: int) -> list[c.Timed]:
    """The LeNet-style network at batch 128: ``steps`` jitted steps on one batch."""
    nn = _setup()[0]

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            for features in (32, 64):
                x = nn.relu(nn.Conv(features, (3, 3), padding="SAME")(x))
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = x.reshape(x.shape[0], -1)
            x = nn.relu(nn.Dense(128)(x))
            return nn.Dense(c.CNN_CLASSES)(x)

    x, y = c.cnn_data()
    return [_classifier_impl("Flax linen: jitted step", CNN(), x, y, steps)]
