"""A full-integer quantised TFLite model (uint8 input and output) runs forward-only like a
float one: inputs quantised with the file's scale and zero point, outputs dequantised."""

import numpy as np
import pytest

SIDE = 32
SQUARE = (slice(8, 16), slice(16, 24))  # rows, columns of the green square


def _colour_classifier(keras):
    """Pixels in [0, 1]; class c is how much of the image is strongly of colour c."""
    inputs = keras.Input((SIDE, SIDE, 3))
    colours = keras.layers.Conv2D(3, 1, activation="relu", name="colours")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(colours)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="classes")(x))
    kernel = (2 * np.eye(3) - 1).astype(np.float32)  # own colour minus the others
    model.get_layer("colours").set_weights([kernel[None, None], np.full(3, -0.5, np.float32)])
    model.get_layer("classes").set_weights([40 * np.eye(3, dtype=np.float32),
                                            np.zeros(3, np.float32)])
    return model


@pytest.fixture(scope="module")
def models(keras, tmp_path_factory):
    """(the float Keras model, the path of its full-integer quantised .tflite)."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("quantised")
    model = _colour_classifier(keras)
    model.export(folder / "saved", verbose=False)
    rng = np.random.default_rng(0)

    def representative():  # squares of pure colours on black, as the images explained
        for number in range(24):
            image = np.zeros((1, SIDE, SIDE, 3), np.float32)
            top, left = rng.integers(0, SIDE - 8, 2)
            image[0, top:top + 8, left:left + 8, number % 3] = 1.0
            yield [image]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.uint8
    path = folder / "model.tflite"
    path.write_bytes(converter.convert())
    return model, path


def test_occlusion_on_the_quantised_model_matches_the_float_one(models):
    import cnnviz_cli as api

    model, path = models
    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    image[SQUARE] = (0, 255, 0)
    quantised = api.load_model(path, preprocess="unit")
    assert quantised.details["inputs"][0]["dtype"] == "uint8"
    assert "quantization" in quantised.details["outputs"][0]
    options = {"methods": ["occlusion"], "patch": 8, "stride": 8}
    expected = api.cam(api.load_model(model, preprocess="unit"), [image], **options)
    result = api.cam(quantised, [image], **options)
    assert result.classes == expected.classes == [1]
    # the file's output is its softmax, dequantised (uint8 steps of 1/256)
    assert result.scores[0] == pytest.approx(expected.probabilities[0], abs=0.02)
    heatmap = result.maps[0]["occlusion"]
    peak_row, peak_column = np.unravel_index(heatmap.argmax(), heatmap.shape)
    assert SQUARE[0].start <= peak_row < SQUARE[0].stop
    assert SQUARE[1].start <= peak_column < SQUARE[1].stop


def test_rise_and_the_metrics_run_on_the_quantised_model(models):
    import cnnviz_cli as api

    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    image[SQUARE] = (0, 255, 0)
    result = api.cam(api.load_model(models[1], preprocess="unit"), [image], methods=["rise"],
                     masks=64, metrics=True, metric_steps=4)
    assert result.classes == [1] and result.maps[0]["rise"].any()
    fields = result.items[0].fields["rise"]
    assert 0 <= fields["deletion_auc"] <= 1 and 0 <= fields["insertion_auc"] <= 1
