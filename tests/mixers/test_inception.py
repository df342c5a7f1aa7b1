"""iFormer's Inception mixer against a direct numpy form of each branch, its registration, gradients and errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.mixers.inception import InceptionMixer
from mixtok.mixers.registry import get as get_mixer


def _random_params(module, x, seed=0):
    """Weights of order 1 (the 0.02 init would make every branch look linear and tiny)."""
    rng = np.random.default_rng(seed)
    shapes = nn.meta.unbox(jax.eval_shape(module.init, jax.random.PRNGKey(0), x))["params"]
    return jax.tree_util.tree_map(lambda s: (0.5 * rng.normal(size=s.shape)).astype(np.float32), shapes)


def _gelu(a):
    from math import erf

    return a * 0.5 * (1.0 + np.vectorize(erf)(a / np.sqrt(2.0)))


def _pointwise(a, p):
    out = np.einsum("bhwi,io->bhwo", a, np.asarray(p["kernel"], np.float64)[0, 0])
    return out + np.asarray(p["bias"], np.float64) if "bias" in p else out


def _depthwise3x3(a, kernel):
    """Zero-padded depthwise 3x3 as a loop over the nine taps; kernel [3, 3, 1, C]."""
    b, h, w, c = a.shape
    padded = np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros_like(a)
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy : dy + h, dx : dx + w, :] * np.asarray(kernel, np.float64)[dy, dx, 0]
    return out


def _max_pool3x3(a):
    b, h, w, c = a.shape
    padded = np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    return np.max([padded[:, dy : dy + h, dx : dx + w, :] for dy in range(3) for dx in range(3)], axis=0)


def _attention(tokens, p, heads):
    """MHSA with qkv bias and no output projection, one head and one query at a time."""
    n, c = tokens.shape
    d = c // heads
    qkv = tokens @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)
    q, k, v = qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]
    out = np.zeros((n, c))
    for head in range(heads):
        sl = slice(head * d, (head + 1) * d)
        for i in range(n):
            logits = k[:, sl] @ q[i, sl] / np.sqrt(d)
            weights = np.exp(logits - logits.max())
            out[i, sl] = (weights / weights.sum()) @ v[:, sl]
    return out


def _numpy_mixer(x, params, num_heads, attention_heads, pool_size):
    x = np.asarray(x, np.float64)
    b, h, w, c = x.shape
    low_dim = attention_heads * (c // num_heads)
    high_dim = c - low_dim
    half = high_dim // 2
    hp = params["high_mixer"]
    conv = _gelu(_depthwise3x3(_pointwise(x[..., :half], hp["conv1"]), hp["proj1"]["kernel"]))
    pool = _gelu(_pointwise(_max_pool3x3(x[..., half:high_dim]), hp["proj2"]))
    low = x[..., high_dim:]
    s = pool_size
    pooled = low.reshape(b, h // s, s, w // s, s, low_dim).mean(axis=(2, 4))
    attended = np.stack(
        [_attention(pooled[i].reshape(-1, low_dim), params["low_mixer"]["qkv"], attention_heads) for i in range(b)]
    ).reshape(b, h // s, w // s, low_dim)
    upsampled = attended.repeat(s, axis=1).repeat(s, axis=2)
    z = np.concatenate([conv, pool, upsampled], axis=-1)
    z = z + _depthwise3x3(z, params["conv_fuse"]["kernel"])
    return _pointwise(z, params["proj"])


@pytest.mark.parametrize("pool_size", [2, 1])
def test_mixer_equals_the_direct_form_of_its_branches(pool_size):
    # dim 12, 3 heads of 4 channels, 1 to attention: high_dim 8 (conv 4 -> 8, pool 4 -> 8), low_dim 4.
    x = np.random.default_rng(1).normal(size=(2, 4, 6, 12)).astype(np.float32)
    mixer = InceptionMixer(dim=12, num_heads=3, attention_heads=1, pool_size=pool_size)
    params = _random_params(mixer, x)
    got = jax.jit(mixer.apply)({"params": params}, x)
    want = _numpy_mixer(x, params, 3, 1, pool_size)
    assert got.shape == x.shape
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=2e-4)


def test_attention_share_sets_the_branch_widths():
    x = jnp.zeros((1, 4, 4, 24))
    params = nn.meta.unbox(
        jax.eval_shape(InceptionMixer(24, num_heads=6, attention_heads=4).init, jax.random.PRNGKey(0), x)
    )["params"]
    # low_dim = 4 * 4 = 16, high_dim = 8: the conv and pool halves each double 4 -> 8 channels.
    assert params["low_mixer"]["qkv"]["kernel"].shape == (16, 48)
    assert params["high_mixer"]["conv1"]["kernel"].shape == (1, 1, 4, 8)
    assert params["high_mixer"]["proj2"]["kernel"].shape == (1, 1, 4, 8)
    assert "bias" not in params["high_mixer"]["conv1"] and "bias" not in params["conv_fuse"]
    assert params["conv_fuse"]["kernel"].shape == (3, 3, 1, 2 * 8 + 16)
    assert params["proj"]["kernel"].shape == (1, 1, 32, 24)


def test_registered_and_differentiable():
    assert get_mixer("inception_mixer") is InceptionMixer
    x = np.random.default_rng(2).normal(size=(1, 4, 4, 12)).astype(np.float32)
    mixer = InceptionMixer(dim=12, num_heads=3, attention_heads=1)
    params = _random_params(mixer, x, seed=3)

    def loss(p, x):
        return jnp.sum(jnp.sin(mixer.apply({"params": p}, x)))

    grads, grad_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))) and float(jnp.abs(leaf).sum()) > 0, path
    # A directional finite difference agrees with the input gradient.
    direction = np.random.default_rng(4).normal(size=x.shape).astype(np.float32)
    eps = 1e-2
    f = jax.jit(loss)
    numeric = (float(f(params, x + eps * direction)) - float(f(params, x - eps * direction))) / (2 * eps)
    np.testing.assert_allclose(float(jnp.sum(grad_x * direction)), numeric, rtol=2e-2)


def test_bad_configurations_name_the_bad_value():
    x = jnp.zeros((1, 4, 4, 12))
    init = lambda m, x: jax.eval_shape(m.init, jax.random.PRNGKey(0), x)  # noqa: E731
    with pytest.raises(ValueError, match="attention_heads=3 must be in"):
        init(InceptionMixer(12, num_heads=3, attention_heads=3), x)
    with pytest.raises(ValueError, match="num_heads=5 must be >= 1 and divide dim=12"):
        init(InceptionMixer(12, num_heads=5), x)
    with pytest.raises(ValueError, match="pool_size=2 must be >= 1 and divide the feature map 5x4"):
        init(InceptionMixer(12, num_heads=3), jnp.zeros((1, 5, 4, 12)))
    with pytest.raises(ValueError, match=r"InceptionMixer\(dim=16\) takes NHWC.*got shape \(1, 4, 4, 12\)"):
        init(InceptionMixer(16, num_heads=4), x)
