"""The LinearAttention mixer against a direct numpy loop over tokens and heads."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.mixers import registry
from mixtok.mixers.linear_attention import LinearAttention


def _params(module, x):
    return jax.tree_util.tree_map(np.asarray, nn.meta.unbox(module.init(jax.random.PRNGKey(0), x)))["params"]


def _loop_reference(x, params, heads, head_dim, feature_map, eps=1e-6):
    """Token by token, head by head: o_i = sum_j (phi(q_i).phi(k_j)) v_j / (sum_j phi(q_i).phi(k_j) + eps)."""
    phi = {
        "elu1": lambda t: np.where(t > 0, t + 1, np.exp(np.minimum(t, 0))),
        "relu": lambda t: np.maximum(t, 0),
        "identity": lambda t: t,
    }[feature_map]
    batch, height, width, channels = x.shape
    tokens = np.asarray(x, np.float64).reshape(batch, height * width, channels)
    qkv = tokens @ params["qkv"]["kernel"] + params["qkv"]["bias"]
    qkv = qkv.reshape(batch, height * width, 3, heads, head_dim)
    out = np.zeros((batch, height * width, heads, head_dim))
    for b in range(batch):
        for h in range(heads):
            q, k, v = phi(qkv[b, :, 0, h]), phi(qkv[b, :, 1, h]), qkv[b, :, 2, h]
            for i in range(height * width):
                weights = np.array([q[i] @ k[j] for j in range(height * width)])
                out[b, i, h] = weights @ v / (1.0 if feature_map == "identity" else weights.sum() + eps)
    out = out.reshape(batch, height * width, heads * head_dim) @ params["proj"]["kernel"] + params["proj"]["bias"]
    return out.reshape(x.shape)


@pytest.mark.parametrize(
    "shape,heads,head_dim,feature_map",
    [((2, 5, 3, 16), None, 8, "elu1"), ((1, 4, 4, 12), 3, 6, "relu"), ((1, 3, 5, 8), 2, 4, "identity")],
)
def test_matches_a_direct_numpy_loop(shape, heads, head_dim, feature_map):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    module = LinearAttention(dim=shape[-1], num_heads=heads, head_dim=head_dim, feature_map=feature_map)
    params = _params(module, x)
    out = jax.jit(module.apply)({"params": params}, x)
    assert out.shape == x.shape
    expected = _loop_reference(x, params, heads or shape[-1] // head_dim, head_dim, feature_map)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_is_registered_has_the_official_parameter_count_and_trains():
    assert registry.get("linear_attention") is LinearAttention
    x = jnp.ones((2, 4, 4, 64))
    module = LinearAttention(dim=64)  # 2 heads of 32
    params = _params(module, x)
    count = sum(p.size for p in jax.tree_util.tree_leaves(params))
    assert count == 4 * 64 * 64 + 4 * 64  # q, k, v, out Linear(64, 64) with biases
    grads = jax.jit(jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x, train=True) ** 2)))(params)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))


def test_bfloat16_compute_returns_bfloat16():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 7, 7, 32)), jnp.bfloat16)
    module = LinearAttention(dim=32, dtype=jnp.bfloat16)
    out = jax.jit(module.apply)({"params": _params(module, x)}, x)
    assert out.dtype == jnp.bfloat16 and out.shape == x.shape
