"""Kernelised (linear) attention: O = phi(Q) (phi(K)^T V) / (phi(Q) . sum_j phi(K_j) + eps).

    o = linear_attention(q, k, v)                 # q, k [B, heads, L, d]; v [B, heads, L, dv] -> [B, heads, L, dv]
    o = linear_attention(q, k, v, causal=True)    # output i sums over j <= i only

This is the attention of "Transformers are RNNs" (Katharopoulos et al. 2020; idiap/fast-transformers
@ 2ad36b97: fast_transformers/attention/linear_attention.py, eps = 1e-6 added to the denominator,
no 1/sqrt(d) scale). Per (batch, head), with S = phi(K)^T V [d, dv] and z = sum_j phi(K_j) [d]:

    O_i = phi(Q_i) S / (phi(Q_i) . z + eps)                  non-causal
    O_i = phi(Q_i) S_i / (phi(Q_i) . z_i + eps),  S_i, z_i summed over j <= i     causal

Feature maps: "elu1" (elu(x) + 1, the paper's; also MLLA's), "relu" (the normalised ReLU form of
EfficientViT's LiteMLA, Cai et al. 2023), and "identity" with the normaliser OFF: O = Q (K^T V)
(causal: O_i = sum_{j<=i} (Q_i . K_j) V_j). That unnormalised form is the one of TransNormer ("The
Devil in Linear Transformer", Qin et al. 2022, which drops the denominator and normalises the output
instead), of RetNet (Sun et al. 2023) and Gated Linear Attention (Yang et al. 2024) with their decay
or gate at 1, and of flash-linear-attention's `chunk_linear_attn(normalize=False)`.

Implementations (`impl=`), each with a `jax.custom_vjp` whose backward is written out by hand:
- "xla": einsums. Non-causal: the formula above. Causal: chunked (kernels.md 8.1): masked
  intra-chunk products plus the inter-chunk states, an exclusive cumulative sum of the per-chunk
  phi(K)^T V, materialised ([.., L/C, d, dv] float32).
- "pallas": non-causal (kernels.md 8.2, 9.2) is one kernel per (batch * head) over a (B*H, 2, L/T)
  grid: pass 0 accumulates S and z over the L tiles in float32 scratch, pass 1 writes O (the K, V
  block index stays put in pass 1 and the Q one in pass 0, so Q, K and V are each read once). Its
  backward is one more two-pass kernel (pass 0: S, z, dS = phi(Q)^T G, dz = phi(Q)^T h; pass 1: dQ,
  dK, dV). Causal is FLA's chunked form (chunk 64): a (B*H, L/C) grid whose chunk axis is sequential,
  the masked intra-chunk products on the tensor unit and a running [d, dv] state (and z) carried in
  scratch across it; the backward is a forward-order kernel for dQ (carrying S, z) and a
  reverse-order kernel for dK, dV (carrying dS, dz), as FLA's chunk_bwd_dh does.
- "auto": "xla" on every backend for now (see below).

Gradients. With G = dO / den and h_i = -(dO_i . O_i) / den_i (G = dO and h = 0 without the
normaliser), the op is linear in phi(Q), phi(K), V through num = A V and den = A 1 + eps, A the
(masked) phi(Q) phi(K)^T; so dA = mask * (G V^T + h 1^T), dphi(Q) = dA phi(K), dphi(K) = dA^T phi(Q),
dV = A^T G, evaluated without A in the state form (non-causal: dphi(Q) = G S^T + h z^T, dphi(K) =
V dS^T + dz, dV = phi(K) dS). dQ = dphi(Q) * phi'(Q) and likewise for K.

Precision: float32 inputs run float32 GEMMs at HIGHEST precision; bfloat16 inputs run bf16 GEMM
operands (features, scores, and the state when it multiplies Q) with float32 accumulation, and the
states, normaliser and division are float32. The output has v's dtype.

Pallas backend: the same policy as mixtok/kernels/spectral_filter.py. The kernels are
`pl.pallas_call`s with BlockSpecs and `jnp.dot` / `lax.dot_general`, written within Mosaic TPU's
rules (blocks [T, d] with T a multiple of 8 (16 for bf16) and d the full head width; grid semantics
parallel over B*H, arbitrary over the pass and L axes) and run in Pallas's interpreter with
`interpret=True`, which is how the tests check them on CPU. Forward and backward, fp32 and bf16,
pass Pallas's Mosaic TPU lowering (`jax.export(..., platforms=["tpu"])` on a CPU machine, 2026-11-21),
but they have not been compiled by Mosaic or run on a TPU (none was available), so "auto" does not
pick them there. On GPU `pl.pallas_call` is not the way (Pallas Triton is deprecated since JAX 0.11,
and Mosaic GPU does not lower `jnp.dot` inside a kernel): there impl="pallas" runs the Mosaic GPU
forward kernels of mixtok/kernels/linear_attention_mgpu.py (`plgpu.kernel`, Hopper wgmma, TMA;
bfloat16, d in {64, 128}; non-causal two-loop and causal chunk-64 forms) with the "xla" backward.
They match the reference in the Mosaic GPU interpreter and pass the Mosaic GPU lowering on a CPU
(`jax.export(..., platforms=["cuda"])`), but have not been compiled to PTX or run on a GPU (none
was available), so "auto" picks "xla" on CPU and GPU, and impl="pallas" on CPU needs interpret=True.
Not done: packing several heads into one program for short sequences (kernels.md 9.2, N <= 196).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from mixtok.registry import unknown_name_error

IMPLS = ("auto", "xla", "pallas")
FEATURE_MAPS = ("elu1", "relu", "identity")
DTYPES = (jnp.float32, jnp.bfloat16)
DEFAULT_EPS = 1e-6  # fast-transformers' LinearAttention(eps=1e-6)


@dataclasses.dataclass(frozen=True)
class LinearAttentionBlocks:
    """Block sizes of the Pallas kernels.

    length: L-tile of the non-causal kernels (rows of Q, K, V per grid step); shorter sequences use
      one tile of L rounded up to 8 (16 for bf16). The sequence is zero-padded to a multiple of it
      and the padded keys are masked out of the state.
    chunk: chunk of the causal kernels (FLA's 64): the intra-chunk scores are [chunk, chunk].
    """

    length: int = 256
    chunk: int = 64

    def __post_init__(self):
        for name in ("length", "chunk"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0 or value % 16:
                raise ValueError(f"LinearAttentionBlocks.{name} must be a positive multiple of 16; got {value!r}.")

    def tile(self, length: int, dtype, causal: bool) -> int:
        align = 16 if jnp.dtype(dtype) == jnp.bfloat16 else 8
        block = self.chunk if causal else self.length
        return min(block, -(-length // align) * align)


DEFAULT_BLOCKS = LinearAttentionBlocks()


def check_inputs(q, k, v, feature_map: str) -> None:
    """Raises a ValueError that says which input is wrong and why."""
    if feature_map not in FEATURE_MAPS:
        raise unknown_name_error("linear_attention feature map", feature_map, FEATURE_MAPS)
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 4:
            raise ValueError(f"linear_attention takes {name} as [B, heads, L, d]; got shape {x.shape}.")
        if x.dtype not in DTYPES:
            raise ValueError(f"linear_attention takes float32 or bfloat16 inputs; {name} is {x.dtype}.")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape [B, heads, L, d]; got {q.shape} and {k.shape}.")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, heads, L, dv] with the (B, heads, L) of q = {q.shape[:3]}; got {v.shape}.")
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k and v must share a dtype; got {q.dtype}, {k.dtype}, {v.dtype}.")


def _features(x, feature_map):
    """phi(x) in float32."""
    x = x.astype(jnp.float32)
    if feature_map == "elu1":
        return jnp.where(x > 0, x + 1.0, jnp.exp(jnp.minimum(x, 0.0)))
    if feature_map == "relu":
        return jnp.maximum(x, 0.0)
    return x


def _feature_slope(x, feature_map):
    """phi'(x) in float32 (relu: 0 at 0, as jax.nn.relu's gradient)."""
    x = x.astype(jnp.float32)
    if feature_map == "elu1":
        return jnp.where(x > 0, 1.0, jnp.exp(jnp.minimum(x, 0.0)))
    if feature_map == "relu":
        return (x > 0).astype(jnp.float32)
    return jnp.ones_like(x)


def linear_attention_reference(q, k, v, *, causal=False, feature_map="elu1", eps=DEFAULT_EPS):
    """The definition as a masked L x L product in float32: A = phi(Q) phi(K)^T, O = A V / (A 1 + eps)."""
    check_inputs(q, k, v, feature_map)
    qf, kf = _features(q, feature_map), _features(k, feature_map)
    scores = jnp.einsum("bhid,bhjd->bhij", qf, kf, precision="highest")
    if causal:
        scores = jnp.tril(scores)
    out = jnp.einsum("bhij,bhje->bhie", scores, v.astype(jnp.float32), precision="highest")
    if feature_map != "identity":
        out = out / (scores.sum(-1, keepdims=True) + eps)
    return out.astype(v.dtype)


def _gemm(a, b, dtype, dims=(((1,), (0,)), ((), ()))):
    """a @ b (dims: dot_general dimension numbers) with dtype operands and float32 accumulation."""
    precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else jax.lax.Precision.DEFAULT
    return jax.lax.dot_general(a.astype(dtype), b.astype(dtype), dims, precision=precision,
                               preferred_element_type=jnp.float32)


TN = (((0,), (0,)), ((), ()))  # a^T b
NT = (((1,), (1,)), ((), ()))  # a b^T


def _output_gradients(do, o, den, normalize):
    """G = dO / den and h = -(dO . O) / den (float32); without the normaliser G = dO, h = 0."""
    do = do.astype(jnp.float32)
    if not normalize:
        return do, jnp.zeros(do.shape[:-1], jnp.float32)
    return do / den[..., None], -jnp.sum(do * o.astype(jnp.float32), -1) / den


# --------------------------------------------------------------------------------------------------
# impl="xla": einsums on [..., L, d]; causal in chunks of `chunk`.


def _einsum(spec, a, b, dtype):
    precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else jax.lax.Precision.DEFAULT
    return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), precision=precision,
                      preferred_element_type=jnp.float32)


def _chunked(x, chunk):
    """[..., L, d] -> [..., L/C, C, d], zero-padded at the end (padded rows are never attended to)."""
    length = x.shape[-2]
    padded = -(-length // chunk) * chunk
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, padded - length), (0, 0)])
    return x.reshape(x.shape[:-2] + (padded // chunk, chunk, x.shape[-1]))


def _unchunked(x, length):
    return x.reshape(x.shape[:-3] + (-1, x.shape[-1]))[..., :length, :]


def _xla_forward(q, k, v, causal, feature_map, eps, chunk):
    """(O, den): den [..., L] float32 (ones without the normaliser)."""
    dtype, normalize, length = q.dtype, feature_map != "identity", q.shape[-2]
    qf, kf = _features(q, feature_map), _features(k, feature_map)
    if not causal:
        state = _einsum("...ld,...le->...de", kf, v, dtype)
        num = _einsum("...ld,...de->...le", qf, state, dtype)
        den = jnp.einsum("...ld,...d->...l", qf, kf.sum(-2), precision="highest") + eps
    else:
        qf, kf, vc = _chunked(qf, chunk), _chunked(kf, chunk), _chunked(v, chunk)
        mask = jnp.tril(jnp.ones((chunk, chunk), bool))
        scores = jnp.where(mask, _einsum("...cid,...cjd->...cij", qf, kf, dtype), 0.0)
        chunk_states = _einsum("...cjd,...cje->...cde", kf, vc, dtype)
        previous = jnp.cumsum(chunk_states, axis=-3) - chunk_states          # exclusive: chunks before c
        num = (_einsum("...cij,...cje->...cie", scores, vc, dtype)
               + _einsum("...cid,...cde->...cie", qf, previous, dtype))
        chunk_norms = kf.sum(-2)
        previous_norm = jnp.cumsum(chunk_norms, axis=-2) - chunk_norms
        den = scores.sum(-1) + jnp.einsum("...cid,...cd->...ci", qf, previous_norm, precision="highest") + eps
        num = _unchunked(num, length)
        den = den.reshape(den.shape[:-2] + (-1,))[..., :length]
    if not normalize:
        return num.astype(v.dtype), jnp.ones(num.shape[:-1], jnp.float32)
    return (num / den[..., None]).astype(v.dtype), den


def _xla_backward(q, k, v, g, h, causal, feature_map, chunk):
    dtype, normalize, length = q.dtype, feature_map != "identity", q.shape[-2]
    qf, kf = _features(q, feature_map), _features(k, feature_map)
    if not causal:
        state = _einsum("...ld,...le->...de", kf, v, dtype)
        dstate = _einsum("...ld,...le->...de", qf, g, dtype)
        dqf = _einsum("...le,...de->...ld", g, state, dtype)
        dkf = _einsum("...le,...de->...ld", v, dstate, dtype)
        dv = _einsum("...ld,...de->...le", kf, dstate, dtype)
        if normalize:
            dqf = dqf + h[..., None] * kf.sum(-2)[..., None, :]
            dkf = dkf + jnp.einsum("...l,...ld->...d", h, qf, precision="highest")[..., None, :]
    else:
        qf, kf, vc, gc = (_chunked(x, chunk) for x in (qf, kf, v, g))
        hc = _chunked(h[..., None], chunk)[..., 0]
        mask = jnp.tril(jnp.ones((chunk, chunk), bool))
        scores = jnp.where(mask, _einsum("...cid,...cjd->...cij", qf, kf, dtype), 0.0)
        dscores = jnp.where(mask, _einsum("...cie,...cje->...cij", gc, vc, dtype) + hc[..., None], 0.0)
        chunk_states = _einsum("...cjd,...cje->...cde", kf, vc, dtype)
        previous = jnp.cumsum(chunk_states, axis=-3) - chunk_states
        chunk_dstates = _einsum("...cid,...cie->...cde", qf, gc, dtype)
        later = jnp.cumsum(chunk_dstates[..., ::-1, :, :], axis=-3)[..., ::-1, :, :] - chunk_dstates
        dqf = (_einsum("...cij,...cjd->...cid", dscores, kf, dtype)
               + _einsum("...cie,...cde->...cid", gc, previous, dtype))
        dkf = _einsum("...cij,...cid->...cjd", dscores, qf, dtype) + _einsum("...cje,...cde->...cjd", vc, later, dtype)
        dv = _einsum("...cij,...cie->...cje", scores, gc, dtype) + _einsum("...cjd,...cde->...cje", kf, later, dtype)
        if normalize:
            chunk_norms = kf.sum(-2)
            dqf = dqf + hc[..., None] * (jnp.cumsum(chunk_norms, axis=-2) - chunk_norms)[..., None, :]
            chunk_dnorms = jnp.einsum("...ci,...cid->...cd", hc, qf, precision="highest")
            later_dnorm = jnp.cumsum(chunk_dnorms[..., ::-1, :], axis=-2)[..., ::-1, :] - chunk_dnorms
            dkf = dkf + later_dnorm[..., None, :]
        dqf, dkf, dv = (_unchunked(x, length) for x in (dqf, dkf, dv))
    dq = dqf * _feature_slope(q, feature_map)
    dk = dkf * _feature_slope(k, feature_map)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


# --------------------------------------------------------------------------------------------------
# impl="pallas": kernels on [B*H, Lp, d] with float32 scratch state; see the module docstring.


def _positions(rows, tile_index):
    return tile_index * rows + jax.lax.broadcasted_iota(jnp.int32, (rows, 1), 0)


def _causal_mask(rows):
    return (jax.lax.broadcasted_iota(jnp.int32, (rows, rows), 0)
            >= jax.lax.broadcasted_iota(jnp.int32, (rows, rows), 1))


def _noncausal_forward_kernel(q_ref, k_ref, v_ref, o_ref, den_ref, state_ref, norm_ref, *,
                              feature_map, eps, length):
    phase, tile = pl.program_id(1), pl.program_id(2)
    dtype = q_ref.dtype

    @pl.when((phase == 0) & (tile == 0))
    def _():
        state_ref[...] = jnp.zeros_like(state_ref)
        norm_ref[...] = jnp.zeros_like(norm_ref)

    @pl.when(phase == 0)
    def _():
        kf = jnp.where(_positions(k_ref.shape[0], tile) < length, _features(k_ref[...], feature_map), 0.0)
        state_ref[...] += _gemm(kf, v_ref[...], dtype, TN)
        norm_ref[...] += jnp.sum(kf, axis=0, keepdims=True)

    @pl.when(phase == 1)
    def _():
        qf = _features(q_ref[...], feature_map)
        num = _gemm(qf, state_ref[...], dtype)
        if feature_map == "identity":
            den = jnp.ones(den_ref.shape, jnp.float32)
        else:
            den = jnp.sum(qf * norm_ref[...], axis=1, keepdims=True) + eps
        o_ref[...] = (num / den).astype(o_ref.dtype)
        den_ref[...] = den


def _noncausal_backward_kernel(q_ref, k_ref, v_ref, g_ref, h_ref, dq_ref, dk_ref, dv_ref,
                               state_ref, norm_ref, dstate_ref, dnorm_ref, *, feature_map, length):
    phase, tile = pl.program_id(1), pl.program_id(2)
    dtype, normalize = q_ref.dtype, feature_map != "identity"

    @pl.when((phase == 0) & (tile == 0))
    def _():
        for ref in (state_ref, norm_ref, dstate_ref, dnorm_ref):
            ref[...] = jnp.zeros_like(ref)

    @pl.when(phase == 0)
    def _():
        kf = jnp.where(_positions(k_ref.shape[0], tile) < length, _features(k_ref[...], feature_map), 0.0)
        qf = _features(q_ref[...], feature_map)                 # padded rows have G = h = 0
        state_ref[...] += _gemm(kf, v_ref[...], dtype, TN)
        dstate_ref[...] += _gemm(qf, g_ref[...], dtype, TN)
        if normalize:
            norm_ref[...] += jnp.sum(kf, axis=0, keepdims=True)
            dnorm_ref[...] += jnp.sum(qf * h_ref[...], axis=0, keepdims=True)

    @pl.when(phase == 1)
    def _():
        kf = _features(k_ref[...], feature_map)
        g = g_ref[...]
        dqf = _gemm(g, state_ref[...], dtype, NT)
        dkf = _gemm(v_ref[...], dstate_ref[...], dtype, NT)
        if normalize:
            dqf += h_ref[...] * norm_ref[...]
            dkf += dnorm_ref[...]
        dq_ref[...] = (dqf * _feature_slope(q_ref[...], feature_map)).astype(dq_ref.dtype)
        dk_ref[...] = (dkf * _feature_slope(k_ref[...], feature_map)).astype(dk_ref.dtype)
        dv_ref[...] = _gemm(kf, dstate_ref[...], dtype).astype(dv_ref.dtype)


def _causal_forward_kernel(q_ref, k_ref, v_ref, o_ref, den_ref, state_ref, norm_ref, *, feature_map, eps):
    dtype = q_ref.dtype

    @pl.when(pl.program_id(1) == 0)
    def _():
        state_ref[...] = jnp.zeros_like(state_ref)
        norm_ref[...] = jnp.zeros_like(norm_ref)

    qf, kf, v = _features(q_ref[...], feature_map), _features(k_ref[...], feature_map), v_ref[...]
    scores = jnp.where(_causal_mask(qf.shape[0]), _gemm(qf, kf, dtype, NT), 0.0)
    num = _gemm(scores, v, dtype) + _gemm(qf, state_ref[...], dtype)
    if feature_map == "identity":
        den = jnp.ones(den_ref.shape, jnp.float32)
    else:
        den = jnp.sum(scores, axis=1, keepdims=True) + jnp.sum(qf * norm_ref[...], axis=1, keepdims=True) + eps
    o_ref[...] = (num / den).astype(o_ref.dtype)
    den_ref[...] = den
    state_ref[...] += _gemm(kf, v, dtype, TN)
    norm_ref[...] += jnp.sum(kf, axis=0, keepdims=True)


def _causal_dq_kernel(q_ref, k_ref, v_ref, g_ref, h_ref, dq_ref, state_ref, norm_ref, *, feature_map):
    """Chunks in order: dphi(Q) = mask(G V^T + h) phi(K) + G S_<c^T + h z_<c."""
    dtype, normalize = q_ref.dtype, feature_map != "identity"

    @pl.when(pl.program_id(1) == 0)
    def _():
        state_ref[...] = jnp.zeros_like(state_ref)
        norm_ref[...] = jnp.zeros_like(norm_ref)

    kf, v, g = _features(k_ref[...], feature_map), v_ref[...], g_ref[...]
    dscores = _gemm(g, v, dtype, NT)
    if normalize:
        dscores += h_ref[...]
    dscores = jnp.where(_causal_mask(g.shape[0]), dscores, 0.0)
    dqf = _gemm(dscores, kf, dtype) + _gemm(g, state_ref[...], dtype, NT)
    if normalize:
        dqf += h_ref[...] * norm_ref[...]
    dq_ref[...] = (dqf * _feature_slope(q_ref[...], feature_map)).astype(dq_ref.dtype)
    state_ref[...] += _gemm(kf, v, dtype, TN)
    norm_ref[...] += jnp.sum(kf, axis=0, keepdims=True)


def _causal_dkv_kernel(q_ref, k_ref, v_ref, g_ref, h_ref, dk_ref, dv_ref, dstate_ref, dnorm_ref, *, feature_map):
    """Chunks in reverse: dphi(K) = mask(G V^T + h)^T phi(Q) + V dS_>c^T + dz_>c; dV = A^T G + phi(K) dS_>c."""
    dtype, normalize = q_ref.dtype, feature_map != "identity"

    @pl.when(pl.program_id(1) == 0)
    def _():
        dstate_ref[...] = jnp.zeros_like(dstate_ref)
        dnorm_ref[...] = jnp.zeros_like(dnorm_ref)

    qf, kf, v, g = _features(q_ref[...], feature_map), _features(k_ref[...], feature_map), v_ref[...], g_ref[...]
    mask = _causal_mask(g.shape[0])
    dscores = _gemm(g, v, dtype, NT)
    if normalize:
        dscores += h_ref[...]
    dscores = jnp.where(mask, dscores, 0.0)
    scores = jnp.where(mask, _gemm(qf, kf, dtype, NT), 0.0)
    dkf = _gemm(dscores, qf, dtype, TN) + _gemm(v, dstate_ref[...], dtype, NT)
    if normalize:
        dkf += dnorm_ref[...]
    dk_ref[...] = (dkf * _feature_slope(k_ref[...], feature_map)).astype(dk_ref.dtype)
    dv_ref[...] = (_gemm(scores, g, dtype, TN) + _gemm(kf, dstate_ref[...], dtype)).astype(dv_ref.dtype)
    dstate_ref[...] += _gemm(qf, g, dtype, TN)
    if normalize:
        dnorm_ref[...] += jnp.sum(qf * h_ref[...], axis=0, keepdims=True)


def _pallas_call(kernel, grid, in_specs, out_specs, out_shape, scratch, interpret, semantics):
    # The VMEM scratch type comes from the TPU module, which imports on any backend and whose
    # scratch the interpreter runs.
    from jax.experimental.pallas import tpu as pltpu  # noqa: PLC0415

    extra = {}
    if not interpret and jax.default_backend() == "tpu":
        extra["compiler_params"] = pltpu.CompilerParams(dimension_semantics=semantics)
    scratch_shapes = [pltpu.VMEM(shape, jnp.float32) for shape in scratch]
    return pl.pallas_call(kernel, grid=grid, in_specs=in_specs, out_specs=out_specs, out_shape=out_shape,
                          scratch_shapes=scratch_shapes, interpret=interpret, **extra)


def _flat_padded(x, padded):
    """[B, H, L, ...] -> [B*H, padded, ...], zero rows at the end."""
    x = x.reshape((-1,) + x.shape[2:])
    return jnp.pad(x, [(0, 0), (0, padded - x.shape[1])] + [(0, 0)] * (x.ndim - 2))


def _row_specs(rows, widths, index):
    return [pl.BlockSpec((None, rows, width), index) for width in widths]


def _pallas_forward(q, k, v, causal, feature_map, eps, blocks, interpret):
    batch, heads, length, d = q.shape
    dv = v.shape[-1]
    rows = blocks.tile(length, q.dtype, causal)
    padded = -(-length // rows) * rows
    tiles = padded // rows
    q2, k2, v2 = (_flat_padded(x, padded) for x in (q, k, v))
    out_shape = [jax.ShapeDtypeStruct((batch * heads, padded, dv), v.dtype),
                 jax.ShapeDtypeStruct((batch * heads, padded, 1), jnp.float32)]
    scratch = [(d, dv), (1, d)]
    if causal:
        def index(b, c):
            return (b, c, 0)
        kernel = functools.partial(_causal_forward_kernel, feature_map=feature_map, eps=eps)
        o, den = _pallas_call(kernel, (batch * heads, tiles), _row_specs(rows, (d, d, dv), index),
                              _row_specs(rows, (dv, 1), index), out_shape, scratch, interpret,
                              ("parallel", "arbitrary"))(q2, k2, v2)
    else:
        def q_index(b, p, t):                       # Q in pass 1 only: parked on tile 0 in pass 0
            return (b, t * p, 0)

        def kv_index(b, p, t):                      # K, V in pass 0 only: parked on the last tile in pass 1
            return (b, t + p * (tiles - 1 - t), 0)
        kernel = functools.partial(_noncausal_forward_kernel, feature_map=feature_map, eps=eps, length=length)
        in_specs = _row_specs(rows, (d,), q_index) + _row_specs(rows, (d, dv), kv_index)
        o, den = _pallas_call(kernel, (batch * heads, 2, tiles), in_specs, _row_specs(rows, (dv, 1), q_index),
                              out_shape, scratch, interpret, ("parallel", "arbitrary", "arbitrary"))(q2, k2, v2)
    return (o[:, :length].reshape(batch, heads, length, dv),
            den[:, :length, 0].reshape(batch, heads, length))


def _pallas_backward(q, k, v, g, h, causal, feature_map, blocks, interpret):
    batch, heads, length, d = q.shape
    dv = v.shape[-1]
    rows = blocks.tile(length, q.dtype, causal)
    padded = -(-length // rows) * rows
    tiles = padded // rows
    inputs = [_flat_padded(x, padded) for x in (q, k, v, g.astype(q.dtype), h[..., None])]
    widths = (d, d, dv, dv, 1)
    shapes = {"q": (d, q.dtype), "k": (d, k.dtype), "v": (dv, v.dtype)}

    def outputs(*names):
        return [jax.ShapeDtypeStruct((batch * heads, padded, shapes[n][0]), shapes[n][1]) for n in names]

    def widths_of(*names):
        return tuple(shapes[n][0] for n in names)

    if causal:
        def forward_index(b, c):
            return (b, c, 0)

        def reverse_index(b, c):
            return (b, tiles - 1 - c, 0)
        semantics = ("parallel", "arbitrary")
        dq_kernel = functools.partial(_causal_dq_kernel, feature_map=feature_map)
        (dq,) = _pallas_call(dq_kernel, (batch * heads, tiles), _row_specs(rows, widths, forward_index),
                             _row_specs(rows, widths_of("q"), forward_index), outputs("q"),
                             [(d, dv), (1, d)], interpret, semantics)(*inputs)
        dkv_kernel = functools.partial(_causal_dkv_kernel, feature_map=feature_map)
        dk, dv_ = _pallas_call(dkv_kernel, (batch * heads, tiles), _row_specs(rows, widths, reverse_index),
                               _row_specs(rows, widths_of("k", "v"), reverse_index), outputs("k", "v"),
                               [(d, dv), (1, d)], interpret, semantics)(*inputs)
    else:
        def in_index(b, p, t):
            return (b, t, 0)

        def out_index(b, p, t):                     # written in pass 1 only
            return (b, t * p, 0)
        kernel = functools.partial(_noncausal_backward_kernel, feature_map=feature_map, length=length)
        dq, dk, dv_ = _pallas_call(kernel, (batch * heads, 2, tiles), _row_specs(rows, widths, in_index),
                                   _row_specs(rows, widths_of("q", "k", "v"), out_index), outputs("q", "k", "v"),
                                   [(d, dv), (1, d), (d, dv), (1, d)], interpret,
                                   ("parallel", "arbitrary", "arbitrary"))(*inputs)
    return tuple(x[:, :length].reshape(batch, heads, length, x.shape[-1]) for x in (dq, dk, dv_))


# --------------------------------------------------------------------------------------------------
# The op.


@functools.lru_cache(maxsize=None)
def _op(impl, causal, feature_map, eps, blocks, interpret):
    """The op for one static configuration, with its hand-written VJP."""
    normalize = feature_map != "identity"
    if impl == "xla":
        def forward(q, k, v):
            return _xla_forward(q, k, v, causal, feature_map, eps, blocks.chunk)

        def backward(q, k, v, g, h):
            return _xla_backward(q, k, v, g, h, causal, feature_map, blocks.chunk)
    elif impl == "mosaic_gpu":  # impl="pallas" on a GPU: the Mosaic GPU forward, the XLA backward
        from mixtok.kernels.linear_attention_mgpu import linear_attention_mgpu_forward

        def forward(q, k, v):
            return linear_attention_mgpu_forward(q, k, v, causal=causal, feature_map=feature_map, eps=eps,
                                                 interpret=interpret)

        def backward(q, k, v, g, h):
            return _xla_backward(q, k, v, g, h, causal, feature_map, blocks.chunk)
    else:
        def forward(q, k, v):
            return _pallas_forward(q, k, v, causal, feature_map, eps, blocks, interpret)

        def backward(q, k, v, g, h):
            return _pallas_backward(q, k, v, g, h, causal, feature_map, blocks, interpret)

    @jax.custom_vjp
    def op(q, k, v):
        return forward(q, k, v)[0]

    def op_fwd(q, k, v):
        o, den = forward(q, k, v)
        return o, (q, k, v, o, den)

    def op_bwd(residuals, do):
        q, k, v, o, den = residuals
        g, h = _output_gradients(do, o, den, normalize)
        return backward(q, k, v, g, h)

    op.defvjp(op_fwd, op_bwd)
    return op


def resolve_impl(impl: str) -> str:
    """The implementation `impl` stands for on this backend ("auto" -> "xla" everywhere for now)."""
    if impl not in IMPLS:
        raise unknown_name_error("linear_attention impl", impl, IMPLS)
    # CPU: the interpreter is slow; GPU: no compilable Pallas kernel; TPU: the Mosaic lowering is unchecked.
    return "xla" if impl == "auto" else impl


def _check_pallas(interpret: bool) -> None:
    backend = jax.default_backend()
    if interpret or backend in ("tpu", "gpu"):
        return
    if backend == "cpu":
        raise ValueError(
            "impl='pallas' runs on CPU only in Pallas's interpreter: pass interpret=True, or use impl='auto' / "
            "'xla' (the kernels are written for Mosaic TPU and Mosaic GPU; see mixtok/kernels/linear_attention.py).")
    raise ValueError(f"impl='pallas' has no kernel for the {backend!r} backend; use impl='auto'.")


def linear_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, causal: bool = False, feature_map: str = "elu1",
                     eps: float = DEFAULT_EPS, impl: str = "auto", interpret: bool = False,
                     blocks: LinearAttentionBlocks = DEFAULT_BLOCKS) -> jax.Array:
    """Linear attention of q [B, heads, L, d], k [B, heads, L, d] and v [B, heads, L, dv] -> [B, heads, L, dv].

    causal: output i attends to j <= i. feature_map: "elu1", "relu" (both normalised, eps added to
    the denominator) or "identity" (no normaliser). impl: "auto", "xla" or "pallas" (module
    docstring). interpret: runs the Pallas kernels in Pallas's interpreter (CPU tests); only used
    by impl="pallas". blocks: the Pallas kernels' tile sizes and the causal chunk of both impls.
    Inputs are float32 or bfloat16, all of one dtype; the output has that dtype.
    """
    check_inputs(q, k, v, feature_map)
    name = resolve_impl(impl)
    if not isinstance(blocks, LinearAttentionBlocks):
        raise ValueError(f"blocks must be a LinearAttentionBlocks; got {type(blocks).__name__}.")
    if name == "pallas":
        _check_pallas(interpret)
        if jax.default_backend() == "gpu" and not interpret:
            from mixtok.kernels.linear_attention_mgpu import check_mgpu_inputs

            check_mgpu_inputs(q, k, v, feature_map)
            name = "mosaic_gpu"
    return _op(name, bool(causal), feature_map, float(eps), blocks, bool(interpret) and name == "pallas")(q, k, v)
