"""Whole ONNX graphs in the shapes PyTorch exports, translated: their forward equals
onnxruntime's, and GradCAM, activations and the layer picks equal those of a Keras twin with
the same weights."""

import json

import numpy as np
import pytest
from onnx_graphs import (
    Twin,
    assert_close,
    decoder,
    graph_model,
    helper,
    onnxruntime_outputs,
    residual_cnn,
    translated_outputs,
    vit,
)

pytest.importorskip("onnxruntime")
GRAPHS = {
    "residual_cnn": residual_cnn,
    "residual_cnn_view": lambda: residual_cnn(reshape=True, batch=1, free_size=False),
    "decoder": decoder,
    "vit": vit,
}
CAM_LAYERS = {"residual_cnn": "auto", "residual_cnn_view": "block1_out", "decoder": "auto",
              "vit": "block1_out"}  # block2_out reaches the class token no more
ACTIVATION_LAYERS = {"residual_cnn": ["stem_relu", "block1_add", "depthwise", "pointwise_relu"],
                     "residual_cnn_view": ["stem_bn", "block1_pool"],
                     "decoder": ["skip_relu", "down", "up", "merged"],
                     "vit": ["patches", "block1_attention_out", "block2_out"]}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """name -> (path of the .onnx file, ONNX ModelProto, Keras twin)."""
    folder, built = tmp_path_factory.mktemp("onnx"), {}
    for name, build in GRAPHS.items():
        proto, twin = build()
        (folder / f"{name}.onnx").write_bytes(proto.SerializeToString())
        built[name] = (folder / f"{name}.onnx", proto, twin)
    return built


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(3).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", GRAPHS)
def test_translated_forward_equals_onnxruntime(graphs, name):
    _, proto, _ = graphs[name]
    inputs = np.random.default_rng(4).normal(size=(3, 3, 16, 16)).astype(np.float32)
    ours, _ = translated_outputs(proto, inputs, channels_first=True)
    fixed = name == "residual_cnn_view"  # a batch of 1 in the file: onnxruntime item by item
    theirs = (np.concatenate([onnxruntime_outputs(proto, item[None])[0] for item in inputs])
              if fixed else onnxruntime_outputs(proto, inputs)[0])
    assert_close(ours[0], theirs, 1e-5)


def correlation(first, second) -> float:
    return float(np.corrcoef(np.ravel(first), np.ravel(second))[0, 1])


@pytest.mark.parametrize("name", GRAPHS)
def test_gradcam_equals_the_keras_twins(graphs, pixels, name):
    """GradCAM, and guided GradCAM (the guided rule on the translated ReLUs)."""
    from cnnviz_cli import api

    path, _, twin = graphs[name]
    methods = ["gradcam", "guided-gradcam"]
    options = {"methods": methods, "layer": CAM_LAYERS[name], "top_k": 3}
    ours, theirs = api.cam(path, list(pixels), **options), api.cam(twin, list(pixels), **options)
    assert [(item.record["layer"], item.record["class"]) for item in ours.items] == \
        [(item.record["layer"], item.record["class"]) for item in theirs.items]
    compared = 0
    for mine, reference in zip(ours.maps, theirs.maps, strict=True):
        for method in methods:
            if reference[method].std() == 0:  # no positive evidence: GradCAM's ReLU leaves 0
                assert np.abs(mine[method] - reference[method]).max() <= 1e-5
                continue
            compared += method == "gradcam"
            assert correlation(mine[method], reference[method]) >= 0.999, method
    assert compared >= 2


@pytest.mark.parametrize("name", GRAPHS)
def test_activations_equal_the_keras_twins(graphs, pixels, name):
    from cnnviz_cli import api

    path, _, twin = graphs[name]
    layers = ACTIVATION_LAYERS[name]
    ours = api.activations(path, list(pixels), layers=layers)
    theirs = api.activations(twin, list(pixels), layers=layers)
    for mine, reference in zip(ours.maps, theirs.maps, strict=True):
        for layer in layers:
            assert_close(mine[layer], reference[layer])


@pytest.mark.parametrize("name", GRAPHS)
def test_auto_layers_are_the_twins(graphs, name):
    from cnnviz_cli import api
    from cnnviz_cli.models.layers import default_layers

    path, _, twin = graphs[name]
    translated = api.load_model(path).model
    ours, theirs = default_layers(translated, (16, 16)), default_layers(twin, (16, 16))
    if name == "vit":  # the twin writes attention as fewer ops, with Keras' names: the spread
        for picks in (ours, theirs):  # picks of activations and dream differ with the op count
            del picks["activations"], picks["dream"]
    assert {command: [info.path for info in chosen] for command, chosen in ours.items()} == \
        {command: [info.path for info in chosen] for command, chosen in theirs.items()}


def test_layers_lists_the_feature_maps_named_after_node_outputs(run_cli, graphs):
    path = graphs["residual_cnn"][0]
    listed = json.loads(run_cli("layers", path, "--json").output)
    rows = {row["name"]: row for row in listed["layers"]}
    assert rows["stem_bn"]["type"] == "Conv2D" and rows["stem_bn"]["feature_map"]
    assert "stem" not in rows  # its BatchNormalization is folded into it
    assert rows["depthwise"]["type"] == "DepthwiseConv2D"
    assert rows["block1_add"]["type"] == "Add" and rows["block1_add"]["output_shape"][-1] == 8
    assert {"cam", "maximize"} <= set(rows["pointwise_relu"]["auto"])
    assert rows["stem_bn"]["auto"] == ["filters"]
    model = listed["model"]
    assert "format" not in model and model["onnx"]["translated"]
    assert model["onnx"]["operations"] == 19 and model["onnx"]["channels_first"]
    assert model["onnx"]["batch_norms_folded"] == 3
    assert "probabilities" in run_cli("layers", path).output


def test_the_final_softmax_is_the_classifiers_activation(graphs):
    from cnnviz_cli import api
    from cnnviz_cli.models.extract import final_activation

    for name in ("residual_cnn", "vit"):
        assert final_activation(api.load_model(graphs[name][0]).model) == "softmax"


def test_filters_are_the_conv_initialisers(graphs):
    """A Conv's kernel is its initialiser; one followed by a BatchNormalization carries the
    normalisation's per-channel scale, as onnxruntime folds it."""
    from onnx import numpy_helper

    from cnnviz_cli import api

    path, proto, _ = graphs["residual_cnn"]
    arrays = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    model = api.load_model(path).model
    kernel = model.get_layer("pointwise").get_weights()[0]
    np.testing.assert_array_equal(kernel, arrays["pointwise.weight"].transpose(2, 3, 1, 0))
    kernel, bias = model.get_layer("stem_bn").get_weights()
    gamma, beta, mean, variance = (arrays[f"stem_bn.{part}"]
                                   for part in ("weight", "bias", "mean", "var"))
    for channel in range(len(gamma)):
        scale = gamma[channel] / np.sqrt(variance[channel] + 1e-5)
        np.testing.assert_allclose(kernel[..., channel],
                                   arrays["stem.weight"][channel].transpose(1, 2, 0) * scale,
                                   rtol=1e-6)
        np.testing.assert_allclose(bias[channel], beta[channel] - mean[channel] * scale,
                                   rtol=1e-5, atol=1e-7)


def unknown_op_file(folder):
    """The residual CNN ending in two ops cnnviz does not translate (here identities)."""
    proto, _ = residual_cnn()
    nodes = list(proto.graph.node)
    nodes[-1].output[0] = "raw"
    nodes += [helper.make_node("Shrink", ["raw"], ["shrunk"], lambd=0.0, bias=0.0),
              helper.make_node("Shrink", ["shrunk"], ["probabilities"], lambd=0.0, bias=0.0),
              ]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    path = folder / "unknown.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.mark.slow  # over ~3 s
def test_an_unknown_op_runs_forward_only_and_says_which(run_cli, tmp_path):
    from cnnviz_cli import api

    path = unknown_op_file(tmp_path)
    resolved = api.load_model(path)
    assert resolved.details["format"] == "onnx"
    assert resolved.details["untranslated"] == ("it uses Shrink x2, which cnnviz does not "
                                                "translate into TensorFlow")
    refused = run_cli("activations", "sample_images/star.png", "-m", path, "-o",
                      tmp_path / "never", expect=2).output
    lines = refused.strip().splitlines()
    assert len(lines) == 1 and "it uses Shrink x2" in lines[0] and "occlusion and rise" in lines[0]
    run_cli("cam", "sample_images/star.png", "-m", path, "--method", "occlusion", "--stride", "16",
            "-q", "-o", tmp_path / "out")  # a quarter of the default's passes
    assert (tmp_path / "out" / "manifest.json").is_file()


def size_needing_decoder():
    """A decoder whose Resize takes its sizes from the skip tensor's Shape (F.interpolate(x,
    size=skip.shape[2:]) in PyTorch), so the graph computes with its input size."""
    twin = Twin(16)
    twin.conv("skip", 4)
    skip = twin.onnx
    twin.conv("down", 6, stride=2)
    node = twin._node
    shape = node("Shape", [skip], "skip_shape")
    sizes = node("Slice", [shape, twin._constant("from", np.array([2])),
                           twin._constant("to", np.array([4]))], "skip_size")
    head = node("Slice", [node("Shape", [twin.onnx], "down_shape"),
                          twin._constant("zero", np.array([0])),
                          twin._constant("two", np.array([2]))], "down_head")
    target = node("Concat", [head, sizes], "target", axis=0)
    node("Resize", [twin.onnx, "", "", target], "up", mode="linear")
    return graph_model(twin.nodes, ["N", 3, "height", "width"], twin.constants, ("up",))


@pytest.mark.parametrize(("proto", "sizes"), [
    (size_needing_decoder(), {(16, 16), (20, 12)}),  # built once per size
    (decoder()[0], {None}),  # built once, for any size
], ids=["shape-dependent", "any-size"])
def test_free_height_and_width_at_two_sizes(proto, sizes):
    built = set()
    for height, width in ((16, 16), (20, 12)):
        inputs = np.random.default_rng(height).normal(size=(2, 3, height, width))
        inputs = inputs.astype(np.float32)
        ours, translation = translated_outputs(proto, inputs, True, (height, width))
        assert_close(ours[0], onnxruntime_outputs(proto, inputs)[0], 1e-5)
        built.add(translation.size)
    assert built == sizes


def test_a_file_traced_at_batch_one_runs_at_any_batch_size():
    """torch.onnx.export without dynamic axes writes the batch size as a number: x.view(1, -1)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Reshape", ["c", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "dense"], ["y"])]
    rng = np.random.default_rng(5)
    constants = {"w": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
                 "shape": np.array([1, -1]), "dense": rng.normal(size=(64, 2)).astype(np.float32)}
    proto = graph_model(nodes, [1, 3, 6, 6], constants)
    inputs = rng.normal(size=(3, 3, 6, 6)).astype(np.float32)
    ours, _ = translated_outputs(proto, inputs, channels_first=True)
    theirs = np.concatenate([onnxruntime_outputs(proto, item[None])[0] for item in inputs])
    assert_close(ours[0], theirs, 1e-5)


def test_a_translated_model_copies_like_a_keras_model(graphs):
    """clone_model (checkpoints, --sanity, --precision) rebuilds the generic op layers too."""
    import keras

    from cnnviz_cli import api

    model = api.load_model(graphs["vit"][0]).model
    copy = keras.models.clone_model(model, recursive=True)
    copy.set_weights(model.get_weights())
    inputs = np.random.default_rng(6).normal(size=(2, 16, 16, 3)).astype(np.float32)
    assert copy is not model
    np.testing.assert_array_equal(np.asarray(copy(inputs)), np.asarray(model(inputs)))


@pytest.mark.parametrize("command", [
    ["cam", "sample_images/star.png", "--method", "gradcam,guided-gradcam,saliency",
     "--size", "32"],
    ["activations", "sample_images/star.png", "--size", "32"],
    ["filters"],
    ["maximize", "--filter", "0", "--steps", "4", "--size", "32"],
    ["dream", "sample_images/star.png", "--octaves", "1", "--steps", "2", "--size", "32"],
    ["reconstruct", "sample_images/star.png", "--method", "deconvnet", "--size", "32"],
])
def test_every_command_runs_on_an_onnx_file(run_cli, graphs, tmp_path, command):
    """The commands a .keras file runs, from the shell; their values are checked above."""
    out = tmp_path / "out"
    run_cli(*command, "-m", graphs["residual_cnn"][0], "-q", "-o", out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["onnx"]["translated"]
    assert any(out.rglob("*.png"))


def test_lrp_equals_the_keras_twins(graphs, pixels):
    """LRP's rules see the same Conv2D, BatchNormalization, ReLU, pooling and Dense layers."""
    from cnnviz_cli import api

    path, _, twin = graphs["residual_cnn"]
    ours, theirs = (api.cam(model, list(pixels), methods=["lrp"], top_k=2)
                    for model in (path, twin))
    for mine, reference in zip(ours.maps, theirs.maps, strict=True):
        assert np.abs(reference["lrp"]).max() > 0
        assert correlation(mine["lrp"], reference["lrp"]) >= 0.999


def test_a_batch_norm_folds_only_into_a_conv_it_alone_reads():
    """Conv -> BatchNormalization folds; a Conv whose output something else reads (here an
    Add) keeps its BatchNormalization; both match onnxruntime."""
    rng = np.random.default_rng(5)
    constants = {"w": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
                 "b": rng.normal(size=4).astype(np.float32)}
    for part, shift in (("g", 1.0), ("beta", 0.0), ("mean", 0.0), ("var", 1.0)):
        values = rng.normal(size=4).astype(np.float32) * 0.3 + shift
        constants[part] = np.abs(values) if part == "var" else values
    stats = ["g", "beta", "mean", "var"]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["folded"], pads=[1] * 4),
             helper.make_node("BatchNormalization", ["folded", *stats], ["folded_bn"]),
             helper.make_node("Conv", ["folded_bn", "w2"], ["kept"], pads=[1] * 4),
             helper.make_node("BatchNormalization", ["kept", *stats], ["kept_bn"]),
             helper.make_node("Add", ["kept", "kept_bn"], ["y"])]
    constants["w2"] = rng.normal(size=(4, 4, 3, 3)).astype(np.float32)
    proto = graph_model(nodes, ["N", 3, 8, 8], constants)
    inputs = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    ours, translation = translated_outputs(proto, inputs, channels_first=True)
    assert_close(ours[0], onnxruntime_outputs(proto, inputs)[0], 1e-5)
    names = {layer.name for layer in translation.model.layers}
    assert {"folded_bn", "kept", "kept_bn"} <= names and "folded" not in names
