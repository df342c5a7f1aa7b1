"""The DSM zoo: parameter counts by an independent formula, a tiny forward pass, grids, bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import count_params, create_model, list_models, model_spec
from mixtok.models.dsm import dsm_kwargs, stage_grids, stage_mixer_kwargs
from mixtok.models.dsm_variants import PAPER_PARAMS, SIZES  # importing it registers the dsm_* variants

NUM_FILTERS = 4


def _formula_count(depths, dims, image_size=224, num_classes=1000, filter_params=None):
    """DFFormer's layout counted by hand (timm-style sum of numel), with a pluggable base-filter size.

    `filter_params(h, w)` is the size of one block's base filters: DSM's real [h, w, 4] by default,
    DFFormer's complex [h, w//2 + 1, 4, 2] for comparison.
    """
    filter_params = filter_params or (lambda h, w: h * w * NUM_FILTERS)
    total = 3 * 7 * 7 * dims[0] + dims[0] + dims[0]  # stem conv (+ bias), LayerNorm scale
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:
            total += dims[i - 1] + 3 * 3 * dims[i - 1] * dim + dim  # LayerNorm scale, conv (+ bias)
        grid = image_size // (4 * 2**i)
        med, hidden = 2 * dim, int(0.25 * dim)
        mixer = dim * med + 2 + dim * hidden + 2 + hidden * NUM_FILTERS * med + filter_params(grid, grid) + med * dim
        mlp = dim * 4 * dim + 2 + 4 * dim * dim  # fc1, StarReLU (scale, bias), fc2
        res_scales = 2 * dim if i >= 2 else 0
        total += depth * (2 * dim + mixer + mlp + res_scales)  # two LayerNorm scales per block
    last = dims[-1]
    total += 2 * last  # head LayerNorm
    total += last * 4 * last + 4 * last + 2 * 4 * last + 4 * last * num_classes + num_classes  # MlpHead
    return total


def test_the_zoo_has_the_four_dfformer_sized_variants():
    assert list_models("dsm*") == ["dsm_b36", "dsm_m36", "dsm_s18", "dsm_s36"]


@pytest.mark.parametrize("name", sorted(f"dsm_{size}" for size in SIZES))
def test_parameter_count_equals_the_formula_of_the_dfformer_layout_with_real_dct_filters(name):
    depths, dims = SIZES[name[len("dsm_") :]]
    shapes = jax.eval_shape(create_model(name).init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    assert count_params(shapes) == _formula_count(depths, dims)
    # No count is claimed official: the paper's table is unknown (mixtok/models/dsm_variants.py).
    assert model_spec(name).official_params is None


def test_dsm_s18_differs_from_dfformer_s18_only_in_the_base_filters():
    depths, dims = SIZES["s18"]
    dfformer = _formula_count(depths, dims, filter_params=lambda h, w: h * (w // 2 + 1) * NUM_FILTERS * 2)
    real_minus_complex = sum(d * (g * g - g * (g // 2 + 1) * 2) * NUM_FILTERS for d, g in zip(depths, (56, 28, 14, 7)))
    assert _formula_count(depths, dims) == dfformer + real_minus_complex
    assert round(dfformer / 1e6) == 30  # DFFormer-S18 is reported as 30M parameters (DFFormer paper, Table 1)


@pytest.mark.parametrize("name,rounded", sorted(PAPER_PARAMS.items()))
def test_count_rounds_to_the_papers_reported_count(name, rounded):
    shapes = jax.eval_shape(create_model(name).init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    assert f"{count_params(shapes) / 1e6:.0f}M" == rounded


def test_stage_filters_are_shaped_for_the_224_px_token_grids():
    shapes = nn.meta.unbox(
        jax.eval_shape(create_model("dsm_s18").init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    )["params"]
    for i, grid in enumerate((56, 28, 14, 7)):
        weights = shapes[f"stages_{i}"]["blocks_0"]["token_mixer"]["spectrum_weights"]
        assert weights["base_filters"].shape == (grid, grid, NUM_FILTERS)


def test_tiny_model_returns_logits_and_every_stage_map():
    # Forward only: a four-stage backward pass costs ~10 s to compile on a 2-core CPU, and the
    # mixer's gradients are checked in tests/mixers/test_dsm.py.
    model = create_model(
        "dsm_s18", num_classes=5, depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), mixer_kwargs=stage_mixer_kwargs(64)
    )
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 64, 64, 3)), jnp.float32)
    # Random values in the shapes init gives: compiling the init itself (its RNG) costs ~15 s on CPU.
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))["params"]
    params = jax.tree_util.tree_map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.2, jnp.float32), shapes)
    logits = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, x)
    assert logits.shape == (2, 5) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    maps = jax.eval_shape(lambda p, x: model.apply({"params": p}, x, method="intermediates"), params, x)
    assert [m.shape for m in maps] == [(2, 16, 16, 8), (2, 8, 8, 8), (2, 4, 4, 16), (2, 2, 2, 16)]


def test_a_224_px_model_runs_on_other_image_sizes_by_resizing_its_filters():
    model = create_model("dsm_s18", num_classes=3, depths=(1, 1, 1, 1), dims=(8, 8, 16, 16))
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    logits = jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct((1, 256, 192, 3), jnp.float32))
    assert logits.shape == (1, 3)


def test_the_mixer_drops_into_any_metaformer_by_name():
    model = create_model("caformer_s18", token_mixers="dynamic_spectrum_mixer")
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    weights = nn.meta.unbox(shapes)["params"]["stages_3"]["blocks_0"]["token_mixer"]["spectrum_weights"]
    assert weights["base_filters"].shape == (7, 7, NUM_FILTERS)


def test_image_size_shapes_every_stage_filter():
    model = create_model("dsm_s18", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), image_size=384)
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 384, 384, 3))))["params"]
    grids = [
        shapes[f"stages_{i}"]["blocks_0"]["token_mixer"]["spectrum_weights"]["base_filters"].shape[:2] for i in range(4)
    ]
    assert grids == [(96, 96), (48, 48), (24, 24), (12, 12)]


def test_grids_follow_the_image_size_and_bad_sizes_are_rejected():
    assert stage_grids(384) == ((96, 96), (48, 48), (24, 24), (12, 12))
    assert stage_mixer_kwargs(64, num_filters=2)[3] == {"num_filters": 2, "grid_size": (2, 2)}
    with pytest.raises(ValueError, match="multiple of the total stride 32; got 100"):
        stage_grids(100)
    with pytest.raises(ValueError, match=r"4 stages; got depths \(2, 2, 6\)"):
        dsm_kwargs((2, 2, 6), (64, 128, 320))
