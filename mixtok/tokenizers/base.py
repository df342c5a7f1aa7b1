"""The contracts every quantizer and tokenizer in mixtok.tokenizers follows.

Quantizers (VectorQuantizer, FSQ, LFQ, BSQ, ResidualQuantizer, DiagonalGaussian) are linen modules

    out = quantizer(z, train=False)        # z [..., code_dim] -> QuantizerOutput
    codes = quantizer.decode_indices(out.indices)   # the values the decoder saw, [..., code_dim]

and all return a `QuantizerOutput`. Tokenizers (VQGAN, TiTok, One-D-Piece, FlexTok-style) are linen
modules with

    out = tokenizer(images, train=False, num_tokens=None)   # -> TokenizerOutput
    q = tokenizer.encode(images, train=False)               # -> QuantizerOutput; q.indices are the tokens
    images = tokenizer.decode(q.quantized, num_tokens=None) # from quantized values
    images = tokenizer.decode_indices(q.indices, num_tokens=None)

`decode_indices` takes integer ids in [0, codebook size): other dtypes raise a ValueError, and so do ids
outside the codebook when the indices are concrete arrays (numpy, or jax outside jit). Under `jax.jit`
(or grad / vmap) the ids are traced values and cannot be checked: an id outside the codebook then
decodes without an error (FSQ, LFQ and BSQ wrap it round to another code; a VQ codebook gives NaN for
ids >= its size and counts negative ids from the end), so check ids from an untrusted source before a
jitted decode (`check_token_indices`, or `mixtok.tokenize`, which checks a token file's ids itself).

Images are NHWC in the data pipeline's normalised space (the tokenizer configs use mean = std = 0.5,
so pixels are in [-1, 1]); reconstructions are in the same space. `num_tokens=k` decodes from the
first k tokens only (prefix decoding), where the tokenizer supports it (`PREFIX_DECODING = True`).

Randomness: quantizers and tokenizers draw from the `noise` rng stream (stochastic codes, the
number of kept tokens in tail-token drop and nested dropout) and only when `train=True`.
State: EMA codebooks and usage counters live in the `quantizer_state` collection, which the
tokenizer task updates every training step (as `batch_stats` is for BatchNorm).
"""

from collections.abc import Mapping
from typing import Any

import flax
import jax
import numpy as np

from mixtok.layers.module import Module

QUANTIZER_STATE = "quantizer_state"  # mutable collection of EMA codebooks / usage counters


@flax.struct.dataclass
class QuantizerOutput:
    """What every quantizer returns.

    quantized: [..., code_dim] the values passed on to the decoder, with straight-through (or
      rotation-trick) gradients to the input; for the Gaussian bottleneck, the sample.
    indices: integer codes, [...] (int32); [..., depth] for a ResidualQuantizer; None for the
      continuous (Gaussian) bottleneck.
    loss: scalar float32, the quantizer's own auxiliary loss with its weights applied (commitment
      + codebook, entropy, KL); add it to the reconstruction loss.
    stats: dict of scalar float32 diagnostics (e.g. "commitment_loss", "codebook_usage",
      "perplexity"); logged, never differentiated.
    """

    quantized: jax.Array
    indices: jax.Array | None
    loss: jax.Array
    stats: dict[str, jax.Array]


@flax.struct.dataclass
class TokenizerOutput:
    """What a tokenizer's `__call__` returns.

    reconstruction: [B, H, W, 3] in the input's normalised space.
    quantizer: the QuantizerOutput of the tokens the decoder saw.
    num_tokens: int32 scalar, how many tokens the decoder used (K unless tokens were dropped).
    extra: model-specific outputs (e.g. logits), may be empty.
    """

    reconstruction: jax.Array
    quantizer: QuantizerOutput
    num_tokens: Any
    extra: dict[str, Any] = flax.struct.field(default_factory=dict)


def patch_grid(image_size: int, patch_size: int) -> int:
    """Patches per side of a square `image_size` image; a ValueError unless `patch_size` divides it."""
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}.")
    return image_size // patch_size


def check_square_images(images: jax.Array, image_size: int) -> None:
    """A ValueError naming the shape unless `images` is [B, image_size, image_size, 3]."""
    if images.shape[1:] != (image_size, image_size, 3):
        raise ValueError(
            f"images have shape {images.shape}; expected [B, {image_size}, {image_size}, 3] "
            f"(image_size {image_size}, RGB, NHWC)."
        )


def non_integer_tokens(dtype) -> str | None:
    """None for an integer dtype; else what is wrong, e.g. "they hold float32 values; token ids are integers"."""
    if np.issubdtype(np.dtype(dtype), np.integer):
        return None
    return f"they hold {np.dtype(dtype)} values; token ids are integers (int32), one per token"


def out_of_range_tokens(indices: np.ndarray, codebook_size: int, *, listed: int = 5) -> str | None:
    """None when every id is in [0, codebook_size); else how many are not, where (the first `listed`
    positions), the smallest and largest id found, and the valid range."""
    indices = np.asarray(indices)
    bad = (indices < 0) | (indices >= codebook_size)
    count = int(np.count_nonzero(bad))
    if not count:
        return None
    positions = np.argwhere(bad)[:listed]
    where = ", ".join("[" + ", ".join(str(int(i)) for i in position) + "]" for position in positions)
    first = f"first {len(positions)} at " if count > len(positions) else "at "
    return (
        f"{count} of {indices.size} token ids are outside the codebook ({first}{where}; the ids found range "
        f"from {int(indices.min())} to {int(indices.max())}); valid ids are 0..{codebook_size - 1} "
        f"(the tokenizer's {codebook_size:,} codes)"
    )


def check_token_indices(indices, codebook_size: int | None, owner: str) -> None:
    """A ValueError unless `indices` are integer ids in [0, codebook_size).

    The dtype is checked always (it is static); the values only on concrete arrays: a traced array
    (under jax.jit, grad, vmap) has no values to look at, so it passes unchecked. `codebook_size` None
    (a continuous bottleneck) checks nothing: that quantizer's `decode_indices` raises by itself.
    """
    if codebook_size is None:
        return
    dtype = indices.dtype if hasattr(indices, "dtype") else np.asarray(indices).dtype
    problem = non_integer_tokens(dtype)
    if problem is None and not isinstance(indices, jax.core.Tracer):
        problem = out_of_range_tokens(np.asarray(indices), codebook_size)
    if problem is not None:
        raise ValueError(f"{owner}.decode_indices: {problem}.")


class PrefixDecodingTokenizer(Module):
    """What the 1D tokenizers (TiTok, One-D-Piece, FlexTok) share: a ViT encoder and decoder over the
    `patch_size` patches of square `image_size` images, and decoding from the first k tokens.

    Fields: the two transformers' `*_width`, `*_depth` and `*_heads`, and `quantizer` (keyword
    arguments of `make_quantizer`; what None means is the subclass's). A subclass defines
    `encode(images, *, train) -> QuantizerOutput`, a `quantize` submodule, and
    `_decode(quantized, num_tokens, train) -> (images, tokens used)`, where `num_tokens` is None (all
    tokens), a Python int (the tokens are sliced) or an int array, scalar or [B] (later tokens masked).
    """

    image_size: int = 256
    patch_size: int = 16
    encoder_width: int = 512
    encoder_depth: int = 8
    encoder_heads: int = 8
    decoder_width: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 8
    quantizer: Mapping[str, Any] | None = None

    @property
    def grid_size(self) -> int:
        """Patches per side (`image_size // patch_size`)."""
        return patch_grid(self.image_size, self.patch_size)

    def decode(self, quantized, *, num_tokens=None, train: bool = False):
        """Quantized tokens [B, K', code_dim] -> images, decoded from the first `num_tokens` tokens."""
        return self._decode(quantized, num_tokens, train)[0]

    def decode_indices(self, indices, *, num_tokens=None):
        """Token indices [B, K'] (a prefix of the K tokens) -> images, through the quantizer's codes.

        A ValueError for non-integer indices, and for ids outside the codebook unless traced (module docstring).
        """
        check_token_indices(indices, self.quantize.codebook_size, type(self).__name__)
        return self.decode(self.quantize.decode_indices(indices), num_tokens=num_tokens)

    def __call__(self, images, *, train: bool = False, num_tokens=None) -> TokenizerOutput:
        """Encode, quantize and decode; the output's `num_tokens` says how many tokens the decoder used."""
        quantizer_output = self.encode(images, train=train)
        reconstruction, used = self._decode(quantizer_output.quantized, num_tokens, train)
        return TokenizerOutput(reconstruction=reconstruction, quantizer=quantizer_output, num_tokens=used)
