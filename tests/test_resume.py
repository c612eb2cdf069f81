"""Checkpoints during ``fit``: exact resume (also in a new process), surviving SIGKILL,
determinism across processes, retention of the last and the best checkpoints."""

import functools
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest

import jaxnn as nn
from jaxnn import checkpoint, population
from jaxnn.population import fitting
from tests.exact import assert_same

# One program for the subprocesses and for this process: the same data, model and fit.
COMMON = r"""
import sys, time
import jax, numpy as np
import jaxnn as nn
from jaxnn import checkpoint, population

def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    return x, (x.sum(axis=1, keepdims=True) > 0).astype(np.float32)

def make():
    model = nn.Sequential(nn.Dense(8, "relu"), nn.Dropout(0.2), nn.Dense(1, "sigmoid"))
    return nn.Trainer(model, "binary_crossentropy", "adam", ["accuracy"])

FIT = dict(batch_size=8, verbose=0, validation_split=0.2)
# In the subprocesses every run goes epoch by epoch (verbose=2), so that each process
# compiles one program per model (the one-program path is compared in this process).
LOOP = {**FIT, "verbose": 2}
x, y = data()
trainer = make()
state = trainer.init(jax.random.key(0), x)

def initial_members():  # only where a population is trained: it costs a second to build
    rates = np.array([1e-3, 3e-3, 1e-2, 3e-2], np.float32)
    return population.init(trainer, jax.random.key(1), x, 4, hyperparams={"learning_rate": rates})
"""

# The other process runs FIRST to the end, then KILLED, during which it is killed: one
# process (one start of jax, one compilation of the model's epoch) for both tests.
FIRST = r"""
out = sys.argv[1]
members = initial_members()
straight, _ = trainer.fit(state, x, y, epochs=10, **LOOP)
checkpoint.save(f"{out}/straight.safetensors", straight)
trainer.fit(state, x, y, epochs=5, checkpoint=f"{out}/ckpt", **LOOP)
pop_straight, _ = population.fit(trainer, members, x, y, epochs=10, batch_size=8, verbose=2)
checkpoint.save(f"{out}/pop_straight.safetensors", pop_straight)
pop_half, _ = population.fit(trainer, members, x, y, epochs=5, batch_size=8, verbose=2)
checkpoint.save(f"{out}/pop_half.safetensors", pop_half)
print("first-done", flush=True)
"""

KILLED = r"""
import jaxnn.checkpoint as saving
raw = saving._raw
def slow_raw(array):  # makes every save take ~0.1 s, so that a kill lands in one
    time.sleep(0.002)
    return raw(array)
saving._raw = slow_raw
trainer.fit(
    state, x, y, epochs=EPOCHS,
    checkpoint=nn.Checkpointing(sys.argv[2], keep=3, resume=len(sys.argv) > 3),
    callbacks=[lambda epoch, logs: print("killed-epoch", epoch, flush=True)], **FIT
)
"""
EPOCHS = 30


@functools.cache
def common() -> dict:
    """COMMON run in this process, on first use (not at collection)."""
    namespace: dict = {}
    exec(COMMON, namespace)
    return namespace


@pytest.fixture(scope="module")
def other_process(tmp_path_factory):
    """Runs FIRST, then KILLED in one new process, and SIGKILLs it during KILLED's 7th
    epoch: FIRST's results are in ``out``, KILLED's checkpoints in ``out / "ckpt_killed"``.
    Returns ``out``, whether FIRST finished, the return code and stderr."""
    out = tmp_path_factory.mktemp("other_process")
    script = COMMON + FIRST + KILLED.replace("EPOCHS", str(EPOCHS))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(out), str(out / "ckpt_killed")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first_done = False
    try:
        for line in proc.stdout:
            if line.startswith("first-done"):
                first_done = True
            elif line.startswith("killed-epoch") and int(line.split()[1]) == 6:
                # epoch 7 has run; its save is starting
                time.sleep(random.Random(0).uniform(0.0, 0.1))
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    if (out / "ckpt_killed").exists():  # as the kill left it, for a test to kill again
        shutil.copytree(out / "ckpt_killed", out / "ckpt_killed_as_left")
    return out, first_done, proc.returncode, proc.stderr.read()[-3000:]


def assert_bit_identical(a, b):
    data = lambda t: jax.tree.map(
        lambda leaf: (
            jax.random.key_data(leaf)
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
            else leaf
        ),
        t,
    )
    jax.tree.map(assert_same, data(a), data(b))


def test_exact_resume_in_a_new_process_and_determinism(other_process):
    """10 epochs straight == 5 epochs and a save in one process, then a restore in
    another (this one) and 5 more: bit for bit, for one model (with dropout and a
    validation split) and for a population. This process also retrains from the
    seed: identical to the other process's run."""
    out, first_done, _, stderr = other_process
    assert first_done, stderr
    trainer, state, x, y = (common()[k] for k in ("trainer", "state", "x", "y"))
    # Only the population's shapes: a template to restore the other process's into.
    members = jax.eval_shape(common()["initial_members"])
    loop = common()["LOOP"]
    load = lambda name, like: checkpoint.restore(f"{out}/{name}.safetensors", like)
    straight = load("straight", state)
    assert int(straight.step) == 10 * 5  # 40 training examples, batches of 8

    resumed, history = trainer.fit(
        state, x, y, epochs=10, checkpoint=nn.Checkpointing(f"{out}/ckpt", resume=True), **loop
    )
    assert_bit_identical(resumed, straight)
    assert history.epochs == 10
    again, _ = trainer.fit(state, x, y, epochs=10, **loop)
    assert_bit_identical(again, straight)

    pop_half = load("pop_half", members)
    pop_resumed, _ = population.fit(trainer, pop_half, x, y, epochs=5, batch_size=8)
    pop_straight = load("pop_straight", members)
    assert_bit_identical(pop_resumed, pop_straight)
    assert pop_straight.step.tolist() == [70] * 4  # 50 examples, 7 batches, 10 epochs


def test_population_epochs_split_or_shown_run_one_program(monkeypatch):
    """A population's epochs give the same bits run silently in one go, epoch by epoch
    (verbose=2) or split in two fits (as a resume does), and across the calls a long
    fit is cut into: every fit runs one compiled program, the number of epochs an
    argument. (Two programs differing only in their epoch loop's trip count, one and
    several, rounded differently: the resumed population above then failed.)"""
    trainer, x, y = (common()[k] for k in ("trainer", "x", "y"))
    members = common()["initial_members"]()
    fit = lambda states, epochs, verbose=0: population.fit(
        trainer, states, x, y, epochs=epochs, batch_size=8, verbose=verbose
    )
    straight, history = fit(members, 3)
    split = fit(fit(members, 1).state, 2).state
    assert_bit_identical(split, straight)
    shown, shown_history = fit(members, 3, verbose=2)
    assert_bit_identical(shown, straight)
    assert_same(shown_history["loss"], history["loss"])

    # Calls of at most 2 epochs: a 5-epoch fit takes 3, its logs joined in order.
    monkeypatch.setattr(fitting, "EPOCHS_PER_CALL", 2)
    cut, cut_history = fit(members, 5)
    assert cut_history["loss"].shape == (4, 5)
    shown, shown_history = fit(members, 5, verbose=2)
    assert_bit_identical(cut, shown)
    assert_same(cut_history["loss"], shown_history["loss"])


def test_surviving_sigkill_during_training_and_saves(other_process):
    out, _, returncode, stderr = other_process
    directory = out / "ckpt_killed"
    assert returncode == -signal.SIGKILL, stderr
    trainer, state, x, y, fit = (common()[k] for k in ("trainer", "state", "x", "y", "FIT"))
    saved = sorted(p.name for p in directory.glob("epoch_*.safetensors"))
    assert saved and len(saved) <= 3
    for name in saved:  # every checkpoint on disk is readable
        checkpoint.restore(directory / name, state)
    (directory / ".epoch_000099.safetensors.0123abcd.tmp").write_bytes(b"half a save")

    resumed, history = trainer.fit(
        state, x, y, epochs=EPOCHS, checkpoint=nn.Checkpointing(directory, resume=True), **fit
    )
    straight, straight_history = trainer.fit(state, x, y, epochs=EPOCHS, **fit)
    assert_bit_identical(resumed, straight)
    assert_same(history["loss"], straight_history["loss"])
    assert not list(directory.glob(".*.tmp"))  # leftovers of killed saves are removed


def test_killed_again_at_random_moments_resumes_exactly(other_process, tmp_path):
    """The killed run, resumed and killed twice more at random moments (a random
    epoch, a random instant within it or its save), then resumed to the end, equals
    the uninterrupted run bit for bit."""
    out, _, _, _ = other_process
    directory = tmp_path / "ckpt"
    shutil.copytree(out / "ckpt_killed_as_left", directory)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    script = COMMON + KILLED.replace("EPOCHS", str(EPOCHS))
    for _ in range(2):
        done = max(int(p.name[6:12]) for p in directory.glob("epoch_*.safetensors"))
        target = rng.randrange(done, min(done + 4, EPOCHS - 5))  # well before the end
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(out), str(directory), "resume"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for line in proc.stdout:
                if line.startswith("killed-epoch") and int(line.split()[1]) >= target:
                    time.sleep(rng.uniform(0.0, 0.1))  # in the save, or in the next epoch
                    break
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, (seed, proc.stderr.read()[-3000:])
    trainer, state, x, y, fit = (common()[k] for k in ("trainer", "state", "x", "y", "FIT"))
    resumed, history = trainer.fit(
        state, x, y, epochs=EPOCHS, checkpoint=nn.Checkpointing(directory, resume=True), **fit
    )
    straight, straight_history = trainer.fit(state, x, y, epochs=EPOCHS, **fit)
    assert_bit_identical(resumed, straight)
    assert_same(history["loss"], straight_history["loss"], err_msg=str(seed))


def test_retention_best_and_history(tmp_path):
    trainer, state, x, y, fit = (common()[k] for k in ("trainer", "state", "x", "y", "FIT"))
    states = []

    class Keep(nn.Callback):
        def on_epoch_end(self, epoch, logs, state):
            states.append(state)

    _, history = trainer.fit(
        state,
        x,
        y,
        epochs=7,
        checkpoint=nn.Checkpointing(tmp_path, every=2, keep=2, monitor="val_loss"),
        callbacks=[Keep()],
        **{**fit, "verbose": 0},
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best.safetensors", "epoch_000006.safetensors", "epoch_000007.safetensors"]
    best = int(np.argmin(history["val_loss"]))
    meta = checkpoint.read_metadata(tmp_path / "best.safetensors")["user"]["jaxnn_fit"]
    assert meta["best_epoch"] == best + 1 and meta["best"] == history["val_loss"][best]
    assert_bit_identical(checkpoint.restore(tmp_path / "best.safetensors", state), states[best])
    meta = checkpoint.read_metadata(tmp_path / "epoch_000006.safetensors")["user"]["jaxnn_fit"]
    assert meta["epoch"] == 6 and meta["history"]["val_loss"] == list(history["val_loss"][:6])
    assert meta["settings"] == {"batch_size": 8, "examples": 40, "shuffle": True}

    # Resuming a finished run trains nothing and hands back the saved state and history.
    resume = nn.Checkpointing(tmp_path, resume=True)
    done, again = trainer.fit(state, x, y, epochs=7, checkpoint=resume, **fit)
    assert_bit_identical(done, states[-1])
    assert_same(again["val_loss"], history["val_loss"])


def test_resume_skips_a_damaged_newest_checkpoint(tmp_path):
    trainer, state, x, y, fit = (common()[k] for k in ("trainer", "state", "x", "y", "FIT"))
    trainer.fit(state, x, y, epochs=4, checkpoint=tmp_path, **fit)
    newest = tmp_path / "epoch_000004.safetensors"
    data = bytearray(newest.read_bytes())
    data[-3] ^= 0x10  # one flipped bit in the data
    newest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"skipping a damaged checkpoint.*corrupted"):
        resumed, history = trainer.fit(
            state, x, y, epochs=EPOCHS, checkpoint=nn.Checkpointing(tmp_path, resume=True), **fit
        )
    # EPOCHS: the one-program run of the SIGKILL test, compiled once for both.
    straight, straight_history = trainer.fit(state, x, y, epochs=EPOCHS, **fit)
    assert_bit_identical(resumed, straight)
    assert_same(history["loss"], straight_history["loss"])


def test_resume_with_other_settings_or_another_model(tmp_path):
    trainer, state, x, y, fit = (common()[k] for k in ("trainer", "state", "x", "y", "FIT"))
    trainer.fit(state, x, y, epochs=1, checkpoint=tmp_path, **fit)
    resume = nn.Checkpointing(tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"cannot resume exactly from .*batch_size=8 then, 16 now"):
        trainer.fit(state, x, y, epochs=2, checkpoint=resume, **{**fit, "batch_size": 16})
    other = nn.Trainer(nn.Dense(1), "mse", "sgd")
    with pytest.raises(nn.CheckpointError, match=r"cannot resume: .*does not match"):
        other.fit(
            other.init(jax.random.key(0), x),
            x,
            y,
            epochs=2,
            checkpoint=resume,
            verbose=0,
        )


def test_a_checkpoint_directory_belongs_to_one_run(tmp_path):
    """A fresh run refuses a used directory; a resume refuses another run's files, a
    total below the epochs saved, and files that are not files."""
    trainer, state, x, y, fit = (common()[k] for k in ("trainer", "state", "x", "y", "FIT"))
    fit = {**fit, "verbose": 2}  # epoch by epoch, as every checkpointed run
    trainer.fit(state, x, y, epochs=2, checkpoint=tmp_path, **fit)
    with pytest.raises(ValueError, match=r"already holds 2 checkpoint\(s\) of an earlier run"):
        trainer.fit(state, x, y, epochs=1, checkpoint=tmp_path, **fit)
    other_seed = trainer.init(jax.random.key(7), x)
    again = nn.Checkpointing(tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"belongs to another run \(another initial state:"):
        trainer.fit(other_seed, x, y, epochs=3, checkpoint=again, **fit)
    with pytest.raises(ValueError, match=r"belongs to another run \(another training data:"):
        trainer.fit(state, x + 1, y, epochs=3, checkpoint=again, **fit)
    with pytest.raises(ValueError, match=r"epochs=1: the checkpoint .* already trained 2 epochs"):
        trainer.fit(state, x, y, epochs=1, checkpoint=again, **fit)
    os.mkfifo(tmp_path / "epoch_000009.safetensors")  # would block open() for ever
    with pytest.warns(UserWarning, match=r"epoch_000009.safetensors'.*not a regular file"):
        _, history = trainer.fit(state, x, y, epochs=3, checkpoint=again, **fit)
    assert history.epochs == 3
    os.unlink(tmp_path / "epoch_000009.safetensors")

    fresh = nn.Checkpointing(tmp_path, overwrite=True)
    trainer.fit(other_seed, x, y, epochs=1, checkpoint=fresh, **fit)
    assert sorted(os.listdir(tmp_path)) == ["epoch_000001.safetensors"]
    with pytest.raises(ValueError, match=r"resume=True continues .* pass one of them"):
        nn.Checkpointing(tmp_path, resume=True, overwrite=True)


def test_resume_into_an_empty_directory_starts_afresh(tmp_path):
    trainer, state, x, y, fit = (common()[k] for k in ("trainer", "state", "x", "y", "FIT"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed, _ = trainer.fit(
            state,
            x,
            y,
            epochs=EPOCHS,  # as in the tests above: their one-program run is reused
            checkpoint=nn.Checkpointing(tmp_path / "new", resume=True),
            **fit,
        )
    assert_bit_identical(resumed, trainer.fit(state, x, y, epochs=EPOCHS, **fit)[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every": 0}, r"Checkpointing: every must be a positive int, got 0"),
        ({"keep": -1}, r"Checkpointing: keep must be a positive int, got -1"),
        ({"monitor": 3}, r"Checkpointing: monitor must be the name of a log"),
        ({"mode": "up"}, r"Checkpointing: mode must be one of 'auto', 'min', 'max'; got 'up'"),
    ],
)
def test_bad_checkpoint_settings(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        nn.Checkpointing(tmp_path, **kwargs)


def test_checkpoint_monitor_must_be_a_log(tmp_path):
    trainer, state, x, y, fit = (common()[k] for k in ("trainer", "state", "x", "y", "FIT"))
    settings = nn.Checkpointing(tmp_path, monitor="val_auc")
    with pytest.raises(ValueError, match=r"Checkpointing monitor='val_auc' is not one of the logs"):
        trainer.fit(state, x, y, epochs=1, checkpoint=settings, **fit)
    with pytest.raises(TypeError, match=r"checkpoint must be a directory or a jaxnn.Checkpointing"):
        trainer.fit(state, x, y, epochs=1, checkpoint=3, **fit)
