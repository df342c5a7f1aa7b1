"""The optimizer: warm-up + cosine schedules (optax's, ml-cvnets'), weight decay masks, clipping, LAMB."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

from mixtok.train.optimizer import create_optimizer, weight_decay_mask


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    _, schedule = create_optimizer(ConfigDict(dict(lr=1e-3, warmup_steps=10, min_lr=1e-5)), total_steps=110)
    np.testing.assert_allclose([schedule(0), schedule(5), schedule(10)], [0.0, 5e-4, 1e-3], rtol=1e-6)
    # Cosine from step 10 to 110: halfway (step 60) is the midpoint of peak and floor.
    np.testing.assert_allclose(schedule(60), 1e-5 + 0.5 * (1e-3 - 1e-5), rtol=1e-5)
    np.testing.assert_allclose(schedule(110), 1e-5, rtol=1e-5)


def test_only_weight_matrices_and_kernels_decay():
    params = {
        "dense": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones((4,))},
        "norm": {"scale": jnp.ones((4,))},
        "act": {"scale": jnp.ones((1,))},
        "conv": {"kernel": jnp.ones((3, 3, 1, 4))},
    }
    assert weight_decay_mask(params) == {
        "dense": {"kernel": True, "bias": False},
        "norm": {"scale": False},
        "act": {"scale": False},
        "conv": {"kernel": True},
    }


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_decay_leaves_biases_alone_when_gradients_are_zero(name):
    tx, _ = create_optimizer(ConfigDict(dict(name=name, lr=0.1, weight_decay=0.5)), total_steps=10)
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
    zeros = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros((2,))}
    updates, _ = tx.update(zeros, tx.init(params), params)
    assert float(jnp.abs(updates["bias"]).max()) == 0.0
    assert float(updates["kernel"][0, 0]) < 0.0


def test_gradients_are_clipped_by_global_norm_before_adam():
    # Adam's first step is scale-invariant, so clipping shows only from the second step on.
    config = ConfigDict(dict(lr=0.1, weight_decay=0.0, grad_clip=1.0))
    tx, schedule = create_optimizer(config, total_steps=10)
    unclipped = optax.adamw(schedule, weight_decay=0.0)
    params = {"w": jnp.zeros((3,))}
    grads = [{"w": jnp.array([30.0, 40.0, 0.0])}, {"w": jnp.array([0.5, 0.0, 0.5])}]

    def run(transform, grad_list):
        state = transform.init(params)
        for g in grad_list:
            updates, state = transform.update(g, state, params)
        return np.asarray(updates["w"])

    clipped_grads = [{"w": g["w"] / max(1.0, float(jnp.linalg.norm(g["w"])))} for g in grads]
    np.testing.assert_allclose(run(tx, grads), run(unclipped, clipped_grads), rtol=1e-5)
    assert not np.allclose(run(tx, grads), run(unclipped, grads), rtol=1e-3)


def test_unknown_optimizer_and_too_long_warmup_are_explained():
    with pytest.raises(ValueError, match="Unknown optimizer 'adam_w'. Did you mean 'adamw'"):
        create_optimizer(ConfigDict(dict(name="adam_w", lr=1.0)), total_steps=10)
    with pytest.raises(ValueError, match="warmup_steps=10 must be smaller than total_steps=10"):
        create_optimizer(ConfigDict(dict(lr=1.0, warmup_steps=10)), total_steps=10)


def cvnets_rate(it, *, epoch, lr, min_lr, warmup_iterations, warmup_init_lr, max_epochs):
    """apple/ml-cvnets optim/scheduler/cosine.py CosineScheduler.get_lr, epoch-based (is_iteration_based
    false, adjust_period_for_epochs false), transcribed with math, plus base_scheduler.update_lr's max(0, .)."""
    if it < warmup_iterations:
        rate = warmup_init_lr + it * ((lr - warmup_init_lr) / warmup_iterations)
    else:
        rate = min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * epoch / max_epochs))
    return max(0.0, rate)


@pytest.mark.parametrize(
    "steps_per_epoch, epochs, warmup",
    [(7, 12, 20), (1251, 300, 20_000)],  # a warm-up ending mid-epoch; mobilevit.yaml at batch 1024
)
def test_cvnets_cosine_is_cvnets_epoch_based_scheduler(steps_per_epoch, epochs, warmup):
    # mobilevit.yaml: warm-up from 2e-4 to max_lr 2e-3, cosine to 2e-4 over max_epochs counted from epoch 0.
    rates = dict(lr=2e-3, min_lr=2e-4, warmup_init_lr=2e-4)
    config = dict(schedule="cvnets_cosine", steps_per_epoch=steps_per_epoch, warmup_steps=warmup, epochs=epochs)
    config.update(lr=rates["lr"], min_lr=rates["min_lr"], warmup_lr_init=rates["warmup_init_lr"])
    total_steps = steps_per_epoch * epochs
    _, schedule = create_optimizer(ConfigDict(config), total_steps=total_steps)
    steps = np.unique(np.r_[np.arange(0, total_steps, max(1, total_steps // 997)), warmup - 1, warmup, total_steps - 1])
    expected = [
        cvnets_rate(s, epoch=s // steps_per_epoch, max_epochs=epochs, warmup_iterations=warmup, **rates) for s in steps
    ]
    np.testing.assert_allclose(jax.jit(schedule)(steps), expected, rtol=2e-6)
    # The cosine spans the warm-up: right after it the rate is already below lr (epoch warmup // steps_per_epoch).
    assert float(schedule(warmup)) < rates["lr"] * (1 - 1e-4)
    np.testing.assert_allclose(schedule(total_steps + 5), rates["min_lr"], rtol=1e-6)  # later steps stay at min_lr


def test_warmup_cosine_warms_up_from_warmup_lr_init_as_cvnets_does():
    config = ConfigDict(dict(lr=2e-3, warmup_steps=20, warmup_lr_init=2e-4, min_lr=2e-4))
    _, schedule = create_optimizer(config, total_steps=100)
    # cvnets' linear warm-up (base_scheduler / cosine.py): warmup_init_lr + it * (max_lr - warmup_init_lr) / iterations.
    cvnets = dict(epoch=0, lr=2e-3, min_lr=2e-4, warmup_iterations=20, warmup_init_lr=2e-4, max_epochs=1)
    warm = [cvnets_rate(s, **cvnets) for s in range(20)]
    np.testing.assert_allclose([schedule(s) for s in range(20)], warm, rtol=1e-6)
    # After it, the cosine of the default schedule, from lr at step 20 to min_lr at total_steps.
    np.testing.assert_allclose([schedule(20), schedule(60), schedule(100)], [2e-3, 1.1e-3, 2e-4], rtol=1e-5)


@pytest.mark.parametrize("name", ["adamw", "lamb", "timm_lamb"])
def test_weight_decay_on_all_decays_biases_and_norm_scales_too(name):
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.full((2,), 2.0), "scale": jnp.full((2,), 3.0)}
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)

    def step(weight_decay_on):
        config = dict(name=name, lr=0.1, weight_decay=0.5, weight_decay_on=weight_decay_on, max_grad_norm=None)
        if name != "timm_lamb":
            del config["max_grad_norm"]
        tx, _ = create_optimizer(ConfigDict(config), total_steps=10)
        updates, _ = tx.update(zeros, tx.init(params), params)
        return {k: np.asarray(v) for k, v in updates.items()}

    matrices, everything = step("matrices"), step("all")
    assert np.all(matrices["bias"] == 0) and np.all(matrices["scale"] == 0)
    for key in params:
        if name == "adamw":  # decoupled decay with zero gradients: -lr * weight_decay * w (cvnets' torch AdamW)
            np.testing.assert_allclose(everything[key], -0.1 * 0.5 * np.asarray(params[key]), rtol=1e-6)
        else:  # the LAMBs: the decay direction, scaled by the trust ratio to -lr * ||w|| / ||w|| * w
            assert np.all(everything[key] < 0)
    np.testing.assert_array_equal(matrices["kernel"], everything["kernel"])


def _transnext_set_weight_decay(names_and_shapes, keywords):
    """DaiShiResearch/TransNeXt classification/optimizer.py `set_weight_decay`, written out: no decay for 1-D
    parameters, biases, and names containing a keyword (its no_weight_decay list is empty)."""
    return {
        name: not (len(shape) == 1 or name.endswith(".bias") or any(k in name for k in keywords))
        for name, shape in names_and_shapes.items()
    }


def test_no_weight_decay_keywords_follow_transnexts_rule_on_its_parameter_names():
    keywords = ("query_embedding", "relative_pos_bias_local", "cpb", "temperature")
    params = {
        "block1_0": {
            "attn": {
                "query_embedding": jnp.ones((2, 1, 4)),
                "relative_pos_bias_local": jnp.ones((2, 9)),
                "temperature": jnp.ones((2, 1, 1)),
                "cpb_fc1": {"kernel": jnp.ones((2, 8)), "bias": jnp.ones((8,))},
                "q": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones((4,))},
            },
            "norm1": {"scale": jnp.ones((4,))},
        },
        "head": {"kernel": jnp.ones((4, 3))},
    }
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    config = ConfigDict(dict(lr=0.1, weight_decay=0.5, no_weight_decay_keywords=keywords))
    tx, _ = create_optimizer(config, total_steps=10)
    updates, _ = tx.update(zeros, tx.init(params), params)
    decayed = {
        ".".join(k.key for k in path): bool(np.any(np.asarray(u) != 0))
        for path, u in jax.tree_util.tree_leaves_with_path(updates)
    }
    shapes = {".".join(k.key for k in path): p.shape for path, p in jax.tree_util.tree_leaves_with_path(params)}
    assert decayed == _transnext_set_weight_decay(shapes, keywords)
    assert decayed["block1_0.attn.q.kernel"] and not decayed["block1_0.attn.cpb_fc1.kernel"]


@pytest.mark.parametrize("keywords", ["cpb", ("cpb", ""), (3,)])
def test_bad_no_weight_decay_keywords_are_one_line(keywords):
    config = ConfigDict(dict(lr=0.1, no_weight_decay_keywords=keywords))
    with pytest.raises(ValueError, match="no_weight_decay_keywords=.*tuple of non-empty names"):
        create_optimizer(config, total_steps=10)
