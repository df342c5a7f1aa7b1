"""The optimizer: warm-up + cosine schedule, decay only on weight matrices, clipping, LAMB."""

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
