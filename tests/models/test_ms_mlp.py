"""The MS-MLP zoo: official parameter counts, the block's order of operations, drop path, sizes, a train step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import count_params, create_model, list_models, model_spec, ms_mlp_variants
from mixtok.models.ms_mlp import MixShiftBlock
from tests.helpers import random_variables

OFFICIAL_COUNTS = {  # JegZheng/MS-MLP MS_MLP from configs/msmlp_*_patch4_shift5_224.yaml; 224 px, 1000 classes
    "ms_mlp_t": 28_656_232,
    "ms_mlp_s": 50_303_752,
    "ms_mlp_b": 88_696_792,
}
TINY = dict(depths=(1, 1, 1, 1), dims=(10, 20, 40, 80), mlp_ratios=2.0)


def test_the_zoo_has_the_three_official_variants():
    assert list_models("ms_mlp*") == sorted(OFFICIAL_COUNTS) == sorted(ms_mlp_variants.SIZES)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_equals_the_official_count(name):
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    shapes = nn.meta.unbox(jax.eval_shape(create_model(name).init, jax.random.PRNGKey(0), x))
    assert count_params(shapes) == OFFICIAL_COUNTS[name] == model_spec(name).official_params
    assert set(shapes) == {"params"}  # no buffers, as the official model


def _layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def test_the_block_is_the_official_order_mixer_norm_mlp_scale_one_residual():
    """x + gamma * fc2(GELU(fc1(LN(MixShift(x))))), written out in numpy from the block's own (random) weights."""
    from math import erf

    from tests.mixers.test_mix_shift import _reference

    x = np.random.default_rng(0).normal(size=(2, 5, 6, 10)).astype(np.float32)
    block = MixShiftBlock(mix_sizes=(1, 3, 3, 5, 7), mlp_ratio=2.0)
    variables = random_variables(block, x, seed=3, std=0.5)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    y = _reference(x, variables["params"]["mixer"], block.shift_dist, block.mix_sizes)
    y = _layer_norm(y, p["norm"]["scale"], p["norm"]["bias"])
    y = y @ p["mlp"]["fc1"]["kernel"] + p["mlp"]["fc1"]["bias"]
    y = 0.5 * y * (1 + np.vectorize(erf)(y / np.sqrt(2)))  # exact GELU (nn.GELU)
    y = (y @ p["mlp"]["fc2"]["kernel"] + p["mlp"]["fc2"]["bias"]) * p["gamma"]
    np.testing.assert_allclose(np.asarray(jax.jit(block.apply)(variables, x)), x + y, rtol=1e-4, atol=1e-4)


def test_drop_path_rises_linearly_over_all_blocks_as_the_official_schedule():
    model = create_model("ms_mlp_s", num_classes=3, depths=(1, 2, 3, 1), dims=TINY["dims"], drop_path_rate=0.6)
    x = jnp.zeros((1, 32, 32, 3))
    rates = {}

    def record(module, method_name):
        if isinstance(module, MixShiftBlock) and method_name == "__call__":
            rates[module.name] = module.drop_path
        return False

    jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x, capture_intermediates=record))
    expected = np.linspace(0, 0.6, 7)  # torch.linspace(0, drop_path_rate, sum(depths))
    names = ["layers_0_blocks_0", "layers_1_blocks_0", "layers_1_blocks_1"] + [
        *(f"layers_2_blocks_{j}" for j in range(3)),
        "layers_3_blocks_0",
    ]
    np.testing.assert_allclose([rates[n] for n in names], expected)
    assert model_spec("ms_mlp_s").kwargs["drop_path_rate"] == 0.4  # the small yaml's DROP_PATH_RATE


def test_images_must_be_a_multiple_of_32_and_image_size_is_checked():
    model = create_model("ms_mlp_t", num_classes=3, **TINY)
    with pytest.raises(ValueError, match=r"Image size 48x64 is not divisible by the model's total stride 32"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 48, 64, 3)))
    checked = create_model("ms_mlp_t", num_classes=3, image_size=64, **TINY)
    with pytest.raises(ValueError, match="built with image_size=64 but got 96x96 images"):
        jax.eval_shape(checked.init, jax.random.PRNGKey(0), jnp.zeros((1, 96, 96, 3)))
    with pytest.raises(ValueError, match="dim=8 splits into 4 torch.chunk groups"):
        jax.eval_shape(
            create_model("ms_mlp_t", depths=(1, 1, 1, 1), dims=(8, 16, 32, 64)).init,
            jax.random.PRNGKey(0),
            jnp.zeros((1, 32, 32, 3)),
        )


def test_a_jitted_train_step_with_drop_path_and_dropout_has_finite_gradients_on_a_non_square_image():
    # One block (stage 1) keeps the compile short; stages 2-4 still run their downsampling.
    tiny = dict(TINY, depths=(1, 0, 0, 0))
    model = create_model("ms_mlp_t", num_classes=4, drop_path_rate=0.2, dropout=0.1, head_dropout=0.1, **tiny)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 96, 3)), jnp.float32)
    variables = random_variables(model, x, seed=1)

    def loss(params, rng):
        rngs = dict(zip(("dropout", "drop_path"), jax.random.split(rng)))
        return jnp.sum(model.apply({"params": params}, x, train=True, rngs=rngs) ** 2)

    grads = jax.jit(jax.grad(loss))(variables["params"], jax.random.PRNGKey(1))
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for _, g in leaves)
    # Drop path may drop a whole block for both samples; the patch embedding and head always get gradient.
    assert float(jnp.abs(grads["patch_embed"]["proj"]["kernel"]).sum()) > 0
    assert float(jnp.abs(grads["head"]["fc"]["kernel"]).sum()) > 0


@pytest.mark.parametrize("name, drop_path", [("ms_mlp_t", 0.1), ("ms_mlp_s", 0.4), ("ms_mlp_b", 0.5)])
def test_imagenet_config_is_the_official_swin_style_recipe_with_a_per_update_cosine(name, drop_path):
    """JegZheng/MS-MLP: config.py + the yaml; main.py scales 5e-4 / 5e-7 / 5e-6 by batch / 512 (1024: x2);
    lr_scheduler.py runs timm's CosineLRScheduler on updates (t_in_epochs=False), warm-up inside t_initial."""
    import math
    from pathlib import Path

    from mixtok.train import config_files
    from mixtok.train.optimizer import create_optimizer

    path = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "imagenet" / f"{name}.py"
    config = config_files.load_module(path).get_config()
    optimizer = config.optimizer
    assert config.batch_size == 1024 and config.model.kwargs.drop_path_rate == drop_path
    assert (optimizer.name, optimizer.lr, optimizer.weight_decay, optimizer.grad_clip) == ("adamw", 1e-3, 0.05, 5.0)
    assert config.label_smoothing == 0.1 and config.data.crop_pct == 224 / 256 and "model_ema" not in config
    assert config.mixup.to_dict() == dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch")
    per_epoch = 1_281_167 // 1024  # the official loader drops the last partial batch: 1,251 updates
    assert optimizer.schedule == "timm_cosine" and optimizer.schedule_on == "step"
    assert optimizer.steps_per_epoch == per_epoch and optimizer.cooldown_epochs == 0
    _, schedule = create_optimizer(optimizer, config.total_steps)
    warmup, total = 20 * per_epoch, 300 * per_epoch  # lr_scheduler.py warmup_t, t_initial (in updates)

    def timm(t):  # timm/scheduler/cosine_lr.py, one cycle, t in updates
        if t < warmup:
            return 1e-6 + t * (1e-3 - 1e-6) / warmup
        return 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * t / total)) / 2 if t < total else 1e-5

    for step in (0, 1, warmup - 1, warmup, warmup + 7, total // 2 + 3, total - 1, total, config.total_steps - 1):
        assert float(schedule(step)) == pytest.approx(timm(step), rel=1e-5), step
