"""The demo training script's conversion of a per-image-normalised model into the plain one."""

import numpy as np
import pytest


def _normalised_model(keras, seed: int):
    """The earlier bundled architecture: every convolution but the last followed by a per-image
    normalisation (random weights, positive scales)."""
    from cnnviz_cli.demo.train import BLOCK_FILTERS, build_model

    rng = np.random.default_rng(seed)
    plain = build_model()
    inputs = keras.Input((None, None, 3))
    features = inputs
    for layer in plain.layers[1:]:
        features = layer.__class__.from_config(layer.get_config())(features)
        if isinstance(layer, keras.layers.Conv2D) and not layer.name.startswith(
            f"block{len(BLOCK_FILTERS) + 1}"
        ):
            norm = keras.layers.GroupNormalization(groups=-1,
                                                   name=layer.name.replace("_conv", "_norm"))
            features = norm(features)
            norm.set_weights([rng.uniform(0.5, 1.5, norm.gamma.shape),
                              rng.normal(0, 0.3, norm.beta.shape)])
    return keras.Model(inputs, features)


def _last_features(keras, model, images):
    return np.asarray(keras.Model(model.inputs, model.get_layer("block4_conv").output)(images))


def test_folding_reproduces_the_normalised_model_on_its_statistics_image(keras):
    from cnnviz_cli.demo.train import preprocess, without_normalisation

    source = _normalised_model(keras, seed=4)
    image = np.random.default_rng(5).integers(0, 256, (1, 128, 128, 3), dtype=np.uint8)
    plain = without_normalisation(source, image)
    assert not [layer for layer in plain.layers if "norm" in layer.name]
    wanted = _last_features(keras, source, preprocess(image))[0, 4:12, 4:12]
    folded = _last_features(keras, plain, preprocess(image))[0, 4:12, 4:12]
    assert wanted.std() > 0.01
    # one image: its own statistics are the averages, so only the zero padding differs (borders)
    np.testing.assert_allclose(folded, wanted, rtol=1e-3, atol=1e-3 * wanted.std())
    other = np.random.default_rng(6).integers(0, 128, (1, 128, 128, 3), dtype=np.uint8)
    assert not np.allclose(_last_features(keras, plain, preprocess(other)),
                           _last_features(keras, source, preprocess(other)), rtol=0.1)


def test_a_model_without_normalisation_is_copied(keras):
    from cnnviz_cli.demo.train import build_model, preprocess, without_normalisation

    keras.utils.set_random_seed(2)
    source = build_model()
    images = np.random.default_rng(7).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    copy = without_normalisation(source, images)
    np.testing.assert_array_equal(copy(preprocess(images)), source(preprocess(images)))
    assert copy.predict(preprocess(images), verbose=0).sum(axis=1) == pytest.approx(1.0)
