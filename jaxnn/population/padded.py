"""Sweeps over the architecture: members of different widths and depths in one program.

A population shares one architecture, because ``jax.vmap`` needs every member's arrays
to have the same shapes. :func:`sweep` lifts that limit for widths and depths: every
member's arrays are padded to the largest size in the sweep, and the padding is kept
out of the computation, so member ``i`` trains exactly as the network built at its own
size would.

* **Widths.** A swept layer is built with the largest ``features`` (``num_heads`` for
  attention) and each member's real arrays fill the leading part of every padded axis.
  The padded parts of the params start at zero and stay there: the optimizer is
  wrapped so that their gradients and updates are zero (a mask per member in the
  optimizer state). A padded unit then contributes nothing downstream (the next
  layer's weights for it are zero), so the output, the gradients of the real part, the
  optimizer state and anything computed from them (global-norm clipping, weight decay)
  equal the unpadded network's.
* **Depths.** A swept :func:`~jaxnn.Repeat` is built with the largest ``n`` and
  ``dynamic_depth=True``; each member's model state holds its depth, and copies past it
  pass their input through.

Each member is initialised at its own size from its own key (member ``i`` of
``sweep.init(key)`` starts from ``trainer_of(i).init(jax.random.split(key, n)[i], x)``,
as :func:`jaxnn.population.init` does for one architecture), then padded.

Padding is exact only when every layer after a swept one acts on each unit on its own
(Dense, Conv, BatchNorm, activations, pooling, residual sums of equal widths). A layer
that mixes units (LayerNorm over the swept features, Flatten before a Dense, a
recurrent layer whose gates share one kernel) would see the padding; :func:`sweep`
checks, for every size in the sweep, that the padded network's output and gradients
equal the network built at that size, and refuses the sweep otherwise. Dropout after a
swept layer draws its mask at the padded shape, so a member equals its own-size
network in distribution, not draw for draw.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn._checks import check_key
from jaxnn.core import Layer, spec_of
from jaxnn.population.build import check_trainer
from jaxnn.train import Trainer, TrainState
from jaxnn.train.programs import compile_once

__all__ = ["Sweep", "sweep"]

_WHERE = "population.sweep"


class MaskedState(NamedTuple):
    """The optimizer state of a sweep: which entries of each param are a member's own
    (``mask``, booleans shaped like the params) and the wrapped optimizer's state."""

    mask: Any
    inner: Any


@functools.lru_cache(maxsize=32)
def masked(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """``inner`` with the gradients and updates of padded entries set to zero.

    The mask starts all ``True`` (``init``); :meth:`Sweep.init` sets each member's.
    Equal ``inner`` give the same transformation, so equal sweeps share their
    trainer's compiled programs.

    Args:
        inner: the optimizer of the swept trainer.

    Returns:
        An optax transformation whose state is a :class:`MaskedState`.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> opt = masked(optax.sgd(1.0))
        >>> state = opt.init({"w": jnp.ones(3)})
        >>> state = state._replace(mask={"w": jnp.array([True, True, False])})
        >>> opt.update({"w": jnp.ones(3)}, state)[0]["w"].tolist()
        [-1.0, -1.0, 0.0]
    """

    def keep(mask: Any, tree: Any) -> Any:
        return jax.tree.map(lambda m, u: jnp.where(m, u, jnp.zeros_like(u)), mask, tree)

    def init(params: Any) -> MaskedState:
        mask = jax.tree.map(lambda p: jnp.ones(jnp.shape(p), bool), params)
        return MaskedState(mask, inner.init(params))

    def update(updates: Any, state: MaskedState, params: Any = None) -> tuple:
        updates, inner_state = inner.update(keep(state.mask, updates), state.inner, params)
        return keep(state.mask, updates), MaskedState(state.mask, inner_state)

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------- rebuilding a model


def _path_str(path: tuple[str, ...]) -> str:
    return "/".join(path)


def _children(layer: Layer) -> dict[str, Layer]:
    return dict(layer.children)


def _find(model: Layer, path: tuple[str, ...]) -> Layer:
    """The layer at ``path`` (names of children, outermost first) inside ``model``."""
    layer = model
    for depth, name in enumerate(path):
        children = _children(layer)
        if name not in children:
            where = _path_str(path[:depth]) or "the model"
            raise ValueError(
                f"{_WHERE}: no layer {_path_str(path)!r}: {where} ({layer.kind}) has "
                f"children {sorted(children) or 'none'}. Name the layer by its path of "
                "names as in summary(model) and the params, e.g. 'hidden' for "
                "Dense(32, name='hidden') or 'encoder/dense_1'."
            )
        layer = children[name]
    return layer


def _constructor(layer: Layer, path: tuple[str, ...]) -> Any:
    if layer.config is None:
        raise ValueError(
            f"{_WHERE}: the layer {_path_str(path) or '(the model)'} ({layer.kind}) on the "
            "path to a swept layer cannot be rebuilt at another size: it was not made by a "
            "built-in constructor (or one marked with jaxnn.core.configured) with "
            "hashable arguments. Build it with the jaxnn constructors, or mark your own "
            "constructor with @jaxnn.core.configured."
        )
    module, qualname, args, kwargs = layer.config
    fn: Any = importlib.import_module(module)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    return fn, args, kwargs


def _thaw(value: Any, swap: dict[int, Layer]) -> Any:
    """A constructor argument as it was given (``core.configured`` keeps lists as
    tuples and dicts as ``("dict", items)``), with swapped children."""
    if isinstance(value, Layer):
        return swap.get(id(value), value)
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] == "dict" and isinstance(value[1], tuple):
            return {k: _thaw(v, swap) for k, v in value[1]}
        return tuple(_thaw(v, swap) for v in value)
    return value


def size_argument(layer: Layer, path: tuple[str, ...]) -> str:
    """The constructor argument a width sweep sets: ``features``, or ``num_heads``.

    Args:
        layer: the swept layer.
        path: its path, for messages.

    Returns:
        The argument's name.

    Raises:
        ValueError: for a layer without a width.

    Example:
        >>> import jaxnn as nn
        >>> size_argument(nn.Dense(8), ("hidden",)), size_argument(nn.Conv2D(4, (3, 3)), ("c",))
        ('features', 'features')
    """
    fn, _, _ = _constructor(layer, path)
    names = inspect.signature(fn).parameters
    for name in ("features", "num_heads"):
        if name in names:
            return name
    raise ValueError(
        f"{_WHERE}: widths name {_path_str(path)!r}, a {layer.kind}, which has no width to "
        "sweep: widths set the features of Dense, Conv, ConvTranspose, Embedding and the "
        "recurrent layers, or the num_heads of MultiHeadAttention. Sweep depth with "
        "depths={name: ...} on a Repeat."
    )


def _rebuild(
    layer: Layer, changes: dict[tuple[str, ...], dict[str, Any]], path: tuple[str, ...] = ()
) -> Layer:
    """``layer`` built again with ``changes[path]`` (argument name to value) applied
    to the layers at those paths; layers with no change below them are kept."""
    below = [p for p in changes if p[: len(path)] == path and len(p) > len(path)]
    own = changes.get(path, {})
    if not below and not own:
        return layer
    swap = {}
    for name, child in layer.children:
        new = _rebuild(child, changes, (*path, name))
        if new is not child:
            swap[id(child)] = new
    fn, args, kwargs = _constructor(layer, path)
    args = _thaw(args, swap)
    kwargs = {k: _thaw(v, swap) for k, v in kwargs}
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.arguments.update(own)
    rebuilt = fn(*bound.args, **bound.kwargs)
    if layer.name is not None and rebuilt.name != layer.name:
        rebuilt = rebuilt.named(layer.name)
    return rebuilt


# ----------------------------------------------------------------- padding the arrays


def _prefix(shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(0, s) for s in shape)


def _by_path(tree: Any) -> dict[tuple, Any]:
    return dict(jax.tree_util.tree_flatten_with_path(tree)[0])


def _embed(where: str, padded: Any, own: Any, *, fill: Any) -> Any:
    """Every leaf of ``own`` (a stack of members, ``(g, *shape)``) written into the
    leading part of the same leaf of ``padded`` (one member, ``(*big,)``), which is
    first broadcast to ``g`` members (or replaced by zeros with ``fill=0``). Leaves of
    ``padded`` that ``own`` lacks keep the padded value."""
    mine = _by_path(own)
    g = jax.tree.leaves(own)[0].shape[0] if jax.tree.leaves(own) else 1

    def put(path: tuple, big: jax.Array) -> jax.Array:
        base = jnp.broadcast_to(big if fill is None else jnp.zeros_like(big), (g, *big.shape))
        if path not in mine:
            return base
        small = mine[path]
        if small.ndim != base.ndim or any(
            s > b for s, b in zip(small.shape, base.shape, strict=True)
        ):
            raise ValueError(
                f"{where}: {jax.tree_util.keystr(path)} has shape {small.shape[1:]} at a "
                f"member's own size but {big.shape} padded; a sweep can only pad axes, "
                "not add or grow past them."
            )
        return base.at[(slice(None), *_prefix(small.shape[1:]))].set(small.astype(big.dtype))

    return jax.tree_util.tree_map_with_path(put, padded)


def _mask(params_padded: Any, params_own: Any) -> Any:
    def one(big: jax.Array, small: jax.Array) -> jax.Array:
        mask = jnp.zeros((small.shape[0], *big.shape), bool)
        return mask.at[(slice(None), *_prefix(small.shape[1:]))].set(True)

    return jax.tree.map(one, params_padded, params_own)


def _take(padded: Any, own_spec: Any, i: int) -> Any:
    """Member ``i``'s leaves of ``padded`` at the shapes (and in the tree) of
    ``own_spec``."""
    big = _by_path(padded)

    def take(path: tuple, spec: Any) -> jax.Array:
        return big[path][i][_prefix(spec.shape)]

    return jax.tree_util.tree_map_with_path(take, own_spec)


def _wave(shape: tuple[int, ...], dtype: Any, seed: int) -> jax.Array:
    """Made-up values in ``[-1, 1]``, different at every index and for every seed:
    test values that compile to a few ops (``jax.random`` would compile its
    generator into the check's program, several times its size).

    Example:
        >>> np.asarray(_wave((2, 2), "float32", 0), np.float64).round(2).tolist()
        [[0.0, 0.75], [-0.99, 0.58]]
    """
    size = int(np.prod(shape))
    values = jnp.sin(jnp.arange(size, dtype=jnp.float32) * 2.3 + 0.7 * seed)
    return values.reshape(shape).astype(dtype)


# ------------------------------------------------------------------------ the sweep


def _per_member(what: str, name: str, values: Any, n: int | None) -> np.ndarray:
    arr = np.asarray(values)
    ok = arr.ndim == 1 and arr.size > 0 and np.issubdtype(arr.dtype, np.integer)
    if not ok or (arr <= 0).any():
        raise ValueError(
            f"{_WHERE}: {what}[{name!r}] must be a non-empty list of positive ints, one "
            f"per member, e.g. np.repeat([8, 16, 32, 64], 4); got {values!r}."
        )
    if n is not None and arr.size != n:
        raise ValueError(
            f"{_WHERE}: {what}[{name!r}] has {arr.size} values but the sweep has {n} "
            "members (from its first list): give every swept layer one value per member."
        )
    return arr.astype(np.int64)


class Sweep:
    """A population whose members differ in width and depth, padded to one shape.

    Build one with :func:`sweep`. Attributes:

    * ``trainer``: the padded :class:`~jaxnn.Trainer` to pass to
      :func:`~jaxnn.population.fit`, ``evaluate`` and ``predict``;
    * ``base``: the trainer the sweep was made from;
    * ``sizes``: swept layer path to ``(members,)`` sizes (widths, then depths);
    * ``n``: the number of members.
    """

    def __init__(
        self,
        base: Trainer,
        x: Any,
        widths: dict[str, np.ndarray],
        depths: dict[str, np.ndarray],
        check: bool,
    ):
        self.base = base
        self.spec = spec_of(x, f"{_WHERE}: x")
        self.widths = widths
        self.depths = depths
        self.sizes = {**widths, **depths}
        self.n = len(next(iter(self.sizes.values())))
        self._args = {}
        self._init: Any = None  # the compiled init, made at the first call
        for name in widths:
            path = tuple(name.split("/"))
            self._args[name] = size_argument(_find(base.model, path), path)
        for name in depths:
            path = tuple(name.split("/"))
            layer = _find(base.model, path)
            if layer.kind != "Repeat":
                raise ValueError(
                    f"{_WHERE}: depths name {name!r}, a {layer.kind}; a depth sweep runs "
                    "a per-member number of the copies of a Repeat(block, n). Wrap the "
                    "repeated block in nn.Repeat and name it."
                )
        largest = {name: int(v.max()) for name, v in self.sizes.items()}
        self.trainer = self._trainer(largest, padded=True)
        combos = np.stack([self.sizes[k] for k in self.sizes], axis=1)
        self._groups: dict[tuple, np.ndarray] = {}
        for i, combo in enumerate(map(tuple, combos.tolist())):
            self._groups.setdefault(combo, []).append(i)
        self._groups = {k: np.asarray(v) for k, v in self._groups.items()}
        if check:  # padding that is exact at the smallest sizes is exact at all
            self._check(min(self._groups, key=lambda combo: (sum(combo), combo)))

    def __repr__(self) -> str:
        sizes = {k: sorted(set(v.tolist())) for k, v in self.sizes.items()}
        return f"Sweep(n={self.n}, sizes={sizes})"

    def _trainer(self, sizes: dict[str, int], *, padded: bool = False) -> Trainer:
        changes: dict[tuple[str, ...], dict[str, Any]] = {}
        for name, size in sizes.items():
            path = tuple(name.split("/"))
            if name in self.widths:
                changes[path] = {self._args[name]: size}
            else:
                changes[path] = {"n": size, **({"dynamic_depth": True} if padded else {})}
        model = _rebuild(self.base.model, changes)
        optimizer = masked(self.base.optimizer) if padded else self.base.optimizer
        return Trainer(
            model,
            self.base.loss,
            optimizer,
            self.base.metrics,
            parallel=self.base.parallel,
            dtype_policy=self.base.dtype_policy,
        )

    def _sizes(self, combo: tuple) -> dict[str, int]:
        return dict(zip(self.sizes, combo, strict=True))

    def trainer_of(self, i: int) -> Trainer:
        """The :class:`~jaxnn.Trainer` of member ``i`` at its own size.

        Args:
            i: the member, in ``[0, n)``.

        Returns:
            A trainer of the base trainer's loss, optimizer and metrics over the
            model rebuilt at member ``i``'s sizes.

        Raises:
            IndexError: for ``i`` outside ``[0, n)``.

        Example:
            >>> import numpy as np, jaxnn as nn
            >>> trainer = nn.Trainer(nn.Sequential(nn.Dense(8, "relu", name="hidden"),
            ...                                    nn.Dense(1)), "mse", "adam")
            >>> sw = nn.population.sweep(trainer, np.zeros((1, 3), np.float32),
            ...                          widths={"hidden": [4, 8]}, check=False)
            >>> sw.trainer_of(0).model == nn.Sequential(nn.Dense(4, "relu", name="hidden"),
            ...                                         nn.Dense(1))
            True
        """
        if not 0 <= int(i) < self.n:
            raise IndexError(f"Sweep.trainer_of: member {i} outside [0, {self.n}).")
        combo = tuple(int(self.sizes[k][i]) for k in self.sizes)
        return self._trainer(self._sizes(combo))

    def _own_init(self, combo: tuple, keys: jax.Array) -> TrainState:
        """The members of sizes ``combo``, each initialised from its key at its size
        (traced: part of one compiled program)."""
        trainer = self._trainer(self._sizes(combo))
        return jax.vmap(lambda k: trainer.programs.init(k, self.spec))(keys)

    def _init_all(self, keys: jax.Array) -> TrainState:
        """Every member at its own size, padded, in member order (traced)."""
        # The padded model's own initial state gives the values of the parts no member
        # fills (BatchNorm's unit variance, an optimizer's initial accumulators).
        template = self.trainer.programs.init(keys[0], self.spec)
        parts, order = [], []
        for combo, members in self._groups.items():
            parts.append(self._pad(combo, self._own_init(combo, keys[members]), template))
            order.append(members)
        inverse = np.argsort(np.concatenate(order))
        return jax.tree.map(lambda *a: jnp.concatenate(a)[inverse], *parts)

    def _pad(self, combo: tuple, own: TrainState, template: TrainState) -> TrainState:
        where = f"{_WHERE} ({self._sizes(combo)})"
        params = _embed(where, template.params, own.params, fill=0)
        model_state = _embed(where, template.model_state, own.model_state, fill=None)
        g = own.step.shape[0]
        for name, _depths in self.depths.items():
            *outer, last = name.split("/")
            node = model_state
            for part in outer:
                node = node[part]
            node[last] = {
                **node[last],
                "depth": jnp.full((g,), self._sizes(combo)[name], jnp.int32),
            }
        inner = _embed(where, template.opt_state.inner, own.opt_state, fill=None)
        opt_state = MaskedState(_mask(template.params, own.params), inner)
        return TrainState(params, model_state, opt_state, own.step, own.key)

    def init(self, key: jax.Array) -> TrainState:
        """Initialises every member at its own size and pads it (see the module).

        Args:
            key: one key for the whole population; member ``i`` starts from
                ``jax.random.split(key, n)[i]``.

        Returns:
            A stacked :class:`~jaxnn.TrainState` for ``self.trainer``.

        Example:
            >>> import jax, numpy as np, jaxnn as nn
            >>> trainer = nn.Trainer(nn.Sequential(nn.Dense(8, "relu", name="hidden"),
            ...                                    nn.Dense(1)), "mse", "adam")
            >>> sw = nn.population.sweep(trainer, np.zeros((1, 3), np.float32),
            ...                          widths={"hidden": [4, 8]})
            >>> states = sw.init(jax.random.key(0))
            >>> states.params["hidden"]["kernel"].shape
            (2, 3, 8)
        """
        check_key("Sweep.init", "key", key)
        keys = jax.random.split(key, self.n)
        if self._init is None:  # one program for every member, compiled once
            self._init = compile_once(self._init_all, keys)
        return self._init(keys)

    def member(self, states: TrainState, i: int) -> tuple[Trainer, TrainState]:
        """Member ``i`` at its own size: its trainer and its state.

        Args:
            states: a stacked state of this sweep (from :meth:`init` or ``fit``).
            i: the member.

        Returns:
            ``(trainer, state)``: :meth:`trainer_of` ``(i)``, and the member's state
            cut to its own shapes, as that trainer's ``init`` lays it out (ready for
            ``trainer.fit``, ``predict``, ``save`` or ``export``).

        Example:
            >>> import jax, numpy as np, jaxnn as nn
            >>> trainer = nn.Trainer(nn.Sequential(nn.Dense(8, "relu", name="hidden"),
            ...                                    nn.Dense(1)), "mse", "adam")
            >>> sw = nn.population.sweep(trainer, np.zeros((1, 3), np.float32),
            ...                          widths={"hidden": [4, 8]})
            >>> small, state = sw.member(sw.init(jax.random.key(0)), 0)
            >>> state.params["hidden"]["kernel"].shape
            (3, 4)
        """
        trainer = self.trainer_of(i)
        own = jax.eval_shape(lambda k: trainer.programs.init(k, self.spec), jax.random.key(0))
        return trainer, TrainState(
            _take(states.params, own.params, i),
            _take(states.model_state, own.model_state, i),
            _take(states.opt_state.inner, own.opt_state, i),
            states.step[i],
            states.key[i],
        )

    def _probe(self, combo: tuple, key: jax.Array) -> tuple:
        """A member of sizes ``combo`` at its size and padded: both outputs on a few
        random inputs, and both gradients of a random projection of them (traced).

        The values are made up, not initialised (a much smaller program to compile):
        params and inputs from :func:`_wave`, model state of ones (BatchNorm's
        variance) and integer state of zeros, laid out by the two networks' ``init``
        shapes."""

        def drawn(spec: Any) -> Any:
            leaves, tree = jax.tree.flatten(spec)
            return jax.tree.unflatten(
                tree, [_wave(a.shape, a.dtype, i) for i, a in enumerate(leaves)]
            )

        def filled(spec: Any) -> Any:
            def one(a: Any) -> jax.Array:
                if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
                    return jax.random.split(key, a.shape[0]) if a.shape else key
                if jnp.issubdtype(a.dtype, jnp.floating):
                    return jnp.ones(a.shape, a.dtype)
                return jnp.zeros(a.shape, a.dtype)

            return jax.tree.map(one, spec)

        trainer = self._trainer(self._sizes(combo))
        stacked = lambda t: jax.vmap(lambda k: t.programs.init(k, self.spec))
        own = filled(jax.eval_shape(stacked(trainer), key[None]))  # one member
        own = own._replace(params=drawn(own.params))
        big = filled(jax.eval_shape(lambda k: self.trainer.programs.init(k, self.spec), key))
        padded = self._pad(combo, own, big)
        own, padded = jax.tree.map(lambda a: a[0], (own, padded))
        shape = (min(self.spec.shape[0], 4), *self.spec.shape[1:])
        if jnp.issubdtype(self.spec.dtype, jnp.integer):
            x = jnp.zeros(shape, self.spec.dtype)
        else:
            x = _wave(shape, self.spec.dtype, -1)
        small = trainer.model

        def projected(model: Layer, state: Any) -> Any:
            def f(params: Any) -> Any:
                y = model.apply(params, state, x)[0]
                leaves = jax.tree.leaves(y)
                cots = [_wave(a.shape, a.dtype, -2 - i) for i, a in enumerate(leaves)]
                return sum(jnp.sum(a * c) for a, c in zip(leaves, cots, strict=True)), y

            return f

        g_own, y_own = jax.grad(projected(small, own.model_state), has_aux=True)(own.params)
        g_pad, y_pad = jax.grad(projected(self.trainer.model, padded.model_state), has_aux=True)(
            padded.params
        )
        return y_own, y_pad, g_own, _take(jax.tree.map(lambda a: a[None], g_pad), g_own, 0)

    def _check(self, combo: tuple) -> None:
        """Refuses a sweep whose padding would change a member's computation."""
        sizes = self._sizes(combo)
        key = jax.random.key(0)
        probe = functools.partial(self._probe, combo)
        y_own, y_pad, _, _ = jax.eval_shape(probe, key)
        shapes = [jax.tree.map(lambda a: a.shape, y) for y in (y_own, y_pad)]
        if shapes[0] != shapes[1]:
            raise ValueError(
                f"{_WHERE}: at sizes {sizes} the model's output has shapes {shapes[0]}, but "
                f"padded {shapes[1]}: a swept layer sets the output's size. Sweep hidden "
                "layers only; the output layer's width is the task's."
            )
        y_own, y_pad, g_own, g_pad = compile_once(probe, key)(key)

        def close(a: Any, b: Any) -> bool:
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            scale = float(np.abs(a).max(initial=0))  # tolerances relative to the leaf
            return bool(np.allclose(a, b, rtol=1e-4, atol=1e-5 * scale + 1e-30))

        pairs = zip(jax.tree.leaves(y_own), jax.tree.leaves(y_pad), strict=True)
        if not all(close(a, b) for a, b in pairs):
            bad = ["the output"]
        else:
            flat = jax.tree_util.tree_flatten_with_path(g_own)[0]
            pairs = zip(flat, jax.tree.leaves(g_pad), strict=True)
            bad = [jax.tree_util.keystr(path) for (path, a), b in pairs if not close(a, b)]
        if bad:
            raise ValueError(
                f"{_WHERE}: padding to the sweep's largest sizes changes the computation of "
                f"a member with sizes {sizes} (it differs in {', '.join(bad[:4])}): a layer "
                "after a swept one mixes its units (LayerNorm or GroupNorm over them, "
                "Flatten before a Dense, a recurrent layer's shared gate kernel, attention "
                "over padded heads' features). Sweep a layer whose units each feed the next "
                "layer on their own (Dense, Conv, BatchNorm, activations in between), or "
                "train each size as its own population."
            )


def sweep(
    trainer: Trainer,
    x: Any,
    *,
    widths: dict[str, Any] | None = None,
    depths: dict[str, Any] | None = None,
    check: bool = True,
) -> Sweep:
    """A population over widths and depths, trained as one program.

    Args:
        trainer: the :class:`~jaxnn.Trainer` whose model is swept. Its layers are
            rebuilt at each size from their constructors' arguments.
        x: an example input with its batch axis (array or ``jax.ShapeDtypeStruct``).
        widths: layer path (``"hidden"``, ``"encoder/dense_1"``) to one width per
            member: the ``features`` of a Dense, Conv, Embedding or recurrent layer,
            the ``num_heads`` of attention.
        depths: path of a :func:`~jaxnn.Repeat` to one number of copies per member.
        check: verify, for every combination of sizes, that the padded network
            computes the same output and gradients as the network built at that size
            (one small forward and backward pass each).

    Returns:
        A :class:`Sweep`: ``init(key)`` builds the stacked state,
        ``sweep.trainer`` trains it with :func:`~jaxnn.population.fit`, and
        ``member(states, i)`` gives a member back at its own size.

    Raises:
        ValueError: for no swept layer, a path that names no layer, a width for a
            layer without one, a depth for a layer that is not a ``Repeat``, lists of
            different lengths or with non-positive sizes, a swept output layer, a
            model whose padding would change a member's computation, or a
            ``dtype_policy`` with loss scaling.
        TypeError: for a ``trainer`` that is not a :class:`~jaxnn.Trainer`.

    Example:
        >>> import jax, numpy as np, jaxnn as nn
        >>> model = nn.Sequential(nn.Dense(32, "relu", name="hidden"),
        ...                       nn.Repeat(nn.Dense(32, "relu"), 2, name="blocks"),
        ...                       nn.Dense(1, "sigmoid"))
        >>> trainer = nn.Trainer(model, "binary_crossentropy", "adam")
        >>> x = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
        >>> y = (x.sum(axis=1, keepdims=True) > 0).astype(np.float32)
        >>> width = [8, 8, 32, 32]  # the blocks keep the hidden width
        >>> sw = nn.population.sweep(trainer, x, widths={"hidden": width, "blocks/dense": width},
        ...                          depths={"blocks": [1, 3, 1, 3]})
        >>> sw
        Sweep(n=4, sizes={'hidden': [8, 32], 'blocks/dense': [8, 32], 'blocks': [1, 3]})
        >>> states = sw.init(jax.random.key(0))
        >>> states, history = nn.population.fit(sw.trainer, states, x, y, epochs=2,
        ...                                     batch_size=10)
        >>> history["loss"].shape
        (4, 2)
        >>> small, state = sw.member(states, 0)
        >>> state.params["blocks"]["dense"]["kernel"].shape  # (copies, in, out)
        (1, 8, 8)
    """
    check_trainer(_WHERE, trainer)
    for what, given in (("widths", widths), ("depths", depths)):
        if given is not None and not isinstance(given, dict):
            raise TypeError(
                f"{_WHERE}: {what} must be a dict from layer path to one size per member, "
                f"got {type(given).__name__}."
            )
    widths, depths = dict(widths or {}), dict(depths or {})
    if not widths and not depths:
        raise ValueError(
            f"{_WHERE}: nothing to sweep: pass widths={{'hidden': [8, 16, ...]}} and/or "
            "depths={'blocks': [1, 2, ...]}, one size per member."
        )
    policy = trainer.dtype_policy
    if policy is not None and policy.loss_scaling:
        raise ValueError(
            f"{_WHERE}: the trainer's dtype_policy scales the loss (mixed_float16), which a "
            "sweep does not support yet; use dtype_policy='mixed_bfloat16' (no loss "
            "scale) or none."
        )
    n = None
    checked = {}
    for what, given in (("widths", widths), ("depths", depths)):
        for name, values in given.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"{_WHERE}: {what} keys must be layer paths (str), got {name!r}.")
            checked[(what, name)] = _per_member(what, name, values, n)
            n = checked[(what, name)].size
    both = set(widths) & set(depths)
    if both:
        raise ValueError(f"{_WHERE}: {sorted(both)} appear in both widths and depths.")
    return Sweep(
        trainer,
        x,
        {name: checked[("widths", name)] for name in widths},
        {name: checked[("depths", name)] for name in depths},
        check,
    )
