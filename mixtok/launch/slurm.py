"""A SLURM GPU cluster: an sbatch script with one trainer process per GPU, submitted with `sbatch`.

    python -m mixtok.launch slurm --nodes 2 --gpus-per-node 8 -- \
        --config experiments/configs/quickstart.py --workdir /shared/runs/quickstart

The script asks for `--nodes=N --ntasks-per-node=G --gpus-per-node=G` and runs `srun python3 -m
mixtok.train ... --distributed`: each srun task is one process, and `jax.distributed.initialize()`
finds the coordinator, the process count and this process's id in SLURM's variables, and gives task
SLURM_LOCALID that GPU of its node (jax-ml/jax: jax/_src/clusters/slurm_cluster.py, cluster.py). The
JAX docs recommend "one process per GPU and not one per node" (jax-ml/jax docs, gpu_performance_tips.md);
`--gpus-per-task=1` would hide the other GPUs from each task and break that mapping with "invalid
device ordinal" (jax-ml/jax issues #23452, #28194, #29669).

Preemption: `--signal=TERM@S` makes SLURM send SIGTERM to every task S seconds before the time limit
(default 120; "by default all job steps will be signaled, but not the batch shell itself", SchedMD/slurm:
doc/man/man1/sbatch.1); scancel and preemption send SIGTERM and then SIGKILL after KillWait (default 30 s,
SchedMD/slurm: doc/man/man5/slurm.conf.5). The trainer saves a checkpoint on SIGTERM and exits 143, and
srun returns "the highest exit code of all tasks" (SchedMD/slurm: doc/man/man1/srun.1). With --requeue
the job may be requeued, and after an exit of 143 the script requeues itself (`scontrol requeue`), so
the job resumes from that checkpoint.
"""

import os
import shlex
import subprocess

from mixtok.launch.common import (
    PROXY_VARIABLES,
    LaunchError,
    TrainerArgs,
    add_common_options,
    at_least_one,
    print_commands,
    require_shared_workdir,
    require_tool,
    trainer_command,
)

HELP = "A SLURM GPU cluster: an sbatch script, one process per GPU, submitted with sbatch."
# From MaxText's multi-node H100 (A3) scripts (AI-Hypercomputer/maxtext: src/maxtext/configs/gpu/a3/
# llama_2_7b/16vm.sh); the JAX docs warn such flags "may be jaxlib-version dependent"
# (jax-ml/jax docs, gpu_performance_tips.md), and XLA refuses a flag it does not know.
XLA_GPU_FLAGS = (
    "--xla_gpu_enable_latency_hiding_scheduler=true",
    "--xla_gpu_enable_triton_gemm=false",
    "--xla_gpu_enable_highest_priority_async_stream=true",
    "--xla_gpu_all_reduce_combine_threshold_bytes=1073741824",
    "--xla_gpu_all_gather_combine_threshold_bytes=134217728",
    "--xla_gpu_reduce_scatter_combine_threshold_bytes=134217728",
)


def add_arguments(parser) -> None:
    parser.add_argument("--nodes", type=at_least_one, default=1, help="Number of nodes N (default 1).")
    parser.add_argument(
        "--gpus-per-node", type=at_least_one, default=8, help="GPUs per node G; one process each (default 8)."
    )
    parser.add_argument("--job-name", default="mixtok", help="SLURM job name (default mixtok).")
    parser.add_argument("--partition", help="SLURM partition.")
    parser.add_argument("--account", help="SLURM account.")
    parser.add_argument("--time", help="Time limit, e.g. 24:00:00.")
    parser.add_argument("--cpus-per-task", type=at_least_one, help="CPUs per process (data loading).")
    parser.add_argument(
        "--signal-seconds",
        type=at_least_one,
        default=120,
        help="SIGTERM this many seconds before the time limit, so the trainer can checkpoint (default 120).",
    )
    parser.add_argument(
        "--requeue", action="store_true", help="Let SLURM requeue the job, and requeue it after a preemption exit."
    )
    parser.add_argument(
        "--xla-gpu-flags", action="store_true", help="Export MaxText's multi-node H100 XLA flags (launch/README.md)."
    )
    parser.add_argument(
        "--setup",
        action="append",
        default=[],
        metavar="LINE",
        help="A shell line run before srun, e.g. 'source venv/bin/activate' (repeatable).",
    )
    parser.add_argument("--python", default="python3", help="Python interpreter on the nodes (default python3).")
    parser.add_argument("--script", help="The sbatch script to write (default: JOB_NAME.sbatch here).")
    parser.add_argument("--force", action="store_true", help="Overwrite --script if it exists.")
    add_common_options(parser)


def script_text(options, trainer: TrainerArgs, directory: str) -> str:
    """The sbatch script: resources, signal, environment, then one srun."""
    sbatch = [
        f"--job-name={options.job_name}",
        f"--nodes={options.nodes}",
        f"--ntasks-per-node={options.gpus_per_node}",
        f"--gpus-per-node={options.gpus_per_node}",
        f"--signal=TERM@{options.signal_seconds}",
        f"--chdir={directory}",
    ]
    for name in ("partition", "account", "time", "cpus_per_task"):
        if getattr(options, name) is not None:
            sbatch.append(f"--{name.replace('_', '-')}={getattr(options, name)}")
    if options.requeue:
        sbatch.append("--requeue")
    lines = ["#!/bin/bash", "# Written by python -m mixtok.launch slurm (see launch/README.md)."]
    lines += [f"#SBATCH {option}" for option in sbatch]
    lines += [
        "",
        "# One process per GPU: jax.distributed.initialize() reads SLURM_NTASKS, SLURM_PROCID and SLURM_LOCALID.",
        f"# SIGTERM reaches every task {options.signal_seconds} s before the time limit; the trainer saves a",
        "# checkpoint and exits 143.",
        "# HTTP(S) proxies may hang jax.distributed.initialize (jax-ml/jax: jax/_src/distributed.py).",
        "unset " + " ".join(PROXY_VARIABLES),
    ]
    if options.xla_gpu_flags:
        lines += [
            "# XLA flags of MaxText's multi-node H100 scripts; drop any your jaxlib does not know.",
            'export XLA_FLAGS="${XLA_FLAGS:-} ' + " ".join(XLA_GPU_FLAGS) + '"',
        ]
    lines += options.setup
    srun = "srun " + shlex.join(trainer_command(options.python, trainer))
    if options.requeue:
        lines += [
            srun + " && status=0 || status=$?",
            "# 143: preempted or out of time after saving a checkpoint; requeue to resume from it.",
            'if [ "$status" -eq 143 ]; then scontrol requeue "$SLURM_JOB_ID"; fi',
            'exit "$status"',
        ]
    else:
        lines.append(srun)
    return "\n".join(lines) + "\n"


def run(options, trainer: TrainerArgs) -> int:
    require_shared_workdir(trainer, "SLURM")
    script = options.script or f"{options.job_name}.sbatch"
    text = script_text(options, trainer, os.getcwd())
    submit = ["sbatch", script]
    if options.dry_run:
        print_commands([f"cat > {shlex.quote(script)} <<'EOF'\n{text}EOF", submit])
        return 0
    if os.path.exists(script) and not options.force:
        raise LaunchError(f"--script {script!r} exists; pass --force to overwrite it, or name another --script.")
    require_tool("sbatch", "run this on a SLURM login node")
    with open(script, "w", encoding="utf-8") as f:
        f.write(text)
    return subprocess.run(submit).returncode
