"""AFFNet's AdaptiveFrequencyFilter against the official formula in numpy, its dense-matrix form, and torch."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from mixtok import mixers
from mixtok.kernels.spectral_filter import spectral_filter
from mixtok.mixers.aff import AdaptiveFrequencyFilter


def _init(module, x, seed=0):
    return nn.meta.unbox(jax.jit(module.init)(jax.random.PRNGKey(seed), x))


def _apply(module, params, x, method=None):
    """module.apply, jitted: one compilation per test instead of one per operation (eager)."""
    return jax.jit(lambda p, x: module.apply({"params": p}, x, method=method))(params, x)


def _random_params(dim, num_blocks, factor=1, scale=0.5, seed=0):
    """Weights larger than the 0.02 init, so that the softshrunk mask is far from zero and the test bites."""
    rng = np.random.default_rng(seed)
    size, hidden = dim // num_blocks, dim // num_blocks * factor
    shapes = {
        "w1": (2, num_blocks, size, hidden),
        "b1": (2, num_blocks, hidden),
        "w2": (2, num_blocks, hidden, size),
        "b2": (2, num_blocks, size),
    }
    return {name: (scale * rng.normal(size=shape)).astype(np.float32) for name, shape in shapes.items()}


def _numpy_mask(x, params, num_blocks, threshold=0.01):
    """The official AFNO2D_channelfirst mask in float64, written on NCHW as the official is."""
    x = np.transpose(np.asarray(x, np.float64), (0, 3, 1, 2))  # [B, C, H, W]
    b, c, h, w = x.shape
    spectrum = np.fft.rfft2(x, axes=(2, 3), norm="ortho").reshape(b, num_blocks, c // num_blocks, h, w // 2 + 1)
    w1, b1, w2, b2 = (np.asarray(params[n], np.float64) for n in ("w1", "b1", "w2", "b2"))

    def mix(a, weight):
        return np.einsum("bkihw,kio->bkohw", a, weight)

    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    o1_real = relu(mix(spectrum.real, w1[0]) - mix(spectrum.imag, w1[1]) + b1[0][..., None, None])
    o1_imag = relu(mix(spectrum.imag, w1[0]) + mix(spectrum.real, w1[1]) + b1[1][..., None, None])
    o2_real = mix(o1_real, w2[0]) - mix(o1_imag, w2[1]) + b2[0][..., None, None]
    o2_imag = mix(o1_imag, w2[0]) + mix(o1_real, w2[1]) + b2[1][..., None, None]
    shrink = lambda a: np.sign(a) * np.maximum(np.abs(a) - threshold, 0.0)  # noqa: E731
    mask = (shrink(o2_real) + 1j * shrink(o2_imag)).reshape(b, c, h, w // 2 + 1)
    return np.transpose(mask, (0, 2, 3, 1))  # [B, H, W//2+1, C]


def _numpy_filter(x, params, num_blocks):
    """y = irfft2(X * M, ortho) + x, the official forward, in float64."""
    x64 = np.asarray(x, np.float64)
    spectrum = np.fft.rfft2(x64, axes=(1, 2), norm="ortho")
    mask = _numpy_mask(x, params, num_blocks)
    return np.fft.irfft2(spectrum * mask, s=x.shape[1:3], axes=(1, 2), norm="ortho") + x64


def _dense_matrices(mask, height, width):
    """For a fixed mask [H, W//2+1, C], per channel the N x N matrix of x -> irfft2(rfft2(x) * M), by basis images."""
    n = height * width
    matrices = np.zeros((mask.shape[-1], n, n))
    for i in range(n):
        basis = np.zeros(n)
        basis[i] = 1.0
        spectrum = np.fft.rfft2(basis.reshape(height, width), norm="ortho")
        for c in range(mask.shape[-1]):
            matrices[c, :, i] = np.fft.irfft2(spectrum * mask[..., c], s=(height, width), norm="ortho").reshape(-1)
    return matrices


@pytest.mark.parametrize("height,width", [(5, 6), (7, 7), (4, 5)])
def test_filter_equals_the_official_formula_in_float64(height, width):
    dim, num_blocks = 16, 8
    x = np.random.default_rng(1).normal(size=(2, height, width, dim)).astype(np.float32)
    params = _random_params(dim, num_blocks)
    module = AdaptiveFrequencyFilter(dim=dim, num_blocks=num_blocks)
    y = np.asarray(_apply(module, params, x))
    expected = _numpy_filter(x, params, num_blocks)
    # Compare the filtered part (y - x) so the residual cannot hide an error in it.
    np.testing.assert_allclose(y - x, expected - x, rtol=1e-4, atol=1e-4 * np.abs(expected - x).max())
    assert np.abs(expected - x).max() > 0.1


def test_filter_at_its_initialisation_equals_the_official_formula():
    x = np.random.default_rng(2).normal(size=(1, 6, 5, 24)).astype(np.float32)
    module = AdaptiveFrequencyFilter(dim=24, num_blocks=8)
    variables = _init(module, x)
    for name, shape in [("w1", (2, 8, 3, 3)), ("b1", (2, 8, 3)), ("w2", (2, 8, 3, 3)), ("b2", (2, 8, 3))]:
        assert variables["params"][name].shape == shape
    assert abs(float(np.std(variables["params"]["w1"])) - 0.02) < 0.01
    expected = _numpy_filter(x, variables["params"], 8)
    np.testing.assert_allclose(np.asarray(_apply(module, variables["params"], x)) - x, expected - x, atol=1e-6)


def test_hidden_size_factor_and_num_blocks_follow_the_official_shapes():
    dim, num_blocks, factor = 12, 4, 2
    x = np.random.default_rng(3).normal(size=(2, 5, 6, dim)).astype(np.float32)
    module = AdaptiveFrequencyFilter(dim=dim, num_blocks=num_blocks, hidden_size_factor=factor)
    variables = nn.meta.unbox(jax.eval_shape(module.init, jax.random.PRNGKey(0), x))
    shapes = jax.tree_util.tree_map(lambda a: a.shape, variables["params"])
    assert shapes == {"w1": (2, 4, 3, 6), "b1": (2, 4, 6), "w2": (2, 4, 6, 3), "b2": (2, 4, 3)}
    params = _random_params(dim, num_blocks, factor, seed=4)
    y = np.asarray(_apply(module, params, x))
    expected = _numpy_filter(x, params, num_blocks)
    np.testing.assert_allclose(y - x, expected - x, rtol=1e-4, atol=1e-4 * np.abs(expected - x).max())


def test_mask_is_the_softshrunk_official_mask():
    x = np.random.default_rng(5).normal(size=(2, 5, 6, 16)).astype(np.float32)
    params = _random_params(16, 8, scale=0.05, seed=6)  # small weights: many entries shrink to exactly zero
    module = AdaptiveFrequencyFilter(dim=16)
    mask = np.asarray(_apply(module, params, x, method=AdaptiveFrequencyFilter.mask))
    expected = _numpy_mask(x, params, 8)
    assert mask.shape == (2, 5, 4, 16) and mask.dtype == np.complex64
    np.testing.assert_allclose(mask, expected, atol=1e-5)
    assert 0.05 < np.mean(expected == 0) < 0.95
    np.testing.assert_array_equal(mask[np.abs(expected) > 1e-4] == 0, False)


@pytest.mark.parametrize("height,width", [(5, 6), (7, 7)])
def test_filtering_with_a_fixed_mask_is_a_dense_matrix_per_channel(height, width):
    # AFF depends on its input through the mask; for the mask it computed, the mixing is linear: y - x = A_c x_c.
    dim = 8
    x = np.random.default_rng(7).normal(size=(2, height, width, dim)).astype(np.float32)
    params = _random_params(dim, 8, seed=8)
    module = AdaptiveFrequencyFilter(dim=dim)
    y = np.asarray(_apply(module, params, x))
    mask = np.asarray(_apply(module, params, x, method=AdaptiveFrequencyFilter.mask))
    for b in range(2):
        matrices = _dense_matrices(mask[b].astype(np.complex128), height, width)
        mixed = np.einsum("cmn,nc->mc", matrices, x[b].reshape(height * width, dim)).reshape(height, width, dim)
        np.testing.assert_allclose(y[b] - x[b], mixed, rtol=1e-4, atol=1e-4 * np.abs(mixed).max())
    # ... and it is exactly the spectral_filter op with that mask, plus the residual.
    np.testing.assert_allclose(y, np.asarray(spectral_filter(jnp.asarray(x), jnp.asarray(mask))) + x, atol=1e-6)


def test_gradients_pass_numerical_check():
    x = jnp.asarray(np.random.default_rng(9).normal(size=(1, 3, 4, 8)), jnp.float32)
    params = jax.tree_util.tree_map(jnp.asarray, _random_params(8, 4, seed=10))
    module = AdaptiveFrequencyFilter(dim=8, num_blocks=4)
    check_grads(
        jax.jit(lambda p, x: module.apply({"params": p}, x)),
        (params, x),
        order=1,
        modes=("rev",),
        eps=1e-3,
        atol=5e-2,
        rtol=5e-2,
    )


def test_filter_jits_and_has_finite_gradients_for_params_and_input():
    x = jnp.asarray(np.random.default_rng(11).normal(size=(2, 6, 6, 16)), jnp.float32)
    module = AdaptiveFrequencyFilter(dim=16)
    variables = _init(module, x)

    def loss(params, x):
        return jnp.sum(module.apply({"params": params}, x) ** 2)

    grads, x_grad = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x)
    for g in [*jax.tree_util.tree_leaves(grads), x_grad]:
        assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0


def test_bfloat16_input_is_filtered_in_float32_and_returned_in_bfloat16():
    x = np.random.default_rng(12).normal(size=(1, 5, 6, 16)).astype(np.float32)
    params = _random_params(16, 8, seed=13)
    module = AdaptiveFrequencyFilter(dim=16)
    y16 = _apply(module, params, jnp.asarray(x, jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    y32 = _apply(module, params, jnp.asarray(jnp.asarray(x, jnp.bfloat16), jnp.float32))
    np.testing.assert_allclose(np.asarray(y16, np.float32), np.asarray(y32), rtol=3e-2, atol=3e-2)


def test_filter_is_registered_and_rejects_bad_input_with_the_bad_value():
    assert mixers.get("adaptive_frequency_filter") is AdaptiveFrequencyFilter
    with pytest.raises(ValueError, match=r"AdaptiveFrequencyFilter\(dim=16\) takes .*got shape \(1, 4, 4, 8\)"):
        AdaptiveFrequencyFilter(dim=16).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 8)))
    with pytest.raises(ValueError, match=r"dim=12 is not divisible by num_blocks=8.*\[1, 2, 3, 4, 6, 12\]"):
        AdaptiveFrequencyFilter(dim=12).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 12)))
    with pytest.raises(ValueError, match="hidden_size_factor must be >= 1; got 0"):
        AdaptiveFrequencyFilter(dim=8, hidden_size_factor=0).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 8)))


def test_filter_equals_a_torch_rendering_of_the_official_module():
    torch = pytest.importorskip("torch")

    def torch_aff(x, w1, b1, w2, b2, num_blocks, threshold=0.01):
        """AFNO2D_channelfirst.forward (official aff_block.py), re-typed for this test, NCHW, float32."""
        bias = x
        b, c, h, w = x.shape
        spectrum = torch.fft.rfft2(x.float(), dim=(2, 3), norm="ortho")
        z = spectrum.reshape(b, num_blocks, c // num_blocks, h, w // 2 + 1)

        def mix(a, weight):
            return torch.einsum("bkihw,kio->bkohw", a, weight)

        o1_real = torch.relu(mix(z.real, w1[0]) - mix(z.imag, w1[1]) + b1[0, :, :, None, None])
        o1_imag = torch.relu(mix(z.imag, w1[0]) + mix(z.real, w1[1]) + b1[1, :, :, None, None])
        o2_real = mix(o1_real, w2[0]) - mix(o1_imag, w2[1]) + b2[0, :, :, None, None]
        o2_imag = mix(o1_imag, w2[0]) + mix(o1_real, w2[1]) + b2[1, :, :, None, None]
        mask = torch.nn.functional.softshrink(torch.stack([o2_real, o2_imag], dim=-1), lambd=threshold)
        mask = torch.view_as_complex(mask).reshape(b, c, h, w // 2 + 1)
        y = torch.fft.irfft2(mask * spectrum, s=(h, w), dim=(2, 3), norm="ortho")
        return y.type(x.dtype) + bias

    for height, width in [(5, 6), (8, 8)]:
        x = np.random.default_rng(14).normal(size=(2, height, width, 16)).astype(np.float32)
        params = _random_params(16, 8, seed=15)
        got = np.asarray(_apply(AdaptiveFrequencyFilter(dim=16), params, x))
        with torch.no_grad():
            expected = torch_aff(
                torch.tensor(x).permute(0, 3, 1, 2),
                *(torch.tensor(params[n]) for n in ("w1", "b1", "w2", "b2")),
                num_blocks=8,
            )
        np.testing.assert_allclose(got, expected.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-4)
