"""Walking an ONNX graph node by node into a Keras functional model (TensorFlow backend).

Nothing in the file runs: its nodes are read as data and each becomes Keras layers through the
op registry (`ops.OPS`). Ops whose inputs are all known while translating (shape arithmetic,
constants) are computed right away, so the model holds only what depends on the image.
"""

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.models.onnx.folding import folded_batch_norms
from cnnviz_cli.models.onnx.values import (
    TO_NCHW,
    TO_NHWC,
    Names,
    NeedsSize,
    OnnxOp,
    Unsupported,
    Value,
)

ONNX_DOMAINS = ("", "ai.onnx")
IMAGE_OPS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
             "GlobalMaxPool", "Resize", "Upsample", "DepthToSpace", "InstanceNormalization"}
# ops whose output is an image exactly when their inputs are
PASSING_OPS = {"Relu", "LeakyRelu", "PRelu", "Elu", "Sigmoid", "HardSigmoid", "HardSwish",
               "Tanh", "Clip", "Erf", "Gelu", "Softplus", "Add", "Sub", "Mul", "Div", "Pow",
               "Sqrt", "Exp", "Reciprocal", "Neg", "Identity", "Dropout", "BatchNormalization",
               "Concat", "Split", "Slice", "Pad", "Where", "Max", "Min", "Abs"}


@dataclass
class Node:
    """One ONNX node as the op functions see it: input values (None where left out), parsed
    attributes, the name its layers take and the opset of the file."""

    op_type: str
    inputs: list
    attributes: dict
    name: str
    outputs: int
    opset: int

    def input(self, index: int) -> Value | None:
        return self.inputs[index] if index < len(self.inputs) else None

    def constant(self, index: int, what: str) -> np.ndarray | None:
        """Input `index` as a NumPy array (None when left out); Unsupported when computed."""
        value = self.input(index)
        if value is None:
            return None
        if not value.constant:
            raise Unsupported(f"{self.op_type} with a computed {what}")
        return value.data


class Builder:
    """What the op functions build with: layouts, folded or generic ops, Keras layers."""

    def __init__(self, source: keras.KerasTensor, fixed_batch: int | None, images: set[str]):
        self.source, self.fixed_batch = source, fixed_batch
        self.images = images  # tensors that are NCHW images, kept channels-last
        self.names = Names()
        self.converted: dict[tuple[int, str], object] = {}

    def plain(self, value: Value):
        """The tensor in file order (a channels-last copy is permuted back)."""
        return value.data if value.layout == "plain" else self._permuted(value, "plain")

    def nhwc(self, value: Value):
        """A 4-D tensor channels-last."""
        if value.rank != 4:
            raise Unsupported(f"a {value.rank}-D input where a 4-D image tensor goes")
        return value.data if value.layout == "nhwc" else self._permuted(value, "nhwc")

    def _permuted(self, value: Value, layout: str):
        key = (id(value.data), layout)
        if key not in self.converted:
            order = TO_NCHW if layout == "plain" else TO_NHWC
            if value.constant:
                self.converted[key] = np.transpose(value.data, order)
            else:
                history = getattr(value.data, "_keras_history", None)
                name = history.operation.name if history else "image"
                suffix = "_nchw" if layout == "plain" else "_nhwc"
                layer = keras.layers.Permute(order[1:], name=self.names(name, suffix))
                self.converted[key] = layer(value.data)
        return self.converted[key]

    def aligned(self, values: list[Value]) -> tuple[list, str]:
        """The tensors of an elementwise op in one layout: channels-last when a computed 4-D
        input is, with lower-rank arrays broadcast as NumPy would; else file order."""
        computed = [value for value in values if not value.constant]
        if computed and all(value.rank == 4 for value in computed) and any(
                value.layout == "nhwc" for value in computed) and all(
                value.rank <= 4 for value in values):
            return [self._broadcast_nhwc(value) for value in values], "nhwc"
        return [self.plain(value) for value in values], "plain"

    def _broadcast_nhwc(self, value: Value):
        if value.constant and value.rank < 4:
            return np.transpose(value.data.reshape((1,) * (4 - value.rank) + value.data.shape),
                                TO_NHWC)
        return self.nhwc(value)

    def apply(self, function: Callable, inputs: list, name: str, op_type: str = "",
              count: int = 1) -> list:
        """`function(*tensors)` on `inputs` (arrays or Keras tensors): computed now into arrays
        when all are arrays, else a generic layer; a list of `count` outputs."""
        if all(isinstance(item, np.ndarray) for item in inputs):
            results = function(*[tf.constant(item) for item in inputs])
            results = results if isinstance(results, list | tuple) else [results]
            return [np.asarray(result) for result in results]
        constants = {i: item for i, item in enumerate(inputs) if isinstance(item, np.ndarray)}

        def call(*tensors):
            given = iter(tensors)
            results = function(*[tf.constant(constants[i]) if i in constants else next(given)
                                 for i in range(len(inputs))])
            return results[0] if count == 1 and isinstance(results, list | tuple) else results

        runtime = [item for item in inputs if not isinstance(item, np.ndarray)]
        outputs = OnnxOp(call, op_type, name=self.names(name))(runtime)
        return list(outputs) if count > 1 else [outputs]

    def layer(self, layer: keras.layers.Layer, tensor, weights: list | None = None):
        """`layer(tensor)` with `weights` set; an array in is computed now into an array."""
        if isinstance(tensor, np.ndarray):
            layer.build(tensor.shape)
        output = None if isinstance(tensor, np.ndarray) else layer(tensor)
        if weights is not None:
            layer.set_weights([np.asarray(weight, np.float32) for weight in weights])
        return np.asarray(layer(tf.constant(tensor))) if output is None else output


def attribute_values(node) -> dict:
    """A node's attributes as Python values (strings decoded, tensors as arrays)."""
    from onnx import helper, numpy_helper

    values = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode()
        elif hasattr(value, "dims") and hasattr(value, "data_type"):
            value = numpy_helper.to_array(value)
        values[attribute.name] = value
    return values


def opset_of(proto) -> int:
    """The version of the default ONNX domain the model imports."""
    return next((entry.version for entry in proto.opset_import if entry.domain in ONNX_DOMAINS),
                1)


def missing_ops(graph, registry: dict) -> Counter:
    """Op types of `graph` the registry does not translate, with their counts."""
    return Counter(node.op_type if node.domain in ONNX_DOMAINS else f"{node.domain}.{node.op_type}"
                   for node in graph.node
                   if node.domain not in ONNX_DOMAINS or node.op_type not in registry)


def image_tensors(graph, channels_first: bool) -> set[str]:
    """Tensor names that are NCHW images: the inputs of image ops (and, in a channels-first
    file, its outputs), and what reaches them through ops that keep the layout, so an op that
    makes a 4-D tensor (Reshape, Transpose) knows whether it makes an image or, say, the
    (batch, heads, tokens, channels) of attention."""
    images = {port.name for port in graph.output} if channels_first else set()
    images |= {node.input[0] for node in graph.node if node.op_type in IMAGE_OPS}
    for node in reversed(graph.node):
        if node.op_type in PASSING_OPS and images.intersection(node.output):
            images.update(node.input)
    return images


def build(proto, image_shape: tuple, channels_first: bool, registry: dict
          ) -> tuple[keras.Model, list[str], int]:
    """The Keras model of ONNX model `proto` for channels-last `image_shape` (height, width,
    channels; None for a free side), the layout of each output ("nhwc": a 4-D NCHW output
    given channels-last) and how many BatchNormalization nodes were folded into Convs."""
    from onnx import numpy_helper

    graph, opset = proto.graph, opset_of(proto)
    values = {init.name: Value(numpy_helper.to_array(init)) for init in graph.initializer}
    source, = [port for port in graph.input if port.name not in values]
    dims = source.type.tensor_type.shape.dim
    fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    inputs = keras.Input(image_shape, name="image")
    builder = Builder(inputs, fixed, image_tensors(graph, channels_first))
    values[source.name] = Value(inputs, "nhwc" if channels_first else "plain")
    nodes = folded_batch_norms(graph, values)
    for node in nodes:
        given = [values[item] if item else None for item in node.input]
        parsed = Node(node.op_type, given, attribute_values(node),
                      next((out for out in node.output if out), node.name), len(node.output),
                      opset)
        outputs = registry[node.op_type](builder, parsed)
        for output_name, value in zip(node.output, outputs, strict=False):
            if output_name:
                values[output_name] = value
    results = [values[port.name] for port in graph.output]
    if any(value.constant for value in results):
        raise Unsupported("an output that does not depend on the image")
    outputs = [value.data for value in results]
    name = re.sub(r"\W+", "_", graph.name).strip("_") or "onnx"
    return (keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=name),
            [value.layout for value in results], len(graph.node) - len(nodes))


__all__ = ["Builder", "NeedsSize", "Node", "Unsupported", "build", "missing_ops", "opset_of"]
