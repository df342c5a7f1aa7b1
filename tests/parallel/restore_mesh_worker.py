"""One run of test_restore_mesh.py on another device count (not a test itself).

python -m tests.parallel.restore_mesh_worker DEVICES WORKDIR STOP_AT_STEP DATA FSDP

Sets DEVICES simulated CPU devices (before JAX starts), restores the workdir's latest checkpoint
into this mesh's layout by hand to report where a parameter landed, then resumes the run with
`train_and_evaluate` up to STOP_AT_STEP on the mesh data DATA x fsdp FSDP. Prints one `RESULT {json}`.
"""

import json
import os
import sys

from tests.xla_test_flags import with_test_flags

os.environ["XLA_FLAGS"] = with_test_flags(f"--xla_force_host_platform_device_count={int(sys.argv[1])}")
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402


def main():
    from mixtok import data as data_lib
    from mixtok.parallel import create_mesh, rules_from_config
    from mixtok.train import steps
    from mixtok.train.checkpointing import create_checkpointer
    from mixtok.train.tasks import get_task
    from mixtok.train.trainer import train_and_evaluate
    from tests.parallel.test_restore_mesh import PARAMETER, remesh_config

    workdir, stop_at_step, data, fsdp = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    config = remesh_config(data=data, fsdp=fsdp)
    # The trainer's own restore, with the same layout it builds: where does a saved parameter land?
    info = data_lib.dataset_info(config.data)
    task = get_task(config.task).from_config(config, info)
    tx, _ = task.create_optimizer(config)
    mesh = create_mesh(config.mesh)
    rules = rules_from_config(config.get("sharding_rules"))
    layout = steps.abstract_train_state(task, tx, info.image_size, mesh, rules)
    batches = data_lib.create_train_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)
    checkpointer = create_checkpointer(config, workdir)
    try:
        step, state = checkpointer.restore_latest(layout, batches, config)
    finally:
        checkpointer.close()
    restored = state.params
    for key in PARAMETER:
        restored = restored[key]
    restored_at = {
        "step": step,
        "mesh": {name: int(size) for name, size in restored.sharding.mesh.shape.items()},
        "spec": [None if axis is None else axis for axis in restored.sharding.spec],
        "devices": sorted(d.id for d in restored.sharding.device_set),
    }
    del state, restored
    final = train_and_evaluate(config, workdir, stop_at_step=stop_at_step)
    print("RESULT " + json.dumps({"devices": jax.device_count(), "restored": restored_at, "final": final}))


if __name__ == "__main__":
    main()
