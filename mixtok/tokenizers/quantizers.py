"""The quantizers of mixtok's tokenizers: VQ, FSQ, LFQ / BSQ, residual VQ, and the Gaussian (KL) bottleneck.

    quantizer = make_quantizer("vq", codebook_size=4096, code_dim=12, l2_normalize=True)   # TiTok
    variables = quantizer.init(jax.random.PRNGKey(0), z)       # z [..., quantizer.input_dim]
    out = quantizer.apply(variables, z)                        # QuantizerOutput (mixtok.tokenizers.base)
    codes = quantizer.apply(variables, out.indices, method="decode_indices")   # == out.quantized

Every quantizer casts z to float32 and returns float32 `quantized` of width `code_dim`, whatever the
input dtype (bfloat16 encoders included); matmuls that pick codes run at HIGHEST precision, so TPU /
GPU bf16 matmul passes never change which code is nearest. `quantized` is built as
sg(code) + (g - sg(g)), with g the straight-through (or rotation-trick) surrogate: its forward value
is exactly the code, bit for bit, so `decode_indices(out.indices)` equals `out.quantized`.

Statistics are plain sums / means over every token of the batch. Under `jax.jit` with a sharded
batch, GSPMD computes them over the global batch (it inserts the all-reduces that the official
PyTorch code writes by hand with `dist.all_reduce` / `gather`), so no `pmean` is needed.

State (EMA codebooks, usage counters) lives in the `quantizer_state` collection
(mixtok.tokenizers.base.QUANTIZER_STATE) and is updated only when `train=True`, the collection is
mutable and the module is not initialising; otherwise it is read only.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.evaluate.codebook import perplexity_from_counts, present_code_counts, usage_from_counts
from mixtok.layers.module import Module
from mixtok.layers.partitioning import param_with_axes
from mixtok.registry import Registry, unknown_name_error
from mixtok.tokenizers.base import QUANTIZER_STATE, QuantizerOutput

HIGHEST = jax.lax.Precision.HIGHEST

FSQ_PRESETS: dict[str, tuple[int, ...]] = {
    "fsq_1000": (8, 5, 5, 5),
    "fsq_4375": (7, 5, 5, 5, 5),
    "fsq_64000": (8, 8, 8, 5, 5, 5),  # FlexTok
}

MAX_LFQ_CODE_DIM = 16  # the entropy loss builds a [tokens, 2**code_dim] softmax


# ----------------------------------------------------------------------------------------------- helpers


def _exact_forward(code: jax.Array, surrogate: jax.Array) -> jax.Array:
    """Forward value exactly `code` (no z + (q - z) rounding), gradient that of `surrogate`."""
    return jax.lax.stop_gradient(code) + (surrogate - jax.lax.stop_gradient(surrogate))


def normalize_last_axis(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x / max(||x||, eps) over the last axis (torch.nn.functional.normalize)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, eps)


def _entropy(probs: jax.Array, axis: int = -1, log_floor: float | None = None) -> jax.Array:
    """-sum p log p; with `log_floor`, log(max(p, floor)) as lucidrains' LFQ; else 0 log 0 = 0."""
    if log_floor is not None:
        log_p = jnp.log(jnp.maximum(probs, log_floor))
    else:
        log_p = jnp.log(jnp.where(probs > 0, probs, 1.0))
    return -jnp.sum(probs * log_p, axis=axis)


def code_usage_stats(indices: jax.Array, codebook_size: int) -> dict[str, jax.Array]:
    """ "codebook_usage" (fraction of the K codes used in the batch) and "perplexity" (exp of the
    entropy of the batch's code histogram), as TiTok's evaluator and OmniTokenizer's Codebook log.
    Counts by sorting the batch's indices when they are fewer than the K codes, so an FSQ of 2^24 codes
    does not build a 2^24-long histogram every step."""
    counts = present_code_counts(indices, codebook_size)
    return {"codebook_usage": usage_from_counts(counts, codebook_size), "perplexity": perplexity_from_counts(counts)}


def _check_last_dim(name: str, z: jax.Array, expected: int) -> None:
    if z.ndim < 1 or z.shape[-1] != expected:
        raise ValueError(f"{name}: the input's last axis must be input_dim={expected}, got shape {tuple(z.shape)}.")


def _boxed(value: jax.Array, axes: Sequence[str | None]) -> nn.LogicallyPartitioned:
    return nn.LogicallyPartitioned(value, tuple(axes))


def rotate_to(source: jax.Array, target: jax.Array) -> jax.Array:
    """The rotation trick (Fifty et al. 2024, "Restructuring Vector Quantization with the Rotation Trick",
    section 4.2), as lucidrains/vector-quantize-pytorch @ 0d7d1aa `rotate_to` computes it.

    With u = e / |e|, q = t / |t|, w = (u + q) / |u + q| and R = I - 2 w w^T + 2 u q^T (row vectors),
    returns sg(|t| / |e|) * e R: its value is t, and the gradient reaching e is
    sg(|t| / |e|) * g R^T, the rotation and rescaling of e onto t with R, u, q, w held constant.
    Norms are clamped at 1e-6 (lucidrains' safe_div / l2norm eps).
    """
    norm_source = jnp.linalg.norm(source, axis=-1, keepdims=True)
    norm_target = jnp.linalg.norm(target, axis=-1, keepdims=True)
    u = jax.lax.stop_gradient(source / jnp.maximum(norm_source, 1e-6))
    q = jax.lax.stop_gradient(target / jnp.maximum(norm_target, 1e-6))
    w = normalize_last_axis(u + q, eps=1e-6)
    rotated = (
        source
        - 2.0 * jnp.sum(source * w, axis=-1, keepdims=True) * w
        + 2.0 * jnp.sum(source * u, axis=-1, keepdims=True) * q
    )
    return rotated * jax.lax.stop_gradient(norm_target / jnp.maximum(norm_source, 1e-6))


# ----------------------------------------------------------------------------------------------- VQ


class VectorQuantizer(Module):
    """Nearest-neighbour vector quantization with a learned (or EMA) codebook of K x code_dim.

    Follows TiTok's `VectorQuantizer` (bytedance/1d-tokenizer @ 942a96f: modeling/quantizer/quantizer.py):
    codebook param "codebook" [K, d] ~ U(-1/K, 1/K), logical axes ("codebook", None); with
    `l2_normalize` z and the codebook are L2-normalised before the argmin of the squared distance
    (the cosine VQ of TiTok, OmniTokenizer, GigaTok), and the quantized value is the normalised code;
    loss = beta * mean((sg[q] - z)^2) + mean((q - sg[z])^2) (z normalised when `l2_normalize`).

    Gradients to z (`gradient`):
      "ste": straight-through, identity Jacobian (through the normalisation when `l2_normalize`);
      "rotation": the rotation trick, `rotate_to` (GigaTok; lucidrains `rotate_to`).

    EMA codebook (`ema_decay` set; FoundationVision/OmniTokenizer @ 701b619: OmniTokenizer/modules/
    codebook.py, lucidrains `EuclideanCodebook`): "codebook", "cluster_size" (N) and "embed_sum" (m)
    live in `quantizer_state` (float32), not in params. Each training step, with counts_k and
    sum_k z the batch's assignments: N <- d N + (1 - d) counts, m <- d m + (1 - d) sum z,
    n = (N + eps) / (sum N + K eps) * sum N (Laplace smoothing), codebook = m / n. The loss is then
    the commitment term only. The codebook is used before the step's update (as in both references).

    Dead-code restart (`dead_code_threshold` > 0; TiTok's `clustering_vq` idea, lucidrains
    `threshold_ema_dead_code`): "usage" in `quantizer_state` is an EMA (decay `ema_decay`, else 0.99)
    of how many batch tokens pick each code per step; codes whose usage falls below the threshold are
    replaced by z vectors drawn uniformly from the batch (rng stream `noise`) and their usage (and
    EMA cluster size) reset to the threshold, as lucidrains resets `cluster_size`. With an EMA
    codebook the state codebook is overwritten; with a learned codebook (params are immutable in a
    functional update) the replacement is kept as "codebook_offset" in `quantizer_state`, and the
    codebook used everywhere is params codebook + offset, so the replaced entries keep learning.

    Differences from the official code:
    - TiTok's `clustering_vq` moves every code towards its nearest batch vector with a decay
      exp(-10 K usage / (1 - 0.99)); this module does lucidrains' hard replacement of dead codes by
      random batch vectors instead; usage starts at 1 for every code (lucidrains' `cluster_size`).
    - OmniTokenizer initialises the EMA codebook from the first batch (k-means-like tiling) and uses
      eps 1e-7; here it starts from U(-1/K, 1/K) with cluster_size 1 and embed_sum = codebook
      (lucidrains' start) and eps = `ema_epsilon` (lucidrains' 1e-5).
    - OmniTokenizer restarts codes whose EMA cluster size N < 1 (its `restart_thres`) from shuffled,
      jittered batch vectors; here the usage EMA is separate from N and exists only when restarting.
    - with `l2_normalize` the EMA averages normalised z and the codebook is normalised at lookup
      (lucidrains normalises the EMA result; the nearest code and the quantized value are the same).
      OmniTokenizer's `Codebook` normalises z only (its `--l2_code`: `F.normalize(z)` before the codebook)
      and compares it with, and decodes, the raw EMA means; `normalize_codebook=False` does that.
    - the forward value of `quantized` is exactly the code (sg(q) + z - sg(z) rather than z + sg(q - z)).
    - stats also report "quantization_error" = mean((q - z)^2); under EMA "codebook_loss" is 0.
    """

    codebook_size: int
    code_dim: int
    l2_normalize: bool = False
    beta: float = 0.25
    gradient: str = "ste"
    ema_decay: float | None = None
    ema_epsilon: float = 1e-5
    dead_code_threshold: float = 0.0
    normalize_codebook: bool = True  # with l2_normalize: False compares z with the raw entries (OmniTokenizer)

    def __post_init__(self):
        if self.codebook_size < 1 or self.code_dim < 1:
            raise ValueError(
                f"VectorQuantizer: codebook_size ({self.codebook_size}) and code_dim ({self.code_dim}) "
                "must be positive."
            )
        if self.gradient not in ("ste", "rotation"):
            raise ValueError(f"VectorQuantizer: gradient={self.gradient!r}; valid: 'ste', 'rotation'.")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"VectorQuantizer: ema_decay={self.ema_decay} must be in (0, 1) or None.")
        if self.dead_code_threshold < 0:
            raise ValueError(f"VectorQuantizer: dead_code_threshold={self.dead_code_threshold} must be >= 0.")
        super().__post_init__()

    @property
    def input_dim(self) -> int:
        return self.code_dim

    def setup(self):
        shape = (self.codebook_size, self.code_dim)
        bound = 1.0 / self.codebook_size

        def uniform_init(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        if self.ema_decay is None:
            self.learned_codebook = self.param(
                "codebook", param_with_axes(uniform_init, ("codebook", None)), shape, self.param_dtype
            )
        else:
            self.ema_codebook = self.variable(
                QUANTIZER_STATE,
                "codebook",
                lambda: _boxed(uniform_init(self.make_rng("params"), shape), ("codebook", None)),
            )
            self.cluster_size = self.variable(
                QUANTIZER_STATE,
                "cluster_size",
                lambda: _boxed(jnp.ones((self.codebook_size,), jnp.float32), ("codebook",)),
            )
            self.embed_sum = self.variable(
                QUANTIZER_STATE, "embed_sum", lambda: _boxed(self.ema_codebook.value, ("codebook", None))
            )
        if self.dead_code_threshold > 0:
            self.usage = self.variable(
                QUANTIZER_STATE, "usage", lambda: _boxed(jnp.ones((self.codebook_size,), jnp.float32), ("codebook",))
            )
            if self.ema_decay is None:
                self.codebook_offset = self.variable(
                    QUANTIZER_STATE,
                    "codebook_offset",
                    lambda: _boxed(jnp.zeros(shape, jnp.float32), ("codebook", None)),
                )

    def raw_codebook(self) -> jax.Array:
        """[K, d] float32 entries before any normalisation (params + offset, or the EMA state)."""
        if self.ema_decay is not None:
            return jax.lax.stop_gradient(self.ema_codebook.value)
        codebook = self.learned_codebook.astype(jnp.float32)
        if self.dead_code_threshold > 0:
            codebook = codebook + self.codebook_offset.value
        return codebook

    def codebook(self) -> jax.Array:
        """[K, d] float32: the entries z is compared to and the decoder receives."""
        codebook = self.raw_codebook()
        return normalize_last_axis(codebook) if self.l2_normalize and self.normalize_codebook else codebook

    def decode_indices(self, indices: jax.Array) -> jax.Array:
        return jnp.take(self.codebook(), indices, axis=0)

    def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
        _check_last_dim("VectorQuantizer", z, self.code_dim)
        z = z.astype(jnp.float32)
        if self.l2_normalize:
            z = normalize_last_axis(z)
        flat = z.reshape(-1, self.code_dim)
        codebook = self.codebook()
        distances = (
            jnp.sum(jnp.square(flat), axis=1, keepdims=True)
            + jnp.sum(jnp.square(codebook), axis=1)
            - 2.0 * jnp.matmul(flat, codebook.T, precision=HIGHEST)
        )
        flat_indices = jnp.argmin(distances, axis=1).astype(jnp.int32)
        indices = flat_indices.reshape(z.shape[:-1])
        code = jnp.take(codebook, indices, axis=0)

        commitment_loss = self.beta * jnp.mean(jnp.square(jax.lax.stop_gradient(code) - z))
        if self.ema_decay is None:
            codebook_loss = jnp.mean(jnp.square(code - jax.lax.stop_gradient(z)))
        else:
            codebook_loss = jnp.zeros((), jnp.float32)
        surrogate = z if self.gradient == "ste" else rotate_to(z, code)
        quantized = _exact_forward(code, surrogate)

        has_state = self.ema_decay is not None or self.dead_code_threshold > 0
        if has_state and train and self.is_mutable_collection(QUANTIZER_STATE) and not self.is_initializing():
            self._update_state(jax.lax.stop_gradient(flat), flat_indices)

        stats = {
            "commitment_loss": commitment_loss,
            "codebook_loss": codebook_loss,
            "quantization_error": jnp.mean(jnp.square(jax.lax.stop_gradient(code - z))),
            **code_usage_stats(indices, self.codebook_size),
        }
        return QuantizerOutput(
            quantized=quantized,
            indices=indices,
            loss=commitment_loss + codebook_loss,
            stats=jax.lax.stop_gradient(stats),
        )

    def _update_state(self, flat: jax.Array, flat_indices: jax.Array) -> None:
        """The EMA codebook step and dead-code restart, over every token of the (global) batch."""
        counts = jax.ops.segment_sum(jnp.ones_like(flat_indices, jnp.float32), flat_indices, self.codebook_size)
        if self.ema_decay is not None:
            decay = self.ema_decay
            cluster_size = decay * self.cluster_size.value + (1.0 - decay) * counts
            batch_sum = jax.ops.segment_sum(flat, flat_indices, self.codebook_size)
            embed_sum = decay * self.embed_sum.value + (1.0 - decay) * batch_sum
            total = jnp.sum(cluster_size)
            smoothed = (cluster_size + self.ema_epsilon) / (total + self.codebook_size * self.ema_epsilon) * total
            self.cluster_size.value = cluster_size
            self.embed_sum.value = embed_sum
            self.ema_codebook.value = embed_sum / smoothed[:, None]
        if self.dead_code_threshold > 0:
            decay = 0.99 if self.ema_decay is None else self.ema_decay
            usage = decay * self.usage.value + (1.0 - decay) * counts
            dead = usage < self.dead_code_threshold
            picks = jax.random.randint(self.make_rng("noise"), (self.codebook_size,), 0, flat.shape[0])
            samples = flat[picks]
            threshold = jnp.float32(self.dead_code_threshold)
            self.usage.value = jnp.where(dead, threshold, usage)
            if self.ema_decay is not None:
                self.ema_codebook.value = jnp.where(dead[:, None], samples, self.ema_codebook.value)
                self.cluster_size.value = jnp.where(dead, threshold, self.cluster_size.value)
                self.embed_sum.value = jnp.where(dead[:, None], samples * threshold, self.embed_sum.value)
            else:
                learned = jax.lax.stop_gradient(self.learned_codebook.astype(jnp.float32))
                self.codebook_offset.value = jnp.where(dead[:, None], samples - learned, self.codebook_offset.value)


# ----------------------------------------------------------------------------------------------- FSQ


def resolve_fsq_levels(levels: str | Sequence[int]) -> tuple[int, ...]:
    """A preset name of FSQ_PRESETS or a sequence of per-dimension level counts -> tuple of ints."""
    if isinstance(levels, str):
        if levels not in FSQ_PRESETS:
            raise unknown_name_error("FSQ preset", levels, FSQ_PRESETS)
        return FSQ_PRESETS[levels]
    levels = tuple(int(level) for level in levels)
    if not levels or any(level < 3 for level in levels):
        raise ValueError(
            f"FSQ: levels={levels}: every level must be >= 3 (lucidrains' FSQ refuses 2 levels "
            f"without preserve_symmetry); presets: {FSQ_PRESETS}."
        )
    if math.prod(levels) > 2**31 - 1:
        raise ValueError(
            f"FSQ: levels={levels} give {math.prod(levels):,} codes, more than int32 indices hold "
            f"(2**31 - 1); use fewer or smaller levels."
        )
    return levels


class FSQ(nn.Module):
    """Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

    The lucidrains variant (lucidrains/vector-quantize-pytorch @ 0d7d1aa:
    vector_quantize_pytorch/finite_scalar_quantization.py, used by apple/ml-flextok), per dimension
    with L levels: half_l = (L - 1)(1 + eps) / 2, offset = 0.5 if L even else 0,
    shift = atanh(offset / half_l), bound(z) = tanh(z + shift) half_l - offset, then
    round (straight-through) and divide by half_width = L // 2. Codes lie on {-hw, .., L - 1 - hw} / hw.
    Index (mixed radix): sum_i (code_i hw_i + hw_i) basis_i, basis = [1, cumprod(L[:-1])].
    No codebook, no loss (loss = 0), no state.

    Difference from the Google notebook (google-research/google-research fsq/fsq.ipynb, the paper's
    Appendix A.1): it uses half_l = (L - 1)(1 - eps) / 2 and shift = tan(offset / half_l); the atanh
    here is the exact inverse, so bound(0) = 0 for even L too. Both reach all L levels.
    Differences from lucidrains: no projections, codebook splitting, preserve_symmetry, noise dropout
    or orthogonal rotation; levels must be >= 3 (lucidrains asserts L != 2 without preserve_symmetry).
    """

    levels: str | tuple[int, ...]
    eps: float = 1e-3

    def __post_init__(self):
        resolve_fsq_levels(self.levels)
        super().__post_init__()

    @property
    def level_counts(self) -> tuple[int, ...]:
        return resolve_fsq_levels(self.levels)

    @property
    def input_dim(self) -> int:
        return len(self.level_counts)

    @property
    def code_dim(self) -> int:
        return len(self.level_counts)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.level_counts)

    def _basis(self) -> jax.Array:
        levels = self.level_counts
        return jnp.asarray([math.prod(levels[:i]) for i in range(len(levels))], jnp.int32)

    def bound(self, z: jax.Array) -> jax.Array:
        """tanh(z + shift) half_l - offset, before rounding (float32)."""
        levels = jnp.asarray(self.level_counts, jnp.float32)
        half_l = (levels - 1.0) * (1.0 + self.eps) / 2.0
        offset = jnp.where(jnp.asarray(self.level_counts) % 2 == 0, 0.5, 0.0)
        shift = jnp.arctanh(offset / half_l)
        return jnp.tanh(z + shift) * half_l - offset

    def codes_to_indices(self, codes: jax.Array) -> jax.Array:
        half_width = jnp.asarray(self.level_counts, jnp.int32) // 2
        level_indices = codes * half_width + half_width
        return jnp.round(jnp.sum(level_indices * self._basis(), axis=-1)).astype(jnp.int32)

    def indices_to_codes(self, indices: jax.Array) -> jax.Array:
        levels = jnp.asarray(self.level_counts, jnp.int32)
        half_width = levels // 2
        level_indices = (indices[..., None] // self._basis()) % levels
        return (level_indices - half_width).astype(jnp.float32) / half_width.astype(jnp.float32)

    def decode_indices(self, indices: jax.Array) -> jax.Array:
        return self.indices_to_codes(indices)

    def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
        _check_last_dim("FSQ", z, self.input_dim)
        bounded = self.bound(z.astype(jnp.float32))
        half_width = (jnp.asarray(self.level_counts, jnp.int32) // 2).astype(jnp.float32)
        quantized = _exact_forward(jnp.round(bounded), bounded) / half_width
        indices = self.codes_to_indices(jax.lax.stop_gradient(quantized))
        return QuantizerOutput(
            quantized=quantized,
            indices=indices,
            loss=jnp.zeros((), jnp.float32),
            stats=code_usage_stats(indices, self.codebook_size),
        )


# ----------------------------------------------------------------------------------------------- LFQ / BSQ


class LFQ(nn.Module):
    """Lookup-free quantization (MAGVIT-v2, Yu et al. 2023), and BSQ with `spherical=True`.

    Follows lucidrains/vector-quantize-pytorch @ 0d7d1aa: vector_quantize_pytorch/lookup_free_quantization.py
    (one codebook, no projections). With s = `codebook_scale`:
      x = z, or s z / ||z|| when `spherical` (BSQ, Zhao et al. 2024, arXiv 2406.07548);
      q_i = +s if x_i > 0 else -s, then q <- s q / ||q|| = s sign(x) / sqrt(d) when spherical;
      index = sum_i 2^(d-1-i) [x_i > 0] (most significant bit first); STE from x.
    Entropy loss (train only; lucidrains returns 0 outside training and so does this module): the
    implicit codebook C holds all 2^d codes at the quantized scale (+-s; for spherical, the
    normalised +-s / sqrt(d), i.e. the same values `quantized` takes), logits = 2 x C^T inv_temperature
    (-||x - c||^2 / T up to a per-token constant), p = softmax(logits) per token;
    L_ent = mean_tokens H(p) - diversity_gamma * H(mean_tokens p), H(p) = -sum p log(max(p, 1e-5));
    loss = entropy_weight * L_ent + commitment_weight * mean((x - sg q)^2), x and q as above.
    The full softmax over 2^d codes is built, so code_dim is limited to MAX_LFQ_CODE_DIM = 16.

    Differences from lucidrains: no frac_per_sample_entropy, masks, soft clamp, projections,
    multiple codebooks or softplus entropy; inv_temperature is a constructor argument (a forward
    argument there); the commitment term is computed whenever training (lucidrains skips it when
    its weight is 0, which gives the same loss).
    """

    code_dim: int
    entropy_weight: float = 0.1
    diversity_gamma: float = 1.0
    inv_temperature: float = 100.0
    commitment_weight: float = 0.0
    codebook_scale: float = 1.0
    spherical: bool = False

    def __post_init__(self):
        if not 1 <= self.code_dim <= MAX_LFQ_CODE_DIM:
            raise ValueError(
                f"{type(self).__name__}: code_dim={self.code_dim} must be in 1..{MAX_LFQ_CODE_DIM}: "
                f"the entropy loss builds a softmax over all 2**code_dim codes."
            )
        super().__post_init__()

    @property
    def input_dim(self) -> int:
        return self.code_dim

    @property
    def codebook_size(self) -> int:
        return 2**self.code_dim

    def _bit_weights(self) -> jax.Array:
        return 2 ** jnp.arange(self.code_dim - 1, -1, -1, dtype=jnp.int32)

    def _bits_to_codes(self, positive: jax.Array) -> jax.Array:
        """+-s from booleans, then s * l2-normalised when spherical (lucidrains' maybe_l2norm)."""
        codes = jnp.where(positive, self.codebook_scale, -self.codebook_scale).astype(jnp.float32)
        return normalize_last_axis(codes) * self.codebook_scale if self.spherical else codes

    def decode_indices(self, indices: jax.Array) -> jax.Array:
        return self._bits_to_codes((indices[..., None] & self._bit_weights()) != 0)

    def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
        _check_last_dim(type(self).__name__, z, self.code_dim)
        x = z.astype(jnp.float32)
        if self.spherical:
            x = normalize_last_axis(x) * self.codebook_scale
        positive = x > 0
        indices = jnp.sum(positive.astype(jnp.int32) * self._bit_weights(), axis=-1)
        code = self._bits_to_codes(positive)
        quantized = _exact_forward(code, x)

        zero = jnp.zeros((), jnp.float32)
        per_sample_entropy = codebook_entropy = commitment = loss = zero
        if train:
            codebook = self.decode_indices(jnp.arange(self.codebook_size, dtype=jnp.int32))
            flat = x.reshape(-1, self.code_dim)
            logits = 2.0 * jnp.matmul(flat, codebook.T, precision=HIGHEST) * self.inv_temperature
            probs = jax.nn.softmax(logits, axis=-1)
            per_sample_entropy = jnp.mean(_entropy(probs, log_floor=1e-5))
            codebook_entropy = _entropy(jnp.mean(probs, axis=0), log_floor=1e-5)
            commitment = jnp.mean(jnp.square(x - jax.lax.stop_gradient(code)))
            loss = (
                self.entropy_weight * (per_sample_entropy - self.diversity_gamma * codebook_entropy)
                + self.commitment_weight * commitment
            )
        stats = {
            "per_sample_entropy": per_sample_entropy,
            "codebook_entropy": codebook_entropy,
            "commitment_loss": commitment,
            **code_usage_stats(indices, self.codebook_size),
        }
        return QuantizerOutput(quantized=quantized, indices=indices, loss=loss, stats=jax.lax.stop_gradient(stats))


class BSQ(LFQ):
    """Binary spherical quantization (Zhao et al. 2024, arXiv 2406.07548): LFQ with `spherical=True`,
    u = z / ||z||, q = sign(u) / sqrt(d) (times codebook_scale), lucidrains' `LFQ(spherical=True)`."""

    spherical: bool = True

    def __post_init__(self):
        if not self.spherical:
            raise ValueError("BSQ: spherical must be True (use LFQ for the non-spherical version).")
        super().__post_init__()


# ----------------------------------------------------------------------------------------------- residual


class ResidualQuantizer(nn.Module):
    """Residual quantization: `depth` clones of `quantizer` (own params / state, "level_0", ..) applied to
    successive residuals, as lucidrains' `ResidualVQ` (@ 0d7d1aa: residual_vq.py) without its
    projections, dropout and per-level scales: r_0 = z, q_i = Q_i(r_i), r_{i+1} = r_i - sg(q_i);
    quantized = sum_i q_i, indices [..., depth], loss = sum of the levels' losses.
    Stats: each level's under "level_i/<name>", and "codebook_usage" / "perplexity" averaged over levels.
    """

    quantizer: nn.Module
    depth: int

    def __post_init__(self):
        if self.depth < 1:
            raise ValueError(f"ResidualQuantizer: depth={self.depth} must be >= 1.")
        if getattr(self.quantizer, "codebook_size", None) is None:
            raise ValueError(
                f"ResidualQuantizer: {type(self.quantizer).__name__} has no codebook to quantize "
                "residuals with; use vq, fsq, lfq or bsq."
            )
        if self.quantizer.input_dim != self.quantizer.code_dim:
            raise ValueError(
                f"ResidualQuantizer: the quantizer's input_dim ({self.quantizer.input_dim}) must "
                f"equal its code_dim ({self.quantizer.code_dim}) to subtract residuals."
            )
        super().__post_init__()

    @property
    def input_dim(self) -> int:
        return self.quantizer.input_dim

    @property
    def code_dim(self) -> int:
        return self.quantizer.code_dim

    @property
    def codebook_size(self) -> int:
        """Entries per level (each level has its own codebook)."""
        return self.quantizer.codebook_size

    def setup(self):
        for i in range(self.depth):
            setattr(self, f"level_{i}", self.quantizer.clone(parent=None, name=None))

    def _levels(self):
        return [getattr(self, f"level_{i}") for i in range(self.depth)]

    def decode_indices(self, indices: jax.Array) -> jax.Array:
        if indices.shape[-1] != self.depth:
            raise ValueError(f"ResidualQuantizer: indices must end with depth={self.depth}, got {indices.shape}.")
        return sum(level.decode_indices(indices[..., i]) for i, level in enumerate(self._levels()))

    def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
        _check_last_dim("ResidualQuantizer", z, self.input_dim)
        residual = z.astype(jnp.float32)
        quantized = jnp.zeros(residual.shape, jnp.float32)
        indices, loss, stats = [], jnp.zeros((), jnp.float32), {}
        for i, level in enumerate(self._levels()):
            out = level(residual, train=train)
            quantized = quantized + out.quantized
            residual = residual - jax.lax.stop_gradient(out.quantized)
            indices.append(out.indices)
            loss = loss + out.loss
            stats.update({f"level_{i}/{key}": value for key, value in out.stats.items()})
        for key in ("codebook_usage", "perplexity"):
            stats[key] = jnp.mean(jnp.stack([stats[f"level_{i}/{key}"] for i in range(self.depth)]))
        return QuantizerOutput(quantized=quantized, indices=jnp.stack(indices, axis=-1), loss=loss, stats=stats)


# ----------------------------------------------------------------------------------------------- Gaussian


class DiagonalGaussian(nn.Module):
    """The continuous (VAE / KL) bottleneck: z = [mean, logvar] -> a sample of N(mean, exp(logvar)).

    Follows TiTok's `DiagonalGaussianDistribution` (bytedance/1d-tokenizer @ 942a96f:
    modeling/quantizer/quantizer.py) and its loss (modeling/modules/losses.py, quantize_mode "vae"):
    mean, logvar = split(z, 2, last axis); logvar clipped to `logvar_range` ([-30, 20]);
    sample = mean + exp(logvar / 2) eps, eps ~ N(0, I) from the `noise` rng;
    KL = 0.5 sum (mean^2 + exp(logvar) - 1 - logvar) summed over every axis but the first (tokens and
    channels) and averaged over the first (batch): TiTok's kl() sums over [C, H] and the loss then
    divides the total by the batch size. loss = kl_weight * KL (TiTok's kl_weight 1e-6 is a loss
    config value; OmniTokenizer's `--kl_weight 1e-6` likewise). A 1-D z counts as a batch of one.

    Differences from TiTok: eval (`train=False`) returns the mean, where TiTok's `encode` always
    samples; channels are the last axis (TiTok splits channel axis 1 of NCHW). No indices: `indices`
    is None, `codebook_size` None, and `decode_indices` raises.
    """

    code_dim: int
    kl_weight: float = 1.0
    logvar_range: tuple[float, float] = (-30.0, 20.0)
    codebook_size = None  # continuous tokens

    @property
    def input_dim(self) -> int:
        return 2 * self.code_dim

    def decode_indices(self, indices: jax.Array) -> jax.Array:
        raise ValueError(
            "DiagonalGaussian: continuous tokens have no indices; decode the quantized values (the sample) instead."
        )

    def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
        _check_last_dim("DiagonalGaussian", z, self.input_dim)
        z = z.astype(jnp.float32)
        mean, logvar = z[..., : self.code_dim], z[..., self.code_dim :]
        logvar = jnp.clip(logvar, *self.logvar_range)
        if train:
            noise = jax.random.normal(self.make_rng("noise"), mean.shape, jnp.float32)
            sample = mean + jnp.exp(0.5 * logvar) * noise
        else:
            sample = mean
        batch = z.shape[0] if z.ndim > 1 else 1
        kl = 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar) / batch
        stats = {"kl": kl, "posterior_std": jnp.mean(jnp.exp(0.5 * logvar))}
        return QuantizerOutput(
            quantized=sample, indices=None, loss=self.kl_weight * kl, stats=jax.lax.stop_gradient(stats)
        )


# ----------------------------------------------------------------------------------------------- factory


QUANTIZERS: Registry[Any] = Registry("quantizer")
QUANTIZERS.register("vq", VectorQuantizer)
QUANTIZERS.register("fsq", FSQ)
QUANTIZERS.register("lfq", LFQ)
QUANTIZERS.register("bsq", BSQ)
QUANTIZERS.register("residual", ResidualQuantizer)
QUANTIZERS.register("gaussian", DiagonalGaussian)


def make_quantizer(name: str, **kwargs) -> nn.Module:
    """`QUANTIZERS[name](**kwargs)`; unknown names or arguments raise a ValueError listing the valid ones.

    For "residual", `quantizer` may be a module or a mapping {"name": ..., **its kwargs} (config-friendly);
    FSQ `levels` may be a preset name or any sequence of ints.
    """
    cls = QUANTIZERS.get(name)
    fields = {f.name for f in cls.__dataclass_fields__.values() if f.init and f.name not in ("parent", "name")}
    for key in kwargs:
        if key not in fields:
            raise unknown_name_error(f"argument of quantizer {name!r}", key, fields)
    if name == "residual" and isinstance(kwargs.get("quantizer"), Mapping):
        inner = dict(kwargs["quantizer"])
        if "name" not in inner:
            raise ValueError(
                f"make_quantizer('residual'): quantizer={inner} needs a 'name' "
                f"(one of {', '.join(QUANTIZERS.names())})."
            )
        kwargs["quantizer"] = make_quantizer(inner.pop("name"), **inner)
    if name == "fsq" and "levels" in kwargs and not isinstance(kwargs["levels"], str):
        kwargs["levels"] = tuple(kwargs["levels"])
    return cls(**kwargs)
