"""Checkpoints that cannot be trusted are moved aside and the run resumes from the newest good one.

One tiny run (checkpoints at steps 4 and 8, saved asynchronously) is trained once per module; each
test copies its workdir, damages it, and runs the same command again. A fallback resume must end
exactly where the undamaged run ended (the trainer reproduces a run step for step).
"""

import dataclasses
import json
import logging
import os
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import mixtok.train.config as config_module
from mixtok import data as data_lib
from mixtok.parallel import create_mesh, rules_from_config
from mixtok.train import load_run, steps
from mixtok.train.checkpointing import (
    MANIFEST,
    Checkpointer,
    CheckpointSaveError,
    NoUsableCheckpointError,
    ResumeMismatchError,
    create_checkpointer,
    verify_manifest,
)
from mixtok.train.metric_writer import read_metrics
from mixtok.train.tasks import get_task
from mixtok.train.trainer import train_and_evaluate
from tests.train.test_cli import QUICKSTART, _cli
from tests.train.test_trainer import TINY_MIXER, tiny_config

CHECKPOINT_LOG = "mixtok.train.checkpointing"


def run_config(**overrides):
    """8 steps of the tiny MLP-Mixer, checkpoints at 4 and 8 (async), a log record at each and eval at the end."""
    settings = dict(total_steps=8, checkpoint_every=4, log_every=4, eval_every=8, tensorboard=False)
    return tiny_config(**{**settings, **TINY_MIXER, **overrides})


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("base_run")
    train_and_evaluate(run_config(), workdir)
    return workdir


@pytest.fixture
def workdir(base_run, tmp_path):
    """A fresh copy of the finished base run."""
    copy = tmp_path / "run"
    shutil.copytree(base_run, copy)
    return copy


def checkpoint_names(workdir):
    return sorted(p.name for p in (workdir / "checkpoints").iterdir())


def saved_steps(workdir):
    manager = ocp.CheckpointManager((workdir / "checkpoints").absolute())
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def unreadable_warnings(caplog):
    return [r for r in caplog.records if r.name == CHECKPOINT_LOG and "unreadable" in r.getMessage()]


def corrupt_array_file(step_dir):
    """Overwrites 64 bytes in the middle of the largest file of the state item (array data)."""
    path = max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(np.random.default_rng(0).bytes(64))


def garble_json(step_dir):
    """Replaces the saved config's JSON (and the state's pytree metadata) with garbage."""
    (step_dir / "config" / "metadata").write_text('{"model": {"name": ')
    (step_dir / "state" / "_METADATA").write_text("\x00not json")


def assert_resumed_from_4_and_matches(workdir, base_run, caplog, reason):
    (warning,) = unreadable_warnings(caplog)
    assert "step 8" in warning.getMessage() and reason in warning.getMessage()
    (moved,) = (workdir / "checkpoints").glob("8.unreadable-*")
    assert "step 8" in (moved / "UNREADABLE.txt").read_text()
    assert saved_steps(workdir) == [4, 8]  # 8 written again by the resumed run; the bad one is not listed
    for step in ("4", "8"):  # restoring changed nothing; the new 8 has its manifest
        assert verify_manifest(workdir / "checkpoints" / step)
    records = read_metrics(workdir)
    assert all(np.isfinite(r["train/loss"]) for r in records)
    assert records == read_metrics(base_run)  # resumed at 4 and retrained 5..8 exactly


def test_every_finished_checkpoint_has_a_verified_manifest(base_run):
    assert checkpoint_names(base_run) == ["4", "8"]
    for step in ("4", "8"):
        step_dir = base_run / "checkpoints" / step
        manifest = json.loads((step_dir / MANIFEST).read_text())
        assert manifest["step"] == int(step) and manifest["algorithm"] == "sha256"
        assert any(name.startswith("state/") for name in manifest["files"])
        assert verify_manifest(step_dir) is True
        assert not list(step_dir.glob(f"{MANIFEST}.tmp"))


def test_random_bytes_in_an_array_file_fall_back_to_the_previous_checkpoint(workdir, base_run, caplog):
    corrupt_array_file(workdir / "checkpoints" / "8")
    train_and_evaluate(run_config(), workdir)
    assert_resumed_from_4_and_matches(workdir, base_run, caplog, "differ from its manifest")


def test_load_run_refuses_a_damaged_checkpoint_and_loads_a_good_one(workdir):
    corrupt_array_file(workdir / "checkpoints" / "8")
    with pytest.raises(ValueError, match=r"step 8 .* is damaged: its files differ from its manifest"):
        load_run(workdir)
    assert load_run(workdir, step=4).step == 4
    assert checkpoint_names(workdir) == ["4", "8"]  # nothing moved


@pytest.mark.parametrize("manifest", [True, False], ids=["with_manifest", "older_checkpoint_without_manifest"])
def test_garbled_metadata_falls_back_to_the_previous_checkpoint(workdir, base_run, caplog, manifest):
    step_dir = workdir / "checkpoints" / "8"
    if not manifest:
        os.remove(step_dir / MANIFEST)
    garble_json(step_dir)
    train_and_evaluate(run_config(), workdir)
    reason = "differ from its manifest" if manifest else "config cannot be read"
    assert_resumed_from_4_and_matches(workdir, base_run, caplog, reason)


def test_no_good_checkpoint_is_one_clear_error_and_stays_one(workdir, caplog):
    corrupt_array_file(workdir / "checkpoints" / "4")
    garble_json(workdir / "checkpoints" / "8")
    with pytest.raises(NoUsableCheckpointError, match=f"No checkpoint in {workdir / 'checkpoints'} can be resumed"):
        train_and_evaluate(run_config(), workdir)
    assert len(unreadable_warnings(caplog)) == 2
    names = checkpoint_names(workdir)
    assert len(names) == 2 and all(".unreadable-" in n for n in names)  # moved, not deleted
    # Running again does not silently start over from step 0.
    with pytest.raises(NoUsableCheckpointError, match="move those folders out"):
        train_and_evaluate(run_config(), workdir)
    assert (workdir / "metrics.jsonl").read_text() != ""


def test_leftover_temporary_folder_of_an_interrupted_save_is_removed(workdir, caplog):
    leftover = workdir / "checkpoints" / "12.orbax-checkpoint-tmp-1765080000"
    (leftover / "state").mkdir(parents=True)
    (leftover / "state" / "half_written").write_bytes(b"\x00" * 100)
    train_and_evaluate(run_config(), workdir)  # finished already: restores step 8 and returns
    assert not leftover.exists()
    (warning,) = [r for r in caplog.records if r.name == CHECKPOINT_LOG and r.levelno == logging.WARNING]
    assert "12.orbax-checkpoint-tmp-1765080000" in warning.getMessage()
    assert checkpoint_names(workdir) == ["4", "8"]


def _layout(config):
    info = data_lib.dataset_info(config.data)
    task = get_task(config.task).from_config(config, info)
    tx, _ = task.create_optimizer(config)
    mesh, rules = create_mesh(None), rules_from_config(None)
    return steps.abstract_train_state(task, tx, info.image_size, mesh, rules), info


def test_nonfinite_restored_state_falls_back_to_the_previous_checkpoint(workdir, base_run, caplog):
    # Step 8 rewritten with NaN parameters: a checkpoint whose files are intact but whose values are not.
    config = run_config()
    layout, info = _layout(config)
    checkpointer = Checkpointer(workdir / "checkpoints", keep=10, async_save=False)
    batches = data_lib.create_train_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)
    state = checkpointer.restore(8, layout, batches)
    state = dataclasses.replace(state, params=jax.tree_util.tree_map(lambda x: x * jnp.nan, state.params))
    checkpointer.close()
    shutil.rmtree(workdir / "checkpoints" / "8")
    checkpointer = Checkpointer(workdir / "checkpoints", keep=10, async_save=False)
    checkpointer.save(8, state, batches, config, info, force=True)
    checkpointer.close()
    assert verify_manifest(workdir / "checkpoints" / "8")
    caplog.clear()

    train_and_evaluate(config, workdir)
    assert_resumed_from_4_and_matches(workdir, base_run, caplog, "NaN or infinite")


@pytest.mark.parametrize(
    "override,listed",
    [
        ({"data.num_examples": 128}, "data.num_examples: 96 -> 128"),
        ({"seed": 4}, "seed: 3 -> 4"),
        ({"label_smoothing": 0.2}, "task_options.label_smoothing: 0.1 -> 0.2"),
    ],
)
def test_resuming_a_different_run_is_refused_naming_the_field(workdir, override, listed):
    before = checkpoint_names(workdir)
    with pytest.raises(ResumeMismatchError, match="Use a new --workdir") as error:
        train_and_evaluate(run_config(**override), workdir)
    assert listed in str(error.value) and "resume_mismatch=allow" in str(error.value)
    assert "\n" not in str(error.value)
    assert checkpoint_names(workdir) == before  # nothing moved or overwritten


@pytest.fixture
def resume_mismatch_field(monkeypatch):
    """Lets configs carry `resume_mismatch` while validate_config does not list it yet."""
    if "resume_mismatch" not in config_module.TRAINER_FIELDS:
        monkeypatch.setattr(config_module, "TRAINER_FIELDS", config_module.TRAINER_FIELDS + ("resume_mismatch",))


def test_resume_mismatch_allow_resumes_with_a_warning_listing_the_fields(workdir, caplog, resume_mismatch_field):
    config = run_config(seed=4, total_steps=12, resume_mismatch="allow")
    final = train_and_evaluate(config, workdir)
    (warning,) = [r for r in caplog.records if r.name == CHECKPOINT_LOG and r.levelno == logging.WARNING]
    assert "at step 8" in warning.getMessage() and "seed: 3 -> 4" in warning.getMessage()
    assert np.isfinite(final["train/loss"])
    assert [r["step"] for r in read_metrics(workdir)] == [4, 8, 12]


def test_an_intact_checkpoint_that_does_not_fit_the_changed_model_is_left_in_place(workdir, resume_mismatch_field):
    config = run_config(resume_mismatch="allow", **{"model.kwargs.dims": (24,)})
    with pytest.raises(ValueError, match="step 8 .* cannot be restored into this run .* left in place"):
        train_and_evaluate(config, workdir)
    assert checkpoint_names(workdir) == ["4", "8"]


@pytest.mark.parametrize("damage", ["all_checkpoints_bad", "another_run"])
def test_the_command_line_reports_an_unresumable_workdir_in_one_line_with_exit_code_2(workdir, damage):
    if damage == "all_checkpoints_bad":
        corrupt_array_file(workdir / "checkpoints" / "4")
        corrupt_array_file(workdir / "checkpoints" / "8")
        expected = "can be resumed"
    else:  # the quickstart is another model, data and seed than the tiny run that wrote the workdir
        expected = "model.name: 'mixer_s16_224' -> 'poolformerv2_s12'; model.kwargs.depths: [1] -> [1, 1, 2, 1]"
    proc = _cli("--config", QUICKSTART, "--workdir", str(workdir), "--config.data.name=synthetic")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("mixtok.train: error:")]
    assert expected in line and "Traceback" not in stderr, stderr[-3000:]


# --- failed saves ------------------------------------------------------------------------------


class _Batches:
    def get_state(self):
        return {"position": 1}


def fail_saves(monkeypatch, where="commit"):
    """Orbax's background save fails with "disk full": once every file is written, at the rename that
    finalises the checkpoint ("commit"), or as if writing an array had failed ("write")."""
    from orbax.checkpoint._src.checkpointers import async_checkpointer

    real = async_checkpointer._background_wait_for_commit_futures

    def no_space():
        raise OSError(28, "No space left on device")

    def fail(directory, commit_futures, on_commit_callback, **kwargs):
        if where == "commit":
            real(directory, commit_futures, no_space, **kwargs)
        else:  # let the writes end (no thread outlives the test), then fail as a write would
            async_checkpointer.future.ChainedFuture(commit_futures, cb=lambda: None).result(timeout=600)
            no_space()

    monkeypatch.setattr(async_checkpointer, "_background_wait_for_commit_futures", fail)


@pytest.fixture
def disk_full(monkeypatch):
    fail_saves(monkeypatch)
    return monkeypatch


@pytest.fixture
def tiny_save(tmp_path):
    config = run_config()
    info = data_lib.dataset_info(config.data)
    state = {"w": jnp.arange(6.0)}
    return lambda checkpointer, step: checkpointer.save(step, state, _Batches(), config, info, force=True)


@pytest.mark.parametrize("where", ["commit", "write"])
def test_a_failed_background_save_is_raised_at_the_next_save_naming_the_step(tmp_path, tiny_save, monkeypatch, where):
    checkpointer = Checkpointer(tmp_path / "checkpoints", async_save=True)
    tiny_save(checkpointer, 1)
    checkpointer.wait()
    assert verify_manifest(tmp_path / "checkpoints" / "1")
    fail_saves(monkeypatch, where)
    tiny_save(checkpointer, 2)  # returns at once; the write fails in the background
    with pytest.raises(CheckpointSaveError, match=r"step 2 was not saved .*No space left on device") as error:
        tiny_save(checkpointer, 3)
    assert "\n" not in str(error.value) and "[1]" in str(error.value)
    checkpointer.close()  # the error was reported once


def test_a_failed_background_save_is_raised_at_the_next_poll(tmp_path, tiny_save, disk_full):
    """The trainer polls after every step: the failure stops the run at the next step, not the next save."""
    checkpointer = Checkpointer(tmp_path / "checkpoints", async_save=True)
    tiny_save(checkpointer, 2)
    while checkpointer.manager.is_saving_in_progress():  # the background save ends (however loaded the machine)
        time.sleep(0.01)
    with pytest.raises(CheckpointSaveError, match="step 2 was not saved"):
        checkpointer.poll()
    checkpointer.poll()  # reported once; nothing pending
    checkpointer.close()


def test_a_successful_background_save_gets_its_manifest_at_a_poll(tmp_path, tiny_save):
    checkpointer = Checkpointer(tmp_path / "checkpoints", async_save=True)
    tiny_save(checkpointer, 3)
    checkpointer.manager.wait_until_finished()
    checkpointer.poll()
    assert verify_manifest(tmp_path / "checkpoints" / "3")
    checkpointer.close()


def test_a_save_that_cannot_fit_is_refused_before_it_starts(tmp_path, tiny_save, monkeypatch):
    checkpointer = Checkpointer(tmp_path / "checkpoints", async_save=True)
    tiny_save(checkpointer, 1)
    checkpointer.wait()
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=10))
    with pytest.raises(CheckpointSaveError, match=r"Not saving the checkpoint of step 2: .* MiB free .*step 1\)"):
        tiny_save(checkpointer, 2)
    monkeypatch.undo()
    assert sorted(checkpointer.manager.all_steps()) == [1] and not list((tmp_path / "checkpoints").glob("2*"))
    checkpointer.close()


def test_a_failed_background_save_is_raised_by_close(tmp_path, tiny_save, disk_full):
    checkpointer = Checkpointer(tmp_path / "checkpoints", async_save=True)
    tiny_save(checkpointer, 5)
    with pytest.raises(CheckpointSaveError, match="step 5 was not saved"):
        checkpointer.close()


def test_a_failed_save_stops_training_and_the_next_start_cleans_up(tmp_path, disk_full, caplog):
    with pytest.raises(CheckpointSaveError, match="step 4 was not saved"):
        train_and_evaluate(run_config(), tmp_path)
    assert list((tmp_path / "checkpoints").glob("4.orbax-checkpoint-tmp*"))
    disk_full.undo()
    create_checkpointer(run_config(), tmp_path).close()
    assert not list((tmp_path / "checkpoints").glob("*orbax-checkpoint-tmp*"))
    assert any("interrupted save" in r.getMessage() for r in caplog.records if r.name == CHECKPOINT_LOG)


def test_close_while_another_error_unwinds_logs_the_failed_save_and_keeps_the_first_error(
    tmp_path, tiny_save, disk_full, caplog
):
    checkpointer = Checkpointer(tmp_path / "checkpoints", async_save=True)
    tiny_save(checkpointer, 5)
    with pytest.raises(KeyboardInterrupt):
        try:
            raise KeyboardInterrupt
        finally:
            checkpointer.close()
    (record,) = [r for r in caplog.records if r.name == CHECKPOINT_LOG and r.levelno == logging.ERROR]
    assert "step 5 was not saved" in record.getMessage()
