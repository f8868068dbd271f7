"""cnnviz: see what a Keras CNN has learned and why it decides what it decides.

    import cnnviz_cli
    result = cnnviz_cli.cam("demo", "sample_images/star.png", methods=["gradcam", "scorecam"])
    result.show()          # in Jupyter the result also draws itself
    result.save("out/")    # the files `cnnviz cam` writes

Importing the package is cheap: TensorFlow is imported when a technique first runs.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from cnnviz_cli.version import __version__ as __version__  # noqa: E402 (re-exported)

__all__ = [
    "ActivationsResult",
    "CamResult",
    "CnnvizError",
    "DreamResult",
    "FiltersResult",
    "InputError",
    "LayersResult",
    "LoadedImage",
    "MaximizeResult",
    "ReconstructResult",
    "Report",
    "Result",
    "activations",
    "cam",
    "dream",
    "filters",
    "info",
    "layers",
    "list_models",
    "load_model",
    "maximize",
    "reconstruct",
    "report",
]


CALLBACKS = ["VisualizeCallback"]  # Keras classes: importing them imports Keras


def __getattr__(name: str):
    """The public names, imported from cnnviz_cli.api (or .callbacks) on first use."""
    if name in CALLBACKS:
        from cnnviz_cli import callbacks

        return getattr(callbacks, name)
    if name in __all__:
        from cnnviz_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'cnnviz_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__, *CALLBACKS])
