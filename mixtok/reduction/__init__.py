"""Token reduction: merging and pruning rules on one contract, applied inside ViT / DeiT by a schedule.

    from mixtok.reduction import TokenReduction
    model = create_model("deit_small_patch16_224",
                         token_reduction=TokenReduction.constant("tome", 8, depth=12))   # ToMe, r = 8

`mixtok.reduction.base` states the contract (`Reduction`, `Signals`, `Rule`, `TokenReduction`,
`token_counts`, `unmerge`, `compose`); each rule is a module that registers itself (`list_rules()`): `tome`,
`evit`, `pitome`, `mctf`, `diffrate` (and its search, `mixtok.reduction.diffrate_search`), `divprune`,
`zero_tprune`. docs/reduction.md lists them with their official code and parity figures;
`mixtok.reduction.evaluate` measures a trained ViT under each.
"""

from mixtok.reduction import (  # noqa: F401  (each registers its rule)
    diffrate,
    divprune,
    evit,
    mctf,
    pitome,
    tome,
    zero_tprune,
)
from mixtok.reduction.base import (
    Reduction,
    Rule,
    Signals,
    TokenReduction,
    apply_rule,
    compose,
    get_rule,
    list_rules,
    register_rule,
    token_counts,
    unmerge,
)

__all__ = [
    "Reduction",
    "Rule",
    "Signals",
    "TokenReduction",
    "apply_rule",
    "compose",
    "get_rule",
    "list_rules",
    "register_rule",
    "token_counts",
    "unmerge",
]
