"""jaxnn: a functional neural-network library for JAX.

Layers are immutable values with pure ``init``/``apply`` functions over plain dicts
of arrays; ``Trainer.fit`` compiles training with ``lax.scan``; populations of many
small networks train in one XLA program with ``jax.vmap``.

What building and training a model needs is imported with the package; the parts
that a program may never use (``population``, ``benchmark``, ``export``, ``sources``
and ``ArrayStream``) are imported on first use (``nn.population.fit`` works as
usual), which keeps ``import jaxnn`` short.
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

from jaxnn import (
    activations,
    checkpoint,
    confusion_metrics,
    data,
    initializers,
    losses,
    metrics,
    optimizers,
    parallel,
    precision,
    sharded_checkpoint,
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

if _TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from jaxnn import benchmark, export, population, sources
    from jaxnn.sources import ArrayStream

# name -> (module, attribute or None for the module itself), imported on first use.
_LAZY = {
    "benchmark": ("jaxnn.benchmark", None),
    "export": ("jaxnn.export", None),
    "population": ("jaxnn.population", None),
    "sources": ("jaxnn.sources", None),
    "ArrayStream": ("jaxnn.sources", "ArrayStream"),
}


def __getattr__(name: str) -> object:
    """Imports a lazy part of the API on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'jaxnn' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = _importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # later uses find it directly
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
