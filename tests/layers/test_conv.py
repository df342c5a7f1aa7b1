"""conv_norm_act / ConvNormAct against a direct lax conv + numpy norm and activation, and their names."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from mixtok.layers import ConvBN, ConvNormAct, conv_norm_act


def _conv(x, kernel, stride, pad, groups=1):
    return np.asarray(
        jax.lax.conv_general_dilated(
            x,
            kernel,
            (stride, stride),
            ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=groups,
            precision="highest",
        ),
        np.float64,
    )


def _randomised(variables, seed=1):
    rng = np.random.default_rng(seed)
    out = jax.tree_util.tree_map(lambda v: jnp.asarray(rng.normal(size=v.shape), v.dtype), variables)
    if "batch_stats" in out:
        out["batch_stats"] = jax.tree_util.tree_map(lambda v: jnp.abs(v) + 0.5, out["batch_stats"])
    return out


class _FlatStem(nn.Module):
    """Two conv_norm_act layers named as a flat PyTorch Sequential would be (proj1, norm1, proj2, norm2)."""

    @nn.compact
    def __call__(self, x, *, train=False):
        x = conv_norm_act(
            x, 6, 3, stride=2, use_bias=True, activation="gelu", conv_name="proj1", norm_name="norm1", train=train
        )
        return conv_norm_act(x, 4, 1, conv_name="proj2", norm_name="norm2", train=train)


def test_conv_norm_act_creates_flat_layers_in_the_caller_and_equals_conv_bn_gelu():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 7, 3)), jnp.float32)
    module = _FlatStem()
    variables = _randomised(nn.meta.unbox(module.init(jax.random.PRNGKey(0), x)))
    params, stats = variables["params"], variables["batch_stats"]
    assert sorted(params) == ["norm1", "norm2", "proj1", "proj2"] and "bias" not in params["proj2"]

    def bn(z, name):
        return (z - np.asarray(stats[name]["mean"])) / np.sqrt(np.asarray(stats[name]["var"]) + 1e-5) * np.asarray(
            params[name]["scale"]
        ) + np.asarray(params[name]["bias"])

    h = bn(_conv(x, params["proj1"]["kernel"], 2, 1) + np.asarray(params["proj1"]["bias"]), "norm1")
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))  # exact GELU, PyTorch's
    want = bn(_conv(jnp.asarray(h, jnp.float32), params["proj2"]["kernel"], 1, 0), "norm2")
    np.testing.assert_allclose(np.asarray(module.apply(variables, x)), want, rtol=1e-4, atol=1e-4)


def test_conv_norm_act_with_layernorm_and_explicit_padding():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 8, 8, 4)), jnp.float32)
    module = ConvNormAct(5, 2, 2, padding=0, use_bias=True, norm="layernorm", norm_epsilon=1e-5, activation=None)
    variables = _randomised(nn.meta.unbox(module.init(jax.random.PRNGKey(0), x)))
    params = variables["params"]
    assert sorted(params) == ["conv", "norm"] and "batch_stats" not in variables
    z = _conv(x, params["conv"]["kernel"], 2, 0) + np.asarray(params["conv"]["bias"])
    want = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5) * np.asarray(
        params["norm"]["scale"]
    ) + np.asarray(params["norm"]["bias"])
    np.testing.assert_allclose(np.asarray(module.apply(variables, x)), want, rtol=1e-4, atol=1e-4)


def test_conv_bn_is_conv_norm_act_named_conv_bn_without_activation():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 6, 6, 8)), jnp.float32)
    variables = _randomised(nn.meta.unbox(ConvBN(8, 3, 1, 8).init(jax.random.PRNGKey(0), x)))
    assert sorted(variables["params"]) == ["bn", "conv"]
    assert variables["params"]["conv"]["kernel"].shape == (3, 3, 1, 8)  # depthwise
    y = ConvBN(8, 3, 1, 8).apply(variables, x)
    renamed = {
        "params": {"conv": variables["params"]["conv"], "norm": variables["params"]["bn"]},
        "batch_stats": {"norm": variables["batch_stats"]["bn"]},
    }
    np.testing.assert_array_equal(np.asarray(y), np.asarray(ConvNormAct(8, 3, 1, 8, activation=None).apply(renamed, x)))
    assert float(jnp.min(y)) < 0  # no activation


def test_unknown_norm_names_the_valid_ones():
    with pytest.raises(ValueError, match="batchnorm"):
        ConvNormAct(4, norm="batch_norm").init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 4)))
