"""Parity with timm without torch: tiny models timm built and ran, converted by mixtok and run again.

tests/fixtures/timm holds, per family, a tiny model built with timm's own class (PoolFormer v1,
PoolFormerV2, IdentityFormer, ConvFormer, CAFormer, DaViT), its random weights as timm's state dict, a
seeded input, and timm's logits, pooled features and four stage outputs; manifest.json says which timm
made them and how. tools/make_timm_fixtures.py (torch + timm) writes them. Here mixtok's own converter
(`mixtok.interop.timm.convert`) turns the state dict into variables of the same tiny mixtok model, and the
mixtok model must reproduce every output timm computed.

Tolerances: logits within rtol = atol = 1e-5. Stage outputs and pooled features within rtol 1e-5 and an
atol of 1e-5 times the tensor's largest magnitude: float32 rounding grows with the size of the values summed,
and DaViT's stage outputs reach 70 (each block adds two convolutional position encodings to its residual),
where two correct float32 programs differ by some 1e-4.
"""

import functools
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import timm as timm_interop
from mixtok.models import count_params, create_model

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "timm")
TOLERANCE = 1e-5
STATE_DICT = "state_dict/"

# family: (the mixtok variant whose options the tiny model shares, options beyond timm's sizes).
# timm has no IdentityFormer variant; its tiny one is timm's PoolFormerV2 recipe with identity mixers,
# which is exactly what mixtok's identityformer_* are, so PoolFormerV2's key mapping converts it.
FAMILIES = {
    "poolformer": ("poolformer_s12", {}),
    "poolformerv2": ("poolformerv2_s12", {}),
    "identityformer": ("poolformerv2_s12", {"token_mixers": "identity"}),
    "convformer": ("convformer_s18", {}),
    "caformer": ("caformer_s18", {}),
    "davit": ("davit_tiny", {}),
}


@functools.cache
def manifest():
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        return json.load(f)


@functools.cache
def fixture(family):
    """The arrays of one family's fixture: timm's input, outputs and state dict (as numpy)."""
    with np.load(os.path.join(FIXTURES, manifest()["families"][family]["file"])) as data:
        return {key: data[key] for key in data.files}


def state_dict(family):
    return {k[len(STATE_DICT) :]: v for k, v in fixture(family).items() if k.startswith(STATE_DICT)}


def architecture(family):
    """(mixtok variant, num_classes, overrides) of the tiny model, read from timm's constructor arguments."""
    name, options = FAMILIES[family]
    kwargs = manifest()["families"][family]["timm_kwargs"]
    overrides = dict(options, depths=tuple(kwargs["depths"]))
    if family == "davit":  # timm's DaVit calls the widths embed_dims
        overrides.update(
            dims=tuple(kwargs["embed_dims"]), num_heads=tuple(kwargs["num_heads"]), window_size=kwargs["window_size"]
        )
    else:
        overrides["dims"] = tuple(kwargs["dims"])
    return name, kwargs["num_classes"], overrides


@functools.cache
def jitted_forward(family):
    """images NHWC -> (logits, intermediates): the tiny mixtok model's logits, its sown pooled features and
    its stage outputs from the feature interface (`method="intermediates"`), as `stage{i}`."""
    name, num_classes, overrides = architecture(family)
    model = create_model(name, num_classes=num_classes, **overrides)

    def forward(variables, images):
        logits, state = model.apply(variables, images, mutable=["intermediates"])
        stages = model.apply(variables, images, method="intermediates")
        return logits, {**state["intermediates"], **{f"stage{i}": (m,) for i, m in enumerate(stages)}}

    return jax.jit(forward)


def run_mixtok(family, variables):
    images = jnp.asarray(fixture(family)["input"].transpose(0, 2, 3, 1))  # timm NCHW -> mixtok NHWC
    logits, intermediates = jitted_forward(family)(variables, images)
    return np.asarray(logits), jax.tree.map(np.asarray, intermediates)


def convert(family):
    name, num_classes, overrides = architecture(family)
    return timm_interop.convert(name, state_dict(family), num_classes=num_classes, **overrides)


def assert_close_to_scale(actual, expected, what):
    """Within rtol 1e-5 and an atol of 1e-5 times the largest |expected| (float32 rounding's scale)."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, timm's {expected.shape}"
    np.testing.assert_allclose(
        actual, expected, rtol=TOLERANCE, atol=TOLERANCE * float(np.abs(expected).max()), err_msg=what
    )


# --- the fixtures themselves ------------------------------------------------------------------


def test_the_fixtures_cover_every_family_timm_implements():
    families = manifest()["families"]
    assert set(families) == set(FAMILIES)
    assert manifest()["timm"] and manifest()["torch"]
    # What the manifest says of each file is still true of it: no fixture was edited or swapped by hand.
    for family, entry in families.items():
        with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"], family


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_fixture_is_a_real_test(family):
    """Random weights, a non-square input, non-degenerate outputs, and every weight converted."""
    entry, arrays = manifest()["families"][family], fixture(family)
    height, width = arrays["input"].shape[2:]
    assert height != width  # a transposed height and width cannot pass
    assert arrays["logits"].std() > 0.1 and entry["min_branch_to_residual"] >= 0.05
    weights = state_dict(family)
    assert sum(v.size for v in weights.values()) == entry["parameters"]
    # No tensor is left at an init value: constant tensors (ones, zeros, 1e-5 scales) hide layout bugs.
    assert all(v.size == 1 or np.ptp(v) > 0 for v in weights.values())
    assert all(v.size > 1 or abs(float(v.reshape(-1)[0])) not in (0.0, 1.0) for v in weights.values())
    assert count_params(convert(family)) == entry["parameters"]


# --- parity -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_converted_tiny_model_reproduces_timms_logits_and_stage_outputs(family):
    expected = fixture(family)
    logits, intermediates = run_mixtok(family, convert(family))
    np.testing.assert_allclose(logits, expected["logits"], rtol=TOLERANCE, atol=TOLERANCE, err_msg="logits")
    assert_close_to_scale(intermediates["head"]["pre_logits"][0], expected["pre_logits"], "pooled features")
    for i in range(4):
        stage = intermediates[f"stage{i}"][0].transpose(0, 3, 1, 2)  # NHWC -> timm's NCHW
        assert_close_to_scale(stage, expected[f"stage{i}"], f"stage {i} output")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_flipped_convolution_kernel_is_caught(family):
    """The fixture has teeth: the stem's kernel flipped (a plausible layout bug) moves the logits far past 1e-5."""
    variables = convert(family)
    kernel = variables["params"]["stem"]["conv"]["kernel"]  # [kh, kw, in, out]
    variables["params"]["stem"]["conv"]["kernel"] = np.ascontiguousarray(kernel[::-1, ::-1])
    logits, _ = run_mixtok(family, variables)
    assert np.abs(logits - fixture(family)["logits"]).max() > 1e3 * TOLERANCE


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_to_timm_gives_back_timms_state_dict_exactly(family):
    name, _, overrides = architecture(family)
    exported = timm_interop.to_timm(name, convert(family), **overrides)
    expected = state_dict(family)
    assert set(exported) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_a_tiny_state_dict_does_not_fit_the_full_variant():
    """Without the tiny sizes the converter reports the misfit instead of building a wrong model."""
    with pytest.raises(ValueError, match="does not fit mixtok's caformer_s18") as info:
        timm_interop.convert("caformer_s18", state_dict("caformer"))
    assert "stem.conv.weight: expected (64, 3, 7, 7), got (16, 3, 7, 7)" in str(info.value)
    assert "stages.2.blocks.8.mlp.fc1.weight" in str(info.value)  # S18's ninth block of stage 3 is missing


def test_unhashable_overrides_convert_the_same():
    """Mixer options are dicts (unhashable); the converter builds its key table without its cache for them."""
    name, num_classes, overrides = architecture("caformer")
    default_heads = dict(overrides, mixer_kwargs=(None, None, {"head_dim": 32}, {"head_dim": 32}))
    variables = timm_interop.convert(name, state_dict("caformer"), num_classes=num_classes, **default_heads)
    expected = convert("caformer")
    assert jax.tree.structure(variables) == jax.tree.structure(expected)
    for actual, wanted in zip(jax.tree.leaves(variables), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(actual, wanted)
