"""Keras 3 on the JAX backend: ``model.compile`` then ``model.fit``.

Keras compiles its train step with XLA by default (``jit_compile="auto"``). Its
documentation recommends ``steps_per_execution`` for small models, whose steps are
bound by Python overhead: several batches then run in one compiled call. Both the
default and ``steps_per_execution`` (one whole epoch per call) are timed.
"""

from __future__ import annotations

import os

from benchmarks.peers import common as c

LIBRARY = "keras"
LABEL = "Keras 3 (JAX)"


def _keras():
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(
            f"Keras was already imported with the {keras.backend.backend()!r} backend; "
            "run this benchmark in a fresh process."
        )
    return keras


def _fit_impls(build, loss, x, y, batch, epochs, steps, spe_values, shuffle):
    keras = _keras()
    impls = []
    for spe in spe_values:
        keras.utils.set_random_seed(0)
        model = build(keras)
        model.compile(
            optimizer=keras.optimizers.Adam(c.LEARNING_RATE), loss=loss, steps_per_execution=spe
        )

        def run(model=model):
            model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=shuffle, verbose=0)

        label = "Keras 3: model.fit" + (f", steps_per_execution={spe}" if spe > 1 else "")
        impls.append(c.Timed(label, run, steps))
    return impls


def seed() -> list[c.Timed]:
    """``fit(epochs=100, batch_size=10)`` on the tutorial's data, sigmoid + BCE."""

    def build(keras):
        return keras.Sequential(
            [
                keras.Input((c.SEED_FEATURES,)),
                keras.layers.Dense(c.SEED_HIDDEN, activation="relu"),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )

    x, y = c.seed_data()
    per_epoch = c.SEED_N // c.SEED_BATCH
    return _fit_impls(
        build,
        "binary_crossentropy",
        x,
        y,
        c.SEED_BATCH,
        c.SEED_EPOCHS,
        c.SEED_STEPS,
        (1, per_epoch),
        shuffle=True,
    )


def _classifier(build, x, y, steps):
    import numpy as np

    reps = (steps,) + (1,) * (x.ndim - 1)
    xs, ys = np.tile(x, reps), np.tile(y, steps)  # ``steps`` batches, one epoch
    return _fit_impls(
        build,
        "sparse_categorical_crossentropy",
        xs,
        ys,
        len(x),
        1,
        steps,
        (1,),
        shuffle=False,
    )


def mlp(steps: int) -> list[c.Timed]:
    """One epoch of ``steps`` batches of 256 (the same batch repeated, not shuffled)."""

    def build(keras):
        layers = [keras.Input((c.MLP_SIZES[0],))]
        layers += [keras.layers.Dense(w, activation="relu") for w in c.MLP_SIZES[1:-1]]
        return keras.Sequential([*layers, keras.layers.Dense(c.MLP_SIZES[-1])])

    x, y = c.mlp_data()
    impls = _classifier(build, x, y, steps)
    return impls


def cnn(steps: int) -> list[c.Timed]:
    """One epoch of ``steps`` batches of 128 (the same batch repeated, not shuffled)."""

    def build(keras):
        L = keras.layers
        return keras.Sequential(
            [
                keras.Input((c.CNN_SIZE, c.CNN_SIZE, 1)),
                L.Conv2D(32, 3, padding="same", activation="relu"),
                L.MaxPooling2D(2),
                L.Conv2D(64, 3, padding="same", activation="relu"),
                L.MaxPooling2D(2),
                L.Flatten(),
                L.Dense(128, activation="relu"),
                L.Dense(c.CNN_CLASSES),
            ]
        )

    x, y = c.cnn_data()
    return _classifier(build, x, y, steps)
