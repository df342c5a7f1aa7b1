"""What `mixtok.interop.timm` needs to know about timm's ViT and DeiT (`vit_*_patch16_224`, `deit_*_patch16_224`).

mixtok's VisionTransformer mirrors timm's module tree (timm 1.0.31 timm/models/vision_transformer.py
`VisionTransformer`, timm/models/deit.py `VisionTransformerDistilled`), so the generic rules name every
parameter:

    mixtok patch_embed/proj/kernel [16, 16, 3, C]          <-> timm patch_embed.proj.weight [C, 3, 16, 16]
    mixtok cls_token, dist_token [1, 1, C]; pos_embed        <-> timm cls_token, dist_token; pos_embed
      [1, prefix + N, C]
    mixtok blocks_3/attn/qkv/kernel [C, 3C]                 <-> timm blocks.3.attn.qkv.weight [3C, C]
    mixtok blocks_3/mlp/fc1/kernel [C, 4C]; norm1/scale     <-> timm blocks.3.mlp.fc1.weight [4C, C]; norm1.weight
    mixtok head/kernel, head_dist/kernel [C, classes]       <-> timm head.weight, head_dist.weight [classes, C]

Every Dense kernel is an nn.Linear weight [out, in] (timm's ViT runs on [B, N, C] tokens), and the position
embedding's shape depends on the image size, so the key table is built at the model's own `image_size`
(224 for the named variants). Parity figures: mixtok.models.vit and tests/interop/test_timm.py.
"""

from collections.abc import Sequence

from mixtok.models.vit import VisionTransformer


def is_vit(model) -> bool:
    return isinstance(model, VisionTransformer)


def init_shape(model) -> tuple[int, int]:
    """(height, width) of the images whose parameter shapes timm's model has: the model's own image size."""
    return model.image_size, model.image_size


def dense_is_pointwise(module_path: Sequence[str]) -> bool:
    """False for every Dense layer of ViT: timm holds each as an nn.Linear weight [out, in]."""
    return False
