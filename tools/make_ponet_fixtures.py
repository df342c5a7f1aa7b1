"""Writes golden outputs of the official PoNet LRA classifier (lxchtan/PoNet), and measures parity with mixtok's.

tests/interop/test_ponet_import.py converts these weights with `mixtok.interop.ponet.convert` and checks
`ponet_lra_*` against the official logits, without torch. The official code is not part of mixtok: pass the folder
of a clone of lxchtan/PoNet (examples/LRA/code/model_wrapper.py, attention.py, attention_ponet.py, model.py,
unmodified, are imported from there). Needs torch; from the repository root:

    python tools/make_ponet_fixtures.py --official-repo PATH/TO/PoNet --out tests/fixtures/ponet \
        [--official-commit SHA]   (for an extracted archive, not a git clone)
    PYTHONPATH=. python tools/make_ponet_fixtures.py --official-repo PATH/TO/PoNet --parity --seeds 3

Each fixture: a small `ModelForSC(config)` (FIXTURES below: the LRA model's layout at width 16, attn_type "ponet",
mixed_precision off), in eval mode, every parameter random (N(0, 0.5^2) matrices, N(0, 0.2^2) vectors, LayerNorm
weights 1 + N(0, 0.2^2)), a seeded batch of token ids [3, L] with padded tails (id 0, masked as LRA's) and the
official logits, in `<name>.npz` (`input`, `output`, `state_dict/<key>`), plus `manifest.json` (the official
commit when the clone is a git repository, the versions, the configs). `--parity` instead runs `--seeds` seeds
of the official LRA configs (ListOps, Text, Image, and ListOps with CLS pooling) through mixtok (float32, jit) and
prints the largest |difference| of the logits (this needs JAX and mixtok beside torch).
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys

import numpy as np

FIXTURES = {  # name: (official config, sequence length)
    "ponet_lra_mean": (
        dict(
            embedding_dim=16,
            transformer_dim=16,
            transformer_hidden_dim=32,
            head_dim=8,
            num_head=2,
            num_layers=2,
            vocab_size=32,
            max_seq_len=64,
            segment_num=4,
            pooling_mode="MEAN",
            num_classes=10,
        ),
        29,
    ),
    "ponet_lra_cls": (
        dict(
            embedding_dim=16,
            transformer_dim=16,
            transformer_hidden_dim=24,
            head_dim=4,
            num_head=4,
            num_layers=1,
            vocab_size=20,
            max_seq_len=32,
            segment_num=64,
            pooling_mode="CLS",
            num_classes=3,
        ),
        17,
    ),
}
COMMON = dict(
    learn_pos_emb=True,
    tied_weights=False,
    dropout_prob=0.1,
    attention_dropout=0.1,
    attention_grad_checkpointing=False,
    mixed_precision=False,
    attn_type="ponet",
)
LRA_TASKS = {"listops": ("MEAN", 700), "text": ("MEAN", 301), "image": ("MEAN", 256), "listops_cls": ("CLS", 97)}


def _official(repo):
    sys.path.insert(0, os.path.join(repo, "examples", "LRA", "code"))
    import torch  # pylint: disable=g-import-not-at-top
    from model_wrapper import ModelForSC, append_cls  # pylint: disable=g-import-not-at-top

    return torch, ModelForSC, append_cls


def _randomise(torch, model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            shift = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(torch.randn_like(p) * (0.5 if p.ndim > 1 else 0.2) + shift)
    return model.eval()


def _run(torch, append_cls, model, config, ids):
    tokens = torch.tensor(ids)
    mask = (tokens != 0).float()
    with torch.no_grad():
        if config["pooling_mode"] == "CLS":
            tokens, mask = append_cls(tokens, mask, config["vocab_size"])
        return model.seq_classifer(model.model(tokens, mask)).numpy()


def _ids(seed, config, length):
    ids = np.random.default_rng(seed).integers(1, config["vocab_size"] - 1, size=(3, length))
    ids[0, length // 2 :] = 0
    ids[1, length - 5 :] = 0
    return ids


def write(repo, out, official_commit=None):
    torch, model_cls, append_cls = _official(repo)
    os.makedirs(out, exist_ok=True)
    entries = {}
    for seed, (name, (config, length)) in enumerate(FIXTURES.items()):
        config = {**COMMON, **config}
        model = _randomise(torch, model_cls(config), seed)
        ids = _ids(seed, config, length)
        arrays = {"input": ids.astype(np.int32), "output": _run(torch, append_cls, model, config, ids)}
        arrays |= {f"state_dict/{k}": v.numpy() for k, v in model.state_dict().items()}
        np.savez_compressed(os.path.join(out, f"{name}.npz"), **arrays)
        entries[name] = {"file": f"{name}.npz", "official_config": config}
    try:
        if official_commit:
            raise OSError("given")
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        commit = commit.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = official_commit or "unknown (not a git clone)"
    manifest = {
        "official": "lxchtan/PoNet examples/LRA/code/model_wrapper.py ModelForSC",
        "commit": commit,
        "command": "python tools/make_ponet_fixtures.py --official-repo PATH/TO/PoNet --out tests/fixtures/ponet"
        + (f" --official-commit {official_commit}" if official_commit else ""),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "fixtures": entries,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"Wrote {len(entries)} fixtures to {out}")


def parity(repo, seeds):
    import jax  # pylint: disable=g-import-not-at-top

    from mixtok.interop.ponet import convert  # pylint: disable=g-import-not-at-top
    from mixtok.models import create_model  # pylint: disable=g-import-not-at-top

    torch, model_cls, append_cls = _official(repo)
    import lra_config  # pylint: disable=g-import-not-at-top

    worst = 0.0
    for task, (pooling, length) in LRA_TASKS.items():
        base = task.split("_")[0]
        config = {**lra_config.config[base]["model"], **lra_config.config[base]["extra_attn_config"]["ponet"]}
        config |= {**COMMON, "pooling_mode": pooling}
        config["max_seq_len"] = int(2 ** math.ceil(math.log2(config["max_seq_len"])))  # as run_tasks.py
        for seed in range(seeds):
            model = _randomise(torch, model_cls(config), seed)
            ids = _ids(seed, config, length)
            want = _run(torch, append_cls, model, config, ids)
            variables = convert(f"ponet_lra_{base}", model.state_dict(), pooling=pooling.lower())
            mixtok_model = create_model(f"ponet_lra_{base}", num_classes=want.shape[1], pooling=pooling.lower())
            got = np.asarray(jax.jit(mixtok_model.apply)(variables, ids.astype(np.int32)))
            error = float(np.abs(got - want).max())
            worst = max(worst, error)
            print(f"{task} seed {seed}: max |logit error| {error:.2e} (largest logit {np.abs(want).max():.1f})")
    print(f"largest error: {worst:.2e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", required=True, help="a clone of lxchtan/PoNet")
    parser.add_argument("--out", default="tests/fixtures/ponet")
    parser.add_argument("--parity", action="store_true", help="measure parity instead of writing fixtures")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--official-commit", help="the commit of an extracted (non-git) copy, for the manifest")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.official_repo, "examples", "LRA", "code", "attention_ponet.py")):
        print(f"error: {args.official_repo} is not a clone of lxchtan/PoNet (no examples/LRA/code)", file=sys.stderr)
        return 2
    if args.parity:
        parity(args.official_repo, args.seeds)
    else:
        write(args.official_repo, args.out, args.official_commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
