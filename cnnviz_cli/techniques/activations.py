"""Feature maps of several layers from one compiled forward pass."""

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.models.extract import build_extractor


@dataclass
class LayerActivations:
    """One layer's feature maps for a batch, (batch, height, width, channels)."""

    layer_path: str
    maps: np.ndarray

    def channel_order(self, index: int, order: str = "mean") -> np.ndarray:
        """Channel indices of image `index`, strongest mean activation first (or by index)."""
        if order == "index":
            return np.arange(self.maps.shape[-1])
        return np.argsort(-self.maps[index].mean(axis=(0, 1)), kind="stable")

    def mean_map(self, index: int) -> np.ndarray:
        """The mean over channels of image `index`: where the layer responds at all."""
        return self.maps[index].mean(axis=-1)

    def statistics(self, index: int) -> dict:
        """Numbers worth recording for image `index`."""
        maps = self.maps[index]
        return {
            "mean": float(maps.mean()),
            "max": float(maps.max()),
            "active_fraction": float((maps > 0).mean()),
            "top_channels": self.channel_order(index)[:5].tolist(),
        }


class ActivationExtractor:
    """Compiled forward pass returning the feature maps of `layer_paths` for a batch."""

    def __init__(self, model: keras.Model, layer_paths: list[str], input_shape: tuple):
        self.layer_paths = list(layer_paths)
        extractor = build_extractor(model, self.layer_paths)
        count = len(self.layer_paths)
        signature = [tf.TensorSpec((None, *input_shape), tf.float32)]

        @tf.function(input_signature=signature)
        def forward(inputs):
            return extractor(inputs, training=False)[:count]

        self._forward = forward

    def __call__(self, inputs: np.ndarray) -> list[LayerActivations]:
        """Feature maps of every layer for a preprocessed float batch."""
        maps = self._forward(tf.convert_to_tensor(inputs, tf.float32))
        pairs = zip(self.layer_paths, maps, strict=True)
        return [LayerActivations(path, m.numpy()) for path, m in pairs]
