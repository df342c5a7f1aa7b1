"""Official AFFNet checkpoints (cvnets state dicts) -> mixtok: the key mapping, BatchNorm statistics, errors, the CLI.

The official code is not needed: its key names and shapes are written down below (read from
microsoft/TokenMixers @ 99dbe38c, `AffNet(opts).state_dict()` built with batch_norm, swish and
layer_norm_2d). The logit parity with the official PyTorch model, which needs that code, is
recorded in mixtok/interop/affnet.py's docstring; here torch only writes .pt files.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import affnet as importer
from mixtok.interop.weight_files import load_variables
from mixtok.models import create_model
from tests.interop.test_timm import assert_trees_equal

SMALL = dict(depths=(1, 2, 1, 2, 1), dims=(8, 16, 16, 24, 32), ffn_dims=(32, 48, 64), expand_ratio=2.0)


def random_variables(name, seed=0, num_classes=10, **overrides):
    """params and batch_stats of the right trees with random values (variances positive)."""
    model = create_model(name, num_classes=num_classes, **overrides)
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    )
    rng = np.random.default_rng(seed)
    variables = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
    variables["batch_stats"] = jax.tree.map(np.abs, variables["batch_stats"])
    return variables


def small_state_dict():
    variables = random_variables("affnet_et", **SMALL)
    return variables, importer.to_official("affnet_et", variables, **SMALL)


def test_to_official_then_convert_restores_params_and_batch_stats_exactly():
    variables, state_dict = small_state_dict()
    assert set(variables) == {"params", "batch_stats"}
    assert all(isinstance(v, np.ndarray) and v.flags.c_contiguous for v in state_dict.values())
    assert_trees_equal(importer.convert("affnet_et", state_dict, **SMALL), variables)


# Read from the official models' state_dict() with 1000 classes: 416 keys each, 56 of them BatchNorm's
# num_batches_tracked.
OFFICIAL_FACTS = {
    "affnet_et": {
        "conv_1.block.conv.weight": (16, 3, 3, 3),
        "layer_1.0.block.conv_3x3.block.conv.weight": (32, 1, 3, 3),
        "layer_3.1.global_rep.0.filter.w1": (2, 8, 8, 8),
        "layer_3.1.global_rep.0.filter.b1": (2, 8, 8),
        "layer_3.1.global_rep.0.mlp.block.exp_1x1.block.conv.weight": (128, 64, 1, 1),
        "layer_3.1.global_rep.2.weight": (64,),
        "layer_4.1.global_rep.3.filter.w2": (2, 8, 13, 13),
        "layer_5.1.fusion.block.conv.weight": (144, 288, 1, 1),
        "conv_1x1_exp.block.norm.running_var": (576,),
        "conv_1x1_exp.block.norm.num_batches_tracked": (),
        "classifier.fc.weight": (1000, 576),
    },
    "affnet_t": {
        "layer_3.1.global_rep.0.filter.w1": (2, 8, 12, 12),
        "layer_4.1.global_rep.3.filter.w2": (2, 8, 20, 20),
        "conv_1x1_exp.block.norm.running_var": (768,),
        "classifier.fc.weight": (1000, 768),
    },
    "affnet": {
        "layer_3.1.global_rep.0.filter.w1": (2, 8, 16, 16),
        "layer_5.1.fusion.block.conv.weight": (320, 640, 1, 1),
        "conv_1x1_exp.block.norm.running_var": (960,),
        "classifier.fc.weight": (1000, 960),
    },
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_FACTS))
def test_official_keys_and_shapes_are_those_of_the_official_state_dict(name):
    shapes = importer.official_shapes(name)
    assert len(shapes) == 416
    assert sum(k.endswith(".num_batches_tracked") for k in shapes) == 56
    assert {k: shapes[k] for k in OFFICIAL_FACTS[name]} == OFFICIAL_FACTS[name]


def test_official_mode_names_are_accepted_and_unknown_names_list_close_matches():
    assert [importer.resolve_name(n) for n in ("xx_small", "x_small", "small", "affnet-et")] == [
        "affnet_et",
        "affnet_t",
        "affnet",
        "affnet_et",
    ]
    with pytest.raises(ValueError, match="Did you mean 'affnet_t'"):
        importer.convert("affnet_tt", {})


def test_running_statistics_go_to_batch_stats_and_num_batches_tracked_is_dropped():
    variables, state_dict = small_state_dict()
    key = "layer_3.1.global_rep.0.mlp.block.exp_1x1.block.norm"
    statistics = variables["batch_stats"]["layer_3_1"]["global_rep_0"]["mlp"]["exp_1x1"]["norm"]
    np.testing.assert_array_equal(state_dict[f"{key}.running_var"], statistics["var"])
    assert state_dict[f"{key}.num_batches_tracked"] == 0
    counted = {k: (np.array(1234) if k.endswith("num_batches_tracked") else v) for k, v in state_dict.items()}
    uncounted = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    for official in (counted, uncounted):
        assert_trees_equal(importer.convert("affnet_et", official, **SMALL), variables)


def test_a_bad_state_dict_is_reported_with_every_problem_at_once():
    _, state_dict = small_state_dict()
    del state_dict["layer_2.1.block.red_1x1.block.norm.running_mean"]
    state_dict["layer_3.1.global_rep.0.filter.w3"] = np.zeros(3, np.float32)
    state_dict["layer_4.1.global_rep.1.filter.w1"] = np.zeros((2, 8, 4, 3), np.float32)
    with pytest.raises(ValueError) as info:
        importer.convert("affnet_et", state_dict, **SMALL)
    message = str(info.value)
    assert "3 problem(s)" in message
    assert "layer_2.1.block.red_1x1.block.norm.running_mean (mixtok batch_stats:layer_2_1/red_1x1/norm/mean)" in message
    assert "layer_3.1.global_rep.0.filter.w3" in message
    assert "layer_4.1.global_rep.1.filter.w1: expected (2, 8, 3, 3), got (2, 8, 4, 3)" in message


def test_to_official_needs_the_batch_stats():
    variables, _ = small_state_dict()
    with pytest.raises(ValueError, match="no 'batch_stats' collection"):
        importer.to_official("affnet_et", {"params": variables["params"]}, **SMALL)


def test_cvnets_training_checkpoints_and_ddp_prefixes_are_unwrapped():
    variables, state_dict = small_state_dict()
    wrapped = {"iterations": np.array(10), "model_state_dict": {f"module.{k}": v for k, v in state_dict.items()}}
    assert_trees_equal(importer.convert("affnet_et", wrapped, **SMALL), variables)
    assert_trees_equal(importer.convert("affnet_et", {"model": state_dict}, **SMALL), variables)


def test_cli_refuses_to_overwrite_the_output(tmp_path, capsys):
    checkpoint, output = tmp_path / "affnet_et.pt", tmp_path / "out.msgpack"
    checkpoint.write_bytes(b"not read")
    output.write_bytes(b"precious")
    assert importer.main(["xx_small", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["affnet_et.pt", "out.msgpack"]


@pytest.mark.parametrize("layout", ["bare", "training checkpoint"])
def test_cli_converts_a_cvnets_checkpoint_written_by_torch(tmp_path, capsys, layout):
    torch = pytest.importorskip("torch")
    variables = random_variables("affnet_et", num_classes=1000)
    state_dict = {k: torch.from_numpy(v) for k, v in importer.to_official("affnet_et", variables).items()}
    checkpoint, output = tmp_path / "checkpoint.pt", tmp_path / "out.msgpack"
    # cvnets writes checkpoint_best.pt as the bare state dict, checkpoint.pt with the training state around it.
    torch.save(
        state_dict if layout == "bare" else {"epoch": 3, "model_state_dict": state_dict, "best_metric": 0.5}, checkpoint
    )
    assert importer.main(["xx_small", str(checkpoint), str(output)]) == 0
    assert "1,436,264 parameters of affnet_et (1000 classes) and 16,048 BatchNorm statistics" in capsys.readouterr().out
    assert_trees_equal(load_variables(output), variables)
