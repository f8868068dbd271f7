"""Feature inversion on the demo model, the alpha-norm prior, and the reconstruct command."""


import numpy as np
import pytest

MID_LAYER = "block2_conv2"


def test_alpha_norm_prior_matches_its_formula():
    import tensorflow as tf

    from cnnviz_cli.techniques.optim import Regularizers

    images = np.random.default_rng(0).uniform(0, 1, (2, 4, 5, 3))
    expected = 0.3 * np.mean((2 * images - 1) ** 6, axis=(1, 2, 3))
    penalty = Regularizers(alpha=0.3)(tf.constant(images, tf.float32)).numpy()
    np.testing.assert_allclose(penalty, expected, rtol=1e-5)


@pytest.fixture(scope="module")
def scenes():
    """Three generated one-shape images (square, triangle, cross) and the shapes' masks."""
    from cnnviz_cli.demo.shapes import draw_scene

    rng = np.random.default_rng(21)
    drawn = [draw_scene(rng, 96, [shape]) for shape in (1, 2, 4)]
    return np.stack([image for image, _ in drawn]), np.stack([masks[0] for _, masks in drawn])


@pytest.fixture(scope="module")
def inversion(demo_resolved, scenes):
    from cnnviz_cli.techniques.reconstruct import Inverter

    inverter = Inverter(demo_resolved.model, MID_LAYER, demo_resolved.preprocess)
    return inverter(scenes[0].astype("float32"))


@pytest.mark.slow  # the inversion optimises
def test_inversion_matches_the_features_of_a_mid_level_layer(demo_resolved, scenes, inversion):
    """The relative feature error is below 0.2, recomputed here with a plain Keras sub-model."""
    import keras

    model = demo_resolved.model
    features = keras.Model(model.inputs, model.get_layer(MID_LAYER).output)
    target = features(demo_resolved.prepare(scenes[0])).numpy().reshape(3, -1)
    reached = features(demo_resolved.prepare(np.round(inversion.images * 255))).numpy()
    errors = np.linalg.norm(reached.reshape(3, -1) - target, axis=1) / np.linalg.norm(
        target, axis=1)
    assert np.all(errors < 0.2), errors
    np.testing.assert_allclose(inversion.feature_errors, errors, atol=0.02)


@pytest.mark.slow  # the inversion optimises
def test_inversion_keeps_the_shape(demo_resolved, scenes, inversion):
    """Visibly the input's shape: around the shape (its bounding box grown by half its size;
    flat background far from any edge barely moves the features, so the prior's colours stay
    there), splitting the reconstruction's pixels by which of two colours they are closer to
    (its mean colour inside and outside the shape) recovers the shape's mask; and the model
    takes it for what it took the input for."""
    images, masks = scenes
    for rebuilt, mask in zip(inversion.images, masks, strict=True):
        rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        grow = max(rows[-1] - rows[0], columns[-1] - columns[0]) // 2
        around = np.s_[max(rows[0] - grow, 0) : rows[-1] + grow + 1,
                       max(columns[0] - grow, 0) : columns[-1] + grow + 1]
        rebuilt, mask = rebuilt[around], mask[around]
        inside, outside = rebuilt[mask].mean(axis=0), rebuilt[~mask].mean(axis=0)
        closer = np.linalg.norm(rebuilt - inside, axis=-1) < np.linalg.norm(rebuilt - outside,
                                                                            axis=-1)
        assert (closer & mask).sum() / (closer | mask).sum() > 0.5
    model, prepare = demo_resolved.model, demo_resolved.prepare
    rebuilt = np.round(inversion.images * 255)
    np.testing.assert_array_equal(np.argmax(model(prepare(rebuilt)), axis=1),
                                  np.argmax(model(prepare(images)), axis=1))


