"""`python -m mixtok.compile_check`: the ahead-of-time fit check (docs/scale.md, "Ahead-of-time fit check").

The command runs in a fresh process (it sets the CPU device count before JAX's backend starts);
its figures are checked against the same train step compiled here by the recipe in
mixtok/train/steps.py's docstring, and the argument bytes against a sum over the shards' shapes.
"""

import functools
import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mixtok import compile_check
from mixtok.parallel import batch_sharding, create_mesh, rules_from_config
from mixtok.train import abstract_train_state, get_task, make_train_step, seed_rngs

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "configs" / "quickstart.py"
FIELDS = ("argument", "output", "alias", "temporary", "total")
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None

# quickstart with sharding rules that leave every weight replicated (only the batch is split).
UNSHARDED_QUICKSTART = f"""
import importlib.util

_spec = importlib.util.spec_from_file_location("quickstart", {str(QUICKSTART)!r})
quickstart = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quickstart)


def get_config(arg=None):
    config = quickstart.get_config(arg)
    config.sharding_rules = [["batch", ["data", "fsdp"]]]
    return config
"""


@functools.cache
def run_check(*args: str) -> subprocess.CompletedProcess:
    """`python -m mixtok.compile_check ARGS` in a fresh process, without a persistent compilation cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "mixtok.compile_check", *args], capture_output=True, text=True, env=env, cwd=REPO
    )


def printed_bytes(stdout: str) -> dict[str, int]:
    """The per-device table's byte column, e.g. {"argument": 4173980, ...}."""
    found = {}
    for field in FIELDS:
        match = re.search(rf"^\s+{field}\s+([\d,]+) B", stdout, re.MULTILINE)
        assert match, f"no {field} row in:\n{stdout}"
        found[field] = int(match.group(1).replace(",", ""))
    return found


def compile_here(config, devices):
    """The trainer's train step for `config` on `devices`, compiled in this process (steps.py's recipe)."""
    from mixtok import data

    info = data.dataset_info(config.data)
    task = get_task(config.task).from_config(config, info)
    tx, schedule = task.create_optimizer(config)
    mesh = create_mesh(config.get("mesh"), devices=devices)
    rules = rules_from_config(config.get("sharding_rules"))
    layout = abstract_train_state(task, tx, info.image_size, mesh, rules)
    shard = batch_sharding(mesh, rules)
    train_step = make_train_step(task, tx, schedule, layout, shard, rules)
    images = jax.ShapeDtypeStruct((config.batch_size, info.image_size, info.image_size, 3), np.float32, sharding=shard)
    labels = jax.ShapeDtypeStruct((config.batch_size,), np.int32, sharding=shard)
    key = jax.ShapeDtypeStruct(seed_rngs(0)[1].shape, np.uint32, sharding=jax.sharding.NamedSharding(mesh, P()))
    compiled = train_step.lower(layout, {"image": images, "label": labels}, key).compile()
    return compiled, layout, (images, labels, key)


def P(*axes):
    return jax.sharding.PartitionSpec(*axes)


def shard_bytes(x: jax.ShapeDtypeStruct) -> int:
    """Bytes of one device's shard of `x`, from its shape and sharding alone."""
    return math.prod(x.sharding.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize


def load_quickstart():
    spec = importlib.util.spec_from_file_location("quickstart_for_test", QUICKSTART)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_cpu8_quickstart_prints_the_memory_of_the_step_compiled_in_process():
    result = run_check("--config", str(QUICKSTART), "--topology", "cpu-8", "--device-memory-gb", "64")
    assert result.returncode == 0, result.stderr
    printed = printed_bytes(result.stdout)

    compiled, layout, inputs = compile_here(load_quickstart(), jax.devices()[:8])
    stats = compiled.memory_analysis()
    expected = {
        "argument": stats.argument_size_in_bytes,
        "output": stats.output_size_in_bytes,
        "alias": stats.alias_size_in_bytes,
        "temporary": stats.temp_size_in_bytes,
    }
    expected["total"] = expected["argument"] + expected["output"] + expected["temporary"] - expected["alias"]
    assert printed == expected
    # The arguments are one device's shards of the state and the batch, and the key where the step uses
    # it (jit drops unused arguments; quickstart draws no random numbers: no dropout or drop path).
    images, labels, key = inputs
    state_and_batch = sum(shard_bytes(x) for x in [*jax.tree_util.tree_leaves(layout), images, labels])
    assert printed["argument"] in (state_and_batch, state_and_batch + shard_bytes(key))
    # The donated state comes back in place: every aliased byte is state.
    assert 0 < printed["alias"] <= sum(shard_bytes(x) for x in jax.tree_util.tree_leaves(layout))
    assert "mesh data=8 fsdp=1 tensor=1" in result.stdout
    assert re.search(r"^fits: needs .* per device of 64\.00 GiB", result.stdout, re.MULTILINE)


def test_fsdp_shards_the_arguments_that_data_parallelism_replicates():
    data = run_check("--config", str(QUICKSTART), "--topology", "cpu-8", "--device-memory-gb", "64")  # data=8
    fsdp = run_check("--config", str(QUICKSTART), "--topology", "cpu-8", "--config.mesh.fsdp=8")
    assert data.returncode == 0 and fsdp.returncode == 0, data.stderr + fsdp.stderr
    assert "mesh data=8 fsdp=1 tensor=1" in data.stdout and "mesh data=1 fsdp=8 tensor=1" in fsdp.stdout
    data_bytes, fsdp_bytes = printed_bytes(data.stdout), printed_bytes(fsdp.stdout)
    # The batch splits 8 ways in both; the state (params and two AdamW moments) only under fsdp.
    assert fsdp_bytes["argument"] < data_bytes["argument"] / 2
    assert fsdp_bytes["alias"] < data_bytes["alias"] / 2


def test_config_rules_that_leave_the_weights_replicated_under_fsdp_fail_as_the_trainer_does(capsys, tmp_path):
    config = tmp_path / "unsharded_quickstart.py"
    config.write_text(UNSHARDED_QUICKSTART)
    assert compile_check.main(["prog", "--config", str(config), "--topology", "cpu-8", "--config.mesh.fsdp=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(
        "mixtok.compile_check: error: mesh {'data': 1, 'fsdp': 8, 'tensor': 1} asks for parameters split over "
        "['fsdp'], but 100% of the parameter bytes are replicated"
    ), err


def test_a_device_memory_too_small_fails_with_what_to_change():
    result = run_check("--config", str(QUICKSTART), "--topology", "cpu-8", "--device-memory-gb", "0.001")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        r"mixtok\.compile_check: does not fit: needs [\d.]+ MiB per device, the target has 1\.02 MiB; "
        r"lower batch_size \(now 64\); .*",
        lines[0],
    ), lines[0]
    assert printed_bytes(result.stdout)["total"] > 0.001 * 1024**3


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--topology", "v5e-7"],
            r"error: unknown topology 'v5e-7' \(v5e slices have 1, 4, 8, 16, 32, 64, 128, 256\); valid forms: .*cpu-N",
        ),
        (["--topology", "tpu-8"], r"error: unknown topology 'tpu-8'; valid forms: TPU slices v5e-N.*h100-N"),
        (
            ["--topology", "cpu-8", "--config.mesh.fsdp=x"],
            r"error: bad config override: --config.mesh.fsdp=x: a mesh axis size is a positive integer or -1",
        ),
        (["--topology", "cpu-8", "--config.total_stepz=3"], r"error: bad config override: 'total_stepz' Did you mean"),
        (["--device-memory-gb", "2"], r"error: --topology is required"),
        (["--topology", "cpu-8", "--device-memory-gb", "-1"], r"error: --device-memory-gb must be a positive .*-1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, expected):
    assert compile_check.main(["prog", "--config", str(QUICKSTART), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.match(rf"mixtok\.compile_check: {expected}", err), err


def test_a_missing_config_file_is_exit_2(capsys):
    assert compile_check.main(["prog", "--config", "experiments/configs/nope.py:x=1", "--topology", "cpu-8"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mixtok.compile_check: error: config file 'experiments/configs/nope.py' does not exist "
        "(configs live in experiments/configs/; see experiments/README.md)."
    )


def test_a_mesh_that_does_not_match_the_topology_is_exit_2(capsys):
    code = compile_check.main(["prog", "--config", str(QUICKSTART), "--topology", "cpu-8", "--config.mesh.fsdp=3"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "mixtok.compile_check: error: config.mesh does not fit the target's 8 devices: "
        "Cannot fill mesh {'data': -1, 'fsdp': 3, 'tensor': 1} with 8 devices: "
        "8 is not divisible by 3."
    )


@pytest.mark.skipif(any(d.platform == "gpu" for d in jax.devices()), reason="this machine has a GPU")
def test_a_gpu_target_without_a_gpu_is_not_supported(capsys):
    assert compile_check.main(["prog", "--config", str(QUICKSTART), "--topology", "h100-8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("mixtok.compile_check: not supported: h100-8 needs a GPU host of the same kind")
    assert "jax-ml/jax #23971" in err


@pytest.mark.skipif(
    HAS_LIBTPU, reason="libtpu is installed: test_tpu_v5e_8_prints_the_memory_of_the_step_compiled_in_process runs"
)
def test_a_tpu_target_without_libtpu_names_the_extra(capsys):
    assert compile_check.main(["prog", "--config", str(QUICKSTART), "--topology", "v5e-8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "mixtok.compile_check: not supported: v5e-8 needs libtpu to compile for a TPU from this machine "
        '(pip install -e ".[tpu-aot]")'
    )


@pytest.mark.skipif(not HAS_LIBTPU, reason='libtpu is not installed (pip install -e ".[tpu-aot]" installs it)')
def test_tpu_v5e_8_prints_the_memory_of_the_step_compiled_in_process():
    from mixtok.topologies import parse_topology, target_devices

    result = run_check("--config", str(QUICKSTART), "--topology", "v5e-8")
    assert result.returncode == 0, result.stderr
    assert "on v5e-8: 8 tpu devices, mesh data=8 fsdp=1 tensor=1" in result.stdout
    assert re.search(r"^fits: needs .* per device of 16\.00 GiB", result.stdout, re.MULTILINE)
    devices = target_devices(parse_topology("v5e-8"))
    assert [d.device_kind for d in devices] == ["TPU v5 lite"] * 8
    compiled, _, _ = compile_here(load_quickstart(), devices)
    stats = compiled.memory_analysis()
    printed = printed_bytes(result.stdout)
    assert (printed["argument"], printed["temporary"]) == (stats.argument_size_in_bytes, stats.temp_size_in_bytes)


@pytest.mark.parametrize(
    "name, devices, topology_name, chip_config, wrap, memory_gib",
    [  # MaxText's accelerator_to_spec_map.py rows; memory from docs/scale.md, "Device memory"
        ("v5e-8", 8, "v5e:2x4", "default", (False, False, False), 16.0),
        ("v5e-256", 256, "v5e:16x16", "default", (True, True, False), 16.0),
        ("v6e-16", 16, "v6e:4x4", "default", (False, False, False), 32.0),
        ("v4-16", 8, "v4:2x2x2", "megacore_dense", (False, False, False), 32.0),
        ("v5p-8", 4, "v5:2x2x1", "megacore", (False, False, False), 95.0),
        ("v5p-128", 64, "v5:4x4x4", "megacore", (True, True, True), 95.0),
    ],
)
def test_tpu_names_map_to_maxtexts_topologies(name, devices, topology_name, chip_config, wrap, memory_gib):
    from mixtok.topologies import parse_topology

    target = parse_topology(name)
    assert (target.platform, target.num_devices, target.topology_name) == ("tpu", devices, topology_name)
    assert (target.chip_config_name, target.wrap, target.memory_gib) == (chip_config, wrap, memory_gib)


def test_gpu_and_cpu_names():
    from mixtok.topologies import parse_topology

    assert (parse_topology("h100-8").num_devices, parse_topology("h100-8").memory_gib) == (8, 80.0)
    assert parse_topology("h200-16").memory_gib == 141.0
    assert (parse_topology("a100-4").memory_gib, parse_topology("a100-80gb-4").memory_gib) == (40.0, 80.0)
    cpu = parse_topology("cpu-8")
    assert (cpu.platform, cpu.num_devices, cpu.memory_gib) == ("cpu", 8, None)
    for bad in ("cpu-0", "h100-0", "v5e-0", "v4-8x", ""):
        with pytest.raises(ValueError, match="valid forms"):
            parse_topology(bad)
