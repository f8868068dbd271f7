"""Score-weighted CAMs: channel weights from the scores of the input masked by each channel's
upsampled activation map, run through the model in large batches."""

from __future__ import annotations

from cnnviz_cli.lazy import tf
from cnnviz_cli.options import Option
from cnnviz_cli.techniques.cam import CamPass, method, weigh

MAX_N = Option("max_n", 10, "Channels of largest activation variance to score.", int, low=1)


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
    return cam_pass.combine(weigh(tf.nn.softmax(scores, axis=1), activations))


@method("scorecam", weighted=True)
def _scorecam(cam_pass: CamPass) -> tf.Tensor:
    """Wang et al.: channels weighted by the softmax of the scores of the input masked by each
    (its upsampled, normalised activation map)."""
    return _score_weighted(cam_pass, cam_pass.activations)


@method("faster-scorecam", options=[MAX_N], weighted=True)
def _faster_scorecam(cam_pass: CamPass) -> tf.Tensor:
    """ScoreCAM on the channels of largest spatial activation variance only."""
    activations = cam_pass.activations
    count = min(cam_pass.options.max_n, int(activations.shape[-1]))
    variance = tf.math.reduce_variance(activations, axis=[1, 2])
    channels = tf.math.top_k(variance, count).indices
    return _score_weighted(cam_pass, tf.gather(activations, channels, axis=3, batch_dims=1))
