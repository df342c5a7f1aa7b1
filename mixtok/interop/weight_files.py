"""Reads PyTorch-side checkpoint files as numpy, and writes / reads converted mixtok variables.

    state_dict = load_state_dict("model.safetensors")   # or pytorch_model.bin / .pth
    save_variables("caformer_s18.msgpack", variables)    # atomic; refuses to overwrite
    variables = load_variables("caformer_s18.msgpack")

Neither torch nor safetensors is a dependency of mixtok: each is imported only when a file of its
format is read. `.safetensors` needs `pip install mixtok[weights]`; `.pth` / `.bin` need PyTorch.
"""

import os
import pickle
import tempfile
from typing import Any, Dict, Mapping

import flax.serialization
import numpy as np

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Training scripts often save {"model": state_dict, "optimizer": ...}; these keys hold the weights.
_WRAPPER_KEYS = ("state_dict", "model")


def to_numpy(value: Any, key: str = "") -> np.ndarray:
    """A numpy array from a numpy array or a torch tensor (any device; half types become float32)."""
    if hasattr(value, "detach"):  # a torch tensor; torch itself need not be imported for this
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()  # numpy has no bfloat16 for torch to hand over
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "fiub" and array.dtype.name != "bfloat16":
        raise ValueError(f"state dict entry {key!r} is a {type(value).__name__}, not an array. "
                         f"Pass the flat state dict of tensors (e.g. checkpoint['model'], not the whole checkpoint).")
    return array


def _check_file(path: str) -> None:
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a folder; pass the checkpoint file inside it "
                                f"(for a timm download: model.safetensors or pytorch_model.bin).")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}.")


def _unwrap(checkpoint: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict.")
    for key in _WRAPPER_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    return checkpoint


def load_state_dict(path: str | os.PathLike) -> Dict[str, np.ndarray]:
    """Reads a checkpoint file into {name: numpy array}: `.safetensors` or a torch `.pth/.pt/.bin/.ckpt`."""
    path = os.fspath(path)
    _check_file(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in SAFETENSORS_SUFFIXES:
        try:
            from safetensors.numpy import load_file
        except ImportError as e:
            raise ImportError(f"Reading {path} needs the safetensors package: pip install mixtok[weights] "
                              f"(or pip install safetensors).") from e
        return dict(load_file(path))
    if suffix in TORCH_SUFFIXES:
        try:
            import torch
        except ImportError as e:
            raise ImportError(f"Reading {path} ({suffix}) needs PyTorch: pip install torch. Without it, download "
                              f"the .safetensors file of the same weights and pip install mixtok[weights].") from e
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ValueError(f"{path} holds more than tensors, which torch.load(weights_only=True) refuses to "
                             f"unpickle. If you trust the file, load it with torch.load(path, weights_only=False) "
                             f"and pass its state dict to convert().") from e
        return {k: to_numpy(v, k) for k, v in _unwrap(checkpoint, path).items()}
    raise ValueError(f"Cannot tell the format of {path} from its suffix {suffix!r}; expected one of "
                     f"{', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}.")


def save_variables(path: str | os.PathLike, variables: Mapping[str, Any], *, overwrite: bool = False) -> None:
    """Writes `variables` with flax msgpack, atomically: a reader sees the old state or the whole file.

    With `overwrite=False` an existing `path` raises FileExistsError and nothing is written, even
    when the file appears while we write (the final step is a hard link, which never replaces).
    """
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} already exists; not overwriting it. Remove it or choose another output.")
    data = flax.serialization.msgpack_serialize(flax.serialization.to_state_dict(dict(variables)))
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(f"{path} appeared while writing; not overwriting it.") from None
        except OSError:  # a file system without hard links: the check above is the best we can do
            if os.path.lexists(path):
                raise FileExistsError(f"{path} appeared while writing; not overwriting it.") from None
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_variables(path: str | os.PathLike) -> Dict[str, Any]:
    """Reads variables written by `save_variables` (or the converter CLI): {'params': nested numpy arrays}."""
    path = os.fspath(path)
    _check_file(path)
    with open(path, "rb") as f:
        return flax.serialization.msgpack_restore(f.read())
