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
from dataclasses import dataclass, field
from functools import cached_property, partial

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.extract import _head_layers, _pre_softmax, build_extractor
from cnnviz_cli.techniques.backprop import class_gradients
from cnnviz_cli.techniques.targets import class_scores


@dataclass(frozen=True)
class Targets:
    """The classes to explain: one per image, given classes for all, then the top-k predictions.

    With none of them, each image's own top-1 prediction. A per-image class of None gives that
    image the shared targets only (its top-1 prediction when there are none).
    """

    classes: tuple[int, ...] = ()  # explained for every image
    top_k: int | None = None
    per_image: tuple[int | None, ...] | None = None  # one class per image, e.g. its true label

    def codes(self, num_images: int, num_classes: int) -> np.ndarray:
        """(images, targets) codes: a class index (>= 0), or -r for the r-th highest logit."""
        given = [index for index in self.per_image or () if index is not None]
        default = 0 if self.classes or self.per_image is not None else 1
        top_k = self.top_k if self.top_k is not None else default
        if not 0 <= top_k <= num_classes:
            raise CnnvizError(
                f"--top-k {top_k} is out of range: the model has {num_classes} classes."
            )
        for index in (*self.classes, *given):
            if not 0 <= index < num_classes:
                raise CnnvizError(
                    f"Class index {index} is out of range: the model has {num_classes} classes "
                    f"(0 to {num_classes - 1})."
                )
        if self.per_image is not None and len(self.per_image) != num_images:
            raise ValueError(f"{len(self.per_image)} per-image classes for {num_images} images.")
        shared = np.array([*self.classes, *range(-1, -top_k - 1, -1)], np.int32)
        codes = np.tile(shared, (num_images, 1))
        if self.per_image is None:
            return codes
        fallback = shared[0] if len(shared) else -1  # repeats a shared target: dropped later
        own = [fallback if index is None else index for index in self.per_image]
        return np.concatenate([np.array(own, np.int32)[:, None], codes], axis=1)


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
    seed: int = 0  # SmoothGrad noise and the noise baseline
    preprocess: Callable = tf.identity  # pixels in [0, 255] -> model input (baselines)


@dataclass
class CamPass:
    """What the compiled core computed for a batch of items, handed to every method."""

    explainer: "CamExplainer"
    inputs: tf.Tensor  # (items, height, width, channels) model input
    classes: tf.Tensor  # (items,) the class each item explains
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
            make_inputs, self.inputs, self.classes, sources, copies, self.options.batch_size
        )


Method = Callable[[CamPass], tf.Tensor]
METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    """Add a method: a function from a `CamPass` to (items, height, width) maps."""

    def add(method: Method) -> Method:
        METHODS[name] = method
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
        _activation_masks, cam_pass.inputs, cam_pass.classes, activations,
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
    gradients = class_gradients(
        explainer.model, cam_pass.inputs, cam_pass.classes, "guided", explainer.output_index
    )
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
    """Sundararajan et al.: (x - x') times the mean class-logit gradient at `steps` points of the
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


@register("saliency")
def _saliency(cam_pass: CamPass) -> tf.Tensor:
    """Simonyan et al.: the input gradient of the class logit."""
    return _sensitivity(cam_pass.input_gradients)


@register("smoothgrad")
def _smoothgrad(cam_pass: CamPass) -> tf.Tensor:
    """Smilkov et al.: input gradients averaged over `samples` noisy copies of the input."""
    options = cam_pass.options
    sources = (tf.constant(options.noise, tf.float32), tf.constant(options.seed, tf.int64))
    return _sensitivity(cam_pass.mean_input_gradients(_noisy, sources, options.samples))


@register("integrated-gradients")
def _integrated_gradients(cam_pass: CamPass) -> tf.Tensor:
    """Sundararajan et al., from the `ig_baseline` image."""
    options = cam_pass.options
    baselines = IG_BASELINES[options.ig_baseline](cam_pass.inputs, options)
    return _evidence(integrated_gradients(
        cam_pass.explainer, cam_pass.inputs, cam_pass.classes, baselines, options.ig_steps,
        options.batch_size,
    ))


@register("gradient-input")
def _gradient_input(cam_pass: CamPass) -> tf.Tensor:
    """Shrikumar et al.: the input times its gradient."""
    return _evidence(cam_pass.inputs * cam_pass.input_gradients)


def class_logits(logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """The score CAM explains: the class logit."""
    return class_scores(logits, classes)


def class_probabilities(logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """The softmax probability of the class (faithfulness metrics)."""
    return class_scores(tf.nn.softmax(logits, axis=-1), classes)


@dataclass(frozen=True)
class Head:
    """What the explained score of an output is, and how the model turns it into a probability.

    `probability(scores of every class, classes)` is None when the output has no final softmax
    or sigmoid (a linear head gives no probability).
    """

    score_kind: str  # "logit" (a final softmax left out), "probability" or "score"
    probability: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None


def _no_probability(logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """Zeros in place of the probabilities of a head without any (never recorded)."""
    del logits
    return tf.zeros(tf.shape(classes))


def output_head(model: keras.Model, index: int) -> Head:
    """The `Head` of output `index`: a final softmax is stripped by the extractor (its scores
    are logits, softmax over all of them gives the probability); a final sigmoid is kept (the
    scores are the probabilities); any other output is a plain score."""
    layer = _head_layers(model)[index]
    if _pre_softmax(layer) is not None:
        return Head("logit", class_probabilities)
    if getattr(getattr(layer, "activation", None), "__name__", "") == "sigmoid":
        return Head("probability", class_scores)
    return Head("score", None)


def _resolve_classes(logits: tf.Tensor, codes: tf.Tensor) -> tf.Tensor:
    """Class per item: its code when >= 0, else for code -r the class of the r-th highest logit."""
    order = tf.argsort(logits, axis=1, direction="DESCENDING", stable=True)
    ranked = tf.gather(order, tf.maximum(-codes - 1, 0), axis=1, batch_dims=1)
    return tf.where(codes >= 0, codes, ranked)


def _pass_count(items: tf.Tensor, copies: tf.Tensor, batch_size: tf.Tensor) -> tf.Tensor:
    """Passes of `batch_size` copies needed for `copies` copies of every item."""
    return (items * copies + batch_size - 1) // batch_size


def _chunk(step: tf.Tensor, batch_size: tf.Tensor, items: tf.Tensor, copies: tf.Tensor):
    """(item, copy) indices of pass `step` over all items x copies, `batch_size` per pass."""
    flat = tf.range(step * batch_size, tf.minimum(items * copies, (step + 1) * batch_size))
    return flat // copies, flat % copies


@dataclass
class CamBatch:
    """The maps of several methods for a batch of items (one image and class each)."""

    layer_path: str
    image_indices: np.ndarray  # (items,) the input image each item explains
    classes: np.ndarray  # (items,)
    scores: np.ndarray  # (items,) the explained score (pre-softmax logit)
    probabilities: np.ndarray | None  # (items,) the model's own probability (None: linear head)
    score_kind: str = "logit"  # what the scores are: see `Head`
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (items, h, w)

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
    """Compiled CAM passes for one model, layer, output and input shape."""

    def __init__(
        self, model: keras.Model, layer_path: str, input_shape: tuple, output: str | None = None
    ):
        self.model, self.layer_path = model, layer_path
        self.output_index = output_index(model, output)
        self._network = build_extractor(model, [layer_path], logits=True)
        self.num_classes = int(self._network.outputs[1 + self.output_index].shape[-1])
        self.head = output_head(model, self.output_index)
        probability = self.head.probability or _no_probability
        self._loops: dict[tuple, Callable] = {}
        signature = [
            tf.TensorSpec((None, *input_shape), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ]

        @tf.function(input_signature=signature)
        def core(inputs, codes):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                activations, logits = self.forward(inputs)
                classes = _resolve_classes(logits, codes)
                scores = class_logits(logits, classes)
            gradients = tape.gradient(scores, activations)
            return classes, scores, probability(logits, classes), activations, gradients

        self.core = core

    def forward(self, inputs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(activations of the layer, pre-softmax logits of the chosen output) for a batch."""
        outputs = self._network(inputs, training=False)
        return outputs[0], outputs[1 + self.output_index]

    def masked_scores(
        self,
        make_masks: Callable,
        inputs: tf.Tensor,
        classes: tf.Tensor,
        sources: tf.Tensor,
        copies: int,
        batch_size: int,
        score: Callable = class_logits,
    ) -> tf.Tensor:
        """Scores of `copies` masked copies of every item, `batch_size` copies per forward pass.

        `sources` holds per-item data from which `make_masks(sources, item, copy, copies, size)`
        builds the (n, height, width, 1) masks of one pass (`item` and `copy` index each masked
        input). Returns (items, copies) scores; the whole loop is one compiled function.
        """
        sizes = tf.constant(copies, tf.int32), tf.constant(batch_size, tf.int32)
        loop = self._compiled(self._masked_loop, make_masks, score)
        return loop(inputs, classes, sources, *sizes)

    def changed_scores(
        self,
        make_inputs: Callable,
        inputs: tf.Tensor,
        classes: tf.Tensor,
        sources,
        copies: int,
        batch_size: int,
        score: Callable = class_logits,
    ) -> tf.Tensor:
        """Scores of `copies` changed copies of every item, `batch_size` copies per forward pass.

        `make_inputs(inputs, sources, item, copy, copies)` builds the model inputs of one pass,
        as for `mean_input_gradients`. Returns (items, copies); one compiled loop.
        """
        sizes = tf.constant(copies, tf.int32), tf.constant(batch_size, tf.int32)
        loop = self._compiled(self._changed_loop, make_inputs, score)
        return loop(inputs, classes, sources, *sizes)

    def mean_input_gradients(
        self,
        make_inputs: Callable,
        inputs: tf.Tensor,
        classes: tf.Tensor,
        sources,
        copies: int,
        batch_size: int,
    ) -> tf.Tensor:
        """Input gradients of the class logit, averaged over `copies` changed copies of each item.

        `make_inputs(inputs, sources, item, copy, copies)` builds the (n, height, width,
        channels) model inputs of one pass of `batch_size` copies (`item` and `copy` index each
        one). Returns (items, height, width, channels); the whole loop is one compiled function.
        """
        sizes = tf.constant(copies, tf.int32), tf.constant(batch_size, tf.int32)
        loop = self._compiled(self._gradient_loop, make_inputs)
        return loop(tf.convert_to_tensor(inputs, tf.float32), classes, sources, *sizes)

    def _compiled(self, loop: Callable, *functions: Callable) -> Callable:
        """`loop` with its leading function arguments bound, compiled once per explainer."""
        key = (loop, *functions)
        if key not in self._loops:
            self._loops[key] = tf.function(partial(loop, *functions), reduce_retracing=True)
        return self._loops[key]

    def _masked_loop(self, make_masks, score, inputs, classes, sources, copies, batch_size):
        def masked(inputs, sources, item, copy, copies):
            masks = make_masks(sources, item, copy, copies, tf.shape(inputs)[1:3])
            return tf.gather(inputs, item) * masks

        return self._changed_loop(masked, score, inputs, classes, sources, copies, batch_size)

    def _changed_loop(self, make_inputs, score, inputs, classes, sources, copies, batch_size):
        items = tf.shape(inputs)[0]
        steps = _pass_count(items, copies, batch_size)
        results = tf.TensorArray(tf.float32, size=steps, infer_shape=False)
        for step in tf.range(steps):
            item, copy = _chunk(step, batch_size, items, copies)
            _, logits = self.forward(make_inputs(inputs, sources, item, copy, copies))
            results = results.write(step, score(logits, tf.gather(classes, item)))
        return tf.reshape(results.concat(), [items, copies])

    def _gradient_loop(self, make_inputs, inputs, classes, sources, copies, batch_size):
        items = tf.shape(inputs)[0]
        steps = _pass_count(items, copies, batch_size)
        total = tf.zeros_like(inputs)
        for step in tf.range(steps):
            item, copy = _chunk(step, batch_size, items, copies)
            changed = make_inputs(inputs, sources, item, copy, copies)
            with tf.GradientTape() as tape:
                tape.watch(changed)
                _, logits = self.forward(changed)
                scores = class_logits(logits, tf.gather(classes, item))
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
        codes = targets.codes(len(inputs), self.num_classes)
        images = np.repeat(np.arange(len(inputs)), codes.shape[1])
        items = tf.convert_to_tensor(np.asarray(inputs, np.float32)[images])
        tensors = self.core(items, codes.reshape(-1))
        # A class given with --class may also be a top-k prediction: keep its first occurrence.
        keep = np.sort(np.unique(images * self.num_classes + tensors[0].numpy(),
                                 return_index=True)[1])
        if len(keep) < len(images):
            items, tensors = tf.gather(items, keep), [tf.gather(t, keep) for t in tensors]
        classes, scores, probabilities, activations, gradients = tensors
        cam_pass = CamPass(self, items, classes, activations, gradients, options)
        return CamBatch(
            self.layer_path,
            images[keep],
            classes.numpy(),
            scores.numpy(),
            probabilities.numpy() if self.head.probability else None,
            self.head.score_kind,
            {method: METHODS[method](cam_pass).numpy() for method in methods},
        )
