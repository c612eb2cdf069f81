"""MultiHeadAttention against softmax(QKᵀ/√d + mask)V written per head in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.core import LayerError
from jaxnn.layers.attention import MultiHeadAttention, dot_product_attention
from tests.exact import assert_same

# The layer runs in float32 and the reference in float64; with sequences of at most 7
# positions and 8-16 features, float32 rounding stays below 1e-5 relative.
TOL = dict(rtol=2e-5, atol=2e-5)


def reference(params, query, key_value, allowed, num_heads, num_kv_heads):
    """Attention by loops over batch and heads; ``allowed``: (batch, q_len, kv_len) bool."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    query = np.asarray(query, np.float64)
    key_value = np.asarray(key_value, np.float64)
    batch, q_len, _ = query.shape
    kv_len = key_value.shape[1]
    size = p["query"]["kernel"].shape[-1]
    group = num_heads // num_kv_heads

    def bias(name, *index):
        return p[name]["bias"][index] if "bias" in p[name] else 0.0

    out = np.zeros((batch, q_len, p["out"]["kernel"].shape[-1]))
    for b in range(batch):
        for h in range(num_heads):
            g = h // group
            q = query[b] @ p["query"]["kernel"][:, h, :] + bias("query", h)
            k = key_value[b] @ p["key"]["kernel"][:, g, :] + bias("key", g)
            v = key_value[b] @ p["value"]["kernel"][:, g, :] + bias("value", g)
            logits = q @ k.T / np.sqrt(size)
            weights = np.zeros((q_len, kv_len))
            for i in range(q_len):
                ok = np.ones(kv_len, bool) if allowed is None else allowed[b, i]
                if ok.any():
                    e = np.exp(logits[i][ok] - logits[i][ok].max())
                    weights[i, ok] = e / e.sum()
            out[b] += (weights @ v) @ p["out"]["kernel"][h]
    return out + p["out"].get("bias", 0.0)


def data(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def init_apply(layer, x, *, seed=0):
    """A real init, and apply under jit: one compilation instead of one per eager op (the
    conformance tests check that the layer under jit equals it run eagerly)."""
    params, state = layer.init(jax.random.key(seed), x)
    y, _ = jax.jit(layer.apply)(params, state, x)
    return params, y


def test_self_attention_matches_reference():
    x = data((2, 5, 8))
    params, y = init_apply(MultiHeadAttention(2), x)
    assert y.shape == (2, 5, 8) and y.dtype == jnp.float32
    np.testing.assert_allclose(y, reference(params, x, x, None, 2, 2), **TOL)


def test_param_shapes():
    layer = MultiHeadAttention(4, num_kv_heads=2, out_features=3)
    # Shapes only: init traced abstractly (test_conformance checks it against a real init).
    params, _ = jax.eval_shape(layer.init, jax.random.key(0), data((2, 5, 8)))
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes == {
        "query": {"kernel": (8, 4, 2), "bias": (4, 2)},
        "key": {"kernel": (8, 2, 2), "bias": (2, 2)},
        "value": {"kernel": (8, 2, 2), "bias": (2, 2)},
        "out": {"kernel": (4, 2, 3), "bias": (3,)},
    }


def test_cross_attention_matches_reference():
    q, kv = data((2, 4, 6), 1), data((2, 7, 3), 2)
    layer = MultiHeadAttention(3, key_size=5, out_features=2)
    x = {"query": q, "key_value": kv}
    params, y = init_apply(layer, x)
    assert y.shape == (2, 4, 2)
    np.testing.assert_allclose(y, reference(params, q, kv, None, 3, 3), **TOL)


def test_causal_matches_reference():
    x = data((2, 6, 8))
    params, y = init_apply(MultiHeadAttention(2, causal=True), x)
    tril = np.broadcast_to(np.tril(np.ones((6, 6), bool)), (2, 6, 6))
    np.testing.assert_allclose(y, reference(params, x, x, tril, 2, 2), **TOL)
    # Causality: the first positions do not see later ones.
    x2 = x.at[:, 3:].set(9.0)
    y2 = MultiHeadAttention(2, causal=True).apply(params, {}, x2)[0]
    np.testing.assert_allclose(y2[:, :3], y[:, :3], **TOL)


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 2), (4, 1), (6, 3)])
def test_grouped_query_attention_matches_reference(heads, kv_heads):
    x = data((2, 5, 12))
    layer = MultiHeadAttention(heads, num_kv_heads=kv_heads, causal=True)
    params, y = init_apply(layer, x)
    tril = np.broadcast_to(np.tril(np.ones((5, 5), bool)), (2, 5, 5))
    np.testing.assert_allclose(y, reference(params, x, x, tril, heads, kv_heads), **TOL)


def test_padding_lengths_mask_and_causal_combine():
    q, kv = data((3, 5, 8), 1), data((3, 6, 8), 2)
    lengths = np.array([6, 3, 1])
    mask = np.random.default_rng(3).random((3, 5, 6)) < 0.7
    layer = MultiHeadAttention(2, causal=True)
    x = {"query": q, "key_value": kv, "mask": jnp.asarray(mask), "kv_lengths": jnp.asarray(lengths)}
    params, y = init_apply(layer, x)
    allowed = mask & (np.arange(6)[None, None, :] < lengths[:, None, None])
    allowed &= np.tril(np.ones((5, 6), bool))[None]
    assert not allowed.all(axis=-1).all()  # some rows are fully masked
    np.testing.assert_allclose(y, reference(params, q, kv, allowed, 2, 2), **TOL)


def test_padding_mask_broadcast_from_batch_kv():
    q, kv = data((2, 4, 8), 1), data((2, 5, 8), 2)
    pad = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], bool)
    layer = MultiHeadAttention(2)
    params, y = init_apply(layer, {"query": q, "key_value": kv, "mask": jnp.asarray(pad)[:, None]})
    allowed = np.broadcast_to(pad[:, None, :], (2, 4, 5))
    np.testing.assert_allclose(y, reference(params, q, kv, allowed, 2, 2), **TOL)
    # NumPy int64 lengths work as well as jax int32 ones.
    by_lengths = layer.apply(
        params, {}, {"query": q, "key_value": kv, "kv_lengths": np.array([3, 4], np.int64)}
    )
    np.testing.assert_allclose(by_lengths[0], y, **TOL)


def test_per_head_mask():
    x = data((2, 4, 8))
    mask = np.random.default_rng(5).random((2, 2, 4, 4)) < 0.6
    layer = MultiHeadAttention(2)
    params, y = init_apply(layer, {"query": x, "mask": jnp.asarray(mask)})
    # Head h with its own mask equals the sum over heads of single-head references.
    zero_bias = jax.tree.map(lambda a: a, params)
    zero_bias["out"] = {**params["out"], "bias": jnp.zeros_like(params["out"]["bias"])}
    expected = np.asarray(params["out"]["bias"], np.float64)[None, None]
    for h in range(2):
        one = jax.tree.map(lambda a: a, zero_bias)
        one["out"] = {**zero_bias["out"], "kernel": zero_bias["out"]["kernel"].at[1 - h].set(0.0)}
        expected = expected + reference(one, x, x, mask[:, h], 2, 2)
    np.testing.assert_allclose(y, expected, **TOL)


def test_padded_key_values_do_not_change_outputs():
    q, kv = data((2, 4, 8), 1), data((2, 6, 8), 2)
    lengths = jnp.array([2, 5])
    layer = MultiHeadAttention(2)
    x = {"query": q, "key_value": kv, "kv_lengths": lengths}
    params, y = init_apply(layer, x)
    padded = np.arange(6)[None, :, None] >= np.asarray(lengths)[:, None, None]
    noisy = jnp.where(jnp.asarray(padded), 1e3 * data((2, 6, 8), 7), kv)
    y2, _ = jax.jit(layer.apply)(params, {}, {**x, "key_value": noisy})
    np.testing.assert_allclose(y2, y, rtol=1e-6, atol=1e-6)


def test_fully_masked_rows_are_finite_and_give_the_out_bias():
    x = data((2, 3, 8))
    layer = MultiHeadAttention(2, bias_init="normal")
    lengths = jnp.array([0, 2])
    params, y = init_apply(layer, {"query": x, "kv_lengths": lengths})
    assert bool(jnp.isfinite(y).all())
    np.testing.assert_allclose(y[0], jnp.broadcast_to(params["out"]["bias"], (3, 8)), **TOL)

    def loss(p, x):
        return jnp.sum(layer.apply(p, {}, {"query": x, "kv_lengths": lengths})[0] ** 2)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def test_no_bias():
    x = data((2, 5, 8))
    params, y = init_apply(MultiHeadAttention(2, use_bias=False), x)
    assert all("bias" not in p for p in params.values())
    np.testing.assert_allclose(y, reference(params, x, x, None, 2, 2), **TOL)


def test_dropout_on_weights():
    x = data((2, 5, 8))
    layer = MultiHeadAttention(2, dropout_rate=0.5)
    params, y_eval = init_apply(layer, x)
    with pytest.raises(
        LayerError, match=r"MultiHeadAttention: training=True with dropout_rate=0.5 needs a key"
    ):
        layer.apply(params, {}, x, training=True)
    a = layer.apply(params, {}, x, key=jax.random.key(1), training=True)[0]
    b = layer.apply(params, {}, x, key=jax.random.key(1), training=True)[0]
    c = layer.apply(params, {}, x, key=jax.random.key(2), training=True)[0]
    assert_same(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, y_eval)
    # Evaluation ignores dropout and needs no key; so does training with rate 0.
    np.testing.assert_allclose(y_eval, reference(params, x, x, None, 2, 2), **TOL)
    plain = MultiHeadAttention(2)
    assert_same(plain.apply(params, {}, x, training=True)[0], y_eval)


def test_dropout_mean_is_unbiased():
    x = data((1, 3, 4))
    layer = MultiHeadAttention(1, dropout_rate=0.25)
    params, y_eval = init_apply(layer, x)
    keys = jax.random.split(jax.random.key(3), 4000)
    ys = jax.vmap(lambda k: layer.apply(params, {}, x, key=k, training=True)[0])(keys)
    # 4000 draws: the standard error of the mean is well under 0.05 of the output's scale.
    np.testing.assert_allclose(ys.mean(axis=0), y_eval, atol=0.05)


def test_bfloat16_compute_and_float32_params():
    x = data((2, 5, 8))
    layer = MultiHeadAttention(2, dtype=jnp.bfloat16)
    params, y = init_apply(layer, x)
    assert y.dtype == jnp.bfloat16
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
    # bfloat16 keeps 8 bits of mantissa: about 1e-2 relative over these sums.
    np.testing.assert_allclose(
        y.astype(jnp.float32), reference(params, x, x, None, 2, 2), rtol=5e-2, atol=5e-2
    )


def test_jit_traces_once():
    traces = []
    layer = MultiHeadAttention(2, causal=True)
    x = data((2, 5, 8))
    params, _ = layer.init(jax.random.key(0), x)

    @jax.jit
    def f(p, x):
        traces.append(1)
        return layer.apply(p, {}, x)[0]

    f(params, x)
    f(params, x + 1)
    assert len(traces) == 1


# -- errors


def test_config_errors():
    with pytest.raises(LayerError, match=r"num_heads must be a positive int, got 0"):
        MultiHeadAttention(0)
    with pytest.raises(LayerError, match=r"num_heads=4 must be a multiple of num_kv_heads=3"):
        MultiHeadAttention(4, num_kv_heads=3)
    with pytest.raises(LayerError, match=r"rate is the probability of dropping.*got 1.5"):
        MultiHeadAttention(2, dropout_rate=1.5)
    with pytest.raises(LayerError, match=r"key_size must be a positive int, got -1\."):
        MultiHeadAttention(2, key_size=-1)
    with pytest.raises(LayerError, match=r"unknown initializer 'glorot'"):
        MultiHeadAttention(2, kernel_init="glorot")


def test_features_not_divisible_by_heads():
    with pytest.raises(
        LayerError, match=r"the query has 7 features, which 2 heads cannot split.*key_size"
    ):
        MultiHeadAttention(2).init(jax.random.key(0), data((2, 5, 7)))
    params, _ = jax.eval_shape(
        MultiHeadAttention(2, key_size=3).init, jax.random.key(0), data((2, 5, 7))
    )
    assert params["query"]["kernel"].shape == (7, 2, 3)


def test_input_errors():
    layer = MultiHeadAttention(2)
    x = data((2, 5, 8))
    params, _ = layer.init(jax.random.key(0), x)
    with pytest.raises(
        LayerError, match=r"the query must have shape \(batch, seq, features\), got shape \(5, 8\)"
    ):
        layer.init(jax.random.key(0), x[0])
    with pytest.raises(LayerError, match=r"unknown entries \['keys'\]"):
        layer.apply(params, {}, {"query": x, "keys": x})
    with pytest.raises(LayerError, match=r"no 'query' entry"):
        layer.apply(params, {}, {"key_value": x})
    with pytest.raises(LayerError, match=r"query has batch size 2 but key_value has 1"):
        layer.apply(params, {}, {"query": x, "key_value": x[:1]})
    with pytest.raises(LayerError, match=r"mask must be a bool array.*Got dtype float32"):
        layer.apply(params, {}, {"query": x, "mask": jnp.ones((2, 5, 5))})
    with pytest.raises(
        LayerError,
        match=r"For a padding mask pad of shape \(batch, kv_len\) pass pad\[:, None, :\]",
    ):
        layer.apply(params, {}, {"query": x, "mask": jnp.ones((2, 5), bool)})
    with pytest.raises(LayerError, match=r"mask of shape \(2, 5, 4\) does not broadcast"):
        layer.apply(params, {}, {"query": x, "mask": jnp.ones((2, 5, 4), bool)})
    with pytest.raises(LayerError, match=r"kv_lengths must be integers of shape \(2,\)"):
        layer.apply(params, {}, {"query": x, "kv_lengths": jnp.ones((2,))})


def test_params_from_another_configuration():
    x = data((2, 5, 8))
    params, _ = MultiHeadAttention(2).init(jax.random.key(0), x)
    with pytest.raises(
        LayerError, match=r"key/kernel has shape \(8, 2, 4\), but .* it must be \(8, 1, 4\)"
    ):
        MultiHeadAttention(2, num_kv_heads=1).apply(params, {}, x)
    with pytest.raises(
        LayerError, match=r"query/kernel has shape \(8, 2, 4\).*must be \(6, 2, 4\)"
    ):
        MultiHeadAttention(2).apply(params, {}, x[..., :6])
    with pytest.raises(
        LayerError, match=r"params have entries \['bias'\] that this layer does not have"
    ):
        MultiHeadAttention(2, use_bias=False).apply(params, {}, x)


# -- dot_product_attention, the pure function


def np_attention(q, k, v, allowed=None):
    """softmax(q kᵀ / sqrt(d)) v per example and head, in float64; q: (b, q, H, d)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    batch, q_len, heads, size = q.shape
    group = heads // k.shape[2]
    out = np.zeros_like(q)
    for b in range(batch):
        for h in range(heads):
            logits = q[b, :, h] @ k[b, :, h // group].T / np.sqrt(size)
            for i in range(q_len):
                ok = np.ones(k.shape[1], bool) if allowed is None else allowed[b, h, i]
                if ok.any():
                    e = np.exp(logits[i][ok] - logits[i][ok].max())
                    out[b, i, h] = (e / e.sum()) @ v[b, ok, h // group]
    return out


@pytest.mark.parametrize(("heads", "kv_heads"), [(2, 2), (4, 2), (3, 1)])
def test_dot_product_attention_matches_numpy(heads, kv_heads):
    q, k, v = data((2, 5, heads, 4), 1), data((2, 7, kv_heads, 4), 2), data((2, 7, kv_heads, 4), 3)
    y = dot_product_attention(q, k, v)
    assert y.shape == (2, 5, heads, 4) and y.dtype == jnp.float32
    np.testing.assert_allclose(y, np_attention(q, k, v), **TOL)


def test_dot_product_attention_mask_broadcasts_and_empty_rows_are_zero():
    q, k, v = data((2, 4, 2, 3), 1), data((2, 6, 2, 3), 2), data((2, 6, 2, 3), 3)
    mask = np.random.default_rng(4).random((2, 1, 4, 6)) < 0.6
    mask[0, 0, 1] = False  # a query row that may attend to nothing
    y = dot_product_attention(q, k, v, jnp.asarray(mask))
    allowed = np.broadcast_to(mask, (2, 2, 4, 6))
    np.testing.assert_allclose(y, np_attention(q, k, v, allowed), **TOL)
    assert not np.asarray(y[0, 1]).any()
    with pytest.raises(ValueError, match=r"mask of shape \(2, 4, 6\) does not broadcast"):
        dot_product_attention(q, k, v, jnp.asarray(mask[:, 0]))


def test_dot_product_attention_errors_and_dropout():
    q, k = data((1, 2, 4, 3)), data((1, 3, 3, 3))
    with pytest.raises(ValueError, match=r"4 query heads cannot share 3 key/value heads"):
        dot_product_attention(q, k, k)
    with pytest.raises(ValueError, match=r"query must have shape \(batch, length, heads"):
        dot_product_attention(q[0], k, k)
    k = data((1, 3, 2, 3))
    with pytest.raises(ValueError, match=r"dropout_rate=0.5 needs a dropout_key"):
        dot_product_attention(q, k, k, dropout_rate=0.5)
    a = dot_product_attention(q, k, k, dropout_rate=0.5, dropout_key=jax.random.key(1))
    b = dot_product_attention(q, k, k, dropout_rate=0.5, dropout_key=jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, dot_product_attention(q, k, k))


def test_multi_head_attention_is_projections_around_the_function():
    x = data((2, 5, 8))
    layer = MultiHeadAttention(4, num_kv_heads=2, causal=True)
    params, y = init_apply(layer, x)

    def project(p):
        return jnp.einsum("bsf,fhd->bshd", x, p["kernel"]) + p["bias"][None, None]

    causal = jnp.tril(jnp.ones((5, 5), bool))[None, None]
    heads = dot_product_attention(
        project(params["query"]), project(params["key"]), project(params["value"]), causal
    )
    out = params["out"]
    want = jnp.einsum("bqhd,hdo->bqo", heads, out["kernel"]) + out["bias"][None, None]
    np.testing.assert_allclose(y, want, **TOL)
