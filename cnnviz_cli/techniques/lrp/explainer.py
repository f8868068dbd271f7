"""Compiled LRP of a Keras model: options, the explainer and its result (see the package)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.techniques.lrp.graph import Walk, check_covered
from cnnviz_cli.techniques.lrp.rules import (
    COMPOSITES,
    MAX_POOL_MODES,
    Composite,
    RuleSettings,
    carried,
)

Bound = float | Sequence[float] | np.ndarray


@dataclass(frozen=True, eq=False)
class LrpOptions:
    """How relevance is propagated.

    `composite` names an entry of `COMPOSITES` (or is a function (kind, first, settings) ->
    rule); `epsilon` is the epsilon rule's, `gamma` the gamma rule's parameter; `low` and
    `high` bound the model input's values (the z-box rule needs them), a number or one per
    channel, broadcast to the input; `max_pool` a key of `MAX_POOL_MODES`.
    """

    composite: str | Composite = "epsilon-plus-flat"
    epsilon: float = 1e-6
    gamma: float = 0.25
    low: Bound | None = None
    high: Bound | None = None
    max_pool: str = "winner"

    def __post_init__(self):
        if isinstance(self.composite, str) and self.composite not in COMPOSITES:
            raise CnnvizError(f"Unknown LRP composite {self.composite!r}; choose from "
                              f"{', '.join(COMPOSITES)}.")
        if not self.epsilon > 0:
            raise CnnvizError(f"--lrp-epsilon must be positive, but was {self.epsilon:g}.")
        if not self.gamma >= 0:
            raise CnnvizError(f"--lrp-gamma must be zero or positive, but was {self.gamma:g}.")
        if self.max_pool not in MAX_POOL_MODES:
            raise CnnvizError(f"Unknown max pooling mode {self.max_pool!r}; choose from "
                              f"{', '.join(MAX_POOL_MODES)}.")
        if (self.low is None) != (self.high is None):
            raise CnnvizError("Give both bounds of the input values, low and high, or neither.")

    @property
    def choose(self) -> Composite:
        """The composite: (layer kind, first layer, settings) -> rule."""
        return COMPOSITES[self.composite] if isinstance(self.composite, str) else self.composite


class LrpResult(NamedTuple):
    """Relevance of a batch of items."""

    relevance: tf.Tensor  # (items, *input shape) signed relevance of every input value
    scores: tf.Tensor  # (items,) the explained scores
    conservation: tf.Tensor  # (items,) |sum of relevance - score| / |score|


class LrpExplainer:
    """Compiled LRP for one model, score function and options.

    `score_fn(outputs, *score_args) -> (items,)` picks each item's explained score from the
    model's outputs (final softmax or sigmoid left out; one tensor, or a list for several
    outputs), TensorFlow ops only. The relevance at the outputs is outputs times the score's
    gradient there (the score itself for a picked logit). Traced once per input shape.
    """

    def __init__(self, model: keras.Model, score_fn: Callable[..., tf.Tensor],
                 options: LrpOptions = LrpOptions()):
        check_covered(model)
        self.options = options
        self._walk = Walk(model, options.choose, RuleSettings(options.epsilon, options.gamma),
                          options.max_pool)
        self._bounds = None if options.low is None else tuple(
            tf.constant(np.asarray(bound, np.float32)) for bound in (options.low, options.high))
        self._score_fn = score_fn
        self._explain = tf.function(self._relevance, reduce_retracing=True, autograph=False)

    def __call__(self, inputs, *score_args) -> LrpResult:
        """The relevance of a preprocessed batch; `score_args` go to `score_fn`."""
        return LrpResult(*self._explain(tf.convert_to_tensor(inputs, tf.float32), *score_args))

    def _relevance(self, inputs: tf.Tensor, *score_args):
        bounds = None if self._bounds is None else tuple(
            tf.broadcast_to(bound, tf.shape(inputs)) for bound in self._bounds)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = self._walk(inputs, bounds)
            scores = self._score_fn(tf.nest.map_structure(lambda out: carried(out, out), outputs),
                                    *score_args)
        relevance = tape.gradient(scores, inputs,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
        total = tf.reduce_sum(relevance, axis=list(range(1, len(inputs.shape))))
        difference = tf.abs(total - scores)
        conservation = tf.where(difference == 0.0, 0.0, difference / tf.abs(scores))
        return relevance, scores, conservation


def relevance(model: keras.Model, inputs, score_fn: Callable[[tf.Tensor], tf.Tensor],
              options: LrpOptions = LrpOptions()) -> LrpResult:
    """LRP of a batch once: `LrpExplainer(model, score_fn, options)(inputs)`; keep an
    explainer for repeated batches."""
    return LrpExplainer(model, score_fn, options)(inputs)
