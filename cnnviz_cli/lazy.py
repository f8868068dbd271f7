"""Modules imported on first use, so that modules declaring specs stay cheap to import.

`from cnnviz_cli.lazy import tf` gives a stand-in for `tensorflow` that imports it when an
attribute is first read: a technique module can declare its methods and options at import
time (the command line reads them for `--help`) and pay for TensorFlow only when it computes.
"""

import importlib
from types import ModuleType


class LazyModule:
    """A module imported when one of its attributes is first read."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str):
        if self._module is None:
            from cnnviz_cli.quiet_tf import import_tensorflow

            import_tensorflow()  # with its start-up notes kept off stderr
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


tf = LazyModule("tensorflow")
keras = LazyModule("keras")
