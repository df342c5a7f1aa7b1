"""The task interface: what the base class requires and defaults, and the config fields a task owns."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

from mixtok.data import DatasetInfo
from mixtok.train import Task, get_task, load_run, train_and_evaluate, validate_config
from mixtok.train.metric_writer import read_metrics
from mixtok.train.optimizer import create_optimizer
from mixtok.train.tasks import TASKS, ClassificationTask, TokenizerTask
from tests.test_tokenize import _config as tokenizer_config
from tests.train.test_trainer import tiny_config


class MeanColourClassifier(nn.Module):
    """Logits from an image's mean colour: a model small enough to train in a test."""

    num_classes: int

    @nn.compact
    def __call__(self, images, train: bool = False):
        return nn.Dense(self.num_classes, name="head")(images.mean(axis=(1, 2)))


class MinimalTask(Task):
    """Only what the base class requires, plus one config field: everything else is the base's default."""

    CONFIG_FIELDS = ("temperature",)

    def __init__(self, model, temperature):
        self.model, self.temperature = model, temperature

    @classmethod
    def validate(cls, config):
        if config.get("temperature", 1.0) <= 0:
            raise ValueError(f"config.temperature must be > 0; got {config.temperature!r}.")

    @classmethod
    def build_model(cls, config, info):
        return MeanColourClassifier(info.num_classes)

    @classmethod
    def from_config(cls, config, info):
        return cls(cls.build_model(config, info), config.get("temperature", 1.0))

    def init(self, rng, batch):
        return self.model.init(rng, batch["image"])

    def _loss(self, params, batch):
        logits = self.model.apply({"params": params}, batch["image"]) / self.temperature
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])

    def train_loss(self, params, other_variables, batch, rng, step):
        return jnp.mean(self._loss(params, batch)), ({}, {})

    def eval_sums(self, params, other_variables, batch):
        return {"loss": jnp.sum(self._loss(params, batch) * batch["mask"]), "count": jnp.sum(batch["mask"])}

    def summarize_eval(self, sums):
        return {"eval/loss": float(sums["loss"]) / float(sums["count"])}


def _minimal_config(**overrides):
    fields = dict(
        task="minimal", total_steps=3, log_every=1, eval_every=3, checkpoint_every=3, tensorboard=False, temperature=2.0
    )
    config = tiny_config(**{**fields, **overrides})
    del config["label_smoothing"]  # the classification task's field, not this one's
    return config


def test_both_tasks_implement_the_interface():
    assert issubclass(get_task("classification"), Task) and issubclass(get_task("tokenizer"), Task)
    assert ClassificationTask.CONFIG_FIELDS == ("label_smoothing", "mixup")
    assert set(TokenizerTask.CONFIG_FIELDS) == {"loss", "discriminator_optimizer", "eval_num_tokens"}


def test_a_task_without_a_loss_cannot_be_made():
    class NoLoss(Task):
        @classmethod
        def build_model(cls, config, info):
            return None

        @classmethod
        def from_config(cls, config, info):
            return cls()

    with pytest.raises(TypeError, match="abstract"):
        NoLoss()


def test_a_task_with_only_the_required_methods_trains_with_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS._entries, "minimal", MinimalTask)
    config = _minimal_config()
    final = train_and_evaluate(config, tmp_path)
    assert np.isfinite(final["eval/loss"]) and not (tmp_path / "images").exists()  # the default: no images
    # The default optimizer is config.optimizer's: same learning-rate schedule, step by step.
    _, schedule = create_optimizer(config.optimizer, config.total_steps)
    assert [r["train/learning_rate"] for r in read_metrics(tmp_path)] == [float(schedule(s)) for s in range(3)]
    run = load_run(tmp_path)
    assert isinstance(run.model, MeanColourClassifier) and set(run.variables) == {"params"}


def test_config_fields_belong_to_the_task_that_owns_them(monkeypatch):
    monkeypatch.setitem(TASKS._entries, "minimal", MinimalTask)
    validate_config(_minimal_config())
    with pytest.raises(ValueError, match=r"config.temperature must be > 0; got -1.0"):
        validate_config(_minimal_config(temperature=-1.0))
    with pytest.raises(
        ValueError,
        match=r"config.loss belongs to the tokenizer task, but config.task is "
        r"'classification'",
    ):
        validate_config(tiny_config(loss=dict(reconstruction="l2")))
    with pytest.raises(
        ValueError,
        match=r"config.label_smoothing belongs to the classification / diffrate_search / sequence_classification task, "
        r"but "
        r"config.task is 'tokenizer'",
    ):
        validate_config(_with(tokenizer_config(), label_smoothing=0.1))
    with pytest.raises(ValueError, match=r"Unknown config.loss field 'gan_wieght'.*Did you mean 'gan_weight'"):
        validate_config(_with(tokenizer_config(), loss=dict(gan_wieght=0.1)))
    with pytest.raises(ValueError, match=r"config.eval_num_tokens must be a list of token counts"):
        validate_config(_with(tokenizer_config(), eval_num_tokens="1,2"))
    with pytest.raises(ValueError, match=r"Unknown task 'tokeniser'.*Did you mean 'tokenizer'"):
        validate_config(_with(tokenizer_config(), task="tokeniser"))
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\); got 1.5"):
        validate_config(tiny_config(label_smoothing=1.5))


def _with(config: ConfigDict, **fields) -> ConfigDict:
    for key, value in fields.items():
        config[key] = value
    return config


def test_the_tokenizer_task_undoes_the_normalisation_that_dataset_info_carries():
    # Not config.data's (0.5, 0.5): the task reads the normalisation from DatasetInfo only.
    info = DatasetInfo(
        num_classes=0, num_train=8, num_eval=8, image_size=16, mean=(0.2, 0.4, 0.6), std=(0.5, 0.25, 0.125)
    )
    task = TokenizerTask.from_config(tokenizer_config(), info)
    variables = task.init(jax.random.PRNGKey(0), task.dummy_batch(16, 2))
    params = variables.pop("params")
    images = np.random.default_rng(0).uniform(-1, 1, size=(2, 16, 16, 3)).astype(np.float32)
    out = task.eval_images(params, variables, {"image": images})
    pixels = np.clip(images * np.float32(info.std) + np.float32(info.mean), 0.0, 1.0)
    np.testing.assert_allclose(np.asarray(out["original"]), pixels, rtol=0, atol=1e-7)
