"""DiffRate's search as a training task: a frozen ViT / DeiT, its per-layer prune and merge rates learnt.

    python -m mixtok.train --config experiments/configs/<a ViT config>.py --config.task=diffrate_search \\
        --config.diffrate.target_flops=2.9 --config.diffrate.backbone_weights=deit_small.msgpack

The official search (OpenGVLab/DiffRate @ 91ae3e3: main.py, engine.py `train_one_epoch`, README "Training"):
the pretrained DeiT frozen, in train mode (drop path 0.1, `--drop-path`), only the rate modules trained
(`arch_parameters`) by AdamW, lr 0.01 cosine to 0.001 (`--arch-lr`, `--arch-min-lr`), weight decay 0, 3
epochs, batch 1024 (4 x 256), the DeiT augmentation with mixup 0.8 / cutmix 1.0 / label smoothing 0.1; loss
cross-entropy + 5 (FLOPs / 1e9 - target)^2 (`lamb = 5`, `--target_flops`), granularity 4
(`--granularity`). The model is `mixtok.reduction.diffrate_search.DiffRateSearchViT` (the masked search
forward, the differentiable discrete proxy); this task gives it the loss above and writes the schedule.

Config fields this task owns (ClassificationTask's `label_smoothing` and `mixup`, and):

    diffrate.target_flops       required: the FLOPs target, in units of `flops_unit`
    diffrate.flops_unit         1e9 (GFLOPs, the official scale); smaller for tiny models
    diffrate.flops_weight       5.0, the official `lamb`
    diffrate.flops_warmup_steps 0: steps with the FLOPs term off (the official `--warmup_compression_rate`
                                turns it off for the first epoch)
    diffrate.granularity        4: the gap between candidate kept counts
    diffrate.backbone_weights   the trained backbone: a mixtok run's workdir (its latest checkpoint, e.g. of
                                experiments/configs/quickstart_token_reduction.py) or a .msgpack of the
                                model's variables (`mixtok.interop.weight_files.save_variables`, e.g. of
                                `mixtok.interop.timm.convert` of DeiT's weights); None or "" keeps the
                                random initialisation (smoke tests only)

Variables: `params` are the rates only (`prune_logits`, `merge_logits`); the backbone's parameters are the
collection `backbone`, never differentiated. Eval runs the search forward deterministically (masked tokens
rather than removed ones, the same function up to the masked tokens' eps / N share of attention) and
reports `eval/flops` of the current counts (in `flops_unit`s, as `train/flops`). After every eval the task
writes `<workdir>/diffrate_schedule.json`: {"prune_kept_num": [...], "merge_kept_num": [...], "flops": ...,
"flops_unit": ..., "target_flops": ..., "step": ...}, the counts the rates stand for then (the official `get_kept_num`);
`mixtok.reduction.diffrate.load_schedule(path)` turns it into the `TokenReduction` to run the model with.
"""

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from mixtok.data import DatasetInfo
from mixtok.files import write_atomically
from mixtok.models.vit import VisionTransformer
from mixtok.reduction import diffrate as diffrate_rule
from mixtok.reduction.diffrate_search import DiffRateSearchViT, kept_numbers
from mixtok.registry import unknown_name_error
from mixtok.train.mixup import Mixup
from mixtok.train.tasks.classification import MIXUP_RNG_STREAM, ClassificationTask, mixup_options

DEFAULTS = dict(
    target_flops=None, flops_unit=1e9, flops_weight=5.0, flops_warmup_steps=0, granularity=4, backbone_weights=None
)
RATES = ("prune_logits", "merge_logits")
SCHEDULE_FILE = "diffrate_schedule.json"


def diffrate_options(config: ConfigDict) -> dict:
    """The checked fields of `config.diffrate`, defaults filled in."""
    block = config.get("diffrate")
    if block is None or not hasattr(block, "keys"):
        raise ValueError(f"config.diffrate must be a block with at least target_flops; got {block!r}.")
    block = block.to_dict() if isinstance(block, ConfigDict) else dict(block)
    for key in block:
        if key not in DEFAULTS:
            raise unknown_name_error("config.diffrate field", key, DEFAULTS)
    options = {**DEFAULTS, **block}
    for key in ("target_flops", "flops_unit"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"config.diffrate.{key} must be a positive number; got {value!r}.")
    if isinstance(options["flops_weight"], bool) or not isinstance(options["flops_weight"], (int, float)):
        raise ValueError(f"config.diffrate.flops_weight must be a number; got {options['flops_weight']!r}.")
    for key in ("granularity", "flops_warmup_steps"):
        value, low = options[key], 1 if key == "granularity" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"config.diffrate.{key} must be an integer >= {low}; got {value!r}.")
    return options


def search_model(model, granularity: int) -> DiffRateSearchViT:
    """The search form of a `VisionTransformer` (same arguments, same parameters, plus the rates)."""
    if not isinstance(model, VisionTransformer):
        raise ValueError(
            f"the DiffRate search runs on a ViT / DeiT (mixtok.models.vit.VisionTransformer); config.model builds "
            f"a {type(model).__name__}."
        )
    if model.reduction_schedule is not None:
        raise ValueError(
            f"the DiffRate search learns the model's schedule: leave config.model.kwargs.token_reduction empty (got "
            f"{model.token_reduction!r})."
        )
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(VisionTransformer) if f.init}
    fields.pop("parent", None)
    fields.pop("name", None)
    fields["token_reduction"] = None
    return DiffRateSearchViT(**fields, granularity=granularity)


def load_backbone(path: str) -> dict:
    """The parameters in `path`: a mixtok training run's workdir (its latest checkpoint, `load_run`) or a
    .msgpack of variables (`mixtok.interop.weight_files.save_variables`)."""
    import os

    if os.path.isdir(path):
        from mixtok.train.checkpointing import load_run

        return nn.meta.unbox(load_run(path).variables)["params"]
    from mixtok.interop.weight_files import load_variables

    return load_variables(path)["params"]


def _replace_values(boxed, values, where: str):
    """`boxed`'s tree (logical-axis boxes kept) with the arrays of `values`; shapes must agree."""

    def one(path, leaf):
        key = jax.tree_util.keystr(path)
        value = lookup.get(key)
        if value is None:
            raise ValueError(f"{where} has no parameter {key}; it does not hold this model's weights.")
        shape = leaf.value.shape if isinstance(leaf, nn.meta.AxisMetadata) else leaf.shape
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"{where}: parameter {key} has shape {tuple(value.shape)}, the model {tuple(shape)}.")
        value = jnp.asarray(value, dtype=(leaf.value if isinstance(leaf, nn.meta.AxisMetadata) else leaf).dtype)
        return leaf.replace_boxed(value) if isinstance(leaf, nn.meta.AxisMetadata) else value

    lookup = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(values)[0]}
    is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)  # noqa: E731
    return jax.tree_util.tree_map_with_path(one, boxed, is_leaf=is_box)


class DiffRateSearchTask(ClassificationTask):
    """The rates of a frozen ViT learnt by cross-entropy + flops_weight (FLOPs / unit - target)^2 (module docstring)."""

    CONFIG_FIELDS = ("label_smoothing", "mixup", "diffrate")
    UPDATED_COLLECTIONS = ()
    PROGRESS_METRICS = ("eval/accuracy", "eval/flops")

    def __init__(self, model, num_classes: int, label_smoothing: float = 0.0, mixup=None, *, options: dict):
        super().__init__(model, num_classes, label_smoothing, mixup)
        self.options = options
        # read here, on the host: `init` runs traced (jit / eval_shape), where a checkpoint cannot be restored
        path = options["backbone_weights"]
        self.backbone = jax.device_get(load_backbone(path)) if path else None

    @classmethod
    def validate(cls, config: ConfigDict) -> None:
        super().validate(config)
        diffrate_options(config)

    @classmethod
    def build_model(cls, config: ConfigDict, info: DatasetInfo):
        return search_model(super().build_model(config, info), diffrate_options(config)["granularity"])

    @classmethod
    def from_config(cls, config: ConfigDict, info: DatasetInfo) -> "DiffRateSearchTask":
        label_smoothing = config.get("label_smoothing", 0.0)
        mixing = mixup_options(config)
        mixup = None
        if mixing is not None:
            mixup = Mixup(num_classes=info.num_classes, label_smoothing=label_smoothing, **mixing)
        model = cls.build_model(config, info)
        return cls(model, info.num_classes, label_smoothing, mixup, options=diffrate_options(config))

    def init(self, rng, batch):
        variables = dict(self.model.init({"params": rng}, batch["image"], train=False))
        variables.pop("diffrate", None)  # the FLOPs the forward sows
        params = dict(variables.pop("params"))
        rates = {name: params.pop(name) for name in RATES}
        if self.backbone is not None:
            params = _replace_values(params, self.backbone, f"backbone_weights {self.options['backbone_weights']}")
        return {"params": rates, "backbone": params, **variables}

    @staticmethod
    def model_variables(params, other_variables):
        other = dict(other_variables)
        backbone = other.pop("backbone")
        return {"params": {**backbone, **params}, **other}

    def _forward(self, params, other_variables, images, *, train: bool, rngs=None):
        variables = self.model_variables(params, other_variables)
        logits, sown = self.model.apply(variables, images, train=train, rngs=rngs, mutable=["diffrate"])
        return logits, sown["diffrate"]["flops"][0] / self.options["flops_unit"]

    def train_loss(self, params, other_variables, batch, rng, step=None):
        """Cross-entropy (smoothed / mixed as ClassificationTask's) + flops_weight (FLOPs - target)^2."""
        dropout_rng, drop_path_rng = jax.random.split(rng)
        images = batch["image"]
        if self.mixup is not None:
            images, targets = self.mixup(jax.random.fold_in(rng, MIXUP_RNG_STREAM), images, batch["label"])
        logits, flops = self._forward(
            params, other_variables, images, train=True, rngs={"dropout": dropout_rng, "drop_path": drop_path_rng}
        )
        if self.mixup is None:
            loss_cls = jnp.mean(self._cross_entropy(logits, batch["label"]))
        else:
            loss_cls = jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))
        loss_flops = (flops - self.options["target_flops"]) ** 2
        weight = self.options["flops_weight"]
        if self.options["flops_warmup_steps"] and step is not None:
            weight = jnp.where(step < self.options["flops_warmup_steps"], 0.0, weight)
        loss = loss_cls + weight * loss_flops
        metrics = {
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
            "loss_cls": loss_cls,
            "loss_flops": loss_flops,
            "flops": flops,
        }
        return loss, (metrics, {})

    def eval_sums(self, params, other_variables, batch):
        logits, flops = self._forward(params, other_variables, batch["image"], train=False)
        mask = batch["mask"].astype(jnp.float32)
        loss = self._cross_entropy(logits, batch["label"])
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        return {
            "loss": jnp.sum(loss * mask),
            "correct": jnp.sum(correct * mask),
            "count": jnp.sum(mask),
            "flops": flops * jnp.sum(mask),
        }

    def summarize_eval(self, sums: Mapping[str, float]) -> dict[str, float]:
        metrics = super().summarize_eval(sums)
        metrics["eval/flops"] = float(sums["flops"]) / max(float(sums["count"]), 1.0)
        return metrics

    def schedule(self, params) -> dict[str, Any]:
        """The counts the rates stand for now, with their FLOPs (the official inference count), as written."""
        model = self.model
        h, w = model.grid
        prune, merge = kept_numbers(
            np.asarray(jax.device_get(params["prune_logits"])),
            np.asarray(jax.device_get(params["merge_logits"])),
            h * w,
            model.granularity,
            model.num_prefix_tokens,
        )
        flops = diffrate_rule.flops(
            list(zip(prune, merge, strict=True)),
            num_tokens=h * w + model.num_prefix_tokens,
            dim=model.dims[0],
            patch_size=model.patch_size,
            num_classes=model.num_classes,
        )
        return {
            "prune_kept_num": prune,
            "merge_kept_num": merge,
            "flops": flops / self.options["flops_unit"],
            "flops_unit": self.options["flops_unit"],
            "target_flops": self.options["target_flops"],
        }

    def write_results(self, params, workdir, step: int) -> None:
        """Writes `<workdir>/diffrate_schedule.json` (module docstring), replacing the last one."""
        found = {**self.schedule(params), "step": int(step)}

        def write(path):
            with open(path, "w") as f:
                json.dump(found, f, indent=1)
                f.write("\n")

        write_atomically(Path(workdir) / SCHEDULE_FILE, write, overwrite=True)
