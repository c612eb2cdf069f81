"""Conformance: every public layer honours the contract of DESIGN.md §2.

Driven by ``tests/registry.py``. For every case: ``jax.eval_shape`` agrees with a real
``init`` and ``apply``; jit equals eager; ``vmap`` over members equals a loop; gradients
match finite differences (in float64); jitted gradients equal eager ones; float32 and
bfloat16 run.

Nearly all of this file's time is XLA compilation, and eager (op-by-op) execution
compiles each primitive anew for every new shape and dtype (and a scan anew on every
call). So ``apply`` runs eagerly only where that is what a test checks (a real ``apply``
against ``eval_shape``, jit against eager, jitted gradients against eager ones), in
float32 on the case's own shapes; the other checks run under ``jax.jit`` (one
compilation each), which is sound because jit equals eager is checked for every case.
Those compiled only to be evaluated (float64 gradients, vmap, bfloat16) skip XLA's
backend optimisation (``QUICK``), which takes longer than running such tiny programs.
``init`` runs eagerly (its random draws compile per shape either way). The case's
layer, ``init`` and runs are made once per process (``functools.cache``) and shared by
the tests that need them: layers are pure and arrays immutable.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_vjp

import jaxnn
from jaxnn import combinators
from tests.case import Case
from tests.exact import assert_same
from tests.registry import REGISTRY

ALL = [(name, case) for name, cases in sorted(REGISTRY.items()) for case in cases]
IDS = [f"{name}-{case.id}" for name, case in ALL]
TRAINING = (False, True)
# Compiler options for functions compiled only to be evaluated, not compared with eager
# runs: LLVM's optimisation is a large part of the compile time and gains nothing here.
QUICK = {"xla_backend_optimization_level": 0}

# scope="module" makes pytest run all the tests of one case together, so that a pytest-xdist
# worker (which takes consecutive tests) mostly makes each case's shared work only once.
EVERY_CASE = pytest.mark.parametrize(("name", "case"), ALL, ids=IDS, scope="module")


def make_input(case: Case, seed: int = 1):
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(case.dtype), np.integer):
        return np.asarray(rng.integers(0, case.int_high, case.shape), case.dtype)
    return rng.normal(size=case.shape).astype(np.float32)


def is_float(x) -> bool:
    return jnp.issubdtype(x.dtype, jnp.floating)


def cast_floats(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if is_float(a) else a, tree)


def run(layer, params, state, x, training):
    key = jax.random.key(7) if training else None
    return layer.apply(params, state, x, key=key, training=training)


def forward(layer, training):
    return lambda p, s, x: run(layer, p, s, x, training)


def init_key():
    return jax.random.key(0)


@functools.cache
def prepared(case: Case):
    """``(layer, x, params, state)``: the case's layer and input, and a real (eager) init."""
    layer = case.make()
    x = jnp.asarray(make_input(case))
    params, state = layer.init(init_key(), x)
    return layer, x, params, state


@functools.cache
def eager_outputs(case: Case):
    """``{training: (y, new_state)}`` of a real (eager) ``apply`` in both modes."""
    layer, x, params, state = prepared(case)
    return {t: run(layer, params, state, x, t) for t in TRAINING}


@functools.cache
def jitted_apply(case: Case, dtype: str):
    """A jitted ``(params, state, x) -> {training: (y, new_state)}``, in ``dtype``.

    Params, state and input are cast to ``dtype`` inside; for float32 (the case's own
    dtype) that is a no-op. One compilation per case, dtype and process.
    """
    layer = prepared(case)[0]

    # float32 is the run test_jit_equals_eager compares with eager: compiled with the settings
    # the eager ops get (conftest.py), not QUICK.
    @functools.partial(jax.jit, compiler_options=None if dtype == "float32" else QUICK)
    def both_modes(params, state, x):
        params, state, x = cast_floats((params, state, x), dtype)
        return {t: run(layer, params, state, x, t) for t in TRAINING}

    return both_modes


@functools.cache
def jitted_outputs(case: Case, dtype: str):
    """``{training: (y, new_state)}`` of :func:`jitted_apply` on the prepared case."""
    _, x, params, state = prepared(case)
    return jitted_apply(case, dtype)(params, state, x)


def spec_tree(tree):
    return jax.tree.map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype)), tree)


def test_registry_covers_every_public_layer():
    public = set(jaxnn.layers.__all__) | set(combinators.__all__)
    missing = sorted(public - set(REGISTRY))
    assert not missing, f"public layers without a conformance case: {missing}"
    unknown = sorted(set(REGISTRY) - public)
    assert not unknown, f"registry names that are not public layers: {unknown}"


@EVERY_CASE
def test_eval_shape_agrees_with_init_and_apply(name, case):
    layer, x, params, state = prepared(case)
    abstract = jax.eval_shape(layer.init, init_key(), jax.ShapeDtypeStruct(x.shape, x.dtype))
    assert spec_tree(abstract) == spec_tree((params, state))
    for training, (y, new_state) in eager_outputs(case).items():
        expected = jax.eval_shape(forward(layer, training), params, state, x)
        assert spec_tree(expected) == spec_tree((y, new_state))
        assert jax.tree.structure(new_state) == jax.tree.structure(state)


@EVERY_CASE
def test_init_needs_no_data(name, case):
    layer, x, params, state = prepared(case)
    from_spec = layer.init(init_key(), jax.ShapeDtypeStruct(x.shape, x.dtype))
    jax.tree.map(np.testing.assert_array_equal, (params, state), from_spec)


@EVERY_CASE
def test_jit_equals_eager(name, case):
    eager, jitted = eager_outputs(case), jitted_outputs(case, "float32")
    # XLA may fuse and reorder float32 arithmetic; 1e-5 relative is a few ulps here.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), eager, jitted)


@EVERY_CASE
def test_vmap_over_members_equals_loop(name, case, key):
    layer = prepared(case)[0]
    members = 3
    keys = jax.random.split(key, members)
    xs = np.stack([make_input(case, seed=i) for i in range(members)])
    params, state = jax.vmap(layer.init)(keys, jnp.asarray(xs))
    # Both sides run under jit (jit equals eager is checked above); the loop reuses the
    # compiled function of test_jit_equals_eager.
    batched = jax.jit(jax.vmap(forward(layer, True)), compiler_options=QUICK)(params, state, xs)
    alone_fn = jitted_apply(case, "float32")
    # Member i of a stacked tree, sliced in NumPy (an eager slice compiles per shape).
    member = lambda tree, i: jax.tree.map(lambda a: np.asarray(a)[i], tree)
    for i in range(members):
        p_i, s_i = layer.init(keys[i], jnp.asarray(xs[i]))
        jax.tree.map(assert_same, (p_i, s_i), member((params, state), i))
        alone = alone_fn(p_i, s_i, xs[i])[True]
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
            member(batched, i),
            alone,
        )


def check_gradients(f, args, tol):
    """``check_grads(f, args, order=1, modes=["rev"])``, with ``f`` and its VJP compiled."""
    f_jit = jax.jit(f, compiler_options=QUICK)

    @functools.partial(jax.jit, compiler_options=QUICK)
    def value_and_pullback(args, cotangent):
        out, pullback = jax.vjp(f, *args)
        return out, pullback(cotangent)

    def f_vjp(*args):
        out = f_jit(*args)

        def vjp(cotangent):
            out_again, grads = value_and_pullback(args, cotangent)
            check = lambda a, b: np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
            jax.tree.map(check, out_again, out)  # the primal check of check_grads
            return grads

        return out, vjp

    check_vjp(f_jit, f_vjp, args, atol=tol, rtol=tol)


@EVERY_CASE
def test_gradients_match_finite_differences(name, case):
    layer, x, params, state = prepared(case)
    # NumPy float64 arguments: check_vjp's own perturbation arithmetic then stays in NumPy
    # rather than compiling an eager op per leaf. The function and its VJP are jitted
    # (jitted gradients equal eager ones is checked below).
    params64, state64, x64 = jax.tree.map(
        lambda a: np.asarray(a, np.float64) if is_float(a) else np.asarray(a),
        (params, state, x),
    )
    with jax.enable_x64(True):

        def f(p, x):
            return run(layer, p, state64, x, True)[0]

        if case.grad_input and is_float(x64):
            check_gradients(f, (params64, x64), case.grad_tol)
        else:
            check_gradients(lambda p: f(p, x64), (params64,), case.grad_tol)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@EVERY_CASE
def test_runs_in_dtype(name, case, dtype):
    # Under jit (jit equals eager is checked above); float32 is the run that test uses.
    for y, _ in jitted_outputs(case, dtype).values():
        for leaf in jax.tree.leaves(y):
            if is_float(leaf):
                assert leaf.dtype == jnp.dtype(dtype)
                assert np.isfinite(np.asarray(leaf, np.float32)).all()


@EVERY_CASE
def test_jitted_gradients_equal_eager(name, case):
    """Differentiating inside jit must work too (e.g. reduce_window's max under jit)."""
    layer, x, params, state = prepared(case)

    def loss(p):
        y = run(layer, p, state, x, True)[0]
        return sum(jnp.sum(leaf.astype(jnp.float32) ** 2) for leaf in jax.tree.leaves(y))

    eager = jax.grad(loss)(params)
    jitted = jax.jit(jax.grad(loss))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), eager, jitted)
