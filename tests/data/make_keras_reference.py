"""Records Keras 3's numbers into ``tests/data/keras_reference.npz``, for the parity tests.

``tests/test_optimizers.py`` compares jaxnn against the stored file, so the tests need
no Keras. To regenerate it (a separate environment keeps Keras out of jaxnn's)::

    python3 -m venv /tmp/kerasenv
    /tmp/kerasenv/bin/pip install "keras>=3" "jax==0.10.2" "jaxlib==0.10.2" numpy
    KERAS_BACKEND=jax /tmp/kerasenv/bin/python tests/data/make_keras_reference.py

What it records (every array under a ``/``-separated key):

* ``opt/<name>/<config>/<scale>/updates``: 20 steps of each Keras optimizer on fixed
  gradients of size ~1e-6, ~1 and ~1e3 (``grads/<scale>``, from the params
  ``params0``), in float64: the change of every param at every step,
  ``(20, 8)``, params flattened as ``kernel (3, 2)`` then ``bias (2,)``. Configs:
  Keras's defaults, each name's own options, and the base arguments
  (``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``weight_decay``,
  ``gradient_accumulation_steps``).
* ``loss/<name>/...``: each loss with sample weights, from the loss object and from
  ``model.evaluate`` of an identity model in batches of 4 (a short last batch).
* ``fit/<case>/...``: the tutorial network (Dense(32, relu), Dense(1, sigmoid),
  binary cross-entropy, 100x4 data) trained by ``model.fit(shuffle=False)`` for 20
  epochs from recorded initial weights: the per-epoch loss and the final weights;
  ``tutorial`` is Adam with batch 10, ``weighted`` SGD with sample weights and
  batch 32 (a short last batch).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("keras_reference.npz")
STEPS = 20
SCALES = {"small": 1e-6, "normal": 1.0, "large": 1e3}
BASE_CONFIGS = {
    "default": {},
    "clipnorm": {"clipnorm": 0.5},
    "clipvalue": {"clipvalue": 0.5},
    "global_clipnorm": {"global_clipnorm": 0.5},
    "weight_decay": {"weight_decay": 0.05},
    "accumulate": {"gradient_accumulation_steps": 3},
}
OWN_CONFIGS = {
    "adam": {"amsgrad": {"amsgrad": True}, "custom": {"beta_1": 0.8, "epsilon": 1e-3}},
    "adamw": {"custom": {"weight_decay": 0.1, "learning_rate": 0.01}},
    "nadam": {"custom": {"beta_1": 0.8, "epsilon": 1e-3}},
    "lion": {"custom": {"beta_1": 0.5, "beta_2": 0.9}},
    "adamax": {"custom": {"beta_2": 0.9, "epsilon": 1e-3}},
    "adadelta": {"custom": {"rho": 0.5, "learning_rate": 1.0}},
    "ftrl": {
        "custom": {
            "learning_rate_power": -0.7,
            "l1_regularization_strength": 0.001,
            "l2_regularization_strength": 0.01,
            "l2_shrinkage_regularization_strength": 0.01,
            "beta": 0.1,
        }
    },
    "lamb": {"custom": {"beta_1": 0.8, "epsilon": 1e-3}},
    "sgd": {
        "momentum": {"momentum": 0.9},
        "nesterov": {"momentum": 0.9, "nesterov": True},
    },
    "rmsprop": {
        "momentum": {"momentum": 0.9},
        "centered": {"centered": True, "momentum": 0.5},
    },
    "adagrad": {"custom": {"initial_accumulator_value": 0.5, "epsilon": 1e-3}},
}
KERAS_CLASSES = {
    "adam": "Adam",
    "adamw": "AdamW",
    "nadam": "Nadam",
    "lion": "Lion",
    "adamax": "Adamax",
    "adadelta": "Adadelta",
    "ftrl": "Ftrl",
    "lamb": "Lamb",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
}
LOSSES = {
    "mse": "MeanSquaredError",
    "mae": "MeanAbsoluteError",
    "huber": "Huber",
    "binary_crossentropy": "BinaryCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
}


def configs(name: str) -> dict[str, dict]:
    """Every config recorded for one optimizer name."""
    return {**BASE_CONFIGS, **OWN_CONFIGS.get(name, {})}


def record_fit(keras, out: dict) -> None:
    """The tutorial network trained by Keras's fit, in float32."""
    rng = np.random.default_rng(1)
    x = rng.random((100, 4), dtype=np.float32)
    y = rng.integers(0, 2, size=(100, 1)).astype(np.float32)
    w = rng.uniform(0.2, 2.0, size=100).astype(np.float32)
    cases = {
        "tutorial": dict(optimizer="adam", batch_size=10, sample_weight=None),
        "weighted": dict(optimizer="sgd", batch_size=32, sample_weight=w),
    }
    for case, c in cases.items():
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        model.compile(optimizer=c["optimizer"], loss="binary_crossentropy")
        initial = [np.asarray(v) for v in model.get_weights()]
        history = model.fit(
            x,
            y,
            sample_weight=c["sample_weight"],
            batch_size=c["batch_size"],
            epochs=20,
            shuffle=False,
            verbose=0,
        )
        final = [np.asarray(v) for v in model.get_weights()]
        out[f"fit/{case}/x"] = x
        out[f"fit/{case}/y"] = y
        if c["sample_weight"] is not None:
            out[f"fit/{case}/sample_weight"] = w
        out[f"fit/{case}/loss"] = np.asarray(history.history["loss"], np.float64)
        for i, (a, b) in enumerate(zip(initial, final, strict=True)):
            out[f"fit/{case}/initial/{i}"] = a
            out[f"fit/{case}/final/{i}"] = b


def record_losses(keras, out: dict) -> None:
    """Each loss with sample weights: the loss object, and evaluate in batches of 4."""
    rng = np.random.default_rng(2)
    n, classes = 10, 3
    w = rng.uniform(0.2, 2.0, size=n).astype(np.float32)
    logits = rng.normal(size=(n, classes)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, classes, size=n)
    data = {
        "mse": (rng.normal(size=(n, 2)), rng.normal(size=(n, 2))),
        "mae": (rng.normal(size=(n, 2)), rng.normal(size=(n, 2))),
        "huber": (rng.normal(size=(n, 2)) * 2, rng.normal(size=(n, 2))),
        "binary_crossentropy": (
            rng.integers(0, 2, size=(n, 1)),
            rng.uniform(0.05, 0.95, size=(n, 1)),
        ),
        "categorical_crossentropy": (np.eye(classes)[labels], probs),
        "sparse_categorical_crossentropy": (labels, probs),
    }
    for name, (y_true, y_pred) in data.items():
        y_true = np.asarray(y_true, np.float32)
        y_pred = np.asarray(y_pred, np.float32)
        fn = getattr(keras.losses, LOSSES[name])()
        model = keras.Sequential([keras.Input(y_pred.shape[1:]), keras.layers.Identity()])
        model.compile(loss=getattr(keras.losses, LOSSES[name])())
        evaluated = model.evaluate(y_pred, y_true, sample_weight=w, batch_size=4, verbose=0)
        out[f"loss/{name}/y_true"] = y_true
        out[f"loss/{name}/y_pred"] = y_pred
        out[f"loss/{name}/sample_weight"] = w
        out[f"loss/{name}/call"] = np.float64(fn(y_true, y_pred, sample_weight=w))
        out[f"loss/{name}/evaluate"] = np.float64(evaluated)


def record_optimizers(keras, jax, out: dict) -> None:
    """20 steps of every optimizer and config on three gradient scales, in float64."""
    rng = np.random.default_rng(3)
    shapes = [(3, 2), (2,)]
    params0 = [rng.normal(size=s) * 0.5 for s in shapes]
    out["params0/kernel"], out["params0/bias"] = params0
    grads = {}
    for scale_name, scale in SCALES.items():
        grads[scale_name] = [rng.normal(size=(STEPS, *s)) * scale for s in shapes]
        out[f"grads/{scale_name}/kernel"], out[f"grads/{scale_name}/bias"] = grads[scale_name]
    for name, cls in KERAS_CLASSES.items():
        for config, kwargs in configs(name).items():
            for scale_name, (gk, gb) in grads.items():
                opt = getattr(keras.optimizers, cls)(**kwargs)
                variables = [keras.Variable(p, dtype="float64") for p in params0]
                opt.build(variables)
                opt_vars = [v.value for v in opt.variables]
                apply = jax.jit(opt.stateless_apply)
                values = [v.value for v in variables]
                updates = []
                for t in range(STEPS):
                    new, opt_vars = apply(opt_vars, [gk[t], gb[t]], values)
                    flat_new = np.concatenate([np.ravel(v) for v in new])
                    flat_old = np.concatenate([np.ravel(v) for v in values])
                    updates.append(flat_new - flat_old)
                    values = new
                out[f"opt/{name}/{config}/{scale_name}/updates"] = np.stack(updates)
        print(f"recorded {name}", file=sys.stderr)


def main() -> None:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit("run with KERAS_BACKEND=jax")
    out: dict[str, np.ndarray] = {"keras_version": np.asarray(keras.__version__)}
    record_fit(keras, out)
    record_losses(keras, out)
    jax.config.update("jax_enable_x64", True)
    keras.config.set_floatx("float64")
    record_optimizers(keras, jax, out)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(out)} arrays)", file=sys.stderr)


if __name__ == "__main__":
    main()
