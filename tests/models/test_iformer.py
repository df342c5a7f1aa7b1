"""The iFormer zoo: official parameter counts, layer scale and position embeddings per stage, a tiny model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.layers.stems import resize_pos_embed
from mixtok.models import (
    count_params,
    create_model,
    iformer_variants,  # registers the variants (not yet imported by mixtok.models)
    list_models,
    model_spec,
)
from mixtok.models.iformer import IFormerBlock
from tests.helpers import random_like

OFFICIAL_COUNTS = {"iformer_s": 19_866_344, "iformer_b": 47_866_216, "iformer_l": 86_637_096}
TINY = dict(
    depths=(1, 1, 1, 1), dims=(16, 32, 48, 64), num_heads=(2, 4, 4, 4), attention_heads=(1, 1, 2, 3), image_size=32
)


def _shapes(model, size):
    return nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3))))


def test_the_zoo_has_the_three_paper_variants():
    assert list_models("iformer*") == sorted(OFFICIAL_COUNTS) == sorted(iformer_variants.SIZES)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_equals_the_official_count(name):
    shapes = _shapes(create_model(name), 224)
    assert count_params(shapes) == OFFICIAL_COUNTS[name] == model_spec(name).official_params
    params = shapes["params"]
    model = create_model(name)
    # One position embedding per stage at img_size / 4 ... / 32.
    for stage, dim in enumerate(model.dims):
        side = 224 // (4 * 2**stage)
        assert params[f"pos_embed{stage + 1}"].shape == (1, side, side, dim)
    # Layer scale only in stages 3-4; BatchNorm statistics are state, not parameters.
    assert "layer_scale_1" not in params["blocks1_0"] and "layer_scale_1" not in params["blocks2_0"]
    assert params["blocks3_0"]["layer_scale_1"].shape == (model.dims[2],)
    assert params["blocks4_0"]["layer_scale_2"].shape == (model.dims[3],)
    assert "mean" in shapes["batch_stats"]["patch_embed_norm1"]
    # The frequency ramp: the last block gives more channels to attention than the first.
    first, last = params["blocks1_0"]["attn"], params[f"blocks4_{model.depths[3] - 1}"]["attn"]
    assert first["low_mixer"]["qkv"]["kernel"].shape[0] == model.dims[0] // model.num_heads[0]
    assert last["low_mixer"]["qkv"]["kernel"].shape[0] == (
        model.attention_heads[-1] * model.dims[3] // model.num_heads[3]
    )


def test_layer_scale_starts_at_1e_6():
    block = IFormerBlock(num_heads=2, attention_heads=1, pool_size=1, use_layer_scale=True)
    params = nn.meta.unbox(jax.jit(block.init)(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 16))))["params"]
    np.testing.assert_allclose(params["layer_scale_1"], 1e-6)
    np.testing.assert_allclose(params["layer_scale_2"], 1e-6)
    assert float(jnp.std(params["mlp"]["fc1"]["kernel"])) == pytest.approx(0.02, rel=0.3)


def _random_variables(model, x, seed=0):
    """Variables drawn in numpy on the shapes of `model.init`: compiling a whole model's init costs a 2-core CPU
    more than the rest of the test."""
    return random_like(_shapes(model, x.shape[1]), seed=seed)


def test_tiny_model_trains_updates_batch_stats_and_evaluates():
    # One block in stage 1 (pooled attention, no layer scale) and one in stage 4 (layer scale).
    model = create_model(
        "iformer_s", num_classes=5, drop_path_rate=0.1, **{**TINY, "depths": (1, 0, 0, 1), "attention_heads": (1, 3)}
    )
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = _random_variables(model, x)

    def loss(params):
        logits, state = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"drop_path": jax.random.PRNGKey(1)},
        )
        return jnp.sum(logits**2), (logits, state["batch_stats"])

    (_, (logits, stats)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    assert logits.shape == (2, 5)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))), path
    assert float(jnp.abs(grads["blocks1_0"]["attn"]["low_mixer"]["qkv"]["kernel"]).sum()) > 0
    assert not np.allclose(stats["patch_embed_norm1"]["mean"], variables["batch_stats"]["patch_embed_norm1"]["mean"])
    # Another resolution interpolates the position embeddings; stage maps are at strides 4 ... 32.
    y, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, mutable=["intermediates"]),
        {"params": variables["params"], "batch_stats": stats},
        jnp.zeros((1, 48, 64, 3)),
    )
    assert y.shape == (1, 5)
    assert [state["intermediates"][f"stage{i}"][0].shape[1:3] for i in range(1, 5)] == [
        (12, 16),
        (6, 8),
        (3, 4),
        (2, 2),
    ]


def test_position_embedding_interpolation_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    pos = np.random.default_rng(0).normal(size=(1, 7, 7, 3)).astype(np.float32)
    for size in [(14, 14), (4, 6), (7, 7)]:
        want = (
            torch.nn.functional.interpolate(torch.from_numpy(pos).permute(0, 3, 1, 2), size=size, mode="bilinear")
            .permute(0, 2, 3, 1)
            .numpy()
        )
        np.testing.assert_allclose(np.asarray(resize_pos_embed(jnp.asarray(pos), *size)), want, atol=1e-6)


def test_bad_sizes_are_rejected_with_the_bad_value():
    with pytest.raises(ValueError, match="40x40 is not divisible by the model's total stride 16"):
        _shapes(create_model("iformer_s", **TINY), 40)
    with pytest.raises(ValueError, match="one entry per block \\(4 for depths"):
        _shapes(create_model("iformer_s", **{**TINY, "attention_heads": (1, 1)}), 32)
    with pytest.raises(ValueError, match="image_size=48 must be a multiple of 32"):
        _shapes(create_model("iformer_s", **{**TINY, "image_size": 48}), 32)


def _layer_norm(x, params, eps):
    x = np.asarray(x, np.float64)
    y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return y * np.asarray(params["scale"]) + np.asarray(params["bias"])


def test_features_feed_the_head_and_intermediates_are_the_stage_maps():
    model = create_model("iformer_s", num_classes=5, **TINY)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 32, 3)), jnp.float32)
    variables = _random_variables(model, x)
    logits, features, stages = jax.jit(
        lambda v, x: (
            model.apply(v, x),
            model.apply(v, x, method="features"),
            model.apply(v, x, method="intermediates"),
        )
    )(variables, x)
    assert [s.shape for s in stages] == [(2, 16, 8, 16), (2, 8, 4, 32), (2, 4, 2, 48), (2, 2, 1, 64)]
    np.testing.assert_array_equal(np.asarray(stages[-1]), np.asarray(features))
    # The head, in numpy: LayerNorm (eps 1e-6) -> mean over the map -> Linear.
    params = variables["params"]
    pooled = _layer_norm(features, params["norm"], 1e-6).mean(axis=(1, 2))
    want = pooled @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-4, atol=1e-4)


def test_every_shared_argument_name_is_accepted():
    shared = dict(
        depths=(1, 0, 0, 1),
        dims=(16, 32, 48, 64),
        num_heads=(2, 4, 4, 4),
        mlp_ratios=(2, 2, 3, 3),
        num_classes=7,
        drop_path_rate=0.1,
        head_dropout=0.2,
        image_size=64,
        dropout=0.1,
        attn_dropout=0.1,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    )
    model = create_model("iformer_s", attention_heads=(1, 3), **shared)
    params = _shapes(model, 64)["params"]
    assert params["pos_embed1"].shape == (1, 16, 16, 16)  # image_size shapes the position embeddings
    assert params["blocks1_0"]["mlp"]["fc1"]["kernel"].shape == (16, 32)  # mlp_ratios per stage
    assert params["blocks4_0"]["mlp"]["fc1"]["kernel"].shape == (64, 192)
    assert params["head"]["kernel"].shape == (64, 7)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 64, 64, 3)), jnp.float32)
    variables = _random_variables(model, x)
    run = jax.jit(
        lambda v, x, key: model.apply(
            v, x, train=True, mutable=["batch_stats"], rngs={"dropout": key, "drop_path": key}
        )[0]
    )
    first, second = run(variables, x, jax.random.PRNGKey(0)), run(variables, x, jax.random.PRNGKey(1))
    assert not np.allclose(np.asarray(first), np.asarray(second))  # the dropouts are live in training
