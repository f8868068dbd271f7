"""Zero tracebacks on real files: every command on every head and model format (issue 28).

A cell is one command run through the CLI on one tiny model (16x16 fixed or free input, 4
filters, twin Keras and ONNX graphs from onnx_graphs) of one head, saved in one format with one
input layout and size. It passes when the command works (exit 0) or refuses on purpose: exit 2
with one line, one sentence. "Unexpected", "Internal error" or a traceback fails it.

Heads: classify (softmax), binary (one sigmoid), multilabel (three sigmoids), regress (one
linear unit), segment (a per-pixel softmax map), embed (a 4-vector, cam with --task embed
--reference) and tokens (fixed size: a one-block ViT with a patch convolution, class token,
position embeddings and attention; free size: patch tokens, a token mixer and their mean,
no position embeddings).
Formats: .keras, .h5, SavedModel folder (model.export), .tflite (converted from it), .onnx
(written node by node, translated into layers) and onnx-fallback (the same graph ending in an op
cnnviz does not translate, run forward-only by onnxruntime). A fixed-size ONNX graph fixes its
batch at 1 too. Layouts: channels-last everywhere; channels-first as ONNX's native NCHW graph,
as a SavedModel and a TFLite file that take NCHW images (a segmentation map comes out NCHW
too), and as a .keras/.h5 model, which cnnviz refuses in one sentence. Sizes: fixed 16x16 (the
20x24 image is resized) and free (run at the image's own size). Options are the cheapest:
cam gradcam where there are layers, saliency on a SavedModel, occlusion on TFLite, rise (8
masks) on onnx-fallback; maximize 2 steps; dream 1 octave of 1 step; reconstruct guided.

The full product (`every_cell()`, 1008 cells) took about 12 minutes on 2 cores, so `CELLS` is a
covering design of 88 cells (50 to 70 s): every head in every format, each with two commands,
so that every command runs in every format and on every head; every format and every head in
each layout and size it can express; plus the .keras/.h5 channels-first refusals.
`test_the_cells_cover_every_pair` checks that. The full product passed by hand, run in parts.
"""

import itertools
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.system

HEADS = ("classify", "binary", "multilabel", "regress", "segment", "embed", "tokens")
FORMATS = ("keras", "h5", "savedmodel", "tflite", "onnx", "onnx-fallback")
COMMANDS = ("cam", "activations", "filters", "maximize", "dream", "reconstruct")
EXPORTED = ("savedmodel", "tflite", "onnx", "onnx-fallback")  # can express channels-first
SIDE = 16  # a fixed-size model's input side
IMAGE = (20, 24)  # the image's height and width
SUFFIXES = {"keras": ".keras", "h5": ".h5", "savedmodel": "", "tflite": ".tflite",
            "onnx": ".onnx", "onnx-fallback": ".onnx"}
CAM = {"keras": "gradcam", "h5": "gradcam", "savedmodel": "saliency", "tflite": "occlusion",
       "onnx": "gradcam", "onnx-fallback": "rise"}  # the cheapest method each format gives
PERTURBATION = {"tflite": ("--patch", "8", "--stride", "8"), "onnx-fallback": ("--masks", "8")}
UNITS = {"classify": (3, "softmax"), "binary": (1, "sigmoid"), "multilabel": (3, "sigmoid"),
         "regress": (1, None), "embed": (4, None)}  # classifier heads: units, activation


@dataclass(frozen=True)
class Cell:
    command: str
    head: str
    format: str
    layout: str = "last"  # last or first: the input's channels axis
    size: str = "fixed"  # fixed or free

    @property
    def model(self) -> tuple[str, str, str, str]:
        return self.head, self.format, self.layout, self.size

    def __str__(self) -> str:
        return "-".join((self.command, self.head, self.format, self.layout, self.size))


def _covering() -> list[Cell]:
    """Head i in format j: layout and size from (i + j), commands (i + j) and (i + j + 3)."""
    shapes = [("last", "free"), ("first", "fixed"), ("first", "free"), ("last", "fixed")]
    cells = []
    for (i, head), (j, form) in itertools.product(enumerate(HEADS), enumerate(FORMATS)):
        layout, size = shapes[(i + j) % 4] if form in EXPORTED else (
            "last", ("fixed", "free")[(i + j) % 2])
        cells += [Cell(COMMANDS[(i + j + k) % 6], head, form, layout, size) for k in (0, 3)]
    return cells + [Cell("cam", "classify", "keras", "first"),
                    Cell("filters", "binary", "keras", "first", "free"),
                    Cell("maximize", "regress", "h5", "first"),
                    Cell("activations", "segment", "h5", "first", "free")]


def every_cell() -> list[Cell]:
    """The full product (for a run by hand: CELLS = every_cell())."""
    return [Cell(command, head, form, layout, size) for command, head, form, layout, size in
            itertools.product(COMMANDS, HEADS, FORMATS, ("last", "first"), ("fixed", "free"))]


CELLS = _covering()


def _twin(head: str, channels_last: bool, free: bool):
    """(ONNX ModelProto, Keras model) of `head` with the same weights; a fixed-size graph fixes
    its batch size too (1, as PyTorch's exporter does by default)."""
    from onnx_graphs import Twin, patch_tokens, vit

    batch = "N" if free else 1
    if head == "tokens" and free:
        return patch_tokens(SIDE, channels_last=channels_last)
    if head == "tokens":
        return vit(SIDE, patch=4, dim=8, heads=2, blocks=1, classes=3,
                   channels_last=channels_last, batch=batch)
    twin = Twin(SIDE, batch, free_size=free, channels_last=channels_last)
    twin.conv("conv", 4)
    twin.relu("relu")
    if head == "segment":
        twin.conv("classes", 3, kernel=1)
        twin.activate("softmax")
    else:
        units, activation = UNITS[head]
        twin.classifier(units, activation=activation)
    return twin.models(head)


def _untranslatable(proto):
    """The graph ending in an op cnnviz does not translate (Shrink, here the identity), so it
    runs forward-only in onnxruntime."""
    from onnx import helper

    output = proto.graph.output[0].name
    next(node for node in proto.graph.node if output in node.output).output[0] = "kept"
    proto.graph.node.append(helper.make_node("Shrink", ["kept"], [output], lambd=0.0, bias=0.0))
    return proto


def _channels_first(keras, model, segment: bool):
    """`model` between Permutes: it takes (3, height, width) images (and gives a segmentation
    map as (classes, height, width))."""
    inputs = keras.Input((3, *model.inputs[0].shape[1:3]))
    outputs = model(keras.layers.Permute((2, 3, 1))(inputs))
    return keras.Model(inputs, keras.layers.Permute((3, 1, 2))(outputs) if segment else outputs)


@pytest.fixture(scope="module")
def files(tmp_path_factory, keras):
    """The image, and `files.model(head, format, layout, size)`: that model's path, built on
    first use."""
    folder = tmp_path_factory.mktemp("matrix")
    image = folder / "image.png"
    rows, columns = np.mgrid[0:IMAGE[0], 0:IMAGE[1]]
    pixels = np.stack([rows * 12, columns * 10, (rows * columns) % 256], -1)
    from PIL import Image

    Image.fromarray(pixels.astype(np.uint8)).save(image)
    built: dict[tuple, Path] = {}

    def model(head: str, form: str, layout: str, size: str) -> Path:
        key = (head, form, layout, size)
        if key in built:
            return built[key]
        path = folder / ("-".join(key) + SUFFIXES[form])
        proto, network = _twin(head, "onnx" not in form or layout == "last", size == "free")
        if form.startswith("onnx"):
            import onnx

            onnx.save(_untranslatable(proto) if form == "onnx-fallback" else proto, path)
        elif form in ("keras", "h5", "savedmodel"):
            if layout == "first":
                network = _channels_first(keras, network, head == "segment")
            if form == "savedmodel":
                network.export(str(path), verbose=False)
            else:
                network.save(path)
        else:
            import tensorflow as tf

            saved = model(head, "savedmodel", layout, size)
            path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
        built[key] = path
        return path

    return SimpleNamespace(image=image, model=model)


def arguments(cell: Cell, model: Path, image: Path) -> list[str]:
    """The cheapest options of the cell's command: cam's method is gradcam on formats with
    layers, saliency on a SavedModel, occlusion on TFLite and rise on an untranslated ONNX
    graph (scores only)."""
    words = {"cam": [image, "--method", CAM[cell.format], *PERTURBATION.get(cell.format, ())],
             "activations": [image], "filters": [],
             "maximize": ["--steps", "2", "--batch-size", "2",
                          *(["--filter", "0-1"] if cell.head == "embed" else ["--class", "0"])],
             "dream": [image, "--octaves", "1", "--steps", "1"],
             "reconstruct": [image, "--top-channels", "2"]}[cell.command]
    if cell.command == "cam" and cell.head == "embed":
        words += ["--task", "embed", "--reference", image]
    if cell.size == "free" and cell.command != "filters":
        words += ["--size", "x".join(map(str, IMAGE)) if cell.command == "maximize" else "native"]
    return [str(word) for word in (*words, "-m", model, "--preprocess", "unit", "-q")]


def test_the_cells_cover_every_pair():
    def pairs(*fields):
        return {tuple(getattr(cell, field) for field in fields) for cell in CELLS}

    every = every_cell()
    assert pairs("head", "format") == set(itertools.product(HEADS, FORMATS))
    assert pairs("command", "format") == set(itertools.product(COMMANDS, FORMATS))
    assert pairs("command", "head") == set(itertools.product(COMMANDS, HEADS))
    assert pairs("format", "layout", "size") == {cell.model[1:] for cell in every}
    assert pairs("head", "layout", "size") == {
        (cell.head, cell.layout, cell.size) for cell in every}


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_a_command_works_or_refuses_in_one_sentence(files, tmp_path, cell):
    from cnnviz_cli.cli import cli

    model = files.model(*cell.model)
    words = [cell.command, *arguments(cell, model, files.image), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, words)
    output = result.output.strip()
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    for word in ("Unexpected", "Internal error", "Traceback"):
        assert word not in output, output
    if result.exit_code == 2:
        assert len(output.splitlines()) == 1 and output.startswith("Error: "), output
    else:
        assert result.exit_code == 0, output
