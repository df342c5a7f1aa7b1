"""The AFFNet zoo: official parameter counts, the official block wiring, BatchNorm state, bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import (
    affnet_variants,  # registers the variants (not yet imported by mixtok.models)
    count_params,
    create_model,
    list_models,
    model_spec,
)
from mixtok.models.affnet import AFFTransformerBlock, ConvNormAct, make_divisible
from tests.helpers import random_variables

OFFICIAL_COUNTS = {  # microsoft/TokenMixers affnet modes xx_small, x_small, small; 1000 classes
    "affnet_et": 1_436_264,
    "affnet_t": 2_654_232,
    "affnet": 5_568_696,
}
# One AFF Block (in layer 3) keeps the compile of the training step on a 2-core CPU to seconds; layers 4-5
# still run their stride-2 block, norm, projection and fusion.
TINY = dict(depths=(1, 1, 1, 0, 0), dims=(8, 8, 16, 16, 16), ffn_dims=(32, 32, 32), expand_ratio=2.0)


def _images(height, width=None, batch=2, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, height, width or height, 3)), jnp.float32)


def _random_variables(module, x, seed=0):
    """Variables of `module` drawn in numpy on the shapes of `module.init` (jax.eval_shape): compiling a
    whole model's init costs a 2-core CPU more than the rest of its test (the init is tested per layer)."""
    return random_variables(module, x, seed=seed)


def test_the_zoo_has_the_three_paper_variants():
    assert list_models("affnet*") == sorted(OFFICIAL_COUNTS) == sorted(affnet_variants.SIZES)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_equals_the_official_count(name):
    shapes = jax.eval_shape(create_model(name).init, jax.random.PRNGKey(0), jnp.zeros((1, 256, 256, 3)))
    assert count_params(shapes) == OFFICIAL_COUNTS[name] == model_spec(name).official_params
    params = nn.meta.unbox(shapes["params"])
    # Every released variant fuses local and global features in layers 3-5 (a 1x1 conv on 2C channels) ...
    for layer, channels in zip((3, 4, 5), create_model(name).dims[2:]):
        assert params[f"layer_{layer}_1"]["fusion"]["conv"]["kernel"].shape == (1, 1, 2 * channels, channels)
        assert params[f"layer_{layer}_1"]["conv_proj"]["conv"]["kernel"].shape == (1, 1, channels, channels)
    # ... and expands to min(4 C, 960) channels before pooling.
    last = create_model(name).dims[-1]
    assert params["conv_1x1_exp"]["conv"]["kernel"].shape == (1, 1, last, min(4 * last, 960))
    # BatchNorm running statistics are state, not parameters.
    assert "mean" in nn.meta.unbox(shapes["batch_stats"])["conv_1"]["norm"]


def test_inverted_residual_width_is_rounded_as_mobilenet_rounds_it():
    assert [make_divisible(v) for v in (16 * 2, 104 * 2.0, 48 * 4, 20, 3)] == [32, 208, 192, 24, 8]


def test_convolutions_are_initialised_as_pytorch_initialises_them():
    # The official reset_parameters is a no-op, so convs keep PyTorch's U(+-1/sqrt(fan_in)), BN 1 / 0.
    x = jnp.zeros((1, 8, 8, 32))
    for groups, fan_in in [(1, 9 * 32), (32, 9)]:
        layer = ConvNormAct(64 if groups == 1 else 32, 3, groups=groups)
        params = nn.meta.unbox(jax.jit(layer.init)(jax.random.PRNGKey(0), x))["params"]
        kernel = np.asarray(params["conv"]["kernel"])
        assert np.abs(kernel).max() <= 1 / np.sqrt(fan_in)
        np.testing.assert_allclose(kernel.std(), 1 / np.sqrt(3 * fan_in), rtol=0.15)
        np.testing.assert_array_equal(params["norm"]["scale"], 1.0)
        np.testing.assert_array_equal(params["norm"]["bias"], 0.0)


def test_tiny_model_trains_updates_batch_stats_and_evaluates_with_running_statistics():
    model = create_model("affnet_et", num_classes=5, **TINY)
    x = _images(64)
    variables = _random_variables(model, x)

    def loss(params, batch_stats):
        logits, state = model.apply(
            {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(logits**2), (logits, state["batch_stats"])

    grad_fn = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (_, (logits, new_stats)), grads = grad_fn(variables["params"], variables["batch_stats"])
    assert logits.shape == (2, 5) and logits.dtype == jnp.float32
    for leaf in jax.tree_util.tree_leaves(grads):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    assert float(jnp.abs(grads["conv_1"]["conv"]["kernel"]).sum()) > 0
    assert float(jnp.abs(grads["layer_3_1"]["global_rep_0"]["filter"]["w1"]).sum()) > 0
    old, new = variables["batch_stats"]["conv_1"]["norm"], new_stats["conv_1"]["norm"]
    assert not np.allclose(np.asarray(old["mean"]), np.asarray(new["mean"]))
    # Evaluation uses the running statistics: no mutable state, and a sample's logits ignore the rest of the batch.
    evaluate = jax.jit(lambda v, x: model.apply(v, x))
    trained = {"params": variables["params"], "batch_stats": new_stats}
    first = evaluate(trained, x)
    second = evaluate(trained, x.at[1].set(-x[1] * 3.0))
    np.testing.assert_allclose(np.asarray(first[0]), np.asarray(second[0]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(first[1]), np.asarray(second[1]))


def test_stages_run_at_strides_4_to_32_on_non_square_images():
    model = create_model("affnet_et", num_classes=5, **TINY)
    x = jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32)
    variables = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))
    logits, state = jax.eval_shape(lambda v, x: model.apply(v, x, mutable=["intermediates"]), variables, x)
    assert logits.shape == (2, 5)
    stages = [m.shape for m in jax.eval_shape(lambda v, x: model.apply(v, x, method="intermediates"), variables, x)]
    assert stages == [(2, 32, 48, 8), (2, 16, 24, 8), (2, 8, 12, 16), (2, 4, 6, 16), (2, 2, 3, 16)]
    assert state["intermediates"]["pre_logits"][0].shape == (2, 64)


def test_block_runs_norm1_mlp_norm2_filter_with_the_official_residuals():
    # With the MobileNetV2 branch's last BatchNorm zeroed and the filter's weights zeroed (mask 0), both
    # inner modules are their own residual, so Block(x) = x + norm2(norm1(x)); the norms are GroupNorm(1).
    x = np.random.default_rng(1).normal(size=(1, 4, 6, 8)).astype(np.float32) * 2.0 + 1.0
    block = AFFTransformerBlock(ffn_dim=16)
    variables = _random_variables(block, x)
    params = jax.tree_util.tree_map(np.asarray, variables["params"])
    params["mlp"]["red_1x1"]["norm"] = {k: np.zeros_like(v) for k, v in params["mlp"]["red_1x1"]["norm"].items()}
    params["filter"] = {k: np.zeros_like(v) for k, v in params["filter"].items()}
    rng = np.random.default_rng(2)
    for norm in ("norm1", "norm2"):
        params[norm] = {
            "scale": rng.uniform(0.5, 1.5, 8).astype(np.float32),
            "bias": rng.normal(size=8).astype(np.float32),
        }

    def group_norm(a, p):
        a = a.astype(np.float64)
        return (a - a.mean()) / np.sqrt(a.var() + 1e-5) * p["scale"] + p["bias"]

    expected = x + group_norm(group_norm(x[0], params["norm1"]), params["norm2"])[None]
    got = jax.jit(block.apply)({"params": params, "batch_stats": variables["batch_stats"]}, x)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_bad_configurations_and_image_sizes_are_rejected_with_the_bad_value():
    init = lambda model, size: jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))  # noqa
    with pytest.raises(ValueError, match="100x100 is not divisible by the model's total stride 32"):
        init(create_model("affnet_et"), 100)
    with pytest.raises(ValueError, match=r"Unknown AFFNet attn_norm 'layernorm'.*Did you mean 'layer_norm'"):
        init(create_model("affnet_et", attn_norm="layernorm"), 64)
    with pytest.raises(ValueError, match=r"multiples of 8 .*got dims \(32, 48, 64, 100, 144\)"):
        init(create_model("affnet_et", dims=(32, 48, 64, 100, 144)), 64)
    with pytest.raises(ValueError, match=r"5 layers .*got depths \(1, 3, 2, 4, 3\) and dims \(32, 48, 64, 104\)"):
        init(create_model("affnet_et", dims=(32, 48, 64, 104)), 64)
    with pytest.raises(ValueError, match=r"3 ffn_dims and 3 fuse flags; got ffn_dims \(128, 208\)"):
        init(create_model("affnet_et", ffn_dims=(128, 208)), 64)
    with pytest.raises(ValueError, match="built with image_size=256 but got 64x64 images"):
        init(create_model("affnet_et", image_size=256), 64)
