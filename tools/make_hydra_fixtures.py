"""Writes golden outputs of the official Hydra mixer (goombalab/hydra), and measures parity with mixtok's.

tests/interop/test_hydra_import.py converts these weights with `mixtok.interop.hydra.convert_mixer` and checks
`mixtok.mixers.Hydra` against the official outputs, without torch. The official code is not part of mixtok: pass
the folder of a clone of goombalab/hydra (hydra/modules/hydra.py, unmodified, is imported from there). Needs torch
and einops; from the repository root:

    python tools/make_hydra_fixtures.py --official-repo PATH/TO/hydra --out tests/fixtures/hydra
    PYTHONPATH=. python tools/make_hydra_fixtures.py --official-repo PATH/TO/hydra --parity --seeds 5

The official module imports two GPU-only pieces of mamba_ssm (state-spaces/mamba): the Triton SSD kernel
`mamba_chunk_scan_combined` and the Triton `RMSNorm` (layernorm_gated). The tool replaces only those, under their
own module names, by pure-PyTorch stand-ins before importing hydra.py: the SSD as its per-step recurrence
(S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_t^T, y_t = S_t C_t; D, z, dt_bias, softplus and initial states unused, as
Hydra calls it) and the norm as mamba_ssm's own reference formula `rms_norm_ref` (norm before gate:
x / sqrt(mean(x^2) + eps) * weight * silu(z), in float32 or wider). Everything else is the official code.

Each fixture: `Hydra(**kwargs)` in float64, every parameter random (weights N(0, 0.2^2), vectors N(0, 0.5^2)),
rounded to float32 (what is stored), a seeded input [B, L, D] and the official output, in `<name>.npz`
(`input`, `output`, `state_dict/<key>`), plus `manifest.json` (the official commit when the clone is a git
repository, the versions, the constructor arguments). `--parity` instead runs `--seeds` seeds through mixtok's
mixer (float32, jit) and prints the largest |difference| (this needs JAX and mixtok beside torch).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np

BATCH, LENGTH = 2, 13
FIXTURES = {  # name: official constructor arguments
    "hydra_mixer": dict(d_model=32, d_state=8, headdim=16, ngroups=2),
    "hydra_mixer_bias": dict(d_model=16, d_state=4, headdim=8, expand=1, d_conv=3, bias=True),
}

SSD_STAND_IN = """
import torch

_mamba_chunk_scan_combined_fwd = _mamba_chunk_scan_combined_bwd = None  # imported by hydra/modules/ops.py, unused


def mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                              seq_idx=None, dt_softplus=False, **kwargs):
    assert D is None and z is None and dt_bias is None and initial_states is None and seq_idx is None
    assert not dt_softplus and not kwargs
    batch, length, heads, width = x.shape
    rep = heads // B.shape[2]
    B, C = B.repeat_interleave(rep, dim=2), C.repeat_interleave(rep, dim=2)  # head h reads group h // rep
    state = x.new_zeros(batch, heads, width, B.shape[-1])
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]
        state = decay * state + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    return torch.stack(ys, dim=1)
"""

NORM_STAND_IN = '''
import torch
import torch.nn.functional as F

_layer_norm_fwd = _layer_norm_bwd = None  # imported by hydra/modules/ops.py, unused


class RMSNorm(torch.nn.Module):
    """mamba_ssm's RMSNorm (group_size=None) through its reference formula rms_norm_ref."""

    def __init__(self, hidden_size, eps=1e-5, group_size=None, norm_before_gate=True, device=None, dtype=None):
        super().__init__()
        assert group_size is None
        self.eps, self.norm_before_gate = eps, norm_before_gate
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)

    def forward(self, x, z=None):
        dtype = x.dtype
        if x.dtype in (torch.float16, torch.bfloat16):  # rms_norm_ref(upcast=True)
            x, z = x.float(), None if z is None else z.float()
        if z is not None and not self.norm_before_gate:
            x = x * F.silu(z)
        out = x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + self.eps) * self.weight
        if z is not None and self.norm_before_gate:
            out = out * F.silu(z)
        return out.to(dtype)
'''


def import_official(repo):
    """hydra.modules.hydra.Hydra from the clone, with the two Triton modules replaced by the stand-ins."""
    stubs = tempfile.mkdtemp(prefix="hydra_stand_ins_")
    package = os.path.join(stubs, "mamba_ssm", "ops", "triton")
    os.makedirs(package)
    for folder in ("mamba_ssm", "mamba_ssm/ops", "mamba_ssm/ops/triton"):
        open(os.path.join(stubs, folder, "__init__.py"), "w").close()
    with open(os.path.join(package, "ssd_combined.py"), "w") as f:
        f.write(SSD_STAND_IN)
    with open(os.path.join(package, "layernorm_gated.py"), "w") as f:
        f.write(NORM_STAND_IN)
    sys.path[:0] = [stubs, os.path.abspath(repo)]
    from hydra.modules.hydra import Hydra  # noqa: PLC0415

    return Hydra


def official_output(hydra_cls, kwargs, seed):
    """(state dict as float32 numpy, input, float64 official output) of a randomised module."""
    import torch  # noqa: PLC0415

    torch.manual_seed(seed)
    module = hydra_cls(**kwargs).double().eval()
    with torch.no_grad():
        for param in module.parameters():
            param.copy_((torch.randn_like(param) * (0.2 if param.ndim > 1 else 0.5)).float().double())
        u = torch.randn(BATCH, LENGTH, kwargs["d_model"], dtype=torch.float64).float().double()
        y = module(u)
    state = {k: v.float().numpy() for k, v in module.state_dict().items()}
    return state, u.float().numpy(), y.numpy()


def mixtok_kwargs(kwargs):
    """mixtok.mixers.Hydra arguments for the official constructor arguments."""
    names = {"d_model": "dim", "d_state": "d_state", "headdim": "headdim", "ngroups": "ngroups", "expand": "expand"}
    names |= {"d_conv": "d_conv", "bias": "bias", "conv_bias": "conv_bias"}
    return {names[k]: v for k, v in kwargs.items()}


def git_commit(repo):
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", required=True, help="a clone of goombalab/hydra")
    parser.add_argument("--commit", default=None, help="the clone's commit, when it is not a git repository")
    parser.add_argument("--out", default="tests/fixtures/hydra")
    parser.add_argument("--parity", action="store_true", help="compare with mixtok's mixer; write nothing")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    hydra_cls = import_official(args.official_repo)
    if args.parity:
        import jax  # noqa: PLC0415

        from mixtok.interop.hydra import convert_mixer  # noqa: PLC0415
        from mixtok.mixers.hydra import Hydra  # noqa: PLC0415

        worst = 0.0
        for name, kwargs in FIXTURES.items():
            for seed in range(args.seeds):
                state, u, want = official_output(hydra_cls, kwargs, seed)
                mixer = Hydra(**mixtok_kwargs(kwargs), chunk_size=4)
                got = np.asarray(jax.jit(mixer.apply)({"params": convert_mixer(state)}, u))
                error = float(np.abs(got - want).max())
                worst = max(worst, error)
                print(f"{name} seed {seed}: max |diff| {error:.2e} (max |y| {np.abs(want).max():.2f})")
        print(f"largest over seeds: {worst:.2e}")
        return 0
    import torch  # noqa: PLC0415

    os.makedirs(args.out, exist_ok=True)
    manifest = {
        "official": "goombalab/hydra: hydra/modules/hydra.py Hydra (Triton SSD and RMSNorm replaced: see the tool)",
        "commit": args.commit or git_commit(args.official_repo),
        "made_by": "python tools/make_hydra_fixtures.py --official-repo PATH/TO/hydra --out tests/fixtures/hydra",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "fixtures": {},
    }
    for index, (name, kwargs) in enumerate(FIXTURES.items()):
        state, u, want = official_output(hydra_cls, kwargs, seed=index)
        arrays = {"input": u, "output": want, **{f"state_dict/{k}": v for k, v in state.items()}}
        np.savez_compressed(os.path.join(args.out, f"{name}.npz"), **arrays)
        manifest["fixtures"][name] = {"file": f"{name}.npz", "official_kwargs": kwargs, "seed": index}
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"Wrote {len(FIXTURES)} fixtures to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
