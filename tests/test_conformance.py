"""Conformance: every public layer honours the contract of DESIGN.md §2.

Driven by ``tests/registry.py``. For every case: ``jax.eval_shape`` agrees with a real
``init`` and ``apply``; jit equals eager; ``vmap`` over members equals a loop; gradients
match finite differences (in float64); float32 and bfloat16 run.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxnn
from jaxnn import combinators
from tests.case import Case
from tests.registry import REGISTRY

ALL = [(name, case) for name, cases in sorted(REGISTRY.items()) for case in cases]
IDS = [f"{name}-{case.id}" for name, case in ALL]


def make_input(case: Case, seed: int = 1, dtype=None):
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(case.dtype), np.integer):
        return jnp.asarray(rng.integers(0, case.int_high, case.shape), case.dtype)
    x = rng.normal(size=case.shape).astype(np.float32)
    return jnp.asarray(x, dtype or case.dtype)


def is_float(x) -> bool:
    return jnp.issubdtype(x.dtype, jnp.floating)


def cast_floats(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if is_float(a) else a, tree)


def run(layer, params, state, x, training):
    key = jax.random.key(7) if training else None
    return layer.apply(params, state, x, key=key, training=training)


def forward(layer, training):
    return lambda p, s, x: run(layer, p, s, x, training)


def spec_tree(tree):
    return jax.tree.map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype)), tree)


def test_registry_covers_every_public_layer():
    public = set(jaxnn.layers.__all__) | set(combinators.__all__)
    missing = sorted(public - set(REGISTRY))
    assert not missing, f"public layers without a conformance case: {missing}"
    unknown = sorted(set(REGISTRY) - public)
    assert not unknown, f"registry names that are not public layers: {unknown}"


@pytest.mark.parametrize(("name", "case"), ALL, ids=IDS)
def test_eval_shape_agrees_with_init_and_apply(name, case, key):
    layer = case.make()
    x = make_input(case)
    params, state = layer.init(key, x)
    abstract = jax.eval_shape(layer.init, key, jax.ShapeDtypeStruct(x.shape, x.dtype))
    assert spec_tree(abstract) == spec_tree((params, state))
    for training in (False, True):
        y, new_state = run(layer, params, state, x, training)
        expected = jax.eval_shape(
            lambda p, s, x, t=training: run(layer, p, s, x, t), params, state, x
        )
        assert spec_tree(expected) == spec_tree((y, new_state))
        assert jax.tree.structure(new_state) == jax.tree.structure(state)


@pytest.mark.parametrize(("name", "case"), ALL, ids=IDS)
def test_init_needs_no_data(name, case, key):
    layer = case.make()
    x = make_input(case)
    from_array = layer.init(key, x)
    from_spec = layer.init(key, jax.ShapeDtypeStruct(x.shape, x.dtype))
    jax.tree.map(np.testing.assert_array_equal, from_array, from_spec)


@pytest.mark.parametrize(("name", "case"), ALL, ids=IDS)
def test_jit_equals_eager(name, case, key):
    layer = case.make()
    x = make_input(case)
    params, state = layer.init(key, x)
    for training in (False, True):
        eager = run(layer, params, state, x, training)
        jitted = jax.jit(lambda p, s, x, t=training: run(layer, p, s, x, t), static_argnums=3)(
            params, state, x
        )
        # XLA may fuse and reorder float32 arithmetic; 1e-5 relative is a few ulps here.
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), eager, jitted
        )


@pytest.mark.parametrize(("name", "case"), ALL, ids=IDS)
def test_vmap_over_members_equals_loop(name, case, key):
    layer = case.make()
    members = 3
    keys = jax.random.split(key, members)
    xs = jnp.stack([make_input(case, seed=i) for i in range(members)])
    params, state = jax.vmap(layer.init)(keys, xs)
    batched = jax.vmap(lambda p, s, x: run(layer, p, s, x, True))(params, state, xs)
    for i in range(members):
        p_i, s_i = layer.init(keys[i], xs[i])
        jax.tree.map(
            np.testing.assert_array_equal,
            (p_i, s_i),
            jax.tree.map(lambda a, i=i: a[i], (params, state)),
        )
        alone = run(layer, p_i, s_i, xs[i], True)
        jax.tree.map(
            lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6),
            batched,
            alone,
        )


@pytest.mark.parametrize(("name", "case"), ALL, ids=IDS)
def test_gradients_match_finite_differences(name, case, key):
    layer = case.make()
    x = make_input(case)
    params, state = layer.init(key, x)
    with jax.enable_x64(True):
        params64, state64 = cast_floats((params, state), jnp.float64)
        x64 = cast_floats(x, jnp.float64)

        def f(p, x):
            return run(layer, p, state64, x, True)[0]

        if case.grad_input and is_float(x64):
            check_grads(
                f, (params64, x64), order=1, modes=["rev"], atol=case.grad_tol, rtol=case.grad_tol
            )
        else:
            check_grads(
                lambda p: f(p, x64),
                (params64,),
                order=1,
                modes=["rev"],
                atol=case.grad_tol,
                rtol=case.grad_tol,
            )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize(("name", "case"), ALL, ids=IDS)
def test_runs_in_dtype(name, case, dtype, key):
    layer = case.make()
    x = make_input(case)
    params, state = layer.init(key, x)
    params, state, x = cast_floats((params, state, x), dtype)
    for training in (False, True):
        y, _ = run(layer, params, state, x, training)
        for leaf in jax.tree.leaves(y):
            if is_float(leaf):
                assert leaf.dtype == jnp.dtype(dtype)
                assert bool(jnp.isfinite(leaf.astype(jnp.float32)).all())


@pytest.mark.parametrize(("name", "case"), ALL, ids=IDS)
def test_jitted_gradients_equal_eager(name, case, key):
    """Differentiating inside jit must work too (e.g. reduce_window's max under jit)."""
    layer = case.make()
    x = make_input(case)
    params, state = layer.init(key, x)

    def loss(p):
        y = run(layer, p, state, x, True)[0]
        return sum(jnp.sum(leaf.astype(jnp.float32) ** 2) for leaf in jax.tree.leaves(y))

    eager = jax.grad(loss)(params)
    jitted = jax.jit(jax.grad(loss))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), eager, jitted)
