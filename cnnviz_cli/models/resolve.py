"""Turning `--model` (a name or a file) into a ready-to-use `ResolvedModel`."""

import contextlib
import difflib
import json
import logging
import os
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TypeVar

import keras
import numpy as np

from cnnviz_cli.device import Runtime
from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.io.provenance import file_sha256
from cnnviz_cli.models.custom import custom_objects, keras_operations, unknown_classes
from cnnviz_cli.models.fixed_inputs import fix_inputs
from cnnviz_cli.models.formats import FORMAT_SUFFIXES, GIVES, exported_model
from cnnviz_cli.models.geometry import Geometry, runs_at, size_multiple
from cnnviz_cli.models.labels import imagenet_labels, read_labels
from cnnviz_cli.models.memo import Loaded, stamp
from cnnviz_cli.models.preprocessing import (
    Preprocess,
    application_preprocess,
    resolve_preprocess,
)
from cnnviz_cli.models.registry import APPLICATIONS, canonical_name, model_names

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
DEFAULT_FREE_SIZE = 224
BUILT_IN_WEIGHTS = ("imagenet", "none")
T = TypeVar("T")
DEMO_FILE = str(resources.files("cnnviz_cli.demo") / "shapes_cnn.keras")
LOADED = Loaded()  # models loaded in this process, by what identifies them (`_loading_key`)
LISTED_LABELS = 12  # labels listed in full in an unknown-label message


@dataclass(frozen=True)
class ModelRequest:
    """What the user asked for on the command line."""

    model: str = "demo"
    weights: str | None = None  # imagenet (the default for names), none, or a weights file
    preprocess: str | None = None
    labels: str | None = None
    unsafe_deserialization: bool = False
    custom_objects: Sequence[str] | Mapping[str, object] = ()  # see models.custom
    signature: str | None = None  # the function of a SavedModel folder (see models.formats)
    image_input: str | None = None  # a multi-input model's image input (models.fixed_inputs)
    inputs: Sequence[str] | Mapping[str, object] = ()  # its other inputs' fixed values


@dataclass
class ResolvedModel:
    """A loaded Keras model with everything needed to feed it and read its output."""

    model: keras.Model
    source: str
    weights: str
    preprocess: Preprocess
    preprocess_name: str
    labels: tuple[str, ...] | None
    default_size: int = DEFAULT_FREE_SIZE
    format: str = "keras"  # keras, or the exported format: savedmodel, tflite or onnx
    details: dict = field(default_factory=dict)  # an exported model's record (models.formats)
    file: Path | None = None  # the model file it was loaded from
    weights_file: Path | None = None  # a weights file loaded into it
    preprocess_origin: str = "default"  # why this preprocessing, for the summary line
    runtime: Runtime | None = None  # where it computes (cnnviz_cli.device.configure)
    loaded_with: dict = field(default_factory=dict)  # load_model's keywords, as given
    compiled: dict = field(default_factory=dict, repr=False, compare=False)

    def reuse(self, key: tuple, build: Callable[[], T]) -> T:
        """What `build()` returns, built once per `key` for this model and the copies
        `load_model` makes of it: its compiled functions are traced once, then reused while
        the weights change (training epochs, checkpoints)."""
        if key not in self.compiled:
            self.compiled[key] = build()
        return self.compiled[key]

    @property
    def gives(self) -> frozenset[str]:
        """What the techniques can use of the model: `layer`, `gradient`, `forward`."""
        return GIVES[self.format]

    @property
    def input_shape(self) -> tuple:
        """(height, width, channels), with None for free spatial dimensions."""
        return tuple(self.model.inputs[0].shape[1:])

    @property
    def channels(self) -> int:
        return int(self.input_shape[-1])

    def geometry(self, size=None, resize: str = "stretch") -> Geometry:
        """The input geometry of a run with --size `size` and --resize `resize`."""
        probed = None in self.input_shape[:2] and self.format == "keras"
        multiple = (self.reuse(("size_multiple",), lambda: size_multiple(self.model))
                    if probed else 1)

        def accepts(size: tuple[int, int]) -> bool:
            return self.reuse(("runs_at", size),
                              lambda: runs_at(self.model, size, self.channels))

        return Geometry(self.input_shape[:2], self.default_size, size, resize,
                        dense=len(self.model.outputs[0].shape) == 4, multiple=multiple,
                        accepts=accepts if probed else None)

    def image_size(self, size=None) -> tuple[int, int]:
        """The (height, width) of a square image's input (image-free techniques use it)."""
        return self.geometry(size).default

    def summary(self, size=None) -> str:
        """A short phrase on how inputs are fed, e.g. `preprocess none (default for model
        files), 224x224 px, no labels`; `size` is --size (None: the default)."""
        height, width = self.image_size(size)
        labels = "no labels" if self.labels is None else f"{len(self.labels)} labels"
        return (f"preprocess {self.preprocess_name} ({self.preprocess_origin}), "
                f"{height}x{width} px, {labels}")

    def prepare(self, images: np.ndarray):
        """uint8 (batch, height, width, channels) images -> the model's float input."""
        return self.preprocess(images.astype("float32"))

    def label(self, index: int, labels: tuple[str, ...] | None = None) -> str:
        """The name of class `index`, or `class <index>` without labels (`labels`: the head's
        own class names, used when the model has none)."""
        names = self.labels if self.labels is not None else labels
        if names is not None and 0 <= index < len(names):
            return names[index]
        return f"class {index}"

    def class_index(self, spec: str | int, num_classes: int,
                    labels: tuple[str, ...] | None = None) -> int:
        """A class given as a label or an index -> its index, checked against the range. A
        label comes first, so labels that are numbers are matched as labels; `labels` are the
        head's own class names, used when the model has none."""
        names = self.labels if self.labels is not None else labels
        text = str(spec).strip()
        folded = [label.lower() for label in names or ()]
        if text.lower() in folded:
            return folded.index(text.lower())
        if text.lstrip("-").isdigit():
            index = int(text)
            if 0 <= index < num_classes:
                return index
            reading = f"Class {text!r} is not a label, and as an index it" if names else (
                f"Class index {index}")
            raise CnnvizError(f"{reading} is out of range: the model has {num_classes} classes "
                              f"(0 to {num_classes - 1}).")
        if names is None:
            raise CnnvizError(
                f"Class {text!r} is not a number and the model has no labels; "
                "give a class index or --labels FILE."
            )
        raise CnnvizError(f"Unknown class label {text!r}. {_label_hint(text, names)}")

    @cached_property
    def hashes(self) -> dict[str, str]:
        """SHA-256 of the model file (`sha256`) and of a weights file (`weights_sha256`)."""
        files = {"sha256": self.file, "weights_sha256": self.weights_file}
        return {key: file_sha256(path) for key, path in files.items() if path is not None}

    def describe(self) -> dict:
        """What the manifest (and every PNG) records about the model."""
        return {
            "source": self.source,
            "weights": self.weights,
            **self.hashes,
            "preprocess": self.preprocess_name,
            "preprocess_origin": self.preprocess_origin,
            "input_shape": list(self.input_shape),
            "default_size": list(self.image_size()),
            "num_labels": None if self.labels is None else len(self.labels),
            "precision": "float32" if self.runtime is None else self.runtime.precision,
            **self.details,
        }


def _label_hint(text: str, labels: tuple[str, ...]) -> str:
    """The closest labels to `text`, or (none close) the labels, abbreviated when many."""
    folded = [label.lower() for label in labels]
    close = difflib.get_close_matches(text.lower(), folded, n=3)
    if close:
        return f"Closest: {', '.join(labels[folded.index(name)] for name in close)}."
    shown = ", ".join(labels[:LISTED_LABELS])
    more = len(labels) - LISTED_LABELS
    rest = f" and {more} more (see the labels file)" if more > 0 else ""
    return f"The labels are: {shown}{rest}."


def resolve_model(request: ModelRequest) -> ResolvedModel:
    """Build or load the requested model; every failure is one CnnvizError sentence."""
    spec, weights = request.model, request.weights
    kind = _source_kind(spec)
    if kind != "name" and weights is not None and weights.lower() in BUILT_IN_WEIGHTS:
        what = "the demo model" if kind == "demo" else f"the model file {spec}"
        raise CnnvizError(
            f"--weights {weights} applies to named models only: {what} brings its own weights, "
            "so give a weights file or leave --weights out."
        )
    if kind != "file" and request.custom_objects:
        raise CnnvizError("--custom-objects applies to model files only: a named or the demo "
                          "model has no custom classes, so leave it out.")
    if kind != "file" and request.signature is not None:
        raise CnnvizError("--signature applies to SavedModel folders only: a named or the demo "
                          "model has no signatures, so leave it out.")
    weights_file = None if weights is None or weights.lower() in BUILT_IN_WEIGHTS else Path(weights)
    if weights_file is not None:
        _check_weights_file(weights_file)
    resolved = replace(LOADED.get(_loading_key(request, kind),
                                  lambda: _loaded(request, kind, weights_file)))
    if request.preprocess is not None:
        resolved.preprocess = resolve_preprocess(request.preprocess)
        resolved.preprocess_name = canonical_name(request.preprocess) or request.preprocess.lower()
        resolved.preprocess_origin = "--preprocess"
    if request.labels is not None:
        resolved.labels = read_labels(request.labels)
    return resolved


def _loaded(request: ModelRequest, kind: str, weights_file: Path | None) -> ResolvedModel:
    """The model loaded (or built), its weights file loaded and its fixed inputs held."""
    spec, weights = request.model, request.weights
    if kind == "demo":
        resolved = _demo_model()
    elif kind == "file":
        resolved = _file_model(Path(spec), request)
    else:
        resolved = _application_model(canonical_name(spec),
                                      "none" if weights_file else weights or "imagenet")
    if weights_file is not None:
        load_weights(resolved.model, weights_file, f"the weights file {weights_file}",
                     resolved.source)
        resolved.weights, resolved.weights_file = str(weights_file), weights_file
    hold_inputs(resolved, request.image_input, request.inputs)
    return resolved


def _loading_key(request: ModelRequest, kind: str) -> tuple | None:
    """What tells one loaded model from another: the request's loading fields and the state
    of every file they name; None when objects are given (custom classes, input arrays)."""
    if isinstance(request.custom_objects, Mapping) or isinstance(request.inputs, Mapping):
        return None
    named = [DEMO_FILE if kind == "demo" else request.model if kind == "file" else None,
             request.weights, *request.custom_objects,
             *(spec.partition("=")[2] for spec in request.inputs)]
    files = tuple(stamp(name) for name in named if name and Path(name).exists())
    return (kind, request.model if kind != "file" else None, request.weights,
            request.unsafe_deserialization, tuple(request.custom_objects), request.signature,
            request.image_input, tuple(request.inputs), files)


def hold_inputs(resolved: ResolvedModel, image_input: str | None,
                inputs: Sequence[str] | Mapping[str, object]) -> None:
    """A multi-input model's other inputs held fixed (models.fixed_inputs), then checked to
    take one batch of images."""
    resolved.model, record = fix_inputs(resolved.model, image_input, inputs)
    resolved.details = {**resolved.details, **record}
    _check_image_input(resolved)


def _source_kind(spec: str) -> str:
    """`demo`, `file` or `name` (a keras.applications model); an unknown name is an error.

    A path is a path when it has a folder separator or a model-file suffix; otherwise a
    registry name wins over a file or folder of that name in the current folder.
    """
    if spec.lower() == "demo":
        return "demo"
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    suffixes = MODEL_SUFFIXES + FORMAT_SUFFIXES
    if spec.lower().endswith(suffixes) or any(mark in spec for mark in separators):
        return "file"
    if canonical_name(spec) is not None:
        return "name"
    if Path(spec).exists():
        return "file"
    close = difflib.get_close_matches(spec.lower(), model_names(), n=3)
    hint = f" Closest: {', '.join(close)}." if close else ""
    raise CnnvizError(
        f"Unknown model {spec!r}: give a model file (.keras, .h5, .tflite, .onnx), a "
        f"SavedModel folder or a name from `cnnviz models`.{hint}"
    )


def _check_image_input(resolved: ResolvedModel) -> None:
    inputs = resolved.model.inputs
    shape = tuple(inputs[0].shape)
    if len(inputs) == 1 and len(shape) == 4 and shape[1] in (1, 3) and shape[-1] not in (1, 3):
        raise CnnvizError(
            f"The model takes channels-first input {shape}; cnnviz explains Keras models in "
            "channels_last layout (rebuild it with data_format='channels_last'), or export it "
            "as a SavedModel or ONNX file, whose channels-first input cnnviz transposes."
        )
    if len(inputs) != 1 or len(shape) != 4 or shape[-1] not in (1, 3):
        raise CnnvizError(
            f"The model takes input {[tuple(i.shape) for i in inputs]}, not one batch of "
            "(height, width, 1 or 3 channels) images; cnnviz needs an image model."
        )


@contextlib.contextmanager
def quiet_keras() -> Iterator[None]:
    """Keep Keras' warnings and log lines (absl, tensorflow) off the terminal meanwhile."""
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow", "keras")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def _demo_model() -> ResolvedModel:
    path, meta_path = Path(DEMO_FILE), Path(DEMO_FILE).with_name("demo_model.json")
    if not path.is_file():
        raise CnnvizError(
            "The bundled demo model is missing; train it with `python -m cnnviz_cli.demo.train`."
        )
    meta = json.loads(meta_path.read_text())
    with quiet_keras():
        model = keras.models.load_model(str(path), compile=False)
    return ResolvedModel(
        model=model,
        source="demo",
        weights="bundled",
        preprocess=resolve_preprocess(meta["preprocess"]),
        preprocess_name=meta["preprocess"],
        labels=tuple(meta["labels"]),
        default_size=128,
        file=Path(str(path)),
        preprocess_origin="the demo model's",
    )


def _application_model(name: str, weights: str) -> ResolvedModel:
    """keras.applications model `name` with `weights` imagenet or none."""
    entry = APPLICATIONS[name]
    constructor = getattr(keras.applications, entry.constructor)
    try:  # Keras reports downloads on stdout, which belongs to --json
        with contextlib.redirect_stdout(sys.stderr):
            model = constructor(weights="imagenet" if weights.lower() == "imagenet" else None)
    except Exception as error:  # Keras raises a bare Exception when a download fails.
        if "fetch" not in str(error).lower() and not isinstance(error, OSError):
            raise
        raise CnnvizError(
            f"The ImageNet weights of {name} are not in the Keras cache (~/.keras/models) and "
            "could not be downloaded; connect to the internet once, copy the weights file into "
            "that folder, or pass --weights PATH (or --weights none for random weights)."
        ) from None
    return ResolvedModel(
        model=model,
        source=name,
        weights=weights.lower(),
        preprocess=application_preprocess(entry.module),
        preprocess_name=name,
        labels=imagenet_labels(),
        default_size=entry.input_size,
        preprocess_origin="the model's own",
    )


def _check_weights_file(path: Path) -> None:
    if path.is_dir():
        raise CnnvizError(f"--weights {path} is a folder; give a .weights.h5, .keras or .h5 file.")
    if not path.is_file():
        raise CnnvizError(f"Weights file {path} does not exist.")
    if not path.name.lower().endswith(MODEL_SUFFIXES):
        raise CnnvizError(
            f"Weights file {path} has a suffix Keras cannot read: give a .weights.h5, .keras "
            "or .h5 file."
        )


def load_weights(model: keras.Model, path: Path, what: str, into: str) -> None:
    """Load the weights file `path` into `model`, with Keras' warnings silenced.

    A failure is one CnnvizError sentence naming `what` (e.g. `the weights file X`) and
    `into` (the model it was meant for).
    """
    try:
        with quiet_keras():
            model.load_weights(str(path))
    except Exception as error:
        raise CnnvizError(
            f"Cannot load {what} into {into}: {first_sentence(error)}; give weights saved "
            "from the same architecture."
        ) from None


def first_sentence(error: BaseException) -> str:
    """The first sentence of an error message, without its final punctuation."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0].split(". ", 1)[0].rstrip(".:; ") if lines else ""
    return text or type(error).__name__


def _file_model(path: Path, request: ModelRequest) -> ResolvedModel:
    if not path.exists():
        raise CnnvizError(f"Model file {path} does not exist.")
    if path.is_dir() or path.suffix.lower() in FORMAT_SUFFIXES:
        return _exported_model(path, request)
    if request.signature is not None:
        raise CnnvizError(f"--signature applies to SavedModel folders only, and {path} is a "
                          "Keras model file; leave it out.")
    objects = custom_objects(request.custom_objects)  # before loading: it defines classes
    try:
        with quiet_keras():
            model = keras.models.load_model(
                str(path), compile=False, safe_mode=not request.unsafe_deserialization,
                custom_objects=objects,
            )
    except Exception as error:
        raise CnnvizError(describe_load_failure(path, error, objects)) from None
    if not isinstance(model, keras.Model):
        raise CnnvizError(f"{path} does not hold a Keras model.")
    return ResolvedModel(
        model=model,
        source=str(path),
        weights="file",
        preprocess=resolve_preprocess("none"),
        preprocess_name="none",
        labels=None,
        file=path,
        preprocess_origin="default for model files",
    )


def _exported_model(path: Path, request: ModelRequest) -> ResolvedModel:
    """A SavedModel folder, .tflite or .onnx file (models.formats), fed like a model file."""
    if request.custom_objects or request.unsafe_deserialization:
        raise CnnvizError(f"--custom-objects and --unsafe-deserialization apply to Keras model "
                          f"files only, and {path} is an exported model; leave them out.")
    model, details = exported_model(path, request.signature)
    return ResolvedModel(
        model=model, source=str(path), weights="file", preprocess=resolve_preprocess("none"),
        preprocess_name="none", labels=None, format=details.get("format", "keras"),
        details=details,
        file=path / "saved_model.pb" if path.is_dir() else path,
        preprocess_origin="default for model files",
    )


def describe_load_failure(path: Path, error: Exception, known: Iterable[str] = ()) -> str:
    """One sentence on why Keras could not load the model file `path` (`known`: the custom
    class names given)."""
    text = str(error)
    if not path.name.lower().endswith(MODEL_SUFFIXES):
        return (f"{path} is not a Keras model file: cnnviz reads .keras and .h5 files, "
                "SavedModel folders, .tflite and .onnx files.")
    unknown = unknown_classes(path, known)
    operations = keras_operations(unknown)
    if operations and path.suffix.lower() in (".h5", ".hdf5"):
        return (f"{path} calls Keras operations ({', '.join(operations)}) between its layers, "
                "which the legacy .h5 format cannot restore; save the model as a .keras file "
                "(model.save('model.keras')).")
    if unknown:
        return (f"{path} uses the custom class(es) {', '.join(unknown)}, which Keras does not "
                "know; pass --custom-objects FILE.py or MODULE that defines them (it runs that "
                "code: trusted code only).")
    if "safe_mode" in text:
        return (
            f"{path} contains a Lambda layer whose Python code would run while loading; "
            "cnnviz refuses that by default. If you trust the file, pass --unsafe-deserialization."
        )
    if "No model config" in text or "model_config" in text:
        return (
            f"{path} holds only weights, not a model; load it with --weights {path} on a "
            "named model or on the model file it was saved from."
        )
    kind = _container_mismatch(path)
    if kind:
        return (f"{path} is not a Keras model file: a {path.suffix} file is {kind}, and this one "
                "is not (damaged, or another kind of file renamed).")
    return f"Cannot load the model file {path}: {first_sentence(error)}."


def _container_mismatch(path: Path) -> str | None:
    """What a file of this suffix must be, when the file is not that; else None."""
    import h5py

    suffix = path.suffix.lower()
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        return "a zip archive"
    if suffix in (".h5", ".hdf5") and not h5py.is_hdf5(path):
        return "an HDF5 file"
    return None
