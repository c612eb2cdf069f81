"""Training one network: ``Trainer``, ``TrainState``, callbacks, the guard, checkpoints.

One concept per module:

* :mod:`~jaxnn.train.programs`: the pure programs of training (``TrainState``,
  ``Programs``: init, step, guarded step, epoch, evaluate, predict), the seam that
  ``Trainer`` compiles and :mod:`jaxnn.population` vmaps;
* :mod:`~jaxnn.train.trainer`: ``Trainer`` and its compiled ``fit``;
* :mod:`~jaxnn.train.callbacks`: ``History``, ``FitResult``, ``Callback`` (and ``Steer``,
  how a callback changes the state), ``EarlyStopping`` and the pure stopping rule it
  shares with populations;
* :mod:`~jaxnn.train.steering`: ``ReduceLROnPlateau`` (and the pure plateau rule it
  shares with populations), ``LearningRateScheduler``, ``CSVLogger`` and ``TensorBoard``;
* :mod:`~jaxnn.train.guard`: the non-finite guard and ``NonFiniteError``;
* :mod:`~jaxnn.train.checkpointing`: the ``Checkpointing`` settings and directory;
* :mod:`~jaxnn.train.progress`: the per-epoch progress output.
"""

from jaxnn.train.callbacks import (
    Callback,
    EarlyStopping,
    FitResult,
    History,
    LambdaCallback,
    MonitorCallback,
    Steer,
    StoppingRule,
    StopState,
    stopping_rule,
)
from jaxnn.train.checkpointing import Checkpointing
from jaxnn.train.guard import NonFiniteError
from jaxnn.train.programs import Programs, TrainState, finish, programs
from jaxnn.train.steering import (
    CSVLogger,
    LearningRateScheduler,
    PlateauRule,
    PlateauState,
    ReduceLROnPlateau,
    TensorBoard,
    plateau_rule,
)
from jaxnn.train.trainer import Trainer

__all__ = [
    "CSVLogger",
    "Callback",
    "Checkpointing",
    "EarlyStopping",
    "FitResult",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "MonitorCallback",
    "NonFiniteError",
    "PlateauRule",
    "PlateauState",
    "Programs",
    "ReduceLROnPlateau",
    "Steer",
    "StopState",
    "StoppingRule",
    "TensorBoard",
    "TrainState",
    "Trainer",
    "finish",
    "plateau_rule",
    "programs",
    "stopping_rule",
]
