"""MS-MLP's MixShift against a numpy loop and its dense-matrix form, torch.chunk's groups, and as an override."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import mixers
from mixtok.mixers.mix_shift import MixShift, chunk_sizes
from tests.helpers import random_variables


def _reference(x, params, shift_dist, mix_sizes):
    """The official forward written out in numpy (float64): torch.chunk groups, np.roll, a zero-padded depthwise
    conv as an explicit sum over taps, lr + td."""
    x = np.asarray(x, np.float64)
    _, height, width, dim = x.shape
    sizes = chunk_sizes(dim, len(shift_dist))
    out = np.zeros_like(x)
    start = 0
    for g, (size, shift, k) in enumerate(zip(sizes, shift_dist, mix_sizes)):
        x_g = x[..., start : start + size]
        for branch, axis in (("lr", 2), ("td", 1)):
            conv = params[f"dwconv_{branch}_{g}"]
            kernel, bias = np.asarray(conv["kernel"], np.float64)[:, :, 0, :], np.asarray(conv["bias"], np.float64)
            padded = np.pad(np.roll(x_g, shift, axis=axis), ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
            y = np.zeros_like(x_g) + bias
            for i in range(k):
                for j in range(k):
                    y += padded[:, i : i + height, j : j + width, :] * kernel[i, j]
            out[..., start : start + size] += y
        start += size
    return out


@pytest.mark.parametrize(
    "dim, height, width, shift_dist, mix_sizes",
    [(12 - 2, 6, 7, (-2, -1, 0, 1, 2), (1, 1, 3, 5, 7)), (7, 5, 4, (-1, 0, 2), (3, 1, 5))],
)
def test_mix_shift_equals_the_official_forward_written_out(dim, height, width, shift_dist, mix_sizes):
    x = np.random.default_rng(0).normal(size=(2, height, width, dim)).astype(np.float32)
    module = MixShift(dim, shift_dist, mix_sizes)
    variables = random_variables(module, x, seed=1, std=0.5)
    y = np.asarray(jax.jit(module.apply)(variables, x))
    np.testing.assert_allclose(y, _reference(x, variables["params"], shift_dist, mix_sizes), rtol=1e-5, atol=1e-5)


def test_the_input_gradient_is_the_transpose_of_the_dense_mixing_matrix():
    """MixShift is affine: y = M x + b. M from the numpy reference (one basis image at a time) gives the VJP."""
    dim, height, width = 5, 4, 5
    module = MixShift(dim, (-2, -1, 0, 1, 2), (1, 3, 3, 5, 1))
    shape = (1, height, width, dim)
    variables = random_variables(module, np.zeros(shape, np.float32), seed=2, std=0.5)
    params = variables["params"]
    bias = _reference(np.zeros(shape), params, module.shift_dist, module.mix_sizes).reshape(-1)
    n = height * width * dim
    basis = np.eye(n).reshape(n, *shape[1:])  # every basis image at once, as a batch
    matrix = (_reference(basis, params, module.shift_dist, module.mix_sizes).reshape(n, n) - bias).T
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    cotangent = np.random.default_rng(4).normal(size=shape).astype(np.float32)

    @jax.jit
    def forward_and_vjp(inputs, grad):
        out, vjp = jax.vjp(lambda u: module.apply(variables, u), inputs)
        return out, vjp(grad)[0]

    y, dx = forward_and_vjp(jnp.asarray(x), jnp.asarray(cotangent))
    np.testing.assert_allclose(np.asarray(y).reshape(-1), matrix @ x.reshape(-1) + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dx).reshape(-1), matrix.T @ cotangent.reshape(-1), rtol=1e-5, atol=1e-5)
    # One group's shift wraps around: with shift -2 along W (group 0, 1 x 1 kernel), output column w reads w + 2.
    assert matrix[(0 * width + 4) * dim + 0, (0 * width + 1) * dim + 0] != 0  # column 4 reads column 1 (4 + 2 - 5)


def test_groups_are_torch_chunk_groups_and_a_dim_that_chunks_short_is_one_clear_error():
    assert chunk_sizes(96, 5) == (20, 20, 20, 20, 16)  # official tiny stage 1
    assert chunk_sizes(768, 5) == (154, 154, 154, 154, 152)
    assert chunk_sizes(8, 5) == (2, 2, 2, 2)  # torch.chunk(torch.zeros(8), 5) has 4 chunks
    with pytest.raises(
        ValueError, match=r"dim=8 splits into 4 torch.chunk groups \(2, 2, 2, 2\), not 5 .* e\.g\. 5, 9, 10"
    ):
        MixShift(8).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 8)))
    with pytest.raises(ValueError, match="must be odd positive kernel sizes"):
        MixShift(10, mix_sizes=(1, 1, 3, 4, 7)).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 10)))
    with pytest.raises(ValueError, match="needs one kernel size per shift"):
        MixShift(10, mix_sizes=(1, 3)).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 10)))
    with pytest.raises(ValueError, match=r"takes NHWC input \[B, H, W, 10\]"):
        MixShift(10).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 12)))


def test_metaformer_with_mix_shift_is_an_override_whose_new_weights_are_the_depthwise_convs():
    # PoolFormer-S12 (fewer blocks) with MixShift in place of pooling (parameter-free): the new weights per
    # block are two depthwise convs (kernel k_g^2 + bias, per channel) per torch.chunk group.
    from mixtok.models import count_params, create_model

    assert "mix_shift" in mixers.list_mixers() and mixers.get("mix_shift") is MixShift
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)  # no weight of either depends on the resolution
    depths = (1, 1, 2, 1)
    base = count_params(jax.eval_shape(create_model("poolformer_s12", depths=depths).init, jax.random.PRNGKey(0), x))
    model = create_model("poolformer_s12", depths=depths, token_mixers="mix_shift")
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))
    assert shapes["params"]["stages_3"]["blocks_0"]["token_mixer"]["dwconv_td_4"]["kernel"].shape == (7, 7, 1, 100)
    per_block = {
        dim: sum(2 * c * (k * k + 1) for c, k in zip(chunk_sizes(dim, 5), (1, 1, 3, 5, 7)))
        for dim in (64, 128, 320, 512)
    }
    new = sum(depth * per_block[dim] for depth, dim in zip(depths, (64, 128, 320, 512)))
    assert count_params(shapes) == base + new
