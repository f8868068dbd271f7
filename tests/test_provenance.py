"""Provenance in every PNG, read back with `cnnviz info`; model hashes recomputed with hashlib."""

import hashlib
import json
import shlex
import subprocess
import sys
from importlib import resources

import pytest
from click.testing import CliRunner
from PIL import Image

from cnnviz_cli import __version__
from cnnviz_cli.cli import cli


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def info(*args, expect: int = 0):
    result = CliRunner().invoke(cli, ["info", *map(str, args)])
    assert result.exit_code == expect, result.output
    return result


@pytest.fixture(scope="module")
def cam_run(sample_dir, small_model_file, tmp_path_factory):
    """`cnnviz cam` with SmoothGrad on the small model file: (command-line args, output folder)."""
    out = tmp_path_factory.mktemp("provenance") / "out"
    args = ["-q", "cam", str(sample_dir / "star.png"), "-m", str(small_model_file),
            "--preprocess", "unit", "-l", "conv", "--class", "1", "--method", "smoothgrad,saliency",
            "--samples", "4", "--seed", "5", "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return args, out


def test_info_shows_version_command_line_and_model_hash(cam_run, small_model_file):
    args, out = cam_run
    # the canonical command line: inputs, then the options given in the table's order, never -o
    line = shlex.join(["cnnviz", "cam", args[2], "--model", str(small_model_file),
                       "--preprocess", "unit", "--method", "smoothgrad", "--method", "saliency",
                       "--class", "1", "--layer", "conv", "--seed", "5", "--samples", "4"])
    overlay = out / "star/cam-smoothgrad-class_1.png"
    fields = json.loads(info(overlay, "--json").stdout)[0]
    assert fields["version"] == __version__
    assert fields["command_line"] == line
    assert fields["model"]["source"] == str(small_model_file)
    assert fields["model"]["sha256"] == sha256(small_model_file)
    assert (fields["layer"], fields["method"], fields["target"], fields["seed"]) == (
        "conv", "smoothgrad", "class 1", 5)
    assert fields["record"]["method"] == "smoothgrad" and fields["file"] == str(overlay)
    readable = info(overlay).stdout
    for caption, value in (("version", __version__), ("model sha256", sha256(small_model_file)),
                           ("command line", line)):
        assert f"  {caption}" in readable and value in readable
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == fields["model"]  # the manifest's names, numbers as numbers
    assert manifest["command_line"] == fields["command_line"]
    assert manifest["options"]["seed"] == fields["seed"]


def test_command_line_leaves_out_only_the_output_folder():
    from cnnviz_cli.api.session import command_line

    options = {"methods": ["gradcam", "scorecam"], "top_k": 2, "seed": 0, "out": "x",
               "metrics": False, "save_npy": True, "shard": (2, 3)}
    defaults = {"methods": ("gradcam",), "top_k": None, "seed": 0, "metrics": False,
                "save_npy": False, "shard": None}
    assert command_line("cam", ["a b.png"], options, defaults) == (
        "cnnviz cam 'a b.png' --method gradcam --method scorecam --save-npy --shard 2/3 "
        "--top-k 2")


def test_every_png_of_a_run_carries_provenance(cam_run):
    _, out = cam_run
    pictures = sorted(out.rglob("*.png"))
    assert len(pictures) == 5  # two overlays, two heatmaps, one panel
    for picture in pictures:
        texts = Image.open(picture).text
        for key in ("version", "command_line", "model", "layer", "method", "target", "seed",
                    "record"):
            assert f"cnnviz:{key}" in texts, (picture, key)


def test_info_does_not_import_tensorflow(cam_run):
    picture = cam_run[1] / "star/cam-panel-class_1.png"
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from cnnviz_cli.cli import cli\n"
        f"result = CliRunner().invoke(cli, ['info', {str(picture)!r}])\n"
        "print(result.exit_code, 'tensorflow' in sys.modules)\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True).stdout.split()
    assert output == ["0", "False"]


def test_info_errors_are_one_sentence(cam_run, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    good = cam_run[1] / "star/cam-saliency-class_1.png"
    for path, words in ((text, "is not a PNG image"), (plain, "carries no cnnviz provenance"),
                        (tmp_path / "missing.png", "does not exist"),
                        (tmp_path, "is a folder")):
        lines = info(path, expect=2).output.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and lines[0].startswith("Error: "), lines
    some = info(good, plain, "--json", expect=1)
    assert [fields["file"] for fields in json.loads(some.stdout)] == [str(good)]
    assert "carries no cnnviz provenance" in some.stderr
    assert info(text, plain, expect=2).stderr.count("\n") == 2


def test_model_descriptions_hash_files_and_name_applications(demo_resolved, small_model_file,
                                                             tmp_path):
    from cnnviz_cli.io.provenance import png_fields
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    bundled = resources.files("cnnviz_cli.demo") / "shapes_cnn.keras"
    assert demo_resolved.describe()["sha256"] == sha256(bundled)
    weights = tmp_path / "small.weights.h5"
    resolved = resolve_model(ModelRequest(str(small_model_file), preprocess="unit"))
    resolved.model.save_weights(weights)
    with_weights = resolve_model(ModelRequest(str(small_model_file), weights=str(weights)))
    description = with_weights.describe()
    assert description["sha256"] == sha256(small_model_file)
    assert description["weights_sha256"] == sha256(weights)
    named = {"source": "mobilenetv2", "weights": "imagenet"}  # no file: the name and weights
    run = {"version": __version__, "command": "cam", "command-line": "cnnviz cam x.png",
           "model": named, "seed": None}
    fields = png_fields(run, {"layer": None, "target": 7})
    assert fields == {"cnnviz:version": __version__, "cnnviz:command": "cam",
                      "cnnviz:command_line": "cnnviz cam x.png",
                      "cnnviz:model": json.dumps(named), "cnnviz:target": "target 7"}


def _numbers(text: str) -> list[int]:
    """`0-3, 7` -> [0, 1, 2, 3, 7]."""
    numbers = []
    for part in text.split(", "):
        first, _, last = part.partition("-")
        numbers += list(range(int(first), int(last or first) + 1))
    return numbers


def test_info_of_filters_is_one_line_per_field_and_names_the_weights(keras, tmp_path):
    model = keras.models.load_model(resources.files("cnnviz_cli.demo") / "shapes_cnn.keras")
    weights = tmp_path / "epoch_00.weights.h5"
    model.save_weights(weights)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["-q", "filters", "--weights", str(weights), "--max-filters",
                                      "40", "--order", "norm", "-o", str(out)])
    assert result.exit_code == 0, result.output
    picture = out / "filters-block1_conv1.png"
    readable = info(picture).stdout.strip().splitlines()
    assert all(line.startswith("  ") for line in readable[1:]), readable  # no broken lines
    assert f"  weights sha256  {sha256(weights)}" in readable
    fields = json.loads(info(picture, "--json").stdout)[0]
    assert fields["model"]["weights"] == str(weights)
    assert fields["model"]["weights_sha256"] == sha256(weights)
    caption, numbers = fields["target"].split(" ", 1)
    assert caption == "filters" and _numbers(numbers) == fields["record"]["filters"]


def test_info_reads_older_pngs_under_the_new_names(tmp_path):
    from PIL import PngImagePlugin

    chunks = PngImagePlugin.PngInfo()
    record = {"layer": "conv", "filters": [0, 1, 2, 3, 9]}
    for key, value in (("version", "0.0.9"), ("command", "filters"),
                       ("command-line", "cnnviz filters"), ("model", "demo"),
                       ("weights", "bundled"), ("model-sha256", "ab" * 32), ("layer", "conv"),
                       ("target", "filters [0 1 2 3\n 9]"), ("seed", "0"),
                       ("record", json.dumps(record))):
        chunks.add_text(f"cnnviz:{key}", value)
    path = tmp_path / "old.png"
    Image.new("RGB", (2, 2)).save(path, pnginfo=chunks)
    fields = json.loads(info(path, "--json").stdout)[0]
    assert fields == {"file": str(path), "version": "0.0.9", "command": "filters",
                      "command_line": "cnnviz filters",
                      "model": {"source": "demo", "weights": "bundled", "sha256": "ab" * 32},
                      "layer": "conv", "target": "filters 0-3, 9", "seed": 0, "record": record}
