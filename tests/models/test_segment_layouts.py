"""Segmentation outputs in either layout, with free dimensions, as Keras models and exports.

The models compute by hand: a 1x1 convolution sees how red each pixel is, and a 1x1 classifier
turns that into class maps (background, red) or one sigmoid map (red = foreground); a Permute
makes the output channels-first. The explained region is the red square, so every map must lie
on it (or, for the background, off it).
"""

import numpy as np
import pytest

SIDE = 64
SQUARE = (slice(16, 32), slice(40, 56))  # rows, columns of the red square


def _segmenter(keras, classes: int):
    """(batch, classes, h, w) from an image of any size; classes 1 is one sigmoid map."""
    inputs = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(2, 1, activation="relu", name="features")(inputs)
    activation = "sigmoid" if classes == 1 else None
    maps = keras.layers.Conv2D(classes, 1, activation=activation, name="classifier")(features)
    model = keras.Model(inputs, keras.layers.Permute((3, 1, 2), name="to_first")(maps))
    red = np.zeros((1, 1, 3, 2), np.float32)
    red[0, 0, 0] = [1 / 255, -1 / 255]  # channel 0: redness above half, channel 1: below
    model.get_layer("features").set_weights([red, np.array([-0.5, 0.5], np.float32)])
    sign = np.array([[-8.0, 8.0], [8.0, -8.0]], np.float32)  # (background, red) per feature
    kernel = sign[:, 1:] if classes == 1 else sign
    model.get_layer("classifier").set_weights([kernel[None, None], np.zeros(classes, np.float32)])
    return model


@pytest.fixture(scope="module")
def scene():
    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    image[SQUARE] = (255, 0, 0)
    return image


def _inside_share(heatmap: np.ndarray) -> float:
    """The share of the map's mass on the red square."""
    heatmap = np.abs(heatmap)
    return float(heatmap[SQUARE].sum() / heatmap.sum())


def _on_square(result, method: str) -> bool:
    """Whether the map is, per pixel, at least 4 times stronger on the square than off it."""
    heatmap = np.abs(result.maps[0][method])
    outside = np.ones(heatmap.shape, bool)
    outside[SQUARE] = False
    return heatmap[SQUARE].mean() > 4 * heatmap[outside].mean()


def test_channels_first_keras_map_is_read_as_classes(keras, scene):
    import cnnviz_cli as api
    from cnnviz_cli.models.heads import detect_head

    model = _segmenter(keras, 2)
    head = detect_head(model)
    assert (head.task, head.channels_first, head.num_classes) == ("segment", True, 2)
    result = api.cam(model, [scene], classes=[1], methods=["saliency", "occlusion"], size=SIDE,
                     patch=8, stride=8)
    assert result.classes == [1]
    assert _on_square(result, "saliency") and _on_square(result, "occlusion")
    region = result.items[0].region
    assert region[SQUARE].all() and region.sum() == region[SQUARE].size


def test_one_channel_map_explains_foreground_then_background(keras, scene):
    import cnnviz_cli as api

    model = _segmenter(keras, 1)
    result = api.cam(model, [scene], methods=["saliency"], size=SIDE)
    assert (result.classes, result.labels) == ([1], ["foreground"])
    assert _on_square(result, "saliency")
    probability = result.probabilities[0]
    assert probability == pytest.approx(1 / (1 + np.exp(-8 * 0.5)), rel=1e-4)
    background = api.cam(model, [scene], classes=["background"], methods=["saliency"], size=SIDE)
    assert background.labels == ["background"]
    assert _inside_share(background.maps[0]["saliency"]) < 0.05


@pytest.fixture(scope="module")
def exports(keras, tmp_path_factory):
    """The one-channel segmenter as a SavedModel folder and a .tflite file, both with free
    height and width."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("exports")
    _segmenter(keras, 1).export(folder / "saved", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved"))
    (folder / "model.tflite").write_bytes(converter.convert())
    return folder


@pytest.mark.parametrize(("name", "methods"), [("saved", ["saliency", "occlusion", "rise"]),
                                               ("model.tflite", ["occlusion", "rise"])])
def test_exported_one_channel_map_with_free_dims(exports, scene, name, methods):
    import cnnviz_cli as api

    model = api.load_model(exports / name)
    assert model.model.outputs[0].shape[1:] == (1, None, None)
    result = api.cam(model, [scene], methods=methods, size=SIDE, patch=8, stride=8, masks=200)
    assert result.labels == ["foreground"]
    for method in methods:
        assert _on_square(result, method), method
