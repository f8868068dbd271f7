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


def test_out_of_memory_is_one_actionable_line(run_cli, tmp_path, sample_dir, monkeypatch):
    from cnnviz_cli.techniques.activations import ActivationExtractor

    def exhausted(self, inputs):
        raise MemoryError()

    monkeypatch.setattr(ActivationExtractor, "__call__", exhausted)
    result = run_cli("activations", sample_dir, "-o", tmp_path / "o", "--batch-size", "64",
                     expect=2)
    assert result.output.strip().splitlines() == [
        "Error: Ran out of memory; lower --batch-size (or --size, --tile) and run again."]
