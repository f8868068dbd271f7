"""Ops that move data around: shapes, reshapes, transposes, joins, slices and padding.

Ops that change the rank work in file order; a computed 4-D result is stored channels-last.
"""

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.models.onnx.registry import op
from cnnviz_cli.models.onnx.values import (
    BATCH,
    TO_NHWC,
    NeedsSize,
    Unsupported,
    Value,
    has_batch,
    runtime_shape,
)


def file_order_op(builder, node, function, inputs: list) -> list[Value]:
    """`function` on file-order `inputs`; its computed output stored channels-last when it is
    an image (`Builder.images`)."""
    if all(isinstance(item, np.ndarray) for item in inputs):
        return [Value(output) for output in builder.apply(function, inputs, node.name,
                                                          node.op_type)]
    image = node.name in builder.images

    def call(*tensors):
        result = function(*tensors)
        return tf.transpose(result, TO_NHWC) if image and result.shape.rank == 4 else result

    output, = builder.apply(call, inputs, node.name, node.op_type)
    return [Value(output, "nhwc" if image and len(output.shape) == 4 else "plain")]


def reshaped(builder, node, value: Value, shape) -> list[Value]:
    """`value` reshaped to the folded ONNX shape `shape`."""
    if value.constant:
        return [Value(value.data.reshape(shape))]
    source_shape = value.shape()
    if any(side is None for side in (*shape, *source_shape)):
        raise NeedsSize
    if has_batch(shape) and not has_batch(source_shape):
        raise Unsupported("a Reshape to the batch size of a tensor without one")
    shape = list(shape)
    if -1 in shape:  # known now, so the model's shapes are static
        shape[shape.index(-1)] = int(np.prod(source_shape)) // int(np.prod(
            [side for side in shape if side != -1]))
    return file_order_op(builder, node, lambda x: tf.reshape(
        x, runtime_shape(shape, x, source_shape)), [builder.plain(value)])


@op("Shape")
def shape(builder, node):
    dims = node.inputs[0].shape()
    dims = dims[node.attributes.get("start", 0):node.attributes.get("end", len(dims))]
    if any(side is None for side in dims):
        raise NeedsSize
    return [Value(np.array(dims, np.int64))]


@op("Reshape")
def reshape(builder, node):
    value = node.inputs[0]
    target = np.array(node.constant(1, "shape") if node.opset >= 5
                      else node.attributes["shape"], np.int64)
    source = value.shape()
    if not node.attributes.get("allowzero", 0):
        target = [source[i] if side == 0 else side for i, side in enumerate(target.tolist())]
    target = list(target)
    if builder.fixed_batch and target and target[0] == builder.fixed_batch \
            and source[0] == BATCH:
        target[0] = BATCH  # a file traced at a fixed batch size writes it as a number
    return reshaped(builder, node, value, target)


@op("Flatten")
def flatten(builder, node):
    value = node.inputs[0]
    axis = node.attributes.get("axis", 1) % max(value.rank, 1)
    source = value.shape()
    if axis == 1 and not value.constant and source[0] == BATCH:
        layer = keras.layers.Flatten(name=builder.names(node.name))
        pooled = value.layout == "nhwc" and tuple(value.data.shape[1:3]) == (1, 1)
        return [Value(layer(value.data if pooled else builder.plain(value)))]
    outer, inner = source[:axis], source[axis:]
    if None in source:
        raise NeedsSize
    return reshaped(builder, node, value, [int(np.prod(outer)), int(np.prod(inner))])


@op("Squeeze", "Unsqueeze")
def squeeze(builder, node):
    value = node.inputs[0]
    axes = node.constant(1, "axes") if node.opset >= 13 else node.attributes.get("axes")
    dims = list(value.shape())
    if node.op_type == "Squeeze":
        chosen = ({int(a) % len(dims) for a in axes} if axes is not None and len(axes)
                  else {i for i, side in enumerate(dims) if side == 1})
        dims = [side for i, side in enumerate(dims) if i not in chosen]
    else:
        rank = len(dims) + len(axes)
        for axis in sorted(int(a) % rank for a in axes):
            dims.insert(axis, 1)
    return reshaped(builder, node, value, dims)


@op("Transpose")
def transpose(builder, node):
    value = node.inputs[0]
    perm = list(node.attributes.get("perm", range(value.rank)[::-1]))
    stored = [value.axis(axis) for axis in range(value.rank)]  # file axis -> stored position
    choices = ["plain", "nhwc"] if value.rank == 4 else ["plain"]
    orders = {layout: [stored[perm[i]] for i in (TO_NHWC if layout == "nhwc"
                                                  else range(value.rank))]
              for layout in choices}
    for layout, order in orders.items():
        if order == sorted(order):
            return [Value(value.data, layout)]  # the stored tensor is the result already
    layout = "nhwc" if value.rank == 4 and node.name in builder.images else "plain"
    output, = builder.apply(lambda x: tf.transpose(x, orders[layout]), [value.data], node.name,
                            node.op_type)
    return [Value(output, "plain" if value.constant else layout)]


@op("Concat")
def concat(builder, node):
    values = node.inputs
    if all(value.constant for value in values):
        return [Value(np.concatenate([value.data for value in values],
                                     node.attributes["axis"]))]
    tensors, layout = builder.aligned(values)
    rank = max(value.rank for value in values)
    axis = node.attributes["axis"] % rank
    axis = (0, 3, 1, 2)[axis] if layout == "nhwc" else axis
    if not any(isinstance(tensor, np.ndarray) for tensor in tensors):
        layer = keras.layers.Concatenate(axis=axis, name=builder.names(node.name))
        return [Value(layer(tensors), layout)]
    output, = builder.apply(lambda *items: tf.concat(items, axis), tensors, node.name,
                            node.op_type)
    return [Value(output, layout)]


@op("Split")
def split(builder, node):
    value = node.inputs[0]
    axis = node.attributes.get("axis", 0)
    sizes = node.constant(1, "split") if node.opset >= 13 else node.attributes.get("split")
    side = value.shape()[axis]
    if sizes is None or len(sizes) == 0:
        if side is None:
            raise NeedsSize
        part = -(-side // node.outputs)
        sizes = [min(part, side - part * i) for i in range(node.outputs)]
    stored = value.axis(axis)
    outputs = builder.apply(lambda x: tf.split(x, [int(s) for s in sizes], stored),
                            [value.data], node.name, node.op_type, len(sizes))
    return [Value(output, value.layout) for output in outputs]


INT32 = 2**31 - 1


@op("Slice")
def slice_(builder, node):
    value = node.inputs[0]
    if node.opset < 10:
        starts, ends = node.attributes["starts"], node.attributes["ends"]
        axes, steps = node.attributes.get("axes"), None
    else:
        starts, ends, axes, steps = (node.constant(i, what) for i, what in
                                     ((1, "start"), (2, "end"), (3, "axes"), (4, "steps")))
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    dims = value.shape()
    index = [slice(None)] * value.rank
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        side = dims[int(axis)]
        bound = side if side is not None and side != BATCH else INT32
        start, end = (int(np.clip(position, -bound - 1, bound)) for position in (start, end))
        index[value.axis(int(axis))] = slice(start, end, int(step))
    output, = builder.apply(lambda x: x[tuple(index)], [value.data], node.name, node.op_type)
    return [Value(output, "plain" if isinstance(output, np.ndarray) else value.layout)]


@op("Gather")
def gather(builder, node):
    value, indices = node.inputs[:2]
    axis = node.attributes.get("axis", 0) % value.rank
    side = value.shape()[axis]
    chosen = indices.data
    if indices.constant and side is not None and side != BATCH:
        chosen = np.where(chosen < 0, chosen + side, chosen)
    return file_order_op(builder, node, lambda x, i: tf.gather(x, i, axis=axis),
                         [builder.plain(value), chosen])


def _batch_reference(builder, shape) -> list:
    """The image input when a folded `shape` holds the batch size, else nothing."""
    return [builder.source] if has_batch(shape) else []


@op("ConstantOfShape")
def constant_of_shape(builder, node):
    dims = node.constant(0, "shape")
    fill = node.attributes.get("value", np.zeros(1, np.float32)).reshape(-1)[0]
    if not has_batch(dims):
        return [Value(np.full([int(side) for side in dims], fill))]
    reference = (BATCH, *builder.source.shape[1:])
    return file_order_op(builder, node, lambda source: tf.fill(
        runtime_shape(dims, source, reference), tf.constant(fill)), [builder.source])


@op("Expand", "Tile")
def expand(builder, node):
    value = node.inputs[0]
    dims = node.constant(1, "shape")
    references = _batch_reference(builder, dims)
    reference = (BATCH, *builder.source.shape[1:])

    def expanded(x, *source):
        size = runtime_shape(dims, source[0], reference) if source else tf.constant(dims)
        if node.op_type == "Tile":
            return tf.tile(x, size)
        return x * tf.ones(size, x.dtype)

    inputs = [value.data if value.constant else builder.plain(value), *references]
    return file_order_op(builder, node, expanded, inputs)


PAD_MODES = {"constant": "CONSTANT", "reflect": "REFLECT", "edge": "SYMMETRIC"}


@op("Pad")
def pad(builder, node):
    value = node.inputs[0]
    mode = node.attributes.get("mode", "constant")
    if node.opset < 11:
        pads, fill = node.attributes["pads"], node.attributes.get("value", 0.0)
        axes = None
    else:
        pads, fill, axes = (node.constant(i, what) for i, what in
                            ((1, "pads"), (2, "value"), (3, "axes")))
        fill = 0 if fill is None else fill.reshape(-1)[0] if np.size(fill) else 0
    axes = range(value.rank) if axes is None else [int(a) % value.rank for a in axes]
    pads = [int(p) for p in pads]
    if min(pads) < 0 or mode not in PAD_MODES or (mode == "edge" and max(pads) > 1):
        raise Unsupported(f"Pad with mode {mode} and pads {pads}")
    widths = [[0, 0] for _ in range(value.rank)]
    for i, axis in enumerate(axes):
        widths[value.axis(axis)] = [pads[i], pads[i + len(axes)]]
    spatial = value.layout == "nhwc" and widths[0] == widths[3] == [0, 0]
    if spatial and mode == "constant" and float(fill) == 0:  # a pass-through layer to Keras
        layer = keras.layers.ZeroPadding2D(widths[1:3], name=builder.names(node.name))
        return [Value(layer(value.data), "nhwc")]
    output, = builder.apply(lambda x: tf.pad(x, widths, PAD_MODES[mode],
                                             tf.cast(fill, x.dtype) if mode == "constant" else 0),
                            [value.data], node.name, node.op_type)
    return [Value(output, "plain" if isinstance(output, np.ndarray) else value.layout)]


@op("DepthToSpace")
def depth_to_space(builder, node):
    value, block = node.inputs[0], node.attributes["blocksize"]
    crd = node.attributes.get("mode", "DCR") == "CRD"

    def rearranged(x):
        if not crd:  # TensorFlow's depth_to_space is ONNX's DCR mode
            return tf.nn.depth_to_space(x, block)
        size = tf.shape(x)
        height, width, depth = size[1], size[2], x.shape[-1] // block ** 2
        parts = tf.reshape(x, [-1, height, width, depth, block, block])
        parts = tf.transpose(parts, [0, 1, 4, 2, 5, 3])
        return tf.reshape(parts, [-1, height * block, width * block, depth])

    output, = builder.apply(rearranged, [builder.nhwc(value)], node.name, node.op_type)
    return [Value(output, "nhwc")]
