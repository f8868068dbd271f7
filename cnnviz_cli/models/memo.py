"""Models loaded once per process: a model named or given by file again (calls in a notebook
or a batch script, test after test) is the same object, with the functions compiled for it.
A file written again since (a checkpoint, a re-exported model) is loaded again."""

from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

KEPT = 4  # models held at once; the least recently used is dropped first
T = TypeVar("T")


class Loaded:
    """The last KEPT values `load()` gave, by key."""

    def __init__(self, kept: int = KEPT):
        self.kept, self.values = kept, OrderedDict()

    def get(self, key: Hashable | None, load: Callable[[], T]) -> T:
        """The value kept for `key`, or `load()`'s (kept unless `key` is None)."""
        if key is None:
            return load()
        if key not in self.values:
            self.values[key] = load()
            while len(self.values) > self.kept:
                self.values.popitem(last=False)
        self.values.move_to_end(key)
        return self.values[key]

    def clear(self) -> None:
        self.values.clear()


def stamp(path: str | Path) -> tuple:
    """What changes when a file, or a folder's files, are written again: each file's absolute
    path, size and modification time."""
    path = Path(path).resolve()
    files = sorted(item for item in path.rglob("*") if item.is_file()) if path.is_dir() \
        else [path]
    return tuple((str(item), item.stat().st_size, item.stat().st_mtime_ns) for item in files)
