"""The Dynamic Spectrum Mixer against a numpy/scipy form, its dense-matrix form, gradients and bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
from jax.test_util import check_grads

from mixtok.mixers import registry
from mixtok.mixers.dsm import DynamicSpectrumMixer
from mixtok.mixers.spectral import bicubic_resize_matrix

MIXER = DynamicSpectrumMixer(dim=8)
SHAPE = (2, 5, 6, 8)  # most tests share one shape, so one compiled init and apply serve them all
_apply = jax.jit(lambda params, x: MIXER.apply({"params": params}, x))


def _x(seed, shape=SHAPE):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _init(module, x, seed=0, filter_scale=1.0):
    """Initialised parameters with the base filters (scale `filter_scale`) and the routing MLP redrawn large.

    At initialisation (std 0.02) the routing is nearly uniform and the filter nearly zero, which
    would let a wrong routing or a wrong filter pass unnoticed.
    """
    params = nn.meta.unbox(jax.jit(module.init)(jax.random.PRNGKey(seed), x))["params"]
    rng = np.random.default_rng(seed + 100)
    weights = params["spectrum_weights"]
    weights["base_filters"] = jnp.asarray(rng.normal(size=weights["base_filters"].shape) * filter_scale, jnp.float32)
    for layer in ("fc1", "fc2"):
        weights[layer]["kernel"] = jnp.asarray(rng.normal(size=weights[layer]["kernel"].shape), jnp.float32)
    return params


def _star_relu(x, p):
    return float(p["scale"][0]) * np.maximum(x, 0.0) ** 2 + float(p["bias"][0])


def _numpy_branches(params, x, num_filters):
    """(u, K): the expanded activations [B, H, W, C'] and the per-sample spectrum weights [B, H, W, C']."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(x, np.float64)
    w = p["spectrum_weights"]
    r = _star_relu(x.mean(axis=(1, 2)) @ w["fc1"]["kernel"], w["act"]) @ w["fc2"]["kernel"]
    r = r.reshape(x.shape[0], num_filters, -1)
    routing = np.exp(r - r.max(axis=1, keepdims=True))
    routing /= routing.sum(axis=1, keepdims=True)
    spectrum_weights = np.einsum("bfc,hwf->bhwc", routing, w["base_filters"])
    u = _star_relu(x @ p["pwconv1"]["kernel"], p["act1"])
    return u, spectrum_weights, p["pwconv2"]["kernel"]


def _numpy_mixer(params, x, num_filters=4):
    """The formula of mixtok/mixers/dsm.py in float64, with scipy's DCT-II ('ortho') over (H, W)."""
    u, k, pwconv2 = _numpy_branches(params, x, num_filters)
    spectrum = scipy.fft.dctn(u, type=2, axes=(1, 2), norm="ortho") * k
    return scipy.fft.idctn(spectrum, type=2, axes=(1, 2), norm="ortho") @ pwconv2


def _cosine_basis(n):
    """DCT-II basis vectors from the definition: row k is s_k cos(pi (2m + 1) k / (2n))."""
    k, m = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.where(k == 0, np.sqrt(1.0 / n), np.sqrt(2.0 / n)) * np.cos(np.pi * (2 * m + 1) * k / (2 * n))


def _dense_spectral_matrix(filt, height, width):
    """The N x N matrix of one plane's spectral step, one basis image at a time, from explicit cosines."""
    c_h, c_w = _cosine_basis(height), _cosine_basis(width)
    n = height * width
    matrix = np.zeros((n, n))
    for j in range(n):
        basis = np.zeros(n)
        basis[j] = 1.0
        coefficients = c_h @ basis.reshape(height, width) @ c_w.T
        matrix[:, j] = (c_h.T @ (filt * coefficients) @ c_w).reshape(-1)
    return matrix


def test_is_registered_as_dynamic_spectrum_mixer():
    assert registry.get("dynamic_spectrum_mixer") is DynamicSpectrumMixer


@pytest.mark.parametrize("height,width", [(5, 6), (7, 7)])
def test_matches_an_independent_numpy_scipy_implementation(height, width):
    x = _x(0, (3, height, width, 8))
    module = MIXER
    params = _init(module, x)
    assert params["spectrum_weights"]["base_filters"].shape == (height, width, 4)
    assert params["pwconv1"]["kernel"].shape == (8, 16) and params["spectrum_weights"]["fc2"]["kernel"].shape == (2, 64)
    y = jax.jit(module.apply)({"params": params}, x)
    assert y.shape == x.shape and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), _numpy_mixer(params, x), rtol=1e-4, atol=1e-5)


def test_spectral_step_equals_its_dense_matrix_form_per_sample_and_channel():
    x = _x(1)
    params = _init(MIXER, x, seed=1)
    u, k, pwconv2 = _numpy_branches(params, x, num_filters=4)
    height, width = SHAPE[1:3]
    mixed = np.zeros_like(u)
    for b in range(u.shape[0]):
        for c in range(u.shape[-1]):
            matrix = _dense_spectral_matrix(k[b, ..., c], height, width)
            np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)  # the DCT filter is a symmetric map
            mixed[b, ..., c] = (matrix @ u[b, ..., c].reshape(-1)).reshape(height, width)
    np.testing.assert_allclose(np.asarray(_apply(params, x)), mixed @ pwconv2, rtol=1e-4, atol=1e-5)


def test_the_filter_is_input_dependent_and_a_per_sample_softmax_mix_of_the_base_filters():
    x = _x(2)
    x[1] *= 3.0  # a different mean, so a different routing
    params = _init(MIXER, x, seed=2)
    _, k, _ = _numpy_branches(params, x, num_filters=4)
    assert not np.allclose(k[0], k[1])
    # Equal base filters make every routing give that filter: the softmax weights sum to one.
    params["spectrum_weights"]["base_filters"] = jnp.full((5, 6, 4), 0.7)
    _, k, _ = _numpy_branches(params, x, num_filters=4)
    np.testing.assert_allclose(k, 0.7, rtol=1e-6)


def test_all_pass_filters_reduce_the_mixer_to_its_pointwise_layers():
    x = _x(3)
    params = _init(MIXER, x, seed=3)
    params["spectrum_weights"]["base_filters"] = jnp.ones((5, 6, 4))
    u, _, pwconv2 = _numpy_branches(params, x, num_filters=4)
    np.testing.assert_allclose(np.asarray(_apply(params, x)), u @ pwconv2, rtol=1e-4, atol=1e-5)


def test_other_grid_resizes_the_base_filters_bicubic_with_aligned_corners():
    x = _x(4, (2, 6, 7, 4))
    small = DynamicSpectrumMixer(dim=4, grid_size=(4, 5))
    params = _init(small, x, seed=4)
    assert params["spectrum_weights"]["base_filters"].shape == (4, 5, 4)
    base = np.asarray(params["spectrum_weights"]["base_filters"], np.float64)
    resized = np.einsum("Hh,Ww,hwf->HWf", bicubic_resize_matrix(4, 6, True), bicubic_resize_matrix(5, 7, True), base)
    converted = jax.tree_util.tree_map(lambda a: a, params)
    converted["spectrum_weights"]["base_filters"] = jnp.asarray(resized, jnp.float32)
    expected = jax.jit(DynamicSpectrumMixer(dim=4, grid_size=(6, 7)).apply)({"params": converted}, x)
    np.testing.assert_allclose(
        np.asarray(jax.jit(small.apply)({"params": params}, x)), np.asarray(expected), rtol=1e-4, atol=1e-6
    )


def test_gradients_reach_every_parameter_and_pass_a_numerical_check():
    x = jnp.asarray(_x(5))
    params = _init(MIXER, x, seed=5, filter_scale=0.5)
    grads = jax.jit(jax.grad(lambda params, x: jnp.sum(_apply(params, x) ** 2)))(params, x)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))) and float(jnp.abs(leaf).sum()) > 0, path
    check_grads(lambda x: _apply(params, x), (x,), order=1, modes=["rev"], eps=1e-2, atol=2e-2, rtol=2e-2)


def test_bfloat16_compute_returns_bfloat16_close_to_float32():
    x = jnp.asarray(_x(6))
    params = _init(MIXER, x, seed=6)
    y32 = _apply(params, x)
    y16 = jax.jit(DynamicSpectrumMixer(dim=8, dtype=jnp.bfloat16).apply)({"params": params}, x.astype(jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(y16, np.float32), np.asarray(y32), rtol=0, atol=3e-2 * float(jnp.abs(y32).max())
    )


def test_input_that_is_not_nhwc_with_dim_channels_is_rejected():
    module = MIXER
    with pytest.raises(ValueError, match=r"dim=8.*\[B, H, W, 8\].*\(2, 4, 4, 6\)"):
        jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((2, 4, 4, 6)))
    with pytest.raises(ValueError, match="NHWC"):
        jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((2, 16, 8)))


def test_bad_options_are_rejected_with_the_valid_values():
    x = jnp.zeros((1, 4, 4, 8))
    with pytest.raises(ValueError, match="num_filters must be a positive.*got 0"):
        jax.eval_shape(DynamicSpectrumMixer(dim=8, num_filters=0).init, jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match=r"grid_size must be \(h, w\); got \(4, 4, 4\)"):
        jax.eval_shape(DynamicSpectrumMixer(dim=8, grid_size=(4, 4, 4)).init, jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="Unknown dct_filter impl 'fast'.*auto, reference, xla"):
        jax.eval_shape(DynamicSpectrumMixer(dim=8, impl="fast").init, jax.random.PRNGKey(0), x)
