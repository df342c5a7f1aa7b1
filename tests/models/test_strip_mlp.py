"""The Strip-MLP zoo: official parameter counts, GRN, the constant drop path, resolutions and their errors.

The model's gradients and BatchNorm updates are checked on the mixer (tests/mixers/test_strip_mlp.py) and its
forward against the official model (tests/interop/test_strip_mlp_import.py); a whole-model jitted train step
compiled for over a minute here, so it is left to the configs' build test (tests/experiments/test_configs.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import count_params, create_model, list_models, model_spec, strip_mlp_variants
from mixtok.models.strip_mlp import GRN, BasicBlock

OFFICIAL_COUNTS = {  # Med-Process/Strip_MLP StripMLPNet from configs/smlp_*_imagenet1k.yaml; 224 px, 1000 classes
    "strip_mlp_tiny_light": 18_243_920,
    "strip_mlp_tiny": 24_903_920,
    "strip_mlp_small": 42_568_600,
    "strip_mlp_base": 57_216_480,
}
TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), image_size=64)
X224 = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)


def _shapes(model, x=X224):
    return nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))


def test_the_zoo_has_the_four_official_variants():
    assert list_models("strip_mlp*") == sorted(OFFICIAL_COUNTS) == sorted(strip_mlp_variants.SIZES)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_equals_the_official_count(name):
    """Each variant at 224 px with one block per stage (jax.eval_shape), plus depth - 1 copies of each stage's block
    (the blocks of a stage are one module repeated: same grid, same width). Tracing the whole models would cost the
    suite 10+ s; tools/make_strip_mlp_fixtures.py --parity counts the whole official models (the same figures)."""
    spec = model_spec(name)
    shapes = _shapes(create_model(name, depths=(1, 1, 1, 1)))["params"]
    block = [count_params({"params": shapes[f"blocks{i + 1}_0"]}) for i in range(4)]
    extra = sum((depth - 1) * count for depth, count in zip(spec.kwargs["depths"], block))
    assert count_params({"params": shapes}) + extra == OFFICIAL_COUNTS[name] == spec.official_params


def test_grn_is_the_official_global_response_normalisation():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 6)).astype(np.float32)
    gamma = np.random.default_rng(1).normal(size=(1, 1, 1, 6)).astype(np.float32)
    beta = np.random.default_rng(2).normal(size=(1, 1, 1, 6)).astype(np.float32)
    y = GRN().apply({"params": {"gamma": gamma, "beta": beta}}, x)
    norms = np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True))  # torch.norm(p=2, dim=(1, 2))
    expected = gamma * (x * norms / (norms.mean(-1, keepdims=True) + 1e-6)) + beta + x
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-6)


def test_drop_path_is_one_rate_for_every_block_as_the_official_hard_coded_one():
    model = create_model("strip_mlp_tiny", num_classes=3, drop_path_rate=0.3, **dict(TINY, depths=(1, 1, 2, 1)))
    rates = {}

    def record(module, method_name):
        if isinstance(module, BasicBlock) and method_name == "__call__":
            rates[module.name] = module.drop_path
        return False

    x = jnp.zeros((1, 64, 64, 3))
    jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x, capture_intermediates=record))
    assert rates == {name: 0.3 for name in ("blocks1_0", "blocks2_0", "blocks3_0", "blocks3_1", "blocks4_0")}
    assert create_model("strip_mlp_base").drop_path_rate == 0.1  # BasicBlock: drop_rate = 0.1


def test_image_size_fixes_the_grids_and_other_sizes_are_one_clear_error():
    model = create_model("strip_mlp_tiny", num_classes=3, **TINY)
    shapes = _shapes(model, jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))["params"]
    assert shapes["blocks1_0"]["token_mixing"]["proj_h"]["kernel"].shape == (1, 3, 16, 16)  # C2 = 8 / 2 / 4 = 1
    assert shapes["blocks4_0"]["token_mixing"]["relate_pos_h"]["embeddings_table"].shape == (5, 32)  # 2 x 2 grid
    with pytest.raises(ValueError, match="built with image_size=64 but got 96x96 images"):
        _shapes(model, jax.ShapeDtypeStruct((1, 96, 96, 3), jnp.float32))
    free = create_model("strip_mlp_tiny", num_classes=3, **dict(TINY, image_size=None))
    with pytest.raises(ValueError, match="needs square images .* got 64x96"):
        _shapes(free, jax.ShapeDtypeStruct((1, 64, 96, 3), jnp.float32))
    with pytest.raises(ValueError, match="not divisible by the model's total stride 32"):
        _shapes(free, jax.ShapeDtypeStruct((1, 48, 48, 3), jnp.float32))
    with pytest.raises(ValueError, match="dims\\[2\\] must be a multiple of dims\\[1\\]"):
        _shapes(create_model("strip_mlp_tiny", depths=(1, 1, 1, 1), dims=(8, 16, 24, 48)))


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_imagenet_config_is_the_official_recipe_with_its_unscaled_rates_and_a_per_update_cosine(name):
    """Med-Process/Strip_MLP: config.py + the yaml; main.py's linear_scaled_lr is never stored, so the optimizer runs
    5e-4 / 5e-7 / 5e-6 at the README's batch 128; lr_scheduler.py runs timm's CosineLRScheduler on updates
    (t_in_epochs=False), warm-up inside t_initial."""
    import math
    from pathlib import Path

    from mixtok.train import config_files
    from mixtok.train.optimizer import create_optimizer

    path = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "imagenet" / f"{name}.py"
    config = config_files.load_module(path).get_config()
    optimizer = config.optimizer
    assert config.batch_size == 128 and config.model.name == name and config.model.kwargs.drop_path_rate == 0.1
    assert (optimizer.name, optimizer.lr, optimizer.weight_decay, optimizer.grad_clip) == ("adamw", 5e-4, 0.05, 5.0)
    assert config.label_smoothing == 0.1 and config.data.crop_pct == 224 / 256 and "model_ema" not in config
    assert config.mixup.to_dict() == dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch")
    per_epoch = 1_281_167 // 128  # the official loader drops the last partial batch: 10,009 updates
    assert optimizer.schedule == "timm_cosine" and optimizer.schedule_on == "step"
    assert optimizer.steps_per_epoch == per_epoch and optimizer.cooldown_epochs == 0
    if name != "strip_mlp_tiny_light":  # the recipe is one function; its schedule is checked once
        return
    _, schedule = create_optimizer(optimizer, config.total_steps)
    warmup, total = 20 * per_epoch, 300 * per_epoch  # lr_scheduler.py warmup_t, t_initial (in updates)

    def timm(t):  # timm/scheduler/cosine_lr.py, one cycle, t in updates
        if t < warmup:
            return 5e-7 + t * (5e-4 - 5e-7) / warmup
        return 5e-6 + (5e-4 - 5e-6) * (1 + math.cos(math.pi * t / total)) / 2 if t < total else 5e-6

    for step in (0, 1, warmup - 1, warmup, warmup + 7, total // 2 + 3, total - 1, config.total_steps - 1):
        assert float(schedule(step)) == pytest.approx(timm(step), rel=1e-5), step
    doubled = config_files.load_module(path).get_config("batch_size=256")
    assert doubled.optimizer.lr == 1e-3 and doubled.optimizer.min_lr == 1e-5  # scaled linearly from batch 128
