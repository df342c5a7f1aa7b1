"""The S2AFormer-layout zoo: counts by an independent formula, a tiny forward pass, BatchNorm state, bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.mixers.s2aformer import compressed_qk_dim
from mixtok.models import count_params, create_model, list_models, model_spec
from mixtok.models.s2aformer_variants import MLP_RATIOS, PAPER_PARAMS, REDUCTIONS, SIZES  # registers the variants

STEM_DIM = 32


def _formula_count(depths, dims, heads, reductions=REDUCTIONS, mlp_ratios=MLP_RATIOS, num_classes=1000):
    """The layout of mixtok/models/s2aformer.py counted by hand (timm-style sum of numel; BN stats excluded)."""
    s = STEM_DIM
    total = 3 * 3 * 3 * s + 2 * s + 2 * (3 * 3 * s * s + 2 * s)  # stem: 3 convs (no bias) + BN affines
    prev = s
    for depth, dim, head, r, ratio in zip(depths, dims, heads, reductions, mlp_ratios):
        total += 2 * 2 * prev * dim + dim + 2 * dim  # patch embedding conv 2x2 + LayerNorm
        d, hidden = compressed_qk_dim(dim, head, 0.25), int(ratio * dim)
        local_conv = 9 * dim + dim
        norms = 3 * 2 * dim
        reduce = (r * r * dim + dim + 2 * dim) if r > 1 else 0  # depth-wise r x r conv + LayerNorm
        ssa = reduce + 2 * (dim * d + d) + 2 * (dim * dim + dim)  # query, key; value, proj
        lim = 2 * (dim * dim + dim) + 9 * dim + dim
        mlp = dim * hidden + hidden + hidden * dim + dim
        total += depth * (local_conv + norms + ssa + lim + mlp)
        prev = dim
    return total + 2 * prev + prev * num_classes + num_classes  # head LayerNorm + Linear


def test_the_zoo_has_the_pvt_sized_stand_ins_and_claims_no_official_count():
    assert list_models("s2aformer*") == sorted(SIZES)
    for name in SIZES:
        assert model_spec(name).official_params is None
        assert "stand-in" in model_spec(name).paper


@pytest.mark.parametrize("name", sorted(SIZES))
def test_parameter_count_equals_the_formula_of_the_layout(name):
    shapes = jax.eval_shape(create_model(name).init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    assert count_params(shapes) == _formula_count(*SIZES[name])


@pytest.mark.parametrize("name,rounded", sorted(PAPER_PARAMS.items()))
def test_count_rounds_to_the_papers_reported_count(name, rounded):
    shapes = jax.eval_shape(create_model(name).init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    assert f"{count_params(shapes) / 1e6:.1f}M" == rounded


def _tiny_model(**overrides):
    kwargs = dict(
        num_classes=5,
        depths=(1, 1, 1, 1),
        dims=(8, 8, 16, 16),
        num_heads=(1, 2, 2, 4),
        reductions=(4, 2, 1, 1),
        stem_dim=4,
    )
    return create_model("s2aformer_pvt_b0", **{**kwargs, **overrides})


def test_tiny_model_returns_logits_sows_every_stage_and_updates_batch_stats_in_training():
    model = _tiny_model()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 64, 64, 3)), jnp.float32)
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))
    variables = jax.tree_util.tree_map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.2, jnp.float32), shapes)
    variables["batch_stats"] = jax.tree_util.tree_map(jnp.abs, variables["batch_stats"])  # positive variances
    logits, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))(variables, x)
    assert logits.shape == (2, 5) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    assert [state["intermediates"][f"stage{i}"][0].shape for i in range(4)] == [
        (2, 16, 16, 8),
        (2, 8, 8, 8),
        (2, 4, 4, 16),
        (2, 2, 2, 16),
    ]

    train_logits, updates = model.apply(
        variables,
        x,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": jax.random.PRNGKey(1), "drop_path": jax.random.PRNGKey(2)},
    )
    assert train_logits.shape == (2, 5)
    old, new = variables["batch_stats"]["stem_0"]["bn"]["mean"], updates["batch_stats"]["stem_0"]["bn"]["mean"]
    assert not np.allclose(np.asarray(old), np.asarray(new))


def test_bad_image_sizes_and_stage_settings_are_rejected_by_name():
    model = _tiny_model()
    with pytest.raises(ValueError, match="Image size 48x40 is not divisible by the model's total stride 32"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 48, 40, 3)))
    with pytest.raises(ValueError, match="4 stages; depths has 3 entries"):
        jax.eval_shape(_tiny_model(depths=(1, 1, 1)).init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
    with pytest.raises(ValueError, match=r"num_heads \(1, 3, 2, 4\) must divide dims"):
        jax.eval_shape(_tiny_model(num_heads=(1, 3, 2, 4)).init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))


def _random_variables(model, x, seed=0):
    rng = np.random.default_rng(seed)
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))
    variables = jax.tree_util.tree_map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.2, jnp.float32), shapes)
    variables["batch_stats"] = jax.tree_util.tree_map(jnp.abs, variables["batch_stats"])  # positive variances
    return variables


def test_features_feed_the_head_and_intermediates_are_the_stage_maps():
    model = _tiny_model()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 96, 3)), jnp.float32)
    variables = _random_variables(model, x)
    logits, features, stages = jax.jit(
        lambda v, x: (
            model.apply(v, x),
            model.apply(v, x, method="features"),
            model.apply(v, x, method="intermediates"),
        )
    )(variables, x)
    assert [s.shape for s in stages] == [(2, 16, 24, 8), (2, 8, 12, 8), (2, 4, 6, 16), (2, 2, 3, 16)]
    np.testing.assert_array_equal(np.asarray(stages[-1]), np.asarray(features))
    # The head, in numpy: mean over the map -> LayerNorm (eps 1e-6) -> Linear.
    params = variables["params"]
    pooled = np.asarray(features, np.float64).mean(axis=(1, 2))
    normed = (pooled - pooled.mean(-1, keepdims=True)) / np.sqrt(pooled.var(-1, keepdims=True) + 1e-6) * np.asarray(
        params["head_norm"]["scale"]
    ) + np.asarray(params["head_norm"]["bias"])
    want = normed @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-4, atol=1e-4)


def test_every_shared_argument_name_is_accepted_and_image_size_is_checked():
    shared = dict(
        depths=(1, 1, 1, 1),
        dims=(8, 8, 16, 16),
        num_heads=(1, 2, 2, 4),
        mlp_ratios=(2, 2, 2, 2),
        num_classes=7,
        drop_path_rate=0.1,
        head_dropout=0.1,
        image_size=64,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    )
    model = _tiny_model(**shared)
    params = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))["params"]
    assert params["stage0_block0"]["mlp"]["fc1"]["kernel"].shape == (8, 16)
    assert params["head"]["kernel"].shape == (16, 7)
    with pytest.raises(ValueError, match="built with image_size=64 but got 96x96 images"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 96, 96, 3)))
