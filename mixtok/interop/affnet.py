"""Converts the official AFFNet checkpoints (microsoft/TokenMixers, cvnets-style) to mixtok variables and back.

    state_dict = load_state_dict("affnet_et.pt")        # a cvnets state dict
    variables = convert("affnet_et", state_dict)         # {'params': ..., 'batch_stats': ...}
    logits = create_model("affnet_et").apply(variables, images_nhwc)   # eval: running statistics

or once, from the shell (then `load_variables(OUTPUT)`):

    python -m mixtok.interop.affnet affnet_et affnet_et.pt affnet_et.msgpack

The checkpoints are state dicts of `Adaptive Frequency Filters/affnet/models/classification/affnet.py`
`AffNet`, as cvnets writes them: a bare state dict (checkpoint_best.pt, checkpoint_ema_best.pt, what
`--model.classification.pretrained` loads), or a training checkpoint whose `model_state_dict` is
taken (as cvnets resumes; its EMA weights are `ema_state_dict`, also written alone as
checkpoint_ema*.pt: pass that file, or `checkpoint['ema_state_dict']` to `convert`, to use them).
Names are mixtok's (`affnet_et`, `affnet_t`, `affnet`) or the official modes (`xx_small`, `x_small`,
`small`).

mixtok's AFFNet names its modules after the official ones, so a key is its mixtok path with the
numbered children written `layer_3.1` / `global_rep.0` and cvnets' nn.Sequential `block` inserted
inside every `ConvLayer` (a module holding `conv` and `norm`) and `InvertedResidual` (a module
holding `conv_3x3`):

    layer_3.1.global_rep.0.mlp.block.exp_1x1.block.conv.weight [O, I, 1, 1]
        <-> params/layer_3_1/global_rep_0/mlp/exp_1x1/conv/kernel [1, 1, I, O]  (OIHW -> HWIO)
    ....norm.weight / .bias                 <-> .../norm/scale, .../norm/bias (BatchNorm, GroupNorm, LayerNorm)
    ....norm.running_mean / .running_var    <-> batch_stats/.../norm/mean, .../var
    ....norm.num_batches_tracked            dropped (`to_official` writes 0: mixtok does not count batches;
                                            PyTorch reads it only when training with momentum=None, and
                                            cvnets' model.normalization.momentum defaults to 0.1)
    layer_3.1.global_rep.0.filter.w1, b1, w2, b2   the same arrays
    classifier.fc.weight [classes, C]       <-> params/classifier_fc/kernel [C, classes]

Not in the state dict: the Block norm kind (`attn_norm`, "layer_norm_2d" or "layer_norm": the same
weights, different maths) and the activation. The yaml configs of the released models are
off-repo; build the model with the ones they name (`create_model("affnet_et", attn_norm=...)`).

Checked against the official code (microsoft/TokenMixers @ 99dbe38c, unmodified; batch_norm, swish,
each attn_norm): random weights and running statistics, saved as a bare state dict and as a cvnets
training checkpoint and converted by the command line, give eval logits at 256 px within 2.7e-6
of the official ones (2.2e-6 of the largest logit) for all three variants; swapping the mask
weights' real and imaginary parts, or resetting the running statistics, moves them by 1.3 to 2.1.
`to_official` of the result equals the official state dict (num_batches_tracked aside) and loads
with strict=True.
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
from mixtok.interop.weight_files import load_state_dict, load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.models import create_model
from mixtok.models.affnet_variants import SIZES
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

OFFICIAL_MODES = {spec[0]: name for name, spec in SIZES.items()}  # "xx_small" -> "affnet_et", ...
# cvnets' training checkpoint holds the model under this key (utils/checkpoint_utils.py).
WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")
CLI_DESCRIPTION = (
    "Converts an official AFFNet checkpoint (microsoft/TokenMixers, cvnets .pt) to mixtok variables (flax "
    "msgpack; read them back with mixtok.interop.affnet.load_variables)."
)
CLI_NAME_HELP = "affnet_et, affnet_t, affnet (or the official mode: xx_small, x_small, small)"


def resolve_name(name: str) -> str:
    """The mixtok name for a mixtok name (`affnet_et`) or an official mode (`xx_small`)."""
    mixtok_name = name.replace("-", "_")
    if mixtok_name in SIZES:
        return mixtok_name
    if mixtok_name in OFFICIAL_MODES:
        return OFFICIAL_MODES[mixtok_name]
    raise unknown_name_error("AFFNet variant", name, list(SIZES) + list(OFFICIAL_MODES))


def _official_key(params: Mapping[str, Any], collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    parts, node = [], params
    for part in module:
        node = node[part]
        numbered = re.fullmatch(r"(layer_\d+|global_rep)_(\d+)", part)
        parts += [numbered[1], numbered[2]] if numbered else ["classifier", "fc"] if part == "classifier_fc" else [part]
        if "conv_3x3" in node or {"conv", "norm"} <= set(node):  # InvertedResidual / ConvLayer: an nn.Sequential
            parts.append("block")
    layout = ("conv" if len(leaf.shape) == 4 else "linear") if leaf_name == "kernel" else "same"
    return ".".join(parts + [TORCH_LEAF_NAMES.get(leaf_name, leaf_name)]), layout


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]):
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    )
    return build_table(
        {"params": shapes["params"], "batch_stats": shapes["batch_stats"]},
        functools.partial(_official_key, shapes["params"]),
    )


def _hint(arrays: Mapping[str, Any]) -> str:
    if any(".local_rep." in k or ".pre_norm_" in k for k in arrays):
        return " The keys look like a cvnets MobileViT's (local_rep, pre_norm_mha), not AFFNet's."
    return ""


def convert(name: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None, **overrides) -> dict[str, Any]:
    """mixtok variables {'params': ..., 'batch_stats': ...} (float32 numpy) from an official AFFNet state dict.

    `name`: `affnet_et`, `affnet_t`, `affnet` or the official mode (`xx_small` ...). `state_dict`: the
    model's state dict or a checkpoint that wraps it ({'model_state_dict': ...}, {'model': ...};
    'module.' prefixes are dropped), values numpy arrays or torch tensors. `num_classes=None` reads
    the class count from classifier.fc.weight; `overrides` go to `create_model`. Raises one
    ValueError listing every unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict, WRAPPER_KEYS).items()}
    if num_classes is None:
        weight = arrays.get("classifier.fc.weight")
        num_classes = 0 if weight is None else int(weight.shape[0])
    table = _table(model_name, num_classes, freeze(overrides))
    uncounted = {e.key[: -len("running_mean")] + BATCH_COUNTER for e in table if e.key.endswith(".running_mean")}
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    return variables_from_state_dict(
        table,
        arrays,
        f"The AFFNet state dict does not fit mixtok's {model_name} ({settings})",
        ignored=uncounted,
        hint=_hint(arrays),
    )


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    Holds every key of the official `AffNet(opts).state_dict()`, num_batches_tracked as 0, so that
    `model.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)` loads it.
    """
    model_name = resolve_name(name)
    if "params" not in variables:
        raise ValueError(
            f"to_official takes variables {{'params': ..., 'batch_stats': ...}}; got a mapping with "
            f"keys {sorted(variables)}."
        )
    variables = {c: nn.meta.unbox(variables[c]) for c in ("params", "batch_stats") if c in variables}
    kernel = variables["params"].get("classifier_fc", {}).get("kernel")
    num_classes = 0 if kernel is None else int(kernel.shape[-1])
    table = _table(model_name, num_classes, freeze(overrides))
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    arrays = state_dict_from_variables(table, variables, f"The variables do not fit mixtok's {model_name} ({settings})")
    return with_batch_counters(arrays, np.array(0, np.int64))


def official_shapes(name: str, *, num_classes: int = 1000, **overrides) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the official state dict of `name`, as `to_official` writes it (no weights are made)."""
    table = _table(resolve_name(name), num_classes, freeze(overrides))
    return with_batch_counters({e.key: e.official_shape for e in table}, ())


def cli_summary(variables: dict[str, Any]) -> str:
    classes = variables["params"]["classifier_fc"]["kernel"].shape[-1] if "classifier_fc" in variables["params"] else 0
    statistics = sum(leaf.size for leaf in jax.tree.leaves(variables["batch_stats"]))
    return f" ({classes} classes) and {statistics:,} BatchNorm statistics"


main = command_line(__name__)  # python -m mixtok.interop.affnet --help; see official.command_line


if __name__ == "__main__":
    sys.exit(main())
