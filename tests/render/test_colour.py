"""Colouring maps: the same pixels as matplotlib's own colour maps, at any size."""

import matplotlib
import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.render.colour import blend, colorize


@pytest.mark.parametrize("name", ["inferno", "turbo", "gray", "RdBu_r"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_colours_are_matplotlibs_including_the_ends_and_values_outside(name, dtype):
    values = np.random.default_rng(3).uniform(-0.2, 1.2, (37, 53)).astype(dtype)
    values[0, :6] = [0.0, 1.0, 0.5, 1 / 256, 255 / 256, np.nextafter(1.0, 0.0)]
    expected = matplotlib.colormaps[name](np.clip(values, 0.0, 1.0))[..., :3]
    coloured = colorize(values, name)
    assert coloured.dtype == np.uint8 and coloured.shape == (37, 53, 3)
    np.testing.assert_array_equal(coloured, (expected * 255).round().astype(np.uint8))


def test_an_unknown_colour_map_is_named():
    with pytest.raises(CnnvizError, match="Unknown colour map 'nope'"):
        colorize(np.zeros((2, 2)), "nope")


def test_a_value_that_is_not_a_number_takes_the_lowest_colour():
    coloured = colorize(np.array([[np.nan, 0.0]], np.float32), "inferno")
    np.testing.assert_array_equal(coloured[0, 0], coloured[0, 1])


@pytest.mark.parametrize("channels", [1, 3])
def test_blending_weighs_each_pixel_by_its_opacity(channels):
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (9, 14, channels), dtype=np.uint8)
    coloured = rng.integers(0, 256, (9, 14, 3), dtype=np.uint8)
    opacity = rng.uniform(0, 1, (9, 14))
    expected = image * (1 - opacity[..., None]) + coloured * opacity[..., None]
    blended = blend(image, coloured, opacity)
    assert blended.shape == (9, 14, 3)
    assert np.abs(blended - expected).max() <= 1.5  # opacity and pixels rounded to 1/255
    np.testing.assert_array_equal(blend(image, coloured, 1.0), coloured)
    np.testing.assert_array_equal(blend(image, coloured, 0.0), np.broadcast_to(image, (9, 14, 3)))
