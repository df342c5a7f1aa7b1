"""Image classification: softmax cross-entropy with label smoothing, accuracy on a masked eval set."""

from typing import Any, Dict, Mapping

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from mixtok.models import create_model
from mixtok.train.config import compute_dtype


class ClassificationTask:
    """Loss and metrics for a model that maps images [B, H, W, 3] to logits [B, classes].

    Model variables other than `params` are never differentiated. Those in `UPDATED_COLLECTIONS`
    (BatchNorm's running statistics, `batch_stats`) are updated by every training step, as
    PyTorch's train mode updates them; the rest (e.g. RandFormer's `frozen` matrices) are passed
    through unchanged.
    """

    UPDATED_COLLECTIONS = ("batch_stats",)
    PROGRESS_METRICS = ("eval/accuracy",)  # shown beside the progress bar after an eval

    def __init__(self, model, num_classes: int, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}.")
        self.model = model
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, config, info) -> "ClassificationTask":
        """The task of a training config: `create_model(config.model.name, **config.model.kwargs)`."""
        model = create_model(config.model.name, num_classes=info.num_classes, dtype=compute_dtype(config),
                             **config.model.get("kwargs", ConfigDict()).to_dict())
        return cls(model, info.num_classes, config.get("label_smoothing", 0.0))

    def dummy_batch(self, image_size: int, batch_size: int = 1) -> Dict[str, jax.Array]:
        return {"image": jnp.zeros((batch_size, image_size, image_size, 3), jnp.float32),
                "label": jnp.zeros((batch_size,), jnp.int32)}

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
        logits, updated = self.model.apply({"params": params, **other_variables}, batch["image"], train=True,
                                           rngs={"dropout": dropout_rng, "drop_path": drop_path_rng},
                                           mutable=mutable)
        loss = jnp.mean(self._cross_entropy(logits, batch["label"]))
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return loss, ({"accuracy": accuracy}, dict(updated))

    def eval_sums(self, params, other_variables, batch) -> Dict[str, jax.Array]:
        """Sums over the real (mask == 1) examples of a padded eval batch."""
        logits = self.model.apply({"params": params, **other_variables}, batch["image"], train=False)
        mask = batch["mask"].astype(jnp.float32)
        loss = self._cross_entropy(logits, batch["label"])
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        return {"loss": jnp.sum(loss * mask), "correct": jnp.sum(correct * mask), "count": jnp.sum(mask)}

    @staticmethod
    def summarize_eval(sums: Mapping[str, float]) -> Dict[str, float]:
        count = max(float(sums["count"]), 1.0)
        return {"eval/loss": float(sums["loss"]) / count, "eval/accuracy": float(sums["correct"]) / count}
