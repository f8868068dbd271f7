"""How well a heatmap explains a score: deletion / insertion AUC and the pointing game.

Deletion (Petsiuk et al., RISE) removes pixels in order of heat, most heat first, and records the
head's probability of the explained class after every step (`Head.probability`: softmax,
sigmoid per unit, for regression the value explained, for segmentation the mean probability over
the region, which stays the one of the full input); a faithful map makes it fall fast (low AUC).
Insertion adds pixels to an empty input in the same order; a faithful map makes it rise fast
(high AUC). Removed pixels are 0 in the model's input space. All masked copies run in large
batches through `CamExplainer.masked_scores`. Both are declared here as `Metric`s (`--metrics`
computes them together); TensorFlow is imported on first use, so reading them stays cheap.
"""

from dataclasses import dataclass

import numpy as np

from cnnviz_cli.lazy import tf
from cnnviz_cli.techniques.cam import CamBatch, CamExplainer, selection


@dataclass(frozen=True)
class Metric:
    """A number recorded for every heatmap: its name, its `field` in the heatmap records and
    its direction (the gates and tables read them)."""

    name: str
    field: str
    higher_is_better: bool


FAITHFULNESS_METRICS = {metric.name: metric for metric in (
    Metric("deletion", "deletion_auc", False), Metric("insertion", "insertion_auc", True))}


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, h, w) maps to (n, height, width) with bilinear interpolation."""
    resized = tf.image.resize(np.asarray(maps, np.float32)[..., None], size, "bilinear")
    return resized[..., 0].numpy()


def heat_ranks(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The position of every pixel in order of heat (0 = hottest), (n, height, width)."""
    flat = upsample(maps, size).reshape(len(maps), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    return np.argsort(order, axis=1).reshape(len(maps), *size).astype(np.int32)


def _step_masks(ranks, item, copy, copies, size):
    """Copy c <= steps keeps all but the hottest c/steps of the pixels, later copies only them."""
    del size
    steps = copies // 2 - 1
    pixels = tf.shape(ranks)[1] * tf.shape(ranks)[2]
    stage = copy % (steps + 1)
    threshold = tf.cast(tf.round(stage * pixels / steps), tf.int32)  # pixels deleted / inserted
    hot = tf.gather(ranks, item) < threshold[:, None, None]
    inserting = (copy > steps)[:, None, None]
    return tf.cast(hot == inserting, tf.float32)[..., None]


@dataclass
class Faithfulness:
    """Probability curves while pixels are deleted / inserted in order of heat."""

    deletion: np.ndarray  # (items, steps + 1), from the full input to the empty one
    insertion: np.ndarray  # (items, steps + 1), from the empty input to the full one

    @property
    def deletion_auc(self) -> np.ndarray:
        """Area under the deletion curve over the fraction of pixels removed (lower is better)."""
        return np.trapezoid(self.deletion, dx=1.0 / (self.deletion.shape[1] - 1), axis=1)

    @property
    def insertion_auc(self) -> np.ndarray:
        """Area under the insertion curve (higher is better)."""
        return np.trapezoid(self.insertion, dx=1.0 / (self.insertion.shape[1] - 1), axis=1)

    def fields(self, item: int) -> dict[str, float]:
        """The record fields of one item: its FAITHFULNESS_METRICS (the AUCs above)."""
        return {metric.field: float(getattr(self, metric.field)[item])
                for metric in FAITHFULNESS_METRICS.values()}


def deletion_insertion(
    explainer: CamExplainer,
    inputs: np.ndarray,
    classes: np.ndarray,
    maps: np.ndarray,
    steps: int = 32,
    batch_size: int = 32,
    regions: np.ndarray | None = None,
) -> Faithfulness:
    """Deletion and insertion curves of one heatmap per item.

    `inputs` (items, height, width, channels) are model inputs, `classes` (items,) the explained
    classes (`regions` their segmentation regions) and `maps` (items, h, w) the heatmaps,
    upsampled to the input size.
    """
    ranks = heat_ranks(maps, inputs.shape[1:3])
    scores = explainer.masked_scores(
        _step_masks, tf.convert_to_tensor(inputs, tf.float32), selection(classes, regions),
        ranks, 2 * (steps + 1), batch_size, probability=True,
    ).numpy()
    return Faithfulness(scores[:, : steps + 1], scores[:, steps + 1 :])


def faithfulness(
    explainer: CamExplainer, inputs: np.ndarray, cam_batch: CamBatch, steps: int = 32,
    batch_size: int = 32,
) -> dict[str, Faithfulness]:
    """`deletion_insertion` of every method's maps, all methods in one batched run.

    `inputs` are the model inputs of the images that `cam_batch.image_indices` point into.
    """
    methods, count = list(cam_batch.maps), len(cam_batch.classes)
    maps = np.concatenate([upsample(cam_batch.maps[m], inputs.shape[1:3]) for m in methods])
    regions = cam_batch.regions
    curves = deletion_insertion(
        explainer, np.tile(inputs[cam_batch.image_indices], (len(methods), 1, 1, 1)),
        np.tile(cam_batch.classes, len(methods)), maps, steps, batch_size,
        None if regions is None else np.tile(regions, (len(methods), 1, 1)),
    )
    deletion, insertion = (
        curve.reshape(len(methods), count, -1) for curve in (curves.deletion, curves.insertion)
    )
    return {method: Faithfulness(deletion[i], insertion[i]) for i, method in enumerate(methods)}


def pointing_game(maps: np.ndarray, masks: np.ndarray, tolerance: int = 0) -> np.ndarray:
    """Whether each map's maximum, upsampled to the masks' size, falls inside its mask, or
    within `tolerance` pixels of it (Zhang et al. allow 15 px at 224 px); a map without any
    heat points nowhere."""
    heat = upsample(maps, masks.shape[1:]).reshape(len(maps), -1)
    if tolerance:
        masks = _widened(np.asarray(masks, bool), tolerance)
    inside = masks.reshape(len(masks), -1)[np.arange(len(masks)), heat.argmax(axis=1)]
    return np.logical_and(inside, heat.max(axis=1) > 0)


def _widened(masks: np.ndarray, radius: int) -> np.ndarray:
    """(n, h, w) masks grown by every pixel within `radius` pixels."""
    grown = masks.copy()
    padded = np.pad(masks, ((0, 0), (radius, radius), (radius, radius)))
    height, width = masks.shape[1:]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                grown |= padded[:, radius + dy:radius + dy + height,
                                radius + dx:radius + dx + width]
    return grown
