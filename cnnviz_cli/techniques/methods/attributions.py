"""Gradient attributions: input-resolution maps from input gradients, averaged over changed
copies of each item (noisy copies, points on a path from a baseline) in large batches."""

from __future__ import annotations

from cnnviz_cli.lazy import tf
from cnnviz_cli.options import Option
from cnnviz_cli.techniques.cam import (
    IG_BASELINES,
    Attribution,
    CamExplainer,
    CamPass,
    method,
    unchanged,
)

SAMPLES = Option("samples", 32, "Noisy copies of the input averaged.", int, low=1)
NOISE = Option("noise", 0.15, "Noise standard deviation as a fraction of the input's range.",
               float, low=0)
IG_STEPS = Option("ig_steps", 32, "Points on the path from the baseline to the input (the "
                  "midpoints of equal steps).", int, low=1)
IG_BASELINE = Option("ig_baseline", "blur", "The image the path starts from.",
                     tuple(IG_BASELINES))


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


def integrated_gradients(
    explainer: CamExplainer, inputs: tf.Tensor, classes: tf.Tensor, baselines: tf.Tensor,
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


def completeness_error(cam_pass: CamPass, attributions, baselines):
    """|sum of attributions - (score(x) - score(baseline))| / |score(x) - score(baseline)| per
    item: how far an attribution is from accounting for the whole change of the score."""
    explainer, chosen, size = cam_pass.explainer, cam_pass.selection, cam_pass.options.batch_size
    change = cam_pass.scores - explainer.perturbed_scores(unchanged, baselines, chosen, (), 1,
                                                          size)[:, 0]
    total = tf.reduce_sum(attributions, axis=[1, 2, 3])
    return tf.abs(total - change) / tf.maximum(tf.abs(change), 1e-12)


@method("saliency", needs="gradient")
def _saliency(cam_pass: CamPass) -> tf.Tensor:
    """Simonyan et al.: the input gradient of the score."""
    return _sensitivity(cam_pass.input_gradients)


@method("smoothgrad", needs="gradient", options=[SAMPLES, NOISE], random=True)
def _smoothgrad(cam_pass: CamPass) -> tf.Tensor:
    """Smilkov et al.: input gradients averaged over `samples` noisy copies of the input."""
    options = cam_pass.options
    sources = (tf.constant(options.noise, tf.float32), tf.constant(options.seed, tf.int64))
    return _sensitivity(cam_pass.mean_input_gradients(_noisy, sources, options.samples))


@method("smoothgrad-signed", needs="gradient", options=[SAMPLES, NOISE], random=True,
        signed=True)
def _smoothgrad_signed(cam_pass: CamPass) -> Attribution:
    """SmoothGrad keeping the sign: the mean input gradient of the noisy copies, per channel."""
    options = cam_pass.options
    sources = (tf.constant(options.noise, tf.float32), tf.constant(options.seed, tf.int64))
    return Attribution(cam_pass.mean_input_gradients(_noisy, sources, options.samples))


@method("integrated-gradients", needs="gradient", options=[IG_STEPS, IG_BASELINE],
        random=lambda settings: settings["ig_baseline"] == "noise", signed=True)
def _integrated_gradients(cam_pass: CamPass) -> Attribution:
    """Sundararajan et al., from the `ig_baseline` image (midpoint rule; the manifest records
    the completeness error)."""
    options = cam_pass.options
    baselines = IG_BASELINES[options.ig_baseline](cam_pass.inputs, options)
    values = integrated_gradients(cam_pass.explainer, cam_pass.inputs, cam_pass.selection,
                                  baselines, options.ig_steps, options.batch_size)
    return Attribution(values, {"completeness_error": completeness_error(cam_pass, values,
                                                                         baselines)})


@method("gradient-input", needs="gradient", signed=True)
def _gradient_input(cam_pass: CamPass) -> Attribution:
    """Shrikumar et al.: the input times its gradient."""
    return Attribution(cam_pass.inputs * cam_pass.input_gradients)
