"""MambaMixer's selective token and channel mixers against float64 numpy written from the paper's equations
(explicit 3x3 / causal convolutions, the four scan orders as lists of token positions, a per-step S6 loop), with
every parameter random; both scan impls; the initial values; a MetaFormer override. (The scan's gradients are
checked against the reference in tests/kernels/test_selective_scan.py; the token mixer's jit, finite gradients and
bfloat16 in tests/mixers/test_metaformer_mixers.py, which runs every registered mixer.)"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import mixers
from mixtok.mixers.mamba_mixer import SelectiveChannelMixer, SelectiveTokenMixer

DIM, STATE = 6, 3


def _random_params(module, x, seed=0):
    params = nn.meta.unbox(jax.eval_shape(module.init, jax.random.PRNGKey(seed), x))["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda leaf: np.asarray(rng.normal(size=leaf.shape) * 0.5, np.float32), params)


def _silu(t):
    return t / (1.0 + np.exp(-t))


def _s6(seq, x_proj, dt_kernel, dt_bias, a_log, d):
    """Mamba-1's S6 on seq [L, E], one step at a time."""
    rank, state = dt_kernel.shape[0], a_log.shape[1]
    h = np.zeros(a_log.shape)
    out = np.zeros_like(seq)
    for t, s in enumerate(seq):
        dbc = s @ x_proj
        dt = np.logaddexp(0.0, dbc[:rank] @ dt_kernel + dt_bias)
        b, c = dbc[rank : rank + state], dbc[rank + state :]
        h = np.exp(dt[:, None] * -np.exp(a_log)) * h + (dt * s)[:, None] * b[None]
        out[t] = h @ c + d * s
    return out


def _token_mixer_numpy(x, p):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    batch, height, width, _ = x.shape
    xz = x @ p["in_proj"]["kernel"]
    inner = xz.shape[-1] // 2
    xs, z = xz[..., :inner], xz[..., inner:]
    padded = np.pad(xs, [(0, 0), (1, 1), (1, 1), (0, 0)])
    conv = p["conv_bias"] + sum(
        padded[:, i : i + height, j : j + width] * p["conv_kernel"][i, j, 0] for i in range(3) for j in range(3)
    )
    xs = _silu(conv)
    rows = [(i, j) for i in range(height) for j in range(width)]
    cols = [(i, j) for j in range(width) for i in range(height)]
    orders = [rows, cols, rows[::-1], cols[::-1]]  # VMamba's cross-scan
    s6 = p["s6"]
    y = np.zeros_like(xs)
    for n in range(batch):
        for k, order in enumerate(orders):
            seq = np.stack([xs[n, i, j] for i, j in order])
            out = _s6(seq, s6["x_proj"][k], s6["dt_proj_kernel"][k], s6["dt_proj_bias"][k], s6["A_log"][k], s6["D"][k])
            for (i, j), o in zip(order, out, strict=True):
                y[n, i, j] += o
    return (y * _silu(z)) @ p["out_proj"]["kernel"]


def _channel_mixer_numpy(x, p):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    s6 = {k: v[0] for k, v in p["s6"].items()}
    kernel, bias = p["conv_kernel"], p["conv_bias"]
    taps = kernel.shape[0]
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape[:-1]):
        xz = x[index][:, None] @ p["in_proj"]["kernel"]  # [C, 2 E_c]: each channel a position of width 1
        inner = xz.shape[-1] // 2
        xs, z = xz[:, :inner], xz[:, inner:]

        def direction(seq):
            conv = np.array(
                [
                    bias + sum(kernel[j] * seq[t - taps + 1 + j] for j in range(taps) if t - taps + 1 + j >= 0)
                    for t in range(len(seq))
                ]
            )  # causal: position t sees t - 3 ... t
            return _s6(_silu(conv), s6["x_proj"], s6["dt_proj_kernel"], s6["dt_proj_bias"], s6["A_log"], s6["D"])

        y = direction(xs) + direction(xs[::-1])[::-1]
        out[index] = ((y * _silu(z)) @ p["out_proj"]["kernel"])[:, 0]
    return out


@pytest.mark.parametrize("impl", ["xla", "reference"])
def test_token_mixer_is_the_cross_scan_s6_of_the_paper(impl):
    x = np.random.default_rng(1).normal(size=(2, 3, 4, DIM)).astype(np.float32)  # a non-square grid
    module = SelectiveTokenMixer(dim=DIM, d_state=STATE, chunk_size=5, impl=impl)
    params = _random_params(module, x)
    got = jax.jit(module.apply)({"params": params}, x)
    np.testing.assert_allclose(np.asarray(got), _token_mixer_numpy(x.astype(np.float64), params), rtol=2e-4, atol=2e-4)


def test_channel_mixer_is_a_bidirectional_s6_along_each_tokens_channels():
    x = np.random.default_rng(2).normal(size=(2, 2, 3, DIM)).astype(np.float32)
    module = SelectiveChannelMixer(dim=DIM, d_state=STATE, chunk_size=4)
    params = _random_params(module, x, seed=3)
    got = jax.jit(module.apply)({"params": params}, x)
    np.testing.assert_allclose(
        np.asarray(got), _channel_mixer_numpy(x.astype(np.float64), params), rtol=2e-4, atol=2e-4
    )


def test_initial_values_are_mambas():
    x = jnp.zeros((1, 1, 1, 32))
    params = nn.meta.unbox(jax.jit(SelectiveTokenMixer(dim=32).init)(jax.random.PRNGKey(0), x))["params"]
    s6 = params["s6"]
    assert s6["x_proj"].shape == (4, 64, 2 + 32) and s6["dt_proj_kernel"].shape == (4, 2, 64)  # dt_rank ceil(32/16)
    np.testing.assert_allclose(np.asarray(s6["A_log"]), np.broadcast_to(np.log(np.arange(1, 17)), (4, 64, 16)))
    np.testing.assert_array_equal(np.asarray(s6["D"]), 1.0)
    dt = np.logaddexp(0.0, np.asarray(s6["dt_proj_bias"], np.float64))  # softplus(bias): Mamba's dt in [1e-3, 0.1]
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert np.abs(np.asarray(s6["dt_proj_kernel"])).max() <= 2**-0.5  # U(+-dt_rank^-1/2)


def test_registered_and_usable_as_a_metaformer_token_mixer():
    assert mixers.get("mamba_mixer") is SelectiveTokenMixer
    from mixtok.models import create_model

    model = create_model(
        "poolformer_s12", num_classes=3, depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), token_mixers=("mamba_mixer",) * 4
    )
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 32, 3)))
    assert "s6" in nn.meta.unbox(shapes)["params"]["stages_0"]["blocks_0"]["token_mixer"]
