"""Deconvnet and guided backpropagation: input gradients through ReLUs with a changed backward rule.

The model is rebuilt (never modified) with every ReLU (Conv2D/Dense `activation="relu"`, `ReLU`
and `Activation("relu")` layers) replaced by a `tf.custom_gradient` ReLU whose backward pass
follows the chosen rule; everything else backpropagates as usual (max pooling routes through
its switches, convolutions through their transposed filters).
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.models.extract import WithoutActivation, build_extractor


def _guided(forward_input: tf.Tensor, upstream: tf.Tensor) -> tf.Tensor:
    """Springenberg et al.: pass the gradient where both the input and the gradient are positive."""
    keep = tf.logical_and(forward_input > 0, upstream > 0)
    return tf.where(keep, upstream, tf.zeros_like(upstream))


def _deconvnet(forward_input: tf.Tensor, upstream: tf.Tensor) -> tf.Tensor:
    """Zeiler & Fergus: rectify the signal coming down, whatever the forward input was."""
    del forward_input
    return tf.nn.relu(upstream)


BACKWARD_RULES: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "guided": _guided,
    "deconvnet": _deconvnet,
}


def _rule_relu(rule: str) -> Callable[[tf.Tensor], tf.Tensor]:
    backward_rule = BACKWARD_RULES[rule]

    @tf.custom_gradient
    def relu(inputs):
        return tf.nn.relu(inputs), lambda upstream: backward_rule(inputs, upstream)

    return relu


class RuleReLU(keras.layers.Layer):
    """A layer's linear part (when given) followed by a ReLU whose backward pass follows `rule`."""

    def __init__(self, rule: str, layer: keras.layers.Layer | None = None, **kwargs):
        super().__init__(**kwargs)
        self._relu = _rule_relu(rule)
        self._linear = None if layer is None else WithoutActivation(layer)

    def call(self, inputs, **_):
        if self._linear is not None:
            inputs = type(self._linear.layer).call(self._linear, inputs)
        return self._relu(inputs)


def _is_relu(function) -> bool:
    return getattr(function, "__name__", "") == "relu"


def _stand_in(layer: keras.layers.Layer, rule: str) -> RuleReLU | None:
    """The replacement for a layer that applies a plain ReLU, or None for any other layer."""
    if isinstance(layer, keras.layers.ReLU):
        plain = layer.max_value is None and not layer.negative_slope and not layer.threshold
        return RuleReLU(rule) if plain else None
    if isinstance(layer, keras.layers.Activation):
        return RuleReLU(rule) if _is_relu(layer.activation) else None
    if isinstance(layer, keras.Model) or not _is_relu(getattr(layer, "activation", None)):
        return None
    return RuleReLU(rule, layer)


def rule_model(model: keras.Model, rule: str, layer_paths: list[str]) -> keras.Model:
    """`model` rebuilt with rule ReLUs, mapping input to `[*feature maps, *logits]`."""
    return build_extractor(
        model, layer_paths, logits=True, replace=lambda layer: _stand_in(layer, rule)
    )


def class_gradients(
    model: keras.Model, inputs: tf.Tensor, selection: tuple, head, rule: str = "guided",
    output_index: int = 0,
) -> tf.Tensor:
    """Input gradients of each item's score (`head.score` of the (classes, regions)
    `selection`) through the rule ReLUs (compiled, cached)."""
    return _class_gradient_function(model, head, rule, output_index)(inputs, *selection)


@functools.lru_cache(maxsize=4)
def _class_gradient_function(model: keras.Model, head, rule: str, output_index: int) -> Callable:
    network = rule_model(model, rule, [])

    @tf.function(reduce_retracing=True)
    def gradients(inputs, classes, regions):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = tf.nest.flatten(network(inputs, training=False))[output_index]
            scores = head.score(outputs, classes, regions)
        return tape.gradient(scores, inputs)

    return gradients


@dataclass
class Projections:
    """Activations of one layer projected into pixel space, `count` channels per image."""

    layer_path: str
    rule: str
    channels: np.ndarray  # (batch, count) the channel of each projection
    positions: np.ndarray  # (batch, count, 2) (row, column) of its strongest activation
    activations: np.ndarray  # (batch, count) the value of that activation
    images: np.ndarray  # (batch, count, height, width, channels) the projections


class Projector:
    """Compiled deconvnet / guided-backprop projections of the strongest activations of a layer.

    With `extent="unit"` each projected activation is one unit, the channel's strongest
    position: all other units of the layer are set to zero, as in Zeiler & Fergus, and the signal
    goes down to the pixels. With `extent="map"` the channel's whole feature map is projected.
    Inputs are raw pixel batches in [0, 255]; `preprocess` (TF ops) turns them into the model's
    input inside the compiled pass, so projections live in RGB pixel space.
    """

    def __init__(self, model: keras.Model, layer_path: str, rule: str, input_shape: tuple,
                 preprocess: Callable = tf.identity, extent: str = "unit"):
        self.layer_path, self.rule = layer_path, rule
        network = rule_model(model, rule, [layer_path])
        self.num_channels = int(network.outputs[0].shape[-1])
        images = tf.TensorSpec((None, *input_shape), tf.float32)

        @tf.function(input_signature=[images, tf.TensorSpec((), tf.int32)])
        def strongest(pixels, count):
            maps = network(preprocess(pixels), training=False)[0]
            return tf.math.top_k(tf.reduce_max(maps, axis=[1, 2]), count).indices

        @tf.function(input_signature=[images, tf.TensorSpec((None, None), tf.int32)])
        def project(pixels, channels):
            tiled = tf.repeat(pixels, tf.shape(channels)[1], axis=0)
            with tf.GradientTape() as tape:
                tape.watch(tiled)
                maps = network(preprocess(tiled), training=False)[0]
                chosen = tf.gather(maps, tf.reshape(channels, [-1]), axis=3, batch_dims=1)
                units = tf.reshape(chosen, [tf.shape(chosen)[0], -1])
                peaks = tf.argmax(units, axis=1, output_type=tf.int32)
                values = tf.gather(units, peaks, axis=1, batch_dims=1)
                projected = values if extent == "unit" else tf.reduce_sum(units, axis=1)
            gradients = tape.gradient(projected, tiled)
            width = tf.shape(chosen)[2]
            return gradients, tf.stack([peaks // width, peaks % width], axis=-1), values

        self._strongest, self._project = strongest, project

    def __call__(self, pixels: np.ndarray, count: int = 8,
                 channels: list[int] | None = None) -> Projections:
        """Project `channels` (default: the `count` strongest per image) of a pixel batch."""
        pixels = tf.convert_to_tensor(pixels, tf.float32)
        if channels is None:
            chosen = self._strongest(pixels, min(count, self.num_channels))
        else:
            chosen = tf.tile(tf.constant([channels], tf.int32), [pixels.shape[0], 1])
        gradients, positions, values = self._project(pixels, chosen)
        batch, count = chosen.shape
        return Projections(
            self.layer_path,
            self.rule,
            chosen.numpy(),
            positions.numpy().reshape(batch, count, 2),
            values.numpy().reshape(batch, count),
            gradients.numpy().reshape(batch, count, *pixels.shape[1:]),
        )
