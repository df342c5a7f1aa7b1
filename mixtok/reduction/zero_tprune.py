"""Zero-TPrune: importance pruning by weighted PageRank on the attention graph, and similarity pruning (Wang,
Dedhia and Jha, "Zero-TPrune: Zero-Shot Token Pruning through Leveraging of the Attention Graph in Pre-Trained
Transformers", CVPR 2024, arXiv:2305.17328).

No official code is public: the project page (jha-lab/zerotprune @ 58a1414, docs/index.html) linked
"Hongjiew/Zero-TPrune" as "Code (coming soon)", and its last commit ("udpate code link", March 2025) commented
the link out; no copy of that repository can be had here. So this file follows the paper, as the project page
states it ("Pruning layers can be inserted between Transformer blocks ... Pruning layers comprise I-stage and
S-stage: I-stage aims at pruning unimportant tokens of an image, such as background tokens; S-stage aims at
pruning tokens that are too similar to others, such as repetitive texture tokens") and as a public reading note
of the paper (a Korean blog post, "notes/zero-tprune") summarises its section 3: the equations, the I' -> S -> I
order, the Sequential-U partition, keys and cosine similarity, the sqrt(N) class-token start and the VHF
defaults below. The paper's own text was not available to check them against here. Every open choice is
written down.

1. Where: a pruning layer between blocks, i.e. after the MLP of the block whose attention it reads
   (`Rule.place = "after_block"`, the place this rule adds to the contract).
2. Weighted PageRank (WPR), per head h: the attention probabilities A_h [N, N] (rows sum to 1) are a directed
   graph in which query i gives weight A_h[i, j] to key j; a token is important when important tokens attend
   to it: s_h(j) <- sum_i A_h[i, j] s_h(i), i.e. s_h <- A_h^T s_h (Algorithm 1). A_h^T is column-stochastic, so
   sum(s_h) stays 1 and the iteration converges (softmax attention is positive) to the leading eigenvector of
   A_h^T, eigenvalue 1: the stationary distribution of the random walk on the attention graph
   (`weighted_pagerank`; the test checks it against `numpy.linalg.eig`). Start: the class token sqrt(N) times
   every other token (the paper's "Zero-TPrune"; `uniform_init=True` is its "Zero-TPrune-uni").
3. Heads to one score: "Emphasizing Informative Region" (EIR), the root mean square over heads,
   s(j) = sqrt(sum_h s_h(j)^2 eta_h / sum_h eta_h), with the "Variance-based Head Filter" (VHF) eta_h = 1 when
   the variance of head h's scores lies in [v_min, v_max] (`head_variance`, default (0.01, 0.7)), else 0.
4. Order of one pruning layer: I'-stage -> S-stage -> I-stage. I': WPR with one iteration (`pre_iterations`),
   pruning nothing, to rank the tokens; S (Sequential-U partition): the unprotected tokens ranked by that
   importance, the less important half is A, the rest B; each A token's similarity is its largest cosine
   similarity to a B token on the attention keys averaged over heads; the r_s most similar A tokens are pruned
   (dropped, not merged); I: WPR (`iterations`) on the attention graph of the tokens left, and the r_i least
   important unprotected ones are pruned.
5. Output: the protected tokens, then the kept tokens in their original order; a kept token keeps its size,
   a pruned one's is gone (the paper prunes: no proportional attention by default, `Rule.prop_attn` False).

Open choices (mixtok's, each an option where it is a number):
- `iterations` (30): the I-stage's WPR steps. The paper sets them per layer from the observed convergence
  (30-50 in shallow layers, 5-10 in middle ones, 1 in deep ones); 30 everywhere is converged or close to it.
- VHF's variance is taken of the scores scaled to mean 1 (N * s_h): on distributions that sum to 1 the
  variance is below 1/N (under 0.01 for DeiT's 197 tokens), so the thresholds (0.01, 0.7) would exclude every
  head; they cannot be meant for that scale. When no head passes the filter, all heads count.
  `head_variance=None` turns the filter off.
- the I-stage's graph is the attention among the tokens the S-stage left, each row renormalised to sum 1
  (the same block's attention: the paper recomputes nothing between the stages).
- `similarity_share` (0.5): the share of a layer's removed tokens that the S-stage prunes, r_s = floor(r * share),
  at most |A|; the I-stage prunes the other r - r_s. The paper configures the stages' amounts per model.
- the class token is a node of the graph but never pruned, as every protected token; the class-token start
  applies to token 0 when there is a protected token.
- `heads="mean_graph"` replaces steps 2-3 by one WPR on the head-averaged graph (no EIR, no VHF), a simpler
  variant the paper's ablation starts from.
- ties (equal importance or similarity) go to the lower index (stable sorts).

The selection is integer (no gradient); kept tokens pass their gradients through. The amount is the number of
tokens a layer removes (ToMe's r), capped at half the unprotected tokens.
"""

import jax
import jax.numpy as jnp

from mixtok.reduction.base import (
    Reduction,
    Rule,
    Signals,
    gather_tokens,
    one_hot_rows,
    register_rule,
    remove_count,
)

HEAD_MODES = ("eir", "mean_graph")


def weighted_pagerank(attention: jax.Array, iterations: int = 30, *, class_token: bool = False) -> jax.Array:
    """WPR scores per head: attention [B, heads, N, N] -> [B, heads, N], `iterations` steps of s <- A^T s from
    the uniform distribution, or with token 0 at sqrt(N) times the others when `class_token`."""
    graph = attention.astype(jnp.float32)
    n = graph.shape[-1]
    start = jnp.ones((n,), jnp.float32)
    if class_token:
        start = start.at[0].set(jnp.sqrt(jnp.float32(n)))
    start = jnp.broadcast_to(start / jnp.sum(start), graph.shape[:-1])
    return jax.lax.fori_loop(0, int(iterations), lambda _, s: jnp.einsum("bhij,bhi->bhj", graph, s), start)


def aggregate_heads(scores: jax.Array, head_variance=(0.01, 0.7)) -> jax.Array:
    """EIR with VHF: [B, heads, N] -> [B, N], the root mean square over the heads whose score variance (scores
    scaled to mean 1) is within `head_variance`; all heads when none is, or when `head_variance` is None."""
    keep = jnp.ones(scores.shape[:2], bool)
    if head_variance is not None:
        low, high = head_variance
        variance = jnp.var(scores * scores.shape[-1], axis=-1)
        keep = (variance >= low) & (variance <= high)
        keep = jnp.where(jnp.any(keep, axis=1, keepdims=True), keep, True)
    weights = keep.astype(scores.dtype)[..., None]
    return jnp.sqrt(jnp.sum(scores**2 * weights, axis=1) / jnp.sum(weights, axis=1))


def importance(attention, iterations, *, class_token, heads="eir", head_variance=(0.01, 0.7)) -> jax.Array:
    """One score per token [B, N] from attention [B, heads, N, N]: per-head WPR + EIR / VHF, or WPR on the mean
    graph."""
    if heads == "mean_graph":
        return weighted_pagerank(jnp.mean(attention, axis=1, keepdims=True), iterations, class_token=class_token)[:, 0]
    if heads != "eir":
        raise ValueError(f"zero_tprune: heads {heads!r} is not one of {HEAD_MODES}.")
    return aggregate_heads(weighted_pagerank(attention, iterations, class_token=class_token), head_variance)


def stage_amounts(num_in: int, num_protected: int, remove: int, similarity_share: float) -> tuple[int, int]:
    """(r_s, r_i): the tokens the S-stage and then the I-stage prune, `remove` in all (static)."""
    if not 0.0 <= similarity_share <= 1.0:
        raise ValueError(f"zero_tprune: similarity_share {similarity_share} must be in [0, 1].")
    unprotected = num_in - num_protected
    if not 0 <= remove < unprotected:
        raise ValueError(
            f"zero_tprune: removing {remove} of {unprotected} unprotected tokens; need 0..{unprotected - 1}."
        )
    r_s = min(int(remove * similarity_share), unprotected // 2)  # A: the floor(n / 2) less important tokens
    return r_s, remove - r_s


def _by_importance(score, num_protected):
    """Indices [B, N] from most to least important, the protected tokens first (stable: ties to lower index)."""
    n = score.shape[1]
    return jnp.argsort(-jnp.where(jnp.arange(n) < num_protected, jnp.inf, score), axis=1, stable=True)


def zero_tprune(
    tokens,
    sizes,
    signals: Signals,
    *,
    num_out: int,
    num_protected: int,
    iterations: int = 30,
    pre_iterations: int = 1,
    similarity_share: float = 0.5,
    uniform_init: bool = False,
    heads: str = "eir",
    head_variance=(0.01, 0.7),
) -> Reduction:
    """Zero-TPrune's pruning layer: I'-stage (rank), S-stage (similarity pruning), I-stage (importance pruning)."""
    n, p = tokens.shape[1], num_protected
    r_s, r_i = stage_amounts(n, p, n - num_out, similarity_share)
    opts = dict(class_token=p > 0 and not uniform_init, heads=heads, head_variance=head_variance)
    attention = signals.attention.astype(jnp.float32)
    # I'-stage: rank only. S-stage: A = the less important half of the unprotected tokens, B = the rest.
    ranked = _by_importance(importance(attention, pre_iterations, **opts), p)[:, p:]
    half = (n - p + 1) // 2
    group_b, group_a = ranked[:, :half], ranked[:, half:]
    metric = signals.keys.astype(jnp.float32)
    metric = metric / jnp.linalg.norm(metric, axis=-1, keepdims=True)
    similarity = jnp.einsum("bac,bdc->bad", gather_tokens(metric, group_a), gather_tokens(metric, group_b))
    most_similar = jnp.argsort(-jnp.max(similarity, axis=2), axis=1, stable=True)
    kept_a = jnp.take_along_axis(group_a, most_similar[:, r_s:], axis=1)
    protected = jnp.broadcast_to(jnp.arange(p, dtype=ranked.dtype), (ranked.shape[0], p))
    left = jnp.sort(jnp.concatenate([protected, group_b, kept_a], axis=1), axis=1)  # protected first
    # I-stage: WPR on the attention among the tokens left (rows renormalised), prune the r_i least important.
    sub = jnp.take_along_axis(attention, left[:, None, :, None], axis=2)
    sub = jnp.take_along_axis(sub, left[:, None, None, :], axis=3)
    sub = sub / jnp.sum(sub, axis=-1, keepdims=True)
    order = _by_importance(importance(sub, iterations, **opts), p)[:, : left.shape[1] - r_i]
    index = jnp.sort(jnp.take_along_axis(left, order, axis=1), axis=1)
    return Reduction(gather_tokens(tokens, index), gather_tokens(sizes, index), one_hot_rows(index, n))


register_rule(
    "zero_tprune",
    Rule(
        fn=zero_tprune,
        signals=("attention", "keys"),
        count=remove_count,
        amount_kind="remove",
        paper="Zero-TPrune: Zero-Shot Token Pruning through Leveraging of the Attention Graph in Pre-Trained "
        "Transformers (Wang, Dedhia and Jha, CVPR 2024)",
        official="none public: the project page jha-lab/zerotprune @ 58a1414 (docs/index.html) lists the code as "
        "coming soon, then hides the link; follows the paper",
        place="after_block",
    ),
)
