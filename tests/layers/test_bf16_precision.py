"""With bfloat16 compute and float32 parameters, the shared layers round once, as PyTorch's autocast keeps them.

Each bfloat16 output is checked against the float32 (or float64) computation written in numpy on the same
bfloat16 inputs and float32 parameters, rounded to bfloat16 by ml_dtypes: nothing from JAX. The parameters
are chosen off the bfloat16 grid, and each test first checks that rounding them to bfloat16 before use (what
these layers did before) would change the answer, so the test tells the two apart.
"""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax.linen import meta

from mixtok.layers import LayerNorm, LayerScale, MlpHead, StarReLU, classifier
from mixtok.layers.linear import Dense

BF16 = ml_dtypes.bfloat16


def _bf16(a) -> np.ndarray:
    return np.asarray(a, np.float32).astype(BF16)


def _ulps(a, b) -> np.ndarray:
    """Distance in bfloat16 units in the last place between two bfloat16 arrays (0: the same value)."""

    def ordered(x):
        bits = np.asarray(x, BF16).view(np.uint16).astype(np.int32)
        return np.where(bits & 0x8000, -(bits & 0x7FFF), bits)

    return np.abs(ordered(a) - ordered(b))


def _inputs(shape, seed) -> np.ndarray:
    return _bf16(np.random.default_rng(seed).normal(size=shape) * 3.0)


def test_layer_scale_multiplies_by_the_float32_scale_and_rounds_once():
    x = _inputs((4, 8, 8, 32), 0)
    scale = (1.0 + np.random.default_rng(1).uniform(-0.3, 0.3, 32)).astype(np.float32)
    want = _bf16(x.astype(np.float32) * scale)
    rounded_scale_first = _bf16(x.astype(np.float32) * _bf16(scale).astype(np.float32))
    assert np.mean(_ulps(rounded_scale_first, want) > 0) > 0.1  # these inputs tell the two apart

    out = LayerScale(1.0).apply({"params": {"scale": scale}}, jnp.asarray(x))
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(_ulps(np.asarray(out), want), 0)


def test_star_relu_computes_in_float32_and_rounds_once():
    x = _inputs((4, 8, 8, 32), 2)
    scale, bias = np.array([0.8123], np.float32), np.array([-0.3071], np.float32)
    xf = x.astype(np.float32)
    want = _bf16(scale * np.square(np.maximum(xf, 0)) + bias)
    s16, b16 = (_bf16(p).astype(np.float32) for p in (scale, bias))
    rounded_params_first = _bf16(s16 * np.square(np.maximum(xf, 0)) + b16)
    assert np.mean(_ulps(rounded_params_first, want) > 0) > 0.1

    out = StarReLU(dtype=jnp.bfloat16).apply({"params": {"scale": scale, "bias": bias}}, jnp.asarray(x))
    assert out.dtype == jnp.bfloat16
    ulps = _ulps(np.asarray(out), want)
    assert ulps.max() <= 1 and np.mean(ulps == 0) > 0.99  # a fused multiply-add may round differently, rarely


def test_layer_norm_in_bfloat16_is_the_float32_norm_rounded_once():
    x = _bf16(np.random.default_rng(3).normal(size=(4, 8, 8, 64)) * 20 + 50)  # a mean far from zero
    rng = np.random.default_rng(4)
    params = {"scale": rng.uniform(0.5, 1.5, 64).astype(np.float32), "bias": rng.normal(size=64).astype(np.float32)}
    xf = x.astype(np.float64)
    mean, var = xf.mean(-1, keepdims=True), xf.var(-1, keepdims=True)
    want = _bf16((xf - mean) / np.sqrt(var + 1e-6) * params["scale"] + params["bias"])

    out = LayerNorm(epsilon=1e-6, dtype=jnp.bfloat16).apply({"params": params}, jnp.asarray(x))
    assert out.dtype == jnp.bfloat16
    ulps = _ulps(np.asarray(out), want)
    assert ulps.max() <= 1 and np.mean(ulps == 0) > 0.99  # float32 statistics vs float64: rare ties flip


def test_classifier_logits_are_not_rounded_to_bfloat16():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 256)).astype(np.float32)
    kernel = (rng.normal(size=(256, 100)) / 8).astype(np.float32)
    bias = rng.normal(size=100).astype(np.float32)
    params = {"params": {"kernel": kernel, "bias": bias}}
    # bfloat16 compute: inputs and kernel rounded to bfloat16, their product and the bias not.
    want = _bf16(x).astype(np.float64) @ _bf16(kernel).astype(np.float64) + bias
    out = np.asarray(classifier(100, name="fc", dtype=jnp.bfloat16).apply(params, jnp.asarray(x)))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert np.mean(_bf16(out).astype(np.float32) != out) > 0.9  # bfloat16 logits would all sit on its grid
    # float32 compute: the plain Dense layer, bit for bit.
    plain = Dense(100).apply(params, jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(classifier(100, name="fc").apply(params, jnp.asarray(x))), plain)


def test_mlp_head_in_bfloat16_returns_unrounded_float32_logits_of_its_bfloat16_hidden_layer():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 32)).astype(np.float32)
    module = MlpHead(num_classes=10, dtype=jnp.bfloat16)
    params = meta.unbox(module.init(jax.random.PRNGKey(0), x))["params"]
    params["fc2"]["bias"] = rng.normal(size=10).astype(np.float32)
    out, state = module.apply({"params": params}, jnp.asarray(x), capture_intermediates=True, mutable=["intermediates"])
    (hidden,) = state["intermediates"]["norm"]["__call__"]  # fc2's input: the norm's bfloat16 output
    assert hidden.dtype == jnp.bfloat16 and out.dtype == jnp.float32
    kernel = _bf16(params["fc2"]["kernel"]).astype(np.float64)
    want = np.asarray(hidden, np.float64) @ kernel + params["fc2"]["bias"]
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)
