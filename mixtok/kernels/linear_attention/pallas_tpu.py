"""Linear attention as Pallas kernels (`pl.pallas_call`, Mosaic TPU): impl="pallas" on TPU and interpreted.

    o, den = pallas_forward(q, k, v, causal, feature_map, eps, blocks, interpret)
    dq, dk, dv = pallas_backward(q, k, v, g, h, causal, feature_map, blocks, interpret)

Non-causal (docs/facts/kernels.md, "FBLA (non-causal)" and "Recommended kernel algorithms: linear
attention") is one kernel per (batch * head) over a (B*H, 2, L/T) grid: pass 0 accumulates S and z
over the L tiles in float32 scratch, pass 1 writes O (the K, V block index stays put in pass 1 and
the Q one in pass 0, so Q, K and V are each read once). Its backward is one more two-pass kernel
(pass 0: S, z, dS = phi(Q)^T G, dz = phi(Q)^T h; pass 1: dQ, dK, dV). Causal is FLA's chunked form
(chunk 64): a (B*H, L/C) grid whose chunk axis is sequential, the masked intra-chunk products on
the tensor unit and a running [d, dv] state (and z) carried in scratch across it; the backward is a
forward-order kernel for dQ (carrying S, z) and a reverse-order kernel for dK, dV (carrying dS,
dz), as FLA's chunk_bwd_dh does.

The kernels use `jnp.dot` / `lax.dot_general` within Mosaic TPU's rules (blocks [T, d] with T a
multiple of 8 (16 for bf16) and d the full head width; grid semantics parallel over B*H,
arbitrary over the pass and L axes) and run in Pallas's interpreter with `interpret=True`, how the
tests check them on CPU. Forward and backward, fp32 and bf16, pass Pallas's Mosaic TPU lowering
(`jax.export(..., platforms=["tpu"])` on a CPU machine, 2026-11-21), but they have not been
compiled by Mosaic or run on a TPU (none was available), so impl="auto" does not pick them.
Not done: packing several heads into one program for short sequences (N <= 196).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from mixtok.kernels.linear_attention.reference import feature_slope, features, flat_padded
from mixtok.kernels.linear_attention.xla import attention_op
from mixtok.kernels.pallas_tpu_common import pallas_tpu_call


@dataclasses.dataclass(frozen=True)
class LinearAttentionBlocks:
    """Block sizes of linear attention's Pallas kernels (`chunk` is also the "xla" form's causal chunk).

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


def _gemm(a, b, dtype, dims=(((1,), (0,)), ((), ()))):
    """a @ b (dims: dot_general dimension numbers) with dtype operands and float32 accumulation."""
    precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else jax.lax.Precision.DEFAULT
    return jax.lax.dot_general(
        a.astype(dtype), b.astype(dtype), dims, precision=precision, preferred_element_type=jnp.float32
    )


TN = (((0,), (0,)), ((), ()))  # a^T b
NT = (((1,), (1,)), ((), ()))  # a b^T


def _positions(rows, tile_index):
    return tile_index * rows + jax.lax.broadcasted_iota(jnp.int32, (rows, 1), 0)


def _causal_mask(rows):
    return jax.lax.broadcasted_iota(jnp.int32, (rows, rows), 0) >= jax.lax.broadcasted_iota(jnp.int32, (rows, rows), 1)


def _noncausal_forward_kernel(q_ref, k_ref, v_ref, o_ref, den_ref, state_ref, norm_ref, *, feature_map, eps, length):
    phase, tile = pl.program_id(1), pl.program_id(2)
    dtype = q_ref.dtype

    @pl.when((phase == 0) & (tile == 0))
    def _():
        state_ref[...] = jnp.zeros_like(state_ref)
        norm_ref[...] = jnp.zeros_like(norm_ref)

    @pl.when(phase == 0)
    def _():
        kf = jnp.where(_positions(k_ref.shape[0], tile) < length, features(k_ref[...], feature_map), 0.0)
        state_ref[...] += _gemm(kf, v_ref[...], dtype, TN)
        norm_ref[...] += jnp.sum(kf, axis=0, keepdims=True)

    @pl.when(phase == 1)
    def _():
        qf = features(q_ref[...], feature_map)
        num = _gemm(qf, state_ref[...], dtype)
        if feature_map == "identity":
            den = jnp.ones(den_ref.shape, jnp.float32)
        else:
            den = jnp.sum(qf * norm_ref[...], axis=1, keepdims=True) + eps
        o_ref[...] = (num / den).astype(o_ref.dtype)
        den_ref[...] = den


def _noncausal_backward_kernel(
    q_ref,
    k_ref,
    v_ref,
    g_ref,
    h_ref,
    dq_ref,
    dk_ref,
    dv_ref,
    state_ref,
    norm_ref,
    dstate_ref,
    dnorm_ref,
    *,
    feature_map,
    length,
):
    phase, tile = pl.program_id(1), pl.program_id(2)
    dtype, normalize = q_ref.dtype, feature_map != "identity"

    @pl.when((phase == 0) & (tile == 0))
    def _():
        for ref in (state_ref, norm_ref, dstate_ref, dnorm_ref):
            ref[...] = jnp.zeros_like(ref)

    @pl.when(phase == 0)
    def _():
        kf = jnp.where(_positions(k_ref.shape[0], tile) < length, features(k_ref[...], feature_map), 0.0)
        qf = features(q_ref[...], feature_map)  # padded rows have G = h = 0
        state_ref[...] += _gemm(kf, v_ref[...], dtype, TN)
        dstate_ref[...] += _gemm(qf, g_ref[...], dtype, TN)
        if normalize:
            norm_ref[...] += jnp.sum(kf, axis=0, keepdims=True)
            dnorm_ref[...] += jnp.sum(qf * h_ref[...], axis=0, keepdims=True)

    @pl.when(phase == 1)
    def _():
        kf = features(k_ref[...], feature_map)
        g = g_ref[...]
        dqf = _gemm(g, state_ref[...], dtype, NT)
        dkf = _gemm(v_ref[...], dstate_ref[...], dtype, NT)
        if normalize:
            dqf += h_ref[...] * norm_ref[...]
            dkf += dnorm_ref[...]
        dq_ref[...] = (dqf * feature_slope(q_ref[...], feature_map)).astype(dq_ref.dtype)
        dk_ref[...] = (dkf * feature_slope(k_ref[...], feature_map)).astype(dk_ref.dtype)
        dv_ref[...] = _gemm(kf, dstate_ref[...], dtype).astype(dv_ref.dtype)


def _causal_forward_kernel(q_ref, k_ref, v_ref, o_ref, den_ref, state_ref, norm_ref, *, feature_map, eps):
    dtype = q_ref.dtype

    @pl.when(pl.program_id(1) == 0)
    def _():
        state_ref[...] = jnp.zeros_like(state_ref)
        norm_ref[...] = jnp.zeros_like(norm_ref)

    qf, kf, v = features(q_ref[...], feature_map), features(k_ref[...], feature_map), v_ref[...]
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

    kf, v, g = features(k_ref[...], feature_map), v_ref[...], g_ref[...]
    dscores = _gemm(g, v, dtype, NT)
    if normalize:
        dscores += h_ref[...]
    dscores = jnp.where(_causal_mask(g.shape[0]), dscores, 0.0)
    dqf = _gemm(dscores, kf, dtype) + _gemm(g, state_ref[...], dtype, NT)
    if normalize:
        dqf += h_ref[...] * norm_ref[...]
    dq_ref[...] = (dqf * feature_slope(q_ref[...], feature_map)).astype(dq_ref.dtype)
    state_ref[...] += _gemm(kf, v, dtype, TN)
    norm_ref[...] += jnp.sum(kf, axis=0, keepdims=True)


def _causal_dkv_kernel(q_ref, k_ref, v_ref, g_ref, h_ref, dk_ref, dv_ref, dstate_ref, dnorm_ref, *, feature_map):
    """Chunks in reverse: dphi(K) = mask(G V^T + h)^T phi(Q) + V dS_>c^T + dz_>c; dV = A^T G + phi(K) dS_>c."""
    dtype, normalize = q_ref.dtype, feature_map != "identity"

    @pl.when(pl.program_id(1) == 0)
    def _():
        dstate_ref[...] = jnp.zeros_like(dstate_ref)
        dnorm_ref[...] = jnp.zeros_like(dnorm_ref)

    qf, kf, v, g = features(q_ref[...], feature_map), features(k_ref[...], feature_map), v_ref[...], g_ref[...]
    mask = _causal_mask(g.shape[0])
    dscores = _gemm(g, v, dtype, NT)
    if normalize:
        dscores += h_ref[...]
    dscores = jnp.where(mask, dscores, 0.0)
    scores = jnp.where(mask, _gemm(qf, kf, dtype, NT), 0.0)
    dkf = _gemm(dscores, qf, dtype, TN) + _gemm(v, dstate_ref[...], dtype, NT)
    if normalize:
        dkf += dnorm_ref[...]
    dk_ref[...] = (dkf * feature_slope(k_ref[...], feature_map)).astype(dk_ref.dtype)
    dv_ref[...] = (_gemm(scores, g, dtype, TN) + _gemm(kf, dstate_ref[...], dtype)).astype(dv_ref.dtype)
    dstate_ref[...] += _gemm(qf, g, dtype, TN)
    if normalize:
        dnorm_ref[...] += jnp.sum(qf * h_ref[...], axis=0, keepdims=True)


def _row_specs(rows, widths, index):
    return [pl.BlockSpec((None, rows, width), index) for width in widths]


def pallas_forward(q, k, v, causal, feature_map, eps, blocks, interpret):
    batch, heads, length, d = q.shape
    dv = v.shape[-1]
    rows = blocks.tile(length, q.dtype, causal)
    padded = -(-length // rows) * rows
    tiles = padded // rows
    q2, k2, v2 = (flat_padded(x, padded) for x in (q, k, v))
    out_shape = [
        jax.ShapeDtypeStruct((batch * heads, padded, dv), v.dtype),
        jax.ShapeDtypeStruct((batch * heads, padded, 1), jnp.float32),
    ]
    scratch = [(d, dv), (1, d)]
    if causal:

        def index(b, c):
            return (b, c, 0)

        kernel = functools.partial(_causal_forward_kernel, feature_map=feature_map, eps=eps)
        o, den = pallas_tpu_call(
            kernel,
            grid=(batch * heads, tiles),
            in_specs=_row_specs(rows, (d, d, dv), index),
            out_specs=_row_specs(rows, (dv, 1), index),
            out_shape=out_shape,
            scratch=scratch,
            interpret=interpret,
            semantics=("parallel", "arbitrary"),
        )(q2, k2, v2)
    else:

        def q_index(b, p, t):  # Q in pass 1 only: parked on tile 0 in pass 0
            return (b, t * p, 0)

        def kv_index(b, p, t):  # K, V in pass 0 only: parked on the last tile in pass 1
            return (b, t + p * (tiles - 1 - t), 0)

        kernel = functools.partial(_noncausal_forward_kernel, feature_map=feature_map, eps=eps, length=length)
        in_specs = _row_specs(rows, (d,), q_index) + _row_specs(rows, (d, dv), kv_index)
        o, den = pallas_tpu_call(
            kernel,
            grid=(batch * heads, 2, tiles),
            in_specs=in_specs,
            out_specs=_row_specs(rows, (dv, 1), q_index),
            out_shape=out_shape,
            scratch=scratch,
            interpret=interpret,
            semantics=("parallel", "arbitrary", "arbitrary"),
        )(q2, k2, v2)
    return (o[:, :length].reshape(batch, heads, length, dv), den[:, :length, 0].reshape(batch, heads, length))


def pallas_backward(q, k, v, g, h, causal, feature_map, blocks, interpret):
    batch, heads, length, d = q.shape
    dv = v.shape[-1]
    rows = blocks.tile(length, q.dtype, causal)
    padded = -(-length // rows) * rows
    tiles = padded // rows
    inputs = [flat_padded(x, padded) for x in (q, k, v, g.astype(q.dtype), h[..., None])]
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
        (dq,) = pallas_tpu_call(
            dq_kernel,
            grid=(batch * heads, tiles),
            in_specs=_row_specs(rows, widths, forward_index),
            out_specs=_row_specs(rows, widths_of("q"), forward_index),
            out_shape=outputs("q"),
            scratch=[(d, dv), (1, d)],
            interpret=interpret,
            semantics=semantics,
        )(*inputs)
        dkv_kernel = functools.partial(_causal_dkv_kernel, feature_map=feature_map)
        dk, dv_ = pallas_tpu_call(
            dkv_kernel,
            grid=(batch * heads, tiles),
            in_specs=_row_specs(rows, widths, reverse_index),
            out_specs=_row_specs(rows, widths_of("k", "v"), reverse_index),
            out_shape=outputs("k", "v"),
            scratch=[(d, dv), (1, d)],
            interpret=interpret,
            semantics=semantics,
        )(*inputs)
    else:

        def in_index(b, p, t):
            return (b, t, 0)

        def out_index(b, p, t):  # written in pass 1 only
            return (b, t * p, 0)

        kernel = functools.partial(_noncausal_backward_kernel, feature_map=feature_map, length=length)
        dq, dk, dv_ = pallas_tpu_call(
            kernel,
            grid=(batch * heads, 2, tiles),
            in_specs=_row_specs(rows, widths, in_index),
            out_specs=_row_specs(rows, widths_of("q", "k", "v"), out_index),
            out_shape=outputs("q", "k", "v"),
            scratch=[(d, dv), (1, d), (d, dv), (1, d)],
            interpret=interpret,
            semantics=("parallel", "arbitrary", "arbitrary"),
        )(*inputs)
    return tuple(x[:, :length].reshape(batch, heads, length, x.shape[-1]) for x in (dq, dk, dv_))


@functools.cache
def pallas_op(causal: bool, feature_map: str, eps: float, blocks: LinearAttentionBlocks, interpret: bool):
    """impl="pallas" on TPU (or interpreted) for one static configuration: these kernels forward and backward."""
    return attention_op(
        lambda q, k, v: pallas_forward(q, k, v, causal, feature_map, eps, blocks, interpret),
        lambda q, k, v, g, h: pallas_backward(q, k, v, g, h, causal, feature_map, blocks, interpret),
        feature_map != "identity",
    )
