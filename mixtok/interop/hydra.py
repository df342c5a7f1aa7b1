"""Converts the state dict of the official Hydra mixer (goombalab/hydra) to `mixtok.mixers.Hydra` parameters and back.

    params = convert_mixer(state_dict, prefix="")        # {"in_proj": {"kernel": ...}, "conv1d_kernel": ..., ...}
    y = Hydra(dim=D, ...).apply({"params": params}, u)
    state_dict = to_official(params)                     # the inverse, numpy arrays in the official layouts

The official module is hydra/modules/hydra.py `Hydra` (goombalab/hydra @ 55bef745); its `state_dict()` keys, each
after `prefix` (e.g. "bert.encoder.layer.0.attention." for a module inside a model):

    in_proj.weight [d_in_proj, D]         in_proj/kernel [D, d_in_proj]        (transposed; in_proj.bias if bias=True)
    conv1d.weight [conv_dim, 1, d_conv]   conv1d_kernel [d_conv, 1, conv_dim]  (axes reversed)
    conv1d.bias [conv_dim]                conv1d_bias                          (conv_bias=True)
    dt_bias, A_log, D [H]                 dt_bias, A_log, D
    fc_D.weight [H, d_inner]              fc_D/kernel [d_inner, H]             (transposed)
    norm.weight [d_inner]                 norm_weight
    out_proj.weight [D, d_inner]          out_proj/kernel [d_inner, D]         (transposed; out_proj.bias if bias=True)

(learnable_init_states=True adds init_states, which mixtok's mixer does not implement: it is reported as
unexpected.) The repository publishes no image-model checkpoint, so there is no model-level importer or command
line; this converts the mixer, the part that exists. tests/interop/test_hydra_import.py checks it against golden
outputs of the official module (tests/fixtures/hydra, written by tools/make_hydra_fixtures.py).
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

from mixtok.interop.weight_files import mismatch_error, to_numpy, walk_leaves

# official key (after the prefix) -> (mixtok path, axes of the official array in mixtok's order; None: same)
KEYS = {
    "in_proj.weight": (("in_proj", "kernel"), (1, 0)),
    "in_proj.bias": (("in_proj", "bias"), None),
    "conv1d.weight": (("conv1d_kernel",), (2, 1, 0)),
    "conv1d.bias": (("conv1d_bias",), None),
    "dt_bias": (("dt_bias",), None),
    "A_log": (("A_log",), None),
    "D": (("D",), None),
    "fc_D.weight": (("fc_D", "kernel"), (1, 0)),
    "norm.weight": (("norm_weight",), None),
    "out_proj.weight": (("out_proj", "kernel"), (1, 0)),
    "out_proj.bias": (("out_proj", "bias"), None),
}
OPTIONAL = ("in_proj.bias", "conv1d.bias", "out_proj.bias")  # present with bias=True / conv_bias=True


def convert_mixer(state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`mixtok.mixers.Hydra` params from the official module's state dict (keys under `prefix`).

    Other keys of the state dict (outside `prefix`) are ignored; under it, an unknown key or a missing required
    one raises one ValueError that lists them all.
    """
    own = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    unexpected = [prefix + k for k in own if k not in KEYS]
    missing = [prefix + k for k in KEYS if k not in own and k not in OPTIONAL]
    error = mismatch_error(f"Hydra mixer state dict (prefix {prefix!r})", unexpected, missing, [])
    if error:
        raise error
    params: dict[str, Any] = {}
    for key, value in own.items():
        path, axes = KEYS[key]
        array = to_numpy(value, prefix + key)
        node = params
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = array.transpose(axes) if axes else array
    return params


def to_official(params: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """The official state dict (numpy, official layouts) of `mixtok.mixers.Hydra` params; the inverse of convert."""
    by_path = {path: key for key, (path, _) in KEYS.items()}
    result, unexpected = {}, []
    for path, leaf in walk_leaves(params):
        if path not in by_path:
            unexpected.append("/".join(path))
            continue
        key = by_path[path]
        axes = KEYS[key][1]
        array = np.asarray(leaf)
        result[prefix + key] = array.transpose(np.argsort(axes)) if axes else array
    missing = [k for k in KEYS if prefix + k not in result and k not in OPTIONAL]
    error = mismatch_error("Hydra mixer params", unexpected, missing, [])
    if error:
        raise error
    return result
