"""benchmarks/train_step.py: a tiny run prints the table and finite JSON rows (also without the trainer's
grain / ml_collections, and in bfloat16); bad input gets one `error:` line and exit status 2.

Nothing here asserts anything about speed.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
TINY = ["--models", "poolformer_s12", "--batch", "2", "--size", "32", "--repeats", "1", "--warmup", "0", "--tiny"]
# Run as the GPU image would: the trainer's extras absent (an import of them raises ModuleNotFoundError).
WITHOUT_TRAINER_EXTRAS = (
    "import runpy, sys\n"
    "for name in ('grain', 'ml_collections', 'orbax', 'tqdm', 'tensorboardX', 'array_record'):\n"
    "    sys.modules[name] = None\n"
    f"sys.path.insert(0, {str(BENCHMARKS)!r})\n"
    f"sys.argv = [{str(BENCHMARKS / 'train_step.py')!r}, *sys.argv[1:]]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


@pytest.fixture(scope="module")
def train_step(request):
    """The script as a module (its folder on sys.path for `timing`)."""
    sys.path.insert(0, str(BENCHMARKS))
    request.addfinalizer(lambda: sys.path.remove(str(BENCHMARKS)))
    spec = importlib.util.spec_from_file_location("train_step_under_test", BENCHMARKS / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args, *, code=None):
    """The script in a fresh process on one CPU device (not the tests' eight simulated ones)."""
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f)
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
    command = [sys.executable, "-c", code] if code else [sys.executable, str(BENCHMARKS / "train_step.py")]
    return subprocess.run(command + args, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def _check_rows(path):
    rows = json.loads(path.read_text())["rows"]
    assert [row["model"] for row in rows] == ["poolformer_s12"]
    row = rows[0]
    for key in ("params", "fwd_gflop_per_image", "train_gflop_per_image", "step_ms", "images_per_second"):
        assert math.isfinite(row[key]) and row[key] > 0, (key, row[key])
    assert row["train_gflop_per_image"] > row["fwd_gflop_per_image"]
    assert row["paper_gmacs"] == 1.8 and row["flops_over_2macs"] is None  # --tiny: no paper ratio
    assert row["timm_eager_images_per_second"] is None  # no --against
    return row


def test_tiny_run_prints_the_table_and_writes_finite_rows(tmp_path, train_step):
    columns = list(train_step.COLUMNS)
    result = _run([*TINY, "--json", str(tmp_path / "out.json")])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "MFU against the measured float32 GEMM rate of this CPU" in lines[0]
    assert lines[1].startswith("device: cpu") and "batch 2, 32 px, float32" in lines[1] and "peak: measured" in lines[1]
    assert [cell.strip() for cell in lines[2].split("|")] == columns
    assert lines[4].split("|")[0].strip() == "poolformer_s12" and len(lines[4].split("|")) == len(columns)
    row = _check_rows(tmp_path / "out.json")
    assert math.isfinite(row["mfu_percent"]) and row["mfu_percent"] > 0


def test_runs_in_bfloat16_without_grain_or_ml_collections(tmp_path, train_step):
    args = [*TINY, "--dtype", "bfloat16", "--markdown", "--json", str(tmp_path / "out.json")]
    result = _run(args, code=WITHOUT_TRAINER_EXTRAS)
    assert result.returncode == 0, result.stderr
    assert "| " + " | ".join(train_step.COLUMNS) + " |" in result.stdout.splitlines()
    assert "| poolformer_s12 |" in result.stdout and "batch 2, 32 px, bfloat16" in result.stdout
    assert "not installed: grain, ml_collections" in result.stdout
    _check_rows(tmp_path / "out.json")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "poolformer_s1"], "Unknown model 'poolformer_s1'. Did you mean 'poolformer_s12'"),
        (["--dtype", "float64"], "unknown --dtype 'float64'; valid dtypes: float32, bfloat16"),
        (["--against", "torchvision"], "unknown --against 'torchvision'"),
        (["--torch-compile"], "--torch-compile times timm's model, so it needs --against timm"),
        (["--batch", "0"], "--batch must be at least 1; got 0"),
        (["--batch", "two"], "argument --batch: invalid int value: 'two'"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(train_step, capsys, args, message):
    assert train_step.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err


def test_unknown_model_from_the_command_line_exits_2():
    result = _run(["--models", "poolformer_s12,no_such_model"])
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: Unknown model 'no_such_model'.") and len(result.stderr.splitlines()) == 1


def test_against_timm_without_timm_is_one_line(train_step, capsys, monkeypatch):
    find_spec = importlib.util.find_spec
    absent = lambda name, *args: None if name in ("torch", "timm") else find_spec(name, *args)
    monkeypatch.setattr(importlib.util, "find_spec", absent)
    assert train_step.main(["--models", "poolformer_s12", "--against", "timm"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --against timm needs torch and timm; not installed: torch, timm (pip install -e '.[timm]')\n"


def test_tiny_keeps_each_stages_first_block(train_step):
    assert train_step.tiny_overrides("poolformer_s12") == {"depths": (1, 1, 1, 1)}
    assert train_step.tiny_overrides("lsnet_t")["depths"] == (0, 1, 1, 1)  # a stage of no blocks keeps none
    iformer = train_step.tiny_overrides("iformer_s")  # attention heads per block: each stage's first
    assert iformer == {"depths": (1, 1, 1, 1), "attention_heads": (1, 3, 7, 11)}
    assert train_step.model_overrides("iformer_s", 64, tiny=False) == {"image_size": 64}


def test_xla_flops_reads_a_dict_or_a_list_of_them(train_step):
    class Compiled:
        def __init__(self, cost):
            self.cost = cost

        def cost_analysis(self):
            return self.cost

    assert train_step.xla_flops(Compiled({"flops": 6.0})) == 6.0
    assert train_step.xla_flops(Compiled([{"flops": 6.0}])) == 6.0
    for cost in (None, [], {}, {"flops": -1.0}):
        assert math.isnan(train_step.xla_flops(Compiled(cost)))


def test_gpu_peaks_come_from_the_device_kind(train_step, monkeypatch):
    class Device:
        platform = "gpu"

    for kind, dtype, peak in [
        ("NVIDIA H100 80GB HBM3", "bfloat16", 989.0),
        ("NVIDIA H100 80GB HBM3", "float32", 67.0),
        ("NVIDIA H100 PCIe", "bfloat16", 756.0),
        ("NVIDIA H200", "bfloat16", 989.0),
        ("NVIDIA H100 NVL", "bfloat16", None),
        ("NVIDIA A100-SXM4-40GB", "bfloat16", None),
    ]:
        Device.device_kind = kind
        monkeypatch.setattr(train_step.jax, "devices", lambda: [Device])
        assert train_step.device_peak(dtype)[0] == peak, kind


def test_interleaved_timing_takes_turns(train_step):
    from timing import interleaved_median_seconds

    calls = []
    seconds = interleaved_median_seconds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, 1)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3  # 1 + warm-up each, then in turns
    assert set(seconds) == {"a", "b"} and all(s >= 0 for s in seconds.values())
