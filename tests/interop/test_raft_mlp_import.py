"""Official RaftMLP state dicts -> mixtok: golden parity, the key mapping and LayerNorm permutation, errors, the CLI.

tests/fixtures/raft_mlp holds two tiny `RaftMLP`s built by okojoalg/raft-mlp's libs/models.py (unmodified; the
commit is in manifest.json) as libs/train.py builds them (ser_pm, emb_cross_mlp, shortcut=False), trained size
32 px: one run at 32 px, one with raft sizes (2, 4, 4, 2) run at 40 x 48 px (every grid resized bicubically, odd
level inputs resized up); every parameter random, a seeded input, and the official eval-mode logits, pooled
features and level outputs. tools/make_raft_mlp_fixtures.py writes them from the official code.
`mixtok.interop.raft_mlp.convert` must turn the state dict into variables with which mixtok reproduces every
output: logits within rtol = atol = 1e-5, features within rtol 1e-5 and an atol of 1e-5 times the tensor's
largest magnitude. The official key names and shapes below were read from `RaftMLP(...).state_dict()` @ 6060d5d9.
"""

import functools
import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import raft_mlp as importer
from mixtok.models import count_params, create_model
from tests import helpers
from tests.helpers import random_like, variable_shapes
from tests.interop.test_timm import assert_trees_equal

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "raft_mlp")
TOLERANCE = 1e-5
STATE_DICT = "state_dict/"
MODELS = ("raft_mlp_tiny", "raft_mlp_tiny_resized")
SMALL = dict(depths=(1, 2, 1, 1), dims=(8, 16, 16, 32), raft_sizes=(2, 4, 4, 2), image_size=32)


@functools.cache
def manifest():
    return helpers.read_manifest(FIXTURES)


@functools.cache
def fixture(model):
    return helpers.read_npz(os.path.join(FIXTURES, manifest()["models"][model]["file"]))


def state_dict(model):
    return {k[len(STATE_DICT) :]: v for k, v in fixture(model).items() if k.startswith(STATE_DICT)}


def architecture(model):
    """create_model overrides from the manifest's official layers (checked against its own list)."""
    entry = manifest()["models"][model]
    layers = entry["official_layers"]
    overrides = dict(
        depths=tuple(layer["depth"] for layer in layers),
        dims=tuple(layer["dim"] for layer in layers),
        image_size=entry["pretrained_image_size"],
    )
    rafts = tuple(layer["raft_size"] for layer in layers)
    if rafts != (2, 2, 2, 2):
        overrides["raft_sizes"] = rafts
    assert [layer["patch_size"] for layer in layers] == [4, 2, 2, 2]
    assert [layer["embedding_kernels"] for layer in layers] == [[4, 8], [2, 4], [2, 4], [2]]
    listed = {k: tuple(v) if isinstance(v, list) else v for k, v in entry["mixtok_overrides"].items()}
    assert overrides == listed
    return overrides


def convert(model):  # num_classes: read from the weights
    return importer.convert("raftmlp_s", state_dict(model), **architecture(model))


def run_mixtok(model, variables):
    module = create_model("raftmlp_s", num_classes=10, **architecture(model))

    def forward(v, x):  # the level maps of the feature interface, then the head on the last: one forward
        maps = module.apply(v, x, method="intermediates")
        logits, state = module.apply(v, maps[-1], method="forward_head", mutable=["intermediates"])
        return logits, state["intermediates"]["head"]["pre_logits"][0], maps

    images = jnp.asarray(fixture(model)["input"].transpose(0, 2, 3, 1))  # NCHW -> NHWC
    logits, pre_logits, stages = jax.jit(forward)(variables, images)
    return np.asarray(logits), np.asarray(pre_logits), [np.asarray(s) for s in stages]


def assert_close_to_scale(actual, expected, what):
    helpers.assert_close_to_scale(actual, expected, what, TOLERANCE)


def random_variables(seed=0, num_classes=10, **overrides):
    model = create_model("raftmlp_s", num_classes=num_classes, **{**SMALL, **overrides})
    shapes = variable_shapes(model, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    return jax.tree.map(np.asarray, random_like(shapes, seed=seed, std=1.0))


def test_the_fixtures_are_the_ones_the_manifest_describes():
    assert sorted(manifest()["models"]) == sorted(MODELS)
    assert manifest()["official_commit"] == "6060d5d95e142acf80cea6d180adfb075cbe87d0"
    for model, entry in manifest()["models"].items():
        with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"], model
        assert fixture(model)["logits"].std() > 0.1
        assert list(fixture(model)["input"].shape[2:]) == entry["image_size"]
        official_parameters = sum(v.size for v in state_dict(model).values())  # RaftMLP has no buffers
        assert count_params(convert(model)) == entry["parameters"] == official_parameters


@pytest.mark.parametrize("model", MODELS)
def test_converted_tiny_raft_mlp_reproduces_the_official_outputs(model):
    expected = fixture(model)
    logits, pre_logits, stages = run_mixtok(model, convert(model))
    np.testing.assert_allclose(logits, expected["logits"], rtol=TOLERANCE, atol=TOLERANCE, err_msg="logits")
    assert_close_to_scale(pre_logits, expected["pre_logits"], "pooled features")
    assert len(stages) == 4
    for i, stage in enumerate(stages):
        assert_close_to_scale(stage, expected[f"stage{i}"], f"level {i} output")


def test_the_permuted_layernorm_weights_are_reordered_from_co_r_to_r_co():
    """Official index co * r + raft is mixtok channel raft * (C / r) + co; to_official is the exact inverse."""
    sd = state_dict("raft_mlp_tiny_resized")
    variables = convert("raft_mlp_tiny_resized")
    official = sd["levels.1.fn.3.3.norm.1.weight"]  # level 1 (C = 16, r = 4), block 1, horizontal step
    mixtok = variables["params"]["levels_1_blocks_1"]["mixer"]["horizontal"]["norm"]["scale"]
    co_n, r = 4, 4
    for co in range(co_n):
        for raft in range(r):
            assert mixtok[raft * co_n + co] == official[co * r + raft]
    channel = variables["params"]["levels_1_blocks_1"]["channel"]["norm"]["scale"]  # ChannelBlock: not permuted
    np.testing.assert_array_equal(channel, sd["levels.1.fn.3.5.norm.weight"])
    exported = importer.to_official("raftmlp_s", variables, **architecture("raft_mlp_tiny_resized"))
    assert set(exported) == set(sd)
    for key, value in sd.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_to_official_then_convert_restores_every_variable_exactly():
    variables = random_variables()
    sd = importer.to_official("raftmlp_s", variables, **SMALL)
    assert all(isinstance(v, np.ndarray) and v.flags.c_contiguous for v in sd.values())
    block = variables["params"]["levels_2_blocks_0"]
    np.testing.assert_array_equal(sd["levels.2.fn.2.1.fn.0.weight"], block["mixer"]["vertical"]["fc1"]["kernel"].T)
    np.testing.assert_array_equal(sd["levels.0.fn.0.fc.weight"], variables["params"]["levels_0_embedding"]["kernel"].T)
    np.testing.assert_array_equal(sd["classifier.weight"], variables["params"]["head"]["fc"]["kernel"].T)
    assert_trees_equal(importer.convert("raftmlp_s", sd, **SMALL), variables)


# Read from the official RaftMLP(...).state_dict() of the -s settings, 1000 classes (libs/models.py @ 6060d5d9).
OFFICIAL_FACTS = {
    "raftmlp_s": (
        228,
        {
            "levels.0.fn.0.fc.weight": (64, 240),
            "levels.0.fn.2.1.norm.1.weight": (64,),
            "levels.0.fn.2.1.fn.0.weight": (224, 112),
            "levels.1.fn.3.3.fn.3.weight": (56, 112),
            "levels.2.fn.7.5.fn.0.weight": (1024, 256),
            "levels.3.fn.0.fc.weight": (512, 1024),
            "levels.3.fn.3.3.fn.0.bias": (28,),
            "heads.0.1.weight": (512,),
            "classifier.weight": (1000, 512),
        },
    ),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_FACTS))
def test_official_keys_and_shapes_are_those_of_the_official_state_dict(name):
    count, samples = OFFICIAL_FACTS[name]
    shapes = importer.official_shapes(name)
    assert len(shapes) == count
    assert {k: shapes[k] for k in samples} == samples


def test_names_bad_state_dicts_and_wrappers():
    assert importer.resolve_name("imagenet-raft-mlp-cross-mlp-emb-m") == "raftmlp_m"
    assert importer.resolve_name("raftmlp-m") == "raftmlp_m"
    with pytest.raises(ValueError, match="Did you mean 'raftmlp_s'"):
        importer.convert("raftmlp_ss", {})
    variables = random_variables()
    sd = importer.to_official("raftmlp_s", variables, **SMALL)
    assert_trees_equal(importer.convert("raftmlp_s", {f"module.{k}": v for k, v in sd.items()}, **SMALL), variables)
    del sd["levels.1.fn.3.5.norm.bias"]
    sd["levels.0.fn.1.weight"] = np.zeros(3, np.float32)
    sd["levels.2.fn.2.1.fn.0.weight"] = np.zeros((8, 4), np.float32)
    with pytest.raises(ValueError) as info:
        importer.convert("raftmlp_s", sd, **SMALL)
    message = str(info.value)
    assert message.startswith("The RaftMLP state dict does not fit mixtok's raftmlp_s (num_classes=10, depths=")
    assert "3 problem(s)" in message
    assert "levels.1.fn.3.5.norm.bias (mixtok levels_1_blocks_1/channel/norm/bias)" in message
    assert "levels.0.fn.1.weight" in message
    assert "levels.2.fn.2.1.fn.0.weight: expected (16, 8), got (8, 4)" in message


def test_cli_refuses_to_overwrite_the_output_and_rejects_unknown_names_with_exit_code_2(tmp_path, capsys):
    checkpoint, output = tmp_path / "last_model_0.pt", tmp_path / "out.msgpack"
    checkpoint.write_bytes(b"not read")
    output.write_bytes(b"precious")
    assert importer.main(["raftmlp_s", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert importer.main(["raftmlp_xl", str(checkpoint), str(tmp_path / "other.msgpack")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "raftmlp_" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_model_0.pt", "out.msgpack"]
