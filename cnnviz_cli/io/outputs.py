"""Results out: files written atomically under one folder, and the manifest that lists them."""

import datetime
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from cnnviz_cli import __version__
from cnnviz_cli.errors import CnnvizError


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


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Outputs:
    """The output folder of one run: PNG/GIF/NPY files plus `manifest.json`."""

    def __init__(self, root: Path, command: str, options: dict):
        self.root = Path(root)
        self.command = command
        self.options = options
        self.model: dict | None = None
        self.records: list[dict] = []
        self.failures: list[dict] = []
        if self.root.exists() and not self.root.is_dir():
            raise CnnvizError(f"Output folder {self.root} is a file; choose another --out.")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CnnvizError(f"Cannot create output folder {self.root}: {error.strerror}.") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise CnnvizError(f"Output folder {self.root} is not writable; choose another --out.")

    def _provenance(self, record: dict) -> PngImagePlugin.PngInfo:
        info = PngImagePlugin.PngInfo()
        fields = {
            "cnnviz:version": __version__,
            "cnnviz:command": self.command,
            "cnnviz:model": (self.model or {}).get("source", ""),
            "cnnviz:record": json.dumps(record, default=_json_default),
        }
        for key, value in fields.items():
            info.add_text(key, str(value))
        return info

    def _add(self, relative: str, record: dict) -> Path:
        self.records.append({"file": relative, **record})
        return self.root / relative

    def save_png(self, relative: str, image: np.ndarray, record: dict) -> Path:
        """Save a uint8 (height, width[, channels]) image and list it in the manifest."""
        buffer = io.BytesIO()
        picture = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image)
        picture.save(buffer, format="PNG", pnginfo=self._provenance(record))
        path = self._add(relative, record)
        write_atomic(path, buffer.getvalue())
        return path

    def save_gif(
        self, relative: str, frames: list[np.ndarray], record: dict, frame_ms: int = 120
    ) -> Path:
        """Save frames as a looping animated GIF."""
        pictures = [Image.fromarray(frame) for frame in frames]
        buffer = io.BytesIO()
        pictures[0].save(
            buffer, format="GIF", save_all=True, append_images=pictures[1:],
            duration=frame_ms, loop=0,
        )
        path = self._add(relative, record)
        write_atomic(path, buffer.getvalue())
        return path

    def save_npy(self, relative: str, array: np.ndarray, record: dict) -> Path:
        """Save a raw array (e.g. an unnormalised heatmap)."""
        buffer = io.BytesIO()
        np.save(buffer, array)
        path = self._add(relative, record)
        write_atomic(path, buffer.getvalue())
        return path

    def fail(self, source: str, message: str) -> None:
        """Record one input that could not be processed."""
        self.failures.append({"input": source, "error": message})

    def manifest(self) -> dict:
        """Everything the run did, as a JSON-ready dict."""
        return {
            "tool": "cnnviz",
            "version": __version__,
            "command": self.command,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "options": self.options,
            "model": self.model,
            "outputs": self.records,
            "failures": self.failures,
        }

    def write_manifest(self) -> str:
        """Write `manifest.json` atomically and return its text."""
        text = to_json(self.manifest())
        write_atomic(self.root / "manifest.json", text.encode("utf-8"))
        return text
