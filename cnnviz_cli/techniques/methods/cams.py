"""The CAM family: channel weights (or per-position weights) from a layer's activations A and
the score's gradients G, one compiled rule each."""

from __future__ import annotations

from cnnviz_cli.lazy import tf
from cnnviz_cli.techniques.cam import CamPass, layer_rule, method, weigh, weight_rule


@weight_rule("gradcam")
def gradcam_weights(activations, gradients):
    """Selvaraju et al.: channel weight = mean gradient over space."""
    del activations
    return tf.reduce_mean(gradients, axis=[1, 2])


@weight_rule("gradcam++")
def _gradcam_plus_plus(activations, gradients):
    """Chattopadhyay et al., closed-form alpha for an exponential score exp(logit).

    The positive factor exp(logit) shared by all weights only scales the map and is left out.
    """
    squared = tf.square(gradients)
    denominator = 2.0 * squared + tf.reduce_sum(activations, axis=[1, 2], keepdims=True) * (
        squared * gradients
    )
    alpha = tf.math.divide_no_nan(squared, denominator)
    return tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=[1, 2])


@weight_rule("xgradcam")
def _xgradcam(activations, gradients):
    """Fu et al.: gradients weighted by the activations normalised to sum 1 per channel."""
    total = tf.reduce_sum(activations, axis=[1, 2], keepdims=True)
    return tf.reduce_sum(tf.math.divide_no_nan(activations, total) * gradients, axis=[1, 2])


@weight_rule("layercam")
def _layercam(activations, gradients):
    """Jiang et al.: every position weighted by its own positive gradient."""
    del activations
    return tf.nn.relu(gradients)


@weight_rule("hirescam")
def _hirescam(activations, gradients):
    """Draelos & Carin: the element-wise product of gradients and activations, summed."""
    del activations
    return gradients


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


@method("guided-gradcam", weighted=True)
def _guided_gradcam(cam_pass: CamPass) -> tf.Tensor:
    """Selvaraju et al.: guided backprop (largest absolute colour channel) times the GradCAM
    map upsampled to the input, a class-discriminative map at pixel resolution."""
    from cnnviz_cli.techniques.backprop import class_gradients

    explainer = cam_pass.explainer
    gradients = class_gradients(explainer.model, cam_pass.inputs, cam_pass.selection,
                                explainer.head, "guided", explainer.output_index)
    activations = cam_pass.activations
    weighted = weigh(gradcam_weights(activations, cam_pass.gradients), activations)
    heat = cam_pass.combine(weighted)[..., None]
    upsampled = tf.image.resize(heat, tf.shape(gradients)[1:3], method="bilinear")[..., 0]
    return tf.reduce_max(tf.abs(gradients), axis=-1) * upsampled
