"""Where a picture came from, carried inside every PNG cnnviz writes as `cnnviz:*` text chunks.

Each PNG holds the tool version, the command and its command line (without -o DIR), the model
(source, weights and the SHA-256 of the model or weights file), where they apply the layer,
method, target and seed of the picture, and its whole manifest record as JSON. Reading them back
needs only Pillow, no TensorFlow.
"""

import hashlib
import json
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cnnviz_cli.errors import InputError

PREFIX = "cnnviz:"
_TARGET_KEYS = ("target", "targets", "filter", "filters", "channel", "channels")


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _text(value) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_text(item) for item in value)
    if isinstance(value, dict):  # e.g. a dream objective term: name it by its layer
        return str(value.get("path", json.dumps(value)))
    return str(value)


def _target(record: dict) -> str | None:
    """What the picture explains or shows: a class (with its label), filters or channels."""
    if "class" in record:
        number, label = f"class {record['class']}", record.get("label")
        return f"{label} ({number})" if label and label != number else number
    for key in _TARGET_KEYS:
        if record.get(key) is not None:
            return f"{key} {_text(record[key])}"
    return None


def png_fields(run: dict, record: dict) -> dict[str, str]:
    """The `cnnviz:*` text chunks of one PNG but its record: the run's fields and the record's.

    `run` holds version, command, command-line, the model description of the manifest and the
    seed (None where no seed applies); `record` is the file's manifest record.
    """
    model = run.get("model") or {}
    fields = {
        "version": run["version"],
        "command": run["command"],
        "command-line": run["command-line"],
        "model": model.get("source"),
        "weights": model.get("weights"),
        "model-sha256": model.get("sha256"),
        "weights-sha256": model.get("weights_sha256"),
        "layer": record.get("layer") or record.get("layers"),
        "method": record.get("method") or record.get("methods"),
        "target": _target(record),
        "seed": run.get("seed"),
    }
    return {PREFIX + name: _text(value) for name, value in fields.items() if value is not None}


def read_png_fields(path: Path) -> dict:
    """The cnnviz fields of a PNG (names without the prefix; `record` parsed from JSON).

    Raises InputError (one sentence) for a missing file, a file that is not a PNG, or a PNG
    without cnnviz fields.
    """
    try:
        with Image.open(path) as image:
            kind, texts = image.format, dict(getattr(image, "text", {}))
    except FileNotFoundError:
        raise InputError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder; give PNG files written by cnnviz.") from None
    except UnidentifiedImageError:
        kind = None
    except OSError as error:
        raise InputError(f"Cannot read {path}: {error.strerror or error}.") from None
    if kind != "PNG":
        raise InputError(f"{path} is not a PNG image; cnnviz info reads PNGs written by cnnviz.")
    fields = {key[len(PREFIX):]: value for key, value in texts.items() if key.startswith(PREFIX)}
    if not fields:
        raise InputError(
            f"{path} carries no cnnviz provenance: it was not written by cnnviz, or its text "
            "chunks were stripped."
        )
    if "record" in fields:
        try:
            fields["record"] = json.loads(fields["record"])
        except json.JSONDecodeError:
            pass  # keep the text as it is
    return fields
