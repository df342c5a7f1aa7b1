"""Converts the official MS-MLP checkpoints (JegZheng/MS-MLP) to mixtok variables and back.

    state_dict = load_state_dict("msmlp_tiny_patch4_ckpt_epoch299.pth")   # {'model': ...} is unwrapped
    variables = convert("ms_mlp_t", state_dict)                             # {'params': ...}
    logits = create_model("ms_mlp_t").apply(variables, images_nhwc)

or once, from the shell (then `load_variables(OUTPUT)`):

    python -m mixtok.interop.ms_mlp ms_mlp_t msmlp_tiny_patch4_ckpt_epoch299.pth ms_mlp_t.msgpack

(exit code 0 when written; 2 for bad input or arguments, with one `error:` message on stderr: an unknown name
lists the close matches, a state dict that does not fit lists every unexpected, missing and misshaped key; as
every importer's command line, official.run_cli.)

Released weights (README.md, "download" links): msmlp_{tiny,small,base}_patch4_ckpt_epoch299.pth, training
checkpoints as utils.py `save_checkpoint` writes them: {'model': state_dict, 'optimizer', 'lr_scheduler',
'max_accuracy', 'epoch', 'config' (a yacs CfgNode), ['model_ema'], ['amp']}; main.py `--resume` evaluates
`checkpoint['model']`, which is what `load_state_dict` and the command line take (`ema=True`: 'model_ema').
torch.load(weights_only=True) refuses the yacs CfgNode, so such a file is a ValueError naming the way out:
load it yourself if you trust it (`torch.load(path, weights_only=False)`) and pass it to `convert`, which
unwraps 'model'. (The files were not downloaded here: their container is the one utils.py writes.)
Names are mixtok's (`ms_mlp_t`) or the official MODEL.NAME (`ms_mlp_tiny_patch4_shift5_224`).

mixtok's MSMLP names its modules after the official ones (numbered children joined by `_`):

    patch_embed.proj.weight / .bias         patch_embed/proj/kernel, /bias       (conv OIHW -> HWIO)
    patch_embed.norm.weight / .bias         patch_embed/norm/scale, /bias
    layers.i.blocks.j.dwconv_lr.g.*         layers_i_blocks_j/mixer/dwconv_lr_g/* (depthwise [c, 1, k, k])
    layers.i.blocks.j.dwconv_td.g.*         layers_i_blocks_j/mixer/dwconv_td_g/*
    layers.i.blocks.j.norm.*                layers_i_blocks_j/norm/*
    layers.i.blocks.j.pwconv1, pwconv2 .*   layers_i_blocks_j/mlp/fc1, fc2/*     (Linear [out, in] -> [in, out])
    layers.i.blocks.j.gamma                 layers_i_blocks_j/gamma
    layers.i.downsample.proj, norm .*       layers_i_downsample/proj, norm/*     (i = 0, 1, 2)
    norm.weight / .bias                     head/norm/scale, /bias
    head.weight / .bias                     head/fc/kernel, /bias

The class count is read from head.weight (`num_classes=` overrides; no head: 0). No parameter depends on the
resolution. Other create_model arguments (depths, dims, mix_sizes, ...) pass through `**overrides`.

Checked against the official code (JegZheng/MS-MLP @ a10d34d9 models/ms_mlp.py, unmodified; PyTorch 2.14
CPU, timm 1.0.31 whose old `timm.models.layers` path still imports) with

    PYTHONPATH=. python tools/make_ms_mlp_fixtures.py --official-repo MS-MLP --parity --seeds 3

The official models are built as models/build.py builds them from config.py + the yaml (img_size 224, or 256
for the second resolution); every parameter is random (weights N(0, 1 / fan_in), biases N(0, 0.1^2),
LayerNorm weights U(0.5, 1.5), gamma N(0, 0.5^2) so that no residual branch is negligible; the model has no
buffers). Eval logits on a random batch of 2 are compared with mixtok's (float32, CPU, jit) after
`convert(name, model.state_dict())`, for seeds 0, 1, 2:

    variant    size    largest max-abs logit error    relative to the largest logit
    ms_mlp_t   224 px  2.0e-6                         4.8e-7
    ms_mlp_t   256 px  2.2e-6                         5.5e-7
    ms_mlp_s   224 px  2.4e-6                         5.9e-7
    ms_mlp_s   256 px  3.0e-6                         8.8e-7

(2026-12-07; the official model takes any img_size whose patch grid its stride-2 downsamplings halve, and
256 px is a second multiple of 32.) mixtok's model needed no change. The official parameter counts of all three
variants at 224 px (28,656,232 / 50,303,752 / 88,696,792) were read from the same builds.

`official_shapes` equals the official state dict's keys and shapes for all three variants, and `to_official`
of converted variables equals the official state dict and loads with strict=True.
tests/interop/test_ms_mlp_import.py checks tiny official models (golden fixtures in tests/fixtures/ms_mlp)
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
    build_table,
    command_line,
    freeze,
    state_dict_from_variables,
    variables_from_state_dict,
)
from mixtok.interop.weight_files import load_state_dict as _load_state_dict
from mixtok.interop.weight_files import load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.models import create_model
from mixtok.models.ms_mlp_variants import SIZES
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

OFFICIAL_NAMES = {spec[0]: name for name, spec in SIZES.items()}  # "ms_mlp_tiny_patch4_shift5_224" -> "ms_mlp_t"
WRAPPER_KEYS = ("model",)  # utils.py save_checkpoint; main.py evaluates checkpoint['model']
EMA_WRAPPER_KEYS = ("model_ema",)  # utils.py save_checkpoint with a model EMA
CLI_DESCRIPTION = (
    "Converts an official MS-MLP checkpoint (JegZheng/MS-MLP, .pth; its 'model' weights) to mixtok variables "
    "(flax msgpack; read them back with mixtok.interop.ms_mlp.load_variables). Exit codes: 0 written, "
    "2 bad input or arguments."
)
CLI_NAME_HELP = "ms_mlp_t, ms_mlp_s, ms_mlp_b (or the official MODEL.NAME: ms_mlp_tiny_patch4_shift5_224 ...)"
_LEAF_NAMES = {"kernel": "weight", "scale": "weight"}


def resolve_name(name: str) -> str:
    """The mixtok name for a mixtok name (`ms_mlp_t`) or an official MODEL.NAME (`ms_mlp_tiny_patch4_shift5_224`)."""
    mixtok_name = name.replace("-", "_")
    if mixtok_name in SIZES:
        return mixtok_name
    if mixtok_name in OFFICIAL_NAMES:
        return OFFICIAL_NAMES[mixtok_name]
    raise unknown_name_error("MS-MLP variant", name, list(SIZES) + list(OFFICIAL_NAMES))


def load_state_dict(path, *, ema: bool = False) -> dict[str, np.ndarray]:
    """{key: numpy array} of an official checkpoint file: its 'model' weights, or with `ema=True` its 'model_ema'.

    A file that holds a bare state dict is returned as it is (without `ema`). A released training checkpoint
    also holds its yacs config, which torch.load(weights_only=True) refuses: a ValueError says how to load it.
    """
    try:
        return _load_state_dict(path, wrapper_keys=EMA_WRAPPER_KEYS if ema else WRAPPER_KEYS, required=ema)
    except ValueError as e:
        if "weights_only" not in str(e):
            raise
        raise ValueError(
            f"{path} holds more than tensors (the official training checkpoint keeps its yacs 'config'), which "
            f"torch.load(weights_only=True) refuses to unpickle. If you trust the file: checkpoint = "
            f"torch.load(path, weights_only=False) (needs `pip install yacs`), then convert(name, checkpoint)."
        ) from e


def _official_parts(part: str) -> list[str]:
    """The official key's parts for one mixtok module name: `layers_2_blocks_5` -> layers.2.blocks.5."""
    if match := re.fullmatch(r"layers_(\d+)_blocks_(\d+)", part):
        return ["layers", match[1], "blocks", match[2]]
    if match := re.fullmatch(r"layers_(\d+)_downsample", part):
        return ["layers", match[1], "downsample"]
    if match := re.fullmatch(r"dwconv_(lr|td)_(\d+)", part):
        return [f"dwconv_{match[1]}", match[2]]
    return {"mixer": [], "mlp": [], "fc1": ["pwconv1"], "fc2": ["pwconv2"]}.get(part, [part])


def _official_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    if module[:1] == ["head"]:  # the classifier head module holds the official top-level `norm` and `head`
        module = {"norm": ["norm"], "fc": ["head"]}[module[1]]
    parts = [p for part in module for p in _official_parts(part)]
    layout = ("conv" if len(leaf.shape) == 4 else "linear") if leaf_name == "kernel" else "same"
    return ".".join(parts + [_LEAF_NAMES.get(leaf_name, leaf_name)]), layout


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]):
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    stride = 4 * 2 ** (len(dict(overrides).get("depths", (0,) * 4)) - 1)  # the smallest input: no parameter
    shapes = nn.meta.unbox(  # depends on the resolution
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, stride, stride, 3), jnp.float32))
    )
    return build_table({"params": shapes["params"]}, _official_key)


def convert(name: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None, **overrides) -> dict[str, Any]:
    """mixtok variables {'params': ...} (float32 numpy) from an official MS-MLP state dict.

    `name`: `ms_mlp_t`, `ms_mlp_s`, `ms_mlp_b` or the official MODEL.NAME. `state_dict`: the model's state dict
    or a checkpoint that wraps it ({'model': ...}; 'module.' prefixes are dropped), values numpy arrays or
    torch tensors. `num_classes=None` reads the class count from head.weight; `overrides` go to
    `create_model`. Raises one ValueError listing every unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict, WRAPPER_KEYS).items()}
    if num_classes is None:
        weight = arrays.get("head.weight")
        num_classes = 0 if weight is None else int(weight.shape[0])
    table = _table(model_name, num_classes, freeze(overrides))
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    return variables_from_state_dict(
        table, arrays, f"The MS-MLP state dict does not fit mixtok's {model_name} ({settings})"
    )


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    Holds every key of the official `MS_MLP(...).state_dict()` (it has no buffers), so that
    `model.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)` loads it.
    """
    model_name = resolve_name(name)
    if "params" not in variables:
        raise ValueError(f"to_official takes variables {{'params': ...}}; got a mapping with keys {sorted(variables)}.")
    params = nn.meta.unbox(variables["params"])
    num_classes = int(params["head"]["fc"]["kernel"].shape[-1]) if "fc" in params.get("head", {}) else 0
    table = _table(model_name, num_classes, freeze(overrides))
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    return state_dict_from_variables(
        table, {"params": params}, f"The variables do not fit mixtok's {model_name} ({settings})"
    )


def official_shapes(name: str, *, num_classes: int = 1000, **overrides) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the official state dict of `name`, as `to_official` writes it (no weights are made)."""
    return {e.key: e.official_shape for e in _table(resolve_name(name), num_classes, freeze(overrides))}


def cli_summary(variables: dict[str, Any]) -> str:
    head = variables["params"]["head"]
    return f" ({head['fc']['kernel'].shape[-1] if 'fc' in head else 0} classes)"


CLI_EMA = True  # --ema: the EMA weights (load_state_dict(path, ema=True))
main = command_line(__name__)  # the importers' shared command line (official.run_cli)


if __name__ == "__main__":
    sys.exit(main())
