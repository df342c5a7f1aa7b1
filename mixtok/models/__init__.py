"""Backbones assembled from token mixers, and the zoo of named paper variants.

    mixtok.models.list_models("caformer_*")
    model = mixtok.models.create_model("caformer_s18", num_classes=1000)
    features = model.apply(variables, images, method="features")   # [B, h, w, C]

Every backbone takes the same argument names (`depths`, `dims`, `num_classes`, `drop_path_rate`,
`head_dropout`, `image_size`, `dtype`, `param_dtype`; `num_heads`, `mlp_ratios`, `token_mixers` where
the design has them) and has the same feature interface (`method="features"`, `"intermediates"`,
`"forward_head"`; `mixtok.models.backbone`). mixtok/models/README.md has the table, with what each
name means in each family.
"""

from mixtok.models import (
    affnet_variants,  # noqa: F401  (registers the variants)
    cas_vit_variants,  # noqa: F401  (registers the variants)
    davit_variants,  # noqa: F401  (registers the variants)
    dsm_variants,  # noqa: F401  (registers the variants)
    ffnet_variants,  # noqa: F401  (registers the variants)
    gfnet_variants,  # noqa: F401  (registers the variants)
    hydra_vit_variants,  # noqa: F401  (registers the variants)
    iformer_variants,  # noqa: F401  (registers the variants)
    lsnet_variants,  # noqa: F401  (registers the variants)
    mamba_mixer_variants,  # noqa: F401  (registers the variants)
    metaformer_variants,  # noqa: F401  (registers the variants)
    mlp_mixer_variants,  # noqa: F401  (registers the variants)
    ms_mlp_variants,  # noqa: F401  (registers the variants)
    ponet_variants,  # noqa: F401  (registers the variants)
    raft_mlp_variants,  # noqa: F401  (registers the variants)
    s2aformer_variants,  # noqa: F401  (registers the stand-ins)
    strip_mlp_variants,  # noqa: F401  (registers the variants)
    transnext_variants,  # noqa: F401  (registers the variants)
    vit_variants,  # noqa: F401  (registers the variants)
    wavemix_variants,  # noqa: F401  (registers the variants)
)
from mixtok.models.metaformer import MetaFormer
from mixtok.models.registry import (
    MODELS,
    ModelSpec,
    count_params,
    create_model,
    list_models,
    model_spec,
    register_model,
)

__all__ = [
    "MODELS",
    "MetaFormer",
    "ModelSpec",
    "count_params",
    "create_model",
    "list_models",
    "model_spec",
    "register_model",
]
