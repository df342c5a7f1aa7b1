"""DiffRate's search: a ViT whose per-layer prune and merge counts are learnt, by the differentiable discrete proxy.

Official code: OpenGVLab/DiffRate @ 91ae3e3, DiffRate/ddp.py (`DiffRate`: the proxy), DiffRate/patch/deit.py
(`DiffRateBlock.forward` training branch, `DiffRateAttention.softmax_with_policy`, `calculate_flop_training`),
DiffRate/utils.py (`ste_ceil`, `ste_min`), followed step by step:

- Rates. Every block but the first has two rate modules (prune, merge), each logits over the candidates
  "keep k patches", k = P, P - g, ..., > 0 (P patches, granularity g; `--granularity 4`). Its kept count is
  ceil(candidates . softmax(logits)) + prefix, the ceiling straight-through (`ste_ceil`); logits start at
  zero. The first block is not searched (the official one candidate, all tokens).
- Masks, not removal: in search the sequence keeps its N tokens and a mask marks the ones still in play.
  A rate module's mask over the tokens zeroes [kept, tokens in play) and carries the gradient of the
  probability that each token is kept, sum of the probabilities of the candidates that keep it
  (`get_token_mask`: hard mask - p.detach() + p). Attention multiplies exp(logits - max) by the mask of the
  keys (a token always sees itself) and normalises as (a + eps / N) / (sum + eps), eps = 1e-6.
- A block: attention (proportional: + log size) and residual; sort the non-prefix tokens (with their sizes
  and mask) by the class token's head-mean attention, descending; if the prune count is below the tokens in
  play, mask [prune, in play); if the merge count is below the tokens left, the tokens [merge, left) are
  averaged into their most similar (cosine of the detached tokens) token of [prefix, merge) (plain mean, the
  sources kept, masked), their sizes times that similarity, then every size of [0, left) clamped to at
  least 1, and added in; MLP and residual on all N tokens.
- FLOPs (`calculate_flop_training`): per block 4 N C^2 + 2 N^2 C + 8 N' C^2, N' = min(N, prune, merge),
  whose gradient goes to both the prune and the merge count (`ste_min`), none to N; plus the patch
  embedding and the classifier. The loss (engine.py `train_one_epoch`): cross-entropy (with the official
  mixup / label smoothing) + 5 (FLOPs / 1e9 - target)^2.

Parity with the official training branch (OpenGVLab/DiffRate @ 91ae3e3 on timm 1.0.31, train mode, drop
path off, random rate logits): the tiny DeiT fixture (tests/fixtures/reduction/diffrate.npz, granularity 2)
logits to 3.6e-7, the rate logits' gradients to 2.2e-7, the FLOPs and kept counts exactly
(tests/reduction/test_diffrate.py). Full size, run outside the suite: deit_small_patch16_224 with timm's
random initialisation, granularity 4, loss cross-entropy + 5 (GFLOPs - 2.9)^2: logits to 2.0e-6 (up to 1.5),
gradients to 4.8e-8 (up to 0.13), FLOPs (2.3238e9) and the kept counts exactly.

Differences: the tokens in play are counted from the hard mask (the official `mask[0].sum().int()` also
reads the straight-through float, which can round a count down by one); prefix tokens (a distillation
token too) all stay first and are never merged into (the official code has a class token only).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.drop import DropPath
from mixtok.layers.mlp import Mlp
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.models.backbone import per_stage, stage_drop_path_rates
from mixtok.models.vit import NORM_EPSILON, VisionTransformer, ViTAttention
from mixtok.reduction.diffrate import from_counts

POLICY_EPS = 1e-6


def candidates(num_patches: int, granularity: int) -> np.ndarray:
    """Kept-patch candidates of a rate module: num_patches, num_patches - g, ... > 0 (`torch.arange(P, 0, -g)`)."""
    return np.arange(num_patches, 0, -granularity, dtype=np.float32)


def expected_kept(logits: jax.Array, choices: jax.Array, num_prefix: int) -> jax.Array:
    """ceil(choices . softmax(logits)) + prefix, the ceiling straight-through (`update_kept_token_number`)."""
    expected = jnp.dot(choices, jax.nn.softmax(logits))
    return expected + jax.lax.stop_gradient(jnp.ceil(expected) - expected) + num_prefix


def kept_probability(logits: jax.Array, choices: jax.Array, num_prefix: int, n: int) -> jax.Array:
    """[n] probability that each position is kept: of the candidates k with position < k + prefix
    (`get_token_probability`)."""
    keeps = jnp.arange(n)[None, :] < (choices[:, None] + num_prefix)
    return jnp.sum(jax.nn.softmax(logits)[:, None] * keeps, axis=0)


def straight_through_mask(logits, choices, num_prefix: int, kept, in_play, n: int) -> jax.Array:
    """[n] mask zeroing positions [kept, in_play), with the straight-through gradient of `kept_probability`."""
    probability = kept_probability(logits, choices, num_prefix, n)
    position = jnp.arange(n)
    hard = jnp.where((position >= kept) & (position < in_play), 0.0, 1.0)
    return hard - jax.lax.stop_gradient(probability) + probability


def ste_min(n, prune, merge):
    """min(n, prune, merge), its gradient passed whole to prune and to merge, none to n (`STE_Min`)."""
    return jax.lax.stop_gradient(jnp.minimum(jnp.minimum(n, prune), merge) - prune - merge) + prune + merge


class SearchAttention(ViTAttention):
    """ViT attention with the search's masked softmax (`softmax_with_policy`); returns (output, probabilities)."""

    @nn.compact
    def __call__(self, x, *, bias, policy, train=False):
        q, k, v = self.project_qkv(x)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        logits = logits * np.float32(q.shape[-1] ** -0.5) + bias
        n = x.shape[1]
        keep = policy[:, None, None, :]
        keep = keep + (1.0 - keep) * jnp.eye(n, dtype=jnp.float32)
        weights = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))) * keep
        probs = (weights + POLICY_EPS / n) / (jnp.sum(weights, axis=-1, keepdims=True) + POLICY_EPS)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
        return self.project_out(out, train=train), probs


class SearchBlock(Module):
    """A ViT block in search: same parameters as `ViTBlock`, tokens masked rather than removed."""

    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path: float = 0.0
    num_protected: int = 1

    @nn.compact
    def __call__(self, x, sizes, mask, rates, *, train: bool = False):
        """rates: None (the first block) or (prune logits, merge logits, candidates). Returns (x, sizes, mask,
        prune count, merge count): the counts (floats, straight-through) for the FLOPs."""
        common = self.dtype_kwargs
        batch, n, _ = x.shape
        prefix = self.num_protected
        attn = SearchAttention(x.shape[-1], num_heads=self.num_heads, qkv_bias=self.qkv_bias, name="attn", **common)
        normed = LayerNorm(epsilon=NORM_EPSILON, name="norm1", **common)(x)
        out, probs = attn(normed, bias=jnp.log(sizes)[:, None, None, :], policy=mask, train=train)
        x = x + DropPath(self.drop_path)(out, train=train)
        prune_kept = merge_kept = jnp.float32(n)
        if rates is not None:
            order = jnp.argsort(jnp.mean(probs[:, :, 0, prefix:], axis=1), axis=1, descending=True) + prefix
            order = jnp.concatenate([jnp.broadcast_to(jnp.arange(prefix), (batch, prefix)), order], axis=1)
            x = jnp.take_along_axis(x, order[..., None], axis=1)
            sizes = jnp.take_along_axis(sizes, order, axis=1)
            mask = jnp.take_along_axis(mask, order, axis=1)
            x, sizes, mask, prune_kept, merge_kept = self._compress(x, sizes, mask, *rates)
        y = Mlp(self.mlp_ratio, activation="gelu", use_bias=True, name="mlp", **common)(
            LayerNorm(epsilon=NORM_EPSILON, name="norm2", **common)(x), train=train
        )
        return x + DropPath(self.drop_path)(y, train=train), sizes, mask, prune_kept, merge_kept

    @nn.nowrap
    def _compress(self, x, sizes, mask, prune_logits, merge_logits, choices):
        n, prefix = x.shape[1], self.num_protected
        position = jnp.arange(n)
        in_play = jnp.sum(jax.lax.stop_gradient(mask[0]))
        prune_kept = expected_kept(prune_logits, choices, prefix)
        prune_to = jax.lax.stop_gradient(prune_kept)
        prune_mask = straight_through_mask(prune_logits, choices, prefix, prune_to, in_play, n)
        mask = jnp.where(prune_to < in_play, mask * prune_mask[None], mask)
        left = jnp.minimum(in_play, prune_to)
        merge_kept = expected_kept(merge_logits, choices, prefix)
        merge_to = jax.lax.stop_gradient(merge_kept)
        merging = merge_to < left
        merge_mask = straight_through_mask(merge_logits, choices, prefix, merge_to, left, n)
        metric = jax.lax.stop_gradient(x).astype(jnp.float32)
        metric = metric / jnp.linalg.norm(metric, axis=-1, keepdims=True)
        similarity = jnp.einsum("bsc,bdc->bsd", metric, metric)
        destination = (position >= prefix) & (position < merge_to)
        similarity = jnp.where(destination[None, None, :], similarity, -jnp.inf)
        node_idx, node_max = jnp.argmax(similarity, axis=-1), jnp.max(similarity, axis=-1)
        source = (position >= merge_to) & (position < left)
        assign = jax.nn.one_hot(node_idx, n, dtype=jnp.float32) * source[None, :, None]  # [B, src, dst]
        counts = 1.0 + jnp.sum(assign, axis=1)
        merged = (x.astype(jnp.float32) + jnp.einsum("bsd,bsc->bdc", assign, x.astype(jnp.float32))) / counts[..., None]
        scaled = jnp.where(source[None], sizes * node_max, sizes)
        scaled = jnp.where((position < left)[None], jnp.maximum(scaled, 1.0), scaled)
        merged_sizes = scaled + jnp.einsum("bsd,bs->bd", assign, scaled)
        x = jnp.where(merging, merged.astype(x.dtype), x)
        sizes = jnp.where(merging, merged_sizes, sizes)
        mask = jnp.where(merging, mask * merge_mask[None], mask)
        return x, sizes, mask, prune_kept, merge_kept


class DiffRateSearchViT(VisionTransformer):
    """A `VisionTransformer` run as DiffRate's search: the same parameters plus `prune_logits` and
    `merge_logits` [depth - 1, candidates] (the rates of blocks 1..), the logits as the backbone returns them,
    and the FLOPs, differentiable in the rates, sown as ("diffrate", "flops") (apply with mutable=["diffrate"])."""

    granularity: int = 4

    def stage_maps(self, images, *, train: bool):
        if self.reduction_schedule is not None:
            raise ValueError("DiffRateSearchViT learns its own schedule: build it without a token_reduction.")
        if self.num_prefix_tokens < 1:
            raise ValueError("DiffRate ranks tokens by the class token's attention: it needs class_token=True.")
        h, w = self.grid
        choices = jnp.asarray(candidates(h * w, self.granularity))
        shape = (self.depths[0] - 1, choices.shape[0])
        prune = self.param("prune_logits", nn.initializers.zeros_init(), shape)
        merge = self.param("merge_logits", nn.initializers.zeros_init(), shape)
        (mlp_ratio,) = per_stage(self.mlp_ratios, 1, "mlp_ratios")
        common = self.dtype_kwargs
        dim = self.dims[0]
        x = self.embed(images, train=train)  # VisionTransformer's token embedding, the same parameters
        batch, n, _ = x.shape
        sizes, mask = jnp.ones((batch, n), jnp.float32), jnp.ones((batch, n), jnp.float32)
        kept, maps = [], []
        for i, rate in enumerate(stage_drop_path_rates(self.drop_path_rate, self.depths)[0]):
            x, sizes, mask, p, m = SearchBlock(
                num_heads=self.num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=self.qkv_bias,
                drop_path=rate,
                num_protected=self.num_prefix_tokens,
                name=f"blocks_{i}",
                **common,
            )(x, sizes, mask, None if i == 0 else (prune[i - 1], merge[i - 1], choices), train=train)
            kept.append((p, m))
            maps.append(x)
        self.sow("diffrate", "flops", self.flops(kept, n, dim))
        return maps

    @nn.nowrap
    def flops(self, kept, n: int, dim: int) -> jax.Array:
        """`calculate_flop_training`: differentiable in the kept counts (`ste_min`)."""
        total = jnp.float32(n * dim * self.patch_size * self.patch_size * 3 + dim * max(self.num_classes, 0))
        tokens = jnp.float32(n)
        for prune_kept, merge_kept in kept:
            total = total + 4 * tokens * dim * dim + 2 * tokens * tokens * dim
            tokens = ste_min(tokens, prune_kept, merge_kept)
            total = total + 8 * tokens * dim * dim
        return total


def kept_numbers(prune_logits, merge_logits, num_patches: int, granularity: int, num_prefix: int = 1):
    """The schedule the rates stand for now: (prune_kept_num, merge_kept_num) lists, the first block all tokens
    (the official `get_kept_num`)."""
    choices = candidates(num_patches, granularity)
    full = num_patches + num_prefix

    def counts(logits):
        logits = np.asarray(logits, np.float64)
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        return [full] + [int(np.ceil(np.float32(choices @ p))) + num_prefix for p in probs.astype(np.float32)]

    return counts(prune_logits), counts(merge_logits)


def schedule_from_rates(prune_logits, merge_logits, num_patches: int, granularity: int, num_prefix: int = 1, **kw):
    """A `TokenReduction` of the rates' current counts."""
    return from_counts(*kept_numbers(prune_logits, merge_logits, num_patches, granularity, num_prefix), **kw)
