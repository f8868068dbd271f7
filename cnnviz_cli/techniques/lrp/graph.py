"""The canonised graph: every operation of a Keras model replaced by its LRP stand-in.

`Walk` replays the model (nested models too) inside a compiled function, calling a stand-in
for each operation that computes the ordinary output but passes relevance down by its rule:

- convolutions (also depthwise, separable as depthwise then pointwise) and dense layers: the
  rule the composite chooses; a BatchNormalization right after one is folded into it;
- average and global average pooling, upsampling, residual `Add` and `Average`: linear maps
  with fixed weights (relevance split in proportion to each input's contribution);
- max pooling: winner takes all (the ordinary gradient), or split as average pooling would;
- activations, rescaling, normalisation, dropout, a BatchNormalization not after a linear
  layer, arithmetic with a constant: relevance passes through unchanged;
- reshaping, padding, cropping, concatenation: relevance follows the values (ordinary gradient);
- `Multiply` of a signal and a gate computed from it (squeeze-excite): the gate is a constant
  and the signal keeps all relevance.

`stand_in` decides before anything runs, so a model with an uncovered layer fails in one
sentence naming it.
"""

from collections.abc import Callable
from dataclasses import replace

import keras
import tensorflow as tf

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.extract import stripped_heads
from cnnviz_cli.models.layers import replay_graph
from cnnviz_cli.techniques.lrp.linear import Produced, folded, stages
from cnnviz_cli.techniques.lrp.rules import Composite, Facts, Linear, RuleSettings

L = keras.layers
CONVOLUTIONS = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D,
                L.SeparableConv1D, L.SeparableConv2D)
POOLS = (L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D, L.GlobalAveragePooling1D,
         L.GlobalAveragePooling2D, L.GlobalAveragePooling3D, L.UpSampling1D, L.UpSampling2D,
         L.UpSampling3D)
MAX_POOLS = (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.GlobalMaxPooling1D,
             L.GlobalMaxPooling2D, L.GlobalMaxPooling3D)
ACTIVATIONS = (L.Activation, L.ReLU, L.LeakyReLU, L.PReLU, L.ELU, L.Softmax)
NOISE = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
         L.GaussianDropout, L.GaussianNoise, L.AlphaDropout, L.ActivityRegularization,
         L.Identity)  # the identity at inference
AFFINE = (L.Rescaling, L.Normalization, *NOISE)  # per-element affine maps
ROUTING = (L.Flatten, L.Reshape, L.Permute, L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
           L.Cropping1D, L.Cropping2D, L.Cropping3D, L.Concatenate)
ARITHMETIC = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide")  # keras.ops in a graph
COVERED = ("convolutions, dense layers, batch normalisation, pooling, activations, residual "
           "sums, concatenation, squeeze-excite gates, reshaping and padding")


def _is_relu(function) -> bool:
    return getattr(function, "__name__", "") in ("relu", "relu6")


def _rectifies(operation) -> bool:
    """Whether the operation's output is >= 0 (a ReLU)."""
    if isinstance(operation, L.ReLU):
        return not operation.negative_slope and operation.threshold >= 0
    return _is_relu(getattr(operation, "activation", None))


def _arguments(operation) -> list:
    """The Keras tensors of the operation's (first) call in its model."""
    nodes = operation._inbound_nodes
    return list(nodes[0].arguments.keras_tensors) if nodes else []


def _ancestors(tensor) -> set[int]:
    """ids of every Keras tensor `tensor` is computed from, itself included."""
    seen, stack = set(), [tensor]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        history = getattr(current, "_keras_history", None)
        if history is not None and history.operation is not None:
            stack += history.operation._inbound_nodes[history.node_index].input_tensors
    return seen


def _gate_index(operation) -> int:
    """Which of a Multiply's two inputs is the gate: the one computed from the other."""
    first, second = _arguments(operation)
    if id(first) in _ancestors(second):
        return 1
    if id(second) in _ancestors(first):
        return 0
    raise CnnvizError(
        f"Layer-wise relevance propagation cannot pass relevance through layer "
        f"{operation.name!r} (Multiply): neither input is a gate computed from the other."
    )


def stand_in(operation) -> str:
    """The name of the `Walk` method that stands in for `operation`; a CnnvizError naming
    the operation when no rule covers it."""
    if isinstance(operation, keras.Model):
        return "nested"
    if isinstance(operation, CONVOLUTIONS + (L.Dense,)):
        return "linear"
    for types, method in ((L.BatchNormalization, "batch_norm"), (POOLS, "pool"),
                          (MAX_POOLS, "max_pool"), (ACTIVATIONS + AFFINE, "elementwise"),
                          (ROUTING, "routing"), ((L.Add, L.Average), "sum")):
        if isinstance(operation, types):
            return method
    name = type(operation).__name__
    if isinstance(operation, L.Multiply) and len(_arguments(operation)) == 2:
        return "gate"
    if not isinstance(operation, L.Layer) and name in ARITHMETIC:
        tensors = len(_arguments(operation))
        if tensors == 1:
            return "elementwise"
        if tensors == 2 and name in ("Add", "Multiply"):
            return {"Add": "sum", "Multiply": "gate"}[name]
    raise CnnvizError(
        f"Layer-wise relevance propagation has no rule for layer {operation.name!r} ({name}); "
        f"it covers {COVERED}."
    )


def check_covered(model: keras.Model) -> None:
    """Raise the CnnvizError of the first operation (nested models too) no rule covers."""
    for operation in _operations(model):
        if stand_in(operation) == "gate":
            _gate_index(operation)
        if isinstance(operation, keras.Model):
            check_covered(operation)


def _operations(model: keras.Model) -> list:
    operations = getattr(model, "operations", None) or model.layers
    return [operation for operation in operations if not isinstance(operation, L.InputLayer)]


class Walk:
    """One replay of a model with LRP stand-ins, tracking `Facts` about every tensor."""

    def __init__(self, model: keras.Model, composite: Composite, settings: RuleSettings,
                 max_pool: str = "winner"):
        self.model, self.composite, self.settings = model, composite, settings
        self.max_pool = max_pool
        self.heads = stripped_heads(model)
        self.facts: dict = {}
        self.produced: dict = {}

    def __call__(self, inputs: tf.Tensor, bounds: tuple | None) -> tf.Tensor | list:
        """The model's outputs (final softmax or sigmoid left out) for a batch of inputs."""
        self.facts = {inputs.ref(): Facts(deep=False, bounds=bounds)}
        self.produced = {}
        return replay_graph(self.model, inputs, "", self._wrap)

    def _wrap(self, operation, prefix: str) -> Callable:
        method = getattr(self, "_" + stand_in(operation))
        return lambda *args, **kwargs: method(operation, args, kwargs)

    def _fact(self, tensor) -> Facts:
        return self.facts.get(tensor.ref(), Facts())

    def _record(self, tensor: tf.Tensor, facts: Facts) -> tf.Tensor:
        self.facts[tensor.ref()] = facts
        return tensor

    def _nested(self, operation, args, kwargs):
        return replay_graph(operation, args[0], "", self._wrap)

    def _rule(self, layer: Linear, inputs: list, facts: list, first: bool) -> tf.Tensor:
        return self.composite(layer.kind, first, self.settings)(layer, inputs, facts)

    def _linear(self, operation, args, kwargs):
        outputs = args[0]
        axis = 1 if getattr(operation, "data_format", None) == "channels_first" else -1
        for layer, output_axes in stages(operation):
            facts = [self._fact(outputs)]
            first = not facts[0].deep
            produced = Produced(layer, output_axes, axis, [outputs], facts, first)
            outputs = self._rule(layer, [outputs], facts, first)
            self.produced[outputs.ref()] = produced
            self._record(outputs, Facts())
        activation = getattr(operation, "activation", None)
        linear = getattr(activation, "__name__", "linear") == "linear"
        if linear or id(operation) in self.heads:
            return outputs
        return self._record(_passed(activation(outputs), outputs),
                            Facts(nonnegative=_is_relu(activation)))

    def _batch_norm(self, operation, args, kwargs):
        inputs = args[0]
        produced = self.produced.get(inputs.ref())
        rank = len(inputs.shape)
        if produced is None or operation.axis % rank != produced.channel_axis % rank:
            return self._elementwise(operation, args, {"training": False})
        layer = folded(produced, operation)
        outputs = self._rule(layer, produced.inputs, produced.facts, produced.first)
        self.produced[outputs.ref()] = replace(produced, layer=layer)
        return self._record(outputs, Facts())

    def _elementwise(self, operation, args, kwargs):
        inputs = next(arg for arg in args if tf.is_tensor(arg))
        facts = self._fact(inputs)
        if id(operation) in self.heads:  # the final softmax or sigmoid, left out
            return inputs
        bounds = None
        if facts.bounds is not None and not isinstance(operation, ACTIVATIONS):
            bounds = _bounds([operation(*_swapped(args, inputs, bound), **kwargs)
                              for bound in facts.bounds])
        nonnegative = _rectifies(operation) or (facts.nonnegative and isinstance(operation, NOISE))
        outputs = operation(*args, **kwargs)
        return self._record(_passed(outputs, inputs), Facts(facts.deep, nonnegative, bounds))

    def _routing(self, operation, args, kwargs):
        outputs = operation(*args, **kwargs)
        return self._record(outputs, self._routed(operation, args, kwargs))

    def _routed(self, operation, args, kwargs) -> Facts:
        """Facts of the output of an operation whose values are its inputs' (or positive
        averages of them): bounds pass through it as the values do."""
        tensors = [arg for arg in tf.nest.flatten(args) if tf.is_tensor(arg)]
        facts = [self._fact(tensor) for tensor in tensors]
        bounds = None
        if all(fact.bounds is not None for fact in facts):
            found = {tensor.ref(): fact.bounds for tensor, fact in zip(tensors, facts, strict=True)}
            bounds = tuple(operation(*tf.nest.map_structure(
                lambda arg, side=side: found[arg.ref()][side] if tf.is_tensor(arg) else arg,
                args), **kwargs) for side in (0, 1))
        return Facts(any(fact.deep for fact in facts),
                     all(fact.nonnegative for fact in facts), bounds)

    def _max_pool(self, operation, args, kwargs):
        if self.max_pool == "winner":
            return self._routing(operation, args, kwargs)
        averaged = self._linear_map(operation, args, kwargs,
                                    lambda inputs: _average_pool(operation, inputs[0]))
        outputs = _passed(operation(*args, **kwargs), averaged)
        return self._record(outputs, self._fact(averaged))

    def _linear_map(self, operation, args, kwargs, function: Callable) -> tf.Tensor:
        """A map with fixed non-negative weights: `function(inputs)` times the kernel 1.0."""
        inputs = [arg for arg in tf.nest.flatten(args) if tf.is_tensor(arg)]
        layer = Linear(operation.name, "pool", lambda xs, kernel, bias: function(xs) * kernel,
                       tf.constant(1.0))
        facts = [self._fact(tensor) for tensor in inputs]
        outputs = self._rule(layer, inputs, facts, not any(fact.deep for fact in facts))
        return self._record(outputs, self._routed(operation, args, kwargs))

    def _pool(self, operation, args, kwargs):
        return self._linear_map(operation, args, kwargs, lambda xs: operation(xs[0]))

    def _sum(self, operation, args, kwargs):
        average = isinstance(operation, L.Average)
        return self._linear_map(operation, args, kwargs,
                                lambda xs: tf.add_n(xs) / (len(xs) if average else 1))

    def _gate(self, operation, args, kwargs):
        tensors = [arg for arg in tf.nest.flatten(args) if tf.is_tensor(arg)]
        signal = tensors[1 - _gate_index(operation)]
        facts = self._fact(signal)
        return self._record(_passed(operation(*args, **kwargs), signal), Facts(facts.deep))


def _passed(outputs: tf.Tensor, inputs: tf.Tensor) -> tf.Tensor:
    """`outputs`, passing relevance unchanged to `inputs` (of the same shape)."""

    @tf.custom_gradient
    def passed(inputs):
        return tf.identity(outputs), lambda upstream: upstream

    return passed(inputs)


def _swapped(args: tuple, tensor: tf.Tensor, replacement: tf.Tensor) -> tuple:
    """`args` with `tensor` replaced."""
    return tuple(replacement if arg is tensor else arg for arg in args)


def _bounds(values: list[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    """(low, high) of an affine map's values at the low and high ends (a negative scale swaps
    them)."""
    return tf.minimum(*values), tf.maximum(*values)


def _average_pool(operation, inputs: tf.Tensor) -> tf.Tensor:
    """What average pooling of the max pooling layer's geometry makes of `inputs`."""
    if isinstance(operation, (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D)):
        return keras.ops.average_pool(inputs, operation.pool_size, operation.strides,
                                      operation.padding, operation.data_format)
    first = 2 if operation.data_format == "channels_first" else 1
    axes = list(range(first, first + len(inputs.shape) - 2))
    return tf.reduce_mean(inputs, axis=axes, keepdims=operation.keepdims)
