"""Images optimised by gradient ascent: parameterisations, transforms, regularisers, one loop.

The pieces compose; every one is optional except the objective::

    def objective(images, targets):          # images: (batch, h, w, c) floats in [0, 1]
        maps = features(preprocess(images * 255.0))
        return filter_scores(maps, targets)  # (batch,) scores to maximise

    result = optimize(objective, Fourier(128, 128, 3), OptimConfig(steps=256),
                      targets=np.arange(16))
    result.images, result.scores, result.snapshots

- An *objective* maps images in [0, 1] and per-item `targets` (filter or class indices, target
  features, ...) to one score per item. It preprocesses and calls the model itself.
- A *parameterisation* (`Pixel`, `Fourier`) turns the optimised tensor into images in [0, 1];
  `optimize(..., start=images)` starts a `Pixel` parameterisation from given images (a photo).
- `Transforms` (pad, jitter, scale, rotate) move the images randomly before every step, with
  stateless TF random ops seeded by (seed, step): the same seed gives the same bytes. With
  `OptimConfig(anneal=True)` their strength falls linearly to zero over the run.
- `Regularizers` subtract weighted L2, total-variation and blur penalties from the score.
- `optimize` runs the whole step loop inside one `tf.function` (Adam, or `normalized` gradient
  ascent as in DeepDream). Batch items are independent problems; the compiled loop is cached
  and reused for batches of any size with the same objective, parameterisation and config.
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import tensorflow as tf

Objective = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
Transform = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (images, seed) -> images, e.g. Transforms

# Square root of the colour correlation of natural images (ImageNet RGB), as used by Lucid.
_COLOUR_CORRELATION = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
_COLOUR_CORRELATION /= np.max(np.linalg.norm(_COLOUR_CORRELATION, axis=0))
_EPSILON = 1e-6
# Spread of the random start: images of low-contrast noise (standard deviation ~0.05 around grey).
_START_SPREAD = 0.2


class Parameterization(Protocol):
    """How the optimised tensor becomes images (batch, height, width, channels) in [0, 1]."""

    def initial(self, batch: int, seed: tf.Tensor) -> tf.Tensor:
        """A random starting tensor for `batch` images."""

    def images(self, tensor: tf.Tensor) -> tf.Tensor:
        """The images the tensor stands for."""

    def project(self, tensor: tf.Tensor) -> tf.Tensor:
        """Bring the tensor back into its valid set after a step (identity if unconstrained)."""


@dataclass(frozen=True)
class Pixel:
    """Every pixel a free value; `bound` keeps images in [0, 1] by a sigmoid or by clipping."""

    height: int
    width: int
    channels: int = 3
    bound: str = "sigmoid"  # or "clip" (the tensor is the image itself, clipped every step)

    def initial(self, batch: int, seed: tf.Tensor) -> tf.Tensor:
        noise = tf.random.stateless_normal((batch, self.height, self.width, self.channels), seed)
        if self.bound == "sigmoid":
            return noise * _START_SPREAD
        return noise * _START_SPREAD / 4.0 + 0.5  # the sigmoid's slope at grey is 1/4

    def from_images(self, images) -> tf.Tensor:
        """The tensor that stands for given images in [0, 1] (to start from a photo)."""
        images = tf.convert_to_tensor(images, tf.float32)
        if self.bound == "clip":
            return images
        clipped = tf.clip_by_value(images, 0.01, 0.99)
        return tf.math.log(clipped / (1.0 - clipped))

    def images(self, tensor: tf.Tensor) -> tf.Tensor:
        return tf.sigmoid(tensor) if self.bound == "sigmoid" else tensor

    def project(self, tensor: tf.Tensor) -> tf.Tensor:
        return tensor if self.bound == "sigmoid" else tf.clip_by_value(tensor, 0.0, 1.0)


@dataclass(frozen=True)
class Fourier:
    """A spectrum scaled by 1/frequency**decay, with decorrelated colour, through a sigmoid.

    Low frequencies get large steps and high frequencies small ones, so the optimisation
    favours smooth, natural-looking images over high-frequency noise.
    """

    height: int
    width: int
    channels: int = 3
    decay: float = 1.0

    def _scale(self) -> np.ndarray:
        fy = np.fft.fftfreq(self.height)[:, None]
        fx = np.fft.rfftfreq(self.width)[None, :]
        frequency = np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / max(self.height, self.width))
        # / 4: the spread of the start's values in the image, before the sigmoid
        return (frequency**-self.decay * np.sqrt(self.height * self.width) / 4.0).astype(np.float32)

    def initial(self, batch: int, seed: tf.Tensor) -> tf.Tensor:
        shape = (batch, 2, self.channels, self.height, self.width // 2 + 1)
        return tf.random.stateless_normal(shape, seed) * _START_SPREAD

    def images(self, tensor: tf.Tensor) -> tf.Tensor:
        real, imaginary = tf.unstack(tensor, axis=1)  # scaled as reals: half the cost of complex
        scale = self._scale()
        spectrum = tf.complex(real * scale, imaginary * scale)
        planes = tf.signal.irfft2d(spectrum, fft_length=(self.height, self.width))
        values = tf.transpose(planes, (0, 2, 3, 1))  # (batch, height, width, channels)
        if self.channels == 3:
            values = tf.tensordot(values, tf.constant(_COLOUR_CORRELATION.T), axes=1)
        return tf.sigmoid(values)

    def project(self, tensor: tf.Tensor) -> tf.Tensor:
        return tensor


@dataclass(frozen=True)
class Transforms:
    """Random moves before every step, so only features robust to them survive.

    The image sits in a grey frame `pad` pixels wide (shrunk to keep its size), is zoomed by a
    factor in [1 - scale, 1 + scale], rotated by up to `degrees` and shifted by up to `jitter`
    pixels; all in one bilinear resampling, uncovered pixels grey. Shapes are kept.
    `strength` scales every move (0: none), for transforms that fade out over a run.
    """

    pad: int = 4
    jitter: int = 8
    scale: float = 0.1
    degrees: float = 10.0

    @classmethod
    def standard(cls, size: int) -> "Transforms":
        """Lucid's robustness set scaled to an image side of `size` pixels."""
        return cls(pad=max(1, size // 32), jitter=max(1, size // 16))

    def __call__(self, images: tf.Tensor, seed: tf.Tensor, strength=1.0) -> tf.Tensor:
        batch, height, width = tf.unstack(tf.shape(images)[:3])
        draws = tf.random.stateless_uniform((batch, 4), seed, -1.0, 1.0) * strength
        size = tf.cast(tf.stack([width, height]), tf.float32)
        frame = size / (size + 2.0 * self.pad * strength)  # (x, y) shrink revealing grey frame
        zoom = 1.0 + self.scale * draws[:, 2]
        angle = np.deg2rad(self.degrees) * draws[:, 3]
        shift = self.jitter * draws[:, :2]
        centre = (size - 1.0) / 2.0
        # Output pixel o comes from input pixel i = centre + A (o - centre - shift).
        cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
        a = tf.stack([cos / frame[0], sin / frame[0]], axis=1)
        b = tf.stack([-sin / frame[1], cos / frame[1]], axis=1)
        origin = centre + shift
        a2 = centre[0] - tf.reduce_sum(a * origin, axis=1)
        b2 = centre[1] - tf.reduce_sum(b * origin, axis=1)
        zeros = tf.zeros_like(a2)
        matrices = tf.stack([a[:, 0], a[:, 1], a2, b[:, 0], b[:, 1], b2, zeros, zeros], axis=1)
        moved = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=matrices, output_shape=tf.stack([height, width]),
            fill_value=0.5, interpolation="BILINEAR", fill_mode="CONSTANT",
        )
        moved.set_shape(images.shape)  # a static shape lets the model's ops pick fast kernels
        return moved


@dataclass(frozen=True)
class Regularizers:
    """Weights of penalties subtracted from each item's score (0 turns one off).

    l2: mean squared distance from grey; tv: mean absolute difference of neighbouring pixels;
    blur: mean squared distance from a 3x3-blurred copy of the image (held constant);
    alpha: Mahendran & Vedaldi's alpha-norm prior, the mean of |2 (image - grey)| ** 6.
    """

    l2: float = 0.0
    tv: float = 0.0
    blur: float = 0.0
    alpha: float = 0.0

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        penalty = tf.zeros(tf.shape(images)[:1])
        if self.l2:
            penalty += self.l2 * tf.reduce_mean(tf.square(images - 0.5), axis=[1, 2, 3])
        if self.tv:
            penalty += self.tv * total_variation(images)
        if self.blur:
            blurred = tf.stop_gradient(tf.nn.avg_pool2d(images, 3, 1, "SAME"))
            penalty += self.blur * tf.reduce_mean(tf.square(images - blurred), axis=[1, 2, 3])
        if self.alpha:
            penalty += self.alpha * tf.reduce_mean((2.0 * images - 1.0) ** 6, axis=[1, 2, 3])
        return penalty


def total_variation(images: tf.Tensor) -> tf.Tensor:
    """Sum of absolute differences of neighbouring pixels per item, over the number of values."""
    count = tf.cast(tf.reduce_prod(tf.shape(images)[1:]), images.dtype)
    return tf.image.total_variation(images) / count


@dataclass(frozen=True)
class OptimConfig:
    """How to optimise: steps, step size, update rule, transforms, penalties, GIF frames."""

    steps: int = 256
    learning_rate: float = 0.05
    method: str = "adam"  # or "normalized": step = rate * gradient / mean |gradient|
    transforms: Transform | None = field(default_factory=Transforms)
    anneal: bool = False  # fade the transforms out linearly (they take a third arg, strength)
    regularizers: Regularizers = field(default_factory=Regularizers)
    snapshot_every: int = 0  # keep the images every k steps (0: none)
    seed: int = 0


@dataclass
class OptimResult:
    """Optimised images in [0, 1], their scores (no transforms, no penalties), snapshots."""

    images: np.ndarray  # (batch, height, width, channels)
    scores: np.ndarray  # (batch,)
    snapshots: np.ndarray | None  # (frames, batch, height, width, channels): steps 0, k, 2k, ...


def optimize(
    objective: Objective,
    parameterization: Parameterization,
    config: OptimConfig,
    targets,
    start=None,
    final: Objective | None = None,
) -> OptimResult:
    """Maximise `objective(images, targets)` for every item of `targets` at once.

    Args:
        objective: (images in [0, 1], targets) -> (batch,) scores, TensorFlow ops only.
        parameterization: `Pixel` or `Fourier` (or any `Parameterization`).
        config: steps, learning rate, method, transforms, regularisers, snapshots, seed.
        targets: one entry per batch item, passed to the objective unchanged.
        start: optional images (batch, h, w, c) in [0, 1] a `Pixel` parameterisation starts from.
        final: the same scores without a gradient, for the result's `scores` (default: the
            objective), where the objective computes its gradient as it goes (DeepDream's tiles).
    """
    targets = tf.convert_to_tensor(targets)
    seed = tf.constant([config.seed, 0], tf.int32)
    if start is None:
        tensor = parameterization.initial(int(targets.shape[0]), seed)
    else:
        tensor = parameterization.from_images(start)
    signature = tuple(tf.TensorSpec((None, *t.shape[1:]), t.dtype) for t in (tensor, targets))
    loop = _compiled_loop(objective, final or objective, parameterization,
                          replace(config, seed=0), signature)
    images, scores, snapshots = loop(tensor, targets, seed)
    kept = snapshots.numpy() if config.snapshot_every else None
    return OptimResult(images.numpy(), scores.numpy(), kept)


@functools.lru_cache(maxsize=8)
def _compiled_loop(objective, final, parameterization, config: OptimConfig, signature: tuple):
    every = config.snapshot_every
    frame_count = math.ceil(config.steps / every) + 1 if every else 1
    rate = config.learning_rate

    def seen(images, step_seed, step):
        """The images as the model sees them at `step`."""
        if not config.transforms:
            return images
        if not config.anneal:
            return config.transforms(images, step_seed)
        strength = 1.0 - tf.cast(step, tf.float32) / config.steps
        return config.transforms(images, step_seed, strength)

    def gain(tensor, targets, step_seed, step):
        images = parameterization.images(tensor)
        score = objective(seen(images, step_seed, step), targets)
        return tf.reduce_sum(score - config.regularizers(images))

    # A function of its own inside the loop: inlined into a `tf.while_loop`'s body, the step
    # got TensorFlow's generic max pooling gradient instead of oneDNN's in about half of the
    # traces on its oneDNN build (40 % slower per step); called, oneDNN's in every trace.
    @tf.function(experimental_attributes={"_noinline": True})
    def step(tensor, targets, first, second, seed, number):
        step_seed = tf.stack([seed[0], number + 1])
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            total = gain(tensor, targets, step_seed, number)
        gradient = tape.gradient(total, tensor)
        if config.method == "normalized":
            axes = list(range(1, len(tensor.shape)))
            scale = tf.reduce_mean(tf.abs(gradient), axis=axes, keepdims=True) + _EPSILON
            return parameterization.project(tensor + rate * gradient / scale), first, second
        count = tf.cast(number + 1, tf.float32)
        first = 0.9 * first + 0.1 * gradient
        second = 0.999 * second + 0.001 * tf.square(gradient)
        unbiased = first / (1.0 - 0.9**count)
        tensor += rate * unbiased / (tf.sqrt(second / (1.0 - 0.999**count)) + 1e-8)
        return parameterization.project(tensor), first, second

    @tf.function(input_signature=(*signature, tf.TensorSpec((2,), tf.int32)))
    def loop(tensor, targets, seed):
        # Adam's moments (scalars for normalised steps, which need none: memory for big images)
        moments = tf.zeros(()) if config.method == "normalized" else tf.zeros_like(tensor)
        first, second = moments, moments
        frames = tf.TensorArray(tf.float32, size=frame_count)
        for number in tf.range(config.steps):
            if every and number % every == 0:
                frames = frames.write(number // every, parameterization.images(tensor))
            tensor, first, second = step(tensor, targets, first, second, seed, number)
        images = parameterization.images(tensor)
        frames = frames.write(frame_count - 1, images)  # the last frame, or the only one
        return images, final(images, targets), frames.stack()

    return loop
