"""What the `images` argument of the API takes: paths, folders, globs, PIL images, uint8 arrays.

Files are listed up front and decoded lazily, batch by batch, so memory stays flat in the size
of a folder; images given in memory are used as they are.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from cnnviz_cli.errors import CnnvizError, InputError

ImageSource = Union[str, Path, np.ndarray, "PIL.Image.Image", Iterable[Any]]  # noqa: F821


@dataclass(frozen=True)
class InputItem:
    """One image to process: a file to decode, or pixels given in memory."""

    name: str  # what the manifest records as its input: the path, or `image-<i>`
    key: str  # its folder name under the output folder
    path: Path | None = None
    pixels: Any = None  # an array or a PIL image


@dataclass
class LoadedImage:
    """One decoded input: its names, the original pixels, the pixels at the size computed
    for it and where they sit there (`placement.unframe` draws a map back onto `original`)."""

    name: str
    key: str
    original: np.ndarray  # uint8 (height, width, channels)
    resized: np.ndarray  # uint8 (computed height, computed width, channels)
    path: Path | None = None
    placement: "Placement | None" = None  # noqa: F821 (models.geometry; None: stretched)

    def unframe(self, values: np.ndarray) -> np.ndarray:
        """A map over `resized` (any resolution) as a map over `original`."""
        return values if self.placement is None else self.placement.unframe(values)

    @property
    def title(self) -> str:
        """How pictures caption it: the file name, or `image-<i>`."""
        return self.path.name if self.path is not None else self.name


def _is_pixels(value) -> bool:
    from PIL import Image

    return isinstance(value, np.ndarray | Image.Image)


def _flatten(images) -> list:
    """The images argument as a list of path specs and single in-memory images."""
    if isinstance(images, str | Path):
        return [str(images)]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        return [images]
    if _is_pixels(images):
        return [images]
    if isinstance(images, Iterable):
        flat = []
        for image in images:
            if isinstance(image, np.ndarray) and image.ndim == 4:
                flat += list(image)
            elif isinstance(image, str | Path) or _is_pixels(image):
                flat.append(str(image) if isinstance(image, Path) else image)
            else:
                flat.append(image)  # refused when it is decoded, naming its position
        return flat
    raise CnnvizError(
        f"images must be a path, a folder, a glob, a PIL image, a uint8 array or a list of "
        f"these, not {type(images).__name__}."
    )


def collect_inputs(images: ImageSource) -> list[InputItem]:
    """List the inputs in order: folders expanded (recursively), globs matched, files once."""
    from cnnviz_cli.io.images import collect_image_paths, output_keys

    flat = _flatten(images)
    if all(isinstance(item, str) for item in flat):  # the command line's case
        paths = collect_image_paths(flat)
        return [InputItem(str(path), key, path)
                for path, key in zip(paths, output_keys(paths), strict=True)]
    entries, seen = [], set()  # (name, path, pixels)
    for index, item in enumerate(flat):
        if not isinstance(item, str):
            entries.append((f"image-{index}", None, item))
            continue
        for path in collect_image_paths([item]):
            if path not in seen:
                seen.add(path)
                entries.append((str(path), path, None))
    keys = iter(output_keys([path for _, path, _ in entries if path is not None]))
    return [InputItem(name, name if path is None else next(keys), path, pixels)
            for name, path, pixels in entries]


def input_folders(specs: Iterable[str]) -> list[Path]:
    """The folders path specs search: folders given, and the fixed base of `**` globs."""
    folders = []
    for spec in specs:
        if "**" in spec:
            base = Path(spec.split("**", 1)[0] or ".")
            folders.append(base if base.is_dir() else base.parent)
        elif Path(spec).is_dir():
            folders.append(Path(spec))
    return folders


def _pixels(item: InputItem, channels: int) -> np.ndarray:
    """An in-memory image as uint8 (height, width, channels) in the model's colour mode."""
    from PIL import Image

    from cnnviz_cli.io.images import convert_mode

    value = item.pixels
    if isinstance(value, np.ndarray):
        if value.dtype != np.uint8 or value.ndim not in (2, 3) or (
                value.ndim == 3 and value.shape[-1] not in (1, 3, 4)):
            raise InputError(
                f"{item.name} is a {value.dtype} array of shape {value.shape}; give uint8 "
                "(height, width[, 1, 3 or 4 channels]) pixels."
            )
        value = Image.fromarray(value[..., 0] if value.ndim == 3 and value.shape[-1] == 1
                                else value)
    elif not isinstance(value, Image.Image):
        raise InputError(f"{item.name} is a {type(value).__name__}, not an image.")
    array = np.asarray(convert_mode(value, channels), dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def load_input(item: InputItem, channels: int, geometry, max_pixels: int) -> LoadedImage:
    """Decode (or convert) one input and fit it to the size `geometry` (models.geometry)
    computes it at."""
    from cnnviz_cli.io.images import load_image

    if item.path is not None:
        original = load_image(item.path, channels, max_pixels)
    else:
        original = _pixels(item, channels)
    resized, placement = geometry.place(original)
    return LoadedImage(item.name, item.key, original, resized, item.path, placement)
