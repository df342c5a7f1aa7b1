"""Writes the golden iFormer fixtures: a tiny Inception Transformer built and run by sail-sg/iFormer's own code.

tests/interop/test_iformer_import.py converts these weights with `mixtok.interop.iformer` and checks mixtok's
logits, pooled features and stage outputs against the official ones, without torch. The official code is not
part of mixtok: pass the folder of a clone of sail-sg/iFormer (its models/inception_transformer.py, unmodified,
is imported from there). Needs torch and timm (the `timm` extra), not mixtok or JAX; from the repository root:

    python tools/make_iformer_fixtures.py --official-repo PATH/TO/iFormer --out tests/fixtures/iformer

It builds one `InceptionTransformer` at img_size 64 (stage maps 16, 8, 4, 2; the attention of stages 1-2 on
2 x 2 pooled tokens) with small widths, one or two blocks a stage, the frequency ramp (1 of 2, 1 of 3, 2 of 4,
3 of 4 heads to attention), MLPs of ratio 2 and layer scale in stages 3-4 as the official variants have it.
Every parameter and buffer gets random values (`randomise_`: BatchNorm running statistics too, position
embeddings N(0, 1), layer scales U(0.5, 1.5), so no branch is negligible); it runs a seeded batch in eval mode
at 64 px, and one image at 96 px (the official `_get_pos_embed` then resizes the position embeddings
bilinearly), and saves `iformer_tiny.npz`: `input` [B, 3, 64, 64] (NCHW), `logits`, `pre_logits` (the token
mean after the final norm), `stage1` ... `stage4` [B, h, w, C] (each stage's output, NHWC as the official
blocks hold it), `input_96`, `logits_96`, and `state_dict/<key>`; plus `manifest.json` with the official
commit, the versions, the constructor arguments and the file's SHA-256 (about 550 kB in all).

`--parity DIR` instead checks full-size models (needs mixtok and JAX importable too, e.g. PYTHONPATH=. with a
python that has torch, timm and mixtok's dependencies): iformer_small and iformer_base at 224 and 384 (the
official `*_384` models) and iformer_small's 224 weights at 288 px, three seeds each, randomised as above; each
is saved in DIR as train.py's timm CheckpointSaver saves it, converted by `python -m mixtok.interop.iformer`,
run by mixtok, and its logits compared; `to_official` of the result must equal the official state dict and load
with strict=True. It prints the table recorded in mixtok/interop/iformer.py's docstring.

inception_transformer.py imports `to_2tuple` from `timm.models.layers.helpers`, which timm 1.x removed; the tool
puts a module holding timm.layers' `to_2tuple` under that name before importing it (nothing else is shimmed).
"""

import argparse
import hashlib
import importlib.util
import itertools
import json
import os
import platform
import subprocess
import sys
import types

import numpy as np

SEED = 20240614
BATCH = 2
NUM_CLASSES = 10
IMAGE = 64
RESIZED_IMAGE = 96
TINY = dict(
    img_size=IMAGE,
    num_classes=NUM_CLASSES,
    depths=[1, 1, 2, 1],
    embed_dims=[16, 24, 32, 48],
    num_heads=[2, 3, 4, 4],
    attention_heads=[1, 1, 2, 2, 3],
    mlp_ratio=2.0,
    use_layer_scale=True,
    layer_scale_init_value=1e-6,
)
# --parity: (official model function, mixtok name, input side)
PARITY_CASES = (
    ("iformer_small", "iformer_s", 224),
    ("iformer_small_384", "iformer_s", 384),
    ("iformer_base", "iformer_b", 224),
    ("iformer_base_384", "iformer_b", 384),
    ("iformer_small", "iformer_s", 288),
)
PARITY_SEEDS = 3


def import_official_iformer(repo: str):
    """models/inception_transformer.py of the official clone at `repo`, imported as it is."""
    if "timm.models.layers.helpers" not in sys.modules:
        try:
            import timm.models.layers.helpers  # noqa: F401  (timm 0.x)
        except ImportError:
            from timm.layers import to_2tuple

            sys.modules["timm.models.layers.helpers"] = types.SimpleNamespace(to_2tuple=to_2tuple)
    path = os.path.join(repo, "models", "inception_transformer.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: --official-repo must be a clone of sail-sg/iFormer")
    spec = importlib.util.spec_from_file_location("official_iformer", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # timm's register_model looks its module up there
    spec.loader.exec_module(module)
    return module


def commit_of(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def randomise_(model, torch, generator) -> None:
    """Every parameter and floating-point buffer random: position embeddings N(0, 1); other weights N(0, 1 /
    fan_in); biases N(0, 0.1); BatchNorm running means N(0, 0.5); every other 1-D tensor (norm weights, layer
    scales, running variances) U(0.5, 1.5). Only the integer num_batches_tracked is left as it is."""
    with torch.no_grad():
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
            if not tensor.is_floating_point():
                if not name.endswith("num_batches_tracked"):
                    raise RuntimeError(f"the official iFormer gained an integer buffer {name}; randomise it too")
            elif name.startswith("pos_embed"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            elif name.endswith("running_mean"):
                tensor.copy_(0.5 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith("bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim >= 2:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5)
            else:
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))


def make_fixture(official, torch, seed):
    torch.manual_seed(seed)
    model = official.InceptionTransformer(**TINY).eval()
    generator = torch.Generator().manual_seed(seed)
    randomise_(model, torch, generator)
    images = torch.randn(BATCH, 3, IMAGE, IMAGE, generator=generator)
    resized = torch.randn(1, 3, RESIZED_IMAGE, RESIZED_IMAGE, generator=generator)
    stages = {}
    hooks = [
        getattr(model, f"blocks{i}").register_forward_hook(
            lambda m, args, out, i=i: stages.__setitem__(f"stage{i}", out)
        )
        for i in range(1, 5)
    ]
    with torch.no_grad():
        logits = model(images)
        for hook in hooks:
            hook.remove()
        pre_logits = model.forward_features(images)
        logits_resized = model(resized)
    if float(logits.std()) < 0.1:
        raise RuntimeError(f"degenerate logits, std {float(logits.std()):.3g}")
    arrays = {
        "input": images,
        "logits": logits,
        "pre_logits": pre_logits,
        **stages,
        f"input_{RESIZED_IMAGE}": resized,
        f"logits_{RESIZED_IMAGE}": logits_resized,
    }
    arrays.update({f"state_dict/{k}": v for k, v in model.state_dict().items()})
    arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in arrays.items()}
    figures = dict(logit_std=round(float(logits.std()), 3), parameters=sum(p.numel() for p in model.parameters()))
    return arrays, figures


def write_fixtures(official, torch, timm, repo: str, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    arrays, figures = make_fixture(official, torch, SEED)
    path = os.path.join(out, "iformer_tiny.npz")
    np.savez_compressed(path, **arrays)
    manifest = dict(
        made_by="python tools/make_iformer_fixtures.py --official-repo iFormer --out " + out,
        official="sail-sg/iFormer: models/inception_transformer.py (InceptionTransformer)",
        official_commit=commit_of(repo),
        timm=timm.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        layout="input: NCHW; stages: [B, h, w, C]",
        models=dict(
            iformer_tiny=dict(
                file="iformer_tiny.npz",
                sha256=sha256(path),
                official_class="InceptionTransformer",
                official_kwargs=TINY,
                resized_image=RESIZED_IMAGE,
                seed=SEED,
                **figures,
            )
        ),
    )
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    print(
        f"iformer_tiny: {figures['parameters']:,} parameters, logit std {figures['logit_std']}, "
        f"{os.path.getsize(path) / 1e3:.0f} kB"
    )


def check_parity(official, torch, directory: str) -> int:
    """Full-size official models vs mixtok through the command line; prints the worst errors per case."""
    import jax
    import jax.numpy as jnp

    from mixtok.interop import iformer as importer
    from mixtok.interop.weight_files import load_variables
    from mixtok.models import create_model

    os.makedirs(directory, exist_ok=True)
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    failures = 0
    for function, name, side in PARITY_CASES:
        worst_error, largest_logit, forward = 0.0, 0.0, None
        for seed in range(PARITY_SEEDS):
            torch.manual_seed(seed)
            model = getattr(official, function)().eval()
            generator = torch.Generator().manual_seed(1000 + seed)
            randomise_(model, torch, generator)
            images = torch.randn(BATCH, 3, side, side, generator=generator)
            with torch.no_grad():
                expected = model(images).numpy()
            state_dict = model.state_dict()
            checkpoint = os.path.join(directory, f"{function}_{side}_seed{seed}.pth")
            output = checkpoint[: -len(".pth")] + ".msgpack"
            for path in (checkpoint, output):
                if os.path.exists(path):
                    os.remove(path)
            # As train.py's timm CheckpointSaver writes a checkpoint.
            torch.save(
                dict(
                    epoch=0,
                    arch=function,
                    state_dict=state_dict,
                    version=2,
                    args=argparse.Namespace(model=function),
                    metric=0.0,
                ),
                checkpoint,
            )
            run = subprocess.run(
                [sys.executable, "-m", "mixtok.interop.iformer", function, checkpoint, output],
                capture_output=True,
                text=True,
                env=env,
            )
            if run.returncode:
                print(run.stderr, file=sys.stderr)
                return 1
            variables = load_variables(output)
            if forward is None:
                image_size = int(variables["params"]["pos_embed1"].shape[1]) * 4
                mixtok_model = create_model(name, image_size=image_size)
                forward = jax.jit(mixtok_model.apply)
            logits = np.asarray(forward(variables, jnp.asarray(images.numpy().transpose(0, 2, 3, 1))))
            worst_error = max(worst_error, float(np.abs(logits - expected).max()))
            largest_logit = max(largest_logit, float(np.abs(expected).max()))
            exported = importer.to_official(function, variables)
            reference = {k: v.numpy() for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
            same = set(exported) == set(state_dict) and all(
                np.array_equal(exported[k], v) for k, v in reference.items()
            )
            model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in exported.items()}, strict=True)
            failures += not same
            os.remove(checkpoint)
            os.remove(output)
        print(
            f"{name:10s} {function:18s} input {side}: max |logit error| {worst_error:.2e}, largest |logit| "
            f"{largest_logit:.3g}, relative {worst_error / largest_logit:.2e}; to_official exact and strict-loads"
            f" in all {PARITY_SEEDS} seeds: {failures == 0}",
            flush=True,
        )
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", required=True, help="a clone of sail-sg/iFormer (holds models/)")
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "iformer"),
        help="folder for iformer_tiny.npz and manifest.json (default: tests/fixtures/iformer)",
    )
    parser.add_argument("--parity", metavar="DIR", help="instead check full-size models against mixtok (see above)")
    args = parser.parse_args(argv)
    try:
        import timm
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch and timm (pip install -e '.[timm]'): {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    official = import_official_iformer(args.official_repo)
    if args.parity:
        return check_parity(official, torch, args.parity)
    write_fixtures(official, torch, timm, args.official_repo, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
