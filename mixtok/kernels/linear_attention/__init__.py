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

Implementations (`impl=`, the names of `mixtok.kernels.dispatch`):
- "reference": the definition as a masked L x L einsum, differentiated by JAX (reference.py);
  O(L^2) memory, for checking rather than training.
- "xla": the state form in einsums, causal in chunks of `blocks.chunk`, with a hand-written VJP
  (xla.py).
- "pallas": on TPU (and in Pallas's interpreter with `interpret=True`, on any backend) the
  `pl.pallas_call` kernels of pallas_tpu.py, forward and backward; on GPU the Mosaic GPU forward
  kernels of mosaic_gpu.py (bf16, d in {64, 128}, dv a multiple of 64) with the "xla" backward.
- "auto": "xla" on every backend for now. On CPU Pallas runs only in its slow interpreter; on TPU
  the kernels pass Mosaic TPU's lowering but have not been compiled or run on a TPU; on GPU the
  Mosaic GPU kernels pass the lowering (`jax.export(..., platforms=["cuda"])`) and the interpreter
  but have not been compiled to PTX or run. None was available, so "auto" does not pick them yet.

Precision: float32 inputs run float32 GEMMs at HIGHEST precision; bfloat16 inputs run bf16 GEMM
operands (features, scores, and the state when it multiplies Q) with float32 accumulation, and the
states, normaliser and division are float32. The output has v's dtype.
"""

import jax

from mixtok.kernels import dispatch
from mixtok.kernels.linear_attention.pallas_tpu import DEFAULT_BLOCKS, LinearAttentionBlocks, pallas_op
from mixtok.kernels.linear_attention.reference import (
    DEFAULT_EPS,
    FEATURE_MAPS,
    check_inputs,
    linear_attention_reference,
)
from mixtok.kernels.linear_attention.xla import xla_op

IMPLS = dispatch.IMPLS

__all__ = [
    "DEFAULT_BLOCKS",
    "DEFAULT_EPS",
    "FEATURE_MAPS",
    "IMPLS",
    "LinearAttentionBlocks",
    "linear_attention",
    "linear_attention_reference",
    "resolve_impl",
]


def resolve_impl(impl: str) -> str:
    """The implementation `impl` stands for on this backend ("auto" -> "xla" everywhere for now)."""
    # CPU: the interpreter is slow; GPU: no compiled Mosaic GPU kernel; TPU: the Mosaic lowering is unrun.
    return dispatch.resolve_impl("linear_attention", impl, lambda backend: "xla")


def linear_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool = False,
    feature_map: str = "elu1",
    eps: float = DEFAULT_EPS,
    impl: str = "auto",
    interpret: bool = False,
    blocks: LinearAttentionBlocks = DEFAULT_BLOCKS,
) -> jax.Array:
    """Linear attention of q [B, heads, L, d], k [B, heads, L, d] and v [B, heads, L, dv] -> [B, heads, L, dv].

    causal: output i attends to j <= i. feature_map: "elu1", "relu" (both normalised, eps added to
    the denominator) or "identity" (no normaliser). impl: "auto", "reference", "xla" or "pallas"
    (module docstring). interpret: runs the Pallas kernels in Pallas's interpreter (CPU tests); only
    used by impl="pallas". blocks: the Pallas kernels' tile sizes and the causal chunk of "xla".
    Inputs are float32 or bfloat16, all of one dtype; the output has that dtype.
    """
    check_inputs(q, k, v, feature_map)
    name = resolve_impl(impl)
    if not isinstance(blocks, LinearAttentionBlocks):
        raise ValueError(f"blocks must be a LinearAttentionBlocks; got {type(blocks).__name__}.")
    causal, eps = bool(causal), float(eps)
    if name == "reference":
        return linear_attention_reference(q, k, v, causal=causal, feature_map=feature_map, eps=eps)
    if name == "xla":
        return xla_op(causal, feature_map, eps, blocks.chunk)(q, k, v)
    if dispatch.pallas_target("linear_attention", interpret) == "mosaic_gpu":
        from mixtok.kernels.linear_attention.mosaic_gpu import check_mgpu_inputs, mosaic_gpu_op  # noqa: PLC0415

        check_mgpu_inputs(q, k, v, feature_map)
        return mosaic_gpu_op(causal, feature_map, eps, blocks.chunk)(q, k, v)
    return pallas_op(causal, feature_map, eps, blocks, bool(interpret))(q, k, v)
