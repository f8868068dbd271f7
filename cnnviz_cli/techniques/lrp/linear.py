"""Convolution and dense layers as `Linear` maps of the canonised graph, and a
BatchNormalization folded into the one before it."""

from dataclasses import dataclass, replace

import keras
import tensorflow as tf

from cnnviz_cli.techniques.lrp.rules import Linear

L = keras.layers


def _with_bias(outputs: tf.Tensor, bias: tf.Tensor | None, axis: int) -> tf.Tensor:
    if bias is None:
        return outputs
    shape = [1] * len(outputs.shape)
    shape[axis] = -1
    return outputs + tf.reshape(bias, shape)


def _weight(variable) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(variable), tf.float32)


def stages(layer) -> list[tuple[Linear, int]]:
    """A convolution or dense layer as linear maps applied in turn, each with how many of its
    kernel's last axes index the output channels (for folding a BatchNormalization)."""
    axis = 1 if getattr(layer, "data_format", None) == "channels_first" else -1
    bias = _weight(layer.bias) if getattr(layer, "use_bias", False) else None
    geometry = {}
    if not isinstance(layer, L.Dense):
        geometry = {"strides": layer.strides, "padding": layer.padding,
                    "dilation_rate": layer.dilation_rate, "data_format": layer.data_format}

    def depthwise(inputs, kernel, bias):
        return _with_bias(keras.ops.depthwise_conv(inputs[0], kernel, **geometry), bias, axis)

    if isinstance(layer, L.Dense):
        def dense(inputs, kernel, bias):
            return _with_bias(tf.matmul(inputs[0], kernel), bias, -1)

        return [(Linear(layer.name, "dense", dense, _weight(layer.kernel), bias, -1), 1)]
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return [(Linear(layer.name, "conv", depthwise, _weight(layer.kernel), bias), 2)]
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        def pointwise(inputs, kernel, bias):
            outputs = keras.ops.conv(inputs[0], kernel, data_format=layer.data_format)
            return _with_bias(outputs, bias, axis)

        return [(Linear(layer.name, "conv", depthwise, _weight(layer.depthwise_kernel)), 2),
                (Linear(layer.name, "conv", pointwise, _weight(layer.pointwise_kernel), bias,
                        axis), 1)]

    def convolution(inputs, kernel, bias):
        return _with_bias(layer.convolution_op(inputs[0], kernel), bias, axis)

    stacks = isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)) and layer.groups == 1
    return [(Linear(layer.name, "conv", convolution, _weight(layer.kernel), bias,
                    axis if stacks else None), 1)]


@dataclass(frozen=True)
class Produced:
    """How a linear layer's output (before its activation) was made, to fold a following
    BatchNormalization into it."""

    layer: Linear
    output_axes: int  # kernel axes indexing the output channels
    channel_axis: int
    inputs: list
    facts: list
    first: bool


def folded(produced: Produced, norm) -> Linear:
    """The linear layer followed by the BatchNormalization `norm` as one linear layer."""
    scale = tf.math.rsqrt(_weight(norm.moving_variance) + norm.epsilon)
    if norm.scale:
        scale *= _weight(norm.gamma)
    shift = -_weight(norm.moving_mean) * scale
    if norm.center:
        shift += _weight(norm.beta)
    layer = produced.layer
    kernel = layer.kernel * tf.reshape(scale, tf.shape(layer.kernel)[-produced.output_axes:])
    bias = shift if layer.bias is None else layer.bias * scale + shift
    return replace(layer, kernel=kernel, bias=bias)
