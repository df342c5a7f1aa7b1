"""Orbax checkpoints of the train state, the data iterator's position and the config.

Each checkpoint `workdir/checkpoints/<step>/` holds three items:
  state   the train state (step, params, optimizer state, frozen weights), restored already sharded;
  data    the grain iterator's state, so a resumed run sees exactly the batches it would have seen;
  config  the config that wrote it, so a workdir cannot silently resume a different model.
Saves are asynchronous (training continues while arrays are written); orbax writes into a
temporary directory and renames it when complete, so a crash never leaves a half checkpoint that
looks whole. The iterator state is read synchronously at save time, before training moves on.
"""

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import orbax.checkpoint as ocp
from ml_collections import ConfigDict


def _jsonable_iterator_state(state: Any) -> Any:
    return {"bytes": state.decode("utf-8")} if isinstance(state, bytes) else {"value": state}


def _iterator_state_from_json(saved: Mapping[str, Any]) -> Any:
    return saved["bytes"].encode("utf-8") if "bytes" in saved else saved["value"]


class Checkpointer:
    """Saves and restores (state, data iterator, config) with orbax, keeping the last `keep`."""

    def __init__(self, directory: Path, keep: int = 3, save_every: int = 1000, async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.save_every = save_every
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data", "config"))

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def should_save(self, step: int) -> bool:
        return step % self.save_every == 0

    def save(self, step: int, state: Any, data_iterator: Any, config: ConfigDict, *, force: bool = False) -> bool:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(_jsonable_iterator_state(data_iterator.get_state())),
            config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())))
        return self.manager.save(step, args=args, force=force)

    def restore_config(self, step: int) -> dict:
        restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return restored["config"]

    def restore(self, step: int, abstract_state: Any, data_iterator: Any) -> Any:
        """Restores the state into `abstract_state`'s shardings and rewinds `data_iterator`."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        data_iterator.set_state(_iterator_state_from_json(restored["data"]))
        return restored["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


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
            f"asks for {current_arch}. Use a new --workdir for a different model (nothing was overwritten).")
