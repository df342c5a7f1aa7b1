"""TiTok, a 1D tokenizer (K learned latent tokens read out of a ViT), and One-D-Piece's tail token drop.

Papers: "An Image is Worth 32 Tokens for Reconstruction and Generation" (Yu et al., NeurIPS 2024);
"One-D-Piece: Image Tokenizer Meets Quality-Controllable Compression" (Miwa et al., 2025).
Official code: bytedance/1d-tokenizer @ 942a96f: modeling/titok.py (`TiTok`), modeling/modules/blocks.py
(`TiTokEncoder`, `TiTokDecoder`, `ResidualAttentionBlock`); turingmotors/One-D-Piece @ 473665d:
modeling/one_d_piece.py (`OneDPiece`).

With patch size p, grid g = image_size / p, width W and K latent tokens:

    encoder  x = [cls, PatchEmbed(image) (g^2 tokens)] + pos_embed;  l = latent_tokens + latent_pos_embed
             h = ln_post(Transformer(ln_pre([x, l]))[-K:]);  z = conv_out(h)        [B, K, quantizer.input_dim]
    quantize q = quantizer(z)                                                      [B, K, code_dim]
    decoder  m = [cls, mask_token x g^2] + pos_embed;  t = decoder_embed(q[:, :k]) + latent_pos_embed[:k]
             y = ln_post(Transformer(ln_pre([m, t]))[1 : 1 + g^2])
             image = Conv3x3(DepthToSpace_p(Linear(W -> p * p * 3)(y)))

Transformer blocks are pre-LN, x += MHA(LN(x)); x += MLP(LN(x)) with a 4x GELU (erf) MLP, attention
parameterised as `torch.nn.MultiheadAttention` (a fused `in_proj` W -> 3W and `out_proj` W -> W, both with
biases; the fused output is ordered (q | k | v), each split into heads of W / heads channels), so that
parameter counts and converted weights match one to one. LayerNorm eps is PyTorch's 1e-5.

This is the single-stage RGB TiTok (`is_legacy: False` in the official configs): the encoder permutes
(B, K, W) correctly before `conv_out` and the decoder head predicts RGB patches. The legacy two-stage
path (channel-scrambling reshape, a head over 1024 MaskGIT-VQGAN proxy codes, a frozen MaskGIT pixel
decoder) is not implemented.

Initialisation follows the official code: `latent_tokens`, `class_embedding`, `positional_embedding`,
`latent_token_positional_embedding` and the decoder's `mask_token` are W^-0.5 * N(0, 1); every Linear and
Conv weight is trunc_normal(0.02) with zero bias (TiTok._init_weights); the attention's fused `in_proj`
keeps nn.MultiheadAttention's xavier_uniform with zero bias (it is a bare Parameter, which
_init_weights does not touch), its `out_proj` (an nn.Linear) gets trunc_normal(0.02); LayerNorms are
(1, 0). Difference: jax's truncated normal cuts at +-2 std, PyTorch's trunc_normal_ at +-2.0 absolute.

Parameter names follow the official ones except: blocks `transformer/block_{i}` (official `transformer.{i}`),
MLP `fc1` / `fc2` (`c_fc` / `c_proj`), LayerNorm `scale` (`weight`), the quantizer's `codebook`
(`quantize.embedding.weight`); 1x1 convs are Dense kernels. mixtok/interop/titok.py (`convert`, `to_official`,
`python -m mixtok.interop.titok`) maps an official state dict onto these and back.

Parity with the official code (bytedance/1d-tokenizer @ 942a96f: modeling/titok.py, modeling/modules/blocks.py,
modeling/quantizer/quantizer.py; turingmotors/One-D-Piece @ 473665d: modeling/one_d_piece.py; all unmodified,
PyTorch 2.14 on the CPU), measured with

    PYTHONPATH=. $TIMM_VENV/bin/python tools/make_titok_fixtures.py --official-repo 1d-tokenizer \
        --one-d-piece-repo One-D-Piece --parity --seeds 5

The official `TiTok` (for one_d_piece_s256 One-D-Piece's `OneDPiece` on it) is built from the variant's stage-1
config with is_legacy False and finetune_decoder False, every parameter is drawn at random (embeddings, latent
tokens and codebook N(0, 1), weights N(0, 1 / fan_in), biases N(0, 0.1^2), LayerNorm weights U(0.5, 1.5): the
tool's `random_state_dict`, so that no term is negligible), the state dict is converted with
`mixtok.interop.titok.convert`, and both models encode and decode a batch of two random 256 px images (U(0, 1))
in eval mode, float32 on the CPU, mixtok under jit. Over seeds 0-4 (2026-12-07):

    variant            reconstruction: largest max-abs error   / largest |output|   latents (pre-VQ)   indices
    titok_s128         5.2e-6                                   1.1e-6               3.3e-6             all equal
    titok_b64          5.5e-6                                   1.0e-6               3.8e-6             all equal
    one_d_piece_s256   5.2e-6                                   1.1e-6               3.1e-6             all equal
      prefix decodes from the first k = 1, 16, 128 tokens, sliced and masked: 5.0e-6 (1.2e-6 of |output|)

So the reconstructions agree within 6e-6 (1.2e-6 of the largest output) and the token indices are identical,
although the nearest and second-nearest codes were as close as 1.5e-5 in squared distance. The error is float32
rounding through 8-12 blocks 512-768 wide. tests/interop/test_titok_import.py checks the golden outputs of two
official models (tests/fixtures/titok, written by the same tool: "small" width with 1-2 blocks, 32 px images,
K = 8) without torch: indices equal, images within 2e-5 (measured 2.9e-6), One-D-Piece's prefix decodes and
its training forward.

Prefix decoding. The decoder slices the latent positional embedding to the number of tokens it gets
(official `latent_token_positional_embedding[:seq_len]`), so `decode(q[:, :k])` decodes from the first
k tokens. Under `jit` a data-dependent k cannot change shapes, so a traced k (or a per-sample [B] array
of them) keeps all K tokens and masks tokens k.. out of the decoder's attention as keys: the patch
outputs then equal those of the sliced sequence up to float rounding (the masked tokens' own outputs are
discarded, and LayerNorm and the MLP act per token). A Python int k slices, exactly as the official code.
`TokenizerOutput.num_tokens` is the int32 k the decoder used (a scalar, or [B] for a per-sample k).

One-D-Piece (`tail_token_drop=True`): in training the decoder keeps only the first k tokens, with ONE
k ~ U{1..K} per step for the whole batch, drawn from the `noise` rng stream; here in the masked form.
The quantizer loss is computed over all K tokens, before the drop. Checked against turingmotors/One-D-Piece @
473665d modeling/one_d_piece.py: `OneDPiece.decode` calls `apply_tail_token_drop` when `self.training`, which
draws one `end = torch.randint(1, K + 1, (1,))` per call of `decode` (the training loop decodes once a step) for
the whole batch and keeps `z_quantized[..., :end]`, the head tokens; `forward` has run the quantizer (and its
loss) in `encode` on all K tokens before. The golden fixture's official training forward (its draw: k = 4)
equals mixtok's for a `noise` key that draws 4, with the same quantizer loss as in eval. One-D-Piece's own copy of
the TiTok code at that commit has only the legacy two-stage head; the one_d_piece_* variants here are its
training rule on the single-stage RGB model, and the fixture and parity runs build `OneDPiece` on bytedance's
single-stage `TiTok` (tools/make_titok_fixtures.py says how).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.attention import MultiHeadAttention
from mixtok.layers.conv import conv2d
from mixtok.layers.init import conv_kernel_init
from mixtok.layers.linear import dense
from mixtok.layers.mlp import Mlp
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes, zeros_with_axes
from mixtok.tokenizers.base import PrefixDecodingTokenizer, QuantizerOutput, check_square_images, patch_grid
from mixtok.tokenizers.quantizers import make_quantizer

TORCH_LAYER_NORM_EPS = 1e-5


def scaled_normal_init(scale: float, axes):
    """scale * N(0, 1): the official init of TiTok's embeddings and latent tokens (scale = width^-0.5)."""
    return param_with_axes(jax.nn.initializers.normal(stddev=scale), axes)


def embedding_param(module: nn.Module, name: str, shape: tuple, scale: float) -> jax.Array:
    """A learned embedding of `module` (`shape`, last axis the width `embed`) drawn as scale * N(0, 1)."""
    axes = (None,) * (len(shape) - 1) + ("embed",)
    return module.param(name, scaled_normal_init(scale, axes), shape, module.param_dtype)


def sample_tail_token_drop_length(rng: jax.Array, num_tokens: int) -> jax.Array:
    """One-D-Piece's tail token drop: how many head tokens to keep, k ~ U{1..num_tokens}, int32 scalar."""
    return jax.random.randint(rng, (), 1, num_tokens + 1, dtype=jnp.int32)


def prefix_key_mask(keep: jax.Array, num_tokens: int, num_prefix: int = 0) -> jax.Array:
    """Attention mask (True = may attend) hiding latent tokens >= keep from every query, as keys.

    `keep` is a scalar or [B] int array; the sequence is `num_prefix` always-visible tokens followed by
    `num_tokens` latent tokens. Returns a bool array broadcastable to [B, heads, queries, keys].
    """
    keep = jnp.asarray(keep, jnp.int32).reshape(-1, 1)  # [B or 1, 1]
    latent_visible = jnp.arange(num_tokens, dtype=jnp.int32)[None, :] < keep
    visible = jnp.concatenate([jnp.ones((keep.shape[0], num_prefix), bool), latent_visible], axis=1)
    return visible[:, None, None, :]


class MultiheadSelfAttention(MultiHeadAttention):
    """Self-attention parameterised as torch.nn.MultiheadAttention: `in_proj` W -> 3W, `out_proj` W -> W.

    The shared `MultiHeadAttention` with torch's names and in_proj init (xavier-uniform), biases on both.
    """

    QKV_NAME = "in_proj"
    PROJ_NAME = "out_proj"

    @nn.nowrap
    def qkv_kernel_init(self):
        return param_with_axes(jax.nn.initializers.xavier_uniform(), ("embed", "heads"))


class ResidualAttentionBlock(Module):
    """Pre-LN transformer block: x += MHA(ln_1(x)); x += MLP(ln_2(x)), MLP 4x with exact GELU."""

    num_heads: int
    mlp_ratio: float = 4.0

    @nn.compact
    def __call__(self, x, mask=None):
        norm = dict(epsilon=TORCH_LAYER_NORM_EPS, **self.dtype_kwargs)
        x = x + MultiheadSelfAttention(dim=x.shape[-1], num_heads=self.num_heads, **self.dtype_kwargs, name="attn")(
            LayerNorm(**norm, name="ln_1")(x), mask=mask
        )
        return x + Mlp(self.mlp_ratio, activation="gelu", use_bias=True, **self.dtype_kwargs, name="mlp")(
            LayerNorm(**norm, name="ln_2")(x)
        )


class Transformer(Module):
    """`depth` ResidualAttentionBlocks, named block_0 ... block_{depth-1}."""

    depth: int
    num_heads: int

    @nn.compact
    def __call__(self, x, mask=None):
        for index in range(self.depth):
            x = ResidualAttentionBlock(self.num_heads, **self.dtype_kwargs, name=f"block_{index}")(x, mask)
        return x


class _TiTokHalf(Module):
    """The sizes the encoder and the decoder share: a `width`-wide, `depth`-deep ViT with `num_heads` heads
    over the patches of square `image_size` images and `num_latent_tokens` latent tokens."""

    image_size: int
    patch_size: int
    width: int
    depth: int
    num_heads: int
    num_latent_tokens: int


class TiTokEncoder(_TiTokHalf):
    """Images [B, H, W, 3] and latent tokens [K, W] -> [B, K, output_dim] (official `TiTokEncoder`)."""

    output_dim: int

    @nn.compact
    def __call__(self, images, latent_tokens):
        grid = patch_grid(self.image_size, self.patch_size)
        check_square_images(images, self.image_size)
        batch, scale = images.shape[0], self.width**-0.5
        dtype = self.dtype or images.dtype
        patch = self.patch_size
        x = conv2d(self.width, patch, stride=patch, padding=0, **self.dtype_kwargs, name="patch_embed")(images)
        x = x.reshape(batch, grid * grid, self.width)
        class_embedding = embedding_param(self, "class_embedding", (1, self.width), scale)
        positional_embedding = embedding_param(self, "positional_embedding", (grid * grid + 1, self.width), scale)
        latent_positional_embedding = embedding_param(
            self, "latent_token_positional_embedding", (self.num_latent_tokens, self.width), scale
        )
        x = jnp.concatenate(
            [jnp.broadcast_to(class_embedding.astype(dtype), (batch, 1, self.width)), x.astype(dtype)], axis=1
        )
        x = x + positional_embedding.astype(dtype)
        latents = (latent_tokens + latent_positional_embedding).astype(dtype)
        x = jnp.concatenate([x, jnp.broadcast_to(latents, (batch,) + latents.shape)], axis=1)
        norm = dict(epsilon=TORCH_LAYER_NORM_EPS, **self.dtype_kwargs)
        x = LayerNorm(**norm, name="ln_pre")(x)
        x = Transformer(self.depth, self.num_heads, **self.dtype_kwargs, name="transformer")(x)
        x = LayerNorm(**norm, name="ln_post")(x[:, 1 + grid * grid :])
        # The official 1x1 Conv2d over the (fake 2-D) latent grid is this linear map.
        return dense(self.output_dim, ("embed", None), **self.dtype_kwargs, name="conv_out")(x)


class TiTokDecoder(_TiTokHalf):
    """Quantized tokens [B, K', code_dim] (K' <= K) -> images [B, H, W, 3] (official `TiTokDecoder`, RGB head).

    `keep` (None, a scalar or [B] int array) masks latent tokens >= keep out of the attention as keys.
    """

    @nn.compact
    def __call__(self, quantized, keep=None):
        grid = patch_grid(self.image_size, self.patch_size)
        batch, num_tokens, _ = quantized.shape
        if not 1 <= num_tokens <= self.num_latent_tokens:
            raise ValueError(
                f"the decoder got {num_tokens} tokens; it takes 1 to num_latent_tokens = "
                f"{self.num_latent_tokens} (a prefix of the encoder's tokens)."
            )
        scale = self.width**-0.5
        x = dense(self.width, (None, "embed"), **self.dtype_kwargs, name="decoder_embed")(quantized)
        dtype = x.dtype
        class_embedding = embedding_param(self, "class_embedding", (1, self.width), scale)
        positional_embedding = embedding_param(self, "positional_embedding", (grid * grid + 1, self.width), scale)
        mask_token = embedding_param(self, "mask_token", (1, 1, self.width), scale)
        latent_positional_embedding = embedding_param(
            self, "latent_token_positional_embedding", (self.num_latent_tokens, self.width), scale
        )
        queries = (
            jnp.concatenate([class_embedding[None], jnp.broadcast_to(mask_token, (1, grid * grid, self.width))], axis=1)
            + positional_embedding
        )
        queries = jnp.broadcast_to(queries.astype(dtype), (batch, grid * grid + 1, self.width))
        x = x + latent_positional_embedding[:num_tokens].astype(dtype)
        x = jnp.concatenate([queries, x], axis=1)
        mask = None if keep is None else prefix_key_mask(keep, num_tokens, num_prefix=grid * grid + 1)
        norm = dict(epsilon=TORCH_LAYER_NORM_EPS, **self.dtype_kwargs)
        x = LayerNorm(**norm, name="ln_pre")(x)
        x = Transformer(self.depth, self.num_heads, **self.dtype_kwargs, name="transformer")(x, mask)
        x = LayerNorm(**norm, name="ln_post")(x[:, 1 : 1 + grid * grid])
        patch = self.patch_size
        x = dense(patch * patch * 3, ("embed", None), **self.dtype_kwargs, name="ffn")(x)
        # Official Rearrange('b (p1 p2 c) h w -> b c (h p1) (w p2)'): channels ordered (p1, p2, c).
        x = x.reshape(batch, grid, grid, patch, patch, 3).transpose(0, 1, 3, 2, 4, 5)
        x = x.reshape(batch, grid * patch, grid * patch, 3)
        return nn.Conv(
            3,
            (3, 3),
            padding=1,
            **self.dtype_kwargs,
            kernel_init=conv_kernel_init((None, None, None, None)),
            bias_init=zeros_with_axes((None,)),
            name="conv_out",
        )(x)


class TiTok(PrefixDecodingTokenizer):
    """TiTok (single-stage RGB), optionally with One-D-Piece's tail token drop; see the module docstring.

    quantizer: keyword arguments of `make_quantizer`, e.g. {"name": "vq", "codebook_size": 4096,
      "code_dim": 12, "l2_normalize": True}; the encoder outputs the quantizer's `input_dim` channels.
    tail_token_drop: One-D-Piece training (one k ~ U{1..K} per step, `noise` rng stream); also makes the
      tokenizer advertise prefix decoding (`PREFIX_DECODING`), which the decoder supports either way.
    """

    num_latent_tokens: int = 128
    tail_token_drop: bool = False

    @property
    def PREFIX_DECODING(self) -> bool:  # noqa: N802 (the contract's class-attribute name)
        return self.tail_token_drop

    def setup(self):
        if self.quantizer is None or "name" not in self.quantizer:
            raise ValueError(
                f"quantizer must be a mapping with a 'name' (make_quantizer's arguments), got {self.quantizer!r}."
            )
        if self.num_latent_tokens < 1:
            raise ValueError(f"num_latent_tokens must be >= 1, got {self.num_latent_tokens}.")
        self.quantize = make_quantizer(**dict(self.quantizer))
        self.latent_tokens = self.param(
            "latent_tokens",
            scaled_normal_init(self.encoder_width**-0.5, (None, "embed")),
            (self.num_latent_tokens, self.encoder_width),
            self.param_dtype,
        )
        self.encoder = TiTokEncoder(
            self.image_size,
            self.patch_size,
            self.encoder_width,
            self.encoder_depth,
            self.encoder_heads,
            self.num_latent_tokens,
            self.quantize.input_dim,
            **self.dtype_kwargs,
        )
        self.decoder = TiTokDecoder(
            self.image_size,
            self.patch_size,
            self.decoder_width,
            self.decoder_depth,
            self.decoder_heads,
            self.num_latent_tokens,
            **self.dtype_kwargs,
        )

    def encode(self, images, *, train: bool = False) -> QuantizerOutput:
        """Images [B, H, W, 3] in [-1, 1] -> QuantizerOutput with quantized [B, K, code_dim], indices [B, K]."""
        latents = self.encoder(images, self.latent_tokens)
        return self.quantize(latents, train=train)

    def _decode(self, quantized, num_tokens, train: bool) -> tuple[jax.Array, jax.Array]:
        if num_tokens is None and train and self.tail_token_drop:
            num_tokens = sample_tail_token_drop_length(self.make_rng("noise"), quantized.shape[1])
        if num_tokens is None:
            return self.decoder(quantized), jnp.asarray(quantized.shape[1], jnp.int32)
        if isinstance(num_tokens, int):
            if not 1 <= num_tokens <= quantized.shape[1]:
                raise ValueError(
                    f"num_tokens {num_tokens} must be in 1..{quantized.shape[1]} (the number of tokens given)."
                )
            return self.decoder(quantized[:, :num_tokens]), jnp.asarray(num_tokens, jnp.int32)
        keep = jnp.clip(jnp.asarray(num_tokens, jnp.int32), 1, quantized.shape[1])
        return self.decoder(quantized, keep), keep
