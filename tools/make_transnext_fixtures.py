"""Writes the golden TransNeXt fixtures, and checks full-size parity, with the official code (DaiShiResearch/TransNeXt).

tests/interop/test_transnext_import.py converts these weights with `mixtok.interop.transnext` and checks
mixtok's logits, pooled features and stage outputs against the official ones, without torch. The official code
is not part of mixtok: pass the folder of a clone of DaiShiResearch/TransNeXt (its classification/transnext.py
and attention_native.py, unmodified, are imported from there). Needs torch and timm (the `timm` extra), not
mixtok or JAX; from the repository root:

    python tools/make_transnext_fixtures.py --official-repo PATH/TO/TransNeXt --out tests/fixtures/transnext

It builds one tiny `TransNeXt` (dims 8, 16, 16, 24, depths 1, 1, 2, 1, the named variants' window 3, patch
4, sr_ratios 8, 4, 2, 1, mlp_ratios 8, 8, 4, 4, LayerNorm eps 1e-6), gives every parameter random values
(weights N(0, 1 / fan_in), biases N(0, 0.1), norm weights U(0.5, 1.5); the temperature, query embedding,
local position bias, learnable tokens and learnable bias N(0, 1), so that none is negligible), and runs a
seeded batch at two resolutions with the same weights, each an official model built for that `img_size` with
`pretrain_size` 64: 64 px (grids 16, 8, 4, 2; pooled 2 x 2) and 96 px (grids 24, 12, 6, 3; pooled 3 x 3, the
CPB coordinates scaled by the 64-px grid). It saves `transnext_tiny.npz`: `r<size>/input` [B, 3, S, S]
(NCHW, float16: the images are rounded to float16 before the official run, so their float32 values are exact),
`r<size>/logits`, `r<size>/pre_logits` (the token mean after norm4), `r<size>/stage1` ... `stage4`
[B, h, w, C] (each stage's output after its norm, tokens in the official row-major order), and
`state_dict/<key>`; plus `manifest.json` with the official commit, the torch / timm versions and the
constructor arguments.

Full-size parity (recorded in mixtok/interop/transnext.py): `--parity DIR` writes, for transnext_micro and
transnext_small and seeds 0, 1, 2, the random official state dict and the official logits at 224 px and at
384 px (pretrain_size 224, as the released 384-px fine-tunes) to DIR; `--check-parity DIR`, run with mixtok's
Python (JAX, no torch), converts each with `mixtok.interop.transnext.convert` and prints the largest logit
error:

    TIMM_VENV/bin/python tools/make_transnext_fixtures.py --official-repo TransNeXt --parity /tmp/tn
    PYTHONPATH=. python tools/make_transnext_fixtures.py --check-parity /tmp/tn

Shims (for imports only, never the model's maths): transnext.py calls `pkg_resources.get_distribution(
"swattention")` to choose the CUDA AggregatedAttention or the native PyTorch one; setuptools >= 81 no longer
ships pkg_resources, so when it is missing the tool installs a stand-in whose `get_distribution` always
raises DistributionNotFound, and transnext.py takes the native path (attention_native.py), as it does on any
machine without the swattention CUDA extension.
"""

import argparse
import glob
import importlib
import json
import os
import platform
import subprocess
import sys
import types

import numpy as np
from make_timm_fixtures import BATCH, NUM_CLASSES, jsonable, sha256

SEED = 20240613
PRETRAIN = 64
RESOLUTIONS = (64, 96)
# The named variants' fixed arguments (classification/transnext.py transnext_micro ...), norm_layer aside.
VARIANT = dict(
    window_size=[3, 3, 3, None], patch_size=4, mlp_ratios=[8, 8, 4, 4], qkv_bias=True, sr_ratios=[8, 4, 2, 1]
)
TINY = dict(embed_dims=[8, 16, 16, 24], num_heads=[1, 2, 2, 3], depths=[1, 1, 2, 1], num_classes=NUM_CLASSES)
UNIT_PARAMETERS = ("temperature", "query_embedding", "relative_pos_bias_local", "learnable_tokens", "learnable_bias")
PARITY_VARIANTS = ("transnext_micro", "transnext_small")
PARITY_SEEDS = (0, 1, 2)
PARITY_SIZES = (224, 384)
PARITY_PRETRAIN = 224


def import_official_transnext(repo: str):
    """classification/transnext.py of the official clone at `repo`, imported as it is (native attention)."""
    folder = os.path.join(repo, "classification")
    if not os.path.isfile(os.path.join(folder, "transnext.py")):
        raise FileNotFoundError(
            f"{folder}/transnext.py does not exist: --official-repo must be a clone of DaiShiResearch/TransNeXt"
        )
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        not_found = type("DistributionNotFound", (Exception,), {})

        def get_distribution(name):
            raise not_found(name)

        sys.modules["pkg_resources"] = types.SimpleNamespace(
            get_distribution=get_distribution, DistributionNotFound=not_found
        )
    sys.path.insert(0, folder)  # transnext.py imports attention_native from its own folder
    module = importlib.import_module("transnext")
    if module.AggregatedAttention.__module__ != "attention_native":
        raise RuntimeError("transnext.py chose the CUDA AggregatedAttention; uninstall swattention to run on CPU")
    return module


def commit_of(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def randomise_(model, torch, generator) -> None:
    """Every parameter random (see the module docstring); the model must have no persistent buffer."""
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.rsplit(".", 1)[-1] in UNIT_PARAMETERS:
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            elif name.endswith("bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim >= 2:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5)
            else:
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    parameters = dict(model.named_parameters())
    if any(k not in parameters for k in model.state_dict()):
        raise RuntimeError("the official TransNeXt gained persistent buffers; randomise them too")


def build(transnext, torch, img_size, pretrain_size, **kwargs):
    norm_layer = lambda dim: torch.nn.LayerNorm(dim, eps=1e-6)  # noqa: E731  (the variants' partial)
    return transnext.TransNeXt(
        img_size=img_size, pretrain_size=pretrain_size, norm_layer=norm_layer, **VARIANT, **kwargs
    ).eval()


def run(model, torch, images):
    """(logits, pre_logits, {stage<i>: [B, h, w, C]}) of the official model."""
    stages, hooks = {}, []
    for i in range(4):
        hooks.append(
            getattr(model, f"norm{i + 1}").register_forward_hook(
                lambda m, args, out, i=i: stages.__setitem__(f"stage{i + 1}", out)
            )
        )
    with torch.no_grad():
        logits = model(images)
        pre_logits = model.forward_features(images)
    for hook in hooks:
        hook.remove()
    size = images.shape[-1]
    for i in range(4):
        side = size // (4 * 2**i)
        stages[f"stage{i + 1}"] = stages[f"stage{i + 1}"].reshape(images.shape[0], side, side, -1)
    return logits, pre_logits, stages


def make_fixture(transnext, torch, seed):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    reference = build(transnext, torch, RESOLUTIONS[0], PRETRAIN, **TINY)
    randomise_(reference, torch, generator)
    state_dict = reference.state_dict()
    arrays, figures = {}, {}
    for size in RESOLUTIONS:
        model = build(transnext, torch, size, PRETRAIN, **TINY)
        model.load_state_dict(state_dict, strict=True)
        # float16-exact images, stored as float16: the inputs are most of the file
        images = torch.randn(BATCH, 3, size, size, generator=generator).half().float()
        logits, pre_logits, stages = run(model, torch, images)
        if float(logits.std()) < 0.1:
            raise RuntimeError(f"{size} px: degenerate logits, std {float(logits.std()):.3g}")
        figures[f"logit_std_{size}"] = round(float(logits.std()), 3)
        arrays.update({f"r{size}/{k}": v for k, v in dict(input=images, logits=logits, pre_logits=pre_logits).items()})
        arrays.update({f"r{size}/{k}": v for k, v in stages.items()})
    arrays.update({f"state_dict/{k}": v for k, v in state_dict.items()})
    arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in arrays.items()}
    arrays.update({k: v.astype(np.float16) for k, v in arrays.items() if k.endswith("/input")})
    figures["parameters"] = sum(p.numel() for p in reference.parameters())
    return arrays, figures


def write_fixtures(transnext, torch, timm, repo, out) -> None:
    os.makedirs(out, exist_ok=True)
    arrays, figures = make_fixture(transnext, torch, SEED)
    path = os.path.join(out, "transnext_tiny.npz")
    np.savez_compressed(path, **arrays)
    manifest = dict(
        made_by="python tools/make_transnext_fixtures.py --official-repo TransNeXt --out " + out,
        official="DaiShiResearch/TransNeXt: classification/transnext.py, attention_native.py (native attention)",
        official_commit=commit_of(repo),
        timm=timm.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        layout="input: NCHW; stages: [B, h, w, C]",
        models={
            "transnext_tiny": dict(
                file="transnext_tiny.npz",
                sha256=sha256(path),
                official_class="TransNeXt",
                official_kwargs=jsonable({**VARIANT, **TINY, "norm_layer": "LayerNorm(eps=1e-6)"}),
                pretrain_size=PRETRAIN,
                resolutions=list(RESOLUTIONS),
                seed=SEED,
                **figures,
            )
        },
    )
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"transnext_tiny: {figures['parameters']:,} parameters, {figures}, {os.path.getsize(path) / 1e3:.0f} kB")


def write_parity(transnext, torch, repo, out) -> None:
    os.makedirs(out, exist_ok=True)
    for name in PARITY_VARIANTS:
        for seed in PARITY_SEEDS:
            generator = torch.Generator().manual_seed(seed)
            torch.manual_seed(seed)
            arrays, state_dict = {}, None
            for size in PARITY_SIZES:
                model = getattr(transnext, name)(img_size=size, pretrain_size=PARITY_PRETRAIN).eval()
                if state_dict is None:
                    randomise_(model, torch, generator)
                    state_dict = model.state_dict()
                else:
                    model.load_state_dict(state_dict, strict=True)
                images = torch.randn(2, 3, size, size, generator=generator)
                with torch.no_grad():
                    logits = model(images)
                arrays[f"r{size}/input"], arrays[f"r{size}/logits"] = images, logits
                print(f"{name} seed {seed} {size} px: logit std {float(logits.std()):.3g}", flush=True)
            arrays.update({f"state_dict/{k}": v for k, v in state_dict.items()})
            arrays = {k: v.detach().numpy() for k, v in arrays.items()}
            np.savez(os.path.join(out, f"{name}_seed{seed}.npz"), commit=np.array(commit_of(repo)), **arrays)


def check_parity(folder) -> int:
    """mixtok's side of the full-size parity: convert each official state dict and compare the logits."""
    import jax
    import jax.numpy as jnp

    from mixtok.interop import transnext as importer
    from mixtok.models import create_model

    worst = {}
    for path in sorted(glob.glob(os.path.join(folder, "transnext_*_seed*.npz"))):
        name = os.path.basename(path).rsplit("_seed", 1)[0]
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        state_dict = {k[len("state_dict/") :]: v for k, v in arrays.items() if k.startswith("state_dict/")}
        variables = importer.convert(name, state_dict, pretrain_size=PARITY_PRETRAIN)
        exported = importer.to_official(name, variables, pretrain_size=PARITY_PRETRAIN)
        exact = set(exported) == set(state_dict) and all(np.array_equal(exported[k], v) for k, v in state_dict.items())
        model = create_model(name, pretrain_size=PARITY_PRETRAIN)
        forward = jax.jit(model.apply)
        for size in PARITY_SIZES:
            expected = arrays[f"r{size}/logits"]
            logits = np.asarray(forward(variables, jnp.asarray(arrays[f"r{size}/input"].transpose(0, 2, 3, 1))))
            error, scale = float(np.abs(logits - expected).max()), float(np.abs(expected).max())
            print(
                f"{os.path.basename(path)} {size} px: max |error| {error:.2e}, largest logit {scale:.3g}, "
                f"relative {error / scale:.2e}, round trip exact: {exact}",
                flush=True,
            )
            key = (name, size)
            if key not in worst or error > worst[key][0]:
                worst[key] = (error, scale)
    for (name, size), (error, scale) in sorted(worst.items()):
        print(f"worst {name} {size} px: {error:.1e} ({error / scale:.1e} of the largest logit, {scale:.1f})")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", help="a clone of DaiShiResearch/TransNeXt (holds classification/)")
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "transnext"),
        help="folder for transnext_tiny.npz and manifest.json (default: tests/fixtures/transnext)",
    )
    parser.add_argument("--parity", metavar="DIR", help="write the full-size parity runs to DIR instead")
    parser.add_argument("--check-parity", metavar="DIR", help="compare mixtok with the runs in DIR (needs JAX)")
    args = parser.parse_args(argv)
    if args.check_parity:
        return check_parity(args.check_parity)
    if not args.official_repo:
        parser.error("--official-repo is required unless --check-parity is given")
    try:
        import timm
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch and timm (pip install -e '.[timm]'): {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1 if not args.parity else 2)
    transnext = import_official_transnext(args.official_repo)
    if args.parity:
        write_parity(transnext, torch, args.official_repo, args.parity)
    else:
        write_fixtures(transnext, torch, timm, args.official_repo, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
