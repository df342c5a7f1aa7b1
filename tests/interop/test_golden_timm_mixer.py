"""MLP-Mixer parity with timm without torch: a tiny timm MlpMixer's weights converted by mixtok and run again.

tests/fixtures/timm/mixer.npz (made by `python tools/make_timm_fixtures.py --mixer`, described by
mixer_manifest.json) holds a tiny model built with timm's own `MlpMixer` (2 blocks of width 32, 8-px patches
of a 32 x 48 image: a 4 x 6 grid of 24 tokens), its random weights as timm's state dict, a seeded input,
and timm's logits, pooled features and both blocks' outputs. `mixtok.interop.timm.convert` turns the state
dict into variables of the same mixtok model, which must reproduce every output (rtol = atol = 1e-5, the
block outputs' atol scaled by their largest magnitude, as tests/interop/test_golden_timm.py does).
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
NAME = "mixer_s16_224"  # the variant whose options the tiny model shares; its sizes are overridden


@functools.cache
def manifest():
    with open(os.path.join(FIXTURES, "mixer_manifest.json")) as f:
        return json.load(f)


@functools.cache
def fixture():
    with np.load(os.path.join(FIXTURES, manifest()["file"])) as data:
        return {key: data[key] for key in data.files}


def state_dict():
    return {k[len(STATE_DICT) :]: v for k, v in fixture().items() if k.startswith(STATE_DICT)}


def overrides():
    """The tiny model's mixtok arguments, read from timm's constructor arguments in the manifest."""
    kwargs = manifest()["timm_kwargs"]
    return dict(
        depths=(kwargs["num_blocks"],),
        dims=(kwargs["embed_dim"],),
        patch_size=kwargs["patch_size"],
        image_size=tuple(kwargs["img_size"]),
    )


def convert():
    return timm_interop.convert(NAME, state_dict(), num_classes=manifest()["timm_kwargs"]["num_classes"], **overrides())


@functools.cache
def jitted_forward():
    model = create_model(NAME, num_classes=manifest()["timm_kwargs"]["num_classes"], **overrides())

    def forward(variables, images):
        logits, state = model.apply(variables, images, mutable=["intermediates"])
        blocks = model.apply(variables, images, method="intermediates")
        return logits, state["intermediates"]["pre_logits"][0], blocks

    return jax.jit(forward)


def run_mixtok(variables):
    images = jnp.asarray(fixture()["input"].transpose(0, 2, 3, 1))  # timm NCHW -> mixtok NHWC
    logits, pre_logits, blocks = jitted_forward()(variables, images)
    return np.asarray(logits), np.asarray(pre_logits), [np.asarray(b) for b in blocks]


def assert_close_to_scale(actual, expected, what):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, timm's {expected.shape}"
    np.testing.assert_allclose(
        actual, expected, rtol=TOLERANCE, atol=TOLERANCE * float(np.abs(expected).max()), err_msg=what
    )


def test_the_fixture_is_unedited_and_a_real_test():
    entry, arrays = manifest(), fixture()
    with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"]
    assert entry["timm_class"] == "timm.models.mlp_mixer.MlpMixer" and entry["timm"]
    height, width = arrays["input"].shape[2:]
    assert height != width  # a transposed patch grid cannot pass
    assert arrays["logits"].std() > 0.1 and entry["min_branch_to_residual"] >= 0.05
    weights = state_dict()
    assert sum(v.size for v in weights.values()) == entry["parameters"]
    assert all(v.size == 1 or np.ptp(v) > 0 for v in weights.values())  # nothing left at its init value
    assert count_params(convert()) == entry["parameters"]


def test_converted_tiny_mixer_reproduces_timms_logits_features_and_block_outputs():
    expected = fixture()
    logits, pre_logits, blocks = run_mixtok(convert())
    np.testing.assert_allclose(logits, expected["logits"], rtol=TOLERANCE, atol=TOLERANCE, err_msg="logits")
    assert_close_to_scale(pre_logits, expected["pre_logits"], "pooled features")
    assert len(blocks) == manifest()["timm_kwargs"]["num_blocks"]
    for i, block in enumerate(blocks):
        assert_close_to_scale(block.transpose(0, 3, 1, 2), expected[f"block{i}"], f"block {i} output")


def test_token_mlp_weights_in_column_major_patch_order_are_caught():
    """The fixture has teeth: fc1 read with the 4 x 6 patch grid transposed moves the logits far past 1e-5."""
    variables = convert()
    fc1 = variables["params"]["blocks_0"]["mlp_tokens"]["fc1"]
    fc1["kernel"] = np.ascontiguousarray(fc1["kernel"].reshape(4, 6, -1).transpose(1, 0, 2).reshape(24, -1))
    logits, _, _ = run_mixtok(variables)
    assert np.abs(logits - fixture()["logits"]).max() > 1e3 * TOLERANCE


def test_to_timm_gives_back_timms_state_dict_exactly():
    exported = timm_interop.to_timm(NAME, convert(), **overrides())
    expected = state_dict()
    assert set(exported) == set(expected)
    tops = [key.split(".")[0] for key in exported]
    assert list(dict.fromkeys(tops)) == ["stem", "blocks", "norm", "head"]  # timm's module order
    for key, value in expected.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_timm_names_resolve_and_a_tiny_state_dict_does_not_fit_the_full_variant():
    assert timm_interop.resolve_name("mixer_b16_224.goog_in21k_ft_in1k") == "mixer_b16_224"
    with pytest.raises(ValueError, match="does not fit mixtok's mixer_s16_224") as info:
        timm_interop.convert(NAME, state_dict())
    message = str(info.value)
    assert "blocks.0.mlp_tokens.fc1.weight: expected (256, 196), got (16, 24)" in message
    assert "blocks.7.mlp_channels.fc2.weight" in message  # S/16's eighth block is missing


def test_an_official_jax_checkpoint_gets_a_hint():
    with pytest.raises(ValueError, match="official google-research/vision_transformer Mixer checkpoint"):
        timm_interop.convert(NAME, {"MixerBlock_0/token_mixing/Dense_0/kernel": np.zeros((196, 256), np.float32)})
