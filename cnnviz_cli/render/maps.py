"""Drawing feature maps and convolution kernels as labelled grids."""

import numpy as np
from PIL import Image

from cnnviz_cli.render.colour import as_rgb, colorize, normalize, signed_image, to_uint8
from cnnviz_cli.render.grid import grid, upscale

TILE_PIXELS = 72


def feature_grid(
    maps: np.ndarray,
    channels: np.ndarray,
    scale: str = "shared",
    colormap: str = "viridis",
    title: str | None = None,
) -> np.ndarray:
    """Feature maps (height, width, channels) of the given channels as a labelled grid.

    `scale` is `shared` (one colour scale for all maps, so strengths compare) or `each`.
    """
    chosen = maps[..., channels]
    low, high = (float(chosen.min()), float(chosen.max())) if scale == "shared" else (None, None)
    tiles = [
        upscale(colorize(normalize(chosen[..., i], low, high), colormap), TILE_PIXELS)
        for i in range(chosen.shape[-1])
    ]
    return grid(tiles, [f"ch {c}" for c in channels], title=title)


def symmetric_scale(arrays: list[np.ndarray]) -> float:
    """The largest absolute value over several arrays: zero maps to the middle of the scale."""
    return max(float(np.abs(a).max()) for a in arrays) or 1.0


def kernel_tiles(kernels: np.ndarray, limit: float, colormap: str = "RdBu_r") -> list[np.ndarray]:
    """Kernels (count, height, width, 1 or 3) as tiles on a symmetric scale [-limit, limit].

    RGB kernels become colour patches (grey is zero); single-channel kernels use a diverging
    colour map.
    """
    scaled = (kernels / limit + 1.0) / 2.0
    if kernels.shape[-1] == 3:
        tiles = [to_uint8(k) for k in scaled]
    else:
        tiles = [colorize(k[..., 0], colormap) for k in scaled]
    return [upscale(tile, 40) for tile in tiles]


def support_box(values: np.ndarray, minimum: float = 0.25) -> tuple[slice, slice]:
    """The square around where a (height, width[, channels]) map is non-zero, at least
    `minimum` of the shorter side, inside the map: e.g. a unit's receptive field."""
    magnitude = np.abs(values).reshape(*values.shape[:2], -1).max(axis=-1)
    rows, columns = np.nonzero(magnitude > 1e-3 * magnitude.max())
    height, width = magnitude.shape
    if not len(rows):
        return slice(0, height), slice(0, width)
    side = max(np.ptp(rows), np.ptp(columns)) + 1
    side = min(max(side, round(minimum * min(height, width))), height, width)
    top = int(np.clip((rows.min() + rows.max() + 1 - side) // 2, 0, height - side))
    left = int(np.clip((columns.min() + columns.max() + 1 - side) // 2, 0, width - side))
    return slice(top, top + side), slice(left, left + side)


def receptive_field_pair(image: np.ndarray, projection: np.ndarray, side: int = 96) -> np.ndarray:
    """The image patch under a unit's projection and the projection itself, side by side, each
    cropped to the projection's support and resized to `side` pixels."""
    box = support_box(projection)
    return patch_pair(image[box], projection[box], side)


def patch_pair(patch: np.ndarray, projection: np.ndarray, side: int = 96) -> np.ndarray:
    """An image patch and its projection (same height and width), side by side, each resized
    to `side` pixels."""
    patches = [as_rgb(patch), as_rgb(signed_image(projection))]
    resized = [np.asarray(Image.fromarray(patch).resize((side, side), Image.Resampling.NEAREST))
               for patch in patches]
    gap = np.full((side, 2, 3), 255, np.uint8)
    return np.concatenate([resized[0], gap, resized[1]], axis=1)
