"""GKE through xpk: `xpk workload create` runs the trainer in a container on every TPU VM or GPU node.

    python -m mixtok.launch gke --cluster my-cluster --workload quickstart-1 --tpu-type v5litepod-16 -- \
        --config experiments/configs/quickstart.py --workdir /mnt/shared/runs/quickstart

The shape is xpk's: `xpk workload create --cluster C --workload W --command "..." (--tpu-type T
[--num-slices S] | --device-type D --num-nodes N)` (AI-Hypercomputer/xpk, usage guide workloads.md).
On TPUs `jax.distributed.initialize()` detects the GKE slice by itself (jax-ml/jax:
jax/_src/clusters/cloud_tpu_cluster.py). On GPUs xpk runs one container per node and sets
JAX_COORDINATOR_ADDRESS, JAX_COORDINATOR_PORT, NNODES and NODE_RANK (AI-Hypercomputer/xpk:
src/xpk/core/docker_resources.py), which the command passes to the trainer: one process per node,
driving all of its GPUs.

xpk runs the command under `bash -c` and forwards the pod's SIGTERM to it (AI-Hypercomputer/xpk:
src/xpk/core/docker_container.py); `exec` makes the trainer that process. The pod gets
--termination-grace-period-seconds between SIGTERM and the kill (xpk's default is 30; here 120, time
for a checkpoint), and with --max-restarts above 0 a workload that exits 42 or 127-255 is restarted
(AI-Hypercomputer/xpk: src/xpk/parser/workload.py), so a preempted trainer (exit 143) resumes.
The workdir must be an absolute path on a filesystem mounted in every container, e.g. a Filestore
instance or a bucket attached with `xpk storage attach NAME --type=gcpfilestore|gcsfuse --mount-point
/mnt/shared --auto-mount=true` (AI-Hypercomputer/xpk, usage guide storage.md): every host writes to it.
A gs://bucket/path works as well (the trainer writes to Cloud Storage itself; the image needs mixtok's
`gcs` extra, gcsfs; launch/README.md, "The workdir").
"""

import argparse
import shlex
import subprocess

from mixtok.launch.common import (
    LaunchError,
    TrainerArgs,
    add_common_options,
    at_least_one,
    print_commands,
    require_shared_workdir,
    require_tool,
    trainer_command,
)

HELP = "GKE through xpk: prints / runs xpk workload create for TPU slices or GPU nodes."
# xpk sets these in each GPU pod; $-references are expanded there, by the container's bash.
GPU_DISTRIBUTED_FLAGS = (
    "--coordinator_address ${JAX_COORDINATOR_ADDRESS}:${JAX_COORDINATOR_PORT}"
    " --num_processes ${NNODES} --process_id ${NODE_RANK}"
)


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def add_arguments(parser) -> None:
    parser.add_argument("--cluster", help="The xpk (GKE) cluster's name (required).")
    parser.add_argument("--workload", help="A name for this workload (required), e.g. quickstart-1.")
    accelerator = parser.add_mutually_exclusive_group()
    accelerator.add_argument("--tpu-type", help="TPU slice type, e.g. v5litepod-16.")
    accelerator.add_argument("--device-type", help="GPU node type, e.g. h100-80gb-8.")
    parser.add_argument("--num-slices", type=at_least_one, help="TPU slices (with --tpu-type; xpk's default 1).")
    parser.add_argument("--num-nodes", type=at_least_one, default=1, help="GPU nodes (with --device-type; default 1).")
    parser.add_argument("--max-restarts", type=_non_negative, help="Restarts after a failure or preemption (xpk: 0).")
    parser.add_argument(
        "--termination-grace-period-seconds",
        type=at_least_one,
        default=120,
        help="Seconds between SIGTERM and the kill, for the checkpoint (default 120; xpk's own is 30).",
    )
    parser.add_argument("--docker-image", help="A container image with mixtok installed (xpk --docker-image).")
    parser.add_argument(
        "--base-docker-image", help="Base image that xpk layers this directory onto (xpk's default is python:3.10)."
    )
    parser.add_argument("--install", default="", help="Shell step run in the container before training.")
    parser.add_argument("--python", default="python3", help="Python interpreter in the container (default python3).")
    parser.add_argument("--project", help="Google Cloud project (default: gcloud's).")
    parser.add_argument("--zone", help="The cluster's zone (default: gcloud's).")
    add_common_options(parser)


def container_command(options, trainer: TrainerArgs) -> str:
    train = "exec " + shlex.join(trainer_command(options.python, trainer))
    if options.device_type:
        train += " " + GPU_DISTRIBUTED_FLAGS
    return f"{options.install.strip()} && {train}" if options.install.strip() else train


def workload_command(options, trainer: TrainerArgs) -> list[str]:
    command = ["xpk", "workload", "create", "--cluster", options.cluster, "--workload", options.workload]
    command += ["--command", container_command(options, trainer)]
    if options.tpu_type:
        command += ["--tpu-type", options.tpu_type]
        command += ["--num-slices", str(options.num_slices)] if options.num_slices else []
    else:
        command += ["--device-type", options.device_type, "--num-nodes", str(options.num_nodes)]
    if options.max_restarts is not None:
        command += ["--max-restarts", str(options.max_restarts)]
    command += ["--termination-grace-period-seconds", str(options.termination_grace_period_seconds)]
    for name in ("docker_image", "base_docker_image", "project", "zone"):
        if getattr(options, name):
            command += [f"--{name.replace('_', '-')}", getattr(options, name)]
    return command


def run(options, trainer: TrainerArgs) -> int:
    if not options.cluster:
        raise LaunchError("gke needs --cluster, the xpk cluster's name (see `xpk cluster list`).")
    if not options.workload:
        raise LaunchError("gke needs --workload, a name for this run (lowercase letters, digits and '-').")
    if not (options.tpu_type or options.device_type):
        raise LaunchError("gke needs --tpu-type (e.g. v5litepod-16) or --device-type (e.g. h100-80gb-8).")
    if options.num_slices and not options.tpu_type:
        raise LaunchError("--num-slices counts TPU slices; with --device-type give --num-nodes.")
    require_shared_workdir(trainer, "GKE")
    command = workload_command(options, trainer)
    if options.dry_run:
        print_commands([command])
        return 0
    require_tool("xpk", "install it with `pip install xpk` (it also needs gcloud and kubectl)")
    return subprocess.run(command).returncode
