"""Writes the golden Strip-MLP fixtures made by the official code (Med-Process/Strip_MLP), and measures parity.

tests/interop/test_strip_mlp_import.py converts these weights with `mixtok.interop.strip_mlp` and checks mixtok's
logits, pooled features and stage outputs against the official ones, without torch. The official code is not
part of mixtok: pass the folder of a clone of Med-Process/Strip_MLP (its models/strip_mlp.py, unmodified, is
imported from there). Needs torch and timm (the `timm` extra); from the repository root:

    python tools/make_strip_mlp_fixtures.py --official-repo PATH/TO/Strip_MLP --out tests/fixtures/strip_mlp

It builds a tiny `StripMLPNet` (embed_dim 8, layers (1, 1, 1, 1), alpha 3) at 64 px (token grids 16, 8, 4, 2;
p = 4 channel groups everywhere: a width that is a multiple of 80, p = 2, needs embed_dim >= 40 and makes a
fixture of megabytes, so p = 2 is covered by the --parity run of strip_mlp_tiny_light, whose widths 80 ... 640
all have p = 2, and by tests/mixers/test_strip_mlp.py), gives every parameter and every BatchNorm buffer
random values (`randomise_`), runs a seeded batch in eval mode and saves `<model>.npz`: `input` [B, 3, H, W]
(NCHW), `logits`, `pre_logits` (the spatial mean after the final norm), `stage0` ... `stage3` [B, h, w, C] (each
stage's output, NHWC) and `state_dict/<key>`; plus `manifest.json` with the official commit, the torch / timm
versions, the constructor arguments and the sha256 of each file.

    PYTHONPATH=. python tools/make_strip_mlp_fixtures.py --official-repo PATH/TO/Strip_MLP --parity

instead converts randomised named variants (tiny_light and small by default, 224 px) with
mixtok.interop.strip_mlp and prints the largest logit difference per variant over `--seeds` seeds (this needs
JAX and mixtok in the same environment as torch; nothing is written).

models/strip_mlp.py imports matplotlib.pyplot (`axis`), which it never uses; when matplotlib is not installed the
tool puts a stub under that name (it raises if called) before importing the file.
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
from make_timm_fixtures import jsonable, sha256

SEED = 20230714
BATCH = 2
NUM_CLASSES = 10
MODELS = {  # name: (constructor arguments, image side)
    "strip_mlp_tiny": (dict(embed_dim=8, layers=[1, 1, 1, 1], alpha=3, num_classes=NUM_CLASSES), 64),
}
PARITY_VARIANTS = ("smlp_tiny_light_alpha3_patch4_224_imagenet1k", "smlp_small_alpha3_patch4_224_imagenet1k")
CONFIG_ARGUMENTS = {  # configs/smlp_*_imagenet1k.yaml: EMBED_DIM, LAYERS (ALPHA 3, IMG_SIZE 224)
    "smlp_tiny_light_alpha3_patch4_224_imagenet1k": (80, [2, 2, 6, 2]),
    "smlp_tiny_alpha3_patch4_224_imagenet1k": (80, [2, 2, 12, 2]),
    "smlp_small_alpha3_patch4_224_imagenet1k": (96, [2, 2, 18, 2]),
    "smlp_base_alpha3_patch4_224_imagenet1k": (112, [2, 2, 18, 2]),
}


def import_official_strip_mlp(repo: str):
    """models/strip_mlp.py of the official clone at `repo`, imported as it is."""
    path = os.path.join(repo, "models", "strip_mlp.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: --official-repo must be a clone of Med-Process/Strip_MLP")
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:

        def unused(*args, **kwargs):
            raise RuntimeError(
                "matplotlib is stubbed by make_strip_mlp_fixtures.py: strip_mlp.py was not expected to call it"
            )

        pyplot = types.SimpleNamespace(axis=unused)
        sys.modules["matplotlib"] = types.SimpleNamespace(pyplot=pyplot)
        sys.modules["matplotlib.pyplot"] = pyplot
    spec = importlib.util.spec_from_file_location("official_strip_mlp", path)
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


def randomise_(model, torch, generator, image: int) -> None:
    """Every parameter and BatchNorm buffer random, none left at its init (so no branch is negligible).

    Weights (2 or more dims, except the GRN's and the position tables) N(0, 1 / fan_in); biases N(0, 0.1^2);
    BatchNorm and LayerNorm weights U(0.5, 1.5); GRN gamma N(0, 0.5^2), beta N(0, 0.1^2); position tables
    N(0, 0.5^2). The BatchNorm running statistics are calibrated, then randomised, in one eval-mode forward of a
    separate random batch of 4: each BatchNorm, just before it runs, takes its input's per-channel mean and
    (unbiased) variance, multiplies the variance by U(0.5, 1.5) and moves the mean by N(0, 0.2^2) standard
    deviations, so that later norms see the activations the randomised earlier ones make and no activation
    explodes. num_batches_tracked (an integer counter) is left alone.
    """

    def calibrate(norm, args):
        x = args[0]
        std = x.var(dim=(0, 2, 3), unbiased=True).sqrt()
        norm.running_mean.copy_(x.mean(dim=(0, 2, 3)) + 0.2 * std * torch.randn(std.shape, generator=generator))
        norm.running_var.copy_(std**2 * (0.5 + torch.rand(std.shape, generator=generator)))

    def normal(shape, std):
        return std * torch.randn(shape, generator=generator)

    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("grn.gamma"):
                tensor.copy_(normal(tensor.shape, 0.5))
            elif name.endswith("grn.beta") or name.endswith("bias"):
                tensor.copy_(normal(tensor.shape, 0.1))
            elif name.endswith("embeddings_table"):
                tensor.copy_(normal(tensor.shape, 0.5))
            elif tensor.ndim >= 2:
                tensor.copy_(normal(tensor.shape, tensor[0].numel() ** -0.5))
            else:  # BatchNorm / LayerNorm weight
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        hooks = [norm.register_forward_pre_hook(calibrate) for norm in norms]
        model.eval()(torch.randn(4, 3, image, image, generator=generator))
        for hook in hooks:
            hook.remove()


def run_official(model, torch, images):
    """(logits, pre_logits, [stage outputs NHWC]) of the official model in eval mode."""
    captured, hooks = {}, []
    for stage in range(4):
        blocks = getattr(model, f"blocks{stage + 1}")
        hooks.append(
            blocks[-1].register_forward_hook(
                lambda m, args, out, stage=stage: captured.__setitem__(f"stage{stage}", out.permute(0, 2, 3, 1))
            )
        )
    hooks.append(
        model.norm.register_forward_hook(lambda m, args, out: captured.__setitem__("pre_logits", out.mean((2, 3))))
    )
    with torch.no_grad():
        logits = model(images)
    for hook in hooks:
        hook.remove()
    return logits, captured["pre_logits"], [captured[f"stage{i}"] for i in range(4)]


def make_fixture(official, torch, kwargs, image, seed):
    torch.manual_seed(seed)
    model = official.StripMLPNet(img_size=image, **kwargs).eval()
    generator = torch.Generator().manual_seed(seed)
    randomise_(model, torch, generator, image)
    images = torch.randn(BATCH, 3, image, image, generator=generator)
    logits, pre_logits, stages = run_official(model, torch, images)
    if float(logits.std()) < 0.1:
        raise RuntimeError(f"degenerate logits, std {float(logits.std()):.3g}")
    arrays = {"input": images, "logits": logits, "pre_logits": pre_logits}
    arrays.update({f"stage{i}": s for i, s in enumerate(stages)})
    arrays.update({f"state_dict/{k}": v for k, v in model.state_dict().items()})
    arrays = {k: np.array(v.detach().cpu().numpy(), order="C") for k, v in arrays.items()}  # 0-d stays 0-d
    figures = dict(logit_std=round(float(logits.std()), 3), parameters=sum(p.numel() for p in model.parameters()))
    return arrays, figures


def write_fixtures(official, torch, timm, args) -> int:
    os.makedirs(args.out, exist_ok=True)
    manifest = dict(
        made_by="python tools/make_strip_mlp_fixtures.py --official-repo Strip_MLP --out " + args.out,
        official="Med-Process/Strip_MLP: models/strip_mlp.py (StripMLPNet)",
        official_commit=commit_of(args.official_repo),
        timm=timm.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        layout="input: NCHW; stages: [B, h, w, C]",
        models={},
    )
    for index, (name, (kwargs, image)) in enumerate(sorted(MODELS.items())):
        seed = SEED + index
        arrays, figures = make_fixture(official, torch, kwargs, image, seed)
        path = os.path.join(args.out, f"{name}.npz")
        np.savez_compressed(path, **arrays)
        manifest["models"][name] = dict(
            file=f"{name}.npz",
            sha256=sha256(path),
            official_class="StripMLPNet",
            official_kwargs=jsonable(dict(kwargs, img_size=image)),
            image_size=image,
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


def measure_parity(official, torch, args) -> int:
    """Largest |mixtok - official| logit difference per named variant, over the seeds (224 px)."""
    import jax

    from mixtok.interop import strip_mlp as importer
    from mixtok.models import create_model

    relative = []
    for variant in args.variants:
        mixtok_name = importer.resolve_name(variant)
        embed_dim, layers = CONFIG_ARGUMENTS[variant]
        forward = jax.jit(create_model(mixtok_name).apply)
        errors, scales, counts = [], [], set()
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = official.StripMLPNet(img_size=224, embed_dim=embed_dim, layers=layers, alpha=3).eval()
            counts.add(sum(p.numel() for p in model.parameters()))
            generator = torch.Generator().manual_seed(seed)
            randomise_(model, torch, generator, 224)
            images = torch.randn(BATCH, 3, 224, 224, generator=generator)
            with torch.no_grad():
                expected = model(images).numpy()
            variables = importer.convert(variant, model.state_dict())
            logits = np.asarray(forward(variables, images.numpy().transpose(0, 2, 3, 1)))
            errors.append(float(np.abs(logits - expected).max()))
            scales.append(float(np.abs(expected).max()))
        error, scale = max(errors), scales[int(np.argmax(errors))]
        relative.append(error / scale)
        print(
            f"{mixtok_name} ({variant}) 224 px, {args.seeds} seeds, official params {sorted(counts)}: largest "
            f"max-abs logit error {error:.2e}, {error / scale:.2e} of the largest logit ({scale:.3g}); largest "
            f"logits {min(scales):.3g}...{max(scales):.3g}",
            flush=True,
        )
    print(f"worst relative error {max(relative):.2e}")
    return 0 if all(r < 1e-4 for r in relative) else 1  # a nan fails too


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", required=True, help="a clone of Med-Process/Strip_MLP (holds models/)")
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "strip_mlp"),
        help="folder for <model>.npz and manifest.json (default: tests/fixtures/strip_mlp)",
    )
    parser.add_argument("--parity", action="store_true", help="measure named-variant parity instead (needs mixtok)")
    parser.add_argument("--variants", nargs="+", default=list(PARITY_VARIANTS), help="official names for --parity")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant for --parity")
    args = parser.parse_args(argv)
    try:
        import timm
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch and timm (pip install -e '.[timm]'): {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    official = import_official_strip_mlp(args.official_repo)
    return measure_parity(official, torch, args) if args.parity else write_fixtures(official, torch, timm, args)


if __name__ == "__main__":
    sys.exit(main())
