"""Official LSNet checkpoints -> mixtok: golden parity, the key mapping, errors, wrappers, files and the CLI.

tests/fixtures/lsnet holds a tiny LSNet built and run by jameslahm/lsnet's model/lsnet.py and model/ska.py
(unmodified; the SKA Triton kernel run by Triton's CPU interpreter; the commit is in manifest.json) at 96 px with
every block kind and the distillation head, its random weights and BatchNorm statistics as the official state
dict, a seeded input, and the official logits, pooled features and stage outputs. `mixtok.interop.lsnet.convert`
must turn the state dict into variables with which mixtok reproduces every output within rtol 1e-5 and an atol
of 1e-5 times the tensor's largest magnitude (float32 rounding's scale; the maps reach ~16). The key names and
shapes of the full-size models are written down below (read from the official `LSNet(...).state_dict()` at 224 px
with 1000 classes). torch is used only to write .pth files.
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

from mixtok.interop import lsnet as importer
from mixtok.interop.weight_files import load_variables
from mixtok.models import count_params, create_model
from tests import helpers
from tests.interop.test_timm import assert_trees_equal

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "lsnet")
TOLERANCE = 1e-5
STATE_DICT = "state_dict/"


@functools.cache
def manifest():
    return helpers.read_manifest(FIXTURES)


@functools.cache
def fixture():
    return helpers.read_npz(os.path.join(FIXTURES, manifest()["models"]["lsnet_tiny"]["file"]))


def official_state_dict(distilled=False):
    """The fixture's official state dict: a distilled model's, or (by default) the plain model's without head_dist."""
    state_dict = {k[len(STATE_DICT) :]: v for k, v in fixture().items() if k.startswith(STATE_DICT)}
    return state_dict if distilled else {k: v for k, v in state_dict.items() if not k.startswith("head_dist.")}


def architecture():
    """The mixtok arguments of the fixture's official constructor arguments (image_size aside)."""
    kwargs = manifest()["models"]["lsnet_tiny"]["official_kwargs"]
    assert len(set(kwargs["key_dim"])) == 1 and kwargs["patch_size"] == 8
    return dict(
        dims=tuple(kwargs["embed_dim"]),
        depths=tuple(kwargs["depth"]),
        num_heads=tuple(kwargs["num_heads"]),
        key_dim=kwargs["key_dim"][0],
    )


def run_mixtok(variables):
    kwargs = manifest()["models"]["lsnet_tiny"]["official_kwargs"]
    model = create_model("lsnet_t", num_classes=kwargs["num_classes"], image_size=kwargs["img_size"], **architecture())
    images = jnp.asarray(fixture()["input"].transpose(0, 2, 3, 1))  # NCHW -> NHWC
    logits, state = jax.jit(functools.partial(model.apply, mutable=["intermediates"]))(variables, images)
    return np.asarray(logits), {k: np.asarray(v[0]) for k, v in state["intermediates"].items()}  # sown: 1-tuples


def assert_close_to_scale(actual, expected, what):
    helpers.assert_close_to_scale(actual, expected, what, TOLERANCE)


# --- golden parity with the official code ---------------------------------------------------------


def test_the_fixture_is_the_one_the_manifest_describes():
    entry = manifest()["models"]["lsnet_tiny"]
    assert len(manifest()["official_commit"]) == 40
    with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"]
    assert fixture()["logits"].std() > 0.1
    variables = importer.convert("lsnet_t", official_state_dict(), **architecture())
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    head_dist = [
        v.size
        for k, v in official_state_dict(distilled=True).items()
        if k.startswith("head_dist.") and not k.endswith(statistics)
    ]
    assert count_params(variables) + sum(head_dist) == entry["parameters"]  # the official model has both heads


def test_converted_tiny_lsnet_reproduces_the_official_logits_features_and_stages():
    expected = fixture()
    variables = importer.convert("lsnet_t", official_state_dict(), **architecture())  # classes, size: from weights
    logits, intermediates = run_mixtok(variables)
    assert_close_to_scale(logits, expected["logits"], "logits")
    assert_close_to_scale(intermediates["pre_logits"], expected["pre_logits"], "pooled features")
    for stage in ("stage1", "stage2", "stage3", "stage4"):
        assert_close_to_scale(intermediates[stage], expected[stage], f"{stage} output")


def test_the_fixture_catches_transposed_bias_offsets_and_ignored_running_statistics():
    """The fixture has teeth: the bias table read as |dx| * R + |dy|, or BatchNorm without its running
    statistics, moves the logits far beyond the tolerance."""
    expected = fixture()["logits"]
    tolerance = TOLERANCE * float(np.abs(expected).max())
    variables = importer.convert("lsnet_t", official_state_dict(), **architecture())
    transposed = jax.tree.map(np.copy, variables)
    biases = transposed["params"]["blocks4_3"]["mixer"]["attention_biases"]  # [heads, 2 * 2]: offsets (dy, dx)
    biases[:, [1, 2]] = biases[:, [2, 1]]  # (0, 1) <-> (1, 0)
    assert np.abs(run_mixtok(transposed)[0] - expected).max() > 100 * tolerance
    fresh = jax.tree.map(np.copy, variables)
    fresh["batch_stats"] = jax.tree_util.tree_map_with_path(
        lambda path, x: np.ones_like(x) if path[-1].key == "var" else np.zeros_like(x), fresh["batch_stats"]
    )
    assert np.abs(run_mixtok(fresh)[0] - expected).max() > 100 * tolerance


def test_to_official_gives_back_the_official_state_dict_exactly():
    expected = official_state_dict()
    exported = importer.to_official(
        "lsnet_t", importer.convert("lsnet_t", expected, **architecture()), **architecture()
    )
    assert set(exported) == set(expected)
    for key, value in expected.items():
        assert exported[key].dtype == value.dtype, key
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


# --- the mapping of the full-size models ---------------------------------------------------------

# Read from the official LSNet(img_size=224, num_classes=1000, ...).state_dict() of lsnet_t / lsnet_s / lsnet_b.
OFFICIAL_FACTS = {
    "lsnet_t": (
        696,
        {
            "patch_embed.0.c.weight": (16, 3, 3, 3),
            "blocks2.0.c.weight": (64, 1, 3, 3),
            "blocks3.3.mixer.lkp.cv4.weight": (288, 128, 1, 1),
            "blocks4.3.mixer.m.qkv.c.weight": (512, 384, 1, 1),
            "blocks4.3.mixer.m.attention_biases": (4, 16),
            "blocks4.3.mixer.m.attention_bias_idxs": (16, 16),
            "blocks4.2.se.fc1.weight": (96, 384, 1, 1),
            "head.l.weight": (1000, 384),
        },
    ),
    "lsnet_s": (724, {"blocks3.3.mixer.lkp.cv4.weight": (360, 160, 1, 1), "blocks4.2.se.fc1.weight": (112, 448, 1, 1)}),
    "lsnet_b": (964, {"blocks4.3.mixer.m.qkv.c.weight": (640, 512, 1, 1), "head.l.weight": (1000, 512)}),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_FACTS))
def test_official_keys_and_shapes_are_those_of_the_official_state_dict(name):
    count, samples = OFFICIAL_FACTS[name]
    shapes = importer.official_shapes(name)
    assert len(shapes) == count
    assert {k: shapes[k] for k in samples} == samples
    assert shapes["blocks4.3.mixer.m.proj.1.bn.num_batches_tracked"] == ()


def random_variables(seed=0, **overrides):
    """Variables of the tiny architecture with standard-normal values (variances positive)."""
    model = create_model("lsnet_t", num_classes=10, **{**architecture(), **overrides})
    size = model.image_size
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: np.abs(rng.standard_normal(s.shape)).astype(np.float32), shapes)


def test_image_size_is_read_from_the_attention_bias_table_of_a_fine_tuned_checkpoint():
    variables = random_variables(image_size=192)  # stage-4 map 3 x 3
    state_dict = importer.to_official("lsnet_t", variables, **architecture())
    assert state_dict["blocks4.3.mixer.m.attention_biases"].shape == (2, 9)
    index = state_dict["blocks4.3.mixer.m.attention_bias_idxs"]
    assert index.shape == (9, 9) and index.dtype == np.int64
    # |dy| * 3 + |dx|: point 0 (0, 0) to points (0, 1), (0, 2), (1, 0); point 1 (0, 1) to point 3 (1, 0).
    assert index[0, 1:4].tolist() == [1, 2, 3] and index[1, 3] == 4
    assert_trees_equal(importer.convert("lsnet_t", state_dict, **architecture()), variables)


def test_layouts_conv_hwio_to_oihw_linear_transposed_and_the_residual_wrappers():
    variables = random_variables()
    state_dict = importer.to_official("lsnet_t", variables, **architecture())
    params, statistics = variables["params"], variables["batch_stats"]
    large_kernel = params["blocks2_3"]["mixer"]["lkp"]["cv2"]["conv"]["kernel"]  # [7, 7, 1, C]
    np.testing.assert_array_equal(state_dict["blocks2.3.mixer.lkp.cv2.c.weight"], large_kernel.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(state_dict["head.l.weight"], params["head_l"]["kernel"].T)
    proj_var = statistics["blocks4_3"]["mixer"]["proj"]["bn"]["var"]
    np.testing.assert_array_equal(state_dict["blocks4.3.mixer.m.proj.1.bn.running_var"], proj_var)
    ffn_scale = params["blocks3_2"]["pw2"]["bn"]["scale"]
    np.testing.assert_array_equal(state_dict["blocks3.2.ffn.m.pw2.bn.weight"], ffn_scale)


# --- bad input -------------------------------------------------------------------------------------


def test_unknown_names_list_the_valid_ones():
    assert importer.resolve_name("lsnet-t") == "lsnet_t"
    with pytest.raises(ValueError, match="Did you mean 'lsnet_t'.*Valid LSNet variants: lsnet_b, lsnet_s, lsnet_t"):
        importer.convert("lsnet_tt", {})


def test_a_bad_state_dict_is_reported_with_every_key_and_shape_at_once():
    state_dict = official_state_dict()
    del state_dict["blocks2.3.mixer.lkp.norm.weight"]
    state_dict["blocks1.0.extra.weight"] = np.zeros(3, np.float32)
    state_dict["blocks3.2.ffn.m.pw1.c.weight"] = np.zeros((60, 32, 1, 1), np.float32)
    with pytest.raises(ValueError) as info:
        importer.convert("lsnet_t", state_dict, **architecture())
    message = str(info.value)
    assert "3 problem(s)" in message
    assert "blocks2.3.mixer.lkp.norm.weight (mixtok blocks2_3/mixer/lkp/norm/scale)" in message
    assert "blocks1.0.extra.weight" in message
    assert "blocks3.2.ffn.m.pw1.c.weight: expected (64, 32, 1, 1), got (60, 32, 1, 1)" in message


def test_a_distilled_checkpoint_is_named_as_such_unless_a_distillation_head_option_is_given():
    with pytest.raises(ValueError, match="distillation head of a \\*_distill checkpoint(.|\n)*head_dist.l.weight"):
        importer.convert("lsnet_t", official_state_dict(distilled=True), **architecture())
    with pytest.raises(ValueError, match="distillation_head='mean'; valid: None, 'average', 'drop'"):
        importer.convert("lsnet_t", official_state_dict(distilled=True), distillation_head="mean", **architecture())


@pytest.mark.parametrize("option, output", [("average", "distilled_logits"), ("drop", "logits")])
def test_a_distilled_checkpoint_reproduces_the_official_distilled_eval_output_or_its_head(option, output):
    state_dict = official_state_dict(distilled=True)
    variables = importer.convert("lsnet_t", state_dict, distillation_head=option, **architecture())
    assert_close_to_scale(run_mixtok(variables)[0], fixture()[output], output)
    assert np.abs(fixture()["distilled_logits"] - fixture()["logits"]).max() > 0.1  # the two heads differ


def test_attention_bias_indices_in_another_order_are_refused():
    state_dict = official_state_dict()
    state_dict["blocks4.3.mixer.m.attention_bias_idxs"] = state_dict["blocks4.3.mixer.m.attention_bias_idxs"].T[::-1]
    with pytest.raises(ValueError, match="blocks4.3.mixer.m.attention_bias_idxs: not the official offset order"):
        importer.convert("lsnet_t", state_dict, **architecture())


def test_training_checkpoint_wrappers_ddp_prefixes_and_missing_buffers_are_accepted():
    state_dict = official_state_dict()
    expected = importer.convert("lsnet_t", state_dict, **architecture())
    wrapped = {"model": {f"module.{k}": v for k, v in state_dict.items()}, "epoch": np.array(299)}
    assert_trees_equal(importer.convert("lsnet_t", wrapped, **architecture()), expected)
    # utils.load_model (fine-tuning at another size) deletes attention_bias_idxs; num_batches_tracked is unused.
    bare = {k: v for k, v in state_dict.items() if not k.endswith(("attention_bias_idxs", "num_batches_tracked"))}
    assert_trees_equal(importer.convert("lsnet_t", {"state_dict": bare}, **architecture()), expected)


def test_to_official_rejects_variables_of_another_configuration():
    variables = importer.convert("lsnet_t", official_state_dict(), **architecture())
    with pytest.raises(ValueError, match="24 problem.*\n  missing(.|\n)*blocks4_4/pw1/conv/kernel"):
        importer.to_official("lsnet_t", variables, **{**architecture(), "depths": (1, 2, 2, 3)})


def test_cli_refuses_to_overwrite_the_output_with_exit_code_2(tmp_path, capsys):
    checkpoint, output = tmp_path / "lsnet_t.pth", tmp_path / "out.msgpack"
    checkpoint.write_bytes(b"not read")
    output.write_bytes(b"precious")
    assert importer.main(["lsnet_t", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert importer.main(["lsnet_x", str(checkpoint), str(tmp_path / "new.msgpack")]) == 2
    assert capsys.readouterr().err.startswith("error: Unknown LSNet variant 'lsnet_x'.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lsnet_t.pth", "out.msgpack"]


# --- files written by torch ------------------------------------------------------------------------


def save_main_py_checkpoint(torch, path, state_dict, ema_state_dict):
    """As main.py saves it: the weights under 'model', the EMA weights under 'model_ema', beside the run's state."""
    tensors = lambda arrays: {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}  # noqa: E731
    torch.save(
        {
            "model": tensors(state_dict),
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
            "epoch": 299,
            "model_ema": tensors(ema_state_dict),
            "args": argparse.Namespace(model="lsnet_t", lr=4e-3),
        },
        path,
    )


def test_load_state_dict_takes_model_or_with_ema_model_ema(tmp_path):
    torch = pytest.importorskip("torch")
    state_dict = official_state_dict()
    ema = {k: (v + 1 if k == "head.l.bias" else v) for k, v in state_dict.items()}
    path = tmp_path / "checkpoint_best.pth"
    save_main_py_checkpoint(torch, path, state_dict, ema)
    np.testing.assert_array_equal(importer.load_state_dict(path)["head.l.bias"], state_dict["head.l.bias"])
    np.testing.assert_array_equal(importer.load_state_dict(path, ema=True)["head.l.bias"], ema["head.l.bias"])
    bare = tmp_path / "lsnet_t.pth"
    torch.save({k: torch.from_numpy(v) for k, v in state_dict.items()}, bare)
    with pytest.raises(ValueError, match="has no 'model_ema' state dict"):
        importer.load_state_dict(bare, ema=True)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "mixtok.interop.lsnet", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu"},
    )


def test_cli_converts_a_main_py_checkpoint_written_by_torch(tmp_path):
    torch = pytest.importorskip("torch")
    model = create_model("lsnet_t")
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
    )
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32), shapes)
    state_dict = importer.to_official("lsnet_t", variables)
    checkpoint, output = tmp_path / "lsnet_t.pth", tmp_path / "out.msgpack"
    save_main_py_checkpoint(torch, checkpoint, state_dict, {k: -v for k, v in state_dict.items()})
    result = run_cli("lsnet_t", checkpoint, output)
    assert result.returncode == 0, result.stderr
    assert "11,409,832 parameters of lsnet_t (1000 classes) and 67,936 BatchNorm statistics" in result.stdout
    assert_trees_equal(load_variables(output), variables)  # checkpoint['model'], not 'model_ema'


def test_cli_reports_a_checkpoint_of_another_architecture_with_exit_code_2(tmp_path):
    torch = pytest.importorskip("torch")
    checkpoint, output = tmp_path / "lsnet_t.pth", tmp_path / "out.msgpack"
    save_main_py_checkpoint(torch, checkpoint, official_state_dict(), official_state_dict())
    result = run_cli("lsnet_t", checkpoint, output)  # the tiny fixture is not lsnet_t's architecture
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: The LSNet state dict does not fit mixtok's lsnet_t")
    assert "patch_embed.0.c.weight: expected (16, 3, 3, 3), got (4, 3, 3, 3)" in result.stderr
    assert not output.exists()
