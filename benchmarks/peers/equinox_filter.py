"""Equinox: models as pytrees, an ``eqx.filter_jit`` step, optax.

``filter_jit`` over the whole model is the pattern of Equinox's examples (its MNIST
CNN). Equinox's documentation also describes cutting ``filter_jit``'s per-call cost
by splitting the model with ``eqx.partition`` and jitting only the arrays with plain
``jax.jit``; both variants run, so the faster one is on record.
"""

from __future__ import annotations

from benchmarks.peers import common as c

LIBRARY = "equinox"
LABEL = "Equinox"


def _steps(loss_fn, tx):
    import equinox as eqx
    import jax
    import optax

    @eqx.filter_jit
    def filtered(model, opt_state, x, y):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, x, y)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    def partitioned(static):
        @jax.jit
        def step(params, opt_state, x, y):
            def objective(p):
                return loss_fn(eqx.combine(p, static), x, y)

            loss, grads = jax.value_and_grad(objective)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        return step

    return filtered, partitioned


def _impls(model, loss_fn, batches, steps, label):
    """Both step variants; ``batches()`` yields the ``(x, y)`` of one timed run."""
    import equinox as eqx
    import jax
    import optax

    tx = optax.adam(c.LEARNING_RATE)
    filtered, partitioned = _steps(loss_fn, tx)
    params, static = eqx.partition(model, eqx.is_array)
    step_p = partitioned(static)
    a = [model, tx.init(eqx.filter(model, eqx.is_array))]
    b = [params, tx.init(params)]

    def run_filtered():
        model, opt_state = a
        for xb, yb in batches():
            model, opt_state, loss = filtered(model, opt_state, xb, yb)
        a[:] = jax.block_until_ready((model, opt_state))

    def run_partitioned():
        params, opt_state = b
        for xb, yb in batches():
            params, opt_state, loss = step_p(params, opt_state, xb, yb)
        b[:] = jax.block_until_ready((params, opt_state))

    return [
        c.Timed(f"Equinox: filter_jit step{label}", run_filtered, steps),
        c.Timed(f"Equinox: partition + jax.jit step{label}", run_partitioned, steps),
    ]


def seed() -> list[c.Timed]:
    """1000 Adam steps of the 4-32-1 network, host-shuffled batches."""
    import equinox as eqx
    import jax
    import numpy as np
    import optax

    model = eqx.nn.MLP(c.SEED_FEATURES, 1, c.SEED_HIDDEN, 1, key=jax.random.key(0))

    def bce(model, x, y):
        return optax.sigmoid_binary_cross_entropy(jax.vmap(model)(x), y).mean()

    x, y = c.seed_data()
    rng = np.random.default_rng(1)

    def batches():
        for _ in range(c.SEED_EPOCHS):
            yield from c.seed_batches(rng, x, y)

    return _impls(model, bce, batches, c.SEED_STEPS, ", Python loop")


def _classifier(model, x, y, steps):
    import jax
    import jax.numpy as jnp
    import optax

    def ce(model, x, y):
        logits = jax.vmap(model)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    x, y = jnp.asarray(x), jnp.asarray(y)
    return _impls(model, ce, lambda: ((x, y) for _ in range(steps)), steps, "")


def mlp(steps: int) -> list[c.Timed]:
    """784-512-512-10 at batch 256: ``steps`` steps on one device batch."""
    import equinox as eqx
    import jax

    sizes = c.MLP_SIZES
    model = eqx.nn.MLP(sizes[0], sizes[-1], sizes[1], len(sizes) - 2, key=jax.random.key(0))
    return _classifier(model, *c.mlp_data(), steps)


def cnn(steps: int) -> list[c.Timed]:
    """The LeNet-style network at batch 128 (Equinox convolutions are CHW per example)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    k = jax.random.split(jax.random.key(0), 4)
    flat = (c.CNN_SIZE // 4) ** 2 * 64
    model = eqx.nn.Sequential(
        [
            eqx.nn.Conv2d(1, 32, 3, padding=1, key=k[0]),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.MaxPool2d(2, 2),
            eqx.nn.Conv2d(32, 64, 3, padding=1, key=k[1]),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.MaxPool2d(2, 2),
            eqx.nn.Lambda(jnp.ravel),
            eqx.nn.Linear(flat, 128, key=k[2]),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Linear(128, c.CNN_CLASSES, key=k[3]),
        ]
    )
    x, y = c.cnn_data()
    return _classifier(model, x.transpose(0, 3, 1, 2), y, steps)
