"""Gradient accumulation (config.grad_accum_steps, the official codes' --update_freq).

The accumulating step is checked against the update written out by hand: the gradient of each
micro-batch's mean loss taken separately, their mean given to the optimizer once, BatchNorm statistics
carried from one micro-batch to the next (PyTorch's train-mode BatchNorm over `update_freq` forwards).
The trainer's multi-scale tests (tests/train/test_trainer.py) run two micro-batches a step and resume exactly.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mixtok.parallel import batch_sharding, create_mesh, rules_from_config
from mixtok.train import abstract_train_state, create_train_state, make_train_step, put_batch, seed_rngs
from mixtok.train.config import validate_config
from mixtok.train.tasks.classification import ClassificationTask
from tests.train.test_trainer import tiny_config


class _ConvBatchNorm(nn.Module):
    """Convolution, BatchNorm, ReLU, global average pool, linear: any image size, running statistics."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = nn.Conv(6, (3, 3), use_bias=False)(images)  # a bias before BatchNorm has no gradient
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(self.num_classes)(jnp.mean(nn.relu(x), axis=(1, 2)))


def _micro_batches(rng):
    """Two micro-batches of different sizes and resolutions, as a multi-scale stream draws them."""
    shapes = ((16, 16), (8, 24))  # (batch, image size)
    return [
        {
            "image": rng.normal(size=(b, s, s, 3)).astype(np.float32),
            "label": rng.integers(3, size=b).astype(np.int32),
        }
        for b, s in shapes
    ]


def test_accumulated_step_equals_the_mean_of_per_micro_batch_gradients_by_hand():
    task = ClassificationTask(_ConvBatchNorm(), num_classes=3, label_smoothing=0.1)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, weight_decay=0.05))
    mesh = create_mesh(None)
    sharding = batch_sharding(mesh, rules_from_config(None))  # the batch split over the test's 8 CPU devices
    layout = abstract_train_state(task, tx, 16, mesh, None)
    init_rng, step_rng = seed_rngs(0)
    state = create_train_state(task, tx, init_rng, 16, layout)
    params, stats = jax.device_get((state.params, state.other_variables))
    opt_state = tx.init(params)
    micro = _micro_batches(np.random.default_rng(0))

    # By hand: each micro-batch's mean-loss gradient at the same parameters, statistics carried on.
    loss_and_grad = jax.jit(jax.value_and_grad(task.train_loss, has_aux=True))
    grads, losses, other = [], [], stats
    for index, batch in enumerate(micro):
        rng = jax.random.fold_in(jax.random.fold_in(step_rng, 0), index)
        (loss, (_, updated)), grad = loss_and_grad(params, other, batch, rng, 0)
        other = {**other, **updated}
        grads.append(grad)
        losses.append(float(loss))
    mean_grad = jax.tree.map(lambda a, b: (a + b) / 2, *grads)
    updates, _ = tx.update(mean_grad, opt_state, params)
    expected_params = optax.apply_updates(params, updates)

    step = make_train_step(task, tx, optax.constant_schedule(1e-2), layout, sharding, accum_steps=2)
    state, metrics = step(state, [put_batch(b, sharding) for b in micro], step_rng)
    state, metrics = jax.device_get((state, metrics))
    assert int(state.step) == 1
    for path, got in jax.tree_util.tree_leaves_with_path(state.params):
        want = dict(jax.tree_util.tree_leaves_with_path(expected_params))[path]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    for path, got in jax.tree_util.tree_leaves_with_path(state.other_variables):
        want = dict(jax.tree_util.tree_leaves_with_path(other))[path]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    np.testing.assert_allclose(metrics["loss"], np.mean(losses), rtol=1e-5)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(mean_grad), rtol=1e-5)
    # Micro-batches weigh the same whatever their size: the 8-image batch is not worth 8 / 24.
    weighted = jax.tree.map(lambda a, b: (2 * a + b) / 3, *grads)
    assert not np.allclose(optax.tree.norm(weighted), metrics["grad_norm"], rtol=1e-4)

    with pytest.raises(ValueError, match="accumulates 2 micro-batches; got 1"):
        step(state, [put_batch(micro[0], sharding)], step_rng)


def test_grad_accum_steps_must_be_a_positive_integer():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"config.grad_accum_steps must be a positive integer; got"):
            validate_config(tiny_config(grad_accum_steps=bad))
