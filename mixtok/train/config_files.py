"""Loads experiment config files by path, and the helper modules that sit beside them.

Config files (experiments/configs/**/*.py) are not part of the installed package. ml_collections'
`config_flags` runs a config file by its path without putting the file's folder on sys.path, so a
config cannot `import common`, and `import experiments.configs...` works only while the repository
root is the working directory. A config therefore loads its helper module by path:

    from mixtok.train.config_files import import_beside
    common = import_beside(__file__, "common")   # experiments/configs/imagenet/common.py

which works from any working directory once mixtok is installed (`pip install -e .`), under
`python -m mixtok.train`, in the tests and in a notebook, and always uses the helper beside the
config being run (never a stale copy elsewhere). `load_config("x.py:runlocal")` does what
`--config x.py:runlocal` does, for notebooks and scripts.
"""

import hashlib
import importlib.util
import os
import sys
from types import ModuleType

from ml_collections import ConfigDict


def _module_name(path: str) -> str:
    # One module per file: two folders may each hold a common.py, and sys.modules is keyed by name.
    digest = hashlib.sha1(path.encode()).hexdigest()[:12]
    stem = os.path.splitext(os.path.basename(path))[0]
    return f"_mixtok_config_{stem}_{digest}"


def load_module(path: str | os.PathLike) -> ModuleType:
    """Imports the Python file at `path` (a config or a helper beside one), once per file version.

    The module is kept in sys.modules under a name unique to its path, and loaded again when the file
    has changed since (a notebook that edits common.py sees the edit on its next load).
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Config file {path!r} does not exist (configs live in experiments/configs/; see experiments/README.md)."
        )
    name = _module_name(path)
    mtime = os.path.getmtime(path)
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__mixtok_mtime__", None) == mtime:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__mixtok_mtime__ = mtime
    sys.modules[name] = module  # before executing, as dataclasses and pickling look the module up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_beside(config_file: str | os.PathLike, name: str) -> ModuleType:
    """Imports the helper module `name`.py from the folder of `config_file` (pass `__file__`)."""
    return load_module(os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py"))


def load_config(path_and_arg: str | os.PathLike) -> ConfigDict:
    """The config of `"path/to/config.py[:OPTIONS]"`, as `--config` of `python -m mixtok.train` gives it."""
    path, _, arg = os.fspath(path_and_arg).partition(":")
    module = load_module(path)
    if not hasattr(module, "get_config"):
        raise ValueError(
            f"{path!r} is not a config file: it defines no get_config(arg=None) "
            f"(helper modules such as common.py are imported by the configs beside them)."
        )
    return module.get_config(arg or None)
