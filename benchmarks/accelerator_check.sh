#!/usr/bin/env bash
# The GPU path, checked in one go on a machine with an NVIDIA GPU (no test needs one):
# installs JAX's CUDA build into the venv, runs the test suite on the GPU
# (JAX_PLATFORMS=cuda), then the benchmark suite, and writes everything to one folder.
#
#   bash benchmarks/accelerator_check.sh [OUT_DIR]      (default: accelerator-results)
#
# OUT_DIR gets: devices.txt (what JAX sees), tests.txt (pytest's output and exit code),
# benchmarks.json / benchmarks.md (the suite, which records backend and device kind).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-accelerator-results}
mkdir -p "$out"
# The Python to use: $PYTHON if set; else the first of .venv/bin/python and python3 whose
# JAX already sees a GPU (an image with JAX's CUDA build preinstalled, possibly offline);
# else a fresh .venv with jax[cuda12] from PyPI. jaxnn is imported from this checkout.
py=${PYTHON:-}
if [ -z "$py" ]; then
  for candidate in .venv/bin/python python3; do
    if command -v "$candidate" >/dev/null &&
      "$candidate" -c "import jax, optax, chex; assert jax.devices('gpu')" >/dev/null 2>&1; then
      py=$candidate
      echo "using $candidate: its JAX already sees a GPU" >"$out/install.txt"
      break
    fi
  done
fi
if [ -z "$py" ]; then
  py=.venv/bin/python
  [ -x "$py" ] || { python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev,examples]"; }
  .venv/bin/pip install -q -U "jax[cuda12]" >"$out/install.txt" 2>&1 ||
    echo "jax[cuda12] install failed" >>"$out/install.txt"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Several test workers share the one GPU: none may take most of its memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
workers=${WORKERS:-8}
xdist=()
"$py" -c "import xdist" 2>/dev/null && xdist=(-n "$workers")
per_test=()
"$py" -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 300)

JAX_PLATFORMS=cuda "$py" -c "import jax, jaxlib, optax; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'optax', optax.__version__); print(jax.default_backend(), jax.devices())" \
  >"$out/devices.txt" 2>&1
cat "$out/devices.txt"

# The tests on the GPU: float tolerances were set for CPU float32 and may need a look
# where a test fails only here. The subprocess tests with virtual CPU devices pin the CPU.
# cuda,cpu: a few tests run host callbacks (jax.pure_callback), which need the CPU backend.
JAX_PLATFORMS=cuda,cpu timeout "${TEST_TIMEOUT:-1500}" "$py" -m pytest -q -rfE -p no:cacheprovider \
  "${xdist[@]}" "${per_test[@]}" --durations=15 >"$out/tests.txt" 2>&1
echo "pytest exit code: $?" | tee -a "$out/tests.txt"
tail -5 "$out/tests.txt"

JAX_PLATFORMS=cuda timeout "${BENCH_TIMEOUT:-1500}" "$py" -m benchmarks --quick --peers "${PEERS:-none}" \
  --json "$out/benchmarks.json" --markdown "$out/benchmarks.md" >"$out/benchmarks.txt" 2>&1
echo "benchmarks exit code: $?" | tee -a "$out/benchmarks.txt"
tail -20 "$out/benchmarks.txt"
