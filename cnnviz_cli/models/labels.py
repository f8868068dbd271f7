"""Class labels: the ImageNet list shipped with the package, or a user's file."""

import json
from functools import cache
from importlib import resources
from pathlib import Path

from cnnviz_cli.errors import CnnvizError, reason


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the order keras.applications predicts them."""
    text = resources.files("cnnviz_cli.models").joinpath("imagenet_labels.json").read_text()
    return tuple(name for _, name in json.loads(text))


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Read labels from a text file (one a line) or JSON (a list, or a {index: name} object)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CnnvizError(f"Cannot read the labels file {path}: {reason(error)}.") from None
    if path.suffix.lower() != ".json":
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CnnvizError(f"The labels file {path} is not valid JSON: {error}.") from None
    if isinstance(data, dict):
        try:
            data = [data[key] for key in sorted(data, key=int)]
        except ValueError:
            raise CnnvizError(
                f"The labels file {path} must map class indices (0, 1, ...) to names."
            ) from None
    if not isinstance(data, list):
        raise CnnvizError(f"The labels file {path} must hold a JSON list or object of names.")
    return tuple(str(item[-1] if isinstance(item, list) else item) for item in data)
