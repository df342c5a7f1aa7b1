"""load_run: a trained run's config, model and variables, without its data; errors that name what exists."""

import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mixtok import data
from mixtok.train import Run, load_run


def _saved_params(workdir, step):
    """The checkpoint's parameters read with orbax directly: what load_run must hand back."""
    manager = ocp.CheckpointManager((workdir / "checkpoints").absolute(), item_names=("state",))
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    manager.close()
    return state["params"]


def test_the_loaded_model_reproduces_the_trainers_eval_accuracy(five_step_run):
    from mixtok.train.metric_writer import read_metrics

    config, workdir = five_step_run
    run = load_run(workdir)
    assert isinstance(run, Run) and run.step == 5 and run.config.model.name == config.model.name
    correct = count = 0.0
    for batch in data.create_eval_iterator(config.data, global_batch_size=config.batch_size):
        logits = np.asarray(run.model.apply(run.variables, batch["image"], train=False))
        correct += float(np.sum((logits.argmax(-1) == batch["label"]) * batch["mask"]))
        count += float(np.sum(batch["mask"]))
    assert correct / count == read_metrics(workdir)[-1]["eval/accuracy"]


def test_step_picks_a_checkpoint_and_the_variables_are_that_checkpoints(five_step_run):
    _, workdir = five_step_run
    run = load_run(workdir, step=2)
    assert run.step == 2
    saved = _saved_params(workdir, 2)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(run.variables["params"]), jax.tree_util.tree_leaves(saved)
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))
    latest = load_run(workdir)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(latest.variables["params"]), jax.tree_util.tree_leaves(saved))
    )


def test_a_run_loads_without_its_data_and_carries_the_normalisation(five_step_run, monkeypatch):
    config, workdir = five_step_run
    expected = data.dataset_info(config.data)

    def unreadable(_):
        raise AssertionError("load_run should not read the data: the checkpoint holds its DatasetInfo")

    monkeypatch.setattr("mixtok.train.checkpointing.dataset_info", unreadable)
    run = load_run(workdir)
    assert run.info == expected
    assert run.info.mean == data.data_options(config.data).mean and run.info.std == data.data_options(config.data).std


def test_a_checkpoint_without_dataset_info_reads_it_from_the_data(five_step_run, tmp_path):
    config, workdir = five_step_run
    older = tmp_path / "older"
    shutil.copytree(workdir, older)
    for step_dir in (older / "checkpoints").iterdir():
        shutil.rmtree(step_dir / "dataset_info", ignore_errors=True)
        (step_dir / "mixtok_manifest.json").unlink(missing_ok=True)  # nor did checkpoints have manifests then
    run = load_run(older)
    assert run.step == 5 and run.info == data.dataset_info(config.data)


def test_errors_name_the_workdir_and_what_it_holds(five_step_run, tmp_path):
    _, workdir = five_step_run
    with pytest.raises(ValueError, match=r"The workdir '.*nowhere' does not exist"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"has no checkpoints/ folder \(it holds \['metrics.jsonl'\]\)"):
        load_run(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ValueError, match="holds no finished checkpoint"):
        load_run(tmp_path)
    with pytest.raises(ValueError, match=r"Step 3 is not a checkpoint in .*; saved steps: \[2, 4, 5\]"):
        load_run(workdir, step=3)
    with pytest.raises(ValueError, match=r"Checkpoint step 5 in .* has no EMA weights: the run was trained without"):
        load_run(workdir, ema=True)
