"""S2AFormer-layout backbones registered in the zoo, as data: stand-in sizes, not the paper's variants.

The S2AFormer paper's variant table (names, channels, depths, heads, reduction ratios, compressed
channel counts, parameter counts) could not be retrieved here (see `mixtok.models.s2aformer`), so no
paper variant is registered under a paper name. The sizes below are PVT v2's (timm
`pvt_v2_b0/b1/b2`, whose K/V spatial reduction ratios 8, 4, 2, 1 the SSA shares): widths, depths,
heads, reduction ratios and MLP ratios (8, 8, 4, 4), named after them. No count is official
(`official_params=None`), and `PAPER_PARAMS` stays empty until the paper's table is read; the tests
check the counts against an independent formula instead (tests/models/test_s2aformer.py).
"""

from mixtok.models.registry import ModelSpec, register_model
from mixtok.models.s2aformer import PAPER, S2AFormer

# name: (depths, dims, heads), PVT v2's; reductions (8, 4, 2, 1) and mlp_ratios (8, 8, 4, 4) for all
SIZES = {
    "s2aformer_pvt_b0": ((2, 2, 2, 2), (32, 64, 160, 256), (1, 2, 5, 8)),
    "s2aformer_pvt_b1": ((2, 2, 2, 2), (64, 128, 320, 512), (1, 2, 5, 8)),
    "s2aformer_pvt_b2": ((3, 4, 6, 3), (64, 128, 320, 512), (1, 2, 5, 8)),
}
REDUCTIONS = (8, 4, 2, 1)
MLP_RATIOS = (8.0, 8.0, 4.0, 4.0)

# The paper's reported parameter counts by variant name, rounded as printed ("x.xM"); empty because
# the paper's variant table could not be retrieved. Fill in (with the variants) before claiming parity.
PAPER_PARAMS: dict[str, str] = {}
STAND_IN = f"{PAPER}; sizes are PVT v2's stand-ins, not the paper's table"


def _register_all() -> None:
    for name, (depths, dims, heads) in SIZES.items():
        kwargs = dict(depths=depths, dims=dims, num_heads=heads, reductions=REDUCTIONS, mlp_ratios=MLP_RATIOS)
        register_model(name, ModelSpec(S2AFormer, kwargs, STAND_IN, None))


_register_all()
