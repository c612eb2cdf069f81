"""Bit-exact comparisons, where XLA promises them.

On the CPU, XLA rounds one program the same way in every run and every process, and
jaxnn arranges for the runs it promises equal to execute the same programs (a fit's
epoch count is an argument, not part of its program: two programs that differ only
in a loop's length were seen to round differently), so the suite asserts bit-exact
equality where jaxnn promises it: a resumed run and an uninterrupted one, a
population member and the network alone, a streamed batch and the same batch from
memory. GPU compilers choose fusions and matrix-product
algorithms per program (by autotuning, per process), so two programs doing the same
arithmetic may differ in the last bit of float32: on other backends these comparisons
allow a few units in the last place instead. (``XLA_FLAGS=--xla_gpu_deterministic_ops=true``,
which conftest.py sets, makes one program's results repeatable; it does not make two
different programs round alike.)
"""

from __future__ import annotations

import jax
import numpy as np

EXACT = jax.default_backend() == "cpu"
"""Whether the backend rounds alike across programs (the CPU)."""

RTOL, ATOL = 2e-6, 1e-7
"""The tolerance on other backends: a few float32 ulps, grown over a short training run."""


def assert_same(actual, expected, err_msg: str = "") -> None:
    """Asserts bit-exact equality on the CPU, equality to a few ulps elsewhere."""
    if EXACT:
        np.testing.assert_array_equal(actual, expected, err_msg=err_msg)
    else:
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=err_msg)
