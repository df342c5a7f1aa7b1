"""A checkpoint saved on 8 devices (data 2 x fsdp 4) resumes on 4 devices and on 1, as if it had not moved.

The changed device counts run in subprocesses (`restore_mesh_worker`): the simulated device count
of a process is fixed when JAX starts. Every run is one process, so the data iterator's state
carries over unchanged; the run that moves must end where one uninterrupted 8-device run ends
(float tolerance: another mesh sums in another order).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from mixtok import data as data_lib
from mixtok.parallel import create_mesh, rules_from_config
from mixtok.train import steps
from mixtok.train.checkpointing import Checkpointer
from mixtok.train.metric_writer import read_metrics
from mixtok.train.tasks import get_task
from mixtok.train.trainer import train_and_evaluate
from tests.train.test_trainer import tiny_config

REPO = Path(__file__).resolve().parents[2]
TOTAL_STEPS = 6
# An FSDP-sharded weight: ("embed", "mlp") -> ("fsdp", "tensor") under the default rules (tensor: size 1 here).
PARAMETER = ("stages_2", "blocks_0", "mlp", "fc1", "kernel")


def remesh_config(total_steps: int = TOTAL_STEPS, data: int = 2, fsdp: int = 4):
    """The tiny run on the mesh data x fsdp (the default rules: FSDP); a record every step, eval at the end."""
    return tiny_config(
        total_steps=total_steps,
        log_every=1,
        eval_every=total_steps,
        checkpoint_every=total_steps,
        tensorboard=False,
        async_checkpointing=False,
        mesh={"data": data, "fsdp": fsdp},
    )


def resume_on(devices: int, workdir: Path, stop_at_step: int, data: int, fsdp: int) -> dict:
    """Resumes the run in `workdir` in a process with `devices` CPU devices; its RESULT record."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    command = [sys.executable, "-m", "tests.parallel.restore_mesh_worker", str(devices), str(workdir)]
    proc = subprocess.run(
        [*command, str(stop_at_step), str(data), str(fsdp)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])


def checkpoint_params(workdir: Path, step: int, config):
    """The params of `config`'s checkpoint `step` in `workdir`, restored replicated on this process's devices."""
    info = data_lib.dataset_info(config.data)
    task = get_task(config.task).from_config(config, info)
    tx, _ = task.create_optimizer(config)
    layout = steps.abstract_train_state(task, tx, info.image_size, create_mesh(None), rules_from_config(None))
    batches = data_lib.create_train_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)
    checkpointer = Checkpointer(workdir / "checkpoints", async_save=False)
    try:
        return jax.tree_util.tree_map(np.asarray, checkpointer.restore(step, layout, batches).params)
    finally:
        checkpointer.close()


def test_a_run_saved_on_8_devices_resumes_on_4_then_on_1_as_if_it_had_not_moved(tmp_path):
    straight, moved = tmp_path / "straight", tmp_path / "moved"
    train_and_evaluate(remesh_config(), straight)
    train_and_evaluate(remesh_config(), moved, stop_at_step=2)  # 8 devices: data 2 x fsdp 4
    on_4 = resume_on(4, moved, stop_at_step=4, data=2, fsdp=2)
    on_1 = resume_on(1, moved, stop_at_step=TOTAL_STEPS, data=1, fsdp=1)

    # The 8-device checkpoint landed on the new mesh, sharded as the rules say.
    assert on_4["devices"] == 4 and on_4["restored"] == {
        "step": 2,
        "mesh": {"data": 2, "fsdp": 2, "tensor": 1},
        "spec": ["fsdp", "tensor"],
        "devices": [0, 1, 2, 3],
    }
    assert on_1["devices"] == 1 and on_1["restored"] == {
        "step": 4,
        "mesh": {"data": 1, "fsdp": 1, "tensor": 1},
        "spec": ["fsdp", "tensor"],
        "devices": [0],
    }
    # Same metrics at every step (the data iterator's position carried over) and same final weights.
    expected, got = read_metrics(straight), read_metrics(moved)
    assert [r["step"] for r in got] == [r["step"] for r in expected] == list(range(1, TOTAL_STEPS + 1))
    for a, b in zip(expected, got):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=2e-4, atol=1e-5, err_msg=f"step {a['step']} {key}")
    assert on_1["final"] == {k: v for k, v in got[-1].items() if k != "step"}
    params_a, params_b = (checkpoint_params(w, TOTAL_STEPS, remesh_config()) for w in (straight, moved))
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params_a), jax.tree_util.tree_leaves(params_b)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
