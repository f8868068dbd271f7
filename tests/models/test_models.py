"""Model, preprocessing, label and layer resolution, checked against direct computations."""

import json

import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.extract import build_extractor, ends_in_softmax
from cnnviz_cli.models.labels import imagenet_labels, read_labels
from cnnviz_cli.models.layers import (
    default_layers,
    find_feature_map,
    find_layer,
    last_feature_map,
)
from cnnviz_cli.models.preprocessing import resolve_preprocess
from cnnviz_cli.models.resolve import ModelRequest, resolve_model


def test_imagenet_labels_are_the_keras_order():
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert (labels[0], labels[281], labels[999]) == ("tench", "tabby", "toilet_tissue")


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "mobilenet_v2", "inceptionv3"])
def test_application_preprocess_matches_keras(keras, name):
    module = {"vgg16": "vgg16", "resnet50": "resnet", "mobilenet_v2": "mobilenet_v2",
              "inceptionv3": "inception_v3"}[name]
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(x.copy())
    np.testing.assert_allclose(resolve_preprocess(name)(x), expected, rtol=1e-5, atol=1e-4)


def test_presets_by_formula():
    x = np.array([[[[0.0, 127.5, 255.0]]]], dtype="float32")
    np.testing.assert_allclose(resolve_preprocess("unit")(x), [[[[0, 0.5, 1]]]])
    np.testing.assert_allclose(resolve_preprocess("symmetric")(x), [[[[-1, 0, 1]]]])
    caffe = resolve_preprocess("caffe")(x)
    np.testing.assert_allclose(caffe, [[[[255 - 103.939, 127.5 - 116.779, 0 - 123.68]]]], atol=1e-4)
    torch = resolve_preprocess("torch")(x)
    np.testing.assert_allclose(torch[0, 0, 0, 0], (0 - 0.485) / 0.229, rtol=1e-5)


def test_unknown_preprocess_and_model_name_suggest():
    with pytest.raises(CnnvizError, match="caffe"):
        resolve_preprocess("cafe")
    with pytest.raises(CnnvizError, match="Closest: .*vgg16"):
        resolve_model(ModelRequest(model="vgg61"))


def test_labels_files(tmp_path):
    (tmp_path / "l.txt").write_text("cat\n\ndog\n")
    (tmp_path / "l.json").write_text(json.dumps({"1": "dog", "0": "cat"}))
    assert read_labels(tmp_path / "l.txt") == ("cat", "dog")
    assert read_labels(tmp_path / "l.json") == ("cat", "dog")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CnnvizError, match="not valid JSON"):
        read_labels(tmp_path / "bad.json")


def test_file_models_keras_and_legacy_h5(tmp_path, tiny_conv_model):
    x = np.random.default_rng(2).uniform(0, 1, (1, 8, 8, 3)).astype("float32")
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"m{suffix}"
        tiny_conv_model.save(path)
        resolved = resolve_model(ModelRequest(model=str(path), preprocess="unit"))
        np.testing.assert_allclose(resolved.model(x), tiny_conv_model(x), rtol=1e-5)
        assert resolved.prepare(np.full((1, 2, 2, 3), 255, np.uint8)).max() == pytest.approx(1.0)


def test_bad_model_files(tmp_path, tiny_conv_model):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(CnnvizError, match="not a Keras model file: a .keras file is a zip"):
        resolve_model(ModelRequest(model=str(junk)))
    with pytest.raises(CnnvizError, match="does not exist"):
        resolve_model(ModelRequest(model=str(tmp_path / "missing.keras")))
    weights = tmp_path / "only.weights.h5"
    tiny_conv_model.save_weights(weights)
    with pytest.raises(CnnvizError, match="holds only weights|Cannot load"):
        resolve_model(ModelRequest(model=str(weights)))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_model_needs_opt_in(tmp_path, keras, suffix):
    marker = tmp_path / "ran"

    # self-contained code (no closure) with a side effect that shows it ran
    touch_and_double = eval(
        f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t * 2.0)[1]")
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(touch_and_double, name="double")(inputs)
    path = tmp_path / f"lambda{suffix}"
    keras.Model(inputs, outputs).save(path)
    marker.unlink()
    with pytest.raises(CnnvizError, match="--unsafe-deserialization"):
        resolve_model(ModelRequest(model=str(path)))
    assert not marker.exists()
    resolved = resolve_model(ModelRequest(model=str(path), unsafe_deserialization=True))
    assert resolved.model.layers[-1].name == "double" and marker.exists()


def test_non_image_model_refused(keras, tmp_path):
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(2)])
    path = tmp_path / "dense.keras"
    model.save(path)
    with pytest.raises(CnnvizError, match="image model"):
        resolve_model(ModelRequest(model=str(path)))


def test_application_by_name_without_weights_and_its_own_preprocessing():
    resolved = resolve_model(ModelRequest(model="MobileNet_V2", weights="none"))
    assert resolved.input_shape == (224, 224, 3)
    assert resolved.label(281) == "tabby"
    assert resolved.class_index("Tabby", 1000) == 281
    with pytest.raises(CnnvizError, match="out of range"):
        resolved.class_index("1000", 1000)
    with pytest.raises(CnnvizError, match="Unknown class label 'tabbby'. Closest: tabby"):
        resolved.class_index("tabbby", 1000)
    assert last_feature_map(resolved.model).path == "out_relu"
    assert (resolved.source, resolved.describe()["default_size"]) == ("mobilenet_v2", [224, 224])
    assert resolved.summary() == ("preprocess mobilenet_v2 (the model's own), 224x224 px, "
                                  "1000 labels")


def test_layer_lookup_nested(nested_model):
    assert find_layer(nested_model, "backbone/conv2").layer.name == "conv2"
    assert find_layer(nested_model, "conv1").path == "backbone/conv1"
    assert find_layer(nested_model, "-2").path == "logits"
    assert last_feature_map(nested_model).path == "backbone/conv2"
    with pytest.raises(CnnvizError, match="Closest: backbone/conv2"):
        find_layer(nested_model, "backbone/conv3")
    with pytest.raises(CnnvizError, match="not a .* feature map"):
        find_feature_map(nested_model, "logits")
    assert [i.path for i in default_layers(nested_model)["activations"]] == [
        "backbone/conv1", "backbone/conv2"]


def test_extractor_reaches_inside_nested_model_and_drops_softmax(nested_model, keras):
    x = np.random.default_rng(3).normal(size=(2, 16, 16, 3)).astype("float32")
    extractor = build_extractor(nested_model, ["backbone/conv1", "backbone/conv2"], logits=True)
    conv1, conv2, logits = (t.numpy() for t in extractor(x))
    backbone = nested_model.get_layer("backbone")
    inner = keras.Model(backbone.inputs, [backbone.get_layer("conv1").output, backbone.output])
    expected1, expected2 = (t.numpy() for t in inner(x))
    np.testing.assert_allclose(conv1, expected1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(conv2, expected2, rtol=1e-5, atol=1e-5)
    dense = nested_model.get_layer("logits")
    kernel, bias = (w.numpy() for w in dense.weights)
    np.testing.assert_allclose(logits, expected2.mean(axis=(1, 2)) @ kernel + bias, rtol=1e-4)
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(nested_model(x), probabilities, rtol=1e-4)
    assert ends_in_softmax(nested_model)


def test_extractor_dense_softmax_logits(tiny_conv_model):
    x = np.random.default_rng(4).normal(size=(3, 8, 8, 3)).astype("float32")
    conv, logits = (t.numpy() for t in build_extractor(tiny_conv_model, ["conv"], logits=True)(x))
    kernel, bias = (w.numpy() for w in tiny_conv_model.get_layer("predictions").weights)
    np.testing.assert_allclose(logits, conv.mean(axis=(1, 2)) @ kernel + bias, rtol=1e-4)
    assert tiny_conv_model.get_layer("predictions").activation.__name__ == "softmax"


def test_demo_model_is_bundled(demo_resolved):
    assert demo_resolved.labels[:3] == ("circle", "square", "triangle")
    assert demo_resolved.input_shape[:2] == (None, None)
    assert demo_resolved.image_size(None) == (128, 128)
    assert demo_resolved.image_size(300) == (300, 300)


@pytest.fixture(scope="module")
def demo_weights(tmp_path_factory):
    """A weights file for the demo architecture with new random values, and those values."""
    model = resolve_model(ModelRequest()).model
    rng = np.random.default_rng(3)
    values = [rng.normal(size=w.shape).astype("float32") for w in model.get_weights()]
    model.set_weights(values)
    path = tmp_path_factory.mktemp("weights") / "epoch_00.weights.h5"
    model.save_weights(path)
    return path, values


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_file_loads_into_the_demo_model_and_is_recorded(demo_weights):
    path, values = demo_weights
    resolved = resolve_model(ModelRequest(weights=str(path)))
    for loaded, saved in zip(resolved.model.get_weights(), values, strict=True):
        np.testing.assert_array_equal(loaded, saved)
    description = resolved.describe()
    assert description["weights"] == str(path)
    assert description["weights_sha256"] == _sha256(path)


def test_weights_file_loads_into_a_model_file(tmp_path, tiny_conv_model, keras):
    path = tmp_path / "tiny.keras"
    tiny_conv_model.save(path)
    other = keras.models.clone_model(tiny_conv_model)
    values = [np.full(w.shape, 0.25, "float32") for w in other.get_weights()]
    other.set_weights(values)
    weights = tmp_path / "tiny.weights.h5"
    other.save_weights(weights)
    resolved = resolve_model(ModelRequest(str(path), weights=str(weights)))
    for loaded, saved in zip(resolved.model.get_weights(), values, strict=True):
        np.testing.assert_array_equal(loaded, saved)
    assert resolved.describe()["weights_sha256"] == _sha256(weights)


def test_filters_draws_the_weights_file(run_cli, demo_weights, tmp_path):
    path, values = demo_weights
    run_cli("-q", "filters", "--weights", path, "-o", tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    kernel = values[0]  # block1_conv1's kernel: (3, 3, 3, filters)
    expected = np.sqrt((kernel.astype("float64") ** 2).sum(axis=(0, 1, 2)))
    np.testing.assert_allclose(manifest["outputs"][0]["norms"], expected, rtol=1e-5)
    assert manifest["model"]["weights"] == str(path)
    assert manifest["model"]["weights_sha256"] == _sha256(path)


def _one_sentence(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and lines[0].endswith("."), lines
    return lines[0]


def test_weights_that_cannot_take_effect_are_refused(run_cli, sample_dir, small_model_file,
                                                     tmp_path):
    star = sample_dir / "star.png"
    line = _one_sentence(run_cli("cam", star, "--weights", tmp_path / "nothere.h5",
                                 "-o", tmp_path / "o", expect=2))
    assert "nothere.h5 does not exist" in line
    for model in ("demo", small_model_file):
        for weights in ("imagenet", "none", "None"):
            line = _one_sentence(run_cli("layers", "-m", model, "--weights", weights, expect=2))
            assert f"--weights {weights} applies to named models only" in line
    (tmp_path / "notes.txt").write_text("hello")
    line = _one_sentence(run_cli("layers", "--weights", tmp_path / "notes.txt", expect=2))
    assert "notes.txt" in line


def test_weights_that_do_not_fit_fail_in_one_sentence_without_warnings(
        run_cli, tmp_path, small_model_file, nested_model):
    import warnings

    weights = tmp_path / "nested.weights.h5"
    nested_model.save_weights(weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CnnvizError) as raised:
            resolve_model(ModelRequest(str(small_model_file), weights=str(weights)))
    assert caught == []
    message = str(raised.value)
    assert message.count(". ") == 0 and message.endswith(".") and "\n" not in message
    assert message.startswith(f"Cannot load the weights file {weights} into {small_model_file}")
    line = _one_sentence(run_cli("-q", "filters", "--checkpoint", weights, "-o", tmp_path / "o",
                                 expect=2))
    assert f"Cannot load checkpoint {weights}" in line


def test_non_model_files_fail_in_one_sentence(run_cli, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    for args in (("layers", "-m", notes), ("-q", "filters", "--checkpoint", notes,
                                           "-o", tmp_path / "o")):
        line = _one_sentence(run_cli(*args, expect=2))
        assert "notes.txt is not a Keras model" in line and "TFSMLayer" not in line
    line = _one_sentence(run_cli("layers", "-m", tmp_path, expect=2))
    assert "is a folder" in line


def test_model_name_aliases():
    from cnnviz_cli.models.registry import APPLICATIONS, canonical_name

    for name, entry in APPLICATIONS.items():
        for spelling in (name, name.upper(), name.replace("_", ""), entry.constructor,
                         entry.constructor.lower()):
            assert canonical_name(spelling) == name, spelling
    assert canonical_name("mobilenetv2") == "mobilenet_v2"
    assert canonical_name("EfficientNetB0") == "efficientnetb0"
    assert canonical_name("resnet50-v2") == "resnet50v2"
    assert canonical_name("mobilenetv4") is None


def test_preprocess_accepts_model_aliases(keras):
    x = np.random.default_rng(4).uniform(0, 255, (1, 4, 4, 3)).astype("float32")
    expected = keras.applications.mobilenet_v2.preprocess_input(x.copy())
    np.testing.assert_allclose(resolve_preprocess("MobileNetV2")(x), expected, rtol=1e-6)


def test_models_lists_canonical_names(run_cli):
    from cnnviz_cli.models.registry import APPLICATIONS

    listed = [line.split()[0] for line in run_cli("models").output.splitlines()]
    assert listed == ["demo", *APPLICATIONS]
    rows = json.loads(run_cli("models", "--json").output)
    assert [row["name"] for row in rows] == ["demo", *APPLICATIONS]
    assert {row["name"]: row["input_size"] for row in rows[1:]} == {
        name: entry.input_size for name, entry in APPLICATIONS.items()}


def test_unknown_class_label_lists_labels(demo_resolved):
    from dataclasses import replace

    with pytest.raises(CnnvizError, match=r"Unknown class label 'hexagonn'\. Closest: hexagon\."):
        replace(demo_resolved, labels=("circle", "hexagon", "star")).class_index("hexagonn", 3)
    with pytest.raises(CnnvizError) as raised:
        demo_resolved.class_index("zebra", 6)
    assert str(raised.value).endswith(f"The labels are: {', '.join(demo_resolved.labels)}.")
    many = tuple(f"class{number:03d}" for number in range(100))
    with pytest.raises(CnnvizError) as raised:
        replace(demo_resolved, labels=many).class_index("zebra", 100)
    message = str(raised.value)
    assert "class000, class001" in message and "class099" not in message
    shown = message.split("The labels are: ")[1].split(" and ")[0].split(", ")
    assert f"and {100 - len(shown)} more" in message


def test_model_file_defaults_are_recorded_and_summarised(small_model_file):
    plain = resolve_model(ModelRequest(str(small_model_file)))
    description = plain.describe()
    assert (description["preprocess"], description["preprocess_origin"]) == (
        "none", "default for model files")
    assert description["default_size"] == [224, 224]
    assert plain.summary() == "preprocess none (default for model files), 224x224 px, no labels"
    assert "96x96 px" in plain.summary(96)
    given = resolve_model(ModelRequest(str(small_model_file), preprocess="MobileNetV2"))
    assert given.describe()["preprocess"] == "mobilenet_v2"
    assert given.summary().startswith("preprocess mobilenet_v2 (--preprocess), 224x224 px")


def test_layer_index_out_of_range_names_the_unit(tiny_conv_model):
    with pytest.raises(CnnvizError, match=r"the model has 3 layers\.$"):  # conv, gap, predictions
        find_layer(tiny_conv_model, "-4")
    assert find_layer(tiny_conv_model, "-3").path == "conv"
