"""DeepDream: the tiled objective and its gradient, the spec grammar, a dream on the demo model."""


import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError


@pytest.fixture(scope="module")
def free_size_model(keras):
    """input (None, None, 3) -> conv 'conv' (3 filters 3x3, ReLU): any image size works."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(9)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_tiled_objective_and_gradient_stitch_the_tiles(free_size_model):
    """12x10 image, 5x4 tiles: rows start at 0, 5, 7 and columns at 0, 4, 6 (the last tile of
    each is moved back to end at the edge). Value: the mean of the 9 tile scores; gradient: the
    tiles' own gradients added where they lie, over 9 (weights 2 on the layer, 0.5 on channel 1).
    """
    import tensorflow as tf

    from cnnviz_cli.techniques.dream import DreamConfig, Dreamer, DreamLayer

    layers = [DreamLayer("conv", 2.0), DreamLayer("conv", 0.5, channel=1)]
    dreamer = Dreamer(free_size_model, layers, lambda x: x / 255.0, DreamConfig())
    image = tf.random.stateless_uniform((1, 12, 10, 3), (1, 2))

    def tile_score(crop):
        maps = free_size_model(crop)
        return 2.0 * tf.reduce_mean(maps**2) + 0.5 * tf.reduce_mean(maps[..., 1] ** 2)

    expected_value, expected_gradient = 0.0, np.zeros((12, 10, 3))
    for y in (0, 5, 7):
        for x in (0, 4, 6):
            crop = image[:, y:y + 5, x:x + 4]
            with tf.GradientTape() as tape:
                tape.watch(crop)
                score = tile_score(crop)
            expected_value += float(score) / 9
            expected_gradient[y:y + 5, x:x + 4] += tape.gradient(score, crop)[0].numpy() / 9
    with tf.GradientTape() as tape:
        tape.watch(image)
        value = dreamer.objective((5, 4))(image, None)
    np.testing.assert_allclose(float(value[0]), expected_value, rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(value, image)[0], expected_gradient, atol=1e-6)


def test_a_channel_the_layer_does_not_have_is_refused(free_size_model):
    from cnnviz_cli.techniques.dream import DreamConfig, Dreamer, DreamLayer

    with pytest.raises(CnnvizError, match="Channel 3 is out of range: layer 'conv' has 3"):
        Dreamer(free_size_model, [DreamLayer("conv", channel=3)], lambda x: x, DreamConfig())


def test_tiles_split_the_image_evenly_and_octaves_grow_to_it(free_size_model):
    from cnnviz_cli.techniques.dream import DreamConfig, Dreamer, DreamLayer

    dreamer = Dreamer(free_size_model, [DreamLayer("conv")], lambda x: x,
                      DreamConfig(octaves=3, octave_scale=2.0, tile=512))
    assert dreamer.tile_shape(2048, 1100) == (512, 367)  # 4 x 3 tiles
    assert dreamer.tile_shape(300, 200) == (300, 200)
    assert dreamer.octave_shapes(400, 100) == [(100, 25), (200, 50), (400, 100)]


@pytest.fixture(scope="module")
def shape_photo():
    from cnnviz_cli.demo.shapes import draw_scene

    image, _ = draw_scene(np.random.default_rng(3), 80, [3])
    return image


@pytest.mark.slow  # two dreams
def test_dream_raises_its_objective_and_repeats_bytes(demo_resolved, shape_photo):
    """The default layer's channel of median strength on the photo, as a user would pick one."""
    from cnnviz_cli.models.extract import build_extractor
    from cnnviz_cli.models.layers import default_layers
    from cnnviz_cli.techniques.dream import DreamConfig, Dreamer, DreamLayer

    model = demo_resolved.model
    layer = default_layers(model)["dream"][0].path
    maps = build_extractor(model, [layer])(demo_resolved.prepare(shape_photo[None]))[0]
    strength = np.mean(np.square(maps[0]), axis=(0, 1))
    channel = int(np.argsort(strength)[len(strength) // 2])
    config = DreamConfig(octaves=2, steps=10, step_size=0.02, seed=4)
    dreamer = Dreamer(model, [DreamLayer(layer, channel=channel)], demo_resolved.preprocess,
                      config)
    first, again = dreamer(shape_photo), dreamer(shape_photo)
    assert first.image.shape == (80, 80, 3)
    assert first.objective_after >= 3 * first.objective_before, (
        first.objective_before, first.objective_after)
    assert first.image.tobytes() == again.image.tobytes()
    assert dreamer.score(first.image[None]) == pytest.approx(first.objective_after, rel=1e-4)


