"""Multi-input models: the image input found by shape, the others held at --input values."""

import json

import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError


@pytest.fixture(scope="module")
def image_and_meta(keras):
    """image (12x12x3) and meta (2,): conv 'conv' -> GAP, concatenated with meta -> a ReLU
    layer -> 3 logits, so the class gradient at 'conv' depends on meta."""
    image = keras.Input((12, 12, 3), name="pixels")
    meta = keras.Input((2,), name="meta")
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(image)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    hidden = keras.layers.Dense(6, activation="relu", name="hidden")(
        keras.layers.Concatenate()([pooled, meta]))
    model = keras.Model([meta, image], keras.layers.Dense(3, name="logits")(hidden))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.6, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def _reference_gradcam(model, pixels: np.ndarray, meta: np.ndarray, class_index: int):
    """GradCAM at 'conv' written here: the class logit's gradient averaged over space weights
    the feature maps; ReLU."""
    import keras
    import tensorflow as tf

    conv = model.get_layer("conv")
    both = keras.Model(model.inputs, [conv.output, model.output])

    @tf.function
    def maps_and_gradients(meta_batch, images):
        with tf.GradientTape() as tape:
            features, logits = both([meta_batch, images])
            score = logits[:, class_index]
        return features, tape.gradient(score, features), logits

    features, gradients, logits = (value.numpy() for value in maps_and_gradients(
        tf.constant(meta[None]), tf.constant(pixels[None])))
    weights = gradients[0].mean(axis=(0, 1))
    return np.maximum(np.einsum("hwk,k->hw", features[0], weights), 0), logits[0]


def test_gradcam_with_fixed_meta_equals_the_reference(image_and_meta, tmp_path):
    from cnnviz_cli import cam

    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)
    maps = []
    for meta in (np.array([2.0, -2.0], "float32"), np.array([-2.0, 2.0], "float32")):
        expected, logits = _reference_gradcam(image_and_meta, pixels / np.float32(255), meta, 1)
        result = cam(image_and_meta, pixels, inputs=[f"meta={meta[0]},{meta[1]}"],
                     methods=["gradcam"], classes=["1"], preprocess="unit")
        found = result.items[0].maps["gradcam"]
        assert result.items[0].record["score"] == pytest.approx(float(logits[1]), rel=1e-4)
        scale = max(expected.max(), 1e-6)
        np.testing.assert_allclose(found / scale, expected / scale, atol=1e-4)
        maps.append(found)
        assert expected.max() > 0
    assert not np.allclose(maps[0], maps[1])  # the fixed input changes the explanation


def test_values_from_a_file_are_recorded(image_and_meta, tmp_path):
    from cnnviz_cli import cam

    np.save(tmp_path / "meta.npy", np.array([[1.0, 2.0]], "float32"))
    pixels = np.full((12, 12, 3), 90, np.uint8)
    cam(image_and_meta, pixels, inputs=[f"meta={tmp_path / 'meta.npy'}"],
        image_input="pixels", methods=["gradcam"], out=tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["fixed_inputs"] == {"meta": [[1.0, 2.0]]}
    assert manifest["model"]["image_input"] == "pixels"


@pytest.mark.parametrize(("inputs", "image_input", "message"), [
    ([], None, "input meta .* needs a fixed value: give --input meta="),
    (["meta=1"], None, "has 1 value"),
    (["meta=a,b"], None, "not a list of numbers"),
    (["other=1,2"], None, "not an input of the model"),
    (["meta=1,2"], "images", "no input of that name; its inputs are meta, pixels"),
])
def test_bad_fixed_inputs_are_one_sentence(image_and_meta, inputs, image_input, message):
    from cnnviz_cli import load_model

    with pytest.raises(CnnvizError, match=message):
        load_model(image_and_meta, inputs=inputs, image_input=image_input)


def test_fixed_inputs_on_a_one_input_model_are_refused(tiny_conv_model):
    from cnnviz_cli import load_model

    with pytest.raises(CnnvizError, match="apply only to models with several inputs"):
        load_model(tiny_conv_model, inputs=["meta=1"])


def test_the_command_line_takes_input_values(run_cli, image_and_meta, tmp_path):
    from PIL import Image

    image_and_meta.save(tmp_path / "two.keras")
    Image.fromarray(np.full((30, 20, 3), 200, np.uint8)).save(tmp_path / "photo.png")
    run_cli("cam", "-m", tmp_path / "two.keras", tmp_path / "photo.png", "--input",
            "meta=0.5,1", "--method", "gradcam", "-o", tmp_path / "out", "-q")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["fixed_inputs"] == {"meta": [0.5, 1.0]}
    assert "--input meta=0.5,1" in manifest["command_line"]
