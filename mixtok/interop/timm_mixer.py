"""What `mixtok.interop.timm` needs to know about timm's MLP-Mixer (`mixer_s16_224`, `mixer_b16_224`, `mixer_l16_224`).

mixtok's MlpMixer mirrors timm's module tree (timm 1.0.31 timm/models/mlp_mixer.py `MlpMixer`, `MixerBlock`),
so the generic rules of `mixtok.interop.timm` name every parameter:

    mixtok stem/proj/kernel [16, 16, 3, C]                <-> timm stem.proj.weight [C, 3, 16, 16]
    mixtok blocks_3/mlp_tokens/fc1/kernel [N, C / 2]       <-> timm blocks.3.mlp_tokens.fc1.weight [C / 2, N]
    mixtok blocks_3/mlp_channels/fc2/kernel [4C, C]        <-> timm blocks.3.mlp_channels.fc2.weight [C, 4C]
    mixtok blocks_3/norm1/scale, norm/scale                <-> timm blocks.3.norm1.weight, norm.weight
    mixtok head/kernel [C, classes]                        <-> timm head.weight [classes, C]

Only three things are family-specific: every Dense kernel is an nn.Linear weight [out, in] (timm's Mixer runs
on [B, N, C] tokens, never 1x1 convs); the classifier is a bare Linear `head` (not MetaFormer's `head.fc`);
and the token MLPs' shapes depend on the image size, so the key table is built at the model's own
`image_size` (224 for the named variants) rather than at its stride.

Parity (measured 2026-12-07, timm 1.0.31, torch 2.14 on CPU, JAX 0.10.2): with every timm weight
randomised (biases normal(0, 0.1), weights normal(0, 1 / fan_in), norm weights uniform(0.5, 1.5)), two
N(0, 1) 224-px images, the converted mixtok model's logits differ from timm's by at most 1.2e-6 over five
runs (mixer_s16_224 seeds 0-2: 8.3e-7, 6.6e-7, 7.2e-7; mixer_b16_224 seed 3: 6.7e-7; mixer_l16_224 seed 4:
1.2e-6; logit std about 0.4), and `to_timm` of the converted variables loads back into timm with strict=True.
Without torch, tests/interop/test_golden_timm_mixer.py checks a tiny timm MlpMixer (tests/fixtures/timm/
mixer.npz, made by `python tools/make_timm_fixtures.py --mixer`) to 1e-5.

The official JAX checkpoints (google-research/vision_transformer, `.npz` with `MixerBlock_0/token_mixing/
Dense_0/kernel` ...) are what timm's `mixer_*.goog_in21k*` weights were converted from; load those through
timm (its hub weights) and pass the timm state dict.
"""

from collections.abc import Sequence

from mixtok.models.mlp_mixer import MlpMixer

OFFICIAL_KEY_PREFIXES = ("MixerBlock_", "stem/", "pre_head_layer_norm")
OFFICIAL_CHECKPOINT_HINT = (
    " The keys look like an official google-research/vision_transformer Mixer checkpoint (.npz), not timm's: "
    "download the timm weights (mixer_b16_224.goog_in21k_ft_in1k ...), which timm converted from it, and pass "
    "timm.create_model(name, pretrained=True).state_dict()."
)
# The classifier's weight in a timm Mixer state dict (a bare Linear, not MetaFormer's head.fc).
HEAD_WEIGHT = "head.weight"


def is_mixer(model) -> bool:
    return isinstance(model, MlpMixer)


def init_shape(model) -> tuple[int, int]:
    """(height, width) of the images whose parameter shapes timm's model has: the model's own image size."""
    return model.image_shape


def dense_is_pointwise(module_path: Sequence[str]) -> bool:
    """False for every Dense layer of MLP-Mixer: timm holds each as an nn.Linear weight [out, in]."""
    return False


def looks_official(keys) -> bool:
    """Whether a state dict's keys are those of an official google-research/vision_transformer Mixer checkpoint."""
    return any(k.startswith(OFFICIAL_KEY_PREFIXES) for k in keys)
