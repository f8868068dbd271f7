"""Ops on images: convolutions, pooling, normalisation and resizing, as Keras layers where
Keras has one (so `filters` sees the kernels and the layer machinery works unchanged)."""

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.models.onnx.registry import op
from cnnviz_cli.models.onnx.values import NeedsSize, Unsupported, Value

LOWEST = -3.4e38  # pads max pooling without infinities (their gradient would be NaN)


def _window(node, kernel: tuple, value: Value) -> tuple[tuple, tuple, list | None]:
    """(strides, dilations, pads as [top, left, bottom, right]) of a conv or pool node; pads
    None for auto_pad SAME_UPPER, which is Keras' padding="same" at any input size."""
    attributes = node.attributes
    if len(kernel) != 2:
        raise Unsupported(f"{node.op_type} over {len(kernel)} spatial axes")
    strides = tuple(attributes.get("strides", (1, 1)))
    dilations = tuple(attributes.get("dilations", (1, 1)))
    pads = list(attributes.get("pads", (0, 0, 0, 0)))
    auto = attributes.get("auto_pad", "NOTSET")
    if auto == "SAME_UPPER" and not attributes.get("ceil_mode", 0):
        return strides, dilations, None
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        sizes = value.shape()[2:]
        if None in sizes:
            raise NeedsSize
        totals = [max((-(-size // stride) - 1) * stride + (k - 1) * d + 1 - size, 0)
                  for size, stride, k, d in zip(sizes, strides, kernel, dilations, strict=True)]
        early = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in totals]
        pads = early + [t - e for t, e in zip(totals, early, strict=True)]
    if node.attributes.get("ceil_mode", 0):
        sizes = value.shape()[2:]
        if None in sizes:
            raise NeedsSize
        for axis in range(2):
            span = sizes[axis] + pads[axis] + pads[axis + 2] - ((kernel[axis] - 1)
                                                                * dilations[axis] + 1)
            extra = -span % strides[axis]
            if extra and (span + extra) // strides[axis] * strides[axis] < sizes[axis] + pads[axis]:
                pads[axis + 2] += extra
    return strides, dilations, pads


def _same(pads: list | None, kernel: tuple, strides: tuple, dilations: tuple) -> bool:
    """True when Keras' padding="same" is the same as `pads` (stride 1: centred windows)."""
    if pads is None:
        return True
    totals = [(k - 1) * d for k, d in zip(kernel, dilations, strict=True)]
    return strides == (1, 1) and pads == [t // 2 for t in totals] + [t - t // 2 for t in totals]


def _padded(builder, node, tensor, pads: list, fill: float = 0.0):
    if not any(pads):
        return tensor
    widths = [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]]
    if fill == 0.0:
        layer = keras.layers.ZeroPadding2D(widths[1:3], name=builder.names(node.name, "_pad"))
        return layer(tensor)
    output, = builder.apply(lambda x: tf.pad(x, widths, constant_values=fill), [tensor],
                            node.name + "_pad", "Pad")
    return output


@op("Conv")
def conv(builder, node):
    value = node.inputs[0]
    kernel, bias = node.constant(1, "kernel"), node.constant(2, "bias")
    size = tuple(kernel.shape[2:])
    strides, dilations, pads = _window(node, size, value)
    group = node.attributes.get("group", 1)
    outputs, channels = kernel.shape[0], kernel.shape[1] * group
    padding = "same" if _same(pads, size, strides, dilations) else "valid"
    tensor = builder.nhwc(value)
    if padding == "valid":
        tensor = _padded(builder, node, tensor, pads)
    common = {"strides": strides, "padding": padding, "dilation_rate": dilations,
              "use_bias": bias is not None, "name": builder.names(node.name)}
    if group == channels and group > 1:
        multiplier = outputs // channels
        layer = keras.layers.DepthwiseConv2D(size, depth_multiplier=multiplier, **common)
        weights = [kernel.reshape(channels, multiplier, *size).transpose(2, 3, 0, 1)]
    else:
        layer = keras.layers.Conv2D(outputs, size, groups=group, **common)
        weights = [kernel.transpose(2, 3, 1, 0)]
    weights += [] if bias is None else [bias]
    return [Value(builder.layer(layer, tensor, weights), "nhwc")]


@op("ConvTranspose")
def conv_transpose(builder, node):
    value = node.inputs[0]
    kernel, bias = node.constant(1, "kernel"), node.constant(2, "bias")
    size = tuple(kernel.shape[2:])
    attributes = node.attributes
    if attributes.get("group", 1) != 1 or "output_shape" in attributes or attributes.get(
            "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise Unsupported("ConvTranspose with group, output_shape or auto_pad")
    strides, dilations, pads = _window(node, size, value)
    extra = tuple(attributes.get("output_padding", (0, 0)))
    layer = keras.layers.Conv2DTranspose(
        kernel.shape[1], size, strides=strides, dilation_rate=dilations,
        output_padding=extra if any(extra) else None, use_bias=bias is not None,
        name=builder.names(node.name, "_full" if any(pads) else ""))
    weights = [kernel.transpose(2, 3, 1, 0)] + ([] if bias is None else [bias])
    output = builder.layer(layer, builder.nhwc(value), weights)
    if any(pads):
        output = keras.layers.Cropping2D(((pads[0], pads[2]), (pads[1], pads[3])),
                                         name=builder.names(node.name))(output)
    return [Value(output, "nhwc")]


@op("MaxPool", "AveragePool")
def pool(builder, node):
    value = node.inputs[0]
    size = tuple(node.attributes["kernel_shape"])
    strides, dilations, pads = _window(node, size, value)
    if dilations != (1, 1) or node.outputs > 1:
        raise Unsupported(f"{node.op_type} with dilations or indices")
    tensor = builder.nhwc(value)
    if pads is None or node.op_type == "MaxPool" or not any(pads):
        padding = "same" if pads is None else "valid"
        if pads is not None:
            tensor = _padded(builder, node, tensor, pads,
                             LOWEST if node.op_type == "MaxPool" else 0)
        kind = keras.layers.MaxPooling2D if node.op_type == "MaxPool" \
            else keras.layers.AveragePooling2D
        layer = kind(size, strides, padding=padding, name=builder.names(node.name))
        return [Value(layer(tensor), "nhwc")]
    return [Value(_average_with_pads(builder, node, tensor, size, strides, pads), "nhwc")]


def _average_with_pads(builder, node, tensor, size, strides, pads):
    """Average pooling whose padded cells count (count_include_pad) or not; cells added by
    ceil_mode never count."""
    given = [int(p) for p in node.attributes.get("pads", (0, 0, 0, 0))]
    counted = given if node.attributes.get("count_include_pad", 0) else [0, 0, 0, 0]
    widths = [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]]

    def average(x):
        ones = tf.ones_like(x[..., :1])
        ones = tf.pad(ones, [[0, 0], [counted[0], counted[2]], [counted[1], counted[3]], [0, 0]],
                      constant_values=1.0)
        rest = [[0, 0]] + [[w[0] - c0, w[1] - c1] for w, c0, c1 in
                           ((widths[1], counted[0], counted[2]),
                            (widths[2], counted[1], counted[3]))] + [[0, 0]]
        ones = tf.pad(ones, rest)
        sums = tf.nn.avg_pool2d(tf.pad(x, widths), size, strides, "VALID")
        return sums / tf.nn.avg_pool2d(ones, size, strides, "VALID")

    output, = builder.apply(average, [tensor], node.name, node.op_type)
    return output


@op("GlobalAveragePool", "GlobalMaxPool")
def global_pool(builder, node):
    value = node.inputs[0]
    kind = keras.layers.GlobalAveragePooling2D if node.op_type == "GlobalAveragePool" \
        else keras.layers.GlobalMaxPooling2D
    layer = kind(keepdims=True, name=builder.names(node.name))
    return [Value(layer(builder.nhwc(value)), "nhwc")]


@op("BatchNormalization")
def batch_normalization(builder, node):
    value = node.inputs[0]
    weights = [node.constant(i, "statistic") for i in (1, 2, 3, 4)]
    axis = -1 if value.layout == "nhwc" else 1
    layer = keras.layers.BatchNormalization(axis=axis,
                                            epsilon=node.attributes.get("epsilon", 1e-5),
                                            name=builder.names(node.name))
    return [Value(builder.layer(layer, value.data, weights), value.layout)]


@op("InstanceNormalization", "LayerNormalization")
def normalization(builder, node):
    value = node.inputs[0]
    scale, bias = node.constant(1, "scale"), node.constant(2, "bias")
    epsilon = node.attributes.get("epsilon", 1e-5)
    if node.op_type == "LayerNormalization":
        axis = node.attributes.get("axis", -1) % value.rank
        if node.outputs > 1:
            raise Unsupported("LayerNormalization with its mean and variance outputs")
        if axis == value.rank - 1 and value.layout == "plain" and not value.constant:
            layer = keras.layers.LayerNormalization(axis=-1, epsilon=epsilon,
                                                    name=builder.names(node.name))
            weights = [np.broadcast_to(scale, value.data.shape[-1:]),
                       np.zeros(value.data.shape[-1:]) if bias is None
                       else np.broadcast_to(bias, value.data.shape[-1:])]
            return [Value(builder.layer(layer, value.data, weights))]
        axes, tensor, layout = list(range(axis, value.rank)), builder.plain(value), "plain"
        shaped = (scale, bias)
    else:
        tensor, layout = (value.data, value.layout)
        axes = [1, 2] if layout == "nhwc" else list(range(2, value.rank))
        channel_shape = (-1,) if layout == "nhwc" else (-1,) + (1,) * (value.rank - 2)
        shaped = (scale.reshape(channel_shape), bias.reshape(channel_shape))

    def normalise(x):
        mean, variance = tf.nn.moments(x, axes, keepdims=True)
        result = (x - mean) * tf.math.rsqrt(variance + epsilon) * shaped[0]
        return result if shaped[1] is None else result + shaped[1]

    output, = builder.apply(normalise, [tensor], node.name, node.op_type)
    return [Value(output, layout)]


@op("Resize", "Upsample")
def resize(builder, node):
    value = node.inputs[0]
    attributes = node.attributes
    mode = attributes.get("mode", "nearest")
    transform = attributes.get("coordinate_transformation_mode",
                               "half_pixel" if node.opset >= 11 else "asymmetric")
    nearest = attributes.get("nearest_mode", "round_prefer_floor" if node.opset >= 11
                             else "floor")
    if node.op_type == "Upsample" or node.opset < 11:
        scales, sizes = (attributes["scales"] if "scales" in attributes
                         else node.constant(1, "scales")), None
    else:
        scales, sizes = node.constant(2, "scales"), node.constant(3, "sizes")
        if scales is not None and scales.size == 0:
            scales = None
    if attributes.get("axes") is not None or attributes.get("antialias", 0):
        raise Unsupported("Resize with axes or antialias")
    if sizes is not None and len(sizes):
        sizes = [int(s) for s in sizes]
        current = value.shape()
        if sizes[1] != current[1]:
            raise Unsupported("Resize of the batch or channel axis")
        fixed, factors = sizes[2:], None
        upscale = all(s >= c for s, c in zip(sizes[2:], current[2:], strict=True)
                      if c is not None)
    else:
        scales = [float(s) for s in scales]
        if scales[:2] != [1.0, 1.0]:
            raise Unsupported("Resize of the batch or channel axis")
        fixed, factors = None, scales[2:]
        upscale = min(scales[2:]) >= 1
    function = _resizer(mode, transform, nearest, upscale)

    def resized(x):
        size = tf.constant(fixed, tf.int32) if fixed else tf.cast(
            tf.floor(tf.cast(tf.shape(x)[1:3], tf.float32) * factors), tf.int32)
        return function(x, size)

    output, = builder.apply(resized, [builder.nhwc(value)], node.name, node.op_type)
    return [Value(output, "nhwc")]


def _resizer(mode: str, transform: str, nearest: str, upscale: bool):
    """A TensorFlow resize of an NHWC tensor that computes what ONNX's Resize does."""
    corners = transform == "align_corners"
    half = transform in ("half_pixel", "pytorch_half_pixel")
    if mode == "linear" and (corners or half or transform == "asymmetric"):
        return lambda x, size: tf.raw_ops.ResizeBilinear(
            images=x, size=size, align_corners=corners, half_pixel_centers=half)
    if mode == "nearest" and (transform == "asymmetric" and nearest == "floor"
                              or half and upscale and nearest.startswith("round_prefer")):
        return lambda x, size: tf.raw_ops.ResizeNearestNeighbor(
            images=x, size=size, align_corners=False, half_pixel_centers=half)
    raise Unsupported(f"Resize with mode {mode}, {transform} coordinates and nearest mode "
                      f"{nearest}")
