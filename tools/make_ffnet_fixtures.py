"""Writes the golden FFNet fixtures, and runs the full-size parity check, with the official FFNet code (ysj9909/FFNet).

tests/interop/test_ffnet_import.py converts these weights with `mixtok.interop.ffnet` and checks mixtok's
logits, pooled features and stage outputs against the official ones, in the training form and in the fused
(inference) form, without torch. The official code is not part of mixtok: pass the folder of a clone of
ysj9909/FFNet (its models/ffnet.py and export_model.py, unmodified, are imported from there). Needs torch and
timm (the `timm` extra), not mixtok or JAX; from the repository root:

    python tools/make_ffnet_fixtures.py --official-repo PATH/TO/FFNet --out tests/fixtures/ffnet

It builds two tiny `FFNet`s with the official class: `ffnet_plain` (as ffnet_1: channel-mixer dw conv 3 x 3,
no layer scale) and `ffnet_layer_scale` (as ffnet_3 / ffnet_4: channel-mixer RepVGGDW 7 x 7, layer scale),
both with token-mixer kernels (3, 3, 7, 7), widths (8, 8, 16, 16) (a PatchMerging's output width must be a
multiple of its input's) and depths (1, 1, 2, 1). It gives EVERY parameter and buffer a random value
(`randomise_`: BatchNorm running statistics calibrated on a batch, then moved at random, so that no branch
and no statistic is negligible), runs a seeded 32 x 64 batch (not square: a transposed height and width
fails) in eval mode, then fuses the model with export_model.py's `replace_batchnorm` and runs it again. Each
`<model>.npz` holds `input` [B, 3, 32, 64] (NCHW), `logits`, `pre_logits` (the pooled features after the
final norm), `stage0` ... `stage3` [B, h, w, C], `state_dict/<key>` (training form), `fused_logits` and
`fused_state_dict/<key>` (after replace_batchnorm); `manifest.json` has the official commit, the versions,
the constructor arguments and each file's sha256.

Full-size parity (what mixtok/interop/ffnet.py's docstring reports) is two steps, the first with torch, the
second with mixtok (no torch needed):

    python tools/make_ffnet_fixtures.py --official-repo PATH/TO/FFNet --parity /tmp/ffnet_parity
    python tools/make_ffnet_fixtures.py --check-parity /tmp/ffnet_parity

The first builds ffnet_1 and ffnet_3 with the official factories for seeds 0, 1, 2, randomises them as above,
saves each as train.py's timm CheckpointSaver does (`<variant>_s<seed>.pth.tar`: {'state_dict', 'args',
'epoch', 'arch', 'version', 'metric'}) and as `.safetensors` (the same state dict), its fused state dict
(`..._fused.npz`) and the official training-form and fused logits at 256 and 384 px (`..._outputs.npz`).
The second converts each .pth.tar (without torch: the .safetensors) with `python -m mixtok.interop.ffnet`,
runs mixtok's training form and `fuse_ffnet` of it, converts the fused state dict directly, checks
`to_official` against both official state dicts key for key, and prints the largest errors.

Import shims (for names the official files import but never call here): timm 1.0 dropped
`timm.models._builder._update_default_kwargs`, which the ffnet_N factories call to copy the pretrained cfg's
num_classes / in_chans / img_size defaults into kwargs (values equal to FFNet's own defaults, or ignored by
it); the shim does the same `setdefault`s. export_model.py imports coremltools, used only to write CoreML
files; a stub module stands in for it.
"""

import argparse
import copy
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
IMAGE = (32, 64)
TINY = dict(
    embed_dim=[8, 8, 16, 16],
    in_dim=8,
    depth=[1, 1, 2, 1],
    kernel_sizes1=[3, 3, 7, 7],
    kernel_sizes2=[3, 3, 7, 7],
    expansion_ratios=[3, 3, 3, 3],
    drop_path_rate=0.1,
    num_classes=NUM_CLASSES,
)
MODELS = {  # name: official FFNet constructor arguments
    "ffnet_plain": dict(TINY, kernel_sizes=[3, 3, 3, 3], use_layer_scale=False),
    "ffnet_layer_scale": dict(TINY, kernel_sizes=[7, 7, 7, 7], use_layer_scale=True, layer_scale_init_value=1e-6),
}
PARITY_VARIANTS = ("ffnet_1", "ffnet_3")
PARITY_SEEDS = (0, 1, 2)
PARITY_SIZES = (256, 384)  # the default, and the README's fine-tuned ffnet_3_384 / ffnet_4_384


def import_official(repo: str):
    """(models.ffnet, export_model) of the official clone at `repo`, imported as they are (with the shims above)."""
    if not os.path.isfile(os.path.join(repo, "models", "ffnet.py")):
        raise FileNotFoundError(
            f"{repo}/models/ffnet.py does not exist: --official-repo must be a clone of ysj9909/FFNet"
        )
    import timm.models._builder as builder

    if not hasattr(builder, "_update_default_kwargs"):

        def _update_default_kwargs(pretrained_cfg, kwargs, kwargs_filter=None):
            kwargs.setdefault("num_classes", pretrained_cfg.get("num_classes", 1000))
            kwargs.setdefault("in_chans", 3)
            kwargs.setdefault("img_size", tuple(pretrained_cfg["input_size"][-2:]))

        builder._update_default_kwargs = _update_default_kwargs
    sys.modules.setdefault("coremltools", types.ModuleType("coremltools"))
    sys.path.insert(0, os.path.abspath(repo))
    return importlib.import_module("models.ffnet"), importlib.import_module("export_model")


def commit_of(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def randomise_(model, torch, generator, calibration_size=(64, 64)) -> None:
    """Every parameter and buffer random: conv / linear weights N(0, 1 / fan_in), biases N(0, 0.1), BatchNorm and
    final-norm weights and layer scales U(0.5, 1.5); then every BatchNorm's running statistics are set to those
    of an N(0, 1) batch (one train-mode pass, momentum 1, no drop path) and moved at random: mean + 0.2 std
    N(0, 1), variance x U(0.5, 2). Calibrated statistics keep the activations of ffnet_3's 35 blocks O(1)
    (statistics drawn without regard to the activations make the logits grow to 1e12), and the random moves
    make every statistic matter. num_batches_tracked is reset to 0 (eval never reads it; `to_official` writes 0)."""
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim >= 2 and not name.endswith("layer_scale"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5)
            else:  # BatchNorm weights, layer scales
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        drop_paths = [m for m in model.modules() if hasattr(m, "drop_prob")]
        for m in norms:
            m.momentum = 1.0
        for m in drop_paths:
            m.drop_prob, m.saved_drop_prob = 0.0, m.drop_prob
        model.train()
        model(torch.randn(2, 3, *calibration_size, generator=generator))
        model.eval()
        for m in drop_paths:
            m.drop_prob = m.saved_drop_prob
            del m.saved_drop_prob
        for m in norms:
            m.momentum = 0.1
            m.num_batches_tracked.zero_()
            std = m.running_var.sqrt()
            m.running_mean.add_(0.2 * std * torch.randn(std.shape, generator=generator))
            m.running_var.mul_(0.5 + 1.5 * torch.rand(std.shape, generator=generator))
    known = {id(t) for m in norms for t in (m.running_mean, m.running_var, m.num_batches_tracked)}
    if any(id(t) not in known for t in model.buffers()):
        raise RuntimeError("the official FFNet gained a buffer outside its BatchNorms; randomise it too")


def fused_copy(model, export_model):
    """The model after export_model.py's `replace_batchnorm` (a copy; `model` is left as it is)."""
    fused = copy.deepcopy(model)
    export_model.replace_batchnorm(fused)
    return fused.eval()


def to_arrays(tensors) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in tensors.items()}


def make_fixture(ffnet, export_model, torch, kwargs, seed):
    torch.manual_seed(seed)
    model = ffnet.FFNet(**kwargs).eval()
    generator = torch.Generator().manual_seed(seed)
    randomise_(model, torch, generator)
    images = torch.randn(BATCH, 3, *IMAGE, generator=generator)
    stages = {}
    hooks = [
        stage.register_forward_hook(lambda m, args, out, i=i: stages.__setitem__(f"stage{i}", out.permute(0, 2, 3, 1)))
        for i, stage in enumerate(model.stages)
    ]
    with torch.no_grad():
        logits = model(images)
        pre_logits = torch.flatten(model.avgpool(model.forward_features(images)), 1)
    for hook in hooks:
        hook.remove()
    fused = fused_copy(model, export_model)
    with torch.no_grad():
        fused_logits = fused(images)
    if float(logits.std()) < 0.1:
        raise RuntimeError(f"degenerate logits, std {float(logits.std()):.3g}")
    arrays = {"input": images, "logits": logits, "pre_logits": pre_logits, "fused_logits": fused_logits, **stages}
    arrays.update({f"state_dict/{k}": v for k, v in model.state_dict().items()})
    arrays.update({f"fused_state_dict/{k}": v for k, v in fused.state_dict().items()})
    figures = dict(
        logit_std=round(float(logits.std()), 3),
        parameters=sum(p.numel() for p in model.parameters()),
        fused_parameters=sum(p.numel() for p in fused.parameters()),
        official_fused_vs_training=float((fused_logits - logits).abs().max()),
    )
    return to_arrays(arrays), figures


def write_fixtures(ffnet, export_model, torch, timm, repo, out) -> None:
    os.makedirs(out, exist_ok=True)
    manifest = dict(
        made_by="python tools/make_ffnet_fixtures.py --official-repo FFNet --out " + out,
        official="ysj9909/FFNet: models/ffnet.py (FFNet), export_model.py (replace_batchnorm)",
        official_commit=commit_of(repo),
        timm=timm.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        layout="input: NCHW; stages: [B, h, w, C]; state_dict: training form; fused_state_dict: replace_batchnorm",
        models={},
    )
    for index, (name, kwargs) in enumerate(sorted(MODELS.items())):
        seed = SEED + index
        arrays, figures = make_fixture(ffnet, export_model, torch, kwargs, seed)
        path = os.path.join(out, f"{name}.npz")
        np.savez_compressed(path, **arrays)
        manifest["models"][name] = dict(
            file=f"{name}.npz", sha256=sha256(path), official_kwargs=jsonable(kwargs), seed=seed, **figures
        )
        print(
            f"{name}: {figures['parameters']:,} parameters ({figures['fused_parameters']:,} fused), logit std "
            f"{figures['logit_std']}, {os.path.getsize(path) / 1e3:.0f} kB"
        )
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")


def write_parity(ffnet, export_model, torch, repo, out) -> None:
    os.makedirs(out, exist_ok=True)
    for variant in PARITY_VARIANTS:
        for seed in PARITY_SEEDS:
            torch.manual_seed(seed)
            model = getattr(ffnet, variant)().eval()
            generator = torch.Generator().manual_seed(1000 + seed)
            randomise_(model, torch, generator, calibration_size=(128, 128))
            fused = fused_copy(model, export_model)
            stem = os.path.join(out, f"{variant}_s{seed}")
            torch.save(  # as timm's CheckpointSaver in train.py
                {
                    "epoch": 299,
                    "arch": variant,
                    "state_dict": model.state_dict(),
                    "version": 2,
                    "args": argparse.Namespace(model=variant, lr=1e-3, drop_path=0.1),
                    "metric": 81.3,
                },
                stem + ".pth.tar",
            )
            np.savez(stem + "_official.npz", **to_arrays(model.state_dict()))
            save_safetensors(to_arrays(model.state_dict()), stem + ".safetensors")  # the same, for a torch-less side
            np.savez(stem + "_fused.npz", **to_arrays(fused.state_dict()))
            outputs = {}
            for size in PARITY_SIZES:
                images = torch.randn(BATCH, 3, size, size, generator=generator)
                with torch.no_grad():
                    outputs.update({f"input{size}": images, f"logits{size}": model(images)})
                    outputs[f"fused_logits{size}"] = fused(images)
            np.savez(stem + "_outputs.npz", **to_arrays(outputs))
            print(f"{variant} seed {seed}: logit std at 256 px {float(outputs['logits256'].std()):.3g}", flush=True)
    with open(os.path.join(out, "commit.txt"), "w") as f:
        f.write(commit_of(repo) + "\n")


def save_safetensors(arrays, path) -> None:
    from safetensors.numpy import save_file

    save_file(arrays, path)


def check_parity(folder) -> int:
    """The mixtok side of the parity check (needs mixtok and JAX, not torch)."""
    import jax

    from mixtok.interop import ffnet as importer
    from mixtok.models import create_model
    from mixtok.models.ffnet import fuse_ffnet

    def relative(a, b):
        err = float(np.abs(a - b).max())
        return err, err / float(np.abs(b).max())

    try:
        import torch  # noqa: F401

        has_torch = True
    except ImportError:  # mixtok reads a .pth.tar only with torch; the .safetensors beside it holds the same weights
        has_torch = False
    worst = {"training": (0.0, 0.0), "fused": (0.0, 0.0), "fused (converted)": (0.0, 0.0)}
    for variant in PARITY_VARIANTS:
        models = {fused: jax.jit(create_model(variant, fused=fused).apply) for fused in (False, True)}
        for seed in PARITY_SEEDS:
            stem = os.path.join(folder, f"{variant}_s{seed}")
            output = stem + ".msgpack"
            if os.path.exists(output):
                os.remove(output)
            rc = importer.main([variant, stem + (".pth.tar" if has_torch else ".safetensors"), output])
            if rc != 0:
                return rc
            variables = importer.load_variables(output)
            with np.load(stem + "_official.npz") as f:
                official = dict(f)
            with np.load(stem + "_fused.npz") as f:
                official_fused = dict(f)
            fused_variables = jax.tree.map(np.asarray, fuse_ffnet(variables))
            direct = importer.convert(variant, official_fused)
            for expected, exported in (
                (official, importer.to_official(variant, variables)),
                (official_fused, importer.to_official(variant, direct)),
            ):
                assert list(exported) == list(expected) or set(exported) == set(expected), "key sets differ"
                for key, value in expected.items():
                    np.testing.assert_array_equal(exported[key], value, err_msg=key)
            with np.load(stem + "_outputs.npz") as outputs:
                for size in PARITY_SIZES:
                    images = outputs[f"input{size}"].transpose(0, 2, 3, 1)
                    for what, fused, v, reference in (
                        ("training", False, variables, outputs[f"logits{size}"]),
                        ("fused", True, fused_variables, outputs[f"fused_logits{size}"]),
                        ("fused (converted)", True, direct, outputs[f"fused_logits{size}"]),
                    ):
                        err = relative(np.asarray(models[fused](v, images)), reference)
                        worst[what] = (max(worst[what][0], err[0]), max(worst[what][1], err[1]))
                        print(f"{variant} seed {seed} {size} px {what}: max abs {err[0]:.2g} ({err[1]:.2g} of max)")
            os.remove(output)
    for what, (err, rel) in worst.items():
        print(f"largest over all runs, {what}: max abs {err:.2g}; relative to the largest logit {rel:.2g}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", help="a clone of ysj9909/FFNet (holds models/ffnet.py, export_model.py)")
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "ffnet"),
        help="folder for <model>.npz and manifest.json (default: tests/fixtures/ffnet)",
    )
    parser.add_argument("--parity", metavar="DIR", help="write the full-size parity checkpoints and outputs to DIR")
    parser.add_argument("--check-parity", metavar="DIR", help="check mixtok against the outputs in DIR (no torch)")
    args = parser.parse_args(argv)
    if args.check_parity:
        return check_parity(args.check_parity)
    if not args.official_repo:
        parser.error("--official-repo is needed to run the official code")
    try:
        import timm
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch and timm (pip install -e '.[timm]'): {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    ffnet, export_model = import_official(args.official_repo)
    if args.parity:
        write_parity(ffnet, export_model, torch, args.official_repo, args.parity)
    else:
        write_fixtures(ffnet, export_model, torch, timm, args.official_repo, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
