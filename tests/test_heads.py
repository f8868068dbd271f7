"""Every kind of head, on hand-set models whose answers are known: binary and multi-label
sigmoids, regression up and down, per-pixel segmentation, embeddings and token feature maps."""

import numpy as np
import pytest

import cnnviz_cli

SIZE = 8


def colour_image(red=(slice(0, 4), slice(0, 4)), blue=(slice(5, 7), slice(5, 7))):
    """uint8 8x8 black image with a red and a blue patch (either may be None)."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    if red is not None:
        image[red[0], red[1], 0] = 255
    if blue is not None:
        image[blue[0], blue[1], 2] = 255
    return image


def evidence_model(keras, head, scale: float = 1 / 255):
    """Conv 'conv' (1x1, ReLU): channel 0 = red, channel 1 = blue evidence -> GAP -> head.

    The head's weights are set by the caller after building."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(2, 1, activation="relu", name="conv")(inputs)
    outputs = head(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, 0, 0] = kernel[0, 0, 2, 1] = scale
    model.get_layer("conv").set_weights([kernel, np.zeros(2, np.float32)])
    return model


def set_dense(layer, weights, bias):
    layer.set_weights([np.asarray(weights, np.float32), np.asarray(bias, np.float32)])


def peak(heat: np.ndarray) -> tuple[int, int]:
    return tuple(int(i) for i in np.unravel_index(np.argmax(heat), heat.shape))


RED, BLUE = (1, 1), (5, 5)  # a pixel of each patch


def on_red(heat):
    return heat[:4, :4].sum() > 0 and heat[5:7, 5:7].sum() == 0


def on_blue(heat):
    return heat[5:7, 5:7].sum() > 0 and heat[:4, :4].sum() == 0


@pytest.fixture(scope="module")
def binary_model(keras):
    """logit = 4 * (mean red - mean blue): a one-unit sigmoid binary classifier."""
    dense = keras.layers.Dense(1, activation="sigmoid", name="binary")
    model = evidence_model(keras, dense)
    set_dense(dense, [[4.0], [-4.0]], [0.0])
    return model


def test_binary_head_explains_both_classes(binary_model):
    image = colour_image()
    result = cnnviz_cli.cam(binary_model, image, classes=["negative", "positive"],
                            labels=["negative", "positive"], methods=["gradcam"])
    logit = 4 * (16 - 4) / 64
    assert result.classes == [0, 1] and result.labels == ["negative", "positive"]
    np.testing.assert_allclose(result.scores, [-logit, logit], rtol=1e-5)
    p = 1 / (1 + np.exp(-logit))
    np.testing.assert_allclose(result.probabilities, [1 - p, p], rtol=1e-5)
    negative, positive = (maps["gradcam"] for maps in result.maps)
    assert on_red(positive) and on_blue(negative)
    assert {item.record["task"] for item in result.items} == {"binary"}
    assert result.metrics["head"]["task"] == "binary"


def test_binary_default_target_is_the_predicted_class(binary_model):
    blue_wins = colour_image(red=(slice(0, 1), slice(0, 1)))  # 1 red pixel, 4 blue
    result = cnnviz_cli.cam(binary_model, [colour_image(), blue_wins])
    assert result.classes == [1, 0]
    assert all(score > 0 for score in result.scores)  # the predicted class's score is positive


@pytest.fixture(scope="module")
def multilabel_model(keras):
    """Two sigmoid labels: red present (logit 8 * mean red - 1), blue present (likewise)."""
    dense = keras.layers.Dense(2, activation="sigmoid", name="labels")
    model = evidence_model(keras, dense)
    set_dense(dense, [[8.0, 0.0], [0.0, 8.0]], [-1.0, -1.0])
    return model


def test_multilabel_threshold_explains_every_present_label(multilabel_model):
    both, red_only = colour_image(), colour_image(blue=None)
    # probabilities: both: red sigmoid(1) = 0.73, blue sigmoid(-0.5) = 0.38; red only: 0.73, 0.27
    result = cnnviz_cli.cam(multilabel_model, [both, red_only], threshold=0.3)
    assert result.classes == [0, 1, 0]
    names = [item.image.name for item in result.items]
    assert names[0] == names[1] != names[2]
    red_map, blue_map, red_again = (maps["gradcam"] for maps in result.maps)
    assert on_red(red_map) and on_blue(blue_map) and on_red(red_again)
    logits = np.array([8 * 16 / 64 - 1, 8 * 4 / 64 - 1])
    np.testing.assert_allclose(result.probabilities[:2], 1 / (1 + np.exp(-logits)), rtol=1e-5)
    assert cnnviz_cli.cam(multilabel_model, red_only, threshold=0.9).items == []


def test_regression_up_and_down_explain_opposite_patches(keras):
    dense = keras.layers.Dense(1, name="value")
    model = evidence_model(keras, dense)
    set_dense(dense, [[3.0], [-3.0]], [0.5])
    value = 3 * (16 - 4) / 64 + 0.5
    up = cnnviz_cli.cam(model, colour_image(), methods=["gradcam"])
    down = cnnviz_cli.cam(model, colour_image(), methods=["gradcam"], direction="down")
    assert up.items[0].record["task"] == "regress"
    np.testing.assert_allclose([up.scores[0], down.scores[0]], [value, -value], rtol=1e-5)
    assert up.probabilities == [None] and up.items[0].record["score_kind"] == "value"
    assert on_red(up.maps[0]["gradcam"]) and on_blue(down.maps[0]["gradcam"])


@pytest.fixture(scope="module")
def segmentation_model(keras):
    """Per pixel: class 1 logit = red, class 2 = blue, class 0 (background) = 0.5 (x in [0, 1])."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(2, 1, activation="relu", name="evidence")(inputs)
    outputs = keras.layers.Conv2D(3, 1, activation="softmax", name="segments")(x)
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, 0, 0] = kernel[0, 0, 2, 1] = 1 / 255
    model.get_layer("evidence").set_weights([kernel, np.zeros(2, np.float32)])
    classes = np.zeros((1, 1, 2, 3), np.float32)
    classes[0, 0, 0, 1] = classes[0, 0, 1, 2] = 1.0
    model.get_layer("segments").set_weights([classes, np.array([0.5, 0, 0], np.float32)])
    return model


def test_segmentation_explains_the_pixels_of_a_class(segmentation_model, tmp_path):
    image = colour_image()
    result = cnnviz_cli.cam(segmentation_model, image, classes=[1, 2], layer="evidence",
                            methods=["gradcam", "hirescam"])
    assert {item.record["task"] for item in result.items} == {"segment"}
    np.testing.assert_allclose(result.scores, [16.0, 4.0], rtol=1e-5)  # logit 1 on 16 / 4 px
    red, blue = result.maps
    for method in ("gradcam", "hirescam"):
        assert on_red(red[method]) and on_blue(blue[method])
    inside = np.exp(1) / (np.exp(1) + np.exp(0.5) + 1)  # softmax of a red pixel's class 1
    np.testing.assert_allclose(result.probabilities[0], inside, rtol=1e-5)

    targets = tmp_path / "targets.csv"  # a box over the top-left 2x2 of the red patch
    targets.write_text(f"{tmp_path / 'red.png'},1,0,0,2,2\n")
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "red.png")
    boxed = cnnviz_cli.cam(segmentation_model, tmp_path / "red.png", targets=targets,
                           layer="evidence", methods=["hirescam"])
    np.testing.assert_allclose(boxed.scores, [4.0], rtol=1e-5)
    heat = boxed.maps[0]["hirescam"]
    assert heat[:2, :2].min() > 0 and heat.sum() == pytest.approx(heat[:2, :2].sum())
    assert boxed.items[0].fields["hirescam"]["pointing_hit"]


def test_token_layers_are_feature_maps_with_the_convolutions_gradcam(keras):
    from cnnviz_cli.models.layers import find_feature_map, last_feature_map

    inputs = keras.Input((SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    tokens = keras.layers.Reshape((SIZE * SIZE, 4), name="tokens")(conv)
    summary = keras.layers.Reshape((1, 4))(keras.layers.GlobalAveragePooling1D()(tokens))
    with_class = keras.layers.Concatenate(axis=1, name="with_class")([summary, tokens])
    mixed = keras.layers.Dense(4, activation="relu", name="mixer")(with_class)
    pooled = keras.layers.GlobalAveragePooling1D()(mixed)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    assert last_feature_map(model).path == "mixer"  # the last token layer: no later conv
    assert find_feature_map(model, "with_class").is_feature_map  # 1 class token + 8 x 8
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    by_conv, by_tokens = (cnnviz_cli.cam(model, image, layer=layer, classes=[2])
                          for layer in ("conv", "tokens"))
    np.testing.assert_allclose(by_tokens.maps[0]["gradcam"], by_conv.maps[0]["gradcam"],
                               rtol=1e-5, atol=1e-6)
    assert cnnviz_cli.cam(model, image, layer="mixer").maps[0]["gradcam"].shape == (SIZE, SIZE)
    maps = cnnviz_cli.activations(model, image, layers=["conv", "with_class"]).maps[0]
    np.testing.assert_allclose(maps["with_class"], maps["conv"], rtol=1e-6)  # class token gone


def test_layers_marks_token_layers(run_cli, tmp_path, keras):
    import json

    inputs = keras.Input((SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(4, 2, strides=2, name="patches")(inputs)
    tokens = keras.layers.Reshape((16, 4), name="tokens")(conv)
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(4, name="block")(tokens))
    keras.Model(inputs, keras.layers.Dense(2)(pooled)).save(tmp_path / "vit.keras")
    rows = json.loads(run_cli("layers", tmp_path / "vit.keras", "--json").output)["layers"]
    marked = {row["name"]: (row["feature_map"], row["tokens"]) for row in rows}
    assert marked["patches"] == (True, False) and marked["block"] == (True, True)
    assert not any(marked[name][0] for name in marked if name not in ("patches", "tokens",
                                                                        "block"))


def test_maximize_both_classes_of_a_binary_head(binary_model):
    result = cnnviz_cli.maximize(binary_model, classes=[0, 1], steps=24, size=SIZE,
                                 transforms="none", param="pixel", lr=0.2)
    negative, positive = result.images  # class 0 is the negated logit: blue against red
    assert negative[..., 2].mean() > negative[..., 0].mean()
    assert positive[..., 0].mean() > positive[..., 2].mean()
    assert result.scores[0] > result.noise_scores[0] and result.scores[1] > result.noise_scores[1]


def test_the_api_refuses_a_threshold_outside_0_1(multilabel_model):
    from cnnviz_cli.errors import CnnvizError

    with pytest.raises(CnnvizError, match="--threshold 1.0 is out of range: it must be > 0"):
        cnnviz_cli.cam(multilabel_model, colour_image(), threshold=1.0)


def test_embedding_explains_the_similarity_to_the_references(keras):
    dense = keras.layers.Dense(2, name="embedding")
    model = evidence_model(keras, dense)
    set_dense(dense, np.eye(2), [0.0, 0.0])
    reference = colour_image(blue=None)  # embedding (16/64, 0): pure red
    result = cnnviz_cli.cam(model, colour_image(), task="embed", reference=[reference])
    embedding = np.array([16, 4]) / 64
    np.testing.assert_allclose(result.scores, [embedding[0] / np.linalg.norm(embedding)],
                               rtol=1e-5)
    assert on_red(result.maps[0]["gradcam"])


def test_deletion_insertion_of_a_sigmoid_head_match_numpy(keras):
    """A linear 1x1 conv -> GAP -> Dense(1, sigmoid): every curve point computed by hand."""
    from cnnviz_cli.techniques.cam import CamExplainer
    from cnnviz_cli.techniques.metrics import deletion_insertion

    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(1, 1, name="conv")(inputs)
    x = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, x)
    kernel, bias, weight, dense_bias = (np.float64(v) for v in ([[[[0.5], [-1.0], [2.0]]]],
                                                                [0.1], [[1.5]], [-0.2]))
    model.set_weights([np.float32(v) for v in (kernel, bias, weight, dense_bias)])
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    maps = rng.random((2, 4, 4)).astype("float32")
    steps, classes = 4, np.array([1, 0])
    curves = deletion_insertion(CamExplainer(model, "conv", (4, 4, 3)), x, classes, maps, steps)

    def probability(images, positive):
        logit = ((images @ kernel[0, 0])[..., 0] + bias[0]).mean(axis=(1, 2)) * 1.5 - 0.2
        p = 1 / (1 + np.exp(-logit))
        return np.where(positive, p, 1 - p)

    order = np.argsort(np.argsort(-maps.reshape(2, -1), axis=1, kind="stable"), axis=1)
    deletion, insertion = [], []
    for stage in range(steps + 1):
        hot = (order < round(stage * 16 / steps)).reshape(2, 4, 4, 1)
        deletion.append(probability(x * ~hot, classes == 1))
        insertion.append(probability(x * hot, classes == 1))
    np.testing.assert_allclose(curves.deletion, np.array(deletion).T, rtol=1e-5)
    np.testing.assert_allclose(curves.insertion, np.array(insertion).T, rtol=1e-5)
    assert not np.allclose(curves.deletion_auc, 1.0) and not np.allclose(curves.insertion_auc, 1)
    assert not np.allclose(curves.deletion_auc, curves.insertion_auc)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, binary_model, keras):
    folder = tmp_path_factory.mktemp("heads")
    binary_model.save(folder / "binary.keras")
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(colour_image()).save(folder / "image.png")
    return folder


@pytest.mark.parametrize("options, message", [
    (["--threshold", "1.5"], "1.5 is not in the range 0<x<1"),
    (["--threshold", "0.5"], "--threshold applies only to a multi-label head"),
    (["--direction", "down"], "--direction applies only to a regression head"),
    (["--reference", "IMAGE"], "--reference IMAGE goes with --task embed"),
    (["--task", "embed"], "--task embed needs it"),
    (["--class", "2"], "Class index 2 is out of range: the model has 2 classes"),
    (["--task", "segment"], "--task segment needs an output of shape (batch, height, width"),
])
def test_bad_head_options_exit_2_and_write_nothing(run_cli, model_files, options, message):
    image = model_files / "image.png"
    out = model_files / "out"
    options = [str(image) if word == "IMAGE" else word for word in options]
    result = run_cli("cam", image, "-m", model_files / "binary.keras", *options, "-o", out,
                     expect=2)
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists() or not any(out.rglob("*.png"))
