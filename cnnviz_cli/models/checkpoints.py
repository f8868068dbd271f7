"""Training checkpoints: a copy of the model holding each checkpoint's weights in turn."""

from collections.abc import Iterator
from pathlib import Path

import keras

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.resolve import (
    MODEL_SUFFIXES,
    describe_load_failure,
    load_weights,
    quiet_keras,
)


def trainable_copy(model: keras.Model) -> keras.Model:
    """A copy of `model` with its own weights, for checkpoints to load into (cnnviz never
    changes the caller's model)."""
    try:
        copy = keras.models.clone_model(model)
    except Exception as error:
        raise CnnvizError(
            f"Cannot copy the model {model.name} to load checkpoints into ({error}); "
            "checkpoints need a functional or Sequential model."
        ) from None
    copy.set_weights(model.get_weights())
    return copy


def checkpoint_weights(model: keras.Model, files: list[Path], safe_mode: bool = True
                       ) -> Iterator[Path]:
    """Load each checkpoint's weights into `model` (a copy the caller owns) and yield its file.

    A checkpoint is a full model file (.keras, .h5), whose architecture must match `model`,
    or a weights file (.weights.h5, or a legacy .h5 without a model config).
    """
    for file in files:
        if not file.is_file():
            raise CnnvizError(f"Checkpoint {file} does not exist.")
        if not file.name.lower().endswith(MODEL_SUFFIXES):
            raise CnnvizError(
                f"Checkpoint {file} is not a Keras model or weights file: give .keras, .h5 or "
                ".weights.h5 files."
            )
        loaded = None if file.name.endswith(".weights.h5") else _model_file(file, safe_mode)
        if loaded is None:
            load_weights(model, file, f"checkpoint {file}", "the model")
        else:
            _check_architecture(model, loaded, file)
            model.set_weights(loaded.get_weights())
        yield file


def _model_file(file: Path, safe_mode: bool) -> keras.Model | None:
    """The model a checkpoint file holds, or None when it holds only weights."""
    try:
        with quiet_keras():
            return keras.models.load_model(str(file), compile=False, safe_mode=safe_mode)
    except Exception as error:
        message = describe_load_failure(file, error)
        if "holds only weights" not in message:
            raise CnnvizError(message) from None
        return None


def _check_architecture(model: keras.Model, loaded: keras.Model, file: Path) -> None:
    expected = [tuple(weight.shape) for weight in model.weights]
    found = [tuple(weight.shape) for weight in loaded.weights]
    if expected == found:
        return
    if len(expected) != len(found):
        detail = f"it has {len(found)} weight arrays, the model {len(expected)}"
    else:
        index = next(i for i, pair in enumerate(zip(expected, found, strict=True))
                     if pair[0] != pair[1])
        detail = (f"its weight {loaded.weights[index].path} is {found[index]}, the model's "
                  f"{model.weights[index].path} is {expected[index]}")
    raise CnnvizError(f"Checkpoint {file} does not match the model's architecture: {detail}; "
                      "give checkpoints saved from this model while it trained.")
