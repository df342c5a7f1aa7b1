"""Official Strip-MLP checkpoints -> mixtok: golden parity, the key mapping, errors and the CLI's user errors.

tests/fixtures/strip_mlp holds a tiny `StripMLPNet` (embed_dim 8, layers (1, 1, 1, 1)) built by
Med-Process/Strip_MLP's models/strip_mlp.py (unmodified; the commit is in manifest.json) at 64 px: every parameter
and BatchNorm statistic random, a seeded input, and the official eval-mode logits, pooled features and stage
outputs. tools/make_strip_mlp_fixtures.py writes it from the official code. `mixtok.interop.strip_mlp.convert` must
turn the state dict into variables with which mixtok reproduces every output: logits within rtol = atol = 1e-5,
features within rtol 1e-5 and an atol of 1e-5 times the tensor's largest magnitude. The official key names and
shapes below were read from `StripMLPNet(...).state_dict()` @ 492d7050. No torch is needed.
"""

import functools
import hashlib
import os

import jax
import numpy as np
import pytest

from mixtok.interop import strip_mlp as importer
from mixtok.models import count_params, create_model
from tests import helpers
from tests.interop.test_timm import assert_trees_equal

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "strip_mlp")
TOLERANCE = 1e-5
STATE_DICT = "state_dict/"
MODEL = "strip_mlp_tiny"


@functools.cache
def manifest():
    return helpers.read_manifest(FIXTURES)


@functools.cache
def fixture():
    return helpers.read_npz(os.path.join(FIXTURES, manifest()["models"][MODEL]["file"]))


def state_dict():
    return {k[len(STATE_DICT) :]: v for k, v in fixture().items() if k.startswith(STATE_DICT)}


def architecture():
    """create_model overrides from the manifest's official constructor arguments."""
    kwargs = manifest()["models"][MODEL]["official_kwargs"]
    assert kwargs["alpha"] == 3
    return dict(depths=tuple(kwargs["layers"]), dims=tuple(kwargs["embed_dim"] * 2**i for i in range(4)))


def convert():  # num_classes from head.weight, image_size from the position table
    return importer.convert("strip_mlp_tiny", state_dict(), **architecture())


@functools.cache
def _forward():
    """The jitted mixtok forward of the fixture's architecture (compiled once)."""
    module = create_model(
        "strip_mlp_tiny", num_classes=10, image_size=manifest()["models"][MODEL]["image_size"], **architecture()
    )

    def forward(v, x):  # the stage maps, then the head on the last one: the model body is compiled once
        stages = module.apply(v, x, method="intermediates")
        logits, state = module.apply(v, stages[-1], method="forward_head", mutable=["intermediates"])
        return logits, state["intermediates"]["pre_logits"][0], stages

    return jax.jit(forward)


def run_mixtok(variables):
    logits, pre_logits, stages = _forward()(variables, fixture()["input"].transpose(0, 2, 3, 1))  # NCHW -> NHWC
    return np.asarray(logits), np.asarray(pre_logits), [np.asarray(s) for s in stages]


def assert_close_to_scale(actual, expected, what):
    helpers.assert_close_to_scale(actual, expected, what, TOLERANCE)


def test_the_fixture_is_the_one_the_manifest_describes():
    assert sorted(manifest()["models"]) == [MODEL]
    assert manifest()["official_commit"] == "492d7050031fb01dc3e07de0c6598cc242f9d4dc"
    entry = manifest()["models"][MODEL]
    with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"]
    assert fixture()["logits"].std() > 0.1
    assert fixture()["input"].shape[2:] == (entry["image_size"],) * 2
    variables = convert()
    assert count_params({"params": variables["params"]}) == entry["parameters"]
    official_parameters = sum(
        v.size
        for k, v in state_dict().items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert entry["parameters"] == official_parameters


def test_converted_tiny_strip_mlp_reproduces_the_official_outputs():
    expected = fixture()
    logits, pre_logits, stages = run_mixtok(convert())
    np.testing.assert_allclose(logits, expected["logits"], rtol=TOLERANCE, atol=TOLERANCE, err_msg="logits")
    assert_close_to_scale(pre_logits, expected["pre_logits"], "pooled features")
    assert len(stages) == 4
    for i, stage in enumerate(stages):
        assert_close_to_scale(stage, expected[f"stage{i}"], f"stage{i} output")


@pytest.mark.parametrize("change", ["swap proj_h and proj_w", "transpose the position table's offsets"])
def test_the_fixture_has_teeth_for_the_strip_directions_and_the_relative_positions(change):
    variables = convert()
    mixer = variables["params"]["blocks2_0"]["token_mixing"]
    if change == "swap proj_h and proj_w":
        mixer["proj_h"], mixer["proj_w"] = mixer["proj_w"], mixer["proj_h"]
    else:  # offset j - i read as i - j
        mixer["relate_pos_h"]["embeddings_table"] = mixer["relate_pos_h"]["embeddings_table"][::-1].copy()
    logits, _, stages = run_mixtok(variables)
    assert np.abs(stages[1] - fixture()["stage1"]).max() > 1e3 * TOLERANCE


def test_to_official_gives_back_the_official_state_dict_exactly_and_convert_inverts_it():
    variables = convert()
    exported = importer.to_official("strip_mlp_tiny", variables, **architecture())
    expected = state_dict()
    assert set(exported) == set(expected)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            assert exported[key] == 0 and exported[key].dtype == np.int64, key  # mixtok does not count batches
        else:
            np.testing.assert_array_equal(exported[key], value, err_msg=key)
    assert all(isinstance(v, np.ndarray) and v.flags.c_contiguous for v in exported.values())
    assert_trees_equal(importer.convert("strip_mlp_tiny", exported, **architecture()), variables)


# Read from the official StripMLPNet(img_size=224, embed_dim=80, layers=[1, 1, 1, 1], alpha=3).state_dict()
# (models/strip_mlp.py @ 492d7050): 182 entries, 7,765,820 parameters.
OFFICIAL_FACTS = {
    "patch_embed.weight": (80, 3, 4, 4),
    "blocks1.0.token_mixing.dwsc.conv_merge.BN.running_var": (80,),
    "blocks1.0.token_mixing.smlp_block.proj_h.weight": (1120, 56, 1, 3),
    "blocks2.0.token_mixing.smlp_block.proj_w.bias": (1120,),
    "blocks3.0.token_mixing.smlp_block.relate_pos_h.embeddings_table": (29, 160),
    "blocks4.0.token_mixing.smlp_block.reweight.fc2.weight": (960, 160, 1, 1),
    "blocks4.0.token_mixing.smlp_block.mlp.1.num_batches_tracked": (),
    "blocks3.0.channel_mixing.grn.gamma": (1, 1, 1, 960),
    "blocks3.0.channel_mixing.fc1.weight": (960, 320),
    "conv_s1_28.weight": (320, 1, 2, 2),
    "conv_s2_14.weight": (640, 1, 2, 2),
    "merging3.weight": (640, 320, 2, 2),
    "norm.running_mean": (640,),
    "head.weight": (1000, 640),
}


def test_official_keys_and_shapes_are_those_of_the_official_state_dict():
    shapes = importer.official_shapes("strip_mlp_tiny_light", depths=(1, 1, 1, 1))
    assert len(shapes) == 182
    assert {k: shapes[k] for k in OFFICIAL_FACTS} == OFFICIAL_FACTS


def test_official_model_names_are_accepted_and_unknown_names_list_close_matches():
    assert importer.resolve_name("smlp_small_alpha3_patch4_224_imagenet1k") == "strip_mlp_small"
    assert importer.resolve_name("strip-mlp-base") == "strip_mlp_base"
    with pytest.raises(ValueError, match="Did you mean 'strip_mlp_tiny'"):
        importer.convert("strip_mlp_tinyy", {})


def test_a_bad_state_dict_is_reported_with_every_problem_at_once():
    arrays = importer.to_official("strip_mlp_tiny", convert(), **architecture())
    del arrays["blocks3.0.channel_mixing.grn.beta"]
    arrays["blocks1.0.extra.weight"] = np.zeros(3, np.float32)
    arrays["blocks2.0.token_mixing.smlp_block.proj_h.weight"] = np.zeros((8, 8, 1, 3), np.float32)
    with pytest.raises(ValueError) as info:
        importer.convert("strip_mlp_tiny", arrays, **architecture())
    message = str(info.value)
    assert message.startswith("The Strip-MLP state dict does not fit mixtok's strip_mlp_tiny (num_classes=10, ")
    assert "3 problem(s)" in message
    assert "blocks3.0.channel_mixing.grn.beta (mixtok blocks3_0/channel_mixing/grn/beta)" in message
    assert "blocks1.0.extra.weight" in message
    assert "blocks2.0.token_mixing.smlp_block.proj_h.weight: expected (16, 8, 1, 3), got (8, 8, 1, 3)" in message


def test_a_wrapped_checkpoint_with_ddp_prefixes_converts():
    arrays = importer.to_official("strip_mlp_tiny", convert(), **architecture())
    wrapped = {"model": {f"module.{k}": v for k, v in arrays.items()}, "epoch": np.array(299)}
    assert_trees_equal(importer.convert("strip_mlp_tiny", wrapped, **architecture()), convert())


def test_cli_refuses_to_overwrite_the_output_and_rejects_unknown_names_with_exit_code_2(tmp_path, capsys):
    checkpoint, output = tmp_path / "ckpt_epoch_299.pth", tmp_path / "out.msgpack"
    checkpoint.write_bytes(b"not read")
    output.write_bytes(b"precious")
    assert importer.main(["strip_mlp_tiny", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert importer.main(["strip_mlp_xl", str(checkpoint), str(tmp_path / "other.msgpack")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "strip_mlp_" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_epoch_299.pth", "out.msgpack"]
