"""Converts the official FFNet checkpoints (ysj9909/FFNet) to mixtok variables and back, in either form.

    state_dict = load_state_dict("ffnet_1.pth.tar")       # timm's {'state_dict': ...} is unwrapped
    variables = convert("ffnet_1", state_dict)             # {'params': ..., 'batch_stats': ...}
    logits = create_model("ffnet_1").apply(variables, images_nhwc)   # eval: running statistics

or once, from the shell (then `load_variables(OUTPUT)`):

    python -m mixtok.interop.ffnet ffnet_1 ffnet_1.pth.tar ffnet_1.msgpack

Checkpoints. The released ImageNet models (README "Pre-trained Models": ffnet_1 ... ffnet_3, ffnet_3_384,
ffnet_4_384 and the `_distillation` ones, all `.pth.tar`) are training checkpoints of train.py, written by
timm's `CheckpointSaver`: {'state_dict': the training-form `FFNet` state dict, 'optimizer', 'args', 'epoch',
'arch', 'version', 'metric', and 'state_dict_ema' with --model-ema}; export_model.py loads
`checkpoint['state_dict']` into `create_model(variant)` and only then fuses it (`replace_batchnorm`), so the
released weights are the training form. `load_state_dict` reads `.pth.tar` as well as `.pth`; `use_ema=True`
(CLI `--ema`) takes 'state_dict_ema'. Distillation (`--distillation-type hard`) adds no module: those
checkpoints have the same keys. A state dict of the fused form (the model after export_model.py's
`replace_batchnorm`, saved with `state_dict()`) is recognised by its keys and converted to the variables of
`create_model(name, fused=True)`. The CoreML packages are not read.

Names are mixtok's and the official `--model` (`ffnet_1` ... `ffnet_4`; a 384 px checkpoint is the same
model: FFNet has no parameter that depends on the resolution). Keys (mixtok path -> official key):

    patch_embed_0, patch_embed_2              patch_embed.0, patch_embed.2
    stages_s_j (FFBlock)                      stages.s.j
      token_mixer_0_main / channel_mixer_main   token_mixer.0.main / channel_mixer.main
      token_mixer_0_layer_scale [C]             token_mixer.0.layer_scale [C, 1, 1]    (ffnet_3, ffnet_4)
      channel_mixer_layer_scale [C]             channel_mixer.layer_scale [C, 1, 1]
    stages_s_0_proj_0, stages_s_0_proj_1      stages.s.0.proj.0, .proj.1                (PatchMerging, s > 0)
    norm, head                                norm, head
    inside them: a Conv2d_BN / BN_Conv2d's conv `conv` is the official `c` (RepVGGDW's branches keep
    `conv` and `conv1`); `kernel` [kh, kw, in/g, out] <-> `weight` [out, in/g, kh, kw] (head: [in, out]
    <-> [out, in]); BatchNorm `scale` <-> `weight`, batch_stats `mean` / `var` <-> `running_mean` /
    `running_var`; `num_batches_tracked` is dropped (`to_official` writes 0: with the default momentum
    PyTorch never reads it)
    fused form: every Conv2d_BN and RepVGGDW is one conv with bias at the module's own key
    (`stages.2.1.token_mixer.0.main.conv1.weight`); the PatchMerging skip is one 1x1 conv at
    `stages.s.0.proj.1.weight` (mixtok `stages_s_0_proj_1/conv/kernel`); only `norm` keeps statistics.

Checked against the official code (ysj9909/FFNet @ f3c3e4c5 models/ffnet.py and export_model.py's
`replace_batchnorm`, unmodified; torch 2.14.1 CPU, timm 1.0.31, float32 on both sides), with
tools/make_ffnet_fixtures.py (`--parity DIR` with torch, then `--check-parity DIR` with mixtok):
ffnet_1 and ffnet_3 built by the official factories, seeds 0, 1, 2, EVERY parameter random (conv and linear
weights N(0, 1 / fan_in), biases N(0, 0.1), BatchNorm weights and layer scales U(0.5, 1.5)) and every
BatchNorm's running statistics set from one N(0, 1) batch and then moved at random (mean + 0.2 std N(0, 1),
variance x U(0.5, 2)), so that every branch and statistic matters while the 35 blocks of ffnet_3 keep O(1)
activations. Each is saved as train.py's CheckpointSaver does (.pth.tar) and converted by `python -m
mixtok.interop.ffnet` (run with torch and mixtok in one environment; the same weights as .safetensors, read
without torch, give the same figures), run by mixtok in eval mode on the same N(0, 1) batch of 2, at
256 px (the default) and 384 px (the README's fine-tuned ffnet_3_384 / ffnet_4_384). Largest max-abs logit
error over both variants, both sizes and all seeds (largest logits 3.7 to 27.6):

    training form (converted .pth.tar weights vs the official eval model)              1.9e-5 (1.4e-6 relative)
    fused form: mixtok's fuse_ffnet of those vs the official model after replace_batchnorm  1.8e-5 (1.1e-6)
    fused form: the official fused state dict converted directly                        1.8e-5 (9.5e-7)

(relative: the max-abs error over the largest |logit| of the same run; the largest of these over all runs).
ffnet_1 alone: 4.8e-6 (7.8e-7). `to_official` of the converted variables equals the official state dict
of each form key for key and value for value (num_batches_tracked 0), and the official `ffnet_1()` (and
the same after `replace_batchnorm`) loads it with strict=True: "All keys matched successfully" (checked in
one process with torch and mixtok). On the golden fixtures, swapping one BatchNorm's running mean and
variance, or transposing one 7 x 7 depthwise kernel of the fused form, moves the logits by 0.1 to 0.8
(largest logits 1 to 2).
"""

import dataclasses
import functools
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import mixtok.models.ffnet_variants  # noqa: F401  (registers ffnet_1 ... ffnet_4)
from mixtok.interop import weight_files
from mixtok.interop.official import (
    BATCH_COUNTER,
    TORCH_LEAF_NAMES,
    Entry,
    build_table,
    command_line,
    freeze,
    state_dict_from_variables,
    variables_from_state_dict,
    with_batch_counters,
)
from mixtok.interop.weight_files import load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.models import create_model, list_models
from mixtok.registry import unknown_name_error

__all__ = [
    "convert",
    "is_fused_state_dict",
    "load_state_dict",
    "load_variables",
    "main",
    "official_shapes",
    "resolve_name",
    "save_variables",
    "to_official",
]

# timm's CheckpointSaver (train.py) keeps the model under 'state_dict', its EMA under 'state_dict_ema'.
WRAPPER_KEYS = ("state_dict", "model")
EMA_KEY = "state_dict_ema"
LAYER_SCALE = "layer_scale"
# Keys only the training form has (Conv2d_BN's conv is `c`) and only the fused form has.
TRAINING_STEM, FUSED_STEM = "patch_embed.0.c.weight", "patch_embed.0.weight"


def resolve_name(name: str) -> str:
    """The mixtok name (`ffnet_1`) for a mixtok name or the official `--model` / `--variant` (the same names)."""
    variants = list_models("ffnet_*")
    mixtok_name = name.replace("-", "_")
    if mixtok_name in variants:
        return mixtok_name
    raise unknown_name_error("FFNet variant", name, variants)


@dataclasses.dataclass(frozen=True)
class _LayerScaleEntry(Entry):
    """A layer scale: mixtok [C] <-> the official nn.Parameter [C, 1, 1]."""

    @property
    def official_shape(self) -> tuple[int, ...]:
        return (*self.shape, 1, 1)

    def from_official(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array.reshape(self.shape), dtype=self.dtype)

    def to_official(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(array).reshape(self.official_shape))


# mixtok module names that stand for several official path components.
_OFFICIAL_PARTS = (
    (re.compile(r"patch_embed_(\d+)"), r"patch_embed.\1"),
    (re.compile(r"stages_(\d+)_0_proj_(\d+)"), r"stages.\1.0.proj.\2"),
    (re.compile(r"stages_(\d+)_(\d+)"), r"stages.\1.\2"),
    (re.compile(r"token_mixer_0_(main|layer_scale)"), r"token_mixer.0.\1"),
    (re.compile(r"channel_mixer_(main|layer_scale)"), r"channel_mixer.\1"),
)


def _official_part(name: str) -> str:
    for pattern, replacement in _OFFICIAL_PARTS:
        if pattern.fullmatch(name):
            return pattern.sub(replacement, name)
    return name


def _official_key(params: Mapping[str, Any], collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    parts, node = [], params
    for name in module:
        siblings, node = node, node[name]
        if name == "conv" and "bn" in siblings:  # a Conv2d_BN / BN_Conv2d's conv is `c`
            parts.append("c")
        elif name == "conv" and module[0].endswith("_proj_1") and "kernel" in node:
            pass  # the fused PatchMerging skip: Conv2d_BN_skip.fuse() returns the conv that replaces it
        else:
            parts.append(_official_part(name))
    if leaf_name.endswith(LAYER_SCALE):  # a bare parameter of the FFBlock; [C] here, [C, 1, 1] there
        return ".".join(parts + [_official_part(leaf_name)]), "same"
    layout = ("conv" if len(leaf.shape) == 4 else "linear") if leaf_name == "kernel" else "same"
    return ".".join(parts + [TORCH_LEAF_NAMES.get(leaf_name, leaf_name)]), layout


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]) -> tuple[Entry, ...]:
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    # No parameter depends on the resolution: the smallest input (the total stride) will do.
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    )
    table = build_table(
        {c: shapes[c] for c in ("params", "batch_stats")}, functools.partial(_official_key, shapes["params"])
    )
    return tuple(
        _LayerScaleEntry(**{f.name: getattr(e, f.name) for f in dataclasses.fields(e)})
        if e.key.endswith(LAYER_SCALE)
        else e
        for e in table
    )


def is_fused_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """True for the state dict of a model fused by export_model.py's `replace_batchnorm`."""
    return FUSED_STEM in state_dict and TRAINING_STEM not in state_dict


def _hint(arrays: Mapping[str, Any], fused: bool) -> str:
    if not arrays:
        return ""
    if fused and TRAINING_STEM in arrays:
        return " Its keys are the training form's (patch_embed.0.c.weight), not the fused form's: pass fused=False."
    if not fused and FUSED_STEM in arrays:
        return " Its keys are the fused form's (patch_embed.0.weight), not the training form's: pass fused=True."
    if not any(k.startswith("stages.") for k in arrays):
        return " It has no stages.* keys: is it an FFNet state dict (checkpoint['state_dict'])?"
    return ""


def convert(
    name: str,
    state_dict: Mapping[str, Any],
    *,
    num_classes: int | None = None,
    fused: bool | None = None,
    **overrides,
) -> dict[str, Any]:
    """mixtok variables {'params': ..., 'batch_stats': ...} (float32 numpy) from an official FFNet state dict.

    `name`: `ffnet_1` ... `ffnet_4`. `state_dict`: the model's state dict or a checkpoint that wraps it
    ({'state_dict': ...}, {'model': ...}; 'module.' prefixes are dropped), values numpy arrays or torch
    tensors. `fused=None` tells the training form from the fused one (export_model.py's `replace_batchnorm`)
    by the keys; the variables are those of `create_model(name, fused=fused)` (fused: `batch_stats` holds
    only `norm`'s). `num_classes=None` reads the class count from head.weight (no head: 0); `overrides` go to
    `create_model`. Raises one ValueError listing every unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict, WRAPPER_KEYS).items()}
    if fused is None:
        fused = is_fused_state_dict(arrays)
    if num_classes is None:
        weight = arrays.get("head.weight")
        num_classes = 0 if weight is None else int(weight.shape[0])
    table = _table(model_name, num_classes, freeze({**overrides, "fused": bool(fused)}))
    uncounted = {e.key[: -len("running_mean")] + BATCH_COUNTER for e in table if e.key.endswith(".running_mean")}
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, "fused": fused, **overrides}.items())
    return variables_from_state_dict(
        table,
        arrays,
        f"The FFNet state dict does not fit mixtok's {model_name} ({settings})",
        ignored=uncounted,
        hint=_hint(arrays, fused),
    )


def _is_fused_variables(params: Mapping[str, Any]) -> bool:
    return "kernel" in params.get("patch_embed_0", {})


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    Variables of the fused model (`fused=True`, e.g. `fuse_ffnet`'s) give the state dict of the official model
    after `replace_batchnorm`. Every key of the official `state_dict()` is there, num_batches_tracked as 0,
    so that `model.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)` loads it.
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
    overrides.setdefault("fused", _is_fused_variables(params))
    table = _table(model_name, num_classes, freeze(overrides))
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    arrays = state_dict_from_variables(table, variables, f"The variables do not fit mixtok's {model_name} ({settings})")
    return with_batch_counters(arrays, np.array(0, np.int64))


def official_shapes(name: str, *, num_classes: int = 1000, fused: bool = False, **overrides) -> dict[str, tuple]:
    """{official key: shape} of the official state dict of `name`, as `to_official` writes it (no weights are made)."""
    table = _table(resolve_name(name), num_classes, freeze({**overrides, "fused": fused}))
    return with_batch_counters({e.key: e.official_shape for e in table}, ())


def load_state_dict(path: str | os.PathLike, *, ema: bool = False) -> dict[str, np.ndarray]:
    """{key: numpy array} of an FFNet checkpoint: train.py's `.pth.tar` (its 'state_dict', or with `ema`
    its 'state_dict_ema', which train.py writes only with --model-ema), a bare state dict (`.pth`), or
    `.safetensors`."""
    if ema:
        return weight_files.load_state_dict(path, wrapper_keys=(EMA_KEY,), required=True)
    return weight_files.load_state_dict(path, wrapper_keys=WRAPPER_KEYS)


CLI_DESCRIPTION = (
    "Converts an official FFNet checkpoint (ysj9909/FFNet, .pth.tar) to mixtok variables (flax msgpack; read them "
    "back with mixtok.interop.ffnet.load_variables). A fused state dict (after export_model.py's "
    "replace_batchnorm) gives the variables of create_model(NAME, fused=True). Exit codes: 0 written, 2 bad "
    "input or arguments."
)
CLI_NAME_HELP = "ffnet_1, ffnet_2, ffnet_3, ffnet_4 (the official --model)"
CLI_CHECKPOINT_HELP = "train.py's checkpoint (.pth.tar), a state dict (.pth) or .safetensors"
CLI_EMA = True  # --ema: checkpoint['state_dict_ema']


def cli_summary(variables: dict[str, Any]) -> str:
    fused = "batch_stats" in variables and set(variables["batch_stats"]) == {"norm"}
    classes = variables["params"]["head"]["kernel"].shape[-1] if "head" in variables["params"] else 0
    statistics = sum(leaf.size for leaf in jax.tree.leaves(variables["batch_stats"]))
    return f" ({'fused' if fused else 'training'} form, {classes} classes) and {statistics:,} BatchNorm statistics"


main = command_line(__name__)  # the importers' shared command line (official.run_cli)


if __name__ == "__main__":
    sys.exit(main())
