"""Conformance cases for the basic layers: dropout, reshapes, norms, embedding, activation."""

import jax

from jaxnn.layers.activation import Activation
from jaxnn.layers.dropout import Dropout
from jaxnn.layers.embedding import Embedding
from jaxnn.layers.norm import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RMSNorm
from jaxnn.layers.reshape import Flatten, Reshape
from tests.case import Case

CASES = {
    "Dropout": [
        Case("dropout_rank3", lambda: Dropout(0.2), (2, 3, 5), stochastic=True),
        Case("dropout_zero", lambda: Dropout(0.0), (4, 3), stochastic=True),
        Case("dropout_traced", lambda: Dropout(0.3, traced=True), (4, 3), stochastic=True),
    ],
    "Flatten": [
        Case("flatten", lambda: Flatten(), (2, 3, 4)),
        Case("flatten_rank2", lambda: Flatten(), (4, 3)),
    ],
    "Reshape": [
        Case("reshape", lambda: Reshape((3, 4)), (2, 12)),
        Case("reshape_infer", lambda: Reshape((-1, 2)), (2, 3, 4)),
    ],
    "BatchNorm": [
        Case("batch_norm", lambda: BatchNorm(), (8, 3)),
        Case("batch_norm_nhwc", lambda: BatchNorm(momentum=0.9), (3, 2, 2, 4)),
        Case("batch_norm_axis1", lambda: BatchNorm(axis=1, use_scale=False), (4, 3, 2)),
    ],
    "LayerNorm": [
        Case("layer_norm", lambda: LayerNorm(), (4, 6)),
        Case("layer_norm_rank3_nobias", lambda: LayerNorm(use_bias=False), (2, 3, 5)),
    ],
    "GroupNorm": [
        Case("group_norm", lambda: GroupNorm(num_groups=2), (2, 3, 3, 4)),
        Case("group_norm_rank2", lambda: GroupNorm(num_groups=3), (4, 6)),
    ],
    "RMSNorm": [
        Case("rms_norm", lambda: RMSNorm(), (4, 6)),
        Case("rms_norm_rank3", lambda: RMSNorm(), (2, 3, 5)),
    ],
    "InstanceNorm": [
        Case("instance_norm", lambda: InstanceNorm(), (2, 3, 3, 4)),
        Case("instance_norm_1d", lambda: InstanceNorm(use_scale=False), (2, 5, 3)),
    ],
    "Embedding": [
        Case("embedding", lambda: Embedding(10, 4), (3, 5), dtype="int32", int_high=10),
        Case("embedding_rank1", lambda: Embedding(7, 3), (6,), dtype="int32", int_high=7),
    ],
    "Activation": [
        Case("tanh", lambda: Activation("tanh"), (4, 3)),
        Case("gelu_fn", lambda: Activation(jax.nn.gelu), (4, 3)),
        Case("softmax", lambda: Activation("softmax"), (4, 3)),
        Case("glu", lambda: Activation("glu"), (4, 6)),
    ],
}
