"""Behaviour of the timing API: what is timed, what is blocked on, what is counted.

No test asserts speed. Where a test compares times, the gap is made by a deliberate
``time.sleep`` of known length, and the assertion is a lower bound (a blocked time cannot be
shorter than the sleep it waited for), its converse (a sample that skipped the sleep is
shorter than it), or a ratio of more than 10x between steady time and a compile of a program
built to compile slowly.
"""

import dataclasses
import functools
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import benchmark
from jaxnn.benchmark import FitTiming, Timing, measure_matmul_peak, time_fit, time_function
from tests.exact import EXACT

SLEEP = 0.3
"""Seconds of deliberate sleep; long against dispatch of a tiny program (microseconds)."""


def _add_one(x):
    return x + 1.0


# --------------------------------------------------------------------------------------------
# Compilation is done once and kept out of the steady-state figure


def test_compile_time_is_excluded_from_steady_state():
    traces = []

    def slow_to_trace(x):
        traces.append(1)
        time.sleep(SLEEP)  # Python at trace time: costs lowering time, never run time.
        return x * 2.0

    t = time_function(slow_to_trace, jnp.ones(4), warmup=1, repeats=5, min_time=0.0)
    assert len(traces) == 1, "traced more than once: compiled again while timing"
    assert t.lower_time >= SLEEP
    # A sample that included tracing would last at least SLEEP; a steady one lasts microseconds.
    assert t.max < SLEEP
    assert t.median < t.lower_time / 10


def test_unrolled_loop_compiles_slowly_but_runs_fast():
    def unrolled(x):
        for i in range(300):  # 300 ops at trace time, fused by XLA into a few instructions.
            x = jnp.sin(x) + i
        return x

    t = time_function(unrolled, jnp.ones(8), repeats=5, min_time=0.0)
    assert t.median < (t.lower_time + t.compile_time) / 10


def test_compiled_once_even_with_warmup_repeats_and_inner_loop():
    traces = []

    def fn(x):
        traces.append(1)
        return x + 1.0

    t = time_function(fn, jnp.ones(3), warmup=3, repeats=4, min_time=1e-3)
    assert len(traces) == 1
    assert len(t.samples) == 4


# --------------------------------------------------------------------------------------------
# Results are blocked on, inside the timed region


def test_blocks_on_every_output_inside_the_timed_region(monkeypatch):
    blocked = []
    real_block = jax.block_until_ready

    def slow_block(tree):
        blocked.append(jax.tree.leaves(tree))
        time.sleep(SLEEP)  # Stands for device work still running when dispatch returned.
        return real_block(tree)

    monkeypatch.setattr(jax, "block_until_ready", slow_block)

    def two_outputs(x):
        return x + 1.0, {"y": x * 2.0}

    t = time_function(two_outputs, jnp.ones(5), warmup=0, repeats=3, min_time=0.0)
    # Every sample waited for the block: the clock stops only after outputs are ready.
    assert t.min >= SLEEP
    assert len(blocked) == 3
    for leaves in blocked:
        assert len(leaves) == 2  # Both outputs of the one call in the sample.
        assert all(isinstance(leaf, jax.Array) and leaf.shape == (5,) for leaf in leaves)


def test_blocks_on_all_calls_of_an_inner_loop(monkeypatch):
    blocked = []
    real_block = jax.block_until_ready

    def spy(tree):
        blocked.append(len(jax.tree.leaves(tree)))
        return real_block(tree)

    monkeypatch.setattr(jax, "block_until_ready", spy)
    t = time_function(_add_one, jnp.ones(3), warmup=0, repeats=2, min_time=5e-3)
    assert t.calls_per_sample > 1
    # The two timed samples are the last two blocks; each covers all calls of its sample.
    assert blocked[-2:] == [t.calls_per_sample] * 2


def test_time_includes_work_of_a_heavy_program():
    # A host callback sleeping inside the compiled program: the work lives in the executable,
    # not in Python around it, so only a blocked measurement can see it.
    def heavy(x):
        def work(v):
            time.sleep(SLEEP / 3)
            return v

        return jax.pure_callback(work, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    t = time_function(heavy, jnp.ones(2), warmup=1, repeats=2, min_time=0.0)
    assert t.min >= SLEEP / 3


# --------------------------------------------------------------------------------------------
# FLOPs and bytes from XLA's cost analysis

# XLA's GPU cost analysis does not count the products it hands to cuBLAS: an H200
# reported 114,687 FLOPs for a 128x128x128 product (2,097,152 x 2 on the CPU), and none
# for a 32x64x16 one. The counts are checked where XLA computes them, on the CPU.
NOT_COUNTED = "XLA's GPU cost analysis leaves out library calls (cuBLAS); checked on the CPU"


@pytest.mark.parametrize(("m", "k", "n"), [(32, 64, 16), (7, 5, 3), (128, 128, 128)])
def test_flops_of_a_matmul_are_exact(m, k, n):
    a = jnp.ones((m, k), jnp.float32)
    b = jnp.ones((k, n), jnp.float32)
    t = time_function(jnp.matmul, a, b, warmup=0, repeats=1, min_time=0.0)
    if not EXACT:
        pytest.skip(NOT_COUNTED)
    assert t.flops == 2 * m * k * n
    # float32 reads of both operands and the write of the result.
    assert t.bytes_accessed == 4 * (m * k + k * n + m * n)
    assert t.flops_per_second == pytest.approx(t.flops / t.median)
    assert t.bytes_per_second == pytest.approx(t.bytes_accessed / t.median)


def test_cost_analysis_accepts_a_list_of_dicts_and_missing_values():
    class Old:  # Older jax returned one dict per program in a list.
        def cost_analysis(self):
            return [{"flops": 10.0, "bytes accessed": 20.0}]

    class Unknown:
        def cost_analysis(self):
            return {"flops": -1.0}

    class Unsupported:
        def cost_analysis(self):
            raise NotImplementedError

    assert benchmark._cost_analysis(Old()) == (10.0, 20.0)
    assert benchmark._cost_analysis(Unknown()) == (None, None)
    assert benchmark._cost_analysis(Unsupported()) == (None, None)


def test_fraction_of_peak():
    t = Timing("f", (0.5, 1.0, 1.5), 1, 0.1, 0.2, flops=4.0, bytes_accessed=None)
    assert t.flops_per_second == 4.0
    assert t.fraction_of_peak(8.0) == 0.5
    with pytest.raises(ValueError, match=r"peak must be a positive number of FLOP/s, got 0"):
        t.fraction_of_peak(0)
    no_flops = dataclasses.replace(t, flops=None)
    with pytest.raises(ValueError, match=r"reported no FLOPs for 'f'"):
        no_flops.fraction_of_peak(1e9)


# --------------------------------------------------------------------------------------------
# The result


def test_statistics_of_samples():
    t = Timing("f", (4.0, 1.0, 3.0, 2.0, 100.0), 2, 0.1, 0.2, None, None)
    assert t.median == 3.0
    assert t.min == 1.0
    assert t.max == 100.0
    assert t.iqr == 2.0  # percentiles 25 and 75 of 1,2,3,4,100 are 2 and 4.
    assert t.stdev == pytest.approx(np.std([4.0, 1.0, 3.0, 2.0, 100.0], ddof=1))
    assert t.flops_per_second is None
    single = Timing("f", (1.0,), 1, 0.0, 0.0, None, None)
    assert single.stdev == 0.0
    assert single.iqr == 0.0


def test_timing_is_frozen_readable_and_serialisable():
    t = time_function(_add_one, jnp.ones(3), repeats=3, min_time=0.0, name="add one")
    with pytest.raises(AttributeError):
        t.median_time = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        t.samples = ()  # type: ignore[misc]
    text = str(t)
    assert text.startswith("add one: ")
    assert "median" in text and "compile" in text and "FLOP" in text
    d = t.to_dict()
    json.dumps(d)
    assert d["median"] == t.median
    assert d["samples"] == list(t.samples)
    assert d["repeats"] == 3
    assert d["compile_time"] == t.compile_time
    assert d["flops"] == t.flops


def test_default_name_is_the_function_name():
    assert time_function(_add_one, jnp.ones(2), repeats=1, min_time=0.0).name == "_add_one"


def test_auto_scales_calls_for_fast_functions():
    fast = time_function(_add_one, jnp.ones(3), repeats=2, min_time=5e-3)
    assert fast.calls_per_sample > 1
    assert time_function(_add_one, jnp.ones(3), repeats=2, min_time=0.0).calls_per_sample == 1


def test_slow_functions_use_one_call_per_sample():
    def slow(x):
        def work(v):
            time.sleep(0.02)
            return v

        return jax.pure_callback(work, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    t = time_function(slow, jnp.ones(2), warmup=0, repeats=2, min_time=0.01)
    assert t.calls_per_sample == 1


# --------------------------------------------------------------------------------------------
# What can be timed


def test_accepts_an_already_jitted_function_and_keeps_its_settings():
    traces = []

    @jax.jit
    def fn(x):
        traces.append(1)
        return x @ x

    x = jnp.ones((4, 4))
    t = time_function(fn, x, repeats=2, min_time=0.0)
    assert len(traces) == 1
    assert t.flops == 2 * 4**3
    assert t.name == "fn"


def test_keyword_arguments_reach_the_function():
    def scaled(x, *, scale):
        return x * scale

    t = time_function(scaled, jnp.ones((2, 3)), scale=jnp.float32(2.0), repeats=1)
    assert t.flops == 6  # One multiply per element.


def test_pytree_arguments():
    def total(tree):
        return tree["a"].sum() + tree["b"][0].sum()

    t = time_function(total, {"a": jnp.ones(3), "b": (jnp.ones(2),)}, repeats=1, min_time=0)
    assert len(t.samples) == 1


def test_static_arguments_are_refused_with_a_fix():
    fn = jax.jit(lambda x, n: x * n, static_argnums=1)
    with pytest.raises(TypeError, match=r"jitted with static arguments.*functools\.partial"):
        time_function(fn, jnp.ones(3), 3, repeats=1)
    # The fix works.
    fixed = jax.jit(functools.partial(lambda x, n: x * n, n=3))
    assert time_function(fixed, jnp.ones(3), repeats=1, min_time=0.0).flops == 3


def test_donated_arguments_are_refused():
    fn = jax.jit(lambda x: x + 1.0, donate_argnums=0)
    with pytest.raises(ValueError, match=r"donates its arguments.*without donation"):
        time_function(fn, jnp.ones(3), repeats=1)


def test_compiled_executable_is_refused():
    compiled = jax.jit(_add_one).lower(jnp.ones(3)).compile()
    with pytest.raises(TypeError, match=r"already compiled executable.*jitted function"):
        time_function(compiled, jnp.ones(3))


# --------------------------------------------------------------------------------------------
# Bad arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repeats": 0}, r"repeats must be an integer >= 1, got 0\. Pass repeats=1 or more"),
        ({"repeats": -3}, r"repeats must be an integer >= 1, got -3"),
        ({"repeats": 2.5}, r"repeats must be an integer >= 1, got 2\.5"),
        ({"repeats": True}, r"repeats must be an integer >= 1, got True"),
        ({"warmup": -1}, r"warmup must be an integer >= 0, got -1\. Pass warmup=1 or more"),
        ({"min_time": -0.1}, r"min_time must be a finite number of seconds >= 0, got -0\.1"),
        ({"min_time": math.nan}, r"min_time must be a finite number of seconds >= 0, got nan"),
        ({"min_time": "1ms"}, r"min_time must be a finite number of seconds >= 0, got '1ms'"),
    ],
)
def test_time_function_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=rf"^time_function: {message}"):
        time_function(_add_one, jnp.ones(3), **kwargs)


def test_time_function_not_callable():
    with pytest.raises(TypeError, match=r"fn must be callable, got Array"):
        time_function(jnp.ones(3), jnp.ones(3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, r"n must be an integer >= 1, got 0"),
        ({"repeats": 0}, r"repeats must be an integer >= 1, got 0"),
        ({"dtype": jnp.int32}, r"dtype must be a floating-point dtype, got int32"),
        ({"dtype": "nonsense"}, r"dtype must be a floating-point dtype, got 'nonsense'"),
    ],
)
def test_measure_matmul_peak_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=rf"^measure_matmul_peak: {message}"):
        measure_matmul_peak(**kwargs)


# --------------------------------------------------------------------------------------------
# Matmul peak


def test_measure_matmul_peak_counts_two_n_cubed_flops(monkeypatch):
    seen = {}
    real = benchmark.time_function

    def spy(fn, *args, **kwargs):
        seen["timing"] = t = real(fn, *args, **kwargs)
        seen["shapes"] = [a.shape for a in args]
        return t

    monkeypatch.setattr(benchmark, "time_function", spy)
    peak = measure_matmul_peak(n=96, repeats=2)
    timing = seen["timing"]
    assert seen["shapes"] == [(96, 96), (96, 96)]
    if not EXACT:
        pytest.skip(NOT_COUNTED)
    assert timing.flops == 2 * 96**3  # XLA agrees with the 2 n^3 count.
    assert peak == pytest.approx(2 * 96**3 / timing.median)
    assert timing.fraction_of_peak(peak) == pytest.approx(1.0)


def test_measure_matmul_peak_bfloat16():
    assert measure_matmul_peak(n=32, dtype=jnp.bfloat16, repeats=1) > 0


# --------------------------------------------------------------------------------------------
# A whole fit


def test_time_fit_separates_the_cold_call():
    calls = []

    def run_fit():
        calls.append(1)
        if len(calls) == 1:
            time.sleep(SLEEP)  # Stands for tracing and compiling on the first call.
        return {"params": jnp.ones(3), "history": [0.5, 0.25]}

    t = time_fit(run_fit, steps=100, examples=3200, repeats=3)
    assert isinstance(t, FitTiming)
    assert len(calls) == 4
    assert len(t.samples) == 3
    assert t.cold_time >= SLEEP
    assert t.max < SLEEP  # No warm call paid the cold cost.
    assert t.cold_overhead == pytest.approx(t.cold_time - t.median)
    assert t.steps_per_second == pytest.approx(100 / t.median)
    assert t.examples_per_second == pytest.approx(3200 / t.median)


def test_time_fit_blocks_on_the_result(monkeypatch):
    blocked = []
    real_block = jax.block_until_ready
    result = (jnp.arange(3.0), "not an array")

    def slow_block(tree):
        blocked.append(tree)
        time.sleep(SLEEP / 3)
        return real_block(tree)

    monkeypatch.setattr(jax, "block_until_ready", slow_block)
    t = time_fit(lambda: result, steps=10, repeats=2)
    assert blocked == [result] * 3  # Cold call and both warm calls.
    assert t.min >= SLEEP / 3  # The wait is inside the timed region.


def test_time_fit_with_a_real_jitted_training_loop():
    @jax.jit
    def run_fit():
        def step(w, _):
            return w - 0.1 * jax.grad(lambda w: jnp.sum((w - 3.0) ** 2))(w), None

        return jax.lax.scan(step, jnp.zeros(4), length=50)[0]

    t = time_fit(run_fit, steps=50, repeats=2, name="scan")
    assert t.examples is None and t.examples_per_second is None
    text = str(t)
    assert text.startswith("scan: ") and "steps/s" in text and "cold" in text
    d = t.to_dict()
    json.dumps(d)
    assert d["steps"] == 50 and d["repeats"] == 2 and d["cold_time"] == t.cold_time


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, r"steps must be an integer >= 1, got 0"),
        ({"steps": 10, "examples": 0}, r"examples must be an integer >= 1, got 0"),
        ({"steps": 10, "repeats": 0}, r"repeats must be an integer >= 1, got 0"),
        ({"steps": 1.5}, r"steps must be an integer >= 1, got 1\.5"),
    ],
)
def test_time_fit_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=rf"^time_fit: {message}"):
        time_fit(lambda: None, **kwargs)


def test_time_fit_not_callable():
    with pytest.raises(TypeError, match=r"run_fit must be callable"):
        time_fit(jnp.ones(3), steps=1)
