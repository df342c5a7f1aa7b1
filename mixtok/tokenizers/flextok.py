"""A FlexTok-style 1D tokenizer: ordered register tokens, FSQ, nested dropout, and a deterministic decoder.

Paper: "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length" (Bachmann et al., 2025).
Official code: apple/ml-flextok @ 87d00cc: flextok/model/preprocessors/registers.py (`Registers1D`),
flextok/model/preprocessors/token_dropout.py (`MaskedNestedDropout`),
flextok/model/preprocessors/flex_seq_packing.py (`BlockWiseSequencePacker`, mask_mode "causal_last"),
flextok/regularizers/quantize_fsq.py (`FSQ`, levels [8, 8, 8, 5, 5, 5] = 64,000 codes).

With N = g^2 image patches and R registers:

    encoder  x = [PatchEmbed(image) + sincos_2d, registers]      (registers: learned [R, W], trunc_normal 0.02)
             attention "causal_last" (a prefix LM): query i sees key j iff j < N or j <= i, so patches attend
             to all patches and never to registers, and register r sees every patch and registers 0..r
             z = Linear(LN(Transformer(x))[N:])  -> quantizer (FSQ by default)           [B, R, code_dim]
    dropout  keep_k per sample; registers >= keep_k are replaced by a learned mask token (trunc_normal 0.02)
             training: "pow2" k uniform over {1, 2, 4, ..., R}, "uniform" k ~ U{1..R}, "uniform_pow2" k ~ U{1..R}
             rounded up to a power of two (official `sample_keep_k`; here also capped at R, which only matters
             for a non-power-of-two R); drawn from the `noise` rng stream; inference: all R, or `num_tokens`
    decoder  [mask_query x N + sincos_2d, Linear(q) (or the mask token) + register_pos_embed]
             -> Transformer (full attention) -> LN -> Linear(W -> p * p * 3) -> depth-to-space       [B, H, W, 3]

This is a stand-in. The paper's decoder is a rectified-flow Transformer over 2x2-patchified latents of an
SDXL-like VAE (AdaLN-zero timestep conditioning, trained with a flow loss plus REPA on DINOv2-L
features, sampled with 20 steps, CFG and APG); its encoder also reads VAE latents, not pixels. Here both
read and write pixels and the decoder is a deterministic ViT (one forward pass, trained with a
reconstruction loss), so the token ordering and prefix decoding can be studied without the VAE, the flow
sampler or DINOv2. Other differences from the official code:
- the official blocks have no biases and LayerNorms without affine parameters (`FlexBlock`); these are
  TiTok's blocks (biases, affine LayerNorm, 4x GELU MLP) from mixtok.tokenizers.titok;
- the mask token replaces dropped registers after the decoder's input projection (width W_dec), not in
  the quantized code space, so it can never coincide with an FSQ code;
- nested dropout always keeps the full length R (no sequence packing of variable-size register sets:
  `Registers1D` with `size_sampling_mode` other than a fixed n_max is not implemented).
Prefix decoding: `num_tokens=k` (an int, or an int array, scalar or [B]) replaces registers >= k with
the mask token, as the official `eval_keep_k`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.conv import conv2d
from mixtok.layers.linear import dense
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes
from mixtok.tokenizers.base import PrefixDecodingTokenizer, QuantizerOutput, check_square_images
from mixtok.tokenizers.quantizers import make_quantizer
from mixtok.tokenizers.titok import TORCH_LAYER_NORM_EPS, Transformer

NESTED_DROPOUT_MODES = ("pow2", "uniform", "uniform_pow2")
TRUNC_NORMAL_002 = jax.nn.initializers.truncated_normal(stddev=0.02)


def sincos_2d_embedding(height: int, width: int, dim: int, temperature: float = 10000.0) -> np.ndarray:
    """MoCo-v3 2-D sine-cosine position embedding [height * width, dim], row-major tokens.

    Channels [sin(row * omega), cos(row * omega), sin(col * omega), cos(col * omega)],
    omega_i = temperature^(-i / (dim / 4)). FlexTok's `build_2d_sincos_posemb` (flextok/model/utils/posembs.py)
    labels the first pair "w", but its meshgrid(indexing="ij") + rearrange("b (h w) d -> b d h w") order makes
    that pair vary along the rows of a square grid, as here.
    """
    if dim % 4:
        raise ValueError(f"the 2-D sin-cos embedding needs a width divisible by 4, got {dim}.")
    omega = 1.0 / temperature ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    out_rows = rows.reshape(-1, 1) * omega
    out_cols = cols.reshape(-1, 1) * omega
    return np.concatenate([np.sin(out_rows), np.cos(out_rows), np.sin(out_cols), np.cos(out_cols)], axis=1).astype(
        np.float32
    )


def causal_last_mask(num_prefix: int, num_causal: int) -> np.ndarray:
    """[L, L] bool (True = may attend): full attention to the prefix, causal among the last tokens."""
    length = num_prefix + num_causal
    query = np.arange(length)[:, None]
    key = np.arange(length)[None, :]
    return (key < num_prefix) | (key <= query)


def powers_of_two_up_to(limit: int) -> np.ndarray:
    return 2 ** np.arange(int(limit).bit_length())


def sample_keep_k(rng: jax.Array, batch: int, num_registers: int, mode: str) -> jax.Array:
    """Nested dropout's per-sample number of kept registers, [batch] int32 in 1..num_registers."""
    if mode == "uniform":
        return jax.random.randint(rng, (batch,), 1, num_registers + 1, dtype=jnp.int32)
    if mode == "pow2":
        choices = jnp.asarray(powers_of_two_up_to(num_registers), jnp.int32)
        return jax.random.choice(rng, choices, (batch,))
    if mode == "uniform_pow2":
        k = jax.random.randint(rng, (batch,), 1, num_registers + 1, dtype=jnp.int32)
        rounded = 2 ** jnp.ceil(jnp.log2(k.astype(jnp.float32))).astype(jnp.int32)
        return jnp.minimum(rounded, num_registers)
    raise ValueError(f"nested_dropout_mode {mode!r} is not one of {NESTED_DROPOUT_MODES}.")


class FlexTok(PrefixDecodingTokenizer):
    """FlexTok-style tokenizer with a deterministic ViT decoder (a stand-in; see the module docstring).

    quantizer: keyword arguments of `make_quantizer`; default FSQ [8, 8, 8, 5, 5, 5].
    nested_dropout_mode: how training draws keep_k per sample, one of NESTED_DROPOUT_MODES ("pow2"
      needs a power-of-two `num_registers`, as the official assertion).

    The output's `num_tokens` is per sample, [B] int32: nested dropout draws keep_k per sample, and
    registers >= keep_k become the learned mask token.
    """

    PREFIX_DECODING = True

    num_registers: int = 256
    nested_dropout_mode: str = "pow2"

    @property
    def num_latent_tokens(self) -> int:
        return self.num_registers

    def setup(self):
        if self.nested_dropout_mode not in NESTED_DROPOUT_MODES:
            raise ValueError(f"nested_dropout_mode {self.nested_dropout_mode!r} is not one of {NESTED_DROPOUT_MODES}.")
        if self.nested_dropout_mode == "pow2" and self.num_registers & (self.num_registers - 1):
            raise ValueError(
                f"nested_dropout_mode 'pow2' needs a power-of-two num_registers, got {self.num_registers}."
            )
        quantizer = dict(self.quantizer) if self.quantizer is not None else {"name": "fsq", "levels": "fsq_64000"}
        self.quantize = make_quantizer(**quantizer)
        common = self.dtype_kwargs
        norm = dict(epsilon=TORCH_LAYER_NORM_EPS, **common)
        self.patch_embed = conv2d(self.encoder_width, self.patch_size, stride=self.patch_size, padding=0, **common)
        self.registers = self.param(
            "registers",
            param_with_axes(TRUNC_NORMAL_002, (None, "embed")),
            (self.num_registers, self.encoder_width),
            self.param_dtype,
        )
        self.encoder = Transformer(self.encoder_depth, self.encoder_heads, **common)
        self.encoder_norm = LayerNorm(**norm)
        self.to_quantizer = dense(self.quantize.input_dim, ("embed", None), **common)
        self.decoder_embed = dense(self.decoder_width, (None, "embed"), **common)
        self.dropout_mask_token = self.param(
            "dropout_mask_token", param_with_axes(TRUNC_NORMAL_002, ("embed",)), (self.decoder_width,), self.param_dtype
        )
        self.patch_query = self.param(
            "patch_query", param_with_axes(TRUNC_NORMAL_002, ("embed",)), (self.decoder_width,), self.param_dtype
        )
        self.register_pos_embed = self.param(
            "register_pos_embed",
            param_with_axes(TRUNC_NORMAL_002, (None, "embed")),
            (self.num_registers, self.decoder_width),
            self.param_dtype,
        )
        self.decoder = Transformer(self.decoder_depth, self.decoder_heads, **common)
        self.decoder_norm = LayerNorm(**norm)
        self.to_pixels = dense(self.patch_size * self.patch_size * 3, ("embed", None), **common)

    def encode(self, images, *, train: bool = False) -> QuantizerOutput:
        """Images [B, H, W, 3] -> QuantizerOutput over the R registers (indices [B, R])."""
        grid = self.grid_size
        check_square_images(images, self.image_size)
        batch = images.shape[0]
        x = self.patch_embed(images).reshape(batch, grid * grid, self.encoder_width)
        x = x + sincos_2d_embedding(grid, grid, self.encoder_width).astype(x.dtype)
        registers = jnp.broadcast_to(self.registers.astype(x.dtype), (batch,) + self.registers.shape)
        x = jnp.concatenate([x, registers], axis=1)
        mask = jnp.asarray(causal_last_mask(grid * grid, self.num_registers))[None, None]
        x = self.encoder(x, mask)
        return self.quantize(self.to_quantizer(self.encoder_norm(x[:, grid * grid :])), train=train)

    def _keep(self, batch: int, num_tokens, train: bool):
        if num_tokens is None and train:
            return sample_keep_k(self.make_rng("noise"), batch, self.num_registers, self.nested_dropout_mode)
        if num_tokens is None:
            return None
        if isinstance(num_tokens, int) and not 1 <= num_tokens <= self.num_registers:
            raise ValueError(f"num_tokens {num_tokens} must be in 1..{self.num_registers} (num_registers).")
        keep = jnp.clip(jnp.asarray(num_tokens, jnp.int32), 1, self.num_registers)
        return jnp.broadcast_to(keep, (batch,))

    def _decode(self, quantized, num_tokens, train: bool):
        batch, num_given, _ = quantized.shape
        if not 1 <= num_given <= self.num_registers:
            raise ValueError(
                f"the decoder got {num_given} tokens; it takes 1 to num_registers = "
                f"{self.num_registers} (a prefix of the registers)."
            )
        grid = self.grid_size
        keep = self._keep(batch, num_tokens, train)
        if num_given < self.num_registers:  # a prefix: the missing registers are dropped ones
            quantized = jnp.pad(quantized, ((0, 0), (0, self.num_registers - num_given), (0, 0)))
            keep = jnp.full((batch,), num_given, jnp.int32) if keep is None else jnp.minimum(keep, num_given)
        tokens = self.decoder_embed(quantized)
        if keep is not None:
            dropped = jnp.arange(self.num_registers)[None, :, None] >= keep[:, None, None]
            tokens = jnp.where(dropped, self.dropout_mask_token.astype(tokens.dtype), tokens)
        tokens = tokens + self.register_pos_embed.astype(tokens.dtype)
        queries = self.patch_query.astype(tokens.dtype) + sincos_2d_embedding(grid, grid, self.decoder_width)
        queries = jnp.broadcast_to(queries.astype(tokens.dtype), (batch, grid * grid, self.decoder_width))
        x = self.decoder_norm(self.decoder(jnp.concatenate([queries, tokens], axis=1))[:, : grid * grid])
        patch = self.patch_size
        x = self.to_pixels(x).reshape(batch, grid, grid, patch, patch, 3).transpose(0, 1, 3, 2, 4, 5)
        used = jnp.full((batch,), self.num_registers, jnp.int32) if keep is None else keep
        return x.reshape(batch, grid * patch, grid * patch, 3), used
