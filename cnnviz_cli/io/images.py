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
    """Any Pillow mode as L (one channel) or RGB: deep grey images scaled by their real range
    (`_deep_to_uint8`), transparency composited on white."""
    if image.mode in DEEP_MODES:
        image = Image.fromarray(_deep_to_uint8(np.asarray(image, np.float64), image.mode == "F"))
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("L" if channels == 1 else "RGB")


DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # grey, over 8 bits per pixel


def _deep_to_uint8(values: np.ndarray, floating: bool) -> np.ndarray:
    """Deep grey values to uint8 by their real range: floats within [0, 1] as fractions,
    values within [0, 255] as 8-bit levels, integers within [0, 65535] as 16-bit levels;
    anything else stretched from its minimum to its maximum."""
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if floating and low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    elif low >= 0 and high <= 255:
        low, high = 0.0, 255.0
    elif not floating and low >= 0 and high <= 65535:
        low, high = 0.0, 65535.0
    scaled = (np.nan_to_num(values, nan=low) - low) / ((high - low) or 1.0)
    return (np.clip(scaled, 0.0, 1.0) * 255).round().astype(np.uint8)


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
