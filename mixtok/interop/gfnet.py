"""Converts the official GFNet checkpoints (raoyongming/GFNet) to mixtok variables and back.

    state_dict = load_state_dict("gfnet-h-ti.pth")     # {'model': ...} is unwrapped
    variables = convert("gfnet_h_ti", state_dict)      # {'params': ...} of create_model("gfnet_h_ti")
    logits = create_model("gfnet_h_ti").apply(variables, images_nhwc)

or once, from the shell (then `load_variables(OUTPUT)`):

    python -m mixtok.interop.gfnet gfnet-h-ti gfnet-h-ti.pth gfnet_h_ti.msgpack

The checkpoints are the state dicts of gfnet.py's `GFNet` / `GFNetPyramid` as main_gfnet.py saves
them ({'model': state_dict, 'optimizer': ..., 'args': ...}; infer.py loads `checkpoint['model']`).
Names are mixtok's (`gfnet_h_ti`) or main_gfnet.py's `--arch` (`gfnet-h-ti`). Official keys and
mixtok paths (i: block, s: stage, j: block in the stage):

    patch_embed.proj.{weight,bias}       patch_embed/conv/{kernel,bias}   (isotropic; conv OIHW -> HWIO)
    patch_embed.0.proj.*                 patch_embed/conv/*               (pyramid)
    patch_embed.s.proj.* (s = 1..3)      downsample_s/conv/*              (pyramid DownLayer)
    pos_embed [1, h * w, C]              pos_embed/pos_embed [1, h, w, C] (row-major tokens, as flatten(2))
    blocks.i.* / blocks.s.j.*            blocks_i/* / stages_s_blocks_j/*
      norm1, norm2 .weight / .bias         norm1, norm2 /scale, /bias
      filter.complex_weight [h, w//2+1, C, 2]   filter/complex_weight, the same array (real, imaginary)
      mlp.fc1, mlp.fc2 .weight [out, in]   mlp/fc1, mlp/fc2 /kernel [in, out]
      gamma [C]                            layer_scale/scale                (pyramid BlockLayerScale)
    norm.weight / norm.bias              head/norm/scale, head/norm/bias
    head.weight / head.bias              head/fc/kernel, head/fc/bias

Resolution. The released models are 224 px; a checkpoint fine-tuned at another size (main_gfnet.py
`--input-size 384 --finetune`) has a larger position embedding and filters, and `convert` builds the
model with the `image_size` its position embedding implies (pass `image_size=` to override). The class
count is read from head.weight (`num_classes=` overrides; no head: 0). Other create_model
arguments (depths, dims, ...) pass through `**overrides` for non-standard checkpoints.

Checked against the official code (gfnet.py @ 2de48b6, unmodified, with main_gfnet.py's arguments):
random weights (filters and position embedding N(0, 1), so that no branch is negligible) saved as
main_gfnet.py saves them ({'model', 'epoch', 'args'} .pth) and converted by the command line give
eval logits within 1.6e-6 of the official ones (9e-7 of the largest logit) for all seven variants at
224 px, and for gfnet_xs and gfnet_h_ti checkpoints shaped for 384 px. The bound covers the largest
errors measured: over five seeds per variant (weights randomised as tools/make_gfnet_fixtures.py does,
a batch of two N(0, 1) images, `convert` of the state dict, float32 on the CPU; 2026-12-07) they were
7.2e-7 (gfnet_ti, gfnet_xs), 8.3e-7 (gfnet_s), 1.07e-6 (gfnet_h_s), 1.31e-6 (gfnet_b) and 1.43e-6
(gfnet_h_ti, gfnet_h_b), at most 8.8e-7 of the largest logit; an earlier run saw 1.55e-6. Swapping a filter's real
and imaginary parts, or transposing the position grid, moves them by 0.07 to 1.5. `to_official`
of the result equals the official state dict exactly and loads with strict=True.
"""

import functools
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.interop.official import (
    build_table,
    command_line,
    freeze,
    state_dict_from_variables,
    variables_from_state_dict,
)
from mixtok.interop.weight_files import load_state_dict, load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.models import create_model, list_models, model_spec
from mixtok.models.gfnet import GFNetPyramid
from mixtok.registry import unknown_name_error

__all__ = [
    "convert",
    "load_state_dict",
    "load_variables",
    "main",
    "official_shapes",
    "resolve_name",
    "save_variables",
    "to_official",
]

PYRAMID_PATCH_SIZE = 4  # the first stage's stride, which the pyramid's position embedding has a row per
PYRAMID_STRIDE = 32  # its last stage's: the image side must be a multiple of it
WRAPPER_KEYS = ("model", "state_dict")
CLI_DESCRIPTION = (
    "Converts an official GFNet checkpoint (raoyongming/GFNet, .pth) to mixtok variables (flax msgpack; read "
    "them back with mixtok.interop.gfnet.load_variables)."
)
CLI_NAME_HELP = "gfnet_ti, gfnet_xs, gfnet_s, gfnet_b, gfnet_h_ti, gfnet_h_s, gfnet_h_b (or the official --arch)"


def resolve_name(name: str) -> str:
    """The mixtok name for a mixtok name (`gfnet_h_ti`) or an official `--arch` (`gfnet-h-ti`)."""
    variants = list_models("gfnet_*")
    mixtok_name = name.replace("-", "_")
    if mixtok_name in variants:
        return mixtok_name
    raise unknown_name_error("GFNet variant", name, variants + [n.replace("_", "-") for n in variants])


def _is_pyramid(name: str) -> bool:
    return model_spec(name).cls is GFNetPyramid


def _official_key(pyramid: bool, collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    weight = {"kernel": "weight", "scale": "weight"}.get(leaf_name, leaf_name)
    layout = ("conv" if len(leaf.shape) == 4 else "linear") if leaf_name == "kernel" else "same"
    top = module[0]
    if top == "pos_embed":
        return "pos_embed", "tokens"
    if top == "head":
        parts = ["norm"] if module[1] == "norm" else ["head"]
    elif top == "patch_embed":
        parts = ["patch_embed", "0", "proj"] if pyramid else ["patch_embed", "proj"]
    elif match := re.fullmatch(r"downsample_(\d+)", top):
        parts = ["patch_embed", match[1], "proj"]
    elif match := re.fullmatch(r"blocks_(\d+)", top):
        parts = ["blocks", match[1], *module[1:]]
    elif match := re.fullmatch(r"stages_(\d+)_blocks_(\d+)", top):
        parts = ["blocks", match[1], match[2], *module[1:]]
    else:
        raise AssertionError(f"mixtok's GFNet has a variable {'/'.join(path)} that the importer does not know.")
    if parts[-1] == "layer_scale":  # BlockLayerScale's bare parameter
        return ".".join(parts[:-1] + ["gamma"]), "same"
    return ".".join(parts + [weight]), layout


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]):
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    # The parameters have the shapes of `image_size` whatever the input, so the smallest input will do.
    stride = PYRAMID_STRIDE if isinstance(model, GFNetPyramid) else model.patch_size
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, stride, stride, 3), jnp.float32))
    )
    return build_table({"params": shapes["params"]}, functools.partial(_official_key, _is_pyramid(name)))


def _token_stride(name: str, overrides: Mapping[str, Any]) -> int:
    if _is_pyramid(name):
        return PYRAMID_PATCH_SIZE
    return overrides.get("patch_size", model_spec(name).kwargs.get("patch_size", 16))


def _image_size_of_tokens(name: str, tokens: int, overrides: Mapping[str, Any]) -> int | None:
    """The image side whose token grid has `tokens` entries; None when no size fits the model (the
    shape check then reports the position embedding)."""
    grid = math.isqrt(tokens)
    image_size = grid * _token_stride(name, overrides)
    total_stride = PYRAMID_STRIDE if _is_pyramid(name) else _token_stride(name, overrides)
    return image_size if grid * grid == tokens and grid > 0 and image_size % total_stride == 0 else None


def _hint(arrays: Mapping[str, Any], name: str) -> str:
    """A guess at why a state dict does not fit: an isotropic checkpoint for a pyramid name, or the reverse."""
    pyramid_keys = any(re.match(r"blocks\.\d+\.\d+\.", k) for k in arrays)
    isotropic_keys = any(re.match(r"blocks\.\d+\.[a-z]", k) for k in arrays)
    if _is_pyramid(name) and isotropic_keys and not pyramid_keys:
        return " Its keys are an isotropic GFNet's (blocks.i.*), not a GFNet-H's (blocks.s.j.*): check the model name."
    if not _is_pyramid(name) and pyramid_keys and not isotropic_keys:
        return " Its keys are a GFNet-H's (blocks.s.j.*), not an isotropic GFNet's (blocks.i.*): check the model name."
    return ""


def convert(name: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None, **overrides) -> dict[str, Any]:
    """mixtok variables {'params': nested float32 numpy arrays} from an official GFNet state dict.

    `name`: `gfnet_ti` ... `gfnet_h_b` or the official `gfnet-ti` ... `gfnet-h-b`. `state_dict`: the
    model's state dict or a checkpoint that wraps it ({'model': ...}; 'module.' prefixes are
    dropped), values numpy arrays or torch tensors. `num_classes=None` reads the class count from
    head.weight; `image_size` defaults to the one the position embedding implies; `overrides` go to
    `create_model`. Raises one ValueError listing every unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict).items()}
    if num_classes is None:
        num_classes = int(arrays["head.weight"].shape[0]) if "head.weight" in arrays else 0
    if "image_size" not in overrides:
        tokens = arrays["pos_embed"].shape[1] if "pos_embed" in arrays and arrays["pos_embed"].ndim == 3 else 0
        spec = model_spec(model_name)
        overrides["image_size"] = _image_size_of_tokens(model_name, tokens, overrides) or spec.kwargs.get(
            "image_size", spec.cls.image_size
        )
    table = _table(model_name, num_classes, freeze(overrides))
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    return variables_from_state_dict(
        table,
        arrays,
        f"The GFNet state dict does not fit mixtok's {model_name} ({settings})",
        hint=_hint(arrays, model_name),
    )


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, Any]:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    `GFNet(...)` / `GFNetPyramid(...)` as main_gfnet.py builds them (with the matching `image_size`)
    load it with `load_state_dict({k: torch.from_numpy(v) ...}, strict=True)`.
    """
    model_name = resolve_name(name)
    if "params" not in variables:
        raise ValueError(f"to_official takes variables {{'params': ...}}; got a mapping with keys {sorted(variables)}.")
    params = nn.meta.unbox(variables["params"])
    kernel = params.get("head", {}).get("fc", {}).get("kernel")
    num_classes = 0 if kernel is None else int(kernel.shape[-1])
    embedding = params.get("pos_embed", {}).get("pos_embed")
    if "image_size" not in overrides and embedding is not None and len(embedding.shape) == 4:
        overrides["image_size"] = int(embedding.shape[1]) * _token_stride(model_name, overrides)
    table = _table(model_name, num_classes, freeze(overrides))
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    return state_dict_from_variables(
        table, {"params": params}, f"The variables do not fit mixtok's {model_name} ({settings})"
    )


def official_shapes(name: str, *, num_classes: int = 1000, **overrides) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the state dict that `convert` takes for `name` (no weights are made)."""
    return {e.key: e.official_shape for e in _table(resolve_name(name), num_classes, freeze(overrides))}


def cli_summary(variables: dict[str, Any]) -> str:
    params = variables["params"]
    classes = params["head"]["fc"]["kernel"].shape[-1] if "fc" in params["head"] else 0
    grid = params["pos_embed"]["pos_embed"].shape[1]
    return f" ({classes} classes, {grid} x {grid} position embedding)"


main = command_line(__name__)  # python -m mixtok.interop.gfnet --help; see official.command_line


if __name__ == "__main__":
    sys.exit(main())
