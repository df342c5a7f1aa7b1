"""The CAS-ViT zoo: official parameter counts, the distillation head, BatchNorm state, training step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import (
    cas_vit_variants,  # registers the variants (not yet imported by mixtok.models)
    count_params,
    create_model,
    list_models,
    model_spec,
)
from tests.helpers import random_variables

OFFICIAL_COUNTS = {  # Tianfang-Zhang/CAS-ViT rcvit_*; 1000 classes; (distillation=False, distillation=True)
    "cas_vit_xs": (2_979_700, 3_200_700),
    "cas_vit_s": (5_507_224, 5_764_224),
    "cas_vit_m": (12_036_520, 12_421_520),
    "cas_vit_t": (21_250_120, 21_763_120),
}
TINY = dict(depths=(1, 1, 1, 1), dims=(8, 8, 16, 16))


def _shapes(model, size=224):
    return nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3))))


def _random_variables(module, x, seed=0):
    return random_variables(module, x, seed=seed)


def test_the_zoo_has_the_four_official_variants():
    assert list_models("cas_vit*") == sorted(OFFICIAL_COUNTS) == sorted(cas_vit_variants.SIZES)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_equals_the_official_count(name):
    without, with_dist = OFFICIAL_COUNTS[name]
    shapes = _shapes(create_model(name))
    assert count_params(shapes) == without == model_spec(name).official_params
    assert count_params(_shapes(create_model(name, distillation=True))) == with_dist
    assert "mean" in shapes["batch_stats"]["network_0_0"]["attn"]["oper_q_0"]["block_1"]  # BN state, not params


def test_tiny_model_trains_updates_batch_stats_and_evaluates_with_running_statistics():
    # One block (stage 1) keeps the compile short; stages 2-4 still run their downsampling Embedding.
    model = create_model("cas_vit_xs", num_classes=5, depths=(1, 0, 0, 0), dims=(8, 8, 16, 16))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = _random_variables(model, x)

    def loss(params, batch_stats):
        logits, state = model.apply(
            {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(logits**2), (logits, state["batch_stats"])

    (_, (logits, new_stats)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
        variables["params"], variables["batch_stats"]
    )
    assert logits.shape == (2, 5) and logits.dtype == jnp.float32
    for leaf in jax.tree_util.tree_leaves(grads):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    assert float(jnp.abs(grads["network_0_0"]["attn"]["qkv"]["kernel"]).sum()) > 0
    old, new = variables["batch_stats"]["patch_embed_1"], new_stats["patch_embed_1"]
    assert not np.allclose(np.asarray(old["mean"]), np.asarray(new["mean"]))
    evaluate = jax.jit(model.apply)
    trained = {"params": variables["params"], "batch_stats": new_stats}
    first, second = evaluate(trained, x), evaluate(trained, x.at[1].set(-3.0 * x[1]))
    np.testing.assert_allclose(np.asarray(first[0]), np.asarray(second[0]), rtol=1e-5, atol=1e-6)


def test_distillation_head_averages_in_eval_and_returns_both_heads_in_training():
    model = create_model("cas_vit_xs", num_classes=3, distillation=True, **TINY)
    x = jax.ShapeDtypeStruct((2, 64, 32, 3), jnp.float32)
    variables = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))
    assert jax.eval_shape(model.apply, variables, x).shape == (2, 3)
    (head, dist), _ = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
    assert head.shape == dist.shape == (2, 3)
    stages = [m.shape for m in jax.eval_shape(lambda v, x: model.apply(v, x, method="intermediates"), variables, x)]
    assert stages == [(2, 16, 8, 8), (2, 8, 4, 8), (2, 4, 2, 16), (2, 2, 1, 16)]


def test_bad_tables_are_rejected_with_the_values():
    with pytest.raises(ValueError, match=r"one depth per stage dim; got depths \(1, 1\) and dims \(8, 8, 16\)"):
        _shapes(create_model("cas_vit_xs", depths=(1, 1), dims=(8, 8, 16)), 32)
    with pytest.raises(ValueError, match="dims\\[0\\] must be even.*got 9"):
        _shapes(create_model("cas_vit_xs", dims=(9, 8, 16, 16)), 32)
