"""What a task is: the one interface through which the trainer builds, trains and evaluates a model.

A task is a small object that says, for one kind of model (an image classifier, a tokenizer),
how it is built from the config, how its variables are initialised, what one training step
minimises and what eval measures. The trainer (`mixtok.train.trainer`) calls exactly the
methods below and probes nothing: a method a task does not need has a default here that says
"nothing to do" (no eval images) or "the usual" (the optimizer of `config.optimizer`).

    class MyTask(Task):
        CONFIG_FIELDS = ("my_weight",)          # top-level config fields this task owns

        @classmethod
        def build_model(cls, config, info): ...  # the model alone (what `load_run` restores)
        @classmethod
        def from_config(cls, config, info): ...  # the task, holding that model as `.model`
        def init(self, rng, batch): ...          # -> {"params": ..., other collections}
        def train_loss(self, params, other_variables, batch, rng, step): ...
        def eval_sums(self, params, other_variables, batch): ...
        def summarize_eval(self, sums): ...
        def write_results(self, params, workdir, step): ...   # optional: files beside the checkpoints

Variables. `init` returns all of the task's variables; the trainer keeps `params` (trained) apart
from the rest (`other_variables`: BatchNorm statistics, frozen weights, a discriminator's state),
and `model_variables` maps the two back onto the variables `model.apply` takes.

Register a new task in `mixtok.train.tasks.TASKS`; `config.task` names it.
"""

import abc
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from mixtok.data import DatasetInfo
from mixtok.registry import unknown_name_error
from mixtok.train.optimizer import create_optimizer

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(config: ConfigDict) -> Any:
    """The dtype a task computes its model in: `config.model.dtype` (weights stay float32)."""
    name = config.model.get("dtype", "float32")
    if name not in DTYPES:
        raise unknown_name_error("compute dtype", name, DTYPES)
    return DTYPES[name]


def image_batch(image_size: int, batch_size: int = 1) -> dict[str, jax.Array]:
    """Zero images and labels of the trainer's batch layout: what `init` traces the model with."""
    return {
        "image": jnp.zeros((batch_size, image_size, image_size, 3), jnp.float32),
        "label": jnp.zeros((batch_size,), jnp.int32),
    }


class Task(abc.ABC):
    """How the trainer builds, initialises, trains and evaluates one kind of model (module docstring).

    Class attributes:
      CONFIG_FIELDS        top-level config fields this task owns, beside the trainer's own; any
                           other field is an error (`mixtok.train.config.validate_config`).
      UPDATED_COLLECTIONS  variable collections a training step updates (e.g. "batch_stats").
      PROGRESS_METRICS     metric keys shown beside the progress bar after an eval.
    """

    CONFIG_FIELDS: tuple[str, ...] = ()
    UPDATED_COLLECTIONS: tuple[str, ...] = ()
    PROGRESS_METRICS: tuple[str, ...] = ()

    model: Any  # the flax module this task trains

    # --------------------------------------------------------------------------------- from the config

    @classmethod
    def validate(cls, config: ConfigDict) -> None:
        """Checks the fields in CONFIG_FIELDS before anything expensive starts; raises ValueError.

        The default has nothing to check; the config's top-level field names are checked for it.
        """
        return

    @classmethod
    @abc.abstractmethod
    def build_model(cls, config: ConfigDict, info: DatasetInfo) -> Any:
        """The model of `config.model` alone, without losses or optimizers (what a loaded run holds)."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: ConfigDict, info: DatasetInfo) -> "Task":
        """The task of a training config, its model built by `build_model(config, info)`."""

    def create_optimizer(self, config: ConfigDict) -> tuple[optax.GradientTransformation, optax.Schedule]:
        """(optax transformation, learning-rate schedule); the default is that of `config.optimizer`."""
        return create_optimizer(config.optimizer, config.total_steps)

    # --------------------------------------------------------------------------------- variables

    def dummy_batch(self, image_size: int, batch_size: int = 1) -> dict[str, jax.Array]:
        """A batch of the training layout that `init` traces the model with (zeros)."""
        return image_batch(image_size, batch_size)

    @abc.abstractmethod
    def init(self, rng: jax.Array, batch: Mapping[str, Any]) -> dict[str, Any]:
        """All of the task's variables, `{"params": ..., <other collections>: ...}`."""

    @staticmethod
    def model_variables(params: Any, other_variables: Mapping[str, Any]) -> dict[str, Any]:
        """The variables `model.apply` takes, from the train state's `params` and `other_variables`."""
        return {"params": params, **other_variables}

    # --------------------------------------------------------------------------------- train and eval

    @abc.abstractmethod
    def train_loss(
        self, params: Any, other_variables: Mapping[str, Any], batch: Mapping[str, Any], rng: jax.Array, step: jax.Array
    ) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, Any]]]:
        """(loss, (metrics, updated)) of a training batch; `updated` holds new values of other_variables."""

    @abc.abstractmethod
    def eval_sums(
        self, params: Any, other_variables: Mapping[str, Any], batch: Mapping[str, Any]
    ) -> dict[str, jax.Array]:
        """Sums over the real (mask == 1) examples of a padded eval batch; added up over the eval set."""

    @abc.abstractmethod
    def summarize_eval(self, sums: Mapping[str, Any]) -> dict[str, float]:
        """The eval metrics ("eval/<name>") from the eval set's summed `eval_sums`."""

    def eval_images(
        self, params: Any, other_variables: Mapping[str, Any], batch: Mapping[str, Any]
    ) -> dict[str, jax.Array]:
        """Images to write after each eval, from the first eval batch; the default writes none ({})."""
        return {}

    def write_eval_images(self, images: Mapping[str, Any], directory: Any, step: int) -> None:
        """Writes what `eval_images` returned (non-empty) under `directory`; the default has nothing to write."""
        return

    def write_results(self, params: Any, workdir: Any, step: int) -> None:
        """Writes what the task finds into `workdir` after each eval, on the lead process (DiffRate's searched
        schedule); `params` are the train state's. The default has nothing to write."""
        return
