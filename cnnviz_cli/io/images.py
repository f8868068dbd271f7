"""Images in: files, folders and globs to uint8 arrays the model can take."""

import glob
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnviz_cli.errors import CnnvizError, InputError
from cnnviz_cli.io import DEFAULT_MAX_PIXELS

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)


def collect_image_paths(specs: Iterable[str]) -> list[Path]:
    """Expand files, folders (recursively, image files only) and glob patterns, in order."""
    paths: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            paths += [p for p in found if not p.is_dir()]
        elif path.exists() or path.is_symlink():
            paths.append(path)
        elif glob.has_magic(spec):
            paths += sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        else:
            raise CnnvizError(f"Input {spec!r} is not a file, a folder or a matching glob pattern.")
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise CnnvizError(f"No images found in {', '.join(specs)}.")
    return unique


def output_keys(paths: list[Path]) -> list[str]:
    """A distinct, stable folder name per input: its stem, plus a path hash if stems clash."""
    stems = [path.stem for path in paths]
    return [
        stem
        if stems.count(stem) == 1
        else f"{stem}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:6]}"
        for stem, path in zip(stems, paths, strict=True)
    ]


def convert_mode(image: Image.Image, channels: int) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray((array / peak * 255).round().astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("L" if channels == 1 else "RGB")


def load_image(path: Path, channels: int = 3, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one image as uint8 (height, width, channels), EXIF orientation applied.

    Images that declare more than `max_pixels` pixels are refused before they are decoded.
    An InputError's message leaves the path out: callers show it as `PATH: MESSAGE`.
    """
    if path.is_dir():
        raise InputError("it is a folder, not an image file.")
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own bomb check must not refuse less
    too_many = (f"it declares {{}} pixels, over the --max-pixels limit of {max_pixels}; "
                "raise the limit if you trust the file.")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(too_many.format(f"{width}x{height}"))
            image.seek(0)
            image = convert_mode(ImageOps.exif_transpose(image), channels)
            array = np.asarray(image, dtype=np.uint8)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError("it no longer exists (removed after the inputs were listed).") from None
    except UnidentifiedImageError:
        raise InputError("not an image Pillow can read.") from None
    except Image.DecompressionBombError:  # over twice Pillow's limit, so over ours
        raise InputError(too_many.format(f"more than {2 * max_pixels}")) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise InputError(f"cannot be decoded ({str(error).rstrip('.')}).") from None
    return array[..., None] if array.ndim == 2 else array


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 (height, width, channels) image to (height, width) with Lanczos."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    squeezed = image[..., 0] if image.shape[-1] == 1 else image
    resized = Image.fromarray(squeezed).resize((width, height), Image.Resampling.LANCZOS)
    array = np.asarray(resized)
    return array[..., None] if array.ndim == 2 else array


@dataclass
class LoadedImage:
    """One input: where it came from, its output key, the original and the resized pixels."""

    path: Path
    key: str
    original: np.ndarray
    resized: np.ndarray
