"""Converts official LARP state dicts (hywang66/LARP `LARPTokenizer`) to mixtok's `LARP` and `LARPPrior`, and back.

    state_dict = load_state_dict("model.safetensors")      # e.g. a Hugging Face hywang66/LARP-L-long-tokenizer file
    variables = convert("larp_l_long", state_dict)         # the tokenizer's {'params': ...}
    prior_variables = convert_prior("gptc-S", state_dict)  # the prior trained beside it (keys prior_model.*)
    tokenizer = create_tokenizer("larp_l_long")

or once, from the shell (the tokenizer only; then `load_variables(OUTPUT)`):

    python -m mixtok.interop.larp larp_l_long model.safetensors larp_l_long.msgpack

(exit code 0 when written; 2 for bad input or arguments, one `error:` line on stderr; official.run_cli.)

Keys (official <-> mixtok; i: block; mixtok/tokenizers/larp.py):

    x_embedder.proj.weight [D, 3, pt, p, p]    patch_embed/kernel [3 pt p p, D]   (Conv3d over whole patches)
    x_embedder.proj.bias                       patch_embed/bias
    encoder_latent_query_embed                 the same
    decoder_patch_query_token_type_embed       the same
    {encoder,decoder}.blocks.i.norm1 / norm2 .weight / .bias      {encoder,decoder}/blocks_i/norm1, norm2 /scale, /bias
    {encoder,decoder}.blocks.i.attn.qkv.weight, attn.proj.*       .../attn/qkv/kernel, attn/proj/*
    {encoder,decoder}.blocks.i.mlp.fc1.*, mlp.fc2.*               .../mlp/fc1, mlp/fc2
    bottleneck.in_linear.*, bottleneck.out_linear.*               in_linear, out_linear
    bottleneck.regularizer.embedding.weight    quantize/codebook
    final_layer.norm_final.*, final_layer.linear.*                the same
    encoder_patch_pe, decoder_latent_pe, decoder_patch_query_embed   buffers: mixtok computes these sin-cos tables;
                                               `convert` checks them against its own (atol 1e-5) and drops them

The prior (`convert_prior`, keys prior_model.*; mixtok/tokenizers/larp_prior.py):

    prior_model.input_proj.*, .pos_emb, .ln_f.*, .head.*           input_proj, pos_emb, ln_f, head
    prior_model.blocks.i.ln1 / ln2 / attn.{key,query,value,proj}   blocks_i/ln1, ln2, attn/key ...
    prior_model.blocks.i.mlp.0.*, mlp.2.*                          blocks_i/fc1, blocks_i/fc2

Checked against the official code (hywang66/LARP @ 8aaed63, tools/make_larp_fixtures.py --parity): for larp_l_long
with its gptc-S prior and random weights, `to_official(convert(...)) | prior_to_official(convert_prior(...))` is the
official state dict exactly and loads with strict=True, and the converted models reproduce the official codes,
reconstruction and prior logits (figures in mixtok/tokenizers/larp.py). No released checkpoint was downloaded
here (hywang66/LARP-L-long-tokenizer on Hugging Face is saved by PyTorchModelHubMixin; not tried).
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
from mixtok.tokenizers.larp import LARP, sincos_1d, sincos_3d
from mixtok.tokenizers.larp_prior import GPTC_SIZES, LARPPrior, prior_from_size
from mixtok.tokenizers.registry import TOKENIZERS, tokenizer_spec

__all__ = [
    "convert",
    "convert_prior",
    "load_state_dict",
    "load_variables",
    "main",
    "official_buffers",
    "prior_to_official",
    "save_variables",
    "to_official",
]

PATCH_KEY = "x_embedder.proj.weight"
PRIOR_PREFIX = "prior_model."
BUFFERS = ("encoder_patch_pe", "decoder_latent_pe", "decoder_patch_query_embed")
BUFFER_ATOL = 1e-5

CLI_DESCRIPTION = "Convert an official LARP tokenizer checkpoint (hywang66/LARP) into mixtok variables."
CLI_NAME_HELP = "a mixtok LARP variant (larp_l_long)"


def resolve_name(name: str) -> str:
    """A registered LARP variant's name, else a ValueError listing them."""
    names = [n for n in TOKENIZERS.names() if tokenizer_spec(n).cls is LARP]
    if name not in names:
        raise ValueError(f"unknown LARP variant {name!r}; valid: {', '.join(names)}.")
    return name


def tokenizer_kwargs(name_or_kwargs: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(name_or_kwargs, str):
        return dict(tokenizer_spec(resolve_name(name_or_kwargs)).kwargs)
    return dict(name_or_kwargs)


def _leaf(name: str) -> str:
    return {"kernel": "weight", "scale": "weight"}.get(name, name)


def _official_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, name = path
    layout = "linear" if name == "kernel" else "same"
    if not module:  # the learned embeddings
        return name, "same"
    if module == ["patch_embed"]:
        return f"x_embedder.proj.{_leaf(name)}", layout
    if module == ["quantize"]:
        return "bottleneck.regularizer.embedding.weight", "same"
    if module[0] in ("in_linear", "out_linear"):
        return f"bottleneck.{module[0]}.{_leaf(name)}", layout
    if module[0] in ("encoder", "decoder"):
        block = module[1].removeprefix("blocks_")
        return ".".join([module[0], "blocks", block, *module[2:], _leaf(name)]), layout
    return ".".join([*module, _leaf(name)]), layout


def _prior_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, name = path
    layout = "linear" if name == "kernel" else "same"
    if not module:
        return PRIOR_PREFIX + name, "same"
    if module[0].startswith("blocks_"):
        block = module[0].removeprefix("blocks_")
        rest = {"fc1": ["mlp", "0"], "fc2": ["mlp", "2"]}.get(module[-1], module[1:])
        return ".".join([PRIOR_PREFIX + "blocks", block, *rest, _leaf(name)]), layout
    return PRIOR_PREFIX + ".".join([*module, _leaf(name)]), layout


@functools.lru_cache(maxsize=16)
def _table(frozen_kwargs: tuple):
    model = LARP(**{k: dict(v) if k == "quantizer" else v for k, v in frozen_kwargs})
    clip = jax.ShapeDtypeStruct((1, model.frames, model.image_size, model.image_size, 3), jnp.float32)
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), clip))
    return build_table({"params": shapes["params"]}, _official_key)


@functools.lru_cache(maxsize=16)
def _prior_table(frozen_kwargs: tuple):
    prior = LARPPrior(**dict(frozen_kwargs))
    codes = jax.ShapeDtypeStruct((1, 2, prior.code_dim), jnp.float32)
    shapes = nn.meta.unbox(jax.eval_shape(prior.init, jax.random.PRNGKey(0), codes))
    return build_table({"params": shapes["params"]}, _prior_key)


def official_buffers(model: LARP) -> dict[str, np.ndarray]:
    """The official tokenizer's sin-cos buffers for `model`'s sizes (what mixtok computes on the fly)."""
    t, g = model.grid
    return {
        "encoder_patch_pe": sincos_3d(model.encoder_width, t, g)[None],
        "decoder_latent_pe": sincos_1d(model.decoder_width, np.arange(model.num_latent_tokens))[None].astype(
            np.float32
        ),
        "decoder_patch_query_embed": sincos_3d(model.decoder_width, t, g)[None],
    }


def _arrays(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict).items()}


def convert(name_or_kwargs: str | Mapping[str, Any], state_dict: Mapping[str, Any], *, num_classes=None, **overrides):
    """mixtok `LARP` variables {'params': ...} from an official `LARPTokenizer` state dict (prior keys ignored).

    `name_or_kwargs`: a variant name or `LARP` keyword arguments; `overrides` replace some. Raises one ValueError
    listing every unexpected key, missing key and wrong shape, or naming a sin-cos buffer that differs from
    mixtok's (another frame count, size or patch grid than the arguments say).
    """
    if num_classes is not None:
        raise ValueError(f"num_classes={num_classes}: a LARP tokenizer has no classifier; leave it out.")
    kwargs = {**tokenizer_kwargs(name_or_kwargs), **overrides}
    table = _table(freeze(kwargs))
    arrays = _arrays(state_dict)
    if PATCH_KEY in arrays and arrays[PATCH_KEY].ndim == 5:
        arrays[PATCH_KEY] = arrays[PATCH_KEY].reshape(arrays[PATCH_KEY].shape[0], -1)
    for key, expected in official_buffers(LARP(**kwargs)).items():
        if key in arrays:
            found = arrays[key]
            if found.shape != expected.shape or not np.allclose(found, expected, atol=BUFFER_ATOL):
                raise ValueError(
                    f"the state dict's {key} {found.shape} is not the sin-cos table of LARP({kwargs}) "
                    f"{expected.shape}: another clip size or patch grid?"
                )
    settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    ignored = [k for k in arrays if k.startswith(PRIOR_PREFIX)] + list(BUFFERS)
    return _variables_from_state_dict(
        table, arrays, f"The LARP state dict does not fit mixtok's LARP({settings})", ignored=ignored
    )


def to_official(name_or_kwargs: str | Mapping[str, Any], variables: Mapping[str, Any], **overrides) -> dict:
    """The official tokenizer state dict (numpy; buffers included, no prior_model keys) from mixtok variables."""
    kwargs = {**tokenizer_kwargs(name_or_kwargs), **overrides}
    state_dict = state_dict_from_variables(
        _table(freeze(kwargs)), {"params": nn.meta.unbox(variables["params"])}, "The variables do not fit LARP"
    )
    patch = state_dict[PATCH_KEY]
    pt, p = kwargs.get("temporal_patch_size", 4), kwargs.get("patch_size", 8)
    state_dict[PATCH_KEY] = np.ascontiguousarray(patch.reshape(patch.shape[0], -1, pt, p, p))
    state_dict.update(official_buffers(LARP(**kwargs)))
    return state_dict


def _prior_kwargs(size_or_kwargs: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(size_or_kwargs, str):
        return {f: getattr(prior_from_size(size_or_kwargs), f) for f in ("depth", "num_heads", "width")}
    return dict(size_or_kwargs)


def convert_prior(size_or_kwargs: str | Mapping[str, Any], state_dict: Mapping[str, Any]) -> dict:
    """mixtok `LARPPrior` variables from the prior_model.* keys of an official LARP state dict.

    `size_or_kwargs`: a gptc size (GPTC_SIZES: "gptc-S" is LARP's) or `LARPPrior` keyword arguments.
    """
    if isinstance(size_or_kwargs, str) and size_or_kwargs not in GPTC_SIZES:
        raise ValueError(f"unknown gptc size {size_or_kwargs!r}; valid: {', '.join(GPTC_SIZES)}.")
    kwargs = _prior_kwargs(size_or_kwargs)
    arrays = {k: v for k, v in _arrays(state_dict).items() if k.startswith(PRIOR_PREFIX)}
    settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return _variables_from_state_dict(
        _prior_table(freeze(kwargs)), arrays, f"The LARP prior_model keys do not fit LARPPrior({settings})"
    )


def prior_to_official(size_or_kwargs: str | Mapping[str, Any], variables: Mapping[str, Any]) -> dict:
    """The official prior_model.* keys (numpy) from mixtok `LARPPrior` variables; the inverse of convert_prior."""
    kwargs = _prior_kwargs(size_or_kwargs)
    return state_dict_from_variables(
        _prior_table(freeze(kwargs)), {"params": nn.meta.unbox(variables["params"])}, "The variables do not fit"
    )


def cli_summary(variables: dict[str, Any]) -> str:
    params = variables["params"]
    tokens = params["encoder_latent_query_embed"].shape[0]
    codes, dim = params["quantize"]["codebook"].shape
    return f" ({tokens} tokens, {codes} x {dim} codebook)"


main = command_line(__name__)  # python -m mixtok.interop.larp --help; see official.command_line


if __name__ == "__main__":
    sys.exit(main())
