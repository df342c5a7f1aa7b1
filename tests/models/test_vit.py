"""ViT / DeiT: timm's parameter counts, the interface on token sequences, and the model's own checks.

Parity with timm (logits of converted weights): tests/interop/test_golden_timm_vit.py (fixtures made by timm).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import count_params, create_model, list_models, model_spec
from mixtok.models.vit import VisionTransformer, tokens_to_grid
from mixtok.reduction import TokenReduction

NAMES = list_models("vit_*") + list_models("deit_*")


def test_the_zoo_has_every_vit_and_deit_variant():
    assert sorted(NAMES) == sorted(
        [f"vit_{s}_patch16_224" for s in ("tiny", "small", "base", "large")]
        + [f"deit_{s}_patch16_224" for s in ("tiny", "small", "base")]
        + [f"deit_{s}_distilled_patch16_224" for s in ("tiny", "small", "base")]
    )


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_equal_timms(name):
    model = create_model(name)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
    assert count_params(shapes) == model_spec(name).official_params


def _tiny(**kwargs):
    return VisionTransformer(depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=5, **kwargs)


def test_features_are_the_token_sequence_the_head_reads():
    model = _tiny(distilled=True)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = model.init(jax.random.PRNGKey(0), x)
    features = model.apply(variables, x, method="features")
    maps = model.apply(variables, x, method="intermediates")
    assert features.shape == (2, 2 + 16, 16) and len(maps) == 2
    np.testing.assert_array_equal(maps[-1], features)
    np.testing.assert_allclose(model.apply(variables, features, method="forward_head"), model.apply(variables, x))
    assert tokens_to_grid(features, (4, 4), 2).shape == (2, 4, 4, 16)


def test_another_image_size_is_refused_naming_the_built_one():
    model = _tiny()
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    with pytest.raises(ValueError, match="built for 32x32 images .* image_size=48"):
        jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct((1, 48, 48, 3), jnp.float32))


def test_a_schedule_of_the_wrong_length_is_refused():
    model = _tiny(token_reduction=TokenReduction.constant("tome", 2, depth=3))
    with pytest.raises(ValueError, match="3 amounts but the model has 2 blocks"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))


def test_tome_counts_follow_the_official_cap():
    model = create_model("deit_small_patch16_224", token_reduction=TokenReduction.constant("tome", 16, depth=12))
    # 197 tokens, r = 16 per layer, capped at (N - 1) // 2 in the last layer (tome/merge.py).
    assert model.token_counts() == (181, 165, 149, 133, 117, 101, 85, 69, 53, 37, 21, 11)
