"""Finding layers by name, nested path (`outer/inner`), negative index or `auto`."""

import difflib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import keras

from cnnviz_cli.errors import CnnvizError

CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
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
    layer: keras.layers.Layer
    output_shape: tuple | None

    @property
    def is_feature_map(self) -> bool:
        """True when the layer outputs a (batch, height, width, channels) map, or tokens on a
        square grid (`token_grid`; techniques see them reshaped to the grid)."""
        shape = self.output_shape
        return shape is not None and (len(shape) == 4 or token_grid(shape) is not None)

    @property
    def is_container(self) -> bool:
        """True for a model nested inside the model."""
        return isinstance(self.layer, keras.Model)


def _output_shape(layer: keras.layers.Layer) -> tuple | None:
    try:
        output = layer.output
    except (AttributeError, ValueError):
        return None
    return tuple(output.shape) if hasattr(output, "shape") else None


def iter_layers(model: keras.Model, prefix: str = "") -> Iterator[LayerInfo]:
    """Every layer in order, the layers of nested models right after their container."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = prefix + layer.name
        yield LayerInfo(path, layer, _output_shape(layer))
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer, path + "/")


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


def feature_map_layers(model: keras.Model) -> list[LayerInfo]:
    """Layers with a 4-D output, nested containers left out (their last layer stands for them)."""
    return [info for info in iter_layers(model) if info.is_feature_map and not info.is_container]


def convolution_layers(model: keras.Model) -> list[LayerInfo]:
    """The feature-map layers that are convolutions (no pooling or normalisation layers)."""
    return [info for info in feature_map_layers(model) if isinstance(info.layer, CONV_TYPES)]


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


def last_feature_map(model: keras.Model) -> LayerInfo:
    """The deepest 4-D feature map: the usual layer for class activation maps."""
    candidates = feature_map_layers(model)
    if not candidates:
        raise CnnvizError("The model has no layer with a 4-D feature-map output to visualise.")
    return candidates[-1]


def spread_feature_maps(
    model: keras.Model, count: int = 4, convolutions_only: bool = False
) -> list[LayerInfo]:
    """`count` feature-map layers (or convolution layers) spread evenly from shallow to deep."""
    candidates = convolution_layers(model) if convolutions_only else feature_map_layers(model)
    if not candidates:
        raise CnnvizError("The model has no layer with a 4-D feature-map output to visualise.")
    if len(candidates) <= count:
        return candidates
    step = (len(candidates) - 1) / (count - 1)
    return [candidates[round(i * step)] for i in range(count)]


def resolve_feature_maps(model: keras.Model, specs: tuple[str, ...]) -> list[LayerInfo]:
    """Turn `--layer` values (names, `auto`, `all`) into feature-map layers, without repeats."""
    if not specs or specs == ("auto",):
        return spread_feature_maps(model)
    layers: list[LayerInfo] = []
    for spec in specs:
        if spec == "all":
            layers += feature_map_layers(model)
        elif spec == "auto":
            layers += spread_feature_maps(model)
        else:
            layers.append(find_feature_map(model, spec))
    return list({info.path: info for info in layers}.values())
