"""Combinators: bigger layers built from smaller ones.

Each child gets a readable unique name, a key derived from that name, and an input
spec found with ``jax.eval_shape`` on the previous child's ``apply``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

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
    unique_names,
)
from jaxnn.core import merge as merge_outputs
from jaxnn.repeat import Repeat  # its own module, re-exported with its peers

__all__ = ["Parallel", "Repeat", "Residual", "Sequential"]

LayerLike = Layer | Callable | str


def _children(layers: Sequence[LayerLike], kind: str) -> tuple[tuple[str, Layer], ...]:
    lifted = [as_layer(layer) for layer in layers]
    return tuple(zip(unique_names(lifted, kind), lifted, strict=True))


def _flatten_args(layers: tuple, kind: str) -> tuple:
    if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
        layers = tuple(layers[0])
    if not layers:
        raise LayerError(kind, "needs at least one layer; got none.")
    return layers


def _init_child(
    name: str, layer: Layer, key: PRNGKey, x: Spec, params: Params, state: State
) -> None:
    with scope(name):
        p, s = layer.init(child_key(key, name), x)
    if p:
        params[name] = p
    if s:
        state[name] = s


def _apply_child(
    name: str,
    layer: Layer,
    params: Params,
    state: State,
    x: Any,
    key: PRNGKey | None,
    training: bool,
    new_state: State,
) -> Any:
    with scope(name):
        y, s = layer.apply(
            params.get(name, {}),
            state.get(name, {}),
            x,
            key=child_key(key, name),
            training=training,
        )
    if s:
        new_state[name] = s
    return y


@configured
def Sequential(*layers: LayerLike | Sequence[LayerLike], name: str | None = None) -> Layer:
    """Chains layers: the output of each is the input of the next.

    Args:
        *layers: layers, plain functions (``jax.nn.relu``) or activation names
            (``"relu"``), as separate arguments or as one list.
        name: the name of this layer inside a parent.

    Returns:
        A layer whose params and state hold one entry per child that has any, keyed
        by the child's name (``dense``, ``dense_1``, ...).

    Raises:
        LayerError: with no layers, or two children of the same name.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxnn import Dense, Sequential
        >>> model = Sequential([Dense(32), jax.nn.relu, Dense(1, activation="sigmoid")])
        >>> params, state = model.init(jax.random.key(0), jnp.zeros((10, 4)))
        >>> sorted(params)
        ['dense', 'dense_1']
        >>> model.apply(params, state, jnp.zeros((10, 4)))[0].shape
        (10, 1)
    """
    children = _children(_flatten_args(layers, "Sequential"), "Sequential")
    names = [n for n, _ in children]

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        params: Params = {}
        state: State = {}
        for child_name, child in children:
            _init_child(child_name, child, key, x, params, state)
            with scope(child_name):
                x = output_spec(child, params.get(child_name, {}), state.get(child_name, {}), x)
        return params, state

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        check_entries("Sequential", "params", params, names)
        check_entries("Sequential", "state", state, names)
        new_state: State = {}
        for child_name, child in children:
            x = _apply_child(child_name, child, params, state, x, key, training, new_state)
        return x, new_state

    def child_inputs(params: Params, state: State, x: Spec) -> list[Spec]:
        specs = []
        for child_name, child in children:
            specs.append(x)
            x = output_spec(child, params.get(child_name, {}), state.get(child_name, {}), x)
        return specs

    return Layer(init, apply, "Sequential", name, children, child_inputs)


@configured
def Parallel(
    *layers: LayerLike | Sequence[LayerLike],
    merge: str | Callable[[list], Any] | None = "concat",
    name: str | None = None,
) -> Layer:
    """Fans the same input out to several branches and merges their outputs.

    Args:
        *layers: the branches (layers, functions or activation names), as separate
            arguments or as one list. Each sees the same input.
        merge: how to merge the outputs, in the words of :func:`jaxnn.core.merge`:
            ``"concat"`` (along the last axis, the default), ``"add"``, ``"mul"``,
            ``"mean"``, ``"stack"`` (along a new last axis), ``None`` for a tuple of the
            outputs, or a function ``f(outputs) -> y`` of the list of outputs.
        name: the name of this layer inside a parent.

    Returns:
        A layer with one params and state entry per branch that has any.

    Raises:
        LayerError: for an unknown merge (a Keras word such as ``"sum"`` names the
            jaxnn word), or branch outputs the merge cannot combine
            (found at ``init``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxnn import Dense, Parallel
        >>> block = Parallel(Dense(3), Dense(5))
        >>> params, state = block.init(jax.random.key(0), jnp.zeros((2, 4)))
        >>> block.apply(params, state, jnp.zeros((2, 4)))[0].shape
        (2, 8)
    """
    children = _children(_flatten_args(layers, "Parallel"), "Parallel")
    names = [n for n, _ in children]
    merge_fn = merge_outputs("Parallel", merge)

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        params: Params = {}
        state: State = {}
        for child_name, child in children:
            _init_child(child_name, child, key, x, params, state)
        outs = []
        for child_name, child in children:
            with scope(child_name):
                outs.append(
                    output_spec(child, params.get(child_name, {}), state.get(child_name, {}), x)
                )
        try:
            jax.eval_shape(merge_fn, outs)
        except (TypeError, ValueError) as e:
            shapes = [getattr(o, "shape", o) for o in outs]
            raise LayerError(
                "Parallel",
                f"cannot merge the branch outputs of shapes {shapes} with merge={merge!r} "
                f"({e}). Make the branches agree, or choose another merge.",
            ) from e
        return params, state

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        check_entries("Parallel", "params", params, names)
        check_entries("Parallel", "state", state, names)
        new_state: State = {}
        outs = [_apply_child(n, c, params, state, x, key, training, new_state) for n, c in children]
        return merge_fn(outs), new_state

    def child_inputs(params: Params, state: State, x: Spec) -> list[Spec]:
        del params, state
        return [x] * len(children)

    return Layer(init, apply, "Parallel", name, children, child_inputs)


@configured
def Residual(layer: LayerLike, *, name: str | None = None) -> Layer:
    """Adds a layer's output to its input: ``y = x + layer(x)``.

    Args:
        layer: the inner layer; its output must have the input's shape.
        name: the name of this layer inside a parent.

    Returns:
        A layer whose params and state hold the inner layer's under its name.

    Raises:
        LayerError: at ``init``, if the inner layer changes the shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxnn import Dense, Residual
        >>> block = Residual(Dense(4))
        >>> params, state = block.init(jax.random.key(0), jnp.zeros((2, 4)))
        >>> block.apply(params, state, jnp.ones((2, 4)))[0].shape
        (2, 4)
    """
    children = _children([layer], "Residual")
    names = [n for n, _ in children]
    ((child_name, child),) = children

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        params: Params = {}
        state: State = {}
        _init_child(child_name, child, key, x, params, state)
        with scope(child_name):
            out = output_spec(child, params.get(child_name, {}), state.get(child_name, {}), x)
        if getattr(out, "shape", None) != getattr(x, "shape", None):
            raise LayerError(
                "Residual",
                f"the inner layer maps shape {tuple(x.shape)} to {tuple(out.shape)}, but a "
                "residual adds its output to its input, so the shapes must agree. Make the "
                "inner layer keep the shape (e.g. end it with Dense of the input's width).",
            )
        return params, state

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        check_entries("Residual", "params", params, names)
        check_entries("Residual", "state", state, names)
        new_state: State = {}
        y = _apply_child(child_name, child, params, state, x, key, training, new_state)
        return x + y.astype(x.dtype), new_state

    def child_inputs(params: Params, state: State, x: Spec) -> list[Spec]:
        del params, state
        return [x]

    return Layer(init, apply, "Residual", name, children, child_inputs)
