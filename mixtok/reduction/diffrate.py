"""DiffRate: prune by class attention, then merge by similarity, with per-layer kept counts found by search
(Chen et al., "DiffRate: Differentiable Compression Rate for Efficient Vision Transformers", ICCV 2023).
Official code: OpenGVLab/DiffRate @ 91ae3e3, DiffRate/patch/deit.py (`DiffRateBlock.forward`, eval branch),
DiffRate/merge.py (`get_merge_func`), DiffRate/ddp.py (the searched rates) and compression_rate.json (the
released schedules), followed step by step at inference:

1. Importance: the class token's attention to every other token, averaged over heads (`attn[:, :, 0, 1:]
   .mean(1)`, this layer's attention, proportional attention included). The non-class tokens are sorted by
   it, descending (`torch.sort`; here a stable sort, so ties keep their index order); the class token
   stays first.
2. Prune: keep the first `prune_to` tokens of that order (`x[:, :prune_kept_num]`; class token included).
3. Merge: of the kept tokens, the first `merge_to` (the most important) are the destinations, the rest the
   sources. Metric: the tokens themselves (the residual stream after attention, `get_merge_func(x.detach())`,
   not the keys as ToMe), L2-normalised; each source goes to its most cosine-similar destination, the class
   token excluded (`similarity[..., :, 0] = -inf`). Tokens: the plain mean of a destination and its sources
   (`scatter_reduce(mode="mean")`, include_self: (x_dst + sum x_src) / (1 + count)), not ToMe's
   size-weighted one. Sizes: each source's size times its similarity to its destination (`node_max`,
   "optimize proportional attention in ToMe by considering similarity"), added to the destination's
   (`scatter_reduce(mode="sum")`), unclamped at inference, so sizes do not sum to the patch count.
4. Output: the destinations, in importance order. The block adds log(size) to every later attention's
   logits (proportional attention, `size.log()` in `DiffRateAttention`): `Rule.prop_attn` is on.

Where: between the attention residual and the MLP ("after_attention"). Signals: `cls_attention`.

The amount of a layer (`amount_kind` "kept_counts") is the pair (prune_to, merge_to): the official
`prune_kept_num` and `merge_kept_num` of that block, tokens kept after pruning and after merging, the class
token included (197 = nothing removed on DeiT at 224 px). `count` is min(tokens in, prune_to, merge_to),
as the official `calculate_flop_inference` (`ste_min(N, prune, merge)`) and the eval branch (slicing past
the end keeps everything; no merge when merge_to >= the pruned count) do. The rule reads the pair itself
(`Rule.takes_amount`). The released schedules are `SCHEDULES` (compression_rate.json), `schedule(name,
gflops)` builds one, `load_schedule` reads what the search (`mixtok.train.tasks.diffrate_search`) wrote.

Open choices and differences: the official DeiT patch has one prefix token (the class token); here all
`num_protected` prefix tokens (a distillation token too) stay first, unsorted, never pruned or merged into;
`num_protected` 0 raises (the importance is the class token's attention). The official code sorts the
tokens in every block, reducing or not; here only reducing layers do (the order of the tokens never
changes a class-token model's output: attention is permutation-equivariant once positions are added).

Parity with the official code (OpenGVLab/DiffRate @ 91ae3e3 patched onto timm 1.0.31, eval mode,
`set_kept_num` as `--load_compression_rate`): the tiny DeiT fixture (tests/fixtures/reduction/diffrate.npz,
two schedules) to 6e-7 in tests/reduction/test_diffrate.py. Full size, run outside the suite:
deit_small_patch16_224 with the released 2.9 GFLOPs schedule (`schedule("deit_small_patch16_224", 2.9)`),
4 random images, max logit difference 2.0e-6 with timm's random initialisation (logits up to 1.5; the
unreduced models differ by 1.9e-6) and 4.1e-6 with the fixtures' heavier random weights (logits up to 3.9;
unreduced 3.5e-6); `flops` gives the official count, 2.905256448e9 (README: "flops 2.905").
"""

import json
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from mixtok.reduction.base import Reduction, Rule, Signals, TokenReduction, gather_tokens, register_rule

KIND = "kept_counts"


def kept_count(num_in: int, num_protected: int, amount) -> int:
    """Tokens a layer leaves: min(num_in, prune_to, merge_to) (the official `ste_min(N, prune, merge)`)."""
    prune_to, merge_to = check_amount(amount, num_protected)
    return min(num_in, prune_to, merge_to)


def check_amount(amount, num_protected: int = 1) -> tuple[int, int]:
    """(prune_to, merge_to) as ints, or one ValueError line saying what is valid."""
    valid = (
        f"DiffRate's amount is a pair (prune_to, merge_to) of kept token counts, prefix tokens included, each at "
        f"least num_protected + 1 = {num_protected + 1}"
    )
    if not isinstance(amount, (tuple, list)) or len(amount) != 2:
        raise ValueError(f"{valid}; got {amount!r}.")
    if any(isinstance(a, bool) or int(a) != a or a < num_protected + 1 for a in amount):
        raise ValueError(f"{valid}; got {tuple(amount)!r}.")
    return int(amount[0]), int(amount[1])


def importance_order(cls_attention: jax.Array, num_protected: int) -> jax.Array:
    """[B, N] order of the tokens: the protected ones, then the rest by the class token's attention, descending."""
    batch, n = cls_attention.shape
    order = jnp.argsort(cls_attention[:, num_protected:], axis=1, descending=True, stable=True) + num_protected
    prefix = jnp.broadcast_to(jnp.arange(num_protected), (batch, num_protected))
    return jnp.concatenate([prefix, order], axis=1).astype(jnp.int32)


def merge_assignment(metric: jax.Array, kept: int, num_protected: int):
    """Each source (positions kept.. of `metric` [B, n, C]) -> (its destination among 0..kept-1, the cosine
    similarity to it): the official `get_merge_func` (`node_idx`, `node_max`)."""
    metric = metric.astype(jnp.float32)
    metric = metric / jnp.linalg.norm(metric, axis=-1, keepdims=True)
    similarity = jnp.einsum("bsc,bdc->bsd", metric[:, kept:], metric[:, :kept])
    similarity = similarity.at[:, :, :num_protected].set(-jnp.inf)
    return jnp.argmax(similarity, axis=-1), jnp.max(similarity, axis=-1)


def diffrate(tokens, sizes, signals: Signals, *, num_out: int, num_protected: int, amount) -> Reduction:
    """DiffRate on one layer: sort by class attention, keep `prune_to`, merge the rest down to `merge_to`."""
    if num_protected < 1:
        raise ValueError("DiffRate ranks tokens by the class token's attention: it needs num_protected >= 1.")
    batch, n, _ = tokens.shape
    prune_to, merge_to = check_amount(amount, num_protected)
    pruned = min(n, prune_to)
    kept = min(pruned, merge_to)
    if kept != num_out:
        raise ValueError(f"DiffRate's amount {tuple(amount)} leaves {kept} of {n} tokens, the schedule {num_out}.")
    order = importance_order(signals.cls_attention, num_protected)[:, :pruned]
    x = gather_tokens(tokens, order)
    s = gather_tokens(sizes.astype(jnp.float32), order)
    x32 = x.astype(jnp.float32)
    merged, new_sizes, counts = x32[:, :kept], s[:, :kept], jnp.ones((batch, kept), jnp.float32)
    destination = jnp.broadcast_to(jnp.arange(kept), (batch, kept))
    if kept < pruned:  # the official scatter_reduce: sources added into their destinations (gathers, no dense matrix)
        node_idx, node_max = merge_assignment(x, kept, num_protected)
        add = jax.vmap(lambda into, index, values: into.at[index].add(values))
        merged = add(merged, node_idx, x32[:, kept:])
        new_sizes = add(new_sizes, node_idx, s[:, kept:] * node_max)
        counts = add(counts, node_idx, jnp.ones_like(node_max))
        destination = jnp.concatenate([destination, node_idx], axis=1)
    merged = (merged / counts[..., None]).astype(tokens.dtype)
    # transform[k, order[p]] = 1 / count_k for every token p that went into k (itself included); under jit it
    # costs nothing unless read
    mean = jnp.swapaxes(jax.nn.one_hot(destination, kept, dtype=jnp.float32), 1, 2) / counts[..., None]
    transform = jnp.einsum("bkp,bpn->bkn", mean, jax.nn.one_hot(order, n, dtype=jnp.float32))
    return Reduction(merged, new_sizes, transform)


def default_settings(depth: int, num_tokens: int, num_protected: int) -> list[TokenReduction]:
    """The schedules `mixtok.reduction.evaluate` tries: the released DeiT-S ones at 2.3, 2.7 and 3.1 GFLOPs,
    exactly on a 12-block model of 197 tokens with a class token, else resampled to the model: block i takes
    the official block round(11 i / (depth - 1)), its kept patches as the same fraction of the model's."""
    patches = num_tokens - num_protected
    out = []
    for gflops in (2.3, 2.7, 3.1):
        official = SCHEDULES["ViT-S-DeiT", gflops]
        pairs = []
        for i in range(depth):
            j = round(11 * i / max(depth - 1, 1))
            pair = [num_protected + max(1, round((c[j] - 1) / 196 * patches)) for c in official]
            pairs.append(tuple(pair))
        out.append(TokenReduction("diffrate", tuple(pairs)))
    return out


register_rule(
    "diffrate",
    Rule(
        fn=diffrate,
        signals=("cls_attention",),
        count=kept_count,
        amount_kind=KIND,
        paper="DiffRate: Differentiable Compression Rate for Efficient Vision Transformers (Chen et al., ICCV 2023)",
        official="OpenGVLab/DiffRate @ 91ae3e3: DiffRate/patch/deit.py, DiffRate/merge.py, DiffRate/ddp.py",
        takes_amount=True,
        settings=default_settings,
        prop_attn=True,  # the official DiffRateAttention adds size.log() in every block
    ),
)


# -- schedules ------------------------------------------------------------------------------------------------


def from_counts(prune_kept: Sequence[int], merge_kept: Sequence[int], **kwargs) -> TokenReduction:
    """A DiffRate schedule from the official per-block lists (`prune_kept_num`, `merge_kept_num`)."""
    if len(prune_kept) != len(merge_kept):
        raise ValueError(
            f"prune_kept has {len(prune_kept)} entries and merge_kept {len(merge_kept)}: give one per block each."
        )
    amounts = tuple(check_amount((p, m)) for p, m in zip(prune_kept, merge_kept, strict=True))
    return TokenReduction("diffrate", amounts, **kwargs)


# OpenGVLab/DiffRate @ 91ae3e3: compression_rate.json, the searched schedules the README evaluates with
# `--load_compression_rate` (e.g. DeiT-S at 2.9 GFLOPs: 79.54 % top-1, DeiT-B at 11.5: 81.50 %, off the shelf).
# Key: (official model name, GFLOPs) -> (prune_kept_num, merge_kept_num). The MAE models are timm ViTs with
# MAE's fine-tuned weights (global average pooling, `DiffRate/patch/mae.py`), listed as data.
SCHEDULES = {
    ("ViT-T-DeiT", 0.6): (
        (197, 196, 180, 157, 130, 107, 86, 73, 63, 51, 40, 3),
        (197, 187, 167, 139, 114, 90, 76, 66, 57, 45, 37, 3),
    ),
    ("ViT-T-DeiT", 0.7): (
        (197, 196, 194, 180, 150, 123, 98, 82, 68, 60, 52, 3),
        (197, 196, 192, 158, 133, 103, 88, 72, 64, 58, 49, 3),
    ),
    ("ViT-T-DeiT", 0.8): (
        (197, 197, 196, 186, 166, 147, 117, 103, 92, 80, 74, 3),
        (197, 196, 190, 172, 154, 125, 107, 96, 84, 78, 70, 3),
    ),
    ("ViT-T-DeiT", 0.9): (
        (197, 197, 196, 190, 182, 166, 141, 125, 113, 105, 99, 3),
        (197, 196, 194, 188, 172, 147, 129, 115, 107, 103, 96, 3),
    ),
    ("ViT-T-DeiT", 1.0): (
        (197, 197, 196, 194, 188, 184, 178, 164, 156, 137, 129, 21),
        (197, 197, 196, 190, 186, 154, 148, 156, 145, 135, 125, 21),
    ),
    ("ViT-S-DeiT", 2.3): (
        (197, 192, 168, 143, 121, 105, 92, 74, 62, 45, 33, 3),
        (197, 180, 156, 127, 109, 98, 80, 66, 52, 37, 31, 3),
    ),
    ("ViT-S-DeiT", 2.5): (
        (197, 192, 174, 156, 131, 115, 111, 99, 76, 50, 39, 3),
        (197, 186, 160, 133, 119, 107, 96, 82, 66, 43, 37, 3),
    ),
    ("ViT-S-DeiT", 2.7): (
        (197, 196, 182, 160, 141, 127, 115, 105, 88, 66, 49, 3),
        (197, 188, 170, 147, 131, 119, 109, 96, 76, 54, 45, 3),
    ),
    ("ViT-S-DeiT", 2.9): (
        (197, 196, 190, 168, 150, 139, 129, 117, 99, 78, 58, 3),
        (197, 194, 176, 156, 141, 133, 121, 107, 88, 64, 56, 3),
    ),
    ("ViT-S-DeiT", 3.1): (
        (197, 197, 194, 180, 160, 147, 137, 129, 115, 92, 76, 3),
        (197, 196, 186, 164, 150, 141, 133, 121, 103, 78, 68, 3),
    ),
    ("ViT-B-DeiT", 8.7): (
        (197, 192, 172, 156, 131, 107, 90, 72, 56, 33, 17, 3),
        (197, 178, 162, 141, 115, 96, 78, 60, 47, 21, 13, 3),
    ),
    ("ViT-B-DeiT", 10.0): (
        (197, 194, 182, 168, 148, 129, 113, 101, 82, 49, 25, 3),
        (197, 186, 174, 156, 137, 117, 105, 90, 66, 31, 19, 3),
    ),
    ("ViT-B-DeiT", 10.4): (
        (197, 196, 188, 174, 156, 141, 121, 103, 90, 58, 25, 3),
        (197, 190, 184, 164, 145, 131, 107, 94, 74, 31, 21, 3),
    ),
    ("ViT-B-DeiT", 11.5): (
        (197, 197, 197, 188, 170, 154, 139, 123, 107, 72, 43, 3),
        (197, 197, 192, 178, 158, 145, 127, 111, 94, 50, 35, 3),
    ),
    ("ViT-B-DeiT", 12.5): (
        (197, 197, 196, 192, 184, 170, 154, 139, 129, 94, 58, 3),
        (197, 196, 194, 190, 176, 160, 145, 131, 115, 68, 47, 3),
    ),
    ("ViT-B-MAE", 8.7): (
        (197, 192, 166, 143, 119, 103, 86, 72, 54, 43, 37, 23),
        (197, 176, 150, 127, 107, 92, 76, 58, 47, 41, 23, 23),
    ),
    ("ViT-B-MAE", 10.0): (
        (197, 194, 173, 154, 135, 120, 108, 92, 76, 64, 52, 40),
        (197, 181, 160, 141, 122, 116, 95, 80, 67, 60, 40, 40),
    ),
    ("ViT-B-MAE", 10.4): (
        (197, 195, 179, 159, 140, 122, 105, 100, 89, 71, 56, 45),
        (197, 187, 166, 145, 125, 109, 102, 97, 75, 64, 45, 45),
    ),
    ("ViT-B-MAE", 11.5): (
        (197, 196, 182, 172, 162, 147, 131, 109, 101, 94, 70, 49),
        (197, 192, 178, 164, 150, 133, 115, 101, 96, 82, 49, 49),
    ),
}
# mixtok's zoo names for the official DeiT models (facebookresearch/deit weights, timm's deit_*_patch16_224).
MODEL_KEYS = {
    "deit_tiny_patch16_224": "ViT-T-DeiT",
    "deit_small_patch16_224": "ViT-S-DeiT",
    "deit_base_patch16_224": "ViT-B-DeiT",
}


def schedule(model: str, gflops: float, **kwargs) -> TokenReduction:
    """A released schedule: `schedule("deit_small_patch16_224", 2.9)` (or the official key "ViT-S-DeiT")."""
    key = MODEL_KEYS.get(model, model)
    found = {g for k, g in SCHEDULES if k == key}
    if not found:
        names = sorted(set(MODEL_KEYS) | {k for k, _ in SCHEDULES})
        raise ValueError(f"no released DiffRate schedule for model {model!r}; there are schedules for {names}.")
    if float(gflops) not in found:
        raise ValueError(f"no released DiffRate schedule for {model} at {gflops} GFLOPs; released: {sorted(found)}.")
    return from_counts(*SCHEDULES[key, float(gflops)], **kwargs)


def load_schedule(path: str, **kwargs) -> TokenReduction:
    """The schedule a search wrote (`diffrate_schedule.json`: {"prune_kept_num": [...], "merge_kept_num": [...]},
    the official compression_rate.json entry's fields, as lists)."""
    with open(path) as f:
        found = json.load(f)
    return from_counts(found["prune_kept_num"], found["merge_kept_num"], **kwargs)


def flops(amounts, *, num_tokens: int, dim: int, patch_size: int, num_classes: int) -> float:
    """The official FLOPs count of a ViT under DiffRate amounts (a `TokenReduction` or one (prune_to, merge_to)
    pair per block; `calculate_flop_inference`): per block 4 N C^2 + 2 N^2 C (attention, on the block's input
    N) and 8 N' C^2 (MLP, on the N' = min(N, prune_to, merge_to) tokens it leaves), plus the patch embedding
    N C p^2 3 and the classifier C K. Multiply-accumulates, the paper's "FLOPs"."""
    amounts = amounts.amounts if isinstance(amounts, TokenReduction) else amounts
    n = float(num_tokens)
    total = n * dim * patch_size * patch_size * 3 + dim * num_classes
    for amount in amounts:
        total += 4 * n * dim * dim + 2 * n * n * dim
        n = float(min(n, *amount))
        total += 8 * n * dim * dim
    return total
