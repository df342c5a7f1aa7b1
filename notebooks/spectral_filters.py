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
# # GFNet's global filters: what a spectral token mixer learns
#
# Trains the small GFNet of `experiments/configs/quickstart_spectral.py` on scikit-learn's digits,
# then shows its learned global filters: the magnitude per frequency, and the effective spatial
# kernel (the filter's circular convolution kernel over the token grid) of a few channels.

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
STEPS = 300  # the GFNet quickstart's own length: about 0.99 eval accuracy
BATCH_SIZE = 64
EVAL_EVERY = 100
CHANNELS = [0, 1, 2, 3, 4, 5]  # channels of the first stage's filters to show
WORKDIR_ROOT = "mixtok_runs"  # runs go to WORKDIR_ROOT/<name>; a rerun with the same parameters resumes

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np

from mixtok.mixers import GlobalFilter
from mixtok.train import load_run, train_and_evaluate
from mixtok.train.config_files import load_config

# %% [markdown]
# ## Train the small GFNet
#
# `experiments/configs/quickstart_spectral.py`: GFNet-H-Ti's hierarchical layout shrunk to depths
# (1, 1, 2, 1) and widths 32-96 for 32-px digits. Patch 4 makes the first stage an 8x8 token grid,
# so its global filters live on 8 x 5 frequencies (the half spectrum of `rfft2`).

# %%
config = load_config(os.path.join(CONFIGS, f"quickstart_spectral.py:steps={STEPS}"))
config.batch_size = BATCH_SIZE
config.eval_every = EVAL_EVERY
WORKDIR = os.path.join(WORKDIR_ROOT, f"spectral_steps{STEPS}_batch{BATCH_SIZE}")
final = train_and_evaluate(config, WORKDIR)
print("final metrics:", {k: round(v, 4) for k, v in sorted(final.items())})

# %% [markdown]
# ## The learned filters
#
# `mixtok.train.load_run` restores the run's model and weights. Each block's `filter/complex_weight`
# is GFNet's filter as the official code stores it: real pairs `[h, w//2+1, C, 2]` (real, imaginary),
# one complex filter per channel over the half spectrum (`mixtok/mixers/spectral.py`).

# %%
run = load_run(WORKDIR)
params = run.variables["params"]
FILTERS = {name: np.asarray(block["filter"]["complex_weight"]) for name, block in params.items() if "filter" in block}
for name, weight in FILTERS.items():
    print(f"{name:<20} complex_weight {weight.shape}")
FIRST = next(iter(FILTERS))  # the first stage's first block: the largest grid
weight = FILTERS[FIRST]
complex_filter = weight[..., 0] + 1j * weight[..., 1]  # [h, w//2+1, C]
print(f"{FIRST}: mean |filter| {np.abs(complex_filter).mean():.4f} (about 0.025 at initialisation)")

# %% [markdown]
# |filter| per frequency, averaged over the channels and for a few channels. Rows are vertical
# frequencies, shifted so that 0 is in the middle (`fftshift` on the first axis); columns are the
# horizontal frequencies 0 .. w/2 of the half spectrum. The filters start as N(0, 0.02^2) real and
# imaginary parts (|filter| about 0.025 on average): compare the trained scale with that.

# %%
magnitude = np.fft.fftshift(np.abs(complex_filter), axes=0)  # [h, w//2+1, C]
h, half_w = magnitude.shape[:2]
row_freqs = np.fft.fftshift(np.fft.fftfreq(h, 1 / h)).astype(int)
panels = [("mean over channels", magnitude.mean(axis=-1))] + [(f"channel {c}", magnitude[:, :, c]) for c in CHANNELS]
fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.8), squeeze=False)
for ax, (title, values) in zip(axes[0], panels):
    image = ax.imshow(values, cmap="viridis")
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(half_w))
    ax.set_yticks(range(h), row_freqs)
    ax.set_xlabel("horizontal freq.")
    fig.colorbar(image, ax=ax, fraction=0.046)
axes[0][0].set_ylabel("vertical freq.")
fig.suptitle(f"{FIRST}: |filter| per frequency")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The effective spatial kernel
#
# The filter is a circular convolution over the token grid: its spatial kernel is the mixer's response
# to a unit impulse at token (0, 0). We run mixtok's `GlobalFilter` with the trained weights on that
# impulse (no FFT written here), and show the kernel centred (`fftshift` over both axes).

# %%
grid = (weight.shape[0], 2 * (weight.shape[1] - 1))  # square grids here: w = 2 * (w//2+1 - 1)
channels = weight.shape[2]
impulse = np.zeros((1, *grid, channels), np.float32)
impulse[0, 0, 0, :] = 1.0
mixer = GlobalFilter(dim=channels, grid_size=grid)
KERNEL = np.asarray(jax.jit(mixer.apply)({"params": {"complex_weight": weight}}, impulse))[0]  # [H, W, C]

fig, axes = plt.subplots(1, len(CHANNELS), figsize=(2.4 * len(CHANNELS), 2.8), squeeze=False)
offsets = np.fft.fftshift(np.fft.fftfreq(grid[0], 1 / grid[0])).astype(int)
for ax, channel in zip(axes[0], CHANNELS):
    kernel = np.fft.fftshift(KERNEL[:, :, channel])
    limit = np.abs(kernel).max()
    image = ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(f"channel {channel}", fontsize=9)
    ax.set_xticks(range(0, grid[1], 2), offsets[::2])
    ax.set_yticks(range(0, grid[0], 2), offsets[::2])
    fig.colorbar(image, ax=ax, fraction=0.046)
fig.suptitle(f"{FIRST}: spatial kernel (token offsets)")
plt.tight_layout()
plt.show()
