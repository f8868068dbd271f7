"""Runs at the image's own geometry: aspect ratio kept for free-size models, --size HxW fed
exactly, --resize pad drawn back onto the original, sizes rounded to what a U-Net takes."""

import json

import numpy as np
import pytest
from PIL import Image

FLAT, STEEP = 0, 1


@pytest.fixture(scope="module")
def slope_classifier(keras):
    """Any-size classifier with hand-set weights: class 0 (flat) when the image's vertical
    gradient (edges of flat stripes) outweighs its horizontal one, else class 1 (steep).
    A square resize of a wide image makes flat stripes steep, so it flips the class."""
    sobel = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "float32") / 3
    kernels = np.stack([sobel, -sobel, sobel.T, -sobel.T], -1)  # (3, 3, 4): |dy|, |dx|
    inputs = keras.Input((None, None, 3))
    edges = keras.layers.Conv2D(4, 3, activation="relu", use_bias=False, name="edges")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(edges)
    outputs = keras.layers.Dense(2, activation="softmax", name="slope")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("edges").set_weights([np.repeat(kernels[:, :, None], 3, 2)])
    model.get_layer("slope").set_weights(
        [np.array([[1, 0], [1, 0], [0, 1], [0, 1]], "float32") / 10, np.zeros(2, "float32")])
    return model


@pytest.fixture(scope="module")
def bar_images(tmp_path_factory, stripes):
    """A wide image of flat stripes and a tall image of steep ones, on disk."""
    folder = tmp_path_factory.mktemp("bars")
    Image.fromarray(stripes((60, 240), 25)).save(folder / "wide_flat.png")
    Image.fromarray(stripes((240, 60), 65)).save(folder / "tall_steep.png")
    return folder


def _classes(result) -> dict[str, int]:
    return {item.image.key: item.record["class"] for item in result.items}


@pytest.mark.parametrize("size", [None, "native"])
def test_aspect_ratio_kept_gives_the_right_class(slope_classifier, bar_images, size):
    from cnnviz_cli import cam

    result = cam(slope_classifier, bar_images, size=size, methods=["gradcam"])
    assert _classes(result) == {"wide_flat": FLAT, "tall_steep": STEEP}
    sizes = {item.image.key: item.image.resized.shape[:2] for item in result.items}
    expected = {None: {"wide_flat": (56, 224), "tall_steep": (224, 56)},
                "native": {"wide_flat": (60, 240), "tall_steep": (240, 60)}}[size]
    assert sizes == expected


def test_the_old_square_resize_gets_both_wrong(slope_classifier, bar_images):
    """What the test above guards against: a square input flips both decisions."""
    from cnnviz_cli import cam

    result = cam(slope_classifier, bar_images, size=224, methods=["gradcam"])
    assert _classes(result) == {"wide_flat": STEEP, "tall_steep": FLAT}


def test_size_hxw_feeds_exactly_that_size(slope_classifier, bar_images, tmp_path):
    from cnnviz_cli import cam

    result = cam(slope_classifier, bar_images / "wide_flat.png", size="48x192",
                 methods=["gradcam"], out=tmp_path / "out", save_npy=True)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [entry["size"] for entry in manifest["inputs"]] == [[48, 192]]
    assert manifest["command_line"].endswith("--size 48x192") or "--size 48x192" in \
        manifest["command_line"]
    saved = next((tmp_path / "out").rglob("*.npy"))
    assert np.load(saved).shape == (46, 190)  # the valid 3x3 conv's map of a 48x192 input
    assert result.model["default_size"] == [224, 224]


def test_images_of_different_sizes_are_batched_by_size(slope_classifier, stripes):
    from cnnviz_cli import activations

    wide, tall = stripes((60, 240), 25), stripes((240, 60), 65)
    result = activations(slope_classifier, [wide, tall, wide, tall], layers=["edges"],
                         size="native", batch_size=4)
    shapes = [item.maps["edges"].shape[:2] for item in result.items]
    assert shapes == [(58, 238), (238, 58)] * 2


@pytest.fixture(scope="module")
def bright_spot_model(keras):
    """Fixed 64x64 input; the class-0 score is the mean brightness seen by a 3x3 box conv, so
    GradCAM's map is high where the image is bright."""
    inputs = keras.Input((64, 64, 3))
    box = keras.layers.Conv2D(1, 3, padding="same", activation="relu", name="box")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(box)
    outputs = keras.layers.Dense(2, name="score")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("box").set_weights([np.full((3, 3, 3, 1), 1 / 27, "float32"),
                                        np.array([-0.5], "float32")])
    model.get_layer("score").set_weights([np.array([[1.0, -1.0]], "float32"),
                                          np.zeros(2, "float32")])
    return model


@pytest.mark.parametrize("mode", ["pad", "stretch", "crop"])
def test_resize_pad_draws_the_map_back_onto_the_object(bright_spot_model, mode):
    """A wide image with one bright square near its top: the drawn map's peak, at the original
    size, lies on the square (a letterbox's padding removed, a crop placed back)."""
    from cnnviz_cli import cam
    from cnnviz_cli.render.colour import resize_map

    image = np.zeros((64, 192, 3), np.uint8)
    top, left = (4, 120) if mode != "crop" else (26, 90)  # a centre crop keeps columns 64..128
    image[top:top + 12, left:left + 12] = 255
    result = cam(bright_spot_model, image, resize=mode, methods=["gradcam"], classes=["0"],
                 preprocess="unit")
    item = result.items[0]
    heat, _ = result.drawn(item, "gradcam")
    heat = resize_map(heat, image.shape[:2])
    row, column = np.unravel_index(np.argmax(heat), heat.shape)
    assert top - 2 <= row <= top + 13 and left - 2 <= column <= left + 13, (row, column)
    if mode == "pad":  # the content lies in a band of the 64x64 input
        assert item.image.placement.content == (21, 0, 21, 64)


def test_resize_is_refused_where_each_image_keeps_its_aspect(slope_classifier, bar_images):
    from cnnviz_cli import CnnvizError, cam

    with pytest.raises(CnnvizError, match="--resize crop applies only"):
        cam(slope_classifier, bar_images, resize="crop")


@pytest.fixture(scope="module")
def unet_file(keras, tmp_path_factory):
    """A free-size U-Net with two skip concatenations (sides must be multiples of 4)."""
    inputs = keras.Input((None, None, 3))
    first = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="enc1")(inputs)
    second = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="enc2")(
        keras.layers.MaxPooling2D()(first))
    bottom = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="bottom")(
        keras.layers.MaxPooling2D()(second))
    up = keras.layers.Concatenate()([keras.layers.UpSampling2D()(bottom), second])
    up = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="dec2")(up)
    up = keras.layers.Concatenate()([keras.layers.UpSampling2D()(up), first])
    up = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="dec1")(up)
    outputs = keras.layers.Conv2D(2, 1, activation="softmax", name="classes")(up)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32")
                       for w in model.get_weights()])
    folder = tmp_path_factory.mktemp("unet")
    model.save(folder / "unet.keras")
    rows, columns = np.mgrid[0:300, 0:451]
    photo = np.stack([rows % 256, columns % 256, (rows + columns) % 256], -1)
    Image.fromarray(photo.astype(np.uint8)).save(folder / "photo.png")
    return folder


@pytest.mark.parametrize("command", ["cam", pytest.param("dream", marks=pytest.mark.slow)])
def test_unet_on_451x300_runs_at_the_rounded_size(run_cli, unet_file, tmp_path, command):
    extra = ["--steps", "1", "--octaves", "2", "-l", "dec2"] if command == "dream" else [
        "--method", "gradcam", "-l", "dec1"]
    run_cli(command, "-m", unet_file / "unet.keras", unet_file / "photo.png",
            "-o", tmp_path / "out", *extra)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [entry["size"] for entry in manifest["inputs"]] == [[300, 452]]
    if command == "dream":
        shapes = manifest["outputs"][0]["octave_shapes"]
        assert shapes[-1] == [300, 452] and all(side % 4 == 0 for s in shapes for side in s)


def test_the_manifest_records_where_a_letterboxed_image_went(bright_spot_model, tmp_path):
    from cnnviz_cli import cam

    cam(bright_spot_model, np.zeros((64, 192, 3), np.uint8), resize="pad", methods=["gradcam"],
        out=tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["inputs"][0]["size"] == [64, 64]
    assert manifest["inputs"][0]["placement"] == {"content": [21, 0, 21, 64],
                                                  "source": [0, 0, 64, 192]}
