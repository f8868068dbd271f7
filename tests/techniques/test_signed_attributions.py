"""Signed attributions: Gradient x Input per channel against NumPy, Integrated Gradients'
completeness, the diverging drawing and the option that chooses it."""

import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError

SIZE, CHANNELS, CLASSES = 4, 3, 3


@pytest.fixture(scope="module")
def linear_model(keras):
    """A flattened image times known weights: d logit_c / d x = W[:, c] exactly."""
    inputs = keras.Input((SIZE, SIZE, CHANNELS))
    logits = keras.layers.Dense(CLASSES, name="logits")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, logits)
    weights = np.random.default_rng(0).normal(size=(SIZE * SIZE * CHANNELS, CLASSES))
    model.get_layer("logits").set_weights([weights.astype(np.float32),
                                           np.zeros(CLASSES, np.float32)])
    return model, weights


def test_gradient_input_keeps_its_sign_per_channel(linear_model):
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets

    model, weights = linear_model
    x = np.random.default_rng(1).uniform(-1, 1, (2, SIZE, SIZE, CHANNELS)).astype(np.float32)
    result = CamExplainer(model, None, (SIZE, SIZE, CHANNELS))(
        x, Targets((2,)), ["gradient-input"], CamOptions(batch_size=4))
    expected = x * weights[:, 2].reshape(SIZE, SIZE, CHANNELS)
    attributions = result.attributions["gradient-input"]
    assert attributions.shape == (2, SIZE, SIZE, CHANNELS)
    assert (attributions < 0).any() and (attributions > 0).any()
    np.testing.assert_allclose(attributions, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.maps["gradient-input"],
                               np.maximum(expected.sum(axis=-1), 0), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # over ~3 s
def test_integrated_gradients_are_complete_on_the_demo_model():
    import cnnviz_cli

    images = [f"sample_images/{name}.png" for name in ("star_and_ring", "circle_and_square",
                                                      "triangle_and_cross", "cross")]
    result = cnnviz_cli.cam("demo", images, methods=["integrated-gradients"], ig_steps=64)
    for item in result.items:
        error = item.fields["integrated-gradients"]["completeness_error"]
        assert error < 0.01
        # the error recorded is that of the attributions kept: recompute it from the scores
        change = item.record["score"] - _baseline_score(result, item)
        total = float(item.attributions["integrated-gradients"].sum())
        assert abs(total - change) / abs(change) == pytest.approx(error, rel=1e-3, abs=1e-5)


def _baseline_score(result, item) -> float:
    """The explained logit of the blur baseline of an item's image (the path's start)."""
    import tensorflow as tf

    from cnnviz_cli.api.models import load_model
    from cnnviz_cli.techniques.cam import BLUR_SIGMA, gaussian_blur

    resolved = load_model("demo")
    inputs = resolved.prepare(item.image.resized[None].astype(np.float32))
    blurred = gaussian_blur(tf.constant(inputs), BLUR_SIGMA * max(inputs.shape[1:3]))
    logits = _logits(resolved.model)(blurred)
    return float(logits[0, item.record["class"]])


def _logits(model):
    """The demo model without its final softmax."""
    import keras

    last = model.layers[-1]
    dense = keras.layers.Dense(last.units, name="logits_copy")
    inputs = keras.Input(model.input_shape[1:])
    features = keras.Model(model.inputs, last.input)(inputs)
    dense.build(features.shape)
    dense.set_weights(last.get_weights())
    return keras.Model(inputs, dense(features))


def test_signed_overlay_is_red_where_positive_blue_where_negative_and_clear_at_zero():
    from cnnviz_cli.render.cam import signed_heatmap, signed_overlay

    grey = np.full((8, 12, 3), 128, np.uint8)
    heat = np.zeros((8, 12), np.float32)
    heat[:, :4], heat[:, 8:] = 1.0, -1.0
    drawn = signed_overlay(grey, heat, alpha=1.0).astype(int)
    red, blue = drawn[:, :4].mean(axis=(0, 1)), drawn[:, 8:].mean(axis=(0, 1))
    assert red[0] > red[2] + 50 and blue[2] > blue[0] + 50
    np.testing.assert_array_equal(drawn[:, 5:7], 128)
    bare = signed_heatmap(heat, (8, 12)).astype(int)
    assert (bare[:, 5:7] > 240).all()  # white is zero


def test_attribution_sign_chooses_the_drawn_map_and_needs_a_signed_method(sample_dir):
    import cnnviz_cli

    image = sample_dir / "pair.png"
    signed = cnnviz_cli.cam("demo", image, methods=["gradient-input"], size=64)
    absolute = cnnviz_cli.cam("demo", image, methods=["gradient-input"], size=64,
                              attribution_sign="absolute")
    item = signed.items[0]
    total = item.attributions["gradient-input"].sum(axis=-1)
    drawn, is_signed = signed.drawn(item, "gradient-input")
    assert is_signed and np.array_equal(drawn, total)
    drawn, is_signed = absolute.drawn(absolute.items[0], "gradient-input")
    assert not is_signed and np.allclose(drawn, np.abs(total))
    with pytest.raises(CnnvizError, match="--attribution-sign applies only when --method "
                                          "includes a signed method"):
        cnnviz_cli.cam("demo", image, methods=["gradcam"], attribution_sign="absolute")
