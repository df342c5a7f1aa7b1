"""Image classification: softmax cross-entropy with label smoothing, accuracy on a masked eval set.

Config fields this task owns:

    label_smoothing  float in [0, 1) (default 0): targets one_hot * (1 - s) + s / num_classes.
    mixup            optional block: Mixup / CutMix of each training batch on the device, as timm's
                     `Mixup` (mixtok.train.mixup; huggingface/pytorch-image-models: timm/data/mixup.py),
                     with the soft-target cross-entropy. Its fields, with timm train.py's defaults:

                         mixup_alpha    0.0      mixup lam ~ Beta(a, a); 0 turns mixup off
                         cutmix_alpha   0.0      cutmix lam ~ Beta(a, a); 0 turns cutmix off
                         cutmix_minmax  None     (lo, hi): cutmix boxes of sides in [lo, hi) of the image
                         prob           1.0      probability that a batch (or image, pair) is mixed
                         switch_prob    0.5      probability of cutmix rather than mixup when both are on
                         mode           "batch"  "batch" (one draw a batch), "pair" or "elem" (one an image)
                         correct_lam    True     cutmix lam from the clipped box's area

                     The label smoothing of the soft targets is `label_smoothing`. Mixing is on when
                     mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax is set (timm train.py's
                     `mixup_active`); it then needs an even `batch_size`. Without the block, or with it
                     off, the loss is the plain smoothed cross-entropy. Only the training loss mixes;
                     eval is unchanged, and the training `accuracy` metric compares the predictions on
                     the mixed images with the unmixed labels. E.g. DeiT's recipe (with
                     label_smoothing=0.1): `config.mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0)`.
"""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from mixtok.data import DatasetInfo
from mixtok.models import create_model
from mixtok.registry import unknown_name_error
from mixtok.train.mixup import Mixup, check_mixup_options
from mixtok.train.tasks.base import Task, compute_dtype

# timm train.py's defaults for the fields of config.mixup (`--mixup`, `--cutmix`, `--mixup-prob`, ...).
MIXUP_DEFAULTS = dict(
    mixup_alpha=0.0, cutmix_alpha=0.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5, mode="batch", correct_lam=True
)
# The mixup draw's key is fold_in(rng, MIXUP_RNG_STREAM); a large constant, because fold_in(rng, i) for a
# small i can equal jax.random.split(rng)[i], the dropout and drop-path keys.
MIXUP_RNG_STREAM = 0x6D6978


class ClassificationTask(Task):
    """Loss and metrics for a model that maps images [B, H, W, 3] to logits [B, classes].

    Model variables other than `params` are never differentiated. Those in `UPDATED_COLLECTIONS`
    (BatchNorm's running statistics, `batch_stats`) are updated by every training step, as
    PyTorch's train mode updates them; the rest (e.g. RandFormer's `frozen` matrices) are passed
    through unchanged.
    """

    CONFIG_FIELDS = ("label_smoothing", "mixup")
    UPDATED_COLLECTIONS = ("batch_stats",)
    PROGRESS_METRICS = ("eval/accuracy",)

    def __init__(self, model, num_classes: int, label_smoothing: float = 0.0, mixup: Mixup | None = None):
        _check_label_smoothing(label_smoothing)
        self.model = model
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.mixup = mixup

    @classmethod
    def validate(cls, config: ConfigDict) -> None:
        _check_label_smoothing(config.get("label_smoothing", 0.0))
        options = mixup_options(config)
        if options is not None and config.get("batch_size", 0) % 2:
            raise ValueError(
                f"config.mixup needs an even config.batch_size (each image is mixed with its mirror in the "
                f"batch, as in timm); got {config.batch_size}."
            )

    @classmethod
    def build_model(cls, config: ConfigDict, info: DatasetInfo):
        """`create_model(config.model.name, num_classes=info.num_classes, **config.model.kwargs)`."""
        return create_model(
            config.model.name,
            num_classes=info.num_classes,
            dtype=compute_dtype(config),
            **config.model.get("kwargs", ConfigDict()).to_dict(),
        )

    @classmethod
    def from_config(cls, config: ConfigDict, info: DatasetInfo) -> "ClassificationTask":
        label_smoothing = config.get("label_smoothing", 0.0)
        options = mixup_options(config)
        mixup = None
        if options is not None:
            mixup = Mixup(num_classes=info.num_classes, label_smoothing=label_smoothing, **options)
        return cls(cls.build_model(config, info), info.num_classes, label_smoothing, mixup)

    def init(self, rng: jax.Array, batch: Mapping[str, Any]):
        return self.model.init({"params": rng}, batch["image"], train=False)

    def _cross_entropy(self, logits, labels):
        targets = optax.smooth_labels(jax.nn.one_hot(labels, self.num_classes), self.label_smoothing)
        return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)

    def train_loss(self, params, other_variables, batch, rng, step=None):
        """Mean smoothed cross-entropy of a training batch, with dropout and stochastic depth on.

        With `mixup` the batch is first mixed (key `fold_in(rng, MIXUP_RNG_STREAM)`) and the loss is the
        soft-target cross-entropy against the mixed targets. Returns (loss, (metrics, updated)): `updated`
        holds the new values of the collections in UPDATED_COLLECTIONS that the model has (an empty dict
        for most models).
        """
        dropout_rng, drop_path_rng = jax.random.split(rng)
        images = batch["image"]
        if self.mixup is not None:
            images, targets = self.mixup(jax.random.fold_in(rng, MIXUP_RNG_STREAM), images, batch["label"])
        mutable = [name for name in self.UPDATED_COLLECTIONS if name in other_variables]
        logits, updated = self.model.apply(
            {"params": params, **other_variables},
            images,
            train=True,
            rngs={"dropout": dropout_rng, "drop_path": drop_path_rng},
            mutable=mutable,
        )
        if self.mixup is None:
            loss = jnp.mean(self._cross_entropy(logits, batch["label"]))
        else:  # optax's softmax cross-entropy takes soft targets: timm's SoftTargetCrossEntropy
            loss = jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return loss, ({"accuracy": accuracy}, dict(updated))

    def eval_sums(self, params, other_variables, batch) -> dict[str, jax.Array]:
        """Sums over the real (mask == 1) examples of a padded eval batch."""
        logits = self.model.apply({"params": params, **other_variables}, batch["image"], train=False)
        mask = batch["mask"].astype(jnp.float32)
        loss = self._cross_entropy(logits, batch["label"])
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        return {"loss": jnp.sum(loss * mask), "correct": jnp.sum(correct * mask), "count": jnp.sum(mask)}

    def summarize_eval(self, sums: Mapping[str, float]) -> dict[str, float]:
        count = max(float(sums["count"]), 1.0)
        return {"eval/loss": float(sums["loss"]) / count, "eval/accuracy": float(sums["correct"]) / count}


def _check_label_smoothing(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"label_smoothing must be a number in [0, 1); got {value!r}.")


def mixup_options(config: ConfigDict) -> dict | None:
    """The checked options of `config.mixup` with timm's defaults filled in; None when mixing is off."""
    block = config.get("mixup")
    if block is None:
        return None
    if not hasattr(block, "keys"):
        raise ValueError(f"config.mixup must be a block of fields ({', '.join(MIXUP_DEFAULTS)}); got {block!r}.")
    block = block.to_dict() if isinstance(block, ConfigDict) else dict(block)
    for key in block:
        if key not in MIXUP_DEFAULTS:
            raise unknown_name_error("config.mixup field", key, MIXUP_DEFAULTS)
    options = {**MIXUP_DEFAULTS, **block}
    if isinstance(options["cutmix_minmax"], list):
        options["cutmix_minmax"] = tuple(options["cutmix_minmax"])
    check_mixup_options(**options, where="config.mixup")
    if not (options["mixup_alpha"] > 0 or options["cutmix_alpha"] > 0 or options["cutmix_minmax"] is not None):
        return None
    return options


class SequenceClassificationTask(ClassificationTask):
    """Classification of token-id sequences: the batch's "image" holds int32 ids [B, L] (`mixtok.data.sequences`).

    The loss, metrics and masked eval are ClassificationTask's; only the batch `init` traces differs (zero ids
    [B, L], L = the data's `sequence_length`, which `DatasetInfo.image_size` carries for a sequence source), and
    Mixup / CutMix, which mix images, are refused.
    """

    CONFIG_FIELDS = ("label_smoothing",)

    @classmethod
    def validate(cls, config: ConfigDict) -> None:
        _check_label_smoothing(config.get("label_smoothing", 0.0))

    def dummy_batch(self, image_size: int, batch_size: int = 1) -> dict[str, jax.Array]:
        return {
            "image": jnp.zeros((batch_size, image_size), jnp.int32),
            "label": jnp.zeros((batch_size,), jnp.int32),
        }
