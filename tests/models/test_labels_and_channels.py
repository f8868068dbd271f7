"""Class names at the model boundary: labels that are numbers, a regression's name, and the
colour order of a BGR (caffe) model's first kernels."""

import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError


@pytest.fixture(scope="module")
def rotation_model(keras):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def test_number_labels_are_matched_as_labels_first(rotation_model):
    import cnnviz_cli as api

    resolved = api.load_model(rotation_model, labels=["0", "180"])
    assert resolved.class_index("180", 2) == 1  # a label, though a number
    assert resolved.class_index("0", 2) == 0
    assert resolved.class_index("1", 2) == 1  # not a label: an index
    with pytest.raises(CnnvizError, match="not a label, and as an index it is out of range"):
        resolved.class_index("90", 2)


def test_regression_is_labelled_by_its_output_name(keras):
    import cnnviz_cli as api

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, name="age")(x))
    image = np.random.default_rng(0).integers(0, 255, (8, 8, 3), np.uint8)
    result = api.cam(model, [image], methods=["saliency"])
    assert result.labels == ["age"]
    assert result.items[0].record["task"] == "regress"


def test_caffe_first_kernels_are_drawn_in_rgb(keras):
    import cnnviz_cli as api

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, use_bias=False, name="conv")(inputs))
    kernel = np.zeros((3, 3, 3, 1), np.float32)
    kernel[..., 2, 0] = 1.0  # the model's channel 2: red, for caffe's BGR input
    model.get_layer("conv").set_weights([kernel])
    drawn = api.filters(api.load_model(model, preprocess="caffe")).kernels[0]  # (h, w, RGB)
    assert (drawn[..., 0] == 1).all() and not drawn[..., 1:].any()
    unchanged = api.filters(api.load_model(model, preprocess="none")).kernels[0]
    assert (unchanged[..., 2] == 1).all() and not unchanged[..., :2].any()
