"""Official GFNet checkpoints -> mixtok: the key mapping, errors, wrappers, files and the CLI.

The official code is not needed: its key names and shapes are written down below (read from
raoyongming/GFNet @ 2de48b6 gfnet.py's `GFNet(...).state_dict()` / `GFNetPyramid(...)` with
main_gfnet.py's arguments). The logit parity with the official PyTorch models, which needs that
code, is recorded in mixtok/interop/gfnet.py's docstring; here torch only writes .pth files.
"""

import argparse
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import gfnet as importer
from mixtok.interop.weight_files import load_variables
from mixtok.models import create_model
from tests.interop.test_timm import assert_trees_equal

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = {  # one small configuration per family: (name, create_model overrides)
    "isotropic": ("gfnet_ti", dict(depths=(2,), dims=(16,), image_size=64)),
    "pyramid": ("gfnet_h_ti", dict(depths=(1, 2, 1, 1), dims=(8, 16, 24, 32), image_size=64)),
}


def random_variables(name, seed=0, num_classes=10, **overrides):
    """Variables of the right tree with standard-normal values (no leaf left at its init constant)."""
    model = create_model(name, num_classes=num_classes, **overrides)
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


def small_state_dict(family):
    name, overrides = SMALL[family]
    architecture = {k: v for k, v in overrides.items() if k != "image_size"}
    variables = random_variables(name, **overrides)
    return name, architecture, variables, importer.to_official(name, variables, **architecture)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_to_official_then_convert_restores_every_parameter_exactly(family):
    name, architecture, variables, state_dict = small_state_dict(family)
    assert all(isinstance(v, np.ndarray) and v.flags.c_contiguous for v in state_dict.values())
    assert_trees_equal(importer.convert(name, state_dict, **architecture), variables)


# Read from the official models' state_dict() at 224 px with 1000 classes.
OFFICIAL_FACTS = {
    "gfnet_ti": (
        115,
        {
            "pos_embed": (1, 196, 256),
            "patch_embed.proj.weight": (256, 3, 16, 16),
            "blocks.0.filter.complex_weight": (14, 8, 256, 2),
            "blocks.11.mlp.fc1.weight": (1024, 256),
            "norm.weight": (256,),
            "head.weight": (1000, 256),
            "head.bias": (1000,),
        },
    ),
    "gfnet_h_ti": (
        203,
        {
            "pos_embed": (1, 3136, 64),
            "patch_embed.0.proj.weight": (64, 3, 4, 4),
            "patch_embed.3.proj.weight": (512, 256, 2, 2),
            "blocks.0.0.filter.complex_weight": (56, 29, 64, 2),
            "blocks.3.2.filter.complex_weight": (7, 4, 512, 2),
            "blocks.2.9.gamma": (256,),
            "norm.weight": (512,),
            "head.weight": (1000, 512),
        },
    ),
    "gfnet_b": (178, {"blocks.18.filter.complex_weight": (14, 8, 512, 2), "head.weight": (1000, 512)}),
    "gfnet_h_b": (373, {"blocks.2.26.gamma": (384,), "pos_embed": (1, 3136, 96), "head.weight": (1000, 768)}),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_FACTS))
def test_official_keys_and_shapes_are_those_of_the_official_state_dict(name):
    count, samples = OFFICIAL_FACTS[name]
    shapes = importer.official_shapes(name)
    assert len(shapes) == count
    assert {k: shapes[k] for k in samples} == samples


def test_official_arch_names_are_accepted_and_unknown_names_list_close_matches():
    assert importer.resolve_name("gfnet-h-ti") == importer.resolve_name("gfnet_h_ti") == "gfnet_h_ti"
    with pytest.raises(ValueError, match="Did you mean 'gfnet_h_ti'"):
        importer.convert("gfnet_h_tii", {})


def test_image_size_is_read_from_the_position_embedding_of_a_fine_tuned_checkpoint():
    name, overrides = SMALL["pyramid"]
    architecture = {k: v for k, v in overrides.items() if k != "image_size"}
    variables = random_variables(name, **architecture, image_size=96)  # as main_gfnet.py --input-size 96
    state_dict = importer.to_official(name, variables, **architecture)
    assert state_dict["pos_embed"].shape == (1, 24 * 24, 8)
    assert state_dict["blocks.3.0.filter.complex_weight"].shape == (3, 2, 32, 2)
    assert_trees_equal(importer.convert(name, state_dict, **architecture), variables)


def test_position_embedding_tokens_are_the_row_major_grid():
    name, architecture, variables, state_dict = small_state_dict("isotropic")
    grid = variables["params"]["pos_embed"]["pos_embed"]  # [1, h, w, C]
    np.testing.assert_array_equal(state_dict["pos_embed"][0, 1], grid[0, 0, 1])  # token 1 is row 0, column 1
    np.testing.assert_array_equal(
        state_dict["patch_embed.proj.weight"],
        variables["params"]["patch_embed"]["conv"]["kernel"].transpose(3, 2, 0, 1),
    )
    np.testing.assert_array_equal(
        state_dict["blocks.1.filter.complex_weight"], variables["params"]["blocks_1"]["filter"]["complex_weight"]
    )


def test_a_bad_state_dict_is_reported_with_every_problem_at_once():
    name, architecture, _, state_dict = small_state_dict("pyramid")
    del state_dict["blocks.1.1.gamma"]
    state_dict["blocks.0.0.extra.weight"] = np.zeros(3, np.float32)
    state_dict["blocks.2.0.mlp.fc1.weight"] = np.zeros((90, 24), np.float32)
    with pytest.raises(ValueError) as info:
        importer.convert(name, state_dict, **architecture)
    message = str(info.value)
    assert "3 problem(s)" in message
    assert "blocks.1.1.gamma (mixtok stages_1_blocks_1/layer_scale/scale)" in message
    assert "blocks.0.0.extra.weight" in message
    assert "blocks.2.0.mlp.fc1.weight: expected (96, 24), got (90, 24)" in message


def test_an_isotropic_checkpoint_given_a_pyramid_name_gets_a_hint():
    state_dict = small_state_dict("isotropic")[3]
    with pytest.raises(ValueError, match="isotropic GFNet's .*check the model name"):
        importer.convert("gfnet_h_ti", state_dict)


def test_training_checkpoint_wrappers_and_ddp_prefixes_are_removed():
    name, architecture, variables, state_dict = small_state_dict("isotropic")
    wrapped = {"model": {f"module.{k}": v for k, v in state_dict.items()}, "epoch": np.array(299)}
    assert_trees_equal(importer.convert(name, wrapped, **architecture), variables)


def test_to_official_rejects_variables_of_another_configuration():
    name, architecture, variables, _ = small_state_dict("isotropic")
    with pytest.raises(ValueError, match="blocks_1/norm1/scale"):
        importer.to_official(name, variables, depths=(1,), dims=(16,))


def test_cli_refuses_to_overwrite_the_output(tmp_path, capsys):
    checkpoint, output = tmp_path / "gfnet-ti.pth", tmp_path / "out.msgpack"
    checkpoint.write_bytes(b"not read")
    output.write_bytes(b"precious")
    assert importer.main(["gfnet-ti", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gfnet-ti.pth", "out.msgpack"]


def test_cli_converts_a_main_gfnet_checkpoint_written_by_torch(tmp_path):
    torch = pytest.importorskip("torch")
    variables = random_variables("gfnet_ti", num_classes=1000)
    state_dict = importer.to_official("gfnet_ti", variables)
    checkpoint, output = tmp_path / "gfnet-ti.pth", tmp_path / "out.msgpack"
    # As main_gfnet.py saves it: the weights under 'model', beside the run's argparse arguments.
    torch.save(
        {
            "model": {k: torch.from_numpy(v) for k, v in state_dict.items()},
            "epoch": 299,
            "args": argparse.Namespace(arch="gfnet-ti", lr=1e-3),
        },
        checkpoint,
    )
    result = subprocess.run(
        [sys.executable, "-m", "mixtok.interop.gfnet", "gfnet-ti", str(checkpoint), str(output)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr
    assert "7,511,784 parameters of gfnet_ti (1000 classes, 14 x 14 position embedding)" in result.stdout
    assert_trees_equal(load_variables(output), variables)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gfnet-ti.pth", "out.msgpack"]
