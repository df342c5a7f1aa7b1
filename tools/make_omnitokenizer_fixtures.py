"""Counts, parity and golden fixtures for OmniTokenizer against the official PyTorch code (run outside the suite).

    git clone <FoundationVision/OmniTokenizer @ 701b619> /tmp/OmniTokenizer
    PYTHONPATH=. $TIMM_VENV/bin/python tools/make_omnitokenizer_fixtures.py --official-repo /tmp/OmniTokenizer \
        --counts --parity --fixtures

`--counts` prints sum(p.numel()) of the official encoder + decoder + pre / post Linears for each named variant
(mixtok/tokenizers/omnitokenizer_variants.py); `--parity` builds the official model at the official widths with
random weights, converts it (mixtok.interop.omnitokenizer.convert) and compares reconstructions and indices of an
image and a 5-frame clip, on both attention paths; `--fixtures` writes tests/fixtures/omnitokenizer/*.npz: tiny
official models (random weights), their inputs and outputs, which tests/tokenizers/test_omnitokenizer.py checks
without torch. The official code runs unmodified: its modules are loaded from their files; `beartype` and
fairscale's `checkpoint_wrapper` (imported, unused here) get stand-ins, and the `VQGAN` Lightning module (which
needs LPIPS weights) is not built: its encoder, decoder, pre / post Linears and `Codebook` are, with its keys.
"""

import argparse
import math
import sys
import types
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "omnitokenizer"

# Tiny configurations for the golden fixtures: (name, mixtok kwargs); official arguments follow from them.
TINY = {
    "rope_vq": dict(
        patch_size=4,
        temporal_patch_size=2,
        dim=16,
        heads=2,
        dim_head=8,
        ff_mult=2.0,
        temporal_depth=1,
        encoder_blocks="tw",
        decoder_blocks="tt",
        window_size=2,
        spatial_pos="rope",
        quantizer={
            "name": "vq",
            "codebook_size": 32,
            "code_dim": 4,
            "l2_normalize": True,
            "normalize_codebook": False,
            "ema_decay": 0.99,
            "ema_epsilon": 1e-7,
            "beta": 0.25,
        },
    ),
    "rel_biases_vq": dict(
        patch_size=4,
        temporal_patch_size=2,
        dim=16,
        heads=2,
        dim_head=8,
        ff_mult=2.0,
        temporal_depth=1,
        encoder_blocks="tw",
        decoder_blocks="tt",
        window_size=2,
        spatial_pos="rel",
        position_biases=True,
        quantizer={
            "name": "vq",
            "codebook_size": 32,
            "code_dim": 4,
            "l2_normalize": True,
            "normalize_codebook": False,
            "ema_decay": 0.99,
            "ema_epsilon": 1e-7,
            "beta": 0.25,
        },
    ),
}


def load_official(repo: Path):
    """(attention module, Encoder class, Decoder class, Codebook class) from the official files."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from einops import pack, rearrange, repeat, unpack
    from einops.layers.torch import Rearrange
    from timm.models.layers import trunc_normal_
    from torch import nn

    sys.modules.setdefault("beartype", types.SimpleNamespace(beartype=lambda f: f))
    fairscale = types.ModuleType("fairscale")
    fairscale.nn = types.SimpleNamespace(checkpoint_wrapper=lambda m, **k: m)
    sys.modules.setdefault("fairscale", fairscale)
    sys.modules.setdefault("fairscale.nn", fairscale.nn)
    attention = types.ModuleType("omni_attention")
    exec(compile((repo / "OmniTokenizer/modules/attention.py").read_text(), "attention.py", "exec"), attention.__dict__)
    source = (repo / "OmniTokenizer/omnitokenizer.py").read_text()
    scope = dict(
        torch=torch,
        nn=nn,
        F=F,
        math=math,
        rearrange=rearrange,
        repeat=repeat,
        pack=pack,
        unpack=unpack,
        Rearrange=Rearrange,
        trunc_normal_=trunc_normal_,
        Transformer=attention.Transformer,
        Normalize=None,
    )
    helpers = source[source.index("def divisible_by") : source.index("def silu")]
    exec(compile(helpers + source[source.index("class OmniTokenizer_Encoder") :], "omnitokenizer.py", "exec"), scope)
    codebook_src = (repo / "OmniTokenizer/modules/codebook.py").read_text().replace("from ..utils import shift_dim", "")
    cb_scope = {}
    utils_src = (repo / "OmniTokenizer/utils.py").read_text()
    shift = utils_src[utils_src.index("def shift_dim") :]
    shift = shift[: shift.index("\ndef ", 1) if "\ndef " in shift[1:] else len(shift)]
    exec(compile("import torch\n" + shift, "utils.py", "exec"), cb_scope)
    exec(compile(codebook_src, "codebook.py", "exec"), cb_scope)
    return attention, scope["OmniTokenizer_Encoder"], scope["OmniTokenizer_Decoder"], cb_scope["Codebook"]


def build_official(repo: Path, kw: dict, image_size: int = 256):
    """The official pieces of `VQGAN` for mixtok kwargs `kw`, as one torch Module with the VQGAN's keys."""
    import torch
    from torch import nn

    _, encoder_cls, decoder_cls, codebook_cls = load_official(repo)
    q = kw.get("quantizer") or {"name": "vq", "codebook_size": 8192, "code_dim": 8}
    args = dict(
        image_size=image_size,
        patch_embed="linear",
        norm_type="batch",
        window_size=kw.get("window_size", 8),
        spatial_pos=kw.get("spatial_pos", "rope"),
        patch_size=kw.get("patch_size", 8),
        temporal_patch_size=kw.get("temporal_patch_size", 4),
        temporal_depth=kw.get("temporal_depth", 4),
        causal_in_temporal_transformer=True,
        causal_in_peg=True,
        dim=kw.get("dim", 512),
        dim_head=kw.get("dim_head", 64),
        heads=kw.get("heads", 8),
        ff_mult=kw.get("ff_mult", 4.0),
    )
    enc_blocks, dec_blocks = kw.get("encoder_blocks", "ttww"), kw.get("decoder_blocks", "tttt")
    model = nn.Module()
    model.encoder = encoder_cls(block=enc_blocks, spatial_depth=len(enc_blocks), **args)
    model.decoder = decoder_cls(block=dec_blocks, spatial_depth=len(dec_blocks), **args)
    vae = q["name"] == "gaussian"
    code_dim = q["code_dim"]
    model.pre_vq_conv = nn.Sequential(nn.Identity(), nn.Linear(args["dim"], code_dim * (2 if vae else 1)))
    model.post_vq_conv = nn.Sequential(nn.Identity(), nn.Linear(code_dim, args["dim"]))
    if not vae:
        model.codebook = codebook_cls(q["codebook_size"], code_dim, no_random_restart=True)
    torch.manual_seed(0)
    return model


def official_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize(model, seed: int) -> None:
    """Every parameter and the codebook random, so that no term is negligible."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:  # LayerNorm weights / gammas, q / k scales
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name.endswith("relative_position_bias_table") or name.endswith("null_kv"):
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
        if hasattr(model, "codebook"):
            model.codebook.embeddings.copy_(torch.randn(model.codebook.embeddings.shape, generator=g) * 0.3)
            model.codebook.z_avg.copy_(model.codebook.embeddings)
            model.codebook.N.copy_(torch.ones_like(model.codebook.N))


def official_forward(model, x_nhwc: np.ndarray, *, biases: bool):
    """(reconstruction NHWC / NTHWC, indices or None, features [B, T', h, w, C]) of the official pieces, eval."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    x = torch.from_numpy(x_nhwc)
    is_image = x.ndim == 4
    x = x.permute(0, 3, 1, 2) if is_image else x.permute(0, 4, 1, 2, 3)
    sdpa = F.scaled_dot_product_attention
    if biases:  # the official fallback (einsum) path: PyTorch < 2.1
        del F.scaled_dot_product_attention
    try:
        with torch.no_grad():
            model.eval()
            h = model.encoder(x, is_image)  # [B, C, T', h, w]
            z = model.pre_vq_conv[1](h.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
            features = z.permute(0, 2, 3, 4, 1).numpy()  # before the L2 norm, as mixtok's encode_features
            if hasattr(model, "codebook"):
                vq = model.codebook(F.normalize(z, p=2, dim=1))
                emb, indices = vq["embeddings"], vq["encodings"].numpy()
            else:
                emb, indices = z[:, : z.shape[1] // 2], None  # the posterior mean
            post = model.post_vq_conv[1](emb.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
            recon = model.decoder(post, is_image)
    finally:
        F.scaled_dot_product_attention = sdpa
    recon = recon.permute(0, 2, 3, 1) if is_image else recon.permute(0, 2, 3, 4, 1)
    if is_image and indices is not None:
        indices = indices[:, 0]
    return recon.numpy(), indices, features


def mixtok_forward(kw: dict, state_dict: dict, x: np.ndarray):
    import jax

    from mixtok.interop.omnitokenizer import convert, create

    variables = convert(kw, state_dict)
    model = create(kw)
    out = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
    features = model.apply(variables, x, method=model.encode_features)
    return np.asarray(out.reconstruction), out.quantizer.indices, np.asarray(features)


def compare(repo: Path, kw: dict, size: int, seed: int) -> list[str]:
    model = build_official(repo, kw, size)
    randomize(model, seed)
    state_dict = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(seed)
    pt = kw.get("temporal_patch_size", 4)
    lines = []
    for what, x in (
        ("image", rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)),
        (f"clip of {1 + pt} frames", rng.uniform(-1, 1, (2, 1 + pt, size, size, 3)).astype(np.float32)),
    ):
        ref, ref_idx, ref_feat = official_forward(model, x, biases=kw.get("position_biases", False))
        out, idx, feat = mixtok_forward(kw, state_dict, x)
        same = "n/a" if ref_idx is None else bool(np.array_equal(np.asarray(idx), ref_idx))
        lines.append(
            f"{what}: recon max-abs {np.max(np.abs(out - ref)):.2e} (|recon| max {np.max(np.abs(ref)):.2e}), "
            f"features max-abs {np.max(np.abs(feat - ref_feat)):.2e}, indices equal: {same}"
        )
    return lines


def compare_null_kv_attention(repo: Path, seed: int = 0) -> str:
    """The official causal `Attention` with 2 null key / values (einsum path, ALiBi) against mixtok's OmniAttention."""
    import jax
    import torch
    import torch.nn.functional as F  # noqa: N812

    from mixtok.tokenizers.omnitokenizer_layers import OmniAttention

    attention, *_ = load_official(repo)
    official = attention.Attention(dim=16, dim_head=8, heads=2, causal=True, num_null_kv=2)
    randomize(official, seed)
    x = np.random.default_rng(seed).normal(size=(3, 5, 16)).astype(np.float32)
    sdpa = F.scaled_dot_product_attention
    del F.scaled_dot_product_attention
    try:
        with torch.no_grad():
            ref = official(torch.from_numpy(x), is_spatial=False).numpy()
    finally:
        F.scaled_dot_product_attention = sdpa
    sd = {k: v.detach().numpy() for k, v in official.named_parameters()}
    params = {
        "norm": {"scale": sd["norm.gamma"]},
        "context_norm_gamma": sd["context_norm.gamma"],
        "to_q": {"kernel": sd["to_q.weight"].T},
        "to_kv": {"kernel": sd["to_kv.weight"].T},
        "to_out": {"kernel": sd["to_out.weight"].T},
        "q_scale": sd["q_scale"],
        "k_scale": sd["k_scale"],
        "null_kv": sd["null_kv"],
        "spatial_rel_pos_bias": {
            f"net_{i}": {
                "kernel": sd[f"spatial_rel_pos_bias.net.{key}.weight"].T,
                "bias": sd[f"spatial_rel_pos_bias.net.{key}.bias"],
            }
            for i, key in enumerate(("0.0", "1.0", "2"))
        },
    }
    layer = OmniAttention(16, 2, 8, causal=True, spatial=False, num_null_kv=2, position_biases=True)
    out = np.asarray(jax.jit(lambda p, x: layer.apply({"params": p}, x, (3, 5, 1, 1)))(params, x))
    return f"causal attention with 2 null key/values (einsum path): max-abs {np.max(np.abs(out - ref)):.2e}"


def official_temporal_leak(repo: Path) -> str:
    """How much the official encoder's first two latent frames change when pixel frame 3 (latent frame 2) does."""
    import torch

    model = build_official(repo, TINY["rope_vq"], 16)
    randomize(model, 1)
    model.eval()
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, 5, 16, 16)).astype(np.float32))
    y = x.clone()
    y[:, :, 3] = -y[:, :, 3]
    with torch.no_grad():
        change = (model.encoder(x, False) - model.encoder(y, False))[:, :, :2].abs().max().item()
    return f"official encoder, frame 3 changed: latent frames 0-1 change by up to {change:.2e} (0 if causal)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", type=Path, required=True)
    parser.add_argument("--counts", action="store_true")
    parser.add_argument("--parity", action="store_true")
    parser.add_argument("--fixtures", action="store_true")
    args = parser.parse_args(argv)
    from mixtok.tokenizers import tokenizer_spec
    from mixtok.tokenizers.omnitokenizer_variants import VARIANTS

    if args.counts:
        for name in VARIANTS:
            kw = dict(tokenizer_spec(name).kwargs)
            model = build_official(args.official_repo, kw)
            parts = [official_count(getattr(model, n)) for n in ("encoder", "decoder", "pre_vq_conv", "post_vq_conv")]
            detail = f"encoder {parts[0]:,} + decoder {parts[1]:,} + pre {parts[2]:,} + post {parts[3]:,}"
            print(f"{name}: {sum(parts):,} = {detail}")
    if args.parity:
        print(compare_null_kv_attention(args.official_repo))
        print(official_temporal_leak(args.official_repo))
        for name in ("omnitokenizer_vq", "omnitokenizer_vq_stage1", "omnitokenizer_kl"):
            for biases in (False, True):
                kw = dict(tokenizer_spec(name).kwargs, position_biases=biases)
                for line in compare(args.official_repo, kw, 64, seed=0):
                    print(f"{name} position_biases={biases}: {line}")
    if args.fixtures:
        FIXTURES.mkdir(parents=True, exist_ok=True)
        for name, kw in TINY.items():
            model = build_official(args.official_repo, kw, 16)
            randomize(model, seed=1)
            state_dict = {k: v.detach().numpy() for k, v in model.state_dict().items()}
            rng = np.random.default_rng(1)
            image = rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
            clip = rng.uniform(-1, 1, (1, 5, 16, 16, 3)).astype(np.float32)
            out = {}
            for key, x in (("image", image), ("clip", clip)):
                recon, idx, feat = official_forward(model, x, biases=kw.get("position_biases", False))
                out.update({f"{key}": x, f"{key}_recon": recon, f"{key}_indices": idx, f"{key}_features": feat})
            if name != "rope_vq":  # the same inputs (seed 1) are stored once, in rope_vq.npz
                del out["image"], out["clip"]
            kept = {f"sd/{k}": v for k, v in state_dict.items() if not k.endswith((".beta", "relative_position_index"))}
            np.savez_compressed(FIXTURES / f"{name}.npz", **out, **kept)
            print(f"wrote {FIXTURES / name}.npz ({(FIXTURES / f'{name}.npz').stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
