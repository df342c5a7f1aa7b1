"""Hydra ViT: counts against a hand formula, the forward against an explicit composition of its parts, other
resolutions, and Hydra as a MetaFormer token mixer override."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.mixers.hydra import Hydra
from mixtok.models import count_params, create_model
from mixtok.models.hydra_vit import HydraViT
from tests.helpers import random_variables


def _hand_count(depth, dim, classes=1000, patch=16, image=224, mlp_ratio=4, d_state=64, expand=2, headdim=64):
    """Parameters by hand: patch conv, position embedding, depth x (2 LayerNorms + Hydra + MLP), head."""
    d_inner, conv_dim = expand * dim, expand * dim + 4 * d_state
    heads = d_inner // headdim
    hydra = (
        dim * (2 * d_inner + 4 * d_state + 2 * heads)  # in_proj (no bias)
        + conv_dim * 7  # depthwise conv1d, d_conv 7
        + conv_dim  # its bias
        + 3 * heads  # dt_bias, A_log, D
        + d_inner * heads  # fc_D (no bias)
        + d_inner  # gated RMSNorm weight
        + d_inner * dim  # out_proj (no bias)
    )
    mlp = 2 * mlp_ratio * dim * dim + mlp_ratio * dim + dim
    stem = patch * patch * 3 * dim + dim + (image // patch) ** 2 * dim
    return stem + depth * (4 * dim + hydra + mlp) + 2 * dim + dim * classes + classes


@pytest.mark.parametrize(
    ("name", "depth", "dim"), [("hydra_vit_ti", 12, 192), ("hydra_vit_s", 12, 384), ("hydra_vit_b", 12, 768)]
)
def test_parameter_counts_equal_the_hand_formula(name, depth, dim):
    # No official count exists (goombalab/hydra has no image model): the formula is the independent check.
    variables = jax.eval_shape(create_model(name).init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    assert count_params(variables) == _hand_count(depth, dim)
    if name == "hydra_vit_b":
        assert count_params(variables) == 104_120_392


def _layer_norm(x, p, eps=1e-6):
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return x * p["scale"] + p["bias"]


def test_forward_equals_its_parts_composed_by_hand():
    model = HydraViT(
        depths=(2,),
        dims=(16,),
        patch_size=8,
        image_size=32,
        mlp_ratios=(2,),
        d_state=4,
        headdim=8,
        num_classes=5,
        chunk_size=4,
    )
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    variables = random_variables(model, jnp.asarray(images), seed=1)
    logits = np.asarray(jax.jit(model.apply)(variables, images), np.float64)
    p = jax.tree.map(lambda t: np.asarray(t, np.float64), nn.meta.unbox(variables)["params"])
    # Patch embedding as a matrix product on 8x8 patches, plus the position embedding.
    patches = images.astype(np.float64).reshape(2, 4, 8, 4, 8, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 4, 4, -1)
    kernel = p["patch_embed"]["proj"]["kernel"].reshape(-1, 16)
    x = patches @ kernel + p["patch_embed"]["proj"]["bias"] + p["pos_embed"]
    mix = jax.jit(Hydra(dim=16, d_state=4, headdim=8, chunk_size=4).apply)  # tested against its matrix
    for i in range(2):
        b = p[f"blocks_{i}"]
        y = _layer_norm(x, b["norm1"])
        y = np.asarray(mix({"params": b["mixer"]}, jnp.asarray(y, jnp.float32)), np.float64)
        x = x + y
        h = _layer_norm(x, b["norm2"]) @ b["mlp"]["fc1"]["kernel"] + b["mlp"]["fc1"]["bias"]
        h = 0.5 * h * (1 + np.vectorize(math.erf)(h / np.sqrt(2)))  # GELU (erf)
        x = x + h @ b["mlp"]["fc2"]["kernel"] + b["mlp"]["fc2"]["bias"]
    pooled = _layer_norm(x.mean(axis=(1, 2)), p["head"]["norm"])
    want = pooled @ p["head"]["fc"]["kernel"] + p["head"]["fc"]["bias"]
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4)


def test_other_resolution_resizes_the_position_embedding():
    kwargs = dict(depths=(1,), dims=(16,), patch_size=8, mlp_ratios=(2,), d_state=4, headdim=8, num_classes=3)
    small, large = HydraViT(image_size=32, **kwargs), HydraViT(image_size=48, **kwargs)
    images = jnp.asarray(np.random.default_rng(2).normal(size=(1, 48, 48, 3)), jnp.float32)
    variables = nn.meta.unbox(random_variables(small, images[:, :32, :32], seed=3))
    resized = jax.image.resize(variables["params"]["pos_embed"], (1, 6, 6, 16), "bilinear", antialias=False)
    converted = {"params": {**variables["params"], "pos_embed": resized}}
    got = jax.jit(small.apply)(variables, images)  # a 32-px model on 48-px images
    np.testing.assert_allclose(np.asarray(got), np.asarray(jax.jit(large.apply)(converted, images)), atol=1e-5)
    with pytest.raises(ValueError, match="not divisible by the model's total stride 8"):
        jax.eval_shape(small.init, jax.random.PRNGKey(0), jnp.zeros((1, 36, 36, 3)))


def test_hydra_as_a_metaformer_token_mixer_override():
    model = create_model(
        "poolformer_s12",
        num_classes=3,
        depths=(1, 1, 1, 1),
        dims=(16, 16, 32, 32),
        token_mixers=("pooling", "pooling", "hydra", "hydra"),
        mixer_kwargs=(None, None, dict(d_state=4, headdim=8), dict(d_state=4, headdim=8)),
    )
    images = jnp.asarray(np.random.default_rng(4).normal(size=(1, 32, 32, 3)), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), images)  # the mixer itself: tests/mixers
    mixer_params = jax.tree_util.tree_flatten_with_path(nn.meta.unbox(variables)["params"])[0]
    names = {jax.tree_util.keystr(path) for path, _ in mixer_params}
    assert sum("'in_proj'" in n and "'token_mixer'" in n for n in names) == 2  # stages 3 and 4
    assert sum("'conv1d_kernel'" in n for n in names) == 2 and jax.eval_shape(model.apply, variables, images).shape == (
        1,
        3,
    )
