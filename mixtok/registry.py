"""Name -> object registries with errors that suggest the closest valid names."""

import difflib
import fnmatch
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


def close_matches_hint(name: object, valid: Iterable[str]) -> str:
    """' Did you mean 'a', 'b'?' for the near misses of `name` among `valid`, else ''."""
    close = difflib.get_close_matches(str(name), list(valid), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def unknown_name_error(kind: str, name: object, valid: Iterable[str]) -> ValueError:
    """A ValueError naming the bad `name`, the close matches and every valid name."""
    valid = sorted(valid)
    return ValueError(f"Unknown {kind} {name!r}.{close_matches_hint(name, valid)} Valid {kind}s: {', '.join(valid)}.")


class Registry(Generic[T]):
    """A dictionary of named entries; `get` raises `unknown_name_error` for a missing name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T]:
        """Registers `entry` under `name`; used bare (`register(name, obj)`) or as a decorator."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice.")
            self._entries[name] = obj
            return obj

        return add(entry) if entry is not None else add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise unknown_name_error(self.kind, name, self._entries)
        return self._entries[name]

    def names(self, pattern: str = "*") -> list[str]:
        """The registered names, sorted, optionally filtered by a shell-style pattern (`caformer_*`)."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._entries
