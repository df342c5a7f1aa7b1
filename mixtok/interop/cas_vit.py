"""Converts the official CAS-ViT checkpoints (Tianfang-Zhang/CAS-ViT) to mixtok variables and back.

    state_dict = load_state_dict("rcvit_m.pth")          # {'model': ...} is unwrapped; ema=True: 'model_ema'
    variables = convert("cas_vit_m", state_dict)          # {'params': ..., 'batch_stats': ...}
    logits = create_model("cas_vit_m").apply(variables, images_nhwc)   # eval: running statistics

or once, from the shell (then `load_variables(OUTPUT)`):

    python -m mixtok.interop.cas_vit rcvit_m rcvit_m.pth cas_vit_m.msgpack

(exit code 0 when written; 2 for bad input or arguments, with one `error:` message on stderr: an unknown name
lists the close matches, a state dict that does not fit lists every unexpected, missing and misshaped key; as
every importer's command line, official.run_cli.)

The checkpoints are state dicts of classification/model/rcvit.py's `RCViT`, as classification/utils.py
`save_model` writes them: {'model': state_dict, 'optimizer', 'epoch', 'scaler', 'args', and with
--model_ema True 'model_ema': the EMA model's state dict}. `main.py --eval True --resume` evaluates
`checkpoint['model']` (`checkpoint['state_dict']` with --usi_eval), which is what `load_state_dict` and the
command line take; `load_state_dict(path, ema=True)` takes the EMA weights instead. Names are mixtok's
(`cas_vit_m`) or the official `--model` (`rcvit_m`).

mixtok's CASViT names its modules after the official ones (numbered children joined by `_`), so a key is
its mixtok path with the numbers split off again (i: stage index in `network`, j: block):

    patch_embed.{0,3}.weight / .bias        patch_embed_{0,3}/kernel, /bias      (conv OIHW -> HWIO)
    patch_embed.{1,4}.*                     patch_embed_{1,4}/*                  (BatchNorm)
    network.i.j.local_perception.network.{0,1,2,4}.*   network_i_j/local_perception_network_{0,1,2,4}/*
    network.i.j.norm1 / norm2 .*            network_i_j/norm1, norm2/*
    network.i.j.attn.qkv, dwc, proj .*      network_i_j/attn/qkv, dwc, proj/*
    network.i.j.attn.oper_q.0.block.{0,1,3}.*   network_i_j/attn/oper_q_0/block_{0,1,3}/*  (oper_k alike)
    network.i.j.attn.oper_q.1.block.1.weight    network_i_j/attn/oper_q_1/block_1/kernel
    network.i.j.mlp.fc1, fc2 .*             network_i_j/mlp_fc1, mlp_fc2/*
    network.{1,3,5}.proj / norm .*          network_{1,3,5}_proj, _norm/*        (Embedding between stages)
    norm.*                                  norm/*
    head.weight [classes, C] / .bias        head/kernel [C, classes], head/bias
    dist_head.*                             dist_head/*                          (distillation=True only)

    BatchNorm .weight / .bias               params .../scale, .../bias
    .running_mean / .running_var            batch_stats .../mean, .../var
    .num_batches_tracked                    dropped (`to_official` writes 0: mixtok does not count batches;
                                            PyTorch reads it only when training with momentum=None)

The class count is read from head.weight (`num_classes=` overrides; no head: 0) and `distillation` from
whether the state dict has dist_head.* (rcvit.py's `RCViT` builds the dist_head by default; main.py builds
the models without it, but MODEL_ZOO.md's counts, 3.20M for XS, are those with it: a released file may hold
either, and both convert). No parameter depends on the resolution: a checkpoint fine-tuned at 384 px
(README.md "Finetuning", --input_size 384) converts as the 224 px one does. Other create_model arguments
(depths, dims, mlp_ratios, attn_bias) pass through `**overrides` for non-standard checkpoints.

Checked against the official code (Tianfang-Zhang/CAS-ViT @ 041d2d68 classification/model/rcvit.py,
unmodified; PyTorch 2.14 CPU, timm 1.0.31, its unused `einops` import stubbed) with

    PYTHONPATH=. python tools/make_cas_vit_fixtures.py --official-repo CAS-ViT --parity --seeds 3

The official rcvit_xs and rcvit_m, built as classification/main.py builds them (`distillation=False`), get
every parameter and every BatchNorm buffer random (weights N(0, 1 / fan_in), biases N(0, 0.1), BatchNorm
weights U(0.5, 1.5); running statistics calibrated on a random batch, then each variance scaled by
U(0.5, 1.5) and each mean moved by N(0, 0.2^2) standard deviations: see the tool's `randomise_` for why
they cannot be drawn blindly). Their eval-mode logits on a random batch of 2 are compared with mixtok's
(float32, CPU, jit) after `convert(name, model.state_dict())`, for seeds 0, 1, 2:

    variant      size    largest max-abs logit error    relative to the largest logit
    cas_vit_xs   224 px  1.9e-6                         1.6e-6
    cas_vit_xs   384 px  1.2e-6                         1.1e-6
    cas_vit_m    224 px  3.1e-6                         2.3e-6
    cas_vit_m    384 px  1.8e-6                         1.7e-6

(384 px is README.md's evaluation / fine-tuning size.) mixtok's model needed no change. `official_shapes`
equals the official state dict's keys and shapes for all four variants with and without the dist_head, and
`to_official` of converted variables equals the official state dict (num_batches_tracked written as 0) and
loads with strict=True. tests/interop/test_cas_vit_import.py checks tiny official models (golden fixtures
in tests/fixtures/cas_vit) without torch.
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
from mixtok.models.cas_vit_variants import SIZES
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

OFFICIAL_NAMES = {spec[0]: name for name, spec in SIZES.items()}  # "rcvit_xs" -> "cas_vit_xs", ...
# classification/main.py evaluates checkpoint['model'] (checkpoint['state_dict'] with --usi_eval).
WRAPPER_KEYS = ("model", "state_dict")
EMA_WRAPPER_KEYS = ("model_ema",)  # classification/utils.py save_model with --model_ema True
CLI_DESCRIPTION = (
    "Converts an official CAS-ViT checkpoint (Tianfang-Zhang/CAS-ViT, .pth; its 'model' weights) to mixtok "
    "variables (flax msgpack; read them back with mixtok.interop.cas_vit.load_variables). Exit codes: 0 written, "
    "2 bad input or arguments."
)
CLI_NAME_HELP = "cas_vit_xs, cas_vit_s, cas_vit_m, cas_vit_t (or the official --model: rcvit_xs ... rcvit_t)"


def resolve_name(name: str) -> str:
    """The mixtok name for a mixtok name (`cas_vit_xs`) or an official `--model` (`rcvit_xs`)."""
    mixtok_name = name.replace("-", "_")
    if mixtok_name in SIZES:
        return mixtok_name
    if mixtok_name in OFFICIAL_NAMES:
        return OFFICIAL_NAMES[mixtok_name]
    raise unknown_name_error("CAS-ViT variant", name, list(SIZES) + list(OFFICIAL_NAMES))


def load_state_dict(path, *, ema: bool = False) -> dict[str, np.ndarray]:
    """{key: numpy array} of an official checkpoint file: its 'model' weights, or with `ema=True` its 'model_ema'.

    A file that holds a bare state dict (no wrapper) is returned as it is either way.
    """
    if not ema:
        return _load_state_dict(path, wrapper_keys=WRAPPER_KEYS)
    try:
        return _load_state_dict(path, wrapper_keys=EMA_WRAPPER_KEYS)
    except ValueError as e:  # a training checkpoint without 'model_ema': its 'model' is not an array
        raise ValueError(
            f"{path} has no 'model_ema' state dict (it was not trained with --model_ema True); "
            f"load_state_dict(path) reads its 'model' weights."
        ) from e


def _official_parts(part: str) -> list[str]:
    """The official key's parts for one mixtok module name: `network_2_1` -> network.2.1, `mlp_fc1` -> mlp.fc1."""
    if match := re.fullmatch(r"(patch_embed|oper_q|oper_k|block)_(\d+)", part):
        return [match[1], match[2]]
    if match := re.fullmatch(r"network_(\d+)_(\d+|proj|norm)", part):
        return ["network", match[1], match[2]]
    if match := re.fullmatch(r"local_perception_network_(\d+)", part):
        return ["local_perception", "network", match[1]]
    if match := re.fullmatch(r"mlp_(fc\d)", part):
        return ["mlp", match[1]]
    return [part]


def _official_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    parts = [p for part in module for p in _official_parts(part)]
    layout = ("conv" if len(leaf.shape) == 4 else "linear") if leaf_name == "kernel" else "same"
    return ".".join(parts + [TORCH_LEAF_NAMES.get(leaf_name, leaf_name)]), layout


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]):
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    # No parameter depends on the resolution; 32 px is the smallest input the four strided stages take.
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    )
    return build_table({"params": shapes["params"], "batch_stats": shapes["batch_stats"]}, _official_key)


def _hint(arrays: Mapping[str, Any]) -> str:
    if any(re.match(r"norm\d\.", k) for k in arrays):
        return " It looks like a detection / segmentation backbone (fork_feat: norm0 ... norm6, no head)."
    return ""


def convert(
    name: str,
    state_dict: Mapping[str, Any],
    *,
    num_classes: int | None = None,
    distillation: bool | None = None,
    **overrides,
) -> dict[str, Any]:
    """mixtok variables {'params': ..., 'batch_stats': ...} (float32 numpy) from an official CAS-ViT state dict.

    `name`: `cas_vit_xs` ... `cas_vit_t` or the official `rcvit_xs` ... `rcvit_t`. `state_dict`: the model's
    state dict or a checkpoint that wraps it ({'model': ...}; 'module.' prefixes are dropped), values numpy
    arrays or torch tensors. `num_classes=None` reads the class count from head.weight, `distillation=None`
    whether there is a dist_head; `overrides` go to `create_model`. Raises one ValueError listing every
    unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict, WRAPPER_KEYS).items()}
    if num_classes is None:
        weight = arrays.get("head.weight")
        num_classes = 0 if weight is None else int(weight.shape[0])
    if distillation is None:
        distillation = "dist_head.weight" in arrays
    overrides = {"distillation": distillation, **overrides}
    table = _table(model_name, num_classes, freeze(overrides))
    uncounted = {e.key[: -len("running_mean")] + BATCH_COUNTER for e in table if e.key.endswith(".running_mean")}
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    return variables_from_state_dict(
        table,
        arrays,
        f"The CAS-ViT state dict does not fit mixtok's {model_name} ({settings})",
        ignored=uncounted,
        hint=_hint(arrays),
    )


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    Holds every key of the official `RCViT(...).state_dict()`, num_batches_tracked as 0, so that
    `model.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)` loads it (`RCViT(...,
    distillation=True)` when the variables have a dist_head).
    """
    model_name = resolve_name(name)
    if "params" not in variables:
        raise ValueError(
            f"to_official takes variables {{'params': ..., 'batch_stats': ...}}; got a mapping with "
            f"keys {sorted(variables)}."
        )
    variables = {c: nn.meta.unbox(variables[c]) for c in ("params", "batch_stats") if c in variables}
    kernel = variables["params"].get("head", {}).get("kernel")
    num_classes = 0 if kernel is None else int(kernel.shape[-1])
    overrides = {"distillation": "dist_head" in variables["params"], **overrides}
    table = _table(model_name, num_classes, freeze(overrides))
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    arrays = state_dict_from_variables(table, variables, f"The variables do not fit mixtok's {model_name} ({settings})")
    return with_batch_counters(arrays, np.array(0, np.int64))


def official_shapes(
    name: str, *, num_classes: int = 1000, distillation: bool = False, **overrides
) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the official state dict of `name`, as `to_official` writes it (no weights are made)."""
    table = _table(resolve_name(name), num_classes, freeze({"distillation": distillation, **overrides}))
    return with_batch_counters({e.key: e.official_shape for e in table}, ())


def cli_summary(variables: dict[str, Any]) -> str:
    params = variables["params"]
    classes = params["head"]["kernel"].shape[-1] if "head" in params else 0
    heads = " with dist_head" if "dist_head" in params else ""
    statistics = sum(leaf.size for leaf in jax.tree.leaves(variables["batch_stats"]))
    return f" ({classes} classes{heads}) and {statistics:,} BatchNorm statistics"


CLI_EMA = True  # --ema: the EMA weights the training script saved (load_state_dict(path, ema=True))
main = command_line(__name__)  # the importers' shared command line (official.run_cli)


if __name__ == "__main__":
    sys.exit(main())
