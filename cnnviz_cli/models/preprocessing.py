"""Named input preprocessing: float pixels in [0, 255] -> what a model was trained on.

Every function works on NumPy arrays and on TensorFlow tensors alike (differentiable), so the
optimisation techniques can run it inside their compiled loops.
"""

import difflib
from collections.abc import Callable

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.registry import APPLICATIONS, canonical_name

Preprocess = Callable[[object], object]

_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def _none(x):
    return x


def _unit(x):
    return x / 255.0


def _symmetric(x):
    return x / 127.5 - 1.0


def _caffe(x):
    bgr = x[..., ::-1]
    return bgr - _CAFFE_BGR_MEAN


def _torch(x):
    return (x / 255.0 - _TORCH_MEAN) / _TORCH_STD


PRESETS: dict[str, Preprocess] = {
    "none": _none,
    "unit": _unit,
    "symmetric": _symmetric,
    "caffe": _caffe,
    "torch": _torch,
}


def reverses_channels(preprocess: Preprocess) -> bool:
    """Whether `preprocess` feeds the model BGR (caffe): pure red changes its last channel only."""
    import numpy as np

    black = np.zeros((1, 1, 1, 3), np.float32)
    red = black + np.array([255.0, 0.0, 0.0], np.float32)
    change = np.abs(np.asarray(preprocess(red)) - np.asarray(preprocess(black))).reshape(-1)
    return change.shape == (3,) and change[2] > 0 and change[0] == 0


def application_preprocess(module_name: str) -> Preprocess:
    """The `preprocess_input` of a keras.applications submodule, made copy-safe for NumPy."""
    import keras
    import numpy as np

    function = getattr(keras.applications, module_name).preprocess_input

    def preprocess(x):
        return function(np.array(x, dtype="float32") if isinstance(x, np.ndarray) else x)

    return preprocess


def resolve_preprocess(name: str) -> Preprocess:
    """Look a preprocessing up by preset name or keras.applications model name."""
    key = name.lower()
    if key in PRESETS:
        return PRESETS[key]
    if canonical_name(key) is not None:
        return application_preprocess(APPLICATIONS[canonical_name(key)].module)
    choices = [*PRESETS, *APPLICATIONS]
    close = difflib.get_close_matches(key, choices, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise CnnvizError(
        f"Unknown preprocessing {name!r}: use one of {', '.join(PRESETS)} or a model name.{hint}"
    )
