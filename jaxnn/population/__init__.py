"""Many small networks at once: a population of members in one XLA program.

A population is a stacked :class:`~jaxnn.TrainState`: every leaf has a leading member
axis of length ``n``. Each member has its own initialisation, shuffle order, dropout
stream, model state (BatchNorm statistics) and optimizer hyperparameters (traced, so
changing them never recompiles). Training runs the same pure epoch as
:meth:`Trainer.fit` (``trainer.programs``) for every member, with one of three
execution strategies (:mod:`~jaxnn.population.strategy`): ``"vmap"`` (default),
``"map"`` or ``"chunked"``. All three give the same results, and member ``i`` gives
the same parameters (to float tolerance) as the same network trained alone with
:meth:`Trainer.fit` from the same state and data.

The package, one concept per module:

* :mod:`~jaxnn.population.build`: ``init``, ``set_hyperparams``, ``bootstrap``,
  ``kfold``, ``take_members``, ``num_members``;
* :mod:`~jaxnn.population.fitting`: ``fit``;
* :mod:`~jaxnn.population.infer`: ``evaluate``, ``predict``, ``ensemble_predict``,
  ``select``;
* :mod:`~jaxnn.population.genome`: ``ravel``, ``flat_apply`` (flat vectors for
  gradient-free methods);
* :mod:`~jaxnn.population.report`: ``summarize``, ``plot`` (a sweep as a table and
  a plot);
* :mod:`~jaxnn.population.strategy`: the execution strategies;
* :mod:`~jaxnn.population.padded`: ``sweep``, ``Sweep`` (members of different widths
  and depths, padded to one shape);
* :mod:`~jaxnn.population.pbt`: population-based training, ``PBT``, ``pbt.fit``,
  ``exploit_explore``.

Sharding the member axis over devices is :func:`jaxnn.parallel.shard_members`.
"""

from jaxnn.population import pbt
from jaxnn.population.build import (
    bootstrap,
    init,
    kfold,
    num_members,
    set_hyperparams,
    take_members,
)
from jaxnn.population.fitting import fit
from jaxnn.population.genome import flat_apply, ravel
from jaxnn.population.infer import ensemble_predict, evaluate, predict, select
from jaxnn.population.padded import Sweep, sweep
from jaxnn.population.pbt import PBT, exploit_explore
from jaxnn.population.report import Summary, plot, summarize
from jaxnn.population.strategy import STRATEGIES

__all__ = [
    "PBT",
    "STRATEGIES",
    "Summary",
    "Sweep",
    "bootstrap",
    "ensemble_predict",
    "evaluate",
    "exploit_explore",
    "fit",
    "flat_apply",
    "init",
    "kfold",
    "num_members",
    "plot",
    "pbt",
    "predict",
    "ravel",
    "select",
    "set_hyperparams",
    "summarize",
    "sweep",
    "take_members",
]
