"""The launchers: each --dry-run prints the exact expected commands, bad input is one line and exit 2,
and the local launcher really runs two cooperating trainer processes and stops when one fails."""

import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mixtok.launch.local import supervise
from tests.train.test_multihost import MULTIHOST_UNSET
from tests.xla_test_flags import TEST_XLA_FLAGS

REPO = Path(__file__).resolve().parents[2]
CONFIG = "experiments/configs/quickstart.py"


def launch(*args, path=None, xla_flags=None):
    """`python -m mixtok.launch ARGS` in the repository, with a controlled environment."""
    env = {k: v for k, v in os.environ.items() if k not in (*MULTIHOST_UNSET, "PYTHONPATH")}
    env["PYTHONPATH"] = str(REPO)
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    if path is not None:
        env["PATH"] = str(path)
    return subprocess.run(
        [sys.executable, "-m", "mixtok.launch", *args], cwd=REPO, env=env, capture_output=True, text=True
    )


def dry_run(*args, **kwargs) -> str:
    result = launch(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


# --- dry runs -------------------------------------------------------------------------------------


def test_local_dry_run_prints_one_command_per_process_with_its_cpu_devices():
    out = dry_run(
        "local", "--processes", "2", "--devices-per-process", "4", "--port", "12345", "--python", "python",
        "--dry-run", "--", "--config", f"{CONFIG}:steps=4", "--workdir", "/tmp/run", "--config.optimizer.lr=0.001",
        xla_flags="--xla_cpu_use_thunk_runtime=true --xla_force_host_platform_device_count=8",
    )  # fmt: skip
    env = (
        "JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES=4 "
        "XLA_FLAGS='--xla_cpu_use_thunk_runtime=true --xla_force_host_platform_device_count=4'"
    )
    train = f"python -m mixtok.train --config {CONFIG}:steps=4 --workdir /tmp/run --config.optimizer.lr=0.001"
    assert out == (
        f"{env} {train} --distributed --coordinator_address 127.0.0.1:12345 --num_processes 2 --process_id 0\n"
        f"{env} {train} --distributed --coordinator_address 127.0.0.1:12345 --num_processes 2 --process_id 1\n"
    )


def test_tpu_dry_run_creates_the_queued_resource_waits_and_runs_on_every_worker():
    out = dry_run(
        "tpu", "--name", "pod", "--zone", "us-central2-b", "--create", "v4-32", "--spot", "--dry-run",
        "--", "--config", CONFIG, "--workdir", "gs://bucket/runs/q", "--config.total_steps=1000",
    )  # fmt: skip
    assert out == (
        "gcloud compute tpus queued-resources create pod --zone us-central2-b --runtime-version tpu-ubuntu2204-base "
        "--accelerator-type v4-32 --node-id pod --spot\n"
        "gcloud compute tpus queued-resources describe pod --zone us-central2-b '--format=value(state.state)'"
        "  # every 30 s until ACTIVE\n"
        "gcloud compute tpus tpu-vm ssh pod --zone us-central2-b --worker=all --command "
        '\'cd mixtok && python3 -m pip install "jax[tpu]" -e ".[gcs]" && exec python3 -m mixtok.train '
        f"--config {CONFIG} --workdir gs://bucket/runs/q --config.total_steps=1000 --distributed'\n"
    )


def test_tpu_dry_run_with_its_own_checkout_install_step_and_project():
    out = dry_run(
        "tpu", "--name", "pod", "--zone", "europe-west4-a", "--project", "proj", "--checkout", "src/mixtok",
        "--install", "", "--dry-run", "--", f"--config={CONFIG}:steps=10", "--workdir=/mnt/shared/runs/q",
    )  # fmt: skip
    assert out == (
        "gcloud compute tpus tpu-vm ssh pod --zone europe-west4-a --worker=all --command "
        f"'cd src/mixtok && exec python3 -m mixtok.train --config={CONFIG}:steps=10 --workdir=/mnt/shared/runs/q "
        "--distributed' --project proj\n"
    )


def _sbatch(script_lines: str) -> str:
    return f"cat > mixtok.sbatch <<'EOF'\n{textwrap.dedent(script_lines).lstrip()}EOF\nsbatch mixtok.sbatch\n"


def test_slurm_dry_run_prints_the_script_with_one_process_per_gpu_and_the_sbatch_command():
    out = dry_run(
        "slurm", "--nodes", "2", "--gpus-per-node", "8", "--dry-run",
        "--", "--config", CONFIG, "--workdir", "/shared/runs/q", "--config.batch_size=512",
    )  # fmt: skip
    assert out == _sbatch(f"""
        #!/bin/bash
        # Written by python -m mixtok.launch slurm (see launch/README.md).
        #SBATCH --job-name=mixtok
        #SBATCH --nodes=2
        #SBATCH --ntasks-per-node=8
        #SBATCH --gpus-per-node=8
        #SBATCH --signal=TERM@120
        #SBATCH --chdir={REPO}

        # One process per GPU: jax.distributed.initialize() reads SLURM_NTASKS, SLURM_PROCID and SLURM_LOCALID.
        # SIGTERM reaches every task 120 s before the time limit; the trainer saves a
        # checkpoint and exits 143.
        # HTTP(S) proxies may hang jax.distributed.initialize (jax-ml/jax: jax/_src/distributed.py).
        unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY
        srun python3 -m mixtok.train --config {CONFIG} --workdir /shared/runs/q --config.batch_size=512 --distributed
        """)


def test_slurm_dry_run_with_requeue_xla_flags_and_setup():
    out = dry_run(
        "slurm", "--nodes", "4", "--gpus-per-node", "4", "--partition", "gpu", "--time", "24:00:00", "--requeue",
        "--xla-gpu-flags", "--setup", "source venv/bin/activate", "--signal-seconds", "300", "--dry-run",
        "--", "--config", CONFIG, "--workdir", "/shared/runs/q",
    )  # fmt: skip
    assert out == _sbatch(f"""
        #!/bin/bash
        # Written by python -m mixtok.launch slurm (see launch/README.md).
        #SBATCH --job-name=mixtok
        #SBATCH --nodes=4
        #SBATCH --ntasks-per-node=4
        #SBATCH --gpus-per-node=4
        #SBATCH --signal=TERM@300
        #SBATCH --chdir={REPO}
        #SBATCH --partition=gpu
        #SBATCH --time=24:00:00
        #SBATCH --requeue

        # One process per GPU: jax.distributed.initialize() reads SLURM_NTASKS, SLURM_PROCID and SLURM_LOCALID.
        # SIGTERM reaches every task 300 s before the time limit; the trainer saves a
        # checkpoint and exits 143.
        # HTTP(S) proxies may hang jax.distributed.initialize (jax-ml/jax: jax/_src/distributed.py).
        unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY
        # XLA flags of MaxText's multi-node H100 scripts; drop any your jaxlib does not know.
        export XLA_FLAGS="${{XLA_FLAGS:-}} --xla_gpu_enable_latency_hiding_scheduler=true \
--xla_gpu_enable_triton_gemm=false --xla_gpu_enable_highest_priority_async_stream=true \
--xla_gpu_all_reduce_combine_threshold_bytes=1073741824 --xla_gpu_all_gather_combine_threshold_bytes=134217728 \
--xla_gpu_reduce_scatter_combine_threshold_bytes=134217728"
        source venv/bin/activate
        srun python3 -m mixtok.train --config {CONFIG} --workdir /shared/runs/q --distributed && status=0 || status=$?
        # 143: preempted or out of time after saving a checkpoint; requeue to resume from it.
        if [ "$status" -eq 143 ]; then scontrol requeue "$SLURM_JOB_ID"; fi
        exit "$status"
        """)


def test_gke_dry_run_for_a_tpu_slice():
    out = dry_run(
        "gke", "--cluster", "c1", "--workload", "q-1", "--tpu-type", "v5litepod-16", "--num-slices", "2",
        "--max-restarts", "10", "--dry-run", "--", "--config", CONFIG, "--workdir", "gs://bucket/runs/q",
    )  # fmt: skip
    assert out == (
        "xpk workload create --cluster c1 --workload q-1 --command "
        f"'exec python3 -m mixtok.train --config {CONFIG} --workdir gs://bucket/runs/q --distributed' "
        "--tpu-type v5litepod-16 --num-slices 2 --max-restarts 10 --termination-grace-period-seconds 120\n"
    )


def test_gke_dry_run_for_gpu_nodes_passes_xpks_coordinator_variables():
    out = dry_run(
        "gke", "--cluster", "c1", "--workload", "q-2", "--device-type", "h100-80gb-8", "--num-nodes", "2",
        "--docker-image", "gcr.io/p/mixtok:latest", "--dry-run",
        "--", "--config", CONFIG, "--workdir", "/mnt/shared/runs/q",
    )  # fmt: skip
    assert out == (
        "xpk workload create --cluster c1 --workload q-2 --command "
        f"'exec python3 -m mixtok.train --config {CONFIG} --workdir /mnt/shared/runs/q --distributed "
        "--coordinator_address ${JAX_COORDINATOR_ADDRESS}:${JAX_COORDINATOR_PORT} --num_processes ${NNODES} "
        "--process_id ${NODE_RANK}' --device-type h100-80gb-8 --num-nodes 2 --termination-grace-period-seconds 120 "
        "--docker-image gcr.io/p/mixtok:latest\n"
    )


# --- bad input ------------------------------------------------------------------------------------

TRAIN = ("--", "--config", CONFIG, "--workdir", "/mnt/shared/runs/quickstart")
GKE = ("gke", "--cluster", "c", "--workload", "w")
URL_REFUSED = (
    "--workdir {!r}: of URLs only gs:// (Google Cloud Storage) is supported; give a gs://bucket/path or an absolute "
    "path on a filesystem every host mounts."
)
BAD_INPUT = {
    "unknown kind": (
        ("k8s", *TRAIN),
        "unknown cluster kind 'k8s'; valid kinds: local, tpu, slurm, gke.",
    ),
    "no kind": (
        (),
        "no cluster kind; usage: python -m mixtok.launch {local,tpu,slurm,gke} [launcher options] -- <trainer args>",
    ),
    "no such config": (
        ("local", "--dry-run", "--", "--config", "experiments/configs/nope.py:steps=3", "--workdir", "/tmp/x"),
        "config file 'experiments/configs/nope.py' does not exist (configs live in experiments/configs/; paths are "
        f"relative to the current directory, {REPO}).",
    ),
    "no config": (
        ("local", "--dry-run", "--", "--workdir", "/tmp/x"),
        "no --config after '--': give the trainer's arguments after '--', e.g. "
        "-- --config experiments/configs/quickstart.py --workdir DIR.",
    ),
    "no workdir": (
        ("local", "--dry-run", "--", "--config", CONFIG),
        "no --workdir after '--': the trainer needs a directory for checkpoints and metrics.",
    ),
    "trainer args before --": (
        ("local", "--config", CONFIG, "--workdir", "/tmp/x"),
        f"unknown local option(s) '--config {CONFIG} --workdir /tmp/x'; the trainer's arguments go after '--' "
        "(`mixtok.launch local --help` lists the launcher's).",
    ),
    "launcher flag given to the trainer": (
        ("local", "--dry-run", *TRAIN, "--process_id=1"),
        "'--process_id=1': the launcher sets --distributed, --coordinator_address, --num_processes, --process_id "
        "itself; leave them out.",
    ),
    "zero processes": (
        ("local", "--processes", "0", "--dry-run", *TRAIN),
        "argument --processes: 0 is less than 1 (it must be 1 or more)",
    ),
    "negative grace period": (
        ("local", "--grace-seconds", "-1", "--dry-run", *TRAIN),
        "argument --grace-seconds: '-1' is not a number of seconds >= 0",
    ),
    "no such interpreter": (
        ("local", "--python", "python-nope", "--", "--config", CONFIG, "--workdir", "/tmp/x"),
        "--python 'python-nope' is not an interpreter on PATH; give a path or a command name.",
    ),
    "zero nodes": (
        ("slurm", "--nodes", "0", "--dry-run", "--", "--config", CONFIG, "--workdir", "/shared/x"),
        "argument --nodes: 0 is less than 1 (it must be 1 or more)",
    ),
    "gpus not a number": (
        ("slurm", "--gpus-per-node", "all", "--dry-run", "--", "--config", CONFIG, "--workdir", "/shared/x"),
        "argument --gpus-per-node: 'all' is not a whole number (it must be 1 or more)",
    ),
    "tpu without a name": (
        ("tpu", "--zone", "z", "--dry-run", *TRAIN),
        "tpu needs --name, the TPU VM's name (see `gcloud compute tpus tpu-vm list`).",
    ),
    "tpu without a zone": (
        ("tpu", "--name", "pod", "--dry-run", *TRAIN),
        "tpu needs --zone, the TPU VM's zone (e.g. us-central2-b).",
    ),
    "tpu with a relative workdir": (
        ("tpu", "--name", "pod", "--zone", "z", "--dry-run", "--", "--config", CONFIG, "--workdir", "runs/q"),
        "--workdir 'runs/q' is a relative path, but every host of a TPU pod run writes to the workdir; "
        "use an absolute path on a filesystem every host mounts.",
    ),
    "tpu with an s3:// workdir": (
        ("tpu", "--name", "pod", "--zone", "z", "--dry-run", "--", "--config", CONFIG, "--workdir", "s3://b/r"),
        URL_REFUSED.format("s3://b/r"),
    ),
    "slurm with a relative workdir": (
        ("slurm", "--dry-run", "--", "--config", CONFIG, "--workdir", "runs/q"),
        "--workdir 'runs/q' is a relative path, but every host of a SLURM run writes to the workdir; "
        "use an absolute path on a filesystem every host mounts.",
    ),
    "slurm with a file:// workdir": (
        ("slurm", "--dry-run", "--", "--config", CONFIG, "--workdir=file:///b/r"),
        URL_REFUSED.format("file:///b/r"),
    ),
    "slurm with an s3:// workdir": (
        ("slurm", "--dry-run", "--", "--config", CONFIG, "--workdir", "s3://b/r"),
        URL_REFUSED.format("s3://b/r"),
    ),
    "gke without a cluster": (
        ("gke", "--workload", "w", "--tpu-type", "v5litepod-16", "--dry-run", *TRAIN),
        "gke needs --cluster, the xpk cluster's name (see `xpk cluster list`).",
    ),
    "gke without an accelerator": (
        ("gke", "--cluster", "c", "--workload", "w", "--dry-run", *TRAIN),
        "gke needs --tpu-type (e.g. v5litepod-16) or --device-type (e.g. h100-80gb-8).",
    ),
    "gke with a relative workdir": (
        (*GKE, "--tpu-type", "v5litepod-16", "--dry-run", "--", "--config", CONFIG, "--workdir", "runs/q"),
        "--workdir 'runs/q' is a relative path, but every host of a GKE run writes to the workdir; "
        "use an absolute path on a filesystem every host mounts.",
    ),
    "gke with an az:// workdir": (
        (*GKE, "--device-type", "h100-80gb-8", "--dry-run", "--", "--config", CONFIG, "--workdir", "az://b/r"),
        URL_REFUSED.format("az://b/r"),
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(case):
    args, message = BAD_INPUT[case]
    result = launch(*args)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"mixtok.launch: error: {message}\n")


@pytest.mark.parametrize("case", ["slurm with a relative workdir", "tpu with an s3:// workdir"])
def test_the_workdir_errors_quoted_in_the_docs_are_the_launchers(case):
    args, message = BAD_INPUT[case]
    assert launch(*args).stderr == f"mixtok.launch: error: {message}\n"
    assert f"`mixtok.launch: error: {message}`" in (REPO / "launch" / "README.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("tpu", "--name", "pod", "--zone", "z", *TRAIN),
            "gcloud is not on PATH; install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install) "
            "(or use --dry-run to print the commands).",
        ),
        (
            ("gke", "--cluster", "c", "--workload", "w", "--tpu-type", "v5litepod-16", *TRAIN),
            "xpk is not on PATH; install it with `pip install xpk` (it also needs gcloud and kubectl) "
            "(or use --dry-run to print the commands).",
        ),
        (
            ("slurm", "--script", "{tmp}/job.sbatch", "--", "--config", CONFIG, "--workdir", "/shared/x"),
            "sbatch is not on PATH; run this on a SLURM login node (or use --dry-run to print the commands).",
        ),
    ],
    ids=["tpu", "gke", "slurm"],
)
def test_a_missing_cluster_tool_is_named_and_nothing_is_written(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = launch(*args, path=tmp_path)  # an empty PATH: no gcloud, xpk or sbatch
    assert (result.returncode, result.stderr) == (2, f"mixtok.launch: error: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_slurm_never_overwrites_a_script(tmp_path):
    script = tmp_path / "job.sbatch"
    script.write_text("mine\n")
    result = launch("slurm", "--script", str(script), "--", "--config", CONFIG, "--workdir", "/shared/x")
    assert (result.returncode, result.stderr) == (
        2,
        f"mixtok.launch: error: --script {str(script)!r} exists; pass --force to overwrite it, or name another "
        "--script.\n",
    )
    assert script.read_text() == "mine\n"


# --- the local launcher, for real -----------------------------------------------------------------


def test_local_launcher_trains_quickstart_as_two_processes_of_four_devices(tmp_path):
    """The done-when of issue 14: the quickstart config, unchanged, trains as two cooperating processes with
    FSDP x tensor x data parallelism and gets what one device gets."""
    workdir, alone = tmp_path / "run", tmp_path / "one_device"
    trainer_args = ["--config", f"{CONFIG}:steps=4", "--config.log_every=2"]
    result = launch(
        "local", "--processes", "2", "--devices-per-process", "4",
        "--", *trainer_args, "--workdir", str(workdir), "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
        xla_flags=TEST_XLA_FLAGS,  # kept by the launcher beside its device count (tests/xla_test_flags.py)
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    finals = {line[:4]: line[4:] for line in result.stdout.splitlines() if "final metrics:" in line}
    assert set(finals) == {"[0] ", "[1] "}, result.stdout
    # Two processes of one run: each holds half of every batch of one model, so both report the same metrics.
    assert finals["[0] "] == finals["[1] "]
    assert (workdir / "checkpoints" / "4").is_dir()
    # Each process of a multi-host run locks the workdir as `.lock.<process index>` (mixtok.train.workdir) ...
    assert sorted(p.name for p in workdir.glob(".lock*")) == [".lock.0", ".lock.1"]
    # ... and the checkpoint's arrays were laid out on one mesh of 2 x 2 x 2 devices (orbax records each sharding).
    shardings = json.loads((workdir / "checkpoints" / "4" / "state" / "_sharding").read_text())
    meshes = {tuple(json.loads(s)["shape"]) for s in shardings.values()}
    assert meshes == {(2, 2, 2)}
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]  # written once, by process 0
    assert f"eval/accuracy={records[-1]['eval/accuracy']:.4f}" in finals["[0] "]

    # The same command on one device, one process.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count=1 {TEST_XLA_FLAGS}"
    single = subprocess.run(
        [sys.executable, "-m", "mixtok.train", *trainer_args, "--workdir", str(alone)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    expected = [json.loads(line) for line in (alone / "metrics.jsonl").read_text().splitlines()]
    assert [r.keys() for r in records] == [r.keys() for r in expected]
    for got, want in zip(records, expected):
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=2e-4, abs=1e-5), (got["step"], key)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_a_failing_process_stops_the_others_and_its_status_is_returned():
    out = io.BytesIO()
    fails = _python("""
        import sys, time
        print("failing", flush=True)
        time.sleep(0.5)
        sys.exit(3)
        """)
    ignores_sigterm = _python("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("waiting for a peer that is gone", flush=True)
        time.sleep(600)
        """)
    status = supervise([ignores_sigterm, fails], grace_seconds=1.0, stdout=out, stderr=out)
    assert status == 3  # the first failure's status, not the SIGKILL of the process it left behind
    text = out.getvalue().decode()
    assert "[0] waiting for a peer that is gone\n" in text and "[1] failing\n" in text
    assert "mixtok.launch: process 1 exited with status 3" in text
    assert "mixtok.launch: sending SIGKILL to the 1 still running" in text


def test_sigterm_to_the_launcher_reaches_every_process(tmp_path):
    child = """
        import signal, sys, time
        def stop(signum, frame):
            print("got SIGTERM, checkpointing", flush=True)
            sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(600)
        """
    launcher = _python(f"""
        import sys
        from mixtok.launch.local import supervise
        child = [sys.executable, "-c", {textwrap.dedent(child)!r}]
        sys.exit(supervise([child, child]))
        """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(launcher, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = [proc.stdout.readline(), proc.stdout.readline()]  # blocks until both children run
    assert sorted(ready) == ["[0] ready\n", "[1] ready\n"]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert sorted(out.splitlines()) == ["[0] got SIGTERM, checkpointing", "[1] got SIGTERM, checkpointing"]


def test_a_child_killed_by_a_signal_counts_as_128_plus_the_signal():
    out = io.BytesIO()
    killed = _python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert supervise([killed], stdout=out, stderr=out) == 128 + signal.SIGKILL


WRAPPER_ARGS = {
    "local": ("--processes", "2", "--port", "2000", "--python", "python"),
    "tpu": ("--name", "pod", "--zone", "z"),
    "slurm": ("--nodes", "2", "--gpus-per-node", "4"),
    "gke": ("--cluster", "c", "--workload", "w", "--tpu-type", "v5litepod-16"),
}


@pytest.mark.parametrize("kind", WRAPPER_ARGS)
def test_each_shell_wrapper_runs_the_launcher(kind):
    args = (*WRAPPER_ARGS[kind], "--dry-run", *TRAIN)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(REPO), PYTHON=sys.executable)
    wrapper = subprocess.run(["bash", f"launch/{kind}.sh", *args], cwd=REPO, env=env, capture_output=True, text=True)
    assert wrapper.returncode == 0, wrapper.stderr
    assert wrapper.stdout == dry_run(kind, *args)


def _documented_dry_runs():
    """(page, command, printed output) for each ```bash block of a `python -m mixtok.launch` command that the
    docs follow directly with its output block."""
    found = []
    for page in ("README.md", "launch/README.md"):
        blocks = re.findall(r"```(\w*)\n(.*?)```", (REPO / page).read_text(), flags=re.S)
        for (language, code), (_, output) in zip(blocks, blocks[1:]):
            if language == "bash" and code.startswith("python -m mixtok.launch "):
                found.append((page, code.replace("\\\n", " "), output))
    return found


DOCUMENTED = _documented_dry_runs()


@pytest.mark.parametrize("page, command, output", DOCUMENTED, ids=[f"{p}:{c.split()[3]}" for p, c, _ in DOCUMENTED])
def test_the_dry_run_output_in_the_docs_is_what_the_launcher_prints(tmp_path, page, command, output):
    # The docs show a SLURM script written in /home/me/mixtok: run there, in a stand-in with the configs.
    checkout = tmp_path / "mixtok"
    checkout.mkdir()
    (checkout / "experiments").symlink_to(REPO / "experiments")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(REPO)
    argv = shlex.split(command)[3:]
    result = subprocess.run(
        [sys.executable, "-m", "mixtok.launch", *argv], cwd=checkout, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.replace(str(checkout), "/home/me/mixtok") == output


def test_every_kind_has_a_documented_dry_run():
    assert {(page, command.split()[3]) for page, command, _ in DOCUMENTED} == {
        (page, kind) for page in ("README.md", "launch/README.md") for kind in ("local", "tpu", "slurm", "gke")
    }
