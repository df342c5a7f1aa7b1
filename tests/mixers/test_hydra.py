"""Hydra's mixer against its explicit quasiseparable matrix (float64 numpy, entry by entry), on sequences and
NHWC maps, both scan impls, its initial values and its input checks. (The scan's gradients are checked against the
reference in tests/kernels/test_ssd_scan.py; the mixer's jit, finite gradients and bfloat16 in
tests/mixers/test_metaformer_mixers.py, which runs every registered mixer.)"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import mixers
from mixtok.mixers.hydra import Hydra

DIM, EXPAND, HEADDIM, STATE, GROUPS = 16, 2, 8, 3, 2  # d_inner 32, 4 heads, 2 groups


def _module(**kwargs):
    kwargs = dict(dim=DIM, expand=EXPAND, headdim=HEADDIM, d_state=STATE, ngroups=GROUPS, chunk_size=4) | kwargs
    return Hydra(**kwargs)


def _random_params(module, x, seed=0):
    """Every parameter drawn at random (A_log, D, dt_bias and the norm weight too), so each term is exercised."""
    params = nn.meta.unbox(jax.eval_shape(module.init, jax.random.PRNGKey(seed), x))["params"]
    rng = np.random.default_rng(seed)
    scale = {"in_proj": 0.3, "out_proj": 0.3, "fc_D": 0.3, "A_log": 0.5, "dt_bias": 0.5}
    flat = {
        path: np.asarray(rng.normal(size=leaf.shape) * scale.get(path[0], 1.0), np.float32)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        for path in [tuple(getattr(k, "key", None) for k in path)]
    }
    return {"params": jax.tree_util.tree_map_with_path(lambda p, _: flat[tuple(k.key for k in p)], params)}


def _softplus(t):
    return np.logaddexp(0.0, t)


def _silu(t):
    return t / (1.0 + np.exp(-t))


def _numpy_hydra(params, u):
    """out_proj(RMSNorm(M x) * w * SiLU(z)) with M the explicit quasiseparable matrix of each head, in float64."""
    p = jax.tree.map(lambda t: np.asarray(t, np.float64), params["params"])
    u = np.asarray(u, np.float64)
    batch, length, _ = u.shape
    d_inner, heads, gn = EXPAND * DIM, EXPAND * DIM // HEADDIM, GROUPS * STATE
    zxbcdt = u @ p["in_proj"]["kernel"]
    z, xbc, dt = zxbcdt[..., :d_inner], zxbcdt[..., d_inner : 2 * d_inner + 4 * gn], zxbcdt[..., -2 * heads :]
    kernel, pad = p["conv1d_kernel"][:, 0], p["conv1d_kernel"].shape[0] // 2
    padded = np.pad(xbc, [(0, 0), (pad, pad), (0, 0)])
    conv = sum(padded[:, k : k + length] * kernel[k] for k in range(kernel.shape[0])) + p["conv1d_bias"]
    xbc = _silu(conv)
    x = xbc[..., :d_inner]
    b_fw, c_fw, b_bw, c_bw = (xbc[..., d_inner + k * gn : d_inner + (k + 1) * gn] for k in range(4))
    d_fw, d_bw = _softplus(dt[..., :heads] + p["dt_bias"]), _softplus(dt[..., heads:] + p["dt_bias"])
    a = -np.exp(p["A_log"])
    diag = x @ p["fc_D"]["kernel"] + p["D"]  # [B, L, H]
    y = np.zeros_like(x)
    for n in range(batch):
        for h in range(heads):
            g = slice((h // (heads // GROUPS)) * STATE, (h // (heads // GROUPS) + 1) * STATE)
            m = np.zeros((length, length))
            for i in range(length):
                for j in range(length):
                    if j < i:  # the forward scan, shifted by one
                        m[i, j] = c_fw[n, i - 1, g] @ b_fw[n, j, g] * np.exp(a[h] * d_fw[n, j + 1 : i, h].sum())
                        m[i, j] *= d_fw[n, j, h]
                    elif j > i:  # the backward scan, shifted by one
                        m[i, j] = c_bw[n, i + 1, g] @ b_bw[n, j, g] * np.exp(a[h] * d_bw[n, i + 1 : j, h].sum())
                        m[i, j] *= d_bw[n, j, h]
                    else:
                        m[i, i] = diag[n, i, h]
            cols = slice(h * HEADDIM, (h + 1) * HEADDIM)
            y[n, :, cols] = m @ x[n, :, cols]
    y = y / np.sqrt(np.mean(y**2, axis=-1, keepdims=True) + 1e-5) * p["norm_weight"] * _silu(z)
    return y @ p["out_proj"]["kernel"]


@pytest.mark.parametrize(("impl", "chunk_size"), [("xla", 4), ("xla", 256), ("reference", 256)])
def test_equals_explicit_quasiseparable_matrix(impl, chunk_size):
    u = np.random.default_rng(1).normal(size=(2, 9, DIM)).astype(np.float32)  # chunk 4 does not divide L = 9
    module = _module(impl=impl, chunk_size=chunk_size)
    params = _random_params(module, u)
    got = jax.jit(module.apply)(params, u)
    np.testing.assert_allclose(np.asarray(got), _numpy_hydra(params, u), rtol=1e-4, atol=1e-4)


def test_nhwc_map_is_its_raster_sequence_and_registered():
    assert mixers.get("hydra") is Hydra and "hydra" in mixers.list_mixers()
    x = np.random.default_rng(2).normal(size=(2, 3, 4, DIM)).astype(np.float32)
    module = _module()
    params = _random_params(module, x, seed=3)
    got = jax.jit(module.apply)(params, x)
    assert got.shape == x.shape
    want = _numpy_hydra(params, x.reshape(2, 12, DIM)).reshape(x.shape)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_official_initial_values():
    params = nn.meta.unbox(jax.jit(Hydra(dim=32).init)(jax.random.PRNGKey(0), jnp.zeros((1, 4, 32))))["params"]
    np.testing.assert_array_equal(np.asarray(params["A_log"]), 0.0)  # A = 1
    np.testing.assert_array_equal(np.asarray(params["D"]), 1.0)
    dt = np.log1p(np.exp(np.asarray(params["dt_bias"], np.float64)))  # softplus(dt_bias) in [dt_min, dt_max]
    assert np.all((dt >= 1e-3 * (1 - 1e-5)) & (dt <= 0.1 * (1 + 1e-5)))
    assert params["conv1d_kernel"].shape == (7, 1, 2 * 32 + 4 * 64)  # d_conv 7, conv_dim d_inner + 4 N


def test_input_checks():
    with pytest.raises(ValueError, match=r"sequence \[B, L, 16\] or an NHWC map"):
        _module().init(jax.random.PRNGKey(0), jnp.zeros((2, 5, 8)))
    with pytest.raises(ValueError, match="multiple of headdim"):
        _module(headdim=12).init(jax.random.PRNGKey(0), jnp.zeros((2, 5, DIM)))
    with pytest.raises(ValueError, match="d_conv must be odd"):
        _module(d_conv=4).init(jax.random.PRNGKey(0), jnp.zeros((2, 5, DIM)))
