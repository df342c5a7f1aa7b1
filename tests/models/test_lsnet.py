"""The LSNet zoo: official parameter counts, the official block layout, the attention bias table, BN state."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.layers.se import make_divisible
from mixtok.models import (
    count_params,
    create_model,
    list_models,
    lsnet_variants,  # registers the variants (not yet imported by mixtok.models)
    model_spec,
)
from mixtok.models.lsnet import attention_bias_index
from tests.helpers import random_like

OFFICIAL_COUNTS = {"lsnet_t": 11_409_832, "lsnet_s": 16_146_304, "lsnet_b": 23_313_608}
TINY = dict(dims=(16, 16, 24, 32), depths=(0, 2, 0, 2), num_heads=(2, 2, 2, 2), key_dim=4, image_size=128)


def _shapes(model, size):
    return nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3))))


def test_the_zoo_has_the_three_paper_variants():
    assert list_models("lsnet*") == sorted(OFFICIAL_COUNTS) == sorted(lsnet_variants.SIZES)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_equals_the_official_count(name):
    shapes = _shapes(create_model(name), 224)
    assert count_params(shapes) == OFFICIAL_COUNTS[name] == model_spec(name).official_params
    params = shapes["params"]
    # Even blocks: RepVGGDW + SE; odd blocks: LSConv in stages 1-3, attention (4x4 bias table at 224) in stage 4.
    assert "se" in params["blocks3_2"] and "conv1" in params["blocks3_2"]["mixer"]
    assert "lkp" in params["blocks3_3"]["mixer"] and "se" not in params["blocks3_3"]
    assert params["blocks4_3"]["mixer"]["attention_biases"].shape == (4, 16)
    assert "mean" in shapes["batch_stats"]["head_bn"]


def test_lsnet_t_has_no_stage_1_blocks():
    params = _shapes(create_model("lsnet_t"), 224)["params"]
    assert not [key for key in params if key.startswith("blocks1")]
    assert params["blocks2_0"]["conv"]["kernel"].shape == (3, 3, 1, 64)  # the stride-2 depthwise downsampling


def test_attention_bias_index_follows_the_official_offset_order():
    resolution = 4
    points = list(itertools.product(range(resolution), range(resolution)))
    offsets, idxs = {}, []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            offsets.setdefault(offset, len(offsets))
            idxs.append(offsets[offset])
    np.testing.assert_array_equal(attention_bias_index(resolution), np.array(idxs).reshape(16, 16))


def test_squeeze_excite_width_uses_timm_rounding():
    assert [make_divisible(c * 0.25) for c in (64, 96, 320, 20)] == [16, 24, 80, 8]


def _random_variables(model, x, seed=0):
    """Variables drawn in numpy on the shapes of `model.init` (a whole model's init compiles slowly on a CPU)."""
    return random_like(_shapes(model, x.shape[1]), seed=seed)


def test_tiny_model_trains_updates_batch_stats_and_evaluates_with_running_statistics():
    model = create_model("lsnet_t", num_classes=5, **TINY)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 128, 128, 3)), jnp.float32)
    variables = _random_variables(model, x)

    def loss(params):
        logits, state = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(logits**2), (logits, state["batch_stats"])

    (_, (logits, stats)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    assert logits.shape == (2, 5)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))), path
    assert float(jnp.abs(grads["blocks2_3"]["mixer"]["lkp"]["cv4"]["kernel"]).sum()) > 0
    old, new = variables["batch_stats"]["blocks2_3"]["mixer"]["bn"], stats["blocks2_3"]["mixer"]["bn"]
    assert not np.allclose(old["mean"], new["mean"])
    evaluate = jax.jit(lambda v, x: model.apply(v, x))
    trained = {"params": variables["params"], "batch_stats": stats}
    first, second = evaluate(trained, x), evaluate(trained, x.at[1].set(-3.0 * x[1]))
    np.testing.assert_allclose(np.asarray(first[0]), np.asarray(second[0]), rtol=1e-5, atol=1e-6)


def test_images_must_match_the_attention_resolution():
    with pytest.raises(ValueError, match="biases fit a 2x2 map \\(from image_size\\); got 3x3"):
        _shapes(create_model("lsnet_t", **TINY), 160)
    with pytest.raises(ValueError, match="dims must be multiples of 8"):
        _shapes(create_model("lsnet_t", **{**TINY, "dims": (16, 16, 20, 32)}), 128)


def test_features_feed_the_head_and_intermediates_are_the_stage_maps():
    model = create_model("lsnet_t", num_classes=5, **TINY)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 128, 128, 3)), jnp.float32)
    variables = _random_variables(model, x)
    logits, features, stages = jax.jit(
        lambda v, x: (
            model.apply(v, x),
            model.apply(v, x, method="features"),
            model.apply(v, x, method="intermediates"),
        )
    )(variables, x)
    # An empty stage 1 (LSNet-T) passes the stem's stride-8 map on.
    assert [s.shape for s in stages] == [(2, 16, 16, 16), (2, 8, 8, 16), (2, 4, 4, 24), (2, 2, 2, 32)]
    np.testing.assert_array_equal(np.asarray(stages[-1]), np.asarray(features))
    # The head, in numpy: mean over the map -> BatchNorm1d with running statistics (eps 1e-5) -> Linear.
    params, stats = variables["params"], variables["batch_stats"]
    pooled = np.asarray(features, np.float64).mean(axis=(1, 2))
    normed = (pooled - np.asarray(stats["head_bn"]["mean"])) / np.sqrt(
        np.asarray(stats["head_bn"]["var"]) + 1e-5
    ) * np.asarray(params["head_bn"]["scale"]) + np.asarray(params["head_bn"]["bias"])
    want = normed @ np.asarray(params["head_l"]["kernel"]) + np.asarray(params["head_l"]["bias"])
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-4, atol=1e-4)


def test_every_shared_argument_name_is_accepted_and_stochastic_depth_is_off_by_default():
    shared = dict(
        depths=(0, 2, 0, 2),
        dims=(16, 16, 24, 32),
        num_heads=(2, 2, 2, 2),
        num_classes=7,
        drop_path_rate=0.5,
        head_dropout=0.5,
        image_size=64,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    )
    model = create_model("lsnet_t", key_dim=4, **shared)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 64, 64, 3)), jnp.float32)
    variables = _random_variables(model, x)
    assert variables["params"]["blocks4_3"]["mixer"]["attention_biases"].shape == (2, 1)  # image_size 64: 1x1 map
    # No parameters of their own: the tree is the one without stochastic depth and head dropout.
    plain = create_model("lsnet_t", key_dim=4, **{**shared, "drop_path_rate": 0.0, "head_dropout": 0.0})
    assert jax.tree_util.tree_structure(_shapes(plain, 64)) == jax.tree_util.tree_structure(variables)

    def run(m, key):  # jitted per model: eager dispatch of four training forwards took most of the test's time
        forward = jax.jit(
            lambda k: m.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": k, "drop_path": k})[0]
        )
        return forward(key)

    first, second = run(model, jax.random.PRNGKey(0)), run(model, jax.random.PRNGKey(1))
    assert not np.allclose(np.asarray(first), np.asarray(second))
    np.testing.assert_array_equal(
        np.asarray(run(plain, jax.random.PRNGKey(0))), np.asarray(run(plain, jax.random.PRNGKey(1)))
    )
