"""What a model's output means, and what of it is explained: the head adapter.

From the final activation that the extractor leaves out (softmax, sigmoid or none) and the
output's shape, `detect_head` decides the task; `task=` overrides it (a linear output is
ambiguous). A `Head` turns the pre-activation output into a score per class (what the
techniques explain and rank, always pre-activation) and into the model's own probability of
each class (what deletion/insertion, the gates and the report use):

| task       | output                 | class c's score                     | probability         |
|------------|------------------------|-------------------------------------|---------------------|
| classify   | (batch, classes)       | logit c                             | softmax             |
| binary     | (batch, 1) logit z     | class 1: z, class 0: -z             | sigmoid(score)      |
| multilabel | (batch, labels)        | logit c                             | sigmoid per label   |
| regress    | (batch, outputs)       | output c (negated: direction down)  | the value explained |
| segment    | (batch, h, w, classes) | sum of logit c over the region      | its mean there      |
|            | or (batch, classes, h, w) |                                  |                     |
| embed      | (batch, d)             | cosine similarity to the reference  | the similarity      |

The segmentation region of an item is a given mask (input resolution, resized to the output's),
or by default the pixels the model assigns to the class (computed on the unchanged input and then
kept fixed). A segmentation output is channels-first when its shape says so (`_channels_first`).
A one-channel map z is binary segmentation: class 0 (background) scores -z, class 1
(foreground) z, and the foreground is explained by default; a one-channel map that may already
be a probability (an exported model, whose sigmoid cannot be left out) is read as one where all
its values lie in [0, 1]. Every function is TensorFlow ops only, so it runs inside compiled steps.
"""

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.extract import build_extractor, final_activation
from cnnviz_cli.models.layers import DEFAULT_FREE_SIZE, shapes_at
from cnnviz_cli.specs import TASKS

EPSILON = 1e-6  # probabilities are clipped this far from 0 and 1 before their logit
SIGNS = {"up": 1.0, "down": -1.0}  # of the specs.DIRECTIONS
REFERENCE_RULE = ("--reference IMAGE goes with --task embed, and --task embed needs it: the "
                  "similarity compares each input's embedding with the references' mean.")
_RANKS = {"segment": 4}  # output rank each task needs; 2 for all others
HEADLESS_STRIDE = 8  # a map coarser than this (input side / map side) is a backbone's features


@dataclass(frozen=True, eq=False)  # compared (and cached) by identity
class Head:
    """One output's task and the functions from its pre-activation output to class scores."""

    task: str
    activation: str  # the final activation left out: softmax, sigmoid or none
    units: int  # the size of the output's last axis
    direction: float = 1.0  # regress: 1 explains what raises the output, -1 what lowers it
    reference: np.ndarray | None = None  # embed: the mean embedding of the reference images
    channels_first: bool = False  # segment: a (batch, classes, height, width) output
    output_name: str = "output"  # regress: what the values are called
    headless: bool = False  # a backbone's feature map taken for a segmentation (no task given)

    @property
    def binary_map(self) -> bool:
        """A one-channel segmentation map: background and foreground are its two classes."""
        return self.task == "segment" and self.units == 1

    @property
    def num_classes(self) -> int:
        return 2 if self.binary_map else {"binary": 2, "embed": 1}.get(self.task, self.units)

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The names of the classes the head itself defines (a binary map's background and
        foreground, a regression's output name), else None."""
        if self.binary_map:
            return ("background", "foreground")
        if self.task == "regress":
            name = self.output_name
            return (name,) if self.units == 1 else tuple(f"{name} {i}" for i in range(self.units))
        return None

    @property
    def score_kind(self) -> str:
        """What a recorded score is: logit, score (a linear classifier), value, similarity."""
        if self.task == "regress":
            return "value" if self.direction > 0 else "negated value"
        if self.task == "embed":
            return "cosine similarity"
        return "score" if self.activation == "none" and self.task == "classify" else "logit"

    @property
    def has_probability(self) -> bool:
        """Whether `probability` is the model's own probability (recorded as such)."""
        if self.task in ("binary", "multilabel") or self.binary_map:
            return True
        return self.task in ("classify", "segment") and self.activation != "none"

    @property
    def key(self) -> tuple:
        """What tells this head's score functions apart, to reuse compiled passes; a head with
        reference embeddings is its own (they change with the weights)."""
        return (self.task, self.activation, self.units, self.direction, self.channels_first,
                None if self.reference is None else id(self))

    def describe(self) -> dict:
        record = {"task": self.task, "activation": self.activation, "classes": self.num_classes,
                  "score": self.score_kind}
        return {**record, "direction": "up" if self.direction > 0 else "down"} if (
            self.task == "regress") else record

    def all_scores(self, outputs: tf.Tensor, regions: tf.Tensor | None = None) -> tf.Tensor:
        """(batch, classes) scores of every class; segmentation sums over `regions` (batch,
        h, w) at the output's resolution, by default over the pixels assigned to each class
        (other heads ignore `regions`)."""
        if self.task == "binary":
            return tf.concat([-outputs, outputs], axis=1)
        if self.task == "regress":
            return self.direction * outputs
        if self.task == "embed":
            reference = tf.math.l2_normalize(tf.constant(self.reference, tf.float32))
            return tf.linalg.matvec(tf.math.l2_normalize(outputs, axis=1), reference)[:, None]
        if self.task == "segment":
            maps = self.class_maps(outputs)
            weights = _assigned(maps) if regions is None else regions[..., None]
            return tf.reduce_sum(maps * weights, axis=[1, 2])
        return outputs

    def class_maps(self, outputs: tf.Tensor) -> tf.Tensor:
        """Segmentation: (batch, h, w, classes) pre-activation maps, channels last; a
        one-channel map z becomes (-z, z), a probability p the logit of p."""
        maps = tf.transpose(outputs, [0, 2, 3, 1]) if self.channels_first else outputs
        if not self.binary_map:
            return maps
        if self.activation == "none":  # perhaps a sigmoid inside the model
            within = tf.reduce_all((maps >= 0) & (maps <= 1), axis=[1, 2, 3], keepdims=True)
            clipped = tf.clip_by_value(maps, EPSILON, 1 - EPSILON)
            maps = tf.where(within, tf.math.log(clipped) - tf.math.log(1 - clipped), maps)
        return tf.concat([-maps, maps], axis=-1)

    def ranking(self, outputs: tf.Tensor) -> tf.Tensor:
        """(batch, classes) what orders the default targets (top-1, top-k): the scores, except
        that a binary map's foreground always comes first."""
        scores = self.all_scores(outputs)
        return tf.zeros_like(scores) + [0.0, 1.0] if self.binary_map else scores

    def all_probabilities(self, outputs: tf.Tensor, regions: tf.Tensor | None = None) -> tf.Tensor:
        """(batch, classes): the head's own function of the scores (see the module table)."""
        if self.task in ("binary", "multilabel"):
            return tf.sigmoid(self.all_scores(outputs))
        if self.task == "classify":
            return tf.nn.softmax(outputs, axis=-1)
        if self.task == "segment":
            maps = self.class_maps(outputs)
            squash = tf.sigmoid if self.activation == "sigmoid" or self.binary_map else (
                tf.nn.softmax)
            weights = _assigned(maps) if regions is None else regions[..., None]
            total = tf.reduce_sum(squash(maps) * weights, axis=[1, 2])
            return tf.math.divide_no_nan(total, tf.reduce_sum(weights, axis=[1, 2]))
        if self.task == "regress" and self.activation == "sigmoid":
            return self.direction * tf.sigmoid(outputs)
        return self.all_scores(outputs)

    def regions(self, outputs: tf.Tensor, classes: tf.Tensor, given: tf.Tensor) -> tf.Tensor:
        """Segmentation: each item's region at the output's resolution, its `given` mask
        (items, h, w) where it is >= 0 (-1: none given), else its class's assigned pixels.
        Other heads have no region and return `given` unchanged."""
        if self.task != "segment":
            return given
        maps = self.class_maps(outputs)
        mask = tf.image.resize(given[..., None], tf.shape(maps)[1:3], "nearest")[..., 0]
        labels = tf.argmax(maps, axis=-1, output_type=tf.int32)
        assigned = tf.cast(labels == tf.cast(classes, tf.int32)[:, None, None], tf.float32)
        return tf.stop_gradient(tf.where(mask >= 0, mask, assigned))

    def score(self, outputs: tf.Tensor, classes: tf.Tensor, regions: tf.Tensor) -> tf.Tensor:
        """(batch,) the explained score of each item's class (and region)."""
        return class_scores(self.all_scores(outputs, regions), classes)

    def probability(self, outputs: tf.Tensor, classes: tf.Tensor, regions: tf.Tensor) -> tf.Tensor:
        """(batch,) each item's probability (the value curves of deletion/insertion follow)."""
        return class_scores(self.all_probabilities(outputs, regions), classes)


def class_scores(scores: tf.Tensor, class_indices: tf.Tensor) -> tf.Tensor:
    """scores (batch, classes), one class index per item -> (batch,) the item's class's score."""
    return tf.gather(scores, tf.cast(class_indices, tf.int32), axis=1, batch_dims=1)


def _assigned(outputs: tf.Tensor) -> tf.Tensor:
    """(batch, h, w, classes) one-hot of the class each pixel is assigned to."""
    return tf.one_hot(tf.argmax(outputs, axis=-1), tf.shape(outputs)[-1], dtype=outputs.dtype)


def detect_head(
    model: keras.Model,
    index: int = 0,
    task: str | None = None,
    direction: str | None = None,
    reference: np.ndarray | None = None,
) -> Head:
    """The Head of output `index`: `task` when given (checked against the output's shape), else
    decided from the final activation and the shape. `direction` (up/down) is for regression
    only and `reference` (the mean reference embedding) for embeddings only."""
    shape = tuple(model.outputs[index].shape)
    activation = final_activation(model, index)
    chosen = task or _default_task(activation, shape)
    if chosen not in TASKS:
        raise CnnvizError(f"Unknown task {chosen!r}; choose from {', '.join(TASKS)}.")
    rank = _RANKS.get(chosen, 2)
    if len(shape) != rank or (chosen == "binary" and shape[-1] != 1):
        need = "(batch, height, width, classes)" if rank == 4 else (
            "(batch, 1)" if chosen == "binary" else "(batch, units)")
        raise CnnvizError(f"--task {chosen} needs an output of shape {need}, but output "
                          f"{index} has shape {_shape_text(shape)}; pick another --task or "
                          "--output.")
    if direction not in (None, *SIGNS):
        raise CnnvizError(f"Unknown direction {direction!r}; choose up or down.")
    if direction is not None and chosen != "regress":
        raise CnnvizError(f"--direction applies only to a regression head (--task regress), "
                          f"and this head is {chosen}; leave it out.")
    if (reference is not None) != (chosen == "embed"):
        raise CnnvizError(REFERENCE_RULE)
    if chosen == "embed" and np.shape(reference) != (shape[-1],):
        raise ValueError(f"reference embedding of shape {np.shape(reference)} for {shape}.")
    first = rank == 4 and _channels_first(shape, tuple(model.inputs[0].shape[1:3]))
    units = shape[1] if first else shape[-1]
    if units is None:
        raise CnnvizError(f"Output {index} has shape {_shape_text(shape)}, whose class axis "
                          "has no fixed size; export the model with a fixed number of classes.")
    names = list(getattr(model, "output_names", None) or ["output"])
    headless = task is None and chosen == "segment" and activation == "none" and not first and (
        _coarse(model, index))
    return Head(chosen, activation, int(units), SIGNS[direction or "up"],
                None if reference is None else np.asarray(reference, np.float32), first,
                names[index] if index < len(names) else "output", headless)


def _coarse(model: keras.Model, index: int) -> bool:
    """Whether output `index` is a map over HEADLESS_STRIDE times coarser than the input
    (measured at DEFAULT_FREE_SIZE for a model that takes any size; unknown: False)."""
    height, source = model.outputs[index].shape[1], model.inputs[0].shape[1]
    if height is None or source is None:
        source = DEFAULT_FREE_SIZE[0]
        layer = model.outputs[index]._keras_history.operation
        height = shapes_at(model, DEFAULT_FREE_SIZE).get(layer.name, (None, None))[1]
    return height is not None and height * HEADLESS_STRIDE < source


def check_headless(head: Head, classes) -> None:
    """A headless backbone's map is explained only when `--class` names a channel (or
    `--task segment` says it is a segmentation)."""
    if head.headless and not classes:
        raise CnnvizError(
            f"The model's output is a {head.units}-channel feature map far coarser than the "
            "input and without a classifier (a headless backbone), so there is no class to "
            "explain: give --class CHANNEL to explain a channel, or --task segment if it is a "
            "segmentation.")


def _channels_first(shape: tuple, image_size: tuple) -> bool:
    """Whether a 4-D output is (batch, classes, height, width): its second axis is fixed while
    its last is free, or (all fixed) its last two axes have the input's aspect ratio and its
    middle two do not (a free input counts as square)."""
    _, first, height, last = shape
    if first is None or last is None:
        return first is not None

    def proportional(rows: int | None, columns: int) -> bool:
        tall, wide = (side or 1 for side in image_size)
        return rows is not None and rows * wide == columns * tall

    return proportional(height, last) and not proportional(first, height)


def _default_task(activation: str, shape: tuple) -> str:
    if len(shape) == 4:
        return "segment"
    if len(shape) != 2:
        raise CnnvizError(f"The model's output has shape {_shape_text(shape)}; cnnviz explains "
                          "(batch, units) and (batch, height, width, classes) outputs.")
    if activation == "sigmoid":
        return "binary" if shape[-1] == 1 else "multilabel"
    if activation == "none" and shape[-1] == 1:
        return "regress"
    return "classify"


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("batch" if size is None and n == 0 else str(size)
                           for n, size in enumerate(shape)) + ")"


def check_threshold(head: Head, threshold: float | None) -> None:
    """`threshold` (explain every label with probability >= it) needs a multi-label head."""
    if threshold is None:
        return
    if not 0 < threshold < 1:
        raise CnnvizError(f"--threshold {threshold:g} is not a probability strictly between 0 "
                          "and 1; give e.g. --threshold 0.5.")
    if head.task != "multilabel":
        raise CnnvizError(f"--threshold applies only to a multi-label head (--task multilabel), "
                          f"and this head is {head.task}; leave it out.")


def mean_embedding(model: keras.Model, index: int, inputs: np.ndarray) -> np.ndarray:
    """The mean pre-activation output `index` of preprocessed `inputs`: the embedding that
    `--task embed` compares every input with."""
    network = build_extractor(model, [], logits=True)
    outputs = tf.nest.flatten(network(tf.convert_to_tensor(inputs, tf.float32), training=False))
    return np.asarray(outputs[index]).mean(axis=0)
