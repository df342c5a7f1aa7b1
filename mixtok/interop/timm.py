"""Converts timm's MetaFormer (PoolFormer v1/v2, ConvFormer, CAFormer), DaViT, MLP-Mixer and ViT / DeiT weights.

    state_dict = load_state_dict("model.safetensors")   # huggingface.co/timm/caformer_s18.sail_in1k
    variables = convert("caformer_s18", state_dict)      # {'params': ...} of create_model("caformer_s18")
    logits = create_model("caformer_s18").apply(variables, images_nhwc)

or once, from the shell (then `load_variables(OUTPUT)`):

    python -m mixtok.interop.timm caformer_s18.sail_in1k model.safetensors caformer_s18.msgpack

mixtok's parameter tree mirrors timm's module tree (timm `stages.2.blocks.1.mlp.fc1.weight` is
`params['stages_2']['blocks_1']['mlp']['fc1']['kernel']`); only layouts and a few leaf names differ:

    timm Linear weight [out, in]                          <-> Dense kernel [in, out]
    timm 1x1 Conv2d weight [out, in, 1, 1] (MLP, SepConv  <-> Dense kernel [in, out]
      pointwise layers, on timm's channels-first stages)
    timm Conv2d weight [out, in / groups, kh, kw]         <-> Conv kernel [kh, kw, in / groups, out]
    a norm's `weight`                                     <-> `scale`

timm's MetaFormer runs a stage channels-last (Linear MLP) when its mixer is attention, channels-first
otherwise; timm's DaViT is channels-last throughout (its family rules live in `mixtok.interop.timm_davit`), as
are timm's MLP-Mixer (`mixtok.interop.timm_mixer`) and ViT / DeiT (`mixtok.interop.timm_vit`).
The mapping is derived from the mixtok model's own parameter tree (`jax.eval_shape` of its init), so
each mixtok parameter has exactly one timm key, and a state dict that does not fit is reported
with every missing key, unexpected key and wrong shape in one error. The parity tests
(tests/interop/test_timm.py) run both libraries on randomised weights and agree to 1e-4; without torch,
tests/interop/test_golden_timm.py checks tiny models of each family against the logits and stage outputs
timm itself computed (tests/fixtures/timm, made by tools/make_timm_fixtures.py) to 1e-5.
"""

import dataclasses
import functools
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.interop import timm_davit, timm_mixer, timm_vit
from mixtok.interop.official import command_line
from mixtok.interop.weight_files import (
    load_state_dict,
    load_variables,
    mismatch_error,
    save_variables,
    to_numpy,
    walk_leaves,
)
from mixtok.models import create_model, list_models, model_spec
from mixtok.models.backbone import per_stage
from mixtok.registry import unknown_name_error

__all__ = ["convert", "load_state_dict", "load_variables", "main", "resolve_name", "save_variables", "to_timm"]

Path = tuple[str, ...]


CLI_DESCRIPTION = (
    "Converts a timm MetaFormer, DaViT or MLP-Mixer checkpoint (.safetensors, .pth, .bin) to mixtok variables (flax "
    "msgpack; read them back with mixtok.interop.timm.load_variables)."
)
CLI_NAME_HELP = "mixtok or timm model name, e.g. caformer_s18 or caformer_s18.sail_in1k"
CLI_CHECKPOINT_HELP = "the timm checkpoint file, e.g. model.safetensors"


def timm_backed_models() -> dict[str, str]:
    """{mixtok name: timm name} of every registered variant that timm also has."""
    return {n: model_spec(n).timm_name for n in list_models() if model_spec(n).timm_name}


# mixtok variants whose name timm gives to a model of another paper (timm 1.0.31: timm/models/iformer.py is
# ChuanyangZheng/iFormer, "iFormer: Integrating ConvNet and Transformer for Mobile Application", ICLR 2025, with
# variants iformer_t, _s, _m, _l, _l2, _h; mixtok's iformer_s / _b / _l are sail-sg/iFormer's Inception Transformer).
TIMM_NAME_CLASHES = {
    name: "timm/models/iformer.py's iFormer (Zheng, ICLR 2025: Integrating ConvNet and Transformer for Mobile "
    "Application, ChuanyangZheng/iFormer)"
    for name in ("iformer_s", "iformer_l")
}


def resolve_name(name: str) -> str:
    """The mixtok name for a mixtok or timm name, with or without a pretrained tag (`caformer_s18.sail_in1k`)."""
    base = name.split(".", 1)[0]
    backed = timm_backed_models()
    if base in backed:
        return base
    for mixtok_name, timm_name in backed.items():
        if base == timm_name:
            return mixtok_name
    if base in TIMM_NAME_CLASHES:
        raise ValueError(
            f"timm's {base!r} is another architecture: {TIMM_NAME_CLASHES[base]}, not mixtok's {base} "
            f"({model_spec(base).paper}); its weights do not fit mixtok's model, and mixtok's {base} has no timm "
            f"weights. Variants with timm weights: {', '.join(sorted(backed))}."
        )
    if base in list_models():
        raise ValueError(
            f"timm has no model {base!r}: mixtok's {base} ({model_spec(base).paper}) has no timm weights, so there "
            f"is nothing to convert from timm. Variants with timm weights: {', '.join(sorted(backed))}."
        )
    raise unknown_name_error("timm-backed model", base, backed)


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One parameter: its mixtok path and shape, its timm key, and how the layouts relate."""

    path: Path
    shape: tuple[int, ...]
    dtype: Any
    key: str
    layout: str  # "same" | "linear" | "pointwise" (1x1 conv in timm) | "conv"

    @property
    def timm_shape(self) -> tuple[int, ...]:
        if self.layout == "linear":
            return self.shape[::-1]
        if self.layout == "pointwise":
            return (self.shape[1], self.shape[0], 1, 1)
        if self.layout == "conv":
            kh, kw, cin, cout = self.shape
            return (cout, cin, kh, kw)
        return self.shape

    def accepts(self, timm_shape: tuple[int, ...]) -> bool:
        # A Dense kernel takes timm's Linear and 1x1-conv forms alike: the same map in either layout.
        dense_forms = {self.shape[::-1], (self.shape[1], self.shape[0], 1, 1)} if len(self.shape) == 2 else set()
        return timm_shape == self.timm_shape or (self.layout in ("linear", "pointwise") and timm_shape in dense_forms)

    def from_timm(self, array: np.ndarray) -> np.ndarray:
        if self.layout in ("linear", "pointwise"):
            array = array.reshape(array.shape[:2]).T
        elif self.layout == "conv":
            array = array.transpose(2, 3, 1, 0)
        return np.ascontiguousarray(array, dtype=self.dtype)

    def to_timm(self, array: np.ndarray) -> np.ndarray:
        if self.layout == "linear":
            array = array.T
        elif self.layout == "pointwise":
            array = array.T[:, :, None, None]
        elif self.layout == "conv":
            array = array.transpose(3, 2, 0, 1)
        return np.ascontiguousarray(array)


def _entry(path: Path, leaf: Any, dense_is_pointwise: Callable[[Path], bool]) -> _Entry:
    module, leaf_name = path[:-1], path[-1]
    timm_module = [re.sub(r"^(stages|blocks)_(\d+)$", r"\1.\2", part) for part in module]
    if leaf_name == "kernel" or (leaf_name == "scale" and module[-1].startswith("norm")):
        timm_leaf = "weight"
    else:
        timm_leaf = leaf_name
    layout = "same"
    if leaf_name == "kernel" and len(leaf.shape) == 4:
        layout = "conv"
    elif leaf_name == "kernel":
        layout = "pointwise" if dense_is_pointwise(module) else "linear"
    return _Entry(path, tuple(leaf.shape), leaf.dtype, ".".join(timm_module + [timm_leaf]), layout)


def _metaformer_dense_is_pointwise(model) -> Callable[[Path], bool]:
    """timm's MetaFormer holds a stage's Dense layers as 1x1 convs unless the stage's mixer is attention."""
    stage_mixers = per_stage(model.token_mixers, len(model.depths), "token_mixers")

    def dense_is_pointwise(module: Path) -> bool:
        stage = re.fullmatch(r"stages_(\d+)", module[0])
        return stage is not None and stage_mixers[int(stage.group(1))] != "attention"

    return dense_is_pointwise


def _entries(name: str, num_classes: int, overrides: Mapping[str, Any]) -> tuple[_Entry, ...]:
    """The parameters of create_model(name, num_classes, **overrides) with their timm keys, in timm's order."""
    items = tuple(sorted(overrides.items()))
    try:
        hash(items)
    except TypeError:  # an unhashable override (a dict of mixer options): build the table uncached
        return _cached_entries.__wrapped__(name, num_classes, items)
    return _cached_entries(name, num_classes, items)


@functools.lru_cache(maxsize=32)
def _cached_entries(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]) -> tuple[_Entry, ...]:
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    # The parameter shapes of a timm-backed variant do not depend on the image size, except MLP-Mixer's token MLPs
    # and ViT's position embedding.
    if timm_mixer.is_mixer(model):
        size = timm_mixer.init_shape(model)
    elif timm_vit.is_vit(model):
        size = timm_vit.init_shape(model)
    else:
        size = (model.reduction,) * 2
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, *size, 3), jnp.float32))
    shapes = nn.meta.unbox(shapes)
    if set(shapes) != {"params"}:
        raise ValueError(f"{name} has variable collections {sorted(set(shapes) - {'params'})} that timm does not have.")
    if timm_davit.is_davit(model):
        dense_is_pointwise = timm_davit.dense_is_pointwise
    elif timm_mixer.is_mixer(model):
        dense_is_pointwise = timm_mixer.dense_is_pointwise
    elif timm_vit.is_vit(model):
        dense_is_pointwise = timm_vit.dense_is_pointwise
    else:
        dense_is_pointwise = _metaformer_dense_is_pointwise(model)
    return tuple(
        sorted(
            (_entry(path, leaf, dense_is_pointwise) for path, leaf in walk_leaves(shapes["params"])), key=_timm_order
        )
    )


def _timm_order(entry: _Entry):
    """timm's module order (stem, stages, head) with numbers compared as numbers: blocks.2 < blocks.10."""
    top = {"stem": 0, "stages": 1, "blocks": 1, "norm": 2, "head": 3}.get(entry.key.split(".")[0], 4)
    return top, [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", entry.key)]


def _num_classes_of_timm(arrays: Mapping[str, np.ndarray]) -> int:
    for key in ("head.fc.fc2.weight", "head.fc.weight", timm_mixer.HEAD_WEIGHT):  # MlpHead, Linear, Mixer's Linear
        if key in arrays:
            return int(arrays[key].shape[0])
    return 0  # timm's num_classes=0: no classifier, the model returns the pooled features


def _num_classes_of_mixtok(params: Mapping[str, Any]) -> int:
    head = params.get("head", {})
    fc = head.get("fc", head)  # MLP-Mixer's classifier is `head` itself
    kernel = fc.get("fc2", fc).get("kernel")
    return 0 if kernel is None else int(kernel.shape[-1])


def _format_hint(keys: Sequence[str]) -> str:
    """A guess at why a state dict has unexpected `keys`: the wrong checkpoint format."""
    if not keys:
        return ""
    if any(k.startswith(("network.", "downsample_layers.")) for k in keys):
        return (
            " The keys look like an official sail-sg checkpoint, not timm's: load it into timm "
            "(timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path))) and pass "
            "model.state_dict(), or download the timm weights."
        )
    if timm_davit.looks_official(keys):
        return timm_davit.OFFICIAL_CHECKPOINT_HINT
    if timm_mixer.looks_official(keys):
        return timm_mixer.OFFICIAL_CHECKPOINT_HINT
    if all(k.startswith("module.") for k in keys):
        return " Every key starts with 'module.' (a DistributedDataParallel save): strip that prefix first."
    return ""


def convert(name: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None, **overrides) -> dict[str, Any]:
    """mixtok variables {'params': nested float32 numpy arrays} from a timm MetaFormer, DaViT or MLP-Mixer state dict.

    `name` is a mixtok or timm name, optionally with timm's pretrained tag (`caformer_s18.sail_in1k`);
    `state_dict` maps timm names to numpy arrays or torch tensors. `num_classes=None` reads the
    class count from the classifier's weight (0 when the state dict has no classifier, as timm's
    num_classes=0 models). Raises one ValueError listing every unexpected key, missing key and wrong
    shape when the state dict does not fit `create_model(name, num_classes=num_classes)`.
    """
    model_name = resolve_name(name)
    arrays = {key: to_numpy(value, key) for key, value in state_dict.items()}
    if num_classes is None:
        num_classes = _num_classes_of_timm(arrays)
    entries = _entries(model_name, num_classes, overrides)
    known = {e.key for e in entries}
    unexpected = [k for k in arrays if k not in known]
    missing = [f"{e.key} (mixtok {'/'.join(e.path)})" for e in entries if e.key not in arrays]
    bad_shapes = [
        f"{e.key}: expected {e.timm_shape}, got {tuple(arrays[e.key].shape)} (mixtok {'/'.join(e.path)} {e.shape})"
        for e in entries
        if e.key in arrays and not e.accepts(tuple(arrays[e.key].shape))
    ]
    error = mismatch_error(
        f"The timm state dict does not fit mixtok's {model_name} (num_classes={num_classes})",
        unexpected,
        missing,
        bad_shapes,
        _format_hint(unexpected) if arrays else " The state dict is empty.",
    )
    if error:
        raise error
    params: dict[str, Any] = {}
    for e in entries:
        node = params
        for part in e.path[:-1]:
            node = node.setdefault(part, {})
        node[e.path[-1]] = e.from_timm(arrays[e.key])
    return {"params": params}


def to_timm(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """timm's state dict (numpy arrays, timm layouts) from mixtok variables; the inverse of `convert`.

    `variables` is {'params': ...} as `model.init` (boxed or not) or `convert` return it; only
    'params' is exported; `overrides` are the model's arguments that differ from the variant's, as in
    `convert`. `timm.create_model(timm_name, num_classes=...).load_state_dict(
    {k: torch.from_numpy(v) for k, v in result.items()})` loads it with strict=True.
    """
    model_name = resolve_name(name)
    if "params" not in variables:
        raise ValueError(f"to_timm takes variables {{'params': ...}}; got a mapping with keys {sorted(variables)}.")
    params = nn.meta.unbox(variables["params"])
    leaves = dict(walk_leaves(params))
    num_classes = _num_classes_of_mixtok(params)
    entries = _entries(model_name, num_classes, overrides)
    known = {e.path for e in entries}
    unexpected = ["/".join(p) for p in leaves if p not in known]
    missing = ["/".join(e.path) for e in entries if e.path not in leaves]
    bad_shapes = [
        f"{'/'.join(e.path)}: expected {e.shape}, got {tuple(np.shape(leaves[e.path]))}"
        for e in entries
        if e.path in leaves and tuple(np.shape(leaves[e.path])) != e.shape
    ]
    error = mismatch_error(
        f"The variables do not fit mixtok's {model_name} (num_classes={num_classes})", unexpected, missing, bad_shapes
    )
    if error:
        raise error
    return {e.key: e.to_timm(np.asarray(leaves[e.path])) for e in entries}


def cli_summary(variables: dict[str, Any]) -> str:
    return f" ({_num_classes_of_mixtok(variables['params'])} classes)"


main = command_line(__name__)  # python -m mixtok.interop.timm --help; see official.command_line


if __name__ == "__main__":
    sys.exit(main())
