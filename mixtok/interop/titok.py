"""Converts official TiTok / One-D-Piece state dicts (bytedance/1d-tokenizer) to mixtok's `TiTok` and back.

    state_dict = load_state_dict("model.safetensors")          # a Hugging Face download, or a .bin / .pth
    variables = convert("tokenizer_titok_sl256_vq8k_imagenet", state_dict)
    tokenizer = create("tokenizer_titok_sl256_vq8k_imagenet")  # the mixtok TiTok those variables belong to
    out = tokenizer.apply(variables, images_nhwc)              # images in [0, 1], as the official demo's

or once, from the shell (then `load_variables(OUTPUT)`):

    python -m mixtok.interop.titok tokenizer_titok_sl256_vq8k_imagenet model.safetensors titok_sl256.msgpack

(exit code 0 when written; 2 for bad input or arguments, with one `error:` message on stderr; as every
importer's command line, official.run_cli.)

What converts. mixtok's TiTok is the single-stage RGB model (`is_legacy: False`, `finetune_decoder: False`,
VQ). Names are:

- the released single-stage VQ tokenizers (bytedance/1d-tokenizer @ 942a96f README_TiTok.md, Hugging Face
  `yucornetto/<name>`, configs/infer/TiTok/<name without tokenizer_ / _imagenet>.yaml):
  `tokenizer_titok_bl64_vq8k_imagenet`, `tokenizer_titok_bl128_vq8k_imagenet`,
  `tokenizer_titok_sl256_vq8k_imagenet` (encoder base / small, decoder large, 8192 x 64 codes, no L2 norm);
- mixtok's named variants (`titok_s128`, ..., `one_d_piece_s256`, ...: mixtok/tokenizers/titok_variants.py),
  for state dicts of the official `TiTok` built from those configs with is_legacy False;
- a dict of `TiTok` keyword arguments, for any other single-stage VQ configuration.

The released TiTok-L-32 / B-64 / S-128 and all One-D-Piece checkpoints (turingmotors/One-D-Piece @ 473665d
README.md) are legacy two-stage models: a head over 1024 MaskGIT-VQGAN proxy codes (`decoder.ffn.2`) and a
frozen MaskGIT-VQGAN pixel decoder (`pixel_decoder.*`), which mixtok does not implement; they are refused
with one line. So are the VAE tokenizers (`*_vae_c16_imagenet`: no codebook).

Images. The released tokenizers were trained on images in [0, 1] (README_TiTok.md's demo divides the pixels by
255 and clamps the reconstruction to [0, 1]); feed the converted model the same, NHWC.

Keys (official <-> mixtok; i: block; the same for encoder and decoder):

    latent_tokens                              latent_tokens
    quantize.embedding.weight                  quantize/codebook
    {encoder,decoder}.class_embedding, .positional_embedding, .latent_token_positional_embedding   the same names
    decoder.mask_token                         decoder/mask_token
    encoder.patch_embed.weight [W, 3, p, p]    encoder/patch_embed/kernel [p, p, 3, W]
    encoder.conv_out.weight [C, W, 1, 1]       encoder/conv_out/kernel [W, C]      (a 1x1 conv as a Dense)
    decoder.decoder_embed.weight [W, C]        decoder/decoder_embed/kernel [C, W]
    decoder.ffn.0.weight [p*p*3, W, 1, 1]      decoder/ffn/kernel [W, p*p*3]       (channels ordered (p1, p2, c))
    decoder.conv_out.weight [3, 3, 3, 3]       decoder/conv_out/kernel (HWIO)
    *.ln_pre, *.ln_post .weight / .bias        */ln_pre, */ln_post /scale, /bias
    *.transformer.i.ln_1, .ln_2                */transformer/block_i/ln_1, ln_2
    *.transformer.i.attn.in_proj_weight [3W, W], in_proj_bias   */transformer/block_i/attn/in_proj/kernel [W, 3W], bias
    *.transformer.i.attn.out_proj.*            */transformer/block_i/attn/out_proj/*
    *.transformer.i.mlp.c_fc, .c_proj          */transformer/block_i/mlp/fc1, fc2

Checked against the official code (bytedance/1d-tokenizer @ 942a96f, turingmotors/One-D-Piece @ 473665d, with
tools/make_titok_fixtures.py): `official_shapes` of the three releases equals the state dict of the official
`TiTok` built from their configs/infer/TiTok yaml (`--check-releases`; 411-459 keys); for titok_s128, titok_b64
and one_d_piece_s256 with random weights, `to_official(convert(state_dict))` is the state dict exactly and loads
with strict=True, and the converted models reproduce the official indices and reconstructions (`--parity`; the
figures are in mixtok/tokenizers/titok.py's docstring). tests/interop/test_titok_import.py checks golden outputs
of tiny official models (tests/fixtures/titok) without torch. No released checkpoint was downloaded here.
"""

import functools
import sys
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.interop.official import build_table, command_line, freeze, state_dict_from_variables
from mixtok.interop.official import variables_from_state_dict as _variables_from_state_dict
from mixtok.interop.weight_files import load_state_dict, load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.registry import unknown_name_error
from mixtok.tokenizers.registry import tokenizer_spec
from mixtok.tokenizers.titok import TiTok
from mixtok.tokenizers.titok_variants import VARIANTS, VIT_SIZES

__all__ = [
    "convert",
    "create",
    "load_state_dict",
    "load_variables",
    "main",
    "official_shapes",
    "resolve_name",
    "save_variables",
    "to_official",
    "tokenizer_kwargs",
]

HF_OWNER = "yucornetto/"


def _release(encoder: str, decoder: str, tokens: int) -> dict[str, Any]:
    (enc_width, enc_depth, enc_heads), (dec_width, dec_depth, dec_heads) = VIT_SIZES[encoder], VIT_SIZES[decoder]
    return dict(
        image_size=256,
        patch_size=16,
        encoder_width=enc_width,
        encoder_depth=enc_depth,
        encoder_heads=enc_heads,
        decoder_width=dec_width,
        decoder_depth=dec_depth,
        decoder_heads=dec_heads,
        num_latent_tokens=tokens,
        quantizer={"name": "vq", "codebook_size": 8192, "code_dim": 64, "l2_normalize": False, "beta": 0.25},
    )


# The released single-stage VQ tokenizers: configs/infer/TiTok/titok_{bl64,bl128,sl256}_vq8k.yaml.
RELEASES = {
    "tokenizer_titok_bl64_vq8k_imagenet": _release("base", "large", 64),
    "tokenizer_titok_bl128_vq8k_imagenet": _release("base", "large", 128),
    "tokenizer_titok_sl256_vq8k_imagenet": _release("small", "large", 256),
}
# Released, but not convertible: why, in one line.
_LEGACY = (
    "a legacy two-stage model (a decoder head over 1024 MaskGIT-VQGAN proxy codes and a frozen MaskGIT-VQGAN "
    "pixel decoder), which mixtok's single-stage RGB TiTok does not implement"
)
_VAE = "a VAE tokenizer (quantize_mode: vae, no codebook), which mixtok's VQ TiTok does not implement"
REFUSED = {
    **{f"tokenizer_titok_{size}_imagenet": _LEGACY for size in ("l32", "b64", "s128")},
    **{f"turing-motors/One-D-Piece-{size}-256": _LEGACY for size in ("S", "B", "L")},
    **{f"tokenizer_titok_{size}_vae_c16_imagenet": _VAE for size in ("ll32", "bl64", "bl128")},
}
# Official keys that only a legacy two-stage state dict has.
LEGACY_KEY_PREFIXES = ("pixel_decoder.", "pixel_quantize.", "decoder.ffn.2.")
# 1x1 Conv2d weights [out, in, 1, 1] that mixtok holds as Dense kernels [in, out].
ONE_BY_ONE_CONVS = ("encoder.conv_out.weight", "decoder.ffn.0.weight")
CLI_DESCRIPTION = (
    "Converts an official single-stage TiTok state dict (bytedance/1d-tokenizer; a Hugging Face model.safetensors "
    "or a .bin / .pth) to mixtok variables (flax msgpack; read them back with mixtok.interop.titok.load_variables). "
    "Exit codes: 0 written, 2 bad input or arguments."
)
CLI_NAME_HELP = (
    f"a released single-stage tokenizer ({', '.join(RELEASES)}) or a mixtok variant ({', '.join(sorted(VARIANTS))})"
)
CLI_CHECKPOINT_HELP = "the official state dict (.safetensors; .bin / .pth need torch)"


def resolve_name(name: str) -> str:
    """The canonical name for a release (`tokenizer_titok_sl256_vq8k_imagenet`, with or without `yucornetto/`)
    or a mixtok variant (`titok_s128`); legacy / VAE releases and unknown names raise a one-line ValueError."""
    bare = name[len(HF_OWNER) :] if name.startswith(HF_OWNER) else name
    if bare in RELEASES or bare in VARIANTS:
        return bare
    if name in REFUSED or bare in REFUSED:
        raise ValueError(
            f"{name} is {REFUSED.get(name) or REFUSED[bare]}; convertible releases: {', '.join(RELEASES)}."
        )
    raise unknown_name_error("TiTok name", name, list(RELEASES) + list(VARIANTS))


def tokenizer_kwargs(name_or_kwargs: str | Mapping[str, Any]) -> dict[str, Any]:
    """mixtok `TiTok` keyword arguments for a name (see `resolve_name`) or a dict of them (returned as a copy)."""
    if isinstance(name_or_kwargs, Mapping):
        return dict(name_or_kwargs)
    name = resolve_name(name_or_kwargs)
    return dict(RELEASES[name]) if name in RELEASES else dict(tokenizer_spec(name).kwargs)


def create(name_or_kwargs: str | Mapping[str, Any], **overrides) -> TiTok:
    """The mixtok `TiTok` that `convert(name_or_kwargs, ...)` makes variables for."""
    return TiTok(**{**tokenizer_kwargs(name_or_kwargs), **overrides})


def _label(name_or_kwargs) -> str:
    return name_or_kwargs if isinstance(name_or_kwargs, str) else "TiTok(**kwargs)"


def _official_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    weight = {"kernel": "weight", "scale": "weight"}.get(leaf_name, leaf_name)
    if not module:  # latent_tokens
        return leaf_name, "same"
    if module == ["quantize"]:
        return "quantize.embedding.weight", "same"
    half, rest = module[0], module[1:]
    if not rest:  # the half's own embeddings
        return f"{half}.{leaf_name}", "same"
    if rest[0] == "transformer":
        block = rest[1].removeprefix("block_")
        parts = {"fc1": ["mlp", "c_fc"], "fc2": ["mlp", "c_proj"]}.get(rest[-1], rest[2:])
        if rest[2:] == ["attn", "in_proj"]:
            return f"{half}.transformer.{block}.attn.in_proj_{weight}", "linear" if leaf_name == "kernel" else "same"
        key = ".".join([half, "transformer", block, *parts, weight])
    elif rest == ["ffn"]:
        key = f"{half}.ffn.0.{weight}"
    else:
        key = ".".join([half, *rest, weight])
    layout = ("conv" if len(leaf.shape) == 4 else "linear") if leaf_name == "kernel" else "same"
    return key, layout


@functools.lru_cache(maxsize=16)
def _table(frozen_kwargs: tuple):
    model = TiTok(**{k: dict(v) if k == "quantizer" else v for k, v in frozen_kwargs})
    size = model.image_size
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    )
    return build_table({"params": shapes["params"]}, _official_key)


def _kwargs_and_table(name_or_kwargs, overrides):
    kwargs = {**tokenizer_kwargs(name_or_kwargs), **overrides}
    if "quantizer" not in kwargs or dict(kwargs["quantizer"]).get("name") != "vq":
        raise ValueError(
            f"mixtok.interop.titok converts VQ TiTok state dicts; quantizer={kwargs.get('quantizer')!r} is not a VQ."
        )
    return kwargs, _table(freeze(kwargs))


def _refusal(arrays: Mapping[str, Any]) -> str | None:
    legacy = sorted(k for k in arrays if k.startswith(LEGACY_KEY_PREFIXES))
    if legacy:
        return (
            f"the state dict is {_LEGACY} (it has {legacy[0]} and {len(legacy) - 1} more such keys); "
            f"convertible releases: {', '.join(RELEASES)}."
        )
    return None


def _hint(arrays: Mapping[str, Any]) -> str:
    if arrays and "quantize.embedding.weight" not in arrays:
        return f" It has no quantize.embedding.weight: {_VAE}?"
    return ""


def convert(
    name_or_kwargs: str | Mapping[str, Any], state_dict: Mapping[str, Any], *, num_classes=None, **overrides
) -> dict[str, Any]:
    """mixtok variables {'params': nested float32 numpy arrays} from an official (single-stage VQ) TiTok state dict.

    `name_or_kwargs`: a release or mixtok variant name (`resolve_name`) or `TiTok` keyword arguments;
    `overrides` replace some of them. `state_dict`: `TiTok(...).state_dict()` or a file's contents
    (`load_state_dict`), values numpy arrays or torch tensors; {'state_dict' / 'model': ...} wrappers and
    'module.' prefixes are removed. Raises one ValueError: a legacy two-stage state dict in one line, else
    every unexpected key, missing key and wrong shape. (`num_classes` exists for the shared command line; a
    tokenizer has none.)
    """
    if num_classes is not None:
        raise ValueError(f"num_classes={num_classes}: a TiTok tokenizer has no classifier; leave it out.")
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict).items()}
    refusal = _refusal(arrays)
    if refusal:
        raise ValueError(refusal)
    kwargs, table = _kwargs_and_table(name_or_kwargs, overrides)
    for key in ONE_BY_ONE_CONVS:
        if key in arrays and arrays[key].ndim == 4 and arrays[key].shape[2:] == (1, 1):
            arrays[key] = arrays[key][:, :, 0, 0]
    settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return _variables_from_state_dict(
        table,
        arrays,
        f"The TiTok state dict does not fit mixtok's {_label(name_or_kwargs)} ({settings})",
        hint=_hint(arrays),
    )


def to_official(name_or_kwargs: str | Mapping[str, Any], variables: Mapping[str, Any], **overrides) -> dict:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    The official `TiTok(config)` with the matching config (is_legacy False, finetune_decoder False, VQ)
    loads it with `load_state_dict({k: torch.from_numpy(v) ...}, strict=True)`.
    """
    if "params" not in variables:
        raise ValueError(f"to_official takes variables {{'params': ...}}; got a mapping with keys {sorted(variables)}.")
    kwargs, table = _kwargs_and_table(name_or_kwargs, overrides)
    settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    state_dict = state_dict_from_variables(
        table,
        {"params": nn.meta.unbox(variables["params"])},
        f"The variables do not fit mixtok's {_label(name_or_kwargs)} ({settings})",
    )
    for key in ONE_BY_ONE_CONVS:
        state_dict[key] = np.ascontiguousarray(state_dict[key][:, :, None, None])
    return state_dict


def official_shapes(name_or_kwargs: str | Mapping[str, Any], **overrides) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the state dict that `convert` takes (no weights are made)."""
    _, table = _kwargs_and_table(name_or_kwargs, overrides)
    return {e.key: e.official_shape + ((1, 1) if e.key in ONE_BY_ONE_CONVS else ()) for e in table}


def cli_summary(variables: dict[str, Any]) -> str:
    params = variables["params"]
    tokens = params["latent_tokens"].shape[0]
    codes, dim = params["quantize"]["codebook"].shape
    return f" ({tokens} tokens, {codes} x {dim} codebook)"


main = command_line(__name__)  # python -m mixtok.interop.titok --help; see official.command_line


if __name__ == "__main__":
    sys.exit(main())
