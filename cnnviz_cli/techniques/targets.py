"""What a score means: one filter of a layer, or a layer's whole activation (a class's score
is the head's, models.heads).

Each function turns model outputs into one scalar per batch item (TensorFlow ops only, so
they run inside compiled gradient steps).
"""

import tensorflow as tf


def filter_scores(feature_maps: tf.Tensor, filter_indices: tf.Tensor) -> tf.Tensor:
    """feature maps (batch, height, width, channels), one channel per item -> mean activation."""
    channels = tf.gather(feature_maps, tf.cast(filter_indices, tf.int32), axis=3, batch_dims=1)
    return tf.reduce_mean(channels, axis=[1, 2])


def layer_scores(feature_maps: tf.Tensor) -> tf.Tensor:
    """The mean of a whole layer's activation per item (DeepDream's classic objective)."""
    return tf.reduce_mean(feature_maps, axis=list(range(1, len(feature_maps.shape))))
