"""The contract every token-reduction rule follows, and the schedule that says where and how much.

A rule is a pure function of one layer's tokens:

    reduced = rule(tokens, sizes, signals, num_out=M, num_protected=P, **options)   # a `Reduction`

- `tokens` [B, N, C]: the layer's tokens, the P protected ones (class, distillation) first.
- `sizes` [B, N] float32: how many original patches each token stands for (ones before any merging; a
  protected token counts 1). ToMe's `size`, which proportional attention and size-weighted averages use.
- `signals` (`Signals`): what the layer computed that a rule may need, each None unless the rule asks for it:
  `keys` [B, N, d] (attention keys averaged over heads, ToMe's metric), `cls_attention` [B, N] (the first
  token's attention probabilities to every token, averaged over heads, EViT's score) and `attention`
  [B, heads, N, N] (the attention probabilities, Zero-TPrune's graph).
- `num_out` M (static): how many tokens the rule returns, protected ones included. The schedule fixes it
  per layer (`TokenReduction`, `token_counts`), so every shape is known under `jit`.
- `num_protected` P (static): the leading tokens that are never merged or dropped; they stay first, in order.

A rule returns `Reduction(tokens [B, M, C], sizes [B, M], transform [B, M, N])`. `transform` is the matrix
that made the new tokens, `tokens == transform @ input tokens` (up to rounding), the view of Token
Transforming (Zeng et al. 2025): pruning is a selection (one-hot rows), ToMe's size-weighted merging a
row-stochastic matrix with one nonzero per column, EViT's fused token a row of class-attention weights,
Token Transforming a dense soft assignment. The rules compute `tokens` their own fast way (gathers and
scatters, as their official code does) and give `transform` beside it; under `jit` it costs nothing unless
something reads it (`unmerge`, `compose`, source tracing). `sizes` is the rule's own bookkeeping (merging
rules add the sizes they merge, so the sizes keep summing to the number of patches; pruning drops them).

Undoing a reduction (dense outputs, visualisation): `unmerge(values [B, M, C], transform)` gives every one
of the N input positions the output tokens it went into, weighted by its share of each (the value of its
merged token for ToMe; zero for a dropped token); `compose` chains the layers' transforms into the map
from the original patches, ToMe's `source` (`merge_source`).

Where a rule acts is part of its definition (`Rule.place`): "after_attention", between the attention's
residual and the MLP (ToMe, EViT, DiffRate, PiToMe...), with the signals of that layer's attention; or
"before_attention", at the start of the block, with the signals of the layer's attention computed on its
input tokens, which the block then recomputes on the reduced tokens, or takes from `Reduction.attention`
when the rule gives it (MCTF's one-step-ahead attention); or "after_block", after the MLP's residual, with the
signals of that block's attention (Zero-TPrune's pruning layer between blocks).
"""

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mixtok.registry import Registry, unknown_name_error

SIGNALS = ("keys", "cls_attention", "attention")
PLACES = ("after_attention", "before_attention", "after_block")


class Signals(NamedTuple):
    """What a layer hands a rule; a field is None unless the rule's `Rule.signals` names it."""

    keys: jax.Array | None = None  # [B, N, d]: attention keys averaged over heads
    cls_attention: jax.Array | None = None  # [B, N]: attention of token 0 to every token, averaged over heads
    attention: jax.Array | None = None  # [B, heads, N, N]: attention probabilities (rows sum to 1)


class Reduction(NamedTuple):
    """A rule's output: the M kept / merged tokens, their sizes, and the [B, M, N] matrix that made them."""

    tokens: jax.Array  # [B, M, C]
    sizes: jax.Array  # [B, M]
    transform: jax.Array  # [B, M, N]: tokens == transform @ input tokens
    attention: jax.Array | None = None  # [B, heads, M, M]: "before_attention" rules may hand the block the
    # attention probabilities of the reduced tokens to use instead of recomputing them (MCTF's one-step-ahead)


@dataclasses.dataclass(frozen=True)
class Rule:
    """A registered reduction rule: the function, what it needs, and how many tokens it leaves.

    `count(num_in, num_protected, amount) -> num_out` turns one layer's schedule entry (`amount`: tokens to
    remove for ToMe-style rules, a keep rate for pruning rules) into the static number of tokens the rule
    returns; `amount_kind` says which ("remove", "keep_rate", or "kept_counts": a tuple of token counts kept
    by the rule's successive steps, DiffRate's (prune_to, merge_to)), and `no_reduction` is the amount that
    leaves a layer alone (0 or 1.0; None for "kept_counts", whose `count` leaves a layer alone when every
    count is at least its tokens). A rule whose amount says more than the count it leaves (DiffRate: how
    many tokens are pruned and how many merged) sets `takes_amount`, and its `fn` also gets the layer's
    schedule entry as `amount=`. `count_options` names the rule options that also change the count
    (EViT's `fuse_token` adds the fused token); `token_counts` passes those to `count` as keywords.
    """

    fn: Callable[..., Reduction]
    signals: tuple[str, ...]
    count: Callable[[int, int, Any], int]
    amount_kind: str
    paper: str
    official: str  # owner/repo @ commit: path, or "none" with the reason
    place: str = "after_attention"
    # (depth, num_tokens, num_protected) -> the TokenReductions `mixtok.reduction.evaluate` and the benchmark
    # try by default (None: a few strengths chosen from `amount_kind`)
    settings: Callable[[int, int, int], Sequence["TokenReduction"]] | None = None
    prop_attn: bool = False  # the rule's default for proportional attention (ToMe's patch turns it on)
    count_options: tuple[str, ...] = ()
    layer_aware: bool = False  # fn also takes layer= (the block's 0-based index) and depth= (blocks in the
    # schedule): rules whose official code changes with depth (PiToMe's per-layer margin)
    takes_amount: bool = False  # fn also takes amount= (the layer's schedule entry; DiffRate's pair)

    @property
    def no_reduction(self):
        return {"remove": 0, "keep_rate": 1.0}.get(self.amount_kind)


RULES: Registry[Rule] = Registry("token reduction rule")
register_rule = RULES.register
list_rules = RULES.names
get_rule = RULES.get


def remove_count(num_in: int, num_protected: int, r: int, *, max_fraction: float = 0.5) -> int:
    """Tokens left after removing `r`, at most `max_fraction` of the unprotected ones (ToMe's cap:
    r = min(r, (N - P) // 2) in `bipartite_soft_matching`)."""
    r = min(int(r), int((num_in - num_protected) * max_fraction))
    return num_in - max(r, 0)


def keep_rate_count(num_in: int, num_protected: int, rate: float) -> int:
    """Tokens left when `rate` of the unprotected ones are kept: P + ceil(rate * (N - P)) (EViT's
    `left_tokens = math.ceil(keep_rate * (N - 1))`), at least one."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"keep rate {rate} must be in (0, 1].")
    return num_protected + max(math.ceil(rate * (num_in - num_protected)), 1)


@dataclasses.dataclass(frozen=True)
class TokenReduction:
    """Which rule, and how much at each layer: what a backbone's `token_reduction` argument takes.

    `amounts` has one entry per block (a tuple as long as the depth): the rule's amount for that layer
    (`Rule.amount_kind`: tokens removed, or the keep rate), its no-reduction value (0 or 1.0) where the
    layer is left alone. Build it with `constant`, `tome_schedule` or `keep_at` rather than by hand.
    `prop_attn` adds log(size) to the attention logits (ToMe's proportional attention) in every layer after
    the first reduction; None takes the rule's default (`Rule.prop_attn`: on for ToMe, off for rules whose
    official code has none). `options` are the rule's keyword options as (name, value) pairs (hashable, so the
    spec can be a flax module attribute).
    """

    rule: str
    amounts: tuple
    prop_attn: bool | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        get_rule(self.rule)  # an unknown rule fails here, naming the valid ones
        object.__setattr__(self, "amounts", tuple(self.amounts))
        object.__setattr__(self, "options", tuple(tuple(o) for o in dict(self.options).items()))

    @classmethod
    def constant(cls, rule: str, amount, depth: int, **kwargs) -> "TokenReduction":
        """The same amount at every one of `depth` layers (ToMe's constant r)."""
        return cls(rule, (amount,) * depth, **kwargs)

    @classmethod
    def tome_schedule(cls, rule: str, r: int, depth: int, inflect: float = 0.0, **kwargs) -> "TokenReduction":
        """ToMe's (r, inflection) schedule (`tome.utils.parse_r`): r per layer trending down (inflect -1, the
        paper's "decreasing schedule"), constant (0) or up (+1), linearly from int(r * (1 - inflect)) to
        2r minus that, each truncated to an int as the official code does."""
        if not -1.0 <= inflect <= 1.0:
            raise ValueError(f"inflect {inflect} must be in [-1, 1] (-1: decreasing, 0: constant, +1: increasing).")
        low = int(r * (1.0 - inflect))
        high = 2 * r - low
        step = (high - low) / max(depth - 1, 1)
        return cls(rule, tuple(int(low + step * i) for i in range(depth)), **kwargs)

    @classmethod
    def keep_at(cls, rule: str, rate: float, layers: Sequence[int], depth: int, **kwargs) -> "TokenReduction":
        """Keep rate `rate` at the given 0-based `layers`, nothing elsewhere (EViT: 0.7 at layers 3, 6, 9 of
        DeiT-S, the official `--base_keep_rate 0.7` with `drop_loc` (3, 6, 9))."""
        bad = [i for i in layers if not 0 <= i < depth]
        if bad:
            raise ValueError(f"layers {bad} are outside the model's 0..{depth - 1}.")
        return cls(rule, tuple(rate if i in layers else 1.0 for i in range(depth)), **kwargs)

    @classmethod
    def parse(cls, text: str, depth: int) -> "TokenReduction":
        """A schedule from one line, for configs and the command line (`--config.model.kwargs.token_reduction`):

        "tome:r=8"                      r = 8 at every layer (ToMe's constant schedule)
        "tome:r=16,inflect=-1"          ToMe's decreasing schedule (`tome_schedule`)
        "evit:keep=0.7,layers=3/6/9"    keep rate 0.7 at layers 3, 6 and 9 (0-based; `keep_at`)
        "evit:keep=0.7"                 keep rate 0.7 at every layer
        "tome:amounts=8/8/4/0"          one amount per layer
        "diffrate:amounts=197+197/196+194/190+176"  one amount per layer, a pair joined by + (DiffRate's
                                        (prune_to, merge_to) kept counts)
        "tome:r=8,prop_attn=false"      any other key=value is an option of the rule (numbers, true/false,
                                        or text)
        """
        rule, _, rest = str(text).partition(":")
        fields = {}
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"token_reduction {text!r}: {item!r} is not key=value (e.g. 'tome:r=8').")
            fields[key.strip()] = _parse_value(value.strip())
        kwargs = {}
        if "prop_attn" in fields:
            kwargs["prop_attn"] = bool(fields.pop("prop_attn"))
        layers = fields.pop("layers", None)
        schedule = [k for k in ("r", "keep", "amounts") if k in fields]
        if len(schedule) != 1:
            raise ValueError(
                f"token_reduction {text!r} needs exactly one of r=, keep= or amounts= (got {schedule or 'none'})."
            )
        (key,) = schedule
        value = fields.pop(key)
        inflect = fields.pop("inflect", None)
        kwargs["options"] = tuple(fields.items())
        if key == "amounts":
            amounts = value if isinstance(value, tuple) else (value,)
            return cls(rule, amounts, **kwargs)
        if key == "r":
            return cls.tome_schedule(rule, int(value), depth, inflect=float(inflect or 0.0), **kwargs)
        if layers is not None:
            return cls.keep_at(rule, float(value), layers if isinstance(layers, tuple) else (layers,), depth, **kwargs)
        return cls.constant(rule, float(value), depth, **kwargs)

    @property
    def spec(self) -> Rule:
        return get_rule(self.rule)

    @property
    def proportional(self) -> bool:
        """Whether the attention adds log(size) to its logits: `prop_attn`, else the rule's default."""
        return self.spec.prop_attn if self.prop_attn is None else self.prop_attn

    def active(self, layer: int) -> bool:
        return self.amounts[layer] != self.spec.no_reduction


def _parse_value(text: str):
    """'8' -> 8, '0.7' -> 0.7, 'true' -> True, '3/6/9' -> (3, 6, 9), '197+180' -> (197, 180), '1+2/3+4' ->
    ((1, 2), (3, 4)), anything else the text itself."""
    if "/" in text:
        return tuple(_parse_value(t) for t in text.split("/"))
    if "+" in text:
        return tuple(_parse_value(t) for t in text.split("+"))
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def token_counts(reduction: TokenReduction | None, num_tokens: int, num_protected: int, depth: int) -> tuple:
    """The number of tokens after each of `depth` layers (static): `num_tokens` throughout without a reduction."""
    if reduction is None:
        return (num_tokens,) * depth
    if len(reduction.amounts) != depth:
        raise ValueError(
            f"token_reduction has {len(reduction.amounts)} amounts but the model has {depth} blocks; give one per "
            f"block (TokenReduction.constant / tome_schedule / keep_at build them)."
        )
    counts, n = [], num_tokens
    for layer in range(depth):
        if reduction.active(layer):
            extra = {k: v for k, v in reduction.options if k in reduction.spec.count_options}
            n = reduction.spec.count(n, num_protected, reduction.amounts[layer], **extra)
        counts.append(n)
    return tuple(counts)


def apply_rule(
    reduction: TokenReduction, tokens, sizes, signals: Signals, *, num_out: int, num_protected: int, layer=None
):
    """`reduction`'s rule on one layer (0-based index `layer`), with its options; checks what the rule returned."""
    rule = reduction.spec
    missing = [s for s in rule.signals if getattr(signals, s) is None]
    if missing:
        raise ValueError(f"rule {reduction.rule!r} needs the signals {missing}, which the layer did not compute.")
    options = dict(reduction.options)
    if rule.layer_aware:
        if layer is None:
            raise ValueError(f"rule {reduction.rule!r} depends on the layer: call apply_rule with layer=<block index>.")
        options.update(layer=layer, depth=len(reduction.amounts))
    if rule.takes_amount:
        if layer is None:
            raise ValueError(
                f"rule {reduction.rule!r} reads its layer's amount: call apply_rule with layer=<block index>."
            )
        options["amount"] = reduction.amounts[layer]
    out = rule.fn(tokens, sizes, signals, num_out=num_out, num_protected=num_protected, **options)
    expected = (tokens.shape[0], num_out)
    if out.tokens.shape[:2] != expected or out.sizes.shape != expected:
        raise ValueError(
            f"rule {reduction.rule!r} returned tokens {out.tokens.shape} and sizes {out.sizes.shape}; "
            f"the schedule asked for {expected}."
        )
    return out


def rule_option_error(rule: str, name: str, valid: Sequence[str]) -> ValueError:
    return unknown_name_error(f"option of rule {rule!r}", name, valid)


# -- helpers the rules share ------------------------------------------------------------------------------


def one_hot_rows(index: jax.Array, n: int, dtype=jnp.float32) -> jax.Array:
    """[B, M] indices -> [B, M, n] selection matrix (the transform of keeping tokens `index`)."""
    return jax.nn.one_hot(index, n, dtype=dtype)


def gather_tokens(x: jax.Array, index: jax.Array) -> jax.Array:
    """x [B, N, ...] at index [B, M] -> [B, M, ...] (torch's x.gather(1, index.expand(...)))."""
    return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def unmerge(values: jax.Array, transform: jax.Array) -> jax.Array:
    """[B, M, C] values of the reduced tokens -> [B, N, C] values at the N positions the reduction came from.

    Position n takes the reduced tokens it went into, weighted by its share of each: U[n, m] = T[m, n] /
    sum_m' T[m', n]. Merging (one nonzero per column) gives every position its merged token's value, as
    ToMe's `unmerge`; a dropped position (a zero column) gets zeros.
    """
    weights = jnp.swapaxes(transform, 1, 2).astype(jnp.float32)
    total = jnp.sum(weights, axis=2, keepdims=True)
    weights = jnp.where(total > 0, weights / jnp.where(total > 0, total, 1.0), 0.0)
    return jnp.einsum("bnm,bmc->bnc", weights, values.astype(jnp.float32)).astype(values.dtype)


def compose(outer: jax.Array, inner: jax.Array) -> jax.Array:
    """The transform of `inner` [B, M1, N] then `outer` [B, M2, M1]: [B, M2, N] (ToMe's source across layers)."""
    return jnp.einsum("bpm,bmn->bpn", outer, inner)


def identity_transform(batch: int, n: int, dtype=jnp.float32) -> jax.Array:
    return jnp.broadcast_to(jnp.eye(n, dtype=dtype), (batch, n, n))
