"""Writes the golden GFNet fixtures: tiny models built and run by the official GFNet code (raoyongming/GFNet).

tests/interop/test_golden_official.py converts these weights with `mixtok.interop.gfnet` and checks mixtok's
logits, pooled features and (pyramid) stage outputs against the official ones, without torch. The official
code is not part of mixtok: pass the folder of a clone of raoyongming/GFNet (its gfnet.py, unmodified, is
imported from there). Needs torch and timm (the `timm` extra), not mixtok or JAX; from the repository root:

    python tools/make_gfnet_fixtures.py --gfnet-repo PATH/TO/GFNet --out tests/fixtures/gfnet

It builds an isotropic `GFNet` (64 px, patch 8: an 8 x 8 token grid, filters 8 x 5) and a `GFNetPyramid`
(64 px: grids 16, 8, 4, 2) with small widths and one or two blocks a stage, gives every parameter random
values (the global filters and the position embedding N(0, 1), as large as the tokens they act on, so a
swapped real / imaginary part or a transposed grid shows; the rest as tools/make_timm_fixtures.py does), runs
a seeded batch and saves `<model>.npz`: `input` [B, 3, 64, 64] (NCHW), `logits`, `pre_logits` (the token
mean after the final norm), for the pyramid `stage0` ... `stage3` [B, h, w, C] (each stage's last block,
tokens in the row-major order of the official `view(B, h, w, C)`), and `state_dict/<key>`; plus
`manifest.json` with the official commit, the torch / timm versions and the constructor arguments.

gfnet.py imports `pad` from `numpy.lib.arraypad`, which numpy 2 made private; it never uses it, so the tool
puts an alias of numpy.pad under that name before importing gfnet.py.
"""

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import types

import numpy as np
from make_timm_fixtures import BATCH, NUM_CLASSES, jsonable, sha256

SEED = 20240612
IMAGE = 64
MODELS = {  # name: (official class, constructor arguments)
    "gfnet_isotropic": ("GFNet", dict(img_size=IMAGE, patch_size=8, embed_dim=32, depth=2, num_classes=NUM_CLASSES)),
    "gfnet_pyramid": (
        "GFNetPyramid",
        dict(
            img_size=IMAGE,
            embed_dim=[16, 24, 32, 48],
            depth=[1, 1, 2, 1],
            mlp_ratio=[4, 4, 4, 4],
            num_classes=NUM_CLASSES,
        ),
    ),
}


def import_official_gfnet(repo: str):
    """gfnet.py of the official clone at `repo`, imported as it is."""
    if "numpy.lib.arraypad" not in sys.modules:
        try:
            import numpy.lib.arraypad  # noqa: F401  (numpy 1.x)
        except ImportError:
            sys.modules["numpy.lib.arraypad"] = types.SimpleNamespace(pad=np.pad)
    path = os.path.join(repo, "gfnet.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: --gfnet-repo must be a clone of raoyongming/GFNet")
    spec = importlib.util.spec_from_file_location("official_gfnet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def commit_of(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def randomise_(model, torch, generator) -> None:
    """Filters and position embedding N(0, 1); weights N(0, 1 / fan_in); biases N(0, 0.1); 1-D U(0.5, 1.5)."""
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith(("complex_weight", "pos_embed")):
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            elif name.endswith("bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim >= 2:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5)
            else:
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    if list(model.buffers()):
        raise RuntimeError("the official GFNet gained buffers; randomise them too")


def make_fixture(gfnet, torch, class_name, kwargs, seed):
    torch.manual_seed(seed)
    model = getattr(gfnet, class_name)(**kwargs).eval()
    generator = torch.Generator().manual_seed(seed)
    randomise_(model, torch, generator)
    images = torch.randn(BATCH, 3, IMAGE, IMAGE, generator=generator)
    stages, hooks = {}, []
    if class_name == "GFNetPyramid":
        for i, stage in enumerate(model.blocks):
            side = kwargs["img_size"] // (4 * 2**i)
            hooks.append(
                stage.register_forward_hook(
                    lambda m, args, out, i=i, side=side: stages.__setitem__(
                        f"stage{i}", out.reshape(out.shape[0], side, side, out.shape[-1])
                    )
                )
            )
    with torch.no_grad():
        logits = model(images)
        pre_logits = model.forward_features(images)
    for hook in hooks:
        hook.remove()
    if float(logits.std()) < 0.1:
        raise RuntimeError(f"{class_name}: degenerate logits, std {float(logits.std()):.3g}")
    arrays = {"input": images, "logits": logits, "pre_logits": pre_logits, **stages}
    arrays.update({f"state_dict/{k}": v for k, v in model.state_dict().items()})
    arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in arrays.items()}
    figures = dict(logit_std=round(float(logits.std()), 3), parameters=sum(p.numel() for p in model.parameters()))
    return arrays, figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gfnet-repo", required=True, help="a clone of raoyongming/GFNet (holds gfnet.py)")
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "gfnet"),
        help="folder for <model>.npz and manifest.json (default: tests/fixtures/gfnet)",
    )
    args = parser.parse_args(argv)
    try:
        import timm
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch and timm (pip install -e '.[timm]'): {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    gfnet = import_official_gfnet(args.gfnet_repo)
    os.makedirs(args.out, exist_ok=True)
    manifest = dict(
        made_by="python tools/make_gfnet_fixtures.py --gfnet-repo GFNet --out " + args.out,
        official="raoyongming/GFNet: gfnet.py",
        official_commit=commit_of(args.gfnet_repo),
        timm=timm.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        layout="input: NCHW; stages: [B, h, w, C]",
        models={},
    )
    for index, (name, (class_name, kwargs)) in enumerate(sorted(MODELS.items())):
        seed = SEED + index
        arrays, figures = make_fixture(gfnet, torch, class_name, kwargs, seed)
        path = os.path.join(args.out, f"{name}.npz")
        np.savez_compressed(path, **arrays)
        manifest["models"][name] = dict(
            file=f"{name}.npz",
            sha256=sha256(path),
            official_class=class_name,
            official_kwargs=jsonable(kwargs),
            seed=seed,
            **figures,
        )
        print(
            f"{name}: {figures['parameters']:,} parameters, logit std {figures['logit_std']}, "
            f"{os.path.getsize(path) / 1e3:.0f} kB"
        )
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
