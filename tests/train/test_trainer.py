"""The trainer: exact resume, metrics files, NaN stop, refusing another model's workdir."""

import itertools
import json
import shutil
import types

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from ml_collections import ConfigDict

from mixtok.data import create_train_iterator
from mixtok.train import trainer
from mixtok.train.metric_writer import read_metrics
from mixtok.train.trainer import NonFiniteLossError, train_and_evaluate

# What the trainer does (resume, checkpoints, processes, faults) does not depend on the model: the tests that need
# only some model pass these overrides to tiny_config, a one-block MLP-Mixer on a 4x4 grid of 8-px patches, which
# compiles in about half the time of tiny_config's four-stage PoolFormerV2 (compiling is most of those tests' time).
TINY_MIXER = {
    "model.name": "mixer_s16_224",
    "model.kwargs": dict(depths=(1,), dims=(16,), patch_size=8, image_size=32, drop_path_rate=0.1),
}


def tiny_config(**overrides) -> ConfigDict:
    config = ConfigDict(
        dict(
            seed=3,
            task="classification",
            total_steps=12,
            batch_size=16,
            log_every=2,
            eval_every=6,
            checkpoint_every=4,
            keep_checkpoints=10,
            progress_bar=False,
            label_smoothing=0.1,
            data=dict(name="synthetic", image_size=32, num_classes=4, num_examples=96, num_eval_examples=40),
            model=dict(
                name="poolformerv2_s12",
                dtype="float32",
                kwargs=dict(
                    depths=(1, 1, 1, 1),
                    dims=(8, 8, 16, 16),
                    drop_path_rate=0.1,
                    token_mixers=("pooling", "pooling", "attention", "attention"),
                ),
            ),
            optimizer=dict(name="adamw", lr=2e-3, warmup_steps=2, weight_decay=0.05, grad_clip=1.0),
        )
    )
    for key, value in overrides.items():
        if "." not in key and key not in config:
            config[key] = value
            continue
        target = config
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        target[last] = value
    return config


def tiny_mixer_config(**overrides) -> ConfigDict:
    """tiny_config with the one-block MLP-Mixer (TINY_MIXER), for the tests that need some model, not that one."""
    return tiny_config(**{**TINY_MIXER, **overrides})


def _restore_params(workdir, step):
    manager = ocp.CheckpointManager((workdir / "checkpoints").absolute(), item_names=("state",))
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    return jax.tree_util.tree_map(np.asarray, state["params"])


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """(config, workdir, final metrics) of the tiny MLP-Mixer's 12-step run, never interrupted: logs every 2 steps,
    evals at 6 and 12, checkpoints every 4 steps with the last 2 kept. The tests below only read its workdir."""
    workdir = tmp_path_factory.mktemp("straight_run")
    config = tiny_config(keep_checkpoints=2, **TINY_MIXER)
    return config, workdir, train_and_evaluate(config, workdir)


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(straight_run, tmp_path):
    config, straight, _ = straight_run
    # Stop at step 7, between checkpoints (4, 8): the stop itself saves, as SIGTERM does.
    train_and_evaluate(config, tmp_path, stop_at_step=7)
    assert [r["step"] for r in read_metrics(tmp_path)] == [2, 4, 6]
    train_and_evaluate(config, tmp_path)

    assert read_metrics(tmp_path) == read_metrics(straight)
    params_a, params_b = _restore_params(straight, 12), _restore_params(tmp_path, 12)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params_a), jax.tree_util.tree_leaves(params_b)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def test_metrics_file_has_train_loss_every_log_step_and_eval_at_eval_steps(straight_run):
    _, workdir, final = straight_run
    records = read_metrics(workdir)
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]
    assert all(np.isfinite(r["train/loss"]) for r in records)
    evals = [r for r in records if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [6, 12]
    assert all(0.0 <= r["eval/accuracy"] <= 1.0 and r["eval/loss"] > 0 for r in evals)
    assert final == {k: v for k, v in records[-1].items() if k != "step"}
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    saved_config = json.loads((workdir / "checkpoints" / "12" / "config" / "metadata").read_text())
    assert saved_config["model"]["name"] == "mixer_s16_224"


def test_only_the_last_n_checkpoints_are_kept(straight_run):
    _, workdir, _ = straight_run  # checkpoints at 4, 8 and 12; keep_checkpoints=2
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [8, 12]


def test_finished_run_rerun_returns_without_training(straight_run, tmp_path):
    config, straight, _ = straight_run
    shutil.copytree(straight, tmp_path / "run")
    before = read_metrics(tmp_path / "run")
    train_and_evaluate(config, tmp_path / "run")
    assert read_metrics(tmp_path / "run") == before


def test_nonfinite_loss_stops_training_and_names_the_step(tmp_path):
    config = tiny_config(
        **{"optimizer.lr": 1e30, "optimizer.grad_clip": None, "optimizer.warmup_steps": 0}, **TINY_MIXER
    )
    with pytest.raises(NonFiniteLossError, match=r"is (nan|inf|-inf) at step \d+"):
        train_and_evaluate(config, tmp_path)


def test_workdir_of_a_different_model_is_refused_and_left_untouched(tmp_path):
    train_and_evaluate(tiny_config(total_steps=4, **TINY_MIXER), tmp_path)
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    other = tiny_config(total_steps=8, **TINY_MIXER, **{"model.kwargs.dims": (24,)})
    with pytest.raises(ValueError, match="were written for model .* Use a new --workdir"):
        train_and_evaluate(other, tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


@pytest.mark.parametrize(
    "override,message",
    [
        ({"total_stepz": 3}, "Unknown config field 'total_stepz'. Did you mean 'total_steps'"),
        ({"batch_size": 0}, "config.batch_size must be a positive integer; got 0"),
        ({"model.dtype": "bf16"}, "Unknown compute dtype 'bf16'"),
        ({"data.image_size": 40}, "Image size 40x40 is not divisible by the model's total stride 32"),
        (
            {"data.multi_scale": dict(min_size=32, max_size=64, num_scales=2, check_scale=32, batch_multiple=2)},
            r"global batches \{32: 16, 64: 4\} \(size: batch\), and those at \{64: 4\} do not split over the 8 devices",
        ),
    ],
)
def test_bad_configs_are_rejected_with_the_reason(tmp_path, override, message):
    config = tiny_config()
    for key, value in override.items():
        if key == "total_stepz":
            config[key] = value
        else:
            config = tiny_config(**{key: value})
    with pytest.raises(ValueError, match=message):
        train_and_evaluate(config, tmp_path)


def test_bfloat16_compute_trains(tmp_path):
    final = train_and_evaluate(tiny_config(total_steps=4, eval_every=4, **{"model.dtype": "bfloat16"}), tmp_path)
    assert np.isfinite(final["train/loss"]) and 0.0 <= final["eval/accuracy"] <= 1.0
    params = _restore_params(tmp_path, 4)
    assert all(p.dtype == np.float32 for p in jax.tree_util.tree_leaves(params))  # bf16 compute, f32 weights


def test_fresh_run_moves_metrics_of_a_run_without_checkpoints_aside(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 50, "train/loss": 1.0}\n')
    train_and_evaluate(
        tiny_config(total_steps=3, log_every=1, eval_every=3, checkpoint_every=3, **TINY_MIXER), tmp_path
    )
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    (orphan,) = tmp_path.glob("metrics.jsonl.orphaned-*")
    assert json.loads(orphan.read_text())["step"] == 50  # kept, not deleted


# cvnets' sizes around the tiny config's 32 px: 32 and 64, global batches 16 and 8 (8 "GPUs" of 2 and 1).
MULTI_SCALE = dict(min_size=32, max_size=64, num_scales=2, check_scale=32, batch_multiple=8)


def multi_scale_config():
    # Two micro-batches a step (grad_accum_steps, CAS-ViT's --update_freq 2), each with its own draw.
    return tiny_config(
        total_steps=3,
        grad_accum_steps=2,
        log_every=1,
        eval_every=3,
        checkpoint_every=3,
        tensorboard=False,
        mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0),
        **{"data.multi_scale": MULTI_SCALE},
    )


@pytest.fixture(scope="module")
def multi_scale_run(tmp_path_factory):
    """(workdir, final metrics, the progress bar's postfixes) of a 3-step multi-scale run of two micro-batches a
    step, with Mixup / CutMix, under a clock that advances 1 s per reading (img_s: the images since the last log)."""
    shown = []

    class Bar:
        def __init__(self, *args, **kwargs):
            pass

        def update(self, n):
            pass

        def set_postfix(self, **values):
            shown.append(values)

        def close(self):
            pass

    workdir = tmp_path_factory.mktemp("multi_scale_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "tqdm", Bar)
        patch.setattr(trainer, "time", types.SimpleNamespace(perf_counter=itertools.count().__next__))
        final = trainer.train_and_evaluate(multi_scale_config(), workdir)
    return workdir, final, shown


def test_multi_scale_run_trains_steps_of_two_shapes_and_reports_their_image_counts(multi_scale_run):
    """Micro-batches of 16 images at 32 px and 8 at 64 px (with Mixup / CutMix) train, two a step; img_s counts
    each step's images."""
    workdir, final, shown = multi_scale_run
    config = multi_scale_config()
    iterator = create_train_iterator(config.data, global_batch_size=16, seed=config.seed, shard_index=0, shard_count=1)
    shapes = [next(iterator)["image"].shape for _ in range(6)]
    assert {(shape[0], shape[1]) for shape in shapes} == {(16, 32), (8, 64)}
    assert [int(values["img_s"]) for values in shown] == [a[0] + b[0] for a, b in zip(shapes[::2], shapes[1::2])]
    assert [r["step"] for r in read_metrics(workdir)] == [1, 2, 3]
    assert all(np.isfinite(r["train/loss"]) for r in read_metrics(workdir))
    assert 0.0 <= final["eval/accuracy"] <= 1.0  # eval at the config's 32 px


def test_interrupted_and_resumed_multi_scale_run_equals_an_uninterrupted_one(multi_scale_run, tmp_path):
    straight, _, _ = multi_scale_run
    trainer.train_and_evaluate(multi_scale_config(), tmp_path, stop_at_step=2)
    trainer.train_and_evaluate(multi_scale_config(), tmp_path)
    assert read_metrics(tmp_path) == read_metrics(straight)
    params_a, params_b = _restore_params(straight, 3), _restore_params(tmp_path, 3)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params_a), jax.tree_util.tree_leaves(params_b)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
