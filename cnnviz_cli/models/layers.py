"""Finding layers by name, nested path (`outer/inner`), negative index or `auto`.

"Layers" here are the model's operations: its layers and, in functional models, the operations
written as code (`x + y`), which Keras keeps in `model.operations` but not in `model.layers`.
"""

import difflib
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import groupby

import keras
import numpy as np

from cnnviz_cli.errors import CnnvizError

CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
# Never a stage's output: padding and cropping show their input, pooling and normalisation show
# it coarser or rescaled, so the layer before them stands for them.
PASS_THROUGH_TYPES = (
    keras.layers.ZeroPadding2D, keras.layers.Cropping2D, keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D, keras.layers.BatchNormalization,
    keras.layers.LayerNormalization, keras.layers.GroupNormalization,
    keras.layers.UpSampling2D, keras.layers.Resizing,
)
# What only reshapes, resizes or activates a model's output after its final classifier.
OUTPUT_WRAPPER_TYPES = (
    keras.layers.Activation, keras.layers.Softmax, keras.layers.ReLU, keras.layers.Identity,
    keras.layers.Reshape, keras.layers.Permute, keras.layers.Flatten, keras.layers.UpSampling2D,
    keras.layers.Resizing,
)
DEFAULT_FREE_SIZE = (224, 224)  # where a model that takes any size is measured without a size
SPREAD = 4  # layers in the activations and reconstruct defaults
MAX_EXTRA_TOKENS = 5  # a class token, a distillation token, a few register tokens


def token_grid(shape: tuple | None) -> tuple[int, int] | None:
    """(extra tokens, side) of a (batch, tokens, channels) output whose tokens are a square
    grid of side >= 2 after at most MAX_EXTRA_TOKENS class or register tokens (fewer than the
    grid's); None for any other shape."""
    if shape is None or len(shape) != 3 or shape[1] is None:
        return None
    for extra in range(min(MAX_EXTRA_TOKENS, shape[1]) + 1):
        side = math.isqrt(shape[1] - extra)
        if side >= 2 and side * side == shape[1] - extra and extra < side * side:
            return extra, side
    return None


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a (possibly nested) model, addressed by its slash-separated path."""

    path: str
    layer: keras.Operation  # a layer, or an operation such as the `x + y` of a residual sum
    output_shape: tuple | None

    @property
    def is_feature_map(self) -> bool:
        """True when the layer outputs a (batch, height, width, channels) map, or tokens on a
        square grid (`token_grid`; techniques see them reshaped to the grid)."""
        shape = self.output_shape
        return shape is not None and (len(shape) == 4 or token_grid(shape) is not None)

    @property
    def is_container(self) -> bool:
        """True for a model nested inside the model, or a layer that only calls its sub-layers
        one after another (`sequence_of`)."""
        return isinstance(self.layer, keras.Model) or sequence_of(self.layer) is not None


_SEQUENCES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # layer -> its sequence


def sequence_of(layer: keras.Operation) -> list[keras.layers.Layer] | None:
    """The sub-layers of a layer that is not a model but only calls them one after another
    (keras-hub's ViTEncoder and its transformer blocks), checked once by running both on a
    random input; None for any other operation."""
    inner = list(getattr(layer, "_layers", None) or ())
    if isinstance(layer, keras.Model) or len(inner) < 2 or not layer._inbound_nodes:
        return None
    if layer not in _SEQUENCES:
        _SEQUENCES[layer] = inner if _calls_in_sequence(layer, inner) else None
    return _SEQUENCES[layer]


def _calls_in_sequence(layer: keras.layers.Layer, inner: list) -> bool:
    tensors = layer._inbound_nodes[0].input_tensors
    if len(tensors) != 1 or None in tuple(tensors[0].shape[1:]):
        return False
    sample = np.random.default_rng(0).normal(size=(1, *tensors[0].shape[1:])).astype("float32")
    try:
        chained = sample
        for sublayer in inner:
            chained = sublayer(chained)
        whole = layer(sample)
    except Exception:  # noqa: BLE001  (a custom layer may fail on its sub-layers in any way)
        return False
    return np.shape(whole) == np.shape(chained) and np.allclose(whole, chained, atol=1e-5)


def _output_shape(layer: keras.layers.Layer) -> tuple | None:
    try:
        output = layer.output
    except (AttributeError, ValueError):
        return None
    return tuple(output.shape) if hasattr(output, "shape") else None


def _operations(model: keras.Model) -> list[keras.Operation]:
    """A functional model's operations in graph order; the layers of any other model."""
    return getattr(model, "operations", None) or model.layers


def iter_layers(model: keras.Model, prefix: str = "") -> Iterator[LayerInfo]:
    """Every layer and operation in order, those of nested models right after their container."""
    for layer in _operations(model):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = prefix + layer.name
        yield LayerInfo(path, layer, _output_shape(layer))
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer, path + "/")
        else:
            yield from _sublayers(layer, path + "/")


def _sublayers(layer: keras.Operation, prefix: str) -> Iterator[LayerInfo]:
    """The sub-layers of a layer that is not a model: with their output shapes when it calls
    them in sequence (they can then be tapped), else without (their weights can be drawn)."""
    sequence = sequence_of(layer)
    if sequence is None:
        for sublayer in getattr(layer, "_layers", None) or ():
            yield LayerInfo(prefix + sublayer.name, sublayer, None)
        return
    tensor = layer._inbound_nodes[0].input_tensors[0]
    for sublayer in sequence:
        tensor = sublayer.compute_output_spec(tensor)
        yield LayerInfo(prefix + sublayer.name, sublayer, tuple(tensor.shape))
        yield from _sublayers(sublayer, prefix + sublayer.name + "/")


def _not_found(model: keras.Model, spec: str) -> CnnvizError:
    paths = [info.path for info in iter_layers(model)]
    leaf_names = {path.rsplit("/", 1)[-1]: path for path in paths}
    close = difflib.get_close_matches(spec, paths, n=5, cutoff=0.5)
    close += [leaf_names[name] for name in difflib.get_close_matches(spec, leaf_names, n=3)]
    close = list(dict.fromkeys(close))[:5]
    hint = f"Closest: {', '.join(close)}." if close else "See `cnnviz layers` for the list."
    return CnnvizError(f"No such layer: {spec!r}. {hint}")


def find_layer(model: keras.Model, spec: str) -> LayerInfo:
    """Resolve a layer path (`block1_conv1`, `base/conv1`) or a negative index (`-3`)."""
    layers = list(iter_layers(model))
    if spec.lstrip("-").isdigit() and spec.startswith("-"):
        index = int(spec)
        if -index > len(layers):
            raise CnnvizError(
                f"Layer index {index} is out of range: the model has {len(layers)} layers."
            )
        return layers[index]
    for info in layers:
        if info.path == spec:
            return info
    leaf_matches = [info for info in layers if info.path.rsplit("/", 1)[-1] == spec]
    if len(leaf_matches) == 1:
        return leaf_matches[0]
    raise _not_found(model, spec)


def feature_map_layers(model: keras.Model, size: tuple[int, int] | None = None
                       ) -> list[LayerInfo]:
    """The feature-map candidates: (batch, height, width, channels) outputs larger than 1x1 in
    both dimensions for `size` inputs (for a model that takes any size; default 224x224), and
    (batch, tokens, channels) outputs whose tokens are a square grid (`token_grid`) of a fixed
    number of tokens (one that grows with the input is a square grid at square sizes only).

    Nested containers are left out (their last layer stands for them); `output_shape` is the
    shape at that size.
    """
    shapes = shapes_at(model, size or DEFAULT_FREE_SIZE) if _free_size(model) else {}
    candidates = []
    for info in iter_layers(model):
        shape = shapes.get(info.path, info.output_shape)
        if info.is_container or shape is None:
            continue
        spatial = len(shape) == 4 and all(side is None or side > 1 for side in shape[1:3])
        if spatial or token_grid(info.output_shape) is not None:
            candidates.append(replace(info, output_shape=shape))
    return candidates


def _free_size(model: keras.Model) -> bool:
    return None in tuple(model.inputs[0].shape[1:3])


def shapes_at(model: keras.Model, size: tuple[int, int]) -> dict[str, tuple]:
    """Every operation's output shape (by path) for one input of `size`, found symbolically."""
    shapes: dict[str, tuple] = {}

    def spec_of(operation, prefix: str):
        path = prefix + operation.name

        def call(*args, **kwargs):
            if isinstance(operation, keras.Model):
                output = run(operation, args[0], path + "/")
            else:
                output = operation.compute_output_spec(*args, **kwargs)
            if hasattr(output, "shape"):
                shapes[path] = (None, *output.shape[1:])
            return output

        return call

    def run(submodel: keras.Model, x, prefix: str):
        return replay_graph(submodel, x, prefix, spec_of)

    source = model.inputs[0]
    run(model, keras.KerasTensor((1, *size, source.shape[-1]), dtype=source.dtype), "")
    return shapes


def replay_graph(model: keras.Model, x, prefix: str, wrap):
    """Run `model` on `x` calling `wrap(operation, prefix)(...)` instead of each operation
    (a Sequential's layers, a functional model's graph), to record or replace what they do."""
    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            x = wrap(layer, prefix)(x)
        return x
    return model._run_through_graph(x, operation_fn=lambda operation: wrap(operation, prefix))


def classifier_operations(model: keras.Model) -> set[int]:
    """The ids of the operations that make each output from the last feature map: the final
    classifier (a segmentation's 1x1 convolution) and what only reshapes, resizes or activates
    its output (OUTPUT_WRAPPER_TYPES), looking into nested models."""
    found: set[int] = set()
    for tensor in model.outputs:
        while True:
            operation, node_index, tensor_index = tensor._keras_history
            if isinstance(operation, keras.Model):
                tensor = operation.outputs[tensor_index]
                continue
            node = operation._inbound_nodes[node_index]
            if isinstance(operation, keras.layers.InputLayer) or not node.input_tensors:
                break
            found.add(id(operation))
            if not isinstance(operation, OUTPUT_WRAPPER_TYPES):
                break
            tensor = node.input_tensors[0]
    return found


def stage_outputs(model: keras.Model, size: tuple[int, int] | None = None,
                  convolutions_only: bool = False) -> list[LayerInfo]:
    """The last feature map (or convolution) of each spatial resolution, shallow to deep.

    Left out: whatever comes before the first convolution (rescaling, normalisation, other
    preprocessing), the pass-through layers (padding, cropping, pooling, normalisation,
    resizing) and the final classifier with what follows it (`classifier_operations`).
    Squeeze-excite branches are 1x1, so never candidates.
    """
    stages = groupby(_kept(model, size, convolutions_only),
                     key=lambda info: info.output_shape[1:3])
    return [list(group)[-1] for _, group in stages]


def _kept(model: keras.Model, size: tuple[int, int] | None, convolutions_only: bool = False
          ) -> list[LayerInfo]:
    """The feature maps `stage_outputs` chooses from, shallow to deep."""
    heads = classifier_operations(model)
    candidates = [info for info in feature_map_layers(model, size) if id(info.layer) not in heads]
    first = next((i for i, info in enumerate(candidates) if isinstance(info.layer, CONV_TYPES)), 0)
    return [info for info in candidates[first:]
            if not isinstance(info.layer, PASS_THROUGH_TYPES)
            and (not convolutions_only or isinstance(info.layer, CONV_TYPES))]


def default_layers(model: keras.Model, size: tuple[int, int] | None = None
                   ) -> dict[str, list[LayerInfo]]:
    """What `-l auto` picks for each command, at input `size` (for models of any size).

    cam and maximize: the last stage's output, the deepest map before the spatial dimensions
    are pooled away (after the last residual sum of blocks that end in one; for VGG
    `block5_conv3`, 14x14, rather than its 7x7 `block5_pool`). activations and reconstruct:
    four stage outputs (convolutions for reconstruct) spread from shallow to deep. dream: the
    stage output before the last. filters: the first convolution. Tokens out of the blocks of
    an encoder layer: the input of the last block, where the patch tokens still carry the
    class's gradient. A list is empty when the
    model has no such layer.
    """
    stages = stage_outputs(model, size)
    convolutions = stage_outputs(model, size, convolutions_only=True) or stages
    first_convolution = next((info for info in iter_layers(model)
                              if isinstance(info.layer, CONV_TYPES)), None)
    deepest = stages[-1:]
    kept = _kept(model, size)
    if deepest and token_grid(deepest[0].output_shape) and len(kept) > 1 and _blocks(
            kept[-2], deepest[0]):
        deepest = kept[-2:-1]  # after the last block only the class token counts: its input
    return {"cam": deepest, "maximize": deepest, "dream": stages[-2:-1] or stages[-1:],
            "activations": _spread(stages, SPREAD), "reconstruct": _spread(convolutions, SPREAD),
            "filters": [first_convolution] if first_convolution else []}


def _blocks(before: LayerInfo, last: LayerInfo) -> bool:
    """Whether `before` and `last` are consecutive blocks of one encoder layer: token layers of
    one shape that a layer calls in sequence (`sequence_of`)."""
    parent = last.path.rpartition("/")[0]
    return bool(parent) and before.path.rpartition("/")[0] == parent and (
        before.output_shape == last.output_shape)


def auto_layers(model: keras.Model, command: str, size: tuple[int, int] | None = None
                ) -> list[LayerInfo]:
    """`default_layers(model, size)[command]`, or an error when the model has none."""
    chosen = default_layers(model, size)[command]
    if not chosen:
        raise CnnvizError("The model has no layer with a 4-D feature-map output larger than 1x1 "
                          "to visualise.")
    return chosen


def _spread(layers: list[LayerInfo], count: int) -> list[LayerInfo]:
    """`count` of `layers` spread evenly from the first to the last."""
    if len(layers) <= count:
        return layers
    step = (len(layers) - 1) / (count - 1)
    return [layers[round(i * step)] for i in range(count)]


def find_feature_map(model: keras.Model, spec: str) -> LayerInfo:
    """Like `find_layer`, but refuse layers whose output is not a 4-D feature map."""
    info = find_layer(model, spec)
    if not info.is_feature_map:
        shape = info.output_shape if info.output_shape is not None else "unknown"
        raise CnnvizError(
            f"Layer {info.path!r} outputs shape {shape}, not a (batch, height, width, channels) "
            "feature map or (batch, tokens, channels) tokens on a square grid; pick a "
            "convolutional or token layer (see `cnnviz layers`)."
        )
    return info


def last_feature_map(model: keras.Model, size: tuple[int, int] | None = None) -> LayerInfo:
    """The layer `cam -l auto` explains: the deepest map before spatial pooling."""
    return auto_layers(model, "cam", size)[0]


def layer_instead(model: keras.Model, path: str, size: tuple[int, int] | None = None
                  ) -> str | None:
    """The layer to suggest when `path` gives blank maps: `-l auto`'s if it is another, else
    the feature map before `path` (None: there is none)."""
    chosen = default_layers(model, size)["cam"]
    if chosen and chosen[0].path != path:
        return chosen[0].path
    paths = [info.path for info in feature_map_layers(model, size)]
    index = paths.index(path) if path in paths else 0
    return paths[index - 1] if index > 0 else None


def resolve_feature_maps(model: keras.Model, specs: tuple[str, ...], command: str,
                         size: tuple[int, int] | None = None) -> list[LayerInfo]:
    """Turn `--layer` values (names, `auto`: the command's defaults, `all`) into feature-map
    layers, without repeats."""
    layers: list[LayerInfo] = []
    for spec in specs or ("auto",):
        if spec == "all":
            layers += feature_map_layers(model, size)
        elif spec == "auto":
            layers += auto_layers(model, command, size)
        else:
            layers.append(find_feature_map(model, spec))
    return list({info.path: info for info in layers}.values())
