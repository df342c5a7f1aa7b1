"""Hydra: a bidirectional SSM as a quasiseparable matrix mixer (Hwang, Lahoti, Dao & Gu 2024).

"Hydra: Bidirectional State Space Models Through Generalized Matrix Mixers" (arXiv 2407.09941). Official:
goombalab/hydra @ 55bef745: hydra/modules/hydra.py `Hydra` (its default use_mem_eff_path=False path; the
fused use_mem_eff_path=True path, hydra/modules/ops.py, was not compared). On a sequence u [B, L, D], with
d_inner = expand * D, H = d_inner / headdim heads, G groups of N = d_state:

    z, xBC, dt = split(in_proj(u), [d_inner, d_inner + 4 G N, 2 H])          in_proj: Linear(D, ., bias=False)
    xBC = SiLU(depthwise Conv1d(k = d_conv, padding d_conv // 2, non-causal)(xBC))
    x, B_fw, C_fw, B_bw, C_bw = split(xBC, [d_inner, G N, G N, G N, G N])
    dt_fw, dt_bw = softplus(dt[:H] + dt_bias), softplus(dt[H:] + dt_bias)  A = -exp(A_log) [H]
    y_fw = SSD(x, dt_fw, A, B_fw, C_fw)                      forward scan (mamba_chunk_scan_combined)
    y_bw = flip(SSD(flip(x), flip(dt_bw), A, flip(B_bw), flip(C_bw)))     backward scan
    y = shift(y_fw) + shift_back(y_bw) + x * (fc_D(x) + D)  per head       shift: roll by one, first step 0
    out = out_proj(RMSNorm(y) * weight * SiLU(z))            RMSNormGated(eps 1e-5, norm_before_gate=True)

As a matrix on each head's sequence (the paper's section 3 and Definition 3.2), y = M x with the quasiseparable

    M[i, j] = (C_fw,i-1 . B_fw,j) exp(A (dt_fw,j+1 + ... + dt_fw,i-1)) dt_fw,j      j < i
    M[i, j] = (C_bw,i+1 . B_bw,j) exp(A (dt_bw,i+1 + ... + dt_bw,j-1)) dt_bw,j      j > i
    M[i, i] = fc_D(x_i)_h + D_h                                          a data-dependent diagonal

(tests/mixers/test_hydra.py builds it entry by entry).

Parity with the official module: goombalab/hydra @ 55bef745 `Hydra(d_model=64, d_state=8, headdim=16, ngroups=2)`
run on the CPU in float64 with only its two Triton imports replaced by pure-PyTorch stand-ins
(`mamba_chunk_scan_combined` as the per-step recurrence, `RMSNormGated` as mamba's own `rms_norm_ref`), every
parameter randomised, a [2, 13, 64] input, weights converted by transposing the Linear and Conv1d kernels: the
largest |difference| of this float32 module's output over 5 seeds is 5.7e-6 (outputs up to 12.9 in magnitude),
for impl="xla" with chunk 4 and 256 and impl="reference" alike (2026-12-07). tools/make_hydra_fixtures.py does
the same with float32-rounded weights (--parity: at most 1.4e-6 over 5 seeds and two configurations) and writes
the golden fixtures tests/interop/test_hydra_import.py checks through `mixtok.interop.hydra.convert_mixer`.

The SSD scans are `mixtok.kernels.ssd_scan` (the chunked XLA form by default; `impl="reference"` for the
associative scan); the two directions run as one scan over a batch of 2B, as the official does.

Images: an NHWC map [B, H, W, C] is read as the sequence of its H * W tokens in row-major (raster) order and
returned in the same layout, so `token_mixers=("hydra", ...)` works in a MetaFormer. Any grid works (nothing
depends on the length). A [B, L, C] input is mixed as a sequence directly (the ViT of models/hydra_vit.py).

Parameters keep the official names and shapes, "." written "_" where the official is a submodule (in_proj /
out_proj / fc_D kernels transposed as flax's Dense, fc_D [d_inner, H]; conv1d_kernel [d_conv, 1, conv_dim] as a
flax 1-D depthwise kernel, conv1d_bias [conv_dim]; dt_bias, A_log, D [H]; norm_weight [d_inner]).
Initialisation: dt_bias, A_log (A = 1), D (ones) and the norm weight as the official; conv1d as PyTorch's
default Conv1d (U(+-1/sqrt(d_conv)); the official has conv_init=None); the Linear kernels follow mixtok's
trunc-normal(0.02) (timm's ViT `_init_weights`) where the official module keeps PyTorch's default Linear init.
Left out (defaults off in the official): learnable_init_states, dt_limit, seq_idx. The SSD scan runs in float32
and the RMSNorm in float32 (`rms_norm_ref(upcast=True)` of state-spaces/mamba @ e9594ce1:
mamba_ssm/ops/triton/layernorm_gated.py); the rest in `dtype`.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.kernels.ssd_scan import ssd_scan
from mixtok.layers.init import torch_uniform_init
from mixtok.layers.linear import dense
from mixtok.layers.partitioning import constrain_channels_last, ones_with_axes, param_with_axes, zeros_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register


def dt_bias_init(dt_min: float, dt_max: float, dt_init_floor: float):
    """The official dt_bias init: dt log-uniform in [dt_min, dt_max], floored, then the inverse of softplus."""

    def init(key, shape, dtype=jnp.float32):
        u = jax.random.uniform(key, shape, jnp.float32)
        dt = jnp.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = jnp.maximum(dt, dt_init_floor)
        return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)

    return init


def shift_forward(y):
    """torch.roll(y, 1, dims=1) with the first step zeroed: y[:, t] <- y[:, t - 1], y[:, 0] <- 0."""
    return jnp.pad(y[:, :-1], [(0, 0), (1, 0)] + [(0, 0)] * (y.ndim - 2))


@register("hydra")
class Hydra(Mixer):
    """Hydra's bidirectional SSD mixer on [B, L, C] sequences or NHWC maps (raster order); see the module docstring."""

    d_state: int = 64
    d_conv: int = 7
    expand: int = 2
    headdim: int = 64
    ngroups: int = 1
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    bias: bool = False
    conv_bias: bool = True
    chunk_size: int = 256
    norm_eps: float = 1e-5
    impl: str = "auto"

    def _check(self, x):
        if x.ndim == 4:
            self.check_input(x)
        elif x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(
                f"Hydra: expected a sequence [B, L, {self.dim}] or an NHWC map [B, H, W, {self.dim}]; "
                f"got shape {x.shape}."
            )
        d_inner = self.expand * self.dim
        if d_inner % self.headdim:
            raise ValueError(f"Hydra: expand * dim = {d_inner} must be a multiple of headdim={self.headdim}.")
        if (d_inner // self.headdim) % self.ngroups:
            raise ValueError(f"Hydra: ngroups={self.ngroups} must divide the {d_inner // self.headdim} heads.")
        if self.d_conv < 1 or self.d_conv % 2 == 0:
            # The official Conv1d(padding=d_conv // 2) returns L + 1 steps for an even d_conv and fails.
            raise ValueError(f"Hydra: d_conv must be odd (a 'same' convolution); got {self.d_conv}.")

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self._check(x)
        grid = x.shape if x.ndim == 4 else None
        u = x.reshape(x.shape[0], -1, self.dim)
        batch, length, _ = u.shape
        d_inner = self.expand * self.dim
        heads = d_inner // self.headdim
        gn = self.ngroups * self.d_state
        conv_dim = d_inner + 4 * gn

        zxbcdt = dense(
            2 * d_inner + 4 * gn + 2 * heads, ("embed", "mlp"), use_bias=self.bias, **self.dtype_kwargs, name="in_proj"
        )(u)
        z, xbc, dt = jnp.split(zxbcdt, [d_inner, d_inner + conv_dim], axis=-1)

        # Depthwise non-causal Conv1d (cross-correlation, zero padding d_conv // 2 each side), then SiLU.
        kernel = self.param(
            "conv1d_kernel",
            param_with_axes(torch_uniform_init(self.d_conv), (None, None, "mlp")),
            (self.d_conv, 1, conv_dim),
        )
        kernel = jnp.asarray(kernel, xbc.dtype)
        pad = self.d_conv // 2
        padded = jnp.pad(xbc, [(0, 0), (pad, pad), (0, 0)])
        conv = sum(padded[:, k : k + length] * kernel[k, 0] for k in range(self.d_conv))
        if self.conv_bias:
            conv = conv + jnp.asarray(
                self.param("conv1d_bias", param_with_axes(torch_uniform_init(self.d_conv), ("mlp",)), (conv_dim,)),
                conv.dtype,
            )
        xbc = jax.nn.silu(conv)
        xs, b_fw, c_fw, b_bw, c_bw = jnp.split(xbc, np.cumsum([d_inner, gn, gn, gn]), axis=-1)

        dt_bias = self.param(
            "dt_bias", param_with_axes(dt_bias_init(self.dt_min, self.dt_max, self.dt_init_floor), (None,)), (heads,)
        )
        a_log = self.param("A_log", zeros_with_axes((None,)), (heads,))  # A = 1 at init
        d_skip = self.param("D", ones_with_axes((None,)), (heads,))
        a = -jnp.exp(jnp.asarray(a_log, jnp.float32))

        # Both directions as one scan over a batch of 2B: the backward one on the flipped sequence.
        def flip(t):
            return jnp.flip(t, axis=1)

        scan_dt = jnp.concatenate([dt[..., :heads], flip(dt[..., heads:])], axis=0).astype(jnp.float32)
        scan_dt = jax.nn.softplus(scan_dt + jnp.asarray(dt_bias, jnp.float32))  # [2B, L, H]
        scan_x = jnp.concatenate([xs, flip(xs)], axis=0).reshape(2 * batch, length, heads, self.headdim)
        scan_b = jnp.concatenate([b_fw, flip(b_bw)], axis=0).reshape(2 * batch, length, self.ngroups, self.d_state)
        scan_c = jnp.concatenate([c_fw, flip(c_bw)], axis=0).reshape(2 * batch, length, self.ngroups, self.d_state)
        y = ssd_scan(scan_x, scan_dt, a, scan_b, scan_c, impl=self.impl, chunk=self.chunk_size)
        y = shift_forward(y.reshape(2 * batch, length, d_inner))
        y = y[:batch] + flip(y[batch:])

        diag = dense(heads, ("mlp", None), use_bias=False, **self.dtype_kwargs, name="fc_D")(xs)
        diag = diag + jnp.asarray(d_skip, diag.dtype)
        y = y + xs * jnp.repeat(diag, self.headdim, axis=-1)

        # RMSNormGated (norm before gate), in float32.
        weight = self.param("norm_weight", ones_with_axes(("mlp",)), (d_inner,))
        y32 = y.astype(jnp.float32)
        y32 = y32 * jax.lax.rsqrt(jnp.mean(jnp.square(y32), axis=-1, keepdims=True) + self.norm_eps)
        y32 = y32 * jnp.asarray(weight, jnp.float32) * jax.nn.silu(z.astype(jnp.float32))
        y = y32.astype(z.dtype)

        out = dense(self.dim, ("mlp", "embed"), use_bias=self.bias, **self.dtype_kwargs, name="out_proj")(y)
        out = constrain_channels_last(out, "embed")
        return out.reshape(grid) if grid is not None else out
