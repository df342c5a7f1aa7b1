"""Writes the golden timm fixtures: tiny models built by timm itself, their random weights and their outputs.

tests/interop/test_golden_timm.py converts these weights with mixtok's converter and checks mixtok's
logits and stage outputs against timm's, so CI checks parity with timm without installing torch.
Needs torch and timm (the `timm` extra), not mixtok or JAX; run it from the repository root:

    python tools/make_timm_fixtures.py --out tests/fixtures/timm

For each family timm implements (PoolFormer v1, PoolFormerV2, IdentityFormer, ConvFormer, CAFormer from
timm/models/metaformer.py; DaViT from timm/models/davit.py) it builds a tiny model with timm's own class and
the family's own options (norms, activations, heads, scales), with small widths and one or two blocks a
stage; gives every parameter and floating-point buffer random values (`randomise_`); runs a fixed seeded
batch; and saves `<family>.npz` holding

    input                 [B, 3, H, W] float32, timm's NCHW layout
    logits                [B, num_classes]
    pre_logits            [B, C] the pooled, normalised features the classifier reads
    stage0 ... stage3     [B, C_i, H_i, W_i] each stage's output (timm's forward_intermediates)
    state_dict/<key>      timm's state dict, every tensor as a numpy array

plus `manifest.json`: the timm / torch versions, each family's timm class and constructor arguments (classes
by qualified name), the input shape and seed, the figures that show the fixture is not degenerate, and each
file's SHA-256. RandFormer is left out: timm has no RandomMixing mixer (only the official sail-sg code does).
IdentityFormer has no named timm variant but is timm's MetaFormer with `nn.Identity` mixers, the official
identityformer_* recipe (sail-sg/metaformer: metaformer_baselines.py), so it is built with timm's class too.
The whole set is about 4 MB.

MLP-Mixer (timm/models/mlp_mixer.py `MlpMixer`) has a fixture of its own, written only with `--mixer`
(so the files above are never rewritten by it): `mixer.npz` (the same arrays, with `block0`, `block1` for
the two blocks' outputs, timm's `forward_intermediates`, instead of four stages) and `mixer_manifest.json`:

    python tools/make_timm_fixtures.py --mixer --out tests/fixtures/timm
"""

import argparse
import hashlib
import inspect
import itertools
import json
import os
import platform
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

SEED = 20240611
BATCH = 2
NUM_CLASSES = 10
METAFORMER_DEPTHS = (1, 1, 2, 1)
# CAFormer's attention has heads of a fixed width 32 (timm's default head_dim), so its attention stages
# 3-4 are 1 and 2 heads wide; the other families use the same widths so that every fixture is alike.
METAFORMER_DIMS = (16, 24, 32, 64)
# 64 x 96: a multiple of the total stride 32, and not square, so a transposed height and width fails.
METAFORMER_IMAGE = (64, 96)
DAVIT_DEPTHS = (1, 1, 2, 1)
DAVIT_DIMS = (16, 24, 32, 64)
DAVIT_HEADS = (2, 2, 4, 4)
# 62 x 90 is no multiple of 4, so timm's stem pads it; stage 1 is then 16 x 23, so the downsampling pads
# too; and no stage is a multiple of the 7 x 7 window, so every window attention pads its input.
DAVIT_IMAGE = (62, 90)
DAVIT_WINDOW = 7
# MLP-Mixer: two blocks of width 32 on 8-px patches of a 32 x 48 image, a 4 x 6 grid of 24 tokens (not square:
# a token MLP reading the patches in the wrong order fails), token MLP 16 wide, channel MLP 128.
MIXER_KWARGS = dict(img_size=(32, 48), patch_size=8, num_blocks=2, embed_dim=32, num_classes=NUM_CLASSES)
MIXER_SEED = SEED + 100
# A residual branch much smaller than its input would hide a wrong branch inside the tests' tolerance;
# at 0.05 of the input's scale a wrong branch moves the outputs some 1e-2, a thousand times the 1e-5 checked.
MIN_BRANCH_TO_RESIDUAL = 0.05


def metaformer_families(metaformer, nn) -> dict[str, dict[str, Any]]:
    """Each MetaFormer family's timm constructor arguments, copied from timm's own variant functions."""
    shape = dict(depths=METAFORMER_DEPTHS, dims=METAFORMER_DIMS, num_classes=NUM_CLASSES)
    return {
        "poolformer": dict(
            shape,
            downsample_norm=None,
            mlp_act=nn.GELU,
            mlp_bias=True,
            norm_layers=metaformer.GroupNorm1,
            layer_scale_init_values=1e-5,
            res_scale_init_values=None,
            use_mlp_head=False,
        ),  # poolformer_s12
        "poolformerv2": dict(shape, norm_layers=metaformer.GroupNorm1NoBias, use_mlp_head=False),  # poolformerv2_s12
        "identityformer": dict(
            shape, token_mixers=nn.Identity, norm_layers=metaformer.GroupNorm1NoBias, use_mlp_head=False
        ),  # official identityformer_s12
        "convformer": dict(
            shape, token_mixers=metaformer.SepConv, norm_layers=metaformer.LayerNorm2dNoBias
        ),  # convformer_s18
        "caformer": dict(
            shape,
            token_mixers=[metaformer.SepConv] * 2 + [metaformer.Attention] * 2,
            norm_layers=[metaformer.LayerNorm2dNoBias] * 2 + [metaformer.LayerNormNoBias] * 2,
        ),
    }


def families() -> dict[str, tuple[Callable, dict[str, Any], tuple[int, int]]]:
    """{family: (timm class, constructor arguments, image height and width)}."""
    import torch.nn as nn
    from timm.models import davit, metaformer

    table = {
        name: (metaformer.MetaFormer, kwargs, METAFORMER_IMAGE)
        for name, kwargs in metaformer_families(metaformer, nn).items()
    }
    table["davit"] = (
        davit.DaVit,
        dict(
            depths=DAVIT_DEPTHS,
            embed_dims=DAVIT_DIMS,
            num_heads=DAVIT_HEADS,
            window_size=DAVIT_WINDOW,
            num_classes=NUM_CLASSES,
        ),
        DAVIT_IMAGE,
    )
    return table


def randomise_(model, torch, generator) -> list[str]:
    """Random values in every parameter and floating-point buffer, none left at its init.

    Weights (2 or more dims) are normal with std 1 / sqrt(fan_in), which keeps every branch at the scale of
    its input and attention logits of order one; biases are normal(0, 0.1); every 1-D tensor that is not a
    bias (norm weights, layer / res scales, StarReLU's scale) is uniform(0.5, 1.5), positive and away from
    its init (layer scale's 1e-5 would make a wrong block invisible). Returns the names of the buffers that
    were left alone because they are not floating point (none in these families).
    """
    kept = []
    with torch.no_grad():
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
            if not tensor.is_floating_point():
                kept.append(name)
            elif name.endswith("bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim >= 2:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5)
            else:
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    return kept


def branch_to_residual_ratios(model, torch, images) -> list[float]:
    """std(branch) / std(block input) for every residual branch (each `drop_path1` / `drop_path2` output)."""
    inputs, branches, hooks = {}, {}, []
    for name, module in model.named_modules():
        children = dict(module.named_children())
        if "drop_path1" not in children:
            continue
        hooks.append(
            module.register_forward_pre_hook(lambda m, args, key=name: inputs.__setitem__(key, args[0].std().item()))
        )
        for branch in ("drop_path1", "drop_path2"):
            if children.get(branch) is not None:
                hooks.append(
                    children[branch].register_forward_hook(
                        lambda m, args, out, key=(name, branch): branches.__setitem__(key, out.std().item())
                    )
                )
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return [std / inputs[block] for (block, _), std in branches.items()]


def mixer_branch_to_residual_ratios(model, images) -> list[float]:
    """std(branch) / std(block input) for the token and channel MLP of every MixerBlock."""
    inputs, branches, hooks = {}, {}, []
    for name, module in model.named_modules():
        if type(module).__name__ != "MixerBlock":
            continue
        hooks.append(
            module.register_forward_pre_hook(lambda m, args, key=name: inputs.__setitem__(key, args[0].std().item()))
        )
        for branch in ("mlp_tokens", "mlp_channels"):
            hooks.append(
                getattr(module, branch).register_forward_hook(
                    lambda m, args, out, key=(name, branch): branches.__setitem__(key, out.std().item())
                )
            )
    model(images)
    for hook in hooks:
        hook.remove()
    return [std / inputs[block] for (block, _), std in branches.items()]


def make_mixer_fixture(out: str, timm, torch) -> int:
    """Writes mixer.npz and mixer_manifest.json: a tiny timm MlpMixer, its random weights and its outputs."""
    from timm.models.mlp_mixer import MlpMixer

    torch.manual_seed(MIXER_SEED)
    model = MlpMixer(**MIXER_KWARGS).eval()
    generator = torch.Generator().manual_seed(MIXER_SEED)
    kept = randomise_(model, torch, generator)
    images = torch.randn(BATCH, 3, *MIXER_KWARGS["img_size"], generator=generator)
    with torch.no_grad():
        logits = model(images)
        blocks = model.forward_intermediates(images, intermediates_only=True)  # NCHW
        pre_logits = model.forward_head(model.forward_features(images), pre_logits=True)
        ratios = mixer_branch_to_residual_ratios(model, images)
    if min(ratios) < MIN_BRANCH_TO_RESIDUAL or float(logits.std()) < 0.1:
        raise RuntimeError(f"mixer: degenerate fixture (branch/residual {min(ratios):.3f}, logit std {logits.std()})")
    arrays = {"input": images, "logits": logits, "pre_logits": pre_logits}
    arrays.update({f"block{i}": x for i, x in enumerate(blocks)})
    arrays.update({f"state_dict/{k}": v for k, v in model.state_dict().items()})
    arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in arrays.items()}
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "mixer.npz")
    np.savez_compressed(path, **arrays)
    manifest = dict(
        made_by="python tools/make_timm_fixtures.py --mixer --out " + out,
        timm=timm.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        layout="input, block outputs: NCHW (timm); state_dict/<key>: timm's tensors as they are",
        file="mixer.npz",
        sha256=sha256(path),
        timm_class=jsonable(MlpMixer),
        timm_kwargs=jsonable(MIXER_KWARGS),
        input_shape=list(arrays["input"].shape),
        seed=MIXER_SEED,
        min_branch_to_residual=round(min(ratios), 3),
        logit_std=round(float(logits.std()), 3),
        parameters=sum(p.numel() for p in model.parameters()),
        non_float_buffers_kept=kept,
    )
    with open(os.path.join(out, "mixer_manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    print(
        f"mixer: {manifest['parameters']:,} parameters, logit std {manifest['logit_std']}, smallest "
        f"branch/residual {manifest['min_branch_to_residual']}, {os.path.getsize(path) / 1e3:.0f} kB"
    )
    return 0


def jsonable(value: Any) -> Any:
    """Constructor arguments for the manifest: classes by qualified name, tuples as lists."""
    if inspect.isclass(value):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def make_fixture(family: str, cls, kwargs: dict[str, Any], image_size: tuple[int, int], torch, seed: int):
    """The arrays of one family's fixture and the figures that show it is not degenerate."""
    torch.manual_seed(seed)  # the init, overwritten below; fixed anyway so that a rerun is identical
    model = cls(**kwargs).eval()
    generator = torch.Generator().manual_seed(seed)
    kept = randomise_(model, torch, generator)
    images = torch.randn(BATCH, 3, *image_size, generator=generator)
    with torch.no_grad():
        logits = model(images)
        stages = model.forward_intermediates(images, intermediates_only=True)
        pre_logits = model.forward_head(model.forward_features(images), pre_logits=True)
    ratios = branch_to_residual_ratios(model, torch, images)
    if min(ratios) < MIN_BRANCH_TO_RESIDUAL:
        raise RuntimeError(
            f"{family}: a residual branch is {min(ratios):.3f} of its input's scale (below "
            f"{MIN_BRANCH_TO_RESIDUAL}); a wrong branch would hide inside the tolerance."
        )
    if float(logits.std()) < 0.1:
        raise RuntimeError(f"{family}: degenerate logits, std {float(logits.std()):.3g}")
    arrays = {"input": images, "logits": logits, "pre_logits": pre_logits}
    arrays.update({f"stage{i}": x for i, x in enumerate(stages)})
    arrays.update({f"state_dict/{k}": v for k, v in model.state_dict().items()})
    arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in arrays.items()}
    figures = dict(
        min_branch_to_residual=round(min(ratios), 3),
        logit_std=round(float(logits.std()), 3),
        parameters=sum(p.numel() for p in model.parameters()),
        non_float_buffers_kept=kept,
    )
    return arrays, figures


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "timm"),
        help="folder for <family>.npz and manifest.json (default: tests/fixtures/timm)",
    )
    parser.add_argument(
        "--families",
        nargs="*",
        default=None,
        help="only these families (default: all); the manifest keeps the others' entries",
    )
    parser.add_argument(
        "--mixer",
        action="store_true",
        help="write only the MLP-Mixer fixture (mixer.npz, mixer_manifest.json); the other files are left alone",
    )
    args = parser.parse_args(argv)
    try:
        import timm
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch and timm (pip install -e '.[timm]'): {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)  # one thread: the sums run in one fixed order, so a rerun writes the same numbers
    if args.mixer:
        return make_mixer_fixture(args.out, timm, torch)
    table = families()
    chosen = args.families or sorted(table)
    unknown = sorted(set(chosen) - set(table))
    if unknown:
        print(f"error: unknown families {unknown}; valid: {sorted(table)}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    manifest_path = os.path.join(args.out, "manifest.json")
    old = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = json.load(f).get("families", {})
    manifest = dict(
        made_by="python tools/make_timm_fixtures.py --out " + args.out,
        timm=timm.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        layout="input, stage outputs: NCHW (timm); state_dict/<key>: timm's tensors as they are",
        families=dict(old),
    )
    for index, family in enumerate(sorted(table)):
        if family not in chosen:
            continue
        cls, kwargs, image_size = table[family]
        seed = SEED + index
        arrays, figures = make_fixture(family, cls, kwargs, image_size, torch, seed)
        path = os.path.join(args.out, f"{family}.npz")
        np.savez_compressed(path, **arrays)
        manifest["families"][family] = dict(
            file=f"{family}.npz",
            sha256=sha256(path),
            timm_class=jsonable(cls),
            timm_kwargs=jsonable(kwargs),
            input_shape=list(arrays["input"].shape),
            seed=seed,
            **figures,
        )
        print(
            f"{family}: {figures['parameters']:,} parameters, logit std {figures['logit_std']}, smallest "
            f"branch/residual {figures['min_branch_to_residual']}, {os.path.getsize(path) / 1e3:.0f} kB"
        )
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
