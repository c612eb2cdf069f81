"""Test settings: JAX's strict modes on, so broadcasting mistakes fail loudly.

Compilation is most of the tests' time: nearly every program a test compiles (each
eager op included) runs once or a few times on tiny inputs. So XLA compiles for speed
of compiling: most of its CPU backend's (LLVM's) optimisation is off, and, where this
jaxlib has them, elementwise fusions use XLA's older emitters, which compile in about
half the time. Both are set in the environment before JAX starts, so the subprocesses
that tests start inherit them. ``JAX_DISABLE_MOST_OPTIMIZATIONS=0`` runs the tests
fully optimised; a ``--xla_cpu_use_fusion_emitters`` in ``XLA_FLAGS`` is left as it is.

A test marked ``optimised`` compiles with LLVM's optimisation on: a test whose programs
run for seconds (it pays for itself there), and a test that compares two different
programs (a fit with and without validation) to within float32 rounding through an
optimizer that amplifies rounding noise (Adam on a bias that BatchNorm cancels): how
such programs round depends on the compiler's settings, and they agree at the default
ones.
"""

import os
import subprocess
import sys

_FUSION_EMITTERS = "--xla_cpu_use_fusion_emitters"

# Modules that compare different programs as above and do not mark themselves yet.
_OPTIMISED_MODULES = ("test_stream.py",)


def _xla_knows(flag: str) -> bool:
    """Whether this jaxlib accepts ``flag``: XLA aborts the process on an unknown one."""
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flag}"}
    probe = [sys.executable, "-c", "import jax; jax.devices()"]
    return subprocess.run(probe, env=env, capture_output=True, check=False).returncode == 0


os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# The tests compare against float64 references at float32 tolerances. On GPUs JAX runs
# float32 matrix products in TF32 by default (about 1e-3 relative error; TPUs use
# bfloat16 passes), so the tests ask for full float32 products. The CPU computes them in
# float32 anyway.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
# GPUs autotune their matrix-product algorithms per process; fixing the choice makes a
# program's results repeatable across processes (a resumed run against a straight one).
# Every jaxlib accepts the flag; the CPU ignores it.
if "--xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        f"{os.environ.get('XLA_FLAGS', '')} --xla_gpu_deterministic_ops=true".strip()
    )
# Decided once: pytest-xdist's workers and the tests' subprocesses inherit the result.
if _FUSION_EMITTERS not in os.environ.get("XLA_FLAGS", ""):
    flag = f"{_FUSION_EMITTERS}=false"
    if _xla_knows(flag):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "optimised: compile with XLA's LLVM optimisation on (see conftest.py)"
    )


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in _OPTIMISED_MODULES:
            item.add_marker(pytest.mark.optimised)


@pytest.fixture(autouse=True)
def _optimisation(request):
    if request.node.get_closest_marker("optimised") is None:
        yield
        return
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
