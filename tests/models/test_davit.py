"""The DaViT zoo: official parameter counts, timm's parameter tree, a tiny training step, and logits parity
with timm (skipped without torch and timm)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import timm as timm_interop
from mixtok.models import (
    count_params,
    create_model,
    davit_variants,  # registers the variants (not yet imported by mixtok.models)
    list_models,
    model_spec,
)
from mixtok.models.davit import block_drop_path_rates
from tests.helpers import random_like

OFFICIAL_COUNTS = {  # dingmyu/davit timm/models/davit.py comments; timm 1.0.31 create_model, 1000 classes
    "davit_tiny": 28_360_168,
    "davit_small": 49_745_896,
    "davit_base": 87_954_408,
}
TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 16, 16), num_heads=(2, 2, 4, 4), window_size=3)


def _images(height, width=None, batch=2, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, height, width or height, 3)), jnp.float32)


def _shapes(model, x):
    return nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))


def _random_variables(model, x, seed=0):
    return random_like(_shapes(model, x), seed=seed, std=0.3, positive=())


def test_the_zoo_has_the_three_paper_variants_with_their_timm_names():
    assert list_models("davit*") == sorted(OFFICIAL_COUNTS) == sorted(davit_variants.SIZES)
    assert {model_spec(n).timm_name for n in OFFICIAL_COUNTS} == set(OFFICIAL_COUNTS)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_equals_the_official_count(name):
    shapes = _shapes(create_model(name), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
    assert count_params(shapes) == OFFICIAL_COUNTS[name] == model_spec(name).official_params
    assert set(shapes) == {"params"}  # no BatchNorm state


def test_parameter_tree_mirrors_timms_modules():
    params = _shapes(create_model("davit_tiny"), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))["params"]
    assert params["stem"]["conv"]["kernel"].shape == (7, 7, 3, 96)
    assert params["stages_1"]["downsample"]["conv"]["kernel"].shape == (2, 2, 96, 192)
    unit = params["stages_2"]["blocks_2"]
    assert set(unit) == {"0", "1"}  # timm blocks.2.0 (spatial) and blocks.2.1 (channel)
    assert set(unit["0"]) == {"cpe1", "norm1", "attn", "cpe2", "norm2", "mlp"}
    assert unit["1"]["cpe1"]["proj"]["kernel"].shape == (3, 3, 1, 384)  # depthwise position encoding
    assert unit["1"]["attn"]["qkv"]["kernel"].shape == (384, 1152) and "bias" in unit["1"]["attn"]["qkv"]
    assert params["head"]["norm"]["scale"].shape == (768,) and params["head"]["fc"]["kernel"].shape == (768, 1000)


def test_drop_path_rates_rise_over_every_block_as_in_the_official_code():
    rates = block_drop_path_rates(0.1, (1, 1, 3, 1))
    flat = [r for stage in rates for unit in stage for r in unit]
    np.testing.assert_allclose(flat, np.linspace(0, 0.1, 12))
    assert [len(stage) for stage in rates] == [1, 1, 3, 1]


def test_stages_pad_odd_sizes_and_run_at_strides_4_to_32():
    model = create_model("davit_tiny", num_classes=5, **TINY)
    x = jax.ShapeDtypeStruct((2, 30, 46, 3), jnp.float32)
    logits, state = jax.eval_shape(lambda v, x: model.apply(v, x, mutable=["intermediates"]), _shapes(model, x), x)
    assert logits.shape == (2, 5)
    stages = [
        m.shape for m in jax.eval_shape(lambda v, x: model.apply(v, x, method="intermediates"), _shapes(model, x), x)
    ]
    # 30 x 46 -> padded 32 x 48 -> 8 x 12 -> 4 x 6 -> 2 x 3 -> (padded 2 x 4) 1 x 2
    assert stages == [(2, 8, 12, 8), (2, 4, 6, 16), (2, 2, 3, 16), (2, 1, 2, 16)]
    assert state["intermediates"]["head"]["pre_logits"][0].shape == (2, 16)


def test_tiny_model_trains_with_drop_path_and_evaluates_deterministically():
    model = create_model("davit_tiny", num_classes=5, drop_path_rate=0.5, **TINY)
    x = _images(20, 28)
    variables = _random_variables(model, x)

    def loss(params, rng):
        logits = model.apply({"params": params}, x, train=True, rngs={"drop_path": rng})
        return jnp.sum(logits**2), logits

    grad_fn = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (_, logits), grads = grad_fn(variables["params"], jax.random.PRNGKey(1))
    assert logits.shape == (2, 5) and logits.dtype == jnp.float32
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["stem"]["conv"]["kernel"]).sum()) > 0
    assert float(jnp.abs(grads["stages_3"]["blocks_0"]["1"]["attn"]["qkv"]["kernel"]).sum()) > 0
    (_, other), _ = grad_fn(variables["params"], jax.random.PRNGKey(2))
    assert not np.allclose(np.asarray(logits), np.asarray(other))  # drop path draws per rng
    evaluate = jax.jit(model.apply)
    np.testing.assert_array_equal(np.asarray(evaluate(variables, x)), np.asarray(evaluate(variables, x)))


def test_the_spatial_mixer_can_be_swapped_for_global_attention():
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    windowed = create_model("davit_tiny", **TINY)
    global_ = create_model("davit_tiny", mixers=("multi_head_attention", "channel_attention"), **TINY)
    assert count_params(_shapes(global_, x)) == count_params(_shapes(windowed, x))
    assert jax.eval_shape(global_.apply, _shapes(global_, x), x).shape == (1, 1000)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(dims=(8, 16, 16)), "must have one entry per stage"),
        (dict(dims=(8, 16, 16, 18)), "18 is not a multiple of 4"),
        (dict(mixers=("window_atention", "channel_attention")), "Did you mean 'window_attention'"),
    ],
)
def test_bad_options_are_named(overrides, message):
    model = create_model("davit_tiny", **{**TINY, **overrides})
    with pytest.raises(ValueError, match=message):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))


# --- timm weights -------------------------------------------------------------------------------


def test_to_timm_writes_timms_keys_and_convert_restores_them_exactly():
    params = jax.tree.map(
        lambda s: np.random.default_rng(0).normal(size=s.shape).astype(np.float32),
        _shapes(create_model("davit_tiny"), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)),
    )
    state_dict = timm_interop.to_timm("davit_tiny", params)
    assert len(state_dict) == 212  # timm 1.0.31 davit_tiny state_dict()
    samples = {
        "stem.conv.weight": (96, 3, 7, 7),
        "stages.1.downsample.conv.weight": (192, 96, 2, 2),
        "stages.2.blocks.1.0.attn.qkv.weight": (1152, 384),
        "stages.0.blocks.0.1.cpe2.proj.weight": (96, 1, 3, 3),
        "stages.3.blocks.0.1.mlp.fc1.weight": (3072, 768),
        "head.norm.weight": (768,),
        "head.fc.weight": (1000, 768),
    }
    assert {k: state_dict[k].shape for k in samples} == samples
    restored = timm_interop.convert("davit_tiny.msft_in1k", state_dict)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(params)):
        np.testing.assert_array_equal(got, want)


def test_an_official_davit_checkpoint_gets_a_hint():
    with pytest.raises(ValueError, match="official dingmyu/davit checkpoint"):
        timm_interop.convert("davit_tiny", {"patch_embeds.0.proj.weight": np.zeros((96, 3, 7, 7), np.float32)})


def test_logits_match_timm_with_random_weights():
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    reference = timm.create_model("davit_tiny", pretrained=False).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random everywhere, so that no branch hides behind its init value
        for key, param in reference.named_parameters():
            if key.endswith("bias"):
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
            elif param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) / param[0].numel() ** 0.5)
            else:
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))
    # 62 x 50 pads in the stem (to 64 x 52), in the downsamplings (13 and 7 are odd) and in the windows.
    images = torch.randn(2, 3, 62, 50, generator=generator)
    with torch.no_grad():
        expected = reference(images).numpy()
    assert expected.std() > 0.1, "degenerate reference logits"
    variables = timm_interop.convert("davit_tiny", reference.state_dict())
    logits = jax.jit(create_model("davit_tiny").apply)(variables, jnp.asarray(images.numpy().transpose(0, 2, 3, 1)))
    relative = float(np.abs(np.asarray(logits) - expected).max() / np.abs(expected).max())
    print(f"davit_tiny: max |logit difference| / max |logit| = {relative:.2e}")
    assert relative <= 1e-4
