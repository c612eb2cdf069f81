"""Peer libraries, one module each, timed on the suite's workloads.

Each module names the package it needs (``LIBRARY``), a display ``LABEL``, and one
function per workload it implements (``seed()``, ``mlp(steps)``, ``cnn(steps)``),
returning :class:`benchmarks.peers.common.Timed` implementations. A peer whose
package is not installed is reported as skipped by the suite, never as a failure.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from types import ModuleType

PEERS: dict[str, str] = {
    "flax": "benchmarks.peers.flax_linen",
    "equinox": "benchmarks.peers.equinox_filter",
    "haiku": "benchmarks.peers.haiku_transform",
    "keras": "benchmarks.peers.keras_jax",
    "torch": "benchmarks.peers.torch_eager",
}
"""Peer name -> the module that implements its workloads."""

_DISTRIBUTIONS = {"haiku": "dm-haiku"}


def load(name: str) -> ModuleType:
    """The module of peer ``name``.

    Raises:
        KeyError: for an unknown peer; the message lists the known ones.
    """
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; the peers are {', '.join(PEERS)}.")
    return importlib.import_module(PEERS[name])


def installed(name: str) -> bool:
    """Whether peer ``name``'s package can be imported, without importing it."""
    return importlib.util.find_spec(load(name).LIBRARY) is not None


def version(name: str) -> str | None:
    """The installed version of peer ``name``'s package, or ``None``."""
    try:
        return importlib.metadata.version(_DISTRIBUTIONS.get(name, load(name).LIBRARY))
    except importlib.metadata.PackageNotFoundError:
        return None
