"""Writes the golden MS-MLP fixtures made by the official code (JegZheng/MS-MLP), and measures parity.

tests/interop/test_ms_mlp_import.py converts these weights with `mixtok.interop.ms_mlp` and checks mixtok's
logits, pooled features and stage outputs against the official ones, without torch. The official code is not
part of mixtok: pass the folder of a clone of JegZheng/MS-MLP (its models/ms_mlp.py, unmodified, is imported
from there; it imports timm's old `timm.models.layers` path, which timm 1.0 still has). Needs torch and timm
(the `timm` extra); from the repository root:

    python tools/make_ms_mlp_fixtures.py --official-repo PATH/TO/MS-MLP --out tests/fixtures/ms_mlp

(for a tree extracted with `git archive`, not a clone, add `--official-commit SHA` for the manifest; the committed
fixtures come from a10d34d955c6061c767600937b534abd8a200871.)

It builds two tiny `MS_MLP`s (depths (1, 2, 1, 1), embed_dim 10, so that each stage's width splits into one
torch.chunk group per shift): one with the released configs' shifts and kernel sizes at 64 px, one with three
shifts (-1, 0, 1) and other kernel sizes at 32 x 64 px (not square: a swapped h, w shows). Every parameter gets
a random value (`randomise_`); a seeded batch runs in eval mode and `<model>.npz` holds `input` [B, 3, H, W]
(NCHW), `logits`, `pre_logits` (the pooled features after the final norm), `stage0` ... `stage3` [B, h, w, C]
(each stage's last block's output, before the downsampling; NHWC) and `state_dict/<key>`; plus
`manifest.json` with the official commit, the torch / timm versions, the constructor arguments (and the
matching mixtok overrides) and the sha256 of each file.

    PYTHONPATH=. python tools/make_ms_mlp_fixtures.py --official-repo PATH/TO/MS-MLP --parity

instead converts randomised named variants (tiny and small by default) with mixtok.interop.ms_mlp and prints the
largest logit difference per variant and resolution over `--seeds` seeds (this needs JAX and mixtok in the same
environment as torch; nothing is written).
"""

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys

import numpy as np
from make_timm_fixtures import jsonable, sha256

SEED = 20220215
BATCH = 2
NUM_CLASSES = 10
RELEASED_MIX = [[1, 1, 3, 5, 7], [1, 3, 3, 5, 7], [1, 5, 5, 5, 7], [1, 7, 7, 7, 7]]  # configs/msmlp_*.yaml
TINY = dict(embed_dim=10, depths=[1, 2, 1, 1], num_classes=NUM_CLASSES, mlp_ratio=2.0)
MODELS = {  # name: (official constructor arguments, mixtok create_model overrides, image (height, width))
    "ms_mlp_tiny": (
        dict(TINY, shift_size=5, shift_dist=[-2, -1, 0, 1, 2], mix_size=RELEASED_MIX),
        dict(depths=(1, 2, 1, 1), dims=(10, 20, 40, 80), mlp_ratios=2.0),
        (64, 64),
    ),
    "ms_mlp_tiny_three_shifts": (
        dict(TINY, shift_size=3, shift_dist=[-1, 0, 1], mix_size=[[3, 1, 5], [1, 3, 3], [5, 3, 1], [3, 3, 3]]),
        dict(
            depths=(1, 2, 1, 1),
            dims=(10, 20, 40, 80),
            mlp_ratios=2.0,
            shift_dist=(-1, 0, 1),
            mix_sizes=((3, 1, 5), (1, 3, 3), (5, 3, 1), (3, 3, 3)),
        ),
        (32, 64),
    ),
}
# Official MODEL.NAME -> (EMBED_DIM, DEPTHS) of configs/msmlp_*_patch4_shift5_224.yaml
PARITY_VARIANTS = {
    "ms_mlp_tiny_patch4_shift5_224": (96, [3, 3, 9, 3]),
    "ms_mlp_small_patch4_shift5_224": (96, [3, 3, 27, 3]),
    "ms_mlp_base_patch4_shift5_224": (128, [3, 3, 27, 3]),
}
PARITY_SIZES = (224, 256)  # the released resolution and another multiple of 32


def import_official_ms_mlp(repo: str):
    """models/ms_mlp.py of the official clone at `repo`, imported as it is."""
    path = os.path.join(repo, "models", "ms_mlp.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: --official-repo must be a clone of JegZheng/MS-MLP")
    spec = importlib.util.spec_from_file_location("official_ms_mlp", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def commit_of(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def build_official(ms_mlp, kwargs, image):
    """`MS_MLP` as models/build.py builds it (drop_path_rate and drop_rate do nothing in eval)."""
    return ms_mlp.MS_MLP(img_size=tuple(image), patch_size=4, in_chans=3, patch_norm=True, **kwargs).eval()


def randomise_(model, torch, generator) -> None:
    """Every parameter random, none left at its init (the model has no buffers).

    Weights (2 or more dims) N(0, 1 / fan_in); biases N(0, 0.1^2); the layer scales `gamma` N(0, 0.5^2) (their
    init, 1e-6, would make every block's branch negligible); LayerNorm weights U(0.5, 1.5).
    """
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith("gamma"):
                tensor.copy_(0.5 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim >= 2:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5)
            else:  # LayerNorm weight
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    if any(True for _ in model.buffers()):
        raise RuntimeError("the official MS_MLP was expected to have no buffers")


def run_official(model, torch, images):
    """(logits, pre_logits, [stage outputs NHWC]) of the official model in eval mode."""
    captured, hooks = {}, []
    for stage, layer in enumerate(model.layers):  # each stage's last block, before the layer's downsample
        hooks.append(
            layer.blocks[-1].register_forward_hook(
                lambda m, args, out, stage=stage: captured.__setitem__(f"stage{stage}", out.permute(0, 2, 3, 1))
            )
        )
    hooks.append(model.norm.register_forward_hook(lambda m, args, out: captured.__setitem__("pre_logits", out)))
    with torch.no_grad():
        logits = model(images)
    for hook in hooks:
        hook.remove()
    stages = [captured[f"stage{i}"] for i in range(len(model.layers))]
    return logits, captured["pre_logits"], stages


def make_fixture(ms_mlp, torch, kwargs, image, seed):
    torch.manual_seed(seed)
    model = build_official(ms_mlp, kwargs, image)
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


def write_fixtures(ms_mlp, torch, timm, args) -> int:
    os.makedirs(args.out, exist_ok=True)
    manifest = dict(
        made_by="python tools/make_ms_mlp_fixtures.py --official-repo MS-MLP --out "
        + args.out
        + (f" --official-commit {args.official_commit}" if args.official_commit else ""),
        official="JegZheng/MS-MLP: models/ms_mlp.py (MS_MLP)",
        official_commit=args.official_commit or commit_of(args.official_repo),
        timm=timm.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        layout="input: NCHW; stages: [B, h, w, C]",
        models={},
    )
    for index, (name, (kwargs, overrides, image)) in enumerate(sorted(MODELS.items())):
        seed = SEED + index
        arrays, figures = make_fixture(ms_mlp, torch, kwargs, image, seed)
        path = os.path.join(args.out, f"{name}.npz")
        np.savez_compressed(path, **arrays)
        manifest["models"][name] = dict(
            file=f"{name}.npz",
            sha256=sha256(path),
            official_class="MS_MLP",
            official_kwargs=jsonable(kwargs),
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


def measure_parity(ms_mlp, torch, args) -> int:
    """Largest |mixtok - official| logit difference per named variant and resolution, over the seeds."""
    import jax

    from mixtok.interop import ms_mlp as importer
    from mixtok.models import create_model

    relative = []
    for variant in args.variants:
        mixtok_name = importer.resolve_name(variant)
        embed_dim, depths = PARITY_VARIANTS[variant]
        forward = jax.jit(create_model(mixtok_name).apply)
        for size in args.sizes:
            errors, scales = [], []
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                kwargs = dict(embed_dim=embed_dim, depths=depths, mix_size=RELEASED_MIX, num_classes=1000)
                model = build_official(ms_mlp, kwargs, (size, size))
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
    parser.add_argument("--official-repo", required=True, help="a clone of JegZheng/MS-MLP (holds models/ms_mlp.py)")
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "ms_mlp"),
        help="folder for <model>.npz and manifest.json (default: tests/fixtures/ms_mlp)",
    )
    parser.add_argument(
        "--official-commit",
        default=None,
        help="the commit of an extracted (not cloned) official tree",
    )
    parser.add_argument("--parity", action="store_true", help="measure named-variant parity instead (needs mixtok)")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(PARITY_VARIANTS)[:2],
        choices=list(PARITY_VARIANTS),
        help="official MODEL.NAMEs for --parity",
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=list(PARITY_SIZES), help="image sides for --parity")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant and size for --parity")
    args = parser.parse_args(argv)
    try:
        import timm
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch and timm (pip install -e '.[timm]'): {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    ms_mlp = import_official_ms_mlp(args.official_repo)
    return measure_parity(ms_mlp, torch, args) if args.parity else write_fixtures(ms_mlp, torch, timm, args)


if __name__ == "__main__":
    sys.exit(main())
