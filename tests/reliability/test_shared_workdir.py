"""A workdir shared by the processes of a multi-host run (two processes over loopback, one folder).

One two-process run (8 steps, checkpoints at 4 and 8) is trained once per module; each test copies
its workdir. Process 0 reads the checkpoints and decides; both processes must act on its answer,
and a resume that falls back must end exactly where the undamaged run ended.
"""

import json
import logging
import re
import shutil
import sys

import jax
import numpy as np
import pytest

from mixtok import data as data_lib
from mixtok.train.checkpointing import ProcessCountChangedError, verify_manifest, write_manifest
from mixtok.train.metric_writer import read_metrics
from mixtok.train.trainer import train_and_evaluate
from mixtok.train.workdir import Workdir
from tests.parallel.test_restore_mesh import checkpoint_params
from tests.reliability.test_checkpoints import corrupt_array_file, run_config, saved_steps
from tests.train.test_multihost import run_two_processes

CONFIG = "tests.reliability.test_shared_workdir:logged_run_config"
RESUMED = re.compile(r"Resumed from \S+ at step (\d+) ")


def logged_run_config():
    """The worker's config (test_checkpoints' 8-step run); the checkpointer's INFO lines go to stderr,
    so that each process says which step it resumed from."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    checkpoint_log = logging.getLogger("mixtok.train.checkpointing")
    checkpoint_log.addHandler(handler)
    checkpoint_log.setLevel(logging.INFO)
    checkpoint_log.propagate = False
    return run_config()


def two_processes(workdir):
    """`run_two_processes` with the test config."""
    return run_two_processes(workdir, CONFIG)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("two_process_run")
    results = two_processes(workdir)
    return workdir, [result["final"] for result, _ in results]


@pytest.fixture
def workdir(two_process_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(two_process_run[0], copy, ignore=shutil.ignore_patterns(".lock*"))
    return copy


def test_both_processes_fall_back_to_the_same_step_and_the_bad_checkpoint_is_moved_once(workdir, two_process_run):
    base, base_finals = two_process_run
    corrupt_array_file(workdir / "checkpoints" / "8")
    results = two_processes(workdir)

    # Both processes name the same bad step and the same folder, and resume from the same step.
    for _, err in results:
        assert "Checkpoint step 8 is unreadable (its files differ from its manifest" in err, err[-3000:]
    assert [RESUMED.findall(err) for _, err in results] == [["4"], ["4"]]
    moved = [re.search(r"moved it aside to (\S+?)\.?$", err, re.M).group(1) for _, err in results]
    (unreadable,) = (workdir / "checkpoints").glob("*.unreadable-*")  # moved once, by process 0
    assert moved == [str(unreadable)] * 2 and unreadable.name.startswith("8.unreadable-")
    assert (unreadable / "UNREADABLE.txt").read_text().count("step 8") == 1

    # The fallback retrains 5..8 exactly as the undamaged run did.
    assert saved_steps(workdir) == [4, 8] and verify_manifest(workdir / "checkpoints" / "8")
    assert [result["final"] for result, _ in results] == base_finals
    assert read_metrics(workdir) == read_metrics(base)
    params, expected = checkpoint_params(workdir, 8, run_config()), checkpoint_params(base, 8, run_config())
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(b, a, err_msg=jax.tree_util.keystr(path))


def test_the_data_item_holds_each_process_iterator_position(two_process_run):
    workdir, _ = two_process_run
    config = run_config()
    expected = []
    for index in range(2):  # each process's shard, 8 steps of its half of the global batch
        batches = data_lib.create_train_iterator(
            config.data, global_batch_size=config.batch_size, seed=config.seed, shard_index=index, shard_count=2
        )
        for _ in range(8):
            next(batches)
        expected.append({"value": batches.get_state()})
    saved = json.loads((workdir / "checkpoints" / "8" / "data" / "metadata").read_text())
    assert saved == {**expected[0], "process_count": 2, "processes": expected}


def test_a_checkpoint_of_two_processes_resumes_on_one_as_if_it_had_not_moved(workdir, tmp_path):
    """The train stream is the same for any process count, so one process continues at the same global
    batches: its metrics equal those of the same two commands run on one process (float tolerance:
    another reduction order), and the saved data position is that run's."""
    train_and_evaluate(run_config(total_steps=12), workdir)
    straight = tmp_path / "straight"  # the same two commands, on one process throughout
    train_and_evaluate(run_config(), straight)
    train_and_evaluate(run_config(total_steps=12), straight)
    resumed, expected = read_metrics(workdir), read_metrics(straight)
    assert [r["step"] for r in resumed] == [r["step"] for r in expected] == [4, 8, 12]
    for got, want in zip(resumed, expected):
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=2e-4, abs=1e-5), (got["step"], key)
    saved = json.loads((workdir / "checkpoints" / "12" / "data" / "metadata").read_text())
    reference = json.loads((straight / "checkpoints" / "12" / "data" / "metadata").read_text())
    assert saved == reference == {"value": {"next_index": 12 * run_config().batch_size}, "process_count": 1}


def _positions_that_do_not_rescale(workdir, step=8):
    """Process 1 of the saved data item skipped an image (its position is one example further on)."""
    step_dir = workdir / "checkpoints" / str(step)
    path = step_dir / "data" / "metadata"
    saved = json.loads(path.read_text())
    saved["processes"][1]["value"]["next_index"] += 1
    path.write_text(json.dumps(saved))
    write_manifest(step_dir, step)  # an intact checkpoint, not a corrupted one


def test_positions_that_do_not_rescale_stop_a_resume_on_another_process_count(workdir):
    _positions_that_do_not_rescale(workdir)
    metrics = (workdir / "metrics.jsonl").read_text()
    with pytest.raises(ProcessCountChangedError) as error:
        train_and_evaluate(run_config(total_steps=12), workdir)
    message = str(error.value)
    assert "\n" not in message and "step 8" in message
    assert "written by 2 processes and this run has 1" in message and "Resume with 2 processes" in message
    assert "--config.resume_mismatch=allow" in message
    # Raised before training: nothing written, nothing moved.
    assert (workdir / "metrics.jsonl").read_text() == metrics
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["4", "8"]


def test_resume_mismatch_allow_resumes_the_weights_with_the_data_from_its_start(workdir, caplog):
    _positions_that_do_not_rescale(workdir)
    train_and_evaluate(run_config(total_steps=12, resume_mismatch="allow"), workdir)
    (warning,) = [r.getMessage() for r in caplog.records if "written by 2 processes" in r.getMessage()]
    assert "data read from its start" in warning
    assert [r["step"] for r in read_metrics(workdir)] == [4, 8, 12] and saved_steps(workdir) == [4, 8, 12]
    assert all(np.isfinite(r["train/loss"]) for r in read_metrics(workdir))
    # Steps 9..12 read the first 4 batches of a fresh one-process iterator.
    config = run_config(total_steps=12)
    fresh = data_lib.create_train_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)
    for _ in range(4):
        next(fresh)
    saved = json.loads((workdir / "checkpoints" / "12" / "data" / "metadata").read_text())
    assert saved == {"value": fresh.get_state(), "process_count": 1}


def test_a_process_other_than_0_that_fails_before_its_first_step_removes_only_its_own_lock(tmp_path):
    path = tmp_path / "new" / "run"
    other = Workdir(path, process_index=1, process_count=2)  # first to arrive: it creates the folders
    primary = Workdir(path, process_index=0, process_count=2)
    (path / "metrics.jsonl").touch()  # what the primary's writers create before the first step
    (path / "checkpoints").mkdir()
    other.close(failed=True)
    assert sorted(p.name for p in path.iterdir()) == [".lock.0", "checkpoints", "metrics.jsonl"]
    primary.close()
    assert sorted(p.name for p in path.iterdir()) == [".lock.0", "checkpoints", "metrics.jsonl"]
