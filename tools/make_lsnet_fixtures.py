"""Writes the golden LSNet fixtures (and runs the full-size parity check) with the official code (jameslahm/lsnet).

tests/interop/test_lsnet_import.py converts these weights with `mixtok.interop.lsnet` and checks mixtok's logits,
pooled features and stage outputs against the official ones, without torch. The official code is not part of
mixtok: pass the folder of a clone of jameslahm/lsnet (its model/lsnet.py, unmodified, is imported from there).
Needs torch and timm (the `timm` extra); from the repository root:

    python tools/make_lsnet_fixtures.py --official-repo PATH/TO/lsnet --out tests/fixtures/lsnet

It builds one tiny `LSNet` (96 px, patch 8; dims 16, 24, 32, 48; depths 1, 2, 2, 2 so that every block kind
appears: RepVGGDW + SE, LSConv, the stage-4 attention on a 2 x 2 map), gives every parameter and buffer random
values (convs N(0, 1 / fan_in), biases N(0, 0.1), norm weights U(0.5, 1.5), attention biases N(0, 1); BatchNorm
running statistics those of 8 calibration images, then means moved by N(0, 0.5^2) standard deviations and
variances scaled by U(0.5, 1.5): see `randomise_`), runs a seeded batch of 2 other images in eval mode and saves
`lsnet_tiny.npz`:
`input` [B, 3, 96, 96] (NCHW), `logits` (the `head`'s), `distilled_logits` (the model is built with
distillation=True, so it also has the distillation head `head_dist`; its eval output is the mean of the two
heads), `pre_logits` (the pooled features before the heads),
`stage1` ... `stage4` ([B, h, w, C], each stage's output) and `state_dict/<key>`; plus `manifest.json` with the
official commit, the torch / timm versions, the constructor arguments and the file's sha256.

With `--parity` (needs JAX and mixtok too) it instead checks full-size models: for each variant, image size
and seed it randomises the official model as above, saves the weights as main.py saves a checkpoint
({'model', 'model_ema', 'epoch', 'args'}), converts that file with `python -m mixtok.interop.lsnet`, runs
both in eval mode on the same N(0, 1) batch and prints the largest |mixtok - official| logit difference, also
relative to the largest |logit|:

    python tools/make_lsnet_fixtures.py --official-repo PATH/TO/lsnet --parity \\
        --variants lsnet_t lsnet_b --image-sizes 224 384 --seeds 0 1 2

model/ska.py (SKA) is a Triton kernel written for CUDA, with no PyTorch fallback. `--ska` chooses how it runs:
- `official` (the default for the fixtures): model/ska.py itself, its Triton kernel run by Triton's CPU
  interpreter (TRITON_INTERPRET=1, set by this tool before triton is imported; needs the triton package);
- `torch` (the default for --parity, where the interpreter is too slow for full-size maps): `TorchSKA` below,
  the plain-PyTorch equivalent read from the kernel's `ska_fwd`: out[n, c, h, w] = sum over the k x k taps of
  the zero-padded x[n, c, h + kh - p, w + kw - p] times w[n, c mod wc, kh * k + kw, h, w], installed as the
  `.ska` module that model/lsnet.py imports. On random inputs it equals the interpreted kernel within 1e-6
  (summation order). SKA has no parameters, so the state dicts are the official ones either way.
The rest of the official code runs unmodified, with one import shim:
  model/lsnet.py imports timm 0.5-era paths (timm.models.layers, timm.models.registry, timm.models.helpers);
  timm 1.0 still has them (deprecated aliases; SqueezeExcite is the same SEModule), but its `register_model`
  rejects the `hf_hub` key of model/lsnet.py's default_cfgs. The timm registry is not used here, so while
  model/lsnet.py is imported `timm.models.registry.register_model` is an identity function.
The official `lsnet_t()` ... builders fix img_size=224 and drop other arguments, so the tool builds `LSNet`
with their arguments (written below from model/lsnet.py) and the image size it needs.
"""

import argparse
import importlib.util
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import types

import numpy as np
from make_timm_fixtures import jsonable, sha256

SEED = 20251207
BATCH = 2
CALIBRATION_BATCH = 8  # images whose maps set the BatchNorm running statistics (see randomise_)
TINY_IMAGE = 96
TINY = dict(
    img_size=TINY_IMAGE,
    patch_size=8,
    num_classes=10,
    embed_dim=[16, 24, 32, 48],
    key_dim=[4, 4, 4, 4],
    depth=[1, 2, 2, 2],
    num_heads=[2, 2, 2, 2],
    distillation=True,  # a *_distill model: its state dict is the plain one plus head_dist.*
)
SKA_NOTES = {
    "official": "model/ska.py's Triton kernel, run by Triton's interpreter (TRITON_INTERPRET=1) on the CPU",
    "torch": "TorchSKA (tools/make_lsnet_fixtures.py), the plain-PyTorch form of model/ska.py's kernel",
}
# The arguments of model/lsnet.py's lsnet_t / lsnet_s / lsnet_b (img_size is the caller's).
OFFICIAL_VARIANTS = {
    "lsnet_t": dict(patch_size=8, embed_dim=[64, 128, 256, 384], depth=[0, 2, 8, 10], num_heads=[3, 3, 3, 4]),
    "lsnet_s": dict(patch_size=8, embed_dim=[96, 192, 320, 448], depth=[1, 2, 8, 10], num_heads=[3, 3, 3, 4]),
    "lsnet_b": dict(patch_size=8, embed_dim=[128, 256, 384, 512], depth=[4, 6, 8, 10], num_heads=[3, 3, 3, 4]),
}


def torch_ska_module(torch):
    """A module standing in for model/ska.py: `SKA` computed with F.unfold instead of the Triton kernel."""

    class TorchSKA(torch.nn.Module):
        def forward(self, x, w):
            n, c, h, width = x.shape
            taps, wc = w.shape[2], w.shape[1]
            k = int(round(taps**0.5))
            patches = torch.nn.functional.unfold(x, k, padding=(k - 1) // 2).view(n, c, taps, h, width)
            # Channel c uses kernel group c mod wc: repeating the wc groups c / wc times lines them up.
            return (patches * w.repeat(1, c // wc, 1, 1, 1)).sum(dim=2)

    module = types.ModuleType("official_lsnet.ska")
    module.SKA = TorchSKA
    return module


def import_official_lsnet(repo: str, torch, ska: str = "torch"):
    """model/lsnet.py of the official clone at `repo`, imported as it is; its `.ska` is model/ska.py
    (`ska="official"`, under Triton's interpreter: the tool runs on CPU tensors) or `TorchSKA` (`ska="torch"`)."""
    path = os.path.join(repo, "model", "lsnet.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: --official-repo must be a clone of jameslahm/lsnet")
    package = types.ModuleType("official_lsnet")
    package.__path__ = [os.path.join(repo, "model")]
    sys.modules["official_lsnet"] = package
    if ska == "torch":
        sys.modules["official_lsnet.ska"] = torch_ska_module(torch)
    elif os.environ.get("TRITON_INTERPRET") != "1":  # the tool runs on CPU tensors: the kernel needs the interpreter
        raise RuntimeError("the official SKA needs TRITON_INTERPRET=1 set before torch and triton are imported")
    spec = importlib.util.spec_from_file_location("official_lsnet.lsnet", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["official_lsnet.lsnet"] = module
    # timm 1.0's register_model rejects the default_cfgs' `hf_hub` key; the tool never uses timm's registry.
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn
    saved = sys.modules.get("timm.models.registry")
    sys.modules["timm.models.registry"] = registry
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            sys.modules.pop("timm.models.registry")
        else:
            sys.modules["timm.models.registry"] = saved
    return module


def commit_of(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def randomise_(model, torch, generator, calibration_images) -> list[str]:
    """Random values in every parameter and floating-point buffer (see the module docstring); returns the
    names of the integer buffers, left as a fresh official model has them (attention_bias_idxs, and
    num_batches_tracked at 0).

    BatchNorm's running statistics come from one eval-mode pass over `calibration_images`: as the pass reaches
    each BatchNorm, its running mean and variance become the mean and variance of its input (over batch and
    space), the mean then moved by N(0, 0.5^2) standard deviations and the variance scaled by U(0.5, 1.5).
    Drawn without regard to the data, a 20-block network's maps grow to ~1e7 and saturate the stage-4
    softmax, which hides the attention biases; calibrated layer by layer, every map stays of order one and
    every parameter and statistic shows in the logits.
    """
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("attention_biases"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            elif name.endswith("bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim >= 2:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5)
            else:  # norm weights
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))

        def calibrate(norm, args):
            x = args[0]
            axes = [0, *range(2, x.ndim)]
            mean, var = x.mean(axes), x.var(axes)
            norm.running_mean.copy_(mean + 0.5 * var.sqrt() * torch.randn(mean.shape, generator=generator))
            norm.running_var.copy_(var * (0.5 + torch.rand(var.shape, generator=generator)))

        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        hooks = [norm.register_forward_pre_hook(calibrate) for norm in norms]
        # Attention.train(False) caches its bias table as `ab`: refresh it now that the biases are random.
        model.train()
        model.eval()
        model(calibration_images)
        for hook in hooks:
            hook.remove()
    for module in model.modules():
        if hasattr(module, "ab") and not torch.equal(module.ab, module.attention_biases[:, module.attention_bias_idxs]):
            raise RuntimeError("an Attention's cached bias table `ab` is not its attention_biases")
    return [name for name, tensor in model.named_buffers() if not tensor.is_floating_point()]


def make_fixture(lsnet, torch, kwargs, seed):
    torch.manual_seed(seed)
    model = lsnet.LSNet(**kwargs).eval()
    generator = torch.Generator().manual_seed(seed)
    side = kwargs["img_size"]
    kept = randomise_(model, torch, generator, torch.randn(CALIBRATION_BATCH, 3, side, side, generator=generator))
    images = torch.randn(BATCH, 3, side, side, generator=generator)
    stages, hooks = {}, []
    for i in range(4):
        stage = getattr(model, f"blocks{i + 1}")
        hooks.append(
            stage.register_forward_hook(
                lambda m, args, out, i=i: stages.__setitem__(f"stage{i + 1}", out.permute(0, 2, 3, 1))
            )
        )
    with torch.no_grad():
        distilled_logits = model(images)  # eval: (head + head_dist) / 2
    for hook in hooks:
        hook.remove()
    with torch.no_grad():  # the official forward up to its pooling, as mixtok's `pre_logits`
        pre_logits = torch.nn.functional.adaptive_avg_pool2d(stages["stage4"].permute(0, 3, 1, 2), 1).flatten(1)
        logits = model.head(pre_logits)  # what the plain model (distillation=False) computes
        if not torch.allclose(distilled_logits, (logits + model.head_dist(pre_logits)) / 2, rtol=1e-5, atol=1e-5):
            raise RuntimeError("the distilled eval output is not the mean of the two heads")
    if float(logits.std()) < 0.1:
        raise RuntimeError(f"degenerate logits, std {float(logits.std()):.3g}")
    arrays = {"input": images, "logits": logits, "distilled_logits": distilled_logits, "pre_logits": pre_logits}
    arrays.update(stages)
    arrays.update({f"state_dict/{k}": v for k, v in model.state_dict().items()})
    # np.array, not np.ascontiguousarray, which turns the 0-d num_batches_tracked into shape (1,).
    arrays = {k: np.array(v.detach().cpu().numpy(), order="C") for k, v in arrays.items()}
    figures = dict(
        logit_std=round(float(logits.std()), 3),
        parameters=sum(p.numel() for p in model.parameters()),
        integer_buffers_kept=len(kept),
    )
    return arrays, figures


def write_fixtures(lsnet, torch, timm, args) -> int:
    os.makedirs(args.out, exist_ok=True)
    arrays, figures = make_fixture(lsnet, torch, TINY, SEED)
    path = os.path.join(args.out, "lsnet_tiny.npz")
    np.savez_compressed(path, **arrays)
    manifest = dict(
        made_by="python tools/make_lsnet_fixtures.py --official-repo lsnet --out " + args.out,
        official="jameslahm/lsnet: model/lsnet.py, model/ska.py",
        ska=SKA_NOTES[args.ska],
        official_commit=commit_of(args.official_repo),
        timm=timm.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        layout="input: NCHW; stages: [B, h, w, C]",
        models={
            "lsnet_tiny": dict(
                file="lsnet_tiny.npz",
                sha256=sha256(path),
                official_class="LSNet",
                official_kwargs=jsonable(TINY),
                seed=SEED,
                **figures,
            )
        },
    )
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    print(
        f"lsnet_tiny: {figures['parameters']:,} parameters, logit std {figures['logit_std']}, "
        f"{os.path.getsize(path) / 1e3:.0f} kB"
    )
    return 0


def parity(lsnet, torch, args) -> int:
    """Full-size official models against mixtok through a main.py-style checkpoint and the command line."""
    import jax

    from mixtok.interop import lsnet as importer
    from mixtok.models import create_model

    worst = 0.0
    for name, size in itertools.product(args.variants, args.image_sizes):
        model_fn = None
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = lsnet.LSNet(img_size=size, num_classes=1000, **OFFICIAL_VARIANTS[name]).eval()
            generator = torch.Generator().manual_seed(seed)
            randomise_(model, torch, generator, torch.randn(CALIBRATION_BATCH, 3, size, size, generator=generator))
            images = torch.randn(BATCH, 3, size, size, generator=generator)
            with torch.no_grad():
                expected = model(images).numpy()
            with tempfile.TemporaryDirectory() as tmp:
                checkpoint, output = os.path.join(tmp, f"{name}.pth"), os.path.join(tmp, "out.msgpack")
                state_dict = model.state_dict()
                # As main.py saves it; the EMA copy differs (scaled head) so that the two cannot be confused.
                ema = {k: (2 * v if k == "head.l.weight" else v) for k, v in state_dict.items()}
                torch.save(
                    {"model": state_dict, "model_ema": ema, "epoch": 299, "args": argparse.Namespace(model=name)},
                    checkpoint,
                )
                env = {**os.environ, "JAX_PLATFORMS": "cpu"}
                subprocess.run(
                    [sys.executable, "-m", "mixtok.interop.lsnet", name, checkpoint, output], check=True, env=env
                )
                variables = importer.load_variables(output)
                ema_variables = importer.convert(name, importer.load_state_dict(checkpoint, ema=True))
                exported = importer.to_official(name, variables)
                fresh = lsnet.LSNet(img_size=size, num_classes=1000, **OFFICIAL_VARIANTS[name])
                fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
                for key, value in state_dict.items():
                    if not key.endswith("num_batches_tracked") and not np.array_equal(value.numpy(), exported[key]):
                        raise RuntimeError(f"to_official changed {key}")
            if model_fn is None:
                module = create_model(name, image_size=size)
                model_fn = jax.jit(module.apply)
            got = np.asarray(model_fn(variables, images.numpy().transpose(0, 2, 3, 1)))
            got_ema = np.asarray(model_fn(ema_variables, images.numpy().transpose(0, 2, 3, 1)))
            error = float(np.abs(got - expected).max())
            scale = float(np.abs(expected).max())
            # The EMA copy's head weight is doubled: its logits are 2 * logits - bias.
            ema_error = float(np.abs(got_ema - (2 * got - state_dict["head.l.bias"].numpy())).max())
            worst = max(worst, error / scale)
            print(
                f"{name} {size}px seed {seed}: max |diff| {error:.2e}, largest |logit| {scale:.3g}, "
                f"relative {error / scale:.2e}; model_ema logits off by {ema_error:.2e}",
                flush=True,
            )
    print(f"largest relative error {worst:.2e}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", required=True, help="a clone of jameslahm/lsnet (holds model/lsnet.py)")
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "lsnet"),
        help="folder for lsnet_tiny.npz and manifest.json (default: tests/fixtures/lsnet)",
    )
    parser.add_argument("--parity", action="store_true", help="check full-size models against mixtok instead")
    parser.add_argument(
        "--ska",
        choices=sorted(SKA_NOTES),
        default=None,
        help="how SKA runs: the official Triton kernel (interpreted on a CPU) or TorchSKA (default: official for "
        "the fixtures, torch for --parity)",
    )
    parser.add_argument("--variants", nargs="+", default=["lsnet_t", "lsnet_b"], choices=sorted(OFFICIAL_VARIANTS))
    parser.add_argument("--image-sizes", nargs="+", type=int, default=[224, 384])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args(argv)
    args.ska = args.ska or ("torch" if args.parity else "official")
    if args.ska == "official":
        os.environ["TRITON_INTERPRET"] = "1"  # read when triton is first imported (torch and timm import it)
    try:
        import timm
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch and timm (pip install -e '.[timm]'): {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    lsnet = import_official_lsnet(args.official_repo, torch, args.ska)
    return parity(lsnet, torch, args) if args.parity else write_fixtures(lsnet, torch, timm, args)


if __name__ == "__main__":
    sys.exit(main())
