"""The installed `cnnviz` executable run as a subprocess: version, errors, a whole run (whose
standard error has cnnviz's summary and no TensorFlow start-up notes)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


def test_installed_entry_point_runs(tmp_path):
    executable = Path(sys.executable).with_name("cnnviz")
    version = subprocess.run([executable, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "cnnviz" in version.stdout
    bad = subprocess.run([executable, "layers", "not_a_model"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "Error: Unknown model 'not_a_model': give a model file (.keras, .h5, .tflite, .onnx), "
        "a SavedModel folder or a name from `cnnviz models`."]


@pytest.mark.slow
def test_subprocess_activations_writes_manifest(tmp_path, sample_dir):
    executable = Path(sys.executable).with_name("cnnviz")
    out = tmp_path / "out"
    result = subprocess.run(
        [executable, "activations", str(sample_dir / "star.png"), "-l", "-3", "-o", str(out),
         "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0].startswith("Wrote 2 files to")  # no TensorFlow notes
    manifest = json.loads(result.stdout)
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert len(manifest["outputs"]) == 2
    assert all((out / record["file"]).is_file() for record in manifest["outputs"])

