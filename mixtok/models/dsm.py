"""The DSM backbone: a four-stage MetaFormer whose token mixer is the Dynamic Spectrum Mixer.

Paper: "Dynamic Spectrum Mixer for Visual Recognition" (Zhiqiang Hu, Tao Yu; arXiv 2309.06721, 2023).
No official code is known, and the paper's body could not be retrieved here, only its abstract.
The abstract says DSM is a backbone for classification, detection and segmentation (83.8% ImageNet
top-1, 49.9 mIoU on ADE20K), which implies a hierarchical (pyramid) network, but not its stem,
stages, widths, depths, block layout or head. So the backbone is DFFormer's, the closest documented
design with a dynamic global spectral filter (okojoalg/dfformer @ 11f8c7b: models/dfformer.py, itself
MetaFormer Baselines' `MetaFormer`), with `mixtok.mixers.dsm.DynamicSpectrumMixer` in every stage:

    stem:   conv 7x7 stride 4 padding 2 -> LayerNorm (no bias, eps 1e-6)
    stage i (i > 0): LayerNorm (no bias) -> conv 3x3 stride 2 padding 1
    block:  x = res_scale1(x) + drop_path(mixer(norm1(x)))
            x = res_scale2(x) + drop_path(mlp(norm2(x)))
            norms LayerNorm (no bias, eps 1e-6); MLP Linear(C -> 4C) -> StarReLU -> Linear (no biases);
            res scale (init 1) in stages 3-4 only; no layer scale
    head:   global average pool -> LayerNorm (eps 1e-6) -> MlpHead (Linear(C -> 4C) -> SquaredReLU
            -> LayerNorm (eps 1e-5, PyTorch's default, as DFFormer builds it) -> Linear)

which is `mixtok.models.metaformer.MetaFormer` with the options of `DSM_OPTIONS`. Two differences to
DFFormer's file, both ours: `head_dropout` follows the MetaFormer module here (timm: a dropout before
the MlpHead and inside it; DFFormer only inside), and a filter stored for one grid is resized in the
forward pass for another (DFFormer resizes only with `weight_resize=True`).

Grids. Each stage's mixer stores its base filters for the token grid of the model's `image_size`
(224 px: 56, 28, 14, 7; MetaFormer gives every mixer with a `grid_size` its stage's grid), so
`create_model("dsm_s18", image_size=384)` is a model whose parameters are shaped for 384 px. Grids
given explicitly in `mixer_kwargs` win (`stage_mixer_kwargs(image_size)` builds them per stage).
"""

from collections.abc import Sequence
from typing import Any

from mixtok.mixers.dsm import DynamicSpectrumMixer  # importing it registers "dynamic_spectrum_mixer"

__all__ = [
    "DSM_OPTIONS",
    "DynamicSpectrumMixer",
    "PAPER",
    "STAGE_STRIDES",
    "dsm_kwargs",
    "stage_grids",
    "stage_mixer_kwargs",
]

PAPER = "Dynamic Spectrum Mixer for Visual Recognition (Hu & Yu, arXiv 2309.06721, 2023)"
STAGE_STRIDES = (4, 8, 16, 32)  # stem 4, then three stride-2 downsamplings

# DFFormer's MetaFormer settings (= MetaFormer Baselines' ConvFormer/CAFormer ones), with the DSM mixer.
DSM_OPTIONS: dict[str, Any] = dict(
    token_mixers="dynamic_spectrum_mixer",
    norms="layernorm_nobias",
    norm_epsilon=1e-6,
    downsample_norm="layernorm_nobias",
    downsample_norm_epsilon=1e-6,
    mlp_activation="star_relu",
    mlp_bias=False,
    layer_scale_init=None,
    res_scale_init=(None, None, 1.0, 1.0),
    use_mlp_head=True,
    head_norm_epsilon=1e-6,
    head_mlp_norm_epsilon=1e-5,
)


def stage_grids(image_size: int) -> tuple[tuple[int, int], ...]:
    """The token grid (h, w) of every stage for square `image_size` images (a multiple of 32)."""
    if image_size <= 0 or image_size % STAGE_STRIDES[-1]:
        raise ValueError(
            f"image_size must be a positive multiple of the total stride {STAGE_STRIDES[-1]}; got {image_size}."
        )
    return tuple((image_size // s, image_size // s) for s in STAGE_STRIDES)


def stage_mixer_kwargs(image_size: int = 224, **mixer_options) -> tuple[dict[str, Any], ...]:
    """Per-stage `mixer_kwargs`: each stage's filter grid for `image_size`, plus shared mixer options."""
    return tuple(dict(mixer_options, grid_size=grid) for grid in stage_grids(image_size))


def dsm_kwargs(depths: Sequence[int], dims: Sequence[int], image_size: int = 224, **mixer_options) -> dict[str, Any]:
    """MetaFormer arguments of a DSM backbone with these stage depths and widths, shaped for `image_size`."""
    if len(depths) != len(STAGE_STRIDES) or len(dims) != len(STAGE_STRIDES):
        raise ValueError(
            f"A DSM backbone has {len(STAGE_STRIDES)} stages; got depths {tuple(depths)} and dims {tuple(dims)}."
        )
    stage_grids(image_size)  # the same check, before anything is built
    return dict(
        DSM_OPTIONS,
        depths=tuple(depths),
        dims=tuple(dims),
        image_size=image_size,
        mixer_kwargs=dict(mixer_options) or None,
    )
