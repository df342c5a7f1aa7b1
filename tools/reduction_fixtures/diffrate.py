"""DiffRate's fixture: the official `DiffRate.patch.deit` on the tiny DeiT in eval mode, two (prune, merge) schedules.

timm 1.0's `Block` names its drop paths `drop_path1` / `drop_path2`; the official `DiffRateBlock.forward` (written
for timm 0.4.5) calls `self.drop_path`, so each block gets the identity under that name (eval mode: no drop path).
The schedules are set with the official `set_kept_num`, as `--load_compression_rate` does. The package's
`__init__` files import its CAFormer patch, which needs timm 0.4's `timm.models.layers.helpers`; they are
skipped (empty packages stand in for them) and DiffRate/patch/deit.py is imported alone.
"""

import os
import sys
import types

OFFICIAL = "OpenGVLab/DiffRate: DiffRate/patch/deit.py, DiffRate/merge.py, DiffRate/ddp.py"
# tag -> (prune_kept_num, merge_kept_num) per block of the 17-token tiny DeiT: pruning and merging in one
# layer, merging only, pruning only, counts past the layer's tokens (nothing to do), down to 3 tokens.
SETTINGS = {
    "a": ((17, 15, 11, 7), (17, 12, 9, 3)),
    "b": ((16, 13, 13, 5), (14, 14, 9, 6)),
}
WEIGHTS = "a"  # every setting runs the same randomised model on the same images, stored once under this tag


def make(common, official_path):
    for name, folder in (("DiffRate", "DiffRate"), ("DiffRate.patch", os.path.join("DiffRate", "patch"))):
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(official_path, folder)]
        sys.modules[name] = package
    from DiffRate.patch.deit import apply_patch

    torch, arrays = common.torch, {}
    for tag, (prune, merge) in SETTINGS.items():
        model = common.tiny_deit(common.timm)
        generator = common.randomise_(model, torch, seed=0)
        images = torch.randn(2, 3, 32, 32, generator=generator)
        with torch.no_grad():
            arrays[f"{tag}:plain_logits"] = model(images).numpy()
            apply_patch(model)
            for block in model.blocks:
                block.drop_path = torch.nn.Identity()
            model.eval()
            model.set_kept_num(list(prune), list(merge))
            logits, flops = model(images)
            arrays[f"{tag}:logits"] = logits.numpy()
            arrays[f"{tag}:flops"] = torch.as_tensor(flops, dtype=torch.float64).numpy()
        if tag != WEIGHTS:  # the same seed: the same weights and images as the first setting
            continue
        arrays[f"{tag}:images"] = images.numpy().transpose(0, 2, 3, 1)
        for k, v in model.state_dict().items():
            if "ddp" not in k:
                arrays[f"{tag}:param:{k}"] = v.numpy()
    arrays.update(make_search(common, official_path))
    facts = dict(settings={k: [list(p), list(m)] for k, (p, m) in SETTINGS.items()}, search=SEARCH)
    return dict(arrays=arrays, facts=facts)


SEARCH = dict(granularity=2, seed=1, flops_unit=1e5, target=5.0)  # the search's training forward, as below


def make_search(common, official_path):
    """The official training-mode forward (masks, the differentiable proxy, the FLOPs) with random rate logits:
    logits, FLOPs and the gradients of the rate logits of loss = sum(logits * weights) + (FLOPs / unit - target)^2."""
    from DiffRate.patch.deit import apply_patch

    torch, arrays = common.torch, {}
    model = common.tiny_deit(common.timm)
    generator = common.randomise_(model, torch, seed=0)
    images = torch.randn(2, 3, 32, 32, generator=generator)
    apply_patch(model, prune_granularity=SEARCH["granularity"], merge_granularity=SEARCH["granularity"])
    for block in model.blocks:
        block.drop_path = torch.nn.Identity()
    rates = torch.Generator().manual_seed(SEARCH["seed"])
    with torch.no_grad():
        for block in model.blocks[1:]:
            for ddp in (block.prune_ddp, block.merge_ddp):
                ddp.selected_probability.copy_(2.0 * torch.randn(ddp.selected_probability.shape, generator=rates))
    model.train()
    logits, flops = model(images)
    weights = torch.randn(logits.shape, generator=rates)
    loss = (logits * weights).sum() + (flops / SEARCH["flops_unit"] - SEARCH["target"]) ** 2
    loss.backward()
    arrays["search:logits"] = logits.detach().numpy()
    arrays["search:flops"] = flops.detach().double().numpy()
    arrays["search:weights"] = weights.numpy()
    arrays["search:prune_logits"] = torch.stack(
        [b.prune_ddp.selected_probability.detach() for b in model.blocks[1:]]
    ).numpy()
    arrays["search:merge_logits"] = torch.stack(
        [b.merge_ddp.selected_probability.detach() for b in model.blocks[1:]]
    ).numpy()
    arrays["search:prune_grad"] = torch.stack([b.prune_ddp.selected_probability.grad for b in model.blocks[1:]]).numpy()
    arrays["search:merge_grad"] = torch.stack([b.merge_ddp.selected_probability.grad for b in model.blocks[1:]]).numpy()
    arrays["search:kept"] = torch.tensor(model.get_kept_num()).numpy()
    return arrays
