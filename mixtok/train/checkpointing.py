"""Orbax checkpoints of the train state, the data iterator's position and the config; loading a run.

Each checkpoint `workdir/checkpoints/<step>/` holds four items:
  state         the train state (step, params, optimizer state, frozen weights), restored already sharded;
  data          the grain iterator's state of every process (and their count), so a resumed run sees
                exactly the batches it would have seen;
  config        the config that wrote it, so a workdir cannot silently resume a different run;
  dataset_info  the data's `DatasetInfo` (class count, image size, normalisation), so a run's model
                can be rebuilt without its data (checkpoints written before it existed lack it).
Saves are asynchronous (training continues while arrays are written); orbax writes into a
temporary directory and renames it when complete, so a crash never leaves a half checkpoint that
looks whole. The iterator state is read synchronously at save time, before training moves on.

Nothing lost, nothing silent:

- Manifest. Once a save has finished (orbax renamed its folder: checked at the next `save`, at
  `wait` and at `close`), `<step>/mixtok_manifest.json` records the size and SHA-256 of every
  file orbax wrote. It is written last and atomically (a temporary file, then `os.replace`; on gs:// one upload), so
  a checkpoint either has a complete manifest or none. Orbax 0.12 has no whole-checkpoint
  integrity check of its own (only a CRC32C of each zarr3 shard index), hence this one.
  Hashing and verifying read each file once more (about a second per GB), in the training
  thread, at the next save and at resume; `load_run` verifies the checkpoint it loads.
- A failed save is not silent. Orbax 0.12 only logs a background write that failed (or raises
  it from its next wait); here the next `save`, `wait` or `close` raises `CheckpointSaveError`
  (an OSError) naming the step, the cause and the steps that are saved; the step is also
  checked to exist on disk, whatever orbax reported. (Raised from `close` while another error
  is already propagating, it is logged instead, so the first error is the one reported.)
- Leftovers. Temporary folders of an interrupted save (`*.orbax-checkpoint-tmp*`) are removed
  when a `Checkpointer` starts, with a warning naming them.
- Resume (`Checkpointer.restore_latest`) tries the checkpoints newest first. A checkpoint is bad
  when a file differs from its manifest (missing, other size, other checksum), when its
  manifest, config or (without a manifest) any item cannot be read, or when the restored params
  or optimizer state hold NaN or infinity. A bad checkpoint is moved aside (never deleted) to
  `<step>.unreadable-<unix time>/` (with `UNREADABLE.txt` giving the reason; orbax no longer
  lists it, rename it back to retry it), one warning names the step and the reason, and the next
  older one is tried. When none is good, `NoUsableCheckpointError` (a ValueError) names the
  folder; it is raised again on every start while the folder holds moved-aside checkpoints and
  no good one, so a run never silently restarts from step 0. A checkpoint without a manifest
  (written before manifests existed) is restored unverified, in a try. A checkpoint whose files
  match its manifest but that still cannot be restored is intact: the reader (the code or the
  config) is what changed, so it is not moved, and the error says so. Running out of memory
  while restoring is re-raised as it is.
- Identity. Before restoring, the fields that define the run are compared with the saved config
  (`IDENTITY_FIELDS`): model (name, kwargs), data (every field but the runtime ones in
  `RUNTIME_DATA_FIELDS`: where the files are, how many threads read them, whether undecodable
  images are skipped; defaults filled in on both sides), task, the task's own fields that the config
  sets (`Task.CONFIG_FIELDS`: label smoothing and mixup, a tokenizer's losses; listed under
  `task_options`), optimizer, batch_size, seed and model_ema (the parameters' moving average,
  `mixtok.train.ema`: on or off, its schedule and what it averages, defaults filled in; not its
  `eval` switch).
  `total_steps` is not compared (a run may be extended), nor are logging, evaluation and
  checkpoint cadence, the mesh or the compute dtype. A difference stops the run with
  `ResumeMismatchError` (a ValueError) listing `field: saved -> now`; with
  `config.resume_mismatch = "allow"` the run resumes anyway and the list is logged as a warning
  (a checkpoint that then cannot be restored into the changed state is left in place).
- Another mesh. The state is restored into the layout the caller gives (the trainer's, built for
  the current mesh), so a checkpoint resumes on another device count or mesh shape. The data
  iterator's position is per process, so the `data` item records the process count that wrote it
  and every process's position. The train stream is the same for any process count (process i
  reads its rows of each global batch, `mixtok.data.pipeline`), so after step s with no image
  skipped every position is s * batch_size / count; such a position is rescaled to the new count
  (`rescaled_data_state`) and the run continues with the batches it would have had. Positions that
  do not have that form (an undecodable image was skipped, or grain worker processes hold one
  state each) stop the run with `ProcessCountChangedError` (a ValueError) before anything is
  restored, or, with resume_mismatch="allow", restore the state and leave the data iterator at
  its start.
- Shared workdirs (several processes, one folder). Process 0 alone reads the checkpoint folder to
  decide (the steps, the manifests, the saved config and process count, the moved-aside folders)
  and broadcasts its answer (`mixtok.train.primary_decides`); all processes then act on it, so
  they resume from the same step or stop with the same error. Restoring is a collective; a
  restore that failed on some processes only stops all of them with `CheckpointRestoreError`.
  Only process 0 moves a checkpoint aside and writes manifests. docs/reliability.md, "Shared
  workdirs", has the details.
"""

import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from ml_collections import ConfigDict

from mixtok.data import DatasetInfo, dataset_info
from mixtok.train import storage
from mixtok.train.ema import model_ema_from_config, with_running_stats
from mixtok.train.primary_decides import failed_processes, from_primary, gather_json
from mixtok.train.tasks import DEFAULT_TASK, get_task

log = logging.getLogger(__name__)

ITEMS = ("state", "data", "config", "dataset_info")
MANIFEST = "mixtok_manifest.json"
JSON_FILE = "metadata"  # the file orbax's JsonSave writes inside an item's folder
UNREADABLE = ".unreadable-"
TMP_MARKER = ".orbax-checkpoint-tmp"
IDENTITY_FIELDS = ("model", "data", "task", "task_options", "optimizer", "batch_size", "seed", "model_ema")
RUNTIME_DATA_FIELDS = ("root", "read_threads", "skip_undecodable")
RESUME_MISMATCH_MODES = ("error", "allow")
_ABSENT = "(absent)"


class CheckpointSaveError(OSError):
    """A checkpoint was not written (orbax's save, possibly in the background, failed)."""


class NoUsableCheckpointError(ValueError):
    """The workdir holds checkpoints but none of them can be resumed."""


class ResumeMismatchError(ValueError):
    """The workdir's checkpoints were written by a run with other defining fields."""


class ProcessCountChangedError(ValueError):
    """The checkpoint was written by another number of processes and its data positions cannot be rescaled."""


def rescaled_data_state(saved: Mapping[str, Any], step: int, batch_size: int, count: int) -> Any | None:
    """The iterator state for `count` processes from a data item written by another count, or None.

    The saved positions translate only when each is a plain grain position (`{"next_index": m}`) equal
    to step * batch_size / saved count: the processes then read exactly their rows of `step` global
    batches, and with `count` processes each will have read step * batch_size / count examples.
    """
    saved_count = saved.get("process_count") or 1
    states = [entry.get("value") for entry in saved.get("processes") or [saved]]
    expected = {"next_index": step * batch_size // saved_count}
    if batch_size % saved_count or batch_size % count or len(states) != saved_count:
        return None
    if any(state != expected for state in states):
        return None
    return {"next_index": step * batch_size // count}


class CheckpointRestoreError(OSError):
    """Some processes of a multi-host run restored a checkpoint and others could not (their file system)."""


class _Unreadable(Exception):
    """A checkpoint is bad; the message is the reason."""


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _is_primary() -> bool:
    return jax.process_index() == 0


_BARRIERS = itertools.count()


def _sync(name: str) -> None:
    """A barrier across the processes of a multi-host run (names must be unique: numbered)."""
    if jax.process_count() > 1:
        ocp.multihost.sync_global_processes(f"mixtok_checkpointing_{name}_{next(_BARRIERS)}")


def _processes(count: int) -> str:
    return f"{count} process" if count == 1 else f"{count} processes"


def _jsonable_iterator_state(state: Any) -> Any:
    """The data item: every process's iterator state and the process count they belong to.

    Orbax's JSON item is written by the primary process only, so the states of all processes are
    gathered into it (`processes`, in process order; a collective, like the save). Each process
    reads its own shard, and their positions differ when one skipped undecodable images. The
    top-level state is process 0's (what checkpoints written before `processes` hold); a position
    only applies to the same process count.
    """

    def one(state: Any) -> dict[str, Any]:
        return {"bytes": state.decode("utf-8")} if isinstance(state, bytes) else {"value": state}

    saved = one(state)
    if jax.process_count() == 1:
        return {**saved, "process_count": 1}
    return {**saved, "process_count": jax.process_count(), "processes": gather_json(saved)}


def _iterator_state_from_json(saved: Mapping[str, Any]) -> Any:
    """This process's state from the data item (process 0's in checkpoints that hold only that one)."""
    processes = saved.get("processes")
    if processes and len(processes) == jax.process_count():
        saved = processes[jax.process_index()]
    return saved["bytes"].encode("utf-8") if "bytes" in saved else saved["value"]


# --- the manifest ---------------------------------------------------------------------------


def _sha256(path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _checkpoint_files(step_dir) -> dict[str, int]:
    """{name relative to step_dir: size} of the files orbax wrote (one listing, also on gs://)."""
    return {name: size for name, size in storage.file_sizes(step_dir).items() if not name.startswith(MANIFEST)}


def write_manifest(step_dir, step: int) -> None:
    """Writes `step_dir/mixtok_manifest.json`: size and SHA-256 of every file in the finished checkpoint."""
    files = {
        name: {"size": size, "sha256": _sha256(step_dir / name)} for name, size in _checkpoint_files(step_dir).items()
    }
    manifest = {"format": 1, "step": int(step), "algorithm": "sha256", "files": files}
    storage.write_bytes_atomically(step_dir / MANIFEST, json.dumps(manifest, indent=0, sort_keys=True).encode())


def verify_manifest(step_dir) -> bool:
    """True when every file matches the manifest, False when there is none; raises `_Unreadable` otherwise."""
    path = step_dir / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        assert isinstance(files, dict) and files
    except Exception as error:
        raise _Unreadable(f"its manifest {MANIFEST} is unreadable ({_one_line(error)})") from None
    bad = []
    try:
        sizes = _checkpoint_files(step_dir)
    except OSError as error:
        raise _Unreadable(f"its files cannot be listed ({_one_line(error)})") from None
    for name, expected in files.items():
        try:
            if name not in sizes:
                bad.append(f"{name} is missing")
            elif sizes[name] != expected["size"]:
                bad.append(f"{name} has {sizes[name]} bytes, not {expected['size']}")
            elif _sha256(step_dir / name) != expected["sha256"]:
                bad.append(f"{name} has another SHA-256 than when it was written")
        except OSError as error:
            bad.append(f"{name} cannot be read ({_one_line(error)})")
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise _Unreadable(f"its files differ from its manifest: {bad[0]}{more}")
    return True


# --- the run's identity ---------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _data_identity(data: Mapping[str, Any]) -> dict[str, Any]:
    """config.data with its defaults filled in (as the data pipeline reads it), runtime fields left out."""
    from mixtok.data.options import data_options

    raw = dict(data or {})
    options_log = logging.getLogger("mixtok.data.options")
    level = options_log.level
    options_log.setLevel(logging.ERROR)  # unknown fields were reported when the run started
    try:
        filled = {**raw, **dataclasses.asdict(data_options(raw))}
    except Exception:  # e.g. a saved config from an older data pipeline: compare what was written
        filled = raw
    finally:
        options_log.setLevel(level)
    return _jsonable({k: v for k, v in filled.items() if k not in RUNTIME_DATA_FIELDS})


def _task_options(config: Mapping[str, Any], task: str) -> dict[str, Any]:
    """The task's own top-level fields (`Task.CONFIG_FIELDS`: label smoothing, mixup, a tokenizer's losses)
    that the config sets."""
    try:
        fields = get_task(task).CONFIG_FIELDS
    except Exception:  # an unknown task: the "task" field itself shows the difference
        return {}
    return {field: config.get(field) for field in fields if field in config}


def _model_ema_identity(block: Any) -> Any:
    """config.model_ema with its defaults filled in, `eval` left out (it only adds an eval pass); None when off."""
    if block is None:
        return None
    try:
        options = dataclasses.asdict(model_ema_from_config(ConfigDict({"model_ema": block})))
    except Exception:  # e.g. a field this version does not know: compare what was written
        return block
    options.pop("eval")
    return options


def _identity(config: Mapping[str, Any]) -> dict[str, Any]:
    model = config.get("model") or {}
    task = config.get("task", DEFAULT_TASK)
    return _jsonable(
        {
            "model": {"name": model.get("name"), "kwargs": model.get("kwargs") or {}},
            "data": _data_identity(config.get("data") or {}),
            "task": task,
            "task_options": _task_options(config, task),
            "optimizer": config.get("optimizer"),
            "batch_size": config.get("batch_size"),
            "seed": config.get("seed"),
            "model_ema": _model_ema_identity(config.get("model_ema")),
        }
    )


def _differences(saved: Any, now: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in list(saved) + [k for k in now if k not in saved]:
            out += _differences(saved.get(key, _ABSENT), now.get(key, _ABSENT), f"{prefix}{key}.")
        return out
    return [] if saved == now else [(prefix.rstrip("."), saved, now)]


def resume_differences(saved_config: Mapping[str, Any], config: ConfigDict) -> list[tuple[str, Any, Any]]:
    """(field, saved, now) for each defining field (IDENTITY_FIELDS) that differs between the two configs."""
    return _differences(_identity(saved_config), _identity(json.loads(config.to_json_best_effort())))


def _format_differences(differences: list[tuple[str, Any, Any]]) -> str:
    return "; ".join(f"{field}: {saved!r} -> {now!r}" for field, saved, now in differences)


def resume_mismatch_mode(config: ConfigDict) -> str:
    mode = config.get("resume_mismatch", "error")
    if mode not in RESUME_MISMATCH_MODES:
        raise ValueError(f"config.resume_mismatch must be one of {RESUME_MISMATCH_MODES}; got {mode!r}.")
    return mode


def check_resume_identity(
    saved_config: Mapping[str, Any], config: ConfigDict, directory: Path, step: int
) -> list[tuple[str, Any, Any]]:
    """Raises `ResumeMismatchError` listing the defining fields that differ, unless config.resume_mismatch="allow".

    Returns the differences (empty when the run is the same); under "allow" they are logged as a warning.
    """
    saved, now = _identity(saved_config), _identity(json.loads(config.to_json_best_effort()))
    differences = _differences(saved, now)
    if not differences:
        return []
    listed = _format_differences(differences)
    if resume_mismatch_mode(config) == "allow":
        log.warning(
            "Resuming %s at step %d although the run's defining fields changed (resume_mismatch=allow; "
            "saved -> now): %s",
            directory,
            step,
            listed,
        )
        return differences
    if saved["model"] != now["model"]:
        head = (
            f"The workdir's checkpoints in {directory} were written for model {saved['model']} but this config "
            f"asks for {now['model']}"
        )
    else:
        head = f"The workdir's checkpoints in {directory} were written by a run with another config"
    raise ResumeMismatchError(
        f"{head}; the fields that differ (saved -> now): {listed}. Use a new --workdir for a different run "
        f"(nothing was overwritten), or set --config.resume_mismatch=allow to resume from step {step} anyway."
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


# --- non-finite state ----------------------------------------------------------------------


def _first_nonfinite(state: Any) -> str | None:
    """The path of the first params / optimizer-state array holding NaN or infinity, or None."""
    groups = {name: getattr(state, name) for name in ("params", "opt_state") if hasattr(state, name)}
    if not groups and isinstance(state, Mapping):
        groups = {name: state[name] for name in ("params", "opt_state") if name in state}
    if not groups:
        groups = {"state": state}
    leaves = [
        (f"{name}{jax.tree_util.keystr(path)}", leaf)
        for name, tree in groups.items()
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact)
    ]
    if not leaves:
        return None
    finite = jax.jit(lambda xs: jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs]))([leaf for _, leaf in leaves])
    finite = jax.device_get(finite)
    for (name, _), ok in zip(leaves, finite):
        if not ok:
            return name
    return None


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in str(error)


# --- orbax's background errors ---------------------------------------------------------------


class _OrbaxErrorCatcher(logging.Handler):
    """Keeps the exception of the last error orbax logged (its failed background saves are only logged)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None and "orbax" in (record.pathname or ""):
            self.error = record.exc_info[1]

    def take(self) -> BaseException | None:
        error, self.error = self.error, None
        return error


class Checkpointer:
    """Saves and restores (state, data iterator, config) with orbax, keeping the last `keep`."""

    def __init__(self, directory: Path, keep: int = 3, save_every: int = 1000, async_save: bool = True):
        directory = storage.as_path(directory)  # a local path, or gs:// (mixtok.train.storage)
        self.directory = directory.absolute() if isinstance(directory, Path) else directory
        self.save_every = save_every
        self.async_save = async_save
        self._pending: int | None = None  # a step whose save may still be running: no manifest yet
        self._remove_unfinished_saves()
        self._catcher = _OrbaxErrorCatcher()
        logging.getLogger("absl").addHandler(self._catcher)
        # `max_to_keep` is deprecated in favour of preservation policies (orbax CheckpointManagerOptions'
        # docstring: "deprecated, do not use. use `preservation_policy` instead"); LatestN(None) keeps all.
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(keep),
            create=True,
            enable_async_checkpointing=async_save,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

    def _remove_unfinished_saves(self) -> None:
        if _is_primary() and self.directory.is_dir():
            leftovers = sorted(p for p in self.directory.iterdir() if TMP_MARKER in p.name)
            for path in leftovers:
                if not isinstance(path, Path):
                    storage.remove_tree(path)
                elif path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            if leftovers:
                log.warning(
                    "Removed %d unfinished checkpoint folder(s) an interrupted save left in %s: %s",
                    len(leftovers),
                    self.directory,
                    ", ".join(p.name for p in leftovers),
                )
        _sync("remove_unfinished")

    def _step_dir(self, step: int) -> Path:
        return self.directory / str(step)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def should_save(self, step: int) -> bool:
        return step % self.save_every == 0

    # --- saving ---

    def _check_free_space(self, step: int) -> None:
        """Refuses to start a save that cannot fit: the newest checkpoint's size (from its manifest) is the
        estimate, so the first save of a run is not checked (the save itself then fails, one line).
        The primary process measures; every process refuses together (none is left waiting in the save)."""

        def refusal() -> str | None:
            steps = sorted(self.manager.all_steps())
            if not steps or not isinstance(self.directory, Path):  # a bucket has no free space to read
                return None
            try:
                manifest = json.loads((self._step_dir(steps[-1]) / MANIFEST).read_text())
                needed = sum(int(entry["size"]) for entry in manifest["files"].values())
                free = shutil.disk_usage(self.directory).free
            except (OSError, ValueError, KeyError, TypeError):
                return None  # no manifest (older checkpoint) or nothing to measure: let the save itself report
            if free >= needed:
                return None
            return (
                f"Not saving the checkpoint of step {step}: {self.directory} has {free / 2**20:.1f} MiB free and "
                f"the last checkpoint (step {steps[-1]}) took {needed / 2**20:.1f} MiB. Free some space and rerun "
                f"to resume from step {steps[-1]}."
            )

        message = from_primary(refusal)
        if message is not None:
            raise CheckpointSaveError(message)

    def save(
        self, step: int, state: Any, data_iterator: Any, config: ConfigDict, info: DatasetInfo, *, force: bool = False
    ) -> bool:
        """Starts saving step `step`; raises `CheckpointSaveError` if this or the previous save failed, or if
        the disk has less free space than the last checkpoint took."""
        self._finish_pending()
        self._check_free_space(step)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(_jsonable_iterator_state(data_iterator.get_state())),
            config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
            dataset_info=ocp.args.JsonSave(dataclasses.asdict(info)),
        )
        self._catcher.take()
        try:
            saved = self.manager.save(step, args=args, force=force)
        except Exception as error:
            raise CheckpointSaveError(
                f"Saving the checkpoint of step {step} in {self.directory} failed: {_one_line(error)}"
            ) from error
        if saved:
            self._pending = int(step)
            if not self.async_save:
                self._finish_pending()
        return saved

    def _finish_pending(self) -> None:
        """Waits for the running save; raises if it failed, else writes its manifest."""
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        try:
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        except Exception as error:
            self.manager.reload()
            raise CheckpointSaveError(
                f"The checkpoint of step {step} was not saved in {self.directory} ({_one_line(error)}); the saved "
                f"steps are {sorted(self.manager.all_steps())}."
            ) from error
        step_dir = self._step_dir(step)
        if not step_dir.is_dir():  # orbax renames its temporary folder only once everything is written
            error = self._catcher.take()
            self.manager.reload()
            cause = _one_line(error) if error is not None else "orbax's background save failed; see the log"
            raise CheckpointSaveError(
                f"The checkpoint of step {step} was not saved in {self.directory} ({cause}); the saved steps are "
                f"{sorted(self.manager.all_steps())}."
            ) from error
        if _is_primary():
            try:
                write_manifest(step_dir, step)
            except OSError as error:
                raise CheckpointSaveError(
                    f"The manifest of the checkpoint of step {step} in {self.directory} could not be written: "
                    f"{_one_line(error)}"
                ) from error

    def poll(self) -> None:
        """Finishes a background save that has ended, without waiting for one still running.

        The trainer calls it after every step, so a save that failed (a full disk) stops the run at the
        next step with the save's error (`CheckpointSaveError`), not at the next save; one that succeeded
        gets its manifest then. Single-process runs only: with several processes, finishing a save
        passes barriers that every process must reach together, so there the next `save`, `wait` or
        `close` reports it.
        """
        if self._pending is None or jax.process_count() > 1:
            return
        if self._catcher.error is not None or not self.manager.is_saving_in_progress():
            self._finish_pending()

    def wait(self) -> None:
        """Waits for the running save and writes its manifest; raises `CheckpointSaveError` if it failed."""
        self._finish_pending()
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Finishes the running save (see `wait`) and closes orbax's manager."""
        propagating = sys.exc_info()[1]  # called from a `finally` while another error unwinds
        try:
            self._finish_pending()
        except CheckpointSaveError as error:
            if propagating is None:
                raise
            log.error("%s", error)
        finally:
            self.manager.close()
            logging.getLogger("absl").removeHandler(self._catcher)

    # --- restoring ---

    def restore_config(self, step: int) -> dict:
        restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return restored["config"]

    def restore(self, step: int, abstract_state: Any, data_iterator: Any) -> Any:
        """Restores the state into `abstract_state`'s shardings and rewinds `data_iterator` (no checks)."""
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore())
        )
        data_iterator.set_state(_iterator_state_from_json(restored["data"]))
        return restored["state"]

    def unreadable(self) -> list[Path]:
        """The checkpoints moved aside as unreadable (`<step>.unreadable-<time>/`)."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if UNREADABLE in p.name)

    def _move_aside(self, step: int, reason: str) -> Path:
        """Renames a bad checkpoint to `<step>.unreadable-<unix time>` (kept, not deleted); one warning.

        Only the primary process renames; every process waits for it and names the same folder.
        """

        def move() -> str:
            source = self._step_dir(step)
            stamp = int(time.time())
            target = self.directory / f"{step}{UNREADABLE}{stamp}"
            n = 1
            while target.exists():
                target = self.directory / f"{step}{UNREADABLE}{stamp}-{n}"
                n += 1
            storage.move(source, target)
            try:
                (target / "UNREADABLE.txt").write_text(f"step {step} moved aside by mixtok at {stamp}: {reason}\n")
            except OSError:
                pass
            return target.name

        target = self.directory / from_primary(move)
        self.manager.reload()
        log.warning("Checkpoint step %d is unreadable (%s); moved it aside to %s.", step, reason, target)
        return target

    def _inspect(self, step: int) -> dict[str, Any]:
        """What the primary process reads of checkpoint `step` before anything is restored (JSON-able).

        {"bad": reason} for a bad checkpoint; else {"bad": None, "verified": manifest checked,
        "config": the saved config, "processes": the process count that wrote it, None if not recorded}.
        The JSON items are read as files (orbax's restore is a collective that all processes enter).
        """
        step_dir = self._step_dir(step)
        try:
            verified = verify_manifest(step_dir)
            try:
                saved_config = json.loads((step_dir / "config" / JSON_FILE).read_text())
                assert isinstance(saved_config, dict), f"a {type(saved_config).__name__}, not a dict"
            except Exception as error:
                raise _Unreadable(f"its config cannot be read ({_one_line(error)})") from None
        except _Unreadable as bad:
            return {"bad": str(bad)}
        try:
            data = json.loads((step_dir / "data" / JSON_FILE).read_text())
            processes = data.get("process_count")
        except Exception:  # unreadable: the restore itself reports it
            data, processes = None, None
        return {"bad": None, "verified": verified, "config": saved_config, "processes": processes, "data": data}

    def _data_carries_over(self, seen: Mapping[str, Any], step: int, config: ConfigDict) -> bool | dict:
        """Whether the data iterator's saved position applies to this run's process count: True, False
        (start the data from the beginning), or the rescaled state to use instead (`rescaled_data_state`).

        Raises `ProcessCountChangedError` when the count changed and the positions cannot be rescaled,
        unless config.resume_mismatch="allow".
        """
        saved, now = seen["processes"], jax.process_count()
        if saved is None or saved == now:
            return True
        rescaled = rescaled_data_state(seen["data"] or {}, step, int(config.batch_size), now)
        if rescaled is not None:
            log.info(
                "The checkpoint of step %d was written by %s; this run has %s: each process resumes at its rows "
                "of the same global batches (data position %s).",
                step,
                _processes(saved),
                _processes(now),
                rescaled,
            )
            return rescaled
        what = (
            f"The checkpoint of step {step} in {self.directory} was written by {_processes(saved)} and this run "
            f"has {_processes(now)}: the processes' data positions cannot be rescaled to another count (an "
            "undecodable image was skipped, or grain worker processes each hold a position)"
        )
        if resume_mismatch_mode(config) == "allow":
            log.warning(
                "%s. Resuming the weights and optimizer at step %d with the data read from its start, in the "
                "order of %s (resume_mismatch=allow).",
                what,
                step,
                _processes(now),
            )
            return False
        raise ProcessCountChangedError(
            f"{what}. Resume with {_processes(saved)} (each may have another number of devices), or set "
            f"--config.resume_mismatch=allow to resume from step {step} with the data read from its start."
        )

    def restore_latest(self, abstract_state: Any, data_iterator: Any, config: ConfigDict) -> tuple[int, Any] | None:
        """(step, state) of the newest good checkpoint, `data_iterator` rewound to it; None without checkpoints.

        Checks, for each checkpoint newest first: its manifest, its config (the run's identity, see
        the module docstring), the process count that wrote it, that it restores, and that params
        and optimizer state are finite. A bad checkpoint is moved aside with a warning and the next
        older one is tried. With several processes, the primary reads the files and decides, and
        every process acts on its answer (see "Shared workdirs" in the module docstring).
        """
        resume_mismatch_mode(config)
        self.wait()
        steps = from_primary(lambda: sorted(self.manager.all_steps(), reverse=True))
        for step in steps:
            seen = from_primary(functools.partial(self._inspect, step))
            if seen["bad"] is not None:
                self._move_aside(step, seen["bad"])
                continue
            differences = check_resume_identity(seen["config"], config, self.directory, step)
            carry_data = self._data_carries_over(seen, step, config)
            error = None
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
                    ),
                )
                state, data_state = restored["state"], _iterator_state_from_json(restored["data"])
            except Exception as raised:
                if _out_of_memory(raised) and jax.process_count() == 1:
                    raise
                error = raised
            failed = failed_processes(error is not None)
            if failed:
                if error is not None and _out_of_memory(error):
                    raise error
                if error is None or len(failed) < jax.process_count():
                    cause = f" ({_one_line(error)})" if error is not None else ""
                    raise CheckpointRestoreError(
                        f"The checkpoint of step {step} in {self.directory} could not be restored by process(es) "
                        f"{failed} of {jax.process_count()}{cause} while the others restored it. A shared workdir must "
                        "look the same from every process: check the file system (and memory) of those hosts and "
                        "rerun. Nothing was moved."
                    ) from error
                if seen["verified"] or differences:
                    why = (
                        "its files match their checksums, so the checkpoint is intact and what reads it changed"
                        if seen["verified"]
                        else f"this config changed {', '.join(f for f, _, _ in differences)}"
                    )
                    raise ValueError(
                        f"The checkpoint of step {step} in {self.directory} cannot be restored into this run "
                        f"({_one_line(error)}); {why}. It was left in place: use a new --workdir, or the code "
                        f"and config that wrote it."
                    ) from error
                self._move_aside(step, f"it cannot be restored: {_one_line(error)}")
                continue
            nonfinite = _first_nonfinite(state)  # on global arrays: every process gets the same answer
            if nonfinite is not None:
                self._move_aside(step, f"{nonfinite} holds NaN or infinite values")
                continue
            if carry_data:
                data_iterator.set_state(carry_data if isinstance(carry_data, dict) else data_state)
            log.info(
                "Resumed from %s at step %d (%s).",
                self.directory,
                step,
                "checksums verified" if seen["verified"] else "no manifest: written by an older version, not verified",
            )
            return int(step), state
        moved = from_primary(lambda: [p.name for p in self.unreadable()])
        if moved:
            raise NoUsableCheckpointError(
                f"No checkpoint in {self.directory} can be resumed: "
                + (f"all {len(steps)} were unreadable and " if steps else "")
                + f"the unreadable ones are kept beside it as {', '.join(moved)} (each holds "
                "UNREADABLE.txt with the reason). Use a new --workdir, or move those folders out of "
                f"{self.directory} to start this run again from step 0."
            )
        return None


def create_checkpointer(config: ConfigDict, workdir: Any) -> Checkpointer:
    """The checkpointer of a run in `workdir` (`workdir/checkpoints`), as the config's checkpoint fields say."""
    return Checkpointer(
        storage.as_path(workdir) / "checkpoints",
        keep=config.get("keep_checkpoints", 3),
        save_every=config.get("checkpoint_every", 1000),
        async_save=config.get("async_checkpointing", True),
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


def load_run(workdir: Any, step: int | None = None, *, ema: bool = False) -> Run:
    """The run in `workdir` at checkpoint `step` (default: the latest); errors name what the workdir holds.

    The model is rebuilt from the saved config by the run's task (`Task.build_model`), without its
    losses or optimizer and without reading the data. A checkpoint whose files differ from its
    manifest is an error (nothing is moved: only training moves checkpoints aside). With `ema=True` the
    variables are the EMA model's (`config.model_ema`: the averaged parameters, and the averaged BatchNorm
    statistics where the run kept them, `model_ema.buffers`), what `eval_ema/...` evaluated; a run trained
    without EMA is then an error.
    """
    workdir = storage.as_path(workdir)  # a local path, or gs:// (mixtok.train.storage)
    if isinstance(workdir, Path):
        workdir = workdir.absolute()
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
        try:
            verify_manifest(directory / str(step))
        except _Unreadable as bad:
            raise ValueError(
                f"Checkpoint step {step} in {directory} is damaged: {bad}. Saved steps: {steps}; pass another "
                "step, or resume the run (training moves a damaged checkpoint aside and falls back)."
            ) from None
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
    params, other_variables = state["params"], state["other_variables"]
    if ema:
        if "ema_params" not in state:
            raise ValueError(
                f"Checkpoint step {step} in {directory} has no EMA weights: the run was trained without "
                "config.model_ema; load it with ema=False."
            )
        params = state["ema_params"]
        if "ema_batch_stats" in state:  # model_ema.buffers: the averaged running statistics too
            other_variables = with_running_stats(other_variables, state["ema_batch_stats"])
    return Run(
        config=config,
        model=task.build_model(config, info),
        variables=task.model_variables(params, other_variables),
        step=int(step),
        info=info,
        workdir=workdir,
    )
