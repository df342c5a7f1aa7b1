"""MLP-Mixer (mixer_s16_224, _b16_224, _l16_224): timm's counts, a numpy forward, timm's init, the fixed grid."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import count_params, create_model, model_spec
from tests.helpers import random_variables

# timm 1.0.31: sum(p.numel() for p in timm.create_model(name).parameters()), 224 px, 1000 classes.
TIMM_COUNTS = {"mixer_s16_224": 18_528_264, "mixer_b16_224": 59_880_472, "mixer_l16_224": 208_196_168}
TINY = dict(depths=(2,), dims=(8,), patch_size=4, image_size=(8, 12), num_classes=3)  # a 2 x 3 patch grid


@pytest.mark.parametrize("name", sorted(TIMM_COUNTS))
def test_parameter_count_equals_timms_at_224(name):
    model = create_model(name)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
    assert count_params(shapes) == TIMM_COUNTS[name] == model_spec(name).official_params
    assert model_spec(name).timm_name == name


def numpy_forward(params, images, patch):
    """timm's MlpMixer.forward written out in numpy (float64), from the paper's equations."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    batch, height, width, _ = images.shape
    h, w = height // patch, width // patch
    x = np.asarray(images, np.float64).reshape(batch, h, patch, w, patch, 3).transpose(0, 1, 3, 2, 4, 5)
    kernel = p["stem"]["proj"]["kernel"]  # [patch, patch, 3, C]: a patch's (row, column, colour) dot a kernel
    x = x.reshape(batch, h * w, patch * patch * 3) @ kernel.reshape(patch * patch * 3, -1)
    x = x + p["stem"]["proj"]["bias"]

    def norm(v, q):
        mean, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mean) / np.sqrt(var + 1e-6) * q["scale"] + q["bias"]

    def gelu(v):
        return np.asarray(jax.nn.gelu(jnp.asarray(v, jnp.float32), approximate=False), np.float64)

    def mlp(v, q):
        return gelu(v @ q["fc1"]["kernel"] + q["fc1"]["bias"]) @ q["fc2"]["kernel"] + q["fc2"]["bias"]

    blocks = []
    for i in range(len([k for k in p if k.startswith("blocks_")])):
        q = p[f"blocks_{i}"]
        # Y = X + W2 s(W1 LN(X)) over the tokens, then Z = Y + W4 s(W3 LN(Y)) over the channels
        x = x + mlp(norm(x, q["norm1"]).transpose(0, 2, 1), q["mlp_tokens"]).transpose(0, 2, 1)
        x = x + mlp(norm(x, q["norm2"]), q["mlp_channels"])
        blocks.append(x.reshape(batch, h, w, -1))
    logits = norm(x, p["norm"]).mean(1) @ p["head"]["kernel"] + p["head"]["bias"]
    return logits, blocks


def test_forward_and_every_block_equal_the_numpy_form_on_a_non_square_grid():
    model = create_model("mixer_s16_224", **TINY)
    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 12, 3)), jnp.float32)
    variables = random_variables(model, images, std=0.5)
    logits = jax.jit(model.apply)(variables, images)
    blocks = model.apply(variables, images, method="intermediates")
    want_logits, want_blocks = numpy_forward(variables["params"], images, patch=4)
    assert np.asarray(logits).std() > 0.1
    np.testing.assert_allclose(np.asarray(logits), want_logits, rtol=1e-4, atol=1e-4)
    for got, want in zip(blocks, want_blocks, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_gradient_agrees_with_a_finite_difference():
    model = create_model("mixer_s16_224", **TINY)
    images = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 12, 3)), jnp.float32)
    params = random_variables(model, images, std=0.5)["params"]
    value_and_grad = jax.jit(jax.value_and_grad(lambda p: jnp.sum(jnp.sin(model.apply({"params": p}, images)))))
    _, grads = value_and_grad(params)
    loss = lambda p: value_and_grad(p)[0]  # noqa: E731  (one compiled function for every evaluation)
    direction = jax.tree.map(lambda g: jnp.asarray(np.random.default_rng(2).normal(size=g.shape), g.dtype), grads)
    step = 1e-3
    shifted = lambda s: jax.tree.map(lambda p, d: p + s * step * d, params, direction)  # noqa: E731
    numeric = (loss(shifted(1.0)) - loss(shifted(-1.0))) / (2 * step)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    assert abs(float(analytic)) > 0.1
    np.testing.assert_allclose(float(numeric), float(analytic), rtol=2e-2)
    token_grad = grads["blocks_0"]["mlp_tokens"]["fc1"]["kernel"]
    assert token_grad.shape == (6, 4) and float(jnp.abs(token_grad).max()) > 0


def test_initialisation_is_timms():
    """Head zero; stem lecun-normal (trunc at +-2 std, std sqrt(1 / fan_in)); MLP biases ~1e-6; LayerNorm 1 / 0."""
    model = create_model("mixer_s16_224", depths=(1,), dims=(64,), patch_size=16, image_size=32)
    params = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"])
    assert not np.any(np.asarray(params["head"]["kernel"])) and not np.any(np.asarray(params["head"]["bias"]))
    stem = np.asarray(params["stem"]["proj"]["kernel"])
    std = np.sqrt(1.0 / (16 * 16 * 3))
    assert abs(stem.std() - std) < 0.03 * std and np.abs(stem).max() <= 2 * std / 0.87962566103423978 + 1e-7
    block = params["blocks_0"]
    assert 0 < np.abs(np.asarray(block["mlp_channels"]["fc1"]["bias"])).max() < 1e-5
    np.testing.assert_array_equal(np.asarray(block["norm1"]["scale"]), 1.0)
    fc1 = np.asarray(block["mlp_channels"]["fc1"]["kernel"])  # xavier-uniform 64 -> 256
    assert np.sqrt(6 / (64 + 256)) * 0.95 < np.abs(fc1).max() <= np.sqrt(6 / (64 + 256))


def test_another_image_size_is_one_clear_error_naming_the_expected_size():
    model = create_model("mixer_b16_224")
    with pytest.raises(ValueError, match=r"built for 224x224 images .* got 256x256 images; feed 224x224"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32))
    with pytest.raises(ValueError, match="not divisible by the model's total stride 16"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 200, 200, 3), jnp.float32))


def test_built_for_another_resolution_it_has_that_many_token_weights():
    model = create_model("mixer_s16_224", image_size=(160, 256))  # 10 x 16 patches
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 160, 256, 3), jnp.float32))
    assert nn.meta.unbox(shapes)["params"]["blocks_0"]["mlp_tokens"]["fc1"]["kernel"].shape == (160, 256)
