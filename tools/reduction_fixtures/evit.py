"""EViT's fixture: the official `evit.EViT` with the tiny timm DeiT's weights, with and without token fusion.

One set of weights and images (tag "w"); the official logits of each setting as `w:logits:<fuse|drop>_<rate>`.

The official evit.py imports helpers.py, which imports torchprofile (for its FLOP counter only); a stand-in
module is put in sys.modules so that it imports without it.
"""

import sys
import types

OFFICIAL = "youweiliang/evit: evit.py (EViT, Block, Attention), helpers.py (complement_idx)"
SETTINGS = ((True, 0.7, (1, 2)), (False, 0.5, (1, 3)))  # (fuse_token, keep rate, 0-based layers)


def make(common, official_path):
    sys.modules.setdefault("torchprofile", types.SimpleNamespace(profile_macs=None))
    import evit

    torch, t = common.torch, common.TINY
    model = common.tiny_deit(common.timm)
    generator = common.randomise_(model, torch, seed=0)
    images = torch.randn(2, 3, 32, 32, generator=generator)
    arrays = {"w:images": images.numpy().transpose(0, 2, 3, 1)}
    arrays.update({f"w:param:{k}": v.numpy() for k, v in model.state_dict().items()})
    with torch.no_grad():
        arrays["w:plain_logits"] = model(images).numpy()
    for fuse, rate, layers in SETTINGS:  # one set of weights and images, the official model per setting
        keep_rate = tuple(rate if i in layers else 1 for i in range(t["depth"]))
        official = evit.EViT(
            img_size=t["img_size"],
            patch_size=t["patch_size"],
            embed_dim=t["embed_dim"],
            depth=t["depth"],
            num_heads=t["num_heads"],
            mlp_ratio=t["mlp_ratio"],
            num_classes=t["num_classes"],
            keep_rate=keep_rate,
            fuse_token=fuse,
        ).eval()
        official.load_state_dict(model.state_dict(), strict=True)
        with torch.no_grad():
            arrays[f"w:logits:{'fuse' if fuse else 'drop'}_{rate}"] = official(images).numpy()
    return dict(arrays=arrays, facts=dict(tag="w", settings=[[f, r, list(ls)] for f, r, ls in SETTINGS]))
