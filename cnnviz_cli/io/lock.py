"""The lock on an output folder: one run writes into a folder at a time.

The lock is an exclusive `flock` on `<out>/.cnnviz.lock`, which names its holder (process id,
host, start time, command). The kernel drops the `flock` when the process ends, however it
ends, so a lock file nobody holds was left by a run that is gone: the next run takes it over
and says so. Where the file system has no locks, the holder's process id decides. A lock file
naming another host is never taken over (its process cannot be checked from here): the run is
refused and told which file to delete.
"""

import datetime
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

from cnnviz_cli.errors import CnnvizError

try:
    import fcntl
except ImportError:  # Windows: the holder's process id decides
    fcntl = None

LOCK = ".cnnviz.lock"


def _holder_text(holder: dict) -> str:
    return (f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
            f"{holder.get('started', '?')}")


def _read_holder(handle: int) -> dict:
    os.lseek(handle, 0, os.SEEK_SET)
    try:
        holder = json.loads(os.read(handle, 4096) or b"{}")
    except ValueError:  # being written by its holder this very moment
        return {}
    return holder if isinstance(holder, dict) else {}


def _flock(handle: int) -> bool:
    """Lock the file without waiting (BlockingIOError when held); False without file locks."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError:  # a file system without locks
        return False
    return True


def _alive(pid) -> bool:
    if os.name == "nt":  # os.kill would end the process there: assume it runs
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True  # another user's process, or no pid to check: assume it runs
    return int(pid) != os.getpid()


class FolderLock:
    """An exclusive lock on an output folder, held from `acquire()` to `release()`."""

    def __init__(self, folder: Path, command: str):
        self.path = Path(folder) / LOCK
        self.command = command
        self._handle: int | None = None

    def acquire(self, notify: Callable[[str], None] | None = None) -> None:
        """Take the lock, or raise one CnnvizError sentence naming the run that holds it."""
        while True:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                locked = _flock(handle)
            except BlockingIOError:
                self._refuse(handle, _read_holder(handle))
            try:  # the holder before us may have removed the file while we opened it
                same = os.stat(self.path).st_ino == os.fstat(handle).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(handle)
        previous = _read_holder(handle)
        if previous.get("host", socket.gethostname()) != socket.gethostname():
            os.close(handle)
            raise CnnvizError(
                f"{self.path} names a run on another host ({_holder_text(previous)}); if it "
                "no longer runs, delete that file and run again."
            )
        if previous and not locked and _alive(previous.get("pid")):
            self._refuse(handle, previous)
        if previous and notify is not None:
            notify(f"Took over the lock on {self.path.parent} left by {_holder_text(previous)}, "
                   "which is no longer running.")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(handle, 0)
        os.lseek(handle, 0, os.SEEK_SET)
        os.write(handle, json.dumps(holder).encode("utf-8"))
        self._handle = handle

    def _refuse(self, handle: int, holder: dict):
        os.close(handle)
        raise CnnvizError(
            f"Another cnnviz run ({_holder_text(holder)}) is writing into {self.path.parent}; "
            "wait for it to finish or choose another --out."
        )

    def release(self) -> None:
        """Remove the lock file and drop the lock (nothing happens when it is not held)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            self.path.unlink(missing_ok=True)
            os.close(handle)
