"""One process of the two-process run in test_multihost.py (not a test itself).

python -m tests.train.multihost_worker PROCESS_ID PORT WORKDIR [MODULE:FUNCTION]

MODULE:FUNCTION names a function returning the run's config (default: test_trainer's tiny 4-step run).
"""

import importlib
import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402


def main():
    process_id, port, workdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    from mixtok.train.__main__ import initialize_distributed
    from mixtok.train.trainer import train_and_evaluate

    initialize_distributed(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    if len(sys.argv) > 4:
        module, function = sys.argv[4].split(":")
        config = getattr(importlib.import_module(module), function)()
    else:
        from tests.train.test_trainer import tiny_config

        config = tiny_config(total_steps=4, log_every=1, eval_every=4, checkpoint_every=4)
    final = train_and_evaluate(config, workdir)
    print(
        "RESULT "
        + json.dumps(
            {
                "process": jax.process_index(),
                "processes": jax.process_count(),
                "devices": jax.device_count(),
                "final": final,
            }
        )
    )


if __name__ == "__main__":
    main()
