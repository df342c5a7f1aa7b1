"""Converts official RaftMLP state dicts (okojoalg/raft-mlp) to mixtok variables and back.

    state_dict = load_state_dict("last_model_0.pt")               # a bare state dict ('module.' dropped)
    variables = convert("raftmlp_s", state_dict)                   # {'params': ...}
    logits = create_model("raftmlp_s").apply(variables, images_nhwc)

or once, from the shell (then `load_variables(OUTPUT)`):

    python -m mixtok.interop.raft_mlp raftmlp_s last_model_0.pt raftmlp_s.msgpack

(exit code 0 when written; 2 for bad input or arguments, with one `error:` message on stderr: an unknown name
lists the close matches, a state dict that does not fit lists every unexpected, missing and misshaped key; as
every importer's command line, official.run_cli.)

Weights: the official README publishes no ImageNet checkpoints (okojoalg/raft-mlp @ 6060d5d9 README.md,
"Object Detection": the user places their own `weights/imagenet-raft-mlp-cross-mlp-emb-{s,m,l}/last_model_0.pt`,
which libs/train.py writes with ignite's `Checkpoint({"model": model})`: the bare `model.state_dict()`, with
'module.' prefixes under DistributedDataParallel). This module converts such a state dict. Names are mixtok's
(`raftmlp_s`) or the official settings name (`imagenet-raft-mlp-cross-mlp-emb-s`).

mixtok's RaftMLP names its modules after the official ones (k = 2 + j: the level's `fn` Sequential holds the
embedding, an Identity, the blocks, ToPixel; a block Sequential holds RaftShrink, PermutedBlock (vertical),
Rearrange, PermutedBlock (horizontal), RaftExpansion, ChannelBlock):

    levels.i.fn.0.fc.weight / .bias          levels_i_embedding/kernel, /bias              (Linear [out, in])
    levels.i.fn.k.1.norm.1.weight / .bias    levels_i_blocks_j/mixer/vertical/norm/*       (PERMUTED, below)
    levels.i.fn.k.1.fn.0 / .fn.3 .*          levels_i_blocks_j/mixer/vertical/fc1, fc2/*
    levels.i.fn.k.3.*                        levels_i_blocks_j/mixer/horizontal/*          (the same)
    levels.i.fn.k.5.norm.* / .fn.0 / .fn.3   levels_i_blocks_j/channel/norm, fc1, fc2/*
    heads.0.1.weight / .bias                 head/norm/scale, /bias
    classifier.weight / .bias                head/fc/kernel, /bias

The permuted blocks' LayerNorm sees the channels in the official `(co r)` order (libs/modules.py
`PermutedBlock`: `b (c1 o1) (c2 o2) -> b (o1 o2) (c1 c2)` with c1 = C / r, c2 = r), so its weight j = co * r +
raft is channel raft * (C / r) + co of the `(r co)` channel axis; mixtok's `norm/scale[c]` is channel c. `convert`
permutes those arrays (`official.reshape(C / r, r).T`), `to_official` back.

The class count is read from classifier.weight (`num_classes=` overrides). Other create_model arguments pass
through `**overrides`; `image_size` (the official pretrained_image_size) sizes the token MLPs.

Checked against the official code (okojoalg/raft-mlp @ 6060d5d9 libs/models.py + libs/modules.py, unmodified;
PyTorch 2.14 CPU, einops) with

    PYTHONPATH=. python tools/make_raft_mlp_fixtures.py --official-repo raft-mlp --parity --seeds 3

The official models are built as libs/train.py `initialize` builds them from the three released settings
(pretrained_image_size 224); every parameter is random (weights N(0, 1 / fan_in), biases N(0, 0.1^2), LayerNorm
weights U(0.5, 1.5); the model has no buffers). Eval logits on a random batch of 2 are compared with mixtok's
(float32, CPU, jit) after `convert(name, model.state_dict())`, for seeds 0, 1, 2:

    variant    size    largest max-abs logit error    relative to the largest logit
    raftmlp_s  224 px  8.9e-7                         7.2e-7
    raftmlp_s  256 px  3.7e-6                         1.9e-6
    raftmlp_m  224 px  1.0e-6                         7.0e-7
    raftmlp_m  256 px  4.2e-6                         1.8e-6
    raftmlp_l  224 px  1.2e-6                         9.1e-7
    raftmlp_l  256 px  3.7e-6                         1.9e-6

(2026-12-07.) At 256 px every level's grid (64, 32, 16, 8) differs from the trained one (56, 28, 14, 7), so
every token-mixing step goes through the bicubic RaftShrink / RaftExpansion (`torch_bicubic_resize`, PyTorch's
A = -0.75 kernel). The official parameter counts at 224 px (9,868,768 / 21,413,632 / 36,184,672) were read from
the same builds.

`official_shapes` equals the official state dict's keys and shapes, and `to_official` of converted variables
equals the official state dict. tests/interop/test_raft_mlp_import.py checks tiny official models (golden
fixtures in tests/fixtures/raft_mlp, one of them run off its trained grid) without torch.
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
from mixtok.interop.weight_files import load_state_dict, load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.models import create_model
from mixtok.models.raft_mlp_variants import SIZES
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

OFFICIAL_NAMES = {spec[0]: name for name, spec in SIZES.items()}  # "imagenet-raft-mlp-cross-mlp-emb-s" -> ...
CLI_DESCRIPTION = (
    "Converts an official RaftMLP state dict (okojoalg/raft-mlp, .pt) to mixtok variables (flax msgpack; read "
    "them back with mixtok.interop.raft_mlp.load_variables). Exit codes: 0 written, 2 bad input or arguments."
)
CLI_NAME_HELP = "raftmlp_s, raftmlp_m, raftmlp_l (or the official settings name imagenet-raft-mlp-cross-mlp-emb-s ...)"
_LEAF_NAMES = {"kernel": "weight", "scale": "weight"}
_PERMUTED_NORM = re.compile(r"levels\.\d+\.fn\.\d+\.[13]\.norm\.1\.(weight|bias)")


def resolve_name(name: str) -> str:
    """The mixtok name for a mixtok name (`raftmlp_s`) or an official settings name."""
    if name.replace("-", "_") in SIZES:
        return name.replace("-", "_")
    if name in OFFICIAL_NAMES:
        return OFFICIAL_NAMES[name]
    raise unknown_name_error("RaftMLP variant", name, list(SIZES) + list(OFFICIAL_NAMES))


def _official_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    leaf_key = _LEAF_NAMES.get(leaf_name, leaf_name)
    layout = "linear" if leaf_name == "kernel" else "same"
    if module[0] == "head":
        return (f"heads.0.1.{leaf_key}" if module[1] == "norm" else f"classifier.{leaf_key}"), layout
    if match := re.fullmatch(r"levels_(\d+)_embedding", module[0]):
        return f"levels.{match[1]}.fn.0.fc.{leaf_key}", layout
    match = re.fullmatch(r"levels_(\d+)_blocks_(\d+)", module[0])
    prefix = f"levels.{match[1]}.fn.{2 + int(match[2])}"
    if module[1] == "mixer":
        step, layer = {"vertical": 1, "horizontal": 3}[module[2]], module[3]
    else:  # channel
        step, layer = 5, module[2]
    part = {"norm": "norm.1" if step != 5 else "norm", "fc1": "fn.0", "fc2": "fn.3"}[layer]
    return f"{prefix}.{step}.{part}.{leaf_key}", layout


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]):
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    size = model.image_size  # any input works; the trained size is the cheapest that needs no resize
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    )
    return build_table({"params": shapes["params"]}, _official_key)


def _permute(arrays: dict[str, np.ndarray], raft_sizes: Mapping[str, int], inverse: bool) -> None:
    """Reorders the permuted blocks' LayerNorm arrays in place: official (co r) -> mixtok (r co), or back."""
    for key, r in raft_sizes.items():
        if key in arrays and arrays[key].ndim == 1 and arrays[key].shape[0] % r == 0:
            a = arrays[key]
            arrays[key] = a.reshape(r, -1).T.reshape(-1) if inverse else a.reshape(-1, r).T.reshape(-1)


def convert(name: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None, **overrides) -> dict[str, Any]:
    """mixtok variables {'params': ...} (float32 numpy) from an official RaftMLP state dict.

    `name`: `raftmlp_s`, `raftmlp_m`, `raftmlp_l` or the official settings name. `state_dict`: the model's state
    dict (a checkpoint wrapping it in 'state_dict' / 'model' and 'module.' prefixes are unwrapped), values numpy
    arrays or torch tensors. `num_classes=None` reads the class count from classifier.weight; `overrides` go to
    `create_model`. Raises one ValueError listing every unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict).items()}
    if num_classes is None:
        weight = arrays.get("classifier.weight")
        num_classes = 0 if weight is None else int(weight.shape[0])
    table = _table(model_name, num_classes, freeze(overrides))
    _permute(arrays, _raft_sizes_of(model_name, num_classes, overrides), inverse=False)
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    return variables_from_state_dict(
        table, arrays, f"The RaftMLP state dict does not fit mixtok's {model_name} ({settings})"
    )


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    Holds every key of the official `RaftMLP(...).state_dict()` (it has no buffers), so that
    `model.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)` loads it.
    """
    model_name = resolve_name(name)
    if "params" not in variables:
        raise ValueError(f"to_official takes variables {{'params': ...}}; got a mapping with keys {sorted(variables)}.")
    params = nn.meta.unbox(variables["params"])
    num_classes = int(params["head"]["fc"]["kernel"].shape[-1]) if "fc" in params.get("head", {}) else 0
    table = _table(model_name, num_classes, freeze(overrides))
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    arrays = state_dict_from_variables(
        table, {"params": params}, f"The variables do not fit mixtok's {model_name} ({settings})"
    )
    _permute(arrays, _raft_sizes_of(model_name, num_classes, overrides), inverse=True)
    return arrays


def _raft_sizes_of(model_name: str, num_classes: int, overrides: Mapping[str, Any]) -> dict[str, int]:
    """{official permuted-norm key: raft size} from the model's raft_sizes (one per level, or one for all)."""
    model = create_model(model_name, num_classes=num_classes, **dict(overrides))
    stages = len(model.depths)
    sizes = model.raft_sizes if isinstance(model.raft_sizes, (list, tuple)) else (model.raft_sizes,) * stages
    keys = [e.key for e in _table(model_name, num_classes, freeze(overrides)) if _PERMUTED_NORM.fullmatch(e.key)]
    return {key: int(sizes[int(key.split(".")[1])]) for key in keys}


def official_shapes(name: str, *, num_classes: int = 1000, **overrides) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the official state dict of `name`, as `to_official` writes it (no weights are made)."""
    return {e.key: e.official_shape for e in _table(resolve_name(name), num_classes, freeze(overrides))}


def cli_summary(variables: dict[str, Any]) -> str:
    head = variables["params"]["head"]
    return f" ({head['fc']['kernel'].shape[-1] if 'fc' in head else 0} classes)"


main = command_line(__name__)  # the importers' shared command line (official.run_cli)


if __name__ == "__main__":
    sys.exit(main())
