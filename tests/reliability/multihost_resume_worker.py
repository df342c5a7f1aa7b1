"""One process of the two-process resume in test_checkpoints.py (not a test itself).

python -m tests.reliability.multihost_resume_worker PROCESS_ID PORT WORKDIR
"""

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
    from tests.reliability.test_checkpoints import run_config

    final = train_and_evaluate(run_config(), workdir)
    print("RESULT " + json.dumps({"process": jax.process_index(), "final": final}))


if __name__ == "__main__":
    main()
