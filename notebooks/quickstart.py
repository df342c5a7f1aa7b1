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
# # mixtok quickstart: token mixers, parameter counts, a digits run
#
# Builds one small MetaFormer per token mixer and counts its weights, then trains the digits
# quickstart (`experiments/configs/quickstart.py`: a PoolFormerV2 with attention in stages 3-4, on
# scikit-learn's bundled 8x8 digits upsampled to 32 px) from Python and plots its loss.
# Nothing is downloaded but mixtok itself (in Colab).

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
# Token mixers to build and count (any of mixtok.mixers.list_mixers()).
MIXERS = ["pooling", "identity", "attention", "linear_attention", "global_filter", "sepconv", "random_mixing"]
STEPS = 300  # the quickstart's own length: about 0.98 eval accuracy
BATCH_SIZE = 64
EVAL_EVERY = 100
WORKDIR_ROOT = "mixtok_runs"  # runs go to WORKDIR_ROOT/<name>; a rerun with the same parameters resumes

# %%
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

import mixtok
from mixtok.mixers import list_mixers
from mixtok.models import count_params, create_model
from mixtok.report import read_records
from mixtok.train import train_and_evaluate
from mixtok.train.config_files import load_config

print("mixtok from", os.path.dirname(mixtok.__file__), "| JAX", jax.__version__, "on", jax.devices())
print("registered token mixers:", ", ".join(list_mixers()))

# %% [markdown]
# ## One backbone, many mixers
#
# The mixer ablation's backbone (`experiments/configs/mixer_ablation.py`): PoolFormerV2's layout with
# one block per stage, widths 32-96, and the same mixer in all four stages. `jax.eval_shape` traces the
# initialisation without allocating anything, so counting is instant even for large models.

# %%
LAYOUT = dict(depths=(1, 1, 1, 1), dims=(32, 48, 64, 96), drop_path_rate=0.0)
IMAGE_SIZE = 32

PARAM_COUNTS = {}
for name in MIXERS:
    model = create_model("poolformerv2_s12", num_classes=10, token_mixers=(name,) * 4, **LAYOUT)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3)))
    PARAM_COUNTS[name] = count_params(shapes)
    print(f"{name:<22} {PARAM_COUNTS[name]:>9,} parameters")

# %%
fig, ax = plt.subplots(figsize=(6, 0.35 * len(PARAM_COUNTS) + 1))
ax.barh(list(PARAM_COUNTS), list(PARAM_COUNTS.values()))
ax.invert_yaxis()
ax.set_xlabel("parameters")
ax.set_title("PoolFormerV2 (1-1-1-1 blocks, 32-96 wide) with each mixer")
plt.show()

# %% [markdown]
# ## Train the digits quickstart from Python
#
# `load_config("quickstart.py:steps=N")` is what `--config quickstart.py:steps=N` gives the command
# line; the returned `ConfigDict` can be edited before `train_and_evaluate(config, workdir)` runs it.
# The workdir gets checkpoints, `metrics.jsonl` and TensorBoard events, exactly as
# `python -m mixtok.train --config experiments/configs/quickstart.py --workdir DIR` writes them.

# %%
config = load_config(os.path.join(CONFIGS, f"quickstart.py:steps={STEPS}"))
config.batch_size = BATCH_SIZE
config.eval_every = EVAL_EVERY
WORKDIR = os.path.join(WORKDIR_ROOT, f"quickstart_steps{STEPS}_batch{BATCH_SIZE}")
final = train_and_evaluate(config, WORKDIR)
print("final metrics:", {k: round(v, 4) for k, v in sorted(final.items())})

# %% [markdown]
# ## The loss curve
#
# `mixtok.report.read_records` reads the run's `metrics.jsonl` (one record per logged step).

# %%
records = read_records(Path(WORKDIR))
train = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]
evals = [(r["step"], r["eval/loss"], r["eval/accuracy"]) for r in records if "eval/accuracy" in r]

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
left.plot(*zip(*train), label="train")
left.plot([s for s, _, _ in evals], [loss for _, loss, _ in evals], "o-", label="eval")
left.set_xlabel("step")
left.set_ylabel("cross-entropy")
left.legend()
right.plot([s for s, _, _ in evals], [acc for _, _, acc in evals], "o-")
right.set_xlabel("step")
right.set_ylabel("eval accuracy")
plt.tight_layout()
plt.show()
