"""Official MS-MLP checkpoints -> mixtok: golden parity, the key mapping, errors, wrappers and the CLI.

tests/fixtures/ms_mlp holds two tiny `MS_MLP`s built by JegZheng/MS-MLP's models/ms_mlp.py (unmodified; the commit
is in manifest.json): one with the released configs' five shifts and kernel sizes at 64 px, one with three shifts
and other kernel sizes at 32 x 64 px; every parameter random, a seeded input, and the official eval-mode logits,
pooled features and stage outputs. tools/make_ms_mlp_fixtures.py writes them from the official code.
`mixtok.interop.ms_mlp.convert` must turn the state dict into variables with which mixtok reproduces every output:
logits within rtol = atol = 1e-5, features within rtol 1e-5 and an atol of 1e-5 times the tensor's largest
magnitude. The official key names and shapes below were read from `MS_MLP(...).state_dict()` @ a10d34d9. torch
only writes .pth files here (skipped without it).
"""

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

from mixtok.interop import ms_mlp as importer
from mixtok.interop.weight_files import load_variables
from mixtok.models import count_params, create_model
from tests import helpers
from tests.interop.test_timm import assert_trees_equal

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "ms_mlp")
TOLERANCE = 1e-5
STATE_DICT = "state_dict/"
MODELS = ("ms_mlp_tiny", "ms_mlp_tiny_three_shifts")
SMALL = dict(depths=(1, 2, 1, 1), dims=(10, 20, 40, 80), mlp_ratios=2.0)  # mapping tests: no official output


@functools.cache
def manifest():
    return helpers.read_manifest(FIXTURES)


@functools.cache
def fixture(model):
    return helpers.read_npz(os.path.join(FIXTURES, manifest()["models"][model]["file"]))


def state_dict(model):
    return {k[len(STATE_DICT) :]: v for k, v in fixture(model).items() if k.startswith(STATE_DICT)}


def architecture(model):
    """create_model overrides from the manifest's official constructor arguments (checked against its own list)."""
    kwargs = manifest()["models"][model]["official_kwargs"]
    overrides = dict(
        depths=tuple(kwargs["depths"]),
        dims=tuple(kwargs["embed_dim"] * 2**i for i in range(4)),
        mlp_ratios=kwargs["mlp_ratio"],
    )
    if kwargs["shift_dist"] != [-2, -1, 0, 1, 2]:
        overrides.update(shift_dist=tuple(kwargs["shift_dist"]), mix_sizes=tuple(map(tuple, kwargs["mix_size"])))
    assert kwargs["shift_size"] == len(kwargs["shift_dist"])
    assert overrides == {k: tuple(map(tuple, v)) if k == "mix_sizes" else v for k, v in _listed(model).items()}
    return overrides


def _listed(model):
    listed = dict(manifest()["models"][model]["mixtok_overrides"])
    return {k: tuple(v) if isinstance(v, list) else v for k, v in listed.items()}


def convert(model):  # num_classes: read from the weights
    return importer.convert("ms_mlp_t", state_dict(model), **architecture(model))


@functools.cache
def _forward(model):
    """The jitted mixtok forward of a fixture's architecture (compiled once per fixture)."""
    module = create_model("ms_mlp_t", num_classes=10, **architecture(model))

    def forward(v, x):  # logits, the sown pooled features, and the stage maps of the feature interface
        logits, state = module.apply(v, x, mutable=["intermediates"])
        return logits, state["intermediates"]["head"]["pre_logits"][0], module.apply(v, x, method="intermediates")

    return jax.jit(forward)


def run_mixtok(model, variables):
    images = jnp.asarray(fixture(model)["input"].transpose(0, 2, 3, 1))  # NCHW -> NHWC
    logits, pre_logits, stages = _forward(model)(variables, images)
    return np.asarray(logits), np.asarray(pre_logits), [np.asarray(s) for s in stages]


def assert_close_to_scale(actual, expected, what):
    helpers.assert_close_to_scale(actual, expected, what, TOLERANCE)


def random_variables(seed=0, num_classes=10, small=True, **overrides):
    """Variables of the right tree with standard-normal values (no leaf left at its init constant)."""
    model = create_model("ms_mlp_t", num_classes=num_classes, **{**(SMALL if small else {}), **overrides})
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


def test_the_fixtures_are_the_ones_the_manifest_describes():
    assert sorted(manifest()["models"]) == sorted(MODELS)
    assert manifest()["official_commit"] == "a10d34d955c6061c767600937b534abd8a200871"
    for model, entry in manifest()["models"].items():
        with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"], model
        assert fixture(model)["logits"].std() > 0.1
        assert list(fixture(model)["input"].shape[2:]) == entry["image_size"]
        official_parameters = sum(v.size for v in state_dict(model).values())  # MS_MLP has no buffers
        assert count_params(convert(model)) == entry["parameters"] == official_parameters


@pytest.mark.parametrize("model", MODELS)
def test_converted_tiny_ms_mlp_reproduces_the_official_outputs(model):
    expected = fixture(model)
    logits, pre_logits, stages = run_mixtok(model, convert(model))
    np.testing.assert_allclose(logits, expected["logits"], rtol=TOLERANCE, atol=TOLERANCE, err_msg="logits")
    assert_close_to_scale(pre_logits, expected["pre_logits"], "pooled features")
    assert len(stages) == 4
    for i, stage in enumerate(stages):
        assert_close_to_scale(stage, expected[f"stage{i}"], f"stage{i} output")


@pytest.mark.parametrize(
    "change",
    ["swap the lr and td convs", "opposite shifts"],
)
def test_the_fixture_has_teeth_for_the_shift_direction_and_the_branches(change):
    """Swapping the branches' convs (W and H confused), or negating the shifts, misses the official logits."""
    model = "ms_mlp_tiny"
    variables = convert(model)
    if change == "opposite shifts":
        module = create_model("ms_mlp_t", num_classes=10, **dict(architecture(model), shift_dist=(2, 1, 0, -1, -2)))
        logits = np.asarray(jax.jit(module.apply)(variables, fixture(model)["input"].transpose(0, 2, 3, 1)))
    else:  # the same model as the golden test (its compiled forward)
        block = variables["params"]["layers_0_blocks_0"]["mixer"]
        for g in range(5):
            block[f"dwconv_lr_{g}"], block[f"dwconv_td_{g}"] = block[f"dwconv_td_{g}"], block[f"dwconv_lr_{g}"]
        logits, _, _ = run_mixtok(model, variables)
    assert np.abs(logits - fixture(model)["logits"]).max() > 1e3 * TOLERANCE


@pytest.mark.parametrize("model", MODELS)
def test_to_official_gives_back_the_official_state_dict_exactly(model):
    exported = importer.to_official("ms_mlp_t", convert(model), **architecture(model))
    expected = state_dict(model)
    assert set(exported) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_to_official_then_convert_restores_every_variable_exactly():
    variables = random_variables()
    state_dict_ = importer.to_official("ms_mlp_t", variables, **SMALL)
    assert all(isinstance(v, np.ndarray) and v.flags.c_contiguous for v in state_dict_.values())
    block = variables["params"]["layers_1_blocks_1"]
    np.testing.assert_array_equal(
        state_dict_["layers.1.blocks.1.dwconv_td.4.weight"],
        block["mixer"]["dwconv_td_4"]["kernel"].transpose(3, 2, 0, 1),
    )
    np.testing.assert_array_equal(state_dict_["layers.1.blocks.1.pwconv2.weight"], block["mlp"]["fc2"]["kernel"].T)
    np.testing.assert_array_equal(state_dict_["norm.weight"], variables["params"]["head"]["norm"]["scale"])
    np.testing.assert_array_equal(state_dict_["head.weight"], variables["params"]["head"]["fc"]["kernel"].T)
    assert_trees_equal(importer.convert("ms_mlp_t", state_dict_, **SMALL), variables)


# Read from the official MS_MLP(...).state_dict() with 1000 classes at 224 px (models/ms_mlp.py @ a10d34d9).
OFFICIAL_FACTS = {
    "ms_mlp_t": (
        506,
        {
            "patch_embed.proj.weight": (96, 3, 4, 4),
            "patch_embed.norm.weight": (96,),
            "layers.0.blocks.2.dwconv_lr.4.weight": (16, 1, 7, 7),
            "layers.1.blocks.0.dwconv_td.1.weight": (39, 1, 3, 3),
            "layers.2.blocks.8.dwconv_lr.4.bias": (76,),
            "layers.2.downsample.proj.weight": (768, 384, 2, 2),
            "layers.3.blocks.2.pwconv1.weight": (3072, 768),
            "layers.3.blocks.2.gamma": (768,),
            "layers.3.blocks.0.dwconv_lr.1.weight": (154, 1, 7, 7),
            "norm.bias": (768,),
            "head.weight": (1000, 768),
        },
    ),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_FACTS))
def test_official_keys_and_shapes_are_those_of_the_official_state_dict(name):
    count, samples = OFFICIAL_FACTS[name]
    shapes = importer.official_shapes(name)
    assert len(shapes) == count
    assert {k: shapes[k] for k in samples} == samples


def test_official_model_names_are_accepted_and_unknown_names_list_close_matches():
    assert importer.resolve_name("ms_mlp_small_patch4_shift5_224") == importer.resolve_name("ms-mlp-s") == "ms_mlp_s"
    with pytest.raises(ValueError, match="Did you mean 'ms_mlp_t'"):
        importer.convert("ms_mlp_tt", {})


def test_a_bad_state_dict_is_reported_with_every_problem_at_once():
    state_dict_ = importer.to_official("ms_mlp_t", random_variables(), **SMALL)
    del state_dict_["layers.1.blocks.1.gamma"]
    state_dict_["layers.0.blocks.0.extra.weight"] = np.zeros(3, np.float32)
    state_dict_["layers.2.blocks.0.dwconv_lr.3.weight"] = np.zeros((8, 1, 3, 3), np.float32)
    with pytest.raises(ValueError) as info:
        importer.convert("ms_mlp_t", state_dict_, **SMALL)
    message = str(info.value)
    assert message.startswith("The MS-MLP state dict does not fit mixtok's ms_mlp_t (num_classes=10, depths=")
    assert "3 problem(s)" in message
    assert "layers.1.blocks.1.gamma (mixtok layers_1_blocks_1/gamma)" in message
    assert "layers.0.blocks.0.extra.weight" in message
    assert "layers.2.blocks.0.dwconv_lr.3.weight: expected (8, 1, 5, 5), got (8, 1, 3, 3)" in message


def test_training_checkpoint_wrappers_and_ddp_prefixes_are_removed_and_a_headless_one_converts():
    variables = random_variables()
    state_dict_ = importer.to_official("ms_mlp_t", variables, **SMALL)
    wrapped = {"model": {f"module.{k}": v for k, v in state_dict_.items()}, "epoch": np.array(299)}
    assert_trees_equal(importer.convert("ms_mlp_t", wrapped, **SMALL), variables)
    headless = {k: v for k, v in state_dict_.items() if not k.startswith("head.")}
    assert "fc" not in importer.convert("ms_mlp_t", headless, **SMALL)["params"]["head"]  # num_classes=0


def test_cli_refuses_to_overwrite_the_output_and_rejects_unknown_names_with_exit_code_2(tmp_path, capsys):
    checkpoint, output = tmp_path / "ms_mlp_t.pth", tmp_path / "out.msgpack"
    checkpoint.write_bytes(b"not read")
    output.write_bytes(b"precious")
    assert importer.main(["ms_mlp_t", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert importer.main(["ms_mlp_xl", str(checkpoint), str(tmp_path / "other.msgpack")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ms_mlp_" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms_mlp_t.pth", "out.msgpack"]


class ConfigStandIn(dict):
    """Pickled by reference, as the official checkpoint's yacs CfgNode is: torch.load(weights_only=True) refuses it."""


def _save_checkpoint(torch, path, model_state_dict, ema_state_dict=None, config=True):
    # As utils.py save_checkpoint writes it ({'model', 'optimizer', 'lr_scheduler', 'max_accuracy', 'epoch',
    # 'config'}, plus 'model_ema' with a model EMA).
    state = {
        "model": {k: torch.from_numpy(np.asarray(v)) for k, v in model_state_dict.items()},
        "optimizer": {},
        "lr_scheduler": {},
        "max_accuracy": 82.1,
        "epoch": 299,
    }
    if ema_state_dict is not None:
        state["model_ema"] = {k: torch.from_numpy(np.asarray(v)) for k, v in ema_state_dict.items()}
    if config:
        state["config"] = ConfigStandIn(MODEL={"NAME": "ms_mlp_tiny_patch4_shift5_224"})
    torch.save(state, path)


def test_cli_converts_the_model_weights_of_a_checkpoint_without_its_config(tmp_path):
    torch = pytest.importorskip("torch")
    variables = random_variables(seed=1, num_classes=1000, small=False)
    checkpoint, output = tmp_path / "ckpt_epoch_299.pth", tmp_path / "out.msgpack"
    _save_checkpoint(torch, checkpoint, importer.to_official("ms_mlp_t", variables), config=False)
    result = subprocess.run(
        [sys.executable, "-m", "mixtok.interop.ms_mlp", "ms_mlp_tiny_patch4_shift5_224", str(checkpoint), str(output)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr
    assert "Wrote 28,656,232 parameters of ms_mlp_t (1000 classes)" in result.stdout
    assert_trees_equal(load_variables(output), variables)


def test_load_state_dict_reads_model_or_model_ema_and_explains_a_pickled_config(tmp_path):
    torch = pytest.importorskip("torch")
    variables, ema = random_variables(seed=1), random_variables(seed=2)
    checkpoint = tmp_path / "ckpt_epoch_299.pth"
    to = functools.partial(importer.to_official, "ms_mlp_t", **SMALL)
    _save_checkpoint(torch, checkpoint, to(variables), to(ema), config=False)
    assert_trees_equal(importer.convert("ms_mlp_t", importer.load_state_dict(checkpoint, ema=True), **SMALL), ema)
    assert_trees_equal(importer.convert("ms_mlp_t", importer.load_state_dict(checkpoint), **SMALL), variables)
    _save_checkpoint(torch, checkpoint, to(variables), config=True)
    with pytest.raises(ValueError, match=r"yacs 'config'.*weights_only=False"):
        importer.load_state_dict(checkpoint)
    full = torch.load(checkpoint, weights_only=False)  # the way out the message names (a trusted file)
    assert_trees_equal(importer.convert("ms_mlp_t", full, **SMALL), variables)
