"""What `mixtok.interop.timm` needs to know about timm's DaViT (`davit_tiny`, `davit_small`, `davit_base`).

mixtok's DaViT mirrors timm's module tree (timm/models/davit.py `DaVit`, timm 1.0.31), so the generic rules
of `mixtok.interop.timm` name every parameter: `stages_2/blocks_1/0/attn/qkv/kernel` is timm's
`stages.2.blocks.1.0.attn.qkv.weight` (unit 1 of stage 2, its spatial block), norms' `scale` is `weight`.
Only the layouts are family-specific: timm's DaVit runs its attention and MLP Linears on channels-last
tokens, so every Dense kernel is a Linear weight [out, in] (never a 1x1 conv), and its convolutions (stem,
downsamplings, the depthwise position encodings `cpe1` / `cpe2`) are Conv2d weights [out, in / groups, kh, kw].

Official checkpoints (dingmyu/davit: `patch_embeds.*`, `main_blocks.*`, `norms.*`, `head.*`) use other
names; timm's own `checkpoint_filter_fn` renames them when timm loads the file, so they are converted by
loading them into timm first (`OFFICIAL_CHECKPOINT_HINT`).
"""

from collections.abc import Iterable, Sequence

from mixtok.models.davit import DaViT

OFFICIAL_KEY_PREFIXES = ("patch_embeds.", "main_blocks.", "norms.")
OFFICIAL_CHECKPOINT_HINT = (
    " The keys look like an official dingmyu/davit checkpoint, not timm's: load it into timm "
    "(timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path)), whose checkpoint filter "
    "renames the keys) and pass model.state_dict(), or download the timm weights (davit_tiny.msft_in1k ...)."
)


def is_davit(model) -> bool:
    return isinstance(model, DaViT)


def dense_is_pointwise(module_path: Sequence[str]) -> bool:
    """False for every Dense layer of DaViT: timm holds each as an nn.Linear weight [out, in]."""
    return False


def looks_official(keys: Iterable[str]) -> bool:
    """Whether a state dict's keys are those of an official dingmyu/davit checkpoint."""
    return any(k.startswith(OFFICIAL_KEY_PREFIXES) for k in keys)
