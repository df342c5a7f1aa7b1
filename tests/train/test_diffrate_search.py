"""The diffrate_search task: the rates of a frozen tiny DeiT move towards the FLOPs target, and the schedule it
writes into the workdir loads as a TokenReduction and runs."""

import json

import flax.linen as nn
import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from mixtok.data import dataset_info
from mixtok.models.vit import VisionTransformer
from mixtok.reduction import diffrate
from mixtok.train.config import validate_config
from mixtok.train.tasks import get_task
from mixtok.train.trainer import train_and_evaluate

TINY = dict(depths=(3,), dims=(16,), num_heads=2, patch_size=8, image_size=32, mlp_ratios=2.0)


def tiny_config(**diffrate_fields) -> ConfigDict:
    return ConfigDict(
        dict(
            seed=0,
            task="diffrate_search",
            total_steps=4,
            batch_size=8,
            log_every=2,
            eval_every=4,
            checkpoint_every=4,
            progress_bar=False,
            tensorboard=False,
            label_smoothing=0.1,
            data=dict(name="synthetic", image_size=32, num_classes=4, num_examples=32, num_eval_examples=8),
            model=dict(name="deit_tiny_patch16_224", dtype="float32", kwargs=dict(TINY)),
            optimizer=dict(name="adamw", lr=0.5, weight_decay=0.0),
            diffrate=dict(target_flops=0.05, flops_unit=1e6, granularity=2, **diffrate_fields),
        )
    )


def test_search_moves_the_rates_and_writes_a_schedule_that_runs(tmp_path):
    metrics = train_and_evaluate(tiny_config(), str(tmp_path))
    found = json.loads((tmp_path / "diffrate_schedule.json").read_text())
    # zero logits: the mean candidate of 16, 14, ..., 2 patches is 9, so 9 + the class token = 10 at every block
    start = [17, 10, 10]
    assert found["prune_kept_num"][0] == found["merge_kept_num"][0] == 17  # the first block is not searched
    assert found["prune_kept_num"] != start or found["merge_kept_num"] != start
    assert min(found["prune_kept_num"][1:] + found["merge_kept_num"][1:]) < 10  # towards the (low) target
    reduction = diffrate.load_schedule(str(tmp_path / "diffrate_schedule.json"))
    pairs = list(zip(found["prune_kept_num"], found["merge_kept_num"], strict=True))
    mflops = diffrate.flops(pairs, num_tokens=17, dim=16, patch_size=8, num_classes=4) / 1e6
    assert found["flops"] == pytest.approx(mflops) == pytest.approx(metrics["eval/flops"], rel=1e-5)
    model = VisionTransformer(num_classes=4, token_reduction=reduction, **TINY)
    images = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
    logits = jax.jit(model.apply)(model.init(jax.random.PRNGKey(1), images), images)
    assert np.isfinite(logits).all()
    assert model.token_counts() == tuple(min(17, *pair) for pair in np.minimum.accumulate(np.array(pairs)))


def test_only_the_rates_are_trained():
    config = tiny_config()
    task = get_task("diffrate_search").from_config(config, dataset_info(config.data))
    variables = task.init(jax.random.PRNGKey(0), task.dummy_batch(32))
    assert set(variables["params"]) == {"prune_logits", "merge_logits"}
    assert variables["params"]["prune_logits"].shape == (2, 8)  # blocks 1 and 2; candidates 16, 14, ..., 2
    assert "blocks_0" in variables["backbone"] and "head" in variables["backbone"]


def test_a_config_without_a_target_is_one_clear_error():
    config = tiny_config()
    del config.diffrate["target_flops"]
    with pytest.raises(ValueError, match="config.diffrate.target_flops must be a positive number; got None"):
        validate_config(config)


def test_the_backbone_comes_from_backbone_weights(tmp_path):
    from mixtok.interop.weight_files import save_variables

    trained = VisionTransformer(num_classes=4, **TINY)
    variables = nn.meta.unbox(trained.init(jax.random.PRNGKey(7), np.zeros((1, 32, 32, 3), np.float32)))
    save_variables(tmp_path / "deit.msgpack", variables)
    config = tiny_config(backbone_weights=str(tmp_path / "deit.msgpack"))
    task = get_task("diffrate_search").from_config(config, dataset_info(config.data))
    backbone = nn.meta.unbox(jax.jit(lambda rng: task.init(rng, task.dummy_batch(32)))(jax.random.PRNGKey(0)))
    backbone = backbone["backbone"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, jax.tree_util.tree_map(np.asarray, backbone),
                           jax.tree_util.tree_map(np.asarray, variables["params"]))  # fmt: skip
    wider = VisionTransformer(num_classes=4, **{**TINY, "dims": (32,)})
    wide = nn.meta.unbox(wider.init(jax.random.PRNGKey(7), np.zeros((1, 32, 32, 3), np.float32)))
    save_variables(tmp_path / "wide.msgpack", wide)
    task = get_task("diffrate_search").from_config(
        tiny_config(backbone_weights=str(tmp_path / "wide.msgpack")), dataset_info(config.data)
    )
    with pytest.raises(ValueError, match="has shape .* the model"):
        task.init(jax.random.PRNGKey(0), task.dummy_batch(32))
