"""Forward linear attention as Mosaic GPU kernels (Hopper wgmma): the GPU forward of impl="pallas".

    o, den = linear_attention_mgpu_forward(q, k, v, causal=False, feature_map="elu1", eps=1e-6)
    op = mosaic_gpu_op(causal, feature_map, eps, chunk=64)   # the op: this forward, the "xla" backward

computes what `pallas_tpu.pallas_forward` (and `xla.xla_forward`) return for
bfloat16 q, k [B, heads, L, d] and v [B, heads, L, dv]: o [B, heads, L, dv] bfloat16 and
den [B, heads, L] float32 (phi(Q_i) . z_i + eps; ones for feature_map="identity", whose normaliser
is off), so it can stand in for `pallas_forward` as the forward of the op's custom VJP. The
backward stays the "xla" one (`xla.xla_backward`, in `mosaic_gpu_op`): no backward kernel is
written here. The maths is reference.py's: phi = elu(x) + 1 ("elu1"),
relu, or identity; eps added to the denominator; no 1/sqrt(d) scale.

STATUS: checked on CPU only, no GPU was available. (1) The kernels run in the Mosaic GPU CPU
interpreter of jax 0.10.2 (private `jax._src.pallas.mosaic_gpu.interpret`) and match
`linear_attention_reference`; the test adds the interpreter's missing rule for wgmma operands made
with `plgpu.transpose_ref`. (2) Pallas's Mosaic GPU lowering accepts them: `jax.export(...,
platforms=["cuda"])` on a CPU machine produces the `mosaic_gpu_v2` custom call for both kernels,
every feature map and d in {64, 128} (tests/kernels/test_linear_attention_mosaic_gpu.py). They have NOT
been through the rest of the compilation (Mosaic GPU's MLIR passes, ptxas), run or timed on a GPU.

Backend. Mosaic GPU through `plgpu.kernel` (jax.experimental.pallas.mosaic_gpu), the GPU path of
current JAX: Pallas's Triton lowering is deprecated since JAX 0.11 (docs/facts/kernels.md, "Pallas on
GPU: backends"), and
`pl.pallas_call` on Mosaic GPU is deprecated too and cannot lower `jnp.dot`, so the portable kernels
of pallas_tpu.py do not run on a GPU. Here every product is a `plgpu.wgmma` on SMEM operands
with float32 register accumulators; Q, K, V tiles come in by TMA tracked by barriers; outputs leave
by TMA stores.

Layout. [B, heads, L, d] is flattened to [B*H, Lp, d], Lp = L rounded up to the 64-row tile (the
wrapper zero-pads; padded output rows are sliced away). Grid (B*H, dv/64): one warpgroup per
(batch*head, 64-column block of V and O), so every accumulator is [64, 64] fp32 (32 registers a
thread). With dv = 64, Q, K and V are read once; with dv = 128, Q and K are read once per value block.

Algorithm (tiles of 64 rows; phi computed in fp32 registers from the bf16 tile and written back over
it in SMEM in bf16 as the GEMM operand, as the bf16 reference rounds its GEMM operands):
- non-causal (FBLA's fused form, docs/facts/kernels.md, "FBLA (non-causal)"): pass 1 over the L tiles t:
  S += phi(K_t)^T V_t (A = the transposed phi(K) tile in 64-row chunks of d, K = 64, N = 64) and
  Zrow += ONES phi(K_t) (A = a [64, 64] ones tile, B = phi(K_t)): every row of Zrow is the key
  normaliser z = sum_j phi(K_j), in fp32, so the denominator needs no column reduction and no
  vector broadcast across rows, only a row sum: den = rowsum(phi(Q_t) * Zrow) + eps. Padded keys
  (zero rows of K and V) add phi(0)^T 0 = 0 to S; for z the last tile uses a ones tile whose
  padded-key columns are zero. S is then stored in SMEM in bf16, and pass 2 over the tiles computes
  O_t = (phi(Q_t) S) / den. The first Q tiles are prefetched during pass 1.
- causal (FLA's chunk form with the state on chip, docs/facts/kernels.md, "FLA (causal chunked linear
  attention)" `fused_chunk`, chunk 64): one
  sequential loop over chunks c: P = MASK * (phi(Q_c) phi(K_c)^T) (B = the transposed phi(K) tile),
  O_c = (P V_c + phi(Q_c) S_<c) / (rowsum(P) + rowsum(phi(Q_c) * Zrow_<c) + eps), then
  S += phi(K_c)^T V_c and Zrow += ONES phi(K_c). S_<c is carried in fp32 and rounded to a bf16 SMEM
  copy for the next chunk's GEMM (the reference rounds its fp32 exclusive cumsum likewise). Padded
  keys come after every real query: the causal mask already keeps them out.
- The ones tiles and the causal 0/1 mask are constants TMA'd from HBM (`_constant_tiles`): Mosaic GPU
  cannot store a splat into swizzled SMEM, and an iota needs a `plgpu.layout_cast`, which the
  interpreter of jax 0.10.2 cannot run.
- ACC regions (`pl.run_scoped(..., plgpu.ACC)`) hold only wgmmas: Mosaic GPU discharges their state,
  and barrier waits and TMA copies have no discharge rule. So S and Zrow are loop carries (fp32
  values in the WGMMA layout) and each tile's products go into fresh accumulators that are added to
  them (`pl.run_state` with `plgpu.ACC.init` would accumulate in place, as attention_mgpu.py does,
  but the interpreter cannot run it).
- The L loop is a `fori_loop` over pairs of tiles, so the two TMA ring slots have static indices
  (the interpreter rejects dynamic indices in register loads/stores); an odd last tile runs after
  it. Each slot's barrier is reused, its phase alternating.

Supported: bfloat16 only (float32 would need tf32 wgmma, which takes no transposed operand, and
S = phi(K)^T V needs one: use impl="xla"); d in {64, 128} (wgmma M chunks and K steps of 64 with the
128-byte swizzle; d = 256 would carry 128 registers a thread for S and as many for Zrow, d = 32 would
need zero-padded features: neither is done); dv any multiple of 64 (value blocks of 64); any L >= 1.

SMEM per program (bf16; 2-slot input rings; `smem_bytes` computes it; limit 227 KiB):
    Q, K rings 2 x 2 x [64, d] + V ring 2 x [64, 64] + S [d, 64] + constants 3 x [64, 64]
    + O staging [64, 64] (+ P [64, 64], causal) + den [64] f32 + 7 barriers.
    d = 64:  88 KiB non-causal, 96 KiB causal.   d = 128: 128 KiB non-causal, 136 KiB causal.
Registers a thread (estimate, not checked against the real allocator): the carries S and Zrow take
32 each per 64 of d (128 at d = 128), plus a fresh [64, 64] accumulator (32) while a tile is added,
plus phi pieces, P and O (32 each) in the causal loop: ~130 at d = 64, ~230 at d = 128, where
spills are likely. Zrow keeps z in all 64 rows (32 registers per 64 of d for a d-vector); a
row-broadcast vector layout would cost almost nothing but needs `layout_cast`.

What the interpreter checks, and what it cannot: it runs TMA copies (in bounds), barrier waits,
wgmma as fp32 matmuls of the operand refs, SMEM loads/stores (scratch starts as NaN, so reading an
unwritten slot shows up as NaN in the output), TMA stores, `pl.when` and the loops; its race
detector finds none (it does not track wgmma or TMA stores). It cannot check async ordering (wgmma
and TMA stores run synchronously there: a missing wgmma_wait / commit_smem / wait_smem_to_gmem would
not show), register pressure, SMEM capacity or speed; the export checks the lowering only.

Not done: a backward kernel (the backward is the existing XLA one); packing several heads into one
program for short sequences (L <= 196 wastes most of a 64-row tile); warp
specialisation (a producer warpgroup for TMA and two consumer warpgroups, as attention_mgpu.py):
one warpgroup issues the TMAs, the wgmmas and the feature maths, and every wgmma group is waited on
at once; reading Q and K once for dv > 64; the FLA two-kernel split when B*H is too small to fill
132 SMs; TMA out-of-bounds reads (zero-filled on hardware) instead of the wrapper's zero-padded
copies of q, k, v when L % 64 != 0 (the interpreter raises on out-of-bounds copies).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from mixtok.kernels.dispatch import check_compiles_for_gpu
from mixtok.kernels.linear_attention.reference import DEFAULT_EPS, check_inputs, features, flat_padded
from mixtok.kernels.linear_attention.xla import attention_op, xla_backward
from mixtok.kernels.mosaic_gpu_common import BF16_TRANSFORMS, interpret_params, static_interpret
from mixtok.kernels.mosaic_gpu_common import WGMMA_ROWS as ROWS

VALUE_BLOCK = 64  # columns of V and O per program: one 128-byte swizzle row of bf16
SLOTS = 2  # depth of the TMA input rings
HEAD_DIMS = (64, 128)
ALL_ONES, LAST_TILE_ONES, CAUSAL_MASK = 0, 1, 2  # the tiles of `_constant_tiles`


def smem_bytes(head_dim: int, causal: bool) -> int:
    """SMEM one program uses (module docstring), in bytes."""
    tile = ROWS * VALUE_BLOCK * 2
    rings = SLOTS * (2 * ROWS * head_dim * 2 + tile)
    fixed = head_dim * VALUE_BLOCK * 2 + 3 * tile + tile + (tile if causal else 0)  # S, constants, O, P
    return rings + fixed + ROWS * 4 + (3 * SLOTS + 1) * 8


def check_mgpu_inputs(q, k, v, feature_map: str) -> None:
    """linear_attention's checks, then the kernel's own: bfloat16, d in HEAD_DIMS, dv % 64 == 0."""
    check_inputs(q, k, v, feature_map)
    if q.dtype != jnp.bfloat16:
        raise ValueError(
            f"linear_attention_mgpu_forward takes bfloat16 q, k, v (bf16 wgmma; tf32 wgmma has no "
            f"transposed operand); got {q.dtype}. Use impl='xla' for float32."
        )
    if q.shape[-1] not in HEAD_DIMS:
        raise ValueError(
            f"linear_attention_mgpu_forward takes head dim d (last axis of q, k) in {HEAD_DIMS}; "
            f"got d = {q.shape[-1]}. Use impl='xla' for other head dims."
        )
    if q.shape[2] < 1:
        raise ValueError(f"linear_attention_mgpu_forward needs a sequence length L >= 1; got q of shape {q.shape}.")
    if v.shape[-1] % VALUE_BLOCK:
        raise ValueError(
            f"linear_attention_mgpu_forward takes a value dim dv (last axis of v) that is a multiple "
            f"of {VALUE_BLOCK} (64, 128, 192, 256, ...); got dv = {v.shape[-1]}. Use impl='xla'."
        )


# --------------------------------------------------------------------------------------------------
# Kernel pieces shared by both bodies. Accumulators live in `run_scoped` ACC regions that hold only
# wgmmas (Mosaic GPU discharges an ACC region's state, and barriers/TMA have no discharge rule);
# running sums (S, Zrow) are carried through the L loop as fp32 register values instead.


def _columns(m):
    return pl.ds(ROWS * m, ROWS)


def _zeros():
    """A [64, 64] fp32 zero in the WGMMA layout (a fresh accumulator), to start loop carries with."""
    return pl.run_scoped(lambda acc: acc[...], plgpu.ACC((ROWS, ROWS), jnp.float32))


def _gemm(*operand_pairs, columns=ROWS):
    """sum_i a_i @ b_i into a fresh [64, columns] fp32 accumulator, returned as a value."""

    def body(acc):
        for a, b in operand_pairs:
            plgpu.wgmma(acc, a, b)
        plgpu.wgmma_wait(0)
        return acc[...]

    return pl.run_scoped(body, plgpu.ACC((ROWS, columns), jnp.float32))


def _for_each_tile(n_tiles, step, carry):
    """carry = step(t, slot, carry) for t = 0 .. n_tiles - 1 in order, slot = t % SLOTS as a Python
    int (static SMEM indices): a fori_loop over pairs of tiles, then the odd last tile. t is traced."""

    def pair(i, carry):
        for slot in range(SLOTS):
            carry = step(SLOTS * i + slot, slot, carry)
        return carry

    if n_tiles // SLOTS:
        carry = jax.lax.fori_loop(0, n_tiles // SLOTS, pair, carry)
    if n_tiles % SLOTS:
        carry = step(jnp.int32(n_tiles - 1), 0, carry)
    return carry


def _features_in_place(tile_smem, head_dim, feature_map):
    """phi of a bf16 [64, d] SMEM tile, written back over it in bf16, 64 columns at a time; returns the
    fp32 pieces."""
    pieces = []
    for m in range(head_dim // ROWS):
        piece = features(tile_smem[:, _columns(m)], feature_map)
        tile_smem[:, _columns(m)] = piece.astype(tile_smem.dtype)
        pieces.append(piece)
    return pieces


def _updated_state(state, norm, features_smem, values_smem, ones_smem):
    """(S + phi(K)^T V, Zrow + ones phi(K)): S as d/64 row chunks [64, 64], Zrow as d/64 column chunks
    (empty without the normaliser), one 64-chunk of each per accumulator region. ones_smem: an
    all-ones [64, 64] tile, or one whose columns of padded keys are zero."""
    new_state, new_norm = [], []
    for m in range(len(state)):
        chunk = features_smem.at[:, _columns(m)]
        new_state.append(state[m] + _gemm((plgpu.transpose_ref(chunk, (1, 0)), values_smem)))
        if norm:
            new_norm.append(norm[m] + _gemm((ones_smem, chunk)))
    return tuple(new_state), tuple(new_norm)


def _store_state(state, state_smem):
    for m, chunk in enumerate(state):
        state_smem[_columns(m), :] = chunk.astype(state_smem.dtype)


def _constant_tiles(length: int) -> np.ndarray:
    """[3, 64, 64] bf16 constants for the GEMMs and masks: ALL_ONES; LAST_TILE_ONES, ones in the columns
    of the last L tile's real keys (all ones when L % 64 == 0); CAUSAL_MASK, 1 where column <= row.
    They come in by TMA: Mosaic GPU stores no splat into swizzled SMEM, and an iota needs a layout_cast
    that the interpreter of jax 0.10.2 cannot run."""
    tiles = np.ones((3, ROWS, ROWS), np.float32)
    if length % ROWS:
        tiles[LAST_TILE_ONES, :, length % ROWS :] = 0.0
    tiles[CAUSAL_MASK] = np.tril(tiles[CAUSAL_MASK])
    return tiles


def _load_constants(constants_gmem, constants_smem, constants_bar):
    plgpu.copy_gmem_to_smem(constants_gmem, constants_smem, constants_bar.at[0])
    plgpu.barrier_wait(constants_bar.at[0])


def _query_dot_norm(query_pieces, norm):
    """phi(Q) . z per row: rowsum(phi(Q) * Zrow) over the 64-column pieces, fp32."""
    return sum(jnp.sum(piece * chunk, axis=-1) for piece, chunk in zip(query_pieces, norm))


def _store_output(out, den, o_smem, den_smem, o_gmem, den_gmem, bh, value_block, t):
    """Stages one 64-row output tile (and den, from value block 0 only) and TMA-stores it."""
    plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # the previous tile's stores have read the staging
    o_smem[...] = out.astype(o_smem.dtype)
    if den is not None:
        den_smem[...] = den
    plgpu.commit_smem()
    rows = pl.ds(t * ROWS, ROWS)
    plgpu.copy_smem_to_gmem(o_smem, o_gmem.at[bh, rows, pl.ds(value_block * VALUE_BLOCK, VALUE_BLOCK)])
    if den is not None:

        @pl.when(value_block == 0)
        def _():
            plgpu.copy_smem_to_gmem(den_smem, den_gmem.at[bh, rows])


# --------------------------------------------------------------------------------------------------
# Kernel bodies; refs: inputs (q, k, v, `_constant_tiles`), outputs (o, and den when normalised), then the scratch
# of `_scratch`.


def _noncausal_body(*refs, head_dim, n_tiles, length, feature_map, eps):
    normalize = feature_map != "identity"
    q_gmem, k_gmem, v_gmem, constants_gmem, o_gmem, *refs = refs
    den_gmem = refs.pop(0) if normalize else None
    q_smem, k_smem, v_smem, s_smem, constants_smem, o_smem, den_smem, q_bars, k_bars, v_bars, constants_bar = refs
    bh, value_block = jax.lax.axis_index("bh"), jax.lax.axis_index("value_block")
    values = pl.ds(value_block * VALUE_BLOCK, VALUE_BLOCK)
    d_chunks = head_dim // ROWS

    def load_q(t, slot):
        plgpu.copy_gmem_to_smem(q_gmem.at[bh, pl.ds(t * ROWS, ROWS)], q_smem.at[slot], q_bars.at[slot])

    def load_kv(t, slot):
        rows = pl.ds(t * ROWS, ROWS)
        plgpu.copy_gmem_to_smem(k_gmem.at[bh, rows], k_smem.at[slot], k_bars.at[slot])
        plgpu.copy_gmem_to_smem(v_gmem.at[bh, rows, values], v_smem.at[slot], v_bars.at[slot])

    for t in range(min(SLOTS, n_tiles)):
        load_kv(t, t)
        load_q(t, t)  # prefetched during pass 1
    _load_constants(constants_gmem, constants_smem, constants_bar)

    def accumulate(t, slot, carry):
        plgpu.barrier_wait(k_bars.at[slot])
        plgpu.barrier_wait(v_bars.at[slot])
        _features_in_place(k_smem.at[slot], head_dim, feature_map)
        plgpu.commit_smem()
        # Padded keys (zero rows of K and V) add phi(0)^T 0 = 0 to S; the last tile's ones tile drops them from z.
        ones = constants_smem.at[jnp.where(t == n_tiles - 1, LAST_TILE_ONES, ALL_ONES)]
        carry = _updated_state(*carry, k_smem.at[slot], v_smem.at[slot], ones)  # waits: the slot is free

        @pl.when(t + SLOTS < n_tiles)
        def _():
            load_kv(t + SLOTS, slot)

        return carry

    zeros = tuple(_zeros() for _ in range(d_chunks))
    state, norm = _for_each_tile(n_tiles, accumulate, (zeros, zeros if normalize else ()))
    _store_state(state, s_smem)
    plgpu.commit_smem()

    def output(t, slot, carry):
        plgpu.barrier_wait(q_bars.at[slot])
        query_pieces = _features_in_place(q_smem.at[slot], head_dim, feature_map)
        plgpu.commit_smem()
        num = _gemm((q_smem.at[slot], s_smem))

        @pl.when(t + SLOTS < n_tiles)
        def _():
            load_q(t + SLOTS, slot)

        den = None
        if normalize:
            den = _query_dot_norm(query_pieces, norm) + eps
            num = num / jax.lax.broadcast_in_dim(den, num.shape, (0,))
        _store_output(num, den, o_smem, den_smem, o_gmem, den_gmem, bh, value_block, t)
        return carry

    _for_each_tile(n_tiles, output, ())
    plgpu.wait_smem_to_gmem(0)


def _causal_body(*refs, head_dim, n_tiles, feature_map, eps):
    normalize = feature_map != "identity"
    q_gmem, k_gmem, v_gmem, constants_gmem, o_gmem, *refs = refs
    den_gmem = refs.pop(0) if normalize else None
    (
        q_smem,
        k_smem,
        v_smem,
        s_smem,
        constants_smem,
        o_smem,
        den_smem,
        p_smem,
        q_bars,
        k_bars,
        v_bars,
        constants_bar,
    ) = refs
    bh, value_block = jax.lax.axis_index("bh"), jax.lax.axis_index("value_block")
    values = pl.ds(value_block * VALUE_BLOCK, VALUE_BLOCK)
    d_chunks = head_dim // ROWS

    def load(t, slot):
        rows = pl.ds(t * ROWS, ROWS)
        plgpu.copy_gmem_to_smem(q_gmem.at[bh, rows], q_smem.at[slot], q_bars.at[slot])
        plgpu.copy_gmem_to_smem(k_gmem.at[bh, rows], k_smem.at[slot], k_bars.at[slot])
        plgpu.copy_gmem_to_smem(v_gmem.at[bh, rows, values], v_smem.at[slot], v_bars.at[slot])

    for t in range(min(SLOTS, n_tiles)):
        load(t, t)
    _load_constants(constants_gmem, constants_smem, constants_bar)
    zeros = tuple(_zeros() for _ in range(d_chunks))
    _store_state(zeros, s_smem)  # S_<0 = 0
    plgpu.commit_smem()

    def chunk(t, slot, carry):
        state, norm = carry  # S_<c (also in s_smem, bf16) and Zrow_<c
        plgpu.barrier_wait(q_bars.at[slot])
        plgpu.barrier_wait(k_bars.at[slot])
        plgpu.barrier_wait(v_bars.at[slot])
        query_pieces = _features_in_place(q_smem.at[slot], head_dim, feature_map)
        den = _query_dot_norm(query_pieces, norm) if normalize else None
        del query_pieces
        _features_in_place(k_smem.at[slot], head_dim, feature_map)
        plgpu.commit_smem()
        p = _gemm((q_smem.at[slot], plgpu.transpose_ref(k_smem.at[slot], (1, 0))))
        p = p * constants_smem[CAUSAL_MASK].astype(jnp.float32)
        p_smem[...] = p.astype(p_smem.dtype)
        plgpu.commit_smem()
        num = _gemm((p_smem, v_smem.at[slot]), (q_smem.at[slot], s_smem))
        if normalize:
            den = den + jnp.sum(p, axis=-1) + eps
            num = num / jax.lax.broadcast_in_dim(den, num.shape, (0,))
        # Padded keys come after every real query: the causal mask keeps them out, no key mask needed.
        state, norm = _updated_state(state, norm, k_smem.at[slot], v_smem.at[slot], constants_smem.at[ALL_ONES])

        @pl.when(t + SLOTS < n_tiles)
        def _():
            load(t + SLOTS, slot)

        _store_state(state, s_smem)  # the numerator GEMM has finished reading S_<c
        _store_output(num, den, o_smem, den_smem, o_gmem, den_gmem, bh, value_block, t)
        return state, norm

    _for_each_tile(n_tiles, chunk, (zeros, zeros if normalize else ()))
    plgpu.wait_smem_to_gmem(0)


# --------------------------------------------------------------------------------------------------
# Host side.


def _scratch(head_dim, dtype, causal):
    def smem(*shape):
        return plgpu.SMEM(shape, dtype, transforms=BF16_TRANSFORMS)

    scratch = [
        smem(SLOTS, ROWS, head_dim),
        smem(SLOTS, ROWS, head_dim),
        smem(SLOTS, ROWS, VALUE_BLOCK),
        smem(head_dim, VALUE_BLOCK),
        smem(3, ROWS, ROWS),
        smem(ROWS, VALUE_BLOCK),
        plgpu.SMEM((ROWS,), jnp.float32),
    ]
    if causal:
        scratch.append(smem(ROWS, ROWS))
    return scratch + [plgpu.Barrier(num_barriers=SLOTS) for _ in range(3)] + [plgpu.Barrier(num_barriers=1)]


@functools.partial(jax.jit, static_argnames=("causal", "feature_map", "eps", "interpret"))
def _forward(q, k, v, *, causal, feature_map, eps, interpret):
    batch, heads, length, head_dim = q.shape
    value_dim = v.shape[-1]
    padded = -(-length // ROWS) * ROWS
    n_tiles = padded // ROWS
    normalize = feature_map != "identity"
    q2, k2, v2 = (flat_padded(x, padded) for x in (q, k, v))
    if causal:
        body = functools.partial(_causal_body, head_dim=head_dim, n_tiles=n_tiles, feature_map=feature_map, eps=eps)
    else:
        body = functools.partial(
            _noncausal_body, head_dim=head_dim, n_tiles=n_tiles, length=length, feature_map=feature_map, eps=eps
        )
    out_type = [jax.ShapeDtypeStruct((batch * heads, padded, value_dim), v.dtype)]
    if normalize:
        out_type.append(jax.ShapeDtypeStruct((batch * heads, padded), jnp.float32))
    outputs = plgpu.kernel(
        body,
        out_type=tuple(out_type),
        grid=(batch * heads, value_dim // VALUE_BLOCK),
        grid_names=("bh", "value_block"),
        scratch_types=_scratch(head_dim, q.dtype, causal),
        interpret=interpret_params(interpret, "linear_attention_mgpu_forward"),
    )(q2, k2, v2, jnp.asarray(_constant_tiles(length), q.dtype))
    o = outputs[0][:, :length].reshape(batch, heads, length, value_dim)
    if not normalize:
        return o, jnp.ones((batch, heads, length), jnp.float32)
    return o, outputs[1][:, :length].reshape(batch, heads, length)


def linear_attention_mgpu_forward(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool,
    feature_map: str,
    eps: float = DEFAULT_EPS,
    interpret=False,
) -> tuple:
    """(o, den) of linear attention with Mosaic GPU kernels: the drop-in for `pallas_forward` on GPU.

    q, k: [B, heads, L, d] bfloat16, d in (64, 128); v: [B, heads, L, dv] bfloat16, dv a multiple of 64.
    causal: output i sums over j <= i. feature_map: "elu1", "relu" or "identity" (normaliser off).
    eps: added to the denominator. interpret: True runs the kernels in the Mosaic GPU CPU
    interpreter (private JAX API; a RuntimeError says so if this JAX lacks it), or pass an
    `InterpretGPUParams` (e.g. detect_races=True); differentiate an interpreted op under `jax.jit`,
    since the interpreter's io_callbacks run eager JAX ops that can deadlock against an eager grad's
    backward ops on a small CPU (seen on 2 cores). Returns o [B, heads, L, dv] bfloat16 and
    den [B, heads, L] float32 (phi(Q_i) . z_i + eps; ones for "identity"), as `pallas_forward`.
    Compiled (interpret=False) it needs an sm_90 GPU and has never run on one (module docstring).
    """
    check_mgpu_inputs(q, k, v, feature_map)
    check_compiles_for_gpu("linear_attention_mgpu_forward", interpret)
    interpret = static_interpret(interpret, "linear_attention_mgpu_forward")
    return _forward(q, k, v, causal=bool(causal), feature_map=feature_map, eps=float(eps), interpret=interpret)


@functools.cache
def mosaic_gpu_op(causal: bool, feature_map: str, eps: float, chunk: int, interpret=False):
    """impl="pallas" on a GPU for one static configuration: these forward kernels, the "xla" backward.

    chunk: the causal chunk of the "xla" backward. `interpret=True` runs the kernels in the Mosaic GPU
    CPU interpreter; differentiate the op under `jax.jit` then (`linear_attention_mgpu_forward`).
    """
    return attention_op(
        lambda q, k, v: linear_attention_mgpu_forward(
            q, k, v, causal=causal, feature_map=feature_map, eps=eps, interpret=interpret
        ),
        lambda q, k, v, g, h: xla_backward(q, k, v, g, h, causal, feature_map, chunk),
        feature_map != "identity",
    )
