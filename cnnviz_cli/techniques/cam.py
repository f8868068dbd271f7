"""Class activation maps and gradient attributions: one compiled core, many small rules.

The core runs a batch of items (one image and one target class each) through the model once and
returns the target scores, the activations A of the chosen layer and the gradients G of the
scores with respect to A. Every method is an entry of `METHODS`: a function from that `CamPass`
to one non-negative map per item. Most are a rule over A and G; ScoreCAM instead weights the
channels by the scores of masked copies of the input, run through the model in large batches.
The gradient attributions (saliency, SmoothGrad, integrated gradients, gradient x input) give
input-resolution maps from input gradients averaged over changed copies of each item (noisy
copies, points on a path from a baseline), also computed in large batches.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, cached_property, partial

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.extract import build_extractor
from cnnviz_cli.models.heads import Head, detect_head
from cnnviz_cli.techniques.backprop import class_gradients


@dataclass(frozen=True)
class Targets:
    """The classes to explain: each image's own, given classes for all, then the top-k
    predictions, then (a multi-label head) every label of probability >= `threshold`.

    With none of them, each image's own top-1 prediction. A per-image entry is a class, a tuple
    of classes, or None: that image gets the shared targets only (its top-1 when there are
    none); None inside a tuple means the same. `regions` (segmentation) maps, per image, a
    class (None: any class) to its region, a (height, width) 0/1 mask at the input size.
    """

    classes: tuple[int, ...] = ()  # explained for every image
    top_k: int | None = None
    per_image: tuple | None = None  # per image: a class, a tuple of classes or None
    threshold: float | None = None
    regions: tuple[dict, ...] | None = None

    def _entries(self, num_images: int) -> list[tuple]:
        if self.per_image is None:
            return [(None,)] * num_images
        if len(self.per_image) != num_images:
            raise ValueError(f"{len(self.per_image)} per-image entries for {num_images} images.")
        return [entry if isinstance(entry, tuple) else (entry,) for entry in self.per_image]

    def items(self, num_images: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(image index, code) of every item: a class index (>= 0), or -r for the r-th highest
        score. A class that comes twice for an image is dropped later, by the explainer."""
        entries = self._entries(num_images)
        default = 0 if self.classes or self.per_image is not None else 1
        top_k = self.top_k if self.top_k is not None else default
        if not 0 <= top_k <= num_classes:
            raise CnnvizError(
                f"--top-k {top_k} is out of range: the model has {num_classes} classes."
            )
        own = [[index for index in entry if index is not None] for entry in entries]
        for index in (*self.classes, *(index for indices in own for index in indices)):
            if not 0 <= index < num_classes:
                raise CnnvizError(
                    f"Class index {index} is out of range: the model has {num_classes} classes "
                    f"(0 to {num_classes - 1})."
                )
        shared = [*self.classes, *range(-1, -top_k - 1, -1)]
        codes = [[*indices, *(shared or ([-1] if None in entry else []))]
                 for indices, entry in zip(own, entries, strict=True)]
        images = np.repeat(np.arange(num_images), [len(row) for row in codes])
        return images, np.array([code for row in codes for code in row], np.int32)

    def above(self, probabilities: np.ndarray) -> "Targets":
        """These targets with every class of probability >= `threshold` added per image."""
        entries = self._entries(len(probabilities))
        chosen = [tuple(np.flatnonzero(row >= self.threshold)) for row in probabilities]
        per_image = tuple((*(index for index in entry if index is not None), *map(int, more))
                          for entry, more in zip(entries, chosen, strict=True))
        return replace(self, per_image=per_image, threshold=None)

    def item_regions(self, images: np.ndarray, codes: np.ndarray, size: tuple) -> np.ndarray:
        """(items, height, width) given regions, -1 where an item has none ((items, 1, 1) when
        no item has one)."""
        found = [None] * len(images)
        for item, (image, code) in enumerate(zip(images, codes, strict=True)):
            given = self.regions[image] if self.regions is not None else {}
            found[item] = given.get(int(code)) if code >= 0 and code in given else given.get(None)
        if all(region is None for region in found):
            return -np.ones((len(images), 1, 1), np.float32)
        return np.stack([-np.ones(size, np.float32) if region is None
                         else np.asarray(region, np.float32) for region in found])


def output_index(model: keras.Model, spec: str | int | None) -> int:
    """The position of the output named or numbered `spec` (default: the first output)."""
    names = list(getattr(model, "output_names", None) or [model.layers[-1].name])
    if spec is None:
        return 0
    text = str(spec).strip()
    if text in names:
        return names.index(text)
    if text.lstrip("-").isdigit() and -len(names) <= int(text) < len(names):
        return int(text) % len(names)
    raise CnnvizError(
        f"No model output {text!r}: the model has {len(names)} output(s), "
        f"{', '.join(names)}; give --output NAME or an index from 0 to {len(names) - 1}."
    )


@dataclass(frozen=True)
class CamOptions:
    """Settings of the methods that need them."""

    max_channels: int = 10  # Faster-ScoreCAM: channels of largest activation variance
    batch_size: int = 32  # changed copies of the input per pass (ScoreCAM, metrics, gradients)
    samples: int = 32  # SmoothGrad: noisy copies per item
    noise: float = 0.15  # SmoothGrad: noise standard deviation / the item's value range
    ig_steps: int = 32  # integrated gradients: points on the path from the baseline
    ig_baseline: str = "blur"  # integrated gradients: a name in IG_BASELINES
    seed: int = 0  # SmoothGrad noise, the noise baseline and the RISE masks
    patch: int = 16  # occlusion: side of the square patch, in input pixels
    stride: int = 8  # occlusion: step between patch positions
    fill: str = "mean"  # occlusion: a name in FILLS (techniques.perturbation)
    masks: int = 1000  # RISE: random masks per item
    preprocess: Callable = tf.identity  # pixels in [0, 255] -> model input (baselines)


def selection(classes, regions=None) -> tuple[tf.Tensor, tf.Tensor]:
    """What each item explains: (classes (items,), regions (items, h, w)); the regions are
    -1 (of size 1 x 1) when there are none (see `Head.regions`)."""
    classes = tf.convert_to_tensor(classes, tf.int32)
    if regions is None:
        regions = -tf.ones([tf.shape(classes)[0], 1, 1])
    return classes, tf.convert_to_tensor(regions, tf.float32)


@dataclass
class CamPass:
    """What the compiled core computed for a batch of items, handed to every method."""

    explainer: "CamExplainer"
    inputs: tf.Tensor  # (items, height, width, channels) model input
    selection: tuple[tf.Tensor, tf.Tensor]  # (classes (items,), regions): see `selection`
    activations: tf.Tensor  # (items, h, w, k) the layer's feature maps A
    gradients: tf.Tensor  # (items, h, w, k) d score / d A
    options: CamOptions

    @cached_property
    def input_gradients(self) -> tf.Tensor:
        """(items, height, width, channels) d score / d input, shared by the methods using it."""
        return self.mean_input_gradients(_unchanged, (), 1)

    def mean_input_gradients(self, make_inputs: Callable, sources, copies: int) -> tf.Tensor:
        """`CamExplainer.mean_input_gradients` of this pass's items."""
        return self.explainer.mean_input_gradients(
            make_inputs, self.inputs, self.selection, sources, copies, self.options.batch_size
        )


Method = Callable[[CamPass], tf.Tensor]
METHODS: dict[str, Method] = {}
NEEDS: dict[str, str] = {}  # method -> what of the model it uses: layer, gradient or forward


def register(name: str, needs: str = "layer") -> Callable[[Method], Method]:
    """Add a method: a function from a `CamPass` to (items, height, width) maps.

    `needs` says what it uses: `layer` (a layer's activations and gradients), `gradient`
    (input gradients only) or `forward` (scores of changed inputs only).
    """

    def add(method: Method) -> Method:
        METHODS[name], NEEDS[name] = method, needs
        return method

    return add


def layer_rule(name: str) -> Callable:
    """Register a compiled rule `(activations, gradients) -> maps` as a method."""

    def add(rule: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]):
        compiled = tf.function(rule, reduce_retracing=True)
        register(name)(lambda cam_pass: compiled(cam_pass.activations, cam_pass.gradients))
        return rule

    return add


def resolve_methods(specs: Sequence[str]) -> list[str]:
    """`--method` values (repeatable, comma lists, `all`) -> method names, in order, no repeats."""
    names = [name.strip().lower() for spec in specs for name in spec.split(",") if name.strip()]
    chosen: list[str] = []
    for name in names or ["gradcam"]:
        if name != "all" and name not in METHODS:
            raise CnnvizError(
                f"Unknown CAM method {name!r}; choose from {', '.join(METHODS)}, or all."
            )
        chosen += list(METHODS) if name == "all" else [name]
    return list(dict.fromkeys(chosen))


def weighted_sum(weights: tf.Tensor, activations: tf.Tensor) -> tf.Tensor:
    """ReLU(sum_k weights[n, k] * A[n, :, :, k]): the usual CAM from channel weights."""
    return tf.nn.relu(tf.einsum("nk,nhwk->nhw", weights, activations))


@layer_rule("gradcam")
def _gradcam(activations, gradients):
    """Selvaraju et al.: channel weight = mean gradient over space."""
    return weighted_sum(tf.reduce_mean(gradients, axis=[1, 2]), activations)


@layer_rule("gradcam++")
def _gradcam_plus_plus(activations, gradients):
    """Chattopadhyay et al., closed-form alpha for an exponential score exp(logit).

    The positive factor exp(logit) shared by all weights only scales the map and is left out.
    """
    squared = tf.square(gradients)
    denominator = 2.0 * squared + tf.reduce_sum(activations, axis=[1, 2], keepdims=True) * (
        squared * gradients
    )
    alpha = tf.math.divide_no_nan(squared, denominator)
    return weighted_sum(tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=[1, 2]), activations)


@layer_rule("xgradcam")
def _xgradcam(activations, gradients):
    """Fu et al.: gradients weighted by the activations normalised to sum 1 per channel."""
    total = tf.reduce_sum(activations, axis=[1, 2], keepdims=True)
    weights = tf.reduce_sum(tf.math.divide_no_nan(activations, total) * gradients, axis=[1, 2])
    return weighted_sum(weights, activations)


@layer_rule("layercam")
def _layercam(activations, gradients):
    """Jiang et al.: every position weighted by its own positive gradient."""
    return tf.nn.relu(tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1))


@layer_rule("hirescam")
def _hirescam(activations, gradients):
    """Draelos & Carin: the element-wise product of gradients and activations, summed."""
    return tf.nn.relu(tf.reduce_sum(gradients * activations, axis=-1))


@layer_rule("eigencam")
def _eigencam(activations, gradients):
    """Muhammad & Yeasin: projection on the first principal component (class independent).

    The sign of the component is chosen so that the projection sums to a positive number.
    """
    del gradients
    shape = tf.shape(activations)
    flat = tf.reshape(activations, [shape[0], shape[1] * shape[2], shape[3]])
    _, _, right = tf.linalg.svd(flat)
    projection = tf.linalg.matvec(flat, right[:, :, 0])
    sign = tf.where(tf.reduce_sum(projection, axis=1, keepdims=True) < 0.0, -1.0, 1.0)
    return tf.nn.relu(tf.reshape(projection * sign, shape[:3]))


def _activation_masks(activations, item, copy, copies, size):
    """ScoreCAM masks: channel `copy` of item `item`, upsampled and scaled to [0, 1]."""
    del copies
    maps = tf.gather(tf.gather(activations, item), copy, axis=3, batch_dims=1)
    maps = tf.image.resize(maps[..., None], size, method="bilinear")
    low = tf.reduce_min(maps, axis=[1, 2, 3], keepdims=True)
    high = tf.reduce_max(maps, axis=[1, 2, 3], keepdims=True)
    return tf.math.divide_no_nan(maps - low, high - low)


def _score_weighted(cam_pass: CamPass, activations: tf.Tensor) -> tf.Tensor:
    """Wang et al.: channel weight = softmax over channels of the masked inputs' scores."""
    scores = cam_pass.explainer.masked_scores(
        _activation_masks, cam_pass.inputs, cam_pass.selection, activations,
        int(activations.shape[-1]), cam_pass.options.batch_size,
    )
    return weighted_sum(tf.nn.softmax(scores, axis=1), activations)


@register("scorecam")
def _scorecam(cam_pass: CamPass) -> tf.Tensor:
    return _score_weighted(cam_pass, cam_pass.activations)


@register("faster-scorecam")
def _faster_scorecam(cam_pass: CamPass) -> tf.Tensor:
    """ScoreCAM on the channels of largest spatial activation variance only."""
    activations = cam_pass.activations
    count = min(cam_pass.options.max_channels, int(activations.shape[-1]))
    variance = tf.math.reduce_variance(activations, axis=[1, 2])
    channels = tf.math.top_k(variance, count).indices
    return _score_weighted(cam_pass, tf.gather(activations, channels, axis=3, batch_dims=1))


@register("guided-gradcam")
def _guided_gradcam(cam_pass: CamPass) -> tf.Tensor:
    """Selvaraju et al.: guided backprop (largest absolute colour channel) times the GradCAM
    map upsampled to the input, a class-discriminative map at pixel resolution."""
    explainer = cam_pass.explainer
    gradients = class_gradients(explainer.model, cam_pass.inputs, cam_pass.selection,
                                explainer.head, "guided", explainer.output_index)
    heat = _gradcam(cam_pass.activations, cam_pass.gradients)[..., None]
    upsampled = tf.image.resize(heat, tf.shape(gradients)[1:3], method="bilinear")[..., 0]
    return tf.reduce_max(tf.abs(gradients), axis=-1) * upsampled


def _unchanged(inputs, sources, item, copy, copies):
    del sources, copy, copies
    return tf.gather(inputs, item)


def smoothgrad_noise(copies: tf.Tensor, shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Standard normal noise (n, *shape) of SmoothGrad copy numbers `copies` (n,).

    A copy's noise depends only on its number and the seed, not on the item or the batching.
    """
    seed = tf.cast(seed, tf.int64)
    return tf.map_fn(
        lambda copy: tf.random.stateless_normal(shape, tf.stack([seed, tf.cast(copy, tf.int64)])),
        copies, fn_output_signature=tf.float32,
    )


def _noisy(inputs, sources, item, copy, copies):
    """SmoothGrad copies: the item plus noise of `sigma` times its value range."""
    del copies
    sigma, seed = sources
    items = tf.gather(inputs, item)
    spread = tf.reduce_max(items, axis=[1, 2, 3], keepdims=True) - tf.reduce_min(
        items, axis=[1, 2, 3], keepdims=True
    )
    return items + sigma * spread * smoothgrad_noise(copy, tf.shape(inputs)[1:], seed)


def _interpolated(inputs, baselines, item, copy, copies):
    """Integrated-gradients copies: the midpoints of `copies` equal steps from baseline to item."""
    start, end = tf.gather(baselines, item), tf.gather(inputs, item)
    fraction = (tf.cast(copy, tf.float32) + 0.5) / tf.cast(copies, tf.float32)
    return start + fraction[:, None, None, None] * (end - start)


def gaussian_blur(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """A separable Gaussian blur of (n, height, width, channels) images, edges reflected."""
    height, width = images.shape[1:3]
    radius = max(1, min(int(np.ceil(3 * sigma)), height - 1, width - 1))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = tf.constant(taps / taps.sum(), tf.float32)
    channels = images.shape[-1]
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT")
    rows = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, tf.transpose(rows, [1, 0, 2, 3]), [1, 1, 1, 1], "VALID")


BLUR_SIGMA = 1 / 16  # of the longer image side: the blur baseline keeps only coarse colour


def _noise_baseline(inputs: tf.Tensor, options: CamOptions) -> tf.Tensor:
    """Uniform random pixels (one image, seeded, the same for every item), preprocessed."""
    pixels = tf.random.stateless_uniform(
        [1, *inputs.shape[1:]], tf.constant([options.seed, -1], tf.int64), 0.0, 255.0
    )
    return tf.broadcast_to(options.preprocess(pixels), tf.shape(inputs))


IG_BASELINES: dict[str, Callable[[tf.Tensor, CamOptions], tf.Tensor]] = {
    "black": lambda inputs, options: options.preprocess(tf.zeros_like(inputs)),
    "blur": lambda inputs, options: gaussian_blur(inputs, BLUR_SIGMA * max(inputs.shape[1:3])),
    "noise": _noise_baseline,
}


def integrated_gradients(
    explainer: "CamExplainer", inputs: tf.Tensor, classes: tf.Tensor, baselines: tf.Tensor,
    steps: int = 32, batch_size: int = 32,
) -> tf.Tensor:
    """Sundararajan et al.: (x - x') times the mean score gradient at `steps` points of the
    straight path from the baseline x' to x (midpoint rule), per input value: (items, h, w, c).

    The attributions of an item sum to nearly score(x) - score(x') (completeness).
    """
    mean = explainer.mean_input_gradients(
        _interpolated, inputs, classes, baselines, steps, batch_size
    )
    return (inputs - baselines) * mean


def _sensitivity(gradients: tf.Tensor) -> tf.Tensor:
    """The largest absolute gradient over colour channels."""
    return tf.reduce_max(tf.abs(gradients), axis=-1)


def _evidence(attributions: tf.Tensor) -> tf.Tensor:
    """The positive part of the attributions summed over colour channels."""
    return tf.nn.relu(tf.reduce_sum(attributions, axis=-1))


@register("saliency", needs="gradient")
def _saliency(cam_pass: CamPass) -> tf.Tensor:
    """Simonyan et al.: the input gradient of the score."""
    return _sensitivity(cam_pass.input_gradients)


@register("smoothgrad", needs="gradient")
def _smoothgrad(cam_pass: CamPass) -> tf.Tensor:
    """Smilkov et al.: input gradients averaged over `samples` noisy copies of the input."""
    options = cam_pass.options
    sources = (tf.constant(options.noise, tf.float32), tf.constant(options.seed, tf.int64))
    return _sensitivity(cam_pass.mean_input_gradients(_noisy, sources, options.samples))


@register("integrated-gradients", needs="gradient")
def _integrated_gradients(cam_pass: CamPass) -> tf.Tensor:
    """Sundararajan et al., from the `ig_baseline` image."""
    options = cam_pass.options
    baselines = IG_BASELINES[options.ig_baseline](cam_pass.inputs, options)
    return _evidence(integrated_gradients(
        cam_pass.explainer, cam_pass.inputs, cam_pass.selection, baselines, options.ig_steps,
        options.batch_size,
    ))


@register("gradient-input", needs="gradient")
def _gradient_input(cam_pass: CamPass) -> tf.Tensor:
    """Shrikumar et al.: the input times its gradient."""
    return _evidence(cam_pass.inputs * cam_pass.input_gradients)


def _resolve_classes(scores: tf.Tensor, codes: tf.Tensor) -> tf.Tensor:
    """Class per item: its code when >= 0, else for code -r the class of the r-th highest score
    (`scores` (items, classes))."""
    order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
    ranked = tf.gather(order, tf.maximum(-codes - 1, 0), axis=1, batch_dims=1)
    return tf.where(codes >= 0, codes, ranked)


def _pass_count(items: tf.Tensor, copies: tf.Tensor, batch_size: tf.Tensor) -> tf.Tensor:
    """Passes of `batch_size` copies needed for `copies` copies of every item."""
    return (items * copies + batch_size - 1) // batch_size


def _chunk(step: tf.Tensor, batch_size: tf.Tensor, items: tf.Tensor, copies: tf.Tensor):
    """(item, copy) indices of pass `step` over all items x copies, `batch_size` per pass."""
    flat = tf.range(step * batch_size, tf.minimum(items * copies, (step + 1) * batch_size))
    return flat // copies, flat % copies


def _masked_inputs(make_masks, inputs, sources, item, copy, copies):
    """The items of a pass times their masks `make_masks(sources, item, copy, copies, size)`."""
    masks = make_masks(sources, item, copy, copies, tf.shape(inputs)[1:3])
    return tf.gather(inputs, item) * masks


@cache
def _masking(make_masks: Callable) -> Callable:
    """`make_inputs` for masks from `make_masks`: one function per mask maker, so that its
    compiled loop is reused."""
    return partial(_masked_inputs, make_masks)


@dataclass
class CamBatch:
    """The maps of several methods for a batch of items (one image and class each)."""

    layer_path: str | None
    image_indices: np.ndarray  # (items,) the input image each item explains
    classes: np.ndarray  # (items,)
    scores: np.ndarray  # (items,) the explained score (pre-activation)
    probabilities: np.ndarray | None  # (items,) the model's own probability (None: no such)
    score_kind: str = "logit"  # what the scores are: see `Head.score_kind`
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (items, h, w)
    regions: np.ndarray | None = None  # segmentation: (items, h, w) the region explained

    def score_fields(self, item: int) -> dict:
        """The explained score of one item, its probability (None without one) and its kind."""
        probability = None if self.probabilities is None else float(self.probabilities[item])
        return {"score": float(self.scores[item]), "probability": probability,
                "score_kind": self.score_kind}

    def statistics(self, method: str, item: int) -> dict:
        """Numbers worth recording about one heatmap."""
        heat = self.maps[method][item]
        peak = np.unravel_index(np.argmax(heat), heat.shape)
        return {
            "max": float(heat.max()),
            "mean": float(heat.mean()),
            "peak": [(peak[0] + 0.5) / heat.shape[0], (peak[1] + 0.5) / heat.shape[1]],
            "coverage": float((heat >= 0.5 * heat.max()).mean()) if heat.max() > 0 else 0.0,
        }


class CamExplainer:
    """Compiled CAM passes for one model, layer, output (and its `Head`) and input shape.

    Without a layer (`layer_path` None) the activations are the inputs themselves: enough for
    the methods that need no layer (`NEEDS`).
    """

    def __init__(
        self, model: keras.Model, layer_path: str | None, input_shape: tuple,
        output: str | None = None, head: Head | None = None,
    ):
        self.model, self.layer_path = model, layer_path
        self.output_index = output_index(model, output)
        self._taps = [] if layer_path is None else [layer_path]
        self._network = build_extractor(model, self._taps, logits=True)
        self.head = head or detect_head(model, self.output_index)
        self.num_classes = self.head.num_classes
        self._loops: dict[tuple, Callable] = {}
        images = tf.TensorSpec((None, *input_shape), tf.float32)
        signature = [images, tf.TensorSpec((None,), tf.int32),
                     tf.TensorSpec((None, None, None), tf.float32)]

        @tf.function(input_signature=signature)
        def core(inputs, codes, given):
            head = self.head
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                activations, outputs = self.forward(inputs)
                classes = _resolve_classes(head.ranking(outputs), codes)
                regions = head.regions(outputs, classes, given)
                scores = head.score(outputs, classes, regions)
            gradients = tape.gradient(scores, activations)
            probabilities = head.probability(outputs, classes, regions)
            return classes, scores, probabilities, activations, gradients, regions

        @tf.function(input_signature=[images])
        def probabilities(inputs):
            return self.head.all_probabilities(self.forward(inputs)[1])

        self.core, self.probabilities = core, probabilities

    def forward(self, inputs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(activations of the layer, pre-activation outputs of the chosen output) for a batch."""
        outputs = self._network(inputs, training=False)
        outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
        logits = outputs[len(self._taps) + self.output_index]
        return (outputs[0] if self._taps else inputs), logits

    def masked_scores(
        self,
        make_masks: Callable,
        inputs: tf.Tensor,
        chosen,
        sources: tf.Tensor,
        copies: int,
        batch_size: int,
        probability: bool = False,
    ) -> tf.Tensor:
        """Scores (with `probability`: probabilities) of `copies` masked copies of every item,
        `batch_size` copies per forward pass; `chosen` is each item's class or a `selection`.

        `sources` holds per-item data from which `make_masks(sources, item, copy, copies, size)`
        builds the (n, height, width, 1) masks of one pass (`item` and `copy` index each masked
        input). Returns (items, copies) scores; the whole loop is one compiled function.
        """
        return self.perturbed_scores(_masking(make_masks), inputs, chosen, sources, copies,
                                     batch_size, probability)

    def perturbed_scores(
        self,
        make_inputs: Callable,
        inputs: tf.Tensor,
        chosen,
        sources,
        copies: int,
        batch_size: int,
        probability: bool = False,
    ) -> tf.Tensor:
        """Scores (with `probability`: probabilities) of `copies` changed copies of every item
        (`chosen`: each item's class or a `selection`), `batch_size` copies per pass.

        `make_inputs(inputs, sources, item, copy, copies)` builds the model inputs of one pass
        (as for `mean_input_gradients`). Returns (items, copies) scores; the whole loop is one
        compiled function.
        """
        sizes = tf.constant(copies, tf.int32), tf.constant(batch_size, tf.int32)
        score = self.head.probability if probability else self.head.score
        loop = self._compiled(self._perturbed_loop, make_inputs, score)
        return loop(tf.convert_to_tensor(inputs, tf.float32), _as_selection(chosen), sources,
                    *sizes)

    def mean_input_gradients(
        self,
        make_inputs: Callable,
        inputs: tf.Tensor,
        chosen,
        sources,
        copies: int,
        batch_size: int,
    ) -> tf.Tensor:
        """Input gradients of the score, averaged over `copies` changed copies of each item
        (`chosen`: each item's class or a `selection`).

        `make_inputs(inputs, sources, item, copy, copies)` builds the (n, height, width,
        channels) model inputs of one pass of `batch_size` copies (`item` and `copy` index each
        one). Returns (items, height, width, channels); the whole loop is one compiled function.
        """
        sizes = tf.constant(copies, tf.int32), tf.constant(batch_size, tf.int32)
        loop = self._compiled(self._gradient_loop, make_inputs)
        inputs = tf.convert_to_tensor(inputs, tf.float32)
        return loop(inputs, _as_selection(chosen), sources, *sizes)

    def _compiled(self, loop: Callable, *functions: Callable) -> Callable:
        """`loop` with its leading function arguments bound, compiled once per explainer."""
        key = (loop, *functions)
        if key not in self._loops:
            self._loops[key] = tf.function(partial(loop, *functions), reduce_retracing=True)
        return self._loops[key]

    def _perturbed_loop(self, make_inputs, score, inputs, chosen, sources, copies, batch_size):
        items = tf.shape(inputs)[0]
        steps = _pass_count(items, copies, batch_size)
        results = tf.TensorArray(tf.float32, size=steps, infer_shape=False)
        for step in tf.range(steps):
            item, copy = _chunk(step, batch_size, items, copies)
            _, outputs = self.forward(make_inputs(inputs, sources, item, copy, copies))
            results = results.write(step, score(outputs, *_gathered(chosen, item)))
        return tf.reshape(results.concat(), [items, copies])

    def _gradient_loop(self, make_inputs, inputs, chosen, sources, copies, batch_size):
        items = tf.shape(inputs)[0]
        steps = _pass_count(items, copies, batch_size)
        total = tf.zeros_like(inputs)
        for step in tf.range(steps):
            item, copy = _chunk(step, batch_size, items, copies)
            changed = make_inputs(inputs, sources, item, copy, copies)
            with tf.GradientTape() as tape:
                tape.watch(changed)
                _, outputs = self.forward(changed)
                scores = self.head.score(outputs, *_gathered(chosen, item))
            per_item = tf.math.unsorted_segment_sum(tape.gradient(scores, changed), item, items)
            total += tf.ensure_shape(per_item, inputs.shape)
        return total / tf.cast(copies, tf.float32)

    def __call__(
        self,
        inputs: np.ndarray,
        targets: Targets = Targets(),
        methods: Sequence[str] = ("gradcam",),
        options: CamOptions = CamOptions(),
    ) -> CamBatch:
        """Maps of every method for every (image, target class) of a preprocessed batch."""
        inputs = np.asarray(inputs, np.float32)
        if targets.threshold is not None:
            targets = targets.above(self.probabilities(inputs).numpy())
        images, codes = targets.items(len(inputs), self.num_classes)
        head = self.head
        if not len(images):  # e.g. no label reached the threshold
            empty = np.zeros(0, np.float32)
            return CamBatch(self.layer_path, images, codes, empty,
                            empty if head.has_probability else None, head.score_kind,
                            {method: np.zeros((0, 1, 1), np.float32) for method in methods})
        given = targets.item_regions(images, codes, inputs.shape[1:3])
        items = tf.convert_to_tensor(inputs[images])
        tensors = self.core(items, codes, given)
        # A class given with --class may also be a top-k prediction: keep its first occurrence.
        keep = np.sort(np.unique(images * self.num_classes + tensors[0].numpy(),
                                 return_index=True)[1])
        if len(keep) < len(images):
            items, tensors = tf.gather(items, keep), [tf.gather(t, keep) for t in tensors]
        classes, scores, probabilities, activations, gradients, regions = tensors
        cam_pass = CamPass(self, items, (classes, regions), activations, gradients, options)
        return CamBatch(
            self.layer_path,
            images[keep],
            classes.numpy(),
            scores.numpy(),
            probabilities.numpy() if head.has_probability else None,
            head.score_kind,
            {method: METHODS[method](cam_pass).numpy() for method in methods},
            regions.numpy() if head.task == "segment" else None,
        )


def _as_selection(chosen) -> tuple[tf.Tensor, tf.Tensor]:
    return chosen if isinstance(chosen, tuple) else selection(chosen)


def _gathered(chosen: tuple, item: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tuple(tf.gather(part, item) for part in chosen)


from cnnviz_cli.techniques import perturbation  # noqa: E402, F401  (registers occlusion, rise)
