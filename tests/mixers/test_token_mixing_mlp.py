"""MLP-Mixer's token-mixing MLP (`token_mixing_mlp`) against its einsum form, and as a MetaFormer override."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import mixers
from mixtok.mixers.mlp_mixer import MLP_BIAS_STD, TokenMixingMLP
from mixtok.models import create_model
from tests.helpers import random_variables

DIM = 6


def images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def einsum_form(params, x):
    """y[b, m, c] = sum_k W2[k, m] GELU(sum_n W1[n, k] x[b, n, c] + b1[k]) + b2[m], over tokens n, m (numpy)."""
    p = jax.tree.map(np.asarray, params)
    batch, height, width, channels = x.shape
    tokens = np.asarray(x, np.float64).reshape(batch, height * width, channels)
    hidden = np.einsum("bnc,nk->bkc", tokens, p["fc1"]["kernel"]) + p["fc1"]["bias"][None, :, None]
    hidden = np.asarray(jax.nn.gelu(jnp.asarray(hidden, jnp.float32), approximate=False), np.float64)
    out = np.einsum("bkc,kn->bnc", hidden, p["fc2"]["kernel"]) + p["fc2"]["bias"][None, :, None]
    return out.reshape(batch, height, width, channels)


def test_registered_and_mixes_tokens_per_channel_as_the_einsum_form():
    assert mixers.get("token_mixing_mlp") is TokenMixingMLP
    x = images((2, 3, 5, DIM))  # 15 tokens on a non-square grid: a transposed token order would fail
    mixer = TokenMixingMLP(DIM)
    variables = random_variables(mixer, x, std=0.5)
    y = jax.jit(mixer.apply)(variables, x)
    assert variables["params"]["fc1"]["kernel"].shape == (15, 3)  # hidden = int(0.5 * dim)
    np.testing.assert_allclose(np.asarray(y), einsum_form(variables["params"], x), rtol=1e-5, atol=1e-5)


def test_each_channel_is_mixed_alone():
    """Changing channel 0 of the input changes channel 0 of the output only: one MLP per channel, no channel mixing."""
    x = images((1, 2, 4, DIM), seed=1)
    mixer = TokenMixingMLP(DIM, hidden_dim=5)
    variables = random_variables(mixer, x, std=0.5)
    moved = x.at[..., 0].add(1.0)
    delta = np.abs(np.asarray(mixer.apply(variables, moved) - mixer.apply(variables, x)))
    assert delta[..., 0].max() > 1e-2 and delta[..., 1:].max() == 0.0


def test_gradient_matches_the_einsum_forms():
    x = images((2, 2, 3, DIM), seed=2)
    mixer = TokenMixingMLP(DIM, hidden_dim=4)
    variables = random_variables(mixer, x, std=0.5)

    def reference(params, x):
        batch, height, width, channels = x.shape
        tokens = x.reshape(batch, height * width, channels)
        hidden = jnp.einsum("bnc,nk->bkc", tokens, params["fc1"]["kernel"]) + params["fc1"]["bias"][None, :, None]
        hidden = jax.nn.gelu(hidden, approximate=False)
        out = jnp.einsum("bkc,kn->bnc", hidden, params["fc2"]["kernel"]) + params["fc2"]["bias"][None, :, None]
        return out.reshape(x.shape)

    loss = lambda f: lambda p, x: jnp.sum(jnp.sin(f(p, x)))  # noqa: E731
    got = jax.jit(jax.grad(loss(lambda p, x: mixer.apply({"params": p}, x)), argnums=(0, 1)))(variables["params"], x)
    want = jax.grad(loss(reference), argnums=(0, 1))(variables["params"], x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_initialisation_is_timms_xavier_uniform_and_tiny_biases():
    mixer = TokenMixingMLP(64)  # 100 tokens -> 32 hidden
    params = nn.meta.unbox(mixer.init(jax.random.PRNGKey(0), jnp.zeros((1, 10, 10, 64)))["params"])
    kernel = np.asarray(params["fc1"]["kernel"])
    bound = np.sqrt(6.0 / (100 + 32))  # torch.nn.init.xavier_uniform_
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.95 * bound
    assert abs(kernel.std() - bound / np.sqrt(3)) < 0.05 * bound
    bias = np.asarray(params["fc2"]["bias"])
    assert 0 < np.abs(bias).max() < 10 * MLP_BIAS_STD


def test_another_token_count_is_one_clear_error():
    x = images((1, 4, 4, DIM))
    mixer = TokenMixingMLP(DIM)  # sized from the input at init: 16 tokens
    variables = mixer.init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match=r"built for 16 tokens, but the input is 4x8 = 32 tokens"):
        mixer.apply(variables, images((1, 4, 8, DIM)))
    with pytest.raises(ValueError, match=r"built for 9 tokens, but the input is 4x4 = 16 tokens"):
        TokenMixingMLP(DIM, num_tokens=9).init(jax.random.PRNGKey(0), x)


def test_as_a_metaformer_override_image_size_gives_each_stage_its_token_count():
    """token_mixers=(..., "token_mixing_mlp"): the stage's grid comes from image_size like RandomMixing's."""
    model = create_model(
        "poolformer_s12",
        depths=(1, 1, 1, 1),
        dims=(8, 8, 16, 16),
        token_mixers=("pooling", "pooling", "token_mixing_mlp", "token_mixing_mlp"),
        image_size=64,
    )
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    params = jax.tree.map(lambda s: s.shape, nn.meta.unbox(shapes["params"]))
    assert params["stages_2"]["blocks_0"]["token_mixer"]["fc1"]["kernel"] == (16, 8)  # (64 / 16)^2 tokens
    assert params["stages_3"]["blocks_0"]["token_mixer"]["fc1"]["kernel"] == (4, 8)  # (64 / 32)^2 tokens
    with pytest.raises(ValueError, match="built for 16 tokens"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 96, 96, 3), jnp.float32))
