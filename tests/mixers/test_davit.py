"""DaViT's mixers against independent forms: a per-head loop (channel attention), full attention with the
equivalent block mask (window attention, shifted or not, padded or not) and the softmax formula (MHSA)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import mixers
from mixtok.layers import dot_product_attention
from mixtok.mixers.davit import ChannelAttention, MultiHeadAttention, WindowAttention, shifted_window_mask


def _random_params(module, x, seed=0):
    """Parameters of the right tree with standard-normal / sqrt(fan_in) weights and non-zero biases."""
    rng = np.random.default_rng(seed)
    shapes = nn.meta.unbox(jax.eval_shape(module.init, jax.random.PRNGKey(0), x))["params"]

    def draw(leaf):
        if leaf.ndim == 1:
            return (0.3 * rng.normal(size=leaf.shape)).astype(np.float32)
        return (rng.normal(size=leaf.shape) / np.sqrt(leaf.shape[0])).astype(np.float32)

    return jax.tree.map(draw, shapes)


def _images(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _softmax(z, xp):
    z = z - z.max(-1, keepdims=True)
    e = xp.exp(z)
    return e / e.sum(-1, keepdims=True)


def _qkv(tokens, params, heads, xp):
    b, n, c = tokens.shape
    qkv = (tokens @ params["qkv"]["kernel"] + params["qkv"]["bias"]).reshape(b, n, 3, heads, c // heads)
    return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]


def _proj(tokens, params):
    return tokens @ params["proj"]["kernel"] + params["proj"]["bias"]


def masked_attention_reference(x, params, heads, allowed, xp=np):
    """softmax(q k^T / sqrt(d)) v over all tokens of x [B, H, W, C], where `allowed[n, m]` says who attends to whom."""
    b, h, w, c = x.shape
    q, k, v = _qkv(x.reshape(b, h * w, c), params, heads, xp)
    logits = xp.einsum("bnhd,bmhd->bhnm", q, k) * (c // heads) ** -0.5
    logits = xp.where(allowed, logits, -1e30)
    out = xp.einsum("bhnm,bmhd->bnhd", _softmax(logits, xp), v).reshape(b, h * w, c)
    return _proj(out, params).reshape(b, h, w, c)


def window_labels(height, width, window, shift):
    """Which (window, Swin region) each token of the padded map belongs to, from arithmetic on coordinates.

    A token at padded position (i, j) sits at ((i - shift) mod Hp, (j - shift) mod Wp) after the roll by
    -shift; windows tile the rolled map, and with a shift the rolled map has three bands per axis
    (< Hp - window, < Hp - shift, the rest), whose tokens came from different edges of the image.
    """
    hp, wp = -(-height // window) * window, -(-width // window) * window
    r = (np.arange(hp)[:, None] - shift) % hp + np.zeros((1, wp), int)
    s = (np.arange(wp)[None, :] - shift) % wp + np.zeros((hp, 1), int)
    label = (r // window) * (wp // window) + s // window
    if shift:
        band_r = (r >= hp - window).astype(int) + (r >= hp - shift)
        band_s = (s >= wp - window).astype(int) + (s >= wp - shift)
        label = label * 9 + band_r * 3 + band_s
    return label.reshape(-1), (hp, wp)


def window_attention_reference(x, params, heads, window, shift, xp=np):
    """Full attention on the zero-padded map with the block mask of the (shifted) windows, then cropped."""
    b, h, w, c = x.shape
    labels, (hp, wp) = window_labels(h, w, window, shift)
    padded = xp.pad(x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
    allowed = labels[:, None] == labels[None, :]
    return masked_attention_reference(padded, params, heads, allowed, xp)[:, :h, :w]


def channel_attention_reference(x, params, heads):
    """A per-sample, per-head loop: A = softmax((k / sqrt(d))^T v) among the d channels; y = q A^T."""
    b, h, w, c = x.shape
    d = c // heads
    q, k, v = _qkv(x.reshape(b, h * w, c), params, heads, np)
    out = np.zeros((b, h * w, heads, d), np.float64)
    for sample in range(b):
        for head in range(heads):
            qh, kh, vh = q[sample, :, head], k[sample, :, head] * d**-0.5, v[sample, :, head]  # [N, d]
            attention = _softmax(kh.T @ vh, np)  # [d, d]
            out[sample, :, head] = qh @ attention.T
    return _proj(out.reshape(b, h * w, c), params).reshape(b, h, w, c)


def test_the_three_mixers_are_registered_by_name():
    assert mixers.get("multi_head_attention") is MultiHeadAttention
    assert mixers.get("window_attention") is WindowAttention
    assert mixers.get("channel_attention") is ChannelAttention


@pytest.mark.parametrize("shape,heads", [((2, 5, 6, 12), 3), ((1, 4, 4, 8), 1)])
def test_channel_attention_matches_a_per_head_loop(shape, heads):
    x = _images(shape)
    module = ChannelAttention(dim=shape[-1], num_heads=heads)
    params = _random_params(module, x)
    out = module.apply({"params": params}, x)
    expected = channel_attention_reference(x.astype(np.float64), params, heads)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "height,width,window,shift",
    [
        (14, 14, 7, 0),  # four whole windows
        (10, 12, 7, 0),  # padded to 14 x 14
        (14, 14, 7, 3),  # Swin's shifted windows
        (9, 13, 7, 3),  # shifted on a padded map (the roll runs over the padded map, as in Swin)
        (8, 6, 4, 2),  # a rectangular map with a smaller window
    ],
)
def test_window_attention_matches_full_attention_with_the_block_mask(height, width, window, shift):
    x = _images((2, height, width, 8))
    module = WindowAttention(dim=8, num_heads=2, window_size=window, shift_size=shift)
    params = _random_params(module, x)
    out = jax.jit(module.apply)({"params": params}, x)
    expected = window_attention_reference(x.astype(np.float64), params, 2, window, shift)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-5)


def test_padded_tokens_are_keys_as_in_davit():
    # On a 5 x 5 map in a 7 x 7 window, the 24 zero tokens still enter as keys (their k, v are the qkv bias):
    # the result differs from attention among the 25 real tokens alone.
    x = _images((1, 5, 5, 8))
    module = WindowAttention(dim=8, num_heads=2, window_size=7)
    params = _random_params(module, x)
    out = np.asarray(module.apply({"params": params}, x))
    real_only = masked_attention_reference(x.astype(np.float64), params, 2, np.ones((25, 25), bool))
    assert np.abs(out - real_only).max() > 1e-2
    np.testing.assert_allclose(
        out, window_attention_reference(x.astype(np.float64), params, 2, 7, 0), rtol=1e-4, atol=1e-5
    )


def test_a_map_that_fits_one_window_is_not_shifted():
    x = _images((1, 7, 6, 8))
    shifted, plain = WindowAttention(dim=8, num_heads=2, shift_size=3), WindowAttention(dim=8, num_heads=2)
    params = _random_params(plain, x)
    np.testing.assert_array_equal(
        np.asarray(shifted.apply({"params": params}, x)), np.asarray(plain.apply({"params": params}, x))
    )


def test_shifted_window_mask_is_swins():
    # 4 x 4 map, window 2, shift 1: the last row and column of windows mix tokens from opposite edges.
    mask = shifted_window_mask(4, 4, 2, 1)
    assert mask.shape == (4, 4, 4)
    assert mask[0].all()  # the top-left window lies inside one band
    # Bottom-right window: tokens (2,2), (2,3), (3,2), (3,3) of the rolled map are in four different bands.
    np.testing.assert_array_equal(mask[3], np.eye(4, dtype=bool))
    # Top-right window: columns 2 and 3 are in different bands, rows 0 and 1 in the same.
    np.testing.assert_array_equal(mask[1], np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]], bool))


@pytest.mark.parametrize("shape,heads", [((2, 3, 5, 12), 3), ((1, 4, 4, 8), 2)])
def test_multi_head_attention_matches_the_softmax_formula(shape, heads):
    x = _images(shape)
    module = MultiHeadAttention(dim=shape[-1], num_heads=heads)
    params = _random_params(module, x)
    tokens = shape[1] * shape[2]
    expected = masked_attention_reference(x.astype(np.float64), params, heads, np.ones((tokens, tokens), bool))
    np.testing.assert_allclose(np.asarray(module.apply({"params": params}, x)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "make,reference",
    [
        (
            lambda: MultiHeadAttention(dim=8, num_heads=2),
            lambda x, p: masked_attention_reference(x, p, 2, np.ones((63, 63), bool), jnp),
        ),
        (
            lambda: WindowAttention(dim=8, num_heads=2, window_size=4, shift_size=2),
            lambda x, p: window_attention_reference(x, p, 2, 4, 2, jnp),
        ),
        (lambda: ChannelAttention(dim=8, num_heads=2), None),
    ],
)
def test_gradients_match_the_reference_forms(make, reference):
    x = jnp.asarray(_images((2, 7, 9, 8)))
    module = make()
    params = _random_params(module, x)
    target = jnp.asarray(_images((2, 7, 9, 8), seed=5))

    def loss(apply):
        return lambda p, x: jnp.sum(apply(p, x) * target)

    grads = jax.jit(jax.grad(loss(lambda p, x: module.apply({"params": p}, x)), argnums=(0, 1)))(params, x)
    for leaf in jax.tree.leaves(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))) and float(jnp.abs(leaf).max()) > 0
    if reference is None:  # channel attention: check against a jnp transcription of the formula

        def reference(x, p):
            b, h, w, c = x.shape
            q, k, v = _qkv(x.reshape(b, h * w, c), p, 2, jnp)
            a = jax.nn.softmax(jnp.einsum("bnhi,bnhj->bhij", k * (c // 2) ** -0.5, v), axis=-1)
            return _proj(jnp.einsum("bhij,bnhj->bnhi", a, q).reshape(b, h * w, c), p).reshape(x.shape)

    expected = jax.grad(loss(lambda p, x: reference(x, p)), argnums=(0, 1))(params, x)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize(
    "module",
    [
        MultiHeadAttention(dim=16, num_heads=2, dtype=jnp.bfloat16),
        WindowAttention(dim=16, num_heads=2, window_size=4, shift_size=2, dtype=jnp.bfloat16),
        ChannelAttention(dim=16, num_heads=2, dtype=jnp.bfloat16),
    ],
)
def test_bfloat16_compute_stays_close_to_float32(module):
    x = _images((1, 6, 6, 16))
    params = _random_params(module, x)
    out = module.apply({"params": params}, x)
    reference = module.clone(dtype=None).apply({"params": params}, x)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(reference), rtol=0.1, atol=0.1)


def test_qkv_and_proj_biases_are_optional():
    x = jnp.zeros((1, 4, 4, 8))
    params = nn.meta.unbox(
        ChannelAttention(dim=8, num_heads=2, qkv_bias=False, proj_bias=False).init(jax.random.PRNGKey(0), x)
    )["params"]
    assert set(params["qkv"]) == {"kernel"} and set(params["proj"]) == {"kernel"}
    assert params["qkv"]["kernel"].shape == (8, 24)


@pytest.mark.parametrize(
    "module,message",
    [
        (ChannelAttention(dim=10, num_heads=3), "dim 10 must be a positive multiple of num_heads 3"),
        (WindowAttention(dim=8, num_heads=2, shift_size=7), r"shift_size must lie in \[0, window_size\)"),
        (MultiHeadAttention(dim=8, num_heads=2, attention_implementation="flash"), "attention_implementation 'flash'"),
    ],
)
def test_bad_options_are_named(module, message):
    with pytest.raises(ValueError, match=message):
        module.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, module.dim)))


def test_xla_implementation_can_be_forced():
    q = jnp.asarray(_images((1, 5, 2, 4)))
    out = dot_product_attention(q, q, q, impl="xla")
    logits = jnp.einsum("bnhd,bmhd->bhnm", q, q) / 2.0
    expected = jnp.einsum("bhnm,bmhd->bnhd", jax.nn.softmax(logits, -1), q)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-6)
