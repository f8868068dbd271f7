"""Shell completion through Click's machinery, driven as bash drives it."""

import json

import pytest
from click.testing import CliRunner


@pytest.fixture
def complete(tmp_path, monkeypatch):
    """`complete("cnnviz cam -m demo -l ")` -> the values bash would offer for the last word."""
    from cnnviz_cli.cli import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def run(line: str) -> list[str]:
        words = line.split(" ")
        env = {"_CNNVIZ_COMPLETE": "bash_complete", "COMP_WORDS": line,
               "COMP_CWORD": str(len(words) - 1)}
        result = CliRunner().invoke(cli, [], env=env, prog_name="cnnviz")
        assert result.exit_code == 0, result.output
        return [row.split(",", 1)[1] for row in result.output.splitlines()
                if row.startswith("plain,")]

    return run


def test_layers_of_the_model_given_with_m_are_its_feature_maps(complete, demo_resolved,
                                                                tmp_path):
    from cnnviz_cli.models.layers import feature_map_layers

    expected = [info.path for info in feature_map_layers(demo_resolved.model,
                                                         demo_resolved.image_size())]
    assert complete("cnnviz cam -m demo -l ") == expected
    assert complete("cnnviz cam -l block2") == [name for name in expected
                                               if name.startswith("block2")]
    for command in ("activations", "filters", "maximize", "dream", "reconstruct"):
        assert complete(f"cnnviz {command} --layer block3") == [
            name for name in expected if name.startswith("block3")], command
    assert complete("cnnviz reconstruct --method g") == ["guided"]  # its own choices
    cached = list((tmp_path / "cache" / "cnnviz" / "layers").glob("*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text()) == expected


def test_the_layer_list_comes_from_the_cache(complete, tmp_path):
    complete("cnnviz cam -l ")
    [cached] = (tmp_path / "cache" / "cnnviz" / "layers").glob("*.json")
    cached.write_text(json.dumps(["only_this"]))  # a second TAB builds no model
    assert complete("cnnviz cam -m demo -l ") == ["only_this"]


def test_a_model_file_s_layers_and_an_unreadable_model(complete, small_model_file, tmp_path):
    assert complete(f"cnnviz cam -m {small_model_file} -l ") == ["conv"]
    broken = tmp_path / "broken.keras"
    broken.write_text("not a model")
    assert complete(f"cnnviz cam -m {broken} -l ") == []


def test_commands_options_models_methods_and_choices(complete):
    assert "cam" in complete("cnnviz c") and "doctor" in complete("cnnviz d")
    assert {"--method", "--metric", "--metrics"} <= set(complete("cnnviz cam --me"))
    assert complete("cnnviz cam -m mobilenet_v3") == ["mobilenet_v3_small",
                                                      "mobilenet_v3_large"]
    assert complete("cnnviz cam --method gradcam,sc") == ["gradcam,scorecam"]
    assert "road" in complete("cnnviz cam --metric ")
    assert complete("cnnviz cam --task seg") == ["segment"]


def test_the_shell_scripts_name_the_program():
    from cnnviz_cli.cli import cli

    for shell in ("bash", "zsh", "fish"):
        result = CliRunner().invoke(cli, [], env={"_CNNVIZ_COMPLETE": f"{shell}_source"},
                                    prog_name="cnnviz")
        assert result.exit_code == 0 and "_CNNVIZ_COMPLETE" in result.output, shell


def test_profiles_of_the_settings_file(complete, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert complete("cnnviz --profile ") == []
    (tmp_path / "cnnviz.toml").write_text("[profiles.ci.cam]\nmetrics = true\n"
                                          "[profiles.nightly]\ndevice = 'cpu'\n")
    assert complete("cnnviz --profile ") == ["ci", "nightly"]
    (tmp_path / "other.toml").write_text("[profiles.gpu]\n")
    assert complete(f"cnnviz --config {tmp_path / 'other.toml'} --profile ") == ["gpu"]
