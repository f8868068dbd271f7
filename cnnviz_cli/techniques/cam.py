"""Class activation maps and gradient attributions: one compiled core, many small rules.

The core runs a batch of items (one image and one target class each) through the model once and
returns the target scores, the activations A of the chosen layer and the gradients G of the
scores with respect to A. Every method is a `Method` spec registered with `method` (or
`layer_rule`, `weight_rule`) by a module of `techniques/methods/`: its name, what it needs from
the model, its options and a function from that `CamPass` to one map per item. A `Modifier`
(also registered there) changes the maps of the methods it takes, switched on by its own
option. The command line, the API, the manifest and the docs read the specs; adding a method or
a modifier is one rule in one file there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, cached_property, partial
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.lazy import keras, tf
from cnnviz_cli.options import Option

if TYPE_CHECKING:
    from cnnviz_cli.models.heads import Head

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

    def above(self, probabilities: np.ndarray) -> Targets:
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


class CamOptions:
    """The settings a batch's methods read: `batch_size` (changed copies of the input per
    pass), `preprocess` (pixels in [0, 255] -> model input, for baselines), `seed`, and every
    method option by name (`options.samples`), defaulting to the option's declared default."""

    def __init__(self, batch_size: int = 32, preprocess: Callable | None = None, seed: int = 0,
                 **values: Any):
        declared = {option.name: option.default for spec in methods().values()
                    for option in (*spec.options, *spec.modifier_options)}
        unknown = set(values) - set(declared)
        if unknown:
            raise TypeError(f"Unknown method option(s): {', '.join(sorted(unknown))}.")
        self.batch_size, self.seed = batch_size, seed
        self.preprocess = preprocess or (lambda pixels: pixels)
        self.values = {**declared, **values}

    def __getattr__(self, name: str):
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)


def selection(classes, regions=None) -> tuple[tf.Tensor, tf.Tensor]:
    """What each item explains: (classes (items,), regions (items, h, w)); the regions are
    -1 (of size 1 x 1) when there are none (see `Head.regions`)."""
    classes = tf.convert_to_tensor(classes, tf.int32)
    if regions is None:
        regions = -tf.ones([tf.shape(classes)[0], 1, 1])
    return classes, tf.convert_to_tensor(regions, tf.float32)


def channel_sum(weighted: tf.Tensor) -> tf.Tensor:
    """ReLU(sum over channels) of weighted activations: the usual CAM."""
    return tf.nn.relu(tf.reduce_sum(weighted, axis=-1))


@dataclass
class CamPass:
    """What the compiled core computed for a batch of items, handed to every method."""

    explainer: CamExplainer
    inputs: tf.Tensor  # (items, height, width, channels) model input
    selection: tuple[tf.Tensor, tf.Tensor]  # (classes (items,), regions): see `selection`
    scores: tf.Tensor  # (items,) the explained scores of the inputs
    activations: tf.Tensor  # (items, h, w, k) the layer's feature maps A
    gradients: tf.Tensor  # (items, h, w, k) d score / d A
    options: CamOptions
    combine: Callable[[tf.Tensor], tf.Tensor] = channel_sum  # weighted A -> maps

    def redone(self, inputs: tf.Tensor, regions: tf.Tensor) -> CamPass:
        """This pass for the same items and classes from changed `inputs` (with their
        `regions`, see `selection`): new scores, activations and gradients, the same options."""
        classes = self.selection[0]
        _, scores, _, activations, gradients, regions = self.explainer.core(
            inputs, classes, regions)
        return replace(self, inputs=inputs, selection=(classes, regions), scores=scores,
                       activations=activations, gradients=gradients)

    @cached_property
    def input_gradients(self) -> tf.Tensor:
        """(items, height, width, channels) d score / d input, shared by the methods using it."""
        return self.mean_input_gradients(unchanged, (), 1)

    def mean_input_gradients(self, make_inputs: Callable, sources, copies: int) -> tf.Tensor:
        """`CamExplainer.mean_input_gradients` of this pass's items."""
        return self.explainer.mean_input_gradients(
            make_inputs, self.inputs, self.selection, sources, copies, self.options.batch_size
        )


Compute = Callable[[CamPass], Any]  # -> (items, height, width) maps, or an Attribution


@dataclass(frozen=True)
class Attribution:
    """What a signed method returns: signed attributions (items, height, width, channels) at
    the input, and numbers to record per item (`fields`, e.g. a completeness error)."""

    values: Any
    fields: dict = field(default_factory=dict)

    def positive(self):
        """The map the metrics and statistics use: the positive part of the channel sum."""
        return tf.nn.relu(tf.reduce_sum(self.values, axis=-1))


@dataclass(frozen=True)
class Method:
    """A CAM or attribution method, declared once next to its computation.

    `needs` says what it uses of the model: `layer` (a layer's activations and gradients),
    `gradient` (input gradients only) or `forward` (scores of changed inputs only). `options`
    are its own parameters (flags of `cnnviz cam`, keywords of `cnnviz_cli.cam`); `random`
    says whether it draws at random (True, or a test of the settings). `weighted` methods
    weigh the activations and leave their combination into maps to `CamPass.combine`.
    `Modifier`s wrap it. A `signed` method returns an `Attribution`, drawn with its sign.
    """

    name: str
    compute: Compute
    needs: str = "layer"
    summary: str = ""
    options: tuple[Option, ...] = ()
    random: bool | Callable[[dict], bool] = False
    signed: bool = False
    weighted: bool = False

    @property
    def modifier_options(self) -> tuple[Option, ...]:
        return tuple(modifier.option for modifier in MODIFIERS.values() if modifier.takes(self))

    def draws_at_random(self, settings: dict) -> bool:
        return self.random(settings) if callable(self.random) else self.random


@dataclass(frozen=True)
class Modifier:
    """A change to the maps of every method that `takes(method)` accepts, switched on by its
    bool `option`: `wrap(compute, cam_pass)` gives the changed maps."""

    name: str
    option: Option
    wrap: Callable[[Compute, CamPass], Any]
    takes: Callable[[Method], bool]


METHODS: dict[str, Method] = {}
MODIFIERS: dict[str, Modifier] = {}
METHOD_MODULES = ("cnnviz_cli.techniques.methods.cams", "cnnviz_cli.techniques.methods.scores",
                  "cnnviz_cli.techniques.methods.attributions",
                  "cnnviz_cli.techniques.methods.perturbation")  # their order is --help's


def methods() -> dict[str, Method]:
    """Every registered method, by name (importing techniques/methods/ registers them all)."""
    importlib.import_module("cnnviz_cli.techniques.methods")
    return METHODS


def method(name: str, needs: str = "layer", summary: str = "", options: Sequence[Option] = (),
           random: bool | Callable[[dict], bool] = False, signed: bool = False,
           weighted: bool = False):
    """Register a function from a `CamPass` to (items, height, width) maps as a method."""

    def add(compute: Compute) -> Compute:
        METHODS[name] = Method(name, compute, needs, summary or _first_line(compute),
                               tuple(options), random, signed, weighted)
        return compute

    return add


def modifier(name: str, option: Option,
             takes: Callable[[Method], bool] = lambda spec: spec.needs == "layer"
             and not spec.signed):
    """Register `wrap(compute, cam_pass) -> maps` as a modifier switched on by `option`, for
    the methods `takes(method)` accepts (default: the maps of a layer, not signed ones)."""

    def add(wrap: Callable) -> Callable:
        MODIFIERS[name] = Modifier(name, option, wrap, takes)
        return wrap

    return add


def layer_rule(name: str, summary: str = "", options: Sequence[Option] = ()) -> Callable:
    """Register a rule `(activations, gradients) -> maps` as a method, compiled on first use."""

    def add(rule: Callable):
        compiled = cache(lambda: tf.function(rule, reduce_retracing=True))
        method(name, summary=summary or _first_line(rule), options=options)(
            lambda cam_pass: compiled()(cam_pass.activations, cam_pass.gradients))
        return rule

    return add


def weight_rule(name: str, summary: str = "") -> Callable:
    """Register a rule `(activations, gradients) -> weights` as a weighted method, compiled on
    first use: channel weights (items, k) or weights per position (items, h, w, k), whose
    weighted activations `CamPass.combine` turns into maps."""

    def add(rule: Callable):
        compiled = cache(lambda: tf.function(rule, reduce_retracing=True))
        method(name, summary=summary or _first_line(rule), weighted=True)(
            lambda cam_pass: cam_pass.combine(weigh(
                compiled()(cam_pass.activations, cam_pass.gradients), cam_pass.activations)))
        return rule

    return add


def _first_line(function: Callable) -> str:
    """The docstring's first paragraph (its summary sentence), on one line."""
    return " ".join((function.__doc__ or "").strip().split("\n\n")[0].split())


def resolve_methods(specs: Sequence[str]) -> list[str]:
    """`--method` values (repeatable, comma lists, `all`) -> method names, in order, no repeats."""
    known = methods()
    names = [name.strip().lower() for spec in specs for name in spec.split(",") if name.strip()]
    chosen: list[str] = []
    for name in names or ["gradcam"]:
        if name != "all" and name not in known:
            raise CnnvizError(
                f"Unknown CAM method {name!r}; choose from {', '.join(known)}, or all."
            )
        chosen += list(known) if name == "all" else [name]
    return list(dict.fromkeys(chosen))


def run_method(name: str, cam_pass: CamPass):
    """The maps of method `name` for a pass, with the modifiers its options switch on."""
    spec = methods()[name]
    compute = spec.compute
    for extra in MODIFIERS.values():
        if extra.takes(spec) and getattr(cam_pass.options, extra.option.name, False):
            compute = partial(extra.wrap, compute)
    return compute(cam_pass)


def weigh(weights: tf.Tensor, activations: tf.Tensor) -> tf.Tensor:
    """The activations (items, h, w, k) times channel weights (items, k) or weights per
    position (items, h, w, k)."""
    if weights.shape.rank == 2:
        weights = weights[:, None, None, :]
    return weights * activations


def unchanged(inputs, sources, item, copy, copies):
    del sources, copy, copies
    return tf.gather(inputs, item)


def interpolation(positions: np.ndarray, size: int) -> np.ndarray:
    """(positions, size) weights interpolating linearly between values at 0 .. size - 1 at
    `positions` (clamped to the ends)."""
    positions = np.clip(positions, 0, size - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, size - 1)
    rows = np.arange(len(positions))
    weights = np.zeros((len(positions), size), np.float32)
    np.add.at(weights, (rows, low), 1 - (positions - low))
    np.add.at(weights, (rows, high), positions - low)
    return weights


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


ACTIVATION_BUDGET = 2**24  # floats of changed layer activations in one pass (64 MB)
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
    attributions: dict[str, np.ndarray] = field(default_factory=dict)  # signed methods:
    # method -> (items, height, width, channels) raw signed attributions
    extras: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # method -> field
    # -> (items,) numbers a method records (completeness or conservation error)

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
        from cnnviz_cli.models.extract import build_extractor
        from cnnviz_cli.models.heads import detect_head

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
        outputs = _listed(self._network(inputs, training=False))
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
        loop = self._compiled(self._perturbed_loop, make_inputs, self._changed_inputs, score)
        return loop(tf.convert_to_tensor(inputs, tf.float32), _as_selection(chosen), sources,
                    *sizes)

    def replaced_scores(
        self,
        make_activations: Callable,
        inputs: tf.Tensor,
        activations: tf.Tensor,
        chosen,
        sources,
        copies: int,
        batch_size: int,
    ) -> tf.Tensor:
        """Scores of `copies` changed copies of every item's layer activations (`chosen`: each
        item's class or a `selection`) run through the part of the model after the layer
        (see `models.extract.build_replaced`): as many copies per pass as ACTIVATION_BUDGET
        allows (at least `batch_size`), or `batch_size` when that part needs the input too.

        `make_activations(activations, sources, item, copy, copies)` builds the changed
        activations of one pass. Returns (items, copies) scores; one compiled loop.
        """
        _, takes_images = self._replaced  # built here, outside the compiled loop
        if not takes_images:
            size = int(np.prod(activations.shape[1:]))
            batch_size = max(batch_size, ACTIVATION_BUDGET // size)
        sizes = tf.constant(copies, tf.int32), tf.constant(batch_size, tf.int32)
        loop = self._compiled(self._perturbed_loop, make_activations, self._changed_activations,
                              self.head.score)
        return loop((tf.convert_to_tensor(inputs, tf.float32), activations),
                    _as_selection(chosen), sources, *sizes)

    def layer_gradients(self, score: Callable, inputs: tf.Tensor, chosen, arguments=()
                        ) -> tuple[tf.Tensor, tf.Tensor]:
        """(activations, gradients) of the layer for another score than the class's:
        `score(head, outputs, selection, arguments) -> (items,)`; compiled once per `score`."""
        step = self._compiled(self._gradient_step, score)
        return step(tf.convert_to_tensor(inputs, tf.float32), _as_selection(chosen), arguments)

    def _gradient_step(self, score, inputs, chosen, arguments):
        with tf.GradientTape() as tape:
            activations, outputs = self.forward(inputs)
            scores = score(self.head, outputs, chosen, arguments)
        return activations, tape.gradient(scores, activations)

    @cached_property
    def _replaced(self) -> tuple[keras.Model, bool]:
        from cnnviz_cli.models.extract import build_replaced

        return build_replaced(self.model, self.layer_path, logits=True)

    def _changed_inputs(self, make_inputs, inputs, sources, item, copy, copies):
        """The chosen output for the inputs `make_inputs` builds."""
        return self.forward(make_inputs(inputs, sources, item, copy, copies))[1]

    def _changed_activations(self, make_activations, inputs, sources, item, copy, copies):
        """The chosen output for the layer activations `make_activations` builds (`inputs`:
        (images, activations))."""
        images, activations = inputs
        changed = make_activations(activations, sources, item, copy, copies)
        network, takes_images = self._replaced
        outputs = network([tf.gather(images, item), changed] if takes_images else changed)
        return _listed(outputs)[self.output_index]

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

    def reused(self, key: tuple, build: Callable[[], Any]) -> Any:
        """What `build()` returns, built once per `key` for this explainer (a method's own
        compiled functions)."""
        if key not in self._loops:
            self._loops[key] = build()
        return self._loops[key]

    def _compiled(self, loop: Callable, *functions: Callable) -> Callable:
        """`loop` with its leading function arguments bound, compiled once per explainer."""
        key = (loop, *functions)
        if key not in self._loops:
            self._loops[key] = tf.function(partial(loop, *functions), reduce_retracing=True)
        return self._loops[key]

    def _perturbed_loop(self, make, run, score, inputs, chosen, sources, copies, batch_size):
        items = tf.shape(chosen[0])[0]
        steps = _pass_count(items, copies, batch_size)
        results = tf.TensorArray(tf.float32, size=steps, infer_shape=False)
        for step in tf.range(steps):
            item, copy = _chunk(step, batch_size, items, copies)
            outputs = run(make, inputs, sources, item, copy, copies)
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
        options: CamOptions | None = None,
    ) -> CamBatch:
        """Maps of every method for every (image, target class) of a preprocessed batch."""
        options = options or CamOptions()
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
        cam_pass = CamPass(self, items, (classes, regions), scores, activations, gradients,
                           options)
        batch = CamBatch(self.layer_path, images[keep], classes.numpy(), scores.numpy(),
                         probabilities.numpy() if head.has_probability else None,
                         head.score_kind, regions=regions.numpy() if head.task == "segment"
                         else None)
        for name in methods:
            computed = run_method(name, cam_pass)
            if isinstance(computed, Attribution):
                batch.attributions[name] = np.asarray(computed.values)
                batch.extras[name] = {key: np.asarray(value)
                                      for key, value in computed.fields.items()}
                computed = computed.positive()
            batch.maps[name] = np.asarray(computed)
        return batch


def _listed(outputs) -> list:
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def _as_selection(chosen) -> tuple[tf.Tensor, tf.Tensor]:
    return chosen if isinstance(chosen, tuple) else selection(chosen)


def _gathered(chosen: tuple, item: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tuple(tf.gather(part, item) for part in chosen)


