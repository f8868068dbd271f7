"""Feature inversion (Mahendran & Vedaldi): the image whose features at a layer match a photo's.

Built on `optim.optimize`: the objective is minus the squared relative feature error
||f(x) - f(x0)||^2 / ||f(x0)||^2, and the total-variation and alpha-norm priors are optim's
regularisers. What the reconstruction keeps of the photo is what the layer keeps.
"""

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.models.extract import build_extractor
from cnnviz_cli.techniques.optim import Fourier, OptimConfig, Pixel, Regularizers, optimize


@dataclass(frozen=True)
class InversionConfig:
    """Steps, step size, prior weights and the parameterisation of an inversion."""

    steps: int = 300
    learning_rate: float = 0.05
    tv: float = 0.1  # total variation prior
    alpha: float = 0.05  # alpha-norm prior (alpha = 6)
    parameterization: str = "fourier"  # or "pixel"
    seed: int = 0


@dataclass
class Inversion:
    """Reconstructions of a batch from one layer's features, and how well they match."""

    layer_path: str
    images: np.ndarray  # (batch, height, width, channels) in [0, 1]
    feature_errors: np.ndarray  # (batch,) ||f(x) - f(x0)|| / ||f(x0)||


PARAMETERIZATIONS = {"pixel": Pixel, "fourier": Fourier}


class Inverter:
    """Compiled feature inversion at one layer for pixel batches of one (height, width)."""

    def __init__(self, model: keras.Model, layer_path: str, preprocess: Callable = tf.identity):
        self.layer_path = layer_path
        network = build_extractor(model, [layer_path])

        def features(images: tf.Tensor) -> tf.Tensor:
            return network(preprocess(images * 255.0), training=False)[0]

        def objective(images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
            axes = list(range(1, len(targets.shape)))
            error = tf.reduce_sum(tf.square(features(images) - targets), axis=axes)
            return -error / (tf.reduce_sum(tf.square(targets), axis=axes) + 1e-12)

        self.features = tf.function(lambda pixels: features(pixels / 255.0))
        self._objective = objective

    def __call__(
        self, pixels: np.ndarray, config: InversionConfig = InversionConfig()
    ) -> Inversion:
        """Reconstruct a raw pixel batch (values in [0, 255]) from its features at the layer."""
        targets = self.features(tf.convert_to_tensor(pixels, tf.float32))
        shape = pixels.shape[1:]
        result = optimize(
            self._objective,
            PARAMETERIZATIONS[config.parameterization](*shape),
            OptimConfig(
                steps=config.steps, learning_rate=config.learning_rate, transforms=None,
                regularizers=Regularizers(tv=config.tv, alpha=config.alpha), seed=config.seed,
            ),
            targets=targets,
        )
        return Inversion(self.layer_path, result.images, np.sqrt(np.maximum(-result.scores, 0.0)))
