"""The public Python API: one function per technique, `load_model`, their results and errors.

The commands stand on these functions; nothing here imports TensorFlow until a function runs.
"""

from cnnviz_cli.api.activations import ActivationsResult, activations
from cnnviz_cli.api.cam import CamResult, cam
from cnnviz_cli.api.dream import DreamResult, dream
from cnnviz_cli.api.filters import FiltersResult, filters
from cnnviz_cli.api.info import info
from cnnviz_cli.api.inputs import LoadedImage
from cnnviz_cli.api.inspect import LayersResult, layers, list_models
from cnnviz_cli.api.maximize import MaximizeResult, maximize
from cnnviz_cli.api.models import load_model
from cnnviz_cli.api.reconstruct import ReconstructResult, reconstruct
from cnnviz_cli.api.report import Report, report
from cnnviz_cli.api.results import Result
from cnnviz_cli.errors import CnnvizError, InputError

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
