"""Every layer constructor jaxnn ships, one file per family."""

from jaxnn.layers.activation import Activation
from jaxnn.layers.attention import MultiHeadAttention
from jaxnn.layers.conv import (
    Conv,
    Conv1D,
    Conv2D,
    Conv3D,
    ConvTranspose,
    ConvTranspose1D,
    ConvTranspose2D,
    ConvTranspose3D,
)
from jaxnn.layers.dense import Dense
from jaxnn.layers.dropout import Dropout
from jaxnn.layers.embedding import Embedding
from jaxnn.layers.norm import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RMSNorm
from jaxnn.layers.pooling import (
    AvgPool,
    AvgPool1D,
    AvgPool2D,
    AvgPool3D,
    GlobalAvgPool,
    GlobalMaxPool,
    MaxPool,
    MaxPool1D,
    MaxPool2D,
    MaxPool3D,
)
from jaxnn.layers.recurrent import GRU, LSTM, RNN, Bidirectional, SimpleRNN
from jaxnn.layers.reshape import Flatten, Reshape

__all__ = [
    "Activation",
    "AvgPool",
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    "BatchNorm",
    "Bidirectional",
    "Conv",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "ConvTranspose",
    "ConvTranspose1D",
    "ConvTranspose2D",
    "ConvTranspose3D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GRU",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "GroupNorm",
    "InstanceNorm",
    "LSTM",
    "LayerNorm",
    "MaxPool",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
    "MultiHeadAttention",
    "RMSNorm",
    "RNN",
    "Reshape",
    "SimpleRNN",
]
