"""OmniTokenizer, a joint image-video tokenizer: one set of weights for images [B, H, W, 3] and clips [B, T, H, W, 3].

Paper: "OmniTokenizer: A Joint Image-Video Tokenizer for Visual Generation" (Wang et al., NeurIPS 2024).
Official code: FoundationVision/OmniTokenizer @ 701b619: OmniTokenizer/omnitokenizer.py (`VQGAN`,
`OmniTokenizer_Encoder`, `OmniTokenizer_Decoder`), OmniTokenizer/modules/attention.py (the layers:
mixtok/tokenizers/omnitokenizer_layers.py), OmniTokenizer/modules/codebook.py (`Codebook`),
OmniTokenizer/modules/vae.py; the recipe scripts/recons/train.sh.

With spatial patch p, temporal patch pt and width D, a clip of T = 1 + k pt frames (an image is T = 1):

    encoder  first frame: p x p patches -> LN -> Linear -> LN;  frames 2..T: pt x p x p patches -> LN -> Linear -> LN
             tokens [B, 1 + k, H/p, W/p, D]
             spatial transformer per latent frame ((B T') x (h w) tokens; blocks `encoder_blocks`, "ttww")
             temporal transformer per location ((B h w) x T' tokens; causal attention, causal PEG)
    quantize z = pre_quant(tokens) (Linear D -> code_dim);  VQ: l2-normalised, EMA codebook 8192 x 8
             (KL variant: Linear D -> 2 code_dim, a diagonal Gaussian)
    decoder  post_quant (Linear code_dim -> D); temporal transformer, then spatial (`decoder_blocks`, "tttt");
             first latent frame -> Linear(D, 3 p p) -> 1 frame;  the rest -> Linear(D, 3 pt p p) -> pt frames each

Layers: a 't' layer is x += PEG(x); x += Attention(x); x += GEGLU-FF(x), a 'w' layer x += WindowAttention(x);
x += FF(x) (Swin window attention, 8 x 8 tokens, no shift, relative-position bias table); each transformer ends
in a gamma-only LayerNorm. The attention of a 't' layer l2-normalises q and k (learned per-channel scales,
logit scale 8); spatial layers add 2-D RoPE in stage 2 and 3 (`spatial_pos="rope"`), PEG is a causal
depthwise 3x3x3 conv. Details and the official quirks (`position_biases`, the temporal PEG's reshape) are in
omnitokenizer_layers.py.

Quantizer (official `Codebook` with `--l2_code --no_random_restart`): z = F.normalize(pre_quant(x)), nearest
of 8192 x 8 EMA codes by squared L2 (the codes themselves are not normalised: `normalize_codebook=False`),
EMA decay 0.99 with Laplace smoothing eps 1e-7, loss 0.25 MSE(z, sg[e]) (no codebook loss), straight-through.
That is mixtok's VectorQuantizer (quantizers.py) with `normalize_codebook=False`, `ema_epsilon=1e-7`.
Differences: the official codebook starts from randn(8192, 8) and is re-initialised from the first training
batch (tiled, jittered z); mixtok's starts from U(-1/K, 1/K) (cluster sizes 1). The KL variant (stage 3,
`--use_vae --kl_weight 1e-6`) is mixtok's DiagonalGaussian with kl_weight 1e-6; in eval it decodes the mean,
where the official `encode` samples.

Shapes. Encoding an image gives indices [B, h, w] (quantized [B, h, w, code_dim]); a clip [B, T', h, w], T' =
1 + (T - 1) / pt; `decode` and `decode_indices` take either and return an image or a clip. h, w are H / p and
W / p; with window layers they must be multiples of the window (8): images of 64 px steps at p = 8. Frames
must number 1 + k pt.

Differences from the official code:
- `fix_temporal_peg=False` (default) reproduces the official temporal PEG, which views the temporal layers'
  ((B h w), T') tokens as [B, T', h, w] by a plain reshape, scrambling positions: for clips with T' > 1 a
  latent frame's tokens then depend on later frames (tests/tokenizers/test_omnitokenizer.py shows it). With
  True the PEG reshapes per location and the encoder is causal: frame t's tokens never depend on frames after
  it. Images (T' = 1) are the same either way. Converted official weights want False.
- `position_biases` (default False, what the official model computes on PyTorch >= 2.1: no continuous position
  bias, no ALiBi) or True (the official fallback path): omnitokenizer_layers.py.
- Initialisation: Linear weights trunc_normal(0.02), zero biases, LayerNorms (1, 0) (the official
  `--initialize_vit`); the PEG convs flax's default, q/k scales 1, the bias table trunc_normal(0.02), null
  key/values N(0, 1) as the official ones. Non-square grids are accepted (RoPE and the position bias use rows and
  columns), where the official code assumes square ones.
- Not implemented: `patch_embed="cnn"`, pooling / upsampling blocks ('a', 'm', 'l', 'n', 'r'), `defer_*_pool`,
  `gen_upscale`, the external (lucidrains) codebook; the losses and discriminators are mixtok.tokenizers.losses'.

Parity: mixtok/interop/omnitokenizer.py converts official weights; the figures are in its docstring.
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.tokenizers.base import QuantizerOutput, TokenizerOutput, check_token_indices
from mixtok.tokenizers.omnitokenizer_layers import TORCH_LN_EPS, OmniTransformer
from mixtok.tokenizers.quantizers import make_quantizer

OMNITOKENIZER_VQ = {
    "name": "vq",
    "codebook_size": 8192,
    "code_dim": 8,
    "l2_normalize": True,
    "normalize_codebook": False,
    "ema_decay": 0.99,
    "ema_epsilon": 1e-7,
    "beta": 0.25,
}
OMNITOKENIZER_KL = {"name": "gaussian", "code_dim": 8, "kl_weight": 1e-6}


class PatchEmbed(Module):
    """[B, t, H, W, C] -> [B, t / frames, H / p, W / p, dim]: (c, pt, p1, p2)-ordered patches, LN, Linear, LN."""

    dim: int
    patch_size: int
    frames: int = 1

    @nn.compact
    def __call__(self, x):
        b, t, height, width, c = x.shape
        p, pt = self.patch_size, self.frames
        x = x.reshape(b, t // pt, pt, height // p, p, width // p, p, c).transpose(0, 1, 3, 5, 7, 2, 4, 6)
        x = x.reshape(b, t // pt, height // p, width // p, c * pt * p * p)
        x = LayerNorm(epsilon=TORCH_LN_EPS, name="norm_in", **self.dtype_kwargs)(x)
        x = dense(self.dim, ("conv_in", "embed"), name="proj", **self.dtype_kwargs)(x)
        return LayerNorm(epsilon=TORCH_LN_EPS, name="norm_out", **self.dtype_kwargs)(x)


class ToPixels(Module):
    """[B, t, h, w, dim] -> [B, t frames, h p, w p, C]: Linear(dim, C pt p p), channels ordered (c, pt, p1, p2)."""

    patch_size: int
    frames: int = 1
    channels: int = 3

    @nn.compact
    def __call__(self, x):
        b, t, h, w, _ = x.shape
        p, pt, c = self.patch_size, self.frames, self.channels
        x = dense(c * pt * p * p, ("embed", "conv_out"), name="proj", **self.dtype_kwargs)(x)
        x = x.reshape(b, t, h, w, c, pt, p, p).transpose(0, 1, 5, 2, 6, 3, 7, 4)
        return x.reshape(b, t * pt, h * p, w * p, c)


class OmniTokenizer(Module):
    """The joint image-video tokenizer (module docstring); `mixtok.tokenizers.create_tokenizer("omnitokenizer_vq")`."""

    patch_size: int = 8
    temporal_patch_size: int = 4
    dim: int = 512
    heads: int = 8
    dim_head: int = 64
    ff_mult: float = 4.0
    temporal_depth: int = 4
    encoder_blocks: str = "ttww"
    decoder_blocks: str = "tttt"
    window_size: int = 8
    spatial_pos: str = "rope"
    causal_temporal: bool = True
    causal_peg: bool = True
    num_null_kv: int = 0
    position_biases: bool = False
    fix_temporal_peg: bool = False
    image_channels: int = 3
    quantizer: Mapping[str, Any] | None = None
    attention_implementation: str | None = None

    PREFIX_DECODING: ClassVar[bool] = False

    def __post_init__(self):
        if self.spatial_pos not in ("rel", "rope"):
            raise ValueError(f"OmniTokenizer: spatial_pos={self.spatial_pos!r}; valid: 'rel', 'rope'.")
        for name in ("encoder_blocks", "decoder_blocks"):
            blocks = getattr(self, name)
            if not blocks or set(blocks) - {"t", "w"}:
                raise ValueError(f"OmniTokenizer: {name}={blocks!r}; use 't' (global) and 'w' (window) layers.")
        super().__post_init__()

    def _transformer(self, blocks: str, *, spatial: bool) -> OmniTransformer:
        return OmniTransformer(
            self.dim,
            blocks,
            self.heads,
            self.dim_head,
            self.ff_mult,
            causal=self.causal_temporal and not spatial,
            causal_peg=self.causal_peg,
            spatial=spatial,
            spatial_pos=self.spatial_pos if spatial else "rel",  # official: temporal layers keep the default
            window=self.window_size,
            num_null_kv=self.num_null_kv,
            position_biases=self.position_biases,
            per_location_peg=self.fix_temporal_peg and not spatial,
            attention_implementation=self.attention_implementation,
            **self.dtype_kwargs,
        )

    def setup(self):
        quantizer = dict(OMNITOKENIZER_VQ if self.quantizer is None else self.quantizer)
        self.quantize = make_quantizer(quantizer.pop("name"), **quantizer)
        p, pt, c = self.patch_size, self.temporal_patch_size, self.image_channels
        self.patch_embed_first_frame = PatchEmbed(self.dim, p, 1, **self.dtype_kwargs)
        self.patch_embed = PatchEmbed(self.dim, p, pt, **self.dtype_kwargs)
        self.encoder_spatial = self._transformer(self.encoder_blocks, spatial=True)
        self.encoder_temporal = self._transformer("t" * self.temporal_depth, spatial=False)
        self.pre_quant = dense(self.quantize.input_dim, ("embed", None), **self.dtype_kwargs)
        self.post_quant = dense(self.dim, (None, "embed"), **self.dtype_kwargs)
        self.decoder_temporal = self._transformer("t" * self.temporal_depth, spatial=False)
        self.decoder_spatial = self._transformer(self.decoder_blocks, spatial=True)
        self.to_pixels_first_frame = ToPixels(p, 1, c, **self.dtype_kwargs)
        self.to_pixels = ToPixels(p, pt, c, **self.dtype_kwargs)

    # ------------------------------------------------------------------------------------------ shapes

    def _as_clip(self, x):
        """([B, T, H, W, C], is_image) from an image or a clip, with the checks."""
        if x.ndim not in (4, 5) or x.shape[-1] != self.image_channels:
            raise ValueError(
                f"OmniTokenizer takes images [B, H, W, {self.image_channels}] or clips [B, T, H, W, "
                f"{self.image_channels}]; got shape {x.shape}."
            )
        is_image = x.ndim == 4
        x = x[:, None] if is_image else x
        frames, height, width = x.shape[1:4]
        pt, p = self.temporal_patch_size, self.patch_size
        if (frames - 1) % pt:
            raise ValueError(
                f"OmniTokenizer: a clip of {frames} frames; frames must be 1 + k * temporal_patch_size "
                f"({pt}): 1, {1 + pt}, {1 + 2 * pt}, ..."
            )
        if height % p or width % p:
            raise ValueError(f"OmniTokenizer: frames of {height} x {width} px; both sides must be multiples of {p}.")
        return x, is_image

    @staticmethod
    def _run(transformer, tokens, *, spatial: bool):
        """tokens [B, T, h, w, D] through a spatial ((B T), (h w)) or temporal ((B h w), T) transformer."""
        b, t, h, w, d = tokens.shape
        if spatial:
            return transformer(tokens.reshape(b * t, h * w, d), (b, t, h, w)).reshape(tokens.shape)
        seq = tokens.transpose(0, 2, 3, 1, 4).reshape(b * h * w, t, d)
        return transformer(seq, (b, t, h, w)).reshape(b, h, w, t, d).transpose(0, 3, 1, 2, 4)

    # ------------------------------------------------------------------------------------------ halves

    def encode_features(self, x):
        """Images or clips -> pre-quantizer features [B, T', h, w, quantizer input] (a clip layout always)."""
        clip, _ = self._as_clip(x)
        tokens = self.patch_embed_first_frame(clip[:, :1])
        if clip.shape[1] > 1:
            tokens = jnp.concatenate([tokens, self.patch_embed(clip[:, 1:])], axis=1)
        elif self.is_initializing():  # an image initialises the clip embedding too: one set of weights for both
            self.patch_embed(jnp.zeros((1, self.temporal_patch_size) + clip.shape[2:], clip.dtype))
        tokens = self._run(self.encoder_spatial, tokens, spatial=True)
        tokens = self._run(self.encoder_temporal, tokens, spatial=False)
        return self.pre_quant(tokens)

    def encode(self, x, *, train: bool = False) -> QuantizerOutput:
        """Images [B, H, W, 3] -> tokens [B, h, w]; clips [B, T, H, W, 3] -> [B, T', h, w] (QuantizerOutput)."""
        features = self.encode_features(x)
        if x.ndim == 4:
            features = features[:, 0]
        return self.quantize(features, train=train)

    def decode(self, quantized, *, num_tokens=None, train: bool = False):
        """Quantized [B, h, w, code_dim] -> images, or [B, T', h, w, code_dim] -> clips of 1 + (T' - 1) pt frames."""
        del train
        if num_tokens is not None:
            raise ValueError(f"OmniTokenizer decodes every token; num_tokens={num_tokens} must be None.")
        if quantized.ndim not in (4, 5):
            raise ValueError(
                f"OmniTokenizer.decode takes [B, h, w, code_dim] (an image) or [B, T', h, w, code_dim] (a clip); "
                f"got shape {quantized.shape}."
            )
        is_image = quantized.ndim == 4
        tokens = self.post_quant(quantized[:, None] if is_image else quantized)
        tokens = self._run(self.decoder_temporal, tokens, spatial=False)
        tokens = self._run(self.decoder_spatial, tokens, spatial=True)
        pixels = self.to_pixels_first_frame(tokens[:, :1])
        if tokens.shape[1] > 1:
            pixels = jnp.concatenate([pixels, self.to_pixels(tokens[:, 1:])], axis=1)
        elif self.is_initializing():
            self.to_pixels(tokens[:1])
        return pixels[:, 0] if is_image else pixels

    def decode_indices(self, indices, *, num_tokens=None):
        """Token ids [B, h, w] (image) or [B, T', h, w] (clip) -> pixels; a ValueError for bad ids (base.py)."""
        check_token_indices(indices, self.quantize.codebook_size, type(self).__name__)
        return self.decode(self.quantize.decode_indices(indices), num_tokens=num_tokens)

    def __call__(self, x, *, train: bool = False, num_tokens=None) -> TokenizerOutput:
        """Encode, quantize and decode an image or clip batch; the reconstruction has the input's shape."""
        quantizer_output = self.encode(x, train=train)
        reconstruction = self.decode(quantizer_output.quantized, num_tokens=num_tokens)
        used = jnp.asarray(quantizer_output.quantized[..., 0].size // x.shape[0], jnp.int32)
        return TokenizerOutput(reconstruction=reconstruction, quantizer=quantizer_output, num_tokens=used)
