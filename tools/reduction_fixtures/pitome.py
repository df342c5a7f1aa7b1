"""PiToMe's fixture: the official `pitome.patch.deit` on the tiny DeiT (depth 4), ratio 0.75 and 0.9.

The official `PiToMeVisionTransformer.forward` targets an older timm (its `forward_features` reads `dist_token`
and returns pooled features, which timm 1.0's `forward_head` pools again), so this sets `_info` exactly as that
`forward` does (`ratio` per block, `use_bsm_pitome` for the first ceil(depth / 2) blocks) and runs timm's own
`VisionTransformer.forward_features` and `forward_head`, whose blocks are the official `PiToMeBlock` /
`PiToMeAttention`.
"""

import math

OFFICIAL = "hchautran/PiToMe: algo/pitome/patch/deit.py, algo/pitome/patch/timm.py, algo/pitome/merge.py"
SETTINGS = (0.75, 0.9)  # ratio: the fraction of tokens each block keeps


def run_official(model, images, ratio, vision_transformer):
    """The official PiToMe forward on a patched timm model (see the module docstring)."""
    depth = len(model.blocks)
    bsm = math.ceil(depth * 0.5)
    model.ratio = ratio
    model._info["ratio"] = [ratio] * depth
    model._info["use_bsm_pitome"] = [True] * bsm + [False] * (depth - bsm)
    model._info["size"] = None
    model._info["source"] = None
    return model.forward_head(vision_transformer.forward_features(model, images))


def load_patch(official_path):
    """The official `pitome.patch.deit.apply_patch`, without the package `__init__`s (they import the BERT / BLIP /
    CLIP patches, which need transformers and lavis)."""
    import importlib
    import os
    import sys
    import types

    for name, folder in (("pitome", "algo/pitome"), ("pitome.patch", "algo/pitome/patch")):
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(official_path, folder)]
        sys.modules[name] = package
    return importlib.import_module("pitome.patch.deit").apply_patch


def make(common, official_path):
    from timm.models.vision_transformer import VisionTransformer

    patch_deit = load_patch(official_path)

    torch, arrays = common.torch, {}
    # One set of weights and images (tag "model", seed 0) serves every ratio: the file stays small.
    for ratio in SETTINGS:
        model = common.tiny_deit(common.timm)
        generator = common.randomise_(model, torch, seed=0)
        images = torch.randn(2, 3, 32, 32, generator=generator)
        with torch.no_grad():
            arrays["model:plain_logits"] = model(images).numpy()
            patch_deit(model)
            arrays[f"ratio{ratio}:logits"] = run_official(model, images, ratio, VisionTransformer).numpy()
    arrays["model:images"] = images.numpy().transpose(0, 2, 3, 1)
    for k, v in model.state_dict().items():
        arrays[f"model:param:{k}"] = v.numpy()
    return dict(arrays=arrays, facts=dict(settings=list(SETTINGS), prop_attn=False))
