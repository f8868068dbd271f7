"""Dataset examples (Zeiler & Fergus): the images of a stream that excite each filter the most.

Per batch, `StrongestUnits` finds each filter's strongest activation in every image (the
maximum over positions) and where it is; `RunningTopK` keeps the K best per filter over the
stream, so memory stays flat in the number of images.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from cnnviz_cli.models.extract import build_extractor


@dataclass
class Example:
    """One image's strongest activation of a filter: its value, image key and (row, column)
    in the feature map; `patch` is whatever the caller keeps of the image (None until then)."""

    value: float
    key: str
    position: tuple[int, int]
    patch: object = None


def ranking(value: float, key: str) -> tuple[float, str]:
    """The order of examples, best first: by activation, ties to the smaller image key."""
    return -value, key


class StrongestUnits:
    """Compiled: per image and filter, the strongest activation of a layer and its position.

    Inputs are raw pixel batches in [0, 255]; `preprocess` (TF ops) runs inside the pass.
    """

    def __init__(self, model, layer_path: str, input_shape: tuple,
                 preprocess: Callable = tf.identity):
        network = build_extractor(model, [layer_path])
        images = tf.TensorSpec((None, *input_shape), tf.float32)

        @tf.function(input_signature=[images, tf.TensorSpec((None,), tf.int32)])
        def strongest(pixels, filters):
            maps = tf.gather(network(preprocess(pixels), training=False)[0], filters, axis=3)
            units = tf.reshape(tf.transpose(maps, [0, 3, 1, 2]),
                               [tf.shape(maps)[0], tf.shape(filters)[0], -1])
            peaks = tf.argmax(units, axis=2, output_type=tf.int32)
            values = tf.gather(units, peaks, axis=2, batch_dims=2)
            width = tf.shape(maps)[2]
            return values, tf.stack([peaks // width, peaks % width], axis=-1)

        self._strongest = strongest

    def __call__(self, pixels: np.ndarray, filters: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(values (batch, filters), positions (batch, filters, 2) as (row, column))."""
        values, positions = self._strongest(tf.convert_to_tensor(pixels, tf.float32),
                                            tf.constant(list(filters), tf.int32))
        return values.numpy(), positions.numpy()


class RunningTopK:
    """The `top` best examples per filter seen so far (see `ranking`)."""

    def __init__(self, filters: int, top: int):
        self.top = top
        self.best: list[list[Example]] = [[] for _ in range(filters)]

    def offer(self, values: np.ndarray, positions: np.ndarray,
              keys: Sequence[str]) -> list[tuple[int, int, Example]]:
        """Add a batch's strongest activations; return (image index in the batch, filter index,
        example) of each of its examples that is now among the best, to fill in its patch."""
        entered = []
        for column, best in enumerate(self.best):
            fresh = [(row, Example(float(values[row, column]), key,
                                   tuple(int(p) for p in positions[row, column])))
                     for row, key in enumerate(keys)]
            pool = sorted([*((None, example) for example in best), *fresh],
                          key=lambda pair: ranking(pair[1].value, pair[1].key))[:self.top]
            self.best[column] = [example for _, example in pool]
            entered += [(row, column, example) for row, example in pool if row is not None]
        return entered
