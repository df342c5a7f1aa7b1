"""Official FFNet checkpoints -> mixtok: parity with the official code's outputs (no torch), both forms, errors, CLI.

tests/fixtures/ffnet holds two tiny FFNets built and run by ysj9909/FFNet's models/ffnet.py (unmodified; the
commit is in manifest.json) with every parameter and BatchNorm statistic random: the official training-form
state dict, the state dict after export_model.py's `replace_batchnorm` (the fused inference form), a seeded
32 x 64 input, and the official logits, pooled features and stage outputs of both forms.
tools/make_ffnet_fixtures.py writes them. Outputs must agree within rtol 1e-5 and an atol of 1e-5 times the
tensor's largest magnitude (float32 rounding's scale). The key facts of the full-size models below were read
from the official `ffnet_N().state_dict()` and after `replace_batchnorm`; torch only writes .pth.tar files.
"""

import argparse
import functools
import hashlib
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import ffnet as importer
from mixtok.interop.weight_files import load_variables
from mixtok.models import count_params, create_model
from mixtok.models.ffnet import fuse_ffnet
from tests import helpers
from tests.interop.test_timm import assert_trees_equal

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "ffnet")
TOLERANCE = 1e-5
FORMS = {False: ("state_dict/", "logits"), True: ("fused_state_dict/", "fused_logits")}  # fused: (prefix, logits)
CASES = [(model, fused) for model in ("ffnet_layer_scale", "ffnet_plain") for fused in (False, True)]


@functools.cache
def manifest():
    return helpers.read_manifest(FIXTURES)


@functools.cache
def fixture(model):
    return helpers.read_npz(os.path.join(FIXTURES, manifest()["models"][model]["file"]))


def state_dict(model, fused=False):
    prefix = FORMS[fused][0]
    return {k[len(prefix) :]: v for k, v in fixture(model).items() if k.startswith(prefix)}


def architecture(model):
    """mixtok's create_model overrides for the manifest's official FFNet arguments."""
    kw = manifest()["models"][model]["official_kwargs"]
    return dict(
        depths=tuple(kw["depth"]),
        dims=tuple(kw["embed_dim"]),
        in_dim=kw["in_dim"],
        kernel_sizes=tuple(kw["kernel_sizes"]),
        kernel_sizes1=tuple(kw["kernel_sizes1"]),
        kernel_sizes2=tuple(kw["kernel_sizes2"]),
        mlp_ratios=tuple(kw["expansion_ratios"]),
        layer_scale_init=kw["layer_scale_init_value"] if kw["use_layer_scale"] else None,
    )


def run_mixtok(model, variables, fused):
    num_classes = manifest()["models"][model]["official_kwargs"]["num_classes"]
    module = create_model("ffnet_1", num_classes=num_classes, fused=fused, **architecture(model))
    images = jnp.asarray(fixture(model)["input"].transpose(0, 2, 3, 1))  # NCHW -> NHWC

    def forward(v, x):  # logits, the sown pooled features, and the stage maps of the feature interface
        logits, state = module.apply(v, x, mutable=["intermediates"])
        stages = module.apply(v, x, method="intermediates")
        return logits, state["intermediates"]["pre_logits"][0], stages

    return jax.tree.map(np.asarray, jax.jit(forward)(variables, images))


def assert_close_to_scale(actual, expected, what):
    helpers.assert_close_to_scale(actual, expected, what, TOLERANCE)


def test_the_fixtures_are_the_ones_the_manifest_describes():
    assert len(manifest()["official_commit"]) == 40
    for model, entry in manifest()["models"].items():
        with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"], model
        assert fixture(model)["logits"].std() > 0.1
        for fused, count in ((False, entry["parameters"]), (True, entry["fused_parameters"])):
            official = state_dict(model, fused)
            assert sum(v.size for k, v in official.items() if "running_" not in k and "tracked" not in k) == count
            assert count_params(importer.convert("ffnet_1", official, **architecture(model))) == count


@pytest.mark.parametrize("model,fused", CASES)
def test_converted_tiny_ffnet_reproduces_the_official_outputs(model, fused):
    expected = fixture(model)
    variables = importer.convert("ffnet_1", state_dict(model, fused), **architecture(model))  # form: from the keys
    assert ("conv" in variables["params"]["patch_embed_0"]) == (not fused)
    logits, pre_logits, stages = run_mixtok(model, variables, fused)
    assert_close_to_scale(logits, expected[FORMS[fused][1]], "logits")
    if not fused:  # the official fused model is run for its logits only
        assert_close_to_scale(pre_logits, expected["pre_logits"], "pooled features")
        assert len(stages) == 4
        for i, stage in enumerate(stages):
            assert_close_to_scale(stage, expected[f"stage{i}"], f"stage{i} output")


@pytest.mark.parametrize("model", ["ffnet_layer_scale", "ffnet_plain"])
def test_mixtok_fusion_of_the_converted_training_form_equals_the_official_fused_weights(model):
    """mixtok's fuse_ffnet against export_model.py's replace_batchnorm, weight by weight."""
    arch = architecture(model)
    fused = jax.tree.map(np.asarray, fuse_ffnet(importer.convert("ffnet_1", state_dict(model), **arch)))
    official = importer.convert("ffnet_1", state_dict(model, fused=True), **arch)
    assert jax.tree.structure(fused) == jax.tree.structure(official)
    for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(fused), jax.tree.leaves(official)):
        assert_close_to_scale(got, want, jax.tree_util.keystr(path))


def test_the_fixture_catches_swapped_statistics_and_a_transposed_kernel():
    """The fixtures have teeth: a BatchNorm's running mean and variance swapped (training form), or one 7 x 7
    depthwise kernel transposed (fused form), move the logits far past the tolerance."""
    model, arch = "ffnet_layer_scale", architecture("ffnet_layer_scale")
    variables = importer.convert("ffnet_1", state_dict(model), **arch)
    bn = variables["batch_stats"]["stages_0_0"]["token_mixer_0_main"]["fc"]["bn"]
    bn["mean"], bn["var"] = bn["var"], bn["mean"] ** 2 + 0.5
    fused = importer.convert("ffnet_1", state_dict(model, fused=True), **arch)
    conv = fused["params"]["stages_2_1"]["token_mixer_0_main"]["conv1"]
    conv["kernel"] = np.ascontiguousarray(conv["kernel"].transpose(1, 0, 2, 3))
    for v, is_fused, reference in ((variables, False, "logits"), (fused, True, "fused_logits")):
        scale = float(np.abs(fixture(model)[reference]).max())
        assert np.abs(run_mixtok(model, v, is_fused)[0] - fixture(model)[reference]).max() > 100 * TOLERANCE * scale


@pytest.mark.parametrize("model,fused", CASES)
def test_to_official_gives_back_the_official_state_dict_exactly(model, fused):
    arch = architecture(model)
    exported = importer.to_official("ffnet_1", importer.convert("ffnet_1", state_dict(model, fused), **arch), **arch)
    expected = state_dict(model, fused)
    assert set(exported) == set(expected)  # every key of the official state_dict(): loads with strict=True
    for key, value in expected.items():
        assert exported[key].dtype == value.dtype, key
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


# Read from the official models' state_dict() with 1000 classes (ysj9909/FFNet @ f3c3e4c5): training form, and
# after export_model.py's replace_batchnorm.
OFFICIAL_FACTS = {
    "ffnet_1": (
        553,
        191,
        {
            "stages.1.0.proj.0.conv.c.weight": (160, 1, 7, 7),
            "stages.1.0.proj.1.conv.bn.running_var": (160,),
            "stages.1.0.proj.1.conv.c.weight": (160, 160, 1, 1),
            "stages.2.3.token_mixer.0.main.conv1.conv1.c.weight": (320, 1, 3, 3),
            "stages.3.1.channel_mixer.main.conv.c.weight": (640, 1, 3, 3),
            "patch_embed.2.bn.num_batches_tracked": (),
            "head.weight": (1000, 640),
        },
        {
            "patch_embed.0.weight": (64, 3, 3, 3),
            "stages.1.0.proj.0.weight": (160, 1, 7, 7),
            "stages.1.0.proj.1.weight": (160, 160, 1, 1),
            "stages.1.0.proj.1.bias": (160,),
            "stages.2.3.token_mixer.0.main.conv1.weight": (320, 1, 7, 7),
            "stages.3.1.channel_mixer.main.conv.weight": (640, 1, 3, 3),
            "norm.num_batches_tracked": (),
        },
    ),
    "ffnet_2": (1057, 311, {"stages.3.1.channel_mixer.main.conv.conv.c.weight": (704, 1, 7, 7)}, {}),
    "ffnet_3": (
        1593,
        513,
        {
            "stages.0.0.token_mixer.0.layer_scale": (96, 1, 1),
            "stages.0.0.channel_mixer.layer_scale": (96, 1, 1),
            "stages.3.1.channel_mixer.main.conv.conv.c.weight": (768, 1, 7, 7),
            "head.weight": (1000, 768),
        },
        {
            "stages.3.1.channel_mixer.main.conv.weight": (768, 1, 7, 7),
            "stages.2.1.token_mixer.0.layer_scale": (384, 1, 1),
        },
    ),
    "ffnet_4": (1737, 555, {"stages.1.0.proj.1.conv.c.weight": (256, 256, 1, 1)}, {"stages.1.0.proj.1.bias": (256,)}),
}


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("name", sorted(OFFICIAL_FACTS))
def test_official_keys_and_shapes_are_those_of_the_official_state_dicts(name, fused):
    count, fused_count, samples, fused_samples = OFFICIAL_FACTS[name]
    shapes = importer.official_shapes(name, fused=fused)
    assert len(shapes) == (fused_count if fused else count)
    expected = fused_samples if fused else samples
    assert {k: shapes[k] for k in expected} == expected


def small_case(fused=False):
    model = "ffnet_layer_scale"
    return architecture(model), state_dict(model, fused)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"Did you mean 'ffnet_1'.*Valid FFNet variants: ffnet_1, ffnet_2, ffnet_3"):
        importer.convert("ffnet_11", {})
    assert importer.resolve_name("ffnet-3") == "ffnet_3"


def test_a_bad_state_dict_is_reported_with_every_problem_at_once():
    arch, sd = small_case()
    del sd["stages.2.1.channel_mixer.main.fc1.bias"]
    sd["stages.0.0.token_mixer.0.se.weight"] = np.zeros(3, np.float32)
    sd["stages.0.0.token_mixer.0.layer_scale"] = np.ones(8, np.float32)  # [C], not the official [C, 1, 1]
    with pytest.raises(ValueError) as info:
        importer.convert("ffnet_1", sd, **arch)
    message = str(info.value)
    assert "3 problem(s)" in message
    assert "stages.2.1.channel_mixer.main.fc1.bias (mixtok stages_2_1/channel_mixer_main/fc1/bias)" in message
    assert "stages.0.0.token_mixer.0.se.weight" in message
    assert "stages.0.0.token_mixer.0.layer_scale: expected (8, 1, 1), got (8,)" in message


def test_a_state_dict_of_the_other_form_gets_a_hint():
    arch, sd = small_case()
    with pytest.raises(ValueError, match=r"training form's .*pass fused=False"):
        importer.convert("ffnet_1", sd, fused=True, **arch)
    with pytest.raises(ValueError, match=r"fused form's .*pass fused=True"):
        importer.convert("ffnet_1", small_case(fused=True)[1], fused=False, **arch)


def test_checkpoint_wrappers_and_ddp_prefixes_are_removed():
    arch, sd = small_case()
    expected = importer.convert("ffnet_1", sd, **arch)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": np.array(299)}
    assert_trees_equal(importer.convert("ffnet_1", wrapped, **arch), expected)


def test_a_headless_checkpoint_gives_a_model_without_classifier():
    arch, sd = small_case()
    del sd["head.weight"], sd["head.bias"]
    variables = importer.convert("ffnet_1", sd, **arch)
    assert "head" not in variables["params"]
    assert set(importer.to_official("ffnet_1", variables, **arch)) == set(sd)


def test_to_official_rejects_variables_of_another_configuration():
    arch, sd = small_case()
    variables = importer.convert("ffnet_1", sd, **arch)
    with pytest.raises(ValueError, match="stages_2_2/channel_mixer_main/fc1/kernel"):
        importer.to_official("ffnet_1", variables, **{**arch, "depths": (1, 1, 1, 1)})


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "mixtok.interop.ffnet", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu"},
    )


def test_cli_bad_input_is_one_error_line_and_exit_code_2(tmp_path, capsys):
    checkpoint, output = tmp_path / "ffnet_1.pth.tar", tmp_path / "out.msgpack"
    checkpoint.write_bytes(b"not read")
    output.write_bytes(b"precious")
    assert importer.main(["ffnet_1", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert importer.main(["ffnet_9", str(checkpoint), str(tmp_path / "new.msgpack")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown FFNet variant 'ffnet_9'") and err.count("\n") == 1
    assert importer.main(["ffnet_1", str(tmp_path / "missing.pth.tar"), str(tmp_path / "new.msgpack")]) == 2
    assert "No checkpoint file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ffnet_1.pth.tar", "out.msgpack"]


def test_cli_without_torch_reads_no_pth_tar_and_says_why(tmp_path):
    try:
        import torch  # noqa: F401

        pytest.skip("torch is installed: test_cli_converts_a_train_py_checkpoint_written_by_torch reads .pth.tar")
    except ImportError:
        pass
    checkpoint = tmp_path / "ffnet_1.pth.tar"
    checkpoint.write_bytes(b"not read")
    result = run_cli("ffnet_1", checkpoint, tmp_path / "out.msgpack")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: Reading {checkpoint} (.tar) needs PyTorch: pip install torch.")
    assert result.stderr.count("\n") == 1


def random_official_state_dict(name, fused=False, seed=0):
    """A whole official state dict of `name` with random values (num_batches_tracked 0), from the key table."""
    rng = np.random.default_rng(seed)
    return {
        k: rng.standard_normal(shape).astype(np.float32) if shape else np.array(0, np.int64)
        for k, shape in importer.official_shapes(name, fused=fused).items()
    }


@pytest.mark.parametrize("fused", [False, True])
def test_cli_converts_a_safetensors_state_dict_of_either_form(tmp_path, fused):
    save_file = pytest.importorskip("safetensors.numpy").save_file
    official = random_official_state_dict("ffnet_1", fused)
    checkpoint, output = tmp_path / "ffnet_1.safetensors", tmp_path / "out.msgpack"
    save_file({k: v for k, v in official.items() if v.ndim}, str(checkpoint))  # num_batches_tracked is optional
    result = run_cli("ffnet_1", checkpoint, output)
    assert result.returncode == 0, result.stderr
    form, count = ("fused", "13,660,152") if fused else ("training", "13,775,656")
    assert f"Wrote {count} parameters of ffnet_1 ({form} form, 1000 classes)" in result.stdout
    exported = importer.to_official("ffnet_1", load_variables(output))
    assert set(exported) == set(official)
    for key, value in official.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_cli_converts_a_train_py_checkpoint_written_by_torch(tmp_path):
    torch = pytest.importorskip("torch")
    official = random_official_state_dict("ffnet_3")
    checkpoint, output = tmp_path / "ffnet_3.pth.tar", tmp_path / "out.msgpack"
    # As train.py's timm CheckpointSaver writes it: the weights under 'state_dict', beside the run's arguments.
    torch.save(
        {
            "epoch": 299,
            "arch": "ffnet_3",
            "state_dict": {k: torch.from_numpy(v) for k, v in official.items()},
            "version": 2,
            "args": argparse.Namespace(model="ffnet_3", lr=1e-3),
        },
        checkpoint,
    )
    result = run_cli("ffnet_3", checkpoint, output)
    assert result.returncode == 0, result.stderr
    assert "Wrote 48,817,896 parameters of ffnet_3 (training form, 1000 classes)" in result.stdout
    exported = importer.to_official("ffnet_3", load_variables(output))
    for key, value in official.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    ema = run_cli("ffnet_3", checkpoint, tmp_path / "ema.msgpack", "--ema")
    assert ema.returncode == 2 and "has no 'state_dict_ema'" in ema.stderr
    damaged = tmp_path / "damaged.pth.tar"
    damaged.write_bytes(checkpoint.read_bytes()[:1000])
    result = run_cli("ffnet_3", damaged, tmp_path / "damaged.msgpack")
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
