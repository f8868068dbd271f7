"""`cnnviz doctor` and `cnnviz --version`."""

import json
import subprocess
import sys
from importlib import metadata


def test_version_names_cnnviz_tensorflow_and_keras_without_importing_tensorflow():
    code = ("import sys; from cnnviz_cli.cli import cli\n"
            "try:\n    cli(['--version'], prog_name='cnnviz')\n"
            "except SystemExit:\n    print('tensorflow' in sys.modules)")
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert lines[0].startswith("cnnviz ")
    assert f"TensorFlow {metadata.version('tensorflow')}" in lines[0]
    assert f"Keras {metadata.version('keras')}" in lines[0]
    assert lines[1] == "False"


def test_doctor_json_names_the_versions_and_devices(run_cli):
    checks = json.loads(run_cli("doctor", "--json").output)
    assert checks["tensorflow"]["found"] == metadata.version("tensorflow")
    assert checks["numpy"]["found"] == metadata.version("numpy")
    assert "CPU:0" in checks["devices"]["found"]
    assert checks["cuda build"]["found"].split()[0] in ("yes", "no")
    assert all(check["ok"] or not check["needed"] for check in checks.values())


def test_doctor_exits_1_when_something_needed_is_missing(run_cli, monkeypatch, tmp_path):
    from cnnviz_cli.api import doctor

    real = doctor.version
    monkeypatch.setattr(doctor, "version",
                        lambda package: None if package in ("numpy", "onnxruntime")
                        else real(package))
    monkeypatch.setattr(doctor.tempfile, "gettempdir", lambda: str(tmp_path / "gone"))
    checks = json.loads(run_cli("doctor", "--json", expect=1).output)
    assert not checks["numpy"]["ok"] and checks["numpy"]["needed"]
    assert not checks["onnxruntime"]["ok"] and not checks["onnxruntime"]["needed"]
    assert not checks["temporary folder"]["ok"]
    table = run_cli("doctor", expect=1).output
    assert "MISSING" in table and "pip install numpy" in table


def test_doctor_exits_0_when_only_optional_pieces_are_missing(run_cli, monkeypatch):
    from cnnviz_cli.api import doctor

    real = doctor.version
    monkeypatch.setattr(doctor, "version",
                        lambda package: None if package == "tensorboard" else real(package))
    assert "optional" in run_cli("doctor").output
