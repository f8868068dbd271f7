"""Drawing feature maps and convolution kernels as labelled grids."""

import numpy as np

from cnnviz_cli.render.colour import colorize, normalize, to_uint8
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
