"""EViT: keep the tokens the class token attends to most, fuse the rest into one (Liang et al., "Not All Patches
are What You Need: Expediting Vision Transformers via Token Reorganizations", ICLR 2022). Official code:
youweiliang/evit @ 5ca95a7, evit.py (`Attention.forward`, `Block.forward`) and helpers.py (`complement_idx`),
followed step by step:

1. Where: between the attention residual and the MLP (`Block.forward`: x = x + attn(norm1(x)); reorganise;
   x = x + mlp(norm2(x))), at the layers whose keep rate is below 1: the paper's DeiT-S setting keeps 0.7 at
   the 0-based layers 3, 6 and 9 (`deit_small_patch16_shrink_base`, `--base_keep_rate 0.7`, `--drop_loc
   "(3, 6, 9)"`), `TokenReduction.keep_at("evit", 0.7, (3, 6, 9), depth=12)`.
2. Score: the class token's attention probabilities to the other tokens averaged over heads
   (`attn[:, :, 0, 1:].mean(dim=1)`), `Signals.cls_attention[:, P:]`.
3. Count: `left_tokens = math.ceil(keep_rate * (N - 1))` kept beside the class token
   (`mixtok.reduction.base.keep_rate_count`); with `fuse_token` one more token, the fused one. When
   `left_tokens == N - 1` the official layer does nothing, and so does mixtok's.
4. Kept tokens: `torch.topk(cls_attn, left_tokens, largest=True, sorted=True)`, so after the class token they
   come in DEScending order of class attention, not in their original order (`jax.lax.top_k`, the same order;
   exact ties, which random inputs never have, go to the lower index here and are unspecified in torch).
5. Fused token (`fuse_token=True`): sum over the other tokens of token * its class attention
   (`extra_token = torch.sum(non_topk * non_topk_attn)`, the raw probabilities, NOT renormalised to sum to 1),
   appended last: [class token, kept tokens, fused token].

Sizes and what mixtok adds (the official code has no sizes and no proportional attention):
- a kept token keeps its size, a dropped one loses it; the fused token's size is the sum of the sizes it
  fused, so with `fuse_token` the sizes still sum to the number of patches. Its value stays the official
  attention-weighted sum (not divided by that size).
- proportional attention: off by default (the rule's `Rule.prop_attn` is False), as EViT has none;
  `prop_attn=True` adds log(size) to the attention logits after the first reduction.
- `num_protected` P: the official code protects only the class token (a DeiT distillation token is scored
  and may be dropped or fused like a patch). mixtok keeps all P leading tokens first and scores the rest.
- `fuse_token` defaults to True, the paper's EViT ("fuse the rest into one"); the official `--fuse_token`
  flag is off unless given. `False` drops the inattentive tokens.
- One corner the static schedule cannot follow: with `fuse_token` and `left_tokens == N - 2`, the official
  layer "fuses" the single leftover token (scaling it by its attention) without reducing the count; mixtok's
  schedule sees no reduction there (the count stays N) and leaves the layer alone.

The selection is an integer top-k (no gradient, as in the official code); the kept and fused tokens are
differentiable in the tokens and, through the fused token's weights, in the attention.

Official parity (measured 2026-12-07, timm 1.0.31, torch CPU, JAX 0.10): the official `EViT` DeiT-S (evit.py,
keep 0.7 at layers 3, 6, 9) with timm's `deit_small_patch16_224` state dict (random weights, randomised as in
tools/make_reduction_fixtures.py) against mixtok's `deit_small_patch16_224` with
`TokenReduction.keep_at("evit", 0.7, (3, 6, 9), depth=12)`, two N(0, 1) 224-px images, float32: max |logit
difference| 3.2e-6 with fusion and 3.3e-6 without (197 -> 140 -> 100 -> 72 tokens with fusion, 197 -> 139 ->
98 -> 69 without; logits of scale 4, which the reduction moves by 0.24; the unreduced models differ by 3.2e-6).
In the suite (tests/reduction/test_evit.py, fixtures made by the official code): the tiny DeiT's logits to 1e-5
with and without fusion, and one official `Block`'s output tokens (its MLP zeroed, so the order of the kept
tokens and of the fused token shows) to 1e-6, measured 3e-8.
"""

import jax
import jax.numpy as jnp

from mixtok.reduction.base import (
    Reduction,
    Rule,
    Signals,
    gather_tokens,
    keep_rate_count,
    one_hot_rows,
    register_rule,
)


def evit_count(num_in: int, num_protected: int, rate: float, *, fuse_token: bool = True) -> int:
    """Tokens after an EViT layer: P + ceil(rate * (N - P)), plus the fused token when `fuse_token` and some
    token is left over (N when nothing is)."""
    kept = keep_rate_count(num_in, num_protected, rate)
    if kept >= num_in:
        return num_in
    return kept + int(bool(fuse_token))


def evit(tokens, sizes, signals: Signals, *, num_out: int, num_protected: int, fuse_token: bool = True) -> Reduction:
    """EViT's token reorganisation on one layer: [protected, top class-attention tokens (descending), fused]."""
    batch, n = tokens.shape[:2]
    p = num_protected
    left = num_out - p - int(bool(fuse_token))
    if left < 1 or left > n - p:
        raise ValueError(f"evit: num_out {num_out} leaves {left} of the {n - p} unprotected tokens; need 1..{n - p}.")
    attention = signals.cls_attention.astype(jnp.float32)
    _, idx = jax.lax.top_k(attention[:, p:], left)  # descending, as torch.topk(sorted=True)
    protected = jnp.broadcast_to(jnp.arange(p, dtype=idx.dtype), (batch, p))
    index = jnp.concatenate([protected, idx + p], axis=1)
    transform = one_hot_rows(index, n)
    kept = gather_tokens(tokens, index)
    kept_sizes = gather_tokens(sizes.astype(jnp.float32), index)
    if not fuse_token:
        return Reduction(kept, kept_sizes, transform)
    # The complement of the kept and protected tokens, weighted by their class attention (the fused row).
    rest = 1.0 - jnp.sum(transform, axis=1)
    weights = attention * rest
    fused = jnp.einsum("bn,bnc->bc", weights, tokens.astype(jnp.float32)).astype(tokens.dtype)
    fused_size = jnp.sum(sizes.astype(jnp.float32) * rest, axis=1)
    return Reduction(
        jnp.concatenate([kept, fused[:, None]], axis=1),
        jnp.concatenate([kept_sizes, fused_size[:, None]], axis=1),
        jnp.concatenate([transform, weights[:, None]], axis=1),
    )


register_rule(
    "evit",
    Rule(
        fn=evit,
        signals=("cls_attention",),
        count=evit_count,
        amount_kind="keep_rate",
        paper="Not All Patches are What You Need: Expediting Vision Transformers via Token Reorganizations "
        "(Liang et al., ICLR 2022)",
        official="youweiliang/evit @ 5ca95a7: evit.py, helpers.py",
        count_options=("fuse_token",),
    ),
)
