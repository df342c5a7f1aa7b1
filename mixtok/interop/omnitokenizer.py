"""Converts official OmniTokenizer state dicts (FoundationVision/OmniTokenizer) to mixtok's `OmniTokenizer` and back.

    state_dict = load_state_dict("imagenet_ucf_vae.ckpt")          # a Lightning checkpoint ({"state_dict": ...})
    variables = convert("omnitokenizer_vq", state_dict)          # {"params": ..., "quantizer_state": ...}
    tokenizer = create("omnitokenizer_vq")
    out = tokenizer.apply(variables, clip)                        # [B, 1 + 4k, H, W, 3] in [-1, 1]

or from the shell: `python -m mixtok.interop.omnitokenizer omnitokenizer_vq CKPT OUT.msgpack` (exit code 0 when
written, 2 for bad input; mixtok.interop.official.run_cli).

Names: mixtok's variants (mixtok/tokenizers/omnitokenizer_variants.py) or a dict of `OmniTokenizer` keyword
arguments. The `VQGAN` state dict's discriminators and LPIPS network (`image_discriminator.*`,
`video_discriminator.*`, `perceptual_model.*`), its LayerNorm beta buffers (always zero), the window
attention's `relative_position_index` (a constant) and `codebook.codebook_usage` (a logging EMA) are dropped;
every other key must fit. The EMA codebook's buffers go to the `quantizer_state` collection.

Released checkpoints (README.md: imagenet_only.ckpt, imagenet_k600.ckpt, imagenet_ucf_vae.ckpt, ... on Hugging Face
`Daniel0724/OmniTokenizer`) are Lightning checkpoints whose `hyper_parameters` hold the training arguments:
pick (or override) the variant whose temporal patch, spatial_pos and quantizer match them. None was downloaded
here, so which release fits which variant is not checked; a mismatch is reported key by key.

Keys (official <-> mixtok; {enc,dec}: `encoder.enc_spatial_transformer` <-> `encoder_spatial`, likewise
`encoder.enc_temporal_transformer`, `decoder.dec_temporal_transformer`, `decoder.dec_spatial_transformer`):

    encoder.to_patch_emb_first_frame.{1,2,3}   patch_embed_first_frame/{norm_in, proj, norm_out}
    encoder.to_patch_emb.{1,2,3}               patch_embed/{norm_in, proj, norm_out}
    <transformer>.layers.i.0.dsconv [C,1,3,3,3]  <transformer>/layer_i_peg/dsconv/kernel [3,3,3,1,C]
    <transformer>.layers.i.1.{norm.gamma, context_norm.gamma, to_q, to_kv, to_out, q_scale, k_scale, null_kv,
        spatial_rel_pos_bias.net.{0.0, 1.0, 2}}   <transformer>/layer_i_attn/{norm/scale, context_norm_gamma, ...,
        spatial_rel_pos_bias/net_{0,1,2}}
    <transformer>.layers.i.1.{norm.gamma, relative_position_bias_table, qkv, proj}   ('w' layers)
        <transformer>/layer_i_attn/{norm/scale, relative_position_bias_table, attn/qkv, attn/proj}
    <transformer>.layers.i.3.{0, 1, 4}         <transformer>/layer_i_ff/{norm, proj_in, proj_out}
    <transformer>.norm_out.gamma               <transformer>/norm_out/scale
    pre_vq_conv.1, post_vq_conv.1              pre_quant, post_quant
    decoder.to_pixels_first_frame.0, decoder.to_pixels.0   to_pixels_first_frame/proj, to_pixels/proj
    codebook.embeddings, .N, .z_avg            quantizer_state: quantize/codebook, cluster_size, embed_sum

Parity (tools/make_omnitokenizer_fixtures.py --parity, PyTorch 2.14 on the CPU, official code unmodified except
that `beartype` and fairscale's `checkpoint_wrapper`, imported but not needed, are replaced by stand-ins): the
official `OmniTokenizer_Encoder` / `_Decoder`, pre / post Linear and `Codebook` at the official widths (dim 512,
heads 8, dim_head 64, spatial / temporal depth 4, ff_mult 4, "ttww" / "tttt", window 8, patch 8, temporal
patch 4, 8192 x 8 codes), every weight random (the tool's `randomize`), converted, and both run in eval mode in
float32 on a 64 x 64 image and a 5-frame 64 x 64 clip (batch 2, U(-1, 1)). Results on 2026-12-07 are
in `PARITY` below (max-abs reconstruction difference, and whether all code indices are equal).
tests/tokenizers/test_omnitokenizer.py checks the golden outputs of tiny official models (tests/fixtures/
omnitokenizer) without torch.
"""

import functools
import re
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
from mixtok.tokenizers.omnitokenizer import OmniTokenizer
from mixtok.tokenizers.registry import tokenizer_spec

__all__ = ["convert", "create", "load_state_dict", "load_variables", "main", "save_variables", "to_official"]

TRANSFORMERS = {
    "encoder_spatial": "encoder.enc_spatial_transformer",
    "encoder_temporal": "encoder.enc_temporal_transformer",
    "decoder_temporal": "decoder.dec_temporal_transformer",
    "decoder_spatial": "decoder.dec_spatial_transformer",
}
EMBEDDINGS = {"patch_embed_first_frame": "encoder.to_patch_emb_first_frame", "patch_embed": "encoder.to_patch_emb"}
PIXELS = {"to_pixels_first_frame": "decoder.to_pixels_first_frame.0", "to_pixels": "decoder.to_pixels.0"}
STATE = {"codebook": "codebook.embeddings", "cluster_size": "codebook.N", "embed_sum": "codebook.z_avg"}
DROPPED = re.compile(
    r"^(image_discriminator|video_discriminator|perceptual_model)\.|\.beta$|relative_position_index$"
    r"|^codebook\.codebook_usage$"
)
PEG_KERNEL = re.compile(r"\.layers\.\d+\.0\.dsconv\.weight$")
# The 5-D Conv3d weight [C, 1, 3, 3, 3] <-> flax [3, 3, 3, 1, C]; moved before / after the table, whose
# layouts are 2-D and 4-D.
_PEG_AXES = (2, 3, 4, 1, 0)

CLI_DESCRIPTION = "Convert an official OmniTokenizer checkpoint to mixtok variables (.msgpack)."
CLI_NAME_HELP = "a mixtok OmniTokenizer variant (omnitokenizer_vq_stage1, omnitokenizer_vq, omnitokenizer_kl)"

# Measured by tools/make_omnitokenizer_fixtures.py --parity (module docstring), 2026-12-07, seed 0: the largest
# max-abs difference of the reconstructions (|reconstruction| reaches 3.5-4.7) over the image and the clip, of
# the pre-quantizer features, and whether every code index is equal.
PARITY = {
    # variant, position_biases False / True: reconstruction, features, indices
    "omnitokenizer_vq": "recon 7.4e-6 / 7.8e-6, features 6.4e-6 / 5.9e-6, indices equal",
    "omnitokenizer_vq_stage1": "recon 6.4e-6 / 6.5e-6, features 5.5e-6 / 5.7e-6, indices equal",
    "omnitokenizer_kl": "recon 1.1e-5 / 1.4e-5, features 6.3e-6 / 6.0e-6 (the posterior mean decoded)",
    # the official causal `Attention` with num_null_kv=2 (einsum path, ALiBi), dim 16, against OmniAttention
    "attention with 2 null key/values": "max-abs 6.0e-7",
    # the official encoder (tiny, random) with pixel frame 3 negated: its latent frames 0-1 change (the temporal
    # PEG's reshape, mixtok/tokenizers/omnitokenizer_layers.py `PEG`), i.e. the official encoder is not causal
    "official temporal leak": "latent frames 0-1 change by up to 3.0",
}


def resolve_name(name: str) -> str:
    tokenizer_spec(name)  # a ValueError listing close names if unknown
    return name


def tokenizer_kwargs(name_or_kwargs: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(name_or_kwargs, str):
        spec = tokenizer_spec(name_or_kwargs)
        if spec.cls is not OmniTokenizer:
            raise ValueError(f"{name_or_kwargs} is a {spec.cls.__name__}, not an OmniTokenizer variant.")
        return dict(spec.kwargs)
    return dict(name_or_kwargs)


def create(name_or_kwargs: str | Mapping[str, Any], **overrides) -> OmniTokenizer:
    """The mixtok `OmniTokenizer` that `convert(name_or_kwargs, ...)` makes variables for."""
    return OmniTokenizer(**{**tokenizer_kwargs(name_or_kwargs), **overrides})


def _layer_key(prefix: str, rest: list[str], leaf: str) -> str:
    layer, part = re.fullmatch(r"layer_(\d+)_(peg|attn|ff)", rest[0]).groups()
    base = f"{prefix}.layers.{layer}"
    weight = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
    inner = rest[1:]
    if part == "peg":
        return f"{base}.0.dsconv.{weight}"
    if part == "ff":
        return f"{base}.3.{ {'norm': 0, 'proj_in': 1, 'proj_out': 4}[inner[0]] }.{weight}"
    if inner == ["norm"]:
        return f"{base}.1.norm.gamma"
    if not inner:
        return f"{base}.1.{'context_norm.gamma' if leaf == 'context_norm_gamma' else leaf}"
    if inner[0] == "attn":  # window attention's qkv / proj
        return f"{base}.1.{inner[1]}.{weight}"
    if inner[0] == "spatial_rel_pos_bias":
        net = {"net_0": "net.0.0", "net_1": "net.1.0", "net_2": "net.2"}[inner[1]]
        return f"{base}.1.spatial_rel_pos_bias.{net}.{weight}"
    return f"{base}.1.{inner[0]}.{weight}"  # to_q, to_kv, to_out


def _official_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    if collection != "params":
        return STATE[path[-1]], "same"
    head, *rest, name = path
    weight = {"kernel": "weight", "scale": "weight"}.get(name, name)
    layout = "linear" if name == "kernel" and len(leaf.shape) == 2 else "same"
    if head in TRANSFORMERS:
        if rest == ["norm_out"]:
            return f"{TRANSFORMERS[head]}.norm_out.gamma", "same"
        return _layer_key(TRANSFORMERS[head], rest, name), layout
    if head in EMBEDDINGS:
        return f"{EMBEDDINGS[head]}.{ {'norm_in': 1, 'proj': 2, 'norm_out': 3}[rest[0]] }.{weight}", layout
    if head in PIXELS:
        return f"{PIXELS[head]}.{weight}", layout
    return f"{ {'pre_quant': 'pre_vq_conv', 'post_quant': 'post_vq_conv'}[head] }.1.{weight}", layout


@functools.lru_cache(maxsize=16)
def _table(frozen_kwargs: tuple):
    model = OmniTokenizer(**{k: dict(v) if k == "quantizer" else v for k, v in frozen_kwargs})
    p = model.patch_size * model.window_size
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, p, p, 3))))
    return build_table(dict(shapes), _official_key)


def _kwargs_and_table(name_or_kwargs, overrides):
    kwargs = {**tokenizer_kwargs(name_or_kwargs), **overrides}
    return kwargs, _table(freeze(kwargs))


def convert(
    name_or_kwargs: str | Mapping[str, Any], state_dict: Mapping[str, Any], *, num_classes=None, **overrides
) -> dict[str, Any]:
    """mixtok variables from an official `VQGAN` (OmniTokenizer) state dict, numpy arrays or torch tensors.

    One ValueError lists every unexpected, missing and wrong-shape key.
    """
    if num_classes is not None:
        raise ValueError(f"num_classes={num_classes}: a tokenizer has no classifier; leave it out.")
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict).items() if not DROPPED.search(k)}
    for key in [k for k in arrays if PEG_KERNEL.search(k) and arrays[k].ndim == 5]:
        arrays[key] = arrays[key].transpose(_PEG_AXES)
    kwargs, table = _kwargs_and_table(name_or_kwargs, overrides)
    label = name_or_kwargs if isinstance(name_or_kwargs, str) else "OmniTokenizer(**kwargs)"
    return _variables_from_state_dict(table, arrays, f"The OmniTokenizer state dict does not fit mixtok's {label}")


def to_official(name_or_kwargs: str | Mapping[str, Any], variables: Mapping[str, Any], **overrides) -> dict:
    """The official state dict (without the dropped buffers) from mixtok variables; the inverse of `convert`."""
    kwargs, table = _kwargs_and_table(name_or_kwargs, overrides)
    state_dict = state_dict_from_variables(table, nn.meta.unbox(dict(variables)), "The variables do not fit")
    for key in [k for k in state_dict if PEG_KERNEL.search(k)]:
        state_dict[key] = np.ascontiguousarray(state_dict[key].transpose(np.argsort(_PEG_AXES)))
    return state_dict


main = command_line(__name__)

if __name__ == "__main__":
    sys.exit(main())
