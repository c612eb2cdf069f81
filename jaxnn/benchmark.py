"""Timing jitted JAX code correctly.

Timing JAX is easy to get wrong: dispatch is asynchronous (a call returns before the work is
done), the first call compiles, and one sample is noise. The helpers here compile once through
the ahead-of-time API and report that cost on its own, warm up, block on every output inside
the timed region, repeat, and report the median and the spread. FLOPs and bytes come from
XLA's own cost analysis of the compiled program, and :func:`measure_matmul_peak` gives this
machine's matmul throughput, so any result can be stated as a fraction of it.

- :func:`time_function`: one jitted function -> :class:`Timing`.
- :func:`time_fit`: a whole training call -> :class:`FitTiming` (steps/s, examples/s).
- :func:`measure_matmul_peak`: FLOP/s of an ``n x n`` matmul on the default device.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._types import DTypeLike

__all__ = ["FitTiming", "Timing", "measure_matmul_peak", "time_fit", "time_function"]

_MAX_CALLS_PER_SAMPLE = 10_000
"""Cap on the auto-scaled inner loop; every output of a sample is kept alive until blocked."""


# --------------------------------------------------------------------------------------------
# Results


class _SampleStats:
    """Summary statistics over ``self.samples`` (seconds); shared by the result types."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        """Median of the samples, in seconds."""
        return float(np.median(self.samples))

    @property
    def mean(self) -> float:
        """Mean of the samples, in seconds."""
        return float(np.mean(self.samples))

    @property
    def min(self) -> float:
        """Fastest sample, in seconds."""
        return float(np.min(self.samples))

    @property
    def max(self) -> float:
        """Slowest sample, in seconds."""
        return float(np.max(self.samples))

    @property
    def iqr(self) -> float:
        """Interquartile range of the samples (75th minus 25th percentile), in seconds."""
        q25, q75 = np.percentile(self.samples, [25, 75])
        return float(q75 - q25)

    @property
    def stdev(self) -> float:
        """Sample standard deviation, in seconds (0 for a single sample)."""
        if len(self.samples) < 2:
            return 0.0
        return float(np.std(self.samples, ddof=1))

    def _stats_dict(self) -> dict[str, float]:
        return {
            "median": self.median,
            "mean": self.mean,
            "min": self.min,
            "max": self.max,
            "iqr": self.iqr,
            "stdev": self.stdev,
        }


@dataclasses.dataclass(frozen=True)
class Timing(_SampleStats):
    """Steady-state timing of one compiled function, with its compile cost kept apart.

    All times are in seconds. Each entry of ``samples`` is the time of one call, measured as
    the time of ``calls_per_sample`` back-to-back calls (blocked on all their outputs) divided
    by ``calls_per_sample``.

    Attributes:
        name: what was timed (the function's ``__name__`` unless given).
        samples: seconds per call, one entry per repeat.
        calls_per_sample: calls averaged in each sample (more than 1 only for functions
            faster than ``min_time``).
        lower_time: seconds to trace and lower to StableHLO (``jit(fn).lower(*args)``).
        compile_time: seconds for XLA to compile the lowered program (``.compile()``).
        flops: floating-point operations per call from XLA's cost analysis, or ``None`` where
            the backend does not report it. On GPUs XLA's count leaves out the products
            and convolutions it hands to cuBLAS and cuDNN, so there it can be far too low
            or ``None`` (an H200 counted 114,687 for a 128x128x128 product).
        bytes_accessed: bytes read and written per call from XLA's cost analysis, or ``None``.

    Derived, as properties: ``median``, ``mean``, ``min``, ``max``, ``iqr``, ``stdev``
    (seconds per call), ``flops_per_second`` and ``bytes_per_second`` (from the median).
    """

    name: str
    samples: tuple[float, ...]
    calls_per_sample: int
    lower_time: float
    compile_time: float
    flops: float | None
    bytes_accessed: float | None

    @property
    def flops_per_second(self) -> float | None:
        """Achieved FLOP/s: ``flops / median``, or ``None`` when FLOPs are unknown."""
        if self.flops is None or self.median <= 0:
            return None
        return self.flops / self.median

    @property
    def bytes_per_second(self) -> float | None:
        """Achieved memory traffic: ``bytes_accessed / median``, or ``None`` when unknown."""
        if self.bytes_accessed is None or self.median <= 0:
            return None
        return self.bytes_accessed / self.median

    def fraction_of_peak(self, peak: float) -> float:
        """Achieved FLOP/s as a fraction of ``peak``.

        Args:
            peak: a throughput in FLOP/s, e.g. from :func:`measure_matmul_peak`.

        Returns:
            ``flops_per_second / peak`` (1.0 means running at the peak).

        Raises:
            ValueError: if ``peak`` is not a positive number, or if XLA reported no FLOPs for
                this program.

        Example:
            >>> import jax.numpy as jnp
            >>> t = time_function(jnp.dot, jnp.ones((8, 8)), jnp.ones((8, 8)), repeats=2)
            >>> t.fraction_of_peak(t.flops_per_second)
            1.0
        """
        if not _is_real(peak) or not peak > 0 or not math.isfinite(peak):
            raise ValueError(
                f"fraction_of_peak: peak must be a positive number of FLOP/s, got {peak!r}. "
                "Pass e.g. measure_matmul_peak()."
            )
        if self.flops_per_second is None:
            raise ValueError(
                f"fraction_of_peak: XLA's cost analysis reported no FLOPs for {self.name!r}, "
                "so there is no FLOP/s to compare. Compare the median time instead."
            )
        return self.flops_per_second / float(peak)

    def to_dict(self) -> dict[str, Any]:
        """All fields and derived figures as a JSON-ready ``dict`` (times in seconds)."""
        return {
            "name": self.name,
            **self._stats_dict(),
            "samples": list(self.samples),
            "repeats": len(self.samples),
            "calls_per_sample": self.calls_per_sample,
            "lower_time": self.lower_time,
            "compile_time": self.compile_time,
            "flops": self.flops,
            "bytes_accessed": self.bytes_accessed,
            "flops_per_second": self.flops_per_second,
            "bytes_per_second": self.bytes_per_second,
        }

    def __str__(self) -> str:
        parts = [
            f"{self.name}: {_fmt_time(self.median)} median "
            f"(min {_fmt_time(self.min)}, max {_fmt_time(self.max)}, "
            f"IQR {_fmt_time(self.iqr)}) over {len(self.samples)} samples "
            f"x {self.calls_per_sample} calls",
            f"lower {_fmt_time(self.lower_time)}, compile {_fmt_time(self.compile_time)}",
        ]
        if self.flops is not None:
            cost = f"{_fmt_si(self.flops, 'FLOP')}"
            if self.bytes_accessed is not None:
                cost += f", {_fmt_si(self.bytes_accessed, 'B')}"
            cost += " per call"
            if self.flops_per_second is not None:
                cost += f", {_fmt_si(self.flops_per_second, 'FLOP/s')}"
            parts.append(cost)
        return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class FitTiming(_SampleStats):
    """Timing of a whole training call: the cold first call apart from the warm ones.

    All times are in seconds.

    Attributes:
        name: what was timed.
        cold_time: seconds of the first call, which includes tracing and compiling.
        samples: seconds of each warm call after the first.
        steps: training steps one call runs.
        examples: training examples one call processes, or ``None`` if not given.

    Derived, as properties: ``median``, ``mean``, ``min``, ``max``, ``iqr``, ``stdev`` of
    the warm calls; ``steps_per_second`` and ``examples_per_second`` (from the median);
    ``cold_overhead`` (``cold_time - median``, roughly the compile cost).
    """

    name: str
    cold_time: float
    samples: tuple[float, ...]
    steps: int
    examples: int | None

    @property
    def steps_per_second(self) -> float:
        """Warm training steps per second: ``steps / median``."""
        return self.steps / self.median if self.median > 0 else math.inf

    @property
    def examples_per_second(self) -> float | None:
        """Warm examples per second: ``examples / median``, or ``None`` if not given."""
        if self.examples is None:
            return None
        return self.examples / self.median if self.median > 0 else math.inf

    @property
    def cold_overhead(self) -> float:
        """Seconds the first call took beyond a warm one (tracing, compiling, first run)."""
        return self.cold_time - self.median

    def to_dict(self) -> dict[str, Any]:
        """All fields and derived figures as a JSON-ready ``dict`` (times in seconds)."""
        return {
            "name": self.name,
            "cold_time": self.cold_time,
            **self._stats_dict(),
            "samples": list(self.samples),
            "repeats": len(self.samples),
            "steps": self.steps,
            "examples": self.examples,
            "steps_per_second": self.steps_per_second,
            "examples_per_second": self.examples_per_second,
            "cold_overhead": self.cold_overhead,
        }

    def __str__(self) -> str:
        rate = f"{self.steps_per_second:,.1f} steps/s"
        if self.examples_per_second is not None:
            rate += f", {self.examples_per_second:,.0f} examples/s"
        return (
            f"{self.name}: {_fmt_time(self.median)} median warm "
            f"(min {_fmt_time(self.min)}, max {_fmt_time(self.max)}) over "
            f"{len(self.samples)} runs of {self.steps} steps; {rate}; "
            f"cold first run {_fmt_time(self.cold_time)}"
        )


# --------------------------------------------------------------------------------------------
# Timing


def time_function(
    fn: Callable[..., Any],
    *args: Any,
    warmup: int = 2,
    repeats: int = 20,
    min_time: float = 0.01,
    name: str | None = None,
    **kwargs: Any,
) -> Timing:
    """Times ``fn(*args, **kwargs)`` compiled once, with its compile cost reported apart.

    The function is traced, lowered and compiled once through JAX's ahead-of-time API
    (``jax.jit(fn).lower(*args, **kwargs).compile()``), each stage timed. The compiled
    executable is then called ``warmup`` times untimed, and ``repeats`` samples are taken.
    Each sample calls the executable ``calls_per_sample`` times back to back and stops the
    clock only after ``jax.block_until_ready`` on every output, so asynchronous dispatch
    cannot hide work. ``calls_per_sample`` is 1 unless one call is faster than ``min_time``,
    in which case it grows until a sample lasts at least ``min_time`` (at most 10,000).

    Arguments are passed to the executable unchanged on every call; a function that donates
    its inputs cannot be called twice on them and is refused.

    Args:
        fn: the function to time: a plain function of arrays (it is wrapped in ``jax.jit``)
            or an already-jitted one (its own ``jit`` settings are kept). A jitted function
            with static arguments must have them bound first with ``functools.partial``.
        *args: positional arguments for ``fn``: arrays or pytrees of arrays.
        warmup: untimed calls before sampling, ``>= 0``.
        repeats: number of samples, ``>= 1``.
        min_time: shortest sample, in seconds, ``>= 0``; 0 means one call per sample.
        name: label for the result; defaults to ``fn.__name__``.
        **kwargs: keyword arguments for ``fn`` (any but the four names above).

    Returns:
        A :class:`Timing`: per-call median, min, max, IQR, stdev and all samples; lowering
        and compile time; FLOPs and bytes from XLA's cost analysis and the achieved FLOP/s.

    Raises:
        TypeError: if ``fn`` is not callable, is an already compiled executable, or was
            jitted with static arguments.
        ValueError: if ``warmup``, ``repeats`` or ``min_time`` is out of range, or ``fn``
            donates its arguments.

    Example:
        >>> import jax.numpy as jnp
        >>> a, b = jnp.ones((32, 64)), jnp.ones((64, 16))
        >>> t = time_function(jnp.matmul, a, b, repeats=3, min_time=0.0)
        >>> t.flops  # 2 * m * k * n
        65536.0
        >>> len(t.samples), t.calls_per_sample
        (3, 1)
    """
    _check_callable("time_function", "fn", fn)
    if isinstance(fn, jax.stages.Compiled):
        raise TypeError(
            "time_function: fn is an already compiled executable, so its compile time cannot "
            "be measured. Pass the function itself or the jitted function instead."
        )
    _check_int("time_function", "warmup", warmup, minimum=0)
    _check_int("time_function", "repeats", repeats, minimum=1)
    _check_seconds("time_function", "min_time", min_time)
    if name is None:
        name = getattr(fn, "__name__", None) or type(fn).__name__

    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    start = time.perf_counter()
    lowered = jitted.lower(*args, **kwargs)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    compiled_at = time.perf_counter()

    if compiled.in_tree != jax.tree.structure((args, kwargs)):
        raise TypeError(
            f"time_function: {name!r} was jitted with static arguments, so the compiled "
            "executable takes fewer arguments than were given. Bind them first, e.g. "
            "time_function(jax.jit(functools.partial(f, n=3)), x), or pass the plain function."
        )
    if any(info.donated for info in jax.tree.leaves(compiled.args_info)):
        raise ValueError(
            f"time_function: {name!r} donates its arguments (donate_argnums/donate_argnames), "
            "so they are deleted by the first call and cannot be reused for the next. Time a "
            "version jitted without donation."
        )

    def run(calls: int) -> float:
        outputs = []
        begin = time.perf_counter()
        for _ in range(calls):
            outputs.append(compiled(*args, **kwargs))
        jax.block_until_ready(outputs)
        return time.perf_counter() - begin

    for _ in range(warmup):
        run(1)
    calls = _calibrate(run, min_time) if min_time > 0 else 1
    samples = tuple(run(calls) / calls for _ in range(repeats))
    flops, bytes_accessed = _cost_analysis(compiled)
    return Timing(
        name=name,
        samples=samples,
        calls_per_sample=calls,
        lower_time=lowered_at - start,
        compile_time=compiled_at - lowered_at,
        flops=flops,
        bytes_accessed=bytes_accessed,
    )


def time_fit(
    run_fit: Callable[[], Any],
    *,
    steps: int,
    examples: int | None = None,
    repeats: int = 3,
    name: str = "fit",
) -> FitTiming:
    """Times a whole training call, the cold first call apart from the warm ones.

    ``run_fit`` is called ``repeats + 1`` times. Each call is timed up to the moment its
    result is ready (``jax.block_until_ready`` on whatever it returns), so asynchronous
    dispatch cannot hide work. The first call, which traces and compiles, is reported as
    ``cold_time``; the others are the samples.

    Args:
        run_fit: a zero-argument callable that trains and returns its result, e.g.
            ``lambda: trainer.fit(state, x, y, epochs=1, verbose=0)`` or a jitted
            ``lax.scan`` training loop. Non-array parts of the result are ignored when
            blocking.
        steps: training steps one call of ``run_fit`` runs, ``>= 1``.
        examples: training examples one call processes (steps times batch size), ``>= 1``;
            optional.
        repeats: number of warm calls, ``>= 1``.
        name: label for the result.

    Returns:
        A :class:`FitTiming` with the cold time, the warm samples and their statistics, and
        steps and examples per second.

    Raises:
        TypeError: if ``run_fit`` is not callable.
        ValueError: if ``steps``, ``examples`` or ``repeats`` is out of range.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> def run_fit():
        ...     step = lambda w, _: (w - 0.1 * jax.grad(lambda w: (w - 3.0) ** 2)(w), None)
        ...     return jax.lax.scan(step, 0.0, length=100)[0]
        >>> t = time_fit(jax.jit(run_fit), steps=100, examples=100 * 32, repeats=2)
        >>> len(t.samples), t.steps_per_second > 0, t.examples_per_second > 0
        (2, True, True)
    """
    _check_callable("time_fit", "run_fit", run_fit)
    _check_int("time_fit", "steps", steps, minimum=1)
    if examples is not None:
        _check_int("time_fit", "examples", examples, minimum=1)
    _check_int("time_fit", "repeats", repeats, minimum=1)

    def run() -> float:
        begin = time.perf_counter()
        jax.block_until_ready(run_fit())
        return time.perf_counter() - begin

    cold_time = run()
    samples = tuple(run() for _ in range(repeats))
    return FitTiming(
        name=name, cold_time=cold_time, samples=samples, steps=steps, examples=examples
    )


def measure_matmul_peak(
    n: int = 2048, dtype: DTypeLike = jnp.float32, *, repeats: int = 5
) -> float:
    """Measures this machine's matmul throughput, in FLOP/s, on the default device.

    Times an ``(n, n) @ (n, n)`` product of random ``dtype`` matrices with
    :func:`time_function` and counts ``2 * n**3`` FLOPs per product. The median sample is
    used, so the figure is comparable with :attr:`Timing.flops_per_second`, and any result
    can be stated as a fraction of it with :meth:`Timing.fraction_of_peak`. Large ``n``
    (the default 2048) is needed to approach the real peak; small ``n`` measures overhead.

    Args:
        n: side of the square matrices, ``>= 1``.
        dtype: a floating-point dtype, e.g. ``jnp.float32`` or ``jnp.bfloat16``.
        repeats: number of timed products, ``>= 1``.

    Returns:
        Achieved FLOP/s of the product.

    Raises:
        ValueError: if ``n`` or ``repeats`` is not a positive integer, or ``dtype`` is not a
            floating-point dtype.

    Example:
        >>> measure_matmul_peak(n=64, repeats=2) > 0
        True
    """
    _check_int("measure_matmul_peak", "n", n, minimum=1)
    _check_int("measure_matmul_peak", "repeats", repeats, minimum=1)
    try:
        dt = jnp.dtype(dtype)
    except TypeError as err:
        raise ValueError(
            f"measure_matmul_peak: dtype must be a floating-point dtype, got {dtype!r}. "
            "Pass e.g. jnp.float32 or jnp.bfloat16."
        ) from err
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(
            f"measure_matmul_peak: dtype must be a floating-point dtype, got {dt}. "
            "Pass e.g. jnp.float32 or jnp.bfloat16."
        )
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), dt)
    b = jax.random.normal(key_b, (n, n), dt)
    timing = time_function(
        jnp.matmul, a, b, warmup=1, repeats=repeats, min_time=0.0, name=f"matmul_{n}"
    )
    return 2.0 * n**3 / timing.median


# --------------------------------------------------------------------------------------------
# Helpers


def _calibrate(run: Callable[[int], float], min_time: float) -> int:
    """Smallest-ish number of calls whose blocked run lasts at least ``min_time`` seconds."""
    calls = 1
    while calls < _MAX_CALLS_PER_SAMPLE:
        elapsed = run(calls)
        if elapsed >= min_time:
            break
        # Aim 20% past the target from the measured rate; at least double, to converge fast.
        wanted = math.ceil(calls * 1.2 * min_time / max(elapsed, 1e-9))
        calls = min(_MAX_CALLS_PER_SAMPLE, max(2 * calls, wanted))
    return calls


def _cost_analysis(compiled: jax.stages.Compiled) -> tuple[float | None, float | None]:
    """FLOPs and bytes accessed per call from XLA, or ``None`` for what it does not report."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # Backends without a cost model raise various errors; none is fatal.
        return None, None
    # jax 0.10 returns one dict; older versions returned a list with one dict per program.
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if not analysis:
        return None, None

    def get(key: str) -> float | None:
        value = analysis.get(key)
        if value is None or not math.isfinite(value) or value < 0:
            return None
        return float(value)

    return get("flops"), get("bytes accessed")


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_callable(where: str, arg: str, value: Any) -> None:
    if not callable(value):
        raise TypeError(
            f"{where}: {arg} must be callable, got {type(value).__name__} {value!r}. "
            "Pass a function (or a lambda wrapping the call)."
        )


def _check_int(where: str, arg: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"{where}: {arg} must be an integer >= {minimum}, got {value!r}. "
            f"Pass {arg}={max(minimum, 1)} or more."
        )


def _check_seconds(where: str, arg: str, value: Any) -> None:
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{where}: {arg} must be a finite number of seconds >= 0, got {value!r}. "
            f"Pass e.g. {arg}=0.01, or {arg}=0 for one call per sample."
        )


def _fmt_time(seconds: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _fmt_si(value: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"
