"""The TransNeXt zoo: official parameter counts, block wiring, a tiny forward and training step, bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import (
    count_params,
    create_model,
    list_models,
    model_spec,
    transnext_variants,  # registers the variants (not yet imported by mixtok.models)
)

OFFICIAL_COUNTS = {  # DaiShiResearch/TransNeXt classification/transnext.py at img_size 224, 1000 classes
    "transnext_micro": 12_809_304,
    "transnext_tiny": 28_258_960,
    "transnext_small": 49_741_564,
    "transnext_base": 89_721_496,
}
# 64 px: grids 16, 8, 4, 2 with pooled grids 2 x 2 in stages 1-3 and full attention in stage 4.
TINY = dict(dims=(8, 16, 16, 16), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 2), pretrain_size=64)


def _images(size, batch=2, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, size, size, 3)), jnp.float32)


def test_the_zoo_has_the_four_paper_variants():
    assert list_models("transnext*") == sorted(OFFICIAL_COUNTS) == sorted(transnext_variants.SIZES)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_equals_the_official_count(name):
    shapes = jax.eval_shape(create_model(name).init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    assert count_params(shapes) == OFFICIAL_COUNTS[name] == model_spec(name).official_params
    params = nn.meta.unbox(shapes["params"])
    dims = create_model(name).dims
    # Stages 1-3 use aggregated attention (pooled branch `sr`, 3x3 learnable tokens); stage 4 full attention.
    assert params["block1_0"]["attn"]["learnable_tokens"].shape[-1] == 9
    assert params["block3_0"]["attn"]["sr"]["kernel"].shape == (dims[2], dims[2])
    assert params["block4_0"]["attn"]["qkv"]["kernel"].shape == (dims[3], 3 * dims[3])
    assert "sr" not in params["block4_0"]["attn"]
    # ConvGLU hidden width int(2 * int(C * ratio) / 3) with ratios 8, 8, 4, 4.
    assert params["block1_0"]["mlp"]["fc2"]["kernel"].shape == (int(2 * dims[0] * 8 / 3), dims[0])
    assert params["patch_embed1"]["proj"]["kernel"].shape == (7, 7, 3, dims[0])
    assert params["patch_embed2"]["proj"]["kernel"].shape == (3, 3, dims[0], dims[1])


def _random_params(model, x, seed=0):
    """Parameters drawn in numpy on the shapes of init: compiling a model's init costs more than its test."""
    rng = np.random.default_rng(seed)
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))["params"]
    return jax.tree_util.tree_map(lambda s: jnp.asarray(0.1 * rng.normal(size=s.shape), jnp.float32), shapes)


def test_tiny_model_forward_sows_every_stage():
    model = create_model("transnext_micro", num_classes=5, **TINY)
    x = _images(64)
    logits, state = jax.jit(lambda p, inp: model.apply({"params": p}, inp, mutable=["intermediates"]))(
        _random_params(model, x), x
    )
    assert logits.shape == (2, 5) and np.all(np.isfinite(logits))
    assert {k: v[0].shape for k, v in state["intermediates"].items()} == {
        "stage1": (2, 16, 16, 8),
        "stage2": (2, 8, 8, 16),
        "stage3": (2, 4, 4, 16),
        "stage4": (2, 2, 2, 16),
        "pre_logits": (2, 16),
    }


def test_training_step_with_drop_path_gives_finite_gradients():
    # Blocks in stages 3 (aggregated attention) and 4 (full attention) only: XLA's CPU compile of the backward
    # pass dominates this test, and the mixers' gradients are tested on their own.
    model = create_model(
        "transnext_micro", num_classes=5, drop_path_rate=0.1, dropout=0.1, **{**TINY, "depths": (0, 0, 1, 1)}
    )
    x = _images(64)

    def loss(params):
        logits = model.apply(
            {"params": params},
            x,
            train=True,
            rngs={"dropout": jax.random.PRNGKey(1), "drop_path": jax.random.PRNGKey(2)},
        )
        return jnp.mean(jax.nn.log_softmax(logits)[:, 0])

    grads = jax.jit(jax.grad(loss))(_random_params(model, x))
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    assert np.any(np.asarray(grads["block3_0"]["attn"]["learnable_tokens"]) != 0)
    assert np.any(np.asarray(grads["block4_0"]["attn"]["temperature"]) != 0)


def test_images_whose_size_the_stride_does_not_divide_are_rejected():
    model = create_model("transnext_micro", **TINY)
    with pytest.raises(ValueError, match="divisible by the model's total stride 32"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 72, 64, 3)))
    with pytest.raises(ValueError, match="4 entries"):
        jax.eval_shape(
            create_model("transnext_micro", depths=(1, 1, 1)).init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))
        )


def test_features_feed_the_head_and_intermediates_are_the_stage_maps():
    model = create_model("transnext_micro", num_classes=5, **TINY)
    x = _images(64)
    params = _random_params(model, x)
    logits, features, stages = jax.jit(
        lambda p, x: (
            model.apply({"params": p}, x),
            model.apply({"params": p}, x, method="features"),
            model.apply({"params": p}, x, method="intermediates"),
        )
    )(params, x)
    assert [s.shape for s in stages] == [(2, 16, 16, 8), (2, 8, 8, 16), (2, 4, 4, 16), (2, 2, 2, 16)]
    np.testing.assert_array_equal(np.asarray(stages[-1]), np.asarray(features))
    # The head, in numpy: mean over the (already normalised) stage-4 map -> Linear.
    pooled = np.asarray(features, np.float64).mean(axis=(1, 2))
    want = pooled @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-4, atol=1e-4)


def test_every_shared_argument_name_is_accepted_and_image_size_is_checked():
    shared = dict(
        depths=(1, 1, 1, 1),
        dims=(8, 16, 16, 16),
        num_heads=(1, 2, 2, 2),
        mlp_ratios=(2, 2, 2, 2),
        num_classes=7,
        drop_path_rate=0.1,
        head_dropout=0.1,
        dropout=0.1,
        attn_dropout=0.1,
        image_size=64,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    )
    model = create_model("transnext_micro", pretrain_size=64, **shared)
    params = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), _images(64, batch=1)))["params"]
    assert params["block1_0"]["mlp"]["fc2"]["kernel"].shape == (int(2 * 8 * 2 / 3), 8)  # mlp_ratios per stage
    assert params["head"]["kernel"].shape == (16, 7)
    with pytest.raises(ValueError, match="built with image_size=64 but got 96x96 images"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), _images(96, batch=1))
