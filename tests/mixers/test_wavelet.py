"""WaveMix's WaveletMixer: the Haar DWT against PyWavelets, the block against a numpy restatement, errors, override."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import mixers
from mixtok.mixers.wavelet import WaveletMixer, haar_dwt2, wavelet_coefficients
from tests.helpers import random_variables

SQRT_HALF = np.sqrt(0.5)


def _analysis_matrix(n):
    """pytorch_wavelets' afb1d for db1, mode 'zero', even n, as a matrix: [lowpass rows; highpass rows].

    afb1d correlates with the reversed decomposition filters (pywt dec_lo [s, s], dec_hi [-s, s]) at stride 2:
    low[i] = s x[2i] + s x[2i+1], high[i] = s x[2i] - s x[2i+1]."""
    low, high = np.zeros((n // 2, n)), np.zeros((n // 2, n))
    dec_lo, dec_hi = np.array([SQRT_HALF, SQRT_HALF]), np.array([-SQRT_HALF, SQRT_HALF])
    for i in range(n // 2):
        low[i, 2 * i : 2 * i + 2] = dec_lo[::-1]
        high[i, 2 * i : 2 * i + 2] = dec_hi[::-1]
    return low, high


def _dwt_reference(x):
    """One level on NHWC float64: rows (W) filtered first, then columns (H), bands (LL, LH, HL, HH) as
    pytorch_wavelets' AFB2D reshapes them (channel, then [row lo/hi] x [column lo/hi])."""
    _, height, width, _ = x.shape
    w_low, w_high = _analysis_matrix(width)
    h_low, h_high = _analysis_matrix(height)
    along_w = {"lo": np.einsum("jw,bhwc->bhjc", w_low, x), "hi": np.einsum("jw,bhwc->bhjc", w_high, x)}

    def along_h(m, y):
        return np.einsum("ih,bhjc->bijc", m, y)

    ll = along_h(h_low, along_w["lo"])
    return ll, [along_h(h_high, along_w["lo"]), along_h(h_low, along_w["hi"]), along_h(h_high, along_w["hi"])]


def _torch_conv_transpose(x, weight, bias):
    """PyTorch's ConvTranspose2d(k, stride 2, padding 1) by its definition: input (i, j) adds x * W[c, o, kh, kw] at
    output (2i - 1 + kh, 2j - 1 + kw); `weight` in mixtok's [k, k, out, in] layout."""
    batch, height, width, _ = x.shape
    k = weight.shape[0]
    full = np.zeros((batch, 2 * height + k, 2 * width + k, weight.shape[2]))
    for kh in range(k):
        for kw in range(k):
            full[:, kh : kh + 2 * height : 2, kw : kw + 2 * width : 2] += x @ weight[kh, kw].T
    return full[:, 1 : 1 + 2 * height, 1 : 1 + 2 * width] + bias


def _feed_forward(x, p, stats, eps=1e-5):
    from scipy.special import erf

    y = x @ p["expand"]["kernel"][0, 0] + p["expand"]["bias"]
    y = 0.5 * y * (1 + erf(y / np.sqrt(2)))  # nn.GELU(): exact
    y = y @ p["project"]["kernel"][0, 0] + p["project"]["bias"]
    y = _torch_conv_transpose(y, p["upsample"]["kernel"], p["upsample"]["bias"])
    norm, running = p["norm"], stats["norm"]
    return (y - running["mean"]) / np.sqrt(running["var"] + eps) * norm["scale"] + norm["bias"]


def _mixer_reference(x, variables, levels):
    """The official LevelNWaveblock.forward in numpy (eval mode), NHWC, float64."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), nn.meta.unbox(variables["params"]))
    stats = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["batch_stats"])
    x = np.asarray(x, np.float64)
    low = x @ p["reduction"]["kernel"][0, 0] + p["reduction"]["bias"]
    coefficients = []
    for _ in range(levels):
        low, highs = _dwt_reference(low)
        stacked = np.stack(highs, axis=-1)  # [B, h, w, C/4, 3]: torch.reshape(Yh[j], (b, 3C/4, h, w))
        coefficients.append(np.concatenate([low, stacked.reshape(*stacked.shape[:3], -1)], axis=-1))
    y = None
    for j in reversed(range(levels)):
        name = "feedforward" if levels == 1 else f"feedforward{j + 1}"
        inputs = coefficients[j] if y is None else np.concatenate([coefficients[j], y], axis=-1)
        y = _feed_forward(inputs, p[name], stats[name])
    return y


def test_haar_dwt_equals_pywavelets_dwt2_over_three_levels():
    pywt = pytest.importorskip("pywt")
    x = np.random.default_rng(0).normal(size=(2, 16, 24, 3)).astype(np.float32)
    low = jnp.asarray(x)
    expected = pywt.wavedec2(x.astype(np.float64), "db1", mode="zero", level=3, axes=(1, 2))
    for level in range(1, 4):
        low, highs = haar_dwt2(low)
        c_h, c_v, c_d = expected[-level]  # pywt: cH high along axis 1 (H), cV along axis 2 (W)
        np.testing.assert_allclose(np.asarray(highs), np.stack([c_h, c_v, c_d], axis=-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(low), expected[0], rtol=1e-5, atol=1e-5)


def test_haar_dwt_is_orthonormal_so_its_gradient_is_the_inverse_transform():
    pywt = pytest.importorskip("pywt")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 6, 8, 2)).astype(np.float32)
    g_low, g_high = rng.normal(size=(1, 3, 4, 2)), rng.normal(size=(1, 3, 4, 2, 3))

    def projection(u):
        low, highs = haar_dwt2(u)
        return jnp.sum(low * g_low) + jnp.sum(highs * g_high)

    grad = jax.grad(projection)(jnp.asarray(x))
    bands = tuple(g_high[..., b] for b in range(3))
    expected = pywt.idwt2((g_low, bands), "db1", mode="zero", axes=(1, 2))
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-5, atol=1e-5)
    low, highs = haar_dwt2(jnp.asarray(x))  # energy preserved
    np.testing.assert_allclose(float(jnp.sum(low**2) + jnp.sum(highs**2)), float(np.sum(x**2)), rtol=1e-5)


def test_the_dwt_matches_the_filter_bank_form_and_coefficients_are_channel_major():
    x = np.random.default_rng(2).normal(size=(1, 8, 4, 3))
    (c1, c2) = wavelet_coefficients(jnp.asarray(x, jnp.float32), 2)
    ll, highs = _dwt_reference(x)
    assert c1.shape == (1, 4, 2, 12) and c2.shape == (1, 2, 1, 12)
    np.testing.assert_allclose(np.asarray(c1[..., :3]), ll, rtol=1e-5, atol=1e-5)
    for channel in range(3):
        for band in range(3):  # official torch.reshape of (b, C, 3, h, w): channel c * 3 + band
            actual = np.asarray(c1[..., 3 + channel * 3 + band])
            np.testing.assert_allclose(actual, highs[band][..., channel], atol=1e-5)


@pytest.mark.parametrize("levels, height, width", [(1, 4, 6), (3, 8, 16)])
def test_wavelet_mixer_equals_the_official_block_written_out_in_numpy(levels, height, width):
    dim = 8
    x = np.random.default_rng(3).normal(size=(2, height, width, dim)).astype(np.float32)
    module = WaveletMixer(dim, levels=levels, mlp_ratio=2, ff_channel=12, dropout=0.5)
    variables = random_variables(module, x, seed=4, std=0.4)
    y = np.asarray(jax.jit(module.apply)(variables, x))  # eval: running statistics, no dropout
    assert y.shape == x.shape
    np.testing.assert_allclose(y, _mixer_reference(x, variables, levels), rtol=1e-4, atol=1e-4)


def test_training_updates_the_batch_statistics_and_gradients_match_finite_differences():
    dim, levels = 8, 2
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 4, 8, dim)), jnp.float32)
    module = WaveletMixer(dim, levels=levels, dropout=0.25)
    variables = random_variables(module, x, seed=6, std=0.3)
    direction = jnp.asarray(np.random.default_rng(7).normal(size=x.shape), jnp.float32)
    weights = jnp.asarray(np.random.default_rng(8).normal(size=x.shape), jnp.float32)

    @jax.jit
    def run(u):
        def loss(v):
            y, state = module.apply(
                variables, v, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(0)}
            )
            return jnp.sum(y * weights), state

        (value, state), grad = jax.value_and_grad(loss, has_aux=True)(u)
        eps = 1e-2  # central difference along one direction, the same dropout mask (same rng) on both sides
        plus, minus = loss(u + eps * direction)[0], loss(u - eps * direction)[0]
        return value, state, grad, (plus - minus) / (2 * eps)

    value, state, grad, finite_difference = run(x)
    assert np.isfinite(float(value))
    np.testing.assert_allclose(float(jnp.sum(grad * direction)), float(finite_difference), rtol=2e-2)
    old = variables["batch_stats"]["feedforward2"]["norm"]["mean"]
    new = state["batch_stats"]["feedforward2"]["norm"]["mean"]
    assert not np.allclose(np.asarray(old), np.asarray(new))  # momentum 0.1 towards the batch mean


def test_a_grid_the_dwt_cannot_halve_enough_times_and_a_bad_dim_are_one_clear_error():
    init = jax.random.PRNGKey(0)
    grid_error = r"3-level DWT needs a grid whose height and width are multiples of 8; got 14x16 \(e\.g\. 8x16\)"
    with pytest.raises(ValueError, match=grid_error):
        jax.eval_shape(WaveletMixer(8, levels=3).init, init, jnp.zeros((1, 14, 16, 8)))
    with pytest.raises(ValueError, match=r"dim=10 must be a multiple of 4"):
        jax.eval_shape(WaveletMixer(10, levels=1).init, init, jnp.zeros((1, 4, 4, 10)))
    with pytest.raises(ValueError, match=r"levels=0 must be at least 1"):
        jax.eval_shape(WaveletMixer(8, levels=0).init, init, jnp.zeros((1, 4, 4, 8)))
    with pytest.raises(ValueError, match=r"takes NHWC input \[B, H, W, 8\]"):
        jax.eval_shape(WaveletMixer(8).init, init, jnp.zeros((1, 8, 8, 12)))


def _mixer_count(dim, levels, mult=2, ff=None):
    """Parameters of the official LevelNWaveblock (BatchNorm weight and bias; no buffers)."""
    ff = dim if ff is None else ff
    hidden = mult * dim

    def feed_forward(inputs, out):
        return inputs * hidden + hidden + hidden * ff + ff + ff * out * 16 + out + 2 * out

    total = dim * (dim // 4) + dim // 4
    if levels == 1:
        return total + feed_forward(dim, dim)
    total += feed_forward(dim, dim // 2) + feed_forward(dim + dim // 2, dim)
    return total + (levels - 2) * feed_forward(dim + dim // 2, dim // 2)


def test_metaformer_with_the_wavelet_mixer_is_an_override_that_adds_the_waveblock_weights():
    from mixtok.models import count_params, create_model

    assert mixers.get("wavelet_mixer") is WaveletMixer
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)  # stage grids 16, 8, 4, 2: one DWT level fits all
    depths, dims = (1, 1, 1, 1), (16, 16, 32, 32)
    base = count_params(jax.eval_shape(create_model("poolformer_s12", depths=depths, dims=dims).init, init_key(), x))
    model = create_model(
        "poolformer_s12", depths=depths, dims=dims, token_mixers="wavelet_mixer", mixer_kwargs=dict(levels=1)
    )
    shapes = nn.meta.unbox(jax.eval_shape(model.init, init_key(), x))
    mixer = shapes["params"]["stages_3"]["blocks_0"]["token_mixer"]
    assert mixer["feedforward"]["upsample"]["kernel"].shape == (4, 4, 32, 32)
    assert "token_mixer" in shapes["batch_stats"]["stages_0"]["blocks_0"]
    assert count_params(shapes) == base + sum(_mixer_count(d, 1) for d in dims)


def init_key():
    return jax.random.PRNGKey(0)
