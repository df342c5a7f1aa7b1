"""Official iFormer checkpoints (sail-sg/iFormer) -> mixtok: golden parity, the key mapping, errors, the CLI.

Parity without torch: tests/fixtures/iformer holds a tiny `InceptionTransformer` built by sail-sg/iFormer's
models/inception_transformer.py (unmodified; the commit is in manifest.json), its random weights and BatchNorm
statistics as the official state dict, seeded inputs and the official logits, pooled features and stage
outputs; tools/make_iformer_fixtures.py writes them. `mixtok.interop.iformer.convert` must turn the state dict
into variables with which mixtok reproduces every output: logits within rtol = atol = 1e-5, features within
rtol 1e-5 and an atol of 1e-5 times the tensor's largest magnitude (float32 rounding's scale).

The key names and shapes of the full-size variants below were read from the official
`iformer_small()` / `iformer_base()` / `iformer_large()` / `iformer_small_384()` `.state_dict()` at that
commit. The full-size logit parity, which needs torch and the official code, is recorded in
mixtok/interop/iformer.py's docstring; here torch only writes a .pth file (skipped without torch).
"""

import argparse
import functools
import hashlib
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import iformer as importer
from mixtok.interop.weight_files import load_variables
from mixtok.models import count_params, create_model
from tests import helpers
from tests.interop.test_timm import assert_trees_equal

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "iformer")
TOLERANCE = 1e-5
STATE_DICT = "state_dict/"
# A small mixtok configuration for the mapping tests (1-2 blocks a stage, layer scale in stages 3-4).
SMALL = dict(depths=(1, 2, 1, 1), dims=(16, 24, 32, 48), num_heads=(2, 3, 4, 4), attention_heads=(1, 1, 2, 2, 3))


# ---------------------------------------------------------------------------------------------- golden fixture


@functools.cache
def manifest():
    return helpers.read_manifest(FIXTURES)


@functools.cache
def fixture():
    return helpers.read_npz(os.path.join(FIXTURES, manifest()["models"]["iformer_tiny"]["file"]))


def fixture_state_dict():
    return {k[len(STATE_DICT) :]: v for k, v in fixture().items() if k.startswith(STATE_DICT)}


def fixture_architecture():
    """mixtok's create_model arguments for the manifest's official constructor arguments."""
    kw = manifest()["models"]["iformer_tiny"]["official_kwargs"]
    assert kw["use_layer_scale"] and kw["layer_scale_init_value"] == 1e-6  # as every official variant
    return dict(
        depths=tuple(kw["depths"]),
        dims=tuple(kw["embed_dims"]),
        num_heads=tuple(kw["num_heads"]),
        attention_heads=tuple(kw["attention_heads"]),
        mlp_ratios=(kw["mlp_ratio"],) * 4,
    )


def convert_fixture():
    return importer.convert("iformer_s", fixture_state_dict(), **fixture_architecture())  # size, classes: read


@functools.cache
def mixtok_forward():
    """One jitted forward for every test (compiled once per input shape): logits and the sown intermediates."""
    kw = manifest()["models"]["iformer_tiny"]["official_kwargs"]
    model = create_model(
        "iformer_s", num_classes=kw["num_classes"], image_size=kw["img_size"], **fixture_architecture()
    )
    return jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))


def run_mixtok(variables, images_nchw):
    logits, state = mixtok_forward()(variables, jnp.asarray(images_nchw.transpose(0, 2, 3, 1)))
    return np.asarray(logits), jax.tree.map(np.asarray, state["intermediates"])


def assert_close_to_scale(actual, expected, what):
    helpers.assert_close_to_scale(actual, expected, what, TOLERANCE)


def test_the_fixture_is_the_one_the_manifest_describes():
    entry = manifest()["models"]["iformer_tiny"]
    assert len(manifest()["official_commit"]) == 40
    with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"]
    assert fixture()["logits"].std() > 0.1
    official = fixture_state_dict()
    parameters = sum(v.size for k, v in official.items() if not k.endswith(("running_mean", "running_var", "_tracked")))
    assert count_params(convert_fixture()) == entry["parameters"] == parameters


def test_converted_tiny_iformer_reproduces_the_official_logits_features_and_stages():
    expected = fixture()
    logits, intermediates = run_mixtok(convert_fixture(), expected["input"])
    np.testing.assert_allclose(logits, expected["logits"], rtol=TOLERANCE, atol=TOLERANCE, err_msg="logits")
    assert_close_to_scale(intermediates["pre_logits"][0], expected["pre_logits"], "pooled features")
    for stage in range(1, 5):
        key = f"stage{stage}"
        assert_close_to_scale(intermediates[key][0], expected[key], f"{key} output")


def test_another_input_size_resizes_the_position_embeddings_as_the_official_code():
    expected = fixture()
    assert expected["input_96"].shape[-1] != manifest()["models"]["iformer_tiny"]["official_kwargs"]["img_size"]
    logits, _ = run_mixtok(convert_fixture(), expected["input_96"])
    np.testing.assert_allclose(logits, expected["logits_96"], rtol=TOLERANCE, atol=TOLERANCE)


def _reset_running_statistics(variables):
    variables["batch_stats"] = jax.tree_util.tree_map_with_path(
        lambda path, x: np.zeros_like(x) if path[-1].key == "mean" else np.ones_like(x), variables["batch_stats"]
    )


def _transpose_position_grid(variables):
    variables["params"]["pos_embed1"] = np.ascontiguousarray(variables["params"]["pos_embed1"].transpose(0, 2, 1, 3))


def _swap_query_and_key(variables):
    qkv = variables["params"]["blocks3_0"]["attn"]["low_mixer"]["qkv"]
    q, k, v = np.split(qkv["kernel"], 3, axis=-1)
    qkv["kernel"] = np.concatenate([k, q, v], axis=-1)
    q, k, v = np.split(qkv["bias"], 3)
    qkv["bias"] = np.concatenate([k, q, v])


@pytest.mark.parametrize(
    "break_", [_reset_running_statistics, _transpose_position_grid, _swap_query_and_key], ids=lambda f: f.__name__[1:]
)
def test_the_fixture_catches_a_wrong_conversion(break_):
    """The fixture has teeth: each plausible mistake moves the logits far past the 1e-5 checked."""
    variables = convert_fixture()
    break_(variables)
    logits, _ = run_mixtok(variables, fixture()["input"])
    assert np.abs(logits - fixture()["logits"]).max() > 1e3 * TOLERANCE


def test_to_official_gives_back_the_official_state_dict_exactly():
    exported = importer.to_official("iformer_s", convert_fixture(), **fixture_architecture())
    expected = fixture_state_dict()
    assert set(exported) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
        assert exported[key].dtype == value.dtype, key


# ---------------------------------------------------------------------------------------------- key mapping


def random_variables(seed=0, num_classes=10, **overrides):
    """params and batch_stats of SMALL's trees with random values (variances positive)."""
    model = create_model("iformer_s", num_classes=num_classes, **{**SMALL, "image_size": 64, **overrides})
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    )
    rng = np.random.default_rng(seed)
    variables = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
    variables["batch_stats"] = jax.tree.map(np.abs, variables["batch_stats"])
    return variables


def test_to_official_then_convert_restores_params_and_batch_stats_exactly():
    variables = random_variables()
    state_dict = importer.to_official("iformer_s", variables, **SMALL)
    assert all(isinstance(v, np.ndarray) and v.flags.c_contiguous for v in state_dict.values())
    assert_trees_equal(importer.convert("iformer_s", state_dict, **SMALL), variables)


def test_layouts_follow_pytorch():
    variables = random_variables()
    params = variables["params"]
    state_dict = importer.to_official("iformer_s", variables, **SMALL)
    kernel = params["blocks2_1"]["attn"]["low_mixer"]["qkv"]["kernel"]  # Linear: [in, out] -> [out, in]
    np.testing.assert_array_equal(state_dict["blocks2.1.attn.low_mixer.qkv.weight"], kernel.T)
    conv = params["patch_embed2_proj"]["kernel"]  # Conv2d: HWIO -> OIHW
    np.testing.assert_array_equal(state_dict["patch_embed2.proj.weight"], conv.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(state_dict["pos_embed3"], params["pos_embed3"])  # NHWC in both
    np.testing.assert_array_equal(
        state_dict["patch_embed.norm1.running_var"], variables["batch_stats"]["patch_embed_norm1"]["var"]
    )
    np.testing.assert_array_equal(state_dict["blocks4.0.layer_scale_2"], params["blocks4_0"]["layer_scale_2"])
    assert state_dict["patch_embed4.norm.num_batches_tracked"].shape == ()


# Read from the official models' state_dict() (1000 classes): key count and sample shapes.
OFFICIAL_FACTS = {
    "iformer_small": (
        373,
        {
            "pos_embed1": (1, 56, 56, 96),
            "pos_embed4": (1, 7, 7, 384),
            "patch_embed.proj1.weight": (48, 3, 3, 3),
            "patch_embed.norm2.running_var": (96,),
            "patch_embed3.proj.weight": (320, 192, 3, 3),
            "blocks1.0.attn.high_mixer.proj1.weight": (64, 1, 3, 3),
            "blocks1.0.attn.low_mixer.qkv.weight": (96, 32),
            "blocks3.0.layer_scale_1": (320,),
            "blocks4.2.attn.conv_fuse.weight": (416, 1, 3, 3),
            "blocks4.2.attn.high_mixer.conv1.weight": (32, 16, 1, 1),
            "blocks4.2.mlp.fc2.bias": (384,),
            "norm.weight": (384,),
            "head.weight": (1000, 384),
        },
    ),
    "iformer_base": (
        593,
        {
            "pos_embed4": (1, 7, 7, 512),
            "patch_embed3.proj.weight": (384, 192, 3, 3),
            "blocks3.0.layer_scale_1": (384,),
            "blocks4.2.attn.conv_fuse.weight": (544, 1, 3, 3),
            "blocks4.5.mlp.fc2.bias": (512,),
            "head.weight": (1000, 512),
        },
    ),
    "iformer_large": (
        707,
        {
            "pos_embed4": (1, 7, 7, 640),
            "patch_embed3.proj.weight": (448, 192, 3, 3),
            "blocks4.2.attn.conv_fuse.weight": (672, 1, 3, 3),
            "blocks4.7.mlp.fc2.bias": (640,),
            "head.weight": (1000, 640),
        },
    ),
    "iformer_small_384": (373, {"pos_embed1": (1, 96, 96, 96), "pos_embed4": (1, 12, 12, 384)}),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_FACTS))
def test_official_keys_and_shapes_are_those_of_the_official_state_dict(name):
    count, samples = OFFICIAL_FACTS[name]
    image_size = 384 if name.endswith("_384") else 224
    shapes = importer.official_shapes(name, image_size=image_size)
    assert len(shapes) == count
    assert {k: shapes[k] for k in samples} == samples


def test_official_names_are_accepted_and_unknown_names_list_the_valid_ones():
    assert importer.resolve_name("iformer_base_384") == importer.resolve_name("iformer-b") == "iformer_b"
    with pytest.raises(ValueError, match="Did you mean .*iformer_small.*Valid iFormer variants: iformer_b,"):
        importer.convert("iformer_smal", {})


def test_image_size_is_read_from_pos_embed1_of_a_384_checkpoint():
    variables = random_variables(image_size=96)  # as the official img_size=96
    state_dict = importer.to_official("iformer_s", variables, **SMALL)
    assert state_dict["pos_embed1"].shape == (1, 24, 24, 16)
    assert state_dict["pos_embed4"].shape == (1, 3, 3, 48)
    assert_trees_equal(importer.convert("iformer_s", state_dict, **SMALL), variables)


def test_a_bad_state_dict_is_reported_with_every_problem_at_once():
    state_dict = importer.to_official("iformer_s", random_variables(), **SMALL)
    del state_dict["blocks3.0.layer_scale_1"]
    state_dict["blocks1.0.attn.extra.weight"] = np.zeros(3, np.float32)
    state_dict["blocks2.1.mlp.fc1.weight"] = np.zeros((90, 24), np.float32)
    with pytest.raises(ValueError) as info:
        importer.convert("iformer_s", state_dict, **SMALL)
    message = str(info.value)
    assert "3 problem(s)" in message
    assert "blocks3.0.layer_scale_1 (mixtok blocks3_0/layer_scale_1)" in message
    assert "blocks1.0.attn.extra.weight" in message
    assert "blocks2.1.mlp.fc1.weight: expected (96, 24), got (90, 24) (mixtok blocks2_1/mlp/fc1/kernel (24, 96))" in (
        message
    )


def test_a_checkpoint_of_another_architecture_gets_a_hint():
    with pytest.raises(ValueError, match="None of its keys is an Inception Transformer's .*mobile iFormer"):
        importer.convert("iformer_s", {"stem.0.weight": np.zeros((8, 3, 3, 3)), "stages.0.0.weight": np.zeros(8)})


def test_training_checkpoint_wrappers_ddp_prefixes_and_batch_counts_are_handled():
    variables = random_variables()
    state_dict = importer.to_official("iformer_s", variables, **SMALL)
    state_dict["patch_embed.norm1.num_batches_tracked"] = np.array(312_500)  # a trained model's count: dropped
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state_dict.items()}, "epoch": np.array(299)}
    assert_trees_equal(importer.convert("iformer_s", wrapped, **SMALL), variables)


def test_a_headless_checkpoint_converts_with_an_empty_head_and_back():
    variables = random_variables(num_classes=0)
    assert variables["params"]["head"]["kernel"].shape == (48, 0)
    state_dict = importer.to_official("iformer_s", variables, **SMALL)
    assert not any(k.startswith("head.") for k in state_dict)  # the official num_classes=0 head is nn.Identity
    assert_trees_equal(importer.convert("iformer_s", state_dict, **SMALL), variables)


def test_to_official_rejects_variables_of_another_configuration():
    with pytest.raises(ValueError, match="blocks2_1/norm1/scale"):
        importer.to_official("iformer_s", random_variables(), **{**SMALL, "depths": (1, 1, 2, 1)})


# ---------------------------------------------------------------------------------------------- files and CLI


def test_load_state_dict_unwraps_as_timm_load_checkpoint(tmp_path):
    safetensors = pytest.importorskip("safetensors.numpy")
    state_dict = importer.to_official("iformer_s", random_variables(), **SMALL)
    path = tmp_path / "iformer.safetensors"
    safetensors.save_file(state_dict, str(path))
    loaded = importer.load_state_dict(path)
    assert set(loaded) == set(state_dict)
    assert importer.load_state_dict(path, ema=True).keys() == state_dict.keys()  # bare: as timm, itself


def full_size_variables(seed=1):
    """iformer_s variables (1000 classes, 224 px) with random values, variances positive."""
    model = create_model("iformer_s", num_classes=1000)
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: np.abs(rng.standard_normal(s.shape)).astype(np.float32), shapes)


def test_cli_converts_a_safetensors_file_without_torch(tmp_path, capsys):
    safetensors = pytest.importorskip("safetensors.numpy")
    variables = full_size_variables()
    checkpoint, output = tmp_path / "iformer_small.safetensors", tmp_path / "out.msgpack"
    safetensors.save_file(importer.to_official("iformer_small", variables), str(checkpoint))
    assert importer.main(["iformer_small", str(checkpoint), str(output)]) == 0
    assert capsys.readouterr().out == (
        f"Wrote 19,866,344 parameters of iformer_s (1000 classes, image_size 224) and 2,080 BatchNorm statistics "
        f"to {output}\n"
    )
    assert_trees_equal(load_variables(output), variables)


def test_cli_reports_a_checkpoint_that_does_not_fit_with_exit_code_2(tmp_path, capsys):
    safetensors = pytest.importorskip("safetensors.numpy")
    checkpoint, output = tmp_path / "tiny.safetensors", tmp_path / "out.msgpack"
    safetensors.save_file(importer.to_official("iformer_s", random_variables(), **SMALL), str(checkpoint))
    assert importer.main(["iformer_s", str(checkpoint), str(output)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: The iFormer state dict does not fit mixtok's iformer_s (num_classes=10, ")
    assert "blocks1.0.norm1.weight: expected (96,), got (16,)" in error
    assert not output.exists()


def test_cli_rejects_an_unknown_name_with_exit_code_2_and_one_line(tmp_path, capsys):
    assert importer.main(["iformer_xl", str(tmp_path / "x.pth"), str(tmp_path / "out.msgpack")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Unknown iFormer variant 'iformer_xl'" in error and "iformer_small_384" in error


def test_cli_refuses_to_overwrite_the_output(tmp_path, capsys):
    checkpoint, output = tmp_path / "iformer_small.pth", tmp_path / "out.msgpack"
    checkpoint.write_bytes(b"not read")
    output.write_bytes(b"precious")
    assert importer.main(["iformer_small", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"


def test_cli_converts_a_train_py_checkpoint_written_by_torch(tmp_path):
    torch = pytest.importorskip("torch")
    variables = full_size_variables()
    state_dict = importer.to_official("iformer_small", variables)
    checkpoint, output = tmp_path / "model_best.pth.tar.pth", tmp_path / "out.msgpack"
    # As train.py's timm CheckpointSaver writes it: the weights under 'state_dict', beside EMA weights and args.
    torch.save(
        {
            "epoch": 299,
            "arch": "iformer_small",
            "state_dict": {k: torch.from_numpy(v) for k, v in state_dict.items()},
            "state_dict_ema": {k: torch.zeros(v.shape) for k, v in state_dict.items()},
            "version": 2,
            "args": argparse.Namespace(model="iformer_small", lr=1e-3),
        },
        checkpoint,
    )
    result = subprocess.run(
        [sys.executable, "-m", "mixtok.interop.iformer", "iformer_small", str(checkpoint), str(output)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr
    assert "19,866,344 parameters of iformer_s (1000 classes, image_size 224)" in result.stdout
    assert_trees_equal(load_variables(output), variables)
    ema = importer.load_state_dict(checkpoint, ema=True)
    assert set(ema) == set(state_dict) and not ema["norm.weight"].any()
    torch.save({"epoch": 0, "arch": "iformer_small", "state_dict": {"norm.weight": torch.ones(3)}}, checkpoint)
    with pytest.raises(ValueError, match="holds no EMA weights .*'state_dict_ema' or 'model_ema'"):
        importer.load_state_dict(checkpoint, ema=True)
