"""How well a heatmap agrees with ground truth (an object's region) and with another heatmap.

Against a region: the energy inside it, the share of the map's heat that falls in the region
(the pointing game is `metrics.pointing_game`). Against an earlier run's map of the same image,
method and class: the Pearson correlation and the IoU of the two maps' hottest 20 % of pixels.
Maps of different sizes are compared at the larger size (bilinear).
"""

import numpy as np

from cnnviz_cli.techniques.metrics import upsample

TOP_FRACTION = 0.2  # the hottest share of pixels whose overlap `top_region_iou` measures


def region_energy(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's positive heat, upsampled to the masks' size, inside its mask.

    `maps` (n, h, w), `masks` (n, height, width) booleans; 0 for a map without heat.
    """
    heat = np.maximum(upsample(maps, masks.shape[1:]), 0.0).reshape(len(maps), -1)
    inside = np.where(masks.reshape(len(masks), -1), heat, 0.0).sum(axis=1)
    total = heat.sum(axis=1)
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def same_size(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two (h, w) maps at the larger height and width of the two (bilinear)."""
    size = (max(first.shape[0], second.shape[0]), max(first.shape[1], second.shape[1]))
    first, second = (
        heat if heat.shape == size else upsample(heat[None], size)[0] for heat in (first, second)
    )
    return first, second


def correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation of two maps (a constant map: 1 if the other is constant too, else 0)."""
    first, second = (np.asarray(heat, np.float64).ravel() for heat in same_size(first, second))
    constant = [np.ptp(first) == 0, np.ptp(second) == 0]
    if any(constant):
        return float(all(constant))
    return float(np.corrcoef(first, second)[0, 1])


def top_region(heat: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """The hottest `fraction` of a map's pixels (at least one; ties go to the earlier pixel in
    row-major order) as a boolean map of the same shape."""
    count = max(1, round(fraction * heat.size))
    region = np.zeros(heat.size, bool)
    region[np.argsort(-heat.ravel(), kind="stable")[:count]] = True
    return region.reshape(heat.shape)


def top_region_iou(first: np.ndarray, second: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """Intersection over union of the two maps' hottest `fraction` of pixels."""
    first, second = (top_region(heat, fraction) for heat in same_size(first, second))
    return float((first & second).sum() / (first | second).sum())
