"""The layer `-l auto` picks for every command, on every registry model and on a residual sum."""

import json

import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.models.registry import APPLICATIONS

COMMANDS = ("cam", "maximize", "dream", "activations", "reconstruct", "filters")

# cam's layer (maximize's too), written from each architecture: the last block's output before
# global pooling. Keras names some layers by a counter (activation_17, add_50) that depends on
# what was built before, so those are given as (type, height, width, channels).
CAM = {
    # Selvaraju et al. explain VGG at the last convolution, 14x14, not block5_pool (7x7).
    "vgg16": "block5_conv3",
    "vgg19": "block5_conv4",
    "resnet50": "conv5_block3_out",
    "resnet101": "conv5_block3_out",
    "resnet152": "conv5_block3_out",
    "resnet50v2": "post_relu",
    "resnet101v2": "post_relu",
    "mobilenet": "conv_pw_13_relu",  # not conv_preds, the 1x1 classifier after pooling
    "mobilenet_v2": "out_relu",
    "mobilenet_v3_small": ("Activation", 7, 7, 576),  # hard-swish after conv_1, not logits
    "mobilenet_v3_large": ("Activation", 7, 7, 960),
    "efficientnetb0": "top_activation",
    "efficientnetb1": "top_activation",
    "efficientnetv2b0": "top_activation",
    "efficientnetv2s": "top_activation",
    "inceptionv3": "mixed10",
    "inception_resnet_v2": "conv_7b_ac",
    "xception": "block14_sepconv2_act",
    "densenet121": "relu",
    "densenet169": "relu",
    "nasnetmobile": ("Activation", 7, 7, 1056),
    "convnext_tiny": ("Add", 7, 7, 768),  # the last residual sum, see test_convnext_...
    "convnext_small": ("Add", 7, 7, 768),
}

# The first convolution: the stem, after any rescaling or normalisation layer.
FILTERS = {
    "vgg16": "block1_conv1", "vgg19": "block1_conv1", "resnet50": "conv1_conv",
    "resnet101": "conv1_conv", "resnet152": "conv1_conv", "resnet50v2": "conv1_conv",
    "resnet101v2": "conv1_conv", "mobilenet": "conv1", "mobilenet_v2": "Conv1",
    "mobilenet_v3_small": "conv", "mobilenet_v3_large": "conv", "efficientnetb0": "stem_conv",
    "efficientnetb1": "stem_conv", "efficientnetv2b0": "stem_conv", "efficientnetv2s": "stem_conv",
    "inceptionv3": ("Conv2D", 149, 149, 32), "inception_resnet_v2": ("Conv2D", 149, 149, 32),
    "xception": "block1_conv1", "densenet121": "conv1_conv", "densenet169": "conv1_conv",
    "nasnetmobile": "stem_conv1", "convnext_tiny": "convnext_tiny_stem/convnext_tiny_stem_conv",
    "convnext_small": "convnext_small_stem/convnext_small_stem_conv",
}

# Four stage outputs from shallow to deep (VGG: the last convolution of blocks 1, 2, 4 and 5;
# ResNet: conv1 and the ends of stages 2, 4 and 5); reconstruct takes their convolutions.
SPREAD = {
    "vgg16": {"activations": ["block1_conv2", "block2_conv2", "block4_conv3", "block5_conv3"],
              "reconstruct": ["block1_conv2", "block2_conv2", "block4_conv3", "block5_conv3"],
              "dream": ["block4_conv3"]},
    "resnet50": {"activations": ["conv1_relu", "conv2_block3_out", "conv4_block6_out",
                                 "conv5_block3_out"],
                 "reconstruct": ["conv1_conv", "conv2_block3_3_conv", "conv4_block6_3_conv",
                                 "conv5_block3_3_conv"],
                 "dream": ["conv4_block6_out"]},
    "mobilenet": {"activations": ["conv_pw_1_relu", "conv_pw_3_relu", "conv_pw_11_relu",
                                  "conv_pw_13_relu"],
                  "reconstruct": ["conv_pw_1", "conv_pw_3", "conv_pw_11", "conv_pw_13"],
                  "dream": ["conv_pw_11_relu"]},
    "efficientnetb0": {"activations": ["block2a_expand_activation", "block3a_expand_activation",
                                       "block6a_expand_activation", "top_activation"],
                       "dream": ["block6a_expand_activation"]},
}

NEVER = ("ZeroPadding2D", "Cropping2D", "Rescaling", "Normalization", "BatchNormalization",
         "LayerNormalization", "MaxPooling2D", "AveragePooling2D")


@pytest.fixture(scope="module")
def built(keras):
    """Each registry model built once (random weights), on demand."""
    models = {}

    def build(name):
        if name not in models:
            constructor = getattr(keras.applications, APPLICATIONS[name].constructor)
            models[name] = constructor(weights=None)
        return models[name]

    return build


def matches(info, expected) -> bool:
    if isinstance(expected, str):
        return info.path == expected
    kind, *shape = expected
    return type(info.layer).__name__ == kind and list(info.output_shape[1:]) == shape


@pytest.mark.slow  # builds all 23 models: about 40 s on one free core
@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_auto_layers_of_every_registry_model(built, name):
    from cnnviz_cli.models.layers import default_layers, feature_map_layers

    model = built(name)
    assert (None in model.inputs[0].shape[1:3]) == APPLICATIONS[name].any_size
    chosen = default_layers(model)
    assert set(chosen) == set(COMMANDS)
    describe = {command: [(info.path, type(info.layer).__name__, info.output_shape)
                          for info in infos] for command, infos in chosen.items()}
    assert matches(chosen["cam"][0], CAM[name]), describe
    assert chosen["maximize"] == chosen["cam"]
    assert matches(chosen["filters"][0], FILTERS[name]), describe
    for command, paths in SPREAD.get(name, {}).items():
        assert [info.path for info in chosen[command]] == paths, describe
    candidates = [info.path for info in feature_map_layers(model)]
    for command, infos in chosen.items():
        for info in infos:
            assert info.path in candidates
            assert all(side is None or side > 1 for side in info.output_shape[1:3]), describe
            if command != "filters":
                assert type(info.layer).__name__ not in NEVER, (command, describe)
    # Spread over the stages: four different resolutions, shallow to deep.
    for command in ("activations", "reconstruct"):
        sides = [info.output_shape[1] or 0 for info in chosen[command]]
        assert len(sides) == 4 and sides == sorted(set(sides), reverse=True), describe
        assert sides[-1] == chosen["cam"][0].output_shape[1]
    assert chosen["dream"][0].output_shape[1] > chosen["cam"][0].output_shape[1]
    assert chosen["filters"][0].layer is next(
        info.layer for info in feature_map_layers(model) if "Conv" in type(info.layer).__name__)


@pytest.mark.slow  # builds ConvNeXt
def test_convnext_explains_the_last_residual_sum(built):
    """The block's output is skip + branch, an operation Keras keeps out of model.layers."""
    from cnnviz_cli.models.layers import last_feature_map

    model = built("convnext_tiny")
    chosen = last_feature_map(model).layer
    sources = {tensor._keras_history.operation.name for tensor in chosen.input}
    assert "convnext_tiny_stage_3_block_2_identity" in sources
    assert chosen not in model.layers


def test_any_size_model_measured_at_the_given_size(built):
    """MobileNetV3 at 64 px ends at 2x2: the cam layer is that stage, never a 1x1 one."""
    from cnnviz_cli.models.layers import default_layers, feature_map_layers

    model = built("mobilenet_v3_small")
    at_224, at_64 = default_layers(model, (224, 224)), default_layers(model, (64, 64))
    assert at_224["cam"][0].path == at_64["cam"][0].path
    assert at_64["cam"][0].output_shape[1:3] == (2, 2)
    at_32 = default_layers(model, (32, 32))["cam"][0]
    assert at_32.output_shape[1:3] == (2, 2) and at_32.path != at_64["cam"][0].path
    assert all(info.output_shape[1] > 1 for info in feature_map_layers(model, (32, 32)))


# ---------- a hand-set model whose last block ends in x + y ----------

SIZE, CHANNELS, FILTERS_COUNT, CLASSES = 6, 3, 3, 2


@pytest.fixture(scope="module")
def residual_model(keras):
    """input 6x6x3 -> conv a (3, ReLU) -> conv b (3) -> a + b -> GAP -> Dense(2, softmax)."""
    inputs = keras.Input((SIZE, SIZE, CHANNELS))
    a = keras.layers.Conv2D(FILTERS_COUNT, 3, padding="same", activation="relu", name="a")(inputs)
    b = keras.layers.Conv2D(FILTERS_COUNT, 3, padding="same", name="b")(a)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(a + b)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(11)
    model.set_weights([0.5 * rng.normal(size=w.shape).astype("float32") for w in model.weights])
    return model


def correlate(x, kernel, bias):
    """'same' 3x3 cross-correlation + bias, batch first, float64."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias


def test_residual_sum_is_auto_and_gradcam_matches_numpy(residual_model):
    from cnnviz_cli.models.extract import build_extractor
    from cnnviz_cli.models.layers import default_layers, last_feature_map
    from cnnviz_cli.techniques.backprop import rule_model
    from cnnviz_cli.techniques.cam import CamExplainer, Targets

    info = last_feature_map(residual_model)
    assert type(info.layer).__name__ == "Add" and info.layer not in residual_model.layers
    picks = {command: [one.path for one in chosen]
             for command, chosen in default_layers(residual_model).items()}
    assert picks == {**dict.fromkeys(("cam", "maximize", "dream", "activations"), [info.path]),
                     "reconstruct": ["b"], "filters": ["a"]}
    x = np.random.default_rng(12).normal(size=(2, SIZE, SIZE, CHANNELS)).astype("float32")
    k1, b1, k2, b2, weights, bias = (np.float64(w) for w in residual_model.get_weights())
    a = np.maximum(correlate(np.float64(x), k1, b1), 0)
    summed = a + correlate(a, k2, b2)
    logits = summed.mean(axis=(1, 2)) @ weights + bias
    tap = build_extractor(residual_model, [info.path])(x)[0]
    np.testing.assert_allclose(tap, summed, rtol=1e-5, atol=1e-5)
    guided = rule_model(residual_model, "guided", [info.path])(x)
    np.testing.assert_allclose(guided[0], summed, rtol=1e-5, atol=1e-5)
    result = CamExplainer(residual_model, info.path, (SIZE, SIZE, CHANNELS))(x, Targets((0, 1)))
    images, classes = result.image_indices, result.classes
    np.testing.assert_allclose(result.scores, logits[images, classes], rtol=1e-5)
    alphas = weights[:, classes].T / (SIZE * SIZE)  # d logit / d sum, the same everywhere
    expected = np.maximum(np.einsum("nk,nhwk->nhw", alphas, summed[images]), 0)
    assert expected.max() > 0 and len(expected) == 4
    np.testing.assert_allclose(result.maps["gradcam"], expected, atol=1e-5 * expected.max())


def test_layers_lists_the_sum_and_marks_auto(run_cli, residual_model, tmp_path):
    path = tmp_path / "residual.keras"
    residual_model.save(path)
    rows = json.loads(run_cli("layers", path, "--json").output)["layers"]
    by_type = {row["type"]: row for row in rows}
    assert by_type["Add"]["feature_map"] and "cam" in by_type["Add"]["auto"]
    assert rows[0]["name"] == "a" and rows[0]["auto"] == ["filters"]
    assert not by_type["GlobalAveragePooling2D"]["feature_map"]


# ---------- a registry name against a file or folder of the same name ----------

def test_registry_name_wins_over_a_bare_folder_name(tmp_path, monkeypatch):
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mobilenet").mkdir()
    assert resolve_model(ModelRequest("mobilenet", weights="none")).source == "mobilenet"
    with pytest.raises(CnnvizError, match="is a folder but not a TensorFlow SavedModel"):
        resolve_model(ModelRequest("./mobilenet"))
    with pytest.raises(CnnvizError, match="vgg16.h5 does not exist"):
        resolve_model(ModelRequest("vgg16.h5"))
    (tmp_path / "mymodel").write_text("not a model")
    with pytest.raises(CnnvizError, match="mymodel is not a Keras model file"):
        resolve_model(ModelRequest("mymodel"))


def test_tokens_that_grow_with_the_input_leave_auto_to_the_patch_convolution():
    """A token layer of a model of any size is a square grid at square sizes only: cam
    explains the patch convolution, also at the image's own (non-square) size."""
    from onnx_graphs import patch_tokens

    import cnnviz_cli
    from cnnviz_cli.models.layers import default_layers

    _, model = patch_tokens()
    assert default_layers(model)["cam"][0].path == "patches"
    image = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    heatmap = cnnviz_cli.cam(model, [image], size="native").maps[0]["gradcam"]
    assert heatmap.shape == (5, 6) and heatmap.max() > 0  # the 4x4 patches of 20x24
