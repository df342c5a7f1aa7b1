"""Parity with the official GFNet code without torch: tiny models it built and ran, converted and run by mixtok.

tests/fixtures/gfnet holds an isotropic GFNet and a GFNetPyramid built by raoyongming/GFNet's gfnet.py
(unmodified; the commit is in manifest.json) at 64 px with small widths, their random weights as the
official state dict (global filters and position embedding N(0, 1)), a seeded input, and the official
logits, pooled features and (pyramid) stage outputs. tools/make_gfnet_fixtures.py writes them from a clone
of the official repository. `mixtok.interop.gfnet.convert` must turn the state dict into variables with
which mixtok reproduces every output: logits within rtol = atol = 1e-5, features within rtol 1e-5 and an
atol of 1e-5 times the tensor's largest magnitude (float32 rounding's scale).
"""

import functools
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import gfnet as gfnet_interop
from mixtok.models import count_params, create_model

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "gfnet")
TOLERANCE = 1e-5
STATE_DICT = "state_dict/"

# fixture: (the mixtok variant of the same kind, how the manifest's official arguments name mixtok's)
MODELS = {
    "gfnet_isotropic": (
        "gfnet_ti",
        lambda kw: dict(depths=(kw["depth"],), dims=(kw["embed_dim"],), patch_size=kw["patch_size"]),
    ),
    "gfnet_pyramid": ("gfnet_h_ti", lambda kw: dict(depths=tuple(kw["depth"]), dims=tuple(kw["embed_dim"]))),
}


@functools.cache
def manifest():
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        return json.load(f)


@functools.cache
def fixture(model):
    with np.load(os.path.join(FIXTURES, manifest()["models"][model]["file"])) as data:
        return {key: data[key] for key in data.files}


def state_dict(model):
    return {k[len(STATE_DICT) :]: v for k, v in fixture(model).items() if k.startswith(STATE_DICT)}


def architecture(model):
    name, overrides_of = MODELS[model]
    kwargs = manifest()["models"][model]["official_kwargs"]
    return name, kwargs["num_classes"], kwargs["img_size"], overrides_of(kwargs)


def run_mixtok(model, variables):
    name, num_classes, img_size, overrides = architecture(model)
    module = create_model(name, num_classes=num_classes, image_size=img_size, **overrides)
    images = jnp.asarray(fixture(model)["input"].transpose(0, 2, 3, 1))  # NCHW -> NHWC

    def forward(v, x):  # logits, sown pooled features, and the stage maps of the feature interface
        logits, state = module.apply(v, x, mutable=["intermediates"])
        stages = module.apply(v, x, method="intermediates")
        return logits, {**state["intermediates"], **{f"stage{i}": (m,) for i, m in enumerate(stages)}}

    logits, intermediates = jax.jit(forward)(variables, images)
    return np.asarray(logits), jax.tree.map(np.asarray, intermediates)


def convert(model):
    name, _, _, overrides = architecture(model)
    return gfnet_interop.convert(name, state_dict(model), **overrides)  # img_size and classes: from the weights


def assert_close_to_scale(actual, expected, what):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, official {expected.shape}"
    np.testing.assert_allclose(
        actual, expected, rtol=TOLERANCE, atol=TOLERANCE * float(np.abs(expected).max()), err_msg=what
    )


def test_the_fixtures_are_the_ones_the_manifest_describes():
    assert set(manifest()["models"]) == set(MODELS)
    assert len(manifest()["official_commit"]) == 40
    for model, entry in manifest()["models"].items():
        with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"], model
        assert fixture(model)["logits"].std() > 0.1
        assert count_params(convert(model)) == entry["parameters"] == sum(v.size for v in state_dict(model).values())


@pytest.mark.parametrize("model", sorted(MODELS))
def test_converted_tiny_gfnet_reproduces_the_official_outputs(model):
    expected = fixture(model)
    logits, intermediates = run_mixtok(model, convert(model))
    np.testing.assert_allclose(logits, expected["logits"], rtol=TOLERANCE, atol=TOLERANCE, err_msg="logits")
    assert_close_to_scale(intermediates["head"]["pre_logits"][0], expected["pre_logits"], "pooled features")
    stages = sorted(k for k in expected if k.startswith("stage"))
    assert len(stages) == (4 if model == "gfnet_pyramid" else 0)
    for key in stages:
        assert_close_to_scale(intermediates[key][0], expected[key], f"{key} output")


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_filter_with_real_and_imaginary_parts_swapped_is_caught(model):
    """The fixture has teeth: the first block's filter read as (imaginary, real) moves the logits far past 1e-5."""
    variables = convert(model)
    block = "blocks_0" if model == "gfnet_isotropic" else "stages_0_blocks_0"
    filter_params = variables["params"][block]["filter"]
    filter_params["complex_weight"] = np.ascontiguousarray(filter_params["complex_weight"][..., ::-1])
    logits, _ = run_mixtok(model, variables)
    assert np.abs(logits - fixture(model)["logits"]).max() > 1e3 * TOLERANCE


@pytest.mark.parametrize("model", sorted(MODELS))
def test_to_official_gives_back_the_official_state_dict_exactly(model):
    name, _, _, overrides = architecture(model)
    exported = gfnet_interop.to_official(name, convert(model), **overrides)
    expected = state_dict(model)
    assert set(exported) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(exported[key]), value, err_msg=key)
