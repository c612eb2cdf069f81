"""Populations sharded over the member axis of a Mesh of 8 virtual CPU devices.

The device count is fixed when JAX starts, so the check runs in a fresh Python process
with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    import jaxnn as nn
    from jaxnn import population as pop

    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    assert len(jax.devices()) == 8, jax.devices()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("members",))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x.sum(axis=1, keepdims=True) > 0).astype(np.float32)
    trainer = nn.Trainer(
        nn.Sequential(nn.Dense(16, "relu"), nn.Dense(1, "sigmoid")),
        "binary_crossentropy", "adam", ["accuracy"],
    )
    states = pop.init(trainer, jax.random.key(0), x, 16,
                      hyperparams={"learning_rate": jnp.logspace(-3, -1, 16)})
    kwargs = dict(epochs=3, batch_size=8, validation_split=0.25)
    plain, plain_history = pop.fit(trainer, states, x, y, **kwargs)

    sharded_in = nn.parallel.shard_members(states, mesh)
    assert len(sharded_in.params["dense"]["kernel"].sharding.device_set) == 8
    sharded, history = pop.fit(trainer, sharded_in, x, y, **kwargs)

    # Each device holds its own 2 members of the trained population.
    for leaf in jax.tree.leaves(sharded.params):
        assert len(leaf.sharding.device_set) == 8, leaf.sharding
        assert {s.data.shape[0] for s in leaf.addressable_shards} == {2}, leaf.sharding
    # float32 tolerance: the partitioned program may fuse and order sums differently.
    for a, b in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(plain.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    for k in plain_history:
        np.testing.assert_allclose(history[k], plain_history[k], rtol=1e-5, atol=1e-6)

    scores = pop.evaluate(trainer, sharded, x, y)
    np.testing.assert_allclose(scores["loss"], pop.evaluate(trainer, plain, x, y)["loss"],
                               rtol=1e-5)
    try:
        nn.parallel.shard_members(jax.tree.map(lambda a: a[:12], states), mesh)
    except ValueError as e:
        assert "12 members do not divide over the 8 devices" in str(e), e
    else:
        raise AssertionError("shard_members accepted 12 members over 8 devices")
    print("SHARDED-OK")
    """
)


def test_population_sharded_over_eight_devices_equals_unsharded():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SHARDED-OK" in result.stdout
