"""LARP, a holistic video tokenizer: learned query tokens read a clip's patches out of a ViT, then a stochastic VQ.

Paper: "LARP: Tokenizing Videos with a Learned Autoregressive Generative Prior" (Wang et al., ICLR 2025).
Official code: hywang66/LARP @ 8aaed63: models/larp_tokenizer.py (`LARPTokenizer`, `OutputLayer`),
models/transformer.py (`TransformerEncoderParallel`), models/bottleneck.py (`Bottleneck`, `SimpleVectorQuantizer`),
models/embed.py (`PatchEmbed3D`, the sin-cos tables), configured by cfgs/larp_tokenizer.yaml and
scripts/train_larp_tokenizer_reproduce.sh. The autoregressive prior trained beside it is
mixtok/tokenizers/larp_prior.py.

Clips are [B, T, H, W, 3] (T = `frames`, H = W = `image_size`). With temporal patch pt, spatial patch p, the
token grid (t, h, w) = (T / pt, H / p, W / p), N = t h w patch tokens, K learned queries, widths D_e, D_d:

    encoder  x = Linear(patch (c, pt, p, p) flattened) + PE_3d            [B, N, D_e]  (official Conv3d)
             h = Blocks([x, queries])[:, -K:]                             [B, K, D_e]  no final norm
    bottleneck  z = in_linear(h) [B, K, 16];  q = StochasticVQ(z)  (cosine, 8192 codes, `noise` rng in training)
    decoder  l = out_linear(q) + PE_1d(K)                                 [B, K, D_d]
             m = PE_3d + token_type_embed (the patch queries)             [B, N, D_d]
             y = Blocks([l, m])[:, -N:];  video = unpatchify(Linear(LayerNorm(y)))   [B, T, H, W, 3]

PE_3d (official `get_3d_sincos_pos_embed`, fixed): for token (t, h, w) the D-wide sin-cos of t plus the
concatenation of the D/2-wide sin-cos of w and of h (MAE's 2-D table, whose first half encodes the w coordinate);
PE_1d (`get_1d_sincos_pos_embed_from_grid`): [sin(pos omega), cos(pos omega)], omega_i = 10000^(-i / (D / 2)).
Both are constants, not parameters (official buffers). Blocks are timm's ViT `Block` (pre-norm, LayerNorm eps
1e-6, qkv without bias, 4x exact-GELU MLP): mixtok's `ViTBlock` (mixtok/models/vit.py), attention through
mixtok.layers.attention. The official flags of cfgs/larp_tokenizer.yaml are fixed: learned encoder queries
(Gaussian init std 0.02), fixed patch PEs, fixed decoder latent PE, a learned token-type embedding on the decoder's
patch queries only (std 0.02); `encoder_name` / `decoder_name` none (both `transformer_encoder_parallel`).

Parameter names (mixtok <-> official; mixtok/interop/larp.py converts):

    patch_embed/kernel [3 pt p p, D_e]           x_embedder.proj.weight [D_e, 3, pt, p, p] (flattened (c, pt, p, p))
    encoder_latent_query_embed [K, D_e]         the same
    encoder/blocks_i/...                        encoder.blocks.i.... (norm1, attn.qkv, attn.proj, norm2, mlp.fc1/2)
    in_linear, out_linear                       bottleneck.in_linear, bottleneck.out_linear
    quantize/codebook [8192, 16]                bottleneck.regularizer.embedding.weight
    decoder_patch_query_token_type_embed        the same [1, 1, D_d]
    decoder/blocks_i/...                        decoder.blocks.i....
    final_layer/norm_final, final_layer/linear  the same

Initialisation: as the official `initialize_weights` for every parameter except the transformer blocks' Linear
layers: here `ViTBlock`'s timm trunc_normal(0.02), there xavier_uniform (LARP applies `_basic_init` to every
nn.Linear); the patch embedding and bottleneck Linears are xavier_uniform with zero bias, the output Linear is
zero (weights and bias), queries and the token-type embedding N(0, 0.02^2), the codebook kaiming-uniform
(mixtok/tokenizers/stochastic_vq.py). This matters only for training from scratch.

Contract (docs/contracts.md, "Tokenizer"): `encode` -> QuantizerOutput (quantized [B, K, 16] are the unit-norm
codes, indices [B, K]); `decode(quantized)`, `decode_indices(indices)`; `__call__` -> TokenizerOutput with the
reconstruction [B, T, H, W, 3]. The official trainer feeds clips in [0, 1]; mixtok's tokenizer configs use
[-1, 1]: the model is the same either way. Randomness: only the quantizer's sample (`noise` stream,
`train=True`); LARP has no dropout in the tokenizer. Differences from the official code: the clip's
frame count and size are fixed (the official `encode_eval` also takes fewer frames, slicing the PE); the decoder
uses the encoder's patch sizes (the official unpatchify does too; `decoder_patch_size` exists there but must be
equal for the output to be a clip of the input's size).

Parity with the official code (hywang66/LARP @ 8aaed63, unmodified; PyTorch 2.14 and timm 1.0.31 on the CPU),
measured with

    PYTHONPATH=. $TIMM_VENV/bin/python tools/make_larp_fixtures.py --official-repo LARP --parity

The official `LARPTokenizer` is built with cfgs/larp_tokenizer.yaml and the reproduce script's widths (larp_l_long
and its gptc-S prior, no dropout), every parameter drawn at random (the tool's `random_state_dict`: weights
N(0, 1 / fan_in), biases N(0, 0.1^2), LayerNorm weights U(0.5, 1.5), embeddings and codebook N(0, 1)), converted
with `mixtok.interop.larp.convert` / `convert_prior`, and both encode and decode one random 16 x 128 x 128 clip
(U(0, 1)) in eval mode with argmax codes (`set_vq_eval_deterministic(True)`), float32, mixtok under jit
(2026-12-07):

    reconstruction     max |difference| 5.2e-6   (largest |output| 3.78)
    latents (pre-VQ)   1.3e-5                    (largest 13.6)
    code indices       1024 of 1024 equal        (smallest gap between the two best cosines: 5.9e-5)
    quantizer loss     equal (0.0337)
    prior logits       1.2e-6 (largest 0.92);  prior loss at step 0: 9.5e-7 (of 8.76)

`to_official(convert(state_dict))` is the official state dict exactly and loads with strict=True.
tests/tokenizers/test_larp.py checks golden outputs of a tiny official model (tests/fixtures/larp, written by the
same tool: 8 frames of 16 px, width 32, 2 + 1 blocks, 8 tokens, 64 codes, a 1-layer prior) without torch:
indices equal, reconstructions within 2e-5 (measured 1.3e-6), prior logits and loss.
"""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.init import XAVIER_UNIFORM_INIT
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes, zeros_with_axes
from mixtok.models.vit import ViTBlock
from mixtok.tokenizers.base import QuantizerOutput, TokenizerOutput, check_token_indices
from mixtok.tokenizers.quantizers import make_quantizer
from mixtok.tokenizers.stochastic_vq import StochasticVectorQuantizer  # noqa: F401  (registers "stochastic_vq")

VIT_NORM_EPSILON = 1e-6
QUERY_INIT_STD = 0.02
LATENT_PE_SCALE = 10000.0

LARP_VQ = {
    "name": "stochastic_vq",
    "codebook_size": 8192,
    "code_dim": 16,
    "beta": 0.25,
    "codebook_weight": 1.0,
    "temperature": 0.03,
}


def sincos_1d(dim: int, positions, scale: float = LATENT_PE_SCALE) -> np.ndarray:
    """[M, dim] float64: [sin(pos omega), cos(pos omega)], omega_i = scale^(-i / (dim / 2)) (MAE's 1-D table)."""
    if dim % 2:
        raise ValueError(f"sin-cos position embeddings need an even width; got {dim}.")
    omega = 1.0 / scale ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.asarray(positions, np.float64).reshape(-1)[:, None] * omega[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_3d(dim: int, frames: int, grid: int) -> np.ndarray:
    """[frames * grid * grid, dim] float32, tokens ordered (t, h, w): sincos_1d(t) + [sincos(w) | sincos(h)]
    (LARP's `get_3d_sincos_pos_embed`: MAE's 2-D table, whose first half encodes w, plus a 1-D table of t)."""
    if dim % 4:
        raise ValueError(f"the 3-D sin-cos position embedding needs a width divisible by 4; got {dim}.")
    rows, cols = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32), indexing="ij")
    spatial = np.concatenate([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1)  # [(h, w), dim]
    temporal = sincos_1d(dim, np.arange(frames, dtype=np.float32))  # [t, dim]
    return (temporal[:, None, :] + spatial[None, :, :]).reshape(-1, dim).astype(np.float32)


def xavier_dense(features: int, axes, **kwargs):
    """A Dense layer with torch's xavier_uniform weight and zero bias (LARP's `_basic_init`)."""
    return dense(features, axes, kernel_init=param_with_axes(XAVIER_UNIFORM_INIT, axes), **kwargs)


class LARPTransformer(Module):
    """LARP's `TransformerEncoderParallel`: timm blocks over [context, queries], returning the query tokens."""

    depth: int
    num_heads: int

    @nn.compact
    def __call__(self, context, queries):
        x = jnp.concatenate([context, queries], axis=1)
        for index in range(self.depth):
            x, _ = ViTBlock(self.num_heads, qkv_bias=False, **self.dtype_kwargs, name=f"blocks_{index}")(x, None)
        return x[:, -queries.shape[1] :]


class LARP(Module):
    """The LARP tokenizer (module docstring): clips [B, T, H, W, 3] <-> K holistic tokens of a stochastic VQ.

    quantizer: keyword arguments of `make_quantizer` (default LARP_VQ, the official 8192 x 16 cosine VQ with
      temperature 0.03); `quantize.input_dim` is the bottleneck width.
    """

    frames: int = 16
    image_size: int = 128
    patch_size: int = 8
    temporal_patch_size: int = 4
    num_latent_tokens: int = 1024
    encoder_width: int = 768
    encoder_depth: int = 12
    encoder_heads: int = 12
    decoder_width: int = 768
    decoder_depth: int = 12
    decoder_heads: int = 12
    quantizer: Mapping[str, Any] | None = None

    PREFIX_DECODING = False

    @property
    def grid(self) -> tuple[int, int]:
        """(temporal, spatial) tokens per side: (frames / temporal_patch_size, image_size / patch_size)."""
        return self.frames // self.temporal_patch_size, self.image_size // self.patch_size

    @property
    def num_patch_tokens(self) -> int:
        t, g = self.grid
        return t * g * g

    def setup(self):
        if self.frames % self.temporal_patch_size or self.image_size % self.patch_size:
            raise ValueError(
                f"frames {self.frames} must be a multiple of temporal_patch_size {self.temporal_patch_size} and "
                f"image_size {self.image_size} a multiple of patch_size {self.patch_size}."
            )
        if self.num_latent_tokens < 1:
            raise ValueError(f"num_latent_tokens must be >= 1, got {self.num_latent_tokens}.")
        quantizer = dict(LARP_VQ if self.quantizer is None else self.quantizer)
        if "name" not in quantizer:
            raise ValueError(f"quantizer must name a quantizer (make_quantizer's arguments), got {quantizer!r}.")
        self.quantize = make_quantizer(**quantizer)
        patch_dim = 3 * self.temporal_patch_size * self.patch_size**2
        self.patch_embed = xavier_dense(self.encoder_width, (None, "embed"), **self.dtype_kwargs)
        normal = param_with_axes(jax.nn.initializers.normal(QUERY_INIT_STD), (None, "embed"))
        self.encoder_latent_query_embed = self.param(
            "encoder_latent_query_embed", normal, (self.num_latent_tokens, self.encoder_width), self.param_dtype
        )
        self.encoder = LARPTransformer(self.encoder_depth, self.encoder_heads, **self.dtype_kwargs)
        self.in_linear = xavier_dense(self.quantize.input_dim, ("embed", None), **self.dtype_kwargs)
        self.out_linear = xavier_dense(self.decoder_width, (None, "embed"), **self.dtype_kwargs)
        self.decoder_patch_query_token_type_embed = self.param(
            "decoder_patch_query_token_type_embed",
            param_with_axes(jax.nn.initializers.normal(QUERY_INIT_STD), (None, None, "embed")),
            (1, 1, self.decoder_width),
            self.param_dtype,
        )
        self.decoder = LARPTransformer(self.decoder_depth, self.decoder_heads, **self.dtype_kwargs)
        self.final_layer = OutputLayer(patch_dim, **self.dtype_kwargs)

    def _check_videos(self, videos) -> None:
        expected = (self.frames, self.image_size, self.image_size, 3)
        if videos.ndim != 5 or videos.shape[1:] != expected:
            raise ValueError(
                f"LARP takes clips [B, {self.frames}, {self.image_size}, {self.image_size}, 3] (frames, image_size, "
                f"RGB; [B, T, H, W, C]); got shape {tuple(videos.shape)}."
            )

    def patchify(self, videos):
        """[B, T, H, W, C] -> [B, N, C pt p p], tokens ordered (t, h, w), channels (c, pt, p, p) (Conv3d's)."""
        batch, _, _, _, channels = videos.shape
        (t, g), pt, p = self.grid, self.temporal_patch_size, self.patch_size
        x = videos.reshape(batch, t, pt, g, p, g, p, channels).transpose(0, 1, 3, 5, 7, 2, 4, 6)
        return x.reshape(batch, t * g * g, channels * pt * p * p)

    def unpatchify(self, x):
        """[B, N, pt p p c] (channels (pt, p, p, c), the official head's) -> [B, T, H, W, c]."""
        batch = x.shape[0]
        (t, g), pt, p = self.grid, self.temporal_patch_size, self.patch_size
        x = x.reshape(batch, t, g, g, pt, p, p, -1).transpose(0, 1, 4, 2, 5, 3, 6, 7)
        return x.reshape(batch, t * pt, g * p, g * p, -1)

    def encode_latents(self, videos):
        """Clips -> the bottleneck input z [B, K, code_dim] (before the quantizer's normalisation)."""
        self._check_videos(videos)
        t, g = self.grid
        x = self.patch_embed(self.patchify(videos))
        x = x + jnp.asarray(sincos_3d(self.encoder_width, t, g), x.dtype)
        queries = jnp.broadcast_to(
            self.encoder_latent_query_embed.astype(x.dtype),
            (x.shape[0],)
            + (
                self.num_latent_tokens,
                self.encoder_width,
            ),
        )
        return self.in_linear(self.encoder(x, queries))

    def encode(self, videos, *, train: bool = False) -> QuantizerOutput:
        """Clips [B, T, H, W, 3] -> QuantizerOutput: quantized [B, K, code_dim] unit-norm codes, indices [B, K]."""
        return self.quantize(self.encode_latents(videos), train=train)

    def decode(self, quantized, *, num_tokens=None, train: bool = False):
        """Quantized tokens [B, K, code_dim] -> clips [B, T, H, W, 3]. All K tokens are needed (`num_tokens` None)."""
        if num_tokens is not None:
            raise ValueError(f"LARP decodes from all {self.num_latent_tokens} tokens; num_tokens={num_tokens}.")
        if quantized.ndim != 3 or quantized.shape[1] != self.num_latent_tokens:
            raise ValueError(
                f"LARP's decoder takes [B, {self.num_latent_tokens}, code_dim] tokens; got {tuple(quantized.shape)}."
            )
        t, g = self.grid
        latents = self.out_linear(quantized)
        latents = latents + jnp.asarray(
            sincos_1d(self.decoder_width, np.arange(self.num_latent_tokens)), jnp.float32
        ).astype(latents.dtype)
        queries = jnp.asarray(sincos_3d(self.decoder_width, t, g)) + self.decoder_patch_query_token_type_embed[0]
        queries = jnp.broadcast_to(queries.astype(latents.dtype), (latents.shape[0],) + queries.shape)
        return self.unpatchify(self.final_layer(self.decoder(latents, queries)))

    def decode_indices(self, indices, *, num_tokens=None):
        """Token indices [B, K] -> clips, through the codebook. A ValueError for ids outside it (unless traced)."""
        check_token_indices(indices, self.quantize.codebook_size, type(self).__name__)
        return self.decode(self.quantize.decode_indices(indices), num_tokens=num_tokens)

    def __call__(self, videos, *, train: bool = False, num_tokens=None) -> TokenizerOutput:
        """Encode, quantize (sampled codes when `train`, `noise` rng) and decode."""
        quantizer_output = self.encode(videos, train=train)
        reconstruction = self.decode(quantizer_output.quantized, num_tokens=num_tokens, train=train)
        return TokenizerOutput(
            reconstruction=reconstruction,
            quantizer=quantizer_output,
            num_tokens=jnp.asarray(self.num_latent_tokens, jnp.int32),
        )


class OutputLayer(Module):
    """LARP's `OutputLayer`: LayerNorm (eps 1e-6) -> Linear(D -> pt p p 3), zero-initialised."""

    features: int

    @nn.compact
    def __call__(self, x):
        x = LayerNorm(epsilon=VIT_NORM_EPSILON, **self.dtype_kwargs, name="norm_final")(x)
        return dense(
            self.features,
            ("embed", None),
            kernel_init=zeros_with_axes(("embed", None)),
            **self.dtype_kwargs,
            name="linear",
        )(x)
