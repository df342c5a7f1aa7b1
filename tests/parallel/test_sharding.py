"""Meshes and logical-axis rules: FSDP is a config change, and it trains like data parallelism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from mixtok.layers import Mlp
from mixtok.parallel import create_mesh, logical_shardings, rules_from_config
from mixtok.train.metric_writer import read_metrics
from mixtok.train.trainer import train_and_evaluate
from tests.train.test_trainer import tiny_config


def test_default_mesh_is_data_parallel_over_all_devices():
    mesh = create_mesh()
    assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1, "tensor": 1}


def test_mesh_fills_the_minus_one_axis():
    assert dict(create_mesh({"data": -1, "fsdp": 4}).shape) == {"data": 2, "fsdp": 4, "tensor": 1}


@pytest.mark.parametrize(
    "shape,message",
    [
        ({"data": 3}, "needs 3 devices but 8 are available"),
        ({"data": -1, "fsdp": 3}, "8 is not divisible by 3"),
        ({"batch": 8}, "Unknown mesh axes"),
        ({"data": -1, "fsdp": -1}, "At most one mesh axis may be -1"),
    ],
)
def test_bad_mesh_shapes_are_explained(shape, message):
    with pytest.raises(ValueError, match=message):
        create_mesh(shape)


def test_rules_map_logical_names_to_mesh_axes():
    mesh = create_mesh({"data": 2, "fsdp": 4})
    rules = rules_from_config([["batch", ["data", "fsdp"]], ["embed", "fsdp"], ["mlp", None]])
    boxed = jax.eval_shape(Mlp().init, jax.random.PRNGKey(0), jnp.zeros((1, 16)))
    shardings = logical_shardings(boxed, mesh, rules)["params"]
    assert shardings["fc1"]["kernel"].spec == PartitionSpec("fsdp", None)  # ('embed', 'mlp')
    assert shardings["fc2"]["kernel"].spec == PartitionSpec(None, "fsdp")  # ('mlp', 'embed')
    assert shardings["act"]["scale"].spec == PartitionSpec(None)


def test_fsdp_training_matches_data_parallel_training(tmp_path):
    dp = tiny_config(total_steps=4, log_every=1, eval_every=4, checkpoint_every=4)
    fsdp = tiny_config(
        total_steps=4,
        log_every=1,
        eval_every=4,
        checkpoint_every=4,
        mesh={"data": 2, "fsdp": 4},  # the default rules shard `embed` and `conv_out` over fsdp
    )
    train_and_evaluate(dp, tmp_path / "dp")
    train_and_evaluate(fsdp, tmp_path / "fsdp")
    for a, b in zip(read_metrics(tmp_path / "dp"), read_metrics(tmp_path / "fsdp")):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=2e-4, atol=1e-5, err_msg=key)
