"""Export of a trained model's inference function with jax.export (StableHLO)."""

import hashlib
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn
from jaxnn.export import export_model, load_exported, save_exported


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = nn.Sequential(
        nn.Dense(16), nn.BatchNorm(), nn.Activation("relu"), nn.Dense(1, "sigmoid")
    )
    trainer = nn.Trainer(model, "binary_crossentropy", "adam")
    state = trainer.init(jax.random.key(0), x)
    # One epoch of steps (one small compiled program, not fit's): trained params and
    # BatchNorm statistics that differ from their initial values.
    for rows in np.split(np.arange(64), 4):
        state, _ = trainer.train_step(state, x[rows], y[rows])
    assert not np.allclose(state.model_state["batch_norm"]["mean"], 0.0)
    return trainer, state, x


def test_round_trip_equals_predict_for_any_batch(trained, tmp_path):
    trainer, state, x = trained
    path = tmp_path / "model.jaxexport"
    export_model(trainer, state, jax.ShapeDtypeStruct((1, 5), jnp.float32), path)
    f = load_exported(path)
    for n in (1, 7, 64):
        # The same XLA computation with the weights as constants: constant folding may
        # reorder float32 sums, so allow a few ulps.
        np.testing.assert_allclose(f(x[:n]), trainer.predict(state, x[:n]), rtol=1e-6, atol=1e-7)
    assert f.exported.in_avals[0].shape[1:] == (5,)
    assert jax.jit(f)(x).shape == (64, 1)


def test_fixed_batch_rejects_other_sizes(trained):
    trainer, state, x = trained
    exported = export_model(trainer, state, x[:8], symbolic_batch=False)
    assert exported.call(x[:8]).shape == (8, 1)
    with pytest.raises(ValueError, match=r"shape"):
        exported.call(x[:9])


def test_bare_params_and_bad_inputs(tmp_path):
    model = nn.Dense(2)
    params, _ = model.init(jax.random.key(0), jnp.zeros((1, 3)))
    out = export_model(model, params, jnp.zeros((1, 3))).call(jnp.ones((4, 3)))
    np.testing.assert_allclose(out, model.apply(params, {}, jnp.ones((4, 3)))[0], rtol=1e-6)
    with pytest.raises(TypeError, match=r"state_or_params must be a TrainState or a params"):
        export_model(model, [params], jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"x_spec has a scalar leaf"):
        export_model(model, params, jnp.zeros(()))
    bad = tmp_path / "bad.jaxexport"
    bad.write_bytes(b"not a program")
    with pytest.raises(ValueError, match=r"has no jaxnn checksum .*Export it again"):
        load_exported(bad)
    # A checksum that matches bytes that are no program: JAX's reader's error, wrapped.
    payload = b"not a program"
    bad.write_bytes(payload + b"JAXNNX1\0" + hashlib.sha256(payload).digest())
    with pytest.raises(ValueError, match=r"is not a serialised jax.export program"):
        load_exported(bad)


def test_every_flipped_byte_and_cut_is_refused_before_deserialising(tmp_path):
    """A file's bytes are checked against its SHA-256 before JAX reads any: a flip in
    the program (which could crash the process, or run with a changed weight), in the
    checksum or in the trailer is a ValueError that names the problem."""
    model = nn.Dense(2)
    params, _ = model.init(jax.random.key(0), jnp.zeros((1, 3)))
    path = tmp_path / "m.jaxexport"
    export_model(model, params, jnp.zeros((1, 3)), path)
    data = path.read_bytes()
    bad = tmp_path / "bad.jaxexport"
    # Every 7th byte of the program, and every byte of the 40-byte trailer (a full
    # sweep of all bytes passed too, but takes ten times as long).
    positions = [*range(0, len(data) - 40, 7), *range(len(data) - 40, len(data))]
    messages = []
    for i in positions:
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        bad.write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match=r"load_exported: .*(is damaged|has no jaxnn ch)") as e:
            load_exported(bad)
        messages.append("damaged" if "is damaged: the SHA-256" in str(e.value) else "missing")
    assert messages.count("missing") == 8  # the trailer's magic; every other flip: damaged
    for cut in (0, 1, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"(is damaged|has no jaxnn checksum)"):
            load_exported(bad)


def test_files_from_before_checksums_are_refused_with_the_fix(tmp_path):
    model = nn.Dense(2)
    params, _ = model.init(jax.random.key(0), jnp.zeros((1, 3)))
    old = tmp_path / "old.jaxexport"
    old.write_bytes(bytes(export_model(model, params, jnp.zeros((1, 3))).serialize()))
    with pytest.raises(
        ValueError,
        match=r"has no jaxnn checksum .*written before exports carried a checksum.*Export it "
        r"again with export_model\(\.\.\., path=\.\.\.\) or save_exported",
    ):
        load_exported(old)


def test_platforms_are_jax_names_and_one_name_is_one_platform():
    model = nn.Dense(2)
    params, _ = model.init(jax.random.key(0), jnp.zeros((1, 3)))
    x = jnp.zeros((1, 3))
    assert export_model(model, params, x, platforms="cpu").platforms == ("cpu",)
    assert export_model(model, params, x, platforms=["CPU", "tpu"]).platforms == ("cpu", "tpu")
    for platforms, error, match in [
        (
            "cpux",
            ValueError,
            r"export_model: unknown platform 'cpux'\. Did you mean 'cpu'\? JAX "
            r"exports for \['cpu', 'cuda', 'rocm', 'tpu'\]",
        ),
        ("gpu", ValueError, r"unknown platform 'gpu'\. 'gpu' is 'cuda' \(NVIDIA\) or 'rocm'"),
        (("cpu", "cpu"), ValueError, r"platform 'cpu' is named twice"),
        ((), ValueError, r"platforms is empty; name at least one of"),
        (5, TypeError, r"platforms must be a platform name or a sequence of them"),
        ([1], TypeError, r"platforms must be names such as 'cpu' or 'cuda', got int 1"),
    ]:
        with pytest.raises(error, match=match):
            export_model(model, params, x, platforms=platforms)


def test_no_absolute_source_paths_in_the_file(tmp_path):
    """JAX's locations name the source file of every operation; the file keeps only
    base names (dense.py), never the exporting machine's directories."""
    model = nn.Sequential(nn.Dense(4, "relu"), nn.Dense(2))
    params, _ = model.init(jax.random.key(0), jnp.zeros((1, 3)))
    path = tmp_path / "m.jaxexport"
    option = "jax_hlo_source_file_canonicalization_regex"
    before = getattr(jax.config, option)
    export_model(model, params, jnp.zeros((1, 3)), path)
    assert getattr(jax.config, option) == before  # the setting is given back
    data = path.read_bytes()
    assert b"dense.py" in data  # the locations are there, by base name
    package = os.path.dirname(os.path.dirname(os.path.abspath(nn.__file__)))
    for directory in {package, os.path.dirname(os.path.abspath(__file__)), os.getcwd()}:
        assert directory.encode() not in data
    assert b"/jaxnn/" not in data and b"site-packages" not in data


def test_save_exported_refuses_what_is_not_an_exported_program(tmp_path):
    model = nn.Dense(2)
    params, _ = model.init(jax.random.key(0), jnp.zeros((1, 3)))
    exported = export_model(model, params, jnp.zeros((1, 3)))
    with pytest.raises(
        TypeError,
        match=r"save_exported: exported must be a jax\.export\.Exported, got dict\. Make one "
        r"with export_model\(model, params, x_spec\)",
    ):
        save_exported(params, tmp_path / "m.jaxexport")
    save_exported(exported, tmp_path / "m.jaxexport")
    loaded = load_exported(tmp_path / "m.jaxexport")
    with pytest.raises(TypeError, match=r"for a function from load_exported, pass its \.exported"):
        save_exported(loaded, tmp_path / "again.jaxexport")
    with pytest.raises(TypeError, match=r"save_exported: path must be a file path, got int"):
        save_exported(exported, 3)
    assert sorted(os.listdir(tmp_path)) == ["m.jaxexport"]


LOAD_WITH_JAX_ONLY = r"""
import hashlib, sys
import jax, numpy as np
data = open(sys.argv[1], "rb").read()
payload, digest = data[:-40], data[-32:]  # as the module's docstring shows
assert data[-40:-32] == b"JAXNNX1\0" and hashlib.sha256(payload).digest() == digest
exported = jax.export.deserialize(bytearray(payload))
np.save(sys.argv[3], np.asarray(exported.call(np.load(sys.argv[2]))))
assert not any(name == "jaxnn" or name.startswith("jaxnn.") for name in sys.modules)
"""


def test_runs_in_a_fresh_process_without_jaxnn(trained, tmp_path):
    trainer, state, x = trained
    path = tmp_path / "model.jaxexport"
    save_exported(export_model(trainer, state, x), path)
    np.save(tmp_path / "x.npy", x[:10])
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_WITH_JAX_ONLY,
            str(path),
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), load_exported(path)(x[:10]))
