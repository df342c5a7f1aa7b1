"""The shared attention function and module against an explicit float64 numpy softmax attention."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas.ops.tpu import flash_attention as tpu_flash_attention

from mixtok.layers import MultiHeadAttention, dot_product_attention
from mixtok.layers.attention import MASKED_LOGIT, softmax_weights

CPU_IMPLS = ("auto", "reference", "xla")


def numpy_attention(q, k, v, bias=None, mask=None, scale=None, keep=None, rate=0.0):
    """softmax(q k^T * scale + bias, masked) v per head in float64; `keep` drops weights as dropout does."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    groups = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, groups, axis=2), np.repeat(v, groups, axis=2)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    if mask is not None:
        logits = np.where(mask, logits, MASKED_LOGIT)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    if keep is not None:
        weights = np.where(keep, weights / (1.0 - rate), 0.0)
    return np.einsum("bhqk,bkhd->bqhd", weights, v)


def _arrays(q_shape, kv_len=None, kv_heads=None, value_dim=None, seed=0):
    rng = np.random.default_rng(seed)
    batch, q_len, heads, dim = q_shape
    kv_shape = (batch, kv_len or q_len, kv_heads or heads, dim)
    q = rng.normal(size=q_shape).astype(np.float32)
    k = rng.normal(size=kv_shape).astype(np.float32)
    v = rng.normal(size=kv_shape[:3] + (value_dim or dim,)).astype(np.float32)
    return q, k, v


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_attention_matches_numpy_softmax(impl):
    q, k, v = _arrays((2, 5, 3, 8), kv_len=7)
    out = dot_product_attention(q, k, v, impl=impl)
    np.testing.assert_allclose(np.asarray(out), numpy_attention(q, k, v), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_bias_mask_and_scale_enter_as_documented(impl):
    q, k, v = _arrays((2, 6, 2, 4), kv_len=9, seed=1)
    rng = np.random.default_rng(2)
    bias = rng.normal(size=(2, 6, 9)).astype(np.float32)  # [heads, T, S]: broadcast over the batch
    mask = rng.uniform(size=(2, 1, 6, 9)) > 0.3  # [B, 1, T, S]: broadcast over the heads
    mask[..., 0] = True
    out = dot_product_attention(q, k, v, bias=bias, mask=mask, scale=0.7, impl=impl)
    want = numpy_attention(q, k, v, bias=bias[None], mask=mask, scale=0.7)
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_values_wider_than_queries_and_keys(impl):
    q, k, v = _arrays((1, 4, 2, 4), kv_len=6, value_dim=10, seed=3)
    out = dot_product_attention(q, k, v, scale=0.5, impl=impl)
    assert out.shape == (1, 4, 2, 10)
    np.testing.assert_allclose(np.asarray(out), numpy_attention(q, k, v, scale=0.5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_grouped_query_heads_share_key_value_heads(impl):
    q, k, v = _arrays((2, 5, 4, 8), kv_heads=2, seed=4)
    out = dot_product_attention(q, k, v, impl=impl)
    np.testing.assert_allclose(np.asarray(out), numpy_attention(q, k, v), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_bfloat16_inputs_keep_a_float32_softmax(impl):
    q, k, v = (jnp.asarray(a, jnp.bfloat16) for a in _arrays((2, 16, 2, 16), seed=5))
    out = dot_product_attention(q, k, v, impl=impl)
    assert out.dtype == jnp.bfloat16
    want = numpy_attention(*(np.asarray(a, np.float32) for a in (q, k, v)))
    np.testing.assert_allclose(np.asarray(out, np.float32), want, rtol=2e-2, atol=2e-2)


def test_logits_that_differ_below_bfloat16_resolution_still_get_different_weights():
    # The logits 64.0 and 64.25 are equal in bfloat16 (8 bits of mantissa); a float32 softmax keeps them apart.
    q = jnp.ones((1, 1, 1, 2), jnp.bfloat16)
    k = jnp.asarray([[[[32.0, 32.0]], [[32.0, 32.25]]]], jnp.bfloat16)  # q . k = 64 and 64.25
    v = jnp.asarray([[[[1.0]], [[0.0]]]], jnp.bfloat16)
    want = 1.0 / (1.0 + np.exp(0.25))
    for impl in CPU_IMPLS:
        out = dot_product_attention(q, k, v, scale=1.0, impl=impl)
        np.testing.assert_allclose(float(out[0, 0, 0, 0]), want, rtol=1e-2)


def test_a_row_with_every_key_masked_gets_uniform_weights_not_nan():
    q, k, v = _arrays((1, 3, 1, 4), seed=6)
    mask = np.ones((1, 1, 3, 3), bool)
    mask[0, 0, 1] = False
    for impl in CPU_IMPLS:
        out = np.asarray(dot_product_attention(q, k, v, mask=mask, impl=impl))
        np.testing.assert_allclose(out[0, 1], v[0].mean(0), rtol=1e-5, atol=1e-5)


def test_dropout_drops_weights_with_the_rng_mask_and_auto_uses_the_reference_form():
    q, k, v = _arrays((2, 5, 2, 4), kv_len=6, seed=7)
    rng, rate = jax.random.PRNGKey(3), 0.4
    keep = np.asarray(jax.random.bernoulli(rng, 1.0 - rate, (2, 2, 5, 6)))
    want = numpy_attention(q, k, v, keep=keep, rate=rate)
    for impl in ("auto", "reference"):
        out = dot_product_attention(q, k, v, dropout_rate=rate, dropout_rng=rng, impl=impl)
        np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)
    no_rng = dot_product_attention(q, k, v, dropout_rate=rate)  # evaluation: no rng, no dropout
    np.testing.assert_allclose(np.asarray(no_rng), numpy_attention(q, k, v), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="impl 'xla' has no attention-weight dropout"):
        dot_product_attention(q, k, v, dropout_rate=rate, dropout_rng=rng, impl="xla")


@pytest.mark.parametrize("impl", ("reference", "xla"))
def test_gradients_match_central_differences(impl):
    q, k, v = _arrays((1, 4, 2, 4), seed=8)
    rng = np.random.default_rng(9)
    bias = rng.normal(size=(1, 2, 4, 4)).astype(np.float32)
    weights = rng.normal(size=q.shape).astype(np.float32)
    loss = lambda q, k, v: jnp.sum(dot_product_attention(q, k, v, bias=bias, impl=impl) * weights)  # noqa: E731
    grads = jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
    for index, grad in enumerate(grads):
        direction = rng.normal(size=grad.shape).astype(np.float32)
        step = [np.zeros_like(a) for a in (q, k, v)]
        step[index] = 1e-2 * direction
        plus = loss(*(a + s for a, s in zip((q, k, v), step)))
        minus = loss(*(a - s for a, s in zip((q, k, v), step)))
        np.testing.assert_allclose(
            float(plus - minus) / 2e-2, float(np.sum(np.asarray(grad) * direction)), rtol=2e-2, atol=2e-3
        )


def _fake_tpu_flash_attention(q, k, v, ab=None, *, sm_scale=1.0):
    """The TPU kernel's documented maths in numpy: softmax((q k^T + ab) * sm_scale) v on [B, heads, T, d]."""
    s = np.einsum("bhqd,bhkd->bhqk", np.asarray(q, np.float64), np.asarray(k, np.float64))
    if ab is not None:
        s = s + np.asarray(ab, np.float64)
    s = s * sm_scale
    w = np.exp(s - s.max(-1, keepdims=True))
    return jnp.asarray(
        np.einsum("bhqk,bhkd->bhqd", w / w.sum(-1, keepdims=True), np.asarray(v, np.float64)), jnp.float32
    )


def test_pallas_path_hands_the_tpu_kernel_bias_mask_and_scale_in_its_convention(monkeypatch):
    monkeypatch.setattr(tpu_flash_attention, "flash_attention", _fake_tpu_flash_attention)
    q, k, v = _arrays((1, 128, 2, 8), kv_len=256, kv_heads=1, value_dim=6, seed=10)
    rng = np.random.default_rng(11)
    bias = rng.normal(size=(2, 128, 256)).astype(np.float32)
    mask = rng.uniform(size=(1, 1, 128, 256)) > 0.2
    out = dot_product_attention(q, k, v, bias=bias, mask=mask, scale=0.3, impl="pallas", platform="tpu")
    want = numpy_attention(q, k, v, bias=bias[None], mask=mask, scale=0.3)
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)


def test_pallas_and_auto_lower_to_the_tpu_kernel_for_a_tpu_export():
    spec = jax.ShapeDtypeStruct((1, 128, 2, 64), jnp.bfloat16)
    bias = jax.ShapeDtypeStruct((1, 2, 128, 128), jnp.float32)
    for impl in ("pallas", "auto"):
        f = jax.jit(lambda q, k, v, b, impl=impl: dot_product_attention(q, k, v, bias=b, impl=impl, platform="tpu"))
        text = jax.export.export(f, platforms=["tpu"])(spec, spec, spec, bias).mlir_module()
        assert "tpu_custom_call" in text, impl


def test_auto_on_cpu_is_the_xla_form():
    spec = jax.ShapeDtypeStruct((1, 128, 2, 64), jnp.bfloat16)
    text = jax.jit(lambda q, k, v: dot_product_attention(q, k, v)).lower(spec, spec, spec).as_text()
    assert "custom_call" not in text


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(impl="cudnn"), "cuDNN runs on a GPU; this call is for platform 'cpu'"),
        (dict(impl="cudnn", platform="gpu"), "float16 / bfloat16"),
        (dict(impl="pallas"), "runs on a TPU; this call is for platform 'cpu'"),
        (dict(impl="pallas", platform="tpu"), r"T \(5\) and S \(5\) must be multiples of its 128-long blocks"),
        (dict(impl="flash"), "impl 'flash' is not one of"),
        (dict(mask=np.ones((1, 1, 5, 5), np.float32)), "mask must be boolean"),
        (dict(bias=np.ones((3, 5, 5))), r"bias of shape \(1, 3, 5, 5\) does not broadcast"),
        (dict(dropout_rate=1.0), r"dropout_rate must lie in \[0, 1\)"),
    ],
)
def test_bad_calls_name_the_value_and_what_would_do(kwargs, message):
    q, k, v = _arrays((1, 5, 2, 8))
    with pytest.raises(ValueError, match=message):
        dot_product_attention(q, k, v, **kwargs)


def test_cudnn_constraints_are_checked_before_jax_sees_the_call():
    q, k, v = (jnp.asarray(a, jnp.bfloat16) for a in _arrays((1, 5, 2, 12)))
    with pytest.raises(ValueError, match="head width 12 must be a multiple of 8"):
        dot_product_attention(q, k, v, impl="cudnn", platform="gpu")
    q, k, v = (jnp.asarray(a, jnp.bfloat16) for a in _arrays((1, 5, 2, 16)))
    with pytest.raises(ValueError, match=r"T \(5\) and S \(5\) must be even"):
        dot_product_attention(q, k, v, mask=np.ones((5, 5), bool), impl="cudnn", platform="gpu")


def test_bad_shapes_are_named():
    q, k, v = _arrays((1, 5, 2, 8))
    with pytest.raises(ValueError, match=r"query must be \[batch, length, heads, head_dim\]"):
        dot_product_attention(q[0], k, v)
    with pytest.raises(ValueError, match="must share the batch"):
        dot_product_attention(q[..., :4], k, v)
    with pytest.raises(ValueError, match="share one dtype"):
        dot_product_attention(q, k, jnp.asarray(v, jnp.bfloat16))


def test_softmax_weights_is_a_float32_softmax_of_logits_plus_bias():
    logits = jnp.asarray([[1.0, 2.0, 3.0]], jnp.bfloat16)
    weights = softmax_weights(logits, bias=jnp.asarray([0.5, 0.0, -0.5]), mask=jnp.asarray([True, True, False]))
    e = np.exp([1.5, 2.0])
    assert weights.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(weights[0]), [e[0] / e.sum(), e[1] / e.sum(), 0.0], rtol=1e-6)


def test_module_is_qkv_projection_attention_and_output_projection():
    module = MultiHeadAttention(dim=12, num_heads=3)
    x = np.random.default_rng(12).normal(size=(2, 3, 4, 12)).astype(np.float32)
    params = nn.meta.unbox(module.init(jax.random.PRNGKey(0), x))["params"]
    params = jax.tree.map(lambda p: p + 0.1 * np.random.default_rng(13).normal(size=p.shape), params)
    out = module.apply({"params": params}, x)
    tokens = x.reshape(2, 12, 12)
    qkv = (tokens @ params["qkv"]["kernel"] + params["qkv"]["bias"]).reshape(2, 12, 3, 3, 4)
    attended = numpy_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]).reshape(2, 12, 12)
    want = attended @ params["proj"]["kernel"] + params["proj"]["bias"]
    np.testing.assert_allclose(np.asarray(out), want.reshape(x.shape), rtol=1e-4, atol=1e-5)


def test_module_heads_follow_num_heads_or_head_dim():
    assert MultiHeadAttention(dim=64, num_heads=4).heads() == (4, 16)
    assert MultiHeadAttention(dim=64, num_heads=None, head_dim=32).heads() == (2, 32)
    assert MultiHeadAttention(dim=64, num_heads=3, head_dim=32).heads() == (3, 32)  # inner width 96
    with pytest.raises(ValueError, match="dim 64 must be a positive multiple of num_heads 3"):
        MultiHeadAttention(dim=64, num_heads=3).heads()
    with pytest.raises(ValueError, match="attention_implementation 'flash' is not one of"):
        MultiHeadAttention(dim=8, num_heads=2, attention_implementation="flash").init(
            jax.random.PRNGKey(0), jnp.zeros((1, 4, 8))
        )


def test_module_attention_dropout_acts_only_in_training():
    module = MultiHeadAttention(dim=8, num_heads=2, attn_dropout=0.5)
    x = np.random.default_rng(14).normal(size=(1, 6, 8)).astype(np.float32)
    variables = module.init(jax.random.PRNGKey(0), x)
    eval_out = module.apply(variables, x)
    np.testing.assert_allclose(np.asarray(module.apply(variables, x)), np.asarray(eval_out))
    train_out = module.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.allclose(np.asarray(train_out), np.asarray(eval_out))


ON_GPU = jax.default_backend() == "gpu"


@pytest.mark.skipif(not ON_GPU, reason="cuDNN's fused attention needs a GPU")
def test_cudnn_matches_numpy_and_auto_on_a_gpu():
    q, k, v = (jnp.asarray(a, jnp.bfloat16) for a in _arrays((2, 128, 4, 64), seed=15))
    rng = np.random.default_rng(16)
    bias = rng.normal(size=(1, 4, 128, 128)).astype(np.float32)
    mask = rng.uniform(size=(2, 1, 128, 128)) > 0.2
    want = numpy_attention(*(np.asarray(a, np.float32) for a in (q, k, v)), bias=bias, mask=mask)
    for impl in ("cudnn", "auto"):
        out = jax.jit(lambda q, k, v, impl=impl: dot_product_attention(q, k, v, bias=bias, mask=mask, impl=impl))(
            q, k, v
        )
        np.testing.assert_allclose(np.asarray(out, np.float32), want, rtol=3e-2, atol=3e-2)


@pytest.mark.skipif(not ON_GPU, reason="cuDNN's fused attention needs a GPU")
def test_cudnn_gradients_stay_close_to_the_reference_form():
    q, k, v = (jnp.asarray(a, jnp.bfloat16) for a in _arrays((1, 64, 2, 32), seed=17))

    def loss(impl):
        return lambda q, k, v: jnp.sum(dot_product_attention(q, k, v, impl=impl).astype(jnp.float32) ** 2)

    got = jax.jit(jax.grad(loss("cudnn"), argnums=(0, 1, 2)))(q, k, v)
    want = jax.jit(jax.grad(loss("reference"), argnums=(0, 1, 2)))(q, k, v)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), rtol=5e-2, atol=5e-2)
