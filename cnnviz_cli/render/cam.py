"""CAM pictures: heat laid over the image, the bare heatmap, and a labelled panel of methods."""

import numpy as np
from PIL import Image

from cnnviz_cli.render.colour import as_rgb, blend, colorize, normalize, resize_map
from cnnviz_cli.render.grid import column_heads, grid, strip

PANEL_HEIGHT = 224


def heat_overlay(image: np.ndarray, heat: np.ndarray, colormap: str, alpha: float) -> np.ndarray:
    """A non-negative map (any resolution, 0 stays 0) coloured over the image.

    The colours are opaque where the heat is: `alpha` at the maximum, fading with the square
    root of the heat, so the image stays clear where the map is cold.
    """
    heat = resize_map(_scaled(heat), image.shape[:2])
    return blend(image, colorize(heat, colormap), alpha * np.sqrt(np.clip(heat, 0.0, 1.0)))


DIVERGING = "RdBu_r"  # signed maps: blue negative, white zero, red positive


def _balanced(heat: np.ndarray) -> np.ndarray:
    """A signed map scaled to [-1, 1] by a robust maximum of its magnitude (the 99.5th
    percentile), so that zero stays zero."""
    high = float(np.percentile(np.abs(heat), 99.5)) or float(np.abs(heat).max()) or 1.0
    return np.clip(np.asarray(heat, np.float32) / high, -1.0, 1.0)


def signed_overlay(image: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    """A signed map coloured over the image on a diverging colour map centred on zero: opaque
    (`alpha` at the largest magnitude) where the map is strong, clear where it is near zero."""
    scaled = resize_map(_balanced(heat), image.shape[:2])
    return blend(image, colorize(0.5 + 0.5 * scaled, DIVERGING), alpha * np.sqrt(np.abs(scaled)))


def signed_heatmap(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A signed map alone, upsampled to `size`, on the diverging colour map (white is zero)."""
    return colorize(0.5 + 0.5 * resize_map(_balanced(heat), size), DIVERGING)


def outline(picture: np.ndarray, region: np.ndarray, colour=(255, 255, 255)) -> np.ndarray:
    """`picture` with the border of a (h, w) region (non-zero inside, any resolution, stretched
    to the picture) drawn in `colour`, about 1/128 of the shorter side wide (at least 1 px)."""
    height, width = picture.shape[:2]
    inside = np.asarray(Image.fromarray((np.asarray(region) > 0).astype(np.uint8) * 255).resize(
        (width, height), Image.Resampling.NEAREST)) > 0
    core = inside.copy()
    for _ in range(max(1, min(height, width) // 128)):  # erode: a pixel and its 4 neighbours
        padded = np.pad(core, 1)
        core = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
                & padded[1:-1, :-2] & padded[1:-1, 2:])
    drawn = as_rgb(picture).copy()
    drawn[inside & ~core] = colour
    return drawn


def bare_heatmap(heat: np.ndarray, size: tuple[int, int], colormap: str) -> np.ndarray:
    """The map alone, smoothly upsampled to `size` (height, width) and coloured."""
    return colorize(resize_map(_scaled(heat), size), colormap)


def _scaled(heat: np.ndarray) -> np.ndarray:
    """[0, 1] from zero to a robust maximum (the 99.5th percentile, so that the few extreme
    pixels of a pixel-resolution map such as guided-gradcam do not make the rest invisible)."""
    high = float(np.percentile(heat, 99.5))
    return normalize(heat, 0.0, high if high > 0 else None)


def method_panel(
    image: np.ndarray, overlays: list[np.ndarray], methods: list[str], title: str
) -> np.ndarray:
    """The image and one overlay per method side by side, captioned with the method names."""
    return strip([at_height(image, PANEL_HEIGHT), *overlays], ["input", *methods], title)


def at_height(image: np.ndarray, height: int) -> np.ndarray:
    """A uint8 image resized to `height` pixels high, its aspect kept, as RGB."""
    size = (max(1, round(image.shape[1] * height / image.shape[0])), height)
    return np.asarray(Image.fromarray(as_rgb(image)).resize(size, Image.Resampling.LANCZOS))


SANITY_TILE = 160  # px, the height of a map in the sanity-check figure


def sanity_figure(rows: dict[str, list[np.ndarray]], cascade, title: str) -> np.ndarray:
    """One row per method: its map over the image, then the maps of the model copies whose
    layers are re-initialised down to each of `cascade.labels`, each with its Spearman
    correlation and SSIM to the first (a techniques.trust.Cascade of one item)."""
    tiles, captions = [], []
    for method, overlays in rows.items():
        tiles += [at_height(tile, SANITY_TILE) for tile in overlays]
        pairs = zip(cascade.spearman[method], cascade.ssim[method], strict=True)
        captions += [method] + [f"rank {rho:+.2f} · SSIM {same:.2f}" for rho, same in pairs]
    columns = len(cascade.labels) + 1
    body = grid(tiles, captions, columns=columns)
    title += " · re-initialised from the top down to the layer named (rank: Spearman)"
    heads = ["trained model", *cascade.labels]
    return np.concatenate([column_heads(heads, tiles[0].shape[1], body.shape[1], title), body])
