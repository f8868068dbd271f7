"""CAM variants of pytorch-grad-cam and its forks: EigenGradCAM, AblationCAM, KPCA-CAM and
Finer-CAM, one rule each."""

from __future__ import annotations

from functools import cache

import numpy as np

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.lazy import tf
from cnnviz_cli.options import Option
from cnnviz_cli.techniques.cam import CamPass, layer_rule, method, weigh
from cnnviz_cli.techniques.methods.cams import gradcam_weights
from cnnviz_cli.techniques.methods.modifiers import first_component, oriented


@layer_rule("eigengradcam")
def _eigengradcam(activations, gradients):
    """EigenCAM of the activations times the gradients: class-discriminative, less noisy."""
    return first_component(activations * gradients)


def _ablated(activations, sources, item, copy, copies):
    """AblationCAM copies: channel `copy` of the item's activations zeroed (the last: none)."""
    del sources
    keep = 1.0 - tf.one_hot(copy, copies - 1)
    return tf.gather(activations, item) * keep[:, None, None, :]


@method("ablationcam", weighted=True)
def _ablationcam(cam_pass: CamPass) -> tf.Tensor:
    """Desai & Ramaswamy: channel weight = the drop of the score with the channel zeroed, over
    the score (its size: a drop is evidence for a negative score too)."""
    activations = cam_pass.activations
    scores = cam_pass.explainer.replaced_scores(
        _ablated, cam_pass.inputs, activations, cam_pass.selection, (),
        int(activations.shape[-1]) + 1, cam_pass.options.batch_size)
    full = scores[:, -1:]
    return cam_pass.combine(weigh(tf.math.divide_no_nan(full - scores[:, :-1], tf.abs(full)),
                                  activations))


KERNELS = {  # of the products and squared distances of positions' activation vectors
    "sigmoid": lambda products, distances, gamma: tf.tanh(gamma * products + 1.0),
    "rbf": lambda products, distances, gamma: tf.exp(-gamma * distances),
    "poly": lambda products, distances, gamma: (gamma * products + 1.0) ** 3,
}
KPCA_KERNEL = Option("kpca_kernel", "sigmoid", "Kernel between positions' activation vectors "
                     "x, y: tanh(gamma x.y + 1), exp(-gamma |x - y|^2) or (gamma x.y + 1)^3.",
                     tuple(KERNELS))
KPCA_GAMMA = Option("kpca_gamma", None, "The kernel's gamma [default: 1 / channels].", float,
                    low=0, open_low=True, show_default=False)


def kernel_pca(activations: tf.Tensor, kernel: str, gamma: tf.Tensor) -> tf.Tensor:
    """Maps (items, h, w): the first kernel principal component of the positions' activation
    vectors (centred), as scikit-learn's KernelPCA gives it, oriented (see `oriented`)."""
    shape = tf.shape(activations)
    flat = tf.reshape(activations, [shape[0], shape[1] * shape[2], shape[3]])
    centred = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
    products = tf.linalg.matmul(centred, centred, transpose_b=True)
    norms = tf.linalg.diag_part(products)
    matrix = KERNELS[kernel](products, norms[:, :, None] + norms[:, None, :] - 2 * products,
                             gamma)
    matrix += (tf.reduce_mean(matrix, axis=[1, 2], keepdims=True)  # centred in feature space
               - tf.reduce_mean(matrix, axis=1, keepdims=True)
               - tf.reduce_mean(matrix, axis=2, keepdims=True))
    values, vectors = tf.linalg.eigh(matrix)
    return oriented(vectors[:, :, -1] * tf.sqrt(tf.nn.relu(values[:, -1:])), flat, shape[:3])


@method("kpcacam", options=[KPCA_KERNEL, KPCA_GAMMA])
def _kpcacam(cam_pass: CamPass) -> tf.Tensor:
    """Karmani et al.: EigenCAM with kernel PCA (class independent)."""
    options, activations = cam_pass.options, cam_pass.activations
    gamma = options.kpca_gamma or 1 / int(activations.shape[-1])
    return _compiled_kernel_pca()(activations, options.kpca_kernel,
                                  tf.constant(gamma, tf.float32))


@cache
def _compiled_kernel_pca():
    return tf.function(kernel_pca, reduce_retracing=True)


FINER_ALPHA = Option("finer_alpha", 1.0, "How much of the similar classes' score is "
                     "subtracted from the class's.", float, low=0)
FINER_CLASSES = Option("finer_classes", 3, "Similar classes compared: those of closest score.",
                       int, low=1)


def _contrast(head, outputs, selection, arguments) -> tf.Tensor:
    """The class score minus alpha times the mean score of the `count` classes of closest
    score, weighted by their softmax (held constant)."""
    (classes, regions), (alpha, count) = selection, arguments
    scores = head.all_scores(outputs, regions)
    own = tf.gather(scores, classes, batch_dims=1)
    distances = tf.abs(scores - own[:, None])
    distances = tf.where(tf.one_hot(classes, tf.shape(scores)[1]) > 0, np.inf, distances)
    similar = tf.gather(scores, tf.math.top_k(-distances, count).indices, batch_dims=1)
    weights = tf.stop_gradient(tf.nn.softmax(similar))
    return own - alpha * tf.reduce_sum(weights * similar, axis=1)


@method("finercam", options=[FINER_ALPHA, FINER_CLASSES], weighted=True)
def _finercam(cam_pass: CamPass) -> tf.Tensor:
    """Zhang et al. 2025: GradCAM of the class's score minus its most similar classes', for
    the details that tell them apart."""
    explainer, options = cam_pass.explainer, cam_pass.options
    if explainer.num_classes < 2:
        raise CnnvizError("finercam compares the class with other classes, and this output "
                          "has one; choose another --method.")
    count = min(options.finer_classes, explainer.num_classes - 1)
    activations, gradients = explainer.layer_gradients(
        _contrast, cam_pass.inputs, cam_pass.selection, (float(options.finer_alpha), count))
    return cam_pass.combine(weigh(gradcam_weights(activations, gradients), activations))
