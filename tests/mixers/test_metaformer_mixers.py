"""The MetaFormer token mixers against hand-computed values and dense / direct-loop numpy forms."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import mixers
from mixtok.mixers.pooling import valid_counts


def _params(module, x, seed=0):
    variables = nn.meta.unbox(module.init(jax.random.PRNGKey(seed), x))
    return jax.tree_util.tree_map(np.asarray, variables)


def _pool_reference(x, k):
    """Direct loop: the mean over the window positions that lie inside the image."""
    b, h, w, c = x.shape
    out = np.zeros_like(x)
    r = k // 2
    for i in range(h):
        for j in range(w):
            window = x[:, max(i - r, 0) : i + r + 1, max(j - r, 0) : j + r + 1, :]
            out[:, i, j, :] = window.mean((1, 2))
    return out


def test_pooling_excludes_padding_from_the_divisor_at_corners_and_edges():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)  # [[1,2,3],[4,5,6],[7,8,9]]
    out = np.asarray(mixers.Pooling(dim=1).apply({}, x))[0, :, :, 0]
    # corner (0,0): mean(1,2,4,5)=3 over 4 positions; edge (0,1): mean(1..6)=3.5 over 6; centre: 5 over 9.
    expected_pool = np.array([[3.0, 3.5, 4.0], [4.5, 5.0, 5.5], [6.0, 6.5, 7.0]])
    np.testing.assert_allclose(out, expected_pool - x[0, :, :, 0], rtol=1e-6)


def test_pooling_divisor_counts():
    np.testing.assert_array_equal(valid_counts(5, 3), [2, 3, 3, 3, 2])
    np.testing.assert_array_equal(valid_counts(4, 5), [3, 4, 4, 3])
    np.testing.assert_array_equal(valid_counts(1, 3), [1])


@pytest.mark.parametrize("shape,pool_size", [((2, 5, 7, 3), 3), ((1, 6, 4, 2), 5), ((1, 1, 3, 2), 3)])
def test_pooling_matches_a_direct_loop(shape, pool_size):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    out = np.asarray(mixers.Pooling(dim=shape[-1], pool_size=pool_size).apply({}, x))
    np.testing.assert_allclose(out, _pool_reference(x, pool_size) - x, rtol=1e-5, atol=1e-6)


def test_pooling_rejects_even_pool_size():
    with pytest.raises(ValueError, match="pool_size must be odd; got 4|pool_size must be odd"):
        mixers.Pooling(dim=2, pool_size=4).apply({}, np.zeros((1, 4, 4, 2), np.float32))


def _depthwise_reference(x, kernel):
    """Zero-padded 'same' depthwise cross-correlation, one loop over the kernel taps."""
    k = kernel.shape[0]
    r = k // 2
    padded = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
    out = np.zeros_like(x)
    h, w = x.shape[1:3]
    for di in range(k):
        for dj in range(k):
            out += padded[:, di : di + h, dj : dj + w, :] * kernel[di, dj, 0, :]
    return out


def test_sepconv_matches_pointwise_starrelu_depthwise_pointwise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 8, 6)).astype(np.float32)
    module = mixers.SepConv(dim=6)
    params = _params(module, x)["params"]
    params["act1"] = {"scale": np.array([0.7], np.float32), "bias": np.array([0.2], np.float32)}
    out = np.asarray(module.apply({"params": params}, x))
    h = x @ params["pwconv1"]["kernel"]
    h = 0.7 * np.maximum(h, 0) ** 2 + 0.2
    h = _depthwise_reference(h, params["dwconv"]["kernel"])
    np.testing.assert_allclose(out, h @ params["pwconv2"]["kernel"], rtol=1e-4, atol=1e-5)
    assert params["dwconv"]["kernel"].shape == (7, 7, 1, 12)  # expansion 2, depthwise, no bias
    assert "bias" not in params["pwconv1"] and "bias" not in params["dwconv"]


def test_attention_matches_dense_softmax_attention():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 5, 64)).astype(np.float32)
    module = mixers.Attention(dim=64)  # head_dim 32 -> 2 heads
    params = _params(module, x)["params"]
    out = np.asarray(module.apply({"params": params}, x))
    tokens = x.reshape(2, 15, 64)
    qkv = (tokens @ params["qkv"]["kernel"]).reshape(2, 15, 3, 2, 32)
    heads = []
    for h in range(2):
        q, k, v = qkv[:, :, 0, h], qkv[:, :, 1, h], qkv[:, :, 2, h]
        logits = q @ k.transpose(0, 2, 1) / np.sqrt(32)
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        heads.append(weights @ v)
    expected = np.concatenate(heads, -1) @ params["proj"]["kernel"]
    np.testing.assert_allclose(out, expected.reshape(2, 3, 5, 64), rtol=1e-4, atol=1e-5)
    assert set(params["qkv"]) == {"kernel"} and set(params["proj"]) == {"kernel"}  # no biases


def test_random_mixing_is_a_frozen_row_stochastic_token_matrix():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 3, 5)).astype(np.float32)
    module = mixers.RandomMixing(dim=5)
    variables = _params(module, x)
    assert set(variables) == {"frozen"}  # nothing for the optimizer
    matrix = variables["frozen"]["random_matrix"]
    assert matrix.shape == (12, 12)
    np.testing.assert_allclose(matrix.sum(-1), 1.0, rtol=1e-6)
    out = np.asarray(module.apply(variables, x))
    np.testing.assert_allclose(
        out.reshape(2, 12, 5), np.einsum("mn,bnc->bmc", matrix, x.reshape(2, 12, 5)), rtol=1e-5, atol=1e-6
    )


def test_random_mixing_refuses_another_resolution():
    module = mixers.RandomMixing(dim=2)
    variables = module.init(jax.random.PRNGKey(0), np.zeros((1, 4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="built for 16 tokens.*3x3=9"):
        module.apply(variables, np.zeros((1, 3, 3, 2), np.float32))
    with pytest.raises(ValueError, match="num_tokens=49.*4x4=16"):
        mixers.RandomMixing(dim=2, num_tokens=49).init(jax.random.PRNGKey(0), np.zeros((1, 4, 4, 2), np.float32))


def test_identity_returns_its_input():
    x = np.random.default_rng(4).normal(size=(1, 2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(mixers.Identity(dim=4).apply({}, x)), x)


# Options for mixers whose defaults assume a stage-sized map (a pooled grid or pooling window larger
# than this test's 6x5 map); every other mixer runs with its defaults.
SMALL_MAP_OPTIONS = {"aggregated_attention": dict(sr_ratio=2), "inception_mixer": dict(pool_size=1)}
# Mixers that need another grid than 6x5: Strip-MLP's strip MLP a square one (H == W), WaveMix's 3-level DWT
# multiples of 2^3.
MAP_SIZES = {"strip_mlp": (6, 6), "wavelet_mixer": (8, 8)}


@pytest.mark.parametrize("name", mixers.list_mixers())
def test_every_mixer_keeps_shape_jits_and_has_finite_gradients(name):
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, *MAP_SIZES.get(name, (6, 5)), 32)), jnp.float32)
    module = mixers.get(name)(dim=32, **SMALL_MAP_OPTIONS.get(name, {}))
    variables = nn.meta.unbox(module.init(jax.random.PRNGKey(0), x))
    out = jax.jit(module.apply)(variables, x)
    assert out.shape == x.shape and out.dtype == x.dtype

    def loss(variables, x):
        return jnp.sum(module.apply(variables, x) ** 2)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables, x)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads[1]).sum()) > 0  # the input gets gradient through every mixer
    bf16 = jax.jit(module.clone(dtype=jnp.bfloat16).apply)(variables, x.astype(jnp.bfloat16))
    assert bf16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(bf16, np.float32), np.asarray(out), atol=0.1, rtol=0.05)


def test_registry_suggests_close_names():
    with pytest.raises(ValueError, match="Unknown token mixer 'poolng'. Did you mean 'pooling'"):
        mixers.get("poolng")


@pytest.mark.parametrize("name", mixers.list_mixers())
def test_every_mixer_names_itself_and_its_dim_when_the_channels_do_not_fit(name):
    module = mixers.get(name)(dim=32, **SMALL_MAP_OPTIONS.get(name, {}))
    with pytest.raises(ValueError, match=rf"{type(module).__name__}\(dim=32\).*\(2, 6, 5, 24\)"):
        module.init(jax.random.PRNGKey(0), jnp.zeros((2, 6, 5, 24)))
