"""Activation maximisation: images synthesised to excite one filter or one class each.

All requested filters (or classes) are optimised together as one batch in one compiled loop
(`optim.optimize`); large requests run in chunks of `batch_size`.
"""

import functools
from dataclasses import dataclass, field, replace

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.models.extract import build_extractor, functional
from cnnviz_cli.models.heads import Head, detect_head
from cnnviz_cli.techniques.objectives import (
    UnitScore,
    channel_score,
    layer_features,
    layer_objective,
)
from cnnviz_cli.techniques.optim import Fourier, Objective, OptimConfig, Pixel, optimize

PARAMETERIZATIONS = {"fourier": Fourier, "pixel": Pixel}
# The random image filter visualisation classically starts from (Chollet, Deep Learning with
# Python): uniform noise around mid-grey. Its scores are the baseline the results are held to.
NOISE_RANGE = (0.4, 0.6)


@dataclass(frozen=True)
class MaximizeConfig:
    """The optimisation, the parameterisation name and how many targets per compiled batch."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    parameterization: str = "fourier"
    batch_size: int = 16


@dataclass
class Maximized:
    """One synthesised image per target, with the score it reached and that of random noise."""

    targets: np.ndarray  # filter or class indices
    images: np.ndarray  # (count, height, width, channels) in [0, 1]
    scores: np.ndarray  # mean filter activation or class score (pre-activation) reached
    noise_scores: np.ndarray  # the same score on random-noise images (uniform in NOISE_RANGE)
    snapshots: np.ndarray | None  # (frames, count, height, width, channels) for animations
    probabilities: np.ndarray | None = None  # the head's probability of the target class

    @property
    def ratios(self) -> np.ndarray:
        """How many times the noise score each image reached."""
        return self.scores / np.maximum(self.noise_scores, 1e-12)

    def record(self, index: int) -> dict:
        """The numbers worth recording for item `index`."""
        numbers = {"target": int(self.targets[index]), "activation": float(self.scores[index]),
                   "noise_activation": float(self.noise_scores[index])}
        if self.probabilities is not None:
            numbers["probability"] = float(self.probabilities[index])
        return numbers


def filter_objective(model: keras.Model, layer_path: str, preprocess) -> Objective:
    """images in [0, 1], filter indices -> mean activation of each item's filter."""
    return layer_objective(layer_features(model, layer_path), preprocess, channel_score)


def class_logits(model: keras.Model, preprocess):
    """images in [0, 1] -> the pre-activation (first) output."""
    extractor = build_extractor(model, [], logits=True)
    logits = functional(extractor.inputs, extractor.outputs[0])
    return lambda images: logits(preprocess(images * 255.0), training=False)


def maximize(
    objective: Objective, targets: np.ndarray, image_shape: tuple[int, int, int],
    config: MaximizeConfig, measure: Objective | None = None,
) -> Maximized:
    """Synthesise one image per entry of `targets` maximising `objective(images, targets)`;
    the scores recorded are those of `measure` (default: the objective itself)."""
    targets = np.asarray(targets, dtype=np.int32)
    parameterization = PARAMETERIZATIONS[config.parameterization](*image_shape)
    chunks = [  # each chunk its own seed, so no two items start from the same noise
        optimize(objective, parameterization, replace(config.optim, seed=config.optim.seed + i),
                 targets[i : i + config.batch_size])
        for i in range(0, len(targets), config.batch_size)
    ]
    noise = tf.random.stateless_uniform(
        (len(targets), *image_shape), (config.optim.seed, 1), *NOISE_RANGE
    )
    snapshots = None
    if config.optim.snapshot_every:
        snapshots = np.concatenate([chunk.snapshots for chunk in chunks], axis=1)
    images = np.concatenate([chunk.images for chunk in chunks])
    scores = np.concatenate([chunk.scores for chunk in chunks])
    if measure is not None:
        scores = _scores(measure, images, targets, config.batch_size)
    return Maximized(
        targets=targets, images=images, scores=scores,
        noise_scores=_scores(measure or objective, noise, targets, config.batch_size),
        snapshots=snapshots,
    )


def filter_objectives(
    model: keras.Model, layer_path: str, preprocess, unit_score: UnitScore = channel_score,
    diversity: float = 0.0,
) -> tuple[Objective, Objective | None]:
    """(the objective to optimise, the score to record: None when it is the objective) for
    `unit_score` at `layer_path`; with `diversity`, the objective subtracts a Gram-similarity
    penalty that pushes the samples of one filter apart, and the recorded score leaves it out."""
    features = layer_features(model, layer_path)
    measure = layer_objective(features, preprocess, unit_score)
    if not diversity:
        return measure, None
    return layer_objective(features, preprocess, unit_score, diversity), measure


def maximize_filters(
    model: keras.Model, layer_path: str, preprocess, filters: np.ndarray,
    image_shape: tuple[int, int, int], config: MaximizeConfig, *,
    unit_score: UnitScore = channel_score, diversity: float = 0.0,
) -> Maximized:
    """One image per entry of `filters` (repeat a filter for several samples), each maximising
    `unit_score` at `layer_path` (default: the filter's mean activation), with `diversity` as
    in `filter_objectives` (a chunk of `batch_size` must hold all samples of a filter)."""
    objective, measure = filter_objectives(model, layer_path, preprocess, unit_score, diversity)
    return maximize(objective, filters, image_shape, config, measure)


def maximize_classes(
    model: keras.Model, preprocess, classes: np.ndarray, image_shape: tuple[int, int, int],
    config: MaximizeConfig, head: Head | None = None,
) -> Maximized:
    """One image per class, each maximising its pre-activation score (`head`, by default the
    detected head of the first output); records the head's probability when it has one."""
    head = head or detect_head(model)
    logits = class_logits(model, preprocess)
    result = maximize(
        lambda images, indices: head.score(logits(images), indices, None), classes,
        image_shape, config,
    )
    if head.has_probability:
        result.probabilities = _scores(
            lambda images, indices: head.probability(logits(images), indices, None),
            result.images, result.targets, config.batch_size,
        )
    return result


def _scores(objective: Objective, images, targets: np.ndarray, batch_size: int) -> np.ndarray:
    """The objective on fixed images, in compiled batches."""
    compiled = _compiled(objective)
    return np.concatenate([
        compiled(tf.convert_to_tensor(images[i : i + batch_size]), targets[i : i + batch_size])
        .numpy()
        for i in range(0, len(targets), batch_size)
    ])


@functools.lru_cache(maxsize=8)
def _compiled(objective: Objective):
    return tf.function(objective, reduce_retracing=True)
