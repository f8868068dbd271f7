"""Where a picture came from, carried inside every PNG cnnviz writes as `cnnviz:*` text chunks.

Each PNG holds the tool version, the command and its command line (without -o DIR), the model
record of the manifest (source, weights, the SHA-256 of the model and weights files, ...), where
they apply the layer, method, target and seed of the picture, where the settings that are not
on the command line came from (`settings`: environment, a profile or a settings file; a run
launched by its command line alone writes the same bytes however it was resumed), its whole
manifest record, and
`setup`, a digest of the run's command and result options (finished work is recognised by it
when a manifest is lost).
Names follow the manifest (`command_line`, `model.sha256`); `model`, `seed` and `record` are JSON.
Reading them back needs only Pillow, no TensorFlow; PNGs of older versions (`command-line`,
`model-sha256`, ...) read the same.
"""

import hashlib
import json
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cnnviz_cli.errors import InputError

PREFIX = "cnnviz:"
JSON_FIELDS = ("model", "seed", "record", "settings")  # chunks that hold JSON, not text
_TARGET_KEYS = ("target", "targets", "filter", "filters", "channel", "channels")
_OLD_MODEL_FIELDS = {"model": "source", "weights": "weights", "model-sha256": "sha256",
                     "weights-sha256": "weights_sha256"}  # chunks before the manifest's names


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _text(value) -> str:
    """A field as one line: lists joined by commas, runs of integers as ranges (0-31)."""
    if hasattr(value, "tolist"):  # NumPy arrays and numbers
        value = value.tolist()
    if isinstance(value, list | tuple):
        if value and all(type(item) is int for item in value):
            return _ranges(value)
        return ", ".join(_text(item) for item in value)
    if isinstance(value, dict):  # e.g. a dream objective term: name it by its layer
        return str(value.get("path", json.dumps(value)))
    return str(value)


def _ranges(numbers: list[int]) -> str:
    """`[0, 1, 2, 3, 7, 8]` -> `0-3, 7, 8`: runs of three or more as ranges."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    parts = []
    for run in runs:
        parts += [f"{run[0]}-{run[-1]}"] if len(run) > 2 else [str(number) for number in run]
    return ", ".join(parts)


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

    `run` holds version, command, command-line, the model description of the manifest, the
    seed (None where no seed applies) and `settings`, where each setting that is neither on
    the command line nor left at its default came from (environment, profile, file); `record`
    is the file's manifest record.
    """
    fields = {
        "version": run["version"],
        "command": run["command"],
        "command_line": run["command-line"],
        "model": run.get("model"),
        "layer": record.get("layer") or record.get("layers"),
        "method": record.get("method") or record.get("methods"),
        "target": _target(record),
        "seed": run.get("seed"),
        "settings": run.get("settings") or None,
    }
    return {PREFIX + name: json.dumps(value) if name in JSON_FIELDS else _text(value)
            for name, value in fields.items() if value is not None}


def _upgraded(fields: dict) -> dict:
    """Fields of a PNG from before the manifest's names, renamed (the model's as one object)."""
    if "model" in fields and isinstance(fields["model"], dict):
        return fields
    upgraded: dict = {}
    for key, value in fields.items():
        if key == "command-line":
            upgraded["command_line"] = value
        elif key in _OLD_MODEL_FIELDS:
            upgraded.setdefault("model", {})[_OLD_MODEL_FIELDS[key]] = value
        else:
            upgraded[key] = value
    if isinstance(upgraded.get("record"), dict):  # older targets could be a NumPy repr
        upgraded["target"] = _target(upgraded["record"])
    return {key: value for key, value in upgraded.items() if value is not None}


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
    for name in JSON_FIELDS:
        if name in fields:
            try:
                fields[name] = json.loads(fields[name])
            except json.JSONDecodeError:
                pass  # an older PNG's text (a model name, a seed): kept as it is
    return _upgraded(fields)
