"""Writes the golden LARP fixture made by the official code, counts the official models, and measures parity.

tests/tokenizers/test_larp.py converts the fixture's weights with `mixtok.interop.larp` and checks mixtok's code
indices, reconstruction, quantizer loss, prior logits and prior loss against the official ones, without torch. The
official code is not part of mixtok: pass the folder of a clone of hywang66/LARP (its files, unmodified, are
imported from there). Needs torch, timm, einops, huggingface_hub and numpy in the environment that runs it
(TIMM_VENV below); from the repository root:

    $TIMM_VENV/bin/python tools/make_larp_fixtures.py --official-repo PATH/TO/LARP --out tests/fixtures/larp

Imports. The official `models/__init__.py` imports the training losses (`lpips`) and the AR generator; the tool
imports the package's modules without running it (an empty `models` package over the folder holding
models/models.py's `register`, `make` and registry), and hands `larp_tokenizer.py` the two names it imports
from outside: `utils` is the official utils/statistics.py alone (its `calculate_topk_accuracy`; utils/__init__.py
pulls in TensorBoard and the FVD network), and `easydict`, when not installed, a dict with attribute access
(the only use of it: `edict(prior_model)`). Nothing is installed.

What the fixture is (`FIXTURE`): the official `LARPTokenizer` with cfgs/larp_tokenizer.yaml's flags and
regularizer (stochastic cosine VQ, temperature 0.03, commitment 0.25, codebook 1.0), shrunk: 8 frames of 16 px,
patch 8 x 8 x 4 (2 x 2 x 2 = 8 patch tokens), 8 queries, width 32, 4 heads, encoder 2 blocks, decoder 1, a 64 x 16
codebook; its prior is the official `GPTC` (models/gptc.py) with 1 layer, 2 heads, width 32, `max_seq_len` 8,
registered for the call under the name "gptc-fixture", with `no_dropout: true`. Its ~40k parameters are not
stored: every parameter is drawn from numpy's PCG64 with the fixture's seed in `named_parameters()` order
(`random_state_dict`: embeddings and the codebook N(0, 1), other weights N(0, 1 / fan_in), biases N(0, 0.1^2),
LayerNorm weights U(0.5, 1.5), so that no term is negligible; the zero-initialised output layer is random
too), and the test draws them again from the manifest's keys, shapes and seed, checked against its sha256.

`larp.npz` holds `videos` [B, T, H, W, 3] (mixtok's layout; the official model got them as [B, 3, T, H, W]),
U(0, 1); in eval mode with `set_vq_eval_deterministic(True)` (argmax codes): `latents` (`projected_z`, the
bottleneck input before normalisation), `indices` (`bottleneck_rep`), `reconstruction` [B, T, H, W, 3]
(`pred_frames`), `quantizer_loss` (`loss_q`); and at `global_step` 0 of 100 (scheduled-sampling ratio 0, so the
second round sees the same codes and the loss is deterministic): `prior_logits` [B, K - 1, 64] (round 1 of
`prior_ar_predict_n_rounds_ss`) and `prior_loss` (`loss_latent_ce`). manifest.json records the commit, versions,
the official arguments, mixtok's matching arguments, the state dict's keys and shapes, the sha256 of the weights
and of the file, and the smallest gap between the largest and second-largest cosine of a token to the codes
(so that index equality is not a coin toss at float rounding).

    $TIMM_VENV/bin/python tools/make_larp_fixtures.py --official-repo PATH/TO/LARP --counts

prints sum(p.numel()) of the official LARPTokenizer built with the shipped config (cfgs/larp_tokenizer.yaml,
scripts/train_larp_tokenizer_reproduce.sh's widths), split into tokenizer and prior_model, and of every gptc
size. And

    PYTHONPATH=. $TIMM_VENV/bin/python tools/make_larp_fixtures.py --official-repo PATH/TO/LARP --parity

builds that full-size model with random weights (the same randomisation), converts it with
mixtok.interop.larp, encodes and decodes one random clip (16 x 128 x 128, U(0, 1)) in eval mode in both
(float32, CPU; mixtok under jit) and prints the largest differences of the latents, reconstruction, prior
logits and prior loss, and the number of differing indices. It also checks that `to_official` of the converted
variables is the official state dict and loads with strict=True. Needs JAX and mixtok importable too; writes
nothing.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import types

import numpy as np

SEED = 20241028
BATCH = 2
EMBEDDINGS = (
    "encoder_latent_query_embed",
    "decoder_patch_query_token_type_embed",
    "bottleneck.regularizer.embedding.weight",
    "prior_model.pos_emb",
)

# cfgs/larp_tokenizer.yaml's model.args (the flags; sizes below).
REGULARIZER = dict(
    codebook_size=8192,
    commitment_loss_weight=0.25,
    codebook_loss_weight=1.0,
    entropy_loss_weight=0.0,
    entropy_loss_temperature=0.01,
    l2_normalized=True,
    stochastic=True,
    stochastic_temperature=0.03,
)
PRIOR = dict(
    name="gptc-S",
    use_mix_ss=True,
    mix_ss_max_ratio=0.5,
    mix_ss_peak_steps_ratio=0.3,
    n_rounds=2,
    avg_loss_over_rounds=True,
    no_grad_before_last_round=False,
    no_dropout=False,
    latent_ce_temperature=1.0,
    args=dict(l2_normalized=True),
)
FLAGS = dict(
    transformer_name="transformer_encoder_parallel",
    encoder_name="none",
    decoder_name="none",
    learned_encoder_patch_pe=False,
    learned_encoder_latent_query_embed=True,
    learned_decoder_latent_pe=False,
    learned_decoder_patch_query_embed=False,
    use_encoder_patch_token_type_embed=False,
    use_encoder_latent_query_token_type_embed=False,
    use_decoder_latent_token_type_embed=False,
    use_decoder_patch_query_token_type_embed=True,
    encoder_query_gaussian_init=True,
    latent_pe_scale_factor=10000,
    query_init_std=0.02,
    in_channels=3,
)
# (frames, size, patch, temporal patch, tokens, width, heads, encoder depth, decoder depth, codebook)
FULL = (16, 128, 8, 4, 1024, 768, 12, 12, 12, 8192)
FIXTURE = (8, 16, 8, 4, 8, 32, 4, 2, 1, 64)
FIXTURE_PRIOR = dict(n_layer=1, n_head=2, n_embd=32, max_seq_len=8)


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def random_state_dict(keys_and_shapes, seed: int) -> dict[str, np.ndarray]:
    """Every parameter drawn from numpy's PCG64(seed), in the given (named_parameters) order; module docstring."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for key, shape in keys_and_shapes:
        shape = tuple(shape)
        name = key.rsplit(".", 1)[-1]
        norm = any(part in key for part in ("norm", ".ln1.", ".ln2.", "ln_f."))
        if key in EMBEDDINGS:
            value = rng.standard_normal(shape, dtype=np.float32)
        elif norm and name == "weight":
            value = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif name == "bias":
            value = 0.1 * rng.standard_normal(shape, dtype=np.float32)
        elif len(shape) >= 2:
            value = rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(np.prod(shape[1:])))
        else:
            raise ValueError(f"random_state_dict has no rule for {key} {shape}")
        arrays[key] = np.ascontiguousarray(value, dtype=np.float32)
    return arrays


def state_dict_sha256(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key, value in arrays.items():
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(value, np.float32).tobytes())
    return digest.hexdigest()


def mixtok_kwargs(sizes) -> dict:
    frames, size, patch, temporal, tokens, width, heads, enc_depth, dec_depth, codes = sizes
    return dict(
        frames=frames,
        image_size=size,
        patch_size=patch,
        temporal_patch_size=temporal,
        num_latent_tokens=tokens,
        encoder_width=width,
        encoder_depth=enc_depth,
        encoder_heads=heads,
        decoder_width=width,
        decoder_depth=dec_depth,
        decoder_heads=heads,
        quantizer=dict(
            name="stochastic_vq", codebook_size=codes, code_dim=16, beta=0.25, codebook_weight=1.0, temperature=0.03
        ),
    )


def official_kwargs(sizes, prior: dict) -> dict:
    frames, size, patch, temporal, tokens, width, heads, enc_depth, dec_depth, codes = sizes
    regularizer = dict(REGULARIZER, codebook_size=codes)
    return dict(
        FLAGS,
        bottleneck=dict(
            name="bottleneck", args=dict(bottleneck_dim=16, norm="none", regularizer=dict(name="vq", args=regularizer))
        ),
        prior_model=prior,
        bottleneck_token_num=tokens,
        input_size=size,
        frame_num=frames,
        temporal_patch_size=temporal,
        patch_size=patch,
        decoder_temporal_patch_size=temporal,
        decoder_patch_size=patch,
        encoder_hidden_size=width,
        decoder_hidden_size=width,
        encoder_num_heads=heads,
        decoder_num_heads=heads,
        encoder_depth=enc_depth,
        decoder_depth=dec_depth,
    )


def commit_of(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_official(repo: str):
    """(larp_tokenizer module, gptc module) of the official code, without running models/__init__.py."""
    package = types.ModuleType("models")
    package.__path__ = [os.path.join(repo, "models")]
    sys.modules["models"] = package
    registry = _load("models.models", os.path.join(repo, "models", "models.py"))
    package.register, package.make, package.models = registry.register, registry.make, registry.models
    _load("utils", os.path.join(repo, "utils", "statistics.py"))
    try:
        import easydict  # noqa: F401
    except ImportError:
        stub = types.ModuleType("easydict")

        class EasyDict(dict):
            __getattr__ = dict.__getitem__

        stub.EasyDict = EasyDict
        sys.modules["easydict"] = stub
    import models.bottleneck  # noqa: F401  (registers "bottleneck", "vq")
    import models.gptc as gptc
    import models.larp_tokenizer as larp_tokenizer
    import models.transformer  # noqa: F401  (registers "transformer_encoder_parallel")

    package.models["gptc-fixture"] = lambda **kwargs: gptc.GPTC(gptc.GPTCConfig(**FIXTURE_PRIOR, **kwargs))
    return larp_tokenizer, gptc


def build(larp_tokenizer, sizes, prior_name, seed, torch, no_dropout=True):
    prior = dict(PRIOR, name=prior_name, no_dropout=no_dropout)
    kwargs = official_kwargs(sizes, prior)
    model = larp_tokenizer.LARPTokenizer(**kwargs)
    keys = [(k, tuple(p.shape)) for k, p in model.named_parameters()]
    arrays = random_state_dict(keys, seed)
    with torch.no_grad():
        for key, param in model.named_parameters():
            param.copy_(torch.from_numpy(arrays[key]))
    model.eval()
    model.set_vq_eval_deterministic(True)
    return model, kwargs, keys, arrays


def run_official(model, videos_nthwc, torch) -> dict[str, np.ndarray]:
    videos = torch.from_numpy(np.ascontiguousarray(videos_nthwc.transpose(0, 4, 1, 2, 3)))
    with torch.no_grad():
        out = model(videos, global_step=0, max_steps=100)
        logits, _, _ = model.prior_ar_predict_n_rounds_ss(out["regularized_z"], global_step=0, max_steps=100)
        z = torch.nn.functional.normalize(out["projected_z"], dim=-1)
        cosines = torch.einsum("bnd,kd->bnk", z, model.get_emb())
        top2 = torch.topk(cosines, 2, dim=-1).values
    return {
        "latents": out["projected_z"].numpy(),
        "indices": out["bottleneck_rep"].numpy().astype(np.int32),
        "reconstruction": out["pred_frames"].numpy().transpose(0, 2, 3, 4, 1),
        "quantizer_loss": np.float32(out["loss_q"].item()),
        "prior_logits": logits[0].numpy(),
        "prior_loss": np.float32(out["loss_latent_ce"].item()),
        "margin": float((top2[..., 0] - top2[..., 1]).min()),
    }


def write_fixture(larp_tokenizer, torch, args) -> int:
    import timm

    model, kwargs, keys, arrays = build(larp_tokenizer, FIXTURE, "gptc-fixture", SEED, torch)
    frames, size = FIXTURE[0], FIXTURE[1]
    videos = np.random.default_rng(SEED + 1).uniform(0, 1, (BATCH, frames, size, size, 3)).astype(np.float32)
    result = run_official(model, videos, torch)
    margin = result.pop("margin")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "larp.npz")
    np.savez_compressed(path, videos=videos, **result)
    manifest = {
        "official": {"repo": "hywang66/LARP", "commit": commit_of(args.official_repo)},
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "numpy": np.__version__},
        "python": platform.python_version(),
        "official_kwargs": {k: v for k, v in kwargs.items() if k != "prior_model"},
        "official_prior": dict(kwargs["prior_model"], gptc_config=FIXTURE_PRIOR),
        "mixtok_kwargs": mixtok_kwargs(FIXTURE),
        "mixtok_prior_kwargs": dict(
            depth=FIXTURE_PRIOR["n_layer"],
            num_heads=FIXTURE_PRIOR["n_head"],
            width=FIXTURE_PRIOR["n_embd"],
            max_length=FIXTURE_PRIOR["max_seq_len"],
        ),
        "seed": SEED,
        "state_dict_keys": keys,
        "state_dict_sha256": state_dict_sha256(arrays),
        "smallest_cosine_margin": margin,
        "global_step": 0,
        "max_steps": 100,
        "file": "larp.npz",
        "sha256": sha256(path),
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path):,} bytes); smallest cosine margin {margin:.3g}")
    return 0


def count(larp_tokenizer, gptc, torch) -> int:
    with torch.device("meta"):
        model = larp_tokenizer.LARPTokenizer(**official_kwargs(FULL, dict(PRIOR)))
    total = sum(p.numel() for p in model.parameters())
    prior = sum(p.numel() for p in model.prior_model.parameters())
    print(f"LARPTokenizer (cfgs/larp_tokenizer.yaml, reproduce-script widths): {total:,} in all")
    print(f"  prior_model (gptc-S): {prior:,}; tokenizer without it: {total - prior:,}")
    parts = {}
    for key, param in model.named_parameters():
        head = key.split(".")[0]
        parts[head] = parts.get(head, 0) + param.numel()
    for head, n in parts.items():
        print(f"    {head}: {n:,}")
    for name, make in gptc.GPTC_models.items():
        with torch.device("meta"):
            prior_model = make(n_ind=16, n_classes=8192)
        print(f"  {name} (n_ind 16): {sum(p.numel() for p in prior_model.parameters()):,}")
    return 0


def measure_parity(larp_tokenizer, torch, args) -> int:
    import jax
    import jax.numpy as jnp

    from mixtok.interop import larp as importer
    from mixtok.tokenizers.larp import LARP
    from mixtok.tokenizers.larp_prior import LARPPrior

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model, kwargs, keys, arrays = build(larp_tokenizer, FULL, "gptc-S", SEED, torch)
    frames, size = FULL[0], FULL[1]
    videos = np.random.default_rng(SEED + 1).uniform(0, 1, (1, frames, size, size, 3)).astype(np.float32)
    official = run_official(model, videos, torch)
    tokenizer_kwargs = mixtok_kwargs(FULL)
    variables = importer.convert(tokenizer_kwargs, arrays | {k: v.numpy() for k, v in model.named_buffers()})
    prior_variables = importer.convert_prior("gptc-S", arrays)
    back = importer.to_official(tokenizer_kwargs, variables) | importer.prior_to_official("gptc-S", prior_variables)
    state = model.state_dict()
    same = set(back) == set(state) and all(np.array_equal(back[k], state[k].numpy()) for k in state)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    print(f"to_official(convert(state_dict)) is the state dict exactly: {same}; loads strict: True")
    tokenizer, prior = LARP(**tokenizer_kwargs), LARPPrior()

    @jax.jit
    def run(variables, prior_variables, videos):
        quantized = tokenizer.apply(variables, videos, method=LARP.encode)
        latents = tokenizer.apply(variables, videos, method=LARP.encode_latents)
        reconstruction = tokenizer.apply(variables, quantized.quantized, method=LARP.decode)
        codebook = tokenizer.apply(variables, method=lambda m: m.quantize.codebook())
        logits = prior.apply(prior_variables, quantized.quantized, codebook, method=LARPPrior.logits)
        loss, _ = prior.apply(
            prior_variables, quantized.quantized, quantized.indices, codebook, 0.0, method=LARPPrior.prior_loss
        )
        return latents, quantized.indices, reconstruction, quantized.loss, logits, loss

    mixtok = dict(
        zip(
            ("latents", "indices", "reconstruction", "quantizer_loss", "prior_logits", "prior_loss"),
            (np.asarray(a) for a in run(variables, prior_variables, jnp.asarray(videos))),
        )
    )
    print(f"smallest cosine margin of the official codes: {official['margin']:.3g}")
    for key, value in mixtok.items():
        if key == "indices":
            print(f"  indices: {int(np.sum(value != official[key]))} of {value.size} differ")
            continue
        error = float(np.max(np.abs(value - official[key])))
        scale = float(np.max(np.abs(official[key])))
        print(f"  {key}: max |difference| {error:.2g} (largest |official| {scale:.3g})")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", required=True, help="a clone of hywang66/LARP")
    parser.add_argument("--out", default=os.path.join("tests", "fixtures", "larp"))
    parser.add_argument("--counts", action="store_true", help="print the official parameter counts")
    parser.add_argument("--parity", action="store_true", help="measure full-size parity (writes nothing)")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.official_repo, "models", "larp_tokenizer.py")):
        print(f"error: {args.official_repo} has no models/larp_tokenizer.py (not a LARP clone?)", file=sys.stderr)
        return 2
    import torch

    sys.path.insert(0, os.path.abspath(args.official_repo))
    larp_tokenizer, gptc = import_official(os.path.abspath(args.official_repo))
    if args.counts:
        return count(larp_tokenizer, gptc, torch)
    if args.parity:
        return measure_parity(larp_tokenizer, torch, args)
    return write_fixture(larp_tokenizer, torch, args)


if __name__ == "__main__":
    sys.exit(main())
