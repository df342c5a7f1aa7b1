"""ToMe's fixture: the official `tome.patch.timm` on the tiny DeiT (r = 2 and r = 4) and on its distilled form (r = 3).

Arrays: `model:*` / `distilled:*` hold each model's weights (`param:<timm key>`), images and unreduced logits
(`plain_logits`); `r2:logits`, `r4:logits`, `distilled_r3:logits` the official ToMe logits.
"""

OFFICIAL = "facebookresearch/ToMe: tome/patch/timm.py, tome/merge.py"
SETTINGS = (("model", False, (2, 4)), ("distilled", True, (3,)))  # (tag, distilled, r values)


def make(common, official_path):
    import tome

    torch, arrays = common.torch, {}
    for tag, distilled, rs in SETTINGS:
        model = common.tiny_deit(common.timm, distilled=distilled)
        generator = common.randomise_(model, torch, seed=0)
        images = torch.randn(2, 3, 32, 32, generator=generator)
        arrays[f"{tag}:images"] = images.numpy().transpose(0, 2, 3, 1)
        for k, v in model.state_dict().items():
            arrays[f"{tag}:param:{k}"] = v.numpy()
        with torch.no_grad():
            arrays[f"{tag}:plain_logits"] = model(images).numpy()
            tome.patch.timm(model)
            for r in rs:
                model.r = r
                name = f"r{r}" if tag == "model" else f"{tag}_r{r}"
                arrays[f"{name}:logits"] = model(images).numpy()
    return dict(arrays=arrays, facts=dict(settings=[[tag, distilled, list(rs)] for tag, distilled, rs in SETTINGS]))
