"""``Repeat``: n copies of a layer with stacked parameters, run with ``lax.scan``.

A deep stack of identical blocks (transformer layers, residual blocks) written as a
``Sequential`` of n copies is traced and compiled n times over. ``Repeat`` stores the
n copies' params with a leading axis of size n and runs them with one ``lax.scan``, so
the block is traced and compiled once whatever n is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._types import Params, PRNGKey, Spec, State
from jaxnn.core import (
    Layer,
    LayerError,
    as_layer,
    check_entries,
    child_key,
    configured,
    output_spec,
    scope,
    spec_of,
    unique_names,
)
from jaxnn.layers._common import check_positive

__all__ = ["Repeat"]

_KIND = "Repeat"
_DEPTH = "depth"


def _check_n(n: Any) -> None:
    check_positive(_KIND, "n (the number of copies)", n)


def _check_unroll(unroll: Any) -> None:
    is_int = isinstance(unroll, (int, np.integer)) and not isinstance(unroll, bool)
    if not (isinstance(unroll, bool) or (is_int and unroll >= 1)):
        raise LayerError(
            _KIND,
            f"unroll must be a bool (True: unroll all copies into straight-line code) or a "
            f"positive integer (copies per scan iteration), got {unroll!r}.",
        )


def _describe(spec: Spec) -> Any:
    return jax.tree.map(lambda a: (tuple(a.shape), str(jnp.dtype(a.dtype))), spec)


def _same_spec(a: Spec, b: Spec) -> bool:
    return jax.tree.structure(a) == jax.tree.structure(b) and _describe(a) == _describe(b)


def _shape_error(x: Spec, y: Spec) -> LayerError:
    return LayerError(
        _KIND,
        f"the repeated layer maps {_describe(x)} to {_describe(y)}, but each copy feeds the "
        "next, so a repeated layer must keep its input's shape and dtype. Make the layer "
        "keep them (e.g. end it with Dense of the input's width), or use Sequential for "
        "layers that change the shape.",
    )


@configured
def Repeat(
    layer: Layer | Callable | str,
    n: int,
    *,
    unroll: bool | int = False,
    dynamic_depth: bool = False,
    name: str | None = None,
) -> Layer:
    """``n`` copies of a layer, each with its own params, applied one after another.

    The copies' params and state are stacked: every leaf gets a leading axis of size
    ``n``, and copy ``i`` owns slice ``i``. ``init`` runs the layer's ``init`` under
    ``jax.vmap`` over ``n`` distinct keys (split from the key derived from the
    layer's name), and ``apply`` runs the copies with ``jax.lax.scan``, so the layer is
    traced once and compiles to one loop body whatever ``n`` is. The result equals
    ``Sequential`` of the ``n`` copies with the same params. In ``apply`` each copy gets
    its own key (the same split), so dropout masks differ between copies, and each
    copy's new state (e.g. BatchNorm statistics) is returned in its slice.

    Args:
        layer: the layer to repeat (a layer, a function or an activation name). It
            must map its input to an output of the same shape and dtype (a pytree
            input must keep its structure too).
        n: the number of copies; a positive integer.
        unroll: ``False`` runs a rolled loop (the fastest to compile); ``True``
            unrolls all copies into straight-line code (sometimes faster to run, as
            slow to compile as the unrolled stack); an integer ``k`` runs ``k``
            copies per loop iteration (``lax.scan``'s ``unroll``).
        dynamic_depth: when ``True``, the state also holds ``depth`` (an ``int32``
            scalar, ``n`` after ``init``): only the first ``depth`` copies run and the
            others pass their input through unchanged (their params get zero
            gradients and their state is kept). ``depth`` is traced, so changing it
            never recompiles; a population sweep over depth
            (:func:`jaxnn.population.sweep`) gives each member its own.
        name: the name of this layer inside a parent.

    Returns:
        A layer with the input's shape and dtype at its output, whose params and state
        hold the stacked ones of the layer under its name (``dense``, ...) with leading
        axis ``n`` (and, with ``dynamic_depth``, the state's ``depth``).

    Raises:
        LayerError: for a non-positive ``n`` or a bad ``unroll``; at ``init`` (and in
            ``apply``) if the layer changes its input's shape or dtype; in ``apply`` for
            params or state without the leading axis ``n``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxnn import Dense
        >>> stack = Repeat(Dense(8, "tanh"), 6)
        >>> x = jnp.ones((4, 8))  # (batch, features)
        >>> params, state = stack.init(jax.random.key(0), x)
        >>> params["dense"]["kernel"].shape  # (n, in, out)
        (6, 8, 8)
        >>> stack.apply(params, state, x)[0].shape
        (4, 8)
        >>> shallow = Repeat(Dense(8, "tanh"), 6, dynamic_depth=True)
        >>> params, state = shallow.init(jax.random.key(0), x)
        >>> state = {**state, "depth": jnp.int32(2)}  # run the first 2 copies only
        >>> y2 = shallow.apply(params, state, x)[0]
        >>> two = jax.tree.map(lambda a: a[:2], params)
        >>> bool(jnp.allclose(y2, Repeat(Dense(8, "tanh"), 2).apply(two, {}, x)[0]))
        True
    """
    _check_n(n)
    _check_unroll(unroll)
    if not isinstance(dynamic_depth, bool):
        raise LayerError(
            _KIND, f"dynamic_depth must be a bool, got {type(dynamic_depth).__name__}."
        )
    n = int(n)
    child = as_layer(layer)
    (child_name,) = unique_names([child], _KIND)
    names = (child_name,)

    def copy_keys(key: PRNGKey | None) -> PRNGKey | None:
        if key is None:
            return None
        return jax.random.split(child_key(key, child_name), n)

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        with scope(child_name):
            params, state = jax.vmap(lambda k: child.init(k, x))(copy_keys(key))
            first = jax.tree.map(lambda a: a[0], (params, state))
            y = output_spec(child, *first, x)
        if not _same_spec(spec_of(x), y):
            raise _shape_error(spec_of(x), y)
        state = {child_name: state} if state else {}
        if dynamic_depth:
            state[_DEPTH] = jnp.asarray(n, jnp.int32)
        return ({child_name: params} if params else {}), state

    def check_stacked(what: str, tree: Any) -> None:
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            shape = tuple(getattr(leaf, "shape", ()))
            if not shape or shape[0] != n:
                where = "/".join(str(getattr(p, "key", p)) for p in path)
                raise LayerError(
                    _KIND,
                    f"{what} leaf {child_name}/{where} has shape {shape}, but this layer "
                    f"repeats {n} copies, so every leaf needs the leading axis {n}. Pass "
                    f"the {what} returned by this model's own init.",
                )

    # Made once per layer: an eager ``apply`` would otherwise trace and compile its scan
    # anew on every call (the scan's body is a new closure each time). Inside a caller's
    # jit, this is inlined like any other function.
    @functools.partial(jax.jit, static_argnames="training")
    def scan_copies(
        p: Params, s: State, x: Any, key: PRNGKey | None, depth: Any, training: bool
    ) -> tuple:
        def body(h: Any, copy: tuple) -> tuple[Any, State]:
            p_i, s_i, k_i, i = copy
            with scope(child_name):
                y, s_new = child.apply(p_i, s_i, h, key=k_i, training=training)
            if not _same_spec(spec_of(h), spec_of(y)):
                raise _shape_error(spec_of(h), spec_of(y))
            if depth is not None:  # copies past the depth pass their input through
                run = i < depth
                y = jax.tree.map(lambda new, old: jnp.where(run, new, old), y, h)
                s_new = jax.tree.map(lambda new, old: jnp.where(run, new, old), s_new, s_i)
            return y, s_new

        copies = (p, s, copy_keys(key), jnp.arange(n, dtype=jnp.int32))
        return jax.lax.scan(body, x, copies, length=n, unroll=unroll)

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        check_entries(_KIND, "params", params, names)
        if dynamic_depth:
            check_entries(_KIND, "state", state, (*names, _DEPTH), required=(_DEPTH,))
        else:
            check_entries(_KIND, "state", state, names)
        p, s = params.get(child_name, {}), state.get(child_name, {})
        check_stacked("params", p)
        check_stacked("state", s)
        depth = state[_DEPTH] if dynamic_depth else None
        y, new_state = scan_copies(p, s, x, key, depth, training=training)
        new_state = {child_name: new_state} if new_state else {}
        if dynamic_depth:
            new_state[_DEPTH] = depth
        return y, new_state

    return Layer(init, apply, _KIND, name, ((child_name, child),), None)
