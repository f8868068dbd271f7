"""Elementwise ops, activations, matrix products, softmax and reductions."""

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.models.onnx.registry import op
from cnnviz_cli.models.onnx.values import Unsupported, Value


def _unary(function):
    def translate(builder, node):
        value = node.inputs[0]
        output, = builder.apply(function, [value.data], node.name, node.op_type)
        return [Value(output, value.layout)]

    return translate


def _hard_sigmoid(x, alpha=0.2, beta=0.5):
    return tf.clip_by_value(alpha * x + beta, 0.0, 1.0)


UNARY = {
    "Sqrt": tf.sqrt, "Exp": tf.exp, "Log": tf.math.log, "Neg": tf.negative, "Abs": tf.abs,
    "Reciprocal": tf.math.reciprocal, "Erf": tf.math.erf, "Softplus": tf.nn.softplus,
    "Floor": tf.floor, "Ceil": tf.math.ceil, "Not": tf.logical_not,
    "HardSwish": lambda x: x * _hard_sigmoid(x, 1 / 6, 0.5),
}
for _name, _function in UNARY.items():
    op(_name)(_unary(_function))
KERAS_ACTIVATIONS = {
    "Relu": lambda attributes, name: keras.layers.ReLU(name=name),
    "LeakyRelu": lambda attributes, name: keras.layers.LeakyReLU(
        negative_slope=attributes.get("alpha", 0.01), name=name),
    "Sigmoid": lambda attributes, name: keras.layers.Activation("sigmoid", name=name),
    "Tanh": lambda attributes, name: keras.layers.Activation("tanh", name=name),
}


@op(*KERAS_ACTIVATIONS)
def activation(builder, node):
    value = node.inputs[0]
    layer = KERAS_ACTIVATIONS[node.op_type](node.attributes, builder.names(node.name))
    return [Value(builder.layer(layer, value.data), value.layout)]


PARAMETRIC = {  # op type -> attributes -> the function
    "Elu": lambda attributes: lambda x: tf.where(
        x > 0, x, attributes.get("alpha", 1.0) * (tf.exp(tf.minimum(x, 0.0)) - 1)),
    "HardSigmoid": lambda attributes: lambda x: _hard_sigmoid(
        x, attributes.get("alpha", 0.2), attributes.get("beta", 0.5)),
    "Gelu": lambda attributes: lambda x: tf.nn.gelu(
        x, approximate=attributes.get("approximate", "none") == "tanh"),
}


@op(*PARAMETRIC)
def parametric(builder, node):
    return _unary(PARAMETRIC[node.op_type](node.attributes))(builder, node)


@op("Clip")
def clip(builder, node):
    if node.opset < 11:
        low, high = node.attributes.get("min"), node.attributes.get("max")
    else:
        low, high = (node.constant(index, "bound") for index in (1, 2))
    low, high = (None if bound is None else float(np.reshape(bound, -1)[0])
                 for bound in (low, high))
    value = node.inputs[0]
    if low == 0 and high in (None, 6) and not value.constant:
        layer = keras.layers.ReLU(max_value=None if high is None else 6.0,
                                  name=builder.names(node.name))
        return [Value(layer(value.data), value.layout)]

    def bounded(x):
        return tf.clip_by_value(x, x.dtype.min if low is None else tf.cast(low, x.dtype),
                                x.dtype.max if high is None else tf.cast(high, x.dtype))

    return _unary(bounded)(builder, node)


def _divide(x, y):
    return tf.math.truncatediv(x, y) if x.dtype.is_integer else x / y


BINARY = {"Add": tf.add, "Sub": tf.subtract, "Mul": tf.multiply, "Div": _divide,
          "Pow": lambda x, y: tf.pow(x, tf.cast(y, x.dtype)), "Equal": tf.equal,
          "Less": tf.less, "Greater": tf.greater, "Max": tf.maximum, "Min": tf.minimum,
          "And": tf.logical_and, "Or": tf.logical_or,
          "Where": lambda condition, x, y: tf.where(condition, x, y),
          "PRelu": lambda x, slope: tf.where(x >= 0, x, x * slope)}
KERAS_MERGES = {"Add": keras.layers.Add, "Sub": keras.layers.Subtract,
                "Mul": keras.layers.Multiply}


@op(*BINARY)
def elementwise(builder, node):
    tensors, layout = builder.aligned(node.inputs)
    merge = KERAS_MERGES.get(node.op_type)
    if merge and len(tensors) == 2 and not any(isinstance(t, np.ndarray) for t in tensors) \
            and tuple(tensors[0].shape) == tuple(tensors[1].shape):
        return [Value(merge(name=builder.names(node.name))(tensors), layout)]
    function = BINARY[node.op_type]
    if node.op_type in ("Max", "Min") and len(tensors) > 2:
        def function(*items, pairwise=function):
            result = items[0]
            for item in items[1:]:
                result = pairwise(result, item)
            return result
    output, = builder.apply(_same_dtype(function), tensors, node.name, node.op_type)
    return [Value(output, layout)]


def _same_dtype(function):
    """`function` with a float array input cast to a float tensor input's dtype."""

    def call(*tensors):
        floats = [t.dtype for t in tensors if t.dtype.is_floating]
        if floats:
            tensors = [tf.cast(t, floats[0]) if t.dtype.is_floating else t for t in tensors]
        return function(*tensors)

    return call


@op("Cast")
def cast(builder, node):
    from onnx import helper

    dtype = tf.as_dtype(helper.tensor_dtype_to_np_dtype(node.attributes["to"]))
    return _unary(lambda x: tf.cast(x, dtype))(builder, node)


@op("Constant")
def constant(builder, node):
    attributes = node.attributes
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attributes:
            return [Value(np.asarray(attributes[key], dtype))]
    raise Unsupported(f"Constant with {', '.join(attributes)}")


@op("Identity", "Dropout")
def identity(builder, node):
    return [node.inputs[0]]


@op("MatMul", "Gemm")
def matmul(builder, node):
    left, right = node.inputs[:2]
    attributes = node.attributes
    if attributes.get("transA", 0):
        raise Unsupported("Gemm with transA")
    alpha, beta = attributes.get("alpha", 1.0), attributes.get("beta", 1.0)
    bias = node.constant(2, "bias") if node.op_type == "Gemm" else None
    if right.constant and right.rank == 2 and not left.constant:
        kernel = alpha * (right.data.T if attributes.get("transB", 0) else right.data)
        units = kernel.shape[1]
        weights = [kernel] + ([] if bias is None else [np.broadcast_to(beta * bias, (units,))])
        layer = keras.layers.Dense(units, use_bias=bias is not None,
                                   name=builder.names(node.name))
        return [Value(builder.layer(layer, builder.plain(left), weights))]
    transposed = bool(attributes.get("transB", 0))

    def product(x, y, *rest):
        result = alpha * tf.linalg.matmul(x, y, transpose_b=transposed) if node.op_type == "Gemm" \
            else tf.linalg.matmul(x, y)
        return result + beta * rest[0] if rest else result

    inputs = [builder.plain(left), builder.plain(right)] + ([] if bias is None else [bias])
    output, = builder.apply(product, inputs, node.name, node.op_type)
    return [Value(output)]


@op("Softmax", "LogSoftmax")
def softmax(builder, node):
    value = node.inputs[0]
    axis = node.attributes.get("axis", 1 if node.opset < 13 else -1) % value.rank
    if node.opset < 13 and axis != value.rank - 1:  # softmax over all axes from `axis` on
        def flat(x):
            rows = tf.reshape(x, tf.concat([tf.shape(x)[:axis], [-1]], 0))
            result = tf.nn.softmax(rows) if node.op_type == "Softmax" else tf.nn.log_softmax(rows)
            return tf.reshape(result, tf.shape(x))
        output, = builder.apply(flat, [builder.plain(value)], node.name, node.op_type)
        return [Value(output)]
    stored = value.axis(axis)
    if node.op_type == "Softmax" and not value.constant:
        return [Value(keras.layers.Softmax(axis=stored, name=builder.names(node.name))(value.data),
                      value.layout)]
    output, = builder.apply(lambda x: tf.nn.log_softmax(x, axis=stored), [value.data], node.name,
                            node.op_type)
    return [Value(output, value.layout)]


REDUCTIONS = {"ReduceMean": tf.reduce_mean, "ReduceSum": tf.reduce_sum,
              "ReduceMax": tf.reduce_max, "ReduceMin": tf.reduce_min,
              "ReduceProd": tf.reduce_prod}


@op(*REDUCTIONS)
def reduce(builder, node):
    value = node.inputs[0]
    axes_in_input = node.op_type == "ReduceSum" and node.opset >= 13 or node.opset >= 18
    axes = node.constant(1, "axes") if axes_in_input else node.attributes.get("axes")
    keep = bool(node.attributes.get("keepdims", 1))
    if axes is None or len(axes) == 0:
        if node.attributes.get("noop_with_empty_axes", 0):
            return [value]
        axes = list(range(value.rank))
    function = REDUCTIONS[node.op_type]
    if keep:
        stored = sorted(value.axis(int(axis)) for axis in axes)
        output, = builder.apply(lambda x: function(x, axis=stored, keepdims=True), [value.data],
                                node.name, node.op_type)
        return [Value(output, value.layout)]
    plain = sorted(int(axis) % value.rank for axis in axes)
    output, = builder.apply(lambda x: function(x, axis=plain), [builder.plain(value)],
                            node.name, node.op_type)
    return [Value(output)]
