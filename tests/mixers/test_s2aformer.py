"""Strip Self-Attention and the stand-in Local Interaction Module against direct numpy forms."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.mixers import registry
from mixtok.mixers.s2aformer import LocalInteractionModule, StripSelfAttention, compressed_qk_dim


def _random_params(module, x, seed=0, scale=0.3):
    """Random values in the shapes init gives (biases and norm affines too, so each term is tested)."""
    rng = np.random.default_rng(seed)
    shapes = nn.meta.unbox(jax.eval_shape(module.init, jax.random.PRNGKey(0), x))["params"]
    return jax.tree_util.tree_map(lambda s: np.asarray(rng.normal(size=s.shape) * scale, np.float32), shapes)


def _depthwise_strided_conv(x, kernel, bias, r):
    """Explicit loop: out[b, i, j, c] = sum_{u, v < r} x[b, r i + u, r j + v, c] kernel[u, v, 0, c] + bias[c]."""
    batch, height, width, channels = x.shape
    out = np.zeros((batch, height // r, width // r, channels))
    for i in range(height // r):
        for j in range(width // r):
            patch = x[:, r * i : r * i + r, r * j : r * j + r, :]
            out[:, i, j, :] = np.einsum("buvc,uvc->bc", patch, kernel[:, :, 0, :]) + bias
    return out


def _layer_norm(x, scale, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def _direct_ssa(x, p, heads, r, eps=1e-5):
    """Reduce, project, softmax over the reduced tokens, head by head, in float64 numpy."""
    x = np.asarray(x, np.float64)
    batch, height, width, channels = x.shape
    reduced = x
    if r > 1:
        reduced = _depthwise_strided_conv(x, p["reduce"]["kernel"], p["reduce"]["bias"], r)
        reduced = _layer_norm(reduced, p["reduce_norm"]["scale"], p["reduce_norm"]["bias"], eps)
    tokens = x.reshape(batch, -1, channels)
    kv = reduced.reshape(batch, -1, channels)
    q = tokens @ p["query"]["kernel"] + p["query"]["bias"]
    k = kv @ p["key"]["kernel"] + p["key"]["bias"]
    v = kv @ p["value"]["kernel"] + p["value"]["bias"]
    d, dv = q.shape[-1] // heads, channels // heads
    out = np.zeros_like(tokens)
    for h in range(heads):
        logits = q[..., h * d : (h + 1) * d] @ np.swapaxes(k[..., h * d : (h + 1) * d], -1, -2) / np.sqrt(d)
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        out[..., h * dv : (h + 1) * dv] = weights @ v[..., h * dv : (h + 1) * dv]
    out = out @ p["proj"]["kernel"] + p["proj"]["bias"]
    return out.reshape(batch, height, width, channels)


@pytest.mark.parametrize("heads,reduction,size", [(2, 2, (4, 6)), (1, 1, (3, 5)), (2, 3, (7, 6))])
def test_ssa_equals_the_direct_reduce_project_softmax_form(heads, reduction, size):
    dim = 8
    module = StripSelfAttention(dim, num_heads=heads, reduction=reduction, qk_dim=4)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, *size, dim)), jnp.float32)
    params = _random_params(module, x)
    got = module.apply({"params": params}, x)
    np.testing.assert_allclose(np.asarray(got), _direct_ssa(x, params, heads, reduction), rtol=1e-4, atol=1e-5)


def test_ssa_compresses_queries_and_keys_but_not_values():
    module = StripSelfAttention(64, num_heads=2, reduction=4)
    x = jnp.zeros((1, 8, 8, 64))
    params = _random_params(module, x)
    assert compressed_qk_dim(64, 2, 0.25) == 16
    assert params["query"]["kernel"].shape == params["key"]["kernel"].shape == (64, 16)
    assert params["value"]["kernel"].shape == (64, 64)
    assert params["reduce"]["kernel"].shape == (4, 4, 1, 64)  # depth-wise, stride = kernel = r
    assert compressed_qk_dim(40, 5, 0.25) == 10 and compressed_qk_dim(12, 8, 0.1) == 8


def test_ssa_is_registered_and_jits_and_has_finite_gradients():
    assert registry.get("strip_self_attention") is StripSelfAttention
    module = StripSelfAttention(8, num_heads=2, reduction=2, qk_dim=4)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 4, 4, 8)), jnp.float32)
    params = _random_params(module, x)
    np.testing.assert_allclose(
        np.asarray(jax.jit(module.apply)({"params": params}, x)),
        np.asarray(module.apply({"params": params}, x)),
        rtol=1e-5,
        atol=1e-6,
    )

    def loss(p, x):
        return jnp.sum(module.apply({"params": p}, x) ** 2)

    grads, grad_x = jax.grad(loss, argnums=(0, 1))(params, x)
    for name, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0, name
    assert bool(jnp.all(jnp.isfinite(grad_x)))
    # Directional derivative against a central difference in x.
    direction = jnp.asarray(np.random.default_rng(3).normal(size=x.shape), jnp.float32)
    eps = 1e-3
    numeric = (loss(params, x + eps * direction) - loss(params, x - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.vdot(grad_x, direction)), float(numeric), rtol=2e-2)


def test_ssa_rejects_bad_inputs_and_settings_by_name():
    x = jnp.zeros((1, 4, 4, 8))
    with pytest.raises(ValueError, match=r"NHWC.*\(4, 4, 8\)"):
        StripSelfAttention(8).init(jax.random.PRNGKey(0), x[0])
    with pytest.raises(ValueError, match=r"StripSelfAttention\(dim=6\) takes NHWC.*got shape \(1, 4, 4, 8\)"):
        StripSelfAttention(6).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="num_heads=3 must be >= 1 and divide dim=8"):
        StripSelfAttention(8, num_heads=3).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="qk_dim=3 must be positive and divisible by num_heads=2"):
        StripSelfAttention(8, num_heads=2, qk_dim=3).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="reduction=8 needs H, W >= 8; got 4x4"):
        StripSelfAttention(8, reduction=8).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match=r"qk_ratio must be in \(0, 1\]; got 1.5"):
        StripSelfAttention(8, qk_ratio=1.5).init(jax.random.PRNGKey(0), x)


def test_local_interaction_module_equals_pointwise_depthwise_gelu_pointwise():
    from scipy.special import erf

    dim = 4
    module = LocalInteractionModule(dim)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(1, 5, 6, dim)), jnp.float32)
    p = _random_params(module, x)
    y = np.asarray(x, np.float64) @ p["pw1"]["kernel"] + p["pw1"]["bias"]
    padded = np.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = np.zeros_like(y) + p["dw"]["bias"]
    for u in range(3):
        for v in range(3):
            conv += padded[:, u : u + 5, v : v + 6, :] * p["dw"]["kernel"][u, v, 0]
    gelu = 0.5 * conv * (1 + erf(conv / np.sqrt(2)))  # exact (erf) GELU, as PyTorch's nn.GELU
    expected = gelu @ p["pw2"]["kernel"] + p["pw2"]["bias"]
    np.testing.assert_allclose(np.asarray(module.apply({"params": p}, x)), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer; got 2"):
        LocalInteractionModule(dim, kernel_size=2).init(jax.random.PRNGKey(0), x)


def test_the_mixer_drops_into_any_metaformer_by_name():
    from mixtok.models import create_model

    model = create_model("caformer_s18", token_mixers="strip_self_attention", mixer_kwargs=dict(reduction=2))
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3))))
    mixer = shapes["params"]["stages_3"]["blocks_0"]["token_mixer"]
    assert mixer["query"]["kernel"].shape == (512, 128) and mixer["reduce"]["kernel"].shape == (2, 2, 1, 512)
