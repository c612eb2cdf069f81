"""Hand-written JAX references: no library, just ``jax``, ``jax.numpy`` and optax.

The suite's ratios are taken against these (and against ``benchmarks/seed.py``'s
all-in-one ``lax.scan`` for ``seed``, ``benchmarks/cnn.py``'s ``lax`` network for
``cnn``). ``seed()`` here is the loop that every JAX peer runs: one jitted step per
batch, called from Python, so the peers' overhead over plain JAX shows directly.
"""

from __future__ import annotations

from benchmarks.peers import common as c

LIBRARY = "jax"
LABEL = "pure JAX"


def dense_params(key, sizes):
    """Glorot-uniform kernels ``(in, out)`` and zero biases for a stack of dense layers."""
    import jax
    import jax.numpy as jnp

    glorot = jax.nn.initializers.glorot_uniform()
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": glorot(k, (a, b)), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp_forward(params, x):
    """ReLU between dense layers, logits out."""
    import jax

    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def jitted_step(loss_fn, tx):
    """``step(params, opt_state, x, y) -> (params, opt_state, loss)``, jitted."""
    import jax
    import optax

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def seed() -> list[c.Timed]:
    """1000 Adam steps of the 4-32-1 network: a jitted step, host-shuffled batches."""
    import jax
    import numpy as np
    import optax

    def bce(params, x, y):
        return optax.sigmoid_binary_cross_entropy(mlp_forward(params, x), y).mean()

    tx = optax.adam(c.LEARNING_RATE)
    params = dense_params(jax.random.key(0), (c.SEED_FEATURES, c.SEED_HIDDEN, 1))
    step = jitted_step(bce, tx)
    box = [params, tx.init(params)]
    x, y = c.seed_data()
    rng = np.random.default_rng(1)

    def run():
        params, opt_state = box
        for _ in range(c.SEED_EPOCHS):
            for xb, yb in c.seed_batches(rng, x, y):
                params, opt_state, loss = step(params, opt_state, xb, yb)
        box[:] = jax.block_until_ready((params, opt_state))

    return [c.Timed("pure JAX: jitted step, Python loop", run, c.SEED_STEPS)]


def mlp_step():
    """The reference MLP: its jitted step, optimizer and initial params."""
    import jax
    import optax

    def ce(params, x, y):
        logits = mlp_forward(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    tx = optax.adam(c.LEARNING_RATE)
    params = dense_params(jax.random.key(0), c.MLP_SIZES)
    return jitted_step(ce, tx), tx, params


def mlp(steps: int) -> list[c.Timed]:
    """784-512-512-10 at batch 256: ``steps`` jitted steps on one device batch."""
    import jax
    import jax.numpy as jnp

    step, tx, params = mlp_step()
    x, y = (jnp.asarray(a) for a in c.mlp_data())
    box = [params, tx.init(params)]

    def run():
        params, opt_state = box
        for _ in range(steps):
            params, opt_state, loss = step(params, opt_state, x, y)
        box[:] = jax.block_until_ready((params, opt_state))

    return [c.Timed("pure JAX: jitted step", run, steps)]
