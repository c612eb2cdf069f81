"""One switch for JAX's persistent compilation cache.

A fresh Python process compiles every jitted program again: for the tutorial's
network that is most of the time to a first trained epoch. JAX can keep compiled
programs on disk and reuse them in later processes; :func:`enable_compilation_cache`
turns that on with settings suited to jaxnn's small, fast-compiling programs.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache"]


def _default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxnn" / "xla"


def enable_compilation_cache(
    path: str | os.PathLike | None = None, *, min_compile_time_secs: float = 0.0
) -> Path:
    """Turns on JAX's persistent compilation cache for this process.

    Call it once, before the first compilation (at the top of a script). Compiled
    programs are then written to ``path`` and a later process that compiles the same
    program (same code, shapes, JAX version and device) loads it instead.
    ``benchmarks/startup.py`` measures the saving on the time to a first trained epoch.

    It sets ``jax_compilation_cache_dir`` and
    ``jax_persistent_cache_min_compile_time_secs``. JAX's own default for the latter
    (one second) would skip almost every jaxnn program, so it is 0 here: everything
    is cached. The environment variables ``JAX_COMPILATION_CACHE_DIR`` and
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` do the same without code.

    Args:
        path: the cache directory, created if missing. By default
            ``$XDG_CACHE_HOME/jaxnn/xla`` (``~/.cache/jaxnn/xla``).
        min_compile_time_secs: cache only programs that took at least this long to
            compile.

    Returns:
        The cache directory, as an absolute path.

    Raises:
        ValueError: for a negative ``min_compile_time_secs``.
        OSError: if the directory cannot be created.

    Example:
        >>> import tempfile, jaxnn as nn
        >>> cache_dir = nn.enable_compilation_cache(tempfile.mkdtemp())  # doctest: +SKIP
    """
    if isinstance(min_compile_time_secs, bool) or not (
        isinstance(min_compile_time_secs, (int, float)) and min_compile_time_secs >= 0
    ):
        raise ValueError(
            "enable_compilation_cache: min_compile_time_secs must be a number >= 0 "
            f"(seconds), got {min_compile_time_secs!r}."
        )
    directory = Path(path).expanduser() if path is not None else _default_dir()
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    return directory
