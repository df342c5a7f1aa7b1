"""PoNet models: the LRA classifiers' counts against the official code's, the sequence classifier against a numpy
composition of its parts (the mixer by the token-by-token form of tests/mixers/test_pooling_network.py), the grid
model's counts against a hand formula, and PoNet as a MetaFormer token mixer override."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import count_params, create_model
from mixtok.models.ponet import PoNetForSequenceClassification
from mixtok.models.ponet_variants import LRA_OFFICIAL_PARAMS
from tests.helpers import random_variables
from tests.mixers.test_pooling_network import DIM, HEADS, _numpy_sequence


@pytest.mark.parametrize("name", sorted(LRA_OFFICIAL_PARAMS))
def test_lra_counts_equal_the_official_model(name):
    # lxchtan/PoNet @ cc9a29a3 ModelForSC(lra_config[task]) built with torch: sum(p.numel()).
    count, classes = LRA_OFFICIAL_PARAMS[name]
    model = create_model(name, num_classes=classes)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 16), jnp.int32))
    assert count_params(variables) == count


def _layer_norm(x, p, eps=1e-5):
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return x * p["scale"] + p["bias"]


def _gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_classifier_equals_the_official_layers_composed_by_hand(pooling):
    vocab, length, segments = 12, 11, 3
    model = PoNetForSequenceClassification(
        depths=(1,),
        dims=(DIM,),
        num_heads=HEADS,
        vocab_size=vocab,
        max_seq_len=16,
        segment_num=segments,
        pooling=pooling,
        num_classes=3,
    )
    tokens = np.random.default_rng(0).integers(1, vocab - 1, size=(2, length)).astype(np.int32)
    tokens[0, 7:] = 0  # padding, masked as LRA's ids != 0
    variables = random_variables(model, jnp.asarray(tokens), seed=3, std=0.4)
    out = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(tokens)))

    p = jax.tree.map(lambda t: np.asarray(t, np.float64), variables["params"])
    ids = tokens
    if pooling == "cls":  # append_cls: the last vocabulary id first, the last token dropped
        ids = np.concatenate([np.full((2, 1), vocab - 1), tokens[:, :-1]], axis=1)
    mask = (ids != 0).astype(np.float64)
    x = p["word_embeddings"][ids] + p["position_embeddings"][:length]
    block = p["transformer_0"]
    mixed = _numpy_sequence({"params": block["mha"]}, _layer_norm(x, block["norm1"]), segments, mask)
    x = x + mixed
    mlp = block["mlpblock"]
    hidden = _gelu(_layer_norm(x, block["norm2"]) @ mlp["fc1"]["kernel"] + mlp["fc1"]["bias"])
    x = x + hidden @ mlp["fc2"]["kernel"] + mlp["fc2"]["bias"]
    x = _layer_norm(x, p["norm"]) * mask[:, :, None]
    pooled = x.mean(1) if pooling == "mean" else x[:, 0]
    head0, head2 = p["seq_classifer_mlpblock_0"], p["seq_classifer_mlpblock_2"]
    logits = np.maximum(pooled @ head0["kernel"] + head0["bias"], 0) @ head2["kernel"] + head2["bias"]
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-5)


def test_classifier_refuses_images_and_overlong_sequences():
    model = create_model("ponet_lra_listops", num_classes=10, max_seq_len=8)
    with pytest.raises(ValueError, match="integer token ids"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="Sequence length 9 exceeds max_seq_len=8"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 9), jnp.int32))


def _vit_hand_count(depth, dim, classes=1000, patch=16, image=224, mlp_ratio=4):
    """Patch conv + position embedding + depth x (2 LayerNorms + 6 Linear C -> C + MLP) + head."""
    block = 4 * dim + 6 * (dim * dim + dim) + 2 * mlp_ratio * dim * dim + mlp_ratio * dim + dim
    stem = patch * patch * 3 * dim + dim + (image // patch) ** 2 * dim
    return stem + depth * block + 2 * dim + dim * classes + classes


def test_grid_model_counts_equal_the_hand_formula():
    # ponet_vit_s differs only in width (ponet_variants.VIT_SIZES); one trace of the smaller one suffices.
    variables = jax.eval_shape(create_model("ponet_vit_ti").init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    assert count_params(variables) == _vit_hand_count(12, 192) == 6_606_376


def test_pooling_network_is_a_metaformer_token_mixer_at_any_grid():
    model = create_model(
        "poolformer_s12", num_classes=5, depths=(1, 1, 1, 1), dims=(32, 32, 64, 64), token_mixers="pooling_network"
    )
    # 96 px: grids 24, 12, 6, 3 (an odd row count and width in the last stage).
    logits = jax.eval_shape(model.init_with_output, jax.random.PRNGKey(0), jnp.zeros((1, 96, 96, 3)))[0]
    assert logits.shape == (1, 5)
