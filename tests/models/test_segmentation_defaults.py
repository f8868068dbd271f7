"""`-l auto` and every command's default layers on a segmentation model never pick its final
classifier (or what only resizes and activates its output): they pick the map before it."""

import pytest


@pytest.fixture(scope="module")
def deeplab(keras):
    """DeepLabV3-shaped: a strided encoder, an ASPP-like head (dilated branches, concatenated,
    1x1 conv, ReLU), a 1x1 classifier convolution, upsampling back to the input, softmax."""
    layers = keras.layers
    inputs = keras.Input((64, 64, 3))
    x = inputs
    for number in range(3):
        x = layers.Conv2D(8 * 2**number, 3, strides=2, padding="same", activation="relu",
                          name=f"encoder_{number}")(x)
    branches = [layers.Conv2D(8, 3, dilation_rate=rate, padding="same", activation="relu",
                              name=f"aspp_rate_{rate}")(x) for rate in (1, 2, 4)]
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = layers.Conv2D(16, 1, name="head_conv")(x)
    x = layers.BatchNormalization(name="head_norm")(x)
    x = layers.ReLU(name="segmentation_head_relu")(x)
    x = layers.Conv2D(5, 1, name="segmentation_output")(x)
    x = layers.UpSampling2D(8, interpolation="bilinear", name="upsample")(x)
    return keras.Model(inputs, layers.Softmax(name="probabilities")(x), name="deeplab")


def test_auto_is_the_map_before_the_classifier(deeplab):
    from cnnviz_cli.models.layers import default_layers, last_feature_map

    assert last_feature_map(deeplab).path == "segmentation_head_relu"
    chosen = {info.path for infos in default_layers(deeplab).values() for info in infos}
    assert not chosen & {"segmentation_output", "upsample", "probabilities"}


def test_classifier_stays_selectable_by_name(deeplab):
    from cnnviz_cli.models.layers import find_feature_map

    assert find_feature_map(deeplab, "segmentation_output").output_shape == (None, 8, 8, 5)
