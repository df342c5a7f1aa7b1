"""The FFNet zoo: official training-time and fused parameter counts, inference fusion, BatchNorm state."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import (
    count_params,
    create_model,
    ffnet_variants,  # registers the variants (not yet imported by mixtok.models)
    list_models,
    model_spec,
)
from mixtok.models.ffnet import fuse_ffnet
from tests.helpers import random_variables

OFFICIAL_COUNTS = {  # ysj9909/FFNet ffnet_*; 1000 classes; (training-time, after export_model.replace_batchnorm)
    "ffnet_1": (13_775_656, 13_660_152),
    "ffnet_2": (27_208_408, 26_908_440),
    "ffnet_3": (48_817_896, 48_330_632),
    "ffnet_4": (79_868_968, 79_200_360),
}
# One block per stage; channel-mixer ks 7 and token-mixer ks (3, 7) exercise both RepVGGDW and plain convs.
TINY = dict(
    depths=(1, 1, 1, 1),
    dims=(8, 16, 16, 32),
    in_dim=8,
    kernel_sizes=(3, 7, 3, 7),
    kernel_sizes1=(3, 3, 7, 7),
    kernel_sizes2=(3, 7, 7, 7),
    layer_scale_init=1e-5,
)


def _shapes(model, size=224):
    return nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3))))


def _random_variables(module, x, seed=0):
    return random_variables(module, x, seed=seed, positive_suffixes=("layer_scale",))


def test_the_zoo_has_the_four_official_variants():
    assert list_models("ffnet*") == sorted(OFFICIAL_COUNTS) == sorted(ffnet_variants.SIZES)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_counts_equal_the_official_training_and_fused_counts(name):
    # The official reports 256 px; the counts do not depend on the resolution.
    training, fused = OFFICIAL_COUNTS[name]
    shapes = _shapes(create_model(name))
    assert count_params(shapes) == training == model_spec(name).official_params
    assert count_params(_shapes(create_model(name, fused=True))) == fused
    # FFNet-3/4 have layer scale; FFNet-1/2 do not.
    has_scale = "token_mixer_0_layer_scale" in shapes["params"]["stages_0_0"]
    assert has_scale == (name in ("ffnet_3", "ffnet_4"))


def test_fused_model_equals_the_training_form_in_eval_mode():
    model = create_model("ffnet_1", num_classes=5, **TINY)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 32, 3)), jnp.float32)
    variables = _random_variables(model, x)
    fused_model = create_model("ffnet_1", num_classes=5, fused=True, **TINY)
    fused_variables = fuse_ffnet(variables)
    shapes = nn.meta.unbox(jax.eval_shape(fused_model.init, jax.random.PRNGKey(0), x))
    assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(fused_variables)
    expected = jax.jit(model.apply)(variables, x)
    got = jax.jit(fused_model.apply)(fused_variables, x)
    np.testing.assert_allclose(
        np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-5 * float(jnp.abs(expected).max())
    )


def test_tiny_model_trains_updates_batch_stats_and_evaluates_with_running_statistics():
    # One block (stage 4, with RepVGGDW mixers) keeps the compile short; stages 2-3 still run their PatchMerging.
    model = create_model("ffnet_1", num_classes=5, **{**TINY, "depths": (0, 0, 0, 1)})
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = _random_variables(model, x)

    def loss(params, batch_stats):
        logits, state = model.apply(
            {"params": params, "batch_stats": batch_stats},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"drop_path": jax.random.PRNGKey(1)},
        )
        return jnp.sum(logits**2), (logits, state["batch_stats"])

    (_, (logits, new_stats)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
        variables["params"], variables["batch_stats"]
    )
    assert logits.shape == (2, 5) and logits.dtype == jnp.float32
    for leaf in jax.tree_util.tree_leaves(grads):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    old, new = variables["batch_stats"]["patch_embed_0"]["bn"], new_stats["patch_embed_0"]["bn"]
    assert not np.allclose(np.asarray(old["mean"]), np.asarray(new["mean"]))
    evaluate = jax.jit(model.apply)
    trained = {"params": variables["params"], "batch_stats": new_stats}
    first, second = evaluate(trained, x), evaluate(trained, x.at[1].set(-3.0 * x[1]))
    np.testing.assert_allclose(np.asarray(first[0]), np.asarray(second[0]), rtol=1e-5, atol=1e-6)


def test_bad_image_sizes_and_tables_are_rejected_with_the_values():
    with pytest.raises(ValueError, match="100x100 is not divisible by the model's total stride 32"):
        _shapes(create_model("ffnet_1"), 100)
    with pytest.raises(ValueError, match=r"one entry per stage.*depths \(1, 1\)"):
        _shapes(create_model("ffnet_1", depths=(1, 1)), 64)
    with pytest.raises(ValueError, match=r"odd and positive.*kernel_sizes \(3, 4, 3, 3\)"):
        _shapes(create_model("ffnet_1", kernel_sizes=(3, 4, 3, 3)), 64)
