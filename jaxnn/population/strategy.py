"""How a population's members run: side by side, one after another, or in chunks.

* ``"vmap"`` (default): all members side by side, the fastest when memory allows;
* ``"map"``: one member after another with ``lax.map``, the least memory;
* ``"chunked"``: ``vmap`` within chunks of ``chunk_size`` members, ``lax.map`` over
  the chunks, to bound memory while keeping most of the speed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["STRATEGIES", "check_strategy", "over_members"]

STRATEGIES = ("vmap", "map", "chunked")
"""The execution strategies, by name."""


def over_members(
    fn: Callable, strategy: str, chunk_size: int | None, n: int
) -> Callable[[Any], Any]:
    """Runs ``fn(member_args) -> out`` for every member, stacked on the leading axis.

    Args:
        fn: one member's program; its argument is one member's slice of ``args``.
        strategy: ``"vmap"``, ``"map"`` or ``"chunked"``.
        chunk_size: members per chunk (``"chunked"`` only), from :func:`check_strategy`.
        n: the number of members.

    Returns:
        ``run(args)``, which splits ``args`` along the leading axis, runs ``fn`` on
        each member and stacks the outputs.

    Example:
        >>> run = over_members(lambda a: a * 2, "chunked", 2, 3)
        >>> run(jnp.arange(3)).tolist()
        [0, 2, 4]
    """
    if strategy == "vmap":
        return jax.vmap(fn)
    if strategy == "map":
        return lambda args: jax.lax.map(fn, args)
    chunks = -(-n // chunk_size)
    padded = chunks * chunk_size

    def run(args: Any) -> Any:
        def split(a: jax.Array) -> jax.Array:
            if padded != n:  # pad with copies of member 0; their results are dropped
                a = jnp.concatenate([a, jnp.repeat(a[:1], padded - n, axis=0)])
            return a.reshape(chunks, chunk_size, *a.shape[1:])

        out = jax.lax.map(jax.vmap(fn), jax.tree.map(split, args))
        return jax.tree.map(lambda a: a.reshape(padded, *a.shape[2:])[:n], out)

    return run


def check_strategy(strategy: str, chunk_size: int | None, n: int) -> int | None:
    """Checks an execution strategy; returns the chunk size (``None`` unless chunked).

    Raises:
        ValueError: for an unknown strategy, or ``"chunked"`` without a positive int
            ``chunk_size``.

    Example:
        >>> check_strategy("chunked", 64, 10)
        10
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"population: unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}."
        )
    if strategy == "chunked":
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, (int, np.integer))
            or chunk_size < 1
        ):
            raise ValueError(
                "population: strategy='chunked' needs chunk_size, a positive int (members "
                f"vmapped together), got {chunk_size!r}."
            )
        return min(int(chunk_size), n)
    return None
