"""timm's cosine schedule and Lamb, checked against timm itself (tests/fixtures/timm_optim).

tools/make_timm_optim_fixtures.py (torch + timm) wrote the fixtures: the learning rate of every update
of timm's `create_scheduler_v2` cosine runs driven as timm's train.py drives them, and the parameters
after each of six steps of `timm.optim.Lamb` built by `create_optimizer_v2(model, 'lamb')` on a tiny
model, one step's gradients above the clipping norm. Its docstring says what each file holds.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from ml_collections import ConfigDict

from mixtok.train.optimizer import create_optimizer, gradient_clipping, weight_decay_mask

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "timm_optim")
with open(os.path.join(FIXTURES, "schedules.json")) as f:
    SCHEDULES = json.load(f)
with open(os.path.join(FIXTURES, "manifest.json")) as f:
    MANIFEST = json.load(f)


def schedule_config(timm_args: dict, lr: float, **extra) -> ConfigDict:
    """The optimizer block that asks for what timm's create_scheduler_v2 was given."""
    return ConfigDict(
        dict(
            lr=lr,
            schedule="timm_cosine",
            schedule_on="epoch" if timm_args["step_on_epochs"] else "step",
            steps_per_epoch=timm_args["updates_per_epoch"],
            warmup_epochs=timm_args["warmup_epochs"],
            warmup_lr_init=timm_args["warmup_lr"],
            min_lr=timm_args["min_lr"],
            cooldown_epochs=timm_args["cooldown_epochs"],
            warmup_prefix=timm_args.get("warmup_prefix", False),
            **extra,
        )
    )


@pytest.mark.parametrize("case", sorted(SCHEDULES))
def test_timm_cosine_gives_timms_rate_at_every_update(case):
    fixture = SCHEDULES[case]
    rates, args = np.asarray(fixture["rates"]), fixture["timm_args"]
    # The whole timm run (its num_epochs counts the cool-down and a warm-up prefix) is total_steps.
    total_steps = fixture["num_epochs"] * args["updates_per_epoch"]
    assert len(rates) == total_steps
    _, schedule = create_optimizer(schedule_config(args, fixture["lr"]), total_steps)
    steps = jnp.arange(total_steps)
    # float32 against timm's float64: a few float32 roundings of the peak rate.
    tolerance = dict(rtol=1e-5, atol=1e-7 * fixture["lr"])
    np.testing.assert_allclose(jax.jit(schedule)(steps), rates, **tolerance)
    np.testing.assert_allclose([float(schedule(s)) for s in (0, total_steps - 1)], rates[[0, -1]], **tolerance)
    # Per epoch, the rate holds for a whole epoch; per update it moves at every update of the decay.
    per_epoch = rates.reshape(-1, args["updates_per_epoch"])
    assert np.all(per_epoch == per_epoch[:, :1]) == args["step_on_epochs"]
    # The cool-down (and any step after timm's run) stays at min_lr.
    cooldown = args["cooldown_epochs"] * args["updates_per_epoch"]
    np.testing.assert_allclose(rates[len(rates) - cooldown :], args["min_lr"], rtol=1e-12)
    np.testing.assert_allclose(schedule(total_steps + 7), args["min_lr"], rtol=1e-6)


def test_explicit_epochs_fix_the_cosine_whatever_total_steps_is():
    fixture = SCHEDULES["per_update"]
    args = fixture["timm_args"]
    config = schedule_config(args, fixture["lr"], epochs=args["num_epochs"])
    for total_steps in (5, len(fixture["rates"]) + 100):  # a run cut short, a run that continues at min_lr
        _, schedule = create_optimizer(config, total_steps)
        rates = schedule(jnp.arange(len(fixture["rates"])))
        np.testing.assert_allclose(rates, fixture["rates"], rtol=1e-5, atol=1e-7 * fixture["lr"])


def lamb_run(case: str):
    """(optimizer block, the timm arrays, the manifest entry) of one Lamb fixture."""
    entry = MANIFEST["lamb"][case]
    opt, sched = entry["optimizer_args"], entry["scheduler_args"]
    config = schedule_config(sched | {"warmup_prefix": False, "cooldown_epochs": 0}, opt["lr"])
    config.update(name="timm_lamb", weight_decay=opt["weight_decay"])
    for key in ("max_grad_norm", "trust_clip", "always_adapt"):
        if key in opt:
            config[key] = opt[key]
    arrays = dict(np.load(os.path.join(FIXTURES, f"lamb_{case}.npz")))
    return config, arrays, entry


def run_steps(tx, arrays, steps):
    """The parameters after each step, the fixture's gradients fed to `tx` (jitted, as the trainer does)."""
    names = sorted(k.split("/", 1)[1] for k in arrays if k.startswith("init/"))
    params = {n: jnp.asarray(arrays[f"init/{n}"]) for n in names}
    state, update, after = tx.init(params), jax.jit(tx.update), []
    for k in range(steps):
        grads = {n: jnp.asarray(arrays[f"grad/{k}/{n}"]) for n in names}
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        after.append(params)
    return after


@pytest.mark.parametrize("case", sorted(MANIFEST["lamb"]))
def test_timm_lamb_gives_timms_parameters_after_every_step(case):
    config, arrays, entry = lamb_run(case)
    steps = len(entry["steps"])
    tx, schedule = create_optimizer(config, total_steps=steps)
    # The rate each update used is timm's (per update, 1 warm-up epoch of 2 updates from warmup_lr_init).
    np.testing.assert_allclose([float(schedule(k)) for k in range(steps)], [s["lr"] for s in entry["steps"]], rtol=1e-6)
    before = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("init/")}
    for k, params in enumerate(run_steps(tx, arrays, steps)):
        for name, value in params.items():
            expected = arrays[f"param/{k}/{name}"]
            np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-6, err_msg=f"step {k} {name}")
            # Each step's own move (1e-4 to 1e-2), so that a wrong step cannot hide among parameters of size 1;
            # 3e-7 is two float32 roundings of a parameter near 1.
            np.testing.assert_allclose(
                value - before[name], expected - before[name], rtol=1e-4, atol=3e-7, err_msg=f"step {k} {name}"
            )
        before = {name: arrays[f"param/{k}/{name}"] for name in params}


def test_the_fixture_tells_timms_lamb_from_optax_lamb_and_from_lamb_without_clipping():
    config, arrays, entry = lamb_run("default")
    steps = len(entry["steps"])
    assert [s["grad_norm"] > 1.0 for s in entry["steps"]].count(True) == 1  # one step clipped by timm's Lamb

    def last(**overrides):
        tx, _ = create_optimizer(ConfigDict({**config.to_dict(), **overrides}), total_steps=steps)
        return run_steps(tx, arrays, steps)[-1]

    expected = {k.split("/", 2)[2]: v for k, v in arrays.items() if k.startswith(f"param/{steps - 1}/")}
    # optax's LAMB (clipped to 1 before it, as configs had it) adapts the biases and norms too: off by far more.
    optax_lamb = last(name="lamb", grad_clip=1.0)
    assert max(np.max(np.abs(optax_lamb[n] - expected[n])) for n in ("fc.bias", "norm.weight")) > 1e-3
    unclipped = last(max_grad_norm=None)
    assert max(np.max(np.abs(unclipped[n] - expected[n])) for n in expected) > 1e-3


def test_the_no_decay_mask_is_timms_weight_decay_param_groups():
    _, arrays, entry = lamb_run("default")
    groups = {g["weight_decay"]: set(g["params"]) for g in entry["param_groups"]}
    assert set(groups) == {0.0, entry["optimizer_args"]["weight_decay"]}
    params = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("init/")}
    assert weight_decay_mask(params) == {name: name not in groups[0.0] for name in params}


def test_timm_lamb_state_keeps_the_parameters_logical_axes():
    # The trainer initialises the optimizer on boxed parameters and shards its state by their names.
    tx, _ = create_optimizer(ConfigDict(dict(name="timm_lamb", lr=1e-3)), total_steps=10)
    params = {"kernel": nn.LogicallyPartitioned(jnp.ones((2, 3)), ("embed", "mlp")), "bias": jnp.ones((3,))}
    state = jax.eval_shape(tx.init, params)
    boxes = [x for x in jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))]
    assert [b.names for b in boxes if isinstance(b, nn.LogicallyPartitioned)] == [("embed", "mlp")] * 2


BAD_CONFIGS = [
    (dict(schedule="timm_cosin"), "Unknown optimizer.schedule 'timm_cosin'. Did you mean 'timm_cosine'"),
    (dict(schedule="timm_cosine", schedule_on="update"), "Unknown optimizer.schedule_on 'update'."),
    (dict(schedule="timm_cosine", schedule_on="step"), "optimizer.steps_per_epoch is required by schedule"),
    (dict(schedule="timm_cosine", cooldown_epochs=2), "optimizer.steps_per_epoch is required by schedule"),
    (dict(schedule="timm_cosine", steps_per_epoch=2.5), "optimizer.steps_per_epoch=2.5 must be a whole number >= 1"),
    (dict(schedule="timm_cosine", steps_per_epoch=4, warmup_epochs=-1), "optimizer.warmup_epochs=-1 must be a"),
    (dict(schedule="timm_cosine", steps_per_epoch=4, cooldown_epochs=-2), "optimizer.cooldown_epochs=-2 must be"),
    (dict(schedule="timm_cosine", steps_per_epoch=4, warmup_lr_init=-1e-6), "optimizer.warmup_lr_init=-1e-06 must"),
    (dict(schedule="timm_cosine", steps_per_epoch=4, min_lr=-1.0), "optimizer.min_lr=-1.0 must be a number >= 0"),
    (dict(schedule="timm_cosine", steps_per_epoch=4, warmup_epochs=10), "optimizer.warmup_epochs=10 must be smaller"),
    (dict(schedule="timm_cosine", steps_per_epoch=4, warmup_prefix=1), "optimizer.warmup_prefix=1 must be True or"),
    (dict(schedule="timm_cosine", steps_per_epoch=8, cooldown_epochs=5), "total_steps=40 is 5 epochs of optimizer"),
    (dict(schedule="timm_cosine", steps_per_epoch=4, warmup_steps=8), "optimizer.warmup_steps=8 is for schedule"),
    (dict(cooldown_epochs=10), "optimizer.cooldown_epochs=10 is for schedule 'timm_cosine'"),
    (dict(warmup_epochs=5), "optimizer.warmup_epochs=5 is for schedule 'timm_cosine'"),
    (dict(name="adamw", max_grad_norm=1.0), "optimizer.max_grad_norm=1.0 is for optimizer 'timm_lamb', not 'adamw'"),
    (dict(name="lamb", trust_clip=True), "optimizer.trust_clip=True is for optimizer 'timm_lamb'"),
    (dict(name="timm_lamb", max_grad_norm=0.0), "optimizer.max_grad_norm=0.0 must be a positive number or None"),
    (dict(name="timm_lamb", always_adapt="yes"), "optimizer.always_adapt='yes' must be True or False"),
    (dict(name="timm_lam"), "Unknown optimizer 'timm_lam'. Did you mean 'timm_lamb'"),
    (dict(grad_clip=0.02, clip_mode="acg"), "Unknown optimizer.clip_mode 'acg'. Did you mean 'agc'"),
    (dict(clip_mode="agc"), "optimizer.clip_mode='agc' needs optimizer.grad_clip > 0 (its clip factor"),
    (dict(clip_mode="agc", grad_clip=0.0), "optimizer.clip_mode='agc' needs optimizer.grad_clip > 0"),
    (dict(clip_mode="value", grad_clip=None), "optimizer.clip_mode='value' needs optimizer.grad_clip > 0 (its bound"),
    (dict(grad_clip=-1.0), "optimizer.grad_clip=-1.0 must be a number >= 0"),
    (dict(schedule="timm_cosine", steps_per_epoch=4, epoch_lag=2), "optimizer.epoch_lag=2 must be 0 (timm's train"),
    (
        dict(schedule="timm_cosine", steps_per_epoch=4, schedule_on="step", epoch_lag=1),
        "optimizer.epoch_lag=1 is for schedule_on='epoch'",
    ),
    (dict(epoch_lag=1), "optimizer.epoch_lag=1 is for schedule 'timm_cosine', not 'warmup_cosine'"),
    (dict(weight_decay_on="bias"), "Unknown optimizer.weight_decay_on 'bias'. Valid optimizer.weight_decay_ons: all"),
    (dict(warmup_lr_init=2e-4), "optimizer.warmup_lr_init=0.0002 is the start of a warm-up; set optimizer.warmup"),
    (dict(schedule="cvnets_cosine"), "optimizer.steps_per_epoch is required by schedule 'cvnets_cosine'"),
    (dict(schedule="cvnets_cosine", steps_per_epoch=50), "total_steps=40 is less than one epoch of optimizer"),
    (dict(schedule="cvnets_cosine", steps_per_epoch=4, warmup_epochs=1), "optimizer.warmup_epochs=1 is for schedule"),
]


@pytest.mark.parametrize("overrides, message", BAD_CONFIGS, ids=[m.split(" ")[0] for _, m in BAD_CONFIGS])
def test_bad_values_are_explained_in_one_line(overrides, message):
    with pytest.raises(ValueError) as error:
        create_optimizer(ConfigDict(dict(lr=1e-3, **overrides)), total_steps=40)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_trainer_runs_and_resumes_with_timm_lamb_and_the_timm_schedule(tmp_path):
    from mixtok.train import train_and_evaluate
    from mixtok.train.metric_writer import read_metrics
    from tests.train.test_trainer import TINY_MIXER, tiny_config

    optimizer = dict(
        name="timm_lamb",
        lr=2e-3,
        weight_decay=0.05,
        schedule="timm_cosine",
        schedule_on="step",
        steps_per_epoch=1,
        warmup_epochs=1,
        warmup_lr_init=1e-4,
        cooldown_epochs=1,
        epochs=3,
    )
    run = dict(log_every=1, eval_every=2, checkpoint_every=2, tensorboard=False, async_checkpointing=False)
    train_and_evaluate(tiny_config(total_steps=2, optimizer=optimizer, **run, **TINY_MIXER), tmp_path)
    # Resuming restores timm_lamb's state (count and moments) from the step-2 checkpoint.
    config = tiny_config(total_steps=4, optimizer=optimizer, **run, **TINY_MIXER)
    train_and_evaluate(config, tmp_path)
    records = [r for r in read_metrics(tmp_path) if "train/learning_rate" in r]
    _, schedule = create_optimizer(config.optimizer, config.total_steps)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [r["train/learning_rate"] for r in records] == [float(schedule(s)) for s in range(4)]
    # Warm-up from 1e-4, then the cosine over 3 updates that spans the warm-up (no warmup_prefix), so at
    # (1 + cos(pi / 3)) / 2 and (1 + cos(2 pi / 3)) / 2 of lr, then min_lr (0) in the cool-down.
    np.testing.assert_allclose([r["train/learning_rate"] for r in records], [1e-4, 1.5e-3, 5e-4, 0.0], atol=1e-9)
    assert all(np.isfinite(r["train/loss"]) for r in records)


with open(os.path.join(FIXTURES, "deit_schedules.json")) as f:
    DEIT_SCHEDULES = json.load(f)


@pytest.mark.parametrize("case", sorted(DEIT_SCHEDULES))
def test_epoch_lag_gives_the_rates_of_timms_scheduler_driven_as_deits_main_py_drives_it(case):
    fixture = DEIT_SCHEDULES[case]
    rates, args = np.asarray(fixture["rates"]), fixture["timm_args"]
    total_steps = fixture["num_epochs"] * args["updates_per_epoch"]
    assert len(rates) == total_steps
    tolerance = dict(rtol=1e-5, atol=1e-7 * fixture["lr"])
    _, schedule = create_optimizer(schedule_config(args, fixture["lr"], epoch_lag=1), total_steps)
    np.testing.assert_allclose(jax.jit(schedule)(jnp.arange(total_steps)), rates, **tolerance)
    # The same rates as timm's train.py, one epoch later (the first epoch twice).
    _, timm_train = create_optimizer(schedule_config(args, fixture["lr"]), total_steps)
    per_epoch = args["updates_per_epoch"]
    train_rates = np.asarray(timm_train(jnp.arange(total_steps)))
    np.testing.assert_allclose(rates[per_epoch:], train_rates[:-per_epoch], **tolerance)
    np.testing.assert_allclose(rates[:per_epoch], train_rates[:per_epoch], **tolerance)
    assert not np.allclose(rates, train_rates, **tolerance)


# Flax's name and layout for each PyTorch tensor of the clipping fixture (mixtok.interop.official's layouts).
FLAX_NAMES = {
    "fc.weight": ("fc", "kernel"),
    "fc.bias": ("fc", "bias"),
    "conv.weight": ("conv", "kernel"),
    "dwconv.weight": ("dwconv", "kernel"),
    "dwconv1x1.weight": ("dwconv1x1", "kernel"),
    "norm.weight": ("norm", "scale"),
    "norm.bias": ("norm", "bias"),
    "zero.weight": ("zero", "kernel"),
    "attention_biases": ("mixer", "attention_biases"),
}
TO_FLAX = {"linear": (1, 0), "conv": (2, 3, 1, 0), "same": None}


def clip_fixture(mode: str):
    """(params, grads, timm's clipped grads) of one clipping fixture, as Flax trees in mixtok's layouts."""
    arrays, entry = np.load(os.path.join(FIXTURES, f"clip_{mode}.npz")), MANIFEST["clip"][mode]
    trees = {}
    for kind in ("param", "grad", "clipped"):
        tree = {}
        for name, (module, leaf) in FLAX_NAMES.items():
            axes = TO_FLAX[entry["layouts"][name]]
            array = arrays[f"{kind}/{name}"]
            tree.setdefault(module, {})[leaf] = array.transpose(axes) if axes else array
        trees[kind] = tree
    return trees["param"], trees["grad"], trees["clipped"], entry


@pytest.mark.parametrize("mode", sorted(MANIFEST["clip"]))
def test_gradient_clipping_gives_timms_clipped_gradients_on_flax_layouts(mode):
    params, grads, expected, entry = clip_fixture(mode)
    assert set(entry["layouts"]) == set(FLAX_NAMES)
    # The fixture clips some units and leaves others alone, for AGC in every kind of tensor but 1-D weights.
    changed = entry["units_changed"]
    assert 0 < sum(changed.values()) and (mode == "norm" or sum(changed.values()) < sum(entry["units"].values()))
    if mode == "agc":
        kernels = ("fc.weight", "conv.weight", "dwconv.weight", "dwconv1x1.weight", "attention_biases")
        assert all(0 < changed[n] < entry["units"][n] for n in kernels) and changed["norm.bias"] == 1
    clip = gradient_clipping(ConfigDict(dict(grad_clip=entry["value"], clip_mode=mode)))
    clipped, _ = jax.jit(clip.update)(grads, clip.init(params), params)
    for module, leaves in expected.items():
        for leaf, value in leaves.items():
            np.testing.assert_allclose(clipped[module][leaf], value, rtol=2e-6, atol=1e-9, err_msg=f"{module}/{leaf}")


def test_optax_adaptive_grad_clip_takes_other_units_than_timm_on_lsnets_layouts():
    # Why mixtok has its own AGC: optax infers units from the rank alone (module docstring).
    params, grads, expected, entry = clip_fixture("agc")
    clipped, _ = optax.adaptive_grad_clip(entry["value"]).update(grads, optax.EmptyState(), params)
    for module, leaf in (("dwconv1x1", "kernel"), ("mixer", "attention_biases")):
        assert not np.allclose(clipped[module][leaf], expected[module][leaf], rtol=1e-3)
    for module, leaf in (("fc", "kernel"), ("conv", "kernel"), ("dwconv", "kernel"), ("norm", "bias")):
        np.testing.assert_allclose(clipped[module][leaf], expected[module][leaf], rtol=2e-6, atol=1e-9)


def test_create_optimizer_feeds_the_optimizer_timms_adaptively_clipped_gradients():
    params, grads, expected, entry = clip_fixture("agc")
    # With eps far above every sqrt(v), Adam's first update is -lr * g / eps to 1e-4: linear in the gradient.
    config = ConfigDict(dict(lr=1.0, eps=1e6, weight_decay=0.0, grad_clip=entry["value"], clip_mode="agc"))
    tx, _ = create_optimizer(config, total_steps=10)
    updates, _ = tx.update(grads, tx.init(params), params)
    for module, leaves in expected.items():
        for leaf, value in leaves.items():
            np.testing.assert_allclose(-1e6 * updates[module][leaf], value, rtol=1e-4, atol=1e-12)
