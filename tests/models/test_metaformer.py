"""The MetaFormer zoo: parameter counts equal timm's / the official ones, overrides, and bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import count_params, create_model, list_models, model_spec
from mixtok.models.metaformer_variants import BASELINES_PAPER, POOLFORMER_PAPER

# The two MetaFormer papers' variants; every other family counts its own (tests/models/test_<family>.py), and
# tests/test_docs.py checks each registered count against docs/facts/official_counts.md.
ALL = [name for name in list_models() if model_spec(name).paper in (POOLFORMER_PAPER, BASELINES_PAPER)]


def test_the_zoo_has_every_variant_of_both_papers():
    sizes = {"poolformer": ["s12", "s24", "s36", "m36", "m48"], "convformer": ["s18", "s36", "m36", "b36"]}
    sizes.update({f: sizes["poolformer"] for f in ("poolformerv2", "identityformer", "randformer")})
    sizes["caformer"] = sizes["convformer"]
    expected = sorted(f"{family}_{size}" for family, family_sizes in sizes.items() for size in family_sizes)
    papers = (POOLFORMER_PAPER, BASELINES_PAPER)
    assert [n for n in list_models() if model_spec(n).paper in papers] == expected


@pytest.mark.parametrize("name", ALL)
def test_parameter_count_equals_the_official_count(name):
    model = create_model(name)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    assert count_params(shapes) == model_spec(name).official_params


def test_counts_quoted_in_the_issue():
    # timm 1.0.31, `sum(p.numel() for p in model.parameters())`
    assert model_spec("poolformer_s12").official_params == 11_915_176
    assert model_spec("convformer_s18").official_params == 26_774_448
    assert model_spec("caformer_s18").official_params == 26_341_656


def _small(name, **overrides):
    return create_model(name, num_classes=7, depths=(1, 1, 1, 1), dims=(16, 24, 32, 32), **overrides)


@pytest.mark.parametrize(
    "name",
    ["poolformer_s12", "poolformerv2_s12", "convformer_s18", "caformer_s18", "identityformer_s12", "randformer_s12"],
)
def test_each_family_returns_logits_and_has_gradients(name):
    model = _small(name)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 64, 3)), jnp.float32)
    variables = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), x))
    logits = jax.jit(model.apply)(variables, x)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32

    def loss(params):
        return jnp.sum(model.apply({**variables, "params": params}, x) ** 2)

    grads = jax.jit(jax.grad(loss))(variables["params"])
    stem = grads["stem"]["conv"]["kernel"]
    assert bool(jnp.all(jnp.isfinite(stem))) and float(jnp.abs(stem).sum()) > 0


def test_per_stage_mixer_is_an_override_not_new_code():
    base = create_model("poolformer_s12")
    hybrid = create_model("poolformer_s12", token_mixers=("pooling", "pooling", "pooling", "attention"))
    x = jnp.zeros((1, 224, 224, 3))
    base_shapes = jax.eval_shape(base.init, jax.random.PRNGKey(0), x)
    hybrid_shapes = nn.meta.unbox(jax.eval_shape(hybrid.init, jax.random.PRNGKey(0), x))
    stage4 = hybrid_shapes["params"]["stages_3"]["blocks_0"]["token_mixer"]
    assert stage4["qkv"]["kernel"].shape == (512, 3 * 512) and stage4["proj"]["kernel"].shape == (512, 512)
    # Two stage-4 blocks, each with qkv (512 x 1536) and proj (512 x 512), no biases.
    assert count_params(hybrid_shapes) - count_params(base_shapes) == 2 * (512 * 1536 + 512 * 512)


def test_intermediates_are_the_stage_outputs_at_strides_4_to_32():
    model = _small("poolformerv2_s12")
    x = jnp.zeros((1, 64, 64, 3))
    variables = model.init(jax.random.PRNGKey(0), x)
    maps = model.apply(variables, x, method="intermediates")
    assert [m.shape for m in maps] == [(1, 16, 16, 16), (1, 8, 8, 24), (1, 4, 4, 32), (1, 2, 2, 32)]


def test_image_size_sizes_resolution_dependent_mixers_and_is_checked_otherwise():
    randformer = _small("randformer_s12", image_size=96)
    frozen = jax.eval_shape(randformer.init, jax.random.PRNGKey(0), jnp.zeros((1, 96, 96, 3)))["frozen"]
    assert frozen["stages_3"]["blocks_0"]["token_mixer"]["random_matrix"].shape == (9, 9)  # (96 / 32)^2 tokens
    pooling = _small("poolformerv2_s12", image_size=64)
    with pytest.raises(ValueError, match="built with image_size=64 but got 96x96 images"):
        jax.eval_shape(pooling.init, jax.random.PRNGKey(0), jnp.zeros((1, 96, 96, 3)))
    with pytest.raises(ValueError, match="image_size must be a positive multiple of the total stride 32 .*got 100"):
        jax.eval_shape(
            _small("poolformerv2_s12", image_size=100).init, jax.random.PRNGKey(0), jnp.zeros((1, 96, 96, 3))
        )


def test_mlp_ratios_widen_each_stage_mlp():
    shapes = nn.meta.unbox(
        jax.eval_shape(
            _small("poolformerv2_s12", mlp_ratios=(1, 2, 3, 4)).init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))
        )
    )["params"]
    hidden = [shapes[f"stages_{i}"]["blocks_0"]["mlp"]["fc1"]["kernel"].shape for i in range(4)]
    assert hidden == [(16, 16), (24, 48), (32, 96), (32, 128)]


def test_bfloat16_compute_stays_close_to_float32():
    model = _small("caformer_s18")
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 64, 64, 3)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    ref = jax.jit(model.apply)(variables, x)
    out = jax.jit(model.clone(dtype=jnp.bfloat16).apply)(variables, x)
    assert out.dtype == jnp.float32  # logits come back in float32
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=0.05 * float(jnp.abs(ref).max()) + 1e-3)


def test_randformer_runs_at_the_resolution_it_was_initialised_at():
    model = _small("randformer_s12")
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
    assert variables["frozen"]["stages_2"]["blocks_0"]["token_mixer"]["random_matrix"].shape == (16, 16)
    with pytest.raises(ValueError, match="initialised at"):
        model.apply(variables, jnp.zeros((1, 96, 96, 3)))


def test_image_size_the_strides_cannot_divide_is_rejected():
    model = create_model("poolformer_s12")
    with pytest.raises(ValueError, match="Image size 100x100 is not divisible by the model's total stride 32"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 100, 100, 3)))


def test_unknown_model_lists_close_matches():
    with pytest.raises(ValueError, match="Unknown model 'poolformer_s13'. Did you mean .*poolformer_s12"):
        create_model("poolformer_s13")


def test_unknown_override_lists_the_valid_arguments():
    with pytest.raises(ValueError, match="drop_path_rates'. Did you mean 'drop_path_rate'"):
        create_model("caformer_s18", drop_path_rates=0.1)


def test_per_stage_option_with_the_wrong_length_is_rejected():
    model = create_model("poolformer_s12", token_mixers=("pooling", "attention"))
    with pytest.raises(ValueError, match="token_mixers has 2 entries .* 4 stages"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))


def test_unknown_mixer_in_a_stage_is_rejected_with_close_matches():
    model = create_model("poolformer_s12", token_mixers="atention")
    with pytest.raises(ValueError, match="Did you mean 'attention'"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
