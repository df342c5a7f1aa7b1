"""PiToMe: token merging that protects isolated tokens by an energy score (Tran et al., "Accelerating Transformers
with Spectrum-Preserving Token Merging", NeurIPS 2024). Official code: hchautran/PiToMe @ 550b5de,
algo/pitome/merge.py (`pitome_vision`, `pitome_bsm`, `pitome`, `merge_wavg`) and algo/pitome/patch/deit.py +
algo/pitome/patch/timm.py (`PiToMeBlock`, `PiToMeAttention`, the per-layer settings), followed step by step:

1. Metric: the layer's attention keys averaged over heads (`k.mean(1)`), without the protected tokens, L2-normalised
   (`F.normalize`). The T = N - P other tokens get an energy score
   E_i = mean_j ELU(cos(x_i, x_j) - m, alpha)   (j over all T tokens, i itself included; alpha = 1),
   exactly the code's `F.elu((sim - margin), alpha=alpha).mean(dim=-1)`: a token with many close neighbours
   (a large flat cluster) scores high, an isolated token low. The margin m depends on the layer:
   m_l = 0.75 - 0.75 * l / L for block l of L (`margins` in patch/deit.py `apply_patch`).
2. The tokens are sorted by energy, descending; r = floor(T - T * ratio) are merged away (`ratio` is the
   schedule's amount: the fraction of the T tokens a layer keeps, the official `--ratio`, the same at every
   layer, so `TokenReduction.constant("pitome", 0.9, depth=12)`).
3. The first ceil(L / 2) blocks (`use_bsm_pitome`) run `pitome_bsm`: ToMe's bipartite soft matching on the
   energy-sorted tokens (A = sorted[0::2], B = sorted[1::2], the r A tokens with the most similar B partner
   merge into it): `mixtok.reduction.tome.bipartite_soft_matching` and `merge` on the sorted tokens. The
   other blocks run `pitome`: only the 2r highest-energy tokens may merge, A = sorted[:2r][0::2] each into its
   most similar B = sorted[:2r][1::2]; the T - 2r low-energy (isolated) tokens are kept as they are.
4. Size-weighted merging (`merge_wavg`, mode "sum"): x <- sum(x * s) / sum(s), sizes added.
5. Output order: [protected tokens, unmerged A (bipartite order), B] in the BSM blocks; [protected tokens,
   the T - 2r kept tokens in energy order, B] in the others (the official `torch.cat` orders).

Where it acts: between the attention residual and the MLP (`PiToMeBlock.forward`), as ToMe. Proportional
attention: `PiToMeAttention` adds log(size) to the logits only when given `size`, and the official DeiT block
calls `self.attn(self.norm1(x))` without it, so the official DeiT evaluation runs WITHOUT proportional
attention: the rule's default (`Rule.prop_attn` False), as the parity figures below; `prop_attn=True` in the
schedule adds ToMe's proportional attention on top.

Open choices and differences, written down:
- The official code decides the merge under `torch.no_grad()`; here the indices are integers (no gradient)
  and the merge is differentiable in the tokens, as there.
- Protected tokens: the official code protects only a class token (`class_token`; a distillation token would
  be merged like a patch token); here all `num_protected` leading tokens are protected and kept first.
- `ratio` must be in [0.5, 1]: below 0.5, 2r exceeds T and the official `pitome` split is undefined.
- A layer whose r rounds to 0 is left alone here; the official code still reorders its tokens (energy order),
  which changes nothing downstream (attention is permutation-equivariant, the energy sort is order-free).
- Options: `margin` (None: the official per-layer schedule above; a float: one margin at every layer),
  `alpha` (ELU's alpha, 1.0) and `bsm_layers` (None: ceil(L / 2) as the official code; how many leading
  blocks use the bipartite form).

Parity with the official code (run outside the suite, timm 1.0.31 DeiT-S with random weights, converted by
`mixtok.interop.timm`, 224 px, prop_attn=False): max |logit difference| 3.4e-6 at ratio 0.9 and 3.4e-6 at
ratio 0.95 (the paper's DeiT-S range, scripts/eval_scripts/eval_ic_all.sh: 0.9 - 0.975); the tiny golden fixture
(tests/fixtures/reduction/pitome.npz) to 1e-5 in tests/reduction/test_pitome.py.
"""

import math

import jax
import jax.numpy as jnp

from mixtok.reduction.base import Reduction, Rule, Signals, TokenReduction, gather_tokens, register_rule
from mixtok.reduction.tome import bipartite_soft_matching
from mixtok.reduction.tome import merge as tome_merge

MARGIN_START = 0.75  # patch/deit.py: margins = [.75 - .75 * (i / num_layers) for i in range(num_layers)]
NORMALIZE_EPSILON = 1e-12  # torch.nn.functional.normalize's eps


def pitome_count(num_in: int, num_protected: int, ratio: float) -> int:
    """Tokens left when a layer keeps `ratio` of its T = N - P mergeable tokens: N - floor(T - T * ratio), the
    official `r = math.floor(T - T * ratio)` in the same float arithmetic."""
    if not 0.5 <= ratio <= 1.0:
        raise ValueError(f"PiToMe ratio {ratio} must be in [0.5, 1] (the fraction of tokens a layer keeps).")
    t = num_in - num_protected
    return num_in - max(math.floor(t - t * ratio), 0)


def layer_margin(layer: int, depth: int) -> float:
    """The official margin of block `layer` (0-based) of `depth`: 0.75 - 0.75 * layer / depth."""
    return MARGIN_START - MARGIN_START * (layer / depth)


def energy_score(metric: jax.Array, margin: float, alpha: float = 1.0) -> jax.Array:
    """[B, T, d] -> [B, T]: mean_j ELU(cos(x_i, x_j) - margin, alpha), the official `pitome_vision` score."""
    metric = metric.astype(jnp.float32)
    norm = jnp.linalg.norm(metric, axis=-1, keepdims=True)
    metric = metric / jnp.maximum(norm, NORMALIZE_EPSILON)
    sim = jnp.einsum("bic,bjc->bij", metric, metric)
    return jnp.mean(jax.nn.elu(sim - margin, alpha), axis=-1)


def pitome(
    tokens,
    sizes,
    signals: Signals,
    *,
    num_out: int,
    num_protected: int,
    layer: int,
    depth: int,
    margin: float | None = None,
    alpha: float = 1.0,
    bsm_layers: int | None = None,
) -> Reduction:
    """PiToMe's rule on block `layer` of `depth`: merge N - num_out tokens, protecting low-energy (isolated) ones."""
    n, p = tokens.shape[1], num_protected
    r = n - num_out
    if margin is None:
        margin = layer_margin(layer, depth)
    if bsm_layers is None:
        bsm_layers = math.ceil(depth * 0.5)
    keys = signals.keys[:, p:].astype(jnp.float32)
    order = jnp.argsort(energy_score(keys, margin, alpha), axis=-1, descending=True)
    sorted_keys = gather_tokens(keys, order)
    if layer < bsm_layers:
        matching = bipartite_soft_matching(sorted_keys, r, 0)

        def merge_sorted(x):
            return tome_merge(x, *matching)

    else:
        if 2 * r > n - p:
            raise ValueError(f"PiToMe merges r = {r} of {n - p} tokens in block {layer}; at most half can merge.")
        matching = bipartite_soft_matching(sorted_keys[:, : 2 * r], r, 0)

        def merge_sorted(x):
            return jnp.concatenate([x[:, 2 * r :], tome_merge(x[:, : 2 * r], *matching)], axis=1)

    def merge_all(x):
        return jnp.concatenate([x[:, :p], merge_sorted(gather_tokens(x[:, p:], order))], axis=1)

    sizes = sizes.astype(jnp.float32)
    new_sizes = merge_all(sizes)
    merged = (merge_all(tokens.astype(jnp.float32) * sizes[..., None]) / new_sizes[..., None]).astype(tokens.dtype)
    # transform[m, n] = s_n / S_m for every n merged into m: the same merge of diag(sizes), divided by S.
    spread = merge_all(jax.vmap(jnp.diag)(sizes))
    return Reduction(merged, new_sizes, spread / new_sizes[..., None])


PAPER_RATIOS = (0.975, 0.95, 0.925, 0.9)  # scripts/eval_scripts/eval_ic_all.sh, DeiT-S off the shelf


def paper_settings(depth: int, num_tokens: int, num_protected: int):
    """The schedules `mixtok.reduction.evaluate` tries: the paper's DeiT ratios, the same at every block."""
    return [TokenReduction.constant("pitome", ratio, depth) for ratio in PAPER_RATIOS]


register_rule(
    "pitome",
    Rule(
        fn=pitome,
        signals=("keys",),
        count=pitome_count,
        amount_kind="keep_rate",
        paper="Accelerating Transformers with Spectrum-Preserving Token Merging (Tran et al., NeurIPS 2024)",
        official=(
            "hchautran/PiToMe @ 550b5de: algo/pitome/merge.py, algo/pitome/patch/deit.py, algo/pitome/patch/timm.py"
        ),
        layer_aware=True,
        settings=paper_settings,
    ),
)
