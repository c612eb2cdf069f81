"""``fit``'s checkpointing policy: one settings value and the directory it governs.

``Trainer.fit(..., checkpoint=Checkpointing(directory, every=..., keep=...,
monitor=..., resume=...))`` (or ``checkpoint="directory"`` for the defaults) saves
the :class:`~jaxnn.TrainState` with :func:`jaxnn.checkpoint.save`, atomically, as
``epoch_<epochs done, 6 digits>.safetensors``, keeps the newest ``keep``, and with a
``monitor`` keeps ``best.safetensors``. Each file's metadata ``{"jaxnn_fit": ...}``
holds the epoch count, the history, the fit settings and the best value so far, so
that a resumed run continues exactly. A state split over several processes, which no
process holds whole, is saved instead as an orbax-checkpoint directory
(``epoch_000005.orbax``, :mod:`jaxnn.sharded_checkpoint`) that every process writes
its shards into.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import re
import shutil
import warnings
from typing import Any

import jax
import numpy as np

from jaxnn import checkpoint as checkpoint_lib
from jaxnn import sharded_checkpoint as sharded_lib
from jaxnn._checks import check_choice, check_positive_int, resolve_mode

__all__ = ["CheckpointDirectory", "Checkpointing", "fingerprint"]

_EPOCH_FILE = re.compile(r"epoch_(\d+)\.(safetensors|orbax)")
_BEST_FILE = "best"
_LEFTOVER = re.compile(
    r"\.(epoch_\d+|best)\.safetensors\.[0-9a-f]+\.tmp|(epoch_\d+|best)\.orbax\.orbax-checkpoint-tmp.*"
)
_FORMATS = ("auto", "safetensors", "orbax")
_EXTENSIONS = ("safetensors", "orbax")


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """How ``fit`` saves checkpoints, and whether it resumes from them.

    Args:
        directory: the directory to save into (created if missing).
        every: save after every this many epochs (and always after the last one).
        keep: how many of the newest epoch checkpoints to keep.
        monitor: a log to keep the best epoch by, e.g. ``"val_loss"``, in
            ``best.safetensors``; ``None`` keeps no best.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy-like names), for
            ``monitor``.
        resume: continue from the newest readable checkpoint in ``directory``;
            ``epochs`` is then the *total* number of epochs (Keras's
            ``initial_epoch``).
        overwrite: with ``resume=False``, delete the checkpoints a directory already
            holds (another run's) before training; without it such a directory is
            refused, so that two runs never mix their files.
        format: ``"safetensors"`` (one file, written by process 0), ``"orbax"``
            (a directory every process writes its shards into; the
            ``[distributed]`` extra), or ``"auto"``: orbax when the state is split
            over several processes, safetensors otherwise. Resuming reads either.

    Raises:
        ValueError: for a non-positive ``every`` or ``keep``, a ``monitor`` that is
            not a string, or an unknown ``mode`` or ``format``.

    Example:
        >>> Checkpointing("runs/a", every=5, monitor="val_loss").mode
        'min'
    """

    directory: str | os.PathLike
    every: int = 1
    keep: int = 3
    monitor: str | None = None
    mode: str = "auto"
    resume: bool = False
    format: str = "auto"
    overwrite: bool = False

    def __post_init__(self) -> None:
        where = "Checkpointing"
        if not isinstance(self.directory, (str, os.PathLike)):
            raise TypeError(
                f"{where}: directory must be a path, got {type(self.directory).__name__}."
            )
        check_positive_int(where, "every", self.every)
        check_positive_int(where, "keep", self.keep)
        if self.monitor is not None and not isinstance(self.monitor, str):
            raise ValueError(
                f"{where}: monitor must be the name of a log such as 'val_loss', or None; "
                f"got {self.monitor!r}."
            )
        check_choice(where, "format", self.format, _FORMATS)
        if not isinstance(self.overwrite, bool) or not isinstance(self.resume, bool):
            raise TypeError(
                f"{where}: resume and overwrite must be bools, got resume={self.resume!r}, "
                f"overwrite={self.overwrite!r}."
            )
        if self.resume and self.overwrite:
            raise ValueError(
                f"{where}: resume=True continues the run in the directory and "
                "overwrite=True deletes it; pass one of them."
            )
        mode = resolve_mode(where, self.mode, self.monitor or "")
        object.__setattr__(self, "mode", mode)

    @classmethod
    def of(cls, where: str, value: Any) -> Checkpointing | None:
        """``None``, a ``Checkpointing``, or a directory path (default settings).

        Raises:
            TypeError: for anything else.
        """
        if value is None or isinstance(value, Checkpointing):
            return value
        if isinstance(value, (str, os.PathLike)):
            return cls(value)
        raise TypeError(
            f"{where}: checkpoint must be a directory or a jaxnn.Checkpointing, got "
            f"{type(value).__name__}."
        )


class CheckpointDirectory:
    """The files of one :class:`Checkpointing` directory: save, prune, find, restore.

    Args:
        where: the entry point, for messages.
        settings: the :class:`Checkpointing`.
    """

    def __init__(self, where: str, settings: Checkpointing):
        self.where = where
        self.settings = settings
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.data_state: Any = None  # the stream's position in the restored checkpoint
        self.identity: dict[str, Any] | None = None  # this run's, from claim()
        self.directory = os.fspath(settings.directory)
        os.makedirs(self.directory, exist_ok=True)
        for name in os.listdir(self.directory):  # left by saves that were killed midway
            if _LEFTOVER.fullmatch(name) and jax.process_index() == 0:
                _remove(os.path.join(self.directory, name))

    def on_disk(self, warn: bool = False) -> list[tuple[int, str]]:
        """``(epochs done, path)`` of every epoch checkpoint, oldest first; an entry
        named like one that is neither a file nor a directory (a FIFO, a socket) is
        left out, with a warning when ``warn``."""
        found = []
        for name in os.listdir(self.directory):
            match = _EPOCH_FILE.fullmatch(name)
            if not match:
                continue
            path = os.path.join(self.directory, name)
            if not (os.path.isfile(path) or os.path.isdir(path)):
                if warn:
                    warnings.warn(
                        f"{self.where}: skipping {path!r}: it is named like a checkpoint "
                        "but is not a regular file or directory.",
                        stacklevel=5,
                    )
                continue
            found.append((int(match.group(1)), path))
        return sorted(found)

    def claim(self, identity: dict[str, Any]) -> None:
        """Makes the directory this run's: ``identity`` (fingerprints of the initial
        state and the data) goes into every file it writes, and a resume refuses
        files of another identity. A fresh run (``resume=False``) refuses a
        directory that already holds checkpoints, unless ``overwrite``, which
        deletes them.

        Raises:
            ValueError: for a fresh run in a directory already in use.
        """
        self.identity = identity
        if self.settings.resume:
            return
        held = [path for _, path in self.on_disk()]
        best = [os.path.join(self.directory, f"{_BEST_FILE}.{ext}") for ext in _EXTENSIONS]
        held += [path for path in best if os.path.exists(path)]
        if not held:
            return
        if not self.settings.overwrite:
            raise ValueError(
                f"{self.where}: checkpoint directory {self.directory!r} already holds "
                f"{len(held)} checkpoint(s) of an earlier run; a new run there would prune "
                "them and could later resume from them. Pass Checkpointing(..., "
                "resume=True) to continue that run, Checkpointing(..., overwrite=True) to "
                "delete them and start afresh, or use another directory."
            )
        if jax.process_index() == 0:
            for path in held:
                _remove(path)

    def check_monitor(self, names: list[str]) -> None:
        """Refuses a ``monitor`` that is not one of the logs ``names``."""
        monitor = self.settings.monitor
        if monitor is not None and monitor not in names:
            raise ValueError(
                f"{self.where}: Checkpointing monitor={monitor!r} is not one of the logs "
                f"{sorted(names)}. Pick one of those (val_* needs validation data)."
            )

    def check_same_epoch(self, epoch: int) -> None:
        """With several processes, refuses a resume in which they found different
        checkpoints (a directory that is not shared, or out of step): they would train
        out of step and hang in their collectives. One small all-gather at the start
        of ``fit``; nothing with one process.

        Raises:
            ValueError: naming each process's epoch, when they differ.
        """
        if jax.process_count() == 1:
            return
        from jax.experimental import multihost_utils

        epochs = np.asarray(multihost_utils.process_allgather(np.int32(epoch))).reshape(-1)
        if (epochs != epochs[0]).any():
            found = ", ".join(f"process {i} at epoch {int(e)}" for i, e in enumerate(epochs))
            raise ValueError(
                f"{self.where}: the processes would resume from different checkpoints in "
                f"{self.directory!r} ({found}): each process must read the same checkpoint "
                "files. Put the directory on a file system every process shares, then "
                "resume again."
            )

    def restore_latest(
        self, like: Any, settings: dict[str, Any]
    ) -> tuple[Any, int, dict[str, list]] | None:
        """The newest readable checkpoint: its state, epochs done and history.

        Damaged files are skipped with a warning; a file of another model raises.

        Raises:
            CheckpointError: for checkpoints of another model or optimizer.
            ValueError: for a checkpoint trained with other fit ``settings``.
        """
        for epoch, path in reversed(self.on_disk(warn=True)):
            try:
                if sharded_lib.is_sharded_checkpoint(path):
                    meta = sharded_lib.read_metadata(path)["jaxnn_fit"]
                    state = sharded_lib.restore(path, like)
                else:
                    meta = checkpoint_lib.read_metadata(path)["user"]["jaxnn_fit"]
                    state = checkpoint_lib.restore(path, _addressable(like))
            except checkpoint_lib.CheckpointError as e:
                if "does not match the expected tree" in str(e):
                    raise checkpoint_lib.CheckpointError(
                        f"{self.where}: cannot resume: {e} (the checkpoint directory holds "
                        "checkpoints of another model or optimizer; use another directory)"
                    ) from None
                warnings.warn(f"{self.where}: skipping a damaged checkpoint: {e}", stacklevel=4)
                continue
            except (OSError, KeyError, TypeError) as e:
                warnings.warn(
                    f"{self.where}: skipping {path!r}, which is not a fit checkpoint ({e!r}).",
                    stacklevel=4,
                )
                continue
            run = meta.get("run")
            if run is not None and self.identity is not None and run != self.identity:
                words = {"state": "initial state", "data": "training data"}
                what = [words.get(k, k) for k in self.identity if run.get(k) != self.identity[k]]
                raise ValueError(
                    f"{self.where}: cannot resume from {path!r}: it belongs to another run "
                    f"(another {' and '.join(what)}: another seed, model or data set). "
                    "Resume with the same initial state and data, or use "
                    "another directory (or Checkpointing(..., overwrite=True) without "
                    "resume, to start afresh here)."
                )
            saved = meta.get("settings", {})
            changed = [
                f"{k}={saved.get(k)!r} then, {v!r} now"
                for k, v in settings.items()
                if saved.get(k) != v
            ]
            if changed:
                raise ValueError(
                    f"{self.where}: cannot resume exactly from {path!r}: it was trained with "
                    f"{'; '.join(changed)}. Pass the same data and settings, or resume=False "
                    "with a new checkpoint directory."
                )
            self.best, self.best_epoch = meta.get("best"), meta.get("best_epoch")
            self.data_state = meta.get("data_state")
            history = {
                k: [math.nan if v is None else v for v in values]
                for k, values in meta.get("history", {}).items()
            }
            return state, int(meta.get("epoch", epoch)), history
        return None

    def after_epoch(
        self,
        state: Any,
        epoch: int,
        history: dict[str, list],
        logs: dict[str, float],
        settings: dict[str, Any],
        *,
        last: bool,
        data_state: Any = None,
    ) -> None:
        """Saves the best (if improved) and the periodic checkpoint; prunes old ones.

        ``data_state`` is the stream's position (JSON-safe), restored on resume.
        With several processes every process calls it, and when it returns what it
        wrote is on disk for all of them."""
        self.data_state = data_state
        monitor, mode = self.settings.monitor, self.settings.mode
        saved = False  # the same on every process: the logs are global values
        if monitor is not None:
            value = logs[monitor]
            better = math.isfinite(value) and (
                self.best is None or (value < self.best if mode == "min" else value > self.best)
            )
            if better:
                self.best, self.best_epoch = value, epoch
                self._save(_BEST_FILE, state, epoch, history, settings)
                saved = True
        if epoch % self.settings.every == 0 or last:
            self._save(f"epoch_{epoch:06d}", state, epoch, history, settings)
            saved = True
            if jax.process_index() == 0:
                for _, path in self.on_disk()[: -self.settings.keep]:
                    _remove(path)
        if saved and jax.process_count() > 1:
            # Process 0 alone writes a safetensors file and prunes: the others wait for
            # it, or one that goes on to resume could list the directory before the
            # file is there and resume from an older epoch than process 0 (a wrong
            # stream position, then mismatched collectives).
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"jaxnn checkpoint after epoch {epoch}")

    def _save(
        self,
        stem: str,
        state: Any,
        epoch: int,
        history: dict[str, list],
        settings: dict[str, Any],
    ) -> None:
        split = sharded_lib.needs_sharded(state)
        orbax = self.settings.format == "orbax" or (self.settings.format == "auto" and split)
        if not orbax and split:
            raise ValueError(
                f"{self.where}: the state is split over the devices of several processes, "
                "so no process can write it into one safetensors file; use "
                "Checkpointing(..., format='orbax') (or 'auto'), with the [distributed] "
                "extra installed."
            )
        path = os.path.join(self.directory, f"{stem}.{'orbax' if orbax else 'safetensors'}")
        other = os.path.join(self.directory, f"{stem}.{'safetensors' if orbax else 'orbax'}")
        if os.path.exists(other) and jax.process_index() == 0:
            _remove(other)  # a best of the other format, from an earlier run
        if not orbax and jax.process_index() != 0:  # process 0 writes the file
            return
        finite = lambda v: v if not isinstance(v, float) or math.isfinite(v) else None
        meta = {
            "epoch": epoch,
            "history": {k: [finite(v) for v in values] for k, values in history.items()},
            "settings": settings,
            "monitor": self.settings.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "run": self.identity,
        }
        if self.data_state is not None:
            meta["data_state"] = self.data_state
        if orbax:  # every process writes its shards
            sharded_lib.save(path, state, {"jaxnn_fit": meta})
        else:
            checkpoint_lib.save(path, state, metadata={"jaxnn_fit": meta})


def fingerprint(tree: Any) -> str:
    """A short digest of a tree's structure, shapes, dtypes and values, that tells one
    run's initial state or data from another's.

    Arrays over 16 MiB contribute 4096 evenly spaced rows rather than every byte, and
    arrays split across processes only their shape and dtype (no process holds them
    whole), so that computing it stays cheap.

    Example:
        >>> fingerprint({"w": np.ones(3)}) == fingerprint({"w": np.ones(3)})
        True
        >>> fingerprint({"w": np.ones(3)}) == fingerprint({"w": np.zeros(3)})
        False
    """
    digest = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(tree)
    digest.update(str(treedef).encode())
    for leaf in leaves:
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        digest.update(f"{np.shape(leaf)}{np.dtype(leaf.dtype).str}".encode())
        if isinstance(leaf, jax.Array) and not (
            leaf.is_fully_addressable or leaf.is_fully_replicated
        ):
            continue
        if np.ndim(leaf) and leaf.nbytes > 2**24:
            leaf = leaf[np.linspace(0, len(leaf) - 1, 4096).astype(np.int64)]
        digest.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
    return digest.hexdigest()[:16]


def _addressable(like: Any) -> Any:
    """``like`` with each array placed over several processes' devices replaced by its
    shape and dtype: every process reads a safetensors file whole, and the caller
    places the state (a process cannot ``device_put`` onto others' devices)."""

    def local(a: Any) -> Any:
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return jax.ShapeDtypeStruct(a.shape, a.dtype)
        return a

    return jax.tree.map(local, like)


def _remove(path: str) -> None:
    """Deletes a checkpoint file or directory; one already gone is fine."""
    with contextlib.suppress(OSError):
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
