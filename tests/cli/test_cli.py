"""The command-line shell: help without TensorFlow, errors and exit codes, end-to-end runs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COMMANDS = ["activations", "filters", "layers", "models"]


def test_help_never_imports_tensorflow():
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from cnnviz_cli.cli import cli\n"
        "for args in [['--help']] + [[c, '--help'] for c in cli.commands]:\n"
        "    result = CliRunner().invoke(cli, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "    assert 'Example:' in result.output, args\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, len(cli.commands))\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True).stdout.split()
    assert output[:2] == ["False", "False"]
    assert int(output[2]) >= len(COMMANDS)


def test_installed_entry_point_runs(tmp_path):
    executable = Path(sys.executable).with_name("cnnviz")
    version = subprocess.run([executable, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "cnnviz" in version.stdout
    bad = subprocess.run([executable, "layers", "not_a_model"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "Error: Unknown model 'not_a_model': give a model file (.keras, .h5, .tflite, .onnx), "
        "a SavedModel folder or a name from `cnnviz models`."]
    listed = subprocess.run([executable, "layers", "--json"], capture_output=True, text=True)
    assert listed.returncode == 0 and json.loads(listed.stdout)["layers"]
    assert listed.stderr == ""  # no TensorFlow start-up notes


@pytest.mark.slow
def test_subprocess_activations_writes_manifest(tmp_path, sample_dir):
    executable = Path(sys.executable).with_name("cnnviz")
    out = tmp_path / "out"
    result = subprocess.run(
        [executable, "activations", str(sample_dir / "star.png"), "-l", "-3", "-o", str(out),
         "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert len(manifest["outputs"]) == 2
    assert all((out / record["file"]).is_file() for record in manifest["outputs"])


def test_activations_on_demo(run_cli, tmp_path, sample_dir):
    out = tmp_path / "act"
    run_cli("activations", sample_dir, "-o", out, "-l", "auto", "--max-channels", "8")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "activations" and manifest["model"]["source"] == "demo"
    assert manifest["failures"] == []
    files = {r["file"] for r in manifest["outputs"]}
    assert len(files) == 3 * 4 * 2  # images x default layers x (grid, overlay)
    for record in manifest["outputs"]:
        picture = Image.open(out / record["file"])
        assert picture.mode == "RGB" and min(picture.size) >= 96
        assert record["input"].endswith(".png") and record["max"] >= record["mean"]
    overlay = np.asarray(Image.open(out / "circle" / next(
        Path(f).name for f in files if f.startswith("circle/") and f.endswith("overlay.png"))))
    assert overlay.shape[:2] == (96, 96)  # drawn at the input's own resolution


def test_bad_image_in_batch_is_reported_and_rest_done(run_cli, tmp_path, sample_dir):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.open(sample_dir / "star.png").save(folder / "star.png")
    result = run_cli("activations", folder, "-o", tmp_path / "out", "-l", "-3", expect=1)
    assert "broken.png" in result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [f["input"] for f in manifest["failures"]] == [str(folder / "broken.png")]
    assert {Path(r["input"]).name for r in manifest["outputs"]} == {"star.png"}


@pytest.mark.parametrize("args, message", [
    (["activations", "nothing_here.png"], "not a file, a folder or a matching glob"),
    (["activations", "x", "-m", "vgg61"], "Unknown model 'vgg61'"),
    (["activations", "x", "-m", "missing.keras"], "does not exist"),
    (["filters", "-l", "gap"], "not a Conv2D"),
    (["filters", "-l", "nope"], "No such layer: 'nope'"),
    (["activations", "IMG", "-l", "predictions"], "not a (batch, height, width, channels)"),
])
def test_usage_errors_exit_2_with_one_line(run_cli, tmp_path, sample_dir, args, message):
    args = [str(sample_dir / "star.png") if a == "IMG" else a for a in args]
    result = run_cli(*args, "-o", tmp_path / "o", expect=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_debug_shows_traceback(tmp_path):
    from click.testing import CliRunner

    from cnnviz_cli.cli import cli

    result = CliRunner().invoke(cli, ["--debug", "filters", "-l", "nope", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "Traceback" in result.output and "cnnviz_cli.errors.CnnvizError" in result.output
    assert result.output.splitlines()[-1].startswith("Error: No such layer: 'nope'.")


def test_output_folder_that_is_a_file(run_cli, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    result = run_cli("filters", "-o", target, expect=2)
    assert "is a file" in result.output


def test_filters_grid_and_checkpoints(run_cli, tmp_path, demo_resolved):
    out = tmp_path / "f"
    run_cli("filters", "-l", "block1_conv1", "--order", "norm", "-o", out)
    manifest = json.loads((out / "manifest.json").read_text())
    (record,) = manifest["outputs"]
    norms = record["norms"]
    assert norms == sorted(norms, reverse=True) and len(norms) == record["kernel_shape"][-1]

    model = demo_resolved.model
    original = model.get_weights()
    checkpoints = []
    for step, factor in enumerate((0.2, 1.0)):
        model.set_weights([w * factor for w in original])
        checkpoints.append(tmp_path / f"step{step}.weights.h5")
        model.save_weights(checkpoints[-1])
    model.set_weights(original)
    out = tmp_path / "g"
    run_cli("filters", "-l", "block1_conv1", "--max-filters", "8", "-o", out,
            *[arg for c in checkpoints for arg in ("--checkpoint", c)])
    gif = Image.open(out / "filters-block1_conv1-checkpoints.gif")
    assert gif.n_frames == 2
    manifest = json.loads((out / "manifest.json").read_text())
    first, last = manifest["outputs"][0]["norms"]
    np.testing.assert_allclose(np.array(first) * 5, last, rtol=1e-4)


def test_layers_table(run_cli, nested_model, tmp_path):
    path = tmp_path / "nested.keras"
    nested_model.save(path)
    result = run_cli("layers", path)
    assert "backbone/conv2" in result.output and "Conv2D" in result.output


def test_out_of_memory_is_one_actionable_line(run_cli, tmp_path, sample_dir, monkeypatch):
    from cnnviz_cli.techniques.activations import ActivationExtractor

    def exhausted(self, inputs):
        raise MemoryError()

    monkeypatch.setattr(ActivationExtractor, "__call__", exhausted)
    result = run_cli("activations", sample_dir, "-o", tmp_path / "o", "--batch-size", "64",
                     expect=2)
    assert result.output.strip().splitlines() == [
        "Error: Ran out of memory; lower --batch-size (or --size, --tile) and run again."]
