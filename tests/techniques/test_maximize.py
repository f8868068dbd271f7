"""Activation maximisation and the shared optimisation pieces, against properties that must hold."""


import numpy as np
import pytest

from cnnviz_cli.techniques.maximize import MaximizeConfig, maximize_classes, maximize_filters
from cnnviz_cli.techniques.optim import (
    Fourier,
    OptimConfig,
    Pixel,
    Regularizers,
    Transforms,
    optimize,
    total_variation,
)

SIZE = 64


def _linear_objective(images, targets):
    """Score = mean of the image times +-1 pattern `targets` (optimum: 1 where +, 0 where -)."""
    import tensorflow as tf

    return tf.reduce_mean(images * tf.cast(targets, tf.float32), axis=[1, 2, 3])


def _patterns(count: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(0).choice([-1, 1], size=(count, size, size, 3)).astype(np.int32)


# -- optimisation pieces -------------------------------------------------------------------


@pytest.mark.parametrize("height, width, channels", [(16, 16, 3), (15, 20, 3), (9, 12, 1)])
def test_fourier_images_are_valid_and_follow_the_scaled_spectrum(height, width, channels):
    import tensorflow as tf

    parameterization = Fourier(height, width, channels)
    tensor = parameterization.initial(2, tf.constant([1, 2]))
    images = parameterization.images(tensor).numpy()
    assert images.shape == (2, height, width, channels)
    assert images.min() > 0 and images.max() < 1
    big = parameterization.images(tensor * 1000.0).numpy()
    assert big.min() >= 0 and big.max() <= 1 and big.std() > 0.3
    if channels == 1:  # no colour mixing: sigmoid(irfft2(spectrum / max(f, 1/side) * sqrt(hw)) / 4)
        fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
        scale = np.sqrt(height * width) / np.maximum(np.hypot(fx, fy), 1 / max(height, width))
        spectrum = tensor.numpy()[:, 0, 0] + 1j * tensor.numpy()[:, 1, 0]
        plane = np.fft.irfft2(spectrum * scale, s=(height, width)) / 4
        np.testing.assert_allclose(images[..., 0], 1 / (1 + np.exp(-plane)), atol=1e-5)


def test_fourier_amplitude_falls_as_one_over_frequency():
    import tensorflow as tf

    parameterization = Fourier(64, 64, 1)
    images = parameterization.images(parameterization.initial(16, tf.constant([0, 0]))).numpy()
    amplitude = np.abs(np.fft.fft2(images[..., 0]))
    inverse = 1 / np.hypot(*np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64))).clip(1e-3)
    low, high = np.s_[1:4, 1:4], np.s_[24:32, 24:32]
    measured = amplitude[:, *low].mean() / amplitude[:, *high].mean()
    assert 0.7 < measured / (inverse[low].mean() / inverse[high].mean()) < 1.4


def test_transforms_keep_shape_and_are_seeded():
    import tensorflow as tf

    images = tf.random.uniform((3, 40, 48, 3), seed=1)
    transforms = Transforms.standard(40)
    moved = transforms(images, tf.constant([5, 1])).numpy()
    assert moved.shape == (3, 40, 48, 3)
    np.testing.assert_array_equal(moved, transforms(images, tf.constant([5, 1])).numpy())
    assert not np.allclose(moved, transforms(images, tf.constant([5, 2])).numpy())
    identity = Transforms(pad=0, jitter=0, scale=0.0, degrees=0.0)(images, tf.constant([0, 0]))
    np.testing.assert_allclose(identity.numpy(), images.numpy(), atol=1e-5)
    faded = transforms(images, tf.constant([5, 1]), 0.0)  # annealed to strength 0: no move
    np.testing.assert_allclose(faded.numpy(), images.numpy(), atol=1e-5)


def test_pad_frames_the_image_in_grey():
    import tensorflow as tf

    white = tf.ones((1, 32, 32, 3))
    framed = Transforms(pad=4, jitter=0, scale=0.0, degrees=0.0)(white, tf.constant([0, 0]))
    framed = framed.numpy()[0, ..., 0]
    assert framed[0].max() == pytest.approx(0.5) and framed[:, 0].max() == pytest.approx(0.5)
    assert framed[6:26, 6:26].min() == pytest.approx(1.0)


def test_regularizers_against_numpy_formulas():
    import tensorflow as tf

    images = tf.random.uniform((2, 6, 7, 3), seed=2).numpy()
    dy = np.abs(np.diff(images, axis=1)).sum(axis=(1, 2, 3))
    dx = np.abs(np.diff(images, axis=2)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(total_variation(tf.constant(images)), (dx + dy) / 126, rtol=1e-5)
    l2 = ((images - 0.5) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(Regularizers(l2=2.0)(tf.constant(images)), 2 * l2, rtol=1e-5)
    flat = np.full((1, 8, 8, 3), 0.3, np.float32)
    checker = (np.indices((8, 8)).sum(axis=0) % 2)[None, ..., None].repeat(3, -1).astype(np.float32)
    assert Regularizers(blur=1.0)(tf.constant(flat)).numpy()[0] == pytest.approx(0.0, abs=1e-7)
    assert Regularizers(blur=1.0)(tf.constant(checker)).numpy()[0] > 0.1


@pytest.mark.parametrize("parameterization", [Pixel(8, 8), Fourier(8, 8)])
def test_optimize_reaches_the_optimum_of_a_linear_objective(parameterization):
    targets = _patterns(3)
    config = OptimConfig(steps=150, learning_rate=0.1, transforms=None)
    result = optimize(_linear_objective, parameterization, config, targets)
    wanted = (targets > 0).astype(np.float32)
    assert result.images.shape == (3, 8, 8, 3)
    assert np.mean(np.abs(result.images - wanted) < 0.25) > 0.9  # each item its own pattern
    np.testing.assert_allclose(result.scores, _linear_objective(result.images, targets), rtol=1e-5)


def test_same_seed_same_bytes_and_snapshots():
    config = OptimConfig(steps=10, snapshot_every=4, transforms=Transforms(1, 1), seed=7)
    first = optimize(_linear_objective, Fourier(8, 8), config, _patterns(2))
    second = optimize(_linear_objective, Fourier(8, 8), config, _patterns(2))
    assert first.images.tobytes() == second.images.tobytes()
    other = optimize(_linear_objective, Fourier(8, 8), OptimConfig(steps=10, seed=8), _patterns(2))
    assert not np.array_equal(first.images, other.images)
    assert first.snapshots.shape == (4, 2, 8, 8, 3)  # steps 0, 4, 8 and the end
    np.testing.assert_array_equal(first.snapshots[-1], first.images)


def test_start_from_given_images():
    start = np.random.default_rng(1).uniform(0.1, 0.9, (2, 8, 8, 3)).astype(np.float32)
    config = OptimConfig(steps=5, transforms=None)
    for bound in ("sigmoid", "clip"):
        parameterization = Pixel(8, 8, bound=bound)
        unchanged = optimize(lambda images, _: 0.0 * images[:, 0, 0, 0], parameterization,
                             config, np.zeros(2), start=start)
        np.testing.assert_allclose(unchanged.images, start, atol=1e-5)
    brighter = optimize(lambda images, _: _brightness(images), Pixel(8, 8, bound="clip"),
                        OptimConfig(steps=5, method="normalized", transforms=None),
                        np.zeros(2), start=start)
    assert brighter.images.min() >= 0 and brighter.images.max() <= 1
    assert (brighter.images >= start - 1e-6).all() and brighter.images.mean() > start.mean()


def _brightness(images):
    import tensorflow as tf

    return tf.reduce_mean(images, axis=[1, 2, 3])


# -- filter and class maximisation ---------------------------------------------------------


def _check_filters(model, layer: str, preprocess, steps: int):
    """Every image beats noise 5x on its filter, and the activation matrix is diagonal."""
    from cnnviz_cli.techniques.maximize import filter_objective

    filters = np.arange(16)
    config = MaximizeConfig(OptimConfig(steps=steps, transforms=Transforms.standard(SIZE),
                                        anneal=True))
    result = maximize_filters(model, layer, preprocess, filters, (SIZE, SIZE, 3), config)
    assert result.images.shape == (16, SIZE, SIZE, 3)
    assert (result.scores > 0).all() and (result.scores >= 5 * result.noise_scores).all()
    objective = filter_objective(model, layer, preprocess)
    matrix = np.stack([objective(result.images, np.full(16, j)).numpy() for j in filters], 1)
    np.testing.assert_allclose(np.diag(matrix), result.scores, rtol=1e-3, atol=1e-5)
    beaten = [(matrix[i, i] > np.delete(matrix[:, i], i)).mean() for i in filters]
    assert min(beaten) >= 0.9, np.round(beaten, 2)
    return result


@pytest.mark.slow  # a long optimisation
def test_filters_of_a_vgg_style_model(vgg_style):
    _check_filters(vgg_style, "block2_conv2", lambda x: x / 127.5 - 1.0, steps=96)


@pytest.mark.slow  # a long optimisation
@pytest.mark.parametrize("layer", ["block3_conv2", "block4_conv"])
def test_filters_of_the_demo_model(demo_resolved, layer):
    _check_filters(demo_resolved.model, layer, demo_resolved.preprocess, steps=96)


@pytest.mark.slow  # a long optimisation
def test_classes_of_the_demo_model(demo_resolved):
    import tensorflow as tf

    classes = np.arange(len(demo_resolved.labels))
    config = MaximizeConfig(OptimConfig(steps=96, transforms=Transforms.standard(SIZE)))
    result = maximize_classes(demo_resolved.model, demo_resolved.preprocess, classes,
                              (SIZE, SIZE, 3), config)
    probabilities = demo_resolved.model(demo_resolved.preprocess(result.images * 255.0))
    np.testing.assert_allclose(tf.gather(probabilities, classes, batch_dims=1),
                               result.probabilities, atol=1e-4)
    assert (result.probabilities >= 0.9).all(), np.round(result.probabilities, 3)


# -- command line --------------------------------------------------------------------------


