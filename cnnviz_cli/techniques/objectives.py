"""What a synthesised image maximises at a layer: a channel, one neuron or a direction, minus
an optional diversity penalty (lucid's objectives, as small functions of the feature maps).

A unit score maps feature maps (batch, height, width, channels) and per-item targets to one
score per item; `layer_objective` turns one into an `optim.Objective` on images in [0, 1].
"""

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.extract import build_extractor, functional
from cnnviz_cli.techniques.targets import filter_scores

UnitScore = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def channel_score(maps: tf.Tensor, filters: tf.Tensor) -> tf.Tensor:
    """The mean activation of each item's channel."""
    return filter_scores(maps, filters)


def neuron_score(row: int, column: int) -> UnitScore:
    """The activation of each item's channel at one position of the feature map."""
    def score(maps: tf.Tensor, filters: tf.Tensor) -> tf.Tensor:
        return tf.gather(maps[:, row, column, :], tf.cast(filters, tf.int32), axis=1,
                         batch_dims=1)

    return score


def direction_score(direction: np.ndarray) -> UnitScore:
    """The mean over positions of the activation vector's dot product with `direction`."""
    vector = tf.constant(np.asarray(direction, np.float32))

    def score(maps: tf.Tensor, _targets: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(tf.tensordot(maps, vector, axes=[[3], [0]]), axis=[1, 2])

    return score


def check_direction(direction: np.ndarray, channels: int, layer_path: str) -> np.ndarray:
    """A direction as a float32 (channels,) vector, or one error sentence."""
    direction = np.asarray(direction, np.float32).reshape(-1)
    if len(direction) != channels or not np.all(np.isfinite(direction)):
        raise CnnvizError(f"The direction must be a finite vector of {channels} values, one per "
                          f"channel of {layer_path}, but had {len(direction)}.")
    return direction


def gram_similarity(maps: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Per item, the mean cosine similarity of its Gram matrix with those of the other items
    of the same target (0 when it has none): lucid's diversity term."""
    flat = tf.reshape(maps, (tf.shape(maps)[0], -1, maps.shape[-1]))
    grams = tf.reshape(tf.matmul(flat, flat, transpose_a=True), (tf.shape(maps)[0], -1))
    grams = tf.math.l2_normalize(grams, axis=1)
    same = tf.cast(tf.equal(targets[:, None], targets[None, :]), maps.dtype)
    others = same - tf.eye(tf.shape(maps)[0], dtype=maps.dtype)
    similarity = tf.matmul(grams, grams, transpose_b=True) * others
    return tf.reduce_sum(similarity, axis=1) / tf.maximum(tf.reduce_sum(others, axis=1), 1.0)


def layer_features(model: keras.Model, layer_path: str) -> keras.Model:
    """A model from the inputs to one layer's feature maps."""
    extractor = build_extractor(model, [layer_path])
    return functional(extractor.inputs, extractor.outputs[0])


def layer_objective(features: keras.Model, preprocess, unit_score: UnitScore,
                    diversity: float = 0.0):
    """images in [0, 1], targets -> unit score at the layer, minus `diversity` times the
    Gram similarity of items with the same target."""
    def objective(images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        maps = features(preprocess(images * 255.0), training=False)
        score = unit_score(maps, targets)
        if diversity:
            score -= diversity * gram_similarity(maps, targets)
        return score

    return objective


def feature_size(model: keras.Model, layer_path: str, image_shape: tuple) -> tuple[int, int]:
    """The (height, width) of a layer's feature map for images of `image_shape`."""
    maps = layer_features(model, layer_path)(np.zeros((1, *image_shape), np.float32))
    return int(maps.shape[1]), int(maps.shape[2])
