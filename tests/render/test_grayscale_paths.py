"""A one-channel model goes through every rendering path: patches, projections, grids."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def gray_model(keras):
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def gray_images():
    rng = np.random.default_rng(4)
    return [rng.integers(0, 255, (32, 32), np.uint8) for _ in range(3)]


def _pictures(folder) -> list[np.ndarray]:
    files = sorted(folder.rglob("*.png"))
    assert files
    return [np.asarray(Image.open(path)) for path in files]


@pytest.mark.parametrize("extent", ["unit", "map"])
@pytest.mark.parametrize("method", ["deconvnet", "guided"])
def test_projections_of_a_gray_model(gray_model, gray_images, tmp_path, method, extent):
    import cnnviz_cli as api

    api.reconstruct(gray_model, gray_images[:1], method=method, extent=extent,
                    layers=["conv2"], out=tmp_path)
    assert all(picture.ndim in (2, 3) for picture in _pictures(tmp_path))


@pytest.mark.parametrize("projection", ["deconvnet", "guided"])
def test_dataset_examples_of_a_gray_model(gray_model, gray_images, tmp_path, projection):
    import cnnviz_cli as api

    api.maximize(gray_model, layer="conv2", filters=[0, 1], from_images=gray_images, top=2,
                 projection=projection, out=tmp_path)
    assert _pictures(tmp_path)


@pytest.mark.slow  # over ~3 s
def test_other_commands_draw_a_gray_model(gray_model, gray_images, tmp_path):
    import cnnviz_cli as api

    api.cam(gray_model, gray_images[:1], methods=["gradcam", "saliency"], out=tmp_path / "cam")
    api.activations(gray_model, gray_images[:1], out=tmp_path / "activations")
    api.filters(gray_model, out=tmp_path / "filters")
    api.maximize(gray_model, filters=[0], steps=2, out=tmp_path / "maximize")
    api.dream(gray_model, gray_images[:1], steps=1, octaves=1, out=tmp_path / "dream")
    api.reconstruct(gray_model, gray_images[:1], method="inversion", steps=2,
                    out=tmp_path / "inversion")
    assert _pictures(tmp_path)
