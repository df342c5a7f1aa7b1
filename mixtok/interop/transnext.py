"""Converts the official TransNeXt checkpoints (DaiShiResearch/TransNeXt) to mixtok variables and back.

    state_dict = load_state_dict("transnext_micro_224_1k.pth")   # {'model': ...} is unwrapped
    variables = convert("transnext_micro", state_dict)            # {'params': ...} of create_model(...)
    logits = create_model("transnext_micro").apply(variables, images_nhwc)

or once, from the shell (then `load_variables(OUTPUT)`):

    python -m mixtok.interop.transnext transnext_micro transnext_micro_224_1k.pth transnext_micro.msgpack

The checkpoints are state dicts of classification/transnext.py's `TransNeXt`. The README's released files
(transnext_<size>_224_1k.pth, transnext_<size>_384_1k_ft_1k.pth) are loaded by main.py with
`checkpoint['model'] if 'model' in checkpoint else checkpoint`, and main.py saves {'model': state_dict,
'optimizer': ..., 'lr_scheduler': ..., 'epoch': ..., 'args': ...}; both forms are read. Names are mixtok's
or the official ones, which are the same (`transnext_micro` ... `transnext_base`; `-` for `_` is accepted).
Official keys and mixtok paths (s: stage 1..4, j: block in the stage):

    patch_embed{s}.proj.weight [O, I, k, k]     patch_embed{s}/proj/kernel [k, k, I, O]   (OIHW -> HWIO)
    patch_embed{s}.norm.*, norm{s}.*            patch_embed{s}/norm/*, norm{s}/*  (weight -> scale)
    block{s}.{j}.norm1 / norm2                  block{s}_{j}/norm1 / norm2
    block{s}.{j}.attn.q, kv, qkv, proj, cpb_fc1, cpb_fc2 (Linear [out, in])   .../attn/<same>/kernel [in, out]
    block{s}.{j}.attn.sr.weight [C, C, 1, 1]    .../attn/sr/kernel [C, C]      (the 1x1 conv is a Dense)
    block{s}.{j}.attn.norm.*                    .../attn/norm/*                (the pooled tokens' LayerNorm)
    block{s}.{j}.attn.temperature, query_embedding, relative_pos_bias_local, learnable_tokens, learnable_bias
                                                the same arrays, same names
    block{s}.{j}.mlp.fc1, fc2                   .../mlp/fc1, fc2 (Linear)
    block{s}.{j}.mlp.dwconv.dwconv.weight [H, 1, 3, 3]   .../mlp/dwconv/kernel [3, 3, 1, H]
    head.weight / head.bias                     head/kernel, head/bias        (absent with num_classes=0)

The stage-4 blocks (sr_ratio 1) have `attn.qkv`; the others `attn.q`, `attn.kv`, `attn.sr`, `attn.norm` and
the local window's parameters. The CUDA (swattention) and native AggregatedAttention have the same keys.

Resolution. No entry of the state dict depends on the resolution: the official model's relative position
indices, CPB coordinate tables, padding masks and length scales are non-persistent buffers that it computes
from `img_size`, and mixtok computes the same constants from the input at trace time. So one converted set of
variables runs at any size the total stride 32 divides (`image_size=` only makes the model check that size).
What the checkpoint does fix is `pretrain_size`, the resolution of pre-training that scales the CPB
coordinates: 224 for every released 224 and 384 checkpoint (README; configs/finetune/*_384_ft.py), mixtok's
default. Pass `pretrain_size=` for another (the README's Micro-AAAA: 256), as main.py's `--pretrain-size`;
`fixed_pool_size=` is main.py's `--fixed-pool-size` (the paper's linear inference mode). The class count is
read from head.weight (`num_classes=` overrides; no head: 0). Other create_model arguments pass through.

Checked against the official code (DaiShiResearch/TransNeXt @ c8a99743b60ac94ac8d2bf66ffe164a440dcfe21,
unmodified, the native PyTorch AggregatedAttention of attention_native.py: transnext.py picks it when the
`swattention` CUDA extension is not installed, as on a CPU) with tools/make_transnext_fixtures.py
(`--parity DIR`, then `--check-parity DIR`): every parameter random (weights N(0, 1 / fan_in), biases
N(0, 0.1), norm weights U(0.5, 1.5), temperature, query embedding, local position bias, learnable tokens and
bias N(0, 1), so that no branch is negligible; the model has no persistent buffer, and its non-persistent ones
are the resolution's constants above, which mixtok recomputes), eval mode, a batch of 2 N(0, 1) images, seeds
0, 1, 2 (the official state dict written once per seed and loaded with strict=True into the model built for
each size). Converted by `convert`, mixtok's eval logits differ from the official ones by at most (over the seeds;
relative: the error over the largest |logit| of the same run, the largest such ratio over the seeds):

    transnext_micro  224 px (pretrain 224)   max |error| 1.5e-5   relative 7.7e-6   (largest logits 2.0 to 2.5)
    transnext_micro  384 px (pretrain 224)   max |error| 2.7e-5   relative 1.1e-5
    transnext_small  224 px (pretrain 224)   max |error| 4.6e-5   relative 1.6e-5   (largest logits 2.3 to 3.0)
    transnext_small  384 px (pretrain 224)   max |error| 5.3e-5   relative 2.1e-5

(float32 on CPU; the error grows with depth, 21 and 37 blocks: the tiny fixture model of tests/fixtures/transnext,
5 blocks, agrees to 1.5e-6 at 64 and 96 px and each stage output to 5.2e-6, magnitudes 3 to 4). `to_official` of the
result equals the official state dict exactly, and the official model loads it with strict=True.
"""

import dataclasses
import functools
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.interop.official import (
    Entry,
    build_table,
    command_line,
    freeze,
    state_dict_from_variables,
    variables_from_state_dict,
)
from mixtok.interop.weight_files import load_state_dict, load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.models import create_model, list_models, model_spec
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

WRAPPER_KEYS = ("model", "state_dict")  # main.py saves and loads checkpoint['model']
TOTAL_STRIDE_PER_PATCH = 8  # the patch embedding's stride times three stride-2 downsamplings
CLI_DESCRIPTION = (
    "Converts an official TransNeXt checkpoint (DaiShiResearch/TransNeXt, .pth) to mixtok variables (flax "
    "msgpack; read them back with mixtok.interop.transnext.load_variables)."
)
CLI_NAME_HELP = "transnext_micro, transnext_tiny, transnext_small, transnext_base"


def resolve_name(name: str) -> str:
    """The mixtok name for `transnext_micro` ... `transnext_base` (the official names; `-` for `_` is accepted)."""
    variants = list_models("transnext_*")
    mixtok_name = name.replace("-", "_")
    if mixtok_name in variants:
        return mixtok_name
    raise unknown_name_error("TransNeXt variant", name, variants)


@dataclasses.dataclass(frozen=True)
class PointwiseConvEntry(Entry):
    """A Dense kernel [in, out] whose official form is a 1x1 Conv2d weight [out, in, 1, 1] (AggregatedAttention.sr)."""

    @property
    def official_shape(self) -> tuple[int, ...]:
        return (self.shape[1], self.shape[0], 1, 1)

    def from_official(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array[:, :, 0, 0].T, dtype=self.dtype)

    def to_official(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(array).T[:, :, None, None])


def _official_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    weight = {"kernel": "weight", "scale": "weight"}.get(leaf_name, leaf_name)
    layout = ("conv" if len(leaf.shape) == 4 else "linear") if leaf_name == "kernel" else "same"
    top = module[0]
    if match := re.fullmatch(r"block(\d)_(\d+)", top):
        parts = [f"block{match[1]}", match[2], *module[1:]]
        if module[1:] == ["mlp", "dwconv"]:  # ConvolutionalGLU.dwconv is a DWConv holding the Conv2d `dwconv`
            parts.append("dwconv")
    elif re.fullmatch(r"(patch_embed|norm)\d|head", top):
        parts = list(module)
    else:
        raise AssertionError(f"mixtok's TransNeXt has a variable {'/'.join(path)} that the importer does not know.")
    return ".".join(parts + [weight]), layout


def _sample_size(name: str, overrides: Mapping[str, Any]) -> int:
    """The smallest input side the model accepts, for tracing its variables' shapes (they do not depend on it):
    every stage's grid must hold its pooled grid (sr_ratio, or fixed_pool_size + 1 as the official assert)."""
    kwargs = {**model_spec(name).kwargs, **overrides}
    if kwargs.get("image_size"):
        return int(kwargs["image_size"])
    patch = int(kwargs.get("patch_size", 4))
    pool = kwargs.get("fixed_pool_size")
    needed = max(
        patch * 2**stage * (sr if pool is None or sr == 1 else max(sr, pool + 1))
        for stage, sr in enumerate(kwargs.get("sr_ratios", (8, 4, 2, 1)))
    )
    stride = TOTAL_STRIDE_PER_PATCH * patch
    return -(-needed // stride) * stride


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]) -> tuple[Entry, ...]:
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    size = _sample_size(name, dict(overrides))
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    )
    entries = []
    for e in build_table({"params": shapes["params"]}, _official_key):
        if e.path[-2:] == ("sr", "kernel"):
            e = PointwiseConvEntry(**{f.name: getattr(e, f.name) for f in dataclasses.fields(e)})
        entries.append(e)
    return tuple(entries)


def _split_empty(table: tuple[Entry, ...]) -> tuple[list[Entry], list[Entry]]:
    """(entries with values, zero-size entries): with num_classes=0 mixtok's head is [C, 0], the official one
    an nn.Identity without keys."""
    empty = [e for e in table if math.prod(e.shape) == 0]
    return [e for e in table if e not in empty], empty


def _settings(num_classes: int, overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())


def convert(name: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None, **overrides) -> dict[str, Any]:
    """mixtok variables {'params': nested float32 numpy arrays} from an official TransNeXt state dict.

    `name`: `transnext_micro` ... `transnext_base`. `state_dict`: the model's state dict or a checkpoint
    that wraps it ({'model': ...}; 'module.' prefixes are dropped), values numpy arrays or torch tensors.
    `num_classes=None` reads the class count from head.weight; `overrides` go to `create_model`
    (`pretrain_size`, default 224 as for every released checkpoint; `image_size`; `fixed_pool_size`; ...).
    Raises one ValueError listing every unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict, WRAPPER_KEYS).items()}
    if num_classes is None:
        num_classes = int(arrays["head.weight"].shape[0]) if "head.weight" in arrays else 0
    entries, empty = _split_empty(_table(model_name, num_classes, freeze(overrides)))
    variables = variables_from_state_dict(
        entries,
        arrays,
        f"The TransNeXt state dict does not fit mixtok's {model_name} ({_settings(num_classes, overrides)})",
    )
    for e in empty:
        node = variables[e.collection]
        for part in e.path[:-1]:
            node = node.setdefault(part, {})
        node[e.path[-1]] = np.zeros(e.shape, e.dtype)
    return variables


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    `transnext_<size>(img_size=..., pretrain_size=..., num_classes=...)` of classification/transnext.py loads it
    with `load_state_dict({k: torch.from_numpy(v) ...}, strict=True)` at any img_size.
    """
    model_name = resolve_name(name)
    if "params" not in variables:
        raise ValueError(f"to_official takes variables {{'params': ...}}; got a mapping with keys {sorted(variables)}.")
    params = nn.meta.unbox(variables["params"])
    kernel = params.get("head", {}).get("kernel")
    num_classes = 0 if kernel is None else int(kernel.shape[-1])
    entries, empty = _split_empty(_table(model_name, num_classes, freeze(overrides)))
    if empty and "head" in params:
        params = {k: v for k, v in params.items() if k != "head"}
    return state_dict_from_variables(
        entries,
        {"params": params},
        f"The variables do not fit mixtok's {model_name} ({_settings(num_classes, overrides)})",
    )


def official_shapes(name: str, *, num_classes: int = 1000, **overrides) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the state dict that `convert` takes for `name` (no weights are made)."""
    entries, _ = _split_empty(_table(resolve_name(name), num_classes, freeze(overrides)))
    return {e.key: e.official_shape for e in entries}


def cli_summary(variables: dict[str, Any]) -> str:
    params = variables["params"]
    classes = params["head"]["kernel"].shape[-1] if "head" in params else 0
    blocks = sum(1 for k in params if re.fullmatch(r"block\d_\d+", k))
    return f" ({classes} classes, {blocks} blocks)"


main = command_line(__name__)  # python -m mixtok.interop.transnext --help; see official.command_line


if __name__ == "__main__":
    sys.exit(main())
