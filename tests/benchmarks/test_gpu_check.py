"""benchmarks/gpu_check.sh --cpu-smoke: every step runs, tiny, on the CPU and lands in the results file.

The GPU run itself (`bash benchmarks/gpu_check.sh` on an H100/H200) cannot run here; this checks
the script's plumbing: options, the results file's sections and status lines, the exit status.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
SECTIONS = [
    "# GPU check results",
    "### nvidia-smi",
    "## Environment",
    "## Kernel tests",
    "## Kernel benchmark: spectral_filter",
    "## Kernel benchmark: linear_attention",
    "## Train step (benchmarks/train_step.py)",
    "## Summary",
]
# The CPU smoke run's steps; the GPU run has one train step per model (poolformer_s12, caformer_s18).
STEPS = ["environment", "kernel-tests", "bench-spectral-filter", "bench-linear-attention"]
TRAIN_STEP = "train-step-poolformer_s12"


def _run(*args, env_extra=None, cwd=REPO):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["PYTHON"] = sys.executable  # the interpreter running the tests, with mixtok's dependencies
    env.update(env_extra or {})
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_cpu_smoke_runs_every_step_and_reports_each_in_the_results_file(tmp_path):
    # A relative --out lands under $OUT (the device machine's folder of files that come back).
    results = tmp_path / "results.md"
    run = _run("--cpu-smoke", "--out", "results.md", env_extra={"OUT": str(tmp_path)})
    assert results.exists(), f"no results file under $OUT\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    log = f"stdout:\n{run.stdout[-4000:]}\nstderr:\n{run.stderr[-4000:]}"
    text = results.read_text()
    for section in SECTIONS:
        assert f"\n{section}\n" in f"\n{text}", f"no section {section!r} in the results file\n{log}"
    for step in STEPS:
        assert f"\nSTATUS {step}: " in text, f"no status line for {step} in the results file\n{log}"
        assert f"| {step} | " in text, f"{step} is missing from the summary table\n{log}"
    assert "- mode: cpu-smoke (JAX_PLATFORMS=cpu)" in text
    if (REPO / "benchmarks" / "train_step.py").exists():
        assert f"\nSTATUS {TRAIN_STEP}: " in text and f"| {TRAIN_STEP} | " in text, log
        assert run.returncode == 0, f"the smoke run failed\n{text[-6000:]}\n{log}"
        assert "RESULT: PASS" in text
    else:  # the train-step benchmark lives on another branch until it is merged
        assert "\nSTATUS train-step: MISSING (benchmarks/train_step.py is not in this checkout" in text
        for step in STEPS:
            assert f"\nSTATUS {step}: PASS " in text, f"{step} did not pass\n{text[-6000:]}\n{log}"
        assert run.returncode == 1 and "RESULT: FAIL (1 of 5 steps did not pass: train-step;" in text


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path):
    run = _run("--out", "sub/results.md", "--bogus", env_extra={"OUT": str(tmp_path)})
    assert run.returncode == 2 and "unknown argument '--bogus'" in run.stderr
    assert not (tmp_path / "sub").exists()  # refused before anything is written
    help_text = _run("--help").stdout
    assert "--cpu-smoke" in help_text and "--out FILE" in help_text
