"""CAM methods against NumPy references of the papers' formulas; targets, heads' scores and
probabilities; GradCAM's pointing game on the demo model."""

import numpy as np
import pytest

from cnnviz_cli.techniques.cam import (
    CamExplainer,
    CamOptions,
    Targets,
    methods,
    resolve_methods,
)
from cnnviz_cli.techniques.metrics import pointing_game

SIZE, CHANNELS, FILTERS, CLASSES = 6, 3, 4, 3
CAM_METHODS = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam",
               "guided-gradcam", "scorecam", "faster-scorecam"]  # written from their papers below


# ---------- a tiny model with known weights and its NumPy forward pass ----------


def with_random_weights(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([0.4 * rng.normal(size=w.shape).astype("float32") for w in model.weights])
    return model


def conv_relu(x, kernel, bias):
    """'same' cross-correlation + bias + ReLU, batch first."""
    half = kernel.shape[0] // 2
    padded = np.pad(x, ((0, 0), (half, half), (half, half), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[:2], axis=(1, 2))
    return np.maximum(np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias, 0.0)


def reference_pass(model, x):
    """Activations A, logits and the dense weights of the flat model, in float64."""
    kernel, bias, weights, dense_bias = (np.float64(w) for w in model.get_weights())
    activations = conv_relu(np.float64(x), kernel, bias)
    logits = activations.reshape(len(x), -1) @ weights + dense_bias
    return activations, logits, weights


def references(model, x, classes, max_channels):
    """Every method written from its paper, for image n explaining classes[n]."""
    activations, logits, weights = reference_pass(model, x)
    kernel = np.float64(model.get_weights()[0])
    maps = {name: [] for name in CAM_METHODS}
    for n, c in enumerate(classes):
        a = activations[n]  # (h, w, k)
        g = weights[:, c].reshape(a.shape)  # d logit_c / d A: the dense weights of class c
        maps["gradcam"].append(np.einsum("k,hwk->hw", g.mean(axis=(0, 1)), a))
        # GradCAM++ for the score Y = exp(logit): dY/dA = e g, d2Y = e g^2, d3Y = e g^3.
        e = np.exp(logits[n, c])
        alpha = e * g**2 / np.where(
            (den := 2 * e * g**2 + a.sum(axis=(0, 1)) * e * g**3) != 0, den, np.inf
        )
        plus_weights = (alpha * np.maximum(e * g, 0)).sum(axis=(0, 1))
        maps["gradcam++"].append(np.einsum("k,hwk->hw", plus_weights, a) / e)
        normalised = a / np.where(a.sum(axis=(0, 1)) > 0, a.sum(axis=(0, 1)), np.inf)
        maps["xgradcam"].append(np.einsum("k,hwk->hw", (normalised * g).sum(axis=(0, 1)), a))
        maps["layercam"].append((np.maximum(g, 0) * a).sum(axis=-1))
        maps["hirescam"].append((g * a).sum(axis=-1))
        # Guided GradCAM: the logit guided-backpropagated to the pixels (pass where A > 0 and
        # the gradient > 0; the 'same' conv keeps the size, so GradCAM needs no upsampling).
        guided = np.where(a > 0, np.maximum(g, 0), 0.0)
        back = np.zeros((SIZE + 2, SIZE + 2, CHANNELS))
        for i, j in np.ndindex(3, 3):
            back[i:i + SIZE, j:j + SIZE] += guided @ kernel[i, j].T
        saliency = np.abs(back[1:-1, 1:-1]).max(axis=-1)
        maps["guided-gradcam"].append(saliency * np.maximum(maps["gradcam"][-1], 0))
        flat = a.reshape(-1, a.shape[-1])
        projection = flat @ np.linalg.svd(flat)[2][0]
        maps["eigencam"].append((projection * np.sign(projection.sum())).reshape(a.shape[:2]))
        for name, channels in (("scorecam", np.arange(a.shape[-1])),
                               ("faster-scorecam", np.argsort(-a.var(axis=(0, 1)))[:max_channels])):
            span = a.max(axis=(0, 1)) - a.min(axis=(0, 1))
            masks = (a - a.min(axis=(0, 1))) / np.where(span > 0, span, np.inf)
            masked = np.stack([x[n] * masks[..., k, None] for k in channels])
            scores = reference_pass(model, masked)[1][:, c]
            softmax = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
            maps[name].append(np.einsum("k,hwk->hw", softmax, a[..., channels]))
    return {name: np.maximum(np.stack(values), 0) for name, values in maps.items()}, logits


def test_every_method_matches_its_numpy_reference(flat_model):
    x = np.random.default_rng(4).normal(size=(3, SIZE, SIZE, CHANNELS)).astype("float32")
    classes = (2, 0)
    explainer = CamExplainer(flat_model, "conv", (SIZE, SIZE, CHANNELS))
    result = explainer(x, Targets(classes), CAM_METHODS, CamOptions(max_n=2, batch_size=5))
    np.testing.assert_array_equal(result.image_indices, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(result.classes, classes * 3)
    expected, logits = references(flat_model, x[result.image_indices], result.classes, 2)
    np.testing.assert_allclose(result.scores, logits[np.arange(6), result.classes], rtol=1e-5)
    assert set(result.maps) == set(CAM_METHODS)
    for name, maps in result.maps.items():
        scale = np.abs(expected[name]).max()
        np.testing.assert_allclose(maps, expected[name], atol=2e-5 * scale, err_msg=name)
        assert expected[name].max() > 0, name  # the reference is not trivially zero


def test_default_target_is_top_prediction_and_top_k_ranks(flat_model):
    x = np.random.default_rng(5).normal(size=(2, SIZE, SIZE, CHANNELS)).astype("float32")
    explainer = CamExplainer(flat_model, "conv", (SIZE, SIZE, CHANNELS))
    logits = reference_pass(flat_model, x)[1]
    np.testing.assert_array_equal(explainer(x).classes, logits.argmax(axis=1))
    top = explainer(x, Targets(top_k=3))
    np.testing.assert_array_equal(top.classes.reshape(2, 3), np.argsort(-logits, axis=1))
    # A given class that is also the top prediction is explained once.
    both = explainer(x[:1], Targets((int(logits[0].argmax()),), top_k=2))
    np.testing.assert_array_equal(both.classes, np.argsort(-logits[0])[:2])
    own = explainer(x, Targets((1,), per_image=(2, 0)))
    np.testing.assert_array_equal(own.classes, [2, 1, 0, 1])
    np.testing.assert_array_equal(own.image_indices, [0, 0, 1, 1])
    for batch in (x, x[:1], x):
        explainer(batch, Targets(top_k=2), ["gradcam", "layercam"])
    assert explainer.core.experimental_get_tracing_count() == 1


def test_nested_backbone_explains_pre_softmax_logit(nested_model):
    """Sequential head over a functional backbone: auto finds backbone/conv2; GAP gradients."""
    from cnnviz_cli.models.layers import last_feature_map

    layer = last_feature_map(nested_model)
    assert layer.path == "backbone/conv2"
    x = np.random.default_rng(6).normal(size=(2, 16, 16, 3)).astype("float32")
    result = CamExplainer(nested_model, layer.path, (16, 16, 3))(x, Targets((4, 1)))
    k1, b1, k2, b2, weights, bias = nested_model.get_weights()
    pooled = conv_relu(x, k1, b1).reshape(2, 8, 2, 8, 2, -1).max(axis=(2, 4))
    activations = conv_relu(pooled, k2, b2)
    logits = activations.mean(axis=(1, 2)) @ weights + bias
    np.testing.assert_allclose(result.scores, logits[[0, 0, 1, 1], [4, 1, 4, 1]], rtol=1e-4)
    expected = np.maximum(
        np.einsum("nhwk,kn->nhw", activations[[0, 0, 1, 1]], weights[:, [4, 1, 4, 1]] / 64), 0
    )
    np.testing.assert_allclose(result.maps["gradcam"], expected, atol=1e-5 * expected.max())


def test_chosen_output_of_a_two_headed_model(keras):
    inputs = keras.Input((SIZE, SIZE, CHANNELS))
    x = keras.layers.Conv2D(FILTERS, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    heads = [keras.layers.Dense(n, activation="softmax", name=name)(x) for name, n in
             (("shape", 3), ("colour", 4))]
    model = with_random_weights(keras.Model(inputs, heads), seed=8)
    x = np.random.default_rng(8).normal(size=(2, SIZE, SIZE, CHANNELS)).astype("float32")
    kernel, bias, weights, dense_bias = model.get_weights()[:4]
    activations = conv_relu(x, kernel, bias)
    logits = activations.reshape(2, -1) @ weights + dense_bias  # the shape head, pre-softmax
    for spec in ("shape", "0", "-2"):  # not the model's last layer: its softmax goes too
        result = CamExplainer(model, "conv", (SIZE, SIZE, CHANNELS), spec)(x, Targets((2,)))
        np.testing.assert_allclose(result.scores, logits[:, 2], rtol=1e-5)
        gradients = weights[:, 2].reshape(SIZE, SIZE, FILTERS).mean(axis=(0, 1))
        expected = np.maximum(np.einsum("nhwk,k->nhw", activations, gradients), 0)
        np.testing.assert_allclose(result.maps["gradcam"], expected, atol=1e-5 * expected.max())


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def test_probability_is_the_softmax_of_all_logits_of_the_output(flat_model, keras):
    x = np.random.default_rng(9).normal(size=(2, SIZE, SIZE, CHANNELS)).astype("float32")
    result = CamExplainer(flat_model, "conv", (SIZE, SIZE, CHANNELS))(x, Targets(top_k=2))
    expected = softmax(reference_pass(flat_model, x)[1])[result.image_indices, result.classes]
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5)
    assert result.score_kind == "logit"
    assert result.score_fields(0) == {"score": pytest.approx(float(result.scores[0])),
                                      "probability": pytest.approx(float(expected[0])),
                                      "score_kind": "logit"}

    inputs = keras.Input((SIZE, SIZE, CHANNELS))
    features = keras.layers.Flatten()(
        keras.layers.Conv2D(FILTERS, 3, padding="same", activation="relu", name="conv")(inputs))
    heads = [keras.layers.Dense(3, activation="softmax", name="shape")(features),
             keras.layers.Dense(4, activation="softmax", name="colour")(features)]
    model = with_random_weights(keras.Model(inputs, heads), seed=10)
    kernel, bias, _, _, weights, dense_bias = model.get_weights()
    colour = conv_relu(x, kernel, bias).reshape(2, -1) @ weights + dense_bias
    result = CamExplainer(model, "conv", (SIZE, SIZE, CHANNELS), "colour")(x, Targets((3,)))
    np.testing.assert_allclose(result.probabilities, softmax(colour)[:, 3], rtol=1e-5)


@pytest.mark.parametrize("activation, kind", [("sigmoid", "logit"), (None, "score")])
def test_sigmoid_head_gives_its_sigmoid_and_linear_head_no_probability(keras, activation, kind):
    """The score is pre-activation either way (a final sigmoid is left out)."""
    inputs = keras.Input((SIZE, SIZE, CHANNELS))
    x = keras.layers.Conv2D(FILTERS, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Dense(CLASSES, name="logits")(keras.layers.Flatten()(x))
    if activation:
        x = keras.layers.Activation(activation)(x)
    model = with_random_weights(keras.Model(inputs, x), seed=11)
    x = np.random.default_rng(11).normal(size=(2, SIZE, SIZE, CHANNELS)).astype("float32")
    result = CamExplainer(model, "conv", (SIZE, SIZE, CHANNELS))(x, Targets((1,)))
    logits = reference_pass(model, x)[1][:, 1]
    assert result.score_kind == kind
    np.testing.assert_allclose(result.scores, logits, rtol=1e-5)
    if activation:
        np.testing.assert_allclose(result.probabilities, 1 / (1 + np.exp(-logits)), rtol=1e-5)
    else:
        assert result.probabilities is None and result.score_fields(0)["probability"] is None

def test_method_names_and_target_errors(flat_model):
    from cnnviz_cli.errors import CnnvizError

    assert resolve_methods([]) == ["gradcam"]
    assert resolve_methods(["layercam, gradcam", "gradcam"]) == ["layercam", "gradcam"]
    assert resolve_methods(["all"]) == list(methods())
    for bad in (lambda: resolve_methods(["gradcan"]), lambda: Targets((3,)).items(1, 3),
                lambda: Targets(top_k=4).items(1, 3),
                lambda: Targets(per_image=(0, 5)).items(2, 3)):
        with pytest.raises(CnnvizError):
            bad()


def test_the_methods_come_in_one_order_whichever_module_is_imported_first():
    """--help, `all` and the refusals list the methods in the order of METHOD_MODULES, also
    when a caller imported one of their modules first (a fresh interpreter per module)."""
    import subprocess
    import sys

    from cnnviz_cli.techniques.cam import METHOD_MODULES

    listing = "from cnnviz_cli.techniques.cam import methods; print(' '.join(methods()))"
    orders = {subprocess.run([sys.executable, "-c", f"import {module}; {listing}"],
                             capture_output=True, text=True, check=True).stdout
              for module in METHOD_MODULES[::-1]}
    assert orders == {" ".join(methods()) + "\n"}
    assert list(methods())[:2] == ["gradcam", "gradcam++"]


@pytest.mark.slow  # 200 images
def test_gradcam_points_at_the_explained_shape(demo_resolved):
    """Pointing game on 200 generated two-shape images: each shape's class, its own heatmap."""
    from cnnviz_cli.demo.shapes import make_pairs
    from cnnviz_cli.models.layers import last_feature_map

    images, labels, masks = make_pairs(200, 128, seed=11)
    model = demo_resolved.model
    explainer = CamExplainer(model, last_feature_map(model).path, (128, 128, 3))
    inputs = demo_resolved.prepare(images)
    hits = []
    for start in range(0, 200, 50):
        part = slice(start, start + 50)
        for shape in (0, 1):
            result = explainer(inputs[part], Targets(per_image=tuple(labels[part, shape])))
            hits += list(pointing_game(result.maps["gradcam"], masks[part, shape]))
    assert len(hits) == 400 and np.mean(hits) >= 0.9, np.mean(hits)


# ---------- faithfulness metrics on a model whose answer is known ----------


# ---------- the command ----------


def test_per_image_class_none_keeps_the_default_target():
    images, codes = Targets(classes=(2,), per_image=(1, None)).items(2, 3)
    assert images.tolist() == [0, 0, 1] and codes.tolist() == [1, 2, 2]
    images, codes = Targets(per_image=(None, 0)).items(2, 3)
    assert images.tolist() == [0, 1] and codes.tolist() == [-1, 0]
    images, codes = Targets(per_image=((0, 2), (), (None, 1))).items(3, 3)  # several rows
    assert images.tolist() == [0, 0, 2, 2] and codes.tolist() == [0, 2, 1, -1]

