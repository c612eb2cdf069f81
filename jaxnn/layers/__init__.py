"""Every layer constructor jaxnn ships, one file per family."""

from jaxnn.layers.activation import Activation
from jaxnn.layers.dense import Dense
from jaxnn.layers.dropout import Dropout
from jaxnn.layers.embedding import Embedding
from jaxnn.layers.norm import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RMSNorm
from jaxnn.layers.recurrent import GRU, LSTM, RNN, Bidirectional, SimpleRNN
from jaxnn.layers.reshape import Flatten, Reshape

__all__ = [
    "Activation",
    "BatchNorm",
    "Bidirectional",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GRU",
    "GroupNorm",
    "InstanceNorm",
    "LSTM",
    "LayerNorm",
    "RMSNorm",
    "RNN",
    "Reshape",
    "SimpleRNN",
]
