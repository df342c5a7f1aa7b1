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
# # Tokenizers: reconstructions and prefix decoding
#
# Trains the tokenizer quickstart (`experiments/configs/quickstart_tokenizer.py`: a small TiTok with
# FSQ codes on 32x32 crops of the photographs bundled with scikit-image) for a short while, shows
# held-out reconstructions, and decodes from the first k tokens only (One-D-Piece / FlexTok-style
# prefix decoding) with the PSNR for each k.

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
STEPS = 2500  # the quickstart is 4,000 steps (22.4 dB, 8 min); the first ~1,000 learn little but mean colours
WIDTH = 128  # encoder and decoder width
DEPTH = 3  # transformer blocks in the encoder and in the decoder
TOKENS = 16  # latent tokens per image
BATCH_SIZE = 32
EVAL_EVERY = 500
TAIL_TOKEN_DROP = False  # True: One-D-Piece training, each step decodes from a random prefix of the tokens
TOKEN_COUNTS = [1, 2, 4, 8, 16]  # decode from the first k tokens for each k (TOKENS is always added)
NUM_EVAL_IMAGES = 128  # held-out crops the PSNR is averaged over
NUM_SHOWN = 8  # of which this many are shown
WORKDIR_ROOT = "mixtok_runs"  # runs go to WORKDIR_ROOT/<name>; a rerun with the same parameters resumes

# %%
import matplotlib.pyplot as plt
import numpy as np

from mixtok.data import create_eval_iterator
from mixtok.evaluate import psnr
from mixtok.tokenize import TokenizerRun
from mixtok.train import train_and_evaluate
from mixtok.train.config_files import load_config

# %% [markdown]
# ## Train the tokenizer
#
# `experiments/configs/quickstart_tokenizer.py` takes its sizes after the colon (`steps`, `tokens`,
# `width`, `depth`, `batch`, ...). Its TiTok is trained with all tokens. `TAIL_TOKEN_DROP = True` sets
# the model's `tail_token_drop`: One-D-Piece's training, where each step decodes from a random prefix of
# k ~ U{1..K} tokens, so that the first tokens learn to carry the coarse content.

# %%
options = f"steps={STEPS},tokens={TOKENS},width={WIDTH},depth={DEPTH},batch={BATCH_SIZE}"
config = load_config(os.path.join(CONFIGS, f"quickstart_tokenizer.py:{options}"))
config.model.kwargs.tail_token_drop = TAIL_TOKEN_DROP
config.eval_every = EVAL_EVERY
name = f"tokenizer_{options.replace(',', '_').replace('=', '')}_ttd{int(TAIL_TOKEN_DROP)}"
WORKDIR = os.path.join(WORKDIR_ROOT, name)
final = train_and_evaluate(config, WORKDIR)
print("final metrics:", {k: round(v, 4) for k, v in sorted(final.items())})

# %% [markdown]
# ## Reconstructions
#
# `mixtok.tokenize.TokenizerRun` restores the run and encodes uint8 images to token ids, and decodes
# ids (or a prefix of them) back to uint8 images: what `python -m mixtok.tokenize encode / decode` do.
# The images are held-out crops: the first eval batch of the run's data (photographs never trained on).

# %%
tokenizer = TokenizerRun(WORKDIR)
batch = next(iter(create_eval_iterator(tokenizer.config.data, global_batch_size=NUM_EVAL_IMAGES)))
pixels = batch["image"] * tokenizer.std + tokenizer.mean  # undo the run's normalisation
ORIGINALS = np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
tokens = tokenizer.encode(ORIGINALS)
print(f"{len(ORIGINALS)} images -> tokens {tokens.shape} {tokens.dtype}; first image's ids: {tokens[0].tolist()}")

# %% [markdown]
# ## Prefix decoding: the first k tokens
#
# Decoding from the first k tokens (One-D-Piece / FlexTok-style) trades detail for length. PSNR is
# over the uint8 images as decoded, averaged over the held-out crops.
#
# What to expect at the defaults (2,500 steps; measured on a 2-core CPU, JAX 0.10.2, 2026-12-07): trained
# with all 16 tokens, the tokenizer reaches 20.1 dB from 16 tokens, but a prefix is not a coarse
# image: 15.7 dB from 8 tokens, 12.3 dB from 1. With `TAIL_TOKEN_DROP = True` every prefix decodes
# alike (16.3 dB from 1 token, 16.9 dB from 16), but after 2,500 steps the reconstructions are still
# little more than each crop's mean colour, the phase that the quickstart's docstring says plain TiTok
# leaves after about 1,000 steps.

# %%
COUNTS = sorted({k for k in TOKEN_COUNTS if 1 <= k <= TOKENS} | {TOKENS})
decoded = {k: tokenizer.decode(tokens, num_tokens=k) for k in COUNTS}
PSNR = [float(np.mean(psnr(ORIGINALS / 255.0, decoded[k] / 255.0))) for k in COUNTS]
for k, value in zip(COUNTS, PSNR):
    print(f"first {k:>3} tokens: PSNR {value:6.2f} dB")

# %%
rows = [("original", ORIGINALS)] + [(f"{k} tokens\n{p:.1f} dB", decoded[k]) for k, p in zip(COUNTS, PSNR)]
shown = min(NUM_SHOWN, len(ORIGINALS))
fig, axes = plt.subplots(len(rows), shown, figsize=(1.2 * shown, 1.25 * len(rows)), squeeze=False)
for row, (label, images) in zip(axes, rows):
    for ax, image in zip(row, images[:shown]):
        ax.imshow(image)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(label, rotation=0, ha="right", va="center")
plt.tight_layout()
plt.show()

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(COUNTS, PSNR, "o-")
ax.set_xscale("log", base=2)
ax.set_xticks(COUNTS, [str(k) for k in COUNTS])
ax.set_xlabel("tokens decoded (prefix length k)")
ax.set_ylabel("PSNR (dB)")
ax.set_title("held-out reconstructions")
plt.show()
