"""What the translation passes between ops: values in a layout, the generic layer, names.

An ONNX tensor becomes a `Value`: a NumPy array when it is known while translating (weights,
folded shape arithmetic), else a Keras tensor. A 4-D tensor is NCHW in the file; cnnviz keeps
it channels-last (`layout="nhwc"`), so TensorFlow's convolutions run on it and every feature
map reads as (batch, height, width, channels). Shapes are folded with the batch size written
as BATCH, a prime no real dimension is a multiple of, so a folded shape that holds `k * BATCH`
becomes `k * batch` when the model runs.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

BATCH = 9973  # the batch size in folded shapes
TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
STORED_AXIS = (0, 3, 1, 2)  # where axis i of an NCHW tensor is in its channels-last copy


class Unsupported(Exception):
    """An op, or an attribute value of an op, that the translation does not cover."""


class NeedsSize(Exception):
    """The graph computes with a spatial size, so it must be built at a fixed input size."""


@dataclass
class Value:
    """One ONNX tensor: `data` is a NumPy array (known now) or a Keras tensor (computed)."""

    data: object
    layout: str = "plain"  # "nhwc": a 4-D NCHW tensor stored channels-last

    @property
    def constant(self) -> bool:
        return isinstance(self.data, np.ndarray)

    @property
    def rank(self) -> int:
        return len(self.data.shape)

    def shape(self) -> tuple:
        """The ONNX (file-order) shape, with BATCH for the batch size."""
        dims = [BATCH if side is None and axis == 0 else side
                for axis, side in enumerate(self.data.shape)]
        return tuple(dims[axis] for axis in TO_NCHW) if self.layout == "nhwc" else tuple(dims)

    def axis(self, axis: int) -> int:
        """The stored position of ONNX axis `axis` (negative counts from the end)."""
        axis = axis % self.rank
        return STORED_AXIS[axis] if self.layout == "nhwc" else axis


class OnnxOp(keras.layers.Layer):
    """An ONNX op without a Keras layer of its own: `function(*tensors)` in TensorFlow."""

    def __init__(self, function: Callable, op_type: str = "", **kwargs):
        super().__init__(**kwargs)
        self.function, self.op_type = function, op_type

    def call(self, inputs):
        return self.function(*inputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "function": self.function, "op_type": self.op_type}


def runtime_shape(shape, reference: tf.Tensor, reference_shape: tuple) -> tf.Tensor:
    """A folded shape with its `k * BATCH` entries as k times the batch size, read from
    `reference`, whose folded shape is `reference_shape`."""
    shape = [int(side) for side in np.asarray(shape).reshape(-1)]
    if not has_batch(shape):
        return tf.constant(shape, tf.int64)
    axis = next((i for i, side in enumerate(reference_shape) if has_batch([side])), None)
    if axis is None:
        raise Unsupported("a shape that holds the batch size of a tensor without one")
    batch = tf.shape(reference, out_type=tf.int64)[axis] // (reference_shape[axis] // BATCH)
    return tf.stack([(side // BATCH) * batch if has_batch([side]) else tf.constant(side, tf.int64)
                     for side in shape])


def has_batch(shape) -> bool:
    """True when a folded shape holds the batch size (a multiple of BATCH)."""
    return any(side is not None and side != 0 and int(side) % BATCH == 0
               for side in np.asarray(shape, dtype=object).reshape(-1).tolist())


class Names:
    """Valid, unique Keras layer names from ONNX tensor names."""

    def __init__(self):
        self.taken: set[str] = set()

    def __call__(self, name: str, suffix: str = "") -> str:
        base = (re.sub(r"\W+", "_", name).strip("_") or "node") + suffix
        unique, count = base, 1
        while unique in self.taken:
            count += 1
            unique = f"{base}_{count}"
        self.taken.add(unique)
        return unique
