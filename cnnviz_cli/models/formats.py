"""Exported models as a Keras function: SavedModel folders, `.tflite` and `.onnx` files.

An `.onnx` file is first translated op by op into a Keras model with layers (models.onnx), so
every technique works on it as on a `.keras` file; only a graph the translation lacks ops for
falls back to the forward-only adapter below, and says why. Each format is an adapter with one
image input (channels-last for cnnviz; a channels-first input is transposed on the way in) and
its outputs, wrapped in a `keras.Model` of one layer. The techniques then see what they see of
any model, a function from inputs to scores, only without inner layers: a SavedModel gives
input gradients, TFLite models and untranslated ONNX graphs give scores only (forward-only):
`GIVES` says what of the model each format exposes, and the API compares
it with what a command or method needs (api.formats). A quantised TFLite model
(integer input and output) gets its inputs quantised with the file's scale and zero point and
its outputs dequantised, so it is explained like a float one.
"""

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.errors import CnnvizError

FORMAT_SUFFIXES = (".tflite", ".onnx")
FORMAT_NAMES = {"keras": "Keras model", "savedmodel": "SavedModel", "tflite": "TFLite model",
                "onnx": "ONNX model"}
GIVES = {"keras": frozenset({"layer", "gradient", "forward"}),
         "savedmodel": frozenset({"gradient", "forward"}), "tflite": frozenset({"forward"}),
         "onnx": frozenset({"forward"})}  # what of the model each format exposes
# TFLite's own kernels, without the default delegate that announces itself on stderr
QUIET_RESOLVER = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
INSTALL_ONNX = "pip install 'cnnviz[onnx]' (or pip install onnxruntime)"


@dataclass(frozen=True)
class Port:
    """An input or output tensor of an exported model, as the file declares it."""

    name: str
    shape: tuple  # None for a free dimension
    dtype: str
    quantization: tuple[float, int] | None = None  # an integer tensor's scale and zero point

    def record(self) -> dict:
        extra = {} if self.quantization is None else {"quantization": list(self.quantization)}
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, **extra}


def channels_first(shape: tuple) -> bool:
    """A (batch, 1 or 3, height, width) input whose last dimension is not a colour axis."""
    return len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3)


def image_shape(shape: tuple) -> tuple:
    """(height, width, channels) of an image input of `shape`, channels last."""
    return (shape[2], shape[3], shape[1]) if channels_first(shape) else tuple(shape[1:])


@dataclass
class Adapter:
    """A loaded exported model: `run(NCHW or NHWC float32 batch) -> outputs` in its own layout."""

    format: str
    source: Path
    input: Port
    outputs: list[Port]
    run: Callable[[tf.Tensor], list[tf.Tensor]]
    signature: str | None = None
    owner: object = None  # what keeps the loaded model alive (a SavedModel's variables)

    @property
    def channels_first(self) -> bool:
        return channels_first(self.input.shape)

    @property
    def image_shape(self) -> tuple:
        return image_shape(self.input.shape)

    def __call__(self, images: tf.Tensor) -> list[tf.Tensor]:
        inputs = tf.transpose(images, [0, 3, 1, 2]) if self.channels_first else images
        return [tf.cast(output, tf.float32) for output in self.run(inputs)]

    def details(self) -> dict:
        """What the manifest and `cnnviz layers` record about the exported model."""
        extra = {"signature": self.signature} if self.signature else {}
        return {"format": self.format, **extra, "channels_first": self.channels_first,
                "inputs": [self.input.record()], "outputs": [o.record() for o in self.outputs]}


class ExportedModel(keras.layers.Layer):
    """The whole exported model as one Keras layer (its state stays in the adapter)."""

    def __init__(self, adapter: Adapter, **kwargs):
        super().__init__(name=adapter.format, trainable=False, **kwargs)
        self._adapter = adapter

    def call(self, images):
        return self._adapter(images)

    def compute_output_spec(self, images):
        return [keras.KerasTensor((images.shape[0], *port.shape[1:]), "float32")
                for port in self._adapter.outputs]


def exported_model(path: Path, signature: str | None = None) -> tuple[keras.Model, dict]:
    """The SavedModel folder, `.tflite` or `.onnx` file at `path` as a Keras model, and the
    details the manifest records; one CnnvizError sentence when it cannot be used."""
    suffix = path.suffix.lower()
    if signature is not None and not path.is_dir():
        raise CnnvizError(f"--signature applies to SavedModel folders only, and {path} is a "
                          "file; leave it out.")
    untranslated = None
    if suffix == ".onnx":
        translated = translated_onnx(path)
        if not isinstance(translated, str | None):
            return translated
        untranslated = translated
    adapter = (_saved_model(path, signature) if path.is_dir()
               else {".tflite": _tflite, ".onnx": _onnx}[suffix](path))
    if len(adapter.input.shape) != 4 or adapter.image_shape[-1] not in (1, 3):
        raise CnnvizError(f"The {FORMAT_NAMES[adapter.format]} {path} takes input "
                          f"{adapter.input.shape}, not a batch of images with 1 or 3 channels.")
    if not adapter.input.dtype.startswith("float") and adapter.input.quantization is None:
        raise CnnvizError(f"The {FORMAT_NAMES[adapter.format]} {path} takes "
                          f"{adapter.input.dtype} input without a scale and zero point; cnnviz "
                          "explains models with float input or quantised integer input.")
    inputs = keras.Input(adapter.image_shape, name="image")
    outputs = ExportedModel(adapter)(inputs)
    names = _unique([re.sub(r"\W", "_", port.name).strip("_") or "output"
                     for port in adapter.outputs])
    outputs = [keras.layers.Identity(name=name)(tensor)
               for name, tensor in zip(names, outputs, strict=True)]
    details = adapter.details()
    if untranslated:
        details["untranslated"] = untranslated
    return keras.Model(inputs, outputs, name=path.stem or "exported"), details


def _unique(names: list[str]) -> list[str]:
    return [name if names.index(name) == index else f"{name}_{index}"
            for index, name in enumerate(names)]


def _one_input(path: Path, kind: str, names: list[str]) -> None:
    if len(names) != 1:
        raise CnnvizError(f"The {kind} {path} takes {len(names)} inputs "
                          f"({', '.join(names)}); cnnviz explains models with one image input.")


def _saved_model(path: Path, signature: str | None) -> Adapter:
    if not (path / "saved_model.pb").is_file():
        raise CnnvizError(f"{path} is a folder but not a TensorFlow SavedModel (it has no "
                          "saved_model.pb); give a SavedModel folder or a model file.")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # TensorFlow raises many kinds on damaged folders
        raise CnnvizError(f"Cannot load the SavedModel {path}: {_first_line(error)}.") from None
    signatures = dict(loaded.signatures)
    if not signatures:
        raise CnnvizError(f"The SavedModel {path} has no serving signature, so cnnviz cannot "
                          "tell which function is the model; export it with model.export(folder) "
                          "(Keras 3) or save it with a signature.")
    if signature is None:
        signature = "serving_default" if "serving_default" in signatures or len(
            signatures) != 1 else next(iter(signatures))
    if signature not in signatures:
        raise CnnvizError(f"The SavedModel {path} has no signature {signature!r}; it has "
                          f"{', '.join(sorted(signatures))}: choose one with --signature NAME.")
    function = signatures[signature]
    specs = function.structured_input_signature[1]
    _one_input(path, "SavedModel", sorted(specs))
    (name, spec), = specs.items()
    outputs = sorted(function.structured_outputs.items())

    def run(inputs):
        results = function(**{name: tf.cast(inputs, spec.dtype)})
        return [results[key] for key, _ in outputs]

    return Adapter("savedmodel", path, _port(name, spec.shape, spec.dtype.name),
                   [_port(key, value.shape, value.dtype.name) for key, value in outputs], run,
                   signature, loaded)


def _port(name: str, shape, dtype: str) -> Port:
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return Port(name, tuple(d if isinstance(d, int) and d > 0 else None for d in dims), dtype)


def _tflite(path: Path) -> Adapter:
    try:
        with warnings.catch_warnings():  # its deprecation notice, once per process
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(
                model_path=str(path), experimental_op_resolver_type=QUIET_RESOLVER)
    except Exception as error:  # ValueError on damaged files
        raise CnnvizError(f"Cannot read the TFLite model {path}: {_first_line(error)}.") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    _one_input(path, "TFLite model", [detail["name"] for detail in inputs])
    operations = {operation["op_name"] for operation in interpreter._get_ops_details()}
    if "READ_VARIABLE" in operations and not operations & {"CALL_ONCE", "ASSIGN_VARIABLE"}:
        raise CnnvizError(f"The TFLite model {path} reads variables that nothing in it sets (its "
                          "converter left the weights out of the file), so it cannot run; "
                          "convert the model again from a SavedModel written by "
                          "model.export(folder).")
    source, allocated = inputs[0], []  # the batch shape the tensors are allocated for

    def invoke(batch: np.ndarray) -> list[np.ndarray]:
        if allocated != [batch.shape]:
            interpreter.resize_tensor_input(source["index"], batch.shape)
            interpreter.allocate_tensors()
            allocated[:] = [batch.shape]
        interpreter.set_tensor(source["index"], _quantised(batch, source))
        interpreter.invoke()
        return [_dequantised(interpreter.get_tensor(detail["index"]), detail)
                for detail in outputs]

    def run(images):
        return _numpy_call(invoke, images, len(outputs))

    return Adapter("tflite", path, _detail_port(source),
                   [_detail_port(detail) for detail in outputs], run)


def _detail_port(detail: dict) -> Port:
    shape = detail.get("shape_signature", detail["shape"])
    port = _port(detail["name"], [int(d) for d in shape], np.dtype(detail["dtype"]).name)
    scale, zero_point = _quantization(detail) or (None, None)
    return port if scale is None else Port(port.name, port.shape, port.dtype,
                                           (scale, zero_point))


def _quantization(detail: dict) -> tuple[float, int] | None:
    """(scale, zero point) of a quantised integer TFLite tensor, None for a float one."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    integer = np.dtype(detail["dtype"]).kind in "iu"
    return (float(scale), int(zero_point)) if integer and scale else None


def _quantised(batch: np.ndarray, detail: dict) -> np.ndarray:
    """A float batch in the input's type: quantised with its scale and zero point if integer."""
    dtype, quantization = np.dtype(detail["dtype"]), _quantization(detail)
    if quantization is None:
        return batch.astype(dtype)
    scale, zero_point = quantization
    limits = np.iinfo(dtype)
    return np.clip(np.round(batch / scale + zero_point), limits.min, limits.max).astype(dtype)


def _dequantised(values: np.ndarray, detail: dict) -> np.ndarray:
    """An output as float: dequantised with its scale and zero point if integer."""
    quantization = _quantization(detail)
    if quantization is None:
        return values
    scale, zero_point = quantization
    return (values.astype(np.float32) - zero_point) * scale


def _numpy_call(invoke: Callable, images: tf.Tensor, count: int) -> list[tf.Tensor]:
    """`invoke(numpy batch) -> numpy outputs` as a graph op (one call per batch, no gradient).
    Eagerly, tf.numpy_function returns one output bare, not in a list."""
    results = tf.numpy_function(lambda batch: [np.asarray(out, np.float32)
                                               for out in invoke(batch)],
                                [images], [tf.float32] * count, stateful=True)
    return list(results) if isinstance(results, list | tuple) else [results]


ONNX_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64",
              "tensor(float16)": "float16"}


def _onnx(path: Path) -> Adapter:
    try:
        import onnxruntime
    except ImportError:
        raise CnnvizError(f"Reading the ONNX model {path} needs onnxruntime: "
                          f"{INSTALL_ONNX}.") from None
    try:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # idle threads sleep: spinning, they would take the cores from TensorFlow's work
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types
        raise CnnvizError(f"Cannot read the ONNX model {path} (damaged, or not an ONNX file): "
                          f"{_first_line(error)}.") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    _one_input(path, "ONNX model", [node.name for node in inputs])
    source = inputs[0]
    port = _port(source.name, [d if isinstance(d, int) else None for d in source.shape],
                 ONNX_TYPES.get(source.type, source.type))
    fixed = port.shape[0]  # a batch size the file fixes: run in chunks of it
    dtype = np.dtype(port.dtype) if port.dtype in ONNX_TYPES.values() else np.float32

    def invoke(batch: np.ndarray) -> list[np.ndarray]:
        size = fixed or len(batch)
        parts = [session.run(None, {source.name: _padded(batch[start:start + size], size)
                                    .astype(dtype)}) for start in range(0, len(batch), size)]
        return [np.concatenate(group)[:len(batch)] for group in zip(*parts, strict=True)]

    def run(images):
        return _numpy_call(invoke, images, len(outputs))

    return Adapter("onnx", path, port,
                   [_port(node.name, [d if isinstance(d, int) else None for d in node.shape],
                          ONNX_TYPES.get(node.type, node.type)) for node in outputs], run)


def translated_onnx(path: Path, size: tuple[int, int] | None = None
                    ) -> tuple[keras.Model, dict] | str | None:
    """The ONNX file at `path` translated into a Keras model with layers, and its details; else
    why not (a phrase for the forward-only fallback), or None when the file is not one the
    translation reads (the fallback then says what is wrong with it)."""
    try:
        import onnx
    except ImportError:
        return "translating it needs the onnx package (pip install 'cnnviz[onnx]')"
    from cnnviz_cli.models.onnx import Untranslatable, translate

    try:
        proto = onnx.load(str(path))
    except Exception:  # protobuf's and onnx's own exception types: damaged or not ONNX
        return None
    initialised = {init.name for init in proto.graph.initializer}
    sources = [port for port in proto.graph.input if port.name not in initialised]
    if len(sources) != 1 or sources[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        return None
    dims = sources[0].type.tensor_type.shape.dim
    shape = tuple(dim.dim_value if dim.HasField("dim_value") else None for dim in dims)
    if len(shape) != 4 or image_shape(shape)[-1] not in (1, 3):
        return None
    try:
        translation = translate(proto, image_shape(shape), channels_first(shape), size)
    except Untranslatable as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - a graph the translation misreads still runs
        return f"its translation failed ({_first_line(error)})"
    details = {"onnx": {**translation.details(), "channels_first": channels_first(shape),
                        "inputs": [Port(sources[0].name, shape, "float32").record()]}}
    return translation.model, details


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    """`batch` with copies of its last item appended up to `size` items."""
    missing = size - len(batch)
    return batch if missing <= 0 else np.concatenate([batch, np.repeat(batch[-1:], missing, 0)])


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(error).__name__
