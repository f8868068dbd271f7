"""The API of `cnnviz layers`, `models`, `info` and `report`, and which commands and methods an
exported model's format can run (api.formats)."""

import json
from dataclasses import replace

import pytest
from PIL import Image, PngImagePlugin

import cnnviz_cli
from cnnviz_cli.errors import CnnvizError, InputError


def test_layers_of_a_model_in_memory(tiny_conv_model):
    result = cnnviz_cli.layers(tiny_conv_model)
    rows = {row["name"]: row for row in result.layers}
    assert list(rows) == ["conv", "gap", "predictions"]
    # parameters by formula: 3x3 kernels over 3 channels into 2 filters, then dense 2 -> 3
    assert [row["params"] for row in rows.values()] == [3 * 3 * 3 * 2 + 2, 0, 2 * 3 + 3]
    assert rows["conv"]["output_shape"] == [None, 8, 8, 2]
    assert [row["feature_map"] for row in rows.values()] == [True, False, False]
    assert {"cam", "filters"} <= set(rows["conv"]["auto"])
    assert rows["gap"]["auto"] == rows["predictions"]["auto"] == []
    record = result.record()
    assert record["layers"] == result.layers and record["model"]["input_shape"] == [8, 8, 3]
    assert json.loads(json.dumps(record)) == record  # what `cnnviz layers --json` prints


@pytest.fixture(scope="module")
def mean_onnx(tmp_path_factory):
    """An ONNX model: (n, 6, 5, 3) images -> (n, 3) the mean of each channel, through a Shrink
    node (the identity here) that cnnviz does not translate, so it stays forward-only."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["raw"], axes=[1, 2], keepdims=0),
         helper.make_node("Shrink", ["raw"], ["means"])],
        "means", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 6, 5, 3])],
        [helper.make_tensor_value_info("means", TensorProto.FLOAT, ["n", 3])])
    path = tmp_path_factory.mktemp("onnx") / "means.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_an_exported_model_has_no_layers_but_its_ports(mean_onnx):
    pytest.importorskip("onnxruntime")
    result = cnnviz_cli.layers(mean_onnx)
    resolved = result.model
    assert result.layers == [] and resolved.format == "onnx"
    assert resolved.gives == {"forward"}
    assert resolved.details["inputs"] == [{"name": "image", "shape": [None, 6, 5, 3],
                                           "dtype": "float32"}]
    assert resolved.details["outputs"] == [{"name": "means", "shape": [None, 3],
                                            "dtype": "float32"}]


def test_which_methods_and_commands_a_format_runs(tiny_conv_model):
    from cnnviz_cli.api.formats import check_command, check_methods, usable_methods

    keras_model = cnnviz_cli.load_model(tiny_conv_model)
    assert keras_model.format == "keras" and keras_model.gives == {"layer", "gradient", "forward"}
    saved = replace(keras_model, format="savedmodel", source="saved/")
    scores_only = replace(keras_model, format="tflite", source="m.tflite")
    assert {"gradcam", "saliency", "occlusion"} <= set(usable_methods(keras_model))
    assert "saliency" in usable_methods(saved) and "gradcam" not in usable_methods(saved)
    assert "occlusion" in usable_methods(scores_only)
    assert not {"gradcam", "saliency"} & set(usable_methods(scores_only))
    check_methods(scores_only, ["occlusion", "rise"])
    with pytest.raises(CnnvizError, match=r"^gradcam and saliency cannot run on the TFLite model "
                       r"m\.tflite, which gives scores only"):
        check_methods(scores_only, ["occlusion", "gradcam", "saliency"])
    check_command(saved, "cam")
    check_command(keras_model, "activations")
    with pytest.raises(CnnvizError, match=r"^cnnviz dream needs the model's layers, and the "
                       r"SavedModel saved/, which gives input gradients but no layers.* work "
                       r"here, as does maximize --class, and"):
        check_command(saved, "dream")
    check_command(saved, "maximize", {"classes": ["1"], "from_images": None})
    with pytest.raises(CnnvizError, match=r"^cnnviz maximize needs the model's layers"):
        check_command(saved, "maximize", {"classes": ["1"], "from_images": ["images/"]})
    with pytest.raises(CnnvizError, match=r"^cnnviz maximize --class needs the model's input "
                       r"gradients, and the TFLite model m\.tflite, which gives scores only"):
        check_command(scores_only, "maximize", {"classes": ["1"]})


def test_list_models_names_what_keras_builds(keras):
    rows = cnnviz_cli.list_models()
    assert rows[0]["name"] == "demo"
    names = [row["name"] for row in rows]
    assert len(names) == len(set(names)) > 10
    for row in rows[1:]:
        assert callable(getattr(keras.applications, row["constructor"]))
        assert row["description"] == f"keras.applications.{row['constructor']}"
        assert isinstance(row["any_size"], bool) and row["input_size"] >= 32


def test_info_reads_the_fields_of_a_png(tmp_path):
    model = {"source": "demo", "weights": "bundled"}
    chunks = PngImagePlugin.PngInfo()
    for key, value in (("version", "9.9"), ("command", "cam"), ("model", json.dumps(model)),
                       ("record", json.dumps({"kind": "heatmap"}))):
        chunks.add_text(f"cnnviz:{key}", value)
    path = tmp_path / "map.png"
    Image.new("RGB", (2, 2)).save(path, pnginfo=chunks)
    assert cnnviz_cli.info(path) == {"file": str(path), "version": "9.9", "command": "cam",
                                     "model": model, "record": {"kind": "heatmap"}}
    Image.new("RGB", (2, 2)).save(tmp_path / "plain.png")
    with pytest.raises(InputError, match="carries no cnnviz provenance"):
        cnnviz_cli.info(tmp_path / "plain.png")


@pytest.fixture(scope="module")
def two_runs(tiny_conv_model, tmp_path_factory):
    """Two output folders of `filters` runs, side by side."""
    folder = tmp_path_factory.mktemp("runs")
    for name in ("first", "second"):
        cnnviz_cli.filters(tiny_conv_model, out=folder / name)
    return folder


def _files(folder) -> list[str]:
    return json.loads((folder / "manifest.json").read_text())["outputs"]


def test_report_merges_folders(two_runs, tmp_path):
    folders = [two_runs / "first", two_runs / "second"]
    written = cnnviz_cli.report(folders, out=tmp_path / "merged")
    assert written.path == tmp_path / "merged" / "index.html" and written.path.is_file()
    assert written.folders == [folder.resolve() for folder in folders]
    merged = json.loads((tmp_path / "merged" / "manifest.json").read_text())
    assert merged == json.loads(json.dumps(written.manifest))
    assert len(merged["outputs"]) == sum(len(_files(folder)) for folder in folders)
    assert len(merged["runs"]) == 2
    page = written.path.read_text()
    assert all(record["file"] in page for record in merged["outputs"])


def test_report_of_one_folder_and_refusals(two_runs):
    written = cnnviz_cli.report(two_runs / "first")
    assert written.path == (two_runs / "first" / "index.html").resolve()
    with pytest.raises(CnnvizError, match="belongs to a cnnviz run"):
        cnnviz_cli.report([two_runs / "first"], out=two_runs / "second")
    with pytest.raises(CnnvizError, match="No manifest.json"):
        cnnviz_cli.report(two_runs)
