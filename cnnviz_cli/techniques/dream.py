"""DeepDream: amplify what some layers see in a photo, octave by octave, tile by tile.

Built on `optim.optimize` (the loop `cnnviz maximize` uses): a `Pixel` parameterisation that
starts from the photo, normalised gradient ascent, and a random roll as the step's transform.
The objective is computed tile by tile, each tile's gradient inside its own tape, so a large
photo needs the memory of one tile plus a few copies of the image.
"""

import math
import re
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.extract import build_extractor
from cnnviz_cli.techniques.optim import OptimConfig, Pixel, optimize


@dataclass(frozen=True)
class DreamLayer:
    """One term of the objective: the mean squared activation of a layer (or one channel)."""

    path: str
    weight: float = 1.0
    channel: int | None = None

    @classmethod
    def parse(cls, spec: str) -> "DreamLayer":
        """`layer`, `layer:channel`, `layer:weight` or `layer:channel:weight`.

        A channel is an integer >= 0; a weight is any other finite number (`1.5`, `-1`, `1e-3`).
        """
        match = _LAYER_SPEC.fullmatch(spec)
        weight = float(match["weight"]) if match and match["weight"] else 1.0
        if match is None or not math.isfinite(weight):
            raise CnnvizError(
                f"Cannot read the layer spec {spec!r}: write LAYER, LAYER:CHANNEL, LAYER:WEIGHT "
                "(e.g. mixed5:1.5) or LAYER:CHANNEL:WEIGHT, with CHANNEL an integer >= 0 and "
                "WEIGHT a finite number."
            )
        channel = match["channel"]
        return cls(match["path"], weight, None if channel is None else int(channel))


_LAYER_SPEC = re.compile(
    r"(?P<path>[^:]+)(?::(?P<channel>[0-9]+))?"
    r"(?::(?P<weight>[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?))?"
)


@dataclass(frozen=True)
class DreamConfig:
    """Octaves, steps and tiles of a dream."""

    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 20  # per octave
    step_size: float = 0.01  # in units of the [0, 1] pixel range, per normalised step
    tile: int = 512  # tile side for models that take any size
    snapshot_every: int = 0  # keep a frame for an animation every k steps (0: none)
    seed: int = 0
    multiple: int = 1  # image and tile sides are rounded to this (the network's stride)


@dataclass
class Dreamed:
    """The dreamed image in [0, 1] at the input's resolution, and the objective it reached."""

    image: np.ndarray  # (height, width, channels)
    objective_before: float
    objective_after: float
    octave_shapes: list[tuple[int, int]]
    frames: list[np.ndarray]  # snapshots in [0, 1], each at its octave's resolution


@dataclass(frozen=True)
class RandomRoll:
    """Shift the images by up to `shift` pixels with wrap-around, so tile seams move each step."""

    shift: int

    def __call__(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        offsets = tf.random.stateless_uniform(
            (2,), seed, -self.shift, self.shift + 1, dtype=tf.int32
        )
        return tf.roll(images, offsets, axis=[1, 2])


def _tile_offsets(length: int, tile: int) -> list[int]:
    """Starts of the tiles covering `length`; the last one is moved back to end at the edge."""
    return sorted({min(start, length - tile) for start in range(0, length, tile)})


class Dreamer:
    """Compiled DeepDream for one model and objective; call it on one image at a time."""

    def __init__(
        self, model: keras.Model, layers: list[DreamLayer], preprocess, config: DreamConfig
    ):
        self.config = config
        paths = list(dict.fromkeys(layer.path for layer in layers))
        network = build_extractor(model, paths)
        for layer in layers:
            count = int(network.outputs[paths.index(layer.path)].shape[-1])
            if layer.channel is not None and layer.channel >= count:
                raise CnnvizError(
                    f"Channel {layer.channel} is out of range: layer {layer.path!r} has {count} "
                    f"channels (0 to {count - 1})."
                )
        fixed = model.inputs[0].shape[1:3]
        self.fixed_tile = tuple(fixed) if None not in fixed else None

        def tile_score(tiles: tf.Tensor) -> tf.Tensor:
            maps = network(preprocess(tiles * 255.0), training=False)
            total = 0.0
            for layer in layers:
                values = maps[paths.index(layer.path)]
                if layer.channel is not None:
                    values = values[..., layer.channel]
                axes = list(range(1, len(values.shape)))
                total += layer.weight * tf.reduce_mean(tf.square(values), axis=axes)
            return total

        self._tile_score = tile_score
        self._objectives: dict[tuple[int, int], object] = {}
        self._forward: dict[tuple[int, int], object] = {}
        self._scores: dict[tuple[int, int], object] = {}

    def tile_shape(self, height: int, width: int) -> tuple[int, int]:
        """The tile used for an image of this size: the model's input size when it is fixed,
        else the largest side up to `config.tile` that splits the image into equal parts."""
        if self.fixed_tile is not None:
            return self.fixed_tile
        return tuple(min(side, self._rounded(-(-side // -(-side // self.config.tile)), ceil=True))
                     for side in (height, width))

    def _rounded(self, side: float, ceil: bool = False) -> int:
        """`side` rounded (or rounded up) to the multiple the network needs."""
        multiple = self.config.multiple
        steps = -(-side // multiple) if ceil else round(side / multiple)
        return int(max(1, steps) * multiple)

    def octave_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Image sizes from the smallest octave to the original (sides rounded to the
        network's multiple), never below one fixed tile."""
        low_height, low_width = self.fixed_tile or (8, 8)
        shapes = []
        for octave in reversed(range(self.config.octaves)):
            factor = self.config.octave_scale**octave
            shape = (max(self._rounded(height / factor), low_height),
                     max(self._rounded(width / factor), low_width))
            if shape not in shapes:
                shapes.append(shape)
        return shapes

    def objective(self, tile: tuple[int, int]):
        """The tiled objective `(images, targets) -> (batch,)` for images of any size >= tile."""
        if tile not in self._objectives:
            self._objectives[tile] = _tiled_objective(self._tile_score, tile)
        return self._objectives[tile]

    def forward_objective(self, tile: tuple[int, int]):
        """The same objective as a forward pass only (no gradient computed tile by tile)."""
        if tile not in self._forward:  # one function per tile, so its compiled loop is reused
            self._forward[tile] = lambda images, targets=None: _over_tiles(
                self._tile_score, images, tile, False)[0]
        return self._forward[tile]

    def __call__(self, image: np.ndarray) -> Dreamed:
        """Dream on one uint8 (height, width, channels) image."""
        config = self.config
        original = tf.convert_to_tensor(image[None])
        shapes = self.octave_shapes(*image.shape[:2])
        frames, detail = [], None
        for octave, shape in enumerate(shapes):
            start = _resized(original, shape)
            if detail is not None:  # re-inject the detail dreamed at the previous octave
                start = tf.clip_by_value(start + tf.image.resize(detail, shape), 0.0, 1.0)
            detail, tile = None, self.tile_shape(*shape)
            result = optimize(
                self.objective(tile),
                Pixel(*shape, image.shape[-1], bound="clip"),
                OptimConfig(
                    steps=config.steps, learning_rate=config.step_size, method="normalized",
                    transforms=RandomRoll(max(tile)), snapshot_every=config.snapshot_every,
                    seed=config.seed + octave,
                ),
                targets=np.zeros(1, np.int32),
                start=start,
                final=self.forward_objective(tile),
            )
            del start
            detail = result.images - _resized(original, shape)
            if result.snapshots is not None:
                frames += [snapshot[0] for snapshot in result.snapshots]
        before = self.score(_resized(original, shapes[-1]))
        return Dreamed(result.images[0], before, float(result.scores[0]), shapes, frames)

    def score(self, images: tf.Tensor) -> float:
        """The objective of one image in [0, 1], tiled as during the dream (no roll); a
        forward pass only."""
        tile = self.tile_shape(*images.shape[1:3])
        if tile not in self._scores:
            self._scores[tile] = tf.function(self.forward_objective(tile))
        return float(self._scores[tile](images)[0])


def _resized(images: tf.Tensor, shape: tuple[int, int]) -> tf.Tensor:
    """uint8 images as floats in [0, 1], resized with antialiasing."""
    return tf.image.resize(images, shape, method="area", antialias=True) / 255.0


def _tiled_objective(tile_score, tile: tuple[int, int]):
    """Mean of `tile_score` over tiles covering the image; gradients computed tile by tile."""

    def objective(images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        del targets

        @tf.custom_gradient
        def tiled(images):
            mean, gradient = _over_tiles(tile_score, images, tile, with_gradient=True)

            def backward(upstream, variables=()):
                # The model's weights stay fixed: no gradients for them.
                return gradient * upstream[:, None, None, None], [None] * len(variables)

            return mean, backward

        return tiled(images)

    return objective


def _over_tiles(tile_score, images: tf.Tensor, tile: tuple[int, int], with_gradient: bool):
    """(mean of `tile_score` over the tiles covering `images`, its gradient with respect to the
    images or None), one tile at a time."""
    (tile_height, tile_width), (height, width) = tile, images.shape[1:3]
    grid = [(y, x) for y in _tile_offsets(height, tile_height)
            for x in _tile_offsets(width, tile_width)]
    offsets = tf.constant(grid, tf.int32)

    def body(index, total, gradient):
        y, x = offsets[index, 0], offsets[index, 1]
        crop = tf.slice(images, [0, y, x, 0], [-1, tile_height, tile_width, -1])
        if not with_gradient:
            return index + 1, total + tile_score(crop), gradient
        with tf.GradientTape() as tape:
            tape.watch(crop)
            score = tile_score(crop)
        rows, columns = [y, height - tile_height - y], [x, width - tile_width - x]
        placed = tf.pad(tape.gradient(score, crop), [[0, 0], rows, columns, [0, 0]])
        return index + 1, total + score, gradient + placed

    start = (tf.constant(0), tf.zeros(tf.shape(images)[:1]),
             tf.zeros_like(images) if with_gradient else tf.zeros(()))
    _, total, gradient = tf.while_loop(
        lambda index, *_: index < len(grid), body, start, parallel_iterations=1
    )
    return total / len(grid), gradient / len(grid) if with_gradient else None
