"""ToMe's fixture: the official `tome.patch.timm` on the tiny DeiT (and its distilled form), r = 2 and r = 4."""

OFFICIAL = "facebookresearch/ToMe: tome/patch/timm.py, tome/merge.py"
SETTINGS = ((False, 2), (False, 4), (True, 3))  # (distilled, r)


def make(common, official_path):
    import tome

    torch, arrays = common.torch, {}
    for distilled, r in SETTINGS:
        model = common.tiny_deit(common.timm, distilled=distilled)
        generator = common.randomise_(model, torch, seed=0)
        images = torch.randn(2, 3, 32, 32, generator=generator)
        tag = f"{'distilled_' if distilled else ''}r{r}"
        with torch.no_grad():
            arrays[f"{tag}:plain_logits"] = model(images).numpy()
            tome.patch.timm(model)
            model.r = r
            arrays[f"{tag}:logits"] = model(images).numpy()
        arrays[f"{tag}:images"] = images.numpy().transpose(0, 2, 3, 1)
        for k, v in model.state_dict().items():
            arrays[f"{tag}:param:{k}"] = v.numpy()
    return dict(arrays=arrays, facts=dict(settings=[list(s) for s in SETTINGS]))
