"""MambaMixer's selective token and channel mixers (Behrouz, Santacatterina & Zabih 2024), FROM THE PAPER ONLY.

"MambaMixer: Efficient Selective State Space Models with Dual Token and Channel Selection" (arXiv 2403.19888
v1, section 3 "Model: MambaMixer" and section 4 "Vision MambaMixer (ViM2)"). There is NO official code:
MambaMixer/M2 @ 250a86b9 holds a README only ("Codes and models will be available soon"). Everything below
follows the paper's text and its appendix table (Table "Architectural overview of the ViM2 in different
scales"); every choice the paper leaves open is listed, with what was chosen and why. The S6 recurrence itself
is Mamba-1's (state-spaces/mamba @ e9594ce1: mamba_ssm/modules/mamba_simple.py `Mamba`,
mamba_ssm/ops/selective_scan_interface.py `selective_scan_ref`) through `mixtok.kernels.selective_scan`.

Selective Token Mixer (`SelectiveTokenMixer`, registered "mamba_mixer"; the ViM2 form of section 4), on an NHWC
map [B, H, W, C] with E = expand * C (the table: "Linear C -> 2C, DWConv 3x3 2C, S6 2C, Linear 2C"):

    x, z = split(in_proj(u), [E, E])                           in_proj: Linear(C, 2E, bias=False)
    x = SiLU(depthwise Conv2d 3x3 (padding 1, bias)(x))        "depth-wise convolution ... for images"
    seqs = cross_scan(x)                                       K = 4 sequences of the H W tokens (below)
    y_k = S6_k(seqs_k)  for each k, own x_proj / dt_proj / A_log / D     (`SelectiveSSM`)
    y = cross_merge(y_1..y_4)                                  each back to the raster layout, summed
    out = out_proj(y * SiLU(z))                                out_proj: Linear(E, C, bias=False)

and S6 on a sequence s [L, E] (Mamba-1): dt_low, B, C = split(x_proj(s), [R, N, N]) (x_proj: Linear(E, R + 2N,
bias=False), R = ceil(C / 16) as Mamba's dt_rank="auto"); delta = softplus(dt_proj(dt_low)) (Linear(R, E) with
bias); A = -exp(A_log) [E, N]; y = selective_scan(s, delta, A, B, C, D).

Selective Channel Mixer (`SelectiveChannelMixer`; section 3, "Selective Channel Mixer"): each token's channel
vector u [C] is read as a sequence of C positions of width 1 and mixed by a bidirectional Mamba block whose
weights are shared by all channel positions ("CW-Linear", "CW-S6": channel-wise):

    x, z = split(in_proj(u^T), [E_c, E_c])                    in_proj: Linear(1, 2 E_c, bias=False)
    y = S6(SiLU(CausalConv1d(x))) + Flip(S6(SiLU(CausalConv1d(Flip(x)))))     the same conv and S6 both ways
    out = out_proj(y * SiLU(z))^T                              out_proj: Linear(E_c, 1, bias=False)

(E_c = channel_expand * 1; causal depthwise Conv1d of d_conv = 4 with bias, as Mamba's; dt_rank 1, N = 16.)
The paper's equations for this block give the forward and backward directions the same Linear, Conv and SSM
symbols, so one set of weights serves both; they also gate both by one MLP(x^T), Mamba's SiLU(z) branch.

Choices the paper leaves open, and what this file does:
- B, C and delta are computed from the convolved x (Mamba's `x_proj(conv output)`), where the paper's equations
  write Linear_B(x) on the block input; the paper calls its token mixer Mamba's block in the 1-D case.
- Cross-scan (section 4, "Scanning", citing VMamba): the four scans are VMamba's CrossScan (arXiv 2401.10166):
  row-major, column-major, and both reversed; each has its own S6 parameters (x_proj, dt_proj, A_log, D), the
  in_proj / conv / out_proj are shared ("each scan is passed to a S6 block ... outputs are merged"); merged by
  summing (section 3: "added their corresponding outputs together"). VMamba's LayerNorm on y before the gate
  (`out_norm`) is not in the paper's table and is left out.
- Channel mixer width: the table's channel-mixer rows read "CW-Linear 2C, CW-S6 2C, CW-Linear 2C" (stage 4:
  "C") without saying what the width counts. A width-2C state per channel position would make the block's cost
  O(H W C * 2C * N); this file reads each channel position as width 1 expanded to `channel_expand` (default 2,
  the token mixer's expansion), which keeps the channel mixer linear in C and resolution-free and leaves the
  model's parameter count at the paper's (mixtok.models.mamba_mixer). Section 4's "we use the same scans as
  Selective Token Mixer, but pass them to the S6 blocks across their channels" does not change a per-token
  channel sequence (the token order does not reach it), so the section 3 bidirectional form is used.
- Initialisation (the paper states none): Mamba-1's for the S6 (dt_proj kernel U(+-R^-1/2), dt_proj bias the
  inverse softplus of dt log-uniform in [0.001, 0.1] floored at 1e-4, A_log = log(1..N) per channel (S4D real),
  D = 1); PyTorch's default for the convolutions; mixtok's trunc-normal(0.02) for the Linear kernels (timm's).
- The scans run in float32 (Mamba keeps A_log and D in float32 and its kernels accumulate in float32); the rest
  in `dtype`.

Parameter names: in_proj, conv_kernel ([3, 3, 1, E]; the channel mixer's [4, E_c]), conv_bias, s6/x_proj
[K, E, R + 2N], s6/dt_proj_kernel [K, R, E], s6/dt_proj_bias [K, E], s6/A_log [K, E, N], s6/D [K, E], out_proj
(K = 4 token scans, 1 channel S6). `impl` and `chunk_size` go to the selective scan ("auto": the lax.scan
reference on CPU, the chunked form elsewhere; mixtok.kernels.selective_scan).
Any grid works for both mixers (nothing depends on H, W or the sequence length).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.kernels.selective_scan import selective_scan
from mixtok.layers.depthwise import depthwise_conv2d
from mixtok.layers.init import DEPTHWISE_CONV_AXES, torch_uniform_init
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.partitioning import constrain_channels_last, ones_with_axes, param_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.hydra import dt_bias_init
from mixtok.mixers.registry import register


def s4d_real_log_init(key, shape, dtype=jnp.float32):
    """A_log = log(1, 2, ..., N) for every channel: Mamba's S4D-real init of A = -exp(A_log)."""
    del key
    return jnp.broadcast_to(jnp.log(jnp.arange(1, shape[-1] + 1, dtype=jnp.float32)), shape).astype(dtype)


class SelectiveSSM(Module):
    """K independent S6 layers (Mamba-1's x_proj, dt_proj, A_log, D) on x [B, L, K, E], run as one selective scan.

    The K directions fold into the channels (K E channels, K groups of B and C), as VMamba's cross-scan does.
    """

    directions: int = 1
    d_state: int = 16
    dt_rank: int = 1
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    chunk_size: int = 64
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        batch, length, k, inner = x.shape
        n, r = self.d_state, self.dt_rank
        x_proj = self.param(
            "x_proj",
            param_with_axes(jax.nn.initializers.truncated_normal(0.02), (None, "mlp", None)),
            (k, inner, r + 2 * n),
            self.param_dtype,
        )
        dt_kernel = self.param(
            "dt_proj_kernel",
            param_with_axes(torch_uniform_init(r), (None, None, "mlp")),
            (k, r, inner),
            self.param_dtype,
        )
        dt_bias = self.param(
            "dt_proj_bias",
            param_with_axes(dt_bias_init(self.dt_min, self.dt_max, self.dt_init_floor), (None, "mlp")),
            (k, inner),
        )
        a_log = self.param("A_log", param_with_axes(s4d_real_log_init, (None, "mlp", None)), (k, inner, n))
        d_skip = self.param("D", ones_with_axes((None, "mlp")), (k, inner))

        dbc = jnp.einsum("blke,ker->blkr", x, jnp.asarray(x_proj, x.dtype))
        dt_low, b, c = jnp.split(dbc, [r, r + n], axis=-1)
        f32 = jnp.float32
        delta = jnp.einsum("blkr,kre->blke", dt_low.astype(f32), jnp.asarray(dt_kernel, f32))
        delta = jax.nn.softplus(delta + jnp.asarray(dt_bias, f32))
        a = -jnp.exp(jnp.asarray(a_log, f32)).reshape(k * inner, n)
        y = selective_scan(
            x.reshape(batch, length, k * inner),
            delta.reshape(batch, length, k * inner),
            a,
            b,
            c,
            jnp.asarray(d_skip, f32).reshape(k * inner),
            impl=self.impl,
            chunk=self.chunk_size,
        )
        return y.reshape(batch, length, k, inner).astype(x.dtype)


def cross_scan(x):
    """[B, H, W, E] -> [B, H W, 4, E]: row-major, column-major, and both reversed (VMamba's CrossScan)."""
    batch, height, width, inner = x.shape
    rows = x.reshape(batch, height * width, inner)
    cols = jnp.swapaxes(x, 1, 2).reshape(batch, height * width, inner)
    return jnp.stack([rows, cols, jnp.flip(rows, 1), jnp.flip(cols, 1)], axis=2)


def cross_merge(y, height, width):
    """[B, H W, 4, E] -> [B, H, W, E]: each scan's outputs back at their tokens, summed (VMamba's CrossMerge)."""
    batch, _, _, inner = y.shape
    rows = y[:, :, 0] + jnp.flip(y[:, :, 2], 1)
    cols = (y[:, :, 1] + jnp.flip(y[:, :, 3], 1)).reshape(batch, width, height, inner)
    return rows.reshape(batch, height, width, inner) + jnp.swapaxes(cols, 1, 2)


@register("mamba_mixer")
class SelectiveTokenMixer(Mixer):
    """ViM2's Selective Token Mixer on NHWC maps: 4-way cross-scan S6 with a 3x3 depthwise conv and SiLU gate."""

    d_state: int = 16
    expand: int = 2
    d_conv: int = 3
    dt_rank: int | None = None  # None: ceil(dim / 16), Mamba's "auto"
    chunk_size: int = 64
    impl: str = "auto"

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        batch, height, width, _ = x.shape
        inner = self.expand * self.dim
        xz = dense(2 * inner, ("embed", "mlp"), use_bias=False, name="in_proj", **self.dtype_kwargs)(x)
        xs, z = jnp.split(xz, 2, axis=-1)
        fan_in = self.d_conv * self.d_conv
        kernel = self.param(
            "conv_kernel",
            param_with_axes(torch_uniform_init(fan_in), DEPTHWISE_CONV_AXES),
            (self.d_conv, self.d_conv, 1, inner),
            self.param_dtype,
        )
        bias = self.param("conv_bias", param_with_axes(torch_uniform_init(fan_in), ("mlp",)), (inner,))
        xs = depthwise_conv2d(xs, jnp.asarray(kernel, xs.dtype), padding=self.d_conv // 2)
        xs = jax.nn.silu(xs + jnp.asarray(bias, xs.dtype))
        y = SelectiveSSM(
            directions=4,
            d_state=self.d_state,
            dt_rank=self.dt_rank or math.ceil(self.dim / 16),
            chunk_size=self.chunk_size,
            impl=self.impl,
            name="s6",
            **self.dtype_kwargs,
        )(cross_scan(xs))
        y = cross_merge(y, height, width) * jax.nn.silu(z)
        out = dense(self.dim, ("mlp", "embed"), use_bias=False, name="out_proj", **self.dtype_kwargs)(y)
        return constrain_channels_last(out, "embed")


class SelectiveChannelMixer(Mixer):
    """MambaMixer's Selective Channel Mixer on NHWC maps: a bidirectional S6 along each token's channels."""

    d_state: int = 16
    channel_expand: int = 2
    d_conv: int = 4
    chunk_size: int = 64
    impl: str = "auto"

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        inner = self.channel_expand
        seq = x.reshape(-1, self.dim, 1)  # one sequence of C positions of width 1 per token
        xz = dense(2 * inner, (None, None), use_bias=False, name="in_proj", **self.dtype_kwargs)(seq)
        xs, z = jnp.split(xz, 2, axis=-1)
        both = jnp.concatenate([xs, jnp.flip(xs, 1)], axis=0)  # forward, then backward as a flipped forward
        kernel = self.param(
            "conv_kernel", param_with_axes(torch_uniform_init(self.d_conv), (None, None)), (self.d_conv, inner)
        )
        bias = self.param("conv_bias", param_with_axes(torch_uniform_init(self.d_conv), (None,)), (inner,))
        kernel = jnp.asarray(kernel, both.dtype)
        padded = jnp.pad(both, [(0, 0), (self.d_conv - 1, 0), (0, 0)])  # causal: position t sees t - 3 ... t
        conv = sum(padded[:, j : j + self.dim] * kernel[j] for j in range(self.d_conv))
        both = jax.nn.silu(conv + jnp.asarray(bias, conv.dtype))
        y = SelectiveSSM(
            directions=1,
            d_state=self.d_state,
            dt_rank=1,
            chunk_size=self.chunk_size,
            impl=self.impl,
            name="s6",
            **self.dtype_kwargs,
        )(both[:, :, None])[:, :, 0]
        half = seq.shape[0]
        y = (y[:half] + jnp.flip(y[half:], 1)) * jax.nn.silu(z)
        out = dense(1, (None, None), use_bias=False, name="out_proj", **self.dtype_kwargs)(y)
        return out.reshape(x.shape)
