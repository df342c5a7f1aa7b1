"""Model EMA (config.model_ema, timm's ModelEmaV3): its decay, its update, exact resume, and off meaning off."""

import dataclasses

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from ml_collections import ConfigDict

from mixtok import data
from mixtok.parallel import batch_sharding, create_mesh, rules_from_config
from mixtok.train import (
    EmaTrainState,
    ModelEma,
    TrainState,
    abstract_train_state,
    create_train_state,
    evaluate,
    get_task,
    make_eval_step,
    make_train_step,
    model_ema_from_config,
    put_batch,
    seed_rngs,
    train_and_evaluate,
    validate_config,
)
from mixtok.train.checkpointing import ResumeMismatchError, load_run
from mixtok.train.metric_writer import read_metrics
from tests.train.test_trainer import tiny_mixer_config as tiny_config

# timm 1.0.31's ModelEmaV3(model, **SETTINGS[name]).get_decay(step) at STEPS, printed by
# tools/make_timm_ema_fixtures.py (huggingface/pytorch-image-models: timm/utils/model_ema.py).
STEPS = (0, 1, 2, 3, 4, 5, 10, 100, 1000, 31623, 1000000)
TIMM_SETTINGS = {
    "plain": dict(decay=0.9998),
    "warmup": dict(decay=0.9998, use_warmup=True),
    "warmup_gamma_power_min": dict(decay=0.999, use_warmup=True, warmup_gamma=10.0, warmup_power=0.75, min_decay=0.3),
    "after_step": dict(decay=0.99, use_warmup=True, update_after_step=3),
}
TIMM_DECAYS = {
    "plain": [0.0, 0.0, 0.9998, 0.9998, 0.9998, 0.9998, 0.9998, 0.9998, 0.9998, 0.9998, 0.9998],
    "warmup": [
        0.0,
        0.0,
        0.3700394750525634,
        0.5192501432308638,
        0.6031497370079502,
        0.6580048106646605,
        0.7845565309968117,
        0.9535841116638722,
        0.99,
        0.9990000047096224,
        0.9998,
    ],  # fmt: skip
    "warmup_gamma_power_min": [
        0.0,
        0.0,
        0.3,
        0.3,
        0.3,
        0.3,
        0.3820763758189376,
        0.8333021008570076,
        0.9685890099439638,
        0.997629144904959,
        0.999,
    ],  # fmt: skip
    "after_step": [
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.3700394750525634,
        0.7267241167468015,
        0.9526319495648758,
        0.989979949866299,
        0.99,
        0.99,
    ],  # fmt: skip
}
TIMM_NAMES = {"use_warmup": "warmup"}  # timm's argument -> config.model_ema's field


def _model_ema(**timm_kwargs) -> ModelEma:
    return ModelEma(**{TIMM_NAMES.get(k, k): v for k, v in timm_kwargs.items()})


def reference_decay(step, decay, min_decay=0.0, update_after_step=0, warmup=False, gamma=1.0, power=2 / 3):
    """timm's ModelEmaV3.get_decay, written out again in float64."""
    t = max(0, step - update_after_step - 1)
    if t <= 0:
        return 0.0
    if not warmup:
        return decay
    return max(min(1 - (1 + t / gamma) ** -power, decay), min_decay)


@pytest.mark.parametrize("name", TIMM_SETTINGS)
def test_decay_equals_timms_get_decay_at_each_step(name):
    ema = _model_ema(**TIMM_SETTINGS[name])
    weights = np.asarray([float(ema.weight(step)) for step in STEPS])  # 1 - decay, as the update uses it
    np.testing.assert_allclose(weights, 1 - np.asarray(TIMM_DECAYS[name]), rtol=2e-6, atol=0)
    decays = np.asarray([float(ema.decay_at(step)) for step in STEPS])
    np.testing.assert_allclose(decays, TIMM_DECAYS[name], rtol=1e-6, atol=0)


def test_reference_formula_reproduces_the_timm_fixture():
    kwargs = dict(decay=0.999, min_decay=0.3, warmup=True, gamma=10.0, power=0.75)
    ours = [reference_decay(s, **kwargs) for s in STEPS]
    np.testing.assert_allclose(ours, TIMM_DECAYS["warmup_gamma_power_min"], rtol=1e-15)


def _torch_lerp(e, p, w):
    """aten's lerp in float32: e + w (p - e) below w = 0.5, else p - (p - e)(1 - w)."""
    e, p, w = np.float32(e), np.float32(p), np.float32(w)
    return np.where(w < 0.5, e + w * (p - e), p - (p - e) * (np.float32(1) - w)).astype(np.float32)


def _pieces(config):
    info = data.dataset_info(config.data)
    task = get_task(config.task).from_config(config, info)
    tx, schedule = task.create_optimizer(config)
    mesh, rules = create_mesh(config.get("mesh")), rules_from_config(config.get("sharding_rules"))
    return info, task, tx, schedule, mesh, rules


def test_ema_after_each_step_equals_a_numpy_fold_of_the_recorded_parameters():
    options = dict(decay=0.9, warmup=True, warmup_gamma=2.0, warmup_power=0.8, min_decay=0.2, update_after_step=1)
    config = tiny_config(model_ema=options)
    ema = model_ema_from_config(config)
    info, task, tx, schedule, mesh, rules = _pieces(config)
    shard = batch_sharding(mesh, rules)
    layout = abstract_train_state(task, tx, info.image_size, mesh, rules, ema)
    assert type(layout) is EmaTrainState  # buffers=False: no averaged statistics in the state
    for spec, param_spec in zip(jax.tree_util.tree_leaves(layout.ema_params), jax.tree_util.tree_leaves(layout.params)):
        assert spec.sharding == param_spec.sharding and spec.dtype == np.float32
    init_rng, step_rng = seed_rngs(config.seed)
    state = create_train_state(task, tx, init_rng, info.image_size, layout, ema)
    train_step = make_train_step(task, tx, schedule, layout, shard, rules, ema)
    batches = data.create_train_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)

    folded = jax.tree_util.tree_map(np.asarray, jax.device_get(state.params))
    np.testing.assert_array_equal(jax.tree_util.tree_leaves(state.ema_params)[0], jax.tree_util.tree_leaves(folded)[0])
    for step in range(1, 6):
        state, _ = train_step(state, put_batch(next(batches), shard), step_rng)
        params = jax.tree_util.tree_map(np.asarray, jax.device_get(state.params))
        w = 1 - reference_decay(
            step, 0.9, min_decay=0.2, update_after_step=1, warmup=True, gamma=2.0, power=0.8
        )  # float64, as timm's Python float
        folded = jax.tree_util.tree_map(lambda e, p, w=w: _torch_lerp(e, p, w), folded, params)
        if step <= 2:  # decay 0 until update_after_step + 1: the average is the parameters, exactly
            jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(state.ema_params), params)
        leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state.ema_params))
        for (path, got), want in zip(leaves, jax.tree_util.tree_leaves(folded)):
            where = f"step {step} {jax.tree_util.keystr(path)}"
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=where)
    pairs = zip(jax.tree_util.tree_leaves(folded), jax.tree_util.tree_leaves(params))
    assert any(not np.array_equal(a, b) for a, b in pairs)  # after 5 steps the average is not the parameters

    # eval_ema/ is the eval pass run on the averaged parameters, the raw model's other collections beside them.
    eval_step = make_eval_step(task, layout, shard, rules)
    eval_batches = lambda: data.create_eval_iterator(config.data, global_batch_size=config.batch_size)  # noqa: E731
    ema_metrics, images = evaluate(task, eval_step, None, state, eval_batches(), shard, use_ema=True)
    as_params = TrainState(state.step, state.ema_params, state.opt_state, state.other_variables)
    raw_metrics, _ = evaluate(task, eval_step, None, as_params, eval_batches(), shard)
    assert ema_metrics == {k.replace("eval/", "eval_ema/"): v for k, v in raw_metrics.items()}
    assert sorted(ema_metrics) == ["eval_ema/accuracy", "eval_ema/loss"] and images == {}


def _restore_state(workdir, step):
    manager = ocp.CheckpointManager((workdir / "checkpoints").absolute(), item_names=("state",))
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    manager.close()
    return jax.tree_util.tree_map(np.asarray, state)


EMA_RUN = dict(total_steps=8, eval_every=4, tensorboard=False, model_ema=dict(decay=0.99, warmup=True))
# A one-block WaveMix (BatchNorm after its transposed convolution) averaging its statistics too, with cvnets' update
# (no first-update copy).
BUFFERS_RUN = dict(
    **{
        "model.name": "wavemix_192_16",
        "model.kwargs": dict(depths=(1,), dims=(8,), mlp_ratios=2, levels=1, patch_size=4, image_size=32),
    },
    total_steps=6,
    eval_every=3,
    checkpoint_every=3,
    tensorboard=False,
    model_ema=dict(decay=0.9, buffers=True, first_update_copies=False),
)
RESUME_CASES = {  # run, the step it is interrupted at (between two checkpoints), changes of model_ema refused
    "parameters": (EMA_RUN, 5, [None, dict(decay=0.999, warmup=True)]),
    "batch_stats": (BUFFERS_RUN, 4, [dict(decay=0.9, first_update_copies=False), dict(decay=0.9, buffers=True)]),
}


@pytest.mark.parametrize("case", RESUME_CASES)
def test_interrupted_and_resumed_run_with_ema_equals_an_uninterrupted_one(tmp_path, case):
    run, stop_at, refused = RESUME_CASES[case]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train_and_evaluate(tiny_config(**run), straight)
    train_and_evaluate(tiny_config(**run), interrupted, stop_at_step=stop_at)
    train_and_evaluate(tiny_config(**run), interrupted)

    records = read_metrics(straight)
    assert read_metrics(interrupted) == records
    every, last = run["eval_every"], run["total_steps"]
    assert [r["step"] for r in records if "eval_ema/accuracy" in r] == list(range(every, last + 1, every))
    assert all(("eval/accuracy" in r) == ("eval_ema/accuracy" in r) for r in records)
    a, b = _restore_state(straight, last), _restore_state(interrupted, last)
    fields = {"step", "params", "opt_state", "other_variables", "ema_params"}
    assert set(a) == (fields | {"ema_batch_stats"} if case == "batch_stats" else fields)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))
    assert not np.array_equal(jax.tree_util.tree_leaves(a["ema_params"])[0], jax.tree_util.tree_leaves(a["params"])[0])
    if case == "batch_stats":
        averaged, raw = a["ema_batch_stats"]["batch_stats"], a["other_variables"]["batch_stats"]
        assert jax.tree_util.tree_structure(averaged) == jax.tree_util.tree_structure(raw)
        assert not any(np.array_equal(x, y) for x, y in zip(*map(jax.tree_util.tree_leaves, (averaged, raw))))
        # load_run(ema=True) gives the EMA model: the averaged parameters and statistics, the raw ones' layout.
        loaded = load_run(straight, ema=True)
        for (path, x), y in zip(
            jax.tree_util.tree_leaves_with_path(loaded.variables),
            jax.tree_util.tree_leaves({"params": a["ema_params"], **a["ema_batch_stats"]}),
        ):
            np.testing.assert_array_equal(np.asarray(x), y, err_msg=jax.tree_util.keystr(path))
        # Training moves every BatchNorm running mean and variance (saved, and resumed exactly, above).
        earlier = jax.tree_util.tree_leaves(_restore_state(straight, every)["other_variables"]["batch_stats"])
        assert raw and all(not np.array_equal(x, y) for x, y in zip(earlier, jax.tree_util.tree_leaves(raw)))

    # Turning EMA off, or changing its schedule or what it averages, on resume is refused in one line naming
    # model_ema; its eval switch is not part of the run.
    for changed in refused:
        config = tiny_config(**{**run, "model_ema": changed, "total_steps": last + 1})
        with pytest.raises(ResumeMismatchError, match=r"model_ema") as raised:
            train_and_evaluate(config, interrupted)
        assert "\n" not in str(raised.value)
    if case == "parameters":
        config = tiny_config(**{**run, "total_steps": 9, "model_ema": dict(decay=0.99, warmup=True, eval=False)})
        assert "eval_ema/accuracy" not in train_and_evaluate(config, interrupted)


def test_turning_ema_on_when_resuming_a_run_without_it_is_refused_in_one_line(tmp_path):
    train_and_evaluate(tiny_config(total_steps=4, tensorboard=False), tmp_path, stop_at_step=1)
    with pytest.raises(ResumeMismatchError, match=r"model_ema: None -> \{'decay': 0.9998") as raised:
        train_and_evaluate(tiny_config(total_steps=4, tensorboard=False, model_ema={}), tmp_path)
    assert "\n" not in str(raised.value)


def test_without_model_ema_the_state_is_the_four_field_train_state():
    config = tiny_config()
    info, task, tx, _, mesh, rules = _pieces(config)
    assert model_ema_from_config(config) is None
    layout = abstract_train_state(task, tx, info.image_size, mesh, rules)
    assert type(layout) is TrainState  # the tree (and so the checkpoint's keys) of runs before EMA existed
    assert [field.name for field in dataclasses.fields(layout)] == ["step", "params", "opt_state", "other_variables"]


@pytest.mark.parametrize(
    "block, message",
    [
        (dict(decay=1.0), r"config.model_ema.decay must be a number in \[0, 1\); got 1.0"),
        (dict(decay="0.99"), r"config.model_ema.decay must be a number in \[0, 1\); got '0.99'"),
        (dict(min_decay=-0.1), r"config.model_ema.min_decay must be a number in \[0, 1\)"),
        (dict(decay=0.9, min_decay=0.95), r"config.model_ema.min_decay \(0.95\) must not exceed"),
        (dict(warmup_gamma=0.0), r"config.model_ema.warmup_gamma must be a positive number; got 0.0"),
        (dict(warmup_power=float("nan")), r"config.model_ema.warmup_power must be a positive number"),
        (dict(update_after_step=-1), r"config.model_ema.update_after_step must be an integer >= 0; got -1"),
        (dict(warmup="yes"), r"config.model_ema.warmup must be true or false; got 'yes'"),
        (dict(eval=1), r"config.model_ema.eval must be true or false; got 1"),
        (dict(buffers="yes"), r"config.model_ema.buffers must be true or false; got 'yes'"),
        (dict(first_update_copies=0), r"config.model_ema.first_update_copies must be true or false; got 0"),
        (
            dict(first_update_copies=False, warmup=True),
            r"first_update_copies=False \(decay from the first update, as cvnets' EMA\) needs warmup=False and "
            r"update_after_step=0; got warmup=True, update_after_step=0",
        ),
        (dict(first_update_copies=False, update_after_step=2), r"got warmup=False, update_after_step=2\.$"),
        (dict(decay_rate=0.9), r"config.model_ema.decay_rate is not a field; the fields are decay, min_decay"),
        (0.9998, r"config.model_ema must be a block of fields"),
    ],
)
def test_a_bad_model_ema_value_is_one_line_naming_it(block, message):
    config = tiny_config()
    config.model_ema = block if not isinstance(block, dict) else ConfigDict(block)
    with pytest.raises(ValueError, match=message) as raised:
        validate_config(config)
    assert "\n" not in str(raised.value)
