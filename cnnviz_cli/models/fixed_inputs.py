"""Multi-input models: the image input found by shape (or named), every other input held at a
fixed value, so the techniques see one model from images to outputs whose gradients are taken
with respect to the image only. The layers stay the model's own (same objects, same names)."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np

from cnnviz_cli.errors import CnnvizError


class FixedInputs(keras.layers.Layer):
    """The fixed values, repeated for every image of a batch."""

    def __init__(self, values: Sequence[np.ndarray], **kwargs):
        super().__init__(**kwargs)
        self.values = [np.asarray(value, "float32") for value in values]

    def call(self, images):
        batch = keras.ops.shape(images)[0]
        return [keras.ops.broadcast_to(keras.ops.convert_to_tensor(value)[None],
                                       (batch, *value.shape)) for value in self.values]


def input_names(model: keras.Model) -> list[str]:
    return [tensor.name for tensor in model.inputs]


def image_input(model: keras.Model, name: str | None) -> int:
    """The index of the image input: `name`, else the one (batch, height, width, 1|3) input."""
    names = input_names(model)
    if name is not None:
        if name not in names:
            raise CnnvizError(f"--image-input {name}: the model has no input of that name; its "
                              f"inputs are {', '.join(names)}.")
        return names.index(name)
    images = [index for index, tensor in enumerate(model.inputs)
              if len(tensor.shape) == 4 and tensor.shape[-1] in (1, 3)]
    if len(images) != 1:
        shapes = ", ".join(f"{name} {tuple(tensor.shape)}"
                           for name, tensor in zip(names, model.inputs, strict=True))
        raise CnnvizError(f"The model takes inputs {shapes}, and {len(images)} of them look like "
                          "a batch of (height, width, 1 or 3 channels) images; name the image "
                          "input with --image-input NAME.")
    return images[0]


def parse_values(given: Sequence[str] | Mapping[str, object]) -> dict[str, np.ndarray]:
    """`NAME=VALUE[,VALUE...]` or `NAME=FILE.npy` (or a mapping of names to arrays) -> arrays."""
    if isinstance(given, Mapping):
        return {name: np.asarray(value, "float32") for name, value in given.items()}
    values = {}
    for spec in given:
        name, equals, text = str(spec).partition("=")
        if not equals or not name.strip() or not text.strip():
            raise CnnvizError(f"--input expects NAME=VALUE[,VALUE...] or NAME=FILE.npy, but got "
                              f"{spec!r}.")
        if text.strip().lower().endswith(".npy"):
            path = Path(text.strip())
            if not path.is_file():
                raise CnnvizError(f"--input {name}: the file {path} does not exist.")
            values[name.strip()] = np.load(path, allow_pickle=False).astype("float32")
            continue
        try:
            values[name.strip()] = np.array([float(item) for item in text.split(",")], "float32")
        except ValueError:
            raise CnnvizError(f"--input {name}: {text!r} is not a list of numbers; give "
                              "VALUE[,VALUE...] or FILE.npy.") from None
    return values


def fix_inputs(model: keras.Model, image_name: str | None,
               given: Sequence[str] | Mapping[str, object]) -> tuple[keras.Model, dict]:
    """`model` with its inputs other than the image held at the given values, and what the
    manifest records (`image_input`, `fixed_inputs`). A one-input model is returned as it is."""
    if len(model.inputs) == 1:
        if image_name is not None or given:
            raise CnnvizError("--image-input and --input apply only to models with several "
                              "inputs, and this one has one; leave them out.")
        return model, {}
    names, index = input_names(model), image_input(model, image_name)
    values = parse_values(given)
    for name in values:
        if name not in names or name == names[index]:
            what = "the image input" if name in names else "not an input of the model"
            raise CnnvizError(f"--input {name}: that is {what}; the inputs to fix are "
                              f"{', '.join(n for n in names if n != names[index])}.")
    fixed = []
    for position, (name, tensor) in enumerate(zip(names, model.inputs, strict=True)):
        if position == index:
            continue
        shape = tuple(tensor.shape[1:])
        if name not in values:
            raise CnnvizError(f"The model's input {name} {shape} needs a fixed value: give "
                              f"--input {name}=VALUE[,VALUE...] or {name}=FILE.npy.")
        value = values[name]
        if None in shape or value.size != int(np.prod(shape)):
            raise CnnvizError(f"--input {name} has {value.size} value(s), and the input takes "
                              f"{shape} per image; give exactly that many.")
        fixed.append(value.reshape(shape))
    if not hasattr(model, "_run_through_graph"):
        raise CnnvizError("Only functional Keras models with several inputs can be explained "
                          "with fixed inputs; rebuild this one with the functional API.")
    image = keras.Input(tuple(model.inputs[index].shape[1:]), name=names[index])
    constants = iter(FixedInputs(fixed, name="fixed_inputs")(image))
    tensors = [image if position == index else next(constants)
               for position in range(len(names))]
    outputs = model._run_through_graph(tensors, operation_fn=lambda operation: operation)
    record = {"image_input": names[index],
              "fixed_inputs": {name: values[name].tolist() for name in names
                               if name != names[index]}}
    return keras.Model(image, outputs, name=model.name), record
