"""Perturbation methods: maps from the scores of changed inputs only, no gradients or layers.

Occlusion (Zeiler & Fergus) slides a patch over the input and records how much the class score
drops while the patch hides each place. RISE (Petsiuk et al.) scores the input under many random
smooth masks and averages the masks weighted by the scores. Both run their changed copies
through `CamExplainer.perturbed_scores` in passes of `batch_size`, so they work for every model
kind, forward-only ones (TFLite, ONNX) included.
"""

from __future__ import annotations

import math

import numpy as np

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.lazy import tf
from cnnviz_cli.options import Option
from cnnviz_cli.techniques.cam import (
    IG_BASELINES,
    CamOptions,
    CamPass,
    interpolation,
    method,
)

RISE_GRID = 8  # cells per side of a RISE mask before upsampling
RISE_KEEP = 0.5  # probability that a cell is kept


def _mean_fill(inputs: tf.Tensor, options: CamOptions) -> tf.Tensor:
    """Every pixel replaced by the item's mean value of its channel."""
    del options
    return tf.broadcast_to(tf.reduce_mean(inputs, axis=[1, 2], keepdims=True), tf.shape(inputs))


FILLS = {"mean": _mean_fill, "black": IG_BASELINES["black"], "blur": IG_BASELINES["blur"]}
PATCH = Option("patch", 16, "Side of the square patch slid over the input, in pixels.", int,
               low=1)
STRIDE = Option("stride", 8, "Pixels between patch positions.", int, low=1)
FILL = Option("fill", "mean", "What hides the patch: the image's mean colour, black, or a blur.",
              tuple(FILLS))
MASKS = Option("masks", 1000, "Random masks scored per image (seeded with --seed).", int, low=1)


def patch_windows(side: int, patch: int, stride: int) -> np.ndarray:
    """(positions, side) 0/1 rows: which pixels each patch position covers along one axis.

    Positions start at 0 and step by `stride`; a last one ends at the edge so every pixel is
    covered.
    """
    starts = list(range(0, side - patch + 1, stride))
    if starts[-1] != side - patch:
        starts.append(side - patch)
    pixels = np.arange(side)
    return np.stack([(pixels >= start) & (pixels < start + patch) for start in starts]).astype(
        np.float32)


def _occluded(inputs, sources, item, copy, copies):
    """Occlusion copies: patch position `copy` (row-major) of the item replaced by its fill."""
    del copies
    fills, rows, columns = sources
    across = tf.shape(columns)[0]
    patch = tf.gather(rows, copy // across)[:, :, None] * tf.gather(columns, copy % across)[:, None]
    items = tf.gather(inputs, item)
    return items + patch[..., None] * (tf.gather(fills, item) - items)


@method("occlusion", needs="forward", options=[PATCH, STRIDE, FILL])
def _occlusion(cam_pass: CamPass) -> tf.Tensor:
    """The drop of the class score while a patch hides each pixel, averaged over the patch
    positions covering it (positive part)."""
    options, inputs = cam_pass.options, cam_pass.inputs
    height, width = inputs.shape[1:3]
    if options.patch > min(height, width):
        raise CnnvizError(f"--patch {options.patch} is larger than the {height}x{width} model "
                          "input; give a smaller --patch.")
    rows, columns = (tf.constant(patch_windows(side, options.patch, options.stride))
                     for side in (height, width))
    sources = (FILLS[options.fill](inputs, options), rows, columns)
    explainer = cam_pass.explainer
    scores = explainer.perturbed_scores(_occluded, inputs, cam_pass.selection, sources,
                                        len(rows) * len(columns), options.batch_size)
    drops = tf.reshape(cam_pass.scores[:, None] - scores, [-1, len(rows), len(columns)])
    total = tf.einsum("nab,ay,bx->nyx", drops, rows, columns)
    return tf.nn.relu(total / tf.einsum("ay,bx->yx", rows, columns))


def _upsampling(cells: int, length: int) -> np.ndarray:
    """(length, cells) bilinear interpolation weights from `cells` values to `length` pixels."""
    return interpolation((np.arange(length) + 0.5) * cells / length - 0.5, cells)


def rise_factors(count: int, size: tuple[int, int], seed: int) -> tuple[np.ndarray, ...]:
    """RISE masks as factors: mask n = rows[n] @ grids[n] @ columns[n].T, (height, width).

    grids (count, 8, 8) keep each cell with probability 1/2; the grid is upsampled bilinearly to
    (8 + 1) cells of ceil(side / 8) pixels and cropped at a random shift of less than one cell,
    so cell borders fall anywhere. The same seed gives the same bytes.
    """
    rng = np.random.default_rng(seed)
    grids = (rng.random((count, RISE_GRID, RISE_GRID)) < RISE_KEEP).astype(np.float32)
    factors = []
    for side in size:
        cell = math.ceil(side / RISE_GRID)
        weights = _upsampling(RISE_GRID, (RISE_GRID + 1) * cell)
        shifts = rng.integers(0, cell, count)
        factors.append(weights[shifts[:, None] + np.arange(side)])
    return factors[0], grids, factors[1]


def _rise_masked(inputs, sources, item, copy, copies):
    """RISE copies: the item times mask `copy`."""
    del copies
    rows, grids, columns = (tf.gather(factor, copy) for factor in sources)
    masks = tf.einsum("nhs,nst,nwt->nhw", rows, grids, columns)
    return tf.gather(inputs, item) * masks[..., None]


@method("rise", needs="forward", options=[MASKS], random=True)
def _rise(cam_pass: CamPass) -> tf.Tensor:
    """The masks weighted by the class scores of the masked inputs, over the masks' mean
    (positive part). The mean score is subtracted first: the part of the map every pixel
    shares carries no information and would hide the rest."""
    options = cam_pass.options
    factors = [tf.constant(factor) for factor in
               rise_factors(options.masks, tuple(cam_pass.inputs.shape[1:3]), options.seed)]
    scores = cam_pass.explainer.perturbed_scores(
        _rise_masked, cam_pass.inputs, cam_pass.selection, tuple(factors), options.masks,
        options.batch_size)
    centred = scores - tf.reduce_mean(scores, axis=1, keepdims=True)
    rows, grids, columns = factors
    heat = tf.einsum("in,nht,nwt->ihw", centred, tf.einsum("nhs,nst->nht", rows, grids), columns)
    return tf.nn.relu(heat / (options.masks * RISE_KEEP))
