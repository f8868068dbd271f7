"""Deconvnet and guided backprop against a NumPy computation of each paper's backward rule."""

import numpy as np
import pytest

NUMPY_RULES = {
    "guided": lambda z, upstream: upstream * (z > 0) * (upstream > 0),
    "deconvnet": lambda z, upstream: np.maximum(upstream, 0.0),
    "plain": lambda z, upstream: upstream * (z > 0),
}


@pytest.fixture(scope="module")
def relu_zoo(keras):
    """6x6x1 -> conv1 (ReLU inside) -> 2x2 max pool -> 1x1 conv -> ReLU layer -> 1x1 conv ->
    Activation('relu'): every kind of ReLU the rebuild must replace, with known weights."""
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(3, 1, name="mix")(x)
    x = keras.layers.ReLU(name="mix_relu")(x)
    x = keras.layers.Conv2D(2, 1, name="top")(x)
    x = keras.layers.Activation("relu", name="top_relu")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def _numpy_projection(model, image, channel, rule, extent="unit"):
    """Forward pass and the rule's backward pass written out by hand for `relu_zoo`: from the
    channel's strongest unit alone (extent "unit") or from its whole map ("map")."""
    kernel1, bias1, kernel2, bias2, kernel3, bias3 = model.get_weights()
    z1 = np.zeros((4, 4, 2))
    for i in range(4):
        for j in range(4):
            z1[i, j] = np.tensordot(image[i:i + 3, j:j + 3], kernel1, axes=3) + bias1
    y1 = np.maximum(z1, 0)
    blocks = y1.reshape(2, 2, 2, 2, 2).transpose(0, 2, 4, 1, 3).reshape(2, 2, 2, 4)
    pooled, switches = blocks.max(axis=-1), blocks.argmax(axis=-1)
    z2 = pooled @ kernel2[0, 0] + bias2
    z3 = np.maximum(z2, 0) @ kernel3[0, 0] + bias3
    y3 = np.maximum(z3, 0)
    row, column = np.unravel_index(np.argmax(y3[..., channel]), (2, 2))
    upstream = np.zeros_like(z3)
    upstream[(row, column, channel) if extent == "unit" else (..., channel)] = 1.0
    rule = NUMPY_RULES[rule]
    upstream = rule(z2, rule(z3, upstream) @ kernel3[0, 0].T) @ kernel2[0, 0].T
    unpooled = np.zeros_like(z1)
    for i, j, c in np.ndindex(2, 2, 2):
        a, b = divmod(switches[i, j, c], 2)
        unpooled[2 * i + a, 2 * j + b, c] = upstream[i, j, c]
    upstream = rule(z1, unpooled)
    gradient = np.zeros_like(image)
    for i in range(4):
        for j in range(4):
            gradient[i:i + 3, j:j + 3] += kernel1 @ upstream[i, j]
    return gradient, y3[row, column, channel], (row, column)


@pytest.fixture(scope="module")
def zoo_images():
    return np.random.default_rng(5).normal(size=(3, 6, 6, 1)).astype("float32")


@pytest.mark.parametrize("extent", ["unit", "map"])
@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_projection_matches_numpy_rule(relu_zoo, zoo_images, rule, extent):
    from cnnviz_cli.techniques.backprop import Projector

    projector = Projector(relu_zoo, "top_relu", rule, (6, 6, 1), extent=extent)
    result = projector(zoo_images, channels=[0, 1])
    for index, image in enumerate(zoo_images.astype("float64")):
        for slot, channel in enumerate((0, 1)):
            gradient, value, position = _numpy_projection(relu_zoo, image, channel, rule, extent)
            np.testing.assert_allclose(result.images[index, slot], gradient, atol=1e-4)
            np.testing.assert_allclose(result.activations[index, slot], value, atol=1e-4)
            assert tuple(result.positions[index, slot]) == position


def test_rules_differ_and_user_model_keeps_its_gradient(relu_zoo, zoo_images):
    """The rebuilt graphs really change the backward pass, and the user's model does not."""
    import tensorflow as tf

    from cnnviz_cli.techniques.backprop import Projector

    projections = {
        rule: Projector(relu_zoo, "top_relu", rule, (6, 6, 1))(zoo_images, channels=[0]).images
        for rule in ("guided", "deconvnet")
    }
    assert not np.allclose(projections["guided"], projections["deconvnet"], atol=1e-3)
    pixels = tf.convert_to_tensor(zoo_images)
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        outputs = relu_zoo(pixels)[..., 0]
        peaks = tf.reduce_max(tf.reshape(outputs, [3, -1]), axis=1)
    plain = tape.gradient(peaks, pixels).numpy()
    for index, image in enumerate(zoo_images.astype("float64")):
        expected, _, _ = _numpy_projection(relu_zoo, image, 0, "plain")
        np.testing.assert_allclose(plain[index], expected, atol=1e-4)
    assert not np.allclose(plain, projections["guided"][:, 0], atol=1e-3)
    assert relu_zoo.get_layer("conv1").activation.__name__ == "relu"


def test_strongest_channels_are_projected_by_default(relu_zoo, zoo_images):
    from cnnviz_cli.techniques.backprop import Projector

    result = Projector(relu_zoo, "top_relu", "guided", (6, 6, 1))(zoo_images, count=5)
    assert result.channels.shape == (3, 2)  # only two channels exist
    peaks = relu_zoo(zoo_images).numpy().max(axis=(1, 2))
    np.testing.assert_array_equal(result.channels, np.argsort(-peaks, axis=1))
    np.testing.assert_allclose(result.activations, -np.sort(-peaks, axis=1), atol=1e-5)


def test_relus_inside_nested_models_are_replaced(keras, nested_model):
    """The nested backbone projects exactly like the same layers laid out flat."""
    from cnnviz_cli.techniques.backprop import Projector

    backbone = nested_model.get_layer("backbone")
    flat = keras.Sequential([keras.Input((16, 16, 3)), *backbone.layers[1:]])
    images = np.random.default_rng(2).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    nested = Projector(nested_model, "backbone/conv2", "guided", (16, 16, 3))(images, count=3)
    alone = Projector(flat, "conv2", "guided", (16, 16, 3))(images, count=3)
    np.testing.assert_array_equal(nested.channels, alone.channels)
    np.testing.assert_allclose(nested.images, alone.images, atol=1e-5)
