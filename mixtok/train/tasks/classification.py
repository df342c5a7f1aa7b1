"""Image classification: softmax cross-entropy with label smoothing, accuracy on a masked eval set."""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from mixtok.data import DatasetInfo
from mixtok.models import create_model
from mixtok.train.tasks.base import Task, compute_dtype


class ClassificationTask(Task):
    """Loss and metrics for a model that maps images [B, H, W, 3] to logits [B, classes].

    Model variables other than `params` are never differentiated. Those in `UPDATED_COLLECTIONS`
    (BatchNorm's running statistics, `batch_stats`) are updated by every training step, as
    PyTorch's train mode updates them; the rest (e.g. RandFormer's `frozen` matrices) are passed
    through unchanged.
    """

    CONFIG_FIELDS = ("label_smoothing",)
    UPDATED_COLLECTIONS = ("batch_stats",)
    PROGRESS_METRICS = ("eval/accuracy",)

    def __init__(self, model, num_classes: int, label_smoothing: float = 0.0):
        _check_label_smoothing(label_smoothing)
        self.model = model
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    @classmethod
    def validate(cls, config: ConfigDict) -> None:
        _check_label_smoothing(config.get("label_smoothing", 0.0))

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
        return cls(cls.build_model(config, info), info.num_classes, config.get("label_smoothing", 0.0))

    def init(self, rng: jax.Array, batch: Mapping[str, Any]):
        return self.model.init({"params": rng}, batch["image"], train=False)

    def _cross_entropy(self, logits, labels):
        targets = optax.smooth_labels(jax.nn.one_hot(labels, self.num_classes), self.label_smoothing)
        return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)

    def train_loss(self, params, other_variables, batch, rng, step=None):
        """Mean smoothed cross-entropy of a training batch, with dropout and stochastic depth on.

        Returns (loss, (metrics, updated)): `updated` holds the new values of the collections in
        UPDATED_COLLECTIONS that the model has (an empty dict for most models).
        """
        dropout_rng, drop_path_rng = jax.random.split(rng)
        mutable = [name for name in self.UPDATED_COLLECTIONS if name in other_variables]
        logits, updated = self.model.apply(
            {"params": params, **other_variables},
            batch["image"],
            train=True,
            rngs={"dropout": dropout_rng, "drop_path": drop_path_rng},
            mutable=mutable,
        )
        loss = jnp.mean(self._cross_entropy(logits, batch["label"]))
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
