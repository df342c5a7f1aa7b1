"""Official TransNeXt checkpoints -> mixtok: golden outputs of the official code, the key mapping, errors, the CLI.

tests/fixtures/transnext holds a tiny TransNeXt built and run by DaiShiResearch/TransNeXt's classification/
transnext.py with its native attention (unmodified; the commit is in manifest.json; written by
tools/make_transnext_fixtures.py): random weights as the official state dict and, for one seeded batch at 64 px
and at 96 px (pretrain_size 64, the same weights), the official logits, pooled features and stage outputs.
`mixtok.interop.transnext.convert` must turn the state dict into variables with which mixtok reproduces every
output at both sizes, without torch: logits within rtol = atol = 1e-5, features within rtol 1e-5 and an atol of
1e-5 times the tensor's largest magnitude. The full-size parity is recorded in mixtok/interop/transnext.py.
"""

import functools
import hashlib
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import transnext as importer
from mixtok.interop.weight_files import load_variables
from mixtok.models import count_params, create_model
from tests.interop.test_timm import assert_trees_equal

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "transnext")
TOLERANCE = 1e-5
STATE_DICT = "state_dict/"
NAME = "transnext_micro"  # the fixture has the named variants' fixed arguments and its own widths


@functools.cache
def manifest():
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        return json.load(f)


@functools.cache
def fixture():
    with np.load(os.path.join(FIXTURES, manifest()["models"]["transnext_tiny"]["file"])) as data:
        return {key: data[key] for key in data.files}


def state_dict():
    return {k[len(STATE_DICT) :]: v for k, v in fixture().items() if k.startswith(STATE_DICT)}


def architecture():
    """The create_model overrides that name the fixture's official constructor arguments."""
    entry = manifest()["models"]["transnext_tiny"]
    kwargs = entry["official_kwargs"]
    return dict(
        dims=tuple(kwargs["embed_dims"]),
        num_heads=tuple(kwargs["num_heads"]),
        depths=tuple(kwargs["depths"]),
        pretrain_size=entry["pretrain_size"],
    )


def run_mixtok(variables, size, **overrides):
    """logits and {'pre_logits', 'stage1' ... 'stage4'} of mixtok on the fixture's input at `size` px."""
    images = jnp.asarray(fixture()[f"r{size}/input"].astype(np.float32).transpose(0, 2, 3, 1))  # NCHW -> NHWC
    logits, state = _forward(tuple(sorted(overrides.items())))(variables, images)
    return np.asarray(logits), {k: np.asarray(v[0]) for k, v in state["intermediates"].items()}


@functools.cache
def _forward(overrides):
    """One jitted function per configuration, so that the tests share its compilations."""
    model = create_model(NAME, num_classes=10, **{**architecture(), **dict(overrides)})
    return jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))


def assert_close_to_scale(actual, expected, what):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, official {expected.shape}"
    np.testing.assert_allclose(
        actual, expected, rtol=TOLERANCE, atol=TOLERANCE * float(np.abs(expected).max()), err_msg=what
    )


def test_the_fixture_is_the_one_the_manifest_describes():
    entry = manifest()["models"]["transnext_tiny"]
    assert len(manifest()["official_commit"]) == 40
    with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"]
    for size in entry["resolutions"]:
        assert fixture()[f"r{size}/logits"].std() > 0.1
    variables = importer.convert(NAME, state_dict(), **architecture())
    assert count_params(variables) == entry["parameters"] == sum(v.size for v in state_dict().values())


@pytest.mark.parametrize("size", [64, 96])
def test_converted_tiny_transnext_reproduces_the_official_outputs_at_both_sizes(size):
    """The same converted weights at the 64-px grid the official model was built for and at 96 px (grids 24 .. 3,
    pooled 3 x 3, CPB offsets still scaled by the 64-px pre-training grid): no variable depends on the size."""
    expected = {k.split("/", 1)[1]: v for k, v in fixture().items() if k.startswith(f"r{size}/")}
    logits, intermediates = run_mixtok(importer.convert(NAME, state_dict(), **architecture()), size)
    np.testing.assert_allclose(logits, expected["logits"], rtol=TOLERANCE, atol=TOLERANCE, err_msg="logits")
    assert_close_to_scale(intermediates["pre_logits"], expected["pre_logits"], "pooled features")
    for stage in range(1, 5):
        assert_close_to_scale(intermediates[f"stage{stage}"], expected[f"stage{stage}"], f"stage{stage} output")


def test_the_fixture_catches_an_untransposed_pooling_conv_and_a_wrong_pretrain_size():
    """The golden outputs have teeth: the 1x1 conv `sr` read as [out, in], or the CPB coordinates scaled by the
    input's own grid (pretrain_size 96, the official default when it is unset) move the 96-px logits far past 1e-5."""
    variables = importer.convert(NAME, state_dict(), **architecture())
    expected = fixture()["r96/logits"]
    sr = variables["params"]["block1_0"]["attn"]["sr"]
    sr["kernel"] = np.ascontiguousarray(sr["kernel"].T)
    assert np.abs(run_mixtok(variables, 96)[0] - expected).max() > 1e3 * TOLERANCE
    variables = importer.convert(NAME, state_dict(), **architecture())
    assert np.abs(run_mixtok(variables, 96, pretrain_size=96)[0] - expected).max() > 1e3 * TOLERANCE


def test_to_official_gives_back_the_official_state_dict_exactly():
    exported = importer.to_official(NAME, importer.convert(NAME, state_dict(), **architecture()), **architecture())
    expected = state_dict()
    assert set(exported) == set(expected)
    for key, value in expected.items():
        assert exported[key].dtype == value.dtype and exported[key].flags.c_contiguous, key
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


# Read from the official transnext_micro(img_size=224) / transnext_base(...) state_dict() with 1000 classes.
OFFICIAL_FACTS = {
    "transnext_micro": (
        617,
        12_809_304,
        {
            "patch_embed1.proj.weight": (48, 3, 7, 7),
            "block1.0.attn.sr.weight": (48, 48, 1, 1),
            "block1.0.attn.learnable_tokens": (2, 24, 9),
            "block1.1.mlp.dwconv.dwconv.weight": (256, 1, 3, 3),
            "block3.14.attn.relative_pos_bias_local": (8, 9),
            "block4.1.attn.qkv.weight": (1152, 384),
            "block4.1.attn.cpb_fc2.weight": (16, 512),
            "norm4.weight": (384,),
            "head.weight": (1000, 384),
        },
    ),
    "transnext_base": (
        1083,
        89_721_496,
        {
            "block1.0.attn.sr.weight": (96, 96, 1, 1),
            "block1.0.attn.learnable_tokens": (4, 24, 9),
            "block1.1.mlp.dwconv.dwconv.weight": (512, 1, 3, 3),
            "block4.1.attn.qkv.weight": (2304, 768),
            "head.weight": (1000, 768),
        },
    ),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_FACTS))
def test_official_keys_and_shapes_are_those_of_the_official_state_dict(name):
    count, parameters, samples = OFFICIAL_FACTS[name]
    shapes = importer.official_shapes(name)
    assert len(shapes) == count
    assert sum(int(np.prod(s)) for s in shapes.values()) == parameters
    assert {k: shapes[k] for k in samples} == samples


def random_variables(seed=0, num_classes=10, **overrides):
    """Variables of the right tree with standard-normal values (no leaf left at its init constant)."""
    model = create_model(NAME, num_classes=num_classes, **{**architecture(), **overrides})
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


@pytest.mark.parametrize("num_classes", [10, 0])
def test_to_official_then_convert_restores_every_parameter_exactly(num_classes):
    variables = random_variables(num_classes=num_classes)
    state_dict = importer.to_official(NAME, variables, **architecture())
    assert ("head.weight" in state_dict) == (num_classes > 0)  # the official head is an nn.Identity without classes
    kernel = variables["params"]["block3_1"]["attn"]["sr"]["kernel"]
    np.testing.assert_array_equal(state_dict["block3.1.attn.sr.weight"], kernel.T[:, :, None, None])
    np.testing.assert_array_equal(
        state_dict["block2.0.mlp.dwconv.dwconv.weight"],
        variables["params"]["block2_0"]["mlp"]["dwconv"]["kernel"].transpose(3, 2, 0, 1),
    )
    assert_trees_equal(importer.convert(NAME, state_dict, **architecture()), variables)


def test_unknown_names_list_the_variants():
    assert importer.resolve_name("transnext-micro") == "transnext_micro"
    with pytest.raises(ValueError, match="Did you mean 'transnext_micro'.*transnext_base, transnext_micro"):
        importer.convert("transnext_mirco", {})


def test_a_bad_state_dict_is_reported_with_every_problem_at_once():
    bad = state_dict()
    del bad["block2.0.attn.learnable_bias"]
    bad["block1.0.attn.extra.weight"] = np.zeros(3, np.float32)
    bad["block1.0.attn.sr.weight"] = np.zeros((8, 8, 3, 3), np.float32)
    with pytest.raises(ValueError) as info:
        importer.convert(NAME, bad, **architecture())
    message = str(info.value)
    assert "does not fit mixtok's transnext_micro" in message and "3 problem(s)" in message
    assert "block2.0.attn.learnable_bias (mixtok block2_0/attn/learnable_bias)" in message
    assert "block1.0.attn.extra.weight" in message
    assert "block1.0.attn.sr.weight: expected (8, 8, 1, 1), got (8, 8, 3, 3) (mixtok block1_0/attn/sr/kernel" in message


def test_main_py_checkpoint_wrappers_and_ddp_prefixes_are_removed():
    variables = random_variables()
    state_dict = importer.to_official(NAME, variables, **architecture())
    wrapped = {"model": {f"module.{k}": v for k, v in state_dict.items()}, "epoch": np.array(299)}
    assert_trees_equal(importer.convert(NAME, wrapped, **architecture()), variables)


def test_to_official_rejects_variables_of_another_configuration():
    variables = random_variables()
    with pytest.raises(ValueError, match="block3_1/norm1/scale"):
        importer.to_official(NAME, variables, **{**architecture(), "depths": (1, 1, 1, 1)})


def test_cli_reports_an_unknown_name_and_refuses_to_overwrite_the_output(tmp_path, capsys):
    checkpoint, output = tmp_path / "transnext_micro_224_1k.pth", tmp_path / "out.msgpack"
    checkpoint.write_bytes(b"not read")
    assert importer.main(["transnext_mikro", str(checkpoint), str(tmp_path / "new.msgpack")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: Unknown TransNeXt variant 'transnext_mikro'.") and error.count("\n") == 1
    output.write_bytes(b"precious")
    assert importer.main(["transnext_micro", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.msgpack", "transnext_micro_224_1k.pth"]


def test_cli_converts_a_main_py_checkpoint_written_by_torch(tmp_path):
    torch = pytest.importorskip("torch")
    micro = dict(dims=(48, 96, 192, 384), num_heads=(2, 4, 8, 16), depths=(2, 2, 15, 2), pretrain_size=224)
    variables = random_variables(num_classes=1000, **micro)
    state_dict = importer.to_official(NAME, variables)
    checkpoint, output = tmp_path / "transnext_micro_224_1k.pth", tmp_path / "out.msgpack"
    # As main.py saves it: the weights under 'model', beside the optimizer's state and the epoch.
    torch.save({"model": {k: torch.from_numpy(v) for k, v in state_dict.items()}, "epoch": 299}, checkpoint)
    result = subprocess.run(
        [sys.executable, "-m", "mixtok.interop.transnext", "transnext_micro", str(checkpoint), str(output)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr
    assert "12,809,304 parameters of transnext_micro (1000 classes, 21 blocks)" in result.stdout
    assert_trees_equal(load_variables(output), variables)
