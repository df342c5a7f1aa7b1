"""Writes the golden RaftMLP fixtures made by the official code (okojoalg/raft-mlp), and measures parity.

tests/interop/test_raft_mlp_import.py converts these weights with `mixtok.interop.raft_mlp` and checks mixtok's
logits, pooled features and level outputs against the official ones, without torch. The official code is not
part of mixtok: pass the folder of a clone (or `git archive` tree) of okojoalg/raft-mlp (its libs/models.py and
libs/modules.py, unmodified, are imported from there). Needs torch and einops; from the repository root:

    python tools/make_raft_mlp_fixtures.py --official-repo PATH/TO/raft-mlp --out tests/fixtures/raft_mlp

(for an extracted tree, not a clone, add `--official-commit SHA` for the manifest; the committed fixtures come
from 6060d5d95e142acf80cea6d180adfb075cbe87d0.)

It builds two tiny `RaftMLP`s as libs/train.py `initialize` does (ser_pm, emb_cross_mlp, shortcut=False), with
the released patch sizes (4, 2, 2, 2) and embedding kernels, depths (1, 2, 1, 1), dims (8, 16, 16, 32) and
pretrained_image_size 32: one with raft size 2 run at 32 px (the trained grids 8, 4, 2, 1), one with raft sizes
(2, 4, 4, 2) run at 40 x 48 px (every level's grid differs from the trained one, so every RaftShrink /
RaftExpansion resizes bicubically, and levels 3 and 4 get odd inputs that `Level.forward` resizes up to the
next multiple of 2). Every parameter gets a random value (`randomise_`); a seeded batch runs in eval mode and
`<model>.npz` holds `input` [B, 3, H, W] (NCHW), `logits`, `pre_logits` (the head's pooled, normalised
features), `stage0` ... `stage3` [B, h, w, C] (each level's output; NHWC) and `state_dict/<key>`; plus
`manifest.json` with the official commit, the torch / einops versions, the constructor arguments (and the
matching mixtok overrides) and the sha256 of each file.

    PYTHONPATH=. python tools/make_raft_mlp_fixtures.py --official-repo PATH/TO/raft-mlp --parity

instead converts randomised named variants with mixtok.interop.raft_mlp and prints the largest logit difference
per variant and resolution (224 px, the trained size, and 256 px, through the bicubic shrink / expansion) over
`--seeds` seeds (this needs JAX and mixtok in the same environment as torch; nothing is written).
"""

import argparse
import copy
import importlib
import json
import os
import platform
import subprocess
import sys

import numpy as np
from make_timm_fixtures import jsonable, sha256

SEED = 20210810
BATCH = 2
NUM_CLASSES = 10
KERNELS = [[4, 8], [2, 4], [2, 4], [2]]  # configs/settings/imagenet-raft-mlp-cross-mlp-emb-*.yaml
PATCHES = [4, 2, 2, 2]


def layers(dims, depths, raft_sizes):
    """The yaml's `layers` list."""
    return [
        dict(depth=d, dim=c, patch_size=p, raft_size=r, embedding_kernels=k)
        for d, c, p, r, k in zip(depths, dims, PATCHES, raft_sizes, KERNELS)
    ]


TINY_DIMS, TINY_DEPTHS = [8, 16, 16, 32], [1, 2, 1, 1]
MODELS = {  # name: (official layers, pretrained_image_size, mixtok overrides, image (height, width))
    "raft_mlp_tiny": (
        layers(TINY_DIMS, TINY_DEPTHS, [2, 2, 2, 2]),
        32,
        dict(depths=(1, 2, 1, 1), dims=(8, 16, 16, 32), image_size=32),
        (32, 32),
    ),
    "raft_mlp_tiny_resized": (
        layers(TINY_DIMS, TINY_DEPTHS, [2, 4, 4, 2]),
        32,
        dict(depths=(1, 2, 1, 1), dims=(8, 16, 16, 32), raft_sizes=(2, 4, 4, 2), image_size=32),
        (40, 48),
    ),
}
PARITY_VARIANTS = {  # official settings name -> dims (depths (2, 2, 6, 2), raft 2)
    "imagenet-raft-mlp-cross-mlp-emb-s": [64, 128, 256, 512],
    "imagenet-raft-mlp-cross-mlp-emb-m": [96, 192, 384, 768],
    "imagenet-raft-mlp-cross-mlp-emb-l": [128, 192, 512, 1024],
}
PARITY_SIZES = (224, 256)


def import_official(repo: str):
    """libs.models of the official tree at `repo`, imported as it is (it imports libs.consts, libs.modules)."""
    if not os.path.isfile(os.path.join(repo, "libs", "models.py")):
        raise FileNotFoundError(f"{repo}/libs/models.py does not exist: --official-repo must be okojoalg/raft-mlp")
    sys.path.insert(0, os.path.abspath(repo))
    return importlib.import_module("libs.models")


def commit_of(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def build_official(models, layers_, pretrained_image_size, num_classes):
    """`RaftMLP` as libs/train.py `initialize` builds it from the released settings (eval mode)."""
    return models.RaftMLP(
        layers=copy.deepcopy(layers_),
        in_channels=3,
        pretrained_image_size=pretrained_image_size,
        num_classes=num_classes,
        token_expansion_factor=2,
        channel_expansion_factor=4,
        dropout=0.0,
        token_mixing_type="ser_pm",
        embedding_type="emb_cross_mlp",
        shortcut=False,
        drop_path_rate=0.1,
    ).eval()


def randomise_(model, torch, generator) -> None:
    """Every parameter random: weights N(0, 1 / fan_in), biases N(0, 0.1^2), LayerNorm weights U(0.5, 1.5)."""
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim >= 2:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5)
            else:  # LayerNorm weight
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    if any(True for _ in model.buffers()):
        raise RuntimeError("the official RaftMLP was expected to have no buffers")


def run_official(model, torch, images):
    """(logits, pre_logits, [level outputs NHWC]) of the official model in eval mode."""
    captured, hooks = {}, []
    for i, level in enumerate(model.levels):
        hooks.append(
            level.register_forward_hook(
                lambda m, args, out, i=i: captured.__setitem__(f"stage{i}", out.permute(0, 2, 3, 1))
            )
        )
    hooks.append(model.heads[0].register_forward_hook(lambda m, args, out: captured.__setitem__("pre_logits", out)))
    with torch.no_grad():
        logits = model(images)
    for hook in hooks:
        hook.remove()
    return logits, captured["pre_logits"], [captured[f"stage{i}"] for i in range(len(model.levels))]


def make_fixture(models, torch, layers_, pretrained, image, seed):
    torch.manual_seed(seed)
    model = build_official(models, layers_, pretrained, NUM_CLASSES)
    generator = torch.Generator().manual_seed(seed)
    randomise_(model, torch, generator)
    images = torch.randn(BATCH, 3, *image, generator=generator)
    logits, pre_logits, stages = run_official(model, torch, images)
    if float(logits.std()) < 0.1:
        raise RuntimeError(f"degenerate logits, std {float(logits.std()):.3g}")
    arrays = {"input": images, "logits": logits, "pre_logits": pre_logits}
    arrays.update({f"stage{i}": s for i, s in enumerate(stages)})
    arrays.update({f"state_dict/{k}": v for k, v in model.state_dict().items()})
    arrays = {k: np.array(v.detach().cpu().numpy(), order="C") for k, v in arrays.items()}
    figures = dict(logit_std=round(float(logits.std()), 3), parameters=sum(p.numel() for p in model.parameters()))
    return arrays, figures


def write_fixtures(models, torch, einops, args) -> int:
    os.makedirs(args.out, exist_ok=True)
    manifest = dict(
        made_by="python tools/make_raft_mlp_fixtures.py --official-repo raft-mlp --out "
        + args.out
        + (f" --official-commit {args.official_commit}" if args.official_commit else ""),
        official="okojoalg/raft-mlp: libs/models.py (RaftMLP), libs/modules.py",
        official_commit=args.official_commit or commit_of(args.official_repo),
        einops=einops.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        layout="input: NCHW; stages: [B, h, w, C]",
        models={},
    )
    for index, (name, (layers_, pretrained, overrides, image)) in enumerate(sorted(MODELS.items())):
        seed = SEED + index
        arrays, figures = make_fixture(models, torch, layers_, pretrained, image, seed)
        path = os.path.join(args.out, f"{name}.npz")
        np.savez_compressed(path, **arrays)
        manifest["models"][name] = dict(
            file=f"{name}.npz",
            sha256=sha256(path),
            official_class="RaftMLP",
            official_layers=jsonable(layers_),
            pretrained_image_size=pretrained,
            mixtok_overrides=jsonable(overrides),
            image_size=list(image),
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


def measure_parity(models, torch, args) -> int:
    """Largest |mixtok - official| logit difference per named variant and resolution, over the seeds."""
    import jax

    from mixtok.interop import raft_mlp as importer
    from mixtok.models import create_model

    relative = []
    for variant in args.variants:
        mixtok_name = importer.resolve_name(variant)
        forward = jax.jit(create_model(mixtok_name).apply)
        for size in args.sizes:
            errors, scales = [], []
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                model = build_official(models, layers(PARITY_VARIANTS[variant], [2, 2, 6, 2], [2] * 4), 224, 1000)
                if seed == 0 and size == args.sizes[0]:
                    print(f"{variant}: {sum(p.numel() for p in model.parameters()):,} official parameters")
                generator = torch.Generator().manual_seed(seed)
                randomise_(model, torch, generator)
                images = torch.randn(BATCH, 3, size, size, generator=generator)
                with torch.no_grad():
                    expected = model(images).numpy()
                variables = importer.convert(variant, model.state_dict())
                logits = np.asarray(forward(variables, images.numpy().transpose(0, 2, 3, 1)))
                errors.append(float(np.abs(logits - expected).max()))
                scales.append(float(np.abs(expected).max()))
            error, scale = max(errors), scales[int(np.argmax(errors))]
            relative.append(error / scale)
            print(
                f"{mixtok_name} ({variant}) {size} px, {args.seeds} seeds: largest max-abs logit error {error:.2e}, "
                f"{error / scale:.2e} of the largest logit ({scale:.3g}); largest logits {min(scales):.3g}..."
                f"{max(scales):.3g}",
                flush=True,
            )
    print(f"worst relative error {max(relative):.2e}")
    return 0 if all(r < 1e-4 for r in relative) else 1  # a nan fails too


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", required=True, help="a clone of okojoalg/raft-mlp (holds libs/models.py)")
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "raft_mlp"),
        help="folder for <model>.npz and manifest.json (default: tests/fixtures/raft_mlp)",
    )
    parser.add_argument("--official-commit", default=None, help="the commit of an extracted (not cloned) official tree")
    parser.add_argument("--parity", action="store_true", help="measure named-variant parity instead (needs mixtok)")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(PARITY_VARIANTS)[:2],
        choices=list(PARITY_VARIANTS),
        help="official settings names for --parity",
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=list(PARITY_SIZES), help="image sides for --parity")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant and size for --parity")
    args = parser.parse_args(argv)
    try:
        import einops
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch and einops: {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    models = import_official(args.official_repo)
    return measure_parity(models, torch, args) if args.parity else write_fixtures(models, torch, einops, args)


if __name__ == "__main__":
    sys.exit(main())
