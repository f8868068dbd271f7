"""`--custom-objects`: the user's code that defines a model's custom classes, and what is missing.

Importing a file or module runs its code, so it happens only when asked for. Without it, a model
file that names classes Keras does not know fails with a sentence naming them.
"""

import importlib
import importlib.util
import json
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cnnviz_cli.errors import CnnvizError

KERAS_PACKAGES = ("keras", "keras_hub", "keras_cv", "keras_nlp")
BUILT_IN_MODELS = ("Functional", "Sequential", "Model")


def custom_objects(specs: Sequence[str | Path] | Mapping[str, object]) -> dict[str, object]:
    """Import every FILE.py or MODULE of `specs` (a mapping is used as it is) and return the
    classes they define, by class name and by registered name, for Keras' `custom_objects`."""
    if isinstance(specs, Mapping):
        return dict(specs)
    objects: dict[str, object] = {}
    for spec in specs:
        module = _import(str(spec))
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__:
                objects[value.__name__] = value
                objects[_registered_name(value)] = value
    return objects


def _registered_name(cls: type) -> str:
    import keras

    return keras.saving.get_registered_name(cls)


def _import(spec: str):
    """The module of a Python file (imported under a private name) or an importable module."""
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        if not path.is_file():
            raise CnnvizError(f"--custom-objects {spec}: no such Python file.")
        name = f"cnnviz_custom_objects.{path.stem}"
        loader = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module
        _run(spec, lambda: loader.loader.exec_module(module))
        return module
    try:
        found = importlib.util.find_spec(spec) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise CnnvizError(f"--custom-objects {spec} is neither a Python file nor a module "
                          "Python can import.")
    return _run(spec, lambda: importlib.import_module(spec))


def _run(spec: str, load):
    try:
        return load()
    except Exception as error:  # the user's code may raise anything
        raise CnnvizError(f"--custom-objects {spec} raised {type(error).__name__} while "
                          f"importing: {str(error).strip() or 'no message'}.") from None


def unknown_classes(path: Path, known: Iterable[str] = ()) -> list[str]:
    """The classes the model file names that are neither Keras' own, nor registered, nor in
    `known`; empty when the file's configuration cannot be read."""
    try:
        config = _model_config(path)
    except Exception:  # not a readable model file: other messages explain that
        return []
    known = set(known)
    return sorted({name for name in _class_names(config) if name not in known
                   and not _resolvable(name)})


def keras_operations(names: Iterable[str]) -> list[str]:
    """Those of the class `names` that are Keras operations (keras.ops called between layers),
    which the legacy .h5 format writes but cannot read back."""
    from keras.src import ops
    from keras.src.ops.operation import Operation

    modules = (ops.core, ops.image, ops.linalg, ops.math, ops.nn, ops.numpy)
    return [name for name in names if any(
        isinstance(value := getattr(module, name, None), type) and issubclass(value, Operation)
        for module in modules)]


def _model_config(path: Path) -> dict:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    import h5py

    with h5py.File(path, "r") as file:
        text = file.attrs["model_config"]
    return json.loads(text.decode() if isinstance(text, bytes) else text)


def _class_names(config) -> Iterable[str]:
    """Names of the custom classes a configuration refers to (recursively)."""
    if isinstance(config, list):
        for item in config:
            yield from _class_names(item)
    if not isinstance(config, dict):
        return
    name, module = config.get("class_name"), config.get("module")
    if isinstance(name, str) and "config" in config and not name.startswith("__"):
        if module is None or module.split(".")[0] not in KERAS_PACKAGES:
            yield config.get("registered_name") or name
    for value in config.values():
        yield from _class_names(value)


def _resolvable(name: str) -> bool:
    import keras

    if name in BUILT_IN_MODELS or keras.saving.get_registered_object(name) is not None:
        return True
    namespaces = (keras.layers, keras.initializers, keras.regularizers, keras.constraints,
                  keras.losses, keras.metrics, keras.optimizers, keras.activations)
    return ">" not in name and any(hasattr(space, name) for space in namespaces)
