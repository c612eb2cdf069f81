"""A per-layer table of paths, output shapes and parameter counts, from shapes alone."""

from __future__ import annotations

import math
from typing import Any

import jax

from jaxnn._types import Spec
from jaxnn.core import Layer, as_layer, output_spec, spec_of

__all__ = ["summary", "count_params"]


def count_params(tree: Any) -> int:
    """The number of scalars in a params (or state) tree of arrays or specs.

    Only shapes are read, so a tree of ``jax.ShapeDtypeStruct`` (from
    ``jax.eval_shape``) counts the same as the arrays it describes, and dtypes play no
    part.

    Args:
        tree: a pytree whose leaves all have a ``shape``: JAX or NumPy arrays, NumPy
            scalars or ``jax.ShapeDtypeStruct``.

    Returns:
        The sum over the leaves of the product of each leaf's shape: 1 for a scalar
        leaf, 0 for a tree without leaves.

    Raises:
        AttributeError: for a leaf without a ``shape``, such as a Python number.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> count_params({"kernel": jnp.zeros((4, 32)), "bias": jnp.zeros(32)})
        160
        >>> count_params({"kernel": jax.ShapeDtypeStruct((4, 32), "float32")}), count_params({})
        (128, 0)
    """
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _nbytes(tree: Any) -> int:
    return sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


def _shape_text(spec: Spec) -> str:
    shapes = [tuple(leaf.shape) for leaf in jax.tree.leaves(spec)]
    return str(shapes[0]) if len(shapes) == 1 else ", ".join(str(s) for s in shapes)


def _rows(layer: Layer, params: Any, state: Any, x: Spec, prefix: str, depth: int, out: list):
    if not layer.children or layer.child_inputs is None:
        return
    inputs = layer.child_inputs(params, state, x)
    for (name, child), child_x in zip(layer.children, inputs, strict=True):
        p, s = params.get(name, {}), state.get(name, {})
        path = f"{prefix}{name}"
        y = output_spec(child, p, s, child_x)
        out.append((depth, path, child.kind, _shape_text(y), count_params(p), count_params(s)))
        _rows(child, p, s, child_x, f"{path}/", depth + 1, out)


def summary(model: Layer | Any, x: Spec) -> str:
    """A table of every layer's path, kind, output shape and parameter count.

    Everything is computed with ``jax.eval_shape``: no parameter is allocated and no
    data is read. The totals are counted on the real ``init``'s tree structure.

    Args:
        model: the layer to describe.
        x: an example input with its batch axis (an array or ``jax.ShapeDtypeStruct``).

    Returns:
        The table as text; ``print`` it.

    Example:
        >>> import jax, jaxnn as nn
        >>> model = nn.Sequential(nn.Dense(32, "relu"), nn.Dense(1, "sigmoid"))
        >>> print(summary(model, jax.ShapeDtypeStruct((10, 4), "float32")))
        Layer     Kind    Output shape   Params
        ---------------------------------------
        dense     Dense   (10, 32)          160
        dense_1   Dense   (10, 1)            33
        ---------------------------------------
        Total params: 193 (772 B)
        Trainable params: 193 (772 B)
        Non-trainable (state): 0 (0 B)
    """
    model = as_layer(model)
    x = spec_of(x)
    params, state = jax.eval_shape(model.init, jax.random.key(0), x)
    rows: list = []
    _rows(model, params, state, x, "", 0, rows)
    if not rows:
        rows.append(
            (
                0,
                model.kind.lower(),
                model.kind,
                _shape_text(output_spec(model, params, state, x)),
                count_params(params),
                count_params(state),
            )
        )
    header = ("Layer", "Kind", "Output shape", "Params")
    table = [(("  " * d) + path, kind, shape, f"{n:,}") for d, path, kind, shape, n, _ in rows]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(4)]

    def line(r: tuple) -> str:
        return (
            f"{r[0]:<{widths[0]}}   {r[1]:<{widths[1]}}   {r[2]:<{widths[2]}}   {r[3]:>{widths[3]}}"
        ).rstrip()

    rule = "-" * len(line(header))
    trainable, fixed = count_params(params), count_params(state)
    lines = [line(header), rule, *(line(r) for r in table), rule]
    lines.append(f"Total params: {trainable + fixed:,} ({_nbytes(params) + _nbytes(state):,} B)")
    lines.append(f"Trainable params: {trainable:,} ({_nbytes(params):,} B)")
    lines.append(f"Non-trainable (state): {fixed:,} ({_nbytes(state):,} B)")
    return "\n".join(lines)
