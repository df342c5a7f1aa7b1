"""EViT's fixture: the official `evit.EViT` with the tiny timm DeiT's weights, with and without token fusion.

One set of weights and images (tag "w"); the official logits of each setting as `w:logits:<fuse|drop>_<rate>`.
And one official `Block` token by token (`block_arrays`): the logits cannot see the order of the kept tokens
(attention is permutation-equivariant), the block's output can.

The official evit.py imports helpers.py, which imports torchprofile (for its FLOP counter only); a stand-in
module is put in sys.modules so that it imports without it.
"""

import sys
import types

OFFICIAL = "youweiliang/evit: evit.py (EViT, Block, Attention), helpers.py (complement_idx)"
SETTINGS = ((True, 0.7, (1, 2)), (False, 0.5, (1, 3)))  # (fuse_token, keep rate, 0-based layers)
BLOCK_RATE = 0.6


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
    arrays.update(block_arrays(evit, torch))
    return dict(arrays=arrays, facts=dict(tag="w", settings=[[f, r, list(ls)] for f, r, ls in SETTINGS]))


def block_arrays(evit, torch):
    """One official `Block` on random tokens, its MLP's output projection zeroed so that the block returns the
    reorganised tokens themselves: `block:tokens` (after the attention residual), `block:cls_attn` (the head-mean
    class attention to the other tokens) and `block:<fuse|drop>` (the block's output), keep rate BLOCK_RATE."""
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randn(3, 21, 32, generator=generator)
    blocks = {
        name: evit.Block(dim=32, num_heads=2, qkv_bias=True, keep_rate=BLOCK_RATE, fuse_token=fuse).eval()
        for name, fuse in (("fuse", True), ("drop", False))
    }
    with torch.no_grad():
        for param in blocks["fuse"].parameters():
            param.copy_(torch.randn(param.shape, generator=generator) / param.shape[-1] ** 0.5)
        blocks["fuse"].mlp.fc2.weight.zero_()
        blocks["fuse"].mlp.fc2.bias.zero_()
        blocks["drop"].load_state_dict(blocks["fuse"].state_dict())
        update, _, _, cls_attn, _ = blocks["fuse"].attn(blocks["fuse"].norm1(tokens), BLOCK_RATE)
        arrays = {"block:tokens": (tokens + update).numpy(), "block:cls_attn": cls_attn.numpy()}
        for name, block in blocks.items():
            arrays[f"block:{name}"] = block(tokens, BLOCK_RATE)[0].numpy()
    return arrays
