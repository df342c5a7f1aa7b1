"""Squeeze-excite against its numpy formula, timm's channel rounding, and PyTorch's default init."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers import SqueezeExcite, make_divisible


def test_make_divisible_rounds_to_the_nearest_multiple_and_adds_one_back_below_the_limit():
    assert [make_divisible(v) for v in (32, 208.0, 192, 20, 3)] == [32, 208, 192, 24, 8]
    assert make_divisible(11, 8) == 16  # 8 would lose more than 10% of 11
    assert make_divisible(11, 8, round_limit=0.0) == 8  # timm's SEModule rounding
    assert make_divisible(40, 32, min_value=64) == 64


def test_squeeze_excite_is_x_times_sigmoid_of_a_two_layer_bottleneck_on_the_mean():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 4, 40)), jnp.float32)
    module = SqueezeExcite(rd_ratio=0.25)
    params = nn.meta.unbox(module.init(jax.random.PRNGKey(0), x))["params"]
    assert params["fc1"]["kernel"].shape == (1, 1, 40, 8)  # make_divisible(10, 8, round_limit=0) = 8
    s = np.asarray(x, np.float64).mean(axis=(1, 2))
    s = np.maximum(s @ np.asarray(params["fc1"]["kernel"])[0, 0] + np.asarray(params["fc1"]["bias"]), 0)
    s = s @ np.asarray(params["fc2"]["kernel"])[0, 0] + np.asarray(params["fc2"]["bias"])
    want = np.asarray(x) * (1 / (1 + np.exp(-s)))[:, None, None, :]
    np.testing.assert_allclose(np.asarray(module.apply({"params": params}, x)), want, rtol=1e-5, atol=1e-6)


def test_default_init_is_pytorchs_uniform_for_weights_and_biases():
    x = jnp.zeros((1, 2, 2, 256))
    params = nn.meta.unbox(SqueezeExcite(rd_ratio=0.25).init(jax.random.PRNGKey(0), x))["params"]
    for name, fan_in in (("fc1", 256), ("fc2", 64)):
        bound = fan_in**-0.5
        for leaf in (params[name]["kernel"], params[name]["bias"]):
            assert float(jnp.max(jnp.abs(leaf))) <= bound
            assert abs(float(jnp.std(leaf)) - bound / np.sqrt(3)) < 0.3 * bound / np.sqrt(3)  # U(-b, b)'s std
    given = nn.meta.unbox(SqueezeExcite(kernel_init=jax.nn.initializers.ones).init(jax.random.PRNGKey(0), x))
    assert float(jnp.abs(given["params"]["fc1"]["bias"]).sum()) == 0.0
