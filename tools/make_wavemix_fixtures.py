"""Writes the golden WaveMix fixtures made by the official code (pranavphoenix/WaveMix), and measures parity.

tests/interop/test_wavemix_import.py converts these weights with `mixtok.interop.wavemix` and checks mixtok's logits,
pooled features and block outputs against the official ones, without torch. The official code is not part of
mixtok: pass the folder of a clone of pranavphoenix/WaveMix (its wavemix/__init__.py and wavemix/classification.py,
unmodified, are imported from there, with their in-file copy of pytorch_wavelets' DWTForward). Needs torch, einops
and PyWavelets (`pip install PyWavelets`; the official file imports pywt). The official __init__.py also imports
`hamming` from numpy.lib.function_base, a module numpy 2 removed; the name is unused, so the tool registers a stand-in
module holding numpy.hamming before importing it. From the repository root:

    python tools/make_wavemix_fixtures.py --official-repo PATH/TO/WaveMix --out tests/fixtures/wavemix

(for a tree extracted with `git archive`, not a clone, add `--official-commit SHA` for the manifest; the committed
fixtures come from ba3d1b42.)

It builds two tiny classification `WaveMix`s: level 3 with the 'pachify' stem (patch 2) at 32 x 48 px (not square:
a swapped h, w shows), and level 2 with the 'strided' stem (stride 2) at 32 x 16 px. Every parameter and BatchNorm
buffer gets a random value (`randomise_`); a seeded batch runs in eval mode and `<model>.npz` holds `input`
[B, 3, H, W] (NCHW), `logits`, `pre_logits` (the pooled features), `block0` ... (each block's output after its
residual, [B, h, w, C], NHWC) and `state_dict/<key>`; plus `manifest.json` with the official commit, the torch /
numpy / pywt versions, the constructor arguments (and the matching mixtok overrides) and the sha256 of each file.

    PYTHONPATH=. python tools/make_wavemix_fixtures.py --official-repo PATH/TO/WaveMix --parity

instead converts randomised named variants (the four released ImageNet models by default, each at its resolution)
with mixtok.interop.wavemix and prints the largest logit difference per variant over `--seeds` seeds (this needs
JAX and mixtok in the same environment as torch; nothing is written).
"""

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import types

import numpy as np
from make_timm_fixtures import jsonable, sha256

SEED = 20220528
BATCH = 2
NUM_CLASSES = 10
TINY = dict(num_classes=NUM_CLASSES, depth=2, mult=2, ff_channel=12, final_dim=16, dropout=0.5)
MODELS = {  # name: (official constructor arguments, mixtok create_model overrides, image (height, width))
    "wavemix_tiny_level3": (
        dict(TINY, level=3, initial_conv="pachify", patch_size=2),
        dict(depths=(2,), dims=(16,), mlp_ratios=2, ff_channel=12, levels=3, stem="patchify", patch_size=2),
        (32, 48),
    ),
    "wavemix_tiny_level2_strided": (
        dict(TINY, level=2, initial_conv="strided", stride=2),
        dict(depths=(2,), dims=(16,), mlp_ratios=2, ff_channel=12, levels=2, stem="strided", stem_stride=2),
        (32, 16),
    ),
}
# The released ImageNet models (Saved_weights/ImageNet/*.py): script name -> (constructor arguments, image side).
RELEASED = dict(num_classes=1000, depth=16, mult=2, dropout=0.5)
PARITY_VARIANTS = {
    "wavemix_28M_75.06": (
        dict(RELEASED, ff_channel=192, final_dim=192, level=3, initial_conv="pachify", patch_size=4),
        224,
    ),
    "wavemix_12M_71.18": (
        dict(RELEASED, ff_channel=192, final_dim=192, level=1, initial_conv="pachify", patch_size=4),
        224,
    ),
    "wavemix_73": (dict(RELEASED, ff_channel=256, final_dim=256, level=3, initial_conv="pachify", patch_size=4), 224),
    "wavemix_level4_imagenet_70.42": (
        dict(RELEASED, ff_channel=256, final_dim=256, level=4, initial_conv="strided", stride=2),
        256,  # the official forward fails at 224 (a 56 x 56 grid is not a multiple of 16)
    ),
}


def import_official_wavemix(repo: str):
    """wavemix/classification.py of the official clone at `repo` (and the wavemix package it imports), as they are."""
    path = os.path.join(repo, "wavemix", "classification.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: --official-repo must be a clone of pranavphoenix/WaveMix")
    if "numpy.lib.function_base" not in sys.modules:
        try:
            importlib.import_module("numpy.lib.function_base")
        except ImportError:  # numpy >= 2: the module is gone; the official file imports an unused name from it
            stand_in = types.ModuleType("numpy.lib.function_base")
            stand_in.hamming = np.hamming
            sys.modules["numpy.lib.function_base"] = stand_in
    sys.path.insert(0, os.path.abspath(repo))
    return importlib.import_module("wavemix.classification")


def commit_of(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def randomise_(model, torch, generator, image: tuple[int, int]) -> None:
    """Every parameter and BatchNorm buffer random, none left at its init.

    Weights (2 or more dims) N(0, 1 / fan_in) (a ConvTranspose2d's fan-in is its weight[0].numel() too: the
    input-channel axis comes first); biases N(0, 0.1^2); BatchNorm weights U(0.5, 1.5). The running statistics are
    calibrated, then randomised, in one eval-mode forward of a separate random batch of 4: each BatchNorm, just
    before it runs, takes its input's per-channel mean and (unbiased) variance, multiplies the variance by
    U(0.5, 1.5) and moves the mean by N(0, 0.2^2) standard deviations, so that every later norm sees the
    activations the randomised earlier ones make (statistics drawn blindly would leave the 16-block residual
    stream far off scale). num_batches_tracked (an integer counter) is left alone.
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
    """(logits, pre_logits, [block outputs after the residual, NHWC]) of the official model in eval mode."""
    captured, hooks = {}, []
    for index, block in enumerate(model.layers):  # forward: x = attn(x) + x, so output + input is the new x
        hooks.append(
            block.register_forward_hook(
                lambda m, args, out, index=index: captured.__setitem__(
                    f"block{index}", (out + args[0]).permute(0, 2, 3, 1)
                )
            )
        )
    hooks.append(model.pool[2].register_forward_pre_hook(lambda m, args: captured.__setitem__("pre_logits", args[0])))
    with torch.no_grad():
        logits = model(images)
    for hook in hooks:
        hook.remove()
    return logits, captured["pre_logits"], [captured[f"block{i}"] for i in range(len(model.layers))]


def make_fixture(classification, torch, kwargs, image, seed):
    torch.manual_seed(seed)
    model = classification.WaveMix(**kwargs).eval()
    generator = torch.Generator().manual_seed(seed)
    randomise_(model, torch, generator, image)
    images = torch.randn(BATCH, 3, *image, generator=generator)
    logits, pre_logits, blocks = run_official(model, torch, images)
    if float(logits.std()) < 0.1:
        raise RuntimeError(f"degenerate logits, std {float(logits.std()):.3g}")
    arrays = {"input": images, "logits": logits, "pre_logits": pre_logits}
    arrays.update({f"block{i}": b for i, b in enumerate(blocks)})
    arrays.update({f"state_dict/{k}": v for k, v in model.state_dict().items()})
    arrays = {k: np.array(v.detach().cpu().numpy(), order="C") for k, v in arrays.items()}
    figures = dict(logit_std=round(float(logits.std()), 3), parameters=sum(p.numel() for p in model.parameters()))
    return arrays, figures


def write_fixtures(classification, torch, args) -> int:
    import pywt

    os.makedirs(args.out, exist_ok=True)
    manifest = dict(
        made_by="python tools/make_wavemix_fixtures.py --official-repo WaveMix --out "
        + args.out
        + (f" --official-commit {args.official_commit}" if args.official_commit else ""),
        official="pranavphoenix/WaveMix: wavemix/classification.py (WaveMix), wavemix/__init__.py (Level*Waveblock)",
        official_commit=args.official_commit or commit_of(args.official_repo),
        torch=torch.__version__,
        numpy=np.__version__,
        pywt=pywt.__version__,
        python=platform.python_version(),
        layout="input: NCHW; blocks: [B, h, w, C]",
        models={},
    )
    for index, (name, (kwargs, overrides, image)) in enumerate(sorted(MODELS.items())):
        seed = SEED + index
        arrays, figures = make_fixture(classification, torch, kwargs, image, seed)
        path = os.path.join(args.out, f"{name}.npz")
        np.savez_compressed(path, **arrays)
        manifest["models"][name] = dict(
            file=f"{name}.npz",
            sha256=sha256(path),
            official_class="WaveMix",
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


def measure_parity(classification, torch, args) -> int:
    """Largest |mixtok - official| logit difference per released variant (at its resolution), over the seeds."""
    import jax

    from mixtok.interop import wavemix as importer
    from mixtok.models import count_params, create_model, model_spec

    relative = []
    for variant in args.variants:
        mixtok_name = importer.resolve_name(variant)
        kwargs, size = PARITY_VARIANTS[variant]
        forward = jax.jit(create_model(mixtok_name).apply)
        errors, scales = [], []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = classification.WaveMix(**kwargs).eval()
            generator = torch.Generator().manual_seed(seed)
            randomise_(model, torch, generator, (size, size))
            images = torch.randn(BATCH, 3, size, size, generator=generator)
            with torch.no_grad():
                expected = model(images).numpy()
            variables = importer.convert(variant, model.state_dict())
            official_count = sum(p.numel() for p in model.parameters())
            if not count_params(variables) == official_count == model_spec(mixtok_name).official_params:
                raise RuntimeError(f"{variant}: parameter counts differ ({official_count:,} official)")
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
    parser.add_argument("--official-repo", required=True, help="a clone of pranavphoenix/WaveMix (holds wavemix/)")
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "wavemix"),
        help="folder for <model>.npz and manifest.json (default: tests/fixtures/wavemix)",
    )
    parser.add_argument("--official-commit", default=None, help="the commit of an extracted (not cloned) official tree")
    parser.add_argument("--parity", action="store_true", help="measure named-variant parity instead (needs mixtok)")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(PARITY_VARIANTS),
        choices=list(PARITY_VARIANTS),
        help="Saved_weights/ImageNet script names for --parity",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant for --parity")
    args = parser.parse_args(argv)
    try:
        import pywt  # noqa: F401  (the official wavemix/__init__.py imports it)
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch, einops and PyWavelets (pip install PyWavelets): {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    classification = import_official_wavemix(args.official_repo)
    return measure_parity(classification, torch, args) if args.parity else write_fixtures(classification, torch, args)


if __name__ == "__main__":
    sys.exit(main())
