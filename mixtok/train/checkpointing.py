"""Orbax checkpoints of the train state, the data iterator's position and the config; loading a run.

Each checkpoint `workdir/checkpoints/<step>/` holds four items:
  state         the train state (step, params, optimizer state, frozen weights), restored already sharded;
  data          the grain iterator's state, so a resumed run sees exactly the batches it would have seen;
  config        the config that wrote it, so a workdir cannot silently resume a different model;
  dataset_info  the data's `DatasetInfo` (class count, image size, normalisation), so a run's model
                can be rebuilt without its data (checkpoints written before it existed lack it).
Saves are asynchronous (training continues while arrays are written); orbax writes into a
temporary directory and renames it when complete, so a crash never leaves a half checkpoint that
looks whole. The iterator state is read synchronously at save time, before training moves on.
"""

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp
from ml_collections import ConfigDict

from mixtok.data import DatasetInfo, dataset_info
from mixtok.train.tasks import DEFAULT_TASK, get_task

ITEMS = ("state", "data", "config", "dataset_info")


def _jsonable_iterator_state(state: Any) -> Any:
    return {"bytes": state.decode("utf-8")} if isinstance(state, bytes) else {"value": state}


def _iterator_state_from_json(saved: Mapping[str, Any]) -> Any:
    return saved["bytes"].encode("utf-8") if "bytes" in saved else saved["value"]


class Checkpointer:
    """Saves and restores (state, data iterator, config) with orbax, keeping the last `keep`."""

    def __init__(self, directory: Path, keep: int = 3, save_every: int = 1000, async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.save_every = save_every
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def should_save(self, step: int) -> bool:
        return step % self.save_every == 0

    def save(
        self, step: int, state: Any, data_iterator: Any, config: ConfigDict, info: DatasetInfo, *, force: bool = False
    ) -> bool:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(_jsonable_iterator_state(data_iterator.get_state())),
            config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
            dataset_info=ocp.args.JsonSave(dataclasses.asdict(info)),
        )
        return self.manager.save(step, args=args, force=force)

    def restore_config(self, step: int) -> dict:
        restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return restored["config"]

    def restore(self, step: int, abstract_state: Any, data_iterator: Any) -> Any:
        """Restores the state into `abstract_state`'s shardings and rewinds `data_iterator`."""
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore())
        )
        data_iterator.set_state(_iterator_state_from_json(restored["data"]))
        return restored["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def create_checkpointer(config: ConfigDict, workdir: Any) -> Checkpointer:
    """The checkpointer of a run in `workdir` (`workdir/checkpoints`), as the config's checkpoint fields say."""
    return Checkpointer(
        Path(workdir) / "checkpoints",
        keep=config.get("keep_checkpoints", 3),
        save_every=config.get("checkpoint_every", 1000),
        async_save=config.get("async_checkpointing", True),
    )


def check_same_model(saved_config: Mapping[str, Any], config: ConfigDict, directory: Path) -> None:
    """Refuses to resume a checkpoint written for another model (name or architecture options)."""
    saved_model = saved_config.get("model", {})
    current = json.loads(config.model.to_json_best_effort())
    keys = ("name", "kwargs")
    saved_arch = {k: saved_model.get(k) for k in keys}
    current_arch = {k: current.get(k) for k in keys}
    if saved_arch != current_arch:
        raise ValueError(
            f"The workdir's checkpoints in {directory} were written for model {saved_arch} but this config "
            f"asks for {current_arch}. Use a new --workdir for a different model (nothing was overwritten)."
        )


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run restored from its workdir: `model.apply(variables, ...)` is the model at `step`.

    `variables` are the model's own (for a tokenizer, not its discriminator's or perceptual
    network's); `info` is the data the run trained on, its normalisation included.
    """

    config: ConfigDict
    model: Any
    variables: Mapping[str, Any]
    step: int
    info: DatasetInfo
    workdir: Path


def load_run(workdir: Any, step: int | None = None) -> Run:
    """The run in `workdir` at checkpoint `step` (default: the latest); errors name what the workdir holds.

    The model is rebuilt from the saved config by the run's task (`Task.build_model`), without its
    losses or optimizer and without reading the data.
    """
    workdir = Path(workdir).expanduser().absolute()
    if not workdir.is_dir():
        raise ValueError(
            f"The workdir {str(workdir)!r} does not exist; pass the --workdir of a `python -m mixtok.train` run."
        )
    directory = workdir / "checkpoints"
    if not directory.is_dir():
        raise ValueError(
            f"The workdir {str(workdir)!r} has no checkpoints/ folder (it holds "
            f"{sorted(p.name for p in workdir.iterdir()) or 'nothing'}); pass the --workdir of a "
            "`python -m mixtok.train` run."
        )
    manager = ocp.CheckpointManager(directory, item_names=ITEMS)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise ValueError(
                f"{directory} holds no finished checkpoint; a run saves one every checkpoint_every "
                "steps, when it is stopped, and at its end."
            )
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise ValueError(f"Step {step} is not a checkpoint in {directory}; saved steps: {steps}.")
        items = dict(state=ocp.args.StandardRestore(), config=ocp.args.JsonRestore())
        has_info = (directory / str(step) / "dataset_info").is_dir()
        if has_info:
            items["dataset_info"] = ocp.args.JsonRestore()
        restored = manager.restore(step, args=ocp.args.Composite(**items))
    finally:
        manager.close()
    config = ConfigDict(restored["config"])
    if has_info:
        info = DatasetInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in restored["dataset_info"].items()})
    else:
        info = dataset_info(config.data)  # an older checkpoint: the data must be readable to describe it
    task = get_task(config.get("task", DEFAULT_TASK))
    state = restored["state"]
    return Run(
        config=config,
        model=task.build_model(config, info),
        variables=task.model_variables(state["params"], state["other_variables"]),
        step=int(step),
        info=info,
        workdir=workdir,
    )
