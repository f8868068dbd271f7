"""Sub-models that expose inner feature maps, also from inside nested models."""

from collections.abc import Callable

import keras

_SOFTMAX_NAMES = ("softmax",)


def _is_softmax(function) -> bool:
    return getattr(function, "__name__", "") in _SOFTMAX_NAMES


def _pre_softmax(layer: keras.layers.Layer):
    """A stand-in for a final softmax layer that returns the logits, or None if not softmax."""
    if isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation) and _is_softmax(layer.activation)
    ):
        return lambda x, **_: x
    if isinstance(layer, keras.layers.Dense) and _is_softmax(layer.activation):

        def logits(x, **_):
            y = keras.ops.matmul(x, layer.kernel)
            return y + layer.bias if layer.use_bias else y

        return logits
    return None


def _head_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers producing each of the model's outputs, looking into nested models."""
    heads = []
    for tensor in model.outputs:
        layer = tensor._keras_history.operation
        heads += _head_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return heads


def ends_in_softmax(model: keras.Model) -> bool:
    """True when the model's (first) output is a softmax that `build_extractor(logits=True)`
    removes."""
    return _pre_softmax(_head_layers(model)[0]) is not None


def build_extractor(
    model: keras.Model,
    layer_paths: list[str],
    logits: bool = False,
    replace: Callable[[keras.layers.Layer], Callable | None] | None = None,
) -> keras.Model:
    """A model mapping the input to `[*feature maps at layer_paths, *model outputs]`.

    Layer paths may point inside nested models (`backbone/block5_conv3`). With `logits`, the
    final softmax of every output is left out so scores are pre-softmax. `replace(layer)` may
    return a stand-in to call instead of a layer (None keeps the layer); nested models are then
    rebuilt too.
    The user's model is not changed.
    """
    heads = {id(layer): _pre_softmax(layer) for layer in _head_layers(model)} if logits else {}
    replacements = {key: stand_in for key, stand_in in heads.items() if stand_in is not None}
    taps: dict[str, object] = {}
    wanted = set(layer_paths)

    def wrap(operation, prefix: str):
        path = prefix + operation.name
        if isinstance(operation, keras.Model) and (
            operation is not model
            and (replace is not None or _reaches_inside(path, wanted, operation, replacements))
        ):
            def call(x, *args, **kwargs):
                return replay(operation, x, path + "/")

            return _recording(call, path, wanted, taps)
        if id(operation) in replacements:
            return _recording(replacements[id(operation)], path, wanted, taps)
        stand_in = replace(operation) if replace is not None else None
        return _recording(operation if stand_in is None else stand_in, path, wanted, taps)

    def replay(submodel: keras.Model, x, prefix: str):
        if isinstance(submodel, keras.Sequential):
            for layer in submodel.layers:
                x = wrap(layer, prefix)(x)
            return x
        # Functional models: run the graph again, with our stand-ins for some operations.
        return submodel._run_through_graph(x, operation_fn=lambda op: wrap(op, prefix))

    source = model.inputs[0]
    inputs = keras.Input(shape=tuple(source.shape[1:]), dtype=source.dtype)
    outputs = replay(model, inputs, "")
    outputs = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
    missing = wanted - taps.keys()
    if missing:
        raise ValueError(f"Layers not reached while rebuilding the model: {sorted(missing)}.")
    return keras.Model(inputs, [taps[path] for path in layer_paths]
                       + [as_float32(output) for output in outputs])


def as_float32(tensor):
    """A tensor in float32 (models computing in mixed precision return float16/bfloat16)."""
    return tensor if tensor.dtype == "float32" else keras.ops.cast(tensor, "float32")


def _reaches_inside(path: str, wanted: set[str], submodel: keras.Model, heads: dict) -> bool:
    inside = any(item.startswith(path + "/") for item in wanted)
    return inside or any(id(layer) in heads for layer in _head_layers(submodel))


def _recording(function, path: str, wanted: set[str], taps: dict):
    if path not in wanted:
        return function

    def call(*args, **kwargs):
        output = function(*args, **kwargs)
        taps[path] = as_float32(output)  # feature maps and their gradients stay float32
        return output if taps[path] is output else keras.ops.cast(taps[path], output.dtype)

    return call
