"""Results out: files encoded and written atomically in background threads (io.manifests
writes the manifest from what is on disk).

A file enters the manifest only once it is on disk; an input counts as finished (listed under
`inputs`) once its whole batch has been handed back and all of that batch's files are written.
The folder is created, and locked against other runs, only when the first file or manifest is
written; a write that fails (no space, read-only, the folder gone) is a WriteError, and the
manifest on disk stays the last one written in full.
"""

import errno
import hashlib
import io
import itertools
import json
import os
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from cnnviz_cli.errors import CnnvizError, WriteError
from cnnviz_cli.io.background import BoundedPool
from cnnviz_cli.io.lock import FolderLock
from cnnviz_cli.io.provenance import PREFIX, png_fields
from cnnviz_cli.version import __version__

MANIFEST = "manifest.json"
REPORT = "index.html"
WRITE_AHEAD = 16  # files queued or being encoded at most, so memory stays bounded
# Options that change how a run is carried out, not what it computes.
RUN_CONTROL = frozenset(
    {"images", "out", "skip_existing", "fail_fast", "shard", "batch_size", "print_json",
     "fail_under", "fail_over", "fail_under_each", "fail_over_each", "force"}
)
TEMPORARY = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")  # the names of _temporary_beside


def setup_digest(command: str, options: dict) -> str:
    """A short digest of what a run computes (its command and result options), carried in
    each PNG so that finished work can be recognised without the manifest."""
    chosen = {k: v for k, v in options.items() if k not in RUN_CONTROL}
    text = json.dumps([command, chosen], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def remove_temporaries(root: Path) -> int:
    """Delete the temporary files a killed run left under `root`; return how many."""
    count = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if TEMPORARY.fullmatch(name):
                Path(folder, name).unlink(missing_ok=True)
                count += 1
    return count


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot store {type(value).__name__} in the manifest")


def to_json(data: dict) -> str:
    """The manifest's JSON text (NumPy numbers and paths converted)."""
    return json.dumps(data, indent=2, default=_json_default, ensure_ascii=False)


def _temporary_beside(path: Path) -> tuple[int, Path]:
    """A new, empty file beside `path`, open for writing, with the mode the umask gives.

    (`tempfile.mkstemp` would make it 0600, whatever the umask; reading the umask to fix that
    up afterwards is not thread-safe, so the file is created with mode 0666 for the kernel to
    apply the umask.)
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue


def write_atomic(path: Path, data: bytes, make_parents: bool = True) -> None:
    """Write bytes to a temporary file beside `path`, then rename it into place."""
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _temporary_beside(path)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders, deepest first, until one is not empty (or gone)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@dataclass
class _Batch:
    """The inputs of one batch and how many of their files are still being written."""

    number: int
    inputs: list[dict]
    pending: int = 0
    handed_back: bool = False
    lost: bool = False


class Outputs:
    """The output folder of one run: PNG/GIF/NPY files plus `manifest.json`.

    `save_*` return at once; encoding and writing happen in background threads. The array
    passed in is handed over: do not modify it afterwards.
    """

    def __init__(self, root: Path, command: str, options: dict, command_line: str | None = None,
                 notify: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.command = command
        self.command_line = command_line or f"cnnviz {command}"  # without -o/--out
        self.options = options
        self.model: dict | None = None
        self.runtime: dict | None = None  # the device and TensorFlow that computed the run
        self.sources: dict | None = None  # option -> where its setting came from (the shell's)
        self.failures: list[dict] = []
        self.metrics: dict = {}  # named tables (lists of row dicts) shown in the report
        self.changed = False  # True once this run saved a file or recorded a failure
        self.notify = notify
        self.setup = setup_digest(command, options)
        self.listed: tuple[int, int] | None = None  # inputs, files of the manifest on disk
        # (the manifest is io.manifests' to assemble and write: this class writes files)
        if self.root.exists() and not self.root.is_dir():
            raise CnnvizError(f"Output folder {self.root} is a file; choose another --out.")
        self._created: list[Path] = []  # folders this run created, deepest first
        self._folder_lock: FolderLock | None = None
        self._slots: list[dict | None] = []  # records in save order; None until on disk
        self._finished: dict[int, list[dict]] = {}  # batch number -> its finished inputs
        self._batch: _Batch | None = None
        self._batch_numbers = itertools.count()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._pool = BoundedPool(WRITE_AHEAD)

    @property
    def opened(self) -> bool:
        return self._folder_lock is not None

    def open(self) -> None:
        """Create the folder, lock it against other runs and remove the temporary files a
        killed run left (once; the first file or manifest written opens it anyway)."""
        if self.opened:
            return
        created = [folder for folder in (self.root, *self.root.parents) if not folder.exists()]
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CnnvizError(
                f"Cannot create output folder {self.root}: {error.strerror}."
            ) from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise CnnvizError(f"Output folder {self.root} is not writable; choose another --out.")
        lock = FolderLock(self.root, self.command)
        try:
            lock.acquire(self.notify)
        except BaseException:
            _remove_empty(created)  # the folder may be another run's: never a file in it
            raise
        self._folder_lock, self._created = lock, created
        removed = remove_temporaries(self.root)
        if removed and self.notify is not None:
            self.notify(f"Removed {removed} temporary file(s) an interrupted run left in "
                        f"{self.root}.")

    def release(self) -> None:
        """Drop the lock on the folder (after the last manifest is written)."""
        if self._folder_lock is not None:
            self._folder_lock.release()

    @property
    def records(self) -> list[dict]:
        """The files on disk, in the order they were saved."""
        with self._lock:
            return [record for record in self._slots if record is not None]

    @property
    def inputs(self) -> list[dict]:
        """The inputs whose every output is on disk."""
        with self._lock:
            return [item for number in sorted(self._finished) for item in self._finished[number]]

    def _provenance(self, record: dict) -> PngImagePlugin.PngInfo:
        info = PngImagePlugin.PngInfo()
        run = {"version": __version__, "command": self.command,
               "command-line": self.command_line, "model": self.model,
               "seed": self.options.get("seed"),
               "settings": {name: source for name, source in (self.sources or {}).items()
                            if source not in ("default", "command line")}}
        fields = {**png_fields(run, record), f"{PREFIX}setup": self.setup,
                  f"{PREFIX}record": json.dumps(record, default=_json_default)}
        for key, value in fields.items():
            info.add_text(key, value)
        return info

    def save_png(self, relative: str, image: np.ndarray, record: dict) -> Path:
        """Save a uint8 (height, width[, channels]) image and list it in the manifest."""

        def encode() -> bytes:
            buffer = io.BytesIO()
            squeeze = image.ndim == 3 and image.shape[-1] == 1
            picture = Image.fromarray(image[..., 0] if squeeze else image)
            picture.save(buffer, format="PNG", pnginfo=self._provenance(record))
            return buffer.getvalue()

        return self._submit(relative, record, encode)

    def save_gif(
        self, relative: str, frames: list[np.ndarray], record: dict, frame_ms: int = 120
    ) -> Path:
        """Save frames as a looping animated GIF."""

        def encode() -> bytes:
            pictures = [Image.fromarray(frame) for frame in frames]
            buffer = io.BytesIO()
            pictures[0].save(
                buffer, format="GIF", save_all=True, append_images=pictures[1:],
                duration=frame_ms, loop=0,
            )
            return buffer.getvalue()

        return self._submit(relative, record, encode)

    def save_npy(self, relative: str, array: np.ndarray, record: dict) -> Path:
        """Save a raw array (e.g. an unnormalised heatmap)."""

        def encode() -> bytes:
            buffer = io.BytesIO()
            np.save(buffer, array)
            return buffer.getvalue()

        return self._submit(relative, record, encode)

    def _submit(self, relative: str, record: dict, encode: Callable[[], bytes]) -> Path:
        self._raise_write_error()
        self.open()
        path = self.root / relative
        entry = {"file": relative, **record}
        with self._lock:
            slot = len(self._slots)
            self._slots.append(None)
            batch = self._batch
            if batch is not None:
                batch.pending += 1
            self.changed = True
        self._pool.submit(
            lambda: self._write(path, encode()),
            lambda future: self._written(future, slot, batch, entry),
        )
        return path

    def _write(self, path: Path, data: bytes) -> None:
        """Write one file atomically; a folder that vanished under the run is never recreated."""
        try:
            for folder in reversed(path.relative_to(self.root).parents[:-1]):
                (self.root / folder).mkdir(exist_ok=True)
            write_atomic(path, data, make_parents=False)
        except (FileNotFoundError, FileExistsError):  # exists: then gone before mkdir checked
            if self.root.is_dir():
                raise
            raise FileNotFoundError(errno.ENOENT, "the folder is gone", str(self.root)) from None

    def _written(self, future: Future, slot: int, batch: _Batch | None, entry: dict) -> None:
        error = future.exception()
        with self._lock:
            if error is None:
                self._slots[slot] = entry
            else:
                self._error = self._error or error
            if batch is not None:
                batch.pending -= 1
                batch.lost = batch.lost or error is not None
                self._settle(batch)

    def _settle(self, batch: _Batch) -> None:
        if batch.handed_back and batch.pending == 0 and not batch.lost:
            self._finished[batch.number] = batch.inputs

    def begin_batch(self, inputs: list[dict]) -> None:
        """Files saved from now on belong to `inputs`, until the next batch begins."""
        with self._lock:
            self._hand_back()
            self._batch = _Batch(next(self._batch_numbers), inputs)

    def end_batch(self) -> None:
        """The command is done with the current batch (its files may still be writing)."""
        with self._lock:
            self._hand_back()
            self._batch = None

    def _hand_back(self) -> None:
        if self._batch is not None:
            self._batch.handed_back = True
            self._settle(self._batch)

    def carry(self, records: list[dict], inputs: list[dict]) -> None:
        """Keep finished work of a previous run in this run's manifest (--skip-existing)."""
        with self._lock:
            self._slots[:0] = records
            self._finished[-1] = inputs

    def fail(self, source: str, message: str) -> None:
        """Record one input that could not be processed."""
        self.open()
        self.failures.append({"input": source, "error": message})
        self.changed = True

    def flush(self) -> None:
        """Wait until every saved file is on disk; raise the first write error."""
        self._pool.wait()
        self._raise_write_error()

    def close(self) -> None:
        """Finish pending writes and stop the writer threads (errors are kept for flush)."""
        self._pool.close()

    def remove(self, files: list[str]) -> None:
        """Delete files of an earlier run, given relative to the folder (never outside it)."""
        for relative in files:
            if relative.startswith("/") or ".." in Path(relative).parts:
                continue
            try:
                (self.root / relative).unlink(missing_ok=True)
            except OSError as error:
                self._fail_write(error)

    def remove_if_unused(self) -> None:
        """Remove the first manifest and the folders this run created, as long as nothing
        else is in them (the manifest stays when it lists an earlier run's work); unlock."""
        if self._created and not self._slots:
            (self.root / MANIFEST).unlink(missing_ok=True)
        self.release()
        _remove_empty(self._created)

    def _raise_write_error(self) -> None:
        error = self._error
        if isinstance(error, OSError):
            raise WriteError(f"Cannot write to {self.root}: {error.strerror or error}.")
        if error is not None:
            raise error

    def _fail_write(self, error: OSError):
        with self._lock:
            self._error = self._error or error
        self._raise_write_error()

    @property
    def write_failed(self) -> bool:
        return isinstance(self._error, OSError)

    def failure_sentence(self) -> str:
        """The one sentence of a failed write: folder, cause, and what is complete and listed."""
        cause = getattr(self._error, "strerror", None) or self._error
        images = self.options.get("images") is not None
        if self.listed is None:
            done = "nothing is written yet"
        else:
            inputs, files = self.listed
            done = (f"{inputs} image(s) ({files} files)" if images else f"{files} files") + (
                f" are complete and listed in {self.root / MANIFEST}")
        again = "run again with --skip-existing to finish" if images else "run again"
        return (f"Cannot write to {self.root}: {cause}; {done}; free space or fix the folder, "
                f"then {again}.")

    def write_now(self, relative: str, data: bytes) -> None:
        """Write one file of the folder itself (manifest, report) at once; OSError -> WriteError."""
        self.open()
        try:
            self._write(self.root / relative, data)
        except OSError as error:
            self._fail_write(error)
