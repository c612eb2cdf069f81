"""Progress output after each epoch, one reporter for ``Trainer.fit`` and populations.

``verbose=1`` draws a Keras-like bar per epoch, ``verbose=2`` prints one line per
epoch, ``verbose=0`` prints nothing. An epoch runs as one compiled program, so its bar
is drawn once, full, with the epoch's time and logs, as Keras's bar looks at the end
of an epoch. A population's logs (one value per member) are shown as the
population's best, median and worst.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxnn._checks import higher_is_better

__all__ = ["Progress", "check_verbose"]


def check_verbose(where: str, verbose: Any) -> int:
    """``verbose`` if it is 0, 1 or 2; else a ``ValueError``.

    Example:
        >>> check_verbose("fit", 2)
        2
    """
    if (
        isinstance(verbose, (int, np.integer))
        and not isinstance(verbose, bool)
        and verbose in (0, 1, 2)
    ):
        return int(verbose)
    raise ValueError(f"{where}: verbose must be 0, 1 or 2, got {verbose!r}.")


_SETTINGS = ("learning_rate",)
"""Logs that record a setting, not a result: no best or worst, and in ``g`` format
(a learning rate of 1e-5 is not 0.0000)."""


def _format(name: str, value: Any) -> str:
    """One log as the progress line shows it: a population's best, median and worst
    (a setting's smallest, median and largest).

    Example:
        >>> _format("loss", np.array([0.5, 0.25, np.nan]))
        'loss: best 0.2500 / median 0.3750 / worst 0.5000'
        >>> _format("learning_rate", np.array([1e-3, 1e-5]))
        'learning_rate: min 1e-05 / median 0.000505 / max 0.001'
        >>> _format("learning_rate", 1e-5)
        'learning_rate: 1e-05'
    """
    setting = name in _SETTINGS
    if isinstance(value, np.ndarray) and value.ndim:
        finite = value[np.isfinite(value)]
        if finite.size == 0:
            return f"{name}: stopped"
        if setting:
            low, middle, high = finite.min(), np.median(finite), finite.max()
            return f"{name}: min {low:.3g} / median {middle:.3g} / max {high:.3g}"
        high = higher_is_better(name)
        best, worst = (finite.max(), finite.min()) if high else (finite.min(), finite.max())
        return f"{name}: best {best:.4f} / median {np.median(finite):.4f} / worst {worst:.4f}"
    if isinstance(value, float):
        return f"{name}: {value:.3g}" if setting else f"{name}: {value:.4f}"
    return f"{name}: {value}"


def _interval(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` past an hour), as progress bars show elapsed time.

    Example:
        >>> _interval(75.2), _interval(3725)
        ('01:15', '1:02:05')
    """
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """Reports each epoch's logs.

    Args:
        verbose: 0, 1 or 2.
        epochs: the number of epochs asked for.
        steps: batches per epoch, shown in the bar (``None``: not shown).

    Example:
        >>> Progress(2, epochs=3).epoch_end(0, {"loss": 0.5}, seconds=0.25)
        Epoch 1/3 - 0.25s - loss: 0.5000
    """

    def __init__(self, verbose: int, epochs: int, steps: int | None = None):
        self.verbose, self.epochs, self.steps = verbose, epochs, steps

    def epoch_end(self, epoch: int, logs: dict[str, Any], seconds: float) -> None:
        """Shows epoch ``epoch`` (0-based), which took ``seconds``, with its logs."""
        if self.verbose == 0 or jax.process_index() != 0:  # several processes: print once
            return
        text = " - ".join(_format(k, v) for k, v in logs.items())
        title = f"Epoch {epoch + 1}/{self.epochs}"
        if self.verbose == 2:
            print(f"{title} - {seconds:.2f}s - {text}", flush=True)
            return
        counter = f"{self.steps}/{self.steps} " if self.steps else ""
        # Drawn full, as it ends: formatted here, since a tqdm bar per epoch costs
        # more than a small network's epoch.
        print(f"{title} {counter}[{'=' * 20}] {_interval(seconds)} - {text}", flush=True)
