"""The GFNet zoo: official parameter counts, one residual per block, resolution changes, bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.mixers.spectral import bicubic_resize_matrix
from mixtok.models import count_params, create_model, list_models, model_spec
from mixtok.models.gfnet import GFNetBlock

OFFICIAL_COUNTS = {  # raoyongming/GFNet main_gfnet.py architectures, 224 px, 1000 classes
    "gfnet_ti": 7_511_784,
    "gfnet_xs": 15_985_768,
    "gfnet_s": 24_869_608,
    "gfnet_b": 43_120_616,
    "gfnet_h_ti": 15_085_096,
    "gfnet_h_s": 32_162_632,
    "gfnet_h_b": 53_744_200,
}


def test_the_zoo_has_the_four_isotropic_and_three_hierarchical_variants():
    assert list_models("gfnet*") == sorted(OFFICIAL_COUNTS)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_equals_the_official_count(name):
    shapes = jax.eval_shape(create_model(name).init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    assert count_params(shapes) == OFFICIAL_COUNTS[name] == model_spec(name).official_params


def _images(size, batch=2, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, size, size, 3)), jnp.float32)


def test_isotropic_model_returns_logits_and_has_gradients():
    model = create_model("gfnet_ti", num_classes=7, depths=(1,), dims=(16,), image_size=48)
    x = _images(48)
    variables = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), x))

    def loss(params):
        logits = model.apply({"params": params}, x)
        return jnp.sum(logits**2), logits

    (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    for leaf in jax.tree_util.tree_leaves(grads):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    assert float(jnp.abs(grads["patch_embed"]["conv"]["kernel"]).sum()) > 0


def test_pyramid_stages_run_at_strides_4_8_16_32():
    # Shapes only (jax.eval_shape): compiling a four-stage init on a shared CPU costs more than it tells.
    model = create_model("gfnet_h_ti", num_classes=7, depths=(1, 1, 1, 1), dims=(8, 8, 16, 16))
    x = jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32)
    variables = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))
    assert variables["params"]["stages_0_blocks_0"]["filter"]["complex_weight"].shape == (56, 29, 8, 2)
    assert variables["params"]["stages_3_blocks_0"]["filter"]["complex_weight"].shape == (7, 4, 16, 2)
    logits = jax.eval_shape(model.apply, variables, x)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    stages = [m.shape for m in jax.eval_shape(lambda v, x: model.apply(v, x, method="intermediates"), variables, x)]
    assert stages == [(2, 16, 24, 8), (2, 8, 12, 8), (2, 4, 6, 16), (2, 2, 3, 16)]


def test_block_has_one_residual_around_filter_and_mlp_together():
    # With the MLP's output layer zeroed the whole branch is zero, so the block is the identity; a
    # second residual after the filter (the pitfall) would add filter(norm1(x)) instead.
    x = _images(6, batch=1)[..., :2] * 3.0
    block = GFNetBlock(grid_size=(6, 6))
    variables = nn.meta.unbox(jax.jit(block.init)(jax.random.PRNGKey(0), x))
    fc2 = variables["params"]["mlp"]["fc2"]
    zeroed = {
        **variables["params"],
        "mlp": {**variables["params"]["mlp"], "fc2": jax.tree_util.tree_map(jnp.zeros_like, fc2)},
    }
    np.testing.assert_array_equal(np.asarray(block.apply({"params": zeroed}, x)), np.asarray(x))
    assert not np.allclose(np.asarray(block.apply(variables, x)), np.asarray(x))


def test_other_resolution_equals_the_official_fine_tuning_conversion():
    # A model shaped for 32 px run on 48 px images computes what a 48-px model computes with the
    # weights converted as main_gfnet.py --finetune converts them: position embedding bicubic
    # (align_corners=False), filters bicubic (align_corners=True).
    small = create_model("gfnet_ti", num_classes=5, depths=(1,), dims=(8,), image_size=32)
    large = create_model("gfnet_ti", num_classes=5, depths=(1,), dims=(8,), image_size=48)
    x = _images(48)
    params = nn.meta.unbox(jax.jit(small.init)(jax.random.PRNGKey(0), x))["params"]
    pos = np.asarray(params["pos_embed"]["pos_embed"], np.float64)  # [1, 2, 2, C]
    resize = bicubic_resize_matrix(2, 3, False)
    weight = np.asarray(params["blocks_0"]["filter"]["complex_weight"], np.float64)  # [2, 2, C, 2]
    converted = jax.tree_util.tree_map(lambda a: a, params)
    converted["pos_embed"] = {"pos_embed": jnp.asarray(np.einsum("Hh,Ww,bhwc->bHWc", resize, resize, pos), jnp.float32)}
    converted["blocks_0"]["filter"] = {
        "complex_weight": jnp.asarray(
            np.einsum("Hh,Ww,hwcr->HWcr", bicubic_resize_matrix(2, 3, True), bicubic_resize_matrix(2, 2, True), weight),
            jnp.float32,
        )
    }
    assert jax.tree_util.tree_structure(converted) == jax.tree_util.tree_structure(
        nn.meta.unbox(jax.eval_shape(large.init, jax.random.PRNGKey(0), x))["params"]
    )
    np.testing.assert_allclose(
        np.asarray(jax.jit(small.apply)({"params": params}, x)),
        np.asarray(jax.jit(large.apply)({"params": converted}, x)),
        rtol=1e-4,
        atol=1e-5,
    )


def test_drop_path_uses_its_rng_stream_in_training():
    # Rates rise linearly from 0, so the second of two blocks drops with probability 0.5.
    model = create_model("gfnet_ti", num_classes=3, depths=(2,), dims=(8,), image_size=32, drop_path_rate=0.5)
    x = _images(32, batch=4)
    variables = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), x))
    with pytest.raises(Exception, match="drop_path"):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=True), variables, x)
    train = jax.jit(lambda v, x, key: model.apply(v, x, train=True, rngs={"drop_path": key}))
    out = [np.asarray(train(variables, x, jax.random.PRNGKey(s))) for s in (1, 2)]
    assert not np.allclose(out[0], out[1])


@pytest.mark.parametrize("name,size,stride", [("gfnet_ti", 40, 16), ("gfnet_h_ti", 48, 32)])
def test_image_size_the_strides_cannot_divide_is_rejected(name, size, stride):
    with pytest.raises(ValueError, match=f"{size}x{size} is not divisible by the model's total stride {stride}"):
        jax.eval_shape(create_model(name).init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))
