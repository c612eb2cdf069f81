"""The record of one conformance case (see ``tests/registry.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from jaxnn import Layer


@dataclasses.dataclass(frozen=True)
class Case:
    """One example layer and the input it is checked on.

    Attributes:
        id: a short readable id for the test name.
        make: builds the layer.
        shape: the input shape, batch axis first.
        dtype: the input dtype: ``"float32"`` or an integer dtype for index inputs.
        int_high: for integer inputs, values are drawn from ``[0, int_high)``.
        stochastic: the layer draws random numbers in training (needs a key).
        grad_input: check gradients with respect to the input too (floating inputs).
        grad_tol: tolerance for the float64 finite-difference gradient check.
    """

    id: str
    make: Callable[[], Layer]
    shape: tuple[int, ...]
    dtype: str = "float32"
    int_high: int = 0
    stochastic: bool = False
    grad_input: bool = True
    grad_tol: float = 1e-5
