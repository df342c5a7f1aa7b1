"""MCTF's fixture: the official models/deit.py VisionTransformer (its `Block_DEIT`, `MHSA` and utils/mctf.py) with
the tiny DeiT's randomised timm weights, at r = 3 and 4 with the official eval's `mctf_type` (run/
eval_deit_s_mctf.sh: prop_attn, one-step-ahead, tau 1 / 20 / 40, bidirectional, attention pooling) on blocks
1 - 3, and at r = 3 with one-step-ahead "precise" (2), one direction and size pooling (`mctf_type` type 0).
"""

from functools import partial

OFFICIAL = "mlvlab/MCTF: models/deit.py, models/modules/blocks.py, models/SA/MHSA.py, utils/mctf.py"
EVAL_TYPE = [16, 0, 0, 1, 1, 1, 20, 40, 1, 1, 0]  # run/eval_deit_s_mctf.sh (its r is replaced by r_eval)
PRECISE_TYPE = [16, 0, 0, 1, 2, 1, 20, 40, 0, 0, 0]
SETTINGS = (("eval_r3", EVAL_TYPE, 3), ("eval_r4", EVAL_TYPE, 4), ("precise_r3", PRECISE_TYPE, 3))


def official_model(official_path, torch, mctf_type, **size):
    """The official VisionTransformer (models/deit.py) with MCTF on blocks 1.. (`--activate_layer`)."""
    import sys

    sys.path.insert(0, official_path)
    from models.deit import VisionTransformer

    depth = size["depth"]
    return VisionTransformer(
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_mctf=True,
        mctf_type=list(mctf_type),
        task_type=[1, 0, 0, 0],
        activate_layer=list(range(1, depth)),
        **size,
    ).eval()


def make(common, official_path):
    torch, arrays = common.torch, {}
    tiny = common.tiny_deit(common.timm)
    generator = common.randomise_(tiny, torch, seed=0)
    images = torch.randn(2, 3, 32, 32, generator=generator)
    size = dict(input_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2, mlp_ratio=2.0, num_classes=5)
    with torch.no_grad():
        arrays["model:plain_logits"] = tiny(images).numpy()
        for tag, mctf_type, r in SETTINGS:
            model = official_model(official_path, torch, mctf_type, **size)
            model.load_state_dict(tiny.state_dict(), strict=True)
            arrays[f"{tag}:logits"] = model(images, r_eval=r).numpy()
    arrays["model:images"] = images.numpy().transpose(0, 2, 3, 1)
    for k, v in tiny.state_dict().items():
        arrays[f"model:param:{k}"] = v.numpy()
    facts = dict(settings=[[tag, list(t), r] for tag, t, r in SETTINGS], activate_layer=[1, 2, 3])
    return dict(arrays=arrays, facts=facts)
