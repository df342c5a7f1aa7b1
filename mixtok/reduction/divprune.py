"""DivPrune: keep the most diverse tokens by greedy max-min selection on cosine distance (Alvar et al.,
"DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models", CVPR 2025). Official code:
vbdi/divprune @ 799e2d9, LLaVA/llava/model/llava_arch.py (`pairwise_cosine_similarity`, `DivPrune`, and its
call in `prepare_inputs_labels_for_multimodal`), followed step by step:

1. Distance: D = 1 - cosine similarity of the tokens (L2-normalised rows, D = 1 - X X^T).
2. First pick: for every token (a column of D) its second-smallest distance, i.e. its distance to its nearest
   other token (`torch.topk(D, 2, dim=0, largest=False).values[1]`, the smallest being itself); the token
   whose nearest neighbour is farthest (`argmax`, the first on ties).
3. Each next pick: the token whose distance to the picked set, min over the picked rows of D, is largest
   (`torch.min(D[s[:i]], dim=0)`, `argmax`); picked tokens are not masked out (their own distance is ~0, so
   the official code never re-picks one unless the rest are duplicates; neither does this).
4. Count: `int(round(ratio * L))` tokens (Python's round, halves to even), ratio the keep rate.
5. The picked tokens go back in their original order (`keep_indexs.sort()`).

The official code prunes LLaVA's projected visual tokens once, at the LLM's input (after the vision tower
and projector), one image (batch 1) at a time; there is no ViT in it, so a model-level official parity does
not exist. What mixtok does in a ViT, as a choice: the rule acts between the attention residual and the MLP
("after_attention") at the layers of the schedule (a keep rate per layer, like EViT), on the layer's tokens
themselves (the hidden states, the closest thing to LLaVA's visual tokens; no attention signal needed);
the protected tokens (class, distillation) are never candidates and stay first, the picked tokens follow in
their original order; each image of the batch is selected on its own (vmap). Pruning: kept tokens keep their
sizes, the others' sizes are gone; no proportional attention by default (`Rule.prop_attn` False).

Parity: the official `DivPrune` (run on torch CPU by tools/reduction_fixtures/divprune.py) gives the same
selected indices, in the same order, as `divprune_select` on the fixture's random inputs
(tests/reduction/test_divprune.py).
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
)


def divprune_count(num_in: int, num_protected: int, rate: float) -> int:
    """Tokens after a DivPrune layer: P + round(rate * (N - P)) (the official `int(round(ratio * L))`), at
    least one besides the protected ones."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"keep rate {rate} must be in (0, 1].")
    return num_protected + max(int(round(rate * (num_in - num_protected))), 1)


def cosine_distance(features: jax.Array) -> jax.Array:
    """[..., N, C] -> [..., N, N]: 1 - cosine similarity (the official `1.0 - pairwise_cosine_similarity`)."""
    unit = features / jnp.linalg.norm(features, axis=-1, keepdims=True)
    return 1.0 - jnp.einsum("...ic,...jc->...ij", unit, unit)


def divprune_select(features: jax.Array, num_keep: int) -> jax.Array:
    """The official greedy max-min selection on one image: features [N, C] -> [num_keep] indices, in the
    order they were picked."""
    distance = cosine_distance(features.astype(jnp.float32))
    first = jnp.argmax(jnp.sort(distance, axis=0)[1])  # the token farthest from its nearest neighbour
    picked = jnp.zeros((num_keep,), jnp.int32).at[0].set(first)

    def pick(i, carry):
        picked, nearest = carry
        j = jnp.argmax(nearest).astype(jnp.int32)  # farthest from the picked set
        return picked.at[i].set(j), jnp.minimum(nearest, distance[j])

    picked, _ = jax.lax.fori_loop(1, num_keep, pick, (picked, distance[first]))
    return picked


def divprune(tokens, sizes, signals: Signals, *, num_out: int, num_protected: int) -> Reduction:
    """DivPrune on one layer: protected tokens, then the most diverse num_out - P tokens in their order."""
    batch, n = tokens.shape[:2]
    p = num_protected
    keep = num_out - p
    if not 1 <= keep <= n - p:
        raise ValueError(
            f"divprune: num_out {num_out} keeps {keep} of the {n - p} unprotected tokens; need 1..{n - p}."
        )
    picked = jax.vmap(lambda x: divprune_select(x, keep))(jax.lax.stop_gradient(tokens[:, p:]))
    protected = jnp.broadcast_to(jnp.arange(p, dtype=jnp.int32), (batch, p))
    index = jnp.concatenate([protected, jnp.sort(picked, axis=1) + p], axis=1)
    return Reduction(gather_tokens(tokens, index), gather_tokens(sizes, index), one_hot_rows(index, n))


register_rule(
    "divprune",
    Rule(
        fn=divprune,
        signals=(),
        count=divprune_count,
        amount_kind="keep_rate",
        paper="DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models (Alvar et al., CVPR 2025)",
        official="vbdi/divprune @ 799e2d9: LLaVA/llava/model/llava_arch.py (DivPrune; acts on LLaVA's visual "
        "tokens at the LLM input, applied here inside a ViT)",
    ),
)
