"""The conformance registry: example instances of every public layer.

``REGISTRY`` maps each public layer constructor's name to a list of :class:`Case`.
``tests/test_conformance.py`` runs every case through the same checks, and fails if a
public layer has no entry. Each layer family adds its cases in ``tests/cases_*.py``.
"""

from __future__ import annotations

import importlib
import pkgutil

import tests
from tests.case import Case


def _collect() -> dict[str, list[Case]]:
    registry: dict[str, list[Case]] = {}
    for info in pkgutil.iter_modules(tests.__path__):
        if not info.name.startswith("cases_"):
            continue
        module = importlib.import_module(f"tests.{info.name}")
        for name, cases in module.CASES.items():
            if name in registry:
                raise RuntimeError(f"{name} is registered twice (again in {info.name}).")
            registry[name] = list(cases)
    return registry


REGISTRY: dict[str, list[Case]] = _collect()
