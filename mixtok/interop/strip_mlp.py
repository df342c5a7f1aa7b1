"""Converts the official Strip-MLP checkpoints (Med-Process/Strip_MLP) to mixtok variables and back.

    state_dict = load_state_dict("ckpt_epoch_299.pth")          # {'model': ...} is unwrapped
    variables = convert("strip_mlp_tiny", state_dict)            # {'params': ..., 'batch_stats': ...}
    logits = create_model("strip_mlp_tiny").apply(variables, images_nhwc)   # eval: running statistics

or once, from the shell (then `load_variables(OUTPUT)`):

    python -m mixtok.interop.strip_mlp strip_mlp_tiny ckpt_epoch_299.pth strip_mlp_tiny.msgpack

(exit code 0 when written; 2 for bad input or arguments, with one `error:` message on stderr: an unknown name
lists the close matches, a state dict that does not fit lists every unexpected, missing and misshaped key; as
every importer's command line, official.run_cli.)

Released weights (README.md, Baidu links) are training checkpoints as utils.py `save_checkpoint` writes them:
{'model': state_dict, 'optimizer', 'lr_scheduler', 'max_accuracy', 'epoch', 'config' (a yacs CfgNode), ['amp']};
utils.py `load_checkpoint` evaluates `checkpoint['model']`, which is what `load_state_dict` and the command line
take. torch.load(weights_only=True) refuses the yacs CfgNode, so such a file is a ValueError naming the way out
(load it yourself if you trust it and pass it to `convert`, which unwraps 'model'). The files were not
downloaded here. Names are mixtok's (`strip_mlp_tiny`) or the official MODEL.NAME
(`smlp_tiny_alpha3_patch4_224_imagenet1k`).

mixtok's StripMLPNet names its modules after the official ones (numbered children joined by `_`):

    patch_embed, merging{1,2,3}, conv_s1_28, conv_s1_14, conv_s2_14 .weight    same names /kernel (OIHW -> HWIO)
    blocks{i}.{j}.token_mixing.dwsc.conv_merge.BN / .Conv      blocks{i}_{j}/token_mixing/dwsc_bn, dwsc_conv
    blocks{i}.{j}.token_mixing.smlp_block.mlp.0 / .1           .../token_mixing/mlp_conv, mlp_bn
    ....smlp_block.{proj_h, proj_w, fuse_h, fuse_w, BN, fc_h, fc_w, fuse}   .../token_mixing/<same>
    ....smlp_block.reweight.fc1 / .fc2                         .../token_mixing/reweight_fc1, reweight_fc2
    ....smlp_block.relate_pos_h / _w.embeddings_table          .../token_mixing/relate_pos_h, _w/embeddings_table
    blocks{i}.{j}.channel_mixing.{conv_77, layer_norm, fc1, fc2, grn}       blocks{i}_{j}/channel_mixing/<same>
    norm.*                                                     norm/* (BatchNorm)
    head.weight [classes, C] / .bias                           head/kernel [C, classes], head/bias

    BatchNorm .weight / .bias               params .../scale, .../bias
    .running_mean / .running_var            batch_stats .../mean, .../var
    .num_batches_tracked                    dropped (`to_official` writes 0: mixtok does not count batches)

`proj_h` / `proj_w` weights [C2 W, W, 1, 3] are stored in flax's conv layout [1, 3, W, C2 W]; the GRN's gamma and
beta keep the official [1, 1, 1, 3C]. The class count is read from head.weight (`num_classes=` overrides; no head:
0). The strip weights and position tables fix the resolution: `image_size=None` (default) reads it from
blocks1.0's position table (2 * (image_size / 4) + 1 rows); other create_model arguments (depths, dims, alpha)
pass through `**overrides`.

Checked against the official code (Med-Process/Strip_MLP @ 492d7050 models/strip_mlp.py, unmodified; PyTorch
2.14 CPU, timm 1.0.31, whose old `timm.models.layers` path still imports) with

    PYTHONPATH=. python tools/make_strip_mlp_fixtures.py --official-repo Strip_MLP --parity --seeds 3

The official models are built as models/build.py builds them (img_size 224); every parameter and every
BatchNorm buffer is random (weights N(0, 1 / fan_in), biases N(0, 0.1^2), BatchNorm and LayerNorm weights
U(0.5, 1.5), GRN gamma / beta N(0, 0.5^2) / N(0, 0.1^2), position tables N(0, 0.5^2); running statistics
calibrated on a random batch, then each variance scaled by U(0.5, 1.5) and each mean moved by N(0, 0.2^2)
standard deviations: the tool's `randomise_`). Eval logits on a random batch of 2 are compared with mixtok's
(float32, CPU, jit) after `convert(name, model.state_dict())`, for seeds 0, 1, 2:

    variant               size    largest max-abs logit error    relative to the largest logit
    strip_mlp_tiny_light  224 px  9.1e-7                         8.1e-7
    strip_mlp_small       224 px  1.2e-6                         1.0e-6

(2026-12-07; largest logits 0.94 to 1.18 in magnitude. tiny_light's widths 80 ... 640 are all multiples of 80, so
its strip MLPs have p = 2 channel groups; small's 96 ... 768 have p = 4.) mixtok's model needed no change. The
official parameter counts of tiny_light and small at 224 px (18,243,920 / 42,568,600) were read from the same
builds, and those of tiny and base (24,903,920 / 57,216,480) from builds of their yaml's arguments.

`official_shapes` equals the official state dict's keys and shapes, and `to_official` of converted variables
equals the official state dict (num_batches_tracked written as 0) and loads with strict=True.
tests/interop/test_strip_mlp_import.py checks tiny official models (golden fixtures in tests/fixtures/strip_mlp)
without torch.
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
from mixtok.interop.weight_files import load_state_dict as _load_state_dict
from mixtok.interop.weight_files import load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.models import create_model
from mixtok.models.strip_mlp import PATCH_SIZE
from mixtok.models.strip_mlp_variants import SIZES
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

OFFICIAL_NAMES = {spec[0]: name for name, spec in SIZES.items()}  # "smlp_tiny_alpha3_..." -> "strip_mlp_tiny"
WRAPPER_KEYS = ("model",)  # utils.py save_checkpoint; load_checkpoint evaluates checkpoint['model']
CLI_DESCRIPTION = (
    "Converts an official Strip-MLP checkpoint (Med-Process/Strip_MLP, .pth; its 'model' weights) to mixtok "
    "variables (flax msgpack; read them back with mixtok.interop.strip_mlp.load_variables). Exit codes: 0 written, "
    "2 bad input or arguments."
)
CLI_NAME_HELP = (
    "strip_mlp_tiny_light, strip_mlp_tiny, strip_mlp_small, strip_mlp_base (or the official MODEL.NAME: "
    "smlp_tiny_light_alpha3_patch4_224_imagenet1k ...)"
)
# Mixer module names that are not the official smlp_block child of the same name.
_MIXER_PARTS = {
    "dwsc_bn": ["dwsc", "conv_merge", "BN"],
    "dwsc_conv": ["dwsc", "conv_merge", "Conv"],
    "mlp_conv": ["smlp_block", "mlp", "0"],
    "mlp_bn": ["smlp_block", "mlp", "1"],
    "reweight_fc1": ["smlp_block", "reweight", "fc1"],
    "reweight_fc2": ["smlp_block", "reweight", "fc2"],
}


def resolve_name(name: str) -> str:
    """The mixtok name for a mixtok name (`strip_mlp_tiny`) or an official MODEL.NAME."""
    mixtok_name = name.replace("-", "_")
    if mixtok_name in SIZES:
        return mixtok_name
    if mixtok_name in OFFICIAL_NAMES:
        return OFFICIAL_NAMES[mixtok_name]
    raise unknown_name_error("Strip-MLP variant", name, list(SIZES) + list(OFFICIAL_NAMES))


def load_state_dict(path) -> dict[str, np.ndarray]:
    """{key: numpy array} of an official checkpoint file: its 'model' weights (a bare state dict as it is).

    A training checkpoint also holds its yacs config, which torch.load(weights_only=True) refuses: a ValueError
    says how to load it.
    """
    try:
        return _load_state_dict(path, wrapper_keys=WRAPPER_KEYS)
    except ValueError as e:
        if "weights_only" not in str(e):
            raise
        raise ValueError(
            f"{path} holds more than tensors (the official training checkpoint keeps its yacs 'config'), which "
            f"torch.load(weights_only=True) refuses to unpickle. If you trust the file: checkpoint = "
            f"torch.load(path, weights_only=False) (needs `pip install yacs`), then convert(name, checkpoint)."
        ) from e


def _official_parts(part: str, in_mixer: bool) -> list[str]:
    if match := re.fullmatch(r"blocks(\d)_(\d+)", part):
        return [f"blocks{match[1]}", match[2]]
    if in_mixer and part in _MIXER_PARTS:
        return _MIXER_PARTS[part]
    if in_mixer:
        return ["smlp_block", part]
    return [part]


def _official_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    parts = []
    for i, part in enumerate(module):
        parts += _official_parts(part, in_mixer=i > 0 and module[i - 1] == "token_mixing")
    layout = ("conv" if len(leaf.shape) == 4 else "linear") if leaf_name == "kernel" else "same"
    return ".".join(parts + [TORCH_LEAF_NAMES.get(leaf_name, leaf_name)]), layout


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, image_size: int, overrides: tuple[tuple[str, Any], ...]):
    model = create_model(name, num_classes=num_classes, image_size=image_size, **dict(overrides))
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), images))
    return build_table({"params": shapes["params"], "batch_stats": shapes["batch_stats"]}, _official_key)


def _image_size(table_rows: int | None, image_size: int | None) -> int:
    if image_size is not None:
        return image_size
    if table_rows is None:
        return 224
    return (table_rows - 1) // 2 * PATCH_SIZE


def _settings(num_classes, image_size, overrides) -> str:
    return ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, "image_size": image_size, **overrides}.items())


def convert(
    name: str,
    state_dict: Mapping[str, Any],
    *,
    num_classes: int | None = None,
    image_size: int | None = None,
    **overrides,
) -> dict[str, Any]:
    """mixtok variables {'params': ..., 'batch_stats': ...} (float32 numpy) from an official Strip-MLP state dict.

    `name`: `strip_mlp_tiny_light` ... `strip_mlp_base` or the official MODEL.NAME. `state_dict`: the model's
    state dict or a checkpoint that wraps it ({'model': ...}; 'module.' prefixes are dropped), values numpy
    arrays or torch tensors. `num_classes=None` reads the class count from head.weight, `image_size=None` the
    resolution from blocks1.0's position table; `overrides` go to `create_model`. Raises one ValueError listing
    every unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict, WRAPPER_KEYS).items()}
    if num_classes is None:
        weight = arrays.get("head.weight")
        num_classes = 0 if weight is None else int(weight.shape[0])
    table_key = "blocks1.0.token_mixing.smlp_block.relate_pos_h.embeddings_table"
    rows = int(arrays[table_key].shape[0]) if table_key in arrays else None
    image_size = _image_size(rows, image_size)
    table = _table(model_name, num_classes, image_size, freeze(overrides))
    uncounted = {e.key[: -len("running_mean")] + BATCH_COUNTER for e in table if e.key.endswith(".running_mean")}
    what = (
        f"The Strip-MLP state dict does not fit mixtok's {model_name} ({_settings(num_classes, image_size, overrides)})"
    )
    return variables_from_state_dict(table, arrays, what, ignored=uncounted)


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    Holds every key of the official `StripMLPNet(...).state_dict()`, num_batches_tracked as 0, so that
    `model.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)` loads it.
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
    position = params.get("blocks1_0", {}).get("token_mixing", {}).get("relate_pos_h", {}).get("embeddings_table")
    image_size = _image_size(
        None if position is None else int(np.shape(position)[0]), overrides.pop("image_size", None)
    )
    table = _table(model_name, num_classes, image_size, freeze(overrides))
    what = f"The variables do not fit mixtok's {model_name} ({_settings(num_classes, image_size, overrides)})"
    return with_batch_counters(state_dict_from_variables(table, variables, what), np.array(0, np.int64))


def official_shapes(
    name: str, *, num_classes: int = 1000, image_size: int = 224, **overrides
) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the official state dict of `name`, as `to_official` writes it (no weights are made)."""
    table = _table(resolve_name(name), num_classes, image_size, freeze(overrides))
    return with_batch_counters({e.key: e.official_shape for e in table}, ())


def cli_summary(variables: dict[str, Any]) -> str:
    params = variables["params"]
    classes = params["head"]["kernel"].shape[-1] if "head" in params else 0
    statistics = sum(leaf.size for leaf in jax.tree.leaves(variables["batch_stats"]))
    return f" ({classes} classes) and {statistics:,} BatchNorm statistics"


main = command_line(__name__)  # the importers' shared command line (official.run_cli)


if __name__ == "__main__":
    sys.exit(main())
