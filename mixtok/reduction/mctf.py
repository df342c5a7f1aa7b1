"""MCTF: multi-criteria token fusion with one-step-ahead attention (Lee et al., "Multi-criteria Token Fusion with
One-step-ahead Attention for Efficient Vision Transformers", CVPR 2024). Official code: mlvlab/MCTF @ 2004da0,
utils/mctf.py (`mctf`, `bipartite_soft_matching`, `merge_wavg`), models/modules/blocks.py (`Block_DEIT`),
models/SA/MHSA.py (`MHSA`) and models/deit.py (the `mctf_type` fields), followed step by step:

1. Criteria on the bipartite split A = tokens 0, 2, 4, ..., B = tokens 1, 3, 5, ... of the block's INPUT tokens x
   (not the keys: `mctf(x, attn, ...)` passes x as the metric):
   - similarity W_sim = ((cos(a, b) + 1) / 2) ** (1 / tau_sim);
   - informativeness W_info = (i_a * i_b) ** (1 / tau_info), i = 1 / (attention each token receives, averaged
     over heads and queries), divided by its maximum over the tokens;
   - size W_size = (z_a * z_b) ** (1 / tau_size), z = 1 / size divided by its maximum.
   scores = W_sim * W_info * W_size (a criterion with tau 0 is left out); the protected A rows are -inf.
2. Bidirectional matching (`bidirection`): r1 = r // 2 A tokens (the best node_max) merge into their best B
   match as ToMe (`mixtok.reduction.tome.merge`); then r2 = r - r1 of the B tokens (now carrying what merged in)
   merge into their best unmerged A token, by the same scores. Output [unmerged A with B merged in (class token
   first), unmerged B (in score order)]; without `bidirection`, ToMe's single pass of r and order [A, B].
3. Pooling (`pooling`): "attention" (the official eval's pooling_type 1): a weighted average with weights
   w = attention received (heads and queries averaged) * size / max size, x <- sum(w x) / sum(w);
   "size" (type 0, ToMe's `merge_wavg`): w = size; "mean" (type 3): w = 1. Sizes are added.
4. One-step-ahead attention (`one_step_ahead`, type 1): the attention the layer computed on its input
   (signals.attention, with the size bias) is merged too, keys summed and queries pooled with the weights of 3,
   A' = T A S^T per head (T the [M, N] pooling weights, S the 0/1 membership), and returned as
   `Reduction.attention`: the block uses it instead of recomputing (`ViTBlock`'s "before_attention" path: values
   from the merged tokens, attention dropout on A', the projection; `Block_DEIT.forward` with one_step_ahead 1).
   `one_step_ahead=False` is the official type 2 ("precise"): the block recomputes the attention on the merged
   tokens with their new sizes.

Schedule: the amount is r, tokens merged in a layer, with the official caps (`mctf`): if N - r < 10 then
r = N - 10, and r <= (N - P) // 2; a fraction r < 1 means int((N - P) * r). The official DeiT-S evaluation
(run/eval_deit_s_mctf.sh: `--mctf_type [16,0,0,1,1,1,20,40,1,1,0] --r_evals [16] --activate_layer [1..11]`):
r = 16 at blocks 1 - 11 (not block 0), proportional attention on, one-step-ahead, tau_sim 1, tau_info 20,
tau_size 40, bidirectional, attention pooling:

    TokenReduction("mctf", (0,) + (16,) * 11)   # the options' and Rule.prop_attn's defaults are the official eval's
    "mctf:amounts=0/16/16/16/16/16/16/16/16/16/16/16"   # the same, one-line form ("mctf:r=16" also merges in block 0)

Open choices and differences, written down:
- The matching is decided under `torch.no_grad()` there, with integer indices here; the pooling weights w and
  their sums are constants for the gradient (the official `torch.no_grad()` around `attn_m` and `norm`); the
  merged tokens and the merged attention are differentiable, as there.
- Protected tokens: the official code protects `num_protected` A rows, which is the class token for P = 1 (its
  DeiT has no distillation token); P > 1 is refused here (the official rows would be tokens 0 and 2).
- The official `pooling_type` 2 (max pooling) is not a linear map of the tokens, so it has no `transform` and is
  not offered. The official "W/O one-step-ahead" mode (type 0) merges after the MLP, a place this contract does
  not have; it is not offered either.
- A layer whose capped r is 0 or less is left alone (the official code returns at r == 0 and fails below).

Parity with the official code (run outside the suite, timm 1.0.31's DeiT-S random weights loaded into the official
models/deit.py `deit_small`, converted by `mixtok.interop.timm`, 224 px, the eval settings above): max |logit
difference| 3.3e-6 at r = 16 (and the tiny golden fixture, tests/fixtures/reduction/mctf.npz, to 1e-5 in
tests/reduction/test_mctf.py).
"""

import jax
import jax.numpy as jnp

from mixtok.reduction.base import Reduction, Rule, Signals, TokenReduction, gather_tokens, register_rule
from mixtok.reduction.tome import merge as tome_merge

NEG_INF = -jnp.inf
POOLINGS = ("attention", "size", "mean")
MIN_TOKENS = 10  # utils/mctf.py: if t - r < 10: r = t - 10


def mctf_count(num_in: int, num_protected: int, r) -> int:
    """Tokens left after a layer merges `r` (the official caps: at least 10 tokens stay, at most half merge)."""
    if num_in - r < MIN_TOKENS:
        r = num_in - MIN_TOKENS
    r = min(int((num_in - num_protected) * r) if r < 1 else int(r), (num_in - num_protected) // 2)
    return num_in - max(r, 0)


def multi_criteria_scores(tokens, sizes, attention, *, num_protected, tau_sim, tau_info, tau_size):
    """[B, Na, Nb] scores of the A (even) tokens against the B (odd) ones: W_sim * W_info * W_size."""
    metric = tokens.astype(jnp.float32)
    metric = metric / jnp.linalg.norm(metric, axis=-1, keepdims=True)
    a, b = metric[:, ::2], metric[:, 1::2]
    scores = jnp.ones((a.shape[0], a.shape[1], b.shape[1]), jnp.float32)
    if tau_sim:
        scores = ((jnp.einsum("bic,bjc->bij", a, b) + 1) / 2) ** (1 / tau_sim)
    if tau_info > 0:
        info = 1 / jnp.mean(attention.astype(jnp.float32), axis=(1, 2))
        info = info / jnp.max(info, axis=1, keepdims=True)
        scores = scores * (info[:, ::2, None] * info[:, None, 1::2]) ** (1 / tau_info)
    if tau_size:
        inverse = 1 / sizes.astype(jnp.float32)
        inverse = inverse / jnp.max(inverse, axis=1, keepdims=True)
        scores = scores * (inverse[:, ::2, None] * inverse[:, None, 1::2]) ** (1 / tau_size)
    if num_protected:
        scores = scores.at[:, :num_protected, :].set(NEG_INF)
    return scores


def _best(scores, r):
    """ToMe's step: each row's best column; rows sorted by that score, descending; the first r move."""
    node_max, node_idx = jnp.max(scores, axis=-1), jnp.argmax(scores, axis=-1)
    edge_idx = jnp.argsort(node_max, axis=-1, descending=True)
    return edge_idx[:, r:], edge_idx[:, :r], jnp.take_along_axis(node_idx, edge_idx[:, :r], axis=1)


def _merge_into(src, dst, unm_idx, src_idx, dst_idx):
    """The second (B -> A) pass: src tokens at src_idx added into dst at dst_idx; (dst, unmerged src)."""
    unm = gather_tokens(src, unm_idx)
    moved = gather_tokens(src, src_idx)
    dst = jax.vmap(lambda d, i, s: d.at[i].add(s))(dst, dst_idx, moved)
    return dst, unm


def bipartite_matching(scores, r: int, *, num_protected: int, bidirection: bool):
    """The official matching as a function merging (summing) any [B, N, ...] array along axis 1."""
    r1, r2 = (r // 2, r - r // 2) if bidirection else (r, 0)
    num_a = scores.shape[1]
    unm_idx, src_idx, dst_idx = _best(scores, r1)
    if num_protected:
        unm_idx = jnp.sort(unm_idx, axis=1)  # the class token stays first
    if not bidirection:
        return lambda x: tome_merge(x, unm_idx, src_idx, dst_idx)
    # B tokens against the unmerged A tokens, by the same scores
    new_scores = jnp.swapaxes(jnp.take_along_axis(scores, unm_idx[:, :, None], axis=1), 1, 2)
    unm_idx2, src_idx2, dst_idx2 = _best(new_scores, r2)

    def merge(x):
        first = tome_merge(x, unm_idx, src_idx, dst_idx)  # [unmerged A, B with A merged in]
        dst, unm = _merge_into(first[:, num_a - r1 :], first[:, : num_a - r1], unm_idx2, src_idx2, dst_idx2)
        return jnp.concatenate([dst, unm], axis=1)

    return merge


def _along(merge, x, axis):
    """`merge` (which acts on axis 1) applied along `axis` of x."""
    return jnp.moveaxis(merge(jnp.moveaxis(x, axis, 1)), 1, axis)


def mctf(
    tokens,
    sizes,
    signals: Signals,
    *,
    num_out: int,
    num_protected: int,
    tau_sim: float = 1.0,
    tau_info: float = 20.0,
    tau_size: float = 40.0,
    bidirection: bool = True,
    pooling: str = "attention",
    one_step_ahead: bool = True,
) -> Reduction:
    """MCTF's rule on one layer (before its attention): fuse N - num_out tokens by the three criteria."""
    if num_protected not in (0, 1):
        raise ValueError(f"MCTF protects at most a class token (num_protected 0 or 1); got {num_protected}.")
    if pooling not in POOLINGS:
        raise ValueError(f"MCTF pooling {pooling!r} is not one of {POOLINGS}.")
    n = tokens.shape[1]
    attention = signals.attention.astype(jnp.float32)  # [B, H, N, N]
    sizes = sizes.astype(jnp.float32)
    scores = multi_criteria_scores(
        tokens, sizes, attention, num_protected=num_protected, tau_sim=tau_sim, tau_info=tau_info, tau_size=tau_size
    )
    merge = bipartite_matching(scores, n - num_out, num_protected=num_protected, bidirection=bidirection)
    if pooling == "attention":
        received = jnp.mean(attention, axis=(1, 2))
        weights = received * sizes / jnp.max(sizes, axis=1, keepdims=True)
    elif pooling == "size":
        weights = sizes
    else:
        weights = jnp.ones_like(sizes)
    weights = jax.lax.stop_gradient(weights)
    total = merge(weights)
    merged = (merge(tokens.astype(jnp.float32) * weights[..., None]) / total[..., None]).astype(tokens.dtype)
    transform = merge(jax.vmap(jnp.diag)(weights)) / total[..., None]
    ahead = None
    if one_step_ahead:
        keys_merged = _along(merge, attention, 3)  # merged keys: probabilities summed
        ahead = _along(merge, keys_merged * weights[:, None, :, None], 2) / total[:, None, :, None]
    return Reduction(merged, merge(sizes), transform, ahead)


REMOVE_FRACTIONS = (0.04, 0.06, 0.08)  # of the patches: r = 8, 12, 16 on DeiT-S (16: the official eval)


def eval_settings(depth: int, num_tokens: int, num_protected: int):
    """The schedules `mixtok.reduction.evaluate` tries: r at every block but the first (`--activate_layer`)."""
    rs = sorted({max(1, round(f * (num_tokens - num_protected))) for f in REMOVE_FRACTIONS})
    return [TokenReduction("mctf", (0,) + (r,) * (depth - 1)) for r in rs]


register_rule(
    "mctf",
    Rule(
        fn=mctf,
        signals=("attention",),
        count=mctf_count,
        amount_kind="remove",
        paper="Multi-criteria Token Fusion with One-step-ahead Attention for Efficient Vision Transformers "
        "(Lee et al., CVPR 2024)",
        official="mlvlab/MCTF @ 2004da0: utils/mctf.py, models/modules/blocks.py, models/SA/MHSA.py",
        place="before_attention",
        prop_attn=True,  # mctf_type[3] = 1 in run/eval_deit_s_mctf.sh
        settings=eval_settings,
    ),
)
