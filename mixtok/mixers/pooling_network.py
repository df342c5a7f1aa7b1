"""PoNet: token mixing by multi-granularity pooling (Tan et al., ICLR 2022), for sequences and grids.

"PoNet: Pooling Network for Efficient Token Mixing in Long Sequences" (arXiv 2110.02442). Official:
lxchtan/PoNet @ cc9a29a3, examples/LRA/code/attention.py `Attention` (attn_type "ponet": the projections and
the output Linear `ff`) and examples/LRA/code/attention_ponet.py `PoNetAttention` (the pooling), the LRA
version, whose segments are `segment_num` equal pieces of the sequence. On a sequence x [B, L, C], with
heads of width d = C / h:

    Q, K, O = W_q x, W_k x, W_v x     split into h heads        (Linear C -> C with bias, each)
    Lc, S = W_local x, W_segment x                              (Linear C -> C with bias)
    g = mean_L(Q)  per head;  a = softmax_L(g . K / sqrt(d));  G = sum_L a K     global attention pooling
    S' = max of S over each token's segment, broadcast back to its tokens       segment max pooling
    L' = MaxPool1d(3, stride 1, padding 1)(Lc)  over the sequence               local max pooling
    y = ff((G + S') * O + L')                                                    ff: Linear C -> C with bias

Segments (the official `get_segment_index`): token i is in segment i // (L // segment_num + 1), so there are
ceil(L / (L // segment_num + 1)) of them, not always `segment_num` (L = 2000, segment_num 64: 63 segments of
32 tokens and one of 16). The official LRA settings (examples/LRA/code/lra_config.py): segment_num 64 for
ListOps and Retrieval, 32 for Image, 1 for Pathfinder, 4096 for Text (pieces of 2 tokens at length 4096).

Padding (`mask` [B, L], 1 on real tokens, the official `attention_mask`): padded Q rows are zeroed and g is
the sum over real tokens over their count; padded scores are set to -10000 before the softmax; padded rows
of S and Lc are set to -10000 before pooling; padded rows of (G + S') * O + L' are zeroed (before `ff`, whose
bias they then get, as the official). The official computes the pooling in float32 (autocast off): so does
this module, whatever `dtype`.

Grids: an NHWC map [B, H, W, C] is mixed as the sequence of its H * W tokens (raster order) for the global
pooling, but its segments are the grid's ROWS (segment max over W: every token gets the max of its row) and
its local pooling is a `local_window` x `local_window` max pool on the grid (stride 1, -inf padding): both
mixtok's choices (the paper pools "sentences" and 1-D windows of text; a row is an image's natural segment,
a square window its natural neighbourhood). So `token_mixers=("pooling_network", ...)` works in a MetaFormer
at any grid; `segment_num` is not used there and `mask` is refused.

The BERT version of PoNet (segments are sentences delimited by [CLS] / [SEP], post-LN blocks) also exists as
huggingface/transformers: src/transformers/models/ponet/modeling_ponet.py (present in that repository at commit
ee54f519); it is not what this module follows or was compared with.

Parameters keep the official names (W_q, W_k, W_v, W_local, W_segment, ff), flax Dense kernels [in, out].
Initialisation follows mixtok's Linear (trunc-normal 0.02, zero bias); the official keeps PyTorch's default.
Heads: `num_heads`, or `dim // head_dim` (head_dim 32, the official LRA head_dim; LRA's dim 64 has 2 heads).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.linear import dense
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register

MASK_FILL = -10000.0  # the official masked_fill value for scores, segments and windows


def segment_index(length: int, segment_num: int) -> np.ndarray:
    """The official `get_segment_index`: token i belongs to segment i // (length // segment_num + 1)."""
    return np.arange(length) // (length // segment_num + 1)


def segment_max(x: jax.Array, segment_length: int) -> jax.Array:
    """Max of x [B, L, C] over consecutive pieces of `segment_length` tokens, broadcast back to each token."""
    batch, length, channels = x.shape
    pieces = -(-length // segment_length)
    padded = jnp.pad(x, [(0, 0), (0, pieces * segment_length - length), (0, 0)], constant_values=-jnp.inf)
    pooled = padded.reshape(batch, pieces, segment_length, channels).max(axis=2)
    return jnp.repeat(pooled, segment_length, axis=1)[:, :length]


def window_max(x: jax.Array, window: int, axes: tuple[int, ...]) -> jax.Array:
    """Max over a centred window of `window` positions along each of `axes` (stride 1, -inf padding)."""
    dims = [1] * x.ndim
    pads = [(0, 0)] * x.ndim
    for axis in axes:
        dims[axis] = window
        pads[axis] = (window // 2, window // 2)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, tuple(dims), (1,) * x.ndim, tuple(pads))


@register("pooling_network")
class PoolingNetwork(Mixer):
    """PoNet's pooling mixer on [B, L, C] sequences (optional `mask`) or NHWC grids; see the module docstring."""

    num_heads: int | None = None
    head_dim: int = 32
    segment_num: int = 64  # sequences only; grids pool rows
    local_window: int = 3

    def heads(self) -> int:
        heads = self.num_heads if self.num_heads is not None else max(1, self.dim // self.head_dim)
        if heads < 1 or self.dim % heads:
            raise ValueError(f"PoolingNetwork: num_heads={heads} must be >= 1 and divide dim={self.dim}.")
        return heads

    def _check(self, x, mask):
        if x.ndim not in (3, 4) or x.shape[-1] != self.dim:
            raise ValueError(
                f"PoolingNetwork(dim={self.dim}) takes a sequence [B, L, {self.dim}] or an NHWC map "
                f"[B, H, W, {self.dim}]; got shape {x.shape}."
            )
        if self.local_window < 1 or self.local_window % 2 == 0:
            raise ValueError(f"PoolingNetwork: local_window must be odd (a centred window); got {self.local_window}.")
        if self.segment_num < 1:
            raise ValueError(f"PoolingNetwork: segment_num must be >= 1; got {self.segment_num}.")
        if mask is not None and (x.ndim != 3 or tuple(mask.shape) != tuple(x.shape[:2])):
            raise ValueError(
                f"PoolingNetwork: mask must be [B, L] = {tuple(x.shape[:2])} for a sequence input "
                f"(grids take no mask); got mask {tuple(mask.shape)} for input {tuple(x.shape)}."
            )

    @nn.compact
    def __call__(self, x, *, mask=None, train: bool = False):
        self._check(x, mask)
        heads = self.heads()
        head_dim = self.dim // heads
        common = self.dtype_kwargs

        def linear(name):
            return dense(self.dim, ("embed", "mlp"), name=name, **common)(x).astype(jnp.float32)

        q, k, o = linear("W_q"), linear("W_k"), linear("W_v")
        local, segment = linear("W_local"), linear("W_segment")
        grid = x.shape if x.ndim == 4 else None
        batch = x.shape[0]
        q, k = q.reshape(batch, -1, heads, head_dim), k.reshape(batch, -1, heads, head_dim)

        # Global: one attention-pooled vector per head, the query the mean of Q, the values K.
        if mask is None:
            g = q.mean(axis=1)
        else:
            valid = mask.astype(jnp.float32)[:, :, None, None]
            g = (q * valid).sum(axis=1) / valid.sum(axis=1)
        scores = jnp.einsum("bhd,blhd->bhl", g, k) / math.sqrt(head_dim)
        if mask is not None:
            scores = jnp.where(mask[:, None, :] > 0.5, scores, MASK_FILL)
        pooled = jnp.einsum("bhl,blhd->bhd", jax.nn.softmax(scores, axis=-1), k).reshape(batch, 1, self.dim)

        if grid is None:
            if mask is not None:
                keep = mask[:, :, None] > 0.5
                segment, local = jnp.where(keep, segment, MASK_FILL), jnp.where(keep, local, MASK_FILL)
            length = x.shape[1]
            segment = segment_max(segment, length // self.segment_num + 1)
            local = window_max(local, self.local_window, axes=(1,))
        else:
            segment = jnp.max(segment, axis=2, keepdims=True)  # rows are the segments
            local = window_max(local, self.local_window, axes=(1, 2))
            pooled = pooled.reshape(batch, 1, 1, self.dim)
        y = (pooled + segment) * o + local
        if mask is not None:
            y = jnp.where(mask[:, :, None] > 0.5, y, 0.0)
        y = y.astype(self.dtype or x.dtype)
        return dense(self.dim, ("mlp", "embed"), name="ff", **common)(y)
