"""DivPrune's fixture: the official `DivPrune` selection on random token sets (torch, CPU).

The official function is a method of LLaVA's `LlavaMetaForCausalLM` (LLaVA/llava/model/llava_arch.py), whose
module imports the whole LLaVA stack; this maker reads that file, takes the two methods it needs
(`pairwise_cosine_similarity`, `DivPrune`) with `ast`, and runs them unchanged on a stand-in `self`. The
sets: `case<i>:features` [N, C] and the official `case<i>:selected` (in the order picked) for each
(N, C, ratio) of CASES, the tokens drawn normal(0, 1).
"""

import ast
import os
import types

import numpy as np

OFFICIAL = "vbdi/divprune: LLaVA/llava/model/llava_arch.py (pairwise_cosine_similarity, DivPrune)"
CASES = ((24, 8, 0.25), (64, 16, 0.1), (50, 4, 0.5))  # (tokens, channels, ratio)
METHODS = ("pairwise_cosine_similarity", "DivPrune")


def official_methods(official_path, torch):
    path = os.path.join(official_path, "LLaVA", "llava", "model", "llava_arch.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in METHODS:
            namespace = {"torch": torch}
            exec(compile(ast.Module([node], type_ignores=[]), path, "exec"), namespace)
            found[node.name] = namespace[node.name]
    holder = types.SimpleNamespace()
    holder.pairwise_cosine_similarity = types.MethodType(found["pairwise_cosine_similarity"], holder)
    holder.DivPrune = types.MethodType(found["DivPrune"], holder)
    return holder


def make(common, official_path):
    torch = common.torch
    official = official_methods(official_path, torch)
    generator = torch.Generator().manual_seed(0)
    arrays = {}
    for i, (n, c, ratio) in enumerate(CASES):
        features = torch.randn(n, c, generator=generator)
        selected, _ = official.DivPrune(features, n, threshold_ratio=ratio)
        arrays[f"case{i}:features"] = features.numpy()
        arrays[f"case{i}:selected"] = selected.numpy().astype(np.int32)
    return dict(arrays=arrays, facts=dict(cases=[list(c) for c in CASES]))
