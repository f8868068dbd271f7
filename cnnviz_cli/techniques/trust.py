"""Can a heatmap be trusted? Seven metrics of the maps of a CamBatch, each declared once.

Every metric is a `TrustMetric` registered with `trust_metric` next to its computation: its
name (`--metric NAME`), record field, direction, meaning (the `--help` text), whether it draws at
random, and its measure, a function from a `TrustPass` to record fields per method and item. The
command line, the gates and the tables read `TRUST_METRICS`; TensorFlow is imported on first
use, so reading them stays cheap.

- `road` (Rong et al.): the class probability after imputing a share of the pixels, least
  relevant first minus most relevant first, averaged over 10-90 %. Imputation is linear (each
  removed pixel is the weighted mean of its 8 neighbours) plus a little noise, so the removed
  pixels leak no shape; all copies run in compiled passes (`CamExplainer.perturbed_scores`).
- `mufidelity` (Bhatt et al.): the correlation, over random subsets of grid cells, between the
  heat inside a subset and the drop of the explained score when it is set to 0.
- `stability` (max-sensitivity): the largest change of the map, relative to its norm, over
  noisy copies of the input (uniform noise of 5 % of the input's range, seeded).
- `randomisation` (Adebayo et al., cascading): the Spearman correlation (and SSIM) between the
  map and the maps of a copy of the model whose layers are re-initialised from the top down;
  the number recorded is the similarity after every layer is re-initialised.
- `random-logit`: the Spearman correlation between the map and the map of a random other class.
- `sparseness` (Gini index) and `complexity` (entropy of the map normalised to sum 1), of the
  maps at the model's input size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.lazy import keras, tf
from cnnviz_cli.techniques.agreement import correlation
from cnnviz_cli.techniques.cam import (
    CamBatch,
    CamExplainer,
    CamOptions,
    Targets,
    gaussian_blur,
)
from cnnviz_cli.techniques.metrics import Metric, heat_ranks, upsample

Measure = Callable[["TrustPass"], dict[str, dict[str, Any]]]  # -> field -> method -> per item
Setup = Callable[[CamExplainer, CamOptions, tuple], Any]  # (explainer, options, input shape)


@dataclass(frozen=True)
class TrustMetric(Metric):
    """A trust metric, declared once next to its computation (see `trust_metric`)."""

    meaning: str
    measure: Measure
    random: bool = False  # draws at random (seeded with --seed)
    setup: Setup | None = None  # run once per explainer, before any image


TRUST_METRICS: dict[str, TrustMetric] = {}


def trust_metric(name: str, higher_is_better: bool, meaning: str, random: bool = False,
                 field: str | None = None, setup: Setup | None = None) -> Callable:
    """Register `measure(trust_pass) -> {record field: {method: per-item values}}` as the
    metric `name`, recorded as `field` (default: the name with _ for -); `setup(explainer,
    options, input shape)` checks the model and prepares what the measure reads from
    `TrustPass.prepared[name]`."""

    def add(measure: Measure) -> Measure:
        TRUST_METRICS[name] = TrustMetric(name, field or name.replace("-", "_"),
                                          higher_is_better, meaning, measure, random, setup)
        return measure

    return add


ROAD_FRACTIONS = tuple(np.round(np.linspace(0.1, 0.9, 9), 2))  # shares of pixels imputed
ROAD_NOISE = 0.01  # imputation noise, as a fraction of the item's value range
IMPUTE_ITERATIONS = (8, 1)  # Jacobi steps on each coarser level of the imputation's pyramid,
# then at full size (the coarse levels carry the far pixels in, cheaply)
SUBSETS, GRID, SUBSET_FRACTION = 64, 8, 0.2  # MuFidelity: subsets of cells of a grid x grid
STABILITY_SAMPLES, STABILITY_RADIUS = 8, 0.05
MAX_CASCADE_STEPS = 8  # randomisation: at most this many groups of layers, top down


@dataclass
class TrustPass:
    """What the trust metrics measure: a CamBatch of the model inputs `items` (one per map),
    the explainer and options that made it, and what the metrics' `setup` prepared, by name."""

    explainer: CamExplainer
    items: np.ndarray  # (items, height, width, channels)
    cam_batch: CamBatch
    options: CamOptions
    prepared: dict[str, Any]
    cascade: Cascade | None = None  # set by randomisation: the maps that --sanity draws

    @property
    def methods(self) -> list[str]:
        return list(self.cam_batch.maps)

    def of_maps(self, measure: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
        """Per method, `measure` of its maps at the input size."""
        size = self.items.shape[1:3]
        return {method: measure(upsample(self.cam_batch.maps[method], size))
                for method in self.methods}

    def every_method(self, measure: Callable) -> dict[str, np.ndarray]:
        """Per method, `measure(inputs, classes, scores, maps)` of all methods' maps in one
        batched run."""
        count, methods, size = len(self.cam_batch.classes), self.methods, self.items.shape[1:3]
        maps = np.concatenate([upsample(self.cam_batch.maps[m], size) for m in methods])
        values = measure(np.tile(self.items, (len(methods), 1, 1, 1)),
                         np.tile(self.cam_batch.classes, len(methods)),
                         np.tile(self.cam_batch.scores, len(methods)), maps)
        return dict(zip(methods, values.reshape(len(methods), count), strict=True))


class TrustMetrics:
    """The trust metrics `names` (of TRUST_METRICS) of the heatmaps of CamBatches."""

    def __init__(self, explainer: CamExplainer, names: list[str], options: CamOptions,
                 input_shape: tuple):
        self.explainer, self.options = explainer, options
        self.specs = [spec for name, spec in TRUST_METRICS.items() if name in names]
        self.prepared = {spec.name: spec.setup(explainer, options, input_shape)
                         for spec in self.specs if spec.setup is not None}

    def __call__(self, inputs: np.ndarray, cam_batch: CamBatch):
        """(per method, per item: the record fields; the Cascade, or None without
        randomisation) of a CamBatch of the preprocessed `inputs`."""
        trust = TrustPass(self.explainer, inputs[cam_batch.image_indices], cam_batch,
                          self.options, self.prepared)
        fields = {method: [{} for _ in cam_batch.classes] for method in trust.methods}
        for spec in self.specs:
            for name, values in spec.measure(trust).items():
                for method, numbers in values.items():
                    for item, number in enumerate(numbers):
                        fields[method][item][name] = np.asarray(number).tolist()
        return fields, trust.cascade


NEIGHBOURS = np.array([[1, 2, 1], [2, 0, 2], [1, 2, 1]], np.float32) / 12


def _neighbour_sum(images: tf.Tensor) -> tf.Tensor:
    """The NEIGHBOURS-weighted sum of every pixel's neighbours (0 outside the image), one
    depthwise convolution over the channels."""
    kernel = np.tile(NEIGHBOURS[:, :, None, None], (1, 1, images.shape[-1], 1))
    return tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "SAME")


def impute(images: tf.Tensor, removed: tf.Tensor,
           iterations: tuple[int, int] = IMPUTE_ITERATIONS):
    """Rong et al.'s linear imputation of the `removed` pixels ((n, h, w, 1), 1 = removed):
    each becomes the mean of its 8 neighbours, weighted 1/6 (sides) and 1/12 (corners). Solved
    coarse to fine on a pyramid of 2, 4, 8 ... pixel cells: on each level a cell with kept
    pixels holds their mean, the others start from the coarser level's solution (bilinear)
    and take `iterations` Jacobi steps (on the coarser levels, at full size). Kept pixels
    are unchanged."""
    keep = 1.0 - removed
    levels = [(images * keep, keep)]
    while max(levels[-1][1].shape[1:3]) > 1:
        total, weight = levels[-1]
        levels.append((tf.nn.avg_pool2d(total, 2, 2, "SAME"),
                       tf.nn.avg_pool2d(weight, 2, 2, "SAME")))
    filled = None
    for depth, (total, weight) in reversed(list(enumerate(levels))):
        if depth == 0:  # the pixels themselves: kept or removed
            known, kept = keep, total
        else:
            known = tf.cast(weight > 0, images.dtype)
            kept = known * tf.math.divide_no_nan(total, weight)
        if filled is None:
            filled = kept
            continue
        free = 1.0 - known  # the weights sum to less at the border: divided by their sum
        share = free / _neighbour_sum(tf.ones_like(known[:1]))
        filled = kept + free * tf.image.resize(filled, total.shape[1:3], "bilinear")
        for _ in range(iterations[depth == 0]):
            filled = kept + share * _neighbour_sum(filled)
    return filled


def _road_inputs(inputs, sources, item, copy, copies):
    """ROAD copies: the first half remove the most relevant pixels, the second the least."""
    ranks, noise, spreads = sources
    half = copies // 2
    pixels = tf.shape(ranks)[1] * tf.shape(ranks)[2]
    fraction = tf.gather(tf.constant(ROAD_FRACTIONS, tf.float32), copy % half)
    count = tf.cast(tf.round(fraction * tf.cast(pixels, tf.float32)), tf.int32)[:, None, None]
    rank = tf.gather(ranks, item)
    removed = tf.where((copy < half)[:, None, None], rank < count, rank >= pixels - count)
    removed = tf.cast(removed, tf.float32)[..., None]
    spread = tf.gather(spreads, item)[:, None, None, None]  # the item's value range
    return impute(tf.gather(inputs, item), removed) + removed * spread * tf.gather(
        noise, copy % half)


def road(explainer: CamExplainer, inputs: np.ndarray, classes: np.ndarray, maps: np.ndarray,
         batch_size: int = 32, seed: int = 0) -> np.ndarray:
    """ROAD of one map per item: mean probability with the least relevant ROAD_FRACTIONS
    imputed minus with the most relevant imputed, (items,); higher is more faithful."""
    ranks = tf.constant(heat_ranks(maps, inputs.shape[1:3]))
    noise = ROAD_NOISE * np.random.default_rng(seed).standard_normal(
        (len(ROAD_FRACTIONS), *inputs.shape[1:]), np.float32)  # one image per fraction
    scores = explainer.perturbed_scores(
        _road_inputs, tf.constant(inputs, tf.float32), tf.constant(classes, tf.int32),
        (ranks, tf.constant(noise), tf.constant(np.ptp(inputs, axis=(1, 2, 3)), tf.float32)),
        2 * len(ROAD_FRACTIONS), batch_size, probability=True,
    ).numpy()
    half = len(ROAD_FRACTIONS)
    return scores[:, half:].mean(axis=1) - scores[:, :half].mean(axis=1)


@trust_metric("road", True, "ROAD: probability with the least minus the most relevant pixels "
              "imputed, mean over 10-90 %", random=True)
def _road(trust: TrustPass) -> dict:
    return {"road": trust.every_method(lambda inputs, classes, scores, maps: road(
        trust.explainer, inputs, classes, maps, trust.options.batch_size, trust.options.seed))}


def removed_subsets(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(SUBSETS, height, width) float masks, 1 on the removed pixels: SUBSET_FRACTION of the
    cells of a GRID x GRID grid (at most one cell per pixel) per subset, seeded."""
    rng = np.random.default_rng(seed)
    rows, columns = (min(GRID, side) for side in size)
    chosen = max(1, round(SUBSET_FRACTION * rows * columns))
    cells = np.zeros((SUBSETS, rows * columns), np.float32)
    for subset in cells:
        subset[rng.choice(rows * columns, chosen, replace=False)] = 1.0
    cells = cells.reshape(SUBSETS, rows, columns)
    return cells[:, np.arange(size[0]) * rows // size[0]][:, :, np.arange(size[1]) * columns
                                                            // size[1]]


def _subset_masks(removed, item, copy, copies, size):
    del item, copies, size
    return 1.0 - tf.gather(removed, copy)[..., None]


def mufidelity(explainer: CamExplainer, inputs: np.ndarray, classes: np.ndarray,
               scores: np.ndarray, maps: np.ndarray, batch_size: int = 32,
               seed: int = 0) -> np.ndarray:
    """MuFidelity of one map per item, (items,): the Pearson correlation over `removed_subsets`
    between the map's heat (at the input size) inside a subset and the drop of the explained
    score `scores` when the subset is set to 0."""
    removed = removed_subsets(inputs.shape[1:3], seed)
    masked = explainer.masked_scores(
        _subset_masks, tf.constant(inputs, tf.float32), tf.constant(classes, tf.int32),
        tf.constant(removed), SUBSETS, batch_size,
    ).numpy()
    heat = upsample(maps, inputs.shape[1:3]).reshape(len(maps), -1) @ removed.reshape(
        SUBSETS, -1).T
    drops = np.asarray(scores)[:, None] - masked
    return np.array([_pearson(h, d) for h, d in zip(heat, drops, strict=True)])


@trust_metric("mufidelity", True, "correlation of the heat of random pixel subsets with the "
              "score drop when they are removed", random=True)
def _mufidelity(trust: TrustPass) -> dict:
    return {"mufidelity": trust.every_method(lambda inputs, classes, scores, maps: mufidelity(
        trust.explainer, inputs, classes, scores, maps, trust.options.batch_size,
        trust.options.seed))}


@trust_metric("stability", False, "largest relative change of the map under small input noise",
              random=True)
def _stability(trust: TrustPass) -> dict:
    """Per method: max over noisy copies of |map(noisy) - map| / |map|, (items,); one
    explainer pass per copy, so memory stays that of a batch."""
    items, maps = trust.items, trust.cam_batch.maps
    rng = np.random.default_rng(trust.options.seed)
    spread = np.ptp(items, axis=(1, 2, 3)).reshape(-1, 1, 1, 1)
    targets = Targets(per_image=tuple(int(index) for index in trust.cam_batch.classes))
    changes = {method: np.zeros(len(items)) for method in maps}
    for _ in range(STABILITY_SAMPLES):
        noise = rng.uniform(-1, 1, items.shape) * STABILITY_RADIUS * spread
        again = trust.explainer((items + noise).astype(np.float32), targets, trust.methods,
                                trust.options)
        for method, heat in maps.items():
            flat, noisy = (m.reshape(len(items), -1) for m in (heat, again.maps[method]))
            norm = np.linalg.norm(flat, axis=1)
            scale = np.where(norm > 0, norm, np.linalg.norm(noisy, axis=1))
            difference = np.linalg.norm(noisy - flat, axis=1)
            ratio = np.divide(difference, scale, out=np.zeros_like(difference), where=scale > 0)
            changes[method] = np.maximum(changes[method], ratio)
    return {"stability": changes}


def rank_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman correlation of each pair of same-size maps (ties share their mean rank), (n,)."""
    return np.array([_pearson(_ranks(a.ravel()), _ranks(b.ravel()))
                     for a, b in zip(first, second, strict=True)])


def _pearson(first: np.ndarray, second: np.ndarray) -> float:
    """`agreement.correlation` of two vectors (a constant one: 1 if both are, else 0)."""
    return correlation(first[None], second[None])


def _ranks(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[inverse]


def ssim(first: np.ndarray, second: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Structural similarity of each pair of maps, both upsampled to `size` and scaled to a
    maximum of 1, (n,): the mean over pixels of Wang et al.'s SSIM in a Gaussian window
    (sigma 1.5, 11 taps, reflected at the edges)."""
    pair = (tf.constant(np.asarray(maps, np.float32)[..., None]) for maps in (first, second))
    return _compiled_ssim()(*pair, tuple(int(side) for side in size)).numpy()


@cache
def _compiled_ssim() -> Callable:
    return tf.function(_ssim, reduce_retracing=True)


def _ssim(first, second, size):
    def scaled(maps):
        maps = tf.image.resize(maps, size, "bilinear")
        return tf.math.divide_no_nan(maps, tf.reduce_max(maps, axis=[1, 2, 3], keepdims=True))

    x, y = scaled(first), scaled(second)
    means = gaussian_blur(tf.concat([x, y, x * x, y * y, x * y], axis=-1), 1.5)
    mean_x, mean_y, square_x, square_y, product = tf.unstack(means, axis=-1)
    variance_x, variance_y = square_x - mean_x**2, square_y - mean_y**2
    covariance = product - mean_x * mean_y
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / (
        (mean_x**2 + mean_y**2 + c1) * (variance_x + variance_y + c2))
    return tf.reduce_mean(index, axis=[1, 2])


def _weighted_layers(model: keras.Model) -> list:
    """The layers holding weights, nested models unfolded, in the model's order."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers += _weighted_layers(layer)
        elif layer.weights:
            layers.append(layer)
    return layers


def _reinitialised(initial: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fresh value of a variable: Glorot-uniform for kernels (2-D and more, seeded), the
    layer's own initial value (a clone's: zeros, ones) for biases and normalisation."""
    if initial.ndim < 2:
        return initial
    receptive = int(np.prod(initial.shape[:-2]))
    limit = np.sqrt(6.0 / (receptive * (initial.shape[-2] + initial.shape[-1])))
    return rng.uniform(-limit, limit, initial.shape).astype(initial.dtype)


class Randomiser:
    """A copy of a model whose layers are re-initialised from the top down, step by step.

    The model itself is never changed. Each step re-initialises the next group of layers (one
    layer per step for up to MAX_CASCADE_STEPS layers) and explains the same items again with
    the copy's own compiled explainer; weights are assigned, nothing is traced again.
    """

    def __init__(self, explainer: CamExplainer, input_shape: tuple, seed: int = 0):
        model = explainer.model
        try:
            clone = keras.models.clone_model(model, recursive=True)
        except Exception as error:  # noqa: BLE001 - Keras raises many kinds here
            raise CnnvizError(f"randomisation needs a copy of the model, which Keras cannot make "
                              f"({type(error).__name__}: {error}); use a Functional or "
                              "Sequential model.") from None
        originals, self.layers = _weighted_layers(model), _weighted_layers(clone)
        rng = np.random.default_rng(seed)
        self.random = [[_reinitialised(np.asarray(w), rng) for w in layer.get_weights()]
                       for layer in self.layers]
        self.trained = [layer.get_weights() for layer in originals]
        for layer, weights in zip(self.layers, self.trained, strict=True):
            layer.set_weights(weights)
        top_down = np.arange(len(self.layers))[::-1]
        self.steps = np.array_split(top_down, min(MAX_CASCADE_STEPS, len(self.layers)))
        self.labels = [self.layers[step[-1]].name for step in self.steps]
        self.explainer = CamExplainer(clone, explainer.layer_path, input_shape,
                                      explainer.output_index, explainer.head)

    def cascade(self, inputs: np.ndarray, classes: np.ndarray, methods: list[str],
                options: CamOptions) -> list[CamBatch]:
        """The maps of every step, one item per input (its class from `classes`)."""
        for layer, weights in zip(self.layers, self.trained, strict=True):
            layer.set_weights(weights)
        targets = Targets(per_image=tuple(int(index) for index in classes))
        batches = []
        for step in self.steps:
            for index in step:
                self.layers[index].set_weights(self.random[index])
            batches.append(self.explainer(inputs, targets, methods, options))
        return batches


@dataclass
class Cascade:
    """The randomisation check of a CamBatch: per step, the maps and their similarities."""

    labels: list[str]  # per step, the deepest layer re-initialised so far
    maps: dict[str, np.ndarray]  # method -> (steps, items, h, w)
    spearman: dict[str, np.ndarray]  # method -> (steps, items)
    ssim: dict[str, np.ndarray]  # method -> (steps, items)

    def of_item(self, item: int) -> Cascade:
        """The cascade of one item: maps (steps, h, w), similarities (steps,)."""
        def pick(values: dict) -> dict:
            return {method: array[:, item] for method, array in values.items()}

        return Cascade(self.labels, pick(self.maps), pick(self.spearman), pick(self.ssim))


@trust_metric("randomisation", False, "rank correlation with the map after re-initialising "
              "every layer", random=True,
              setup=lambda explainer, options, shape: Randomiser(explainer, shape, options.seed))
def _randomisation(trust: TrustPass) -> dict:
    """The similarities after the last step, every step's correlation, and the Cascade."""
    methods, maps = trust.methods, trust.cam_batch.maps
    steps = trust.prepared["randomisation"].cascade(trust.items, trust.cam_batch.classes,
                                                    methods, trust.options)
    again = {m: np.stack([step.maps[m] for step in steps]) for m in methods}
    size = trust.items.shape[1:3]
    trust.cascade = Cascade(
        trust.prepared["randomisation"].labels, again,
        {m: np.stack([rank_correlation(maps[m], s) for s in again[m]]) for m in methods},
        {m: ssim(np.tile(maps[m], (len(steps), 1, 1)), again[m].reshape(-1, *again[m].shape[2:]),
                 size).reshape(len(steps), -1) for m in methods},
    )
    return {"randomisation": {m: values[-1] for m, values in trust.cascade.spearman.items()},
            "randomisation_ssim": {m: values[-1] for m, values in trust.cascade.ssim.items()},
            "randomisation_curve": {m: values.T for m, values in trust.cascade.spearman.items()}}


def _two_classes(explainer: CamExplainer, options: CamOptions, input_shape: tuple) -> None:
    if explainer.num_classes < 2:
        raise CnnvizError("random-logit needs a model output with two or more classes.")


@trust_metric("random-logit", False, "rank correlation with the map of a random other class",
              random=True, setup=_two_classes)
def _random_logit(trust: TrustPass) -> dict:
    """The rank correlation with the map of a random class other than each item's own
    (seeded), and that class."""
    classes, count = trust.cam_batch.classes, trust.explainer.num_classes
    others = (classes + np.random.default_rng(trust.options.seed).integers(
        1, count, len(classes))) % count
    again = trust.explainer(trust.items, Targets(per_image=tuple(others)), trust.methods,
                            trust.options)
    return {"random_logit": {m: rank_correlation(trust.cam_batch.maps[m], again.maps[m])
                             for m in trust.methods},
            "random_logit_class": {m: others for m in trust.methods}}


def gini(maps: np.ndarray) -> np.ndarray:
    """Gini index of each map's absolute values, (n,): 0 for a flat map, near 1 for one peak."""
    flat = np.sort(np.abs(np.asarray(maps, np.float64)).reshape(len(maps), -1), axis=1)
    count = flat.shape[1]
    weights = 2 * np.arange(1, count + 1) - count - 1
    total = flat.sum(axis=1)
    return np.divide(flat @ weights, count * total, out=np.zeros_like(total), where=total > 0)


def entropy(maps: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each map's absolute values normalised to sum 1, (n,); a map
    without heat counts as flat (log of its size)."""
    flat = np.abs(np.asarray(maps, np.float64)).reshape(len(maps), -1)
    flat = np.where(flat.sum(axis=1, keepdims=True) > 0, flat, 1.0)
    share = flat / flat.sum(axis=1, keepdims=True)
    return -np.sum(share * np.log(np.where(share > 0, share, 1.0)), axis=1)


@trust_metric("sparseness", True, "Gini index of the map")
def _sparseness(trust: TrustPass) -> dict:
    return {"sparseness": trust.of_maps(gini)}


@trust_metric("complexity", False, "entropy of the map normalised to sum 1")
def _complexity(trust: TrustPass) -> dict:
    return {"complexity": trust.of_maps(entropy)}
