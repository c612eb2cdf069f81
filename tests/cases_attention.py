"""Conformance cases for MultiHeadAttention and Repeat."""

import jax.numpy as jnp

import jaxnn as nn
from jaxnn.layers.attention import MultiHeadAttention
from jaxnn.layers.dropout import Dropout
from jaxnn.layers.norm import BatchNorm, LayerNorm
from jaxnn.repeat import Repeat
from tests.case import Case


def _cross_with_padding():
    """Cross-attention onto a transformed prefix of x, with padding and a mask."""

    def inputs(x):
        memory = jnp.tanh(x[:, :3] * 2.0)
        mask = jnp.ones((x.shape[0], x.shape[1], 3), jnp.bool_).at[:, 0, 1].set(False)
        lengths = jnp.array([3, 2], jnp.int32)
        return {"query": x, "key_value": memory, "mask": mask, "kv_lengths": lengths}

    return nn.Sequential(inputs, MultiHeadAttention(2, key_size=3, out_features=6))


def _block():
    """A pre-norm transformer block, as a Repeat would hold it.

    Every kernel is drawn as an 8 x 8 matrix (attention reshapes its own), so the
    initializer compiles once for all of them.
    """
    return nn.Sequential(
        nn.Residual(nn.Sequential(LayerNorm(), MultiHeadAttention(2, causal=True))),
        nn.Residual(nn.Sequential(LayerNorm(), nn.Dense(8, "gelu"), nn.Dense(8))),
    )


CASES = {
    "MultiHeadAttention": [
        Case(
            "gqa_causal_nobias",
            lambda: MultiHeadAttention(4, num_kv_heads=2, causal=True, use_bias=False),
            (2, 5, 8),
        ),
        Case("mqa_key_size", lambda: MultiHeadAttention(3, key_size=2, num_kv_heads=1), (2, 4, 5)),
        # Self-attention with the defaults, plus dropout: in evaluation it is the plain
        # layer; attention without dropout in training is in every other case.
        Case(
            "self_dropout",
            lambda: MultiHeadAttention(2, dropout_rate=0.3),
            (2, 5, 8),
            stochastic=True,
        ),
        Case("cross_masked", _cross_with_padding, (2, 5, 8)),
    ],
    "Repeat": [
        # The rolled scan (unroll=False) is in batch_norm_state and transformer_block.
        Case("unrolled", lambda: Repeat(nn.Dense(6, "tanh"), 3, unroll=True), (4, 6)),
        Case(
            "batch_norm_state",
            lambda: Repeat(nn.Sequential(nn.Dense(5), BatchNorm(), "tanh"), 2),
            (6, 5),
        ),
        Case(
            "dropout",
            lambda: Repeat(nn.Sequential(nn.Dense(6, "tanh"), Dropout(0.25)), 3, unroll=2),
            (4, 6),
            stochastic=True,
        ),
        Case("transformer_block", lambda: Repeat(_block(), 2), (2, 5, 8)),
        Case(
            "dynamic_depth",
            lambda: Repeat(nn.Sequential(nn.Dense(5), BatchNorm(), "tanh"), 3, dynamic_depth=True),
            (6, 5),
        ),
    ],
}
