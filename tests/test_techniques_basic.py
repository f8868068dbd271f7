"""Activations and filters against independent NumPy computations on hand-set weights."""

import numpy as np
import pytest

from cnnviz_cli.render.maps import kernel_tiles
from cnnviz_cli.techniques.activations import ActivationExtractor
from cnnviz_cli.techniques.filters import filter_order, kernel_tensor, select_kernels


def conv_same_numpy(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Reference 'same' 2-D convolution (cross-correlation) with ReLU, batch first."""
    k = kernel.shape[0] // 2
    padded = np.pad(x, ((0, 0), (k, k), (k, k), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            patch = padded[:, i : i + kernel.shape[0], j : j + kernel.shape[1], :]
            out[:, i, j] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return np.maximum(out + bias, 0)


def test_feature_maps_equal_numpy_convolution(tiny_conv_model):
    x = np.random.default_rng(5).normal(size=(3, 8, 8, 3)).astype("float32")
    extractor = ActivationExtractor(tiny_conv_model, ["conv"], (8, 8, 3))
    (layer,) = extractor(x)
    kernel, bias = (w.numpy() for w in tiny_conv_model.get_layer("conv").weights)
    np.testing.assert_allclose(layer.maps, conv_same_numpy(x, kernel, bias), rtol=1e-4, atol=1e-5)
    strongest = layer.channel_order(0)[0]
    means = layer.maps[0].mean(axis=(0, 1))
    assert layer.maps[0, ..., strongest].mean() == pytest.approx(means.max(), rel=1e-5)
    np.testing.assert_allclose(layer.mean_map(1), layer.maps[1].mean(-1))
    extractor(x[:1])  # another batch size reuses the same trace
    assert extractor._forward.experimental_get_tracing_count() == 1


def test_rgb_kernels_drawn_as_colour_patches(keras):
    layer = keras.layers.Conv2D(2, 2, use_bias=False)
    layer.build((None, 4, 4, 3))
    kernel = np.zeros((2, 2, 3, 2), np.float32)
    kernel[0, 0, 0, 0] = 1.0  # filter 0: strong red at top-left
    kernel[1, 1, 2, 1] = -0.5  # filter 1: negative blue at bottom-right, weaker norm
    layer.set_weights([kernel])
    tensor = kernel_tensor(layer)
    assert filter_order(tensor, "norm").tolist() == [0, 1]
    shown = select_kernels(tensor, filter_order(tensor))
    np.testing.assert_allclose(shown.norms, [1.0, 0.5])
    tiles = kernel_tiles(shown.kernels, limit=1.0)
    top_left, bottom_right = tiles[0][0, 0], tiles[1][-1, -1]
    assert tuple(top_left) == (255, 128, 128)  # +1 red on grey zero
    assert tuple(bottom_right) == (128, 128, 64)  # -0.5 blue: below grey in blue only
    assert tiles[0].shape[0] >= 40


def test_deep_kernels_per_channel_and_mean(keras):
    layer = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)
    layer.build((None, 8, 8, 4))
    tensor = kernel_tensor(layer)
    assert tensor.shape == (3, 3, 1, 8)
    conv = keras.layers.Conv2D(5, 3)
    conv.build((None, 8, 8, 4))
    weights = conv.get_weights()[0]
    mean = select_kernels(weights, np.arange(5))
    np.testing.assert_allclose(mean.kernels[..., 0], np.moveaxis(weights.mean(axis=2), -1, 0))
    second = select_kernels(weights, np.array([4]), channel=2)
    np.testing.assert_allclose(second.kernels[0, ..., 0], weights[:, :, 2, 4])


def test_separable_uses_depthwise_kernel(keras):
    layer = keras.layers.SeparableConv2D(5, 3)
    layer.build((None, 8, 8, 4))
    np.testing.assert_allclose(
        kernel_tensor(layer)[..., 0, :], np.asarray(layer.depthwise_kernel)[:, :, :, 0]
    )


def test_target_scores_pick_per_item_values():
    from cnnviz_cli.models.heads import class_scores
    from cnnviz_cli.techniques.targets import filter_scores, layer_scores

    logits = np.arange(12, dtype="float32").reshape(3, 4)
    np.testing.assert_allclose(class_scores(logits, np.array([0, 3, 1])), [0, 7, 9])
    maps = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    np.testing.assert_allclose(
        filter_scores(maps, np.array([2, 0])),
        [maps[0, ..., 2].mean(), maps[1, ..., 0].mean()],
        rtol=1e-6,
    )
    np.testing.assert_allclose(layer_scores(maps), maps.mean(axis=(1, 2, 3)), rtol=1e-6)
