"""ONNX graphs translated op by op into Keras functional models (TensorFlow backend), so
gradients and feature maps exist for every technique. The file is read as data: no code in
it ever runs. What the translation lacks raises `Untranslatable`, whose message names it."""

import hashlib
from collections import Counter
from dataclasses import dataclass

from cnnviz_cli.models.onnx import ops_math, ops_spatial, ops_tensor  # noqa: F401 - registers ops
from cnnviz_cli.models.onnx.graph import build, missing_ops, opset_of
from cnnviz_cli.models.onnx.registry import OPS
from cnnviz_cli.models.onnx.values import NeedsSize, Unsupported

DEFAULT_SIZE = 224  # where a graph that computes with its input size is built without a size
_CACHE: dict[tuple, "Translation"] = {}


class Untranslatable(Exception):
    """The graph uses ops (or attribute values) the translation does not cover."""


@dataclass(frozen=True)
class Translation:
    """A translated model: the Keras model and what the manifest records about it."""

    model: object  # keras.Model
    operations: int
    opset: int
    size: tuple[int, int] | None  # the input size it was built at; None: any size
    layouts: tuple[str, ...]  # of the outputs: "nhwc" for a 4-D NCHW output given channels-last
    folded: int = 0  # BatchNormalization nodes folded into the Conv before them

    def details(self) -> dict:
        return {"translated": True, "operations": self.operations, "opset": self.opset,
                "built_at": None if self.size is None else list(self.size),
                "batch_norms_folded": self.folded}


def _listed(counts: Counter) -> str:
    parts = [name if count == 1 else f"{name} x{count}" for name, count in sorted(counts.items())]
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def translate(proto, image_shape: tuple, channels_first: bool,
              size: tuple[int, int] | None = None) -> Translation:
    """The Keras model of the ONNX ModelProto `proto`, whose image input is `image_shape`
    (height, width, channels) channels-last (None: a free side). Free sides stay free, unless
    the graph computes with its input size: then it is built at `size` (default DEFAULT_SIZE
    square). Built once per (file contents, size)."""
    key = (hashlib.sha256(proto.SerializeToString()).hexdigest(), tuple(image_shape),
           channels_first, size)
    if key not in _CACHE:
        _CACHE[key] = _translated(proto, image_shape, channels_first, size)
    return _CACHE[key]


def _translated(proto, image_shape, channels_first, size) -> Translation:
    missing = missing_ops(proto.graph, OPS)
    if missing:
        raise Untranslatable(f"it uses {_listed(missing)}, which cnnviz does not translate into "
                             "TensorFlow")
    free = len(image_shape) == 3 and None in image_shape[:2]
    shapes = [image_shape] if free else []  # at any size, unless the graph computes with it
    fixed = size or (DEFAULT_SIZE, DEFAULT_SIZE)
    shapes.append(tuple(side or fixed[axis] if axis < 2 and free else side
                        for axis, side in enumerate(image_shape)))
    for shape in shapes:
        try:
            model, layouts, folded = build(proto, shape, channels_first, OPS)
        except NeedsSize:
            continue
        except Unsupported as error:
            raise Untranslatable(f"it uses {error}, which cnnviz does not translate into "
                                 "TensorFlow") from None
        built = (int(shape[0]), int(shape[1])) if free and None not in shape[:2] else None
        return Translation(model, len(proto.graph.node), opset_of(proto), built, tuple(layouts),
                           folded)
    raise Untranslatable("its shape arithmetic needs sizes cnnviz cannot fold")


__all__ = ["Translation", "Untranslatable", "translate"]
