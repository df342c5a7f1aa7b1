"""Model EMA of BatchNorm statistics (config.model_ema.buffers) and cvnets' update (first_update_copies=False)."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from mixtok import data
from mixtok.parallel import batch_sharding
from mixtok.train import (
    EmaBuffersTrainState,
    EmaTrainState,
    ModelEma,
    abstract_train_state,
    create_train_state,
    evaluate,
    make_eval_step,
    make_train_step,
    model_ema_from_config,
    put_batch,
    seed_rngs,
)
from mixtok.train.ema import running_stats, with_running_stats
from tests.train.test_ema import _pieces, _torch_lerp
from tests.train.test_trainer import tiny_config

# tools/make_timm_ema_fixtures.py: a BatchNorm1d trained by SGD, and timm's EMAs of it after each step.
TIMM_FIXTURE = Path(__file__).parents[1] / "fixtures" / "timm_ema" / "batchnorm.json"
TORCH_TO_FLAX = {"weight": ("params", "scale"), "bias": ("params", "bias"), "running_mean": ("stats", "mean")}
TORCH_TO_FLAX["running_var"] = ("stats", "var")

# A one-block WaveMix: BatchNorm in its stem and after its Waveblock's transposed convolution (cheap to compile).
BN_MODEL = {
    "model.name": "wavemix_192_16",
    "model.kwargs": dict(depths=(1,), dims=(8,), mlp_ratios=2, levels=1, patch_size=4, image_size=32),
}


def _split(torch_state: dict) -> tuple[dict, dict]:
    """A BatchNorm1d's torch state dict -> (flax params, flax batch_stats), float32."""
    out = {"params": {}, "stats": {}}
    for name, value in torch_state.items():
        collection, flax_name = TORCH_TO_FLAX[name]
        out[collection][flax_name] = np.asarray(value, np.float32)
    return out["params"], out["stats"]


@pytest.mark.parametrize(
    "timm_class, options",
    [
        ("ModelEmaV3", dict(buffers=True)),  # exclude_buffers=False, its default
        ("ModelEma", dict(buffers=True, first_update_copies=False)),  # cvnets' EMA is this formula
    ],
)
def test_buffers_follow_timms_ema_of_a_batchnorm(timm_class, options):
    fixture = json.loads(TIMM_FIXTURE.read_text())
    ema = ModelEma(decay=fixture["decay"], **options)
    params, stats = _split(fixture["model"][0])
    ema_params, ema_stats = ema.init(params), ema.init(stats)
    for step in range(1, len(fixture["model"])):
        params, stats = _split(fixture["model"][step])
        ema_params, ema_stats = ema.update(ema_params, params, step), ema.update(ema_stats, stats, step)
        want_params, want_stats = _split(fixture[timm_class][step])
        for got, want in ((ema_params, want_params), (ema_stats, want_stats)):
            for name in want:
                err = f"{timm_class} step {step} {name}"
                np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=1e-6, atol=1e-7, err_msg=err)
    # The averages are neither the model's last state nor each other: the two formulas really differ.
    assert not np.allclose(np.asarray(ema_stats["mean"]), stats["mean"])
    other = "ModelEma" if timm_class == "ModelEmaV3" else "ModelEmaV3"
    assert not np.allclose(_split(fixture[other][-1])[1]["mean"], _split(fixture[timm_class][-1])[1]["mean"])


def test_running_stats_finds_every_batch_stats_collection_and_puts_averages_back_in_their_dtypes():
    variables = {
        "batch_stats": {"bn": {"mean": np.zeros(2, np.float32)}},
        "frozen": {"w": np.ones(3, np.float32)},
        "discriminator": {"batch_stats": {"bn": {"var": np.ones(2, np.float16)}}, "other": {"x": np.zeros(1)}},
    }
    stats = running_stats(variables)
    assert stats == {
        "batch_stats": variables["batch_stats"],
        "discriminator": {"batch_stats": variables["discriminator"]["batch_stats"]},
    }
    assert running_stats({"frozen": variables["frozen"]}) == {}
    averaged = jax.tree_util.tree_map(lambda x: np.full(x.shape, 7.0, np.float32), stats)
    merged = with_running_stats(variables, averaged)
    assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(variables)
    assert (
        merged["frozen"] is variables["frozen"]
        and merged["discriminator"]["other"] is variables["discriminator"]["other"]
    )
    np.testing.assert_array_equal(merged["batch_stats"]["bn"]["mean"], [7.0, 7.0])
    assert merged["discriminator"]["batch_stats"]["bn"]["var"].dtype == np.float16


@pytest.mark.parametrize("first_update_copies", [True, False])
def test_ema_of_batch_stats_after_each_step_equals_a_numpy_fold_and_the_ema_eval_uses_it(first_update_copies):
    decay = 0.8
    config = tiny_config(**BN_MODEL, model_ema=dict(decay=decay, buffers=True, first_update_copies=first_update_copies))
    ema = model_ema_from_config(config)
    info, task, tx, schedule, mesh, rules = _pieces(config)
    shard = batch_sharding(mesh, rules)
    layout = abstract_train_state(task, tx, info.image_size, mesh, rules, ema)
    assert isinstance(layout, EmaBuffersTrainState)
    raw_specs = layout.other_variables["batch_stats"]
    assert jax.tree_util.tree_structure(layout.ema_batch_stats) == jax.tree_util.tree_structure(
        {"batch_stats": raw_specs}
    )
    for spec, raw in zip(jax.tree_util.tree_leaves(layout.ema_batch_stats), jax.tree_util.tree_leaves(raw_specs)):
        assert spec.sharding == raw.sharding and spec.dtype == np.float32 and spec.shape == raw.shape
    init_rng, step_rng = seed_rngs(config.seed)
    state = create_train_state(task, tx, init_rng, info.image_size, layout, ema)
    train_step = make_train_step(task, tx, schedule, layout, shard, rules, ema)
    batches = data.create_train_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)

    stats0 = jax.device_get(state.other_variables["batch_stats"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(state.ema_batch_stats["batch_stats"]), stats0)
    folded = cvnets = stats0  # torch's lerp as timm applies it; cvnets' `ema * (1 - m) + m * model` in float64
    for step in range(1, 4):
        state, _ = train_step(state, put_batch(next(batches), shard), step_rng)
        stats = jax.device_get(state.other_variables["batch_stats"])
        w = 1.0 if first_update_copies and step == 1 else 1.0 - decay
        folded = jax.tree_util.tree_map(lambda e, p, w=w: _torch_lerp(e, p, w), folded, stats)
        cvnets = jax.tree_util.tree_map(lambda e, p: e * decay + (1 - decay) * np.float64(p), cvnets, stats)
        got = jax.device_get(state.ema_batch_stats["batch_stats"])
        for (path, g), want, raw in zip(
            jax.tree_util.tree_leaves_with_path(got),
            jax.tree_util.tree_leaves(folded),
            jax.tree_util.tree_leaves(stats),
        ):
            np.testing.assert_allclose(
                g, want, rtol=1e-6, atol=1e-7, err_msg=f"step {step} {jax.tree_util.keystr(path)}"
            )
            if step == 1:  # the first update copies (ModelEmaV3), or averages from the step-0 statistics (cvnets)
                assert np.array_equal(g, raw) == first_update_copies, jax.tree_util.keystr(path)
        if not first_update_copies:
            for g, want in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(cvnets)):
                np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)

    # eval_ema/ is the model applied by hand with the averaged parameters and the averaged statistics.
    eval_step = make_eval_step(task, layout, shard, rules)
    eval_batches = lambda: data.create_eval_iterator(config.data, global_batch_size=config.batch_size)  # noqa: E731
    metrics, _ = evaluate(task, eval_step, None, state, eval_batches(), shard, use_ema=True)
    variables = {"params": state.ema_params, "batch_stats": state.ema_batch_stats["batch_stats"]}
    apply = jax.jit(lambda v, x: task.model.apply(v, x, train=False))
    losses, correct = [], []
    for batch in eval_batches():
        logits = np.asarray(apply(variables, batch["image"]), np.float64)
        targets = (
            np.eye(info.num_classes)[batch["label"]] * (1 - config.label_smoothing)
            + config.label_smoothing / info.num_classes
        )
        log_p = logits - logits.max(-1, keepdims=True)
        log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
        keep = batch["mask"] > 0
        losses += list(-(targets * log_p).sum(-1)[keep])
        correct += list((logits.argmax(-1) == batch["label"])[keep])
    assert len(losses) == config.data.num_eval_examples
    assert metrics["eval_ema/accuracy"] == pytest.approx(np.mean(correct), abs=1e-9)
    assert metrics["eval_ema/loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    # ... and not the averaged parameters with the raw statistics (what buffers=False evaluates).
    raw_stats = EmaTrainState(state.step, state.params, state.opt_state, state.other_variables, state.ema_params)
    raw_metrics, _ = evaluate(task, eval_step, None, raw_stats, eval_batches(), shard, use_ema=True)
    assert raw_metrics["eval_ema/loss"] != pytest.approx(metrics["eval_ema/loss"], rel=1e-4)
    merged = with_running_stats(state.other_variables, state.ema_batch_stats)
    assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(state.other_variables)
