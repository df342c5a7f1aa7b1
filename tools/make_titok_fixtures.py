"""Writes the golden TiTok / One-D-Piece fixtures made by the official code, and measures full-size parity.

tests/interop/test_titok_import.py converts the fixtures' weights with `mixtok.interop.titok` and checks mixtok's
token indices, reconstructions and (One-D-Piece) prefix decodes against the official ones, without torch. The
official code is not part of mixtok: pass the folders of clones of bytedance/1d-tokenizer and
turingmotors/One-D-Piece (their files, unmodified, are imported from there). Needs torch, einops and omegaconf
(and numpy) in the environment that runs it, TIMM_VENV below; from the repository root:

    $TIMM_VENV/bin/python tools/make_titok_fixtures.py --official-repo PATH/TO/1d-tokenizer \\
        --one-d-piece-repo PATH/TO/One-D-Piece --out tests/fixtures/titok

What it builds (see `FIXTURES`):

- `titok`: the official `TiTok` (modeling/titok.py) from a single-stage config (is_legacy False,
  finetune_decoder False, VQ with an L2-normalised 64 x 12 codebook, 32 px images, patch 8, K = 8 tokens).
- `one_d_piece`: One-D-Piece's `OneDPiece` (turingmotors/One-D-Piece: modeling/one_d_piece.py, unmodified:
  its `apply_tail_token_drop` and `decode(z, length)`) on top of the same single-stage TiTok, with a plain
  (not normalised) VQ. One-D-Piece's own copy of the TiTok code (its modeling/titok.py, modeling/modules/
  blocks.py) has only the legacy two-stage head; mixtok's one_d_piece_* variants are One-D-Piece's training
  rule on the single-stage model, which is what this builds. one_d_piece.py imports `TiTok` from
  `modeling.titok`; the tool hands it a subclass of bytedance's TiTok (`_TiTokWithLength`) whose `decode`
  takes One-D-Piece's `length` argument and does what One-D-Piece's modeling/titok.py does with it
  (`z_quantized[:, :, :, :length]`, and the relaxed `W <= num_latent_tokens` check that its decoder's
  `strict_length_assertion: False` selects; bytedance's decoder asserts W == num_latent_tokens and reads
  `num_latent_tokens` nowhere else).

Sizes. The official encoder and decoder take their width, depth and heads from `vit_*_model_size` ("small":
512 / 8 / 8); nothing smaller can be configured. The fixtures use "small" and keep only the first blocks of
each transformer (`transformer = transformer[:depth]; num_layers = depth`, the loop bound of the official
forward), 2 encoder and 1 decoder block for titok, 1 and 2 for one_d_piece. Their ~12M parameters are not
stored: every parameter is drawn from numpy's PCG64 with the fixture's seed in state-dict order
(`random_state_dict`: embeddings, latent tokens and the codebook N(0, 1), other weights N(0, 1 / fan_in),
biases N(0, 0.1^2), LayerNorm weights U(0.5, 1.5), so that no term is negligible), and the test draws them
again from the keys and shapes in the manifest, checked against its sha256. The models have no buffers.

Each `<model>.npz` holds `images` [B, 3, 32, 32] (NCHW, U(0, 1)), `latents` [B, K, C] (the encoder output before
quantization), `indices` [B, K], `reconstruction` [B, 3, 32, 32] (eval mode), `quantizer_loss`; for
one_d_piece also `prefix_<k>` (eval `decode(z_quantized, length=k)` for k in PREFIXES) and one training-mode
forward after `torch.manual_seed(TRAIN_SEED)`: `train_reconstruction`, `train_k` (the k its tail token drop
drew, found as the one prefix decode it equals exactly) and `train_quantizer_loss`. `manifest.json` records
the official commits, versions, configs, mixtok's matching `TiTok` arguments, the keys and shapes of the
state dict, sha256 of the weights and of each file, and the smallest argmin margin of the quantizer (the gap
between the nearest and second-nearest code, so that index equality is not a coin toss at float rounding).

    PYTHONPATH=. $TIMM_VENV/bin/python tools/make_titok_fixtures.py --official-repo PATH/TO/1d-tokenizer \\
        --one-d-piece-repo PATH/TO/One-D-Piece --parity --seeds 2

instead builds full-size named variants (default titok_s128, titok_b64, one_d_piece_s256) with the same
randomisation, converts each state dict with mixtok.interop.titok.convert and prints, over `--seeds` seeds
(a batch of 2 random 256 px images each, float32, CPU, mixtok under jit): the largest max-abs difference of
the reconstructions (and relative to the largest |reconstruction|), of the pre-quantization latents, the
number of differing token indices, and for One-D-Piece the prefix decodes (k in PARITY_PREFIXES) in both
mixtok forms (a Python int k slices, a traced k masks). For seed 0 it also checks that `to_official` of the
converted variables is the official state dict exactly and loads with strict=True. Needs JAX and mixtok
importable too; writes nothing. `--check-releases` instead compares `mixtok.interop.titok.official_shapes` of
each convertible release with the official `TiTok` built (on the meta device) from its configs/infer/TiTok yaml.

bytedance's quantizer.py imports `accelerate` for a function only its `clustering_vq` training path calls;
when accelerate is not installed the tool puts a stub under that name (it raises if called).
"""

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import types

import numpy as np

SEED = 20240607
TRAIN_SEED = 5  # torch.randint(1, 9, (1,)) draws 4 after torch.manual_seed(5): a k strictly inside 1..K
BATCH = 2
IMAGE = 32
PREFIXES = (1, 3, 6)
PARITY_VARIANTS = ("titok_s128", "titok_b64", "one_d_piece_s256")
PARITY_PREFIXES = (1, 16, 128)
MODEL_SIZES = {512: "small", 768: "base", 1024: "large"}  # blocks.py's widths of vit_*_model_size
EMBEDDINGS = ("class_embedding", "positional_embedding", "latent_token_positional_embedding", "mask_token")


def _vq_model(**kwargs):
    return dict(
        vit_enc_model_size="small",
        vit_dec_model_size="small",
        vit_enc_patch_size=8,
        vit_dec_patch_size=8,
        num_latent_tokens=8,
        commitment_cost=0.25,
        quantize_mode="vq",
        finetune_decoder=False,
        is_legacy=False,
        **kwargs,
    )


# name: (official class, config.model.vq_model, (encoder blocks kept, decoder blocks kept))
FIXTURES = {
    "titok": ("TiTok", _vq_model(codebook_size=64, token_size=12, use_l2_norm=True), (2, 1)),
    "one_d_piece": ("OneDPiece", _vq_model(codebook_size=64, token_size=16, use_l2_norm=False), (1, 2)),
}


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def random_state_dict(keys_and_shapes, seed: int) -> dict[str, np.ndarray]:
    """Every parameter drawn from numpy's PCG64(seed), in the given (state-dict) order; see the module docstring."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for key, shape in keys_and_shapes:
        shape = tuple(shape)
        name = key.rsplit(".", 1)[-1]
        if name in EMBEDDINGS or key in ("latent_tokens", "quantize.embedding.weight"):
            value = rng.standard_normal(shape, dtype=np.float32)
        elif ".ln_" in key and name == "weight":
            value = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif name.endswith("bias"):
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


def commit_of(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def _package(name: str, path: str) -> None:
    """An empty package `name` over `path`, so that its submodules import without running its __init__.py
    (bytedance's modeling/modules/__init__.py imports the training losses, LPIPS and torchvision)."""
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module


def import_official(titok_repo: str, one_d_piece_repo: str):
    """(bytedance's modeling.titok, One-D-Piece's modeling/one_d_piece.py on top of it), both unmodified."""
    path = os.path.join(titok_repo, "modeling", "titok.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: --official-repo must be a clone of bytedance/1d-tokenizer")
    odp_path = os.path.join(one_d_piece_repo, "modeling", "one_d_piece.py")
    if not os.path.isfile(odp_path):
        raise FileNotFoundError(
            f"{odp_path} does not exist: --one-d-piece-repo must be a clone of turingmotors/One-D-Piece"
        )
    try:
        import accelerate  # noqa: F401
    except ImportError:

        def unused(*args, **kwargs):
            raise RuntimeError("accelerate is stubbed by make_titok_fixtures.py: clustering_vq was not expected")

        for name in ("accelerate", "accelerate.utils"):
            _package(name, "")
        sys.modules["accelerate.utils.operations"] = types.SimpleNamespace(gather=unused)
    for name in ("modeling", "modeling.modules", "modeling.quantizer"):
        _package(name, os.path.join(titok_repo, *name.split(".")))
    titok = importlib.import_module("modeling.titok")

    class _TiTokWithLength(titok.TiTok):
        """bytedance's TiTok with One-D-Piece's `decode(z_quantized, length=None)` (see the module docstring)."""

        def decode(self, z_quantized, length=None):
            if length is not None:
                z_quantized = z_quantized[:, :, :, :length]
            full = self.decoder.num_latent_tokens
            self.decoder.num_latent_tokens = z_quantized.shape[-1]
            try:
                return super().decode(z_quantized)
            finally:
                self.decoder.num_latent_tokens = full

    saved = sys.modules["modeling.titok"]
    sys.modules["modeling.titok"] = types.SimpleNamespace(
        TiTok=_TiTokWithLength, PretrainedTokenizer=titok.PretrainedTokenizer
    )
    try:
        spec = importlib.util.spec_from_file_location("official_one_d_piece", odp_path)
        one_d_piece = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(one_d_piece)
    finally:
        sys.modules["modeling.titok"] = saved
    return titok, one_d_piece


def official_config(vq_model: dict, image_size: int) -> dict:
    return {"model": {"vq_model": dict(vq_model)}, "dataset": {"preprocessing": {"crop_size": image_size}}}


def mixtok_kwargs(vq_model: dict, image_size: int, depths=None, tail_token_drop=False) -> dict:
    """mixtok `TiTok` arguments of an official config (blocks.py's width / depth / heads per model size)."""
    sizes = {"small": (512, 8, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}
    enc, dec = sizes[vq_model["vit_enc_model_size"]], sizes[vq_model["vit_dec_model_size"]]
    enc_depth, dec_depth = depths or (enc[1], dec[1])
    assert vq_model["vit_enc_patch_size"] == vq_model["vit_dec_patch_size"]
    return dict(
        image_size=image_size,
        patch_size=vq_model["vit_enc_patch_size"],
        encoder_width=enc[0],
        encoder_depth=enc_depth,
        encoder_heads=enc[2],
        decoder_width=dec[0],
        decoder_depth=dec_depth,
        decoder_heads=dec[2],
        num_latent_tokens=vq_model["num_latent_tokens"],
        quantizer={
            "name": "vq",
            "codebook_size": vq_model["codebook_size"],
            "code_dim": vq_model["token_size"],
            "l2_normalize": vq_model["use_l2_norm"],
            "beta": vq_model["commitment_cost"],
        },
        tail_token_drop=tail_token_drop,
    )


def build(module, class_name, vq_model, image_size, depths, seed, torch):
    """The official model, truncated to `depths` blocks (None: all), with `random_state_dict(seed)` loaded."""
    model = getattr(module, class_name)(official_config(vq_model, image_size))
    if depths is not None:
        for half, depth in zip((model.encoder, model.decoder), depths):
            half.transformer = torch.nn.ModuleList(list(half.transformer)[:depth])
            half.num_layers = depth
    if list(model.buffers()):
        raise RuntimeError("the official TiTok gained buffers; randomise them too")
    keys_and_shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    arrays = random_state_dict(keys_and_shapes, seed)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=True)
    return model.eval(), keys_and_shapes, arrays


def argmin_margin(model, latents, torch) -> float:
    """The smallest gap between the nearest and the second-nearest code's squared distance, as the quantizer
    measures it (after L2 normalisation when use_l2_norm)."""
    z, codebook = latents.reshape(-1, latents.shape[-1]), model.quantize.embedding.weight
    if model.quantize.use_l2_norm:
        z, codebook = torch.nn.functional.normalize(z, dim=-1), torch.nn.functional.normalize(codebook, dim=-1)
    d = (z[:, None, :] - codebook[None]).square().sum(-1)
    two = d.topk(2, dim=1, largest=False).values
    return float((two[:, 1] - two[:, 0]).min())


def run_official(model, images, torch, prefixes=()):
    """Eval-mode outputs of the official model on NCHW `images` (numpy), as numpy."""
    with torch.no_grad():
        x = torch.from_numpy(images)
        latents = model.encoder(pixel_values=x, latent_tokens=model.latent_tokens)  # [B, C, 1, K]
        z_quantized, result = model.encode(x)
        reconstruction = model.decode(z_quantized)
        out = dict(
            latents=latents[:, :, 0, :].permute(0, 2, 1),
            indices=result["min_encoding_indices"][:, 0, :].to(torch.int32),
            reconstruction=reconstruction,
            quantizer_loss=result["quantizer_loss"],
        )
        for k in prefixes:
            out[f"prefix_{k}"] = model.decode(z_quantized, length=k)
        margin = argmin_margin(model, out["latents"], torch)
    return {k: v.numpy() for k, v in out.items()}, margin


def train_draw(model, images, torch, num_tokens):
    """One training-mode forward after torch.manual_seed(TRAIN_SEED): its output, the k its tail token drop drew
    (the one prefix decode that the output equals exactly) and its quantizer loss."""
    x = torch.from_numpy(images)
    with torch.no_grad():
        model.train()
        torch.manual_seed(TRAIN_SEED)
        reconstruction, result = model(x)
        model.eval()
        z_quantized, _ = model.encode(x)
        equal = [
            k for k in range(1, num_tokens + 1) if torch.equal(model.decode(z_quantized, length=k), reconstruction)
        ]
    if len(equal) != 1:
        raise RuntimeError(f"the training-mode decode equals the prefix decodes of k in {equal}, not exactly one")
    return reconstruction.numpy(), equal[0], result["quantizer_loss"].numpy()


def write_fixtures(titok, one_d_piece, torch, args) -> int:
    os.makedirs(args.out, exist_ok=True)
    manifest = dict(
        made_by=(
            "$TIMM_VENV/bin/python tools/make_titok_fixtures.py --official-repo 1d-tokenizer "
            f"--one-d-piece-repo One-D-Piece --out {args.out}"
        ),
        official={
            "bytedance/1d-tokenizer": {
                "commit": commit_of(args.official_repo),
                "files": "modeling/titok.py, modeling/modules/blocks.py, modeling/quantizer/quantizer.py",
            },
            "turingmotors/One-D-Piece": {
                "commit": commit_of(args.one_d_piece_repo),
                "files": "modeling/one_d_piece.py",
            },
        },
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        layout="images, reconstruction, prefix_*: NCHW; latents [B, K, C]; indices [B, K]",
        weights="random_state_dict(state_dict_keys, seed) in tools/make_titok_fixtures.py (numpy PCG64)",
        models={},
    )
    modules = {"TiTok": titok, "OneDPiece": one_d_piece}
    for index, (name, (class_name, vq_model, depths)) in enumerate(sorted(FIXTURES.items())):
        seed = SEED + index
        model, keys_and_shapes, arrays = build(modules[class_name], class_name, vq_model, IMAGE, depths, seed, torch)
        images = np.random.default_rng(seed + 1000).uniform(0.0, 1.0, (BATCH, 3, IMAGE, IMAGE)).astype(np.float32)
        prefixes = PREFIXES if class_name == "OneDPiece" else ()
        out, margin = run_official(model, images, torch, prefixes)
        out["images"] = images
        figures = {}
        if class_name == "OneDPiece":
            reconstruction, k, loss = train_draw(model, images, torch, vq_model["num_latent_tokens"])
            out.update(train_reconstruction=reconstruction, train_k=np.int32(k), train_quantizer_loss=loss)
            figures["train_k"] = k
        if margin < 1e-3:
            raise RuntimeError(f"{name}: argmin margin {margin:.2g}; choose another seed")
        path = os.path.join(args.out, f"{name}.npz")
        np.savez_compressed(path, **out)
        manifest["models"][name] = dict(
            file=f"{name}.npz",
            sha256=sha256(path),
            official_class=class_name,
            official_config=official_config(vq_model, IMAGE),
            blocks_kept={"encoder": depths[0], "decoder": depths[1]},
            mixtok_kwargs=mixtok_kwargs(vq_model, IMAGE, depths, class_name == "OneDPiece"),
            seed=seed,
            state_dict_keys=[[k, list(s)] for k, s in keys_and_shapes],
            state_dict_sha256=state_dict_sha256(arrays),
            parameters=int(sum(v.size for v in arrays.values())),
            argmin_margin=float(f"{margin:.4g}"),
            reconstruction_std=float(f"{out['reconstruction'].std():.4g}"),
            prefixes=list(prefixes),
            **figures,
        )
        print(
            f"{name}: {manifest['models'][name]['parameters']:,} parameters (not stored), argmin margin {margin:.3g}, "
            f"reconstruction std {out['reconstruction'].std():.3g}, {os.path.getsize(path) / 1e3:.0f} kB"
        )
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return 0


def measure_parity(titok, one_d_piece, torch, args) -> int:
    """Full-size named variants: official vs mixtok after `convert` (see the module docstring)."""
    import jax
    import jax.numpy as jnp

    from mixtok.interop import titok as importer

    rows = []
    for name in args.variants:
        kwargs = importer.tokenizer_kwargs(name)
        one_d = bool(kwargs.get("tail_token_drop"))
        vq_model = dict(
            vit_enc_model_size=MODEL_SIZES[kwargs["encoder_width"]],
            vit_dec_model_size=MODEL_SIZES[kwargs["decoder_width"]],
            vit_enc_patch_size=kwargs["patch_size"],
            vit_dec_patch_size=kwargs["patch_size"],
            num_latent_tokens=kwargs["num_latent_tokens"],
            codebook_size=kwargs["quantizer"]["codebook_size"],
            token_size=kwargs["quantizer"]["code_dim"],
            use_l2_norm=kwargs["quantizer"]["l2_normalize"],
            commitment_cost=kwargs["quantizer"].get("beta", 0.25),
            quantize_mode="vq",
            finetune_decoder=False,
            is_legacy=False,
        )
        module, class_name = (one_d_piece, "OneDPiece") if one_d else (titok, "TiTok")
        prefixes = [k for k in PARITY_PREFIXES if k < kwargs["num_latent_tokens"]] if one_d else []
        tokenizer = importer.create(name)

        @jax.jit
        def run(variables, images, tokenizer=tokenizer, prefixes=tuple(prefixes)):
            out = tokenizer.apply(variables, images)
            latents = tokenizer.apply(variables, images, method=lambda mod, x: mod.encoder(x, mod.latent_tokens))
            q = out.quantizer.quantized
            sliced = [tokenizer.apply(variables, q, num_tokens=k, method=tokenizer.decode) for k in prefixes]
            masked = [tokenizer.apply(variables, q, num_tokens=jnp.int32(k), method=tokenizer.decode) for k in prefixes]
            return out.reconstruction, out.quantizer.indices, latents, sliced, masked

        worst = dict(recon=0.0, rel=0.0, latents=0.0, indices=0, prefix=0.0, prefix_rel=0.0)
        for seed in range(args.seeds):
            start = time.time()
            model, _, arrays = build(module, class_name, vq_model, kwargs["image_size"], None, seed, torch)
            size = kwargs["image_size"]
            images = np.random.default_rng(seed + 1000).uniform(0.0, 1.0, (2, 3, size, size)).astype(np.float32)
            official, margin = run_official(model, images, torch, prefixes)
            variables = importer.convert(name, arrays)
            if seed == 0:  # the way back: the official state dict exactly, and it loads with strict=True
                back = importer.to_official(name, variables)
                assert back.keys() == arrays.keys() and all(np.array_equal(back[k], v) for k, v in arrays.items())
                model.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
                del back
            del model, arrays
            recon, indices, latents, sliced, masked = jax.device_get(
                run(variables, jnp.asarray(images.transpose(0, 2, 3, 1)))
            )
            reference = official["reconstruction"].transpose(0, 2, 3, 1)
            diff = float(np.abs(recon - reference).max())
            worst["recon"] = max(worst["recon"], diff)
            worst["rel"] = max(worst["rel"], diff / float(np.abs(reference).max()))
            worst["latents"] = max(worst["latents"], float(np.abs(latents - official["latents"]).max()))
            worst["indices"] += int((np.asarray(indices) != official["indices"]).sum())
            for k, s, m in zip(prefixes, sliced, masked):
                ref = official[f"prefix_{k}"].transpose(0, 2, 3, 1)
                d = max(float(np.abs(s - ref).max()), float(np.abs(m - ref).max()))
                worst["prefix"] = max(worst["prefix"], d)
                worst["prefix_rel"] = max(worst["prefix_rel"], d / float(np.abs(ref).max()))
            print(
                f"  {name} seed {seed}: reconstruction max-abs {diff:.3g}, indices differing "
                f"{int((np.asarray(indices) != official['indices']).sum())}, argmin margin {margin:.3g}, "
                f"{time.time() - start:.0f} s",
                flush=True,
            )
        rows.append((name, worst))
    print(f"\nover {args.seeds} seed(s), batch 2, float32 CPU, PyTorch {torch.__version__}, jax {jax.__version__}:")
    print("variant            recon max-abs   / max|recon|   latents max-abs   indices differing   prefix (rel)")
    for name, w in rows:
        prefix = f"{w['prefix']:.2g} ({w['prefix_rel']:.2g})" if w["prefix"] else "-"
        print(f"{name:18s} {w['recon']:<15.2g} {w['rel']:<14.2g} {w['latents']:<17.2g} {w['indices']:<19d} {prefix}")
    return 0


def check_releases(titok, torch, args) -> int:
    """`official_shapes` of each convertible release against the official `TiTok` built from its
    configs/infer/TiTok/*.yaml (no weights are converted: the released models are large)."""
    from omegaconf import OmegaConf

    from mixtok.interop import titok as importer

    failures = 0
    for name in importer.RELEASES:
        config_name = name.removeprefix("tokenizer_").removesuffix("_imagenet")
        config = OmegaConf.load(os.path.join(args.official_repo, "configs", "infer", "TiTok", f"{config_name}.yaml"))
        with torch.device("meta"):  # shapes only
            model = titok.TiTok(config)
        official = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        ours = importer.official_shapes(name)
        same = official == ours
        failures += not same
        print(
            f"{name}: {len(official)} official keys, {sum(np.prod(s) for s in official.values()):,.0f} values; "
            f"official_shapes {'equal' if same else 'DIFFER: ' + str(set(official.items()) ^ set(ours.items()))}"
        )
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", required=True, help="a clone of bytedance/1d-tokenizer")
    parser.add_argument("--one-d-piece-repo", required=True, help="a clone of turingmotors/One-D-Piece")
    parser.add_argument(
        "--out",
        default=os.path.join("tests", "fixtures", "titok"),
        help="folder for the fixtures (default: %(default)s)",
    )
    parser.add_argument("--parity", action="store_true", help="measure named-variant parity instead (needs mixtok)")
    parser.add_argument("--variants", nargs="+", default=list(PARITY_VARIANTS), help="mixtok names for --parity")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per variant for --parity")
    parser.add_argument(
        "--check-releases", action="store_true", help="compare official_shapes of the releases (needs mixtok)"
    )
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch: {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    titok, one_d_piece = import_official(args.official_repo, args.one_d_piece_repo)
    if args.check_releases:
        return check_releases(titok, torch, args)
    if args.parity:
        return measure_parity(titok, one_d_piece, torch, args)
    return write_fixtures(titok, one_d_piece, torch, args)


if __name__ == "__main__":
    sys.exit(main())
