"""RaftMLP's RaftTokenMixing against the official maths written out in numpy, PyTorch's bicubic kernel as a
per-pixel loop, the fixed-grid errors, jit and gradients, and as a MetaFormer override."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import mixers
from mixtok.mixers.raft_token_mixing import RaftTokenMixing, bicubic_matrix, torch_bicubic_resize
from mixtok.models import create_model
from tests.helpers import random_variables


def _torch_bicubic_loop(x, out_h, out_w, a=-0.75):
    """F.interpolate(mode="bicubic", align_corners=False) of NHWC x, one output pixel at a time (float64):
    aten's upsample_bicubic2d: source (dst + 0.5) * in / out - 0.5, 4 x 4 taps clamped to the border."""

    def cubic(d):
        d = abs(d)
        if d <= 1:
            return ((a + 2) * d - (a + 3)) * d * d + 1
        if d < 2:
            return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        return 0.0

    x = np.asarray(x, np.float64)
    _, in_h, in_w, _ = x.shape
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
    for i in range(out_h):
        sy = (i + 0.5) * in_h / out_h - 0.5
        for j in range(out_w):
            sx = (j + 0.5) * in_w / out_w - 0.5
            for ty in range(int(np.floor(sy)) - 1, int(np.floor(sy)) + 3):
                for tx in range(int(np.floor(sx)) - 1, int(np.floor(sx)) + 3):
                    weight = cubic(sy - ty) * cubic(sx - tx)
                    out[:, i, j] += weight * x[:, min(max(ty, 0), in_h - 1), min(max(tx, 0), in_w - 1)]
    return out


@pytest.mark.parametrize("in_size, out_size", [((5, 7), (8, 6)), ((8, 8), (7, 3))])
def test_bicubic_resize_is_torchs_kernel_and_not_jax_image_resize(in_size, out_size):
    x = np.random.default_rng(0).normal(size=(2, *in_size, 3)).astype(np.float32)
    y = np.asarray(torch_bicubic_resize(jnp.asarray(x), out_size))
    np.testing.assert_allclose(y, _torch_bicubic_loop(x, *out_size), rtol=1e-5, atol=1e-5)
    keys = np.asarray(jax.image.resize(x, (2, *out_size, 3), "bicubic"))  # Keys a = -0.5 (+ antialias)
    assert np.abs(keys - y).max() > 1e-2
    np.testing.assert_allclose(bicubic_matrix(6, 6), np.eye(6), atol=1e-12)  # same size: the identity


def _layer_norm(x, scale, bias, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def _gelu(x):
    from math import erf

    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def _permuted_block(x, p, r, vertical):
    """The official PermutedBlock on tokens `b (co w) (r h)` (vertical) or `b (co h) (r w)` built index by index
    from the einops patterns: vector[raft * n + pos] = x[.., raft * c_o + co] at that row / column position."""
    batch, height, width, channels = x.shape
    co_n = channels // r
    y = _layer_norm(x, p["norm"]["scale"], p["norm"]["bias"])
    out = x.copy()
    outer, n = (width, height) if vertical else (height, width)
    for co in range(co_n):
        for o in range(outer):
            vec = np.zeros((batch, r * n))
            for raft in range(r):
                for pos in range(n):
                    h, w = (pos, o) if vertical else (o, pos)
                    vec[:, raft * n + pos] = y[:, h, w, raft * co_n + co]
            hidden = _gelu(vec @ p["fc1"]["kernel"] + p["fc1"]["bias"])
            vec = hidden @ p["fc2"]["kernel"] + p["fc2"]["bias"]
            for raft in range(r):
                for pos in range(n):
                    h, w = (pos, o) if vertical else (o, pos)
                    out[:, h, w, raft * co_n + co] += vec[:, raft * n + pos]
    return out


def _reference(x, params, r, grid):
    x = np.asarray(x, np.float64)
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    y = _torch_bicubic_loop(x, *grid) if x.shape[1:3] != grid else x
    y = _permuted_block(y, params["vertical"], r, vertical=True)
    y = _permuted_block(y, params["horizontal"], r, vertical=False)
    return _torch_bicubic_loop(y, *x.shape[1:3]) if x.shape[1:3] != grid else y


@pytest.mark.parametrize("raft_size, grid, shape", [(2, None, (2, 4, 3, 6)), (3, (3, 4), (1, 5, 2, 6))])
def test_raft_mixing_equals_the_official_maths_written_out(raft_size, grid, shape):
    """At the trained grid (non-square), and at another grid through the bicubic shrink / expansion."""
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    module = RaftTokenMixing(shape[-1], raft_size, grid_size=grid)
    variables = random_variables(module, x, seed=1, std=0.5)
    y = np.asarray(jax.jit(module.apply)(variables, x))
    expected = _reference(x, variables["params"], raft_size, grid or shape[1:3])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_the_grid_comes_from_the_weights_and_another_grid_is_resized_or_rejected():
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 4)).astype(np.float32)
    variables = random_variables(RaftTokenMixing(4), x, seed=2)  # built for 4 x 4
    assert variables["params"]["vertical"]["fc1"]["kernel"].shape == (8, 16)  # r * h -> 2 r h
    bigger = np.random.default_rng(1).normal(size=(1, 6, 5, 4)).astype(np.float32)
    assert jax.eval_shape(RaftTokenMixing(4).apply, variables, bigger).shape == bigger.shape
    with pytest.raises(ValueError, match=r"built for a 4x4 token grid .* got 6x5"):
        jax.eval_shape(RaftTokenMixing(4, resize=False).apply, variables, bigger)
    with pytest.raises(ValueError, match="raft_size=3 must be >= 1 and divide dim=4"):
        jax.eval_shape(RaftTokenMixing(4, raft_size=3).init, jax.random.PRNGKey(0), x)


def test_jit_gradient_matches_a_finite_difference_and_the_mixer_is_registered():
    assert mixers.get("raft_token_mixing") is RaftTokenMixing and "raft_token_mixing" in mixers.list_mixers()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 3, 3, 4)), jnp.float32)
    module = RaftTokenMixing(4, grid_size=(2, 2))  # the gradient passes through both resizes
    variables = random_variables(module, x, seed=3, std=0.5)

    def loss(v, x):
        return jnp.sum(jnp.sin(module.apply(v, x)))

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))  # one compile
    direction = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32)
    eps = 1e-2
    _, (grads, grad_x) = value_and_grad(variables, x)
    plus, _ = value_and_grad(variables, x + eps * direction)
    minus, _ = value_and_grad(variables, x - eps * direction)
    np.testing.assert_allclose(float(jnp.vdot(grad_x, direction)), float(plus - minus) / (2 * eps), rtol=2e-2)
    assert all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in jax.tree.leaves(grads))


def test_metaformer_override_sizes_each_stage_grid_from_image_size():
    model = create_model(
        "poolformer_s12", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), token_mixers="raft_token_mixing", image_size=64
    )
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    params = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))["params"]
    kernels = [
        leaf.shape
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if "vertical" in jax.tree_util.keystr(path) and "fc1" in jax.tree_util.keystr(path) and leaf.ndim == 2
    ]
    assert kernels == [(2 * 16, 64), (2 * 8, 32), (2 * 4, 16), (2 * 2, 8)]  # grids 16, 8, 4, 2 with r = 2
