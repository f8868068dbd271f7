"""Reading one layer's weights from a series of training checkpoints."""

from collections.abc import Iterator
from pathlib import Path

import keras

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.layers import find_layer
from cnnviz_cli.models.resolve import (
    MODEL_SUFFIXES,
    describe_load_failure,
    load_weights,
    quiet_keras,
)


def checkpoint_layers(
    model: keras.Model, layer_path: str, files: list[Path], safe_mode: bool = True
) -> Iterator[keras.layers.Layer]:
    """For each checkpoint, the layer at `layer_path` holding that checkpoint's weights.

    A checkpoint is a full model file (.keras, .h5) or a weights file (.weights.h5, or a
    legacy .h5 without a model config), which is loaded into `model` (a copy the caller owns).
    """
    for file in files:
        if not file.is_file():
            raise CnnvizError(f"Checkpoint {file} does not exist.")
        if not file.name.lower().endswith(MODEL_SUFFIXES):
            raise CnnvizError(
                f"Checkpoint {file} is not a Keras model or weights file: give .keras, .h5 or "
                ".weights.h5 files."
            )
        if not file.name.endswith(".weights.h5"):
            try:
                with quiet_keras():
                    loaded = keras.models.load_model(str(file), compile=False,
                                                     safe_mode=safe_mode)
                yield find_layer(loaded, layer_path).layer
                continue
            except CnnvizError:
                raise
            except Exception as error:
                message = describe_load_failure(file, error)
                if "holds only weights" not in message:
                    raise CnnvizError(message) from None
        load_weights(model, file, f"checkpoint {file}", "the model")
        yield find_layer(model, layer_path).layer
