"""`load_model`: a model by name, by file or in memory, ready for every technique."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from cnnviz_cli.errors import CnnvizError


def load_model(
    model=None,
    *,
    weights: str | Path | None = None,
    preprocess: str | Callable | None = None,
    labels: str | Path | Sequence[str] | None = None,
    unsafe_deserialization: bool = False,
    custom_objects: Sequence[str | Path] | Mapping[str, object] = (),
    signature: str | None = None,
    device: str = "auto",
    gpu_memory: int | None = None,
    precision: str = "float32",
    image_input: str | None = None,
    inputs: Sequence[str] | Mapping[str, object] = (),
):
    """Resolve a model once, to pass to any technique (or let each technique do it).

    Args:
        model: a keras.applications name (see `cnnviz models`), a .keras/.h5 file, a
            SavedModel folder, a .tflite or .onnx file (see the README's model formats), `demo`
            (the bundled shapes classifier; the default), a `keras.Model` in memory (used as it
            is, never rebuilt or changed), or what an earlier `load_model` returned.
        weights: for a name, `imagenet` (default) or `none`; or a weights file to load into a
            named, demo or file model.
        preprocess: a preset (none, unit, symmetric, caffe, torch), a model name, or a callable
            from float pixels in [0, 255], (batch, height, width, channels), to the model's input.
            It must accept TensorFlow tensors too (maximize, dream and reconstruct differentiate
            through it). Default: the model's own; `none` for files and models in memory.
        labels: class names, as a list or a file (text, one a line, or JSON).
        unsafe_deserialization: allow model files whose Lambda layers run code when loaded.
        custom_objects: Python files or module names to import before loading a model file
            (this runs their code), whose classes are the model's custom layers; or a
            Keras-style mapping of names to classes.
        signature: the signature of a SavedModel folder that is the model (default:
            serving_default).
        device: `auto` (the first GPU when TensorFlow sees one, else the CPU), `cpu`, `gpu` or
            `gpu:N`. Devices are fixed at TensorFlow's first operation: choose them in the first
            call of a process.
        gpu_memory: cap the GPU memory TensorFlow takes, in MB (default: grow on demand).
        precision: `float32`, or `mixed`: the model computes in float16/bfloat16 on a GPU while
            scores, gradients and maps stay float32.
        image_input: the input of a model with several inputs that takes the images (default:
            the one shaped like a batch of images).
        inputs: the fixed values of such a model's other inputs, the same for every image:
            `NAME=VALUE[,VALUE...]` or `NAME=FILE.npy` texts, or a mapping of names to arrays.

    Returns:
        A ResolvedModel: the Keras model, its preprocessing, labels and input size.

    Raises:
        CnnvizError: with the one-sentence message the command line prints.
    """
    from cnnviz_cli.device import configure, with_precision
    from cnnviz_cli.models.resolve import ModelRequest, ResolvedModel, resolve_model

    model = "demo" if model is None else model
    if isinstance(model, ResolvedModel):
        loading = (weights, unsafe_deserialization, bool(custom_objects), signature, device,
                   gpu_memory, precision, image_input, bool(inputs))
        if loading != (None, False, False, None, "auto", None, "float32", None, False):
            raise CnnvizError("weights, unsafe_deserialization, custom_objects, signature, "
                              "device, gpu_memory, precision, image_input and inputs apply when "
                              "a model is loaded; this one is loaded already.")
        return replace(model, **_feeding(preprocess, labels),
                       loaded_with={**model.loaded_with, **_given(preprocess=preprocess,
                                                                   labels=labels)})
    runtime = configure(device, gpu_memory, precision)  # before TensorFlow's first operation
    if isinstance(model, str | Path):
        resolved = resolve_model(ModelRequest(
            model=str(model), weights=None if weights is None else str(weights),
            unsafe_deserialization=unsafe_deserialization,
            custom_objects=custom_objects if isinstance(custom_objects, Mapping)
            else tuple(str(spec) for spec in custom_objects),
            signature=signature, image_input=image_input, inputs=inputs,
        ))
        exported = resolved.format != "keras" or "onnx" in resolved.details  # ONNX: translated
        if exported and runtime.precision != "float32":
            raise CnnvizError(f"--precision mixed applies to Keras models only: {model} is an "
                              "exported model that computes as it was exported.")
    else:
        resolved = _in_memory(model, weights, image_input, inputs)
    given = _given(model=model if isinstance(model, str | Path) else None, weights=weights,
                   preprocess=preprocess, labels=labels,
                   unsafe_deserialization=unsafe_deserialization,
                   custom_objects=custom_objects, signature=signature, device=device,
                   gpu_memory=gpu_memory, precision=precision, image_input=image_input,
                   inputs=[str(spec) for spec in inputs] if not isinstance(inputs, Mapping)
                   else None)
    model = with_precision(resolved.model, runtime.precision)
    compiled = resolved.compiled if model is resolved.model else {}  # traced for that model
    return replace(resolved, model=model, compiled=compiled, runtime=runtime, loaded_with=given,
                   **_feeding(preprocess, labels))


def _given(**keywords) -> dict:
    """The loading keywords a command line can repeat: texts, paths and lists of them."""
    words = {}
    for name, value in keywords.items():
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, list | tuple) and name == "custom_objects":
            value = [str(v) for v in value]
        if isinstance(value, str | bool | int | list) and value not in ("auto", "float32"):
            words[name] = value
    return words


def _feeding(preprocess, labels) -> dict:
    """The ResolvedModel fields that the preprocess and labels arguments replace."""
    fields = {}
    if preprocess is not None:
        fields.update(_preprocessing(preprocess))
    if labels is not None:
        fields["labels"] = _labels(labels)
    return fields


def _in_memory(model, weights, image_input=None, inputs=()):
    import keras

    from cnnviz_cli.models.preprocessing import resolve_preprocess
    from cnnviz_cli.models.resolve import ResolvedModel, hold_inputs

    if not isinstance(model, keras.Model):
        raise CnnvizError(
            f"model must be a name, a model file, a keras.Model or a loaded model, not "
            f"{type(model).__name__}."
        )
    if weights is not None:
        raise CnnvizError("weights cannot be loaded into a keras.Model given in memory: cnnviz "
                          "never changes it; call model.load_weights(...) yourself first.")
    resolved = ResolvedModel(model=model, source=f"in memory: {model.name}", weights="in memory",
                             preprocess=resolve_preprocess("none"), preprocess_name="none",
                             labels=None, preprocess_origin="default for models in memory")
    hold_inputs(resolved, image_input, inputs)
    return resolved


def _preprocessing(preprocess) -> dict:
    from cnnviz_cli.models.preprocessing import resolve_preprocess

    if callable(preprocess):
        name = getattr(preprocess, "__name__", type(preprocess).__name__)
        return {"preprocess": preprocess, "preprocess_name": f"callable {name}",
                "preprocess_origin": "given"}
    if not isinstance(preprocess, str):
        raise CnnvizError(f"preprocess must be a preset name or a callable, not "
                          f"{type(preprocess).__name__}.")
    return {"preprocess": resolve_preprocess(preprocess), "preprocess_name": preprocess.lower(),
            "preprocess_origin": "given"}


def _labels(labels) -> tuple[str, ...]:
    from cnnviz_cli.models.labels import read_labels

    if isinstance(labels, str | Path):
        return read_labels(labels)
    if isinstance(labels, Sequence) and all(isinstance(label, str) for label in labels):
        return tuple(labels)
    raise CnnvizError("labels must be a file or a list of class names.")
