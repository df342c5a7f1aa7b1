"""GFNet's GlobalFilter against its dense-matrix form, circular shifts, and the official resize rule."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import mixers
from mixtok.mixers.spectral import GlobalFilter, bicubic_resize_matrix


def _init(module, x, seed=0):
    return nn.meta.unbox(module.init(jax.random.PRNGKey(seed), x))


def _dense_matrices(weight, height, width):
    """Per channel, the N x N matrix of x -> irfft2(rfft2(x, ortho) * W, ortho), one basis image at a time."""
    filt = weight[..., 0].astype(np.float64) + 1j * weight[..., 1].astype(np.float64)  # [h, w//2+1, C]
    n = height * width
    matrices = np.zeros((filt.shape[-1], n, n))
    for i in range(n):
        basis = np.zeros(n)
        basis[i] = 1.0
        spectrum = np.fft.rfft2(basis.reshape(height, width), norm="ortho")
        for c in range(filt.shape[-1]):
            column = np.fft.irfft2(spectrum * filt[..., c], s=(height, width), norm="ortho")
            matrices[c, :, i] = column.reshape(-1)
    return matrices


@pytest.mark.parametrize("height,width", [(5, 6), (4, 7)])
def test_global_filter_equals_its_dense_matrix_form(height, width):
    x = np.random.default_rng(0).normal(size=(2, height, width, 3)).astype(np.float32)
    module = GlobalFilter(dim=3)
    variables = _init(module, x)
    weight = np.asarray(variables["params"]["complex_weight"])
    assert weight.shape == (height, width // 2 + 1, 3, 2)
    matrices = _dense_matrices(weight, height, width)
    y = np.asarray(module.apply(variables, x))
    expected = np.einsum("cmn,bnc->bmc", matrices, x.reshape(2, height * width, 3)).reshape(y.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-6)


def test_global_filter_is_a_circular_convolution():
    x = np.random.default_rng(1).normal(size=(1, 5, 6, 4)).astype(np.float32)
    module = GlobalFilter(dim=4)
    variables = _init(module, x)
    y = np.asarray(module.apply(variables, x))
    for shift in [(1, 0), (0, 2), (3, 5)]:
        shifted = np.asarray(module.apply(variables, np.roll(x, shift, axis=(1, 2))))
        np.testing.assert_allclose(shifted, np.roll(y, shift, axis=(1, 2)), rtol=1e-4, atol=1e-5)


def test_filter_shape_follows_grid_size_not_the_input():
    x = np.zeros((1, 8, 10, 2), np.float32)
    variables = _init(GlobalFilter(dim=2, grid_size=(5, 6)), x)
    assert variables["params"]["complex_weight"].shape == (5, 4, 2, 2)


def test_other_grid_resizes_the_filter_as_the_official_fine_tuning_does():
    # A filter stored for 5x6 applied to an 8x10 map equals an 8x10 filter whose weights were resized
    # by bicubic interpolation with align_corners=True, as main_gfnet.py converts checkpoints.
    x = np.random.default_rng(2).normal(size=(2, 8, 10, 3)).astype(np.float32)
    small = GlobalFilter(dim=3, grid_size=(5, 6))
    variables = _init(small, x)
    weight = np.asarray(variables["params"]["complex_weight"], np.float64)  # [5, 4, 3, 2]
    resized = np.einsum(
        "Hh,Ww,hwcr->HWcr", bicubic_resize_matrix(5, 8, True), bicubic_resize_matrix(4, 6, True), weight
    )
    large = GlobalFilter(dim=3, grid_size=(8, 10))
    expected = large.apply({"params": {"complex_weight": jnp.asarray(resized, jnp.float32)}}, x)
    np.testing.assert_allclose(np.asarray(small.apply(variables, x)), np.asarray(expected), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("align_corners", [True, False])
def test_bicubic_resize_preserves_constants_and_is_identity_at_the_same_size(align_corners):
    for old, new in [(8, 14), (14, 8), (5, 9)]:
        np.testing.assert_allclose(bicubic_resize_matrix(old, new, align_corners).sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(bicubic_resize_matrix(7, 7, align_corners), np.eye(7))
    if align_corners:
        matrix = bicubic_resize_matrix(8, 14, True)
        np.testing.assert_allclose(matrix[[0, -1]][:, [0, -1]], np.eye(2), atol=1e-12)


@pytest.mark.parametrize("align_corners", [True, False])
def test_bicubic_resize_matches_pytorch_interpolate(align_corners):
    torch = pytest.importorskip("torch")
    image = np.random.default_rng(3).normal(size=(8, 5)).astype(np.float64)
    for size in [(14, 8), (5, 3), (9, 9)]:
        expected = torch.nn.functional.interpolate(
            torch.tensor(image)[None, None], size=size, mode="bicubic", align_corners=align_corners
        )[0, 0].numpy()
        got = (
            bicubic_resize_matrix(8, size[0], align_corners)
            @ image
            @ bicubic_resize_matrix(5, size[1], align_corners).T
        )
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_global_filter_jits_and_has_finite_gradients():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 6, 6, 4)), jnp.float32)
    module = GlobalFilter(dim=4, grid_size=(4, 4))  # exercises the resize too
    variables = _init(module, x)

    def loss(params, x):
        return jnp.sum(module.apply({"params": params}, x) ** 2)

    grads, x_grad = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x)
    weight_grad = grads["complex_weight"]
    assert weight_grad.shape == (4, 3, 4, 2)
    for g in (weight_grad, x_grad):
        assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0


def test_bfloat16_input_is_filtered_in_float32_and_returned_in_bfloat16():
    x = np.random.default_rng(5).normal(size=(1, 5, 6, 2)).astype(np.float32)
    module = GlobalFilter(dim=2)
    variables = _init(module, x)
    y16 = module.apply(variables, jnp.asarray(x, jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    y32 = module.apply(variables, jnp.asarray(jnp.asarray(x, jnp.bfloat16), jnp.float32))
    np.testing.assert_allclose(np.asarray(y16, np.float32), np.asarray(y32), rtol=2e-2, atol=2e-2)


def test_global_filter_is_registered_and_rejects_a_wrong_channel_count():
    assert mixers.get("global_filter") is GlobalFilter
    with pytest.raises(ValueError, match=r"GlobalFilter\(dim=3\) takes .*got shape \(1, 4, 4, 2\)"):
        GlobalFilter(dim=3).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 2)))


def test_metaformer_with_a_global_filter_is_an_override_with_one_filter_per_block_and_stage_grid():
    # PoolFormer-S12 with GFNet's global filter in place of pooling: the only new weights are one
    # complex filter [H_s, W_s//2+1, C_s] (stored as real pairs) per block, H_s = 224 / stride_s.
    from mixtok.models import count_params, create_model

    base = create_model("poolformer_s12")
    spectral = create_model("poolformer_s12", token_mixers="global_filter")
    x = jnp.zeros((1, 224, 224, 3))
    base_count = count_params(jax.eval_shape(base.init, jax.random.PRNGKey(0), x))
    shapes = nn.meta.unbox(jax.eval_shape(spectral.init, jax.random.PRNGKey(0), x))
    grids, dims, depths = (56, 28, 14, 7), (64, 128, 320, 512), (2, 2, 6, 2)
    for stage, (grid, dim) in enumerate(zip(grids, dims)):
        weight = shapes["params"][f"stages_{stage}"]["blocks_0"]["token_mixer"]["complex_weight"]
        assert weight.shape == (grid, grid // 2 + 1, dim, 2)
    filters = sum(depth * grid * (grid // 2 + 1) * dim * 2 for depth, grid, dim in zip(depths, grids, dims))
    assert count_params(shapes) == base_count + filters


@pytest.mark.parametrize("mixer", ["global_filter", "adaptive_frequency_filter", "dynamic_spectrum_mixer"])
def test_metaformer_trains_with_each_spectral_mixer(mixer):
    from mixtok.models import create_model

    model = create_model(
        "poolformerv2_s12",
        num_classes=5,
        depths=(1, 1, 1, 1),
        dims=(8, 16, 16, 16),
        token_mixers=("pooling", "pooling", mixer, mixer),
    )
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 64, 3)), jnp.float32)
    variables = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), x))

    def loss(params):
        return jnp.sum(model.apply({**variables, "params": params}, x) ** 2)

    grads = jax.jit(jax.grad(loss))(variables["params"])
    mixer_grads = jax.tree_util.tree_leaves(grads["stages_3"]["blocks_0"]["token_mixer"])
    assert mixer_grads and all(bool(jnp.all(jnp.isfinite(g))) for g in mixer_grads)
    assert sum(float(jnp.abs(g).sum()) for g in mixer_grads) > 0
