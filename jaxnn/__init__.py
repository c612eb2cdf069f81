"""jaxnn: a functional neural-network library for JAX.

Layers are immutable values with pure ``init``/``apply`` functions over plain dicts
of arrays; ``Trainer.fit`` compiles training with ``lax.scan``; populations of many
small networks train in one XLA program with ``jax.vmap``.
"""

from jaxnn import (
    activations,
    benchmark,
    checkpoint,
    confusion_metrics,
    data,
    export,
    initializers,
    losses,
    metrics,
    optimizers,
    parallel,
    population,
    precision,
    sharded_checkpoint,
    sources,
    stream,
)
from jaxnn._version import __version__
from jaxnn.cache import enable_compilation_cache
from jaxnn.checkpoint import CheckpointError
from jaxnn.combinators import Parallel, Repeat, Residual, Sequential
from jaxnn.confusion_metrics import (
    AUC,
    F1Score,
    FBetaScore,
    MeanIoU,
    Precision,
    Recall,
    StatefulMetric,
)
from jaxnn.core import Layer, LayerError, as_layer
from jaxnn.layers import *  # noqa: F403
from jaxnn.layers import __all__ as _layers_all
from jaxnn.layers.recurrent import Cell, GRUCell, LSTMCell, SimpleRNNCell
from jaxnn.losses import Loss
from jaxnn.metrics import Metric
from jaxnn.sources import ArrayStream
from jaxnn.summary import count_params, summary
from jaxnn.train import (
    Callback,
    Checkpointing,
    CSVLogger,
    EarlyStopping,
    FitResult,
    History,
    LambdaCallback,
    LearningRateScheduler,
    NonFiniteError,
    ReduceLROnPlateau,
    Steer,
    TensorBoard,
    Trainer,
    TrainState,
)

__all__ = [
    "AUC",
    "ArrayStream",
    "Callback",
    "Cell",
    "Checkpointing",
    "CheckpointError",
    "CSVLogger",
    "EarlyStopping",
    "F1Score",
    "FBetaScore",
    "FitResult",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "Loss",
    "MeanIoU",
    "Metric",
    "NonFiniteError",
    "Precision",
    "Recall",
    "ReduceLROnPlateau",
    "Repeat",
    "StatefulMetric",
    "Steer",
    "TensorBoard",
    "TrainState",
    "Trainer",
    "benchmark",
    "checkpoint",
    "confusion_metrics",
    "export",
    "losses",
    "metrics",
    "data",
    "parallel",
    "population",
    "precision",
    "sharded_checkpoint",
    "sources",
    "stream",
    "GRUCell",
    "LSTMCell",
    "Layer",
    "LayerError",
    "Parallel",
    "Residual",
    "Sequential",
    "SimpleRNNCell",
    "__version__",
    "activations",
    "as_layer",
    "initializers",
    "optimizers",
    "summary",
    "count_params",
    "enable_compilation_cache",
    *_layers_all,
]
