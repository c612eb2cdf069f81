"""Checkpoints written with orbax-checkpoint (the [distributed] extra): the same
resume as safetensors files, unfinished saves skipped, clear errors."""

import os

import jax
import numpy as np
import pytest

import jaxnn as nn
from jaxnn import sharded_checkpoint
from tests.exact import assert_same

pytest.importorskip("orbax.checkpoint", reason="orbax-checkpoint is the [distributed] extra")


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    model = nn.Sequential(nn.Dense(8), nn.BatchNorm(), nn.Activation("relu"), nn.Dense(1))
    trainer = nn.Trainer(model, "mse", "adam")
    return trainer, trainer.init(jax.random.key(0), x), x, y


def leaves(state):
    return [
        np.asarray(a) for a in jax.tree.leaves(state._replace(key=jax.random.key_data(state.key)))
    ]


def test_orbax_checkpoints_resume_bit_exactly(setup, tmp_path):
    trainer, state, x, y = setup
    fit = dict(batch_size=8, verbose=0)
    straight, straight_history = trainer.fit(state, x, y, epochs=3, **fit)
    ckpt = nn.Checkpointing(tmp_path, format="orbax", monitor="loss", keep=1)
    trainer.fit(state, x, y, epochs=2, checkpoint=ckpt, **fit)
    assert sorted(os.listdir(tmp_path)) == ["best.orbax", "epoch_000002.orbax"]
    meta = sharded_checkpoint.read_metadata(tmp_path / "epoch_000002.orbax")["jaxnn_fit"]
    assert meta["epoch"] == 2 and len(meta["history"]["loss"]) == 2

    # A save killed before its metadata was written is skipped, with a warning.
    os.makedirs(tmp_path / "epoch_000003.orbax")
    again = nn.Checkpointing(tmp_path, format="orbax", resume=True)
    with pytest.warns(UserWarning, match=r"skipping a damaged checkpoint.*not a finished sharded"):
        resumed, history = trainer.fit(state, x, y, epochs=3, checkpoint=again, **fit)
    for a, b in zip(leaves(resumed), leaves(straight), strict=True):
        assert_same(a, b)
    assert_same(history["loss"], straight_history["loss"])


def test_a_safetensors_run_resumes_into_orbax_and_mismatches_are_refused(setup, tmp_path):
    trainer, state, x, y = setup
    trainer.fit(state, x, y, epochs=1, verbose=0, checkpoint=tmp_path)
    again = nn.Checkpointing(tmp_path, format="orbax", resume=True)
    _, history = trainer.fit(state, x, y, epochs=2, verbose=0, checkpoint=again)
    assert history.epochs == 2 and "epoch_000002.orbax" in os.listdir(tmp_path)

    other = nn.Trainer(nn.Dense(1), "mse", "adam")
    path = tmp_path / "epoch_000002.orbax"
    with pytest.raises(nn.checkpoint.CheckpointError, match=r"does not match the expected tree"):
        sharded_checkpoint.restore(path, other.init(jax.random.key(0), x))
    with pytest.raises(ValueError, match=r"Checkpointing: format must be one of"):
        nn.Checkpointing(tmp_path, format="zip")
