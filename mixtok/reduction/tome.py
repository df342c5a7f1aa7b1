"""ToMe: bipartite soft matching with size-weighted merging (Bolya et al., "Token Merging: Your ViT but Faster",
ICLR 2023). Official code: facebookresearch/ToMe @ af95e4b, tome/merge.py (`bipartite_soft_matching`,
`merge_wavg`, `merge_source`) and tome/patch/timm.py (where it acts in a timm ViT), followed step by step:

1. Metric: the layer's attention keys averaged over heads (`k.mean(1)` returned by `ToMeAttention`),
   L2-normalised per token.
2. Alternate split: A = tokens 0, 2, 4, ..., B = tokens 1, 3, 5, ...; scores = A B^T (cosine similarity).
   The class token (token 0, in A) gets a row of -inf and the distillation token (token 1, the first of B)
   a column of -inf, so neither is merged nor merged into.
3. Each A token's best B match (node_max, node_idx); A sorted by node_max, descending; the first r are
   merged into their match ("src" -> "dst"), the rest stay ("unm"). r is capped at (N - P) // 2.
4. `merge_wavg`: size-weighted averages, x <- scatter_add(x * s) / scatter_add(s), sizes added.
5. Output order: [unmerged A (re-sorted by index when there is a class token, so it stays first), B]; with a
   distillation token [unm[:1], dst[:1], unm[1:], dst[1:]], so the two protected tokens lead.

In the block (tome/patch/timm.py `ToMeBlock`): x = x + attn(norm1(x)); merge; x = x + mlp(norm2(x)), with
proportional attention (log of the sizes added to the attention logits) in every layer.

The official code decides the matching under `torch.no_grad()`; here the indices are integers (no
gradient) and the merge is differentiable in the tokens, as there. Without a class token the unmerged
tokens keep the node_max order (the official code sorts them only when there is one). Protected tokens
beyond a class and a distillation token (P > 2) are not in the official code and raise.

Parity with the official code (measured 2026-12-07, timm 1.0.31, torch 2.14 CPU, JAX 0.10.2): timm's
deit_small_patch16_224 with every weight randomised (tests/interop/test_timm.py's scheme) and two N(0, 1)
224-px images, patched by `tome.patch.timm` with r = 8 and r = 16, against mixtok's deit_small_patch16_224 on
the converted weights with `TokenReduction.constant("tome", r, 12)`: largest logit difference 3.5e-6 (r = 8)
and 3.4e-6 (r = 16), logit std 1.09; deit_small_distilled_patch16_224: 2.3e-6 and 2.4e-6. The suite checks
a tiny DeiT made the same way (tests/fixtures/reduction/tome.npz, tools/make_reduction_fixtures.py) to 1e-5.
"""

import jax
import jax.numpy as jnp

from mixtok.reduction.base import Reduction, Rule, Signals, register_rule, remove_count

NEG_INF = -jnp.inf


def bipartite_soft_matching(metric: jax.Array, r: int, num_protected: int = 0):
    """The matching of one layer: (unm_idx [B, Na - r], src_idx [B, r], dst_idx [B, r]) into the A / B halves.

    `metric` [B, N, d]; `num_protected` 0 (no prefix token), 1 (class token) or 2 (class and distillation
    token), the official `class_token` / `distill_token` flags.
    """
    if num_protected not in (0, 1, 2):
        raise ValueError(
            f"ToMe protects a class token and a distillation token (num_protected 0, 1 or 2); got {num_protected}."
        )
    metric = metric.astype(jnp.float32)
    metric = metric / jnp.linalg.norm(metric, axis=-1, keepdims=True)
    a, b = metric[:, ::2], metric[:, 1::2]
    scores = jnp.einsum("bic,bjc->bij", a, b)
    if num_protected >= 1:
        scores = scores.at[:, 0, :].set(NEG_INF)
    if num_protected == 2:
        scores = scores.at[:, :, 0].set(NEG_INF)
    node_max = jnp.max(scores, axis=-1)
    node_idx = jnp.argmax(scores, axis=-1)
    edge_idx = jnp.argsort(node_max, axis=-1, descending=True)
    unm_idx, src_idx = edge_idx[:, r:], edge_idx[:, :r]
    dst_idx = jnp.take_along_axis(node_idx, src_idx, axis=1)
    if num_protected >= 1:
        unm_idx = jnp.sort(unm_idx, axis=1)
    return unm_idx, src_idx, dst_idx


def merge(x: jax.Array, unm_idx, src_idx, dst_idx, num_protected: int = 0) -> jax.Array:
    """The official `merge(x, mode="sum")`: unmerged A tokens, then B with the merged A tokens added in."""
    src, dst = x[:, ::2], x[:, 1::2]
    expand = (1,) * (x.ndim - 2)
    unm = jnp.take_along_axis(src, unm_idx.reshape(unm_idx.shape + expand), axis=1)
    moved = jnp.take_along_axis(src, src_idx.reshape(src_idx.shape + expand), axis=1)
    dst = jax.vmap(lambda d, i, s: d.at[i].add(s))(dst, dst_idx, moved)
    if num_protected == 2:
        return jnp.concatenate([unm[:, :1], dst[:, :1], unm[:, 1:], dst[:, 1:]], axis=1)
    return jnp.concatenate([unm, dst], axis=1)


def tome(tokens, sizes, signals: Signals, *, num_out: int, num_protected: int) -> Reduction:
    """ToMe's rule on one layer: merge N - num_out tokens by bipartite soft matching on `signals.keys`."""
    n = tokens.shape[1]
    r = n - num_out
    unm_idx, src_idx, dst_idx = bipartite_soft_matching(signals.keys, r, num_protected)
    sizes = sizes.astype(jnp.float32)
    weighted = merge(tokens.astype(jnp.float32) * sizes[..., None], unm_idx, src_idx, dst_idx, num_protected)
    new_sizes = merge(sizes, unm_idx, src_idx, dst_idx, num_protected)
    merged = (weighted / new_sizes[..., None]).astype(tokens.dtype)
    # transform[m, n] = s_n / S_m for every n merged into m: the same merge of diag(sizes), divided by S.
    spread = merge(jax.vmap(jnp.diag)(sizes), unm_idx, src_idx, dst_idx, num_protected)
    return Reduction(merged, new_sizes, spread / new_sizes[..., None])


register_rule(
    "tome",
    Rule(
        fn=tome,
        signals=("keys",),
        count=remove_count,
        amount_kind="remove",
        paper="Token Merging: Your ViT but Faster (Bolya et al., ICLR 2023)",
        official="facebookresearch/ToMe @ af95e4b: tome/merge.py, tome/patch/timm.py",
        prop_attn=True,  # `apply_patch(model, prop_attn=True)`, the default for off-the-shelf models
    ),
)
