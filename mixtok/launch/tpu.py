"""A Cloud TPU VM slice: the same trainer command on every worker, over `gcloud ... ssh --worker=all`.

    python -m mixtok.launch tpu --name my-v4-32 --zone us-central2-b [--create v4-32] -- \
        --config experiments/configs/quickstart.py --workdir /mnt/shared/runs/quickstart

Every worker runs `cd CHECKOUT && INSTALL && exec python3 -m mixtok.train ... --distributed`; on a TPU
VM `jax.distributed.initialize()` needs no arguments (jax-ml/jax docs, multi_process.md, "TPU
Example"). This is big_vision's pattern (google-research/big_vision: README.md): `gcloud compute tpus
tpu-vm ssh $NAME --zone=$ZONE --worker=all --command "..."`, its run_tpu.sh installing `jax[tpu]` and
running `python3 -m ...`. `exec` makes the trainer the process that receives a shutdown's SIGTERM.

With `--create ACCELERATOR_TYPE` the slice is first requested as a queued resource
(`gcloud compute tpus queued-resources create QR --zone Z --runtime-version V --accelerator-type T
--node-id NAME [--spot | --reserved]`, Google Cloud doc page "gcloud compute tpus queued-resources
create"), and the launcher polls it until its state is ACTIVE.

The workdir must be one every worker writes to: a gs://bucket/path (the trainer writes to Cloud Storage
itself; the default --install installs the `gcs` extra, gcsfs) or an absolute path on a filesystem every
worker mounts, such as a Filestore NFS share (launch/README.md, "The workdir").
The checkout (the same code, with the config file) must already be on every worker, e.g. by
`gcloud compute tpus tpu-vm scp --recurse mixtok NAME: --zone Z --worker=all` or a `git clone` in --install.
"""

import shlex
import subprocess
import time

from mixtok.launch.common import (
    LaunchError,
    TrainerArgs,
    add_common_options,
    print_commands,
    require_shared_workdir,
    require_tool,
    trainer_command,
)

HELP = "A Cloud TPU VM slice: gcloud compute tpus tpu-vm ssh --worker=all (and queued resources with --create)."
DEFAULT_INSTALL = 'python3 -m pip install "jax[tpu]" -e ".[gcs]"'
# QueuedResource.state.state of the TPU v2 API (google-cloud-sdk: googlecloudsdk/generated_clients/apis/tpu/v2/
# tpu_v2_messages.py): CREATING, ACCEPTED, PROVISIONING, WAITING_FOR_RESOURCES lead to ACTIVE; these do not.
ACTIVE, FAILED_STATES = "ACTIVE", ("FAILED", "DELETING", "SUSPENDING", "SUSPENDED")


def add_arguments(parser) -> None:
    parser.add_argument("--name", help="The TPU VM's name (required): `gcloud compute tpus tpu-vm list`.")
    parser.add_argument("--zone", help="Its zone (required), e.g. us-central2-b.")
    parser.add_argument("--project", help="Google Cloud project (default: gcloud's configured one).")
    parser.add_argument(
        "--checkout", default="mixtok", help="The mixtok checkout on each worker, relative to home (default mixtok)."
    )
    parser.add_argument(
        "--install",
        default=DEFAULT_INSTALL,
        help=f"Shell step run in the checkout before training (default: {DEFAULT_INSTALL}; '' for none).",
    )
    parser.add_argument("--python", default="python3", help="Python interpreter on the workers (default python3).")
    parser.add_argument(
        "--create",
        metavar="ACCELERATOR_TYPE",
        help="First create the slice as a queued resource of this type (e.g. v4-32), named --name, and wait for it.",
    )
    parser.add_argument("--runtime-version", default="tpu-ubuntu2204-base", help="TPU software version for --create.")
    provisioning = parser.add_mutually_exclusive_group()
    provisioning.add_argument("--spot", action="store_true", help="With --create: spot capacity (preemptible).")
    provisioning.add_argument("--reserved", action="store_true", help="With --create: use a reservation.")
    parser.add_argument(
        "--poll-seconds", type=float, default=30.0, help="With --create: seconds between state checks (default 30)."
    )
    add_common_options(parser)


def _project(options) -> list[str]:
    return ["--project", options.project] if options.project else []


def remote_command(options, trainer: TrainerArgs) -> str:
    steps = [f"cd {shlex.quote(options.checkout)}"]
    if options.install.strip():
        steps.append(options.install.strip())
    steps.append("exec " + shlex.join(trainer_command(options.python, trainer)))
    return " && ".join(steps)


def create_command(options) -> list[str]:
    command = ["gcloud", "compute", "tpus", "queued-resources", "create", options.name, "--zone", options.zone]
    command += ["--runtime-version", options.runtime_version, "--accelerator-type", options.create]
    command += ["--node-id", options.name]
    command += ["--spot"] if options.spot else ["--reserved"] if options.reserved else []
    return command + _project(options)


def state_command(options) -> list[str]:
    command = ["gcloud", "compute", "tpus", "queued-resources", "describe", options.name, "--zone", options.zone]
    return command + ["--format=value(state.state)"] + _project(options)


def ssh_command(options, trainer: TrainerArgs) -> list[str]:
    command = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", options.name, "--zone", options.zone, "--worker=all"]
    return command + ["--command", remote_command(options, trainer)] + _project(options)


def run(options, trainer: TrainerArgs) -> int:
    if not options.name:
        raise LaunchError("tpu needs --name, the TPU VM's name (see `gcloud compute tpus tpu-vm list`).")
    if not options.zone:
        raise LaunchError("tpu needs --zone, the TPU VM's zone (e.g. us-central2-b).")
    if (options.spot or options.reserved) and not options.create:
        raise LaunchError("--spot and --reserved choose how --create requests the slice; add --create TYPE.")
    require_shared_workdir(trainer, "TPU pod")
    ssh = ssh_command(options, trainer)
    if options.dry_run:
        lines = []
        if options.create:
            lines += [
                create_command(options),
                f"{shlex.join(state_command(options))}  # every {options.poll_seconds:g} s until {ACTIVE}",
            ]
        print_commands([*lines, ssh])
        return 0
    require_tool("gcloud", "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)")
    if options.create:
        returncode = subprocess.run(create_command(options)).returncode
        if returncode:
            return returncode
        if not _wait_until_active(options):
            return 1
    return subprocess.run(ssh).returncode


def _wait_until_active(options) -> bool:
    last = None
    while True:
        result = subprocess.run(state_command(options), capture_output=True, text=True)
        state = result.stdout.strip() or f"unknown ({result.stderr.strip().splitlines()[-1:]})"
        if state != last:
            print(f"mixtok.launch: queued resource {options.name}: {state}", flush=True)
            last = state
        if state == ACTIVE:
            return True
        if state in FAILED_STATES:
            return False
        time.sleep(options.poll_seconds)
