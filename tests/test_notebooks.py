"""The Colab notebooks (notebooks/*.ipynb) run end to end at small sizes, and each shows what it claims.

Each notebook is executed as papermill would run it: a cell with the test's parameters is inserted
after the cell tagged `parameters`, and the notebook runs in a fresh `python3` kernel (nbclient)
whose working directory is notebooks/ and whose PYTHONPATH starts with this checkout, so it imports
this mixtok and finds the repository's experiment configs without installing anything. A probe cell
appended by the test writes the notebook's results to a JSON file, which the test checks against an
independent computation. The executed notebook is saved under pytest's tmp_path for inspection.

A missing nbclient, nbformat, ipykernel or jupytext is an error here, not a skip: `.ci/run` installs
them with `.[test]`.
"""

import csv
import json
import os
import sys
import types
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NAMES = ("quickstart", "mixer_ablation", "spectral_filters", "tokenizers")

# Weight counts of the mixer ablation's backbone, from the measured table in the docstring of
# experiments/configs/mixer_ablation.py (written by `python -m mixtok.report` from trained runs).
ABLATION_PARAMS = {"pooling": 236_978, "identity": 236_978, "attention": 300_466, "global_filter": 241_394}


def kernel_env() -> dict[str, str]:
    """This process's environment for the kernel, less the simulated devices of tests/conftest.py.

    A notebook runs as a user's session does, on the one CPU device (the persistent compilation cache
    of conftest.py is kept: it only saves time). Figures go through ipykernel's inline backend, as in
    Jupyter and Colab: rendered to PNG outputs without a display, whatever MPLBACKEND CI sets.
    """
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


def execute(name: str, parameters: dict, probe: str, tmp_path: Path, *, figures: int) -> dict:
    """Runs notebooks/NAME.ipynb with `parameters` and returns what its appended `probe` code put in RESULT.

    The notebook must show at least `figures` images (plots, or PNGs it displays).
    """
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}.ipynb needs exactly one cell tagged 'parameters', found {len(tagged)}"
    lines = [f"{key} = {value!r}" for key, value in parameters.items()]
    injected = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(tagged[0] + 1, injected)
    result_file = tmp_path / f"{name}_result.json"
    notebook.cells.append(
        nbformat.v4.new_code_cell(f"import json\n{probe}\nopen({str(result_file)!r}, 'w').write(json.dumps(RESULT))")
    )
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    try:
        client.execute(env=kernel_env())
    finally:
        nbformat.write(notebook, tmp_path / f"{name}.executed.ipynb")
    shown = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(shown) >= figures, f"{name}.ipynb showed {len(shown)} images, expected at least {figures}"
    return json.loads(result_file.read_text())


@pytest.mark.parametrize("name", NAMES)
def test_notebook_and_its_percent_script_hold_the_same_cells(name):
    ipynb = jupytext.read(NOTEBOOKS / f"{name}.ipynb")
    script = jupytext.read(NOTEBOOKS / f"{name}.py")
    assert [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in ipynb.cells] == [
        (c.cell_type, c.source, c.metadata.get("tags", [])) for c in script.cells
    ], f"notebooks/{name}.ipynb and {name}.py differ: run `jupytext --sync notebooks/{name}.py` (notebooks/README.md)"


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_every_notebook_is_tested():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


def _setup_cell(name: str) -> str:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    return next(cell.source for cell in notebook.cells if cell.cell_type == "code")


def test_every_notebook_opens_with_the_same_setup_cell():
    assert all(_setup_cell(name) == _setup_cell(NAMES[0]) for name in NAMES)
    assert 'REPO = "https://github.com/mixtok/mixtok"' in _setup_cell(NAMES[0])


def _run_setup_cell(monkeypatch, cwd: Path) -> tuple[dict, list]:
    """Executes the set-up cell in `cwd` with subprocess.run recorded, not run; returns its names and the calls."""
    calls = []
    monkeypatch.setattr("subprocess.run", lambda command, **kwargs: calls.append(command))
    monkeypatch.chdir(cwd)
    namespace = {}
    exec(_setup_cell(NAMES[0]), namespace)
    return namespace, calls


def test_setup_cell_installs_nothing_inside_a_checkout(monkeypatch):
    namespace, calls = _run_setup_cell(monkeypatch, NOTEBOOKS)
    assert calls == [] and namespace["CONFIGS"] == str(REPO / "experiments" / "configs")


def test_setup_cell_in_colab_clones_the_repo_and_installs_the_clone(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    namespace, calls = _run_setup_cell(monkeypatch, tmp_path)
    clone = str(tmp_path / "mixtok_repo")
    assert calls == [
        ["git", "clone", "--depth", "1", "https://github.com/mixtok/mixtok", clone],
        [sys.executable, "-m", "pip", "install", "--quiet", clone],
    ]
    assert namespace["CONFIGS"] == os.path.join(clone, "experiments", "configs")


def test_quickstart_counts_parameters_and_trains(tmp_path):
    mixers = ["pooling", "attention", "global_filter"]
    params = dict(MIXERS=mixers, STEPS=4, BATCH_SIZE=16, EVAL_EVERY=2, WORKDIR_ROOT=str(tmp_path / "runs"))
    result = execute("quickstart", params, "RESULT = dict(counts=PARAM_COUNTS, records=records)", tmp_path, figures=2)
    assert result["counts"] == {name: ABLATION_PARAMS[name] for name in mixers}
    steps = [r["step"] for r in result["records"] if "train/loss" in r]
    assert steps[-1] == 4 and all(np.isfinite(r["train/loss"]) for r in result["records"] if "train/loss" in r)
    assert [r["step"] for r in result["records"] if "eval/accuracy" in r] == [2, 4]


def test_mixer_ablation_runs_the_sweep_and_writes_the_report(tmp_path):
    mixers = ["pooling", "identity"]
    params = dict(MIXERS=mixers, STEPS=2, WORKDIR_ROOT=str(tmp_path / "runs"))
    probe = "RESULT = dict(root=ROOT, status=status, points=points)"
    result = execute("mixer_ablation", params, probe, tmp_path, figures=2)
    assert result["status"] == 0
    root = Path(result["root"])
    if not root.is_absolute():
        root = NOTEBOOKS / root
    for name in ("report.md", "report.csv", "metric_vs_params.png", "curves.png"):
        assert (root / name).is_file(), name
    with open(root / "report.csv") as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    sweep = json.loads((root / "sweep.json").read_text())
    # Every point of get_sweep() is listed; only the selected ones ran.
    assert sorted(rows) == sorted(result["points"]) == sorted(sweep["points"])
    assert sorted(name for name, row in rows.items() if row["state"] == "done") == sorted(mixers)
    for name in mixers:
        assert sweep["points"][name]["state"] == "done" and int(rows[name]["last_step"]) == 2
        assert int(rows[name]["params"]) == ABLATION_PARAMS[name]


def test_spectral_filters_kernel_is_the_inverse_fft_of_the_saved_filter(tmp_path):
    params = dict(STEPS=3, BATCH_SIZE=16, EVAL_EVERY=3, CHANNELS=[0, 5], WORKDIR_ROOT=str(tmp_path / "runs"))
    probe = "RESULT = dict(workdir=os.path.abspath(WORKDIR), block=FIRST, kernel=KERNEL.tolist())"
    result = execute("spectral_filters", params, probe, tmp_path, figures=2)
    from mixtok.train import load_run

    run = load_run(result["workdir"])
    assert run.step == 3
    weight = np.asarray(run.variables["params"][result["block"]]["filter"]["complex_weight"], np.float64)
    assert weight.shape == (8, 5, 32, 2)  # stage 1 of a 32-px GFNet-H: an 8x8 token grid
    # GFNet's filter: y = irfft2(rfft2(x, ortho) * K, ortho); for a unit impulse x that is irfft2(K) (backward norm).
    expected = np.fft.irfft2(weight[..., 0] + 1j * weight[..., 1], s=(8, 8), axes=(0, 1))
    np.testing.assert_allclose(np.asarray(result["kernel"]), expected, rtol=1e-4, atol=1e-6)


def test_tokenizers_prefix_decoding_psnr_per_token_count(tmp_path):
    params = dict(
        STEPS=3,
        WIDTH=32,
        DEPTH=1,
        TOKENS=4,
        BATCH_SIZE=8,
        EVAL_EVERY=3,
        TOKEN_COUNTS=[1, 2],
        NUM_EVAL_IMAGES=8,
        NUM_SHOWN=4,
        WORKDIR_ROOT=str(tmp_path / "runs"),
    )
    probe = "RESULT = dict(workdir=os.path.abspath(WORKDIR), counts=COUNTS, psnr=PSNR, originals=ORIGINALS.tolist())"
    result = execute("tokenizers", params, probe, tmp_path, figures=2)
    assert result["counts"] == [1, 2, 4]  # the full count is always added
    assert len(result["psnr"]) == 3 and all(np.isfinite(result["psnr"]))

    # The full count's PSNR again, through the model's own forward pass (encode, quantize, decode with
    # every token) instead of the notebook's token ids, and PSNR written out here.
    from mixtok.train import load_run

    run = load_run(result["workdir"])
    originals = np.asarray(result["originals"], np.uint8)
    mean, std = np.asarray(run.info.mean, np.float32), np.asarray(run.info.std, np.float32)
    out = run.model.apply(run.variables, (originals / np.float32(255.0) - mean) / std)
    decoded = np.rint(np.clip(np.asarray(out.reconstruction) * std + mean, 0.0, 1.0) * 255.0)
    mse = np.mean(np.square(decoded / 255.0 - originals / 255.0), axis=(1, 2, 3))
    np.testing.assert_allclose(result["psnr"][-1], np.mean(10 * np.log10(1.0 / mse)), atol=0.02)
