"""The spectral filter's forward pass as one fused Mosaic GPU kernel (Hopper wgmma): impl="pallas" on GPU.

    filt_real, filt_imag = fold_filter(filt, W)   # complex [(B,) H, W//2+1, C] -> 2 x f32 [(B,) H*Wf, C]
    y = spectral_filter_forward_mgpu(x, filt_real, filt_imag, block_channels=64, interpret=False)
    op = mosaic_gpu_op(64)                        # the op: this forward, the "xla" form's gradient

computes y = irfft2(rfft2(x, ortho) * filt, s=(H, W), ortho) for bf16 NHWC x, the forward pass of
`mixtok.kernels.spectral_filter(..., impl="pallas")` on GPU, ported from the `pl.pallas_call`
kernel of pallas_tpu.py (which Mosaic GPU cannot lower: no `jnp.dot`) to `plgpu.kernel` with
`plgpu.wgmma` on SMEM operands, TMA copies tracked by barriers and TMA stores (docs/facts/kernels.md,
"Spectral filter: DFT-as-GEMM, one fused pass"). Forward only: `mosaic_gpu_op` differentiates it
with the "xla" form's gradient, the backward kernel is not ported.

STATUS: validated only in the Mosaic GPU CPU interpreter of jax 0.10.2
(`jax._src.pallas.mosaic_gpu.interpret`, `interpret=True`). It has NOT been compiled by Mosaic GPU
or run or timed on a GPU; see "Known risks" below before relying on it. That is why
spectral_filter(impl="auto") does not pick it.

Contract
- x: [B, H, W, C] bfloat16 (float32 and float16 inputs are rejected: see Precision).
- filt_real, filt_imag: float32, [H*Wf, C] (one filter for the batch) or [B, H*Wf, C] (per sample),
  Wf = W//2 + 1, rows ordered (p, k) = row-major flattening of the [H, Wf] half spectrum, and
  with the Hermitian weights ALREADY FOLDED IN: filt_real + i filt_imag = m_k * filt[p, k, c],
  m_k = 1 at k = 0 and at k = W/2 (even W), else 2 (`mixtok.kernels.dft.half_spectrum_weights`).
  `fold_filter` builds them from the complex filter of `spectral_filter`.
- Returns [B, H, W, C] in x's dtype. C must be a multiple of block_channels (64 or 128), H*W >= 8
  and H*Wf >= 8 (the 8-row TMA granularity, below).

Algorithm, per CTA = one (sample b, channel block of Cb channels); grid (B, C/Cb), one warpgroup.
With F the real Kronecker DFT matrix [2*H*Wf, H*W] of `dft.split_kronecker_matrices` (real
rows, then imaginary rows, 'ortho' scale) and w = m * filt:
  1. TMA X = x[b, :, c-block] ([H*W, Cb] bf16, contiguous rows of NHWC) into SMEM once.
  2. For each 64-frequency chunk j: Zr = Fr_j X and Zi = Fi_j X with wgmma (A = the [64, Kx] chunk
     of the real or imaginary rows of F, streamed through an SMEM ring; B = X; fp32 accumulators),
     then on the accumulators in registers Ur = Zr wr - Zi wi, Ui = Zr wi + Zi wr (w chunk TMA'd
     to SMEM in f32 and loaded in the WGMMA layout), stored to SMEM in bf16 as U [2*Hp, Cb].
  3. For each 64-pixel chunk i: Y_i = G_i U with wgmma (G = F^T, its [64, 2*Hp] row chunks streamed
     through the same ring; B = U), cast to bf16, staged in SMEM and TMA-stored to y[b, rows, c-block].
  Channel blocks of 128 run every wgmma as two N = 64 halves sharing the A chunk (each matrix
  chunk read once from L2 per 128 channels) and keep the register footprint of Cb = 64.

wgmma orientation and padding (spatial-as-M, channels as N; docs/facts/kernels.md, "Spectral filter:
DFT-as-GEMM", step 5):
- forward: M = 64-row chunks of Hp = pad64(H*Wf) frequency slots, separately for real and
  imaginary parts (so Zr and Zi of one frequency share an accumulator layout and the complex
  multiply is elementwise in registers); K = Kx = pad64(H*W) pixel slots; N = 64.
- inverse: M = 64-row chunks of My = Kx pixel slots; K = 2*Hp (real slots, then imaginary); N = 64.
- All SMEM operands are bf16 with TilingTransform((8, 64)) + SwizzleTransform(128) (K % 64 == 0 for
  A, N = 64 = one 128-byte swizzle row for B; Mosaic requires equal lhs/rhs swizzles); the f32
  filter chunks use (8, 32) + 128 B swizzle so they load in the WGMMA layout.
- Padding without out-of-bounds TMA and without zero-filling SMEM: an axis of n rows (pixels,
  frequencies) maps onto its padded slots with in-bounds boxes whose row counts are multiples of
  8 (the tiling): 64-row windows starting at min(64 j, n - 64) when n >= 64 (the last window
  overlaps the previous one), or, when n < 64, rows [0, n//8*8) followed by copies of the last 8
  rows. Every SMEM slot therefore holds finite data from the input; slots that repeat a row
  ("duplicates") get zero rows/columns in the host-built padded matrices: F's duplicate-pixel
  columns and duplicate-frequency rows are 0, G's duplicate-frequency columns are 0, so
  Z, U = 0 there and duplicates add nothing (garbage SMEM would not be safe: NaN * 0 = NaN).
  G's rows are the F^T rows of every pixel slot, duplicates included, so a duplicated output row
  is computed twice with identical operands; output stores skip leading duplicates down to the
  8-row tile holding the first new row, so up to 7 rows per image are stored twice with the same
  value (overlapping TMA stores of equal data). At 14x14: pixels 196 -> 256 slots (load windows at
  0, 64, 128, 132; the last chunk stores only y rows 188..195), frequencies 112 -> 128 (windows at
  0, 48); every box lies in bounds of x, filt and y.

Precision: bf16 X, bf16 F/G, fp32 wgmma accumulation, filter multiply in fp32 on the
accumulators, U rounded to bf16 for the second wgmma (the same as impl="pallas"/"xla" for bf16),
y rounded to bf16. Relative error ~2^-8 of max|y| (docs/facts/kernels.md, "Spectral filter:
DFT-as-GEMM"). fp32 inputs are not supported
(tf32 wgmma would need (8, 32) tiles and twice the SMEM: X, U and the matrix chunks do not fit at
14x14); use impl="xla" or "reference" for them.

SMEM per CTA (bytes; `smem_plan` computes it and picks the ring depths; limit 227 KiB):
    X [Kx, Cb] bf16 (reused as the 2 x [64, Cb] output staging after step 2)
  + U [2*Hp, Cb] bf16
  + matrix ring: S slots of [64, max(Kx, 2*Hp)] bf16
  + filter ring: SF slots of 2 x [64, Cb] f32
  + one 8-byte barrier per TMA load (a fresh barrier per copy: no phase bookkeeping).
  14x14, Cb = 64:  32 KiB X + 32 KiB U + 2 x 32 KiB ring + 2 x 32 KiB filter = 192 KiB (S = 2, SF = 2).
  14x14, Cb = 128: 64 KiB X + 64 KiB U + 1 x 32 KiB ring + 1 x 64 KiB filter = 224 KiB (S = 1, SF = 1:
                   single-buffered, 3 KiB below the limit; Cb = 64 is the safer choice at 14x14).
  7x7, Cb = 64: 8 + 16 + 2 x 16 + 1 x 32 = 88 KiB.  13x17 is as 14x14.

What the interpreter checks, and what it cannot
- It executes the kernel body per grid point on CPU with simulated GMEM/SMEM: TMA copies (their
  slices, in-bounds: out-of-bounds reads raise by default), barrier arrive/wait pairing, wgmma as
  a float32 matmul of the operand refs, accumulator reads, SMEM stores and TMA stores. Scratch SMEM
  starts as NaN, so any read of a slot the kernel never wrote poisons the result: the test passing
  means the padding scheme never reads garbage. Matching the FFT reference checks the index
  bookkeeping (windows, matrix permutations, real/imaginary ordering, filter multiply).
- It cannot check: Mosaic's lowering (layout inference, that these tiled/swizzled slices and
  wgmma shapes are accepted), the legality of swizzle/tiling against the hardware layouts (it
  ignores TilingTransform/SwizzleTransform and stores logical arrays), async ordering (wgmma and
  TMA stores run synchronously there: a missing wgmma_wait, commit_smem or wait_smem_to_gmem would
  not show; its race detector, which the tests also run, does not yet track wgmma or TMA stores),
  register pressure, SMEM capacity, bank conflicts or performance.
- jax 0.10.2's interpreter has no rule for `plgpu.layout_cast` and rejects dynamic slices in
  register loads/stores; the kernel needs neither (no zero-filling, dynamic indices only in TMA
  slices), so the interpreted code is the code that would be compiled.

Known risks for a real H100 compilation (untested)
- Cb = 128 at 14x14 uses 224 KiB of SMEM with single-buffered matrix and filter loads; if Mosaic
  reserves SMEM of its own it may not fit (then use Cb = 64).
- One warpgroup issues the TMAs, the wgmmas and the filter math with a shallow ring and waits on
  each wgmma group before reusing a slot: latency is not hidden the way a warp-specialised kernel
  (hopper_matmul_mgpu.py, attention_mgpu.py) would; with ~192 KiB per CTA only one CTA fits per
  SM. Expect it to be slower than its memory bound until it is pipelined and timed.
- Every CTA streams all matrix chunks from L2 (256 KiB at 14x14 per CTA, against ~25 KiB of x and
  y per 64 channels): Cb = 128 halves that ratio; L2 bandwidth may bound the kernel at Cb = 64.
- Registers at Cb = 128: four [64, 64] fp32 accumulators plus two filter tiles live together.
- A operands sliced along K inside a ring slot (only when Kx != 2*Hp, e.g. 7x7) and N-halves of
  B operands rely on tile-aligned slicing of swizzled refs in the wgmma lowering.
- Up to 7 duplicated output rows per image are written by two overlapping TMA stores (of values
  computed from identical operands, so equal unless the tensor core's summation order depended on
  the row position; either value is a correctly rounded result).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from mixtok.kernels import dft
from mixtok.kernels.dispatch import check_compiles_for_gpu
from mixtok.kernels.mosaic_gpu_common import (
    BF16_TRANSFORMS,
    F32_TRANSFORMS,
    SMEM_LIMIT,
    TILE_ROWS,
    interpret_params,
    static_interpret,
)
from mixtok.kernels.mosaic_gpu_common import WGMMA_ROWS as ROWS
from mixtok.kernels.spectral_filter.xla import xla_op

NSUB = 64  # wgmma N per instruction: one 128-byte swizzle row of bf16
MAX_BOX_ROWS = 256  # TMA box dimension limit
BLOCK_CHANNELS = (64, 128)


# --------------------------------------------------------------------------------------------------
# Host side: slot maps, padded matrices and the SMEM plan.


@dataclasses.dataclass(frozen=True)
class _Axis:
    """n input rows laid out on `slots` SMEM rows by in-bounds TMA boxes (module docstring).

    chunks[j]: the boxes (slot, row, count) filling slots [64 j, 64 j + 64); source[s]: the input row
    in slot s; first[s]: whether slot s is the first to hold its row (else a duplicate).
    """

    n: int
    slots: int
    chunks: tuple
    source: np.ndarray
    first: np.ndarray

    def store_boxes(self, j: int) -> list:
        """The boxes of chunk j trimmed of leading duplicate rows down to the 8-row tile that holds
        the first new row (an output store rewrites at most 7 rows); boxes with no new row dropped."""
        boxes = []
        for slot, row, count in self.chunks[j]:
            new = np.flatnonzero(self.first[slot : slot + count])
            if new.size:
                skip = int(new[0]) // TILE_ROWS * TILE_ROWS
                boxes.append((slot + skip, row + skip, count - skip))
        return boxes

    def merged_boxes(self) -> list:
        """The boxes of all chunks, adjacent ones merged up to the TMA box limit (one-shot loads)."""
        merged = []
        for box in (b for chunk in self.chunks for b in chunk):
            if merged:
                slot, row, count = merged[-1]
                if slot + count == box[0] and row + count == box[1] and count + box[2] <= MAX_BOX_ROWS:
                    merged[-1] = (slot, row, count + box[2])
                    continue
            merged.append(box)
        return merged


@functools.cache
def _axis(n: int) -> _Axis:
    if n < TILE_ROWS:
        raise ValueError(f"the Mosaic GPU kernel needs at least {TILE_ROWS} rows per axis (TMA tiles); got {n}")
    if n >= ROWS:
        chunks = tuple(((ROWS * j, min(ROWS * j, n - ROWS), ROWS),) for j in range(-(-n // ROWS)))
    else:
        head = n // TILE_ROWS * TILE_ROWS
        chunk = [(0, 0, head)] + [(s, n - TILE_ROWS, TILE_ROWS) for s in range(head, ROWS, TILE_ROWS)]
        chunks = (tuple(chunk),)
    slots = ROWS * len(chunks)
    source = np.empty(slots, np.int64)
    for slot, row, count in (b for chunk in chunks for b in chunk):
        source[slot : slot + count] = np.arange(row, row + count)
    first = np.zeros(slots, bool)
    first[np.unique(source, return_index=True)[1]] = True
    return _Axis(n, slots, chunks, source, first)


@functools.cache
def _mgpu_matrices(height: int, width: int) -> tuple:
    """(forward [2*Hp, Kx], inverse [Kx, 2*Hp]) float32, F and F^T permuted onto the padded slots.

    forward rows: real parts of the Hp frequency slots, then imaginary parts; columns: pixel slots.
    Duplicate pixel slots (columns) and duplicate frequency slots (rows) are zero. inverse = G:
    row r is F^T at pixel source[r] (duplicates included: every output slot is stored), columns
    as the forward rows, duplicate frequency slots zero.
    """
    forward, _, _ = dft.split_kronecker_matrices(height, width)  # [2*H*Wf, H*W], rows (re: p,k) then (im: p,k)
    half = height * (width // 2 + 1)
    pixels, freqs = _axis(height * width), _axis(half)
    rows = np.concatenate([freqs.source, half + freqs.source])  # [2*Hp]
    row_ok = np.concatenate([freqs.first, freqs.first])[:, None]
    f_pad = np.where(row_ok & pixels.first[None, :], forward[rows][:, pixels.source], 0.0)
    g_pad = np.where(row_ok, forward[rows][:, pixels.source], 0.0).T
    return np.ascontiguousarray(f_pad, np.float32), np.ascontiguousarray(g_pad, np.float32)


@dataclasses.dataclass(frozen=True)
class SmemPlan:
    """SMEM layout of one CTA: sizes (rows) and ring depths, and the bytes they take."""

    pixel_slots: int  # Kx = My
    freq_slots: int  # Hp
    block_channels: int  # Cb
    matrix_slots: int  # S
    filter_slots: int  # SF
    barriers: int

    @property
    def matrix_cols(self) -> int:
        return max(self.pixel_slots, 2 * self.freq_slots)

    def bytes(self) -> dict:
        cb = self.block_channels
        return {
            "x_and_output_staging": self.pixel_slots * cb * 2,
            "spectrum_u": 2 * self.freq_slots * cb * 2,
            "matrix_ring": self.matrix_slots * ROWS * self.matrix_cols * 2,
            "filter_ring": self.filter_slots * 2 * ROWS * cb * 4,
            "barriers": 8 * self.barriers,
        }

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes().values())


def _count_barriers(pixels: _Axis, freqs: _Axis, matrix_steps: int) -> int:
    return len(pixels.merged_boxes()) + 2 * sum(len(chunk) for chunk in freqs.chunks) + matrix_steps


def smem_plan(height: int, width: int, block_channels: int) -> SmemPlan:
    """The deepest rings (matrix S <= 2, filter SF <= 2) whose SMEM fits SMEM_LIMIT; raises if none."""
    pixels, freqs = _axis(height * width), _axis(height * (width // 2 + 1))
    steps = 2 * len(freqs.chunks) + len(pixels.chunks)
    barriers = _count_barriers(pixels, freqs, steps)
    n_freq_chunks = len(freqs.chunks)
    for matrix_slots, filter_slots in ((2, 2), (2, 1), (1, 2), (1, 1)):
        plan = SmemPlan(
            pixels.slots, freqs.slots, block_channels, matrix_slots, min(filter_slots, n_freq_chunks), barriers
        )
        if plan.total_bytes <= SMEM_LIMIT:
            return plan
    raise ValueError(
        f"spectral_filter_forward_mgpu: a {height}x{width} grid with block_channels={block_channels} needs "
        f"{plan.total_bytes} bytes of SMEM even single-buffered ({plan.bytes()}), over the {SMEM_LIMIT}-byte "
        f"limit; use block_channels=64 or impl='xla'."
    )


def fold_filter(filt: jax.Array, width: int) -> tuple:
    """(filt_real, filt_imag) float32 [(B,) H*Wf, C] = m * filt for a complex [(B,) H, Wf, C] filter.

    width: W of the image (Wf = W//2 + 1 does not tell whether the last column is the Nyquist one).
    """
    height, wf, channels = filt.shape[-3:]
    if wf != width // 2 + 1:
        raise ValueError(f"filt has {wf} frequency columns; W = {width} needs W//2+1 = {width // 2 + 1}.")
    weights = jnp.asarray(dft.half_spectrum_weights(width), jnp.float32)[:, None]
    folded = (weights * filt.astype(jnp.complex64)).reshape(filt.shape[:-3] + (height * wf, channels))
    return jnp.real(folded), jnp.imag(folded)


# --------------------------------------------------------------------------------------------------
# The kernel.


def _kernel_body(
    x_gmem,
    fr_gmem,
    fi_gmem,
    fwd_gmem,
    inv_gmem,
    y_gmem,
    x_smem,
    u_smem,
    mat_smem,
    w_smem,
    barriers,
    *,
    plan: SmemPlan,
    pixels: _Axis,
    freqs: _Axis,
    per_sample: bool,
):
    b = jax.lax.axis_index("b")
    c = jax.lax.axis_index("c")
    cb = plan.block_channels
    channels = pl.ds(c * cb, cb)
    halves = cb // NSUB
    hp, kx = freqs.slots, pixels.slots
    n_freq, n_pix = len(freqs.chunks), len(pixels.chunks)
    next_barrier = iter(range(plan.barriers))

    def load(src, dst):
        """Issues one TMA copy on a fresh barrier; returns the barrier's index (a Python int: the
        copy may be issued inside one `run_scoped` and awaited inside another)."""
        index = next(next_barrier)
        plgpu.copy_gmem_to_smem(src, dst, barriers.at[index])
        return index

    def wait(pending):
        for index in pending:
            plgpu.barrier_wait(barriers.at[index])

    # Matrix chunks, in the order they are consumed: (Fr_j, Fi_j) per frequency chunk, then G_i.
    steps = [(fwd_gmem, part * hp + ROWS * j, kx) for j in range(n_freq) for part in (0, 1)]
    steps += [(inv_gmem, ROWS * i, 2 * hp) for i in range(n_pix)]
    matrix_pending = {}

    def issue_matrix(t):
        if t < len(steps):
            src, row, cols = steps[t]
            slot = mat_smem.at[t % plan.matrix_slots]
            dst = slot if cols == plan.matrix_cols else slot.at[:, pl.ds(0, cols)]
            matrix_pending[t] = [load(src.at[pl.ds(row, ROWS)], dst)]

    def matrix_operand(t):
        wait(matrix_pending.pop(t))
        slot = mat_smem.at[t % plan.matrix_slots]
        cols = steps[t][2]
        return slot if cols == plan.matrix_cols else slot.at[:, pl.ds(0, cols)]

    filt_real = fr_gmem.at[b] if per_sample else fr_gmem
    filt_imag = fi_gmem.at[b] if per_sample else fi_gmem
    filter_pending = {}

    def issue_filter(j):
        if j < n_freq:
            slot = j % plan.filter_slots
            pending = []
            for part, src in enumerate((filt_real, filt_imag)):
                for first_slot, row, count in freqs.chunks[j]:
                    dst = w_smem.at[slot, part, pl.ds(first_slot - ROWS * j, count)]
                    pending.append(load(src.at[pl.ds(row, count), channels], dst))
            filter_pending[j] = pending

    # 1. Prologue: X once, the first filter and matrix chunks.
    x_pending = [
        load(x_gmem.at[b, pl.ds(row, count), channels], x_smem.at[pl.ds(slot, count)])
        for slot, row, count in pixels.merged_boxes()
    ]
    for j in range(plan.filter_slots):
        issue_filter(j)
    for t in range(plan.matrix_slots):
        issue_matrix(t)
    wait(x_pending)

    def column(h):
        return pl.ds(NSUB * h, NSUB)

    # 2. Forward GEMMs and the filter multiply, one 64-frequency chunk at a time.
    acc_types = [plgpu.ACC((ROWS, NSUB), jnp.float32) for _ in range(2 * halves)]
    for j in range(n_freq):

        def forward_chunk(*accs, j=j):
            for part in (0, 1):  # Fr_j X, then Fi_j X
                t = 2 * j + part
                a = matrix_operand(t)
                for h in range(halves):
                    plgpu.wgmma(accs[part * halves + h], a, x_smem.at[:, column(h)])
                plgpu.wgmma_wait(0)  # slot t is free again
                issue_matrix(t + plan.matrix_slots)
            wait(filter_pending.pop(j))
            slot = j % plan.filter_slots
            for h in range(halves):
                zr, zi = accs[h][...], accs[halves + h][...]
                wr = w_smem[slot, 0, :, column(h)]
                wi = w_smem[slot, 1, :, column(h)]
                u_smem[pl.ds(ROWS * j, ROWS), column(h)] = (zr * wr - zi * wi).astype(u_smem.dtype)
                u_smem[pl.ds(hp + ROWS * j, ROWS), column(h)] = (zr * wi + zi * wr).astype(u_smem.dtype)
            plgpu.commit_smem()  # U visible to wgmma; every thread done reading the filter slot
            issue_filter(j + plan.filter_slots)

        pl.run_scoped(forward_chunk, *acc_types[: 2 * halves])

    # 3. Inverse GEMMs; Y staged in the (now dead) X buffer and stored with TMA.
    staging_slots = min(2, kx // ROWS)
    for i in range(n_pix):

        def inverse_chunk(*accs, i=i):
            t = 2 * n_freq + i
            a = matrix_operand(t)
            for h in range(halves):
                plgpu.wgmma(accs[h], a, u_smem.at[:, column(h)])
            plgpu.wgmma_wait(0)
            issue_matrix(t + plan.matrix_slots)
            stage = ROWS * (i % staging_slots)
            if i >= staging_slots:
                plgpu.wait_smem_to_gmem(staging_slots - 1, wait_read_only=True)
            for h in range(halves):
                x_smem[pl.ds(stage, ROWS), column(h)] = accs[h][...].astype(x_smem.dtype)
            plgpu.commit_smem()
            boxes = pixels.store_boxes(i)
            for k, (slot, row, count) in enumerate(boxes):
                plgpu.copy_smem_to_gmem(
                    x_smem.at[pl.ds(stage + slot - ROWS * i, count)],
                    y_gmem.at[b, pl.ds(row, count), channels],
                    commit_group=k == len(boxes) - 1,
                )

        pl.run_scoped(inverse_chunk, *acc_types[:halves])
    plgpu.wait_smem_to_gmem(0)
    assert next(next_barrier, None) is None, "SmemPlan.barriers must count every TMA load"


@functools.partial(jax.jit, static_argnames=("block_channels", "interpret"))
def _forward(x, filt_real, filt_imag, *, block_channels, interpret):
    batch, height, width, channels = x.shape
    pixels, freqs = _axis(height * width), _axis(height * (width // 2 + 1))
    plan = smem_plan(height, width, block_channels)
    forward, inverse = _mgpu_matrices(height, width)
    per_sample = filt_real.ndim == 3
    body = functools.partial(_kernel_body, plan=plan, pixels=pixels, freqs=freqs, per_sample=per_sample)
    kernel = plgpu.kernel(
        body,
        out_type=jax.ShapeDtypeStruct((batch, height * width, channels), x.dtype),
        grid=(batch, channels // block_channels),
        grid_names=("b", "c"),
        scratch_types=[
            plgpu.SMEM((plan.pixel_slots, block_channels), x.dtype, transforms=BF16_TRANSFORMS),
            plgpu.SMEM((2 * plan.freq_slots, block_channels), x.dtype, transforms=BF16_TRANSFORMS),
            plgpu.SMEM((plan.matrix_slots, ROWS, plan.matrix_cols), x.dtype, transforms=BF16_TRANSFORMS),
            plgpu.SMEM((plan.filter_slots, 2, ROWS, block_channels), jnp.float32, transforms=F32_TRANSFORMS),
            plgpu.Barrier(num_barriers=plan.barriers),
        ],
        interpret=interpret_params(interpret, "spectral_filter_forward_mgpu"),
    )
    y = kernel(
        x.reshape(batch, height * width, channels),
        filt_real,
        filt_imag,
        jnp.asarray(forward, x.dtype),
        jnp.asarray(inverse, x.dtype),
    )
    return y.reshape(x.shape)


def check_inputs(x, filt_real, filt_imag, block_channels: int) -> None:
    """Raises a ValueError naming the first argument that breaks the contract (module docstring)."""
    if x.ndim != 4:
        raise ValueError(f"x must be NHWC [B, H, W, C]; got shape {x.shape}.")
    if x.dtype != jnp.bfloat16:
        raise ValueError(
            f"spectral_filter_forward_mgpu takes bfloat16 x (bf16 wgmma); got {x.dtype}. "
            "Use impl='xla' or 'reference' of mixtok.kernels.spectral_filter for other dtypes."
        )
    batch, height, width, channels = x.shape
    half = (height * (width // 2 + 1), channels)
    for name, f in (("filt_real", filt_real), ("filt_imag", filt_imag)):
        if f.shape not in (half, (batch,) + half):
            raise ValueError(
                f"{name} must be [H*Wf, C] = {list(half)} or [B, H*Wf, C] = {[batch, *half]}; got {list(f.shape)}."
            )
        if f.dtype != jnp.float32:
            raise ValueError(f"{name} must be float32; got {f.dtype}.")
    if filt_real.shape != filt_imag.shape:
        raise ValueError(f"filt_real {filt_real.shape} and filt_imag {filt_imag.shape} differ.")
    if block_channels not in BLOCK_CHANNELS:
        raise ValueError(f"block_channels must be one of {BLOCK_CHANNELS}; got {block_channels}.")
    if channels % block_channels:
        raise ValueError(f"C = {channels} must be a multiple of block_channels = {block_channels}.")
    if min(height * width, half[0]) < TILE_ROWS:
        raise ValueError(f"the grid {height}x{width} is too small: H*W and H*(W//2+1) must be >= {TILE_ROWS}.")


def spectral_filter_forward_mgpu(
    x: jax.Array, filt_real: jax.Array, filt_imag: jax.Array, *, block_channels: int = 64, interpret=False
) -> jax.Array:
    """y = irfft2(rfft2(x, ortho) * filt, ortho) with one fused Mosaic GPU kernel (forward only).

    x: [B, H, W, C] bfloat16. filt_real, filt_imag: float32 [H*Wf, C] or [B, H*Wf, C], the real and
    imaginary parts of m * filt (Hermitian weights folded in; `fold_filter`). block_channels: 64 or
    128 channels per CTA. interpret: True runs the kernel in the Mosaic GPU CPU interpreter (a
    private JAX module, wgmma interpreted since jax 0.10.2; a RuntimeError says so if this JAX
    lacks it); an `InterpretGPUParams` instance is passed through (e.g. detect_races=True). Returns
    [B, H, W, C] bfloat16.
    Compiled (interpret=False) it needs an sm_90 GPU and has never been run on one (module docstring).
    """
    check_inputs(x, filt_real, filt_imag, block_channels)
    check_compiles_for_gpu("spectral_filter_forward_mgpu", interpret)
    interpret = static_interpret(interpret, "spectral_filter_forward_mgpu")
    return _forward(x, filt_real, filt_imag, block_channels=block_channels, interpret=interpret)


@functools.cache
def mosaic_gpu_op(block_channels: int, interpret=False):
    """The op impl="pallas" runs on a GPU: this forward kernel, with the "xla" form's gradient.

    `interpret=True` runs the kernel in the Mosaic GPU CPU interpreter (how the tests check this op).
    Differentiate it under `jax.jit` then: the interpreter's io_callbacks run eager JAX ops, and with
    eager (un-jitted) grad they can deadlock against the backward's ops on a small CPU (seen on 2 cores).
    """

    @jax.custom_vjp
    def op(x, filt):
        filt_real, filt_imag = fold_filter(filt, x.shape[2])
        return spectral_filter_forward_mgpu(x, filt_real, filt_imag, block_channels=block_channels, interpret=interpret)

    def op_fwd(x, filt):
        return op(x, filt), (x, filt)

    def op_bwd(residuals, dy):
        return jax.vjp(xla_op, *residuals)[1](dy)

    op.defvjp(op_fwd, op_bwd)
    return op
