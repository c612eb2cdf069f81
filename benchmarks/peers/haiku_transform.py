"""Haiku: ``hk.transform`` to pure ``init``/``apply``, a ``jax.jit`` step, optax.

As in Haiku's examples: the forward pass is written with Haiku modules inside a
function, ``hk.without_apply_rng(hk.transform(...))`` turns it into pure functions,
and one jitted update per batch is called from a Python loop.
"""

from __future__ import annotations

from benchmarks.peers import common as c

LIBRARY = "haiku"
LABEL = "Haiku"


def _train(forward, loss_fn, x_example, lr=c.LEARNING_RATE):
    import haiku as hk
    import jax
    import optax

    net = hk.without_apply_rng(hk.transform(forward))
    params = net.init(jax.random.key(0), x_example)
    tx = optax.adam(lr)

    @jax.jit
    def step(params, opt_state, x, y):
        def objective(p):
            return loss_fn(net.apply(p, x), y)

        loss, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step, [params, tx.init(params)]


def seed() -> list[c.Timed]:
    """1000 Adam steps of the 4-32-1 network: a jitted step, host-shuffled batches."""
    import haiku as hk
    import jax
    import numpy as np
    import optax

    def forward(x):
        return hk.Sequential([hk.Linear(c.SEED_HIDDEN), jax.nn.relu, hk.Linear(1)])(x)

    def bce(logits, y):
        return optax.sigmoid_binary_cross_entropy(logits, y).mean()

    x, y = c.seed_data()
    step, box = _train(forward, bce, x[:1])
    rng = np.random.default_rng(1)

    def run():
        params, opt_state = box
        for _ in range(c.SEED_EPOCHS):
            for xb, yb in c.seed_batches(rng, x, y):
                params, opt_state, loss = step(params, opt_state, xb, yb)
        box[:] = jax.block_until_ready((params, opt_state))

    return [c.Timed("Haiku: transform + jitted step, Python loop", run, c.SEED_STEPS)]


def _classifier(forward, x, y, steps, name):
    import jax
    import jax.numpy as jnp
    import optax

    def ce(logits, y):
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    x, y = jnp.asarray(x), jnp.asarray(y)
    step, box = _train(forward, ce, x)

    def run():
        params, opt_state = box
        for _ in range(steps):
            params, opt_state, loss = step(params, opt_state, x, y)
        box[:] = jax.block_until_ready((params, opt_state))

    return c.Timed(name, run, steps)


def mlp(steps: int) -> list[c.Timed]:
    """784-512-512-10 at batch 256: ``steps`` jitted steps on one device batch."""
    import haiku as hk

    def forward(x):
        return hk.nets.MLP(c.MLP_SIZES[1:])(x)

    x, y = c.mlp_data()
    return [_classifier(forward, x, y, steps, "Haiku: transform + jitted step")]


def cnn(steps: int) -> list[c.Timed]:
    """The LeNet-style network at batch 128: ``steps`` jitted steps on one batch."""
    import haiku as hk
    import jax

    def forward(x):
        for features in (32, 64):
            x = jax.nn.relu(hk.Conv2D(features, 3, padding="SAME")(x))
            x = hk.max_pool(x, window_shape=(1, 2, 2, 1), strides=(1, 2, 2, 1), padding="VALID")
        x = hk.Flatten()(x)
        x = jax.nn.relu(hk.Linear(128)(x))
        return hk.Linear(c.CNN_CLASSES)(x)

    x, y = c.cnn_data()
    return [_classifier(forward, x, y, steps, "Haiku: transform + jitted step")]
