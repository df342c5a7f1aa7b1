"""Zero-TPrune: importance pruning by weighted PageRank on the attention graph, then similarity pruning (Wang,
Dedhia and Jha, "Zero-TPrune: Zero-Shot Token Pruning through Leveraging of the Attention Graph in Pre-Trained
Transformers", CVPR 2024, arXiv:2305.17328).

No official code is public: the project page (jha-lab/zerotprune @ 58a1414, docs/index.html) linked
"Hongjiew/Zero-TPrune" as "Code (coming soon)" and its last commit ("udpate code link", March 2025) commented
the link out; that repository cannot be had here. This file follows the paper's description, every open choice
written down. What the project page states: "Pruning layers can be inserted between Transformer blocks to
reduce the number of tokens. Pruning layers comprise I-stage and S-stage: I-stage aims at pruning unimportant
tokens of an image, such as background tokens; S-stage aims at pruning tokens that are too similar to others,
such as repetitive texture tokens."

1. Where: a pruning layer between blocks, i.e. after the MLP of the block whose attention it reads
   (`Rule.place = "after_block"`, the place this rule adds to the contract).
2. I-stage, weighted PageRank (WPR): the attention probabilities averaged over heads, A_bar [N, N] (rows
   sum to 1), are a directed graph in which query i sends weight A_bar[i, j] to key j; a token is important
   when important tokens attend to it: s_j <- sum_i A_bar[i, j] s_i, i.e. s <- A_bar^T s, from the uniform
   s = 1 / N. A_bar^T is column-stochastic, so the sum of s stays 1 and the iteration converges (softmax
   attention is positive, so A_bar is primitive) to the leading eigenvector of A_bar^T (eigenvalue 1), the
   stationary distribution of the random walk on the attention graph (`weighted_pagerank`; the test checks it
   against `numpy.linalg.eig`). The I-stage prunes the `N - M - r_s` unprotected tokens of least importance.
3. S-stage, importance-guided partition and similarity pruning: the remaining unprotected tokens, ranked by
   importance (descending), are split into the more important half B (the first ceil(n / 2)) and the less
   important half A (the rest); each A token's similarity to B is its largest cosine similarity to a B token
   on the keys averaged over heads (ToMe's metric); the `r_s` A tokens most similar to B are pruned (dropped,
   not merged: Zero-TPrune prunes).
4. Output: the protected tokens, then the kept tokens in their original order; sizes of kept tokens unchanged,
   a pruned token's size is gone (pruning, no merging; `prop_attn` has no effect the paper relies on: pass
   `prop_attn=False` for the paper's model, whose tokens all keep size 1).

Open choices (the paper's text was not available to check them here; each is an option where it is a number):
- `iterations` (30): WPR power iterations; the result is the stationary distribution when it has converged
  (the error shrinks like |lambda_2|^t; random attention converges in a handful, peaked real attention may
  need more).
- `similarity_share` (0.5): the share of a layer's removed tokens that the S-stage prunes,
  r_s = floor(r * share), at most |A|; the I-stage prunes the other r - r_s. The paper configures the two
  stages' amounts per model; this single share is mixtok's parameterisation.
- the class token is a node of the graph (it passes importance along) but is never pruned; so is every
  protected token.
- the similarity metric: cosine of the head-mean keys (ToMe's); the S-stage partition: the sequential split of
  the importance ranking at its middle.
- ties (equal importance or similarity) go to the lower index (stable sorts).
- Not implemented: the paper's "Emphasizing Informative Region" and "Variance-based Head Filter" refinements
  of the I-stage (named in the paper, definitions not verifiable here); A_bar is the plain mean over all heads.

The selection is integer (no gradient); kept tokens pass their gradients through. The amount is the number
of tokens a layer removes (as ToMe's r), capped at half the unprotected tokens.
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


def weighted_pagerank(attention: jax.Array, iterations: int = 30) -> jax.Array:
    """WPR importance [B, N] of attention probabilities [B, heads, N, N] (or head-averaged [B, N, N]):
    `iterations` steps of s <- A_bar^T s from the uniform distribution; each step keeps sum(s) = 1."""
    graph = attention.astype(jnp.float32)
    if graph.ndim == 4:
        graph = jnp.mean(graph, axis=1)
    n = graph.shape[-1]
    start = jnp.full(graph.shape[:-1], 1.0 / n, jnp.float32)
    return jax.lax.fori_loop(0, int(iterations), lambda _, s: jnp.einsum("bij,bi->bj", graph, s), start)


def stage_amounts(num_in: int, num_protected: int, remove: int, similarity_share: float) -> tuple[int, int]:
    """(r_i, r_s): the tokens the I-stage and the S-stage prune for `remove` in all (static)."""
    if not 0.0 <= similarity_share <= 1.0:
        raise ValueError(f"zero_tprune: similarity_share {similarity_share} must be in [0, 1].")
    unprotected = num_in - num_protected
    if not 0 <= remove < unprotected:
        raise ValueError(
            f"zero_tprune: removing {remove} of {unprotected} unprotected tokens; need 0..{unprotected - 1}."
        )
    # The S-stage prunes only from A, the floor(n / 2) less important of the n = unprotected - r_i survivors:
    # r_s <= floor((unprotected - remove + r_s) / 2) holds exactly when r_s <= unprotected - remove.
    r_s = min(int(remove * similarity_share), unprotected - remove)
    return remove - r_s, r_s


def zero_tprune(
    tokens,
    sizes,
    signals: Signals,
    *,
    num_out: int,
    num_protected: int,
    iterations: int = 30,
    similarity_share: float = 0.5,
) -> Reduction:
    """Zero-TPrune on one layer: WPR importance pruning, then similarity pruning of the less important half."""
    n, p = tokens.shape[1], num_protected
    r_i, r_s = stage_amounts(n, p, n - num_out, similarity_share)
    importance = weighted_pagerank(signals.attention, iterations)
    # I-stage: rank the unprotected tokens by importance (protected first, at +inf), keep the first n - r_i.
    ranked_score = jnp.where(jnp.arange(n) < p, jnp.inf, importance)
    ranked = jnp.argsort(-ranked_score, axis=1, stable=True)[:, : n - r_i]
    # S-stage: B = the more important half of the survivors, A = the rest; prune the r_s A tokens most similar
    # to B (largest cosine similarity of the head-mean keys).
    survivors = ranked[:, p:]
    half = (survivors.shape[1] + 1) // 2
    group_b, group_a = survivors[:, :half], survivors[:, half:]
    metric = signals.keys.astype(jnp.float32)
    metric = metric / jnp.linalg.norm(metric, axis=-1, keepdims=True)
    similarity = jnp.einsum("bac,bdc->bad", gather_tokens(metric, group_a), gather_tokens(metric, group_b))
    most_similar = jnp.argsort(-jnp.max(similarity, axis=2), axis=1, stable=True)
    kept_a = jnp.take_along_axis(group_a, most_similar[:, r_s:], axis=1)
    index = jnp.sort(jnp.concatenate([ranked[:, :p], group_b, kept_a], axis=1), axis=1)
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
