"""Tensor parallelism and FSDP from the default rules: the mesh alone picks the parallelism, the train step
computes what one device computes, the arrays are split as the rules say, and the work is divided."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from mixtok import data as data_lib
from mixtok.layers.partitioning import constrain
from mixtok.parallel import (
    DEFAULT_RULES,
    batch_sharding,
    check_sufficiently_sharded,
    create_mesh,
    mesh_axes_for,
    rules_from_config,
    sharding_context,
)
from mixtok.train import steps
from mixtok.train.config_files import load_config
from mixtok.train.tasks import get_task

MESHES = {
    "one device": None,
    "data 8": {"data": 8},
    "fsdp 8": {"fsdp": 8},
    "data 4 x tensor 2": {"data": 4, "tensor": 2},
    "data 2 x fsdp 2 x tensor 2": {"data": 2, "fsdp": 2, "tensor": 2},
}
BATCH = 16
STEPS = 2


def _quickstart():
    config = load_config("experiments/configs/quickstart.py")
    config.batch_size = BATCH
    return config


def _pieces(config, shape):
    devices = jax.devices()[:1] if shape is None else jax.devices()
    mesh, rules = create_mesh(shape, devices=devices), rules_from_config(config.get("sharding_rules"))
    info = data_lib.dataset_info(config.data)
    task = get_task(config.task).from_config(config, info)
    tx, schedule = task.create_optimizer(config)
    layout = steps.abstract_train_state(task, tx, info.image_size, mesh, rules)
    sharding = batch_sharding(mesh, rules)
    train_step = steps.make_train_step(task, tx, schedule, layout, sharding, rules)
    return task, tx, info, mesh, rules, layout, sharding, train_step


def _batches(config, info):
    rng = np.random.default_rng(0)
    size = info.image_size
    return [
        {
            "image": rng.normal(size=(BATCH, size, size, 3)).astype(np.float32),
            "label": rng.integers(0, info.num_classes, size=(BATCH,)).astype(np.int32),
        }
        for _ in range(STEPS)
    ]


def _train(shape, config=None):
    config = _quickstart() if config is None else config
    task, tx, info, mesh, rules, layout, sharding, train_step = _pieces(config, shape)
    init_rng, step_rng = steps.seed_rngs(config.seed)
    state = steps.create_train_state(task, tx, init_rng, info.image_size, layout)
    losses = []
    for batch in _batches(config, info):
        state, metrics = train_step(state, steps.put_batch(batch, sharding), step_rng)
        losses.append(float(metrics["loss"]))
    return losses, state


@pytest.fixture(scope="module")
def one_device_run():
    losses, state = _train(None)
    return losses, jax.device_get(state.params)


def test_a_family_with_its_own_attention_and_mlp_trains_as_one_device_does():
    """TransNeXt (its own attention and ConvGLU, mixtok.mixers.transnext) on data 2 x fsdp 2 x tensor 2."""
    config = load_config("experiments/configs/quickstart_attention.py:family=transnext")
    config.batch_size = BATCH
    (one_losses, one_state), (mesh_losses, mesh_state) = (
        _train(shape, config) for shape in (None, MESHES["data 2 x fsdp 2 x tensor 2"])
    )
    np.testing.assert_allclose(mesh_losses, one_losses, rtol=2e-5, atol=2e-6)
    for a, b in zip(jax.tree_util.tree_leaves(mesh_state.params), jax.tree_util.tree_leaves(one_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("name", [name for name in MESHES if name != "one device"])
def test_every_mesh_trains_as_one_device_does(one_device_run, name):
    losses, state = _train(MESHES[name])
    expected_losses, expected_params = one_device_run
    np.testing.assert_allclose(losses, expected_losses, rtol=2e-5, atol=2e-6)
    got = jax.device_get(state.params)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree_util.tree_leaves(expected_params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6, err_msg=jax.tree_util.keystr(path))


def test_parameters_are_split_as_the_default_rules_say():
    config = _quickstart()
    *_, layout, _, _ = _pieces(config, MESHES["data 2 x fsdp 2 x tensor 2"])
    params = layout.params
    # The quickstart's stage 3 is an attention stage; stage 0 a pooling stage (PoolFormerV2 layout).
    stage = params["stages_2"]["blocks_0"]
    specs = {
        "mlp fc1 (embed, mlp)": (stage["mlp"]["fc1"]["kernel"], PartitionSpec("fsdp", "tensor")),
        "mlp fc2 (mlp, embed)": (stage["mlp"]["fc2"]["kernel"], PartitionSpec("tensor", "fsdp")),
        "attention qkv (embed, heads)": (stage["token_mixer"]["qkv"]["kernel"], PartitionSpec("fsdp", "tensor")),
        "attention proj (heads, embed)": (stage["token_mixer"]["proj"]["kernel"], PartitionSpec("tensor", "fsdp")),
    }
    for what, (leaf, spec) in specs.items():
        assert leaf.sharding.spec == spec, what
    # A real array made with this layout is split: each device holds a quarter of fc1 (fsdp 2 x tensor 2).
    kernel = stage["mlp"]["fc1"]["kernel"]
    shards = {
        tuple(s.data.shape)
        for s in jax.jit(jnp.zeros, static_argnums=(0,), out_shardings=kernel.sharding)(kernel.shape).addressable_shards
    }
    assert shards == {(kernel.shape[0] // 2, kernel.shape[1] // 2)}


def test_tensor_parallelism_divides_the_work_it_does_not_repeat_it():
    """Per-device FLOPs of the compiled step (XLA's cost analysis of the partitioned program): with the
    same data-parallel split, a tensor axis of 2 must do clearly less per device, not the same work twice."""
    config = _quickstart()

    def flops(shape):
        task, tx, info, mesh, rules, layout, sharding, train_step = _pieces(config, shape)
        batch = {
            "image": jax.ShapeDtypeStruct((BATCH, info.image_size, info.image_size, 3), jnp.float32, sharding=sharding),
            "label": jax.ShapeDtypeStruct((BATCH,), jnp.int32, sharding=sharding),
        }
        rng = jax.ShapeDtypeStruct((2,), jnp.uint32)
        cost = train_step.lower(layout, batch, rng).compile().cost_analysis()
        return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])

    data_only = flops({"data": 4, "fsdp": 2})  # batch over 8 devices
    with_tensor = flops({"data": 4, "fsdp": 1, "tensor": 2})  # batch over 4, heads and MLP over 2
    # Each device sees twice the images of the data-only run; TP must more than make up for that in
    # the MLPs and attention, which hold most of the FLOPs. Without the split it would be ~2.0x.
    assert with_tensor / data_only < 1.5, (with_tensor, data_only)


def test_rules_fall_back_to_replication_where_a_size_does_not_divide():
    mesh_shape = {"data": 2, "fsdp": 2, "tensor": 2}
    assert mesh_axes_for(("embed", "mlp"), (64, 256), DEFAULT_RULES, mesh_shape) == PartitionSpec("fsdp", "tensor")
    assert mesh_axes_for(("embed", "heads"), (64, 3), DEFAULT_RULES, mesh_shape) == PartitionSpec("fsdp", None)
    # An axis used by one dimension is not used again by another of the same array.
    assert mesh_axes_for(("batch", "embed"), (8, 64), DEFAULT_RULES, mesh_shape) == PartitionSpec(
        ("data", "fsdp"), None
    )
    # A fallback rule for the same name is tried when the first does not fit.
    rules = (("mlp", "tensor"), ("mlp", "fsdp"))
    assert mesh_axes_for(("mlp",), (6,), rules, {"fsdp": 3, "tensor": 4}) == PartitionSpec("fsdp")


def test_constrain_acts_only_inside_a_sharding_context():
    mesh = create_mesh({"data": 4, "tensor": 2})
    x = jnp.ones((8, 4, 6))

    def f(x):
        return constrain(x * 2, ("batch", "length", "mlp"))

    outside = jax.jit(f).lower(x).as_text()
    assert "sharding_constraint" not in outside and "sharding =" not in outside
    with sharding_context(mesh, DEFAULT_RULES):
        inside = jax.jit(f).lower(x).as_text()
    assert '{"data", "fsdp"}' in inside or '"data"' in inside
    assert '"tensor"' in inside


def test_a_mesh_that_asks_for_fsdp_with_rules_that_shard_nothing_fails_naming_the_arrays():
    config = _quickstart()
    config.sharding_rules = [["batch", ["data", "fsdp"]]]  # no parameter rule
    *_, layout, _, _ = _pieces(config, {"fsdp": 8})
    with pytest.raises(ValueError, match=r"100% of the parameter bytes are replicated.*Largest: \['stages_"):
        check_sufficiently_sharded(layout.params, create_mesh({"fsdp": 8}))
    # The default rules shard enough of them.
    default = _pieces(_quickstart(), {"fsdp": 8})[5]
    check_sufficiently_sharded(default.params, create_mesh({"fsdp": 8}))
    check_sufficiently_sharded(default.params, create_mesh({"data": 8}))  # data parallelism: nothing to check


def test_the_command_line_sets_the_mesh_of_a_config_that_has_none(tmp_path):
    """`--config.mesh.AXIS=N` on the quickstart config (which defines no mesh): FSDP x tensor x data, 8 devices."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from mixtok.train.metric_writer import read_metrics

    repo = Path(__file__).resolve().parents[2]
    args = ["--config", "experiments/configs/quickstart.py:steps=2", "--workdir", str(tmp_path)]
    args += ["--config.log_every=1", "--config.eval_every=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]
    run = subprocess.run(
        [sys.executable, "-m", "mixtok.train", *args], cwd=repo, env=dict(os.environ), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    assert (tmp_path / "checkpoints" / "2").is_dir()
