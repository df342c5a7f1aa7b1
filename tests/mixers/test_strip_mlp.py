"""Strip-MLP's mixer against the official forward written out in numpy, its grid and width rules, and as an override.

The reference follows Med-Process/Strip_MLP @ 492d7050 models/strip_mlp.py (`TokenMixing`, `StripMLP_Block`)
line by line in NCHW: the official view / permute sequence around `proj_h` and `proj_w` and a grouped Conv2d
written as an explicit sum over kernel taps, so it shares nothing with the mixer's einsums.
"""

from math import erf

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import mixers
from mixtok.mixers.strip_mlp import StripMLP, group_count, strip_mix
from tests.helpers import random_variables

_erf = np.vectorize(erf)


def gelu(x):
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


def conv(x, weight, bias=None, padding=(0, 0), groups=1):
    """PyTorch's Conv2d (stride 1) in numpy: x [N, Cin, H, W], weight [Cout, Cin / groups, kh, kw]."""
    n, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    out = np.zeros((n, groups, cout // groups, oh, ow))
    wg = weight.reshape(groups, cout // groups, cin // groups, kh, kw)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + oh, j : j + ow].reshape(n, groups, cin // groups, oh, ow)
            out += np.einsum("ngchw,goc->ngohw", patch, wg[..., i, j])
    out = out.reshape(n, cout, oh, ow)
    return out if bias is None else out + bias[None, :, None, None]


def bn(x, p, s, name):
    """BatchNorm2d: eval mode with the running statistics in `s`; training mode (s=None) with the batch's (biased
    variance, as PyTorch normalises)."""
    if s is None:
        mean, var = x.mean((0, 2, 3), keepdims=True), x.var((0, 2, 3), keepdims=True)
    else:
        mean, var = s[name]["mean"][None, :, None, None], s[name]["var"][None, :, None, None]
    scale, bias = p[name]["scale"][None, :, None, None], p[name]["bias"][None, :, None, None]
    return (x - mean) / np.sqrt(var + 1e-5) * scale + bias


def weight(p, name):
    return p[name]["kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW


def relative_position(table, length):
    m = (table.shape[0] - 1) // 2
    distance = np.arange(length)[None, :] - np.arange(length)[:, None]
    return table[np.clip(distance, -m, m) + m]  # [H, W, C]


def official_token_mixing(x_nhwc, variables, train=False):
    """TokenMixing.forward of the official code, in numpy float64 (eval mode, or training mode's batch statistics)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    s = None if train else jax.tree.map(lambda a: np.asarray(a, np.float64), variables["batch_stats"])
    x = np.asarray(x_nhwc, np.float64).transpose(0, 3, 1, 2)
    n, channels, h, w = x.shape
    x = conv(gelu(bn(x, p, s, "dwsc_bn")), weight(p, "dwsc_conv"), padding=(1, 1), groups=channels)
    x = gelu(bn(conv(x, weight(p, "mlp_conv"), p["mlp_conv"]["bias"]), p, s, "mlp_bn"))
    x_1, x_2 = x[:, : channels // 2], x[:, channels // 2 :]
    # strip_mlp(x_1)
    c = channels // 2
    c2 = c // group_count(channels)  # self.C
    c1 = c // c2
    pos_h = relative_position(p["relate_pos_h"]["embeddings_table"], h).transpose(2, 0, 1)[None]
    pos_w = relative_position(p["relate_pos_w"]["embeddings_table"], h).transpose(2, 0, 1)[None]
    x_h = (x_1 + pos_h).reshape(n, c1, c2, h, w)
    x_h = x_h.transpose(0, 1, 3, 2, 4).reshape(n, c1, h, c2 * w)
    x_h = conv(x_h.transpose(0, 3, 1, 2), weight(p, "proj_h"), p["proj_h"]["bias"], (0, 1), c2).transpose(0, 2, 3, 1)
    x_h = x_h.reshape(n, c1, h, c2, w).transpose(0, 1, 3, 2, 4).reshape(n, c, h, w)
    x_h = conv(np.concatenate([x_h, x_1], 1), weight(p, "fuse_h"))
    x_h = gelu(bn(x_h, p, s, "BN")) + pos_w
    x_w = x_h.reshape(n, c1, h * c2, w).transpose(0, 2, 1, 3)
    x_w = conv(x_w, weight(p, "proj_w"), p["proj_w"]["bias"], (0, 1), c2)
    x_w = x_w.transpose(0, 2, 1, 3).reshape(n, c1, c2, h, w).reshape(n, c, h, w)
    x_1 = conv(np.concatenate([x_1, x_w], 1), weight(p, "fuse_w"))
    # LSMM(x_2)
    x_w = conv(x_2, weight(p, "fc_h"), padding=(1, 3), groups=c)
    x_h = conv(x_2, weight(p, "fc_w"), padding=(3, 1), groups=c)
    att = (x_h + x_w + x_2).mean((2, 3), keepdims=True)
    att = conv(gelu(conv(att, weight(p, "reweight_fc1"), p["reweight_fc1"]["bias"])), weight(p, "reweight_fc2"))
    att = att + p["reweight_fc2"]["bias"][None, :, None, None]
    att = att.reshape(n, c, 3).transpose(2, 0, 1)
    att = np.exp(att - att.max(0)) / np.exp(att - att.max(0)).sum(0)
    att = att[..., None, None]
    x_2 = x_h * att[0] + x_w * att[1] + x_2 * att[2]
    out = conv(np.concatenate([x_1, x_2], 1), weight(p, "fuse"))
    return out.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("axis", [2, 1])
def test_a_strip_reaches_its_whole_strip_and_the_two_neighbours_in_its_own_channel_only(axis):
    """strip_mix's Jacobian support: row mixing (axis 2) at (h, v) reads rows h - 1 .. h + 1, every column; column
    mixing (axis 1) at (v, w) reads columns w - 1 .. w + 1, every row; each channel (c1, c2) only itself."""
    size, c1, c2 = 5, 2, 3
    rng = np.random.default_rng(5)
    kernel = jnp.asarray(rng.normal(size=(1, 3, size, c2 * size)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(c2 * size,)), jnp.float32)
    x = jnp.asarray(rng.normal(size=(1, size, size, c1, c2)), jnp.float32)
    jac = jax.jacrev(lambda u: strip_mix(u, kernel, bias, axis)[0, 2, 3, 1, 2])(x)[0]  # output (2, 3), channel (1, 2)
    reach = np.abs(np.asarray(jac)) > 0  # [H, W, C1, C2]
    expected = np.zeros_like(reach)
    if axis == 2:
        expected[1:4, :, 1, 2] = True  # rows 1..3, all columns
    else:
        expected[:, 2:5, 1, 2] = True  # columns 2..4, all rows
    assert (reach == expected).all()


def test_strip_mlp_equals_the_official_forward_and_trains_with_finite_gradients_and_batch_statistics():
    """dim 80: p = 2 channel groups of C2 = 20 (the golden fixture of tests/interop has p = 4 everywhere). One
    jitted training step: the output equals the official forward (training-mode BatchNorm), the gradients are
    finite and reach the strip weights and tables, and the running statistics move by PyTorch's momentum 0.1."""
    dim, size = 80, 4
    module = StripMLP(dim)
    x = np.random.default_rng(3).normal(size=(2, size, size, dim)).astype(np.float32)
    variables = random_variables(module, x, seed=4, std=0.3)

    @jax.jit
    def step(params, stats):
        def loss(p):
            y, state = module.apply({"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
            return jnp.sum(y**2), (y, state["batch_stats"])

        return jax.grad(loss, has_aux=True)(params)

    grads, (y, stats) = step(variables["params"], variables["batch_stats"])
    expected = official_token_mixing(x, variables, train=True)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    for name in ("proj_h", "proj_w", "relate_pos_h", "relate_pos_w", "fc_h", "reweight_fc2"):
        assert float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(grads[name]))) > 0, name
    # new running mean = 0.9 * old + 0.1 * batch mean (of the BN's input, here the mixer's input).
    expected_mean = 0.9 * np.asarray(variables["batch_stats"]["dwsc_bn"]["mean"]) + 0.1 * x.mean((0, 1, 2))
    np.testing.assert_allclose(stats["dwsc_bn"]["mean"], expected_mean, rtol=1e-5, atol=1e-6)


def test_a_wrong_grid_or_width_is_one_clear_error():
    def init(module, shape):
        return jax.eval_shape(module.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct(shape, jnp.float32))

    module = StripMLP(16)
    variables = init(module, (1, 6, 6, 16))  # the grid is taken from the input at initialisation
    for shape in ((1, 4, 4, 16), (1, 6, 4, 16)):
        with pytest.raises(ValueError, match=rf"expected 6x6 grid, got {shape[1]}x{shape[2]}"):
            jax.eval_shape(module.apply, variables, jax.ShapeDtypeStruct(shape, jnp.float32))
    with pytest.raises(ValueError, match=r"expected 7x7 grid, got 6x6"):
        init(StripMLP(16, grid_size=(7, 7)), (1, 6, 6, 16))
    with pytest.raises(ValueError, match=r"expected a square grid, got 6x4"):
        init(StripMLP(16), (1, 6, 4, 16))
    with pytest.raises(ValueError, match=r"grid_size \(7, 6\) must be square"):
        init(StripMLP(16, grid_size=(7, 6)), (1, 7, 6, 16))
    with pytest.raises(ValueError, match=r"dim=20 does not fit .* divisible by p = 4"):
        init(StripMLP(20), (1, 4, 4, 20))
    assert (group_count(80), group_count(160), group_count(96), group_count(112)) == (2, 2, 4, 4)


def test_metaformer_with_strip_mlp_is_an_override_sized_by_image_size():
    from mixtok.models import create_model

    assert "strip_mlp" in mixers.list_mixers() and mixers.get("strip_mlp") is StripMLP
    model = create_model("poolformer_s12", depths=(1, 1, 1, 1), token_mixers="strip_mlp", image_size=64)
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
    # Stage grids 16, 8, 4, 2; widths 64 (p = 4), 128 (p = 4), 320 (p = 2), 512 (p = 4).
    for stage, (grid, dim) in enumerate(zip((16, 8, 4, 2), (64, 128, 320, 512))):
        mixer = shapes["params"][f"stages_{stage}"]["blocks_0"]["token_mixer"]
        c2 = dim // 2 // group_count(dim)
        assert mixer["proj_h"]["kernel"].shape == (1, 3, grid, c2 * grid)
        assert mixer["relate_pos_w"]["embeddings_table"].shape == (2 * grid + 1, dim // 2)
        assert set(shapes["batch_stats"][f"stages_{stage}"]["blocks_0"]["token_mixer"]) == {"dwsc_bn", "mlp_bn", "BN"}
    with pytest.raises(ValueError, match="expected 16x16 grid, got 24x24"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 96, 96, 3)))
