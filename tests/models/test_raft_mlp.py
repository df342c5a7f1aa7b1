"""The RaftMLP zoo: official parameter counts, the cross-scale embedding against Unfold written out, the trained
grids, argument errors, a train step off the trained grid, and the ImageNet recipe's schedule."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import count_params, create_model, list_models, model_spec, raft_mlp_variants
from mixtok.models.raft_mlp import CrossScaleMLPEmbedding, trained_grids
from mixtok.train.config_files import load_module
from mixtok.train.optimizer import create_optimizer
from tests.helpers import random_variables, variable_shapes

OFFICIAL_COUNTS = {  # okojoalg/raft-mlp RaftMLP from configs/settings/imagenet-raft-mlp-cross-mlp-emb-*.yaml; 224 px
    "raftmlp_s": 9_868_768,
    "raftmlp_m": 21_413_632,
    "raftmlp_l": 36_184_672,
}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 16, 32), mlp_ratios=2, image_size=32)


def test_the_zoo_has_the_three_official_variants():
    assert list_models("raftmlp*") == sorted(OFFICIAL_COUNTS) == sorted(raft_mlp_variants.SIZES)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_equals_the_official_count(name):
    shapes = variable_shapes(create_model(name), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
    assert count_params(shapes) == OFFICIAL_COUNTS[name] == model_spec(name).official_params
    assert set(shapes) == {"params"}  # no buffers, as the official model


def test_cross_scale_embedding_equals_torch_unfold_written_out():
    """fc(concat_k Unfold(k, stride s, padding (k - s) // 2)(x)), each Unfold row (c, kh, kw), c slowest."""
    x = np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype(np.float32)
    kernels, stride = (2, 4, 6), 2
    module = CrossScaleMLPEmbedding(5, kernels)
    params = random_variables(module, x, seed=1)["params"]
    columns = []
    for k in kernels:
        pad = (k - stride) // 2
        padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        patches = np.zeros((2, 4, 6, 3, k, k))
        for i in range(4):
            for j in range(6):
                window = padded[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
                patches[:, i, j] = window.transpose(0, 3, 1, 2)  # (c, kh, kw)
        columns.append(patches.reshape(2, 4, 6, -1))
    expected = np.concatenate(columns, -1) @ np.asarray(params["kernel"]) + np.asarray(params["bias"])
    y = np.asarray(module.apply({"params": params}, x))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_trained_grids_divide_the_pretrained_size_level_by_level_rounding_up():
    assert trained_grids(224, (4, 2, 2, 2)) == (56, 28, 14, 7)
    assert trained_grids(250, (4, 2, 2, 2)) == (63, 32, 16, 8)  # ceil at every level, as the official Level


def test_bad_arguments_raise_one_clear_error():
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    with pytest.raises(ValueError, match=r"raft size 3 must divide the level's dim 16"):
        variable_shapes(create_model("raftmlp_s", **dict(TINY, raft_sizes=(2, 3, 2, 2))), x)
    with pytest.raises(ValueError, match=r"starting with its patch size"):
        variable_shapes(create_model("raftmlp_s", **TINY, embedding_kernels=((8, 4), (2, 4), (2, 4), (2,))), x)
    with pytest.raises(ValueError, match="NHWC images"):
        variable_shapes(create_model("raftmlp_s", **TINY), jax.ShapeDtypeStruct((32, 32, 3), jnp.float32))


def test_a_jitted_train_step_off_the_trained_grid_has_finite_gradients():
    """One level trained for 32 px (an 8 x 8 grid), fed 38 x 46: the level first resizes the image up to 40 x 48
    (Level.forward), then every mixer resizes 10 x 12 to 8 x 8 and back; dropout and drop path on. (One level: the
    compile is most of this test's time.)"""
    level = dict(depths=(1,), dims=(8,), patch_sizes=(4,), embedding_kernels=((4, 8),))
    model = create_model("raftmlp_s", num_classes=3, dropout=0.1, drop_path_rate=0.2, **dict(TINY, **level))
    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 38, 46, 3)), jnp.float32)
    variables = random_variables(model, images, seed=2)

    def loss(v):
        rngs = {"dropout": jax.random.PRNGKey(1), "drop_path": jax.random.PRNGKey(2)}
        logits = model.apply(v, images, train=True, rngs=rngs)
        return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0])

    value, grads = jax.jit(jax.value_and_grad(loss))(variables)
    assert np.isfinite(float(value))
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert np.abs(grads["params"]["levels_0_blocks_0"]["mixer"]["horizontal"]["fc1"]["kernel"]).max() > 0


def test_imagenet_config_is_the_official_ignite_schedule_and_decays_every_parameter():
    """libs/train.py: LinearCyclicalScheduler 0 -> lr over 5 epochs of iterations, then CosineAnnealingScheduler
    lr -> 1e-5 over 300 epochs of iterations; AdamW on model.parameters(); 625 updates an epoch (drop_last)."""
    config = load_module(os.path.join(REPO_ROOT, "experiments", "configs", "imagenet", "raftmlp_s.py")).get_config()
    optimizer, per_epoch = config.optimizer, 1_281_167 // 2048
    assert config.batch_size == 2048 and optimizer.steps_per_epoch == per_epoch == 625
    assert config.total_steps == 305 * 1_281_167 // 2048
    assert (optimizer.weight_decay, optimizer.weight_decay_on, optimizer.lr) == (0.05, "all", 2e-3)
    assert optimizer.get("grad_clip") is None and config.label_smoothing == 0.1
    assert config.model.kwargs.drop_path_rate == 0.1
    _, schedule = create_optimizer(optimizer, config.total_steps)
    warmup, cosine = 5 * per_epoch, 300 * per_epoch

    def ignite(i):  # the official rate of iteration i
        if i < warmup:
            return 2e-3 * i / warmup
        return 1e-5 + (2e-3 - 1e-5) * (1 + np.cos(np.pi * (i - warmup) / cosine)) / 2

    for i in (0, 1, warmup - 1, warmup, warmup + 1, warmup + cosine // 3, warmup + cosine - 1):
        assert float(schedule(i)) == pytest.approx(ignite(i), rel=1e-5, abs=1e-12), i
