"""Writes the golden fixtures of mixtok's token-reduction rules: a tiny timm DeiT run through an official rule.

    python tools/make_reduction_fixtures.py --rule tome --out tests/fixtures/reduction

Needs torch, timm and a checkout of the rule's official repository (`--official PATH`, put on sys.path);
nothing here is imported by mixtok or its tests. For each rule, `tools/reduction_fixtures/<rule>.py` defines
`make(common, official_path) -> {"arrays": ..., "facts": ...}`: it builds the tiny model with
`common.tiny_deit`, randomises it with `common.randomise_`, applies the official code and returns, per
setting `TAG`, the arrays `TAG:images` (NHWC), `TAG:logits`, `TAG:plain_logits` (without the rule) and
`TAG:param:<timm key>` (the state dict), and the settings as facts. This script writes `<rule>.npz` and
`<rule>_manifest.json` (the command, versions, the official commit, the settings and the file's SHA-256).

The tiny model (`TINY`): timm VisionTransformer, 32 px images, patch 8 (16 patches + a class token = 17
tokens), width 32, 2 heads, depth 4, MLP ratio 2, 5 classes; weights randomised as the timm parity tests do
(Linear / conv weights normal(0, 1 / fan_in), biases normal(0, 0.1), norm weights uniform(0.5, 1.5)), so
no part of a block hides behind its init value. mixtok's side: `create_model("deit_tiny_patch16_224",
**MIXTOK_TINY)` with the state dict converted by `mixtok.interop.timm.convert`.
"""

import argparse
import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
from types import SimpleNamespace

import numpy as np

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2, mlp_ratio=2.0, num_classes=5)
MIXTOK_TINY = dict(image_size=32, patch_size=8, dims=(32,), depths=(4,), num_heads=2, mlp_ratios=2.0, num_classes=5)


def tiny_deit(timm, distilled: bool = False, **overrides):
    """The tiny timm DeiT of the fixtures (VisionTransformerDistilled when `distilled`), in eval mode."""
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    cls = VisionTransformerDistilled if distilled else VisionTransformer
    return cls(**{**TINY, **overrides}).eval()


def randomise_(model, torch, seed: int = 0):
    """Random weights everywhere (see the module docstring); returns the generator for the images."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if key.endswith("bias"):
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
            elif param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) / param[0].numel() ** 0.5)
            else:
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))
    return generator


def official_commit(path: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", required=True, help="a module of tools/reduction_fixtures, e.g. tome")
    parser.add_argument("--official", required=True, help="checkout of the rule's official repository")
    parser.add_argument("--out", default="tests/fixtures/reduction")
    args = parser.parse_args(argv)
    import timm
    import torch

    sys.path.insert(0, os.path.abspath(args.official))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    maker = importlib.import_module(f"reduction_fixtures.{args.rule}")
    common = SimpleNamespace(tiny_deit=tiny_deit, randomise_=randomise_, timm=timm, torch=torch, TINY=TINY)
    result = maker.make(common, args.official)
    arrays, facts = result["arrays"], result["facts"]
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.rule}.npz")
    np.savez_compressed(path, **arrays)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    manifest = dict(
        made_by=f"python tools/make_reduction_fixtures.py --rule {args.rule} --official OFFICIAL --out {args.out}",
        official=maker.OFFICIAL,
        official_commit=official_commit(args.official),
        timm=timm.__version__,
        torch=torch.__version__,
        python=platform.python_version(),
        tiny=TINY,
        file=os.path.basename(path),
        sha256=digest,
        **facts,
    )
    with open(os.path.join(args.out, f"{args.rule}_manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{args.rule}: wrote {path} ({os.path.getsize(path):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
