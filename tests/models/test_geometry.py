"""Input geometry at the model boundary: --size parsing, the computed size of an image, the
stride multiple a free-size network needs, and letterbox/crop placements undone exactly."""

import numpy as np
import pytest

from cnnviz_cli.api.tables import parse_size
from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.geometry import Geometry, fit, size_multiple


@pytest.mark.parametrize(("given", "settled"), [
    ("48x192", (48, 192)), ("64", 64), (64, 64), ("native", "native"), (None, None),
    ([48, 192], (48, 192)), (" 32 X 40 ", (32, 40)),
])
def test_size_forms(given, settled):
    assert parse_size(given) == settled


@pytest.mark.parametrize("given", ["48x", "wide", "4x64", "-3"])
def test_bad_sizes_are_one_sentence(given):
    with pytest.raises(CnnvizError, match="--size"):
        parse_size(given)


def test_free_model_keeps_the_aspect_ratio_rounded_to_its_multiple():
    geometry = Geometry((None, None), 224, multiple=8)
    assert geometry.size_of(300, 450) == (152, 224)  # 149.3 -> 152, the nearest multiple of 8
    assert geometry.size_of(1000, 10) == (224, 8)  # never below one multiple
    assert Geometry((None, None), 224, "native", multiple=4).size_of(301, 451) == (300, 452)
    assert Geometry((None, None), 224, (48, 192)).size_of(500, 20) == (48, 192)
    assert Geometry((None, None), 224, 64).size_of(500, 20) == (64, 64)


def test_dense_heads_keep_their_own_size_up_to_the_cap():
    assert Geometry((None, None), 224, dense=True, multiple=4).size_of(301, 451) == (300, 452)
    assert Geometry((None, None), 224, dense=True).size_of(1000, 2048) == (500, 1024)


def test_one_free_side_scales_with_the_fixed_one():
    assert Geometry((48, None), 224).size_of(100, 400) == (48, 192)


def test_fixed_models_get_their_size_and_refuse_others():
    assert Geometry((64, 64), 64).size_of(30, 300) == (64, 64)
    with pytest.raises(CnnvizError, match="takes 64x64 images only"):
        Geometry((64, 64), 64, (48, 192))
    with pytest.raises(CnnvizError, match="native applies only"):
        Geometry((64, 64), 64, "native")
    with pytest.raises(CnnvizError, match="--resize pad applies only"):
        Geometry((None, None), 224, None, "pad")


def test_a_size_the_network_cannot_take_is_one_sentence():
    geometry = Geometry((None, None), 224, accepts=lambda size: min(size) >= 32)
    with pytest.raises(CnnvizError, match="cannot take 224x2 images"):
        geometry.size_of(1000, 10)


@pytest.mark.parametrize("mode", ["stretch", "pad", "crop"])
@pytest.mark.parametrize("shape", [(40, 120), (120, 40), (50, 50)])
def test_unframe_puts_the_frame_back_onto_the_original(mode, shape):
    """A map equal to the fitted pixels, unframed and resized to the original, is the original
    (inside what the frame shows; zero outside a crop)."""
    from cnnviz_cli.render.colour import resize_map

    rows, columns = np.mgrid[0:shape[0], 0:shape[1]]
    original = np.stack([rows * 255 // shape[0], columns * 255 // shape[1],
                         np.full(shape, 128)], -1).astype(np.uint8)
    framed, placement = fit(original, (64, 64), mode)
    assert framed.shape == (64, 64, 3)
    back = placement.unframe(framed[..., :2].astype("float32"))
    back = np.stack([resize_map(back[..., k], shape) for k in range(2)], -1)
    top, left, height, width = placement.source
    inside = np.zeros(shape, bool)
    inside[top + 2:top + height - 2, left + 2:left + width - 2] = True
    error = np.abs(back - original[..., :2])[inside]
    assert error.mean() < 6 and np.percentile(error, 95) < 16
    assert np.all(back[~np.pad(np.ones((height, width), bool),
                               ((top, shape[0] - top - height), (left, shape[1] - left - width)))]
                  == 0)
    if mode == "pad" and shape != (50, 50):  # a letterbox: zero bands around the content
        assert placement.content != (0, 0, 64, 64) and framed.min() == 0


def _unet(keras, pools: int = 2):
    """A free-size U-Net: `pools` poolings, each undone by upsampling and a skip concat."""
    inputs = keras.Input((None, None, 3))
    skips, x = [], inputs
    for level in range(pools):
        x = keras.layers.Conv2D(4 * (level + 1), 3, padding="same", activation="relu")(x)
        skips.append(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    for skip in reversed(skips):
        x = keras.layers.Concatenate()([keras.layers.UpSampling2D()(x), skip])
    outputs = keras.layers.Conv2D(2, 1, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def test_size_multiple_is_found_by_probing_the_graph(keras):
    assert size_multiple(_unet(keras, 2)) == 4
    assert size_multiple(_unet(keras, 3)) == 8
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.MaxPooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    plain = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(pooled))
    assert size_multiple(plain) == 1


def test_dream_octaves_and_tiles_are_multiples(keras):
    from cnnviz_cli.techniques.dream import DreamConfig, Dreamer, DreamLayer

    model = _unet(keras, 2)
    layer = DreamLayer.parse(model.layers[3].name)
    dreamer = Dreamer(model, [layer], lambda x: x / 255.0,
                      DreamConfig(octaves=3, tile=100, multiple=4))
    shapes = dreamer.octave_shapes(300, 451)
    assert shapes[-1] == (300, 452)
    assert all(side % 4 == 0 for shape in shapes for side in (*shape, *dreamer.tile_shape(*shape)))
    assert all(tile <= side for shape in shapes
               for tile, side in zip(dreamer.tile_shape(*shape), shape, strict=True))


@pytest.mark.parametrize("mode", ["pad", "crop"])
def test_enframe_maps_an_original_region_where_the_pixels_went(mode):
    """A region of the original, enframed, covers the same pixels as the fitted image."""
    image = np.zeros((40, 120, 3), np.uint8)
    image[10:20, 50:70] = 255
    framed, placement = fit(image, (64, 64), mode)
    region = placement.enframe(image[..., 0] > 0)
    bright = framed[..., 0] > 127
    overlap = (region & bright).sum() / max(1, (region | bright).sum())
    assert region.any() and overlap > 0.7
