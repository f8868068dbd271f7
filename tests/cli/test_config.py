"""Settings from pyproject.toml / cnnviz.toml, profiles and CNNVIZ_* variables, and their
precedence: command line > environment > profile > file > built-in default."""

import json
import os

import pytest

PYPROJECT = """
[project]
name = "someone-elses"

[tool.cnnviz]
batch_size = 4

[tool.cnnviz.cam]
method = ["layercam"]

[tool.cnnviz.profiles.ci]
device = "cpu"

[tool.cnnviz.profiles.ci.cam]
method = "saliency"
metrics = true
fail-under = ["insertion=1.01"]
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working folder whose pyproject.toml holds cnnviz settings, without CNNVIZ_* set."""
    for name in list(os.environ):
        if name.startswith("CNNVIZ_"):
            monkeypatch.delenv(name)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(run_cli, project, sample_dir, *options, group=(), expect=0):
    """Run `cnnviz GROUP cam star.png OPTIONS`: (click result, manifest, methods drawn)."""
    result = run_cli(*group, "cam", sample_dir / "star.png", *options, "--force", "-o",
                     project / "out", expect=expect)
    manifest = json.loads((project / "out" / "manifest.json").read_text())
    return result, manifest, {record["method"] for record in manifest["outputs"]
                              if "method" in record}


def test_file_settings_run_and_are_recorded_on_the_command_line(run_cli, project, sample_dir):
    _, manifest, methods = _run(run_cli, project, sample_dir)
    assert methods == {"layercam"}
    sources = manifest["settings_sources"]
    assert sources["methods"] == sources["batch_size"] == "file pyproject.toml"
    assert sources["layer"] == "default" and sources["images"] == "command line"
    assert "--method layercam" in manifest["command_line"]  # a replay needs no file
    assert "--batch-size 4" in manifest["command_line"]


def test_each_png_says_where_its_settings_came_from(run_cli, project, sample_dir):
    from cnnviz_cli.io.provenance import read_png_fields

    _, manifest, _ = _run(run_cli, project, sample_dir, "--layer", "auto")
    png = project / "out" / next(record["file"] for record in manifest["outputs"]
                                 if record["file"].endswith(".png"))
    settings = read_png_fields(png)["settings"]
    assert settings["methods"] == settings["batch_size"] == "file pyproject.toml"
    assert "layer" not in settings and "seed" not in settings  # command line; default
    shown = run_cli("info", png).output
    assert "settings from" in shown and "methods: file pyproject.toml" in shown


def test_the_command_line_beats_the_file(run_cli, project, sample_dir):
    _, manifest, methods = _run(run_cli, project, sample_dir, "--method", "gradcam")
    assert methods == {"gradcam"}
    assert manifest["settings_sources"]["methods"] == "command line"


def test_a_profile_beats_the_file_and_brings_its_gates(run_cli, project, sample_dir):
    result, manifest, methods = _run(run_cli, project, sample_dir, group=("--profile", "ci"),
                                     expect=3)
    assert methods == {"saliency"}
    assert "gate(s) failed" in result.output
    assert manifest["options"]["device"] == "cpu"
    sources = manifest["settings_sources"]
    assert sources["methods"] == sources["fail_under"] == sources["device"] == "profile ci"
    assert sources["batch_size"] == "file pyproject.toml"


def test_the_profile_variable_chooses_a_profile_and_the_environment_beats_it(
        run_cli, project, sample_dir, monkeypatch):
    monkeypatch.setenv("CNNVIZ_PROFILE", "ci")
    monkeypatch.setenv("CNNVIZ_CAM_METHOD", "gradcam layercam")
    monkeypatch.setenv("CNNVIZ_CAM_FAIL_UNDER", "")  # empty: no gates
    _, manifest, methods = _run(run_cli, project, sample_dir)
    assert methods == {"gradcam", "layercam"}
    sources = manifest["settings_sources"]
    assert sources["methods"] == sources["fail_under"] == "environment"
    assert sources["metrics"] == "profile ci"


def test_cnnviz_toml_and_config_files(run_cli, project, sample_dir):
    (project / "cnnviz.toml").write_text('[cam]\nmethod = "saliency"\n')
    assert _run(run_cli, project, sample_dir)[2] == {"saliency"}  # before pyproject.toml
    (project / "other.toml").write_text('[cam]\nmethod = "gradcam++"\n')
    _, manifest, methods = _run(run_cli, project, sample_dir,
                                group=("--config", project / "other.toml"))
    assert methods == {"gradcam++"}
    assert manifest["settings_sources"]["methods"] == "file other.toml"
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pyproject.toml").write_text('[tool.cnnviz.cam]\nmethod = "xgradcam"\n')
    assert _run(run_cli, project, sample_dir,
                group=("--config", elsewhere / "pyproject.toml"))[2] == {"xgradcam"}


def _error(run_cli, *args) -> str:
    result = run_cli(*args, expect=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("text, expected", [
    ("[tool.cnnviz.cam]\nmethd = 'gradcam'\n",
     "pyproject.toml [cam] has an unknown key 'methd' (did you mean 'method'?)"),
    ("[tool.cnnviz]\nbatch-sise = 4\n",
     "pyproject.toml has an unknown key 'batch-sise' (did you mean 'batch-size'?)"),
    ("[tool.cnnviz.cma]\nmethod = 'gradcam'\n",
     "pyproject.toml has a table [cma], which is no cnnviz command (did you mean 'cam'?)"),
    ("[tool.cnnviz.profiles.ci.cam]\nfail-undr = ['pointing=1']\n",
     "pyproject.toml [profiles.ci] [cam] has an unknown key 'fail-undr' (did you mean "
     "'fail-under'?)"),
])
def test_an_unknown_key_names_the_file_the_key_and_the_closest_key(run_cli, project, text,
                                                                   expected):
    (project / "pyproject.toml").write_text(text)
    assert expected in _error(run_cli, "--profile", "ci", "cam", "x.png")


@pytest.mark.parametrize("text, expected", [
    ("[tool.cnnviz.cam]\nalpha = 2\n", "pyproject.toml [cam] key alpha = 2 is not valid"),
    ("[tool.cnnviz.cam]\nmethod = 'gradcma'\n",
     "pyproject.toml [cam] key method = 'gradcma' is not valid"),
    ("[tool.cnnviz.cam]\nlayer = ['a', 'b']\n",
     "pyproject.toml [cam] key layer takes one value"),
    ("[tool.cnnviz]\nbatch_size = 'many'\n",
     "pyproject.toml key batch_size = 'many' is not valid"),
    ("[tool.cnnviz.cam\n", "The config file pyproject.toml is not valid TOML"),
])
def test_a_bad_value_names_the_file_and_the_key(run_cli, project, text, expected):
    (project / "pyproject.toml").write_text(text)
    assert expected in _error(run_cli, "cam", "x.png")


def test_bad_environment_variables_and_profiles(run_cli, project, monkeypatch):
    assert "pyproject.toml has no profile 'cd'; its profiles are ci." in _error(
        run_cli, "--profile", "cd", "cam", "x.png")
    monkeypatch.setenv("CNNVIZ_CAM_METHDO", "gradcam")
    assert "CNNVIZ_CAM_METHDO names no option of cnnviz cam (did you mean " \
        "'CNNVIZ_CAM_METHOD'?)" in _error(run_cli, "cam", "x.png")
    monkeypatch.delenv("CNNVIZ_CAM_METHDO")
    monkeypatch.setenv("CNNVIZ_CAM_BATCH_SIZE", "0")
    assert "The environment variable CNNVIZ_CAM_BATCH_SIZE = '0' is not valid" in _error(
        run_cli, "cam", "x.png")


def test_a_profile_without_a_file_is_refused(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "--profile ci needs a config file" in _error(run_cli, "--profile", "ci", "cam",
                                                         "x.png")


def test_shared_keys_apply_to_the_commands_that_have_them(run_cli, project, sample_dir):
    """A shared `method` means gradcam to cam and is not checked against reconstruct's methods;
    settings reach commands of every kind (activations' --layer, report's nothing)."""
    (project / "pyproject.toml").write_text(
        "[tool.cnnviz]\nmethod = 'saliency'\n[tool.cnnviz.activations]\nlayer = "
        "['block1_conv1']\n")
    assert _run(run_cli, project, sample_dir)[2] == {"saliency"}
    run_cli("activations", sample_dir / "star.png", "-o", project / "maps")
    manifest = json.loads((project / "maps" / "manifest.json").read_text())
    assert {record["layer"] for record in manifest["outputs"]} == {"block1_conv1"}
    assert "--layer block1_conv1" in manifest["command_line"]


def test_the_example_of_docs_pipelines_runs_as_described(run_cli, project, sample_dir):
    import re
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "pipelines.md").read_text()
    (project / "pyproject.toml").write_text(re.search(r"```toml\n(.*?)```", page, re.S)[1])
    _, manifest, methods = _run(run_cli, project, sample_dir, group=("--profile", "ci"))
    assert methods == {"gradcam", "layercam"}
    sources = manifest["settings_sources"]
    assert sources["device"] == sources["batch_size"] == "file pyproject.toml"
    assert sources["fail_over"] == "profile ci" and manifest["metrics"]["gates"]
    recorded = manifest["command_line"].replace(str(sample_dir), "sample_images")
    assert f'"command_line": "{recorded}"' in page


def test_a_file_setting_that_cannot_take_effect_says_where_it_came_from(run_cli, project,
                                                                         sample_dir):
    (project / "pyproject.toml").write_text("[tool.cnnviz]\nseed = 3\n")
    result = run_cli("cam", sample_dir / "star.png", "-o", project / "out", expect=2)
    assert result.output.startswith("Error: --seed applies only when a method or metric that "
                                    "draws at random is chosen")
    assert result.output.rstrip().endswith("(--seed came from the file pyproject.toml, not the "
                                           "command line).")
