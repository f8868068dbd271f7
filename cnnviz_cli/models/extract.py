"""Sub-models that expose inner feature maps, also from inside nested models."""

from collections.abc import Callable
from contextlib import contextmanager

import keras
from keras.src.ops.function import _build_map

from cnnviz_cli.models.layers import find_layer, replay_graph, sequence_of, token_grid

STRIPPED = ("softmax", "sigmoid")  # final activations left out, so scores are pre-activation


class WithoutActivation:
    """A read-only view of a layer whose `call` skips the activation; the layer is untouched."""

    activation = None

    def __init__(self, layer: keras.layers.Layer):
        self.layer = layer

    def __getattr__(self, name: str):
        return getattr(self.layer, name)


def _activation_name(layer: keras.layers.Layer) -> str:
    """softmax or sigmoid when the layer ends in one of them (STRIPPED), else none."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    name = getattr(getattr(layer, "activation", None), "__name__", "")
    return name if name in STRIPPED else "none"


def _pre_activation(layer: keras.layers.Layer):
    """A stand-in for a final softmax/sigmoid (layer or activation of a layer) that returns its
    input, the pre-activation scores; None when the layer ends in neither."""
    if _activation_name(layer) == "none":
        return None
    if isinstance(layer, keras.layers.Softmax | keras.layers.Activation):
        return lambda x, **_: x
    return lambda x, **_: type(layer).call(WithoutActivation(layer), x)


def _head_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers producing each of the model's outputs, looking into nested models."""
    heads = []
    for tensor in model.outputs:
        layer = tensor._keras_history.operation
        heads += _head_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return heads


def final_activation(model: keras.Model, index: int = 0) -> str:
    """The final activation of output `index` that `build_extractor(logits=True)` leaves out:
    softmax, sigmoid or none."""
    return _activation_name(_head_layers(model)[index])


def stripped_heads(model: keras.Model) -> set[int]:
    """ids of the output layers whose final softmax or sigmoid `build_extractor(logits=True)`
    leaves out."""
    return {id(layer) for layer in _head_layers(model) if _activation_name(layer) != "none"}


def ends_in_softmax(model: keras.Model) -> bool:
    """True when the model's (first) output is a softmax that `build_extractor(logits=True)`
    removes."""
    return final_activation(model) == "softmax"


def build_extractor(
    model: keras.Model,
    layer_paths: list[str],
    logits: bool = False,
    replace: Callable[[keras.layers.Layer], Callable | None] | None = None,
) -> keras.Model:
    """A model mapping the input to `[*feature maps at layer_paths, *model outputs]`.

    Layer paths may point inside nested models (`backbone/block5_conv3`) and inside layers
    that call their sub-layers in sequence (`encoder/block_1`); token layers on a
    square grid are given as feature maps (`layers.token_grid`). With `logits`, the final
    softmax or sigmoid of every output is left out so scores are pre-activation.
    `replace(layer)` may return a stand-in to call instead of a layer (None keeps the layer);
    nested models are then rebuilt too. The user's model is not changed.
    """
    inputs, taps, outputs = _rebuilt(model, layer_paths, logits, replace)
    return functional(inputs, taps + outputs)


def build_replaced(model: keras.Model, layer_path: str, logits: bool = False
                   ) -> tuple[keras.Model, bool]:
    """A model giving the outputs of `model` (as `build_extractor` does) with the feature map
    at `layer_path` replaced by a given map of its shape, and whether it takes the input too.

    When nothing after the layer needs more than its map (the usual case), the model is the
    part after the layer and takes the map alone: changed maps cost only that part. Otherwise
    (a skip connection around the layer, class tokens) it takes [input, map].
    """
    info = find_layer(model, layer_path)
    grid = token_grid(info.output_shape)
    channels = info.output_shape[-1]
    shape = info.output_shape[1:] if grid is None else (grid[1], grid[1], channels)
    replacement = keras.Input(shape=shape)
    dtype = getattr(info.layer, "compute_dtype", "float32")

    def splice(*args, **kwargs):
        if grid is None:
            return keras.ops.cast(replacement, dtype)
        extra, side = grid
        tokens = keras.ops.cast(keras.ops.reshape(replacement, (-1, side * side, channels)), dtype)
        if not extra:
            return tokens
        return keras.ops.concatenate([info.layer(*args, **kwargs)[:, :extra], tokens], axis=1)

    inputs, _, outputs = _rebuilt(model, [], logits,
                                  lambda operation: splice if operation is info.layer else None)
    try:
        return functional(replacement, outputs), False
    except ValueError:  # not connected: the outputs need the input as well
        return functional([inputs, replacement], outputs), True


def _rebuilt(model: keras.Model, layer_paths: list[str], logits: bool, replace) -> tuple:
    """(input, taps at `layer_paths`, outputs) of `model` replayed (see `build_extractor`)."""
    heads = {id(layer): _pre_activation(layer) for layer in _head_layers(model)} if logits else {}
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
        sequence = sequence_of(operation)
        if sequence is not None and (replace is not None
                                     or any(item.startswith(path + "/") for item in wanted)):
            def chain(x, *args, **kwargs):  # its sub-layers one by one, each tapped or replaced
                for sublayer in sequence:
                    x = wrap(sublayer, path + "/")(x)
                return x

            return _recording(chain, path, wanted, taps)
        if id(operation) in replacements:
            return _recording(replacements[id(operation)], path, wanted, taps)
        stand_in = replace(operation) if replace is not None else None
        return _recording(operation if stand_in is None else stand_in, path, wanted, taps)

    def replay(submodel: keras.Model, x, prefix: str):  # with our stand-ins for some operations
        return replay_graph(submodel, x, prefix, wrap)

    source = model.inputs[0]
    inputs = keras.Input(shape=tuple(source.shape[1:]), dtype=source.dtype)
    outputs = replay(model, inputs, "")
    outputs = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
    missing = wanted - taps.keys()
    if missing:
        raise ValueError(f"Layers not reached while rebuilding the model: {sorted(missing)}.")
    return inputs, [taps[path] for path in layer_paths], [as_float32(output) for output in outputs]


def functional(inputs, outputs) -> keras.Model:
    """`keras.Model(inputs, outputs)` on a replayed graph, whose operations may share names
    (the `add` of two nested models, or of a stand-in and a loaded model): keras.Model refuses
    repeated names, so repeats are renamed while it is built and get their names back after."""
    with _unique_names(inputs, outputs):
        return keras.Model(inputs, outputs)


@contextmanager
def _unique_names(inputs, outputs):
    nodes, _ = _build_map(inputs, outputs)
    operations = list(dict.fromkeys(node.operation for node in nodes))
    taken = {operation.name for operation in operations}
    seen: set[str] = set()
    renamed = []
    for operation in operations:
        if operation.name in seen:
            number = 1
            while f"{operation.name}_{number}" in taken:
                number += 1
            renamed.append((operation, operation.name))
            operation.name = f"{operation.name}_{number}"
            taken.add(operation.name)
        seen.add(operation.name)
    try:
        yield
    finally:
        for operation, name in renamed:
            operation.name = name


def as_float32(tensor):
    """A tensor in float32 (models computing in mixed precision return float16/bfloat16)."""
    return tensor if tensor.dtype == "float32" else keras.ops.cast(tensor, "float32")


def _through_grid(tokens, extra: int, side: int):
    """(the grid of `tokens` as a (batch, side, side, channels) feature map, the tokens again
    computed from it): the rest of the model runs on the second, so the map lies on the path
    of every gradient. The `extra` class/register tokens before the grid pass unchanged."""
    channels = tokens.shape[-1]
    grid = as_float32(keras.ops.reshape(tokens[:, extra:, :], (-1, side, side, channels)))
    again = keras.ops.cast(keras.ops.reshape(grid, (-1, side * side, channels)), tokens.dtype)
    return grid, keras.ops.concatenate([tokens[:, :extra, :], again], axis=1) if extra else again


def _reaches_inside(path: str, wanted: set[str], submodel: keras.Model, heads: dict) -> bool:
    inside = any(item.startswith(path + "/") for item in wanted)
    return inside or any(id(layer) in heads for layer in _head_layers(submodel))


def _recording(function, path: str, wanted: set[str], taps: dict):
    if path not in wanted:
        return function

    def call(*args, **kwargs):
        output = function(*args, **kwargs)
        grid = token_grid(tuple(output.shape))
        if grid is not None:  # tokens on a square grid are tapped as a feature map
            taps[path], output = _through_grid(output, *grid)
            return output
        taps[path] = as_float32(output)  # feature maps and their gradients stay float32
        return output if taps[path] is output else keras.ops.cast(taps[path], output.dtype)

    return call
