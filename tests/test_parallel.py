"""Data parallelism on 8 virtual CPU devices, in a subprocess (the device count is
fixed when JAX starts): every device count gives the single-device result."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxnn as nn

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    import jaxnn as nn

    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    assert len(jax.devices()) == 8, jax.devices()

    compiles = []  # XLA compilations, counted with JAX's monitoring events
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kw: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None
    )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = (x.sum(axis=1, keepdims=True) > 0).astype(np.float32)

    def model(kind):
        if kind == "bn_dropout":
            return nn.Sequential(nn.Dense(8), nn.BatchNorm(), nn.Activation("relu"),
                                 nn.Dropout(0.25), nn.Dense(1, "sigmoid"))
        return nn.Sequential(nn.Dense(8, "relu"), nn.Dense(1, "sigmoid"))

    def run(kind, optimizer, devices):
        parallel = None if devices == 1 else nn.parallel.data_parallel(
            devices=jax.devices()[:devices])
        trainer = nn.Trainer(model(kind), "binary_crossentropy", optimizer, ["accuracy"],
                             parallel=parallel)
        state = trainer.init(jax.random.key(0), x)
        epochs, compiled = [], []
        class Record(nn.Callback):
            def on_epoch_end(self, epoch, logs, state):
                epochs.append(jax.tree.map(np.asarray, (state.params, state.model_state)))
                compiled.append(len(compiles))
        # batch 12 of 40 training examples: uneven over 8 devices and a partial last batch
        state, history = trainer.fit(state, x, y, epochs=3, batch_size=12, verbose=0,
                                     validation_split=0.2, callbacks=[Record()])
        if parallel is not None:
            for leaf in jax.tree.leaves(state):  # replicated on every device of the mesh
                assert len(leaf.sharding.device_set) == devices, leaf.sharding
        out = dict(epochs=epochs, history=history, compiled=compiled[-1] - compiled[0])
        if devices in (1, 8):  # uneven splits: 7 and 10 examples over 8 devices
            step_state, step_logs = trainer.train_step(state, x[:10], y[:10])
            out.update(
                evaluate=trainer.evaluate(state, x, y, batch_size=7),
                predict=np.asarray(trainer.predict(state, x, batch_size=7)),
                step=(jax.tree.map(np.asarray, step_state.params), float(step_logs["loss"])),
            )
        return out

    def same(a, b, what):
        # float32 reassociation: XLA sums the gradient and BatchNorm's statistics per
        # device and then across devices, in another order than one device does.
        for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(p, q, rtol=2e-5, atol=2e-6, err_msg=what)

    for kind, optimizer in (("bn_dropout", "sgd"), ("plain", "adam")):
        counts = (1, 2, 4, 8) if kind == "bn_dropout" else (1, 8)
        one = run(kind, optimizer, 1)
        for devices in counts[1:]:
            many = run(kind, optimizer, devices)
            what = f"{kind} {optimizer} on {devices} devices"
            for epoch, (a, b) in enumerate(zip(one["epochs"], many["epochs"], strict=True)):
                same(a, b, f"{what}, epoch {epoch}")
            same(dict(one["history"]), dict(many["history"]), what + ", history")
            if devices == 8:
                same(one["evaluate"], many["evaluate"], what + ", evaluate")
                same(one["predict"], many["predict"], what + ", predict")
                same(one["step"], many["step"], what + ", train_step on 10 examples")
            assert many["compiled"] == 0, many["compiled"]  # one epoch program, reused
    assert compiles, "the compile listener saw no compilation at all"

    # Sharded parameters (FSDP-style): a (4 data x 2 fsdp) mesh; every array of at
    # least 1024 elements is split over "fsdp", params and Adam's moments alike.
    mesh = jax.sharding.Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "fsdp"))
    fsdp = nn.parallel.data_parallel(mesh, "data", param_axis="fsdp", min_size=1024)
    xs = rng.normal(size=(40, 16)).astype(np.float32)
    ys = xs.sum(axis=1, keepdims=True)
    wide = lambda: nn.Sequential(nn.Dense(64, "relu"), nn.Dense(64, "relu"), nn.Dense(1))
    one, split = nn.Trainer(wide(), "mse", "adam"), nn.Trainer(wide(), "mse", "adam", parallel=fsdp)
    a, b = one.init(jax.random.key(0), xs), split.init(jax.random.key(0), xs)

    def bytes_on_device_0(tree):
        device = jax.devices()[0]
        return sum(s.data.nbytes for leaf in jax.tree.leaves(tree)
                   for s in leaf.addressable_shards if s.device == device)

    for before in (True, False):
        big = [(p, q) for p, q in zip(jax.tree.leaves((a.params, a.opt_state)),
                                     jax.tree.leaves((b.params, b.opt_state)), strict=True)
               if p.size >= 1024]
        assert len(big) == 2 * 3, len(big)  # two kernels, each with mu and nu
        for p, q in big:  # each device holds half of every large array
            assert bytes_on_device_0(q) * 2 == p.nbytes, (q.shape, q.sharding)
        if before:
            a, history_a = one.fit(a, xs, ys, epochs=3, batch_size=8, verbose=0)
            b, history_b = split.fit(b, xs, ys, epochs=3, batch_size=8, verbose=0)
    same(a.params, b.params, "FSDP params")
    same(dict(history_a), dict(history_b), "FSDP history")

    # By default (split_optimizer) params stay whole on every device and only the
    # large optimizer-state arrays are split over the batch axis: each device updates
    # an eighth of each large kernel; training still equals one device.
    zero = nn.Trainer(wide(), "mse", "adam",
                      parallel=nn.parallel.data_parallel(min_size=1024))
    z = zero.init(jax.random.key(0), xs)
    moments = [q for q in jax.tree.leaves(z.opt_state) if q.size >= 1024]
    assert len(moments) == 4 and all(bytes_on_device_0(q) * 8 == q.nbytes for q in moments)
    assert all(q.sharding.is_fully_replicated for q in jax.tree.leaves(z.params))
    z, history_z = zero.fit(z, xs, ys, epochs=3, batch_size=8, verbose=0)
    assert all(q.sharding.is_fully_replicated for q in jax.tree.leaves(z.params))
    same(a.params, z.params, "split optimizer params")
    same(dict(history_a), dict(history_z), "split optimizer history")

    # One all-reduce a step: the gradients, the loss sums and the example count that
    # turns the sum into a mean travel together (a collective is a barrier of all the
    # devices; the count once had its own, before the backward pass).
    import re
    dp = nn.parallel.data_parallel()
    plain = nn.Trainer(wide(), "mse", "adam", parallel=dp)
    batch = jax.device_put((xs, ys, np.ones(40, np.float32)), dp.batch_sharding())
    step = jax.jit(lambda s, b: plain.programs.step(s, *b, b[2], jax.random.key(0)))
    hlo = step.lower(plain.init(jax.random.key(0), xs), batch).compile().as_text()
    found = re.findall(r" (all-reduce|all-gather|reduce-scatter)(?:-start)?[(]", hlo)
    assert found == ["all-reduce"], found

    # A checkpoint of the split state on 8 devices restores onto 4 devices and onto
    # one (restore places each array as the state it is given), and training goes on
    # as it goes on the 8.
    import os, tempfile
    path = os.path.join(tempfile.mkdtemp(), "eight.safetensors")
    nn.checkpoint.save(path, b)
    four = nn.Trainer(wide(), "mse", "adam",
                      parallel=nn.parallel.data_parallel(devices=jax.devices()[:4]))
    go_on = dict(epochs=1, batch_size=8, verbose=0)
    reference, _ = split.fit(b, xs, ys, **go_on)
    for trainer in (four, one):
        restored = nn.checkpoint.restore(path, trainer.init(jax.random.key(1), xs))
        devices = {len(leaf.sharding.device_set) for leaf in jax.tree.leaves(restored.params)}
        assert devices == ({4} if trainer is four else {1}), devices
        continued, _ = trainer.fit(restored, xs, ys, **go_on)
        same(continued.params, reference.params, f"restored on {devices} devices")
    # The same through orbax-checkpoint (the [distributed] extra), each device's
    # shards written by its own process.
    orbax_path = os.path.join(tempfile.mkdtemp(), "eight.orbax")
    nn.sharded_checkpoint.save(orbax_path, b, {"epoch": 3})
    for trainer in (four, one):
        restored = nn.sharded_checkpoint.restore(orbax_path, trainer.init(jax.random.key(1), xs))
        continued, _ = trainer.fit(restored, xs, ys, **go_on)
        same(continued.params, reference.params, "restored from orbax")
    print("DATA-PARALLEL-OK")
    """
)


def run_on_eight_devices(script: str, marker: str) -> None:
    """Runs ``script`` in a fresh process with 8 virtual CPU devices; it must print
    ``marker``."""
    env = {
        **os.environ,
        # The suite's compile settings (conftest.py), plus 8 virtual devices.
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    assert marker in result.stdout


def test_data_parallel_equals_one_device_fsdp_splits_params_checkpoints_move_meshes():
    run_on_eight_devices(SCRIPT, "DATA-PARALLEL-OK")


MEMBERS_SCRIPT = textwrap.dedent(
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
    run_on_eight_devices(MEMBERS_SCRIPT, "SHARDED-OK")


def test_bad_meshes_and_settings_fail_before_compiling():
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match=r"data_parallel: the mesh has no axis 'data'; its axes"):
        nn.parallel.data_parallel(mesh)
    with pytest.raises(ValueError, match=r"no axis 'model'.*Pass param_axis= one of those"):
        nn.parallel.data_parallel(mesh, axis="batch", param_axis="model")
    with pytest.raises(ValueError, match=r"data_parallel: min_size must be a positive int"):
        nn.parallel.data_parallel(mesh, axis="batch", param_axis="batch", min_size=0)
    assert nn.parallel.data_parallel(mesh, axis="batch").size == 1
    explicit = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    with pytest.raises(ValueError, match=r"mesh axis 'data' is Explicit.*AxisType.Auto"):
        nn.parallel.data_parallel(explicit)
    with pytest.raises(TypeError, match=r"data_parallel: mesh must be a jax.sharding.Mesh"):
        nn.parallel.data_parallel("data")
    with pytest.raises(TypeError, match=r"Trainer: parallel must be None or a jaxnn.parallel"):
        nn.Trainer(nn.Dense(1), "mse", "sgd", parallel=mesh)
    with pytest.raises(ValueError, match=r"shard_members: the mesh has no axis 'members'"):
        nn.parallel.shard_members(np.zeros((4, 2)), mesh, "members")
    with pytest.raises(ValueError, match=r"data_parallel: split_optimizer must be a bool"):
        nn.parallel.data_parallel(mesh, axis="batch", split_optimizer="yes")


def test_one_device_data_parallel_equals_no_parallel(key):
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    plain = nn.Trainer(nn.Dense(1), "mse", "sgd")
    parallel = nn.Trainer(nn.Dense(1), "mse", "sgd", parallel=nn.parallel.data_parallel())
    a, _ = plain.fit(plain.init(key, x), x, y, epochs=2, batch_size=6, verbose=0)
    b, _ = parallel.fit(parallel.init(key, x), x, y, epochs=2, batch_size=6, verbose=0)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)


# ----------------------------------------------------------------- several processes

PROCESS = textwrap.dedent(
    """
    import sys
    import jaxnn as nn

    process, processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    nn.parallel.initialize(f"localhost:{port}", processes, process, local_devices=2,
                           timeout_s=60)
    if len(sys.argv) > 5 and process == 1:
        import os
        os._exit(3)  # a peer that dies after joining
    import jax, numpy as np
    assert jax.process_count() == processes and jax.device_count() == 2 * processes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    model = nn.Sequential(nn.Dense(8), nn.BatchNorm(), nn.Activation("relu"),
                          nn.Dropout(0.2), nn.Dense(1))
    trainer = nn.Trainer(model, "mse", "sgd", parallel=nn.parallel.data_parallel())
    state = trainer.init(jax.random.key(0), x)
    state, history = trainer.fit(state, x, y, epochs=2, batch_size=12, verbose=2,
                                 validation_split=0.2)
    predictions = np.asarray(trainer.predict(state, x, batch_size=16))

    # Streamed: each process reads only its own 6 rows of every 12-row batch.
    own = nn.ArrayStream(x[:36], y[:36], batch_size=6, shuffle=False, shard="process")
    assert own.shard == (process, 2) and len(own) == 3
    try:
        trainer.fit(state, own, None, verbose=0)
        raise AssertionError("a stream without steps_per_epoch was accepted")
    except ValueError as e:
        assert "every process must run the same number of steps" in str(e), e
    try:  # 5 rows do not split over a process's 2 devices
        trainer.fit(state, lambda: iter([(x[:5], y[:5])]), None, steps_per_epoch=1, verbose=0)
        raise AssertionError("a batch that does not split over the devices was accepted")
    except ValueError as e:
        assert "must be a multiple of its number of devices" in str(e), e
    orbax = nn.Checkpointing(f"{out}.ckpt", format="orbax")  # each process its shards
    streamed, streamed_history = trainer.fit(trainer.init(jax.random.key(0), x), own, None,
                                             epochs=2, steps_per_epoch=3, verbose=0,
                                             checkpoint=orbax)
    evaluated = trainer.evaluate(streamed, own, steps=3)
    own_predictions = trainer.predict(streamed, own, steps=3)

    np.save(f"{out}.{process}.npy", own_predictions)
    if nn.parallel.is_main_process():
        leaves = [np.asarray(a) for a in jax.tree.leaves((state.params, state.model_state))]
        leaves += [np.asarray(a) for a in jax.tree.leaves(streamed.params)]
        np.savez(out, predictions=predictions, loss=history["loss"],
                 val_loss=history["val_loss"], streamed_loss=streamed_history["loss"],
                 evaluated=evaluated["loss"], **{f"leaf{i}": a for i, a in enumerate(leaves)})
    """
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


RESUME = textwrap.dedent(
    """
    import sys
    import jaxnn as nn

    process, processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    nn.parallel.initialize(f"localhost:{port}", processes, process, local_devices=2,
                           timeout_s=60)
    import jax, numpy as np
    assert jax.process_count() == processes and jax.device_count() == 2 * processes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    model = nn.Sequential(nn.Dense(8), nn.BatchNorm(), nn.Activation("relu"),
                          nn.Dropout(0.2), nn.Dense(1))
    trainer = nn.Trainer(model, "mse", "sgd", parallel=nn.parallel.data_parallel())
    # Each process resumes its own stream from its own position (issue 10).
    class Rows:  # an endless iterator with a position, as grain's are
        def __init__(self):
            self.i = 3 * process  # the processes are at different batches
        def __iter__(self):
            return self
        def __next__(self):
            b, self.i = self.i % 6, self.i + 1
            return x[6 * b : 6 * b + 6], y[6 * b : 6 * b + 6]
        def get_state(self):
            return {"process": process, "i": self.i}
        def set_state(self, state):
            assert state["process"] == process, f"process {process} got {state}"
            self.i = state["i"]

    if process == 0:  # a slow writer: the others must wait for its checkpoint files
        import time
        from jaxnn import checkpoint as checkpoint_lib
        save = checkpoint_lib.save
        checkpoint_lib.save = lambda *args, **kw: (time.sleep(0.5), save(*args, **kw))[1]
    steady = dict(steps_per_epoch=2, verbose=0)
    start = trainer.init(jax.random.key(1), x)
    straight, _ = trainer.fit(start, Rows(), None, epochs=3, **steady)
    trainer.fit(start, Rows(), None, epochs=2, checkpoint=f"{out}.positions", **steady)
    again = nn.Checkpointing(f"{out}.positions", resume=True)
    resumed, _ = trainer.fit(start, Rows(), None, epochs=3, checkpoint=again, **steady)
    for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Processes that find different checkpoints (a directory not shared) are refused
    # before they train out of step.
    apart = nn.Checkpointing(f"{out}.positions" if process == 0 else f"{out}.empty",
                             resume=True)
    try:
        trainer.fit(start, Rows(), None, epochs=3, checkpoint=apart, **steady)
    except ValueError as e:
        assert "process 0 at epoch 3, process 1 at epoch 0" in str(e), e
    else:
        raise AssertionError("resuming from different checkpoints was not refused")
    """
)


def run_processes(script: str, processes: int, *args: str, timeout: float = 180) -> list[str]:
    """Starts ``processes`` copies of ``script`` (process index, count, a free port and
    ``args`` on their command line) and waits for all. The first to fail, or the
    timeout, kills the others and raises with that process's output: never a hang,
    never a leftover process."""
    import time

    port = str(free_port())
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    # The suite's compile settings, without a device count (initialize sets it).
    flags = os.environ.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if "device_count" not in f)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i), str(processes), port, *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(processes)
    ]
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            failed = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed:
                i = failed[0]
                raise AssertionError(
                    f"process {i} of {processes} exited with code {procs[i].returncode}; the "
                    f"others were stopped. Its output:\n{procs[i].stdout.read()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{processes} processes still running after {timeout} s")
            time.sleep(0.1)
        outputs = [p.stdout.read() for p in procs]
        for i, p in enumerate(procs):
            assert p.returncode == 0, f"process {i} exited with {p.returncode}:\n{outputs[i]}"
        return outputs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdout.close()


def test_two_processes_train_as_one(tmp_path, key):
    out = tmp_path / "two.npz"
    outputs = run_processes(PROCESS, 2, str(out))
    # Progress is printed once, by process 0.
    assert [o.count("Epoch 2/2") for o in outputs] == [1, 0], outputs
    got = np.load(out)

    # The same training on one device, in this process.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    model = nn.Sequential(
        nn.Dense(8), nn.BatchNorm(), nn.Activation("relu"), nn.Dropout(0.2), nn.Dense(1)
    )
    trainer = nn.Trainer(model, "mse", "sgd")
    state, history = trainer.fit(
        trainer.init(jax.random.key(0), x),
        x,
        y,
        epochs=2,
        batch_size=12,
        verbose=0,
        validation_split=0.2,
    )
    # Streamed, each process its half of each batch: the same as the whole batches here.
    streamed, streamed_history = trainer.fit(
        trainer.init(jax.random.key(0), x),
        x[:36],
        y[:36],
        epochs=2,
        batch_size=12,
        shuffle=False,
        verbose=0,
    )
    leaves = jax.tree.leaves((state.params, state.model_state)) + jax.tree.leaves(streamed.params)
    np.testing.assert_allclose(got["streamed_loss"], streamed_history["loss"], rtol=2e-5)
    np.testing.assert_allclose(
        got["evaluated"], trainer.evaluate(streamed, x[:36], y[:36])["loss"], rtol=2e-5
    )
    # Their orbax checkpoint restores into one process, one device.
    restored = nn.sharded_checkpoint.restore(
        f"{out}.ckpt/epoch_000002.orbax", trainer.init(jax.random.key(0), x)
    )
    n = len(jax.tree.leaves((state.params, state.model_state)))
    for i, leaf in enumerate(jax.tree.leaves(restored.params)):
        np.testing.assert_array_equal(got[f"leaf{n + i}"], leaf)
    outputs = np.asarray(trainer.predict(streamed, x[:36])).reshape(3, 12, 1)
    for process in range(2):  # each process got the outputs of its own rows
        mine = outputs[:, 6 * process : 6 * process + 6].reshape(18, 1)
        np.testing.assert_allclose(np.load(f"{out}.{process}.npy"), mine, rtol=2e-5, atol=2e-6)
    # float32 reassociation: gloo sums the 4 devices' partial gradients in its order.
    for i, leaf in enumerate(leaves):
        np.testing.assert_allclose(got[f"leaf{i}"], leaf, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(got["loss"], history["loss"], rtol=2e-5)
    np.testing.assert_allclose(got["val_loss"], history["val_loss"], rtol=2e-5)
    np.testing.assert_allclose(got["predictions"], trainer.predict(state, x), rtol=2e-5, atol=2e-6)


def test_a_dead_peer_fails_fast_with_its_exit_code(tmp_path):
    with pytest.raises(AssertionError, match=r"process 1 of 2 exited with code 3"):
        run_processes(PROCESS, 2, str(tmp_path / "never.npz"), "die", timeout=120)


def test_initialize_checks_its_arguments():
    with pytest.raises(ValueError, match=r"process_id must lie in \[0, 2\).*got 2"):
        nn.parallel.initialize("localhost:1", 2, 2)
    with pytest.raises(ValueError, match=r"parallel.initialize: num_processes must be a positive"):
        nn.parallel.initialize("localhost:1", 0, 0)


def test_each_process_resumes_its_own_stream(tmp_path):
    # Process 0 alone writes the safetensors checkpoints, slowly here: a process that
    # did not wait for them resumed from an older epoch than process 0 (a wrong stream
    # position, then collectives that never match: a hang).
    run_processes(RESUME, 2, str(tmp_path / "resume"), timeout=90)
