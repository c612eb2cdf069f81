"""Export of a trained model's inference function with jax.export (StableHLO)."""

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
    with pytest.raises(ValueError, match=r"is not a serialised jax.export program"):
        load_exported(bad)


LOAD_WITH_JAX_ONLY = r"""
import sys
import jax, numpy as np
exported = jax.export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
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
