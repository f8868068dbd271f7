"""Modifiers the layer methods take, as in pytorch-grad-cam: test-time augmentation
(`aug_smooth`) and the first principal component instead of the channel sum (`eigen_smooth`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cnnviz_cli.lazy import tf
from cnnviz_cli.options import Option
from cnnviz_cli.techniques.cam import CamPass, Compute, interpolation, modifier

ZOOMS = (1.0, 0.9, 1.1)  # aug_smooth's scale changes, each also flipped left-right
AUG_SMOOTH = Option("aug_smooth", False, "Average the maps of the input flipped left-right and "
                    "zoomed by 0.9, 1 and 1.1 about its centre (6 passes), each brought back "
                    "onto the input.", bool)
EIGEN_SMOOTH = Option("eigen_smooth", False, "Combine the weighted activations by their first "
                      "principal component instead of their sum: less noise.", bool)


def oriented(projection: tf.Tensor, flat: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
    """A projection (items, positions) of `flat` (items, positions, k) as maps `shape`
    (items, h, w), its sign chosen to agree with the sum of `flat` over channels (ReLU)."""
    agreement = tf.reduce_sum(projection * tf.reduce_sum(flat, axis=2), axis=1, keepdims=True)
    return tf.nn.relu(tf.reshape(tf.where(agreement < 0.0, -projection, projection), shape))


def first_component(weighted: tf.Tensor) -> tf.Tensor:
    """The weighted activations (items, h, w, k), centred over positions, projected on their
    first principal component (see `oriented`)."""
    shape = tf.shape(weighted)
    flat = tf.reshape(weighted, [shape[0], shape[1] * shape[2], shape[3]])
    centred = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
    _, _, right = tf.linalg.svd(centred)
    return oriented(tf.linalg.matvec(centred, right[:, :, 0]), flat, shape[:3])


def zoom_weights(length: int, scale: float, flip: bool = False) -> np.ndarray:
    """(length, length) weights taking value i from c +- (i - c) / scale, c the centre (-:
    flipped), linearly interpolated, edges repeated."""
    centre = (length - 1) / 2
    return interpolation(centre + (np.arange(length) - centre) / scale * (-1 if flip else 1),
                         length)


def zoomed(images: tf.Tensor, scale: float, flip: bool) -> tf.Tensor:
    """(n, h, w[, c]) images or maps zoomed by `scale` about their centre, flipped left-right
    when `flip`; any resolution."""
    rows, columns = (tf.constant(zoom_weights(length, scale, flip and axis == 1))
                     for axis, length in enumerate(images.shape[1:3]))
    return tf.einsum("yh,nhw...,xw->nyx...", rows, images, columns)


@modifier("aug_smooth", AUG_SMOOTH)
def _aug_smooth(compute: Compute, cam_pass: CamPass) -> tf.Tensor:
    """The mean of the maps of the zoomed and flipped inputs, each zoomed and flipped back."""
    total = 0.0
    for scale in ZOOMS:
        for flip in (False, True):
            changed = cam_pass if (scale, flip) == (1.0, False) else cam_pass.redone(
                zoomed(cam_pass.inputs, scale, flip), zoomed(cam_pass.selection[1], scale, flip))
            total += zoomed(tf.convert_to_tensor(compute(changed)), 1 / scale, flip)
    return total / (2 * len(ZOOMS))


@modifier("eigen_smooth", EIGEN_SMOOTH, takes=lambda spec: spec.weighted)
def _eigen_smooth(compute: Compute, cam_pass: CamPass) -> tf.Tensor:
    """The weighted activations combined by `first_component`."""
    return compute(replace(cam_pass, combine=first_component))
