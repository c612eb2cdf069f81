"""Conformance cases for the recurrent layers (small shapes: batch 2, time 4, 3 features)."""

import jax.numpy as jnp

from jaxnn import Layer, Sequential
from jaxnn.layers.recurrent import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    GRUCell,
    LSTMCell,
    SimpleRNN,
    SimpleRNNCell,
)
from tests.case import Case

SHAPE = (2, 4, 3)


def with_lengths(layer: Layer, lengths=(4, 2)) -> Layer:
    """Feeds ``{"inputs": x, "lengths": lengths}`` to ``layer``: the masked path."""

    def feed(x):
        return {"inputs": x, "lengths": jnp.asarray(lengths, jnp.int32)}

    return Sequential(feed, layer)


CASES = {
    "RNN": [
        Case(
            "simple_cell_lengths_carry",
            lambda: with_lengths(RNN(SimpleRNNCell(3), return_carry=True), (3, 1)),
            SHAPE,
        ),
    ],
    "SimpleRNN": [
        Case(
            "relu_seq_unroll",
            lambda: SimpleRNN(3, "relu", return_sequences=True, unroll=2),
            SHAPE,
        ),
    ],
    "LSTM": [
        Case("last", lambda: LSTM(4), SHAPE),
        Case(
            "lengths_seq_reverse",
            lambda: with_lengths(LSTM(3, return_sequences=True, reverse=True), (1, 3)),
            SHAPE,
        ),
    ],
    "GRU": [
        Case(
            "seq_reverse_unroll",
            lambda: GRU(3, return_sequences=True, reverse=True, unroll=True),
            SHAPE,
        ),
    ],
    "Bidirectional": [
        Case("gru_cell_add", lambda: Bidirectional(GRUCell(2), merge="add"), SHAPE),
        Case(
            "lengths_lstm_seq_concat",
            lambda: with_lengths(Bidirectional(LSTMCell(2), return_sequences=True)),
            SHAPE,
        ),
        Case(
            "carry_mean_unroll",
            lambda: Bidirectional(SimpleRNNCell(2), "mean", return_carry=True, unroll=2),
            SHAPE,
        ),
    ],
}
