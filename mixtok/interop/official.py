"""What the importers of the papers' official checkpoints share: a key table and the conversions through it.

An importer (`mixtok.interop.gfnet`, `.affnet`, `.cas_vit`, `.ffnet`, `.iformer`, `.lsnet`, `.transnext`) names,
for every leaf of a mixtok model's variables, the official PyTorch key and how the two layouts relate.
The leaves come from `jax.eval_shape` of the model's init, so the table covers exactly the model's variables and makes
no weights. This module turns the table into both directions of conversion, reports a state dict
that does not fit with every missing key, unexpected key and wrong shape in one error (the timm
importer's format), and runs the command line the importers share:

    python -m mixtok.interop.<family> NAME CHECKPOINT OUTPUT.msgpack [--num-classes N]

Layouts (mixtok <-> official):

    "same"    the same array (norm weights, biases, filters, BatchNorm statistics)
    "linear"  Dense kernel [in, out]          <-> Linear weight [out, in]
    "conv"    Conv kernel [kh, kw, in/g, out] <-> Conv2d weight [out, in/g, kh, kw]
    "tokens"  [1, h, w, C] (a grid)           <-> [1, h * w, C] (row-major tokens)
"""

import argparse
import dataclasses
import math
import os
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mixtok.interop.weight_files import WRAPPER_KEYS, load_state_dict, mismatch_error, save_variables, walk_leaves
from mixtok.models import count_params

Path = tuple[str, ...]
LAYOUTS = ("same", "linear", "conv", "tokens")
# The axes of the official array in mixtok's order: Linear [out, in] -> [in, out], Conv2d [out, in/g, kh, kw] ->
# [kh, kw, in/g, out]; the way back is the inverse permutation.
_AXES_FROM_OFFICIAL = {"linear": (1, 0), "conv": (2, 3, 1, 0)}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One variable: its mixtok collection, path and shape, its official key, and how the layouts relate."""

    collection: str  # "params" or "batch_stats"
    path: Path
    shape: tuple[int, ...]
    dtype: Any
    key: str
    layout: str

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"Unknown layout {self.layout!r} for {self.key}; valid layouts: {', '.join(LAYOUTS)}.")

    @property
    def where(self) -> str:
        """The mixtok name of the variable, e.g. `blocks_0/mlp/fc1/kernel` or `batch_stats:conv_1/norm/mean`."""
        return _where((self.collection,) + self.path)

    @property
    def official_shape(self) -> tuple[int, ...]:
        if self.layout in _AXES_FROM_OFFICIAL:
            return tuple(self.shape[i] for i in np.argsort(_AXES_FROM_OFFICIAL[self.layout]))
        if self.layout == "tokens":
            return (self.shape[0], math.prod(self.shape[1:-1]), self.shape[-1])
        return self.shape

    def from_official(self, array: np.ndarray) -> np.ndarray:
        if self.layout in _AXES_FROM_OFFICIAL:
            array = array.transpose(_AXES_FROM_OFFICIAL[self.layout])
        elif self.layout == "tokens":
            array = array.reshape(self.shape)
        return np.ascontiguousarray(array, dtype=self.dtype)

    def to_official(self, array: np.ndarray) -> np.ndarray:
        if self.layout in _AXES_FROM_OFFICIAL:
            array = array.transpose(np.argsort(_AXES_FROM_OFFICIAL[self.layout]))
        elif self.layout == "tokens":
            array = array.reshape(self.official_shape)
        return np.ascontiguousarray(array)


KeyFunction = Callable[[str, Path, Any], tuple[str, str]]


# PyTorch's names for flax's leaves: Dense / Conv kernels and norm scales are `weight`, BatchNorm's statistics
# `running_mean` / `running_var`. BatchNorm's `num_batches_tracked` has no mixtok counterpart.
TORCH_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "mean": "running_mean", "var": "running_var"}
BATCH_COUNTER = "num_batches_tracked"


def with_batch_counters(by_key: dict[str, Any], counter: Any) -> dict[str, Any]:
    """`by_key` with BatchNorm's num_batches_tracked (`counter`) after each running_var, where PyTorch's
    state_dict() has it: what `to_official` adds so that the state dict loads with strict=True."""
    result = {}
    for key, value in by_key.items():
        result[key] = value
        if key.endswith(".running_var"):
            result[key[: -len("running_var")] + BATCH_COUNTER] = counter
    return result


def build_table(shapes: Mapping[str, Any], official_key: KeyFunction) -> tuple[Entry, ...]:
    """Entries for every leaf of `shapes` ({collection: tree of ShapeDtypeStructs}), ordered by official key.

    `official_key(collection, path, leaf)` returns (official key, layout).
    """
    entries = []
    for collection, tree in shapes.items():
        for path, leaf in walk_leaves(tree):
            key, layout = official_key(collection, path, leaf)
            entries.append(Entry(collection, path, tuple(leaf.shape), np.dtype(leaf.dtype), key, layout))
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        twice = sorted(k for k in set(keys) if keys.count(k) > 1)
        raise AssertionError(f"Two mixtok variables map to one official key: {twice}")
    return tuple(sorted(entries, key=lambda e: natural_order(e.key)))


def natural_order(key: str):
    """Sort key that compares the numbers in a dotted key as numbers: blocks.2 < blocks.10."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", key)]


def variables_from_state_dict(
    entries: Sequence[Entry],
    arrays: Mapping[str, np.ndarray],
    what: str,
    *,
    ignored: Iterable[str] = (),
    hint: str = "",
) -> dict[str, Any]:
    """{collection: nested arrays} from official `arrays`; one ValueError lists every misfit.

    Keys in `ignored` are accepted and dropped (e.g. BatchNorm's num_batches_tracked).
    """
    known = {e.key for e in entries} | set(ignored)
    unexpected = [k for k in arrays if k not in known]
    missing = [f"{e.key} (mixtok {e.where})" for e in entries if e.key not in arrays]
    bad_shapes = [
        f"{e.key}: expected {e.official_shape}, got {tuple(arrays[e.key].shape)} (mixtok {e.where} {e.shape})"
        for e in entries
        if e.key in arrays and tuple(arrays[e.key].shape) != e.official_shape
    ]
    error = mismatch_error(what, unexpected, missing, bad_shapes, hint if arrays else " The state dict is empty.")
    if error:
        raise error
    variables: dict[str, Any] = {"params": {}} if any(e.collection == "params" for e in entries) else {}
    for e in entries:
        node = variables.setdefault(e.collection, {})
        for part in e.path[:-1]:
            node = node.setdefault(part, {})
        node[e.path[-1]] = e.from_official(arrays[e.key])
    return variables


def state_dict_from_variables(
    entries: Sequence[Entry], variables: Mapping[str, Any], what: str
) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays, official layouts) from mixtok `variables`; the inverse."""
    collections = sorted({e.collection for e in entries})
    leaves = {(c,) + path: leaf for c in collections if c in variables for path, leaf in walk_leaves(variables[c])}
    expected = {(e.collection,) + e.path: e for e in entries}
    unexpected = [_where(p) for p in leaves if p not in expected]
    missing = [e.where for p, e in expected.items() if p not in leaves]
    bad_shapes = [
        f"{e.where}: expected {e.shape}, got {tuple(np.shape(leaves[p]))}"
        for p, e in expected.items()
        if p in leaves and tuple(np.shape(leaves[p])) != e.shape
    ]
    absent = [c for c in collections if c not in variables]
    hint = f" The variables have no {' or '.join(repr(c) for c in absent)} collection." if absent else ""
    error = mismatch_error(what, unexpected, missing, bad_shapes, hint)
    if error:
        raise error
    return {e.key: e.to_official(np.asarray(leaves[(e.collection,) + e.path])) for e in entries}


def _where(path: Path) -> str:
    """`blocks_0/mlp/fc1/kernel` for a parameter, `batch_stats:conv_1/norm/mean` for another collection's variable."""
    name = "/".join(path[1:])
    return name if path[0] == "params" else f"{path[0]}:{name}"


def freeze(value: Any) -> Any:
    """A hashable form of a model override (lists become tuples), for caching tables by configuration."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    return value


def command_line(module_name: str) -> Callable[[Sequence[str] | None], int]:
    """`main(argv=None) -> exit code` of the importer module `module_name` (pass `__name__`); see `run_cli`."""
    return lambda argv=None: run_cli(argv, sys.modules[module_name])


def run_cli(argv: Sequence[str] | None, importer: types.ModuleType) -> int:
    """The command line of an importer module: checkpoint file -> mixtok msgpack (atomic, never overwrites).

    `importer` is the module (`main = command_line(__name__)` there). It defines `convert(name, state_dict,
    num_classes=)`, `resolve_name(name)`, `CLI_DESCRIPTION` and `CLI_NAME_HELP`, and may define `WRAPPER_KEYS`
    (the dict keys a checkpoint wraps its state dict in; default `weight_files.WRAPPER_KEYS`),
    `CLI_CHECKPOINT_HELP`, `cli_summary(variables) -> str` (appended to the closing line) and `CLI_EMA = True`
    (an `--ema` flag that reads the checkpoint through the module's `load_state_dict(path, ema=True)`: the
    EMA weights its training script saves).
    Exit codes: 0 written; 2 a user error, as the trainer's: bad input (one `error:` line on stderr: an unknown
    name, a missing checkpoint, an existing output, a state dict that does not fit) or bad arguments (argparse).
    """
    # Run as `python -m`, the module is __main__; its spec still has the importable name.
    prog = f"python -m {getattr(importer.__spec__, 'name', None) or importer.__name__}"
    checkpoint_help = getattr(importer, "CLI_CHECKPOINT_HELP", "the official checkpoint (.pth / .pt; .safetensors)")
    summary = getattr(importer, "cli_summary", lambda variables: "")
    wrapper_keys = getattr(importer, "WRAPPER_KEYS", WRAPPER_KEYS)
    convert, resolve_name = importer.convert, importer.resolve_name
    parser = argparse.ArgumentParser(prog=prog, description=importer.CLI_DESCRIPTION)
    parser.add_argument("name", help=importer.CLI_NAME_HELP)
    parser.add_argument("checkpoint", help=checkpoint_help)
    parser.add_argument("output", help="where to write the variables (.msgpack); must not exist yet")
    parser.add_argument(
        "--num-classes", type=int, default=None, help="classifier size (default: read from the checkpoint)"
    )
    if getattr(importer, "CLI_EMA", False):
        parser.add_argument("--ema", action="store_true", help="convert the EMA weights the training script saved")
    args = parser.parse_args(argv)
    try:
        model_name = resolve_name(args.name)
        if os.path.lexists(args.output):  # say so before the slow part, not after it
            raise FileExistsError(
                f"{args.output} already exists; not overwriting it. Remove it or choose another output."
            )
        if getattr(args, "ema", False):
            state_dict = importer.load_state_dict(args.checkpoint, ema=True)
        else:
            state_dict = load_state_dict(args.checkpoint, wrapper_keys=wrapper_keys)
        variables = convert(model_name, state_dict, num_classes=args.num_classes)
        save_variables(args.output, variables)
    except (FileExistsError, FileNotFoundError, IsADirectoryError, ImportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Wrote {count_params(variables):,} parameters of {model_name}{summary(variables)} to {args.output}")
    return 0
