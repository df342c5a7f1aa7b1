"""Converts the official iFormer checkpoints (sail-sg/iFormer, Inception Transformer) to mixtok variables and back.

    state_dict = load_state_dict("iformer_small.pth")   # bare, or {'state_dict': ...} of a training run
    variables = convert("iformer_s", state_dict)         # {'params': ..., 'batch_stats': ...}
    logits = create_model("iformer_s").apply(variables, images_nhwc)   # eval: BatchNorm running statistics

or once, from the shell (then `load_variables(OUTPUT)`; exit code 0 written, 2 bad input or arguments):

    python -m mixtok.interop.iformer iformer_small iformer_small.pth iformer_s.msgpack

The checkpoints are state dicts of models/inception_transformer.py's `InceptionTransformer`. The released
files (`default_cfgs` there: huggingface.co/sail/dl2 iformer/iformer_{small,base,large}[_384].pth) are bare
state dicts, which `iformer_small(pretrained=True)` passes straight to `load_state_dict`. train.py is timm's
training script: its timm `CheckpointSaver` writes {'state_dict': ..., 'state_dict_ema': ..., 'optimizer':
..., 'args': ...}, and validate.py reads it with timm's `load_checkpoint`, which takes 'state_dict' (then
'model'), or with `--use-ema` 'state_dict_ema' (then 'model_ema'). `load_state_dict(path, ema=True)` does
the same; the command line takes the non-EMA weights. Names are mixtok's (`iformer_s`, `iformer_b`,
`iformer_l`) or the official model names (`iformer_small`, `iformer_base_384`, ...).

mixtok's IFormer names its modules after the official ones with `_` for `.`; the keys (s: stage 1-4,
j: block in the stage, n: 2-4):

    pos_embed{s} [1, S, S, C]                  pos_embed{s}, the same array (NHWC in both)
    patch_embed.proj{1,2} / .norm{1,2}         patch_embed_proj{1,2} / patch_embed_norm{1,2}   (the stem)
    patch_embed{n}.proj / .norm                patch_embed{n}_proj / patch_embed{n}_norm
    blocks{s}.{j}.*                            blocks{s}_{j}/*  (attn.high_mixer.conv1 -> attn/high_mixer/conv1)
    layer_scale_1, layer_scale_2 (stages 3-4)  the same bare parameters
    conv .weight [O, I/g, kh, kw]              .../kernel [kh, kw, I/g, O]
    Linear .weight [out, in]                   .../kernel [in, out]  (low_mixer.qkv, mlp.fc1/fc2, head)
    BatchNorm / LayerNorm .weight, .bias       .../scale, .../bias
    BatchNorm .running_mean / .running_var     batch_stats/.../mean, .../var
    BatchNorm .num_batches_tracked             dropped (`to_official` writes 0: mixtok counts no batches, and
                                               PyTorch reads it only when training with momentum=None)

Resolution. `convert` builds the model with the `image_size` that pos_embed1 implies (4 x its side: 224 for
the released models, 384 for the `*_384` ones; pass `image_size=` to override). The class count is read from
head.weight (`num_classes=` overrides; a checkpoint without a head, the official `num_classes=0`, gets
mixtok's empty head). Other create_model arguments pass through `**overrides`.

Checked against the official code (sail-sg/iFormer @ 725d8e7f, models/inception_transformer.py unmodified,
run by torch 2.14 CPU with timm 1.0.31; its `timm.models.layers.helpers.to_2tuple` import, gone from timm 1.x,
is given timm.layers' `to_2tuple`). Procedure: build the official `iformer_small` / `iformer_base` (and
`iformer_small_384` / `iformer_base_384`, img_size 384) with 1000 classes; give EVERY parameter and buffer
random values (weights N(0, 1 / fan_in), biases N(0, 0.1), BatchNorm running means N(0, 0.5), every other
1-D tensor U(0.5, 1.5): norm weights, layer scales, running variances; position embeddings N(0, 1));
eval(); run a seeded N(0, 1) batch of 2 through it; save the state dict as timm's CheckpointSaver does
({'state_dict', 'epoch', 'arch', 'version', 'args': Namespace}) in a .pth; convert that file with the
command line above; run mixtok's model (float32, eval, CPU) on the same images (NCHW -> NHWC) and compare
logits. Three seeds each; the largest error over them, the largest |logit| over them, and their ratio:

    variant     input (img_size)                         max |logit error|   largest |logit|   relative
    iformer_s   224 (224)                                1.67e-6             3.64              4.6e-7
    iformer_s   384 (384: iformer_small_384)             1.43e-6             3.13              4.6e-7
    iformer_b   224 (224)                                1.67e-6             2.87              5.8e-7
    iformer_b   384 (384: iformer_base_384)              1.79e-6             3.23              5.5e-7
    iformer_s   288 (224: position embeddings resized)   1.43e-6             3.88              3.7e-7

so within 1.8e-6 of the official logits (5.8e-7 of the largest logit) everywhere. `python
tools/make_iformer_fixtures.py --official-repo iFormer --parity DIR` reruns this check and prints the table.
`to_official` of every converted checkpoint equals the official state dict exactly (num_batches_tracked
aside, which it writes as 0) and loads into the official model with strict=True. tools/make_iformer_fixtures.py
writes the tiny golden fixtures that tests/interop/test_iformer_import.py checks without torch.
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

from mixtok.interop import weight_files
from mixtok.interop.official import (
    BATCH_COUNTER,
    TORCH_LEAF_NAMES,
    build_table,
    command_line,
    freeze,
    state_dict_from_variables,
    variables_from_state_dict,
    with_batch_counters,
)
from mixtok.interop.weight_files import load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.models import create_model, model_spec
from mixtok.models.iformer_variants import SIZES
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

# models/inception_transformer.py's registered names (the `*_384` ones differ only in img_size).
OFFICIAL_NAMES = {
    "iformer_small": "iformer_s",
    "iformer_base": "iformer_b",
    "iformer_large": "iformer_l",
    "iformer_small_384": "iformer_s",
    "iformer_base_384": "iformer_b",
    "iformer_large_384": "iformer_l",
}
# timm's load_checkpoint (what validate.py calls) reads these keys of a train.py checkpoint, in this order.
WRAPPER_KEYS = ("state_dict", "model")
EMA_WRAPPER_KEYS = ("state_dict_ema", "model_ema")
STEM_STRIDE = 4  # pos_embed1 has a row per 4 pixels
IMAGE_MULTIPLE = 32  # IFormer's image_size must be a multiple of the last stage's stride
CLI_DESCRIPTION = (
    "Converts an official iFormer checkpoint (sail-sg/iFormer, .pth: a released bare state dict or a train.py "
    "checkpoint, whose 'state_dict' is taken) to mixtok variables (flax msgpack; read them back with "
    "mixtok.interop.iformer.load_variables)."
)
CLI_CHECKPOINT_HELP = "the official checkpoint (.pth: released bare state dict or train.py checkpoint; .safetensors)"
CLI_NAME_HELP = "iformer_s, iformer_b, iformer_l (or the official iformer_small, iformer_base_384, ...)"


def resolve_name(name: str) -> str:
    """The mixtok name for a mixtok name (`iformer_s`) or an official model name (`iformer_small_384`)."""
    mixtok_name = name.replace("-", "_")
    if mixtok_name in SIZES:
        return mixtok_name
    if mixtok_name in OFFICIAL_NAMES:
        return OFFICIAL_NAMES[mixtok_name]
    raise unknown_name_error("iFormer variant", name, list(SIZES) + list(OFFICIAL_NAMES))


def load_state_dict(path, *, ema: bool = False) -> dict[str, np.ndarray]:
    """{key: numpy array} of an official iFormer checkpoint file, unwrapped as timm's load_checkpoint does.

    A released file is the bare state dict; a train.py checkpoint gives its 'state_dict' (then 'model'), or
    with `ema=True` its 'state_dict_ema' (then 'model_ema'), which must be there. 'module.' prefixes
    (a DistributedDataParallel model's) are dropped.
    """
    try:
        arrays = weight_files.load_state_dict(path, wrapper_keys=EMA_WRAPPER_KEYS if ema else WRAPPER_KEYS)
    except ValueError as e:
        if ema and "not an array" in str(e):  # a training checkpoint without EMA weights
            raise ValueError(
                f"{path} holds no EMA weights (no {' or '.join(repr(k) for k in EMA_WRAPPER_KEYS)} entry); "
                f"load it with ema=False."
            ) from e
        raise
    return unwrap_state_dict(arrays)


def _module_parts(part: str) -> list[str]:
    """The official key parts of one mixtok module name: `blocks3_2` -> blocks3.2, `patch_embed2_norm` -> ..."""
    if match := re.fullmatch(r"(blocks\d)_(\d+)", part):
        return [match[1], match[2]]
    if match := re.fullmatch(r"(patch_embed\d?)_(proj\d?|norm\d?)", part):
        return [match[1], match[2]]
    return [part]


def _official_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    parts = [p for part in module for p in _module_parts(part)]
    layout = ("conv" if len(leaf.shape) == 4 else "linear") if leaf_name == "kernel" else "same"
    return ".".join(parts + [TORCH_LEAF_NAMES.get(leaf_name, leaf_name)]), layout


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]):
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    # The parameters have the shapes of `image_size` whatever the input, so the smallest input will do.
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    )
    table = build_table({"params": shapes["params"], "batch_stats": shapes["batch_stats"]}, _official_key)
    # num_classes=0: mixtok's head is a Dense of width 0, the official one nn.Identity (no keys).
    return tuple(e for e in table if 0 not in e.shape), tuple(e for e in table if 0 in e.shape)


def _image_size(name: str, arrays: Mapping[str, np.ndarray]) -> int:
    """4 x pos_embed1's side when that is a valid image_size, else the variant's default (the shape check
    then reports pos_embed1)."""
    embedding = arrays.get("pos_embed1")
    if embedding is not None and embedding.ndim == 4 and embedding.shape[1] == embedding.shape[2]:
        size = int(embedding.shape[1]) * STEM_STRIDE
        if size > 0 and size % IMAGE_MULTIPLE == 0:
            return size
    spec = model_spec(name)
    return spec.kwargs.get("image_size", spec.cls.image_size)


def _hint(arrays: Mapping[str, Any]) -> str:
    if arrays and not any(k == "pos_embed1" or k.startswith("blocks1.") for k in arrays):
        return (
            " None of its keys is an Inception Transformer's (pos_embed1, blocks1.*): check that it is a "
            "sail-sg/iFormer checkpoint (the mobile iFormer of ChuanyangZheng/iFormer is a different architecture)."
        )
    return ""


def _settings(num_classes: int, overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())


def convert(name: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None, **overrides) -> dict[str, Any]:
    """mixtok variables {'params': ..., 'batch_stats': ...} (float32 numpy) from an official iFormer state dict.

    `name`: `iformer_s`, `iformer_b`, `iformer_l` or an official name (`iformer_small`, `iformer_base_384` ...).
    `state_dict`: the model's state dict or a checkpoint that wraps it ({'state_dict': ...}, {'model': ...};
    'module.' prefixes are dropped), values numpy arrays or torch tensors. `num_classes=None` reads the class
    count from head.weight; `image_size` defaults to 4 x pos_embed1's side; `overrides` go to `create_model`.
    Raises one ValueError listing every unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict, WRAPPER_KEYS).items()}
    if num_classes is None:
        weight = arrays.get("head.weight")
        num_classes = 0 if weight is None else int(weight.shape[0])
    overrides.setdefault("image_size", _image_size(model_name, arrays))
    table, empty = _table(model_name, num_classes, freeze(overrides))
    uncounted = {e.key[: -len("running_mean")] + BATCH_COUNTER for e in table if e.key.endswith(".running_mean")}
    variables = variables_from_state_dict(
        table,
        arrays,
        f"The iFormer state dict does not fit mixtok's {model_name} ({_settings(num_classes, overrides)})",
        ignored=uncounted,
        hint=_hint(arrays),
    )
    for e in empty:
        node = variables[e.collection]
        for part in e.path[:-1]:
            node = node.setdefault(part, {})
        node[e.path[-1]] = np.zeros(e.shape, e.dtype)
    return variables


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    Holds every key of the official `InceptionTransformer(...).state_dict()`, num_batches_tracked as 0, so
    that the official model built with the same img_size and num_classes loads it with
    `load_state_dict({k: torch.from_numpy(v) ...}, strict=True)`. `image_size` is read from pos_embed1.
    """
    model_name = resolve_name(name)
    if "params" not in variables:
        raise ValueError(
            f"to_official takes variables {{'params': ..., 'batch_stats': ...}}; got a mapping with "
            f"keys {sorted(variables)}."
        )
    variables = {c: nn.meta.unbox(variables[c]) for c in ("params", "batch_stats") if c in variables}
    params = variables["params"]
    kernel = params.get("head", {}).get("kernel")
    num_classes = 0 if kernel is None else int(kernel.shape[-1])
    if "image_size" not in overrides and "pos_embed1" in params:
        overrides["image_size"] = _image_size(model_name, {"pos_embed1": np.asarray(params["pos_embed1"])})
    table, empty = _table(model_name, num_classes, freeze(overrides))
    if empty:  # drop mixtok's empty head, which has no official counterpart
        params = {k: v for k, v in params.items() if k not in {e.path[0] for e in empty}}
        variables = {**variables, "params": params}
    arrays = state_dict_from_variables(
        table, variables, f"The variables do not fit mixtok's {model_name} ({_settings(num_classes, overrides)})"
    )
    return with_batch_counters(arrays, np.array(0, np.int64))


def official_shapes(name: str, *, num_classes: int = 1000, **overrides) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the official state dict of `name`, as `to_official` writes it (no weights made)."""
    table, _ = _table(resolve_name(name), num_classes, freeze(overrides))
    return with_batch_counters({e.key: e.official_shape for e in table}, ())


def cli_summary(variables: dict[str, Any]) -> str:
    classes = variables["params"]["head"]["kernel"].shape[-1]
    side = variables["params"]["pos_embed1"].shape[1] * STEM_STRIDE
    statistics = sum(leaf.size for leaf in jax.tree.leaves(variables["batch_stats"]))
    return f" ({classes} classes, image_size {side}) and {statistics:,} BatchNorm statistics"


CLI_EMA = True  # --ema: the EMA weights the training script saved (load_state_dict(path, ema=True))
main = command_line(__name__)  # the importers' shared command line (official.run_cli): exit 2 on bad input


if __name__ == "__main__":
    sys.exit(main())
