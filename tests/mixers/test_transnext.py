"""TransNeXt mixers against direct per-pixel numpy loops: aggregated attention, full attention, ConvGLU."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.mixers import registry
from mixtok.mixers.transnext import (
    AggregatedAttention,
    ConvGLU,
    LengthScaledCosineAttention,
    adaptive_pool_matrix,
    relative_position_cpb,
)

_erf = np.vectorize(math.erf)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _softplus(x):
    return np.log1p(np.exp(x))


def _l2(x):
    return x / max(np.linalg.norm(x), 1e-12)


def _randomised(module, x, seed=0):
    """Variables with every parameter drawn at random (biases and tables included), in float64 numpy too."""
    rng = np.random.default_rng(seed)
    shapes = nn.meta.unbox(jax.eval_shape(module.init, jax.random.PRNGKey(0), x))
    variables = jax.tree_util.tree_map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), jnp.float32), shapes)
    return variables, jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables)["params"]


def _cpb(p, coords):
    """The CPB MLP applied to one log-spaced (dh, dw) pair, per head."""
    return (
        np.maximum(coords @ p["cpb_fc1"]["kernel"] + p["cpb_fc1"]["bias"], 0) @ p["cpb_fc2"]["kernel"]
        + p["cpb_fc2"]["bias"]
    )


def _log_coords(dh, dw, pretrain):
    rel = np.array([dh / (pretrain[0] - 1) * 8, dw / (pretrain[1] - 1) * 8])
    return np.sign(rel) * np.log2(np.abs(rel) + 1) / 3


def _pooled_axis(length, out):
    """Pixel coordinate of each adaptive-average-pool bin: the mean of the indices it covers (PyTorch's rule)."""
    return [np.mean(np.arange(math.floor(i * length / out), math.ceil((i + 1) * length / out))) for i in range(out)]


def _aggregated_attention_loop(p, x, heads, sr_ratio, pretrain=None):
    """For each query pixel: its 3x3 neighbourhood inside the image + every pooled token, one softmax."""
    height, width, channels = x.shape
    d = channels // heads
    pool_h, pool_w = height // sr_ratio, width // sr_ratio
    pretrain = pretrain or (height, width)
    # Pooled tokens: LN(AdaptiveAvgPool(GELU(conv1x1(x)))), pooled by explicit start/end bins.
    reduced = _gelu(x @ p["sr"]["kernel"] + p["sr"]["bias"])
    pooled = []
    for i in range(pool_h):
        for j in range(pool_w):
            rows = slice(math.floor(i * height / pool_h), math.ceil((i + 1) * height / pool_h))
            cols = slice(math.floor(j * width / pool_w), math.ceil((j + 1) * width / pool_w))
            token = reduced[rows, cols].mean(axis=(0, 1))
            token = (token - token.mean()) / np.sqrt(token.var() + 1e-5)
            pooled.append(token * p["norm"]["scale"] + p["norm"]["bias"])
    kv = lambda t: t @ p["kv"]["kernel"] + p["kv"]["bias"]  # noqa: E731
    pool_kv = [kv(t) for t in pooled]
    pool_coords = [(a, b) for a in _pooled_axis(height, pool_h) for b in _pooled_axis(width, pool_w)]
    out = np.zeros_like(x)
    temperature = _softplus(p["temperature"][:, 0, 0])
    for r in range(height):
        for c in range(width):
            q_all = x[r, c] @ p["q"]["kernel"] + p["q"]["bias"]
            window = [(dy, dx, r + dy - 1, c + dx - 1) for dy in range(3) for dx in range(3)]
            inside = [(dy, dx, rr, cc) for dy, dx, rr, cc in window if 0 <= rr < height and 0 <= cc < width]
            scale = np.log(len(inside) + len(pooled))
            result = np.zeros(channels)
            for h in range(heads):
                hs = slice(h * d, (h + 1) * d)
                q = _l2(q_all[hs])
                q_scaled = (q + p["query_embedding"][h, 0]) * temperature[h] * scale
                scores, values, extra = [], [], []
                for dy, dx, rr, cc in inside:
                    tap = dy * 3 + dx
                    k_v = kv(x[rr, cc])
                    scores.append(q_scaled @ _l2(k_v[:channels][hs]) + p["relative_pos_bias_local"][h, tap])
                    values.append(k_v[channels:][hs])
                    extra.append(q @ p["learnable_tokens"][h, :, tap] + p["learnable_bias"][h, 0, tap])
                for (kr, kc), k_v in zip(pool_coords, pool_kv):
                    bias = _cpb(p, _log_coords(r - kr, c - kc, pretrain))[h]
                    scores.append(q_scaled @ _l2(k_v[:channels][hs]) + bias)
                    values.append(k_v[channels:][hs])
                    extra.append(0.0)
                weights = np.exp(np.array(scores) - max(scores))
                weights = weights / weights.sum() + np.array(extra)
                result[hs] = weights @ np.array(values)
            out[r, c] = result @ p["proj"]["kernel"] + p["proj"]["bias"]
    return out


def test_aggregated_attention_matches_a_per_pixel_loop_including_the_border():
    # 5 x 6 with sr 2: a 2 x 3 pooled grid whose row bins overlap (5 / 2), and border pixels with 4 or 6 taps.
    x = np.random.default_rng(1).normal(size=(2, 5, 6, 8))
    module = AggregatedAttention(dim=8, num_heads=2, sr_ratio=2)
    variables, p = _randomised(module, jnp.asarray(x, jnp.float32))
    y = np.asarray(jax.jit(module.apply)(variables, jnp.asarray(x, jnp.float32)))
    for b in range(2):
        np.testing.assert_allclose(y[b], _aggregated_attention_loop(p, x[b], 2, 2), rtol=2e-4, atol=2e-4)


def test_pretrain_size_rescales_the_position_bias_offsets():
    x = np.random.default_rng(2).normal(size=(1, 4, 4, 8))
    module = AggregatedAttention(dim=8, num_heads=2, sr_ratio=2, pretrain_size=(7, 9))
    variables, p = _randomised(module, jnp.asarray(x, jnp.float32), seed=3)
    y = np.asarray(module.apply(variables, jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(y[0], _aggregated_attention_loop(p, x[0], 2, 2, (7, 9)), rtol=2e-4, atol=2e-4)


def test_full_attention_matches_a_direct_loop():
    x = np.random.default_rng(4).normal(size=(3, 4, 8))
    module = LengthScaledCosineAttention(dim=8, num_heads=2)
    variables, p = _randomised(module, jnp.asarray(x[None], jnp.float32))
    y = np.asarray(module.apply(variables, jnp.asarray(x[None], jnp.float32)))[0]
    qkv = x.reshape(12, 8) @ p["qkv"]["kernel"] + p["qkv"]["bias"]
    temperature = _softplus(p["temperature"][:, 0, 0])
    expected = np.zeros((12, 8))
    for n in range(12):
        for h in range(2):
            hs = slice(4 * h, 4 * h + 4)
            q = (_l2(qkv[n, hs]) + p["query_embedding"][h, 0]) * temperature[h] * np.log(12)
            scores = [
                q @ _l2(qkv[m, 8:16][hs]) + _cpb(p, _log_coords(n // 4 - m // 4, n % 4 - m % 4, (3, 4)))[h]
                for m in range(12)
            ]
            weights = np.exp(np.array(scores) - max(scores))
            expected[n, hs] = (weights / weights.sum()) @ qkv[:, 16:][:, hs]
    expected = expected @ p["proj"]["kernel"] + p["proj"]["bias"]
    np.testing.assert_allclose(y.reshape(12, 8), expected, rtol=2e-4, atol=2e-4)


def test_conv_glu_matches_the_direct_form():
    x = np.random.default_rng(5).normal(size=(1, 4, 5, 6))
    module = ConvGLU(dim=6, mlp_ratio=4.0)  # hidden = int(2 * 24 / 3) = 16
    variables, p = _randomised(module, jnp.asarray(x, jnp.float32))
    assert p["fc1"]["kernel"].shape == (6, 32) and p["dwconv"]["kernel"].shape == (3, 3, 1, 16)
    y = np.asarray(module.apply(variables, jnp.asarray(x, jnp.float32)))[0]
    h = x[0] @ p["fc1"]["kernel"] + p["fc1"]["bias"]
    value, gate = h[..., :16], h[..., 16:]
    padded = np.pad(value, ((1, 1), (1, 1), (0, 0)))
    conv = sum(
        padded[dy : dy + 4, dx : dx + 5] * p["dwconv"]["kernel"][dy, dx, 0] for dy in range(3) for dx in range(3)
    )
    expected = (_gelu(conv + p["dwconv"]["bias"]) * gate) @ p["fc2"]["kernel"] + p["fc2"]["bias"]
    np.testing.assert_allclose(y, expected, rtol=2e-4, atol=2e-4)


def test_gradients_are_finite_through_the_masked_window_and_reach_every_parameter():
    x = jnp.asarray(np.random.default_rng(6).normal(size=(1, 4, 4, 8)), jnp.float32)
    for module in (
        AggregatedAttention(dim=8, num_heads=2, sr_ratio=2),
        LengthScaledCosineAttention(dim=8, num_heads=2),
        ConvGLU(dim=8, mlp_ratio=2.0),
    ):
        variables, _ = _randomised(module, x)
        grads = jax.jit(jax.grad(lambda v, inp, m=module: jnp.sum(m.apply(v, inp) ** 2), argnums=(0, 1)))(variables, x)
        for leaf in jax.tree_util.tree_leaves(grads):
            assert np.all(np.isfinite(leaf)) and np.any(leaf != 0)


def test_initial_temperature_makes_softplus_one_over_0_24():
    module = AggregatedAttention(dim=8, num_heads=2, sr_ratio=2)
    params = nn.meta.unbox(module.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 8))))["params"]
    np.testing.assert_allclose(jax.nn.softplus(params["temperature"]), 1 / 0.24, rtol=1e-6)
    np.testing.assert_array_equal(params["learnable_bias"], 0.0)


def test_adaptive_pooling_and_cpb_table_follow_pytorch_bins():
    np.testing.assert_allclose(adaptive_pool_matrix(5, 2) @ np.arange(5.0), [1.0, 3.0])  # bins 0..2, 2..4
    index, table = relative_position_cpb((4, 4), (2, 2))
    assert index.shape == (16 * 4,) and table.shape[1] == 2 and index.max() == len(table) - 1


def test_mixers_are_registered_and_reject_bad_options():
    assert registry.get("aggregated_attention") is AggregatedAttention
    assert registry.get("length_scaled_cosine_attention") is LengthScaledCosineAttention
    x = jnp.zeros((1, 4, 4, 8))
    with pytest.raises(ValueError, match="num_heads"):
        AggregatedAttention(dim=8, num_heads=3).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="Pooled grid"):
        AggregatedAttention(dim=8, num_heads=2, sr_ratio=8).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="window_size"):
        AggregatedAttention(dim=8, num_heads=2, sr_ratio=2, window_size=2).init(jax.random.PRNGKey(0), x)
