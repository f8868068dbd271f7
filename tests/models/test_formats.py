"""Every model file a user has: custom layers (--custom-objects), SavedModel, TFLite and ONNX."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError

CUSTOM_LAYER = textwrap.dedent('''
    """A custom layer, registered; importing this file leaves a marker beside it."""
    from pathlib import Path

    import keras

    Path(__file__).with_suffix(".imported").write_text("yes")


    @keras.saving.register_keras_serializable(package="cnnviz_test")
    class Scale(keras.layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, inputs):
            return inputs * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}
''')

SAVE_CUSTOM = textwrap.dedent('''
    import sys
    from pathlib import Path

    import keras
    import numpy as np

    folder = Path(sys.argv[1])
    sys.path.insert(0, str(folder))
    from scale_layer import Scale

    inputs = keras.Input((8, 8, 3))
    x = Scale(3.0, name="scale")(inputs)
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    model.save(folder / "custom.keras")
    model.save(folder / "custom.h5")
    probe = np.linspace(0, 1, 8 * 8 * 3, dtype="float32").reshape(1, 8, 8, 3)
    np.save(folder / "expected.npy", model.predict(probe, verbose=0))
    (folder / "scale_layer.imported").unlink()
''')


@pytest.fixture(scope="module")
def custom_files(tmp_path_factory):
    """A custom-layer model saved as .keras and .h5 by another process, so this one has never
    imported (or registered) the layer; its module leaves a marker when imported."""
    folder = tmp_path_factory.mktemp("custom")
    (folder / "scale_layer.py").write_text(CUSTOM_LAYER)
    (folder / "raises.py").write_text("raise RuntimeError('no licence server')\n")
    subprocess.run([sys.executable, "-c", SAVE_CUSTOM, str(folder)], check=True,
                   capture_output=True)
    return folder


def one_sentence(output: str, *parts: str) -> None:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    for part in parts:
        assert part in lines[0], lines[0]


# The refusals run first: once the layer is imported, Keras knows it for the whole process.
@pytest.mark.slow  # custom_files saves the model in a subprocess
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_custom_layer_without_the_flag_is_named_and_its_code_does_not_run(
        run_cli, custom_files, suffix):
    result = run_cli("layers", custom_files / f"custom{suffix}", expect=2)
    one_sentence(result.output, "custom class(es) cnnviz_test>Scale", "--custom-objects")
    assert not (custom_files / "scale_layer.imported").exists()


@pytest.mark.slow  # custom_files saves the model in a subprocess
@pytest.mark.parametrize(("name", "message"), [
    ("missing.py", "--custom-objects {folder}/missing.py: no such Python file."),
    ("raises.py", "--custom-objects {folder}/raises.py raised RuntimeError while importing: "
                  "no licence server."),
    ("no_such_module_here", "--custom-objects no_such_module_here is neither a Python file "
                            "nor a module"),
])
def test_bad_custom_objects_are_one_sentence_and_exit_2(run_cli, custom_files, name, message):
    spec = name if name.endswith("module_here") else custom_files / name
    result = run_cli("layers", custom_files / "custom.keras", "--custom-objects", spec,
                     expect=2)
    one_sentence(result.output, message.format(folder=custom_files))


@pytest.mark.slow  # custom_files saves the model in a subprocess
def test_custom_objects_apply_to_model_files_only(run_cli, custom_files):
    result = run_cli("layers", "demo", "--custom-objects", custom_files / "scale_layer.py",
                     expect=2)
    one_sentence(result.output, "--custom-objects applies to model files only")


@pytest.mark.slow  # custom_files saves the model in a subprocess
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_custom_layer_loads_with_the_flag(run_cli, custom_files, suffix):
    from cnnviz_cli import api

    result = run_cli("layers", custom_files / f"custom{suffix}", "--custom-objects",
                     custom_files / "scale_layer.py", "--json")
    assert (custom_files / "scale_layer.imported").exists()
    layers = {row["name"]: row["type"] for row in json.loads(result.output)["layers"]}
    assert layers["scale"] == "Scale"
    resolved = api.load_model(custom_files / f"custom{suffix}",
                              custom_objects=[custom_files / "scale_layer.py"])
    probe = np.linspace(0, 1, 8 * 8 * 3, dtype="float32").reshape(1, 8, 8, 3)
    np.testing.assert_allclose(resolved.model.predict(probe, verbose=0),
                               np.load(custom_files / "expected.npy"), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # custom_files saves the model in a subprocess
def test_a_module_name_is_imported_and_its_classes_offered(custom_files, monkeypatch):
    from cnnviz_cli.models.custom import custom_objects

    monkeypatch.syspath_prepend(str(custom_files))
    objects = custom_objects(["scale_layer"])
    assert objects["Scale"] is objects["cnnviz_test>Scale"]
    assert objects["Scale"].__module__ == "scale_layer"


def test_custom_objects_of_a_loaded_model_are_refused(demo_resolved):
    from cnnviz_cli import api

    with pytest.raises(CnnvizError, match="apply when a model is loaded"):
        api.load_model(demo_resolved, custom_objects=["x.py"])


# ---------- exported models: one hand-set Keras model as SavedModel, TFLite and ONNX ----------

SIZE = 12


@pytest.fixture(scope="module")
def exported(keras, tmp_path_factory):
    """The same hand-set model as .keras, SavedModel, .tflite, .onnx, channels-first .onnx and
    a channels-first .onnx ending in an op cnnviz does not translate (Shrink, here the identity):
    image -> Dense(4, relu) per pixel -> Flatten -> Dense(3) logits."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("exported")
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.Dense(4, activation="relu", name="features")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(
        keras.layers.Flatten()(features)))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    model.save(folder / "model.keras")
    model.export(str(folder / "saved"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved"))
    (folder / "model.tflite").write_bytes(converter.convert())
    onnx = pytest.importorskip("onnx")
    for name, channels_first, unknown in (("model.onnx", False, False),
                                          ("first.onnx", True, False),
                                          ("fallback.onnx", True, True)):
        onnx.save(onnx_model(onnx, model.get_weights(), channels_first, unknown), folder / name)
    return folder


def onnx_model(onnx, weights, channels_first: bool, unknown: bool = False):
    """The exported model's graph written node by node with the onnx helpers; `unknown` ends it
    in a Shrink node that changes nothing."""
    from onnx import TensorProto, helper, numpy_helper

    kernel, bias, dense, dense_bias = weights
    nodes, source = [], "image"
    if channels_first:
        nodes.append(helper.make_node("Transpose", ["image"], ["nhwc"], perm=[0, 2, 3, 1]))
        source = "nhwc"
    nodes += [helper.make_node("MatMul", [source, "kernel"], ["a"]),
              helper.make_node("Add", ["a", "bias"], ["b"]),
              helper.make_node("Relu", ["b"], ["c"]),
              helper.make_node("Reshape", ["c", "flat"], ["d"]),
              helper.make_node("MatMul", ["d", "dense"], ["e"]),
              helper.make_node("Add", ["e", "dense_bias"], ["f" if unknown else "logits"])]
    if unknown:
        nodes.append(helper.make_node("Shrink", ["f"], ["logits"], lambd=0.0, bias=0.0))
    constants = {"kernel": kernel, "bias": bias, "dense": dense, "dense_bias": dense_bias,
                 "flat": np.array([-1, SIZE * SIZE * 4], np.int64)}
    shape = ["batch", 3, SIZE, SIZE] if channels_first else ["batch", SIZE, SIZE, 3]
    graph = helper.make_graph(
        nodes, "hand_set", [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(value, name) for name, value in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)


def maps_of(model_path, pixels, methods, **options):
    from cnnviz_cli import api

    result = api.cam(model_path, list(pixels), methods=methods, classes=[1], **options)
    return {method: np.stack([maps[method] for maps in result.maps]) for method in methods}


PERTURBATION = {"patch": 3, "stride": 2, "fill": "blur", "masks": 64, "seed": 4}


def test_savedmodel_saliency_equals_the_keras_models(exported, pixels):
    methods = ["saliency", "gradient-input"]
    ours, theirs = (maps_of(exported / name, pixels, methods) for name in ("saved", "model.keras"))
    for method in methods:
        assert theirs[method].max() > 0
        np.testing.assert_allclose(ours[method], theirs[method],
                                   atol=1e-5 * theirs[method].max(), err_msg=method)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["saved", "model.tflite", "model.onnx", "first.onnx",
                                  "fallback.onnx"])
def test_perturbation_maps_of_exported_models_equal_the_keras_models(exported, pixels, name):
    methods = ["occlusion", "rise"]
    reference = maps_of(exported / "model.keras", pixels, methods, **PERTURBATION)
    maps = maps_of(exported / name, pixels, methods, **PERTURBATION)
    for method in methods:
        assert reference[method].max() > 0
        np.testing.assert_allclose(maps[method], reference[method],
                                   atol=1e-4 * reference[method].max(), err_msg=method)


@pytest.mark.parametrize("name", ["fallback.onnx", "model.tflite"])
def test_an_eager_call_of_a_forward_only_model_gives_the_batchs_outputs(exported, pixels, name):
    """(--reference embeddings are computed eagerly.)"""
    from cnnviz_cli import api

    batch = pixels.astype("float32")
    expected = api.load_model(exported / "model.keras").model(batch)
    np.testing.assert_allclose(api.load_model(exported / name).model(batch), expected,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["fallback.onnx", "model.tflite"])
def test_metrics_work_for_a_forward_only_model(run_cli, exported, tmp_path, name):
    from PIL import Image

    Image.fromarray(np.full((SIZE, SIZE, 3), 200, np.uint8)).save(tmp_path / "grey.png")
    out = tmp_path / "out"  # one image: the first pass has the batch size the file declares
    run_cli("cam", tmp_path / "grey.png", "-m", exported / name, "--method",
            "occlusion", "--patch", "4", "--stride", "4", "--metrics", "-q", "-o", out)
    entry = next(e for e in json.loads((out / "manifest.json").read_text())["outputs"]
                 if e.get("kind") == "overlay")
    assert 0 <= entry["deletion_auc"] <= 1 and 0 <= entry["insertion_auc"] <= 1
    assert entry["layer"] is None


@pytest.mark.parametrize(("name", "shape"), [("model.tflite", "?x12x12x3"),
                                            ("fallback.onnx", "?x3x12x12")])
def test_layers_prints_the_inputs_and_outputs(run_cli, exported, name, shape):
    output = run_cli("layers", exported / name).output
    assert "no layers" in output and shape in output and "?x3" in output
    assert ("channels first" in output) == name.endswith(".onnx")
    assert ("it uses Shrink, which cnnviz does not translate" in output) == name.endswith(".onnx")


@pytest.mark.parametrize(("args", "words"), [
    (["cam", "--method", "gradcam"], "gradcam cannot run on the SavedModel"),
    (["cam", "--method", "saliency", "--layer", "features"], "--layer applies to Keras models"),
    (["activations"], "cnnviz activations needs the model's layers"),
    (["cam", "--method", "saliency", "--sanity"], "--sanity and --metric randomisation "
     "re-initialise the model's layers"),
    (["cam", "--method", "saliency", "--metric", "randomisation"], "an exported model without "
     "layers; run them on its .keras file"),
])
def test_layer_methods_on_a_savedmodel_are_refused_saying_what_works(
        run_cli, exported, args, words):
    result = run_cli(args[0], "sample_images/star.png", "-m", exported / "saved", *args[1:],
                     "-o", exported / "never", expect=2)
    one_sentence(result.output, words)
    if args[:3] == ["cam", "--method", "gradcam"]:
        assert ("saliency, smoothgrad, smoothgrad-signed, integrated-gradients, gradient-input, "
                "occlusion and rise work here" in result.output and ".keras file" in result.output)
    assert not (exported / "never").exists()


def test_a_forward_only_model_refuses_gradient_methods(run_cli, exported):
    result = run_cli("cam", "sample_images/star.png", "-m", exported / "model.tflite",
                     "--method", "saliency", expect=2)
    one_sentence(result.output, "saliency cannot run on the TFLite model",
                 "occlusion and rise work here")


def test_bad_exported_models_are_one_sentence_and_exit_2(run_cli, exported, tmp_path, keras):
    import tensorflow as tf

    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.double = tf.function(lambda x: x * module.scale,
                                input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "unsigned"), signatures={})
    two = tf.function(lambda a, b: a + b, input_signature=[
        tf.TensorSpec([1, 4, 4, 3], tf.float32), tf.TensorSpec([1, 4, 4, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([two.get_concrete_function()],
                                                                module)
    (tmp_path / "two.tflite").write_bytes(converter.convert())
    module = tf.Module()  # a Keras model's weights stay variables the file never sets
    module.model = keras.models.load_model(exported / "model.keras")
    module.serve = tf.function(module.model, input_signature=[
        tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "module"), signatures={"serving_default":
                                                                      module.serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "module"))
    (tmp_path / "unset.tflite").write_bytes(converter.convert())
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07not a protobuf at all")
    (tmp_path / "plain").mkdir()
    cases = [
        (tmp_path / "unsigned", [], "has no serving signature"),
        (exported / "saved", ["--signature", "nope"], "has no signature 'nope'; it has serve, "
                                                      "serving_default"),
        (exported / "model.keras", ["--signature", "x"], "--signature applies to SavedModel"),
        (tmp_path / "two.tflite", [], "takes 2 inputs"),
        (tmp_path / "unset.tflite", [], "reads variables that nothing in it sets"),
        (tmp_path / "broken.onnx", [], "Cannot read the ONNX model"),
        (tmp_path / "plain", [], "is a folder but not a TensorFlow SavedModel"),
        (tmp_path / "missing.tflite", [], "does not exist"),
    ]
    for path, extra, words in cases:
        result = run_cli("layers", path, *extra, expect=2)
        one_sentence(result.output, words)


def test_without_onnxruntime_one_sentence_says_how_to_install(exported, monkeypatch):
    """A translated file needs no onnxruntime; the forward-only fallback does."""
    from cnnviz_cli import api
    from cnnviz_cli.models import resolve
    from cnnviz_cli.models.memo import Loaded

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(resolve, "LOADED", Loaded())  # a process that loaded neither file yet
    assert api.load_model(exported / "model.onnx").details["onnx"]["translated"]
    with pytest.raises(CnnvizError, match=r"needs onnxruntime: pip install 'cnnviz\[onnx\]'"):
        api.load_model(exported / "fallback.onnx")


def test_a_channels_first_keras_model_is_refused_in_one_sentence(keras, tmp_path, run_cli):
    inputs = keras.Input((3, SIZE, SIZE))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "first.keras")
    one_sentence(run_cli("layers", tmp_path / "first.keras", expect=2).output,
                 "takes channels-first input", "export it as a SavedModel or ONNX file")


def test_signature_chooses_the_savedmodels_function(run_cli, exported):
    result = run_cli("layers", exported / "saved", "--signature", "serve", "--json")
    model = json.loads(result.output)["model"]
    assert model["format"] == "savedmodel" and model["signature"] == "serve"


def test_keras_operations_in_an_h5_file_are_named_with_the_format_to_use(keras, tmp_path,
                                                                         run_cli):
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.ops.gelu(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(features)))
    model.save(tmp_path / "ops.h5")
    model.save(tmp_path / "ops.keras")
    one_sentence(run_cli("layers", tmp_path / "ops.h5", expect=2).output,
                 "calls Keras operations (Gelu) between its layers", "save the model as a .keras")
    assert "conv" in run_cli("layers", tmp_path / "ops.keras").output
