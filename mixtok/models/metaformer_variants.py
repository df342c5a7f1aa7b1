"""The named MetaFormer variants of the two papers, as data (depths, dims, mixers and norms).

Sources: timm/models/metaformer.py (poolformer_*, poolformerv2_*, convformer_*, caformer_*) and
sail-sg/metaformer: metaformer_baselines.py (identityformer_*, randformer_*, which timm lacks).
Parameter counts are timm's (timm 1.0.31, 224 px, 1000 classes); IdentityFormer's equal
PoolFormerV2's (neither mixer has weights) and RandFormer's add its frozen random matrices,
6 * 196^2 + 2 * 49^2 for S12 (stages 3 and 4 at 14x14 and 7x7 tokens), as the official count does.
"""

from mixtok.models.metaformer import MetaFormer
from mixtok.models.registry import ModelSpec, register_model

POOLFORMER_PAPER = "MetaFormer Is Actually What You Need for Vision (Yu et al., CVPR 2022)"
BASELINES_PAPER = "MetaFormer Baselines for Vision (Yu et al., TPAMI 2024)"

S_DIMS = (64, 128, 320, 512)
M_DIMS = (96, 192, 384, 768)

# PoolFormer v1: GroupNorm(1) with bias (eps 1e-5), GELU MLP with biases, layer scale, no norms in
# the stem or downsampling, Linear head. Layer scale init is 1e-5 for S12/S24 and 1e-6 beyond.
POOLFORMER_V1 = dict(
    token_mixers="pooling",
    norms="groupnorm1",
    norm_epsilon=1e-5,
    downsample_norm=None,
    mlp_activation="gelu",
    mlp_bias=True,
    res_scale_init=None,
    use_mlp_head=False,
)
# MetaFormer Baselines: bias-free norms (eps 1e-6), StarReLU MLP without biases, res scale in
# stages 3-4, LayerNorm (no bias) before every downsampling and after the stem.
BASELINE = dict(
    norm_epsilon=1e-6,
    downsample_norm="layernorm_nobias",
    mlp_activation="star_relu",
    mlp_bias=False,
    res_scale_init=(None, None, 1.0, 1.0),
    layer_scale_init=None,
)
GN_BASELINE = dict(BASELINE, norms="groupnorm1_nobias", use_mlp_head=False)
LN_BASELINE = dict(BASELINE, norms="layernorm_nobias", use_mlp_head=True)

POOLFORMER_SIZES = {  # name: (depths, dims, layer_scale_init, timm params)
    "s12": ((2, 2, 6, 2), S_DIMS, 1e-5, 11_915_176),
    "s24": ((4, 4, 12, 4), S_DIMS, 1e-5, 21_388_968),
    "s36": ((6, 6, 18, 6), S_DIMS, 1e-6, 30_862_760),
    "m36": ((6, 6, 18, 6), M_DIMS, 1e-6, 56_172_520),
    "m48": ((8, 8, 24, 8), M_DIMS, 1e-6, 73_473_448),
}
BASELINE_GN_SIZES = {  # name: (depths, dims, poolformerv2 timm params)
    "s12": ((2, 2, 6, 2), S_DIMS, 11_891_712),
    "s24": ((4, 4, 12, 4), S_DIMS, 21_341_464),
    "s36": ((6, 6, 18, 6), S_DIMS, 30_791_216),
    "m36": ((6, 6, 18, 6), M_DIMS, 56_077_168),
    "m48": ((8, 8, 24, 8), M_DIMS, 73_346_056),
}
CONV_SIZES = {  # name: (depths, dims, convformer timm params, caformer timm params)
    "s18": ((3, 3, 9, 3), S_DIMS, 26_774_448, 26_341_656),
    "s36": ((3, 12, 18, 3), S_DIMS, 40_012_152, 39_297_102),
    "m36": ((3, 12, 18, 3), (96, 192, 384, 576), 57_051_640, 56_204_878),
    "b36": ((3, 12, 18, 3), (128, 256, 512, 768), 99_882_616, 98_753_614),
}
RANDOM_MIXING_TOKENS_224 = (0, 0, 14 * 14, 7 * 7)  # tokens per stage at 224 px (0: identity stage)


def _register_all() -> None:
    for size, (depths, dims, layer_scale, count) in POOLFORMER_SIZES.items():
        register_model(
            f"poolformer_{size}",
            ModelSpec(
                MetaFormer,
                dict(POOLFORMER_V1, depths=depths, dims=dims, layer_scale_init=layer_scale),
                POOLFORMER_PAPER,
                count,
                f"poolformer_{size}",
            ),
        )
    for size, (depths, dims, count) in BASELINE_GN_SIZES.items():
        shape = dict(GN_BASELINE, depths=depths, dims=dims)
        register_model(
            f"poolformerv2_{size}",
            ModelSpec(MetaFormer, dict(shape, token_mixers="pooling"), BASELINES_PAPER, count, f"poolformerv2_{size}"),
        )
        register_model(
            f"identityformer_{size}",
            ModelSpec(MetaFormer, dict(shape, token_mixers="identity"), BASELINES_PAPER, count),
        )
        random_weights = sum(d * n * n for d, n in zip(depths, RANDOM_MIXING_TOKENS_224))
        register_model(
            f"randformer_{size}",
            ModelSpec(
                MetaFormer,
                dict(shape, token_mixers=("identity", "identity", "random_mixing", "random_mixing")),
                BASELINES_PAPER,
                count + random_weights,
            ),
        )
    for size, (depths, dims, conv_count, ca_count) in CONV_SIZES.items():
        shape = dict(LN_BASELINE, depths=depths, dims=dims)
        register_model(
            f"convformer_{size}",
            ModelSpec(
                MetaFormer, dict(shape, token_mixers="sepconv"), BASELINES_PAPER, conv_count, f"convformer_{size}"
            ),
        )
        register_model(
            f"caformer_{size}",
            ModelSpec(
                MetaFormer,
                dict(shape, token_mixers=("sepconv", "sepconv", "attention", "attention")),
                BASELINES_PAPER,
                ca_count,
                f"caformer_{size}",
            ),
        )


_register_all()
