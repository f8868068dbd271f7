"""The learned kernels of convolution layers, as arrays ready to draw."""

from dataclasses import dataclass

import keras
import numpy as np

from cnnviz_cli.errors import CnnvizError


@dataclass
class Kernels:
    """Kernels to show: (count, height, width, 1 or 3), their filter indices and L2 norms."""

    kernels: np.ndarray
    indices: np.ndarray
    norms: np.ndarray


def kernel_tensor(layer: keras.layers.Layer) -> np.ndarray:
    """A conv layer's spatial kernel as (height, width, in_channels, filters).

    Depthwise kernels (also those of separable convolutions) count each
    (input channel, multiplier) pair as one single-channel filter.
    """
    if isinstance(layer, keras.layers.SeparableConv2D | keras.layers.DepthwiseConv2D):
        separable = isinstance(layer, keras.layers.SeparableConv2D)
        depthwise = np.asarray(layer.depthwise_kernel if separable else layer.kernel)
        height, width, channels, multiplier = depthwise.shape
        return depthwise.reshape(height, width, 1, channels * multiplier)
    if isinstance(layer, keras.layers.Conv2D):
        return np.asarray(layer.kernel)
    raise CnnvizError(
        f"Layer {layer.name!r} is a {type(layer).__name__}, not a Conv2D, DepthwiseConv2D or "
        "SeparableConv2D; pick a convolution layer (see `cnnviz layers`)."
    )


def kernel_norms(kernel: np.ndarray) -> np.ndarray:
    """The L2 norm of each filter of a (height, width, in, filters) kernel."""
    return np.sqrt((np.moveaxis(kernel, -1, 0) ** 2).reshape(kernel.shape[-1], -1).sum(axis=1))


def filter_order(kernel: np.ndarray, order: str = "index", limit: int | None = None) -> np.ndarray:
    """Filter indices to show: in index order, or by `norm` (largest first), at most `limit`."""
    if order == "norm":
        return np.argsort(-kernel_norms(kernel), kind="stable")[:limit]
    return np.arange(kernel.shape[-1])[:limit]


def select_kernels(kernel: np.ndarray, indices: np.ndarray, channel: int | None = None,
                   bgr: bool = False) -> Kernels:
    """Pick the filters `indices` of a (height, width, in, filters) kernel for drawing.

    Three input channels are drawn as RGB colour patches (`bgr`: they are blue, green, red, as
    caffe preprocessing feeds them, so they are reversed); otherwise `channel` picks one input
    channel, and None averages over all of them.
    """
    in_channels = kernel.shape[2]
    if channel is not None and not 0 <= channel < in_channels:
        raise CnnvizError(
            f"--channel {channel} is out of range: the layer has {in_channels} input channels."
        )
    if in_channels == 3 and channel is None:
        per_filter = kernel[:, :, ::-1] if bgr else kernel
    elif channel is not None:
        per_filter = kernel[:, :, channel : channel + 1, :]
    else:
        per_filter = kernel.mean(axis=2, keepdims=True)
    per_filter = np.moveaxis(per_filter, -1, 0)  # (filters, height, width, channels)
    return Kernels(per_filter[indices], indices, kernel_norms(kernel)[indices])
