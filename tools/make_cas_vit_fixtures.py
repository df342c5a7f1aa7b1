"""Writes the golden CAS-ViT fixtures made by the official code (Tianfang-Zhang/CAS-ViT), and measures parity.

tests/interop/test_cas_vit_import.py converts these weights with `mixtok.interop.cas_vit` and checks mixtok's
logits, pooled features and stage outputs against the official ones, without torch. The official code is not
part of mixtok: pass the folder of a clone of Tianfang-Zhang/CAS-ViT (its classification/model/rcvit.py,
unmodified, is imported from there). Needs torch and timm (the `timm` extra); from the repository root:

    python tools/make_cas_vit_fixtures.py --official-repo PATH/TO/CAS-ViT --out tests/fixtures/cas_vit

It builds two tiny `RCViT`s (depths (1, 2, 1, 1), small widths; one as classification/main.py builds the
models, `distillation=False`, at 64 px; one with the constructor's default `distillation=True`, whose eval
output is the mean of both heads, at 32 x 64 px), gives every parameter and every BatchNorm buffer random values
(`randomise_`), runs a seeded batch in eval mode and saves `<model>.npz`: `input` [B, 3, H, W] (NCHW),
`logits`, `pre_logits` (the spatial mean after the final norm), `stage0` ... `stage3` [B, h, w, C] (each
stage's output, NHWC) and `state_dict/<key>`; plus `manifest.json` with the official commit, the torch /
timm versions, the constructor arguments and the sha256 of each file.

    PYTHONPATH=. python tools/make_cas_vit_fixtures.py --official-repo PATH/TO/CAS-ViT --parity

instead converts randomised named variants (rcvit_xs and rcvit_m by default) with mixtok.interop.cas_vit and
prints the largest logit difference per variant and resolution over `--seeds` seeds (this needs JAX and mixtok
in the same environment as torch; nothing is written).

rcvit.py imports `einops`, which it never uses; when einops is not installed the tool puts a stub under that
name (it raises if called) before importing rcvit.py.
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

SEED = 20240808
BATCH = 2
NUM_CLASSES = 10
TINY = dict(layers=[1, 2, 1, 1], embed_dims=[8, 16, 24, 32], mlp_ratios=4, num_classes=NUM_CLASSES)
MODELS = {  # name: (constructor arguments, image (height, width))
    "cas_vit_tiny": (dict(TINY, distillation=False), (64, 64)),
    "cas_vit_tiny_distilled": (dict(TINY, distillation=True), (32, 64)),  # not square: a swapped h, w shows
}
PARITY_VARIANTS = ("rcvit_xs", "rcvit_m")
PARITY_SIZES = (224, 384)  # the released resolution and README.md's fine-tuning / evaluation one


def import_official_rcvit(repo: str):
    """classification/model/rcvit.py of the official clone at `repo`, imported as it is."""
    path = os.path.join(repo, "classification", "model", "rcvit.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: --official-repo must be a clone of Tianfang-Zhang/CAS-ViT")
    try:
        import einops  # noqa: F401
    except ImportError:

        def unused(*args, **kwargs):
            raise RuntimeError("einops is stubbed by make_cas_vit_fixtures.py: rcvit.py was not expected to call it")

        sys.modules["einops"] = types.SimpleNamespace(rearrange=unused, repeat=unused)
    spec = importlib.util.spec_from_file_location("official_rcvit", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # timm's register_model looks the module up there
    spec.loader.exec_module(module)
    return module


def commit_of(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def randomise_(model, torch, generator, image: tuple[int, int]) -> None:
    """Every parameter and BatchNorm buffer random, none left at its init (so no branch is negligible).

    Weights (2 or more dims) N(0, 1 / fan_in); biases N(0, 0.1); BatchNorm weights U(0.5, 1.5). The running
    statistics cannot be drawn independently of the activations: the mixer multiplies two branches
    (dwc(q + k) * v), so with statistics off the activations' scale the residual stream squares its scale
    every block and overflows to inf / nan within a few blocks. They are calibrated, then randomised, in one
    eval-mode forward of a separate random batch of 4: each BatchNorm, just before it runs, takes its
    input's per-channel mean and (unbiased) variance, multiplies the variance by U(0.5, 1.5) and moves the
    mean by N(0, 0.2^2) standard deviations. So every later norm sees the activations the randomised
    earlier ones make. num_batches_tracked (an integer counter) is left alone.
    """

    def calibrate(norm, args):
        x = args[0]
        std = x.var(dim=(0, 2, 3), unbiased=True).sqrt()
        norm.running_mean.copy_(x.mean(dim=(0, 2, 3)) + 0.2 * std * torch.randn(std.shape, generator=generator))
        norm.running_var.copy_(std**2 * (0.5 + torch.rand(std.shape, generator=generator)))

    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim >= 2:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5)
            else:  # BatchNorm weight
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        hooks = [norm.register_forward_pre_hook(calibrate) for norm in norms]
        model.eval()(torch.randn(4, 3, *image, generator=generator))
        for hook in hooks:
            hook.remove()


def run_official(model, torch, images):
    """(logits, pre_logits, [stage outputs NHWC]) of the official model in eval mode."""
    captured, hooks = {}, []
    for stage, index in enumerate(range(0, len(model.network), 2)):  # network: stage, Embedding, stage, ...
        hooks.append(
            model.network[index].register_forward_hook(
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
    stages = [captured[f"stage{i}"] for i in range(len(hooks) - 1)]
    return logits, captured["pre_logits"], stages


def make_fixture(rcvit, torch, kwargs, image, seed):
    torch.manual_seed(seed)
    model = rcvit.RCViT(**kwargs).eval()
    generator = torch.Generator().manual_seed(seed)
    randomise_(model, torch, generator, image)
    images = torch.randn(BATCH, 3, *image, generator=generator)
    logits, pre_logits, stages = run_official(model, torch, images)
    if float(logits.std()) < 0.1:
        raise RuntimeError(f"degenerate logits, std {float(logits.std()):.3g}")
    arrays = {"input": images, "logits": logits, "pre_logits": pre_logits}
    arrays.update({f"stage{i}": s for i, s in enumerate(stages)})
    arrays.update({f"state_dict/{k}": v for k, v in model.state_dict().items()})
    arrays = {k: np.array(v.detach().cpu().numpy(), order="C") for k, v in arrays.items()}  # 0-d stays 0-d
    figures = dict(logit_std=round(float(logits.std()), 3), parameters=sum(p.numel() for p in model.parameters()))
    return arrays, figures


def write_fixtures(rcvit, torch, timm, args) -> int:
    os.makedirs(args.out, exist_ok=True)
    manifest = dict(
        made_by="python tools/make_cas_vit_fixtures.py --official-repo CAS-ViT --out " + args.out,
        official="Tianfang-Zhang/CAS-ViT: classification/model/rcvit.py (RCViT)",
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
        arrays, figures = make_fixture(rcvit, torch, kwargs, image, seed)
        path = os.path.join(args.out, f"{name}.npz")
        np.savez_compressed(path, **arrays)
        manifest["models"][name] = dict(
            file=f"{name}.npz",
            sha256=sha256(path),
            official_class="RCViT",
            official_kwargs=jsonable(kwargs),
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


def measure_parity(rcvit, torch, args) -> int:
    """Largest |mixtok - official| logit difference per named variant and resolution, over the seeds."""
    import jax

    from mixtok.interop import cas_vit as importer
    from mixtok.models import create_model

    relative = []
    for variant in args.variants:
        mixtok_name = importer.resolve_name(variant)
        forward = jax.jit(create_model(mixtok_name).apply)
        for size in args.sizes:
            errors, scales = [], []
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                model = getattr(rcvit, variant)(distillation=False).eval()  # as classification/main.py
                generator = torch.Generator().manual_seed(seed)
                randomise_(model, torch, generator, (size, size))
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
    parser.add_argument(
        "--official-repo", required=True, help="a clone of Tianfang-Zhang/CAS-ViT (holds classification/model)"
    )
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "cas_vit"),
        help="folder for <model>.npz and manifest.json (default: tests/fixtures/cas_vit)",
    )
    parser.add_argument("--parity", action="store_true", help="measure named-variant parity instead (needs mixtok)")
    parser.add_argument("--variants", nargs="+", default=list(PARITY_VARIANTS), help="official names for --parity")
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
    rcvit = import_official_rcvit(args.official_repo)
    return measure_parity(rcvit, torch, args) if args.parity else write_fixtures(rcvit, torch, timm, args)


if __name__ == "__main__":
    sys.exit(main())
