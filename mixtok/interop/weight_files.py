"""Reads PyTorch-side checkpoint files as numpy, and writes / reads converted mixtok variables.

    state_dict = load_state_dict("model.safetensors")   # or pytorch_model.bin / .pth
    save_variables("caformer_s18.msgpack", variables)    # atomic; refuses to overwrite
    variables = load_variables("caformer_s18.msgpack")
    state_dict = unwrap_state_dict(torch_checkpoint)     # {'model': sd} -> sd, 'module.' prefixes dropped

Neither torch nor safetensors is a dependency of mixtok: each is imported only when a file of its
format is read. `.safetensors` needs `pip install mixtok[weights]`; `.pth` / `.bin` need PyTorch.
"""

import argparse
import contextlib
import os
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import flax.serialization
import numpy as np

from mixtok.files import write_atomically

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")  # .tar: timm CheckpointSaver's *.pth.tar
# Training scripts often save {"model": state_dict, "optimizer": ...}; these keys hold the weights.
WRAPPER_KEYS = ("state_dict", "model")
# What a DistributedDataParallel model's state_dict() puts before every key.
DDP_PREFIX = "module."


def to_numpy(value: Any, key: str = "") -> np.ndarray:
    """A numpy array from a numpy array or a torch tensor (any device; half types become float32)."""
    if hasattr(value, "detach"):  # a torch tensor; torch itself need not be imported for this
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()  # numpy has no bfloat16 for torch to hand over
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "fiub" and array.dtype.name != "bfloat16":
        raise ValueError(
            f"state dict entry {key!r} is a {type(value).__name__}, not an array. "
            f"Pass the flat state dict of tensors (e.g. checkpoint['model'], not the whole checkpoint)."
        )
    return array


def _check_file(path: str) -> None:
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"{path!r} is a folder; pass the checkpoint file inside it "
            f"(for a timm download: model.safetensors or pytorch_model.bin)."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}.")


def _unwrap(
    checkpoint: Any, path: str, wrapper_keys: Sequence[str] = WRAPPER_KEYS, required: bool = False
) -> Mapping[str, Any]:
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict.")
    for key in wrapper_keys:
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    if required:
        wrappers = sorted(str(k) for k, v in checkpoint.items() if isinstance(v, Mapping))
        raise ValueError(
            f"{path} has no {' or '.join(repr(k) for k in wrapper_keys)} entry (the training script writes one "
            f"only when asked to); its entries holding weights are {wrappers or 'none: it is a bare state dict'}."
        )
    return checkpoint


def unwrap_state_dict(checkpoint: Mapping[str, Any], wrapper_keys: Sequence[str] = WRAPPER_KEYS) -> dict[str, Any]:
    """The flat state dict inside a training checkpoint, with the keys the model's own state_dict() has.

    `checkpoint[k]` for the first of `wrapper_keys` that holds a mapping (a training script's
    {"model": state_dict, "optimizer": ...}), else `checkpoint` itself; and without the "module."
    prefix when every key has it (the state_dict() of a DistributedDataParallel wrapper).
    """
    state_dict = _unwrap(checkpoint, "the checkpoint", wrapper_keys)
    if state_dict and all(isinstance(k, str) and k.startswith(DDP_PREFIX) for k in state_dict):
        return {k[len(DDP_PREFIX) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _torch_safe_globals(torch):
    """Lets torch.load(weights_only=True) read the argparse.Namespace that training scripts save as
    checkpoint['args'] (DeiT-style scripts such as GFNet's main_gfnet.py); it holds plain values only."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    return safe_globals([argparse.Namespace]) if safe_globals else contextlib.nullcontext()


def load_state_dict(
    path: str | os.PathLike, *, wrapper_keys: Sequence[str] = WRAPPER_KEYS, required: bool = False
) -> dict[str, np.ndarray]:
    """Reads a checkpoint file into {name: numpy array}: `.safetensors` or a torch `.pth/.pt/.bin/.ckpt/.pth.tar`.

    A torch file that holds a training checkpoint gives the state dict under the first of
    `wrapper_keys` that holds one ("state_dict", then "model", by default); with `required` (EMA weights,
    say), a file where none does is a ValueError naming the entries it has, not read as a bare state dict.
    """
    path = os.fspath(path)
    _check_file(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in SAFETENSORS_SUFFIXES:
        if required:
            raise ValueError(
                f"{path} is a bare state dict (.safetensors); the {' or '.join(repr(k) for k in wrapper_keys)} "
                "weights are in the training script's torch checkpoint."
            )
        try:
            from safetensors.numpy import load_file
        except ImportError as e:
            raise ImportError(
                f"Reading {path} needs the safetensors package: pip install mixtok[weights] "
                f"(or pip install safetensors)."
            ) from e
        return dict(load_file(path))
    if suffix in TORCH_SUFFIXES:
        try:
            import torch
        except ImportError as e:
            raise ImportError(
                f"Reading {path} ({suffix}) needs PyTorch: pip install torch. Without it, download "
                f"the .safetensors file of the same weights and pip install mixtok[weights]."
            ) from e
        try:
            with _torch_safe_globals(torch):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ValueError(
                f"{path} holds more than tensors, which torch.load(weights_only=True) refuses to "
                f"unpickle. If you trust the file, load it with torch.load(path, weights_only=False) "
                f"and pass its state dict to convert()."
            ) from e
        except Exception as e:  # a truncated or foreign file: RuntimeError, struct.error, EOFError, ...
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"{path} is not a torch.save file that torch.load can read ({reason}).") from e
        return {k: to_numpy(v, k) for k, v in _unwrap(checkpoint, path, wrapper_keys, required).items()}
    raise ValueError(
        f"Cannot tell the format of {path} from its suffix {suffix!r}; expected one of "
        f"{', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}."
    )


def save_variables(path: str | os.PathLike, variables: Mapping[str, Any], *, overwrite: bool = False) -> None:
    """Writes `variables` with flax msgpack, atomically: a reader sees the old state or the whole file.

    With `overwrite=False` an existing `path` raises FileExistsError and nothing is written, even
    when the file appears while we write (the final step is a hard link, which never replaces).
    """
    data = flax.serialization.msgpack_serialize(flax.serialization.to_state_dict(dict(variables)))

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    write_atomically(path, write, overwrite=overwrite)


def load_variables(path: str | os.PathLike) -> dict[str, Any]:
    """Reads variables written by `save_variables` (or the converter CLI): {'params': nested numpy arrays}."""
    path = os.fspath(path)
    _check_file(path)
    with open(path, "rb") as f:
        return flax.serialization.msgpack_restore(f.read())


def walk_leaves(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()):
    """(path, leaf) pairs of a nested mapping, in its own order."""
    for name, value in tree.items():
        if isinstance(value, Mapping):
            yield from walk_leaves(value, prefix + (name,))
        else:
            yield prefix + (name,), value


def mismatch_error(
    what: str, unexpected: list[str], missing: list[str], bad_shapes: list[str], hint: str = ""
) -> ValueError | None:
    """One error listing every unexpected, missing and wrong-shape key of a state dict (None if all fit)."""
    if not (unexpected or missing or bad_shapes):
        return None
    lines = [f"{what}: {len(unexpected) + len(missing) + len(bad_shapes)} problem(s).{hint}"]
    for title, items in (
        ("unexpected (no counterpart in the model)", unexpected),
        ("missing (parameters left unfilled)", missing),
        ("shape mismatches", bad_shapes),
    ):
        if items:
            lines.append(f"  {title} [{len(items)}]:")
            lines.extend(f"    {item}" for item in items)
    return ValueError("\n".join(lines))
