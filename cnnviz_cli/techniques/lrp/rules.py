"""LRP rules as modified backward passes, and the composites that choose a rule per layer.

Relevance travels down the network as the upstream gradient: every rule returns the layer's
ordinary output whose gradient, given the output relevance R (items, ...), is the input
relevance. For a linear map z = W x + b a rule redistributes R over the contributions of the
inputs, R_j = sum_k c_jk / d_k R_k (Montavon et al. 2019):

| rule       | contribution c_jk                       | denominator d_k                      |
|------------|-----------------------------------------|--------------------------------------|
| epsilon    | x_j w_jk                                | z_k + epsilon sign(z_k)              |
| gamma      | x_j (w_jk + gamma w_jk+)                | sum_j c_jk + b_k + gamma b_k+        |
| alpha-beta | alpha (x_j w_jk)+, and - beta (x_j w_jk)- | sum_j (x_j w_jk)+ + b_k+, and with - |
| z-box      | x_j w_jk - l_j w_jk+ - h_j w_jk-        | z_k - sum_j (l_j w_jk+ + h_j w_jk-)  |
| flat       | 1 in the receptive field                | the receptive field's size           |

Every denominator is kept away from zero by `STABILISER` (epsilon for the epsilon rule). The
trick: `carried(v, x)` has v's value and passes v * upstream to x, so the ordinary backward pass
of `apply` over carried inputs computes sum_k c_jk s_k for any modified weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.lazy import tf

STABILISER = 1e-6  # keeps the denominators of every rule but epsilon away from zero


@dataclass(frozen=True)
class Linear:
    """A linear layer of the canonised graph: `apply(inputs, kernel, bias)` and its weights.

    `kind` is what the composites choose rules by: conv, dense, or pool (average pooling,
    residual sums, upsampling: maps with fixed non-negative weights, kernel 1.0).
    """

    name: str
    kind: str
    apply: Callable[[list[tf.Tensor], tf.Tensor, tf.Tensor | None], tf.Tensor]
    kernel: tf.Tensor
    bias: tf.Tensor | None = None
    # The input's channel axis, where inputs stacked along it meet kernels stacked along their
    # axis -2 (their input channels): a convolution or dense map of one input; else None.
    stack_axis: int | None = None


@dataclass(frozen=True)
class Facts:
    """What is known about a tensor of the walked graph."""

    deep: bool = True  # a convolution or dense layer lies between the model input and it
    nonnegative: bool = False  # every value is >= 0 (after a ReLU)
    bounds: tuple[tf.Tensor, tf.Tensor] | None = None  # (low, high) before any linear layer


class Rule(Protocol):
    def __call__(self, layer: Linear, inputs: list[tf.Tensor], facts: list[Facts]) -> tf.Tensor:
        ...


def carried(value: tf.Tensor, source: tf.Tensor) -> tf.Tensor:
    """`value`, whose gradient with respect to `source` is value * upstream."""

    @tf.custom_gradient
    def carry(source):
        return tf.identity(value), lambda upstream: upstream * value

    return carry(source)


def carried_signs(source: tf.Tensor, axis: int) -> tf.Tensor:
    """[source+, source-] stacked along `axis`, whose gradient with respect to `source` is
    the upstream's halves times source+ and source-."""

    @tf.custom_gradient
    def carry(source):
        positive, negative = tf.maximum(source, 0.0), tf.minimum(source, 0.0)

        def backward(upstream):
            upper, lower = tf.split(upstream, 2, axis=axis)
            return upper * positive + lower * negative

        return tf.concat([positive, negative], axis), backward

    return carry(source)


def stabilised(denominator: tf.Tensor, epsilon: float = STABILISER, sign: float = 0.0
               ) -> tf.Tensor:
    """denominator + epsilon sign(denominator), the sign of 0 taken as +1; `sign` is the sign
    every value is known to have (0: unknown), which saves a comparison and a selection over
    the whole tensor."""
    if sign:
        return denominator + sign * epsilon
    return denominator + tf.where(denominator >= 0.0, epsilon, -epsilon)


class Share(NamedTuple):
    """Carried contributions m over which relevance R is split (R f / m): the factor f, and
    the sign every value of m is known to have (0: unknown)."""

    total: tf.Tensor
    factor: float = 1.0
    sign: float = 0.0


def redistributed(output: tf.Tensor, shares: list[Share], epsilon: float = STABILISER
                  ) -> tf.Tensor:
    """`output`'s value, passing the relevance R (the upstream gradient) down as the sum over
    `shares` of the backward pass of their contributions m of f R / m (m kept `epsilon` away
    from zero)."""

    # `output` is an argument (with no gradient) because TensorFlow looks for the variables a
    # custom gradient reads by walking back from its result to its arguments: from a tensor
    # made elsewhere, that walk would cross the whole graph once per layer.
    @tf.custom_gradient
    def split(output, *totals):
        def backward(upstream):
            shared = [upstream / stabilised(total, epsilon, share.sign)
                      for total, share in zip(totals, shares, strict=True)]
            return [None, *(part * share.factor if share.factor != 1.0 else part
                            for part, share in zip(shared, shares, strict=True))]

        return tf.identity(output), backward

    return split(output, *(share.total for share in shares))


def _positive(tensor: tf.Tensor | None) -> tf.Tensor | None:
    return None if tensor is None else tf.maximum(tensor, 0.0)


def _negative(tensor: tf.Tensor | None) -> tf.Tensor | None:
    return None if tensor is None else tf.minimum(tensor, 0.0)


def _carried_all(inputs: list[tf.Tensor], change: Callable | None = None) -> list[tf.Tensor]:
    return [carried(x if change is None else change(x), x) for x in inputs]


def epsilon(value: float) -> Rule:
    """LRP-epsilon: contributions x w over z + epsilon sign(z); the bias and epsilon absorb
    relevance, so weak and contradictory evidence fades."""

    def rule(layer, inputs, facts):
        outputs = layer.apply(_carried_all(inputs), layer.kernel, layer.bias)
        # pool maps have non-negative weights: of non-negative inputs, their outputs are too
        known = layer.kind == "pool" and all(fact.nonnegative for fact in facts)
        return redistributed(outputs, [Share(outputs, sign=1.0 if known else 0.0)], value)

    return rule


def gamma(value: float) -> Rule:
    """LRP-gamma: positive weights raised by gamma (w + gamma w+), favouring positive evidence."""

    def rule(layer, inputs, facts):
        kernel = layer.kernel + value * _positive(layer.kernel)
        bias = None if layer.bias is None else layer.bias + value * _positive(layer.bias)
        changed = layer.apply(_carried_all(inputs), kernel, bias)
        outputs = layer.apply(inputs, layer.kernel, layer.bias)
        return redistributed(outputs, [Share(changed)])

    return rule


def _signed_part(layer: Linear, inputs: list, facts: list[Facts], sign: float) -> tf.Tensor:
    """Carried sum of the positive (sign 1) or negative (sign -1) contributions x w (and the
    bias's part); inputs known to be non-negative skip their negative half, and layers that
    stack take both halves in one pass (the output written once: fewer bytes moved)."""
    same, other = (_positive, _negative) if sign > 0 else (_negative, _positive)
    nonnegative = all(fact.nonnegative for fact in facts)  # then x+ is x itself
    if not nonnegative and layer.stack_axis is not None:  # one pass over [x+, x-]
        kernel = tf.concat([same(layer.kernel), other(layer.kernel)], axis=-2)
        return layer.apply([carried_signs(inputs[0], layer.stack_axis)], kernel,
                           same(layer.bias))
    total = layer.apply(_carried_all(inputs, None if nonnegative else _positive),
                        same(layer.kernel), same(layer.bias))
    if not nonnegative:
        total += layer.apply(_carried_all(inputs, _negative), other(layer.kernel), None)
    return total


def alpha_beta(alpha: float, beta: float) -> Rule:
    """LRP-alpha-beta: positive contributions weighted by alpha, negative by beta
    (alpha - beta = 1)."""

    def rule(layer, inputs, facts):
        shares = [Share(_signed_part(layer, inputs, facts, 1.0), alpha, 1.0)]
        if beta:
            shares.append(Share(_signed_part(layer, inputs, facts, -1.0), -beta, -1.0))
        return redistributed(layer.apply(inputs, layer.kernel, layer.bias), shares)

    return rule


def z_box(layer: Linear, inputs: list[tf.Tensor], facts: list[Facts]) -> tf.Tensor:
    """LRP-z-box (first layer): contributions relative to the input box [low, high]."""
    if any(fact.bounds is None for fact in facts):
        raise CnnvizError(
            f"The z-box rule needs the range of the input values at layer {layer.name!r}: "
            "give the bounds low and high of the model input (the preprocessing of 0 and 255)."
        )
    outputs = layer.apply(_carried_all(inputs), layer.kernel, layer.bias)
    lows = [carried(fact.bounds[0], x) for fact, x in zip(facts, inputs, strict=True)]
    highs = [carried(fact.bounds[1], x) for fact, x in zip(facts, inputs, strict=True)]
    changed = (outputs - layer.apply(lows, _positive(layer.kernel), None)
               - layer.apply(highs, _negative(layer.kernel), None))
    return redistributed(outputs, [Share(changed)])


def flat(layer: Linear, inputs: list[tf.Tensor], facts: list[Facts]) -> tf.Tensor:
    """LRP-flat (first layer): relevance spread evenly over each output's receptive field."""
    outputs = layer.apply(inputs, layer.kernel, layer.bias)
    if layer.stack_axis is None:
        ones = _carried_all(inputs, tf.ones_like)
        counts = layer.apply(ones, tf.ones_like(layer.kernel), None)
        return redistributed(outputs, [Share(counts, sign=1.0)])
    # A convolution or dense map of one input: every input channel receives the same share
    # and every output channel the same count, so one channel of each stands for all of them.
    source, axis = inputs[0], layer.stack_axis
    channels = tf.cast(tf.shape(source)[axis], source.dtype)

    @tf.custom_gradient
    def one_channel(source):  # ones with one channel; its gradient is copied to every channel
        return (tf.ones_like(tf.gather(source, [0], axis=axis)),
                lambda upstream: tf.broadcast_to(upstream, tf.shape(source)))

    kernel = tf.ones((*layer.kernel.shape[:-2], 1, 1), layer.kernel.dtype)
    fields = layer.apply([one_channel(source)], kernel, None)  # receptive field per channel
    counts = fields + tf.stop_gradient(fields * (channels - 1.0))  # its gradient: fields'
    counts = tf.broadcast_to(counts, tf.shape(outputs))
    return redistributed(outputs, [Share(counts, sign=1.0)])


@dataclass(frozen=True)
class RuleSettings:
    """The parameters the composites give their rules."""

    epsilon: float = 1e-6
    gamma: float = 0.25


Composite = Callable[[str, bool, RuleSettings], Rule]  # (kind, first layer, settings) -> rule


def _epsilon_composite(kind: str, first: bool, settings: RuleSettings) -> Rule:
    """The epsilon rule on every layer."""
    return epsilon(settings.epsilon)


def _epsilon_plus_flat(kind: str, first: bool, settings: RuleSettings) -> Rule:
    """Flat on the first layer, alpha1-beta0 (z+) on convolutions, epsilon on dense layers."""
    if kind == "pool":
        return epsilon(settings.epsilon)
    if first:
        return flat
    return alpha_beta(1.0, 0.0) if kind == "conv" else epsilon(settings.epsilon)


def _epsilon_gamma_box(kind: str, first: bool, settings: RuleSettings) -> Rule:
    """z-box on the first layer (bounded inputs), gamma on convolutions, epsilon on dense
    layers."""
    if kind == "pool":
        return epsilon(settings.epsilon)
    if first:
        return z_box
    return gamma(settings.gamma) if kind == "conv" else epsilon(settings.epsilon)


def _epsilon_alpha2_beta1(kind: str, first: bool, settings: RuleSettings) -> Rule:
    """alpha2-beta1 on convolutions, epsilon on dense layers."""
    return alpha_beta(2.0, 1.0) if kind == "conv" else epsilon(settings.epsilon)


MAX_POOL_MODES = {
    "winner": "max pooling passes each output's relevance to its largest input",
    "average": "max pooling splits relevance as average pooling would",
}
COMPOSITES: dict[str, Composite] = {
    "epsilon-plus-flat": _epsilon_plus_flat,
    "epsilon-gamma-box": _epsilon_gamma_box,
    "epsilon-alpha2-beta1": _epsilon_alpha2_beta1,
    "epsilon": _epsilon_composite,
}
