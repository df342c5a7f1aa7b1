# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Mixer ablation: same backbone, many token mixers
#
# Runs a short version of the ablation sweep of `experiments/configs/mixer_ablation.py` (one small
# MetaFormer on scikit-learn's digits, one point per token mixer) with `mixtok.sweep`, then puts the
# runs side by side with `mixtok.report`: its table and plots.

# %%
# Set-up: in Colab (or wherever mixtok is not importable) clone the repository and pip-install it.
# The clone also supplies the experiment configs, which are not part of the installed package.
import importlib.util
import os
import subprocess
import sys

REPO = "https://github.com/mixtok/mixtok"


def find_checkout(start="."):
    """The repository root at or above `start` (the folder holding experiments/configs), or None."""
    path = os.path.abspath(start)
    while not os.path.isfile(os.path.join(path, "experiments", "configs", "quickstart.py")):
        if os.path.dirname(path) == path:
            return None
        path = os.path.dirname(path)
    return path


CHECKOUT = find_checkout()
if CHECKOUT is None:
    CHECKOUT = os.path.abspath("mixtok_repo")
    if not os.path.isdir(CHECKOUT):
        subprocess.run(["git", "clone", "--depth", "1", REPO, CHECKOUT], check=True)
if "google.colab" in sys.modules or importlib.util.find_spec("mixtok") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", CHECKOUT], check=True)
    importlib.invalidate_caches()  # let this session's imports see the new package
CONFIGS = os.path.join(CHECKOUT, "experiments", "configs")

# %% tags=["parameters"]
# A short version of the sweep: a few mixers, fewer steps. MIXERS = None runs every point of get_sweep()
# (16 mixers; at 300 steps about 9 minutes on a 2-core CPU).
MIXERS = ["pooling", "identity", "attention", "linear_attention", "global_filter", "random_mixing"]
STEPS = 100
WORKDIR_ROOT = "mixtok_runs"  # the sweep's root is WORKDIR_ROOT/<name>; a rerun skips the finished points

# %%
from pathlib import Path

from IPython.display import Image, Markdown, display

from mixtok import report, sweep
from mixtok.train.config_files import load_module

# %% [markdown]
# ## The sweep's points
#
# `get_sweep()` in `experiments/configs/mixer_ablation.py` has one point per registered mixer that builds
# on this backbone at 32 px; `excluded_mixers()` names the others and why.

# %%
ablation = load_module(os.path.join(CONFIGS, "mixer_ablation.py"))
points = [point["name"] for point in ablation.get_sweep()]
print(f"{len(points)} points:", ", ".join(points))
for name, error in ablation.excluded_mixers().items():
    print(f"excluded: {name}: {error}")

# %% [markdown]
# ## Run the sweep
#
# `mixtok.sweep.main` takes the arguments of `python -m mixtok.sweep`; each point is an ordinary
# `python -m mixtok.train` run in ROOT/NAME (its command is printed first), recorded in ROOT/sweep.json.
# A rerun with the same root skips the points that are done. The trainers' progress goes to stderr.

# %%
ROOT = os.path.join(WORKDIR_ROOT, f"mixer_ablation_steps{STEPS}")
arguments = ["--config", os.path.join(CONFIGS, f"mixer_ablation.py:steps={STEPS}"), "--root", ROOT]
if MIXERS is not None:
    arguments += ["--only", ",".join(MIXERS)]
status = sweep.main(arguments)
print("sweep exit status:", status, "(0: every point done)")

# %% [markdown]
# ## The report
#
# `mixtok.report.report(ROOT)` is `python -m mixtok.report ROOT`: report.md / report.csv (one row per
# run), plots of the main metric against parameters and throughput, training curves, and TensorBoard
# HParams under ROOT/hparams. Every point of the sweep has a row in report.md; those not run (not in
# MIXERS) say "no metrics" and are left out of the table shown here, as are its image links (the
# plots follow).

# %%
runs = report.report(Path(ROOT))
lines = (Path(ROOT) / "report.md").read_text().splitlines()
not_run = [line for line in lines if line.startswith("| ") and line.split(" | ")[1] == "no metrics"]
display(Markdown("\n".join(line for line in lines if line not in not_run and not line.startswith("!["))))
print(f"{len(runs)} runs in the report; {len(not_run)} points not run are left out of this table")

# %%
for plot in ("metric_vs_params.png", "metric_vs_throughput.png", "curves.png"):
    if (Path(ROOT) / plot).is_file():
        print(plot)
        display(Image(filename=str(Path(ROOT) / plot)))
