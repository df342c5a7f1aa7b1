"""The trainer's pieces, driven by hand as a notebook would, reproduce `train_and_evaluate` bit for bit."""

import jax
import numpy as np

from mixtok import data
from mixtok.parallel import batch_sharding, create_mesh, rules_from_config
from mixtok.train import (
    abstract_train_state,
    create_checkpointer,
    create_train_state,
    evaluate,
    get_task,
    load_run,
    make_eval_images_step,
    make_eval_step,
    make_train_step,
    put_batch,
    seed_rngs,
)
from mixtok.train.metric_writer import read_metrics


def _assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for (path, x), y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_five_steps_by_hand_give_exactly_the_trainers_parameters_and_metrics(five_step_run):
    config, workdir = five_step_run
    records = read_metrics(workdir)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]

    info = data.dataset_info(config.data)
    task = get_task(config.task).from_config(config, info)
    tx, schedule = task.create_optimizer(config)
    mesh, rules = create_mesh(config.get("mesh")), rules_from_config(config.get("sharding_rules"))
    batches_sharding = batch_sharding(mesh, rules)
    layout = abstract_train_state(task, tx, info.image_size, mesh, rules)
    init_rng, step_rng = seed_rngs(config.seed)
    state = create_train_state(task, tx, init_rng, info.image_size, layout)
    for array, spec in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(layout)):
        assert array.sharding == spec.sharding and array.shape == spec.shape  # created sharded
    train_step = make_train_step(task, tx, schedule, layout, batches_sharding)
    batches = data.create_train_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)
    for record in records:
        state, metrics = train_step(state, put_batch(next(batches), batches_sharding), step_rng)
        by_hand = {f"train/{k}": float(v) for k, v in jax.device_get(metrics).items()}
        assert by_hand == {k: v for k, v in record.items() if k.startswith("train/")}, record["step"]

    eval_batches = data.create_eval_iterator(config.data, global_batch_size=config.batch_size)
    eval_metrics, images = evaluate(
        task,
        make_eval_step(task, layout, batches_sharding),
        make_eval_images_step(task, layout, batches_sharding),
        state,
        eval_batches,
        batches_sharding,
    )
    assert eval_metrics == {k: v for k, v in records[-1].items() if k.startswith("eval/")}
    assert images == {}  # classification writes no eval images

    # The whole saved state (optimizer moments included) and the data position match the hand-driven ones.
    checkpointer = create_checkpointer(config, workdir)
    resumed_batches = data.create_train_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)
    saved = checkpointer.restore(5, layout, resumed_batches)
    checkpointer.close()
    _assert_trees_equal(saved, state)
    assert resumed_batches.get_state() == batches.get_state()
    run = load_run(workdir)
    _assert_trees_equal(run.variables, task.model_variables(state.params, state.other_variables))
