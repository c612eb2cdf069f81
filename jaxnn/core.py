"""The layer contract: the ``Layer`` type, lifting plain functions, names and keys.

A layer is an immutable value holding two pure functions::

    init(key, x)                                         -> (params, state)
    apply(params, state, x, *, key=None, training=False) -> (y, state)

``params`` and ``state`` are plain nested ``dict``s of arrays. Everything else in
jaxnn (combinators, training, populations) is built on this contract alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import operator
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import activations
from jaxnn._checks import check_key, lookup, narrow
from jaxnn._types import ApplyFn, InitFn, Params, PRNGKey, Spec, State

__all__ = [
    "Layer",
    "LayerError",
    "as_layer",
    "child_key",
    "check_entries",
    "merge",
    "output_spec",
    "scope",
    "snake_case",
    "spec_of",
    "unique_names",
]


class LayerError(ValueError):
    """A mistake found by a layer, reported with the layer's path inside the model.

    The message reads ``"<Kind> '<path>': <what happened and the fix>"``. A combinator
    that catches the error from a child prepends the child's name to the path, so
    the final message names the layer as ``encoder/dense_1``.
    """

    def __init__(self, kind: str, message: str, path: Sequence[str] = ()):
        self.kind = kind
        self.message = message
        self.path = list(path)
        super().__init__(kind, message)

    def __str__(self) -> str:
        where = f"{self.kind} '{'/'.join(self.path)}'" if self.path else self.kind
        return f"{where}: {self.message}"


@contextlib.contextmanager
def scope(name: str) -> Iterator[None]:
    """Prepends ``name`` to the path of any :class:`LayerError` raised inside.

    Combinators wrap each call into a child in ``with scope(child_name):``, so that an
    error deep inside a model names the full path of the layer that raised it.

    Args:
        name: the path component to prepend, such as a child's name (``"encoder"``).

    Yields:
        ``None``; the body of the ``with`` block runs at this point.

    Raises:
        LayerError: the error raised inside the block, re-raised after ``name`` is
            inserted at the front of its ``path`` (the same exception object,
            changed in place). Other exceptions pass through unchanged.

    Example:
        >>> try:
        ...     with scope("encoder"):
        ...         raise LayerError("Dense", "bad input.", ["dense_1"])
        ... except LayerError as e:
        ...     print(e)
        Dense 'encoder/dense_1': bad input.
    """
    try:
        yield
    except LayerError as e:
        e.path.insert(0, name)
        raise


@dataclasses.dataclass(frozen=True)
class Layer:
    """An immutable layer: a pair of pure functions plus the facts combinators need.

    Write a layer of your own as a function that returns a ``Layer`` (as ``Dense``
    and ``BatchNorm`` are written); ``Layer`` is not meant to be subclassed.
    ``Layer(init, apply, kind)`` checks, when the layer runs, what the two functions
    return, and names the layer (by its path inside a model) when they return
    anything else than ``(params, state)`` and ``(y, state)``. An ``apply`` that
    takes no ``key`` or ``training`` keyword is called without them (a
    deterministic layer). NumPy float64 and int64 inputs to ``apply`` are cast to
    JAX's 32-bit dtypes (unless 64-bit mode is on), as ``fit`` casts them.

    Attributes:
        init: ``init(key, x) -> (params, state)``. ``x`` is an example input with
            its batch axis (an array or ``jax.ShapeDtypeStruct``); no data is read.
        apply: ``apply(params, state, x, *, key=None, training=False) -> (y, state)``.
        kind: the constructor's name (``"Dense"``); its snake_case form is the default
            name inside a parent (``dense``, ``dense_1``, ...).
        name: the name the user gave, or ``None``.
        children: ``(name, layer)`` pairs of a combinator, in order; empty for a leaf.
        child_inputs: for a combinator, ``child_inputs(params, state, x)`` gives the
            input spec of each child, in ``children`` order (used by ``summary``).
        config: what a built-in constructor built the layer from (its name and
            arguments), or ``None``. Two layers with equal configs, names and kinds
            compute the same thing, so they compare equal (and ``Trainer`` reuses the
            programs compiled for one with the other); a layer without a config is
            equal only to itself. Set by :func:`configured`; a layer you rebuild with
            other ``init`` or ``apply`` functions must not keep it.

    Raises:
        TypeError: at construction, for an ``init`` or ``apply`` that is not a
            function of the contract's arguments, or a ``kind`` that is not a
            string; for a class that subclasses ``Layer``; for ``layer(x)``
            (call ``layer.apply``) and for ``apply`` called with other than
            ``(params, state, x)``.
        LayerError: when ``init`` or ``apply`` returns anything but a pair
            ``(params, state)`` of dicts, or ``(y, state)`` with a dict ``state``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> def Scale():  # y = x * scale, one learned factor per feature
        ...     def init(key, x):
        ...         return {"scale": jnp.ones(x.shape[-1:])}, {}  # (params, state)
        ...     def apply(params, state, x, *, key=None, training=False):
        ...         return x * params["scale"][None, :], state
        ...     return Layer(init, apply, "Scale")
        >>> layer = Scale()
        >>> params, state = layer.init(jax.random.key(0), jnp.ones((1, 2)))
        >>> layer.apply(params, state, jnp.ones((1, 2)))[0].tolist()
        [[1.0, 1.0]]
        >>> forgetful = Layer(lambda key, x: ({}, {}), lambda p, s, x: 2 * x, "Double")
        >>> forgetful.apply({}, {}, jnp.ones((4, 2)))
        Traceback (most recent call last):
        ...
        jaxnn.core.LayerError: Double: apply returned an array of shape (4, 2) and dtype \
float32, but apply must return a pair (y, state). End it with `return y, state` (the \
state it was given, for a layer without state).
    """

    init: InitFn
    apply: ApplyFn
    kind: str
    name: str | None = None
    children: tuple[tuple[str, Layer], ...] = ()
    child_inputs: Callable[[Params, State, Spec], Sequence[Spec]] | None = None
    config: Any = dataclasses.field(default=None, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        if self is other:
            return True
        if self.config is None or other.config is None:
            return False
        return (self.config, self.name, self.kind) == (other.config, other.name, other.kind)

    def __hash__(self) -> int:
        if self.config is None:
            return object.__hash__(self)
        return hash((self.config, self.name, self.kind))

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise TypeError(
                f"Layer: kind must be a non-empty string naming the layer (such as "
                f"'Dense'), got {self.kind!r}. Build it as Layer(init, apply, 'MyLayer')."
            )
        object.__setattr__(self, "init", _checked_init(self.kind, self.init))
        object.__setattr__(self, "apply", _checked_apply(self.kind, self.apply))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        del kwargs
        raise TypeError(
            f"class {cls.__name__}(Layer): a jaxnn layer is a value made by a function, not "
            f"a subclass. Write {cls.__name__} as a function that returns a Layer:\n\n"
            f"    def {cls.__name__}(features):\n"
            "        def init(key, x):\n"
            '            return {"kernel": ...}, {}  # (params, state)\n'
            "        def apply(params, state, x, *, key=None, training=False):\n"
            "            return y, state\n"
            f'        return nn.Layer(init, apply, "{cls.__name__}")\n\n'
            "(see 'Writing a layer' in the README and examples/custom_layer.py)."
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        del args, kwargs  # a layer takes no call: the message shows the one to make
        raise TypeError(
            f"a {self.kind} layer is not called as layer(x): it is a pair of pure "
            "functions. Use params, state = layer.init(key, x), then y, state = "
            "layer.apply(params, state, x) (with a Trainer's state: "
            "layer.apply(state.params, state.model_state, x), or trainer.predict(state, x))."
        )

    def named(self, name: str) -> Layer:
        """Returns the same layer under the name ``name``.

        Example:
            >>> from jaxnn import Dense
            >>> Dense(3).named("head").name
            'head'
        """
        _check_name(name)
        return dataclasses.replace(self, name=name)

    def __repr__(self) -> str:
        label = f"{self.kind}(name={self.name!r})" if self.name else f"{self.kind}()"
        if not self.children:
            return label
        inner = ", ".join(f"{n}={c!r}" for n, c in self.children)
        return f"{label[:-1]}{', ' if self.name else ''}{inner})"


# ------------------------------------------------- checking what a layer's functions do

_INIT_USAGE = "init(key, x) -> (params, state)"
_APPLY_USAGE = "apply(params, state, x, *, key=None, training=False) -> (y, state)"
_MISSING = object()


def _describe(value: Any) -> str:
    """What came back, in a few words: ``an array of shape (16,) and dtype float32``."""
    if value is None:
        return "None"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, dict):
        return f"one dict with entries {sorted(map(str, value))[:6]}" if value else "one empty dict"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def _signature(fn: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # a callable whose signature Python cannot read
        return None


def _takes_keyword(signature: inspect.Signature, name: str) -> bool:
    parameters = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return True
    p = signature.parameters.get(name)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return p is not None and p.kind in kinds


def _checked_init(kind: str, init: Any) -> InitFn:
    """``init`` wrapped so that a result other than ``(params, state)`` names the layer."""
    if getattr(init, "_jaxnn_checked", False):
        return init
    if not callable(init):
        raise TypeError(f"Layer {kind!r}: init must be a function {_INIT_USAGE}, got {init!r}.")
    signature = _signature(init)
    if signature is not None:
        try:
            signature.bind(None, None)
        except TypeError:
            raise TypeError(
                f"Layer {kind!r}: init takes {signature}, but a layer's init is called as "
                f"{_INIT_USAGE}. Give it the two arguments (key, x)."
            ) from None

    def checked(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        out = init(key, x)
        if isinstance(out, dict):
            raise LayerError(
                kind,
                f"init returned {_describe(out)}, but init must return a pair (params, "
                "state) of dicts. End it with `return params, {}` for a layer without state.",
            )
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise LayerError(
                kind,
                f"init returned {_describe(out)}, but init must return a pair (params, "
                "state) of dicts. End it with `return params, state` (`{}` for none).",
            )
        for what, tree in zip(("params", "state"), out, strict=True):
            if not isinstance(tree, dict):
                raise LayerError(
                    kind,
                    f"init returned {what} as {_describe(tree)}, but {what} must be a dict "
                    "of arrays keyed by name (such as {'kernel': ...}); use {} for none.",
                )
        return tuple(out)

    return _mark(checked, init)


def _checked_apply(kind: str, apply: Any) -> ApplyFn:
    """``apply`` wrapped: called with the contract's arguments (without ``key`` or
    ``training`` if it takes none), NumPy 64-bit inputs cast as ``fit`` casts them, and
    a result other than ``(y, state)`` reported with the layer's name."""
    if getattr(apply, "_jaxnn_checked", False):
        return apply
    if not callable(apply):
        raise TypeError(f"Layer {kind!r}: apply must be a function {_APPLY_USAGE}, got {apply!r}.")
    signature = _signature(apply)
    pass_key = pass_training = True
    if signature is not None:
        try:
            signature.bind(None, None, None)
        except TypeError:
            raise TypeError(
                f"Layer {kind!r}: apply takes {signature}, but a layer's apply is called as "
                f"{_APPLY_USAGE}. Give it the arguments (params, state, x)."
            ) from None
        pass_key = _takes_keyword(signature, "key")
        pass_training = _takes_keyword(signature, "training")

    def checked(
        params: Any = _MISSING,
        state: Any = _MISSING,
        x: Any = _MISSING,
        *extra: Any,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        if x is _MISSING or extra:
            given = sum(a is not _MISSING for a in (params, state, x)) + len(extra)
            raise TypeError(
                f"{kind}.apply takes (params, state, x, *, key=None, training=False), got "
                f"{given} positional argument(s). Call y, state = model.apply(params, state, "
                "x), with params, state = model.init(key, x) (from a Trainer's state: "
                "model.apply(state.params, state.model_state, x)); Flax's "
                "model.apply(variables, x) is model.apply(params, state, x) here, and key "
                "and training are keywords: apply(params, state, x, key=k, training=True)."
            )
        x = jax.tree.map(functools.partial(_as_jax_dtype, kind), x)
        options: dict[str, Any] = {}
        if pass_key:
            options["key"] = key
        if pass_training:
            options["training"] = training
        out = apply(params, state, x, **options)
        if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict):
            return tuple(out)
        if isinstance(out, (tuple, list)) and len(out) == 2:
            problem = (
                f"a pair whose second item is {_describe(out[1])}, but that item must be "
                "the layer's state, a dict"
            )
        else:
            problem = f"{_describe(out)}, but apply must return a pair (y, state)"
        raise LayerError(
            kind,
            f"apply returned {problem}. End it with `return y, state` (the state it was "
            "given, for a layer without state).",
        )

    return _mark(checked, apply)


def _as_jax_dtype(kind: str, leaf: Any) -> Any:
    """A NumPy leaf of 64 bits in JAX's dtype (as ``fit`` casts it); others as they are."""
    if isinstance(leaf, (np.ndarray, np.generic)) and leaf.dtype.kind in "biufc":
        return narrow(f"{kind}.apply", "x", np.asarray(leaf))
    return leaf


def _mark(checked: Callable, fn: Callable) -> Callable:
    """Names ``checked`` after ``fn`` (no ``__wrapped__``: its signature is the contract's)."""
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        with contextlib.suppress(AttributeError):
            setattr(checked, attribute, getattr(fn, attribute))
    checked._jaxnn_checked = True
    return checked


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(
            f"a layer name must be a non-empty string without '/', got {name!r}. "
            "Names form paths such as 'encoder/dense_1'."
        )


_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(kind: str) -> str:
    """Turns a layer kind into its default name.

    An underscore goes between a lower-case letter and the capital after it, and
    before the last capital of a run of capitals that a lower-case letter follows
    (``LSTMCell`` gives ``lstm_cell``); then everything is lower-cased. Digits never
    start a new word (``Conv2D`` gives ``conv2d``).

    Args:
        kind: a layer kind in CamelCase, such as ``"BatchNorm"``.

    Returns:
        The kind in snake_case.

    Example:
        >>> [snake_case(k) for k in ["Dense", "BatchNorm", "MultiHeadAttention", "Conv2D"]]
        ['dense', 'batch_norm', 'multi_head_attention', 'conv2d']
        >>> snake_case("LSTMCell")
        'lstm_cell'
    """
    return _CAMEL.sub("_", kind).lower()


def unique_names(layers: Sequence[Layer], where: str) -> tuple[str, ...]:
    """Names children: the user's name, else the kind in snake_case made unique.

    Args:
        layers: the children, in order.
        where: the parent's kind, for the error message.

    Returns:
        One name per child: ``dense``, ``dense_1``, ``dense_2``, ...

    Raises:
        LayerError: if two children were given the same name.

    Example:
        >>> from jaxnn import Dense
        >>> unique_names([Dense(2), Dense(2), Dense(1).named("head")], "Sequential")
        ('dense', 'dense_1', 'head')
    """
    given = [layer.name for layer in layers if layer.name is not None]
    duplicates = sorted({n for n in given if given.count(n) > 1})
    if duplicates:
        raise LayerError(
            where,
            f"two children are named {duplicates[0]!r}. Names must be unique within a "
            "parent; rename one with name=... or .named(...).",
        )
    taken = set(given)
    names = []
    for layer in layers:
        if layer.name is not None:
            names.append(layer.name)
            continue
        base = snake_case(layer.kind)
        candidate, i = base, 0
        while candidate in taken:
            i += 1
            candidate = f"{base}_{i}"
        taken.add(candidate)
        names.append(candidate)
    return tuple(names)


def name_hash(name: str) -> int:
    """A stable 31-bit hash of a name (CRC-32, not Python's salted ``hash``).

    Example:
        >>> name_hash("dense")
        1575712873
    """
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def child_key(key: PRNGKey | None, name: str) -> PRNGKey | None:
    """Derives a child's key from its parent's key and the child's name.

    The key depends only on the name, so adding a layer elsewhere never shifts it.

    Args:
        key: the parent's key, or ``None``.
        name: the child's name.

    Returns:
        ``fold_in(key, name_hash(name))``, or ``None`` when ``key`` is ``None``.

    Raises:
        TypeError: if ``key`` is not a JAX random key (a seed, say).

    Example:
        >>> import jax
        >>> k = jax.random.key(0)
        >>> bool((jax.random.key_data(child_key(k, "a")) ==
        ...       jax.random.key_data(child_key(k, "a"))).all())
        True
    """
    if key is None:
        return None
    # Every layer's init reaches its keys through here: a seed or an array that is no
    # key fails with the fix, not deep inside jax.random.
    check_key("Layer.init/apply", "key", key)
    return jax.random.fold_in(key, name_hash(name))


def spec_of(x: Any, where: str | None = None) -> Spec:
    """The ``jax.ShapeDtypeStruct`` pytree describing ``x`` (arrays, specs, NumPy data).

    Only shapes and dtypes are kept (not shardings), and no data is copied.

    Args:
        x: a pytree whose leaves are JAX or NumPy arrays, ``jax.ShapeDtypeStruct``, or
            anything ``np.asarray`` accepts, such as Python numbers. A Python list is
            a pytree node, not an array: each of its elements gets its own spec.
        where: the entry point, for messages (``"population.init"``).

    Returns:
        The same structure with every leaf replaced by its
        ``jax.ShapeDtypeStruct(shape, dtype)``; specs are returned as they are and
        ``None`` stays ``None``. The dtype is the one JAX computes in: float64 and
        int64 become float32 and int32 unless 64-bit mode is on (as ``jnp.asarray``
        casts them), so a Python float becomes float32.

    Raises:
        ValueError: for a leaf of strings, Python objects, dates or complex numbers.

    Example:
        >>> import numpy as np
        >>> spec_of(np.zeros((2, 3), np.float32))
        ShapeDtypeStruct(shape=(2, 3), dtype=float32)
        >>> specs = spec_of({"ids": np.zeros((4, 2), np.int8), "scale": 1.0})
        >>> specs["ids"], specs["scale"].dtype
        (ShapeDtypeStruct(shape=(4, 2), dtype=int8), dtype('float32'))
    """

    def one(leaf: Any) -> jax.ShapeDtypeStruct:
        if isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            leaf = np.asarray(leaf)
        if isinstance(leaf.dtype, np.dtype) and leaf.dtype.kind == "c":
            prefix = f"{where}: " if where else ""
            raise ValueError(
                f"{prefix}expected real numeric arrays, got complex numbers (dtype "
                f"{leaf.dtype}, shape {tuple(leaf.shape)}): jaxnn's layers and losses are "
                "real-valued. Pass the real and imaginary parts as separate features, e.g. "
                "np.concatenate([x.real, x.imag], axis=-1)."
            )
        if isinstance(leaf.dtype, np.dtype) and leaf.dtype.kind in "OSUMm":
            # Strings, objects and dates: no layer computes with them, and a spec of
            # them would fail (or pass, untouched) deep inside a trace.
            prefix = f"{where}: " if where else ""
            raise ValueError(
                f"{prefix}expected numeric arrays (float, int or bool) or "
                f"jax.ShapeDtypeStruct specs of them, got an array of dtype {leaf.dtype} "
                f"and shape {tuple(leaf.shape)}. Encode strings or categories as integer "
                "ids (for an Embedding) or one-hot floats first."
            )
        return jax.ShapeDtypeStruct(tuple(leaf.shape), _canonical(leaf.dtype))

    return jax.tree.map(one, x)


def _canonical(dtype: Any) -> Any:
    """``dtype`` as JAX computes in it: float64 becomes float32 unless 64-bit mode is on."""
    return jax.dtypes.canonicalize_dtype(dtype, allow_extended_dtype=True)


def output_spec(layer: Layer, params: Params, state: State, x: Spec) -> Spec:
    """The output spec of ``layer.apply`` on ``x``, found with ``jax.eval_shape``.

    The layer runs in inference mode (``training=False``, no key). Nothing is
    computed and no memory is allocated: only shapes and dtypes are traced.

    Args:
        layer: the layer to trace.
        params: the layer's params, as arrays or specs.
        state: the layer's state, as arrays or specs.
        x: an input with its batch axis: an array, a ``jax.ShapeDtypeStruct`` or a
            pytree of them.

    Returns:
        The ``jax.ShapeDtypeStruct`` of the output, ``(batch, ...)`` (a pytree of them
        for a layer with several outputs).

    Raises:
        LayerError: if the layer rejects the input, e.g. an input with a different
            number of features from the one it was initialised for. Any other error
            that ``layer.apply`` raises while tracing also propagates.

    Example:
        >>> import jax
        >>> from jaxnn import Dense
        >>> layer = Dense(3)
        >>> x = jax.ShapeDtypeStruct((8, 4), "float32")
        >>> p, s = layer.init(jax.random.key(0), x)
        >>> output_spec(layer, p, s, x)
        ShapeDtypeStruct(shape=(8, 3), dtype=float32)
    """

    def forward(params: Params, state: State, x: Any) -> Any:
        return layer.apply(params, state, x, key=None, training=False)[0]

    return jax.eval_shape(forward, spec_of(params), spec_of(state), spec_of(x))


def check_entries(
    kind: str, what: str, tree: dict, allowed: Sequence[str], required: Sequence[str] = ()
) -> None:
    """Checks that a params or state dict has exactly the expected entries.

    Args:
        kind: the layer's kind, for the message.
        what: ``"params"`` or ``"state"``.
        tree: the dict handed to ``apply``.
        allowed: the names this layer may hold.
        required: the names it must hold.

    Raises:
        LayerError: naming the unexpected or missing entries.

    Example:
        >>> check_entries("Dense", "params", {"kernel": 0, "w": 1}, ["kernel", "bias"])
        Traceback (most recent call last):
        ...
        jaxnn.core.LayerError: Dense: params have entries ['w'] that this layer does not \
have (it has ['kernel', 'bias']). Pass the params returned by this model's own init.
    """
    if not isinstance(tree, dict):
        raise LayerError(
            kind,
            f"{what} must be a dict, got {type(tree).__name__}. Pass the {what} returned "
            "by this model's own init.",
        )
    extra = [k for k in tree if k not in allowed]
    if extra:
        raise LayerError(
            kind,
            f"{what} have entries {extra} that this layer does not have (it has "
            f"{list(allowed)}). Pass the {what} returned by this model's own init.",
        )
    missing = [k for k in required if k not in tree]
    if missing:
        raise LayerError(
            kind,
            f"{what} lack entries {missing}. Pass the {what} returned by this model's own init.",
        )


def configured(constructor: Callable[..., Layer]) -> Callable[..., Layer]:
    """Marks a layer constructor whose arguments fully determine the layer it builds:
    the layer gets ``config`` = the constructor's name and arguments, so equal calls
    give equal layers (see :attr:`Layer.config`). Arguments that cannot be hashed
    (arrays, for instance) leave ``config`` unset.

    Example:
        >>> @configured
        ... def Scale(factor):
        ...     return Layer(lambda key, x: ({}, {}), lambda p, s, x: (x * factor, s), "Scale")
        >>> Scale(2.0) == Scale(2.0), Scale(2.0) == Scale(3.0)
        (True, False)
    """

    @functools.wraps(constructor)
    def build(*args: Any, **kwargs: Any) -> Layer:
        layer = constructor(*args, **kwargs)
        if isinstance(layer, Layer) and layer.config is None:
            config = (
                constructor.__module__,
                constructor.__qualname__,
                _frozen(args),
                _frozen(sorted(kwargs.items())),
            )
            try:
                hash(config)
            except TypeError:  # an array or another unhashable argument
                return layer
            object.__setattr__(layer, "config", config)
        return layer

    return build


def _frozen(value: Any) -> Any:
    """Lists, tuples and dicts as nested tuples (hashable when their items are)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return ("dict", tuple((k, _frozen(v)) for k, v in sorted(value.items(), key=repr)))
    return value


def as_layer(obj: Layer | Callable | str) -> Layer:
    """Lifts a plain function or an activation name to a layer without params or state.

    Args:
        obj: a :class:`Layer` (returned unchanged), a function ``f(x) -> y`` such as
            ``jax.nn.relu``, or an activation name such as ``"relu"``.

    Returns:
        A layer whose ``apply`` computes ``f(x)``; its kind is the function's name.

    Raises:
        TypeError: for anything else.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> relu = as_layer(jax.nn.relu)
        >>> relu.kind, relu.init(None, jnp.ones((1, 2)))
        ('relu', ({}, {}))
    """
    if isinstance(obj, Layer):
        return obj
    if isinstance(obj, str):
        fn = activations.get(obj)
        kind = obj.lower()
    elif callable(obj):
        fn = obj
        kind = getattr(obj, "__name__", type(obj).__name__)
        if kind == "<lambda>":
            kind = "lambda"
    else:
        raise TypeError(
            f"expected a Layer, a function f(x) -> y or an activation name, got "
            f"{type(obj).__name__}: {obj!r}."
        )

    def init(key: PRNGKey, x: Spec) -> tuple[Params, State]:
        del key, x
        return {}, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: PRNGKey | None = None,
        training: bool = False,
    ) -> tuple[Any, State]:
        del key, training
        check_entries(kind, "params", params, ())
        return fn(x), state

    return Layer(init=init, apply=apply, kind=kind)


_MERGES: dict[str, Callable[[Sequence[Any]], Any]] = {
    "concat": lambda ys: jnp.concatenate(ys, axis=-1),
    "add": lambda ys: functools.reduce(operator.add, ys),
    "mul": lambda ys: functools.reduce(operator.mul, ys),
    "mean": lambda ys: functools.reduce(operator.add, ys) / len(ys),
    "stack": lambda ys: jnp.stack(ys, axis=-1),
}
# The merge words of ``merge``, mapped to functions of the list of outputs.

_OLD_MERGE_WORDS = {
    "sum": "add",
    "ave": "mean",
    "average": "mean",
    "concatenate": "concat",
    "multiply": "mul",
}


def merge(where: str, how: str | Callable[[list], Any] | None) -> Callable[[Sequence[Any]], Any]:
    """The function that merges a list of outputs, named by one vocabulary for every layer.

    ``Parallel`` merges its branches and ``Bidirectional`` its two directions with it.

    Args:
        where: the kind of the layer that merges, for the message (``"Parallel"``).
        how: ``"concat"`` (along the last axis), ``"add"``, ``"mul"`` (elementwise),
            ``"mean"`` (elementwise), ``"stack"`` (along a new last axis), ``None`` for
            a tuple of the outputs, or a function ``f(outputs) -> y`` of the list.

    Returns:
        A function ``f(outputs) -> y`` of a list of arrays.

    Raises:
        LayerError: for an unknown word, listing the valid ones; a Keras word
            (``"sum"``, ``"ave"``, ``"concatenate"``, ...) names the jaxnn word.

    Example:
        >>> import jax.numpy as jnp
        >>> merge("Parallel", "mean")([jnp.array([1.0]), jnp.array([3.0])]).tolist()
        [2.0]
        >>> merge("Bidirectional", "sum")
        Traceback (most recent call last):
        ...
        jaxnn.core.LayerError: Bidirectional: merge 'sum' is called 'add' in jaxnn. Use \
merge='add'.
    """
    if how is None:
        return tuple
    if callable(how):
        return how
    if isinstance(how, str) and how.lower() in _OLD_MERGE_WORDS:
        new = _OLD_MERGE_WORDS[how.lower()]
        raise LayerError(where, f"merge {how!r} is called {new!r} in jaxnn. Use merge={new!r}.")
    if not isinstance(how, str):
        raise LayerError(
            where,
            f"merge must be a name, None or a function f(outputs) -> y, got "
            f"{type(how).__name__}: {how!r}.",
        )
    try:
        return lookup("merge", how, _MERGES, "pass None (a tuple) or a function f(outputs) -> y")
    except ValueError as e:
        raise LayerError(where, str(e)) from None
