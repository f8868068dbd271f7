"""Normalising maps and colouring them with matplotlib colour maps."""

import functools

import numpy as np
from PIL import Image

from cnnviz_cli.errors import CnnvizError


def normalize(
    values: np.ndarray, low: float | None = None, high: float | None = None
) -> np.ndarray:
    """Scale to [0, 1] between `low` and `high` (default: the array's own min and max)."""
    values = np.asarray(values, dtype=np.float32)
    low = float(values.min()) if low is None else low
    high = float(values.max()) if high is None else high
    if high - low <= 1e-12:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 pixels."""
    return (np.clip(values, 0.0, 1.0) * 255).round().astype(np.uint8)


def colorize(values: np.ndarray, colormap: str = "inferno") -> np.ndarray:
    """A [0, 1] (height, width) map to uint8 RGB through a matplotlib colour map: its table of
    colours indexed as matplotlib indexes it, without a float RGBA copy of the map."""
    table = _colour_table(colormap)
    index = np.asarray(values) * len(table)
    np.fmax(index, 0, out=index)  # NaN becomes 0 too
    np.minimum(index, len(table) - 1, out=index)
    return np.take(table, index.astype(np.intp), axis=0)


@functools.cache
def _colour_table(colormap: str) -> np.ndarray:
    """The colour map's table of colours, uint8 RGB (N, 3)."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise CnnvizError(
            f"Unknown colour map {colormap!r}; use a matplotlib name such as turbo, inferno, "
            "viridis, jet or gray."
        ) from None
    return to_uint8(cmap(np.arange(cmap.N))[:, :3])


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float (height, width) map to (height, width) with bilinear interpolation."""
    height, width = size
    if values.shape == (height, width):
        return values.astype(np.float32)
    picture = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(picture.resize((width, height), Image.Resampling.BILINEAR))


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 image with 1 or 3 channels (or none) as (height, width, 3)."""
    if image.ndim == 2:
        image = image[..., None]
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def overlay(
    image: np.ndarray, heat: np.ndarray, colormap: str = "inferno", alpha: float = 0.5
) -> np.ndarray:
    """Blend a [0, 1] heatmap (any resolution) over a uint8 image at the image's resolution."""
    return blend(image, colorize(resize_map(heat, image.shape[:2]), colormap), alpha)


def blend(image: np.ndarray, coloured: np.ndarray, opacity: np.ndarray | float) -> np.ndarray:
    """uint8 RGB `coloured` laid over a uint8 image of its size (1 or 3 channels) with
    `opacity` in [0, 1]: one number, or one per pixel (height, width)."""
    mask = to_uint8(np.broadcast_to(np.asarray(opacity, np.float32), image.shape[:2]))
    return np.asarray(Image.composite(Image.fromarray(coloured), Image.fromarray(as_rgb(image)),
                                      Image.fromarray(mask)))


def signed_image(values: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """A signed map or gradient as uint8 pixels: grey is zero, and the `percentile` of the
    absolute values (robust to a few outliers) reaches black or white."""
    values = np.asarray(values, dtype=np.float32)
    magnitudes = np.abs(values)
    scale = float(np.percentile(magnitudes, percentile)) or float(magnitudes.max()) or 1.0
    return to_uint8(0.5 + 0.5 * values / scale)
