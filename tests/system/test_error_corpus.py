"""Every error a user can cause, through every command: one sentence with what to do, never
"Unexpected" or a traceback (without --debug)."""

import numpy as np
import pytest
from click.testing import CliRunner

IMAGE_COMMANDS = ("activations", "cam", "dream", "reconstruct")
MODEL_COMMANDS = ("filters", "maximize")


@pytest.fixture(scope="module")
def files(tmp_path_factory, keras):
    """Bad inputs on disk: a text file named .png, an empty folder, a broken model, a weights
    file of another model, an ONNX model (scores only), a file where --out wants a folder."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("corpus")
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(folder / "grey.png")
    (folder / "text.png").write_text("not an image\n")
    (folder / "notes.txt").write_text("not an image either\n")
    (folder / "empty").mkdir()
    (folder / "broken.keras").write_text("not a model")
    (folder / "a-file").write_text("a file, not a folder")
    inputs = keras.Input((None, None, 3))
    other = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(5, 3, name="conv")(inputs))))
    other.save_weights(folder / "other.weights.h5")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["score"], axes=[1, 2], keepdims=0)],
        "mean", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 16, 16, 3])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              folder / "mean.onnx")
    (folder / "targets.csv").write_text("image,class\ngrey.png,notaclass\n")
    (folder / "boxes.csv").write_text("image,class,x0,y0,x1,y1\ngrey.png,1,90,90,10,10\n")
    (folder / "garbage.csv").write_bytes(bytes(range(256)) * 4)
    (folder / "empty.png").write_bytes(b"")
    png = (folder / "grey.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    Image.fromarray(np.full((30, 20), 40000, np.uint16)).save(folder / "deep.png")
    Image.fromarray(np.full((1, 1, 3), 9, np.uint8)).save(folder / "dot.png")
    Image.new("CMYK", (30, 30), (10, 200, 30, 0)).save(folder / "cmyk.jpg")
    (folder / "savedmodel").mkdir()
    (folder / "text.h5").write_text("not hdf5")
    (folder / "text.tflite").write_text("not flatbuffers")
    (folder / "text.onnx").write_text("not protobuf")
    (folder / "labels.json").write_text("{not json")
    (folder / "bad-manifest").mkdir()
    (folder / "bad-manifest" / "manifest.json").write_text("{\"tool\": \"cnnviz\", ")
    return folder


def _cases():
    """(command, arguments with {F} for the files folder), for every command."""
    for command in IMAGE_COMMANDS:
        image = "{F}/grey.png"
        yield command, ["{F}/missing.png"]
        yield command, ["{F}/text.png"]
        yield command, ["{F}/notes.txt"]
        yield command, ["{F}/empty"]
        yield command, [image, "--batch-size", "0"]
        yield command, [image, "--size", "big"]
        yield command, [image, "-m", "nosuchnet"]
        yield command, [image, "-m", "{F}/broken.keras"]
        yield command, [image, "-m", "{F}/missing.keras"]
        yield command, [image, "--weights", "{F}/other.weights.h5"]
        yield command, [image, "--weights", "{F}/notes.txt"]
        yield command, [image, "-o", "{F}/a-file"]
        yield command, [image, "-o", "{F}/a-file/inside"]
        yield command, [image, "-o", "/proc/cnnviz-out"]
        yield command, [image, "-m", "{F}/mean.onnx"] if command != "cam" else \
            [image, "-m", "{F}/mean.onnx", "--method", "gradcam"]
        yield command, [image, "-l", "nosuchlayer"]
        yield command, [image, "--size", "100000"]
        yield command, [image, "--shard", "3/2"]
        yield command, [image, "--device", "tpu"]
    for command in MODEL_COMMANDS:
        yield command, ["-m", "nosuchnet"]
        yield command, ["-m", "{F}/broken.keras"]
        yield command, ["-m", "{F}/mean.onnx"]
        yield command, ["-l", "nosuchlayer"]
        yield command, ["--filter", "99999"]
        yield command, ["--filter", "x-y"]
        yield command, ["-o", "{F}/a-file"]
        yield command, ["--weights", "{F}/other.weights.h5"]
    yield "cam", ["{F}/grey.png", "--class", "nosuchclass"]
    yield "cam", ["{F}/grey.png", "--class", "999"]
    yield "cam", ["{F}/grey.png", "--targets", "{F}/missing.csv"]
    yield "cam", ["{F}/grey.png", "--targets", "{F}/targets.csv"]
    yield "cam", ["{F}/grey.png", "--baseline", "{F}/empty"]
    yield "cam", ["{F}/grey.png", "--fail-under", "nosuchmetric=1"]
    yield "cam", ["{F}/grey.png", "--method", "gradcma"]
    yield "cam", ["{F}/grey.png", "--sanity", "-m", "{F}/mean.onnx", "--method", "occlusion"]
    yield "cam", ["{F}/grey.png", "--checkpoint", "{F}/notes.txt"]
    for image in ("empty.png", "truncated.png"):
        yield "cam", ["{F}/" + image, "--fail-fast"]
        yield "activations", ["{F}/" + image, "--fail-fast"]
    for model in ("savedmodel", "text.h5", "text.tflite", "text.onnx", "notes.txt"):
        yield "cam", ["{F}/grey.png", "-m", "{F}/" + model]
        yield "layers", ["{F}/" + model]
    yield "cam", ["{F}/grey.png", "--labels", "{F}/labels.json"]
    yield "cam", ["{F}/grey.png", "--labels", "{F}/missing.txt"]
    yield "cam", ["{F}/grey.png", "--preprocess", "nosuch"]
    yield "cam", ["{F}/grey.png", "--custom-objects", "{F}/missing.py"]
    yield "cam", ["{F}/grey.png", "--custom-objects", "no_such_module_here"]
    yield "cam", ["{F}/grey.png", "--tensorboard", "{F}/a-file"]
    yield "cam", ["{F}/grey.png", "--class", "-1"]
    yield "cam", ["{F}/grey.png", "--threshold", "0.5"]
    yield "cam", ["{F}/grey.png", "--reference", "{F}/grey.png"]
    yield "cam", ["{F}/grey.png", "--task", "embed"]
    yield "cam", ["{F}/grey.png", "--task", "segment"]
    yield "cam", ["{F}/grey.png", "--output", "7"]
    yield "cam", ["{F}/grey.png", "--signature", "serve"]
    yield "cam", ["{F}/grey.png", "--weights", "imagenet"]
    yield "cam", ["{F}/grey.png", "--device", "gpu"]
    yield "cam", ["{F}/grey.png", "--precision", "mixed", "--device", "cpu"]
    yield "cam", ["{F}/grey.png", "-l", "predictions"]
    yield "cam", ["{F}/grey.png", "-l", "gap"]
    yield "cam", ["{F}/grey.png", "--targets", "{F}/boxes.csv"]
    yield "cam", ["{F}/grey.png", "--targets", "{F}/garbage.csv"]
    yield "cam", ["{F}/grey.png", "--baseline", "{F}/bad-manifest"]
    yield "cam", ["{F}/grey.png", "--baseline", "{F}/a-file"]
    yield "cam", ["{F}/grey.png", "--checkpoint", "{F}/other.weights.h5"]
    yield "cam", ["{F}/grey.png", "--checkpoint", "{F}/missing.weights.h5"]
    yield "activations", ["{F}/grey.png", "-l", "predictions"]
    yield "filters", ["-l", "block1_pool"]
    yield "filters", ["-l", "predictions"]
    yield "maximize", ["--class", "99"]
    yield "maximize", ["--class", "nosuchclass"]
    yield "maximize", ["-l", "predictions"]
    yield "reconstruct", ["{F}/grey.png", "--filter", "999"]
    yield "reconstruct", ["{F}/grey.png", "--method", "inversion", "-l", "predictions"]
    yield "dream", ["{F}/grey.png", "-l", "predictions"]
    yield "report", ["{F}/bad-manifest"]
    yield "info", ["{F}/truncated.png"]
    yield "info", ["{F}/missing.png"]
    yield "layers", ["nosuchnet"]
    yield "layers", ["{F}/broken.keras"]
    yield "info", ["{F}/notes.txt"]
    yield "info", ["{F}/grey.png"]
    yield "report", ["{F}/empty"]
    yield "report", ["{F}/missing"]
    yield "report", ["{F}/a-file"]


CASES = list(_cases())
ODD_BUT_VALID = [("cam", ["{F}/deep.png"]), ("activations", ["{F}/dot.png"]),
                 ("cam", ["{F}/cmyk.jpg"]), ("dream", ["{F}/dot.png", "--steps", "2"])]
"""Inputs that look wrong but are images: 16-bit grey, 1x1, CMYK; they run."""


def _run(files, tmp_path, command, arguments, *group):
    from cnnviz_cli.cli import cli

    words = [word.replace("{F}", str(files)) for word in arguments]
    if "-o" not in words and command not in ("layers", "info", "report"):
        words += ["-o", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*group, command, *words])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def _clean(output: str) -> None:
    assert "Unexpected" not in output and "Traceback" not in output, output
    assert "Internal error" not in output, output
    assert len([line for line in output.splitlines() if line.startswith("Error")]) <= 1, output


@pytest.mark.slow
@pytest.mark.parametrize(("command", "arguments"), CASES,
                         ids=[f"{command} {' '.join(args)}" for command, args in CASES])
def test_a_user_error_is_one_sentence(files, tmp_path, command, arguments):
    result = _run(files, tmp_path, command, arguments)
    _clean(result.output)
    assert result.exit_code != 0, result.output


@pytest.mark.slow
@pytest.mark.parametrize(("command", "arguments"), ODD_BUT_VALID)
def test_odd_but_valid_inputs_run(files, tmp_path, command, arguments):
    result = _run(files, tmp_path, command, arguments)
    _clean(result.output)
    assert result.exit_code == 0, result.output


def test_an_internal_error_says_where_to_report_it_and_keeps_the_traceback(
        files, tmp_path, monkeypatch):
    from cnnviz_cli.api import limits

    def broken():
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(limits, "_memory", broken)  # a bug inside a run
    result = _run(files, tmp_path, "cam", ["{F}/grey.png"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: Internal error (ZeroDivisionError: division by zero), a "
                               "bug in cnnviz")
    report = tmp_path / "out" / "cnnviz-error.txt"
    assert f"traceback written to {report}." in lines[0]
    text = report.read_text()
    assert "Traceback (most recent call last)" in text and "ZeroDivisionError" in text
    assert "TensorFlow" in text.splitlines()[2]  # the versions line
    debug = _run(files, tmp_path / "again", "cam", ["{F}/grey.png"], "--debug")
    assert "Traceback (most recent call last)" in debug.output
