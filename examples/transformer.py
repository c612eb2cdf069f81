"""A small transformer learns to sort a sequence of digits.

Each example is 8 random digits; the target at position ``i`` is the ``i``-th smallest
of them. Every output depends on the whole sequence (which digits occur, and how
often), so the model must attend by content, and by position to place the result.

The model is built from public jaxnn pieces only: token and position ``Embedding``s
added with ``Parallel``, a stack of pre-norm ``TransformerBlock``s (``LayerNorm`` →
``MultiHeadAttention`` → residual, ``LayerNorm`` → MLP → residual) held by ``Repeat``
(stacked params, one ``lax.scan``), a final ``LayerNorm`` and a softmax ``Dense``.

    python examples/transformer.py          # full run: exits 1 below 99% test digit accuracy
    python examples/transformer.py --quick  # a few seconds, for CI
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn as nn
from jaxnn.layers.attention import MultiHeadAttention
from jaxnn.layers.embedding import Embedding
from jaxnn.layers.norm import LayerNorm
from jaxnn.repeat import Repeat

LENGTH = 8
DIGITS = 10
TARGET = 0.99


def TransformerBlock(
    features: int,
    num_heads: int,
    mlp_features: int,
    *,
    dropout_rate: float = 0.0,
    causal: bool = False,
    name: str | None = None,
) -> nn.Layer:
    """A pre-norm transformer block on ``(batch, seq, features)``, shape-preserving.

    ``x + MHA(LayerNorm(x))``, then ``x + MLP(LayerNorm(x))`` with a GELU MLP of
    ``mlp_features`` hidden units.

    Args:
        features: the model width (the input's last axis).
        num_heads: attention heads; must divide ``features``.
        mlp_features: the MLP's hidden width.
        dropout_rate: dropout on the attention weights and after each sub-block.
        causal: whether position ``i`` may only attend to positions ``<= i``.
        name: the name of this block inside a parent.

    Returns:
        A layer mapping ``(batch, seq, features)`` to the same shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> block = TransformerBlock(16, num_heads=4, mlp_features=32)
        >>> x = jnp.ones((2, 5, 16))
        >>> params, state = block.init(jax.random.key(0), x)
        >>> block.apply(params, state, x)[0].shape
        (2, 5, 16)
    """
    attention = nn.Sequential(
        LayerNorm(),
        MultiHeadAttention(num_heads, dropout_rate=dropout_rate, causal=causal),
        nn.Dropout(dropout_rate),
    )
    mlp = nn.Sequential(
        LayerNorm(),
        nn.Dense(mlp_features, "gelu"),
        nn.Dense(features),
        nn.Dropout(dropout_rate),
    )
    return nn.Sequential(
        nn.Residual(attention, name="attention"), nn.Residual(mlp, name="mlp"), name=name
    )


def Transformer(features: int, num_heads: int, num_layers: int) -> nn.Layer:
    """Digits ``(batch, LENGTH)`` to class probabilities ``(batch, LENGTH, DIGITS)``."""

    def positions(tokens: jax.Array) -> jax.Array:
        return jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)

    embed = nn.Parallel(
        Embedding(DIGITS, features, name="tokens"),
        nn.Sequential(positions, Embedding(LENGTH, features), name="positions"),
        merge="add",
    )
    return nn.Sequential(
        embed,
        Repeat(TransformerBlock(features, num_heads, 2 * features), num_layers, name="blocks"),
        LayerNorm(),
        nn.Dense(DIGITS, "softmax"),
    )


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random digit strings and the same digits sorted."""
    x = np.random.default_rng(seed).integers(0, DIGITS, (n, LENGTH)).astype(np.int32)
    return x, np.sort(x, axis=1)


def main(quick: bool) -> float:
    # Three epochs suffice: the first already passes the target; the cosine decay of
    # the learning rate to zero settles the model instead of leaving it to wander.
    train_n, epochs, batch_size = (1024, 3, 64) if quick else (8192, 3, 64)
    x, y = make_data(train_n, seed=0)
    x_test, y_test = make_data(2048, seed=1)

    model = Transformer(features=32, num_heads=4, num_layers=2)
    steps = epochs * -(-train_n // batch_size)
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, steps))
    trainer = nn.Trainer(model, "sparse_categorical_crossentropy", optimizer, metrics=["accuracy"])
    state = trainer.init(jax.random.key(0), x[:1])
    state, _ = trainer.fit(
        state, x, y, epochs=epochs, batch_size=batch_size, verbose=0 if quick else 2
    )
    digit_accuracy = float(trainer.evaluate(state, x_test, y_test)["accuracy"])
    predicted = np.asarray(trainer.predict(state, x_test, batch_size=256)).argmax(-1)
    sequence_accuracy = float((predicted == y_test).all(axis=1).mean())
    print(f"test digit accuracy: {digit_accuracy:.4f} (target {TARGET})")
    print(f"test sequences sorted exactly: {sequence_accuracy:.4f}")
    print(f"example: {x_test[0].tolist()} -> {predicted[0].tolist()}")
    return digit_accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI")
    args = parser.parse_args()
    accuracy = main(args.quick)
    if not args.quick and accuracy < TARGET:
        print(f"FAILED: test digit accuracy {accuracy:.4f} is below the target {TARGET}")
        sys.exit(1)
